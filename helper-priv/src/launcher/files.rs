//! The files API in a running instance: what lives only in the instance's own mounts (`/run`,
//! `/dev/shm`, a tmpfs `/tmp`, a disk device) is reached where the instance sees it.
//!
//! One forked child per request, which
//! - keeps only init's pidfd, the data fd (a pipe to fill, or a socket to drain) and its answer
//!   socket: nothing of the launcher's goes with it into the instance;
//! - is non-dumpable before it enters and again after its credentials change: its memory
//!   belongs to the host's user namespace, so ptrace (and /proc/<pid>/mem, fd, root) needs
//!   CAP_SYS_PTRACE there, which container root never has (runc's CVE-2016-9962);
//! - never joins the instance's pid namespace: no process inside can name it;
//! - joins the instance's user and mount namespaces and becomes container root (uid and gid 0
//!   of the instance, LXD's bounding set, the containers' seccomp filter it inherited), so it
//!   can do nothing container root could not do itself: never host root inside;
//! - resolves every path from the instance's `/` with `RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS`
//!   and never follows the last component when writing (`silo_proto::jail::files`, the rules
//!   silo-store applies to a stopped instance's volume), so a symlink container root plants
//!   (`/run/evil -> /proc/1/root/...`, `../../..`) stays inside or is refused.
//!
//! The launcher only forks it and goes back to serving: the child answers silo-priv itself
//! (metadata, or why not) on a socket silo-priv gave, then moves the data at the reader's
//! pace. A lookup that hangs inside the instance (its own FUSE mount) ends it after
//! [`ANSWER_SECS`], a reader or writer that stalls after [`STALL_SECS`] (SIGALRM): a hostile
//! instance can hold neither the launcher nor silo-priv.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use silo_proto::error::HelperError;
use silo_proto::jail::beneath::Root;
use silo_proto::store::{FileMeta, FilePut};

use super::{wire, Reply};
use crate::sys;

/// What to do at a path inside a running instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FileOp {
    /// Metadata; for a file, its bytes into the pipe given.
    Get(String),
    /// Create or replace; for a file, its bytes from the socket given, answered with
    /// `ok` or `error: <why>` on that socket once its writer shuts down.
    Put(String, FilePut),
    /// Remove a file, symlink or empty directory.
    Delete(String),
}

/// A files request. Fds: init's pidfd, the answer socket (SEQPACKET: one
/// `Result<FileMeta, HelperError>`), then the data fd for a file's `Get` or `Put`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileReq {
    /// Whether the instance has a user namespace (else it is privileged).
    pub userns: bool,
    pub op: FileOp,
}

/// How long the child waits for its reader or writer before it gives up.
pub const STALL_SECS: u32 = 600;

/// How long the child may take to answer (SIGALRM ends it after that).
pub const ANSWER_SECS: u32 = 30;

/// Forks the child that serves one request; the launcher's loop reaps it when it ends.
pub fn run(req: FileReq, fds: Vec<OwnedFd>) -> Result<Reply, String> {
    let mut fds = fds.into_iter();
    let (Some(pidfd), Some(answer_sock)) = (fds.next(), fds.next()) else {
        return Err("a files request takes init's pidfd and an answer socket".into());
    };
    let data = fds.next();
    // SAFETY: the launcher is single-threaded; the child leaves through _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            let mut keep = vec![pidfd.as_raw_fd(), answer_sock.as_raw_fd()];
            if let Some(d) = &data {
                keep.push(d.as_raw_fd());
            }
            sys::close_fds_except(&keep);
            // SAFETY: alarm takes a number of seconds; SIGALRM's default action ends the child.
            unsafe { libc::alarm(ANSWER_SECS) };
            let code = child(req, pidfd, data, &answer_sock);
            // SAFETY: leaving the forked child without the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { .. } => Ok(Reply::FileForked),
    }
}

fn io_err(op: &str) -> impl Fn(nix::errno::Errno) -> HelperError + '_ {
    move |e| HelperError::errno(op, "the instance", e)
}

/// Inside the instance as container root; its `/`.
fn enter(userns: bool, pidfd: OwnedFd) -> Result<Root, HelperError> {
    silo_proto::jail::caps_drop::non_dumpable()
        .map_err(|e| HelperError::Unsupported(e.to_string()))?;
    let mut flags = libc::CLONE_NEWNS;
    if userns {
        flags |= libc::CLONE_NEWUSER;
    }
    sys::setns_pidfd(pidfd.as_fd(), flags)
        .map_err(|e| HelperError::Unsupported(format!("entering the instance: {e}")))?;
    drop(pidfd);
    if userns {
        nix::unistd::setgroups(&[]).map_err(io_err("setgroups"))?;
        let g = nix::unistd::Gid::from_raw(0);
        let u = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresgid(g, g, g).map_err(io_err("setresgid"))?;
        nix::unistd::setresuid(u, u, u).map_err(io_err("setresuid"))?;
    }
    // A credential change may reset it: non-dumpable again before touching anything inside.
    silo_proto::jail::caps_drop::non_dumpable()
        .map_err(|e| HelperError::Unsupported(e.to_string()))?;
    super::drop_container_caps().map_err(HelperError::Unsupported)?;
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open /"))?;
    Ok(Root::from_fd(root, "/"))
}

fn answer(sock: &OwnedFd, r: &Result<FileMeta, HelperError>) {
    let _ = wire::send(sock.as_fd(), r, &[]);
}

/// The child's work; its exit code.
fn child(req: FileReq, pidfd: OwnedFd, data: Option<OwnedFd>, sock: &OwnedFd) -> i32 {
    let root = match enter(req.userns, pidfd) {
        Ok(r) => r,
        Err(e) => {
            answer(sock, &Err(e));
            return 1;
        }
    };
    match req.op {
        FileOp::Get(path) => match silo_proto::jail::files::get(&root, &path) {
            Ok((meta, file)) => {
                answer(sock, &Ok(meta));
                if let (Some(f), Some(pipe)) = (file, data) {
                    feed(f, pipe);
                }
                0
            }
            Err(e) => {
                answer(sock, &Err(e));
                1
            }
        },
        FileOp::Put(path, put) => match silo_proto::jail::files::put(&root, &path, &put) {
            Ok(file) => {
                answer(sock, &Ok(empty_meta(&put)));
                if let (Some(f), Some(s)) = (file, data) {
                    drain(f, s);
                }
                0
            }
            Err(e) => {
                answer(sock, &Err(e));
                1
            }
        },
        FileOp::Delete(path) => {
            let r = silo_proto::jail::files::delete(&root, &path).map(|()| empty_meta_dir());
            let failed = r.is_err();
            answer(sock, &r);
            i32::from(failed)
        }
    }
}

fn empty_meta(put: &FilePut) -> FileMeta {
    FileMeta {
        kind: put.kind,
        uid: put.uid,
        gid: put.gid,
        mode: put.mode,
        entries: Vec::new(),
        target: String::new(),
        size: 0,
        mtime: (0, 0),
        fd: None,
    }
}

fn empty_meta_dir() -> FileMeta {
    FileMeta {
        kind: silo_proto::store::FileKind::Directory,
        uid: 0,
        gid: 0,
        mode: 0,
        entries: Vec::new(),
        target: String::new(),
        size: 0,
        mtime: (0, 0),
        fd: None,
    }
}

/// Copies the file into the pipe; a reader that stalls for [`STALL_SECS`] ends it (SIGALRM).
fn feed(file: OwnedFd, pipe: OwnedFd) {
    let mut f = std::fs::File::from(file);
    let mut out = std::fs::File::from(pipe);
    let mut buf = vec![0u8; 128 << 10];
    loop {
        // SAFETY: alarm takes a number of seconds.
        unsafe { libc::alarm(STALL_SECS) };
        let n = match f.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if out.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Writes what arrives on the socket into the file, then answers `ok` or `error: <why>`; a
/// refused transfer is cut back to where it started.
fn drain(file: OwnedFd, sock: OwnedFd) {
    let mut f = std::fs::File::from(file);
    let mut s = std::os::unix::net::UnixStream::from(sock);
    let start = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = vec![0u8; 128 << 10];
    let outcome: Result<(), String> = loop {
        // SAFETY: alarm takes a number of seconds.
        unsafe { libc::alarm(STALL_SECS) };
        let n = match s.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(format!("reading from silod: {e}")),
        };
        if let Err(e) = f.write_all(&buf[..n]) {
            break Err(format!("writing the file: {e}"));
        }
    };
    let reply = match outcome {
        Ok(()) => b"ok".to_vec(),
        Err(e) => {
            let _ = f.set_len(start);
            format!("error: {e}").into_bytes()
        }
    };
    let _ = s.write_all(&reply);
}
