//! The daemon's listening sockets.

use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::DaemonError;
use crate::access::{AccessPolicy, Scopes, Token};

/// Makes sure the socket's folder is one only the daemon's user controls: creates it (mode
/// 0700, with any missing parents) when it is missing, and refuses one that is not a real
/// folder, is owned by another user, or that group or others can write.
pub fn prepare_socket_dir(path: &Path) -> Result<PathBuf, DaemonError> {
    use std::os::unix::fs::DirBuilderExt;
    let refuse = |m: String| DaemonError::Socket(path.to_path_buf(), m);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if std::fs::symlink_metadata(&dir).is_err() {
        // umask can only take bits away from 0700.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| refuse(format!("cannot create its folder: {e}")))?;
    }
    crate::socket_trust::check_folder(&dir, &[crate::socket_trust::my_uid()])
        .map_err(|e| refuse(e.to_string()))?;
    Ok(dir)
}

/// Binds the Unix socket with `mode` so that it is never reachable with any other mode, not
/// even for a moment: it is bound in a fresh 0700 folder (whatever the umask, nobody else can
/// reach into it), given its mode there, then renamed into place. A stale socket left by a
/// dead daemon is replaced, never one a live daemon still answers on, and never a file that
/// is not a socket. The folder must pass [`prepare_socket_dir`].
pub fn bind_unix(path: &Path, mode: u32) -> Result<(UnixListener, BoundSocket), DaemonError> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
    let refuse = |m: String| DaemonError::Socket(path.to_path_buf(), m);
    let dir = prepare_socket_dir(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(refuse(
                    "another wfdb daemon is listening there (stop it, or pass --socket)".into(),
                ));
            }
        }
        Ok(_) => {
            return Err(refuse(
                "a file that is not a socket is in the way; remove it or pass --socket".into(),
            ))
        }
        Err(_) => {}
    }
    // A short name: socket paths are limited to 107 bytes.
    let private = dir.join(format!(".wfdb-bind-{}", std::process::id()));
    // Left over by a daemon of ours that died here with the same pid: the folder is ours.
    let _ = std::fs::remove_file(private.join("s"));
    let _ = std::fs::remove_dir(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| refuse(format!("cannot create {}: {e}", private.display())))?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staged, path)?;
        listener.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    let listener = bound.map_err(|e| refuse(e.to_string()))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| refuse(e.to_string()))?;
    let listener = UnixListener::from_std(listener).map_err(|e| refuse(e.to_string()))?;
    Ok((
        listener,
        BoundSocket {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        },
    ))
}

/// The socket the daemon bound: removed on drop only if the file at its path is still that
/// socket (same device and inode), so another daemon's socket put there since is left alone.
#[derive(Debug)]
pub struct BoundSocket {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl BoundSocket {
    /// Whether the file at the socket's path is still the socket bound.
    pub fn is_ours(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if self.is_ours() {
            let _ = std::fs::remove_file(&self.path);
        } else {
            tracing::warn!(socket = %self.path.display(), "the socket was replaced by another file; leaving it alone");
        }
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

/// Who may do what: the daemon's own user, the local grants, and, when TCP is served, every
/// token read from its file (`--token-file`'s token, named `token_file`, has every scope). Two
/// tokens with the same secret are refused: a secret must say which token it is.
pub fn access_policy(opts: &super::ServeOptions) -> Result<AccessPolicy, DaemonError> {
    let mut tokens = Vec::new();
    if opts.listen.is_none() {
        return Ok(AccessPolicy {
            owner_uid: crate::socket_trust::my_uid(),
            local: opts.local_users.clone(),
            tokens,
        });
    }
    // Each secret with the name of its token.
    let mut secrets: Vec<(String, String)> = Vec::new();
    let named = opts
        .token_file
        .iter()
        .map(|f| ("token_file".to_string(), f.clone(), Scopes::ALL))
        .chain(
            opts.tokens
                .iter()
                .map(|t| (t.name.clone(), t.file.clone(), t.scopes)),
        );
    for (name, file, scopes) in named {
        let secret = read_token(&file)?;
        if let Some((_, other)) = secrets.iter().find(|(s, _)| *s == secret) {
            return Err(DaemonError::Token(
                file,
                format!("token `{name}` has the same secret as token `{other}`: give each its own"),
            ));
        }
        tokens.push(Token::new(name.clone(), &secret, scopes));
        secrets.push((secret, name));
    }
    Ok(AccessPolicy {
        owner_uid: crate::socket_trust::my_uid(),
        local: opts.local_users.clone(),
        tokens,
    })
}
