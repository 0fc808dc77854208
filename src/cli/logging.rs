//! The daemon's log: human lines on a terminal, JSON lines on request, native journal entries
//! under systemd.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use workflowdb::config::LogFormat;

/// Installs the global subscriber; `filter` was checked when the settings were read.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match format {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Human,
        other => other,
    };
    let layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(journal) => journal.with_syslog_identifier("wfdb".into()).boxed(),
            Err(e) => {
                // No journal socket (not under systemd after all): keep logging, say why.
                eprintln!("wfdb: cannot reach the journal ({e}); logging to standard error");
                human().boxed()
            }
        },
        LogFormat::Human | LogFormat::Auto => human().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

fn human() -> impl Layer<tracing_subscriber::Registry> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
}

/// systemd connects standard error to the journal and says so in `JOURNAL_STREAM`
/// (`device:inode` of that stream); checking both avoids trusting an inherited variable.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = var.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    meta.dev() == dev && meta.ino() == ino
}
