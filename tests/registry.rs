//! Integration tests of the workflow database (issue 7): a real daemon, real gRPC clients, the
//! real CLI.

mod common;

use std::time::{Duration, Instant};

use common::{cli, start, write_old, Daemon, Dirs, TIMEOUT};
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;
use workflowdb::proto;
use workflowdb::proto::agents_client::AgentsClient;
use workflowdb::proto::knowledge_client::KnowledgeClient;
use workflowdb::proto::sessions_client::SessionsClient;
use workflowdb::proto::transfer_client::TransferClient;
use workflowdb::proto::workflows_client::WorkflowsClient;
use workflowdb::rpc::structs::{map_from_struct, struct_from_map};

fn obj(v: Value) -> prost_types::Struct {
    struct_from_map(v.as_object().expect("an object"))
}

/// A repository with two Python files of one component.
fn repo(dirs: &Dirs) -> std::path::PathBuf {
    let root = dirs.tmp.path().join("repo");
    write_old(&root.join("agents/codex.py"), b"from agents import base\n");
    write_old(&root.join("agents/base.py"), b"X = 1\n");
    write_old(&root.join("agents/__init__.py"), b"");
    write_old(&root.join("README.md"), b"# repo\n");
    root
}

async fn daemon(dirs: &Dirs) -> Daemon {
    let root = repo(dirs);
    start(dirs, &[root.as_os_str()]).await
}

async fn clients(
    d: &Daemon,
) -> (
    AgentsClient<Channel>,
    WorkflowsClient<Channel>,
    SessionsClient<Channel>,
) {
    let ch = d.channel().await;
    (
        AgentsClient::new(ch.clone()),
        WorkflowsClient::new(ch.clone()),
        SessionsClient::new(ch),
    )
}

async fn register(a: &mut AgentsClient<Channel>, name: &str, info: Value) -> proto::Agent {
    a.register_agent(proto::RegisterAgentRequest {
        agent: None,
        name: name.into(),
        agent_info: Some(obj(info)),
    })
    .await
    .unwrap()
    .into_inner()
    .agent
    .unwrap()
}

/// Registers the four agents the default workflows need.
async fn register_default_agents(a: &mut AgentsClient<Channel>) {
    register(
        a,
        "codex",
        json!({"description": "Code generation agent", "capabilities": ["code_generation", "code_review"], "owned_paths": ["agents/*.py"]}),
    )
    .await;
    for n in ["reasoning", "nlp_interpreter", "ui_designer"] {
        register(a, n, json!({"description": format!("{n} agent")})).await;
    }
}

async fn export_doc(d: &Daemon) -> Value {
    let mut s = TransferClient::new(d.channel().await)
        .export(proto::ExportRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(c) = s.message().await.unwrap() {
        bytes.extend(c.data);
    }
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn agents_shorthand_find_metrics_removal_and_related_files() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (mut a, mut w, _) = clients(&d).await;
    let codex = register(
        &mut a,
        "codex",
        json!({"description": "Code generation agent", "capabilities": ["code_generation", "code_review"],
               "owned_paths": ["agents/*.py"], "team": "core"}),
    )
    .await;
    assert_eq!(codex.capabilities.len(), 2);
    assert!(codex.live);
    assert_eq!(
        map_from_struct(codex.metadata.as_ref().unwrap())["team"],
        json!("core")
    );
    // The typed form, with a full capability.
    let typed = a
        .register_agent(proto::RegisterAgentRequest {
            agent: Some(proto::Agent {
                name: "reasoning".into(),
                agent_type: "ReasoningAgent".into(),
                capabilities: vec![proto::Capability {
                    name: "planning".into(),
                    input_types: vec!["text".into()],
                    performance_metrics: Some(obj(json!({"p50_ms": 12}))),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(typed.created);
    // Find by capability.
    let found = a
        .list_agents(proto::ListAgentsRequest {
            capability: "code_review".into(),
            live_only: false,
        })
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert_eq!(
        found.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["codex"]
    );
    // Metrics aggregate per capability.
    for (lat, ok) in [(100.0, true), (200.0, false)] {
        a.record_metric(proto::RecordMetricRequest {
            agent: "codex".into(),
            capability: "code_generation".into(),
            latency_ms: lat,
            success: ok,
        })
        .await
        .unwrap();
    }
    let got = a
        .get_agent(proto::GetAgentRequest {
            name: "codex".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    let stats = got.capabilities[0].stats.unwrap();
    assert_eq!((stats.count, stats.successes), (2, 1));
    assert!((stats.mean_latency_ms - 150.0).abs() < 1e-9);
    let e = a
        .record_metric(proto::RecordMetricRequest {
            agent: "codex".into(),
            capability: "flying".into(),
            latency_ms: 1.0,
            success: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // Re-registration keeps the stats of a capability registered again.
    register(
        &mut a,
        "codex",
        json!({"capabilities": ["code_generation", "code_review"], "owned_paths": ["agents/*.py"]}),
    )
    .await;
    let got = a
        .get_agent(proto::GetAgentRequest {
            name: "codex".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    assert_eq!(got.capabilities[0].stats.unwrap().count, 2);
    // related_agents on catalog records.
    let f = d
        .catalog()
        .await
        .get_file(proto::GetFileRequest {
            path: "agents/codex.py".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(f.related_agents, ["codex"]);
    let listed = common::list_all(&d).await;
    assert!(listed[b"README.md".as_slice()].related_agents.is_empty());
    assert_eq!(
        listed[b"agents/base.py".as_slice()].related_agents,
        ["codex"]
    );
    // get_agent_workflows.
    let uses = w
        .list_workflows(proto::ListWorkflowsRequest {
            agent: "codex".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .workflows;
    assert_eq!(uses.len(), 3);
    // Removal refused while workflows need the agent, naming them; forced works.
    let e = a
        .remove_agent(proto::RemoveAgentRequest {
            name: "codex".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    for wf in [
        "code_enhancement",
        "multi_agent_collaboration",
        "ui_generation",
    ] {
        assert!(e.message().contains(wf), "{}", e.message());
    }
    let removed = a
        .remove_agent(proto::RemoveAgentRequest {
            name: "codex".into(),
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.workflows.len(), 3);
    let e = a
        .get_agent(proto::GetAgentRequest {
            name: "codex".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    d.stop();
}

#[tokio::test]
async fn invalid_definitions_report_every_problem() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (mut a, mut w, _) = clients(&d).await;
    let e = w
        .define_workflow(proto::DefineWorkflowRequest {
            workflow: None,
            definition: Some(obj(json!({
                "workflow_id": "",
                "name": "Broken",
                "steps": [
                    {"step": 2, "action": "b", "agent": "codex"},
                    {"step": 1, "action": "a", "agent": "ghost"},
                    {"step": 1, "action": "c", "agent": "codex"}
                ],
                "required_agents": ["codex"],
                "success_rate": 1.5
            }))),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let m = e.message();
    for path in [
        "workflow_id",
        "steps[1]",
        "steps[1].agent",
        "steps[2]",
        "success_rate",
    ] {
        assert!(m.contains(path), "{path} missing from: {m}");
    }
    let e = a
        .register_agent(proto::RegisterAgentRequest {
            agent: None,
            name: "all".into(),
            agent_info: Some(obj(json!({
                "capabilities": ["x", "x", 7],
                "owned_paths": ["src/[broken"],
                "lease": {"ttl_ms": 0}
            }))),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let m = e.message();
    for path in [
        "name",
        "capabilities[1].name",
        "capabilities[2]",
        "owned_paths[0]",
        "lease.ttl_ms",
    ] {
        assert!(m.contains(path), "{path} missing from: {m}");
    }
    // Nothing was stored.
    assert!(a
        .list_agents(proto::ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .agents
        .is_empty());
    d.stop();
}

#[tokio::test]
async fn defaults_versions_and_readiness() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (mut a, mut w, _) = clients(&d).await;
    let list = w
        .list_workflows(proto::ListWorkflowsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workflows;
    let figures: Vec<(&str, usize, f64, f64, bool)> = list
        .iter()
        .map(|w| {
            (
                w.workflow_id.as_str(),
                w.steps.len(),
                w.estimated_time,
                w.success_rate,
                w.ready,
            )
        })
        .collect();
    assert_eq!(
        figures,
        [
            ("code_enhancement", 4, 20.0, 0.88, false),
            ("multi_agent_collaboration", 4, 45.0, 0.85, false),
            ("ui_generation", 4, 30.0, 0.92, false),
        ]
    );
    let mac = &list[1];
    assert_eq!(mac.steps[2].agent, "all");
    register_default_agents(&mut a).await;
    let ui = w
        .get_workflow(proto::GetWorkflowRequest {
            workflow_id: "ui_generation".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    assert!(ui.ready, "{:?}", ui.missing_agents);
    // `wfdb workflow defaults` leaves them unchanged.
    let (code, out, err) = cli(&d.socket, &["--json", "workflow", "defaults"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["unchanged"].as_array().unwrap().len(), 3);
    // A redefinition is a new version; the old one stays readable.
    let mut def = serde_json::to_value(json!({
        "workflow_id": "ui_generation", "name": "UI Generation v2", "description": "d",
        "steps": [{"step": 1, "action": "Do it", "agent": "codex"}],
        "required_agents": ["codex"], "estimated_time": 10.0, "success_rate": 0.5
    }))
    .unwrap();
    let v2 = w
        .define_workflow(proto::DefineWorkflowRequest {
            workflow: None,
            definition: Some(obj(def.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v2.workflow.unwrap().version, v2.unchanged), (2, false));
    let same = w
        .define_workflow(proto::DefineWorkflowRequest {
            workflow: None,
            definition: Some(obj(def.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(same.unchanged);
    def["name"] = json!("v3");
    w.define_workflow(proto::DefineWorkflowRequest {
        workflow: None,
        definition: Some(obj(def)),
    })
    .await
    .unwrap();
    let versions = w
        .workflow_versions(proto::WorkflowVersionsRequest {
            workflow_id: "ui_generation".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let v1 = w
        .get_workflow(proto::GetWorkflowRequest {
            workflow_id: "ui_generation".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    assert_eq!(v1.steps.len(), 4);
    // Defaults are installed once: a restart does not bring version 1's definition back.
    d.stop();
    let d = start(&dirs, &[]).await;
    let (_, mut w, _) = clients(&d).await;
    let latest = w
        .get_workflow(proto::GetWorkflowRequest {
            workflow_id: "ui_generation".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    assert_eq!((latest.version, latest.name.as_str()), (3, "v3"));
    d.stop();
}

#[tokio::test]
async fn runs_progress_finish_statistics_watch_and_expiry() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (_, mut w, _) = clients(&d).await;
    let mut events = w
        .watch_runs(proto::WatchRunsRequest {
            workflow_id: "code_enhancement".into(),
            run_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // Its agents are not registered: a start is refused, naming them, unless forced.
    let refused = w
        .start_run(proto::StartRunRequest {
            workflow_id: "code_enhancement".into(),
            version: 0,
            run_id: "r1".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("codex, reasoning"),
        "{}",
        refused.message()
    );
    let run = w
        .start_run(proto::StartRunRequest {
            workflow_id: "code_enhancement".into(),
            version: 0,
            run_id: "r1".into(),
            force: true,
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(run.workflow_version, 1);
    w.report_step(proto::ReportStepRequest {
        run_id: "r1".into(),
        step: 1,
        status: proto::StepStatus::Succeeded as i32,
        message: "analysed".into(),
    })
    .await
    .unwrap();
    let e = w
        .report_step(proto::ReportStepRequest {
            run_id: "r1".into(),
            step: 9,
            status: proto::StepStatus::Started as i32,
            message: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let done = w
        .finish_run(proto::FinishRunRequest {
            run_id: "r1".into(),
            success: true,
            duration_ms: Some(10_000),
            message: "ok".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let wf = done.workflow.unwrap();
    assert!((wf.success_rate - (0.9 * 0.88 + 0.1)).abs() < 1e-9);
    assert!(
        (wf.estimated_time - 15.0).abs() < 1e-9,
        "{}",
        wf.estimated_time
    );
    assert_eq!(wf.run_count, 1);
    let e = w
        .finish_run(proto::FinishRunRequest {
            run_id: "r1".into(),
            success: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let kinds: Vec<i32> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let ev = tokio::time::timeout(TIMEOUT, events.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            v.push(ev.kind);
        }
        v
    };
    use proto::run_event::Kind;
    assert_eq!(
        kinds,
        [
            Kind::Started as i32,
            Kind::Step as i32,
            Kind::Finished as i32
        ]
    );
    // A run left open is expired once idle long enough.
    w.start_run(proto::StartRunRequest {
        workflow_id: "code_enhancement".into(),
        version: 0,
        run_id: "stale".into(),
        force: true,
    })
    .await
    .unwrap();
    let mut expired = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while expired.is_empty() {
        assert!(Instant::now() < deadline, "the open run never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
        expired = w
            .expire_runs(proto::ExpireRunsRequest { idle_ms: 50 })
            .await
            .unwrap()
            .into_inner()
            .expired;
    }
    assert_eq!(expired, ["stale"]);
    let history = w
        .list_runs(proto::ListRunsRequest {
            workflow_id: "code_enhancement".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(history.len(), 2);
    assert!(history
        .iter()
        .any(|r| r.run_id == "stale" && r.status == proto::RunStatus::Expired as i32));
    // Expiry does not change the statistics.
    let wf = w
        .get_workflow(proto::GetWorkflowRequest {
            workflow_id: "code_enhancement".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    assert_eq!(wf.run_count, 1);
    d.stop();
}

#[tokio::test]
async fn lease_expiry_is_announced_and_heartbeat_revives() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (mut a, _, _) = clients(&d).await;
    let mut events = a
        .watch_agents(proto::WatchAgentsRequest {})
        .await
        .unwrap()
        .into_inner();
    let agent = register(&mut a, "scout", json!({"lease": {"ttl_ms": 300}})).await;
    assert!(agent.live);
    register(&mut a, "steady", json!({})).await;
    use proto::agent_event::Kind;
    let mut seen = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while !seen.contains(&(Kind::Expired as i32, "scout".to_string())) {
        assert!(Instant::now() < deadline, "no expiry event: {seen:?}");
        let ev = tokio::time::timeout(TIMEOUT, events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push((ev.kind, ev.name));
    }
    assert_eq!(seen[0], (Kind::Registered as i32, "scout".to_string()));
    let live: Vec<String> = a
        .list_agents(proto::ListAgentsRequest {
            capability: String::new(),
            live_only: true,
        })
        .await
        .unwrap()
        .into_inner()
        .agents
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(live, ["steady"]);
    // Expired agents are shown, not deleted.
    let all = a
        .list_agents(proto::ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert!(all.iter().any(|a| a.name == "scout" && !a.live));
    let back = a
        .heartbeat(proto::HeartbeatRequest {
            name: "scout".into(),
            ttl_ms: Some(60_000),
        })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    assert!(back.live);
    let ev = tokio::time::timeout(TIMEOUT, events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((ev.kind, ev.name.as_str()), (Kind::Updated as i32, "scout"));
    // An open stream does not hold up shutdown.
    let status = d.stop();
    assert!(status.success());
}

#[tokio::test]
async fn sessions_versions_restore_list_delete_size_and_retention() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (_, _, mut s) = clients(&d).await;
    for i in 1..=3 {
        let meta = s
            .save_session(proto::SaveSessionRequest {
                session: Some(proto::Session {
                    session_id: "team/s1".into(),
                    timestamp: "2024-05-01T12:00:00".into(),
                    context_snapshot: Some(obj(json!({"key": "value", "i": i}))),
                    agent_states: Some(obj(json!({"codex": {"ready": true}}))),
                    workflow_progress: Some(obj(json!({"ui_generation": 0.75}))),
                    learned_patterns: vec!["pattern1".into()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(meta.meta.unwrap().version, i);
        assert_eq!(meta.root_clocks.len(), 1);
    }
    s.save_session(proto::SaveSessionRequest {
        session: Some(proto::Session {
            session_id: "other".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let latest = s
        .restore_session(proto::RestoreSessionRequest {
            session_id: "team/s1".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(latest.version, 3);
    assert_eq!(
        map_from_struct(latest.context_snapshot.as_ref().unwrap())["i"],
        json!(3)
    );
    assert_eq!(latest.root_clocks.len(), 1);
    let v2 = s
        .restore_session(proto::RestoreSessionRequest {
            session_id: "team/s1".into(),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        map_from_struct(v2.context_snapshot.as_ref().unwrap())["i"],
        json!(2)
    );
    let listed = s
        .list_sessions(proto::ListSessionsRequest {
            prefix: "team/".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].version, listed[0].versions), (3, 3));
    let all = s
        .list_sessions(proto::ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(all[0].session_id, "other", "most recent first");
    // Invalid parts are all reported.
    let e = s
        .save_session(proto::SaveSessionRequest {
            session: Some(proto::Session {
                session_id: " bad".into(),
                timestamp: "yesterday".into(),
                workflow_progress: Some(obj(json!({"ui": 2}))),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    for p in ["session_id", "timestamp", "workflow_progress.ui"] {
        assert!(e.message().contains(p), "{}", e.message());
    }
    // Size limit: refused above it, with both sizes.
    s.set_session_settings(proto::SetSessionSettingsRequest {
        max_session_bytes: Some(1000),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = s
        .save_session(proto::SaveSessionRequest {
            session: Some(proto::Session {
                session_id: "big".into(),
                context_snapshot: Some(obj(json!({"blob": "x".repeat(5000)}))),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("1000") && e.message().contains("50"),
        "{}",
        e.message()
    );
    // Retention: keep the newest 2.
    let r = s
        .set_session_settings(proto::SetSessionSettingsRequest {
            keep_last: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.pruned, 1);
    let history = s
        .session_history(proto::SessionHistoryRequest {
            session_id: "team/s1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(
        history.iter().map(|m| m.version).collect::<Vec<_>>(),
        [2, 3]
    );
    // Delete.
    let n = s
        .delete_session(proto::DeleteSessionRequest {
            session_id: "team/s1".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .deleted;
    assert_eq!(n, 2);
    let e = s
        .restore_session(proto::RestoreSessionRequest {
            session_id: "team/s1".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    d.stop();
}

#[tokio::test]
async fn concurrent_saves_of_one_session_keep_every_version() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let mut tasks = Vec::new();
    for client in 0..16 {
        let ch = d.channel().await;
        tasks.push(tokio::spawn(async move {
            let mut s = SessionsClient::new(ch);
            let mut got = Vec::new();
            for i in 0..5 {
                let r = s
                    .save_session(proto::SaveSessionRequest {
                        session: Some(proto::Session {
                            session_id: "shared".into(),
                            context_snapshot: Some(obj(json!({"client": client, "i": i}))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                got.push(r.meta.unwrap().version);
            }
            got
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.extend(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=80).collect::<Vec<u64>>());
    let history = SessionsClient::new(d.channel().await)
        .session_history(proto::SessionHistoryRequest {
            session_id: "shared".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(history.len(), 80);
    d.stop();
}

#[tokio::test]
async fn an_acknowledged_save_survives_sigkill() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (mut a, mut w, mut s) = clients(&d).await;
    register(
        &mut a,
        "codex",
        json!({"capabilities": ["code_generation"]}),
    )
    .await;
    w.start_run(proto::StartRunRequest {
        workflow_id: "ui_generation".into(),
        version: 0,
        run_id: "r".into(),
        force: true,
    })
    .await
    .unwrap();
    s.save_session(proto::SaveSessionRequest {
        session: Some(proto::Session {
            session_id: "durable".into(),
            context_snapshot: Some(obj(json!({"k": "v"}))),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    // SIGKILL right after the reply: no shutdown flush.
    common::signal(&d.child, libc::SIGKILL);
    let mut d = d;
    let _ = d.child.wait();
    drop(d);
    let root = dirs.tmp.path().join("repo");
    let d = start(&dirs, &[root.as_os_str()]).await;
    let (mut a, mut w, mut s) = clients(&d).await;
    let back = s
        .restore_session(proto::RestoreSessionRequest {
            session_id: "durable".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        map_from_struct(back.context_snapshot.as_ref().unwrap())["k"],
        json!("v")
    );
    a.get_agent(proto::GetAgentRequest {
        name: "codex".into(),
    })
    .await
    .unwrap();
    w.get_run(proto::GetRunRequest { run_id: "r".into() })
        .await
        .unwrap();
    d.stop();
}

#[tokio::test]
async fn restored_session_lists_files_changed_since_it_was_saved() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (code, _, err) = cli(&d.socket, &["session", "save", "work"]);
    assert_eq!(code, 0, "{err}");
    write_old(
        &dirs.tmp.path().join("repo/agents/base.py"),
        b"X = 2  # changed\n",
    );
    // Make sure the catalog has seen the change (whether or not a watcher runs).
    let (code, _, err) = cli(&d.socket, &["scan"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(
        &d.socket,
        &["--json", "session", "restore", "work", "--changes"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let changed = &v["changes"]["roots"][0]["changed"];
    assert_eq!(changed, &json!(["agents/base.py"]), "{v}");
    assert!(v["changes"]["note"].as_str().unwrap().contains("deletions"));
    d.stop();
}

#[tokio::test]
async fn knowledge_graph_queries_and_rebuild_differences() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (mut a, _, mut s) = clients(&d).await;
    register_default_agents(&mut a).await;
    s.save_session(proto::SaveSessionRequest {
        session: Some(proto::Session {
            session_id: "s1".into(),
            workflow_progress: Some(obj(json!({"ui_generation": 0.5}))),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut k = KnowledgeClient::new(d.channel().await);
    let nb = k
        .neighbors(proto::NeighborsRequest {
            node: "agent:codex".into(),
            direction: proto::Direction::Both as i32,
            kinds: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .neighbors;
    let names: Vec<&str> = nb.iter().map(|n| n.node.as_str()).collect();
    for want in [
        "capability:code_generation",
        "file:agents/codex.py",
        "workflow:ui_generation",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    let files = k
        .related(proto::RelatedRequest {
            node: "file:agents/codex.py".into(),
            max_depth: 2,
            kinds: vec![],
            node_kind: "file".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(files.iter().any(|n| n.node == "file:agents/base.py"));
    let path = k
        .shortest_path(proto::ShortestPathRequest {
            source: "session:s1".into(),
            target: "file:agents/codex.py".into(),
            kinds: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(path.found);
    assert_eq!(
        path.nodes,
        [
            "session:s1",
            "workflow:ui_generation",
            "agent:codex",
            "file:agents/codex.py"
        ]
    );
    let lookup = |relation: &str, name: &str| proto::LookupRequest {
        relation: relation.into(),
        name: name.into(),
    };
    let wfs = k
        .lookup(lookup("agent_workflows", "codex"))
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(wfs.len(), 3);
    let comp = k
        .lookup(lookup("component_files", "agents"))
        .await
        .unwrap()
        .into_inner()
        .names;
    assert!(comp.contains(&"agents/codex.py".to_string()), "{comp:?}");
    let e = k
        .neighbors(proto::NeighborsRequest {
            node: "planet:x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Rebuild: the first records the graph, the next reports what changed since.
    let first = k
        .rebuild(proto::RebuildRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(first.first && first.added_edges.len() as u64 == first.edge_count);
    register(&mut a, "tester", json!({"capabilities": ["testing"]})).await;
    let next = k
        .rebuild(proto::RebuildRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!next.first);
    assert_eq!(next.added_nodes, ["agent:tester", "capability:testing"]);
    assert_eq!(next.added_edges.len(), 1);
    assert!(next.removed_nodes.is_empty() && next.removed_edges.is_empty());
    let g = k
        .get_graph(proto::GetGraphRequest { full: false })
        .await
        .unwrap()
        .into_inner();
    let original = map_from_struct(g.original.as_ref().unwrap());
    assert!(original["workflow_dependencies"]
        .as_array()
        .unwrap()
        .contains(&json!("workflow:ui_generation->agent:codex")));
    d.stop();
}

#[tokio::test]
async fn export_import_export_is_identity_and_a_broken_import_changes_nothing() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (mut a, mut w, mut s) = clients(&d).await;
    register_default_agents(&mut a).await;
    w.start_run(proto::StartRunRequest {
        workflow_id: "ui_generation".into(),
        version: 0,
        run_id: "r1".into(),
        force: false,
    })
    .await
    .unwrap();
    w.finish_run(proto::FinishRunRequest {
        run_id: "r1".into(),
        success: true,
        duration_ms: Some(1234),
        message: String::new(),
    })
    .await
    .unwrap();
    for i in 0..2 {
        s.save_session(proto::SaveSessionRequest {
            session: Some(proto::Session {
                session_id: "s1".into(),
                context_snapshot: Some(obj(json!({"i": i, "f": 0.25}))),
                learned_patterns: vec!["p".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let first = export_doc(&d).await;
    assert_eq!(first["format_version"], json!(1));
    assert!(first["files"]["agents/codex.py"]["checksum"].is_string());
    assert_eq!(
        first["files"]["agents/codex.py"]["related_agents"],
        json!(["codex"])
    );
    assert!(first["session_versions"]["s1"].is_array());
    let file = dirs.tmp.path().join("export.json");
    let (code, _, err) = cli(&d.socket, &["export", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    d.stop();

    // An empty daemon on the same tree.
    let dirs2 = Dirs::new();
    let root = dirs.tmp.path().join("repo");
    let d2 = start(&dirs2, &[root.as_os_str()]).await;
    // A broken document changes nothing and names the first bad record.
    let before = export_doc(&d2).await;
    let mut broken = first.clone();
    broken["workflows"]["ui_generation"]["steps"][1]["agent"] = json!("ghost");
    let bad = dirs.tmp.path().join("broken.json");
    std::fs::write(&bad, serde_json::to_vec(&broken).unwrap()).unwrap();
    let (code, _, err) = cli(&d2.socket, &["import", bad.to_str().unwrap()]);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("workflows.ui_generation") && err.contains("steps[1].agent"),
        "{err}"
    );
    assert_eq!(export_doc(&d2).await, before);
    // The real document: import, then export gives the same document.
    let (code, out, err) = cli(&d2.socket, &["--json", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["session_versions"], json!(2));
    let second = export_doc(&d2).await;
    assert_eq!(second, first);
    d2.stop();
}

#[tokio::test]
async fn report_in_three_formats() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let (mut a, _, _) = clients(&d).await;
    register_default_agents(&mut a).await;
    let (code, text, err) = cli(&d.socket, &["report"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "== Agents ==",
        "codex [live]",
        "ui_generation v1",
        "ready",
        "== Knowledge graph ==",
        "by type: python 3",
        "largest files:",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    let (code, md, _) = cli(&d.socket, &["report", "--format", "markdown"]);
    assert_eq!(code, 0);
    assert!(md.starts_with("# Workflow database report") && md.contains("## Workflows"));
    let (code, js, _) = cli(&d.socket, &["report", "--format", "json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&js).unwrap();
    assert_eq!(v["workflows"].as_array().unwrap().len(), 3);
    assert_eq!(v["roots"][0]["files"], json!(4));
    d.stop();
}

#[tokio::test]
async fn cli_takes_definitions_as_json_files() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let dir = dirs.tmp.path();
    std::fs::write(
        dir.join("agent.json"),
        r#"{"description": "Code generation agent", "capabilities": ["code_generation", "code_review"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("wf.json"),
        r#"{"workflow_id": "custom_task", "name": "Custom Task Workflow", "description": "x",
            "steps": [{"step": 1, "action": "Analyze input", "agent": "reasoning"},
                      {"step": 2, "action": "Generate solution", "agent": "codex"}],
            "required_agents": ["reasoning", "codex"],
            "input_requirements": {"text": "string"}, "output_format": {"result": "string"},
            "estimated_time": 25.0, "success_rate": 0.9}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("session.json"),
        r#"{"context_snapshot": {"key": "value"}, "agent_states": {"codex": {"ready": true}},
            "workflow_progress": {"custom_task": 0.75}, "learned_patterns": ["pattern1"]}"#,
    )
    .unwrap();
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let (code, out, err) = cli(&d.socket, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    run(&["agent", "register", "codex", "--file", &p("agent.json")]);
    run(&["agent", "register", "reasoning", "--capability", "planning"]);
    let out = run(&["--json", "workflow", "define", "--file", &p("wf.json")]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["version"].clone(), v["ready"].clone()),
        (json!(1), json!(true))
    );
    run(&["session", "save", "s9", "--file", &p("session.json")]);
    let out = run(&["--json", "session", "restore", "s9"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["workflow_progress"]["custom_task"], json!(0.75));
    let out = run(&["--json", "agent", "list", "--capability", "code_review"]);
    assert_eq!(out.lines().count(), 1);
    let (code, _, err) = cli(&d.socket, &["workflow", "get", "nope"]);
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = cli(&d.socket, &["agent", "remove", "codex"]);
    assert_eq!(code, 1);
    assert!(err.contains("custom_task"), "{err}");
    d.stop();
}

/// The Python example client, against a real daemon, over a plain channel (no authority
/// option). Needs python3 with grpcio and grpcio-tools: fails in CI (CI=true) when they are
/// missing, skips with a message otherwise.
#[tokio::test]
async fn python_example_client() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    if let Some(stdout) = common::python_example("client.py", &d.socket) {
        assert!(stdout.contains("restored session py-session"), "{stdout}");
        assert!(stdout.contains("knowledge graph:"), "{stdout}");
    }
    d.stop();
}

/// The workflow lifecycle from the command line: a not-ready start is refused unless forced;
/// run ids are identifiers; a finish without a duration says the daemon measured it; the same
/// definition given again after runs keeps the learned statistics; a changed description
/// carries them over; delete is refused while runs are open unless forced.
#[tokio::test]
async fn workflow_lifecycle_from_the_cli() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let dir = dirs.tmp.path();
    let definition = |description: &str| {
        json!({"workflow_id": "lifecycle", "name": "Lifecycle", "description": description,
               "steps": [{"step": 1, "action": "Plan", "agent": "planner"}],
               "required_agents": ["planner"],
               "estimated_time": 30.0, "success_rate": 0.9})
        .to_string()
    };
    std::fs::write(dir.join("wf.json"), definition("first")).unwrap();
    let wf = dir.join("wf.json").to_str().unwrap().to_string();
    let json_of = |args: &[&str]| -> Value {
        let (code, out, err) = cli(&d.socket, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let v = json_of(&["--json", "workflow", "define", "--file", &wf]);
    assert_eq!(v["version"], json!(1));

    // Not ready: refused with the missing agent named (exit 1: a refused precondition).
    let (code, _, err) = cli(&d.socket, &["run", "start", "lifecycle", "--id", "r1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("planner"), "{err}");
    // Run ids are identifiers: malformed input, exit 5.
    let (code, _, err) = cli(
        &d.socket,
        &["run", "start", "lifecycle", "--id", "a b/c", "--force"],
    );
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("run_id"), "{err}");

    let v = json_of(&[
        "--json",
        "run",
        "start",
        "lifecycle",
        "--id",
        "r1",
        "--force",
    ]);
    assert_eq!(v["status"], json!("running"), "{v}");
    let (code, out, err) = cli(&d.socket, &["run", "finish", "r1", "--failed"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("measured by the daemon"), "{out}");
    let v = json_of(&["--json", "workflow", "get", "lifecycle"]);
    let (rate, runs) = (v["success_rate"].as_f64().unwrap(), v["run_count"].clone());
    assert!((rate - 0.81).abs() < 1e-9, "{v}");
    assert_eq!(runs, json!(1));

    // The same definition again (as a client defining on every start sends it): unchanged,
    // nothing reset.
    let v = json_of(&["--json", "workflow", "define", "--file", &wf]);
    assert_eq!(
        (v["unchanged"].clone(), v["version"].clone()),
        (json!(true), json!(1))
    );
    assert!(
        (v["success_rate"].as_f64().unwrap() - rate).abs() < 1e-12,
        "{v}"
    );
    // A clearer description: version 2 keeps what was learned, and says so.
    std::fs::write(dir.join("wf.json"), definition("clearer")).unwrap();
    let v = json_of(&["--json", "workflow", "define", "--file", &wf]);
    assert_eq!(
        (v["version"].clone(), v["run_count"].clone()),
        (json!(2), json!(1))
    );
    assert!(
        (v["success_rate"].as_f64().unwrap() - rate).abs() < 1e-12,
        "{v}"
    );
    assert!(
        v["statistics"]
            .as_str()
            .unwrap()
            .contains("carried over from version 1"),
        "{v}"
    );

    // Delete: refused while a run is open, then forced (the open run is expired).
    json_of(&[
        "--json",
        "run",
        "start",
        "lifecycle",
        "--id",
        "r2",
        "--force",
    ]);
    let (code, _, err) = cli(&d.socket, &["workflow", "delete", "lifecycle"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("r2"), "{err}");
    let v = json_of(&["--json", "workflow", "delete", "lifecycle", "--force"]);
    assert_eq!(v["versions"], json!(2), "{v}");
    assert_eq!(v["expired_runs"], json!(["r2"]), "{v}");
    let (code, _, _) = cli(&d.socket, &["workflow", "get", "lifecycle"]);
    assert_eq!(code, 4);
    let v = json_of(&["--json", "run", "get", "r2"]);
    assert_eq!(v["status"], json!("expired"), "{v}");
    d.stop();
}

/// An open run that shows no progress for `retention.open_runs` is expired by the daemon
/// itself (no `run expire` needed), announced to `WatchRuns`, and leaves the workflow's
/// statistics alone; a run that keeps reporting steps stays open.
#[tokio::test]
async fn abandoned_runs_expire_by_themselves() {
    let dirs = Dirs::new();
    let root = repo(&dirs);
    let d = start(
        &dirs,
        &[root.as_os_str(), "--run-expiry".as_ref(), "1500ms".as_ref()],
    )
    .await;
    let (_, mut w, _) = clients(&d).await;
    let before = w
        .get_workflow(proto::GetWorkflowRequest {
            workflow_id: "code_enhancement".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    let mut events = w
        .watch_runs(proto::WatchRunsRequest {
            workflow_id: "code_enhancement".into(),
            run_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    for id in ["abandoned", "busy"] {
        w.start_run(proto::StartRunRequest {
            workflow_id: "code_enhancement".into(),
            version: 0,
            run_id: id.into(),
            force: true,
        })
        .await
        .unwrap();
    }
    // "busy" reports a step every 300 ms until "abandoned" has expired.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut expired = None;
    while expired.is_none() {
        assert!(std::time::Instant::now() < deadline, "no run expired");
        w.report_step(proto::ReportStepRequest {
            run_id: "busy".into(),
            step: 1,
            status: proto::StepStatus::Started as i32,
            message: String::new(),
        })
        .await
        .unwrap();
        if let Ok(Ok(Some(ev))) =
            tokio::time::timeout(std::time::Duration::from_millis(300), events.message()).await
        {
            if ev.kind == proto::run_event::Kind::Expired as i32 {
                expired = ev.run;
            }
        }
    }
    let expired = expired.unwrap();
    assert_eq!(expired.run_id, "abandoned");
    assert!(
        expired.message.contains("no progress"),
        "{}",
        expired.message
    );
    let busy = w
        .get_run(proto::GetRunRequest {
            run_id: "busy".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(busy.status, proto::RunStatus::Running as i32);
    let after = w
        .get_workflow(proto::GetWorkflowRequest {
            workflow_id: "code_enhancement".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    assert_eq!(
        (after.success_rate, after.run_count),
        (before.success_rate, before.run_count)
    );
    d.stop();
}
