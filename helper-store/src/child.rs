//! Short-lived children for work on untrusted data (image tarballs, volume trees).
//!
//! silo-store mounts, so it cannot landlock its own filesystem access; a child that only
//! reads and writes files can. The child keeps the file-only capabilities, landlocks itself to
//! the directories it was given (by fd, opened by the parent beneath its roots), runs the work
//! and reports one JSON value through a pipe. silo-store's runtime is single-threaded, so
//! forking it is sound.

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
];

fn confine(write: &[BorrowedFd<'_>], read: &[BorrowedFd<'_>]) -> Result<(), String> {
    // Dropping from permitted is for good; the bounding set only matters across exec, which
    // silo-store's filter forbids (and silo-store holds no CAP_SETPCAP to cut it).
    let keep: CapsHashSet = CHILD_CAPS.iter().copied().collect();
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
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| HelperError::errno("pipe2", what, e))?;
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
            let out: Result<Result<T, E>, String> = confine(write, read).map(|()| work());
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
    let bytes = read_all(rx).await;
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
