//! The Sessions service: every save is a new, durable version carrying every root's catalog
//! clock; restore, history, listing, deletion, size limit and retention.

use tonic::{Request, Response, Status};

use super::registry::{domain_status, now_ms, RegistryContext};
use super::structs::{map_from_struct, struct_of_text, text_of};
use crate::proto;
use crate::registry::{SessionVersion, SessionVersionMeta, MAX_RESTORABLE_SESSION_BYTES};
use crate::store::registry::{RegistrySettings, RegistryStoreError};

/// Saves and restores session memory.
pub struct SessionsService {
    ctx: RegistryContext,
}

impl SessionsService {
    /// A service over the registry.
    pub fn new(ctx: RegistryContext) -> Self {
        SessionsService { ctx }
    }
}

/// The session a save of a session file asks for: validated like an imported one (unknown
/// keys refused, naming them), with the id of the typed part when the file has none. What
/// only a save assigns (version, time saved, root clocks) is left to the save.
fn session_of_file(
    id: Option<String>,
    info: &prost_types::Struct,
    now: i64,
) -> Result<SessionVersion, Status> {
    let mut map = map_from_struct(info);
    let id = id.filter(|i| !i.is_empty());
    match (map.get("session_id"), id) {
        (None | Some(serde_json::Value::Null), Some(id)) => {
            map.insert("session_id".into(), serde_json::Value::String(id));
        }
        (Some(serde_json::Value::String(file)), Some(id)) if *file != id => {
            return Err(Status::invalid_argument(format!(
                "the session file's session_id {} differs from {}",
                crate::quote::short(file),
                crate::quote::short(&id)
            )));
        }
        _ => {}
    }
    let timestamp = map
        .get("timestamp")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    let parsed = SessionVersion::from_original_json(&serde_json::Value::Object(map), now)
        .map_err(|e| domain_status(&e))?;
    let mut s = SessionVersion::new(parsed.session_id.clone(), timestamp, now);
    s.context_snapshot_json = parsed.context_snapshot_json;
    s.agent_states_json = parsed.agent_states_json;
    s.workflow_progress_json = parsed.workflow_progress_json;
    s.learned_patterns = parsed.learned_patterns;
    Ok(s)
}

/// A version's meta as served.
pub fn meta_proto(m: &SessionVersionMeta, versions: u64) -> proto::SessionMeta {
    proto::SessionMeta {
        session_id: m.session_id.clone(),
        version: m.version,
        timestamp: m.timestamp.clone(),
        saved_at_ms: m.saved_at_ms,
        size_bytes: m.encoded_size,
        versions,
    }
}

/// Root clocks as served.
fn clocks_proto(clocks: &[(String, u64)]) -> Vec<proto::RootClock> {
    clocks
        .iter()
        .map(|(root, clock)| proto::RootClock {
            root: root.clone(),
            clock: *clock,
        })
        .collect()
}

/// A session version as served.
pub fn session_proto(s: &SessionVersion) -> proto::Session {
    proto::Session {
        session_id: s.session_id.clone(),
        timestamp: s.timestamp.clone(),
        context_snapshot: Some(struct_of_text(&s.context_snapshot_json)),
        agent_states: Some(struct_of_text(&s.agent_states_json)),
        workflow_progress: Some(struct_of_text(&s.workflow_progress_json)),
        learned_patterns: s.learned_patterns.clone(),
        version: s.version,
        saved_at_ms: s.saved_at_ms,
        root_clocks: clocks_proto(&s.root_clocks),
    }
}

/// Settings as served.
fn settings_proto(s: &RegistrySettings) -> proto::SessionSettings {
    proto::SessionSettings {
        max_session_bytes: s.max_session_bytes,
        keep_last: s.retention.keep_last.map_or(0, |n| n as u64),
        max_age_ms: s.retention.max_age_ms.unwrap_or(0),
    }
}

fn unknown_session(id: &str, version: Option<u64>) -> RegistryStoreError {
    RegistryStoreError::NotFound(match version {
        Some(v) => {
            format!(
                "session {} has no version {v}; `wfdb session history` lists them",
                crate::quote::short(id)
            )
        }
        None => format!(
            "no session {}; `wfdb session list` shows the sessions",
            crate::quote::short(id)
        ),
    })
}

#[tonic::async_trait]
impl proto::sessions_server::Sessions for SessionsService {
    async fn save_session(
        &self,
        request: Request<proto::SaveSessionRequest>,
    ) -> Result<Response<proto::SaveSessionResponse>, Status> {
        let req = request.into_inner();
        let now = now_ms();
        let mut s = match (req.session, req.session_info) {
            (p, Some(info)) => session_of_file(p.map(|p| p.session_id), &info, now)?,
            (Some(p), None) => {
                let timestamp = (!p.timestamp.is_empty()).then(|| p.timestamp.clone());
                let mut s = SessionVersion::new(p.session_id.clone(), timestamp, now);
                s.context_snapshot_json = text_of(p.context_snapshot.as_ref());
                s.agent_states_json = text_of(p.agent_states.as_ref());
                s.workflow_progress_json = text_of(p.workflow_progress.as_ref());
                s.learned_patterns = p.learned_patterns;
                s
            }
            (None, None) => return Err(Status::invalid_argument("a session is needed")),
        };
        let mut clocks = Vec::new();
        for root in self.ctx.state.roots() {
            let meta = root
                .store
                .meta()
                .map_err(|e| super::status_of(crate::daemon::DaemonError::Store(e)))?;
            clocks.push((root.path.display().to_string(), meta.clock));
        }
        s.root_clocks = clocks;
        s.normalize();
        // The restore answer must fit what every client reads (4 MiB): Struct encoding can be
        // larger than the JSON text the configured limit counts.
        let restored = prost::Message::encoded_len(&proto::RestoreSessionResponse {
            session: Some(session_proto(&s)),
        }) as u64;
        if restored > MAX_RESTORABLE_SESSION_BYTES {
            return Err(Status::resource_exhausted(format!(
                "session {} would be restored as a {restored}-byte message, above the \
                 {MAX_RESTORABLE_SESSION_BYTES} bytes a session may take (stock gRPC clients \
                 read at most 4 MiB in one message): split it, or keep large blobs in files",
                crate::quote::short(&s.session_id)
            )));
        }
        let (meta, pruned, clocks) = self
            .ctx
            .blocking(move |reg| {
                let settings = reg.settings()?;
                s.check(settings.max_session_bytes.min(MAX_RESTORABLE_SESSION_BYTES))?;
                let clocks = s.root_clocks.clone();
                let (meta, pruned) = reg.save_session(s, &settings.retention, now)?;
                Ok((meta, pruned, clocks))
            })
            .await?;
        Ok(Response::new(proto::SaveSessionResponse {
            meta: Some(meta_proto(&meta, 0)),
            root_clocks: clocks_proto(&clocks),
            pruned,
        }))
    }

    async fn restore_session(
        &self,
        request: Request<proto::RestoreSessionRequest>,
    ) -> Result<Response<proto::RestoreSessionResponse>, Status> {
        let req = request.into_inner();
        let version = (req.version != 0).then_some(req.version);
        let s = self
            .ctx
            .blocking(move |reg| {
                reg.session(&req.session_id, version)?
                    .ok_or_else(|| unknown_session(&req.session_id, version))
            })
            .await?;
        Ok(Response::new(proto::RestoreSessionResponse {
            session: Some(session_proto(&s)),
        }))
    }

    async fn session_history(
        &self,
        request: Request<proto::SessionHistoryRequest>,
    ) -> Result<Response<proto::SessionHistoryResponse>, Status> {
        let id = request.into_inner().session_id;
        let history = self
            .ctx
            .blocking(move |reg| {
                let h = reg.session_history(&id)?;
                if h.is_empty() {
                    return Err(unknown_session(&id, None));
                }
                Ok(h)
            })
            .await?;
        let n = history.len() as u64;
        Ok(Response::new(proto::SessionHistoryResponse {
            versions: history.iter().map(|m| meta_proto(m, n)).collect(),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<proto::ListSessionsRequest>,
    ) -> Result<Response<proto::ListSessionsResponse>, Status> {
        let req = request.into_inner();
        let prefix = req.prefix.clone();
        let mut metas = self
            .ctx
            .blocking(move |reg| reg.latest_session_metas_with_prefix(&prefix))
            .await?;
        metas.retain(|(m, _)| {
            (req.saved_after_ms == 0 || m.saved_at_ms >= req.saved_after_ms)
                && (req.saved_before_ms == 0 || m.saved_at_ms < req.saved_before_ms)
        });
        metas.sort_by(|(a, _), (b, _)| {
            b.saved_at_ms
                .cmp(&a.saved_at_ms)
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        if req.limit > 0 {
            metas.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
        }
        Ok(Response::new(proto::ListSessionsResponse {
            sessions: metas.iter().map(|(m, n)| meta_proto(m, *n)).collect(),
        }))
    }

    async fn delete_session(
        &self,
        request: Request<proto::DeleteSessionRequest>,
    ) -> Result<Response<proto::DeleteSessionResponse>, Status> {
        let req = request.into_inner();
        let version = (req.version != 0).then_some(req.version);
        let deleted = self
            .ctx
            .blocking(move |reg| reg.delete_session(&req.session_id, version))
            .await?;
        Ok(Response::new(proto::DeleteSessionResponse { deleted }))
    }

    async fn get_session_settings(
        &self,
        _request: Request<proto::GetSessionSettingsRequest>,
    ) -> Result<Response<proto::SessionSettingsResponse>, Status> {
        let s = self.ctx.blocking(|reg| reg.settings()).await?;
        Ok(Response::new(proto::SessionSettingsResponse {
            settings: Some(settings_proto(&s)),
            pruned: 0,
        }))
    }

    async fn set_session_settings(
        &self,
        request: Request<proto::SetSessionSettingsRequest>,
    ) -> Result<Response<proto::SessionSettingsResponse>, Status> {
        let req = request.into_inner();
        if req.max_session_bytes == Some(0) {
            return Err(Status::invalid_argument(
                "max_session_bytes must be above 0",
            ));
        }
        if let Some(m) = req
            .max_session_bytes
            .filter(|m| *m > MAX_RESTORABLE_SESSION_BYTES)
        {
            return Err(Status::invalid_argument(format!(
                "max_session_bytes {m} is above {MAX_RESTORABLE_SESSION_BYTES}: a session is \
                 restored in one message, and stock gRPC clients read at most 4 MiB in one"
            )));
        }
        let now = now_ms();
        let (s, pruned) = self
            .ctx
            .blocking(move |reg| {
                let mut s = reg.settings()?;
                if let Some(m) = req.max_session_bytes {
                    s.max_session_bytes = m;
                }
                if let Some(k) = req.keep_last {
                    s.retention.keep_last =
                        (k > 0).then(|| usize::try_from(k).unwrap_or(usize::MAX));
                }
                if let Some(a) = req.max_age_ms {
                    s.retention.max_age_ms = (a > 0).then_some(a);
                }
                reg.set_settings(&s)?;
                let pruned = reg.prune_all_sessions(&s.retention, now)?;
                Ok((s, pruned))
            })
            .await?;
        Ok(Response::new(proto::SessionSettingsResponse {
            settings: Some(settings_proto(&s)),
            pruned,
        }))
    }
}
