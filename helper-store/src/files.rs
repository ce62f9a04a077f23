//! The files API's storage side: the resolution rules live in `silo_proto::jail::files`
//! (shared with silo-priv's path for running instances); here, the transfers to and from
//! silod, by pipe and socket, never by the file's own fd.

use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use silo_proto::error::{HelperError, HelperResult};
pub use silo_proto::jail::files::{delete, get, put};

/// How long a file transfer may stall (silod neither reading nor writing) before silo-store
/// gives up on it and closes the file.
const STALL: std::time::Duration = std::time::Duration::from_secs(600);

fn pipe_err(e: impl std::fmt::Display) -> HelperError {
    HelperError::Io {
        op: "file transfer".into(),
        target: "pipe to silod".into(),
        message: e.to_string(),
        errno: None,
    }
}

/// Hands a file's contents to silod without handing it the file: a pipe that a task of
/// silo-store fills from `file`. An fd of the file itself could be executed
/// (`execveat(fd, "", AT_EMPTY_PATH)`, set-user-id included) or reopened through
/// /proc/self/fd by whoever holds it; the read end of a pipe can be neither. Answers the
/// read end (blocking, as silod reads it).
pub fn feed(file: OwnedFd) -> HelperResult<OwnedFd> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(pipe_err)?;
    // Makes silo-store's end (its own open file) non-blocking; silod's end stays blocking.
    let mut tx = tokio::net::unix::pipe::Sender::from_owned_fd(w).map_err(pipe_err)?;
    // A task on silo-store's one thread (never an OS thread: silo-store forks children).
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut f = std::fs::File::from(file);
        let mut buf = vec![0u8; 128 << 10];
        loop {
            // Regular files do not block on read; the pipe is what waits for silod.
            let n = match std::io::Read::read(&mut f, &mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a file for silod");
                    return;
                }
            };
            match tokio::time::timeout(STALL, tx.write_all(&buf[..n])).await {
                Ok(Ok(())) => {}
                // silod closed its end (EPIPE) or stalled: the stream ends here.
                _ => return,
            }
        }
    });
    Ok(r)
}

/// What a transfer into the instance ended with, sent back on the socket after silod shut
/// its writing side down: `ok`, or `error: <why>`.
pub const PUT_OK: &[u8] = b"ok";

/// Takes a file's new contents from silod without handing it the file: silod gets one end of
/// a stream socketpair, writes the data, shuts its writing side down and reads back
/// [`PUT_OK`] or an error; silo-store writes into `file`, at most `budget` bytes (what the
/// pool's host filesystem may still take above the policy's reserve).
pub fn drain(file: OwnedFd, budget: u64) -> HelperResult<OwnedFd> {
    let (mine, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
    )
    .map_err(pipe_err)?;
    // silod's end blocks as a file would; only silo-store's end is non-blocking.
    nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(pipe_err)?;
    let sock = tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(mine))
        .map_err(pipe_err)?;
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sock = sock;
        let mut f = std::fs::File::from(file);
        // Where a refused transfer is cut back to (an append keeps what was there).
        let start = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut buf = vec![0u8; 128 << 10];
        let mut total = 0u64;
        let outcome: Result<(), String> = loop {
            let n = match tokio::time::timeout(STALL, sock.read(&mut buf)).await {
                Err(_) => break Err("silod stalled".into()),
                Ok(Err(e)) => break Err(format!("reading from silod: {e}")),
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(n)) => n,
            };
            total = total.saturating_add(n as u64);
            if total > budget {
                break Err(format!(
                    "the file would leave less free space on the pool's host filesystem than \
                     the policy's dir_pool_reserve (at most {budget} bytes may be written)"
                ));
            }
            if let Err(e) = std::io::Write::write_all(&mut f, &buf[..n]) {
                break Err(format!("writing the file: {e}"));
            }
        };
        let answer = match &outcome {
            Ok(()) => PUT_OK.to_vec(),
            Err(e) => {
                let _ = f.set_len(start);
                tracing::warn!(error = %e, "file transfer into an instance");
                format!("error: {e}").into_bytes()
            }
        };
        // Closing (not shutdown(2), which the filter does not allow) ends the answer.
        let _ = tokio::time::timeout(STALL, sock.write_all(&answer)).await;
    });
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_proto::jail::beneath::Root;
    use silo_proto::jail::files::{relative, split};
    use silo_proto::store::{FileKind, FilePut};

    #[test]
    fn paths() {
        assert_eq!(relative("/").expect("root"), ".");
        assert_eq!(relative("/etc/hosts").expect("p"), "etc/hosts");
        assert_eq!(relative("etc").expect("rel"), "etc");
        assert!(relative("/a\0b").is_err());
        assert_eq!(split("etc/hosts").expect("s"), ("etc", "hosts"));
        assert_eq!(split("hosts").expect("s"), (".", "hosts"));
        assert!(split("etc/..").is_err());
    }

    #[test]
    fn symlinks_stay_inside() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/hosts"), "inside").expect("write");
        std::os::unix::fs::symlink("/etc", root.join("link")).expect("symlink");
        std::os::unix::fs::symlink("../../../../../../etc/passwd", root.join("up"))
            .expect("symlink");
        let r = Root::open(&root).expect("root");
        // A directory symlink in the middle resolves inside the rootfs.
        let (m, fd) = get(&r, "/link/hosts").expect("get");
        assert_eq!(m.kind, FileKind::File);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd.expect("fd")), &mut s)
            .expect("read");
        assert_eq!(s, "inside");
        // A final symlink is reported, not followed.
        let (m, _) = get(&r, "/up").expect("get");
        assert_eq!(m.kind, FileKind::Symlink);
        // Writing through a symlink is refused; the host file is untouched.
        let p = FilePut {
            kind: FileKind::File,
            uid: 0,
            gid: 0,
            mode: 0o644,
            append: false,
            target: String::new(),
        };
        assert!(put(&r, "/up", &p).is_err());
        assert!(put(&r, "/link/new", &p).is_ok());
        assert!(root.join("etc/new").exists());
    }
}
