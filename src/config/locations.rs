//! Default locations (database, socket, configuration file), from the environment the process
//! runs in.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// The parts of the process environment that settings depend on.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// The working folder (relative paths from flags and variables are taken from it).
    pub cwd: PathBuf,
    vars: BTreeMap<String, OsString>,
}

impl Environment {
    /// The environment of this process.
    pub fn from_process() -> Environment {
        Environment {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
                .collect(),
        }
    }

    /// An environment with the given working folder and variables (for tests).
    pub fn new<I, K, V>(cwd: impl Into<PathBuf>, vars: I) -> Environment
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<OsString>,
    {
        Environment {
            cwd: cwd.into(),
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value, when set and not empty.
    pub fn var(&self, name: &str) -> Option<&OsString> {
        self.vars.get(name).filter(|v| !v.is_empty())
    }

    /// The home folder.
    pub fn home(&self) -> Option<PathBuf> {
        self.abs_path("HOME")
    }

    /// Whether systemd started this process as a service.
    pub fn under_systemd(&self) -> bool {
        self.var("INVOCATION_ID").is_some()
    }

    fn abs_path(&self, name: &str) -> Option<PathBuf> {
        self.var(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    }

    /// systemd passes several directories separated by ':'; the first is ours.
    fn first_abs_path(&self, name: &str) -> Option<PathBuf> {
        let v = self.var(name)?;
        let first = v.to_string_lossy().split(':').next()?.to_string();
        Some(PathBuf::from(first)).filter(|p| p.is_absolute())
    }

    fn home_or_root(&self) -> PathBuf {
        self.home().unwrap_or_else(|| PathBuf::from("/"))
    }

    /// Where the database lives by default: `$STATE_DIRECTORY/db` under systemd, else
    /// `$XDG_STATE_HOME/wfdb/db`, else `~/.local/state/wfdb/db`.
    pub fn default_db_dir(&self) -> PathBuf {
        if let Some(dir) = self.first_abs_path("STATE_DIRECTORY") {
            return dir.join("db");
        }
        if let Some(dir) = self.abs_path("XDG_STATE_HOME") {
            return dir.join("wfdb").join("db");
        }
        self.home_or_root().join(".local/state/wfdb/db")
    }

    /// Where the Unix socket lives by default: `$RUNTIME_DIRECTORY/wfdb.sock` under systemd,
    /// else `$XDG_RUNTIME_DIR/wfdb/wfdb.sock`, else a private folder in the temporary folder.
    pub fn default_socket_path(&self) -> PathBuf {
        if let Some(dir) = self.first_abs_path("RUNTIME_DIRECTORY") {
            return dir.join("wfdb.sock");
        }
        if let Some(dir) = self.abs_path("XDG_RUNTIME_DIR") {
            return dir.join("wfdb").join("wfdb.sock");
        }
        // SAFETY: getuid never fails and has no preconditions.
        let uid = unsafe { libc::getuid() };
        let tmp = self
            .abs_path("TMPDIR")
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        tmp.join(format!("wfdb-{uid}")).join("wfdb.sock")
    }

    /// The configuration file to read when none is named. Under systemd it is the service's
    /// own: `$CONFIGURATION_DIRECTORY/config.toml` (else `/etc/wfdb/config.toml`); a user's
    /// file must not move a system service's socket or database. Outside systemd it is
    /// `$XDG_CONFIG_HOME/wfdb/config.toml` (else `~/.config/wfdb/config.toml`). Either only
    /// if it exists.
    pub fn default_config_file(&self) -> Option<PathBuf> {
        let candidate = if self.under_systemd() {
            match self.first_abs_path("CONFIGURATION_DIRECTORY") {
                Some(dir) => dir.join("config.toml"),
                None => PathBuf::from("/etc/wfdb/config.toml"),
            }
        } else {
            match self.abs_path("XDG_CONFIG_HOME") {
                Some(dir) => dir.join("wfdb/config.toml"),
                None => self.home_or_root().join(".config/wfdb/config.toml"),
            }
        };
        candidate.is_file().then_some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_folders_come_first_then_xdg_then_home() {
        let env = Environment::new(
            "/",
            [
                ("STATE_DIRECTORY", "/var/lib/wfdb:/var/lib/other"),
                ("RUNTIME_DIRECTORY", "/run/wfdb"),
                ("XDG_STATE_HOME", "/x/state"),
                ("HOME", "/home/a"),
            ],
        );
        assert_eq!(env.default_db_dir(), PathBuf::from("/var/lib/wfdb/db"));
        assert_eq!(
            env.default_socket_path(),
            PathBuf::from("/run/wfdb/wfdb.sock")
        );
        let env = Environment::new(
            "/",
            [
                ("XDG_STATE_HOME", "/x/state"),
                ("XDG_RUNTIME_DIR", "/run/user/7"),
            ],
        );
        assert_eq!(env.default_db_dir(), PathBuf::from("/x/state/wfdb/db"));
        assert_eq!(
            env.default_socket_path(),
            PathBuf::from("/run/user/7/wfdb/wfdb.sock")
        );
        let env = Environment::new("/", [("HOME", "/home/a"), ("XDG_STATE_HOME", "relative")]);
        assert_eq!(
            env.default_db_dir(),
            PathBuf::from("/home/a/.local/state/wfdb/db")
        );
    }

    #[test]
    fn under_systemd_the_service_configuration_wins_over_the_users() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user");
        let service = dir.path().join("service");
        for d in [&user, &service] {
            std::fs::create_dir_all(d.join("wfdb")).unwrap();
        }
        std::fs::write(user.join("wfdb/config.toml"), "").unwrap();
        std::fs::write(service.join("config.toml"), "").unwrap();
        let vars = |systemd: bool| {
            let mut v = vec![
                ("XDG_CONFIG_HOME", user.clone().into_os_string()),
                ("CONFIGURATION_DIRECTORY", service.clone().into_os_string()),
            ];
            if systemd {
                v.push(("INVOCATION_ID", "0123".into()));
            }
            v
        };
        let terminal = Environment::new("/", vars(false));
        assert_eq!(
            terminal.default_config_file(),
            Some(user.join("wfdb/config.toml"))
        );
        let service_env = Environment::new("/", vars(true));
        assert_eq!(
            service_env.default_config_file(),
            Some(service.join("config.toml"))
        );
        // A service whose configuration folder has no file reads none, not the user's.
        std::fs::remove_file(service.join("config.toml")).unwrap();
        assert_eq!(service_env.default_config_file(), None);
    }
}
