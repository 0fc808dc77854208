//! The Catalog service: file lookups, filtered listings, duplicates, stats, rescans.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::agents::{OwnerCache, OwnerMatcher};
use super::convert::{daemon_metrics, file_info, request_path, scan_report};
use super::status_of;
use crate::catalog::FileFilter;
use crate::daemon::{DaemonState, Root};
use crate::paths::RelPath;
use crate::proto;
use crate::store::{ChangeCursor, FolderProbe};

/// Files per streamed chunk: large enough to amortise framing, small enough to start fast.
const CHUNK: usize = 512;

/// Serves the catalog of every watched root.
pub struct CatalogService {
    state: Arc<DaemonState>,
    owners: Arc<OwnerCache>,
}

impl CatalogService {
    /// A service over the daemon's state, filling related agents from `owners`.
    pub fn new(state: Arc<DaemonState>, owners: Arc<OwnerCache>) -> Self {
        CatalogService { state, owners }
    }

    fn root(&self, selector: &str) -> Result<Arc<Root>, Status> {
        self.state.root(selector).map_err(status_of)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Fills `related_agents`: the agents whose owned-path globs match the file.
fn with_owners(mut info: proto::FileInfo, owners: &OwnerMatcher) -> proto::FileInfo {
    if !owners.is_empty() {
        info.related_agents = owners.owners(&info.path);
    }
    info
}

/// Fills `dependencies` and `externals` from the root's live dependency graph, and
/// `dependencies_pending` while that graph is not current.
fn with_deps(mut info: proto::FileInfo, root: &Root, path: &RelPath) -> proto::FileInfo {
    let deps = root.graph.edges_of(path);
    info.dependencies = deps.dependencies;
    info.externals = deps.externals;
    info.dependencies_pending = deps.pending;
    info
}

/// A synced query answering with dependencies also waits for the root's graph.
async fn sync_with_graph(state: &DaemonState, root: &Arc<Root>) -> Result<(), Status> {
    state.sync().await.map_err(status_of)?;
    state
        .wait_graphs(std::slice::from_ref(root))
        .await
        .map_err(status_of)
}

fn store_status(e: crate::store::StoreError) -> Status {
    status_of(e.into())
}

/// What a `Changes`/`ChangesStream` request asks for, once its root is found and, unless
/// unsynced, every earlier change is applied.
struct ChangesAsked {
    root: Arc<Root>,
    /// This daemon's instance id.
    instance: String,
    since: u64,
    /// The clock is another instance's: it cannot be answered exactly.
    foreign: bool,
    wanted: Wanted,
}

impl CatalogService {
    async fn changes_asked(&self, req: &proto::ChangesRequest) -> Result<ChangesAsked, Status> {
        let root = self.root(&req.root)?;
        if !req.unsynced {
            self.state.sync().await.map_err(status_of)?;
        }
        let instance = self.state.store.instance_id().to_string();
        let foreign = !req.instance_id.is_empty() && req.instance_id != instance;
        Ok(ChangesAsked {
            root,
            instance,
            since: req.since_clock,
            foreign,
            wanted: Wanted::of(req),
        })
    }
}

#[tonic::async_trait]
impl proto::catalog_server::Catalog for CatalogService {
    async fn get_file(
        &self,
        request: Request<proto::GetFileRequest>,
    ) -> Result<Response<proto::GetFileResponse>, Status> {
        let req = request.into_inner();
        let path = request_path(&req.path, &req.path_bytes)?;
        let root = self.root(&req.root)?;
        if !req.unsynced {
            sync_with_graph(&self.state, &root).await?;
        }
        let clock = root.store.meta().map_err(store_status)?.clock;
        match root.store.get(&path).map_err(store_status)? {
            Some(rec) => Ok(Response::new(proto::GetFileResponse {
                file: Some(with_owners(
                    with_deps(file_info(&rec), &root, &rec.path),
                    &*self.owners.get(&self.state).await,
                )),
                clock,
                instance_id: self.state.store.instance_id().to_string(),
            })),
            None => Err(Status::not_found(format!(
                "{} is not in the catalog of {} (absent, ignored, or a folder)",
                super::limits::short(&path.to_lossy()),
                root.path.display()
            ))),
        }
    }

    type ListFilesStream = BoxStream<proto::ListFilesResponse>;

    async fn list_files(
        &self,
        request: Request<proto::ListFilesRequest>,
    ) -> Result<Response<Self::ListFilesStream>, Status> {
        let req = request.into_inner();
        let filter = FileFilter::new(
            &req.glob,
            &req.file_type,
            &req.purpose,
            req.min_size,
            req.max_size,
            req.since_clock,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let prefix = if req.path_prefix.is_empty() || req.path_prefix == "/" {
            None
        } else {
            Some(
                RelPath::parse(req.path_prefix.as_bytes())
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            )
        };
        let root = self.root(&req.root)?;
        if !req.unsynced {
            sync_with_graph(&self.state, &root).await?;
        }
        let clock = root.store.meta().map_err(store_status)?.clock;
        let instance_id = self.state.store.instance_id().to_string();
        let limit = if req.limit == 0 { u64::MAX } else { req.limit };
        let (tx, rx) = mpsc::channel(4);
        let shutdown = self.state.shutdown.clone();
        let owners = self.owners.get(&self.state).await;
        let memory = std::sync::Arc::clone(&self.state.memory);
        let stream_tx = tx.clone();
        super::panics::spawn_blocking_stream(
            "/workflowdb.v1.Catalog/ListFiles",
            stream_tx,
            move |_| {
                let mut chunk = Vec::with_capacity(CHUNK);
                let mut sent = 0u64;
                let send = |files: Vec<proto::FileInfo>| {
                    tx.blocking_send(Ok(proto::ListFilesResponse {
                        files,
                        clock,
                        instance_id: instance_id.clone(),
                    }))
                    .is_ok()
                };
                for rec in root.store.files_under(prefix.as_ref()) {
                    if shutdown.is_cancelled() {
                        let _ = tx
                            .blocking_send(Err(Status::unavailable("the daemon is shutting down")));
                        return;
                    }
                    let rec = match rec {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(store_status(e)));
                            return;
                        }
                    };
                    if !filter.matches(&rec) {
                        continue;
                    }
                    chunk.push(with_owners(
                        with_deps(file_info(&rec), &root, &rec.path),
                        &owners,
                    ));
                    sent += 1;
                    if chunk.len() == CHUNK
                        && !send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                    {
                        return;
                    }
                    if sent >= limit {
                        break;
                    }
                }
                // Always send a last chunk, so an empty listing still carries the clock.
                send(chunk);
                memory.note();
            },
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn find_duplicates(
        &self,
        request: Request<proto::FindDuplicatesRequest>,
    ) -> Result<Response<proto::FindDuplicatesResponse>, Status> {
        let req = request.into_inner();
        let root = self.root(&req.root)?;
        let min_size = req.min_size.max(1);
        let clock = root.store.meta().map_err(store_status)?.clock;
        let groups = tokio::task::spawn_blocking(move || {
            let mut by_hash: HashMap<[u8; 32], (u64, Vec<String>)> = HashMap::new();
            for rec in root.store.files_under(None) {
                let rec = rec?;
                if let Some(h) = rec.sha256 {
                    if rec.fingerprint.size >= min_size {
                        let e = by_hash
                            .entry(h)
                            .or_insert((rec.fingerprint.size, Vec::new()));
                        e.1.push(rec.path.to_lossy());
                    }
                }
            }
            let mut groups: Vec<proto::DuplicateGroup> = by_hash
                .into_iter()
                .filter(|(_, (_, paths))| paths.len() > 1)
                .map(|(h, (size, paths))| proto::DuplicateGroup {
                    sha256: crate::catalog::record::hex(&h),
                    size_bytes: size,
                    paths,
                })
                .collect();
            // Most wasted bytes first, then by hash for a stable order.
            groups.sort_by(|a, b| {
                let wa = a.size_bytes * (a.paths.len() as u64 - 1);
                let wb = b.size_bytes * (b.paths.len() as u64 - 1);
                wb.cmp(&wa).then_with(|| a.sha256.cmp(&b.sha256))
            });
            Ok::<_, crate::store::StoreError>(groups)
        })
        .await
        .map_err(|e| super::panics::join_status("catalog", e))?
        .map_err(store_status)?;
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        Ok(Response::new(proto::FindDuplicatesResponse {
            groups: groups.into_iter().take(limit).collect(),
            clock,
            instance_id: self.state.store.instance_id().to_string(),
        }))
    }

    async fn stats(
        &self,
        request: Request<proto::StatsRequest>,
    ) -> Result<Response<proto::StatsResponse>, Status> {
        let req = request.into_inner();
        let roots = if req.root.is_empty() {
            self.state.roots()
        } else {
            vec![self.root(&req.root)?]
        };
        let mut out = Vec::with_capacity(roots.len());
        for root in &roots {
            let root = Arc::clone(root);
            let stats = tokio::task::spawn_blocking(move || root_stats(&root))
                .await
                .map_err(|e| super::panics::join_status("catalog", e))?
                .map_err(store_status)?;
            out.push(stats);
        }
        let state = Arc::clone(&self.state);
        let only = (!req.root.is_empty())
            .then(|| roots.first().cloned())
            .flatten();
        let snapshot = tokio::task::spawn_blocking(move || state.metrics_snapshot(only.as_ref()))
            .await
            .map_err(|e| super::panics::join_status("catalog", e))?
            .map_err(status_of)?;
        Ok(Response::new(proto::StatsResponse {
            metrics: Some(daemon_metrics(&snapshot, self.state.metrics_address)),
            roots: out,
            instance_id: self.state.store.instance_id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            database: self.state.store.path().display().to_string(),
            uptime_ms: self.state.started.elapsed().as_millis() as u64,
            watched_dirs: self.state.watcher().map_or(0, |w| w.counts().0),
            polled_dirs: self.state.watcher().map_or(0, |w| w.counts().1),
            schema_version: u32::from(crate::store::codec::SCHEMA_VERSION),
            store_health: Some(store_health(&self.state.health)),
            damage: self
                .state
                .store
                .damage_reports()
                .iter()
                .map(super::admin::damage_report)
                .collect(),
        }))
    }

    type RescanStream = BoxStream<proto::RescanProgress>;

    async fn rescan(
        &self,
        request: Request<proto::RescanRequest>,
    ) -> Result<Response<Self::RescanStream>, Status> {
        let req = request.into_inner();
        let root = self.root(&req.root)?;
        let state = Arc::clone(&self.state);
        let (tx, rx) = mpsc::channel(16);
        let stream_tx = tx.clone();
        super::panics::spawn_stream("/workflowdb.v1.Catalog/Rescan", stream_tx, async move {
            let scan_root = Arc::clone(&root);
            let scan_state = Arc::clone(&state);
            // This rescan's own flag: set when its client goes away or at shutdown, so a
            // cancelled rescan stops its reconcile (and one still waiting never starts).
            let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let scan_cancel = Arc::clone(&cancel);
            let mut scan = tokio::spawn(async move {
                scan_state
                    .reconcile_root_until(&scan_root, "rescan", scan_cancel)
                    .await
            });
            let mut stopping = false;
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = tx.closed(), if !stopping => {
                        tracing::info!(root = %root.path.display(), "rescan cancelled by its client");
                        cancel.store(true, Ordering::Relaxed);
                        stopping = true;
                    }
                    _ = state.shutdown.cancelled(), if !stopping => {
                        cancel.store(true, Ordering::Relaxed);
                        stopping = true;
                    }
                    outcome = &mut scan => {
                        let msg = match outcome {
                            Ok(Ok(report)) => Ok(proto::RescanProgress {
                                files_seen: report.files_seen,
                                files_hashed: report.files_hashed,
                                bytes_hashed: report.bytes_hashed,
                                report: Some(scan_report(&report)),
                                done: true,
                            }),
                            Ok(Err(e)) => Err(status_of(e)),
                            Err(e) => Err(super::panics::join_status("/workflowdb.v1.Catalog/Rescan", e)),
                        };
                        let _ = tx.send(msg).await;
                        return;
                    }
                    _ = tick.tick() => {
                        if !root.is_scanning() {
                            continue;
                        }
                        let p = root.progress();
                        let msg = proto::RescanProgress {
                            files_seen: p.files_seen.load(Ordering::Relaxed),
                            files_hashed: p.files_hashed.load(Ordering::Relaxed),
                            bytes_hashed: p.bytes_hashed.load(Ordering::Relaxed),
                            report: None,
                            done: false,
                        };
                        let _ = tx.try_send(Ok(msg));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_clock(
        &self,
        request: Request<proto::ClockRequest>,
    ) -> Result<Response<proto::ClockResponse>, Status> {
        let req = request.into_inner();
        let root = self.root(&req.root)?;
        if !req.unsynced {
            self.state.sync().await.map_err(status_of)?;
        }
        Ok(Response::new(proto::ClockResponse {
            root: root.path.display().to_string(),
            clock: root.store.meta().map_err(store_status)?.clock,
            instance_id: self.state.store.instance_id().to_string(),
        }))
    }

    async fn changes(
        &self,
        request: Request<proto::ChangesRequest>,
    ) -> Result<Response<proto::ChangesResponse>, Status> {
        let req = request.into_inner();
        let ChangesAsked {
            root,
            instance,
            since,
            foreign,
            wanted,
        } = self.changes_asked(&req).await?;
        let answer = tokio::task::spawn_blocking(move || {
            let mut walk = ChangesWalk::start(root, since, foreign, wanted)?;
            let page = walk.next_page(UNARY_CHANGES_BYTES, None)?;
            if !walk.is_done() {
                return Ok(Err(page.changed.len() + page.removed.len()));
            }
            Ok(Ok(walk.response(page, true)))
        })
        .await
        .map_err(|e| super::panics::join_status("catalog", e))?
        .map_err(store_status)?;
        match answer {
            Ok(answer) => Ok(Response::new(proto::ChangesResponse {
                instance_id: instance,
                ..answer
            })),
            Err(read) => Err(Status::resource_exhausted(format!(
                "the changes after clock {since} do not fit in one message of {} MiB (more \
                 than {read} paths): call ChangesStream, which answers any size in pages \
                 (`wfdb changes` does)",
                UNARY_CHANGES_BYTES.div_ceil(1 << 20)
            ))),
        }
    }

    type ChangesStreamStream = BoxStream<proto::ChangesResponse>;

    async fn changes_stream(
        &self,
        request: Request<proto::ChangesRequest>,
    ) -> Result<Response<Self::ChangesStreamStream>, Status> {
        let req = request.into_inner();
        let ChangesAsked {
            root,
            instance,
            since,
            foreign,
            wanted,
        } = self.changes_asked(&req).await?;
        let mut walk =
            tokio::task::spawn_blocking(move || ChangesWalk::start(root, since, foreign, wanted))
                .await
                .map_err(|e| super::panics::join_status("catalog", e))?
                .map_err(store_status)?;
        // Two pages queued at most: a reader that stops reading stops the walk.
        let (tx, rx) = mpsc::channel(2);
        let shutdown = self.state.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let read = tokio::task::spawn_blocking(move || {
                    let page = walk.next_page(CHANGES_PAGE_BYTES, None);
                    (walk, page)
                })
                .await;
                let (back, page) = match read {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                walk = back;
                let (msg, last) = match page {
                    Ok(page) => {
                        let page = proto::ChangesResponse {
                            instance_id: instance.clone(),
                            ..walk.response(page, false)
                        };
                        (Ok(page), walk.is_done())
                    }
                    Err(e) => (Err(store_status(e)), true),
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    sent = tx.send(msg) => if sent.is_err() { return },
                }
                if last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type SubscribeStream = BoxStream<proto::ChangeBatch>;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let req = request.into_inner();
        let root = self.root(&req.root)?;
        let filter = FileFilter::new(&req.glob, &req.file_type, &req.purpose, None, None, None)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let instance = self.state.store.instance_id().to_string();
        let foreign = !req.instance_id.is_empty() && req.instance_id != instance;
        // Subscribe before the catch-up, so nothing falls between the two.
        let mut live = self.state.subscribe();
        // Few messages queued: a subscriber that does not read holds two small pages, and
        // the catch-up walk waits for it (live batches wait in the shared broadcast buffer).
        let (tx, rx) = mpsc::channel(2);
        let shutdown = self.state.shutdown.clone();
        tokio::spawn(async move {
            let catch_up = CatchUp {
                root: Arc::clone(&root),
                filter: filter.clone(),
                instance: instance.clone(),
                tx: tx.clone(),
                shutdown: shutdown.clone(),
            };
            let mut last = match req.since_clock {
                Some(since) => match catch_up.send(since, foreign, false).await {
                    Some(clock) => clock,
                    None => return,
                },
                None => root.store.meta().map(|m| m.clock).unwrap_or(0),
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tx.closed() => break,
                    next = live.recv() => next,
                };
                let msg = match next {
                    Ok(batch) if batch.root_id != root.id => continue,
                    Ok(batch) if !batch.resync => {
                        if batch.clock <= last {
                            continue;
                        }
                        last = batch.clock;
                        let mut out = live_batch(&batch, &filter, &root);
                        if out.added.is_empty()
                            && out.modified.is_empty()
                            && out.removed.is_empty()
                            && out.renamed.is_empty()
                        {
                            continue;
                        }
                        out.root = root.path.display().to_string();
                        out.instance_id = instance.clone();
                        Ok(out)
                    }
                    // A reconcile ran, or this subscriber fell behind the broadcast buffer:
                    // catch up from the clocks instead of holding unbounded batches.
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        match catch_up.send(last, false, true).await {
                            Some(clock) => {
                                last = clock;
                                continue;
                            }
                            None => break,
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// An applied batch as a subscriber with `filter` sees it. A rename whose both ends pass the
/// filter is told as a rename; with one end outside, as the addition or removal it looks like.
/// Files carry their dependencies from the root's live graph (updated before the batch was
/// published), or `dependencies_pending` while it is not current.
fn live_batch(
    batch: &crate::catalog::ChangeBatch,
    filter: &FileFilter,
    root: &Root,
) -> proto::ChangeBatch {
    use std::collections::{HashMap, HashSet};
    let mut renamed = Vec::new();
    let mut moved_from: HashSet<&RelPath> = HashSet::new();
    let mut moved_to: HashSet<&RelPath> = HashSet::new();
    // A folder moved makes as many renames as additions: look each up, never scan.
    let added: HashMap<&RelPath, &crate::catalog::FileRecord> = if batch.renamed.is_empty() {
        HashMap::new()
    } else {
        batch.added.iter().map(|r| (&r.path, r)).collect()
    };
    for (from, to) in &batch.renamed {
        let Some(rec) = added.get(to) else {
            continue;
        };
        if filter.matches_path(from) && filter.matches(rec) {
            renamed.push(proto::Rename {
                from: from.to_lossy(),
                to: Some(with_deps(file_info(rec), root, &rec.path)),
            });
            moved_from.insert(from);
            moved_to.insert(to);
        }
    }
    let pick = |recs: &[crate::catalog::FileRecord]| {
        recs.iter()
            .filter(|r| !moved_to.contains(&r.path) && filter.matches(r))
            .map(|r| with_deps(file_info(r), root, &r.path))
            .collect::<Vec<_>>()
    };
    proto::ChangeBatch {
        clock: batch.clock,
        added: pick(&batch.added),
        modified: pick(&batch.modified),
        removed: batch
            .removed
            .iter()
            .filter(|p| !moved_from.contains(p) && filter.matches_path(p))
            .map(RelPath::to_lossy)
            .collect(),
        renamed,
        ..Default::default()
    }
}

fn count_entries(map: BTreeMap<String, u64>) -> Vec<proto::CountEntry> {
    let mut v: Vec<proto::CountEntry> = map
        .into_iter()
        .map(|(key, count)| proto::CountEntry { key, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v
}

/// Counts of one root's records.
pub fn root_stats(root: &Root) -> Result<proto::RootStats, crate::store::StoreError> {
    let meta = root.store.meta()?;
    let counts = root.store.counts()?;
    let by_type: BTreeMap<String, u64> = counts.by_type.clone().into_iter().collect();
    let by_purpose: BTreeMap<String, u64> = counts
        .purposes()
        .map(|(p, n)| (p.as_str().to_string(), n))
        .collect();
    Ok(proto::RootStats {
        root: root.path.display().to_string(),
        root_id: root.id.clone(),
        files: counts.files,
        bytes: counts.bytes,
        by_type: count_entries(by_type),
        by_purpose: count_entries(by_purpose),
        last_scan: meta.last_scan.as_ref().map(scan_report),
        clock: meta.clock,
        unreadable: counts.unreadable,
    })
}

/// Encoded bytes of one `ChangesStream` page: few, large messages for a reader that reads.
const CHANGES_PAGE_BYTES: usize = 1 << 20;
/// Encoded bytes of one `Subscribe` catch-up page: small, since an unread subscriber holds a
/// few of them until it reads.
const CATCH_UP_PAGE_BYTES: usize = 32 << 10;
/// The largest unary `Changes` answer: what every stock gRPC client reads (4 MiB), less room
/// for the message's other fields.
const UNARY_CHANGES_BYTES: usize = (4 << 20) - (64 << 10);

/// What a `Changes` answer holds beyond files changed and removed.
#[derive(Clone, Copy)]
struct Wanted {
    /// The folders that may have appeared or vanished.
    folders: bool,
    /// Every file when the clock cannot be answered exactly.
    files_when_fresh: bool,
}

impl Wanted {
    fn of(req: &proto::ChangesRequest) -> Wanted {
        Wanted {
            folders: req.with_folders,
            files_when_fresh: !req.empty_on_fresh_instance,
        }
    }
}

impl Default for Wanted {
    fn default() -> Self {
        Wanted {
            folders: false,
            files_when_fresh: true,
        }
    }
}

/// One page of changes, in walk order, with about how many bytes it encodes to.
#[derive(Default)]
struct Page {
    changed: Vec<(RelPath, proto::FileInfo)>,
    removed: Vec<RelPath>,
    folders: Vec<Vec<u8>>,
    bytes: usize,
}

/// The files changed and removed after a clock, read a page at a time from the store: what it
/// keeps between pages is a cursor, whatever the size of the answer. A clock that cannot be
/// answered exactly (another instance, the future, older than the kept tombstones) gets every
/// file (unless not wanted) and no removal, flagged `fresh_instance`.
struct ChangesWalk {
    root: Arc<Root>,
    cursor: ChangeCursor,
    exact: bool,
    /// Whether anything is listed (not when inexact and the caller wants no files then).
    list: bool,
    /// With folders wanted, on an exact answer.
    folders: Option<FolderProbe>,
}

impl ChangesWalk {
    /// A walk of the changes after `since` (blocking), bounded by the root's clock now.
    fn start(
        root: Arc<Root>,
        since: u64,
        foreign: bool,
        wanted: Wanted,
    ) -> Result<ChangesWalk, crate::store::StoreError> {
        // Clock 0 means "everything", which is exact.
        let exact = !foreign && root.store.can_answer_since(since)?;
        let cursor = root.store.change_cursor(if exact { since } else { 0 })?;
        Ok(ChangesWalk {
            root,
            cursor,
            exact,
            list: exact || wanted.files_when_fresh,
            folders: (wanted.folders && exact).then(|| FolderProbe::new(since)),
        })
    }

    /// Whether every page has been read.
    fn is_done(&self) -> bool {
        !self.list || self.cursor.is_done()
    }

    /// The clock a reader holds once every page is read.
    fn clock(&self) -> u64 {
        self.cursor.clock()
    }

    /// The next page (blocking): changes `filter` keeps, until about `budget` encoded bytes.
    fn next_page(
        &mut self,
        budget: usize,
        filter: Option<&FileFilter>,
    ) -> Result<Page, crate::store::StoreError> {
        let mut page = Page::default();
        if !self.list {
            return Ok(page);
        }
        let ChangesWalk {
            root,
            cursor,
            folders,
            ..
        } = self;
        let store = &root.store;
        let mut failed = None;
        store.next_changes(cursor, |change| {
            let path = match change {
                crate::store::Change::Changed(rec) => {
                    let rec = *rec;
                    if filter.is_some_and(|f| !f.matches(&rec)) {
                        return true;
                    }
                    // Dependencies as the live graph has them now (or marked pending): a
                    // "what changed" answer does not wait for a graph build (git's hook
                    // asks it), but it never passes an empty list off as the truth.
                    let info = with_deps(file_info(&rec), root, &rec.path);
                    page.bytes += info.encoded_len() + 8;
                    page.changed.push((rec.path, info));
                    &page.changed[page.changed.len() - 1].0
                }
                crate::store::Change::Removed(path) => {
                    if filter.is_some_and(|f| !f.matches_path(&path)) {
                        return true;
                    }
                    // The lossy text and, maybe, the exact bytes.
                    page.bytes += 2 * path.as_bytes().len() + 8;
                    page.removed.push(path);
                    &page.removed[page.removed.len() - 1]
                }
            };
            if let Some(probe) = folders.as_mut() {
                match probe.new_folders(store, [path]) {
                    Ok(found) => {
                        page.bytes += found.iter().map(|f| f.len() + 4).sum::<usize>();
                        page.folders.extend(found);
                    }
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                }
            }
            page.bytes < budget
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(page),
        }
    }

    /// A page as an answer: the whole answer (sorted by path, with the clock) when `whole`,
    /// else one page of the stream (the clock on the last page only, `more` on the others).
    fn response(&self, mut page: Page, whole: bool) -> proto::ChangesResponse {
        if whole {
            page.changed.sort_by(|a, b| a.0.cmp(&b.0));
            page.removed.sort();
            page.folders.sort();
        }
        let more = !whole && !self.is_done();
        let removed_path_bytes = if page.removed.iter().any(|p| p.as_str().is_none()) {
            page.removed.iter().map(|p| p.as_bytes().to_vec()).collect()
        } else {
            Vec::new()
        };
        proto::ChangesResponse {
            root: self.root.path.display().to_string(),
            clock: if more { 0 } else { self.clock() },
            instance_id: String::new(),
            fresh_instance: !self.exact,
            changed: page.changed.into_iter().map(|(_, info)| info).collect(),
            removed: page.removed.iter().map(RelPath::to_lossy).collect(),
            removed_path_bytes,
            folders: page.folders,
            more,
        }
    }
}

/// Sends a subscriber the changes after a clock as catch-up batches, a small page at a time,
/// waiting for the subscriber to read each one.
struct CatchUp {
    root: Arc<Root>,
    filter: FileFilter,
    instance: String,
    tx: mpsc::Sender<Result<proto::ChangeBatch, Status>>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl CatchUp {
    /// Sends the changes after `since` (every file when `foreign` or not answerable), flagged
    /// `resync` when events were lost. Returns the clock reached, or `None` when the stream is
    /// over (the subscriber went away, the daemon stops, or an error was sent).
    async fn send(&self, since: u64, foreign: bool, resync: bool) -> Option<u64> {
        let root = Arc::clone(&self.root);
        let started = tokio::task::spawn_blocking(move || {
            ChangesWalk::start(root, since, foreign, Wanted::default())
        })
        .await;
        let mut walk = match started {
            Ok(Ok(walk)) => walk,
            Ok(Err(e)) => return self.fail(store_status(e)).await,
            Err(e) => return self.fail(Status::internal(e.to_string())).await,
        };
        // Until the last page, the clock told is the one already read up to.
        let held = if walk.exact { since } else { 0 };
        loop {
            let filter = self.filter.clone();
            let read = tokio::task::spawn_blocking(move || {
                let page = walk.next_page(CATCH_UP_PAGE_BYTES, Some(&filter));
                (walk, page)
            })
            .await;
            let page = match read {
                Ok((back, Ok(page))) => {
                    walk = back;
                    page
                }
                Ok((_, Err(e))) => return self.fail(store_status(e)).await,
                Err(e) => return self.fail(Status::internal(e.to_string())).await,
            };
            let more = !walk.is_done();
            let batch = proto::ChangeBatch {
                root: self.root.path.display().to_string(),
                clock: if more { held } else { walk.clock() },
                instance_id: self.instance.clone(),
                added: page.changed.into_iter().map(|(_, info)| info).collect(),
                modified: Vec::new(),
                removed: page.removed.iter().map(RelPath::to_lossy).collect(),
                renamed: Vec::new(),
                resync,
                fresh_instance: !walk.exact,
                more,
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                sent = self.tx.send(Ok(batch)) => sent.ok()?,
            }
            if !more {
                return Some(walk.clock());
            }
        }
    }

    /// Sends `status` and ends the stream.
    async fn fail(&self, status: Status) -> Option<u64> {
        let _ = self.tx.send(Err(status)).await;
        None
    }
}

/// The store's health as `Stats` tells it.
pub fn store_health(health: &crate::daemon::health::StoreHealth) -> proto::StoreHealth {
    match health.failure() {
        None => proto::StoreHealth {
            serving: true,
            ..Default::default()
        },
        Some(f) => proto::StoreHealth {
            serving: false,
            failing_since_ms: f.since_ms(),
            cause: f.cause,
        },
    }
}
