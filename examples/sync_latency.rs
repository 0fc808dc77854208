//! Read-your-writes latency of a running `wfdb serve`: write a file, then ask for it with a
//! synced query; repeat N times and print p50/p99. Optionally the same against Watchman's
//! `query` (which syncs with its own cookie), and the time for a 10,000-file rewrite to become
//! consistent.
//!
//!     cargo run --release --example sync_latency -- ROOT SOCKET [N] [--watchman SOCKNAME]
//!
//! ROOT must be a root of the daemon at SOCKET (and watched by Watchman, when given).
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use workflowdb::proto;
use workflowdb::proto::catalog_client::CatalogClient;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{label}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
}

/// A minimal Watchman client over its Unix socket (JSON lines).
struct Watchman {
    reader: BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
}

impl Watchman {
    fn connect(sock: &Path) -> std::io::Result<Watchman> {
        let s = std::os::unix::net::UnixStream::connect(sock)?;
        Ok(Watchman {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }
    fn call(&mut self, cmd: serde_json::Value) -> serde_json::Value {
        // One write: Watchman sniffs the encoding from the first bytes it reads.
        let line = format!("{cmd}\n");
        self.writer
            .write_all(line.as_bytes())
            .expect("write to watchman");
        loop {
            let mut line = String::new();
            self.reader
                .read_line(&mut line)
                .expect("read from watchman");
            let v: serde_json::Value = serde_json::from_str(&line).expect("watchman json");
            // Skip unilateral messages (subscriptions, logs).
            if v.get("unilateral").is_none() && v.get("log").is_none() {
                return v;
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: sync_latency ROOT SOCKET [N] [--watchman SOCKNAME]");
        std::process::exit(2);
    }
    let root = std::fs::canonicalize(&args[1]).expect("root");
    let socket = PathBuf::from(&args[2]);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let watchman_sock = args
        .iter()
        .position(|a| a == "--watchman")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let dir = root.join("sync-latency-bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let channel = workflowdb::client::connect_unix(&socket)
        .await
        .expect("connect");
    let mut catalog = CatalogClient::new(channel);
    // Let the folder's creation settle before measuring.
    catalog
        .get_clock(proto::ClockRequest::default())
        .await
        .expect("clock");

    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("f{}.txt", i % 10);
        let content = format!("write {i} at {:?}", Instant::now());
        let want = hex(&Sha256::digest(content.as_bytes()));
        let t0 = Instant::now();
        std::fs::write(dir.join(&name), &content).expect("write");
        let got = catalog
            .get_file(proto::GetFileRequest {
                path: format!("sync-latency-bench/{name}"),
                ..Default::default()
            })
            .await
            .expect("get_file")
            .into_inner();
        times.push(t0.elapsed());
        assert_eq!(
            got.file.map(|f| f.sha256),
            Some(want),
            "stale answer at write {i}"
        );
    }
    report("wfdb write → synced GetFile", times);

    if let Some(sock) = watchman_sock {
        let mut wm = Watchman::connect(&sock).expect("connect to watchman");
        let root_s = root.to_string_lossy().into_owned();
        let clock = wm.call(serde_json::json!(["clock", root_s]))["clock"].clone();
        let mut clock = clock;
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("f{}.txt", i % 10);
            let content = format!("watchman write {i} at {:?}", Instant::now());
            let t0 = Instant::now();
            std::fs::write(dir.join(&name), &content).expect("write");
            let resp = wm.call(serde_json::json!(["query", root_s, {
                "since": clock,
                "fields": ["name", "size"],
                "expression": ["name", format!("sync-latency-bench/{name}"), "wholename"],
            }]));
            times.push(t0.elapsed());
            let files = resp["files"].as_array().cloned().unwrap_or_default();
            assert!(!files.is_empty(), "watchman missed write {i}: {resp}");
            clock = resp["clock"].clone();
        }
        report("watchman write → since query (cookie sync)", times);
    }

    // A checkout-like rewrite of 10,000 files: time until a synced query answers.
    let storm = root.join("storm-bench");
    std::fs::create_dir_all(&storm).expect("storm dir");
    for i in 0..10_000 {
        std::fs::write(storm.join(format!("f{i}.txt")), format!("v1 {i}")).expect("write");
    }
    let t0 = Instant::now();
    let c0 = catalog
        .get_clock(proto::ClockRequest::default())
        .await
        .expect("clock")
        .into_inner()
        .clock;
    println!(
        "10,000 new files consistent after {:.1} ms (from the last write)",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let t0 = Instant::now();
    for i in 0..10_000 {
        std::fs::write(storm.join(format!("f{i}.txt")), format!("v2 {i}")).expect("write");
    }
    let written = t0.elapsed();
    let c1 = catalog
        .get_clock(proto::ClockRequest::default())
        .await
        .expect("clock")
        .into_inner()
        .clock;
    println!(
        "10,000-file rewrite: writes took {:.1} ms, consistent {:.1} ms after the first write ({:.1} ms after the last), {} batches",
        written.as_secs_f64() * 1e3,
        t0.elapsed().as_secs_f64() * 1e3,
        (t0.elapsed() - written).as_secs_f64() * 1e3,
        c1 - c0
    );
    let _ = std::fs::remove_dir_all(&storm);
    let _ = std::fs::remove_dir_all(&dir);
}
