//! `wfdb export --db DIR FILE`: the way out when the daemon cannot start. Reads a copy of the
//! database folder (sled takes a lock and writes while opening, and a damaged or read-only
//! original must stay as it is), removes from the copy what cannot be read, and writes the
//! same export document as the daemon's `Export`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::output::{human_bytes, Output};
use workflowdb::store::{Store, StoreError};

/// A temporary copy of the database, removed when dropped.
struct Copy(PathBuf);

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Why the daemon may not be able to start on `dir`, when it is not damage.
fn access_problem(dir: &Path) -> Option<String> {
    for name in ["db", "conf"] {
        let file = dir.join(name);
        if !file.exists() {
            continue;
        }
        if let Err(e) = std::fs::OpenOptions::new().append(true).open(&file) {
            return Some(format!(
                "{} cannot be written ({e}): read-only or owned by another user; nothing is damaged by that, but the daemon cannot start on it",
                file.display()
            ));
        }
    }
    None
}

/// Runs `wfdb export --db DIR FILE` (`-` writes to standard output).
pub fn export_offline(dir: &Path, file: &Path, out: &Output) -> anyhow::Result<()> {
    match std::fs::metadata(dir.join("db")) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot read {} ({e}): run as the daemon's user (or root)",
            dir.display()
        ),
        _ => {}
    }
    if !dir.join("db").is_file() {
        bail!(
            "there is no database at {} (a database folder holds a file named `db`): nothing to export",
            dir.display()
        );
    }
    if Store::is_locked(dir) {
        bail!(
            "{} is in use by a running wfdb daemon: export through it with `wfdb export FILE` (pass --socket if it is not the default one)",
            dir.display()
        );
    }
    let access = access_problem(dir);
    let copy = Copy(std::env::temp_dir().join(format!(
        "wfdb-rescue-{}-{}",
        std::process::id(),
        workflowdb::catalog::scan::now_ns()
    )));
    let copied = Store::copy_folder(dir, &copy.0).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => anyhow::anyhow!(
            "the disk holding {} is full: no room to copy the database to read it; set TMPDIR to a folder with room",
            copy.0.display()
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => anyhow::anyhow!(
            "cannot read {} ({e}): run as the daemon's user (or root)",
            dir.display()
        ),
        _ => anyhow::anyhow!("cannot copy {} to read it: {e}", dir.display()),
    })?;
    let opened = Store::open_rescue_copy(&copy.0);
    let (store, check, dropped) = match opened {
        Ok(x) => x,
        Err(StoreError::Corrupt { detail, .. }) => bail!(
            "{} is damaged beyond what sled can open ({detail}): nothing can be exported from it. Moving it aside and restarting rebuilds the catalog from disk (cheap), but agents, workflows, runs and sessions are lost unless an earlier export exists",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let roots: Vec<Arc<workflowdb::daemon::Root>> = store
        .roots()?
        .into_iter()
        .map(|entry| {
            use std::os::unix::ffi::OsStrExt;
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(&entry.path));
            Ok(Arc::new(workflowdb::daemon::Root::new(
                entry.id.clone(),
                path,
                store.root(&entry.id)?,
            )))
        })
        .collect::<Result<_, StoreError>>()?;
    let reg = store.registry()?;
    let doc = workflowdb::rpc::transfer::export_document_of(&roots, &reg)
        .map_err(|e| anyhow::anyhow!("reading the copy of {}: {e}", dir.display()))?;
    drop(roots);
    drop(reg);
    drop(store);
    drop(copy);
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    let count = |key: &str| match &doc[key] {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    let findings: Vec<String> = check.findings.iter().map(ToString::to_string).collect();
    let summary = json!({
        "database": dir.display().to_string(),
        "database_bytes": copied,
        "agents": count("agents"),
        "workflows": count("workflows"),
        "older_workflow_versions": count("workflow_versions"),
        "runs": count("runs"),
        "sessions": count("sessions"),
        "older_session_versions": count("session_versions"),
        "files": count("files"),
        "findings": findings,
        "unreadable_removed": dropped,
        "access": access,
    });
    if file.as_os_str() == "-" {
        // The document is the output; the summary goes to standard error.
        use std::io::Write;
        std::io::stdout().lock().write_all(&bytes)?;
        eprintln!("{}", summary_text(&summary));
        return Ok(());
    }
    let tmp = file.with_extension("tmp-export");
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                anyhow::anyhow!("cannot write {}: the disk is full", file.display())
            }
            _ => anyhow::anyhow!("cannot write {}: {e}", file.display()),
        })?;
    if out.json {
        let mut v = summary;
        v["file"] = json!(file.display().to_string());
        v["bytes"] = json!(bytes.len());
        out.json_line(&v);
    } else {
        out.text(&format!(
            "exported {} to {} from the database on disk ({} read from a copy)",
            human_bytes(bytes.len() as u64),
            file.display(),
            human_bytes(copied)
        ));
        out.text(&summary_text(&summary));
    }
    Ok(())
}

/// What was saved and what a rebuild costs, in words.
fn summary_text(s: &Value) -> String {
    let mut lines = vec![format!(
        "saved: {} agent(s), {} workflow(s) (+{} older versions), {} run(s), {} session(s) (+{} older versions), {} catalogued file(s)",
        s["agents"],
        s["workflows"],
        s["older_workflow_versions"],
        s["runs"],
        s["sessions"],
        s["older_session_versions"],
        s["files"]
    )];
    if let Some(a) = s["access"].as_str() {
        lines.push(format!("note: {a}"));
    }
    let findings = s["findings"].as_array().cloned().unwrap_or_default();
    if findings.is_empty() {
        lines.push("the database reads back whole and matches its durable record".into());
    } else {
        lines.push("the database is damaged or rolled back:".into());
        for f in findings {
            lines.push(format!("  - {}", f.as_str().unwrap_or_default()));
        }
    }
    for d in s["unreadable_removed"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        lines.push(format!(
            "  unreadable, left out: {}",
            d.as_str().unwrap_or_default()
        ));
    }
    lines.push(
        "a rebuild (folder moved aside, daemon started) costs: the catalog is rebuilt from disk (cheap: one hash of every file); agents, workflows, runs and sessions come back only with `wfdb import` of this export".into(),
    );
    lines.join("\n")
}
