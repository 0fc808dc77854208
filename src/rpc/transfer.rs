//! The Transfer service: the whole database as one JSON document (export), the validated,
//! atomic import of such a document, and the report.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tonic::{Request, Response, Status};

use super::knowledge::GraphRecords;
use super::registry::{now_ms, BoxStream, RegistryContext};
use crate::catalog::record::rfc3339_ns;
use crate::daemon::DaemonState;
use crate::proto;
use crate::registry::document::{self, ExportRecords};
use crate::registry::report::{self, ReportInputs, RootSummary};
use crate::store::registry::{ImportSet, RegistryStore, RegistryStoreError};

/// Bytes per streamed export chunk.
const EXPORT_CHUNK: usize = 1 << 20;

/// Exports, imports and reports.
pub struct TransferService {
    ctx: RegistryContext,
}

impl TransferService {
    /// A service over the registry.
    pub fn new(ctx: RegistryContext) -> Self {
        TransferService { ctx }
    }
}

/// The export document (blocking).
pub fn export_document(
    state: &DaemonState,
    reg: &RegistryStore,
) -> Result<Value, RegistryStoreError> {
    let records = GraphRecords::load(state, reg)?;
    let graph = records.graph();
    let mut files = Map::new();
    for f in &records.files {
        let r = &f.record;
        files.insert(
            f.key.clone(),
            json!({
                "path": r.path.to_lossy(),
                "file_type": r.file_type,
                "purpose": r.purpose.as_str(),
                "dependencies": r.dependencies,
                "related_agents": f.owners,
                "last_modified": rfc3339_ns(r.fingerprint.mtime_ns),
                "size_bytes": r.fingerprint.size,
                "checksum": r.checksum(),
                "sha256": r.sha256_hex(),
                "component": r.component,
                "description": r.description,
                "externals": r.externals,
                "root_id": f.root_id,
            }),
        );
    }
    let mut roots = Vec::new();
    for root in state.roots() {
        let clock = root.store.meta()?.clock;
        roots.push(
            json!({"root": root.path.display().to_string(), "root_id": root.id, "clock": clock}),
        );
    }
    let settings = reg.settings()?;
    Ok(document::export(&ExportRecords {
        files,
        roots,
        agents: &records.agents,
        workflow_versions: &reg.all_workflow_versions()?,
        runs: &records.runs,
        session_versions: &reg.all_session_versions()?,
        knowledge_graph: graph.to_original_json(),
        max_session_bytes: settings.max_session_bytes,
        retention: settings.retention,
    }))
}

/// The report as JSON (blocking).
pub fn report_value(state: &DaemonState, reg: &RegistryStore) -> Result<Value, RegistryStoreError> {
    let records = GraphRecords::load(state, reg)?;
    let graph = records.graph();
    let mut roots = Vec::new();
    for root in state.roots() {
        let mut summary = RootSummary {
            root: root.path.display().to_string(),
            root_id: root.id.clone(),
            clock: root.store.meta()?.clock,
            ..Default::default()
        };
        for f in records.files.iter().filter(|f| f.root_id == root.id) {
            let r = &f.record;
            summary.add_file(
                &f.key,
                r.fingerprint.size,
                &r.file_type,
                r.purpose.as_str(),
                &r.component,
            );
        }
        summary.trim_largest();
        roots.push(summary);
    }
    let sessions = reg.latest_session_metas()?;
    Ok(report::build(&ReportInputs {
        now_ms: now_ms(),
        roots: &roots,
        agents: &records.agents,
        workflows: &records.workflows,
        runs: &records.runs,
        sessions: &sessions,
        graph: &graph,
    }))
}

#[tonic::async_trait]
impl proto::transfer_server::Transfer for TransferService {
    type ExportStream = BoxStream<proto::ExportChunk>;

    async fn export(
        &self,
        _request: Request<proto::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let state = Arc::clone(&self.ctx.state);
        let doc = self
            .ctx
            .blocking(move |reg| export_document(&state, &reg))
            .await?;
        let mut bytes = serde_json::to_vec_pretty(&doc)
            .map_err(|e| Status::internal(format!("cannot encode the export: {e}")))?;
        bytes.push(b'\n');
        let chunks: Vec<Result<proto::ExportChunk, Status>> = bytes
            .chunks(EXPORT_CHUNK)
            .map(|c| Ok(proto::ExportChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn import(
        &self,
        request: Request<proto::ImportRequest>,
    ) -> Result<Response<proto::ImportResponse>, Status> {
        let req = request.into_inner();
        let doc: Value = serde_json::from_slice(&req.document).map_err(|e| {
            Status::invalid_argument(format!(
                "the import changed nothing: the document is not JSON: {e}"
            ))
        })?;
        let now = now_ms();
        let outcome = self
            .ctx
            .blocking(move |reg| {
                let settings = reg.settings()?;
                let parsed =
                    match document::parse(&doc, now, settings.max_session_bytes, |id, v| {
                        matches!(reg.workflow(id, Some(v)), Ok(Some(_)))
                    }) {
                        Ok(p) => p,
                        Err(e) => return Ok(Err(e)),
                    };
                let resp = proto::ImportResponse {
                    agents: parsed.agents.len() as u64,
                    workflow_versions: parsed.workflows.len() as u64,
                    runs: parsed.runs.len() as u64,
                    session_versions: parsed.sessions.len() as u64,
                    files_ignored: parsed.files,
                };
                if !req.dry_run {
                    reg.import(&ImportSet {
                        agents: parsed.agents,
                        workflows: parsed.workflows,
                        runs: parsed.runs,
                        sessions: parsed.sessions,
                    })?;
                    if let Some((max, retention)) = parsed.settings {
                        let mut s = reg.settings()?;
                        s.max_session_bytes = max;
                        s.retention = retention;
                        reg.set_settings(&s)?;
                    }
                }
                Ok(Ok(resp))
            })
            .await?;
        // Imported agents may hold leases the lease watcher must now wait for.
        self.ctx.agents_changed.notify_one();
        match outcome {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e) => Err(Status::invalid_argument(e.to_string())),
        }
    }

    async fn report(
        &self,
        request: Request<proto::ReportRequest>,
    ) -> Result<Response<proto::ReportResponse>, Status> {
        let format = request.into_inner().format;
        let state = Arc::clone(&self.ctx.state);
        let value = self
            .ctx
            .blocking(move |reg| report_value(&state, &reg))
            .await?;
        let text = match format.as_str() {
            "" | "text" => report::render_text(&value),
            "markdown" | "md" => report::render_markdown(&value),
            "json" => {
                serde_json::to_string_pretty(&value).map_err(|e| Status::internal(e.to_string()))?
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown report format {other:?}; use text, markdown or json"
                )))
            }
        };
        Ok(Response::new(proto::ReportResponse { text }))
    }
}
