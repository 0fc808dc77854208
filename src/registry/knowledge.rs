//! The knowledge graph: one typed graph over files, components, agents, capabilities,
//! workflows, runs and sessions, derived from the records, with neighbourhood, depth and path
//! queries, a diff for `kg rebuild`, and the original system's `knowledge_graph` JSON shape.
//!
//! Node ids are `KIND:NAME` with KIND one of `file`, `component`, `agent`, `capability`,
//! `workflow`, `run`, `session` (the name is everything after the first `:`, so it may
//! itself contain colons). Edges, each `from --kind--> to`:
//!
//! | kind             | from       | to         | derived from                                   |
//! |------------------|------------|------------|------------------------------------------------|
//! | `belongs_to`     | file       | component  | the file's component                           |
//! | `depends_on`     | file       | file       | the file's dependencies that are known files   |
//! | `requires`       | workflow   | agent      | required agents (+ step agents not required)   |
//! | `has_capability` | agent      | capability | the agent's capabilities                       |
//! | `owns`           | agent      | file       | files matching the agent's owned-path globs    |
//! | `uses`           | session    | workflow   | workflow ids in the session's workflow_progress|
//! | `run_of`         | run        | workflow   | the run's workflow                             |
//!
//! A required agent that is not registered still gets its node (so the graph shows what a
//! workflow lacks); dependencies that are not files of the catalog (externals such as
//! `numpy`) and `uses`/`run_of` references to workflows that do not exist get no edge.

use super::agent::Agent;
use super::run::Run;
use super::session::SessionVersion;
use super::workflow::WorkflowDefinition;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    File,
    Component,
    Agent,
    Capability,
    Workflow,
    Run,
    Session,
}

impl NodeKind {
    pub const ALL: [NodeKind; 7] = [
        NodeKind::File,
        NodeKind::Component,
        NodeKind::Agent,
        NodeKind::Capability,
        NodeKind::Workflow,
        NodeKind::Run,
        NodeKind::Session,
    ];

    /// The id prefix: `file`, `component`, …
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Component => "component",
            NodeKind::Agent => "agent",
            NodeKind::Capability => "capability",
            NodeKind::Workflow => "workflow",
            NodeKind::Run => "run",
            NodeKind::Session => "session",
        }
    }

    pub fn parse(s: &str) -> Option<NodeKind> {
        NodeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node id, `KIND:NAME` (e.g. `file:src/main.rs`, `workflow:ui_generation`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(kind: NodeKind, name: &str) -> NodeId {
        NodeId(format!("{}:{name}", kind.as_str()))
    }

    pub fn file(path: &str) -> NodeId {
        NodeId::new(NodeKind::File, path)
    }
    pub fn component(name: &str) -> NodeId {
        NodeId::new(NodeKind::Component, name)
    }
    pub fn agent(name: &str) -> NodeId {
        NodeId::new(NodeKind::Agent, name)
    }
    pub fn capability(name: &str) -> NodeId {
        NodeId::new(NodeKind::Capability, name)
    }
    pub fn workflow(id: &str) -> NodeId {
        NodeId::new(NodeKind::Workflow, id)
    }
    pub fn run(id: &str) -> NodeId {
        NodeId::new(NodeKind::Run, id)
    }
    pub fn session(id: &str) -> NodeId {
        NodeId::new(NodeKind::Session, id)
    }

    /// Parses `KIND:NAME` (for ids given by clients); `None` when the kind is unknown or the
    /// name is empty.
    pub fn parse(s: &str) -> Option<NodeId> {
        let (kind, name) = s.split_once(':')?;
        NodeKind::parse(kind)?;
        (!name.is_empty()).then(|| NodeId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> NodeKind {
        self.0
            .split_once(':')
            .and_then(|(k, _)| NodeKind::parse(k))
            .unwrap_or(NodeKind::File)
    }

    /// The part after `KIND:`.
    pub fn name(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(_, n)| n)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The type of a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// file → component
    BelongsTo,
    /// file → file
    DependsOn,
    /// workflow → agent
    Requires,
    /// agent → capability
    HasCapability,
    /// agent → file
    Owns,
    /// session → workflow
    Uses,
    /// run → workflow
    RunOf,
}

impl EdgeKind {
    pub const ALL: [EdgeKind; 7] = [
        EdgeKind::BelongsTo,
        EdgeKind::DependsOn,
        EdgeKind::Requires,
        EdgeKind::HasCapability,
        EdgeKind::Owns,
        EdgeKind::Uses,
        EdgeKind::RunOf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::BelongsTo => "belongs_to",
            EdgeKind::DependsOn => "depends_on",
            EdgeKind::Requires => "requires",
            EdgeKind::HasCapability => "has_capability",
            EdgeKind::Owns => "owns",
            EdgeKind::Uses => "uses",
            EdgeKind::RunOf => "run_of",
        }
    }

    pub fn parse(s: &str) -> Option<EdgeKind> {
        EdgeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kinds of node this edge goes from and to.
    pub fn endpoints(self) -> (NodeKind, NodeKind) {
        match self {
            EdgeKind::BelongsTo => (NodeKind::File, NodeKind::Component),
            EdgeKind::DependsOn => (NodeKind::File, NodeKind::File),
            EdgeKind::Requires => (NodeKind::Workflow, NodeKind::Agent),
            EdgeKind::HasCapability => (NodeKind::Agent, NodeKind::Capability),
            EdgeKind::Owns => (NodeKind::Agent, NodeKind::File),
            EdgeKind::Uses => (NodeKind::Session, NodeKind::Workflow),
            EdgeKind::RunOf => (NodeKind::Run, NodeKind::Workflow),
        }
    }
}

impl fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A directed, typed edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Edge {
    pub from: NodeId,
    pub kind: EdgeKind,
    pub to: NodeId,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -{}-> {}", self.from, self.kind, self.to)
    }
}

/// Which way to follow edges from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Edges leaving the node.
    Out,
    /// Edges arriving at the node.
    In,
    Both,
}

/// A node next to another, and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Neighbor {
    pub node: NodeId,
    pub kind: EdgeKind,
    /// `Out`: the edge goes from the queried node to `node`; `In`: from `node` to it.
    pub direction: Direction,
}

/// A path between two nodes: `nodes[0]` is the start, `edges[i]` joins `nodes[i]` and
/// `nodes[i+1]` (in either direction: paths ignore edge direction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphPath {
    pub nodes: Vec<NodeId>,
    pub edges: Vec<Edge>,
}

/// What changed between two graphs (`old.diff(&new)`), each list sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GraphDiff {
    pub added_nodes: Vec<NodeId>,
    pub removed_nodes: Vec<NodeId>,
    pub added_edges: Vec<Edge>,
    pub removed_edges: Vec<Edge>,
}

impl GraphDiff {
    pub fn is_empty(&self) -> bool {
        self.added_nodes.is_empty()
            && self.removed_nodes.is_empty()
            && self.added_edges.is_empty()
            && self.removed_edges.is_empty()
    }
}

/// A catalogued file as the graph sees it. `path` is the caller's key for the file (with
/// several roots, a root-qualified path); `dependencies` use the same keys (anything that is
/// not a known file, e.g. an external module, is ignored); `component` `None` or empty means
/// none.
#[derive(Debug, Clone, Copy)]
pub struct FileInput<'a> {
    pub path: &'a str,
    pub component: Option<&'a str>,
    pub dependencies: &'a [String],
}

/// The records the graph is derived from.
#[derive(Debug, Clone, Copy, Default)]
pub struct GraphInputs<'a> {
    pub files: &'a [FileInput<'a>],
    pub agents: &'a [Agent],
    pub workflows: &'a [WorkflowDefinition],
    pub runs: &'a [Run],
    /// The latest version of each session.
    pub sessions: &'a [SessionVersion],
    /// `(agent name, file path)` ownership pairs, e.g. from [`owned_files_with`].
    pub owned_files: &'a [(String, String)],
}

/// Ownership pairs `(agent, path)`: each agent owns the paths that match one of its
/// `owned_paths` globs according to `matches(glob, path)` (the caller supplies the glob
/// engine). Sorted, without duplicates.
pub fn owned_files_with<F>(agents: &[Agent], paths: &[&str], matches: F) -> Vec<(String, String)>
where
    F: Fn(&str, &str) -> bool,
{
    let mut out = BTreeSet::new();
    for agent in agents {
        for path in paths {
            if agent.owned_paths.iter().any(|g| matches(g, path)) {
                out.insert((agent.name.clone(), path.to_string()));
            }
        }
    }
    out.into_iter().collect()
}

/// A typed directed graph with adjacency both ways. Deterministic: every listing is sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KnowledgeGraph {
    nodes: BTreeSet<NodeId>,
    out: BTreeMap<NodeId, BTreeSet<(EdgeKind, NodeId)>>,
    inc: BTreeMap<NodeId, BTreeSet<(EdgeKind, NodeId)>>,
}

/// Keys of [`KnowledgeGraph::to_original_json`] that hold relations; a component with one of
/// these names is written as `component:NAME` instead.
pub const ORIGINAL_RELATION_KEYS: [(&str, EdgeKind); 6] = [
    ("workflow_dependencies", EdgeKind::Requires),
    ("agent_capabilities", EdgeKind::HasCapability),
    ("agent_files", EdgeKind::Owns),
    ("file_dependencies", EdgeKind::DependsOn),
    ("session_workflows", EdgeKind::Uses),
    ("run_workflows", EdgeKind::RunOf),
];

impl KnowledgeGraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Derives the whole graph from the records (see the module docs for the rules).
    pub fn derive(inputs: &GraphInputs<'_>) -> KnowledgeGraph {
        let mut g = KnowledgeGraph::new();
        let files: BTreeSet<&str> = inputs.files.iter().map(|f| f.path).collect();
        for f in inputs.files {
            let file = NodeId::file(f.path);
            g.add_node(file.clone());
            if let Some(c) = f.component.filter(|c| !c.is_empty()) {
                g.add_edge(file.clone(), EdgeKind::BelongsTo, NodeId::component(c));
            }
            for dep in f.dependencies {
                if dep != f.path && files.contains(dep.as_str()) {
                    g.add_edge(file.clone(), EdgeKind::DependsOn, NodeId::file(dep));
                }
            }
        }
        let agents: BTreeSet<&str> = inputs.agents.iter().map(|a| a.name.as_str()).collect();
        for a in inputs.agents {
            let agent = NodeId::agent(&a.name);
            g.add_node(agent.clone());
            for c in &a.capabilities {
                g.add_edge(
                    agent.clone(),
                    EdgeKind::HasCapability,
                    NodeId::capability(&c.name),
                );
            }
        }
        for (agent, path) in inputs.owned_files {
            if agents.contains(agent.as_str()) && files.contains(path.as_str()) {
                g.add_edge(NodeId::agent(agent), EdgeKind::Owns, NodeId::file(path));
            }
        }
        let workflows: BTreeSet<&str> = inputs
            .workflows
            .iter()
            .map(|w| w.workflow_id.as_str())
            .collect();
        for w in inputs.workflows {
            let wf = NodeId::workflow(&w.workflow_id);
            g.add_node(wf.clone());
            for agent in w.needed_agents() {
                g.add_edge(wf.clone(), EdgeKind::Requires, NodeId::agent(agent));
            }
        }
        for r in inputs.runs {
            let run = NodeId::run(&r.run_id);
            g.add_node(run.clone());
            if workflows.contains(r.workflow_id.as_str()) {
                g.add_edge(run, EdgeKind::RunOf, NodeId::workflow(&r.workflow_id));
            }
        }
        for s in inputs.sessions {
            let session = NodeId::session(&s.session_id);
            g.add_node(session.clone());
            for w in s.workflow_ids() {
                if workflows.contains(w.as_str()) {
                    g.add_edge(session.clone(), EdgeKind::Uses, NodeId::workflow(&w));
                }
            }
        }
        g
    }

    // ---- building and incremental upkeep ----

    /// Adds a node (no-op if present).
    pub fn add_node(&mut self, node: NodeId) {
        self.nodes.insert(node);
    }

    /// Adds an edge and its end nodes. Returns false if it was already there.
    pub fn add_edge(&mut self, from: NodeId, kind: EdgeKind, to: NodeId) -> bool {
        self.nodes.insert(from.clone());
        self.nodes.insert(to.clone());
        self.inc
            .entry(to.clone())
            .or_default()
            .insert((kind, from.clone()));
        self.out.entry(from).or_default().insert((kind, to))
    }

    /// Removes an edge (its nodes stay). Returns whether it was there.
    pub fn remove_edge(&mut self, from: &NodeId, kind: EdgeKind, to: &NodeId) -> bool {
        let removed = remove_adj(&mut self.out, from, kind, to);
        remove_adj(&mut self.inc, to, kind, from);
        removed
    }

    /// Removes a node and every edge touching it. Returns whether it was there.
    pub fn remove_node(&mut self, node: &NodeId) -> bool {
        for (kind, to) in self.out.remove(node).unwrap_or_default() {
            remove_adj(&mut self.inc, &to, kind, node);
        }
        for (kind, from) in self.inc.remove(node).unwrap_or_default() {
            remove_adj(&mut self.out, &from, kind, node);
        }
        self.nodes.remove(node)
    }

    /// Removes the edges of `kind` leaving `node` (e.g. before re-adding an agent's
    /// capabilities). Returns how many went.
    pub fn remove_out_edges(&mut self, node: &NodeId, kind: EdgeKind) -> usize {
        let targets: Vec<NodeId> = self
            .out
            .get(node)
            .map(|s| {
                s.iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, t)| t.clone())
                    .collect()
            })
            .unwrap_or_default();
        for t in &targets {
            self.remove_edge(node, kind, t);
        }
        targets.len()
    }

    // ---- inspection ----

    pub fn contains(&self, node: &NodeId) -> bool {
        self.nodes.contains(node)
    }

    pub fn has_edge(&self, from: &NodeId, kind: EdgeKind, to: &NodeId) -> bool {
        self.out
            .get(from)
            .is_some_and(|s| s.contains(&(kind, to.clone())))
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn edge_count(&self) -> usize {
        self.out.values().map(BTreeSet::len).sum()
    }

    /// All nodes, sorted.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.nodes.iter()
    }

    /// Nodes of one kind, sorted.
    pub fn nodes_of_kind(&self, kind: NodeKind) -> Vec<&NodeId> {
        self.nodes.iter().filter(|n| n.kind() == kind).collect()
    }

    /// All edges, sorted by (from, kind, to).
    pub fn edges(&self) -> impl Iterator<Item = Edge> + '_ {
        self.out.iter().flat_map(|(from, set)| {
            set.iter().map(move |(kind, to)| Edge {
                from: from.clone(),
                kind: *kind,
                to: to.clone(),
            })
        })
    }

    /// Node counts per kind (every kind present, possibly 0).
    pub fn node_counts(&self) -> BTreeMap<NodeKind, usize> {
        let mut m: BTreeMap<NodeKind, usize> = NodeKind::ALL.iter().map(|k| (*k, 0)).collect();
        for n in &self.nodes {
            *m.entry(n.kind()).or_default() += 1;
        }
        m
    }

    /// Edge counts per kind (every kind present, possibly 0).
    pub fn edge_counts(&self) -> BTreeMap<EdgeKind, usize> {
        let mut m: BTreeMap<EdgeKind, usize> = EdgeKind::ALL.iter().map(|k| (*k, 0)).collect();
        for set in self.out.values() {
            for (k, _) in set {
                *m.entry(*k).or_default() += 1;
            }
        }
        m
    }

    // ---- queries ----

    /// The nodes joined to `node` by an edge of one of `kinds` (all kinds when empty) in
    /// `direction`. Sorted by direction (out first), then kind, then node.
    pub fn neighbors(
        &self,
        node: &NodeId,
        direction: Direction,
        kinds: &[EdgeKind],
    ) -> Vec<Neighbor> {
        let wanted = |k: &EdgeKind| kinds.is_empty() || kinds.contains(k);
        let mut out = Vec::new();
        if matches!(direction, Direction::Out | Direction::Both) {
            if let Some(set) = self.out.get(node) {
                out.extend(
                    set.iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, n)| Neighbor {
                            node: n.clone(),
                            kind: *k,
                            direction: Direction::Out,
                        }),
                );
            }
        }
        if matches!(direction, Direction::In | Direction::Both) {
            if let Some(set) = self.inc.get(node) {
                out.extend(
                    set.iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, n)| Neighbor {
                            node: n.clone(),
                            kind: *k,
                            direction: Direction::In,
                        }),
                );
            }
        }
        out
    }

    /// Each node and edge next to `node` regardless of direction, in a fixed order.
    fn undirected(&self, node: &NodeId, kinds: &[EdgeKind]) -> Vec<(NodeId, Edge)> {
        self.neighbors(node, Direction::Both, kinds)
            .into_iter()
            .map(|n| {
                let edge = match n.direction {
                    Direction::In => Edge {
                        from: n.node.clone(),
                        kind: n.kind,
                        to: node.clone(),
                    },
                    _ => Edge {
                        from: node.clone(),
                        kind: n.kind,
                        to: n.node.clone(),
                    },
                };
                (n.node, edge)
            })
            .collect()
    }

    /// Nodes within `max_depth` edges of `node`, following edges both ways (of `kinds`, all
    /// when empty), with their distance; `node` itself excluded. Sorted by (distance, node).
    pub fn related(
        &self,
        node: &NodeId,
        max_depth: usize,
        kinds: &[EdgeKind],
    ) -> Vec<(NodeId, usize)> {
        let mut seen: BTreeMap<NodeId, usize> = BTreeMap::new();
        if !self.contains(node) {
            return Vec::new();
        }
        seen.insert(node.clone(), 0);
        let mut queue = VecDeque::from([(node.clone(), 0usize)]);
        while let Some((n, d)) = queue.pop_front() {
            if d == max_depth {
                continue;
            }
            for (next, _) in self.undirected(&n, kinds) {
                if !seen.contains_key(&next) {
                    seen.insert(next.clone(), d + 1);
                    queue.push_back((next, d + 1));
                }
            }
        }
        seen.remove(node);
        let mut v: Vec<(NodeId, usize)> = seen.into_iter().collect();
        v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// The files related to `path` within `max_depth` edges, both ways, over any edge kind
    /// (the original's `get_related_files`, default depth 2: its dependencies and dependents,
    /// and — through the component at depth 2 — the files of the same component, or through
    /// an owning agent, files the same agent owns). Sorted by (distance, path).
    pub fn related_files(&self, path: &str, max_depth: usize) -> Vec<String> {
        self.related(&NodeId::file(path), max_depth, &[])
            .into_iter()
            .filter(|(n, _)| n.kind() == NodeKind::File)
            .map(|(n, _)| n.name().to_string())
            .collect()
    }

    /// A shortest path from `from` to `to` ignoring edge direction (over `kinds`, all when
    /// empty). `None` when either node is missing or they are not connected. Among equally
    /// short paths the one through the smallest ids is chosen, so the answer is stable.
    pub fn shortest_path(
        &self,
        from: &NodeId,
        to: &NodeId,
        kinds: &[EdgeKind],
    ) -> Option<GraphPath> {
        if !self.contains(from) || !self.contains(to) {
            return None;
        }
        let mut prev: BTreeMap<NodeId, (NodeId, Edge)> = BTreeMap::new();
        let mut seen: BTreeSet<NodeId> = BTreeSet::from([from.clone()]);
        let mut queue = VecDeque::from([from.clone()]);
        while let Some(n) = queue.pop_front() {
            if &n == to {
                break;
            }
            let mut next = self.undirected(&n, kinds);
            next.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            for (m, edge) in next {
                if seen.insert(m.clone()) {
                    prev.insert(m.clone(), (n.clone(), edge));
                    queue.push_back(m);
                }
            }
        }
        if !seen.contains(to) {
            return None;
        }
        let mut nodes = vec![to.clone()];
        let mut edges = Vec::new();
        let mut cur = to.clone();
        while &cur != from {
            let (p, e) = prev.get(&cur)?.clone();
            edges.push(e);
            nodes.push(p.clone());
            cur = p;
        }
        nodes.reverse();
        edges.reverse();
        Some(GraphPath { nodes, edges })
    }

    fn names(&self, node: &NodeId, direction: Direction, kind: EdgeKind) -> Vec<String> {
        self.neighbors(node, direction, &[kind])
            .into_iter()
            .map(|n| n.node.name().to_string())
            .collect()
    }

    /// The files of a component (sorted).
    pub fn component_files(&self, component: &str) -> Vec<String> {
        self.names(
            &NodeId::component(component),
            Direction::In,
            EdgeKind::BelongsTo,
        )
    }

    /// The workflows that require an agent (sorted).
    pub fn agent_workflows(&self, agent: &str) -> Vec<String> {
        self.names(&NodeId::agent(agent), Direction::In, EdgeKind::Requires)
    }

    /// The agents a workflow requires (sorted).
    pub fn workflow_agents(&self, workflow_id: &str) -> Vec<String> {
        self.names(
            &NodeId::workflow(workflow_id),
            Direction::Out,
            EdgeKind::Requires,
        )
    }

    /// The files an agent owns (sorted).
    pub fn agent_files(&self, agent: &str) -> Vec<String> {
        self.names(&NodeId::agent(agent), Direction::Out, EdgeKind::Owns)
    }

    /// The agents owning a file: the file's `related_agents` (sorted).
    pub fn file_agents(&self, path: &str) -> Vec<String> {
        self.names(&NodeId::file(path), Direction::In, EdgeKind::Owns)
    }

    /// The agents with a capability (sorted).
    pub fn capability_agents(&self, capability: &str) -> Vec<String> {
        self.names(
            &NodeId::capability(capability),
            Direction::In,
            EdgeKind::HasCapability,
        )
    }

    /// What changed from `self` (old) to `new`.
    pub fn diff(&self, new: &KnowledgeGraph) -> GraphDiff {
        let old_edges: BTreeSet<Edge> = self.edges().collect();
        let new_edges: BTreeSet<Edge> = new.edges().collect();
        GraphDiff {
            added_nodes: new.nodes.difference(&self.nodes).cloned().collect(),
            removed_nodes: self.nodes.difference(&new.nodes).cloned().collect(),
            added_edges: new_edges.difference(&old_edges).cloned().collect(),
            removed_edges: old_edges.difference(&new_edges).cloned().collect(),
        }
    }

    /// The original system's `knowledge_graph` export shape: an object of sorted lists.
    ///
    /// - each component NAME → the paths of its files (the original keyed files by component
    ///   type: `"agent": ["agents/codex.py", …]`); a component whose name is one of the
    ///   relation keys below is written `component:NAME`;
    /// - `workflow_dependencies` → `"workflow:ID->agent:NAME"` strings, exactly the original's
    ///   format; likewise, in the same `FROM->TO` node-id form:
    ///   `agent_capabilities` (`agent:A->capability:C`), `agent_files` (`agent:A->file:P`),
    ///   `file_dependencies` (`file:P->file:Q`), `session_workflows`
    ///   (`session:S->workflow:W`), `run_workflows` (`run:R->workflow:W`).
    ///
    /// As in the original, a key appears only when its list is non-empty.
    pub fn to_original_json(&self) -> Value {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in self.edges() {
            if e.kind == EdgeKind::BelongsTo {
                let name = e.to.name();
                let key = if ORIGINAL_RELATION_KEYS.iter().any(|(k, _)| *k == name) {
                    e.to.to_string()
                } else {
                    name.to_string()
                };
                m.entry(key).or_default().push(e.from.name().to_string());
            } else if let Some((key, _)) = ORIGINAL_RELATION_KEYS.iter().find(|(_, k)| *k == e.kind)
            {
                m.entry(key.to_string())
                    .or_default()
                    .push(format!("{}->{}", e.from, e.to));
            }
        }
        let mut obj = Map::new();
        for (k, mut v) in m {
            v.sort();
            obj.insert(k, Value::from(v));
        }
        Value::Object(obj)
    }
}

fn remove_adj(
    adj: &mut BTreeMap<NodeId, BTreeSet<(EdgeKind, NodeId)>>,
    at: &NodeId,
    kind: EdgeKind,
    other: &NodeId,
) -> bool {
    let Some(set) = adj.get_mut(at) else {
        return false;
    };
    let removed = set.remove(&(kind, other.clone()));
    if set.is_empty() {
        adj.remove(at);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::super::agent::Capability;
    use super::super::run::Run;
    use super::super::workflow::default_workflows;
    use super::*;
    use serde_json::json;

    struct Fixture {
        deps: Vec<(String, Option<String>, Vec<String>)>,
        agents: Vec<Agent>,
        workflows: Vec<WorkflowDefinition>,
        runs: Vec<Run>,
        sessions: Vec<SessionVersion>,
    }

    fn fixture() -> Fixture {
        let f = |p: &str, c: Option<&str>, d: &[&str]| {
            (
                p.to_string(),
                c.map(str::to_string),
                d.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        let deps = vec![
            f(
                "agents/codex.py",
                Some("agents"),
                &["agents/base.py", "numpy"],
            ),
            f("agents/base.py", Some("agents"), &[]),
            f("ui/app.py", Some("ui"), &["agents/codex.py", "ui/app.py"]),
            f("README.md", None, &[]),
        ];
        let mut codex = Agent::new("codex", 0);
        codex.capabilities = vec![
            Capability::named("code_generation"),
            Capability::named("code_review"),
        ];
        codex.owned_paths = vec!["agents/*".into()];
        let mut reasoning = Agent::new("reasoning", 0);
        reasoning.capabilities = vec![Capability::named("planning")];
        let workflows = default_workflows();
        let runs = vec![
            Run::start("r1", &workflows[1], 0),
            Run::start("r-gone", &WorkflowDefinition::new("deleted", "D", ""), 0),
        ];
        let mut s = SessionVersion::new("s1", None, 0);
        s.workflow_progress_json = r#"{"ui_generation":0.5,"unknown_wf":1}"#.into();
        Fixture {
            deps,
            agents: vec![codex, reasoning],
            workflows,
            runs,
            sessions: vec![s],
        }
    }

    fn build(fx: &Fixture) -> KnowledgeGraph {
        let files: Vec<FileInput<'_>> = fx
            .deps
            .iter()
            .map(|(p, c, d)| FileInput {
                path: p,
                component: c.as_deref(),
                dependencies: d,
            })
            .collect();
        let paths: Vec<&str> = files.iter().map(|f| f.path).collect();
        // A toy matcher: "dir/*" matches paths directly in dir.
        let owned = owned_files_with(&fx.agents, &paths, |glob, path| {
            glob.strip_suffix('*')
                .is_some_and(|dir| path.starts_with(dir) && !path[dir.len()..].contains('/'))
        });
        KnowledgeGraph::derive(&GraphInputs {
            files: &files,
            agents: &fx.agents,
            workflows: &fx.workflows,
            runs: &fx.runs,
            sessions: &fx.sessions,
            owned_files: &owned,
        })
    }

    #[test]
    fn node_ids() {
        let n = NodeId::file("a:b/c.rs");
        assert_eq!(n.as_str(), "file:a:b/c.rs");
        assert_eq!((n.kind(), n.name()), (NodeKind::File, "a:b/c.rs"));
        assert_eq!(NodeId::parse("workflow:ui"), Some(NodeId::workflow("ui")));
        assert_eq!(NodeId::parse("planet:x"), None);
        assert_eq!(NodeId::parse("agent:"), None);
        assert_eq!(NodeId::parse("agent"), None);
        for k in EdgeKind::ALL {
            assert_eq!(EdgeKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"file:a:b/c.rs\"");
    }

    #[test]
    fn derivation_rules() {
        let fx = fixture();
        let g = build(&fx);
        let e = |from: NodeId, kind, to: NodeId| g.has_edge(&from, kind, &to);
        assert!(e(
            NodeId::file("agents/codex.py"),
            EdgeKind::BelongsTo,
            NodeId::component("agents")
        ));
        assert!(e(
            NodeId::file("agents/codex.py"),
            EdgeKind::DependsOn,
            NodeId::file("agents/base.py")
        ));
        assert!(!g.contains(&NodeId::file("numpy")), "externals get no node");
        assert!(!e(
            NodeId::file("ui/app.py"),
            EdgeKind::DependsOn,
            NodeId::file("ui/app.py")
        ));
        assert!(g
            .neighbors(&NodeId::file("README.md"), Direction::Both, &[])
            .is_empty());
        assert!(g.contains(&NodeId::file("README.md")));
        assert!(e(
            NodeId::agent("codex"),
            EdgeKind::HasCapability,
            NodeId::capability("code_review")
        ));
        assert!(e(
            NodeId::agent("codex"),
            EdgeKind::Owns,
            NodeId::file("agents/base.py")
        ));
        assert!(!e(
            NodeId::agent("codex"),
            EdgeKind::Owns,
            NodeId::file("ui/app.py")
        ));
        assert!(e(
            NodeId::workflow("multi_agent_collaboration"),
            EdgeKind::Requires,
            NodeId::agent("ui_designer")
        ));
        assert!(
            g.contains(&NodeId::agent("nlp_interpreter")),
            "required but unregistered"
        );
        assert!(e(
            NodeId::run("r1"),
            EdgeKind::RunOf,
            NodeId::workflow("code_enhancement")
        ));
        assert!(g.contains(&NodeId::run("r-gone")));
        assert!(!g.contains(&NodeId::workflow("deleted")));
        assert!(e(
            NodeId::session("s1"),
            EdgeKind::Uses,
            NodeId::workflow("ui_generation")
        ));
        assert!(!g.contains(&NodeId::workflow("unknown_wf")));

        let counts = g.node_counts();
        assert_eq!(counts[&NodeKind::File], 4);
        assert_eq!(counts[&NodeKind::Component], 2);
        assert_eq!(counts[&NodeKind::Agent], 4); // codex, reasoning, nlp_interpreter, ui_designer
        assert_eq!(counts[&NodeKind::Capability], 3);
        assert_eq!(counts[&NodeKind::Workflow], 3);
        assert_eq!(counts[&NodeKind::Run], 2);
        assert_eq!(counts[&NodeKind::Session], 1);
        let ec = g.edge_counts();
        assert_eq!(ec[&EdgeKind::BelongsTo], 3);
        assert_eq!(ec[&EdgeKind::DependsOn], 2);
        assert_eq!(ec[&EdgeKind::Requires], 4 + 2 + 3);
        assert_eq!(ec[&EdgeKind::HasCapability], 3);
        assert_eq!(ec[&EdgeKind::Owns], 2);
        assert_eq!(ec[&EdgeKind::Uses], 1);
        assert_eq!(ec[&EdgeKind::RunOf], 1);
        assert_eq!(g.edge_count(), ec.values().sum::<usize>());
        assert_eq!(g.node_count(), 19);
    }

    #[test]
    fn lookups() {
        let g = build(&fixture());
        assert_eq!(
            g.component_files("agents"),
            ["agents/base.py", "agents/codex.py"]
        );
        assert!(g.component_files("nothing").is_empty());
        assert_eq!(
            g.agent_workflows("codex"),
            [
                "code_enhancement",
                "multi_agent_collaboration",
                "ui_generation"
            ]
        );
        assert_eq!(g.agent_workflows("nlp_interpreter"), ["ui_generation"]);
        assert_eq!(
            g.workflow_agents("code_enhancement"),
            ["codex", "reasoning"]
        );
        assert_eq!(
            g.agent_files("codex"),
            ["agents/base.py", "agents/codex.py"]
        );
        assert_eq!(g.file_agents("agents/base.py"), ["codex"]);
        assert_eq!(g.capability_agents("planning"), ["reasoning"]);
    }

    #[test]
    fn neighbors_with_direction_and_filter() {
        let g = build(&fixture());
        let codex_py = NodeId::file("agents/codex.py");
        let all = g.neighbors(&codex_py, Direction::Both, &[]);
        let got: Vec<(String, EdgeKind, Direction)> = all
            .iter()
            .map(|n| (n.node.to_string(), n.kind, n.direction))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "component:agents".into(),
                    EdgeKind::BelongsTo,
                    Direction::Out
                ),
                (
                    "file:agents/base.py".into(),
                    EdgeKind::DependsOn,
                    Direction::Out
                ),
                ("file:ui/app.py".into(), EdgeKind::DependsOn, Direction::In),
                ("agent:codex".into(), EdgeKind::Owns, Direction::In),
            ]
        );
        let out_deps = g.neighbors(&codex_py, Direction::Out, &[EdgeKind::DependsOn]);
        assert_eq!(out_deps.len(), 1);
        let in_only = g.neighbors(&codex_py, Direction::In, &[]);
        assert_eq!(in_only.len(), 2);
        assert!(g
            .neighbors(&NodeId::file("nope"), Direction::Both, &[])
            .is_empty());
    }

    #[test]
    fn related_within_depth() {
        let g = build(&fixture());
        let r = g.related(&NodeId::file("ui/app.py"), 1, &[]);
        assert_eq!(
            r,
            [
                (NodeId::component("ui"), 1),
                (NodeId::file("agents/codex.py"), 1)
            ]
        );
        let r2 = g.related(&NodeId::file("ui/app.py"), 2, &[]);
        assert!(r2.contains(&(NodeId::file("agents/base.py"), 2)));
        assert!(r2.contains(&(NodeId::agent("codex"), 2)));
        assert!(r2.contains(&(NodeId::component("agents"), 2)));
        assert!(!r2.iter().any(|(n, _)| n == &NodeId::file("ui/app.py")));
        assert!(g.related(&NodeId::file("ui/app.py"), 0, &[]).is_empty());
        let deps_only = g.related(&NodeId::file("ui/app.py"), 5, &[EdgeKind::DependsOn]);
        assert_eq!(
            deps_only,
            [
                (NodeId::file("agents/codex.py"), 1),
                (NodeId::file("agents/base.py"), 2)
            ]
        );
        assert_eq!(
            g.related_files("agents/codex.py", 2),
            ["agents/base.py", "ui/app.py"]
        );
        assert!(g.related(&NodeId::file("nope"), 3, &[]).is_empty());
    }

    #[test]
    fn shortest_paths() {
        let g = build(&fixture());
        let p = g
            .shortest_path(
                &NodeId::file("ui/app.py"),
                &NodeId::capability("code_review"),
                &[],
            )
            .unwrap();
        assert_eq!(
            p.nodes,
            [
                NodeId::file("ui/app.py"),
                NodeId::file("agents/codex.py"),
                NodeId::agent("codex"),
                NodeId::capability("code_review")
            ]
        );
        assert_eq!(p.edges.len(), 3);
        assert_eq!(
            p.edges[0],
            Edge {
                from: NodeId::file("ui/app.py"),
                kind: EdgeKind::DependsOn,
                to: NodeId::file("agents/codex.py")
            }
        );
        assert_eq!(p.edges[1].kind, EdgeKind::Owns);
        assert_eq!(
            p.edges[1].from,
            NodeId::agent("codex"),
            "edges keep their direction"
        );
        let same = g
            .shortest_path(&NodeId::agent("codex"), &NodeId::agent("codex"), &[])
            .unwrap();
        assert_eq!((same.nodes.len(), same.edges.len()), (1, 0));
        assert!(g
            .shortest_path(&NodeId::file("README.md"), &NodeId::agent("codex"), &[])
            .is_none());
        assert!(g
            .shortest_path(&NodeId::file("nope"), &NodeId::agent("codex"), &[])
            .is_none());
        // Restricting kinds can disconnect.
        assert!(g
            .shortest_path(
                &NodeId::file("ui/app.py"),
                &NodeId::agent("codex"),
                &[EdgeKind::DependsOn]
            )
            .is_none());
        // Session → workflow → agent.
        let p = g
            .shortest_path(
                &NodeId::session("s1"),
                &NodeId::agent("nlp_interpreter"),
                &[],
            )
            .unwrap();
        assert_eq!(p.nodes.len(), 3);
    }

    #[test]
    fn diff_and_incremental_upkeep() {
        let fx = fixture();
        let old = build(&fx);
        assert!(old.diff(&old.clone()).is_empty());
        let mut fx2 = fixture();
        fx2.agents[0].capabilities.pop(); // codex loses code_review
        fx2.deps.pop(); // README.md gone
        fx2.sessions.clear();
        let new = build(&fx2);
        let d = old.diff(&new);
        assert_eq!(
            d.removed_nodes,
            [
                NodeId::capability("code_review"),
                NodeId::file("README.md"),
                NodeId::session("s1")
            ]
        );
        assert!(d.added_nodes.is_empty() && d.added_edges.is_empty());
        assert_eq!(d.removed_edges.len(), 2);
        assert_eq!(d.removed_edges[0].kind, EdgeKind::HasCapability);
        assert_eq!(d.removed_edges[1].kind, EdgeKind::Uses);
        let back = new.diff(&old);
        assert_eq!(back.added_nodes, d.removed_nodes);
        assert_eq!(back.added_edges, d.removed_edges);

        // Bringing the old graph to the new one by hand gives the same graph.
        let mut g = old.clone();
        assert!(g.remove_edge(
            &NodeId::agent("codex"),
            EdgeKind::HasCapability,
            &NodeId::capability("code_review")
        ));
        g.remove_node(&NodeId::capability("code_review"));
        g.remove_node(&NodeId::file("README.md"));
        assert!(g.remove_node(&NodeId::session("s1")));
        assert!(!g.remove_node(&NodeId::session("s1")));
        assert_eq!(g, new);
        assert_eq!(
            g.remove_out_edges(&NodeId::agent("codex"), EdgeKind::Owns),
            2
        );
        assert!(g.agent_files("codex").is_empty());
        assert!(g.file_agents("agents/base.py").is_empty());
        assert!(g.add_edge(NodeId::agent("x"), EdgeKind::Owns, NodeId::file("f")));
        assert!(!g.add_edge(NodeId::agent("x"), EdgeKind::Owns, NodeId::file("f")));
    }

    #[test]
    fn original_json_shape() {
        let g = build(&fixture());
        let v = g.to_original_json();
        assert_eq!(v["agents"], json!(["agents/base.py", "agents/codex.py"]));
        assert_eq!(v["ui"], json!(["ui/app.py"]));
        assert_eq!(
            v["workflow_dependencies"],
            json!([
                "workflow:code_enhancement->agent:codex",
                "workflow:code_enhancement->agent:reasoning",
                "workflow:multi_agent_collaboration->agent:codex",
                "workflow:multi_agent_collaboration->agent:reasoning",
                "workflow:multi_agent_collaboration->agent:ui_designer",
                "workflow:ui_generation->agent:codex",
                "workflow:ui_generation->agent:nlp_interpreter",
                "workflow:ui_generation->agent:reasoning",
                "workflow:ui_generation->agent:ui_designer",
            ])
        );
        assert_eq!(
            v["agent_files"],
            json!([
                "agent:codex->file:agents/base.py",
                "agent:codex->file:agents/codex.py"
            ])
        );
        assert_eq!(v["file_dependencies"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["session_workflows"],
            json!(["session:s1->workflow:ui_generation"])
        );
        assert_eq!(
            v["run_workflows"],
            json!(["run:r1->workflow:code_enhancement"])
        );
        assert_eq!(v["agent_capabilities"].as_array().unwrap().len(), 3);
        assert_eq!(v.as_object().unwrap().len(), 8);

        // A component named like a relation key is qualified; empty relations are omitted.
        let deps: Vec<String> = Vec::new();
        let files = [FileInput {
            path: "x.py",
            component: Some("agent_files"),
            dependencies: &deps,
        }];
        let g = KnowledgeGraph::derive(&GraphInputs {
            files: &files,
            ..Default::default()
        });
        assert_eq!(
            g.to_original_json(),
            json!({"component:agent_files": ["x.py"]})
        );
        assert_eq!(KnowledgeGraph::new().to_original_json(), json!({}));
    }

    #[test]
    fn serde_of_graph_parts() {
        let g = build(&fixture());
        let d = KnowledgeGraph::new().diff(&g);
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<GraphDiff>(&text).unwrap(), d);
        let bytes = bincode::serialize(&d).unwrap();
        assert_eq!(bincode::deserialize::<GraphDiff>(&bytes).unwrap(), d);
        assert!(text.contains("\"kind\":\"has_capability\""), "{text}");
    }
}
