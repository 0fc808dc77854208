//! Persistence in sled: the only module that knows sled and the record codec. One tree of
//! metadata, one tree per root with prefixed keys so a root's batch is a single atomic
//! `apply_batch`.

mod changes;
pub mod codec;
pub mod durable;
pub mod integrity;
pub mod registry;

pub use changes::{Change, ChangeCursor, FolderProbe};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use std::sync::Mutex;

use crate::catalog::{
    ChangeSet, FileKind, FileRecord, Fingerprint, Purpose, RecordCounts, RecordHead, ScanReport,
};
use crate::paths::RelPath;
use codec::{decode, decode_prefix, encode, CodecError};
pub use durable::Finding;
pub use integrity::{CheckReport, DamageReport, Depth};

/// Default bound of sled's page cache (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

const FILE_PREFIX: &[u8] = b"f/";
const TOMBSTONE_PREFIX: &[u8] = b"t/";
const ROOT_META_KEY: &[u8] = b"m";
/// The highest clock of a tombstone pruned by retention: clocks before it cannot be answered.
const PRUNED_THROUGH_KEY: &[u8] = b"p";
/// The clock index: `c/<clock, 8 bytes big-endian><path>` for every record and tombstone
/// written after the clock stored under [`CLOCK_INDEX_FROM_KEY`], so "what changed after a
/// clock" reads only what changed.
const CLOCK_INDEX_PREFIX: &[u8] = b"c/";
const CLOCK_INDEX_FROM_KEY: &[u8] = b"i";
const META_SCHEMA: &[u8] = b"schema";
const META_INSTANCE: &[u8] = b"instance_id";
const META_ROOTS: &[u8] = b"roots";
/// Written by [`Store::check_writable`] only.
const META_WRITE_CHECK: &[u8] = b"write_check";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {0} is in use by another running wfdb daemon (stop it, or pass --db to use another folder)")]
    Locked(PathBuf),
    #[error(
        "database {path} is damaged: sled cannot open it ({detail}). Save agents, workflows, runs and sessions first with `wfdb export --db {path} FILE` (it reads a copy); starting the daemon then sets aside what sled cannot read (in a damaged-* folder inside it) and rebuilds the catalog from disk (cheap); registry data that cannot be read is lost, and reported"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("database {path} cannot be written ({source}): the folder or its files are read-only or belong to another user. Nothing is damaged: give this user write access (`ls -la {path}`), or export with `wfdb export --db {path} FILE`; do not move it aside, that would lose agents, workflows, runs and sessions")]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: the disk is full ({source}). Nothing is damaged: free some space and start again")]
    DiskFull {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path} has schema version {found}, this wfdb reads version {expected}: use a matching wfdb or remove the database")]
    UnknownSchema {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("cannot create database folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sled(String),
    #[error("stored record is unreadable: {0}")]
    Codec(#[from] CodecError),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e.to_string())
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// A watched root as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootEntry {
    /// Canonical absolute path, as bytes.
    pub path: Vec<u8>,
    pub id: String,
    pub added_ns: i64,
}

/// Per-root bookkeeping kept beside its records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RootMeta {
    pub clock: u64,
    pub last_scan: Option<ScanReport>,
}

/// A removed path's mark: when it was removed, by clock and by wall time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Tombstone {
    clock: u64,
    /// Milliseconds since the epoch; 0 for marks written before times were kept.
    removed_ms: i64,
}

impl Tombstone {
    fn now(clock: u64) -> Tombstone {
        Tombstone {
            clock,
            removed_ms: crate::catalog::scan::now_ns() / 1_000_000,
        }
    }

    /// Reads a mark, also in its first form (the clock alone).
    fn decode(bytes: &[u8]) -> Result<Tombstone> {
        match decode::<Tombstone>(bytes) {
            Ok(t) => Ok(t),
            Err(_) => Ok(Tombstone {
                clock: decode::<u64>(bytes)?,
                removed_ms: 0,
            }),
        }
    }
}

/// What pruning old tombstones did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Tombstones removed.
    pub removed: usize,
    /// Clocks before this can no longer be answered exactly.
    pub through: u64,
}

/// The daemon's database.
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    path: PathBuf,
    instance_id: String,
    integrity: Arc<integrity::Integrity>,
    /// Bumped after every write to the agents tree, so derived views (the owner matcher)
    /// know when to rebuild without reading the agents.
    agents_generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Opens (or creates) the database in `dir`, checking lock, health and schema version.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store> {
        create_private_dir(dir)?;
        writable(dir)?;
        // No flush timer: sled's background flusher rewrites pages (its page GC) between
        // flushes forever, about 1 MB/s on a settled 50k-file catalog. The daemon flushes
        // when it has something to make durable (see ARCHITECTURE.md, "Idle means idle").
        let (db, salvaged) = match open_sled(dir, cache_bytes, None) {
            Ok(db) => (db, None),
            Err(StoreError::Corrupt { detail, .. }) => {
                let (db, note) = salvage(dir, cache_bytes, &detail)?;
                (db, Some(note))
            }
            Err(e) => return Err(e),
        };
        let meta = db.open_tree("meta")?;
        if schema_of(dir, &meta)?.is_none() {
            meta.insert(META_SCHEMA, &SCHEMA.to_le_bytes())?;
        }
        // Compared with the durable record; a damaged or rolled-back database is repaired
        // (new instance id, catalog rebuilt) and reported.
        let (integrity, instance_id) =
            integrity::open_checked(&db, dir, salvaged).map_err(|e| write_error(dir, e))?;
        Ok(Store {
            db,
            meta,
            path: dir.to_path_buf(),
            instance_id,
            integrity: Arc::new(integrity),
            agents_generation: Default::default(),
        })
    }

    /// Checks the database in `dir` without repairing it (`Ok(None)` when there is none):
    /// the durable record comparison and a verify pass at `depth`; releases sled's lock
    /// before returning.
    pub fn check(dir: &Path, depth: Depth) -> Result<Option<CheckReport>> {
        if !dir.join("db").is_file() {
            return Ok(None);
        }
        let db = open_sled(dir, INSPECT_CACHE_BYTES, None)?;
        integrity::check(&db, dir, depth).map(Some)
    }

    /// Checks this running store: the database against the durable record and a verify pass.
    pub fn verify(&self, depth: Depth) -> Result<CheckReport> {
        integrity::check_live(&self.db, &self.integrity, depth)
    }

    /// Damage found on open and not yet acknowledged.
    pub fn damage_reports(&self) -> Vec<DamageReport> {
        self.integrity.reports()
    }

    /// Forgets the damage reports (the user has read them); returns how many there were.
    pub fn acknowledge_damage(&self) -> Result<usize> {
        self.integrity.acknowledge()
    }

    /// Forgets the damage reports of a database no daemon has open.
    pub fn acknowledge_damage_offline(dir: &Path) -> Result<usize> {
        integrity::remove_reports(dir)
    }

    /// Checks the database in `dir` without creating one (`Ok(None)` when there is none):
    /// takes the lock, checks the schema version and that the metadata and every root's
    /// bookkeeping decode, and releases the lock before returning.
    pub fn inspect(dir: &Path) -> Result<Option<DatabaseInfo>> {
        // sled keeps its pages in a file named `db`; a folder without it holds no database.
        if !dir.join("db").is_file() {
            return Ok(None);
        }
        let db = open_sled(dir, INSPECT_CACHE_BYTES, None)?;
        if !db.tree_names().iter().any(|name| name.as_ref() == b"meta") {
            return Ok(Some(DatabaseInfo {
                schema: None,
                instance_id: None,
                roots: Vec::new(),
                size_on_disk: db.size_on_disk().unwrap_or(0),
            }));
        }
        let meta = db.open_tree("meta")?;
        let schema = schema_of(dir, &meta)?;
        let instance_id = meta
            .get(META_INSTANCE)?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let roots: Vec<RootEntry> = match meta.get(META_ROOTS)? {
            Some(v) => decode(&v)?,
            None => Vec::new(),
        };
        for root in &roots {
            let tree = db.open_tree(format!("root/{}", root.id))?;
            if let Some(v) = tree.get(ROOT_META_KEY)? {
                decode::<RootMeta>(&v)?;
            }
        }
        Ok(Some(DatabaseInfo {
            schema,
            instance_id,
            roots,
            size_on_disk: db.size_on_disk().unwrap_or(0),
        }))
    }

    /// Opens a COPY of a database for a rescue (`wfdb export --db`): no repair, but what
    /// cannot be read is removed from the copy so the rest can be; returns what the check found
    /// (before the removals) and what was removed.
    pub fn open_rescue_copy(copy: &Path) -> Result<(Store, CheckReport, Vec<String>)> {
        // A copy: setting aside what sled cannot read loses nothing of the original.
        let (db, salvaged) = match open_sled(copy, INSPECT_CACHE_BYTES, None) {
            Ok(db) => (db, None),
            Err(StoreError::Corrupt { detail, .. }) => {
                let (db, note) = salvage(copy, INSPECT_CACHE_BYTES, &detail)?;
                (db, Some(note))
            }
            Err(e) => return Err(e),
        };
        let meta = db.open_tree("meta")?;
        schema_of(copy, &meta)?;
        let mut check = integrity::check(&db, copy, Depth::Full)?;
        check.findings.splice(0..0, salvaged);
        let mut dropped = registry::drop_unreadable(&db)?;
        dropped.extend(integrity::drop_unreadable_records(&db)?);
        let instance_id = meta
            .get(META_INSTANCE)?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        let integrity = Arc::new(integrity::Integrity::detached(copy));
        Ok((
            Store {
                db,
                meta,
                path: copy.to_path_buf(),
                instance_id,
                integrity,
                agents_generation: Default::default(),
            },
            check,
            dropped,
        ))
    }

    /// Whether a running process (a daemon) holds the database in `dir`.
    pub fn is_locked(dir: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let Ok(file) = std::fs::File::open(dir.join("db")) else {
            return false;
        };
        // sled holds an exclusive flock on `db` while open.
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            // SAFETY: as above.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return false;
        }
        std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
    }

    /// Copies the database folder `from` (every file sled and wfdb keep there) into `to`,
    /// which must not exist; returns the bytes copied.
    pub fn copy_folder(from: &Path, to: &Path) -> std::io::Result<u64> {
        create_private_dir(to).map_err(|e| match e {
            StoreError::CreateDir { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })?;
        let mut bytes = 0;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let target = to.join(entry.file_name());
            if kind.is_dir() {
                bytes += Store::copy_folder(&entry.path(), &target)?;
            } else if kind.is_file() {
                bytes += std::fs::copy(entry.path(), &target)?;
                // The copy is read and written (sled opens it read-write), whatever the
                // original's mode.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        Ok(bytes)
    }

    /// The database folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A random id created with the database: a rebuilt database has a new one.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The persisted list of watched roots.
    pub fn roots(&self) -> Result<Vec<RootEntry>> {
        match self.meta.get(META_ROOTS)? {
            Some(v) => Ok(decode(&v)?),
            None => Ok(Vec::new()),
        }
    }

    /// Replaces the persisted list of watched roots (durable on return).
    pub fn set_roots(&self, roots: &[RootEntry]) -> Result<()> {
        self.meta.insert(META_ROOTS, encode(&roots.to_vec())?)?;
        self.flush()
    }

    /// The records of one root.
    pub fn root(&self, id: &str) -> Result<RootStore> {
        Ok(RootStore {
            tree: self.db.open_tree(format!("root/{id}"))?,
            heads_snapshot: self.path.join(format!("wfdb-heads-{id}.bin")),
            db: self.db.clone(),
            integrity: Arc::clone(&self.integrity),
            counts: Arc::default(),
        })
    }

    /// Deletes every record of a root.
    pub fn drop_root(&self, id: &str) -> Result<()> {
        self.db.drop_tree(format!("root/{id}"))?;
        self.integrity.forget_root(id);
        Ok(())
    }

    /// Writes everything buffered to disk, then records what reached it in the durable
    /// record (compared on the next open to detect damage and rollback).
    pub fn flush(&self) -> Result<()> {
        integrity::flush_durably(&self.db, &self.integrity)
    }

    /// Takes a new instance id (durable on return), so clients holding clocks of the old one
    /// are answered `fresh_instance` instead of a list that may miss changes.
    pub fn renew_instance_id(&mut self) -> Result<()> {
        let id = new_instance_id();
        self.meta.insert(META_INSTANCE, id.as_bytes())?;
        self.flush()?;
        self.instance_id = id;
        Ok(())
    }

    /// Proves that the database takes a write and a flush now (after a failure: sled keeps
    /// its first I/O error, so this keeps failing until the database is opened anew).
    pub fn check_writable(&self) -> Result<()> {
        self.meta.insert(
            META_WRITE_CHECK,
            &crate::catalog::scan::now_ns().to_le_bytes(),
        )?;
        self.flush()
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// The schema version this build reads and writes.
const SCHEMA: u32 = codec::SCHEMA_VERSION as u32;

/// Page cache of [`Store::inspect`]: it reads a few keys.
const INSPECT_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// What [`Store::inspect`] found in an existing database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// The schema version marker (`None`: never initialised by a daemon).
    pub schema: Option<u32>,
    pub instance_id: Option<String>,
    pub roots: Vec<RootEntry>,
    pub size_on_disk: u64,
}

/// The database's schema version marker, refused when malformed or not this build's.
fn schema_of(dir: &Path, meta: &sled::Tree) -> Result<Option<u32>> {
    let Some(v) = meta.get(META_SCHEMA)? else {
        return Ok(None);
    };
    let found = <[u8; 4]>::try_from(v.as_ref())
        .map(u32::from_le_bytes)
        .map_err(|_| StoreError::Corrupt {
            path: dir.to_path_buf(),
            detail: "schema marker is malformed".into(),
        })?;
    if found != SCHEMA {
        return Err(StoreError::UnknownSchema {
            path: dir.to_path_buf(),
            found,
            expected: SCHEMA,
        });
    }
    Ok(Some(found))
}

/// Opens sled in `dir` (which must exist) with a bounded cache.
fn open_sled(dir: &Path, cache_bytes: u64, flush_every_ms: Option<u64>) -> Result<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .flush_every_ms(flush_every_ms);
    // sled can panic on some corrupt files instead of returning an error; a corrupt
    // database must be a clear error, never a crash.
    let opened =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())).map_err(|_| {
            StoreError::Corrupt {
                path: dir.to_path_buf(),
                detail: "sled panicked while reading it".into(),
            }
        })?;
    opened.map_err(|e| open_error(dir, e))
}

/// Opens a database sled refuses, setting aside (never deleting) what it cannot read, one
/// step at a time: its `conf`, then its snapshots, then the log itself (everything in it is
/// then lost, and said so). What opens is checked against the durable record like any open.
fn salvage(dir: &Path, cache_bytes: u64, detail: &str) -> Result<(sled::Db, Finding)> {
    let aside = dir.join(format!(
        "damaged-{}",
        crate::catalog::scan::now_ns() / 1_000_000
    ));
    create_private_dir(&aside)?;
    let move_aside = |name: &std::ffi::OsStr| -> Result<()> {
        std::fs::rename(dir.join(name), aside.join(name)).map_err(|e| io_error(dir, e))
    };
    let names = |pick: fn(&str) -> bool| -> Vec<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .filter(|n| pick(&n.to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    };
    /// Which files a salvage step sets aside.
    type Pick = fn(&str) -> bool;
    let steps: [(&str, Pick); 3] = [
        ("its configuration file (conf)", |n| n == "conf"),
        ("its snapshots (snap.*)", |n| n.starts_with("snap.")),
        ("its whole log (db, blobs): everything in it is lost", |n| {
            n == "db" || n == "blobs"
        }),
    ];
    let mut set_aside = Vec::new();
    for (what, pick) in steps {
        let found = names(pick);
        if found.is_empty() {
            continue;
        }
        for name in &found {
            move_aside(name)?;
        }
        set_aside.push(what);
        if let Ok(db) = open_sled(dir, cache_bytes, None) {
            let note = Finding::Unopenable(format!(
                "sled could not open the database ({detail}); set aside in {}: {}",
                aside.display(),
                set_aside.join(", then ")
            ));
            tracing::error!(db = %dir.display(), aside = %aside.display(), "{note}");
            return Ok((db, note));
        }
    }
    Err(StoreError::Corrupt {
        path: dir.to_path_buf(),
        detail: detail.to_string(),
    })
}

/// Refuses a database folder this user cannot write, naming the real cause (sled would
/// report it as an I/O error, which reads like damage).
fn writable(dir: &Path) -> Result<()> {
    let probe = dir.join(".wfdb-write-probe");
    let outcome = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe);
    let _ = std::fs::remove_file(&probe);
    if let Err(source) = outcome {
        return Err(io_error(dir, source));
    }
    for name in ["db", "conf", durable::FILE_NAME] {
        let file = dir.join(name);
        if file.exists() {
            if let Err(source) = std::fs::OpenOptions::new().append(true).open(&file) {
                return Err(io_error(dir, source));
            }
        }
    }
    Ok(())
}

/// Names the cause of an I/O error on the database folder.
fn io_error(dir: &Path, source: std::io::Error) -> StoreError {
    match source.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => StoreError::NotWritable {
            path: dir.to_path_buf(),
            source,
        },
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => StoreError::DiskFull {
            path: dir.to_path_buf(),
            source,
        },
        _ => StoreError::Corrupt {
            path: dir.to_path_buf(),
            detail: source.to_string(),
        },
    }
}

/// Rewords a write that failed while opening (the repair, the durable record).
fn write_error(dir: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Sled(detail) if detail.contains("No space left") => StoreError::DiskFull {
            path: dir.to_path_buf(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        },
        other => other,
    }
}

fn open_error(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked(dir.to_path_buf())
        }
        sled::Error::Io(io) => io_error(dir, io),
        sled::Error::Corruption { .. }
        | sled::Error::ReportableBug(_)
        | sled::Error::Unsupported(_) => StoreError::Corrupt {
            path: dir.to_path_buf(),
            detail: e.to_string(),
        },
        other => StoreError::Sled(other.to_string()),
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

fn new_instance_id() -> String {
    use sha2::{Digest, Sha256};
    let mut seed = Vec::new();
    seed.extend_from_slice(&crate::catalog::scan::now_ns().to_le_bytes());
    seed.extend_from_slice(&std::process::id().to_le_bytes());
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let mut buf = [0u8; 16];
        if std::io::Read::read_exact(&mut f, &mut buf).is_ok() {
            seed.extend_from_slice(&buf);
        }
    }
    crate::catalog::record::hex(&Sha256::digest(&seed)[..8])
}

fn file_key(path: &RelPath) -> Vec<u8> {
    [FILE_PREFIX, path.as_bytes()].concat()
}

fn tombstone_key(path: &RelPath) -> Vec<u8> {
    [TOMBSTONE_PREFIX, path.as_bytes()].concat()
}

fn clock_key(clock: u64, path: &RelPath) -> Vec<u8> {
    [CLOCK_INDEX_PREFIX, &clock.to_be_bytes(), path.as_bytes()].concat()
}

/// The records of one root.
#[derive(Clone)]
pub struct RootStore {
    tree: sled::Tree,
    /// Record heads written at a clean shutdown, so the next start need not decode them all.
    heads_snapshot: PathBuf,
    db: sled::Db,
    integrity: Arc<integrity::Integrity>,
    /// The records' counts once something asked for them (`None` before: the cold index
    /// pays nothing), kept current by every write under this lock, which is held from the
    /// read of the replaced records to the batch's application so a first count cannot
    /// interleave with a write.
    counts: Arc<Mutex<Option<RecordCounts>>>,
}

/// The leading fields of a stored [`FileRecord`] that its counts depend on.
#[derive(Deserialize)]
struct CountedHead {
    _kind: FileKind,
    fingerprint: Fingerprint,
    _sha256: Option<[u8; 32]>,
    error: Option<String>,
    _path: RelPath,
    file_type: String,
    purpose: Purpose,
}

impl CountedHead {
    fn decode(value: &[u8]) -> Result<CountedHead> {
        Ok(decode_prefix(value)?)
    }

    fn add_to(&self, counts: &mut RecordCounts) {
        counts.add(
            self.fingerprint.size,
            self.error.is_some(),
            &self.file_type,
            self.purpose,
        );
    }

    fn remove_from(&self, counts: &mut RecordCounts) {
        counts.remove(
            self.fingerprint.size,
            self.error.is_some(),
            &self.file_type,
            self.purpose,
        );
    }
}

/// The record heads of a root at a clock, as written at a clean shutdown.
#[derive(Serialize, Deserialize)]
struct HeadsSnapshot {
    clock: u64,
    heads: Vec<(RelPath, RecordHead)>,
}

impl RootStore {
    /// The root's clock and last scan figures.
    pub fn meta(&self) -> Result<RootMeta> {
        match self.tree.get(ROOT_META_KEY)? {
            Some(v) => Ok(decode(&v)?),
            None => Ok(RootMeta::default()),
        }
    }

    /// One file's record.
    pub fn get(&self, path: &RelPath) -> Result<Option<FileRecord>> {
        match self.tree.get(file_key(path))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Records in path order whose path is `dir` or lies under it (`None`: every record).
    pub fn files_under(&self, dir: Option<&RelPath>) -> impl Iterator<Item = Result<FileRecord>> {
        let prefix = match dir {
            Some(d) => file_key(d),
            None => FILE_PREFIX.to_vec(),
        };
        let dir_bytes = dir.map(|d| d.as_bytes().to_vec());
        self.tree.scan_prefix(prefix).filter_map(move |item| {
            let (key, value) = match item {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            if let Some(d) = &dir_bytes {
                // "src" must not match "srcfoo": keep only the folder itself and what is under it.
                let path = &key[FILE_PREFIX.len()..];
                if path.len() > d.len() && path[d.len()] != b'/' {
                    return None;
                }
            }
            Some(decode(&value).map_err(StoreError::from))
        })
    }

    /// How many records the root has and the sum of their sizes, decoding only record heads.
    pub fn totals(&self) -> Result<(u64, u64)> {
        let (mut files, mut bytes) = (0u64, 0u64);
        for item in self.tree.scan_prefix(FILE_PREFIX) {
            let (_, value) = item?;
            let head: RecordHead = decode_prefix(&value)?;
            files += 1;
            bytes += head.fingerprint.size;
        }
        Ok((files, bytes))
    }

    /// The records' counts: counted once from every record head, then kept current by each
    /// write.
    pub fn counts(&self) -> Result<RecordCounts> {
        let mut kept = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &*kept {
            return Ok(c.clone());
        }
        let mut counts = RecordCounts::default();
        for item in self.tree.scan_prefix(FILE_PREFIX) {
            let (_, value) = item?;
            CountedHead::decode(&value)?.add_to(&mut counts);
        }
        *kept = Some(counts.clone());
        Ok(counts)
    }

    /// Applies `batch`, which replaces or removes the stored records of `replaced` and
    /// writes `written`, keeping the counts current when they are kept. A failure forgets
    /// the counts (they are counted again when next asked for) rather than keep wrong ones.
    fn apply_counted<'a>(
        &self,
        batch: sled::Batch,
        replaced: impl Iterator<Item = &'a RelPath>,
        written: &[FileRecord],
    ) -> Result<()> {
        let mut kept = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(counts) = kept.as_mut() else {
            drop(kept);
            self.tree.apply_batch(batch)?;
            return Ok(());
        };
        let mut next = counts.clone();
        let outcome = (|| {
            for path in replaced {
                if let Some(v) = self.tree.get(file_key(path))? {
                    CountedHead::decode(&v)?.remove_from(&mut next);
                }
            }
            for rec in written {
                next.add_record(rec);
            }
            self.tree.apply_batch(batch)?;
            Ok(())
        })();
        *kept = outcome.as_ref().ok().map(|()| next);
        outcome
    }

    /// Every record, keyed by path.
    pub fn load_all(&self) -> Result<HashMap<RelPath, FileRecord>> {
        let mut map = HashMap::new();
        for rec in self.files_under(None) {
            let rec = rec?;
            map.insert(rec.path.clone(), rec);
        }
        Ok(map)
    }

    /// The leading fields of every record (what a reconcile compares), keyed by path; decodes
    /// far less than [`RootStore::load_all`]. Reads the clean-shutdown snapshot when there is
    /// one for the current clock, and consumes it: after a crash there is none and the records
    /// themselves are read.
    pub fn load_heads(&self) -> Result<crate::catalog::Heads> {
        if let Some(heads) = self.take_heads_snapshot()? {
            return Ok(heads);
        }
        self.load_heads_from_records()
    }

    fn take_heads_snapshot(&self) -> Result<Option<crate::catalog::Heads>> {
        let bytes = match std::fs::read(&self.heads_snapshot) {
            Ok(b) => b,
            Err(_) => return Ok(None),
        };
        // Consumed whatever it holds: a snapshot is only good for the start right after it.
        let _ = std::fs::remove_file(&self.heads_snapshot);
        let snapshot: HeadsSnapshot = match decode(&bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable record-heads snapshot");
                return Ok(None);
            }
        };
        if snapshot.clock != self.meta()?.clock {
            return Ok(None);
        }
        Ok(Some(snapshot.heads.into_iter().collect()))
    }

    /// Writes the record heads for the next start (called at a clean shutdown).
    pub fn save_heads_snapshot(&self) -> Result<()> {
        let clock = self.meta()?.clock;
        let mut heads: Vec<(RelPath, RecordHead)> =
            self.load_heads_from_records()?.into_iter().collect();
        heads.sort_by(|a, b| a.0.cmp(&b.0));
        let bytes = encode(&HeadsSnapshot { clock, heads })?;
        let tmp = self.heads_snapshot.with_extension("tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.heads_snapshot))
            .map_err(|e| {
                StoreError::Sled(format!("writing {}: {e}", self.heads_snapshot.display()))
            })
    }

    fn load_heads_from_records(&self) -> Result<crate::catalog::Heads> {
        let mut map = crate::catalog::Heads::default();
        for item in self.tree.scan_prefix(FILE_PREFIX) {
            let (key, value) = item?;
            let Ok(path) = RelPath::parse(&key[FILE_PREFIX.len()..]) else {
                continue;
            };
            map.insert(path, decode_prefix(&value)?);
        }
        Ok(map)
    }

    /// Writes records stamped with `clock` in one atomic batch, without touching the root's
    /// clock: a reconcile streams its records with this, then seals them with [`RootStore::commit`].
    pub fn put_records(&self, records: &mut [FileRecord], clock: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        // A root's first index is not put in the clock index (it would cost a key per file,
        // and nothing asks what changed since before it): the index starts after it.
        let current = self.meta()?.clock;
        let indexed = current > 0;
        if indexed {
            self.start_clock_index(&mut batch, current)?;
        }
        for rec in records.iter_mut() {
            if indexed {
                self.index_change(&mut batch, &rec.path, clock)?;
            }
            rec.clock = clock;
            batch.insert(file_key(&rec.path), encode(rec)?);
            batch.remove(tombstone_key(&rec.path));
        }
        self.apply_counted(batch, records.iter().map(|r| &r.path), records)
    }

    /// Ends a reconcile in one atomic batch: removals (with tombstones), component updates of
    /// unchanged records, the clock and the scan figures.
    pub fn commit(
        &self,
        clock: u64,
        removed: &[RelPath],
        recomponent: &[(RelPath, String)],
        report: Option<ScanReport>,
    ) -> Result<()> {
        let mut meta = self.meta()?;
        let mut batch = sled::Batch::default();
        let first_index = meta.clock == 0;
        if first_index {
            batch.insert(CLOCK_INDEX_FROM_KEY, encode(&clock)?);
        } else {
            self.start_clock_index(&mut batch, meta.clock)?;
        }
        for (path, component) in recomponent {
            if let Some(mut rec) = self.get(path)? {
                if !first_index {
                    batch.remove(clock_key(rec.clock, path));
                    batch.insert(clock_key(clock, path), &[][..]);
                }
                rec.component = component.clone();
                rec.clock = clock;
                batch.insert(file_key(path), encode(&rec)?);
            }
        }
        let mark = encode(&Tombstone::now(clock))?;
        for path in removed {
            if !first_index {
                self.index_change(&mut batch, path, clock)?;
            }
            batch.remove(file_key(path));
            batch.insert(tombstone_key(path), mark.clone());
        }
        meta.clock = meta.clock.max(clock);
        if report.is_some() {
            meta.last_scan = report;
        }
        batch.insert(ROOT_META_KEY, encode(&meta)?);
        // A new component changes no count; removals do.
        self.apply_counted(batch, removed.iter(), &[])
    }

    /// What changed after `clock`: the records written since (added or modified), and the
    /// paths removed since, both sorted by path. With `clock` 0, every record and no removal.
    /// Reads only the changes when the clock index covers `clock`, else every record.
    pub fn changed_since(&self, clock: u64) -> Result<(Vec<FileRecord>, Vec<RelPath>)> {
        match self.clock_index_from()? {
            Some(from) if clock > 0 && clock >= from => self.changed_since_indexed(clock),
            _ => self.changed_since_scan(clock),
        }
    }

    fn changed_since_scan(&self, clock: u64) -> Result<(Vec<FileRecord>, Vec<RelPath>)> {
        let mut changed = Vec::new();
        for rec in self.files_under(None) {
            let rec = rec?;
            if rec.clock > clock {
                changed.push(rec);
            }
        }
        let mut removed: Vec<RelPath> = if clock == 0 {
            Vec::new()
        } else {
            self.tombstones_since(clock)?
                .into_iter()
                .map(|(p, _)| p)
                .collect()
        };
        removed.sort();
        Ok((changed, removed))
    }

    /// Whether changes since `clock` can be told exactly: not from the future, and no
    /// tombstone after it has been pruned. Clock 0 (everything) always can.
    pub fn can_answer_since(&self, clock: u64) -> Result<bool> {
        if clock == 0 {
            return Ok(true);
        }
        Ok(clock <= self.meta()?.clock && clock >= self.pruned_through()?)
    }

    /// The highest clock of a pruned tombstone (0: none pruned).
    pub fn pruned_through(&self) -> Result<u64> {
        match self.tree.get(PRUNED_THROUGH_KEY)? {
            Some(v) => Ok(decode(&v)?),
            None => Ok(0),
        }
    }

    /// Forgets removals older than `cutoff_ms` (milliseconds since the epoch), in one atomic
    /// batch that also records which clocks can no longer be answered. Marks written before
    /// removal times were kept are given the current time, so they age from now.
    pub fn prune_tombstones(&self, cutoff_ms: i64) -> Result<Pruned> {
        let mut batch = sled::Batch::default();
        let mut pruned = Pruned {
            removed: 0,
            through: self.pruned_through()?,
        };
        let mut touched = false;
        for item in self.tree.scan_prefix(TOMBSTONE_PREFIX) {
            let (key, value) = item?;
            let mark = Tombstone::decode(&value)?;
            if mark.removed_ms == 0 {
                batch.insert(key, encode(&Tombstone::now(mark.clock))?);
                touched = true;
            } else if mark.removed_ms < cutoff_ms {
                if let Ok(path) = RelPath::parse(&key[TOMBSTONE_PREFIX.len()..]) {
                    batch.remove(clock_key(mark.clock, &path));
                }
                batch.remove(key);
                pruned.removed += 1;
                pruned.through = pruned.through.max(mark.clock);
            }
        }
        if pruned.removed > 0 {
            batch.insert(PRUNED_THROUGH_KEY, encode(&pruned.through)?);
        }
        if pruned.removed > 0 || touched {
            self.tree.apply_batch(batch)?;
        }
        Ok(pruned)
    }

    fn changed_since_indexed(&self, clock: u64) -> Result<(Vec<FileRecord>, Vec<RelPath>)> {
        let start = [CLOCK_INDEX_PREFIX, &clock.saturating_add(1).to_be_bytes()].concat();
        let mut paths = std::collections::BTreeSet::new();
        for item in self.tree.range(start..) {
            let (key, _) = item?;
            let Some(rest) = key.strip_prefix(CLOCK_INDEX_PREFIX) else {
                break;
            };
            if let Ok(path) = RelPath::parse(rest.get(8..).unwrap_or_default()) {
                paths.insert(path);
            }
        }
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        // An entry may be stale (the path changed again since): the record or tombstone
        // itself says whether and how it changed after `clock`.
        for path in paths {
            if let Some(v) = self.tree.get(file_key(&path))? {
                let rec: FileRecord = decode(&v)?;
                if rec.clock > clock {
                    changed.push(rec);
                }
            } else if let Some(v) = self.tree.get(tombstone_key(&path))? {
                let at = Tombstone::decode(&v)?.clock;
                if at > clock {
                    removed.push(path);
                }
            }
        }
        Ok((changed, removed))
    }

    /// The clock after which every change is in the clock index (`None`: no index yet, as
    /// in a database written before there was one).
    fn clock_index_from(&self) -> Result<Option<u64>> {
        match self.tree.get(CLOCK_INDEX_FROM_KEY)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Starts the clock index after `clock` in `batch` if there is none yet.
    fn start_clock_index(&self, batch: &mut sled::Batch, clock: u64) -> Result<()> {
        if self.clock_index_from()?.is_none() {
            batch.insert(CLOCK_INDEX_FROM_KEY, encode(&clock)?);
        }
        Ok(())
    }

    /// In `batch`: moves `path`'s clock-index entry to `clock`, dropping the entry of its
    /// current record or tombstone, so the index holds one entry per path.
    fn index_change(&self, batch: &mut sled::Batch, path: &RelPath, clock: u64) -> Result<()> {
        self.index_change_known(batch, path, clock, None)
    }

    /// [`Self::index_change`], given what the caller knows of the record being replaced:
    /// `Some(Some(c))` a record of clock `c`, `Some(None)` no record (a tombstone may be
    /// there), `None` nothing known.
    fn index_change_known(
        &self,
        batch: &mut sled::Batch,
        path: &RelPath,
        clock: u64,
        replaced: Option<Option<u64>>,
    ) -> Result<()> {
        let record_clock = match replaced {
            Some(known) => known,
            None => match self.tree.get(file_key(path))? {
                Some(v) => Some(decode::<FileRecord>(&v)?.clock),
                None => None,
            },
        };
        let current = match record_clock {
            Some(c) => Some(c),
            None => match self.tree.get(tombstone_key(path))? {
                Some(v) => Some(Tombstone::decode(&v)?.clock),
                None => None,
            },
        };
        if let Some(old) = current {
            batch.remove(clock_key(old, path));
        }
        batch.insert(clock_key(clock, path), &[][..]);
        Ok(())
    }

    /// The folders that may have appeared or vanished after `clock`, among the ancestors of
    /// `paths` (changed and removed paths), sorted: each one that holds no record unchanged
    /// since `clock`. A folder that holds such a record existed then and exists now; any other
    /// may be new or gone (or merely emptied and refilled, which costs a caller only a look).
    pub fn folders_changed_since<'a>(
        &self,
        clock: u64,
        paths: impl IntoIterator<Item = &'a RelPath>,
    ) -> Result<Vec<Vec<u8>>> {
        FolderProbe::new(clock).new_folders(self, paths)
    }

    /// Whether some record under folder `dir` was last changed at or before `clock`.
    fn holds_record_at_or_before(&self, dir: &[u8], clock: u64) -> Result<bool> {
        let prefix = [FILE_PREFIX, dir, b"/"].concat();
        for item in self.tree.scan_prefix(prefix) {
            let (_, value) = item?;
            let rec: FileRecord = decode(&value)?;
            if rec.clock <= clock {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Paths removed after `clock`, with the clock of their removal.
    pub fn tombstones_since(&self, clock: u64) -> Result<Vec<(RelPath, u64)>> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(TOMBSTONE_PREFIX) {
            let (key, value) = item?;
            let at = Tombstone::decode(&value)?.clock;
            if at > clock {
                if let Ok(p) = RelPath::parse(&key[TOMBSTONE_PREFIX.len()..]) {
                    out.push((p, at));
                }
            }
        }
        Ok(out)
    }

    /// Applies a change set and the scan figures in one atomic batch, advancing the clock when
    /// anything changed. Returns the clock after the batch.
    pub fn apply(&self, mut changes: ChangeSet, report: Option<ScanReport>) -> Result<u64> {
        let mut meta = self.meta()?;
        let mut batch = sled::Batch::default();
        if !changes.is_empty() {
            self.start_clock_index(&mut batch, meta.clock)?;
            meta.clock += 1;
        }
        for (i, rec) in changes.upserts.iter_mut().enumerate() {
            let replaced = changes.replaced_clocks.get(i).copied();
            self.index_change_known(&mut batch, &rec.path, meta.clock, replaced)?;
            rec.clock = meta.clock;
            batch.insert(file_key(&rec.path), encode(rec)?);
            batch.remove(tombstone_key(&rec.path));
        }
        let mark = encode(&Tombstone::now(meta.clock))?;
        for (i, path) in changes.removed.iter().enumerate() {
            let known = changes.removed_clocks.get(i).map(|c| Some(*c));
            self.index_change_known(&mut batch, path, meta.clock, known)?;
            batch.remove(file_key(path));
            batch.insert(tombstone_key(path), mark.clone());
        }
        if report.is_some() {
            meta.last_scan = report;
        }
        batch.insert(ROOT_META_KEY, encode(&meta)?);
        let replaced = changes.upserts.iter().map(|r| &r.path);
        self.apply_counted(batch, replaced.chain(&changes.removed), &changes.upserts)?;
        Ok(meta.clock)
    }

    /// Writes this root's records to disk now.
    pub fn flush(&self) -> Result<()> {
        integrity::flush_durably(&self.db, &self.integrity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{FileKind, Fingerprint, Purpose};

    pub(super) fn rec(path: &str) -> FileRecord {
        FileRecord {
            path: RelPath::parse(path.as_bytes()).unwrap(),
            kind: FileKind::Regular,
            fingerprint: Fingerprint {
                size: 3,
                mtime_ns: 1,
                ctime_ns: 1,
                ino: 1,
                mode: 0o100644,
            },
            file_type: "text".into(),
            purpose: Purpose::Other,
            description: String::new(),
            component: ".".into(),
            sha256: Some([7; 32]),
            symlink_target: None,
            error: None,
            clock: 0,
            dependencies: vec![],
            externals: vec![],
        }
    }

    #[test]
    fn record_head_is_the_encoded_prefix_of_a_record() {
        // Guards the field order FileRecord relies on: load_heads decodes only the prefix.
        let mut r = rec("dir/x");
        r.error = Some("denied".into());
        let head: RecordHead = decode_prefix(&encode(&r).unwrap()).unwrap();
        assert_eq!(head, r.head());
    }

    #[test]
    fn pruned_tombstones_make_older_clocks_unanswerable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let root = store.root("r1").unwrap();
        let remove = |name: &[u8]| {
            root.apply(
                ChangeSet {
                    removed: vec![RelPath::parse(name).unwrap()],
                    ..Default::default()
                },
                None,
            )
            .unwrap()
        };
        assert_eq!(remove(b"a"), 1);
        assert_eq!(remove(b"b"), 2);
        // A mark in the first form (the clock alone) is read, and ages from the next prune.
        root.tree
            .insert(
                tombstone_key(&RelPath::parse(b"old").unwrap()),
                encode(&2u64).unwrap(),
            )
            .unwrap();
        assert_eq!(root.tombstones_since(0).unwrap().len(), 3);
        assert!(root.can_answer_since(1).unwrap());
        assert!(
            !root.can_answer_since(3).unwrap(),
            "a clock from the future"
        );
        let indexed = |root: &RootStore| root.tree.scan_prefix(CLOCK_INDEX_PREFIX).count();
        assert!(indexed(&root) >= 1, "removals are in the clock index");
        // Nothing is older than a cutoff in the past.
        let p = root.prune_tombstones(0).unwrap();
        assert_eq!(
            p,
            Pruned {
                removed: 0,
                through: 0
            }
        );
        // Everything is older than a cutoff in the future: clocks before 2 are now unanswerable.
        let p = root.prune_tombstones(i64::MAX).unwrap();
        assert_eq!(
            p,
            Pruned {
                removed: 3,
                through: 2
            }
        );
        assert!(root.tombstones_since(0).unwrap().is_empty());
        assert_eq!(
            indexed(&root),
            0,
            "pruned removals leave the clock index too"
        );
        assert!(!root.can_answer_since(1).unwrap());
        assert!(root.can_answer_since(2).unwrap());
        assert!(
            root.can_answer_since(0).unwrap(),
            "everything is always answerable"
        );
        // The mark survives a reopen.
        drop(root);
        drop(store);
        let store = reopen(dir.path());
        assert_eq!(store.root("r1").unwrap().pruned_through().unwrap(), 2);
    }

    #[test]
    fn apply_advances_clock_and_leaves_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let root = store.root("r1").unwrap();
        let clock = root
            .apply(
                ChangeSet {
                    upserts: vec![rec("a"), rec("src/b"), rec("srcx")],
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        assert_eq!(clock, 1);
        let src = RelPath::parse(b"src").unwrap();
        let under: Vec<_> = root
            .files_under(Some(&src))
            .map(|r| r.unwrap().path.to_lossy())
            .collect();
        assert_eq!(under, vec!["src/b"]);
        let clock = root
            .apply(
                ChangeSet {
                    removed: vec![RelPath::parse(b"a").unwrap()],
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        assert_eq!(clock, 2);
        // Totals count records only (not tombstones or the root's metadata).
        assert_eq!(root.totals().unwrap(), (2, 6));
        assert_eq!(root.tombstones_since(1).unwrap().len(), 1);
        assert!(root.tombstones_since(2).unwrap().is_empty());
        // An empty change set does not tick the clock.
        assert_eq!(root.apply(ChangeSet::default(), None).unwrap(), 2);
        // What changed since a clock: records written after it, removals after it.
        let (changed, removed) = root.changed_since(1).unwrap();
        assert!(changed.is_empty());
        assert_eq!(removed, vec![RelPath::parse(b"a").unwrap()]);
        let (changed, removed) = root.changed_since(0).unwrap();
        assert_eq!(changed.len(), 2);
        assert!(removed.is_empty());
    }

    #[test]
    fn folders_changed_since_are_those_without_an_unchanged_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let root = store.root("r1").unwrap();
        let p = |s: &str| RelPath::parse(s.as_bytes()).unwrap();
        let before = root
            .apply(
                ChangeSet {
                    upserts: vec![
                        rec("old/keep"),
                        rec("old/edit"),
                        rec("gone/x"),
                        rec("a/b/y"),
                    ],
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        root.apply(
            ChangeSet {
                upserts: vec![rec("old/edit"), rec("new/sub/z"), rec("old/fresh/w")],
                removed: vec![p("gone/x"), p("a/b/y")],
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let (changed, removed) = root.changed_since(before).unwrap();
        let paths: Vec<RelPath> = changed.into_iter().map(|r| r.path).chain(removed).collect();
        let folders = root.folders_changed_since(before, &paths).unwrap();
        let shown: Vec<String> = folders
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        // "old" still holds "old/keep", unchanged: it existed before and exists now. Everything
        // else named may have come or gone.
        assert_eq!(
            shown,
            vec!["a", "a/b", "gone", "new", "new/sub", "old/fresh"]
        );
        // Nothing changed since the current clock: no folder.
        let now = root.meta().unwrap().clock;
        assert!(root.folders_changed_since(now, &[]).unwrap().is_empty());
    }

    /// Asserts that the clock index answers "what changed after" exactly as a scan of every
    /// record does, for every clock up to the current one.
    fn assert_index_matches_scan(root: &RootStore) {
        let now = root.meta().unwrap().clock;
        for since in 0..=now + 1 {
            let paths = |(changed, removed): (Vec<FileRecord>, Vec<RelPath>)| {
                let changed: Vec<(String, u64)> = changed
                    .into_iter()
                    .map(|r| (r.path.to_lossy(), r.clock))
                    .collect();
                (changed, removed)
            };
            assert_eq!(
                paths(root.changed_since(since).unwrap()),
                paths(root.changed_since_scan(since).unwrap()),
                "since {since}"
            );
        }
    }

    #[test]
    fn clock_index_answers_like_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let root = store.root("r1").unwrap();
        let p = |s: &str| RelPath::parse(s.as_bytes()).unwrap();
        // A first index, as a reconcile writes it: not indexed, the index starts after it.
        root.put_records(&mut [rec("a"), rec("b"), rec("d/c")], 1)
            .unwrap();
        root.commit(1, &[], &[], None).unwrap();
        assert_eq!(root.clock_index_from().unwrap(), Some(1));
        // Events: a change, an addition, a removal, then the removed file again.
        for changes in [
            ChangeSet {
                upserts: vec![rec("a"), rec("e")],
                ..Default::default()
            },
            ChangeSet {
                removed: vec![p("b")],
                removed_clocks: vec![1],
                ..Default::default()
            },
            // The caller says what each upsert replaces (as the event path does): b's
            // tombstone must still leave the index, and a's entry move without a read.
            ChangeSet {
                upserts: vec![rec("b"), rec("a")],
                replaced_clocks: vec![None, Some(2)],
                ..Default::default()
            },
        ] {
            root.apply(changes, None).unwrap();
        }
        // A later reconcile: records put, then a removal and a component change committed.
        let clock = root.meta().unwrap().clock + 1;
        root.put_records(&mut [rec("f"), rec("a")], clock).unwrap();
        root.commit(clock, &[p("e")], &[(p("d/c"), "d".into())], None)
            .unwrap();
        assert_index_matches_scan(&root);
        // One entry per path: re-changed paths left no stale entries behind.
        let entries = root.tree.scan_prefix(CLOCK_INDEX_PREFIX).count();
        assert_eq!(entries, 5, "a, b, d/c, e (tombstone), f");

        // A database from before the index: scans until its first write starts one.
        root.tree.remove(CLOCK_INDEX_FROM_KEY).unwrap();
        for item in root.tree.scan_prefix(CLOCK_INDEX_PREFIX) {
            root.tree.remove(item.unwrap().0).unwrap();
        }
        assert_index_matches_scan(&root);
        let before = root.meta().unwrap().clock;
        root.apply(
            ChangeSet {
                upserts: vec![rec("g")],
                removed: vec![p("f")],
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(root.clock_index_from().unwrap(), Some(before));
        assert_index_matches_scan(&root);
        let (changed, removed) = root.changed_since_indexed(before).unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(removed, vec![p("f")]);
    }

    #[test]
    fn second_open_is_locked_and_schema_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let id = store.instance_id().to_string();
        assert!(matches!(
            Store::open(dir.path(), 1 << 20),
            Err(StoreError::Locked(_))
        ));
        store
            .meta
            .insert(META_SCHEMA, &99u32.to_le_bytes())
            .unwrap();
        store.flush().unwrap();
        drop(store);
        match unlocked(|| Store::open(dir.path(), 1 << 20)) {
            Err(StoreError::UnknownSchema { found: 99, .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("opened a future schema"),
        }
        let _ = id;
    }

    fn some_root() -> RootEntry {
        RootEntry {
            path: b"/x".to_vec(),
            id: "abc".into(),
            added_ns: 5,
        }
    }

    #[test]
    fn inspect_creates_nothing_checks_schema_and_lets_go_of_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not-yet");
        assert_eq!(Store::inspect(&missing).unwrap(), None);
        assert!(!missing.exists(), "inspect created the folder");
        std::fs::create_dir(&missing).unwrap();
        assert_eq!(Store::inspect(&missing).unwrap(), None);
        assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 0);

        let db = dir.path().join("db");
        let store = Store::open(&db, 1 << 20).unwrap();
        let id = store.instance_id().to_string();
        store.set_roots(&[some_root()]).unwrap();
        // While a daemon holds it, inspect says so.
        assert!(matches!(Store::inspect(&db), Err(StoreError::Locked(_))));
        drop(store);
        let info = unlocked(|| Store::inspect(&db)).unwrap().unwrap();
        assert_eq!(info.schema, Some(SCHEMA));
        assert_eq!(info.instance_id.as_deref(), Some(id.as_str()));
        assert_eq!(info.roots.len(), 1);
        // The lock was released: a daemon can open it right after.
        let store = unlocked(|| Store::open(&db, 1 << 20)).unwrap();
        store.meta.insert(META_SCHEMA, &7u32.to_le_bytes()).unwrap();
        store.flush().unwrap();
        drop(store);
        assert!(matches!(
            unlocked(|| Store::inspect(&db)),
            Err(StoreError::UnknownSchema { found: 7, .. })
        ));
    }

    #[test]
    fn roots_persist() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            store.set_roots(&[some_root()]).unwrap();
        }
        let store = reopen(dir.path());
        assert_eq!(store.roots().unwrap().len(), 1);
    }

    #[test]
    fn a_rolled_back_database_is_repaired_reported_and_never_answers_old_clocks() {
        let dir = tempfile::tempdir().unwrap();
        let first_id;
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            first_id = store.instance_id().to_string();
            store.set_roots(&[some_root()]).unwrap();
            let root = store.root("abc").unwrap();
            root.apply(
                ChangeSet {
                    upserts: vec![rec("a"), rec("b")],
                    ..Default::default()
                },
                None,
            )
            .unwrap();
            store
                .registry()
                .unwrap()
                .set_settings(&Default::default())
                .unwrap();
            store.flush().unwrap();
            assert!(store.damage_reports().is_empty());
            assert!(store.verify(Depth::Full).unwrap().findings.is_empty());
        }
        // Healthy: reopening finds nothing.
        let store = reopen(dir.path());
        assert_eq!(store.instance_id(), first_id);
        assert!(store.damage_reports().is_empty());
        drop(store);
        // The record says more reached disk than the database holds: a rollback.
        let mut record = durable::read(dir.path()).unwrap().unwrap();
        assert_eq!(record.roots[0].clock, 1);
        record.roots[0].clock = 10;
        record.registry_generation += 3;
        durable::write(dir.path(), &record).unwrap();
        let check = unlocked(|| Store::check(dir.path(), Depth::Full))
            .unwrap()
            .unwrap();
        assert_eq!(check.findings.len(), 2, "{:?}", check.findings);
        let store = reopen(dir.path());
        assert_ne!(store.instance_id(), first_id);
        let reports = store.damage_reports();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].registry.contains("ROLLED BACK"), "{reports:?}");
        assert_eq!(reports[0].catalog_rebuilt, vec!["/x".to_string()]);
        let root = store.root("abc").unwrap();
        assert_eq!(
            root.meta().unwrap().clock,
            10,
            "clock floor above the durable one"
        );
        assert!(
            root.files_under(None).next().is_none(),
            "catalog emptied for a rebuild"
        );
        for old in 1..=10 {
            assert!(!root.can_answer_since(old).unwrap(), "clock {old}");
        }
        // The report survives a restart until acknowledged.
        drop(root);
        drop(store);
        let store = reopen(dir.path());
        assert_eq!(store.damage_reports().len(), 1);
        assert_eq!(store.acknowledge_damage().unwrap(), 1);
        assert!(store.damage_reports().is_empty());
        drop(store);
        let store = reopen(dir.path());
        assert!(store.damage_reports().is_empty());
        // A damaged record is damage too.
        drop(store);
        std::fs::write(dir.path().join(durable::FILE_NAME), b"x").unwrap();
        let store = reopen(dir.path());
        assert_eq!(store.damage_reports().len(), 1);
    }

    /// Opens a database just closed: sled's flusher thread may hold the lock a moment longer.
    fn reopen(dir: &Path) -> Store {
        unlocked(|| Store::open(dir, 1 << 20)).unwrap()
    }

    /// Runs `f` until the database it opens is no longer locked by a store just dropped.
    fn unlocked<T>(f: impl Fn() -> Result<T>) -> Result<T> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match f() {
                Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    #[test]
    fn kept_counts_equal_a_full_count_after_random_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let root = store.root("r1").unwrap();
        // Counted (empty) before any write, so every write below keeps them current.
        assert_eq!(root.counts().unwrap(), RecordCounts::default());
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let types = ["python", "rust", "text", "json"];
        let mut clock = 0;
        for round in 0..60 {
            let made = |next: &mut dyn FnMut(u64) -> u64| {
                let mut r = rec(&format!("d{}/f{}", next(4), next(40)));
                r.fingerprint.size = next(1000);
                r.file_type = types[next(4) as usize].into();
                r.purpose = Purpose::ALL[next(Purpose::ALL.len() as u64) as usize];
                r.error = (next(5) == 0).then(|| "unreadable".to_string());
                r
            };
            clock += 1;
            match round % 3 {
                0 => {
                    // A reconcile's stream (replacing whatever is there), then its commit.
                    let mut recs: HashMap<RelPath, FileRecord> = HashMap::new();
                    for _ in 0..next(30) {
                        let r = made(&mut next);
                        recs.insert(r.path.clone(), r);
                    }
                    let mut recs: Vec<FileRecord> = recs.into_values().collect();
                    root.put_records(&mut recs, clock).unwrap();
                    let removed: Vec<RelPath> = (0..next(5))
                        .map(|_| p(&format!("d{}/f{}", next(4), next(40))))
                        .filter(|p| !recs.iter().any(|r| &r.path == p))
                        .collect();
                    root.commit(clock, &removed, &[], None).unwrap();
                }
                _ => {
                    // An event batch: upserts and removals of distinct paths.
                    let mut changes = ChangeSet::default();
                    let mut seen = std::collections::HashSet::new();
                    for _ in 0..next(20) {
                        let r = made(&mut next);
                        if seen.insert(r.path.clone()) {
                            changes.upserts.push(r);
                        }
                    }
                    for _ in 0..next(8) {
                        let path = p(&format!("d{}/f{}", next(4), next(40)));
                        if seen.insert(path.clone()) {
                            changes.removed.push(path);
                        }
                    }
                    root.apply(changes, None).unwrap();
                }
            }
            // A second handle on the same tree counts every record from scratch.
            let fresh = store.root("r1").unwrap().counts().unwrap();
            assert_eq!(root.counts().unwrap(), fresh, "after round {round}");
        }
        let kept = root.counts().unwrap();
        assert!(kept.files > 20 && kept.unreadable > 0 && kept.by_type.len() > 1);
        assert_eq!(kept.files, root.totals().unwrap().0);
        assert_eq!(
            kept.by_purpose.iter().sum::<u64>(),
            kept.files,
            "every record has one purpose"
        );
    }

    fn p(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).unwrap()
    }
}
