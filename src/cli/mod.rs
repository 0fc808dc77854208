//! The command line: argument parsing, the `serve` verb, and client verbs over gRPC.

mod catalog;
mod completions;
mod config;
mod doctor;
mod fsmonitor;
mod graph;
mod logging;
mod manual;
mod output;
mod registry;
mod rescue;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// `wfdb serve` stopped because its database must be opened anew (a write failure the
    /// store cannot recover from in-process): its supervisor should start it again.
    pub const RESTART: u8 = workflowdb::daemon::recovery::RESTART_EXIT_CODE;
}

/// workflowdb: an always-current catalog of your repositories, served over gRPC.
#[derive(Parser, Debug)]
#[command(name = "wfdb", version, about, long_about = None)]
pub struct Cli {
    /// The daemon's Unix socket [default: $RUNTIME_DIRECTORY/wfdb.sock, else $XDG_RUNTIME_DIR/wfdb/wfdb.sock] [env: WFDB_SOCKET] [config: socket]
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Configuration file [default: $XDG_CONFIG_HOME/wfdb/config.toml if present; /etc/wfdb/config.toml under systemd] [env: WFDB_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON (one object per line for lists) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: catalog PATHs (default: the current folder) and serve gRPC.
    Serve(config::ServeArgs),
    /// The effective configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
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
        /// Root-relative path (any bytes the system allows in a name).
        path: PathBuf,
        #[arg(long)]
        root: Option<String>,
        /// Answer at once, without proving earlier changes were applied or waiting for the
        /// dependency graph (its dependencies are then marked pending while it builds).
        #[arg(long)]
        unsynced: bool,
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
    /// Write the whole database as JSON (`-` for standard output). With --db, read the
    /// database folder itself (the daemon down): the way out when it cannot start.
    Export {
        file: PathBuf,
        /// Read this database folder instead of asking the daemon (it must not be running on
        /// it). A copy is read, so a damaged or read-only folder is left as it is.
        #[arg(long)]
        db: Option<PathBuf>,
    },
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
    /// Check inotify limits, the socket, the daemon, its version and database; say what to fix.
    #[command(long_about = doctor::ABOUT)]
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_long_help = completions::INSTALL)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual as a man page (roff), or write one page per verb into --dir.
    Man {
        /// Write wfdb.1 and wfdb-VERB.1 pages into this folder instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Print every setting, its value and where it came from (flag, environment variable,
    /// configuration file and line, or default). Takes the same flags as `serve`; fails like
    /// `serve` would on a bad setting, naming the file, line and key.
    Show(config::ServeArgs),
}

/// The command line, with the manual (description, examples, environment, files, exit
/// status) in `--help`.
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let manual = manual::help_text(&cmd);
    cmd.long_about(manual::DESCRIPTION)
        .after_help("Examples, environment, files and exit status: `wfdb --help`; as a man page: `wfdb man`.")
        .after_long_help(manual)
}

/// Parses the process's arguments; bad usage prints why and exits with status 2.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs one command and maps its outcome to an exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let socket = cli.socket.as_deref();
    let config_file = cli.config.as_deref();
    let out = output::Output::new(cli.json);
    let outcome = match cli.command {
        Command::Serve(args) => serve(args, socket, config_file).await,
        Command::Config(ConfigCmd::Show(args)) => {
            config::settings(&args, socket, config_file).map(|s| config::show(&s, &out))
        }
        Command::Completions { shell } => {
            completions::write(shell, &mut command(), &mut std::io::stdout().lock())
                .map_err(Into::into)
        }
        Command::Man { dir } => man(dir, &out),
        Command::FsmonitorHook { version, token } => {
            match config::client_socket(socket, config_file) {
                Ok(socket) => return fsmonitor::run(&socket, &version, &token).await,
                Err(e) => Err(e),
            }
        }
        Command::Export { file, db: Some(db) } => {
            let out = output::Output::new(cli.json);
            rescue::export_offline(&db, &file, &out)
        }
        Command::Doctor(args) => match config::settings_or_defaults(socket, config_file) {
            Ok((s, file)) => {
                let shared = s.local_users.iter().any(|g| !g.scopes.is_empty());
                doctor::run(args, &s.socket, s.db, file, shared, &out).await
            }
            Err(e) => Err(e),
        },
        other => match config::client_socket(socket, config_file) {
            Ok(socket) => client_command(other, &socket, cli.json).await,
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            let status = e.downcast_ref::<tonic::Status>();
            let message = match status {
                Some(status) => format!("{} ({:?})", status.message(), status.code()),
                None => format!("{e:#}"),
            };
            if cli.json {
                let mut v = serde_json::json!({"error": message, "exit_code": code});
                if let Some(status) = status {
                    v["grpc_code"] = serde_json::json!(format!("{:?}", status.code()));
                }
                eprintln!("{v}");
            } else {
                eprintln!("wfdb: {message}");
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(workflowdb::daemon::DaemonError::StoreRestart(_)) = e.downcast_ref() {
        return exit::RESTART;
    }
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
    // Local causes: a file named on the command line that is missing, or not JSON.
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::NotFound {
                return exit::NOT_FOUND;
            }
        }
        if cause.downcast_ref::<serde_json::Error>().is_some() {
            return exit::INVALID;
        }
    }
    exit::FAILURE
}

/// `wfdb man`: the man page on standard output, or every page written into `dir`.
fn man(dir: Option<PathBuf>, out: &output::Output) -> anyhow::Result<()> {
    let cmd = command();
    let Some(dir) = dir else {
        let mut stdout = std::io::stdout().lock();
        manual::write_man_page(&cmd, &mut stdout)?;
        return Ok(());
    };
    let written = manual::write_man_pages(&cmd, &dir)?;
    if out.json {
        out.json_line(&serde_json::json!({"dir": dir.display().to_string(), "pages": written}));
    } else {
        out.text(&format!(
            "wrote {} pages to {} (view one: man -l {})",
            written.len(),
            dir.display(),
            dir.join("wfdb.1").display()
        ));
    }
    Ok(())
}

async fn serve(
    args: config::ServeArgs,
    socket: Option<&std::path::Path>,
    config_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let settings = config::settings(&args, socket, config_file)?;
    logging::init(settings.log_format, &settings.log_filter);
    if let Some(file) = &settings.config_file {
        tracing::info!(file = %file.display(), "configuration file read");
    }
    let opts = workflowdb::daemon::ServeOptions {
        roots: settings.roots,
        db: settings.db,
        socket: settings.socket,
        listen: settings.listen,
        token_file: settings.token_file,
        ignore_globs: settings.ignore,
        cache_bytes: settings.cache_mb.saturating_mul(1024 * 1024),
        max_watches: usize::try_from(settings.max_watches).unwrap_or(usize::MAX),
        poll_interval: settings.poll_interval,
        sync_timeout: settings.sync_timeout,
        settle: settings.settle,
        max_batch_delay: settings.max_batch_delay,
        c_include_paths: settings.c_include_paths,
        tombstone_retention: settings.tombstone_retention,
        run_expiry: settings.run_expiry,
        metrics: settings.metrics,
        tokens: settings.tokens,
        local_users: settings.local_users,
        watch_roots: settings.watch_roots,
    };
    workflowdb::daemon::serve(opts, Box::new(workflowdb::rpc::GrpcFrontend)).await?;
    Ok(())
}

async fn client_command(cmd: Command, socket: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let channel = connect_unix(socket).await?;
    let out = output::Output::new(json);
    match cmd {
        Command::Serve(_)
        | Command::Config(_)
        | Command::Doctor(_)
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::FsmonitorHook { .. } => {
            unreachable!("handled before connecting")
        }
        Command::Status { root } => catalog::status(channel, root, &out).await,
        Command::Files(args) => catalog::files(channel, args, &out).await,
        Command::File {
            path,
            root,
            unsynced,
        } => catalog::file(channel, path, root, unsynced, &out).await,
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
        Command::Export { file, .. } => registry::export(channel, file, &out).await,
        Command::Import { file, dry_run } => registry::import(channel, file, dry_run, &out).await,
        Command::Report { format } => registry::report(channel, format, &out).await,
    }
}
