//! The system report (the original's `generate_report`): roots and their files, agents,
//! workflows with readiness and run figures, recent sessions and the knowledge graph's figures,
//! as one JSON value rendered as text or Markdown. Pure: the caller gathers the inputs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::agent::Agent;
use super::knowledge::{EdgeKind, KnowledgeGraph, NodeKind};
use super::run::{Run, RunStatus};
use super::session::SessionVersionMeta;
use super::time::format_rfc3339_ms;
use super::workflow::WorkflowDefinition;

/// How many entries the "top" lists show.
pub const TOP: usize = 10;

/// Figures of one watched root, gathered from its catalog.
#[derive(Debug, Clone, Default)]
pub struct RootSummary {
    /// Absolute path.
    pub root: String,
    /// Root id.
    pub root_id: String,
    /// Catalog clock.
    pub clock: u64,
    /// Number of files.
    pub files: u64,
    /// Total size.
    pub bytes: u64,
    /// Files per type.
    pub by_type: BTreeMap<String, u64>,
    /// Files per purpose.
    pub by_purpose: BTreeMap<String, u64>,
    /// Files per component.
    pub components: BTreeMap<String, u64>,
    /// The largest files (path, bytes), largest first, at most [`TOP`].
    pub largest: Vec<(String, u64)>,
}

impl RootSummary {
    /// Counts one file in.
    pub fn add_file(
        &mut self,
        path: &str,
        size: u64,
        file_type: &str,
        purpose: &str,
        component: &str,
    ) {
        self.files += 1;
        self.bytes += size;
        *self.by_type.entry(file_type.to_string()).or_default() += 1;
        *self.by_purpose.entry(purpose.to_string()).or_default() += 1;
        *self.components.entry(component.to_string()).or_default() += 1;
        self.largest.push((path.to_string(), size));
        if self.largest.len() > 4 * TOP {
            self.trim_largest();
        }
    }

    /// Keeps only the [`TOP`] largest files, sorted.
    pub fn trim_largest(&mut self) {
        self.largest
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.largest.truncate(TOP);
    }
}

/// Everything the report is made of.
pub struct ReportInputs<'a> {
    /// Report time (Unix ms), for liveness.
    pub now_ms: i64,
    /// Watched roots.
    pub roots: &'a [RootSummary],
    /// Registered agents.
    pub agents: &'a [Agent],
    /// Latest version of each workflow.
    pub workflows: &'a [WorkflowDefinition],
    /// Every run.
    pub runs: &'a [Run],
    /// Latest version meta of each session, with its version count.
    pub sessions: &'a [(SessionVersionMeta, u64)],
    /// The knowledge graph.
    pub graph: &'a KnowledgeGraph,
    /// File dependency cycles (each a group of files importing each other), as the dependency
    /// graph's cycle query finds them: the report and `graph cycles` read the same graph.
    pub dependency_cycles: &'a [Vec<String>],
}

fn sorted_counts(m: &BTreeMap<String, u64>) -> Value {
    let mut v: Vec<(&String, &u64)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    Value::Array(
        v.into_iter()
            .map(|(k, n)| json!({"key": k, "count": n}))
            .collect(),
    )
}

/// The report as one JSON value.
pub fn build(inputs: &ReportInputs<'_>) -> Value {
    let now = inputs.now_ms;
    let roots: Vec<Value> = inputs
        .roots
        .iter()
        .map(|r| {
            json!({
                "root": r.root, "root_id": r.root_id, "clock": r.clock,
                "files": r.files, "bytes": r.bytes,
                "by_type": sorted_counts(&r.by_type),
                "by_purpose": sorted_counts(&r.by_purpose),
                "components": sorted_counts(&r.components),
                "largest_files": r.largest.iter().map(|(p, s)| json!({"path": p, "size_bytes": s})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let live: BTreeSet<&str> = inputs
        .agents
        .iter()
        .filter(|a| a.is_live(now))
        .map(|a| a.name.as_str())
        .collect();
    let agents: Vec<Value> = inputs
        .agents
        .iter()
        .map(|a| {
            json!({
                "name": a.name, "type": a.agent_type, "description": a.description,
                "capabilities": a.capability_names(),
                "live": a.is_live(now), "leased": a.lease.is_some(),
                "owned_files": inputs.graph.agent_files(&a.name).len(),
            })
        })
        .collect();
    let mut runs_by_wf: BTreeMap<&str, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for r in inputs.runs {
        *runs_by_wf
            .entry(r.workflow_id.as_str())
            .or_default()
            .entry(r.status.as_str())
            .or_default() += 1;
    }
    let workflows: Vec<Value> = inputs
        .workflows
        .iter()
        .map(|w| {
            let readiness = w.readiness(live.iter());
            let counts = runs_by_wf.get(w.workflow_id.as_str());
            let count = |s: RunStatus| counts.and_then(|c| c.get(s.as_str())).copied().unwrap_or(0);
            json!({
                "workflow_id": w.workflow_id, "name": w.name, "version": w.version,
                "steps": w.steps.len(), "required_agents": w.required_agents,
                "ready": readiness.ready, "missing_agents": readiness.missing,
                "success_rate": w.success_rate, "estimated_time": w.estimated_time,
                "run_count": w.run_count,
                "runs": {"running": count(RunStatus::Running), "succeeded": count(RunStatus::Succeeded),
                         "failed": count(RunStatus::Failed), "expired": count(RunStatus::Expired)},
            })
        })
        .collect();
    let mut sessions: Vec<&(SessionVersionMeta, u64)> = inputs.sessions.iter().collect();
    sessions.sort_by(|a, b| {
        b.0.saved_at_ms
            .cmp(&a.0.saved_at_ms)
            .then_with(|| a.0.session_id.cmp(&b.0.session_id))
    });
    let sessions: Vec<Value> = sessions
        .iter()
        .take(TOP)
        .map(|(m, n)| {
            json!({"session_id": m.session_id, "version": m.version, "versions": n,
                   "timestamp": m.timestamp, "saved_at": format_rfc3339_ms(m.saved_at_ms),
                   "size_bytes": m.encoded_size})
        })
        .collect();
    let g = inputs.graph;
    let mut depended: Vec<(String, usize)> = g
        .nodes_of_kind(NodeKind::File)
        .into_iter()
        .map(|n| {
            let k = g
                .neighbors(n, super::knowledge::Direction::In, &[EdgeKind::DependsOn])
                .len();
            (n.name().to_string(), k)
        })
        .filter(|(_, k)| *k > 0)
        .collect();
    depended.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    depended.truncate(TOP);
    let cycles = inputs.dependency_cycles;
    let counts = |m: BTreeMap<String, usize>| {
        Value::Object(m.into_iter().map(|(k, v)| (k, json!(v))).collect())
    };
    json!({
        "generated_at": format_rfc3339_ms(now),
        "roots": roots,
        "agents": agents,
        "workflows": workflows,
        "recent_sessions": sessions,
        "session_count": inputs.sessions.len(),
        "graph": {
            "nodes": g.node_count(),
            "edges": g.edge_count(),
            "nodes_by_kind": counts(g.node_counts().into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect()),
            "edges_by_kind": counts(g.edge_counts().into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect()),
            "dependency_cycles": cycles,
            "most_depended_on": depended.iter().map(|(p, k)| json!({"path": p, "dependents": k})).collect::<Vec<_>>(),
        },
    })
}

/// One titled block of the rendered report.
struct Section {
    title: String,
    lines: Vec<String>,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn count_list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{} {}", s(&e["key"]), s(&e["count"])))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn sections(r: &Value) -> Vec<Section> {
    let empty = Vec::new();
    let arr = |v: &Value| v.as_array().unwrap_or(&empty).clone();
    let mut out = Vec::new();
    for root in arr(&r["roots"]) {
        let mut lines = vec![
            format!(
                "{} files, {} bytes, clock {}",
                s(&root["files"]),
                s(&root["bytes"]),
                s(&root["clock"])
            ),
            format!("by type: {}", count_list(&root["by_type"])),
            format!("by purpose: {}", count_list(&root["by_purpose"])),
            format!("components: {}", count_list(&root["components"])),
            "largest files:".to_string(),
        ];
        for f in arr(&root["largest_files"]) {
            lines.push(format!(
                "  {} ({} bytes)",
                s(&f["path"]),
                s(&f["size_bytes"])
            ));
        }
        out.push(Section {
            title: format!("Root {}", s(&root["root"])),
            lines,
        });
    }
    let mut lines = Vec::new();
    for a in arr(&r["agents"]) {
        let caps: Vec<String> = arr(&a["capabilities"]).iter().map(s).collect();
        lines.push(format!(
            "{} [{}]: {} — capabilities: {}; owns {} files",
            s(&a["name"]),
            if a["live"] == json!(true) {
                "live"
            } else {
                "expired"
            },
            s(&a["description"]),
            if caps.is_empty() {
                "none".to_string()
            } else {
                caps.join(", ")
            },
            s(&a["owned_files"])
        ));
    }
    if lines.is_empty() {
        lines.push("no agents registered".into());
    }
    out.push(Section {
        title: "Agents".into(),
        lines,
    });
    let mut lines = Vec::new();
    for w in arr(&r["workflows"]) {
        let missing: Vec<String> = arr(&w["missing_agents"]).iter().map(s).collect();
        lines.push(format!(
            "{} v{} ({}): {} steps, success rate {:.3}, estimated {:.1} s, {} runs finished ({} running, {} failed, {} expired) — {}",
            s(&w["workflow_id"]),
            s(&w["version"]),
            s(&w["name"]),
            s(&w["steps"]),
            w["success_rate"].as_f64().unwrap_or(0.0),
            w["estimated_time"].as_f64().unwrap_or(0.0),
            s(&w["run_count"]),
            s(&w["runs"]["running"]),
            s(&w["runs"]["failed"]),
            s(&w["runs"]["expired"]),
            if missing.is_empty() { "ready".to_string() } else { format!("not ready, missing {}", missing.join(", ")) }
        ));
    }
    if lines.is_empty() {
        lines.push("no workflows defined".into());
    }
    out.push(Section {
        title: "Workflows".into(),
        lines,
    });
    let mut lines = vec![format!("{} sessions", s(&r["session_count"]))];
    for m in arr(&r["recent_sessions"]) {
        lines.push(format!(
            "{} v{} ({} versions) saved {}, {} bytes",
            s(&m["session_id"]),
            s(&m["version"]),
            s(&m["versions"]),
            s(&m["saved_at"]),
            s(&m["size_bytes"])
        ));
    }
    out.push(Section {
        title: "Recent sessions".into(),
        lines,
    });
    let g = &r["graph"];
    let kinds = |v: &Value| {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let mut lines = vec![
        format!("{} nodes ({})", s(&g["nodes"]), kinds(&g["nodes_by_kind"])),
        format!("{} edges ({})", s(&g["edges"]), kinds(&g["edges_by_kind"])),
        format!("{} dependency cycles", arr(&g["dependency_cycles"]).len()),
    ];
    for c in arr(&g["dependency_cycles"]).iter().take(TOP) {
        lines.push(format!(
            "  cycle: {}",
            arr(c).iter().map(s).collect::<Vec<_>>().join(" <-> ")
        ));
    }
    lines.push("most depended-on files:".into());
    for f in arr(&g["most_depended_on"]) {
        lines.push(format!(
            "  {} ({} dependents)",
            s(&f["path"]),
            s(&f["dependents"])
        ));
    }
    out.push(Section {
        title: "Knowledge graph".into(),
        lines,
    });
    out
}

/// The report as plain text.
pub fn render_text(report: &Value) -> String {
    let mut out = format!(
        "WORKFLOW DATABASE REPORT ({})\n",
        s(&report["generated_at"])
    );
    for sec in sections(report) {
        out.push_str(&format!("\n== {} ==\n", sec.title));
        for l in sec.lines {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

/// The report as Markdown.
pub fn render_markdown(report: &Value) -> String {
    let mut out = format!(
        "# Workflow database report\n\nGenerated {}.\n",
        s(&report["generated_at"])
    );
    for sec in sections(report) {
        out.push_str(&format!("\n## {}\n\n", sec.title));
        for l in sec.lines {
            match l.strip_prefix("  ") {
                Some(inner) => out.push_str(&format!("  - {inner}\n")),
                None => out.push_str(&format!("- {l}\n")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::knowledge::NodeId;
    use super::*;

    #[test]
    fn cycles_are_reported_as_given() {
        let mut g = KnowledgeGraph::new();
        let f = NodeId::file;
        g.add_edge(f("a"), EdgeKind::DependsOn, f("b"));
        g.add_edge(f("b"), EdgeKind::DependsOn, f("a"));
        g.add_edge(f("c"), EdgeKind::DependsOn, f("a"));
        let cycles = vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["x".to_string(), "y".to_string()],
        ];
        let r = build(&ReportInputs {
            now_ms: 0,
            roots: &[],
            agents: &[],
            workflows: &super::super::workflow::default_workflows(),
            runs: &[],
            sessions: &[],
            graph: &g,
            dependency_cycles: &cycles,
        });
        assert_eq!(r["graph"]["dependency_cycles"], json!(cycles));
        assert_eq!(r["graph"]["most_depended_on"][0]["path"], "a");
        let text = render_text(&r);
        assert!(text.contains("2 dependency cycles"), "{text}");
        assert!(text.contains("cycle: a"), "{text}");
        assert!(text.contains("ui_generation v1"), "{text}");
        assert!(render_markdown(&r).contains("## Knowledge graph"));
    }
}
