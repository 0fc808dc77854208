//! The Admin service: which roots are watched.

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::scan_report;
use super::status_of;
use crate::daemon::{DaemonState, Root};
use crate::proto;

/// Adds, removes and lists watched roots.
pub struct AdminService {
    state: Arc<DaemonState>,
}

impl AdminService {
    /// A service over the daemon's state.
    pub fn new(state: Arc<DaemonState>) -> Self {
        AdminService { state }
    }
}

/// A damage report as the wire shows it.
pub fn damage_report(r: &crate::store::DamageReport) -> proto::DamageReport {
    proto::DamageReport {
        detected_ms: r.detected_ms,
        findings: r.findings.clone(),
        previous_instance_id: r.previous_instance_id.clone(),
        instance_id: r.instance_id.clone(),
        catalog_rebuilt: r.catalog_rebuilt.clone(),
        registry: r.registry.clone(),
        registry_entries_dropped: r.registry_entries_dropped.clone(),
    }
}

fn root_info(root: &Root) -> proto::RootInfo {
    let meta = root.store.meta().unwrap_or_default();
    proto::RootInfo {
        root: root.path.display().to_string(),
        root_id: root.id.clone(),
        files: meta.last_scan.as_ref().map_or(0, |s| s.files_seen),
        clock: meta.clock,
        state: root.state().to_string(),
    }
}

#[tonic::async_trait]
impl proto::admin_server::Admin for AdminService {
    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<proto::WatchResponse>, Status> {
        let req = request.into_inner();
        let path = PathBuf::from(&req.path);
        if req.path.is_empty() || !path.is_absolute() || req.path.contains('\0') {
            return Err(Status::invalid_argument(format!(
                "watch needs an absolute folder path, got {}",
                super::limits::short(&req.path)
            )));
        }
        if self.state.shutdown.is_cancelled() {
            return Err(Status::unavailable("the daemon is shutting down"));
        }
        let (root, report) = self.state.add_root(&path, true).await.map_err(status_of)?;
        Ok(Response::new(proto::WatchResponse {
            root: Some(root_info(&root)),
            already_watched: report.is_none(),
            report: report.as_ref().map(scan_report),
        }))
    }

    async fn unwatch(
        &self,
        request: Request<proto::UnwatchRequest>,
    ) -> Result<Response<proto::UnwatchResponse>, Status> {
        let req = request.into_inner();
        if req.root.is_empty() {
            return Err(Status::invalid_argument("unwatch needs a root path or id"));
        }
        let info = root_info(&*self.state.root(&req.root).map_err(status_of)?);
        self.state
            .remove_root(&req.root, req.keep_records)
            .await
            .map_err(status_of)?;
        Ok(Response::new(proto::UnwatchResponse {
            root: Some(proto::RootInfo {
                state: "removed".into(),
                ..info
            }),
        }))
    }

    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let depth = if request.into_inner().full {
            crate::store::Depth::Full
        } else {
            crate::store::Depth::Light
        };
        let state = Arc::clone(&self.state);
        let started = std::time::Instant::now();
        let report = tokio::task::spawn_blocking(move || state.store.verify(depth))
            .await
            .map_err(|e| super::panics::join_status("admin", e))?
            .map_err(|e| status_of(e.into()))?;
        Ok(Response::new(proto::VerifyResponse {
            findings: report.findings.iter().map(ToString::to_string).collect(),
            damage: report.pending.iter().map(damage_report).collect(),
            entries_checked: report.entries_checked,
            elapsed_ms: started.elapsed().as_millis() as u64,
        }))
    }

    async fn acknowledge_damage(
        &self,
        _request: Request<proto::AcknowledgeDamageRequest>,
    ) -> Result<Response<proto::AcknowledgeDamageResponse>, Status> {
        let n = self
            .state
            .store
            .acknowledge_damage()
            .map_err(|e| status_of(e.into()))?;
        if n > 0 {
            tracing::warn!(reports = n, "damage reports acknowledged");
        }
        self.state.damage_acknowledged.notify_one();
        Ok(Response::new(proto::AcknowledgeDamageResponse {
            acknowledged: u32::try_from(n).unwrap_or(u32::MAX),
        }))
    }

    async fn list_roots(
        &self,
        _request: Request<proto::ListRootsRequest>,
    ) -> Result<Response<proto::ListRootsResponse>, Status> {
        Ok(Response::new(proto::ListRootsResponse {
            roots: self.state.roots().iter().map(|r| root_info(r)).collect(),
        }))
    }
}
