//! Test harness: starts the real `wfdb` binary on temporary folders and talks to it over gRPC.
#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use workflowdb::proto;
use workflowdb::proto::admin_client::AdminClient;
use workflowdb::proto::catalog_client::CatalogClient;

/// How long a test waits for a condition before failing.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The `wfdb` binary under test.
pub fn wfdb_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wfdb"))
}

/// Folders for one daemon: database and socket live outside the watched tree.
pub struct Dirs {
    pub tmp: tempfile::TempDir,
    pub db: PathBuf,
    pub socket: PathBuf,
}

impl Dirs {
    pub fn new() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state").join("db");
        let socket = tmp.path().join("run").join("wfdb.sock");
        Dirs { tmp, db, socket }
    }
}

/// Connects to a test daemon's socket, which may be run by another user (a test's folders are
/// trusted: the daemon is whoever owns the socket's folder).
pub async fn connect_test_socket(
    socket: &Path,
) -> Result<Channel, workflowdb::client::ConnectError> {
    use std::os::unix::fs::MetadataExt;
    let owner = socket
        .parent()
        .and_then(|d| std::fs::metadata(d).ok())
        .map_or(0, |m| m.uid());
    workflowdb::client::connect_unix_owned_by(socket, owner).await
}

/// A running daemon.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
}

/// Gives a `wfdb serve …` command the test's database and socket, an environment no setting
/// of the machine's user or of systemd can reach, and `log` for its standard error.
pub fn serve_in<'a>(cmd: &'a mut Command, dirs: &Dirs, log: &Path) -> &'a mut Command {
    cmd.arg("--db")
        .arg(&dirs.db)
        .arg("--socket")
        .arg(&dirs.socket)
        .env("RUST_LOG", "info")
        .env("XDG_CONFIG_HOME", dirs.tmp.path())
        .env_remove("WFDB_CONFIG")
        .env_remove("INVOCATION_ID")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
}

/// Starts `wfdb serve` with `args` and waits until its socket answers.
pub async fn start(dirs: &Dirs, args: &[&std::ffi::OsStr]) -> Daemon {
    start_with(dirs, args, |_| {}).await
}

/// Like [`start`], with a hook to adjust the command (environment, user).
pub async fn start_with(
    dirs: &Dirs,
    args: &[&std::ffi::OsStr],
    adjust: impl FnOnce(&mut Command),
) -> Daemon {
    static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = dirs.tmp.path().join(format!("daemon-{n}.log"));
    let mut cmd = Command::new(wfdb_bin());
    cmd.arg("serve").args(args);
    serve_in(&mut cmd, dirs, &log);
    adjust(&mut cmd);
    let child = cmd.spawn().unwrap();
    let mut d = Daemon {
        child,
        socket: dirs.socket.clone(),
        db: dirs.db.clone(),
        log,
    };
    d.wait_ready().await;
    d
}

impl Daemon {
    /// Waits until the daemon answers and its roots are settled (panics if it exits first).
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("daemon exited early with {status}:\n{}", self.log_text());
            }
            if self.socket.exists() {
                if let Ok(ch) = connect_test_socket(&self.socket).await {
                    if CatalogClient::new(ch.clone())
                        .stats(proto::StatsRequest::default())
                        .await
                        .is_ok()
                    {
                        // Start tests on a settled daemon: a synced query waits for the
                        // catch-up reconcile that follows start-up.
                        for root in AdminClient::new(ch.clone())
                            .list_roots(proto::ListRootsRequest {})
                            .await
                            .map(|r| r.into_inner().roots)
                            .unwrap_or_default()
                        {
                            let _ = CatalogClient::new(ch.clone())
                                .get_clock(proto::ClockRequest {
                                    root: root.root_id,
                                    unsynced: false,
                                })
                                .await;
                        }
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready in time:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn channel(&self) -> Channel {
        connect_test_socket(&self.socket).await.unwrap()
    }

    pub async fn catalog(&self) -> CatalogClient<Channel> {
        CatalogClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel().await)
    }

    /// What changed in the only root after `since` (a clock of instance `instance`), synced.
    pub async fn changes(&self, since: u64, instance: &str) -> proto::ChangesResponse {
        self.catalog()
            .await
            .changes(proto::ChangesRequest {
                since_clock: since,
                instance_id: instance.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// A subscription to the only root's changes from now, with a glob filter ("": none).
    pub async fn subscribe(&self, glob: &str) -> tonic::Streaming<proto::ChangeBatch> {
        self.catalog()
            .await
            .subscribe(proto::SubscribeRequest {
                glob: glob.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        signal(&self.child, libc::SIGTERM);
        let status = wait_timeout(&mut self.child, TIMEOUT);
        std::mem::forget(self);
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill with a pid we own and a valid signal number.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Waits for a child to exit, killing it after `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every file of a root as listed over gRPC, keyed by path bytes.
pub async fn list_all(d: &Daemon) -> BTreeMap<Vec<u8>, proto::FileInfo> {
    let mut stream = d
        .catalog()
        .await
        .list_files(proto::ListFilesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut out = BTreeMap::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        for f in chunk.files {
            let key = if f.path_bytes.is_empty() {
                f.path.as_bytes().to_vec()
            } else {
                f.path_bytes.clone()
            };
            assert!(out.insert(key, f).is_none(), "a path was listed twice");
        }
    }
    out
}

/// What an independent walk says about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    pub kind: proto::FileKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub sha256: String,
    pub symlink_target: String,
}

/// Walks `root` with walkdir (no ignore rules: `skip` names root-relative paths the test knows
/// are ignored), hashing regular files with sha2 directly.
pub fn independent_walk(root: &Path, skip: &[&str]) -> BTreeMap<Vec<u8>, Truth> {
    let mut out = BTreeMap::new();
    let walker = walkdir::WalkDir::new(root).follow_links(false).into_iter();
    for entry in walker.filter_entry(|e| e.file_name() != ".git") {
        let entry = entry.unwrap();
        if entry.depth() == 0 || entry.file_type().is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        if skip
            .iter()
            .any(|s| rel == s.as_bytes() || rel.starts_with(format!("{s}/").as_bytes()))
        {
            continue;
        }
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        let ft = meta.file_type();
        use std::os::unix::fs::MetadataExt;
        let kind = if ft.is_file() {
            proto::FileKind::Regular
        } else if ft.is_symlink() {
            proto::FileKind::Symlink
        } else if ft.is_fifo() {
            proto::FileKind::Fifo
        } else if ft.is_socket() {
            proto::FileKind::Socket
        } else {
            proto::FileKind::CharDevice
        };
        let readable = meta.permissions().mode() & 0o444 != 0;
        let sha256 = if ft.is_file() && readable {
            hex(&Sha256::digest(std::fs::read(entry.path()).unwrap()))
        } else {
            String::new()
        };
        let symlink_target = if ft.is_symlink() {
            std::fs::read_link(entry.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        };
        out.insert(
            rel,
            Truth {
                kind,
                size: meta.size(),
                mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                sha256,
                symlink_target,
            },
        );
    }
    out
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates a FIFO.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Writes a file, creating parent folders, with an mtime an hour in the past so that it is not
/// "racily clean" at the next scan.
pub fn write_old(path: &Path, content: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, content).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

/// Writes `(root-relative path, content)` files under `root` with [`write_old`].
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (p, content) in files {
        write_old(&root.join(p), content.as_bytes());
    }
}

/// Whether the tests run as root (file permissions then do not stop reads).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs the `wfdb` CLI against a socket and returns (exit code, stdout, stderr).
pub fn cli(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(wfdb_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The daemon's whole catalog and an independent walk of `root` (with the paths in `skip`
/// known to be ignored), after asserting they hold the same paths.
pub async fn catalog_and_disk(
    d: &Daemon,
    root: &Path,
    skip: &[&str],
) -> (BTreeMap<Vec<u8>, proto::FileInfo>, BTreeMap<Vec<u8>, Truth>) {
    let got = list_all(d).await;
    let truth = independent_walk(root, skip);
    let shown = |m: Vec<&Vec<u8>>| -> Vec<String> {
        m.into_iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    };
    assert_eq!(
        shown(got.keys().collect()),
        shown(truth.keys().collect()),
        "catalogued paths differ from the disk"
    );
    (got, truth)
}

/// Asserts that the daemon's whole catalog equals an independent walk of `root` (with the
/// paths in `skip` known to be ignored): the same paths, and for each the same kind, size and
/// SHA-256.
pub async fn assert_catalog_matches_disk(d: &Daemon, root: &Path, skip: &[&str]) {
    let (got, truth) = catalog_and_disk(d, root, skip).await;
    for (path, t) in &truth {
        let f = &got[path];
        let shown = String::from_utf8_lossy(path);
        assert_eq!(f.kind, t.kind as i32, "{shown}: kind");
        assert_eq!(f.size_bytes, t.size, "{shown}: size");
        assert_eq!(f.sha256, t.sha256, "{shown}: sha256");
    }
}

/// A synced `GetFile` of a path of the only root.
pub async fn get_file(
    catalog: &mut CatalogClient<Channel>,
    path: &str,
) -> Result<proto::FileInfo, tonic::Status> {
    let resp = catalog
        .get_file(proto::GetFileRequest {
            path: path.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    resp.file
        .ok_or_else(|| tonic::Status::internal("a GetFile answer without a file"))
}

/// The daemon's Stats for every root.
pub async fn stats(d: &Daemon) -> proto::StatsResponse {
    d.catalog()
        .await
        .stats(proto::StatsRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// Runs a script of `examples/python/` against the daemon at `socket` and returns its output,
/// or None when python3 with grpcio and grpcio-tools is missing: a failure in CI (CI=true),
/// a skip with a message elsewhere.
pub fn python_example(script: &str, socket: &Path) -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            !in_ci,
            "python3 with grpcio and grpcio-tools is required in CI (pip install grpcio grpcio-tools)"
        );
        eprintln!("skipping {script}: python3 with grpcio and grpcio-tools is not available");
        return None;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/python")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}
