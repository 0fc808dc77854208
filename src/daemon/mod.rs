//! The daemon: opens the store, reconciles every root, serves gRPC on the Unix socket (and TCP
//! when asked), talks to systemd, and shuts down cleanly on SIGTERM/SIGINT.

pub mod depgraph;
pub mod events;
pub mod figures;
pub mod health;
pub mod listen;
pub mod memory;
pub mod recovery;
pub mod root;
pub mod systemd;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::catalog::{ScanError, WalkOptions};
use crate::store::{RootEntry, Store, StoreError};
pub use root::Root;

/// How long shutdown waits for open streams before closing anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Why the daemon failed or refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("cannot listen on {0}: {1}")]
    Socket(PathBuf, String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, String),
    #[error("cannot serve metrics on {0}: {1} (check --metrics HOST:PORT)")]
    Metrics(SocketAddr, String),
    #[error("token file {0}: {1}")]
    Token(PathBuf, String),
    #[error(
        "--listen needs --token-file or access.tokens: TCP clients must present a bearer token"
    )]
    TokenRequired,
    #[error(
        "cannot watch {0}: it is outside the folders roots may be in (access.watch_roots: {1})"
    )]
    OutsideWatchRoots(PathBuf, String),
    #[error("access.watch_roots: {0}: {1}")]
    WatchRoots(PathBuf, String),
    #[error("cannot watch {0}: {1}")]
    BadRoot(PathBuf, String),
    #[error("no watched root matches {0:?}; `wfdb roots` lists them")]
    UnknownRoot(String),
    #[error("{0} roots are watched; name one with --root (`wfdb roots` lists them)")]
    AmbiguousRoot(usize),
    #[error("no root is watched; add one with `wfdb watch PATH`")]
    NoRoots,
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("could not prove within {0:?} that every change before this query was applied (the watcher is behind or stuck); retry, or ask without sync for a possibly stale answer")]
    SyncTimeout(Duration),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the database cannot be written (since {since}): {cause}; answers that must be current are refused until it can: free space or fix the folder, the daemon recovers by itself")]
    StoreFailing { cause: String, since: String },
    #[error("the database must be opened anew after a failure that the store cannot recover from in this process ({0}); the daemon stops with status 75 so that its supervisor restarts it")]
    StoreRestart(String),
    #[error("the dependency graph of {0} is still being built (waited {1:?}); retry in a moment (an unsynced query answers at once, with its dependencies marked pending)")]
    GraphBuilding(PathBuf, Duration),
    #[error("the dependency graph of {0} could not be built: {1}; `wfdb scan` builds it again")]
    GraphFailed(PathBuf, String),
}

/// A future the daemon awaits, boxed so the edges it is handed need not be named here.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The edge that serves the daemon's state to clients (the gRPC services), handed to
/// [`serve`] by the binary: the daemon starts it once ready and never names it, so `rpc`
/// depends on `daemon` and not the other way round.
pub trait Frontend: Send {
    /// The request path of every method it serves (the per-method metrics are made up front).
    fn methods(&self) -> Vec<String>;
    /// Starts serving `state` on the bound sockets; the future it gives back ends once every
    /// server has stopped (after the shutdown token is cancelled).
    fn start(
        self: Box<Self>,
        state: Arc<DaemonState>,
        uds: tokio::net::UnixListener,
        tcp: Option<tokio::net::TcpListener>,
        access: Arc<crate::access::AccessPolicy>,
    ) -> BoxFuture<Result<BoxFuture<()>, DaemonError>>;
}

/// What `wfdb serve` was asked to do.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Roots named on the command line (added to the persisted ones).
    pub roots: Vec<PathBuf>,
    pub db: PathBuf,
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
    pub ignore_globs: Vec<String>,
    pub cache_bytes: u64,
    /// Most inotify watches to use (0: as many as the kernel gives); folders beyond are polled.
    pub max_watches: usize,
    /// How often polled folders are reconciled.
    pub poll_interval: Duration,
    /// How long a synced query waits for the watcher.
    pub sync_timeout: Duration,
    /// Quiet time after the last event before a batch is applied.
    pub settle: Duration,
    /// A batch is applied at the latest this long after its first event.
    pub max_batch_delay: Duration,
    /// Extra root-relative C/C++ include folders for dependency resolution.
    pub c_include_paths: Vec<String>,
    /// How long tombstones are kept (`None`: forever).
    pub tombstone_retention: Option<Duration>,
    /// How long an open run may show no progress before it is expired (`None`: never).
    pub run_expiry: Option<Duration>,
    /// Serve Prometheus metrics over HTTP here (no authentication: keep it on loopback).
    pub metrics: Option<SocketAddr>,
    /// More TCP tokens, each with its scopes (`--token-file`'s token has every scope).
    pub tokens: Vec<crate::access::TokenGrant>,
    /// Scopes of local users other than the daemon's own and root.
    pub local_users: Vec<crate::access::LocalGrant>,
    /// The folders every root must be in (empty: anywhere).
    pub watch_roots: Vec<PathBuf>,
}

/// Settings of the daemon's background work, with defaults.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Quiet time after the last event before a batch is applied.
    pub settle: Duration,
    /// A batch is applied at the latest this long after its first event, however busy.
    pub max_batch_delay: Duration,
    /// How imports are resolved to files.
    pub resolve: crate::deps::ResolveConfig,
    /// How long tombstones are kept (`None`: forever).
    pub tombstone_retention: Option<Duration>,
    /// How long an open run may show no progress before it is expired (`None`: never).
    pub run_expiry: Option<Duration>,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            settle: Duration::from_millis(10),
            max_batch_delay: Duration::from_millis(100),
            resolve: crate::deps::ResolveConfig::default(),
            tombstone_retention: Some(Duration::from_secs(30 * 86_400)),
            run_expiry: Some(Duration::from_secs(86_400)),
        }
    }
}

/// State shared by every request handler.
pub struct DaemonState {
    pub store: Store,
    roots: RwLock<BTreeMap<String, Arc<Root>>>,
    pub walk: WalkOptions,
    pub started: Instant,
    /// Cancelled when shutdown begins.
    pub shutdown: CancellationToken,
    /// The folders every root must be in, canonical (empty: anywhere).
    pub watch_roots: Vec<PathBuf>,
    /// Set when shutdown begins, read by scans on worker threads.
    pub cancel_scans: Arc<AtomicBool>,
    /// Serialises changes to the set of roots.
    roots_change: tokio::sync::Mutex<()>,
    /// A root being added, while its first reconcile runs.
    adding: std::sync::Mutex<Option<Arc<Root>>>,
    /// Read-your-writes cookies.
    pub cookies: events::CookieSync,
    watcher: Option<Arc<crate::watch::FsWatcher>>,
    /// Applied change batches, for subscribers.
    changes: tokio::sync::broadcast::Sender<Arc<crate::catalog::ChangeBatch>>,
    /// How long a synced query waits for the watcher.
    pub sync_timeout: Duration,
    /// Settings of background work.
    pub tuning: Tuning,
    /// Whether the store takes writes: read by every answer that must be current.
    pub health: health::StoreHealth,
    /// Set when the daemon stops because its store must be opened anew (the cause).
    restart: std::sync::Mutex<Option<String>>,
    /// Woken when catalog writes wait for a flush.
    catalog_dirty: tokio::sync::Notify,
    /// Cancelled once the daemon is ready: background work of the start-up (catch-up
    /// reconciles, graph builds) waits for it, so it never delays readiness.
    pub ready: CancellationToken,
    /// Daemon-wide counters (watcher events, overflows, RPC calls); per-root ones live on
    /// each [`Root`].
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where the metrics endpoint listens, when it is on.
    pub metrics_address: Option<SocketAddr>,
    /// Trims the heap after bursts of work (see [`memory`]).
    pub memory: Arc<memory::Releaser>,
    /// Woken when the damage reports were acknowledged (the Integrity health follows it).
    pub damage_acknowledged: tokio::sync::Notify,
}

/// The id of a root: the first 16 hex characters of the SHA-256 of its canonical path.
pub fn root_id(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::ffi::OsStrExt;
    crate::catalog::record::hex(&Sha256::digest(path.as_os_str().as_bytes())[..8])
}

impl DaemonState {
    /// Wraps an open store.
    pub fn new(
        store: Store,
        walk: WalkOptions,
        cookies: events::CookieSync,
        watcher: Option<Arc<crate::watch::FsWatcher>>,
        sync_timeout: Duration,
        served_methods: Vec<String>,
    ) -> DaemonState {
        DaemonState {
            cookies,
            watcher,
            changes: tokio::sync::broadcast::channel(1024).0,
            sync_timeout,
            tuning: Tuning::default(),
            ready: CancellationToken::new(),
            store,
            roots: RwLock::new(BTreeMap::new()),
            walk,
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            watch_roots: Vec::new(),
            cancel_scans: Arc::new(AtomicBool::new(false)),
            roots_change: tokio::sync::Mutex::new(()),
            adding: std::sync::Mutex::new(None),
            metrics: Arc::new(crate::metrics::Metrics::new(served_methods)),
            metrics_address: None,
            health: health::StoreHealth::default(),
            restart: std::sync::Mutex::new(None),
            catalog_dirty: tokio::sync::Notify::new(),
            memory: Arc::default(),
            damage_acknowledged: tokio::sync::Notify::new(),
        }
    }

    /// What a failed store operation says, as the store health's cause: the error and the
    /// database folder.
    pub fn store_failure_cause(&self, e: &StoreError) -> String {
        let what = match e {
            StoreError::Sled(msg) => msg.clone(),
            other => other.to_string(),
        };
        format!("{what} (database {})", self.store.path().display())
    }

    /// Marks the store failing when `e` is a failed write or flush of the store (an I/O
    /// error); returns whether it was one.
    pub fn note_store_error(&self, e: &StoreError) -> bool {
        if !matches!(e, StoreError::Sled(_)) {
            return false;
        }
        if self.health.fail(self.store_failure_cause(e)) {
            tracing::error!(error = %e, db = %self.store.path().display(), "a write to the database failed");
        }
        true
    }

    /// Like [`DaemonState::note_store_error`] for any daemon error.
    pub fn note_error(&self, e: &DaemonError) -> bool {
        match e {
            DaemonError::Store(s) => self.note_store_error(s),
            _ => false,
        }
    }

    /// Stops the daemon for a restart by its supervisor, because the store must be opened
    /// anew; [`serve`] then returns [`DaemonError::StoreRestart`].
    pub fn stop_for_restart(&self, cause: String) {
        *self.restart.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause);
        self.cancel_scans.store(true, Ordering::Relaxed);
        self.shutdown.cancel();
    }

    /// Why the daemon stops for a restart, if it does.
    pub fn restart_cause(&self) -> Option<String> {
        self.restart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Says that catalog writes were applied: they are flushed shortly after (see
    /// [`spawn_catalog_flusher`]).
    pub fn catalog_written(&self) {
        self.catalog_dirty.notify_one();
    }

    /// The file watcher, when one is running.
    pub fn watcher(&self) -> Option<&Arc<crate::watch::FsWatcher>> {
        self.watcher.as_ref()
    }

    /// Tells subscribers about an applied batch.
    pub fn publish(&self, batch: crate::catalog::ChangeBatch) {
        // Every batch and reconcile ends here: a trim follows once they go quiet.
        self.memory.note();
        let _ = self.changes.send(Arc::new(batch));
    }

    /// A receiver of applied batches.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::catalog::ChangeBatch>> {
        self.changes.subscribe()
    }

    /// Waits until every change made before the call has been applied (read-your-writes).
    /// While the store cannot be written, nothing is proven current: the answer is a refusal
    /// naming the cause (also when the store fails during the wait).
    pub async fn sync(&self) -> Result<(), DaemonError> {
        self.health.check()?;
        if self.watcher.is_none() {
            return Ok(());
        }
        // A reconcile in flight (a catch-up after a cold index, a rescan) is part of "every
        // change before this query": wait for it.
        for root in self.roots() {
            root.wait_caught_up().await;
            drop(root.lock_writer().await);
        }
        self.cookies.sync(self.sync_timeout).await?;
        // A batch refused by the store since the call began is not in what the query reads.
        self.health.check()
    }

    /// Waits until the dependency graph of each of `roots` is current (built, with every
    /// reconcile's changes in it), at most the sync timeout in all. Queries that answer with
    /// dependencies call it, so they never answer an empty or stale list as the truth.
    pub async fn wait_graphs(&self, roots: &[Arc<Root>]) -> Result<(), DaemonError> {
        let deadline = Instant::now() + self.sync_timeout;
        for root in roots {
            let left = deadline.saturating_duration_since(Instant::now());
            match root.graph.wait_settled(left).await {
                depgraph::GraphState::Current => {}
                depgraph::GraphState::Building => {
                    return Err(DaemonError::GraphBuilding(
                        root.path.clone(),
                        self.sync_timeout,
                    ))
                }
                depgraph::GraphState::Failed(why) => {
                    return Err(DaemonError::GraphFailed(root.path.clone(), why))
                }
            }
        }
        Ok(())
    }

    /// Rebuilds a root's dependency graph in the background.
    pub fn spawn_graph_rebuild(&self, root: &Arc<Root>) {
        let root = Arc::clone(root);
        let ready = self.ready.clone();
        let resolve = self.tuning.resolve.clone();
        let memory = Arc::clone(&self.memory);
        tokio::spawn(async move {
            ready.cancelled().await;
            let _ = tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                // Count the records now, in the background, so the first `status` needs not.
                if let Err(e) = root.store.counts() {
                    tracing::warn!(root = %root.path.display(), error = %e, "cannot count the records");
                }
                let outcome = root.graph.rebuild(&root.path, &root.store, &resolve);
                memory.note();
                match outcome {
                    Ok(()) => tracing::info!(
                        root = %root.path.display(),
                        ms = t.elapsed().as_millis() as u64,
                        "dependency graph built"
                    ),
                    Err(e) => tracing::error!(
                        root = %root.path.display(),
                        error = %e,
                        "building the dependency graph failed"
                    ),
                }
            })
            .await;
        });
    }

    /// Reconciles a root now and tells subscribers to resynchronise.
    pub async fn reconcile_root(
        &self,
        root: &Arc<Root>,
        reason: &str,
    ) -> Result<crate::catalog::ScanReport, DaemonError> {
        self.reconcile_root_until(root, reason, Arc::clone(&self.cancel_scans))
            .await
    }

    /// [`Self::reconcile_root`], stopped early when `cancel` is set (a rescan whose client
    /// went away); the caller also sets it at shutdown.
    pub async fn reconcile_root_until(
        &self,
        root: &Arc<Root>,
        reason: &str,
        cancel: Arc<AtomicBool>,
    ) -> Result<crate::catalog::ScanReport, DaemonError> {
        let report = root
            .reconcile(reason, &self.walk, cancel)
            .await
            .inspect_err(|e| {
                self.note_error(e);
            })?;
        // A graph whose last build failed is built again by any reconcile.
        if report.changed_files() || matches!(root.graph.state(), depgraph::GraphState::Failed(_)) {
            self.spawn_graph_rebuild(root);
        }
        let clock = root.store.meta()?.clock;
        self.publish(crate::catalog::ChangeBatch {
            root_id: root.id.clone(),
            clock,
            resync: true,
            ..Default::default()
        });
        Ok(report)
    }

    /// Every watched root, in id order.
    pub fn roots(&self) -> Vec<Arc<Root>> {
        self.roots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Finds a root by id or path; an empty selector means the only root.
    pub fn root(&self, selector: &str) -> Result<Arc<Root>, DaemonError> {
        let roots = self.roots.read().unwrap_or_else(|p| p.into_inner());
        if selector.is_empty() {
            return match roots.len() {
                0 => Err(DaemonError::NoRoots),
                1 => Ok(roots.values().next().cloned().ok_or(DaemonError::NoRoots)?),
                n => Err(DaemonError::AmbiguousRoot(n)),
            };
        }
        if let Some(r) = roots.get(selector) {
            return Ok(Arc::clone(r));
        }
        let wanted = Path::new(selector);
        let canonical = std::fs::canonicalize(wanted).ok();
        roots
            .values()
            .find(|r| r.path == wanted || canonical.as_deref() == Some(r.path.as_path()))
            .cloned()
            .ok_or_else(|| DaemonError::UnknownRoot(selector.to_string()))
    }

    /// Starts watching a folder: reconciles it and persists it in the roots list. Returns the
    /// root and whether it was already watched.
    pub async fn add_root(
        &self,
        path: &Path,
        persist: bool,
    ) -> Result<(Arc<Root>, Option<crate::catalog::ScanReport>), DaemonError> {
        let _change = self.roots_change.lock().await;
        let canonical = std::fs::canonicalize(path)
            .map_err(|e| DaemonError::BadRoot(path.to_path_buf(), e.to_string()))?;
        if !canonical.is_dir() {
            return Err(DaemonError::BadRoot(canonical, "not a folder".into()));
        }
        // Checked on the canonical path, so neither `..` nor a symlink leads outside.
        if !self.watch_roots.is_empty()
            && !self.watch_roots.iter().any(|w| canonical.starts_with(w))
        {
            let allowed: Vec<String> = self
                .watch_roots
                .iter()
                .map(|w| w.display().to_string())
                .collect();
            return Err(DaemonError::OutsideWatchRoots(
                canonical,
                allowed.join(", "),
            ));
        }
        let id = root_id(&canonical);
        if let Some(existing) = self
            .roots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok((Arc::clone(existing), None));
        }
        for other in self.roots() {
            if canonical.starts_with(&other.path) || other.path.starts_with(&canonical) {
                return Err(DaemonError::BadRoot(
                    canonical.clone(),
                    format!(
                        "overlaps the watched root {} (unwatch it first)",
                        other.path.display()
                    ),
                ));
            }
        }
        let root = Arc::new(Root::new(
            id.clone(),
            canonical.clone(),
            self.store.root(&id)?,
        ));
        let unwatched = WalkOptions {
            on_dir: None,
            ..self.walk.clone()
        };
        *self.adding.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&root));
        let report = root
            .reconcile("startup", &unwatched, Arc::clone(&self.cancel_scans))
            .await;
        *self.adding.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let report = report?;
        self.roots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::clone(&root));
        self.spawn_graph_rebuild(&root);
        if self.walk.on_dir.is_some() {
            // The first reconcile ran without watches: hashing opens files, and every open
            // of a watched file queues an inotify event, so watching while hashing a whole
            // tree would overflow the kernel queue (and adding thousands of watches would
            // delay readiness). A catch-up reconcile now adds the watches folder by folder,
            // each before listing it, and picks up whatever changed in between. Synced
            // queries wait for it (they wait for every root's writer).
            let catch_up = Arc::clone(&root);
            let walk = self.walk.clone();
            let cancel = Arc::clone(&self.cancel_scans);
            let ready = self.ready.clone();
            let changes = self.changes.clone();
            let resolve = self.tuning.resolve.clone();
            root.catching_up.store(true, Ordering::Release);
            tokio::spawn(async move {
                ready.cancelled().await;
                match catch_up.reconcile("catch-up", &walk, cancel).await {
                    Ok(r) if r.changed_files() => {
                        // Something changed before the watches existed: the graph follows, and
                        // subscribers are told to catch up, before synced queries go on.
                        let root = Arc::clone(&catch_up);
                        let _ = tokio::task::spawn_blocking(move || {
                            root.graph.rebuild(&root.path, &root.store, &resolve)
                        })
                        .await;
                        let clock = catch_up.store.meta().map(|m| m.clock).unwrap_or(0);
                        let _ = changes.send(Arc::new(crate::catalog::ChangeBatch {
                            root_id: catch_up.id.clone(),
                            clock,
                            resync: true,
                            ..Default::default()
                        }));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        root = %catch_up.path.display(),
                        error = %e,
                        "catch-up reconcile failed"
                    ),
                }
                catch_up.catching_up.store(false, Ordering::Release);
                catch_up.caught_up.notify_waiters();
            });
        }
        if persist {
            self.persist_roots()?;
        }
        Ok((root, Some(report)))
    }

    /// The root whose first reconcile is running, if any.
    pub fn root_being_added(&self) -> Option<Arc<Root>> {
        self.adding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops watching a root; its records are deleted unless `keep_records`.
    pub async fn remove_root(
        &self,
        selector: &str,
        keep_records: bool,
    ) -> Result<Arc<Root>, DaemonError> {
        let _change = self.roots_change.lock().await;
        let root = self.root(selector)?;
        let _writer = root.lock_writer().await;
        self.roots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&root.id);
        self.persist_roots()?;
        if !keep_records {
            self.store.drop_root(&root.id)?;
        }
        if let Some(w) = &self.watcher {
            w.forget_under(&root.path);
        }
        Ok(Arc::clone(&root))
    }

    fn persist_roots(&self) -> Result<(), DaemonError> {
        use std::os::unix::ffi::OsStrExt;
        let previous = self.store.roots()?;
        let mut entries: Vec<RootEntry> = self
            .roots()
            .iter()
            .map(|r| RootEntry {
                path: r.path.as_os_str().as_bytes().to_vec(),
                id: r.id.clone(),
                added_ns: previous
                    .iter()
                    .find(|e| e.id == r.id)
                    .map_or_else(crate::catalog::scan::now_ns, |e| e.added_ns),
            })
            .collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        let mut before = previous;
        before.sort_by(|a, b| a.id.cmp(&b.id));
        // Unchanged roots need no write (and no fsync) at every start.
        if before != entries {
            self.store.set_roots(&entries)?;
        }
        Ok(())
    }
}

/// The cookie folder beside the database folder (never inside a root's catalog).
fn cookie_dir_for(db: &Path) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| format!("{}.cookies", n.to_string_lossy()))
        .unwrap_or_else(|| "wfdb.cookies".to_string());
    db.with_file_name(name)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(mut opts: ServeOptions, frontend: Box<dyn Frontend>) -> Result<(), DaemonError> {
    // Cookie paths are compared with the absolute paths the watcher reports: a relative
    // database folder would make every synced query wait for a cookie it cannot recognise.
    for p in [&mut opts.db, &mut opts.socket] {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
    if opts.listen.is_some() && opts.token_file.is_none() && opts.tokens.is_empty() {
        return Err(DaemonError::TokenRequired);
    }
    let access = Arc::new(listen::access_policy(&opts)?);
    let watch_roots = opts
        .watch_roots
        .iter()
        .map(|w| match std::fs::canonicalize(w) {
            Ok(c) if c.is_dir() => Ok(c),
            Ok(_) => Err(DaemonError::WatchRoots(w.clone(), "not a folder".into())),
            Err(e) => Err(DaemonError::WatchRoots(w.clone(), e.to_string())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Refuse a socket folder others control now, before the long start-up reconcile.
    listen::prepare_socket_dir(&opts.socket)?;
    let t_open = Instant::now();
    let mut store = Store::open(&opts.db, opts.cache_bytes)?;
    let unclean = recovery::previous_run_unclean_then_mark(&opts.db).map_err(|e| {
        DaemonError::Internal(format!(
            "cannot mark the database {} as in use: {e}",
            opts.db.display()
        ))
    })?;
    // Clocks answered before either kind of stop may never have reached the disk (catalog
    // batches are flushed up to a second later; a failed store kept nothing): a client
    // holding one must start over from a full listing, never get a list missing changes.
    let failed = recovery::take_restart_mark(&opts.db);
    if unclean || failed {
        store.renew_instance_id()?;
        tracing::warn!(
            instance = store.instance_id(),
            cause = if failed {
                "the previous daemon stopped on a database failure"
            } else {
                "the previous daemon did not stop cleanly (crash, kill or power loss)"
            },
            "new instance id: clients start over from a full listing"
        );
    }
    tracing::debug!(ms = t_open.elapsed().as_millis() as u64, db = %opts.db.display(), "database opened");
    let mut exclude = vec![std::fs::canonicalize(&opts.db).unwrap_or_else(|_| opts.db.clone())];
    if let (Some(parent), Some(name)) = (opts.socket.parent(), opts.socket.file_name()) {
        if let Ok(parent) = std::fs::canonicalize(parent) {
            exclude.push(parent.join(name));
        }
    }
    let cookie_dir = cookie_dir_for(&opts.db);
    let cookies = events::CookieSync::new(cookie_dir.clone())?;
    exclude.push(std::fs::canonicalize(&cookie_dir).unwrap_or(cookie_dir.clone()));
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = Arc::new(
        crate::watch::FsWatcher::start(events_tx, opts.max_watches)
            .map_err(|e| DaemonError::Internal(e.to_string()))?,
    );
    let on_dir_watcher = Arc::clone(&watcher);
    let walk = WalkOptions {
        ignore_globs: opts.ignore_globs.clone(),
        exclude,
        threads: 0,
        on_dir: Some(Arc::new(move |dir: &Path| {
            on_dir_watcher.watch_dir(dir);
        })),
    };
    // Validate globs before any work so a typo is reported at once.
    crate::catalog::rules::IgnoreRules::new(Path::new("/"), &walk.ignore_globs, &[])?;
    watcher.watch_dir(cookies.dir());
    let metrics_listener = bind_tcp(opts.metrics, DaemonError::Metrics).await?;
    let mut state = DaemonState::new(
        store,
        walk,
        cookies,
        Some(watcher),
        opts.sync_timeout,
        frontend.methods(),
    );
    state.watch_roots = watch_roots;
    state.tuning = Tuning {
        settle: opts.settle,
        max_batch_delay: opts.max_batch_delay,
        resolve: crate::deps::ResolveConfig {
            c_include_paths: opts.c_include_paths.clone(),
        },
        tombstone_retention: opts.tombstone_retention,
        run_expiry: opts.run_expiry,
    };
    if let Some(listener) = &metrics_listener {
        let addr = listener
            .local_addr()
            .map_err(|e| DaemonError::Internal(format!("metrics socket: {e}")))?;
        state.metrics_address = Some(addr);
    }
    let state = Arc::new(state);
    spawn_signal_handler(Arc::clone(&state))?;
    if let Some(listener) = metrics_listener {
        // Served from the start, so a cold index can be watched (hash backlog) as it runs.
        figures::spawn_endpoint(Arc::clone(&state), listener);
    }
    // Events are collected from the start; batches wait for each root's first reconcile.
    let _pipeline = events::spawn(Arc::clone(&state), events_rx);
    let _recovery = recovery::spawn(Arc::clone(&state));
    let _flusher = spawn_catalog_flusher(Arc::clone(&state));
    let _poller = events::spawn_poller(Arc::clone(&state), opts.poll_interval);

    let mut wanted: Vec<PathBuf> = Vec::new();
    for entry in state.store.roots()? {
        use std::os::unix::ffi::OsStrExt;
        wanted.push(PathBuf::from(std::ffi::OsStr::from_bytes(&entry.path)));
    }
    wanted.extend(opts.roots.iter().cloned());
    let total = wanted.len();
    let progress_reporter = spawn_startup_status(Arc::clone(&state));
    for (i, path) in wanted.iter().enumerate() {
        if state.shutdown.is_cancelled() {
            break;
        }
        systemd::status(&format!(
            "reconciling root {}/{}: {}",
            i + 1,
            total,
            path.display()
        ));
        match state.add_root(path, false).await {
            Ok(_) => {}
            Err(DaemonError::Scan(ScanError::Cancelled)) => break,
            Err(e @ (DaemonError::BadRoot(..) | DaemonError::OutsideWatchRoots(..)))
                if i < total - opts.roots.len() =>
            {
                tracing::warn!(error = %e, "a persisted root is unavailable; skipping it");
            }
            Err(e) => return Err(e),
        }
    }
    progress_reporter.abort();
    if state.shutdown.is_cancelled() {
        state.store.flush()?;
        recovery::clear_running_mark(&opts.db);
        tracing::info!("stopped during start-up");
        return Ok(());
    }
    state.persist_roots()?;
    // The original's default workflows, installed once per database (issue 7).
    let installed = state
        .store
        .registry()?
        .install_default_workflows_once(crate::catalog::scan::now_ns() / 1_000_000)
        .map_err(|e| DaemonError::Internal(format!("installing the default workflows: {e}")))?;
    if !installed.is_empty() {
        tracing::info!(workflows = ?installed, "installed the default workflows");
    }

    // Other local users can connect only when some are granted scopes; what each may do is
    // then decided per call from the connection's credentials.
    let socket_mode = if access.grants_other_local_users() {
        0o666
    } else {
        0o600
    };
    let (uds, _bound_socket) = listen::bind_unix(&opts.socket, socket_mode)?;
    let tcp = bind_tcp(opts.listen, DaemonError::Listen).await?;
    let servers = frontend.start(Arc::clone(&state), uds, tcp, access).await?;
    let files: u64 = state
        .roots()
        .iter()
        .filter_map(|r| r.store.meta().ok()?.last_scan.map(|s| s.files_seen))
        .sum();
    let status = format!(
        "serving {} roots, {} files on {}",
        state.roots().len(),
        files,
        opts.socket.display()
    );
    tracing::info!(socket = %opts.socket.display(), roots = state.roots().len(), files, "ready");
    systemd::ready(&status);
    state.ready.cancel();
    // The cold index's buffers and the hashing threads' arenas go back to the OS.
    state.memory.spawn(state.shutdown.clone());
    state.memory.note();
    systemd::spawn_watchdog(state.shutdown.clone());
    if let Some(retention) = state.tuning.tombstone_retention {
        spawn_tombstone_pruner(Arc::clone(&state), retention);
    }

    state.shutdown.cancelled().await;
    systemd::stopping();
    tracing::info!("shutting down");
    if tokio::time::timeout(SHUTDOWN_DEADLINE, servers)
        .await
        .is_err()
    {
        tracing::warn!("open streams did not close in time; closing anyway");
    }
    if let Some(cause) = state.restart_cause() {
        // The store refuses every write: nothing more can be saved, and the next start
        // reconciles every root anyway.
        tracing::error!(%cause, code = recovery::RESTART_EXIT_CODE, "stopped for a restart");
        return Err(DaemonError::StoreRestart(cause));
    }
    // Wait for any batch in hand to be applied before the final flush; then leave each root's
    // record heads for a fast next start.
    for root in state.roots() {
        let _writer = root.lock_writer().await;
        if let Err(e) = root.store.save_heads_snapshot() {
            tracing::warn!(root = %root.path.display(), error = %e, "cannot save the record-heads snapshot");
        }
    }
    state.store.flush()?;
    recovery::clear_running_mark(&opts.db);
    tracing::info!("stopped");
    Ok(())
}

/// Forgets removals older than `retention`, now and then periodically, so the database does not
/// grow with every deletion; clocks from before a pruned removal get `fresh_instance`.
fn spawn_tombstone_pruner(state: Arc<DaemonState>, retention: Duration) {
    let every = (retention / 4).clamp(Duration::from_millis(50), Duration::from_secs(3600));
    tokio::spawn(async move {
        loop {
            for root in state.roots() {
                let cutoff_ms = crate::catalog::scan::now_ns() / 1_000_000
                    - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
                // The writer lock keeps a removal being written from racing with its pruning.
                let writer = root.lock_writer().await;
                let r = Arc::clone(&root);
                let outcome =
                    tokio::task::spawn_blocking(move || r.store.prune_tombstones(cutoff_ms)).await;
                drop(writer);
                match outcome {
                    Ok(Ok(p)) if p.removed > 0 => {
                        state.catalog_written();
                        tracing::info!(
                            root = %root.path.display(),
                            removed = p.removed,
                            through_clock = p.through,
                            "pruned old tombstones"
                        )
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        state.note_store_error(&e);
                        tracing::warn!(root = %root.path.display(), error = %e, "cannot prune tombstones")
                    }
                    Err(e) => tracing::warn!(error = %e, "tombstone pruning stopped"),
                }
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
}

/// How long after catalog writes (event batches, pruned tombstones) they are flushed: the
/// catalog can be rebuilt from the disk by the start-up reconcile, so they need not be
/// durable at once, and a burst of batches costs one fsync.
const CATALOG_FLUSH_DELAY: Duration = Duration::from_millis(500);

/// Flushes catalog writes shortly after they are applied, and never when nothing was written:
/// no timer runs while the daemon is idle.
fn spawn_catalog_flusher(state: Arc<DaemonState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = state.catalog_dirty.notified() => {}
            }
            tokio::select! {
                // Shutdown flushes everything itself.
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(CATALOG_FLUSH_DELAY) => {}
            }
            if !state.health.is_healthy() {
                // The recovery flushes once the store takes writes again.
                continue;
            }
            let s = Arc::clone(&state);
            match tokio::task::spawn_blocking(move || s.store.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    state.note_store_error(&e);
                }
                Err(e) => tracing::warn!(error = %e, "the catalog flush stopped"),
            }
        }
    })
}

/// Binds a TCP listener when an address is given; `error` says what the socket was for.
async fn bind_tcp(
    addr: Option<SocketAddr>,
    error: fn(SocketAddr, String) -> DaemonError,
) -> Result<Option<tokio::net::TcpListener>, DaemonError> {
    match addr {
        Some(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|e| error(addr, e.to_string())),
        None => Ok(None),
    }
}

/// Sends systemd a progress line every second while the start-up reconcile runs.
fn spawn_startup_status(state: Arc<DaemonState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Some(root) = state.root_being_added() {
                let p = root.progress();
                systemd::status(&format!(
                    "reconciling {}: {} files seen, {} hashed",
                    root.path.display(),
                    p.files_seen.load(Ordering::Relaxed),
                    p.files_hashed.load(Ordering::Relaxed)
                ));
            }
        }
    })
}

fn spawn_signal_handler(state: Arc<DaemonState>) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| DaemonError::Internal(e.to_string()))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| DaemonError::Internal(e.to_string()))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        state.cancel_scans.store(true, Ordering::Relaxed);
        state.shutdown.cancel();
    });
    Ok(())
}
