//! Daemon memory with many catch-up subscribers that never read: opens N `Subscribe` streams
//! with `since_clock: 0` (a catch-up of every file), reads nothing, and prints the daemon's
//! resident memory before, while they are open, and after they are cancelled.
//!
//!     cargo run --release --example unread_subscribers -- SOCKET DAEMON_PID [N] [PER_CONNECTION]
//!
//! Streams are spread over connections of PER_CONNECTION streams each (default 100).
use std::path::PathBuf;
use std::time::Duration;

use workflowdb::proto;
use workflowdb::proto::catalog_client::CatalogClient;

/// Resident and peak memory of a process, in MiB, from /proc.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: unread_subscribers SOCKET DAEMON_PID [N] [PER_CONNECTION]");
        std::process::exit(2);
    }
    let socket = PathBuf::from(&args[1]);
    let pid: u32 = args[2].parse()?;
    let n: usize = args.get(3).map_or(Ok(1000), |a| a.parse())?;
    let per: usize = args.get(4).map_or(Ok(100), |a| a.parse())?;
    let (rss, _) = memory_mib(pid);
    println!("before: rss {rss:.0} MiB");
    let mut streams = Vec::with_capacity(n);
    let mut client = None;
    for i in 0..n {
        if i % per == 0 {
            client = Some(CatalogClient::new(
                workflowdb::client::connect_unix(&socket).await?,
            ));
        }
        let Some(c) = client.as_mut() else {
            unreachable!("a client is made at i = 0")
        };
        let stream = c
            .subscribe(proto::SubscribeRequest {
                since_clock: Some(0),
                ..Default::default()
            })
            .await?
            .into_inner();
        streams.push(stream);
    }
    // Let every catch-up run until it waits for its reader.
    let mut peak = 0.0f64;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(memory_mib(pid).0);
    }
    let (rss, hwm) = memory_mib(pid);
    println!(
        "{n} unread subscribers: rss {rss:.0} MiB (highest seen {peak:.0} MiB, daemon peak {hwm:.0} MiB)"
    );
    drop(streams);
    drop(client);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, _) = memory_mib(pid);
    println!("after cancelling them: rss {rss:.0} MiB");
    Ok(())
}
