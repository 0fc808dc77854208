//! Giving memory back to the OS. glibc's malloc keeps what a thread freed in that thread's
//! arena (by default up to eight arenas per core) and returns only the top of the main heap:
//! after the parallel hashing of a cold index or a graph build, most of the freed memory
//! stays resident for the life of the daemon. A trim of every arena once work has gone quiet
//! brings the resident size back to what is live. (Capping the arenas at two saved another
//! 13 MB settled but made the cold index 9 % slower, the hashing threads contending for the
//! allocator: not worth it. BENCHMARKS.md has the A/B.)

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long after the last noted work the heap is trimmed: long enough that a burst of
/// batches trims once, short enough that a settled daemon is small soon after.
pub const QUIET: Duration = Duration::from_secs(1);

/// Returns the free memory of every arena to the OS now (a few milliseconds on a large heap).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it does not touch live allocations.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims the heap once work that allocated much (a reconcile, a batch, a graph build, a
/// large answer) has been followed by [`QUIET`]; between bursts it sleeps on a notification,
/// never on a timer.
#[derive(Default)]
pub struct Releaser {
    work: Notify,
}

impl Releaser {
    /// Notes work that may have left freed memory behind.
    pub fn note(&self) {
        self.work.notify_one();
    }

    /// Runs `release` `quiet` after each burst of noted work, until `stop` is cancelled.
    pub async fn run<F: FnMut()>(
        self: Arc<Self>,
        quiet: Duration,
        stop: CancellationToken,
        mut release: F,
    ) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.work.notified() => {}
            }
            // More work within `quiet` postpones the trim.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.work.notified() => continue,
                    _ = tokio::time::sleep(quiet) => break,
                }
            }
            release();
        }
    }

    /// Starts [`Releaser::run`] with [`trim`] on the blocking pool.
    pub fn spawn(self: &Arc<Self>, stop: CancellationToken) {
        let this = Arc::clone(self);
        tokio::spawn(this.run(QUIET, stop, || {
            drop(tokio::task::spawn_blocking(trim));
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn wait_for(count: &AtomicUsize, n: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while count.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the release ran");
    }

    #[tokio::test]
    async fn releases_once_per_burst_and_never_when_idle() {
        let releaser = Arc::new(Releaser::default());
        let released = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (releaser, released, stop) =
                (Arc::clone(&releaser), Arc::clone(&released), stop.clone());
            let quiet = Duration::from_millis(100);
            releaser.run(quiet, stop, move || {
                released.fetch_add(1, Ordering::SeqCst);
            })
        });
        // Idle: nothing is released.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(released.load(Ordering::SeqCst), 0);
        // A burst of notes (each within the quiet time of the previous) releases once.
        for _ in 0..5 {
            releaser.note();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        wait_for(&released, 1).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(released.load(Ordering::SeqCst), 1);
        // The next burst releases again.
        releaser.note();
        wait_for(&released, 2).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stopped")
            .expect("ran");
    }

    #[test]
    fn trimming_is_safe_to_call_any_time() {
        let v: Vec<Vec<u8>> = (0..1000).map(|i| vec![0u8; 1024 + i]).collect();
        drop(v);
        trim();
    }
}
