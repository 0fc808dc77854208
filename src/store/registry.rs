//! Persistence of the workflow database: agents, workflow versions, runs, session versions and
//! a few settings, each in its own sled tree, encoded with the one record codec.
//!
//! Key layout (every tree is scanned by prefix):
//!
//! | tree                 | key                          | value                   |
//! |----------------------|------------------------------|-------------------------|
//! | `reg/agents`         | name                         | [`Agent`]               |
//! | `reg/workflows`      | id `\0` version (u64 BE)     | [`WorkflowDefinition`]  |
//! | `reg/runs`           | run id                       | [`Run`]                 |
//! | `reg/sessions`       | id `\0` version (u64 BE)     | [`SessionVersion`]      |
//! | `reg/session_meta`   | id `\0` version (u64 BE)     | [`SessionVersionMeta`]  |
//! | `reg/session_heads`  | id                           | last version (u64)      |
//! | `reg/meta`           | `settings`, `kg_snapshot`    | [`RegistrySettings`], [`GraphSnapshot`] |
//!
//! Names and ids never contain `\0` (validated by the domain), so `id\0` is an exact prefix.
//! Every acknowledged write is flushed before the call returns. Read-modify-write happens in
//! sled transactions (or compare-and-swap on a version key), so concurrent writers never lose
//! each other's updates: two saves of one session get two versions.

use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use super::codec::{decode, encode, CodecError};
use super::{Store, StoreError};
use crate::registry::{
    check_agent_removal, Agent, RegistryError, RetentionPolicy, Run, SessionVersion,
    SessionVersionMeta, StatisticsCarry, WorkflowDefinition, DEFAULT_MAX_SESSION_BYTES,
};

const SETTINGS_KEY: &[u8] = b"settings";
const KG_SNAPSHOT_KEY: &[u8] = b"kg_snapshot";
const DEFAULTS_KEY: &[u8] = b"defaults_installed";
/// Counts acknowledged writes (8 bytes, big-endian): compared with the durable record on open.
const GENERATION_KEY: &[u8] = b"generation";

/// The registry generation stored in `db` (0: never written).
pub(super) fn generation(db: &sled::Db) -> std::result::Result<u64, String> {
    let meta = db.open_tree("reg/meta").map_err(|e| e.to_string())?;
    match meta.get(GENERATION_KEY).map_err(|e| e.to_string())? {
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| "malformed generation".to_string()),
        None => Ok(0),
    }
}

/// Decodes one registry entry as its tree says it should be (`full`: session bodies too).
pub(super) fn check_entry(
    tree: &[u8],
    key: &[u8],
    value: &[u8],
    full: bool,
) -> std::result::Result<(), String> {
    fn ok<T>(r: std::result::Result<T, CodecError>) -> std::result::Result<(), String> {
        r.map(drop).map_err(|e| e.to_string())
    }
    match tree {
        b"reg/agents" => ok(decode::<Agent>(value)),
        b"reg/workflows" => ok(decode::<WorkflowDefinition>(value)),
        b"reg/runs" => ok(decode::<Run>(value)),
        b"reg/sessions" if full => ok(decode::<SessionVersion>(value)),
        b"reg/sessions" => Ok(()),
        b"reg/session_meta" => ok(decode::<SessionVersionMeta>(value)),
        b"reg/session_heads" => ok(decode::<u64>(value)),
        b"reg/meta" => match key {
            SETTINGS_KEY => ok(decode::<RegistrySettings>(value)),
            KG_SNAPSHOT_KEY => ok(decode::<GraphSnapshot>(value)),
            DEFAULTS_KEY => ok(decode::<i64>(value)),
            GENERATION_KEY => (value.len() == 8)
                .then_some(())
                .ok_or_else(|| "malformed generation".to_string()),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Removes every registry entry that cannot be read (sessions included), so the rest can be
/// served; returns each one removed as `tree key`.
pub(super) fn drop_unreadable(db: &sled::Db) -> std::result::Result<Vec<String>, StoreError> {
    let mut dropped = Vec::new();
    for name in db.tree_names() {
        if !name.starts_with(b"reg/") {
            continue;
        }
        let tree = db.open_tree(&name)?;
        let mut bad = Vec::new();
        for item in tree.iter() {
            let Ok((key, value)) = item else {
                // sled stops at what it cannot read: nothing past it can be named.
                break;
            };
            if check_entry(&name, &key, &value, true).is_err() {
                bad.push(key);
            }
        }
        for key in bad {
            tree.remove(&key)?;
            dropped.push(format!(
                "{} {}",
                String::from_utf8_lossy(&name),
                crate::quote::short_bytes(&key)
            ));
        }
    }
    Ok(dropped)
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryStoreError {
    /// The domain refused the change (validation, a finished run, an agent in use, ...).
    #[error(transparent)]
    Domain(#[from] RegistryError),
    /// The record asked for does not exist; the message names it.
    #[error("{0}")]
    NotFound(String),
    /// A record with that key already exists; the message names it.
    #[error("{0}")]
    AlreadyExists(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for RegistryStoreError {
    fn from(e: sled::Error) -> Self {
        RegistryStoreError::Store(e.into())
    }
}

impl From<CodecError> for RegistryStoreError {
    fn from(e: CodecError) -> Self {
        RegistryStoreError::Store(e.into())
    }
}

impl From<TransactionError<RegistryStoreError>> for RegistryStoreError {
    fn from(e: TransactionError<RegistryStoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}

type Result<T> = std::result::Result<T, RegistryStoreError>;
type TxResult<T> = std::result::Result<T, ConflictableTransactionError<RegistryStoreError>>;

/// Aborts a transaction with an error.
fn abort<T>(e: impl Into<RegistryStoreError>) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e.into()))
}

/// Decodes inside a transaction.
fn tx_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> TxResult<T> {
    decode(bytes).or_else(abort)
}

/// Encodes inside a transaction.
fn tx_encode<T: Serialize>(value: &T) -> TxResult<Vec<u8>> {
    encode(value).or_else(abort)
}

/// Settings of the workflow database, kept in the database itself (changed over gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySettings {
    /// Session versions above this size are refused.
    pub max_session_bytes: u64,
    /// Which old session versions are deleted after each save.
    pub retention: RetentionPolicy,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            retention: RetentionPolicy::default(),
        }
    }
}

/// The knowledge graph as recorded by the last `kg rebuild`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSnapshot {
    /// When it was recorded (Unix ms).
    pub at_ms: i64,
    /// Node ids.
    pub nodes: Vec<String>,
    /// Edges as (from, kind, to).
    pub edges: Vec<(String, String, String)>,
}

/// Everything an import writes, already validated.
#[derive(Debug, Clone, Default)]
pub struct ImportSet {
    /// Agents, replacing those of the same name.
    pub agents: Vec<Agent>,
    /// Workflow versions, replacing the same (id, version).
    pub workflows: Vec<WorkflowDefinition>,
    /// Runs, replacing the same run id.
    pub runs: Vec<Run>,
    /// Session versions, replacing the same (id, version).
    pub sessions: Vec<SessionVersion>,
}

/// The workflow database's trees.
#[derive(Clone)]
pub struct RegistryStore {
    db: sled::Db,
    agents: sled::Tree,
    workflows: sled::Tree,
    runs: sled::Tree,
    sessions: sled::Tree,
    session_meta: sled::Tree,
    session_heads: sled::Tree,
    meta: sled::Tree,
    integrity: std::sync::Arc<super::integrity::Integrity>,
    agents_generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// How many times the agents have been written since the database was opened: equal
    /// generations mean equal agents.
    pub fn agents_generation(&self) -> u64 {
        self.agents_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The workflow database's trees (cheap: sled keeps trees open).
    pub fn registry(&self) -> std::result::Result<RegistryStore, StoreError> {
        Ok(RegistryStore {
            db: self.db.clone(),
            agents: self.db.open_tree("reg/agents")?,
            workflows: self.db.open_tree("reg/workflows")?,
            runs: self.db.open_tree("reg/runs")?,
            sessions: self.db.open_tree("reg/sessions")?,
            session_meta: self.db.open_tree("reg/session_meta")?,
            session_heads: self.db.open_tree("reg/session_heads")?,
            meta: self.db.open_tree("reg/meta")?,
            integrity: std::sync::Arc::clone(&self.integrity),
            agents_generation: std::sync::Arc::clone(&self.agents_generation),
        })
    }
}

/// `id\0` followed by the version in big-endian, so versions sort numerically.
fn versioned_key(id: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 9);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The prefix of every version of `id`.
fn versions_prefix(id: &str) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.push(0);
    k
}

fn decode_all<T: serde::de::DeserializeOwned>(
    iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> Result<Vec<T>> {
    iter.map(|item| {
        let (_, v) = item?;
        Ok(decode(&v)?)
    })
    .collect()
}

fn get_u64(tree: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    match tree.get(key)? {
        Some(v) => tx_decode(&v),
        None => Ok(0),
    }
}

impl RegistryStore {
    /// See [`Store::agents_generation`].
    pub fn agents_generation(&self) -> u64 {
        self.agents_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks the agents as changed (after the write, so a reader that sees the new
    /// generation reads the new agents).
    fn agents_changed(&self) {
        self.agents_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Writes everything to disk: called before acknowledging a write.
    /// Bumps the registry generation, flushes, and records the generation as durable: a
    /// database opened later with a lower generation lost acknowledged writes.
    pub fn flush(&self) -> Result<()> {
        self.meta.update_and_fetch(GENERATION_KEY, |old| {
            let n = old
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map_or(0, u64::from_be_bytes);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        super::integrity::flush_durably(&self.db, &self.integrity)?;
        Ok(())
    }

    /// A process-wide unique number (monotonic across restarts), for made-up run ids.
    pub fn unique_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    // ---- settings and the recorded graph ----

    /// The settings (defaults until first set).
    pub fn settings(&self) -> Result<RegistrySettings> {
        match self.meta.get(SETTINGS_KEY)? {
            Some(v) => Ok(decode(&v)?),
            None => Ok(RegistrySettings::default()),
        }
    }

    /// Replaces the settings (durable on return).
    pub fn set_settings(&self, settings: &RegistrySettings) -> Result<()> {
        self.meta.insert(SETTINGS_KEY, encode(settings)?)?;
        self.flush()
    }

    /// The graph recorded by the last rebuild, if any.
    pub fn graph_snapshot(&self) -> Result<Option<GraphSnapshot>> {
        match self.meta.get(KG_SNAPSHOT_KEY)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Records the graph of a rebuild (durable on return).
    pub fn set_graph_snapshot(&self, snapshot: &GraphSnapshot) -> Result<()> {
        self.meta.insert(KG_SNAPSHOT_KEY, encode(snapshot)?)?;
        self.flush()
    }

    /// Installs the original's three default workflows; a default whose latest version has
    /// the same definition is left alone (its statistics are kept). Returns (installed,
    /// unchanged) ids. Durable on return.
    pub fn install_default_workflows(&self, now_ms: i64) -> Result<(Vec<String>, Vec<String>)> {
        let mut installed = Vec::new();
        let mut unchanged = Vec::new();
        for w in crate::registry::default_workflows() {
            let id = w.workflow_id.clone();
            if let Some(latest) = self.workflow(&id, None)? {
                if latest.same_definition(&w) {
                    unchanged.push(id);
                    continue;
                }
            }
            let (_, carry) = self.define_workflow(w, now_ms)?;
            if carry.unchanged() {
                unchanged.push(id);
            } else {
                installed.push(id);
            }
        }
        self.meta.insert(DEFAULTS_KEY, encode(&now_ms)?)?;
        self.flush()?;
        Ok((installed, unchanged))
    }

    /// Installs the default workflows only if they were never installed in this database (so a
    /// workflow redefined or changed later is not overwritten at the next start).
    pub fn install_default_workflows_once(&self, now_ms: i64) -> Result<Vec<String>> {
        if self.meta.contains_key(DEFAULTS_KEY)? {
            return Ok(Vec::new());
        }
        Ok(self.install_default_workflows(now_ms)?.0)
    }

    // ---- agents ----

    /// Every agent, by name.
    pub fn agents(&self) -> Result<Vec<Agent>> {
        decode_all(self.agents.iter())
    }

    /// One agent.
    pub fn agent(&self, name: &str) -> Result<Option<Agent>> {
        match self.agents.get(name.as_bytes())? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Reads, changes and writes one agent atomically: `change` gets the stored agent (if any)
    /// and returns the agent to store (it may run more than once on contention). Returns the
    /// previous and the stored agent; durable on return.
    pub fn upsert_agent<F>(&self, name: &str, change: F) -> Result<(Option<Agent>, Agent)>
    where
        F: Fn(Option<Agent>) -> std::result::Result<Agent, RegistryStoreError>,
    {
        let out = self.agents.transaction(|t| {
            let previous: Option<Agent> = match t.get(name.as_bytes())? {
                Some(v) => Some(tx_decode(&v)?),
                None => None,
            };
            let agent = match change(previous.clone()) {
                Ok(a) => a,
                Err(e) => return abort(e),
            };
            if agent.name != name {
                return abort(RegistryStoreError::AlreadyExists(format!(
                    "an agent stored under {name:?} must be named so, not {:?}",
                    agent.name
                )));
            }
            t.insert(name.as_bytes(), tx_encode(&agent)?)?;
            Ok((previous, agent))
        })?;
        self.agents_changed();
        self.flush()?;
        Ok(out)
    }

    /// Changes an existing agent atomically (NOT_FOUND when there is none); durable on return.
    pub fn update_agent<F>(&self, name: &str, change: F) -> Result<Agent>
    where
        F: Fn(&mut Agent) -> std::result::Result<(), RegistryError>,
    {
        let (_, agent) = self.upsert_agent(name, |prev| {
            let mut agent = prev.ok_or_else(|| unknown_agent(name))?;
            change(&mut agent)?;
            Ok(agent)
        })?;
        Ok(agent)
    }

    /// Removes an agent, refused (naming the workflows) when a workflow uses it, unless
    /// `force`. Returns the removed agent and the workflows that still name it.
    pub fn remove_agent(&self, name: &str, force: bool) -> Result<(Agent, Vec<String>)> {
        let workflows = self.latest_workflows()?;
        check_agent_removal(name, &workflows, force)?;
        let users: Vec<String> = crate::registry::workflows_for_agent(name, &workflows)
            .iter()
            .map(|w| w.workflow_id.clone())
            .collect();
        let removed = self
            .agents
            .remove(name.as_bytes())?
            .ok_or_else(|| unknown_agent(name))?;
        self.agents_changed();
        self.flush()?;
        Ok((decode(&removed)?, users))
    }

    // ---- workflows ----

    /// Every version of one workflow, oldest first.
    pub fn workflow_versions(&self, id: &str) -> Result<Vec<WorkflowDefinition>> {
        decode_all(self.workflows.scan_prefix(versions_prefix(id)))
    }

    /// One version of a workflow (`None`: the latest).
    pub fn workflow(&self, id: &str, version: Option<u64>) -> Result<Option<WorkflowDefinition>> {
        let found = match version {
            Some(v) => self.workflows.get(versioned_key(id, v))?,
            None => match self.workflows.scan_prefix(versions_prefix(id)).next_back() {
                Some(item) => Some(item?.1),
                None => None,
            },
        };
        match found {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Every version of every workflow, by id then version.
    pub fn all_workflow_versions(&self) -> Result<Vec<WorkflowDefinition>> {
        decode_all(self.workflows.iter())
    }

    /// The latest version of each workflow, by id.
    pub fn latest_workflows(&self) -> Result<Vec<WorkflowDefinition>> {
        let mut out: Vec<WorkflowDefinition> = Vec::new();
        for w in self.all_workflow_versions()? {
            match out.last_mut() {
                Some(last) if last.workflow_id == w.workflow_id => *last = w,
                _ => out.push(w),
            }
        }
        Ok(out)
    }

    /// Stores `workflow` (already validated) as the next version of its id, unless the latest
    /// version has the same definition (then nothing is written and its learned statistics
    /// stay, whatever figures were given: clients that define on every start must not reset
    /// them). Says where the stored version's statistics came from. Concurrent definitions
    /// each get their own version. Durable on return.
    pub fn define_workflow(
        &self,
        workflow: WorkflowDefinition,
        now_ms: i64,
    ) -> Result<(WorkflowDefinition, StatisticsCarry)> {
        loop {
            let latest = self.workflow(&workflow.workflow_id, None)?;
            if let Some(l) = &latest {
                if l.same_definition(&workflow) {
                    let carry = StatisticsCarry::Unchanged {
                        version: l.version,
                        runs: l.run_count,
                    };
                    return Ok((l.clone(), carry));
                }
            }
            let (next, carry) = workflow.clone().next_version(latest.as_ref(), now_ms);
            let key = versioned_key(&next.workflow_id, next.version);
            let swapped = self.workflows.compare_and_swap(
                key,
                None as Option<&[u8]>,
                Some(encode(&next)?),
            )?;
            if swapped.is_ok() {
                self.flush()?;
                return Ok((next, carry));
            }
            // Another client took this version number: try again with the next one.
        }
    }

    /// Deletes every version of a workflow. Refused while runs of it are open unless `force`,
    /// which expires them (at `now_ms`, saying why). Finished runs stay as history. Returns
    /// the number of versions deleted and the runs expired. Durable on return.
    pub fn delete_workflow(&self, id: &str, force: bool, now_ms: i64) -> Result<(usize, Vec<Run>)> {
        let keys: Vec<sled::IVec> = self
            .workflows
            .scan_prefix(versions_prefix(id))
            .keys()
            .collect::<std::result::Result<_, _>>()?;
        if keys.is_empty() {
            return Err(RegistryStoreError::NotFound(format!(
                "no workflow {id:?}; `wfdb workflow list` shows the workflows"
            )));
        }
        let open: Vec<Run> = self
            .runs()?
            .into_iter()
            .filter(|r| r.workflow_id == id && !r.is_finished())
            .collect();
        if !open.is_empty() && !force {
            return Err(RegistryStoreError::Domain(RegistryError::WorkflowInUse {
                workflow_id: id.to_string(),
                open_runs: open.iter().map(|r| r.run_id.clone()).collect(),
            }));
        }
        let mut expired = Vec::new();
        for r in open {
            let (run, _) = self.update_run(&r.run_id, |run, _| {
                if !run.is_finished() {
                    run.expire(now_ms, "its workflow was deleted")?;
                }
                Ok(false)
            })?;
            if run.finished_at_ms == Some(now_ms) {
                expired.push(run);
            }
        }
        let mut batch = sled::Batch::default();
        for k in &keys {
            batch.remove(k.clone());
        }
        self.workflows.apply_batch(batch)?;
        self.flush()?;
        Ok((keys.len(), expired))
    }

    // ---- runs ----

    /// Every run, by run id.
    pub fn runs(&self) -> Result<Vec<Run>> {
        decode_all(self.runs.iter())
    }

    /// One run.
    pub fn run(&self, run_id: &str) -> Result<Option<Run>> {
        match self.runs.get(run_id.as_bytes())? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Stores a new run; refused when the id is taken. Durable on return.
    pub fn insert_run(&self, run: &Run) -> Result<()> {
        let swapped = self.runs.compare_and_swap(
            run.run_id.as_bytes(),
            None as Option<&[u8]>,
            Some(encode(run)?),
        )?;
        if swapped.is_err() {
            return Err(RegistryStoreError::AlreadyExists(format!(
                "a run with id {:?} already exists; choose another id or leave it empty",
                run.run_id
            )));
        }
        self.flush()
    }

    /// Changes a run atomically, with its workflow version at hand (read in the same
    /// transaction). `change` may also change the workflow version (a finish updates its
    /// statistics); return `true` to write it back. Durable on return.
    pub fn update_run<F>(&self, run_id: &str, change: F) -> Result<(Run, WorkflowDefinition)>
    where
        F: Fn(&mut Run, &mut WorkflowDefinition) -> std::result::Result<bool, RegistryError>,
    {
        let out = (&self.runs, &self.workflows).transaction(|(runs, workflows)| {
            let Some(bytes) = runs.get(run_id.as_bytes())? else {
                return abort(RegistryStoreError::NotFound(format!(
                    "no run {}; `wfdb run list` shows the runs",
                    crate::quote::short(run_id)
                )));
            };
            let mut run: Run = tx_decode(&bytes)?;
            let wkey = versioned_key(&run.workflow_id, run.workflow_version);
            let Some(wbytes) = workflows.get(&wkey)? else {
                return abort(RegistryStoreError::NotFound(format!(
                    "run {run_id:?} runs workflow {:?} version {}, which no longer exists",
                    run.workflow_id, run.workflow_version
                )));
            };
            let mut workflow: WorkflowDefinition = tx_decode(&wbytes)?;
            let write_workflow = match change(&mut run, &mut workflow) {
                Ok(w) => w,
                Err(e) => return abort(e),
            };
            runs.insert(run_id.as_bytes(), tx_encode(&run)?)?;
            if write_workflow {
                workflows.insert(wkey, tx_encode(&workflow)?)?;
            }
            Ok((run, workflow))
        })?;
        self.flush()?;
        Ok(out)
    }

    /// Expires every open run that has shown no activity for more than `idle_ms` at
    /// `now_ms`; returns the runs expired. Durable on return.
    pub fn expire_idle_runs(&self, now_ms: i64, idle_ms: u64) -> Result<Vec<Run>> {
        let mut out = Vec::new();
        for r in self.runs()? {
            if !r.is_stale(now_ms, idle_ms) {
                continue;
            }
            // Checked again inside the update: a step may have arrived meanwhile.
            let (run, _) = self.update_run(&r.run_id, |run, _| {
                if run.is_stale(now_ms, idle_ms) {
                    run.expire(
                        now_ms,
                        format!(
                            "no progress for more than {}; expired",
                            crate::config::format_duration(std::time::Duration::from_millis(
                                idle_ms
                            ))
                        ),
                    )?;
                }
                Ok(false)
            })?;
            if run.status == crate::registry::RunStatus::Expired
                && run.finished_at_ms == Some(now_ms)
            {
                out.push(run);
            }
        }
        Ok(out)
    }

    /// When the first open run will have shown no activity for more than `idle_ms`
    /// (`None`: no run is open).
    pub fn next_run_expiry(&self, idle_ms: u64) -> Result<Option<i64>> {
        let idle = i64::try_from(idle_ms).unwrap_or(i64::MAX);
        Ok(self
            .runs()?
            .iter()
            .filter(|r| !r.is_finished())
            .map(|r| r.last_activity_ms().saturating_add(idle).saturating_add(1))
            .min())
    }

    // ---- sessions ----

    /// Saves `session` as the next version of its id (assigned here, atomically: concurrent
    /// saves each get their own version), then applies the retention policy. The session must
    /// be validated and size-checked by the caller. Returns the saved version's meta and the
    /// versions retention deleted. Durable on return.
    pub fn save_session(
        &self,
        session: SessionVersion,
        retention: &RetentionPolicy,
        now_ms: i64,
    ) -> Result<(SessionVersionMeta, Vec<u64>)> {
        let id = session.session_id.clone();
        let meta = (&self.sessions, &self.session_meta, &self.session_heads).transaction(
            |(sessions, metas, heads)| {
                let version = get_u64(heads, id.as_bytes())?.saturating_add(1);
                let mut session = session.clone();
                session.version = version;
                let meta = session.meta();
                let key = versioned_key(&id, version);
                sessions.insert(key.clone(), tx_encode(&session)?)?;
                metas.insert(key, tx_encode(&meta)?)?;
                heads.insert(id.as_bytes(), tx_encode(&version)?)?;
                Ok(meta)
            },
        )?;
        self.flush()?;
        let pruned = self.prune_session(&id, retention, now_ms)?;
        Ok((meta, pruned))
    }

    /// Deletes the versions of one session that `retention` says go; returns them.
    pub fn prune_session(
        &self,
        id: &str,
        retention: &RetentionPolicy,
        now_ms: i64,
    ) -> Result<Vec<u64>> {
        if retention.keep_last.is_none() && retention.max_age_ms.is_none() {
            return Ok(Vec::new());
        }
        let history = self.session_history(id)?;
        let doomed = crate::registry::prune(&history, retention, now_ms);
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let mut batch_s = sled::Batch::default();
        let mut batch_m = sled::Batch::default();
        for v in &doomed {
            batch_s.remove(versioned_key(id, *v));
            batch_m.remove(versioned_key(id, *v));
        }
        (&self.sessions, &self.session_meta).transaction(|(s, m)| {
            s.apply_batch(&batch_s)?;
            m.apply_batch(&batch_m)?;
            Ok::<_, ConflictableTransactionError<RegistryStoreError>>(())
        })?;
        self.agents_changed();
        self.flush()?;
        Ok(doomed)
    }

    /// Applies `retention` to every session now; returns how many versions went.
    pub fn prune_all_sessions(&self, retention: &RetentionPolicy, now_ms: i64) -> Result<u64> {
        let mut n = 0;
        for (meta, _) in self.latest_session_metas()? {
            n += self
                .prune_session(&meta.session_id, retention, now_ms)?
                .len() as u64;
        }
        Ok(n)
    }

    /// One version of a session (`None`: the latest).
    pub fn session(&self, id: &str, version: Option<u64>) -> Result<Option<SessionVersion>> {
        let found = match version {
            Some(v) => self.sessions.get(versioned_key(id, v))?,
            None => match self.sessions.scan_prefix(versions_prefix(id)).next_back() {
                Some(item) => Some(item?.1),
                None => None,
            },
        };
        match found {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The versions of one session, oldest first, without their payload.
    pub fn session_history(&self, id: &str) -> Result<Vec<SessionVersionMeta>> {
        decode_all(self.session_meta.scan_prefix(versions_prefix(id)))
    }

    /// The latest version's meta of each session whose id starts with `prefix`, with the
    /// number of versions it has; by id.
    pub fn latest_session_metas_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(SessionVersionMeta, u64)>> {
        let mut out: Vec<(SessionVersionMeta, u64)> = Vec::new();
        for item in self.session_meta.scan_prefix(prefix.as_bytes()) {
            let (_, v) = item?;
            let meta: SessionVersionMeta = decode(&v)?;
            match out.last_mut() {
                Some((last, n)) if last.session_id == meta.session_id => {
                    *last = meta;
                    *n += 1;
                }
                _ => out.push((meta, 1)),
            }
        }
        Ok(out)
    }

    /// The latest version's meta of every session, with its version count.
    pub fn latest_session_metas(&self) -> Result<Vec<(SessionVersionMeta, u64)>> {
        self.latest_session_metas_with_prefix("")
    }

    /// The latest version of every session (for the knowledge graph).
    pub fn latest_sessions(&self) -> Result<Vec<SessionVersion>> {
        let mut out = Vec::new();
        for (meta, _) in self.latest_session_metas()? {
            if let Some(s) = self.session(&meta.session_id, Some(meta.version))? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Every version of every session, by id then version.
    pub fn all_session_versions(&self) -> Result<Vec<SessionVersion>> {
        decode_all(self.sessions.iter())
    }

    /// Deletes one version (`Some`) or every version of a session; returns how many went.
    /// NOT_FOUND when nothing matched. Durable on return.
    pub fn delete_session(&self, id: &str, version: Option<u64>) -> Result<u64> {
        let versions: Vec<u64> = match version {
            Some(v) => vec![v],
            None => self
                .session_history(id)?
                .into_iter()
                .map(|m| m.version)
                .collect(),
        };
        let whole = version.is_none();
        let deleted = (&self.sessions, &self.session_meta, &self.session_heads).transaction(
            |(s, m, h)| {
                let mut n = 0u64;
                for v in &versions {
                    let key = versioned_key(id, *v);
                    if s.remove(key.clone())?.is_some() {
                        n += 1;
                    }
                    m.remove(key)?;
                }
                if whole {
                    h.remove(id.as_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<RegistryStoreError>>(n)
            },
        )?;
        if deleted == 0 {
            return Err(RegistryStoreError::NotFound(match version {
                Some(v) => format!(
                    "session {id:?} has no version {v}; `wfdb session history {id}` lists them"
                ),
                None => format!(
                    "no session {}; `wfdb session list` shows the sessions",
                    crate::quote::short(id)
                ),
            }));
        }
        self.flush()?;
        Ok(deleted)
    }

    // ---- import ----

    /// Writes every record of `set` in one transaction: all or nothing. Records with the same
    /// key are replaced; others stay. Durable on return.
    pub fn import(&self, set: &ImportSet) -> Result<()> {
        let encoded = EncodedImport::new(set)?;
        let trees = [
            &self.agents,
            &self.workflows,
            &self.runs,
            &self.sessions,
            &self.session_meta,
            &self.session_heads,
        ];
        trees[..].transaction(|t| {
            for (k, v) in &encoded.agents {
                t[0].insert(k.as_slice(), v.as_slice())?;
            }
            for (k, v) in &encoded.workflows {
                t[1].insert(k.as_slice(), v.as_slice())?;
            }
            for (k, v) in &encoded.runs {
                t[2].insert(k.as_slice(), v.as_slice())?;
            }
            for (k, v, m) in &encoded.sessions {
                t[3].insert(k.as_slice(), v.as_slice())?;
                t[4].insert(k.as_slice(), m.as_slice())?;
            }
            for (id, version) in &encoded.heads {
                let head = get_u64(&t[5], id.as_bytes())?;
                if *version > head {
                    t[5].insert(id.as_bytes(), tx_encode(version)?)?;
                }
            }
            Ok::<_, ConflictableTransactionError<RegistryStoreError>>(())
        })?;
        self.agents_changed();
        self.flush()
    }
}

/// An import's records, encoded before the transaction starts.
struct EncodedImport {
    agents: Vec<(Vec<u8>, Vec<u8>)>,
    workflows: Vec<(Vec<u8>, Vec<u8>)>,
    runs: Vec<(Vec<u8>, Vec<u8>)>,
    sessions: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    heads: Vec<(String, u64)>,
}

impl EncodedImport {
    fn new(set: &ImportSet) -> Result<EncodedImport> {
        let mut heads: std::collections::BTreeMap<String, u64> = Default::default();
        let mut sessions = Vec::with_capacity(set.sessions.len());
        for s in &set.sessions {
            sessions.push((
                versioned_key(&s.session_id, s.version),
                encode(s)?,
                encode(&s.meta())?,
            ));
            let h = heads.entry(s.session_id.clone()).or_default();
            *h = (*h).max(s.version);
        }
        Ok(EncodedImport {
            agents: set
                .agents
                .iter()
                .map(|a| Ok((a.name.as_bytes().to_vec(), encode(a)?)))
                .collect::<Result<_>>()?,
            workflows: set
                .workflows
                .iter()
                .map(|w| Ok((versioned_key(&w.workflow_id, w.version), encode(w)?)))
                .collect::<Result<_>>()?,
            runs: set
                .runs
                .iter()
                .map(|r| Ok((r.run_id.as_bytes().to_vec(), encode(r)?)))
                .collect::<Result<_>>()?,
            sessions,
            heads: heads.into_iter().collect(),
        })
    }
}

fn unknown_agent(name: &str) -> RegistryStoreError {
    RegistryStoreError::NotFound(format!(
        "no agent {}; `wfdb agent list` shows the registered agents",
        crate::quote::short(name)
    ))
}

impl From<UnabortableTransactionError> for RegistryStoreError {
    fn from(e: UnabortableTransactionError) -> Self {
        match e {
            UnabortableTransactionError::Storage(e) => e.into(),
            UnabortableTransactionError::Conflict => {
                RegistryStoreError::Store(StoreError::Sled("transaction conflict".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::default_workflows;

    fn open() -> (tempfile::TempDir, RegistryStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let reg = store.registry().unwrap();
        (dir, reg)
    }

    #[test]
    fn workflow_versions_and_unchanged_redefinition() {
        let (_d, reg) = open();
        let w = default_workflows().remove(0);
        let (v1, carry) = reg.define_workflow(w.clone(), 5).unwrap();
        assert_eq!((v1.version, carry), (1, StatisticsCarry::First));
        let (again, carry) = reg.define_workflow(w.clone(), 6).unwrap();
        assert_eq!(again.version, 1);
        assert!(carry.unchanged());
        let mut w2 = w.clone();
        w2.description = "changed".into();
        let (v2, _) = reg.define_workflow(w2, 7).unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(reg.workflow_versions(&w.workflow_id).unwrap().len(), 2);
        assert_eq!(
            reg.workflow(&w.workflow_id, None).unwrap().unwrap().version,
            2
        );
        assert_eq!(reg.latest_workflows().unwrap().len(), 1);
    }

    /// Finishes one run of the latest version of `id` (started at `at`, lasting `secs`).
    fn finished_run(reg: &RegistryStore, id: &str, run_id: &str, success: bool, secs: u64) {
        let w = reg.workflow(id, None).unwrap().unwrap();
        reg.insert_run(&Run::start(run_id, &w, 1)).unwrap();
        reg.update_run(run_id, |run, w| {
            let secs = run.finish(success, Some(secs * 1000), String::new(), 2)?;
            crate::registry::apply_outcome(w, success, secs)?;
            Ok(true)
        })
        .unwrap();
    }

    #[test]
    fn redefinitions_keep_learned_statistics_unless_the_work_changed() {
        let (_d, reg) = open();
        let w = default_workflows().remove(0);
        let id = w.workflow_id.clone();
        reg.define_workflow(w.clone(), 1).unwrap();
        finished_run(&reg, &id, "r1", false, 5);
        let learned = reg.workflow(&id, None).unwrap().unwrap();
        assert_eq!(learned.run_count, 1);
        assert!(learned.success_rate < w.success_rate);

        // The same definition with its original figures (what a client defining on every
        // start sends): no new version, nothing reset.
        let (same, carry) = reg.define_workflow(w.clone(), 3).unwrap();
        assert_eq!(
            carry,
            StatisticsCarry::Unchanged {
                version: 1,
                runs: 1
            }
        );
        assert_eq!(same, learned);

        // A new description: a new version that keeps what was learned.
        let mut described = w.clone();
        described.description = "clearer".into();
        let (v2, carry) = reg.define_workflow(described.clone(), 4).unwrap();
        assert_eq!(
            carry,
            StatisticsCarry::KeptFrom {
                version: 1,
                runs: 1
            }
        );
        assert_eq!(
            (v2.version, v2.run_count, v2.success_rate, v2.estimated_time),
            (2, 1, learned.success_rate, learned.estimated_time)
        );

        // Other steps: the figures given; version 2 keeps its own.
        let mut reworked = described;
        reworked.steps.pop();
        reworked.success_rate = 0.5;
        let (v3, carry) = reg.define_workflow(reworked, 5).unwrap();
        assert_eq!(
            carry,
            StatisticsCarry::Given {
                previous_version: 2,
                previous_runs: 1
            }
        );
        assert_eq!((v3.version, v3.run_count, v3.success_rate), (3, 0, 0.5));
        assert_eq!(reg.workflow(&id, Some(2)).unwrap().unwrap(), v2);
    }

    #[test]
    fn deleting_a_workflow_is_refused_while_runs_are_open_unless_forced() {
        let (_d, reg) = open();
        let w = default_workflows().remove(0);
        let id = w.workflow_id.clone();
        reg.define_workflow(w.clone(), 1).unwrap();
        let mut w2 = w.clone();
        w2.description = "v2".into();
        reg.define_workflow(w2, 2).unwrap();
        finished_run(&reg, &id, "done", true, 1);
        let latest = reg.workflow(&id, None).unwrap().unwrap();
        reg.insert_run(&Run::start("open", &latest, 3)).unwrap();

        match reg.delete_workflow(&id, false, 4) {
            Err(RegistryStoreError::Domain(RegistryError::WorkflowInUse { open_runs, .. })) => {
                assert_eq!(open_runs, vec!["open".to_string()])
            }
            other => panic!("expected WorkflowInUse, got {other:?}"),
        }
        assert_eq!(reg.workflow_versions(&id).unwrap().len(), 2);

        let (versions, expired) = reg.delete_workflow(&id, true, 5).unwrap();
        assert_eq!(versions, 2);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].run_id, "open");
        assert_eq!(expired[0].status, crate::registry::RunStatus::Expired);
        assert!(reg.workflow(&id, None).unwrap().is_none());
        // Finished runs stay as history.
        assert!(reg.run("done").unwrap().is_some());
        assert!(matches!(
            reg.delete_workflow(&id, false, 6),
            Err(RegistryStoreError::NotFound(_))
        ));
        // Other workflows are untouched.
        reg.define_workflow(default_workflows().remove(1), 7)
            .unwrap();
        assert_eq!(reg.latest_workflows().unwrap().len(), 1);
    }

    #[test]
    fn concurrent_session_saves_get_distinct_versions() {
        let (_d, reg) = open();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    (0..5)
                        .map(|_| {
                            let s = SessionVersion::new("s", None, 1);
                            reg.save_session(s, &RetentionPolicy::default(), 1)
                                .unwrap()
                                .0
                                .version
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1..=40).collect::<Vec<_>>());
        assert_eq!(reg.session_history("s").unwrap().len(), 40);
        let pruned = reg
            .prune_session(
                "s",
                &RetentionPolicy {
                    keep_last: Some(3),
                    max_age_ms: None,
                },
                1,
            )
            .unwrap();
        assert_eq!(pruned.len(), 37);
        assert_eq!(reg.session("s", None).unwrap().unwrap().version, 40);
        assert_eq!(reg.delete_session("s", None).unwrap(), 3);
        assert!(reg.session("s", None).unwrap().is_none());
    }
}
