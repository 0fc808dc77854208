//! The Knowledge service: the knowledge graph, derived from the catalog and the registry on
//! every call (so it is always current), its queries, and `Rebuild`, which compares the graph
//! derived now with the one recorded by the previous rebuild and records the new one.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::agents::OwnerMatcher;
use super::registry::{now_ms, RegistryContext};
use super::status_of;
use super::structs::struct_of_value;
use crate::catalog::FileRecord;
use crate::daemon::DaemonState;
use crate::proto;
use crate::registry::{
    Agent, Direction, Edge, EdgeKind, FileInput, GraphInputs, KnowledgeGraph, NodeId, NodeKind,
    Run, SessionVersion, WorkflowDefinition,
};
use crate::store::registry::{GraphSnapshot, RegistryStore, RegistryStoreError};

/// Queries the knowledge graph.
pub struct KnowledgeService {
    ctx: RegistryContext,
}

impl KnowledgeService {
    /// A service over the registry.
    pub fn new(ctx: RegistryContext) -> Self {
        KnowledgeService { ctx }
    }
}

/// One catalogued file with its graph key.
pub struct KeyedFile {
    /// The file's key in the graph and the export: its root-relative path with one root,
    /// `ROOT_ID:path` with several.
    pub key: String,
    /// The root's id.
    pub root_id: String,
    /// The record.
    pub record: FileRecord,
    /// Root-relative paths of the files it imports, from the root's live dependency graph.
    pub dependencies: Vec<String>,
    /// Its imports of things outside the repository.
    pub externals: Vec<String>,
    /// The graph was not current when read (see [`wait_for_dependency_graphs`]).
    pub dependencies_pending: bool,
    /// Dependencies as graph keys.
    pub dependency_keys: Vec<String>,
    /// Agents owning the file.
    pub owners: Vec<String>,
}

/// A file's key in the knowledge graph, the export and the report: its root-relative path
/// with one root, `ROOT_ID:path` with several.
pub fn graph_key(qualified: bool, root_id: &str, path: &str) -> String {
    if qualified {
        format!("{root_id}:{path}")
    } else {
        path.to_string()
    }
}

/// Every record the graph is derived from.
pub struct GraphRecords {
    /// Catalogued files of every root.
    pub files: Vec<KeyedFile>,
    /// Registered agents.
    pub agents: Vec<Agent>,
    /// Latest version of each workflow.
    pub workflows: Vec<WorkflowDefinition>,
    /// Every run.
    pub runs: Vec<Run>,
    /// Latest version of each session.
    pub sessions: Vec<SessionVersion>,
}

impl GraphRecords {
    /// Reads everything (blocking: call from a blocking task, after
    /// [`wait_for_dependency_graphs`]). Dependencies come from each root's live graph: stored
    /// records do not hold them.
    pub fn load(
        state: &DaemonState,
        reg: &RegistryStore,
    ) -> Result<GraphRecords, RegistryStoreError> {
        GraphRecords::load_roots(&state.roots(), reg)
    }

    /// Reads everything of these roots (blocking; also used offline, without a daemon).
    pub fn load_roots(
        roots: &[Arc<crate::daemon::Root>],
        reg: &RegistryStore,
    ) -> Result<GraphRecords, RegistryStoreError> {
        let agents = reg.agents()?;
        let owners = OwnerMatcher::new(&agents);
        let qualified = roots.len() > 1;
        let key = |root_id: &str, path: &str| graph_key(qualified, root_id, path);
        let mut files = Vec::new();
        for root in roots {
            for rec in root.store.files_under(None) {
                let record = rec?;
                let path = record.path.to_lossy();
                let deps = root.graph.edges_of(&record.path);
                files.push(KeyedFile {
                    key: key(&root.id, &path),
                    root_id: root.id.clone(),
                    dependency_keys: deps.dependencies.iter().map(|d| key(&root.id, d)).collect(),
                    dependencies: deps.dependencies,
                    externals: deps.externals,
                    dependencies_pending: deps.pending,
                    owners: owners.owners(&path),
                    record,
                });
            }
        }
        Ok(GraphRecords {
            files,
            agents,
            workflows: reg.latest_workflows()?,
            runs: reg.runs()?,
            sessions: reg.latest_sessions()?,
        })
    }

    /// Derives the knowledge graph.
    pub fn graph(&self) -> KnowledgeGraph {
        let inputs: Vec<FileInput<'_>> = self
            .files
            .iter()
            .map(|f| FileInput {
                path: &f.key,
                component: Some(f.record.component.as_str()),
                dependencies: &f.dependency_keys,
            })
            .collect();
        let owned: Vec<(String, String)> = self
            .files
            .iter()
            .flat_map(|f| f.owners.iter().map(|a| (a.clone(), f.key.clone())))
            .collect();
        KnowledgeGraph::derive(&GraphInputs {
            files: &inputs,
            agents: &self.agents,
            workflows: &self.workflows,
            runs: &self.runs,
            sessions: &self.sessions,
            owned_files: &owned,
        })
    }
}

/// Waits (at most the sync timeout) until the dependency graph of every root is current, so
/// what is derived from the files carries their real `depends_on` edges; refuses with
/// DEADLINE_EXCEEDED while a graph is still being built, never answers without them.
pub async fn wait_for_dependency_graphs(state: &DaemonState) -> Result<(), Status> {
    state.wait_graphs(&state.roots()).await.map_err(status_of)
}

/// Derives the graph now from the daemon's records.
pub async fn current_graph(ctx: &RegistryContext) -> Result<KnowledgeGraph, Status> {
    wait_for_dependency_graphs(&ctx.state).await?;
    let state = Arc::clone(&ctx.state);
    ctx.blocking(move |reg| Ok(GraphRecords::load(&state, &reg)?.graph()))
        .await
}

/// An edge as served.
pub fn edge_proto(e: &Edge) -> proto::GraphEdge {
    proto::GraphEdge {
        source: e.from.to_string(),
        kind: e.kind.as_str().to_string(),
        target: e.to.to_string(),
    }
}

fn node(s: &str) -> Result<NodeId, Status> {
    NodeId::parse(s).ok_or_else(|| {
        Status::invalid_argument(format!(
            "{} is not a node id; write KIND:NAME with KIND one of {} (e.g. file:src/main.rs, agent:codex)",
            super::limits::short(s),
            NodeKind::ALL.map(|k| k.as_str()).join(", ")
        ))
    })
}

fn kinds(list: &[String]) -> Result<Vec<EdgeKind>, Status> {
    list.iter()
        .map(|k| {
            EdgeKind::parse(k).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "unknown edge kind {}; the kinds are {}",
                    super::limits::short(k),
                    EdgeKind::ALL.map(|k| k.as_str()).join(", ")
                ))
            })
        })
        .collect()
}

fn missing(n: &NodeId) -> Status {
    Status::not_found(format!(
        "no node {n} in the knowledge graph (`wfdb kg show` lists the nodes)"
    ))
}

fn count_entries<K: ToString>(m: std::collections::BTreeMap<K, usize>) -> Vec<proto::CountEntry> {
    m.into_iter()
        .map(|(k, n)| proto::CountEntry {
            key: k.to_string(),
            count: n as u64,
        })
        .collect()
}

#[tonic::async_trait]
impl proto::knowledge_server::Knowledge for KnowledgeService {
    async fn neighbors(
        &self,
        request: Request<proto::NeighborsRequest>,
    ) -> Result<Response<proto::NeighborsResponse>, Status> {
        let req = request.into_inner();
        let n = node(&req.node)?;
        let kinds = kinds(&req.kinds)?;
        let direction = match proto::Direction::try_from(req.direction) {
            Ok(proto::Direction::Out) => Direction::Out,
            Ok(proto::Direction::In) => Direction::In,
            _ => Direction::Both,
        };
        let g = current_graph(&self.ctx).await?;
        if !g.contains(&n) {
            return Err(missing(&n));
        }
        let neighbors = g
            .neighbors(&n, direction, &kinds)
            .into_iter()
            .map(|nb| proto::Neighbor {
                node: nb.node.to_string(),
                kind: nb.kind.as_str().to_string(),
                direction: match nb.direction {
                    Direction::In => "in",
                    _ => "out",
                }
                .to_string(),
            })
            .collect();
        Ok(Response::new(proto::NeighborsResponse { neighbors }))
    }

    async fn related(
        &self,
        request: Request<proto::RelatedRequest>,
    ) -> Result<Response<proto::RelatedResponse>, Status> {
        let req = request.into_inner();
        let n = node(&req.node)?;
        let kinds = kinds(&req.kinds)?;
        let only = if req.node_kind.is_empty() {
            None
        } else {
            Some(NodeKind::parse(&req.node_kind).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "unknown node kind {}",
                    super::limits::short(&req.node_kind)
                ))
            })?)
        };
        let depth = if req.max_depth == 0 { 2 } else { req.max_depth };
        let g = current_graph(&self.ctx).await?;
        if !g.contains(&n) {
            return Err(missing(&n));
        }
        let nodes = g
            .related(&n, depth as usize, &kinds)
            .into_iter()
            .filter(|(m, _)| only.is_none_or(|k| m.kind() == k))
            .map(|(m, d)| proto::RelatedNode {
                node: m.to_string(),
                distance: d as u32,
            })
            .collect();
        Ok(Response::new(proto::RelatedResponse { nodes }))
    }

    async fn shortest_path(
        &self,
        request: Request<proto::ShortestPathRequest>,
    ) -> Result<Response<proto::ShortestPathResponse>, Status> {
        let req = request.into_inner();
        let (from, to) = (node(&req.source)?, node(&req.target)?);
        let kinds = kinds(&req.kinds)?;
        let g = current_graph(&self.ctx).await?;
        for n in [&from, &to] {
            if !g.contains(n) {
                return Err(missing(n));
            }
        }
        let resp = match g.shortest_path(&from, &to, &kinds) {
            Some(p) => proto::ShortestPathResponse {
                found: true,
                nodes: p.nodes.iter().map(|n| n.to_string()).collect(),
                edges: p.edges.iter().map(edge_proto).collect(),
            },
            None => proto::ShortestPathResponse::default(),
        };
        Ok(Response::new(resp))
    }

    async fn lookup(
        &self,
        request: Request<proto::LookupRequest>,
    ) -> Result<Response<proto::LookupResponse>, Status> {
        let req = request.into_inner();
        let g = current_graph(&self.ctx).await?;
        let names = match req.relation.as_str() {
            "agent_workflows" => g.agent_workflows(&req.name),
            "workflow_agents" => g.workflow_agents(&req.name),
            "component_files" => g.component_files(&req.name),
            "agent_files" => g.agent_files(&req.name),
            "file_agents" => g.file_agents(&req.name),
            "capability_agents" => g.capability_agents(&req.name),
            "related_files" => g.related_files(&req.name, 2),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown relation {}; use agent_workflows, workflow_agents, component_files, agent_files, file_agents, capability_agents or related_files",
                    super::limits::short(other)
                )))
            }
        };
        Ok(Response::new(proto::LookupResponse { names }))
    }

    async fn get_graph(
        &self,
        request: Request<proto::GetGraphRequest>,
    ) -> Result<Response<proto::GetGraphResponse>, Status> {
        let full = request.into_inner().full;
        let g = current_graph(&self.ctx).await?;
        Ok(Response::new(proto::GetGraphResponse {
            node_count: g.node_count() as u64,
            edge_count: g.edge_count() as u64,
            nodes_by_kind: count_entries(g.node_counts()),
            edges_by_kind: count_entries(g.edge_counts()),
            original: Some(struct_of_value(&g.to_original_json())),
            nodes: if full {
                g.nodes().map(|n| n.to_string()).collect()
            } else {
                Vec::new()
            },
            edges: if full {
                g.edges().map(|e| edge_proto(&e)).collect()
            } else {
                Vec::new()
            },
        }))
    }

    async fn rebuild(
        &self,
        _request: Request<proto::RebuildRequest>,
    ) -> Result<Response<proto::RebuildResponse>, Status> {
        wait_for_dependency_graphs(&self.ctx.state).await?;
        let state = Arc::clone(&self.ctx.state);
        let now = now_ms();
        let resp = self
            .ctx
            .blocking(move |reg| {
                let new = GraphRecords::load(&state, &reg)?.graph();
                let previous = reg.graph_snapshot()?;
                let old = previous.as_ref().map(graph_of_snapshot).unwrap_or_default();
                let diff = old.diff(&new);
                reg.set_graph_snapshot(&snapshot_of_graph(&new, now))?;
                Ok(proto::RebuildResponse {
                    first: previous.is_none(),
                    node_count: new.node_count() as u64,
                    edge_count: new.edge_count() as u64,
                    added_nodes: diff.added_nodes.iter().map(|n| n.to_string()).collect(),
                    removed_nodes: diff.removed_nodes.iter().map(|n| n.to_string()).collect(),
                    added_edges: diff.added_edges.iter().map(edge_proto).collect(),
                    removed_edges: diff.removed_edges.iter().map(edge_proto).collect(),
                    previous_at_ms: previous.map_or(0, |p| p.at_ms),
                })
            })
            .await?;
        Ok(Response::new(resp))
    }
}

/// The graph as recorded in the store.
fn snapshot_of_graph(g: &KnowledgeGraph, now: i64) -> GraphSnapshot {
    GraphSnapshot {
        at_ms: now,
        nodes: g.nodes().map(|n| n.to_string()).collect(),
        edges: g
            .edges()
            .map(|e| {
                (
                    e.from.to_string(),
                    e.kind.as_str().to_string(),
                    e.to.to_string(),
                )
            })
            .collect(),
    }
}

/// The recorded graph back as a graph (entries that no longer parse are skipped).
fn graph_of_snapshot(s: &GraphSnapshot) -> KnowledgeGraph {
    let mut g = KnowledgeGraph::new();
    for n in s.nodes.iter().filter_map(|n| NodeId::parse(n)) {
        g.add_node(n);
    }
    for (from, kind, to) in &s.edges {
        if let (Some(f), Some(k), Some(t)) = (
            NodeId::parse(from),
            EdgeKind::parse(kind),
            NodeId::parse(to),
        ) {
            g.add_edge(f, k, t);
        }
    }
    g
}
