//! Connecting to a running daemon, for the CLI and for other Rust clients.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::socket_trust::{self, Untrusted};

/// Why the daemon could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no wfdb daemon is listening on {0} (start one with `wfdb serve`, or pass --socket)")]
    NotRunning(PathBuf),
    /// The socket or its folder could be another user's impostor.
    #[error(transparent)]
    Untrusted(#[from] Untrusted),
    #[error("cannot connect to {0}: {1}")]
    Transport(String, String),
}

/// Opens a channel to the daemon's Unix socket, after checking that the socket and its folder
/// belong to this user or root and that nobody else can write the folder (else another user
/// could have put an impostor there). The `:authority` sent is `localhost`.
pub async fn connect_unix(socket: &Path) -> Result<Channel, ConnectError> {
    connect_unix_owned_by(socket, socket_trust::my_uid()).await
}

/// Like [`connect_unix`] for a daemon run by user `owner`: the socket and its folder must
/// belong to `owner` or root.
pub async fn connect_unix_owned_by(socket: &Path, owner: u32) -> Result<Channel, ConnectError> {
    let owners = [owner, 0];
    let dir = match socket.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        return Err(ConnectError::NotRunning(socket.to_path_buf()));
    }
    socket_trust::check_folder(dir, &owners)?;
    if std::fs::symlink_metadata(socket).is_err() {
        return Err(ConnectError::NotRunning(socket.to_path_buf()));
    }
    socket_trust::check_socket(socket, &owners)?;
    let path = socket.to_path_buf();
    let endpoint = Endpoint::try_from("http://localhost")
        .map_err(|e| ConnectError::Transport(socket.display().to_string(), e.to_string()))?;
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|_| ConnectError::NotRunning(socket.to_path_buf()))
}
