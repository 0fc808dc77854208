//! The Graph service: dependency queries over a root's live dependency graph.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status_of;
use crate::daemon::{DaemonState, Root};
use crate::graph::{DepGraph, ExportFilter, GraphError};
use crate::paths::RelPath;
use crate::proto;

/// Serves dependency-graph queries.
pub struct GraphService {
    state: Arc<DaemonState>,
}

impl GraphService {
    /// A service over the daemon's state.
    pub fn new(state: Arc<DaemonState>) -> Self {
        GraphService { state }
    }

    /// The root, synced unless asked not to, and its query graph.
    async fn graph(
        &self,
        root: &str,
        unsynced: bool,
    ) -> Result<(Arc<Root>, Arc<DepGraph>), Status> {
        let root = self.state.root(root).map_err(status_of)?;
        if !unsynced {
            self.state.sync().await.map_err(status_of)?;
            self.state
                .wait_graphs(std::slice::from_ref(&root))
                .await
                .map_err(status_of)?;
        }
        let r = Arc::clone(&root);
        let graph = tokio::task::spawn_blocking(move || r.graph.snapshot(&r.store))
            .await
            .map_err(|e| super::panics::join_status("graph", e))?
            .map_err(status_of)?;
        match graph {
            Some(g) => Ok((root, g)),
            None => Err(Status::unavailable(format!(
                "the dependency graph of {} is still being built; retry in a moment",
                root.path.display()
            ))),
        }
    }
}

fn path_arg(field: &str, raw: &str) -> Result<String, Status> {
    if raw.is_empty() {
        return Err(Status::invalid_argument(format!("`{field}` is required")));
    }
    RelPath::parse(raw.as_bytes())
        .map(|p| p.to_lossy())
        .map_err(|e| Status::invalid_argument(format!("`{field}`: {e}")))
}

fn graph_status(e: GraphError) -> Status {
    match e {
        GraphError::UnknownFile(_) | GraphError::UnknownComponent(_) => {
            Status::not_found(e.to_string())
        }
        GraphError::DepthWithoutFrom => Status::invalid_argument(e.to_string()),
    }
}

fn depth(d: u32) -> Option<usize> {
    (d > 0).then_some(d as usize)
}

#[tonic::async_trait]
impl proto::graph_server::Graph for GraphService {
    async fn dependencies(
        &self,
        request: Request<proto::DepsRequest>,
    ) -> Result<Response<proto::DepsResponse>, Status> {
        let req = request.into_inner();
        let path = path_arg("path", &req.path)?;
        let (root, g) = self.graph(&req.root, req.unsynced).await?;
        let d = Some(req.depth.max(1) as usize);
        let reached = if req.reverse {
            g.dependents(&path, d)
        } else {
            g.dependencies(&path, d)
        }
        .map_err(graph_status)?;
        let externals = RelPath::parse(path.as_bytes())
            .map(|p| root.graph.edges_of(&p).externals)
            .unwrap_or_default();
        let direct = if req.reverse {
            g.in_edges(&path)
        } else {
            g.out_edges(&path)
        }
        .map_err(graph_status)?;
        let how = |p: &str| {
            direct
                .iter()
                .find(|e| if req.reverse { e.from == p } else { e.to == p })
                .map(|e| (e.kind.clone(), e.line))
        };
        Ok(Response::new(proto::DepsResponse {
            files: reached
                .into_iter()
                .map(|r| {
                    let (kind, line) = if r.depth == 1 {
                        how(&r.path).unwrap_or_default()
                    } else {
                        Default::default()
                    };
                    proto::ReachedFile {
                        path: r.path,
                        depth: r.depth as u32,
                        kind,
                        line,
                    }
                })
                .collect(),
            externals: if req.reverse { Vec::new() } else { externals },
        }))
    }

    async fn related(
        &self,
        request: Request<proto::FileRelatedRequest>,
    ) -> Result<Response<proto::FileRelatedResponse>, Status> {
        let req = request.into_inner();
        let path = path_arg("path", &req.path)?;
        let (_, g) = self.graph(&req.root, req.unsynced).await?;
        let depth = if req.depth == 0 {
            2
        } else {
            req.depth as usize
        };
        let files = g.related(&path, depth).map_err(graph_status)?;
        Ok(Response::new(proto::FileRelatedResponse {
            files: files
                .into_iter()
                .map(|r| proto::RelatedFile {
                    path: r.path,
                    relation: r.relation.as_str().to_string(),
                    distance: r.distance as u32,
                })
                .collect(),
        }))
    }

    async fn affected(
        &self,
        request: Request<proto::AffectedRequest>,
    ) -> Result<Response<proto::AffectedResponse>, Status> {
        let req = request.into_inner();
        let (root, g) = self.graph(&req.root, req.unsynced).await?;
        let changed: Vec<String> = if let Some(since) = req.since_clock {
            if !req.paths.is_empty() {
                return Err(Status::invalid_argument(
                    "give either `paths` or `since_clock`, not both",
                ));
            }
            let instance = self.state.store.instance_id();
            if !req.instance_id.is_empty() && req.instance_id != instance {
                return Err(Status::failed_precondition(format!(
                    "clock {since} is from instance {}, this database is instance {instance} \
                     (rebuilt or repaired since): take a new clock with `wfdb clock`, or name \
                     the changed paths",
                    crate::quote::short(&req.instance_id)
                )));
            }
            let r = Arc::clone(&root);
            tokio::task::spawn_blocking(move || -> Result<Vec<String>, Status> {
                let answerable = r
                    .store
                    .can_answer_since(since)
                    .map_err(|e| status_of(e.into()))?;
                if !answerable {
                    return Err(Status::failed_precondition(format!(
                        "clock {since} cannot be answered exactly (from the future, or older \
                         than the removals the daemon keeps: see retention.tombstones); take a \
                         new clock with `wfdb clock`, or name the changed paths"
                    )));
                }
                let (records, removed) = r
                    .store
                    .changed_since(since)
                    .map_err(|e| status_of(e.into()))?;
                let mut out: Vec<String> = records.iter().map(|rec| rec.path.to_lossy()).collect();
                out.extend(removed.iter().map(RelPath::to_lossy));
                out.sort();
                Ok(out)
            })
            .await
            .map_err(|e| super::panics::join_status("graph", e))??
        } else {
            if req.paths.is_empty() {
                return Err(Status::invalid_argument(
                    "give the changed `paths` or a `since_clock`",
                ));
            }
            req.paths
                .iter()
                .map(|p| path_arg("paths", p))
                .collect::<Result<_, _>>()?
        };
        let set = g.affected(&changed, depth(req.depth));
        Ok(Response::new(proto::AffectedResponse {
            files: set
                .files
                .into_iter()
                .map(|a| proto::AffectedFile {
                    path: a.path,
                    depth: a.depth as u32,
                    witness: a.witness,
                })
                .collect(),
            changed,
            unknown: set.unknown,
        }))
    }

    async fn path(
        &self,
        request: Request<proto::PathRequest>,
    ) -> Result<Response<proto::PathResponse>, Status> {
        let req = request.into_inner();
        let from = path_arg("from", &req.from)?;
        let to = path_arg("to", &req.to)?;
        let (_, g) = self.graph(&req.root, req.unsynced).await?;
        let found = g.path(&from, &to).map_err(graph_status)?;
        Ok(Response::new(proto::PathResponse {
            found: found.is_some(),
            path: found.unwrap_or_default(),
        }))
    }

    async fn cycles(
        &self,
        request: Request<proto::CyclesRequest>,
    ) -> Result<Response<proto::CyclesResponse>, Status> {
        let req = request.into_inner();
        let (_, g) = self.graph(&req.root, req.unsynced).await?;
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        Ok(Response::new(proto::CyclesResponse {
            cycles: g
                .cycles()
                .into_iter()
                .take(limit)
                .map(|c| proto::CycleInfo {
                    files: c.files,
                    example: c.example,
                })
                .collect(),
        }))
    }

    async fn orphans(
        &self,
        request: Request<proto::OrphansRequest>,
    ) -> Result<Response<proto::OrphansResponse>, Status> {
        let req = request.into_inner();
        for p in &req.purposes {
            if crate::catalog::Purpose::parse(p).is_none() {
                return Err(Status::invalid_argument(format!(
                    "unknown purpose {}",
                    super::limits::short(p)
                )));
            }
        }
        let (_, g) = self.graph(&req.root, req.unsynced).await?;
        let purposes: Vec<&str> = req.purposes.iter().map(String::as_str).collect();
        Ok(Response::new(proto::OrphansResponse {
            files: g.orphans(&purposes),
        }))
    }

    async fn components(
        &self,
        request: Request<proto::ComponentsRequest>,
    ) -> Result<Response<proto::ComponentsResponse>, Status> {
        let req = request.into_inner();
        let (_, g) = self.graph(&req.root, req.unsynced).await?;
        let c = g.components();
        Ok(Response::new(proto::ComponentsResponse {
            components: c
                .components
                .into_iter()
                .map(|c| proto::ComponentInfo {
                    name: c.name,
                    files: c.files,
                    internal_edges: c.internal_edges as u64,
                })
                .collect(),
            edges: c
                .edges
                .into_iter()
                .map(|e| proto::ComponentEdgeInfo {
                    from: e.from,
                    to: e.to,
                    edges: e.edges as u64,
                })
                .collect(),
        }))
    }

    async fn rank(
        &self,
        request: Request<proto::RankRequest>,
    ) -> Result<Response<proto::RankResponse>, Status> {
        let req = request.into_inner();
        let (_, g) = self.graph(&req.root, req.unsynced).await?;
        let limit = if req.limit == 0 {
            20
        } else {
            req.limit as usize
        };
        Ok(Response::new(proto::RankResponse {
            files: g
                .rank(limit)
                .into_iter()
                .map(|r| proto::RankedFileInfo {
                    path: r.path,
                    score: r.score,
                    dependents: r.dependents as u64,
                })
                .collect(),
        }))
    }

    async fn export(
        &self,
        request: Request<proto::ExportGraphRequest>,
    ) -> Result<Response<proto::ExportGraphResponse>, Status> {
        let req = request.into_inner();
        let from = if req.from.is_empty() {
            None
        } else {
            Some(path_arg("from", &req.from)?)
        };
        let filter = ExportFilter {
            component: (!req.component.is_empty()).then(|| req.component.clone()),
            from,
            depth: depth(req.depth),
            ..Default::default()
        };
        let (_, g) = self.graph(&req.root, req.unsynced).await?;
        let text = match req.format.as_str() {
            "dot" | "" => g.to_dot(&filter),
            "mermaid" => g.to_mermaid(&filter),
            "json" => g.to_json(&filter),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown format {}: use dot, mermaid or json",
                    super::limits::short(other)
                )))
            }
        }
        .map_err(graph_status)?;
        Ok(Response::new(proto::ExportGraphResponse { text }))
    }
}
