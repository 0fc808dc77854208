//! Conversions between domain records and protobuf messages.

use crate::catalog::record::rfc3339_ns;
use crate::catalog::{FileKind, FileRecord, ScanReport};
use crate::metrics::{HistogramSnapshot, Snapshot};
use crate::paths::RelPath;
use crate::proto;

/// A catalog record as served.
pub fn file_info(r: &FileRecord) -> proto::FileInfo {
    let kind = match r.kind {
        FileKind::Regular => proto::FileKind::Regular,
        FileKind::Symlink => proto::FileKind::Symlink,
        FileKind::Fifo => proto::FileKind::Fifo,
        FileKind::Socket => proto::FileKind::Socket,
        FileKind::BlockDevice => proto::FileKind::BlockDevice,
        FileKind::CharDevice => proto::FileKind::CharDevice,
    };
    proto::FileInfo {
        path: r.path.to_lossy(),
        path_bytes: if r.path.as_str().is_some() {
            Vec::new()
        } else {
            r.path.as_bytes().to_vec()
        },
        kind: kind as i32,
        file_type: r.file_type.clone(),
        purpose: r.purpose.as_str().to_string(),
        description: r.description.clone(),
        component: r.component.clone(),
        size_bytes: r.fingerprint.size,
        mtime_ns: r.fingerprint.mtime_ns,
        last_modified: rfc3339_ns(r.fingerprint.mtime_ns),
        sha256: r.sha256_hex(),
        checksum: r.checksum(),
        dependencies: r.dependencies.clone(),
        externals: r.externals.clone(),
        related_agents: Vec::new(),
        symlink_target: r
            .symlink_target
            .as_ref()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default(),
        error: r.error.clone().unwrap_or_default(),
        clock: r.clock,
        // Set by the callers that fill the dependency lists from the live graph.
        dependencies_pending: false,
    }
}

/// Scan figures as served.
pub fn scan_report(r: &ScanReport) -> proto::ScanReport {
    proto::ScanReport {
        started_at: rfc3339_ns(r.started_ns),
        duration_ms: r.duration_ms,
        files_seen: r.files_seen,
        files_hashed: r.files_hashed,
        files_skipped: r.files_skipped,
        files_added: r.files_added,
        files_modified: r.files_modified,
        files_removed: r.files_removed,
        bytes_hashed: r.bytes_hashed,
        errors: r.errors,
        reason: r.reason.clone(),
    }
}

/// The path a request names: `path_bytes` when set (names that are not UTF-8), else `path`.
pub fn request_path(path: &str, path_bytes: &[u8]) -> Result<RelPath, tonic::Status> {
    let raw = if path_bytes.is_empty() {
        path.as_bytes()
    } else {
        path_bytes
    };
    RelPath::parse(raw).map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

/// A histogram as served.
pub fn histogram(h: &HistogramSnapshot) -> proto::Histogram {
    proto::Histogram {
        bounds: h.bounds.clone(),
        cumulative_counts: h.cumulative.clone(),
        sum: h.sum,
        count: h.count,
    }
}

fn counts(pairs: &[(&str, u64)]) -> Vec<proto::CountEntry> {
    pairs
        .iter()
        .map(|(key, count)| proto::CountEntry {
            key: key.to_string(),
            count: *count,
        })
        .collect()
}

/// The metrics snapshot as served; `address` is where the metrics endpoint listens.
pub fn daemon_metrics(s: &Snapshot, address: Option<std::net::SocketAddr>) -> proto::DaemonMetrics {
    proto::DaemonMetrics {
        uptime_seconds: s.uptime_seconds,
        events_received: s.events_received,
        overflows: s.overflows,
        watched_dirs: s.watched_dirs,
        polled_dirs: s.polled_dirs,
        inotify_max_user_watches: s.inotify_max_user_watches,
        watch_cap: s.watch_cap,
        store_size_bytes: s.store_size_bytes,
        resident_memory_bytes: s.resident_memory_bytes,
        roots: s
            .roots
            .iter()
            .map(|r| proto::RootMetrics {
                root: r.path.clone(),
                root_id: r.id.clone(),
                files: r.files,
                bytes: r.bytes,
                clock: r.clock,
                events_applied: r.activity.events_applied,
                batches_applied: r.activity.batches,
                batch_paths: Some(histogram(&r.activity.batch_paths)),
                event_apply_lag_seconds: Some(histogram(&r.activity.apply_lag)),
                reconciles: counts(&r.activity.reconciles),
                files_hashed: r.activity.files_hashed,
                bytes_hashed: r.activity.bytes_hashed,
                hash_backlog: r.hash_backlog,
                last_scan_hashed_bytes_per_second: r.last_scan_bytes_per_second,
            })
            .collect(),
        rpc: s
            .rpc
            .iter()
            .map(|m| proto::RpcMethodMetrics {
                method: m.method.clone(),
                codes: counts(&m.codes),
                latency_seconds: Some(histogram(&m.latency)),
            })
            .collect(),
        metrics_address: address.map(|a| a.to_string()).unwrap_or_default(),
    }
}
