//! The durable record: a small file beside sled (`wfdb-durable`) saying what had reached disk
//! at the last flush (instance id, each root's clock, the registry generation), with its own
//! checksum, replaced atomically after every flush made through the store. sled 0.34 treats a
//! log record failing its checksum as the end of its log and says nothing, so a damaged `db`
//! file opens as an older database; comparing sled's state with this record on open is what
//! tells a rollback from a healthy database.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codec::{decode, encode};

/// The record's file name in the database folder.
pub const FILE_NAME: &str = "wfdb-durable";
/// First bytes of the file: names it and its format version.
const MAGIC: &[u8; 8] = b"WFDBDUR1";
const CHECKSUM_LEN: usize = 32;

/// What had reached disk at the last flush.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableRecord {
    pub instance_id: String,
    /// The watched roots, sorted by id.
    pub roots: Vec<DurableRoot>,
    /// Bumped by every acknowledged registry write (agents, workflows, runs, sessions).
    pub registry_generation: u64,
}

/// One watched root as the record keeps it: its path too, so a lost roots list can be restored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableRoot {
    pub id: String,
    pub path: Vec<u8>,
    pub clock: u64,
}

impl DurableRecord {
    /// `self` advanced by what a later flush made durable: the roots are the later list, each
    /// clock and the generation never go back (two flushes may finish in either order).
    pub fn advanced(&self, later: &DurableRecord) -> DurableRecord {
        let mut roots: Vec<DurableRoot> = later
            .roots
            .iter()
            .map(|r| {
                let before = self
                    .roots
                    .iter()
                    .find(|o| o.id == r.id)
                    .map_or(0, |o| o.clock);
                DurableRoot {
                    clock: r.clock.max(before),
                    ..r.clone()
                }
            })
            .collect();
        roots.sort_by(|a, b| a.id.cmp(&b.id));
        let same_instance = self.instance_id == later.instance_id;
        DurableRecord {
            instance_id: later.instance_id.clone(),
            roots,
            registry_generation: if same_instance {
                later.registry_generation.max(self.registry_generation)
            } else {
                later.registry_generation
            },
        }
    }
}

/// Why the record file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0} is unreadable: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} is damaged: {1}")]
    Damaged(PathBuf, String),
}

/// The record as bytes: magic, the codec's encoding, then the SHA-256 of both.
pub fn encode_record(record: &DurableRecord) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    // Strings and integers always encode: the error case cannot happen, so an empty body
    // (which decodes as damaged) would be the worst outcome.
    out.extend(encode(record).unwrap_or_default());
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Reads bytes written by [`encode_record`], refusing any that fail the checksum.
pub fn decode_record(bytes: &[u8]) -> Result<DurableRecord, String> {
    if bytes.len() < MAGIC.len() + CHECKSUM_LEN {
        return Err(format!("too short ({} bytes)", bytes.len()));
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if !body.starts_with(MAGIC) {
        return Err("not a durable record (bad magic)".into());
    }
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch".into());
    }
    decode(&body[MAGIC.len()..]).map_err(|e| e.to_string())
}

/// Reads the record in `dir` (`Ok(None)`: there is none).
pub fn read(dir: &Path) -> Result<Option<DurableRecord>, RecordError> {
    let path = dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => decode_record(&bytes)
            .map(Some)
            .map_err(|e| RecordError::Damaged(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RecordError::Io(path, e)),
    }
}

/// Replaces the record in `dir` atomically and durably: a temporary file, fsync, rename, fsync
/// of the folder.
pub fn write(dir: &Path, record: &DurableRecord) -> std::io::Result<()> {
    write_atomically(dir, FILE_NAME, &encode_record(record))
}

/// Replaces `dir/name` with `bytes` atomically and durably.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// What the database itself holds, to compare with the record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub instance_id: Option<String>,
    /// Every root in the persisted roots list, with its stored clock (0: no records).
    pub roots: Vec<DurableRoot>,
    pub registry_generation: u64,
    /// The database says a record was written for it (so a missing one was lost).
    pub record_expected: bool,
}

/// The record as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordState {
    Absent,
    Damaged(String),
    Present(DurableRecord),
}

/// One sign of damage or rollback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finding {
    /// The database says a durable record was written, and there is none.
    RecordMissing,
    /// The durable record fails its checksum: what reached disk cannot be proven.
    RecordDamaged(String),
    /// The database lost its instance id.
    InstanceMissing { expected: String },
    /// The database has another instance id than the one that reached disk.
    InstanceChanged { expected: String, found: String },
    /// A root that reached disk is gone from the roots list.
    RootMissing {
        id: String,
        path: String,
        clock: u64,
    },
    /// A root's clock is below the one that reached disk (0: its records are gone).
    ClockWentBack {
        id: String,
        path: String,
        durable: u64,
        found: u64,
    },
    /// The registry is older than what was acknowledged.
    RegistryRolledBack { durable: u64, found: u64 },
    /// A stored entry cannot be read (sled's iterator or the record codec refused it).
    Unreadable { tree: String, detail: String },
    /// sled refused to open the database; what was set aside to open it.
    Unopenable(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::RecordMissing => write!(
                f,
                "the durable record ({FILE_NAME}) is missing, so what reached disk cannot be checked"
            ),
            Finding::RecordDamaged(e) => write!(
                f,
                "the durable record ({FILE_NAME}) is damaged ({e}), so what reached disk cannot be checked"
            ),
            Finding::InstanceMissing { expected } => write!(
                f,
                "the database lost its instance id (was {expected}): it was rolled back or replaced"
            ),
            Finding::InstanceChanged { expected, found } => write!(
                f,
                "the database's instance id is {found}, but {expected} had reached disk"
            ),
            Finding::RootMissing { id, path, clock } => write!(
                f,
                "root {path} ({id}) at clock {clock} is missing from the roots list"
            ),
            Finding::ClockWentBack {
                id,
                path,
                durable,
                found,
            } => write!(
                f,
                "root {path} ({id}) went back from clock {durable} to {found}: acknowledged catalog changes are lost"
            ),
            Finding::RegistryRolledBack { durable, found } => write!(
                f,
                "the workflow database was rolled back from generation {durable} to {found}: the last {} acknowledged write(s) to agents, workflows, runs or sessions are lost",
                durable - found
            ),
            Finding::Unreadable { tree, detail } => {
                write!(f, "unreadable data in tree {tree}: {detail}")
            }
            Finding::Unopenable(what) => f.write_str(what),
        }
    }
}

/// Compares the database with the record: every sign that it is older than what reached disk.
pub fn compare(record: &RecordState, seen: &Observed) -> Vec<Finding> {
    let record = match record {
        RecordState::Absent if seen.record_expected => return vec![Finding::RecordMissing],
        RecordState::Absent => return Vec::new(),
        RecordState::Damaged(e) => return vec![Finding::RecordDamaged(e.clone())],
        RecordState::Present(r) => r,
    };
    let mut out = Vec::new();
    match &seen.instance_id {
        None => out.push(Finding::InstanceMissing {
            expected: record.instance_id.clone(),
        }),
        Some(found) if *found != record.instance_id => out.push(Finding::InstanceChanged {
            expected: record.instance_id.clone(),
            found: found.clone(),
        }),
        Some(_) => {}
    }
    for durable in &record.roots {
        let path = String::from_utf8_lossy(&durable.path).into_owned();
        match seen.roots.iter().find(|r| r.id == durable.id) {
            None => out.push(Finding::RootMissing {
                id: durable.id.clone(),
                path,
                clock: durable.clock,
            }),
            Some(found) if found.clock < durable.clock => out.push(Finding::ClockWentBack {
                id: durable.id.clone(),
                path,
                durable: durable.clock,
                found: found.clock,
            }),
            Some(_) => {}
        }
    }
    if seen.registry_generation < record.registry_generation {
        out.push(Finding::RegistryRolledBack {
            durable: record.registry_generation,
            found: seen.registry_generation,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(id: &str, clock: u64) -> DurableRoot {
        DurableRoot {
            id: id.into(),
            path: format!("/src/{id}").into_bytes(),
            clock,
        }
    }

    fn record() -> DurableRecord {
        DurableRecord {
            instance_id: "abcd".into(),
            roots: vec![root("r1", 11), root("r2", 3)],
            registry_generation: 7,
        }
    }

    fn observed() -> Observed {
        Observed {
            instance_id: Some("abcd".into()),
            roots: vec![root("r1", 11), root("r2", 3)],
            registry_generation: 7,
            record_expected: true,
        }
    }

    #[test]
    fn record_round_trips_and_every_damage_is_refused() {
        let bytes = encode_record(&record());
        assert_eq!(decode_record(&bytes).unwrap(), record());
        // Every single-bit flip and every truncation is caught by the checksum or the magic.
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                assert!(decode_record(&b).is_err(), "flip at {i}");
            }
        }
        for len in 0..bytes.len() {
            assert!(decode_record(&bytes[..len]).is_err(), "cut at {len}");
        }
        assert!(decode_record(&vec![0; bytes.len()]).is_err());
    }

    #[test]
    fn read_and_write_through_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path()), Ok(None)));
        write(dir.path(), &record()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(record()));
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
        std::fs::write(dir.path().join(FILE_NAME), b"WFDBDUR1 garbage").unwrap();
        assert!(matches!(read(dir.path()), Err(RecordError::Damaged(..))));
    }

    #[test]
    fn a_healthy_or_newer_database_has_no_finding() {
        let rec = RecordState::Present(record());
        assert!(compare(&rec, &observed()).is_empty());
        // Ahead of the record (sled's background flush wrote more): healthy.
        let mut ahead = observed();
        ahead.roots[0].clock = 40;
        ahead.registry_generation = 9;
        ahead.roots.push(root("r3", 1));
        assert!(compare(&rec, &ahead).is_empty());
        // No record and none expected: a new database, or one from before records.
        let mut fresh = observed();
        fresh.record_expected = false;
        assert!(compare(&RecordState::Absent, &fresh).is_empty());
    }

    #[test]
    fn every_rollback_is_found() {
        let rec = RecordState::Present(record());
        let mut seen = observed();
        seen.instance_id = None;
        seen.roots[0].clock = 2;
        seen.roots.remove(1);
        seen.registry_generation = 4;
        let found = compare(&rec, &seen);
        assert_eq!(
            found,
            vec![
                Finding::InstanceMissing {
                    expected: "abcd".into()
                },
                Finding::ClockWentBack {
                    id: "r1".into(),
                    path: "/src/r1".into(),
                    durable: 11,
                    found: 2
                },
                Finding::RootMissing {
                    id: "r2".into(),
                    path: "/src/r2".into(),
                    clock: 3
                },
                Finding::RegistryRolledBack {
                    durable: 7,
                    found: 4
                },
            ]
        );
        assert!(found[3].to_string().contains("last 3 acknowledged"));
        let mut other = observed();
        other.instance_id = Some("ffff".into());
        assert!(matches!(
            compare(&rec, &other)[..],
            [Finding::InstanceChanged { .. }]
        ));
        assert_eq!(
            compare(&RecordState::Absent, &observed()),
            vec![Finding::RecordMissing]
        );
        assert!(matches!(
            compare(&RecordState::Damaged("x".into()), &observed())[..],
            [Finding::RecordDamaged(_)]
        ));
    }

    #[test]
    fn advancing_never_goes_back() {
        let old = record();
        let mut later = record();
        later.roots[0].clock = 5; // a flush that read its marks before another finished
        later.roots.remove(1); // r2 was unwatched
        later.registry_generation = 6;
        let merged = old.advanced(&later);
        assert_eq!(merged.roots, vec![root("r1", 11)]);
        assert_eq!(merged.registry_generation, 7);
        // A new instance (after damage) starts its own generation.
        later.instance_id = "new".into();
        assert_eq!(old.advanced(&later).registry_generation, 6);
    }
}
