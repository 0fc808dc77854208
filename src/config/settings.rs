//! The effective settings: each one taken from the first of flags, environment, configuration
//! file and defaults that has it, remembering where it came from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::{ConfigFile, FileError};
use super::locations::Environment;
use crate::access::{LocalGrant, TokenGrant};

use super::values::{parse_os, parse_str, Kind, LogFormat, PathBase, Value};

/// One setting: its key in the file, its flag and its environment variables.
#[derive(Debug)]
pub struct Key {
    /// The key in the configuration file (`section.key` inside a section).
    pub name: &'static str,
    /// The `serve` flag that sets it.
    pub flag: &'static str,
    /// Environment variables that set it, the first set one winning.
    pub env: &'static [&'static str],
    /// What it holds.
    pub kind: Kind,
    /// What it is for.
    pub about: &'static str,
}

impl Key {
    /// Whether the setting can only come from the configuration file (no flag, no variable).
    pub fn is_file_only(&self) -> bool {
        self.flag.is_empty()
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Every setting, in the order `config show` lists them.
pub static KEYS: &[Key] = &[
    Key {
        name: "roots",
        flag: "PATH...",
        env: &["WFDB_ROOTS"],
        kind: Kind::Paths,
        about: "Folders to watch, added to those watched before (default: the current folder; none under systemd)",
    },
    Key {
        name: "db",
        flag: "--db",
        env: &["WFDB_DB"],
        kind: Kind::Path,
        about: "Database folder",
    },
    Key {
        name: "socket",
        flag: "--socket",
        env: &["WFDB_SOCKET"],
        kind: Kind::Path,
        about: "The daemon's Unix socket",
    },
    Key {
        name: "listen",
        flag: "--listen",
        env: &["WFDB_LISTEN"],
        kind: Kind::Addr,
        about: "Also serve gRPC on TCP at this address (needs token_file)",
    },
    Key {
        name: "token_file",
        flag: "--token-file",
        env: &["WFDB_TOKEN_FILE"],
        kind: Kind::Path,
        about: "File whose first line is the bearer token TCP clients must send",
    },
    Key {
        name: "access.tokens",
        flag: "",
        env: &[],
        kind: Kind::Tokens,
        about: "More TCP tokens, each with its scopes: [{ name = \"ci\", file = \"ci.token\", scopes = [\"read\"] }] (file only)",
    },
    Key {
        name: "access.local_users",
        flag: "",
        env: &[],
        kind: Kind::LocalUsers,
        about: "Scopes of other local users on the Unix socket: [{ uid = 1001, scopes = [\"read\"] }] (file only)",
    },
    Key {
        name: "access.watch_roots",
        flag: "",
        env: &[],
        kind: Kind::Paths,
        about: "The only folders roots may be in, for every client (empty: anywhere the daemon can read) (file only)",
    },
    Key {
        name: "metrics",
        flag: "--metrics",
        env: &["WFDB_METRICS"],
        kind: Kind::Addr,
        about: "Serve Prometheus metrics at http://ADDR/metrics (no authentication: keep it on loopback)",
    },
    Key {
        name: "ignore",
        flag: "--ignore",
        env: &["WFDB_IGNORE"],
        kind: Kind::Strings,
        about: "Extra gitignore-style globs to leave out of the catalog",
    },
    Key {
        name: "cache_mb",
        flag: "--cache-mb",
        env: &["WFDB_CACHE_MB"],
        kind: Kind::Int {
            min: 1,
            max: 1 << 20,
        },
        about: "Bound of the database page cache, in MiB",
    },
    Key {
        name: "sync_timeout",
        flag: "--sync-timeout",
        env: &["WFDB_SYNC_TIMEOUT"],
        kind: Kind::Duration {
            min: millis(1),
            max: secs(86_400),
        },
        about: "How long a synced query waits for the watcher before DEADLINE_EXCEEDED",
    },
    Key {
        name: "watch.max_watches",
        flag: "--max-watches",
        env: &["WFDB_MAX_WATCHES"],
        kind: Kind::Int {
            min: 0,
            max: u32::MAX as u64,
        },
        about: "Most inotify watches to use (0: as many as the kernel allows); folders beyond are polled",
    },
    Key {
        name: "watch.poll_interval",
        flag: "--poll-interval",
        env: &["WFDB_POLL_INTERVAL"],
        kind: Kind::Duration {
            min: millis(10),
            max: secs(86_400),
        },
        about: "Time between reconciles of folders that could not be watched",
    },
    Key {
        name: "watch.settle",
        flag: "--settle",
        env: &["WFDB_SETTLE"],
        kind: Kind::Duration {
            min: millis(1),
            max: secs(10),
        },
        about: "Quiet time after the last event before a batch is applied",
    },
    Key {
        name: "watch.max_batch_delay",
        flag: "--max-batch-delay",
        env: &["WFDB_MAX_BATCH_DELAY"],
        kind: Kind::Duration {
            min: millis(1),
            max: secs(60),
        },
        about: "Longest a batch waits after its first event, however busy the tree",
    },
    Key {
        name: "deps.c_include_paths",
        flag: "--c-include",
        env: &["WFDB_C_INCLUDE"],
        kind: Kind::Strings,
        about: "Root-relative C/C++ include folders searched after the file's own folder",
    },
    Key {
        name: "retention.tombstones",
        flag: "--tombstone-retention",
        env: &["WFDB_TOMBSTONE_RETENTION"],
        kind: Kind::Retention,
        about: "How long deletions are remembered for `changes --since` (older clocks get fresh_instance)",
    },
    Key {
        name: "retention.open_runs",
        flag: "--run-expiry",
        env: &["WFDB_RUN_EXPIRY"],
        kind: Kind::Retention,
        about: "How long an open run may show no progress before it is expired (\"forever\" keeps it open)",
    },
    Key {
        name: "log.format",
        flag: "--log-format",
        env: &["WFDB_LOG_FORMAT"],
        kind: Kind::LogFormat,
        about: "Log format: auto (journal under systemd, else human), human, json, journald",
    },
    Key {
        name: "log.filter",
        flag: "--log-filter",
        env: &["WFDB_LOG", "RUST_LOG"],
        kind: Kind::LogFilter,
        about: "Which log lines to write, in RUST_LOG syntax",
    },
];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A command-line flag.
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// The configuration file, at this line.
    File { path: PathBuf, line: usize },
    /// The built-in default.
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One effective setting.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: &'static Key,
    pub value: Value,
    pub origin: Origin,
}

/// Why the settings could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    /// A caller named a setting that does not exist (a bug, reported rather than guessed at).
    #[error("no setting is named `{0}`")]
    UnknownSetting(String),
    #[error("`{key}` ({origin}) must not be less than `{other}` ({other_origin})")]
    Conflict {
        key: &'static str,
        origin: Origin,
        other: &'static str,
        other_origin: Origin,
    },
}

/// The settings given on the command line, by key.
#[derive(Debug, Default)]
pub struct Flags(Vec<(&'static str, Value)>);

impl Flags {
    /// Sets `key` from the flag's text, parsed as the key's kind.
    pub fn text(
        &mut self,
        key: &'static str,
        text: &str,
        env: &Environment,
    ) -> Result<(), ConfigError> {
        let k = key_named(key)?;
        let home = env.home();
        let base = PathBase {
            dir: &env.cwd,
            home: home.as_deref(),
        };
        let value = parse_str(k.kind, text, &base).map_err(|message| ConfigError::Flag {
            flag: k.flag,
            message,
        })?;
        self.0.push((k.name, value));
        Ok(())
    }

    /// Sets `key` to paths given on the command line (taken from the working folder).
    pub fn paths(
        &mut self,
        key: &'static str,
        paths: &[PathBuf],
        env: &Environment,
    ) -> Result<(), ConfigError> {
        if paths.is_empty() {
            return Ok(());
        }
        let k = key_named(key)?;
        let abs: Vec<PathBuf> = paths.iter().map(|p| env.cwd.join(p)).collect();
        let value = match k.kind {
            Kind::Path => match abs.into_iter().next() {
                Some(p) => Value::Path(p),
                None => return Ok(()),
            },
            _ => Value::Paths(abs),
        };
        self.0.push((k.name, value));
        Ok(())
    }
}

fn key_named(name: &str) -> Result<&'static Key, ConfigError> {
    KEYS.iter()
        .find(|k| k.name == name)
        .ok_or_else(|| ConfigError::UnknownSetting(name.to_string()))
}

/// The effective settings of the daemon, each with its origin.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file read, if any.
    pub config_file: Option<PathBuf>,
    pub roots: Vec<PathBuf>,
    pub db: PathBuf,
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
    pub metrics: Option<SocketAddr>,
    /// TCP tokens of the configuration file, with their scopes.
    pub tokens: Vec<TokenGrant>,
    /// Scopes of other local users.
    pub local_users: Vec<LocalGrant>,
    /// The folders roots must be in (empty: anywhere).
    pub watch_roots: Vec<PathBuf>,
    pub ignore: Vec<String>,
    pub cache_mb: u64,
    pub sync_timeout: Duration,
    pub max_watches: u64,
    pub poll_interval: Duration,
    pub settle: Duration,
    pub max_batch_delay: Duration,
    pub c_include_paths: Vec<String>,
    /// How long tombstones are kept; `None` keeps them forever.
    pub tombstone_retention: Option<Duration>,
    /// How long an open run may show no progress before it is expired; `None`: never.
    pub run_expiry: Option<Duration>,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Every setting with its value and origin, in [`KEYS`] order.
    pub entries: Vec<Entry>,
}

impl Settings {
    /// Resolves every setting: flags, then environment, then the file, then defaults.
    pub fn resolve(
        flags: &Flags,
        env: &Environment,
        file: Option<&ConfigFile>,
    ) -> Result<Settings, ConfigError> {
        let home = env.home();
        let base = PathBase {
            dir: &env.cwd,
            home: home.as_deref(),
        };
        let mut entries = Vec::with_capacity(KEYS.len());
        for key in KEYS {
            let entry = if let Some((_, v)) = flags.0.iter().rev().find(|(n, _)| *n == key.name) {
                Entry {
                    key,
                    value: v.clone(),
                    origin: Origin::Flag(key.flag),
                }
            } else if let Some((var, text)) = key
                .env
                .iter()
                .find_map(|var| env.var(var).map(|t| (*var, t)))
            {
                let value = parse_os(key.kind, text, &base)
                    .map_err(|message| ConfigError::Env { var, message })?;
                Entry {
                    key,
                    value,
                    origin: Origin::Env(var),
                }
            } else if let Some((_, v, line)) =
                file.and_then(|f| f.values.iter().rev().find(|(n, _, _)| *n == key.name))
            {
                Entry {
                    key,
                    value: v.clone(),
                    origin: Origin::File {
                        path: file.map(|f| f.path.clone()).unwrap_or_default(),
                        line: *line,
                    },
                }
            } else {
                Entry {
                    key,
                    value: default_of(key.name, env),
                    origin: Origin::Default,
                }
            };
            entries.push(entry);
        }
        Settings::from_entries(entries, file.map(|f| f.path.clone()))
    }

    fn from_entries(
        entries: Vec<Entry>,
        config_file: Option<PathBuf>,
    ) -> Result<Settings, ConfigError> {
        let get = |name: &str| {
            entries
                .iter()
                .find(|e| e.key.name == name)
                .map(|e| &e.value)
                .unwrap_or(&Value::Unset)
        };
        let path = |name| match get(name) {
            Value::Path(p) => Some(p.clone()),
            _ => None,
        };
        let paths = |name| match get(name) {
            Value::Paths(p) => p.clone(),
            _ => Vec::new(),
        };
        let strings = |name| match get(name) {
            Value::Strings(s) => s.clone(),
            _ => Vec::new(),
        };
        let addr = |name| match get(name) {
            Value::Addr(a) => Some(*a),
            _ => None,
        };
        let int = |name| match get(name) {
            Value::Int(n) => *n,
            _ => 0,
        };
        let duration = |name| match get(name) {
            Value::Duration(d) => *d,
            _ => Duration::ZERO,
        };
        let settings = Settings {
            config_file,
            roots: paths("roots"),
            db: path("db").unwrap_or_default(),
            socket: path("socket").unwrap_or_default(),
            listen: addr("listen"),
            token_file: path("token_file"),
            metrics: addr("metrics"),
            tokens: match get("access.tokens") {
                Value::Tokens(t) => t.clone(),
                _ => Vec::new(),
            },
            local_users: match get("access.local_users") {
                Value::LocalUsers(g) => g.clone(),
                _ => Vec::new(),
            },
            watch_roots: paths("access.watch_roots"),
            ignore: strings("ignore"),
            cache_mb: int("cache_mb"),
            sync_timeout: duration("sync_timeout"),
            max_watches: int("watch.max_watches"),
            poll_interval: duration("watch.poll_interval"),
            settle: duration("watch.settle"),
            max_batch_delay: duration("watch.max_batch_delay"),
            c_include_paths: strings("deps.c_include_paths"),
            tombstone_retention: match get("retention.tombstones") {
                Value::Retention(r) => *r,
                _ => None,
            },
            run_expiry: match get("retention.open_runs") {
                Value::Retention(r) => *r,
                _ => None,
            },
            log_format: match get("log.format") {
                Value::LogFormat(f) => *f,
                _ => LogFormat::Auto,
            },
            log_filter: match get("log.filter") {
                Value::Text(s) => s.clone(),
                _ => "info".into(),
            },
            entries,
        };
        if settings.max_batch_delay < settings.settle {
            return Err(ConfigError::Conflict {
                key: "watch.max_batch_delay",
                origin: settings.origin("watch.max_batch_delay"),
                other: "watch.settle",
                other_origin: settings.origin("watch.settle"),
            });
        }
        Ok(settings)
    }

    /// Where a setting came from.
    pub fn origin(&self, name: &str) -> Origin {
        self.entries
            .iter()
            .find(|e| e.key.name == name)
            .map_or(Origin::Default, |e| e.origin.clone())
    }
}

fn default_of(name: &str, env: &Environment) -> Value {
    match name {
        // Under systemd the working folder is `/`: watch only the roots the database has.
        "roots" if env.under_systemd() => Value::Paths(Vec::new()),
        "roots" => Value::Paths(vec![env.cwd.clone()]),
        "db" => Value::Path(env.default_db_dir()),
        "socket" => Value::Path(env.default_socket_path()),
        "ignore" | "deps.c_include_paths" => Value::Strings(Vec::new()),
        "access.tokens" => Value::Tokens(Vec::new()),
        "access.local_users" => Value::LocalUsers(Vec::new()),
        "access.watch_roots" => Value::Paths(Vec::new()),
        "cache_mb" => Value::Int(64),
        "sync_timeout" => Value::Duration(secs(10)),
        "watch.max_watches" => Value::Int(0),
        "watch.poll_interval" => Value::Duration(secs(2)),
        "watch.settle" => Value::Duration(millis(10)),
        "watch.max_batch_delay" => Value::Duration(millis(100)),
        "retention.tombstones" => Value::Retention(Some(secs(30 * 86_400))),
        "retention.open_runs" => Value::Retention(Some(secs(86_400))),
        "log.format" => Value::LogFormat(LogFormat::Auto),
        "log.filter" => Value::Text("info".into()),
        _ => Value::Unset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment::new(
            "/srv/code",
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("/etc/wfdb/config.toml"), text, None).unwrap()
    }

    #[test]
    fn every_key_has_a_default_or_is_optional_and_a_unique_name_flag_and_variable() {
        let e = env(&[("HOME", "/home/a")]);
        for key in KEYS {
            assert!(
                std::ptr::eq(key_named(key.name).unwrap(), key),
                "{}",
                key.name
            );
            let optional = matches!(key.name, "listen" | "token_file" | "metrics");
            assert_eq!(
                default_of(key.name, &e) == Value::Unset,
                optional,
                "{}",
                key.name
            );
            if key.is_file_only() {
                assert!(key.env.is_empty(), "{}", key.name);
                continue;
            }
            assert_eq!(
                KEYS.iter()
                    .filter(|k| k.flag == key.flag || k.env == key.env)
                    .count(),
                1,
                "{}",
                key.name
            );
        }
    }

    #[test]
    fn flags_beat_environment_beats_file_beats_defaults() {
        let f =
            file("cache_mb = 3\nsync_timeout = 4\n[watch]\nsettle = \"5ms\"\nmax_watches = 6\n");
        let e = env(&[
            ("WFDB_SYNC_TIMEOUT", "7s"),
            ("WFDB_SETTLE", "8ms"),
            ("HOME", "/h"),
        ]);
        let mut flags = Flags::default();
        flags.text("watch.settle", "9ms", &e).unwrap();
        let s = Settings::resolve(&flags, &e, Some(&f)).unwrap();
        assert_eq!(s.settle, millis(9));
        assert_eq!(s.origin("watch.settle"), Origin::Flag("--settle"));
        assert_eq!(s.sync_timeout, secs(7));
        assert_eq!(s.origin("sync_timeout"), Origin::Env("WFDB_SYNC_TIMEOUT"));
        assert_eq!(s.cache_mb, 3);
        assert_eq!(
            s.origin("cache_mb"),
            Origin::File {
                path: "/etc/wfdb/config.toml".into(),
                line: 1
            }
        );
        assert_eq!(s.max_watches, 6);
        assert_eq!(s.poll_interval, secs(2));
        assert_eq!(s.origin("watch.poll_interval"), Origin::Default);
        assert_eq!(s.db, PathBuf::from("/h/.local/state/wfdb/db"));
        assert_eq!(s.roots, vec![PathBuf::from("/srv/code")]);
    }

    #[test]
    fn wfdb_log_wins_over_rust_log_and_bad_variables_are_named() {
        let e = env(&[("RUST_LOG", "debug"), ("WFDB_LOG", "warn")]);
        let s = Settings::resolve(&Flags::default(), &e, None).unwrap();
        assert_eq!(s.log_filter, "warn");
        let e = env(&[("RUST_LOG", "debug")]);
        let s = Settings::resolve(&Flags::default(), &e, None).unwrap();
        assert_eq!(
            (s.log_filter.as_str(), s.origin("log.filter")),
            ("debug", Origin::Env("RUST_LOG"))
        );
        let e = env(&[("WFDB_CACHE_MB", "lots")]);
        let err = Settings::resolve(&Flags::default(), &e, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("environment variable WFDB_CACHE_MB: expected a whole number"),
            "{err}"
        );
        let mut flags = Flags::default();
        let err = flags.text("listen", "nowhere", &e).unwrap_err().to_string();
        assert!(err.starts_with("--listen: expected an IP address"), "{err}");
    }

    #[test]
    fn a_batch_delay_shorter_than_the_settle_window_is_refused_naming_both() {
        let f = file("[watch]\nsettle = \"50ms\"\n");
        let e = env(&[("WFDB_MAX_BATCH_DELAY", "20ms")]);
        let err = Settings::resolve(&Flags::default(), &e, Some(&f))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "`watch.max_batch_delay` (env WFDB_MAX_BATCH_DELAY) must not be less than `watch.settle` (/etc/wfdb/config.toml:2)"
        );
    }

    #[test]
    fn under_systemd_no_root_is_added_by_default() {
        let e = env(&[("INVOCATION_ID", "abc")]);
        let s = Settings::resolve(&Flags::default(), &e, None).unwrap();
        assert!(s.roots.is_empty());
        let mut flags = Flags::default();
        flags.paths("roots", &[PathBuf::from("repo")], &e).unwrap();
        assert!(matches!(
            flags.text("watch.setle", "1s", &e),
            Err(ConfigError::UnknownSetting(_))
        ));
        let s = Settings::resolve(&flags, &e, None).unwrap();
        assert_eq!(s.roots, vec![PathBuf::from("/srv/code/repo")]);
    }
}
