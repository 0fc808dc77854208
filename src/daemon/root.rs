//! One watched root: its records, its single writer, and its reconcile.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::catalog::{self, ScanProgress, ScanReport, WalkOptions};
use crate::store::RootStore;

use super::DaemonError;

/// A watched root.
pub struct Root {
    pub id: String,
    pub path: PathBuf,
    pub store: RootStore,
    /// Held by whoever applies batches to this root: there is one writer at a time.
    writer: tokio::sync::Mutex<()>,
    /// Counters of the scan in progress (or of the last one).
    progress: Mutex<Arc<ScanProgress>>,
    scanning: AtomicBool,
}

impl Root {
    /// Wraps a root's store.
    pub fn new(id: String, path: PathBuf, store: RootStore) -> Root {
        Root {
            id,
            path,
            store,
            writer: tokio::sync::Mutex::new(()),
            progress: Mutex::new(Arc::new(ScanProgress::default())),
            scanning: AtomicBool::new(false),
        }
    }

    /// Counters of the scan in progress (or of the last one).
    pub fn progress(&self) -> Arc<ScanProgress> {
        Arc::clone(&self.progress.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether a scan is running now.
    pub fn is_scanning(&self) -> bool {
        self.scanning.load(Ordering::Relaxed)
    }

    /// "ready", "scanning" or "missing".
    pub fn state(&self) -> &'static str {
        if self.is_scanning() {
            "scanning"
        } else if self.path.is_dir() {
            "ready"
        } else {
            "missing"
        }
    }

    /// Brings the catalog in line with the disk: stat-compare every entry, hash what differs,
    /// apply the differences in one atomic batch.
    pub async fn reconcile(
        self: &Arc<Self>,
        reason: &str,
        opts: &WalkOptions,
        cancel: Arc<AtomicBool>,
    ) -> Result<ScanReport, DaemonError> {
        let _writer = self.writer.lock().await;
        let progress = Arc::new(ScanProgress::default());
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&progress);
        self.scanning.store(true, Ordering::Relaxed);
        let root = Arc::clone(self);
        let opts = opts.clone();
        let reason = reason.to_string();
        let outcome = tokio::task::spawn_blocking(move || {
            reconcile_blocking(&root.path, &root.store, &opts, &progress, &cancel, reason)
        })
        .await;
        self.scanning.store(false, Ordering::Relaxed);
        match outcome {
            Ok(r) => r,
            Err(join) => Err(DaemonError::Internal(format!("scan task failed: {join}"))),
        }
    }

    /// Waits until no batch is being applied, then holds the writer (used to stop a root).
    pub async fn lock_writer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }
}

fn reconcile_blocking(
    path: &Path,
    store: &RootStore,
    opts: &WalkOptions,
    progress: &ScanProgress,
    cancel: &AtomicBool,
    reason: String,
) -> Result<ScanReport, DaemonError> {
    let t0 = Instant::now();
    let previous = store.load_all()?;
    let meta = store.meta()?;
    let previous_started = meta.last_scan.as_ref().map(|s| s.started_ns);
    let result = catalog::scan(path, &previous, previous_started, opts, progress, cancel)?;
    let changes = catalog::diff(&previous, &result);
    let report = ScanReport {
        started_ns: result.started_ns,
        duration_ms: t0.elapsed().as_millis() as u64,
        files_seen: result.records.len() as u64,
        files_hashed: result.files_hashed,
        files_skipped: result.files_skipped,
        files_added: changes.added,
        files_modified: changes.modified,
        files_removed: changes.removed.len() as u64,
        bytes_hashed: result.bytes_hashed,
        errors: result.errors,
        reason,
    };
    let clock = store.apply(changes, Some(report.clone()))?;
    tracing::info!(
        root = %path.display(),
        files = report.files_seen,
        hashed = report.files_hashed,
        skipped = report.files_skipped,
        added = report.files_added,
        modified = report.files_modified,
        removed = report.files_removed,
        errors = report.errors,
        clock,
        ms = report.duration_ms,
        reason = %report.reason,
        "reconciled"
    );
    Ok(report)
}
