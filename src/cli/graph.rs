//! Client verbs of the dependency graph.

use serde_json::json;
use tonic::transport::Channel;

use super::output::{table, Output};
use workflowdb::proto;
use workflowdb::proto::graph_client::GraphClient;

/// `wfdb graph …` verbs.
#[derive(clap::Subcommand, Debug)]
pub enum GraphCommand {
    /// Shortest dependency path from one file to another.
    Path {
        from: String,
        to: String,
        #[arg(long)]
        root: Option<String>,
    },
    /// Import cycles (strongly connected components), largest first.
    Cycles {
        #[arg(long)]
        root: Option<String>,
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Files nothing imports (entry points excluded), by purpose (default: source).
    Orphans {
        #[arg(long)]
        root: Option<String>,
        #[arg(long = "purpose")]
        purposes: Vec<String>,
    },
    /// Components with their files and the edges between them.
    Components {
        #[arg(long)]
        root: Option<String>,
    },
    /// Files ranked by how much depends on them (PageRank).
    Rank {
        #[arg(long)]
        root: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print the graph as Graphviz DOT, Mermaid or JSON.
    Export {
        #[arg(long, default_value = "dot")]
        format: String,
        #[arg(long)]
        root: Option<String>,
        /// Only this component.
        #[arg(long)]
        component: Option<String>,
        /// Only files within --depth hops of this file.
        #[arg(long)]
        from: Option<String>,
        #[arg(long, default_value_t = 0)]
        depth: u32,
    },
}

pub async fn deps(
    channel: Channel,
    path: String,
    reverse: bool,
    depth: u32,
    root: Option<String>,
    out: &Output,
) -> anyhow::Result<()> {
    let resp = GraphClient::new(channel)
        .dependencies(proto::DepsRequest {
            root: root.unwrap_or_default(),
            path,
            reverse,
            depth,
            unsynced: false,
        })
        .await?
        .into_inner();
    if out.json {
        for f in &resp.files {
            out.json_line(&json!({"path": f.path, "depth": f.depth}));
        }
        for e in &resp.externals {
            out.json_line(&json!({"external": e}));
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .files
        .iter()
        .map(|f| vec![f.depth.to_string(), f.path.clone()])
        .collect();
    out.text(&table(
        &["DEPTH", if reverse { "DEPENDENT" } else { "DEPENDENCY" }],
        &rows,
    ));
    if !resp.externals.is_empty() {
        out.text(&format!("externals: {}", resp.externals.join(", ")));
    }
    Ok(())
}

pub async fn related(
    channel: Channel,
    path: String,
    depth: u32,
    root: Option<String>,
    out: &Output,
) -> anyhow::Result<()> {
    let resp = GraphClient::new(channel)
        .related(proto::FileRelatedRequest {
            root: root.unwrap_or_default(),
            path,
            depth,
            unsynced: false,
        })
        .await?
        .into_inner();
    if out.json {
        for f in &resp.files {
            out.json_line(&json!({"path": f.path, "relation": f.relation, "distance": f.distance}));
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .files
        .iter()
        .map(|f| vec![f.distance.to_string(), f.relation.clone(), f.path.clone()])
        .collect();
    out.text(&table(&["DISTANCE", "RELATION", "PATH"], &rows));
    Ok(())
}

pub async fn affected(
    channel: Channel,
    paths: Vec<String>,
    since: Option<u64>,
    depth: u32,
    root: Option<String>,
    out: &Output,
) -> anyhow::Result<()> {
    let resp = GraphClient::new(channel)
        .affected(proto::AffectedRequest {
            root: root.unwrap_or_default(),
            paths,
            since_clock: since,
            depth,
            unsynced: false,
            instance_id: String::new(),
        })
        .await?
        .into_inner();
    if out.json {
        for f in &resp.files {
            out.json_line(&json!({"path": f.path, "depth": f.depth, "witness": f.witness}));
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .files
        .iter()
        .map(|f| vec![f.depth.to_string(), f.path.clone(), f.witness.join(" → ")])
        .collect();
    out.text(&table(&["DEPTH", "AFFECTED", "BECAUSE"], &rows));
    if !resp.unknown.is_empty() {
        out.text(&format!("not in the graph: {}", resp.unknown.join(", ")));
    }
    Ok(())
}

pub async fn graph(channel: Channel, cmd: GraphCommand, out: &Output) -> anyhow::Result<()> {
    let mut client = GraphClient::new(channel);
    match cmd {
        GraphCommand::Path { from, to, root } => {
            let resp = client
                .path(proto::PathRequest {
                    root: root.unwrap_or_default(),
                    from,
                    to,
                    unsynced: false,
                })
                .await?
                .into_inner();
            if out.json {
                out.json_line(&json!({"found": resp.found, "path": resp.path}));
            } else if resp.found {
                out.text(&resp.path.join(" → "));
            } else {
                out.text("no dependency path");
            }
        }
        GraphCommand::Cycles { root, limit } => {
            let resp = client
                .cycles(proto::CyclesRequest {
                    root: root.unwrap_or_default(),
                    limit,
                    unsynced: false,
                })
                .await?
                .into_inner();
            for c in &resp.cycles {
                if out.json {
                    out.json_line(&json!({"files": c.files, "example": c.example}));
                } else {
                    out.text(&format!(
                        "{} files: {}",
                        c.files.len(),
                        c.example.join(" → ")
                    ));
                }
            }
            if !out.json && resp.cycles.is_empty() {
                out.text("no cycles");
            }
        }
        GraphCommand::Orphans { root, purposes } => {
            let resp = client
                .orphans(proto::OrphansRequest {
                    root: root.unwrap_or_default(),
                    purposes,
                    unsynced: false,
                })
                .await?
                .into_inner();
            for f in &resp.files {
                if out.json {
                    out.json_line(&json!({"path": f}));
                } else {
                    out.text(f);
                }
            }
        }
        GraphCommand::Components { root } => {
            let resp = client
                .components(proto::ComponentsRequest {
                    root: root.unwrap_or_default(),
                    unsynced: false,
                })
                .await?
                .into_inner();
            if out.json {
                for c in &resp.components {
                    out.json_line(&json!({"component": c.name, "files": c.files, "internal_edges": c.internal_edges}));
                }
                for e in &resp.edges {
                    out.json_line(&json!({"from": e.from, "to": e.to, "edges": e.edges}));
                }
            } else {
                let rows: Vec<Vec<String>> = resp
                    .components
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.files.len().to_string(),
                            c.internal_edges.to_string(),
                        ]
                    })
                    .collect();
                out.text(&table(&["COMPONENT", "FILES", "INTERNAL EDGES"], &rows));
                for e in &resp.edges {
                    out.text(&format!("{} → {}: {} edges", e.from, e.to, e.edges));
                }
            }
        }
        GraphCommand::Rank { root, limit } => {
            let resp = client
                .rank(proto::RankRequest {
                    root: root.unwrap_or_default(),
                    limit,
                    unsynced: false,
                })
                .await?
                .into_inner();
            if out.json {
                for f in &resp.files {
                    out.json_line(
                        &json!({"path": f.path, "score": f.score, "dependents": f.dependents}),
                    );
                }
            } else {
                let rows: Vec<Vec<String>> = resp
                    .files
                    .iter()
                    .map(|f| {
                        vec![
                            format!("{:.5}", f.score),
                            f.dependents.to_string(),
                            f.path.clone(),
                        ]
                    })
                    .collect();
                out.text(&table(&["SCORE", "DEPENDENTS", "PATH"], &rows));
            }
        }
        GraphCommand::Export {
            format,
            root,
            component,
            from,
            depth,
        } => {
            let resp = client
                .export(proto::ExportGraphRequest {
                    root: root.unwrap_or_default(),
                    format: format.clone(),
                    component: component.unwrap_or_default(),
                    from: from.unwrap_or_default(),
                    depth,
                    unsynced: false,
                })
                .await?
                .into_inner();
            if !out.json {
                out.text(resp.text.trim_end());
            } else if format == "json" {
                let v: serde_json::Value = serde_json::from_str(&resp.text)
                    .map_err(|e| anyhow::anyhow!("the daemon's JSON graph is not JSON: {e}"))?;
                out.json_line(&v);
            } else {
                // DOT or Mermaid text, carried in one object.
                out.json_line(&json!({"format": format, "text": resp.text}));
            }
        }
    }
    Ok(())
}
