//! Running a command in a running instance (`exec`).
//!
//! launcher ─fork→ attacher: joins the instance's cgroups, then setns into all of init's
//! namespaces at once through the pidfd silo-priv has held since the start (never one opened
//! again from a pid number, which could name another process by then), becomes container root
//! and drops LXD's capabilities ─fork→ the command: becomes the requested user, gets its
//! terminal or pipes, execs. The attacher stays outside the instance's pid namespace as the
//! command's parent and reports its pid (with a pidfd) and exit status on the status socket.
//!
//! Nothing here is ever dumpable (CVE-2016-9962): the attacher joins the instance's user
//! namespace, where container root holds CAP_SYS_PTRACE, so only a non-dumpable mm keeps it
//! from attaching; and by the time the command appears in the instance's pid namespace it
//! already carries container root's credentials and bounding set.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use silo_proto::privileged::ExecSpec;

use super::wire;
use super::{ExecReq, ExecStatus, Reply};
use crate::sys;

/// Forks the attacher and answers at once; the rest is reported on the status socket.
pub fn fork_exec(req: ExecReq, mut fds: Vec<OwnedFd>) -> Result<Reply, String> {
    let want = if req.spec.interactive { 2 } else { 5 };
    if fds.len() != want {
        return Err(format!("exec needs {want} fds, got {}", fds.len()));
    }
    let status = fds.remove(0);
    let init = fds.remove(0);
    // Born in the instance's cgroup2 group, so joining takes no migration (see CgroupPlace).
    let into = req.cgroups.v2_fd()?;
    // SAFETY: the launcher is single-threaded; the child leaves with exit.
    match unsafe { sys::clone3_into(0, into.as_ref().map(|f| f.as_fd())) }
        .map_err(|e| format!("clone3: {e}"))?
    {
        sys::Cloned::Child => {
            let mut keep: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
            keep.push(status.as_raw_fd());
            keep.push(init.as_raw_fd());
            keep.push(2);
            sys::close_fds_except(&keep);
            let code = match attacher(&req, &status, init, fds) {
                Ok(code) => {
                    let _ = wire::send(status.as_fd(), &ExecStatus::Exited(code), &[]);
                    0
                }
                Err(why) => {
                    let _ = wire::send(status.as_fd(), &ExecStatus::Failed(why), &[]);
                    1
                }
            };
            std::process::exit(code)
        }
        sys::Cloned::Parent { pidfd, .. } => {
            drop(pidfd);
            drop(into);
            drop(init);
            Ok(Reply::ExecForked)
        }
    }
}

fn attacher(
    req: &ExecReq,
    status: &OwnedFd,
    pidfd: OwnedFd,
    stdio: Vec<OwnedFd>,
) -> Result<i32, String> {
    silo_proto::jail::caps_drop::non_dumpable().map_err(|e| e.to_string())?;
    let _ = nix::unistd::setsid();
    // The attacher joins the instance's cgroups only to hand them down: an out-of-memory
    // instance must kill its own processes, not the parent that reports the exit status.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    req.cgroups.join_v1()?;
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP;
    if req.userns {
        flags |= libc::CLONE_NEWUSER;
    }
    sys::setns_pidfd(pidfd.as_fd(), flags).map_err(|e| e.to_string())?;
    drop(pidfd);
    if req.userns {
        become_container_root().map_err(|(_, m)| m)?;
    }
    // Whether or not the credential change above reset it, the attacher must stay
    // non-dumpable; and the command must enter the pid namespace with LXD's bounding set.
    silo_proto::jail::caps_drop::non_dumpable().map_err(|e| e.to_string())?;
    super::drop_container_caps()?;
    let (ours, theirs) = wire::pair().map_err(|e| e.to_string())?;
    // SAFETY: the attacher is single-threaded; the child execs or _exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let why = command(&req.spec, &theirs, stdio);
            // The command could not be run: say why on its stderr when it has one, as a shell
            // would, and leave with the shell's codes.
            let (code, msg) = why;
            let _ = nix::unistd::write(std::io::stderr(), msg.as_bytes());
            // SAFETY: leaving the forked child without the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            drop(stdio);
            super::monitor::null_stdio();
            let pid = child.as_raw();
            // Our own unreaped child: this pidfd names it and no other, which silo-priv's
            // signals to the command rely on.
            let child_pidfd = sys::pidfd_open(pid).map_err(|e| e.to_string())?;
            // The child sends its pty master (interactive) or closes the socket at exec.
            let master = match wire::recv_raw(ours.as_fd()) {
                Ok(Some((_, mut fds))) if !fds.is_empty() => Some(fds.remove(0)),
                _ => None,
            };
            // The pidfd rides last, after the pty master when there is one.
            let mut fds: Vec<_> = master.iter().map(|m| m.as_fd()).collect();
            fds.push(child_pidfd.as_fd());
            if req.spec.interactive && master.is_none() {
                // The child failed before it had a terminal; its status says why.
                let _ = wire::send(status.as_fd(), &ExecStatus::Started { pid }, &fds);
            } else {
                wire::send(status.as_fd(), &ExecStatus::Started { pid }, &fds)
                    .map_err(|e| e.to_string())?;
            }
            drop(child_pidfd);
            drop(master);
            let mut st = 0;
            // SAFETY: waitpid on our own child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            Ok(if libc::WIFSIGNALED(st) {
                128 + libc::WTERMSIG(st)
            } else {
                libc::WEXITSTATUS(st)
            })
        }
    }
}

/// Container root in the instance's user namespace (after setns into it).
fn become_container_root() -> Result<(), (i32, String)> {
    nix::unistd::setgroups(&[]).map_err(fail("setgroups"))?;
    let g = nix::unistd::Gid::from_raw(0);
    let u = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(g, g, g).map_err(fail("setresgid"))?;
    nix::unistd::setresuid(u, u, u).map_err(fail("setresuid"))?;
    Ok(())
}

/// In the command's process, inside the instance. Returns only on failure: the exit code and
/// the message for stderr.
fn command(spec: &ExecSpec, sock: &OwnedFd, stdio: Vec<OwnedFd>) -> (i32, String) {
    match command_inner(spec, sock, stdio) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn fail(what: &str) -> impl Fn(nix::errno::Errno) -> (i32, String) + '_ {
    move |e| (1, format!("silo exec: {what}: {e}\n"))
}

fn command_inner(
    spec: &ExecSpec,
    sock: &OwnedFd,
    stdio: Vec<OwnedFd>,
) -> Result<Never, (i32, String)> {
    nix::unistd::setsid().map_err(fail("setsid"))?;
    if spec.interactive {
        let cols = if spec.width == 0 { 80 } else { spec.width };
        let rows = if spec.height == 0 { 24 } else { spec.height };
        // Inside the instance's mount namespace: the pty is in its own devpts.
        let (m, slave, _) =
            sys::open_pty(cols, rows).map_err(|e| (1, format!("silo exec: {e}\n")))?;
        // SAFETY: terminal ioctls on fds we own; dup2 onto the standard fds.
        unsafe {
            libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0);
            for fd in 0..3 {
                libc::dup2(slave.as_raw_fd(), fd);
            }
        }
        wire::send(sock.as_fd(), &(), &[m.as_fd()])
            .map_err(|e| (1, format!("silo exec: handing over the terminal: {e}\n")))?;
    } else {
        for (i, fd) in stdio.iter().enumerate() {
            // SAFETY: dup2 onto a standard fd.
            unsafe { libc::dup2(fd.as_raw_fd(), i as i32) };
        }
    }
    drop(stdio);
    if spec.uid != 0 || spec.gid != 0 {
        let g = nix::unistd::Gid::from_raw(spec.gid);
        let u = nix::unistd::Uid::from_raw(spec.uid);
        nix::unistd::setgroups(&[g]).map_err(fail("setgroups"))?;
        nix::unistd::setresgid(g, g, g).map_err(fail("setresgid"))?;
        nix::unistd::setresuid(u, u, u).map_err(fail("setresuid"))?;
    }
    let home = spec
        .env
        .iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/");
    let cwd = if spec.cwd.is_empty() {
        home
    } else {
        spec.cwd.as_str()
    };
    if std::env::set_current_dir(cwd).is_err() {
        if spec.cwd.is_empty() {
            let _ = std::env::set_current_dir("/");
        } else {
            return Err((
                1,
                format!("silo exec: cannot change to directory {cwd:?}\n"),
            ));
        }
    }
    let to_c =
        |s: &str| CString::new(s).map_err(|_| (1, "silo exec: NUL in an argument\n".to_string()));
    let argv: Vec<CString> = spec
        .command
        .iter()
        .map(|a| to_c(a))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| to_c(&format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cmd = &spec.command[0];
    let candidates: Vec<String> = if cmd.contains('/') {
        vec![cmd.clone()]
    } else {
        let path = spec
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{d}/{cmd}"))
            .collect()
    };
    super::default_signals();
    let mut denied = false;
    for c in candidates {
        let Ok(p) = CString::new(c) else { continue };
        // SAFETY: NUL-terminated path, argv and envp arrays that live across the call;
        // execve returns only on failure.
        unsafe { libc::execve(p.as_ptr(), argp.as_ptr(), envp.as_ptr()) };
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
            denied = true;
        }
    }
    if denied {
        Err((126, format!("silo exec: {cmd}: permission denied\n")))
    } else {
        Err((127, format!("silo exec: {cmd}: command not found\n")))
    }
}
