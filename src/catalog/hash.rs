//! Content hashing of one regular file, safe against files that change while being read.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::classify::HEAD_BYTES;
use super::record::Fingerprint;

/// How often a file that keeps changing under the reader is read again before giving up.
const MAX_ATTEMPTS: usize = 3;

/// The content of a regular file as hashed.
pub struct Hashed {
    pub sha256: [u8; 32],
    /// The stat fingerprint that the hashed content belongs to.
    pub fingerprint: Fingerprint,
    /// The first bytes of the content, for classification.
    pub head: Vec<u8>,
    pub bytes: u64,
}

/// Why a file could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no longer a regular file")]
    NotRegular,
    #[error("kept changing while being read ({0} attempts)")]
    Unstable(usize),
}

/// Hashes a regular file with a caller-owned buffer. Opens with `O_NOFOLLOW | O_NONBLOCK` so a
/// path swapped for a symlink or FIFO after the walk's `lstat` is never followed or blocked on,
/// and compares `fstat` before and after reading so a concurrent write is noticed and re-read.
pub fn hash_file(path: &Path, buf: &mut [u8]) -> Result<Hashed, HashError> {
    for _ in 0..MAX_ATTEMPTS {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        let before = file.metadata()?;
        if !before.file_type().is_file() {
            return Err(HashError::NotRegular);
        }
        let (sha256, head, bytes) = read_all(&mut file, buf)?;
        let after = file.metadata()?;
        let fp_before = Fingerprint::of(&before);
        let fp_after = Fingerprint::of(&after);
        if fp_before == fp_after && bytes == fp_after.size {
            return Ok(Hashed {
                sha256,
                fingerprint: fp_after,
                head,
                bytes,
            });
        }
        tracing::debug!(path = %path.display(), "file changed while hashing; reading again");
    }
    Err(HashError::Unstable(MAX_ATTEMPTS))
}

fn read_all(file: &mut File, buf: &mut [u8]) -> io::Result<([u8; 32], Vec<u8>, u64)> {
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if head.len() < HEAD_BYTES {
            let take = n.min(HEAD_BYTES - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finalize().into(), head, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_known_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"abc").unwrap();
        let mut buf = vec![0u8; 4];
        let h = hash_file(&p, &mut buf).unwrap();
        assert_eq!(
            super::super::record::hex(&h.sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.head, b"abc");
        assert_eq!(h.bytes, 3);
    }

    #[test]
    fn refuses_symlinks_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut buf = vec![0u8; 64];
        assert!(hash_file(&link, &mut buf).is_err());
        let fifo = dir.path().join("f");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(matches!(
            hash_file(&fifo, &mut buf),
            Err(HashError::NotRegular)
        ));
    }
}
