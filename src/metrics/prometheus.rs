//! Renders a [`Snapshot`] in the Prometheus text exposition format, version 0.0.4.

use std::fmt::Write;

use super::{HistogramSnapshot, RootSnapshot, Snapshot};

/// The Content-Type of the rendered text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A sample value: counts are written as integers (exact beyond 2^53), the rest as floats.
#[derive(Clone, Copy)]
enum Num {
    Int(u64),
    Float(f64),
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Num::Int(n) => write!(f, "{n}"),
            Num::Float(x) if x.is_nan() => f.write_str("NaN"),
            Num::Float(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Num::Float(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

impl From<u64> for Num {
    fn from(n: u64) -> Num {
        Num::Int(n)
    }
}

impl From<f64> for Num {
    fn from(x: f64) -> Num {
        Num::Float(x)
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Text being built, one metric family after another.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // HELP text escapes backslash and line feed (not quotes).
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Num>) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                self.0.push_str(k);
                self.0.push_str("=\"");
                escape_label(v, &mut self.0);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", value.into());
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        let bounds: Vec<String> = h
            .bounds
            .iter()
            .map(|b| Num::Float(*b).to_string())
            .collect();
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        for (le, count) in bounds.iter().zip(&h.cumulative) {
            with_le.push(("le", le));
            self.sample(&bucket, &with_le, *count);
            with_le.pop();
        }
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, h.count);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count);
    }
}

/// A family with one sample (or none when the value is unknown): name, type, help, value.
type Scalar<'a> = (&'a str, &'a str, &'a str, Option<Num>);

/// A per-root family: name, type, help, and the value of a root (none: no sample).
type PerRoot = (
    &'static str,
    &'static str,
    &'static str,
    fn(&RootSnapshot) -> Option<Num>,
);

/// The per-root families with one sample a root, in the order rendered.
const PER_ROOT: &[PerRoot] = &[
    ("wfdb_root_files", "gauge", "Catalogued entries of the root.", |r| {
        Some(r.files.into())
    }),
    (
        "wfdb_root_bytes",
        "gauge",
        "Sum of the sizes of the root's catalogued entries.",
        |r| Some(r.bytes.into()),
    ),
    (
        "wfdb_root_clock",
        "gauge",
        "The root's clock: it ticks with every applied change.",
        |r| Some(r.clock.into()),
    ),
    (
        "wfdb_hash_backlog_files",
        "gauge",
        "Entries a reconcile has planned to read and not yet examined.",
        |r| Some(r.hash_backlog.into()),
    ),
    (
        "wfdb_last_scan_hashed_bytes_per_second",
        "gauge",
        "Bytes hashed per second of the root's last completed reconcile that hashed anything (walk included).",
        |r| r.last_scan_bytes_per_second.map(Num::from),
    ),
    (
        "wfdb_events_applied_total",
        "counter",
        "Distinct paths applied by event batches.",
        |r| Some(r.activity.events_applied.into()),
    ),
    (
        "wfdb_batches_applied_total",
        "counter",
        "Event batches applied.",
        |r| Some(r.activity.batches.into()),
    ),
    (
        "wfdb_hashed_files_total",
        "counter",
        "Files hashed, by reconciles and event batches (counted when each completes).",
        |r| Some(r.activity.files_hashed.into()),
    ),
    (
        "wfdb_hashed_bytes_total",
        "counter",
        "Bytes hashed, by reconciles and event batches (counted when each completes).",
        |r| Some(r.activity.bytes_hashed.into()),
    ),
];

/// The snapshot as Prometheus text.
pub fn render(s: &Snapshot) -> String {
    let mut t = Text(String::with_capacity(8 * 1024));
    let daemon: [Scalar; 9] = [
        (
            "wfdb_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
            Some(s.uptime_seconds.into()),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the daemon process.",
            s.resident_memory_bytes.map(Num::from),
        ),
        (
            "wfdb_store_size_bytes",
            "gauge",
            "Bytes the database occupies on disk.",
            Some(s.store_size_bytes.into()),
        ),
        (
            "wfdb_watcher_events_received_total",
            "counter",
            "Events reported by the file watcher (each may name several paths; sync cookies included).",
            Some(s.events_received.into()),
        ),
        (
            "wfdb_watcher_overflows_total",
            "counter",
            "Kernel event queue overflows and watcher errors, each followed by a reconcile of every root.",
            Some(s.overflows.into()),
        ),
        (
            "wfdb_watched_folders",
            "gauge",
            "Folders with an inotify watch.",
            Some(s.watched_dirs.into()),
        ),
        (
            "wfdb_polled_folders",
            "gauge",
            "Folders polled because no inotify watch could be had.",
            Some(s.polled_dirs.into()),
        ),
        (
            "wfdb_inotify_max_user_watches",
            "gauge",
            "The kernel's fs.inotify.max_user_watches (shared by every program of the user).",
            s.inotify_max_user_watches.map(Num::from),
        ),
        (
            "wfdb_watch_cap",
            "gauge",
            "The configured --max-watches: folders beyond it are polled.",
            s.watch_cap.map(Num::from),
        ),
    ];
    // A figure that cannot be read is left out, family and all.
    for (name, kind, help, value) in daemon {
        if let Some(v) = value {
            t.family(name, kind, help);
            t.sample(name, &[], v);
        }
    }
    render_roots(&mut t, s);
    render_rpc(&mut t, s);
    t.0
}

fn render_roots(t: &mut Text, s: &Snapshot) {
    let labels: Vec<[(&str, &str); 2]> = s
        .roots
        .iter()
        .map(|r| [("root_id", r.id.as_str()), ("root", r.path.as_str())])
        .collect();
    let r = &s.roots;
    for (name, kind, help, value) in PER_ROOT {
        t.family(name, kind, help);
        for (root, l) in r.iter().zip(&labels) {
            if let Some(v) = value(root) {
                t.sample(name, l, v);
            }
        }
    }
    t.family(
        "wfdb_reconciles_total",
        "counter",
        "Reconciles begun (stat-compare walks; subscribers are told to resync), by reason.",
    );
    for (root, l) in r.iter().zip(&labels) {
        for (reason, n) in &root.activity.reconciles {
            t.sample(
                "wfdb_reconciles_total",
                &[l[0], l[1], ("reason", reason)],
                *n,
            );
        }
    }
    t.family(
        "wfdb_batch_paths",
        "histogram",
        "Distinct paths per applied event batch.",
    );
    for (root, l) in r.iter().zip(&labels) {
        t.histogram("wfdb_batch_paths", l, &root.activity.batch_paths);
    }
    t.family(
        "wfdb_event_apply_lag_seconds",
        "histogram",
        "From the first event of a batch arriving to the batch committed to the store.",
    );
    for (root, l) in r.iter().zip(&labels) {
        t.histogram("wfdb_event_apply_lag_seconds", l, &root.activity.apply_lag);
    }
}

fn render_rpc(t: &mut Text, s: &Snapshot) {
    t.family(
        "wfdb_grpc_requests_total",
        "counter",
        "Finished gRPC calls by method and status code (CANCELLED: the client went away).",
    );
    for m in &s.rpc {
        for (code, n) in &m.codes {
            t.sample(
                "wfdb_grpc_requests_total",
                &[("method", &m.method), ("code", code)],
                *n,
            );
        }
    }
    t.family(
        "wfdb_grpc_request_duration_seconds",
        "histogram",
        "Time from a gRPC request arriving to its response headers (for streaming calls: until the stream starts).",
    );
    for m in &s.rpc {
        t.histogram(
            "wfdb_grpc_request_duration_seconds",
            &[("method", &m.method)],
            &m.latency,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{RootActivity, RpcSnapshot};

    fn hist(bounds: &[f64], cumulative: &[u64], sum: f64) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: bounds.to_vec(),
            cumulative: cumulative.to_vec(),
            sum,
            count: *cumulative.last().unwrap(),
        }
    }

    fn small() -> Snapshot {
        Snapshot {
            uptime_seconds: 1.5,
            events_received: 7,
            overflows: 0,
            watched_dirs: 3,
            polled_dirs: 1,
            inotify_max_user_watches: Some(8192),
            watch_cap: None,
            store_size_bytes: 4096,
            resident_memory_bytes: None,
            roots: vec![RootSnapshot {
                id: "ab12".into(),
                path: "/r".into(),
                files: 2,
                bytes: 10,
                clock: 4,
                hash_backlog: 0,
                last_scan_bytes_per_second: Some(2.5),
                activity: RootActivity {
                    events_applied: 5,
                    batches: 2,
                    batch_paths: hist(&[1.0, 5.0], &[1, 2, 2], 5.0),
                    apply_lag: hist(&[0.01], &[1, 2], 0.025),
                    reconciles: vec![("startup", 1), ("poll", 0)],
                    files_hashed: 2,
                    bytes_hashed: 10,
                },
            }],
            rpc: vec![RpcSnapshot {
                method: "/p.S/M".into(),
                codes: vec![("OK", 3), ("NOT_FOUND", 1)],
                latency: hist(&[0.0001, 0.25], &[2, 4, 4], 0.0012),
            }],
        }
    }

    #[test]
    fn a_small_snapshot_renders_exactly() {
        let want = r#"# HELP wfdb_uptime_seconds Seconds since the daemon started.
# TYPE wfdb_uptime_seconds gauge
wfdb_uptime_seconds 1.5
# HELP wfdb_store_size_bytes Bytes the database occupies on disk.
# TYPE wfdb_store_size_bytes gauge
wfdb_store_size_bytes 4096
# HELP wfdb_watcher_events_received_total Events reported by the file watcher (each may name several paths; sync cookies included).
# TYPE wfdb_watcher_events_received_total counter
wfdb_watcher_events_received_total 7
# HELP wfdb_watcher_overflows_total Kernel event queue overflows and watcher errors, each followed by a reconcile of every root.
# TYPE wfdb_watcher_overflows_total counter
wfdb_watcher_overflows_total 0
# HELP wfdb_watched_folders Folders with an inotify watch.
# TYPE wfdb_watched_folders gauge
wfdb_watched_folders 3
# HELP wfdb_polled_folders Folders polled because no inotify watch could be had.
# TYPE wfdb_polled_folders gauge
wfdb_polled_folders 1
# HELP wfdb_inotify_max_user_watches The kernel's fs.inotify.max_user_watches (shared by every program of the user).
# TYPE wfdb_inotify_max_user_watches gauge
wfdb_inotify_max_user_watches 8192
# HELP wfdb_root_files Catalogued entries of the root.
# TYPE wfdb_root_files gauge
wfdb_root_files{root_id="ab12",root="/r"} 2
# HELP wfdb_root_bytes Sum of the sizes of the root's catalogued entries.
# TYPE wfdb_root_bytes gauge
wfdb_root_bytes{root_id="ab12",root="/r"} 10
# HELP wfdb_root_clock The root's clock: it ticks with every applied change.
# TYPE wfdb_root_clock gauge
wfdb_root_clock{root_id="ab12",root="/r"} 4
# HELP wfdb_hash_backlog_files Entries a reconcile has planned to read and not yet examined.
# TYPE wfdb_hash_backlog_files gauge
wfdb_hash_backlog_files{root_id="ab12",root="/r"} 0
# HELP wfdb_last_scan_hashed_bytes_per_second Bytes hashed per second of the root's last completed reconcile that hashed anything (walk included).
# TYPE wfdb_last_scan_hashed_bytes_per_second gauge
wfdb_last_scan_hashed_bytes_per_second{root_id="ab12",root="/r"} 2.5
# HELP wfdb_events_applied_total Distinct paths applied by event batches.
# TYPE wfdb_events_applied_total counter
wfdb_events_applied_total{root_id="ab12",root="/r"} 5
# HELP wfdb_batches_applied_total Event batches applied.
# TYPE wfdb_batches_applied_total counter
wfdb_batches_applied_total{root_id="ab12",root="/r"} 2
# HELP wfdb_hashed_files_total Files hashed, by reconciles and event batches (counted when each completes).
# TYPE wfdb_hashed_files_total counter
wfdb_hashed_files_total{root_id="ab12",root="/r"} 2
# HELP wfdb_hashed_bytes_total Bytes hashed, by reconciles and event batches (counted when each completes).
# TYPE wfdb_hashed_bytes_total counter
wfdb_hashed_bytes_total{root_id="ab12",root="/r"} 10
# HELP wfdb_reconciles_total Reconciles begun (stat-compare walks; subscribers are told to resync), by reason.
# TYPE wfdb_reconciles_total counter
wfdb_reconciles_total{root_id="ab12",root="/r",reason="startup"} 1
wfdb_reconciles_total{root_id="ab12",root="/r",reason="poll"} 0
# HELP wfdb_batch_paths Distinct paths per applied event batch.
# TYPE wfdb_batch_paths histogram
wfdb_batch_paths_bucket{root_id="ab12",root="/r",le="1"} 1
wfdb_batch_paths_bucket{root_id="ab12",root="/r",le="5"} 2
wfdb_batch_paths_bucket{root_id="ab12",root="/r",le="+Inf"} 2
wfdb_batch_paths_sum{root_id="ab12",root="/r"} 5
wfdb_batch_paths_count{root_id="ab12",root="/r"} 2
# HELP wfdb_event_apply_lag_seconds From the first event of a batch arriving to the batch committed to the store.
# TYPE wfdb_event_apply_lag_seconds histogram
wfdb_event_apply_lag_seconds_bucket{root_id="ab12",root="/r",le="0.01"} 1
wfdb_event_apply_lag_seconds_bucket{root_id="ab12",root="/r",le="+Inf"} 2
wfdb_event_apply_lag_seconds_sum{root_id="ab12",root="/r"} 0.025
wfdb_event_apply_lag_seconds_count{root_id="ab12",root="/r"} 2
# HELP wfdb_grpc_requests_total Finished gRPC calls by method and status code (CANCELLED: the client went away).
# TYPE wfdb_grpc_requests_total counter
wfdb_grpc_requests_total{method="/p.S/M",code="OK"} 3
wfdb_grpc_requests_total{method="/p.S/M",code="NOT_FOUND"} 1
# HELP wfdb_grpc_request_duration_seconds Time from a gRPC request arriving to its response headers (for streaming calls: until the stream starts).
# TYPE wfdb_grpc_request_duration_seconds histogram
wfdb_grpc_request_duration_seconds_bucket{method="/p.S/M",le="0.0001"} 2
wfdb_grpc_request_duration_seconds_bucket{method="/p.S/M",le="0.25"} 4
wfdb_grpc_request_duration_seconds_bucket{method="/p.S/M",le="+Inf"} 4
wfdb_grpc_request_duration_seconds_sum{method="/p.S/M"} 0.0012
wfdb_grpc_request_duration_seconds_count{method="/p.S/M"} 4
"#;
        assert_eq!(render(&small()), want);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = small();
        s.roots[0].path = "/a\\b\"c\nd".into();
        let text = render(&s);
        assert!(
            text.contains(r#"wfdb_root_files{root_id="ab12",root="/a\\b\"c\nd"} 2"#),
            "{text}"
        );
        // Every line stays one line: the line feed in the path is escaped.
        assert!(text
            .lines()
            .all(|l| l.starts_with('#') || l.starts_with("wfdb_")));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_is_the_count() {
        let h = crate::metrics::Histogram::new(&crate::metrics::RPC_BUCKETS);
        for us in [50, 120, 120, 3_000, 20_000_000] {
            h.observe(us);
        }
        let mut s = small();
        s.rpc[0].latency = h.snapshot();
        let text = render(&s);
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("wfdb_grpc_request_duration_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(buckets.len(), crate::metrics::RPC_BUCKETS.bounds.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        // Bounds 100 µs, 250 µs, ... 2.5 ms, 5 ms: 50 in the first, the 120s in the second,
        // 3 ms first counted at 5 ms, 20 s only in +Inf.
        assert_eq!(&buckets[..6], &[1, 3, 3, 3, 3, 4]);
        assert_eq!(*buckets.last().unwrap(), 5);
        assert!(text.contains(
            "wfdb_grpc_request_duration_seconds_bucket{method=\"/p.S/M\",le=\"10\"} 4\n"
        ));
        assert!(text.contains("wfdb_grpc_request_duration_seconds_count{method=\"/p.S/M\"} 5\n"));
        assert!(
            text.contains("wfdb_grpc_request_duration_seconds_sum{method=\"/p.S/M\"} 20.00329\n")
        );
    }

    #[test]
    fn help_text_escapes_backslash_and_newline() {
        let mut t = Text(String::new());
        t.family("x", "gauge", "a\\b\nc \"q\"");
        assert_eq!(t.0, "# HELP x a\\\\b\\nc \"q\"\n# TYPE x gauge\n");
    }
}
