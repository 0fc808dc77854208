//! What the workflow-database services share: the registry's store, the event channels behind
//! `WatchAgents`/`WatchRuns`, the lease watcher, and the mapping of registry errors to gRPC
//! statuses.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::status_of;
use crate::daemon::{DaemonError, DaemonState};
use crate::proto;
use crate::registry::agent::Lease;
use crate::registry::RegistryError;
use crate::store::registry::{RegistryStore, RegistryStoreError};

/// Events kept per subscriber before it counts as lagging (it then gets a RESYNC marker).
const EVENT_BUFFER: usize = 256;

/// How long after a lease's last live instant the watcher looks at it (so an expiry is
/// announced within this much of happening, and a wake finds the lease expired).
const LEASE_SLACK: Duration = Duration::from_millis(1);

/// A boxed server stream.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The state of the workflow-database services.
#[derive(Clone)]
pub struct RegistryContext {
    /// The daemon (roots, shutdown).
    pub state: Arc<DaemonState>,
    /// The registry's trees.
    pub store: RegistryStore,
    /// Agent changes, for `WatchAgents`.
    pub agent_events: broadcast::Sender<proto::AgentEvent>,
    /// Run progress, for `WatchRuns`.
    pub run_events: broadcast::Sender<proto::RunEvent>,
    /// Woken when a run starts: the run expirer sleeps without a deadline while none is open.
    pub run_started: Arc<tokio::sync::Notify>,
    /// The compiled owner matcher, shared with the catalog service.
    pub owners: Arc<super::agents::OwnerCache>,
    /// Woken when an agent (and so perhaps a lease) changed: the lease watcher sleeps until
    /// the next lease can expire or this, never on a fixed period.
    pub agents_changed: Arc<Notify>,
}

impl RegistryContext {
    /// Opens the registry's trees and starts the lease watcher (stopped by shutdown).
    pub fn start(state: Arc<DaemonState>) -> Result<RegistryContext, DaemonError> {
        let store = state.store.registry()?;
        let (agent_events, _) = broadcast::channel(EVENT_BUFFER);
        let (run_events, _) = broadcast::channel(EVENT_BUFFER);
        let ctx = RegistryContext {
            state,
            store,
            agent_events,
            run_events,
            run_started: Arc::new(tokio::sync::Notify::new()),
            owners: Arc::default(),
            agents_changed: Arc::new(Notify::new()),
        };
        tokio::spawn(watch_leases(ctx.clone()));
        if let Some(after) = ctx.state.tuning.run_expiry {
            tokio::spawn(expire_open_runs(ctx.clone(), after));
        }
        Ok(ctx)
    }

    /// Runs blocking store work off the async threads.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce(RegistryStore) -> Result<T, RegistryStoreError> + Send + 'static,
        T: Send + 'static,
    {
        // A write whose flush failed may still be readable in the store's memory: nothing is
        // read or written while the store fails, so no one sees a save that is not durable
        // (after the restart that recovers the store, it is gone).
        self.state.health.check().map_err(status_of)?;
        let store = self.store.clone();
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| super::panics::join_status("registry", e))?
            .map_err(|e| {
                if let RegistryStoreError::Store(s) = &e {
                    if state.note_store_error(s) {
                        // The refusal names the cause, as every later call's does.
                        return status_of(state.health.check().err().unwrap_or(
                            DaemonError::Store(crate::store::StoreError::Sled(
                                state.store_failure_cause(s),
                            )),
                        ));
                    }
                }
                registry_status(e)
            })
    }

    /// Tells `WatchAgents` subscribers about an agent.
    pub fn agent_event(
        &self,
        kind: proto::agent_event::Kind,
        name: &str,
        agent: Option<proto::Agent>,
    ) {
        self.agents_changed.notify_one();
        // No subscriber is not an error.
        let _ = self.agent_events.send(proto::AgentEvent {
            kind: kind as i32,
            name: name.to_string(),
            agent,
            missed: 0,
        });
    }

    /// Tells `WatchRuns` subscribers about a run.
    pub fn run_event(&self, kind: proto::run_event::Kind, run: proto::Run) {
        let _ = self.run_events.send(proto::RunEvent {
            kind: kind as i32,
            run: Some(run),
            missed: 0,
        });
    }
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The gRPC status of a registry error: validation → INVALID_ARGUMENT (every problem listed
/// with its field path), unknown → NOT_FOUND, a refused change of state → FAILED_PRECONDITION,
/// a session over the limit → RESOURCE_EXHAUSTED.
pub fn registry_status(e: RegistryStoreError) -> Status {
    use super::limits::bounded_message;
    match e {
        RegistryStoreError::Domain(d) => domain_status(&d),
        RegistryStoreError::NotFound(m) => Status::not_found(bounded_message(m)),
        RegistryStoreError::AlreadyExists(m) => Status::already_exists(bounded_message(m)),
        RegistryStoreError::Store(s) => status_of(DaemonError::Store(s)),
    }
}

/// The gRPC status of a domain error.
pub fn domain_status(e: &RegistryError) -> Status {
    let msg = super::limits::bounded_message(e.to_string());
    match e {
        RegistryError::Invalid { .. }
        | RegistryError::NotAnObject { .. }
        | RegistryError::InvalidMetric { .. }
        | RegistryError::InvalidDuration { .. }
        | RegistryError::UnknownStep { .. }
        | RegistryError::WrongWorkflow { .. } => Status::invalid_argument(msg),
        RegistryError::SessionTooLarge { .. } => Status::resource_exhausted(msg),
        RegistryError::UnknownCapability { .. }
        | RegistryError::RunFinished { .. }
        | RegistryError::AgentInUse { .. }
        | RegistryError::WorkflowInUse { .. }
        | RegistryError::WorkflowNotReady { .. } => Status::failed_precondition(msg),
    }
}

/// Streams a broadcast channel to one client through a bounded channel that also watches
/// shutdown, so an open stream never holds up shutdown. A subscriber that falls behind gets one
/// `resync(missed)` marker instead of unbounded buffering. `keep` filters events.
pub fn bridge<T, K, R>(
    mut rx: broadcast::Receiver<T>,
    shutdown: CancellationToken,
    keep: K,
    resync: R,
) -> BoxStream<T>
where
    T: Clone + Send + 'static,
    K: Fn(&T) -> bool + Send + 'static,
    R: Fn(u64) -> T + Send + 'static,
{
    let (tx, out) = mpsc::channel(16);
    super::panics::spawn_stream("event stream", tx.clone(), async move {
        loop {
            let item = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = tx.try_send(Err(Status::unavailable("the daemon is shutting down")));
                    return;
                }
                _ = tx.closed() => return,
                item = rx.recv() => item,
            };
            let msg = match item {
                Ok(ev) if keep(&ev) => ev,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => resync(n),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                sent = tx.send(Ok(msg)) => if sent.is_err() { return },
            }
        }
    });
    Box::pin(ReceiverStream::new(out))
}

/// Expires open runs that showed no progress for `after` (`retention.open_runs`), until
/// shutdown. It sleeps until the first open run can expire, or, with none open, until a run
/// starts: an idle daemon is not woken by it.
async fn expire_open_runs(ctx: RegistryContext, after: Duration) {
    /// After a store error, try again this much later.
    const RETRY: Duration = Duration::from_secs(30);
    let idle_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
    loop {
        let now = now_ms();
        let wait = if ctx.state.health.is_healthy() {
            let outcome = ctx
                .blocking(move |reg| {
                    let expired = reg.expire_idle_runs(now, idle_ms)?;
                    Ok((expired, reg.next_run_expiry(idle_ms)?))
                })
                .await;
            match outcome {
                Ok((expired, next)) => {
                    for r in &expired {
                        tracing::info!(run = %r.run_id, workflow = %r.workflow_id, "expired an open run that showed no progress");
                        ctx.run_event(
                            proto::run_event::Kind::Expired,
                            super::workflows::run_proto(r),
                        );
                    }
                    next.map(|at| {
                        Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e.message(), "cannot expire idle runs; trying again later");
                    Some(RETRY)
                }
            }
        } else {
            // Unflushed values must not be announced: try again once the store is healthy.
            Some(RETRY)
        };
        match wait {
            Some(wait) => tokio::select! {
                _ = ctx.state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            },
            None => tokio::select! {
                _ = ctx.state.shutdown.cancelled() => return,
                _ = ctx.run_started.notified() => {}
            },
        }
    }
}

/// Announces agents whose lease ran out (once per expiry), until shutdown. Sleeps until the
/// earliest live lease can expire or an agent changes; with no live lease it only waits.
async fn watch_leases(ctx: RegistryContext) {
    // (agent, last heartbeat) pairs already announced as expired.
    let mut announced: HashSet<(String, i64)> = HashSet::new();
    let mut first = true;
    loop {
        // Registered before the read, so a change made while reading still wakes us.
        let changed = ctx.agents_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let now = now_ms();
        let next = if !ctx.state.health.is_healthy() {
            // Unflushed values must not be announced: look again once the store recovers
            // (it restarts the daemon when it cannot).
            Some(Duration::from_secs(2))
        } else {
            match ctx.store.agents() {
                Ok(agents) => {
                    let mut still = HashSet::new();
                    for a in &agents {
                        let Some(lease) = a.lease else { continue };
                        if lease.is_live(now) {
                            continue;
                        }
                        let key = (a.name.clone(), lease.last_heartbeat_ms);
                        if !announced.contains(&key) && !first {
                            let pb = super::agents::agent_proto(a, now);
                            ctx.agent_event(proto::agent_event::Kind::Expired, &a.name, Some(pb));
                        }
                        still.insert(key);
                    }
                    announced = still;
                    first = false;
                    next_lease_check(agents.iter().filter_map(|a| a.lease), now)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read agents to check leases");
                    None
                }
            }
        };
        let sleep = async {
            match next {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctx.state.shutdown.cancelled() => return,
            _ = changed => {}
            _ = sleep => {}
        }
    }
}

/// How long from `now_ms` until the earliest of the live `leases` has expired (`None`: no
/// live lease, nothing to wait for).
fn next_lease_check(leases: impl Iterator<Item = Lease>, now_ms: i64) -> Option<Duration> {
    leases
        .filter(|l| l.is_live(now_ms))
        .map(|l| l.expires_at_ms())
        .min()
        .map(|at| {
            let ms = u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0);
            Duration::from_millis(ms) + LEASE_SLACK
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(last_heartbeat_ms: i64, ttl_ms: u64) -> Lease {
        Lease {
            ttl_ms,
            last_heartbeat_ms,
        }
    }

    #[test]
    fn no_live_lease_means_no_wake_up() {
        assert_eq!(next_lease_check(std::iter::empty(), 1_000), None);
        // Expired leases were announced already: nothing left to wait for.
        assert_eq!(next_lease_check([lease(0, 10)].into_iter(), 1_000), None);
    }

    #[test]
    fn wakes_just_after_the_earliest_live_lease_expires() {
        let leases = [lease(900, 500), lease(950, 100), lease(0, 10)];
        // The second expires at 1,050 (live through it): wake 1 ms after.
        assert_eq!(
            next_lease_check(leases.into_iter(), 1_000),
            Some(Duration::from_millis(50) + LEASE_SLACK)
        );
        let woke = 1_000 + 50 + LEASE_SLACK.as_millis() as i64;
        assert!(!lease(950, 100).is_live(woke));
    }

    #[test]
    fn a_lease_live_to_this_very_millisecond_is_checked_right_after() {
        assert_eq!(
            next_lease_check([lease(990, 10)].into_iter(), 1_000),
            Some(LEASE_SLACK)
        );
    }
}
