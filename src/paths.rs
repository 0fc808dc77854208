//! Root-relative paths: the one place where paths from requests and from the disk are normalised.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a requested path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path {} is absolute: give a path relative to the root", crate::quote::short(.0))]
    Absolute(String),
    #[error("path {} contains a NUL byte", crate::quote::short(.0))]
    Nul(String),
    #[error("path {} escapes the root ('..' is not allowed)", crate::quote::short(.0))]
    Escapes(String),
    #[error("path {} is not inside the root", crate::quote::short(.0))]
    OutsideRoot(String),
}

/// A normalised root-relative path: '/'-separated, no '.', '..' or empty components, any bytes
/// but NUL (file names need not be UTF-8).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// Parses a path given by a client; refuses anything that could leave the root.
    pub fn parse(raw: &[u8]) -> Result<RelPath, PathError> {
        let shown = String::from_utf8_lossy(raw).into_owned();
        if raw.contains(&0) {
            return Err(PathError::Nul(shown));
        }
        if raw.first() == Some(&b'/') {
            return Err(PathError::Absolute(shown));
        }
        let mut out: Vec<u8> = Vec::with_capacity(raw.len());
        for part in raw.split(|b| *b == b'/') {
            match part {
                b"" | b"." => continue,
                b".." => return Err(PathError::Escapes(shown)),
                _ => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(part);
                }
            }
        }
        if out.is_empty() {
            return Err(PathError::Empty);
        }
        Ok(RelPath(out))
    }

    /// Makes the relative path of `path`, which must lie under `root`.
    pub fn from_fs(root: &Path, path: &Path) -> Result<RelPath, PathError> {
        let rel = path
            .strip_prefix(root)
            .map_err(|_| PathError::OutsideRoot(path.display().to_string()))?;
        let mut out: Vec<u8> = Vec::new();
        for comp in rel.components() {
            match comp {
                Component::Normal(name) => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(name.as_bytes());
                }
                Component::CurDir => {}
                _ => return Err(PathError::Escapes(path.display().to_string())),
            }
        }
        if out.is_empty() {
            return Err(PathError::Empty);
        }
        Ok(RelPath(out))
    }

    /// The path of entry `name` (one component, as read from a folder listing) inside `parent`
    /// (`None`: the root).
    pub fn child(parent: Option<&RelPath>, name: &[u8]) -> RelPath {
        match parent {
            Some(p) => {
                let mut out = Vec::with_capacity(p.0.len() + 1 + name.len());
                out.extend_from_slice(&p.0);
                out.push(b'/');
                out.extend_from_slice(name);
                RelPath(out)
            }
            None => RelPath(name.to_vec()),
        }
    }

    /// The raw bytes of the path.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as UTF-8 if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The path for display: invalid UTF-8 bytes become U+FFFD.
    pub fn to_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// The absolute path under `root`.
    pub fn to_fs(&self, root: &Path) -> PathBuf {
        root.join(OsStr::from_bytes(&self.0))
    }

    /// The file name (last component).
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|b| *b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// The ancestor folders, nearest first (without the root itself).
    pub fn ancestors(&self) -> impl Iterator<Item = &[u8]> {
        let bytes = &self.0;
        bytes
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'/')
            .map(move |(i, _)| &bytes[..i])
    }

    /// Whether this path equals `dir` or lies under it.
    pub fn starts_with_dir(&self, dir: &[u8]) -> bool {
        dir.is_empty()
            || (self.0.starts_with(dir) && (self.0.len() == dir.len() || self.0[dir.len()] == b'/'))
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_lossy())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_and_refuses_escapes() {
        assert_eq!(RelPath::parse(b"a//b/./c/").unwrap().as_bytes(), b"a/b/c");
        assert_eq!(RelPath::parse(b"./x").unwrap().as_bytes(), b"x");
        assert!(matches!(
            RelPath::parse(b"../etc/passwd"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(
            RelPath::parse(b"a/../../b"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(
            RelPath::parse(b"/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(RelPath::parse(b"a\0b"), Err(PathError::Nul(_))));
        assert!(matches!(RelPath::parse(b""), Err(PathError::Empty)));
        assert!(matches!(RelPath::parse(b"./"), Err(PathError::Empty)));
    }

    #[test]
    fn non_utf8_names_survive() {
        let p = RelPath::parse(b"dir/caf\xe9.txt").unwrap();
        assert_eq!(p.as_bytes(), b"dir/caf\xe9.txt");
        assert!(p.as_str().is_none());
        assert_eq!(p.to_lossy(), "dir/caf\u{fffd}.txt");
        assert_eq!(p.file_name(), b"caf\xe9.txt");
    }

    #[test]
    fn from_fs_strips_root() {
        let p = RelPath::from_fs(Path::new("/r"), Path::new("/r/a/b.rs")).unwrap();
        assert_eq!(p.as_bytes(), b"a/b.rs");
        assert!(RelPath::from_fs(Path::new("/r"), Path::new("/s/a")).is_err());
        assert!(RelPath::from_fs(Path::new("/r"), Path::new("/r")).is_err());
    }

    #[test]
    fn ancestors_nearest_first() {
        let p = RelPath::parse(b"a/b/c.rs").unwrap();
        let got: Vec<&[u8]> = p.ancestors().collect();
        assert_eq!(got, vec![&b"a/b"[..], &b"a"[..]]);
        assert!(p.starts_with_dir(b"a/b"));
        assert!(!p.starts_with_dir(b"a/bc"));
        assert!(p.starts_with_dir(b""));
    }
}
