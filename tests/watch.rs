//! Always current: live watching with read-your-writes queries, clocks that survive restarts,
//! queue overflow, the watch limit, and change subscriptions — against a real daemon.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};
use workflowdb::proto;

/// A tiny deterministic PRNG (xorshift64*), so a failing sequence can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect()
}

fn dirs_under(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.path().to_path_buf())
        .collect()
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap().to_string_lossy().into_owned()
}

/// After each change, a synced GetFile of the changed path must see it: never stale.
async fn assert_synced(d: &Daemon, root: &Path, path: &Path) {
    let mut catalog = d.catalog().await;
    let r = rel(root, path);
    let answer = catalog
        .get_file(proto::GetFileRequest {
            path: r.clone(),
            ..Default::default()
        })
        .await;
    if path.is_file() {
        let want = hex(&Sha256::digest(std::fs::read(path).unwrap()));
        let got = answer
            .unwrap_or_else(|e| panic!("{r}: {e:?}"))
            .into_inner()
            .file
            .unwrap();
        assert_eq!(got.sha256, want, "stale answer for {r}");
    } else {
        let err = answer.expect_err(&format!("{r} is gone but still catalogued"));
        assert_eq!(err.code(), tonic::Code::NotFound, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_random_operations_each_seen_by_the_next_synced_query() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    for i in 0..20 {
        write_old(
            &root.join(format!("d{}/f{i}.txt", i % 4)),
            format!("seed {i}").as_bytes(),
        );
    }
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut counter = 0u32;
    for _ in 0..1000 {
        counter += 1;
        let files = files_under(&root);
        let folders = dirs_under(&root);
        let pick_file = |rng: &mut Rng| files.get(rng.below(files.len().max(1))).cloned();
        let touched: Vec<PathBuf> = match rng.below(8) {
            0 => {
                let dir = folders
                    .get(rng.below(folders.len().max(1)))
                    .cloned()
                    .unwrap_or(root.clone());
                let p = dir.join(format!("new{counter}.txt"));
                std::fs::write(&p, format!("created {counter}")).unwrap();
                vec![p]
            }
            1 => match pick_file(&mut rng) {
                Some(p) => {
                    std::fs::write(&p, format!("rewritten {counter} {}", rng.next())).unwrap();
                    vec![p]
                }
                None => vec![],
            },
            2 => match pick_file(&mut rng) {
                Some(p) => {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
                    write!(f, " appended {counter}").unwrap();
                    vec![p]
                }
                None => vec![],
            },
            3 => match pick_file(&mut rng) {
                Some(p) => {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(&p)
                        .unwrap();
                    vec![p]
                }
                None => vec![],
            },
            4 => match pick_file(&mut rng) {
                Some(p) if files.len() > 10 => {
                    std::fs::remove_file(&p).unwrap();
                    vec![p]
                }
                _ => vec![],
            },
            5 => match pick_file(&mut rng) {
                Some(p) => {
                    let dir = folders
                        .get(rng.below(folders.len().max(1)))
                        .cloned()
                        .unwrap_or(root.clone());
                    let q = dir.join(format!("renamed{counter}.txt"));
                    std::fs::rename(&p, &q).unwrap();
                    vec![p, q]
                }
                None => vec![],
            },
            6 => match folders.get(rng.below(folders.len().max(1))).cloned() {
                Some(dir) if dir.parent() == Some(root.as_path()) => {
                    let before = files_under(&dir);
                    let to = root.join(format!("dir{counter}"));
                    std::fs::rename(&dir, &to).unwrap();
                    let mut t: Vec<PathBuf> = before.clone();
                    t.extend(files_under(&to));
                    t
                }
                _ => vec![],
            },
            _ => {
                let base = root.join(format!("mk{counter}/a/b"));
                std::fs::create_dir_all(&base).unwrap();
                let mut t = Vec::new();
                for j in 0..3 {
                    let p = base.join(format!("g{j}.txt"));
                    std::fs::write(&p, format!("deep {counter} {j}")).unwrap();
                    t.push(p);
                }
                t
            }
        };
        for p in &touched {
            assert_synced(&d, &root, p).await;
        }
    }
    // The whole catalog equals an independent walk.
    assert_catalog_matches_disk(&d, &root, &[]).await;
    // Cookies never show up in the catalog nor stay behind.
    let cookie_dir = PathBuf::from(format!("{}.cookies", d.db.display()));
    assert!(
        std::fs::read_dir(&cookie_dir).unwrap().next().is_none(),
        "cookies left behind"
    );
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_from_before_a_restart_gets_exactly_what_changed() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    for i in 0..10 {
        write_old(&root.join(format!("f{i}.txt")), format!("{i}").as_bytes());
    }
    let d = start(&dirs, &[root.as_os_str()]).await;
    let clock = d
        .catalog()
        .await
        .get_clock(proto::ClockRequest::default())
        .await
        .unwrap()
        .into_inner();
    // A change while running, then more while the daemon is down.
    std::fs::write(root.join("f1.txt"), b"live change").unwrap();
    assert_synced(&d, &root, &root.join("f1.txt")).await;
    assert!(d.stop().success());
    std::fs::write(root.join("f2.txt"), b"offline change").unwrap();
    std::fs::remove_file(root.join("f3.txt")).unwrap();
    std::fs::write(root.join("added.txt"), b"offline add").unwrap();

    let d = start(&dirs, &[root.as_os_str()]).await;
    let changes = d.changes(clock.clock, &clock.instance_id).await;
    assert!(!changes.fresh_instance);
    let mut changed: Vec<String> = changes.changed.iter().map(|f| f.path.clone()).collect();
    changed.sort();
    assert_eq!(changed, vec!["added.txt", "f1.txt", "f2.txt"]);
    assert_eq!(changes.removed, vec!["f3.txt"]);
    assert!(changes.clock > clock.clock);
    // Another instance's clock cannot be answered exactly.
    let fresh = d.changes(clock.clock, "someone-else").await;
    assert!(fresh.fresh_instance);
    assert_eq!(fresh.changed.len(), 10);
    assert!(d.stop().success());
}

/// Removals are remembered for `retention.tombstones`; a clock from before a forgotten removal
/// gets `fresh_instance` (never a silently incomplete answer), a newer one stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_older_than_the_tombstone_retention_get_a_fresh_instance() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    for i in 0..4 {
        write_old(&root.join(format!("f{i}.txt")), format!("{i}").as_bytes());
    }
    let d = start(
        &dirs,
        &[
            root.as_os_str(),
            "--tombstone-retention".as_ref(),
            "300ms".as_ref(),
        ],
    )
    .await;
    let before = d.changes(0, "").await;
    std::fs::remove_file(root.join("f1.txt")).unwrap();
    assert_synced(&d, &root, &root.join("f1.txt")).await;
    // Exact until pruned (on a slow machine the pruning may already have happened).
    let exact = d.changes(before.clock, &before.instance_id).await;
    if !exact.fresh_instance {
        assert_eq!(exact.removed, vec!["f1.txt"]);
    }
    // Once the removal is pruned, the old clock can no longer be answered exactly.
    wait_until("the removal to be pruned", || async {
        d.changes(before.clock, &before.instance_id)
            .await
            .fresh_instance
    })
    .await;
    let fresh = d.changes(before.clock, &before.instance_id).await;
    assert!(fresh.removed.is_empty());
    assert_eq!(fresh.changed.len(), 3, "a fresh instance lists every file");
    // A clock taken after the pruning is exact (a modification leaves no tombstone to prune,
    // so this holds however slow the machine).
    std::fs::write(root.join("f2.txt"), b"changed").unwrap();
    assert_synced(&d, &root, &root.join("f2.txt")).await;
    let now = d.changes(fresh.clock, &fresh.instance_id).await;
    assert!(!now.fresh_instance);
    let changed: Vec<&str> = now.changed.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(changed, vec!["f2.txt"]);
    // Graph queries refuse such a clock instead of guessing.
    let (code, _, err) = common::cli(
        &d.socket,
        &["affected", "--since", &before.clock.to_string()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot be answered exactly"), "{err}");
    assert!(d.stop().success());
}

/// A file or folder moved within the root is told to subscribers as renames (same inode and
/// content), not as unrelated removals and additions; a filter sees the end it matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_are_told_as_renames() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("a.txt"), b"a");
    write_old(&root.join("dir/x.rs"), b"fn x() {}");
    write_old(&root.join("dir/y.rs"), b"fn y() {}");
    write_old(&root.join("lib.rs"), b"fn l() {}");
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut all = d.subscribe("").await;
    let mut rs = d.subscribe("*.rs").await;
    // Collects batches until `want` renames were seen; returns (renames, added, removed).
    async fn until_renames(
        sub: &mut tonic::Streaming<proto::ChangeBatch>,
        want: usize,
    ) -> (Vec<(String, String)>, Vec<String>, Vec<String>) {
        let (mut renamed, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        while renamed.len() < want {
            let b = tokio::time::timeout(TIMEOUT, sub.message())
                .await
                .expect("a batch in time")
                .unwrap()
                .unwrap();
            assert!(!b.resync, "{b:?}");
            for r in b.renamed {
                renamed.push((r.from, r.to.unwrap().path));
            }
            added.extend(b.added.into_iter().map(|f| f.path));
            removed.extend(b.removed);
        }
        renamed.sort();
        (renamed, added, removed)
    }

    std::fs::rename(root.join("a.txt"), root.join("b.txt")).unwrap();
    let (renamed, added, removed) = until_renames(&mut all, 1).await;
    assert_eq!(renamed, vec![("a.txt".to_string(), "b.txt".to_string())]);
    assert!(
        added.is_empty() && removed.is_empty(),
        "{added:?} {removed:?}"
    );

    std::fs::rename(root.join("dir"), root.join("moved")).unwrap();
    let (renamed, added, removed) = until_renames(&mut all, 2).await;
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        renamed,
        vec![
            pair("dir/x.rs", "moved/x.rs"),
            pair("dir/y.rs", "moved/y.rs")
        ]
    );
    assert!(
        added.is_empty() && removed.is_empty(),
        "{added:?} {removed:?}"
    );
    let (renamed, _, _) = until_renames(&mut rs, 2).await;
    assert_eq!(renamed.len(), 2, "both ends match *.rs");

    // Only the old name matches the filter: the filtered subscriber sees a removal.
    std::fs::rename(root.join("lib.rs"), root.join("lib.txt")).unwrap();
    let b = tokio::time::timeout(TIMEOUT, rs.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(b.removed, vec!["lib.rs"], "{b:?}");
    assert!(b.renamed.is_empty() && b.added.is_empty(), "{b:?}");
    let (renamed, _, _) = until_renames(&mut all, 1).await;
    assert_eq!(renamed, vec![pair("lib.rs", "lib.txt")]);
    // A copy is not a rename.
    std::fs::copy(root.join("b.txt"), root.join("c.txt")).unwrap();
    let b = tokio::time::timeout(TIMEOUT, all.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(b.renamed.is_empty(), "{b:?}");
    assert_eq!(
        b.added.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        vec!["c.txt"]
    );
    assert!(d.stop().success());
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_overflow_converges_and_subscribers_see_a_resync() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("start.txt"), b"start");
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut sub = d.subscribe("").await;
    // Stop the daemon so the kernel queue (16384 events by default) overflows.
    signal(&d.child, libc::SIGSTOP);
    let max_events: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    let n = max_events / 2 + 1000;
    for i in 0..n {
        std::fs::write(root.join(format!("burst{i}.txt")), b"x").unwrap();
    }
    signal(&d.child, libc::SIGCONT);
    let expected = n + 1;
    wait_until("the catalog to converge", || async {
        list_all(&d).await.len() == expected
    })
    .await;
    let mut saw_resync = false;
    let deadline = Instant::now() + TIMEOUT;
    while !saw_resync {
        assert!(Instant::now() < deadline, "no resync marker");
        match tokio::time::timeout(Duration::from_secs(5), sub.message()).await {
            Ok(Ok(Some(batch))) => saw_resync |= batch.resync,
            other => panic!("subscription ended: {other:?}"),
        }
    }
    assert_catalog_matches_disk(&d, &root, &[]).await;
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_watch_limit_folders_are_polled_and_stay_correct() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    for i in 0..6 {
        write_old(&root.join(format!("d{i}/f.txt")), b"v1");
    }
    let d = start(
        &dirs,
        &[
            root.as_os_str(),
            "--max-watches".as_ref(),
            "3".as_ref(),
            "--poll-interval".as_ref(),
            "0.2".as_ref(),
        ],
    )
    .await;
    let stats = d
        .catalog()
        .await
        .stats(proto::StatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(stats.polled_dirs > 0, "{stats:?}");
    assert!(stats.watched_dirs <= 3);
    assert!(
        d.log_text().contains("max_user_watches"),
        "the warning names the sysctl"
    );
    // Change a file in every folder: the polled ones converge too.
    for i in 0..6 {
        std::fs::write(root.join(format!("d{i}/f.txt")), format!("v2 in {i}")).unwrap();
    }
    wait_until("every folder to be seen", || async {
        let got = list_all(&d).await;
        let truth = independent_walk(&root, &[]);
        truth
            .iter()
            .all(|(p, t)| got.get(p).is_some_and(|f| f.sha256 == t.sha256))
    })
    .await;
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_filters_and_gitignore_edits() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("keep.rs"), b"fn a() {}");
    write_old(&root.join("notes.txt"), b"n");
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut sub = d.subscribe("*.rs").await;
    std::fs::write(root.join("other.txt"), b"not matching").unwrap();
    std::fs::write(root.join("new.rs"), b"fn b() {}").unwrap();
    let batch = tokio::time::timeout(TIMEOUT, sub.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let added: Vec<&str> = batch.added.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(added, vec!["new.rs"], "{batch:?}");
    std::fs::remove_file(root.join("keep.rs")).unwrap();
    let batch = tokio::time::timeout(TIMEOUT, sub.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.removed, vec!["keep.rs"]);

    // A .gitignore edit takes effect at once.
    std::fs::write(root.join(".gitignore"), b"*.txt\n").unwrap();
    let mut catalog = d.catalog().await;
    let e = catalog
        .get_file(proto::GetFileRequest {
            path: "notes.txt".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    std::fs::write(root.join(".gitignore"), b"").unwrap();
    catalog
        .get_file(proto::GetFileRequest {
            path: "notes.txt".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_watcher_traps() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    let outside = dirs.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    for i in 0..5 {
        write_old(&root.join(format!("sub/f{i}.txt")), b"x");
    }
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut catalog = d.catalog().await;
    let clock = |c: proto::ClockResponse| c.clock;

    // 1. The daemon's own reads (hashing opens every file) must not feed back into work:
    //    once synced, the clock stays put however often we sync again.
    std::fs::write(root.join("sub/f0.txt"), b"changed").unwrap();
    let c1 = clock(
        catalog
            .get_clock(proto::ClockRequest::default())
            .await
            .unwrap()
            .into_inner(),
    );
    for _ in 0..5 {
        let c = clock(
            catalog
                .get_clock(proto::ClockRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
        assert_eq!(c, c1, "reading files made the daemon see changes");
    }

    // 2. Files created in a just-created folder (before its watch exists) are catalogued.
    let deep = root.join("fresh/a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    for i in 0..50 {
        std::fs::write(deep.join(format!("n{i}.txt")), format!("{i}")).unwrap();
    }
    assert_synced(&d, &root, &deep.join("n49.txt")).await;
    let listed = catalog
        .list_files(proto::ListFilesRequest {
            path_prefix: "fresh".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    let mut listed = listed;
    while let Some(chunk) = listed.message().await.unwrap() {
        n += chunk.files.len();
    }
    assert_eq!(n, 50);

    // 3. Half renames: a folder moved out of the tree reports only its "from" half.
    std::fs::rename(root.join("sub"), outside.join("sub")).unwrap();
    for i in 0..5 {
        assert_synced(&d, &root, &root.join(format!("sub/f{i}.txt"))).await;
    }
    //    ... and one moved in reports only its "to" half: all its files appear.
    std::fs::rename(outside.join("sub"), root.join("back")).unwrap();
    for i in 0..5 {
        assert_synced(&d, &root, &root.join(format!("back/f{i}.txt"))).await;
    }
    //    Changes inside a folder that was moved within the tree are seen at its new path.
    std::fs::rename(root.join("back"), root.join("moved")).unwrap();
    std::fs::write(root.join("moved/f1.txt"), b"edited after the move").unwrap();
    assert_synced(&d, &root, &root.join("moved/f1.txt")).await;
    assert_synced(&d, &root, &root.join("back/f1.txt")).await;

    // 4. An atomic save (write a temporary file, rename over the original) gives no remove.
    std::fs::write(root.join("moved/f2.txt.tmp"), b"atomically saved").unwrap();
    std::fs::rename(root.join("moved/f2.txt.tmp"), root.join("moved/f2.txt")).unwrap();
    assert_synced(&d, &root, &root.join("moved/f2.txt")).await;
    assert_synced(&d, &root, &root.join("moved/f2.txt.tmp")).await;

    assert_catalog_matches_disk(&d, &root, &[]).await;
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_storm_settles_into_few_batches() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    let n = 3000;
    for i in 0..n {
        write_old(
            &root.join(format!("m{}/f{i}.rs", i % 30)),
            format!("v1 {i}").as_bytes(),
        );
    }
    let d = start(&dirs, &[root.as_os_str()]).await;
    let before = d
        .catalog()
        .await
        .get_clock(proto::ClockRequest::default())
        .await
        .unwrap()
        .into_inner()
        .clock;
    let mut sub = d.subscribe("").await;
    // Rewrite every file as fast as a checkout would.
    for i in 0..n {
        std::fs::write(root.join(format!("m{}/f{i}.rs", i % 30)), format!("v2 {i}")).unwrap();
    }
    let after = d
        .catalog()
        .await
        .get_clock(proto::ClockRequest::default())
        .await
        .unwrap()
        .into_inner()
        .clock;
    let mut seen = std::collections::HashSet::new();
    let mut batches = 0;
    while seen.len() < n {
        let b = tokio::time::timeout(TIMEOUT, sub.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        batches += 1;
        for f in b.added.iter().chain(b.modified.iter()) {
            seen.insert(f.path.clone());
        }
    }
    assert!(
        after - before <= 40,
        "{} batches (clock ticks) for {n} rewritten files",
        after - before
    );
    assert!(batches <= 40, "{batches} batches");
    assert_catalog_matches_disk(&d, &root, &[]).await;
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_cannot_complete_is_deadline_exceeded_never_stale() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("a.txt"), b"a");
    let d = start(
        &dirs,
        &[root.as_os_str(), "--sync-timeout".as_ref(), "0.5".as_ref()],
    )
    .await;
    // Replace the cookie folder behind the daemon's back: the new one is not watched, so no
    // cookie can ever be seen and no sync can complete.
    let cookie_dir = PathBuf::from(format!("{}.cookies", d.db.display()));
    std::fs::remove_dir_all(&cookie_dir).unwrap();
    std::fs::create_dir(&cookie_dir).unwrap();
    let mut catalog = d.catalog().await;
    let e = catalog
        .get_file(proto::GetFileRequest {
            path: "a.txt".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("without sync"), "{}", e.message());
    // Asking explicitly for an unsynced answer still works.
    catalog
        .get_file(proto::GetFileRequest {
            path: "a.txt".into(),
            unsynced: true,
            ..Default::default()
        })
        .await
        .unwrap();
    // The timed-out cookie is not left behind.
    assert!(std::fs::read_dir(&cookie_dir).unwrap().next().is_none());
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_to_odd_files_are_caught_and_lose_nothing() {
    use std::os::unix::ffi::OsStrExt;
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("tree");
    write_old(&root.join("keep.txt"), b"k");
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut catalog = d.catalog().await;
    let get =
        |c: &mut workflowdb::proto::catalog_client::CatalogClient<tonic::transport::Channel>,
         p: &[u8]| {
            let mut c = c.clone();
            let req = proto::GetFileRequest {
                path_bytes: p.to_vec(),
                ..Default::default()
            };
            async move { c.get_file(req).await }
        };

    // A name that is not UTF-8, created and then changed while the daemon runs.
    let latin = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&latin, b"one").unwrap();
    let f = get(&mut catalog, b"caf\xe9.txt")
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(f.path_bytes, b"caf\xe9.txt");
    assert_eq!(f.size_bytes, 3);
    std::fs::write(&latin, b"three").unwrap();
    let f = get(&mut catalog, b"caf\xe9.txt")
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(f.size_bytes, 5);

    // An empty file, and one emptied.
    std::fs::write(root.join("empty"), b"").unwrap();
    let f = get(&mut catalog, b"empty")
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(
        f.sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    std::fs::write(root.join("keep.txt"), b"").unwrap();
    let f = get(&mut catalog, b"keep.txt")
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(f.size_bytes, 0);

    // A FIFO appearing live is recorded, never opened (the daemon would block if it were).
    mkfifo(&root.join("pipe"));
    let f = get(&mut catalog, b"pipe")
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(f.kind, proto::FileKind::Fifo as i32);
    assert!(f.sha256.is_empty());

    // Deleted live: gone from the catalog, and nothing else is lost.
    std::fs::remove_file(&latin).unwrap();
    let e = get(&mut catalog, b"caf\xe9.txt").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_catalog_matches_disk(&d, &root, &[]).await;
    assert!(d.stop().success());
}
