//! The daemon as a service: TCP with a bearer token, systemd notifications, clean shutdown,
//! refusal of a locked, future or corrupt database, roots that persist, health, reflection and
//! the command-line client.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tonic::transport::Endpoint;
use workflowdb::proto;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `wfdb serve` expecting it to fail; returns its stderr.
fn serve_fails(dirs: &Dirs, args: &[&str]) -> String {
    let out = Command::new(wfdb_bin())
        .arg("serve")
        .args(args)
        .arg("--db")
        .arg(&dirs.db)
        .arg("--socket")
        .arg(&dirs.socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "serve should have failed:\n{stderr}");
    assert!(
        !stderr.contains("panicked"),
        "a refusal must not be a panic:\n{stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_requires_the_bearer_token() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("a.txt"), b"a");
    let token = "s3cret-token-0123456789";
    let token_file = dirs.tmp.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    // A token readable by others is refused, and so is --listen without a token.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let root_s = root.to_str().unwrap();
    let err = serve_fails(
        &dirs,
        &[
            root_s,
            "--listen",
            &listen,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    assert!(err.contains("chmod 600"), "{err}");
    let err = serve_fails(&dirs, &[root_s, "--listen", &listen]);
    assert!(err.contains("--token-file"), "{err}");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let d = start(
        &dirs,
        &[
            root.as_os_str(),
            "--listen".as_ref(),
            listen.as_ref(),
            "--token-file".as_ref(),
            token_file.as_os_str(),
        ],
    )
    .await;
    let channel = Endpoint::try_from(format!("http://{listen}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut anonymous = proto::catalog_client::CatalogClient::new(channel.clone());
    let err = anonymous
        .stats(proto::StatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let with = |value: String| {
        move |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("authorization", value.parse().unwrap());
            Ok(req)
        }
    };
    let mut wrong = proto::catalog_client::CatalogClient::with_interceptor(
        channel.clone(),
        with("Bearer nope".into()),
    );
    assert_eq!(
        wrong
            .stats(proto::StatsRequest::default())
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );
    let mut right = proto::catalog_client::CatalogClient::with_interceptor(
        channel.clone(),
        with(format!("Bearer {token}")),
    );
    let stats = right
        .stats(proto::StatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.roots[0].files, 1);
    // The Unix socket needs no token (it is mode 0600: only the owner can connect).
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    d.catalog()
        .await
        .stats(proto::StatsRequest::default())
        .await
        .unwrap();
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_systemd_ready_status_watchdog_and_stops_cleanly() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("a.txt"), b"a");
    let notify_path = dirs.tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let d = start_with(&dirs, &[root.as_os_str()], |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "100000");
    })
    .await;

    let mut seen = String::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 4096];
    while !(seen.contains("READY=1")
        && seen.contains("STATUS=")
        && seen.matches("WATCHDOG=1").count() >= 2)
    {
        assert!(Instant::now() < deadline, "notifications so far: {seen}");
        if let Ok(n) = notify.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    assert!(seen.contains("STATUS=serving 1 roots"), "{seen}");
    let status = d.stop();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    let mut rest = String::new();
    while let Ok(n) = notify.recv(&mut buf) {
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(rest.contains("STOPPING=1"), "{rest}");
    assert!(
        !dirs.socket.exists(),
        "the socket file is removed on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_and_future_databases_are_refused_clearly_and_corrupt_ones_set_aside() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("a.txt"), b"a");
    let root_s = root.to_str().unwrap();
    let d = start(&dirs, &[root.as_os_str()]).await;

    // Same database, another socket: locked.
    let other = Dirs::new();
    let out = Command::new(wfdb_bin())
        .args(["serve", root_s, "--db"])
        .arg(&dirs.db)
        .arg("--socket")
        .arg(&other.socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("in use by another running wfdb daemon"),
        "{stderr}"
    );
    // Same socket, another database: the live daemon is not displaced.
    let out = Command::new(wfdb_bin())
        .args(["serve", root_s, "--db"])
        .arg(&other.db)
        .arg("--socket")
        .arg(&dirs.socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another wfdb daemon is listening"),
        "{stderr}"
    );
    d.catalog()
        .await
        .stats(proto::StatsRequest::default())
        .await
        .unwrap();
    assert!(d.stop().success());

    // A database from a future schema.
    {
        let db = sled::open(&dirs.db).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema", &99u32.to_le_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = serve_fails(&dirs, &[root_s]);
    assert!(err.contains("schema version 99"), "{err}");

    // A corrupt database.
    let corrupt = Dirs::new();
    std::fs::create_dir_all(&corrupt.db).unwrap();
    std::fs::write(
        corrupt.db.join("conf"),
        b"\xff\xfe garbage that is not a sled config",
    )
    .unwrap();
    std::fs::write(corrupt.db.join("db"), vec![0xA5u8; 8192]).unwrap();
    // What sled cannot open is set aside (never deleted), and the daemon starts on a rebuilt
    // catalog, saying so.
    let d = start(&corrupt, &[root.as_os_str()]).await;
    let s = stats(&d).await;
    assert_eq!(s.damage.len(), 1, "{:?}", s.damage);
    assert!(
        s.damage[0].findings[0].contains("set aside"),
        "{:?}",
        s.damage
    );
    let aside: Vec<_> = std::fs::read_dir(&corrupt.db)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("damaged-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path().join("conf")).unwrap(),
        b"\xff\xfe garbage that is not a sled config"
    );
    assert_catalog_matches_disk(&d, &root, &[]).await;
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_are_added_and_removed_at_run_time_and_persist() {
    let dirs = Dirs::new();
    let a = dirs.tmp.path().join("a");
    let b = dirs.tmp.path().join("b");
    write_old(&a.join("one.txt"), b"1");
    write_old(&b.join("two.txt"), b"2");
    write_old(&b.join("three.txt"), b"3");
    let d = start(&dirs, &[a.as_os_str()]).await;
    let mut admin = d.admin().await;

    let (code, out, err) = cli(&d.socket, &["--json", "watch", b.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["files"], 2);
    // Watching again is harmless; overlapping or bogus roots are refused.
    let again = admin
        .watch(proto::WatchRequest {
            path: b.to_string_lossy().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_watched);
    for bad in [
        a.join("sub").to_string_lossy().into_owned(),
        dirs.tmp.path().to_string_lossy().into_owned(),
        "relative/path".to_string(),
        a.join("one.txt").to_string_lossy().into_owned(),
    ] {
        std::fs::create_dir_all(a.join("sub")).unwrap();
        let e = admin
            .watch(proto::WatchRequest { path: bad.clone() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}: {e:?}");
    }
    // With two roots, a request must name one.
    let e = d
        .catalog()
        .await
        .get_file(proto::GetFileRequest {
            path: "two.txt".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let got = d
        .catalog()
        .await
        .get_file(proto::GetFileRequest {
            root: b.to_string_lossy().into(),
            path: "two.txt".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().file.unwrap().size_bytes, 1);
    assert!(d.stop().success());

    // Restart with only `a` on the command line: `b` comes back from the database.
    let d = start(&dirs, &[a.as_os_str()]).await;
    let (code, out, _) = cli(&d.socket, &["--json", "roots"]);
    assert_eq!(code, 0);
    let roots: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(roots.len(), 2, "{out}");
    let (code, _, err) = cli(&d.socket, &["unwatch", b.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&d.socket, &["unwatch", "/not/watched"]);
    assert_eq!(code, 4, "{err}");
    assert!(d.stop().success());
    let d = start(&dirs, &[a.as_os_str()]).await;
    let roots = d
        .admin()
        .await
        .list_roots(proto::ListRootsRequest {})
        .await
        .unwrap()
        .into_inner()
        .roots;
    assert_eq!(roots.len(), 1);
    assert_eq!(
        roots[0].root,
        std::fs::canonicalize(&a).unwrap().to_string_lossy()
    );
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_the_cli() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(
        &root.join("src/main.rs"),
        b"//! Entry point.\nfn main() {}\n",
    );
    write_old(&root.join("README.md"), b"# Readme\n");
    let d = start(&dirs, &[root.as_os_str()]).await;

    let mut health = tonic_health::pb::health_client::HealthClient::new(d.channel().await);
    for service in ["", "workflowdb.v1.Catalog", "workflowdb.v1.Admin"] {
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            resp.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(d.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"workflowdb.v1.Catalog".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"workflowdb.v1.Admin".to_string()),
        "{names:?}"
    );

    // CLI: JSON lines with the catalog's field names, one object for a single file.
    let (code, out, err) = cli(&d.socket, &["--json", "files"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for field in [
        "path",
        "file_type",
        "purpose",
        "description",
        "component",
        "size_bytes",
        "mtime_ns",
        "last_modified",
        "sha256",
        "checksum",
        "dependencies",
        "related_agents",
    ] {
        assert!(lines[0].get(field).is_some(), "missing {field}");
    }
    let (code, out, _) = cli(&d.socket, &["--json", "file", "src/main.rs"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["description"], "Entry point.");
    let (code, out, _) = cli(&d.socket, &["--json", "status"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["roots"][0]["files"], 2);
    assert_eq!(v["roots"][0]["last_scan"]["files_hashed"], 2);
    let (code, out, _) = cli(&d.socket, &["files", "--type", "markdown"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("PATH") && out.contains("README.md"),
        "{out}"
    );
    let (code, out, _) = cli(&d.socket, &["--json", "scan"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["files_seen"], 2);
    let (code, _, err) = cli(&d.socket, &["file", "../escape"]);
    assert_eq!(code, 5);
    assert!(err.contains("escapes the root"), "{err}");
    let (code, _, err) = cli(&d.socket, &["file", "missing.txt"]);
    assert_eq!(code, 4, "{err}");
    assert!(d.stop().success());

    // No daemon: say so and how to start one.
    let (code, _, err) = cli(&dirs.socket, &["status"]);
    assert_eq!(code, 3);
    assert!(err.contains("wfdb serve"), "{err}");
}
