//! The launcher: the part of silo-priv that makes containers.
//!
//! silo-priv's own jail (an allow-list seccomp filter, no execve) would be inherited by every
//! process it forks, so containers cannot come from the jailed helper. Before silo-priv
//! confines itself it forks this launcher, which keeps root's capabilities (it makes
//! namespaces, idmapped mounts and pivot_roots) minus those LXD drops from containers, and
//! installs the container seccomp filter on itself, so that everything it forks (monitors,
//! instances' init, exec'd commands) carries exactly the containers' restrictions. It takes
//! only the two requests below from silo-priv, which has validated them, over a SEQPACKET
//! socket; it exits when silo-priv's end closes, leaving running containers and their monitors
//! alone.
//!
//! Per instance there is one monitor process (forked from the launcher, no capabilities after
//! start): it is init's parent, holds the console pty, writes console.log and the exit record,
//! and serves console attach. That is what lets instances outlive silod and the helpers.

pub mod attach;
pub mod disks;
pub mod files;
pub mod monitor;
pub mod seccomp;

pub use silo_proto::jail::wire;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use silo_proto::jail::launcher::LauncherClient;

use serde::{Deserialize, Serialize};
use silo_proto::error::HelperResult;
use silo_proto::privileged::ExecSpec;

/// Start an instance. Fds: the rootfs directory, the instance's runtime directory, and with
/// `devlxd` its `devlxd` directory (root's, beneath the runtime directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartReq {
    pub instance: String,
    pub idmap_base: Option<u64>,
    /// How many ids the range holds (for the record).
    pub idmap_size: u64,
    /// `security.nesting`: a second, fully visible proc and sysfs at /dev/.lxc, which a
    /// container manager inside needs to mount its own (the kernel lets a user namespace mount
    /// proc or sysfs only where one is already fully visible).
    pub nesting: bool,
    /// The user namespace's maps (with `raw.idmap`'s holes), when it has one.
    pub uid_map: Option<Vec<silo_proto::privileged::IdMapLine>>,
    pub gid_map: Option<Vec<silo_proto::privileged::IdMapLine>>,
    /// The instance's groups, for init; its cgroup2 directory is delegated to container root.
    pub cgroups: CgroupPlace,
    /// The monitors' groups (see `Cgroups::monitor_place`).
    pub monitor: CgroupPlace,
    /// Where init's mount namespace attaches the rootfs before pivoting (inside the
    /// root-owned runtime directory; checked against the rootfs fd after attaching).
    pub mountpoint: String,
    /// Whether the image's init is systemd (kept in the record for stops after adoption).
    pub systemd: bool,
    /// Hold init before its exec until a byte arrives on the `go` FIFO in the runtime dir.
    pub hold: bool,
    /// Mount the third fd's directory read-only at /dev/lxd (`security.devlxd`).
    pub devlxd: bool,
}

/// Where a process goes in the cgroup hierarchies, placed so that no migration takes the
/// global lock a `cgroup.procs` write takes: that lock waits for an RCU grace period, 5 to 18 ms
/// here, paid by every start and every exec not right after another.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupPlace {
    /// The `tasks` files of the v1 hierarchies: a single-threaded process moves itself by
    /// writing "0" there, which the kernel does without that lock.
    pub v1_tasks: Vec<String>,
    /// The cgroup2 directory, which the process is cloned into (CLONE_INTO_CGROUP).
    pub v2_dir: Option<String>,
}

impl CgroupPlace {
    /// Moves the calling process, which must have one thread, into the v1 groups.
    pub fn join_v1(&self) -> Result<(), String> {
        for p in &self.v1_tasks {
            std::fs::write(p, "0").map_err(|e| format!("joining {p}: {e}"))?;
        }
        Ok(())
    }

    /// An fd of the cgroup2 directory, for [`crate::sys::clone3_into`].
    pub fn v2_fd(&self) -> Result<Option<OwnedFd>, String> {
        self.v2_dir
            .as_deref()
            .map(|d| {
                nix::fcntl::open(
                    d,
                    nix::fcntl::OFlag::O_RDONLY
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| format!("opening {d}: {e}"))
            })
            .transpose()
    }
}

/// Run a command in an instance. Fds: the status socket, a pidfd of the instance's init (held
/// by silo-priv since the start), then stdin, stdout, stderr unless interactive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecReq {
    pub userns: bool,
    pub cgroups: CgroupPlace,
    pub spec: ExecSpec,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Start(StartReq),
    Exec(ExecReq),
    /// The interfaces of running instances, read by netlink from inside each one's network
    /// namespace. Fds: one pidfd of init per instance.
    NetState,
    /// Mount a disk in a running (or held) instance. Fds: init's pidfd, the source.
    AttachDisk(disks::AttachReq),
    /// Unmount a disk from a running instance. Fds: init's pidfd.
    DetachDisk(disks::DetachReq),
    /// The files API inside a running instance. Fds: init's pidfd, then a data fd.
    File(files::FileReq),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Started {
        init_pid: i32,
        monitor_pid: i32,
    },
    ExecForked,
    /// Per pidfd given, in order: its interfaces, or why they could not be read.
    NetState(Vec<Result<Vec<silo_proto::privileged::NetCounters>, String>>),
    /// A disk attach or detach is done.
    DiskDone,
    /// A files child is forked; it answers on the socket it was given.
    FileForked,
    Failed(String),
}

/// What an exec'd command's parent reports on the status socket.
#[derive(Debug, Serialize, Deserialize)]
pub enum ExecStatus {
    /// Running as this host pid; the pty master rides along when interactive, then a pidfd of
    /// the command.
    Started { pid: i32 },
    /// Could not start.
    Failed(String),
    /// Ended with this status.
    Exited(i32),
}

/// silo-priv's end.
#[derive(Debug)]
pub struct Launcher(LauncherClient);

impl Launcher {
    /// Forks the launcher. Runs in silo-priv's start-up, single-threaded, before the jail.
    pub fn spawn() -> HelperResult<Launcher> {
        LauncherClient::fork("silo-priv's launcher", serve).map(Launcher)
    }

    /// One request, one reply.
    pub async fn call(&self, req: &Request, fds: &[BorrowedFd<'_>]) -> HelperResult<Reply> {
        self.0.call(req, fds).await
    }
}

pub use silo_proto::jail::launcher::{async_fd, set_nonblocking};

/// The capabilities LXD drops from every container (its default `lxc.cap.drop`), dropped from
/// the launcher's bounding set so that no process it forks can ever hold them.
const DROPPED_CAPS: &[caps::Capability] = &[
    caps::Capability::CAP_SYS_TIME,
    caps::Capability::CAP_SYS_MODULE,
    caps::Capability::CAP_SYS_RAWIO,
    caps::Capability::CAP_MAC_ADMIN,
    caps::Capability::CAP_MAC_OVERRIDE,
];

/// Gives a process about to exec into an instance default signal dispositions and an empty
/// signal mask: ignored signals survive execve, and silo's processes ignore SIGPIPE (Rust's
/// runtime does) — a command must not inherit that.
pub fn default_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL installs no handler code.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty set from sigemptyset, passed to sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Drops LXD's container capabilities from the bounding set. Entering a user namespace
/// (creating one or setns into one) resets the bounding set to full, so init and every exec'd
/// command call this after they are in the instance's user namespace.
pub fn drop_container_caps() -> Result<(), String> {
    for c in DROPPED_CAPS {
        caps::drop(None, caps::CapSet::Bounding, *c).map_err(|e| format!("dropping {c}: {e}"))?;
    }
    Ok(())
}

fn serve(sock: OwnedFd) -> ! {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // Monitors are the launcher's children; it reaps them while it lives.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    if let Err(e) = drop_container_caps() {
        eprintln!("silo-priv launcher: {e}");
        std::process::exit(2);
    }
    if let Err(e) = seccomp::install_container_filter() {
        eprintln!("silo-priv launcher: container seccomp filter: {e}");
        std::process::exit(2);
    }
    loop {
        reap();
        if !wire::wait_readable(sock.as_fd(), 500) {
            continue;
        }
        let (req, fds) = match wire::recv::<Request>(sock.as_fd()) {
            Ok(Some(x)) => x,
            Ok(None) => std::process::exit(0),
            Err(e) => {
                let _ = wire::send(
                    sock.as_fd(),
                    &Reply::Failed(format!("bad request: {e}")),
                    &[],
                );
                continue;
            }
        };
        let reply = match req {
            Request::Start(s) => monitor::start(s, fds),
            Request::Exec(x) => attach::fork_exec(x, fds),
            Request::NetState => net_state(&fds),
            Request::AttachDisk(d) => disks::attach(d, fds),
            Request::DetachDisk(d) => disks::detach(d, fds),
            Request::File(f) => files::run(f, fds),
        };
        let reply = reply.unwrap_or_else(Reply::Failed);
        if wire::send(sock.as_fd(), &reply, &[]).is_err() {
            std::process::exit(0);
        }
    }
}

/// Reads each instance's interfaces from inside its network namespace. The launcher is
/// single-threaded, so setns moves all of it, and it comes back before serving anything else.
///
/// Never through the instance's files (`/proc/PID/root/sys/class/net/...`): container root
/// can plant symlinks there, and a root reader would follow them onto the host.
fn net_state(pidfds: &[OwnedFd]) -> Result<Reply, String> {
    let host = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| format!("opening the launcher's network namespace: {e}"))?;
    let mut out = Vec::with_capacity(pidfds.len());
    for p in pidfds {
        // SAFETY: setns takes an fd and a flag.
        if unsafe { libc::setns(p.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            out.push(Err(format!(
                "entering the instance's network namespace: {}",
                std::io::Error::last_os_error()
            )));
            continue;
        }
        out.push(silo_proto::netlink::interfaces());
        // SAFETY: as above.
        if unsafe { libc::setns(host.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // Never keep serving from inside an instance.
            eprintln!("silo-priv launcher: cannot return to its network namespace");
            std::process::exit(3);
        }
    }
    Ok(Reply::NetState(out))
}

fn reap() {
    silo_proto::jail::launcher::reap_children();
}
