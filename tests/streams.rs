//! Answers larger than one gRPC message (4 MiB, what a stock client reads): `Changes`,
//! `Subscribe` catch-ups, import and session restores, through the real binary.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use workflowdb::proto;
use workflowdb::proto::sessions_client::SessionsClient;

/// Files written for a big change set. Each one's path is ~3,800 bytes (15 folders of 250
/// characters), so 11,000 of them make an answer of about 43 MiB: ten times the 4 MiB where
/// the one-message answer broke.
const BIG_FILES: usize = 11_000;

/// Writes [`BIG_FILES`] markdown files with long paths; returns their paths.
fn write_big_change_set(root: &Path) -> BTreeSet<String> {
    let folder = vec!["f".repeat(250); 14].join("/");
    let mut paths = BTreeSet::new();
    std::fs::create_dir_all(root.join("big").join(&folder)).unwrap();
    for i in 0..BIG_FILES {
        let rel = format!("big/{folder}/{i:05}-{}.md", "n".repeat(240));
        std::fs::write(root.join(&rel), format!("# File {i}\n")).unwrap();
        paths.insert(rel);
    }
    paths
}

async fn root_id(d: &Daemon) -> String {
    d.admin()
        .await
        .list_roots(proto::ListRootsRequest {})
        .await
        .unwrap()
        .into_inner()
        .roots
        .remove(0)
        .root_id
}

/// Waits until the daemon's catalog holds `n` files.
async fn wait_for_files(d: &Daemon, n: u64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let files = stats(d).await.roots.first().map_or(0, |r| r.files);
        if files >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "catalog has {files} of {n} files"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Daemon RSS in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_of_any_size_are_read_whole_by_the_cli_the_hook_and_subscribers() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("README.md"), "# Small\n").unwrap();
    let d = start(&dirs, &[root.as_os_str()]).await;
    let before = d.changes(0, "").await;
    let (since, instance) = (before.clock, before.instance_id.clone());
    // Written while the daemon is down: the restart's reconcile puts them all in the clock
    // index in a few batches (events one by one would take minutes in a debug build).
    assert!(d.stop().success());
    let want = write_big_change_set(&root);
    let d = start(&dirs, &[root.as_os_str()]).await;
    wait_for_files(&d, BIG_FILES as u64 + 1).await;

    // The one-message answer refuses clearly and names the way that works.
    let status = d
        .catalog()
        .await
        .changes(proto::ChangesRequest {
            since_clock: since,
            instance_id: instance.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("ChangesStream"), "{status:?}");

    // The stream: pages a stock client reads, the clock on the last page only.
    let mut stream = d
        .catalog()
        .await
        .changes_stream(proto::ChangesRequest {
            since_clock: since,
            instance_id: instance.clone(),
            with_folders: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut pages, mut streamed, mut bytes) = (0, BTreeSet::new(), 0usize);
    let mut folders = BTreeSet::new();
    let mut clock = 0;
    while let Some(page) = stream.message().await.unwrap() {
        pages += 1;
        bytes += prost::Message::encoded_len(&page);
        assert!(
            prost::Message::encoded_len(&page) < 2 << 20,
            "pages stay small"
        );
        assert!(!page.fresh_instance);
        streamed.extend(page.changed.into_iter().map(|f| f.path));
        folders.extend(page.folders);
        if !page.more {
            clock = page.clock;
            break;
        }
        assert_eq!(page.clock, 0, "only the last page carries the clock");
    }
    assert!(
        bytes >= 40 << 20,
        "the answer is {bytes} bytes: below 10x the old limit"
    );
    assert!(pages > 10, "{pages} pages");
    assert_eq!(streamed, want);
    assert!(folders.contains(b"big".as_slice()), "new folders are told");
    assert!(clock > since);

    // The CLI reads it whole.
    let (code, out, err) = cli(
        &d.socket,
        &[
            "--json",
            "changes",
            "--since",
            &since.to_string(),
            "--instance",
            &instance,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let cli_paths: BTreeSet<String> = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cli_paths, want);
    assert_eq!(v["clock"].as_u64(), Some(clock));

    // The hook reads it whole too: every changed file and the new folders, for git.
    let token = format!("wfdb:1:{instance}:{}:{since}", root_id(&d).await);
    let out = Command::new(wfdb_bin())
        .current_dir(&root)
        .arg("--socket")
        .arg(&d.socket)
        .args(["fsmonitor-hook", "2", &token])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut parts = out.stdout.split(|b| *b == 0);
    let next = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
    assert!(next.ends_with(&format!(":{clock}")), "new token {next}");
    let hooked: BTreeSet<String> = parts
        .filter(|p| !p.is_empty() && !p.ends_with(b"/"))
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect();
    assert_eq!(hooked, want, "{}", String::from_utf8_lossy(&out.stderr));

    // Holding the last page's clock loses nothing: the next change is the next answer.
    std::fs::write(root.join("after.md"), "# After\n").unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let next = d.changes(clock, &instance).await;
        assert!(!next.fresh_instance);
        let paths: Vec<&str> = next.changed.iter().map(|f| f.path.as_str()).collect();
        if !paths.is_empty() {
            assert_eq!(paths, ["after.md"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change after the clock never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // `changes --follow` reads the catch-up whole (one batch at the clock of its last page).
    let mut follow = Command::new(wfdb_bin())
        .arg("--socket")
        .arg(&d.socket)
        .args([
            "--json",
            "changes",
            "--follow",
            "--since",
            &since.to_string(),
        ])
        .args(["--instance", &instance])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(follow.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let followed: BTreeSet<String> = v["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .filter(|p| p != "after.md")
        .collect();
    assert_eq!(followed, want);
    assert!(v["clock"].as_u64().unwrap() > clock);

    // Subscribers that never read hold a few small pages each, not a catalog each: 40
    // unread catch-ups of 45 MiB (the old way held each whole, ~4 GB) cost little.
    let rss_before = rss_kib(d.child.id());
    let mut unread = Vec::new();
    for _ in 0..40 {
        unread.push(
            d.catalog()
                .await
                .subscribe(proto::SubscribeRequest {
                    since_clock: Some(since),
                    instance_id: instance.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    // Let every catch-up run into its back-pressure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_kib(d.child.id()).saturating_sub(rss_before);
    assert!(
        grown < 400 * 1024,
        "40 unread subscribers grew the daemon by {grown} KiB"
    );
    // One of them reads: its catch-up comes whole, in pages a stock client reads.
    let mut reader = unread.pop().unwrap();
    let mut caught = BTreeSet::new();
    loop {
        let batch = reader.message().await.unwrap().unwrap();
        caught.extend(batch.added.into_iter().map(|f| f.path));
        if !batch.more {
            assert!(batch.clock > clock);
            break;
        }
        assert_eq!(
            batch.clock, since,
            "a page before the last holds the asked clock"
        );
    }
    caught.remove("after.md");
    assert_eq!(caught, want);
    drop(unread);
    drop(reader);
    d.stop();
}

fn sessions(ch: tonic::transport::Channel) -> SessionsClient<tonic::transport::Channel> {
    // A stock client: tonic's default 4 MiB receive limit, as every gRPC client has.
    SessionsClient::new(ch)
}

fn blob_session(id: &str, bytes: usize) -> serde_json::Value {
    serde_json::json!({
        "session_id": id,
        "context_snapshot": {"blob": "x".repeat(bytes), "id": id},
        "learned_patterns": ["p"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_files_are_strict_and_every_session_is_restorable_by_a_stock_client() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    let d = start(&dirs, &[root.as_os_str()]).await;
    let file = dirs.tmp.path().join("session.json");

    // A misspelt key is refused by the CLI (exit 5, naming it), never saved as empty.
    std::fs::write(&file, r#"{"contxt_snapshot": {"a": 1}}"#).unwrap();
    let (code, _, err) = cli(
        &d.socket,
        &["session", "save", "s1", "--file", file.to_str().unwrap()],
    );
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("contxt_snapshot"), "{err}");
    // ... and by the daemon, for any client sending the file's dict.
    let mut info = serde_json::Map::new();
    info.insert("contxt_snapshot".into(), serde_json::json!({"a": 1}));
    let status = sessions(d.channel().await)
        .save_session(proto::SaveSessionRequest {
            session: Some(proto::Session {
                session_id: "s1".into(),
                ..Default::default()
            }),
            session_info: Some(workflowdb::rpc::structs::struct_from_map(&info)),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("contxt_snapshot"), "{status:?}");
    let (code, _, _) = cli(&d.socket, &["session", "restore", "s1"]);
    assert_eq!(code, 4, "nothing was saved");

    // A right file saves what it says, and restores it.
    std::fs::write(
        &file,
        r#"{"session_id": "s1", "context_snapshot": {"a": 1}, "learned_patterns": ["p"]}"#,
    )
    .unwrap();
    let (code, _, err) = cli(
        &d.socket,
        &["session", "save", "s1", "--file", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&d.socket, &["--json", "session", "restore", "s1"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["context_snapshot"], serde_json::json!({"a": 1}));
    assert_eq!(v["learned_patterns"], serde_json::json!(["p"]));

    // A 10 MiB session is refused at save, saying why; nothing a stock client cannot
    // restore is ever accepted.
    std::fs::write(&file, blob_session("big", 10 << 20).to_string()).unwrap();
    let (code, _, err) = cli(
        &d.socket,
        &["session", "save", "big", "--file", file.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("4 MiB") || err.contains("4128768"), "{err}");
    let (code, _, _) = cli(&d.socket, &["session", "restore", "big"]);
    assert_eq!(code, 4, "nothing was saved");
    // Nor may the limit be configured above what a client reads.
    let (code, _, err) = cli(&d.socket, &["session", "config", "--max-bytes", "16777216"]);
    assert_eq!(code, 5, "{err}");
    // The largest session accepted comes back to a client with the default limit.
    let near = 4 * 1024 * 1024 - 200 * 1024;
    std::fs::write(&file, blob_session("near", near).to_string()).unwrap();
    let (code, _, err) = cli(
        &d.socket,
        &["session", "save", "near", "--file", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let restored = sessions(d.channel().await)
        .restore_session(proto::RestoreSessionRequest {
            session_id: "near".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let snapshot = workflowdb::rpc::structs::map_from_struct(&restored.context_snapshot.unwrap());
    assert_eq!(snapshot["blob"].as_str().map(str::len), Some(near));
    d.stop();
}

/// Megabytes of sessions exported then imported: above 64 MiB (where one Import message
/// broke) by default; `WFDB_TEST_IMPORT_MIB=640` runs the 10x case.
fn import_mib() -> usize {
    std::env::var("WFDB_TEST_IMPORT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(72)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_over_64_mib_imports_through_the_cli() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    let d = start(&dirs, &[root.as_os_str()]).await;
    let each = 3 << 20;
    let count = (import_mib() << 20).div_ceil(each);
    let mut s = sessions(d.channel().await);
    for i in 0..count {
        let v = blob_session(&format!("s{i:04}"), each);
        s.save_session(proto::SaveSessionRequest {
            session: Some(proto::Session {
                session_id: format!("s{i:04}"),
                ..Default::default()
            }),
            session_info: Some(workflowdb::rpc::structs::struct_from_map(
                v.as_object().unwrap(),
            )),
        })
        .await
        .unwrap();
    }
    let export = dirs.tmp.path().join("backup.json");
    let (code, _, err) = cli(&d.socket, &["export", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let size = std::fs::metadata(&export).unwrap().len();
    assert!(size > 64 << 20, "the export is {size} bytes");
    d.stop();

    // A fresh database restores the backup whole.
    let fresh = Dirs::new();
    let root = fresh.tmp.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    let d = start(&fresh, &[root.as_os_str()]).await;
    let (code, out, err) = cli(
        &d.socket,
        &["--json", "import", "--dry-run", export.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("\"session_versions\":{count}")),
        "{out}"
    );
    let (code, _, _) = cli(&d.socket, &["session", "restore", "s0000"]);
    assert_eq!(code, 4, "a dry run writes nothing");
    let (code, out, err) = cli(&d.socket, &["--json", "import", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("\"session_versions\":{count}")),
        "{out}"
    );
    let last = format!("s{:04}", count - 1);
    let restored = sessions(d.channel().await)
        .restore_session(proto::RestoreSessionRequest {
            session_id: last.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let snapshot = workflowdb::rpc::structs::map_from_struct(&restored.context_snapshot.unwrap());
    assert_eq!(snapshot["id"].as_str(), Some(last.as_str()));
    assert_eq!(snapshot["blob"].as_str().map(str::len), Some(each));
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_utf8_stay_apart_in_json_and_in_the_export() {
    use std::os::unix::ffi::OsStrExt;
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    // Both show as "caf\u{fffd}.txt" when decoded lossily.
    for name in [&b"caf\xe9.txt"[..], b"caf\xe8.txt"] {
        std::fs::write(root.join(std::ffi::OsStr::from_bytes(name)), name).unwrap();
    }
    let d = start(&dirs, &[root.as_os_str()]).await;
    let (code, out, err) = cli(&d.socket, &["--json", "files"]);
    assert_eq!(code, 0, "{err}");
    let exact: BTreeSet<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["path_bytes_hex"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        exact,
        BTreeSet::from([
            "636166e92e747874".to_string(),
            "636166e82e747874".to_string()
        ])
    );
    let export = dirs.tmp.path().join("export.json");
    let (code, _, err) = cli(&d.socket, &["export", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    let files = doc["files"].as_object().unwrap();
    assert_eq!(files.len(), 2, "two files, two entries: {files:?}");
    let exported: BTreeSet<&str> = files
        .values()
        .map(|f| f["path_bytes_hex"].as_str().unwrap())
        .collect();
    assert_eq!(
        exported,
        BTreeSet::from(["636166e92e747874", "636166e82e747874"])
    );
    // The document imports (files are derived from disk: counted, not written).
    let (code, out, err) = cli(&d.socket, &["--json", "import", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"files_ignored\":2"), "{out}");
    // `wfdb file` takes a name as the system passes it, bytes and all, and finds that file
    // (not its look-alike).
    for (name, hex) in [
        (&b"caf\xe9.txt"[..], "636166e92e747874"),
        (b"caf\xe8.txt", "636166e82e747874"),
    ] {
        let o = std::process::Command::new(wfdb_bin())
            .arg("--socket")
            .arg(&d.socket)
            .args(["--json", "file"])
            .arg(std::ffi::OsStr::from_bytes(name))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["path_bytes_hex"], hex, "{v}");
        assert_eq!(v["sha256"].as_str().unwrap().len(), 64, "{v}");
    }
    d.stop();
}
