//! One forwarder process per proxy device, forked by silo-net's launcher.
//!
//! It binds its listening sockets in the listening side's network namespace, switches to
//! the other side's (every socket made afterwards lives there), then gives up root for good:
//! it runs as the instance's root id on the host (an unprivileged uid there), with no
//! capabilities and no_new_privs, and only forwards bytes.

use std::os::fd::OwnedFd;

use silo_proto::proxy::{ProxyAddr, ProxyBind, ProxySpec, UnixPath};

use crate::launcher::{open_netns, same_process, InitRef};
use crate::splice;

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

/// Makes `dir` the process's root directory (and working directory). Paths resolved
/// afterwards, symlinks included, cannot leave it: an absolute symlink planted inside the
/// instance resolves against the instance's root, `..` stops at it.
fn enter_root(dir: &OwnedFd, what: &str) -> Result<(), String> {
    nix::unistd::fchdir(dir).map_err(|e| format!("entering the {what} root directory: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot to the {what} root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir / in the {what} root: {e}"))
}

fn open_dir(path: &str, what: &str) -> Result<OwnedFd, String> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("opening {what}: {e}"))
}

/// A unix socket path on the host, pinned: its directory opened from `/` with no symlink
/// (nor /proc magic link) followed on the way, so the textual path silo-net checked against
/// `host_paths` is where the socket really is. The forwarder then takes that directory as its
/// root, and a symlink at the socket's name cannot lead above it either.
struct HostSocketDir {
    dir: OwnedFd,
    /// The socket's path inside `dir`: `/<name>`.
    inner: String,
}

fn pin_host_socket(path: &UnixPath) -> Result<HostSocketDir, String> {
    let full = path.as_str();
    let (parent, name) = full
        .rsplit_once('/')
        .ok_or_else(|| format!("{full} is not absolute"))?;
    let parent = parent.trim_start_matches('/');
    let how = silo_proto::jail::beneath::no_symlinks_how(
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
    );
    let dir = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, format!("/{parent}").as_str(), how)
        .map_err(|e| {
            format!("the directory of {full} on the host (no symlinks may lead to it): {e}")
        })?;
    Ok(HostSocketDir {
        dir,
        inner: format!("/{name}"),
    })
}

fn unix_addr(inner: &str) -> Result<ProxyAddr, String> {
    Ok(ProxyAddr::Unix {
        path: UnixPath::new(inner).map_err(|e| e.to_string())?,
    })
}

fn setup(
    init: InitRef,
    uid: u32,
    spec: &ProxySpec,
) -> Result<Vec<(splice::Listener, splice::Target)>, String> {
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
    // Unix paths on the instance's side are resolved with the instance's root as this
    // process's root (chroot), never through a path from the host's root: a symlink container
    // root plants (absolute, or climbing with "..") then stays inside the instance.
    let host_root = open_dir("/", "the host's root")?;
    let inst_root = open_dir(&format!("/proc/{}/root", init.pid), "the instance's root")?;
    // Opened by pid number: only kept if that pid is still the instance's init (a recycled
    // pid would hand over another process's root, the host's included).
    if !same_process(init) {
        return Err("the instance's init is gone".into());
    }
    let setns = |fd: &dyn std::os::fd::AsFd, what: &str| {
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering the {what} network namespace: {e}"))
    };
    let mut targets = splice::targets(spec).map_err(|e| e.to_string())?;
    let listeners = match spec.bind {
        ProxyBind::Host => {
            let l = match &spec.listen {
                ProxyAddr::Unix { path } => {
                    let pinned = pin_host_socket(path)?;
                    enter_root(&pinned.dir, "listening socket's")?;
                    splice::bind(&unix_addr(&pinned.inner)?)
                }
                other => splice::bind(other),
            }
            .map_err(|e| format!("listening on {}: {e}", spec.listen))?;
            // Every connection goes into the instance: its network and its filesystem, for
            // the life of the forwarder.
            setns(&inst, "instance's")?;
            enter_root(&inst_root, "instance's")?;
            l
        }
        ProxyBind::Instance => {
            // Pinned while this process's root is still the host's.
            let host_dir = match &spec.connect {
                ProxyAddr::Unix { path } => Some(pin_host_socket(path)?),
                _ => None,
            };
            setns(&inst, "instance's")?;
            enter_root(&inst_root, "instance's")?;
            // A socket file inside the instance is created as the instance's root: host root
            // has no id in the instance's user namespace (its mounts refuse it, EOVERFLOW).
            let fs_id = |id: u32| {
                nix::unistd::setfsgid(nix::unistd::Gid::from_raw(id));
                nix::unistd::setfsuid(nix::unistd::Uid::from_raw(id));
            };
            fs_id(uid);
            let l = splice::bind(&spec.listen);
            fs_id(0);
            // Connections go to the host (as the policy allowed): back to its filesystem and
            // network before anything else happens; to a unix socket's own directory only.
            match &host_dir {
                Some(pinned) => {
                    enter_root(&pinned.dir, "host socket's")?;
                    for t in targets.iter_mut() {
                        if let splice::Target::Unix(p) = t {
                            *p = pinned.inner.clone().into();
                        }
                    }
                }
                None => enter_root(&host_root, "host's")?,
            }
            let l = l.map_err(|e| format!("listening on {} in the instance: {e}", spec.listen))?;
            setns(&host, "host's")?;
            l
        }
    };
    drop(host_root);
    drop(inst_root);
    drop(host);
    drop(inst);
    raise_fd_limit();
    // A peer that goes away mid-splice must be an EPIPE for that connection, not the end of
    // every connection this forwarder carries.
    // SAFETY: setting a signal's disposition to ignore; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    drop_root(uid)?;
    crate::confinement::enter_forwarder_seccomp()?;
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
    .map_err(|e| e.to_string())?;
    // The credential change set dumpability from fs.suid_dumpable, which a host may have set
    // to 1; the forwarder now runs with container root's uid in the instance's namespaces.
    silo_proto::jail::caps_drop::non_dumpable().map_err(|e| e.to_string())
}

fn forward(pairs: Vec<(splice::Listener, splice::Target)>) -> ! {
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
    if let Err(e) = rt.block_on(splice::run_all(pairs, splice::Limits::default())) {
        eprintln!("silo-net forwarder: {e}");
        std::process::exit(1);
    }
    std::process::exit(0)
}
