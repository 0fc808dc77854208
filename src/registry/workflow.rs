//! Workflow definitions: ordered steps run by agents, validated as a whole, versioned on each
//! redefinition, with run statistics; the original's three default workflows.

use super::agent::{opt_i64, string_list};
use super::json::{self, json_kind, object_value};
use super::{check_identifier, RecordKind, RegistryError, ValidationProblem};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A step whose agent is `all` is run by every required agent (the original's "Execute in
/// parallel" step of `multi_agent_collaboration`).
pub const ALL_AGENTS: &str = "all";

/// Longest workflow id accepted.
pub const MAX_WORKFLOW_ID_LEN: usize = 128;

/// Longest workflow name accepted.
pub const MAX_WORKFLOW_NAME_LEN: usize = 256;

const WORKFLOW_FIELDS: &[&str] = &[
    "workflow_id",
    "name",
    "description",
    "steps",
    "required_agents",
    "input_requirements",
    "output_format",
    "estimated_time",
    "success_rate",
    "version",
    "run_count",
    "created_at_ms",
];

/// One step of a workflow: `{'step': 1, 'action': 'Parse NLP input', 'agent': 'nlp_interpreter'}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub step: u32,
    pub action: String,
    /// A required agent's name, or [`ALL_AGENTS`].
    pub agent: String,
}

impl Step {
    pub fn new(step: u32, action: impl Into<String>, agent: impl Into<String>) -> Self {
        Step {
            step,
            action: action.into(),
            agent: agent.into(),
        }
    }
}

/// A workflow definition (the original's `WorkflowDefinition`) with its version and run count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDefinition {
    pub workflow_id: String,
    pub name: String,
    pub description: String,
    /// In strictly increasing step order.
    pub steps: Vec<Step>,
    pub required_agents: Vec<String>,
    /// JSON text of an object, e.g. `{"code":"string","language":"string"}`.
    pub input_requirements_json: String,
    /// JSON text of an object, e.g. `{"changes":"list","enhanced_code":"string"}`.
    pub output_format_json: String,
    /// Seconds; a moving average of run durations (see [`super::run::apply_outcome`]).
    pub estimated_time: f64,
    /// 0..=1; `0.9·old + 0.1·outcome` per finished run.
    pub success_rate: f64,
    /// 1 for the first definition, +1 per redefinition.
    pub version: u64,
    /// Finished runs (succeeded or failed) folded into the statistics of this version.
    pub run_count: u64,
    pub created_at_ms: i64,
}

/// Where a defined version's success rate, estimated time and run count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatisticsCarry {
    /// The first version of the workflow: the figures given.
    First,
    /// The same definition as the latest version: no new version; its learned figures stay.
    Unchanged { version: u64, runs: u64 },
    /// Same steps and agents: the previous version's learned figures and run count carry over.
    KeptFrom { version: u64, runs: u64 },
    /// Steps or agents changed (or nothing was learned yet): the figures given; the previous
    /// version keeps its own runs and figures.
    Given {
        previous_version: u64,
        previous_runs: u64,
    },
}

impl StatisticsCarry {
    /// Whether no new version was written.
    pub fn unchanged(&self) -> bool {
        matches!(self, StatisticsCarry::Unchanged { .. })
    }

    /// One sentence for the person who defined the workflow.
    pub fn describe(&self) -> String {
        match *self {
            StatisticsCarry::First => {
                "first version: success rate and estimated time as given".to_string()
            }
            StatisticsCarry::Unchanged { version, runs } => format!(
                "same definition as version {version}: no new version; its statistics (learned from {runs} run(s)) stay"
            ),
            StatisticsCarry::KeptFrom { version, runs } => format!(
                "steps and agents unchanged: success rate, estimated time and run count carried over from version {version} ({runs} run(s))"
            ),
            StatisticsCarry::Given {
                previous_version,
                previous_runs,
            } => format!(
                "success rate and estimated time as given; version {previous_version} keeps its statistics ({previous_runs} run(s)){}",
                if previous_runs > 0 { " because the steps or agents changed" } else { "" }
            ),
        }
    }
}

/// Whether a workflow can run now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    /// Agents the workflow needs that are not registered and live, in the workflow's order.
    pub missing: Vec<String>,
}

impl WorkflowDefinition {
    /// A definition with the given identity and no steps (fill in the rest).
    pub fn new(
        workflow_id: impl Into<String>,
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        WorkflowDefinition {
            workflow_id: workflow_id.into(),
            name: name.into(),
            description: description.into(),
            steps: Vec::new(),
            required_agents: Vec::new(),
            input_requirements_json: json::EMPTY_OBJECT.to_string(),
            output_format_json: json::EMPTY_OBJECT.to_string(),
            estimated_time: 0.0,
            success_rate: 0.0,
            version: 1,
            run_count: 0,
            created_at_ms: 0,
        }
    }

    /// Every problem with this definition at once (empty `Ok` when none).
    ///
    /// Rules:
    /// - `workflow_id`: non-empty, ≤ 128 chars, ASCII letters, digits, `_`, `-`, `.`;
    /// - `name`: non-empty, ≤ 256 chars;
    /// - `steps`: at least one; each step number used once and numbers strictly increasing in
    ///   list order; `action` and `agent` non-empty; a step's agent is one of
    ///   `required_agents`, or `all` (every required agent), which needs a non-empty list;
    /// - `required_agents`: non-empty names, no duplicates, not `all` itself;
    /// - `input_requirements`, `output_format`: JSON objects;
    /// - `estimated_time`: finite and ≥ 0 seconds; `success_rate`: a number in 0..=1.
    pub fn validate(&self) -> Result<(), Vec<ValidationProblem>> {
        let mut problems = Vec::new();
        check_identifier(
            &self.workflow_id,
            "workflow_id",
            "workflow_id",
            MAX_WORKFLOW_ID_LEN,
            &mut problems,
        );
        if self.name.trim().is_empty() {
            problems.push(ValidationProblem::new(
                "name",
                "is empty; give the workflow a display name",
            ));
        } else if self.name.chars().count() > MAX_WORKFLOW_NAME_LEN {
            problems.push(ValidationProblem::new(
                "name",
                format!("is longer than {MAX_WORKFLOW_NAME_LEN} characters"),
            ));
        }

        let mut required: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, agent) in self.required_agents.iter().enumerate() {
            let path = format!("required_agents[{i}]");
            if agent.trim().is_empty() {
                problems.push(ValidationProblem::new(path, "is empty; name an agent"));
            } else if agent == ALL_AGENTS {
                problems.push(ValidationProblem::new(
                    path,
                    "\"all\" is not an agent; list the agents themselves (a step's agent may be \"all\")",
                ));
            } else if let Some(first) = required.get(agent.as_str()) {
                problems.push(ValidationProblem::new(
                    path,
                    format!("agent {agent:?} is already listed at required_agents[{first}]"),
                ));
            } else {
                required.insert(agent, i);
            }
        }

        if self.steps.is_empty() {
            problems.push(ValidationProblem::new(
                "steps",
                "a workflow needs at least one step",
            ));
        }
        let mut numbers: BTreeMap<u32, usize> = BTreeMap::new();
        let mut previous: Option<u32> = None;
        for (i, step) in self.steps.iter().enumerate() {
            let path = format!("steps[{i}]");
            if let Some(first) = numbers.get(&step.step) {
                problems.push(ValidationProblem::new(
                    format!("{path}.step"),
                    format!(
                        "step number {} is already used by steps[{first}]; give each step its own number",
                        step.step
                    ),
                ));
            } else {
                if let Some(prev) = previous {
                    if step.step < prev {
                        problems.push(ValidationProblem::new(
                            format!("{path}.step"),
                            format!(
                                "step {} comes after step {prev}; list steps in increasing order",
                                step.step
                            ),
                        ));
                    }
                }
                numbers.insert(step.step, i);
            }
            previous = Some(previous.map_or(step.step, |p| p.max(step.step)));
            if step.action.trim().is_empty() {
                problems.push(ValidationProblem::new(
                    format!("{path}.action"),
                    "is empty; say what the step does",
                ));
            }
            if step.agent.trim().is_empty() {
                problems.push(ValidationProblem::new(
                    format!("{path}.agent"),
                    "is empty; name one of the required agents, or \"all\"",
                ));
            } else if step.agent == ALL_AGENTS {
                if self.required_agents.is_empty() {
                    problems.push(ValidationProblem::new(
                        format!("{path}.agent"),
                        "\"all\" means every required agent, but required_agents is empty",
                    ));
                }
            } else if !self.required_agents.iter().any(|a| a == &step.agent) {
                problems.push(ValidationProblem::new(
                    format!("{path}.agent"),
                    format!(
                        "agent {:?} is not among the required agents [{}]; add it to required_agents or use one of them",
                        step.agent,
                        self.required_agents.join(", ")
                    ),
                ));
            }
        }

        for (field, text) in [
            ("input_requirements", &self.input_requirements_json),
            ("output_format", &self.output_format_json),
        ] {
            if let Err(RegistryError::NotAnObject { message, .. }) =
                json::parse_object_text(field, text)
            {
                problems.push(ValidationProblem::new(field, message));
            }
        }
        if !self.estimated_time.is_finite() || self.estimated_time < 0.0 {
            problems.push(ValidationProblem::new(
                "estimated_time",
                format!(
                    "{} is not a finite number of seconds >= 0",
                    self.estimated_time
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.success_rate) {
            problems.push(ValidationProblem::new(
                "success_rate",
                format!(
                    "{} is outside 0..=1; give a fraction such as 0.9",
                    self.success_rate
                ),
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// [`WorkflowDefinition::validate`] as a [`RegistryError::Invalid`].
    pub fn check(&self) -> Result<(), RegistryError> {
        self.validate()
            .map_err(|p| RegistryError::invalid(RecordKind::Workflow, &self.workflow_id, p))
    }

    /// The agents that run `step` (`all` expands to every required agent).
    pub fn agents_of_step<'a>(&'a self, step: &'a Step) -> Vec<&'a str> {
        if step.agent == ALL_AGENTS {
            self.required_agents.iter().map(String::as_str).collect()
        } else {
            vec![step.agent.as_str()]
        }
    }

    /// Whether `agent` is required or named by a step (`all` counts as every required agent).
    pub fn uses_agent(&self, agent: &str) -> bool {
        agent != ALL_AGENTS
            && (self.required_agents.iter().any(|a| a == agent)
                || self.steps.iter().any(|s| s.agent == agent))
    }

    /// Every agent the workflow needs: required agents in order, then step agents that are not
    /// required (only in an invalid definition).
    pub fn needed_agents(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for a in self
            .required_agents
            .iter()
            .chain(self.steps.iter().map(|s| &s.agent))
        {
            if a != ALL_AGENTS && !a.is_empty() && !out.contains(&a.as_str()) {
                out.push(a);
            }
        }
        out
    }

    pub fn step_numbers(&self) -> Vec<u32> {
        self.steps.iter().map(|s| s.step).collect()
    }

    pub fn has_step(&self, step: u32) -> bool {
        self.steps.iter().any(|s| s.step == step)
    }

    /// Ready when every needed agent is among `live_agents` (registered and live).
    pub fn readiness<I, S>(&self, live_agents: I) -> Readiness
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let live: BTreeSet<String> = live_agents
            .into_iter()
            .map(|s| s.as_ref().to_string())
            .collect();
        let missing: Vec<String> = self
            .needed_agents()
            .into_iter()
            .filter(|a| !live.contains(*a))
            .map(str::to_string)
            .collect();
        Readiness {
            ready: missing.is_empty(),
            missing,
        }
    }

    /// Whether two definitions define the same workflow (everything but `version`,
    /// `run_count`, `created_at_ms`, `estimated_time` and `success_rate`, which runs change).
    /// Lets the caller skip a new version when the same definition is given again (e.g. the
    /// defaults installed twice).
    pub fn same_definition(&self, other: &WorkflowDefinition) -> bool {
        self.workflow_id == other.workflow_id
            && self.name == other.name
            && self.description == other.description
            && self.steps == other.steps
            && self.required_agents == other.required_agents
            && self.input_requirements_json == other.input_requirements_json
            && self.output_format_json == other.output_format_json
    }

    /// This definition as the next version after `previous` (version 1 when there is none),
    /// created at `now_ms`. Its `estimated_time`, `success_rate` and `run_count` are kept as
    /// given: a new definition states its own starting statistics (a client that wants to keep
    /// the old ones copies them in).
    pub fn redefine(mut self, previous: Option<&WorkflowDefinition>, now_ms: i64) -> Self {
        self.version = previous.map_or(1, |p| p.version.saturating_add(1));
        self.created_at_ms = now_ms;
        self
    }

    /// This definition as the version after `previous` (a changed definition: the caller has
    /// already found that it is not [`WorkflowDefinition::same_definition`]), created at
    /// `now_ms`, with its statistics chosen as [`StatisticsCarry`] says.
    pub fn next_version(
        self,
        previous: Option<&WorkflowDefinition>,
        now_ms: i64,
    ) -> (Self, StatisticsCarry) {
        let mut next = self.redefine(previous, now_ms);
        let Some(prev) = previous else {
            return (next, StatisticsCarry::First);
        };
        // Learned figures describe how these steps run with these agents: a new name,
        // description or input/output shape does not change that, other steps do.
        let same_work = prev.steps == next.steps && prev.required_agents == next.required_agents;
        if same_work && prev.run_count > 0 {
            next.success_rate = prev.success_rate;
            next.estimated_time = prev.estimated_time;
            next.run_count = prev.run_count;
            return (
                next,
                StatisticsCarry::KeptFrom {
                    version: prev.version,
                    runs: prev.run_count,
                },
            );
        }
        next.run_count = 0;
        (
            next,
            StatisticsCarry::Given {
                previous_version: prev.version,
                previous_runs: prev.run_count,
            },
        )
    }

    pub fn input_requirements(&self) -> Value {
        object_value(&self.input_requirements_json)
    }

    pub fn output_format(&self) -> Value {
        object_value(&self.output_format_json)
    }

    /// The original's `asdict(WorkflowDefinition)` plus `version`, `run_count` and
    /// `created_at_ms`.
    pub fn to_original_json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| json!({"step": s.step, "action": s.action, "agent": s.agent}))
            .collect();
        json!({
            "workflow_id": self.workflow_id,
            "name": self.name,
            "description": self.description,
            "steps": steps,
            "required_agents": self.required_agents,
            "input_requirements": self.input_requirements(),
            "output_format": self.output_format(),
            "estimated_time": self.estimated_time,
            "success_rate": self.success_rate,
            "version": self.version,
            "run_count": self.run_count,
            "created_at_ms": self.created_at_ms,
        })
    }

    /// Parses the original's workflow shape (as [`WorkflowDefinition::to_original_json`]
    /// writes it; `version` defaults to 1, `run_count` and `created_at_ms` to 0,
    /// `estimated_time`/`success_rate` to 0.0 as in the original dataclass), then validates.
    /// Every problem is reported, with paths such as `steps[1].agent`.
    pub fn from_original_json(value: &Value) -> Result<Self, RegistryError> {
        let mut problems = Vec::new();
        let Some(obj) = value.as_object() else {
            problems.push(ValidationProblem::new(
                "",
                format!("a workflow must be a JSON object, not {}", json_kind(value)),
            ));
            return Err(RegistryError::invalid(RecordKind::Workflow, "", problems));
        };
        for k in obj.keys() {
            if !WORKFLOW_FIELDS.contains(&k.as_str()) {
                problems.push(ValidationProblem::new(
                    k.clone(),
                    format!(
                        "unknown workflow field; the fields are {}",
                        WORKFLOW_FIELDS.join(", ")
                    ),
                ));
            }
        }
        let string = |key: &str, problems: &mut Vec<ValidationProblem>| match obj.get(key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                problems.push(ValidationProblem::new(
                    key,
                    format!("must be a string, not {}", json_kind(other)),
                ));
                String::new()
            }
        };
        let mut wf = WorkflowDefinition::new(
            string("workflow_id", &mut problems),
            string("name", &mut problems),
            string("description", &mut problems),
        );
        match obj.get("steps") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    wf.steps
                        .push(parse_step(item, &format!("steps[{i}]"), &mut problems));
                }
            }
            Some(other) => problems.push(ValidationProblem::new(
                "steps",
                format!("must be a list of steps, not {}", json_kind(other)),
            )),
        }
        wf.required_agents =
            string_list(obj.get("required_agents"), "required_agents", &mut problems);
        for (key, slot) in [
            ("input_requirements", &mut wf.input_requirements_json),
            ("output_format", &mut wf.output_format_json),
        ] {
            if let Some(v) = obj.get(key) {
                match json::object_text_from_value(key, v) {
                    Ok(t) => *slot = t,
                    Err(RegistryError::NotAnObject { message, .. }) => {
                        problems.push(ValidationProblem::new(key, message))
                    }
                    Err(e) => problems.push(ValidationProblem::new(key, e.to_string())),
                }
            }
        }
        for (key, slot) in [
            ("estimated_time", &mut wf.estimated_time),
            ("success_rate", &mut wf.success_rate),
        ] {
            match obj.get(key) {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_f64() {
                    Some(f) => *slot = f,
                    None => problems.push(ValidationProblem::new(
                        key,
                        format!("must be a number, not {}", json_kind(v)),
                    )),
                },
            }
        }
        for (key, slot) in [
            ("version", &mut wf.version),
            ("run_count", &mut wf.run_count),
        ] {
            match obj.get(key) {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_u64() {
                    Some(n) => *slot = n,
                    None => problems.push(ValidationProblem::new(
                        key,
                        format!("must be a whole number >= 0, not {v}"),
                    )),
                },
            }
        }
        if wf.version == 0 {
            problems.push(ValidationProblem::new("version", "versions start at 1"));
        }
        if let Some(t) = opt_i64(obj.get("created_at_ms"), "created_at_ms", &mut problems) {
            wf.created_at_ms = t;
        }
        if let Err(more) = wf.validate() {
            // A field that could not be parsed is reported once, by the parser.
            for p in more {
                if !problems.iter().any(|q| covers(&q.path, &p.path)) {
                    problems.push(p);
                }
            }
        }
        if problems.is_empty() {
            Ok(wf)
        } else {
            Err(RegistryError::invalid(
                RecordKind::Workflow,
                wf.workflow_id,
                problems,
            ))
        }
    }
}

/// Whether a problem at `outer` already accounts for one at `inner` (same path or inside it).
pub(super) fn covers(outer: &str, inner: &str) -> bool {
    inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

fn parse_step(item: &Value, path: &str, problems: &mut Vec<ValidationProblem>) -> Step {
    let mut step = Step::new(0, "", "");
    let Some(o) = item.as_object() else {
        problems.push(ValidationProblem::new(
            path,
            format!(
                "a step is an object like {{\"step\": 1, \"action\": \"…\", \"agent\": \"…\"}}, not {}",
                json_kind(item)
            ),
        ));
        return step;
    };
    for k in o.keys() {
        if !matches!(k.as_str(), "step" | "action" | "agent") {
            problems.push(ValidationProblem::new(
                format!("{path}.{k}"),
                "unknown step field; a step has \"step\", \"action\" and \"agent\"",
            ));
        }
    }
    match o.get("step").and_then(Value::as_u64).map(u32::try_from) {
        Some(Ok(n)) => step.step = n,
        _ => problems.push(ValidationProblem::new(
            format!("{path}.step"),
            format!(
                "must be a whole step number (0 to {}), not {}",
                u32::MAX,
                o.get("step")
                    .map_or("missing".to_string(), Value::to_string)
            ),
        )),
    }
    for (key, slot) in [("action", &mut step.action), ("agent", &mut step.agent)] {
        match o.get(key) {
            Some(Value::String(s)) => *slot = s.clone(),
            other => problems.push(ValidationProblem::new(
                format!("{path}.{key}"),
                format!(
                    "must be a string, not {}",
                    other.map_or("missing", json_kind)
                ),
            )),
        }
    }
    step
}

/// The workflows that use `agent` (the original's `get_agent_workflows`, which looked only at
/// `required_agents`; here a step naming the agent counts too, and `all` counts as every
/// required agent).
pub fn workflows_for_agent<'a>(
    agent: &str,
    workflows: &'a [WorkflowDefinition],
) -> Vec<&'a WorkflowDefinition> {
    workflows.iter().filter(|w| w.uses_agent(agent)).collect()
}

/// Whether `agent` may be removed: refused with `AgentInUse` (naming the workflows, sorted)
/// when a workflow uses it, unless `force`.
pub fn check_agent_removal(
    agent: &str,
    workflows: &[WorkflowDefinition],
    force: bool,
) -> Result<(), RegistryError> {
    let mut users: Vec<String> = workflows_for_agent(agent, workflows)
        .iter()
        .map(|w| w.workflow_id.clone())
        .collect();
    users.sort();
    if force || users.is_empty() {
        Ok(())
    } else {
        Err(RegistryError::AgentInUse {
            agent: agent.to_string(),
            workflows: users,
        })
    }
}

/// The original's three default workflows (`initialize_default_workflows`), exactly: ids,
/// names, descriptions, steps, required agents, input requirements, output format, times
/// (30, 20, 45 s) and rates (0.92, 0.88, 0.85). Version 1, no runs, `created_at_ms` 0 (the
/// caller stamps it, e.g. with [`WorkflowDefinition::redefine`]).
pub fn default_workflows() -> Vec<WorkflowDefinition> {
    let make = |id: &str,
                name: &str,
                description: &str,
                steps: &[(u32, &str, &str)],
                required: &[&str],
                input: Value,
                output: Value,
                time: f64,
                rate: f64| {
        let mut w = WorkflowDefinition::new(id, name, description);
        w.steps = steps
            .iter()
            .map(|(n, action, agent)| Step::new(*n, *action, *agent))
            .collect();
        w.required_agents = required.iter().map(|s| s.to_string()).collect();
        w.input_requirements_json = json::object_text(input.as_object().unwrap_or(&Map::new()));
        w.output_format_json = json::object_text(output.as_object().unwrap_or(&Map::new()));
        w.estimated_time = time;
        w.success_rate = rate;
        w
    };
    vec![
        make(
            "ui_generation",
            "UI Generation from Natural Language",
            "Convert natural language descriptions to complete UI implementations",
            &[
                (1, "Parse NLP input", "nlp_interpreter"),
                (2, "Design UI structure", "ui_designer"),
                (3, "Generate code", "codex"),
                (4, "Validate & enhance", "reasoning"),
            ],
            &["nlp_interpreter", "ui_designer", "codex", "reasoning"],
            json!({"text_description": "string", "preferences": "dict"}),
            json!({"html": "string", "css": "string", "js": "string"}),
            30.0,
            0.92,
        ),
        make(
            "code_enhancement",
            "Code Enhancement & Optimization",
            "Analyze and enhance existing code with best practices",
            &[
                (1, "Analyze code", "codex"),
                (2, "Identify improvements", "reasoning"),
                (3, "Apply enhancements", "codex"),
                (4, "Validate changes", "reasoning"),
            ],
            &["codex", "reasoning"],
            json!({"code": "string", "language": "string"}),
            json!({"enhanced_code": "string", "changes": "list"}),
            20.0,
            0.88,
        ),
        make(
            "multi_agent_collaboration",
            "Multi-Agent Problem Solving",
            "Coordinate multiple agents to solve complex problems",
            &[
                (1, "Decompose problem", "reasoning"),
                (2, "Assign subtasks", "reasoning"),
                (3, "Execute in parallel", ALL_AGENTS),
                (4, "Integrate results", "reasoning"),
            ],
            &["codex", "ui_designer", "reasoning"],
            json!({"problem_description": "string"}),
            json!({"solution": "dict", "metadata": "dict"}),
            45.0,
            0.85,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> WorkflowDefinition {
        let mut w = WorkflowDefinition::new("custom_task", "Custom Task Workflow", "d");
        w.steps = vec![
            Step::new(1, "Analyze input", "reasoning"),
            Step::new(2, "Generate solution", "codex"),
            Step::new(3, "Validate output", "reasoning"),
        ];
        w.required_agents = vec!["reasoning".into(), "codex".into()];
        w.estimated_time = 25.0;
        w.success_rate = 0.9;
        w
    }

    fn problem_paths(w: &WorkflowDefinition) -> Vec<String> {
        w.validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    #[test]
    fn defaults_are_exactly_the_originals() {
        let d = default_workflows();
        assert_eq!(d.len(), 3);
        for w in &d {
            assert_eq!(w.validate(), Ok(()), "{}", w.workflow_id);
            assert_eq!((w.version, w.run_count), (1, 0));
        }
        let expected = serde_json::json!([
          {"workflow_id": "ui_generation", "name": "UI Generation from Natural Language",
           "description": "Convert natural language descriptions to complete UI implementations",
           "steps": [{"step": 1, "action": "Parse NLP input", "agent": "nlp_interpreter"},
                     {"step": 2, "action": "Design UI structure", "agent": "ui_designer"},
                     {"step": 3, "action": "Generate code", "agent": "codex"},
                     {"step": 4, "action": "Validate & enhance", "agent": "reasoning"}],
           "required_agents": ["nlp_interpreter", "ui_designer", "codex", "reasoning"],
           "input_requirements": {"text_description": "string", "preferences": "dict"},
           "output_format": {"html": "string", "css": "string", "js": "string"},
           "estimated_time": 30.0, "success_rate": 0.92,
           "version": 1, "run_count": 0, "created_at_ms": 0},
          {"workflow_id": "code_enhancement", "name": "Code Enhancement & Optimization",
           "description": "Analyze and enhance existing code with best practices",
           "steps": [{"step": 1, "action": "Analyze code", "agent": "codex"},
                     {"step": 2, "action": "Identify improvements", "agent": "reasoning"},
                     {"step": 3, "action": "Apply enhancements", "agent": "codex"},
                     {"step": 4, "action": "Validate changes", "agent": "reasoning"}],
           "required_agents": ["codex", "reasoning"],
           "input_requirements": {"code": "string", "language": "string"},
           "output_format": {"enhanced_code": "string", "changes": "list"},
           "estimated_time": 20.0, "success_rate": 0.88,
           "version": 1, "run_count": 0, "created_at_ms": 0},
          {"workflow_id": "multi_agent_collaboration", "name": "Multi-Agent Problem Solving",
           "description": "Coordinate multiple agents to solve complex problems",
           "steps": [{"step": 1, "action": "Decompose problem", "agent": "reasoning"},
                     {"step": 2, "action": "Assign subtasks", "agent": "reasoning"},
                     {"step": 3, "action": "Execute in parallel", "agent": "all"},
                     {"step": 4, "action": "Integrate results", "agent": "reasoning"}],
           "required_agents": ["codex", "ui_designer", "reasoning"],
           "input_requirements": {"problem_description": "string"},
           "output_format": {"solution": "dict", "metadata": "dict"},
           "estimated_time": 45.0, "success_rate": 0.85,
           "version": 1, "run_count": 0, "created_at_ms": 0}
        ]);
        let got: Vec<Value> = d.iter().map(|w| w.to_original_json()).collect();
        assert_eq!(Value::Array(got), expected);
        // The "Execute in parallel" step is run by every required agent.
        let m = &d[2];
        assert_eq!(
            m.agents_of_step(&m.steps[2]),
            ["codex", "ui_designer", "reasoning"]
        );
    }

    #[test]
    fn valid_definition_passes() {
        assert_eq!(valid().validate(), Ok(()));
        assert!(valid().check().is_ok());
    }

    #[test]
    fn every_problem_reported_at_once() {
        let mut w = valid();
        w.workflow_id = String::new();
        w.name = " ".into();
        w.steps = vec![
            Step::new(2, "a", "reasoning"),
            Step::new(1, "b", "codex"),     // unordered
            Step::new(2, "c", "reasoning"), // duplicate
            Step::new(3, "", "designer"),   // empty action, unknown agent
            Step::new(4, "e", ""),          // empty agent
        ];
        w.required_agents = vec![
            "reasoning".into(),
            "codex".into(),
            "codex".into(),
            "all".into(),
        ];
        w.input_requirements_json = "[]".into();
        w.output_format_json = "{".into();
        w.estimated_time = -1.0;
        w.success_rate = 1.5;
        assert_eq!(
            problem_paths(&w),
            [
                "workflow_id",
                "name",
                "required_agents[2]",
                "required_agents[3]",
                "steps[1].step",
                "steps[2].step",
                "steps[3].action",
                "steps[3].agent",
                "steps[4].agent",
                "input_requirements",
                "output_format",
                "estimated_time",
                "success_rate",
            ]
        );
        let e = w.check().unwrap_err();
        let text = e.to_string();
        assert!(text.contains("13 problem(s)"), "{text}");
        assert!(
            text.contains(
                "steps[1].step: step 1 comes after step 2; list steps in increasing order"
            ),
            "{text}"
        );
        assert!(
            text.contains("steps[2].step: step number 2 is already used by steps[0]"),
            "{text}"
        );
        assert!(
            text.contains("steps[3].agent: agent \"designer\" is not among the required agents"),
            "{text}"
        );
    }

    #[test]
    fn rates_and_times_edge_cases() {
        for (rate, ok) in [
            (0.0, true),
            (1.0, true),
            (-0.01, false),
            (1.0001, false),
            (f64::NAN, false),
        ] {
            let mut w = valid();
            w.success_rate = rate;
            assert_eq!(w.validate().is_ok(), ok, "rate {rate}");
        }
        for (time, ok) in [
            (0.0, true),
            (f64::NAN, false),
            (f64::INFINITY, false),
            (-0.5, false),
        ] {
            let mut w = valid();
            w.estimated_time = time;
            assert_eq!(w.validate().is_ok(), ok, "time {time}");
        }
    }

    #[test]
    fn empty_steps_bad_id_and_all_without_agents() {
        let mut w = valid();
        w.steps.clear();
        w.workflow_id = "bad id/1".into();
        assert_eq!(problem_paths(&w), ["workflow_id", "steps"]);
        let mut w = valid();
        w.required_agents.clear();
        w.steps = vec![Step::new(1, "x", "all")];
        let p = w.validate().unwrap_err();
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("required_agents is empty"));
    }

    #[test]
    fn agent_workflows_and_readiness() {
        let d = default_workflows();
        let ids = |agent: &str| -> Vec<&str> {
            workflows_for_agent(agent, &d)
                .iter()
                .map(|w| w.workflow_id.as_str())
                .collect()
        };
        assert_eq!(
            ids("codex"),
            [
                "ui_generation",
                "code_enhancement",
                "multi_agent_collaboration"
            ]
        );
        assert_eq!(
            ids("ui_designer"),
            ["ui_generation", "multi_agent_collaboration"]
        );
        assert_eq!(ids("nlp_interpreter"), ["ui_generation"]);
        assert!(ids("all").is_empty());
        assert!(ids("nobody").is_empty());

        let r = d[0].readiness(["codex", "reasoning", "ui_designer"]);
        assert_eq!(
            r,
            Readiness {
                ready: false,
                missing: vec!["nlp_interpreter".into()]
            }
        );
        assert!(
            d[1].readiness(vec!["codex".to_string(), "reasoning".into()])
                .ready
        );
        assert_eq!(d[2].readiness(Vec::<String>::new()).missing.len(), 3);
    }

    #[test]
    fn removing_a_needed_agent_is_refused_unless_forced() {
        let d = default_workflows();
        let e = check_agent_removal("ui_designer", &d, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "agent \"ui_designer\" is needed by workflow(s) multi_agent_collaboration, ui_generation; change or remove them first, or force the removal"
        );
        assert!(check_agent_removal("ui_designer", &d, true).is_ok());
        assert!(check_agent_removal("someone_else", &d, false).is_ok());
    }

    #[test]
    fn versions_and_sameness() {
        let a = valid().redefine(None, 10);
        assert_eq!((a.version, a.created_at_ms), (1, 10));
        let mut b = valid();
        b.success_rate = 0.5;
        b.run_count = 3;
        assert!(a.same_definition(&b));
        let b = b.redefine(Some(&a), 20);
        assert_eq!((b.version, b.created_at_ms, b.run_count), (2, 20, 3));
        let mut c = valid();
        c.steps[0].action = "other".into();
        assert!(!a.same_definition(&c));
    }

    #[test]
    fn original_json_round_trip_and_errors() {
        for w in default_workflows() {
            let v = w.to_original_json();
            let back = WorkflowDefinition::from_original_json(&v).unwrap();
            assert_eq!(back, w);
            assert_eq!(back.to_original_json(), v);
        }
        // The original's custom example, without our extra fields.
        let v = serde_json::json!({
            "workflow_id": "custom_task", "name": "Custom Task Workflow",
            "description": "Performs custom task processing",
            "steps": [{"step": 1, "action": "Analyze input", "agent": "reasoning"},
                      {"step": 2, "action": "Generate solution", "agent": "codex"},
                      {"step": 3, "action": "Validate output", "agent": "reasoning"}],
            "required_agents": ["reasoning", "codex"],
            "input_requirements": {"text": "string", "context": "dict"},
            "output_format": {"result": "string", "confidence": "float"},
            "estimated_time": 25.0, "success_rate": 0.90
        });
        let w = WorkflowDefinition::from_original_json(&v).unwrap();
        assert_eq!((w.version, w.run_count, w.steps.len()), (1, 0, 3));
        assert_eq!(w.input_requirements()["context"], "dict");

        let bad = serde_json::json!({
            "workflow_id": "x", "name": "X", "colour": "red",
            "steps": [{"step": "one", "action": "a", "agent": "codex"}, 5,
                      {"step": 2, "action": "b", "agent": "ghost", "why": 1}],
            "required_agents": ["codex"],
            "input_requirements": "text",
            "estimated_time": "long", "success_rate": 2, "version": 0
        });
        let e = WorkflowDefinition::from_original_json(&bad).unwrap_err();
        let paths: Vec<_> = e.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "colour",
                "steps[0].step",
                "steps[1]",
                "steps[2].why",
                "input_requirements",
                "estimated_time",
                "version",
                "steps[2].agent",
                "success_rate",
            ],
            "{e}"
        );
    }

    #[test]
    fn statistics_survive_json_text_exactly() {
        // Export → import → export must give the same document, so f64 statistics must
        // round-trip through JSON text bit for bit. serde_json only guarantees that with its
        // `float_roundtrip` feature (without it, ~10% of random f64 come back 1 ulp off).
        let mut w = default_workflows().remove(0);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = (x >> 11) as f64 / (1u64 << 53) as f64 * 100.0;
            super::super::run::apply_outcome(&mut w, i % 3 != 0, d).unwrap();
            let text = serde_json::to_string(&w.to_original_json()).unwrap();
            let back =
                WorkflowDefinition::from_original_json(&serde_json::from_str(&text).unwrap())
                    .unwrap();
            assert_eq!(
                back, w,
                "f64 changed through JSON text: enable serde_json's \"float_roundtrip\" feature"
            );
        }
    }

    #[test]
    fn bincode_and_json_round_trip() {
        for w in default_workflows() {
            let bytes = bincode::serialize(&w).unwrap();
            assert_eq!(
                bincode::deserialize::<WorkflowDefinition>(&bytes).unwrap(),
                w
            );
            let text = serde_json::to_string(&w).unwrap();
            assert_eq!(
                serde_json::from_str::<WorkflowDefinition>(&text).unwrap(),
                w
            );
        }
    }
}
