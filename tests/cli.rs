//! The command line as scripts use it, against a real daemon: `--json` on every verb, exit
//! codes, `wfdb doctor` with the daemon up, misconfigured and down, completions and man pages.

mod common;

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Every line of `out` as a JSON object (panics, naming the command, on anything else).
fn objects(args: &[&str], out: &str) -> Vec<Value> {
    out.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {line}"));
            assert!(v.is_object(), "{args:?}: not an object: {line}");
            v
        })
        .collect()
}

/// Runs `wfdb --json ARGS`, expects success and at least one line, all JSON objects.
fn json(socket: &Path, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let (code, out, err) = cli(socket, &full);
    assert_eq!(code, 0, "{args:?}: {err}");
    let lines = objects(args, &out);
    assert!(!lines.is_empty(), "{args:?} printed nothing");
    lines
}

fn fixture(root: &Path) {
    write_tree(
        root,
        &[
            ("app/__init__.py", ""),
            ("app/main.py", "from app import util\nimport app.models\n"),
            ("app/util.py", "from . import models\n"),
            ("app/models.py", "import os\n"),
            ("cyc/__init__.py", ""),
            ("cyc/a.py", "import cyc.b\n"),
            ("cyc/b.py", "import cyc.a\n"),
            ("lonely.py", "x = 1\n"),
            ("copy1.txt", "the same bytes\n"),
            ("copy2.txt", "the same bytes\n"),
        ],
    );
}

/// A daemon on the fixture tree: its folders, the tree, the daemon.
async fn daemon_on_fixture() -> (Dirs, PathBuf, Daemon) {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    fixture(&root);
    let d = start(&dirs, &[root.as_os_str()]).await;
    (dirs, root, d)
}

/// Waits until the dependency graph is built: until then graph verbs exit 3 (UNAVAILABLE).
fn wait_graph(socket: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (code, _, err) = cli(socket, &["graph", "rank"]);
        match code {
            0 => return,
            3 => assert!(Instant::now() < deadline, "graph never ready: {err}"),
            _ => panic!("graph rank: {code} {err}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a streaming verb with --json, calls `poke` until it prints a line, and checks that
/// line is a JSON object.
fn first_streamed(socket: &Path, args: &[&str], mut poke: impl FnMut(u32)) -> Value {
    let mut child = Command::new(wfdb_bin())
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut n = 0;
    let line = loop {
        // The subscription may not be open yet when poked: poke again until a line comes.
        poke(n);
        n += 1;
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            break line.unwrap();
        }
        assert!(Instant::now() < deadline, "{args:?} printed nothing");
    };
    let _ = child.kill();
    let _ = child.wait();
    objects(args, &line).remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb_honours_json() {
    let (dirs, root, d) = daemon_on_fixture().await;
    let other = dirs.tmp.path().join("other");
    write_old(&other.join("x.md"), b"# x\n");
    let s = d.socket.clone();
    wait_graph(&s);

    let work = dirs.tmp.path();
    std::fs::write(
        work.join("wf.json"),
        r#"{"workflow_id": "build", "name": "Build", "description": "x",
            "steps": [{"step": 1, "action": "Generate", "agent": "codex"}],
            "required_agents": ["codex"], "estimated_time": 10.0, "success_rate": 0.9}"#,
    )
    .unwrap();
    std::fs::write(
        work.join("session.json"),
        r#"{"context_snapshot": {"k": "v"}, "learned_patterns": ["p"]}"#,
    )
    .unwrap();
    let p = |name: &str| work.join(name).to_str().unwrap().to_string();
    let other_s = other.to_str().unwrap();

    // Single results: one object.
    let single: &[&[&str]] = &[
        &["status"],
        &["file", "app/main.py"],
        &["scan"],
        &["clock"],
        &["changes", "--since", "0"],
        &["graph", "path", "app/main.py", "app/models.py"],
        &["graph", "export", "--format", "dot"],
        &["graph", "export", "--format", "mermaid"],
        &["graph", "export", "--format", "json"],
        &["watch", other_s],
        &["unwatch", other_s],
        &[
            "agent",
            "register",
            "codex",
            "--capability",
            "code_generation",
            "--owns",
            "app/**",
        ],
        &["agent", "get", "codex"],
        &[
            "agent",
            "metric",
            "codex",
            "code_generation",
            "--latency-ms",
            "5",
        ],
        &["agent", "heartbeat", "codex", "--ttl-ms", "60000"],
        &["workflow", "define", "--file", &p("wf.json")],
        &["workflow", "get", "build"],
        &["workflow", "defaults"],
        &["run", "start", "build", "--id", "r1"],
        &["run", "step", "r1", "1", "--status", "succeeded"],
        &["run", "get", "r1"],
        &["run", "finish", "r1"],
        &["run", "expire", "--idle-ms", "1"],
        &["session", "save", "s1", "--file", &p("session.json")],
        &["session", "restore", "s1", "--changes"],
        &["session", "config"],
        &["kg", "path", "agent:codex", "file:app/main.py"],
        &["kg", "show"],
        &["kg", "rebuild"],
        &["export", "-"],
        &["export", &p("db.json")],
        &["import", &p("db.json"), "--dry-run"],
        &["import", &p("db.json")],
        &["report"],
        &["report", "--format", "markdown"],
        &["session", "delete", "s1"],
        &["agent", "remove", "codex", "--force"],
    ];
    for args in single {
        let lines = json(&s, args);
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
    }
    // Lists: one object per line.
    json(&s, &["agent", "register", "codex", "--owns", "app/**"]);
    json(&s, &["run", "start", "build", "--id", "r2"]);
    json(&s, &["session", "save", "s2", "--file", &p("session.json")]);
    let lists: &[(&[&str], usize)] = &[
        (&["files"], 10),
        (&["files", "--glob", "app/*.py"], 4),
        (&["duplicates"], 1),
        (&["roots"], 1),
        (&["deps", "app/main.py"], 2),
        (&["deps", "app/models.py", "--reverse", "--depth", "2"], 2),
        (&["related", "app/util.py"], 1),
        (&["affected", "app/models.py"], 2),
        (&["graph", "cycles"], 1),
        (&["graph", "orphans"], 1),
        (&["graph", "components"], 1),
        (&["graph", "rank"], 1),
        (&["agent", "list"], 1),
        (&["workflow", "list"], 4),
        (&["workflow", "versions", "build"], 1),
        (&["run", "list"], 2),
        (&["session", "list"], 1),
        (&["session", "history", "s2"], 1),
        (&["kg", "neighbors", "agent:codex"], 1),
        (&["kg", "related", "agent:codex"], 1),
        (&["kg", "lookup", "agent_files", "codex"], 3),
        (&["config", "show"], 17),
    ];
    for (args, at_least) in lists {
        let lines = json(&s, args);
        assert!(lines.len() >= *at_least, "{args:?}: {lines:?}");
    }
    let dup = &json(&s, &["duplicates"])[0];
    assert_eq!(dup["paths"].as_array().map(Vec::len), Some(2), "{dup}");

    // Streams: one object per event.
    let batch = first_streamed(&s, &["changes", "--follow"], |n| {
        std::fs::write(root.join(format!("new{n}.txt")), b"x").unwrap();
    });
    assert!(batch.get("clock").is_some(), "{batch}");
    let event = first_streamed(&s, &["agent", "watch"], |n| {
        cli(&s, &["agent", "register", &format!("w{n}")]);
    });
    assert!(event.get("event").is_some(), "{event}");
    let event = first_streamed(&s, &["run", "watch"], |n| {
        cli(&s, &["run", "start", "build", "--id", &format!("rw{n}")]);
    });
    assert!(event["run"].get("run_id").is_some(), "{event}");

    // Verbs that need no daemon.
    let pages = dirs.tmp.path().join("man");
    let v = json(&s, &["man", "--dir", pages.to_str().unwrap()]);
    assert!(
        v[0]["pages"].as_array().is_some_and(|p| p.len() > 40),
        "{v:?}"
    );
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_scripts_can_rely_on() {
    let (dirs, _root, d) = daemon_on_fixture().await;
    let bad_json = dirs.tmp.path().join("bad.json");
    std::fs::write(&bad_json, "{not json").unwrap();
    let nowhere = dirs.tmp.path().join("nowhere");
    let cases: &[(&[&str], i32, &str)] = &[
        (&["file", "app/main.py"], 0, ""),
        (&["file", "missing.txt"], 4, "missing.txt"),
        (&["status", "--root", "/not/a/root"], 4, "/not/a/root"),
        (&["workflow", "get", "nope"], 4, "nope"),
        (&["import", nowhere.to_str().unwrap()], 4, "nowhere"),
        (&["file", "../escape"], 5, "escapes the root"),
        (&["file", "/etc/passwd"], 5, ""),
        (&["watch", nowhere.to_str().unwrap()], 5, "nowhere"),
        (
            &[
                "agent",
                "register",
                "x",
                "--file",
                bad_json.to_str().unwrap(),
            ],
            5,
            "not valid JSON",
        ),
        (&["files", "--glob", "[unclosed"], 5, ""),
        (&["no-such-verb"], 2, "unrecognized subcommand"),
        (&["files", "--limit", "many"], 2, "invalid value"),
    ];
    for (args, want, says) in cases {
        let (code, _, err) = cli(&d.socket, args);
        assert_eq!(code, *want, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // With --json, the error is one JSON object on standard error, with the exit code.
    let (code, out, err) = cli(&d.socket, &["--json", "file", "missing.txt"]);
    assert_eq!((code, out.as_str()), (4, ""));
    let v: Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(v["exit_code"], 4);
    assert_eq!(v["grpc_code"], "NotFound");
    assert!(v["error"].as_str().unwrap().contains("missing.txt"), "{v}");
    assert!(d.stop().success());

    // No daemon: 3, with how to start one.
    let (code, _, err) = cli(&dirs.socket, &["status"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("wfdb serve"), "{err}");
    let (code, _, err) = cli(&dirs.socket, &["--json", "files"]);
    assert_eq!(code, 3);
    assert_eq!(
        serde_json::from_str::<Value>(err.trim()).unwrap()["exit_code"],
        3
    );
}

/// `wfdb --json doctor` parsed: (exit code, report, the checks by name).
fn doctor(
    socket: &Path,
    db: &Path,
    extra: &[&str],
) -> (i32, Value, std::collections::BTreeMap<String, Value>) {
    let mut args = vec!["--json", "doctor", "--db", db.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(socket, &args);
    let report: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {out}\n{err}"));
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    let checks = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap().to_string(), c.clone()))
        .collect();
    (code, report, checks)
}

fn fixes_of(check: &Value) -> String {
    check["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_what_is_wrong_and_says_how_to_fix_it() {
    let (dirs, root, d) = daemon_on_fixture().await;
    let (_, status, _) = cli(&d.socket, &["--json", "status"]);
    let status: Value = serde_json::from_str(status.trim()).unwrap();
    let instance = status["instance_id"].as_str().unwrap().to_string();
    assert_eq!(status["schema_version"], 1);

    // A healthy daemon: nothing fails, exit 0.
    let (code, report, checks) = doctor(&d.socket, &dirs.db, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    for name in ["socket", "daemon", "version", "database", "inotify"] {
        let status = checks[name]["status"].as_str().unwrap();
        assert!(status == "ok" || status == "warn", "{name}: {report:#}");
    }
    for name in ["config", "socket", "daemon", "version", "database"] {
        assert_eq!(checks[name]["status"], "ok", "{name}: {report:#}");
    }
    // A refused configuration file is a failed check naming file, line and key; the other
    // checks still run.
    let bad = dirs.tmp.path().join("bad.toml");
    std::fs::write(&bad, "[watch]\nsetle = \"5ms\"\n").unwrap();
    let (code, report, with_bad) =
        doctor(&d.socket, &dirs.db, &["--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{report:#}");
    let finding = with_bad["config"]["finding"].as_str().unwrap();
    assert!(
        finding.contains(&format!("{}:2: unknown key `watch.setle`", bad.display())),
        "{report:#}"
    );
    assert_eq!(with_bad["daemon"]["status"], "ok", "{report:#}");
    let db = &checks["database"]["details"];
    assert_eq!(db["open_in_daemon"], true);
    assert_eq!(db["instance_id"], instance.as_str());
    assert_eq!(db["schema"], 1);
    assert!(
        checks["inotify"]["details"]["watched_dirs"]
            .as_u64()
            .unwrap()
            >= 4
    );
    assert_eq!(checks["inotify"]["details"]["polled_dirs"], 0);
    // The human form: one line per check with its mark.
    let (code, text, _) = cli(&d.socket, &["doctor", "--db", dirs.db.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(text.contains("✓ daemon    serving on"), "{text}");
    assert!(text.contains("0 failure(s)"), "{text}");

    // A socket others can use: the socket check fails and names the chmod.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, report, checks) = doctor(&d.socket, &dirs.db, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(checks["socket"]["status"], "fail");
    assert!(checks["socket"]["finding"]
        .as_str()
        .unwrap()
        .contains("0666"));
    let fixes = fixes_of(&checks["socket"]);
    assert!(
        fixes.contains(&format!("chmod 600 {}", d.socket.display())),
        "{fixes}"
    );
    assert_eq!(
        checks["daemon"]["status"], "ok",
        "the daemon itself is fine"
    );
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(doctor(&d.socket, &dirs.db, &[]).0, 0);

    // The daemon stopped: socket and daemon fail with how to start it; the database on disk
    // is checked instead (the same instance), and the tree is walked for inotify.
    assert!(d.stop().success());
    let (code, report, checks) = doctor(&dirs.socket, &dirs.db, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["ok"], false);
    assert_eq!(checks["socket"]["status"], "fail");
    assert!(checks["socket"]["finding"]
        .as_str()
        .unwrap()
        .starts_with("no socket at"));
    assert_eq!(checks["daemon"]["status"], "fail");
    assert!(fixes_of(&checks["daemon"]).contains("wfdb serve"));
    assert_eq!(checks["version"]["status"], "skip");
    assert_eq!(checks["database"]["status"], "ok", "{report:#}");
    let db = &checks["database"]["details"];
    assert_eq!(db["instance_id"], instance.as_str());
    assert_eq!(db["roots"], 1);
    let walk = &checks["inotify"]["details"];
    assert_eq!(
        walk["roots"][0],
        root.canonicalize().unwrap().to_str().unwrap()
    );
    // tree, app, cyc: three folders.
    assert_eq!(walk["folders"], 3, "{walk}");

    // The check let go of the database: a daemon starts on it at once.
    let d = start(&dirs, &[root.as_os_str()]).await;
    let (code, _, checks) = doctor(&d.socket, &dirs.db, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        checks["database"]["details"]["instance_id"],
        instance.as_str()
    );
    // Killed without cleaning up: a stale socket nobody listens on.
    drop(d);
    let (code, _, checks) = doctor(&dirs.socket, &dirs.db, &[]);
    assert_eq!(code, 1);
    assert_eq!(checks["socket"]["status"], "ok");
    assert!(
        checks["daemon"]["finding"]
            .as_str()
            .unwrap()
            .contains("nobody listens"),
        "{:#}",
        checks["daemon"]
    );

    // No database yet: said, and nothing is created.
    let fresh = dirs.tmp.path().join("fresh").join("db");
    let (_, _, checks) = doctor(&dirs.socket, &fresh, &[root.to_str().unwrap()]);
    assert_eq!(checks["database"]["status"], "ok");
    assert!(checks["database"]["finding"]
        .as_str()
        .unwrap()
        .starts_with("no database yet"));
    assert!(!fresh.exists() && !fresh.parent().unwrap().exists());
}

#[test]
fn completions_and_the_man_page_need_no_daemon() {
    let nowhere = Path::new("/nonexistent/wfdb.sock");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = cli(nowhere, &["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(
            out.contains("doctor") && out.contains("completions"),
            "{shell}"
        );
    }
    let (code, out, _) = cli(nowhere, &["completions", "tcsh"]);
    assert_eq!((code, out.as_str()), (2, ""));
    let (code, page, _) = cli(nowhere, &["man"]);
    assert_eq!(code, 0);
    assert!(page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"));
    assert!(page.contains(".SH \"EXIT STATUS\""));
    let (code, help, _) = cli(nowhere, &["--help"]);
    assert_eq!(code, 0);
    for heading in ["Examples:", "Environment:", "Files:", "Exit status:"] {
        assert!(help.contains(heading), "{heading}");
    }
}
