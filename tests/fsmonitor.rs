//! `wfdb fsmonitor-hook` as git's fsmonitor, in the style of git's t7527: a real repository, a
//! scripted series of edits, and after each step `git status` with the hook must equal
//! `git status` of a plain full scan, also right after a daemon restart.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// Whether `git` can be run at all (the tests skip, saying so, when it cannot).
fn git_available() -> bool {
    Command::new("git")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How the hook was used by one `git status`, read from git's trace2 events.
#[derive(Debug, PartialEq, Eq)]
enum HookUse {
    /// The hook answered a list of paths: git trusted it.
    Exact,
    /// The hook answered `/`: git checked everything.
    Everything,
    /// The hook failed (git checked everything).
    Failed,
    /// git did not run the hook.
    NotRun,
}

/// A git repository in a temporary folder, isolated from the machine's git configuration.
struct Repo {
    worktree: PathBuf,
    scratch: PathBuf,
    home: PathBuf,
    runs: std::cell::Cell<u32>,
    /// `--untracked-files=all` or `--untracked-files=normal`.
    untracked: &'static str,
}

impl Repo {
    fn new(tmp: &Path, untracked: &'static str) -> Repo {
        let repo = Repo {
            worktree: tmp.join("repo"),
            scratch: tmp.join("scratch"),
            home: tmp.join("home"),
            runs: std::cell::Cell::new(0),
            untracked,
        };
        for d in [&repo.worktree, &repo.scratch, &repo.home] {
            std::fs::create_dir_all(d).unwrap();
        }
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Test"]);
        repo.git(&["config", "user.email", "test@example.com"]);
        // git keeps one untracked cache, for the mode configured here; a run in another mode
        // bypasses it. Matching them makes every run below use (and test) the cache.
        let mode = untracked.trim_start_matches("--untracked-files=");
        repo.git(&["config", "status.showUntrackedFiles", mode]);
        repo
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.worktree)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_CONFIG_GLOBAL",
            "GIT_TRACE2_EVENT",
            "GIT_TRACE2",
            "GIT_TRACE",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs git, asserting success; returns its standard output.
    fn run(&self, mut cmd: Command, args: &[&str]) -> String {
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn git(&self, args: &[&str]) -> String {
        self.run(self.cmd(), args)
    }

    /// `git status` with the configured fsmonitor, and how the hook was used.
    fn status_with_hook(&self, untracked: &str) -> (String, HookUse) {
        let n = self.runs.get();
        self.runs.set(n + 1);
        let trace = self.scratch.join(format!("trace-{n}.json"));
        let mut cmd = self.cmd();
        cmd.env("GIT_TRACE2_EVENT", &trace);
        let status = self.run(cmd, &["status", "--porcelain=v1", untracked]);
        let events = std::fs::read_to_string(&trace).unwrap_or_default();
        let has =
            |key: &str| events.contains(&format!("\"category\":\"fsm_hook\",\"key\":\"{key}\""));
        let used = if has("query/failed") {
            HookUse::Failed
        } else if has("query/trivial-response") {
            HookUse::Everything
        } else if has("query/response-length") {
            HookUse::Exact
        } else {
            HookUse::NotRun
        };
        (status, used)
    }

    /// `git status` of a plain full scan: no fsmonitor, no untracked cache, on a copy of the
    /// index (so the hook's token in the real index is left alone).
    fn status_plain(&self, untracked: &str) -> String {
        let index = self.scratch.join("index-plain");
        std::fs::copy(self.worktree.join(".git/index"), &index).unwrap();
        let mut cmd = self.cmd();
        cmd.env("GIT_INDEX_FILE", &index);
        self.run(
            cmd,
            &[
                "-c",
                "core.fsmonitor=false",
                "-c",
                "core.untrackedCache=false",
                "status",
                "--porcelain=v1",
                untracked,
            ],
        )
    }

    /// After a step: the status with the hook equals the plain one. Returns how the hook was
    /// used. (One series keeps one untracked mode: git bypasses or resets its untracked cache
    /// when the mode differs from the configured one, which would hide a stale cache.)
    fn check(&self, step: &str) -> HookUse {
        let (with_hook, used) = self.status_with_hook(self.untracked);
        let plain = self.status_plain(self.untracked);
        assert_eq!(
            with_hook, plain,
            "step {step:?} ({}): git status with the hook differs from a full scan",
            self.untracked
        );
        used
    }

    fn write(&self, rel: &str, content: &str) {
        let path = self.worktree.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.worktree.join(rel)
    }
}

/// Runs the hook binary directly in the worktree: the token and the paths it answered.
fn hook(repo: &Repo, socket: &Path, token: &str) -> (String, Vec<Vec<u8>>) {
    let out = Command::new(wfdb_bin())
        .current_dir(&repo.worktree)
        .arg("--socket")
        .arg(socket)
        .args(["fsmonitor-hook", "2", token])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hook failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut parts = out.stdout.split(|b| *b == 0);
    let token = String::from_utf8(parts.next().unwrap_or_default().to_vec()).unwrap();
    assert!(
        out.stdout.ends_with(b"\0"),
        "the answer must end with a NUL"
    );
    let paths: Vec<Vec<u8>> = parts
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    (token, paths)
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// One scripted change to the worktree.
type Step = Box<dyn Fn(&Repo)>;

/// The scripted series: every step compared with a full scan, a daemon restart in the middle.
async fn series(untracked_cache: bool, untracked: &'static str) {
    if !git_available() {
        eprintln!("skipping: git is not installed");
        return;
    }
    let dirs = Dirs::new();
    let repo = Repo::new(dirs.tmp.path(), untracked);
    repo.git(&[
        "config",
        "core.untrackedCache",
        if untracked_cache { "true" } else { "false" },
    ]);
    repo.write("a.txt", "alpha\n");
    repo.write("b.txt", "beta\n");
    repo.write("dir/c.txt", "gamma\n");
    repo.write("dir/sub/d.txt", "delta\n");
    repo.write("keep/e.txt", "epsilon\n");
    repo.write("keep/deeper/f.txt", "zeta\n");
    repo.write("script.sh", "#!/bin/sh\necho hi\n");
    repo.write(".gitignore", "*.log\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "initial"]);

    let d = start(&dirs, &[repo.worktree.as_os_str()]).await;
    let hook_cmd = format!(
        "{} --socket {} fsmonitor-hook",
        shell_quote(&wfdb_bin()),
        shell_quote(&d.socket)
    );
    repo.git(&["config", "core.fsmonitor", &hook_cmd]);

    // The first run has no token of ours: the hook answers `/` and git checks everything.
    assert_eq!(repo.check("first run"), HookUse::Everything);
    // From then on the hook's answers are trusted.
    assert_eq!(repo.check("nothing changed"), HookUse::Exact);
    // git really skipped the files: unchanged entries are marked fsmonitor-valid (lowercase).
    let tags = repo.git(&["ls-files", "-f"]);
    assert!(
        tags.lines().any(|l| l == "h a.txt"),
        "a.txt is not fsmonitor-valid:\n{tags}"
    );

    let steps: Vec<(&str, Step)> = vec![
        (
            "modify a tracked file",
            Box::new(|r| r.write("a.txt", "alpha two\n")),
        ),
        (
            "add an untracked file",
            Box::new(|r| r.write("new.txt", "new\n")),
        ),
        ("git add it", Box::new(|r| drop(r.git(&["add", "new.txt"])))),
        (
            "an ignored file appears",
            Box::new(|r| r.write("debug.log", "noise\n")),
        ),
        (
            "delete a tracked file",
            Box::new(|r| std::fs::remove_file(r.path("b.txt")).unwrap()),
        ),
        (
            "rename a file",
            Box::new(|r| std::fs::rename(r.path("dir/c.txt"), r.path("dir/c2.txt")).unwrap()),
        ),
        (
            "rename a folder",
            Box::new(|r| std::fs::rename(r.path("dir/sub"), r.path("moved")).unwrap()),
        ),
        (
            "create nested folders with files",
            Box::new(|r| {
                r.write("n1/n2/n3/f.txt", "deep\n");
                r.write("n1/g.txt", "shallow\n");
            }),
        ),
        (
            "delete a folder",
            Box::new(|r| std::fs::remove_dir_all(r.path("keep")).unwrap()),
        ),
        (
            "change only the mode",
            Box::new(|r| {
                std::fs::set_permissions(
                    r.path("script.sh"),
                    std::fs::Permissions::from_mode(0o755),
                )
                .unwrap()
            }),
        ),
        (
            "commit everything",
            Box::new(|r| {
                r.git(&["add", "-A"]);
                r.git(&["commit", "-q", "-m", "second"]);
            }),
        ),
        (
            "edit a file, then put its content back",
            Box::new(|r| {
                r.write("a.txt", "changed for a moment\n");
                r.write("a.txt", "alpha two\n");
            }),
        ),
        (
            "an empty folder appears",
            Box::new(|r| std::fs::create_dir(r.path("empty")).unwrap()),
        ),
        (
            "a file lands in the folder that was empty",
            Box::new(|r| r.write("empty/now.txt", "filled\n")),
        ),
        (
            "a name that is not UTF-8",
            Box::new(|r| {
                std::fs::write(r.worktree.join(OsStr::from_bytes(b"caf\xe9.txt")), "x\n").unwrap()
            }),
        ),
        (
            "a name that is not UTF-8 is committed, then removed",
            Box::new(|r| {
                r.git(&["add", "-A"]);
                r.git(&["commit", "-q", "-m", "latin-1 name"]);
                std::fs::remove_file(r.worktree.join(OsStr::from_bytes(b"caf\xe9.txt"))).unwrap()
            }),
        ),
        (
            "a tracked file becomes a folder",
            Box::new(|r| {
                std::fs::remove_file(r.path("new.txt")).unwrap();
                r.write("new.txt/inside.txt", "inside\n");
            }),
        ),
    ];
    for (name, step) in &steps {
        step(&repo);
        assert_eq!(repo.check(name), HookUse::Exact, "step {name:?}");
    }

    // A token from before the restart, taken now.
    let (before, paths) = hook(&repo, &d.socket, "not-a-wfdb-token");
    assert_eq!(
        paths,
        vec![b"/".to_vec()],
        "a foreign token is answered with /"
    );
    assert!(before.starts_with("wfdb:1:"), "{before}");
    let (same, nothing) = hook(&repo, &d.socket, &before);
    assert!(nothing.is_empty(), "nothing changed, yet: {nothing:?}");
    assert!(same.starts_with("wfdb:1:"));

    // Stop the daemon, change files while it is down, start it again on the same database.
    let db = d.db.clone();
    assert!(d.stop().success());
    repo.write("a.txt", "changed while the daemon was down\n");
    repo.write("offline/new.txt", "created while down\n");
    std::fs::remove_file(repo.path("dir/c2.txt")).unwrap();
    // While it is down, git still gets a right answer: the hook says `/`.
    assert_eq!(repo.check("daemon down"), HookUse::Everything);
    let d = start(&dirs, &[repo.worktree.as_os_str()]).await;
    assert_eq!(d.db, db);

    // The token from before the restart is answered exactly, with what changed while down.
    let (after, mut paths) = hook(&repo, &d.socket, &before);
    paths.sort();
    let shown: Vec<String> = paths
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(
        shown,
        // "dir" held only c2.txt, so it may be gone too: reported as a folder.
        vec!["a.txt", "dir/", "dir/c2.txt", "offline/", "offline/new.txt"],
        "the pre-restart token must be answered exactly"
    );
    assert_ne!(after, before);
    // git's own token, kept in its index across the restart, is answered exactly too.
    assert_eq!(repo.check("after the restart"), HookUse::Exact);
    repo.write("offline/second.txt", "after restart\n");
    std::fs::rename(repo.path("moved"), repo.path("moved-again")).unwrap();
    assert_eq!(repo.check("changes after the restart"), HookUse::Exact);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "third"]);
    assert_eq!(repo.check("commit after the restart"), HookUse::Exact);

    // Negative control: a hook that always says "nothing changed" makes git miss an edit, and
    // the comparison catches it. (So the comparisons above could have failed.)
    repo.git(&["config", "core.fsmonitor", r#"printf '%s\0' "$2"; true"#]);
    assert_eq!(
        repo.check("the lying hook, nothing changed yet"),
        HookUse::Exact
    );
    repo.write("a.txt", "an edit the lying hook does not report\n");
    let (lied, used) = repo.status_with_hook(untracked);
    assert_eq!(used, HookUse::Exact);
    let truth = repo.status_plain(untracked);
    assert!(truth.contains(" M a.txt"), "{truth}");
    assert!(
        !lied.contains("a.txt"),
        "git trusted the lying hook, so the edit must be missing:\n{lied}"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_untracked_cache_all_untracked_files() {
    series(true, "--untracked-files=all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_untracked_cache_untracked_folders_collapsed() {
    series(true, "--untracked-files=normal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_untracked_cache_all_untracked_files() {
    series(false, "--untracked-files=all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_untracked_cache_untracked_folders_collapsed() {
    series(false, "--untracked-files=normal").await;
}

/// What the hook answers git when it cannot be exact: a version other than 2, no daemon, a
/// worktree no watched root holds, a root inside the worktree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_falls_back_to_everything_when_it_cannot_know() {
    let dirs = Dirs::new();
    let outer = dirs.tmp.path().join("outer");
    let inner = outer.join("inner");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(inner.join("x.txt"), "x").unwrap();
    let elsewhere = dirs.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let run = |cwd: &Path, socket: &Path, args: &[&str]| {
        let out = Command::new(wfdb_bin())
            .current_dir(cwd)
            .arg("--socket")
            .arg(socket)
            .arg("fsmonitor-hook")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Version 1 is refused, so git checks everything.
    let (code, stdout, stderr) = run(&inner, &dirs.socket, &["1", "1732530000000000000"]);
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(stderr.contains("version 2"), "{stderr}");

    // No daemon: git's token is kept and `/` answered.
    let (code, stdout, stderr) = run(&inner, &dirs.socket, &["2", "wfdb:1:ab:cd:7"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, b"wfdb:1:ab:cd:7\0/\0");
    assert!(stderr.contains("wfdb serve"), "{stderr}");

    let d = start(&dirs, &[inner.as_os_str()]).await;
    // A folder no root holds.
    let (code, stdout, stderr) = run(&elsewhere, &d.socket, &["2", ""]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, b"wfdb:none\0/\0");
    assert!(stderr.contains("wfdb watch"), "{stderr}");
    // A worktree of which only a part is watched.
    let (_, stdout, stderr) = run(&outer, &d.socket, &["2", "1732530000000000000"]);
    assert_eq!(stdout, b"1732530000000000000\0/\0");
    assert!(stderr.contains("only part"), "{stderr}");
    // The root itself: a fresh token, then exact answers for it.
    let (code, stdout, _) = run(&inner, &d.socket, &["2", "builtin:5:6"]);
    assert_eq!(code, Some(0));
    let text = String::from_utf8(stdout).unwrap();
    let token = text.strip_suffix("\0/\0").expect("a fresh token and /");
    std::fs::write(inner.join("y.txt"), "y").unwrap();
    let (_, stdout, _) = run(&inner, &d.socket, &["2", token]);
    let mut parts = stdout.split(|b| *b == 0);
    assert!(parts.next().unwrap().starts_with(b"wfdb:1:"));
    let paths: Vec<&[u8]> = parts.filter(|p| !p.is_empty()).collect();
    assert_eq!(paths, vec![&b"y.txt"[..]]);
    // A token of another database (instance) is answered with `/`, and the daemon is not
    // asked to list every file for it.
    let other = token.replacen("wfdb:1:", "wfdb:1:f", 1);
    let (_, stdout, _) = run(&inner, &d.socket, &["2", &other]);
    assert!(
        stdout.ends_with(b"\0/\0"),
        "{}",
        String::from_utf8_lossy(&stdout)
    );
    let fields: Vec<&str> = other.split(':').collect();
    let resp = d
        .catalog()
        .await
        .changes(workflowdb::proto::ChangesRequest {
            root: fields[3].to_string(),
            since_clock: fields[4].parse().unwrap(),
            instance_id: fields[2].to_string(),
            with_folders: true,
            empty_on_fresh_instance: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.fresh_instance);
    assert!(resp.changed.is_empty() && resp.removed.is_empty() && resp.folders.is_empty());
}
