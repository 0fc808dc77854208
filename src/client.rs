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

/// Reads everything that changed after a clock, any size: the `ChangesStream` pages merged
/// into one answer holding the last page's clock (a daemon without the streaming method is
/// asked with the unary `Changes`). Paths come in walk order, not sorted.
pub async fn changes_whole(
    channel: Channel,
    req: crate::proto::ChangesRequest,
) -> Result<crate::proto::ChangesResponse, tonic::Status> {
    let mut client = crate::proto::catalog_client::CatalogClient::new(channel);
    let mut stream = match client.changes_stream(req.clone()).await {
        Ok(s) => s.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            return Ok(client.changes(req).await?.into_inner());
        }
        Err(status) => return Err(status),
    };
    let mut whole = crate::proto::ChangesResponse::default();
    while let Some(page) = stream.message().await? {
        let last = !page.more;
        merge_changes_page(&mut whole, page);
        if last {
            return Ok(whole);
        }
    }
    Err(tonic::Status::unavailable(
        "the daemon ended the changes stream before its last page; ask again",
    ))
}

/// Appends one `ChangesStream` page to the answer read so far, keeping `removed_path_bytes`
/// either empty or one entry per removed path.
pub fn merge_changes_page(
    whole: &mut crate::proto::ChangesResponse,
    page: crate::proto::ChangesResponse,
) {
    let bytes_before = !whole.removed_path_bytes.is_empty();
    let bytes_now = !page.removed_path_bytes.is_empty();
    if bytes_now && !bytes_before {
        whole.removed_path_bytes = whole
            .removed
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
    }
    if bytes_now {
        whole.removed_path_bytes.extend(page.removed_path_bytes);
    } else if bytes_before {
        whole
            .removed_path_bytes
            .extend(page.removed.iter().map(|p| p.as_bytes().to_vec()));
    }
    whole.removed.extend(page.removed);
    whole.changed.extend(page.changed);
    whole.folders.extend(page.folders);
    whole.root = page.root;
    whole.instance_id = page.instance_id;
    whole.fresh_instance = page.fresh_instance;
    whole.clock = page.clock;
    whole.more = page.more;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ChangesResponse;

    #[test]
    fn merged_pages_keep_removed_bytes_aligned_with_removed_paths() {
        let page = |removed: &[&str], bytes: &[&[u8]], more: bool| ChangesResponse {
            removed: removed.iter().map(|s| s.to_string()).collect(),
            removed_path_bytes: bytes.iter().map(|b| b.to_vec()).collect(),
            clock: if more { 0 } else { 7 },
            more,
            ..Default::default()
        };
        let mut whole = ChangesResponse::default();
        merge_changes_page(&mut whole, page(&["a"], &[], true));
        merge_changes_page(&mut whole, page(&["\u{fffd}", "b"], &[b"\xff", b"b"], true));
        merge_changes_page(&mut whole, page(&["c"], &[], false));
        assert_eq!(whole.removed, ["a", "\u{fffd}", "b", "c"]);
        assert_eq!(
            whole.removed_path_bytes,
            [&b"a"[..], b"\xff", b"b", b"c"].map(<[u8]>::to_vec)
        );
        assert_eq!((whole.clock, whole.more), (7, false));
    }
}
