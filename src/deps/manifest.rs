//! Readers for the manifests that steer resolution: `go.mod`, `Cargo.toml`, `package.json`,
//! `tsconfig.json`/`jsconfig.json` (and any `*tsconfig*.json`/`*jsconfig*.json` they extend).
//! `pyproject.toml` and `setup.py` matter only by their presence.

use super::json::{self, Value};
use super::paths;

/// What kind of manifest a path is, by its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    GoMod,
    Cargo,
    PackageJson,
    TsConfig,
    PythonProject,
}

pub fn manifest_kind(path: &str) -> Option<ManifestKind> {
    let name = paths::file_name(path);
    match name {
        "go.mod" => Some(ManifestKind::GoMod),
        "Cargo.toml" => Some(ManifestKind::Cargo),
        "package.json" => Some(ManifestKind::PackageJson),
        "pyproject.toml" | "setup.py" => Some(ManifestKind::PythonProject),
        // any JSON file may be a tsconfig `extends` target; see `is_tsconfig_name`
        _ if name.ends_with(".json") => Some(ManifestKind::TsConfig),
        _ => None,
    }
}

/// Whether a JSON file is a TypeScript/JavaScript project config by its name (other JSON files
/// count only when they hold `extends`, `baseUrl` or `paths`).
pub fn is_tsconfig_name(path: &str) -> bool {
    let name = paths::file_name(path);
    name.contains("tsconfig") || name.contains("jsconfig")
}

/// JSON files larger than this are data, not configuration: they are not parsed.
pub const MAX_CONFIG_JSON: usize = 256 * 1024;

/// The `module` path of a `go.mod`.
pub fn go_module_path(text: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    for line in text.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("module") {
            if rest.starts_with([' ', '\t', '"']) {
                let m = rest.trim().trim_matches('"').trim_matches('`').trim();
                if !m.is_empty() {
                    return Some(m.to_string());
                }
            }
        }
    }
    None
}

/// Target paths declared by a `Cargo.toml` (relative to its folder).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CargoTargets {
    /// `[lib] path`, when set.
    pub lib: Option<String>,
    /// `[[bin]]`, `[[test]]`, `[[bench]]`, `[[example]]` paths and `[package] build`.
    pub others: Vec<String>,
    /// Whether the manifest has a `[package]` table (a workspace-only manifest has none).
    pub is_package: bool,
}

/// Read the target paths of a `Cargo.toml` (a line-oriented reading of the TOML that matters).
pub fn cargo_targets(text: &[u8]) -> CargoTargets {
    let text = String::from_utf8_lossy(text);
    let mut out = CargoTargets::default();
    let mut section = String::new();
    for raw in text.lines() {
        let line = strip_toml_comment(raw).trim().to_string();
        if line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            if section == "package" {
                out.is_package = true;
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        let string = toml_string(value);
        match (section.as_str(), key) {
            ("lib", "path") => out.lib = string,
            ("bin" | "test" | "bench" | "example", "path") => out.others.extend(string),
            ("package", "build") => out.others.extend(string),
            ("", "lib") if value.starts_with('{') => {
                if let Some(p) = inline_table_path(value) {
                    out.lib = Some(p);
                }
            }
            _ => {}
        }
    }
    out
}

fn strip_toml_comment(line: &str) -> &str {
    let mut in_str: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (in_str, c) {
            (None, '#') => return &line[..i],
            (None, '"' | '\'') => in_str = Some(c),
            (Some(q), c) if c == q => in_str = None,
            _ => {}
        }
    }
    line
}

fn toml_string(value: &str) -> Option<String> {
    let q = value.chars().next()?;
    if q != '"' && q != '\'' {
        return None;
    }
    let body = &value[1..];
    let end = body.find(q)?;
    Some(body[..end].to_string())
}

fn inline_table_path(value: &str) -> Option<String> {
    let at = value.find("path")?;
    let rest = value[at + 4..].trim_start().strip_prefix('=')?.trim_start();
    toml_string(rest)
}

/// The parts of a `package.json` that resolution reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackageJson {
    pub name: Option<String>,
    /// Entry candidates for the package itself, in the order they are tried
    /// (`exports["."]` conditions, `module`, `main`, `types`, `typings`).
    pub entries: Vec<String>,
    /// Subpath exports: (`./sub` or `./sub/*`, candidate targets).
    pub subpaths: Vec<(String, Vec<String>)>,
    /// Whether `exports` declares subpaths (then other subpaths are not importable).
    pub has_subpath_exports: bool,
}

const CONDITIONS: &[&str] = &[
    "types", "import", "module", "default", "require", "node", "browser",
];

/// String leaves of an `exports` condition value, preferred conditions first.
fn export_targets(v: &Value, out: &mut Vec<String>, depth: u32) {
    if depth > 8 {
        return;
    }
    match v {
        Value::Str(s) => out.push(s.clone()),
        Value::Arr(items) => items.iter().for_each(|i| export_targets(i, out, depth + 1)),
        Value::Obj(kv) => {
            for c in CONDITIONS {
                if let Some(x) = v.get(c) {
                    export_targets(x, out, depth + 1);
                }
            }
            for (k, x) in kv {
                if !CONDITIONS.contains(&k.as_str()) {
                    export_targets(x, out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

pub fn package_json(text: &[u8]) -> PackageJson {
    let mut out = PackageJson::default();
    let Some(v) = json::parse(text) else {
        return out;
    };
    out.name = v.get("name").and_then(|n| n.as_str()).map(str::to_string);
    if let Some(exports) = v.get("exports") {
        match exports {
            Value::Obj(kv) if kv.iter().any(|(k, _)| k.starts_with('.')) => {
                out.has_subpath_exports = true;
                for (k, x) in kv {
                    let mut t = Vec::new();
                    export_targets(x, &mut t, 0);
                    if k == "." {
                        out.entries.extend(t);
                    } else {
                        out.subpaths.push((k.clone(), t));
                    }
                }
            }
            other => export_targets(other, &mut out.entries, 0),
        }
    }
    for key in ["module", "main", "types", "typings"] {
        if let Some(s) = v.get(key).and_then(|x| x.as_str()) {
            out.entries.push(s.to_string());
        }
    }
    out
}

/// The parts of a tsconfig/jsconfig that resolution reads (before `extends` is applied).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TsConfig {
    pub extends: Vec<String>,
    pub base_url: Option<String>,
    /// `None` when the file does not set `paths`.
    pub paths: Option<Vec<(String, Vec<String>)>>,
}

pub fn tsconfig(text: &[u8]) -> TsConfig {
    let mut out = TsConfig::default();
    let Some(v) = json::parse(text) else {
        return out;
    };
    match v.get("extends") {
        Some(Value::Str(s)) => out.extends.push(s.clone()),
        Some(Value::Arr(items)) => out
            .extends
            .extend(items.iter().filter_map(|i| i.as_str()).map(str::to_string)),
        _ => {}
    }
    if let Some(co) = v.get("compilerOptions") {
        out.base_url = co
            .get("baseUrl")
            .and_then(|b| b.as_str())
            .map(str::to_string);
        if let Some(Value::Obj(kv)) = co.get("paths") {
            let list = kv
                .iter()
                .map(|(k, x)| {
                    let targets = match x {
                        Value::Arr(a) => a
                            .iter()
                            .filter_map(|i| i.as_str())
                            .map(str::to_string)
                            .collect(),
                        Value::Str(s) => vec![s.clone()],
                        _ => Vec::new(),
                    };
                    (k.clone(), targets)
                })
                .collect();
            out.paths = Some(list);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_manifests() {
        assert_eq!(
            go_module_path(b"// c\nmodule \"example.com/x\" // y\n\ngo 1.22\n"),
            Some("example.com/x".into())
        );
        let c = cargo_targets(
            b"[package]\nname='a'\nbuild = \"b.rs\"\n[lib]\npath = \"lib/l.rs\" # c\n[[bin]]\nname='x'\npath=\"tools/x.rs\"\n",
        );
        assert_eq!(c.lib.as_deref(), Some("lib/l.rs"));
        assert_eq!(c.others, vec!["b.rs".to_string(), "tools/x.rs".to_string()]);
        let p = package_json(
            br#"{"name":"@s/p","main":"dist/i.js","exports":{".":{"import":"./src/i.ts","types":"./d.ts"},"./u/*":"./src/u/*.ts"}}"#,
        );
        assert_eq!(p.name.as_deref(), Some("@s/p"));
        assert_eq!(p.entries, vec!["./d.ts", "./src/i.ts", "dist/i.js"]);
        assert_eq!(p.subpaths.len(), 1);
        let t = tsconfig(br#"{"extends": "./base.json", "compilerOptions": {"baseUrl": ".", "paths": {"@/*": ["src/*"]},}}"#);
        assert_eq!(t.extends, vec!["./base.json"]);
        assert_eq!(t.paths.unwrap()[0].1, vec!["src/*"]);
    }
}
