//! The local socket is ours or not used: never reachable by another user while the daemon
//! starts, never in a folder another user controls (daemon and CLI refuse), never removed at
//! shutdown unless it is the one bound; and who may do what over it and over TCP.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NOBODY: u32 = 65534;

/// Runs `wfdb serve` expecting it to fail; returns its stderr.
fn serve_fails(dirs: &Dirs, args: &[&str]) -> String {
    let out = Command::new(wfdb_bin())
        .arg("serve")
        .args(args)
        .arg("--db")
        .arg(&dirs.db)
        .arg("--socket")
        .arg(&dirs.socket)
        .env("XDG_CONFIG_HOME", dirs.tmp.path())
        .env_remove("WFDB_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "serve should have failed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn chown(path: &Path, uid: u32) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), uid, uid) }, 0);
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Not a test on its own: the connector the race test runs as another user. It tries to
/// connect to `WFDB_TEST_CONNECT_TO` as fast as it can until `WFDB_TEST_STOP` exists, and
/// prints how many attempts connected.
#[test]
fn connector_helper() {
    let (Some(target), Some(stop)) = (
        std::env::var_os("WFDB_TEST_CONNECT_TO"),
        std::env::var_os("WFDB_TEST_STOP"),
    ) else {
        return;
    };
    let (mut attempts, mut connected) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !Path::new(&stop).exists() && Instant::now() < deadline {
        attempts += 1;
        if std::os::unix::net::UnixStream::connect(&target).is_ok() {
            connected += 1;
        }
    }
    println!("CONNECTOR attempts={attempts} connected={connected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_never_reaches_the_socket_while_the_daemon_starts() {
    if !is_root() {
        eprintln!(
            "SKIPPED another_user_never_reaches_the_socket_while_the_daemon_starts: it needs \
             root to run a connector as another user (uid {NOBODY})"
        );
        return;
    }
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("a.txt"), b"a");
    // Folders others can search (as systemd's RuntimeDirectory= makes them), so only the
    // socket's own mode keeps the other user out.
    chmod(dirs.tmp.path(), 0o755);
    let run = dirs.socket.parent().unwrap();
    std::fs::create_dir_all(run).unwrap();
    chmod(run, 0o755);
    let stop = dirs.tmp.path().join("stop");
    let connector = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "connector_helper", "--nocapture"])
        .env("WFDB_TEST_CONNECT_TO", &dirs.socket)
        .env("WFDB_TEST_STOP", &stop)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let restarts = 30;
    for _ in 0..restarts {
        let d = start_with(&dirs, &[root.as_os_str()], |cmd| {
            // SAFETY: umask is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(|| {
                    libc::umask(0);
                    Ok(())
                });
            }
        })
        .await;
        let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the socket's mode under umask 000");
        assert!(d.stop().success());
    }
    std::fs::write(&stop, "").unwrap();
    let out = connector.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("CONNECTOR"))
        .unwrap_or_else(|| panic!("the connector said nothing: {text}"));
    let attempts: u64 = line
        .split("attempts=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(
        attempts > 1000,
        "the connector must really have tried: {line}"
    );
    assert!(
        line.ends_with("connected=0"),
        "another user connected to the socket during {restarts} starts: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_refuses_a_socket_folder_others_can_write_or_own() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("a.txt"), b"a");
    let run = dirs.socket.parent().unwrap();
    std::fs::create_dir_all(run).unwrap();
    let root_s = root.to_str().unwrap();
    for mode in [0o777, 0o1777, 0o775] {
        chmod(run, mode);
        let err = serve_fails(&dirs, &[root_s]);
        assert!(err.contains("writable by"), "{mode:o}: {err}");
        assert!(err.contains("chmod go-w"), "{mode:o}: {err}");
        assert!(!dirs.socket.exists());
    }
    if is_root() {
        chmod(run, 0o755);
        chown(run, NOBODY);
        let err = serve_fails(&dirs, &[root_s]);
        assert!(err.contains(&format!("owned by uid {NOBODY}")), "{err}");
        assert!(err.contains("intercept"), "{err}");
    } else {
        eprintln!("SKIPPED the foreign-owner half: it needs root to chown a folder");
    }
    // A symlink where the folder should be is refused too.
    std::fs::remove_dir(run).unwrap();
    let elsewhere = dirs.tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, run).unwrap();
    let err = serve_fails(&dirs, &[root_s]);
    assert!(err.contains("not a folder"), "{err}");
}

#[test]
fn the_cli_refuses_to_talk_to_a_socket_in_a_folder_another_user_controls() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("wfdb-1000");
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o777);
    let socket = run.join("wfdb.sock");
    // The impostor: a socket that would answer if anyone connected.
    let impostor = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    impostor.set_nonblocking(true).unwrap();
    let (code, out, err) = cli(&socket, &["status"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("refusing to use"), "{err}");
    assert!(err.contains("writable by"), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
    assert!(
        impostor.accept().is_err(),
        "the CLI must not even connect to the impostor"
    );
    if is_root() {
        // A folder of another user (not writable by others) holding that user's socket.
        chmod(&run, 0o755);
        chown(&run, NOBODY);
        chown(&socket, NOBODY);
        let (code, _, err) = cli(&socket, &["status"]);
        assert_eq!(code, 3, "{err}");
        assert!(err.contains(&format!("owned by uid {NOBODY}")), "{err}");
        // Our own folder with another user's socket in it.
        chown(&run, 0);
        let (code, _, err) = cli(&socket, &["status"]);
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains(&format!("the socket is owned by uid {NOBODY}")),
            "{err}"
        );
        assert!(impostor.accept().is_err());
    } else {
        eprintln!("SKIPPED the foreign-owner half: it needs root to chown a folder");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_a_socket_it_did_not_bind_alone() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("a.txt"), b"a");
    let d = start(&dirs, &[root.as_os_str()]).await;
    // Someone replaces the socket under the running daemon.
    std::fs::remove_file(&d.socket).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&d.socket).unwrap();
    let ino = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).map(|m| m.ino()).ok()
    };
    let before = ino(&dirs.socket);
    let log = d.log.clone();
    assert!(d.stop().success());
    assert!(before.is_some());
    assert_eq!(
        ino(&dirs.socket),
        before,
        "shutdown removed a socket it did not bind"
    );
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("leaving it alone"), "{log}");
    drop(other);
    // Its own socket it removes.
    std::fs::remove_file(&dirs.socket).unwrap();
    let d = start(&dirs, &[root.as_os_str()]).await;
    assert!(d.stop().success());
    assert!(!dirs.socket.exists(), "the daemon's own socket is removed");
}

/// Writes a configuration file in the test's folder and returns its path.
fn config_file(dirs: &Dirs, text: &str) -> std::path::PathBuf {
    let path = dirs.tmp.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the CLI as `uid` against `socket`: (exit code, stdout, stderr).
fn cli_as(uid: u32, home: &Path, socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(wfdb_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("WFDB_CONFIG")
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_local_user_gets_nothing_unless_granted_and_then_only_its_scopes() {
    if !is_root() {
        eprintln!(
            "SKIPPED another_local_user_gets_nothing_unless_granted_and_then_only_its_scopes: \
             it needs root to run a client as another user (uid {NOBODY})"
        );
        return;
    }
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("a.txt"), b"a");
    chmod(dirs.tmp.path(), 0o755);
    let run = dirs.socket.parent().unwrap();
    std::fs::create_dir_all(run).unwrap();
    chmod(run, 0o755);
    let home = dirs.tmp.path().join("nobody-home");
    std::fs::create_dir(&home).unwrap();
    chown(&home, NOBODY);

    // No grant at all: the socket is 0600, so another user cannot even connect.
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (code, out, err) = cli_as(NOBODY, &home, &d.socket, &["status"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(!out.contains("a.txt") && !out.contains("files"), "{out}");
    assert!(d.stop().success());

    // A grant for someone else: the socket is connectable, and the daemon refuses this user
    // by its credentials, naming its uid and how to grant access.
    let config = config_file(
        &dirs,
        "[access]\nlocal_users = [{ uid = 12345, scopes = [\"read\"] }]\n",
    );
    let d = start_with(&dirs, &[root.as_os_str()], |cmd| {
        cmd.env("WFDB_CONFIG", &config);
    })
    .await;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    let (code, out, err) = cli_as(NOBODY, &home, &d.socket, &["status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("uid {NOBODY} has no access")),
        "{err}"
    );
    assert!(err.contains("access.local_users"), "{err}");
    // The owner (root here) still has every right.
    let (code, _, err) = cli(&d.socket, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(d.stop().success());

    // Granted read: it may read, not watch a folder (admin).
    let config = config_file(
        &dirs,
        &format!("[access]\nlocal_users = [{{ uid = {NOBODY}, scopes = [\"read\"] }}]\n"),
    );
    let d = start_with(&dirs, &[root.as_os_str()], |cmd| {
        cmd.env("WFDB_CONFIG", &config);
    })
    .await;
    let (code, out, err) = cli_as(NOBODY, &home, &d.socket, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(root.to_str().unwrap()), "{out}");
    let other = dirs.tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (code, _, err) = cli_as(
        NOBODY,
        &home,
        &d.socket,
        &["watch", other.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("uid {NOBODY} may read")), "{err}");
    assert!(err.contains("needs the `admin` scope"), "{err}");
    let roots = d
        .admin()
        .await
        .list_roots(workflowdb::proto::ListRootsRequest {})
        .await
        .unwrap()
        .into_inner()
        .roots;
    assert_eq!(roots.len(), 1, "the refused watch changed nothing");
    assert!(d.stop().success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn secret_file(dirs: &Dirs, name: &str, secret: &str) -> std::path::PathBuf {
    let path = dirs.tmp.path().join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    chmod(&path, 0o600);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_tokens_carry_scopes_and_roots_stay_in_the_configured_folders() {
    use tonic::transport::Endpoint;
    use workflowdb::proto;
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("allowed/tree");
    write_old(&root.join("a.txt"), b"a");
    let inside = dirs.tmp.path().join("allowed/second");
    std::fs::create_dir_all(&inside).unwrap();
    let outside = dirs.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "not yours").unwrap();
    secret_file(&dirs, "read.token", "read-secret-0123456789");
    secret_file(&dirs, "write.token", "write-secret-0123456789");
    secret_file(&dirs, "admin.token", "admin-secret-0123456789");
    let all = secret_file(&dirs, "all.token", "all-secret-0123456789");
    let config = config_file(
        &dirs,
        "[access]\n\
         watch_roots = [\"allowed\"]\n\
         tokens = [\n\
           { name = \"reader\", file = \"read.token\", scopes = [\"read\"] },\n\
           { name = \"writer\", file = \"write.token\", scopes = [\"write\"] },\n\
           { name = \"operator\", file = \"admin.token\", scopes = [\"admin\"] },\n\
         ]\n",
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let d = start_with(
        &dirs,
        &[
            root.as_os_str(),
            "--listen".as_ref(),
            listen.as_ref(),
            "--token-file".as_ref(),
            all.as_os_str(),
        ],
        |cmd| {
            cmd.env("WFDB_CONFIG", &config);
        },
    )
    .await;
    let channel = Endpoint::try_from(format!("http://{listen}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer = |secret: &str| {
        let value: tonic::metadata::MetadataValue<_> = format!("Bearer {secret}").parse().unwrap();
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", value.clone());
            Ok(req)
        }
    };
    macro_rules! clients {
        ($secret:expr) => {
            (
                proto::catalog_client::CatalogClient::with_interceptor(
                    channel.clone(),
                    bearer($secret),
                ),
                proto::agents_client::AgentsClient::with_interceptor(
                    channel.clone(),
                    bearer($secret),
                ),
                proto::admin_client::AdminClient::with_interceptor(
                    channel.clone(),
                    bearer($secret),
                ),
            )
        };
    }
    let register = |name: &str| proto::RegisterAgentRequest {
        name: name.into(),
        ..Default::default()
    };
    let watch = |p: &Path| proto::WatchRequest {
        path: p.to_str().unwrap().into(),
    };
    let denied = |r: Result<_, tonic::Status>, what: &str, needs: &str| {
        let e = r.err().unwrap_or_else(|| panic!("{what} must be refused"));
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{what}: {e:?}");
        assert!(
            e.message().contains(&format!("needs the `{needs}` scope")),
            "{what}: {}",
            e.message()
        );
    };

    // read: reads, cannot register an agent or watch.
    let (mut cat, mut agents, mut admin) = clients!("read-secret-0123456789");
    cat.stats(proto::StatsRequest::default()).await.unwrap();
    denied(
        agents.register_agent(register("a")).await.map(|_| ()),
        "read token registering",
        "write",
    );
    denied(
        admin.watch(watch(&inside)).await.map(|_| ()),
        "read token watching",
        "admin",
    );
    // write: registers, cannot watch (and scopes are independent: no catalog read either).
    let (mut cat, mut agents, mut admin) = clients!("write-secret-0123456789");
    agents.register_agent(register("a")).await.unwrap();
    denied(
        admin.watch(watch(&inside)).await.map(|_| ()),
        "write token watching",
        "admin",
    );
    denied(
        cat.stats(proto::StatsRequest::default()).await.map(|_| ()),
        "write token reading",
        "read",
    );
    // admin: watches inside the configured folders, never outside.
    let (_, _, mut admin) = clients!("admin-secret-0123456789");
    let added = admin.watch(watch(&inside)).await.unwrap().into_inner();
    assert!(added.root.is_some());
    let e = admin.watch(watch(&outside)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("access.watch_roots"),
        "{}",
        e.message()
    );
    // Not by a detour through `..` or a symlink either.
    let sneaky = dirs.tmp.path().join("allowed/../elsewhere");
    let e = admin.watch(watch(&sneaky)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    std::os::unix::fs::symlink(&outside, dirs.tmp.path().join("allowed/link")).unwrap();
    let e = admin
        .watch(watch(&dirs.tmp.path().join("allowed/link")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // The confinement is for everyone, the daemon's own user on the socket too.
    let e = d.admin().await.watch(watch(&outside)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // --token-file's token holds every scope; no token or a wrong one is UNAUTHENTICATED.
    let (mut cat, mut agents, _) = clients!("all-secret-0123456789");
    cat.stats(proto::StatsRequest::default()).await.unwrap();
    agents.register_agent(register("b")).await.unwrap();
    let (mut cat, _, _) = clients!("wrong-secret-0123456789");
    let e = cat.stats(proto::StatsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = proto::catalog_client::CatalogClient::new(channel.clone())
        .stats(proto::StatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // The secrets never reach the log.
    let log = d.log_text();
    assert!(!log.contains("secret-0123456789"), "{log}");
    let roots = d
        .admin()
        .await
        .list_roots(proto::ListRootsRequest {})
        .await
        .unwrap()
        .into_inner()
        .roots;
    assert_eq!(roots.len(), 2, "{roots:?}");
    assert!(d.stop().success());

    // A root named to the daemon outside the configured folders stops it at start.
    let err = serve_fails_with_config(&dirs, &config, &[outside.to_str().unwrap()]);
    assert!(err.contains("access.watch_roots"), "{err}");
}

fn serve_fails_with_config(dirs: &Dirs, config: &Path, args: &[&str]) -> String {
    let out = Command::new(wfdb_bin())
        .arg("serve")
        .args(args)
        .arg("--db")
        .arg(&dirs.db)
        .arg("--socket")
        .arg(&dirs.socket)
        .env("WFDB_CONFIG", config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "serve should have failed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The case: no runtime folder, so the default socket is `$TMPDIR/wfdb-UID/wfdb.sock`,
/// and another user pre-created that folder world-writable with a socket of their own.
#[test]
fn the_default_socket_folder_in_the_temporary_folder_is_checked_too() {
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let run = tmp.path().join(format!("wfdb-{uid}"));
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o777);
    let impostor = std::os::unix::net::UnixListener::bind(run.join("wfdb.sock")).unwrap();
    impostor.set_nonblocking(true).unwrap();
    let wfdb = |args: &[&str]| {
        Command::new(wfdb_bin())
            .args(args)
            .env("TMPDIR", tmp.path())
            .env("HOME", tmp.path())
            .env("XDG_CONFIG_HOME", tmp.path())
            .env("XDG_STATE_HOME", tmp.path().join("state"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("WFDB_SOCKET")
            .env_remove("WFDB_CONFIG")
            .env_remove("INVOCATION_ID")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = wfdb(&["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("refusing to use {}", run.display())),
        "{err}"
    );
    assert!(impostor.accept().is_err(), "the CLI talked to the impostor");
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let out = wfdb(&["serve", tree.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("writable by"), "{err}");
    assert!(
        run.join("wfdb.sock").exists(),
        "the daemon must not remove the other user's socket"
    );
}
