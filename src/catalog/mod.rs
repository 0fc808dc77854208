//! The catalog domain: what a file record holds, how a root is walked, hashed and classified,
//! and how a new scan is turned into a change set. Knows nothing of gRPC or sled.

pub mod classify;
pub mod filter;
pub mod hash;
pub mod record;
pub mod rules;
pub mod scan;

pub use filter::FileFilter;
pub use record::{FileKind, FileRecord, Fingerprint, Purpose, RecordCounts, RecordHead};
pub use scan::{
    hash_all, plan, walk, HashCounts, Plan, ScanError, ScanProgress, WalkEntry, WalkOptions, Walked,
};

use crate::paths::RelPath;

/// The stored record heads of a root, by path. Keys are paths of our own tree, so a fast
/// non-keyed hash is safe here; SipHash made a warm restart spend more time hashing paths
/// than comparing stat fingerprints.
pub type Heads = std::collections::HashMap<RelPath, RecordHead, fxhash::FxBuildHasher>;

/// What one batch changes in a root's catalog.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// New or changed records (their clock is set when the change set is applied).
    pub upserts: Vec<FileRecord>,
    /// For each upsert, the clock of the stored record it replaces (`None`: there was none),
    /// when the caller read it anyway; empty when unknown. Saves the store a read per path.
    pub replaced_clocks: Vec<Option<u64>>,
    pub removed: Vec<RelPath>,
    /// For each removal, the clock of the record it removes, when the caller read it; empty
    /// when unknown.
    pub removed_clocks: Vec<u64>,
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
    /// Pairs `(from, to)` of a path in `removed` and a record in `added` that are the same file
    /// moved: a rename, told as such where it is known.
    pub renamed: Vec<(RelPath, RelPath)>,
    /// Events may have been lost (queue overflow, a reconcile): subscribers must ask what
    /// changed since the last clock they saw.
    pub resync: bool,
}

/// Which removed records reappear among the added ones as the same file moved: same kind,
/// inode, size and content (or link target). Each side is used at most once.
pub fn pair_renames(removed: &[FileRecord], added: &[FileRecord]) -> Vec<(RelPath, RelPath)> {
    use std::collections::HashMap;
    /// Kind, inode, size, content hash, link target.
    type Identity<'a> = (FileKind, u64, u64, Option<[u8; 32]>, Option<&'a [u8]>);
    fn identity(r: &FileRecord) -> Option<Identity<'_>> {
        // A record without content identity (unreadable, never hashed) proves nothing.
        if r.error.is_some() || (r.kind == FileKind::Regular && r.sha256.is_none()) {
            return None;
        }
        Some((
            r.kind,
            r.fingerprint.ino,
            r.fingerprint.size,
            r.sha256,
            r.symlink_target.as_deref(),
        ))
    }
    if removed.is_empty() || added.is_empty() {
        return Vec::new();
    }
    let mut gone: HashMap<_, Vec<&RelPath>> = HashMap::new();
    for r in removed {
        if let Some(id) = identity(r) {
            gone.entry(id).or_default().push(&r.path);
        }
    }
    let mut pairs = Vec::new();
    for r in added {
        let Some(id) = identity(r) else { continue };
        if let Some(from) = gone.get_mut(&id).and_then(Vec::pop) {
            pairs.push((from.clone(), r.path.clone()));
        }
    }
    pairs
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

impl ScanReport {
    /// Whether the reconcile added, modified or removed any file (derived state such as the
    /// dependency graph must then follow).
    pub fn changed_files(&self) -> bool {
        self.files_added + self.files_modified + self.files_removed > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, ino: u64, content: u8) -> FileRecord {
        FileRecord {
            kind: FileKind::Regular,
            fingerprint: Fingerprint {
                size: 10,
                mtime_ns: 1,
                ctime_ns: 1,
                ino,
                mode: 0o100644,
            },
            sha256: Some([content; 32]),
            error: None,
            path: RelPath::parse(path.as_bytes()).unwrap(),
            file_type: "text".into(),
            purpose: Purpose::Other,
            description: String::new(),
            component: ".".into(),
            symlink_target: None,
            clock: 0,
            dependencies: vec![],
            externals: vec![],
        }
    }

    #[test]
    fn renames_pair_the_same_file_moved_and_nothing_else() {
        let p = |s: &str| RelPath::parse(s.as_bytes()).unwrap();
        let removed = [
            rec("a", 1, 1),
            rec("b", 2, 2),
            rec("c", 3, 3),
            rec("d", 4, 4),
        ];
        let mut unreadable = rec("z", 4, 4);
        unreadable.error = Some("denied".into());
        let added = [
            rec("a2", 1, 1), // moved
            rec("b2", 2, 9), // same inode, other content: a new file
            rec("c2", 7, 3), // same content, other inode: a copy
            unreadable,      // no identity to compare
        ];
        assert_eq!(pair_renames(&removed, &added), vec![(p("a"), p("a2"))]);
        // One source pairs with one destination only.
        let added = [rec("x", 1, 1), rec("y", 1, 1)];
        assert_eq!(pair_renames(&removed, &added).len(), 1);
    }
}
