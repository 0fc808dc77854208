//! Sessions: every save is a new version of the session's memory (the original's
//! `SessionMemory`) plus the catalog clock of every root at save time; validation, size
//! limit and retention.

use super::agent::string_list;
use super::json::{self, json_kind, object_value};
use super::time::{format_rfc3339_ms, is_iso8601_datetime};
use super::workflow::covers;
use super::{RecordKind, RegistryError, ValidationProblem};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// Longest session id accepted.
pub const MAX_SESSION_ID_LEN: usize = 256;

/// Longest timestamp accepted.
pub const MAX_TIMESTAMP_LEN: usize = 64;

/// The largest session accepted, whatever is configured: a restore answers it in one gRPC
/// message, and every stock gRPC client reads at most 4 MiB in one (64 KiB are left for the
/// rest of the answer).
pub const MAX_RESTORABLE_SESSION_BYTES: u64 = 4 * 1024 * 1024 - 64 * 1024;

/// The default configured session size limit: as large as every client can restore.
pub const DEFAULT_MAX_SESSION_BYTES: u64 = MAX_RESTORABLE_SESSION_BYTES;

/// The keys of a session in the original's shape (what `session restore` prints, so a
/// restored session saves again); any other key is refused.
pub const SESSION_FIELDS: &[&str] = &[
    "session_id",
    "timestamp",
    "context_snapshot",
    "agent_states",
    "workflow_progress",
    "learned_patterns",
    "version",
    "saved_at_ms",
    "root_clocks",
];

/// One saved version of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionVersion {
    pub session_id: String,
    /// 1 for the first save, then +1 per save (assigned by the store).
    pub version: u64,
    /// The client's timestamp (ISO 8601 / RFC 3339), or the save time formatted as RFC 3339.
    pub timestamp: String,
    /// When the daemon saved it (Unix ms): what retention and listing by time use.
    pub saved_at_ms: i64,
    /// JSON text of an object.
    pub context_snapshot_json: String,
    /// JSON text of an object: agent name → state.
    pub agent_states_json: String,
    /// JSON text of an object: workflow id → fraction done (a number in 0..=1).
    pub workflow_progress_json: String,
    pub learned_patterns: Vec<String>,
    /// Every root's catalog clock at save time, sorted by root: `wfdb session restore
    /// --changes` asks the catalog what changed since these.
    pub root_clocks: Vec<(String, u64)>,
}

/// What listing, history and retention need of a version, without its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionVersionMeta {
    pub session_id: String,
    pub version: u64,
    pub timestamp: String,
    pub saved_at_ms: i64,
    /// [`SessionVersion::encoded_size`].
    pub encoded_size: u64,
}

/// Which old versions of a session to delete. Both limits apply together; the latest version
/// is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep only the newest N versions (0 behaves as 1).
    pub keep_last: Option<usize>,
    /// Delete versions saved more than this long ago.
    pub max_age_ms: Option<u64>,
}

impl SessionVersion {
    /// An empty session version saved at `now_ms`; `timestamp` is the client's or, when
    /// `None` or empty, `now_ms` as RFC 3339 (`2024-05-01T12:34:56.789Z`). `version` is 0
    /// until the store assigns it.
    pub fn new(session_id: impl Into<String>, timestamp: Option<String>, now_ms: i64) -> Self {
        let timestamp = timestamp
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| format_rfc3339_ms(now_ms));
        SessionVersion {
            session_id: session_id.into(),
            version: 0,
            timestamp,
            saved_at_ms: now_ms,
            context_snapshot_json: json::EMPTY_OBJECT.to_string(),
            agent_states_json: json::EMPTY_OBJECT.to_string(),
            workflow_progress_json: json::EMPTY_OBJECT.to_string(),
            learned_patterns: Vec::new(),
            root_clocks: Vec::new(),
        }
    }

    /// The size the limit applies to: the UTF-8 bytes of every string (id, timestamp, the
    /// three JSON texts, each learned pattern, each root) plus 8 bytes per number (version,
    /// saved_at_ms, each clock). Close to, and never above, the stored bincode size minus its
    /// length prefixes.
    pub fn encoded_size(&self) -> u64 {
        let strings = self.session_id.len()
            + self.timestamp.len()
            + self.context_snapshot_json.len()
            + self.agent_states_json.len()
            + self.workflow_progress_json.len()
            + self.learned_patterns.iter().map(String::len).sum::<usize>()
            + self.root_clocks.iter().map(|(r, _)| r.len()).sum::<usize>();
        strings as u64 + 16 + 8 * self.root_clocks.len() as u64
    }

    pub fn meta(&self) -> SessionVersionMeta {
        SessionVersionMeta {
            session_id: self.session_id.clone(),
            version: self.version,
            timestamp: self.timestamp.clone(),
            saved_at_ms: self.saved_at_ms,
            encoded_size: self.encoded_size(),
        }
    }

    /// Every problem with this version (empty `Ok` when none). Rules:
    /// - `session_id`: non-empty, ≤ 256 characters, no control characters, no leading or
    ///   trailing whitespace (any other character, including `/` and `:`, is allowed so ids
    ///   can carry prefixes);
    /// - `timestamp`: an ISO 8601 date-time such as RFC 3339 or Python's `isoformat()`
    ///   (`2024-05-01T12:34:56.123456`, offset optional), ≤ 64 characters;
    /// - `context_snapshot`, `agent_states`: JSON objects;
    /// - `workflow_progress`: a JSON object whose keys are non-empty and whose values are
    ///   numbers in 0..=1 (fraction of the workflow done, as in the original's
    ///   `{'ui_generation': 0.75}`);
    /// - `learned_patterns`: non-empty strings;
    /// - `root_clocks`: non-empty roots, each once.
    ///
    /// The size limit is checked by [`SessionVersion::check`].
    pub fn validate(&self) -> Result<(), Vec<ValidationProblem>> {
        let mut problems = Vec::new();
        let id = &self.session_id;
        if id.is_empty() {
            problems.push(ValidationProblem::new("session_id", "is empty"));
        } else {
            let len = id.chars().count();
            if len > MAX_SESSION_ID_LEN {
                problems.push(ValidationProblem::new(
                    "session_id",
                    format!("is {len} characters long; the limit is {MAX_SESSION_ID_LEN}"),
                ));
            }
            if let Some(c) = id.chars().find(|c| c.is_control()) {
                problems.push(ValidationProblem::new(
                    "session_id",
                    format!("contains the control character {c:?}; remove it"),
                ));
            }
            if id.trim() != id {
                problems.push(ValidationProblem::new(
                    "session_id",
                    format!("{id:?} starts or ends with whitespace; trim it"),
                ));
            }
        }
        if self.timestamp.len() > MAX_TIMESTAMP_LEN || !is_iso8601_datetime(&self.timestamp) {
            problems.push(ValidationProblem::new(
                "timestamp",
                format!(
                    "{:?} is not an ISO 8601 date-time such as \"2024-05-01T12:34:56Z\" (or leave it empty to use the save time)",
                    self.timestamp
                ),
            ));
        }
        for (field, text) in [
            ("context_snapshot", &self.context_snapshot_json),
            ("agent_states", &self.agent_states_json),
        ] {
            if let Err(RegistryError::NotAnObject { message, .. }) =
                json::parse_object_text(field, text)
            {
                problems.push(ValidationProblem::new(field, message));
            }
        }
        match json::parse_object_text("workflow_progress", &self.workflow_progress_json) {
            Err(RegistryError::NotAnObject { message, .. }) => {
                problems.push(ValidationProblem::new("workflow_progress", message))
            }
            Err(e) => problems.push(ValidationProblem::new("workflow_progress", e.to_string())),
            Ok(map) => check_progress(&map, &mut problems),
        }
        for (i, p) in self.learned_patterns.iter().enumerate() {
            if p.trim().is_empty() {
                problems.push(ValidationProblem::new(
                    format!("learned_patterns[{i}]"),
                    "is empty; remove it",
                ));
            }
        }
        let mut roots = BTreeSet::new();
        for (i, (root, _)) in self.root_clocks.iter().enumerate() {
            if root.is_empty() {
                problems.push(ValidationProblem::new(
                    format!("root_clocks[{i}]"),
                    "names no root",
                ));
            } else if !roots.insert(root.as_str()) {
                problems.push(ValidationProblem::new(
                    format!("root_clocks[{i}]"),
                    format!("root {root:?} is listed more than once"),
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Checks the size limit first (`SessionTooLarge`, with both sizes: refused before any
    /// JSON is parsed), then [`SessionVersion::validate`] (`Invalid`).
    pub fn check(&self, max_bytes: u64) -> Result<(), RegistryError> {
        let size = self.encoded_size();
        if size > max_bytes {
            return Err(RegistryError::SessionTooLarge {
                session_id: self.session_id.clone(),
                size,
                max: max_bytes,
            });
        }
        self.validate()
            .map_err(|p| RegistryError::invalid(RecordKind::Session, &self.session_id, p))
    }

    /// Makes equal content equal text: JSON parts re-encoded canonically (when they parse)
    /// and `root_clocks` sorted by root.
    pub fn normalize(&mut self) {
        for text in [
            &mut self.context_snapshot_json,
            &mut self.agent_states_json,
            &mut self.workflow_progress_json,
        ] {
            if let Ok(t) = json::canonical_object_text("", text) {
                *text = t;
            }
        }
        self.root_clocks.sort();
    }

    pub fn context_snapshot(&self) -> Value {
        object_value(&self.context_snapshot_json)
    }

    pub fn agent_states(&self) -> Value {
        object_value(&self.agent_states_json)
    }

    pub fn workflow_progress(&self) -> Value {
        object_value(&self.workflow_progress_json)
    }

    /// The workflow ids the session has progress for (sorted).
    pub fn workflow_ids(&self) -> Vec<String> {
        match self.workflow_progress() {
            Value::Object(m) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// The clock saved for `root`, if any.
    pub fn clock_of(&self, root: &str) -> Option<u64> {
        self.root_clocks
            .iter()
            .find(|(r, _)| r == root)
            .map(|(_, c)| *c)
    }

    /// The original's `asdict(SessionMemory)` plus `version`, `saved_at_ms` and
    /// `root_clocks` (an object root → clock).
    pub fn to_original_json(&self) -> Value {
        let clocks: Map<String, Value> = self
            .root_clocks
            .iter()
            .map(|(r, c)| (r.clone(), Value::from(*c)))
            .collect();
        json!({
            "session_id": self.session_id,
            "timestamp": self.timestamp,
            "context_snapshot": self.context_snapshot(),
            "agent_states": self.agent_states(),
            "workflow_progress": self.workflow_progress(),
            "learned_patterns": self.learned_patterns,
            "version": self.version,
            "saved_at_ms": self.saved_at_ms,
            "root_clocks": clocks,
        })
    }

    /// Parses the shape [`SessionVersion::to_original_json`] writes (the original's four
    /// dict/list parts may be absent or `null`; `version` defaults to 1, `saved_at_ms` to
    /// `now_ms`, `timestamp` to `saved_at_ms` as RFC 3339), normalizes and validates it,
    /// reporting every problem. The size limit is left to [`SessionVersion::check`].
    pub fn from_original_json(value: &Value, now_ms: i64) -> Result<Self, RegistryError> {
        let mut problems = Vec::new();
        let Some(obj) = value.as_object() else {
            problems.push(ValidationProblem::new(
                "",
                format!("a session must be a JSON object, not {}", json_kind(value)),
            ));
            return Err(RegistryError::invalid(RecordKind::Session, "", problems));
        };
        for k in obj.keys() {
            if !SESSION_FIELDS.contains(&k.as_str()) {
                problems.push(ValidationProblem::new(
                    k.clone(),
                    format!(
                        "unknown session field; the fields are {}",
                        SESSION_FIELDS.join(", ")
                    ),
                ));
            }
        }
        let mut string = |key: &str| match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                problems.push(ValidationProblem::new(
                    key,
                    format!("must be a string, not {}", json_kind(other)),
                ));
                None
            }
        };
        let id = string("session_id").unwrap_or_default();
        let timestamp = string("timestamp");
        let saved_at_ms = match obj.get("saved_at_ms") {
            None | Some(Value::Null) => now_ms,
            Some(v) => v.as_i64().unwrap_or_else(|| {
                problems.push(ValidationProblem::new(
                    "saved_at_ms",
                    format!("must be a whole number of milliseconds, not {v}"),
                ));
                now_ms
            }),
        };
        let mut s = SessionVersion::new(id, timestamp, saved_at_ms);
        s.version = 1;
        match obj.get("version") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => s.version = n,
                _ => problems.push(ValidationProblem::new(
                    "version",
                    format!("must be a whole number >= 1, not {v}"),
                )),
            },
        }
        for (key, slot) in [
            ("context_snapshot", &mut s.context_snapshot_json),
            ("agent_states", &mut s.agent_states_json),
            ("workflow_progress", &mut s.workflow_progress_json),
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
        s.learned_patterns = string_list(
            obj.get("learned_patterns"),
            "learned_patterns",
            &mut problems,
        );
        match obj.get("root_clocks") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (root, clock) in m {
                    match clock.as_u64() {
                        Some(c) => s.root_clocks.push((root.clone(), c)),
                        None => problems.push(ValidationProblem::new(
                            format!("root_clocks.{root}"),
                            format!("must be a whole clock value >= 0, not {clock}"),
                        )),
                    }
                }
            }
            Some(other) => problems.push(ValidationProblem::new(
                "root_clocks",
                format!(
                    "must be an object mapping each root to its clock, not {}",
                    json_kind(other)
                ),
            )),
        }
        s.normalize();
        if let Err(more) = s.validate() {
            for p in more {
                if !problems.iter().any(|q| covers(&q.path, &p.path)) {
                    problems.push(p);
                }
            }
        }
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(RegistryError::invalid(
                RecordKind::Session,
                s.session_id,
                problems,
            ))
        }
    }
}

fn check_progress(map: &Map<String, Value>, problems: &mut Vec<ValidationProblem>) {
    for (k, v) in map {
        let path = format!("workflow_progress.{k}");
        if k.is_empty() {
            problems.push(ValidationProblem::new(
                "workflow_progress",
                "has an empty workflow id as a key",
            ));
        }
        match v.as_f64() {
            Some(f) if (0.0..=1.0).contains(&f) => {}
            Some(f) => problems.push(ValidationProblem::new(
                path,
                format!("{f} is outside 0..=1; give the fraction done, e.g. 0.75"),
            )),
            None => problems.push(ValidationProblem::new(
                path,
                format!(
                    "must be a number in 0..=1 (fraction done), not {}",
                    json_kind(v)
                ),
            )),
        }
    }
}

/// The versions of ONE session that `policy` deletes at `now_ms`, ascending. A version goes
/// when it is not among the newest `keep_last` (by version number), or when it was saved more
/// than `max_age_ms` before `now_ms`; the latest version is never deleted, whatever its age.
pub fn prune(versions: &[SessionVersionMeta], policy: &RetentionPolicy, now_ms: i64) -> Vec<u64> {
    let mut sorted: Vec<&SessionVersionMeta> = versions.iter().collect();
    sorted.sort_by_key(|v| std::cmp::Reverse(v.version));
    let keep = policy.keep_last.map(|n| n.max(1));
    let mut out: Vec<u64> = sorted
        .iter()
        .enumerate()
        .skip(1) // the latest
        .filter(|(i, v)| {
            let too_many = keep.is_some_and(|n| *i >= n);
            let too_old = policy.max_age_ms.is_some_and(|age| {
                let age = i64::try_from(age).unwrap_or(i64::MAX);
                now_ms.saturating_sub(v.saved_at_ms) > age
            });
            too_many || too_old
        })
        .map(|(_, v)| v.version)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SessionVersion {
        let mut s =
            SessionVersion::new("session_123", Some("2024-05-01T10:00:00.123456".into()), 5);
        s.context_snapshot_json = r#"{"key":"value"}"#.into();
        s.agent_states_json = r#"{"codex":{"ready":true}}"#.into();
        s.workflow_progress_json = r#"{"ui_generation":0.75}"#.into();
        s.learned_patterns = vec!["pattern1".into(), "pattern2".into()];
        s.root_clocks = vec![("/repo".into(), 42)];
        s.version = 1;
        s
    }

    fn paths(s: &SessionVersion) -> Vec<String> {
        s.validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    #[test]
    fn the_originals_example_is_valid() {
        assert_eq!(sample().validate(), Ok(()));
        assert_eq!(sample().check(DEFAULT_MAX_SESSION_BYTES), Ok(()));
        assert_eq!(sample().workflow_ids(), ["ui_generation"]);
        assert_eq!(sample().clock_of("/repo"), Some(42));
        assert_eq!(sample().clock_of("/other"), None);
    }

    #[test]
    fn generated_timestamp() {
        let s = SessionVersion::new("s", None, 1_714_566_896_789);
        assert_eq!(s.timestamp, "2024-05-01T12:34:56.789Z");
        let s = SessionVersion::new("s", Some(String::new()), 0);
        assert_eq!(s.timestamp, "1970-01-01T00:00:00.000Z");
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn validation_rules() {
        let mut s = sample();
        s.session_id = String::new();
        s.timestamp = "yesterday".into();
        s.context_snapshot_json = "[]".into();
        s.agent_states_json = "nope".into();
        s.workflow_progress_json = r#"{"a":1.5,"b":"half","c":0,"d":1}"#.into();
        s.learned_patterns = vec!["ok".into(), " ".into()];
        s.root_clocks = vec![("r".into(), 1), ("r".into(), 2), (String::new(), 0)];
        assert_eq!(
            paths(&s),
            [
                "session_id",
                "timestamp",
                "context_snapshot",
                "agent_states",
                "workflow_progress.a",
                "workflow_progress.b",
                "learned_patterns[1]",
                "root_clocks[1]",
                "root_clocks[2]",
            ]
        );
        for (id, ok) in [
            ("team/alice:2024-05-01", true),
            ("naïve session", true),
            (&*"x".repeat(256), true),
            (&*"x".repeat(257), false),
            ("tab\there", false),
            (" padded", false),
            ("new\nline", false),
        ] {
            let mut s = sample();
            s.session_id = id.to_string();
            assert_eq!(s.validate().is_ok(), ok, "{id:?}");
        }
        let mut s = sample();
        s.workflow_progress_json = r#"{"":0.5}"#.into();
        assert_eq!(paths(&s), ["workflow_progress"]);
    }

    #[test]
    fn size_limit_is_a_distinct_error() {
        let mut s = sample();
        s.context_snapshot_json = format!(r#"{{"blob":"{}"}}"#, "x".repeat(1000));
        let size = s.encoded_size();
        assert!(size > 1000);
        assert_eq!(s.check(size), Ok(()));
        let e = s.check(size - 1).unwrap_err();
        assert_eq!(
            e,
            RegistryError::SessionTooLarge {
                session_id: "session_123".into(),
                size,
                max: size - 1
            }
        );
        assert!(e
            .to_string()
            .contains(&format!("is {size} bytes, over the limit of {}", size - 1)));
        // Size is checked before content: an oversized invalid session is "too large".
        s.timestamp = "bad".into();
        assert!(matches!(
            s.check(10),
            Err(RegistryError::SessionTooLarge { .. })
        ));
        assert!(matches!(
            s.check(u64::MAX),
            Err(RegistryError::Invalid { .. })
        ));
        // encoded_size is at most the bincode size.
        let bytes = bincode::serialize(&s).unwrap();
        assert!(size <= bytes.len() as u64);
    }

    fn metas(list: &[(u64, i64)]) -> Vec<SessionVersionMeta> {
        list.iter()
            .map(|(v, at)| SessionVersionMeta {
                session_id: "s".into(),
                version: *v,
                timestamp: String::new(),
                saved_at_ms: *at,
                encoded_size: 0,
            })
            .collect()
    }

    #[test]
    fn retention() {
        let v = metas(&[(3, 300), (1, 100), (5, 500), (2, 200), (4, 400)]);
        let none = RetentionPolicy::default();
        assert!(prune(&v, &none, 1000).is_empty());
        let keep2 = RetentionPolicy {
            keep_last: Some(2),
            max_age_ms: None,
        };
        assert_eq!(prune(&v, &keep2, 1000), [1, 2, 3]);
        let keep0 = RetentionPolicy {
            keep_last: Some(0),
            max_age_ms: None,
        };
        assert_eq!(prune(&v, &keep0, 1000), [1, 2, 3, 4], "latest always kept");
        let age = RetentionPolicy {
            keep_last: None,
            max_age_ms: Some(250),
        };
        // now 600: saved before 350 are older than 250 ms.
        assert_eq!(prune(&v, &age, 600), [1, 2, 3]);
        // Everything is old, but the latest stays.
        assert_eq!(prune(&v, &age, 10_000), [1, 2, 3, 4]);
        let both = RetentionPolicy {
            keep_last: Some(4),
            max_age_ms: Some(350),
        };
        assert_eq!(prune(&v, &both, 600), [1, 2]);
        assert!(prune(&[], &keep0, 0).is_empty());
        assert!(prune(&metas(&[(7, 0)]), &keep0, i64::MAX).is_empty());
    }

    #[test]
    fn original_json_round_trip() {
        let s = sample();
        let v = s.to_original_json();
        assert_eq!(v["workflow_progress"]["ui_generation"], 0.75);
        assert_eq!(v["root_clocks"]["/repo"], 42);
        let back = SessionVersion::from_original_json(&v, 999).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.to_original_json(), v);
        assert_eq!(back.meta().encoded_size, s.encoded_size());

        // The original's own SessionMemory (no extra fields): defaults filled in.
        let orig = json!({"session_id": "session_123", "timestamp": "2024-05-01T10:00:00",
                          "context_snapshot": {"b": 1, "a": 2}, "agent_states": {},
                          "workflow_progress": {"ui_generation": 0.75},
                          "learned_patterns": ["p"]});
        let s = SessionVersion::from_original_json(&orig, 77).unwrap();
        assert_eq!((s.version, s.saved_at_ms), (1, 77));
        assert_eq!(s.context_snapshot_json, r#"{"a":2,"b":1}"#);

        let bad = json!({"session_id": 5, "context_snapshot": [], "workflow_progress": {"w": 2},
                         "learned_patterns": [1], "root_clocks": {"r": -1}, "version": 0,
                         "extra": true});
        let e = SessionVersion::from_original_json(&bad, 0).unwrap_err();
        let p: Vec<_> = e.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            p,
            [
                "extra",
                "session_id",
                "version",
                "context_snapshot",
                "learned_patterns[0]",
                "root_clocks.r",
                "workflow_progress.w",
            ],
            "{e}"
        );
    }

    #[test]
    fn normalize_sorts_and_canonicalizes() {
        let mut s = sample();
        s.root_clocks = vec![("b".into(), 1), ("a".into(), 2)];
        s.context_snapshot_json = r#"{ "z": 1, "a": 2 }"#.into();
        s.normalize();
        assert_eq!(s.root_clocks, [("a".into(), 2), ("b".into(), 1)]);
        assert_eq!(s.context_snapshot_json, r#"{"a":2,"z":1}"#);
    }

    #[test]
    fn bincode_and_json_round_trip() {
        let s = sample();
        let bytes = bincode::serialize(&s).unwrap();
        assert_eq!(bincode::deserialize::<SessionVersion>(&bytes).unwrap(), s);
        let m = s.meta();
        let bytes = bincode::serialize(&m).unwrap();
        assert_eq!(
            bincode::deserialize::<SessionVersionMeta>(&bytes).unwrap(),
            m
        );
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SessionVersion>(&text).unwrap(), s);
    }
}
