//! Short-lived children for work on untrusted data (image tarballs, volume trees).
//!
//! silo-store mounts, so it cannot landlock its own filesystem access; a child that only
//! reads and writes files can. The child keeps the file-only capabilities, landlocks itself to
//! the directories it was given (by fd, opened by the parent beneath its roots), runs the work
//! and reports one JSON value through a pipe. silo-store's runtime is single-threaded, so
//! forking it is sound.
//!
//! Landlock denies REFER (linking or moving across directories) in every domain that does
//! not grant it layer by layer, and silo-store's own layer (network and scope rules only)
//! cannot grant it without also forbidding its mounts. So a child asks its parent instead:
//! it sends the two directory fds and names over a socket (`refer`), and silo-store links or
//! renames only when both directories lie beneath the same write root the child was given.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use caps::{CapSet, Capability, CapsHashSet};
use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use silo_proto::error::{HelperError, HelperResult};

/// Capabilities a file-only child keeps.
const CHILD_CAPS: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    // File capabilities (security.capability) are copied and received as they were.
    Capability::CAP_SETFCAP,
];

fn confine(
    extra: &[Capability],
    write: &[BorrowedFd<'_>],
    read: &[BorrowedFd<'_>],
) -> Result<(), String> {
    // Dropping from permitted is for good; the bounding set only matters across exec, which
    // silo-store's filter forbids (and silo-store holds no CAP_SETPCAP to cut it).
    let keep: CapsHashSet = CHILD_CAPS.iter().chain(extra).copied().collect();
    caps::set(None, CapSet::Effective, &keep).map_err(|e| e.to_string())?;
    caps::set(None, CapSet::Permitted, &keep).map_err(|e| e.to_string())?;
    let abi = ABI::V6;
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| e.to_string())?
        .handle_access(AccessNet::from_all(abi))
        .map_err(|e| e.to_string())?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(|e| e.to_string())?
        .create()
        .map_err(|e| e.to_string())?;
    for fd in write {
        rs = rs
            .add_rule(PathBeneath::new(*fd, AccessFs::from_all(abi)))
            .map_err(|e| e.to_string())?;
    }
    for fd in read {
        rs = rs
            .add_rule(PathBeneath::new(*fd, AccessFs::from_read(abi)))
            .map_err(|e| e.to_string())?;
    }
    let st = rs.restrict_self().map_err(|e| e.to_string())?;
    if st.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("landlock not fully enforced: {:?}", st.ruleset));
    }
    Ok(())
}

/// The child's end of its socket to the parent (set only in a child).
static BROKER: std::sync::Mutex<Option<OwnedFd>> = std::sync::Mutex::new(None);

/// What a child asks of its parent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refer {
    /// `linkat`.
    Link,
    /// `renameat`.
    Rename,
}

/// In a confined child: links or renames `old_name` in `old_dir` to `new_name` in `new_dir`,
/// directories that may differ, through the parent. Outside a child, or when the parent
/// refuses, it fails with the errno it would have had (EXDEV without a parent).
pub fn refer(
    op: Refer,
    old_dir: BorrowedFd<'_>,
    old_name: impl AsRef<std::ffi::OsStr>,
    new_dir: BorrowedFd<'_>,
    new_name: impl AsRef<std::ffi::OsStr>,
) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let guard = BROKER.lock().map_err(|_| nix::errno::Errno::EXDEV)?;
    let Some(sock) = guard.as_ref() else {
        return Err(nix::errno::Errno::EXDEV);
    };
    let mut msg = vec![u8::from(op == Refer::Rename)];
    msg.extend(old_name.as_ref().as_bytes());
    msg.push(0);
    msg.extend(new_name.as_ref().as_bytes());
    let fds = [old_dir.as_raw_fd(), new_dir.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(&msg)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    let mut answer = [0u8; 4];
    let n = nix::unistd::read(sock, &mut answer)?;
    match (n, i32::from_le_bytes(answer)) {
        (4, 0) => Ok(()),
        (4, e) => Err(nix::errno::Errno::from_raw(e)),
        _ => Err(nix::errno::Errno::EIO),
    }
}

/// One name in a directory: no separators, no NUL, no `.` or `..`.
fn plain_name(n: &[u8]) -> Option<&std::ffi::OsStr> {
    use std::os::unix::ffi::OsStrExt;
    let ok = !n.is_empty()
        && n.len() <= 255
        && n != b"."
        && n != b".."
        && !n.contains(&b'/')
        && !n.contains(&0);
    ok.then(|| std::ffi::OsStr::from_bytes(n))
}

/// Whether directory `dir` lies beneath `root` (or is it), walking `..` up from `dir`. The
/// child cannot move a directory out from under a root while this walks: it has no REFER.
fn beneath(root: BorrowedFd<'_>, dir: BorrowedFd<'_>) -> bool {
    use nix::sys::stat::fstat;
    let Ok(r) = fstat(root) else {
        return false;
    };
    let Ok(mut cur) = dir.try_clone_to_owned() else {
        return false;
    };
    for _ in 0..4096 {
        let Ok(st) = fstat(&cur) else {
            return false;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return false;
        }
        if (st.st_dev, st.st_ino) == (r.st_dev, r.st_ino) {
            return true;
        }
        let Ok(up) = nix::fcntl::openat(
            &cur,
            "..",
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) else {
            return false;
        };
        match fstat(&up) {
            Ok(u) if (u.st_dev, u.st_ino) != (st.st_dev, st.st_ino) => cur = up,
            _ => return false,
        }
    }
    false
}

/// One request from a child: the op, the names, and the two directory fds it sent.
fn serve_one(write: &[BorrowedFd<'_>], msg: &[u8], fds: &[OwnedFd]) -> nix::errno::Errno {
    use nix::errno::Errno;
    let [old_dir, new_dir] = fds else {
        return Errno::EINVAL;
    };
    let Some((&op, rest)) = msg.split_first() else {
        return Errno::EINVAL;
    };
    let Some(nul) = rest.iter().position(|b| *b == 0) else {
        return Errno::EINVAL;
    };
    let (Some(old_name), Some(new_name)) = (plain_name(&rest[..nul]), plain_name(&rest[nul + 1..]))
    else {
        return Errno::EINVAL;
    };
    // Both directories beneath one write root: never the read-only sources (a hard link into
    // a source would let the copy write into it) and never anywhere else.
    if !write
        .iter()
        .any(|r| beneath(*r, old_dir.as_fd()) && beneath(*r, new_dir.as_fd()))
    {
        return Errno::EXDEV;
    }
    let done = if op == 1 {
        nix::fcntl::renameat(old_dir, old_name, new_dir, new_name)
    } else {
        nix::unistd::linkat(
            old_dir,
            old_name,
            new_dir,
            new_name,
            nix::fcntl::AtFlags::empty(),
        )
    };
    match done {
        Ok(()) => Errno::UnknownErrno,
        Err(e) => e,
    }
}

/// Answers a child's `refer` requests until it closes its end.
async fn serve(sock: OwnedFd, write: &[BorrowedFd<'_>]) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    if nix::fcntl::fcntl(
        sock.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .is_err()
    {
        return;
    }
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same fd until the
    // AsyncFd drops at the end of this function.
    let Ok(afd) = (unsafe { tokio::io::unix::AsyncFd::register(sock) }) else {
        return;
    };
    loop {
        let Ok(mut ready) = afd.readable().await else {
            return;
        };
        let mut buf = [0u8; 1024];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let got = ready.try_io(|inner| {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let m = recvmsg::<()>(
                inner.get_ref().as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let mut fds = Vec::new();
            for c in m.cmsgs().map_err(std::io::Error::from)? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    for fd in raw {
                        // SAFETY: SCM_RIGHTS just gave us this fd; nothing else owns it.
                        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
            Ok((m.bytes, fds))
        });
        let (n, fds) = match got {
            Err(_would_block) => continue,
            Ok(Ok(x)) => x,
            Ok(Err(_)) => return,
        };
        if n == 0 {
            return;
        }
        let e = serve_one(write, &buf[..n], &fds);
        drop(fds);
        let answer = (e as i32).to_le_bytes();
        if nix::unistd::write(afd.get_ref(), &answer) != Ok(4) {
            return;
        }
    }
}

/// Runs `work` in a forked child confined to `write` (full access beneath) and `read`
/// (read access beneath); anything else it needs must already be open. `what` names the job
/// in errors.
pub async fn run<T, E, F>(
    what: &str,
    write: &[BorrowedFd<'_>],
    read: &[BorrowedFd<'_>],
    work: F,
) -> HelperResult<Result<T, E>>
where
    T: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<T, E>,
{
    run_with_caps(what, &[], write, read, work).await
}

/// [`run`], with `extra` capabilities kept beside the child's usual set (a btrfs send needs
/// CAP_SYS_ADMIN for BTRFS_IOC_SEND; landlock still confines it to its fds).
pub async fn run_with_caps<T, E, F>(
    what: &str,
    extra: &[Capability],
    write: &[BorrowedFd<'_>],
    read: &[BorrowedFd<'_>],
    work: F,
) -> HelperResult<Result<T, E>>
where
    T: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<T, E>,
{
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| HelperError::errno("pipe2", what, e))?;
    let (broker, child_end) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| HelperError::errno("socketpair", what, e))?;
    // SAFETY: silo-store runs a current-thread runtime with no other threads, so the child is
    // a faithful copy that may allocate and run Rust code; it leaves only through _exit.
    let pid = match unsafe { nix::unistd::fork() } {
        Err(e) => return Err(HelperError::errno("fork", what, e)),
        Ok(nix::unistd::ForkResult::Child) => {
            // Die with silo-store: an orphaned child must not keep writing into a volume that
            // the next silo-store collects as half-made.
            // SAFETY: prctl(PR_SET_PDEATHSIG) takes an integer signal; no pointers.
            unsafe {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            };
            if nix::unistd::getppid().as_raw() == 1 {
                // SAFETY: see below; the parent is already gone.
                unsafe { libc::_exit(1) }
            }
            drop(rx);
            drop(broker);
            if let Ok(mut b) = BROKER.lock() {
                *b = Some(child_end);
            }
            silo_proto::image::extract::set_cross_dir_linker(|od, on, nd, nn| {
                refer(Refer::Link, od, on, nd, nn)
            });
            let out: Result<Result<T, E>, String> = confine(extra, write, read).map(|()| work());
            let code = i32::from(!matches!(out, Ok(Ok(_))));
            let bytes = serde_json::to_vec(&out).unwrap_or_default();
            let mut f = std::fs::File::from(tx);
            let _ = std::io::Write::write_all(&mut f, &bytes);
            drop(f);
            // SAFETY: _exit ends the child without running the parent's atexit handlers or
            // flushing its copies of the parent's buffers.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
    };
    drop(tx);
    drop(child_end);
    let (bytes, ()) = tokio::join!(read_all(rx), serve(broker, write));
    let status = wait_child(pid);
    let out: Result<Result<T, E>, String> = match bytes {
        Ok(b) if !b.is_empty() => serde_json::from_slice(&b)
            .map_err(|e| format!("the {what} child answered garbage: {e}"))
            .and_then(|r| r),
        Ok(_) => Err(format!(
            "the {what} child died without answering ({status})"
        )),
        Err(e) => Err(format!("reading the {what} child's answer: {e}")),
    };
    out.map_err(|e| HelperError::Io {
        op: what.to_string(),
        target: "confined child".into(),
        message: e,
        errno: None,
    })
}

async fn read_all(fd: OwnedFd) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(std::io::Error::from)?;
    let mut r = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).await?;
    Ok(buf)
}

/// Reaps the child. Its pipe has closed, so it is exiting and this wait is short.
fn wait_child(pid: nix::unistd::Pid) -> String {
    match nix::sys::wait::waitpid(pid, None) {
        Ok(s) => format!("{s:?}"),
        Err(e) => format!("waitpid: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &std::path::Path) -> OwnedFd {
        OwnedFd::from(std::fs::File::open(p).expect("open"))
    }

    #[test]
    fn the_parent_links_and_renames_only_beneath_one_write_root() {
        let t = tempfile::tempdir().expect("tmp");
        let (root, other) = (t.path().join("root"), t.path().join("other"));
        for d in [root.join("a"), root.join("b"), other.clone()] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(root.join("a/x"), b"x").expect("x");
        std::fs::write(other.join("secret"), b"s").expect("secret");
        let (r, a, b, o) = (
            open(&root),
            open(&root.join("a")),
            open(&root.join("b")),
            open(&other),
        );
        let roots = [r.as_fd()];
        let ask = |op: u8, from: &OwnedFd, old: &str, to: &OwnedFd, new: &str| {
            let mut msg = vec![op];
            msg.extend(old.as_bytes());
            msg.push(0);
            msg.extend(new.as_bytes());
            let fds = [from.try_clone().expect("dup"), to.try_clone().expect("dup")];
            serve_one(&roots, &msg, &fds)
        };
        use nix::errno::Errno;
        assert_eq!(ask(0, &a, "x", &b, "y"), Errno::UnknownErrno);
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &std::path::Path| std::fs::metadata(p).expect("meta").ino();
        assert_eq!(ino(&root.join("a/x")), ino(&root.join("b/y")));
        assert_eq!(ask(1, &b, "y", &r, "z"), Errno::UnknownErrno);
        assert!(root.join("z").exists() && !root.join("b/y").exists());
        // Out of the root, in either direction; names that are paths.
        assert_eq!(ask(0, &o, "secret", &b, "s"), Errno::EXDEV);
        assert_eq!(ask(1, &a, "x", &o, "x"), Errno::EXDEV);
        assert_eq!(ask(0, &a, "../a/x", &b, "w"), Errno::EINVAL);
        assert_eq!(ask(0, &a, "x", &b, ".."), Errno::EINVAL);
        assert_eq!(ask(0, &a, "", &b, "w"), Errno::EINVAL);
        assert_eq!(
            serve_one(&roots, b"\x00x\x00y", &[a.try_clone().expect("dup")]),
            Errno::EINVAL
        );
        assert!(!root.join("b/s").exists() && !other.join("x").exists());
        // Outside a child there is no parent to ask.
        assert_eq!(
            refer(Refer::Link, a.as_fd(), "x", b.as_fd(), "v"),
            Err(Errno::EXDEV)
        );
    }
}
