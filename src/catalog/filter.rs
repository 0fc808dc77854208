//! Filters for catalog listings.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::record::{FileRecord, Purpose};

/// A listing filter; every set field must match.
#[derive(Clone, Debug, Default)]
pub struct FileFilter {
    /// A one-glob set: unlike a single `GlobMatcher`, building it reports a regex over the
    /// size limit as an error instead of panicking.
    pub glob: Option<GlobSet>,
    pub file_type: Option<String>,
    pub purpose: Option<Purpose>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    /// Only records changed after this clock.
    pub since_clock: Option<u64>,
}

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("bad glob {}: {message}", crate::quote::short(glob))]
    Glob { glob: String, message: String },
    #[error("unknown purpose {} (expected one of source, test, docs, config, build, generated, vendored, data, asset, other)", crate::quote::short(.0))]
    Purpose(String),
    #[error("min_size {0} is larger than max_size {1}")]
    SizeRange(u64, u64),
}

impl FileFilter {
    /// Builds a filter from request fields (empty strings mean "any").
    pub fn new(
        glob: &str,
        file_type: &str,
        purpose: &str,
        min_size: Option<u64>,
        max_size: Option<u64>,
        since_clock: Option<u64>,
    ) -> Result<FileFilter, FilterError> {
        let glob = if glob.is_empty() {
            None
        } else {
            // A glob without a '/' matches the file name at any depth, as in .gitignore.
            let pattern = if glob.contains('/') {
                glob.trim_start_matches('/').to_string()
            } else {
                format!("**/{glob}")
            };
            let bad = |e: globset::Error| FilterError::Glob {
                glob: glob.to_string(),
                // The kind only: the error itself quotes the whole pattern.
                message: e.kind().to_string(),
            };
            let compiled = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .map_err(bad)?;
            Some(GlobSetBuilder::new().add(compiled).build().map_err(bad)?)
        };
        let purpose = if purpose.is_empty() {
            None
        } else {
            Some(Purpose::parse(purpose).ok_or_else(|| FilterError::Purpose(purpose.to_string()))?)
        };
        if let (Some(lo), Some(hi)) = (min_size, max_size) {
            if lo > hi {
                return Err(FilterError::SizeRange(lo, hi));
            }
        }
        Ok(FileFilter {
            glob,
            file_type: (!file_type.is_empty()).then(|| file_type.to_string()),
            purpose,
            min_size,
            max_size,
            since_clock,
        })
    }

    /// Whether a path passes the glob (for removed paths, whose record is gone).
    pub fn matches_path(&self, path: &crate::paths::RelPath) -> bool {
        use std::os::unix::ffi::OsStrExt;
        self.glob
            .as_ref()
            .is_none_or(|g| g.is_match(std::ffi::OsStr::from_bytes(path.as_bytes())))
    }

    /// Whether a record passes the filter.
    pub fn matches(&self, r: &FileRecord) -> bool {
        if let Some(t) = &self.file_type {
            if &r.file_type != t {
                return false;
            }
        }
        if let Some(p) = self.purpose {
            if r.purpose != p {
                return false;
            }
        }
        if self.min_size.is_some_and(|m| r.fingerprint.size < m) {
            return false;
        }
        if self.max_size.is_some_and(|m| r.fingerprint.size > m) {
            return false;
        }
        if self.since_clock.is_some_and(|c| r.clock <= c) {
            return false;
        }
        if let Some(g) = &self.glob {
            use std::os::unix::ffi::OsStrExt;
            if !g.is_match(std::ffi::OsStr::from_bytes(r.path.as_bytes())) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            FileFilter::new("[", "", "", None, None, None),
            Err(FilterError::Glob { .. })
        ));
        assert!(matches!(
            FileFilter::new("", "", "nope", None, None, None),
            Err(FilterError::Purpose(_))
        ));
        assert!(matches!(
            FileFilter::new("", "", "", Some(5), Some(1), None),
            Err(FilterError::SizeRange(5, 1))
        ));
    }

    #[test]
    fn glob_without_slash_matches_any_depth() {
        let f = FileFilter::new("*.rs", "", "", None, None, None).unwrap();
        let g = f.glob.unwrap();
        assert!(g.is_match("a/b/c.rs"));
        assert!(g.is_match("c.rs"));
        let f = FileFilter::new("src/*.rs", "", "", None, None, None).unwrap();
        let g = f.glob.unwrap();
        assert!(g.is_match("src/c.rs"));
        assert!(!g.is_match("src/x/c.rs"));
    }
}
