//! The catalog's record of one file, as persisted and as served.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::paths::RelPath;

/// What kind of filesystem object an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    Regular,
    Symlink,
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
}

impl FileKind {
    /// Classifies `lstat` file-type bits; `None` for directories.
    pub fn from_file_type(ft: std::fs::FileType) -> Option<FileKind> {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_file() {
            Some(FileKind::Regular)
        } else if ft.is_symlink() {
            Some(FileKind::Symlink)
        } else if ft.is_fifo() {
            Some(FileKind::Fifo)
        } else if ft.is_socket() {
            Some(FileKind::Socket)
        } else if ft.is_block_device() {
            Some(FileKind::BlockDevice)
        } else if ft.is_char_device() {
            Some(FileKind::CharDevice)
        } else {
            None
        }
    }
}

/// The stat fields that decide whether a file must be hashed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub mode: u32,
}

impl Fingerprint {
    /// Reads the fingerprint out of stat metadata.
    pub fn of(meta: &std::fs::Metadata) -> Fingerprint {
        use std::os::unix::fs::MetadataExt;
        Fingerprint {
            size: meta.size(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec(),
            ctime_ns: meta.ctime().saturating_mul(1_000_000_000) + meta.ctime_nsec(),
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }
}

/// What a file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Purpose {
    Source,
    Test,
    Docs,
    Config,
    Build,
    Generated,
    Vendored,
    Data,
    Asset,
    Other,
}

impl Purpose {
    /// Every purpose, in a stable order.
    pub const ALL: [Purpose; 10] = [
        Purpose::Source,
        Purpose::Test,
        Purpose::Docs,
        Purpose::Config,
        Purpose::Build,
        Purpose::Generated,
        Purpose::Vendored,
        Purpose::Data,
        Purpose::Asset,
        Purpose::Other,
    ];

    /// The lowercase name used on the wire and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Source => "source",
            Purpose::Test => "test",
            Purpose::Docs => "docs",
            Purpose::Config => "config",
            Purpose::Build => "build",
            Purpose::Generated => "generated",
            Purpose::Vendored => "vendored",
            Purpose::Data => "data",
            Purpose::Asset => "asset",
            Purpose::Other => "other",
        }
    }

    /// Parses a lowercase purpose name.
    pub fn parse(s: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// One catalogued file.
///
/// Field order matters: the first four fields are the persisted prefix that [`RecordHead`]
/// decodes on its own, so a restart can compare fingerprints without decoding whole records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub kind: FileKind,
    pub fingerprint: Fingerprint,
    pub sha256: Option<[u8; 32]>,
    pub error: Option<String>,
    pub path: RelPath,
    pub file_type: String,
    pub purpose: Purpose,
    pub description: String,
    pub component: String,
    pub symlink_target: Option<Vec<u8>>,
    /// Root clock of the last change to this record.
    pub clock: u64,
    pub dependencies: Vec<String>,
    pub externals: Vec<String>,
}

/// The leading fields of a stored [`FileRecord`]: what a reconcile needs to decide whether a
/// file must be hashed again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordHead {
    pub kind: FileKind,
    pub fingerprint: Fingerprint,
    pub sha256: Option<[u8; 32]>,
    pub error: Option<String>,
}

impl RecordHead {
    /// Whether an entry now stat'ed as `kind`/`fingerprint` can keep this record without being
    /// read: same stat, no earlier error, and an mtime older than `racy_cutoff` (a file
    /// modified within the cut-off could have changed again within one timestamp tick).
    pub fn still_valid(&self, kind: FileKind, fingerprint: &Fingerprint, racy_cutoff: i64) -> bool {
        self.kind == kind
            && self.fingerprint == *fingerprint
            && self.error.is_none()
            && fingerprint.mtime_ns < racy_cutoff
    }

    /// Whether a freshly made record says exactly what this one said (a racily clean file
    /// that hashed the same is no change).
    pub fn same_content(&self, record: &FileRecord) -> bool {
        self.kind == record.kind
            && self.fingerprint == record.fingerprint
            && self.sha256 == record.sha256
            && self.error == record.error
    }
}

impl FileRecord {
    /// The record's leading fields, as a reconcile compares them.
    pub fn head(&self) -> RecordHead {
        RecordHead {
            kind: self.kind,
            fingerprint: self.fingerprint,
            sha256: self.sha256,
            error: self.error.clone(),
        }
    }

    /// SHA-256 as 64 lowercase hex characters (empty when not hashed).
    pub fn sha256_hex(&self) -> String {
        self.sha256.map(|h| hex(&h)).unwrap_or_default()
    }

    /// The original system's checksum: the first 16 hex characters of the SHA-256.
    pub fn checksum(&self) -> String {
        self.sha256.map(|h| hex(&h[..8])).unwrap_or_default()
    }

    /// Whether two records describe the same observable state (the clock aside).
    pub fn same_state(&self, other: &FileRecord) -> bool {
        self.path == other.path
            && self.kind == other.kind
            && self.fingerprint.size == other.fingerprint.size
            && self.fingerprint.mtime_ns == other.fingerprint.mtime_ns
            && self.fingerprint.mode == other.fingerprint.mode
            && self.sha256 == other.sha256
            && self.symlink_target == other.symlink_target
            && self.error == other.error
            && self.file_type == other.file_type
            && self.purpose == other.purpose
            && self.description == other.description
            && self.component == other.component
            && self.dependencies == other.dependencies
            && self.externals == other.externals
    }
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// RFC 3339 UTC timestamp of nanoseconds since the Unix epoch.
pub fn rfc3339_ns(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        nanos
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// How many records a root has, their total size, how many are unreadable, and how many of
/// each file type and purpose: what `status` reports. The store keeps one current with every
/// write, so answering does not read the records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub files: u64,
    pub bytes: u64,
    pub unreadable: u64,
    /// Records per file type; a type whose count falls to 0 is removed.
    pub by_type: HashMap<String, u64>,
    /// Records per purpose, indexed like [`Purpose::ALL`].
    pub by_purpose: [u64; Purpose::ALL.len()],
}

impl RecordCounts {
    /// Counts one more record.
    pub fn add(&mut self, size: u64, unreadable: bool, file_type: &str, purpose: Purpose) {
        self.files += 1;
        self.bytes = self.bytes.saturating_add(size);
        self.unreadable += u64::from(unreadable);
        match self.by_type.get_mut(file_type) {
            Some(n) => *n += 1,
            None => {
                self.by_type.insert(file_type.to_string(), 1);
            }
        }
        self.by_purpose[purpose as usize] += 1;
    }

    /// Counts one record fewer (one that [`RecordCounts::add`] counted with the same values).
    pub fn remove(&mut self, size: u64, unreadable: bool, file_type: &str, purpose: Purpose) {
        self.files = self.files.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(size);
        self.unreadable = self.unreadable.saturating_sub(u64::from(unreadable));
        if let Some(n) = self.by_type.get_mut(file_type) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_type.remove(file_type);
            }
        }
        let p = &mut self.by_purpose[purpose as usize];
        *p = p.saturating_sub(1);
    }

    /// Counts a whole record.
    pub fn add_record(&mut self, rec: &FileRecord) {
        self.add(
            rec.fingerprint.size,
            rec.error.is_some(),
            &rec.file_type,
            rec.purpose,
        );
    }

    /// The purposes with at least one record, with their counts.
    pub fn purposes(&self) -> impl Iterator<Item = (Purpose, u64)> + '_ {
        Purpose::ALL
            .into_iter()
            .zip(self.by_purpose)
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_ns(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339_ns(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(rfc3339_ns(-1_000_000_000), "1969-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn hex_and_checksum() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn counts_index_purposes_in_the_order_of_all_and_drop_empty_types() {
        for (i, p) in Purpose::ALL.into_iter().enumerate() {
            assert_eq!(p as usize, i, "{p:?}");
        }
        let mut c = RecordCounts::default();
        c.add(10, false, "rust", Purpose::Test);
        c.add(5, true, "python", Purpose::Source);
        c.remove(10, false, "rust", Purpose::Test);
        assert_eq!((c.files, c.bytes, c.unreadable), (1, 5, 1));
        assert!(!c.by_type.contains_key("rust"));
        assert_eq!(c.purposes().collect::<Vec<_>>(), [(Purpose::Source, 1)]);
    }
}
