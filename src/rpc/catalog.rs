//! The Catalog service: file lookups, filtered listings, duplicates, stats, rescans.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::agents::OwnerMatcher;
use super::convert::{daemon_metrics, file_info, request_path, scan_report};
use super::status_of;
use crate::catalog::FileFilter;
use crate::daemon::{DaemonState, Root};
use crate::paths::RelPath;
use crate::proto;

/// Files per streamed chunk: large enough to amortise framing, small enough to start fast.
const CHUNK: usize = 512;

/// Serves the catalog of every watched root.
pub struct CatalogService {
    state: Arc<DaemonState>,
}

impl CatalogService {
    /// A service over the daemon's state.
    pub fn new(state: Arc<DaemonState>) -> Self {
        CatalogService { state }
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

/// Fills `dependencies` and `externals` from the root's live dependency graph.
fn with_deps(mut info: proto::FileInfo, root: &Root, path: &RelPath) -> proto::FileInfo {
    let (deps, externals) = root.graph.edges_of(path);
    info.dependencies = deps;
    info.externals = externals;
    info
}

fn store_status(e: crate::store::StoreError) -> Status {
    status_of(e.into())
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
            self.state.sync().await.map_err(status_of)?;
        }
        let clock = root.store.meta().map_err(store_status)?.clock;
        match root.store.get(&path).map_err(store_status)? {
            Some(rec) => Ok(Response::new(proto::GetFileResponse {
                file: Some(with_owners(
                    with_deps(file_info(&rec), &root, &rec.path),
                    &OwnerMatcher::load(&self.state),
                )),
                clock,
                instance_id: self.state.store.instance_id().to_string(),
            })),
            None => Err(Status::not_found(format!(
                "{path} is not in the catalog of {} (absent, ignored, or a folder)",
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
            self.state.sync().await.map_err(status_of)?;
        }
        let clock = root.store.meta().map_err(store_status)?.clock;
        let instance_id = self.state.store.instance_id().to_string();
        let limit = if req.limit == 0 { u64::MAX } else { req.limit };
        let (tx, rx) = mpsc::channel(4);
        let shutdown = self.state.shutdown.clone();
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || {
            let owners = OwnerMatcher::load(&state);
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
                    let _ =
                        tx.blocking_send(Err(Status::unavailable("the daemon is shutting down")));
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
            state.memory.note();
        });
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
        .map_err(|e| Status::internal(e.to_string()))?
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
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(store_status)?;
            out.push(stats);
        }
        let state = Arc::clone(&self.state);
        let only = (!req.root.is_empty())
            .then(|| roots.first().cloned())
            .flatten();
        let snapshot = tokio::task::spawn_blocking(move || state.metrics_snapshot(only.as_ref()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
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
        tokio::spawn(async move {
            let scan_root = Arc::clone(&root);
            let scan_state = Arc::clone(&state);
            let mut scan =
                tokio::spawn(async move { scan_state.reconcile_root(&scan_root, "rescan").await });
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
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
                            Err(e) => Err(Status::internal(e.to_string())),
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
                        // A client that went away does not stop the rescan.
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
        let root = self.root(&req.root)?;
        if !req.unsynced {
            self.state.sync().await.map_err(status_of)?;
        }
        let instance = self.state.store.instance_id().to_string();
        let since = req.since_clock;
        let foreign = !req.instance_id.is_empty() && req.instance_id != instance;
        let wanted = Wanted {
            folders: req.with_folders,
            files_when_fresh: !req.empty_on_fresh_instance,
        };
        let answer =
            tokio::task::spawn_blocking(move || changes_since(&root, since, foreign, wanted))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(store_status)?;
        Ok(Response::new(proto::ChangesResponse {
            instance_id: instance,
            ..answer
        }))
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
        let (tx, rx) = mpsc::channel(16);
        let shutdown = self.state.shutdown.clone();
        tokio::spawn(async move {
            let catch_up = |since: u64, foreign: bool, resync: bool| {
                let root = Arc::clone(&root);
                let filter = filter.clone();
                let instance = instance.clone();
                async move {
                    let answer = tokio::task::spawn_blocking(move || {
                        changes_since(&root, since, foreign, Wanted::default())
                    })
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(store_status)?;
                    Ok::<_, Status>(proto::ChangeBatch {
                        root: answer.root,
                        clock: answer.clock,
                        instance_id: instance,
                        added: answer
                            .changed
                            .into_iter()
                            .filter(|f| filter_info(&filter, f))
                            .collect(),
                        modified: Vec::new(),
                        removed: answer
                            .removed
                            .into_iter()
                            .filter(|p| {
                                RelPath::parse(p.as_bytes()).is_ok_and(|p| filter.matches_path(&p))
                            })
                            .collect(),
                        renamed: Vec::new(),
                        resync,
                        fresh_instance: answer.fresh_instance,
                    })
                }
            };
            let mut last = match req.since_clock {
                Some(since) => match catch_up(since, foreign, false).await {
                    Ok(batch) => {
                        let clock = batch.clock;
                        if tx.send(Ok(batch)).await.is_err() {
                            return;
                        }
                        clock
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
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
                        let mut out = live_batch(&batch, &filter);
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
                        match catch_up(last, false, true).await {
                            Ok(batch) => {
                                last = batch.clock;
                                Ok(batch)
                            }
                            Err(status) => Err(status),
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
fn live_batch(batch: &crate::catalog::ChangeBatch, filter: &FileFilter) -> proto::ChangeBatch {
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
                to: Some(file_info(rec)),
            });
            moved_from.insert(from);
            moved_to.insert(to);
        }
    }
    let pick = |recs: &[crate::catalog::FileRecord]| {
        recs.iter()
            .filter(|r| !moved_to.contains(&r.path) && filter.matches(r))
            .map(file_info)
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

fn filter_info(filter: &FileFilter, f: &proto::FileInfo) -> bool {
    (filter.file_type.as_ref().is_none_or(|t| &f.file_type == t))
        && filter.purpose.is_none_or(|p| f.purpose == p.as_str())
        && filter.glob.as_ref().is_none_or(|g| {
            if f.path_bytes.is_empty() {
                g.is_match(&f.path)
            } else {
                use std::os::unix::ffi::OsStrExt;
                g.is_match(std::ffi::OsStr::from_bytes(&f.path_bytes))
            }
        })
}

/// What a `changes_since` answer holds beyond files changed and removed.
#[derive(Clone, Copy)]
struct Wanted {
    /// The folders that may have appeared or vanished.
    folders: bool,
    /// Every file when the clock cannot be answered exactly.
    files_when_fresh: bool,
}

impl Default for Wanted {
    fn default() -> Self {
        Wanted {
            folders: false,
            files_when_fresh: true,
        }
    }
}

/// Files changed and removed after `since`, with what else is `wanted`. A clock that cannot be
/// answered exactly (another instance, the future, older than the kept tombstones) gets every
/// file (unless not wanted), with `fresh_instance`.
fn changes_since(
    root: &Root,
    since: u64,
    foreign: bool,
    wanted: Wanted,
) -> Result<proto::ChangesResponse, crate::store::StoreError> {
    let clock = root.store.meta()?.clock;
    // A clock from another instance, from the future, or older than the kept tombstones cannot
    // be answered exactly: list everything (and no removals), flagged as a fresh instance.
    // Clock 0 means "everything".
    let exact = !foreign && root.store.can_answer_since(since)?;
    let (records, removed) = if exact || wanted.files_when_fresh {
        root.store.changed_since(if exact { since } else { 0 })?
    } else {
        (Vec::new(), Vec::new())
    };
    let folders = if wanted.folders && exact {
        let paths = records.iter().map(|r| &r.path).chain(removed.iter());
        root.store.folders_changed_since(since, paths)?
    } else {
        Vec::new()
    };
    let changed = records.iter().map(file_info).collect();
    let removed_path_bytes = if removed.iter().any(|p| p.as_str().is_none()) {
        removed.iter().map(|p| p.as_bytes().to_vec()).collect()
    } else {
        Vec::new()
    };
    let removed = removed.iter().map(RelPath::to_lossy).collect();
    Ok(proto::ChangesResponse {
        root: root.path.display().to_string(),
        clock,
        instance_id: String::new(),
        fresh_instance: !exact,
        changed,
        removed,
        removed_path_bytes,
        folders,
    })
}
