//! The reconciling scan, in three steps that each use every core: a gitignore-aware walk that
//! only stats, a plan that compares each entry's stat fingerprint with the stored record head,
//! and a parallel hash of only the entries that differ, streaming records to a sink as they are
//! made (so the store writes while hashing goes on).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ignore::{WalkBuilder, WalkState};

use super::classify::{classify, component_of, manifest_dirs};
use super::hash::{hash_file, HashError};
use super::record::{FileKind, FileRecord, Fingerprint, Purpose, RecordHead};
use crate::paths::RelPath;

/// Read buffer per hashing thread.
const READ_BUFFER: usize = 256 * 1024;

/// Records handed to the sink at a time.
const SINK_CHUNK: usize = 4096;

/// File timestamps come from the kernel's coarse clock, which may lag the real clock by a tick;
/// the racy-clean cut-off is moved back by this much so a write during a scan is never missed.
pub const COARSE_CLOCK_MARGIN_NS: i64 = 100_000_000;

/// Which entries of a root are catalogued.
#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// Extra gitignore-style globs to leave out (e.g. `*.log`, `build/`).
    pub ignore_globs: Vec<String>,
    /// Absolute paths never catalogued (the daemon's own database and socket).
    pub exclude: Vec<PathBuf>,
    /// Walking and hashing threads; 0 means one per core.
    pub threads: usize,
}

impl WalkOptions {
    fn thread_count(&self) -> usize {
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

/// Lists a root: every entry that is not ignored, with its `lstat` fingerprint.
pub fn walk(
    root: &Path,
    opts: &WalkOptions,
    progress: &ScanProgress,
    cancel: &AtomicBool,
) -> Result<Walked, ScanError> {
    let started_ns = now_ns();
    let meta = std::fs::metadata(root).map_err(|e| ScanError::Root(root.to_path_buf(), e))?;
    if !meta.is_dir() {
        return Err(ScanError::Root(
            root.to_path_buf(),
            std::io::Error::other("not a folder"),
        ));
    }
    let shared = Mutex::new(Walked::default());
    walk_builder(root, opts)?.build_parallel().run(|| {
        let mut visitor = Visitor {
            root,
            progress,
            cancel,
            local: Walked::default(),
            shared: &shared,
        };
        Box::new(move |entry| visitor.visit(entry))
    });
    if cancel.load(Ordering::Relaxed) {
        return Err(ScanError::Cancelled);
    }
    let mut walked = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    walked.started_ns = started_ns;
    Ok(walked)
}

/// One walker thread's state; what it gathered is merged into the shared result in chunks
/// and, for the remainder, when the walker drops it.
struct Visitor<'a> {
    root: &'a Path,
    progress: &'a ScanProgress,
    cancel: &'a AtomicBool,
    local: Walked,
    shared: &'a Mutex<Walked>,
}

impl Visitor<'_> {
    fn visit(&mut self, entry: Result<ignore::DirEntry, ignore::Error>) -> WalkState {
        if self.cancel.load(Ordering::Relaxed) {
            return WalkState::Quit;
        }
        visit(self.root, entry, &mut self.local, self.progress);
        if self.local.entries.len() >= SINK_CHUNK || self.local.dirs.len() >= SINK_CHUNK {
            merge(self.shared, &mut self.local);
        }
        WalkState::Continue
    }
}

impl Drop for Visitor<'_> {
    fn drop(&mut self) {
        merge(self.shared, &mut self.local);
    }
}

fn merge(shared: &Mutex<Walked>, local: &mut Walked) {
    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
    s.entries.append(&mut local.entries);
    s.dirs.append(&mut local.dirs);
    s.unreadable_dirs.append(&mut local.unreadable_dirs);
    s.errors += std::mem::take(&mut local.errors);
}

fn visit(
    root: &Path,
    entry: Result<ignore::DirEntry, ignore::Error>,
    local: &mut Walked,
    progress: &ScanProgress,
) {
    let entry = match entry {
        Ok(e) => e,
        Err(err) => {
            local.errors += 1;
            match error_path(&err) {
                Some(path) => {
                    tracing::warn!(path = %path.display(), error = %err, "cannot list folder; keeping its previous records");
                    if let Ok(rel) = RelPath::from_fs(root, path) {
                        local.unreadable_dirs.push(rel);
                    }
                }
                None => tracing::warn!(error = %err, "walk error"),
            }
            return;
        }
    };
    if entry.depth() == 0 {
        return;
    }
    let Ok(rel) = RelPath::from_fs(root, entry.path()) else {
        return;
    };
    if entry.file_type().is_some_and(|t| t.is_dir()) {
        local.dirs.push(rel);
        return;
    }
    let meta = match std::fs::symlink_metadata(entry.path()) {
        Ok(m) => m,
        // Vanished between listing and stat: it is simply not there any more.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %rel, error = %e, "cannot stat");
            local.errors += 1;
            local.unreadable_dirs.push(rel);
            return;
        }
    };
    let Some(kind) = FileKind::from_file_type(meta.file_type()) else {
        return;
    };
    progress.files_seen.fetch_add(1, Ordering::Relaxed);
    local.entries.push(WalkEntry {
        path: rel,
        kind,
        fingerprint: Fingerprint::of(&meta),
    });
}

/// The gitignore-aware walker for a root, as configured.
pub fn walk_builder(root: &Path, opts: &WalkOptions) -> Result<WalkBuilder, ScanError> {
    let mut overrides = ignore::overrides::OverrideBuilder::new(root);
    for glob in &opts.ignore_globs {
        overrides
            .add(&format!("!{glob}"))
            .map_err(|e| ScanError::Glob {
                glob: glob.clone(),
                message: e.to_string(),
            })?;
    }
    let overrides = overrides.build().map_err(|e| ScanError::Glob {
        glob: opts.ignore_globs.join(", "),
        message: e.to_string(),
    })?;
    let exclude = opts.exclude.clone();
    let mut builder = WalkBuilder::new(root);
    builder
        // Dotfiles (.github/, .eslintrc.json) belong in the catalog; only .git/ is skipped.
        .hidden(false)
        // A .gitignore applies whether or not the tree is a git repository.
        .require_git(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .ignore(true)
        .parents(true)
        .follow_links(false)
        .overrides(overrides)
        .threads(opts.thread_count())
        .filter_entry(move |entry| {
            entry.file_name() != ".git" && !exclude.iter().any(|x| x == entry.path())
        });
    Ok(builder)
}

fn error_path(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Loop { child, .. } => Some(child),
        _ => None,
    }
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
    /// The component roots after this scan.
    pub manifest_dirs: HashSet<Vec<u8>>,
}

/// Compares a walk with the previous record heads. An entry is skipped when its fingerprint and
/// kind are unchanged, its record has no error, and its mtime is older than the previous scan's
/// start (`previous_started_ns`); otherwise it is hashed ("racily clean" files included).
pub fn plan(
    walked: &Walked,
    previous: &HashMap<RelPath, RecordHead>,
    previous_started_ns: Option<i64>,
) -> Plan {
    let racy_cutoff = previous_started_ns
        .map(|ns| ns - COARSE_CLOCK_MARGIN_NS)
        .unwrap_or(i64::MIN);
    let mut plan = Plan::default();
    let mut seen: HashSet<&RelPath> = HashSet::with_capacity(walked.entries.len());
    for entry in &walked.entries {
        seen.insert(&entry.path);
        let unchanged = previous.get(&entry.path).is_some_and(|prev| {
            prev.kind == entry.kind
                && prev.fingerprint == entry.fingerprint
                && prev.error.is_none()
                && entry.fingerprint.mtime_ns < racy_cutoff
        });
        if unchanged {
            plan.skipped += 1;
        } else {
            plan.work.push(entry.clone());
        }
    }
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
    // Records kept under unreadable folders still count as present.
    let retained = previous
        .keys()
        .filter(|p| !seen.contains(p) && plan.removed.binary_search(p).is_err());
    plan.manifest_dirs = manifest_dirs(walked.entries.iter().map(|e| &e.path).chain(retained));
    let before = manifest_dirs(previous.keys());
    if before != plan.manifest_dirs {
        let working: HashSet<&RelPath> = plan.work.iter().map(|e| &e.path).collect();
        for path in walked.entries.iter().map(|e| &e.path) {
            if working.contains(path) {
                continue;
            }
            let old = component_of(path, &before);
            let new = component_of(path, &plan.manifest_dirs);
            if old != new {
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
    previous: &HashMap<RelPath, RecordHead>,
    manifest_dirs: &HashSet<Vec<u8>>,
    opts: &WalkOptions,
    progress: &ScanProgress,
    cancel: &AtomicBool,
    sink: &(dyn Fn(Vec<FileRecord>) + Sync),
) -> Result<HashCounts, ScanError> {
    let next = AtomicUsize::new(0);
    let totals = Mutex::new(HashCounts::default());
    let threads = opts.thread_count().min(work.len().max(1));
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
                    let Some(mut record) = examine(root, entry, &mut buf, &mut counts, progress)
                    else {
                        counts.vanished += 1;
                        continue;
                    };
                    if let Some(prev) = previous.get(&record.path) {
                        // A racily clean file that hashes the same is not a change.
                        if prev.kind == record.kind
                            && prev.fingerprint == record.fingerprint
                            && prev.sha256 == record.sha256
                            && prev.error == record.error
                        {
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
