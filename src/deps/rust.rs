//! Rust import extraction: `mod x;` (with `#[path]`, also inside `cfg_attr`, inside inline
//! modules and macro calls), `use` trees, `extern crate` and `include!("…")`.
//!
//! Specs are normalised to the file level: a `mod x;` inside `mod a { … }` has spec `a::x`;
//! a `use self::y` inside `mod a { … }` becomes `self::a::y`, and `super::` first climbs out of
//! the enclosing inline modules. Use trees are expanded to one spec per leaf, without a trailing
//! `self`, `*` or alias (`use a::{b, c::*}` gives `a::b` and `a::c`).

use super::lex::is_ident_byte;
use super::{Import, ImportKind};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(u8),
    Str(String),
    /// Literals that matter to nobody (numbers, chars, lifetimes).
    Other,
}

struct Token {
    tok: Tok,
    line: u32,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn utf8_len(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

fn count_lines(s: &[u8]) -> u32 {
    s.iter().filter(|&&b| b == b'\n').count() as u32
}

fn tokenize(text: &[u8]) -> Vec<Token> {
    let n = text.len();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1u32;
    while i < n {
        let b = text[i];
        if b == b'\n' {
            line += 1;
            i += 1;
        } else if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b'/' && i + 1 < n && text[i + 1] == b'/' {
            while i < n && text[i] != b'\n' {
                i += 1;
            }
        } else if b == b'/' && i + 1 < n && text[i + 1] == b'*' {
            // nested block comment
            let mut depth = 1;
            i += 2;
            while i < n && depth > 0 {
                if text[i] == b'/' && i + 1 < n && text[i + 1] == b'*' {
                    depth += 1;
                    i += 2;
                } else if text[i] == b'*' && i + 1 < n && text[i + 1] == b'/' {
                    depth -= 1;
                    i += 2;
                } else {
                    if text[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if b == b'"' {
            let start_line = line;
            let (s, ni) = quoted(text, i + 1);
            line += count_lines(&text[i..ni]);
            i = ni;
            out.push(Token {
                tok: Tok::Str(s),
                line: start_line,
            });
        } else if b == b'\'' {
            // char literal or lifetime
            let start = i;
            if i + 1 < n && text[i + 1] == b'\\' {
                i += 2;
                while i < n && text[i] != b'\'' && text[i] != b'\n' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(n);
            } else if i + 1 < n {
                let l = utf8_len(text[i + 1]);
                if i + 1 + l < n && text[i + 1 + l] == b'\'' {
                    i += 2 + l;
                } else {
                    i += 1;
                    while i < n && is_ident_byte(text[i]) {
                        i += 1;
                    }
                }
            } else {
                i += 1;
            }
            line += count_lines(&text[start..i.min(n)]);
            out.push(Token {
                tok: Tok::Other,
                line,
            });
        } else if is_ident_start(b) {
            let start = i;
            while i < n && is_ident_byte(text[i]) {
                i += 1;
            }
            let word = &text[start..i];
            // raw strings r"…", r#"…"#, br"…", cr#"…"#; byte and C strings b"…", c"…"
            let raw = matches!(word, b"r" | b"br" | b"cr");
            if raw && i < n && (text[i] == b'"' || text[i] == b'#') {
                let mut hashes = 0;
                let mut j = i;
                while j < n && text[j] == b'#' {
                    hashes += 1;
                    j += 1;
                }
                if j < n && text[j] == b'"' {
                    let body = j + 1;
                    let mut k = body;
                    let mut end = n;
                    let mut after = n;
                    while k < n {
                        if text[k] == b'"'
                            && k + hashes < n + 1
                            && text[k + 1..].len() >= hashes
                            && text[k + 1..k + 1 + hashes].iter().all(|&c| c == b'#')
                        {
                            end = k;
                            after = k + 1 + hashes;
                            break;
                        }
                        k += 1;
                    }
                    let start_line = line;
                    line += count_lines(&text[i..after.min(n)]);
                    out.push(Token {
                        tok: Tok::Str(String::from_utf8_lossy(&text[body..end]).into_owned()),
                        line: start_line,
                    });
                    i = after.min(n);
                    continue;
                }
                if word == b"r" && hashes == 1 && j < n && is_ident_start(text[j]) {
                    // raw identifier r#name: keep the prefix so it is never a keyword
                    let s = j;
                    let mut k = j;
                    while k < n && is_ident_byte(text[k]) {
                        k += 1;
                    }
                    out.push(Token {
                        tok: Tok::Ident(format!("r#{}", String::from_utf8_lossy(&text[s..k]))),
                        line,
                    });
                    i = k;
                    continue;
                }
            }
            if matches!(word, b"b" | b"c") && i < n && text[i] == b'"' {
                let start_line = line;
                let (s, ni) = quoted(text, i + 1);
                line += count_lines(&text[i..ni]);
                i = ni;
                out.push(Token {
                    tok: Tok::Str(s),
                    line: start_line,
                });
                continue;
            }
            if word == b"b" && i < n && text[i] == b'\'' {
                // byte literal b'x'
                i += 1;
                while i < n && text[i] != b'\'' && text[i] != b'\n' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(n);
                out.push(Token {
                    tok: Tok::Other,
                    line,
                });
                continue;
            }
            out.push(Token {
                tok: Tok::Ident(String::from_utf8_lossy(word).into_owned()),
                line,
            });
        } else if b.is_ascii_digit() {
            while i < n && (is_ident_byte(text[i]) || text[i] == b'.') {
                // stop before `..` ranges and method calls like 1.max(2)
                if text[i] == b'.'
                    && (i + 1 >= n || text[i + 1] == b'.' || is_ident_start(text[i + 1]))
                {
                    break;
                }
                i += 1;
            }
            out.push(Token {
                tok: Tok::Other,
                line,
            });
        } else {
            out.push(Token {
                tok: Tok::Punct(b),
                line,
            });
            i += 1;
        }
    }
    out
}

/// A `"…"` string body starting at `i` (after the quote): content and index after the quote.
fn quoted(text: &[u8], mut i: usize) -> (String, usize) {
    let n = text.len();
    let start = i;
    while i < n && text[i] != b'"' {
        i += if text[i] == b'\\' { 2 } else { 1 };
    }
    let end = i.min(n);
    (
        String::from_utf8_lossy(&text[start..end]).into_owned(),
        (end + 1).min(n),
    )
}

fn tok_at(toks: &[Token], i: usize) -> Option<&Tok> {
    toks.get(i).map(|t| &t.tok)
}

fn is_ident(t: Option<&Tok>, s: &str) -> bool {
    matches!(t, Some(Tok::Ident(x)) if x == s)
}

fn is_punct(t: Option<&Tok>, c: u8) -> bool {
    matches!(t, Some(Tok::Punct(x)) if *x == c)
}

fn is_path_sep(toks: &[Token], i: usize) -> bool {
    is_punct(tok_at(toks, i), b':') && is_punct(tok_at(toks, i + 1), b':')
}

fn strip_raw(s: &str) -> &str {
    s.strip_prefix("r#").unwrap_or(s)
}

fn is_keyword_like(s: &str) -> bool {
    matches!(
        s,
        "as" | "fn" | "struct" | "enum" | "impl" | "trait" | "let" | "const" | "static" | "type"
    )
}

pub fn extract(text: &[u8]) -> Vec<Import> {
    let toks = tokenize(text);
    let mut out = Vec::new();
    // one entry per open brace: Some(name) for `mod name {`
    let mut braces: Vec<Option<String>> = Vec::new();
    let mut pending_path: Option<String> = None;
    let mut i = 0;
    while i < toks.len() {
        let line = toks[i].line;
        match &toks[i].tok {
            Tok::Punct(b'#') => {
                let mut j = i + 1;
                if is_punct(tok_at(&toks, j), b'!') {
                    j += 1;
                }
                if is_punct(tok_at(&toks, j), b'[') {
                    let (path, end) = attribute(&toks, j);
                    if path.is_some() {
                        pending_path = path;
                    }
                    i = end;
                    continue;
                }
            }
            Tok::Punct(b'{') => {
                braces.push(None);
                pending_path = None;
            }
            Tok::Punct(b'}') => {
                braces.pop();
                pending_path = None;
            }
            Tok::Punct(b';' | b'=') => pending_path = None,
            Tok::Ident(k) if k == "mod" => {
                if let Some(Tok::Ident(name)) = tok_at(&toks, i + 1) {
                    let name = strip_raw(name).to_string();
                    if is_punct(tok_at(&toks, i + 2), b';') {
                        let mut spec = inline_path(&braces);
                        if !spec.is_empty() {
                            spec.push_str("::");
                        }
                        spec.push_str(&name);
                        let mut imp = Import::new(spec, ImportKind::Mod, line);
                        imp.path_attr = pending_path.take();
                        out.push(imp);
                        i += 3;
                        continue;
                    }
                    if is_punct(tok_at(&toks, i + 2), b'{') {
                        braces.push(Some(name));
                        pending_path = None;
                        i += 3;
                        continue;
                    }
                }
                pending_path = None;
            }
            Tok::Ident(k) if k == "use" => {
                let prev_ok = i == 0 || !is_punct(tok_at(&toks, i - 1), b'$');
                if prev_ok {
                    let mut leaves = Vec::new();
                    let end = use_tree(&toks, i + 1, String::new(), &mut leaves, 0);
                    let inline = inline_names(&braces);
                    for leaf in leaves {
                        if let Some(spec) = normalize_use(&leaf, &inline) {
                            out.push(Import::new(spec, ImportKind::Use, line));
                        }
                    }
                    i = end.max(i + 1);
                    pending_path = None;
                    continue;
                }
            }
            Tok::Ident(k) if k == "extern" && is_ident(tok_at(&toks, i + 1), "crate") => {
                if let Some(Tok::Ident(name)) = tok_at(&toks, i + 2) {
                    if name != "self" {
                        out.push(Import::new(
                            format!("::{}", strip_raw(name)),
                            ImportKind::Use,
                            line,
                        ));
                    }
                }
            }
            Tok::Ident(k)
                if k == "include"
                    && is_punct(tok_at(&toks, i + 1), b'!')
                    && matches!(tok_at(&toks, i + 2), Some(Tok::Punct(b'(' | b'[' | b'{'))) =>
            {
                if let Some(Tok::Str(s)) = tok_at(&toks, i + 3) {
                    if matches!(tok_at(&toks, i + 4), Some(Tok::Punct(b')' | b']' | b'}'))) {
                        out.push(Import::new(s.clone(), ImportKind::IncludeMacro, line));
                    }
                }
            }
            Tok::Ident(k)
                if !matches!(
                    k.as_str(),
                    "pub" | "crate" | "in" | "self" | "super" | "unsafe"
                ) =>
            {
                pending_path = None
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Parse an attribute starting at `[` (index `j`); returns a `path = "…"` value found directly or
/// inside `cfg_attr(…)`, and the index after the closing `]`.
fn attribute(toks: &[Token], j: usize) -> (Option<String>, usize) {
    let mut depth = 0usize;
    let mut k = j;
    let mut path = None;
    let first = tok_at(toks, j + 1);
    let is_path = is_ident(first, "path");
    let is_cfg_attr = is_ident(first, "cfg_attr");
    while k < toks.len() {
        match &toks[k].tok {
            Tok::Punct(b'[' | b'(' | b'{') => depth += 1,
            Tok::Punct(b']' | b')' | b'}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return (path, k + 1);
                }
            }
            Tok::Ident(x)
                if x == "path"
                    && (is_path && depth == 1 || is_cfg_attr && depth == 2)
                    && is_punct(tok_at(toks, k + 1), b'=') =>
            {
                if let Some(Tok::Str(s)) = tok_at(toks, k + 2) {
                    path = Some(s.clone());
                }
            }
            // an attribute never holds these: stop on broken input
            Tok::Punct(b';') => return (path, k),
            _ => {}
        }
        k += 1;
    }
    (path, k)
}

fn inline_names(braces: &[Option<String>]) -> Vec<String> {
    braces.iter().flatten().cloned().collect()
}

fn inline_path(braces: &[Option<String>]) -> String {
    inline_names(braces).join("::")
}

/// Expand a use tree starting at `i` with `prefix`; push leaves; return the index after it.
fn use_tree(
    toks: &[Token],
    mut i: usize,
    prefix: String,
    leaves: &mut Vec<String>,
    depth: u32,
) -> usize {
    if depth > 32 {
        return i;
    }
    let mut path = prefix;
    if is_path_sep(toks, i) {
        // leading `::`
        path.push_str("::");
        i += 2;
    }
    loop {
        match tok_at(toks, i) {
            Some(Tok::Ident(seg)) if !is_keyword_like(seg) => {
                if !path.is_empty() && !path.ends_with("::") {
                    path.push_str("::");
                }
                path.push_str(strip_raw(seg));
                i += 1;
                if is_path_sep(toks, i) {
                    i += 2;
                    continue;
                }
                if is_ident(tok_at(toks, i), "as") {
                    i += 2;
                }
                leaves.push(path);
                return i;
            }
            Some(Tok::Punct(b'*')) => {
                leaves.push(path.trim_end_matches("::").to_string());
                return i + 1;
            }
            Some(Tok::Punct(b'{')) => {
                i += 1;
                let base = path.trim_end_matches("::").to_string();
                loop {
                    match tok_at(toks, i) {
                        Some(Tok::Punct(b'}')) => return i + 1,
                        Some(Tok::Punct(b',')) => i += 1,
                        None | Some(Tok::Punct(b';')) => return i,
                        _ => {
                            let sub = if base.is_empty() {
                                String::new()
                            } else {
                                format!("{base}::")
                            };
                            let ni = use_tree(toks, i, sub, leaves, depth + 1);
                            if ni == i {
                                return i;
                            }
                            i = ni;
                        }
                    }
                }
            }
            _ => return i,
        }
    }
}

/// Drop a trailing `self`, make the path file-level (see module docs). `None` for nothing useful.
fn normalize_use(leaf: &str, inline: &[String]) -> Option<String> {
    let mut segs: Vec<&str> = leaf.split("::").collect();
    let leading_colons = leaf.starts_with("::");
    if leading_colons {
        segs.remove(0);
    }
    if segs.len() > 1 && segs.last() == Some(&"self") {
        segs.pop();
    }
    if segs.is_empty() || segs[0].is_empty() || segs[0] == "Self" || segs[0].starts_with('$') {
        return None;
    }
    if leading_colons {
        return Some(format!("::{}", segs.join("::")));
    }
    if inline.is_empty() || !(segs[0] == "self" || segs[0] == "super") {
        return Some(segs.join("::"));
    }
    // climb out of inline modules first
    let mut scope: Vec<&str> = inline.iter().map(|s| s.as_str()).collect();
    let mut rest = &segs[..];
    if rest[0] == "self" {
        rest = &rest[1..];
    } else {
        while !rest.is_empty() && rest[0] == "super" {
            if scope.pop().is_none() {
                break;
            }
            rest = &rest[1..];
        }
    }
    let mut parts: Vec<&str> = Vec::new();
    if !rest.is_empty() && rest[0] == "super" {
        parts.extend(rest.iter());
    } else {
        parts.push("self");
        parts.extend(scope.iter());
        parts.extend(rest.iter());
    }
    Some(parts.join("::"))
}
