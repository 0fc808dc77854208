//! The Transfer service: the whole database as one JSON document (export), the validated,
//! atomic import of such a document, and the report.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tonic::{Request, Response, Status};

use super::knowledge::{graph_key, wait_for_dependency_graphs, GraphRecords};
use super::registry::{now_ms, BoxStream, RegistryContext};
use super::status_of;
use crate::catalog::record::rfc3339_ns;
use crate::daemon::{DaemonError, DaemonState};
use crate::proto;
use crate::registry::document::{self, ExportRecords};
use crate::registry::report::{self, ReportInputs, RootSummary};
use crate::store::registry::{ImportSet, RegistryStore, RegistryStoreError};

/// Bytes per streamed export chunk.
const EXPORT_CHUNK: usize = 1 << 20;

/// The largest document one `ImportStream` holds: it is parsed whole (validated before
/// anything is written), so its size bounds the daemon's memory during an import.
const MAX_IMPORT_BYTES: usize = 1 << 30;

/// Exports, imports and reports.
pub struct TransferService {
    ctx: RegistryContext,
}

impl TransferService {
    /// A service over the registry.
    pub fn new(ctx: RegistryContext) -> Self {
        TransferService { ctx }
    }

    /// Validates a whole export document, then (unless `dry_run`) applies it atomically.
    async fn import_document(
        &self,
        document: Vec<u8>,
        dry_run: bool,
    ) -> Result<Response<proto::ImportResponse>, Status> {
        let doc: Value = serde_json::from_slice(&document).map_err(|e| {
            Status::invalid_argument(format!(
                "the import changed nothing: the document is not JSON: {e}"
            ))
        })?;
        drop(document);
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
                if !dry_run {
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
}

/// Bytes as lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The export document (blocking; after [`wait_for_dependency_graphs`]).
pub fn export_document(
    state: &DaemonState,
    reg: &RegistryStore,
) -> Result<Value, RegistryStoreError> {
    export_document_of(&state.roots(), reg)
}

/// The export document of these roots and the registry (blocking; `wfdb export --db` calls
/// it without a daemon).
pub fn export_document_of(
    root_list: &[Arc<crate::daemon::Root>],
    reg: &RegistryStore,
) -> Result<Value, RegistryStoreError> {
    let records = GraphRecords::load_roots(root_list, reg)?;
    let graph = records.graph();
    let mut files = Map::new();
    for f in &records.files {
        let r = &f.record;
        // A name that is not UTF-8 shows lossily in `path` and in its graph key, where two
        // such names can look the same: the key then carries the exact bytes (hex), and so
        // does `path_bytes_hex`, so no file is lost and each one's name is kept byte for byte.
        let exact = r.path.as_str().is_none().then(|| hex(r.path.as_bytes()));
        let key = match &exact {
            Some(h) => format!("{}#path_bytes_hex={h}", f.key),
            None => f.key.clone(),
        };
        let mut entry = json!({
                "path": r.path.to_lossy(),
                "file_type": r.file_type,
                "purpose": r.purpose.as_str(),
                "dependencies": f.dependencies,
                "related_agents": f.owners,
                "last_modified": rfc3339_ns(r.fingerprint.mtime_ns),
                "size_bytes": r.fingerprint.size,
                "checksum": r.checksum(),
                "sha256": r.sha256_hex(),
                "component": r.component,
                "description": r.description,
                "externals": f.externals,
                "root_id": f.root_id,
        });
        if f.dependencies_pending {
            // A rebuild began after the wait: say so rather than pass a stale list as true.
            entry["dependencies_pending"] = json!(true);
        }
        if let Some(h) = exact {
            entry["path_bytes_hex"] = json!(h);
        }
        files.insert(key, entry);
    }
    let mut roots = Vec::new();
    for root in root_list {
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

/// The file dependency cycles of every root, as graph keys, from the same query graph that
/// `graph cycles` reads (so the two always agree). After [`wait_for_dependency_graphs`].
pub async fn dependency_cycles(state: &DaemonState) -> Result<Vec<Vec<String>>, Status> {
    let roots = state.roots();
    let qualified = roots.len() > 1;
    let mut out = Vec::new();
    for root in roots {
        let r = Arc::clone(&root);
        let graph = tokio::task::spawn_blocking(move || r.graph.snapshot(&r.store))
            .await
            .map_err(|e| super::panics::join_status("transfer", e))?
            .map_err(status_of)?
            .ok_or_else(|| {
                status_of(DaemonError::GraphBuilding(
                    root.path.clone(),
                    state.sync_timeout,
                ))
            })?;
        out.extend(graph.cycles().into_iter().map(|c| {
            c.files
                .iter()
                .map(|f| graph_key(qualified, &root.id, f))
                .collect::<Vec<_>>()
        }));
    }
    Ok(out)
}

/// The report as JSON (blocking), with the cycles of [`dependency_cycles`].
pub fn report_value(
    state: &DaemonState,
    reg: &RegistryStore,
    cycles: &[Vec<String>],
) -> Result<Value, RegistryStoreError> {
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
        dependency_cycles: cycles,
    }))
}

#[tonic::async_trait]
impl proto::transfer_server::Transfer for TransferService {
    type ExportStream = BoxStream<proto::ExportChunk>;

    async fn export(
        &self,
        _request: Request<proto::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        wait_for_dependency_graphs(&self.ctx.state).await?;
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
        self.import_document(req.document, req.dry_run).await
    }

    async fn import_stream(
        &self,
        request: Request<tonic::Streaming<proto::ImportChunk>>,
    ) -> Result<Response<proto::ImportResponse>, Status> {
        let mut stream = request.into_inner();
        let mut document = Vec::new();
        let mut dry_run = None;
        while let Some(chunk) = stream.message().await? {
            dry_run.get_or_insert(chunk.dry_run);
            if document.len() + chunk.data.len() > MAX_IMPORT_BYTES {
                return Err(Status::resource_exhausted(format!(
                    "the import changed nothing: the document is larger than the {} MiB one \
                     import may hold; import a smaller export (say, with fewer session versions)",
                    MAX_IMPORT_BYTES >> 20
                )));
            }
            document.extend_from_slice(&chunk.data);
        }
        self.import_document(document, dry_run.unwrap_or(false))
            .await
    }

    async fn report(
        &self,
        request: Request<proto::ReportRequest>,
    ) -> Result<Response<proto::ReportResponse>, Status> {
        let format = request.into_inner().format;
        wait_for_dependency_graphs(&self.ctx.state).await?;
        let cycles = dependency_cycles(&self.ctx.state).await?;
        let state = Arc::clone(&self.ctx.state);
        let value = self
            .ctx
            .blocking(move |reg| report_value(&state, &reg, &cycles))
            .await?;
        let text = match format.as_str() {
            "" | "text" => report::render_text(&value),
            "markdown" | "md" => report::render_markdown(&value),
            "json" => {
                serde_json::to_string_pretty(&value).map_err(|e| Status::internal(e.to_string()))?
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown report format {}; use text, markdown or json",
                    super::limits::short(other)
                )))
            }
        };
        Ok(Response::new(proto::ReportResponse { text }))
    }
}
