//! Classification of a file from its path and first bytes: language, purpose, description,
//! and the component it belongs to.

use std::collections::HashSet;

use super::record::Purpose;
use crate::paths::RelPath;

/// How many leading bytes classification looks at.
pub const HEAD_BYTES: usize = 8192;

/// What classification decided about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    pub file_type: String,
    pub purpose: Purpose,
    pub description: String,
}

/// File names that mark a component's root folder.
pub const MANIFESTS: &[&str] = &[
    "Cargo.toml",
    "package.json",
    "pyproject.toml",
    "setup.py",
    "go.mod",
    "CMakeLists.txt",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
];

const BUILD_FILES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "go.mod",
    "go.sum",
    "CMakeLists.txt",
    "Makefile",
    "makefile",
    "GNUmakefile",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "build.rs",
    "Dockerfile",
    "meson.build",
    "BUILD",
    "BUILD.bazel",
    "WORKSPACE",
    "requirements.txt",
];

/// Classifies a file; `head` is up to [`HEAD_BYTES`] of its content (empty when not read).
pub fn classify(path: &RelPath, head: &[u8]) -> Classification {
    let name = String::from_utf8_lossy(path.file_name()).into_owned();
    let file_type = file_type(&name, head);
    let purpose = purpose(path, &name, &file_type, head);
    let description = description(&file_type, head);
    Classification {
        file_type,
        purpose,
        description,
    }
}

fn extension(name: &str) -> Option<String> {
    let dot = name.rfind('.')?;
    if dot == 0 {
        return None;
    }
    Some(name[dot + 1..].to_ascii_lowercase())
}

/// The language or format of a file from its name, then its shebang, then its bytes.
pub fn file_type(name: &str, head: &[u8]) -> String {
    let by_name = match name {
        "Makefile" | "makefile" | "GNUmakefile" => Some("makefile"),
        "Dockerfile" => Some("dockerfile"),
        "CMakeLists.txt" => Some("cmake"),
        "go.mod" => Some("go-module"),
        "go.sum" => Some("go-sum"),
        ".gitignore" | ".ignore" | ".dockerignore" => Some("gitignore"),
        ".gitattributes" => Some("gitattributes"),
        ".editorconfig" => Some("editorconfig"),
        "LICENSE" | "COPYING" | "NOTICE" | "AUTHORS" => Some("text"),
        "Cargo.lock" => Some("toml"),
        _ => None,
    };
    if let Some(t) = by_name {
        return t.to_string();
    }
    if name.ends_with(".d.ts") {
        return "typescript".to_string();
    }
    let by_ext = extension(name).and_then(|ext| {
        Some(match ext.as_str() {
            "py" | "pyi" | "pyw" => "python",
            "rs" => "rust",
            "ts" | "tsx" | "mts" | "cts" => "typescript",
            "js" | "jsx" | "mjs" | "cjs" => "javascript",
            "go" => "go",
            "c" | "h" => "c",
            "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" | "ipp" => "cpp",
            "java" => "java",
            "kt" | "kts" => "kotlin",
            "rb" => "ruby",
            "php" => "php",
            "cs" => "csharp",
            "swift" => "swift",
            "scala" => "scala",
            "sh" | "bash" | "zsh" => "shell",
            "ps1" => "powershell",
            "lua" => "lua",
            "pl" | "pm" => "perl",
            "r" => "r",
            "sql" => "sql",
            "proto" => "protobuf",
            "md" | "markdown" => "markdown",
            "rst" => "restructuredtext",
            "txt" => "text",
            "adoc" => "asciidoc",
            "html" | "htm" => "html",
            "css" => "css",
            "scss" | "sass" => "scss",
            "json" | "jsonc" => "json",
            "yaml" | "yml" => "yaml",
            "toml" => "toml",
            "ini" | "cfg" | "conf" => "ini",
            "xml" => "xml",
            "csv" | "tsv" => "csv",
            "svg" => "svg",
            "lock" => "lockfile",
            "png" | "jpg" | "jpeg" | "gif" | "ico" | "webp" | "bmp" | "pdf" | "zip" | "gz"
            | "tgz" | "xz" | "bz2" | "zst" | "tar" | "jar" | "so" | "a" | "o" | "dylib" | "dll"
            | "exe" | "bin" | "wasm" | "woff" | "woff2" | "ttf" | "otf" | "mp3" | "mp4" | "wav"
            | "ogg" | "sqlite" | "db" | "pyc" | "class" => "binary",
            _ => return None,
        })
    });
    if let Some(t) = by_ext {
        return t.to_string();
    }
    if let Some(t) = shebang_type(head) {
        return t.to_string();
    }
    if head.contains(&0) {
        return "binary".to_string();
    }
    if head.is_empty() || std::str::from_utf8(trim_partial_utf8(head)).is_ok() {
        "text".to_string()
    } else {
        "binary".to_string()
    }
}

/// Drops a UTF-8 sequence cut off at the end of a head buffer.
fn trim_partial_utf8(head: &[u8]) -> &[u8] {
    let start = head.len().saturating_sub(3);
    for i in (start..head.len()).rev() {
        if head[i] & 0xC0 == 0xC0 {
            return &head[..i];
        }
        if head[i] & 0x80 == 0 {
            break;
        }
    }
    head
}

fn shebang_type(head: &[u8]) -> Option<&'static str> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let mut prog = words.next()?.rsplit('/').next()?.to_string();
    if prog == "env" {
        prog = words.find(|w| !w.starts_with('-'))?.to_string();
    }
    Some(
        match prog.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.') {
            "python" => "python",
            "sh" | "bash" | "zsh" | "dash" | "ksh" => "shell",
            "node" | "deno" | "bun" => "javascript",
            "ruby" => "ruby",
            "perl" => "perl",
            "lua" => "lua",
            _ => return None,
        },
    )
}

const VENDOR_DIRS: &[&str] = &[
    "vendor",
    "vendored",
    "third_party",
    "third-party",
    "node_modules",
    "external",
];
const TEST_DIRS: &[&str] = &[
    "test",
    "tests",
    "__tests__",
    "spec",
    "specs",
    "testing",
    "testdata",
];
const DOC_DIRS: &[&str] = &["doc", "docs", "documentation"];

fn purpose(path: &RelPath, name: &str, file_type: &str, head: &[u8]) -> Purpose {
    let text = String::from_utf8_lossy(path.as_bytes());
    let dirs: Vec<&str> = text.split('/').collect();
    let dirs = &dirs[..dirs.len().saturating_sub(1)];
    if dirs.iter().any(|d| VENDOR_DIRS.contains(d)) {
        return Purpose::Vendored;
    }
    if is_generated(name, head) {
        return Purpose::Generated;
    }
    if BUILD_FILES.contains(&name) || file_type == "go-module" {
        return Purpose::Build;
    }
    let lower = name.to_ascii_lowercase();
    let is_code = matches!(
        file_type,
        "python"
            | "rust"
            | "typescript"
            | "javascript"
            | "go"
            | "c"
            | "cpp"
            | "java"
            | "kotlin"
            | "ruby"
            | "php"
            | "csharp"
            | "swift"
            | "scala"
            | "shell"
    );
    if is_code
        && (dirs.iter().any(|d| TEST_DIRS.contains(d))
            || lower.starts_with("test_")
            || lower.ends_with("_test.go")
            || lower.ends_with("_test.py")
            || lower.ends_with("_test.rs")
            || lower.contains(".test.")
            || lower.contains(".spec.")
            || lower == "conftest.py")
    {
        return Purpose::Test;
    }
    match file_type {
        "markdown" | "restructuredtext" | "asciidoc" => return Purpose::Docs,
        "text" if dirs.iter().any(|d| DOC_DIRS.contains(d)) || lower.starts_with("readme") => {
            return Purpose::Docs
        }
        "json" | "yaml" | "toml" | "ini" | "xml" | "gitignore" | "gitattributes"
        | "editorconfig" | "dockerfile" | "lockfile" => return Purpose::Config,
        "makefile" | "cmake" => return Purpose::Build,
        "csv" | "sql" => return Purpose::Data,
        "svg" | "css" | "scss" => return Purpose::Asset,
        _ => {}
    }
    if dirs.iter().any(|d| DOC_DIRS.contains(d)) && !is_code {
        return Purpose::Docs;
    }
    if file_type == "binary" {
        let ext = extension(name).unwrap_or_default();
        return match ext.as_str() {
            "png" | "jpg" | "jpeg" | "gif" | "ico" | "webp" | "bmp" | "woff" | "woff2" | "ttf"
            | "otf" | "mp3" | "mp4" | "wav" | "ogg" | "pdf" => Purpose::Asset,
            _ => Purpose::Data,
        };
    }
    if is_code || file_type == "protobuf" || file_type == "html" {
        return Purpose::Source;
    }
    Purpose::Other
}

fn is_generated(name: &str, head: &[u8]) -> bool {
    if name.ends_with(".pb.go") || name.ends_with("_pb2.py") || name.ends_with(".generated.ts") {
        return true;
    }
    let window = &head[..head.len().min(2048)];
    let text = text_of(window);
    text.contains("DO NOT EDIT") || text.contains("@generated") || text.contains("<auto-generated")
}

/// Bytes as text: borrowed when they are valid UTF-8 (checked with the fast validator), else
/// with replacement characters.
fn text_of(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The first line of the file's own doc comment or docstring.
fn description(file_type: &str, head: &[u8]) -> String {
    /// Where a format keeps its doc comment.
    enum Doc {
        Docstring,
        Lines(&'static [&'static str]),
        Heading,
        Block,
    }
    // Decide before decoding: most of a cold index's files are read once, and decoding the
    // heads of formats without doc comments cost as much as hashing them.
    let doc = match file_type {
        "python" => Doc::Docstring,
        "rust" => Doc::Lines(&["//!"]),
        "go" => Doc::Lines(&["//"]),
        "markdown" => Doc::Heading,
        "shell" | "ruby" | "perl" | "yaml" | "toml" => Doc::Lines(&["#"]),
        "typescript" | "javascript" | "c" | "cpp" | "java" | "kotlin" | "csharp" | "swift"
        | "scala" | "php" | "css" | "scss" | "protobuf" => Doc::Block,
        _ => return String::new(),
    };
    let text = text_of(trim_partial_utf8(head));
    let text = text.trim_start_matches('\u{feff}');
    let found = match doc {
        Doc::Docstring => python_docstring(text),
        Doc::Lines(markers) => line_comment_block(text, markers),
        Doc::Heading => text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim().to_string()),
        Doc::Block => block_comment(text).or_else(|| line_comment_block(text, &["///", "//"])),
    };
    found
        .map(|s| s.chars().take(200).collect::<String>())
        .unwrap_or_default()
}

fn first_meaningful(lines: impl Iterator<Item = String>) -> Option<String> {
    lines
        .map(|l| l.trim().to_string())
        .find(|l| !l.is_empty() && l.chars().any(|c| c.is_alphanumeric()))
}

fn python_docstring(text: &str) -> Option<String> {
    let mut rest = text;
    // Skip a shebang, encoding line, blank lines and comments before the docstring.
    loop {
        let trimmed = rest.trim_start();
        if trimmed.starts_with('#') {
            rest = trimmed.split_once('\n').map(|(_, r)| r).unwrap_or("");
        } else {
            rest = trimmed;
            break;
        }
    }
    let rest = rest.trim_start_matches(['r', 'R', 'u', 'U']);
    for quote in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(body) = rest.strip_prefix(quote) {
            let end = body.find(quote).unwrap_or(body.len());
            return first_meaningful(body[..end].lines().map(str::to_string));
        }
    }
    None
}

fn line_comment_block(text: &str, markers: &[&str]) -> Option<String> {
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("#!") {
            continue;
        }
        let marker = markers.iter().find(|m| t.starts_with(**m))?;
        let body = t[marker.len()..].trim();
        if body.is_empty() || body.starts_with("+build") || body.starts_with("go:build") {
            continue;
        }
        if body.starts_with("-*-") || body.contains("SPDX-License-Identifier") {
            continue;
        }
        return Some(body.to_string());
    }
    None
}

fn block_comment(text: &str) -> Option<String> {
    let t = text.trim_start();
    let t = if t.starts_with("#!") {
        t.split_once('\n')
            .map(|(_, r)| r.trim_start())
            .unwrap_or("")
    } else {
        t
    };
    let body = t.strip_prefix("/*")?;
    let end = body.find("*/").unwrap_or(body.len());
    first_meaningful(
        body[..end]
            .lines()
            .map(|l| {
                l.trim()
                    .trim_start_matches('*')
                    .trim_start_matches('!')
                    .to_string()
            })
            .filter(|l| !l.trim().starts_with('@') && !l.contains("SPDX-License-Identifier")),
    )
}

/// The folders holding a manifest (component roots), from the set of catalogued paths.
pub fn manifest_dirs<'a>(paths: impl Iterator<Item = &'a RelPath>) -> HashSet<Vec<u8>> {
    let mut dirs = HashSet::new();
    for path in paths {
        let name = path.file_name();
        if MANIFESTS.iter().any(|m| m.as_bytes() == name) {
            let dir = path.ancestors().next().unwrap_or(b"");
            dirs.insert(dir.to_vec());
        }
    }
    dirs
}

/// The component of a file: its nearest ancestor folder holding a manifest, else its top-level
/// folder, else "." for files at the root.
pub fn component_of(path: &RelPath, manifest_dirs: &HashSet<Vec<u8>>) -> String {
    component_where(path, |dir| manifest_dirs.contains(dir))
}

/// The component rule with the manifest test supplied by the caller (`has_manifest(dir)`,
/// `b""` being the root): the nearest ancestor for which it holds, else the top-level folder,
/// else ".".
pub fn component_where(path: &RelPath, mut has_manifest: impl FnMut(&[u8]) -> bool) -> String {
    for dir in path.ancestors() {
        if has_manifest(dir) {
            return String::from_utf8_lossy(dir).into_owned();
        }
    }
    if has_manifest(b"") {
        return ".".to_string();
    }
    match path.ancestors().last() {
        Some(top) => String::from_utf8_lossy(top).into_owned(),
        None => ".".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(path: &str, head: &str) -> Classification {
        classify(&RelPath::parse(path.as_bytes()).unwrap(), head.as_bytes())
    }

    #[test]
    fn languages_and_purposes() {
        let cases = [
            ("src/lib.rs", "", "rust", Purpose::Source),
            ("tests/test_x.py", "", "python", Purpose::Test),
            ("go/pkg/a_test.go", "", "go", Purpose::Test),
            ("web/src/a.test.ts", "", "typescript", Purpose::Test),
            ("web/src/types.d.ts", "", "typescript", Purpose::Source),
            ("vendor/lib/lib.py", "", "python", Purpose::Vendored),
            (
                "go/gen/types.pb.go",
                "// Code generated by protoc. DO NOT EDIT.",
                "go",
                Purpose::Generated,
            ),
            ("README.md", "# Title", "markdown", Purpose::Docs),
            ("Cargo.toml", "", "toml", Purpose::Build),
            ("go/go.mod", "module x", "go-module", Purpose::Build),
            ("c/Makefile", "", "makefile", Purpose::Build),
            ("web/package.json", "{}", "json", Purpose::Build),
            ("config/app.yaml", "", "yaml", Purpose::Config),
            (".gitignore", "", "gitignore", Purpose::Config),
            ("assets/img.png", "\u{0}PNG", "binary", Purpose::Asset),
            ("data/blob.bin", "\u{0}", "binary", Purpose::Data),
            (
                "bin/tool",
                "#!/usr/bin/env python3\n",
                "python",
                Purpose::Source,
            ),
            ("notes", "plain words", "text", Purpose::Other),
        ];
        for (path, head, ty, purpose) in cases {
            let got = c(path, head);
            assert_eq!(got.file_type, ty, "{path}");
            assert_eq!(got.purpose, purpose, "{path}");
        }
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            c(
                "a.py",
                "#!/usr/bin/env python\n\"\"\"Fetch things.\n\nMore.\"\"\"\n"
            )
            .description,
            "Fetch things."
        );
        assert_eq!(
            c("a.py", "'''\n   Spread over lines.\n'''").description,
            "Spread over lines."
        );
        assert_eq!(
            c("lib.rs", "//! The crate root.\n//! More.\nuse x;").description,
            "The crate root."
        );
        assert_eq!(
            c("a.go", "// Package foo does bar.\npackage foo").description,
            "Package foo does bar."
        );
        assert_eq!(
            c("a.ts", "/**\n * Renders a chart.\n * @module x\n */").description,
            "Renders a chart."
        );
        assert_eq!(
            c("a.c", "/* SPDX-License-Identifier: MIT */\nint x;").description,
            ""
        );
        assert_eq!(
            c("doc.md", "\n## Install guide\n").description,
            "Install guide"
        );
        assert_eq!(c("a.rs", "fn main() {}").description, "");
        assert_eq!(c("x.py", "\"\"\"unterminated").description, "unterminated");
    }

    #[test]
    fn binary_and_partial_utf8() {
        assert_eq!(file_type("blob", b"\x00\x01"), "binary");
        assert_eq!(file_type("blob", "caf\u{e9}".as_bytes()), "text");
        // A multi-byte character cut at the end of the head is still text.
        assert_eq!(file_type("blob", &"caf\u{e9}".as_bytes()[..4]), "text");
        assert_eq!(file_type("blob", b"\xff\xfe\xfd"), "binary");
    }

    #[test]
    fn components() {
        let paths: Vec<RelPath> = [
            "rust/crate0/Cargo.toml",
            "rust/crate0/src/lib.rs",
            "docs/a.md",
            "top.txt",
        ]
        .iter()
        .map(|p| RelPath::parse(p.as_bytes()).unwrap())
        .collect();
        let dirs = manifest_dirs(paths.iter());
        assert_eq!(component_of(&paths[1], &dirs), "rust/crate0");
        assert_eq!(component_of(&paths[0], &dirs), "rust/crate0");
        assert_eq!(component_of(&paths[2], &dirs), "docs");
        assert_eq!(component_of(&paths[3], &dirs), ".");
    }
}
