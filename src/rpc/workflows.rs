//! The Workflows service: define (validated, versioned), read, the default workflows,
//! readiness, and runs (start, step progress, finish, history, expiry, `WatchRuns`).

use tonic::{Request, Response, Status};

use super::registry::{bridge, now_ms, BoxStream, RegistryContext};
use super::structs::{map_from_struct, struct_of_text, text_of};
use crate::proto;
use crate::proto::run_event::Kind as EventKind;
use crate::registry::{
    apply_outcome, Agent, RegistryError, Run, RunStatus, Step, StepStatus, WorkflowDefinition,
};
use crate::store::registry::RegistryStoreError;

/// Defines workflows and follows their runs.
pub struct WorkflowsService {
    ctx: RegistryContext,
}

impl WorkflowsService {
    /// A service over the registry.
    pub fn new(ctx: RegistryContext) -> Self {
        WorkflowsService { ctx }
    }
}

/// A workflow as served, with its readiness against `agents` at `now`.
pub fn workflow_proto(w: &WorkflowDefinition, agents: &[Agent], now: i64) -> proto::Workflow {
    let live: Vec<&str> = agents
        .iter()
        .filter(|a| a.is_live(now))
        .map(|a| a.name.as_str())
        .collect();
    let readiness = w.readiness(live);
    proto::Workflow {
        workflow_id: w.workflow_id.clone(),
        name: w.name.clone(),
        description: w.description.clone(),
        steps: w
            .steps
            .iter()
            .map(|s| proto::Step {
                step: s.step,
                action: s.action.clone(),
                agent: s.agent.clone(),
            })
            .collect(),
        required_agents: w.required_agents.clone(),
        input_requirements: Some(struct_of_text(&w.input_requirements_json)),
        output_format: Some(struct_of_text(&w.output_format_json)),
        estimated_time: w.estimated_time,
        success_rate: w.success_rate,
        version: w.version,
        run_count: w.run_count,
        created_at_ms: w.created_at_ms,
        ready: readiness.ready,
        missing_agents: readiness.missing,
    }
}

/// The definition a request asks for: the typed form or the original's JSON, validated with
/// every problem reported.
fn requested_workflow(req: &proto::DefineWorkflowRequest) -> Result<WorkflowDefinition, Status> {
    let domain = |e: crate::registry::RegistryError| super::registry::domain_status(&e);
    match (&req.workflow, &req.definition) {
        (Some(_), Some(_)) => Err(Status::invalid_argument(
            "give either `workflow` or `definition`, not both",
        )),
        (None, None) => Err(Status::invalid_argument(
            "a workflow definition is needed (`workflow` or `definition`)",
        )),
        (None, Some(def)) => {
            let mut v = serde_json::Value::Object(map_from_struct(def));
            // Output-only fields of the daemon are not part of a definition.
            if let Some(o) = v.as_object_mut() {
                for k in ["version", "run_count", "created_at_ms"] {
                    o.remove(k);
                }
            }
            WorkflowDefinition::from_original_json(&v).map_err(domain)
        }
        (Some(p), None) => {
            let mut w = WorkflowDefinition::new(&p.workflow_id, &p.name, &p.description);
            w.steps = p
                .steps
                .iter()
                .map(|s| Step::new(s.step, &s.action, &s.agent))
                .collect();
            w.required_agents = p.required_agents.clone();
            w.input_requirements_json = text_of(p.input_requirements.as_ref());
            w.output_format_json = text_of(p.output_format.as_ref());
            w.estimated_time = p.estimated_time;
            w.success_rate = p.success_rate;
            w.check().map_err(domain)?;
            Ok(w)
        }
    }
}

/// A run as served.
pub fn run_proto(r: &Run) -> proto::Run {
    proto::Run {
        run_id: r.run_id.clone(),
        workflow_id: r.workflow_id.clone(),
        workflow_version: r.workflow_version,
        started_at_ms: r.started_at_ms,
        finished_at_ms: r.finished_at_ms,
        status: match r.status {
            RunStatus::Running => proto::RunStatus::Running,
            RunStatus::Succeeded => proto::RunStatus::Succeeded,
            RunStatus::Failed => proto::RunStatus::Failed,
            RunStatus::Expired => proto::RunStatus::Expired,
        } as i32,
        steps: r
            .steps
            .iter()
            .map(|s| proto::StepProgress {
                step: s.step,
                status: match s.status {
                    StepStatus::Started => proto::StepStatus::Started,
                    StepStatus::Succeeded => proto::StepStatus::Succeeded,
                    StepStatus::Failed => proto::StepStatus::Failed,
                    StepStatus::Skipped => proto::StepStatus::Skipped,
                } as i32,
                message: s.message.clone(),
                at_ms: s.at_ms,
            })
            .collect(),
        duration_ms: r.duration_ms,
        message: r.message.clone(),
    }
}

fn unknown_workflow(id: &str, version: Option<u64>) -> RegistryStoreError {
    RegistryStoreError::NotFound(match version {
        Some(v) => {
            let id = crate::quote::short(id);
            format!("workflow {id} has no version {v}; `wfdb workflow versions` lists them")
        }
        None => format!(
            "no workflow {}; `wfdb workflow list` shows the workflows",
            crate::quote::short(id)
        ),
    })
}

#[tonic::async_trait]
impl proto::workflows_server::Workflows for WorkflowsService {
    async fn define_workflow(
        &self,
        request: Request<proto::DefineWorkflowRequest>,
    ) -> Result<Response<proto::DefineWorkflowResponse>, Status> {
        let workflow = requested_workflow(request.get_ref())?;
        let now = now_ms();
        let (stored, carry, agents) = self
            .ctx
            .blocking(move |reg| {
                let (w, carry) = reg.define_workflow(workflow, now)?;
                Ok((w, carry, reg.agents()?))
            })
            .await?;
        Ok(Response::new(proto::DefineWorkflowResponse {
            workflow: Some(workflow_proto(&stored, &agents, now)),
            unchanged: carry.unchanged(),
            statistics: carry.describe(),
        }))
    }

    async fn delete_workflow(
        &self,
        request: Request<proto::DeleteWorkflowRequest>,
    ) -> Result<Response<proto::DeleteWorkflowResponse>, Status> {
        let req = request.into_inner();
        let now = now_ms();
        let (versions, expired) = self
            .ctx
            .blocking(move |reg| reg.delete_workflow(&req.workflow_id, req.force, now))
            .await?;
        for r in &expired {
            self.ctx.run_event(EventKind::Expired, run_proto(r));
        }
        Ok(Response::new(proto::DeleteWorkflowResponse {
            versions: versions as u64,
            expired_runs: expired.into_iter().map(|r| r.run_id).collect(),
        }))
    }

    async fn get_workflow(
        &self,
        request: Request<proto::GetWorkflowRequest>,
    ) -> Result<Response<proto::GetWorkflowResponse>, Status> {
        let req = request.into_inner();
        let version = (req.version != 0).then_some(req.version);
        let (w, agents) = self
            .ctx
            .blocking(move |reg| {
                let w = reg
                    .workflow(&req.workflow_id, version)?
                    .ok_or_else(|| unknown_workflow(&req.workflow_id, version))?;
                Ok((w, reg.agents()?))
            })
            .await?;
        Ok(Response::new(proto::GetWorkflowResponse {
            workflow: Some(workflow_proto(&w, &agents, now_ms())),
        }))
    }

    async fn list_workflows(
        &self,
        request: Request<proto::ListWorkflowsRequest>,
    ) -> Result<Response<proto::ListWorkflowsResponse>, Status> {
        let agent = request.into_inner().agent;
        let (ws, agents) = self
            .ctx
            .blocking(|reg| Ok((reg.latest_workflows()?, reg.agents()?)))
            .await?;
        let now = now_ms();
        let workflows = ws
            .iter()
            .filter(|w| agent.is_empty() || w.uses_agent(&agent))
            .map(|w| workflow_proto(w, &agents, now))
            .collect();
        Ok(Response::new(proto::ListWorkflowsResponse { workflows }))
    }

    async fn workflow_versions(
        &self,
        request: Request<proto::WorkflowVersionsRequest>,
    ) -> Result<Response<proto::WorkflowVersionsResponse>, Status> {
        let id = request.into_inner().workflow_id;
        let (versions, agents) = self
            .ctx
            .blocking(move |reg| {
                let v = reg.workflow_versions(&id)?;
                if v.is_empty() {
                    return Err(unknown_workflow(&id, None));
                }
                Ok((v, reg.agents()?))
            })
            .await?;
        let now = now_ms();
        Ok(Response::new(proto::WorkflowVersionsResponse {
            versions: versions
                .iter()
                .map(|w| workflow_proto(w, &agents, now))
                .collect(),
        }))
    }

    async fn install_defaults(
        &self,
        _request: Request<proto::InstallDefaultsRequest>,
    ) -> Result<Response<proto::InstallDefaultsResponse>, Status> {
        let now = now_ms();
        let (installed, unchanged) = self
            .ctx
            .blocking(move |reg| reg.install_default_workflows(now))
            .await?;
        Ok(Response::new(proto::InstallDefaultsResponse {
            installed,
            unchanged,
        }))
    }

    async fn start_run(
        &self,
        request: Request<proto::StartRunRequest>,
    ) -> Result<Response<proto::StartRunResponse>, Status> {
        let req = request.into_inner();
        let now = now_ms();
        let version = (req.version != 0).then_some(req.version);
        let run = self
            .ctx
            .blocking(move |reg| {
                let w = reg
                    .workflow(&req.workflow_id, version)?
                    .ok_or_else(|| unknown_workflow(&req.workflow_id, version))?;
                let run_id = if req.run_id.is_empty() {
                    format!("{}-{}-{}", w.workflow_id, now, reg.unique_id()?)
                } else {
                    req.run_id.clone()
                };
                let run = Run::start(run_id, &w, now);
                run.check()?;
                if !req.force {
                    let agents = reg.agents()?;
                    let live = agents
                        .iter()
                        .filter(|a| a.is_live(now))
                        .map(|a| a.name.as_str());
                    let readiness = w.readiness(live);
                    if !readiness.ready {
                        return Err(RegistryError::WorkflowNotReady {
                            workflow_id: w.workflow_id.clone(),
                            missing: readiness.missing,
                        }
                        .into());
                    }
                }
                reg.insert_run(&run)?;
                Ok(run)
            })
            .await?;
        let pb = run_proto(&run);
        self.ctx.run_started.notify_one();
        self.ctx.run_event(EventKind::Started, pb.clone());
        Ok(Response::new(proto::StartRunResponse { run: Some(pb) }))
    }

    async fn report_step(
        &self,
        request: Request<proto::ReportStepRequest>,
    ) -> Result<Response<proto::ReportStepResponse>, Status> {
        let req = request.into_inner();
        let status = match proto::StepStatus::try_from(req.status) {
            Ok(proto::StepStatus::Started) => StepStatus::Started,
            Ok(proto::StepStatus::Succeeded) => StepStatus::Succeeded,
            Ok(proto::StepStatus::Failed) => StepStatus::Failed,
            Ok(proto::StepStatus::Skipped) => StepStatus::Skipped,
            _ => {
                return Err(Status::invalid_argument(
                    "status must be STARTED, SUCCEEDED, FAILED or SKIPPED",
                ))
            }
        };
        let now = now_ms();
        let (run, _) = self
            .ctx
            .blocking(move |reg| {
                reg.update_run(&req.run_id, |run, w| {
                    run.record_step(w, req.step, status, req.message.clone(), now)?;
                    Ok(false)
                })
            })
            .await?;
        let pb = run_proto(&run);
        self.ctx.run_event(EventKind::Step, pb.clone());
        Ok(Response::new(proto::ReportStepResponse { run: Some(pb) }))
    }

    async fn finish_run(
        &self,
        request: Request<proto::FinishRunRequest>,
    ) -> Result<Response<proto::FinishRunResponse>, Status> {
        let req = request.into_inner();
        let duration_from_daemon = req.duration_ms.is_none();
        let now = now_ms();
        let (run, workflow, agents) = self
            .ctx
            .blocking(move |reg| {
                let (run, w) = reg.update_run(&req.run_id, |run, w| {
                    let secs =
                        run.finish(req.success, req.duration_ms, req.message.clone(), now)?;
                    apply_outcome(w, req.success, secs)?;
                    Ok(true)
                })?;
                Ok((run, w, reg.agents()?))
            })
            .await?;
        let pb = run_proto(&run);
        self.ctx.run_event(EventKind::Finished, pb.clone());
        Ok(Response::new(proto::FinishRunResponse {
            run: Some(pb),
            workflow: Some(workflow_proto(&workflow, &agents, now)),
            duration_from_daemon,
        }))
    }

    async fn get_run(
        &self,
        request: Request<proto::GetRunRequest>,
    ) -> Result<Response<proto::GetRunResponse>, Status> {
        let id = request.into_inner().run_id;
        let run = self
            .ctx
            .blocking(move |reg| {
                reg.run(&id)?.ok_or_else(|| {
                    RegistryStoreError::NotFound(format!(
                        "no run {}; `wfdb run list` shows the runs",
                        crate::quote::short(&id)
                    ))
                })
            })
            .await?;
        Ok(Response::new(proto::GetRunResponse {
            run: Some(run_proto(&run)),
        }))
    }

    async fn list_runs(
        &self,
        request: Request<proto::ListRunsRequest>,
    ) -> Result<Response<proto::ListRunsResponse>, Status> {
        let req = request.into_inner();
        let mut runs = self.ctx.blocking(|reg| reg.runs()).await?;
        runs.retain(|r| req.workflow_id.is_empty() || r.workflow_id == req.workflow_id);
        runs.sort_by(|a, b| {
            b.started_at_ms
                .cmp(&a.started_at_ms)
                .then_with(|| b.run_id.cmp(&a.run_id))
        });
        if req.limit > 0 {
            runs.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
        }
        Ok(Response::new(proto::ListRunsResponse {
            runs: runs.iter().map(run_proto).collect(),
        }))
    }

    async fn expire_runs(
        &self,
        request: Request<proto::ExpireRunsRequest>,
    ) -> Result<Response<proto::ExpireRunsResponse>, Status> {
        let idle = request.into_inner().idle_ms;
        let now = now_ms();
        let expired = self
            .ctx
            .blocking(move |reg| reg.expire_idle_runs(now, idle))
            .await?;
        for r in &expired {
            self.ctx.run_event(EventKind::Expired, run_proto(r));
        }
        Ok(Response::new(proto::ExpireRunsResponse {
            expired: expired.into_iter().map(|r| r.run_id).collect(),
        }))
    }

    type WatchRunsStream = BoxStream<proto::RunEvent>;

    async fn watch_runs(
        &self,
        request: Request<proto::WatchRunsRequest>,
    ) -> Result<Response<Self::WatchRunsStream>, Status> {
        let req = request.into_inner();
        let rx = self.ctx.run_events.subscribe();
        Ok(Response::new(bridge(
            rx,
            self.ctx.state.shutdown.clone(),
            move |ev: &proto::RunEvent| {
                ev.run.as_ref().is_some_and(|r| {
                    (req.workflow_id.is_empty() || r.workflow_id == req.workflow_id)
                        && (req.run_id.is_empty() || r.run_id == req.run_id)
                })
            },
            |missed| proto::RunEvent {
                kind: EventKind::Resync as i32,
                run: None,
                missed,
            },
        )))
    }
}
