//! The catalog domain: what a file record holds, how a root is walked, hashed and classified,
//! and how a new scan is turned into a change set. Knows nothing of gRPC or sled.

pub mod classify;
pub mod filter;
pub mod hash;
pub mod record;
pub mod rules;
pub mod scan;

pub use filter::FileFilter;
pub use record::{FileKind, FileRecord, Fingerprint, Purpose, RecordHead};
pub use scan::{
    hash_all, plan, walk, HashCounts, Plan, ScanError, ScanProgress, WalkEntry, WalkOptions, Walked,
};

use crate::paths::RelPath;

/// What one batch changes in a root's catalog.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// New or changed records (their clock is set when the change set is applied).
    pub upserts: Vec<FileRecord>,
    pub removed: Vec<RelPath>,
    pub added: u64,
    pub modified: u64,
}

impl ChangeSet {
    /// Whether applying this change set would change nothing.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty()
    }
}

/// What one applied batch changed, as told to subscribers.
#[derive(Clone, Debug, Default)]
pub struct ChangeBatch {
    pub root_id: String,
    /// The root's clock after the batch.
    pub clock: u64,
    pub added: Vec<FileRecord>,
    pub modified: Vec<FileRecord>,
    pub removed: Vec<RelPath>,
    /// Events may have been lost (queue overflow, a reconcile): subscribers must ask what
    /// changed since the last clock they saw.
    pub resync: bool,
}

/// Figures of one completed reconcile of a root.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanReport {
    pub started_ns: i64,
    pub duration_ms: u64,
    pub files_seen: u64,
    pub files_hashed: u64,
    pub files_skipped: u64,
    pub files_added: u64,
    pub files_modified: u64,
    pub files_removed: u64,
    pub bytes_hashed: u64,
    pub errors: u64,
    /// Why the scan ran: "startup", "rescan", "watch".
    pub reason: String,
}
