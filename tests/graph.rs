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
