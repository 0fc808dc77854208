//! Default locations and settings, resolved from the environment the daemon runs in.

use std::path::PathBuf;

/// Where the database lives when `--db` is not given: `$STATE_DIRECTORY` under systemd, else
/// `$XDG_STATE_HOME/wfdb`, else `~/.local/state/wfdb`.
pub fn default_db_dir() -> PathBuf {
    if let Some(dir) = first_env_path("STATE_DIRECTORY") {
        return dir.join("db");
    }
    if let Some(dir) = env_path("XDG_STATE_HOME") {
        return dir.join("wfdb").join("db");
    }
    home().join(".local").join("state").join("wfdb").join("db")
}

/// Where the Unix socket lives when `--socket` is not given: `$RUNTIME_DIRECTORY/wfdb.sock`
/// under systemd, else `$XDG_RUNTIME_DIR/wfdb/wfdb.sock`, else a private folder in /tmp.
pub fn default_socket_path() -> PathBuf {
    if let Some(dir) = first_env_path("RUNTIME_DIRECTORY") {
        return dir.join("wfdb.sock");
    }
    if let Some(dir) = env_path("XDG_RUNTIME_DIR") {
        return dir.join("wfdb").join("wfdb.sock");
    }
    // SAFETY: getuid never fails and has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir()
        .join(format!("wfdb-{uid}"))
        .join("wfdb.sock")
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// systemd passes several directories separated by ':'; the first is ours.
fn first_env_path(name: &str) -> Option<PathBuf> {
    let v = std::env::var_os(name)?;
    let first = v.to_string_lossy().split(':').next()?.to_string();
    Some(PathBuf::from(first)).filter(|p| p.is_absolute())
}

fn home() -> PathBuf {
    env_path("HOME").unwrap_or_else(|| PathBuf::from("/"))
}
