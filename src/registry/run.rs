//! Runs of a workflow: started, given step progress, finished once (succeeded or failed) or
//! expired when left open; and how a finished run updates its workflow's statistics.

use super::workflow::WorkflowDefinition;
use super::{RecordKind, RegistryError, ValidationProblem};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Weight of the newest outcome in a workflow's success rate: `0.9·old + 0.1·outcome`.
pub const SUCCESS_RATE_WEIGHT: f64 = 0.1;

/// Longest run id accepted (a generated id is the workflow id, a time and a counter).
pub const MAX_RUN_ID_LEN: usize = 192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Left open longer than the timeout (e.g. by a crashed client); not counted in the
    /// workflow's statistics.
    Expired,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Expired => "expired",
        }
    }

    pub fn is_final(self) -> bool {
        self != RunStatus::Running
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Started,
    Succeeded,
    Failed,
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Started => "started",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One progress report for a step (a step can be reported several times: started, then
/// succeeded…); kept in arrival order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    pub step: u32,
    pub status: StepStatus,
    pub message: String,
    pub at_ms: i64,
}

/// One execution of a workflow version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub run_id: String,
    pub workflow_id: String,
    /// The workflow version the run was started with.
    pub workflow_version: u64,
    pub started_at_ms: i64,
    /// Set when the run succeeded, failed or expired.
    pub finished_at_ms: Option<i64>,
    pub status: RunStatus,
    pub steps: Vec<StepProgress>,
    /// Set on finish (as reported by the client, else `finished_at_ms − started_at_ms`);
    /// `None` while running and for expired runs.
    pub duration_ms: Option<u64>,
    /// The outcome message given on finish, or why the run expired.
    pub message: String,
}

impl Run {
    /// A run of `workflow` (at its current version), started at `now_ms`.
    pub fn start(run_id: impl Into<String>, workflow: &WorkflowDefinition, now_ms: i64) -> Run {
        Run {
            run_id: run_id.into(),
            workflow_id: workflow.workflow_id.clone(),
            workflow_version: workflow.version,
            started_at_ms: now_ms,
            finished_at_ms: None,
            status: RunStatus::Running,
            steps: Vec::new(),
            duration_ms: None,
            message: String::new(),
        }
    }

    /// Problems with a run record (for import): non-empty ids, a version ≥ 1, and a status
    /// consistent with `finished_at_ms`.
    pub fn validate(&self) -> Result<(), Vec<ValidationProblem>> {
        let mut p = Vec::new();
        super::check_identifier(&self.run_id, "run_id", "run id", MAX_RUN_ID_LEN, &mut p);
        if self.workflow_id.trim().is_empty() {
            p.push(ValidationProblem::new("workflow_id", "is empty"));
        }
        if self.workflow_version == 0 {
            p.push(ValidationProblem::new(
                "workflow_version",
                "workflow versions start at 1",
            ));
        }
        match (self.status.is_final(), self.finished_at_ms) {
            (true, None) => p.push(ValidationProblem::new(
                "finished_at_ms",
                format!("a {} run needs the time it ended", self.status),
            )),
            (false, Some(_)) => p.push(ValidationProblem::new(
                "finished_at_ms",
                "a running run has no end time",
            )),
            _ => {}
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    }

    /// [`Run::validate`] as a [`RegistryError::Invalid`].
    pub fn check(&self) -> Result<(), RegistryError> {
        self.validate()
            .map_err(|p| RegistryError::invalid(RecordKind::Run, &self.run_id, p))
    }

    pub fn is_finished(&self) -> bool {
        self.status.is_final()
    }

    /// The last time the run showed signs of life: its start or its latest step report.
    pub fn last_activity_ms(&self) -> i64 {
        self.steps
            .iter()
            .map(|s| s.at_ms)
            .fold(self.started_at_ms, i64::max)
    }

    fn ensure_running(&self, attempted: &'static str) -> Result<(), RegistryError> {
        if self.status.is_final() {
            Err(RegistryError::RunFinished {
                run_id: self.run_id.clone(),
                status: self.status,
                attempted,
            })
        } else {
            Ok(())
        }
    }

    /// Records progress for step `step` of `workflow` (the run's workflow; a newer version is
    /// accepted, and its step numbers are the ones checked).
    ///
    /// Errors: the run has ended (`RunFinished`), `workflow` is another workflow
    /// (`WrongWorkflow`), the workflow has no such step (`UnknownStep`).
    pub fn record_step(
        &mut self,
        workflow: &WorkflowDefinition,
        step: u32,
        status: StepStatus,
        message: impl Into<String>,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        self.ensure_running("given step progress")?;
        if workflow.workflow_id != self.workflow_id {
            return Err(RegistryError::WrongWorkflow {
                run_id: self.run_id.clone(),
                expected_id: self.workflow_id.clone(),
                expected_version: self.workflow_version,
                got_id: workflow.workflow_id.clone(),
                got_version: workflow.version,
            });
        }
        if !workflow.has_step(step) {
            return Err(RegistryError::UnknownStep {
                run_id: self.run_id.clone(),
                workflow_id: self.workflow_id.clone(),
                step,
                known: workflow.step_numbers(),
            });
        }
        self.steps.push(StepProgress {
            step,
            status,
            message: message.into(),
            at_ms: now_ms,
        });
        Ok(())
    }

    /// Ends the run as succeeded or failed. `duration_ms` is the client's measure; when absent
    /// it is `now_ms − started_at_ms` (0 if the clock went backwards). Returns the duration in
    /// seconds, ready for [`apply_outcome`].
    ///
    /// Error: the run has already ended (`RunFinished`): a run is finished once.
    pub fn finish(
        &mut self,
        success: bool,
        duration_ms: Option<u64>,
        message: impl Into<String>,
        now_ms: i64,
    ) -> Result<f64, RegistryError> {
        self.ensure_running("finished again")?;
        let duration =
            duration_ms.unwrap_or_else(|| u64::try_from(now_ms - self.started_at_ms).unwrap_or(0));
        self.status = if success {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        self.finished_at_ms = Some(now_ms);
        self.duration_ms = Some(duration);
        self.message = message.into();
        Ok(duration as f64 / 1000.0)
    }

    /// Whether the run is still open and has shown no activity (start or step report) for
    /// more than `timeout_ms`.
    pub fn is_stale(&self, now_ms: i64, timeout_ms: u64) -> bool {
        let timeout = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
        !self.is_finished() && now_ms.saturating_sub(self.last_activity_ms()) > timeout
    }

    /// Marks an open run expired at `now_ms` (its outcome is unknown: no duration, and it does
    /// not change the workflow's statistics).
    pub fn expire(&mut self, now_ms: i64, reason: impl Into<String>) -> Result<(), RegistryError> {
        self.ensure_running("expired")?;
        self.status = RunStatus::Expired;
        self.finished_at_ms = Some(now_ms);
        self.duration_ms = None;
        self.message = reason.into();
        Ok(())
    }
}

/// Expires every open run idle for more than `timeout_ms`; returns their ids.
pub fn expire_stale(runs: &mut [Run], now_ms: i64, timeout_ms: u64) -> Vec<String> {
    let mut expired = Vec::new();
    for run in runs.iter_mut() {
        if run.is_stale(now_ms, timeout_ms) {
            let reason = format!("no progress for more than {timeout_ms} ms; expired");
            if run.expire(now_ms, reason).is_ok() {
                expired.push(run.run_id.clone());
            }
        }
    }
    expired
}

/// Folds one finished run into its workflow's statistics.
///
/// With n = `run_count` before this run, outcome o = 1 (success) or 0, duration d seconds:
/// - `success_rate` ← 0.9·success_rate + 0.1·o (the original's rule), clamped to 0..=1;
/// - `estimated_time` ← (estimated_time·(n+1) + d) / (n+2): the cumulative moving average
///   of the samples e₀, d₁, …, dₙ₊₁ where e₀, the definition's own estimate, counts as the
///   first sample. After k runs, `estimated_time` = (e₀ + d₁ + … + dₖ)/(k+1);
/// - `run_count` ← n + 1.
///
/// Error: `duration_s` is negative, infinite or NaN (`InvalidDuration`); nothing changes.
pub fn apply_outcome(
    workflow: &mut WorkflowDefinition,
    success: bool,
    duration_s: f64,
) -> Result<(), RegistryError> {
    if !duration_s.is_finite() || duration_s < 0.0 {
        return Err(RegistryError::InvalidDuration { duration_s });
    }
    let outcome = if success { 1.0 } else { 0.0 };
    workflow.success_rate = ((1.0 - SUCCESS_RATE_WEIGHT) * workflow.success_rate
        + SUCCESS_RATE_WEIGHT * outcome)
        .clamp(0.0, 1.0);
    let n = workflow.run_count as f64;
    workflow.estimated_time = (workflow.estimated_time * (n + 1.0) + duration_s) / (n + 2.0);
    workflow.run_count = workflow.run_count.saturating_add(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::workflow::default_workflows;
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn rate_and_time_arithmetic() {
        let mut w = default_workflows().remove(1); // code_enhancement: 20 s, 0.88
        apply_outcome(&mut w, true, 10.0).unwrap();
        assert!(
            close(w.success_rate, 0.9 * 0.88 + 0.1),
            "{}",
            w.success_rate
        );
        assert!(close(w.estimated_time, (20.0 + 10.0) / 2.0));
        assert_eq!(w.run_count, 1);
        apply_outcome(&mut w, false, 45.0).unwrap();
        assert!(close(w.success_rate, 0.9 * (0.9 * 0.88 + 0.1)));
        assert!(close(w.estimated_time, (20.0 + 10.0 + 45.0) / 3.0));
        assert_eq!(w.run_count, 2);
        for _ in 0..200 {
            apply_outcome(&mut w, true, 0.0).unwrap();
        }
        assert!(w.success_rate <= 1.0 && w.success_rate > 0.999);
        assert!(close(w.estimated_time, 75.0 / 203.0));
        let before = w.clone();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                apply_outcome(&mut w, true, bad),
                Err(RegistryError::InvalidDuration { .. })
            ));
        }
        assert_eq!(w, before);
    }

    #[test]
    fn lifecycle_and_state_errors() {
        let mut w = default_workflows().remove(0);
        w.version = 3;
        let mut r = Run::start("r1", &w, 1000);
        assert_eq!((r.status, r.workflow_version), (RunStatus::Running, 3));
        r.record_step(&w, 1, StepStatus::Started, "", 1100).unwrap();
        r.record_step(&w, 1, StepStatus::Succeeded, "parsed", 1200)
            .unwrap();
        let e = r
            .record_step(&w, 9, StepStatus::Started, "", 1300)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "run \"r1\": workflow \"ui_generation\" has no step 9 (its steps are [1, 2, 3, 4])"
        );
        let other = default_workflows().remove(1);
        assert!(matches!(
            r.record_step(&other, 1, StepStatus::Started, "", 1300),
            Err(RegistryError::WrongWorkflow { .. })
        ));
        assert_eq!(r.steps.len(), 2);
        assert_eq!(r.last_activity_ms(), 1200);

        let secs = r.finish(true, None, "done", 4000).unwrap();
        assert!(close(secs, 3.0));
        assert_eq!(r.duration_ms, Some(3000));
        assert_eq!(r.finished_at_ms, Some(4000));
        assert_eq!(r.status, RunStatus::Succeeded);
        assert_eq!(r.check(), Ok(()));

        let e = r.finish(false, None, "", 5000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "run \"r1\" has already ended (succeeded); it cannot be finished again"
        );
        let e = r
            .record_step(&w, 2, StepStatus::Started, "", 5000)
            .unwrap_err();
        assert!(
            e.to_string().contains("cannot be given step progress"),
            "{e}"
        );
        assert!(r.expire(6000, "x").is_err());
        assert_eq!(r.status, RunStatus::Succeeded);

        let mut f = Run::start("r2", &w, 1000);
        assert!(close(
            f.finish(false, Some(2500), "boom", 9000).unwrap(),
            2.5
        ));
        assert_eq!((f.status, f.duration_ms), (RunStatus::Failed, Some(2500)));
        let mut back = Run::start("r3", &w, 1000);
        assert_eq!(back.finish(true, None, "", 500).unwrap(), 0.0);
    }

    #[test]
    fn expiry_of_idle_runs() {
        let w = default_workflows().remove(0);
        let mut runs = vec![
            Run::start("old", &w, 0),
            Run::start("busy", &w, 0),
            Run::start("new", &w, 9_000),
            Run::start("done", &w, 0),
        ];
        runs[1]
            .record_step(&w, 1, StepStatus::Started, "", 8_000)
            .unwrap();
        runs[3].finish(true, None, "", 1).unwrap();
        assert!(!runs[0].is_stale(5_000, 5_000));
        assert!(runs[0].is_stale(5_001, 5_000));
        let expired = expire_stale(&mut runs, 10_000, 5_000);
        assert_eq!(expired, ["old"]);
        assert_eq!(runs[0].status, RunStatus::Expired);
        assert_eq!(runs[0].finished_at_ms, Some(10_000));
        assert_eq!(runs[0].duration_ms, None);
        assert!(runs[0].message.contains("5000 ms"));
        assert_eq!(runs[1].status, RunStatus::Running);
        assert_eq!(runs[3].status, RunStatus::Succeeded);
        assert!(matches!(
            runs[0].finish(true, None, "", 11_000),
            Err(RegistryError::RunFinished {
                status: RunStatus::Expired,
                ..
            })
        ));
    }

    #[test]
    fn run_validation() {
        let w = default_workflows().remove(0);
        let mut r = Run::start("", &w, 0);
        r.workflow_version = 0;
        r.status = RunStatus::Failed;
        let paths: Vec<_> = r
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(paths, ["run_id", "workflow_version", "finished_at_ms"]);
    }

    #[test]
    fn bincode_and_json_round_trip() {
        let w = default_workflows().remove(0);
        let mut r = Run::start("r", &w, 5);
        r.record_step(&w, 2, StepStatus::Failed, "m", 6).unwrap();
        r.finish(false, Some(7), "x", 8).unwrap();
        let bytes = bincode::serialize(&r).unwrap();
        assert_eq!(bincode::deserialize::<Run>(&bytes).unwrap(), r);
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"status\":\"failed\""), "{text}");
        assert_eq!(serde_json::from_str::<Run>(&text).unwrap(), r);
    }
}
