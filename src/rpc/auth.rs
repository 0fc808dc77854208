//! Who may call what: one tower layer on each server that finds the caller's scopes (the
//! peer credentials of a Unix-socket connection, the bearer token of a TCP call) and checks
//! them against the scope the method needs, from the one table below, before any handler runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::{Request, Response};
use pin_project_lite::pin_project;
use tonic::transport::server::UdsConnectInfo;
use tonic::Status;
use tower::{Layer, Service};

use crate::access::{AccessPolicy, Scope, Scopes};

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any scope at all (health and reflection: knowing the daemon is there and what it
    /// serves).
    AnyScope,
    /// This scope.
    Scope(Scope),
}

use Need::AnyScope;
const READ: Need = Need::Scope(Scope::Read);
const WRITE: Need = Need::Scope(Scope::Write);
const ADMIN: Need = Need::Scope(Scope::Admin);

/// The scope every served method needs, by request path. A method missing here needs
/// `admin` (and a unit test fails), so a new method cannot slip through unchecked.
pub static METHOD_SCOPES: &[(&str, Need)] = &[
    ("/workflowdb.v1.Catalog/GetFile", READ),
    ("/workflowdb.v1.Catalog/ListFiles", READ),
    ("/workflowdb.v1.Catalog/FindDuplicates", READ),
    ("/workflowdb.v1.Catalog/Stats", READ),
    ("/workflowdb.v1.Catalog/Rescan", ADMIN),
    ("/workflowdb.v1.Catalog/GetClock", READ),
    ("/workflowdb.v1.Catalog/Changes", READ),
    ("/workflowdb.v1.Catalog/ChangesStream", READ),
    ("/workflowdb.v1.Catalog/Subscribe", READ),
    ("/workflowdb.v1.Graph/Dependencies", READ),
    ("/workflowdb.v1.Graph/Related", READ),
    ("/workflowdb.v1.Graph/Affected", READ),
    ("/workflowdb.v1.Graph/Path", READ),
    ("/workflowdb.v1.Graph/Cycles", READ),
    ("/workflowdb.v1.Graph/Orphans", READ),
    ("/workflowdb.v1.Graph/Components", READ),
    ("/workflowdb.v1.Graph/Rank", READ),
    ("/workflowdb.v1.Graph/Export", READ),
    ("/workflowdb.v1.Admin/Watch", ADMIN),
    ("/workflowdb.v1.Admin/Unwatch", ADMIN),
    ("/workflowdb.v1.Admin/ListRoots", READ),
    // Reads the whole database: as costly as a rescan.
    ("/workflowdb.v1.Admin/Verify", ADMIN),
    ("/workflowdb.v1.Admin/AcknowledgeDamage", ADMIN),
    ("/workflowdb.v1.Agents/RegisterAgent", WRITE),
    ("/workflowdb.v1.Agents/GetAgent", READ),
    ("/workflowdb.v1.Agents/ListAgents", READ),
    ("/workflowdb.v1.Agents/RemoveAgent", WRITE),
    ("/workflowdb.v1.Agents/RecordMetric", WRITE),
    ("/workflowdb.v1.Agents/Heartbeat", WRITE),
    ("/workflowdb.v1.Agents/WatchAgents", READ),
    ("/workflowdb.v1.Workflows/DefineWorkflow", WRITE),
    ("/workflowdb.v1.Workflows/GetWorkflow", READ),
    ("/workflowdb.v1.Workflows/ListWorkflows", READ),
    ("/workflowdb.v1.Workflows/WorkflowVersions", READ),
    ("/workflowdb.v1.Workflows/InstallDefaults", WRITE),
    ("/workflowdb.v1.Workflows/DeleteWorkflow", WRITE),
    ("/workflowdb.v1.Workflows/StartRun", WRITE),
    ("/workflowdb.v1.Workflows/ReportStep", WRITE),
    ("/workflowdb.v1.Workflows/FinishRun", WRITE),
    ("/workflowdb.v1.Workflows/GetRun", READ),
    ("/workflowdb.v1.Workflows/ListRuns", READ),
    ("/workflowdb.v1.Workflows/ExpireRuns", WRITE),
    ("/workflowdb.v1.Workflows/WatchRuns", READ),
    ("/workflowdb.v1.Sessions/SaveSession", WRITE),
    ("/workflowdb.v1.Sessions/RestoreSession", READ),
    ("/workflowdb.v1.Sessions/SessionHistory", READ),
    ("/workflowdb.v1.Sessions/ListSessions", READ),
    ("/workflowdb.v1.Sessions/DeleteSession", WRITE),
    ("/workflowdb.v1.Sessions/GetSessionSettings", READ),
    ("/workflowdb.v1.Sessions/SetSessionSettings", WRITE),
    ("/workflowdb.v1.Knowledge/Neighbors", READ),
    ("/workflowdb.v1.Knowledge/Related", READ),
    ("/workflowdb.v1.Knowledge/ShortestPath", READ),
    ("/workflowdb.v1.Knowledge/Lookup", READ),
    ("/workflowdb.v1.Knowledge/GetGraph", READ),
    ("/workflowdb.v1.Knowledge/Rebuild", WRITE),
    ("/workflowdb.v1.Transfer/Export", READ),
    ("/workflowdb.v1.Transfer/Import", ADMIN),
    ("/workflowdb.v1.Transfer/ImportStream", ADMIN),
    ("/workflowdb.v1.Transfer/Report", READ),
    ("/grpc.health.v1.Health/Check", AnyScope),
    ("/grpc.health.v1.Health/Watch", AnyScope),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        AnyScope,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        AnyScope,
    ),
];

/// What the method at `path` needs (`admin` for a method not in the table).
pub fn need_of(path: &str) -> Need {
    METHOD_SCOPES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(ADMIN, |(_, n)| *n)
}

/// Which server a layer guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The Unix socket: callers are known by their connection's credentials.
    Unix,
    /// TCP: callers are known by their bearer token.
    Tcp,
}

/// Refuses calls whose caller lacks the scope the method needs.
#[derive(Clone)]
pub struct AccessLayer {
    policy: Arc<AccessPolicy>,
    transport: Transport,
}

impl AccessLayer {
    /// A layer applying `policy` to callers of `transport`.
    pub fn new(policy: Arc<AccessPolicy>, transport: Transport) -> Self {
        AccessLayer { policy, transport }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessChecked<S>;

    fn layer(&self, inner: S) -> AccessChecked<S> {
        AccessChecked {
            inner,
            policy: Arc::clone(&self.policy),
            transport: self.transport,
        }
    }
}

/// A service whose calls are checked against the access policy.
#[derive(Clone)]
pub struct AccessChecked<S> {
    inner: S,
    policy: Arc<AccessPolicy>,
    transport: Transport,
}

/// The method's short name for messages (`Agents/RegisterAgent`).
fn short(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    let short = path.rsplit_once('.').map_or(path, |(_, s)| s);
    // A made-up path is quoted only in part.
    match short.char_indices().nth(80) {
        Some((i, _)) => &short[..i],
        None => short,
    }
}

/// The caller's scopes and how to name the caller in a refusal.
fn caller(
    policy: &AccessPolicy,
    transport: Transport,
    extensions: &hyper::http::Extensions,
    headers: &hyper::HeaderMap,
) -> Result<(Scopes, String), Status> {
    match transport {
        Transport::Unix => {
            let Some(cred) = extensions.get::<UdsConnectInfo>().and_then(|c| c.peer_cred) else {
                return Err(Status::permission_denied(
                    "the caller's user cannot be told from this connection, so it has no access",
                ));
            };
            let (uid, gid) = (cred.uid(), cred.gid());
            let scopes = policy.local_scopes(uid, gid);
            if scopes.is_empty() {
                return Err(Status::permission_denied(format!(
                    "uid {uid} has no access to this daemon (run by uid {}): its owner can grant \
                     some in the daemon's configuration file, e.g. \
                     `access.local_users = [{{ uid = {uid}, scopes = [\"read\"] }}]`",
                    policy.owner_uid
                )));
            }
            Ok((scopes, format!("uid {uid}")))
        }
        Transport::Tcp => match headers.get("authorization") {
            Some(v) => match policy.token(v.as_bytes()) {
                Some(t) => Ok((t.scopes, format!("token `{}`", t.name))),
                None => Err(Status::unauthenticated("wrong bearer token")),
            },
            None => Err(Status::unauthenticated(
                "a bearer token is required on TCP: send `authorization: Bearer <token>`",
            )),
        },
    }
}

impl<S, B, R> Service<Request<B>> for AccessChecked<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Checked<S::Future, Response<R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let checked = caller(
            &self.policy,
            self.transport,
            req.extensions(),
            req.headers(),
        )
        .and_then(|(scopes, who)| match need_of(path) {
            AnyScope => Ok(()),
            Need::Scope(s) if scopes.contains(s) => Ok(()),
            Need::Scope(s) => Err(Status::permission_denied(format!(
                "{who} may {scopes}; {} needs the `{}` scope",
                short(path),
                s.name()
            ))),
        });
        match checked {
            Ok(()) => {
                // The readiness reserved by poll_ready belongs to `self.inner`: call it, and
                // keep a fresh clone for the next call.
                let clone = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, clone);
                Checked::Allowed {
                    inner: ready.call(req),
                }
            }
            Err(status) => {
                tracing::info!(method = short(path), code = ?status.code(), reason = status.message(), "call refused");
                Checked::Refused {
                    response: Some(status.into_http()),
                }
            }
        }
    }
}

pin_project! {
    /// The response of a checked call: the handler's, or the refusal.
    #[project = CheckedProj]
    pub enum Checked<F, T> {
        Allowed { #[pin] inner: F },
        Refused { response: Option<T> },
    }
}

impl<F, T, E> Future for Checked<F, T>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CheckedProj::Allowed { inner } => inner.poll(cx),
            CheckedProj::Refused { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled again after it finished: a caller bug; never answered twice.
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_has_a_scope_and_every_entry_is_served() {
        let served = crate::rpc::served_methods();
        assert!(served.len() > 50, "{served:?}");
        for m in &served {
            assert!(
                METHOD_SCOPES.iter().any(|(p, _)| p == m),
                "{m} has no scope in METHOD_SCOPES"
            );
        }
        for (p, _) in METHOD_SCOPES {
            assert!(
                served.iter().any(|m| m == p),
                "{p} is in METHOD_SCOPES but not served"
            );
        }
        assert_eq!(need_of("/workflowdb.v1.Admin/Watch"), ADMIN);
        assert_eq!(need_of("/workflowdb.v1.Agents/RegisterAgent"), WRITE);
        assert_eq!(need_of("/made.up/Method"), ADMIN);
    }

    #[test]
    fn refusals_name_the_caller_and_the_scope() {
        let read: Scopes = [Scope::Read].into_iter().collect();
        let policy = AccessPolicy {
            owner_uid: 1000,
            local: vec![],
            tokens: vec![crate::access::Token::new("ci", "0123456789abcdef", read)],
        };
        let mut headers = hyper::HeaderMap::new();
        let ext = hyper::http::Extensions::new();
        let e = caller(&policy, Transport::Tcp, &ext, &headers).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        headers.insert("authorization", "Bearer nope".parse().unwrap());
        let e = caller(&policy, Transport::Tcp, &ext, &headers).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        headers.insert("authorization", "Bearer 0123456789abcdef".parse().unwrap());
        let (scopes, who) = caller(&policy, Transport::Tcp, &ext, &headers).unwrap();
        assert_eq!((scopes, who.as_str()), (read, "token `ci`"));
        let e = caller(&policy, Transport::Unix, &ext, &headers).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            short("/workflowdb.v1.Agents/RegisterAgent"),
            "Agents/RegisterAgent"
        );
        assert_eq!(short(&format!("/{}", "x".repeat(1000))).len(), 80);
    }
}
