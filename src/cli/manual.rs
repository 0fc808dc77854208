//! The manual: the description, examples, environment, files and exit status shown by
//! `wfdb --help` and written as a man page by `wfdb man`.

use std::io::Write;
use std::path::Path;

use roff::{bold, roman, Roff};

use super::exit;
use super::output::wrap;

/// What `wfdb` is, as the top of `--help` and the man page's DESCRIPTION.
pub const DESCRIPTION: &str = "\
wfdb keeps an always-current catalog of one or more folders and a workflow
database beside it, and serves both over gRPC. For every file it records the
path, language, purpose, a one-line description, component, size, mtime,
SHA-256 and resolved imports; the workflow database holds agents, workflows and
their runs, versioned sessions and a knowledge graph.

`wfdb serve` runs the daemon: it walks the folders, watches them with inotify
and applies each change within milliseconds; a restart re-hashes only what
changed while it was down. Every other verb is a client of that daemon over its
Unix socket. Queries are synced: before answering, the daemon proves that every
change made before the query has been applied.

Tables are fitted to the terminal's width (long paths lose their middle); when
standard output is not a terminal, every value is printed in full. With --json,
lists print one JSON object per line and single results one object; errors then
go to standard error as one JSON object too.";

/// One entry of a manual section: a term (a command line, a variable, a path, a code) and
/// what it means.
struct Entry {
    term: String,
    text: String,
}

/// A section of the manual below the options: EXAMPLES, ENVIRONMENT, FILES, EXIT STATUS.
struct Section {
    title: &'static str,
    entries: Vec<Entry>,
}

fn item(term: impl Into<String>, text: impl Into<String>) -> Entry {
    Entry {
        term: term.into(),
        text: text.into(),
    }
}

/// The sections after the options. ENVIRONMENT lists every variable an option of `cmd` reads,
/// so a new option with `env = …` is documented without touching this file.
fn sections(cmd: &clap::Command) -> Vec<Section> {
    vec![
        Section {
            title: "EXAMPLES",
            entries: examples(),
        },
        Section {
            title: "ENVIRONMENT",
            entries: environment(cmd),
        },
        Section {
            title: "FILES",
            entries: files(),
        },
        Section {
            title: "EXIT STATUS",
            entries: exit_status(),
        },
    ]
}

fn examples() -> Vec<Entry> {
    [
        ("wfdb serve ~/src/app ~/src/lib", "Run the daemon on two folders (they are kept across restarts)."),
        ("wfdb status", "Files, bytes, types and purposes per root, the last scan, the clock, watched and polled folders."),
        ("wfdb files --type rust --purpose source", "List Rust source files."),
        ("wfdb --json files --glob 'src/**/*.py' | jq -r .path", "The paths of Python files under src/, for a script."),
        ("wfdb file src/main.rs", "One file's record."),
        ("c=$(wfdb clock); make; wfdb changes --since \"$c\"", "What a build changed."),
        ("wfdb deps src/util.py --reverse --depth 3", "What depends on a file, up to three hops away."),
        ("wfdb graph export --format dot | dot -Tsvg > deps.svg", "Draw the dependency graph."),
        ("wfdb doctor", "Check inotify limits, the socket, the daemon and its database, and say what to fix."),
        ("wfdb completions bash > ~/.local/share/bash-completion/completions/wfdb", "Install bash completions (see `wfdb completions --help` for zsh and fish)."),
        ("wfdb man > wfdb.1", "Write this manual as a man page (`wfdb man --dir DIR` writes one page per verb too)."),
    ]
    .into_iter()
    .map(|(c, t)| item(c, t))
    .collect()
}

fn environment(cmd: &clap::Command) -> Vec<Entry> {
    let mut seen = std::collections::BTreeMap::new();
    collect_env(cmd, &mut Vec::new(), &mut seen);
    let mut entries: Vec<Entry> = seen
        .into_iter()
        .map(|(name, (help, verbs))| {
            let used_by = if verbs.is_empty() {
                String::new()
            } else {
                format!(", read by wfdb {}", verbs.join(" and wfdb "))
            };
            item(name, format!("{help}{used_by}"))
        })
        .collect();
    // The daemon's settings read their variables themselves (flags > variables > file).
    for key in workflowdb::config::KEYS {
        for var in key.env {
            seen_setting(&mut entries, var, key);
        }
    }
    entries.extend([
        item("WFDB_CONFIG", "The configuration file to read (as --config)."),
        item("STATE_DIRECTORY, RUNTIME_DIRECTORY", "Set by systemd (StateDirectory=, RuntimeDirectory=): the database and the socket go there."),
        item("XDG_STATE_HOME, XDG_RUNTIME_DIR", "Otherwise the database goes under $XDG_STATE_HOME/wfdb and the socket under $XDG_RUNTIME_DIR/wfdb."),
        item("NOTIFY_SOCKET, WATCHDOG_USEC", "Set by systemd for a Type=notify service: readiness, status and watchdog messages."),
        item("COLUMNS", "The width tables are fitted to when the terminal does not say."),
    ]);
    entries
}

fn seen_setting(entries: &mut Vec<Entry>, var: &str, key: &workflowdb::config::Key) {
    if entries.iter().any(|e| e.term == var) {
        return;
    }
    let flag = if key.flag.starts_with("--") {
        format!("{}, ", key.flag)
    } else {
        String::new()
    };
    entries.push(item(
        var,
        format!(
            "{} ({flag}config key {}), read by wfdb serve.",
            key.about, key.name
        ),
    ));
}

/// Every variable an option reads, with its help and the verbs that have it (none: global).
fn collect_env(
    cmd: &clap::Command,
    path: &mut Vec<String>,
    seen: &mut std::collections::BTreeMap<String, (String, Vec<String>)>,
) {
    for arg in cmd.get_arguments() {
        let Some(name) = arg.get_env() else { continue };
        let name = name.to_string_lossy().into_owned();
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let flag = arg
            .get_long()
            .map(|l| format!(" (--{l})"))
            .unwrap_or_default();
        let entry = seen
            .entry(name)
            .or_insert_with(|| (format!("{help}{flag}"), Vec::new()));
        if !path.is_empty() && !arg.is_global_set() {
            entry.1.push(path.join(" "));
        }
    }
    for sub in cmd.get_subcommands() {
        path.push(sub.get_name().to_string());
        collect_env(sub, path, seen);
        path.pop();
    }
}

fn files() -> Vec<Entry> {
    vec![
        item(
            "~/.local/state/wfdb/db",
            "The database, one per daemon: $STATE_DIRECTORY/db under systemd, else \
             $XDG_STATE_HOME/wfdb/db, else this (--db or WFDB_DB chooses another). Inside it, \
             sled's files (db, conf, snap.*), wfdb-durable (what reached disk at the last \
             flush, compared at every start to detect damage and rollback), wfdb-damage.json \
             (damage reports until `wfdb doctor --ack-damage`) and damaged-*/ (files sled \
             could not open, set aside). Beside it, db.cookies/ holds the cookie files of \
             synced queries.",
        ),
        item(
            "$XDG_RUNTIME_DIR/wfdb/wfdb.sock",
            "The daemon's Unix socket, mode 0600: $RUNTIME_DIRECTORY/wfdb.sock under systemd \
             (the unit's is /run/wfdb/wfdb.sock), else this, else /tmp/wfdb-UID/wfdb.sock \
             (--socket or WFDB_SOCKET chooses another).",
        ),
        item(
            "~/.config/wfdb/config.toml, /etc/wfdb/config.toml",
            "The configuration file: --config or WFDB_CONFIG, else $XDG_CONFIG_HOME/wfdb/config.toml \
             if present, else /etc/wfdb/config.toml under systemd. `wfdb config show` prints \
             every setting and where it came from.",
        ),
        item(
            "/etc/systemd/system/wfdb.service, /etc/wfdb/wfdb.env",
            "The systemd unit and its settings (WFDB_ROOTS and the variables above), installed \
             from systemd/ in the source.",
        ),
        item(
            ".gitignore, .ignore, .git/info/exclude",
            "What is not catalogued, read in every folder of a root as git and ripgrep do \
             (.ignore wins over .gitignore). .git/ itself is never catalogued.",
        ),
        item(
            "/proc/sys/fs/inotify/max_user_watches",
            "How many folders one user's programs may watch; past it, folders are polled. \
             `wfdb doctor` compares it with what the daemon needs.",
        ),
    ]
}

fn exit_status() -> Vec<Entry> {
    vec![
        item(
            "0",
            "Success. `wfdb doctor`: no check failed (warnings alone exit 0).",
        ),
        item(
            exit::FAILURE.to_string(),
            "Failure: the message on standard error says why. `wfdb doctor`: a check failed.",
        ),
        item(
            "2",
            "Bad usage: an unknown verb or option, or a missing or malformed argument.",
        ),
        item(
            exit::UNREACHABLE.to_string(),
            "The daemon is not running, not reachable, or not ready yet (it answered \
             UNAVAILABLE): retrying later may succeed.",
        ),
        item(
            exit::NOT_FOUND.to_string(),
            "What was asked for does not exist: a file, root, agent, workflow, run or \
             session, or a local file named on the command line.",
        ),
        item(
            exit::INVALID.to_string(),
            "The request was refused as invalid: a path with `..` or outside the root, a \
             bad glob, an ambiguous root, a document that is not valid JSON.",
        ),
        item(
            exit::RESTART.to_string(),
            "`wfdb serve` only: the database failed a write (a full disk, say), the folder \
             takes writes again, but the store cannot recover without being opened anew. \
             Start it again (systemd's `Restart=on-failure` does).",
        ),
    ]
}

/// Width of the manual's text in `--help`, like a man page on an 80-column terminal.
const HELP_WIDTH: usize = 80;
/// Indentation of an entry's text under its term.
const HELP_INDENT: usize = 10;

/// The manual's sections as plain text, for the end of `wfdb --help`.
pub fn help_text(cmd: &clap::Command) -> String {
    let mut out = String::new();
    for section in sections(cmd) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("{}:\n", title_case(section.title)));
        for Entry { term, text } in &section.entries {
            out.push_str(&format!("  {term}\n"));
            for line in wrap(text, HELP_WIDTH - HELP_INDENT) {
                out.push_str(&format!("{}{line}\n", " ".repeat(HELP_INDENT)));
            }
        }
    }
    out.trim_end().to_string()
}

fn title_case(title: &str) -> String {
    let lower = title.to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Writes the man page of `cmd` (section 1): clap's NAME, SYNOPSIS, DESCRIPTION, OPTIONS and
/// COMMANDS, then the manual's own sections, then VERSION.
pub fn write_man_page(cmd: &clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).manual("workflowdb manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::new();
    for section in sections(cmd) {
        roff.control("SH", [section.title]);
        for Entry { term, text } in section.entries {
            roff.control("TP", [])
                .text([bold(term)])
                .text([roman(text)]);
        }
    }
    roff.to_writer(w)?;
    man.render_version_section(w)
}

/// Writes `wfdb.1` (the page above) and one page per verb (`wfdb-files.1`, …) into `dir`.
pub fn write_man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_verb_pages(&cmd, dir, &mut written)?;
    let top = dir.join(format!("{}.1", cmd.get_name()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&top)?);
    write_man_page(&cmd, &mut file)?;
    file.flush()?;
    written.push(top.display().to_string());
    Ok(written)
}

fn write_verb_pages(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<String>,
) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_verb_pages(sub, dir, written)?;
        let page = clap_mangen::Man::new(sub.clone()).manual("workflowdb manual");
        written.push(page.generate_to(dir)?.display().to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        super::super::command()
    }

    #[test]
    fn help_has_every_section_and_every_exit_code() {
        let text = help_text(&command());
        for heading in ["Examples:", "Environment:", "Files:", "Exit status:"] {
            assert!(text.contains(heading), "{heading} missing:\n{text}");
        }
        for code in [
            0,
            exit::FAILURE,
            2,
            exit::UNREACHABLE,
            exit::NOT_FOUND,
            exit::INVALID,
            exit::RESTART,
        ] {
            assert!(
                text.contains(&format!("\n  {code}\n")),
                "exit code {code} missing:\n{text}"
            );
        }
    }

    #[test]
    fn environment_lists_every_variable_an_option_reads() {
        let cmd = command();
        let text = help_text(&cmd);
        let mut names = Vec::new();
        fn walk(cmd: &clap::Command, names: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    names.push(env.to_string_lossy().into_owned());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, names);
            }
        }
        walk(&cmd, &mut names);
        for key in workflowdb::config::KEYS {
            names.extend(key.env.iter().map(|v| v.to_string()));
        }
        assert!(names.contains(&"WFDB_SOCKET".to_string()), "{names:?}");
        assert!(names.contains(&"WFDB_DB".to_string()), "{names:?}");
        for name in names {
            assert!(text.contains(&format!("\n  {name}\n")), "{name}:\n{text}");
        }
        let flowing = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flowing.contains("(--cache-mb, config key cache_mb), read by wfdb serve"),
            "{text}"
        );
        assert!(
            text.lines().all(|l| l.chars().count() <= HELP_WIDTH),
            "{text}"
        );
    }

    #[test]
    fn the_man_page_renders_with_every_verb() {
        let cmd = command();
        let mut page = Vec::new();
        write_man_page(&cmd, &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("\n.TH wfdb 1 "), "{}", &page[..200]);
        for heading in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH EXAMPLES",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH \"EXIT STATUS\"",
        ] {
            assert!(page.contains(heading), "{heading} missing");
        }
        let verbs: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
        assert!(verbs.len() > 20, "{verbs:?}");
        for verb in verbs {
            assert!(
                page.contains(&format!("wfdb\\-{}(1)", verb.replace('-', "\\-"))),
                "{verb} missing"
            );
        }
    }

    #[test]
    fn man_pages_are_written_per_verb() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = command();
        let written = write_man_pages(&cmd, dir.path()).unwrap();
        assert!(dir.path().join("wfdb.1").is_file());
        for verb in cmd.get_subcommands().map(|s| s.get_name()) {
            let page = dir.path().join(format!("wfdb-{verb}.1"));
            assert!(
                page.is_file(),
                "{} missing; wrote {written:?}",
                page.display()
            );
        }
        assert!(dir.path().join("wfdb-graph-export.1").is_file());
        let top = std::fs::read_to_string(dir.path().join("wfdb.1")).unwrap();
        assert!(
            top.contains(".SH EXAMPLES"),
            "the top page is the full manual"
        );
    }
}
