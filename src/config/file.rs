//! The TOML configuration file: every key checked against the known settings, every error
//! naming the file, the line and the key.

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::settings::{Key, KEYS};
use super::values::{parse_toml, PathBase, Value};

/// A configuration file that was read and checked.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The values it sets, with the line of each.
    pub values: Vec<(&'static str, Value, usize)>,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}:{line}: unknown key `{key}`{hint}")]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        hint: String,
    },
    #[error("{path}:{line}: `{key}`: {message}")]
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

impl ConfigFile {
    /// Reads and checks the file at `path`.
    pub fn read(path: &Path, home: Option<&Path>) -> Result<ConfigFile, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ConfigFile::parse(path, &text, home)
    }

    /// Checks `text`, read from `path` (relative paths in it are taken from its folder).
    pub fn parse(path: &Path, text: &str, home: Option<&Path>) -> Result<ConfigFile, FileError> {
        let doc = DeTable::parse(text).map_err(|e| {
            let (line, column) = position(text, e.span().map_or(0, |s| s.start));
            FileError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        let base = PathBase { dir, home };
        let mut file = ConfigFile {
            path: path.to_path_buf(),
            values: Vec::new(),
        };
        let mut walker = Walker {
            path,
            text,
            base: &base,
            out: &mut file.values,
        };
        walker.table(doc.get_ref(), "")?;
        Ok(file)
    }
}

struct Walker<'a> {
    path: &'a Path,
    text: &'a str,
    base: &'a PathBase<'a>,
    out: &'a mut Vec<(&'static str, Value, usize)>,
}

impl Walker<'_> {
    fn table(&mut self, table: &DeTable<'_>, prefix: &str) -> Result<(), FileError> {
        for (k, v) in table.iter() {
            let name = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            let line = position(self.text, k.span().start).0;
            if let DeValue::Table(inner) = v.get_ref() {
                if is_section(&name) {
                    self.table(inner, &name)?;
                    continue;
                }
            }
            let Some(key) = KEYS.iter().find(|key| key.name == name) else {
                return Err(self.unknown(name, line));
            };
            let value = parse_toml(key.kind, v.get_ref(), self.base).map_err(|message| {
                FileError::BadValue {
                    path: self.path.to_path_buf(),
                    line: position(self.text, v.span().start).0,
                    key: name.clone(),
                    message,
                }
            })?;
            self.out.push((key.name, value, line));
        }
        Ok(())
    }

    fn unknown(&self, name: String, line: usize) -> FileError {
        let hint = if is_section(&name) {
            format!(" (`{name}` is a section: write `[{name}]` and keys under it)")
        } else {
            match closest(&name) {
                Some(k) => format!(" (did you mean `{}`?)", k.name),
                None => format!(
                    " (known keys: {})",
                    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                ),
            }
        };
        FileError::UnknownKey {
            path: self.path.to_path_buf(),
            line,
            key: name,
            hint,
        }
    }
}

/// A section is a prefix of some key (`watch` of `watch.settle`).
fn is_section(name: &str) -> bool {
    KEYS.iter().any(|k| {
        k.name
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The known key nearest to a misspelt one, if it is near enough to be the one meant.
fn closest(name: &str) -> Option<&'static Key> {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    KEYS.iter()
        .map(|k| {
            let d = edit_distance(name, k.name).min(edit_distance(
                leaf,
                k.name.rsplit('.').next().unwrap_or(k.name),
            ));
            (d, k)
        })
        .filter(|(d, _)| *d <= 2.max(name.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, FileError> {
        ConfigFile::parse(
            Path::new("/etc/wfdb/config.toml"),
            text,
            Some(Path::new("/home/a")),
        )
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(f) => panic!("accepted: {:?}", f.values),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_full_file_is_read_with_the_line_of_each_value() {
        let f = parse(
            "# comment\nroots = [\"/srv/a\", \"b\"]\ndb = \"~/db\"\n\n[watch]\nsettle = \"20ms\"\nmax_watches = 100\n[log]\nformat = \"json\"\n[retention]\ntombstones = \"30d\"\n",
        )
        .unwrap();
        let get = |k: &str| f.values.iter().find(|(n, _, _)| *n == k).cloned().unwrap();
        assert_eq!(
            get("roots"),
            (
                "roots",
                Value::Paths(vec!["/srv/a".into(), "/etc/wfdb/b".into()]),
                2
            )
        );
        assert_eq!(get("db").1, Value::Path("/home/a/db".into()));
        assert_eq!(get("watch.settle").2, 6);
        assert_eq!(get("watch.max_watches").1, Value::Int(100));
        assert_eq!(get("log.format").2, 9);
    }

    #[test]
    fn dotted_keys_and_inline_tables_work_like_sections() {
        let f = parse("watch.settle = \"5ms\"\nlog = { format = \"human\" }\n").unwrap();
        assert_eq!(f.values.len(), 2);
    }

    #[test]
    fn every_refusal_names_the_file_the_line_and_the_key() {
        let e = error("db = \"/x\"\n[watch]\nsetle = \"1s\"\n");
        assert_eq!(
            e,
            "/etc/wfdb/config.toml:3: unknown key `watch.setle` (did you mean `watch.settle`?)"
        );
        let e = error("cache_mb = \"big\"\n");
        assert!(
            e.starts_with("/etc/wfdb/config.toml:1: `cache_mb`: expected a whole number"),
            "{e}"
        );
        let e = error("\n\nsync_timeout = \"soon\"\n");
        assert!(
            e.starts_with("/etc/wfdb/config.toml:3: `sync_timeout`:"),
            "{e}"
        );
        let e = error("[log]\nformat = \"xml\"\n");
        assert!(e.contains(":2: `log.format`: expected one of"), "{e}");
        let e = error("listen = \"localhost\"\n");
        assert!(e.contains(":1: `listen`:"), "{e}");
        let e = error("watch = 3\n");
        assert!(e.contains("`watch` is a section"), "{e}");
        let e = error("ignore = [\"a\", 3]\n");
        assert!(e.contains("`ignore`: expected an array of strings"), "{e}");
        let e = error("cache_mb = -5\n");
        assert!(e.contains("must not be negative"), "{e}");
        let e = error("frobnicate = 1\n");
        assert!(
            e.contains("unknown key `frobnicate` (known keys: roots"),
            "{e}"
        );
    }

    #[test]
    fn hostile_files_are_refused_without_a_panic() {
        for text in [
            "watch.settle.x = 1\n",
            "[watch.settle]\nx = 1\n",
            "[[roots]]\npath = \"/a\"\n",
            "= 1\n",
            "db = \"\0\"\n",
            "cache_mb = 99999999999999999999\n",
            "cache_mb = 0x7fffffffffffffff\n",
            "sync_timeout = nan\n",
            "sync_timeout = inf\n",
            "sync_timeout = -0.5\n",
            "sync_timeout = 1e400\n",
            "sync_timeout = \"99999999999999999999d\"\n",
            "retention.tombstones = -1\n",
            "ignore = [[\"a\"]]\n",
            "log = { format = { nested = 1 } }\n",
            "\u{feff}\u{202e}db = 1\n",
        ] {
            assert!(parse(text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn access_rules_are_read_and_each_bad_value_is_named() {
        use crate::access::{LocalGrant, LocalPrincipal, Scope, Scopes, TokenGrant};
        let f = parse(
            "[access]\nwatch_roots = [\"/srv\", \"code\"]\n\
             local_users = [{ uid = 1001, scopes = [\"read\"] }, { gid = 100, scopes = [\"read\", \"write\"] }]\n\
             [[access.tokens]]\nname = \"ci\"\nfile = \"ci.token\"\nscopes = [\"read\", \"admin\"]\n",
        )
        .unwrap();
        let get = |k: &str| f.values.iter().find(|(n, _, _)| *n == k).cloned().unwrap();
        assert_eq!(
            get("access.watch_roots").1,
            Value::Paths(vec!["/srv".into(), "/etc/wfdb/code".into()])
        );
        let read: Scopes = [Scope::Read].into_iter().collect();
        assert_eq!(
            get("access.local_users").1,
            Value::LocalUsers(vec![
                LocalGrant {
                    who: LocalPrincipal::Uid(1001),
                    scopes: read
                },
                LocalGrant {
                    who: LocalPrincipal::Gid(100),
                    scopes: read.with(Scope::Write)
                },
            ])
        );
        let tokens = get("access.tokens").1;
        assert_eq!(
            tokens,
            Value::Tokens(vec![TokenGrant {
                name: "ci".into(),
                file: "/etc/wfdb/ci.token".into(),
                scopes: read.with(Scope::Admin),
            }])
        );
        assert_eq!(tokens.render(), "ci (/etc/wfdb/ci.token): read, admin");
        assert_eq!(
            get("access.local_users").1.render(),
            "uid 1001: read; gid 100: read, write"
        );
        for (text, wanted) in [
            ("[access]\nlocal_users = [{ uid = 1, scopes = [\"root\"] }]\n", "unknown scope \"root\""),
            ("[access]\nlocal_users = [{ uid = 1, scopes = [] }]\n", "must name at least one"),
            ("[access]\nlocal_users = [{ uid = -1, scopes = [\"read\"] }]\n", "`uid` must be in 0..=4294967295"),
            ("[access]\nlocal_users = [{ uid = 4294967296, scopes = [\"read\"] }]\n", "`uid` must be in"),
            ("[access]\nlocal_users = [{ uid = \"alice\", scopes = [\"read\"] }]\n", "`uid` must be a whole number"),
            ("[access]\nlocal_users = [{ uid = 1, gid = 2, scopes = [\"read\"] }]\n", "not both"),
            ("[access]\nlocal_users = [{ scopes = [\"read\"] }]\n", "needs a `uid` or a `gid`"),
            ("[access]\nlocal_users = [{ uid = 1 }]\n", "needs `scopes`"),
            ("[access]\nlocal_users = [{ uid = 1, scopes = \"read\" }]\n", "`scopes` must be an array"),
            ("[access]\nlocal_users = [{ uid = 1, scopes = [\"read\"], user = \"x\" }]\n", "unknown field \"user\""),
            ("[access]\nlocal_users = [1]\n", "entry 1: expected a table"),
            ("[access]\nlocal_users = { uid = 1 }\n", "expected an array of tables"),
            ("[access]\ntokens = [{ name = \"ci\", token = \"s3cret\", scopes = [\"read\"] }]\n", "unknown field \"token\""),
            ("[access]\ntokens = [{ name = \"ci\", scopes = [\"read\"] }]\n", "needs a `file`"),
            ("[access]\ntokens = [{ file = \"t\", scopes = [\"read\"] }]\n", "needs a `name`"),
            ("[access]\ntokens = [{ name = \"a b\", file = \"t\", scopes = [\"read\"] }]\n", "`name` must be"),
            ("[access]\ntokens = [{ name = \"ci\", file = \"t\", scopes = [\"read\"] }, { name = \"ci\", file = \"u\", scopes = [\"write\"] }]\n", "entry 2: the name `ci` is used twice"),
            ("[access]\ntokens = [{ name = \"ci\", file = 3, scopes = [\"read\"] }]\n", "`file` must be a string"),
            ("[access]\nwatch_roots = \"/srv\"\n", "expected an array of path strings"),
            ("[access]\nlocal_user = []\n", "did you mean `access.local_users`"),
        ] {
            let e = error(text);
            assert!(e.contains(wanted), "{text}: {e}");
            assert!(e.starts_with("/etc/wfdb/config.toml:"), "{e}");
        }
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e = error("db = \"/x\"\ndb = \"/y\"\n");
        assert!(e.starts_with("/etc/wfdb/config.toml:2:"), "{e}");
        let e = error("roots = [\n");
        assert!(e.starts_with("/etc/wfdb/config.toml:"), "{e}");
    }
}
