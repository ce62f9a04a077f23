//! Starting an instance: the monitor process and the setup init's process does before it
//! execs /sbin/init.
//!
//! launcher ─clone3(into .monitors)→ monitor ─clone3(NEWUSER|NEWPID|NEWNET|NEWUTS|NEWIPC)→ init
//!
//! The monitor writes the id maps and hands init its cgroups. Then it forks a mounter into
//! init's pid namespace (pid 2, host root in the host's user namespace, non-dumpable, gone
//! before init execs): it joins init's net, uts and ipc namespaces, unshares a mount namespace
//! that the host's user namespace owns and makes there every mount that confines the instance
//! (the idmapped root, /proc with /proc/sys read-only, /sys read-only, the /dev binds),
//! pivots, then joins the instance's user namespace and unshares a second mount namespace. The
//! kernel copies the first into the second locked (MNT_LOCKED and the flag locks): container
//! root can neither unmount those mounts nor make them writable, nor mount a fresh /proc that
//! would not be hidden the same way. Init joins that second namespace (it belongs to
//! init's user namespace, so it may), becomes container root, mounts what container root may
//! own (cgroup2, devpts, /dev/shm, mqueue, /run) and execs /sbin/init.
//!
//! The monitor then drops every capability and stays as init's parent: console pty,
//! console.log, console attach, exit record.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use silo_proto::privileged::{host_id, id_map_text, IdMapLine};

use super::wire;
use super::{Reply, StartReq};
use crate::sys;

/// Console log files are cut back to their last half when they pass this size.
const CONSOLE_LOG_MAX: u64 = 1 << 20;

/// The environment init starts with (LXD's plus `container=lxc`, which systemd reads).
const INIT_ENV: &[&str] = &[
    "container=lxc",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM=linux",
    "HOME=/",
];

/// Forks the monitor and waits for its word that init runs (or why not).
pub fn start(req: StartReq, mut fds: Vec<OwnedFd>) -> Result<Reply, String> {
    let want = if req.devlxd { 3 } else { 2 };
    if fds.len() != want {
        return Err(format!("start needs {want} fds, got {}", fds.len()));
    }
    let devlxd = if req.devlxd { fds.pop() } else { None };
    let rundir = fds.pop().ok_or("no runtime dir fd")?;
    let rootfs = fds.pop().ok_or("no rootfs fd")?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    // Born in the monitors' cgroup2 group: out of this unit's without a migration.
    let into = req.monitor.v2_fd()?;
    // SAFETY: the launcher is single-threaded; the child runs the monitor and leaves with exit.
    match unsafe { sys::clone3_into(0, into.as_ref().map(|f| f.as_fd())) }
        .map_err(|e| format!("clone3: {e}"))?
    {
        sys::Cloned::Child => {
            drop(r);
            let mut keep = vec![rootfs.as_raw_fd(), rundir.as_raw_fd(), w.as_raw_fd(), 2];
            keep.extend(devlxd.as_ref().map(|d| d.as_raw_fd()));
            sys::close_fds_except(&keep);
            monitor(req, rootfs, rundir, devlxd, w)
        }
        sys::Cloned::Parent { pid, pidfd } => {
            drop(pidfd);
            drop(into);
            let child = nix::unistd::Pid::from_raw(pid);
            drop(w);
            drop(rootfs);
            drop(rundir);
            drop(devlxd);
            let mut f = std::fs::File::from(r);
            let mut s = String::new();
            // The monitor answers within the time init's setup takes; a hung mount is the only
            // way it would not, and then the launcher must not hang with it.
            if !wire::wait_readable(f.as_fd(), 60_000) {
                // SAFETY: kill with a pid we forked.
                unsafe { libc::kill(child.as_raw(), libc::SIGKILL) };
                return Err("the instance's setup did not finish within 60s".into());
            }
            let _ = f.read_to_string(&mut s);
            match s.split_once(' ') {
                Some(("ok", pid)) => Ok(Reply::Started {
                    init_pid: pid
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad answer {s:?}"))?,
                    monitor_pid: child.as_raw(),
                }),
                Some(("err", why)) => Err(why.to_string()),
                _ => Err(format!(
                    "the monitor ended without an answer ({})",
                    if s.is_empty() {
                        "see silo-priv's log"
                    } else {
                        &s
                    }
                )),
            }
        }
    }
}

fn die(result: &mut std::fs::File, why: &str) -> ! {
    let _ = write!(result, "err {why}");
    std::process::exit(1)
}

fn monitor(
    req: StartReq,
    rootfs: OwnedFd,
    rundir: OwnedFd,
    devlxd: Option<OwnedFd>,
    w: OwnedFd,
) -> ! {
    let mut result = std::fs::File::from(w);
    // Leave the launcher's session so nothing aimed at it reaches the instance.
    let _ = nix::unistd::setsid();
    // And its cgroups (cgroup2's it was born in): a systemd unit's stop or restart kills what
    // is left in the unit's.
    if let Err(e) = req.monitor.join_v1() {
        die(&mut result, &e);
    }
    let userns = req.idmap_base.is_some();
    let base = req.idmap_base.unwrap_or(0);
    // Container root and group tty (5) on the host: raw.idmap may have moved gid 5.
    let tty = req
        .gid_map
        .as_deref()
        .and_then(|m| host_id(m, 5))
        .unwrap_or(base + 5);
    let console = match Console::open(userns.then_some((base, tty))) {
        Ok(c) => c,
        Err(e) => die(&mut result, &format!("console: {e}")),
    };
    if let Some(dir) = &req.cgroups.v2_dir {
        if userns {
            // Delegate the instance's cgroup2 group to container root, as systemd expects.
            for f in [
                "",
                "cgroup.procs",
                "cgroup.subtree_control",
                "cgroup.threads",
            ] {
                let p = std::path::Path::new(dir).join(f);
                if let Err(e) = std::os::unix::fs::chown(&p, Some(base as u32), Some(base as u32)) {
                    die(&mut result, &format!("chown {}: {e}", p.display()));
                }
            }
        }
    }
    let (msock, csock) = match wire::pair() {
        Ok(p) => p,
        Err(e) => die(&mut result, &e.to_string()),
    };
    // Init inherits the FIFO's read end through clone3 and waits on it before its exec.
    let go = if req.hold {
        match open_go_fifo(rundir.as_fd()) {
            Ok(f) => Some(f),
            Err(e) => die(&mut result, &format!("go FIFO: {e}")),
        }
    } else {
        None
    };
    let mut flags =
        (libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET) as u64;
    if userns {
        flags |= libc::CLONE_NEWUSER as u64;
    }
    // Init is born in the instance's groups: the monitor passes through the v1 ones (a move of
    // itself takes no global lock), init is cloned into the cgroup2 one, and the monitor goes
    // back to its own.
    let into = match req.cgroups.v2_fd() {
        Ok(f) => f,
        Err(e) => die(&mut result, &e),
    };
    if let Err(e) = req.cgroups.join_v1() {
        die(&mut result, &e);
    }
    // SAFETY: the monitor is single-threaded.
    let cloned = unsafe { sys::clone3_into(flags, into.as_ref().map(|f| f.as_fd())) };
    if !matches!(cloned, Ok(sys::Cloned::Child)) {
        if let Err(e) = req.monitor.join_v1() {
            if let Ok(sys::Cloned::Parent { pidfd, .. }) = &cloned {
                let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
            }
            die(
                &mut result,
                &format!("going back to the monitors' groups: {e}"),
            );
        }
    }
    drop(into);
    let (pid, pidfd) = match cloned {
        Err(e) => die(&mut result, &e.to_string()),
        Ok(sys::Cloned::Child) => {
            drop(msock);
            // The launcher reads the monitor's answer to EOF: a held init must not keep the
            // pipe's write end open.
            // SAFETY: closing this process's copy of the fd; `result` is never used here again
            // (init_child leaves through _exit).
            unsafe { libc::close(result.as_raw_fd()) };
            init_child(&req, csock, go)
        }
        Ok(sys::Cloned::Parent { pid, pidfd }) => (pid, pidfd),
    };
    drop(csock);
    drop(go);
    let setup = (|| -> Result<(), String> {
        if userns {
            let full = |m: &Option<Vec<IdMapLine>>| match m {
                Some(m) => id_map_text(m),
                None => format!("0 {base} 65536\n"),
            };
            for (f, m) in [("uid_map", &req.uid_map), ("gid_map", &req.gid_map)] {
                std::fs::write(format!("/proc/{pid}/{f}"), full(m))
                    .map_err(|e| format!("writing {f}: {e}"))?;
            }
        }
        let user = if userns {
            Some(
                std::fs::File::open(format!("/proc/{pid}/ns/user"))
                    .map(OwnedFd::from)
                    .map_err(|e| format!("opening the instance's user namespace: {e}"))?,
            )
        } else {
            None
        };
        let tree = sys::clone_tree(rootfs.as_fd()).map_err(|e| e.to_string())?;
        sys::prepare_root_tree(tree.as_fd(), user.as_ref().map(|u| u.as_fd()))
            .map_err(|e| e.to_string())?;
        // Cloned here, in the host's mount namespace where silo-priv opened it: the mounter's
        // namespace may not clone a mount of another.
        let devlxd = match &devlxd {
            Some(d) => {
                let t = sys::clone_tree(d.as_fd()).map_err(|e| e.to_string())?;
                sys::prepare_devlxd_tree(t.as_fd()).map_err(|e| e.to_string())?;
                Some(t)
            }
            None => None,
        };
        let mnt = confining_mount_ns(&req, pidfd.as_fd(), tree, devlxd, user, &console.slave_path)?;
        // Init joins it, unshares its cgroup namespace (it is in its cgroups now) and goes on.
        wire::send(msock.as_fd(), &(), &[mnt.as_fd()]).map_err(|e| e.to_string())?;
        // EOF means init's exec happened (the socket is close-on-exec); HELD that init waits
        // for its release; any other message is why it could not start.
        match wire::recv_raw(msock.as_fd()) {
            Ok(None) => Ok(()),
            Ok(Some((b, _))) if b == HELD => Ok(()),
            Ok(Some((b, _))) => Err(String::from_utf8_lossy(&b).into_owned()),
            Err(e) => Err(e.to_string()),
        }
    })();
    drop(rootfs);
    // The monitor outlives the start: it keeps nothing of the host but what it serves.
    drop(devlxd);
    if let Err(why) = setup {
        let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
        // SAFETY: waitpid on our child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        record_exit(rundir.as_fd(), &format!("failed {why}"));
        die(&mut result, &why);
    }
    // The record first: if silo-priv is gone before it hears back, the next one still adopts
    // this instance instead of leaving it running unseen.
    if let Ok(instance) = silo_proto::InstanceName::new(req.instance.clone()) {
        let info = silo_proto::privileged::RunningInfo {
            instance,
            init_pid: pid as u32,
            monitor_pid: std::process::id(),
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            idmap_base: req.idmap_base,
            idmap_size: req.idmap_size,
            systemd: req.systemd,
            frozen: false,
        };
        let line = info.record_line(sys::start_time(pid).unwrap_or(0));
        let _ = sys::write_record(rundir.as_fd(), "init", &line);
        // Where silo-priv resizes the console (TIOCSWINSZ on the pty's other end).
        let _ = sys::write_record(rundir.as_fd(), "console.pts", &console.slave_path);
    }
    let _ = write!(result, "ok {pid}");
    drop(result);
    drop(msock);
    run(console, rundir, pid, pidfd)
}

/// The console: a pty on the host's devpts whose slave becomes the instance's /dev/console.
struct Console {
    master: OwnedFd,
    /// Held so the master never sees a hang-up while the instance has the console closed.
    _slave: OwnedFd,
    slave_path: String,
}

impl Console {
    fn open(owner: Option<(u64, u64)>) -> Result<Console, String> {
        let (master, slave, slave_path) = sys::open_pty(80, 25).map_err(|e| e.to_string())?;
        if let Some((root, tty)) = owner {
            // Container root owns its console, group tty (5) as in the container.
            nix::unistd::fchown(
                &slave,
                Some(nix::unistd::Uid::from_raw(root as u32)),
                Some(nix::unistd::Gid::from_raw(tty as u32)),
            )
            .map_err(|e| format!("chown console: {e}"))?;
        }
        Ok(Console {
            master,
            _slave: slave,
            slave_path,
        })
    }
}

/// What a held init tells the monitor once it is ready and waiting for its release.
const HELD: &[u8] = b"\0held";

/// How long a held init waits for its release before giving up.
const HOLD_MS: i32 = 60_000;

/// Makes the `go` FIFO in the runtime dir (root's, 0600) and opens its read end.
fn open_go_fifo(rundir: BorrowedFd<'_>) -> Result<OwnedFd, String> {
    let _ = nix::unistd::unlinkat(rundir, "go", nix::unistd::UnlinkatFlags::NoRemoveDir);
    nix::unistd::mkfifoat(
        rundir,
        "go",
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| format!("mkfifo: {e}"))?;
    nix::fcntl::openat(
        rundir,
        "go",
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open: {e}"))
}

/// Tells the monitor init is ready, then waits for silo-priv's `g` on the FIFO.
fn wait_for_release(sock: &OwnedFd, go: OwnedFd) -> Result<(), String> {
    nix::unistd::write(sock, HELD).map_err(io("telling the monitor"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(HOLD_MS as u64);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !wire::wait_readable(go.as_fd(), left.as_millis() as i32) {
            return Err("the instance's network setup did not finish within 60s".into());
        }
        let mut b = [0u8; 1];
        match nix::unistd::read(&go, &mut b) {
            Ok(1) if b[0] == b'g' => return Ok(()),
            Ok(1) => return Err("start cancelled".into()),
            // Another opener that wrote nothing: keep waiting for the real release.
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => return Err(format!("waiting for release: {e}")),
        }
    }
}

/// Makes the instance's mount namespace: a mounter forked into init's pid namespace builds
/// it as host root in a namespace of the host's user namespace, then hands over a locked copy
/// owned by the instance's user namespace (see the module's notes). Returns an fd of it.
fn confining_mount_ns(
    req: &StartReq,
    init: BorrowedFd<'_>,
    tree: OwnedFd,
    devlxd: Option<OwnedFd>,
    user: Option<OwnedFd>,
    console: &str,
) -> Result<OwnedFd, String> {
    // The monitor forks nothing else into this namespace: init's own children are its own.
    sys::setns_pidfd(init, libc::CLONE_NEWPID).map_err(|e| e.to_string())?;
    let (ours, theirs) = wire::pair().map_err(|e| e.to_string())?;
    // SAFETY: the monitor is single-threaded; the child leaves through _exit.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let r = mounter(req, init, tree, devlxd, user, console);
            let code = match r {
                Ok(mnt) => {
                    let _ = wire::send(theirs.as_fd(), &Ok::<(), String>(()), &[mnt.as_fd()]);
                    0
                }
                Err(why) => {
                    let _ = wire::send(theirs.as_fd(), &Err::<(), String>(why), &[]);
                    1
                }
            };
            // SAFETY: leaving the forked child without the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(theirs);
    drop(tree);
    drop(devlxd);
    let answer = if wire::wait_readable(ours.as_fd(), 30_000) {
        wire::recv::<Result<(), String>>(ours.as_fd()).map_err(|e| e.to_string())
    } else {
        // SAFETY: kill with a pid we forked.
        unsafe { libc::kill(child.as_raw(), libc::SIGKILL) };
        Err("the instance's mounts were not made within 30s".into())
    };
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(child.as_raw(), std::ptr::null_mut(), 0) };
    match answer? {
        Some((Ok(()), mut fds)) if fds.len() == 1 => Ok(fds.remove(0)),
        Some((Err(why), _)) => Err(why),
        _ => Err("the mounter ended without an answer".into()),
    }
}

/// In the mounter: pid 2 of the instance's pid namespace for a moment, host root.
fn mounter(
    req: &StartReq,
    init: BorrowedFd<'_>,
    tree: OwnedFd,
    devlxd: Option<OwnedFd>,
    user: Option<OwnedFd>,
    console: &str,
) -> Result<OwnedFd, String> {
    silo_proto::jail::caps_drop::non_dumpable().map_err(|e| e.to_string())?;
    // sysfs shows the network namespace of whoever mounts it, proc the pid namespace.
    sys::setns_pidfd(
        init,
        libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC,
    )
    .map_err(|e| e.to_string())?;
    // A mount namespace of the host's user namespace: what is mounted here reaches the
    // instance locked.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(io("unshare(mount)"))?;
    let root = req.mountpoint.as_str();
    sys::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| e.to_string())?;
    sys::move_mount_to(tree.as_fd(), root).map_err(|e| e.to_string())?;
    // The path's parents belong to silod: work from the attached mount itself, and check it
    // landed where it was meant to (a swapped path could only move it within this private
    // namespace, and pivot_root below needs it reachable from here).
    nix::unistd::fchdir(&tree).map_err(io("chdir root"))?;
    let want = nix::sys::stat::fstat(&tree).map_err(io("fstat root"))?;
    let got = std::fs::metadata(root).map_err(io("stat root"))?;
    if got.dev() != want.st_dev as u64 || got.ino() != want.st_ino as u64 {
        return Err(format!(
            "{root} is not the instance's root after attaching it"
        ));
    }
    drop(tree);
    mount_confining(".", console, req.idmap_base, req.nesting)?;
    if let Some(d) = devlxd {
        // The instance's guest-API directory, not its socket: a socket silod binds anew
        // there after a restart shows up inside, where a bound socket inode would go stale.
        // Read-only and locked with the rest below, so container root can neither replace
        // the socket nor unmount what covers its own /dev/lxd.
        as_container_root(req.idmap_base, || ensure_dir("./dev/lxd"))?;
        sys::move_mount_to(d.as_fd(), "./dev/lxd").map_err(|e| e.to_string())?;
    }
    nix::unistd::pivot_root(".", ".").map_err(io("pivot_root"))?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
        .map_err(io("detaching the host root"))?;
    std::env::set_current_dir("/").map_err(io("chdir /"))?;
    if let Some(user) = &user {
        sys::setns_fd(user.as_fd(), libc::CLONE_NEWUSER, "user").map_err(|e| e.to_string())?;
    }
    // The copy into a mount namespace of the instance's user namespace is what locks the
    // mounts above.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(io("unshare(mount) in the instance's user namespace"))?;
    std::fs::File::open("/proc/self/ns/mnt")
        .map(OwnedFd::from)
        .map_err(io("opening the instance's mount namespace"))
}

/// In init's process: pid 1 of the instance, in its user namespace with full capabilities
/// there, and (until it joins the mount namespace the monitor sends) in the host's mounts.
fn init_child(req: &StartReq, sock: OwnedFd, go: Option<OwnedFd>) -> ! {
    let r = init_setup(req, &sock, go);
    let why = match r {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = nix::unistd::write(&sock, why.as_bytes());
    // After a hold the monitor has stopped listening: the console log keeps the reason.
    let _ = nix::unistd::write(std::io::stderr(), format!("silo: {why}\n").as_bytes());
    // SAFETY: leaving the child without running the parent's destructors.
    unsafe { libc::_exit(1) }
}

enum Never {}

fn io<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn init_setup(req: &StartReq, sock: &OwnedFd, go: Option<OwnedFd>) -> Result<Never, String> {
    // Never ptraceable while it holds anything of the host's (see `non_dumpable`).
    silo_proto::jail::caps_drop::non_dumpable().map_err(|e| e.to_string())?;
    let userns = req.idmap_base.is_some();
    let mnt = match wire::recv_raw(sock.as_fd()).map_err(io("waiting for the monitor"))? {
        Some((_, mut fds)) if fds.len() == 1 => fds.remove(0),
        _ => return Err("the monitor sent no mount namespace".into()),
    };
    sys::setns_fd(mnt.as_fd(), libc::CLONE_NEWNS, "mount").map_err(|e| e.to_string())?;
    drop(mnt);
    std::env::set_current_dir("/").map_err(io("chdir /"))?;
    // Nothing of the host's may reach /sbin/init: only the monitor's socket, the FIFO and the
    // standard fds stay open.
    let mut keep = vec![sock.as_raw_fd()];
    if let Some(g) = &go {
        keep.push(g.as_raw_fd());
    }
    sys::close_fds_except(&keep);
    if userns {
        nix::unistd::setgroups(&[]).map_err(io("setgroups"))?;
        let zero_g = nix::unistd::Gid::from_raw(0);
        let zero_u = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresgid(zero_g, zero_g, zero_g).map_err(io("setresgid"))?;
        nix::unistd::setresuid(zero_u, zero_u, zero_u).map_err(io("setresuid"))?;
    }
    silo_proto::jail::caps_drop::non_dumpable().map_err(|e| e.to_string())?;
    super::drop_container_caps()?;
    // This process was born in the instance's cgroups: the namespace is rooted there.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(io("unshare(cgroup)"))?;
    nix::unistd::sethostname(&req.instance).map_err(io("sethostname"))?;
    mount_container_owned(req.cgroups.v2_dir.is_some())?;
    nix::unistd::setsid().map_err(io("setsid"))?;
    let c = nix::fcntl::open(
        "/dev/console",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io("open /dev/console"))?;
    // SAFETY: TIOCSCTTY on an fd we own; dup2 onto the standard fds.
    unsafe {
        libc::ioctl(c.as_raw_fd(), libc::TIOCSCTTY, 0);
        for fd in 0..3 {
            libc::dup2(c.as_raw_fd(), fd);
        }
    }
    drop(c);
    if let Some(go) = go {
        wait_for_release(sock, go)?;
    }
    super::default_signals();
    let init = sys::cstr("/sbin/init").map_err(|e| e.to_string())?;
    let argv = [init.as_ptr(), std::ptr::null()];
    let env: Vec<std::ffi::CString> = INIT_ENV.iter().filter_map(|e| sys::cstr(e).ok()).collect();
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: NUL-terminated argv and envp arrays of NUL-terminated strings that live across
    // the call; execve only returns on failure.
    unsafe { libc::execve(init.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(format!(
        "cannot run /sbin/init in the instance: {}",
        std::io::Error::last_os_error()
    ))
}

fn ensure_dir(p: &str) -> Result<(), String> {
    match std::fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("mkdir {p}: {e}")),
    }
}

fn ensure_file(p: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map(|_| ())
        .map_err(|e| format!("creating {p}: {e}"))
}

/// Runs `f` with the filesystem ids of container root (host `base`), so that what it creates
/// through the idmapped root belongs to container root (host root has no id there).
fn as_container_root<T>(
    base: Option<u64>,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let Some(base) = base else { return f() };
    nix::unistd::setfsgid(nix::unistd::Gid::from_raw(base as u32));
    nix::unistd::setfsuid(nix::unistd::Uid::from_raw(base as u32));
    let r = f();
    nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0));
    nix::unistd::setfsgid(nix::unistd::Gid::from_raw(0));
    r
}

/// The mounts that confine the instance, made by host root before init joins the instance's
/// user namespace (so they arrive locked): /proc with `proc:mixed` (/proc/sys read-only but
/// for the network namespace's own net.* keys), a read-only /sys, a tmpfs /dev owned by
/// container root with the host's harmless devices and the console pty bound in.
fn mount_confining(
    root: &str,
    console: &str,
    base: Option<u64>,
    nesting: bool,
) -> Result<(), String> {
    let p = |s: &str| format!("{root}{s}");
    let nosuid = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    as_container_root(base, || {
        for d in ["/proc", "/sys", "/dev", "/run"] {
            ensure_dir(&p(d))?;
        }
        Ok(())
    })?;
    sys::mount(Some("proc"), &p("/proc"), Some("proc"), nosuid, None).map_err(|e| e.to_string())?;
    for (src, ro) in [
        ("/proc/sys", true),
        ("/proc/sys/net", false),
        ("/proc/sysrq-trigger", true),
    ] {
        let t = p(src);
        if !std::path::Path::new(&t).exists() {
            // Kernels without magic sysrq have no sysrq-trigger.
            continue;
        }
        sys::mount(Some(&t), &t, None, libc::MS_BIND | libc::MS_REC, None)
            .map_err(|e| e.to_string())?;
        let fl = libc::MS_BIND | libc::MS_REMOUNT | nosuid | if ro { libc::MS_RDONLY } else { 0 };
        sys::mount(None, &t, None, fl, None).map_err(|e| e.to_string())?;
    }
    sys::mount(
        Some("sysfs"),
        &p("/sys"),
        Some("sysfs"),
        nosuid | libc::MS_RDONLY,
        None,
    )
    .map_err(|e| e.to_string())?;
    let owner = base.unwrap_or(0);
    sys::mount(
        Some("none"),
        &p("/dev"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(&format!("size=492k,mode=755,uid={owner},gid={owner}")),
    )
    .map_err(|e| e.to_string())?;
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let t = p(&format!("/dev/{dev}"));
        ensure_file(&t)?;
        sys::mount(Some(&format!("/dev/{dev}")), &t, None, libc::MS_BIND, None)
            .map_err(|e| e.to_string())?;
    }
    let t = p("/dev/console");
    ensure_file(&t)?;
    sys::mount(Some(console), &t, None, libc::MS_BIND, None).map_err(|e| e.to_string())?;
    if nesting {
        // What LXD gives a nesting container: a proc and a sysfs nothing covers, so that the
        // kernel lets a container manager inside mount its own (mount_too_revealing). Writes
        // through them still need capabilities over the host's namespaces, which container
        // root does not have; sysfs stays read-only, as the one at /sys.
        as_container_root(base, || {
            for d in ["/dev/.lxc", "/dev/.lxc/proc", "/dev/.lxc/sys"] {
                ensure_dir(&p(d))?;
            }
            Ok(())
        })?;
        sys::mount(
            Some("proc"),
            &p("/dev/.lxc/proc"),
            Some("proc"),
            nosuid,
            None,
        )
        .map_err(|e| e.to_string())?;
        sys::mount(
            Some("sysfs"),
            &p("/dev/.lxc/sys"),
            Some("sysfs"),
            nosuid | libc::MS_RDONLY,
            None,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What container root owns and may change, mounted by it inside its own mount namespace:
/// the delegated cgroup2 tree, a private devpts, /dev/shm, mqueue and /run.
fn mount_container_owned(cgroup2: bool) -> Result<(), String> {
    let nosuid = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    if cgroup2 && std::path::Path::new("/sys/fs/cgroup").is_dir() {
        sys::mount(
            Some("cgroup2"),
            "/sys/fs/cgroup",
            Some("cgroup2"),
            nosuid,
            None,
        )
        .map_err(|e| e.to_string())?;
    }
    for d in ["/dev/pts", "/dev/shm", "/dev/mqueue"] {
        ensure_dir(d)?;
    }
    sys::mount(
        Some("devpts"),
        "/dev/pts",
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .map_err(|e| e.to_string())?;
    sys::mount(
        Some("shm"),
        "/dev/shm",
        Some("tmpfs"),
        nosuid,
        Some("mode=1777"),
    )
    .map_err(|e| e.to_string())?;
    sys::mount(Some("mqueue"), "/dev/mqueue", Some("mqueue"), nosuid, None)
        .map_err(|e| e.to_string())?;
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, link).map_err(io(link))?;
    }
    sys::mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=755,size=20%"),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes the exit record silo-priv reads once the monitor is gone.
fn record_exit(rundir: BorrowedFd<'_>, what: &str) {
    let _ = sys::write_record(rundir, "exit", what);
}

/// After start: no capabilities, no new privileges; console and exit record until init ends.
fn run(console: Console, rundir: OwnedFd, pid: i32, pidfd: OwnedFd) -> ! {
    // The socket is bound before the drop: the runtime dir is root's.
    let sock_path = format!("/proc/self/fd/{}/console.sock", rundir.as_raw_fd());
    let _ = nix::unistd::unlinkat(
        rundir.as_fd(),
        "console.sock",
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).ok();
    if let Some(l) = &listener {
        let _ = l.set_nonblocking(true);
    }
    let log = nix::fcntl::openat(
        rundir.as_fd(),
        "console.log",
        nix::fcntl::OFlag::O_RDWR
            | nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_APPEND
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .ok()
    .map(std::fs::File::from);
    drop_privileges();
    null_stdio();
    let mut log = log;
    let mut client: Option<std::os::unix::net::UnixStream> = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut pfds = vec![
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: console.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: listener.as_ref().map_or(-1, |l| l.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: client.as_ref().map_or(-1, |c| c.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of pollfds of the length given.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue;
        }
        if pfds[1].revents & libc::POLLIN != 0 {
            if let Ok(k) = nix::unistd::read(&console.master, &mut buf) {
                if k > 0 {
                    if let Some(f) = log.as_mut() {
                        append_bounded(f, &buf[..k]);
                    }
                    if let Some(c) = client.as_mut() {
                        if c.write_all(&buf[..k]).is_err() {
                            client = None;
                        }
                    }
                }
            }
        }
        if pfds[2].revents & libc::POLLIN != 0 {
            if let Some(Ok((s, _))) = listener.as_ref().map(|l| l.accept()) {
                // One attached console at a time: the newest wins, as with `lxc console`.
                client = Some(s);
            }
        }
        if pfds[3].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            if let Some(c) = client.as_mut() {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => client = None,
                    Ok(k) => {
                        let _ = write_all_fd(console.master.as_fd(), &buf[..k]);
                    }
                }
            }
        }
        if pfds[0].revents & libc::POLLIN != 0 {
            // Drain what init's last words left in the pty.
            while wire::wait_readable(console.master.as_fd(), 0) {
                match nix::unistd::read(&console.master, &mut buf) {
                    Ok(k) if k > 0 => {
                        if let Some(f) = log.as_mut() {
                            append_bounded(f, &buf[..k]);
                        }
                    }
                    _ => break,
                }
            }
            let mut st = 0;
            // SAFETY: waitpid on our own child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            let what = if libc::WIFSIGNALED(st) {
                format!("signaled {}", libc::WTERMSIG(st))
            } else {
                format!("exited {}", libc::WEXITSTATUS(st))
            };
            let _ = nix::unistd::unlinkat(
                rundir.as_fd(),
                "console.sock",
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            record_exit(rundir.as_fd(), &what);
            std::process::exit(0);
        }
    }
}

fn write_all_fd(fd: BorrowedFd<'_>, mut b: &[u8]) -> std::io::Result<()> {
    while !b.is_empty() {
        let n = nix::unistd::write(fd, b).map_err(std::io::Error::from)?;
        b = &b[n..];
    }
    Ok(())
}

fn append_bounded(f: &mut std::fs::File, data: &[u8]) {
    let _ = f.write_all(data);
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > CONSOLE_LOG_MAX {
        let keep = CONSOLE_LOG_MAX / 2;
        let mut tail = vec![0u8; keep as usize];
        if f.seek(std::io::SeekFrom::Start(len - keep)).is_ok() && f.read_exact(&mut tail).is_ok() {
            let _ = f.set_len(0);
            let _ = f.write_all(&tail);
        }
    }
}

fn drop_privileges() {
    // Best effort by design: the monitor keeps serving the console whatever happens here, and
    // it holds nothing an instance could reach.
    if let Err(e) = silo_proto::jail::caps_drop::confine_caps(&[]) {
        eprintln!("silo-priv monitor: {e}");
    }
}

/// Long-lived processes must not hold silod's stdout and stderr (a supervisor or test reading
/// them would never see them close).
pub fn null_stdio() {
    if let Ok(n) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard fds.
            unsafe { libc::dup2(n.as_raw_fd(), fd) };
        }
    }
}
