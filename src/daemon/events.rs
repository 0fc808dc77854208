//! The event pipeline: coalesces watcher events into batches per root, applies them through
//! each root's writer, answers sync cookies once everything before them is applied, turns a
//! queue overflow into a reconcile, and tells subscribers what changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{DaemonError, DaemonState};
use crate::watch::WatchMsg;

/// Read-your-writes: a cookie file created in the daemon's own folder, watched by the same
/// inotify instance as every root, proves that all events queued before it have been read.
pub struct CookieSync {
    dir: PathBuf,
    next: AtomicU64,
    waiters: Mutex<HashMap<PathBuf, oneshot::Sender<()>>>,
}

impl CookieSync {
    /// Cookies in `dir` (created private; leftovers of a crash are removed).
    pub fn new(dir: PathBuf) -> Result<CookieSync, DaemonError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                DaemonError::Internal(format!(
                    "cannot create cookie folder {}: {e}",
                    dir.display()
                ))
            })?;
        if let Ok(list) = std::fs::read_dir(&dir) {
            for entry in list.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(CookieSync {
            dir,
            next: AtomicU64::new(1),
            waiters: Mutex::new(HashMap::new()),
        })
    }

    /// The cookie folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn is_cookie(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.as_path())
    }

    fn seen(&self, path: &Path) {
        if let Some(tx) = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(path)
        {
            let _ = tx.send(());
        }
    }

    /// Waits until every change made before this call has been applied, or fails with
    /// [`DaemonError::SyncTimeout`].
    pub async fn sync(&self, timeout: Duration) -> Result<(), DaemonError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("cookie-{}-{n}", std::process::id()));
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.clone(), tx);
        let created = std::fs::File::create(&path);
        let outcome = match created {
            Ok(_) => tokio::time::timeout(timeout, rx).await,
            Err(e) => {
                self.waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&path);
                return Err(DaemonError::Internal(format!(
                    "cannot create sync cookie {}: {e}",
                    path.display()
                )));
            }
        };
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&path);
        let _ = std::fs::remove_file(&path);
        match outcome {
            Ok(Ok(())) => Ok(()),
            _ => Err(DaemonError::SyncTimeout(timeout)),
        }
    }
}

/// Runs the pipeline until shutdown.
pub fn spawn(
    state: Arc<DaemonState>,
    mut rx: mpsc::UnboundedReceiver<WatchMsg>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pending: Vec<PathBuf> = Vec::new();
        let mut cookies: Vec<PathBuf> = Vec::new();
        let mut overflow = false;
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        // Paths of batches the store refused, kept (never dropped) and tried again at
        // `retry_at`, with a backoff that doubles up to RETRY_MAX.
        let mut retry: Vec<PathBuf> = Vec::new();
        let mut retry_at: Option<Instant> = None;
        let mut backoff = RETRY_FIRST;
        loop {
            let deadline = match first {
                Some(f) => (last + state.tuning.settle).min(f + state.tuning.max_batch_delay),
                None => Instant::now() + Duration::from_secs(3600),
            };
            let deadline = match retry_at {
                Some(r) => deadline.min(r),
                None => deadline,
            };
            let mut due = false;
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    let mut handle = |msg: WatchMsg, pending: &mut Vec<PathBuf>, cookies: &mut Vec<PathBuf>| match msg {
                        WatchMsg::Overflow => {
                            state.metrics.overflows.inc();
                            overflow = true;
                        }
                        WatchMsg::Paths(paths) => {
                            state.metrics.events_received.inc();
                            for p in paths {
                                if state.cookies.is_cookie(&p) {
                                    cookies.push(p);
                                } else {
                                    pending.push(p);
                                }
                            }
                        }
                    };
                    handle(msg, &mut pending, &mut cookies);
                    // Take whatever else is already queued, so a burst becomes one batch.
                    while let Ok(more) = rx.try_recv() {
                        handle(more, &mut pending, &mut cookies);
                    }
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                }
                _ = tokio::time::sleep_until(deadline), if first.is_some() || retry_at.is_some() => due = true,
            }
            if due || !cookies.is_empty() || overflow {
                let since = first.unwrap_or_else(Instant::now);
                let mut paths = std::mem::take(&mut pending);
                // Refused paths go with the next batch once their retry is due; until then
                // (and while the store is known to fail) they wait, and synced queries are
                // refused by the store's health, never answered without them.
                let retry_due = retry_at.is_some_and(|r| r <= Instant::now());
                if !retry.is_empty() && (retry_due || state.health.is_healthy()) {
                    paths.append(&mut retry);
                    retry_at = None;
                }
                if !state.health.is_healthy() && !retry_due && !paths.is_empty() {
                    retry.append(&mut paths);
                }
                let refused = apply(&state, paths, since).await;
                if refused.is_empty() {
                    if retry.is_empty() {
                        backoff = RETRY_FIRST;
                    }
                } else {
                    tracing::warn!(
                        paths = refused.len(),
                        retry_ms = backoff.as_millis() as u64,
                        "the store refused a batch: keeping it to try again"
                    );
                    retry.extend(refused);
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
                if !retry.is_empty() {
                    // A file changed again and again during a long failure is kept once.
                    retry.sort_unstable();
                    retry.dedup();
                    if retry_at.is_none() {
                        retry_at = Some(Instant::now() + backoff);
                    }
                }
                if std::mem::take(&mut overflow) {
                    tracing::warn!("inotify queue overflowed: reconciling every root");
                    for root in state.roots() {
                        if let Err(e) = state.reconcile_root(&root, "overflow").await {
                            tracing::error!(root = %root.path.display(), error = %e, "reconcile after overflow failed");
                        }
                    }
                }
                for c in cookies.drain(..) {
                    state.cookies.seen(&c);
                }
                first = None;
            }
        }
    })
}

/// First wait before a batch the store refused is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between tries of a refused batch.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Applies pending paths, grouped by root; `first_event` is when the first of them arrived.
/// Returns the paths of the batches the store refused (to be tried again).
async fn apply(
    state: &Arc<DaemonState>,
    pending: Vec<PathBuf>,
    first_event: Instant,
) -> Vec<PathBuf> {
    let mut refused = Vec::new();
    if pending.is_empty() {
        return refused;
    }
    let roots = state.roots();
    let mut by_root: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for p in pending {
        if let Some(root) = roots.iter().find(|r| p.starts_with(&r.path)) {
            by_root.entry(root.id.clone()).or_default().push(p);
        }
    }
    for root in roots {
        let Some(paths) = by_root.remove(&root.id) else {
            continue;
        };
        match root.apply_events(paths.clone(), &state.walk).await {
            Ok(outcome) => {
                root.metrics
                    .record_batch(outcome.paths, first_event.elapsed());
                if let Some(w) = state.watcher() {
                    for d in &outcome.gone_dirs {
                        w.forget(d);
                    }
                }
                if let Some(batch) = outcome.batch {
                    let upserted: Vec<_> = batch
                        .added
                        .iter()
                        .chain(&batch.modified)
                        .map(|r| r.path.clone())
                        .collect();
                    let removed = batch.removed.clone();
                    let r = Arc::clone(&root);
                    // The graph follows the catalog before anyone hears of the batch.
                    let _ = tokio::task::spawn_blocking(move || {
                        r.graph.apply(&r.path, &upserted, &removed)
                    })
                    .await;
                    state.publish(batch);
                    state.catalog_written();
                }
                if outcome.needs_reconcile {
                    if let Err(e) = state
                        .reconcile_root(&root, "ignore-or-manifest-change")
                        .await
                    {
                        tracing::error!(root = %root.path.display(), error = %e, "reconcile failed");
                    }
                }
            }
            Err(e) if state.note_error(&e) => {
                tracing::error!(root = %root.path.display(), error = %e, "the store refused a batch");
                refused.extend(paths);
            }
            Err(e) => {
                tracing::error!(root = %root.path.display(), error = %e, "applying events failed")
            }
        }
    }
    refused
}

/// Reconciles the roots that have polled folders (no inotify watch could be had), every
/// `period` while there are any, until shutdown. While every folder is watched it sleeps
/// until one is polled, so an idle daemon is not woken.
pub fn spawn_poller(state: Arc<DaemonState>, period: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(w) = state.watcher().cloned() else {
            return;
        };
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = w.wait_for_polled() => {}
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
            let polled = w.polled();
            for root in state.roots() {
                if polled.iter().any(|d| d.starts_with(&root.path)) {
                    if let Err(e) = state.reconcile_root(&root, "poll").await {
                        tracing::warn!(root = %root.path.display(), error = %e, "poll reconcile failed");
                    }
                }
            }
        }
    })
}
