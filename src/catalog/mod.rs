//! The catalog domain: what a file record holds, how a root is walked, hashed and classified,
//! and how a new scan is turned into a change set. Knows nothing of gRPC or sled.

pub mod classify;
pub mod filter;
pub mod hash;
pub mod record;
pub mod scan;

use std::collections::HashMap;

pub use filter::FileFilter;
pub use record::{FileKind, FileRecord, Fingerprint, Purpose};
pub use scan::{scan, ScanError, ScanProgress, ScanResult, WalkOptions};

use crate::paths::RelPath;

/// What one reconcile changes in a root's catalog.
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

/// Compares a scan with the previous records. Previous records under folders that could not be
/// listed are kept, not removed: an unreadable folder is not proof that its files are gone.
pub fn diff(previous: &HashMap<RelPath, FileRecord>, scanned: &ScanResult) -> ChangeSet {
    let mut changes = ChangeSet::default();
    let mut seen: std::collections::HashSet<&RelPath> =
        std::collections::HashSet::with_capacity(scanned.records.len());
    for record in &scanned.records {
        seen.insert(&record.path);
        match previous.get(&record.path) {
            Some(old) if old.same_state(record) => {}
            Some(_) => {
                changes.modified += 1;
                changes.upserts.push(record.clone());
            }
            None => {
                changes.added += 1;
                changes.upserts.push(record.clone());
            }
        }
    }
    let mut removed: Vec<RelPath> = previous
        .keys()
        .filter(|p| !seen.contains(p))
        .filter(|p| {
            !scanned
                .unreadable_dirs
                .iter()
                .any(|d| p.starts_with_dir(d.as_bytes()))
        })
        .cloned()
        .collect();
    removed.sort();
    changes.removed = removed;
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, sha: u8) -> FileRecord {
        FileRecord {
            path: RelPath::parse(path.as_bytes()).unwrap(),
            kind: FileKind::Regular,
            fingerprint: Fingerprint {
                size: 1,
                mtime_ns: 1,
                ctime_ns: 1,
                ino: 1,
                mode: 0o100644,
            },
            file_type: "text".into(),
            purpose: Purpose::Other,
            description: String::new(),
            component: ".".into(),
            sha256: Some([sha; 32]),
            symlink_target: None,
            error: None,
            clock: 1,
            dependencies: vec![],
            externals: vec![],
        }
    }

    #[test]
    fn diff_finds_added_modified_removed_and_keeps_unreadable() {
        let prev: HashMap<RelPath, FileRecord> =
            [rec("a", 1), rec("b", 1), rec("c", 1), rec("locked/x", 1)]
                .into_iter()
                .map(|r| (r.path.clone(), r))
                .collect();
        let scanned = ScanResult {
            records: vec![rec("a", 1), rec("b", 2), rec("d", 1)],
            unreadable_dirs: vec![RelPath::parse(b"locked").unwrap()],
            ..Default::default()
        };
        let cs = diff(&prev, &scanned);
        assert_eq!(cs.added, 1);
        assert_eq!(cs.modified, 1);
        assert_eq!(cs.removed, vec![RelPath::parse(b"c").unwrap()]);
        let paths: Vec<String> = cs.upserts.iter().map(|r| r.path.to_lossy()).collect();
        assert_eq!(paths, vec!["b", "d"]);
    }
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
