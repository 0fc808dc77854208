//! The export document: the whole workflow database as JSON in the original system's shape
//! (`files` keyed by path, `agents`, `workflows`, `sessions`, `knowledge_graph`) plus
//! `format_version` and what we keep beyond the original (`workflow_versions`,
//! `session_versions` with older versions, `runs`, `roots`, `settings`); and the import side,
//! which validates every record before anything is written and names the first bad one with
//! its JSON path.
//!
//! `files` and `knowledge_graph` are derived (from the disk and from the records): an import
//! checks their shape and otherwise ignores them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::json::json_kind;
use super::{Agent, RetentionPolicy, Run, SessionVersion, ValidationProblem, WorkflowDefinition};

/// The version of the document format written by [`export`] and read by [`parse`].
pub const FORMAT_VERSION: u64 = 1;

/// The records of the workflow database, for export.
pub struct ExportRecords<'a> {
    /// Catalogued files: key → the original's FileMetadata fields (and ours).
    pub files: Map<String, Value>,
    /// Watched roots: `{root, root_id, clock}`.
    pub roots: Vec<Value>,
    /// Registered agents.
    pub agents: &'a [Agent],
    /// Every version of every workflow, by id then version.
    pub workflow_versions: &'a [WorkflowDefinition],
    /// Every run.
    pub runs: &'a [Run],
    /// Every version of every session, by id then version.
    pub session_versions: &'a [SessionVersion],
    /// The knowledge graph in the original's shape.
    pub knowledge_graph: Value,
    /// Session size limit.
    pub max_session_bytes: u64,
    /// Session retention.
    pub retention: RetentionPolicy,
}

/// Groups versions by id: the latest under `latest`, older ones (oldest first) under `older`.
fn split_versions<T>(
    items: &[T],
    id: impl Fn(&T) -> &str,
    to_json: impl Fn(&T) -> Value,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut groups: BTreeMap<&str, Vec<&T>> = BTreeMap::new();
    for it in items {
        groups.entry(id(it)).or_default().push(it);
    }
    let mut latest = Map::new();
    let mut older = Map::new();
    for (k, mut v) in groups {
        if let Some(last) = v.pop() {
            latest.insert(k.to_string(), to_json(last));
        }
        if !v.is_empty() {
            older.insert(
                k.to_string(),
                Value::Array(v.into_iter().map(&to_json).collect()),
            );
        }
    }
    (latest, older)
}

/// The whole database as one JSON document (keys sorted, so equal databases give equal text).
pub fn export(r: &ExportRecords<'_>) -> Value {
    let agents: Map<String, Value> = r
        .agents
        .iter()
        .map(|a| (a.name.clone(), a.to_agent_info()))
        .collect();
    let (workflows, workflow_versions) = split_versions(
        r.workflow_versions,
        |w| &w.workflow_id,
        WorkflowDefinition::to_original_json,
    );
    let (sessions, session_versions) = split_versions(
        r.session_versions,
        |s| &s.session_id,
        SessionVersion::to_original_json,
    );
    let runs: Map<String, Value> = r
        .runs
        .iter()
        .map(|run| {
            (
                run.run_id.clone(),
                serde_json::to_value(run).unwrap_or(Value::Null),
            )
        })
        .collect();
    json!({
        "format_version": FORMAT_VERSION,
        "roots": r.roots,
        "files": r.files,
        "agents": agents,
        "workflows": workflows,
        "workflow_versions": workflow_versions,
        "runs": runs,
        "sessions": sessions,
        "session_versions": session_versions,
        "knowledge_graph": r.knowledge_graph,
        "settings": {
            "max_session_bytes": r.max_session_bytes,
            "keep_last": r.retention.keep_last,
            "max_age_ms": r.retention.max_age_ms,
        },
    })
}

/// What a valid document holds.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Agents.
    pub agents: Vec<Agent>,
    /// Every workflow version.
    pub workflows: Vec<WorkflowDefinition>,
    /// Runs.
    pub runs: Vec<Run>,
    /// Every session version.
    pub sessions: Vec<SessionVersion>,
    /// Settings, when the document has them: (max session bytes, retention).
    pub settings: Option<(u64, RetentionPolicy)>,
    /// Number of files listed (never imported).
    pub files: u64,
}

/// The first bad record of a document: its JSON path and every problem it has.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the import changed nothing: the first bad record is {record}:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ImportError {
    /// JSON path of the record (`agents.codex`, `workflow_versions.ui[0]`, `$` for the document).
    pub record: String,
    /// Its problems, with paths from the document root.
    pub problems: Vec<ValidationProblem>,
}

fn bad(record: &str, problems: Vec<ValidationProblem>) -> ImportError {
    ImportError {
        record: record.to_string(),
        problems: problems.iter().map(|p| p.prefixed(record)).collect(),
    }
}

fn one(record: &str, path: &str, message: impl Into<String>) -> ImportError {
    bad(record, vec![ValidationProblem::new(path, message)])
}

const TOP_FIELDS: &[&str] = &[
    "format_version",
    "roots",
    "files",
    "agents",
    "workflows",
    "workflow_versions",
    "runs",
    "sessions",
    "session_versions",
    "knowledge_graph",
    "settings",
];

/// An object section (absent or null: empty).
fn section<'a>(
    doc: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ImportError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(one(
            key,
            "",
            format!("must be an object keyed by id, not {}", json_kind(other)),
        )),
    }
}

/// Validates a whole document and returns its records; the first bad record is the error.
/// `workflow_exists(id, version)` says whether the store already has a workflow version (a run
/// may refer to one not in the document). `max_session_bytes` applies when the document has no
/// settings of its own.
pub fn parse(
    doc: &Value,
    now_ms: i64,
    max_session_bytes: u64,
    workflow_exists: impl Fn(&str, u64) -> bool,
) -> Result<Parsed, ImportError> {
    let Some(doc) = doc.as_object() else {
        return Err(one(
            "$",
            "",
            format!("the document must be a JSON object, not {}", json_kind(doc)),
        ));
    };
    for k in doc.keys() {
        if !TOP_FIELDS.contains(&k.as_str()) {
            return Err(one(
                k,
                "",
                format!(
                    "unknown section; the sections are {}",
                    TOP_FIELDS.join(", ")
                ),
            ));
        }
    }
    match doc.get("format_version").and_then(Value::as_u64) {
        Some(FORMAT_VERSION) => {}
        other => {
            return Err(one(
                "format_version",
                "",
                format!(
                    "is {}; this wfdb reads format_version {FORMAT_VERSION}",
                    other.map_or("missing or not a number".to_string(), |v| v.to_string())
                ),
            ))
        }
    }
    let mut out = Parsed::default();
    let mut max_bytes = max_session_bytes;
    if let Some(s) = section(doc, "settings")? {
        let num = |k: &str| -> Result<Option<u64>, ImportError> {
            match s.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    one(
                        "settings",
                        k,
                        format!("must be a whole number >= 0, not {v}"),
                    )
                }),
            }
        };
        let m = num("max_session_bytes")?.unwrap_or(max_session_bytes);
        if m == 0 {
            return Err(one("settings", "max_session_bytes", "must be above 0"));
        }
        let retention = RetentionPolicy {
            keep_last: num("keep_last")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_age_ms: num("max_age_ms")?,
        };
        max_bytes = m;
        out.settings = Some((m, retention));
    }
    if let Some(files) = section(doc, "files")? {
        for (k, v) in files {
            if !v.is_object() {
                return Err(one(
                    &format!("files.{k}"),
                    "",
                    format!("a file entry must be an object, not {}", json_kind(v)),
                ));
            }
        }
        out.files = files.len() as u64;
    }
    if let Some(agents) = section(doc, "agents")? {
        for (name, info) in agents {
            let rec = format!("agents.{name}");
            let a = Agent::from_agent_info(name, info, now_ms)
                .map_err(|e| bad(&rec, e.problems().to_vec()))?;
            out.agents.push(a);
        }
    }
    let workflow = |rec: &str, key: &str, v: &Value| -> Result<WorkflowDefinition, ImportError> {
        let w = WorkflowDefinition::from_original_json(v)
            .map_err(|e| bad(rec, e.problems().to_vec()))?;
        if w.workflow_id != key {
            return Err(one(
                rec,
                "workflow_id",
                format!(
                    "is {:?} but the record is filed under {key:?}",
                    w.workflow_id
                ),
            ));
        }
        Ok(w)
    };
    if let Some(older) = section(doc, "workflow_versions")? {
        for (key, list) in older {
            let rec = format!("workflow_versions.{key}");
            let Some(items) = list.as_array() else {
                return Err(one(&rec, "", "must be a list of older versions"));
            };
            for (i, v) in items.iter().enumerate() {
                out.workflows
                    .push(workflow(&format!("{rec}[{i}]"), key, v)?);
            }
        }
    }
    if let Some(latest) = section(doc, "workflows")? {
        for (key, v) in latest {
            out.workflows
                .push(workflow(&format!("workflows.{key}"), key, v)?);
        }
    }
    let mut seen = BTreeSet::new();
    for w in &out.workflows {
        if !seen.insert((w.workflow_id.clone(), w.version)) {
            return Err(one(
                &format!("workflows.{}", w.workflow_id),
                "version",
                format!("version {} is given twice", w.version),
            ));
        }
    }
    if let Some(runs) = section(doc, "runs")? {
        for (key, v) in runs {
            let rec = format!("runs.{key}");
            let run: Run = serde_json::from_value(v.clone())
                .map_err(|e| one(&rec, "", format!("is not a run: {e}")))?;
            run.validate().map_err(|p| bad(&rec, p))?;
            if &run.run_id != key {
                return Err(one(
                    &rec,
                    "run_id",
                    format!("is {:?} but the record is filed under {key:?}", run.run_id),
                ));
            }
            if !seen.contains(&(run.workflow_id.clone(), run.workflow_version))
                && !workflow_exists(&run.workflow_id, run.workflow_version)
            {
                return Err(one(
                    &rec,
                    "workflow_version",
                    format!(
                        "workflow {:?} version {} is neither in the document nor in the database",
                        run.workflow_id, run.workflow_version
                    ),
                ));
            }
            out.runs.push(run);
        }
    }
    let session = |rec: &str, key: &str, v: &Value| -> Result<SessionVersion, ImportError> {
        let s = SessionVersion::from_original_json(v, now_ms)
            .map_err(|e| bad(rec, e.problems().to_vec()))?;
        if s.session_id != key {
            return Err(one(
                rec,
                "session_id",
                format!(
                    "is {:?} but the record is filed under {key:?}",
                    s.session_id
                ),
            ));
        }
        if let Err(e) = s.check(max_bytes) {
            return Err(one(rec, "", e.to_string()));
        }
        Ok(s)
    };
    if let Some(older) = section(doc, "session_versions")? {
        for (key, list) in older {
            let rec = format!("session_versions.{key}");
            let Some(items) = list.as_array() else {
                return Err(one(&rec, "", "must be a list of older versions"));
            };
            for (i, v) in items.iter().enumerate() {
                out.sessions.push(session(&format!("{rec}[{i}]"), key, v)?);
            }
        }
    }
    if let Some(latest) = section(doc, "sessions")? {
        for (key, v) in latest {
            out.sessions
                .push(session(&format!("sessions.{key}"), key, v)?);
        }
    }
    let mut seen = BTreeSet::new();
    for s in &out.sessions {
        if !seen.insert((s.session_id.clone(), s.version)) {
            return Err(one(
                &format!("sessions.{}", s.session_id),
                "version",
                format!("version {} is given twice", s.version),
            ));
        }
    }
    if let Some(kg) = doc.get("knowledge_graph") {
        if !kg.is_object() && !kg.is_null() {
            return Err(one(
                "knowledge_graph",
                "",
                format!("must be an object, not {}", json_kind(kg)),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::default_workflows;

    fn doc() -> Value {
        let workflows = default_workflows();
        let agents = vec![Agent::new("codex", 1)];
        let mut s = SessionVersion::new("s1", None, 5);
        s.version = 1;
        let mut s2 = s.clone();
        s2.version = 2;
        export(&ExportRecords {
            files: Map::new(),
            roots: vec![],
            agents: &agents,
            workflow_versions: &workflows,
            runs: &[Run::start("r1", &workflows[0], 3)],
            session_versions: &[s, s2],
            knowledge_graph: json!({}),
            max_session_bytes: 1000,
            retention: RetentionPolicy::default(),
        })
    }

    #[test]
    fn export_parse_round_trip() {
        let d = doc();
        let p = parse(&d, 9, 1 << 20, |_, _| false).unwrap();
        assert_eq!(
            (
                p.agents.len(),
                p.workflows.len(),
                p.runs.len(),
                p.sessions.len()
            ),
            (1, 3, 1, 2)
        );
        let again = export(&ExportRecords {
            files: Map::new(),
            roots: vec![],
            agents: &p.agents,
            workflow_versions: &p.workflows,
            runs: &p.runs,
            session_versions: &p.sessions,
            knowledge_graph: json!({}),
            max_session_bytes: 1000,
            retention: RetentionPolicy::default(),
        });
        assert_eq!(again, d);
    }

    #[test]
    fn first_bad_record_is_named_with_its_path() {
        let mut d = doc();
        d["workflows"]["code_enhancement"]["steps"][1]["agent"] = json!("nobody");
        let e = parse(&d, 9, 1 << 20, |_, _| false).unwrap_err();
        assert_eq!(e.record, "workflows.code_enhancement");
        assert!(
            e.problems[0]
                .path
                .starts_with("workflows.code_enhancement.steps[1].agent"),
            "{e}"
        );
        d["format_version"] = json!(7);
        assert_eq!(
            parse(&d, 9, 1 << 20, |_, _| false).unwrap_err().record,
            "format_version"
        );
    }
}
