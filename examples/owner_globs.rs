//! `GetFile` latency with many owned-path globs registered: registers AGENTS agents owning
//! GLOBS globs in all (spread evenly), then times N `GetFile` calls of PATH (the first call,
//! which compiles the owner matcher, is reported apart), then removes the agents again.
//!
//!     cargo run --release --example owner_globs -- SOCKET PATH [GLOBS] [AGENTS] [N]
//!
//! PATH is a root-relative file of the daemon's only root. Defaults: 10,000 globs, 100 agents,
//! 200 calls. Calls are unsynced, so they time the lookup and its annotations, not the
//! watcher's read-your-writes wait.
use std::time::{Duration, Instant};

use workflowdb::proto;
use workflowdb::proto::agents_client::AgentsClient;
use workflowdb::proto::catalog_client::CatalogClient;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(socket), Some(path)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: owner_globs SOCKET PATH [GLOBS] [AGENTS] [N]");
    };
    let globs: usize = args.get(2).map_or(Ok(10_000), |s| s.parse())?;
    let agents: usize = args.get(3).map_or(Ok(100), |s| s.parse())?;
    let n: usize = args.get(4).map_or(Ok(200), |s| s.parse())?;
    let ch = workflowdb::client::connect_unix(std::path::Path::new(socket)).await?;
    let mut reg = AgentsClient::new(ch.clone());
    let cat = CatalogClient::new(ch);

    let get = |cat: &mut CatalogClient<tonic::transport::Channel>| {
        let mut cat = cat.clone();
        let path = path.clone();
        async move {
            let t = Instant::now();
            let file = cat
                .get_file(proto::GetFileRequest {
                    path,
                    unsynced: true,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .file;
            anyhow::Ok((t.elapsed(), file.map_or(0, |f| f.related_agents.len())))
        }
    };
    let time_calls = |label: &'static str| {
        let mut cat = cat.clone();
        async move {
            let (first, owners) = get(&mut cat).await?;
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                times.push(get(&mut cat).await?.0);
            }
            times.sort();
            println!(
                "{label}: first {:.2} ms, then n={n} p50={:.2} ms p99={:.2} ms max={:.2} ms \
                 ({owners} owners of the path)",
                ms(first),
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99)),
                ms(*times.last().unwrap_or(&Duration::ZERO)),
            );
            anyhow::Ok(())
        }
    };

    time_calls("no agents").await?;
    let per_agent = globs.div_ceil(agents.max(1));
    let t = Instant::now();
    let mut made = 0;
    for a in 0..agents {
        let owned_paths: Vec<String> = (0..per_agent)
            .map(|g| made + g)
            .take_while(|i| *i < globs)
            .map(|i| format!("src/area{}/**/mod{i}_*.{{rs,py}}", i % 97))
            .collect();
        made += owned_paths.len();
        reg.register_agent(proto::RegisterAgentRequest {
            agent: Some(proto::Agent {
                name: format!("bench-owner-{a}"),
                agent_type: "bench".into(),
                owned_paths,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    }
    println!(
        "registered {agents} agents owning {made} globs in {:.0} ms",
        ms(t.elapsed())
    );
    time_calls("with the globs").await?;
    for a in 0..agents {
        reg.remove_agent(proto::RemoveAgentRequest {
            name: format!("bench-owner-{a}"),
            force: true,
        })
        .await?;
    }
    time_calls("after removing them").await?;
    Ok(())
}
