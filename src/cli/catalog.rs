//! Client verbs of the catalog and root administration.

use std::io::IsTerminal;
use std::path::PathBuf;

use serde_json::json;
use tonic::transport::Channel;

use super::output::{
    file_json, hex, histogram_snapshot, human_bytes, metrics_json, record, report_json, root_json,
    table, Output,
};
use workflowdb::proto;
use workflowdb::proto::admin_client::AdminClient;
use workflowdb::proto::catalog_client::CatalogClient;

/// Filters of `wfdb files`.
#[derive(clap::Args, Debug)]
pub struct FilesArgs {
    #[arg(long)]
    root: Option<String>,
    /// Only paths matching this glob (`*.rs`, `src/**/*.py`).
    #[arg(long)]
    glob: Option<String>,
    /// Only this file type (python, rust, markdown, ...).
    #[arg(long = "type")]
    file_type: Option<String>,
    /// Only this purpose (source, test, docs, config, build, generated, vendored, data, asset, other).
    #[arg(long)]
    purpose: Option<String>,
    /// Only paths under this folder.
    #[arg(long)]
    prefix: Option<String>,
    #[arg(long)]
    min_size: Option<u64>,
    #[arg(long)]
    max_size: Option<u64>,
    /// Only files changed after this clock.
    #[arg(long)]
    since: Option<u64>,
    /// At most this many files (0: all).
    #[arg(long, default_value_t = 0)]
    limit: u64,
    /// Answer at once, without proving earlier changes were applied or waiting for the
    /// dependency graph (dependencies are then marked pending while it builds).
    #[arg(long)]
    unsynced: bool,
}

/// The line `status` and `doctor` show while the database cannot be written.
pub fn store_failing_line(h: &proto::StoreHealth) -> String {
    let since = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(h.failing_since_ms).unwrap_or(0));
    format!(
        "NOT_SERVING: the database cannot be written since {}: {}. Synced queries and the workflow database answer UNAVAILABLE until it can; free space or fix the folder, the daemon recovers by itself",
        workflowdb::daemon::health::humantime_utc(since),
        h.cause
    )
}

pub async fn status(channel: Channel, root: Option<String>, out: &Output) -> anyhow::Result<()> {
    let resp = CatalogClient::new(channel)
        .stats(proto::StatsRequest {
            root: root.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if out.json {
        let roots: Vec<_> = resp
            .roots
            .iter()
            .map(|r| {
                let counts = |v: &[proto::CountEntry]| {
                    v.iter()
                        .map(|c| (c.key.clone(), json!(c.count)))
                        .collect::<serde_json::Map<_, _>>()
                };
                json!({
                    "root": r.root,
                    "root_id": r.root_id,
                    "files": r.files,
                    "bytes": r.bytes,
                    "unreadable": r.unreadable,
                    "by_type": counts(&r.by_type),
                    "by_purpose": counts(&r.by_purpose),
                    "last_scan": r.last_scan.as_ref().map(report_json),
                    "clock": r.clock,
                })
            })
            .collect();
        out.json_line(&json!({
            "version": resp.version,
            "instance_id": resp.instance_id,
            "database": resp.database,
            "uptime_ms": resp.uptime_ms,
            "watched_dirs": resp.watched_dirs,
            "polled_dirs": resp.polled_dirs,
            "schema_version": resp.schema_version,
            "store_health": resp.store_health.as_ref().map(|h| json!({
                "serving": h.serving,
                "cause": h.cause,
                "failing_since_ms": h.failing_since_ms,
            })),
            "roots": roots,
            "metrics": resp.metrics.as_ref().map(metrics_json),
            "damage": resp.damage.iter().map(damage_json).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    for line in damage_lines(&resp.damage) {
        out.text(&line);
    }
    out.text(&format!(
        "wfdb {} · database {} · instance {} · up {}s · {} folders watched, {} polled",
        resp.version,
        resp.database,
        resp.instance_id,
        resp.uptime_ms / 1000,
        resp.watched_dirs,
        resp.polled_dirs
    ));
    if let Some(h) = resp.store_health.as_ref().filter(|h| !h.serving) {
        out.text(&store_failing_line(h));
    }
    if let Some(m) = &resp.metrics {
        out.text(&daemon_metrics_line(m));
    }
    for r in &resp.roots {
        out.text(&format!(
            "\n{}  (id {}, clock {})\n  {} files, {}{}",
            r.root,
            r.root_id,
            r.clock,
            r.files,
            human_bytes(r.bytes),
            if r.unreadable > 0 {
                format!(", {} unreadable", r.unreadable)
            } else {
                String::new()
            }
        ));
        if let Some(s) = &r.last_scan {
            out.text(&format!(
                "  last scan ({}) at {}: {} ms, {} hashed, {} unchanged, +{} ~{} -{}",
                s.reason,
                s.started_at,
                s.duration_ms,
                s.files_hashed,
                s.files_skipped,
                s.files_added,
                s.files_modified,
                s.files_removed
            ));
        }
        let top = |v: &[proto::CountEntry]| {
            v.iter()
                .take(8)
                .map(|c| format!("{} {}", c.key, c.count))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(m) = resp
            .metrics
            .as_ref()
            .and_then(|m| m.roots.iter().find(|m| m.root_id == r.root_id))
        {
            out.text(&root_metrics_line(m));
        }
        out.text(&format!("  types: {}", top(&r.by_type)));
        out.text(&format!("  purposes: {}", top(&r.by_purpose)));
    }
    Ok(())
}

/// The daemon-wide figures of `wfdb status`: store, memory, watch limits, events, endpoint.
fn daemon_metrics_line(m: &proto::DaemonMetrics) -> String {
    let mut parts = vec![format!("store {} on disk", human_bytes(m.store_size_bytes))];
    if let Some(rss) = m.resident_memory_bytes {
        parts.push(format!("{} resident", human_bytes(rss)));
    }
    // Watched and polled folder counts are on the line above; their limits here.
    if let Some(limit) = m.inotify_max_user_watches {
        parts.push(format!("inotify limit {limit} watches"));
    }
    if let Some(cap) = m.watch_cap {
        parts.push(format!("--max-watches {cap}"));
    }
    parts.push(format!(
        "{} events received, {} overflows",
        m.events_received, m.overflows
    ));
    if !m.metrics_address.is_empty() {
        parts.push(format!("metrics at http://{}/metrics", m.metrics_address));
    }
    parts.join(" · ")
}

/// One root's event and hashing figures for `wfdb status`.
fn root_metrics_line(m: &proto::RootMetrics) -> String {
    let ms = |q: f64| {
        m.event_apply_lag_seconds
            .as_ref()
            .and_then(|h| histogram_snapshot(h).quantile(q))
            .map_or_else(|| "-".to_string(), |s| format!("{:.1} ms", s * 1000.0))
    };
    let reconciles: u64 = m.reconciles.iter().map(|c| c.count).sum();
    let mut line = format!(
        "  events: {} paths applied in {} batches, lag p50 {} p99 {} (estimated) · hashed {} files, {} · {} reconciles",
        m.events_applied,
        m.batches_applied,
        ms(0.5),
        ms(0.99),
        m.files_hashed,
        human_bytes(m.bytes_hashed),
        reconciles
    );
    if m.hash_backlog > 0 {
        line.push_str(&format!(" · {} files waiting to be hashed", m.hash_backlog));
    }
    line
}

pub async fn files(channel: Channel, args: FilesArgs, out: &Output) -> anyhow::Result<()> {
    let mut stream = CatalogClient::new(channel)
        .list_files(proto::ListFilesRequest {
            root: args.root.unwrap_or_default(),
            path_prefix: args.prefix.unwrap_or_default(),
            glob: args.glob.unwrap_or_default(),
            file_type: args.file_type.unwrap_or_default(),
            purpose: args.purpose.unwrap_or_default(),
            min_size: args.min_size,
            max_size: args.max_size,
            since_clock: args.since,
            limit: args.limit,
            unsynced: args.unsynced,
        })
        .await?
        .into_inner();
    let mut rows = Vec::new();
    let mut pending = false;
    while let Some(chunk) = stream.message().await? {
        for f in &chunk.files {
            pending |= f.dependencies_pending;
            if out.json {
                out.json_line(&file_json(f));
            } else {
                rows.push(vec![
                    f.path.clone(),
                    f.file_type.clone(),
                    f.purpose.clone(),
                    human_bytes(f.size_bytes),
                    if f.error.is_empty() {
                        f.checksum.clone()
                    } else {
                        format!("error: {}", f.error)
                    },
                ]);
            }
        }
    }
    if !out.json {
        out.text(&table(
            &["PATH", "TYPE", "PURPOSE", "SIZE", "CHECKSUM"],
            &rows,
        ));
        if pending {
            eprintln!("wfdb: {PENDING}");
        }
    }
    Ok(())
}

/// What an answer with `dependencies_pending` means.
const PENDING: &str = "dependencies pending: the dependency graph is still being built, so \
     dependency lists may be incomplete (ask again without --unsynced to wait for it)";

pub async fn file(
    channel: Channel,
    path: PathBuf,
    root: Option<String>,
    unsynced: bool,
    out: &Output,
) -> anyhow::Result<()> {
    // A name that is not UTF-8 goes as its exact bytes; any other as text (what every
    // server version reads).
    let (path, path_bytes) = match path.into_os_string().into_string() {
        Ok(text) => (text, Vec::new()),
        Err(raw) => {
            use std::os::unix::ffi::OsStringExt;
            (String::new(), raw.into_vec())
        }
    };
    let resp = CatalogClient::new(channel)
        .get_file(proto::GetFileRequest {
            root: root.unwrap_or_default(),
            path,
            path_bytes,
            unsynced,
        })
        .await?
        .into_inner();
    let Some(f) = resp.file else {
        anyhow::bail!("the daemon answered without a file record");
    };
    let v = file_json(&f);
    if out.json {
        out.json_line(&v);
    } else if let Some(map) = v.as_object() {
        let rows: Vec<(String, String)> = map
            .iter()
            .filter(|(k, _)| *k != "dependencies_pending")
            .map(|(k, v)| {
                let mut shown = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if f.dependencies_pending && (k == "dependencies" || k == "externals") {
                    shown = format!("{shown} ({PENDING})");
                }
                (k.clone(), shown)
            })
            .collect();
        out.text(&record(&rows));
    }
    Ok(())
}

pub async fn duplicates(
    channel: Channel,
    root: Option<String>,
    min_size: u64,
    limit: u64,
    out: &Output,
) -> anyhow::Result<()> {
    let resp = CatalogClient::new(channel)
        .find_duplicates(proto::FindDuplicatesRequest {
            root: root.unwrap_or_default(),
            min_size,
            limit,
        })
        .await?
        .into_inner();
    for g in &resp.groups {
        if out.json {
            out.json_line(
                &json!({"sha256": g.sha256, "size_bytes": g.size_bytes, "paths": g.paths}),
            );
        } else {
            out.text(&format!(
                "{} × {} ({})",
                g.paths.len(),
                human_bytes(g.size_bytes),
                &g.sha256[..16.min(g.sha256.len())]
            ));
            for p in &g.paths {
                out.text(&format!("  {p}"));
            }
        }
    }
    if !out.json && resp.groups.is_empty() {
        out.text("no duplicates");
    }
    Ok(())
}

pub async fn scan(channel: Channel, root: Option<String>, out: &Output) -> anyhow::Result<()> {
    let mut stream = CatalogClient::new(channel)
        .rescan(proto::RescanRequest {
            root: root.unwrap_or_default(),
        })
        .await?
        .into_inner();
    let bar = if !out.json && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    let mut report = None;
    while let Some(p) = stream.message().await? {
        if let Some(bar) = &bar {
            bar.set_message(format!(
                "{} files seen, {} hashed ({})",
                p.files_seen,
                p.files_hashed,
                human_bytes(p.bytes_hashed)
            ));
        }
        if p.done {
            report = p.report;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let Some(r) = report else {
        anyhow::bail!("the rescan ended without a report");
    };
    if out.json {
        out.json_line(&report_json(&r));
    } else {
        out.text(&format!(
            "scanned {} files in {} ms: {} hashed, {} unchanged, {} added, {} modified, {} removed, {} errors",
            r.files_seen, r.duration_ms, r.files_hashed, r.files_skipped, r.files_added, r.files_modified, r.files_removed, r.errors
        ));
    }
    Ok(())
}

pub async fn watch(channel: Channel, path: PathBuf, out: &Output) -> anyhow::Result<()> {
    let abs = std::path::absolute(&path)?;
    let resp = AdminClient::new(channel)
        .watch(proto::WatchRequest {
            path: abs.to_string_lossy().into_owned(),
        })
        .await?
        .into_inner();
    let root = resp.root.unwrap_or_default();
    if out.json {
        let mut v = root_json(&root);
        v["already_watched"] = json!(resp.already_watched);
        if let Some(r) = &resp.report {
            v["report"] = report_json(r);
        }
        out.json_line(&v);
    } else if resp.already_watched {
        out.text(&format!(
            "{} is already watched (id {})",
            root.root, root.root_id
        ));
    } else {
        out.text(&format!(
            "watching {} (id {}): {} files",
            root.root, root.root_id, root.files
        ));
    }
    Ok(())
}

pub async fn unwatch(
    channel: Channel,
    root: String,
    keep_records: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let resp = AdminClient::new(channel)
        .unwatch(proto::UnwatchRequest { root, keep_records })
        .await?
        .into_inner();
    let root = resp.root.unwrap_or_default();
    if out.json {
        out.json_line(&root_json(&root));
    } else {
        out.text(&format!("no longer watching {}", root.root));
    }
    Ok(())
}

pub async fn roots(channel: Channel, out: &Output) -> anyhow::Result<()> {
    let resp = AdminClient::new(channel)
        .list_roots(proto::ListRootsRequest {})
        .await?
        .into_inner();
    if out.json {
        for r in &resp.roots {
            out.json_line(&root_json(r));
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .roots
        .iter()
        .map(|r| {
            vec![
                r.root_id.clone(),
                r.state.clone(),
                r.files.to_string(),
                r.clock.to_string(),
                r.root.clone(),
            ]
        })
        .collect();
    out.text(&table(&["ID", "STATE", "FILES", "CLOCK", "ROOT"], &rows));
    Ok(())
}

pub async fn clock(channel: Channel, root: Option<String>, out: &Output) -> anyhow::Result<()> {
    let resp = CatalogClient::new(channel)
        .get_clock(proto::ClockRequest {
            root: root.unwrap_or_default(),
            unsynced: false,
        })
        .await?
        .into_inner();
    if out.json {
        out.json_line(
            &json!({"root": resp.root, "clock": resp.clock, "instance_id": resp.instance_id}),
        );
    } else {
        out.text(&resp.clock.to_string());
    }
    Ok(())
}

fn batch_lines(out: &Output, b: &proto::ChangeBatch) {
    if out.json {
        out.json_line(&json!({
            "root": b.root,
            "clock": b.clock,
            "instance_id": b.instance_id,
            "resync": b.resync,
            "fresh_instance": b.fresh_instance,
            "added": b.added.iter().map(file_json).collect::<Vec<_>>(),
            "modified": b.modified.iter().map(file_json).collect::<Vec<_>>(),
            "removed": b.removed,
            "renamed": b.renamed.iter().map(|r| json!({
                "from": r.from,
                "to": r.to.as_ref().map(file_json),
            })).collect::<Vec<_>>(),
        }));
        return;
    }
    if b.resync {
        out.text(&format!(
            "# resync at clock {} ({} changed, {} removed since the last clock)",
            b.clock,
            b.added.len(),
            b.removed.len()
        ));
    }
    for f in &b.added {
        out.text(&format!("{}\t+ {}", b.clock, f.path));
    }
    for f in &b.modified {
        out.text(&format!("{}\t~ {}", b.clock, f.path));
    }
    for r in &b.renamed {
        let to = r.to.as_ref().map_or("", |f| f.path.as_str());
        out.text(&format!("{}\t> {} -> {to}", b.clock, r.from));
    }
    for p in &b.removed {
        out.text(&format!("{}\t- {}", b.clock, p));
    }
}

pub async fn changes(
    channel: Channel,
    root: Option<String>,
    since: Option<u64>,
    instance_id: Option<String>,
    follow: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let mut client = CatalogClient::new(channel.clone());
    if follow {
        let mut stream = client
            .subscribe(proto::SubscribeRequest {
                root: root.unwrap_or_default(),
                since_clock: since,
                instance_id: instance_id.unwrap_or_default(),
                ..Default::default()
            })
            .await?
            .into_inner();
        // A large catch-up comes in pages: shown as one batch, at the clock of its last page.
        let mut catch_up: Option<proto::ChangeBatch> = None;
        while let Some(batch) = stream.message().await? {
            let batch = match catch_up.take() {
                Some(mut whole) => {
                    whole.added.extend(batch.added);
                    whole.modified.extend(batch.modified);
                    whole.removed.extend(batch.removed);
                    whole.renamed.extend(batch.renamed);
                    whole.clock = batch.clock;
                    whole.more = batch.more;
                    whole
                }
                None => batch,
            };
            if batch.more {
                catch_up = Some(batch);
            } else {
                batch_lines(out, &batch);
            }
        }
        return Ok(());
    }
    let mut resp = workflowdb::client::changes_whole(
        channel,
        proto::ChangesRequest {
            root: root.unwrap_or_default(),
            since_clock: since.unwrap_or(0),
            instance_id: instance_id.unwrap_or_default(),
            unsynced: false,
            with_folders: false,
            empty_on_fresh_instance: false,
        },
    )
    .await?;
    sort_changes(&mut resp);
    if out.json {
        let mut v = json!({
            "root": resp.root,
            "clock": resp.clock,
            "instance_id": resp.instance_id,
            "fresh_instance": resp.fresh_instance,
            "changed": resp.changed.iter().map(file_json).collect::<Vec<_>>(),
            "removed": resp.removed,
        });
        if !resp.removed_path_bytes.is_empty() {
            // Names that are not UTF-8 share one lossy text: their exact bytes tell them apart.
            v["removed_path_bytes_hex"] = json!(resp
                .removed_path_bytes
                .iter()
                .map(|b| hex(b))
                .collect::<Vec<_>>());
        }
        out.json_line(&v);
    } else {
        if resp.fresh_instance {
            out.text("# fresh instance: that clock cannot be answered exactly; every file follows");
        }
        for f in &resp.changed {
            out.text(&format!("~ {}", f.path));
        }
        for p in &resp.removed {
            out.text(&format!("- {p}"));
        }
        out.text(&format!("# clock {}", resp.clock));
    }
    Ok(())
}

/// A damage report as JSON (status, doctor).
pub fn damage_json(d: &proto::DamageReport) -> serde_json::Value {
    json!({
        "detected_ms": d.detected_ms,
        "findings": d.findings,
        "previous_instance_id": d.previous_instance_id,
        "instance_id": d.instance_id,
        "catalog_rebuilt": d.catalog_rebuilt,
        "registry": d.registry,
        "registry_entries_dropped": d.registry_entries_dropped,
    })
}

/// Damage reports as the lines `wfdb status` and `wfdb doctor` print.
pub fn damage_lines(reports: &[proto::DamageReport]) -> Vec<String> {
    let mut out = Vec::new();
    for d in reports {
        let when = workflowdb::catalog::record::rfc3339_ns(d.detected_ms.saturating_mul(1_000_000));
        out.push(format!(
            "DAMAGE found at start-up ({when}): the database had been damaged or rolled back"
        ));
        for f in &d.findings {
            out.push(format!("  - {f}"));
        }
        if !d.catalog_rebuilt.is_empty() {
            out.push(format!(
                "  catalog rebuilt from disk under a new instance id {} (was {}): clients' old clocks get a fresh instance: {}",
                d.instance_id,
                if d.previous_instance_id.is_empty() { "lost" } else { &d.previous_instance_id },
                d.catalog_rebuilt.join(", ")
            ));
        }
        out.push(format!("  workflow database: {}", d.registry));
        for e in &d.registry_entries_dropped {
            out.push(format!("  removed unreadable entry: {e}"));
        }
    }
    if !reports.is_empty() {
        out.push(
            "  once read (and lost work redone), clear this with `wfdb doctor --ack-damage`"
                .to_string(),
        );
    }
    out
}

/// Sorts a whole answer by path bytes, as the unary `Changes` answers (pages come in clock
/// order), keeping `removed_path_bytes` aligned with `removed`.
fn sort_changes(resp: &mut proto::ChangesResponse) {
    fn key(f: &proto::FileInfo) -> &[u8] {
        if f.path_bytes.is_empty() {
            f.path.as_bytes()
        } else {
            &f.path_bytes
        }
    }
    resp.changed.sort_by(|a, b| key(a).cmp(key(b)));
    if resp.removed_path_bytes.is_empty() {
        resp.removed.sort();
    } else {
        let mut pairs: Vec<(Vec<u8>, String)> = std::mem::take(&mut resp.removed_path_bytes)
            .into_iter()
            .zip(std::mem::take(&mut resp.removed))
            .collect();
        pairs.sort();
        (resp.removed_path_bytes, resp.removed) = pairs.into_iter().unzip();
    }
}
