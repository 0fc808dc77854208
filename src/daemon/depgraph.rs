//! The live dependency graph of one root: a `DependencyIndex` rebuilt in the background after
//! each full reconcile and kept current by every applied event batch, plus a cached query
//! graph. Derived state: it lives in memory and is rebuilt from the files at start-up, so
//! dependency lists never tick the catalog's clock.

use std::path::Path;
use std::sync::{Arc, Mutex};

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
}

/// The dependency graph of one root.
#[derive(Default)]
pub struct RootGraph {
    inner: Mutex<Inner>,
}

impl RootGraph {
    /// Whether the graph has been built (queries before that are refused as unavailable).
    pub fn is_ready(&self) -> bool {
        self.lock().index.is_some()
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
        {
            let mut inner = self.lock();
            inner.rebuilding = true;
            inner.pending.clear();
        }
        let mut index = DependencyIndex::new(config.clone());
        for rec in store.files_under(None) {
            let rec = rec?;
            let Some(path) = rec.path.as_str() else {
                continue;
            };
            index.upsert(path, &read_text(root, path));
        }
        index.finish();
        let mut inner = self.lock();
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
        Ok(())
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

    /// A file's resolved dependencies and external imports (empty until the graph is built).
    pub fn edges_of(&self, path: &RelPath) -> (Vec<String>, Vec<String>) {
        let inner = self.lock();
        match (inner.index.as_ref(), path.as_str()) {
            (Some(index), Some(p)) => (
                index.edges(p).iter().map(|e| e.target.clone()).collect(),
                index.externals(p).to_vec(),
            ),
            _ => (Vec::new(), Vec::new()),
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
