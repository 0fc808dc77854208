//! Hostile clients (issue 12): long globs, huge owned paths, echoed inputs, cancelled rescans
//! and request limits, each against a real daemon over real gRPC.

mod common;

use std::time::{Duration, Instant};

use common::{start, start_with, write_old, Daemon, Dirs, TIMEOUT};
use tonic::transport::Channel;
use tonic::Code;
use workflowdb::proto;
use workflowdb::proto::agents_client::AgentsClient;
use workflowdb::proto::catalog_client::CatalogClient;

/// A repository of `n` small files under `src/`.
fn repo(dirs: &Dirs, n: usize) -> std::path::PathBuf {
    let root = dirs.tmp.path().join("repo");
    for i in 0..n {
        write_old(
            &root.join(format!("src/d{}/f{i}.py", i % 20)),
            format!("X = {i}\n").as_bytes(),
        );
    }
    write_old(&root.join("README.md"), b"# repo\n");
    root
}

/// Panics the daemon logged (the panic hook and the catch-panic layer both say "panicked").
fn assert_no_panic(d: &Daemon) {
    let log = d.log_text();
    assert!(
        !log.contains("panicked"),
        "the daemon logged a panic:\n{}",
        &log[..log.len().min(4000)]
    );
}

fn agent(name: &str, owned_paths: Vec<String>) -> proto::RegisterAgentRequest {
    proto::RegisterAgentRequest {
        agent: Some(proto::Agent {
            name: name.into(),
            agent_type: "worker".into(),
            owned_paths,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Seen 1: a glob of 90,000 `*` or 330,000 letters panicked inside globset and logged the
/// whole pattern. Now it is INVALID_ARGUMENT naming the limit, with a short message.
#[tokio::test]
async fn long_globs_are_refused_by_their_limit_without_a_panic() {
    let dirs = Dirs::new();
    let root = repo(&dirs, 10);
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut c = d.catalog().await;
    for glob in ["*".repeat(90_000), "a".repeat(330_000), "*a".repeat(100)] {
        let e = c
            .list_files(proto::ListFilesRequest {
                glob: glob.clone(),
                ..Default::default()
            })
            .await
            .expect_err("a glob over the limits");
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(
            e.message().contains("ListFilesRequest.glob"),
            "{}",
            e.message()
        );
        assert!(e.message().contains("limit"), "{}", e.message());
        assert!(e.message().len() < 300, "{}", e.message());
        let e = c
            .subscribe(proto::SubscribeRequest {
                glob,
                ..Default::default()
            })
            .await
            .expect_err("a glob over the limits");
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(
            e.message().contains("SubscribeRequest.glob"),
            "{}",
            e.message()
        );
    }
    // A glob within the limits still works.
    let files = c
        .list_files(proto::ListFilesRequest {
            glob: "src/**/*.py".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap()
        .files;
    assert_eq!(files.len(), 10);
    assert_no_panic(&d);
    // The log never holds a client's pattern.
    assert!(!d.log_text().contains(&"*".repeat(100)));
}

/// Seen 2: the owner matcher was compiled from every agent on every GetFile. Now it is
/// compiled once per change of the owned paths and shared; a huge glob is refused outright.
#[tokio::test]
async fn owner_globs_are_compiled_once_per_change_and_do_not_slow_get_file() {
    let dirs = Dirs::new();
    let root = repo(&dirs, 40);
    let d = start_with(&dirs, &[root.as_os_str()], |cmd| {
        cmd.env("RUST_LOG", "info,workflowdb::rpc::agents=debug");
    })
    .await;
    let ch = d.channel().await;
    let mut agents = AgentsClient::new(ch.clone());
    let mut c = CatalogClient::new(ch);

    let e = agents
        .register_agent(agent("huge", vec!["a".repeat(100_000)]))
        .await
        .expect_err("a 100,000-character glob");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("glob"), "{}", e.message());

    // The most an agent may own: 1,000 globs, with wildcards, classes and alternations.
    let globs: Vec<String> = (0..1000)
        .map(|i| format!("src/d{}/*{{f,g}}{i}.p[xy]", i % 20))
        .collect();
    agents.register_agent(agent("owner", globs)).await.unwrap();
    agents
        .register_agent(agent("readme", vec!["README.md".into()]))
        .await
        .unwrap();

    let get = |c: &mut CatalogClient<Channel>, p: &'static str| {
        let mut c = c.clone();
        async move { common::get_file(&mut c, p).await.unwrap() }
    };
    let first = get(&mut c, "src/d3/f3.py").await;
    assert_eq!(first.related_agents, vec!["owner".to_string()]);
    let mut times = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let f = get(&mut c, "README.md").await;
        times.push(t.elapsed());
        assert_eq!(f.related_agents, vec!["readme".to_string()]);
    }
    times.sort();
    let median = times[times.len() / 2];
    assert!(median < Duration::from_millis(100), "median {median:?}");
    // A heartbeat changes the agents but not what they own: no new compile.
    agents
        .heartbeat(proto::HeartbeatRequest {
            name: "owner".into(),
            ttl_ms: Some(60_000),
        })
        .await
        .unwrap();
    get(&mut c, "README.md").await;
    let compiles = |d: &Daemon| d.log_text().matches("owner matcher compiled").count();
    assert_eq!(compiles(&d), 1, "{}", d.log_text());

    // Removing an agent compiles again, and its globs no longer match.
    agents
        .remove_agent(proto::RemoveAgentRequest {
            name: "owner".into(),
            force: true,
        })
        .await
        .unwrap();
    let after = get(&mut c, "src/d3/f3.py").await;
    assert!(after.related_agents.is_empty(), "{after:?}");
    assert_eq!(compiles(&d), 2);
    assert_no_panic(&d);
}

/// Seen 4: GetAgent with a 12,000-character name answered RESOURCE_EXHAUSTED because the
/// message quoted the name. Now it is NOT_FOUND with a short message.
#[tokio::test]
async fn a_long_unknown_name_is_not_found_with_a_short_message() {
    let dirs = Dirs::new();
    let root = repo(&dirs, 1);
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut agents = AgentsClient::new(d.channel().await);
    let e = agents
        .get_agent(proto::GetAgentRequest {
            name: "n".repeat(12_000),
        })
        .await
        .expect_err("no such agent");
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    assert!(e.message().len() < 200, "{} bytes", e.message().len());
    assert!(e.message().contains("12000 bytes"), "{}", e.message());
    // A path: the same.
    let mut c = d.catalog().await;
    let e = common::get_file(&mut c, &"p/".repeat(2000))
        .await
        .expect_err("no such file");
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
    assert_no_panic(&d);
}

/// Seen 5: a cancelled Rescan ran its reconcile to the end. Now the client going away stops
/// it (and rescans still waiting for the writer never start).
#[tokio::test]
async fn cancelled_rescans_stop_their_reconcile() {
    let dirs = Dirs::new();
    let root = repo(&dirs, 3000);
    let d = start(&dirs, &[root.as_os_str()]).await;
    let streams = 20;
    for _ in 0..streams {
        let mut c = d.catalog().await;
        let stream = c
            .rescan(proto::RescanRequest::default())
            .await
            .unwrap()
            .into_inner();
        // The client goes away at once.
        drop(stream);
        drop(c);
    }
    let deadline = Instant::now() + TIMEOUT;
    while d
        .log_text()
        .matches("rescan cancelled by its client")
        .count()
        < streams
    {
        assert!(Instant::now() < deadline, "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let any reconcile still winding down finish, then count the finished rescans.
    let mut c = d.catalog().await;
    let mut done = c
        .rescan(proto::RescanRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(p) = done.message().await.unwrap() {
        last = Some(p);
    }
    assert!(last.is_some_and(|p| p.done), "a rescan kept open finishes");
    let finished = d
        .log_text()
        .lines()
        .filter(|l| l.contains("reconciled") && l.contains("reason=rescan"))
        .count();
    // The last one finished; of the cancelled ones at most the one already hashing may have.
    assert!(finished <= 2, "{finished} rescans ran to the end");
    assert_no_panic(&d);
}

/// Limits name the field and the limit; counts are RESOURCE_EXHAUSTED, shapes
/// INVALID_ARGUMENT.
#[tokio::test]
async fn request_limits_name_the_field_and_the_limit() {
    let dirs = Dirs::new();
    let root = repo(&dirs, 1);
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut agents = AgentsClient::new(d.channel().await);
    let e = agents
        .register_agent(agent("many", vec!["src/*.py".into(); 1001]))
        .await
        .expect_err("too many owned paths");
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(
        e.message().contains("`owned_paths` limit"),
        "{}",
        e.message()
    );

    // Owned paths given in the original's agent_info dict are held to the same limits.
    let info = serde_json::json!({
        "type": "worker",
        "capabilities": [],
        "owned_paths": ["*".repeat(200)],
    });
    let e = agents
        .register_agent(proto::RegisterAgentRequest {
            agent: None,
            name: "dict".into(),
            agent_info: Some(workflowdb::rpc::structs::struct_from_map(
                info.as_object().unwrap(),
            )),
        })
        .await
        .expect_err("a glob with too many wildcards");
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(e.message().contains("glob_wildcards"), "{}", e.message());

    // A Struct nested 40 deep.
    let mut v = serde_json::json!("x");
    for _ in 0..40 {
        v = serde_json::json!([v]);
    }
    let meta = serde_json::json!({ "deep": v });
    let mut req = agent("deep", vec![]);
    if let Some(a) = req.agent.as_mut() {
        a.metadata = Some(workflowdb::rpc::structs::struct_from_map(
            meta.as_object().unwrap(),
        ));
    }
    let e = agents.register_agent(req).await.expect_err("too deep");
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(e.message().contains("struct_depth"), "{}", e.message());
    assert_no_panic(&d);
}
