//! Python import extraction: a small tokenizer (names, operators, strings, logical lines) and a
//! statement matcher for `import` / `from … import` at the start of a statement, plus
//! `importlib.import_module("x")` and `__import__("x")` with a literal argument.

use super::lex::is_ident_byte;
use super::{Import, ImportKind};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Op(u8),
    Str(String),
    /// End of a logical line.
    Newline,
}

struct Token {
    tok: Tok,
    line: u32,
}

/// Whether a line starts (at column 0) with a keyword that only begins a statement.
fn starts_statement(rest: &[u8]) -> bool {
    [&b"import "[..], b"from ", b"def ", b"class ", b"@"]
        .iter()
        .any(|k| rest.starts_with(k))
}

fn is_string_prefix(s: &[u8]) -> bool {
    s.len() <= 2 && s.iter().all(|b| b"rRbBuUfFtT".contains(b))
}

fn tokenize(text: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1u32;
    let mut depth = 0usize;
    let n = text.len();
    while i < n {
        let b = text[i];
        match b {
            b'\n' => {
                if depth > 0 && starts_statement(&text[i + 1..]) {
                    // an unclosed bracket before a top-level statement: recover
                    depth = 0;
                }
                if depth == 0 {
                    out.push(Token {
                        tok: Tok::Newline,
                        line,
                    });
                }
                line += 1;
                i += 1;
            }
            b'#' => {
                while i < n && text[i] != b'\n' {
                    i += 1;
                }
            }
            b'\\' => {
                // line continuation
                i += 1;
                if i < n && text[i] == b'\r' {
                    i += 1;
                }
                if i < n && text[i] == b'\n' {
                    line += 1;
                    i += 1;
                }
            }
            b'"' | b'\'' => {
                let start_line = line;
                let (s, ni) = lex_string(text, i, &mut line);
                i = ni;
                out.push(Token {
                    tok: Tok::Str(s),
                    line: start_line,
                });
            }
            _ if is_ident_byte(b) => {
                let start = i;
                while i < n && is_ident_byte(text[i]) {
                    i += 1;
                }
                if i < n
                    && (text[i] == b'"' || text[i] == b'\'')
                    && is_string_prefix(&text[start..i])
                {
                    let start_line = line;
                    let (s, ni) = lex_string(text, i, &mut line);
                    i = ni;
                    out.push(Token {
                        tok: Tok::Str(s),
                        line: start_line,
                    });
                } else {
                    out.push(Token {
                        tok: Tok::Name(String::from_utf8_lossy(&text[start..i]).into_owned()),
                        line,
                    });
                }
            }
            b' ' | b'\t' | b'\r' | b'\x0c' => i += 1,
            _ => {
                match b {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                out.push(Token {
                    tok: Tok::Op(b),
                    line,
                });
                i += 1;
            }
        }
    }
    out.push(Token {
        tok: Tok::Newline,
        line,
    });
    out
}

/// Lex a string starting at the opening quote `text[i]`; returns its raw content and the index
/// after it. Single-quoted strings end at an unescaped newline (error tolerance).
fn lex_string(text: &[u8], mut i: usize, line: &mut u32) -> (String, usize) {
    let n = text.len();
    let q = text[i];
    let triple = i + 2 < n && text[i + 1] == q && text[i + 2] == q;
    i += if triple { 3 } else { 1 };
    let start = i;
    while i < n {
        let b = text[i];
        if b == b'\\' {
            if i + 1 < n && text[i + 1] == b'\n' {
                *line += 1;
            }
            i += 2;
            continue;
        }
        if b == b'\n' {
            if !triple {
                return (String::from_utf8_lossy(&text[start..i]).into_owned(), i);
            }
            *line += 1;
        }
        if b == q {
            if !triple {
                return (String::from_utf8_lossy(&text[start..i]).into_owned(), i + 1);
            }
            if i + 2 < n && text[i + 1] == q && text[i + 2] == q {
                return (String::from_utf8_lossy(&text[start..i]).into_owned(), i + 3);
            }
        }
        i += 1;
    }
    let end = n.min(i);
    (
        String::from_utf8_lossy(&text[start.min(end)..end]).into_owned(),
        n,
    )
}

pub fn extract(text: &[u8]) -> Vec<Import> {
    let toks = tokenize(text);
    let mut out = Vec::new();
    let mut stmt_start = true;
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let at_start = stmt_start;
        stmt_start = false;
        match &t.tok {
            Tok::Newline => {
                stmt_start = true;
                depth = 0;
            }
            Tok::Op(b';') if depth == 0 => stmt_start = true,
            Tok::Op(b':') if depth == 0 => stmt_start = true,
            Tok::Op(b'(' | b'[' | b'{') => depth += 1,
            Tok::Op(b')' | b']' | b'}') => depth = depth.saturating_sub(1),
            Tok::Name(n) if at_start && n == "import" => {
                i = parse_import(&toks, i + 1, t.line, &mut out);
                stmt_start = matches!(toks.get(i).map(|t| &t.tok), Some(Tok::Newline));
                continue;
            }
            Tok::Name(n) if at_start && n == "from" => {
                i = parse_from(&toks, i + 1, t.line, &mut out);
                stmt_start = matches!(toks.get(i).map(|t| &t.tok), Some(Tok::Newline));
                continue;
            }
            Tok::Name(n) if n == "import_module" || n == "__import__" => {
                let prev_dot = i > 0 && toks[i - 1].tok == Tok::Op(b'.');
                let qualified_ok = n == "__import__"
                    || !prev_dot
                    || matches!(toks.get(i.wrapping_sub(2)).map(|t| &t.tok), Some(Tok::Name(m)) if m == "importlib");
                if qualified_ok {
                    if let (Some(Tok::Op(b'(')), Some(Tok::Str(s)), Some(Tok::Op(b')' | b','))) = (
                        toks.get(i + 1).map(|t| &t.tok),
                        toks.get(i + 2).map(|t| &t.tok),
                        toks.get(i + 3).map(|t| &t.tok),
                    ) {
                        if is_dotted(s) && !s.starts_with('.') {
                            out.push(Import::new(s.clone(), ImportKind::DynamicImport, t.line));
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn is_dotted(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|p| {
            !p.is_empty() && p.bytes().all(is_ident_byte) && !p.as_bytes()[0].is_ascii_digit()
        })
}

/// Parse a dotted name at `i`; returns it and the index after it.
fn dotted(toks: &[Token], mut i: usize) -> (String, usize) {
    let mut s = String::new();
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Name(n)) => {
                s.push_str(n);
                i += 1;
            }
            _ => return (s, i),
        }
        if let Some(Tok::Op(b'.')) = toks.get(i).map(|t| &t.tok) {
            if let Some(Tok::Name(_)) = toks.get(i + 1).map(|t| &t.tok) {
                s.push('.');
                i += 1;
                continue;
            }
        }
        return (s, i);
    }
}

fn skip_alias(toks: &[Token], i: usize) -> usize {
    match (toks.get(i).map(|t| &t.tok), toks.get(i + 1).map(|t| &t.tok)) {
        (Some(Tok::Name(a)), Some(Tok::Name(_))) if a == "as" => i + 2,
        _ => i,
    }
}

/// `import a.b [as x], c` — `i` is just after `import`.
fn parse_import(toks: &[Token], mut i: usize, line: u32, out: &mut Vec<Import>) -> usize {
    loop {
        let (name, ni) = dotted(toks, i);
        if name.is_empty() {
            return ni.max(i);
        }
        out.push(Import::new(name, ImportKind::Import, line));
        i = skip_alias(toks, ni);
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Op(b',')) => i += 1,
            _ => return i,
        }
    }
}

/// `from .a import b, c` / `from . import (x as y, z)` / `from a import *` — `i` is after `from`.
fn parse_from(toks: &[Token], mut i: usize, line: u32, out: &mut Vec<Import>) -> usize {
    let mut module = String::new();
    while let Some(Tok::Op(b'.')) = toks.get(i).map(|t| &t.tok) {
        module.push('.');
        i += 1;
    }
    if !matches!(toks.get(i).map(|t| &t.tok), Some(Tok::Name(n)) if n == "import") {
        let (name, ni) = dotted(toks, i);
        module.push_str(&name);
        i = ni;
    }
    if module.is_empty() {
        return i;
    }
    match toks.get(i).map(|t| &t.tok) {
        Some(Tok::Name(n)) if n == "import" => i += 1,
        _ => return i,
    }
    let join = |m: &str, n: &str| {
        if m.ends_with('.') {
            format!("{m}{n}")
        } else {
            format!("{m}.{n}")
        }
    };
    let paren = matches!(toks.get(i).map(|t| &t.tok), Some(Tok::Op(b'(')));
    if paren {
        i += 1;
    }
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Op(b'*')) => {
                out.push(Import::new(
                    join(&module, "*"),
                    ImportKind::FromImport,
                    line,
                ));
                i += 1;
            }
            Some(Tok::Name(n)) => {
                out.push(Import::new(join(&module, n), ImportKind::FromImport, line));
                i = skip_alias(toks, i + 1);
            }
            _ => break,
        }
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Op(b',')) => i += 1,
            _ => break,
        }
        // inside parentheses, newlines are not logical line ends (tokenizer tracks depth)
    }
    if paren {
        if let Some(Tok::Op(b')')) = toks.get(i).map(|t| &t.tok) {
            i += 1;
        }
    }
    i
}
