//! Agents: who they are, what they can do (capabilities with aggregated performance), which
//! paths they own, and whether they are live (an optional lease renewed by heartbeats).

use super::json::{self, json_kind, object_text, object_value, EMPTY_OBJECT};
use super::{check_identifier, RecordKind, RegistryError, ValidationProblem};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Longest agent or capability name accepted.
pub const MAX_AGENT_NAME_LEN: usize = 128;

/// Weight of a new latency sample in [`CapabilityStats::ewma_latency_ms`].
pub const EWMA_LATENCY_WEIGHT: f64 = 0.2;

/// Weight of a new outcome in [`CapabilityStats::ewma_success_rate`] (the same 0.1 that the
/// original gives a new run in a workflow's success rate).
pub const EWMA_SUCCESS_WEIGHT: f64 = 0.1;

/// Fields of an `agent_info` object that map to [`Agent`] fields; any other key is kept in the
/// agent's metadata.
const AGENT_INFO_FIELDS: &[&str] = &[
    "name",
    "description",
    "type",
    "agent_type",
    "capabilities",
    "owned_paths",
    "metadata",
    "lease",
    "registered_at_ms",
    "updated_at_ms",
];

/// Fields of a capability object (the original's `AgentCapability` plus `stats`).
const CAPABILITY_FIELDS: &[&str] = &[
    "name",
    "description",
    "input_types",
    "output_types",
    "required_context",
    "performance_metrics",
    "stats",
];

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// Unique name: ASCII letters, digits, `_`, `-`, `.`; at most 128 characters; not `all`.
    pub name: String,
    pub description: String,
    /// The original's free `type` (e.g. a class name).
    pub agent_type: String,
    pub capabilities: Vec<Capability>,
    /// Globs of repository paths this agent owns; matching files list it in `related_agents`.
    /// Glob syntax is checked by the caller (which owns the glob library).
    pub owned_paths: Vec<String>,
    /// JSON text of an object: free metadata (and any unknown `agent_info` keys).
    pub metadata_json: String,
    pub registered_at_ms: i64,
    pub updated_at_ms: i64,
    /// Present when the agent takes part in live discovery.
    pub lease: Option<Lease>,
}

/// A discovery lease: the agent is live while `now ≤ last_heartbeat_ms + ttl_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ttl_ms: u64,
    pub last_heartbeat_ms: i64,
}

impl Lease {
    /// The last instant (inclusive, Unix ms) at which the agent is still live.
    pub fn expires_at_ms(&self) -> i64 {
        let ttl = i64::try_from(self.ttl_ms).unwrap_or(i64::MAX);
        self.last_heartbeat_ms.saturating_add(ttl)
    }

    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms <= self.expires_at_ms()
    }
}

/// One capability of an agent (the original's `AgentCapability`) with its aggregated
/// performance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    pub name: String,
    pub description: String,
    pub input_types: Vec<String>,
    pub output_types: Vec<String>,
    pub required_context: Vec<String>,
    /// JSON text of an object: the original's free `performance_metrics` as given by the client.
    pub performance_metrics_json: String,
    /// Aggregated from recorded [`MetricSample`]s; kept across re-registrations.
    pub stats: CapabilityStats,
}

impl Capability {
    /// A capability with only a name (the original's plain-name shorthand).
    pub fn named(name: impl Into<String>) -> Self {
        Capability {
            name: name.into(),
            description: String::new(),
            input_types: Vec::new(),
            output_types: Vec::new(),
            required_context: Vec::new(),
            performance_metrics_json: EMPTY_OBJECT.to_string(),
            stats: CapabilityStats::default(),
        }
    }
}

/// One observation of an agent using a capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub capability: String,
    pub latency_ms: f64,
    pub success: bool,
}

/// Per-capability aggregate of [`MetricSample`]s.
///
/// With samples x₁…xₙ (latencies) and o₁…oₙ (1 for success, 0 for failure):
/// - `mean_latency_ms` = (x₁+…+xₙ)/n, kept incrementally (`mean += (x − mean)/n`);
/// - `ewma_latency_ms`: x₁ after the first sample, then `(1 − 0.2)·ewma + 0.2·x`
///   ([`EWMA_LATENCY_WEIGHT`]): recent latency, forgetting old samples;
/// - `ewma_success_rate`: o₁ after the first sample, then `0.9·ewma + 0.1·o`
///   ([`EWMA_SUCCESS_WEIGHT`]), the original's workflow rule;
/// - `successes / count` is the all-time success rate ([`CapabilityStats::success_rate`]).
///
/// All values are 0 while `count` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CapabilityStats {
    pub count: u64,
    pub successes: u64,
    pub mean_latency_ms: f64,
    pub ewma_latency_ms: f64,
    pub ewma_success_rate: f64,
    pub min_latency_ms: f64,
    pub max_latency_ms: f64,
    /// When the last sample was recorded (Unix ms), if any.
    pub last_sample_ms: Option<i64>,
}

impl CapabilityStats {
    /// Folds one sample in. The latency must be finite and ≥ 0 (checked by the caller).
    pub fn record(&mut self, latency_ms: f64, success: bool, now_ms: i64) {
        let outcome = if success { 1.0 } else { 0.0 };
        self.count += 1;
        if success {
            self.successes += 1;
        }
        if self.count == 1 {
            self.mean_latency_ms = latency_ms;
            self.ewma_latency_ms = latency_ms;
            self.ewma_success_rate = outcome;
            self.min_latency_ms = latency_ms;
            self.max_latency_ms = latency_ms;
        } else {
            self.mean_latency_ms += (latency_ms - self.mean_latency_ms) / self.count as f64;
            self.ewma_latency_ms = (1.0 - EWMA_LATENCY_WEIGHT) * self.ewma_latency_ms
                + EWMA_LATENCY_WEIGHT * latency_ms;
            self.ewma_success_rate = (1.0 - EWMA_SUCCESS_WEIGHT) * self.ewma_success_rate
                + EWMA_SUCCESS_WEIGHT * outcome;
            self.min_latency_ms = self.min_latency_ms.min(latency_ms);
            self.max_latency_ms = self.max_latency_ms.max(latency_ms);
        }
        self.last_sample_ms = Some(now_ms);
    }

    /// All-time success rate, `None` before the first sample.
    pub fn success_rate(&self) -> Option<f64> {
        (self.count > 0).then(|| self.successes as f64 / self.count as f64)
    }

    fn check(&self, path: &str, problems: &mut Vec<ValidationProblem>) {
        if self.successes > self.count {
            problems.push(ValidationProblem::new(
                format!("{path}.successes"),
                format!(
                    "{} successes out of {} samples is impossible",
                    self.successes, self.count
                ),
            ));
        }
        for (field, v) in [
            ("mean_latency_ms", self.mean_latency_ms),
            ("ewma_latency_ms", self.ewma_latency_ms),
            ("min_latency_ms", self.min_latency_ms),
            ("max_latency_ms", self.max_latency_ms),
        ] {
            if !v.is_finite() || v < 0.0 {
                problems.push(ValidationProblem::new(
                    format!("{path}.{field}"),
                    format!("{v} is not a finite number of milliseconds >= 0"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.ewma_success_rate) {
            problems.push(ValidationProblem::new(
                format!("{path}.ewma_success_rate"),
                format!("{} is outside 0..=1", self.ewma_success_rate),
            ));
        }
    }
}

impl Agent {
    /// An agent with only a name, registered now.
    pub fn new(name: impl Into<String>, now_ms: i64) -> Self {
        Agent {
            name: name.into(),
            description: String::new(),
            agent_type: String::new(),
            capabilities: Vec::new(),
            owned_paths: Vec::new(),
            metadata_json: EMPTY_OBJECT.to_string(),
            registered_at_ms: now_ms,
            updated_at_ms: now_ms,
            lease: None,
        }
    }

    /// Every problem with this agent (empty `Ok` when none).
    ///
    /// Rules: name is an identifier (non-empty, ≤ 128 chars, ASCII letters/digits/`_-.`) and
    /// not `all` (reserved: a workflow step's `all` means every required agent); capability
    /// names likewise and unique; type names and owned paths non-empty; JSON parts are objects;
    /// a lease has a TTL > 0; stats are consistent.
    pub fn validate(&self) -> Result<(), Vec<ValidationProblem>> {
        let mut problems = Vec::new();
        check_identifier(
            &self.name,
            "name",
            "agent name",
            MAX_AGENT_NAME_LEN,
            &mut problems,
        );
        if self.name == super::workflow::ALL_AGENTS {
            problems.push(ValidationProblem::new(
                "name",
                "\"all\" is reserved (a workflow step's agent \"all\" means every required agent); choose another name",
            ));
        }
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for (i, cap) in self.capabilities.iter().enumerate() {
            let path = format!("capabilities[{i}]");
            check_identifier(
                &cap.name,
                &format!("{path}.name"),
                "capability name",
                MAX_AGENT_NAME_LEN,
                &mut problems,
            );
            if !seen.insert(&cap.name) {
                problems.push(ValidationProblem::new(
                    format!("{path}.name"),
                    format!(
                        "capability {:?} is listed more than once; list each capability once",
                        cap.name
                    ),
                ));
            }
            for (field, list) in [
                ("input_types", &cap.input_types),
                ("output_types", &cap.output_types),
                ("required_context", &cap.required_context),
            ] {
                for (j, item) in list.iter().enumerate() {
                    if item.trim().is_empty() {
                        problems.push(ValidationProblem::new(
                            format!("{path}.{field}[{j}]"),
                            "is empty; remove it or name the type",
                        ));
                    }
                }
            }
            if let Err(e) = json::parse_object_text("", &cap.performance_metrics_json) {
                problems.push(not_object_problem(
                    &format!("{path}.performance_metrics"),
                    e,
                ));
            }
            cap.stats.check(&format!("{path}.stats"), &mut problems);
        }
        for (i, glob) in self.owned_paths.iter().enumerate() {
            if glob.trim().is_empty() || glob.contains('\0') {
                problems.push(ValidationProblem::new(
                    format!("owned_paths[{i}]"),
                    "must be a non-empty glob such as \"src/agents/**\"",
                ));
            }
        }
        if let Err(e) = json::parse_object_text("", &self.metadata_json) {
            problems.push(not_object_problem("metadata", e));
        }
        if let Some(lease) = &self.lease {
            if lease.ttl_ms == 0 {
                problems.push(ValidationProblem::new(
                    "lease.ttl_ms",
                    "a lease needs a TTL above 0 ms; omit the lease to make the agent always live",
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// [`Agent::validate`] as a [`RegistryError::Invalid`].
    pub fn check(&self) -> Result<(), RegistryError> {
        self.validate()
            .map_err(|p| RegistryError::invalid(RecordKind::Agent, &self.name, p))
    }

    /// Live when there is no lease, or the lease has not expired at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.lease.is_none_or(|l| l.is_live(now_ms))
    }

    /// Renews the lease (optionally with a new TTL). Returns false, changing nothing, when the
    /// agent has no lease and no TTL is given.
    pub fn heartbeat(&mut self, now_ms: i64, ttl_ms: Option<u64>) -> bool {
        match (&mut self.lease, ttl_ms) {
            (Some(lease), ttl) => {
                lease.last_heartbeat_ms = now_ms;
                if let Some(ttl) = ttl {
                    lease.ttl_ms = ttl;
                }
                true
            }
            (None, Some(ttl)) => {
                self.lease = Some(Lease {
                    ttl_ms: ttl,
                    last_heartbeat_ms: now_ms,
                });
                true
            }
            (None, None) => false,
        }
    }

    /// Applies a registration (upsert) on top of the stored agent: keeps `registered_at_ms` and
    /// the stats of capabilities registered again under the same name, sets `updated_at_ms`, and
    /// counts the registration as a heartbeat of its lease.
    pub fn upsert_onto(mut self, previous: Option<&Agent>, now_ms: i64) -> Agent {
        self.updated_at_ms = now_ms;
        if let Some(prev) = previous {
            self.registered_at_ms = prev.registered_at_ms;
            for cap in &mut self.capabilities {
                if let Some(old) = prev.capability(&cap.name) {
                    if cap.stats.count == 0 {
                        cap.stats = old.stats;
                    }
                }
            }
        } else {
            self.registered_at_ms = now_ms;
        }
        if let Some(lease) = &mut self.lease {
            lease.last_heartbeat_ms = now_ms;
        }
        self
    }

    pub fn capability(&self, name: &str) -> Option<&Capability> {
        self.capabilities.iter().find(|c| c.name == name)
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capability(name).is_some()
    }

    pub fn capability_names(&self) -> Vec<&str> {
        self.capabilities.iter().map(|c| c.name.as_str()).collect()
    }

    /// Folds a performance sample into the named capability's stats.
    pub fn record_metric(
        &mut self,
        sample: &MetricSample,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        if !sample.latency_ms.is_finite() || sample.latency_ms < 0.0 {
            return Err(RegistryError::InvalidMetric {
                capability: sample.capability.clone(),
                latency_ms: sample.latency_ms,
            });
        }
        let known = self
            .capability_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let agent = self.name.clone();
        let cap = self
            .capabilities
            .iter_mut()
            .find(|c| c.name == sample.capability)
            .ok_or_else(|| RegistryError::UnknownCapability {
                agent,
                capability: sample.capability.clone(),
                known,
            })?;
        cap.stats.record(sample.latency_ms, sample.success, now_ms);
        self.updated_at_ms = now_ms;
        Ok(())
    }

    /// The metadata object.
    pub fn metadata(&self) -> Value {
        object_value(&self.metadata_json)
    }

    /// Parses the original system's `agent_info` dict for `register_agent(agent_name,
    /// agent_info)`, collecting every problem.
    ///
    /// Recognised keys: `description` (string), `type` (or `agent_type`; string),
    /// `capabilities` (a list whose items are plain names — the original's shorthand — or
    /// objects with `name`, `description`, `input_types`, `output_types`, `required_context`,
    /// `performance_metrics`, `stats`), `owned_paths` (list of globs), `metadata` (object),
    /// `lease` (`{"ttl_ms": N, "last_heartbeat_ms": T}`, or just `{"ttl_ms": N}`),
    /// `registered_at_ms`, `updated_at_ms`, and `name` (must equal `agent_name` if present).
    /// Any other key is free-form and is kept in the metadata (an explicit `metadata` entry
    /// wins on a clash). Missing timestamps and a lease's missing heartbeat are `now_ms`.
    pub fn from_agent_info(
        agent_name: &str,
        info: &Value,
        now_ms: i64,
    ) -> Result<Agent, RegistryError> {
        let mut problems = Vec::new();
        let mut agent = Agent::new(agent_name, now_ms);
        let Some(obj) = info.as_object() else {
            problems.push(ValidationProblem::new(
                "",
                format!("agent_info must be a JSON object, not {}", json_kind(info)),
            ));
            return Err(RegistryError::invalid(
                RecordKind::Agent,
                agent_name,
                problems,
            ));
        };
        // Input position of each parsed capability (unparseable items are dropped), so that
        // problems found by validate() point at the right item of the given list.
        let mut input_index: Vec<usize> = Vec::new();
        let mut metadata = Map::new();
        for (k, v) in obj {
            if !AGENT_INFO_FIELDS.contains(&k.as_str()) {
                metadata.insert(k.clone(), v.clone());
            }
        }
        if let Some(v) = obj.get("name") {
            if v.as_str() != Some(agent_name) {
                problems.push(ValidationProblem::new(
                    "name",
                    format!("is {v}, but the agent is registered as {agent_name:?}; make them equal or drop \"name\""),
                ));
            }
        }
        agent.description = opt_string(obj, "description", "description", &mut problems);
        let type_key = if obj.contains_key("type") {
            "type"
        } else {
            "agent_type"
        };
        agent.agent_type = opt_string(obj, type_key, type_key, &mut problems);
        match obj.get("capabilities") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("capabilities[{i}]");
                    if let Some(c) = parse_capability(item, &path, &mut problems) {
                        agent.capabilities.push(c);
                        input_index.push(i);
                    }
                }
            }
            Some(other) => problems.push(ValidationProblem::new(
                "capabilities",
                format!(
                    "must be a list of capability names or objects, not {}",
                    json_kind(other)
                ),
            )),
        }
        agent.owned_paths = string_list(obj.get("owned_paths"), "owned_paths", &mut problems);
        match obj.get("metadata") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    metadata.insert(k.clone(), v.clone());
                }
            }
            Some(other) => problems.push(ValidationProblem::new(
                "metadata",
                format!("must be a JSON object, not {}", json_kind(other)),
            )),
        }
        agent.metadata_json = object_text(&metadata);
        match obj.get("lease") {
            None | Some(Value::Null) => {}
            Some(Value::Object(l)) => {
                let ttl = l.get("ttl_ms").and_then(Value::as_u64);
                if ttl.is_none() {
                    problems.push(ValidationProblem::new(
                        "lease.ttl_ms",
                        "a lease needs \"ttl_ms\", a whole number of milliseconds",
                    ));
                }
                let hb = opt_i64(
                    l.get("last_heartbeat_ms"),
                    "lease.last_heartbeat_ms",
                    &mut problems,
                );
                if let Some(ttl_ms) = ttl {
                    agent.lease = Some(Lease {
                        ttl_ms,
                        last_heartbeat_ms: hb.unwrap_or(now_ms),
                    });
                }
            }
            Some(other) => problems.push(ValidationProblem::new(
                "lease",
                format!(
                    "must be an object like {{\"ttl_ms\": 30000}}, not {}",
                    json_kind(other)
                ),
            )),
        }
        if let Some(t) = opt_i64(
            obj.get("registered_at_ms"),
            "registered_at_ms",
            &mut problems,
        ) {
            agent.registered_at_ms = t;
        }
        if let Some(t) = opt_i64(obj.get("updated_at_ms"), "updated_at_ms", &mut problems) {
            agent.updated_at_ms = t;
        }
        if let Err(more) = agent.validate() {
            for mut p in more {
                p.path = remap_capability_path(&p.path, &input_index);
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
        }
        if problems.is_empty() {
            Ok(agent)
        } else {
            Err(RegistryError::invalid(
                RecordKind::Agent,
                agent_name,
                problems,
            ))
        }
    }

    /// The agent as an `agent_info` object (the original's shape plus the fields we keep):
    /// `description`, `type`, `capabilities` (full objects), `owned_paths`, `metadata`,
    /// `registered_at_ms`, `updated_at_ms`, and `lease` when there is one.
    /// [`Agent::from_agent_info`] of this gives back the same agent.
    pub fn to_agent_info(&self) -> Value {
        let caps: Vec<Value> = self
            .capabilities
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("name".into(), Value::from(c.name.clone()));
                m.insert("description".into(), Value::from(c.description.clone()));
                m.insert("input_types".into(), Value::from(c.input_types.clone()));
                m.insert("output_types".into(), Value::from(c.output_types.clone()));
                m.insert(
                    "required_context".into(),
                    Value::from(c.required_context.clone()),
                );
                m.insert(
                    "performance_metrics".into(),
                    object_value(&c.performance_metrics_json),
                );
                m.insert(
                    "stats".into(),
                    serde_json::to_value(c.stats).unwrap_or(Value::Null),
                );
                Value::Object(m)
            })
            .collect();
        let mut m = Map::new();
        m.insert("description".into(), Value::from(self.description.clone()));
        m.insert("type".into(), Value::from(self.agent_type.clone()));
        m.insert("capabilities".into(), Value::Array(caps));
        m.insert("owned_paths".into(), Value::from(self.owned_paths.clone()));
        m.insert("metadata".into(), self.metadata());
        m.insert(
            "registered_at_ms".into(),
            Value::from(self.registered_at_ms),
        );
        m.insert("updated_at_ms".into(), Value::from(self.updated_at_ms));
        if let Some(l) = &self.lease {
            let mut lm = Map::new();
            lm.insert("ttl_ms".into(), Value::from(l.ttl_ms));
            lm.insert("last_heartbeat_ms".into(), Value::from(l.last_heartbeat_ms));
            m.insert("lease".into(), Value::Object(lm));
        }
        Value::Object(m)
    }
}

/// The agents that have capability `name`, in the order given.
pub fn agents_with_capability<'a>(agents: &'a [Agent], name: &str) -> Vec<&'a Agent> {
    agents.iter().filter(|a| a.has_capability(name)).collect()
}

/// Rewrites `capabilities[k]…` (index among parsed capabilities) to the input index.
fn remap_capability_path(path: &str, input_index: &[usize]) -> String {
    let Some(rest) = path.strip_prefix("capabilities[") else {
        return path.to_string();
    };
    let Some((num, tail)) = rest.split_once(']') else {
        return path.to_string();
    };
    match num.parse::<usize>().ok().and_then(|k| input_index.get(k)) {
        Some(i) => format!("capabilities[{i}]{tail}"),
        None => path.to_string(),
    }
}

fn not_object_problem(path: &str, e: RegistryError) -> ValidationProblem {
    let message = match e {
        RegistryError::NotAnObject { message, .. } => message,
        other => other.to_string(),
    };
    ValidationProblem::new(path, message)
}

fn parse_capability(
    item: &Value,
    path: &str,
    problems: &mut Vec<ValidationProblem>,
) -> Option<Capability> {
    match item {
        Value::String(name) => Some(Capability::named(name.clone())),
        Value::Object(o) => {
            for k in o.keys() {
                if !CAPABILITY_FIELDS.contains(&k.as_str()) {
                    problems.push(ValidationProblem::new(
                        format!("{path}.{k}"),
                        format!(
                            "unknown capability field; the fields are {}",
                            CAPABILITY_FIELDS.join(", ")
                        ),
                    ));
                }
            }
            let name = match o.get("name") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    problems.push(ValidationProblem::new(
                        format!("{path}.name"),
                        "a capability object needs a \"name\" string",
                    ));
                    return None;
                }
            };
            let mut cap = Capability::named(name);
            cap.description =
                opt_string(o, "description", &format!("{path}.description"), problems);
            cap.input_types = string_list(
                o.get("input_types"),
                &format!("{path}.input_types"),
                problems,
            );
            cap.output_types = string_list(
                o.get("output_types"),
                &format!("{path}.output_types"),
                problems,
            );
            cap.required_context = string_list(
                o.get("required_context"),
                &format!("{path}.required_context"),
                problems,
            );
            match o.get("performance_metrics") {
                None => {}
                Some(v) => match json::object_text_from_value("", v) {
                    Ok(t) => cap.performance_metrics_json = t,
                    Err(e) => problems.push(not_object_problem(
                        &format!("{path}.performance_metrics"),
                        e,
                    )),
                },
            }
            match o.get("stats") {
                None | Some(Value::Null) => {}
                Some(v) => match serde_json::from_value::<CapabilityStats>(v.clone()) {
                    Ok(s) => cap.stats = s,
                    Err(e) => problems.push(ValidationProblem::new(
                        format!("{path}.stats"),
                        format!("is not a stats object: {e}"),
                    )),
                },
            }
            Some(cap)
        }
        other => {
            problems.push(ValidationProblem::new(
                path,
                format!(
                    "a capability is a name or an object with a \"name\", not {}",
                    json_kind(other)
                ),
            ));
            None
        }
    }
}

/// An optional string field (`null` or absent → empty).
fn opt_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    problems: &mut Vec<ValidationProblem>,
) -> String {
    match obj.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            problems.push(ValidationProblem::new(
                path,
                format!("must be a string, not {}", json_kind(other)),
            ));
            String::new()
        }
    }
}

/// An optional list of strings (`null` or absent → empty).
pub(super) fn string_list(
    value: Option<&Value>,
    path: &str,
    problems: &mut Vec<ValidationProblem>,
) -> Vec<String> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Value::String(s) => Some(s.clone()),
                other => {
                    problems.push(ValidationProblem::new(
                        format!("{path}[{i}]"),
                        format!("must be a string, not {}", json_kind(other)),
                    ));
                    None
                }
            })
            .collect(),
        Some(other) => {
            problems.push(ValidationProblem::new(
                path,
                format!("must be a list of strings, not {}", json_kind(other)),
            ));
            Vec::new()
        }
    }
}

/// An optional whole number of milliseconds.
pub(super) fn opt_i64(
    value: Option<&Value>,
    path: &str,
    problems: &mut Vec<ValidationProblem>,
) -> Option<i64> {
    match value {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(n),
            None => {
                problems.push(ValidationProblem::new(
                    path,
                    format!("must be a whole number of milliseconds, not {v}"),
                ));
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(e: &RegistryError) -> Vec<&str> {
        e.problems().iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn shorthand_capabilities_as_in_the_original() {
        let info = json!({
            "description": "Code generation and analysis agent",
            "capabilities": ["code_generation", "code_review", "refactoring"]
        });
        let a = Agent::from_agent_info("codex", &info, 1000).unwrap();
        assert_eq!(a.name, "codex");
        assert_eq!(a.description, "Code generation and analysis agent");
        assert_eq!(
            a.capability_names(),
            ["code_generation", "code_review", "refactoring"]
        );
        assert_eq!(a.capabilities[0], Capability::named("code_generation"));
        assert_eq!(a.metadata_json, "{}");
        assert_eq!((a.registered_at_ms, a.updated_at_ms), (1000, 1000));
        assert!(a.lease.is_none());
    }

    #[test]
    fn type_only_agent_and_unknown_keys_go_to_metadata() {
        // The original's integration example: {'description': …, 'type': class name}.
        let info = json!({"description": "codex agent", "type": "CodexAgent", "version": 2,
                          "metadata": {"team": "ui", "version": 3}});
        let a = Agent::from_agent_info("codex", &info, 0).unwrap();
        assert_eq!(a.agent_type, "CodexAgent");
        assert_eq!(a.metadata(), json!({"team": "ui", "version": 3}));
    }

    #[test]
    fn full_capability_objects() {
        let info = json!({
            "capabilities": [
                "planning",
                {"name": "code_generation", "description": "writes code",
                 "input_types": ["text"], "output_types": ["code"],
                 "required_context": ["repo"], "performance_metrics": {"p50_ms": 120}}
            ],
            "owned_paths": ["agents/codex/**"],
            "lease": {"ttl_ms": 30000}
        });
        let a = Agent::from_agent_info("codex", &info, 5).unwrap();
        let c = a.capability("code_generation").unwrap();
        assert_eq!(c.input_types, ["text"]);
        assert_eq!(c.output_types, ["code"]);
        assert_eq!(c.required_context, ["repo"]);
        assert_eq!(c.performance_metrics_json, r#"{"p50_ms":120}"#);
        assert_eq!(a.owned_paths, ["agents/codex/**"]);
        assert_eq!(
            a.lease,
            Some(Lease {
                ttl_ms: 30000,
                last_heartbeat_ms: 5
            })
        );
    }

    #[test]
    fn agent_info_problems_all_reported() {
        let info = json!({
            "name": "other",
            "description": 3,
            "capabilities": ["ok", 7, {"description": "no name"}, {"name": "ok", "speed": 1},
                             {"name": "bad name", "performance_metrics": [1]}],
            "owned_paths": "src/**",
            "metadata": [],
            "lease": {"ttl_ms": "soon"},
        });
        let e = Agent::from_agent_info("codex", &info, 0).unwrap_err();
        let p = paths(&e);
        for want in [
            "name",
            "description",
            "capabilities[1]",
            "capabilities[2].name",
            "capabilities[3].speed",
            "capabilities[4].performance_metrics",
            "owned_paths",
            "metadata",
            "lease.ttl_ms",
            "capabilities[4].name",
        ] {
            assert!(p.contains(&want), "missing {want} in {p:?}");
        }
        // The duplicate "ok" and the bad name are found by validate() and reported at their
        // index in the given list, although unparseable items were dropped.
        assert!(
            e.to_string()
                .contains("capabilities[3].name: capability \"ok\" is listed more than once"),
            "{e}"
        );
        assert!(e.to_string().contains("contains ' '"), "{e}");
        let e = Agent::from_agent_info("codex", &json!(["x"]), 0).unwrap_err();
        assert_eq!(paths(&e), [""]);
    }

    #[test]
    fn validation_rules() {
        let mut a = Agent::new("", 0);
        a.capabilities = vec![Capability::named("x"), Capability::named("x")];
        a.capabilities[0].input_types = vec![" ".into()];
        a.capabilities[1].performance_metrics_json = "3".into();
        a.capabilities[1].stats.successes = 2;
        a.capabilities[1].stats.mean_latency_ms = f64::NAN;
        a.owned_paths = vec![String::new()];
        a.metadata_json = "nope".into();
        a.lease = Some(Lease {
            ttl_ms: 0,
            last_heartbeat_ms: 0,
        });
        let p = a.validate().unwrap_err();
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "name",
                "capabilities[0].input_types[0]",
                "capabilities[1].name",
                "capabilities[1].performance_metrics",
                "capabilities[1].stats.successes",
                "capabilities[1].stats.mean_latency_ms",
                "owned_paths[0]",
                "metadata",
                "lease.ttl_ms",
            ]
        );
        let reserved = Agent::new("all", 0).validate().unwrap_err();
        assert!(reserved[0].message.contains("reserved"));
        let long = Agent::new("a".repeat(129), 0).validate().unwrap_err();
        assert!(long[0].message.contains("limit is 128"));
        assert!(Agent::new("codex", 0).check().is_ok());
    }

    #[test]
    fn liveness_and_heartbeat() {
        let mut a = Agent::new("codex", 0);
        assert!(a.is_live(i64::MAX), "no lease: always live");
        assert!(!a.heartbeat(10, None));
        assert!(a.heartbeat(10, Some(1000)));
        assert!(a.is_live(1010));
        assert!(!a.is_live(1011));
        assert!(a.heartbeat(2000, None));
        assert!(a.is_live(3000) && !a.is_live(3001));
        a.lease = Some(Lease {
            ttl_ms: u64::MAX,
            last_heartbeat_ms: 5,
        });
        assert!(a.is_live(i64::MAX), "saturating expiry");
    }

    #[test]
    fn upsert_keeps_registration_time_and_stats() {
        let mut old = Agent::new("codex", 100);
        old.capabilities = vec![Capability::named("gen"), Capability::named("review")];
        old.record_metric(
            &MetricSample {
                capability: "gen".into(),
                latency_ms: 10.0,
                success: true,
            },
            150,
        )
        .unwrap();
        let mut new = Agent::new("codex", 0);
        new.capabilities = vec![Capability::named("gen")];
        new.lease = Some(Lease {
            ttl_ms: 10,
            last_heartbeat_ms: 0,
        });
        let merged = new.upsert_onto(Some(&old), 200);
        assert_eq!(merged.registered_at_ms, 100);
        assert_eq!(merged.updated_at_ms, 200);
        assert_eq!(merged.capabilities[0].stats.count, 1);
        assert_eq!(merged.lease.unwrap().last_heartbeat_ms, 200);
        let fresh = Agent::new("x", 0).upsert_onto(None, 300);
        assert_eq!((fresh.registered_at_ms, fresh.updated_at_ms), (300, 300));
    }

    #[test]
    fn metrics_aggregate_per_capability() {
        let mut a = Agent::new("codex", 0);
        a.capabilities = vec![Capability::named("gen"), Capability::named("review")];
        let s = |lat: f64, ok: bool| MetricSample {
            capability: "gen".into(),
            latency_ms: lat,
            success: ok,
        };
        a.record_metric(&s(100.0, true), 1).unwrap();
        a.record_metric(&s(200.0, false), 2).unwrap();
        a.record_metric(&s(300.0, true), 3).unwrap();
        let st = a.capability("gen").unwrap().stats;
        assert_eq!((st.count, st.successes), (3, 2));
        assert!((st.mean_latency_ms - 200.0).abs() < 1e-9);
        // ewma: 100 → 0.8·100+0.2·200 = 120 → 0.8·120+0.2·300 = 156
        assert!((st.ewma_latency_ms - 156.0).abs() < 1e-9);
        // success ewma: 1 → 0.9 → 0.91
        assert!((st.ewma_success_rate - 0.91).abs() < 1e-9);
        assert_eq!((st.min_latency_ms, st.max_latency_ms), (100.0, 300.0));
        assert_eq!(st.last_sample_ms, Some(3));
        assert!((st.success_rate().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(a.capability("review").unwrap().stats.count, 0);
        assert_eq!(a.capability("review").unwrap().stats.success_rate(), None);

        let e = a
            .record_metric(
                &MetricSample {
                    capability: "fly".into(),
                    latency_ms: 1.0,
                    success: true,
                },
                4,
            )
            .unwrap_err();
        assert!(matches!(e, RegistryError::UnknownCapability { .. }));
        assert!(e.to_string().contains("gen, review"), "{e}");
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(matches!(
                a.record_metric(&s(bad, true), 5),
                Err(RegistryError::InvalidMetric { .. })
            ));
        }
        assert_eq!(a.capability("gen").unwrap().stats.count, 3);
    }

    #[test]
    fn agent_info_round_trip() {
        let mut a = Agent::new("codex", 42);
        a.description = "d".into();
        a.agent_type = "T".into();
        a.capabilities = vec![Capability::named("gen")];
        a.capabilities[0].performance_metrics_json = r#"{"x":1}"#.into();
        a.capabilities[0].input_types = vec!["text".into()];
        a.owned_paths = vec!["src/**".into()];
        a.metadata_json = r#"{"k":"v"}"#.into();
        a.lease = Some(Lease {
            ttl_ms: 500,
            last_heartbeat_ms: 40,
        });
        a.record_metric(
            &MetricSample {
                capability: "gen".into(),
                latency_ms: 12.5,
                success: true,
            },
            43,
        )
        .unwrap();
        let info = a.to_agent_info();
        let b = Agent::from_agent_info("codex", &info, 999).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.to_agent_info(), info);
        // Through text too (what export/import does).
        let text = serde_json::to_string(&info).unwrap();
        let c = Agent::from_agent_info("codex", &serde_json::from_str(&text).unwrap(), 0).unwrap();
        assert_eq!(a, c);
    }

    #[test]
    fn find_by_capability() {
        let mut a = Agent::new("a", 0);
        a.capabilities = vec![Capability::named("x")];
        let b = Agent::new("b", 0);
        let mut c = Agent::new("c", 0);
        c.capabilities = vec![Capability::named("y"), Capability::named("x")];
        let all = [a, b, c];
        let names: Vec<_> = agents_with_capability(&all, "x")
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn bincode_and_json_round_trip() {
        let mut a = Agent::new("codex", 1);
        a.capabilities = vec![Capability::named("gen")];
        a.lease = Some(Lease {
            ttl_ms: 5,
            last_heartbeat_ms: 1,
        });
        a.record_metric(
            &MetricSample {
                capability: "gen".into(),
                latency_ms: 3.25,
                success: false,
            },
            2,
        )
        .unwrap();
        let bytes = bincode::serialize(&a).unwrap();
        assert_eq!(bincode::deserialize::<Agent>(&bytes).unwrap(), a);
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Agent>(&text).unwrap(), a);
    }
}
