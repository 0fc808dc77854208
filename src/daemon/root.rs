//! One watched root: its records, its single writer, and its reconcile.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::catalog::{self, FileRecord, ScanProgress, ScanReport, WalkOptions};
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
    let meta = store.meta()?;
    let previous_started = meta.last_scan.as_ref().map(|s| s.started_ns);
    // Load the stored record heads while the walk runs: both are needed only by the plan.
    let (previous, walked) = std::thread::scope(|scope| {
        let heads = scope.spawn(|| {
            let t = Instant::now();
            let heads = store.load_heads();
            tracing::debug!(ms = t.elapsed().as_millis() as u64, "record heads loaded");
            heads
        });
        let t_walk = Instant::now();
        let walked = catalog::walk(path, opts, progress, cancel);
        tracing::debug!(ms = t_walk.elapsed().as_millis() as u64, "walked");
        let heads = heads.join().unwrap_or_else(|_| {
            Err(crate::store::StoreError::Sled(
                "loading records panicked".into(),
            ))
        });
        (heads, walked)
    });
    let (previous, walked) = (previous?, walked?);
    let t_walk = t0.elapsed();
    let plan = catalog::plan(&walked, &previous, previous_started);
    tracing::debug!(
        ms = t0.elapsed().as_millis() as u64,
        work = plan.work.len(),
        "planned"
    );
    let clock = meta.clock + 1;

    // Records are written by one writer thread while the hashing threads go on.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<FileRecord>>(4);
    let previous = &previous;
    let (counts, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut added = 0u64;
            let mut modified = 0u64;
            for mut chunk in rx {
                for rec in &chunk {
                    if previous.contains_key(&rec.path) {
                        modified += 1;
                    } else {
                        added += 1;
                    }
                }
                store.put_records(&mut chunk, clock)?;
            }
            Ok::<_, DaemonError>((added, modified))
        });
        let sink = move |chunk: Vec<FileRecord>| {
            // A failed writer ends the channel; its error is reported below.
            let _ = tx.send(chunk);
        };
        let counts = catalog::hash_all(
            path,
            &plan.work,
            previous,
            &plan.manifest_dirs,
            opts,
            progress,
            cancel,
            &sink,
        );
        drop(sink);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(DaemonError::Internal("catalog writer panicked".into())));
        (counts, written)
    });
    let counts = counts?;
    let (added, modified) = written?;
    let changed = added + modified + plan.removed.len() as u64 + plan.recomponent.len() as u64;
    let report = ScanReport {
        started_ns: walked.started_ns,
        duration_ms: t0.elapsed().as_millis() as u64,
        files_seen: walked.entries.len() as u64,
        files_hashed: counts.hashed,
        files_skipped: plan.skipped,
        files_added: added,
        files_modified: modified,
        files_removed: plan.removed.len() as u64,
        bytes_hashed: counts.bytes,
        errors: walked.errors + counts.errors,
        reason,
    };
    // The clock ticks only when something changed.
    let final_clock = if changed > 0 { clock } else { meta.clock };
    store.commit(
        final_clock,
        &plan.removed,
        &plan.recomponent,
        Some(report.clone()),
    )?;
    tracing::info!(
        root = %path.display(),
        files = report.files_seen,
        hashed = report.files_hashed,
        skipped = report.files_skipped,
        added = report.files_added,
        modified = report.files_modified,
        removed = report.files_removed,
        errors = report.errors,
        clock = final_clock,
        walk_ms = t_walk.as_millis() as u64,
        ms = report.duration_ms,
        reason = %report.reason,
        "reconciled"
    );
    Ok(report)
}
