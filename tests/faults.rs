//! Store faults through the real binary (issue 11, "Faults stop the lies"): a database folder
//! on a small tmpfs is filled under a running daemon and freed again; and idleness (issue 13):
//! a settled daemon writes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cli, start, write_old, Daemon, Dirs, TIMEOUT};
use serde_json::json;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use workflowdb::proto;
use workflowdb::proto::sessions_client::SessionsClient;
use workflowdb::rpc::structs::struct_from_map;

/// The exit status of a daemon that stops so that its store is opened anew.
const RESTART_EXIT_CODE: i32 = 75;

/// A small file system for the database folder, which the test can fill and free.
enum SmallDisk {
    /// A tmpfs mounted on the folder for everyone (the tests run as root).
    Mounted(PathBuf),
    /// A tmpfs mounted in a user and mount namespace held by a sleeping process (no root
    /// needed): the daemon and the test's shell commands enter it with nsenter.
    Namespace(std::process::Child),
}

impl SmallDisk {
    /// A `size`-byte tmpfs on `dir` (created): mounted directly when allowed, else in a new
    /// user namespace (`WFDB_TEST_FULL_DISK_VIA=unshare` forces the latter). Errs with why
    /// neither works.
    fn new(dir: &Path, size: u64) -> Result<SmallDisk, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let options = format!("size={size},mode=0700");
        let forced = std::env::var("WFDB_TEST_FULL_DISK_VIA").is_ok_and(|v| v == "unshare");
        let mut why = Vec::new();
        if !forced {
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
                .arg(dir)
                .output()
                .map_err(|e| format!("cannot run mount: {e}"))?;
            if out.status.success() {
                return Ok(SmallDisk::Mounted(dir.to_path_buf()));
            }
            why.push(format!(
                "mount: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o "$1" tmpfs "$2" && echo mounted && exec sleep 100000"#)
            .args(["sh", &options])
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}; cannot run unshare: {e}", why.join("; ")))?;
        let mut line = String::new();
        let stdout = holder.stdout.take().ok_or("no stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let out = holder.wait_with_output().map_err(|e| e.to_string())?;
            why.push(format!(
                "unshare: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return Err(why.join("; "));
        }
        Ok(SmallDisk::Namespace(holder))
    }

    /// A command that runs `program` where the tmpfs is seen.
    fn command(&self, program: &std::ffi::OsStr) -> Command {
        match self {
            SmallDisk::Mounted(_) => Command::new(program),
            SmallDisk::Namespace(holder) => {
                let mut c = Command::new("nsenter");
                c.args(["--target", &holder.id().to_string()])
                    .args(["--user", "--mount", "--preserve-credentials", "--"])
                    .arg(program);
                c
            }
        }
    }

    /// Fills the tmpfs with `file` until not one more byte fits (ENOSPC).
    fn fill(&self, file: &Path) {
        let out = self
            .command("sh".as_ref())
            .arg("-c")
            .arg(r#"dd if=/dev/zero of="$1" bs=64k 2>/dev/null; dd if=/dev/zero of="$1" bs=1 oflag=append conv=notrunc 2>/dev/null; test -s "$1""#)
            .args(["sh".as_ref(), file.as_os_str()])
            .output()
            .unwrap();
        assert!(out.status.success(), "cannot fill {}", file.display());
    }

    /// Removes the file that filled the tmpfs.
    fn free(&self, file: &Path) {
        let out = self.command("rm".as_ref()).arg(file).output().unwrap();
        assert!(out.status.success(), "cannot remove {}", file.display());
    }

    /// Starts `wfdb serve ROOT` on `dirs` with its database on the tmpfs.
    async fn start(&self, dirs: &Dirs, root: &Path) -> Daemon {
        if let SmallDisk::Mounted(_) = self {
            return start(dirs, &[root.as_os_str()]).await;
        }
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dirs.tmp.path().join(format!("daemon-ns-{n}.log"));
        let mut cmd = self.command(common::wfdb_bin().as_os_str());
        cmd.arg("serve").arg(root);
        common::serve_in(&mut cmd, dirs, &log);
        let mut d = Daemon {
            child: cmd.spawn().unwrap(),
            socket: dirs.socket.clone(),
            db: dirs.db.clone(),
            log,
        };
        d.wait_ready().await;
        d
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        match self {
            SmallDisk::Mounted(dir) => {
                let _ = Command::new("umount").arg("-l").arg(&*dir).status();
            }
            SmallDisk::Namespace(holder) => {
                // The tmpfs goes with the namespace's last process.
                let _ = holder.kill();
                let _ = holder.wait();
            }
        }
    }
}

async fn health(d: &Daemon) -> ServingStatus {
    let resp = HealthClient::new(d.channel().await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(resp.status).unwrap()
}

fn session(id: &str, blob_bytes: usize) -> proto::SaveSessionRequest {
    let v = json!({"blob": "x".repeat(blob_bytes)});
    proto::SaveSessionRequest {
        session: Some(proto::Session {
            session_id: id.into(),
            context_snapshot: Some(struct_from_map(v.as_object().unwrap())),
            ..Default::default()
        }),
        session_info: None,
    }
}

async fn restore(d: &Daemon, id: &str) -> Result<proto::Session, tonic::Status> {
    SessionsClient::new(d.channel().await)
        .restore_session(proto::RestoreSessionRequest {
            session_id: id.into(),
            version: 0,
        })
        .await
        .map(|r| r.into_inner().session.unwrap_or_default())
}

/// The SHA-256 of a file's content, in hex.
fn sha(content: &[u8]) -> String {
    use sha2::Digest;
    common::hex(&sha2::Sha256::digest(content))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_refused_never_lied_about_and_recovered_from() {
    let dirs = Dirs::new();
    let state = dirs.db.parent().unwrap().to_path_buf();
    let disk = match SmallDisk::new(&state, 32 * 1024 * 1024) {
        Ok(disk) => disk,
        Err(why) => {
            // Neither root nor unprivileged user namespaces: there is no real full file
            // system to put under the database, and a fake one would prove nothing here.
            eprintln!(
                "\n!!! SKIPPING a_full_disk_is_refused_never_lied_about_and_recovered_from: \
                 cannot mount a tmpfs for the database ({why}); run the tests as root or \
                 allow unprivileged user namespaces !!!\n"
            );
            return;
        }
    };
    let root = dirs.tmp.path().join("repo");
    write_old(&root.join("a.txt"), b"one\n");
    write_old(&root.join("src/b.rs"), b"fn b() {}\n");
    let mut d = disk.start(&dirs, &root).await;
    assert_eq!(health(&d).await, ServingStatus::Serving);
    let mut catalog = d.catalog().await;
    assert_eq!(
        common::get_file(&mut catalog, "a.txt")
            .await
            .unwrap()
            .sha256,
        sha(b"one\n")
    );

    let instance = common::stats(&d).await.instance_id;

    // The disk fills up under the running daemon.
    let filler = state.join("filler");
    disk.fill(&filler);

    // A session save whose flush fails is an error, and the session is never visible.
    let saved = SessionsClient::new(d.channel().await)
        .save_session(session("lost", 256 * 1024))
        .await;
    let e = saved.expect_err("a save on a full disk must fail");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message()
            .to_lowercase()
            .contains("no space left on device"),
        "the refusal names the cause: {}",
        e.message()
    );
    let e = restore(&d, "lost")
        .await
        .expect_err("an unflushed save is visible");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    // Files change while the store refuses writes: no synced answer is the old one.
    write_old(&root.join("a.txt"), b"two\n");
    write_old(&root.join("c.txt"), b"new\n");
    std::fs::remove_file(root.join("src/b.rs")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match common::get_file(&mut catalog, "a.txt").await {
            Ok(f) => assert_eq!(
                f.sha256,
                sha(b"two\n"),
                "a synced query answered the old content while the disk was full"
            ),
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                assert!(
                    e.message()
                        .to_lowercase()
                        .contains("no space left on device"),
                    "{e:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health(&d).await, ServingStatus::NotServing);
    let stats = common::stats(&d).await;
    let h = stats.store_health.expect("Stats tells the store's health");
    assert!(!h.serving && h.failing_since_ms > 0, "{h:?}");
    assert!(
        h.cause.to_lowercase().contains("no space left on device"),
        "{h:?}"
    );
    assert!(h.cause.contains(&dirs.db.display().to_string()), "{h:?}");
    let (code, out, err) = cli(&d.socket, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("NOT_SERVING") && out.to_lowercase().contains("no space left on device"),
        "{out}"
    );
    let (code, out, _) = cli(&d.socket, &["doctor"]);
    assert_ne!(code, 0, "doctor must fail while the store fails:\n{out}");
    assert!(
        out.contains("NOT_SERVING") && out.to_lowercase().contains("no space left on device"),
        "{out}"
    );
    // Unsynced answers are still given (they promise nothing about being current).
    let resp = catalog
        .get_file(proto::GetFileRequest {
            path: "a.txt".into(),
            unsynced: true,
            ..Default::default()
        })
        .await;
    assert!(resp.is_ok(), "{resp:?}");

    // Space is freed: the daemon serves again by itself, or stops with status 75 so that its
    // supervisor (systemd's Restart=on-failure; here, the test) starts it again.
    disk.free(&filler);
    let deadline = Instant::now() + TIMEOUT;
    let mut restarted = false;
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            assert_eq!(
                status.code(),
                Some(RESTART_EXIT_CODE),
                "the daemon stopped, but not for a restart:\n{}",
                d.log_text()
            );
            assert!(
                d.log_text().contains("stopped for a restart"),
                "{}",
                d.log_text()
            );
            drop(d);
            d = disk.start(&dirs, &root).await;
            restarted = true;
            // Clocks answered before the failure may not have reached the disk: the new
            // start is a new instance, so clients holding them start over.
            assert_ne!(
                common::stats(&d).await.instance_id,
                instance,
                "the same instance after a restart on a store failure"
            );
            break;
        }
        if let Ok(ch) = workflowdb::client::connect_unix(&d.socket).await {
            let resp = HealthClient::new(ch)
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if resp.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the daemon neither recovered nor stopped for a restart:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "recovered by {}",
        if restarted { "a restart" } else { "itself" }
    );
    assert_eq!(health(&d).await, ServingStatus::Serving);
    assert!(common::stats(&d).await.store_health.unwrap().serving);

    // The catalog equals the disk, and synced answers are the new ones.
    common::assert_catalog_matches_disk(&d, &root, &[]).await;
    let mut catalog = d.catalog().await;
    assert_eq!(
        common::get_file(&mut catalog, "a.txt")
            .await
            .unwrap()
            .sha256,
        sha(b"two\n")
    );
    // The failed save is gone, and saves work again, durably.
    let e = restore(&d, "lost")
        .await
        .expect_err("the failed save came back");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    SessionsClient::new(d.channel().await)
        .save_session(session("kept", 1024))
        .await
        .unwrap();
    write_old(&root.join("d.txt"), b"after\n");
    assert_eq!(
        common::get_file(&mut catalog, "d.txt")
            .await
            .unwrap()
            .sha256,
        sha(b"after\n")
    );
    assert!(d.stop().success());
    let d = disk.start(&dirs, &root).await;
    assert!(restore(&d, "kept").await.is_ok());
    let e = restore(&d, "lost")
        .await
        .expect_err("the failed save came back");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    common::assert_catalog_matches_disk(&d, &root, &[]).await;
}

/// Bytes a process has caused to be written to storage (`write_bytes` of /proc/PID/io).
fn write_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Every file of the database folder with its size and modification time.
fn db_files(db: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(db)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let m = e.metadata().unwrap();
            (e.path().to_path_buf(), m.len(), m.modified().unwrap())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settled_daemon_writes_nothing_while_idle() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("repo");
    for i in 0..200 {
        write_old(
            &root.join(format!("pkg{}/m{i}.py", i % 10)),
            format!("import os\nX = {i}\n").as_bytes(),
        );
    }
    let d = start(&dirs, &[root.as_os_str()]).await;
    // Some work of each kind first: an event batch (flushed shortly after) and a registry
    // write (flushed before the reply).
    write_old(&root.join("pkg0/new.py"), b"Y = 1\n");
    let mut catalog = d.catalog().await;
    common::get_file(&mut catalog, "pkg0/new.py").await.unwrap();
    SessionsClient::new(d.channel().await)
        .save_session(session("s", 100))
        .await
        .unwrap();
    // Settled: the catalog's delayed flush has run (it waits at most a second).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = d.child.id();
    let (bytes, files) = (write_bytes(pid), db_files(&dirs.db));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        write_bytes(pid) - bytes,
        0,
        "an idle daemon wrote to storage:\n{}",
        d.log_text()
    );
    assert_eq!(db_files(&dirs.db), files, "the database changed while idle");
    // Still alive and answering: idleness was not a stopped daemon.
    common::get_file(&mut catalog, "pkg0/new.py").await.unwrap();
}
