//! A mixed load on a running `wfdb serve`: one writer rewriting files under ROOT at a steady
//! rate while CLIENTS concurrent clients ask synced questions (a file, the status, a page of
//! the listing, what changed since their last clock), for SECONDS. Prints what was done and
//! the query latencies; the footprint benchmark reads the daemon's memory before and after.
//!
//!     cargo run --release --example mixed_load -- ROOT SOCKET [SECONDS] [CLIENTS] [WRITES_PER_S]
//!
//! Defaults: 30 s, 64 clients, 1,000 writes/s. ROOT must be a root of the daemon at SOCKET;
//! the files are written in ROOT/mixed-load-bench (left there: the daemon must see them go).
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use workflowdb::proto;
use workflowdb::proto::catalog_client::CatalogClient;

/// Distinct files the writer cycles through.
const FILES: u64 = 2_000;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: mixed_load ROOT SOCKET [SECONDS] [CLIENTS] [WRITES_PER_S]");
        std::process::exit(2);
    }
    let root = std::fs::canonicalize(&args[1]).expect("root");
    let socket = PathBuf::from(&args[2]);
    let arg = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let seconds = arg(3, 30);
    let clients = arg(4, 64);
    let rate = arg(5, 1_000).max(1);
    let dir = root.join("mixed-load-bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let end = Instant::now() + Duration::from_secs(seconds);

    // The writer: one file every 1/rate s, in ticks of 10 ms.
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (dir, writes) = (dir.clone(), Arc::clone(&writes));
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            while Instant::now() < end {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while writes.load(Ordering::Relaxed) < due {
                    let n = writes.fetch_add(1, Ordering::Relaxed);
                    let body = format!("write {n}\n").repeat(1 + (n % 64) as usize);
                    std::fs::write(dir.join(format!("f{}.txt", n % FILES)), body).expect("write");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let queries = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (socket, queries) = (socket.clone(), Arc::clone(&queries));
        tasks.push(tokio::spawn(async move {
            let channel = workflowdb::client::connect_unix(&socket)
                .await
                .expect("connect");
            let mut catalog = CatalogClient::new(channel);
            let mut times = Vec::new();
            // Changes since now, not since 0 (which would list every file).
            let mut clock = catalog
                .get_clock(proto::ClockRequest::default())
                .await
                .expect("clock")
                .into_inner()
                .clock;
            let mut i = c;
            while Instant::now() < end {
                let t0 = Instant::now();
                match i % 4 {
                    0 => {
                        let _ = catalog
                            .get_file(proto::GetFileRequest {
                                path: format!("mixed-load-bench/f{}.txt", i % FILES),
                                ..Default::default()
                            })
                            .await;
                    }
                    1 => {
                        catalog
                            .stats(proto::StatsRequest::default())
                            .await
                            .expect("stats");
                    }
                    2 => {
                        let mut s = catalog
                            .list_files(proto::ListFilesRequest {
                                path_prefix: "mixed-load-bench".into(),
                                limit: 100,
                                ..Default::default()
                            })
                            .await
                            .expect("list")
                            .into_inner();
                        while s.message().await.expect("page").is_some() {}
                    }
                    _ => {
                        let r = catalog
                            .changes(proto::ChangesRequest {
                                since_clock: clock,
                                ..Default::default()
                            })
                            .await
                            .expect("changes")
                            .into_inner();
                        clock = r.clock;
                    }
                }
                times.push(t0.elapsed());
                queries.fetch_add(1, Ordering::Relaxed);
                i += clients;
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.expect("client"));
    }
    writer.await.expect("writer");
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "mixed load: {seconds} s, {clients} clients, {} writes ({:.0}/s), {} synced queries; latency p50 {:.2} ms, p99 {:.2} ms",
        writes.load(Ordering::Relaxed),
        writes.load(Ordering::Relaxed) as f64 / seconds as f64,
        queries.load(Ordering::Relaxed),
        p(0.5),
        p(0.99)
    );
}
