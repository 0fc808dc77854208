//! The live dependency graph of one root: a `DependencyIndex` rebuilt in the background after
//! each full reconcile and kept current by every applied event batch, plus a cached query
//! graph. Derived state: it lives in memory and is rebuilt from the files at start-up, so
//! dependency lists never tick the catalog's clock.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::deps::{DependencyIndex, Lang, ResolveConfig};
use crate::graph::{DepGraph, GraphBuilder};
use crate::paths::RelPath;
use crate::store::RootStore;

use super::DaemonError;

/// Largest file whose text is read for import extraction.
const MAX_SOURCE_BYTES: u64 = 1024 * 1024;

/// Manifest and configuration files whose text resolution reads.
fn is_resolution_input(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    Lang::from_path(path).is_some()
        || matches!(
            name,
            "go.mod" | "package.json" | "Cargo.toml" | "pyproject.toml" | "setup.py"
        )
        || (name.starts_with("tsconfig") || name.starts_with("jsconfig")) && name.ends_with(".json")
}

fn read_text(root: &Path, path: &str) -> Vec<u8> {
    if !is_resolution_input(path) {
        return Vec::new();
    }
    let abs = root.join(path);
    match std::fs::symlink_metadata(&abs) {
        Ok(m) if m.is_file() && m.len() <= MAX_SOURCE_BYTES => {
            std::fs::read(&abs).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

#[derive(Default)]
struct Inner {
    index: Option<DependencyIndex>,
    /// Bumped on every change; the cached query graph belongs to one generation.
    generation: u64,
    cache: Option<(u64, Arc<DepGraph>)>,
    /// While a rebuild runs, changes are queued here and replayed on its result.
    rebuilding: bool,
    pending: Vec<(String, bool)>,
    /// Rebuilds asked for so far (one per reconcile that changed files), and how many of them
    /// the index reflects: a rebuild that starts after a request answers it.
    requested: u64,
    built: u64,
    /// Why the last rebuild failed, until one succeeds.
    failed: Option<String>,
}

impl Inner {
    fn state(&self) -> GraphState {
        if self.index.is_some() && self.built >= self.requested {
            GraphState::Current
        } else if let Some(why) = &self.failed {
            GraphState::Failed(why.clone())
        } else {
            GraphState::Building
        }
    }
}

/// Whether a root's dependency lists are the truth about its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphState {
    /// Built, and every reconcile's changes are in it (event batches always are).
    Current,
    /// Not built yet, or a rebuild after a reconcile is under way (the previous graph, if
    /// any, still answers unsynced queries).
    Building,
    /// The last rebuild failed (the reason); the previous graph, if any, still answers.
    Failed(String),
}

/// One file's dependencies as the live graph knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileDeps {
    /// Repository files it imports.
    pub dependencies: Vec<String>,
    /// Imports naming something outside the repository.
    pub externals: Vec<String>,
    /// The graph is not current: the lists may be incomplete or stale (empty before the first
    /// build).
    pub pending: bool,
}

/// The dependency graph of one root.
#[derive(Default)]
pub struct RootGraph {
    inner: Mutex<Inner>,
    /// Held by the rebuild in progress, so two rebuilds never interleave their replays.
    rebuilds: Mutex<()>,
    /// Woken whenever a rebuild ends.
    settled: tokio::sync::Notify,
}

impl RootGraph {
    /// Whether the graph has been built (queries before that are refused as unavailable).
    pub fn is_ready(&self) -> bool {
        self.lock().index.is_some()
    }

    /// Whether the graph is current, building, or failed to build.
    pub fn state(&self) -> GraphState {
        self.lock().state()
    }

    /// Marks the graph stale until the next rebuild ends: call it under the root's writer
    /// when a reconcile changed files (a rebuild follows), so no synced query can slip in
    /// between the reconcile and the rebuild.
    pub fn request_rebuild(&self) {
        self.lock().requested += 1;
    }

    /// Waits until the graph is current or its rebuild failed, at most `timeout`; returns the
    /// state then (`Building` when the time ran out).
    pub async fn wait_settled(&self, timeout: Duration) -> GraphState {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            // Registered before the state is read, so a rebuild ending in between wakes us.
            settled.as_mut().enable();
            let state = self.state();
            if state != GraphState::Building {
                return state;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return self.state();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds the index from every catalogued file (blocking), then replays what changed
    /// meanwhile.
    pub fn rebuild(
        &self,
        root: &Path,
        store: &RootStore,
        config: &ResolveConfig,
    ) -> Result<(), DaemonError> {
        let _one = self.rebuilds.lock().unwrap_or_else(|p| p.into_inner());
        let target = {
            let mut inner = self.lock();
            inner.rebuilding = true;
            inner.pending.clear();
            inner.requested
        };
        let built = Self::build(root, store, config);
        let mut inner = self.lock();
        let mut index = match built {
            Ok(index) => index,
            Err(e) => {
                inner.rebuilding = false;
                inner.failed = Some(e.to_string());
                drop(inner);
                self.settled.notify_waiters();
                return Err(e);
            }
        };
        for (path, removed) in std::mem::take(&mut inner.pending) {
            if removed {
                index.remove(&path);
            } else {
                index.upsert(&path, &read_text(root, &path));
            }
        }
        index.finish();
        inner.index = Some(index);
        inner.rebuilding = false;
        inner.generation += 1;
        inner.built = inner.built.max(target);
        inner.failed = None;
        drop(inner);
        self.settled.notify_waiters();
        Ok(())
    }

    /// A fresh index of every catalogued file (blocking).
    fn build(
        root: &Path,
        store: &RootStore,
        config: &ResolveConfig,
    ) -> Result<DependencyIndex, DaemonError> {
        let mut index = DependencyIndex::new(config.clone());
        for rec in store.files_under(None) {
            let rec = rec?;
            let Some(path) = rec.path.as_str() else {
                continue;
            };
            index.upsert(path, &read_text(root, path));
        }
        index.finish();
        Ok(index)
    }

    /// Applies one batch of catalog changes (blocking: reads the changed sources).
    pub fn apply(&self, root: &Path, upserted: &[RelPath], removed: &[RelPath]) {
        let mut inner = self.lock();
        let changes = upserted
            .iter()
            .map(|p| (p, false))
            .chain(removed.iter().map(|p| (p, true)))
            .filter_map(|(p, r)| p.as_str().map(|s| (s.to_string(), r)));
        let changes: Vec<(String, bool)> = changes.collect();
        // A rebuild in progress replays these on its result; the current index (if any)
        // answers queries meanwhile, so it is updated too.
        if inner.rebuilding || inner.index.is_none() {
            inner.pending.extend(changes.iter().cloned());
        }
        if let Some(index) = inner.index.as_mut() {
            for (path, removed) in &changes {
                if *removed {
                    index.remove(path);
                } else {
                    index.upsert(path, &read_text(root, path));
                }
            }
            index.finish();
        }
        inner.generation += 1;
    }

    /// A file's resolved dependencies and external imports, and whether the graph is
    /// pending (then they may be incomplete: empty before the first build).
    pub fn edges_of(&self, path: &RelPath) -> FileDeps {
        let inner = self.lock();
        let pending = inner.state() != GraphState::Current;
        match (inner.index.as_ref(), path.as_str()) {
            (Some(index), Some(p)) => FileDeps {
                dependencies: index.edges(p).iter().map(|e| e.target.clone()).collect(),
                externals: index.externals(p).to_vec(),
                pending,
            },
            _ => FileDeps {
                pending,
                ..FileDeps::default()
            },
        }
    }

    /// The query graph of the current generation (built on first use after a change).
    pub fn snapshot(&self, store: &RootStore) -> Result<Option<Arc<DepGraph>>, DaemonError> {
        let generation = {
            let inner = self.lock();
            if inner.index.is_none() {
                return Ok(None);
            }
            if let Some((g, graph)) = &inner.cache {
                if *g == inner.generation {
                    return Ok(Some(Arc::clone(graph)));
                }
            }
            inner.generation
        };
        // Components and purposes come from the records, read without holding the lock.
        let mut builder = GraphBuilder::new();
        for rec in store.files_under(None) {
            let rec = rec?;
            if let Some(p) = rec.path.as_str() {
                builder.file(p, &rec.component, rec.purpose.as_str());
            }
        }
        let mut inner = self.lock();
        let Some(index) = inner.index.as_ref() else {
            return Ok(None);
        };
        builder.index_edges(index);
        let graph = Arc::new(builder.build());
        if inner.generation == generation {
            inner.cache = Some((generation, Arc::clone(&graph)));
        }
        Ok(Some(graph))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn waits_end_when_the_requested_rebuild_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        let root_store = store.root("r").unwrap();
        let graph = Arc::new(RootGraph::default());
        let path = RelPath::parse(b"a.py").unwrap();
        // Before the first build: building, and every answer says pending.
        assert_eq!(graph.state(), GraphState::Building);
        assert!(graph.edges_of(&path).pending);
        assert_eq!(
            graph.wait_settled(Duration::from_millis(20)).await,
            GraphState::Building
        );
        let waiter = {
            let graph = Arc::clone(&graph);
            tokio::spawn(async move { graph.wait_settled(Duration::from_secs(60)).await })
        };
        graph
            .rebuild(dir.path(), &root_store, &ResolveConfig::default())
            .unwrap();
        assert_eq!(waiter.await.unwrap(), GraphState::Current);
        assert!(!graph.edges_of(&path).pending);
        // A reconcile asks for a rebuild: pending again until one starts after the request
        // and ends.
        graph.request_rebuild();
        assert_eq!(graph.state(), GraphState::Building);
        assert!(graph.edges_of(&path).pending);
        graph
            .rebuild(dir.path(), &root_store, &ResolveConfig::default())
            .unwrap();
        assert_eq!(
            graph.wait_settled(Duration::from_millis(1)).await,
            GraphState::Current
        );
    }
}
