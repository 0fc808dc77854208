//! Damage and rollback of a stopped daemon's database: every answer after a restart is true or
//! a fresh instance, the catalog equals the disk, registry data survives or is reported lost,
//! and the way out (doctor, offline export) works.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use workflowdb::proto;

/// A database at a known state: the golden copy, what it holds, and the tree it catalogues.
struct Golden {
    tmp: tempfile::TempDir,
    root: PathBuf,
    /// A copy of the stopped daemon's database folder.
    db: PathBuf,
    /// A copy taken earlier (fewer edits, no registry writes yet): a whole-database rollback.
    early_db: PathBuf,
    instance_id: String,
    root_id: String,
    /// The root's clock when the daemon stopped.
    clock: u64,
    /// Which file each clock's edit changed.
    edits: BTreeMap<u64, String>,
    registry: Registry,
}

/// The registry data that must survive or be reported lost.
#[derive(Debug, PartialEq, Eq)]
struct Registry {
    agents: BTreeSet<String>,
    workflows: BTreeSet<String>,
    sessions: BTreeSet<String>,
}

fn registry_of(doc: &Value) -> Registry {
    let names = |key: &str, field: &str| -> BTreeSet<String> {
        match &doc[key] {
            Value::Array(a) => a
                .iter()
                .map(|v| {
                    format!(
                        "{}@{}",
                        v[field].as_str().unwrap_or_default(),
                        v["version"].as_u64().unwrap_or(0)
                    )
                })
                .collect(),
            Value::Object(o) => o.keys().cloned().collect(),
            _ => BTreeSet::new(),
        }
    };
    Registry {
        agents: names("agents", "name"),
        workflows: names("workflows", "id"),
        sessions: names("sessions", "session_id"),
    }
}

fn export(socket: &Path) -> Value {
    let (code, out, err) = cli(socket, &["export", "-"]);
    assert_eq!(code, 0, "export failed: {err}");
    serde_json::from_str(&out).unwrap()
}

async fn clock_of(d: &Daemon) -> u64 {
    d.catalog()
        .await
        .get_clock(proto::ClockRequest::default())
        .await
        .unwrap()
        .into_inner()
        .clock
}

/// Edits `name` and waits until the synced clock moved past `before`.
async fn edit(d: &Daemon, root: &Path, name: &str, before: u64) -> u64 {
    std::fs::write(root.join(name), format!("edited after clock {before}\n")).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = clock_of(d).await;
        if now > before {
            return now;
        }
        assert!(Instant::now() < deadline, "the edit of {name} never ticked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    workflowdb::store::Store::copy_folder(from, to).unwrap();
}

async fn golden() -> Golden {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    for i in 0..30 {
        write_old(
            &root.join(format!("src/f{i:02}.txt")),
            format!("file {i}\n").as_bytes(),
        );
    }
    let dirs = Dirs::new();
    let d = start(&dirs, &[root.as_os_str()]).await;
    let mut edits = BTreeMap::new();
    let mut clock = clock_of(&d).await;
    for i in 0..3 {
        let name = format!("src/f{i:02}.txt");
        clock = edit(&d, &root, &name, clock).await;
        edits.insert(clock, name);
    }
    assert!(d.stop().success());
    let early_db = tmp.path().join("early-db");
    copy_dir(&dirs.db, &early_db);
    let d = start(&dirs, &[root.as_os_str()]).await;
    for i in 3..9 {
        let name = format!("src/f{i:02}.txt");
        clock = edit(&d, &root, &name, clock).await;
        edits.insert(clock, name);
    }
    // Registry data, each write acknowledged.
    for agent in ["alpha", "beta"] {
        let (code, _, err) = cli(
            &d.socket,
            &[
                "agent",
                "register",
                agent,
                "--capability",
                "code_generation",
            ],
        );
        assert_eq!(code, 0, "{err}");
    }
    let session = tmp.path().join("session.json");
    std::fs::write(&session, r#"{"context_snapshot": {"task": "damage"}}"#).unwrap();
    let (code, _, err) = cli(
        &d.socket,
        &["session", "save", "s1", "--file", session.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let registry = registry_of(&export(&d.socket));
    assert_eq!(registry.agents.len(), 2, "{registry:?}");
    assert_eq!(registry.sessions.len(), 1, "{registry:?}");
    assert!(!registry.workflows.is_empty(), "{registry:?}");
    let s = stats(&d).await;
    let instance_id = s.instance_id.clone();
    let root_id = s.roots[0].root_id.clone();
    assert_eq!(clock_of(&d).await, clock);
    assert!(d.stop().success());
    let db = tmp.path().join("golden-db");
    copy_dir(&dirs.db, &db);
    Golden {
        tmp,
        root,
        db,
        early_db,
        instance_id,
        root_id,
        clock,
        edits,
        registry,
    }
}

/// How a daemon start went.
enum Started {
    Serving(Daemon),
    /// It refused to start: exit status and log.
    Refused(i32, String),
}

/// Starts a daemon on `dirs` that may refuse to start.
async fn try_start(dirs: &Dirs, root: &Path) -> Started {
    let log = dirs.tmp.path().join("try.log");
    let mut cmd = Command::new(wfdb_bin());
    cmd.arg("serve").arg(root);
    let mut child = serve_in(&mut cmd, dirs, &log).spawn().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Started::Refused(
                status.code().unwrap_or(-1),
                std::fs::read_to_string(&log).unwrap_or_default(),
            );
        }
        if dirs.socket.exists() {
            if let Ok(ch) = workflowdb::client::connect_unix(&dirs.socket).await {
                let mut catalog = proto::catalog_client::CatalogClient::new(ch);
                if catalog
                    .get_clock(proto::ClockRequest::default())
                    .await
                    .is_ok()
                {
                    return Started::Serving(Daemon {
                        child,
                        socket: dirs.socket.clone(),
                        db: dirs.db.clone(),
                        log,
                    });
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "daemon neither served nor exited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn integrity_health(d: &Daemon) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(d.channel().await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "workflowdb.v1.Integrity".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

/// Damages a stopped daemon's database folder.
type Damage = Box<dyn Fn(&Path, &Golden)>;

/// One way of damaging a stopped daemon's database folder.
struct Mode {
    name: &'static str,
    damage: Damage,
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// Offsets of the 512-byte blocks of `bytes` holding data: sled's segments are mostly
/// zeros, and damage there touches nothing.
fn used_blocks(bytes: &[u8]) -> Vec<usize> {
    bytes
        .chunks(512)
        .enumerate()
        .filter(|(_, c)| c.iter().any(|&b| b != 0))
        .map(|(i, _)| i * 512)
        .collect()
}

/// The offset at `fraction` of the data in `bytes`: in the block at that fraction of the used
/// blocks, its first non-zero byte.
fn data_offset(bytes: &[u8], fraction: f64) -> usize {
    let blocks = used_blocks(bytes);
    let block = blocks[((blocks.len() - 1) as f64 * fraction) as usize];
    let end = (block + 512).min(bytes.len());
    (block..end).find(|&i| bytes[i] != 0).unwrap_or(block)
}

fn flip_at(fraction: f64) -> Damage {
    Box::new(move |db, _| {
        let f = db.join("db");
        let mut bytes = std::fs::read(&f).unwrap();
        let at = data_offset(&bytes, fraction);
        bytes[at] ^= 0x10;
        std::fs::write(&f, bytes).unwrap();
    })
}

fn truncate_to(fraction: f64) -> Damage {
    Box::new(move |db, _| {
        let f = db.join("db");
        let bytes = std::fs::read(&f).unwrap();
        let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let len = (used as f64 * fraction) as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(len)
            .unwrap();
    })
}

fn zero_fill(fraction: f64, len: usize) -> Damage {
    Box::new(move |db, _| {
        let f = db.join("db");
        let mut bytes = std::fs::read(&f).unwrap();
        let at = if fraction == 0.0 {
            0
        } else {
            data_offset(&bytes, fraction)
        };
        let end = (at + len).min(bytes.len());
        bytes[at..end].fill(0);
        std::fs::write(&f, bytes).unwrap();
    })
}

/// Edits the stopped database with sled itself (what a bug or a partial write could leave).
fn with_sled(edit: fn(&sled::Db, &Golden)) -> Damage {
    Box::new(move |db, g| {
        let opened = sled::Config::new().path(db).open().unwrap();
        edit(&opened, g);
        opened.flush().unwrap();
    })
}

fn modes() -> Vec<Mode> {
    let m = |name, damage| Mode { name, damage };
    vec![
        m("bit flip at 5% of db", flip_at(0.05)),
        m("bit flip at 25% of db", flip_at(0.25)),
        m("bit flip at 50% of db", flip_at(0.5)),
        m("bit flip at 75% of db", flip_at(0.75)),
        m("bit flip at 95% of db", flip_at(0.95)),
        m("bit flip in the last byte of db", flip_at(1.0)),
        m("db truncated to nothing", truncate_to(0.0)),
        m("db truncated to 10%", truncate_to(0.1)),
        m("db truncated to 50%", truncate_to(0.5)),
        m("db truncated to 90%", truncate_to(0.9)),
        m(
            "db loses its last byte",
            Box::new(|db, _| {
                let f = db.join("db");
                let bytes = std::fs::read(&f).unwrap();
                let len = bytes.iter().rposition(|&b| b != 0).unwrap_or(1) as u64;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .unwrap()
                    .set_len(len)
                    .unwrap();
            }),
        ),
        m("4 KiB zero-filled at 30% of db", zero_fill(0.3, 4096)),
        m("512 bytes zero-filled at 70% of db", zero_fill(0.7, 512)),
        m("the first 4 KiB of db zero-filled", zero_fill(0.0, 4096)),
        m(
            "garbage appended to db",
            Box::new(|db, _| {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(db.join("db"))
                    .unwrap();
                f.write_all(&[0xA5; 3000]).unwrap();
            }),
        ),
        m(
            "conf removed",
            Box::new(|db, _| std::fs::remove_file(db.join("conf")).unwrap()),
        ),
        m(
            "conf damaged",
            Box::new(|db, _| std::fs::write(db.join("conf"), b"segment_size: x\0\xff").unwrap()),
        ),
        m(
            "a bogus sled snapshot file",
            Box::new(|db, _| {
                std::fs::write(db.join("snap.00000000000fffff"), vec![0x5A; 777]).unwrap()
            }),
        ),
        m(
            "durable record removed",
            Box::new(|db, _| std::fs::remove_file(db.join("wfdb-durable")).unwrap()),
        ),
        m(
            "durable record bit flip",
            Box::new(|db, _| {
                let f = db.join("wfdb-durable");
                let mut bytes = std::fs::read(&f).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 1;
                std::fs::write(&f, bytes).unwrap();
            }),
        ),
        m(
            "durable record truncated",
            Box::new(|db, _| {
                let f = db.join("wfdb-durable");
                let len = file_len(&f) / 2;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .unwrap()
                    .set_len(len)
                    .unwrap();
            }),
        ),
        m(
            "record-heads snapshot damaged",
            Box::new(|db, g| {
                std::fs::write(db.join(format!("wfdb-heads-{}.bin", g.root_id)), [1, 2, 3]).unwrap()
            }),
        ),
        m(
            "a root's clock and bookkeeping removed",
            with_sled(|db, g| {
                db.open_tree(format!("root/{}", g.root_id))
                    .unwrap()
                    .remove("m")
                    .unwrap();
            }),
        ),
        m(
            "a root's whole tree dropped",
            with_sled(|db, g| {
                db.drop_tree(format!("root/{}", g.root_id)).unwrap();
            }),
        ),
        m(
            "the roots list removed",
            with_sled(|db, _| {
                db.open_tree("meta").unwrap().remove("roots").unwrap();
            }),
        ),
        m(
            "the instance id removed",
            with_sled(|db, _| {
                db.open_tree("meta").unwrap().remove("instance_id").unwrap();
            }),
        ),
        m(
            "an agent record garbled",
            with_sled(|db, _| {
                db.open_tree("reg/agents")
                    .unwrap()
                    .insert("alpha", &[1u8, 0xff, 0xff, 0xff][..])
                    .unwrap();
            }),
        ),
        m(
            "the registry rolled back (generation lowered, sessions lost)",
            with_sled(|db, _| {
                db.open_tree("reg/meta")
                    .unwrap()
                    .insert("generation", &1u64.to_be_bytes()[..])
                    .unwrap();
                for t in ["reg/sessions", "reg/session_meta", "reg/session_heads"] {
                    db.drop_tree(t).unwrap();
                }
            }),
        ),
        m(
            "the whole database replaced by an older copy",
            Box::new(|db, g| {
                let record = std::fs::read(db.join("wfdb-durable")).unwrap();
                copy_dir(&g.early_db, db);
                std::fs::write(db.join("wfdb-durable"), record).unwrap();
            }),
        ),
    ]
}

/// Asserts every promise after a restart on a damaged database.
async fn check_after_damage(mode: &str, d: &Daemon, g: &Golden) {
    let s = stats(d).await;
    let damaged = !s.damage.is_empty();
    // Changes for every old clock, with and without the old instance id: never exact but
    // incomplete.
    let disk: BTreeSet<String> = independent_walk(&g.root, &[])
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let now = clock_of(d).await;
    for since in [1, g.clock - 4, g.clock - 1, g.clock] {
        for instance in [g.instance_id.as_str(), ""] {
            let r = d.changes(since, instance).await;
            let got: BTreeSet<String> = r.changed.iter().map(|f| f.path.clone()).collect();
            if r.fresh_instance {
                assert_eq!(got, disk, "{mode}: a fresh instance lists every file");
            } else {
                let must: BTreeSet<String> =
                    g.edits.range(since + 1..).map(|(_, p)| p.clone()).collect();
                assert!(
                    got.is_superset(&must),
                    "{mode}: exact answer since {since} misses {:?} (got {got:?})",
                    must.difference(&got).collect::<Vec<_>>()
                );
                assert!(
                    !damaged,
                    "{mode}: an exact answer for an old clock after damage"
                );
                assert!(since <= now);
            }
        }
    }
    if damaged {
        // Every other way of asking "what changed since" refuses the old clocks too.
        let mut sub = d
            .catalog()
            .await
            .subscribe(proto::SubscribeRequest {
                since_clock: Some(g.clock),
                instance_id: g.instance_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let first = sub.message().await.unwrap().unwrap();
        assert!(first.fresh_instance, "{mode}: Subscribe from an old clock");
        // Once the graph is built (UNAVAILABLE before), an old clock is refused.
        let deadline = Instant::now() + TIMEOUT;
        let affected = loop {
            let r = proto::graph_client::GraphClient::new(d.channel().await)
                .affected(proto::AffectedRequest {
                    since_clock: Some(g.clock - 1),
                    ..Default::default()
                })
                .await;
            match r {
                Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other,
            }
        };
        assert!(
            matches!(&affected, Err(s) if s.code() == tonic::Code::FailedPrecondition),
            "{mode}: Affected answered an old clock: {affected:?}"
        );
        // With the old instance id, even the current clock of the new instance is refused.
        let affected = proto::graph_client::GraphClient::new(d.channel().await)
            .affected(proto::AffectedRequest {
                since_clock: Some(now),
                instance_id: g.instance_id.clone(),
                ..Default::default()
            })
            .await;
        assert!(
            matches!(&affected, Err(s) if s.code() == tonic::Code::FailedPrecondition
                && s.message().contains("instance")),
            "{mode}: Affected ignored the instance id: {affected:?}"
        );
        let token = format!("wfdb:1:{}:{}:{}", g.instance_id, g.root_id, g.clock - 1);
        let out = Command::new(wfdb_bin())
            .current_dir(&g.root)
            .arg("--socket")
            .arg(&d.socket)
            .args(["fsmonitor-hook", "2", &token])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let answer: Vec<&[u8]> = out.stdout.split(|b| *b == 0).skip(1).collect();
        assert!(
            answer.contains(&&b"/"[..]),
            "{mode}: the fsmonitor hook did not ask git to check everything: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_catalog_matches_disk(d, &g.root, &[]).await;
    let registry = registry_of(&export(&d.socket));
    if damaged {
        assert_ne!(
            s.instance_id, g.instance_id,
            "{mode}: same instance after damage"
        );
        assert_eq!(integrity_health(d).await, NOT_SERVING, "{mode}");
        let (_, out, _) = cli(&d.socket, &["status"]);
        assert!(
            out.contains("DAMAGE"),
            "{mode}: status says nothing:\n{out}"
        );
        if registry != g.registry {
            // What was lost must be said: a rollback, dropped entries, or no proof either way.
            let said = s.damage.iter().any(|r| {
                r.registry.contains("ROLLED BACK")
                    || r.registry.contains("cannot be ruled out")
                    || !r.registry_entries_dropped.is_empty()
            });
            assert!(
                said,
                "{mode}: registry lost data without saying so: {:?} vs {:?}; report {:?}",
                registry, g.registry, s.damage
            );
        }
    } else {
        assert_eq!(s.instance_id, g.instance_id, "{mode}");
        assert_eq!(
            registry, g.registry,
            "{mode}: registry changed without a report"
        );
        assert_eq!(integrity_health(d).await, SERVING, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_damage_is_detected_or_harmless_never_a_silent_rollback() {
    let g = golden().await;
    let modes = modes();
    assert!(modes.len() >= 20);
    let mut outcomes = Vec::new();
    for mode in &modes {
        let dirs = Dirs::new();
        copy_dir(&g.db, &dirs.db);
        (mode.damage)(&dirs.db, &g);
        match try_start(&dirs, &g.root).await {
            Started::Serving(d) => {
                check_after_damage(mode.name, &d, &g).await;
                let damaged = !stats(&d).await.damage.is_empty();
                outcomes.push(format!(
                    "{}: {}",
                    mode.name,
                    if damaged {
                        "repaired and reported"
                    } else {
                        "harmless"
                    }
                ));
                assert!(d.stop().success(), "{}", mode.name);
            }
            Started::Refused(code, log) => {
                // Refusing is allowed only with a message naming the damage and the way out.
                assert_ne!(code, 0, "{}", mode.name);
                assert!(
                    log.contains("wfdb export --db"),
                    "{}: refused without the way out:\n{log}",
                    mode.name
                );
                outcomes.push(format!("{}: refused (exit {code})", mode.name));
            }
        }
    }
    eprintln!("{}", outcomes.join("\n"));
    // Whatever a mode did, the checks above proved no answer lied. Beyond that, the record
    // must catch what sled hides: the damage that certainly loses acknowledged data is
    // reported. (A flip near the log's end may land on bytes sled no longer needs: harmless,
    // and proven so above; which bytes those are varies with flush timing.)
    let reported = |name: &str| {
        outcomes
            .iter()
            .any(|o| o.starts_with(name) && o.ends_with("repaired and reported"))
    };
    for name in [
        "db truncated to nothing",
        "db truncated to 50%",
        "the first 4 KiB of db zero-filled",
        "durable record removed",
        "durable record bit flip",
        "durable record truncated",
        "a root's whole tree dropped",
        "the roots list removed",
        "the instance id removed",
        "an agent record garbled",
        "the registry rolled back",
        "the whole database replaced by an older copy",
    ] {
        assert!(reported(name), "{name} went unreported: {outcomes:#?}");
    }
    let count = outcomes.iter().filter(|o| o.ends_with("reported")).count();
    assert!(count >= 18, "{outcomes:#?}");
    let _ = &g.tmp;
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_damage_offline_and_through_the_daemon_until_acknowledged() {
    let g = golden().await;
    let dirs = Dirs::new();
    copy_dir(&g.db, &dirs.db);
    (truncate_to(0.9))(&dirs.db, &g);
    let db = dirs.db.to_str().unwrap();
    let nowhere = dirs.tmp.path().join("nobody.sock");
    // Offline: the damage is found without a daemon.
    let (code, out, _) = cli(&nowhere, &["doctor", "--db", db]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✗ integrity") && out.contains("rolled back"),
        "{out}"
    );
    // Offline export saves what can be read, and says what is wrong.
    let file = dirs.tmp.path().join("rescue.json");
    let (code, out, err) = cli(&nowhere, &["export", "--db", db, file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("damaged or rolled back"), "{out}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(doc["format_version"].is_number());
    // The daemon repairs and reports; doctor through it fails until acknowledged.
    let Started::Serving(d) = try_start(&dirs, &g.root).await else {
        panic!("the daemon refused a bit flip");
    };
    assert!(d.log_text().contains("DATABASE DAMAGE DETECTED"));
    let (code, out, _) = cli(&d.socket, &["doctor"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not yet acknowledged"), "{out}");
    // Export through a running daemon's folder is refused with the reason.
    let (code, _, err) = cli(&nowhere, &["export", "--db", db, file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("in use by a running wfdb daemon"), "{err}");
    let (code, out, err) = cli(&d.socket, &["doctor", "--ack-damage"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("acknowledged 1 damage report"), "{out}");
    let deadline = Instant::now() + TIMEOUT;
    while integrity_health(&d).await != SERVING {
        assert!(Instant::now() < deadline, "Integrity stays NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stats(&d).await.damage.is_empty());
    assert!(d.stop().success());
    // Healthy after the repair: a restart finds nothing.
    let Started::Serving(d) = try_start(&dirs, &g.root).await else {
        panic!("no restart");
    };
    assert!(stats(&d).await.damage.is_empty());
    assert_eq!(integrity_health(&d).await, SERVING);
    let _ = &g.tmp;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_is_named_as_such_and_can_still_be_exported() {
    let g = golden().await;
    let dirs = Dirs::new();
    copy_dir(&g.db, &dirs.db);
    let as_nobody = is_root();
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Root writes anywhere: then run as nobody on a folder it can read but not write.
    for entry in std::fs::read_dir(&dirs.db).unwrap() {
        let p = entry.unwrap().path();
        set(&p, if p.is_dir() { 0o555 } else { 0o444 });
    }
    set(&dirs.db, 0o555);
    let out_dir = dirs.tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    set(&out_dir, 0o777);
    for p in [dirs.tmp.path(), dirs.db.parent().unwrap()] {
        set(p, 0o755);
    }
    set(g.tmp.path(), 0o755);
    let run = |args: &[&str]| {
        let mut cmd = Command::new(wfdb_bin());
        cmd.args(args)
            .env("XDG_CONFIG_HOME", &out_dir)
            .env_remove("WFDB_CONFIG")
            .stdin(Stdio::null());
        if as_nobody {
            use std::os::unix::process::CommandExt;
            cmd.uid(65534).gid(65534);
        }
        let o = cmd.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let db = dirs.db.to_str().unwrap();
    // The socket's folder must belong to the user the daemon runs as (the daemon refuses one
    // another user could have made to intercept it).
    let socket_dir = out_dir.join("sock");
    std::fs::create_dir(&socket_dir).unwrap();
    set(&socket_dir, 0o700);
    if as_nobody {
        std::os::unix::fs::chown(&socket_dir, Some(65534), Some(65534)).unwrap();
    }
    let socket = socket_dir.join("wfdb.sock");
    let (code, _, err) = run(&[
        "serve",
        g.root.to_str().unwrap(),
        "--db",
        db,
        "--socket",
        socket.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot be written"), "{err}");
    assert!(err.contains("Nothing is damaged"), "{err}");
    assert!(err.contains("wfdb export --db"), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
    let file = out_dir.join("rescue.json");
    let (code, out, err) = run(&["export", "--db", db, file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("read-only or owned by another user"), "{out}");
    assert!(out.contains("matches its durable record"), "{out}");
    assert!(out.contains("saved: 2 agent(s)"), "{out}");
    assert!(out.contains("1 session(s)"), "{out}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(registry_of(&doc), g.registry);
    // The original is untouched.
    assert_eq!(
        std::fs::read(dirs.db.join("db")).unwrap(),
        std::fs::read(g.db.join("db")).unwrap()
    );
    // Doctor names the cause too.
    let (code, out, _) = run(&["--socket", socket.to_str().unwrap(), "doctor", "--db", db]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("do not move it aside"), "{out}");
    let _ = &g.tmp;
}
