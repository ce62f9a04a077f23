//! The kernel calls the launcher makes that neither std nor nix wraps (clone3, the new mount
//! API, pidfds), each checked and turned into an `io::Error` carrying what was attempted.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// An error with the call and its target.
pub fn err(op: &str, what: impl std::fmt::Display) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{op} {what}: {e}"))
}

pub fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What clone3 gave the caller.
pub enum Cloned {
    /// In the new process.
    Child,
    /// In the caller: the child's pid (in the caller's pid namespace) and a pidfd for it.
    Parent { pid: i32, pidfd: OwnedFd },
}

/// CLONE_INTO_CGROUP (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3 with fork semantics (no new stack) and a pidfd for the child, the child born in the
/// cgroup2 group `cgroup` (an fd of its directory) when given: no migration afterwards, so
/// none of the RCU grace period a `cgroup.procs` write waits for.
///
/// # Safety
/// The caller must be single-threaded, as for fork: the child runs on a copy of the caller's
/// stack and may only do what is safe after fork.
pub unsafe fn clone3_into(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Cloned> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags
            | libc::CLONE_PIDFD as u64
            | if cgroup.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map(|c| c.as_raw_fd() as u64).unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; the kernel writes the pidfd into
    // `pidfd`, which outlives the call. Fork semantics are the caller's contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        -1 => Err(err("clone3", "")),
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent {
            pid: pid as i32,
            // SAFETY: CLONE_PIDFD made the kernel install this fd for us.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// open_tree(OPEN_TREE_CLONE) of the directory `fd` refers to: a detached copy of that mount.
pub fn clone_tree(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: u32 = 1;
    let empty = cstr("")?;
    // SAFETY: a valid fd, a NUL-terminated empty path and flags; returns a new fd or -1.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32,
        )
    };
    if r < 0 {
        return Err(err("open_tree", "rootfs"));
    }
    // SAFETY: the kernel returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr` on the whole of a detached mount `mnt`; `what` names the change and the
/// mount in the error.
fn set_mount_attr(mnt: BorrowedFd<'_>, attr: &MountAttr, what: (&str, &str)) -> io::Result<()> {
    let empty = cstr("")?;
    // SAFETY: a valid fd, an empty path with AT_EMPTY_PATH, and a mount_attr of the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(err(what.0, what.1));
    }
    Ok(())
}

/// Readies the detached clone of an instance's root volume: idmapped through the instance's
/// user namespace `userns` (none for a privileged instance), and with `nosuid` cleared.
///
/// On the host side every pool is mounted nosuid,nodev, so a set-uid file container root made
/// gives no host user anything; this clone is the one place those bits count, and it is only
/// ever attached inside the instance's own mount namespace.
pub fn prepare_root_tree(mnt: BorrowedFd<'_>, userns: Option<BorrowedFd<'_>>) -> io::Result<()> {
    const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let attr = MountAttr {
        attr_set: if userns.is_some() {
            MOUNT_ATTR_IDMAP
        } else {
            0
        },
        attr_clr: MOUNT_ATTR_NOSUID,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    set_mount_attr(mnt, &attr, ("mount_setattr(idmap, suid)", "rootfs"))
}

/// Readies the detached clone of an instance's `devlxd` directory for `/dev/lxd`: read-only,
/// nosuid, nodev, noexec and private, so nothing the instance does through it reaches the host
/// directory and nothing can be planted there from inside.
pub fn prepare_devlxd_tree(mnt: BorrowedFd<'_>) -> io::Result<()> {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_NOEXEC: u64 = 0x8;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    set_mount_attr(
        mnt,
        &attr,
        ("mount_setattr(ro, nosuid, nodev, noexec)", "devlxd"),
    )
}

/// setns into the one namespace `fd` refers to (of kind `nstype`, a CLONE_NEW* flag).
pub fn setns_fd(fd: BorrowedFd<'_>, nstype: libc::c_int, what: &str) -> io::Result<()> {
    // SAFETY: setns takes an fd and a flag.
    if unsafe { libc::setns(fd.as_raw_fd(), nstype) } < 0 {
        return Err(err("setns", what));
    }
    Ok(())
}

/// Attaches the detached mount `mnt` at `target` (a path in the caller's mount namespace).
pub fn move_mount_to(mnt: BorrowedFd<'_>, target: &str) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
    let empty = cstr("")?;
    let t = cstr(target)?;
    // SAFETY: a valid fd, NUL-terminated paths; returns 0 or -1.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(err("move_mount", target));
    }
    Ok(())
}

/// mount(2) with optional source, fstype and data.
pub fn mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let s = src.map(cstr).transpose()?;
    let t = cstr(target)?;
    let f = fstype.map(cstr).transpose()?;
    let d = data.map(cstr).transpose()?;
    // SAFETY: NUL-terminated strings or NULL, as mount(2) takes them.
    let r = unsafe {
        libc::mount(
            s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            d.as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void),
        )
    };
    if r < 0 {
        return Err(err(
            "mount",
            format!("{} on {target}", src.or(fstype).unwrap_or("none")),
        ));
    }
    Ok(())
}

/// setns into every namespace of the process behind `pidfd` named in `flags`, at once.
pub fn setns_pidfd(pidfd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes an fd and flags.
    if unsafe { libc::setns(pidfd.as_raw_fd(), flags) } < 0 {
        return Err(err("setns", "the instance's namespaces"));
    }
    Ok(())
}

/// pidfd_open.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: takes a pid and flags; returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(err("pidfd_open", pid));
    }
    // SAFETY: the kernel returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// pidfd_send_signal.
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: an fd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(err("pidfd_send_signal", sig));
    }
    Ok(())
}

pub use silo_proto::jail::launcher::close_fds_except;

pub use silo_proto::procinfo::start_time;

/// Writes (replacing) a small root-only record file in a directory opened by fd, never
/// through a symlink.
pub fn write_record(dir: BorrowedFd<'_>, name: &str, data: &str) -> io::Result<()> {
    use std::io::Write;
    let fd = nix::fcntl::openat(
        dir,
        name,
        nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_TRUNC
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("openat {name}: {e}")))?;
    std::fs::File::from(fd).write_all(data.as_bytes())
}

/// A new pty in the devpts of the caller's mount namespace: (master, slave, slave path),
/// sized `cols`x`rows`. Both ends are close-on-exec and not the caller's controlling tty.
pub fn open_pty(cols: u16, rows: u16) -> io::Result<(OwnedFd, OwnedFd, String)> {
    use nix::fcntl::OFlag;
    let e = |op: &'static str| {
        move |x: nix::errno::Errno| io::Error::new(io::Error::from(x).kind(), format!("{op}: {x}"))
    };
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).map_err(e("opening /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(e("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(e("unlockpt"))?;
    let path = nix::pty::ptsname_r(&master).map_err(e("ptsname"))?;
    let slave = nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty())
        .map_err(e("opening the pty's terminal"))?;
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on a pty master we hold, with a pointer to a winsize.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Ok((master.into(), slave, path))
}
