//! The reconciling scan, in three steps that each use every core: a gitignore-aware walk that
//! only stats, a plan that compares each entry's stat fingerprint with the stored record head,
//! and a parallel hash of only the entries that differ, streaming records to a sink as they are
//! made (so the store writes while hashing goes on).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::classify::{classify, component_of, manifest_dirs};
use super::hash::{hash_file, HashError};
use super::record::{FileKind, FileRecord, Fingerprint, Purpose};
use super::rules::{IgnoreRules, Layer};
use crate::paths::RelPath;

/// Read buffer per hashing thread.
const READ_BUFFER: usize = 256 * 1024;

/// Records handed to the sink at a time.
const SINK_CHUNK: usize = 4096;

/// File timestamps come from the kernel's coarse clock, which may lag the real clock by a tick;
/// the racy-clean cut-off is moved back by this much so a write during a scan is never missed.
pub const COARSE_CLOCK_MARGIN_NS: i64 = 100_000_000;

/// Which entries of a root are catalogued.
#[derive(Clone, Default)]
pub struct WalkOptions {
    /// Extra gitignore-style globs to leave out (e.g. `*.log`, `build/`).
    pub ignore_globs: Vec<String>,
    /// Absolute paths never catalogued (the daemon's own database and socket).
    pub exclude: Vec<PathBuf>,
    /// Walking and hashing threads; 0 means one per core.
    pub threads: usize,
    /// Called with each folder right before it is listed.
    pub on_dir: Option<Arc<OnDir>>,
}

impl std::fmt::Debug for WalkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalkOptions")
            .field("ignore_globs", &self.ignore_globs)
            .field("exclude", &self.exclude)
            .field("threads", &self.threads)
            .field("on_dir", &self.on_dir.is_some())
            .finish()
    }
}

impl WalkOptions {
    /// Walking and hashing threads to use.
    pub fn thread_count(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.threads
        }
    }
}

/// Live counters of a scan in progress, readable from other threads.
#[derive(Debug, Default)]
pub struct ScanProgress {
    pub files_seen: AtomicU64,
    pub files_hashed: AtomicU64,
    pub bytes_hashed: AtomicU64,
    /// Entries a hashing pass has been given and not yet examined (the hash backlog).
    pub files_pending: AtomicU64,
}

/// Why a scan could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("root {0} is not a readable folder: {1}")]
    Root(PathBuf, std::io::Error),
    #[error("bad ignore glob {glob:?}: {message}")]
    Glob { glob: String, message: String },
    #[error("scan cancelled")]
    Cancelled,
}

/// One catalogued entry as the walk saw it.
#[derive(Clone, Debug)]
pub struct WalkEntry {
    pub path: RelPath,
    pub kind: FileKind,
    pub fingerprint: Fingerprint,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    pub entries: Vec<WalkEntry>,
    /// Folders that could not be listed; previous records under them are kept.
    pub unreadable_dirs: Vec<RelPath>,
    /// Catalogued folders (not ignored), for watching.
    pub dirs: Vec<RelPath>,
    pub errors: u64,
    /// When the walk started (ns since the epoch): the next scan's racy-clean cut-off.
    pub started_ns: i64,
}

/// Lists a root: every entry that is not ignored, with its `lstat` fingerprint. Folders are
/// listed in parallel, one per thread at a time; entries are stat'ed through the folder's
/// handle (`fstatat`), and ignore files are read only where a listing shows one.
pub fn walk(
    root: &Path,
    opts: &WalkOptions,
    progress: &ScanProgress,
    cancel: &AtomicBool,
) -> Result<Walked, ScanError> {
    let meta = std::fs::metadata(root).map_err(|e| ScanError::Root(root.to_path_buf(), e))?;
    if !meta.is_dir() {
        return Err(ScanError::Root(
            root.to_path_buf(),
            std::io::Error::other("not a folder"),
        ));
    }
    let rules = IgnoreRules::new(root, &opts.ignore_globs, &opts.exclude)?;
    walk_subtree(
        &rules,
        (root.to_path_buf(), None, rules.base()),
        opts.thread_count(),
        progress,
        cancel,
        opts.on_dir.as_deref(),
    )
}

/// Called with each folder right before it is listed (the watcher adds its watch there, so
/// nothing that changes after the listing can be missed).
pub type OnDir = dyn Fn(&Path) + Send + Sync;

/// Lists the subtree of one folder (`start`: its absolute path, its root-relative path or
/// `None` for the root, and its parent's ignore layer) with `threads` threads.
pub fn walk_subtree(
    rules: &IgnoreRules,
    start: DirJob,
    threads: usize,
    progress: &ScanProgress,
    cancel: &AtomicBool,
    on_dir: Option<&OnDir>,
) -> Result<Walked, ScanError> {
    let started_ns = now_ns();
    let queue: WorkQueue<DirJob> = WorkQueue::new(start);
    let shared = Mutex::new(Walked::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut local = Walked::default();
                let mut seen = 0u64;
                while let Some(job) = queue.pop() {
                    if cancel.load(Ordering::Relaxed) {
                        queue.done(Vec::new());
                        continue;
                    }
                    if let Some(hook) = on_dir {
                        hook(&job.0);
                    }
                    let subdirs = list_dir(rules, job, &mut local);
                    queue.done(subdirs);
                    let n = local.entries.len() as u64;
                    progress.files_seen.fetch_add(n - seen, Ordering::Relaxed);
                    seen = n;
                }
                merge(&shared, &mut local);
            });
        }
    });
    if cancel.load(Ordering::Relaxed) {
        return Err(ScanError::Cancelled);
    }
    let mut walked = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    walked.started_ns = started_ns;
    Ok(walked)
}

/// A folder waiting to be listed: its absolute path, its root-relative path (`None` for the
/// root itself) and the ignore layer of its parent.
pub type DirJob = (PathBuf, Option<RelPath>, Arc<Layer>);

/// Lists one folder into `local`; returns its subfolders to walk.
fn list_dir(rules: &IgnoreRules, job: DirJob, local: &mut Walked) -> Vec<DirJob> {
    use std::os::unix::ffi::OsStrExt;
    let (dir, rel_dir, parent_layer) = job;
    let read = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) => {
            local.errors += 1;
            tracing::warn!(path = %dir.display(), error = %e, "cannot list folder; keeping its previous records");
            if let Some(rel) = rel_dir {
                local.unreadable_dirs.push(rel);
            }
            return Vec::new();
        }
    };
    let mut listing = Vec::new();
    let (mut has_gitignore, mut has_dot_ignore) = (false, false);
    for item in read {
        match item {
            Ok(entry) => {
                let name = entry.file_name();
                has_gitignore |= name == ".gitignore";
                has_dot_ignore |= name == ".ignore";
                listing.push((entry, name));
            }
            Err(e) => {
                local.errors += 1;
                tracing::warn!(path = %dir.display(), error = %e, "cannot read a folder entry");
            }
        }
    }
    let layer = rules.layer_for(&parent_layer, &dir, has_gitignore, has_dot_ignore);
    let matching = rules.has_patterns(&layer);
    let excluded = rules.excluded_names_in(&dir);
    let mut subdirs = Vec::new();
    // One buffer for the absolute path of each entry the ignore rules look at.
    let mut full = dir.clone();
    for (entry, name) in listing {
        if name == ".git" || excluded.iter().any(|x| *x == name) {
            continue;
        }
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let is_dir = file_type.is_dir();
        if matching {
            full.push(&name);
            let ignored = rules.is_ignored(&layer, &full, is_dir);
            full.pop();
            if ignored {
                continue;
            }
        }
        let rel = RelPath::child(rel_dir.as_ref(), name.as_bytes());
        if is_dir {
            local.dirs.push(rel.clone());
            subdirs.push((entry.path(), Some(rel), Arc::clone(&layer)));
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Vanished between listing and stat: it is simply not there any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(path = %rel, error = %e, "cannot stat");
                local.errors += 1;
                local.unreadable_dirs.push(rel);
                continue;
            }
        };
        let Some(kind) = FileKind::from_file_type(meta.file_type()) else {
            continue;
        };
        local.entries.push(WalkEntry {
            path: rel,
            kind,
            fingerprint: Fingerprint::of(&meta),
        });
    }
    subdirs
}

/// A stack of folders to list, shared by the walking threads, that knows when the walk is
/// over: no folder queued and none being listed.
struct WorkQueue<T> {
    state: Mutex<(Vec<T>, usize)>,
    ready: Condvar,
}

impl<T> WorkQueue<T> {
    fn new(first: T) -> Self {
        WorkQueue {
            state: Mutex::new((vec![first], 0)),
            ready: Condvar::new(),
        }
    }

    /// The next folder, or `None` when the walk is over.
    fn pop(&self) -> Option<T> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(item) = state.0.pop() {
                state.1 += 1;
                return Some(item);
            }
            if state.1 == 0 {
                self.ready.notify_all();
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Marks a popped folder as listed, queueing its subfolders.
    fn done(&self, more: Vec<T>) {
        let added = more.len();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.extend(more);
        state.1 -= 1;
        let finished = state.0.is_empty() && state.1 == 0;
        drop(state);
        // Wake waiters only when there is work for them or the walk is over.
        if finished {
            self.ready.notify_all();
        } else if added > 0 {
            self.ready.notify_one();
        }
    }
}

fn merge(shared: &Mutex<Walked>, local: &mut Walked) {
    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
    s.entries.append(&mut local.entries);
    s.dirs.append(&mut local.dirs);
    s.unreadable_dirs.append(&mut local.unreadable_dirs);
    s.errors += std::mem::take(&mut local.errors);
}

/// What a reconcile must do after comparing a walk with the stored record heads.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to hash (or, for non-regular files, to record again).
    pub work: Vec<WalkEntry>,
    /// Previous paths gone from the disk.
    pub removed: Vec<RelPath>,
    /// Unchanged paths whose component changed because a manifest came or went.
    pub recomponent: Vec<(RelPath, String)>,
    pub skipped: u64,
    /// The component roots after this scan (left empty when there is nothing to hash and no
    /// path came or went).
    pub manifest_dirs: HashSet<Vec<u8>>,
}

/// Compares a walk with the previous record heads. An entry is skipped when its fingerprint and
/// kind are unchanged, its record has no error, and its mtime is older than the previous scan's
/// start (`previous_started_ns`); otherwise it is hashed ("racily clean" files included).
pub fn plan(
    walked: &Walked,
    previous: &crate::catalog::Heads,
    previous_started_ns: Option<i64>,
) -> Plan {
    let racy_cutoff = previous_started_ns
        .map(|ns| ns - COARSE_CLOCK_MARGIN_NS)
        .unwrap_or(i64::MIN);
    let mut plan = Plan::default();
    let mut known = 0usize;
    let mut added_paths = false;
    for entry in &walked.entries {
        let prev = previous.get(&entry.path);
        match prev {
            Some(_) => known += 1,
            None => added_paths = true,
        }
        let unchanged =
            prev.is_some_and(|prev| prev.still_valid(entry.kind, &entry.fingerprint, racy_cutoff));
        if unchanged {
            plan.skipped += 1;
        } else {
            plan.work.push(entry.clone());
        }
    }
    // Every previous path was seen again (the common case): nothing was removed, and no
    // set needs building.
    if known < previous.len() {
        let seen: HashSet<&RelPath> = walked.entries.iter().map(|e| &e.path).collect();
        plan.removed = previous
            .keys()
            .filter(|p| !seen.contains(p))
            .filter(|p| {
                !walked
                    .unreadable_dirs
                    .iter()
                    .any(|d| p.starts_with_dir(d.as_bytes()))
            })
            .cloned()
            .collect();
        plan.removed.sort();
    }
    if !added_paths && plan.removed.is_empty() {
        // Same paths as before: the same component roots, needed only to place hashed files.
        if !plan.work.is_empty() {
            plan.manifest_dirs = manifest_dirs(previous.keys());
        }
        return plan;
    }
    let before = manifest_dirs(previous.keys());
    let removed: HashSet<&RelPath> = plan.removed.iter().collect();
    let seen: HashSet<&RelPath> = walked.entries.iter().map(|e| &e.path).collect();
    // Records kept under unreadable folders still count as present.
    let retained = previous
        .keys()
        .filter(|p| !seen.contains(p) && !removed.contains(p));
    plan.manifest_dirs = manifest_dirs(walked.entries.iter().map(|e| &e.path).chain(retained));
    if before != plan.manifest_dirs {
        let working: HashSet<&RelPath> = plan.work.iter().map(|e| &e.path).collect();
        for path in walked.entries.iter().map(|e| &e.path) {
            if working.contains(path) {
                continue;
            }
            let new = component_of(path, &plan.manifest_dirs);
            if component_of(path, &before) != new {
                plan.recomponent.push((path.clone(), new));
            }
        }
    }
    plan
}

/// Counters of a hashing pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct HashCounts {
    pub hashed: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Entries that vanished before they could be read.
    pub vanished: u64,
}

/// Hashes and classifies `work` on every core, handing finished records to `sink` in chunks.
/// Unchanged content (same hash, same fingerprint as `previous`) produces no record.
#[allow(clippy::too_many_arguments)] // One caller, the reconcile; a struct would only rename them.
pub fn hash_all(
    root: &Path,
    work: &[WalkEntry],
    previous: &crate::catalog::Heads,
    manifest_dirs: &HashSet<Vec<u8>>,
    opts: &WalkOptions,
    progress: &ScanProgress,
    cancel: &AtomicBool,
    sink: &(dyn Fn(Vec<FileRecord>) + Sync),
) -> Result<HashCounts, ScanError> {
    let next = AtomicUsize::new(0);
    let totals = Mutex::new(HashCounts::default());
    let threads = opts.thread_count().min(work.len().max(1));
    progress
        .files_pending
        .fetch_add(work.len() as u64, Ordering::Relaxed);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut buf = vec![0u8; READ_BUFFER];
                let mut counts = HashCounts::default();
                let mut out = Vec::with_capacity(SINK_CHUNK.min(work.len()));
                loop {
                    if cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(entry) = work.get(i) else { break };
                    let examined = examine(root, entry, &mut buf, &mut counts, progress);
                    progress.files_pending.fetch_sub(1, Ordering::Relaxed);
                    let Some(mut record) = examined else {
                        counts.vanished += 1;
                        continue;
                    };
                    if let Some(prev) = previous.get(&record.path) {
                        // A racily clean file that hashes the same is not a change.
                        if prev.same_content(&record) {
                            continue;
                        }
                    }
                    record.component = component_of(&record.path, manifest_dirs);
                    out.push(record);
                    if out.len() >= SINK_CHUNK {
                        sink(std::mem::take(&mut out));
                    }
                }
                if !out.is_empty() {
                    sink(out);
                }
                let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                t.hashed += counts.hashed;
                t.bytes += counts.bytes;
                t.errors += counts.errors;
                t.vanished += counts.vanished;
            });
        }
    });
    // Entries left unexamined by a cancelled pass leave the backlog with it.
    let taken = next.load(Ordering::Relaxed).min(work.len());
    progress
        .files_pending
        .fetch_sub((work.len() - taken) as u64, Ordering::Relaxed);
    if cancel.load(Ordering::Relaxed) {
        return Err(ScanError::Cancelled);
    }
    Ok(totals.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Builds the record of one entry from the disk. Returns `None` when the entry vanished.
pub fn examine(
    root: &Path,
    entry: &WalkEntry,
    buf: &mut [u8],
    counts: &mut HashCounts,
    progress: &ScanProgress,
) -> Option<FileRecord> {
    let abs = entry.path.to_fs(root);
    let mut record = FileRecord {
        kind: entry.kind,
        fingerprint: entry.fingerprint,
        sha256: None,
        error: None,
        path: entry.path.clone(),
        file_type: String::new(),
        purpose: Purpose::Other,
        description: String::new(),
        component: String::new(),
        symlink_target: None,
        clock: 0,
        dependencies: Vec::new(),
        externals: Vec::new(),
    };
    let mut head: Vec<u8> = Vec::new();
    match entry.kind {
        FileKind::Regular => match hash_file(&abs, buf) {
            Ok(h) => {
                counts.hashed += 1;
                counts.bytes += h.bytes;
                progress.files_hashed.fetch_add(1, Ordering::Relaxed);
                progress.bytes_hashed.fetch_add(h.bytes, Ordering::Relaxed);
                record.sha256 = Some(h.sha256);
                record.fingerprint = h.fingerprint;
                head = h.head;
            }
            Err(HashError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                counts.errors += 1;
                tracing::warn!(path = %record.path, error = %e, "cannot read file");
                record.error = Some(e.to_string());
            }
        },
        FileKind::Symlink => match std::fs::read_link(&abs) {
            Ok(target) => {
                use std::os::unix::ffi::OsStrExt;
                record.symlink_target = Some(target.as_os_str().as_bytes().to_vec());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                counts.errors += 1;
                record.error = Some(e.to_string());
            }
        },
        // FIFOs, sockets and devices are recorded from their stat alone, never opened.
        FileKind::Fifo | FileKind::Socket | FileKind::BlockDevice | FileKind::CharDevice => {}
    }
    let class = classify(&record.path, &head);
    record.file_type = match entry.kind {
        FileKind::Regular => class.file_type,
        FileKind::Symlink => "symlink".to_string(),
        FileKind::Fifo => "fifo".to_string(),
        FileKind::Socket => "socket".to_string(),
        FileKind::BlockDevice | FileKind::CharDevice => "device".to_string(),
    };
    record.purpose = class.purpose;
    record.description = class.description;
    Some(record)
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RecordHead;

    fn entry(path: &str, mtime_ns: i64) -> WalkEntry {
        WalkEntry {
            path: RelPath::parse(path.as_bytes()).unwrap(),
            kind: FileKind::Regular,
            fingerprint: Fingerprint {
                size: 1,
                mtime_ns,
                ctime_ns: mtime_ns,
                ino: 7,
                mode: 0o100644,
            },
        }
    }

    fn head(e: &WalkEntry) -> RecordHead {
        RecordHead {
            kind: e.kind,
            fingerprint: e.fingerprint,
            sha256: Some([1; 32]),
            error: None,
        }
    }

    #[test]
    fn plan_skips_clean_hashes_changed_and_racy_keeps_unreadable() {
        let old = [
            entry("a", 10),
            entry("b", 10),
            entry("racy", 1_000_000_000),
            entry("locked/x", 10),
            entry("gone", 10),
        ];
        let previous: crate::catalog::Heads =
            old.iter().map(|e| (e.path.clone(), head(e))).collect();
        let mut changed = entry("b", 20);
        changed.fingerprint.size = 2;
        let walked = Walked {
            entries: vec![
                entry("a", 10),
                changed,
                entry("racy", 1_000_000_000),
                entry("new", 10),
            ],
            unreadable_dirs: vec![RelPath::parse(b"locked").unwrap()],
            ..Default::default()
        };
        // The previous scan started 50 ms after "racy" was written: within the margin.
        let p = plan(&walked, &previous, Some(1_050_000_000));
        let work: Vec<String> = p.work.iter().map(|e| e.path.to_lossy()).collect();
        assert_eq!(work, vec!["b", "racy", "new"]);
        assert_eq!(p.skipped, 1);
        assert_eq!(p.removed, vec![RelPath::parse(b"gone").unwrap()]);
        // A previous record with an error is always retried.
        let mut with_error = previous.clone();
        if let Some(h) = with_error.get_mut(&RelPath::parse(b"a").unwrap()) {
            h.error = Some("denied".into());
        }
        let p = plan(&walked, &with_error, Some(1_050_000_000));
        assert!(p.work.iter().any(|e| e.path.as_bytes() == b"a"));
    }

    #[test]
    fn a_new_manifest_moves_unchanged_files_to_its_component() {
        let old = [
            entry("repo/pkg/src/lib.rs", 10),
            entry("repo/notes.txt", 10),
        ];
        let previous: crate::catalog::Heads =
            old.iter().map(|e| (e.path.clone(), head(e))).collect();
        let walked = Walked {
            entries: vec![
                entry("repo/pkg/src/lib.rs", 10),
                entry("repo/notes.txt", 10),
                entry("repo/pkg/Cargo.toml", 10),
            ],
            ..Default::default()
        };
        let p = plan(&walked, &previous, Some(i64::MAX / 2));
        // lib.rs moves from the top-level folder "repo" to the new component "repo/pkg";
        // notes.txt stays; Cargo.toml itself is new and gets its component when hashed.
        let moved: Vec<(String, String)> = p
            .recomponent
            .iter()
            .map(|(p, c)| (p.to_lossy(), c.clone()))
            .collect();
        assert_eq!(
            moved,
            vec![("repo/pkg/src/lib.rs".to_string(), "repo/pkg".to_string())]
        );
        assert!(p.manifest_dirs.contains(&b"repo/pkg"[..]));
    }

    #[test]
    fn the_hash_backlog_drains_to_zero_whether_or_not_the_pass_completes() {
        let dir = tempfile::tempdir().unwrap();
        let work: Vec<WalkEntry> = (0..20)
            .map(|i| {
                let name = format!("f{i}");
                std::fs::write(dir.path().join(&name), b"x").unwrap();
                entry(&name, 10)
            })
            .collect();
        let opts = WalkOptions {
            threads: 2,
            ..Default::default()
        };
        let collected = Mutex::new(0usize);
        let sink = |chunk: Vec<FileRecord>| {
            *collected.lock().unwrap() += chunk.len();
        };
        let progress = ScanProgress::default();
        let run = |cancel: bool| {
            hash_all(
                dir.path(),
                &work,
                &crate::catalog::Heads::default(),
                &HashSet::new(),
                &opts,
                &progress,
                &AtomicBool::new(cancel),
                &sink,
            )
        };
        let counts = run(false).unwrap();
        assert_eq!(counts.hashed, 20);
        assert_eq!(*collected.lock().unwrap(), 20);
        assert_eq!(progress.files_pending.load(Ordering::Relaxed), 0);
        // Cancelled before the first entry: nothing is examined and nothing stays pending.
        let cancelled = run(true);
        assert!(matches!(cancelled, Err(ScanError::Cancelled)));
        assert_eq!(progress.files_pending.load(Ordering::Relaxed), 0);
    }
}
