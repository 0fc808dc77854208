//! `wfdb fsmonitor-hook`: git's fsmonitor hook protocol, version 2, answered from a root's
//! persistent clock.
//!
//! git runs the hook from the top of the worktree as `<hook> 2 <token>` and reads, on standard
//! output, a new token, a NUL, then every path that may have changed since `<token>`, each
//! followed by a NUL; `/` instead of paths means "assume everything changed". Whenever the
//! answer cannot be exact (no daemon, no root covering the worktree, a token of another kind or
//! of another database) the hook answers `/`, which makes git check every file itself: slower,
//! never wrong.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

use tonic::transport::Channel;

use workflowdb::client::connect_unix;
use workflowdb::proto;
use workflowdb::proto::admin_client::AdminClient;
use workflowdb::proto::catalog_client::CatalogClient;

/// The only hook protocol version spoken.
const PROTOCOL: &str = "2";

/// Token answered when there is none to give (no daemon, no root): never one of ours, so the
/// next call answers `/` again unless a daemon can by then.
const NO_TOKEN: &str = "wfdb:none";

/// What git keeps in its index between two calls: `wfdb:1:<instance id>:<root id>:<clock>`.
/// The instance id changes when the database is rebuilt, so a clock is never read against a
/// database that did not issue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    instance_id: String,
    root_id: String,
    clock: u64,
}

impl Token {
    const PREFIX: &'static str = "wfdb:1:";

    /// Reads one of our tokens; anything else (empty, git's own daemon, Watchman, a v1
    /// timestamp, another format version, damaged) is `None`.
    pub fn parse(text: &str) -> Option<Token> {
        let rest = text.strip_prefix(Self::PREFIX)?;
        let mut parts = rest.split(':');
        let (instance_id, root_id, clock) = (parts.next()?, parts.next()?, parts.next()?);
        let is_id = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if parts.next().is_some() || !is_id(instance_id) || !is_id(root_id) {
            return None;
        }
        if !clock.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Token {
            instance_id: instance_id.to_string(),
            root_id: root_id.to_string(),
            clock: clock.parse().ok()?,
        })
    }

    /// The token's text, as git stores it.
    pub fn render(&self) -> String {
        format!(
            "{}{}:{}:{}",
            Self::PREFIX,
            self.instance_id,
            self.root_id,
            self.clock
        )
    }
}

/// Where the worktree lies within a root: `Some(prefix)` with the worktree's root-relative path
/// ("" for the root itself), `None` when the worktree is not inside the root.
pub fn worktree_prefix(root: &Path, worktree: &Path) -> Option<Vec<u8>> {
    let rel = worktree.strip_prefix(root).ok()?;
    Some(rel.as_os_str().as_bytes().to_vec())
}

/// A root-relative path made relative to the worktree, or `None` when it lies outside it.
fn under_worktree<'a>(prefix: &[u8], path: &'a [u8]) -> Option<&'a [u8]> {
    if prefix.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?.strip_prefix(b"/")?;
    (!rest.is_empty()).then_some(rest)
}

/// The hook's answer for git.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// These paths (folders end with `/`) may have changed since the token git gave.
    Paths { token: String, paths: Vec<Vec<u8>> },
    /// Nothing is known: git must check everything.
    Everything { token: String },
}

impl Answer {
    /// The bytes git reads: the token, NUL, then each path followed by NUL (or `/` and NUL).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Answer::Paths { token, paths } => {
                out.extend_from_slice(token.as_bytes());
                out.push(0);
                for p in paths {
                    out.extend_from_slice(p);
                    out.push(0);
                }
            }
            Answer::Everything { token } => {
                out.extend_from_slice(token.as_bytes());
                out.extend_from_slice(b"\0/\0");
            }
        }
        out
    }
}

/// Turns the daemon's changes into git's answer for a worktree at `prefix` within the root:
/// changed and removed files, then the folders that may have come or gone (with a trailing
/// `/`, so git re-reads the folder holding them for untracked files).
pub fn answer_from_changes(resp: &proto::ChangesResponse, token: &Token, prefix: &[u8]) -> Answer {
    let token = token.render();
    if resp.fresh_instance {
        return Answer::Everything { token };
    }
    let mut paths = Vec::with_capacity(resp.changed.len() + resp.removed.len());
    let changed = resp.changed.iter().map(|f| {
        if f.path_bytes.is_empty() {
            f.path.as_bytes()
        } else {
            f.path_bytes.as_slice()
        }
    });
    let removed: Box<dyn Iterator<Item = &[u8]>> = if resp.removed_path_bytes.is_empty() {
        Box::new(resp.removed.iter().map(|p| p.as_bytes()))
    } else {
        Box::new(resp.removed_path_bytes.iter().map(Vec::as_slice))
    };
    for path in changed.chain(removed) {
        if let Some(rel) = under_worktree(prefix, path) {
            paths.push(rel.to_vec());
        }
    }
    for folder in &resp.folders {
        if let Some(rel) = under_worktree(prefix, folder) {
            let mut p = rel.to_vec();
            p.push(b'/');
            paths.push(p);
        }
    }
    Answer::Paths { token, paths }
}

/// Runs the hook: answers git on standard output. Only a protocol version other than 2 (or a
/// failure to write the answer) exits non-zero, which makes git check everything itself.
pub async fn run(socket: &Path, version: &str, token: &str) -> ExitCode {
    if version != PROTOCOL {
        eprintln!(
            "wfdb fsmonitor-hook: git asked for hook protocol version {version:?}; only version 2 \
             is spoken (git config core.fsmonitorHookVersion 2); git checks every file instead"
        );
        return ExitCode::from(super::exit::FAILURE);
    }
    let answer = match std::env::current_dir().and_then(std::fs::canonicalize) {
        Ok(worktree) => answer(socket, &worktree, token).await,
        Err(e) => {
            eprintln!("wfdb fsmonitor-hook: cannot read the current folder: {e}");
            unknown(token)
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&answer.encode()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wfdb fsmonitor-hook: cannot write the answer for git: {e}");
            ExitCode::from(super::exit::FAILURE)
        }
    }
}

/// "Everything may have changed", keeping git's token when it has one: changes since that
/// token are a superset of changes since now, so when a daemon can answer it later the
/// answer is still right (this is what keeps a token good across a daemon restart).
fn unknown(token: &str) -> Answer {
    let token = if token.is_empty() { NO_TOKEN } else { token };
    Answer::Everything {
        token: token.to_string(),
    }
}

async fn answer(socket: &Path, worktree: &Path, token: &str) -> Answer {
    let channel = match connect_unix(socket).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wfdb fsmonitor-hook: {e}; git checks every file");
            return unknown(token);
        }
    };
    if let Some(parsed) = Token::parse(token) {
        match changes(channel.clone(), &parsed, worktree).await {
            Ok(Some(answer)) => return answer,
            // The token's root is gone or does not hold this worktree: start afresh.
            Ok(None) => {}
            Err(status) => {
                report_failure(&status);
                // A busy or stopping daemon may answer this token next time; anything else
                // (say, a change set too large to read) could fail the same way at every
                // call, so it is answered below under a fresh token.
                if matches!(
                    status.code(),
                    tonic::Code::DeadlineExceeded
                        | tonic::Code::Unavailable
                        | tonic::Code::Cancelled
                ) {
                    return unknown(token);
                }
            }
        }
    }
    match fresh_token(channel, worktree).await {
        Ok(Some(fresh)) => Answer::Everything {
            token: fresh.render(),
        },
        Ok(None) => unknown(token),
        Err(status) => {
            report_failure(&status);
            unknown(token)
        }
    }
}

/// One line on standard error (git shows it) saying why this answer is `/`.
fn report_failure(status: &tonic::Status) {
    eprintln!(
        "wfdb fsmonitor-hook: {} ({:?}); git checks every file",
        status.message(),
        status.code()
    );
}

/// What changed in the worktree since one of our tokens: one synced `ChangesStream` call. `None`
/// when the token's root is no longer watched or does not hold the worktree.
async fn changes(
    channel: Channel,
    token: &Token,
    worktree: &Path,
) -> Result<Option<Answer>, tonic::Status> {
    // Streamed in pages, so a change set of any size is read whole.
    let reply = workflowdb::client::changes_whole(
        channel,
        proto::ChangesRequest {
            root: token.root_id.clone(),
            since_clock: token.clock,
            instance_id: token.instance_id.clone(),
            unsynced: false,
            with_folders: true,
            empty_on_fresh_instance: true,
        },
    )
    .await;
    let resp = match reply {
        Ok(r) => r,
        Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
        Err(status) => return Err(status),
    };
    let Some(prefix) = worktree_prefix(Path::new(&resp.root), worktree) else {
        return Ok(None);
    };
    let next = Token {
        instance_id: resp.instance_id.clone(),
        root_id: token.root_id.clone(),
        clock: resp.clock,
    };
    Ok(Some(answer_from_changes(&resp, &next, &prefix)))
}

/// A token for now, from the root that holds the worktree (the deepest one if roots nest).
/// `None`, with a hint on standard error, when no watched root holds the whole worktree.
async fn fresh_token(channel: Channel, worktree: &Path) -> Result<Option<Token>, tonic::Status> {
    let roots = AdminClient::new(channel.clone())
        .list_roots(proto::ListRootsRequest {})
        .await?
        .into_inner()
        .roots;
    let holder = roots
        .iter()
        .filter(|r| worktree_prefix(Path::new(&r.root), worktree).is_some())
        .max_by_key(|r| r.root.len());
    let Some(root) = holder else {
        let inside = roots
            .iter()
            .find(|r| worktree_prefix(worktree, Path::new(&r.root)).is_some());
        match inside {
            Some(r) => eprintln!(
                "wfdb fsmonitor-hook: wfdb watches only part of this worktree ({}); git checks \
                 every file (run `wfdb watch {}`)",
                r.root,
                worktree.display()
            ),
            None => eprintln!(
                "wfdb fsmonitor-hook: no watched root holds {}; git checks every file (run \
                 `wfdb watch {}`)",
                worktree.display(),
                worktree.display()
            ),
        }
        return Ok(None);
    };
    let clock = CatalogClient::new(channel)
        .get_clock(proto::ClockRequest {
            root: root.root_id.clone(),
            unsynced: false,
        })
        .await?
        .into_inner();
    Ok(Some(Token {
        instance_id: clock.instance_id,
        root_id: root.root_id.clone(),
        clock: clock.clock,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(clock: u64) -> Token {
        Token {
            instance_id: "0123456789abcdef".into(),
            root_id: "fedcba9876543210".into(),
            clock,
        }
    }

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let t = token(42);
        assert_eq!(t.render(), "wfdb:1:0123456789abcdef:fedcba9876543210:42");
        assert_eq!(Token::parse(&t.render()), Some(t));
        for foreign in [
            "",
            "1732530000000000000",                        // git's v1 timestamp
            "builtin:1:2:3",                              // git's own daemon
            "c:1732530000:1234:1:17",                     // Watchman
            "wfdb:none",                                  // what we answer without a daemon
            "wfdb:2:0123456789abcdef:fedcba9876543210:4", // a later format
            "wfdb:1:0123456789abcdef:fedcba9876543210",   // clock missing
            "wfdb:1:0123456789abcdef:fedcba9876543210:4:5",
            "wfdb:1::fedcba9876543210:4",
            "wfdb:1:xyz:fedcba9876543210:4",
            "wfdb:1:0123456789abcdef:fedcba9876543210:-4",
            "wfdb:1:0123456789abcdef:fedcba9876543210:+4",
            "wfdb:1:0123456789abcdef:fedcba9876543210:99999999999999999999999",
        ] {
            assert_eq!(Token::parse(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn worktree_prefix_and_paths_under_it() {
        assert_eq!(
            worktree_prefix(Path::new("/src"), Path::new("/src")),
            Some(vec![])
        );
        assert_eq!(
            worktree_prefix(Path::new("/src"), Path::new("/src/repo")),
            Some(b"repo".to_vec())
        );
        assert_eq!(
            worktree_prefix(Path::new("/src/repo"), Path::new("/src")),
            None
        );
        assert_eq!(
            worktree_prefix(Path::new("/src/re"), Path::new("/src/repo")),
            None
        );
        assert_eq!(under_worktree(b"", b"a/b"), Some(&b"a/b"[..]));
        assert_eq!(under_worktree(b"repo", b"repo/a"), Some(&b"a"[..]));
        assert_eq!(under_worktree(b"repo", b"repo2/a"), None);
        assert_eq!(under_worktree(b"repo", b"repo"), None);
        assert_eq!(under_worktree(b"repo", b"other/a"), None);
    }

    #[test]
    fn answer_lists_files_removals_and_folders_relative_to_the_worktree() {
        let resp = proto::ChangesResponse {
            root: "/src".into(),
            clock: 9,
            instance_id: "0123456789abcdef".into(),
            changed: vec![
                proto::FileInfo {
                    path: "repo/a.txt".into(),
                    ..Default::default()
                },
                proto::FileInfo {
                    path: "repo/\u{fffd}.bin".into(),
                    path_bytes: b"repo/\xff.bin".to_vec(),
                    ..Default::default()
                },
                proto::FileInfo {
                    path: "elsewhere/x".into(),
                    ..Default::default()
                },
            ],
            removed: vec!["repo/old/\u{fffd}".into(), "repo/gone".into()],
            removed_path_bytes: vec![b"repo/old/\xfe".to_vec(), b"repo/gone".to_vec()],
            folders: vec![b"elsewhere".to_vec(), b"repo/old".to_vec()],
            ..Default::default()
        };
        let answer = answer_from_changes(&resp, &token(9), b"repo");
        let want: Vec<Vec<u8>> = vec![
            b"a.txt".to_vec(),
            b"\xff.bin".to_vec(),
            b"old/\xfe".to_vec(),
            b"gone".to_vec(),
            b"old/".to_vec(),
        ];
        assert_eq!(
            answer,
            Answer::Paths {
                token: token(9).render(),
                paths: want
            }
        );
        let mut bytes = token(9).render().into_bytes();
        bytes.extend_from_slice(b"\0a.txt\0\xff.bin\0old/\xfe\0gone\0old/\0");
        assert_eq!(answer.encode(), bytes);
    }

    #[test]
    fn fresh_instances_and_unknowns_answer_everything() {
        let resp = proto::ChangesResponse {
            fresh_instance: true,
            changed: vec![proto::FileInfo {
                path: "a".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let answer = answer_from_changes(&resp, &token(3), b"");
        let mut bytes = token(3).render().into_bytes();
        bytes.extend_from_slice(b"\0/\0");
        assert_eq!(answer.encode(), bytes);
        assert_eq!(unknown("").encode(), b"wfdb:none\0/\0");
        assert_eq!(unknown("1732530000").encode(), b"1732530000\0/\0");
    }
}
