//! The daemon's listening sockets.

use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::DaemonError;

/// Binds the Unix socket with mode 0600, replacing a stale socket left by a dead daemon but
/// never one a live daemon still answers on, and never a file that is not a socket.
pub fn bind_unix(path: &Path) -> Result<UnixListener, DaemonError> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| DaemonError::Socket(path.to_path_buf(), e.to_string()))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(DaemonError::Socket(
                    path.to_path_buf(),
                    "another wfdb daemon is listening there (stop it, or pass --socket)".into(),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| DaemonError::Socket(path.to_path_buf(), e.to_string()))?;
        }
        Ok(_) => {
            return Err(DaemonError::Socket(
                path.to_path_buf(),
                "a file that is not a socket is in the way; remove it or pass --socket".into(),
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| DaemonError::Socket(path.to_path_buf(), e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| DaemonError::Socket(path.to_path_buf(), e.to_string()))?;
    Ok(listener)
}

/// Removes the socket file on shutdown if it is still ours.
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads the bearer token for TCP clients: the first line of the file, which must not be empty
/// and must not be readable by others.
pub fn read_token(path: &Path) -> Result<String, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |m: String| DaemonError::Token(path.to_path_buf(), m);
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(bad(
            "the token file must not be readable by group or others (chmod 600)".into(),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 {
        return Err(bad("the token must be at least 16 characters".into()));
    }
    Ok(token)
}
