//! The daemon's figures at one moment, gathered from where they live: the counters
//! ([`crate::metrics`]), each root's store and scan progress, the watcher, the database and the
//! process. One snapshot feeds both the metrics endpoint and the Stats RPC.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::metrics::{endpoint, prometheus, RootSnapshot, Snapshot};

use super::{DaemonError, DaemonState, Root};

/// The kernel's per-user inotify watch limit.
const INOTIFY_LIMIT: &str = "/proc/sys/fs/inotify/max_user_watches";

impl DaemonState {
    /// Every figure now, for every root (a root whose first reconcile is running included)
    /// or only for `only`. Reads the store and /proc: call it on a blocking thread.
    pub fn metrics_snapshot(&self, only: Option<&Arc<Root>>) -> Result<Snapshot, DaemonError> {
        let roots = match only {
            Some(root) => vec![Arc::clone(root)],
            None => {
                let mut roots = self.roots();
                if let Some(adding) = self.root_being_added() {
                    if !roots.iter().any(|r| r.id == adding.id) {
                        roots.push(adding);
                    }
                }
                roots
            }
        };
        let (watched_dirs, polled_dirs) = self.watcher().map_or((0, 0), |w| w.counts());
        Ok(Snapshot {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            events_received: self.metrics.events_received.get(),
            overflows: self.metrics.overflows.get(),
            watched_dirs,
            polled_dirs,
            inotify_max_user_watches: read_number(INOTIFY_LIMIT),
            watch_cap: self
                .watcher()
                .map(|w| w.max_watches() as u64)
                .filter(|&cap| cap > 0),
            store_size_bytes: self.store.size_on_disk(),
            resident_memory_bytes: resident_memory_bytes(),
            roots: roots
                .iter()
                .map(|r| root_snapshot(r))
                .collect::<Result<_, _>>()?,
            rpc: self.metrics.rpc.snapshot(),
        })
    }
}

fn root_snapshot(root: &Root) -> Result<RootSnapshot, DaemonError> {
    let meta = root.store.meta()?;
    let (files, bytes) = root.totals()?;
    let last_scan_bytes_per_second = meta
        .last_scan
        .as_ref()
        .filter(|s| s.bytes_hashed > 0 && s.duration_ms > 0)
        .map(|s| s.bytes_hashed as f64 * 1000.0 / s.duration_ms as f64);
    Ok(RootSnapshot {
        id: root.id.clone(),
        path: root.path.display().to_string(),
        files,
        bytes,
        clock: meta.clock,
        hash_backlog: root.progress().files_pending.load(Ordering::Relaxed),
        last_scan_bytes_per_second,
        activity: root.metrics.snapshot(),
    })
}

/// A file holding one decimal number (as /proc/sys files do); `None` when unreadable.
fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The resident set of this process, from /proc/self/statm (pages) and the page size.
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|p| pages * p)
}

/// Serves the Prometheus text on `listener` until shutdown.
pub fn spawn_endpoint(state: Arc<DaemonState>, listener: tokio::net::TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        if addr.ip().is_loopback() {
            tracing::info!(%addr, "serving metrics at http://{addr}/metrics");
        } else {
            tracing::warn!(
                %addr,
                "serving metrics at http://{addr}/metrics without authentication to anyone who can reach this address"
            );
        }
    }
    let shutdown = state.shutdown.clone();
    let render: endpoint::Render = Arc::new(move || {
        state
            .metrics_snapshot(None)
            .map(|s| prometheus::render(&s))
            .map_err(|e| e.to_string())
    });
    tokio::spawn(endpoint::serve(listener, render, shutdown));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_from_proc() {
        let rss = resident_memory_bytes().expect("/proc/self/statm is readable on Linux");
        assert!(rss > 0);
        assert_eq!(read_number("/nonexistent/number"), None);
    }
}
