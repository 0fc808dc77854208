//! The reconciling walk: lists a root (ignore rules applied), compares each entry's stat
//! fingerprint with the previous record, and hashes only what differs, on all cores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ignore::{WalkBuilder, WalkState};

use super::classify::{classify, component_of, manifest_dirs};
use super::hash::hash_file;
use super::record::{FileKind, FileRecord, Fingerprint};
use crate::paths::RelPath;

/// Read buffer per hashing thread.
const READ_BUFFER: usize = 256 * 1024;

/// File timestamps come from the kernel's coarse clock, which may lag the real clock by a tick;
/// the racy-clean cut-off is moved back by this much so a write during a scan is never missed.
const COARSE_CLOCK_MARGIN_NS: i64 = 100_000_000;

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

/// The outcome of one scan: the current records of every catalogued file.
#[derive(Debug, Default)]
pub struct ScanResult {
    pub records: Vec<FileRecord>,
    pub files_hashed: u64,
    pub files_skipped: u64,
    pub bytes_hashed: u64,
    /// Files recorded with an error, plus folders that could not be listed.
    pub errors: u64,
    /// Folders that could not be listed; previous records under them are kept.
    pub unreadable_dirs: Vec<RelPath>,
    /// When the scan started (ns since the epoch), the next scan's racy-clean cut-off.
    pub started_ns: i64,
}

/// Builds the records of a root, reusing `previous` records whose fingerprint is unchanged and
/// whose mtime is older than `previous_started_ns` (files touched during or after the previous
/// scan are "racily clean" and are hashed again).
pub fn scan(
    root: &Path,
    previous: &HashMap<RelPath, FileRecord>,
    previous_started_ns: Option<i64>,
    opts: &WalkOptions,
    progress: &ScanProgress,
    cancel: &AtomicBool,
) -> Result<ScanResult, ScanError> {
    let started_ns = now_ns();
    let meta = std::fs::metadata(root).map_err(|e| ScanError::Root(root.to_path_buf(), e))?;
    if !meta.is_dir() {
        return Err(ScanError::Root(
            root.to_path_buf(),
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
        ));
    }
    let racy_cutoff = previous_started_ns
        .map(|ns| ns - COARSE_CLOCK_MARGIN_NS)
        .unwrap_or(i64::MIN);
    let walker = walk_builder(root, opts)?.build_parallel();
    let shared = Arc::new(Mutex::new(ScanResult::default()));
    walker.run(|| {
        let mut worker = Worker {
            root,
            previous,
            racy_cutoff,
            progress,
            cancel,
            buf: vec![0u8; READ_BUFFER],
            local: ScanResult::default(),
            shared: Arc::clone(&shared),
        };
        Box::new(move |entry| worker.visit(entry))
    });
    if cancel.load(Ordering::Relaxed) {
        return Err(ScanError::Cancelled);
    }
    let mut result = match Arc::try_unwrap(shared) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(arc) => std::mem::take(&mut *arc.lock().unwrap_or_else(|p| p.into_inner())),
    };
    result.started_ns = started_ns;
    assign_components(&mut result.records);
    result.records.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(result)
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
        .threads(if opts.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            opts.threads
        })
        .filter_entry(move |entry| {
            entry.file_name() != ".git" && !exclude.iter().any(|x| x == entry.path())
        });
    Ok(builder)
}

struct Worker<'a> {
    root: &'a Path,
    previous: &'a HashMap<RelPath, FileRecord>,
    racy_cutoff: i64,
    progress: &'a ScanProgress,
    cancel: &'a AtomicBool,
    buf: Vec<u8>,
    local: ScanResult,
    shared: Arc<Mutex<ScanResult>>,
}

impl Worker<'_> {
    fn visit(&mut self, entry: Result<ignore::DirEntry, ignore::Error>) -> WalkState {
        if self.cancel.load(Ordering::Relaxed) {
            return WalkState::Quit;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                self.walk_error(err);
                return WalkState::Continue;
            }
        };
        if entry.depth() == 0 {
            return WalkState::Continue;
        }
        let Ok(rel) = RelPath::from_fs(self.root, entry.path()) else {
            return WalkState::Continue;
        };
        let meta = match std::fs::symlink_metadata(entry.path()) {
            Ok(m) => m,
            // Vanished between listing and stat: it is simply not there any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return WalkState::Continue,
            Err(e) => {
                tracing::warn!(path = %rel, error = %e, "cannot stat");
                self.local.errors += 1;
                self.local.unreadable_dirs.push(rel);
                return WalkState::Continue;
            }
        };
        let Some(kind) = FileKind::from_file_type(meta.file_type()) else {
            return WalkState::Continue;
        };
        self.progress.files_seen.fetch_add(1, Ordering::Relaxed);
        let record = examine(
            self.root,
            rel,
            kind,
            Fingerprint::of(&meta),
            self.previous,
            self.racy_cutoff,
            &mut self.buf,
            &mut self.local,
            self.progress,
        );
        if let Some(record) = record {
            self.local.records.push(record);
        }
        WalkState::Continue
    }

    fn walk_error(&mut self, err: ignore::Error) {
        self.local.errors += 1;
        match error_path(&err) {
            Some(path) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot list folder; keeping its previous records");
                if let Ok(rel) = RelPath::from_fs(self.root, path) {
                    self.local.unreadable_dirs.push(rel);
                }
            }
            None => tracing::warn!(error = %err, "walk error"),
        }
    }
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        let local = std::mem::take(&mut self.local);
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.records.extend(local.records);
        shared.files_hashed += local.files_hashed;
        shared.files_skipped += local.files_skipped;
        shared.bytes_hashed += local.bytes_hashed;
        shared.errors += local.errors;
        shared.unreadable_dirs.extend(local.unreadable_dirs);
    }
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

/// Builds the record of one entry, reusing the previous record when its fingerprint says the
/// content cannot have changed. Returns `None` when the entry vanished.
#[allow(clippy::too_many_arguments)] // One call site per pipeline; a struct would only rename them.
pub fn examine(
    root: &Path,
    rel: RelPath,
    kind: FileKind,
    fingerprint: Fingerprint,
    previous: &HashMap<RelPath, FileRecord>,
    racy_cutoff: i64,
    buf: &mut [u8],
    counters: &mut ScanResult,
    progress: &ScanProgress,
) -> Option<FileRecord> {
    if let Some(prev) = previous.get(&rel) {
        if prev.kind == kind
            && prev.fingerprint == fingerprint
            && prev.error.is_none()
            && fingerprint.mtime_ns < racy_cutoff
        {
            counters.files_skipped += 1;
            return Some(prev.clone());
        }
    }
    let abs = rel.to_fs(root);
    let mut record = FileRecord {
        path: rel,
        kind,
        fingerprint,
        file_type: String::new(),
        purpose: super::record::Purpose::Other,
        description: String::new(),
        component: String::new(),
        sha256: None,
        symlink_target: None,
        error: None,
        clock: 0,
        dependencies: Vec::new(),
        externals: Vec::new(),
    };
    let mut head: Vec<u8> = Vec::new();
    match kind {
        FileKind::Regular => match hash_file(&abs, buf) {
            Ok(h) => {
                counters.files_hashed += 1;
                counters.bytes_hashed += h.bytes;
                progress.files_hashed.fetch_add(1, Ordering::Relaxed);
                progress.bytes_hashed.fetch_add(h.bytes, Ordering::Relaxed);
                record.sha256 = Some(h.sha256);
                record.fingerprint = h.fingerprint;
                head = h.head;
            }
            Err(super::hash::HashError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return None;
            }
            Err(e) => {
                counters.errors += 1;
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
                counters.errors += 1;
                record.error = Some(e.to_string());
            }
        },
        // FIFOs, sockets and devices are recorded from their stat alone, never opened.
        FileKind::Fifo | FileKind::Socket | FileKind::BlockDevice | FileKind::CharDevice => {}
    }
    let class = classify(&record.path, &head);
    record.file_type = match kind {
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

/// Sets every record's component from the manifests present among the records.
pub fn assign_components(records: &mut [FileRecord]) {
    let dirs = manifest_dirs(records.iter().map(|r| &r.path));
    for r in records.iter_mut() {
        r.component = component_of(&r.path, &dirs);
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
