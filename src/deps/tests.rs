//! Tests of the dependency module: data-driven extractor cases (`testdata/`), data-driven
//! resolution cases (`testdata/resolve/`), resolution on small in-memory repositories, the
//! incremental-equals-cold property, and robustness on any bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

// ------------------------------------------------------------------ data-driven extraction

/// The `testdata` folder beside this file. `file!()` is relative to the workspace root cargo ran
/// rustc from, which is the package folder (`CARGO_MANIFEST_DIR`) or one of its ancestors; an
/// absolute `file!()` is used as is. This works whichever crate includes the module.
fn testdata_dir() -> PathBuf {
    let file = Path::new(file!());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for base in manifest.ancestors() {
        let candidate = base.join(file);
        if candidate.is_file() {
            return candidate.parent().unwrap().join("testdata");
        }
    }
    panic!(
        "cannot locate {} from {}",
        file.display(),
        manifest.display()
    );
}

fn render(imports: &[Import]) -> String {
    let mut s = String::new();
    for i in imports {
        s.push_str(&format!("{} {} {}", i.kind.as_str(), i.spec, i.line));
        if let Some(p) = &i.path_attr {
            s.push_str(&format!(" path={p}"));
        }
        s.push('\n');
    }
    s
}

fn normalize_expect(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn case_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![testdata_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|e| e != "expect" && e != "md" && e != "case")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every `testdata/<lang>/<case>.<ext>` must extract exactly the imports listed in
/// `<case>.<ext>.expect` (`kind spec line [path=…]` per line; `#` comments). Set
/// `UPDATE_EXPECT=1` to (re)write the expectation files from the current output.
#[test]
fn extractor_cases() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    let cases = case_files();
    assert!(cases.len() >= 10, "too few cases found: {}", cases.len());
    for case in cases {
        let name = case.to_string_lossy().to_string();
        let lang = Lang::from_path(&name).unwrap_or_else(|| panic!("no language for {name}"));
        let text = std::fs::read(&case).unwrap();
        let got = render(&extract(lang, &text));
        let expect_path = PathBuf::from(format!("{name}.expect"));
        if update {
            std::fs::write(&expect_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expect_path)
            .unwrap_or_else(|_| panic!("missing {}", expect_path.display()));
        if normalize_expect(&want) != got {
            failures.push(format!(
                "{name}\n--- want\n{}--- got\n{got}",
                normalize_expect(&want)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------------------ data-driven resolution

/// One `testdata/resolve/<case>.case`: a small repository and the edges it must have.
struct ResolveCase {
    name: String,
    files: Vec<(String, String)>,
    /// (importer, its edge targets in order)
    expect: Vec<(String, Vec<String>)>,
}

/// Parses a case: `== PATH` starts a file (the lines up to the next `==` or `->` are its
/// text), `-> IMPORTER: TARGET…` lists an importer's edges in order (none after the colon:
/// no edge); `#` lines outside files are comments.
fn parse_case(name: &str, text: &str) -> ResolveCase {
    let mut case = ResolveCase {
        name: name.to_string(),
        files: Vec::new(),
        expect: Vec::new(),
    };
    let mut in_file = false;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("== ") {
            case.files.push((path.trim().to_string(), String::new()));
            in_file = true;
        } else if let Some(rest) = line.strip_prefix("-> ") {
            let (importer, targets) = rest
                .split_once(':')
                .unwrap_or_else(|| panic!("{name}: `-> IMPORTER: TARGETS` expected: {line}"));
            case.expect.push((
                importer.trim().to_string(),
                targets.split_whitespace().map(str::to_string).collect(),
            ));
            in_file = false;
        } else if in_file {
            let text = &mut case.files.last_mut().unwrap().1;
            text.push_str(line);
            text.push('\n');
        } else {
            let l = line.trim();
            assert!(
                l.is_empty() || l.starts_with('#'),
                "{name}: stray line {line:?}"
            );
        }
    }
    assert!(!case.expect.is_empty(), "{name}: no `->` expectation");
    case
}

fn resolve_cases() -> Vec<ResolveCase> {
    let dir = testdata_dir().join("resolve");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            parse_case(&name, &std::fs::read_to_string(p).unwrap())
        })
        .collect()
}

/// Every edge and external of every file of `files`.
fn all_results(idx: &DependencyIndex, files: &[(String, String)]) -> Snapshot {
    let mut out = BTreeMap::new();
    for (p, _) in files {
        let e = idx.edges(p).to_vec();
        let x = idx.externals(p).to_vec();
        let d = idx.dependents(p);
        if !e.is_empty() || !x.is_empty() || !d.is_empty() {
            out.insert(p.clone(), (e, x, d));
        }
    }
    out
}

fn cold(files: &[(String, String)]) -> DependencyIndex {
    let mut idx = DependencyIndex::new(ResolveConfig::default());
    for (p, t) in files {
        idx.upsert(p, t.as_bytes());
    }
    idx.finish();
    idx
}

/// Every `testdata/resolve/*.case` resolves as it says, built at once; and the same graph
/// results live: with each file arriving last (a `.ts` appearing beside an existing `.js`
/// re-resolves its importers), each file removed (equal to a cold index without it), and the
/// files added in reverse order.
#[test]
fn resolution_cases() {
    let cases = resolve_cases();
    assert!(
        cases.len() >= 8,
        "too few resolution cases: {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let idx = cold(&case.files);
        for (importer, want) in &case.expect {
            let got = targets(&idx, importer);
            if &got != want {
                failures.push(format!(
                    "{}: {importer}: want {want:?}, got {got:?}",
                    case.name
                ));
            }
        }
        let whole = all_results(&idx, &case.files);
        for (i, (path, text)) in case.files.iter().enumerate() {
            let mut others = case.files.clone();
            others.remove(i);
            // The file arrives after the others were resolved.
            let mut live = cold(&others);
            live.upsert(path, text.as_bytes());
            live.finish();
            if all_results(&live, &case.files) != whole {
                failures.push(format!("{}: live differs after {path} arrived", case.name));
            }
            // The file goes away again.
            live.remove(path);
            live.finish();
            if all_results(&live, &case.files) != all_results(&cold(&others), &case.files) {
                failures.push(format!("{}: live differs after {path} left", case.name));
            }
        }
        let reversed: Vec<(String, String)> = case.files.iter().rev().cloned().collect();
        if all_results(&cold(&reversed), &case.files) != whole {
            failures.push(format!(
                "{}: the insertion order changed the graph",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------------------ resolution

fn build(files: &[(&str, &str)]) -> DependencyIndex {
    let mut idx = DependencyIndex::new(ResolveConfig::default());
    for (p, t) in files {
        idx.upsert(p, t.as_bytes());
    }
    idx.finish();
    idx
}

fn targets(idx: &DependencyIndex, path: &str) -> Vec<String> {
    idx.edges(path).iter().map(|e| e.target.clone()).collect()
}

#[test]
fn python_resolution() {
    let idx = build(&[
        ("app/main.py", "import pkg.mod\nimport pkg\nfrom pkg import sub, thing\nfrom pkg.sub import x\nimport numpy as np\nfrom os import path\n"),
        ("pkg/__init__.py", "from . import mod\nfrom .sub import y\nfrom .. import nothing\n"),
        ("pkg/mod.py", "from .sub.deep import z\nfrom . import *\n"),
        ("pkg/sub/__init__.py", ""),
        ("pkg/sub/deep.py", "from ...pkg import mod\n"),
        // a package beats a module of the same name
        ("both.py", ""),
        ("both/__init__.py", ""),
        ("user.py", "import both\nimport importlib\nm = importlib.import_module('pkg.mod')\n"),
        // source roots: src/ and folders with pyproject.toml
        ("src/lib1/__init__.py", ""),
        ("libs/two/pyproject.toml", "[project]\nname='two'\n"),
        ("libs/two/two/core.py", "import lib1\n"),
        ("tests/test_x.py", "import two.core\nimport lib1\n"),
    ]);
    assert_eq!(
        targets(&idx, "app/main.py"),
        vec!["pkg/mod.py", "pkg/__init__.py", "pkg/sub/__init__.py"]
    );
    assert_eq!(
        idx.externals("app/main.py"),
        &["numpy".to_string(), "os".to_string()]
    );
    assert_eq!(
        targets(&idx, "pkg/__init__.py"),
        vec!["pkg/mod.py", "pkg/sub/__init__.py"]
    );
    assert_eq!(
        targets(&idx, "pkg/mod.py"),
        vec!["pkg/sub/deep.py", "pkg/__init__.py"]
    );
    assert_eq!(targets(&idx, "pkg/sub/deep.py"), vec!["pkg/mod.py"]);
    assert_eq!(
        targets(&idx, "user.py"),
        vec!["both/__init__.py", "pkg/mod.py"]
    );
    assert_eq!(
        targets(&idx, "libs/two/two/core.py"),
        vec!["src/lib1/__init__.py"]
    );
    assert_eq!(
        targets(&idx, "tests/test_x.py"),
        vec!["libs/two/two/core.py", "src/lib1/__init__.py"]
    );
    assert_eq!(
        idx.dependents("pkg/mod.py"),
        vec![
            "app/main.py",
            "pkg/__init__.py",
            "pkg/sub/deep.py",
            "user.py"
        ]
    );
}

#[test]
fn rust_resolution() {
    let idx = build(&[
        ("Cargo.toml", "[package]\nname = \"x\"\n[[bin]]\nname = \"tool\"\npath = \"tools/tool.rs\"\n"),
        (
            "src/lib.rs",
            "mod a;\npub mod b;\n#[path = \"weird/c_impl.rs\"]\nmod c;\n#[cfg_attr(unix, path = \"plat/unix.rs\")]\nmod plat;\nmod inline {\n    mod nested;\n}\ncfg_if! { mod macro_mod; }\nuse crate::a::Thing;\nuse std::fmt;\ninclude!(\"gen.rs\");\n",
        ),
        ("src/a.rs", "mod child;\nuse super::b::{self, Other};\nuse crate::inline::nested::N;\nuse self::child::C;\n"),
        ("src/a/child.rs", "use crate::c::sub::S;\nuse super::super::b;\n"),
        ("src/b/mod.rs", "pub mod leaf;\n"),
        ("src/b/leaf.rs", "use crate::b;\nuse crate::Thing;\n"),
        ("src/weird/c_impl.rs", "mod sub;\n"),
        ("src/weird/sub.rs", ""),
        ("src/plat/unix.rs", ""),
        ("src/inline/nested.rs", "use crate::a::child;\n"),
        ("src/macro_mod.rs", ""),
        ("src/gen.rs", ""),
        ("tools/tool.rs", "mod helper;\nuse helper::H;\nuse x::a;\n"),
        ("tools/helper.rs", ""),
        ("tests/it.rs", "mod common;\n"),
        ("tests/common/mod.rs", ""),
        ("src/orphan.rs", "mod never;\n"),
    ]);
    assert_eq!(
        targets(&idx, "src/lib.rs"),
        vec![
            "src/a.rs",
            "src/b/mod.rs",
            "src/weird/c_impl.rs",
            "src/plat/unix.rs",
            "src/inline/nested.rs",
            "src/macro_mod.rs",
            "src/gen.rs"
        ]
    );
    assert_eq!(idx.externals("src/lib.rs"), &["std".to_string()]);
    assert_eq!(
        targets(&idx, "src/a.rs"),
        vec!["src/a/child.rs", "src/b/mod.rs", "src/inline/nested.rs"]
    );
    assert_eq!(
        targets(&idx, "src/a/child.rs"),
        vec!["src/weird/sub.rs", "src/b/mod.rs"]
    );
    assert_eq!(
        targets(&idx, "src/b/leaf.rs"),
        vec!["src/b/mod.rs", "src/lib.rs"]
    );
    assert_eq!(
        targets(&idx, "src/weird/c_impl.rs"),
        vec!["src/weird/sub.rs"]
    );
    assert_eq!(
        targets(&idx, "src/inline/nested.rs"),
        vec!["src/a/child.rs"]
    );
    assert_eq!(targets(&idx, "tools/tool.rs"), vec!["tools/helper.rs"]);
    assert_eq!(idx.externals("tools/tool.rs"), &["x".to_string()]);
    assert_eq!(targets(&idx, "tests/it.rs"), vec!["tests/common/mod.rs"]);
}

#[test]
fn js_resolution() {
    let idx = build(&[
        ("tsconfig.base.json", "{ \"compilerOptions\": { \"baseUrl\": \".\", \"paths\": { \"@app/*\": [\"app/src/*\"], \"exact\": [\"app/src/exact.ts\"] } } }"),
        ("app/tsconfig.json", "{ // comment\n \"extends\": \"../tsconfig.base.json\", }"),
        ("app/src/main.ts", "import a from './a.js';\nimport { b } from './b';\nimport dir from './dir';\nimport x from '@app/x';\nimport e from 'exact';\nimport lib from 'libpkg';\nimport sub from 'libpkg/util';\nimport React from 'react';\nimport fs from 'node:fs';\nimport d from './data.json';\nexport * from './m.mjs';\nconst s = require('../legacy');\nconst l = () => import('./lazy');\n/// <reference path=\"./types.d.ts\" />\nimport c from './c';\n"),
        ("app/src/a.ts", ""),
        ("app/src/b.tsx", ""),
        ("app/src/c.d.ts", ""),
        ("app/src/dir/index.ts", ""),
        ("app/src/x.ts", ""),
        ("app/src/exact.ts", ""),
        ("app/src/data.json", "{}"),
        ("app/src/m.mts", ""),
        ("app/legacy/index.js", ""),
        ("app/src/lazy.jsx", ""),
        ("app/src/types.d.ts", ""),
        ("packages/libpkg/package.json", "{\"name\": \"libpkg\", \"main\": \"dist/index.js\", \"exports\": {\".\": {\"import\": \"./src/index.js\"}, \"./util\": \"./src/util.ts\"}}"),
        ("packages/libpkg/src/index.ts", ""),
        ("packages/libpkg/src/util.ts", ""),
    ]);
    assert_eq!(
        targets(&idx, "app/src/main.ts"),
        vec![
            "app/src/a.ts",
            "app/src/b.tsx",
            "app/src/dir/index.ts",
            "app/src/x.ts",
            "app/src/exact.ts",
            "packages/libpkg/src/index.ts",
            "packages/libpkg/src/util.ts",
            "app/src/data.json",
            "app/src/m.mts",
            "app/legacy/index.js",
            "app/src/lazy.jsx",
            "app/src/types.d.ts",
            "app/src/c.d.ts",
        ]
    );
    assert_eq!(
        idx.externals("app/src/main.ts"),
        &["react".to_string(), "node:fs".to_string()]
    );
}

#[test]
fn go_resolution() {
    let idx = build(&[
        ("go.mod", "module example.com/m\n\ngo 1.22\n"),
        ("cmd/app/main.go", "package main\n\nimport (\n\t\"fmt\"\n\tu \"example.com/m/util\"\n\t_ \"example.com/m/empty\"\n\t\"example.com/other/lib\"\n)\n"),
        ("util/a.go", "package util\n"),
        ("util/b.go", "package util\n"),
        ("util/a_test.go", "package util\nimport \"example.com/m/cmd/app\"\n"),
        ("util/README.md", "x"),
        ("tools/go.mod", "module example.com/other\n"),
        ("tools/lib/l.go", "package lib\n"),
    ]);
    assert_eq!(
        targets(&idx, "cmd/app/main.go"),
        vec!["util/a.go", "util/b.go", "tools/lib/l.go"]
    );
    assert_eq!(idx.externals("cmd/app/main.go"), &["fmt".to_string()]);
    assert_eq!(targets(&idx, "util/a_test.go"), vec!["cmd/app/main.go"]);
}

#[test]
fn c_resolution() {
    let mut idx = DependencyIndex::new(ResolveConfig {
        c_include_paths: vec!["third_party/inc".into()],
    });
    for (p, t) in [
        ("proj/src/a.c", "#include \"local.h\"\n#include \"api.h\"\n#include \"sub/n.h\"\n#include <ext.h>\n#include <stdio.h>\n#include \"../up.h\"\n#include \"missing.h\"\n"),
        ("proj/src/local.h", ""),
        ("proj/include/api.h", ""),
        ("proj/include/sub/n.h", ""),
        ("third_party/inc/ext.h", ""),
        ("proj/up.h", ""),
    ] {
        idx.upsert(p, t.as_bytes());
    }
    idx.finish();
    assert_eq!(
        targets(&idx, "proj/src/a.c"),
        vec![
            "proj/src/local.h",
            "proj/include/api.h",
            "proj/include/sub/n.h",
            "third_party/inc/ext.h",
            "proj/up.h"
        ]
    );
    assert_eq!(
        idx.externals("proj/src/a.c"),
        &["<stdio.h>".to_string(), "missing.h".to_string()]
    );
}

#[test]
fn edges_are_deduplicated_and_dirty_is_reported() {
    let mut idx = DependencyIndex::new(ResolveConfig::default());
    idx.upsert("a.py", b"import b\nfrom b import x\n");
    idx.upsert("b.py", b"");
    assert_eq!(idx.take_dirty(), vec!["a.py".to_string()]);
    assert_eq!(
        idx.edges("a.py"),
        &[Edge {
            target: "b.py".into(),
            kind: ImportKind::Import,
            line: 1
        }]
    );
    idx.upsert("a.py", b"import b\nfrom b import x\n");
    assert!(idx.take_dirty().is_empty());
    idx.remove("b.py");
    assert_eq!(idx.take_dirty(), vec!["a.py".to_string()]);
    assert_eq!(idx.externals("a.py"), &["b".to_string()]);
    assert!(idx.dependents("b.py").is_empty());
}

// ------------------------------------------------------------------ incremental equals cold

/// A tiny deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Paths the random repositories draw from: sources, the modules they import, and manifests.
const POOL: &[&str] = &[
    // python
    "app.py",
    "pkg/__init__.py",
    "pkg/mod.py",
    "pkg/mod/__init__.py",
    "pkg/sub/__init__.py",
    "pkg/sub/leaf.py",
    "src/pkg/mod.py",
    "src/lib1/__init__.py",
    "lib1.py",
    "proj/pyproject.toml",
    "proj/lib1/__init__.py",
    "proj/setup.py",
    "pyproject.toml",
    // rust
    "Cargo.toml",
    "src/lib.rs",
    "src/main.rs",
    "src/a.rs",
    "src/a/mod.rs",
    "src/a/b.rs",
    "src/b.rs",
    "src/b/mod.rs",
    "src/c/inner.rs",
    "src/p.rs",
    "src/bin/t.rs",
    "tests/it.rs",
    "crate2/Cargo.toml",
    "crate2/src/lib.rs",
    "crate2/src/a.rs",
    "crate2/lib/l.rs",
    // js
    "web/package.json",
    "web/tsconfig.json",
    "web/base.json",
    "web/src/a.ts",
    "web/src/a.js",
    "web/src/b.tsx",
    "web/src/b/index.ts",
    "web/src/c.d.ts",
    "web/src/main.ts",
    "web/lib/x.ts",
    "web/src/index.js",
    "shared/package.json",
    "shared/index.ts",
    "shared/src/index.ts",
    "shared/dist/main.js",
    "web/src/m.mts",
    // go
    "go.mod",
    "gosrv/go.mod",
    "gosrv/cmd/main.go",
    "gosrv/util/u.go",
    "gosrv/util/v.go",
    "gosrv/util/u_test.go",
    "util/w.go",
    "cmd/main.go",
    // c
    "c/src/a.c",
    "c/src/a.h",
    "c/include/a.h",
    "c/include/sub/x.h",
    "include/a.h",
    "c/src/b.cpp",
    "inc/ext.h",
];

/// Contents a pool path may take (chosen at random per write).
fn contents(path: &str) -> Vec<&'static str> {
    match path {
        p if p.ends_with("pyproject.toml") || p.ends_with("setup.py") => vec!["", "[project]\n"],
        p if p.ends_with(".py") => vec![
            "import pkg.mod\nfrom pkg import sub\nfrom pkg.sub import leaf\nimport lib1\n",
            "from . import mod\nfrom .sub import leaf\nfrom .. import pkg\n",
            "import numpy\nfrom lib1 import x\n",
            "",
        ],
        p if p.ends_with("Cargo.toml") => vec![
            "[package]\nname = \"x\"\n",
            "[package]\nname = \"x\"\n[lib]\npath = \"lib/l.rs\"\n",
            "[workspace]\n",
        ],
        p if p.ends_with(".rs") => vec![
            "mod a;\nmod b;\nuse crate::a::b::X;\nuse crate::b::Y;\n",
            "pub mod b;\nuse super::b;\nuse self::b::Z;\n",
            "#[path = \"c/inner.rs\"]\nmod p;\nmod c { mod inner; }\nuse crate::p::Q;\nuse crate::c::inner::R;\n",
            "mod a;\nuse x::a;\nuse crate::a::b;\n",
            "",
        ],
        "web/package.json" => vec!["{\"name\": \"web\"}", "{\"name\": \"shared\"}"],
        "shared/package.json" => vec![
            "{\"name\": \"shared\", \"main\": \"dist/main.js\"}",
            "{\"name\": \"shared\"}",
            "{\"name\": \"other\"}",
        ],
        "web/tsconfig.json" => vec![
            "{\"extends\": \"./base.json\"}",
            "{\"compilerOptions\": {\"baseUrl\": \"lib\"}}",
            "{\"compilerOptions\": {\"paths\": {\"~/*\": [\"src/*\"]}}}",
        ],
        "web/base.json" => vec!["{\"compilerOptions\": {\"baseUrl\": \"src\"}}"],
        p if p.ends_with(".ts") || p.ends_with(".tsx") || p.ends_with(".js") || p.ends_with(".mts") => vec![
            "import a from './a';\nimport b from './b';\nimport c from './c';\nimport s from 'shared';\nimport x from 'x';\nimport t from '~/a';\n",
            "export * from './a.js';\nconst m = require('../lib/x');\nimport('./m.mjs');\n",
            "import react from 'react';\n",
            "",
        ],
        p if p.ends_with("go.mod") => vec!["module example.com/m\n", "module example.com/srv\n"],
        p if p.ends_with(".go") => vec![
            "package x\nimport (\n\"fmt\"\n\"example.com/srv/util\"\n\"example.com/m/util\"\n\"example.com/m/gosrv/util\"\n)\n",
            "package x\nimport \"example.com/srv/cmd\"\n",
            "",
        ],
        p if p.ends_with(".c") || p.ends_with(".cpp") || p.ends_with(".h") => vec![
            "#include \"a.h\"\n#include \"sub/x.h\"\n#include <ext.h>\n#include <stdio.h>\n",
            "#include \"../include/a.h\"\n",
            "",
        ],
        _ => vec![""],
    }
}

type Snapshot = BTreeMap<String, (Vec<Edge>, Vec<String>, Vec<String>)>;

fn snapshot(idx: &DependencyIndex, files: &BTreeMap<String, String>) -> Snapshot {
    let mut out = BTreeMap::new();
    for p in POOL
        .iter()
        .map(|s| s.to_string())
        .chain(files.keys().cloned())
    {
        let e = idx.edges(&p).to_vec();
        let x = idx.externals(&p).to_vec();
        let d = idx.dependents(&p);
        if !e.is_empty() || !x.is_empty() || !d.is_empty() {
            out.insert(p, (e, x, d));
        }
    }
    out
}

fn config() -> ResolveConfig {
    ResolveConfig {
        c_include_paths: vec!["inc".into()],
    }
}

#[test]
fn incremental_equals_cold() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..40 {
        let mut live = DependencyIndex::new(config());
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        let steps = 30 + rng.below(120);
        for step in 0..steps {
            let path = rng.pick(POOL).to_string();
            match rng.below(10) {
                0..=5 => {
                    let text = rng.pick(&contents(&path)).to_string();
                    live.upsert(&path, text.as_bytes());
                    files.insert(path, text);
                }
                6 | 7 => {
                    live.remove(&path);
                    files.remove(&path);
                }
                _ => {
                    // rename: remove one file, add another with its content
                    if let Some(from) = files.keys().nth(rng.below(files.len().max(1))).cloned() {
                        let text = files.remove(&from).unwrap();
                        live.remove(&from);
                        let to = rng.pick(POOL).to_string();
                        live.upsert(&to, text.as_bytes());
                        files.insert(to, text);
                    }
                }
            }
            // settle at random points, sometimes after many changes
            if rng.below(3) == 0 || step + 1 == steps {
                live.take_dirty();
                let mut cold = DependencyIndex::new(config());
                // a different insertion order than history
                for (p, t) in files.iter().rev() {
                    cold.upsert(p, t.as_bytes());
                }
                cold.finish();
                let a = snapshot(&live, &files);
                let b = snapshot(&cold, &files);
                assert_eq!(
                    a, b,
                    "round {round} step {step}: live != cold\nfiles: {files:#?}"
                );
            }
        }
    }
}

#[test]
fn dirty_lists_every_changed_file() {
    let mut rng = Rng(42);
    let mut live = DependencyIndex::new(config());
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut last = snapshot(&live, &files);
    for _ in 0..400 {
        let path = rng.pick(POOL).to_string();
        if rng.below(3) == 0 {
            live.remove(&path);
            files.remove(&path);
        } else {
            let text = rng.pick(&contents(&path)).to_string();
            live.upsert(&path, text.as_bytes());
            files.insert(path, text);
        }
        if rng.below(4) == 0 {
            let dirty = live.take_dirty();
            let now = snapshot(&live, &files);
            for p in POOL {
                let before = last
                    .get(*p)
                    .map(|v| (&v.0, &v.1))
                    .filter(|v| !v.0.is_empty() || !v.1.is_empty());
                let after = now
                    .get(*p)
                    .map(|v| (&v.0, &v.1))
                    .filter(|v| !v.0.is_empty() || !v.1.is_empty());
                if before != after {
                    assert!(
                        dirty.contains(&p.to_string()),
                        "{p} changed but is not dirty: {before:?} -> {after:?}"
                    );
                }
            }
            last = now;
        }
    }
}

// ------------------------------------------------------------------ robustness

#[test]
fn never_panics_on_any_bytes() {
    let langs = [
        Lang::Python,
        Lang::Rust,
        Lang::JavaScript,
        Lang::TypeScript,
        Lang::Go,
        Lang::C,
        Lang::Cpp,
    ];
    let mut rng = Rng(7);
    // random bytes, biased towards the characters the lexers care about
    let alphabet =
        b"\"'`/\\*#{}()[]<>;:.,=!$@r\n\r\t abcimportfromusemodcrateselfsuperinclude_requireexport";
    for _ in 0..3000 {
        let len = rng.below(400);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(4) == 0 {
                    rng.next() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                }
            })
            .collect();
        for lang in langs {
            let _ = extract(lang, &bytes);
        }
    }
    // every prefix of every test case, in its own language and in all others
    for case in case_files() {
        let text = std::fs::read(&case).unwrap();
        for cut in 0..=text.len() {
            for lang in langs {
                let _ = extract(lang, &text[..cut]);
            }
        }
    }
    // manifests of any bytes, through the index
    let mut idx = DependencyIndex::new(config());
    for i in 0..500 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let name = [
            "package.json",
            "tsconfig.json",
            "go.mod",
            "Cargo.toml",
            "a.py",
            "src/lib.rs",
            "x.ts",
        ][i % 7];
        idx.upsert(name, &bytes);
        if i % 50 == 0 {
            idx.finish();
        }
    }
    idx.finish();
}

#[test]
fn pathological_input_is_linear() {
    // deep nesting and long unterminated constructs must not blow the stack or go quadratic
    let big = "{".repeat(200_000) + &"(".repeat(200_000) + &"/*".repeat(100_000);
    for lang in [
        Lang::Python,
        Lang::Rust,
        Lang::JavaScript,
        Lang::Go,
        Lang::C,
    ] {
        let start = std::time::Instant::now();
        let _ = extract(lang, big.as_bytes());
        assert!(start.elapsed().as_secs() < 5, "{lang:?} too slow");
    }
    let nested_use = "use a::".to_string() + &"{b::".repeat(50_000);
    let _ = extract(Lang::Rust, nested_use.as_bytes());
    let _ = super::json::parse("[".repeat(100_000).as_bytes());
}
