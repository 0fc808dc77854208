//! Human tables and JSON lines.

use std::io::Write;

use serde_json::{json, Value};

use workflowdb::proto;

/// Where and how results are printed.
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// Prints one JSON value on its own line.
    pub fn json_line(&self, v: &Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{v}");
    }

    /// Prints lines of text.
    pub fn text(&self, s: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{s}");
    }
}

fn kind_name(kind: i32) -> &'static str {
    match proto::FileKind::try_from(kind).unwrap_or(proto::FileKind::Unspecified) {
        proto::FileKind::Regular => "file",
        proto::FileKind::Symlink => "symlink",
        proto::FileKind::Fifo => "fifo",
        proto::FileKind::Socket => "socket",
        proto::FileKind::BlockDevice => "block_device",
        proto::FileKind::CharDevice => "char_device",
        proto::FileKind::Unspecified => "unknown",
    }
}

/// A file record as JSON, with the field names of the catalog.
pub fn file_json(f: &proto::FileInfo) -> Value {
    let mut v = json!({
        "path": f.path,
        "kind": kind_name(f.kind),
        "file_type": f.file_type,
        "purpose": f.purpose,
        "description": f.description,
        "component": f.component,
        "size_bytes": f.size_bytes,
        "mtime_ns": f.mtime_ns,
        "last_modified": f.last_modified,
        "sha256": f.sha256,
        "checksum": f.checksum,
        "dependencies": f.dependencies,
        "externals": f.externals,
        "related_agents": f.related_agents,
        "clock": f.clock,
    });
    if !f.path_bytes.is_empty() {
        v["path_bytes_hex"] = json!(hex(&f.path_bytes));
    }
    if !f.symlink_target.is_empty() {
        v["symlink_target"] = json!(f.symlink_target);
    }
    if !f.error.is_empty() {
        v["error"] = json!(f.error);
    }
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Scan figures as JSON.
pub fn report_json(r: &proto::ScanReport) -> Value {
    json!({
        "started_at": r.started_at,
        "duration_ms": r.duration_ms,
        "files_seen": r.files_seen,
        "files_hashed": r.files_hashed,
        "files_skipped": r.files_skipped,
        "files_added": r.files_added,
        "files_modified": r.files_modified,
        "files_removed": r.files_removed,
        "bytes_hashed": r.bytes_hashed,
        "errors": r.errors,
        "reason": r.reason,
    })
}

/// A histogram as the metrics module reads it (for quantile estimates).
pub fn histogram_snapshot(h: &proto::Histogram) -> workflowdb::metrics::HistogramSnapshot {
    workflowdb::metrics::HistogramSnapshot {
        bounds: h.bounds.clone(),
        cumulative: h.cumulative_counts.clone(),
        sum: h.sum,
        count: h.count,
    }
}

fn histogram_json(h: Option<&proto::Histogram>) -> Value {
    let Some(h) = h else { return Value::Null };
    let q = histogram_snapshot(h);
    json!({
        "bounds": h.bounds,
        "cumulative_counts": h.cumulative_counts,
        "sum": h.sum,
        "count": h.count,
        "p50": q.quantile(0.5),
        "p99": q.quantile(0.99),
    })
}

fn count_map(v: &[proto::CountEntry]) -> Value {
    Value::Object(
        v.iter()
            .map(|c| (c.key.clone(), json!(c.count)))
            .collect::<serde_json::Map<_, _>>(),
    )
}

/// The daemon's metrics as JSON: every figure, histograms with their buckets and estimated
/// p50/p99.
pub fn metrics_json(m: &proto::DaemonMetrics) -> Value {
    let roots: Vec<Value> = m
        .roots
        .iter()
        .map(|r| {
            json!({
                "root": r.root,
                "root_id": r.root_id,
                "files": r.files,
                "bytes": r.bytes,
                "clock": r.clock,
                "events_applied": r.events_applied,
                "batches_applied": r.batches_applied,
                "batch_paths": histogram_json(r.batch_paths.as_ref()),
                "event_apply_lag_seconds": histogram_json(r.event_apply_lag_seconds.as_ref()),
                "reconciles": count_map(&r.reconciles),
                "files_hashed": r.files_hashed,
                "bytes_hashed": r.bytes_hashed,
                "hash_backlog": r.hash_backlog,
                "last_scan_hashed_bytes_per_second": r.last_scan_hashed_bytes_per_second,
            })
        })
        .collect();
    let rpc: Vec<Value> = m
        .rpc
        .iter()
        .map(|x| {
            json!({
                "method": x.method,
                "codes": count_map(&x.codes),
                "latency_seconds": histogram_json(x.latency_seconds.as_ref()),
            })
        })
        .collect();
    json!({
        "uptime_seconds": m.uptime_seconds,
        "events_received": m.events_received,
        "overflows": m.overflows,
        "watched_dirs": m.watched_dirs,
        "polled_dirs": m.polled_dirs,
        "inotify_max_user_watches": m.inotify_max_user_watches,
        "watch_cap": m.watch_cap,
        "store_size_bytes": m.store_size_bytes,
        "resident_memory_bytes": m.resident_memory_bytes,
        "metrics_address": m.metrics_address,
        "roots": roots,
        "rpc": rpc,
    })
}

/// A root as JSON.
pub fn root_json(r: &proto::RootInfo) -> Value {
    json!({"root": r.root, "root_id": r.root_id, "files": r.files, "clock": r.clock, "state": r.state})
}

/// Bytes in a short human unit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Renders rows as left-aligned columns, the last column unpadded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        for (i, cell) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out.pop();
    out
}
