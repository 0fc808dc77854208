//! Paged walks of what changed after a clock: a cursor holds only where it stands, so a caller
//! can read any number of changes a page at a time, with nothing else kept between pages.
//!
//! Consistency: a cursor is bounded by the root's clock when it was made (`upto`). Every path
//! changed or removed after `since` and at or before `upto` is told once, unless it changed
//! again after `upto` before the walk reached it: then its new clock is above `upto`, so the
//! next "what changed after `upto`" tells it. A caller holding `upto` at the end has therefore
//! lost nothing; it may see a change twice (here and in the next answer), never zero times.

use std::collections::HashMap;
use std::ops::Bound;

use super::{
    decode, file_key, tombstone_key, FileRecord, Result, RootStore, Tombstone, CLOCK_INDEX_PREFIX,
    FILE_PREFIX, TOMBSTONE_PREFIX,
};
use crate::paths::RelPath;

/// One change told by a [`ChangeCursor`].
#[derive(Debug)]
pub enum Change {
    /// A file added or modified after the cursor's clock (its current record).
    Changed(Box<FileRecord>),
    /// A path removed after the cursor's clock.
    Removed(RelPath),
}

/// Which keys a cursor walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// The clock index, from `since + 1` up to `upto`.
    Index,
    /// Every record (no index covers `since`, or `since` is 0).
    Files,
    /// Every tombstone, after the records, when `since` is not 0 and no index covers it.
    Tombstones,
    Done,
}

/// Where a walk of the changes after a clock stands. Small and self-contained: each page
/// reads the store afresh from the last key read.
#[derive(Clone, Debug)]
pub struct ChangeCursor {
    since: u64,
    upto: u64,
    walk: Walk,
    /// The last key read in the current walk; the next page starts after it.
    after: Option<Vec<u8>>,
}

impl ChangeCursor {
    /// The root's clock when the cursor was made: what a caller holds once the walk is done.
    pub fn clock(&self) -> u64 {
        self.upto
    }

    /// Whether every change has been told.
    pub fn is_done(&self) -> bool {
        self.walk == Walk::Done
    }
}

impl RootStore {
    /// A cursor over the changes after `since` (0: every record, no removal), bounded by the
    /// root's clock now. Reads only the changes when the clock index covers `since`.
    pub fn change_cursor(&self, since: u64) -> Result<ChangeCursor> {
        let upto = self.meta()?.clock;
        let walk = match self.clock_index_from()? {
            Some(from) if since > 0 && since >= from => Walk::Index,
            _ => Walk::Files,
        };
        Ok(ChangeCursor {
            since,
            upto,
            walk,
            after: None,
        })
    }

    /// Tells the changes after `cursor`'s position to `take`, in key order, until `take`
    /// answers `false` (it keeps the change it was given) or the walk ends.
    pub fn next_changes(
        &self,
        cursor: &mut ChangeCursor,
        mut take: impl FnMut(Change) -> bool,
    ) -> Result<()> {
        loop {
            let (prefix, start, end) = match cursor.walk {
                Walk::Done => return Ok(()),
                Walk::Index => (
                    CLOCK_INDEX_PREFIX,
                    [
                        CLOCK_INDEX_PREFIX,
                        &cursor.since.saturating_add(1).to_be_bytes(),
                    ]
                    .concat(),
                    Some(
                        [
                            CLOCK_INDEX_PREFIX,
                            &cursor.upto.saturating_add(1).to_be_bytes(),
                        ]
                        .concat(),
                    ),
                ),
                Walk::Files => (FILE_PREFIX, FILE_PREFIX.to_vec(), None),
                Walk::Tombstones => (TOMBSTONE_PREFIX, TOMBSTONE_PREFIX.to_vec(), None),
            };
            let lower = match &cursor.after {
                Some(key) => Bound::Excluded(key.clone()),
                None => Bound::Included(start),
            };
            let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
            for item in self.tree.range::<Vec<u8>, _>((lower, upper)) {
                let (key, value) = item?;
                let Some(rest) = key.strip_prefix(prefix) else {
                    break;
                };
                let change = match cursor.walk {
                    Walk::Index => {
                        self.indexed_change(rest.get(8..).unwrap_or_default(), cursor.since)?
                    }
                    Walk::Files => {
                        let rec: FileRecord = decode(&value)?;
                        (rec.clock > cursor.since).then(|| Change::Changed(Box::new(rec)))
                    }
                    Walk::Tombstones => {
                        let at = Tombstone::decode(&value)?.clock;
                        match RelPath::parse(rest) {
                            Ok(path) if at > cursor.since => Some(Change::Removed(path)),
                            _ => None,
                        }
                    }
                    Walk::Done => None,
                };
                cursor.after = Some(key.to_vec());
                if let Some(change) = change {
                    if !take(change) {
                        return Ok(());
                    }
                }
            }
            cursor.after = None;
            cursor.walk = match cursor.walk {
                Walk::Files if cursor.since > 0 => Walk::Tombstones,
                _ => Walk::Done,
            };
        }
    }

    /// What a clock-index entry for `path` says changed after `since`. An entry may be stale
    /// (the path changed again since): the record or tombstone itself says whether and how.
    fn indexed_change(&self, path: &[u8], since: u64) -> Result<Option<Change>> {
        let Ok(path) = RelPath::parse(path) else {
            return Ok(None);
        };
        if let Some(v) = self.tree.get(file_key(&path))? {
            let rec: FileRecord = decode(&v)?;
            return Ok((rec.clock > since).then(|| Change::Changed(Box::new(rec))));
        }
        if let Some(v) = self.tree.get(tombstone_key(&path))? {
            if Tombstone::decode(&v)?.clock > since {
                return Ok(Some(Change::Removed(path)));
            }
        }
        Ok(None)
    }
}

/// Finds the folders that may have appeared or vanished after a clock among the ancestors of
/// changed and removed paths, a batch of paths at a time, remembering what it looked at.
pub struct FolderProbe {
    since: u64,
    /// Whether each folder looked at holds a record unchanged since the clock.
    holds_old: HashMap<Vec<u8>, bool>,
}

impl FolderProbe {
    /// A probe for folders changed after `since`.
    pub fn new(since: u64) -> FolderProbe {
        FolderProbe {
            since,
            holds_old: HashMap::new(),
        }
    }

    /// The folders above `paths` not seen before that hold no record unchanged since the
    /// clock, sorted. A folder that holds such a record existed then and exists now; any
    /// other may be new or gone (or merely emptied and refilled, which costs a caller only a
    /// look). A folder holding an old record makes every folder above it hold one too, and a
    /// folder without one makes every folder below it lack one: so each path's folders are
    /// probed from the top down, and below the first new one nothing more is read.
    pub fn new_folders<'a>(
        &mut self,
        store: &RootStore,
        paths: impl IntoIterator<Item = &'a RelPath>,
    ) -> Result<Vec<Vec<u8>>> {
        let mut found = Vec::new();
        for path in paths {
            let dirs: Vec<&[u8]> = path.ancestors().collect();
            // Folders are probed top-down whole: a known parent means a known chain.
            match dirs.first() {
                Some(parent) if !self.holds_old.contains_key(*parent) => {}
                _ => continue,
            }
            let mut new_above = false;
            for dir in dirs.into_iter().rev() {
                let old = match self.holds_old.get(dir) {
                    Some(known) => *known,
                    None => {
                        let old = !new_above && store.holds_record_at_or_before(dir, self.since)?;
                        self.holds_old.insert(dir.to_vec(), old);
                        if !old {
                            found.push(dir.to_vec());
                        }
                        old
                    }
                };
                new_above |= !old;
            }
        }
        found.sort();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::rec;
    use super::super::Store;
    use super::*;
    use crate::catalog::ChangeSet;

    /// Every change a cursor tells, read in pages of `page` changes.
    fn walk(root: &RootStore, since: u64, page: usize) -> (Vec<String>, Vec<String>, u64) {
        let mut cursor = root.change_cursor(since).unwrap();
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        let mut pages = 0;
        while !cursor.is_done() {
            let mut n = 0;
            root.next_changes(&mut cursor, |c| {
                match c {
                    Change::Changed(r) => changed.push(r.path.to_lossy()),
                    Change::Removed(p) => removed.push(p.to_lossy()),
                }
                n += 1;
                n < page
            })
            .unwrap();
            pages += 1;
            assert!(pages < 1000, "the walk must end");
        }
        changed.sort();
        removed.sort();
        (changed, removed, cursor.clock())
    }

    #[test]
    fn a_paged_walk_tells_what_an_answer_at_once_tells() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let root = store.root("r1").unwrap();
        let p = |s: &str| RelPath::parse(s.as_bytes()).unwrap();
        let first: Vec<FileRecord> = (0..50).map(|i| rec(&format!("d{}/f{i}", i % 7))).collect();
        root.put_records(&mut first.clone(), 1).unwrap();
        root.commit(1, &[], &[], None).unwrap();
        for i in 0..20 {
            root.apply(
                ChangeSet {
                    upserts: vec![
                        rec(&format!("new/g{i}")),
                        rec(&format!("d1/f{}", i * 7 + 1)),
                    ],
                    removed: if i % 3 == 0 {
                        vec![p(&format!("d{}/f{}", i % 7, i))]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        }
        let now = root.meta().unwrap().clock;
        for since in 0..=now {
            let (changed, removed) = root.changed_since(since).unwrap();
            let want: Vec<String> = changed.iter().map(|r| r.path.to_lossy()).collect();
            let gone: Vec<String> = removed.iter().map(RelPath::to_lossy).collect();
            for page in [1, 3, 1000] {
                let (c, r, clock) = walk(&root, since, page);
                assert_eq!((&c, &r), (&want, &gone), "since {since}, pages of {page}");
                assert_eq!(clock, now);
            }
        }
        // Without the index (an old database), records then tombstones are scanned.
        root.tree
            .remove(super::super::CLOCK_INDEX_FROM_KEY)
            .unwrap();
        for since in [0, 3, now] {
            let (changed, removed) = root.changed_since(since).unwrap();
            let want: Vec<String> = changed.iter().map(|r| r.path.to_lossy()).collect();
            let gone: Vec<String> = removed.iter().map(RelPath::to_lossy).collect();
            assert_eq!(
                walk(&root, since, 2),
                (want, gone, now),
                "scan since {since}"
            );
        }
    }

    #[test]
    fn a_change_after_the_cursor_was_made_is_left_to_the_next_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let root = store.root("r1").unwrap();
        root.put_records(&mut [rec("a"), rec("b"), rec("c")], 1)
            .unwrap();
        root.commit(1, &[], &[], None).unwrap();
        for name in ["a", "b", "c"] {
            root.apply(
                ChangeSet {
                    upserts: vec![rec(name)],
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        }
        // Clocks: a 2, b 3, c 4. Read a, then c changes again: it moves past the cursor's
        // bound, so this walk skips it and the next one (after the clock held) has it.
        let mut cursor = root.change_cursor(1).unwrap();
        let mut seen = Vec::new();
        root.next_changes(&mut cursor, |c| {
            if let Change::Changed(r) = c {
                seen.push(r.path.to_lossy());
            }
            false
        })
        .unwrap();
        root.apply(
            ChangeSet {
                upserts: vec![rec("c")],
                ..Default::default()
            },
            None,
        )
        .unwrap();
        root.next_changes(&mut cursor, |c| {
            if let Change::Changed(r) = c {
                seen.push(r.path.to_lossy());
            }
            true
        })
        .unwrap();
        assert!(cursor.is_done());
        assert_eq!(seen, ["a", "b"]);
        let (next, _, _) = walk(&root, cursor.clock(), 10);
        assert_eq!(next, ["c"]);
    }
}
