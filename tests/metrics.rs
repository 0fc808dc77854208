//! The metrics endpoint of a real daemon, scraped over plain TCP and parsed strictly as
//! Prometheus text (format 0.0.4), checked against what the test did and against the Stats RPC.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workflowdb::proto;

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed.
struct Exposition {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

impl Exposition {
    /// The one sample named `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0].value
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => {
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')),
                "not a float: {s:?}"
            );
            s.parse().unwrap_or_else(|_| panic!("not a float: {s:?}"))
        }
    }
}

/// Parses `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str, line: &str) -> (BTreeMap<String, String>, String) {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    assert_eq!(chars.next(), Some('{'));
    loop {
        if chars.peek() == Some(&'}') {
            chars.next();
            break;
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|&c| c != '=')).collect();
        assert!(is_label_name(&name), "bad label name {name:?} in {line:?}");
        assert_eq!(chars.next(), Some('='), "{line:?}");
        assert_eq!(chars.next(), Some('"'), "{line:?}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some('"') => break,
                Some('\n') | None => panic!("unterminated label value in {line:?}"),
                Some(c) => value.push(c),
            }
        }
        assert!(
            labels.insert(name.clone(), value).is_none(),
            "label {name} repeated in {line:?}"
        );
        match chars.next() {
            Some(',') => {}
            Some('}') => break,
            other => panic!("expected , or }} but got {other:?} in {line:?}"),
        }
    }
    (labels, chars.collect())
}

/// The family a sample belongs to: its own name, or for `_bucket`/`_sum`/`_count` the
/// histogram it is part of.
fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    if types.contains_key(name) {
        return name.to_string();
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).map(String::as_str) == Some("histogram") {
                return base.to_string();
            }
        }
    }
    panic!("sample {name} has no TYPE line before it");
}

/// Parses the whole text strictly: every line a comment, blank, or a valid sample of a
/// family declared before it; families contiguous; histogram buckets in order, cumulative,
/// ending in `+Inf` equal to `_count`.
fn parse_exposition(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "the text must end with a line feed");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut enter = |family: &str, finished: &mut Vec<String>| {
        if current.as_deref() != Some(family) {
            assert!(
                !finished.iter().any(|f| f == family),
                "family {family} is not contiguous"
            );
            if let Some(c) = current.take() {
                finished.push(c);
            }
            current = Some(family.to_string());
        }
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match parts.next() {
                Some("HELP") => {
                    let name = parts.next().expect("HELP without a name");
                    assert!(is_metric_name(name), "bad name in {line:?}");
                    enter(name, &mut finished);
                    let help = parts.next().unwrap_or("");
                    assert!(
                        helps.insert(name.into(), help.into()).is_none(),
                        "second HELP for {name}"
                    );
                }
                Some("TYPE") => {
                    let name = parts.next().expect("TYPE without a name");
                    assert!(is_metric_name(name), "bad name in {line:?}");
                    let kind = parts.next().expect("TYPE without a type");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type in {line:?}"
                    );
                    assert!(
                        !samples
                            .iter()
                            .any(|s: &Sample| family_of(&s.name, &types) == name),
                        "TYPE of {name} after its samples"
                    );
                    enter(name, &mut finished);
                    assert!(
                        types.insert(name.into(), kind.into()).is_none(),
                        "second TYPE for {name}"
                    );
                    if kind == "counter" {
                        assert!(name.ends_with("_total"), "counter {name} without _total");
                    }
                }
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = &line[..name_end];
        assert!(is_metric_name(name), "bad metric name in {line:?}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..], line)
        } else {
            (BTreeMap::new(), line[name_end..].to_string())
        };
        let mut fields = rest.split(' ').filter(|f| !f.is_empty());
        let value = parse_value(
            fields
                .next()
                .unwrap_or_else(|| panic!("no value: {line:?}")),
        );
        if let Some(ts) = fields.next() {
            assert!(ts.parse::<i64>().is_ok(), "bad timestamp in {line:?}");
        }
        assert!(fields.next().is_none(), "trailing text in {line:?}");
        let family = family_of(name, &types);
        enter(&family, &mut finished);
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    check_histograms(&samples, &types);
    Exposition { samples, types }
}

/// A histogram's labels other than `le`.
type SeriesKey = Vec<(String, String)>;

fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut series: BTreeMap<SeriesKey, Vec<(f64, f64)>> = BTreeMap::new();
        let bucket = format!("{family}_bucket");
        for s in samples.iter().filter(|s| s.name == bucket) {
            let le = s.labels.get("le").expect("a bucket without le");
            let key: SeriesKey = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series
                .entry(key)
                .or_default()
                .push((parse_value(le), s.value));
        }
        for (labels, buckets) in &series {
            assert!(
                buckets.windows(2).all(|w| w[0].0 < w[1].0),
                "{family} {labels:?}: bounds not ascending"
            );
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family} {labels:?}: buckets not cumulative"
            );
            let (last_le, last) = *buckets.last().unwrap();
            assert_eq!(
                last_le,
                f64::INFINITY,
                "{family} {labels:?}: no +Inf bucket"
            );
            let of = |suffix: &str| {
                let name = format!("{family}{suffix}");
                let found: Vec<f64> = samples
                    .iter()
                    .filter(|s| {
                        s.name == name
                            && s.labels.len() == labels.len()
                            && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
                    })
                    .map(|s| s.value)
                    .collect();
                assert_eq!(found.len(), 1, "{name} {labels:?}");
                found[0]
            };
            assert_eq!(
                last,
                of("_count"),
                "{family} {labels:?}: +Inf is not _count"
            );
            assert!(of("_sum") >= 0.0);
        }
    }
}

/// GETs `path` over a plain TCP socket; returns the status line, headers (lowercased names)
/// and body.
async fn http_get(addr: SocketAddr, path: &str) -> (String, HashMap<String, String>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut raw))
        .await
        .expect("the endpoint did not close the connection")
        .unwrap();
    let raw = String::from_utf8(raw).expect("the response is UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("no end of head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("a header without a colon");
            (k.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, body.to_string())
}

async fn scrape(addr: SocketAddr) -> Exposition {
    let (status, headers, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    if let Some(len) = headers.get("content-length") {
        assert_eq!(len.parse::<usize>().unwrap(), body.len());
    }
    parse_exposition(&body)
}

fn rpc_count(m: &proto::DaemonMetrics, method: &str, code: &str) -> u64 {
    m.rpc
        .iter()
        .find(|r| r.method == method)
        .and_then(|r| r.codes.iter().find(|c| c.key == code))
        .map_or(0, |c| c.count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_prometheus_text_that_matches_what_happened() {
    let dirs = Dirs::new();
    // A root whose path needs escaping in a label value.
    let root = dirs.tmp.path().join("repo \"quoted\" back\\slash");
    write_old(&root.join("src/app.py"), b"import util\n");
    write_old(&root.join("src/util.py"), b"X = 1\n");
    let d = start(
        &dirs,
        &[
            root.as_os_str(),
            OsStr::new("--metrics"),
            OsStr::new("127.0.0.1:0"),
        ],
    )
    .await;
    let root_path = std::fs::canonicalize(&root).unwrap();
    let root_label = root_path.to_str().unwrap();
    let mut catalog = d.catalog().await;
    let addr: SocketAddr = stats(&d)
        .await
        .metrics
        .expect("Stats carries the metrics")
        .metrics_address
        .parse()
        .expect("the endpoint's address");
    assert!(addr.ip().is_loopback() && addr.port() != 0);

    // Changes in a watched folder, each file named by its own events, then waited for with
    // synced queries. (Files in a new folder may come as one event for the folder.)
    let written = 30u64;
    for i in 0..written {
        std::fs::write(root.join(format!("src/f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    for i in 0..written {
        let f = get_file(&mut catalog, &format!("src/f{i}.txt"))
            .await
            .unwrap();
        assert_eq!(f.size_bytes, format!("file {i}\n").len() as u64);
    }
    let missing = get_file(&mut catalog, "no/such/file").await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let listed = list_all(&d).await;
    assert_eq!(listed.len() as u64, 2 + written);

    let before = scrape(addr).await;
    let rpc = stats(&d).await;
    let after = scrape(addr).await;
    let m = rpc.metrics.expect("Stats carries the metrics");
    assert_eq!(m.metrics_address, addr.to_string());

    // The root's figures, found by its (escaped, then unescaped) path label.
    let root_id = &rpc.roots[0].root_id;
    let at_root = [("root", root_label), ("root_id", root_id.as_str())];
    assert_eq!(
        before.value("wfdb_root_files", &at_root),
        listed.len() as f64
    );
    assert_eq!(
        before.value("wfdb_root_bytes", &at_root),
        listed.values().map(|f| f.size_bytes).sum::<u64>() as f64
    );
    assert_eq!(
        before.value("wfdb_root_clock", &at_root),
        rpc.roots[0].clock as f64
    );
    let applied = before.value("wfdb_events_applied_total", &at_root);
    assert!(applied >= written as f64, "events applied {applied}");
    let batches = before.value("wfdb_batches_applied_total", &at_root);
    assert!(batches >= 1.0);
    assert_eq!(
        before.value("wfdb_event_apply_lag_seconds_count", &at_root),
        batches
    );
    assert_eq!(before.value("wfdb_batch_paths_count", &at_root), batches);
    assert_eq!(before.value("wfdb_batch_paths_sum", &at_root), applied);
    assert!(before.value("wfdb_watcher_events_received_total", &[]) >= written as f64);
    assert!(before.value("wfdb_hashed_files_total", &at_root) >= (2 + written) as f64);
    assert_eq!(
        before.value(
            "wfdb_reconciles_total",
            &[("root_id", root_id.as_str()), ("reason", "startup")]
        ),
        1.0
    );
    assert_eq!(before.value("wfdb_hash_backlog_files", &at_root), 0.0);
    // The root, src/ and the cookie folder are watched.
    assert!(before.value("wfdb_watched_folders", &[]) >= 3.0);
    assert!(before.value("wfdb_store_size_bytes", &[]) > 0.0);
    assert_eq!(before.types["wfdb_event_apply_lag_seconds"], "histogram");

    // Every call the test made was counted, by code.
    let get_file = "/workflowdb.v1.Catalog/GetFile";
    assert!(
        before.value(
            "wfdb_grpc_requests_total",
            &[("method", get_file), ("code", "OK")]
        ) >= written as f64
    );
    assert!(
        before.value(
            "wfdb_grpc_requests_total",
            &[("method", get_file), ("code", "NOT_FOUND")]
        ) >= 1.0
    );
    assert!(
        before.value(
            "wfdb_grpc_requests_total",
            &[
                ("method", "/workflowdb.v1.Catalog/ListFiles"),
                ("code", "OK")
            ]
        ) >= 1.0
    );
    assert!(
        before.value(
            "wfdb_grpc_request_duration_seconds_count",
            &[("method", get_file)]
        ) >= (written + 1) as f64
    );

    // The Stats RPC shows the same figures: each counter lies between the two scrapes
    // around it, and figures nothing changed are equal.
    let between = |name: &str, labels: &[(&str, &str)], got: u64| {
        let (lo, hi) = (before.value(name, labels), after.value(name, labels));
        assert!(
            lo <= got as f64 && got as f64 <= hi,
            "{name}: Stats says {got}, the scrapes {lo} and {hi}"
        );
    };
    let r = m
        .roots
        .iter()
        .find(|r| &r.root_id == root_id)
        .expect("the root in Stats' metrics");
    assert_eq!(r.root, root_label);
    between("wfdb_root_files", &at_root, r.files);
    between("wfdb_root_bytes", &at_root, r.bytes);
    between("wfdb_root_clock", &at_root, r.clock);
    between("wfdb_events_applied_total", &at_root, r.events_applied);
    between("wfdb_batches_applied_total", &at_root, r.batches_applied);
    between("wfdb_hashed_files_total", &at_root, r.files_hashed);
    between("wfdb_hashed_bytes_total", &at_root, r.bytes_hashed);
    let lag = r.event_apply_lag_seconds.as_ref().unwrap();
    between("wfdb_event_apply_lag_seconds_count", &at_root, lag.count);
    assert_eq!(*lag.cumulative_counts.last().unwrap(), lag.count);
    between("wfdb_watcher_events_received_total", &[], m.events_received);
    between("wfdb_watcher_overflows_total", &[], m.overflows);
    between(
        "wfdb_grpc_requests_total",
        &[("method", get_file), ("code", "OK")],
        rpc_count(&m, get_file, "OK"),
    );
    between(
        "wfdb_grpc_requests_total",
        &[("method", get_file), ("code", "NOT_FOUND")],
        rpc_count(&m, get_file, "NOT_FOUND"),
    );
    assert_eq!(r.files, rpc.roots[0].files);
    assert_eq!(
        before.value("wfdb_watched_folders", &[]),
        m.watched_dirs as f64
    );

    // Anything but /metrics is not found, and the endpoint goes on serving after it.
    let (status, _, _) = http_get(addr, "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    scrape(addr).await;

    // `wfdb status` shows the key lines; `--json` carries every figure.
    let (code, text, err) = cli(&d.socket, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains(&format!("metrics at http://{addr}/metrics")),
        "{text}"
    );
    assert!(text.contains("paths applied in"), "{text}");
    let (code, json, err) = cli(&d.socket, &["--json", "status"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["metrics"]["metrics_address"], addr.to_string());
    assert!(v["metrics"]["roots"][0]["events_applied"].as_u64().unwrap() >= written);
    assert!(v["metrics"]["roots"][0]["event_apply_lag_seconds"]["p99"].is_number());
    assert_eq!(d.stop().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_nothing_listens_but_stats_has_the_figures() {
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("repo");
    write_old(&root.join("a.txt"), b"a\n");
    let d = start(&dirs, &[root.as_os_str()]).await;
    let stats = stats(&d).await;
    let m = stats.metrics.expect("Stats carries the metrics");
    assert_eq!(m.metrics_address, "");
    assert_eq!(m.roots.len(), 1);
    assert_eq!(m.roots[0].files, 1);
    assert_eq!(m.roots[0].files, stats.roots[0].files);
    assert!(!d.log_text().contains("serving metrics"));
}
