//! Settings on the command line: the `serve` flags, `wfdb config show`, and the socket a client
//! connects to.

use std::path::{Path, PathBuf};

use serde_json::json;

use workflowdb::config::{self, Environment, Flags, Settings, KEYS};

use super::output::Output;

/// The daemon's settings as flags. Each can also come from a `WFDB_*` variable or the
/// configuration file (`wfdb config show` lists keys, variables and where each value came from).
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Folders to watch, added to those watched before (default: the current folder). [env: WFDB_ROOTS, ':'-separated] [config: roots]
    pub paths: Vec<PathBuf>,
    /// Database folder [default: $STATE_DIRECTORY/db, else $XDG_STATE_HOME/wfdb/db, else ~/.local/state/wfdb/db] [env: WFDB_DB] [config: db]
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Also serve on TCP at HOST:PORT (requires --token-file). [env: WFDB_LISTEN] [config: listen]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// File whose first line is the bearer token TCP clients must send (mode 0600). [env: WFDB_TOKEN_FILE] [config: token_file]
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default; no authentication: use a loopback address such as 127.0.0.1:9187). [env: WFDB_METRICS] [config: metrics]
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Extra gitignore-style glob to leave out of the catalog (repeatable, or comma-separated). [env: WFDB_IGNORE] [config: ignore]
    #[arg(long = "ignore", value_name = "GLOB")]
    pub ignore: Vec<String>,
    /// Bound of the database page cache, in MiB [default: 64] [env: WFDB_CACHE_MB] [config: cache_mb]
    #[arg(long, value_name = "MIB")]
    pub cache_mb: Option<String>,
    /// How long a synced query waits for the watcher before DEADLINE_EXCEEDED [default: 10s] [env: WFDB_SYNC_TIMEOUT] [config: sync_timeout]
    #[arg(long, value_name = "DURATION")]
    pub sync_timeout: Option<String>,
    /// Most inotify watches to use (0: as many as the kernel allows); folders beyond are polled [default: 0] [env: WFDB_MAX_WATCHES] [config: watch.max_watches]
    #[arg(long, value_name = "N")]
    pub max_watches: Option<String>,
    /// Time between reconciles of folders that could not be watched [default: 2s] [env: WFDB_POLL_INTERVAL] [config: watch.poll_interval]
    #[arg(long, value_name = "DURATION")]
    pub poll_interval: Option<String>,
    /// Quiet time after the last event before a batch is applied [default: 10ms] [env: WFDB_SETTLE] [config: watch.settle]
    #[arg(long, value_name = "DURATION")]
    pub settle: Option<String>,
    /// Longest a batch waits after its first event [default: 100ms] [env: WFDB_MAX_BATCH_DELAY] [config: watch.max_batch_delay]
    #[arg(long, value_name = "DURATION")]
    pub max_batch_delay: Option<String>,
    /// Root-relative C/C++ include folder for dependency resolution (repeatable). [env: WFDB_C_INCLUDE] [config: deps.c_include_paths]
    #[arg(long = "c-include", value_name = "DIR")]
    pub c_include: Vec<String>,
    /// How long deletions are remembered for `changes --since` ("forever" keeps them) [default: 30d] [env: WFDB_TOMBSTONE_RETENTION] [config: retention.tombstones]
    #[arg(long, value_name = "DURATION")]
    pub tombstone_retention: Option<String>,
    /// How long an open run may show no progress before it is expired ("forever" keeps it open) [default: 1d] [env: WFDB_RUN_EXPIRY] [config: retention.open_runs]
    #[arg(long, value_name = "DURATION")]
    pub run_expiry: Option<String>,
    /// Log format [default: auto: the journal under systemd, else human] [env: WFDB_LOG_FORMAT] [config: log.format]
    #[arg(long, value_parser = ["auto", "human", "json", "journald"])]
    pub log_format: Option<String>,
    /// Which log lines to write, in RUST_LOG syntax [default: info] [env: WFDB_LOG, RUST_LOG] [config: log.filter]
    #[arg(long, value_name = "FILTER")]
    pub log_filter: Option<String>,
}

impl ServeArgs {
    /// The flags that were given, as settings.
    fn flags(
        &self,
        socket: Option<&Path>,
        env: &Environment,
    ) -> Result<Flags, config::ConfigError> {
        let mut f = Flags::default();
        f.paths("roots", &self.paths, env)?;
        f.paths("db", self.db.as_slice(), env)?;
        f.paths("socket", socket.map(Path::to_path_buf).as_slice(), env)?;
        f.paths("token_file", self.token_file.as_slice(), env)?;
        let texts = [
            ("listen", &self.listen),
            ("metrics", &self.metrics),
            ("cache_mb", &self.cache_mb),
            ("sync_timeout", &self.sync_timeout),
            ("watch.max_watches", &self.max_watches),
            ("watch.poll_interval", &self.poll_interval),
            ("watch.settle", &self.settle),
            ("watch.max_batch_delay", &self.max_batch_delay),
            ("retention.tombstones", &self.tombstone_retention),
            ("retention.open_runs", &self.run_expiry),
            ("log.format", &self.log_format),
            ("log.filter", &self.log_filter),
        ];
        for (key, value) in texts {
            if let Some(v) = value {
                f.text(key, v, env)?;
            }
        }
        for (key, list) in [
            ("ignore", &self.ignore),
            ("deps.c_include_paths", &self.c_include),
        ] {
            if !list.is_empty() {
                f.text(key, &list.join(","), env)?;
            }
        }
        Ok(f)
    }
}

/// The effective settings for these flags.
pub fn settings(
    args: &ServeArgs,
    socket: Option<&Path>,
    config_file: Option<&Path>,
) -> anyhow::Result<Settings> {
    let env = Environment::from_process();
    let flags = args.flags(socket, &env)?;
    Ok(config::load(&flags, config_file, &env)?)
}

/// Settings for `wfdb doctor`: the effective ones, or when the configuration is refused, the
/// ones without the file, with the reason (doctor reports it as a failed check and goes on).
pub fn settings_or_defaults(
    socket: Option<&Path>,
    config_file: Option<&Path>,
) -> anyhow::Result<(Settings, Result<Option<PathBuf>, String>)> {
    let env = Environment::from_process();
    let flags = ServeArgs::default().flags(socket, &env)?;
    match config::load(&flags, config_file, &env) {
        Ok(s) => {
            let file = s.config_file.clone();
            Ok((s, Ok(file)))
        }
        Err(e) => Ok((Settings::resolve(&flags, &env, None)?, Err(e.to_string()))),
    }
}

/// The socket a client connects to: `--socket`, `WFDB_SOCKET`, the file's `socket`, the default.
pub fn client_socket(socket: Option<&Path>, config_file: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    Ok(settings(&ServeArgs::default(), None, config_file)?.socket)
}

/// `wfdb config show`: every setting, its value and where it came from.
pub fn show(settings: &Settings, out: &Output) {
    if out.json {
        for e in &settings.entries {
            out.json_line(&json!({
                "key": e.key.name,
                "value": e.value.to_json(),
                "source": e.origin.to_string(),
                "flag": e.key.flag,
                "env": e.key.env,
            }));
        }
        return;
    }
    match &settings.config_file {
        Some(p) => out.text(&format!("configuration file: {}", p.display())),
        None => out.text(
            "configuration file: none (write one at $XDG_CONFIG_HOME/wfdb/config.toml, or name one with --config)",
        ),
    }
    let width = KEYS.iter().map(|k| k.name.len()).max().unwrap_or(0);
    let values: Vec<String> = settings.entries.iter().map(|e| e.value.render()).collect();
    let vwidth = values
        .iter()
        .map(|v| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for (e, v) in settings.entries.iter().zip(values) {
        out.text(&format!("{:width$}  {v:vwidth$}  {}", e.key.name, e.origin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_serve_flag_names_a_setting() {
        let all = |v: &str| Some(v.to_string());
        let args = ServeArgs {
            paths: vec!["r".into()],
            db: Some("db".into()),
            listen: all("127.0.0.1:1"),
            token_file: Some("t".into()),
            metrics: all("127.0.0.1:2"),
            ignore: vec!["*.log".into()],
            cache_mb: all("8"),
            sync_timeout: all("1s"),
            max_watches: all("5"),
            poll_interval: all("1s"),
            settle: all("5ms"),
            max_batch_delay: all("50ms"),
            c_include: vec!["inc".into()],
            tombstone_retention: all("1d"),
            run_expiry: all("2h"),
            log_format: all("json"),
            log_filter: all("debug"),
        };
        let env = Environment::new("/srv/code", [("HOME", "/home/u")]);
        let s = Settings::resolve(
            &args.flags(Some(Path::new("s.sock")), &env).unwrap(),
            &env,
            None,
        )
        .unwrap();
        // Every setting but the file-only ones has a flag, and every flag given above lands on its own setting.
        for e in s.entries.iter().filter(|e| !e.key.is_file_only()) {
            assert_eq!(e.origin, config::Origin::Flag(e.key.flag), "{}", e.key.name);
        }
        // ... and on its own typed field.
        use std::time::Duration;
        assert_eq!(s.roots, vec![PathBuf::from("/srv/code/r")]);
        assert_eq!(s.db, PathBuf::from("/srv/code/db"));
        assert_eq!(s.socket, PathBuf::from("/srv/code/s.sock"));
        assert_eq!(s.listen, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(s.token_file, Some(PathBuf::from("/srv/code/t")));
        assert_eq!(s.metrics, Some("127.0.0.1:2".parse().unwrap()));
        assert_eq!(s.ignore, vec!["*.log"]);
        assert_eq!(s.cache_mb, 8);
        assert_eq!(s.sync_timeout, Duration::from_secs(1));
        assert_eq!(s.max_watches, 5);
        assert_eq!(s.poll_interval, Duration::from_secs(1));
        assert_eq!(s.settle, Duration::from_millis(5));
        assert_eq!(s.max_batch_delay, Duration::from_millis(50));
        assert_eq!(s.c_include_paths, vec!["inc"]);
        assert_eq!(s.tombstone_retention, Some(Duration::from_secs(86_400)));
        assert_eq!(s.run_expiry, Some(Duration::from_secs(7_200)));
        assert_eq!(s.log_format, config::LogFormat::Json);
        assert_eq!(s.log_filter, "debug");
    }
}
