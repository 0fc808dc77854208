//! The Agents service: register (upsert), find, remove, record performance, lease heartbeats
//! and the `WatchAgents` stream; and the owned-path matcher behind `FileInfo.related_agents`.

use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use tonic::{Request, Response, Status};

use super::limits;
use super::registry::{bridge, now_ms, BoxStream, RegistryContext};
use super::structs::{map_from_struct, struct_of_text, text_of};
use crate::proto;
use crate::proto::agent_event::Kind as EventKind;
use crate::registry::{
    Agent, Capability, Lease, MetricSample, RecordKind, RegistryError, ValidationProblem,
};
use crate::store::registry::RegistryStoreError;

/// Registers, finds and watches agents.
pub struct AgentsService {
    ctx: RegistryContext,
}

impl AgentsService {
    /// A service over the registry.
    pub fn new(ctx: RegistryContext) -> Self {
        AgentsService { ctx }
    }
}

/// Compiles an owned-path glob: `*` stays within a folder, `**` crosses folders.
fn compile_glob(glob: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(glob).literal_separator(true).build()
}

/// Problems with the owned-path globs of an agent (bad syntax, or together too large to
/// compile: the owner matcher would then have to leave the agent out).
pub fn glob_problems(agent: &Agent) -> Vec<ValidationProblem> {
    let mut problems = glob_syntax_problems(agent);
    if problems.is_empty() && !agent.owned_paths.is_empty() {
        let mut b = GlobSetBuilder::new();
        for g in &agent.owned_paths {
            if let Ok(glob) = compile_glob(g) {
                b.add(glob);
            }
        }
        if let Err(e) = b.build() {
            problems.push(ValidationProblem::new(
                "owned_paths",
                format!("cannot be compiled together: {}", e.kind()),
            ));
        }
    }
    problems
}

fn glob_syntax_problems(agent: &Agent) -> Vec<ValidationProblem> {
    agent
        .owned_paths
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            compile_glob(g).err().map(|e| {
                ValidationProblem::new(
                    format!("owned_paths[{i}]"),
                    // The kind only: the error itself quotes the whole pattern.
                    format!("is not a valid glob: {}", e.kind()),
                )
            })
        })
        .collect()
}

/// Validates an agent completely (domain rules and glob syntax), every problem at once.
pub fn check_agent(agent: &Agent) -> Result<(), RegistryError> {
    let mut problems = agent.validate().err().unwrap_or_default();
    problems.extend(glob_problems(agent));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RegistryError::invalid(
            RecordKind::Agent,
            &agent.name,
            problems,
        ))
    }
}

/// Which agents own a path, by their `owned_paths` globs.
#[derive(Default)]
pub struct OwnerMatcher {
    agents: Vec<(String, GlobSet)>,
}

impl OwnerMatcher {
    /// Compiles the globs of `agents` (a glob that does not compile is skipped: registration
    /// refuses those, so only a damaged record could hold one).
    pub fn new(agents: &[Agent]) -> OwnerMatcher {
        let agents = agents
            .iter()
            .filter(|a| !a.owned_paths.is_empty())
            .filter_map(|a| {
                let mut b = GlobSetBuilder::new();
                for g in &a.owned_paths {
                    if let Ok(glob) = compile_glob(g) {
                        b.add(glob);
                    }
                }
                b.build().ok().map(|set| (a.name.clone(), set))
            })
            .collect();
        OwnerMatcher { agents }
    }

    /// The agents owning a root-relative path, sorted.
    pub fn owners(&self, path: &str) -> Vec<String> {
        self.agents
            .iter()
            .filter(|(_, set)| set.is_match(path))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether no agent owns anything.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

/// The owner matcher, compiled once per change of the agents' owned paths and shared by every
/// request: a `GetFile` or `ListFiles` costs the same whatever globs the agents hold.
#[derive(Default)]
pub struct OwnerCache {
    current: std::sync::RwLock<Option<Compiled>>,
    /// Held while compiling, so concurrent requests after a change compile once.
    rebuild: std::sync::Mutex<()>,
}

struct Compiled {
    /// The agents generation this was checked against.
    generation: u64,
    /// What it was compiled from: each owning agent and its globs, in name order.
    owned: Vec<(String, Vec<String>)>,
    matcher: Arc<OwnerMatcher>,
}

impl OwnerCache {
    /// The compiled matcher, when it is current for `generation`.
    pub fn fresh(&self, generation: u64) -> Option<Arc<OwnerMatcher>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .filter(|c| c.generation == generation)
            .map(|c| Arc::clone(&c.matcher))
    }

    /// The current matcher, compiled again when the agents' owned paths changed (blocking:
    /// call it off the async threads).
    pub fn current(&self, state: &crate::daemon::DaemonState) -> Arc<OwnerMatcher> {
        let generation = state.store.agents_generation();
        if let Some(m) = self.fresh(generation) {
            return m;
        }
        let _one = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        // Read the generation before the agents: a write in between leaves this entry stale,
        // never wrong.
        let generation = state.store.agents_generation();
        if let Some(m) = self.fresh(generation) {
            return m;
        }
        let agents = load_agents(state);
        let owned: Vec<(String, Vec<String>)> = agents
            .iter()
            .filter(|a| !a.owned_paths.is_empty())
            .map(|a| (a.name.clone(), a.owned_paths.clone()))
            .collect();
        let kept = {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            current
                .as_ref()
                .filter(|c| c.owned == owned)
                .map(|c| Arc::clone(&c.matcher))
        };
        // A heartbeat or a metric changes the agents but not what they own.
        let matcher = kept.unwrap_or_else(|| {
            let t = std::time::Instant::now();
            let m = Arc::new(OwnerMatcher::new(&agents));
            tracing::debug!(
                agents = owned.len(),
                ms = t.elapsed().as_millis() as u64,
                "owner matcher compiled"
            );
            m
        });
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Compiled {
            generation,
            owned,
            matcher: Arc::clone(&matcher),
        });
        matcher
    }

    /// The current matcher, from async code: compiled on the blocking pool when needed.
    pub async fn get(
        self: &Arc<Self>,
        state: &Arc<crate::daemon::DaemonState>,
    ) -> Arc<OwnerMatcher> {
        if let Some(m) = self.fresh(state.store.agents_generation()) {
            return m;
        }
        let (cache, state) = (Arc::clone(self), Arc::clone(state));
        match tokio::task::spawn_blocking(move || cache.current(&state)).await {
            Ok(m) => m,
            Err(e) => {
                // Related agents are an annotation, never a reason to fail a catalog query.
                let _ = super::panics::join_status("owner matcher", e);
                Arc::new(OwnerMatcher::default())
            }
        }
    }

    /// Drops the compiled matcher (after an agent is removed or agents are imported), so its
    /// memory goes back at once rather than at the next catalog query.
    pub fn forget(&self) {
        let old = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(old);
    }
}

/// Every agent (none on error: related agents are an annotation, never a reason to fail a
/// catalog query).
fn load_agents(state: &crate::daemon::DaemonState) -> Vec<Agent> {
    match state.store.registry().and_then(|r| {
        r.agents().map_err(|e| match e {
            RegistryStoreError::Store(s) => s,
            other => crate::store::StoreError::Sled(other.to_string()),
        })
    }) {
        Ok(agents) => agents,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read agents for related_agents");
            Vec::new()
        }
    }
}

/// Capability stats as served.
pub fn stats_proto(s: &crate::registry::CapabilityStats) -> proto::CapabilityStats {
    proto::CapabilityStats {
        count: s.count,
        successes: s.successes,
        mean_latency_ms: s.mean_latency_ms,
        ewma_latency_ms: s.ewma_latency_ms,
        ewma_success_rate: s.ewma_success_rate,
        min_latency_ms: s.min_latency_ms,
        max_latency_ms: s.max_latency_ms,
        last_sample_ms: s.last_sample_ms,
    }
}

/// An agent as served, with its liveness at `now`.
pub fn agent_proto(a: &Agent, now: i64) -> proto::Agent {
    proto::Agent {
        name: a.name.clone(),
        description: a.description.clone(),
        agent_type: a.agent_type.clone(),
        capabilities: a
            .capabilities
            .iter()
            .map(|c| proto::Capability {
                name: c.name.clone(),
                description: c.description.clone(),
                input_types: c.input_types.clone(),
                output_types: c.output_types.clone(),
                required_context: c.required_context.clone(),
                performance_metrics: Some(struct_of_text(&c.performance_metrics_json)),
                stats: Some(stats_proto(&c.stats)),
            })
            .collect(),
        owned_paths: a.owned_paths.clone(),
        metadata: Some(struct_of_text(&a.metadata_json)),
        lease_ttl_ms: a.lease.map(|l| l.ttl_ms),
        registered_at_ms: a.registered_at_ms,
        updated_at_ms: a.updated_at_ms,
        last_heartbeat_ms: a.lease.map_or(0, |l| l.last_heartbeat_ms),
        live: a.is_live(now),
        lease_expires_at_ms: a.lease.map_or(0, |l| l.expires_at_ms()),
    }
}

/// A typed registration as a domain agent (not yet validated).
fn agent_from_proto(p: &proto::Agent, now: i64) -> Agent {
    let mut a = Agent::new(p.name.clone(), now);
    a.description = p.description.clone();
    a.agent_type = p.agent_type.clone();
    a.capabilities = p
        .capabilities
        .iter()
        .map(|c| {
            let mut cap = Capability::named(c.name.clone());
            cap.description = c.description.clone();
            cap.input_types = c.input_types.clone();
            cap.output_types = c.output_types.clone();
            cap.required_context = c.required_context.clone();
            cap.performance_metrics_json = text_of(c.performance_metrics.as_ref());
            cap
        })
        .collect();
    a.owned_paths = p.owned_paths.clone();
    a.metadata_json = text_of(p.metadata.as_ref());
    a.lease = p.lease_ttl_ms.map(|ttl_ms| Lease {
        ttl_ms,
        last_heartbeat_ms: now,
    });
    a
}

/// The agent a registration asks for: the typed form, or the original's `agent_info` dict.
fn requested_agent(req: &proto::RegisterAgentRequest, now: i64) -> Result<Agent, Status> {
    let agent = match (&req.agent, &req.agent_info) {
        (Some(_), Some(_)) => {
            return Err(Status::invalid_argument(
                "give either `agent` or `name` + `agent_info`, not both",
            ))
        }
        (Some(p), None) => agent_from_proto(p, now),
        (None, info) => {
            let info =
                serde_json::Value::Object(info.as_ref().map(map_from_struct).unwrap_or_default());
            match Agent::from_agent_info(&req.name, &info, now) {
                Ok(a) => a,
                Err(RegistryError::Invalid {
                    kind,
                    id,
                    mut problems,
                }) => {
                    // Report bad globs in the same answer as every other problem.
                    let mut probe = Agent::new(&req.name, now);
                    probe.owned_paths = info
                        .get("owned_paths")
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .map(|g| g.as_str().unwrap_or_default().to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    for p in glob_problems(&probe) {
                        if !problems.contains(&p) {
                            problems.push(p);
                        }
                    }
                    let e = RegistryError::Invalid { kind, id, problems };
                    return Err(super::registry::domain_status(&e));
                }
                Err(e) => return Err(super::registry::domain_status(&e)),
            }
        }
    };
    // The typed form was measured on the wire; `agent_info` owned paths come from a Struct.
    if agent.owned_paths.len() > limits::OWNED_PATHS.value {
        return Err(limits::too_many(
            "owned_paths",
            limits::OWNED_PATHS,
            agent.owned_paths.len(),
        ));
    }
    for (i, g) in agent.owned_paths.iter().enumerate() {
        limits::check_glob(&format!("owned_paths[{i}]"), g)?;
    }
    check_agent(&agent).map_err(|e| super::registry::domain_status(&e))?;
    Ok(agent)
}

#[tonic::async_trait]
impl proto::agents_server::Agents for AgentsService {
    async fn register_agent(
        &self,
        request: Request<proto::RegisterAgentRequest>,
    ) -> Result<Response<proto::RegisterAgentResponse>, Status> {
        let now = now_ms();
        let agent = requested_agent(request.get_ref(), now)?;
        let name = agent.name.clone();
        // Every agent's globs together are bounded too: the owner matcher compiles them all.
        // (A soft bound: two racing registrations may pass it together.)
        let others_name = name.clone();
        let others: usize = self
            .ctx
            .blocking(move |reg| {
                Ok(reg
                    .agents()?
                    .iter()
                    .filter(|a| a.name != others_name)
                    .map(|a| a.owned_paths.len())
                    .sum())
            })
            .await?;
        let total = others + agent.owned_paths.len();
        if total > limits::OWNED_PATHS_TOTAL.value {
            return Err(limits::too_many(
                "the agents' owned_paths together",
                limits::OWNED_PATHS_TOTAL,
                total,
            ));
        }
        let (previous, stored) = self
            .ctx
            .blocking(move |reg| {
                reg.upsert_agent(&name, |prev| {
                    Ok(agent.clone().upsert_onto(prev.as_ref(), now))
                })
            })
            .await?;
        let pb = agent_proto(&stored, now_ms());
        let kind = if previous.is_some() {
            EventKind::Updated
        } else {
            EventKind::Registered
        };
        self.ctx.agent_event(kind, &stored.name, Some(pb.clone()));
        Ok(Response::new(proto::RegisterAgentResponse {
            agent: Some(pb),
            created: previous.is_none(),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<proto::GetAgentRequest>,
    ) -> Result<Response<proto::GetAgentResponse>, Status> {
        let name = request.into_inner().name;
        let agent = self
            .ctx
            .blocking(move |reg| {
                reg.agent(&name)?.ok_or_else(|| {
                    RegistryStoreError::NotFound(format!(
                        "no agent {}; `wfdb agent list` shows the registered agents",
                        super::limits::short(&name)
                    ))
                })
            })
            .await?;
        Ok(Response::new(proto::GetAgentResponse {
            agent: Some(agent_proto(&agent, now_ms())),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<proto::ListAgentsRequest>,
    ) -> Result<Response<proto::ListAgentsResponse>, Status> {
        let req = request.into_inner();
        let agents = self.ctx.blocking(|reg| reg.agents()).await?;
        let now = now_ms();
        let agents = agents
            .iter()
            .filter(|a| req.capability.is_empty() || a.has_capability(&req.capability))
            .filter(|a| !req.live_only || a.is_live(now))
            .map(|a| agent_proto(a, now))
            .collect();
        Ok(Response::new(proto::ListAgentsResponse { agents }))
    }

    async fn remove_agent(
        &self,
        request: Request<proto::RemoveAgentRequest>,
    ) -> Result<Response<proto::RemoveAgentResponse>, Status> {
        let req = request.into_inner();
        let name = req.name.clone();
        let (agent, workflows) = self
            .ctx
            .blocking(move |reg| reg.remove_agent(&name, req.force))
            .await?;
        self.ctx.owners.forget();
        // The dropped matcher may have been large (owned-path globs): give its pages back.
        self.ctx.state.memory.note();
        self.ctx.agent_event(EventKind::Removed, &agent.name, None);
        Ok(Response::new(proto::RemoveAgentResponse {
            agent: Some(agent_proto(&agent, now_ms())),
            workflows,
        }))
    }

    async fn record_metric(
        &self,
        request: Request<proto::RecordMetricRequest>,
    ) -> Result<Response<proto::RecordMetricResponse>, Status> {
        let req = request.into_inner();
        let sample = MetricSample {
            capability: req.capability.clone(),
            latency_ms: req.latency_ms,
            success: req.success,
        };
        let name = req.agent.clone();
        let now = now_ms();
        let agent = self
            .ctx
            .blocking(move |reg| reg.update_agent(&name, |a| a.record_metric(&sample, now)))
            .await?;
        let stats = agent
            .capability(&req.capability)
            .map(|c| stats_proto(&c.stats));
        self.ctx.agent_event(
            EventKind::Updated,
            &agent.name,
            Some(agent_proto(&agent, now)),
        );
        Ok(Response::new(proto::RecordMetricResponse { stats }))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        if req.ttl_ms == Some(0) {
            return Err(Status::invalid_argument(
                "ttl_ms must be above 0; omit it to keep the agent's TTL",
            ));
        }
        let now = now_ms();
        let name = req.name.clone();
        let ttl = req.ttl_ms;
        let (before, agent) = self
            .ctx
            .blocking(move |reg| {
                let before = reg.agent(&name)?;
                let agent = reg.update_agent(&name, |a| {
                    if a.heartbeat(now, ttl) {
                        Ok(())
                    } else {
                        Err(RegistryError::invalid(
                            RecordKind::Agent,
                            &a.name,
                            vec![ValidationProblem::new(
                                "ttl_ms",
                                "the agent has no lease; give a TTL to start one",
                            )],
                        ))
                    }
                })?;
                Ok((before, agent))
            })
            .await?;
        let pb = agent_proto(&agent, now);
        // Coming back to life (or starting a lease) is news; a routine renewal is not.
        if before.is_none_or(|b| !b.is_live(now) || b.lease.is_none()) {
            self.ctx
                .agent_event(EventKind::Updated, &agent.name, Some(pb.clone()));
        }
        Ok(Response::new(proto::HeartbeatResponse { agent: Some(pb) }))
    }

    type WatchAgentsStream = BoxStream<proto::AgentEvent>;

    async fn watch_agents(
        &self,
        _request: Request<proto::WatchAgentsRequest>,
    ) -> Result<Response<Self::WatchAgentsStream>, Status> {
        let rx = self.ctx.agent_events.subscribe();
        Ok(Response::new(bridge(
            rx,
            self.ctx.state.shutdown.clone(),
            |_| true,
            |missed| proto::AgentEvent {
                kind: EventKind::Resync as i32,
                name: String::new(),
                agent: None,
                missed,
            },
        )))
    }
}
