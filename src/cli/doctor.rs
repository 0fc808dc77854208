//! `wfdb doctor`: checks what the daemon depends on (the socket, the daemon itself, its
//! version and database, the kernel's inotify limits) and says what to fix.
//!
//! Gathering facts (files, /proc, the socket) is kept apart from judging them: each check is
//! a plain function from facts to a [`Check`], tested without a daemon.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::output::{human_bytes, terminal_width, wrap, Output};
use workflowdb::proto;
use workflowdb::store::{DatabaseInfo, Store, StoreError};

/// This build's version, compared with the daemon's.
const CLI_VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long connecting and the health check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the daemon's full verify pass may take.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the daemon's figures may take (they count every root's records).
const STATS_TIMEOUT: Duration = Duration::from_secs(15);
/// Where the systemd unit puts the socket.
const SYSTEMD_SOCKET: &str = "/run/wfdb/wfdb.sock";
/// Where the kernel publishes the inotify limits.
const INOTIFY_SYSCTL_DIR: &str = "/proc/sys/fs/inotify";
/// The drop-in that keeps a raised limit across reboots.
const SYSCTL_DROP_IN: &str = "/etc/sysctl.d/90-wfdb.conf";

/// What `wfdb doctor --help` says beyond the one-line summary.
pub const ABOUT: &str = "\
Check what the daemon depends on and say what to fix:
  socket    exists, is a socket, mode 0600, owned by you, in a folder others cannot write
  daemon    answers a gRPC health check on the socket within 2 seconds
  version   this wfdb and the daemon are the same version
  database  the daemon's database (or, with the daemon down, the one on disk: opened only
            for the check, never created) has this wfdb's schema and is not corrupt
  integrity every entry of the database reads back through the record codec, and the
            database holds at least what its durable record says reached disk (no silent
            rollback); damage found at an earlier start and not yet acknowledged (clear it
            with --ack-damage once read)
  inotify   the kernel's fs.inotify limits against the folders the daemon watches and polls
            (with the daemon down: against a walk of PATHs, the database's roots, or the
            current folder)
Each check prints ok, warn or fail (skip when it cannot be made), with the fix indented
below. Exit status: 0 when no check failed (warnings alone exit 0), 1 when one did.";

/// Arguments of `wfdb doctor`.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Folders to size the inotify needs for when the daemon is not running (default: the
    /// roots recorded in the database, else the current folder).
    paths: Vec<PathBuf>,
    /// Database folder to check when the daemon is not running [default: as `wfdb serve`].
    #[arg(long, env = "WFDB_DB")]
    db: Option<PathBuf>,
    /// Clear the damage reports (after reading them): through the daemon when one answers,
    /// else in the database folder. Health of workflowdb.v1.Integrity turns SERVING.
    #[arg(long)]
    ack_damage: bool,
}

/// How a check came out, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Could not be checked because another check failed.
    Skip,
    Warn,
    Fail,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Skip => "skip",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Level::Ok => "✓",
            Level::Skip => "-",
            Level::Warn => "!",
            Level::Fail => "✗",
        }
    }
}

/// One check's outcome: what was found and what to do about it.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub finding: String,
    pub fixes: Vec<String>,
    /// Figures for scripts (`--json`).
    pub details: Value,
}

impl Check {
    fn new(name: &'static str, level: Level, finding: impl Into<String>) -> Check {
        Check {
            name,
            level,
            finding: finding.into(),
            fixes: Vec::new(),
            details: json!({}),
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fixes.push(fix.into());
        self
    }

    fn with_details(mut self, details: Value) -> Check {
        self.details = details;
        self
    }

    fn json(&self) -> Value {
        json!({
            "check": self.name,
            "status": self.level.name(),
            "finding": self.finding,
            "fixes": self.fixes,
            "details": self.details,
        })
    }
}

/// Several problems found by one check, merged into one outcome.
#[derive(Default)]
struct Findings {
    level: Option<Level>,
    said: Vec<String>,
    fixes: Vec<String>,
}

impl Findings {
    fn add(&mut self, level: Level, said: String, fixes: &[String]) {
        self.level = Some(self.level.map_or(level, |l| l.max(level)));
        self.said.push(said);
        for f in fixes {
            if !self.fixes.contains(f) {
                self.fixes.push(f.clone());
            }
        }
    }

    fn into_check(self, name: &'static str, all_well: String) -> Check {
        match self.level {
            None => Check::new(name, Level::Ok, all_well),
            Some(level) => {
                let mut check = Check::new(name, level, self.said.join("; "));
                check.fixes = self.fixes;
                check
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The socket

/// What the socket path is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketKind {
    Missing,
    NotSocket,
    Socket {
        mode: u32,
        uid: u32,
    },
    /// It could not be examined (e.g. a folder above it is not searchable).
    Unreadable(String),
}

/// The socket path and its folder as found on disk.
#[derive(Clone, Debug)]
pub struct SocketFacts {
    pub kind: SocketKind,
    /// The folder holding the socket: its path, mode and owner.
    pub folder: Option<(PathBuf, u32, u32)>,
    /// Whether the systemd unit's socket exists (and is not the one checked).
    pub systemd_socket: bool,
    /// Whether the configuration grants other local users scopes (`access.local_users`): the
    /// daemon then makes the socket 0666 and checks each call by the caller's uid.
    pub shared: bool,
}

/// Looks at the socket path and its folder.
fn socket_facts(path: &Path, shared: bool) -> SocketFacts {
    let kind = match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => SocketKind::Socket {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
        },
        Ok(_) => SocketKind::NotSocket,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SocketKind::Missing,
        Err(e) => SocketKind::Unreadable(e.to_string()),
    };
    let folder = path.parent().and_then(|dir| {
        std::fs::metadata(dir)
            .ok()
            .map(|m| (dir.to_path_buf(), m.mode() & 0o7777, m.uid()))
    });
    let systemd = Path::new(SYSTEMD_SOCKET);
    SocketFacts {
        kind,
        folder,
        systemd_socket: systemd != path && systemd.exists(),
        shared,
    }
}

/// Ways to start the daemon.
fn start_fixes() -> Vec<String> {
    vec![
        "start the daemon in a terminal: `wfdb serve [PATH...]` (PATH: the folders to catalog)"
            .to_string(),
        "or as a service: `sudo systemctl start wfdb` (see README, Running under systemd); \
         why it stopped: `journalctl -u wfdb -e`"
            .to_string(),
    ]
}

/// Where else the daemon may be listening.
fn elsewhere_fix(systemd_socket: bool) -> String {
    if systemd_socket {
        format!("the systemd service's socket exists: `WFDB_SOCKET={SYSTEMD_SOCKET} wfdb doctor`")
    } else {
        "if the daemon listens elsewhere, name its socket: --socket PATH or WFDB_SOCKET=PATH"
            .to_string()
    }
}

/// Judges the socket: it must exist, be a socket only its owner can use, be yours, and sit in
/// a folder nobody else can write (else anyone could put their own socket in its place).
pub fn socket_check(path: &Path, facts: &SocketFacts, my_uid: u32) -> Check {
    let shown = path.display();
    let details = json!({"path": path.display().to_string()});
    let (mode, owner) = match &facts.kind {
        SocketKind::Missing => {
            return Check::new("socket", Level::Fail, format!("no socket at {shown}"))
                .fix("the daemon creates it when it starts (see the daemon check)")
                .fix(elsewhere_fix(facts.systemd_socket))
                .with_details(details);
        }
        SocketKind::Unreadable(e) => {
            return Check::new(
                "socket",
                Level::Fail,
                format!("cannot examine {shown}: {e}"),
            )
            .fix("check the permissions of the folders above it, or run as the daemon's user")
            .with_details(details);
        }
        SocketKind::NotSocket => {
            return Check::new(
                "socket",
                Level::Fail,
                format!("{shown} exists but is not a socket, so no daemon can listen there"),
            )
            .fix(format!(
                "remove it (`rm {shown}`) or choose another path with --socket; the daemon \
                 never replaces a file that is not a socket"
            ))
            .with_details(details);
        }
        SocketKind::Socket { mode, uid } => (*mode, *uid),
    };
    let mut found = Findings::default();
    let chmod =
        format!("`chmod 600 {shown}` (the daemon creates it 0600: restarting it also fixes this)");
    if facts.shared && mode & 0o7777 == 0o666 {
        // Expected: other users connect, and each call is checked against their grants.
    } else if mode & 0o022 != 0 {
        found.add(
            Level::Fail,
            format!(
                "mode {mode:04o}: other users can connect, read the catalog and change the \
                 workflow database"
            ),
            &[chmod],
        );
    } else if mode & 0o055 != 0 {
        found.add(
            Level::Warn,
            format!("mode {mode:04o} is looser than 0600"),
            &[chmod],
        );
    }
    if owner != my_uid {
        let level = if my_uid == 0 { Level::Ok } else { Level::Warn };
        if level != Level::Ok {
            found.add(
                level,
                format!("owned by uid {owner}, not you (uid {my_uid}): only that user can connect"),
                &[
                    "run wfdb as the daemon's user (`sudo -u USER wfdb ...`), or run your own \
                   daemon with its own --socket"
                        .to_string(),
                ],
            );
        }
    }
    if let Some((dir, dir_mode, _)) = &facts.folder {
        let dir_shown = dir.display();
        let private = "put the socket in a private folder: --socket \
                       $XDG_RUNTIME_DIR/wfdb/wfdb.sock (the default when XDG_RUNTIME_DIR is set)"
            .to_string();
        // The daemon and the CLI apply the same rule (`socket_trust`): whoever can write the
        // folder can swap the socket, sticky bit or not (the name can be taken while no daemon
        // runs).
        if dir_mode & 0o022 != 0 {
            found.add(
                Level::Fail,
                format!(
                    "its folder {dir_shown} (mode {dir_mode:04o}) is writable by other users, \
                     who could put their own socket there: the daemon refuses it and wfdb will \
                     not connect"
                ),
                &[format!("`chmod go-w {dir_shown}`"), private],
            );
        }
    }
    found
        .into_check(
            "socket",
            format!("{shown} is a socket, mode {mode:04o}, yours, in a folder only its owner can write"),
        )
        .with_details(json!({"path": path.display().to_string(), "mode": format!("{mode:04o}"), "uid": owner}))
}

// ---------------------------------------------------------------------------------------
// The daemon

/// What connecting to the daemon gave.
#[derive(Debug)]
pub enum Reach {
    /// The health check says serving; the daemon's figures, when it gave them.
    Serving(Result<Box<proto::StatsResponse>, String>),
    /// The health check answered, but not SERVING.
    NotServing(String),
    /// The daemon answers, but its database cannot be written (its figures say why).
    StoreFailing(proto::StoreHealth),
    /// No socket file.
    Missing,
    /// A socket file nobody listens on.
    Refused,
    /// Not allowed to connect.
    Denied,
    /// No answer in time.
    TimedOut,
    Failed(String),
}

/// Connects, asks grpc.health.v1 whether the daemon serves, and asks for its figures.
async fn probe(socket: &Path) -> Reach {
    let connect = tokio::time::timeout(PROBE_TIMEOUT, workflowdb::client::connect_unix(socket));
    let channel = match connect.await {
        Err(_) => return Reach::TimedOut,
        Ok(Ok(ch)) => ch,
        Ok(Err(e)) => return why_unreachable(socket, e.to_string()).await,
    };
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = health.check(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Err(_) => return Reach::TimedOut,
        Ok(Err(status)) => return Reach::Failed(format!("health check: {}", status.message())),
        Ok(Ok(resp)) => {
            let status = resp.into_inner().status;
            if status != ServingStatus::Serving as i32 {
                let name = ServingStatus::try_from(status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("UNKNOWN");
                // Its figures say whether the store is the reason.
                let mut catalog = proto::catalog_client::CatalogClient::new(channel);
                let stats = catalog.stats(proto::StatsRequest::default());
                if let Ok(Ok(resp)) = tokio::time::timeout(STATS_TIMEOUT, stats).await {
                    if let Some(h) = resp.into_inner().store_health.filter(|h| !h.serving) {
                        return Reach::StoreFailing(h);
                    }
                }
                return Reach::NotServing(name.to_string());
            }
        }
    }
    let mut catalog = proto::catalog_client::CatalogClient::new(channel);
    let stats = catalog.stats(proto::StatsRequest::default());
    match tokio::time::timeout(STATS_TIMEOUT, stats).await {
        Err(_) => Reach::Serving(Err(format!(
            "no figures within {} s",
            STATS_TIMEOUT.as_secs()
        ))),
        Ok(Err(status)) => Reach::Serving(Err(status.message().to_string())),
        Ok(Ok(resp)) => {
            let resp = resp.into_inner();
            match resp.store_health.clone().filter(|h| !h.serving) {
                // The store failed between the two calls.
                Some(h) => Reach::StoreFailing(h),
                None => Reach::Serving(Ok(Box::new(resp))),
            }
        }
    }
}

/// Tells why connecting failed: no file, nobody listening, not allowed, or something else.
async fn why_unreachable(socket: &Path, error: String) -> Reach {
    let direct = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::UnixStream::connect(socket));
    match direct.await {
        Err(_) => Reach::TimedOut,
        Ok(Err(e)) => match e.kind() {
            std::io::ErrorKind::NotFound => Reach::Missing,
            std::io::ErrorKind::ConnectionRefused => Reach::Refused,
            std::io::ErrorKind::PermissionDenied => Reach::Denied,
            _ => Reach::Failed(e.to_string()),
        },
        // It listens now: it was starting, or is overloaded.
        Ok(Ok(_)) => Reach::Failed(error),
    }
}

/// Judges whether the daemon answers, and says how to start it when it does not.
pub fn daemon_check(socket: &Path, reach: &Reach, systemd_socket: bool) -> Check {
    let shown = socket.display();
    let down = |finding: String| {
        let mut check = Check::new("daemon", Level::Fail, finding);
        check.fixes = start_fixes();
        check.fixes.push(elsewhere_fix(systemd_socket));
        check
    };
    match reach {
        Reach::Serving(Ok(stats)) => Check::new(
            "daemon",
            Level::Ok,
            format!(
                "serving on {shown}: wfdb {}, up {}, {} root(s)",
                stats.version,
                uptime(stats.uptime_ms),
                stats.roots.len()
            ),
        )
        .with_details(json!({"serving": true, "uptime_ms": stats.uptime_ms})),
        Reach::Serving(Err(e)) => Check::new(
            "daemon",
            Level::Warn,
            format!("serving on {shown}, but its figures failed: {e}"),
        )
        .fix("see the daemon's log: `journalctl -u wfdb -e`, or the terminal running `wfdb serve`")
        .with_details(json!({"serving": true})),
        Reach::NotServing(state) => Check::new(
            "daemon",
            Level::Fail,
            format!("the daemon on {shown} reports {state}: it is not ready or is shutting down"),
        )
        .fix("wait for its start-up reconcile to finish, then try again; its log says more: `journalctl -u wfdb -e`"),
        Reach::StoreFailing(h) => Check::new(
            "daemon",
            Level::Fail,
            format!(
                "the daemon on {shown} answers but is NOT_SERVING: {}",
                super::catalog::store_failing_line(h)
                    .trim_start_matches("NOT_SERVING: ")
            ),
        )
        .fix("free space on the database's file system (`df -h`), or make its folder writable again; the daemon retries by itself and serves again (or restarts, status 75) once writes succeed")
        .with_details(json!({"serving": false, "store_cause": h.cause, "failing_since_ms": h.failing_since_ms})),
        Reach::Missing => down(format!("no daemon is running on {shown}")),
        Reach::Refused => {
            let mut check = down(format!(
                "{shown} is a socket nobody listens on: the daemon that made it is gone \
                 (killed, or crashed)"
            ));
            check.fixes.insert(
                0,
                "`wfdb serve` replaces the stale socket when it starts".to_string(),
            );
            check
        }
        Reach::Denied => Check::new(
            "daemon",
            Level::Fail,
            format!("permission denied connecting to {shown}"),
        )
        .fix("run wfdb as the daemon's user (`sudo -u USER wfdb ...`), or run your own daemon with its own --socket"),
        Reach::TimedOut => Check::new(
            "daemon",
            Level::Fail,
            format!(
                "no answer on {shown} within {} s: the daemon is stopped (SIGSTOP), stuck or overloaded",
                PROBE_TIMEOUT.as_secs()
            ),
        )
        .fix("look at it: `ps -o pid,stat,etime,cmd -C wfdb`; a stopped one resumes with `kill -CONT PID`")
        .fix("restart it: `sudo systemctl restart wfdb`, or stop and rerun `wfdb serve`"),
        Reach::Failed(e) => {
            down(format!("cannot talk to the daemon on {shown}: {e}"))
        }
    }
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// Judges whether the daemon runs the same version as this wfdb.
pub fn version_check(daemon: Option<&str>) -> Check {
    let details = json!({"cli": CLI_VERSION, "daemon": daemon});
    match daemon {
        None => Check::new(
            "version",
            Level::Skip,
            format!("this wfdb is {CLI_VERSION}; the daemon's version is unknown while it is unreachable"),
        ),
        Some(v) if v == CLI_VERSION => Check::new(
            "version",
            Level::Ok,
            format!("this wfdb and the daemon are both {v}"),
        ),
        Some(v) => Check::new(
            "version",
            Level::Warn,
            format!("this wfdb is {CLI_VERSION} but the daemon runs {v}: verbs and fields may differ"),
        )
        .fix("restart the daemon with this binary: `sudo systemctl restart wfdb`, or stop it and rerun `wfdb serve`")
        .fix("or use the wfdb that matches the daemon"),
    }
    .with_details(details)
}

// ---------------------------------------------------------------------------------------
// The database

/// What is known about the database.
#[derive(Debug)]
pub enum DbFacts {
    /// The daemon has it open and reported on it.
    Daemon {
        path: String,
        instance_id: String,
        /// 0 from a daemon too old to say.
        schema: u32,
        roots: usize,
        files: u64,
    },
    /// The daemon is unreachable and there is no database at this path.
    Absent(PathBuf),
    /// The daemon is unreachable; the database was opened for the check.
    Inspected(PathBuf, DatabaseInfo),
    /// The daemon is unreachable; opening the database failed.
    Failed(PathBuf, StoreError),
}

/// Judges the database's health and schema version.
pub fn database_check(facts: &DbFacts) -> Check {
    let ours = u32::from(workflowdb::store::codec::SCHEMA_VERSION);
    match facts {
        DbFacts::Daemon {
            path,
            instance_id,
            schema,
            roots,
            files,
        } => {
            let details = json!({"path": path, "instance_id": instance_id, "schema": schema,
                                 "roots": roots, "files": files, "open_in_daemon": true});
            let summary = format!(
                "{path}: open in the daemon, instance {instance_id}, {roots} root(s), {files} files"
            );
            if *schema == 0 {
                Check::new(
                    "database",
                    Level::Ok,
                    format!("{summary}; schema not reported (an older daemon)"),
                )
            } else if *schema != ours {
                Check::new(
                    "database",
                    Level::Warn,
                    format!("{summary}; its schema is {schema}, this wfdb's is {ours}: a daemon of this version could not open it"),
                )
                .fix("keep the daemon's version, or export the workflow database (`wfdb export backup.json`), move the database aside, start this version and `wfdb import backup.json` (the catalog is rebuilt from disk)")
            } else {
                Check::new("database", Level::Ok, format!("{summary}, schema {schema}"))
            }
            .with_details(details)
        }
        DbFacts::Absent(path) => Check::new(
            "database",
            Level::Ok,
            format!(
                "no database yet at {}: `wfdb serve` creates it",
                path.display()
            ),
        )
        .with_details(json!({"path": path.display().to_string(), "exists": false})),
        DbFacts::Inspected(path, info) => {
            let shown = path.display();
            let details = json!({"path": shown.to_string(), "exists": true,
                "schema": info.schema, "instance_id": info.instance_id,
                "roots": info.roots.len(), "size_bytes": info.size_on_disk});
            match (info.schema, &info.instance_id) {
                (Some(schema), Some(id)) => Check::new(
                    "database",
                    Level::Ok,
                    format!(
                        "{shown}: opens, schema {schema} (this wfdb reads {ours}), instance {id}, {} root(s), {}, not in use",
                        info.roots.len(),
                        human_bytes(info.size_on_disk)
                    ),
                ),
                _ => Check::new(
                    "database",
                    Level::Warn,
                    format!("{shown} was never fully set up (no schema marker or instance id): a daemon stopped during its first start?"),
                )
                .fix("`wfdb serve` sets it up; if it refuses, move the folder aside"),
            }
            .with_details(details)
        }
        DbFacts::Failed(path, error) => {
            let shown = path.display();
            let details =
                json!({"path": shown.to_string(), "exists": true, "error": error.to_string()});
            let aside = format!(
                "move it aside and start again (the catalog is rebuilt from disk; agents, workflows and sessions are lost unless exported): `mv {shown} {shown}.old && wfdb serve`"
            );
            match error {
                StoreError::Locked(_) => Check::new(
                    "database",
                    Level::Warn,
                    format!("{shown} is in use by another process, yet no daemon answers on this socket"),
                )
                .fix(format!("find it: `fuser -v {shown}/db` or `pgrep -a wfdb`; then pass its socket with --socket"))
                .fix("or check another database with `wfdb doctor --db DIR`"),
                StoreError::UnknownSchema { found, .. } => Check::new(
                    "database",
                    Level::Fail,
                    format!("{shown} has schema {found}, this wfdb reads {ours}: its daemon would refuse to start"),
                )
                .fix("use the wfdb version that wrote it")
                .fix(aside),
                StoreError::CreateDir { source, .. } => Check::new(
                    "database",
                    Level::Fail,
                    format!("cannot open {shown}: {source}"),
                )
                .fix("run as the daemon's user, or check the folder's permissions"),
                StoreError::NotWritable { source, .. } => Check::new(
                    "database",
                    Level::Fail,
                    format!("{shown} cannot be written ({source}): nothing is damaged, but the daemon cannot start on it"),
                )
                .fix(format!("run as the daemon's user, or give it write access: `ls -la {shown}`"))
                .fix(format!("to save agents, workflows, runs and sessions now: `wfdb export --db {shown} FILE`"))
                .fix("do not move it aside: that would lose the workflow database"),
                StoreError::Corrupt { detail, .. } => Check::new(
                    "database",
                    Level::Fail,
                    format!("{shown} is damaged: sled cannot open it ({detail})"),
                )
                .fix(format!("save the workflow database first: `wfdb export --db {shown} FILE` (it reads a copy)"))
                .fix(format!("then start the daemon: it sets aside what sled cannot read (into {shown}/damaged-*), rebuilds the catalog from disk and reports what was lost")),
                StoreError::DiskFull { source, .. } => Check::new(
                    "database",
                    Level::Fail,
                    format!("{shown}: the disk is full ({source})"),
                )
                .fix(format!("free some space on the disk holding {shown} (`df -h {shown}`)")),
                other => Check::new(
                    "database",
                    Level::Fail,
                    format!("{shown} cannot be read: {other}"),
                )
                .fix(aside),
            }
            .with_details(details)
        }
    }
}

/// What the integrity check learned.
#[derive(Debug)]
pub enum IntegrityFacts {
    /// The store was verified (by the daemon, or offline on the database folder).
    Checked {
        by_daemon: bool,
        /// What is wrong now.
        findings: Vec<String>,
        /// Damage found at an earlier start, not yet acknowledged.
        damage: Vec<proto::DamageReport>,
        entries: u64,
        elapsed_ms: u64,
    },
    /// Could not be checked, and why.
    Skipped(String),
}

/// Judges the store's integrity: damage now, or damage found earlier and not acknowledged.
pub fn integrity_check(facts: &IntegrityFacts) -> Check {
    match facts {
        IntegrityFacts::Skipped(why) => Check::new("integrity", Level::Skip, why.clone()),
        IntegrityFacts::Checked {
            by_daemon,
            findings,
            damage,
            entries,
            elapsed_ms,
        } => {
            let by = if *by_daemon {
                "by the daemon"
            } else {
                "offline"
            };
            let details = json!({"by_daemon": by_daemon, "findings": findings,
                "damage": damage.iter().map(super::catalog::damage_json).collect::<Vec<_>>(),
                "entries_checked": entries, "elapsed_ms": elapsed_ms});
            if !findings.is_empty() {
                let mut c = Check::new(
                    "integrity",
                    Level::Fail,
                    format!(
                        "the database is damaged or rolled back (verified {by}, {entries} entries): {}",
                        findings.join("; ")
                    ),
                );
                if !by_daemon {
                    c = c
                        .fix("starting the daemon repairs it: the catalog is rebuilt from disk under a new instance id (cheap); registry entries that still read are kept and the loss is reported")
                        .fix("to save agents, workflows, runs and sessions first: `wfdb export --db DIR FILE` (reads a copy)");
                } else {
                    c = c.fix("export the workflow database now (`wfdb export FILE`), then restart the daemon: it repairs the database on open");
                }
                return c.with_details(details);
            }
            if !damage.is_empty() {
                let mut c = Check::new(
                    "integrity",
                    Level::Fail,
                    format!(
                        "damage was found at start-up and repaired, not yet acknowledged: {}",
                        super::catalog::damage_lines(damage).join("\n")
                    ),
                );
                c = c.fix("check what was lost (above), redo it or import a backup (`wfdb import FILE`), then `wfdb doctor --ack-damage`");
                return c.with_details(details);
            }
            Check::new(
                "integrity",
                Level::Ok,
                format!("verified {by}: {entries} entries read back, nothing rolled back ({elapsed_ms} ms)"),
            )
            .with_details(details)
        }
    }
}

/// Verifies the daemon's store over gRPC (every entry decoded).
async fn verify_through_daemon(socket: &Path) -> IntegrityFacts {
    let run = async {
        let channel = workflowdb::client::connect_unix(socket)
            .await
            .map_err(|e| e.to_string())?;
        proto::admin_client::AdminClient::new(channel)
            .verify(proto::VerifyRequest { full: true })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| s.message().to_string())
    };
    match tokio::time::timeout(VERIFY_TIMEOUT, run).await {
        Err(_) => IntegrityFacts::Skipped(format!(
            "the daemon did not finish verifying within {} s",
            VERIFY_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => IntegrityFacts::Skipped(format!("the daemon cannot verify: {e}")),
        Ok(Ok(r)) => IntegrityFacts::Checked {
            by_daemon: true,
            findings: r.findings,
            damage: r.damage,
            entries: r.entries_checked,
            elapsed_ms: r.elapsed_ms,
        },
    }
}

/// Verifies the database on disk (the daemon is down).
fn verify_offline(dir: &Path) -> IntegrityFacts {
    let started = std::time::Instant::now();
    match Store::check(dir, workflowdb::store::Depth::Full) {
        Ok(Some(r)) => IntegrityFacts::Checked {
            by_daemon: false,
            findings: r.findings.iter().map(ToString::to_string).collect(),
            damage: r
                .pending
                .iter()
                .map(workflowdb::rpc::admin::damage_report)
                .collect(),
            entries: r.entries_checked,
            elapsed_ms: started.elapsed().as_millis() as u64,
        },
        Ok(None) => IntegrityFacts::Skipped("no database yet".into()),
        Err(e) => IntegrityFacts::Skipped(format!("cannot verify: {e}")),
    }
}

/// Clears the damage reports, through the daemon when it answers.
async fn acknowledge_damage(serving: bool, socket: &Path, dir: &Path) -> anyhow::Result<usize> {
    if serving {
        let channel = workflowdb::client::connect_unix(socket).await?;
        let r = proto::admin_client::AdminClient::new(channel)
            .acknowledge_damage(proto::AcknowledgeDamageRequest {})
            .await?
            .into_inner();
        return Ok(r.acknowledged as usize);
    }
    Ok(Store::acknowledge_damage_offline(dir)?)
}

/// Opens the database on disk for the check when the daemon is unreachable.
fn inspect_database(dir: &Path) -> DbFacts {
    match Store::inspect(dir) {
        Ok(None) => DbFacts::Absent(dir.to_path_buf()),
        Ok(Some(info)) => DbFacts::Inspected(dir.to_path_buf(), info),
        Err(e) => DbFacts::Failed(dir.to_path_buf(), e),
    }
}

// ---------------------------------------------------------------------------------------
// inotify

/// The kernel's per-user inotify limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InotifyLimits {
    pub max_user_watches: u64,
    pub max_user_instances: u64,
    pub max_queued_events: u64,
}

/// inotify instances and watches held by the current user's processes (those readable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InotifyUsage {
    pub instances: u64,
    pub watches: u64,
}

/// How many folders need a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderNeed {
    /// As the running daemon reports: folders watched, and folders polled for want of a watch.
    Daemon {
        watched: u64,
        polled: u64,
    },
    /// Counted by walking `roots` (the daemon's rules, without its --ignore globs);
    /// `complete` is false when the walk stopped early, past any useful limit.
    Walk {
        folders: u64,
        complete: bool,
        roots: Vec<PathBuf>,
    },
    Unknown(String),
}

fn read_limits() -> Option<InotifyLimits> {
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(Path::new(INOTIFY_SYSCTL_DIR).join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(InotifyLimits {
        max_user_watches: read("max_user_watches")?,
        max_user_instances: read("max_user_instances")?,
        max_queued_events: read("max_queued_events")?,
    })
}

/// Watches listed in one inotify descriptor's /proc fdinfo.
pub fn count_watches(fdinfo: &str) -> u64 {
    fdinfo
        .lines()
        .filter(|l| l.starts_with("inotify wd:"))
        .count() as u64
}

/// Counts the inotify instances and watches of `uid`'s processes from /proc.
fn read_usage(uid: u32) -> Option<InotifyUsage> {
    let mut usage = InotifyUsage::default();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = proc_entry.file_name();
        if !name.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let pid_dir = proc_entry.path();
        if !std::fs::metadata(&pid_dir).is_ok_and(|m| m.uid() == uid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(pid_dir.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let is_inotify = std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == "anon_inode:inotify");
            if !is_inotify {
                continue;
            }
            usage.instances += 1;
            let info = std::fs::read_to_string(pid_dir.join("fdinfo").join(fd.file_name()));
            usage.watches += info.map_or(0, |text| count_watches(&text));
        }
    }
    Some(usage)
}

/// Counts the folders under `roots` that the daemon would watch, stopping past `cap`.
fn count_folders(roots: &[PathBuf], exclude: Vec<PathBuf>, cap: u64) -> FolderNeed {
    let count = Arc::new(AtomicU64::new(0));
    let cancel = Arc::new(AtomicBool::new(false));
    let on_dir = {
        let (count, cancel) = (Arc::clone(&count), Arc::clone(&cancel));
        move |_: &Path| {
            if count.fetch_add(1, Ordering::Relaxed) + 1 > cap {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    };
    let opts = workflowdb::catalog::scan::WalkOptions {
        exclude,
        on_dir: Some(Arc::new(on_dir)),
        ..Default::default()
    };
    let progress = workflowdb::catalog::scan::ScanProgress::default();
    let mut problems = Vec::new();
    for root in roots {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        match workflowdb::catalog::scan::walk(root, &opts, &progress, &cancel) {
            Ok(_) | Err(workflowdb::catalog::ScanError::Cancelled) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() && count.load(Ordering::Relaxed) == 0 {
        return FolderNeed::Unknown(problems.join("; "));
    }
    FolderNeed::Walk {
        folders: count.load(Ordering::Relaxed),
        complete: !cancel.load(Ordering::Relaxed),
        roots: roots.to_vec(),
    }
}

/// A max_user_watches comfortably above `need` watches: at least twice the need, above the
/// `current` limit by the need, never under 524288, rounded up to a multiple of 65536.
pub fn recommended_watches(need: u64, current: u64) -> u64 {
    need.saturating_mul(2)
        .max(current.saturating_add(need))
        .max(524_288)
        .div_ceil(65_536)
        .saturating_mul(65_536)
}

fn sysctl_fixes(key: &str, value: u64) -> [String; 2] {
    [
        format!("raise it now: `sudo sysctl fs.inotify.{key}={value}`"),
        format!(
            "keep it across reboots: `echo fs.inotify.{key}={value} | sudo tee {SYSCTL_DROP_IN}`"
        ),
    ]
}

/// Judges the inotify limits against what the daemon needs.
pub fn inotify_check(
    limits: Option<InotifyLimits>,
    usage: Option<InotifyUsage>,
    need: &FolderNeed,
) -> Check {
    let Some(limits) = limits else {
        return Check::new(
            "inotify",
            Level::Warn,
            format!("cannot read {INOTIFY_SYSCTL_DIR}: not Linux, or /proc is not mounted; the daemon will poll folders it cannot watch"),
        );
    };
    let max = limits.max_user_watches;
    let used = usage.map(|u| u.watches);
    let mut details = json!({
        "max_user_watches": max,
        "max_user_instances": limits.max_user_instances,
        "max_queued_events": limits.max_queued_events,
        "watches_in_use": used,
        "instances_in_use": usage.map(|u| u.instances),
    });
    let mut found = Findings::default();
    let all_well;
    match need {
        FolderNeed::Daemon { watched, polled } => {
            let others = used.map_or(0, |u| u.saturating_sub(*watched));
            let need_total = watched + polled + others;
            let target = recommended_watches(need_total, max);
            details["watched_dirs"] = json!(watched);
            details["polled_dirs"] = json!(polled);
            if *polled > 0 {
                let mut fixes = Vec::new();
                if need_total <= max {
                    fixes.push("the kernel's limit would do: the daemon probably runs with --max-watches (WFDB_MAX_WATCHES); raise or remove it and restart it".to_string());
                }
                fixes.extend(sysctl_fixes("max_user_watches", target));
                fixes.push("then restart the daemon so that it watches every folder".to_string());
                details["recommended_max_user_watches"] = json!(target);
                found.add(
                    Level::Warn,
                    format!(
                        "{polled} folder(s) are polled (changes there are seen late) because no inotify watch was left: {watched} watched, the limit is {max} per user{}",
                        if others > 0 { format!(" and your other programs hold {others}") } else { String::new() }
                    ),
                    &fixes,
                );
            } else if need_total.saturating_mul(10) > max.saturating_mul(9) {
                details["recommended_max_user_watches"] = json!(target);
                found.add(
                    Level::Warn,
                    format!("{need_total} of the {max} watches allowed per user are in use ({watched} by the daemon): new folders will soon be polled"),
                    &sysctl_fixes("max_user_watches", target),
                );
            }
            all_well = format!(
                "{watched} folders watched, none polled; {max} watches allowed per user{}",
                used.map(|u| format!(", {u} in use")).unwrap_or_default()
            );
        }
        FolderNeed::Walk {
            folders,
            complete,
            roots,
        } => {
            // The daemon also watches its cookie folder.
            let need_now = folders + 1;
            let in_use = used.unwrap_or(0);
            let free = max.saturating_sub(in_use);
            let target = recommended_watches(need_now + in_use, max);
            let where_ = roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let amount = if *complete {
                format!("{need_now}")
            } else {
                format!("more than {need_now}")
            };
            details["folders"] = json!(folders);
            details["complete"] = json!(complete);
            details["roots"] = json!(roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>());
            if need_now > free {
                details["recommended_max_user_watches"] = json!(target);
                found.add(
                    Level::Warn,
                    format!("the daemon would need {amount} watches for {where_}, but only {free} of the {max} allowed per user are free: it would poll the rest"),
                    &sysctl_fixes("max_user_watches", target),
                );
            } else if need_now.saturating_mul(10) > free.saturating_mul(9) {
                details["recommended_max_user_watches"] = json!(target);
                found.add(
                    Level::Warn,
                    format!("the daemon would need {amount} watches for {where_}: close to the {free} free of {max}"),
                    &sysctl_fixes("max_user_watches", target),
                );
            }
            all_well =
                format!("{amount} folders to watch under {where_}; {free} of {max} watches free");
        }
        FolderNeed::Unknown(why) => {
            all_well = format!(
                "{max} watches allowed per user{}; folders to watch unknown: {why}",
                used.map(|u| format!(", {u} in use")).unwrap_or_default()
            );
        }
    }
    // A daemon that is not running yet needs an inotify instance of its own.
    if let (Some(u), FolderNeed::Walk { .. }) = (usage, need) {
        if u.instances >= limits.max_user_instances {
            let target = (u.instances * 2).max(1024);
            found.add(
                Level::Warn,
                format!(
                    "all {} inotify instances allowed per user are in use: a new daemon could not watch at all",
                    limits.max_user_instances
                ),
                &sysctl_fixes("max_user_instances", target),
            );
        }
    }
    found.into_check("inotify", all_well).with_details(details)
}

/// The configuration file: read and valid, absent (defaults), or refused (and why).
pub fn config_check(file: &Result<Option<PathBuf>, String>) -> Check {
    match file {
        Ok(Some(path)) => Check::new(
            "config",
            Level::Ok,
            format!("{} is valid", path.display()),
        ),
        Ok(None) => Check::new(
            "config",
            Level::Ok,
            "no configuration file: flags, WFDB_* variables and defaults apply",
        ),
        Err(why) => Check::new("config", Level::Fail, why.clone())
            .fix("correct the file (the message names the line and key), then check it with `wfdb config show`; the daemon refuses to start with it")
            .fix("the checks below use the settings without the file"),
    }
}

// ---------------------------------------------------------------------------------------
// Running the checks

/// Runs every check, prints them, and fails (exit 1) when one failed.
pub async fn run(
    args: DoctorArgs,
    socket: &Path,
    default_db: PathBuf,
    config_file: Result<Option<PathBuf>, String>,
    shared_socket: bool,
    out: &Output,
) -> anyhow::Result<()> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let facts = socket_facts(socket, shared_socket);
    let reach = probe(socket).await;
    let stats = match &reach {
        Reach::Serving(Ok(stats)) => Some(&**stats),
        _ => None,
    };
    let mut checks = vec![
        config_check(&config_file),
        socket_check(socket, &facts, uid),
        daemon_check(socket, &reach, facts.systemd_socket),
        version_check(stats.map(|s| s.version.as_str())),
    ];
    let db_dir = args.db.clone().unwrap_or(default_db);
    if args.ack_damage {
        let n = acknowledge_damage(stats.is_some(), socket, &db_dir).await?;
        if out.json {
            out.json_line(&json!({"acknowledged": n}));
        } else {
            out.text(&format!("acknowledged {n} damage report(s)"));
        }
    }
    let (db, need) = match stats {
        Some(s) => (
            DbFacts::Daemon {
                path: s.database.clone(),
                instance_id: s.instance_id.clone(),
                schema: s.schema_version,
                roots: s.roots.len(),
                files: s.roots.iter().map(|r| r.files).sum(),
            },
            FolderNeed::Daemon {
                watched: s.watched_dirs,
                polled: s.polled_dirs,
            },
        ),
        None => {
            let db = tokio::task::spawn_blocking({
                let dir = db_dir.clone();
                move || inspect_database(&dir)
            })
            .await?;
            let roots = walk_roots(&args.paths, &db)?;
            let limits = read_limits();
            // Past a few times the limit, the exact count no longer changes the advice.
            let cap = limits.map_or(1_000_000, |l| l.max_user_watches.saturating_mul(4));
            let exclude = vec![db_dir.clone(), socket.to_path_buf()];
            let need =
                tokio::task::spawn_blocking(move || count_folders(&roots, exclude, cap)).await?;
            (db, need)
        }
    };
    checks.push(database_check(&db));
    let integrity = match stats {
        Some(_) => verify_through_daemon(socket).await,
        None => match &db {
            DbFacts::Inspected(..) => {
                let dir = db_dir.clone();
                tokio::task::spawn_blocking(move || verify_offline(&dir)).await?
            }
            DbFacts::Absent(_) => IntegrityFacts::Skipped("no database yet".into()),
            _ => IntegrityFacts::Skipped("the database could not be opened (above)".into()),
        },
    };
    checks.push(integrity_check(&integrity));
    let (limits, usage) =
        tokio::task::spawn_blocking(move || (read_limits(), read_usage(uid))).await?;
    checks.push(inotify_check(limits, usage, &need));
    print(out, socket, &checks);
    let failed = checks.iter().filter(|c| c.level == Level::Fail).count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} checks failed; the fixes are listed above",
            checks.len()
        );
    }
    Ok(())
}

/// The folders to walk for the inotify estimate: those given, else the database's roots,
/// else the current folder.
fn walk_roots(given: &[PathBuf], db: &DbFacts) -> anyhow::Result<Vec<PathBuf>> {
    if !given.is_empty() {
        return given.iter().map(|p| Ok(std::path::absolute(p)?)).collect();
    }
    if let DbFacts::Inspected(_, info) = db {
        if !info.roots.is_empty() {
            return Ok(info
                .roots
                .iter()
                .map(|r| PathBuf::from(std::ffi::OsStr::from_bytes(&r.path)))
                .collect());
        }
    }
    Ok(vec![std::env::current_dir()?])
}

fn print(out: &Output, socket: &Path, checks: &[Check]) {
    let count = |level: Level| checks.iter().filter(|c| c.level == level).count();
    if out.json {
        out.json_line(&json!({
            "ok": count(Level::Fail) == 0,
            "version": CLI_VERSION,
            "socket": socket.display().to_string(),
            "summary": {"ok": count(Level::Ok), "warn": count(Level::Warn),
                        "fail": count(Level::Fail), "skip": count(Level::Skip)},
            "checks": checks.iter().map(Check::json).collect::<Vec<_>>(),
        }));
        return;
    }
    out.text(&render(checks, terminal_width()));
    out.text(&format!(
        "\n{} ok, {} warning(s), {} failure(s){}",
        count(Level::Ok),
        count(Level::Warn),
        count(Level::Fail),
        match count(Level::Skip) {
            0 => String::new(),
            n => format!(", {n} skipped"),
        }
    ));
}

/// The checks as text: a mark, the check's name and its finding, the fixes indented below;
/// long lines are wrapped to `width` under their own indentation.
pub fn render(checks: &[Check], width: Option<usize>) -> String {
    const NAME: usize = 9;
    const INDENT: usize = NAME + 3;
    let room = width.map(|w| w.saturating_sub(INDENT)).filter(|&r| r >= 20);
    let mut lines = Vec::new();
    for c in checks {
        let parts = match room {
            Some(room) => wrap(&c.finding, room),
            None => vec![c.finding.clone()],
        };
        for (n, part) in parts.iter().enumerate() {
            if n == 0 {
                lines.push(format!("{} {:<NAME$} {part}", c.level.mark(), c.name));
            } else {
                lines.push(format!("{}{part}", " ".repeat(INDENT)));
            }
        }
        // Fixes are commands to copy: one line each, whatever the terminal does with it.
        for fix in &c.fixes {
            lines.push(format!("{}→ {fix}", " ".repeat(INDENT)));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: SocketKind, dir_mode: u32) -> SocketFacts {
        SocketFacts {
            kind,
            folder: Some((PathBuf::from("/run/user/1000/wfdb"), dir_mode, 1000)),
            systemd_socket: false,
            shared: false,
        }
    }

    fn socket(mode: u32, uid: u32) -> SocketKind {
        SocketKind::Socket { mode, uid }
    }

    const SOCK: &str = "/run/user/1000/wfdb/wfdb.sock";

    #[test]
    fn a_private_socket_in_a_private_folder_is_ok() {
        let c = socket_check(Path::new(SOCK), &facts(socket(0o600, 1000), 0o700), 1000);
        assert_eq!(c.level, Level::Ok, "{c:?}");
        assert!(c.fixes.is_empty());
        assert_eq!(c.details["mode"], "0600");
    }

    #[test]
    fn a_socket_others_can_write_fails_and_names_chmod() {
        let c = socket_check(Path::new(SOCK), &facts(socket(0o666, 1000), 0o700), 1000);
        assert_eq!(c.level, Level::Fail, "{c:?}");
        assert!(c.finding.contains("0666"), "{}", c.finding);
        assert!(
            c.fixes[0].contains(&format!("chmod 600 {SOCK}")),
            "{:?}",
            c.fixes
        );
        let c = socket_check(Path::new(SOCK), &facts(socket(0o620, 1000), 0o700), 1000);
        assert_eq!(c.level, Level::Fail, "group write: {c:?}");
        // Unless access.local_users grants other users scopes: the daemon makes it 0666.
        let shared = SocketFacts {
            shared: true,
            ..facts(socket(0o666, 1000), 0o755)
        };
        let c = socket_check(Path::new(SOCK), &shared, 1000);
        assert_eq!(c.level, Level::Ok, "{c:?}");
    }

    #[test]
    fn readable_bits_alone_warn() {
        let c = socket_check(Path::new(SOCK), &facts(socket(0o644, 1000), 0o700), 1000);
        assert_eq!(c.level, Level::Warn, "{c:?}");
        assert!(c.fixes[0].contains("chmod 600"));
        // 0400 and 0200 are stricter than 0600: fine.
        let c = socket_check(Path::new(SOCK), &facts(socket(0o200, 1000), 0o700), 1000);
        assert_eq!(c.level, Level::Ok, "{c:?}");
    }

    #[test]
    fn someone_elses_socket_warns_unless_you_are_root() {
        let c = socket_check(Path::new(SOCK), &facts(socket(0o600, 1001), 0o700), 1000);
        assert_eq!(c.level, Level::Warn, "{c:?}");
        assert!(c.finding.contains("uid 1001"), "{}", c.finding);
        let c = socket_check(Path::new(SOCK), &facts(socket(0o600, 1001), 0o700), 0);
        assert_eq!(c.level, Level::Ok, "{c:?}");
    }

    #[test]
    fn a_folder_others_can_write_fails_even_when_sticky() {
        for mode in [0o777, 0o1777, 0o770] {
            let c = socket_check(Path::new(SOCK), &facts(socket(0o600, 1000), mode), 1000);
            assert_eq!(c.level, Level::Fail, "{mode:o}: {c:?}");
            assert!(c
                .fixes
                .iter()
                .any(|f| f.contains("chmod go-w /run/user/1000/wfdb")));
        }
        // Several problems: the worst decides, every fix is listed once.
        let c = socket_check(Path::new(SOCK), &facts(socket(0o666, 1000), 0o1777), 1000);
        assert_eq!(c.level, Level::Fail);
        assert_eq!(c.fixes.len(), 3, "{:?}", c.fixes);
    }

    #[test]
    fn missing_or_wrong_kind_of_socket_fails_with_how_to_start() {
        let c = socket_check(Path::new(SOCK), &facts(SocketKind::Missing, 0o700), 1000);
        assert_eq!(c.level, Level::Fail);
        assert!(
            c.finding.contains(&format!("no socket at {SOCK}")),
            "{}",
            c.finding
        );
        let named = |c: &Check, what: &str| c.fixes.iter().any(|f| f.contains(what));
        assert!(named(&c, "WFDB_SOCKET=PATH"), "{:?}", c.fixes);
        // How to start the daemon is the daemon check's to say.
        let c = daemon_check(Path::new(SOCK), &Reach::Missing, false);
        assert!(named(&c, "wfdb serve"), "{:?}", c.fixes);
        assert!(named(&c, "systemctl start wfdb"), "{:?}", c.fixes);
        let mut f = facts(SocketKind::Missing, 0o700);
        f.systemd_socket = true;
        let c = socket_check(Path::new(SOCK), &f, 1000);
        assert!(c
            .fixes
            .iter()
            .any(|f| f.contains("WFDB_SOCKET=/run/wfdb/wfdb.sock")));
        let c = socket_check(Path::new(SOCK), &facts(SocketKind::NotSocket, 0o700), 1000);
        assert_eq!(c.level, Level::Fail);
        assert!(c.fixes[0].contains(&format!("rm {SOCK}")));
    }

    #[test]
    fn daemon_outcomes() {
        let sock = Path::new(SOCK);
        let stats = proto::StatsResponse {
            version: "9.9.9".into(),
            uptime_ms: 300_000,
            ..Default::default()
        };
        let c = daemon_check(sock, &Reach::Serving(Ok(Box::new(stats))), false);
        assert_eq!(c.level, Level::Ok);
        assert!(c.finding.contains("up 5 min"), "{}", c.finding);
        let c = daemon_check(sock, &Reach::Refused, false);
        assert_eq!(c.level, Level::Fail);
        assert!(c.finding.contains("nobody listens"), "{}", c.finding);
        assert!(c.fixes[0].contains("stale socket"));
        for reach in [
            Reach::Missing,
            Reach::Denied,
            Reach::TimedOut,
            Reach::NotServing("NOT_SERVING".into()),
        ] {
            let c = daemon_check(sock, &reach, false);
            assert_eq!(c.level, Level::Fail, "{reach:?}");
            assert!(!c.fixes.is_empty(), "{reach:?}");
        }
        let c = daemon_check(sock, &Reach::Serving(Err("boom".into())), false);
        assert_eq!(c.level, Level::Warn);
    }

    #[test]
    fn version_skew_warns_and_unknown_skips() {
        assert_eq!(version_check(Some(CLI_VERSION)).level, Level::Ok);
        let c = version_check(Some("0.0.1-old"));
        assert_eq!(c.level, Level::Warn);
        assert!(c.finding.contains("0.0.1-old") && c.finding.contains(CLI_VERSION));
        assert_eq!(version_check(None).level, Level::Skip);
    }

    #[test]
    fn database_outcomes() {
        let ours = u32::from(workflowdb::store::codec::SCHEMA_VERSION);
        let daemon = |schema| DbFacts::Daemon {
            path: "/db".into(),
            instance_id: "abc".into(),
            schema,
            roots: 1,
            files: 10,
        };
        assert_eq!(database_check(&daemon(ours)).level, Level::Ok);
        assert_eq!(database_check(&daemon(ours + 1)).level, Level::Warn);
        let c = database_check(&DbFacts::Absent("/nowhere/db".into()));
        assert_eq!(c.level, Level::Ok);
        assert!(c.finding.contains("no database yet"), "{}", c.finding);
        let c = database_check(&DbFacts::Failed(
            "/db".into(),
            StoreError::UnknownSchema {
                path: "/db".into(),
                found: 42,
                expected: ours,
            },
        ));
        assert_eq!(c.level, Level::Fail);
        assert!(c.finding.contains("schema 42"), "{}", c.finding);
        let c = database_check(&DbFacts::Failed(
            "/db".into(),
            StoreError::Locked("/db".into()),
        ));
        assert_eq!(c.level, Level::Warn);
        let c = database_check(&DbFacts::Failed(
            "/db".into(),
            StoreError::Corrupt {
                path: "/db".into(),
                detail: "bad page".into(),
            },
        ));
        assert_eq!(c.level, Level::Fail);
        assert!(c.fixes[0].contains("wfdb export --db /db"), "{:?}", c.fixes);
        assert!(c.fixes[1].contains("damaged-*"), "{:?}", c.fixes);
        // A read-only folder is not damage: never the advice to move it aside.
        let c = database_check(&DbFacts::Failed(
            "/db".into(),
            StoreError::NotWritable {
                path: "/db".into(),
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            },
        ));
        assert_eq!(c.level, Level::Fail);
        assert!(c.finding.contains("nothing is damaged"), "{}", c.finding);
        assert!(c.fixes.iter().any(|f| f.contains("do not move it aside")));
    }

    #[test]
    fn integrity_fails_on_damage_now_or_unacknowledged() {
        let checked = |findings: Vec<String>, damage: Vec<proto::DamageReport>| {
            integrity_check(&IntegrityFacts::Checked {
                by_daemon: false,
                findings,
                damage,
                entries: 10,
                elapsed_ms: 1,
            })
        };
        let c = checked(vec![], vec![]);
        assert_eq!(c.level, Level::Ok);
        let c = checked(vec!["root went back from clock 11 to 2".into()], vec![]);
        assert_eq!(c.level, Level::Fail);
        assert!(c.finding.contains("went back"), "{}", c.finding);
        assert!(c.fixes.iter().any(|f| f.contains("wfdb export --db")));
        let report = proto::DamageReport {
            findings: vec!["the durable record is missing".into()],
            registry: "intact".into(),
            ..Default::default()
        };
        let c = checked(vec![], vec![report]);
        assert_eq!(c.level, Level::Fail);
        assert!(c.finding.contains("not yet acknowledged"), "{}", c.finding);
        assert!(c.fixes[0].contains("--ack-damage"));
        let c = integrity_check(&IntegrityFacts::Skipped("no database yet".into()));
        assert_eq!(c.level, Level::Skip);
    }

    const LIMITS: InotifyLimits = InotifyLimits {
        max_user_watches: 8192,
        max_user_instances: 128,
        max_queued_events: 16384,
    };

    #[test]
    fn recommended_watches_is_comfortably_above_need_and_limit() {
        assert_eq!(recommended_watches(10, 8192), 524_288);
        assert_eq!(recommended_watches(1_000_000, 8192), 2_031_616);
        let r = recommended_watches(600_000, 1_048_576);
        assert!(r >= 1_648_576 && r % 65_536 == 0, "{r}");
        for (need, current) in [(1, 1), (70_000, 65_536), (3_000_000, 524_288)] {
            let r = recommended_watches(need, current);
            assert!(
                r >= 2 * need && r > current && r % 65_536 == 0,
                "{need} {current} {r}"
            );
        }
    }

    #[test]
    fn polled_folders_warn_with_the_exact_sysctl_line() {
        let need = FolderNeed::Daemon {
            watched: 8000,
            polled: 2000,
        };
        let usage = InotifyUsage {
            instances: 3,
            watches: 8100,
        };
        let c = inotify_check(Some(LIMITS), Some(usage), &need);
        assert_eq!(c.level, Level::Warn, "{c:?}");
        assert!(
            c.finding.contains("2000 folder(s) are polled"),
            "{}",
            c.finding
        );
        assert!(
            c.finding.contains("other programs hold 100"),
            "{}",
            c.finding
        );
        assert_eq!(
            c.fixes[0],
            "raise it now: `sudo sysctl fs.inotify.max_user_watches=524288`"
        );
        assert!(
            c.fixes[1].contains("/etc/sysctl.d/90-wfdb.conf"),
            "{:?}",
            c.fixes
        );
        assert_eq!(c.details["recommended_max_user_watches"], 524_288);
    }

    #[test]
    fn polling_under_the_kernel_limit_points_at_max_watches() {
        let need = FolderNeed::Daemon {
            watched: 10,
            polled: 5,
        };
        let c = inotify_check(Some(LIMITS), None, &need);
        assert_eq!(c.level, Level::Warn);
        assert!(c.fixes[0].contains("--max-watches"), "{:?}", c.fixes);
    }

    #[test]
    fn enough_watches_is_ok_and_near_the_limit_warns() {
        let need = FolderNeed::Daemon {
            watched: 100,
            polled: 0,
        };
        let c = inotify_check(
            Some(LIMITS),
            Some(InotifyUsage {
                instances: 1,
                watches: 100,
            }),
            &need,
        );
        assert_eq!(c.level, Level::Ok, "{c:?}");
        assert!(
            c.finding.contains("100 folders watched, none polled"),
            "{}",
            c.finding
        );
        let c = inotify_check(
            Some(LIMITS),
            Some(InotifyUsage {
                instances: 9,
                watches: 8000,
            }),
            &need,
        );
        assert_eq!(c.level, Level::Warn, "{c:?}");
    }

    #[test]
    fn a_walk_larger_than_the_free_watches_warns() {
        let need = FolderNeed::Walk {
            folders: 9000,
            complete: true,
            roots: vec![PathBuf::from("/src/big")],
        };
        let c = inotify_check(Some(LIMITS), Some(InotifyUsage::default()), &need);
        assert_eq!(c.level, Level::Warn, "{c:?}");
        assert!(
            c.finding.contains("9001 watches for /src/big"),
            "{}",
            c.finding
        );
        let need = FolderNeed::Walk {
            folders: 40,
            complete: true,
            roots: vec![PathBuf::from("/src/small")],
        };
        let c = inotify_check(Some(LIMITS), Some(InotifyUsage::default()), &need);
        assert_eq!(c.level, Level::Ok, "{c:?}");
        // Watches held by other programs count against the same limit.
        let busy = InotifyUsage {
            instances: 5,
            watches: 8180,
        };
        assert_eq!(
            inotify_check(Some(LIMITS), Some(busy), &need).level,
            Level::Warn
        );
        // No instance left for a new daemon.
        let full = InotifyUsage {
            instances: 128,
            watches: 0,
        };
        let c = inotify_check(Some(LIMITS), Some(full), &need);
        assert_eq!(c.level, Level::Warn);
        assert!(
            c.fixes[0].contains("max_user_instances=1024"),
            "{:?}",
            c.fixes
        );
    }

    #[test]
    fn unreadable_limits_warn() {
        let c = inotify_check(None, None, &FolderNeed::Unknown("x".into()));
        assert_eq!(c.level, Level::Warn);
    }

    #[test]
    fn fdinfo_watches_are_counted() {
        let text = "pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n\
                    inotify wd:2 ino:1a2b sdev:800001 mask:fce ignored_mask:0 fhandle-bytes:8\n\
                    inotify wd:1 ino:2 sdev:800001 mask:fce ignored_mask:0 fhandle-bytes:8\n";
        assert_eq!(count_watches(text), 2);
        assert_eq!(count_watches("pos:\t0\n"), 0);
    }

    #[test]
    fn our_own_inotify_instance_is_seen_in_proc() {
        let Some(before) = read_usage(unsafe { libc::getuid() }) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        use notify::Watcher;
        let mut w = notify::recommended_watcher(|_| {}).unwrap();
        w.watch(dir.path(), notify::RecursiveMode::NonRecursive)
            .unwrap();
        let after = read_usage(unsafe { libc::getuid() }).unwrap();
        assert!(after.instances > before.instances, "{before:?} {after:?}");
        assert!(after.watches > before.watches, "{before:?} {after:?}");
    }

    #[test]
    fn folders_are_counted_as_the_daemon_would_watch_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["a/b", "a/c", "ignored/deep", "e"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join(".gitignore"), "ignored/\n").unwrap();
        let need = count_folders(&[root.to_path_buf()], Vec::new(), 1000);
        // The root, a, a/b, a/c, e: not ignored/ nor what is under it.
        assert_eq!(
            need,
            FolderNeed::Walk {
                folders: 5,
                complete: true,
                roots: vec![root.to_path_buf()]
            }
        );
        match count_folders(&[root.to_path_buf()], Vec::new(), 2) {
            FolderNeed::Walk {
                complete, folders, ..
            } => {
                assert!(!complete && folders > 2, "{folders}");
            }
            other => panic!("{other:?}"),
        }
        let missing = count_folders(&[root.join("nope")], Vec::new(), 10);
        assert!(matches!(missing, FolderNeed::Unknown(_)), "{missing:?}");
    }

    #[test]
    fn render_puts_fixes_under_their_check_and_wraps() {
        let checks = vec![
            Check::new("socket", Level::Ok, "fine"),
            Check::new(
                "inotify",
                Level::Warn,
                "polled folders ".repeat(8).trim_end(),
            )
            .fix("raise it now: `sudo sysctl fs.inotify.max_user_watches=524288`"),
        ];
        let text = render(&checks, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "✓ socket    fine");
        assert!(lines[1].starts_with("! inotify   polled"));
        assert_eq!(
            lines[2],
            "            → raise it now: `sudo sysctl fs.inotify.max_user_watches=524288`"
        );
        let narrow = render(&checks, Some(50));
        let lines: Vec<&str> = narrow.lines().collect();
        assert!(lines.len() > 3, "{narrow}");
        // The finding wraps under itself; the fix stays whole.
        for line in &lines[..lines.len() - 1] {
            assert!(line.chars().count() <= 50, "{line}");
        }
        assert!(
            lines[2].starts_with("            folders polled"),
            "{narrow}"
        );
        assert_eq!(lines.last(), text.lines().last().as_ref());
    }
}
