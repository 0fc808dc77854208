//! The command line: argument parsing, the `serve` verb, and client verbs over gRPC.

mod catalog;
mod fsmonitor;
mod graph;
mod output;
mod registry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use workflowdb::client::{connect_unix, ConnectError};

/// Exit codes scripts can rely on.
pub mod exit {
    /// The command failed (the message says why).
    pub const FAILURE: u8 = 1;
    /// The daemon is not running or not reachable.
    pub const UNREACHABLE: u8 = 3;
    /// The thing asked for does not exist.
    pub const NOT_FOUND: u8 = 4;
    /// The request was refused as invalid.
    pub const INVALID: u8 = 5;
}

/// workflowdb: an always-current catalog of your repositories, served over gRPC.
#[derive(Parser, Debug)]
#[command(name = "wfdb", version, about, long_about = None)]
pub struct Cli {
    /// The daemon's Unix socket [default: $RUNTIME_DIRECTORY/wfdb.sock, else $XDG_RUNTIME_DIR/wfdb/wfdb.sock]
    #[arg(long, global = true, env = "WFDB_SOCKET")]
    socket: Option<PathBuf>,
    /// Print JSON (one object per line for lists) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: catalog PATHs (default: the current folder) and serve gRPC.
    Serve(ServeArgs),
    /// Show per-root counts, the last scan's figures and the clock.
    Status {
        /// Root path or id (default: every root).
        #[arg(long)]
        root: Option<String>,
    },
    /// List catalogued files.
    Files(catalog::FilesArgs),
    /// Show one file's record.
    File {
        /// Root-relative path.
        path: String,
        #[arg(long)]
        root: Option<String>,
    },
    /// List groups of files with identical content.
    Duplicates {
        #[arg(long)]
        root: Option<String>,
        /// Ignore files smaller than this many bytes.
        #[arg(long, default_value_t = 1)]
        min_size: u64,
        /// At most this many groups (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u64,
    },
    /// Ask the daemon to reconcile a root with the disk now.
    Scan {
        /// Root path or id (default: the only root).
        root: Option<String>,
    },
    /// Start watching a folder (persists across restarts).
    Watch { path: PathBuf },
    /// Stop watching a root.
    Unwatch {
        /// Root path or id.
        root: String,
        /// Keep the root's records in the database.
        #[arg(long)]
        keep_records: bool,
    },
    /// List watched roots.
    Roots,
    /// A file's dependencies (or, with --reverse, its dependents).
    Deps {
        path: String,
        #[arg(long)]
        reverse: bool,
        /// How many hops.
        #[arg(long, default_value_t = 1)]
        depth: u32,
        #[arg(long)]
        root: Option<String>,
    },
    /// Files related to a file: its dependencies and dependents within --depth, then its
    /// component's other files (the original get_related_files).
    Related {
        path: String,
        #[arg(long, default_value_t = 2)]
        depth: u32,
        #[arg(long)]
        root: Option<String>,
    },
    /// Files that depend, directly or not, on the given files or on everything changed since
    /// a clock, each with the chain that makes it so.
    Affected {
        paths: Vec<String>,
        #[arg(long)]
        since: Option<u64>,
        /// How many hops (0: unbounded).
        #[arg(long, default_value_t = 0)]
        depth: u32,
        #[arg(long)]
        root: Option<String>,
    },
    /// Dependency-graph queries and export.
    #[command(subcommand)]
    Graph(graph::GraphCommand),
    /// Print a root's current clock (after syncing with the watcher).
    Clock {
        #[arg(long)]
        root: Option<String>,
    },
    /// What changed after a clock; with --follow, stream changes as they are applied.
    Changes {
        #[arg(long)]
        root: Option<String>,
        /// A clock from `wfdb clock` (default: everything, or with --follow: from now).
        #[arg(long)]
        since: Option<u64>,
        /// The instance id the clock came from (a different one means the database was rebuilt).
        #[arg(long)]
        instance: Option<String>,
        /// Keep streaming change batches until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Answer git's fsmonitor hook (protocol version 2) from the daemon's clocks, so
    /// `git status` looks only at what changed.
    ///
    /// Set up once per repository (with a daemon watching it, or a folder above it):
    ///
    ///     git config core.fsmonitor 'wfdb fsmonitor-hook'
    ///     git config core.untrackedCache true
    ///
    /// git then runs `wfdb fsmonitor-hook 2 TOKEN` from the top of the worktree. The answer is
    /// a new token and every path changed since TOKEN (folders that came or went end with
    /// `/`), each followed by a NUL. When it cannot be exact (no daemon, no watched root
    /// holding the whole worktree, a token from another tool or another database) the answer
    /// is `/`: git then checks every file itself, as without the hook. Pass --socket in the
    /// config command if the daemon does not use the default socket.
    #[command(verbatim_doc_comment)]
    FsmonitorHook {
        /// The hook protocol version git asks for: only 2 is spoken (for anything else the hook
        /// exits 1 and git checks every file).
        version: String,
        /// The token git kept from the previous answer.
        #[arg(default_value = "", allow_hyphen_values = true)]
        token: String,
    },
    /// Agents: register, find, remove, metrics, leases.
    #[command(subcommand)]
    Agent(registry::AgentCmd),
    /// Workflow definitions, versions, defaults and readiness.
    #[command(subcommand)]
    Workflow(registry::WorkflowCmd),
    /// Runs of workflows: start, progress, finish, history.
    #[command(subcommand)]
    Run(registry::RunCmd),
    /// Versioned session memory: save, restore, history, retention.
    #[command(subcommand)]
    Session(registry::SessionCmd),
    /// The knowledge graph: neighbors, related nodes, paths, rebuild.
    #[command(subcommand)]
    Kg(registry::KgCmd),
    /// Write the whole database as JSON (`-` for standard output).
    Export { file: PathBuf },
    /// Import a JSON document written by `wfdb export` (all or nothing).
    Import {
        file: PathBuf,
        /// Only validate the document.
        #[arg(long)]
        dry_run: bool,
    },
    /// A report of roots, agents, workflows, sessions and the knowledge graph.
    Report {
        #[arg(long, value_enum, default_value = "text")]
        format: registry::ReportFormat,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Folders to watch, added to those watched before (default: the current folder).
    paths: Vec<PathBuf>,
    /// Database folder [default: $STATE_DIRECTORY/db, else $XDG_STATE_HOME/wfdb/db, else ~/.local/state/wfdb/db]
    #[arg(long, env = "WFDB_DB")]
    db: Option<PathBuf>,
    /// Also serve on TCP at HOST:PORT (requires --token-file).
    #[arg(long, env = "WFDB_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// File whose first line is the bearer token TCP clients must send (mode 0600).
    #[arg(long, env = "WFDB_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Extra gitignore-style glob to leave out of the catalog (repeatable).
    #[arg(
        long = "ignore",
        value_name = "GLOB",
        env = "WFDB_IGNORE",
        value_delimiter = ','
    )]
    ignore: Vec<String>,
    /// Bound of the database page cache, in MiB.
    #[arg(long, default_value_t = 64, env = "WFDB_CACHE_MB")]
    cache_mb: u64,
    /// Most inotify watches to use (0: as many as the kernel allows); folders beyond are polled.
    #[arg(long, default_value_t = 0, env = "WFDB_MAX_WATCHES")]
    max_watches: usize,
    /// Seconds between reconciles of folders that could not be watched.
    #[arg(long, default_value_t = 2.0, env = "WFDB_POLL_INTERVAL")]
    poll_interval: f64,
    /// Seconds a synced query waits for the watcher before failing with DEADLINE_EXCEEDED.
    #[arg(long, default_value_t = 10.0, env = "WFDB_SYNC_TIMEOUT")]
    sync_timeout: f64,
}

/// Runs one command and maps its outcome to an exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(workflowdb::config::default_socket_path);
    let outcome = match cli.command {
        Command::Serve(args) => serve(args, socket).await,
        Command::FsmonitorHook { version, token } => {
            return fsmonitor::run(&socket, &version, &token).await
        }
        other => client_command(other, &socket, cli.json).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("wfdb: {} ({:?})", status.message(), status.code()),
                None => eprintln!("wfdb: {e:#}"),
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ConnectError>().is_some() {
        return exit::UNREACHABLE;
    }
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        return match status.code() {
            tonic::Code::NotFound => exit::NOT_FOUND,
            tonic::Code::InvalidArgument => exit::INVALID,
            tonic::Code::Unavailable => exit::UNREACHABLE,
            _ => exit::FAILURE,
        };
    }
    exit::FAILURE
}

async fn serve(args: ServeArgs, socket: PathBuf) -> anyhow::Result<()> {
    init_logging();
    let roots = if args.paths.is_empty() {
        vec![std::env::current_dir()?]
    } else {
        args.paths
    };
    let opts = workflowdb::daemon::ServeOptions {
        roots,
        db: args.db.unwrap_or_else(workflowdb::config::default_db_dir),
        socket,
        listen: args.listen,
        token_file: args.token_file,
        ignore_globs: args.ignore,
        cache_bytes: args.cache_mb.saturating_mul(1024 * 1024),
        max_watches: args.max_watches,
        poll_interval: seconds(args.poll_interval, "--poll-interval")?,
        sync_timeout: seconds(args.sync_timeout, "--sync-timeout")?,
    };
    workflowdb::daemon::serve(opts).await?;
    Ok(())
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<std::time::Duration> {
    if !(value.is_finite() && value > 0.0 && value < 86_400.0) {
        anyhow::bail!("{flag} must be a number of seconds between 0 and 86400, got {value}");
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn client_command(cmd: Command, socket: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let channel = connect_unix(socket).await?;
    let out = output::Output::new(json);
    match cmd {
        Command::Serve(_) | Command::FsmonitorHook { .. } => {
            unreachable!("serve and fsmonitor-hook are handled before connecting")
        }
        Command::Status { root } => catalog::status(channel, root, &out).await,
        Command::Files(args) => catalog::files(channel, args, &out).await,
        Command::File { path, root } => catalog::file(channel, path, root, &out).await,
        Command::Duplicates {
            root,
            min_size,
            limit,
        } => catalog::duplicates(channel, root, min_size, limit, &out).await,
        Command::Scan { root } => catalog::scan(channel, root, &out).await,
        Command::Watch { path } => catalog::watch(channel, path, &out).await,
        Command::Unwatch { root, keep_records } => {
            catalog::unwatch(channel, root, keep_records, &out).await
        }
        Command::Roots => catalog::roots(channel, &out).await,
        Command::Clock { root } => catalog::clock(channel, root, &out).await,
        Command::Deps {
            path,
            reverse,
            depth,
            root,
        } => graph::deps(channel, path, reverse, depth, root, &out).await,
        Command::Related { path, depth, root } => {
            graph::related(channel, path, depth, root, &out).await
        }
        Command::Affected {
            paths,
            since,
            depth,
            root,
        } => graph::affected(channel, paths, since, depth, root, &out).await,
        Command::Graph(cmd) => graph::graph(channel, cmd, &out).await,
        Command::Changes {
            root,
            since,
            instance,
            follow,
        } => catalog::changes(channel, root, since, instance, follow, &out).await,
        Command::Agent(cmd) => registry::agent(channel, cmd, &out).await,
        Command::Workflow(cmd) => registry::workflow(channel, cmd, &out).await,
        Command::Run(cmd) => registry::run(channel, cmd, &out).await,
        Command::Session(cmd) => registry::session(channel, cmd, &out).await,
        Command::Kg(cmd) => registry::kg(channel, cmd, &out).await,
        Command::Export { file } => registry::export(channel, file, &out).await,
        Command::Import { file, dry_run } => registry::import(channel, file, dry_run, &out).await,
        Command::Report { format } => registry::report(channel, format, &out).await,
    }
}
