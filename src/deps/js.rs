//! JavaScript/TypeScript import extraction: `import … from "x"`, `import "x"`, `import type`,
//! `export … from "x"`, `require("x")`, `import x = require("x")`, `import("x")` and
//! `/// <reference path="x" />`. The tokenizer skips comments, strings, template literals (with
//! nested `${…}` expressions) and regular expression literals (a `/` is a regex where an
//! expression may start; a regex never spans lines, which bounds a wrong guess).

use super::lex::skip_block_comment;
use super::{Import, ImportKind, Lang};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(u8),
    /// A string literal, or a template literal without substitutions.
    Str(String),
    /// A template literal with substitutions, a number or a regex.
    Other,
    /// `/// <reference path="…" />`
    Reference(String),
}

struct Token {
    tok: Tok,
    line: u32,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

const REGEX_AFTER_KEYWORDS: &[&str] = &[
    "return",
    "typeof",
    "instanceof",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "case",
    "do",
    "else",
    "yield",
    "await",
];

struct Lexer<'a> {
    text: &'a [u8],
    i: usize,
    line: u32,
    out: Vec<Token>,
    /// Brace depth at which each open `${` of a template literal resumes the template.
    templates: Vec<usize>,
    braces: usize,
}

impl Lexer<'_> {
    fn push(&mut self, tok: Tok, line: u32) {
        self.out.push(Token { tok, line });
    }

    fn regex_allowed(&self) -> bool {
        match self.out.last().map(|t| &t.tok) {
            None => true,
            Some(Tok::Punct(b')' | b']')) => false,
            Some(Tok::Punct(_)) => true,
            Some(Tok::Ident(w)) => REGEX_AFTER_KEYWORDS.contains(&w.as_str()),
            Some(Tok::Str(_) | Tok::Other | Tok::Reference(_)) => false,
        }
    }

    /// Scan a template literal body from `self.i` (just after the backtick or the `}` closing a
    /// substitution). Returns true when it ended at a `${` (a substitution follows).
    fn template(&mut self, start_line: u32, first_part: bool) {
        let t = self.text;
        let n = t.len();
        let start = self.i;
        while self.i < n {
            match t[self.i] {
                b'\\' => self.i += 2,
                b'\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                b'`' => {
                    let body = &t[start..self.i];
                    self.i += 1;
                    if first_part {
                        self.push(
                            Tok::Str(String::from_utf8_lossy(body).into_owned()),
                            start_line,
                        );
                    } else {
                        self.push(Tok::Other, start_line);
                    }
                    return;
                }
                b'$' if self.i + 1 < n && t[self.i + 1] == b'{' => {
                    self.i += 2;
                    if first_part {
                        self.push(Tok::Other, start_line);
                    }
                    self.templates.push(self.braces);
                    self.braces += 1;
                    return;
                }
                _ => self.i += 1,
            }
        }
        self.i = n;
        self.push(Tok::Other, start_line);
    }

    fn run(&mut self) {
        let t = self.text;
        let n = t.len();
        if t.starts_with(b"#!") {
            while self.i < n && t[self.i] != b'\n' {
                self.i += 1;
            }
        }
        while self.i < n {
            let b = t[self.i];
            match b {
                b'\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c' => self.i += 1,
                b'/' if self.i + 1 < n && t[self.i + 1] == b'/' => {
                    let start = self.i;
                    while self.i < n && t[self.i] != b'\n' {
                        self.i += 1;
                    }
                    if let Some(path) = reference_path(&t[start..self.i]) {
                        let line = self.line;
                        self.push(Tok::Reference(path), line);
                    }
                }
                b'/' if self.i + 1 < n && t[self.i + 1] == b'*' => {
                    self.i = skip_block_comment(t, self.i, &mut self.line);
                }
                b'/' if self.regex_allowed() => {
                    if let Some(end) = regex_end(t, self.i + 1) {
                        self.i = end;
                        let line = self.line;
                        self.push(Tok::Other, line);
                    } else {
                        let line = self.line;
                        self.push(Tok::Punct(b'/'), line);
                        self.i += 1;
                    }
                }
                b'"' | b'\'' => {
                    let start = self.i + 1;
                    let mut j = start;
                    while j < n && t[j] != b && t[j] != b'\n' {
                        if t[j] == b'\\' {
                            if j + 1 < n && t[j + 1] == b'\n' {
                                self.line += 1;
                            }
                            j += 2;
                        } else {
                            j += 1;
                        }
                    }
                    let end = j.min(n);
                    let line = self.line;
                    self.push(
                        Tok::Str(String::from_utf8_lossy(&t[start..end]).into_owned()),
                        line,
                    );
                    self.i = if end < n && t[end] == b { end + 1 } else { end };
                }
                b'`' => {
                    self.i += 1;
                    let line = self.line;
                    self.template(line, true);
                }
                b'{' => {
                    self.braces += 1;
                    let line = self.line;
                    self.push(Tok::Punct(b'{'), line);
                    self.i += 1;
                }
                b'}' => {
                    self.i += 1;
                    self.braces = self.braces.saturating_sub(1);
                    if self.templates.last() == Some(&self.braces) {
                        self.templates.pop();
                        let line = self.line;
                        self.template(line, false);
                    } else {
                        let line = self.line;
                        self.push(Tok::Punct(b'}'), line);
                    }
                }
                _ if b.is_ascii_digit() => {
                    while self.i < n && (is_ident_byte(t[self.i]) || t[self.i] == b'.') {
                        self.i += 1;
                    }
                    let line = self.line;
                    self.push(Tok::Other, line);
                }
                _ if is_ident_byte(b) => {
                    let start = self.i;
                    while self.i < n && is_ident_byte(t[self.i]) {
                        self.i += 1;
                    }
                    let line = self.line;
                    self.push(
                        Tok::Ident(String::from_utf8_lossy(&t[start..self.i]).into_owned()),
                        line,
                    );
                }
                _ => {
                    let line = self.line;
                    self.push(Tok::Punct(b), line);
                    self.i += 1;
                }
            }
        }
    }
}

/// The end (exclusive, after flags) of a regex whose body starts at `i`; `None` when the line
/// ends first (then the `/` was a division).
fn regex_end(t: &[u8], mut i: usize) -> Option<usize> {
    let n = t.len();
    let mut class = false;
    if i < n && (t[i] == b'/' || t[i] == b'*') {
        return None;
    }
    while i < n {
        match t[i] {
            b'\n' | b'\r' => return None,
            b'\\' => i += 2,
            b'[' => {
                class = true;
                i += 1
            }
            b']' => {
                class = false;
                i += 1
            }
            b'/' if !class => {
                i += 1;
                while i < n && is_ident_byte(t[i]) {
                    i += 1;
                }
                return Some(i);
            }
            _ => i += 1,
        }
    }
    None
}

/// `/// <reference path="x" />` → `x`.
fn reference_path(comment: &[u8]) -> Option<String> {
    let c = comment.strip_prefix(b"///")?;
    let s = String::from_utf8_lossy(c);
    let s = s.trim_start();
    let rest = s.strip_prefix("<reference")?;
    let at = rest.find("path")?;
    let rest = rest[at + 4..].trim_start().strip_prefix('=')?.trim_start();
    let q = rest.chars().next()?;
    if q != '"' && q != '\'' {
        return None;
    }
    let body = &rest[1..];
    let end = body.find(q)?;
    Some(body[..end].to_string())
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

fn str_at(toks: &[Token], i: usize) -> Option<&str> {
    match tok_at(toks, i) {
        Some(Tok::Str(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// After `import` / `export` clauses: find `from "x"` within the statement. Returns the index of
/// the string token.
fn find_from(toks: &[Token], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let limit = i + 4096;
    while i < toks.len() && i < limit {
        match tok_at(toks, i)? {
            Tok::Ident(w) if w == "from" && depth == 0 => {
                return str_at(toks, i + 1).map(|_| i + 1);
            }
            Tok::Ident(w) if (w == "import" || w == "export") && depth == 0 => return None,
            Tok::Ident(_) => {}
            Tok::Punct(b'{') => depth += 1,
            Tok::Punct(b'}') => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
            }
            Tok::Punct(b',' | b'*' | b'.' | b'$') => {}
            Tok::Punct(b'\n') => {}
            Tok::Str(_) if depth > 0 => {} // `{ "quoted name" as x }`
            _ => return None,
        }
        i += 1;
    }
    None
}

pub fn extract(text: &[u8]) -> Vec<Import> {
    let mut lx = Lexer {
        text,
        i: 0,
        line: 1,
        out: Vec::new(),
        templates: Vec::new(),
        braces: 0,
    };
    lx.run();
    let toks = lx.out;
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let after_dot = i > 0 && is_punct(tok_at(&toks, i - 1), b'.');
        match &t.tok {
            Tok::Reference(p) => out.push(Import::new(p.clone(), ImportKind::Reference, t.line)),
            Tok::Ident(w) if w == "import" && !after_dot => {
                let next = tok_at(&toks, i + 1);
                if is_punct(next, b'(') {
                    if let Some(s) = str_at(&toks, i + 2) {
                        if matches!(tok_at(&toks, i + 3), Some(Tok::Punct(b')' | b','))) {
                            out.push(Import::new(s, ImportKind::DynamicImport, t.line));
                        }
                    }
                } else if let Some(s) = str_at(&toks, i + 1) {
                    out.push(Import::new(s, ImportKind::Import, t.line));
                } else if matches!(next, Some(Tok::Ident(_)) | Some(Tok::Punct(b'{' | b'*'))) {
                    // import x = require("y")
                    let mut j = i + 1;
                    if is_ident(tok_at(&toks, j), "type") {
                        j += 1;
                    }
                    if matches!(tok_at(&toks, j), Some(Tok::Ident(_)))
                        && is_punct(tok_at(&toks, j + 1), b'=')
                    {
                        // the `require("y")` itself is found on its own token
                        continue;
                    }
                    if let Some(k) = find_from(&toks, i + 1) {
                        if let Some(s) = str_at(&toks, k) {
                            out.push(Import::new(s, ImportKind::Import, t.line));
                        }
                    }
                }
            }
            Tok::Ident(w) if w == "export" && !after_dot => {
                let mut j = i + 1;
                if is_ident(tok_at(&toks, j), "type") {
                    j += 1;
                }
                if matches!(tok_at(&toks, j), Some(Tok::Punct(b'{' | b'*'))) {
                    if let Some(k) = find_from(&toks, j) {
                        if let Some(s) = str_at(&toks, k) {
                            out.push(Import::new(s, ImportKind::ReExport, t.line));
                        }
                    }
                }
            }
            Tok::Ident(w) if w == "require" && !after_dot => {
                let prev_fn = i > 0 && is_ident(tok_at(&toks, i - 1), "function");
                if !prev_fn && is_punct(tok_at(&toks, i + 1), b'(') {
                    if let Some(s) = str_at(&toks, i + 2) {
                        if is_punct(tok_at(&toks, i + 3), b')') {
                            out.push(Import::new(s, ImportKind::Require, t.line));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

// ------------------------------------------------------------------ resolution order

/// For a specifier written with a JavaScript extension: the TypeScript files it also names, in
/// TypeScript's order (`tryAddingExtensions` of TypeScript's module resolver), and the other
/// JavaScript file TypeScript tries after the one written (`.js` ↔ `.jsx`).
const TS_SOURCES: &[(&str, &[&str], Option<&str>)] = &[
    (".js", &[".ts", ".tsx", ".d.ts"], Some(".jsx")),
    (".jsx", &[".tsx", ".ts", ".d.ts"], Some(".js")),
    (".mjs", &[".mts", ".d.mts"], None),
    (".cjs", &[".cts", ".d.cts"], None),
];

/// One step of resolving a specifier as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Probe<'a> {
    /// The answer also depends on which files `stem.<ext>` exist (watch the stem).
    Stem(&'a str),
    /// Try this file.
    File(String),
}

/// Whether an importing file is resolved as TypeScript resolves (`.ts .tsx .mts .cts`, and the
/// declaration files `.d.ts .d.mts .d.cts`).
pub(super) fn is_typescript(importer: &str) -> bool {
    Lang::from_path(importer) == Some(Lang::TypeScript)
}

/// How a root-relative specifier path `base` resolves before extensions are added, in order.
///
/// A TypeScript importer that writes `./x.js` means the TypeScript source: `x.ts`, `x.tsx`,
/// `x.d.ts` come before `x.js` itself even when both exist (TypeScript falls back to the file
/// written only when no TypeScript file is there), then `x.jsx`; `.mjs` names `.mts`/`.d.mts`
/// first and `.cjs` names `.cts`/`.d.cts` first. A JavaScript importer gets the file as written
/// first (as Node does), and the TypeScript source only when that file is missing (as
/// TypeScript's ESM output and bundlers expect).
pub(super) fn written_probes(base: &str, ts_importer: bool) -> Vec<Probe<'_>> {
    let mut out = Vec::with_capacity(6);
    let swap = TS_SOURCES
        .iter()
        .find_map(|(ext, tos, alt)| base.strip_suffix(ext).map(|stem| (stem, *tos, *alt)));
    let Some((stem, tos, alt)) = swap.filter(|(stem, _, _)| !stem.is_empty()) else {
        out.push(Probe::File(base.to_string()));
        return out;
    };
    if !ts_importer {
        out.push(Probe::File(base.to_string()));
    }
    out.push(Probe::Stem(stem));
    out.extend(tos.iter().map(|to| Probe::File(format!("{stem}{to}"))));
    if ts_importer {
        out.push(Probe::File(base.to_string()));
        if let Some(alt) = alt {
            out.push(Probe::File(format!("{stem}{alt}")));
        }
    }
    out
}

#[cfg(test)]
mod order_tests {
    use super::{is_typescript, written_probes, Probe};

    fn files(base: &str, ts: bool) -> Vec<String> {
        written_probes(base, ts)
            .into_iter()
            .filter_map(|p| match p {
                Probe::File(f) => Some(f),
                Probe::Stem(_) => None,
            })
            .collect()
    }

    #[test]
    fn typescript_importers_try_the_typescript_source_first() {
        assert_eq!(
            files("src/x.js", true),
            [
                "src/x.ts",
                "src/x.tsx",
                "src/x.d.ts",
                "src/x.js",
                "src/x.jsx"
            ]
        );
        assert_eq!(
            files("src/x.jsx", true),
            [
                "src/x.tsx",
                "src/x.ts",
                "src/x.d.ts",
                "src/x.jsx",
                "src/x.js"
            ]
        );
        assert_eq!(
            files("src/x.mjs", true),
            ["src/x.mts", "src/x.d.mts", "src/x.mjs"]
        );
        assert_eq!(
            files("src/x.cjs", true),
            ["src/x.cts", "src/x.d.cts", "src/x.cjs"]
        );
    }

    #[test]
    fn javascript_importers_get_the_file_as_written_first() {
        assert_eq!(
            files("src/x.js", false),
            ["src/x.js", "src/x.ts", "src/x.tsx", "src/x.d.ts"]
        );
        assert_eq!(
            files("src/x.jsx", false),
            ["src/x.jsx", "src/x.tsx", "src/x.ts", "src/x.d.ts"]
        );
        assert_eq!(files("x.mjs", false), ["x.mjs", "x.mts", "x.d.mts"]);
        assert_eq!(files("x.cjs", false), ["x.cjs", "x.cts", "x.d.cts"]);
    }

    #[test]
    fn other_specifiers_are_tried_as_written_and_the_stem_is_watched() {
        for ts in [true, false] {
            assert_eq!(written_probes("a/x", ts), [Probe::File("a/x".into())]);
            assert_eq!(written_probes("a/x.ts", ts), [Probe::File("a/x.ts".into())]);
            assert_eq!(written_probes(".js", ts), [Probe::File(".js".into())]);
            assert!(written_probes("a/x.js", ts).contains(&Probe::Stem("a/x")));
        }
    }

    #[test]
    fn typescript_importers_by_extension() {
        for p in [
            "a.ts", "a.tsx", "a.mts", "a.cts", "a.d.ts", "a.d.mts", "a.d.cts",
        ] {
            assert!(is_typescript(p), "{p}");
        }
        for p in ["a.js", "a.jsx", "a.mjs", "a.cjs", "a.json", "ts"] {
            assert!(!is_typescript(p), "{p}");
        }
    }
}
