//! What the daemon does while its store cannot be written: retries with backoff until a write
//! and a flush succeed, then reconciles every root (so the catalog equals the disk again) and
//! only then reports healthy. sled 0.34 keeps its first I/O error forever (its "global
//! error"): when the database folder takes writes again but sled still refuses them, the only
//! way back is to open the database anew, so the daemon stops with [`RESTART_EXIT_CODE`] and
//! its supervisor (systemd's `Restart=on-failure`) starts it again. See ARCHITECTURE.md.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{DaemonError, DaemonState};

/// The exit status of a daemon that stopped because its store must be opened anew
/// (`EX_TEMPFAIL`: a temporary failure, try again).
pub const RESTART_EXIT_CODE: u8 = 75;

/// First wait before a retry; doubled after each failed one.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest wait between retries.
const MAX_RETRY: Duration = Duration::from_secs(2);
/// Free space the database folder must have before the store is tried again: a few of sled's
/// 512 KiB log segments, so a retry is not bound to fail on the next buffer.
const MIN_FREE_BYTES: u64 = 4 * 1024 * 1024;
/// How long the store may take to write and flush a few bytes once the folder takes writes.
/// After a failed write sled 0.34 may wait forever in a flush (the log position it waits for
/// never becomes stable), so a check that does not finish counts as a failure that needs a
/// restart.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What one attempt found.
enum Attempt {
    /// The cause is still there (the new cause).
    Failing(String),
    /// The folder takes writes but the store does not: it must be opened anew.
    Sticky(String),
    /// A write and a flush succeeded and every root was reconciled.
    Recovered,
}

/// Watches the store's health until shutdown: each failure is retried with backoff until it
/// ends, or ends the daemon for a restart when the store cannot recover in this process.
pub fn spawn(state: Arc<DaemonState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut serving = state.health.watch();
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                changed = serving.wait_for(|s| !*s) => if changed.is_err() { return },
            }
            let cause = state.health.failure().map(|f| f.cause).unwrap_or_default();
            tracing::error!(
                %cause,
                "the database cannot be written: synced queries and the workflow database are refused until it can"
            );
            let mut delay = FIRST_RETRY;
            loop {
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_RETRY);
                match attempt(&state).await {
                    Attempt::Failing(cause) => {
                        tracing::debug!(%cause, "the database still cannot be written");
                        state.health.fail(cause);
                    }
                    Attempt::Sticky(cause) => {
                        mark_restart(state.store.path());
                        tracing::error!(
                            %cause,
                            code = RESTART_EXIT_CODE,
                            "the database folder takes writes again but the store keeps failing: stopping so that the supervisor restarts the daemon with the store opened anew"
                        );
                        state.stop_for_restart(cause);
                        return;
                    }
                    Attempt::Recovered => {
                        state.health.recover();
                        tracing::info!(
                            "the database takes writes again; every root was reconciled"
                        );
                        break;
                    }
                }
            }
        }
    })
}

async fn attempt(state: &Arc<DaemonState>) -> Attempt {
    let dir = state.store.path().to_path_buf();
    let probe = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || probe_folder(&dir)).await
    };
    match probe {
        Ok(Ok(())) => {}
        Ok(Err(cause)) => return Attempt::Failing(cause),
        Err(e) => return Attempt::Failing(format!("probing the database folder failed: {e}")),
    }
    let s = Arc::clone(state);
    let check = tokio::task::spawn_blocking(move || s.store.check_writable());
    match tokio::time::timeout(STORE_CHECK_TIMEOUT, check).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Attempt::Sticky(state.store_failure_cause(&e)),
        Ok(Err(e)) => return Attempt::Failing(format!("writing to the database failed: {e}")),
        Err(_) => {
            return Attempt::Sticky(format!(
                "a write to the database did not finish within {} s although its folder takes writes (database {})",
                STORE_CHECK_TIMEOUT.as_secs(),
                dir.display()
            ))
        }
    }
    // Batches may have been refused while the store failed: bring each root in line with
    // the disk before anyone is told the store is healthy.
    for root in state.roots() {
        match state.reconcile_root(&root, "recovery").await {
            Ok(_) => {}
            Err(DaemonError::Store(e)) => return Attempt::Failing(state.store_failure_cause(&e)),
            Err(e) => {
                // Not the store (a root that went away, say): it does not keep the store down.
                tracing::warn!(root = %root.path.display(), error = %e, "reconcile after the database recovered failed");
            }
        }
    }
    // The reconcile flushes only what changed: make sure nothing is left unflushed.
    let s = Arc::clone(state);
    match tokio::task::spawn_blocking(move || s.store.flush()).await {
        Ok(Ok(())) => Attempt::Recovered,
        Ok(Err(e)) => Attempt::Failing(state.store_failure_cause(&e)),
        Err(e) => Attempt::Failing(format!("flushing the database failed: {e}")),
    }
}

/// The file that tells the next start that this one stopped on a store failure.
const RESTART_MARK: &str = "wfdb-stopped-on-failure";

/// Leaves the mark for the next start (the folder takes writes again by now). Clocks served
/// before the failure may never have reached the disk; the next start takes a new instance id
/// so that no client holding one of them gets a list that misses changes.
fn mark_restart(dir: &Path) {
    let mark = dir.join(RESTART_MARK);
    let written = std::fs::File::create(&mark).and_then(|f| f.sync_all());
    if let Err(e) = written {
        tracing::warn!(path = %mark.display(), error = %e, "cannot leave the restart mark");
    }
}

/// Present while a daemon runs on the database; removed after the final flush of a clean stop.
const RUNNING_MARK: &str = "wfdb-running";

/// Whether the previous daemon on this database stopped without its final flush (a crash,
/// SIGKILL, power loss); then marks this one as running. Catalog batches are flushed up to a
/// second after they are answered, so clocks answered in that second may be missing from
/// the disk and be handed out again for other changes: the caller takes a new instance id.
pub fn previous_run_unclean_then_mark(dir: &Path) -> std::io::Result<bool> {
    let mark = dir.join(RUNNING_MARK);
    let unclean = mark.exists();
    let file = std::fs::File::create(&mark)?;
    file.sync_all()?;
    // The mark's name must be durable too, or a crash could lose it.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(unclean)
}

/// Says the daemon stopped cleanly (everything flushed): the next start keeps the instance.
pub fn clear_running_mark(dir: &Path) {
    if let Err(e) = std::fs::remove_file(dir.join(RUNNING_MARK)) {
        tracing::warn!(error = %e, "cannot remove the running mark; the next start will take a new instance id");
    }
}

/// Whether the previous daemon stopped on a store failure; the mark is consumed.
pub fn take_restart_mark(dir: &Path) -> bool {
    std::fs::remove_file(dir.join(RESTART_MARK)).is_ok()
}

/// Checks that the database folder takes a small durable write and has room for a few log
/// segments; the error says why not, naming the folder.
fn probe_folder(dir: &Path) -> Result<(), String> {
    use std::io::Write;
    let free = free_bytes(dir).map_err(|e| format!("{e} on {}", dir.display()))?;
    if free < MIN_FREE_BYTES {
        return Err(format!(
            "no space left on device on {} ({free} bytes free)",
            dir.display()
        ));
    }
    let probe = dir.join("wfdb-write-probe.tmp");
    let outcome = std::fs::File::create(&probe)
        .and_then(|mut f| {
            f.write_all(&[0u8; 4096])?;
            f.sync_all()
        })
        .map_err(|e| format!("{e} on {}", dir.display()));
    let _ = std::fs::remove_file(&probe);
    outcome
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c is a valid NUL-terminated path and st a buffer of the right type.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so it filled st.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_room_passes_and_a_missing_one_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        // The test machine's temporary folder has a few MiB free.
        assert_eq!(probe_folder(dir.path()), Ok(()));
        assert!(!dir.path().join("wfdb-write-probe.tmp").exists());
        let missing = dir.path().join("gone");
        let e = probe_folder(&missing).unwrap_err();
        assert!(e.contains("gone"), "{e}");
    }
}
