//! gRPC clients as they come: Python's grpcio over a plain `unix:` channel sends the socket
//! path as the HTTP/2 `:authority`, and the daemon serves it (see src/rpc/authority_front.rs).

mod common;

use common::{start, write_old, Dirs};

/// grpcio with `grpc.insecure_channel("unix:PATH")` and no options: health, reflection and a
/// catalog query succeed, for `unix:PATH` and `unix://ABSOLUTE-PATH`, and with the authority
/// set to `localhost`. Needs python3 with grpcio and grpcio-tools: fails in CI (CI=true) when
/// they are missing, skips with a message otherwise.
#[tokio::test]
async fn python_plain_channel() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("repo");
    write_old(&root.join("src/app.py"), b"import util\n");
    write_old(&root.join("src/util.py"), b"X = 1\n");
    let d = start(&dirs, &[root.as_os_str()]).await;
    let Some(stdout) = common::python_example("plain_channel.py", &d.socket) else {
        return;
    };
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, target) in lines.iter().zip(["unix:", "unix:///"]) {
        assert!(line.starts_with(target), "{stdout}");
        assert!(line.contains("health SERVING"), "{stdout}");
        assert!(line.contains("files: src/app.py, src/util.py"), "{stdout}");
    }
    assert!(
        lines[2].ends_with("with authority localhost: health SERVING"),
        "{stdout}"
    );
    d.stop();
}

/// The Python examples find the socket where `wfdb serve` puts it by default, whichever of
/// `WFDB_SOCKET`, `RUNTIME_DIRECTORY`, `XDG_RUNTIME_DIR` and `TMPDIR` are set.
#[test]
fn python_default_socket_matches_the_daemon() {
    use std::process::Command;
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let probe = Command::new("python3")
        .args(["-c", "import grpc_tools"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(!in_ci, "python3 with grpcio-tools is required in CI");
        eprintln!("skipping: python3 with grpcio-tools is not available");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python");
    let cases: &[&[(&str, &str)]] = &[
        &[],
        &[("TMPDIR", "/var/tmp")],
        &[("XDG_RUNTIME_DIR", "/run/user/4321")],
        &[("RUNTIME_DIRECTORY", "/run/wfdb")],
        &[("WFDB_SOCKET", "/srv/wfdb.sock"), ("XDG_RUNTIME_DIR", "/x")],
    ];
    for vars in cases {
        let with_env = |cmd: &mut Command| {
            cmd.env_clear()
                .env("HOME", home.path())
                .env("PATH", std::env::var_os("PATH").unwrap_or_default());
            for (k, v) in vars.iter() {
                cmd.env(k, v);
            }
        };
        let mut py = Command::new("python3");
        py.args([
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import wfdb_stubs; \
             print(wfdb_stubs.default_socket())",
            examples,
        ]);
        with_env(&mut py);
        let py = py.output().unwrap();
        assert!(
            py.status.success(),
            "{}",
            String::from_utf8_lossy(&py.stderr)
        );
        let mut wfdb = Command::new(env!("CARGO_BIN_EXE_wfdb"));
        wfdb.args(["--json", "config", "show"]);
        with_env(&mut wfdb);
        let wfdb = wfdb.output().unwrap();
        assert!(
            wfdb.status.success(),
            "{}",
            String::from_utf8_lossy(&wfdb.stderr)
        );
        let daemon = String::from_utf8_lossy(&wfdb.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["key"] == "socket")
            .and_then(|v| v["value"].as_str().map(str::to_string))
            .expect("config show lists the socket");
        assert_eq!(
            String::from_utf8_lossy(&py.stdout).trim(),
            daemon,
            "with {vars:?}"
        );
    }
}
