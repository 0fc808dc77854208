//! The dependency graph over real gRPC: edges of every language, graph queries, exports,
//! live upkeep, and a live graph equal to a cold index of the same tree.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tonic::transport::Channel;
use workflowdb::proto;
use workflowdb::proto::graph_client::GraphClient;

fn fixture(root: &Path) {
    let files: &[(&str, &str)] = &[
        ("app/main.py", "from app import util\nimport app.models\n# import app.ghost (a comment, not an edge)\nimport numpy\n"),
        ("app/__init__.py", ""),
        ("app/util.py", "\"\"\"Helpers.\"\"\"\nfrom . import models\ns = 'import app.main'\n"),
        ("app/models.py", "import os\n"),
        ("crate/Cargo.toml", "[package]\nname = \"c\"\n"),
        ("crate/src/lib.rs", "mod a;\npub mod b;\nuse crate::a::Thing;\n"),
        ("crate/src/a.rs", "pub struct Thing;\nuse super::b;\n"),
        ("crate/src/b.rs", "// mod fake;\nuse crate::a;\n"),
        ("web/package.json", "{\"name\": \"web\"}"),
        ("web/src/index.ts", "import { f } from './lib';\nimport React from 'react';\n"),
        ("web/src/lib.ts", "export const f = 1;\nconst g = require('./util.js');\n"),
        ("web/src/util.ts", "export {}\n"),
        ("go/go.mod", "module example.com/m\n"),
        ("go/cmd/main.go", "package main\nimport (\n\t\"fmt\"\n\t\"example.com/m/pkg\"\n)\n"),
        ("go/pkg/a.go", "package pkg\n"),
        ("go/pkg/b.go", "package pkg\n"),
        ("c/include/lib.h", "#include <stdio.h>\n"),
        ("c/src/main.c", "#include \"lib.h\"\n#include \"local.h\"\n"),
        ("c/src/local.h", "/* #include \"nothing.h\" */\n"),
    ];
    write_tree(root, files);
}

async fn graph_client(d: &Daemon) -> GraphClient<Channel> {
    GraphClient::new(d.channel().await)
}

/// Waits until the background build of the graph has finished.
async fn wait_graph_ready(d: &Daemon) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match graph_client(d)
            .await
            .rank(proto::RankRequest::default())
            .await
        {
            Ok(_) => return,
            Err(e) if e.code() == tonic::Code::Unavailable => {}
            Err(e) => panic!("graph query failed: {e:?}"),
        }
        assert!(Instant::now() < deadline, "graph never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn deps_of(g: &mut GraphClient<Channel>, path: &str) -> Vec<String> {
    g.dependencies(proto::DepsRequest {
        path: path.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .files
    .into_iter()
    .map(|f| f.path)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_queries_and_exports() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    fixture(&root);
    let d = start(&dirs, &[root.as_os_str()]).await;
    wait_graph_ready(&d).await;
    let mut g = graph_client(&d).await;

    assert_eq!(
        deps_of(&mut g, "app/main.py").await,
        vec!["app/models.py", "app/util.py"]
    );
    assert_eq!(deps_of(&mut g, "app/util.py").await, vec!["app/models.py"]);
    assert_eq!(
        deps_of(&mut g, "crate/src/lib.rs").await,
        vec!["crate/src/a.rs", "crate/src/b.rs"]
    );
    assert_eq!(
        deps_of(&mut g, "crate/src/b.rs").await,
        vec!["crate/src/a.rs"]
    );
    assert_eq!(
        deps_of(&mut g, "web/src/index.ts").await,
        vec!["web/src/lib.ts"]
    );
    assert_eq!(
        deps_of(&mut g, "web/src/lib.ts").await,
        vec!["web/src/util.ts"]
    );
    assert_eq!(
        deps_of(&mut g, "go/cmd/main.go").await,
        vec!["go/pkg/a.go", "go/pkg/b.go"]
    );
    assert_eq!(
        deps_of(&mut g, "c/src/main.c").await,
        vec!["c/include/lib.h", "c/src/local.h"]
    );
    let ext = g
        .dependencies(proto::DepsRequest {
            path: "app/main.py".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .externals;
    assert_eq!(ext, vec!["numpy"]);
    // Each direct edge keeps how and where it was written.
    let direct = g
        .dependencies(proto::DepsRequest {
            path: "crate/src/lib.rs".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .files;
    let how: Vec<(String, String, u32)> = direct
        .into_iter()
        .map(|f| (f.path, f.kind, f.line))
        .collect();
    assert_eq!(
        how,
        vec![
            ("crate/src/a.rs".into(), "mod".into(), 1),
            ("crate/src/b.rs".into(), "mod".into(), 2)
        ]
    );

    // FileInfo carries them too.
    let f = d
        .catalog()
        .await
        .get_file(proto::GetFileRequest {
            path: "web/src/index.ts".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(f.dependencies, vec!["web/src/lib.ts"]);
    assert_eq!(f.externals, vec!["react"]);

    // Reverse, affected with witnesses, paths, cycles.
    let rev = g
        .dependencies(proto::DepsRequest {
            path: "app/models.py".into(),
            reverse: true,
            depth: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rev: Vec<(String, u32)> = rev.files.into_iter().map(|f| (f.path, f.depth)).collect();
    assert_eq!(
        rev,
        vec![("app/main.py".into(), 1), ("app/util.py".into(), 1)]
    );
    let aff = g
        .affected(proto::AffectedRequest {
            paths: vec!["web/src/util.ts".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let idx = aff
        .files
        .iter()
        .find(|a| a.path == "web/src/index.ts")
        .expect("index.ts is affected");
    assert_eq!(
        idx.witness,
        vec!["web/src/index.ts", "web/src/lib.ts", "web/src/util.ts"]
    );
    let p = g
        .path(proto::PathRequest {
            from: "app/main.py".into(),
            to: "app/models.py".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(p.found);
    assert_eq!(p.path, vec!["app/main.py", "app/models.py"]);
    let cycles = g
        .cycles(proto::CyclesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .cycles;
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].files, vec!["crate/src/a.rs", "crate/src/b.rs"]);

    // Exports a person can render.
    for format in ["dot", "mermaid", "json"] {
        let text = g
            .export(proto::ExportGraphRequest {
                format: format.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .text;
        assert!(text.contains("app/main.py"), "{format}: {text}");
    }
    let json = g
        .export(proto::ExportGraphRequest {
            format: "json".into(),
            component: "crate".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .text;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(!json.contains("app/main.py"), "component filter: {v}");

    // Bad requests are clear statuses.
    let e = g
        .dependencies(proto::DepsRequest {
            path: "nope.py".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = g
        .dependencies(proto::DepsRequest {
            path: "../x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = g
        .export(proto::ExportGraphRequest {
            format: "png".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = g
        .affected(proto::AffectedRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // The CLI.
    let (code, out, err) = cli(&d.socket, &["deps", "app/main.py"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("app/util.py") && out.contains("numpy"),
        "{out}"
    );
    let (code, out, _) = cli(&d.socket, &["graph", "export", "--format", "dot"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("digraph"), "{out}");
    assert!(d.stop().success());
}

/// Every edge of the graph, via the JSON export.
async fn all_edges(d: &Daemon) -> BTreeMap<String, Vec<String>> {
    let mut g = graph_client(d).await;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let files = d
        .catalog()
        .await
        .list_files(proto::ListFilesRequest {
            glob: "*.py".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut files = files;
    while let Some(chunk) = files.message().await.unwrap() {
        for f in chunk.files {
            let deps = deps_of(&mut g, &f.path).await;
            out.insert(f.path, deps);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_graph_equals_a_cold_index_after_random_edits() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    for i in 0..12 {
        write_old(
            &root.join(format!("pkg/m{i}.py")),
            format!("import pkg.m{}\n", (i + 1) % 12).as_bytes(),
        );
    }
    write_old(&root.join("pkg/__init__.py"), b"");
    let d = start(&dirs, &[root.as_os_str()]).await;
    wait_graph_ready(&d).await;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for step in 0..60 {
        let i = next(16);
        let target = root.join(format!("pkg/m{i}.py"));
        match next(4) {
            // (Re)write a module with fresh imports, some of them to modules that do not exist.
            0 | 1 => {
                let a = next(16);
                let b = next(16);
                std::fs::write(&target, format!("import pkg.m{a}\nfrom pkg import m{b}\n"))
                    .unwrap();
            }
            2 => {
                let _ = std::fs::remove_file(&target);
            }
            _ => {
                let to = root.join(format!("pkg/m{}.py", next(16)));
                if target.exists() && !to.exists() {
                    std::fs::rename(&target, &to).unwrap();
                }
            }
        }
        if step % 10 == 9 {
            // A synced query sees the edit.
            d.catalog()
                .await
                .get_clock(proto::ClockRequest::default())
                .await
                .unwrap();
        }
    }
    d.catalog()
        .await
        .get_clock(proto::ClockRequest::default())
        .await
        .unwrap();
    let live = all_edges(&d).await;
    assert!(d.stop().success());

    // A fresh database on the same tree: a cold index.
    let cold_dirs = Dirs::new();
    let cold = start(&cold_dirs, &[root.as_os_str()]).await;
    wait_graph_ready(&cold).await;
    let fresh = all_edges(&cold).await;
    assert_eq!(live, fresh, "the live graph differs from a cold index");
    assert!(cold.stop().success());
}

// ------------------------------------------------------------------ dependencies are the truth

/// Parses the one JSON line a `--json` verb printed.
fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A tree whose dependency graph takes a moment to build: thousands of modules, each with
/// hundreds of imports of modules that are not there (each resolved in vain), beside a small
/// application whose edges are known.
fn slow_graph_tree(root: &Path) {
    let mut body = String::new();
    for j in 0..50 {
        body.push_str(&format!(
            "import missing{j}.sub.mod{j}\nfrom gone{j} import name{j}\n"
        ));
    }
    for i in 0..1000 {
        let path = root.join(format!("gen/g{}/m{i}.py", i % 25));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &body).unwrap();
    }
    write_tree(
        root,
        &[
            ("app/__init__.py", ""),
            (
                "app/main.py",
                "import app.util\nfrom lib import helper\nimport os\n",
            ),
            ("app/util.py", "X = 1\n"),
            ("lib/__init__.py", ""),
            ("lib/helper.py", "import app.util\n"),
        ],
    );
}

/// Right after readiness, while the graph of a big tree is still being built: a synced
/// `wfdb file` waits for it and answers the real dependencies; an unsynced one answers at
/// once, either complete or marked pending (never an empty list passed off as the truth); a
/// synced `wfdb files` carries them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_right_after_readiness_are_waited_for_or_marked_pending() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    slow_graph_tree(&root);
    let d = start(
        &dirs,
        &[root.as_os_str(), "--sync-timeout".as_ref(), "120s".as_ref()],
    )
    .await;
    let want_deps = serde_json::json!(["app/util.py", "lib/helper.py"]);
    let want_externals = serde_json::json!(["os"]);

    let (code, out, err) = cli(&d.socket, &["--json", "file", "--unsynced", "app/main.py"]);
    assert_eq!(code, 0, "{err}");
    let early = json_of(&out);
    let pending_seen = early["dependencies_pending"] == serde_json::json!(true);
    if !pending_seen {
        assert_eq!(early["dependencies"], want_deps, "{early}");
        assert_eq!(early["externals"], want_externals, "{early}");
    }

    let (code, out, err) = cli(&d.socket, &["--json", "file", "app/main.py"]);
    assert_eq!(code, 0, "{err}");
    let synced = json_of(&out);
    assert_eq!(synced["dependencies"], want_deps, "{synced}");
    assert_eq!(synced["externals"], want_externals, "{synced}");
    assert_eq!(synced["dependencies_pending"], serde_json::json!(false));

    let (code, out, err) = cli(&d.socket, &["--json", "files", "--prefix", "lib"]);
    assert_eq!(code, 0, "{err}");
    let helper = out
        .lines()
        .map(json_of)
        .find(|v| v["path"] == "lib/helper.py")
        .unwrap_or_else(|| panic!("lib/helper.py not listed: {out}"));
    assert_eq!(helper["dependencies"], serde_json::json!(["app/util.py"]));
    assert_eq!(helper["dependencies_pending"], serde_json::json!(false));

    // Once built, unsynced answers are complete and not pending.
    let (code, out, err) = cli(&d.socket, &["--json", "file", "--unsynced", "app/main.py"]);
    assert_eq!(code, 0, "{err}");
    let late = json_of(&out);
    assert_eq!(late["dependencies"], want_deps);
    assert_eq!(late["dependencies_pending"], serde_json::json!(false));
    // The text view says so when pending; here it is not.
    let (code, out, _) = cli(&d.socket, &["file", "app/main.py"]);
    assert_eq!(code, 0);
    assert!(!out.contains("pending"), "{out}");
    eprintln!("graph still building right after readiness: {pending_seen}");
    for line in d
        .log_text()
        .lines()
        .filter(|l| l.contains("dependency graph built"))
    {
        eprintln!("{line}");
    }
    assert!(d.stop().success());
}

/// A synced query that cannot get the graph in time refuses with DEADLINE_EXCEEDED and says
/// the graph is still building; the unsynced one answers, marked pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_still_building_is_refused_after_the_sync_timeout_never_answered_empty() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    slow_graph_tree(&root);
    let d = start(
        &dirs,
        &[
            root.as_os_str(),
            "--sync-timeout".as_ref(),
            "200ms".as_ref(),
        ],
    )
    .await;
    let mut catalog = d.catalog().await;
    let mut refused = 0;
    let deadline = Instant::now() + TIMEOUT;
    // Until the graph is built, every synced answer is either refused as building or complete.
    loop {
        let unsynced = catalog
            .get_file(proto::GetFileRequest {
                path: "app/main.py".into(),
                unsynced: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .file
            .unwrap();
        match get_file(&mut catalog, "app/main.py").await {
            Ok(f) => {
                assert_eq!(f.dependencies, ["app/util.py", "lib/helper.py"]);
                assert!(!f.dependencies_pending);
                break;
            }
            Err(e) if e.code() == tonic::Code::DeadlineExceeded => {
                if e.message().contains("dependency graph") {
                    assert!(e.message().contains("still being built"), "{e:?}");
                    refused += 1;
                }
            }
            Err(e) => panic!("unexpected refusal: {e:?}"),
        }
        if !unsynced.dependencies_pending {
            assert_eq!(unsynced.dependencies, ["app/util.py", "lib/helper.py"]);
        }
        if refused == 1 {
            // The CLI: the refusal and its reason, exit 1 (not "daemon unreachable"), or,
            // if the graph was built meanwhile, the answer.
            let (code, out, err) = cli(&d.socket, &["file", "app/main.py"]);
            match code {
                0 => assert!(out.contains("lib/helper.py"), "{out}"),
                1 => assert!(err.contains("DeadlineExceeded"), "{err}"),
                _ => panic!("exit {code}: {err}"),
            }
        }
        assert!(Instant::now() < deadline, "the graph was never built");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("synced queries refused while building: {refused}");
    assert!(d.stop().success());
}

/// A tree with import cycles across components: `a` ↔ `b` (two components), `c` → `d` →
/// `e` → `c`, and `f` importing into the first cycle.
fn cyclic_tree(root: &Path) {
    write_tree(
        root,
        &[
            ("one/__init__.py", ""),
            ("one/a.py", "import two.b\n"),
            ("two/__init__.py", ""),
            ("two/b.py", "import one.a\nimport json\n"),
            ("ring/__init__.py", ""),
            ("ring/c.py", "from ring import d\n"),
            ("ring/d.py", "from ring import e\n"),
            ("ring/e.py", "from ring import c\n"),
            ("tail/f.py", "import one.a\n"),
        ],
    );
}

/// Right after readiness (the graph may still be building): the knowledge graph carries the
/// `depends_on` edges, `get_related_files` through the Knowledge service reaches a
/// dependency in another component, the export writes each file's real dependencies, and the
/// report counts exactly the cycles `wfdb graph cycles` finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_export_and_report_carry_the_dependency_edges() {
    use workflowdb::proto::knowledge_client::KnowledgeClient;
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    cyclic_tree(&root);
    let d = start(&dirs, &[root.as_os_str()]).await;

    let g = KnowledgeClient::new(d.channel().await)
        .get_graph(proto::GetGraphRequest { full: true })
        .await
        .unwrap()
        .into_inner();
    let depends: Vec<(String, String)> = g
        .edges
        .iter()
        .filter(|e| e.kind == "depends_on")
        .map(|e| (e.source.clone(), e.target.clone()))
        .collect();
    for (from, to) in [
        ("file:one/a.py", "file:two/b.py"),
        ("file:two/b.py", "file:one/a.py"),
        ("file:ring/c.py", "file:ring/d.py"),
        ("file:ring/e.py", "file:ring/c.py"),
        ("file:tail/f.py", "file:one/a.py"),
    ] {
        assert!(
            depends.contains(&(from.to_string(), to.to_string())),
            "{from} -> {to} missing from {depends:?}"
        );
    }
    assert_eq!(depends.len(), 6, "{depends:?}");

    // get_related_files: `tail/f.py` shares no component or agent with `two/b.py`; only the
    // dependency edges join them.
    let related = KnowledgeClient::new(d.channel().await)
        .lookup(proto::LookupRequest {
            relation: "related_files".into(),
            name: "tail/f.py".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .names;
    assert!(related.contains(&"one/a.py".to_string()), "{related:?}");
    assert!(related.contains(&"two/b.py".to_string()), "{related:?}");
    let (code, out, err) = cli(
        &d.socket,
        &["--json", "kg", "lookup", "related_files", "tail/f.py"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("two/b.py"), "{out}");

    // The export.
    let (code, out, err) = cli(&d.socket, &["--json", "export", "-"]);
    assert_eq!(code, 0, "{err}");
    let doc = json_of(&out);
    assert_eq!(
        doc["files"]["two/b.py"]["dependencies"],
        serde_json::json!(["one/a.py"])
    );
    assert_eq!(
        doc["files"]["two/b.py"]["externals"],
        serde_json::json!(["json"])
    );
    assert_eq!(
        doc["files"]["ring/c.py"]["dependencies"],
        serde_json::json!(["ring/d.py"])
    );
    assert!(doc["files"]["two/b.py"]
        .get("dependencies_pending")
        .is_none());
    let file_deps = doc["knowledge_graph"]["file_dependencies"]
        .as_array()
        .unwrap_or_else(|| panic!("no file_dependencies: {}", doc["knowledge_graph"]));
    assert_eq!(file_deps.len(), 6, "{file_deps:?}");

    // The report and `graph cycles` agree.
    let (code, out, err) = cli(&d.socket, &["report", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reported = report["graph"]["dependency_cycles"].clone();
    let (code, out, err) = cli(&d.socket, &["--json", "graph", "cycles"]);
    assert_eq!(code, 0, "{err}");
    let found: Vec<serde_json::Value> = out.lines().map(|l| json_of(l)["files"].clone()).collect();
    assert_eq!(reported, serde_json::Value::Array(found.clone()));
    assert_eq!(
        found,
        [
            serde_json::json!(["ring/c.py", "ring/d.py", "ring/e.py"]),
            serde_json::json!(["one/a.py", "two/b.py"]),
        ]
    );
    let (code, text, _) = cli(&d.socket, &["report"]);
    assert_eq!(code, 0);
    assert!(text.contains("2 dependency cycles"), "{text}");
    assert!(d.stop().success());
}

/// Through the daemon: a TypeScript importer of `./x.js` moves to `x.ts` when it appears
/// beside `x.js`, and back when it goes; a JavaScript importer keeps `x.js`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ts_file_appearing_beside_a_js_file_takes_over_typescript_importers() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_tree(
        &root,
        &[
            ("web/a.ts", "import { x } from './x.js';\n"),
            ("web/b.mjs", "import { x } from './x.js';\n"),
            ("web/x.js", "export const x = 1;\n"),
        ],
    );
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut catalog = d.catalog().await;
    let deps = |f: proto::FileInfo| f.dependencies;
    assert_eq!(
        deps(get_file(&mut catalog, "web/a.ts").await.unwrap()),
        ["web/x.js"]
    );
    std::fs::write(root.join("web/x.ts"), "export const x = 1;\n").unwrap();
    assert_eq!(
        deps(get_file(&mut catalog, "web/a.ts").await.unwrap()),
        ["web/x.ts"]
    );
    assert_eq!(
        deps(get_file(&mut catalog, "web/b.mjs").await.unwrap()),
        ["web/x.js"]
    );
    std::fs::write(root.join("web/x.d.ts"), "export declare const x: number;\n").unwrap();
    std::fs::remove_file(root.join("web/x.ts")).unwrap();
    assert_eq!(
        deps(get_file(&mut catalog, "web/a.ts").await.unwrap()),
        ["web/x.d.ts"]
    );
    std::fs::remove_file(root.join("web/x.d.ts")).unwrap();
    assert_eq!(
        deps(get_file(&mut catalog, "web/a.ts").await.unwrap()),
        ["web/x.js"]
    );
    assert!(d.stop().success());
}

/// Change listings carry each file's dependencies once the graph is built: `Changes` from a
/// clock and a `Subscribe` batch of a live edit (the graph is updated before the batch is
/// published), never an empty list passed off as the truth.
#[tokio::test]
async fn change_listings_carry_dependencies() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("repo");
    fixture(&root);
    let d = start(&dirs, &[root.as_os_str()]).await;
    wait_graph_ready(&d).await;
    let all = d.changes(0, "").await;
    let main = all
        .changed
        .iter()
        .find(|f| f.path == "web/src/index.ts")
        .expect("index.ts is listed");
    assert_eq!(main.dependencies, vec!["web/src/lib.ts"]);
    assert_eq!(main.externals, vec!["react"]);
    assert!(!main.dependencies_pending);

    let mut sub = d.subscribe("web/**").await;
    std::fs::write(
        root.join("web/src/index.ts"),
        "import { f } from './lib';\nimport './util';\n",
    )
    .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "the edit was not announced");
        let Ok(Ok(Some(batch))) = tokio::time::timeout(TIMEOUT, sub.message()).await else {
            panic!("the subscription ended");
        };
        if let Some(f) = batch.modified.iter().find(|f| f.path == "web/src/index.ts") {
            assert_eq!(f.dependencies, vec!["web/src/lib.ts", "web/src/util.ts"]);
            assert!(f.externals.is_empty(), "{:?}", f.externals);
            assert!(!f.dependencies_pending);
            break;
        }
    }
    d.stop();
}
