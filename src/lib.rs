//! workflowdb: an always-current catalog of repositories and a workflow database beside it,
//! served over gRPC.

pub mod access;
pub mod catalog;
pub mod client;
pub mod config;
pub mod daemon;
pub mod deps;
pub mod graph;
pub mod metrics;
pub mod paths;
pub mod quote;
pub mod registry;
pub mod rpc;
pub mod socket_trust;
pub mod store;
pub mod watch;

/// Generated protobuf and gRPC types of the `workflowdb.v1` package.
#[allow(clippy::all, missing_docs)] // Generated code is not ours to lint.
pub mod proto {
    tonic::include_proto!("workflowdb.v1");
}
