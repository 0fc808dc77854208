//! C/C++ include extraction: `#include "x"` (spec `x`), `#include <x>` (spec `<x>`), also
//! `#include_next` and `#import`. Includes in every `#if` branch count. Comments (with line
//! continuations), string and character literals and C++ raw strings are skipped.

use super::lex::{is_ident_byte, skip_block_comment};
use super::{Import, ImportKind};

pub fn extract(t: &[u8]) -> Vec<Import> {
    let n = t.len();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1u32;
    // only whitespace (or comments) so far on this line
    let mut line_start = true;
    while i < n {
        let b = t[i];
        match b {
            b'\n' => {
                line += 1;
                i += 1;
                line_start = true;
            }
            b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c' => i += 1,
            b'\\' if i + 1 < n && (t[i + 1] == b'\n' || t[i + 1] == b'\r') => {
                // line continuation outside comments
                i += 1;
                if t[i] == b'\r' && i + 1 < n && t[i + 1] == b'\n' {
                    i += 1;
                }
                line += 1;
                i += 1;
            }
            b'/' if i + 1 < n && t[i + 1] == b'/' => {
                while i < n && t[i] != b'\n' {
                    if t[i] == b'\\' && i + 1 < n && t[i + 1] == b'\n' {
                        line += 1;
                        i += 1;
                    } else if t[i] == b'\\' && i + 2 < n && t[i + 1] == b'\r' && t[i + 2] == b'\n' {
                        line += 1;
                        i += 2;
                    }
                    i += 1;
                }
            }
            b'/' if i + 1 < n && t[i + 1] == b'*' => i = skip_block_comment(t, i, &mut line),
            b'#' if line_start => {
                line_start = false;
                i += 1;
                while i < n && (t[i] == b' ' || t[i] == b'\t') {
                    i += 1;
                }
                let start = i;
                while i < n && is_ident_byte(t[i]) {
                    i += 1;
                }
                let word = &t[start..i];
                if word == b"include" || word == b"include_next" || word == b"import" {
                    let directive_line = line;
                    loop {
                        if i < n && (t[i] == b' ' || t[i] == b'\t') {
                            i += 1;
                        } else if t[i..].starts_with(b"\\\n") {
                            i += 2;
                            line += 1;
                        } else if t[i..].starts_with(b"\\\r\n") {
                            i += 3;
                            line += 1;
                        } else {
                            break;
                        }
                    }
                    if i < n && (t[i] == b'"' || t[i] == b'<') {
                        let close = if t[i] == b'"' { b'"' } else { b'>' };
                        let open = t[i];
                        let s = i + 1;
                        let mut j = s;
                        while j < n && t[j] != close && t[j] != b'\n' {
                            j += 1;
                        }
                        if j < n && t[j] == close && j > s {
                            let body = String::from_utf8_lossy(&t[s..j]).trim().to_string();
                            let spec = if open == b'<' {
                                format!("<{body}>")
                            } else {
                                body
                            };
                            out.push(Import::new(spec, ImportKind::Include, directive_line));
                        }
                        i = j.min(n);
                        if i < n && t[i] == close {
                            i += 1;
                        }
                    }
                }
            }
            b'"' | b'\'' => {
                line_start = false;
                i = skip_quoted(t, i, &mut line);
            }
            b'R' if i + 1 < n
                && t[i + 1] == b'"'
                && (i == 0 || !is_ident_byte(t[i - 1]) || raw_prefix(t, i)) =>
            {
                line_start = false;
                i = skip_raw(t, i + 1, &mut line);
            }
            _ => {
                line_start = false;
                i += 1;
            }
        }
    }
    out
}

/// Whether the `R` at `i` ends an encoding prefix (`u8R`, `uR`, `UR`, `LR`).
fn raw_prefix(t: &[u8], i: usize) -> bool {
    let before = &t[..i];
    let word_start = before
        .iter()
        .rposition(|&b| !is_ident_byte(b))
        .map_or(0, |p| p + 1);
    matches!(&t[word_start..i], b"u8" | b"u" | b"U" | b"L")
}

fn skip_quoted(t: &[u8], i: usize, line: &mut u32) -> usize {
    let n = t.len();
    let q = t[i];
    let mut j = i + 1;
    while j < n && t[j] != q && t[j] != b'\n' {
        if t[j] == b'\\' {
            if j + 1 < n && t[j + 1] == b'\n' {
                *line += 1;
            }
            j += 2;
        } else {
            j += 1;
        }
    }
    if j < n && t[j] == q {
        j + 1
    } else {
        j.min(n)
    }
}

/// Skip a raw string `"delim( … )delim"` starting at the quote.
fn skip_raw(t: &[u8], quote: usize, line: &mut u32) -> usize {
    let n = t.len();
    let mut j = quote + 1;
    while j < n && j - quote <= 17 && t[j] != b'(' {
        if matches!(t[j], b' ' | b')' | b'\\' | b'\n' | b'"') {
            return skip_quoted(t, quote, line); // not a raw string
        }
        j += 1;
    }
    if j >= n || t[j] != b'(' {
        return skip_quoted(t, quote, line);
    }
    let delim = &t[quote + 1..j];
    let mut k = j + 1;
    while k < n {
        if t[k] == b')'
            && t[k + 1..].starts_with(delim)
            && t.get(k + 1 + delim.len()) == Some(&b'"')
        {
            return k + 2 + delim.len();
        }
        if t[k] == b'\n' {
            *line += 1;
        }
        k += 1;
    }
    n
}
