//! Tests of the graph queries on small hand-made graphs, plus one 50,000-file graph for the
//! iterative algorithms.

use super::export::{dot_html, json_string, mermaid_text};
use super::*;

/// A graph of `source` files whose component is their top folder.
fn graph(edges: &[(&str, &str)]) -> DepGraph {
    let mut b = GraphBuilder::new();
    for (i, &(from, to)) in edges.iter().enumerate() {
        b.edge(from, to, "import", i as u32 + 1);
    }
    for &(from, to) in edges {
        for p in [from, to] {
            b.file(p, p.split('/').next().unwrap_or(""), "source");
        }
    }
    b.build()
}

fn reached(v: &[Reached]) -> Vec<(&str, usize)> {
    v.iter().map(|r| (r.path.as_str(), r.depth)).collect()
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

fn diamond() -> DepGraph {
    // a imports b and c; both import d; d imports e
    graph(&[("a", "c"), ("a", "b"), ("b", "d"), ("c", "d"), ("d", "e")])
}

#[test]
fn builder_sorts_dedups_and_keeps_the_first_line() {
    let mut b = GraphBuilder::new();
    b.edge("z.py", "a.py", "from-import", 9)
        .edge("z.py", "a.py", "import", 3)
        .edge("z.py", "m.py", "import", 4)
        .file("z.py", "app", "source")
        .file("lonely.md", "", "docs");
    let g = b.build();
    assert_eq!(names(g.files()), ["a.py", "lonely.md", "m.py", "z.py"]);
    assert_eq!(g.len(), 4);
    assert_eq!(g.edge_count(), 2);
    let out = g.out_edges("z.py").unwrap();
    assert_eq!(
        out,
        vec![
            GraphEdge {
                from: "z.py".into(),
                to: "a.py".into(),
                kind: "import".into(),
                line: 3
            },
            GraphEdge {
                from: "z.py".into(),
                to: "m.py".into(),
                kind: "import".into(),
                line: 4
            },
        ]
    );
    assert_eq!(g.in_edges("a.py").unwrap(), vec![out[0].clone()]);
    // files named only by edges have empty metadata
    assert_eq!(g.component_of("a.py").unwrap(), "");
    assert_eq!(g.purpose_of("a.py").unwrap(), "");
    assert_eq!(g.component_of("z.py").unwrap(), "app");
    assert_eq!(g.purpose_of("lonely.md").unwrap(), "docs");
    assert!(g.contains("m.py") && !g.contains("nope"));
    assert!(GraphBuilder::new().build().is_empty());
}

#[test]
fn builder_is_insensitive_to_insertion_order() {
    let edges = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "d"), ("x/y", "a")];
    let mut rev = edges;
    rev.reverse();
    let mut b1 = GraphBuilder::new();
    let mut b2 = GraphBuilder::new();
    for (f, t) in edges {
        b1.edge(f, t, "use", 1);
    }
    for (f, t) in rev {
        b2.edge(f, t, "use", 1);
    }
    let (g1, g2) = (b1.build(), b2.build());
    let all = ExportFilter::default();
    assert_eq!(g1.to_json(&all).unwrap(), g2.to_json(&all).unwrap());
    assert_eq!(g1.to_dot(&all).unwrap(), g2.to_dot(&all).unwrap());
    assert_eq!(g1.cycles(), g2.cycles());
    assert_eq!(g1.rank(10), g2.rank(10));
}

#[test]
fn dependencies_and_dependents_respect_depth() {
    let g = graph(&[("a", "b"), ("b", "c"), ("c", "d")]);
    assert_eq!(reached(&g.dependencies("a", Some(1)).unwrap()), [("b", 1)]);
    assert_eq!(
        reached(&g.dependencies("a", Some(2)).unwrap()),
        [("b", 1), ("c", 2)]
    );
    assert_eq!(
        reached(&g.dependencies("a", None).unwrap()),
        [("b", 1), ("c", 2), ("d", 3)]
    );
    assert!(g.dependencies("a", Some(0)).unwrap().is_empty());
    assert!(g.dependencies("d", None).unwrap().is_empty());
    assert_eq!(
        reached(&g.dependents("d", Some(2)).unwrap()),
        [("c", 1), ("b", 2)]
    );
    assert_eq!(
        reached(&g.dependents("d", None).unwrap()),
        [("c", 1), ("b", 2), ("a", 3)]
    );
}

#[test]
fn diamond_lists_each_file_once_at_its_shortest_depth() {
    let g = diamond();
    assert_eq!(
        reached(&g.dependencies("a", None).unwrap()),
        [("b", 1), ("c", 1), ("d", 2), ("e", 3)]
    );
    assert_eq!(
        reached(&g.dependents("e", None).unwrap()),
        [("d", 1), ("b", 2), ("c", 2), ("a", 3)]
    );
    // the witness and the path go through the smaller of the two equal branches
    assert_eq!(g.path("a", "e").unwrap().unwrap(), ["a", "b", "d", "e"]);
    let aff = g.affected(&["e"], None);
    let a = aff.files.iter().find(|f| f.path == "a").unwrap();
    assert_eq!(a.witness, ["a", "b", "d", "e"]);
    assert_eq!(a.depth, 3);
}

#[test]
fn traversals_on_a_cycle_do_not_list_the_start() {
    let g = graph(&[("a", "b"), ("b", "a"), ("b", "c")]);
    assert_eq!(
        reached(&g.dependencies("a", None).unwrap()),
        [("b", 1), ("c", 2)]
    );
    assert_eq!(reached(&g.dependents("a", None).unwrap()), [("b", 1)]);
}

#[test]
fn unknown_files_are_clear_errors() {
    let g = diamond();
    let err = GraphError::UnknownFile("nope.rs".into());
    assert_eq!(g.dependencies("nope.rs", None), Err(err.clone()));
    assert_eq!(g.dependents("nope.rs", Some(1)), Err(err.clone()));
    assert_eq!(g.related("nope.rs", 2), Err(err.clone()));
    assert_eq!(g.path("nope.rs", "a"), Err(err.clone()));
    assert_eq!(g.path("a", "nope.rs"), Err(err.clone()));
    assert_eq!(g.out_edges("nope.rs"), Err(err.clone()));
    assert_eq!(g.component_of("nope.rs"), Err(err.clone()));
    assert_eq!(err.to_string(), "no file `nope.rs` in the dependency graph");
    let from = ExportFilter {
        from: Some("nope.rs".into()),
        ..Default::default()
    };
    assert_eq!(g.to_dot(&from), Err(err));
    let comp = ExportFilter {
        component: Some("nope".into()),
        ..Default::default()
    };
    assert_eq!(
        g.to_json(&comp),
        Err(GraphError::UnknownComponent("nope".into()))
    );
    let depth = ExportFilter {
        depth: Some(2),
        ..Default::default()
    };
    assert_eq!(g.to_mermaid(&depth), Err(GraphError::DepthWithoutFrom));
}

#[test]
fn path_is_shortest_directed_and_optional() {
    let g = graph(&[("a", "b"), ("b", "c"), ("c", "d"), ("a", "x"), ("x", "d")]);
    assert_eq!(g.path("a", "d").unwrap().unwrap(), ["a", "x", "d"]);
    assert_eq!(g.path("a", "a").unwrap().unwrap(), ["a"]);
    assert_eq!(
        g.path("d", "a").unwrap(),
        None,
        "edges are not followed backwards"
    );
    assert_eq!(g.path("b", "x").unwrap(), None);
}

#[test]
fn affected_has_witnesses_depth_limits_and_unknowns() {
    // app → svc → db ; cli → svc ; test → app ; other → util
    let g = graph(&[
        ("app", "svc"),
        ("svc", "db"),
        ("cli", "svc"),
        ("test", "app"),
        ("other", "util"),
    ]);
    let all = g.affected(&["db", "gone.py", "db"], None);
    assert_eq!(all.unknown, ["gone.py"]);
    let got: Vec<(&str, usize, Vec<&str>)> = all
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.depth, names(&f.witness)))
        .collect();
    assert_eq!(
        got,
        [
            ("svc", 1, vec!["svc", "db"]),
            ("app", 2, vec!["app", "svc", "db"]),
            ("cli", 2, vec!["cli", "svc", "db"]),
            ("test", 3, vec!["test", "app", "svc", "db"]),
        ]
    );
    let near = g.affected(&["db"], Some(2));
    assert_eq!(near.files.len(), 3);
    assert!(near.files.iter().all(|f| f.depth <= 2));
    // several changed files: each affected file once, witness to the nearest; changed files
    // are not listed even when they depend on each other
    let two = g.affected(&["db", "app", "util"], None);
    let got: Vec<(&str, Vec<&str>)> = two
        .files
        .iter()
        .map(|f| (f.path.as_str(), names(&f.witness)))
        .collect();
    assert_eq!(
        got,
        [
            ("other", vec!["other", "util"]),
            ("svc", vec!["svc", "db"]),
            ("test", vec!["test", "app"]),
            ("cli", vec!["cli", "svc", "db"]),
        ]
    );
    assert!(g.affected::<&str>(&[], None).files.is_empty());
    assert!(g.affected(&["db"], Some(0)).files.is_empty());
}

#[test]
fn affected_through_a_cycle_terminates() {
    let g = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("z", "a")]);
    let aff = g.affected(&["a"], None);
    let got: Vec<&str> = aff.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(got, ["c", "z", "b"]);
    assert_eq!(aff.files[2].witness, ["b", "c", "a"]);
}

#[test]
fn cycles_self_loops_and_nested_components() {
    // {a, b, c}: a ⇄ b nested in a ⇄ b → c → a; {x, y} reached from it; s imports itself;
    // t → u is acyclic
    let g = graph(&[
        ("a", "b"),
        ("b", "a"),
        ("b", "c"),
        ("c", "a"),
        ("c", "x"),
        ("x", "y"),
        ("y", "x"),
        ("s", "s"),
        ("t", "u"),
    ]);
    let cycles = g.cycles();
    let files: Vec<Vec<&str>> = cycles.iter().map(|c| names(&c.files)).collect();
    assert_eq!(files, [vec!["a", "b", "c"], vec!["x", "y"], vec!["s"]]);
    assert_eq!(cycles[0].example, ["a", "b", "a"]);
    assert_eq!(cycles[1].example, ["x", "y", "x"]);
    assert_eq!(cycles[2].example, ["s", "s"]);
    assert!(graph(&[("a", "b"), ("b", "c"), ("a", "c")])
        .cycles()
        .is_empty());
}

#[test]
fn cycle_example_is_a_shortest_cycle_through_the_first_file() {
    // a → b → c → d → a with the chord c → a
    let g = graph(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("c", "a")]);
    let cycles = g.cycles();
    assert_eq!(cycles.len(), 1);
    assert_eq!(names(&cycles[0].files), ["a", "b", "c", "d"]);
    assert_eq!(cycles[0].example, ["a", "b", "c", "a"]);
}

#[test]
fn cycles_equal_size_order_by_first_file() {
    let g = graph(&[("q", "r"), ("r", "q"), ("b", "c"), ("c", "b")]);
    let cycles = g.cycles();
    let files: Vec<Vec<&str>> = cycles.iter().map(|c| names(&c.files)).collect();
    assert_eq!(files, [vec!["b", "c"], vec!["q", "r"]]);
}

#[test]
fn long_chains_and_rings_do_not_overflow_the_stack() {
    // one 100,000-file ring and a 100,000-file chain: recursion would overflow
    let n = 100_000;
    let mut b = GraphBuilder::new();
    for i in 0..n {
        b.edge(
            &format!("ring/{i:06}"),
            &format!("ring/{:06}", (i + 1) % n),
            "use",
            1,
        );
        if i + 1 < n {
            b.edge(
                &format!("chain/{i:06}"),
                &format!("chain/{:06}", i + 1),
                "use",
                1,
            );
        }
    }
    let g = b.build();
    let cycles = g.cycles();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].files.len(), n);
    assert_eq!(cycles[0].example.len(), n + 1);
    assert_eq!(g.dependencies("chain/000000", None).unwrap().len(), n - 1);
    assert_eq!(g.affected(&["chain/099999"], Some(3)).files.len(), 3);
}

#[test]
fn related_lists_both_directions_then_the_component() {
    // in component `app`: main → lib → util; test → main; app/x/deep and app/y/far unrelated;
    // peer also imports util (a sibling through util: not related); z/other in another component
    let mut b = GraphBuilder::new();
    b.edge("app/main", "app/lib", "use", 1)
        .edge("app/lib", "app/util", "use", 1)
        .edge("app/test", "app/main", "use", 1)
        .edge("app/peer", "app/util", "use", 1)
        .edge("z/other", "app/util", "use", 1);
    for p in ["app/main", "app/lib", "app/util", "app/test", "app/peer"] {
        b.file(p, "app", "source");
    }
    b.file("app/x/deep", "app", "source")
        .file("app/y/far", "app", "source")
        .file("app/zz", "app", "source")
        .file("z/other", "z", "source");
    let g = b.build();
    let got = |d| -> Vec<(String, Relation, usize)> {
        g.related("app/main", d)
            .unwrap()
            .into_iter()
            .map(|r| (r.path, r.relation, r.distance))
            .collect()
    };
    let s = |p: &str, r, d| (p.to_string(), r, d);
    assert_eq!(
        got(1),
        [
            s("app/lib", Relation::Dependency, 1),
            s("app/test", Relation::Dependent, 1)
        ]
    );
    assert_eq!(
        got(2),
        [
            s("app/lib", Relation::Dependency, 1),
            s("app/test", Relation::Dependent, 1),
            s("app/util", Relation::Dependency, 2),
            // same component: same folder (`app`) first, then deeper folders, by path
            s("app/peer", Relation::SameComponent, 2),
            s("app/zz", Relation::SameComponent, 2),
            s("app/x/deep", Relation::SameComponent, 2),
            s("app/y/far", Relation::SameComponent, 2),
        ]
    );
    assert!(got(0).is_empty());
    // a cycle makes a file both
    let c = graph(&[("a/1", "a/2"), ("a/2", "a/3"), ("a/3", "a/1")]);
    let r = c.related("a/1", 1).unwrap();
    assert_eq!(r[0].relation, Relation::Dependency);
    assert_eq!(r[1].relation, Relation::Dependent);
    let r = c.related("a/1", 2).unwrap();
    assert_eq!(
        r.iter()
            .map(|x| (x.relation, x.distance))
            .collect::<Vec<_>>(),
        [(Relation::Both, 1), (Relation::Both, 1)]
    );
    assert_eq!(Relation::SameComponent.as_str(), "same-component");
}

#[test]
fn related_without_component_lists_only_linked_files() {
    let mut b = GraphBuilder::new();
    b.edge("a.py", "b.py", "import", 1)
        .file("c.py", "", "source");
    let g = b.build();
    let r = g.related("a.py", 3).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].path, "b.py");
}

#[test]
fn entry_points_are_recognised_by_path() {
    for p in [
        "src/main.rs",
        "src/lib.rs",
        "build.rs",
        "src/bin/tool.rs",
        "examples/demo.rs",
        "benches/speed.rs",
        "pkg/__main__.py",
        "pkg/__init__.py",
        "setup.py",
        "web/src/index.ts",
        "web/index.jsx",
        "web/main.mjs",
        "web/types/globals.d.ts",
        "cmd/tool/main.go",
        "c/src/util.c",
        "lib/x.cpp",
    ] {
        assert!(is_entry_point(p), "{p}");
    }
    for p in [
        "src/util.rs",
        "pkg/helpers.py",
        "web/src/app.ts",
        "go/pkg/x.go",
        "c/include/util.h",
        "lib/x.hpp",
        "README.md",
        "mainly.rs",
    ] {
        assert!(!is_entry_point(p), "{p}");
    }
}

#[test]
fn orphans_filter_by_purpose_language_and_entry_points() {
    let mut b = GraphBuilder::new();
    b.edge("src/main.rs", "src/used.rs", "mod", 1)
        .edge("tests/t.rs", "src/used.rs", "use", 1)
        .edge("src/selfish.rs", "src/selfish.rs", "use", 1);
    for (p, purpose) in [
        ("src/main.rs", "source"),
        ("src/used.rs", "source"),
        ("src/dead.rs", "source"),
        ("src/selfish.rs", "source"),
        ("tests/t.rs", "test"),
        ("pkg/__init__.py", "source"),
        ("pkg/lonely.py", "source"),
        ("c/a.c", "source"),
        ("c/unused.h", "source"),
        ("web/index.ts", "source"),
        ("README.md", "docs"),
        ("config/app.json", "config"),
        ("java/Foo.java", "source"),
    ] {
        b.file(p, "", purpose);
    }
    let g = b.build();
    assert_eq!(
        g.orphans(&[]),
        [
            "c/unused.h",
            "pkg/lonely.py",
            "src/dead.rs",
            "src/selfish.rs"
        ]
    );
    assert_eq!(g.orphans(DEFAULT_ORPHAN_PURPOSES), g.orphans(&[]));
    assert_eq!(g.orphans(&["test"]), ["tests/t.rs"]);
    assert!(
        g.orphans(&["docs", "config"]).is_empty(),
        "no imports to judge by"
    );
}

#[test]
fn components_count_internal_and_crossing_edges() {
    let mut b = GraphBuilder::new();
    b.edge("web/a.ts", "web/b.ts", "import", 1)
        .edge("web/a.ts", "core/x.rs", "import", 2)
        .edge("web/b.ts", "core/y.rs", "import", 1)
        .edge("core/x.rs", "core/y.rs", "use", 1)
        .edge("cli/m.go", "core/x.rs", "import", 1)
        .edge("core/y.rs", "web/b.ts", "use", 1);
    for p in ["web/a.ts", "web/b.ts"] {
        b.file(p, "web", "source");
    }
    for p in ["core/x.rs", "core/y.rs"] {
        b.file(p, "core", "source");
    }
    b.file("cli/m.go", "cli", "source")
        .file("README.md", "", "docs");
    let cg = b.build().components();
    let comps: Vec<(&str, Vec<&str>, usize)> = cg
        .components
        .iter()
        .map(|c| (c.name.as_str(), names(&c.files), c.internal_edges))
        .collect();
    assert_eq!(
        comps,
        [
            ("", vec!["README.md"], 0),
            ("cli", vec!["cli/m.go"], 0),
            ("core", vec!["core/x.rs", "core/y.rs"], 1),
            ("web", vec!["web/a.ts", "web/b.ts"], 1),
        ]
    );
    let edges: Vec<(&str, &str, usize)> = cg
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str(), e.edges))
        .collect();
    assert_eq!(
        edges,
        [("cli", "core", 1), ("core", "web", 1), ("web", "core", 2)]
    );
}

#[test]
fn rank_puts_the_most_depended_upon_first() {
    // five files import hub; hub imports base; leaf imports nothing and nothing imports it
    let mut edges = vec![("hub", "base")];
    let users = ["u1", "u2", "u3", "u4", "u5"];
    for u in &users {
        edges.push((u, "hub"));
    }
    edges.push(("u1", "u1"));
    let mut b = GraphBuilder::new();
    for (f, t) in &edges {
        b.edge(f, t, "import", 1);
    }
    b.file("leaf", "", "source");
    let g = b.build();
    let r = g.rank(usize::MAX);
    assert_eq!(r.len(), 8);
    let sum: f64 = r.iter().map(|x| x.score).sum();
    assert!((sum - 1.0).abs() < 1e-9, "{sum}");
    // base collects all of hub's rank, so it leads; then hub; the rest tie and go by path
    let order: Vec<&str> = r.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(order, ["base", "hub", "leaf", "u1", "u2", "u3", "u4", "u5"]);
    assert_eq!(r[1].dependents, 5);
    assert_eq!(r[3].dependents, 0, "a self-import is not a dependent");
    assert_eq!(g.rank(2).len(), 2);
    assert!(g.rank(0).is_empty());
    assert!(GraphBuilder::new().build().rank(5).is_empty());
}

/// Names that break naive exporters.
const NASTY: &[&str] = &[
    "src/\"quoted\".rs",
    "src/ends with backslash\\",
    "src/<b>bold</b>&amp;.ts",
    "src/new\nline.py",
    "src/é ü 漢字.py",
    "src/\u{FFFD}lossy\u{FFFD}.c",
    "src/#hash;%%comment`tick`[x]{y}(z)|p.js",
    "end",
];

fn nasty_graph() -> DepGraph {
    let mut b = GraphBuilder::new();
    for w in NASTY.windows(2) {
        b.edge(w[0], w[1], "import", 1);
    }
    for p in NASTY {
        b.file(p, "comp \"x\" <y>", "source");
    }
    b.file("plain.rs", "", "source");
    b.build()
}

#[test]
fn escaping_helpers() {
    assert_eq!(dot_html("a\"b<c>&d\\\n"), "a&quot;b&lt;c&gt;&amp;d\\\\x0A");
    assert_eq!(dot_html("\u{FFFF}é"), "\u{FFFD}é");
    assert_eq!(mermaid_text("a/b_c-d.rs"), "a/b_c-d.rs");
    assert_eq!(mermaid_text("\"#;<\n"), "#34;#35;#59;#60;#92;x0A");
    assert_eq!(mermaid_text("é\u{2028}"), "é#8232;");
    assert_eq!(json_string("a\"\\\n\u{1}é"), "\"a\\\"\\\\\\n\\u0001é\"");
}

#[test]
fn dot_export_escapes_every_label() {
    let g = nasty_graph();
    let dot = g.to_dot(&ExportFilter::default()).unwrap();
    assert!(dot.starts_with("digraph dependencies {\n"));
    assert!(dot.contains("label=<src/&quot;quoted&quot;.rs>"));
    assert!(dot.contains("label=<src/ends with backslash\\>"));
    assert!(dot.contains("&lt;b&gt;bold&lt;/b&gt;&amp;amp;"));
    assert!(dot.contains("label=<src/new\\x0Aline.py>"));
    assert!(dot.contains("src/é ü 漢字.py"));
    assert!(dot.contains("subgraph cluster_0 {\n    label=<comp &quot;x&quot; &lt;y&gt;>;"));
    // no raw newline inside a statement
    for line in dot.lines().skip(1) {
        assert!(
            line.ends_with(';') || line.ends_with('{') || line.ends_with('}'),
            "{line}"
        );
    }
    assert_eq!(dot.matches(" -> ").count(), NASTY.len() - 1);
    validate_with_graphviz(&dot);
}

/// Run Graphviz on the DOT text when it is installed (skipped otherwise).
fn validate_with_graphviz(dot: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("graphviz not installed: DOT not rendered");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(dot.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dot failed: {stderr}\n{dot}");
    assert!(stderr.trim().is_empty(), "dot warned: {stderr}\n{dot}");
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("src/&quot;quoted&quot;.rs") || svg.contains("src/\"quoted\".rs"));
    assert!(svg.contains("ends with backslash\\"));
}

#[test]
fn mermaid_export_escapes_every_label() {
    let g = nasty_graph();
    let m = g.to_mermaid(&ExportFilter::default()).unwrap();
    assert!(m.starts_with("flowchart LR\n"));
    assert!(m.contains("  subgraph c0[\"comp #34;x#34; #60;y#62;\"]\n"));
    assert!(m.contains("[\"src/#34;quoted#34;.rs\"]"));
    assert!(m.contains("[\"src/ends with backslash#92;\"]"));
    assert!(m.contains("[\"src/new#92;x0Aline.py\"]"));
    assert!(m.contains("[\"src/é ü 漢字.py\"]"));
    // every label is one quoted string with no quote, `#` outside an entity, or newline inside
    for line in m.lines().skip(1) {
        if let Some(start) = line.find("[\"") {
            let label = &line[start + 2..line.len() - 2];
            assert!(line.ends_with("\"]"), "{line}");
            assert!(!label.contains('"'), "{line}");
            assert!(!label.contains(['<', '>', '&', '`', ';'].as_ref()) || label.contains('#'));
        }
    }
    // the node named `end` (a Mermaid keyword) is only ever a label
    assert!(m.contains("[\"end\"]"));
    assert!(m.contains("  end\n"), "the subgraph is closed");
    assert_eq!(m.matches(" --> ").count(), NASTY.len() - 1);
}

#[test]
fn json_export_round_trips_names() {
    let g = nasty_graph();
    let text = g.to_json(&ExportFilter::default()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = NASTY.to_vec();
    want.push("plain.rs");
    want.sort();
    assert_eq!(nodes, want);
    assert_eq!(v["nodes"][0]["component"], "comp \"x\" <y>");
    let edges = v["edges"].as_array().unwrap();
    assert_eq!(edges.len(), NASTY.len() - 1);
    assert_eq!(edges[0]["kind"], "import");
    assert_eq!(edges[0]["line"], 1);
    let empty = GraphBuilder::new().build();
    let e: serde_json::Value =
        serde_json::from_str(&empty.to_json(&ExportFilter::default()).unwrap()).unwrap();
    assert_eq!(e, serde_json::json!({"nodes": [], "edges": []}));
}

#[test]
fn export_filters_by_component_and_neighbourhood() {
    // a/1 → a/2 → b/1 → b/2 ; c/1 → a/1
    let g = graph(&[
        ("a/1", "a/2"),
        ("a/2", "b/1"),
        ("b/1", "b/2"),
        ("c/1", "a/1"),
    ]);
    let paths = |f: ExportFilter| -> (Vec<String>, usize) {
        let v: serde_json::Value = serde_json::from_str(&g.to_json(&f).unwrap()).unwrap();
        let nodes = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["path"].as_str().unwrap().to_string())
            .collect();
        (nodes, v["edges"].as_array().unwrap().len())
    };
    let comp = |c: &str| Some(c.to_string());
    assert_eq!(
        paths(ExportFilter {
            component: comp("a"),
            ..Default::default()
        }),
        (vec!["a/1".into(), "a/2".into()], 1)
    );
    let from = |d, direction| ExportFilter {
        from: Some("a/2".into()),
        depth: d,
        direction,
        ..Default::default()
    };
    assert_eq!(
        paths(from(Some(1), Direction::Both)),
        (vec!["a/1".into(), "a/2".into(), "b/1".into()], 2)
    );
    assert_eq!(
        paths(from(None, Direction::Dependencies)),
        (vec!["a/2".into(), "b/1".into(), "b/2".into()], 2)
    );
    assert_eq!(
        paths(from(None, Direction::Dependents)),
        (vec!["a/1".into(), "a/2".into(), "c/1".into()], 2)
    );
    assert_eq!(
        paths(from(Some(0), Direction::Both)),
        (vec!["a/2".into()], 0)
    );
    // component and neighbourhood intersect
    let both = ExportFilter {
        component: comp("b"),
        ..from(Some(2), Direction::Both)
    };
    assert_eq!(paths(both), (vec!["b/1".into(), "b/2".into()], 1));
}

/// A deterministic pseudo-random graph: `n` files in `n / 500` components, `m` edges that
/// mostly point "down" (to a smaller index, like layered code) with some back edges (cycles).
pub(super) fn synthetic(n: usize, m: usize, seed: u64) -> DepGraph {
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let name = |i: usize| format!("c{:03}/f{i:06}.rs", i / 500);
    let mut b = GraphBuilder::new();
    for i in 0..n {
        b.file(&name(i), &format!("c{:03}", i / 500), "source");
    }
    for k in 0..m {
        let from = (next() % n as u64) as usize;
        let to = if k % 50 == 0 {
            (next() % n as u64) as usize
        } else {
            // mostly nearby, lower files: components import a few others
            let span = 1 + (next() % 2000) as usize;
            from.saturating_sub(span)
        };
        b.edge(&name(from), &name(to), "use", 1 + (k % 300) as u32);
    }
    b.build()
}

#[test]
fn a_50k_file_graph_answers_every_query() {
    let g = synthetic(50_000, 160_000, 7);
    assert_eq!(g.len(), 50_000);
    assert!(g.edge_count() > 150_000);
    let start = &g.files()[25_000].clone();
    assert!(!g.dependencies(start, Some(3)).unwrap().is_empty());
    assert!(!g
        .affected(&[g.files()[10].as_str()], Some(3))
        .files
        .is_empty());
    let cycles = g.cycles();
    assert!(!cycles.is_empty());
    let in_cycles: usize = cycles.iter().map(|c| c.files.len()).sum();
    assert!(in_cycles <= g.len());
    assert_eq!(g.rank(10).len(), 10);
    assert!(g.components().components.len() == 100);
    let _ = g.related(start, 2).unwrap();
    let _ = g.orphans(&[]);
}
