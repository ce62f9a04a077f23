//! The file-descriptor side channel.
//!
//! tarpc carries no fds, so each helper gets a second socket (a SOCK_SEQPACKET socketpair,
//! fd [`crate::FDPASS_FD`] in the helper) on which it sends fds with SCM_RIGHTS, each
//! message carrying an 8-byte [`FdTicket`]. The RPC answer names the ticket; silod takes the
//! fds that arrived under it. Only helpers send; silod never sends fds to a helper, so a
//! compromised daemon cannot smuggle an fd (a host directory, a foreign namespace) into one.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

/// At most this many fds travel in one message.
pub const MAX_FDS: usize = 8;

/// Names one batch of fds on the side channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FdTicket(pub u64);

/// Errors of the side channel.
#[derive(Debug, thiserror::Error)]
pub enum FdPassError {
    /// sendmsg/recvmsg failed.
    #[error("fd channel {op}: {source}")]
    Sys {
        /// The call.
        op: &'static str,
        /// The errno.
        source: nix::errno::Errno,
    },
    /// The peer closed the channel.
    #[error("fd channel closed by the peer")]
    Closed,
    /// A message was malformed (wrong length, truncated control data, too many fds).
    #[error("fd channel: malformed message: {0}")]
    Malformed(String),
    /// No fds arrived under the ticket in time.
    #[error("fd channel: nothing arrived for ticket {0} in time")]
    Timeout(u64),
}

/// Makes the pair: (helper's sending end, silod's receiving end). Both are close-on-exec.
pub fn pair() -> Result<(OwnedFd, OwnedFd), FdPassError> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| FdPassError::Sys {
        op: "socketpair",
        source,
    })
}

/// Puts a helper's two sockets on [`crate::RPC_FD`] and [`crate::FDPASS_FD`] in a forked
/// child, before exec. Both are first moved above the low numbers, so that one landing on
/// the other's target number (fd 3 or 4 in the parent) cannot be overwritten mid-shuffle.
/// Only async-signal-safe calls (fcntl, dup2); the copies on 3 and 4 lose close-on-exec.
pub fn place_in_child(rpc: RawFd, fds: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) and dup2 on fds open in this process; no memory is touched.
    unsafe {
        let high_rpc = libc::fcntl(rpc, libc::F_DUPFD_CLOEXEC, 100);
        let high_fds = libc::fcntl(fds, libc::F_DUPFD_CLOEXEC, 100);
        if high_rpc < 0 || high_fds < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(high_rpc, crate::RPC_FD) < 0 || libc::dup2(high_fds, crate::FDPASS_FD) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The helper's end: sends fds under tickets it allocates.
#[derive(Debug)]
pub struct FdSender {
    sock: OwnedFd,
    next: std::sync::atomic::AtomicU64,
}

impl FdSender {
    /// Wraps the sending socket.
    pub fn new(sock: OwnedFd) -> Self {
        FdSender {
            sock,
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Sends `fds` and returns the ticket to put in the RPC answer.
    pub fn send(&self, fds: &[BorrowedFd<'_>]) -> Result<FdTicket, FdPassError> {
        if fds.is_empty() || fds.len() > MAX_FDS {
            return Err(FdPassError::Malformed(format!(
                "{} fds (1 to {MAX_FDS} allowed)",
                fds.len()
            )));
        }
        let ticket = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let bytes = ticket.to_le_bytes();
        let iov = [IoSlice::new(&bytes)];
        let cmsg = [ControlMessage::ScmRights(&raw)];
        sendmsg::<()>(self.sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map_err(
            |source| FdPassError::Sys {
                op: "sendmsg",
                source,
            },
        )?;
        Ok(FdTicket(ticket))
    }
}

/// One received packet: its length, the fds it carried (close-on-exec, owned), and whether
/// the kernel truncated data or control (a peer that does not speak the protocol).
#[derive(Debug)]
pub struct Packet {
    /// Bytes of data.
    pub len: usize,
    /// Fds that came with it.
    pub fds: Vec<OwnedFd>,
    /// MSG_TRUNC or MSG_CTRUNC was set.
    pub truncated: bool,
}

/// The most descriptors one message can carry (the kernel's SCM_MAX_FD).
pub const SCM_MAX_FD: usize = 253;

/// recvmsg of one packet into `buf`, taking ownership of up to `N` fds; a packet with more
/// comes back `truncated` (and the ones that fit are closed with it).
pub fn recv_packet<const N: usize>(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<Packet, nix::errno::Errno> {
    let mut cbuf = nix::cmsg_space!([RawFd; N]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cbuf),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel just installed this fd in our table for this message and
                // nothing else refers to it; we take sole ownership here.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(Packet {
        len: msg.bytes,
        fds,
        truncated: msg
            .flags
            .intersects(MsgFlags::MSG_CTRUNC | MsgFlags::MSG_TRUNC),
    })
}

/// Receives one message: its ticket and the fds it carried.
pub fn recv_one(sock: BorrowedFd<'_>) -> Result<(FdTicket, Vec<OwnedFd>), FdPassError> {
    let mut buf = [0u8; 8];
    let p = recv_packet::<MAX_FDS>(sock, &mut buf).map_err(|source| FdPassError::Sys {
        op: "recvmsg",
        source,
    })?;
    if p.len == 0 && p.fds.is_empty() {
        return Err(FdPassError::Closed);
    }
    if p.truncated {
        return Err(FdPassError::Malformed("message truncated".into()));
    }
    if p.len != 8 {
        return Err(FdPassError::Malformed(format!("{}-byte message", p.len)));
    }
    Ok((FdTicket(u64::from_le_bytes(buf)), p.fds))
}

/// Fds received and not yet taken, by ticket, with a condvar for takers.
type Pending = Arc<(Mutex<HashMap<u64, Vec<OwnedFd>>>, std::sync::Condvar)>;

/// silod's end: a thread drains the socket into a map that callers take from by ticket.
#[derive(Debug, Clone)]
pub struct FdReceiver {
    inner: Pending,
}

impl FdReceiver {
    /// Starts the draining thread on `sock`.
    pub fn spawn(sock: OwnedFd, helper: &'static str) -> std::io::Result<Self> {
        let inner: Pending = Arc::default();
        let shared = inner.clone();
        std::thread::Builder::new()
            .name(format!("fdpass-{helper}"))
            .spawn(move || loop {
                match recv_one(sock.as_fd_borrowed()) {
                    Ok((t, fds)) => {
                        let (m, cv) = &*shared;
                        if let Ok(mut map) = m.lock() {
                            map.insert(t.0, fds);
                        }
                        cv.notify_all();
                    }
                    Err(FdPassError::Closed) => break,
                    Err(e) => {
                        tracing::error!(helper, error = %e, "fd side channel refused a message");
                    }
                }
            })?;
        Ok(FdReceiver { inner })
    }

    /// Takes the fds sent under `ticket`, waiting up to `timeout` for them to arrive.
    pub fn take(&self, ticket: FdTicket, timeout: Duration) -> Result<Vec<OwnedFd>, FdPassError> {
        let (m, cv) = &*self.inner;
        let deadline = std::time::Instant::now() + timeout;
        let mut map = m
            .lock()
            .map_err(|_| FdPassError::Malformed("receiver poisoned".into()))?;
        loop {
            if let Some(fds) = map.remove(&ticket.0) {
                return Ok(fds);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(FdPassError::Timeout(ticket.0));
            }
            map = cv
                .wait_timeout(map, deadline - now)
                .map_err(|_| FdPassError::Malformed("receiver poisoned".into()))?
                .0;
        }
    }
}

trait AsFdBorrowed {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl AsFdBorrowed for OwnedFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn fds_cross_with_their_ticket() {
        let (tx, rx) = pair().expect("pair");
        let sender = FdSender::new(tx);
        let receiver = FdReceiver::spawn(rx, "test").expect("spawn");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let t = sender.send(&[w.as_fd()]).expect("send");
        drop(w);
        let mut fds = receiver.take(t, Duration::from_secs(5)).expect("take");
        assert_eq!(fds.len(), 1);
        let mut wf = std::fs::File::from(fds.remove(0));
        wf.write_all(b"through").expect("write");
        drop(wf);
        let mut s = String::new();
        std::fs::File::from(r).read_to_string(&mut s).expect("read");
        assert_eq!(s, "through");
    }

    #[test]
    fn unknown_ticket_times_out_and_limits_hold() {
        let (tx, rx) = pair().expect("pair");
        let sender = FdSender::new(tx);
        let receiver = FdReceiver::spawn(rx, "test").expect("spawn");
        assert!(matches!(
            receiver.take(FdTicket(99), Duration::from_millis(50)),
            Err(FdPassError::Timeout(99))
        ));
        assert!(sender.send(&[]).is_err());
    }
}
