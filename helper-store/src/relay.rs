//! The sender's remote shell. rsync's client runs `-e <program>` with its protocol on the
//! program's stdin and stdout (LXD uses `lxd netcat`); silo-store's own binary, started as
//! `silo-store --rsync-relay ...` (the arguments rsync adds for a real remote shell are
//! ignored), joins those to the transport socket it inherits on fd 3 through rsync. It runs
//! under the session's confinement (caps, landlock, rsync's seccomp filter) and does nothing
//! but move bytes: one thread, non-blocking, a bounded buffer each way.
//!
//! End of stream: rsync closing our stdin shuts down the socket's write side (the peer sees
//! EOF); EOF on the socket (silod's `shutdown(SHUT_WR)` when the peer's stream ended) closes
//! our stdout, so rsync sees EOF, and the relay exits (rsync waits for its remote shell
//! before it exits itself); it also exits when rsync is gone (our stdout's reader closed).

use std::os::fd::RawFd;

use crate::rsync::RELAY_SOCK_FD;

const BUF: usize = 64 * 1024;

struct Way {
    from: RawFd,
    to: RawFd,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    done: bool,
}

impl Way {
    fn new(from: RawFd, to: RawFd) -> Way {
        Way {
            from,
            to,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
            eof: false,
            done: false,
        }
    }
}

fn nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an inherited fd number; failure leaves it blocking, which only slows.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

fn would_block() -> bool {
    matches!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EINTR)
    )
}

/// Runs the relay; never returns.
pub fn run() -> ! {
    let code = relay();
    // SAFETY: leaving without unwinding; nothing to flush.
    unsafe { libc::_exit(code) }
}

fn relay() -> i32 {
    for fd in [0, 1, RELAY_SOCK_FD] {
        nonblocking(fd);
    }
    // rsync → peer, peer → rsync.
    let mut ways = [Way::new(0, RELAY_SOCK_FD), Way::new(RELAY_SOCK_FD, 1)];
    loop {
        // The peer's stream ended (and all of it reached rsync): done, as `lxd netcat` is;
        // rsync waits for its remote shell to exit before it does.
        if ways[1].done {
            return 0;
        }
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(5);
        let mut roles: Vec<(usize, bool)> = Vec::with_capacity(5);
        for (i, w) in ways.iter().enumerate() {
            if w.done {
                continue;
            }
            if !w.eof && w.end < BUF {
                pfds.push(libc::pollfd {
                    fd: w.from,
                    events: libc::POLLIN,
                    revents: 0,
                });
                roles.push((i, true));
            }
            if w.end > w.start {
                pfds.push(libc::pollfd {
                    fd: w.to,
                    events: libc::POLLOUT,
                    revents: 0,
                });
                roles.push((i, false));
            }
        }
        // rsync closing its end of our stdout: it is gone, nothing more to do.
        if !ways[1].done {
            pfds.push(libc::pollfd {
                fd: 1,
                events: 0,
                revents: 0,
            });
            roles.push((usize::MAX, false));
        }
        // SAFETY: a valid array of pollfds of the length given.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if would_block() {
                continue;
            }
            return 1;
        }
        for (p, (i, reading)) in pfds.iter().zip(roles.iter()) {
            if p.revents == 0 {
                continue;
            }
            if *i == usize::MAX {
                if p.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                    return 0;
                }
                continue;
            }
            if p.revents & libc::POLLNVAL != 0 {
                return 1;
            }
            let w = &mut ways[*i];
            if *reading {
                let room = &mut w.buf[w.end..];
                // SAFETY: reading into the free tail of our buffer.
                let r = unsafe { libc::read(w.from, room.as_mut_ptr().cast(), room.len()) };
                if r > 0 {
                    w.end += r as usize;
                } else if r == 0 || !would_block() {
                    w.eof = true;
                }
            } else {
                let data = &w.buf[w.start..w.end];
                // SAFETY: writing the filled part of our buffer.
                let r = unsafe { libc::write(w.to, data.as_ptr().cast(), data.len()) };
                if r > 0 {
                    w.start += r as usize;
                } else if r < 0 && !would_block() {
                    // The other side is gone (EPIPE: SIGPIPE is ignored by Rust's start-up).
                    return 1;
                }
            }
            if w.start == w.end {
                w.start = 0;
                w.end = 0;
            }
        }
        for (i, w) in ways.iter_mut().enumerate() {
            if w.eof && w.start == w.end && !w.done {
                w.done = true;
                if i == 0 {
                    // SAFETY: shutdown on the inherited socket.
                    unsafe { libc::shutdown(RELAY_SOCK_FD, libc::SHUT_WR) };
                } else {
                    // SAFETY: closing our stdout: rsync reads EOF.
                    unsafe { libc::close(1) };
                }
            }
        }
    }
}
