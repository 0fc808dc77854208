//! The file watcher: one inotify instance (through `notify`) holding a non-recursive watch on
//! every catalogued folder of every root, plus the daemon's cookie folder. It only reports
//! paths; it never hashes. Ignored folders are never watched, so they cost no watches.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

/// What the watcher tells the pipeline.
#[derive(Debug)]
pub enum WatchMsg {
    /// Paths that may have changed (hints: the stat-compare is the truth).
    Paths(Vec<PathBuf>),
    /// The kernel queue overflowed: events were lost, every root must be reconciled.
    Overflow,
}

/// Why a folder could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start the file watcher: {0}")]
    Start(String),
}

/// The daemon's inotify watcher and the folders it covers.
pub struct FsWatcher {
    watcher: Mutex<notify::RecommendedWatcher>,
    watched: Mutex<HashSet<PathBuf>>,
    polled: Mutex<HashSet<PathBuf>>,
    /// A cap below the kernel's limit (0: none), e.g. to leave watches for other programs.
    max_watches: usize,
    warned: std::sync::atomic::AtomicBool,
    /// Woken when a folder starts being polled: the poller sleeps on it, not on a timer,
    /// while every folder is watched.
    polling_started: tokio::sync::Notify,
}

impl FsWatcher {
    /// Starts the watcher; events go to `tx`.
    pub fn start(
        tx: UnboundedSender<WatchMsg>,
        max_watches: usize,
    ) -> Result<FsWatcher, WatchError> {
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                if event.need_rescan() {
                    let _ = tx.send(WatchMsg::Overflow);
                    return;
                }
                // The daemon's own reads fire open/read events: only a close after writing
                // means content may have changed.
                if let EventKind::Access(kind) = event.kind {
                    if kind != AccessKind::Close(AccessMode::Write) {
                        return;
                    }
                }
                if !event.paths.is_empty() {
                    let _ = tx.send(WatchMsg::Paths(event.paths));
                }
            }
            Err(e) => {
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    tracing::warn!(error = %e, "inotify limit reached");
                } else {
                    tracing::warn!(error = %e, "watch error; reconciling to be safe");
                    let _ = tx.send(WatchMsg::Overflow);
                }
            }
        };
        let watcher =
            notify::recommended_watcher(handler).map_err(|e| WatchError::Start(e.to_string()))?;
        Ok(FsWatcher {
            watcher: Mutex::new(watcher),
            watched: Mutex::new(HashSet::new()),
            polled: Mutex::new(HashSet::new()),
            max_watches,
            warned: std::sync::atomic::AtomicBool::new(false),
            polling_started: tokio::sync::Notify::new(),
        })
    }

    /// Watches one folder (not its subfolders). A folder that cannot be watched because the
    /// watch limit is reached is polled instead; returns whether it is watched.
    pub fn watch_dir(&self, dir: &Path) -> bool {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if watched.contains(dir) {
            return true;
        }
        if self.max_watches > 0 && watched.len() >= self.max_watches {
            self.fall_back_to_polling(dir, "the configured --max-watches");
            return false;
        }
        let outcome = self
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .watch(dir, RecursiveMode::NonRecursive);
        match outcome {
            Ok(()) => {
                watched.insert(dir.to_path_buf());
                true
            }
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                self.fall_back_to_polling(dir, "the kernel's fs.inotify.max_user_watches");
                false
            }
            Err(e) => {
                // Vanished folders fail here; the next batch sees them gone.
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch folder");
                false
            }
        }
    }

    fn fall_back_to_polling(&self, dir: &Path, limit: &str) {
        if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                limit,
                "out of inotify watches: folders beyond the limit are polled instead (slower to notice changes); raise it with `sysctl fs.inotify.max_user_watches=524288` (persist in /etc/sysctl.d/)"
            );
        }
        self.polled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir.to_path_buf());
        self.polling_started.notify_one();
    }

    /// Returns once at least one folder is polled (at once if one is already).
    pub async fn wait_for_polled(&self) {
        loop {
            // Registered before the check, so a folder added in between still wakes us.
            let started = self.polling_started.notified();
            tokio::pin!(started);
            started.as_mut().enable();
            if !self
                .polled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
            {
                return;
            }
            started.await;
        }
    }

    /// Forgets folders under `prefix` (a root that is no longer watched). The kernel drops
    /// watches of deleted folders by itself.
    pub fn forget_under(&self, prefix: &Path) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<PathBuf> = watched
            .iter()
            .filter(|d| d.starts_with(prefix))
            .cloned()
            .collect();
        let mut w = self.watcher.lock().unwrap_or_else(|p| p.into_inner());
        for d in gone {
            let _ = w.unwatch(&d);
            watched.remove(&d);
        }
        self.polled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|d| !d.starts_with(prefix));
    }

    /// Marks a folder as gone (deleted or moved away).
    pub fn forget(&self, dir: &Path) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(dir);
        self.polled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(dir);
    }

    /// Folders polled because no watch could be had.
    pub fn polled(&self) -> Vec<PathBuf> {
        self.polled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The configured cap on watches (0: none but the kernel's).
    pub fn max_watches(&self) -> usize {
        self.max_watches
    }

    /// (watched, polled) folder counts.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.watched.lock().unwrap_or_else(|p| p.into_inner()).len() as u64,
            self.polled.lock().unwrap_or_else(|p| p.into_inner()).len() as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_poller_waits_without_a_timer_until_a_folder_is_polled() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let w = std::sync::Arc::new(FsWatcher::start(tx, 1).expect("inotify"));
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).expect("mkdir");
        std::fs::create_dir(&b).expect("mkdir");
        assert!(w.watch_dir(&a));
        let waiting = tokio::spawn({
            let w = std::sync::Arc::clone(&w);
            async move { w.wait_for_polled().await }
        });
        // Nothing is polled: the wait does not end.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the wait ended with nothing polled");
        // Past the cap of one watch, the next folder is polled, which ends the wait.
        assert!(!w.watch_dir(&b));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ended")
            .expect("the task ran");
        // Once a folder is polled, waiting again returns at once.
        tokio::time::timeout(Duration::from_secs(5), w.wait_for_polled())
            .await
            .expect("already polled");
        w.forget(&b);
        assert!(w.polled().is_empty());
    }
}
