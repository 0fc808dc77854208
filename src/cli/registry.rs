//! Client verbs of the workflow database: `wfdb agent|workflow|run|session|kg …`,
//! `wfdb export`, `wfdb import`, `wfdb report`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Map, Value};
use tonic::transport::Channel;

use super::output::{table, Output};
use workflowdb::proto;
use workflowdb::proto::agents_client::AgentsClient;
use workflowdb::proto::catalog_client::CatalogClient;
use workflowdb::proto::knowledge_client::KnowledgeClient;
use workflowdb::proto::sessions_client::SessionsClient;
use workflowdb::proto::transfer_client::TransferClient;
use workflowdb::proto::workflows_client::WorkflowsClient;
use workflowdb::rpc::structs::{map_from_struct, struct_from_map};

/// Largest message the CLI sends or accepts (as the daemon).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// `wfdb agent …`
#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// Register (or update) an agent. With --file, the file is the original's `agent_info`
    /// JSON object (`{"description": …, "capabilities": ["code_generation"]}`); flags add to it.
    Register {
        name: String,
        /// JSON file with the agent_info object.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "type")]
        agent_type: Option<String>,
        /// A capability name (repeatable).
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        /// A glob of paths the agent owns (repeatable), e.g. "src/agents/**".
        #[arg(long = "owns")]
        owned_paths: Vec<String>,
        /// Take part in live discovery with this lease TTL (milliseconds).
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Show one agent.
    Get { name: String },
    /// List agents.
    List {
        /// Only agents with this capability.
        #[arg(long)]
        capability: Option<String>,
        /// Only live agents.
        #[arg(long)]
        live: bool,
    },
    /// Remove an agent (refused while workflows require it, unless --force).
    Remove {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Record one performance sample of a capability.
    Metric {
        name: String,
        capability: String,
        #[arg(long)]
        latency_ms: f64,
        /// The attempt failed (default: it succeeded).
        #[arg(long)]
        failed: bool,
    },
    /// Renew an agent's lease (starting one with --ttl-ms).
    Heartbeat {
        name: String,
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Print agent events as they happen (until interrupted).
    Watch,
}

/// `wfdb workflow …`
#[derive(Subcommand, Debug)]
pub enum WorkflowCmd {
    /// Define (or redefine, as a new version) a workflow from a JSON file in the original's
    /// WorkflowDefinition shape.
    Define {
        #[arg(long)]
        file: PathBuf,
    },
    /// Show a workflow (latest version unless --version).
    Get {
        id: String,
        #[arg(long, default_value_t = 0)]
        version: u64,
    },
    /// List workflows (latest versions) with readiness.
    List {
        /// Only workflows that use this agent (get_agent_workflows).
        #[arg(long)]
        agent: Option<String>,
    },
    /// List every version of a workflow.
    Versions { id: String },
    /// Install the three default workflows of the original.
    Defaults,
    /// Delete every version of a workflow (refused while runs of it are open).
    Delete {
        id: String,
        /// Delete even with open runs, which are then expired.
        #[arg(long)]
        force: bool,
    },
}

/// Step outcomes for `wfdb run step`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum StepArg {
    Started,
    Succeeded,
    Failed,
    Skipped,
}

/// `wfdb run …`
#[derive(Subcommand, Debug)]
pub enum RunCmd {
    /// Start a run of a workflow.
    Start {
        workflow: String,
        #[arg(long, default_value_t = 0)]
        version: u64,
        /// Run id (default: made up): ASCII letters, digits, '_', '-', '.'.
        #[arg(long)]
        id: Option<String>,
        /// Start even if some agent the workflow needs is not registered or not live.
        #[arg(long)]
        force: bool,
    },
    /// Report progress of a step.
    Step {
        run: String,
        step: u32,
        #[arg(long, value_enum)]
        status: StepArg,
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Finish a run (success unless --failed).
    Finish {
        run: String,
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        duration_ms: Option<u64>,
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Show a run.
    Get { run: String },
    /// Run history, newest first.
    List {
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 0)]
        limit: u64,
    },
    /// Expire open runs idle for longer than this.
    Expire {
        #[arg(long)]
        idle_ms: u64,
    },
    /// Print run events as they happen (until interrupted).
    Watch {
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        run: Option<String>,
    },
}

/// `wfdb session …`
#[derive(Subcommand, Debug)]
pub enum SessionCmd {
    /// Save a new version of a session from a JSON file in the original's SessionMemory shape
    /// (context_snapshot, agent_states, workflow_progress, learned_patterns, timestamp).
    Save {
        id: String,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Restore a session (latest version unless --version).
    Restore {
        id: String,
        #[arg(long, default_value_t = 0)]
        version: u64,
        /// Also list the catalog files changed since the session was saved.
        #[arg(long)]
        changes: bool,
    },
    /// List the versions of a session.
    History { id: String },
    /// List sessions, most recently saved first.
    List {
        #[arg(long, default_value = "")]
        prefix: String,
        /// Saved at or after this Unix time in ms.
        #[arg(long, default_value_t = 0)]
        after_ms: i64,
        /// Saved before this Unix time in ms.
        #[arg(long, default_value_t = 0)]
        before_ms: i64,
        #[arg(long, default_value_t = 0)]
        limit: u64,
    },
    /// Delete a session (or one version).
    Delete {
        id: String,
        #[arg(long, default_value_t = 0)]
        version: u64,
    },
    /// Show or change the size limit and retention (0 turns a retention limit off).
    Config {
        #[arg(long)]
        max_bytes: Option<u64>,
        #[arg(long)]
        keep_last: Option<u64>,
        #[arg(long)]
        max_age_ms: Option<u64>,
    },
}

/// Edge directions for `wfdb kg neighbors`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DirectionArg {
    Both,
    Out,
    In,
}

/// `wfdb kg …`
#[derive(Subcommand, Debug)]
pub enum KgCmd {
    /// Nodes joined to NODE (KIND:NAME, e.g. file:src/main.rs, agent:codex).
    Neighbors {
        node: String,
        #[arg(long, value_enum, default_value = "both")]
        direction: DirectionArg,
        /// Only this edge kind (repeatable).
        #[arg(long = "kind")]
        kinds: Vec<String>,
    },
    /// Nodes within a depth of NODE.
    Related {
        node: String,
        #[arg(long, default_value_t = 2)]
        depth: u32,
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Only nodes of this kind (file, agent, workflow, ...).
        #[arg(long)]
        node_kind: Option<String>,
    },
    /// A shortest path between two nodes.
    Path { from: String, to: String },
    /// A named lookup: agent_workflows, workflow_agents, component_files, agent_files,
    /// file_agents, capability_agents, related_files.
    Lookup { relation: String, name: String },
    /// Graph figures (and every node and edge with --full).
    Show {
        #[arg(long)]
        full: bool,
    },
    /// Re-derive the graph and report differences from the previous rebuild.
    Rebuild,
}

fn agents(ch: &Channel) -> AgentsClient<Channel> {
    AgentsClient::new(ch.clone())
}
fn workflows(ch: &Channel) -> WorkflowsClient<Channel> {
    WorkflowsClient::new(ch.clone())
}
fn sessions(ch: &Channel) -> SessionsClient<Channel> {
    SessionsClient::new(ch.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn read_object(path: &Path) -> anyhow::Result<Map<String, Value>> {
    match read_json(path)? {
        Value::Object(m) => Ok(m),
        _ => anyhow::bail!("{} must hold a JSON object", path.display()),
    }
}

fn obj(s: &Option<prost_types::Struct>) -> Value {
    Value::Object(s.as_ref().map(map_from_struct).unwrap_or_default())
}

/// An agent as JSON.
pub fn agent_json(a: &proto::Agent) -> Value {
    json!({
        "name": a.name, "description": a.description, "type": a.agent_type,
        "capabilities": a.capabilities.iter().map(|c| json!({
            "name": c.name, "description": c.description, "input_types": c.input_types,
            "output_types": c.output_types, "required_context": c.required_context,
            "performance_metrics": obj(&c.performance_metrics),
            "stats": c.stats.as_ref().map(stats_json),
        })).collect::<Vec<_>>(),
        "owned_paths": a.owned_paths, "metadata": obj(&a.metadata),
        "lease_ttl_ms": a.lease_ttl_ms, "last_heartbeat_ms": a.last_heartbeat_ms,
        "lease_expires_at_ms": a.lease_expires_at_ms, "live": a.live,
        "registered_at_ms": a.registered_at_ms, "updated_at_ms": a.updated_at_ms,
    })
}

fn stats_json(s: &proto::CapabilityStats) -> Value {
    json!({"count": s.count, "successes": s.successes, "mean_latency_ms": s.mean_latency_ms,
           "ewma_latency_ms": s.ewma_latency_ms, "ewma_success_rate": s.ewma_success_rate,
           "min_latency_ms": s.min_latency_ms, "max_latency_ms": s.max_latency_ms,
           "last_sample_ms": s.last_sample_ms})
}

/// A workflow as JSON (the original's fields plus ours).
pub fn workflow_json(w: &proto::Workflow) -> Value {
    json!({
        "workflow_id": w.workflow_id, "name": w.name, "description": w.description,
        "steps": w.steps.iter().map(|s| json!({"step": s.step, "action": s.action, "agent": s.agent})).collect::<Vec<_>>(),
        "required_agents": w.required_agents,
        "input_requirements": obj(&w.input_requirements), "output_format": obj(&w.output_format),
        "estimated_time": w.estimated_time, "success_rate": w.success_rate,
        "version": w.version, "run_count": w.run_count, "created_at_ms": w.created_at_ms,
        "ready": w.ready, "missing_agents": w.missing_agents,
    })
}

fn run_status(s: i32) -> &'static str {
    match proto::RunStatus::try_from(s).unwrap_or(proto::RunStatus::Unspecified) {
        proto::RunStatus::Running => "running",
        proto::RunStatus::Succeeded => "succeeded",
        proto::RunStatus::Failed => "failed",
        proto::RunStatus::Expired => "expired",
        proto::RunStatus::Unspecified => "unknown",
    }
}

fn step_status(s: i32) -> &'static str {
    match proto::StepStatus::try_from(s).unwrap_or(proto::StepStatus::Unspecified) {
        proto::StepStatus::Started => "started",
        proto::StepStatus::Succeeded => "succeeded",
        proto::StepStatus::Failed => "failed",
        proto::StepStatus::Skipped => "skipped",
        proto::StepStatus::Unspecified => "unknown",
    }
}

/// A run as JSON.
pub fn run_json(r: &proto::Run) -> Value {
    json!({
        "run_id": r.run_id, "workflow_id": r.workflow_id, "workflow_version": r.workflow_version,
        "status": run_status(r.status), "started_at_ms": r.started_at_ms,
        "finished_at_ms": r.finished_at_ms, "duration_ms": r.duration_ms, "message": r.message,
        "steps": r.steps.iter().map(|s| json!({"step": s.step, "status": step_status(s.status), "message": s.message, "at_ms": s.at_ms})).collect::<Vec<_>>(),
    })
}

/// A session version as JSON (the original's SessionMemory fields plus ours).
pub fn session_json(s: &proto::Session) -> Value {
    json!({
        "session_id": s.session_id, "timestamp": s.timestamp, "version": s.version,
        "saved_at_ms": s.saved_at_ms,
        "context_snapshot": obj(&s.context_snapshot), "agent_states": obj(&s.agent_states),
        "workflow_progress": obj(&s.workflow_progress), "learned_patterns": s.learned_patterns,
        "root_clocks": s.root_clocks.iter().map(|c| (c.root.clone(), json!(c.clock))).collect::<Map<_, _>>(),
    })
}

fn meta_json(m: &proto::SessionMeta) -> Value {
    json!({"session_id": m.session_id, "version": m.version, "timestamp": m.timestamp,
           "saved_at_ms": m.saved_at_ms, "size_bytes": m.size_bytes, "versions": m.versions})
}

fn print_value(out: &Output, v: &Value) {
    if out.json {
        out.json_line(v);
    } else {
        out.text(&serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

/// Runs `wfdb agent …`.
pub async fn agent(ch: Channel, cmd: AgentCmd, out: &Output) -> anyhow::Result<()> {
    match cmd {
        AgentCmd::Register {
            name,
            file,
            description,
            agent_type,
            capabilities,
            owned_paths,
            ttl_ms,
        } => {
            let mut info = match &file {
                Some(f) => read_object(f)?,
                None => Map::new(),
            };
            if let Some(d) = description {
                info.insert("description".into(), json!(d));
            }
            if let Some(t) = agent_type {
                info.insert("type".into(), json!(t));
            }
            if !capabilities.is_empty() {
                let mut caps = info
                    .get("capabilities")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                caps.extend(capabilities.into_iter().map(Value::from));
                info.insert("capabilities".into(), Value::Array(caps));
            }
            if !owned_paths.is_empty() {
                let mut globs = info
                    .get("owned_paths")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                globs.extend(owned_paths.into_iter().map(Value::from));
                info.insert("owned_paths".into(), Value::Array(globs));
            }
            if let Some(ttl) = ttl_ms {
                info.insert("lease".into(), json!({"ttl_ms": ttl}));
            }
            let resp = agents(&ch)
                .register_agent(proto::RegisterAgentRequest {
                    agent: None,
                    name,
                    agent_info: Some(struct_from_map(&info)),
                })
                .await?
                .into_inner();
            let a = resp.agent.unwrap_or_default();
            if out.json {
                let mut v = agent_json(&a);
                v["created"] = json!(resp.created);
                out.json_line(&v);
            } else {
                out.text(&format!(
                    "{} agent {} ({} capabilities)",
                    if resp.created {
                        "registered"
                    } else {
                        "updated"
                    },
                    a.name,
                    a.capabilities.len()
                ));
            }
        }
        AgentCmd::Get { name } => {
            let a = agents(&ch)
                .get_agent(proto::GetAgentRequest { name })
                .await?
                .into_inner()
                .agent
                .unwrap_or_default();
            print_value(out, &agent_json(&a));
        }
        AgentCmd::List { capability, live } => {
            let resp = agents(&ch)
                .list_agents(proto::ListAgentsRequest {
                    capability: capability.unwrap_or_default(),
                    live_only: live,
                })
                .await?
                .into_inner();
            if out.json {
                for a in &resp.agents {
                    out.json_line(&agent_json(a));
                }
            } else {
                let rows: Vec<Vec<String>> = resp
                    .agents
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.clone(),
                            if a.live {
                                "live".into()
                            } else {
                                "expired".into()
                            },
                            a.agent_type.clone(),
                            a.capabilities
                                .iter()
                                .map(|c| c.name.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            a.description.clone(),
                        ]
                    })
                    .collect();
                out.text(&table(
                    &["NAME", "STATE", "TYPE", "CAPABILITIES", "DESCRIPTION"],
                    &rows,
                ));
            }
        }
        AgentCmd::Remove { name, force } => {
            let resp = agents(&ch)
                .remove_agent(proto::RemoveAgentRequest { name, force })
                .await?
                .into_inner();
            let name = resp.agent.map(|a| a.name).unwrap_or_default();
            if out.json {
                out.json_line(&json!({"removed": name, "workflows": resp.workflows}));
            } else if resp.workflows.is_empty() {
                out.text(&format!("removed agent {name}"));
            } else {
                out.text(&format!(
                    "removed agent {name} (still named by workflows {})",
                    resp.workflows.join(", ")
                ));
            }
        }
        AgentCmd::Metric {
            name,
            capability,
            latency_ms,
            failed,
        } => {
            let resp = agents(&ch)
                .record_metric(proto::RecordMetricRequest {
                    agent: name.clone(),
                    capability: capability.clone(),
                    latency_ms,
                    success: !failed,
                })
                .await?
                .into_inner();
            let stats = resp.stats.as_ref().map(stats_json).unwrap_or(Value::Null);
            print_value(
                out,
                &json!({"agent": name, "capability": capability, "stats": stats}),
            );
        }
        AgentCmd::Heartbeat { name, ttl_ms } => {
            let a = agents(&ch)
                .heartbeat(proto::HeartbeatRequest { name, ttl_ms })
                .await?
                .into_inner()
                .agent
                .unwrap_or_default();
            if out.json {
                out.json_line(&agent_json(&a));
            } else {
                out.text(&format!(
                    "{} is live until {} ms",
                    a.name, a.lease_expires_at_ms
                ));
            }
        }
        AgentCmd::Watch => {
            let mut stream = agents(&ch)
                .watch_agents(proto::WatchAgentsRequest {})
                .await?
                .into_inner();
            while let Some(ev) = stream.message().await? {
                let kind = proto::agent_event::Kind::try_from(ev.kind)
                    .map(|k| k.as_str_name().trim_start_matches("KIND_").to_lowercase())
                    .unwrap_or_default();
                if out.json {
                    out.json_line(&json!({"event": kind, "name": ev.name, "missed": ev.missed,
                        "agent": ev.agent.as_ref().map(agent_json)}));
                } else {
                    out.text(&format!("{kind} {}", ev.name));
                }
            }
        }
    }
    Ok(())
}

fn workflow_rows(ws: &[proto::Workflow]) -> String {
    let rows: Vec<Vec<String>> = ws
        .iter()
        .map(|w| {
            vec![
                w.workflow_id.clone(),
                w.version.to_string(),
                if w.ready {
                    "ready".into()
                } else {
                    format!("missing {}", w.missing_agents.join(","))
                },
                format!("{:.3}", w.success_rate),
                format!("{:.1}s", w.estimated_time),
                w.run_count.to_string(),
                w.name.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "VERSION",
            "READINESS",
            "SUCCESS",
            "TIME",
            "RUNS",
            "NAME",
        ],
        &rows,
    )
}

/// Runs `wfdb workflow …`.
pub async fn workflow(ch: Channel, cmd: WorkflowCmd, out: &Output) -> anyhow::Result<()> {
    match cmd {
        WorkflowCmd::Define { file } => {
            let def = read_object(&file)?;
            let resp = workflows(&ch)
                .define_workflow(proto::DefineWorkflowRequest {
                    workflow: None,
                    definition: Some(struct_from_map(&def)),
                })
                .await?
                .into_inner();
            let w = resp.workflow.unwrap_or_default();
            if out.json {
                let mut v = workflow_json(&w);
                v["unchanged"] = json!(resp.unchanged);
                v["statistics"] = json!(resp.statistics);
                out.json_line(&v);
            } else if resp.unchanged {
                out.text(&format!(
                    "workflow {} is unchanged (version {}): {}",
                    w.workflow_id, w.version, resp.statistics
                ));
            } else {
                out.text(&format!(
                    "defined workflow {} version {}: {}",
                    w.workflow_id, w.version, resp.statistics
                ));
            }
        }
        WorkflowCmd::Delete { id, force } => {
            let resp = workflows(&ch)
                .delete_workflow(proto::DeleteWorkflowRequest {
                    workflow_id: id.clone(),
                    force,
                })
                .await?
                .into_inner();
            if out.json {
                out.json_line(&json!({
                    "workflow_id": id,
                    "versions": resp.versions,
                    "expired_runs": resp.expired_runs,
                }));
            } else {
                let expired = if resp.expired_runs.is_empty() {
                    String::new()
                } else {
                    format!("; expired open run(s) {}", resp.expired_runs.join(", "))
                };
                out.text(&format!(
                    "deleted workflow {id} ({} version(s)){expired}",
                    resp.versions
                ));
            }
        }
        WorkflowCmd::Get { id, version } => {
            let w = workflows(&ch)
                .get_workflow(proto::GetWorkflowRequest {
                    workflow_id: id,
                    version,
                })
                .await?
                .into_inner()
                .workflow
                .unwrap_or_default();
            print_value(out, &workflow_json(&w));
        }
        WorkflowCmd::List { agent } => {
            let ws = workflows(&ch)
                .list_workflows(proto::ListWorkflowsRequest {
                    agent: agent.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .workflows;
            if out.json {
                for w in &ws {
                    out.json_line(&workflow_json(w));
                }
            } else {
                out.text(&workflow_rows(&ws));
            }
        }
        WorkflowCmd::Versions { id } => {
            let ws = workflows(&ch)
                .workflow_versions(proto::WorkflowVersionsRequest { workflow_id: id })
                .await?
                .into_inner()
                .versions;
            if out.json {
                for w in &ws {
                    out.json_line(&workflow_json(w));
                }
            } else {
                out.text(&workflow_rows(&ws));
            }
        }
        WorkflowCmd::Defaults => {
            let resp = workflows(&ch)
                .install_defaults(proto::InstallDefaultsRequest {})
                .await?
                .into_inner();
            if out.json {
                out.json_line(&json!({"installed": resp.installed, "unchanged": resp.unchanged}));
            } else {
                out.text(&format!(
                    "installed: {}; unchanged: {}",
                    if resp.installed.is_empty() {
                        "none".into()
                    } else {
                        resp.installed.join(", ")
                    },
                    if resp.unchanged.is_empty() {
                        "none".into()
                    } else {
                        resp.unchanged.join(", ")
                    }
                ));
            }
        }
    }
    Ok(())
}

fn print_run(out: &Output, r: &proto::Run) {
    if out.json {
        out.json_line(&run_json(r));
    } else {
        out.text(&format!(
            "{} {} (workflow {} v{}, {} step reports){}",
            r.run_id,
            run_status(r.status),
            r.workflow_id,
            r.workflow_version,
            r.steps.len(),
            r.duration_ms
                .map(|d| format!(", {d} ms"))
                .unwrap_or_default()
        ));
    }
}

/// Runs `wfdb run …`.
pub async fn run(ch: Channel, cmd: RunCmd, out: &Output) -> anyhow::Result<()> {
    let mut c = workflows(&ch);
    match cmd {
        RunCmd::Start {
            workflow,
            version,
            id,
            force,
        } => {
            let r = c
                .start_run(proto::StartRunRequest {
                    workflow_id: workflow,
                    version,
                    run_id: id.unwrap_or_default(),
                    force,
                })
                .await?
                .into_inner()
                .run
                .unwrap_or_default();
            print_run(out, &r);
        }
        RunCmd::Step {
            run,
            step,
            status,
            message,
        } => {
            let status = match status {
                StepArg::Started => proto::StepStatus::Started,
                StepArg::Succeeded => proto::StepStatus::Succeeded,
                StepArg::Failed => proto::StepStatus::Failed,
                StepArg::Skipped => proto::StepStatus::Skipped,
            } as i32;
            let r = c
                .report_step(proto::ReportStepRequest {
                    run_id: run,
                    step,
                    status,
                    message,
                })
                .await?
                .into_inner()
                .run
                .unwrap_or_default();
            print_run(out, &r);
        }
        RunCmd::Finish {
            run,
            failed,
            duration_ms,
            message,
        } => {
            let resp = c
                .finish_run(proto::FinishRunRequest {
                    run_id: run,
                    success: !failed,
                    duration_ms,
                    message,
                })
                .await?
                .into_inner();
            let (r, w) = (
                resp.run.unwrap_or_default(),
                resp.workflow.unwrap_or_default(),
            );
            if out.json {
                out.json_line(&json!({
                    "run": run_json(&r),
                    "workflow": workflow_json(&w),
                    "duration_from_daemon": resp.duration_from_daemon,
                }));
            } else {
                print_run(out, &r);
                if resp.duration_from_daemon {
                    out.text(
                        "duration measured by the daemon from the run's start \
                         (give --duration-ms for your own measure)",
                    );
                }
                out.text(&format!(
                    "workflow {} v{}: success rate {:.4}, estimated time {:.2} s, {} runs",
                    w.workflow_id, w.version, w.success_rate, w.estimated_time, w.run_count
                ));
            }
        }
        RunCmd::Get { run } => {
            let r = c
                .get_run(proto::GetRunRequest { run_id: run })
                .await?
                .into_inner()
                .run
                .unwrap_or_default();
            if out.json {
                out.json_line(&run_json(&r));
            } else {
                out.text(&serde_json::to_string_pretty(&run_json(&r)).unwrap_or_default());
            }
        }
        RunCmd::List { workflow, limit } => {
            let runs = c
                .list_runs(proto::ListRunsRequest {
                    workflow_id: workflow.unwrap_or_default(),
                    limit,
                })
                .await?
                .into_inner()
                .runs;
            if out.json {
                for r in &runs {
                    out.json_line(&run_json(r));
                }
            } else {
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        vec![
                            r.run_id.clone(),
                            r.workflow_id.clone(),
                            r.workflow_version.to_string(),
                            run_status(r.status).into(),
                            r.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                out.text(&table(
                    &["RUN", "WORKFLOW", "VERSION", "STATUS", "DURATION_MS"],
                    &rows,
                ));
            }
        }
        RunCmd::Expire { idle_ms } => {
            let expired = c
                .expire_runs(proto::ExpireRunsRequest { idle_ms })
                .await?
                .into_inner()
                .expired;
            if out.json {
                out.json_line(&json!({"expired": expired}));
            } else {
                out.text(&format!(
                    "expired {} runs{}",
                    expired.len(),
                    if expired.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", expired.join(", "))
                    }
                ));
            }
        }
        RunCmd::Watch { workflow, run } => {
            let mut stream = c
                .watch_runs(proto::WatchRunsRequest {
                    workflow_id: workflow.unwrap_or_default(),
                    run_id: run.unwrap_or_default(),
                })
                .await?
                .into_inner();
            while let Some(ev) = stream.message().await? {
                let kind = proto::run_event::Kind::try_from(ev.kind)
                    .map(|k| k.as_str_name().trim_start_matches("KIND_").to_lowercase())
                    .unwrap_or_default();
                if out.json {
                    out.json_line(&json!({"event": kind, "missed": ev.missed, "run": ev.run.as_ref().map(run_json)}));
                } else if let Some(r) = &ev.run {
                    out.text(&format!("{kind} {} {}", r.run_id, run_status(r.status)));
                } else {
                    out.text(&format!("{kind} (missed {} events)", ev.missed));
                }
            }
        }
    }
    Ok(())
}

/// Keys of a session file: the domain's list, so the CLI refuses what the daemon would.
use workflowdb::registry::SESSION_FIELDS as SESSION_FILE_KEYS;

fn session_from_json(id: &str, m: &Map<String, Value>) -> anyhow::Result<proto::Session> {
    if let Some(unknown) = m.keys().find(|k| !SESSION_FILE_KEYS.contains(&k.as_str())) {
        return Err(tonic::Status::invalid_argument(format!(
            "{}: unknown session field; the fields are {}",
            workflowdb::quote::short(unknown),
            SESSION_FILE_KEYS.join(", ")
        ))
        .into());
    }
    let part = |k: &str| -> anyhow::Result<Option<prost_types::Struct>> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(struct_from_map(o))),
            Some(_) => anyhow::bail!("{k} must be a JSON object"),
        }
    };
    if let Some(other) = m.get("session_id").and_then(Value::as_str) {
        anyhow::ensure!(
            other == id,
            "the file's session_id {} differs from {}",
            workflowdb::quote::short(other),
            workflowdb::quote::short(id)
        );
    }
    let patterns = match m.get("learned_patterns") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .context("learned_patterns must be strings")
            })
            .collect::<anyhow::Result<_>>()?,
        Some(_) => anyhow::bail!("learned_patterns must be a list of strings"),
    };
    Ok(proto::Session {
        session_id: id.to_string(),
        timestamp: m
            .get("timestamp")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        context_snapshot: part("context_snapshot")?,
        agent_states: part("agent_states")?,
        workflow_progress: part("workflow_progress")?,
        learned_patterns: patterns,
        ..Default::default()
    })
}

/// Runs `wfdb session …`.
pub async fn session(ch: Channel, cmd: SessionCmd, out: &Output) -> anyhow::Result<()> {
    let mut c = sessions(&ch);
    match cmd {
        SessionCmd::Save { id, file } => {
            let m = match &file {
                Some(f) => read_object(f)?,
                None => Map::new(),
            };
            // Checked here for a clear message, and sent as the file's own dict so the daemon
            // validates every key too (an unknown one is refused, never dropped).
            session_from_json(&id, &m)?;
            let resp = c
                .save_session(proto::SaveSessionRequest {
                    session: Some(proto::Session {
                        session_id: id.clone(),
                        ..Default::default()
                    }),
                    session_info: Some(struct_from_map(&m)),
                })
                .await?
                .into_inner();
            let meta = resp.meta.unwrap_or_default();
            if out.json {
                let mut v = meta_json(&meta);
                v["root_clocks"] = resp
                    .root_clocks
                    .iter()
                    .map(|c| (c.root.clone(), json!(c.clock)))
                    .collect::<Map<_, _>>()
                    .into();
                v["pruned"] = json!(resp.pruned);
                out.json_line(&v);
            } else {
                out.text(&format!(
                    "saved session {} version {} ({} bytes)",
                    meta.session_id, meta.version, meta.size_bytes
                ));
            }
        }
        SessionCmd::Restore {
            id,
            version,
            changes,
        } => {
            let s = c
                .restore_session(proto::RestoreSessionRequest {
                    session_id: id,
                    version,
                })
                .await?
                .into_inner()
                .session
                .unwrap_or_default();
            let mut v = session_json(&s);
            if changes {
                v["changes"] = session_changes(&ch, &s).await?;
            }
            print_value(out, &v);
        }
        SessionCmd::History { id } => {
            let versions = c
                .session_history(proto::SessionHistoryRequest { session_id: id })
                .await?
                .into_inner()
                .versions;
            meta_table(out, &versions);
        }
        SessionCmd::List {
            prefix,
            after_ms,
            before_ms,
            limit,
        } => {
            let list = c
                .list_sessions(proto::ListSessionsRequest {
                    prefix,
                    saved_after_ms: after_ms,
                    saved_before_ms: before_ms,
                    limit,
                })
                .await?
                .into_inner()
                .sessions;
            meta_table(out, &list);
        }
        SessionCmd::Delete { id, version } => {
            let n = c
                .delete_session(proto::DeleteSessionRequest {
                    session_id: id.clone(),
                    version,
                })
                .await?
                .into_inner()
                .deleted;
            if out.json {
                out.json_line(&json!({"session_id": id, "deleted": n}));
            } else {
                out.text(&format!("deleted {n} version(s) of session {id}"));
            }
        }
        SessionCmd::Config {
            max_bytes,
            keep_last,
            max_age_ms,
        } => {
            let resp = if max_bytes.is_none() && keep_last.is_none() && max_age_ms.is_none() {
                c.get_session_settings(proto::GetSessionSettingsRequest {})
                    .await?
                    .into_inner()
            } else {
                c.set_session_settings(proto::SetSessionSettingsRequest {
                    max_session_bytes: max_bytes,
                    keep_last,
                    max_age_ms,
                })
                .await?
                .into_inner()
            };
            let s = resp.settings.unwrap_or_default();
            let v = json!({"max_session_bytes": s.max_session_bytes, "keep_last": s.keep_last,
                           "max_age_ms": s.max_age_ms, "pruned": resp.pruned});
            print_value(out, &v);
        }
    }
    Ok(())
}

/// The catalog files changed since a session's recorded root clocks.
async fn session_changes(ch: &Channel, s: &proto::Session) -> anyhow::Result<Value> {
    let mut roots = Vec::new();
    for rc in &s.root_clocks {
        let listed = CatalogClient::new(ch.clone())
            .list_files(proto::ListFilesRequest {
                root: rc.root.clone(),
                since_clock: Some(rc.clock),
                ..Default::default()
            })
            .await;
        let mut stream = match listed {
            Ok(s) => s.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                roots.push(json!({"root": rc.root, "saved_clock": rc.clock, "error": "the root is no longer watched"}));
                continue;
            }
            Err(status) => return Err(status.into()),
        };
        let mut changed = Vec::new();
        let mut clock = rc.clock;
        while let Some(chunk) = stream.message().await? {
            clock = chunk.clock;
            changed.extend(chunk.files.into_iter().map(|f| f.path));
        }
        roots.push(
            json!({"root": rc.root, "saved_clock": rc.clock, "clock": clock, "changed": changed}),
        );
    }
    Ok(json!({
        "roots": roots,
        "note": "files added or modified since the save; deletions are not listed yet (the catalog's since-clock listing does not report removed files)",
    }))
}

fn meta_table(out: &Output, metas: &[proto::SessionMeta]) {
    if out.json {
        for m in metas {
            out.json_line(&meta_json(m));
        }
        return;
    }
    let rows: Vec<Vec<String>> = metas
        .iter()
        .map(|m| {
            vec![
                m.session_id.clone(),
                m.version.to_string(),
                m.versions.to_string(),
                m.size_bytes.to_string(),
                m.timestamp.clone(),
            ]
        })
        .collect();
    out.text(&table(
        &["SESSION", "VERSION", "VERSIONS", "BYTES", "TIMESTAMP"],
        &rows,
    ));
}

fn edge_text(e: &proto::GraphEdge) -> String {
    format!("{} -{}-> {}", e.source, e.kind, e.target)
}

/// Runs `wfdb kg …`.
pub async fn kg(ch: Channel, cmd: KgCmd, out: &Output) -> anyhow::Result<()> {
    let mut c = KnowledgeClient::new(ch).max_decoding_message_size(MAX_MESSAGE_BYTES);
    match cmd {
        KgCmd::Neighbors {
            node,
            direction,
            kinds,
        } => {
            let direction = match direction {
                DirectionArg::Both => proto::Direction::Both,
                DirectionArg::Out => proto::Direction::Out,
                DirectionArg::In => proto::Direction::In,
            } as i32;
            let ns = c
                .neighbors(proto::NeighborsRequest {
                    node,
                    direction,
                    kinds,
                })
                .await?
                .into_inner()
                .neighbors;
            for n in &ns {
                if out.json {
                    out.json_line(
                        &json!({"node": n.node, "kind": n.kind, "direction": n.direction}),
                    );
                } else {
                    out.text(&format!("{} {} {}", n.direction, n.kind, n.node));
                }
            }
        }
        KgCmd::Related {
            node,
            depth,
            kinds,
            node_kind,
        } => {
            let ns = c
                .related(proto::RelatedRequest {
                    node,
                    max_depth: depth,
                    kinds,
                    node_kind: node_kind.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .nodes;
            for n in &ns {
                if out.json {
                    out.json_line(&json!({"node": n.node, "distance": n.distance}));
                } else {
                    out.text(&format!("{} {}", n.distance, n.node));
                }
            }
        }
        KgCmd::Path { from, to } => {
            let p = c
                .shortest_path(proto::ShortestPathRequest {
                    source: from,
                    target: to,
                    kinds: vec![],
                })
                .await?
                .into_inner();
            if out.json {
                out.json_line(&json!({"found": p.found, "nodes": p.nodes, "edges": p.edges.iter().map(edge_text).collect::<Vec<_>>()}));
            } else if p.found {
                out.text(&p.nodes.join(" — "));
            } else {
                out.text("no path");
            }
        }
        KgCmd::Lookup { relation, name } => {
            let names = c
                .lookup(proto::LookupRequest { relation, name })
                .await?
                .into_inner()
                .names;
            for n in names {
                if out.json {
                    out.json_line(&json!({"name": n}));
                } else {
                    out.text(&n);
                }
            }
        }
        KgCmd::Show { full } => {
            let g = c
                .get_graph(proto::GetGraphRequest { full })
                .await?
                .into_inner();
            let counts = |v: &[proto::CountEntry]| {
                v.iter()
                    .map(|e| (e.key.clone(), json!(e.count)))
                    .collect::<Map<_, _>>()
            };
            let v = json!({
                "nodes": g.node_count, "edges": g.edge_count,
                "nodes_by_kind": counts(&g.nodes_by_kind), "edges_by_kind": counts(&g.edges_by_kind),
                "knowledge_graph": obj(&g.original),
                "node_list": g.nodes, "edge_list": g.edges.iter().map(edge_text).collect::<Vec<_>>(),
            });
            print_value(out, &v);
        }
        KgCmd::Rebuild => {
            let r = c.rebuild(proto::RebuildRequest {}).await?.into_inner();
            let v = json!({
                "first": r.first, "nodes": r.node_count, "edges": r.edge_count,
                "previous_at_ms": r.previous_at_ms,
                "added_nodes": r.added_nodes, "removed_nodes": r.removed_nodes,
                "added_edges": r.added_edges.iter().map(edge_text).collect::<Vec<_>>(),
                "removed_edges": r.removed_edges.iter().map(edge_text).collect::<Vec<_>>(),
            });
            if out.json {
                out.json_line(&v);
            } else {
                out.text(&format!(
                    "{} nodes, {} edges; {}: +{} nodes, -{} nodes, +{} edges, -{} edges",
                    r.node_count,
                    r.edge_count,
                    if r.first {
                        "first rebuild (everything counts as added)"
                    } else {
                        "since the previous rebuild"
                    },
                    r.added_nodes.len(),
                    r.removed_nodes.len(),
                    r.added_edges.len(),
                    r.removed_edges.len()
                ));
                for n in r.added_nodes.iter().take(50) {
                    out.text(&format!("  + {n}"));
                }
                for n in r.removed_nodes.iter().take(50) {
                    out.text(&format!("  - {n}"));
                }
                for e in r.added_edges.iter().take(50) {
                    out.text(&format!("  + {}", edge_text(e)));
                }
                for e in r.removed_edges.iter().take(50) {
                    out.text(&format!("  - {}", edge_text(e)));
                }
            }
        }
    }
    Ok(())
}

/// Runs `wfdb export FILE` (`-` writes to standard output).
pub async fn export(ch: Channel, file: PathBuf, out: &Output) -> anyhow::Result<()> {
    let mut stream = TransferClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .export(proto::ExportRequest {})
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    if file.as_os_str() == "-" {
        if out.json {
            // One object on one line, as every --json output.
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("the daemon's export is not JSON: {e}"))?;
            out.json_line(&v);
        } else {
            out.text(String::from_utf8_lossy(&bytes).trim_end());
        }
        return Ok(());
    }
    let tmp = file.with_extension("tmp-export");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
    if out.json {
        out.json_line(&json!({"file": file.display().to_string(), "bytes": bytes.len()}));
    } else {
        out.text(&format!(
            "exported {} bytes to {}",
            bytes.len(),
            file.display()
        ));
    }
    Ok(())
}

/// Runs `wfdb import FILE`.
pub async fn import(ch: Channel, file: PathBuf, dry_run: bool, out: &Output) -> anyhow::Result<()> {
    let document =
        std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    // Streamed in 1 MiB pieces (one message of any size would break gRPC's limits), each
    // copied only when sent.
    const PIECE: usize = 1 << 20;
    let pieces = document.len().div_ceil(PIECE).max(1);
    let chunks = (0..pieces).map(move |i| proto::ImportChunk {
        data: document[(i * PIECE).min(document.len())..((i + 1) * PIECE).min(document.len())]
            .to_vec(),
        dry_run,
    });
    let r = TransferClient::new(ch)
        .import_stream(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let v = json!({"agents": r.agents, "workflow_versions": r.workflow_versions, "runs": r.runs,
                   "session_versions": r.session_versions, "files_ignored": r.files_ignored, "dry_run": dry_run});
    if out.json {
        out.json_line(&v);
    } else {
        out.text(&format!(
            "{} {} agents, {} workflow versions, {} runs, {} session versions ({} catalogued files in the document are derived from disk and were not imported)",
            if dry_run { "valid: would import" } else { "imported" },
            r.agents, r.workflow_versions, r.runs, r.session_versions, r.files_ignored
        ));
    }
    Ok(())
}

/// Report formats.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ReportFormat {
    Text,
    Markdown,
    Json,
}

/// Runs `wfdb report`.
pub async fn report(ch: Channel, format: ReportFormat, out: &Output) -> anyhow::Result<()> {
    let format = match (format, out.json) {
        (_, true) | (ReportFormat::Json, _) => "json",
        (ReportFormat::Markdown, _) => "markdown",
        (ReportFormat::Text, _) => "text",
    };
    let r = TransferClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .report(proto::ReportRequest {
            format: format.into(),
        })
        .await?
        .into_inner();
    if out.json {
        // One object per line, as every --json output.
        let v: Value =
            serde_json::from_str(&r.text).context("the daemon's JSON report is not JSON")?;
        out.json_line(&v);
    } else {
        out.text(r.text.trim_end());
    }
    Ok(())
}
