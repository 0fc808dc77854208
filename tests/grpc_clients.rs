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
