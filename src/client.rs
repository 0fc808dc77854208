//! Connecting to a running daemon, for the CLI and for other Rust clients.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why the daemon could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no wfdb daemon is listening on {0} (start one with `wfdb serve`, or pass --socket)")]
    NotRunning(PathBuf),
    #[error("cannot connect to {0}: {1}")]
    Transport(String, String),
}

/// Opens a channel to the daemon's Unix socket. The `:authority` sent is `localhost`.
pub async fn connect_unix(socket: &Path) -> Result<Channel, ConnectError> {
    if !socket.exists() {
        return Err(ConnectError::NotRunning(socket.to_path_buf()));
    }
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
