//! Dependency extraction and resolution: imports of Python, Rust, JavaScript/TypeScript, Go and
//! C/C++ source text, resolved to repository files and kept current incrementally.
//!
//! This module is pure domain code: it never touches the file system. The caller hands it
//! root-relative, `/`-separated paths and file contents ([`DependencyIndex::upsert`],
//! [`DependencyIndex::remove`]); resolution happens in [`DependencyIndex::finish`] (also run by
//! [`DependencyIndex::take_dirty`]). The rules are the ones of DESIGN.md, "Dependency resolution".
//!
//! Layout: one extractor per language (`python`, `rust`, `js`, `go`, `c`), the manifest readers
//! (`manifest`, with a small JSON-with-comments reader in `json`), path helpers (`paths`) and the
//! incremental resolver (`index`).

mod c;
mod go;
mod index;
mod js;
mod json;
mod lex;
mod manifest;
mod paths;
mod python;
mod rust;

#[cfg(test)]
mod tests;

pub use index::DependencyIndex;

/// Source language of a file as far as dependency extraction is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    Python,
    Rust,
    JavaScript,
    TypeScript,
    Go,
    C,
    Cpp,
}

impl Lang {
    /// The language of a file, by its extension (`.d.ts` is TypeScript, `.h` is C).
    pub fn from_path(path: &str) -> Option<Lang> {
        let name = paths::file_name(path);
        let ext = match name.rfind('.') {
            Some(i) if i > 0 => &name[i + 1..],
            _ => return None,
        };
        let lang = match ext {
            "py" | "pyi" => Lang::Python,
            "rs" => Lang::Rust,
            "js" | "jsx" | "mjs" | "cjs" => Lang::JavaScript,
            "ts" | "tsx" | "mts" | "cts" => Lang::TypeScript,
            "go" => Lang::Go,
            "c" | "h" => Lang::C,
            "cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx" | "h++" | "ipp" | "tpp" | "inl"
            | "ixx" | "cppm" => Lang::Cpp,
            _ => return None,
        };
        Some(lang)
    }

    /// A short lowercase name (`python`, `rust`, `javascript`, `typescript`, `go`, `c`, `cpp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Rust => "rust",
            Lang::JavaScript => "javascript",
            Lang::TypeScript => "typescript",
            Lang::Go => "go",
            Lang::C => "c",
            Lang::Cpp => "cpp",
        }
    }
}

/// How an import was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImportKind {
    /// Python `import a.b`, JS/TS `import … from "x"` / `import "x"`, Go `import "p"`.
    Import,
    /// Python `from a import b` (the spec is `a.b`: module, then the imported name).
    FromImport,
    /// Rust `mod x;` (the spec is the module path inside the file, e.g. `inline::x`).
    Mod,
    /// Rust `use a::b` and `extern crate a` (spec `::a`).
    Use,
    /// C/C++ `#include "x.h"` (spec `x.h`) or `#include <x.h>` (spec `<x.h>`).
    Include,
    /// JS/TS `require("x")` and `import x = require("x")`.
    Require,
    /// JS/TS `import("x")`, Python `importlib.import_module("x")` / `__import__("x")`.
    DynamicImport,
    /// JS/TS `export … from "x"`.
    ReExport,
    /// TS `/// <reference path="x" />`.
    Reference,
    /// Rust `include!("x")`.
    IncludeMacro,
}

impl ImportKind {
    /// The kebab-case name used in test expectations (`import`, `from-import`, `mod`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Import => "import",
            ImportKind::FromImport => "from-import",
            ImportKind::Mod => "mod",
            ImportKind::Use => "use",
            ImportKind::Include => "include",
            ImportKind::Require => "require",
            ImportKind::DynamicImport => "dynamic-import",
            ImportKind::ReExport => "re-export",
            ImportKind::Reference => "reference",
            ImportKind::IncludeMacro => "include-macro",
        }
    }

    /// Inverse of [`ImportKind::as_str`].
    pub fn parse(s: &str) -> Option<ImportKind> {
        Some(match s {
            "import" => ImportKind::Import,
            "from-import" => ImportKind::FromImport,
            "mod" => ImportKind::Mod,
            "use" => ImportKind::Use,
            "include" => ImportKind::Include,
            "require" => ImportKind::Require,
            "dynamic-import" => ImportKind::DynamicImport,
            "re-export" => ImportKind::ReExport,
            "reference" => ImportKind::Reference,
            "include-macro" => ImportKind::IncludeMacro,
            _ => return None,
        })
    }
}

/// One import as written in a source file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Import {
    /// What is imported, as written (see [`ImportKind`] for the per-kind shape).
    pub spec: String,
    pub kind: ImportKind,
    /// 1-based line of the import statement.
    pub line: u32,
    /// Rust only: the `#[path = "…"]` attribute of a `mod` declaration (also from `cfg_attr`).
    pub path_attr: Option<String>,
}

impl Import {
    fn new(spec: impl Into<String>, kind: ImportKind, line: u32) -> Import {
        Import {
            spec: spec.into(),
            kind,
            line,
            path_attr: None,
        }
    }
}

/// Extract imports from source text. Accepts any bytes (invalid UTF-8, a BOM, CRLF, truncated
/// files); never panics and runs in time linear in the input. Comments and string literals are
/// skipped except where the string is the import spec.
pub fn extract(lang: Lang, text: &[u8]) -> Vec<Import> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    match lang {
        Lang::Python => python::extract(text),
        Lang::Rust => rust::extract(text),
        Lang::JavaScript | Lang::TypeScript => js::extract(text),
        Lang::Go => go::extract(text),
        Lang::C | Lang::Cpp => c::extract(text),
    }
}

/// A resolved dependency: this file imports the repository file `target`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Edge {
    /// Root-relative path of the imported file.
    pub target: String,
    /// The kind of the first import that produced this edge.
    pub kind: ImportKind,
    /// The line of that import.
    pub line: u32,
}

/// Settings of the resolver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveConfig {
    /// Extra C/C++ include folders (root-relative), searched after the file's own folder and the
    /// `include/` folders of its ancestors.
    pub c_include_paths: Vec<String>,
}
