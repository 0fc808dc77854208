//! What the workflow-database services share: the registry's store, the event channels behind
//! `WatchAgents`/`WatchRuns`, the lease watcher, and the mapping of registry errors to gRPC
//! statuses.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::status_of;
use crate::daemon::{DaemonError, DaemonState};
use crate::proto;
use crate::registry::RegistryError;
use crate::store::registry::{RegistryStore, RegistryStoreError};

/// Events kept per subscriber before it counts as lagging (it then gets a RESYNC marker).
const EVENT_BUFFER: usize = 256;

/// How often the lease watcher looks for expired leases.
const LEASE_CHECK: Duration = Duration::from_millis(100);

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
    /// The compiled owner matcher, shared with the catalog service.
    pub owners: Arc<super::agents::OwnerCache>,
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
            owners: Arc::default(),
        };
        tokio::spawn(watch_leases(ctx.clone()));
        Ok(ctx)
    }

    /// Runs blocking store work off the async threads.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce(RegistryStore) -> Result<T, RegistryStoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| super::panics::join_status("registry", e))?
            .map_err(registry_status)
    }

    /// Tells `WatchAgents` subscribers about an agent.
    pub fn agent_event(
        &self,
        kind: proto::agent_event::Kind,
        name: &str,
        agent: Option<proto::Agent>,
    ) {
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
        | RegistryError::AgentInUse { .. } => Status::failed_precondition(msg),
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

/// Announces agents whose lease ran out (once per expiry), until shutdown.
async fn watch_leases(ctx: RegistryContext) {
    // (agent, last heartbeat) pairs already announced as expired.
    let mut announced: HashSet<(String, i64)> = HashSet::new();
    let mut first = true;
    let mut tick = tokio::time::interval(LEASE_CHECK);
    loop {
        tokio::select! {
            _ = ctx.state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(agents) = ctx.store.agents() else {
            continue;
        };
        let now = now_ms();
        let mut still = HashSet::new();
        for a in agents {
            let Some(lease) = a.lease else { continue };
            if lease.is_live(now) {
                continue;
            }
            let key = (a.name.clone(), lease.last_heartbeat_ms);
            if !announced.contains(&key) && !first {
                let pb = super::agents::agent_proto(&a, now);
                ctx.agent_event(proto::agent_event::Kind::Expired, &a.name, Some(pb));
            }
            still.insert(key);
        }
        announced = still;
        first = false;
    }
}
