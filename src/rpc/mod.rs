//! The gRPC edge: tonic services that convert between protobuf and domain types, the access
//! layer (who may call what, on the socket and on TCP), health and reflection. The only module
//! that knows gRPC types.

pub mod admin;
pub mod agents;
pub mod auth;
pub mod authority_front;
pub mod catalog;
pub mod convert;
pub mod graph;
pub mod knowledge;
pub mod limits;
pub mod metered;
pub mod panics;
pub mod registry;
pub mod sessions;
pub mod structs;
pub mod transfer;
pub mod workflows;

use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_stream::StreamExt;
use tonic::transport::Server;
use tonic::Status;

use crate::daemon::{DaemonError, DaemonState};
use crate::proto::admin_server::AdminServer;
use crate::proto::agents_server::AgentsServer;
use crate::proto::catalog_server::CatalogServer;
use crate::proto::knowledge_server::KnowledgeServer;
use crate::proto::sessions_server::SessionsServer;
use crate::proto::transfer_server::TransferServer;
use crate::proto::workflows_server::WorkflowsServer;

/// The encoded descriptors of the public protos, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/workflowdb_descriptor.bin"));

/// Largest message the server accepts or sends.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The request path (`/package.Service/Method`) of every method served: ours, health and
/// both reflection versions, read from their descriptor sets.
pub fn served_methods() -> Vec<String> {
    use prost::Message;
    let sets = [
        FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut out = Vec::new();
    for bytes in sets {
        let set = match prost_types::FileDescriptorSet::decode(bytes) {
            Ok(set) => set,
            Err(e) => {
                // Its methods are then counted under "other"; nothing else depends on it.
                tracing::warn!(error = %e, "cannot read a descriptor set for the RPC metrics");
                continue;
            }
        };
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                let service_name = if package.is_empty() {
                    service.name().to_string()
                } else {
                    format!("{package}.{}", service.name())
                };
                for method in &service.method {
                    out.push(format!("/{service_name}/{}", method.name()));
                }
            }
        }
    }
    out
}

/// The gRPC services as the daemon's [`crate::daemon::Frontend`].
pub struct GrpcFrontend;

impl crate::daemon::Frontend for GrpcFrontend {
    fn methods(&self) -> Vec<String> {
        served_methods()
    }

    fn start(
        self: Box<Self>,
        state: Arc<DaemonState>,
        uds: UnixListener,
        tcp: Option<TcpListener>,
        access: Arc<crate::access::AccessPolicy>,
    ) -> crate::daemon::BoxFuture<Result<crate::daemon::BoxFuture<()>, DaemonError>> {
        Box::pin(async move {
            let servers = spawn_servers(state, uds, tcp, access).await?;
            let joined: crate::daemon::BoxFuture<()> = Box::pin(servers.join());
            Ok(joined)
        })
    }
}

/// The running servers.
pub struct Servers {
    handles: Vec<JoinHandle<()>>,
}

impl Servers {
    /// Waits until every server has stopped.
    pub async fn join(self) {
        for h in self.handles {
            let _ = h.await;
        }
    }
}

/// The health service name that is NOT_SERVING while damage found at start-up is not yet
/// acknowledged (the overall "" status is not changed by it: the daemon does serve).
pub const INTEGRITY_SERVICE: &str = "workflowdb.v1.Integrity";

/// Keeps the Integrity health status in step with the store's damage reports (found at open,
/// cleared only by an acknowledgement, which wakes this: it never wakes on a timer).
async fn spawn_integrity_health(
    state: Arc<DaemonState>,
    reporter: tonic_health::server::HealthReporter,
) {
    let status = |damaged: bool| {
        if damaged {
            tonic_health::ServingStatus::NotServing
        } else {
            tonic_health::ServingStatus::Serving
        }
    };
    // Set before the servers start, so the name is never unknown to a client.
    let mut shown = !state.store.damage_reports().is_empty();
    reporter
        .set_service_status(INTEGRITY_SERVICE, status(shown))
        .await;
    tokio::spawn(async move {
        loop {
            let damaged = !state.store.damage_reports().is_empty();
            if shown != damaged {
                reporter
                    .set_service_status(INTEGRITY_SERVICE, status(damaged))
                    .await;
                shown = damaged;
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = state.damage_acknowledged.notified() => {}
            }
        }
    });
}

/// Starts serving on the Unix socket and, when given, on TCP with a required bearer token;
/// `access` decides who may call what on each. Servers stop accepting when the daemon's
/// shutdown token is cancelled.
pub async fn spawn_servers(
    state: Arc<DaemonState>,
    uds: UnixListener,
    tcp: Option<TcpListener>,
    access: Arc<crate::access::AccessPolicy>,
) -> Result<Servers, DaemonError> {
    panics::install_hook();
    let limits = limits::LimitsLayer::new();
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<crate::proto::graph_server::GraphServer<graph::GraphService>>()
        .await;
    health_reporter
        .set_serving::<CatalogServer<catalog::CatalogService>>()
        .await;
    health_reporter
        .set_serving::<AdminServer<admin::AdminService>>()
        .await;
    spawn_integrity_health(Arc::clone(&state), health_reporter.clone()).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| DaemonError::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| DaemonError::Internal(format!("reflection: {e}")))?;
    let graph =
        crate::proto::graph_server::GraphServer::new(graph::GraphService::new(Arc::clone(&state)))
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let reg = registry::RegistryContext::start(Arc::clone(&state))?;
    let catalog = CatalogServer::new(catalog::CatalogService::new(
        Arc::clone(&state),
        Arc::clone(&reg.owners),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = AdminServer::new(admin::AdminService::new(Arc::clone(&state)));
    health_reporter
        .set_serving::<AgentsServer<agents::AgentsService>>()
        .await;
    health_reporter
        .set_serving::<WorkflowsServer<workflows::WorkflowsService>>()
        .await;
    health_reporter
        .set_serving::<SessionsServer<sessions::SessionsService>>()
        .await;
    health_reporter
        .set_serving::<KnowledgeServer<knowledge::KnowledgeService>>()
        .await;
    health_reporter
        .set_serving::<TransferServer<transfer::TransferService>>()
        .await;
    spawn_health_follower(Arc::clone(&state), health_reporter);
    let agents = AgentsServer::new(agents::AgentsService::new(reg.clone()));
    let workflows = WorkflowsServer::new(workflows::WorkflowsService::new(reg.clone()));
    let sessions = SessionsServer::new(sessions::SessionsService::new(reg.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let knowledge = KnowledgeServer::new(knowledge::KnowledgeService::new(reg.clone()))
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let transfer = TransferServer::new(transfer::TransferService::new(reg))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let mut handles = Vec::new();
    {
        // Measured outermost, so refused (PERMISSION_DENIED) calls are counted too.
        let router = Server::builder()
            .max_concurrent_streams(limits::STREAMS_PER_CONNECTION.value as u32)
            .layer(metered::RpcMetricsLayer::new(Arc::clone(&state.metrics)))
            .layer(auth::AccessLayer::new(
                Arc::clone(&access),
                auth::Transport::Unix,
            ))
            .layer(panics::CatchPanicLayer)
            .layer(limits.clone())
            .add_service(health.clone())
            .add_service(reflection_v1.clone())
            .add_service(reflection_v1alpha.clone())
            .add_service(catalog.clone())
            .add_service(graph.clone())
            .add_service(admin.clone())
            .add_service(agents.clone())
            .add_service(workflows.clone())
            .add_service(sessions.clone())
            .add_service(knowledge.clone())
            .add_service(transfer.clone());
        let shutdown = state.shutdown.clone();
        handles.push(tokio::spawn(async move {
            // Clients that send the socket path as :authority are served as `localhost`.
            let incoming = UnixListenerStream::new(uds)
                .map(|conn| conn.map(authority_front::AuthorityFront::new));
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "unix socket server failed");
            }
        }));
    }
    if let Some(tcp) = tcp {
        if access.tokens.is_empty() {
            return Err(DaemonError::TokenRequired);
        }
        // Measured outermost, so refused (UNAUTHENTICATED) calls are counted too.
        let router = Server::builder()
            .max_concurrent_streams(limits::STREAMS_PER_CONNECTION.value as u32)
            .layer(metered::RpcMetricsLayer::new(Arc::clone(&state.metrics)))
            .layer(auth::AccessLayer::new(access, auth::Transport::Tcp))
            .layer(panics::CatchPanicLayer)
            .layer(limits)
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(catalog)
            .add_service(graph)
            .add_service(admin)
            .add_service(agents)
            .add_service(workflows)
            .add_service(sessions)
            .add_service(knowledge)
            .add_service(transfer);
        let shutdown = state.shutdown.clone();
        let addr = tcp.local_addr().ok();
        tracing::info!(?addr, "listening on TCP (bearer token required)");
        handles.push(tokio::spawn(async move {
            let incoming = TcpListenerStream::new(tcp);
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "tcp server failed");
            }
        }));
    }
    Ok(Servers { handles })
}

/// Keeps gRPC health in step with the store's: every service (and "", the daemon as a whole)
/// is NOT_SERVING while the database cannot be written, SERVING again once it recovered.
fn spawn_health_follower(state: Arc<DaemonState>, reporter: tonic_health::server::HealthReporter) {
    use tonic::server::NamedService;
    let services = [
        "",
        CatalogServer::<catalog::CatalogService>::NAME,
        crate::proto::graph_server::GraphServer::<graph::GraphService>::NAME,
        AdminServer::<admin::AdminService>::NAME,
        AgentsServer::<agents::AgentsService>::NAME,
        WorkflowsServer::<workflows::WorkflowsService>::NAME,
        SessionsServer::<sessions::SessionsService>::NAME,
        KnowledgeServer::<knowledge::KnowledgeService>::NAME,
        TransferServer::<transfer::TransferService>::NAME,
    ];
    let mut serving = state.health.watch();
    tokio::spawn(async move {
        loop {
            let now = *serving.borrow_and_update();
            let status = if now {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            for name in services {
                reporter.set_service_status(name, status).await;
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                changed = serving.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// The gRPC status for a daemon error: a code a client can branch on and a message a person
/// can act on, never longer than [`limits::MAX_STATUS_MESSAGE`].
pub fn status_of(e: DaemonError) -> Status {
    let status = status_of_unbounded(&e);
    Status::new(
        status.code(),
        limits::bounded_message(status.message().to_string()),
    )
}

fn status_of_unbounded(e: &DaemonError) -> Status {
    use crate::store::StoreError;
    match e {
        DaemonError::UnknownRoot(_) => Status::not_found(e.to_string()),
        DaemonError::OutsideWatchRoots(..) => Status::permission_denied(e.to_string()),
        DaemonError::AmbiguousRoot(_) | DaemonError::BadRoot(..) => {
            Status::invalid_argument(e.to_string())
        }
        DaemonError::NoRoots => Status::failed_precondition(e.to_string()),
        DaemonError::SyncTimeout(_) | DaemonError::GraphBuilding(..) => {
            Status::deadline_exceeded(e.to_string())
        }
        DaemonError::GraphFailed(..) => Status::unavailable(e.to_string()),
        DaemonError::ShuttingDown
        | DaemonError::StoreFailing { .. }
        | DaemonError::StoreRestart(_)
        | DaemonError::Scan(crate::catalog::ScanError::Cancelled) => {
            Status::unavailable(e.to_string())
        }
        DaemonError::Scan(crate::catalog::ScanError::Glob { .. }) => {
            Status::invalid_argument(e.to_string())
        }
        DaemonError::Scan(crate::catalog::ScanError::Root(..)) => {
            Status::failed_precondition(e.to_string())
        }
        DaemonError::Store(StoreError::Codec(_) | StoreError::Corrupt { .. }) => {
            Status::data_loss(e.to_string())
        }
        _ => Status::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_served_method_is_known_to_the_metrics() {
        let methods = super::served_methods();
        for m in [
            "/workflowdb.v1.Catalog/Stats",
            "/workflowdb.v1.Catalog/Subscribe",
            "/workflowdb.v1.Agents/RegisterAgent",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(
                methods.iter().any(|x| x == m),
                "{m} missing from {methods:?}"
            );
        }
    }
}
