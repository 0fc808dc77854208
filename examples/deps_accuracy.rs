//! Accuracy of the dependency extractor and resolver against a generated corpus, and the speed
//! of the graph queries on the resulting graph.
//!
//! The corpus and its manifest come from `bench/gen_corpus.py` (in the shared folder beside the
//! repository); the manifest (JSON) is turned into a TSV first, so this example needs nothing
//! but the `deps` and `graph` modules and std:
//!
//! ```text
//! python3 ../shared/bench/gen_corpus.py --files 50000 --seed 7 --out /tmp/c50 --manifest /tmp/c50.json
//! python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))
//! for p,f in m["files"].items(): print("F", p, f["lang"], f["purpose"], sep="\t")
//! for p,ds in m["deps"].items(): [print("D", p, d, sep="\t") for d in ds]
//! for p,xs in m["externals"].items(): [print("X", p, x, sep="\t") for x in xs]' \
//!     /tmp/c50.json > /tmp/c50.tsv
//! cargo run --release --example deps_accuracy -- /tmp/c50 /tmp/c50.tsv
//! ```
//!
//! TSV rows: `F <path> <lang> [<purpose>]` (every catalogued file; a TSV made by the older
//! one-liner without the purpose column is accepted, its files then count as `source`),
//! `D <path> <target>` (an expected edge), `X <path> <spec>` (an expected external). Every `F`
//! file is read and fed to `DependencyIndex::upsert`; edges are then compared per language of
//! the importing file. `VERBOSE=1` prints the first 50 mismatched edges; `EAGER=1` also builds
//! the index live (a `finish` after every file, in reverse order) and checks it equals the bulk
//! build.
//!
//! Then the resolved edges are loaded into a `graph::DepGraph` (component of a file: its
//! nearest ancestor folder holding a manifest, else its top-level folder, as in DESIGN.md) and
//! the graph queries are timed on it: a depth-3 `affected` from the top-ranked file, from the
//! top-20 file with the most transitive dependents and from 100 spread-out files, `cycles`, and
//! the other queries and exports. Each is run 5 times;
//! the best and worst times are printed.
//!
//! Exits non-zero when precision or recall of any language is below 0.99.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use workflowdb::deps::{DependencyIndex, ResolveConfig};
use workflowdb::graph::{ExportFilter, GraphBuilder};

#[derive(Default)]
struct Score {
    expected: usize,
    found: usize,
    correct: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: deps_accuracy CORPUS_DIR MANIFEST_TSV");
        std::process::exit(2);
    }
    let root = std::path::Path::new(&args[1]);
    let tsv = std::fs::read_to_string(&args[2]).expect("read the TSV");
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut purposes: BTreeMap<String, String> = BTreeMap::new();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut externals: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in tsv.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            ["F", p, lang] => {
                files.insert(p.to_string(), lang.to_string());
            }
            ["F", p, lang, purpose] => {
                files.insert(p.to_string(), lang.to_string());
                purposes.insert(p.to_string(), purpose.to_string());
            }
            ["D", p, t] => {
                deps.entry(p.to_string()).or_default().insert(t.to_string());
            }
            ["X", p, x] => {
                externals
                    .entry(p.to_string())
                    .or_default()
                    .insert(x.to_string());
            }
            _ => {}
        }
    }
    let verbose = std::env::var_os("VERBOSE").is_some();

    // read everything first so the timing below is resolution work only
    let read_start = Instant::now();
    let mut texts = Vec::with_capacity(files.len());
    let mut bytes = 0usize;
    for p in files.keys() {
        let text = std::fs::read(root.join(p)).unwrap_or_default();
        bytes += text.len();
        texts.push((p.clone(), text));
    }
    let read_time = read_start.elapsed();

    let start = Instant::now();
    let mut idx = DependencyIndex::new(ResolveConfig::default());
    for (p, t) in &texts {
        idx.upsert(p, t);
    }
    let upsert_time = start.elapsed();
    idx.finish();
    let total = start.elapsed();

    if std::env::var_os("EAGER").is_some() {
        // live mode: settle after every file, in reverse order; must equal the bulk build
        let start = Instant::now();
        let mut live = DependencyIndex::new(ResolveConfig::default());
        for (p, t) in texts.iter().rev() {
            live.upsert(p, t);
            live.finish();
        }
        let same = files
            .keys()
            .all(|p| live.edges(p) == idx.edges(p) && live.externals(p) == idx.externals(p));
        println!(
            "eager build (finish after each of {} upserts, reverse order) in {:.2?}; equal to bulk: {same}",
            texts.len(),
            start.elapsed()
        );
    }

    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut ext_scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    for (p, lang) in &files {
        let want = deps.get(p).cloned().unwrap_or_default();
        let got: BTreeSet<String> = idx.edges(p).iter().map(|e| e.target.clone()).collect();
        let s = scores.entry(lang.clone()).or_default();
        s.expected += want.len();
        s.found += got.len();
        s.correct += want.intersection(&got).count();
        for w in want.difference(&got) {
            misses.push(format!("missed {p} -> {w}"));
        }
        for g in got.difference(&want) {
            misses.push(format!("extra  {p} -> {g}"));
        }
        let want_x = externals.get(p).cloned().unwrap_or_default();
        let got_x: BTreeSet<String> = idx
            .externals(p)
            .iter()
            .map(|x| x.trim_start_matches('<').trim_end_matches('>').to_string())
            .collect();
        let e = ext_scores.entry(lang.clone()).or_default();
        e.expected += want_x.len();
        e.found += got_x.len();
        e.correct += want_x.intersection(&got_x).count();
    }
    let edges: usize = files.keys().map(|p| idx.edges(p).len()).sum();
    println!(
        "{} files ({:.1} MiB) read in {:.2?}; index built in {:.2?} (upserts {:.2?}, finish {:.2?}); {} edges",
        files.len(),
        bytes as f64 / 1048576.0,
        read_time,
        total,
        upsert_time,
        total - upsert_time,
        edges
    );
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9}",
        "language", "expected", "found", "correct", "precision", "recall", "ext.prec", "ext.rec"
    );
    let mut ok = true;
    for (lang, s) in &scores {
        if s.expected == 0 && s.found == 0 {
            continue;
        }
        let precision = ratio(s.correct, s.found);
        let recall = ratio(s.correct, s.expected);
        let e = &ext_scores[lang];
        println!(
            "{:<12} {:>9} {:>9} {:>9} {:>9.4} {:>9.4} | {:>9.4} {:>9.4}",
            lang,
            s.expected,
            s.found,
            s.correct,
            precision,
            recall,
            ratio(e.correct, e.found),
            ratio(e.correct, e.expected)
        );
        ok &= precision >= 0.99 && recall >= 0.99;
    }
    if verbose {
        for m in misses.iter().take(50) {
            println!("{m}");
        }
    }
    println!("{} mismatched edges", misses.len());

    graph_timings(&idx, &files, &purposes);

    if !ok {
        std::process::exit(1);
    }
}

/// Build the query graph from the index and time the queries on it.
fn graph_timings(
    idx: &DependencyIndex,
    files: &BTreeMap<String, String>,
    purposes: &BTreeMap<String, String>,
) {
    let start = Instant::now();
    let mut b = GraphBuilder::new();
    let manifests: HashSet<&str> = files
        .keys()
        .filter(|p| is_manifest(p))
        .map(|p| parent(p))
        .collect();
    for p in files.keys() {
        let purpose = purposes.get(p).map_or("source", |s| s.as_str());
        b.file(p, &component(p, &manifests), purpose);
    }
    b.index_edges(idx);
    let g = b.build();
    println!(
        "\ngraph: {} files, {} edges, built in {:.2?} (from the index, components included)",
        g.len(),
        g.edge_count(),
        start.elapsed()
    );

    let top = g.rank(20);
    let hub = top.first().map(|r| r.path.clone()).unwrap_or_default();
    let hub_dependents = top.first().map_or(0, |r| r.dependents);
    // of the 20 top-ranked files, the one with the most transitive dependents
    let deep = top
        .iter()
        .max_by_key(|r| {
            (
                g.affected(&[r.path.as_str()], None).files.len(),
                std::cmp::Reverse(&r.path),
            )
        })
        .map(|r| r.path.clone())
        .unwrap_or_default();
    let spread: Vec<&str> = g
        .files()
        .iter()
        .step_by((g.len() / 100).max(1))
        .map(|s| s.as_str())
        .collect();
    let all = ExportFilter::default();
    let around = ExportFilter {
        from: Some(hub.clone()),
        depth: Some(2),
        ..Default::default()
    };
    let far = g
        .dependents(&hub, None)
        .ok()
        .and_then(|d| d.last().map(|r| r.path.clone()))
        .unwrap_or_else(|| hub.clone());

    println!("{:<58} {:>10} {:>10}  result", "query", "best", "worst");
    timed(
        &format!("affected([{hub}], depth 3)"),
        || g.affected(&[hub.as_str()], Some(3)).files.len(),
        "files",
    );
    timed(
        &format!("affected({} spread files, depth 3)", spread.len()),
        || g.affected(&spread, Some(3)).files.len(),
        "files",
    );
    timed(
        &format!("affected([{deep}], depth 3)"),
        || g.affected(&[deep.as_str()], Some(3)).files.len(),
        "files",
    );
    timed(
        &format!("affected([{deep}], unbounded)"),
        || g.affected(&[deep.as_str()], None).files.len(),
        "files",
    );
    timed(
        "cycles()",
        || {
            let c = g.cycles();
            let largest = c.first().map_or(0, |c| c.files.len());
            format!("{} cycles, largest {largest} files", c.len())
        },
        "",
    );
    timed(
        &format!("dependencies({hub}, depth 3)"),
        || g.dependencies(&hub, Some(3)).map(|v| v.len()).unwrap_or(0),
        "files",
    );
    timed(
        &format!("dependents({hub}, depth 3)"),
        || g.dependents(&hub, Some(3)).map(|v| v.len()).unwrap_or(0),
        "files",
    );
    timed(
        &format!("related({hub}, 2)"),
        || g.related(&hub, 2).map(|v| v.len()).unwrap_or(0),
        "files",
    );
    timed(
        &format!("path({far} -> {hub})"),
        || {
            g.path(&far, &hub)
                .ok()
                .flatten()
                .map_or(0, |p| p.len().saturating_sub(1))
        },
        "edges",
    );
    timed("orphans(source)", || g.orphans(&[]).len(), "files");
    timed(
        "components()",
        || {
            let c = g.components();
            format!(
                "{} components, {} edges between",
                c.components.len(),
                c.edges.len()
            )
        },
        "",
    );
    timed(
        "rank(20)",
        || {
            format!(
                "top: {hub} ({hub_dependents} direct dependents), {} ranked",
                g.rank(20).len()
            )
        },
        "",
    );
    timed("to_dot(all)", || kib(g.to_dot(&all)), "KiB");
    timed("to_mermaid(all)", || kib(g.to_mermaid(&all)), "KiB");
    timed("to_json(all)", || kib(g.to_json(&all)), "KiB");
    timed(
        "to_dot(from hub, depth 2)",
        || kib(g.to_dot(&around)),
        "KiB",
    );
}

/// Run `f` five times; print the best and worst time and the result.
fn timed<T: std::fmt::Display>(name: &str, mut f: impl FnMut() -> T, unit: &str) {
    let mut best = Duration::MAX;
    let mut worst = Duration::ZERO;
    let mut result = None;
    for _ in 0..5 {
        let t = Instant::now();
        let r = f();
        let e = t.elapsed();
        best = best.min(e);
        worst = worst.max(e);
        result = Some(r);
    }
    let result = result.map(|r| r.to_string()).unwrap_or_default();
    let mut name = name.to_string();
    if name.len() > 58 {
        name.truncate(55);
        name.push_str("...");
    }
    println!("{name:<58} {best:>10.2?} {worst:>10.2?}  {result} {unit}");
}

fn kib<E>(r: Result<String, E>) -> usize {
    r.map_or(0, |s| s.len() / 1024)
}

fn is_manifest(path: &str) -> bool {
    matches!(
        path.rsplit('/').next(),
        Some(
            "Cargo.toml"
                | "package.json"
                | "pyproject.toml"
                | "go.mod"
                | "CMakeLists.txt"
                | "pom.xml"
        )
    )
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// The nearest ancestor folder holding a manifest (the root's own manifest aside), else the
/// top-level folder (empty for files at the root).
fn component(path: &str, manifests: &HashSet<&str>) -> String {
    let mut dir = parent(path);
    while !dir.is_empty() {
        if manifests.contains(dir) {
            return dir.to_string();
        }
        dir = parent(dir);
    }
    path.split_once('/')
        .map_or(String::new(), |(top, _)| top.to_string())
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}
