//! One watched root: its records, its single writer, and its reconcile.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::catalog::classify::MANIFESTS;
use crate::catalog::rules::{IgnoreRules, Layer};
use crate::catalog::{self, ChangeBatch, FileRecord, ScanProgress, ScanReport, WalkOptions};
use crate::metrics::RootMetrics;
use crate::paths::RelPath;
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
    /// Set until the catch-up reconcile after start-up has run; synced queries wait for it.
    pub catching_up: AtomicBool,
    /// Woken when the catch-up reconcile is done.
    pub caught_up: tokio::sync::Notify,
    /// The live dependency graph (derived; rebuilt after each full reconcile).
    pub graph: super::depgraph::RootGraph,
    /// What happened to this root: events, batches, lag, reconciles, hashing.
    pub metrics: RootMetrics,
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
            catching_up: AtomicBool::new(false),
            caught_up: tokio::sync::Notify::new(),
            graph: super::depgraph::RootGraph::default(),
            metrics: RootMetrics::default(),
        }
    }

    /// How many records the root has and their total size: the store's counts, kept
    /// current by every write (counted from the records only the first time).
    pub fn totals(&self) -> Result<(u64, u64), crate::store::StoreError> {
        let counts = self.store.counts()?;
        Ok((counts.files, counts.bytes))
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
        // Cancelled while waiting for the writer (a rescan whose client left): no work at all.
        if cancel.load(Ordering::Relaxed) {
            return Err(DaemonError::Scan(catalog::ScanError::Cancelled));
        }
        self.metrics.count_reconcile(reason);
        let progress = Arc::new(ScanProgress::default());
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&progress);
        self.scanning.store(true, Ordering::Relaxed);
        let root = Arc::clone(self);
        let opts = opts.clone();
        let reason = reason.to_string();
        let outcome = tokio::task::spawn_blocking(move || {
            reconcile_blocking(&root.path, &root.store, &opts, &progress, &cancel, reason)
                .map(|(report, _)| report)
        })
        .await;
        self.scanning.store(false, Ordering::Relaxed);
        match outcome {
            Ok(Ok(report)) => {
                self.metrics
                    .record_hashed(report.files_hashed, report.bytes_hashed);
                if report.changed_files() {
                    // Still under the writer: a synced query after this reconcile waits for
                    // the graph rebuild that follows it.
                    self.graph.request_rebuild();
                }
                Ok(report)
            }
            Ok(Err(e)) => Err(e),
            Err(join) => Err(DaemonError::Internal(format!("scan task failed: {join}"))),
        }
    }

    /// Waits until the catch-up reconcile after start-up (if any) has run.
    pub async fn wait_caught_up(&self) {
        loop {
            let notified = self.caught_up.notified();
            if !self.catching_up.load(Ordering::Acquire) {
                return;
            }
            notified.await;
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
) -> Result<(ScanReport, Vec<RelPath>), DaemonError> {
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
    // A catch-up or a poll that found nothing leaves the previous scan's figures (and its
    // racy-clean cut-off, the earlier and so the safer one) as the last scan: it writes
    // nothing, so polled folders cost no writes while nothing changes.
    let keep = !(matches!(report.reason.as_str(), "catch-up" | "poll") && changed == 0);
    store.commit(
        final_clock,
        &plan.removed,
        &plan.recomponent,
        keep.then(|| report.clone()),
    )?;
    // One flush per reconcile that changed something: a crash right after it need not hash
    // the tree again. (An unchanged tree has nothing worth an fsync.)
    if changed > 0 {
        store.flush()?;
    }
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
    Ok((report, walked.dirs))
}

/// What applying one batch of watcher events did.
#[derive(Debug, Default)]
pub struct EventOutcome {
    /// The changes applied (none when the events changed nothing).
    pub batch: Option<ChangeBatch>,
    /// Folders that appeared (already watched while being listed).
    pub new_dirs: Vec<PathBuf>,
    /// Folders that are gone.
    pub gone_dirs: Vec<PathBuf>,
    /// An ignore file or a manifest changed: the whole root must be reconciled.
    pub needs_reconcile: bool,
    /// Distinct paths the events named.
    pub paths: u64,
    /// What was hashed to build the new records.
    pub hashed: catalog::HashCounts,
}

impl Root {
    /// Applies the paths that watcher events named, in one atomic batch. Events are hints:
    /// each path is stat'ed, folders that appeared are listed (their files in a new folder
    /// are often not reported), files named are hashed again.
    pub async fn apply_events(
        self: &Arc<Self>,
        paths: Vec<PathBuf>,
        opts: &WalkOptions,
    ) -> Result<EventOutcome, DaemonError> {
        let _writer = self.writer.lock().await;
        let root = Arc::clone(self);
        let opts = opts.clone();
        let outcome =
            tokio::task::spawn_blocking(move || apply_events_blocking(&root, paths, &opts))
                .await
                .map_err(|e| DaemonError::Internal(format!("event task failed: {e}")))??;
        self.metrics
            .record_hashed(outcome.hashed.hashed, outcome.hashed.bytes);
        Ok(outcome)
    }
}

fn apply_events_blocking(
    root: &Root,
    mut paths: Vec<PathBuf>,
    opts: &WalkOptions,
) -> Result<EventOutcome, DaemonError> {
    use std::collections::{BTreeMap, HashMap};
    paths.sort();
    paths.dedup();
    let n_paths = paths.len() as u64;
    let rules = IgnoreRules::new(&root.path, &opts.ignore_globs, &opts.exclude)?;
    let mut layers: HashMap<Vec<u8>, Option<Arc<Layer>>> = HashMap::new();
    let mut manifests: HashMap<Vec<u8>, bool> = HashMap::new();
    // New or changed records, each with whether it had a record before (added vs modified).
    // Each new record with the clock of the stored record it replaces (None: there was none).
    let mut upserts: BTreeMap<RelPath, (FileRecord, Option<u64>)> = BTreeMap::new();
    // Stored records that are gone, kept whole: a rename is told by comparing them with the
    // additions of the same batch.
    let mut removed: BTreeMap<RelPath, FileRecord> = BTreeMap::new();
    let mut outcome = EventOutcome::default();
    let progress = ScanProgress::default();
    let never = AtomicBool::new(false);
    let mut counts = catalog::HashCounts::default();
    let mut buf = vec![0u8; 256 * 1024];
    let racy_cutoff = catalog::scan::now_ns() - catalog::scan::COARSE_CLOCK_MARGIN_NS;

    let remove_under =
        |rel: &RelPath, removed: &mut BTreeMap<RelPath, FileRecord>| -> Result<(), DaemonError> {
            for rec in root.store.files_under(Some(rel)) {
                let rec = rec?;
                removed.insert(rec.path.clone(), rec);
            }
            Ok(())
        };
    for abs in paths {
        let Ok(rel) = RelPath::from_fs(&root.path, &abs) else {
            continue;
        };
        let name = rel.file_name();
        if name == b".gitignore"
            || name == b".ignore"
            || MANIFESTS.iter().any(|m| m.as_bytes() == name)
        {
            outcome.needs_reconcile = true;
        }
        let parent = rel.ancestors().next().map(<[u8]>::to_vec);
        let layer = layers
            .entry(parent.clone().unwrap_or_default())
            .or_insert_with(|| rules.layer_of(&root.path, parent.as_deref()))
            .clone();
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                remove_under(&rel, &mut removed)?;
                upserts.retain(|p, _| !p.starts_with_dir(rel.as_bytes()));
                outcome.gone_dirs.push(abs);
                continue;
            }
            Err(e) => {
                tracing::warn!(path = %rel, error = %e, "cannot stat an event path");
                continue;
            }
        };
        let Some(layer) = layer else {
            // Its folder is ignored or gone: nothing under it is catalogued.
            remove_under(&rel, &mut removed)?;
            continue;
        };
        let is_dir = meta.is_dir();
        if rules.is_ignored(&layer, &abs, is_dir) {
            remove_under(&rel, &mut removed)?;
            continue;
        }
        let entries = if is_dir {
            let walked = catalog::scan::walk_subtree(
                &rules,
                (abs.clone(), Some(rel.clone()), layer),
                1,
                &progress,
                &never,
                opts.on_dir.as_deref(),
            )?;
            outcome.new_dirs.push(abs.clone());
            outcome
                .new_dirs
                .extend(walked.dirs.iter().map(|d| d.to_fs(&root.path)));
            let present: std::collections::HashSet<&RelPath> =
                walked.entries.iter().map(|e| &e.path).collect();
            for rec in root.store.files_under(Some(&rel)) {
                let rec = rec?;
                let under_unreadable = walked
                    .unreadable_dirs
                    .iter()
                    .any(|d| rec.path.starts_with_dir(d.as_bytes()));
                if !present.contains(&rec.path) && !under_unreadable {
                    removed.insert(rec.path.clone(), rec);
                }
            }
            walked.entries
        } else {
            let Some(kind) = catalog::FileKind::from_file_type(meta.file_type()) else {
                continue;
            };
            vec![catalog::WalkEntry {
                path: rel.clone(),
                kind,
                fingerprint: catalog::Fingerprint::of(&meta),
            }]
        };
        for entry in entries {
            let stored = root.store.get(&entry.path)?;
            // A listed folder's unchanged files are skipped; a file an event named is always
            // read again (a rewrite within one timestamp tick keeps its fingerprint).
            if is_dir {
                if let Some(s) = &stored {
                    if s.head()
                        .still_valid(entry.kind, &entry.fingerprint, racy_cutoff)
                    {
                        continue;
                    }
                }
            }
            let Some(mut record) =
                catalog::scan::examine(&root.path, &entry, &mut buf, &mut counts, &progress)
            else {
                remove_under(&entry.path, &mut removed)?;
                continue;
            };
            record.component = component_on_disk(&root.path, &record.path, &mut manifests);
            if let Some(s) = &stored {
                record.dependencies = s.dependencies.clone();
                record.externals = s.externals.clone();
                let mut same = s.clone();
                same.clock = 0;
                if same == record {
                    removed.remove(&record.path);
                    continue;
                }
            }
            removed.remove(&record.path);
            upserts.insert(
                record.path.clone(),
                (record, stored.as_ref().map(|s| s.clock)),
            );
        }
    }
    for p in removed.keys() {
        upserts.remove(p);
    }
    // Every path in `removed` came from a stored record, so each is a real removal.
    let (removed, gone): (Vec<RelPath>, Vec<FileRecord>) = removed.into_iter().unzip();
    outcome.paths = n_paths;
    outcome.hashed = counts;
    if upserts.is_empty() && removed.is_empty() {
        return Ok(outcome);
    }
    let changes = catalog::ChangeSet {
        upserts: upserts.values().map(|(rec, _)| rec.clone()).collect(),
        replaced_clocks: upserts.values().map(|(_, replaced)| *replaced).collect(),
        removed: removed.clone(),
        removed_clocks: gone.iter().map(|r| r.clock).collect(),
        added: 0,
        modified: 0,
    };
    let clock = root.store.apply(changes, None)?;
    let mut batch = ChangeBatch {
        root_id: root.id.clone(),
        clock,
        removed,
        ..Default::default()
    };
    for (mut rec, replaced) in upserts.into_values() {
        let existed = replaced.is_some();
        rec.clock = clock;
        if existed {
            batch.modified.push(rec);
        } else {
            batch.added.push(rec);
        }
    }
    batch.renamed = catalog::pair_renames(&gone, &batch.added);
    tracing::debug!(
        root = %root.path.display(),
        clock,
        added = batch.added.len(),
        modified = batch.modified.len(),
        removed = batch.removed.len(),
        renamed = batch.renamed.len(),
        "applied events"
    );
    outcome.batch = Some(batch);
    Ok(outcome)
}

/// The component of a file from the manifests on disk: its nearest ancestor folder holding
/// one, else its top-level folder. `cache` remembers which folders hold a manifest.
fn component_on_disk(
    root: &Path,
    path: &RelPath,
    cache: &mut std::collections::HashMap<Vec<u8>, bool>,
) -> String {
    use std::os::unix::ffi::OsStrExt;
    catalog::classify::component_where(path, |dir| {
        *cache.entry(dir.to_vec()).or_insert_with(|| {
            let folder = root.join(std::ffi::OsStr::from_bytes(dir));
            MANIFESTS.iter().any(|m| folder.join(m).is_file())
        })
    })
}
