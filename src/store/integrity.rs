//! Damage and rollback: what the database holds compared with the durable record, a verify
//! pass over every tree, the repair made on open when either finds something, and the damage
//! report kept until the user acknowledges it.
//!
//! The repair never serves an old clock as exact: it takes a new instance id, empties every
//! root's catalog (rebuilt from disk by the start-up reconcile) with its clock set above any
//! clock handed out before and every older clock marked unanswerable, restores roots the list
//! lost from the durable record, and keeps every registry entry that still decodes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::durable::{self, DurableRecord, DurableRoot, Finding, Observed, RecordState};
use super::{
    registry, RootEntry, RootMeta, StoreError, Tombstone, CLOCK_INDEX_FROM_KEY, CLOCK_INDEX_PREFIX,
    FILE_PREFIX, META_INSTANCE, META_ROOTS, META_SCHEMA, PRUNED_THROUGH_KEY, ROOT_META_KEY,
    TOMBSTONE_PREFIX,
};
use crate::catalog::FileRecord;

/// The damage reports not yet acknowledged, in the database folder.
pub const DAMAGE_FILE: &str = "wfdb-damage.json";
/// Key in `meta` saying a durable record has been written for this database.
const META_DURABLE: &[u8] = b"durable_record";
/// Prefix of the trees holding a root's records.
const ROOT_TREE_PREFIX: &[u8] = b"root/";

type Result<T> = std::result::Result<T, StoreError>;

/// How deep a verify pass reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Every entry of the metadata and registry trees through sled's iterator and decoded
    /// (session bodies excepted), and each root's bookkeeping (clock, pruned mark, index
    /// start); not the catalog records. Cheap enough for every start.
    Light,
    /// Also every catalog record, tombstone and session body decoded.
    Full,
}

/// What was found and done when damage was detected on open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageReport {
    /// When it was detected (ms since the epoch).
    pub detected_ms: i64,
    /// Each sign of damage, as a sentence.
    pub findings: Vec<String>,
    /// The instance id before (empty when the database had lost it).
    pub previous_instance_id: String,
    /// The new instance id: every client clock of the old one is answered as a fresh instance.
    pub instance_id: String,
    /// Roots whose catalog was emptied and rebuilt from disk.
    pub catalog_rebuilt: Vec<String>,
    /// What happened to agents, workflows, runs and sessions, as a sentence.
    pub registry: String,
    /// Registry entries that could not be read and were removed (tree and key).
    pub registry_entries_dropped: Vec<String>,
}

/// What an offline check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    /// Damage found at an earlier start and not yet acknowledged.
    pub pending: Vec<DamageReport>,
    /// Entries read by the verify pass.
    pub entries_checked: u64,
}

/// The store's side of the durable record: the last record written and the damage reports.
pub(crate) struct Integrity {
    dir: PathBuf,
    last: Mutex<DurableRecord>,
    reports: Mutex<Vec<DamageReport>>,
}

impl Integrity {
    /// Writes what `marks` (read before a successful flush) made durable.
    fn advance(&self, marks: &DurableRecord) -> Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let next = last.advanced(marks);
        if next == *last && self.dir.join(durable::FILE_NAME).exists() {
            return Ok(());
        }
        durable::write(&self.dir, &next).map_err(|e| {
            StoreError::Sled(format!(
                "cannot write the durable record in {}: {e}",
                self.dir.display()
            ))
        })?;
        *last = next;
        Ok(())
    }

    /// State for a store opened without the check (a rescue copy): nothing recorded yet.
    pub(crate) fn detached(dir: &Path) -> Integrity {
        Integrity {
            dir: dir.to_path_buf(),
            last: Mutex::new(DurableRecord::default()),
            reports: Mutex::new(read_reports(dir)),
        }
    }

    /// Damage reports not yet acknowledged.
    pub(crate) fn reports(&self) -> Vec<DamageReport> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the damage reports; returns how many there were.
    pub(crate) fn acknowledge(&self) -> Result<usize> {
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let n = remove_reports(&self.dir)?.max(reports.len());
        reports.clear();
        Ok(n)
    }

    /// Forgets a root's durable clock (its records were deleted).
    pub(crate) fn forget_root(&self, id: &str) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .roots
            .retain(|r| r.id != id);
    }

    /// The record last written.
    pub(crate) fn last(&self) -> DurableRecord {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Flushes sled and then records what reached disk. The marks are read before the flush:
/// everything they name was written before it, so it is on disk once the flush returns.
pub(crate) fn flush_durably(db: &sled::Db, integrity: &Integrity) -> Result<()> {
    let (seen, _) = observe(db)?;
    db.flush()?;
    integrity.advance(&record_of(&seen))
}

fn record_of(seen: &Observed) -> DurableRecord {
    DurableRecord {
        instance_id: seen.instance_id.clone().unwrap_or_default(),
        roots: seen.roots.clone(),
        registry_generation: seen.registry_generation,
    }
}

/// Reads what the database holds: instance id, the roots list with each root's clock, the
/// registry generation. Entries that do not decode are findings (and count as absent).
pub(crate) fn observe(db: &sled::Db) -> Result<(Observed, Vec<Finding>)> {
    let meta = db.open_tree("meta")?;
    let mut findings = Vec::new();
    let mut unreadable = |tree: &str, detail: String| {
        findings.push(Finding::Unreadable {
            tree: tree.into(),
            detail,
        })
    };
    let instance_id = meta
        .get(META_INSTANCE)?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let entries: Vec<RootEntry> = match meta.get(META_ROOTS)? {
        Some(v) => decode(&v).unwrap_or_else(|e| {
            unreadable("meta", format!("the roots list: {e}"));
            Vec::new()
        }),
        None => Vec::new(),
    };
    let mut roots = Vec::new();
    for entry in entries {
        let tree = db.open_tree(root_tree_name(&entry.id))?;
        let clock = match tree.get(ROOT_META_KEY)? {
            Some(v) => match decode::<RootMeta>(&v) {
                Ok(m) => m.clock,
                Err(e) => {
                    unreadable(&root_tree_name(&entry.id), format!("the root's clock: {e}"));
                    0
                }
            },
            None => 0,
        };
        roots.push(DurableRoot {
            id: entry.id,
            path: entry.path,
            clock,
        });
    }
    roots.sort_by(|a, b| a.id.cmp(&b.id));
    let registry_generation = match registry::generation(db) {
        Ok(g) => g,
        Err(e) => {
            unreadable("reg/meta", format!("the registry generation: {e}"));
            0
        }
    };
    Ok((
        Observed {
            instance_id,
            roots,
            registry_generation,
            record_expected: meta.get(META_DURABLE)?.is_some(),
        },
        findings,
    ))
}

fn root_tree_name(id: &str) -> String {
    format!("root/{id}")
}

/// Reads the durable record in `dir` as a state to compare with.
fn record_state(dir: &Path) -> RecordState {
    match durable::read(dir) {
        Ok(None) => RecordState::Absent,
        Ok(Some(r)) => RecordState::Present(r),
        Err(e) => RecordState::Damaged(e.to_string()),
    }
}

/// Reads every tree as deep as `depth` says; returns what could not be read and how many
/// entries were.
pub(crate) fn verify(db: &sled::Db, depth: Depth) -> (Vec<Finding>, u64) {
    let mut findings = Vec::new();
    let mut checked = 0u64;
    for name in db.tree_names() {
        let shown = String::from_utf8_lossy(&name).into_owned();
        if name.as_ref() == b"__sled__default" {
            continue;
        }
        let tree = match db.open_tree(&name) {
            Ok(t) => t,
            Err(e) => {
                findings.push(Finding::Unreadable {
                    tree: shown,
                    detail: e.to_string(),
                });
                continue;
            }
        };
        if depth == Depth::Light && name.starts_with(ROOT_TREE_PREFIX) {
            // A catalog is rebuilt from disk anyway: at start-up only its bookkeeping is
            // read (iterating 50k records would cost a third of a warm restart).
            for key in [ROOT_META_KEY, PRUNED_THROUGH_KEY, CLOCK_INDEX_FROM_KEY] {
                let outcome = match tree.get(key) {
                    Ok(Some(value)) => {
                        checked += 1;
                        check_entry(&name, key, &value, depth)
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(detail) = outcome {
                    findings.push(Finding::Unreadable {
                        tree: shown.clone(),
                        detail: format!("key {}: {detail}", show_key(key)),
                    });
                }
            }
            continue;
        }
        for item in tree.iter() {
            let (key, value) = match item {
                Ok(kv) => kv,
                Err(e) => {
                    findings.push(Finding::Unreadable {
                        tree: shown.clone(),
                        detail: format!("sled cannot iterate it: {e}"),
                    });
                    break;
                }
            };
            checked += 1;
            if let Err(detail) = check_entry(&name, &key, &value, depth) {
                findings.push(Finding::Unreadable {
                    tree: shown.clone(),
                    detail: format!("key {}: {detail}", show_key(&key)),
                });
            }
        }
    }
    (findings, checked)
}

/// A key as a person can read it.
fn show_key(key: &[u8]) -> String {
    // A key holds a file path (up to the file system's limit): a finding quotes a prefix.
    crate::quote::short_bytes(key)
}

/// Decodes one entry as the tree it is in says it should be.
fn check_entry(
    tree: &[u8],
    key: &[u8],
    value: &[u8],
    depth: Depth,
) -> std::result::Result<(), String> {
    let e = |e: super::codec::CodecError| e.to_string();
    if tree == b"meta" {
        return match key {
            k if k == META_SCHEMA => (value.len() == 4)
                .then_some(())
                .ok_or_else(|| "malformed schema marker".to_string()),
            k if k == META_ROOTS => decode::<Vec<RootEntry>>(value).map(drop).map_err(e),
            _ => Ok(()),
        };
    }
    if tree.starts_with(ROOT_TREE_PREFIX) {
        return match key {
            k if k == ROOT_META_KEY => decode::<RootMeta>(value).map(drop).map_err(e),
            k if k == PRUNED_THROUGH_KEY || k == CLOCK_INDEX_FROM_KEY => {
                decode::<u64>(value).map(drop).map_err(e)
            }
            k if k.starts_with(CLOCK_INDEX_PREFIX) => (k.len() >= CLOCK_INDEX_PREFIX.len() + 8)
                .then_some(())
                .ok_or_else(|| "clock index key too short".to_string()),
            _ if depth == Depth::Light => Ok(()),
            k if k.starts_with(FILE_PREFIX) => decode::<FileRecord>(value).map(drop).map_err(e),
            k if k.starts_with(TOMBSTONE_PREFIX) => Tombstone::decode(value)
                .map(drop)
                .map_err(|x| x.to_string()),
            _ => Err("unknown key".into()),
        };
    }
    if tree.starts_with(b"reg/") {
        return registry::check_entry(tree, key, value, depth == Depth::Full);
    }
    Ok(())
}

/// Reads the pending damage reports in `dir`.
pub(crate) fn read_reports(dir: &Path) -> Vec<DamageReport> {
    match std::fs::read(dir.join(DAMAGE_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            // Unreadable reports still mean damage was seen: keep saying so.
            vec![DamageReport {
                detected_ms: 0,
                findings: vec![format!(
                    "the damage report {DAMAGE_FILE} is unreadable: {e}"
                )],
                previous_instance_id: String::new(),
                instance_id: String::new(),
                catalog_rebuilt: Vec::new(),
                registry: "unknown".into(),
                registry_entries_dropped: Vec::new(),
            }]
        }),
        Err(_) => Vec::new(),
    }
}

fn write_reports(dir: &Path, reports: &[DamageReport]) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(reports)
        .map_err(|e| StoreError::Sled(format!("encoding the damage report: {e}")))?;
    durable::write_atomically(dir, DAMAGE_FILE, &bytes).map_err(|e| {
        StoreError::Sled(format!(
            "cannot write the damage report in {}: {e}",
            dir.display()
        ))
    })
}

/// Removes the damage reports in `dir` (offline acknowledgement); returns how many there were.
pub fn remove_reports(dir: &Path) -> Result<usize> {
    let n = read_reports(dir).len();
    match std::fs::remove_file(dir.join(DAMAGE_FILE)) {
        Ok(()) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StoreError::Sled(format!(
            "cannot remove the damage report in {}: {e}",
            dir.display()
        ))),
    }
}

/// Checks a freshly opened database against its durable record and repairs it when anything is
/// wrong. Returns the store's integrity state and the instance id to serve.
pub(crate) fn open_checked(
    db: &sled::Db,
    dir: &Path,
    salvaged: Option<Finding>,
) -> Result<(Integrity, String)> {
    let meta = db.open_tree("meta")?;
    let record = record_state(dir);
    let record_found = record.clone();
    let (seen, mut findings) = observe(db)?;
    findings.extend(salvaged);
    findings.extend(durable::compare(&record, &seen));
    let started = std::time::Instant::now();
    let (unreadable, entries) = verify(db, Depth::Light);
    tracing::info!(
        entries,
        ms = started.elapsed().as_millis() as u64,
        findings = findings.len() + unreadable.len(),
        "database checked against its durable record"
    );
    findings.extend(unreadable);
    let findings_empty = findings.is_empty();
    let mut reports = read_reports(dir);
    let (instance_id, written) = if findings.is_empty() {
        let id = match &seen.instance_id {
            Some(id) => id.clone(),
            None => {
                let id = super::new_instance_id();
                meta.insert(META_INSTANCE, id.as_bytes())?;
                id
            }
        };
        (id, record_of(&seen))
    } else {
        let record = match &record {
            RecordState::Present(r) => Some(r),
            _ => None,
        };
        let (report, written) = repair(db, dir, &seen, record, &findings)?;
        tracing::error!(
            db = %dir.display(),
            findings = ?report.findings,
            previous_instance = %report.previous_instance_id,
            instance = %report.instance_id,
            registry = %report.registry,
            "DATABASE DAMAGE DETECTED: the catalog is rebuilt from disk under a new instance id \
             (every client clock is answered as a fresh instance); see `wfdb doctor`, and \
             acknowledge with `wfdb doctor --ack-damage`"
        );
        let id = report.instance_id.clone();
        reports.push(report);
        write_reports(dir, &reports)?;
        (id, written)
    };
    db.flush()?;
    let mut record = written;
    record.instance_id = instance_id.clone();
    // A healthy restart finds the record it would write: no write, no fsync.
    let unchanged = match &record_found {
        RecordState::Present(r) if findings_empty => r.clone(),
        _ => DurableRecord::default(),
    };
    let integrity = Integrity {
        dir: dir.to_path_buf(),
        last: Mutex::new(unchanged),
        reports: Mutex::new(reports),
    };
    integrity.advance(&record)?;
    // Only once the record exists does the database say to expect one (a crash in between
    // must not read as a lost record).
    if !seen.record_expected || !findings_empty {
        meta.insert(META_DURABLE, &b"1"[..])?;
        db.flush()?;
    }
    Ok((integrity, instance_id))
}

/// Repairs a damaged database (see the module's doc). Returns the report and the record of
/// what the repaired database holds.
fn repair(
    db: &sled::Db,
    dir: &Path,
    seen: &Observed,
    record: Option<&DurableRecord>,
    findings: &[Finding],
) -> Result<(DamageReport, DurableRecord)> {
    let meta = db.open_tree("meta")?;
    let instance_id = super::new_instance_id();
    // The roots list: what the database still has, plus what only the record remembers.
    let mut roots: Vec<DurableRoot> = seen.roots.clone();
    if let Some(rec) = record {
        for r in &rec.roots {
            match roots.iter_mut().find(|x| x.id == r.id) {
                Some(x) => x.clock = x.clock.max(r.clock),
                None => roots.push(r.clone()),
            }
        }
    }
    roots.sort_by(|a, b| a.id.cmp(&b.id));
    let entries: Vec<RootEntry> = roots
        .iter()
        .map(|r| RootEntry {
            path: r.path.clone(),
            id: r.id.clone(),
            added_ns: crate::catalog::scan::now_ns(),
        })
        .collect();
    meta.insert(META_ROOTS, encode(&entries)?)?;
    // Every root's catalog is emptied (the start-up reconcile rebuilds it from disk); its
    // clock restarts above every clock handed out before, which are all marked unanswerable.
    let mut rebuilt = Vec::new();
    for name in db.tree_names() {
        if !name.starts_with(ROOT_TREE_PREFIX) {
            continue;
        }
        let id = String::from_utf8_lossy(&name[ROOT_TREE_PREFIX.len()..]).into_owned();
        let old_clock = {
            let tree = db.open_tree(&name)?;
            tree.get(ROOT_META_KEY)
                .ok()
                .flatten()
                .and_then(|v| decode::<RootMeta>(&v).ok())
                .map_or(0, |m| m.clock)
        };
        let durable_clock = roots.iter().find(|r| r.id == id).map_or(0, |r| r.clock);
        db.drop_tree(&name)?;
        let _ = std::fs::remove_file(dir.join(format!("wfdb-heads-{id}.bin")));
        let floor = old_clock.max(durable_clock);
        let tree = db.open_tree(&name)?;
        if floor > 0 {
            tree.insert(
                ROOT_META_KEY,
                encode(&RootMeta {
                    clock: floor,
                    last_scan: None,
                })?,
            )?;
            tree.insert(PRUNED_THROUGH_KEY, encode(&(floor + 1))?)?;
        }
        if let Some(r) = roots.iter_mut().find(|r| r.id == id) {
            r.clock = floor;
            rebuilt.push(String::from_utf8_lossy(&r.path).into_owned());
        }
    }
    for r in &roots {
        // A listed root without a tree at all: start its clock above the durable one too.
        if !rebuilt.contains(&String::from_utf8_lossy(&r.path).into_owned()) {
            let tree = db.open_tree(root_tree_name(&r.id))?;
            if r.clock > 0 {
                tree.insert(
                    ROOT_META_KEY,
                    encode(&RootMeta {
                        clock: r.clock,
                        last_scan: None,
                    })?,
                )?;
                tree.insert(PRUNED_THROUGH_KEY, encode(&(r.clock + 1))?)?;
            }
            rebuilt.push(String::from_utf8_lossy(&r.path).into_owned());
        }
    }
    let dropped = registry::drop_unreadable(db)?;
    let registry = registry_summary(seen, record, findings, &dropped);
    meta.insert(META_INSTANCE, instance_id.as_bytes())?;
    let report = DamageReport {
        detected_ms: crate::catalog::scan::now_ns() / 1_000_000,
        findings: findings.iter().map(ToString::to_string).collect(),
        previous_instance_id: seen.instance_id.clone().unwrap_or_default(),
        instance_id: instance_id.clone(),
        catalog_rebuilt: rebuilt,
        registry,
        registry_entries_dropped: dropped,
    };
    let written = DurableRecord {
        instance_id,
        roots,
        registry_generation: seen.registry_generation,
    };
    Ok((report, written))
}

/// What happened to the workflow database, as a sentence.
fn registry_summary(
    seen: &Observed,
    record: Option<&DurableRecord>,
    findings: &[Finding],
    dropped: &[String],
) -> String {
    let mut out = match (findings.iter().find_map(|f| match f {
        Finding::RegistryRolledBack { durable, found } => Some((*durable, *found)),
        _ => None,
    }), record) {
        (Some((durable, found)), _) => format!(
            "ROLLED BACK from generation {durable} to {found}: the last {} acknowledged write(s) to agents, workflows, runs or sessions are lost; what remains was kept",
            durable - found
        ),
        (None, Some(_)) => format!(
            "intact: generation {} as acknowledged",
            seen.registry_generation
        ),
        (None, None) => format!(
            "kept as found (generation {}); without a readable durable record, lost writes cannot be ruled out",
            seen.registry_generation
        ),
    };
    if !dropped.is_empty() {
        out.push_str(&format!(
            "; {} unreadable entr{} removed",
            dropped.len(),
            if dropped.len() == 1 { "y" } else { "ies" }
        ));
    }
    out
}

/// Checks the database in `dir` without repairing it: the durable record comparison and a
/// verify pass at `depth`.
pub(crate) fn check(db: &sled::Db, dir: &Path, depth: Depth) -> Result<CheckReport> {
    let record = record_state(dir);
    let (seen, mut findings) = observe(db)?;
    findings.extend(durable::compare(&record, &seen));
    let (unreadable, entries_checked) = verify(db, depth);
    findings.extend(unreadable);
    Ok(CheckReport {
        findings,
        pending: read_reports(dir),
        entries_checked,
    })
}

/// Checks a running store: the database against the record last written (it can only be
/// ahead) and a verify pass at `depth`.
pub(crate) fn check_live(
    db: &sled::Db,
    integrity: &Integrity,
    depth: Depth,
) -> Result<CheckReport> {
    let (seen, mut findings) = observe(db)?;
    findings.extend(durable::compare(
        &RecordState::Present(integrity.last()),
        &seen,
    ));
    let (unreadable, entries_checked) = verify(db, depth);
    findings.extend(unreadable);
    Ok(CheckReport {
        findings,
        pending: integrity.reports(),
        entries_checked,
    })
}

/// Removes every catalog entry that cannot be read (a rescue copy); returns each as
/// `tree key`.
pub(crate) fn drop_unreadable_records(db: &sled::Db) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    for name in db.tree_names() {
        if !name.starts_with(ROOT_TREE_PREFIX) {
            continue;
        }
        let tree = db.open_tree(&name)?;
        let mut bad = Vec::new();
        for item in tree.iter() {
            let Ok((key, value)) = item else {
                break;
            };
            if check_entry(&name, &key, &value, Depth::Full).is_err() {
                bad.push(key);
            }
        }
        for key in bad {
            tree.remove(&key)?;
            dropped.push(format!(
                "{} {}",
                String::from_utf8_lossy(&name),
                show_key(&key)
            ));
        }
    }
    Ok(dropped)
}
