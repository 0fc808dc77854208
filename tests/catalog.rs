//! The catalog over real gRPC: it equals an independent walk, restarts hash only what changed,
//! listings filter as asked, and paths that escape the root are refused.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use workflowdb::proto;

fn chown(path: &Path, uid: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), uid, uid) }, 0);
}

/// A tree with every kind of entry the catalog must handle.
fn build_fixture(root: &Path) {
    write_old(&root.join(".gitignore"), b"build/\n*.log\n");
    write_old(&root.join("build/out.o"), b"ignored object");
    write_old(&root.join("app.log"), b"ignored log");
    write_old(&root.join(".github/workflows/ci.yml"), b"on: push\n");
    write_old(
        &root.join("src/lib.rs"),
        b"//! The library.\npub fn f() {}\n",
    );
    write_old(&root.join("src/main.rs"), b"fn main() {}\n");
    write_old(
        &root.join("tests/test_app.py"),
        b"\"\"\"Tests the app.\"\"\"\n",
    );
    write_old(&root.join("README.md"), b"# Fixture\n");
    write_old(
        &root.join("copy_of_lib.rs"),
        b"//! The library.\npub fn f() {}\n",
    );
    write_old(
        &root.join(OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1 name",
    );
    write_old(&root.join("empty"), b"");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    write_old(&root.join("data/big.bin"), &big);
    std::os::unix::fs::symlink("src/lib.rs", root.join("link")).unwrap();
    std::os::unix::fs::symlink("../nowhere", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("dirlink")).unwrap();
    mkfifo(&root.join("fifo"));
    write_old(&root.join("secret.txt"), b"top secret");
    std::fs::set_permissions(
        root.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_equals_an_independent_walk() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    build_fixture(&root);
    // The database lives inside the watched root here: it must never be catalogued.
    let db_inside = root.join(".wfdb-state");
    let dirs = Dirs {
        db: db_inside.clone(),
        ..dirs
    };
    // Root reads every file regardless of its mode; run the daemon as nobody so the
    // unreadable file really is unreadable.
    let as_nobody = is_root();
    if as_nobody {
        std::fs::set_permissions(dirs.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown(&root, 65534);
        std::fs::create_dir_all(dirs.socket.parent().unwrap()).unwrap();
        chown(dirs.socket.parent().unwrap(), 65534);
    }
    let d = start_with(&dirs, &[root.as_os_str()], |cmd| {
        if as_nobody {
            use std::os::unix::process::CommandExt;
            cmd.uid(65534).gid(65534);
        }
    })
    .await;

    let (got, truth) = catalog_and_disk(&d, &root, &["build", "app.log", ".wfdb-state"]).await;

    for (path, t) in &truth {
        let f = &got[path];
        let shown = String::from_utf8_lossy(path);
        assert_eq!(f.kind, t.kind as i32, "{shown}: kind");
        assert_eq!(f.size_bytes, t.size, "{shown}: size");
        assert_eq!(f.mtime_ns, t.mtime_ns, "{shown}: mtime");
        assert_eq!(
            f.symlink_target, t.symlink_target,
            "{shown}: symlink target"
        );
        if path.as_slice() == b"secret.txt" {
            assert!(!f.error.is_empty(), "the unreadable file carries its error");
            assert!(f.sha256.is_empty());
        } else {
            assert_eq!(f.sha256, t.sha256, "{shown}: sha256");
            assert!(f.error.is_empty(), "{shown}: unexpected error {}", f.error);
        }
        assert_eq!(
            f.checksum,
            f.sha256.get(..16).unwrap_or(""),
            "{shown}: checksum"
        );
        assert!(
            f.last_modified.ends_with('Z') && f.last_modified.len() == 30,
            "{shown}: {}",
            f.last_modified
        );
        assert!(f.clock >= 1);
    }

    // The non-UTF-8 name round-trips through path_bytes.
    let latin = &got[&b"caf\xe9.txt"[..]];
    assert_eq!(latin.path_bytes, b"caf\xe9.txt");
    assert_eq!(latin.path, "caf\u{fffd}.txt");
    let mut catalog = d.catalog().await;
    let one = catalog
        .get_file(proto::GetFileRequest {
            path_bytes: b"caf\xe9.txt".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.file.unwrap().sha256, latin.sha256);

    // Classification.
    let lib = &got[&b"src/lib.rs"[..]];
    assert_eq!(
        (lib.file_type.as_str(), lib.purpose.as_str()),
        ("rust", "source")
    );
    assert_eq!(lib.description, "The library.");
    let test = &got[&b"tests/test_app.py"[..]];
    assert_eq!(
        (test.file_type.as_str(), test.purpose.as_str()),
        ("python", "test")
    );
    assert_eq!(got[&b"README.md"[..]].purpose, "docs");
    assert_eq!(got[&b".github/workflows/ci.yml"[..]].file_type, "yaml");
    assert_eq!(got[&b"fifo"[..]].kind, proto::FileKind::Fifo as i32);

    // Stats agree with the listing.
    let stats = catalog
        .stats(proto::StatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let r = &stats.roots[0];
    assert_eq!(r.files, got.len() as u64);
    assert_eq!(r.unreadable, 1);
    let scan = r.last_scan.as_ref().unwrap();
    assert_eq!(scan.files_seen, got.len() as u64);
    assert_eq!(scan.reason, "startup");
    assert!(!stats.instance_id.is_empty());

    // Duplicates: lib.rs and its copy.
    let dups = catalog
        .find_duplicates(proto::FindDuplicatesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dups.groups.len(), 1);
    assert_eq!(dups.groups[0].paths, vec!["copy_of_lib.rs", "src/lib.rs"]);

    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rehashes_exactly_what_changed_offline() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    for i in 0..20 {
        write_old(
            &root.join(format!("dir{}/file{i}.txt", i % 4)),
            format!("content {i}").as_bytes(),
        );
    }
    let last_scan = |stats: proto::StatsResponse| stats.roots[0].last_scan.clone().unwrap();

    let d = start(&dirs, &[root.as_os_str()]).await;
    let first = last_scan(
        d.catalog()
            .await
            .stats(proto::StatsRequest::default())
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!((first.files_hashed, first.files_added), (20, 20));
    let clock_before = list_all(&d).await.values().map(|f| f.clock).max().unwrap();
    assert!(d.stop().success());

    // Unchanged tree: nothing is hashed.
    let d = start(&dirs, &[root.as_os_str()]).await;
    let second = last_scan(
        d.catalog()
            .await
            .stats(proto::StatsRequest::default())
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        (
            second.files_hashed,
            second.files_skipped,
            second.files_added,
            second.files_modified,
            second.files_removed
        ),
        (0, 20, 0, 0, 0)
    );
    assert!(d.stop().success());

    // Offline: modify two, add three, delete one.
    std::fs::write(root.join("dir0/file0.txt"), b"changed content 0").unwrap();
    std::fs::write(root.join("dir1/file1.txt"), b"content 1 but longer").unwrap();
    for i in 0..3 {
        std::fs::write(root.join(format!("new{i}.txt")), b"new").unwrap();
    }
    std::fs::remove_file(root.join("dir2/file2.txt")).unwrap();

    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut catalog = d.catalog().await;
    let third = last_scan(
        catalog
            .stats(proto::StatsRequest::default())
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(third.files_hashed, 5, "{third:?}");
    assert_eq!(third.files_skipped, 17, "{third:?}");
    assert_eq!(
        (third.files_added, third.files_modified, third.files_removed),
        (3, 2, 1)
    );

    // The records agree with the disk, and the changed ones carry a newer clock.
    assert_catalog_matches_disk(&d, &root, &[]).await;
    let changed = catalog
        .list_files(proto::ListFilesRequest {
            since_clock: Some(clock_before),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut changed_paths = collect_paths(changed).await;
    changed_paths.sort();
    assert_eq!(
        changed_paths,
        vec![
            "dir0/file0.txt",
            "dir1/file1.txt",
            "new0.txt",
            "new1.txt",
            "new2.txt"
        ]
    );
    assert!(d.stop().success());
}

async fn collect_paths(mut stream: tonic::Streaming<proto::ListFilesResponse>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        out.extend(chunk.files.into_iter().map(|f| f.path));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_filter_and_bad_requests_are_refused() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("src/a.rs"), b"fn a() {}");
    write_old(&root.join("src/b.rs"), b"fn b() { /* longer */ }");
    write_old(&root.join("src/deep/c.rs"), b"fn c() {}");
    write_old(&root.join("srcx/d.rs"), b"fn d() {}");
    write_old(&root.join("docs/guide.md"), b"# Guide");
    write_old(&root.join("tests/test_x.py"), b"x = 1");
    std::os::unix::fs::symlink("/etc", root.join("etc_link")).unwrap();
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut catalog = d.catalog().await;
    let list = |req: proto::ListFilesRequest| {
        let mut c = catalog.clone();
        async move {
            let mut v = collect_paths(c.list_files(req).await.unwrap().into_inner()).await;
            v.sort();
            v
        }
    };
    assert_eq!(
        list(proto::ListFilesRequest {
            glob: "*.rs".into(),
            ..Default::default()
        })
        .await,
        vec!["src/a.rs", "src/b.rs", "src/deep/c.rs", "srcx/d.rs"]
    );
    assert_eq!(
        list(proto::ListFilesRequest {
            path_prefix: "src".into(),
            ..Default::default()
        })
        .await,
        vec!["src/a.rs", "src/b.rs", "src/deep/c.rs"]
    );
    assert_eq!(
        list(proto::ListFilesRequest {
            glob: "src/*.rs".into(),
            ..Default::default()
        })
        .await,
        vec!["src/a.rs", "src/b.rs"]
    );
    assert_eq!(
        list(proto::ListFilesRequest {
            purpose: "docs".into(),
            ..Default::default()
        })
        .await,
        vec!["docs/guide.md"]
    );
    assert_eq!(
        list(proto::ListFilesRequest {
            file_type: "python".into(),
            ..Default::default()
        })
        .await,
        vec!["tests/test_x.py"]
    );
    assert_eq!(
        list(proto::ListFilesRequest {
            min_size: Some(20),
            glob: "*.rs".into(),
            ..Default::default()
        })
        .await,
        vec!["src/b.rs"]
    );
    assert_eq!(
        list(proto::ListFilesRequest {
            glob: "*.rs".into(),
            limit: 2,
            ..Default::default()
        })
        .await
        .len(),
        2
    );

    // Refused requests: a clear INVALID_ARGUMENT, and the daemon keeps serving.
    for bad in ["../etc/passwd", "/etc/passwd", "a\0b", "src/../../x", ""] {
        let err = catalog
            .get_file(proto::GetFileRequest {
                path: bad.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}: {err:?}");
        assert!(!err.message().is_empty());
    }
    let err = catalog
        .get_file(proto::GetFileRequest {
            path_bytes: b"../x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    for bad in [
        proto::ListFilesRequest {
            path_prefix: "../".into(),
            ..Default::default()
        },
        proto::ListFilesRequest {
            glob: "[".into(),
            ..Default::default()
        },
        proto::ListFilesRequest {
            purpose: "nonsense".into(),
            ..Default::default()
        },
        proto::ListFilesRequest {
            min_size: Some(10),
            max_size: Some(1),
            ..Default::default()
        },
    ] {
        let err = catalog.list_files(bad.clone()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
    }
    // A symlinked folder is not followed: nothing under it is in the catalog.
    let err = catalog
        .get_file(proto::GetFileRequest {
            path: "etc_link/passwd".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = catalog
        .get_file(proto::GetFileRequest {
            root: "/no/such/root".into(),
            path: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // A rescan picks up a change and reports it.
    std::fs::write(root.join("src/a.rs"), b"fn a() { changed }").unwrap();
    let mut stream = catalog
        .rescan(proto::RescanRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut report = None;
    while let Some(p) = stream.message().await.unwrap() {
        if p.done {
            report = p.report;
        }
    }
    let report = report.expect("a final report");
    assert_eq!(report.files_modified, 1);
    assert_eq!(report.reason, "rescan");
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_restart_still_hashes_only_what_changed() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    for i in 0..30 {
        write_old(&root.join(format!("f{i}.txt")), format!("v{i}").as_bytes());
    }
    // A clean stop keeps the instance: clocks stay exact across it.
    let d = start(&dirs, &[root.as_os_str()]).await;
    let clean = d.changes(0, "").await;
    assert!(d.stop().success());
    let mut d = start(&dirs, &[root.as_os_str()]).await;
    let before = d.changes(clean.clock, &clean.instance_id).await;
    assert_eq!(before.instance_id, clean.instance_id);
    assert!(!before.fresh_instance);
    // kill -9: no clean shutdown, no record-heads snapshot; the records themselves are read.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    std::fs::write(root.join("f3.txt"), b"changed while the daemon was dead").unwrap();
    std::fs::remove_file(root.join("f4.txt")).unwrap();
    let d = start(&dirs, &[root.as_os_str()]).await;
    let stats = d
        .catalog()
        .await
        .stats(proto::StatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let scan = stats.roots[0].last_scan.clone().unwrap();
    assert_eq!(
        (scan.files_hashed, scan.files_modified, scan.files_removed),
        (1, 1, 1),
        "{scan:?}"
    );
    assert_catalog_matches_disk(&d, &root, &[]).await;
    // Clocks answered in the last second before a crash may never have reached the disk and
    // could be handed out again: after an unclean stop the instance is new, so a client
    // holding an old clock starts over instead of getting a list missing changes.
    let after = d.changes(before.clock, &before.instance_id).await;
    assert_ne!(after.instance_id, before.instance_id);
    assert!(after.fresh_instance);
    assert!(d.stop().success());
}
