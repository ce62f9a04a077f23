//! One forwarder process per proxy device, forked by silo-net's launcher.
//!
//! It binds its listening sockets in the listening side's network namespace, switches to
//! the other side's (every socket made afterwards lives there), then gives up root for good:
//! it runs as the instance's root id on the host (an unprivileged uid there), with no
//! capabilities and no_new_privs, and only forwards bytes.

use std::os::fd::{AsRawFd, OwnedFd};

use silo_proto::proxy::{ProxyAddr, ProxyBind, ProxySpec, UnixPath};

use crate::launcher::{open_netns, InitRef};
use crate::proxy;

/// Forks the forwarder; returns its pid once it listens (or why it could not).
pub fn spawn(init: InitRef, uid: u32, spec: &ProxySpec) -> Result<i32, String> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    // SAFETY: the launcher is single-threaded; the child sets itself up and leaves with exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let mut w = std::fs::File::from(w);
            match setup(init, uid, spec) {
                Ok(pairs) => {
                    use std::io::Write;
                    let _ = w.write_all(b"ok");
                    drop(w);
                    forward(pairs)
                }
                Err(e) => {
                    use std::io::Write;
                    let _ = w.write_all(e.as_bytes());
                    std::process::exit(1)
                }
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut s = String::new();
            use std::io::Read;
            let _ = std::fs::File::from(r).read_to_string(&mut s);
            if s == "ok" {
                Ok(child.as_raw())
            } else {
                // SAFETY: waitpid on the child we forked, which has exited or is exiting.
                unsafe { libc::waitpid(child.as_raw(), std::ptr::null_mut(), 0) };
                Err(if s.is_empty() {
                    "the forwarder ended during its setup".into()
                } else {
                    s
                })
            }
        }
    }
}

/// Where a unix path on the instance's side is reached from: its root directory.
fn instance_path(root: &OwnedFd, path: &str) -> String {
    format!("/proc/self/fd/{}{}", root.as_raw_fd(), path)
}

fn setup(
    init: InitRef,
    uid: u32,
    spec: &ProxySpec,
) -> Result<Vec<(proxy::Listener, proxy::Target)>, String> {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let host = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| format!("opening silo-net's network namespace: {e}"))?;
    let inst = open_netns(init)?;
    // Held open for the process's life, so that unix paths on the instance's side resolve in
    // its filesystem (through this fd) rather than the host's.
    let root: OwnedFd = std::fs::File::open(format!("/proc/{}/root", init.pid))
        .map_err(|e| format!("opening the instance's root: {e}"))?
        .into();
    let setns = |fd: &dyn std::os::fd::AsFd, what: &str| {
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering the {what} network namespace: {e}"))
    };
    let mut targets = proxy::targets(spec).map_err(|e| e.to_string())?;
    let listeners = match spec.bind {
        ProxyBind::Host => {
            let l = proxy::bind(&spec.listen)
                .map_err(|e| format!("listening on {}: {e}", spec.listen))?;
            for t in targets.iter_mut() {
                if let proxy::Target::Unix(p) = t {
                    *p = instance_path(&root, &p.to_string_lossy()).into();
                }
            }
            setns(&inst, "instance's")?;
            l
        }
        ProxyBind::Instance => {
            setns(&inst, "instance's")?;
            let listen = match &spec.listen {
                ProxyAddr::Unix { path } => ProxyAddr::Unix {
                    path: UnixPath::new(instance_path(&root, path.as_str()))
                        .map_err(|e| format!("listen: {e}"))?,
                },
                other => other.clone(),
            };
            // A socket file inside the instance is created as the instance's root: host root
            // has no id in the instance's user namespace (its mounts refuse it, EOVERFLOW).
            let fs_id = |id: u32| {
                nix::unistd::setfsgid(nix::unistd::Gid::from_raw(id));
                nix::unistd::setfsuid(nix::unistd::Uid::from_raw(id));
            };
            fs_id(uid);
            let l = proxy::bind(&listen);
            fs_id(0);
            let l = l.map_err(|e| format!("listening on {} in the instance: {e}", spec.listen))?;
            setns(&host, "host's")?;
            l
        }
    };
    drop(host);
    drop(inst);
    raise_fd_limit();
    // A peer that goes away mid-splice must be an EPIPE for that connection, not the end of
    // every connection this forwarder carries.
    // SAFETY: setting a signal's disposition to ignore; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    drop_root(uid)?;
    crate::confinement::enter_forwarder_seccomp()?;
    std::mem::forget(root);
    Ok(listeners.into_iter().zip(targets).collect())
}

/// Each spliced connection holds two sockets and two pipes (four fds), so the usual soft
/// limit of 1024 would end a forwarder's connections near 250 rather than at its 1024 cap.
/// The soft limit is raised toward the hard one (never above it, which needs privilege).
fn raise_fd_limit() {
    const WANT: u64 = 8192;
    if let Ok((soft, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let to = WANT.min(hard);
        if soft < to {
            let _ = nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
                to,
                hard,
            );
        }
    }
}

fn drop_root(uid: u32) -> Result<(), String> {
    silo_proto::jail::user::drop_to(
        nix::unistd::Uid::from_raw(uid),
        nix::unistd::Gid::from_raw(uid),
    )
    .map_err(|e| e.to_string())
}

fn forward(pairs: Vec<(proxy::Listener, proxy::Target)>) -> ! {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("silo-net forwarder: runtime: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = rt.block_on(proxy::run_all(pairs, proxy::Limits::default())) {
        eprintln!("silo-net forwarder: {e}");
        std::process::exit(1);
    }
    std::process::exit(0)
}
