//! The configuration file and the precedence of settings: flags, then `WFDB_*` variables, then
//! the file, then defaults; every refused file names its path, line and key.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{start, wfdb_bin, Dirs};
use serde_json::Value;

/// Runs `wfdb` with only the given environment (plus a private HOME and config folder).
fn wfdb(home: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(wfdb_bin());
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(home)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `config show --json` as key → (value, source).
fn show(
    home: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::collections::BTreeMap<String, (Value, String)> {
    let mut all = vec!["--json", "config", "show"];
    all.extend_from_slice(args);
    let (code, out, err) = wfdb(home, &all, env);
    assert_eq!(code, 0, "config show failed: {err}");
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["key"].as_str().unwrap().to_string(),
                (
                    v["value"].clone(),
                    v["source"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn flags_beat_environment_beat_the_file_beat_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let dir = home.join(".config/wfdb");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        "cache_mb = 32\nsync_timeout = \"3s\"\nignore = [\"*.log\"]\n\n[watch]\nsettle = \"20ms\"\npoll_interval = 5\n\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let file_at = |line: usize| format!("{}:{line}", file.display());

    // The file in the default location is read; its values win over defaults.
    let s = show(home, &[], &[]);
    assert_eq!(s["cache_mb"], (Value::from(32), file_at(1)));
    assert_eq!(s["watch.settle"], (Value::from("20ms"), file_at(6)));
    assert_eq!(s["watch.poll_interval"], (Value::from("5s"), file_at(7)));
    assert_eq!(s["log.format"], (Value::from("json"), file_at(10)));
    assert_eq!(
        s["watch.max_batch_delay"],
        (Value::from("100ms"), "default".into())
    );
    let db = home.join(".local/state/wfdb/db");
    assert_eq!(
        s["db"],
        (Value::from(db.to_str().unwrap()), "default".into())
    );
    assert_eq!(s["roots"].0, serde_json::json!([home.to_str().unwrap()]));

    // The environment wins over the file.
    let env = [
        ("WFDB_SYNC_TIMEOUT", "7s"),
        ("WFDB_SETTLE", "30ms"),
        ("RUST_LOG", "debug"),
    ];
    let s = show(home, &[], &env);
    assert_eq!(
        s["sync_timeout"],
        (Value::from("7s"), "env WFDB_SYNC_TIMEOUT".into())
    );
    assert_eq!(
        s["watch.settle"],
        (Value::from("30ms"), "env WFDB_SETTLE".into())
    );
    assert_eq!(
        s["log.filter"],
        (Value::from("debug"), "env RUST_LOG".into())
    );
    assert_eq!(s["cache_mb"].1, file_at(1));

    // Flags win over both.
    let s = show(home, &["--settle", "40ms", "--ignore", "a,b", "repo"], &env);
    assert_eq!(
        s["watch.settle"],
        (Value::from("40ms"), "flag --settle".into())
    );
    assert_eq!(
        s["ignore"],
        (serde_json::json!(["a", "b"]), "flag --ignore".into())
    );
    assert_eq!(s["sync_timeout"].1, "env WFDB_SYNC_TIMEOUT");
    let repo = home.join("repo");
    assert_eq!(
        s["roots"],
        (
            serde_json::json!([repo.to_str().unwrap()]),
            "flag PATH...".into()
        )
    );

    // --config names another file; WFDB_CONFIG does too; the flag wins.
    let other = home.join("other.toml");
    std::fs::write(&other, "cache_mb = 8\n").unwrap();
    let third = home.join("third.toml");
    std::fs::write(&third, "cache_mb = 9\n").unwrap();
    let s = show(home, &["--config", "other.toml"], &[]);
    assert_eq!(
        s["cache_mb"],
        (Value::from(8), format!("{}:1", other.display()))
    );
    assert_eq!(s["watch.settle"].1, "default", "only one file is read");
    let s = show(home, &[], &[("WFDB_CONFIG", third.to_str().unwrap())]);
    assert_eq!(s["cache_mb"].0, Value::from(9));
    let s = show(
        home,
        &["--config", other.to_str().unwrap()],
        &[("WFDB_CONFIG", third.to_str().unwrap())],
    );
    assert_eq!(s["cache_mb"].0, Value::from(8));

    // The human table says where each value came from.
    let (code, out, _) = wfdb(home, &["config", "show"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("configuration file: {}", file.display())),
        "{out}"
    );
    let settle = out
        .lines()
        .find(|l| l.starts_with("watch.settle "))
        .unwrap();
    assert!(
        settle.contains("20ms") && settle.ends_with(&file_at(6)),
        "{settle}"
    );
}

#[test]
fn every_bad_setting_is_refused_naming_the_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let cases: &[(&str, &str)] = &[
        (
            "db = \"/x\"\n[watch]\nsetle = \"1s\"\n",
            ":3: unknown key `watch.setle` (did you mean `watch.settle`?)",
        ),
        ("colour = \"blue\"\n", ":1: unknown key `colour`"),
        (
            "cache_mb = \"lots\"\n",
            ":1: `cache_mb`: expected a whole number",
        ),
        ("cache_mb = 0\n", ":1: `cache_mb`: must be between 1 and"),
        (
            "\nsync_timeout = \"soon\"\n",
            ":2: `sync_timeout`: expected a duration",
        ),
        (
            "[watch]\nsettle = \"1h\"\n",
            ":2: `watch.settle`: must be between 1ms and 10s",
        ),
        (
            "listen = \"localhost:80\"\n",
            ":1: `listen`: expected an IP address and port",
        ),
        (
            "metrics = 9464\n",
            ":1: `metrics`: expected an address string",
        ),
        (
            "ignore = \"*.log\"\n",
            ":1: `ignore`: expected an array of strings",
        ),
        (
            "roots = [\"/a\", 7]\n",
            ":1: `roots`: expected an array of path strings",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            ":2: `log.format`: expected one of",
        ),
        (
            "[log]\nfilter = \"wfdb=shouty\"\n",
            ":2: `log.filter`: not a valid log filter",
        ),
        (
            "[retention]\ntombstones = \"a while\"\n",
            ":2: `retention.tombstones`: expected a duration",
        ),
        (
            "watch = 1\n",
            ":1: unknown key `watch` (`watch` is a section",
        ),
        ("cache_mb = 1\ncache_mb = 2\n", ":2:"),
        ("roots = [\n", ":"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = home.join(format!("bad-{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let want = format!("{}{expected}", file.display());
        // `config show` and `serve` refuse it the same way, before doing anything.
        for args in [
            vec!["--config", file.to_str().unwrap(), "config", "show"],
            vec![
                "--config",
                file.to_str().unwrap(),
                "serve",
                "--db",
                "db",
                "--socket",
                "s.sock",
            ],
        ] {
            let (code, _, err) = wfdb(home, &args, &[]);
            assert_ne!(code, 0, "{text:?} was accepted by {args:?}");
            assert!(
                err.contains(&want),
                "{text:?} via {args:?}: want {want:?} in {err:?}"
            );
        }
    }
    assert!(
        !home.join("db").exists(),
        "a refused configuration opened a database"
    );

    // Bad environment variables and flags are named too; a named file must exist.
    let (code, _, err) = wfdb(home, &["config", "show"], &[("WFDB_MAX_WATCHES", "-1")]);
    assert_ne!(code, 0);
    assert!(
        err.contains("environment variable WFDB_MAX_WATCHES: expected a whole number"),
        "{err}"
    );
    let (code, _, err) = wfdb(home, &["config", "show", "--sync-timeout", "never"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("--sync-timeout: expected a duration"), "{err}");
    let (code, _, err) = wfdb(
        home,
        &[
            "config",
            "show",
            "--max-batch-delay",
            "5ms",
            "--settle",
            "50ms",
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("`watch.max_batch_delay` (flag --max-batch-delay) must not be less than `watch.settle` (flag --settle)"), "{err}");
    let (code, _, err) = wfdb(home, &["--config", "missing.toml", "config", "show"], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot read the configuration file") && err.contains("missing.toml"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_with_the_file_and_clients_find_its_socket_there() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("root");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("src/main.c"),
        "#include \"api.h\"\nint main(void) { return 0; }\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("headers")).unwrap();
    std::fs::write(root.join("headers/api.h"), "int api(void);\n").unwrap();
    std::fs::write(root.join("debug.log"), "noise\n").unwrap();
    let file = dirs.tmp.path().join("wfdb.toml");
    std::fs::write(
        &file,
        format!(
            "socket = \"{}\"\nignore = [\"*.log\"]\n[deps]\nc_include_paths = [\"headers\"]\n[log]\nformat = \"json\"\nfilter = \"info\"\n",
            dirs.socket.display()
        ),
    )
    .unwrap();
    let d = start(
        &dirs,
        &["--config".as_ref(), file.as_os_str(), root.as_os_str()],
    )
    .await;

    // A client given only the file finds the daemon through the file's `socket`.
    let out = Command::new(wfdb_bin())
        .args(["--json", "--config", file.to_str().unwrap(), "files"])
        .env_remove("WFDB_SOCKET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paths: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        paths,
        vec!["headers/api.h", "src/main.c"],
        "the file's ignore glob applies"
    );

    // The file's include folder resolves the C include.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    loop {
        let (code, out, err) = common::cli(&d.socket, &["--json", "deps", "src/main.c"]);
        if code == 0 && out.contains("headers/api.h") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "include not resolved: {out} {err}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The log is JSON lines.
    let log = d.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("configuration file read")));
    assert!(d.stop().success());
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/config.toml.example");
    let (code, out, err) = wfdb(tmp.path(), &["--config", example, "config", "show"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/home/alice/src/project-a"), "{out}");
    assert!(out.contains("retention.tombstones   30d"), "{out}");
    assert!(
        out.contains("ci (/etc/wfdb/ci.token): read; bots (/etc/wfdb/bots.token): read, write"),
        "{out}"
    );
}

/// `auto` logs to the journal only when systemd says standard error is the journal
/// (`JOURNAL_STREAM` naming its device and inode); without a journal socket the daemon says so
/// and keeps logging to standard error.
#[test]
fn the_log_goes_to_the_journal_only_when_standard_error_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let journal_here = Path::new("/run/systemd/journal/socket").exists();
    let run = |format: &str, journal_stream: Option<&dyn Fn(&std::fs::Metadata) -> String>| {
        let dirs = Dirs::new();
        let root = dirs.tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let log = dirs.tmp.path().join("stderr.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(wfdb_bin());
        cmd.args(["serve", "--log-format", format, "--db"])
            .arg(&dirs.db)
            .arg("--socket")
            .arg(&dirs.socket)
            .arg(&root)
            .env("XDG_CONFIG_HOME", dirs.tmp.path())
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(stream) = journal_stream {
            cmd.env("JOURNAL_STREAM", stream(&file.metadata().unwrap()));
        }
        let mut child = cmd.stderr(file).spawn().unwrap();
        let deadline = std::time::Instant::now() + common::TIMEOUT;
        while !dirs.socket.exists() {
            assert!(child.try_wait().unwrap().is_none(), "daemon exited early");
            assert!(std::time::Instant::now() < deadline, "daemon not ready");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        common::signal(&child, libc::SIGTERM);
        assert!(common::wait_timeout(&mut child, common::TIMEOUT).success());
        std::fs::read_to_string(&log).unwrap()
    };
    let to_journal = |text: &str| {
        if journal_here {
            !text.contains(" ready")
        } else {
            text.contains("cannot reach the journal") && text.contains(" ready")
        }
    };
    let this_stream = |m: &std::fs::Metadata| format!("{}:{}", m.dev(), m.ino());
    let other_stream = |m: &std::fs::Metadata| format!("{}:{}", m.dev(), m.ino() + 1);

    let human = run("auto", None);
    assert!(
        human.contains(" ready") && !human.contains("journal"),
        "{human}"
    );
    assert!(!human.starts_with('{'), "not JSON: {human}");
    let inherited = run("auto", Some(&other_stream));
    assert!(
        inherited.contains(" ready") && !inherited.contains("journal"),
        "{inherited}"
    );
    let journal = run("auto", Some(&this_stream));
    assert!(to_journal(&journal), "{journal}");
    let forced = run("journald", None);
    assert!(to_journal(&forced), "{forced}");
}

/// Odd inputs: a database path that is not UTF-8 (valid on Linux) is taken as it is; a
/// configuration "file" that is a folder, or not UTF-8, or unreadable, is refused by name.
#[test]
fn odd_paths_and_unreadable_files() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let raw = std::ffi::OsStr::from_bytes(b"/srv/caf\xe9/db");
    let out = Command::new(wfdb_bin())
        .args(["--json", "config", "show"])
        .env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("WFDB_DB", raw)
        .current_dir(home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["key"] == "db")
        .unwrap();
    assert_eq!(db["source"], "env WFDB_DB");
    assert_eq!(db["value"], "/srv/caf\u{fffd}/db");

    let folder = home.join("folder.toml");
    std::fs::create_dir(&folder).unwrap();
    let latin1 = home.join("latin1.toml");
    std::fs::write(&latin1, b"db = \"caf\xe9\"\n").unwrap();
    for file in [&folder, &latin1] {
        let (code, _, err) = wfdb(
            home,
            &["--config", file.to_str().unwrap(), "config", "show"],
            &[],
        );
        assert_ne!(code, 0);
        assert!(
            err.contains(&format!(
                "cannot read the configuration file {}",
                file.display()
            )),
            "{err}"
        );
    }
    if !common::is_root() {
        let locked = home.join("locked.toml");
        std::fs::write(&locked, "cache_mb = 8\n").unwrap();
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();
        let (code, _, err) = wfdb(
            home,
            &["--config", locked.to_str().unwrap(), "config", "show"],
            &[],
        );
        assert_ne!(code, 0);
        assert!(err.contains("Permission denied"), "{err}");
    }
}
