//! Messages with fds on SEQPACKET sockets between a helper, its launcher (the part forked
//! before the jail) and the processes the launcher forks: one bincode value per packet, fds
//! beside it with SCM_RIGHTS.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest packet: an exec's command and environment fit with room to spare.
pub const MAX_PACKET: usize = 192 * 1024;

fn errno(op: &str, e: nix::errno::Errno) -> io::Error {
    io::Error::new(io::Error::from(e).kind(), format!("{op}: {e}"))
}

/// A close-on-exec SEQPACKET pair with buffers big enough for [`MAX_PACKET`].
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| errno("socketpair", e))?;
    for s in [&a, &b] {
        let size = (MAX_PACKET * 2) as libc::c_int;
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
            // SAFETY: setsockopt with a pointer to a c_int of the size given.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &size as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }
    Ok((a, b))
}

/// Sends one value with fds.
pub fn send<T: Serialize>(sock: BorrowedFd<'_>, v: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let bytes = bincode::serialize(v)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    if bytes.len() > MAX_PACKET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}-byte message is over {MAX_PACKET}", bytes.len()),
        ));
    }
    if fds.len() > crate::fdpass::SCM_MAX_FD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} fds in one message; the kernel takes at most {}",
                fds.len(),
                crate::fdpass::SCM_MAX_FD
            ),
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [IoSlice::new(&bytes)];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cm: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cm, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| errno("sendmsg", e))?;
    Ok(())
}

/// Receives one packet: `Ok(None)` when the peer closed.
pub fn recv_raw(sock: BorrowedFd<'_>) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_PACKET];
    // As many fds as a message can hold: a network state request carries one per instance.
    let p = crate::fdpass::recv_packet::<{ crate::fdpass::SCM_MAX_FD }>(sock, &mut buf)
        .map_err(|e| errno("recvmsg", e))?;
    if p.len == 0 && p.fds.is_empty() {
        return Ok(None);
    }
    if p.truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "truncated message",
        ));
    }
    buf.truncate(p.len);
    Ok(Some((buf, p.fds)))
}

/// Decodes a packet.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    bincode::deserialize(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Receives and decodes one value; `Ok(None)` when the peer closed.
pub fn recv<T: DeserializeOwned>(sock: BorrowedFd<'_>) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    match recv_raw(sock)? {
        None => Ok(None),
        Some((b, fds)) => Ok(Some((decode(&b)?, fds))),
    }
}

/// Waits until `fd` is readable or `timeout_ms` passes (-1: forever). Returns whether it is.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return r > 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_message_carries_as_many_fds_as_the_kernel_allows() {
        let (a, b) = pair().expect("pair");
        let files: Vec<OwnedFd> = (0..crate::fdpass::SCM_MAX_FD)
            .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").expect("open")))
            .collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        send(a.as_fd(), &7u32, &fds).expect("send");
        let (v, got) = recv::<u32>(b.as_fd()).expect("recv").expect("a message");
        assert_eq!((v, got.len()), (7, crate::fdpass::SCM_MAX_FD));

        let one_more: Vec<OwnedFd> = (0..=crate::fdpass::SCM_MAX_FD)
            .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").expect("open")))
            .collect();
        let fds: Vec<BorrowedFd<'_>> = one_more.iter().map(|f| f.as_fd()).collect();
        let e = send(a.as_fd(), &7u32, &fds).expect_err("too many");
        assert!(e.to_string().contains("at most 253"), "{e}");
    }
}
