//! silod's own confinement once it has dropped root (reviewed with ../seccomp.json and
//! ../CONFINEMENT.md).

use std::path::{Path, PathBuf};

use silo_proto::jail::landlock_rules::{FsRules, NetRules, TcpBind};
use silo_proto::jail::{existing, Jail, LandlockSpec, SeccompMode};

static SECCOMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));
static SECCOMP_LOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_log.bpf"));

/// What silod reads outside its state dir besides /proc: the system's CA store (TLS to image
/// servers and remotes; a private CA added with update-ca-certificates lands in these) and
/// name resolution's files.
pub const SYSTEM_READ: &[&str] = &[
    "/etc/ssl/certs",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/etc/ca-certificates",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
];

/// The sysfs trees `GET /1.0/resources` reads (CPU topology and caches, memory blocks and
/// NUMA nodes, network, block, DRM and DMI classes, PCI and USB buses, drivers' versions).
/// Read-only, and only what the file modes give any unprivileged user: DMI's serial numbers
/// and UUID stay root's.
pub const SYSFS_READ: &[&str] = &[
    "/sys/devices",
    "/sys/class",
    "/sys/bus",
    "/sys/block",
    "/sys/module",
];

/// The jail: no capabilities at all; the state dir read-write; /proc read-only (helpers'
/// confinement for `GET /1.0`), the sysfs trees of [`SYSFS_READ`] read-only, the CA store and resolver files read-only; TCP bind on
/// unprivileged ports only (the HTTPS API; a privileged port is bound by silo-net where the
/// policy allows and handed over), TCP connect anywhere (image servers and remotes);
/// no abstract sockets or signals outside itself. `extra_read` is what the operator pointed
/// silod at (`SSL_CERT_FILE`/`SSL_CERT_DIR`).
pub fn jail(state_dir: &Path, seccomp_mode: SeccompMode, extra_read: &[PathBuf]) -> Jail {
    let mut read = existing(&["/proc"]);
    read.extend(existing(SYSTEM_READ));
    read.extend(existing(SYSFS_READ));
    read.extend(extra_read.iter().filter(|p| p.exists()).cloned());
    read.retain(|p| !p.starts_with(state_dir));
    Jail {
        name: "silod",
        keep_caps: Vec::new(),
        landlock: LandlockSpec {
            fs: Some(FsRules {
                read,
                write: vec![state_dir.to_path_buf()],
            }),
            scope_signal: true,
            net: NetRules {
                bind_tcp: unprivileged_ports(),
                connect_tcp_any: true,
            },
        },
        seccomp: SECCOMP,
        seccomp_log: SECCOMP_LOG,
        seccomp_mode,
    }
}

/// TCP ports silod may bind: the unprivileged ones. Without capabilities the kernel already
/// refuses ports below `net.ipv4.ip_unprivileged_port_start`; only where that was lowered
/// below 1024 are landlock's 64,512 per-port rules (some 115 ms at start) needed to keep
/// silod off the privileged ports.
fn unprivileged_ports() -> TcpBind {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    match start {
        Some(n) if n >= 1024 => TcpBind::Unhandled,
        _ => TcpBind::Ports(vec![1024..=u16::MAX]),
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use std::os::fd::AsRawFd;

    use super::SECCOMP;

    /// Runs `f` in a forked child under silod's enforcing filter and returns how it ended.
    /// The child makes raw syscalls only (no allocation), so forking a threaded test is safe.
    fn under_filter(f: impl FnOnce() -> i32) -> WaitStatus {
        let prog = silo_proto::jail::seccomp::decode(SECCOMP).expect("decode silod's filter");
        let fprog = libc::sock_fprog {
            len: u16::try_from(prog.len()).expect("program length"),
            // seccompiler's sock_filter has the kernel's layout (u16, u8, u8, u32).
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the child calls only async-signal-safe raw syscalls (prctl, seccomp, the
        // ioctl under test, _exit) and never returns into the test harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                // SAFETY: prctl and seccomp with valid arguments; fprog outlives the call.
                unsafe {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        libc::_exit(100);
                    }
                    if libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        0,
                        &fprog as *const libc::sock_fprog,
                    ) != 0
                    {
                        libc::_exit(101);
                    }
                    libc::_exit(f())
                }
            }
            ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
        }
    }

    fn killed_by_sigsys(st: WaitStatus) -> bool {
        matches!(st, WaitStatus::Signaled(_, Signal::SIGSYS, _))
    }

    #[test]
    fn terminal_injection_ioctls_kill_silod() {
        let c: libc::c_char = b'x' as libc::c_char;
        for (name, req) in [
            ("TIOCSTI", libc::TIOCSTI),
            ("TIOCLINUX", libc::TIOCLINUX),
            ("TIOCSETD", libc::TIOCSETD),
            ("TIOCSCTTY", libc::TIOCSCTTY),
        ] {
            // The request number is checked before the fd: stdin (whatever it is) will do,
            // and without the filter the call merely fails and the child exits 0.
            let st = under_filter(|| {
                // SAFETY: ioctl with a pointer to a live char.
                unsafe { libc::ioctl(0, req, &c) };
                0
            });
            assert!(killed_by_sigsys(st), "{name}: {st:?}");
        }
    }

    #[test]
    fn the_ioctls_silod_needs_still_work() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let sock = a.as_raw_fd();
        let st = under_filter(|| {
            let on: libc::c_int = 1;
            // SAFETY: FIONBIO with a pointer to a live int on an fd we own.
            i32::from(unsafe { libc::ioctl(sock, libc::FIONBIO, &on) } != 0)
        });
        assert_eq!(st, WaitStatus::Exited(st.pid().expect("pid"), 0), "FIONBIO");

        let pty = nix::pty::openpty(None, None).expect("openpty");
        let master = pty.master.as_raw_fd();
        let st = under_filter(|| {
            let ws = libc::winsize {
                ws_row: 40,
                ws_col: 100,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ with a pointer to a live winsize on a pty master we own.
            i32::from(unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) } != 0)
        });
        assert_eq!(
            st,
            WaitStatus::Exited(st.pid().expect("pid"), 0),
            "TIOCSWINSZ"
        );
    }
}
