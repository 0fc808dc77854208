//! Whether a Unix socket and its folder can be trusted: the rules the daemon applies before it
//! binds and clients apply before they connect, as ssh-agent and tmux do. Only the owner of a
//! folder (and root) can put a socket in it, so a folder owned by someone else, or one others
//! can write, could hold an impostor's socket.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A socket or socket folder that must not be used, with how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    /// The folder or socket refused.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to use {}: {} ({})",
            self.path.display(),
            self.reason,
            self.fix
        )
    }
}

impl std::error::Error for Untrusted {}

/// The effective user id of this process.
pub fn my_uid() -> u32 {
    // SAFETY: geteuid never fails and has no preconditions.
    unsafe { libc::geteuid() }
}

fn describe(owners: &[u32]) -> String {
    owners
        .iter()
        .map(|u| match u {
            0 => "root".to_string(),
            u => format!("uid {u}"),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Checks the folder a socket lives in: a real folder (not a symlink), owned by one of
/// `owners`, and writable by nobody else (no group or other write bit).
pub fn check_folder(dir: &Path, owners: &[u32]) -> Result<(), Untrusted> {
    let untrusted = |reason: String, fix: String| Untrusted {
        path: dir.to_path_buf(),
        reason,
        fix,
    };
    let elsewhere = "or choose a socket in a folder of your own with --socket or WFDB_SOCKET, \
                     such as $XDG_RUNTIME_DIR/wfdb/wfdb.sock";
    let meta = std::fs::symlink_metadata(dir).map_err(|e| {
        untrusted(
            format!("cannot examine the socket's folder: {e}"),
            format!("check the permissions of the folders above it, {elsewhere}"),
        )
    })?;
    if !meta.file_type().is_dir() {
        return Err(untrusted(
            "the socket's folder is not a folder (a symlink or a file stands there)".into(),
            format!("remove it, {elsewhere}"),
        ));
    }
    if !owners.contains(&meta.uid()) {
        return Err(untrusted(
            format!(
                "the socket's folder is owned by uid {}, not by {}: another user may have \
                 created it to intercept the daemon's socket",
                meta.uid(),
                describe(owners)
            ),
            format!(
                "remove it (`sudo rm -r {}`) and start the daemon again, {elsewhere}",
                dir.display()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "its group and other users",
            (true, false) => "its group",
            _ => "other users",
        };
        return Err(untrusted(
            format!(
                "the socket's folder (mode {mode:04o}) is writable by {who}, who could put \
                 their own socket in it"
            ),
            format!("`chmod go-w {}`, {elsewhere}", dir.display()),
        ));
    }
    Ok(())
}

/// Checks the socket itself: a socket (not a symlink to one) owned by one of `owners`.
pub fn check_socket(path: &Path, owners: &[u32]) -> Result<(), Untrusted> {
    let untrusted = |reason: String, fix: String| Untrusted {
        path: path.to_path_buf(),
        reason,
        fix,
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        untrusted(
            format!("cannot examine the socket: {e}"),
            "check that the daemon is running and the path is right".into(),
        )
    })?;
    if !meta.file_type().is_socket() {
        return Err(untrusted(
            "it is not a socket".into(),
            "remove it, or name the daemon's socket with --socket".into(),
        ));
    }
    if !owners.contains(&meta.uid()) {
        return Err(untrusted(
            format!(
                "the socket is owned by uid {}, not by {}",
                meta.uid(),
                describe(owners)
            ),
            "it is not the socket of your daemon: remove it and start the daemon again, or \
             name your daemon's socket with --socket"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_folder_is_trusted_and_a_loose_or_foreign_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        let me = my_uid();
        for mode in [0o700, 0o755, 0o711] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(check_folder(&dir, &[me]), Ok(()), "{mode:o}");
        }
        for (mode, who) in [
            (0o777, "its group and other users"),
            (0o1777, "its group and other users"),
            (0o770, "its group"),
            (0o702, "other users"),
        ] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = check_folder(&dir, &[me]).unwrap_err();
            assert!(e.reason.contains(who), "{mode:o}: {e}");
            assert!(e.fix.contains("chmod go-w"), "{e}");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = check_folder(&dir, &[me + 1]).unwrap_err();
        assert!(e.reason.contains(&format!("owned by uid {me}")), "{e}");
        assert!(e.to_string().starts_with("refusing to use "), "{e}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(check_folder(&link, &[me])
            .unwrap_err()
            .reason
            .contains("not a folder"));
        assert!(check_folder(&tmp.path().join("missing"), &[me]).is_err());
    }

    #[test]
    fn only_a_socket_of_a_trusted_owner_is_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let me = my_uid();
        assert_eq!(check_socket(&path, &[me]), Ok(()));
        assert!(check_socket(&path, &[me + 1])
            .unwrap_err()
            .reason
            .contains("owned by uid"));
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(check_socket(&file, &[me])
            .unwrap_err()
            .reason
            .contains("not a socket"));
    }
}
