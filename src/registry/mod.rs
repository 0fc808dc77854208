//! The workflow database's domain: agents, workflow definitions and their runs, versioned
//! sessions, and the knowledge graph derived from all of them.
//!
//! Pure domain code: no I/O, no gRPC, no storage. `store` persists these structs with
//! serde/bincode (so every persisted struct is plain serde: no `flatten`, no `untagged`, no
//! `skip_serializing_if`, no `serde_json::Value` fields); free-form JSON parts are kept as JSON
//! *text* holding an object (see [`json`]). `rpc` converts them to protobuf.
//!
//! Conversions to and from the original Python system's JSON shapes (its `agent_info` dicts,
//! `asdict(WorkflowDefinition)`, `asdict(SessionMemory)`, its `knowledge_graph`) live beside each
//! type (`from_agent_info`/`to_agent_info`, `from_original_json`/`to_original_json`).

pub mod agent;
pub mod document;
pub mod json;
pub mod knowledge;
pub mod report;
pub mod run;
pub mod session;
pub mod time;
pub mod workflow;

pub use self::agent::{
    agents_with_capability, Agent, Capability, CapabilityStats, Lease, MetricSample,
    EWMA_LATENCY_WEIGHT, EWMA_SUCCESS_WEIGHT, MAX_AGENT_NAME_LEN,
};
pub use self::json::{
    canonical_object_text, object_text_from_value, parse_object_text, EMPTY_OBJECT,
};
pub use self::knowledge::{
    owned_files_with, Direction, Edge, EdgeKind, FileInput, GraphDiff, GraphInputs, GraphPath,
    KnowledgeGraph, Neighbor, NodeId, NodeKind,
};
pub use self::run::{apply_outcome, expire_stale, Run, RunStatus, StepProgress, StepStatus};
pub use self::session::{
    prune, RetentionPolicy, SessionVersion, SessionVersionMeta, DEFAULT_MAX_SESSION_BYTES,
    MAX_RESTORABLE_SESSION_BYTES, MAX_SESSION_ID_LEN, SESSION_FIELDS,
};
pub use self::workflow::{
    check_agent_removal, default_workflows, workflows_for_agent, Readiness, StatisticsCarry, Step,
    WorkflowDefinition, ALL_AGENTS,
};

use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing wrong with a record: where (a field path such as `steps[2].agent`, relative to
/// the record) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationProblem {
    /// Field path inside the record: `workflow_id`, `steps[2].agent`, `capabilities[0].name`.
    pub path: String,
    /// A sentence a person can act on.
    pub message: String,
}

impl ValidationProblem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationProblem {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same problem seen from an enclosing document: `prefixed("workflows.ui")` turns
    /// `steps[1].agent` into `workflows.ui.steps[1].agent` (and an empty path into the prefix).
    pub fn prefixed(&self, prefix: &str) -> Self {
        let path = if self.path.is_empty() {
            prefix.to_string()
        } else if prefix.is_empty() {
            self.path.clone()
        } else if self.path.starts_with('[') {
            format!("{prefix}{}", self.path)
        } else {
            format!("{prefix}.{}", self.path)
        };
        ValidationProblem {
            path,
            message: self.message.clone(),
        }
    }
}

impl fmt::Display for ValidationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Joins problems into one line each, for error messages.
fn problem_lines(problems: &[ValidationProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The kind of record a [`RegistryError::Invalid`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordKind {
    Agent,
    Workflow,
    Run,
    Session,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Agent => "agent",
            RecordKind::Workflow => "workflow",
            RecordKind::Run => "run",
            RecordKind::Session => "session",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the registry domain. `rpc` maps them to gRPC statuses: `Invalid`, `NotAnObject`,
/// `InvalidMetric`, `InvalidDuration` → INVALID_ARGUMENT; `SessionTooLarge` →
/// RESOURCE_EXHAUSTED; `UnknownCapability`, `UnknownStep`, `WrongWorkflow` → FAILED_PRECONDITION
/// or INVALID_ARGUMENT; `RunFinished` → FAILED_PRECONDITION.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// A record failed validation; every problem found is listed.
    #[error("invalid {kind} {id:?}: {count} problem(s)\n{lines}", count = problems.len(), lines = problem_lines(problems))]
    Invalid {
        kind: RecordKind,
        id: String,
        problems: Vec<ValidationProblem>,
    },

    /// A free-form JSON part is not JSON text holding an object.
    #[error("{field}: {message}")]
    NotAnObject { field: String, message: String },

    /// A session version is over the configured size limit.
    #[error("session {session_id:?} is {size} bytes, over the limit of {max} bytes; save less context or raise the session size limit")]
    SessionTooLarge {
        session_id: String,
        size: u64,
        max: u64,
    },

    /// A performance sample names a capability the agent does not have.
    #[error("agent {agent:?} has no capability {capability:?}; register it first (it has: {known})", known = if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownCapability {
        agent: String,
        capability: String,
        known: Vec<String>,
    },

    /// A performance sample with an unusable latency.
    #[error("latency {latency_ms} ms for capability {capability:?} is not a finite number of milliseconds >= 0")]
    InvalidMetric { capability: String, latency_ms: f64 },

    /// A run was finished (or given progress) after it had already ended.
    #[error("run {run_id:?} has already ended ({status}); it cannot be {attempted}")]
    RunFinished {
        run_id: String,
        status: run::RunStatus,
        attempted: &'static str,
    },

    /// Progress for a step number that the run's workflow does not have.
    #[error(
        "run {run_id:?}: workflow {workflow_id:?} has no step {step} (its steps are {known:?})"
    )]
    UnknownStep {
        run_id: String,
        workflow_id: String,
        step: u32,
        known: Vec<u32>,
    },

    /// A run was handed a workflow other than the one (or the version) it runs.
    #[error("run {run_id:?} runs workflow {expected_id:?} version {expected_version}, not {got_id:?} version {got_version}")]
    WrongWorkflow {
        run_id: String,
        expected_id: String,
        expected_version: u64,
        got_id: String,
        got_version: u64,
    },

    /// Removing an agent that workflows still need, without forcing.
    #[error("agent {agent:?} is needed by workflow(s) {}; change or remove them first, or force the removal", workflows.join(", "))]
    AgentInUse {
        agent: String,
        workflows: Vec<String>,
    },

    /// A run duration that is negative, infinite or NaN.
    #[error("duration {duration_s} s is not a finite number of seconds >= 0")]
    InvalidDuration { duration_s: f64 },

    /// Deleting a workflow that still has open runs, without forcing.
    #[error("workflow {workflow_id:?} has {} open run(s) ({}); finish or expire them first, or force the deletion (their runs are then expired)", open_runs.len(), open_runs.join(", "))]
    WorkflowInUse {
        workflow_id: String,
        open_runs: Vec<String>,
    },

    /// Starting a run of a workflow whose agents are not all registered and live.
    #[error("workflow {workflow_id:?} is not ready: agent(s) {} not registered or not live; register them (or renew their leases), or force the start", missing.join(", "))]
    WorkflowNotReady {
        workflow_id: String,
        missing: Vec<String>,
    },
}

impl RegistryError {
    /// Builds `Invalid` from a problem list.
    pub fn invalid(
        kind: RecordKind,
        id: impl Into<String>,
        problems: Vec<ValidationProblem>,
    ) -> Self {
        RegistryError::Invalid {
            kind,
            id: id.into(),
            problems,
        }
    }

    /// The problems, when this is a validation error.
    pub fn problems(&self) -> &[ValidationProblem] {
        match self {
            RegistryError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// Checks a name used as an identifier (agent, capability, workflow id): non-empty, at most
/// `max` characters, only ASCII letters, digits, `_`, `-` and `.`. Pushes problems at `path`.
fn check_identifier(
    value: &str,
    path: &str,
    what: &str,
    max: usize,
    problems: &mut Vec<ValidationProblem>,
) {
    if value.is_empty() {
        problems.push(ValidationProblem::new(path, format!("{what} is empty")));
        return;
    }
    let len = value.chars().count();
    if len > max {
        problems.push(ValidationProblem::new(
            path,
            format!("{what} is {len} characters long; the limit is {max}"),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        problems.push(ValidationProblem::new(
            path,
            format!(
                "{what} {value:?} contains {bad:?}; use only ASCII letters, digits, '_', '-' and '.'"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixing_paths() {
        let p = ValidationProblem::new("steps[1].agent", "x");
        assert_eq!(
            p.prefixed("workflows.ui").path,
            "workflows.ui.steps[1].agent"
        );
        let p = ValidationProblem::new("[2]", "x");
        assert_eq!(p.prefixed("steps").path, "steps[2]");
        let p = ValidationProblem::new("", "x");
        assert_eq!(p.prefixed("agents.codex").path, "agents.codex");
    }

    #[test]
    fn invalid_error_lists_every_problem() {
        let e = RegistryError::invalid(
            RecordKind::Workflow,
            "w",
            vec![
                ValidationProblem::new("workflow_id", "a"),
                ValidationProblem::new("steps[0].agent", "b"),
            ],
        );
        let s = e.to_string();
        assert!(s.contains("invalid workflow \"w\": 2 problem(s)"), "{s}");
        assert!(
            s.contains("workflow_id: a") && s.contains("steps[0].agent: b"),
            "{s}"
        );
        assert_eq!(e.problems().len(), 2);
    }

    #[test]
    fn identifiers() {
        let mut p = Vec::new();
        check_identifier("codex_1.v-2", "name", "agent name", 128, &mut p);
        assert!(p.is_empty());
        check_identifier("", "name", "agent name", 128, &mut p);
        check_identifier("a b", "name", "agent name", 128, &mut p);
        check_identifier(&"a".repeat(129), "name", "agent name", 128, &mut p);
        assert_eq!(p.len(), 3, "{p:?}");
    }
}
