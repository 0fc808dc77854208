//! Go import extraction: `import "p"`, `import name "p"` and `import ( … )` blocks (with `_`, `.`
//! and alias names). Comments, interpreted and raw strings and runes are skipped.

use super::lex::{is_ident_byte, skip_block_comment};
use super::{Import, ImportKind};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(u8),
    Str(String),
    Other,
}

struct Token {
    tok: Tok,
    line: u32,
}

fn tokenize(t: &[u8]) -> Vec<Token> {
    let n = t.len();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1u32;
    while i < n {
        let b = t[i];
        match b {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'/' if i + 1 < n && t[i + 1] == b'/' => {
                while i < n && t[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if i + 1 < n && t[i + 1] == b'*' => i = skip_block_comment(t, i, &mut line),
            b'"' | b'\'' => {
                let start = i + 1;
                let mut j = start;
                while j < n && t[j] != b && t[j] != b'\n' {
                    j += if t[j] == b'\\' { 2 } else { 1 };
                }
                let end = j.min(n);
                let tok = if b == b'"' {
                    Tok::Str(String::from_utf8_lossy(&t[start..end]).into_owned())
                } else {
                    Tok::Other
                };
                out.push(Token { tok, line });
                i = if end < n && t[end] == b { end + 1 } else { end };
            }
            b'`' => {
                let start = i + 1;
                let start_line = line;
                let mut j = start;
                while j < n && t[j] != b'`' {
                    if t[j] == b'\n' {
                        line += 1;
                    }
                    j += 1;
                }
                out.push(Token {
                    tok: Tok::Str(String::from_utf8_lossy(&t[start..j]).into_owned()),
                    line: start_line,
                });
                i = (j + 1).min(n);
            }
            _ if is_ident_byte(b) => {
                let start = i;
                while i < n && is_ident_byte(t[i]) {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(String::from_utf8_lossy(&t[start..i]).into_owned()),
                    line,
                });
            }
            _ => {
                out.push(Token {
                    tok: Tok::Punct(b),
                    line,
                });
                i += 1;
            }
        }
    }
    out
}

pub fn extract(text: &[u8]) -> Vec<Import> {
    let toks = tokenize(text);
    let mut out = Vec::new();
    let at = |i: usize| toks.get(i).map(|t| &t.tok);
    // one import spec (with optional name) at `i`; returns the index after it
    let spec = |i: usize, out: &mut Vec<Import>| -> Option<usize> {
        let mut j = i;
        if matches!(at(j), Some(Tok::Ident(_)) | Some(Tok::Punct(b'.'))) {
            j += 1;
        }
        if let Some(Tok::Str(s)) = at(j) {
            if !s.is_empty() {
                out.push(Import::new(s.clone(), ImportKind::Import, toks[j].line));
            }
            return Some(j + 1);
        }
        None
    };
    let mut i = 0;
    while i < toks.len() {
        if matches!(at(i), Some(Tok::Ident(w)) if w == "import") {
            if let Some(Tok::Punct(b'(')) = at(i + 1) {
                let mut j = i + 2;
                loop {
                    match at(j) {
                        Some(Tok::Punct(b';')) => j += 1,
                        Some(Tok::Punct(b')')) | None => break,
                        _ => match spec(j, &mut out) {
                            Some(nj) => j = nj,
                            None => break,
                        },
                    }
                }
                i = j;
                continue;
            }
            if let Some(nj) = spec(i + 1, &mut out) {
                i = nj;
                continue;
            }
        }
        i += 1;
    }
    out
}
