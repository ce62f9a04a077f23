//! A helper's launcher: a child forked before the helper confines itself, for the work the
//! jail forbids (execing dnsmasq, making containers, entering namespaces). The helper talks to
//! it over a SEQPACKET socket ([`super::wire`]); it takes only the requests its own module
//! defines and leaves when the helper's end closes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire;
use crate::error::{HelperError, HelperResult};

/// The helper's end.
#[derive(Debug)]
pub struct LauncherClient {
    who: &'static str,
    sock: tokio::sync::Mutex<Option<tokio::io::unix::AsyncFd<OwnedFd>>>,
    raw: std::sync::Mutex<Option<OwnedFd>>,
}

impl LauncherClient {
    /// Forks the launcher, which runs `serve` on its end of the socket with every other fd
    /// closed. Call it while the helper is single-threaded, before the jail.
    pub fn fork(who: &'static str, serve: fn(OwnedFd) -> !) -> HelperResult<Self> {
        let (ours, theirs) = wire::pair().map_err(|e| HelperError::io("socketpair", who, e))?;
        // SAFETY: the helper is single-threaded at start-up; the child only confines itself
        // and serves, leaving through exit.
        match unsafe { nix::unistd::fork() } {
            Err(e) => Err(HelperError::errno("fork", who, e)),
            Ok(nix::unistd::ForkResult::Child) => {
                drop(ours);
                close_fds_except(&[theirs.as_raw_fd()]);
                // Launchers enter instances' namespaces: they must never be dumpable (see
                // `non_dumpable`), whatever their parent was.
                if let Err(e) = crate::jail::caps_drop::non_dumpable() {
                    eprintln!("{who}: {e}");
                    std::process::exit(2);
                }
                serve(theirs)
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => {
                drop(theirs);
                Ok(LauncherClient {
                    who,
                    sock: tokio::sync::Mutex::new(None),
                    raw: std::sync::Mutex::new(Some(ours)),
                })
            }
        }
    }

    fn gone(&self) -> HelperError {
        HelperError::Unsupported(format!("{} is gone (see the log)", self.who))
    }

    /// One request, one reply (requests are serialized: the launcher is single-threaded).
    pub async fn call<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        req: &Req,
        fds: &[BorrowedFd<'_>],
    ) -> HelperResult<Rep> {
        Ok(self.call_with_fds(req, fds).await?.0)
    }

    /// [`LauncherClient::call`], keeping the fds the reply carries.
    pub async fn call_with_fds<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        req: &Req,
        fds: &[BorrowedFd<'_>],
    ) -> HelperResult<(Rep, Vec<OwnedFd>)> {
        let who = self.who;
        let mut guard = self.sock.lock().await;
        if guard.is_none() {
            let raw = self
                .raw
                .lock()
                .ok()
                .and_then(|mut r| r.take())
                .ok_or_else(|| self.gone())?;
            set_nonblocking(&raw);
            *guard = Some(async_fd(raw).map_err(|e| HelperError::io("register", who, e))?);
        }
        let sock = guard.as_ref().ok_or_else(|| self.gone())?;
        wire::send(sock.as_fd(), req, fds).map_err(|e| HelperError::io("send", who, e))?;
        loop {
            let mut ready = sock
                .readable()
                .await
                .map_err(|e| HelperError::io("poll", who, e))?;
            match ready.try_io(|s| wire::recv::<Rep>(s.as_fd())) {
                Ok(Ok(Some((r, fds)))) => return Ok((r, fds)),
                Ok(Ok(None)) => return Err(self.gone()),
                Ok(Err(e)) => return Err(HelperError::io("recv", who, e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Registers an fd with the reactor.
pub fn async_fd(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd moves into the AsyncFd, so the fd stays open and keeps its number
    // for the AsyncFd's whole life.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Puts an fd in non-blocking mode.
pub fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Closes every fd from 3 up except those in `keep`, with close_range over the gaps (a few
/// syscalls instead of one per possible fd).
pub fn close_fds_except(keep: &[RawFd]) {
    let mut k: Vec<u32> = keep
        .iter()
        .filter(|f| **f >= 3)
        .map(|f| *f as u32)
        .collect();
    k.sort_unstable();
    let mut from = 3u32;
    for fd in k {
        if fd > from {
            // SAFETY: close_range on a range of fd numbers; no memory is touched.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = fd + 1;
    }
    // SAFETY: as above, up to the largest fd number.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
}

/// Reaps every exited child without blocking; returns (pid, wait status) of each.
pub fn reap_children() -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    loop {
        let mut st = 0;
        // SAFETY: waitpid with WNOHANG on any child; status is a local.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r <= 0 {
            return out;
        }
        out.push((r, st));
    }
}
