//! Running instances as silo-priv sees them: what it started (or adopted from an earlier
//! silo-priv after a restart), by pidfd, with the records each instance's monitor keeps in
//! `<state>/runtime/<instance>/` (root's, 0700).
//!
//! Everything silod asks is checked here against silo-priv's own table and policy: an id range
//! must lie inside root's subordinate range, clear of every other owner's subordinate ids, and
//! overlap no instance's running or being started (reserved under the same lock as the check,
//! before the start awaits anything), a privileged
//! instance needs the policy's `allow_privileged`, the rootfs is found beneath silo-priv's own
//! fd of the storage-pools directory (root-owned all the way), never at a path silod names.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::Root;
use silo_proto::jail::policy::Policy;
use silo_proto::privileged::{ExecSpec, InitExit, InstanceStats, RunningInfo, StartSpec};
use silo_proto::InstanceName;
use tokio::io::unix::AsyncFd;

use crate::cgroups::Cgroups;
use crate::launcher::{self, wire, ExecStatus, Launcher, Reply};
use crate::subid::SubIds;
use crate::sys;

/// Instances per network state request to the launcher: below the kernel's SCM_MAX_FD of
/// 253 descriptors, with an answer well inside the launcher's packet size.
const FDS_PER_MESSAGE: usize = 100;

/// A pidfd, registered with the reactor on first use (adoption happens before the runtime).
#[derive(Debug)]
struct Pidfd {
    raw: Mutex<Option<OwnedFd>>,
    reg: tokio::sync::OnceCell<AsyncFd<OwnedFd>>,
}

impl Pidfd {
    fn new(fd: OwnedFd) -> Arc<Pidfd> {
        Arc::new(Pidfd {
            raw: Mutex::new(Some(fd)),
            reg: tokio::sync::OnceCell::new(),
        })
    }

    async fn fd(&self) -> HelperResult<&AsyncFd<OwnedFd>> {
        self.reg
            .get_or_try_init(|| async {
                let fd = self
                    .raw
                    .lock()
                    .ok()
                    .and_then(|mut r| r.take())
                    .ok_or_else(|| HelperError::Unsupported("pidfd lost".into()))?;
                launcher::async_fd(fd).map_err(|e| HelperError::io("register", "pidfd", e))
            })
            .await
    }

    /// A second fd for the same process, to hand to the launcher.
    fn dup(&self) -> HelperResult<OwnedFd> {
        let dup = |fd: BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .map_err(|e| HelperError::io("dup", "pidfd", e))
        };
        if let Some(a) = self.reg.get() {
            return dup(a.get_ref().as_fd());
        }
        match self.raw.lock().ok().as_deref() {
            Some(Some(fd)) => dup(fd.as_fd()),
            _ => Err(HelperError::Unsupported("pidfd lost".into())),
        }
    }

    /// Whether the process has ended (without waiting).
    async fn exited(&self) -> bool {
        match self.fd().await {
            Ok(a) => wire::wait_readable(a.get_ref().as_fd(), 0),
            Err(_) => true,
        }
    }

    async fn wait(&self) {
        if let Ok(a) = self.fd().await {
            let _ = a.readable().await;
        }
    }

    async fn signal(&self, sig: i32) -> HelperResult<()> {
        let a = self.fd().await?;
        sys::pidfd_signal(a.get_ref().as_fd(), sig)
            .map_err(|e| HelperError::io("signal", "process", e))
    }
}

#[derive(Debug)]
struct Running {
    info: RunningInfo,
    init: Arc<Pidfd>,
    monitor: Option<Arc<Pidfd>>,
}

#[derive(Debug)]
struct ExecEntry {
    pidfd: Option<Arc<Pidfd>>,
    status: Arc<tokio::sync::Mutex<AsyncFd<OwnedFd>>>,
}

/// The guest-API directory in an instance's runtime directory, mounted at its /dev/lxd.
const DEVLXD_DIR: &str = "devlxd";
/// The socket in it.
const DEVLXD_SOCK: &str = "sock";

/// The runtime service state.
#[derive(Debug)]
pub struct Runtime {
    launcher: Launcher,
    state_dir: String,
    pools: Root,
    rundirs: Root,
    policy: Policy,
    running: Mutex<HashMap<InstanceName, Running>>,
    /// Starts under way and the id base each holds. Taken with `running` held (lock order:
    /// `running`, then `starting`) so the checks and the claim are one step.
    starting: Mutex<HashMap<InstanceName, Option<(u64, u64)>>>,
    stopped: Mutex<HashMap<InstanceName, InitExit>>,
    execs: Mutex<HashMap<u64, ExecEntry>>,
    next_exec: std::sync::atomic::AtomicU64,
    fds: Arc<silo_proto::fdpass::FdSender>,
}

/// A pidfd for `pid` only if that pid is still the process that started at `start` (clock
/// ticks since boot). The pidfd is opened first and the start time read after: a pid recycled
/// in between shows another start time, so the pidfd can never name a stranger.
fn pidfd_verified(pid: u32, start: u64) -> Option<OwnedFd> {
    let fd = sys::pidfd_open(pid as i32).ok()?;
    (sys::start_time(pid as i32) == Some(start)).then_some(fd)
}

fn parse_exit(s: &str) -> InitExit {
    let s = s.trim();
    if let Some(c) = s.strip_prefix("exited ") {
        c.parse().map(InitExit::Exited).unwrap_or(InitExit::Unknown)
    } else if let Some(c) = s.strip_prefix("signaled ") {
        c.parse()
            .map(InitExit::Signaled)
            .unwrap_or(InitExit::Unknown)
    } else if let Some(w) = s.strip_prefix("failed ") {
        InitExit::StartFailed(w.to_string())
    } else {
        InitExit::Unknown
    }
}

fn read_at(dir: &Root, name: &str, max: u64) -> Option<Vec<u8>> {
    use std::io::{Read, Seek};
    let fd = nix::fcntl::openat(
        dir.fd(),
        name,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let mut f = std::fs::File::from(fd);
    let len = f.metadata().ok()?.len();
    if len > max {
        f.seek(std::io::SeekFrom::Start(len - max)).ok()?;
    }
    let mut out = Vec::new();
    f.take(max).read_to_end(&mut out).ok()?;
    Some(out)
}

fn unlink(dir: &Root, name: &str) {
    let _ = nix::unistd::unlinkat(dir.fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
}

/// Whether the image's /sbin/init is systemd, following its symlinks inside the rootfs only.
fn init_is_systemd(rootfs: &Root) -> bool {
    use nix::fcntl::{openat2, OFlag};
    let how = silo_proto::jail::beneath::in_root_how(OFlag::O_PATH);
    let Ok(fd) = openat2(rootfs.fd(), "sbin/init", how) else {
        return false;
    };
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.file_name().map(|n| n == "systemd").unwrap_or(false))
        .unwrap_or(false)
}

impl Runtime {
    /// Opens its directories, forks the launcher and adopts instances an earlier silo-priv
    /// started. Runs before the jail, single-threaded.
    pub fn open(
        state_dir: &std::path::Path,
        policy: Policy,
        fds: Arc<silo_proto::fdpass::FdSender>,
    ) -> HelperResult<Runtime> {
        let state = Root::open(state_dir)?;
        let (pools, _) = state.mkdir_all(&["storage-pools"], 0o711)?;
        let (rundirs, _) = state.mkdir_all(&["runtime"], 0o711)?;
        let launcher = Launcher::spawn()?;
        let rt = Runtime {
            launcher,
            state_dir: state_dir.display().to_string(),
            pools,
            rundirs,
            policy,
            running: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashMap::new()),
            stopped: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            next_exec: std::sync::atomic::AtomicU64::new(1),
            fds,
        };
        rt.adopt();
        Ok(rt)
    }

    fn adopt(&self) {
        let Ok(names) = self.rundirs.list() else {
            return;
        };
        for n in names {
            let Ok(name) = InstanceName::new(n.clone()) else {
                continue;
            };
            let Ok(dir) = self.rundirs.open_dir(&[&n]) else {
                continue;
            };
            let Some(rec) = read_at(&dir, "init", 4096) else {
                continue;
            };
            let Some((info, start)) =
                RunningInfo::parse_record(&name, &String::from_utf8_lossy(&rec))
            else {
                continue;
            };
            let Some(init) = pidfd_verified(info.init_pid, start) else {
                // A recycled pid has another start time: then the instance is long gone.
                unlink(&dir, "init");
                continue;
            };
            let monitor = sys::pidfd_open(info.monitor_pid as i32)
                .ok()
                .map(Pidfd::new);
            tracing::info!(instance = %name, pid = info.init_pid, "adopted a running instance");
            if let Ok(mut r) = self.running.lock() {
                r.insert(
                    name,
                    Running {
                        info,
                        init: Pidfd::new(init),
                        monitor,
                    },
                );
            }
        }
    }

    /// Checks a start's name and id range against the policy, the subordinate ranges and every
    /// instance running or being started, and claims both in the same step: a concurrent start
    /// sees the claim. `dead` is this instance's old entry, whose init was seen to have ended.
    fn reserve(
        &self,
        spec: &StartSpec,
        ids: &SubIds,
        dead: Option<&Arc<Pidfd>>,
    ) -> HelperResult<Reservation<'_>> {
        let name = &spec.instance;
        ids.check_raw(&spec.raw_idmap, spec.idmap_base.is_none(), &self.policy)?;
        let span = match spec.idmap_base {
            None => {
                if !self.policy.allow_privileged {
                    return Err(self.policy.deny(format!(
                        "instance {:?} asks to be privileged (security.privileged); set allow_privileged = true to allow privileged containers",
                        name.as_str()
                    )));
                }
                None
            }
            Some(b) => {
                silo_proto::privileged::check_idmap_size(spec.idmap_size)?;
                ids.check(b, spec.idmap_size).map_err(|why| {
                    HelperError::invalid("idmap", format!("instance {:?}: {why}", name.as_str()))
                })?;
                Some((b, b + spec.idmap_size))
            }
        };
        let running = self.running.lock().map_err(|_| poisoned())?;
        let mut starting = self.starting.lock().map_err(|_| poisoned())?;
        if starting.contains_key(name) {
            return Err(HelperError::OutOfOrder(format!(
                "instance {:?} is already being started",
                name.as_str()
            )));
        }
        if let Some(r) = running.get(name) {
            if !dead.is_some_and(|d| Arc::ptr_eq(d, &r.init)) {
                return Err(HelperError::OutOfOrder(format!(
                    "instance {:?} is already running",
                    name.as_str()
                )));
            }
        }
        if let Some((b, end)) = span {
            let overlaps = |o: u64, size: u64| b < o.saturating_add(size) && o < end;
            let clash = running
                .values()
                .filter(|r| &r.info.instance != name)
                .find_map(|r| {
                    r.info
                        .idmap_base
                        .filter(|o| overlaps(*o, r.info.idmap_size))
                        .map(|_| format!("running instance {:?}", r.info.instance.as_str()))
                })
                .or_else(|| {
                    starting.iter().find_map(|(n, o)| {
                        o.filter(|(o, size)| overlaps(*o, *size))
                            .map(|_| format!("instance {:?}, being started", n.as_str()))
                    })
                });
            if let Some(other) = clash {
                return Err(HelperError::invalid(
                    "idmap",
                    format!("ids {b}-{} overlap those of {other}", end - 1),
                ));
            }
        }
        starting.insert(name.clone(), spec.idmap_base.map(|b| (b, spec.idmap_size)));
        Ok(Reservation {
            rt: self,
            name: name.clone(),
        })
    }

    /// Starts an instance.
    pub async fn start(
        &self,
        cg: &Cgroups,
        ids: &SubIds,
        spec: StartSpec,
    ) -> HelperResult<RunningInfo> {
        let name = spec.instance.clone();
        spec.limits.validate()?;
        let old = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(&name).map(|e| e.init.clone()));
        let dead = match old {
            Some(p) if !p.exited().await => {
                return Err(HelperError::OutOfOrder(format!(
                    "instance {:?} is already running",
                    name.as_str()
                )))
            }
            old => old,
        };
        // Held until this start is in the running table or has failed: nothing below runs
        // before the claim, so two starts can never both pass the checks.
        let _claim = self.reserve(&spec, ids, dead.as_ref())?;
        // Every disk's source is opened (and the policy asked) before anything is made.
        let mut disks = Vec::new();
        for d in &spec.disks {
            if let Some(fd) = crate::disks::open_source(&self.pools, &self.policy, d)? {
                disks.push((d.clone(), fd));
            } else {
                tracing::info!(instance = %name, device = d.device.as_str(), "optional disk source missing; skipped");
            }
        }
        // Host devices: found and allowed by the policy now, made once init is held.
        let mut devices = Vec::new();
        for d in &spec.devices {
            match crate::devices::resolve(&self.policy, d) {
                Ok(nodes) => devices.push((d.clone(), nodes)),
                Err(HelperError::NotFound { .. }) if !d.required => {
                    tracing::info!(instance = %name, device = d.device.as_str(), "optional host device missing; skipped");
                }
                Err(e) => return Err(e),
            }
        }
        // Disks go in while init is held, before it execs anything of the instance's.
        let hold = spec.hold || !disks.is_empty() || !devices.is_empty();
        let rootfs = self
            .pools
            .open_dir(&[spec.pool.as_str(), "containers", name.as_str(), "rootfs"])
            .map_err(|e| match e {
                HelperError::NotFound { .. } => HelperError::NotFound {
                    what: format!(
                        "root volume of instance {:?} in pool {:?}",
                        name.as_str(),
                        spec.pool.as_str()
                    ),
                },
                e => e,
            })?;
        let systemd = init_is_systemd(&rootfs);
        let (rundir, _) = self.rundirs.mkdir_all(&[name.as_str()], 0o700)?;
        for f in ["init", "exit", "console.sock", "go"] {
            unlink(&rundir, f);
        }
        rundir.mkdir_all(&["rootfs"], 0o700)?;
        if let Ok(mut s) = self.stopped.lock() {
            s.remove(&name);
        }
        // A cgroup left by a crash mid-start holds no processes: clear it.
        if cg.exists(&name) {
            cg.delete(&name)?;
        }
        cg.create(&name)?;
        if let Err(e) = crate::devcg::restrict(cg, &name, &[]) {
            let _ = self.remove_cgroup(cg, &name).await;
            return Err(e);
        }
        if rundir.exists("devices")? {
            rundir.remove_tree("devices")?;
        }
        // A fresh guest-API directory per start (root's, 0755: the instance only traverses
        // it to reach the socket); an earlier run's socket goes with the old one.
        if rundir.exists(DEVLXD_DIR)? {
            rundir.remove_tree(DEVLXD_DIR)?;
        }
        let started = self
            .start_in_cgroup(cg, &spec, hold, &rootfs, &rundir, systemd)
            .await;
        let (init_pid, monitor_pid) = match started {
            Ok(x) => x,
            Err(e) => {
                let _ = self.remove_cgroup(cg, &name).await;
                return Err(e);
            }
        };
        let info = RunningInfo {
            instance: name.clone(),
            init_pid: init_pid as u32,
            monitor_pid: monitor_pid as u32,
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            idmap_base: spec.idmap_base,
            idmap_size: spec.idmap_size,
            systemd,
            frozen: false,
        };
        // The monitor recorded init's start time while init was its unreaped child; a pidfd
        // opened from the number is kept only if it names that same process.
        let init = read_at(&rundir, "init", 4096)
            .and_then(|rec| RunningInfo::parse_record(&name, &String::from_utf8_lossy(&rec)))
            .filter(|(rec, _)| rec.init_pid == init_pid as u32)
            .and_then(|(_, start)| pidfd_verified(init_pid as u32, start))
            .ok_or_else(|| HelperError::Io {
                op: "start".into(),
                target: name.as_str().into(),
                message: "the instance's init ended as it started (see its console log)".into(),
                errno: None,
            })?;
        let monitor = sys::pidfd_open(monitor_pid).ok().map(Pidfd::new);
        tracing::info!(instance = %name, pid = init_pid, systemd, "started");
        self.running.lock().map_err(|_| poisoned())?.insert(
            name.clone(),
            Running {
                info: info.clone(),
                init: Pidfd::new(init),
                monitor,
            },
        );
        let mut plugged = Ok(());
        for (d, fd) in disks {
            plugged = self.mount_disk(&name, &d, fd).await;
            if plugged.is_err() {
                break;
            }
        }
        for (d, nodes) in devices {
            if plugged.is_err() {
                break;
            }
            plugged = self.plug_nodes(cg, &name, &d, nodes).await.map(|_| ());
        }
        if plugged.is_ok() && hold && !spec.hold {
            plugged = self.release(&name);
        }
        if let Err(e) = plugged {
            // Nothing half-made: init goes, and with its mount namespace every disk mounted.
            let _ = self.stop(&name, true).await;
            let _ = self.wait_stopped(cg, &name, Duration::from_secs(10)).await;
            return Err(e);
        }
        Ok(info)
    }

    /// Mounts a disk (its source already opened) in a running or held instance.
    async fn mount_disk(
        &self,
        name: &InstanceName,
        d: &silo_proto::privileged::DiskMount,
        src: OwnedFd,
    ) -> HelperResult<()> {
        let (info, init, _) = self.entry(name)?;
        let pidfd = init.dup()?;
        let req = launcher::Request::AttachDisk(launcher::disks::AttachReq {
            pid: info.init_pid as i32,
            base: info.idmap_base,
            path: d.path.as_str().to_string(),
            host: matches!(d.source, silo_proto::privileged::DiskSource::Host(_)),
            readonly: d.readonly,
            recursive: d.recursive,
            slave: d.propagation == silo_proto::privileged::Propagation::Slave,
            node: None,
        });
        match self
            .launcher
            .call(&req, &[pidfd.as_fd(), src.as_fd()])
            .await?
        {
            Reply::DiskDone => {
                tracing::info!(instance = %name, device = d.device.as_str(), path = d.path.as_str(), "disk mounted");
                Ok(())
            }
            Reply::Failed(why) => Err(HelperError::Io {
                op: "mount disk".into(),
                target: format!(
                    "device {:?} of instance {:?}",
                    d.device.as_str(),
                    name.as_str()
                ),
                message: why,
                errno: None,
            }),
            _ => Err(HelperError::Unsupported(
                "launcher answered out of turn".into(),
            )),
        }
    }

    /// Hot-plugs a disk into a running instance; `false` when its source is missing and it
    /// is not required.
    pub async fn attach_disk(
        &self,
        name: &InstanceName,
        d: &silo_proto::privileged::DiskMount,
    ) -> HelperResult<bool> {
        let (_, init, _) = self.entry(name)?;
        if init.exited().await {
            return Err(not_running(name));
        }
        match crate::disks::open_source(&self.pools, &self.policy, d)? {
            Some(fd) => self.mount_disk(name, d, fd).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// One files request inside a running instance, by the launcher's child (see
    /// `launcher::files`); `data` is the child's end of the data channel.
    async fn file_call(
        &self,
        name: &InstanceName,
        op: launcher::files::FileOp,
        data: Option<OwnedFd>,
    ) -> HelperResult<silo_proto::store::FileMeta> {
        let (info, init, _) = self.entry(name)?;
        if init.exited().await {
            return Err(not_running(name));
        }
        let pidfd = init.dup()?;
        let req = launcher::Request::File(launcher::files::FileReq {
            userns: info.idmap_base.is_some(),
            op,
        });
        let (ours, theirs) = wire::pair().map_err(|e| HelperError::io("socketpair", "files", e))?;
        let mut fds = vec![pidfd.as_fd(), theirs.as_fd()];
        if let Some(d) = &data {
            fds.push(d.as_fd());
        }
        match self.launcher.call(&req, &fds).await? {
            Reply::FileForked => {}
            Reply::Failed(why) => {
                return Err(HelperError::Io {
                    op: "files".into(),
                    target: format!("instance {:?}", name.as_str()),
                    message: why,
                    errno: None,
                })
            }
            _ => {
                return Err(HelperError::Unsupported(
                    "launcher answered out of turn".into(),
                ))
            }
        }
        // Only the child holds these now: its end closing is how a dead child shows.
        drop(fds);
        drop(theirs);
        drop(data);
        launcher::set_nonblocking(&ours);
        let answer =
            launcher::async_fd(ours).map_err(|e| HelperError::io("register", "files", e))?;
        let secs = u64::from(launcher::files::ANSWER_SECS) + 5;
        let got = tokio::time::timeout(Duration::from_secs(secs), async {
            loop {
                let mut g = answer
                    .readable()
                    .await
                    .map_err(|e| HelperError::io("poll", "files", e))?;
                if let Ok(r) = g.try_io(|s| {
                    wire::recv::<Result<silo_proto::store::FileMeta, HelperError>>(
                        s.get_ref().as_fd(),
                    )
                }) {
                    return r.map_err(|e| HelperError::io("recv", "files", e));
                }
            }
        })
        .await
        .map_err(|_| {
            HelperError::Unsupported(format!(
                "the files of instance {:?} did not answer within {secs}s",
                name.as_str()
            ))
        })??;
        match got {
            Some((r, _)) => r,
            None => Err(HelperError::Io {
                op: "files".into(),
                target: format!("instance {:?}", name.as_str()),
                message: "the files child ended without an answer (a lookup inside the \
                          instance hung past its deadline, or it died)"
                    .into(),
                errno: None,
            }),
        }
    }

    /// Reads `path` in a running instance as it sees it; a file's bytes come through a pipe
    /// (its read end on the fd side channel), never the file's own fd.
    pub async fn file_get(
        &self,
        name: &InstanceName,
        path: String,
    ) -> HelperResult<silo_proto::store::FileMeta> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| HelperError::errno("pipe", "files", e))?;
        let mut meta = self
            .file_call(name, launcher::files::FileOp::Get(path), Some(w))
            .await?;
        if meta.kind == silo_proto::store::FileKind::File {
            meta.fd = Some(self.send_fds(&[r])?);
        }
        Ok(meta)
    }

    /// Creates or replaces `path` in a running instance, as its root; for a file, answers a
    /// socket (on the fd side channel) whose data goes into it, answered `ok` or `error: ...`.
    pub async fn file_put(
        &self,
        name: &InstanceName,
        path: String,
        put: silo_proto::store::FilePut,
    ) -> HelperResult<Option<silo_proto::fdpass::FdTicket>> {
        let file = put.kind == silo_proto::store::FileKind::File;
        let (mine, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| HelperError::errno("socketpair", "files", e))?;
        self.file_call(name, launcher::files::FileOp::Put(path, put), Some(theirs))
            .await?;
        if file {
            Ok(Some(self.send_fds(&[mine])?))
        } else {
            Ok(None)
        }
    }

    /// Removes `path` (a file, symlink or empty directory) in a running instance.
    pub async fn file_delete(&self, name: &InstanceName, path: String) -> HelperResult<()> {
        self.file_call(name, launcher::files::FileOp::Delete(path), None)
            .await
            .map(|_| ())
    }

    /// Unplugs the disk at `path` from a running instance.
    pub async fn detach_disk(
        &self,
        name: &InstanceName,
        path: &silo_proto::types::RelPath,
    ) -> HelperResult<()> {
        let (_, init, _) = self.entry(name)?;
        if init.exited().await {
            return Err(not_running(name));
        }
        let pidfd = init.dup()?;
        let req = launcher::Request::DetachDisk(launcher::disks::DetachReq {
            path: path.as_str().to_string(),
            remove_file: false,
        });
        match self.launcher.call(&req, &[pidfd.as_fd()]).await? {
            Reply::DiskDone => Ok(()),
            Reply::Failed(why) => Err(HelperError::Io {
                op: "unmount disk".into(),
                target: format!("/{} in instance {:?}", path.as_str(), name.as_str()),
                message: why,
                errno: None,
            }),
            _ => Err(HelperError::Unsupported(
                "launcher answered out of turn".into(),
            )),
        }
    }

    /// The policy's word on a host device: how many nodes it stands for now.
    pub fn check_host_device(&self, d: &silo_proto::privileged::HostDevice) -> HelperResult<u32> {
        match crate::devices::resolve(&self.policy, d) {
            Ok(n) => Ok(n.len() as u32),
            Err(HelperError::NotFound { .. }) if !d.required => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Hot-plugs a host device into a running instance.
    pub async fn attach_host_device(
        &self,
        cg: &Cgroups,
        name: &InstanceName,
        d: &silo_proto::privileged::HostDevice,
    ) -> HelperResult<u32> {
        let (_, init, _) = self.entry(name)?;
        if init.exited().await {
            return Err(not_running(name));
        }
        let nodes = match crate::devices::resolve(&self.policy, d) {
            Ok(n) => n,
            Err(HelperError::NotFound { .. }) if !d.required => return Ok(0),
            Err(e) => return Err(e),
        };
        self.plug_nodes(cg, name, d, nodes).await
    }

    /// The device rules of every host device an instance holds, from their records.
    fn device_rules(&self, name: &InstanceName) -> Vec<crate::devcg::Rule> {
        let Ok(dir) = self.rundirs.open_dir(&[name.as_str(), "devices"]) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for dev in dir.list().unwrap_or_default() {
            let Ok(sub) = dir.open_dir(&[dev.as_str()]) else {
                continue;
            };
            let rec = read_at(&sub, "list", 1 << 20).unwrap_or_default();
            for line in String::from_utf8_lossy(&rec).lines() {
                if let Some((kind, major, minor, _)) = parse_node_line(line) {
                    out.push(crate::devcg::Rule::node(kind, major, minor));
                }
            }
        }
        out
    }

    /// Makes and mounts a device's nodes in a running (or held) instance, after recording
    /// them and letting the instance's cgroup open them; undone on a failure.
    async fn plug_nodes(
        &self,
        cg: &Cgroups,
        name: &InstanceName,
        d: &silo_proto::privileged::HostDevice,
        nodes: Vec<crate::devices::Node>,
    ) -> HelperResult<u32> {
        use silo_proto::privileged::NodeKind;
        let (info, init, _) = self.entry(name)?;
        let (dir, _) = self
            .rundirs
            .mkdir_all(&[name.as_str(), "devices", d.device.as_str()], 0o700)?;
        let rec: String = nodes
            .iter()
            .map(|n| {
                let k = if n.kind == NodeKind::Block { 'b' } else { 'c' };
                format!("{k} {} {} {}\n", n.major, n.minor, n.inside)
            })
            .collect();
        sys::write_record(dir.fd(), "list", &rec)
            .map_err(|e| HelperError::io("write", "device record", e))?;
        let r = async {
            crate::devcg::set(cg, name, &self.device_rules(name))?;
            for (i, n) in nodes.iter().enumerate() {
                let pidfd = init.dup()?;
                let req = launcher::Request::AttachDisk(launcher::disks::AttachReq {
                    pid: info.init_pid as i32,
                    base: info.idmap_base,
                    path: n.inside.clone(),
                    host: false,
                    readonly: false,
                    recursive: false,
                    slave: false,
                    node: Some(launcher::disks::NodeReq {
                        name: format!("n{i}"),
                        block: n.kind == NodeKind::Block,
                        major: n.major,
                        minor: n.minor,
                        uid: d.owner.uid,
                        gid: d.owner.gid,
                        mode: d.owner.mode,
                    }),
                });
                match self.launcher.call(&req, &[pidfd.as_fd(), dir.fd()]).await? {
                    Reply::DiskDone => {}
                    Reply::Failed(why) => {
                        return Err(HelperError::Io {
                            op: "give device".into(),
                            target: format!(
                                "{} as /{} to instance {:?}",
                                n.host,
                                n.inside,
                                name.as_str()
                            ),
                            message: why,
                            errno: None,
                        })
                    }
                    _ => {
                        return Err(HelperError::Unsupported(
                            "launcher answered out of turn".into(),
                        ))
                    }
                }
            }
            Ok(nodes.len() as u32)
        }
        .await;
        if r.is_err() {
            let _ = self.detach_host_device(cg, name, &d.device).await;
        }
        r
    }

    /// Unplugs a host device: its mounts, its nodes, its cgroup rules.
    pub async fn detach_host_device(
        &self,
        cg: &Cgroups,
        name: &InstanceName,
        device: &silo_proto::DeviceName,
    ) -> HelperResult<()> {
        let (_, init, _) = self.entry(name)?;
        let devs = self.rundirs.open_dir(&[name.as_str(), "devices"])?;
        if !devs.exists(device.as_str())? {
            return Ok(());
        }
        let dir = devs.open_dir(&[device.as_str()])?;
        let rec = read_at(&dir, "list", 1 << 20).unwrap_or_default();
        if !init.exited().await {
            for line in String::from_utf8_lossy(&rec).lines() {
                let Some((_, _, _, inside)) = parse_node_line(line) else {
                    continue;
                };
                let pidfd = init.dup()?;
                let req = launcher::Request::DetachDisk(launcher::disks::DetachReq {
                    path: inside.to_string(),
                    remove_file: true,
                });
                if let Reply::Failed(why) = self.launcher.call(&req, &[pidfd.as_fd()]).await? {
                    return Err(HelperError::Io {
                        op: "take back device".into(),
                        target: format!("/{inside} in instance {:?}", name.as_str()),
                        message: why,
                        errno: None,
                    });
                }
            }
        }
        drop(dir);
        devs.remove_tree(device.as_str())?;
        crate::devcg::set(cg, name, &self.device_rules(name))
    }

    /// Sets a running instance's disk I/O limits.
    pub fn apply_disk_io(
        &self,
        cg: &Cgroups,
        name: &InstanceName,
        io: &[silo_proto::privileged::DiskIo],
    ) -> HelperResult<()> {
        crate::diskio::apply(cg, &self.pools, &self.policy, name, io)
    }

    /// The policy's word on a disk source.
    pub fn check_disk_source(&self, s: &silo_proto::privileged::DiskSource) -> HelperResult<()> {
        crate::disks::check_source(&self.policy, s)
    }

    async fn start_in_cgroup(
        &self,
        cg: &Cgroups,
        spec: &StartSpec,
        hold: bool,
        rootfs: &Root,
        rundir: &Root,
        systemd: bool,
    ) -> HelperResult<(i32, i32)> {
        let name = &spec.instance;
        let devlxd = if spec.devlxd {
            Some(rundir.mkdir_all(&[DEVLXD_DIR], 0o755)?.0)
        } else {
            None
        };
        cg.apply_limits(name, &spec.limits)?;
        crate::diskio::apply(cg, &self.pools, &self.policy, name, &spec.limits.disk_io)?;
        let req = launcher::Request::Start(launcher::StartReq {
            instance: name.as_str().to_string(),
            idmap_base: spec.idmap_base,
            idmap_size: spec.idmap_size,
            nesting: spec.nesting,
            // Checked in `reserve`; the idmapped root goes through the same user namespace,
            // so it shows files by the same map.
            uid_map: spec
                .idmap_base
                .map(|b| silo_proto::privileged::id_map(b, spec.idmap_size, &spec.raw_idmap, true)),
            gid_map: spec.idmap_base.map(|b| {
                silo_proto::privileged::id_map(b, spec.idmap_size, &spec.raw_idmap, false)
            }),
            cgroups: cg.place(name),
            monitor: cg.monitor_place()?,
            mountpoint: format!("{}/runtime/{}/rootfs", self.state_dir, name.as_str()),
            systemd,
            hold,
            devlxd: devlxd.is_some(),
        });
        let mut fds = vec![rootfs.fd(), rundir.fd()];
        fds.extend(devlxd.as_ref().map(Root::fd));
        match self.launcher.call(&req, &fds).await? {
            Reply::Started {
                init_pid,
                monitor_pid,
            } => Ok((init_pid, monitor_pid)),
            Reply::Failed(why) => Err(HelperError::Io {
                op: "start".into(),
                target: format!("instance {:?}", name.as_str()),
                message: why,
                errno: None,
            }),
            Reply::ExecForked | Reply::NetState(_) | Reply::DiskDone | Reply::FileForked => Err(
                HelperError::Unsupported("launcher answered out of turn".into()),
            ),
        }
    }

    fn entry(
        &self,
        name: &InstanceName,
    ) -> HelperResult<(RunningInfo, Arc<Pidfd>, Option<Arc<Pidfd>>)> {
        self.running
            .lock()
            .map_err(|_| poisoned())?
            .get(name)
            .map(|e| (e.info.clone(), e.init.clone(), e.monitor.clone()))
            .ok_or_else(|| not_running(name))
    }

    /// Signals init to shut down, or kills it.
    pub async fn stop(&self, name: &InstanceName, force: bool) -> HelperResult<()> {
        let (info, init, _) = self.entry(name)?;
        let sig = if force {
            libc::SIGKILL
        } else if info.systemd {
            libc::SIGRTMIN() + 3
        } else {
            libc::SIGPWR
        };
        init.signal(sig).await
    }

    async fn remove_cgroup(&self, cg: &Cgroups, name: &InstanceName) -> HelperResult<()> {
        // The kernel tears the pid namespace down after init: give its last processes a moment.
        let mut last = Ok(());
        for _ in 0..50 {
            if !cg.exists(name) {
                return Ok(());
            }
            last = cg.delete(name);
            if last.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last
    }

    /// Waits up to `timeout` for the init of any of `names` to end. Answers those whose init
    /// has ended, and at once those that do not run.
    pub async fn wait_any_stopped(
        &self,
        names: &[InstanceName],
        timeout: Duration,
    ) -> Vec<InstanceName> {
        let mut gone = Vec::new();
        let mut inits = Vec::new();
        for n in names {
            match self.entry(n) {
                Ok((_, init, _)) => inits.push((n, init)),
                Err(_) => gone.push(n.clone()),
            }
        }
        if !gone.is_empty() || inits.is_empty() {
            return gone;
        }
        let waits = inits.iter().map(|(_, init)| Box::pin(init.wait()));
        let _ = tokio::time::timeout(timeout, futures::future::select_all(waits)).await;
        // Whoever else ended meanwhile goes in the same answer.
        for (n, init) in &inits {
            if init.exited().await {
                gone.push((*n).clone());
            }
        }
        gone
    }

    /// Waits for init to end, then cleans up and says how it ended.
    pub async fn wait_stopped(
        &self,
        cg: &Cgroups,
        name: &InstanceName,
        timeout: Duration,
    ) -> HelperResult<InitExit> {
        let (_, init, monitor) = match self.entry(name) {
            Ok(e) => e,
            Err(e) => {
                return self
                    .stopped
                    .lock()
                    .map_err(|_| poisoned())?
                    .get(name)
                    .cloned()
                    .ok_or(e)
            }
        };
        if tokio::time::timeout(timeout, init.wait()).await.is_err() {
            return Ok(InitExit::Running);
        }
        // The monitor writes the exit record after reaping init, then leaves.
        if let Some(m) = &monitor {
            let _ = tokio::time::timeout(Duration::from_secs(5), m.wait()).await;
        }
        let dir = self.rundirs.open_dir(&[name.as_str()])?;
        let exit = read_at(&dir, "exit", 4096)
            .map(|b| parse_exit(&String::from_utf8_lossy(&b)))
            .unwrap_or(InitExit::Unknown);
        unlink(&dir, "init");
        // The guest API's socket goes with the instance (silod stops serving it too).
        if dir.exists(DEVLXD_DIR).unwrap_or(false) {
            if let Err(e) = dir.remove_tree(DEVLXD_DIR) {
                tracing::warn!(instance = %name, error = %e, "removing /dev/lxd's directory");
            }
        }
        let removed = self
            .running
            .lock()
            .map_err(|_| poisoned())?
            .remove(name)
            .is_some();
        if removed {
            self.stopped
                .lock()
                .map_err(|_| poisoned())?
                .insert(name.clone(), exit.clone());
            self.remove_cgroup(cg, name).await?;
            tracing::info!(instance = %name, ?exit, "stopped");
        }
        Ok(exit)
    }

    /// One instance's record, if it runs.
    pub async fn get(&self, name: &InstanceName) -> Option<RunningInfo> {
        let (info, init, _) = self.entry(name).ok()?;
        (!init.exited().await).then_some(info)
    }

    /// What runs.
    pub async fn list(&self) -> Vec<RunningInfo> {
        let entries: Vec<(RunningInfo, Arc<Pidfd>)> = self
            .running
            .lock()
            .map(|r| {
                r.values()
                    .map(|e| (e.info.clone(), e.init.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for (i, p) in entries {
            if !p.exited().await {
                out.push(i);
            }
        }
        out.sort_by(|a, b| a.instance.cmp(&b.instance));
        out
    }

    /// Resource use of each named running instance (those not running are left out): cgroup
    /// figures, and interfaces read by the launcher through netlink inside each one's network
    /// namespace, entered by the pidfd held since start.
    pub async fn stats_many(
        &self,
        cg: &Cgroups,
        names: &[InstanceName],
    ) -> Vec<(InstanceName, InstanceStats)> {
        let mut found = Vec::new();
        let mut pidfds = Vec::new();
        for n in names {
            let Ok((info, init, _)) = self.entry(n) else {
                continue;
            };
            let Ok(fd) = init.dup() else { continue };
            let mut s = cg.stats(n);
            s.pid = info.init_pid;
            found.push((n.clone(), s));
            pidfds.push(fd);
        }
        if pidfds.is_empty() {
            return found;
        }
        // One message carries at most SCM_MAX_FD (253) descriptors: more is EINVAL.
        for (chunk, fds) in found
            .chunks_mut(FDS_PER_MESSAGE)
            .zip(pidfds.chunks(FDS_PER_MESSAGE))
        {
            let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
            match self
                .launcher
                .call(&launcher::Request::NetState, &borrowed)
                .await
            {
                Ok(Reply::NetState(nets)) if nets.len() == chunk.len() => {
                    for ((n, s), net) in chunk.iter_mut().zip(nets) {
                        match net {
                            Ok(net) => s.net = net,
                            Err(e) => tracing::debug!(instance = %n, "interfaces: {e}"),
                        }
                    }
                }
                Ok(_) => {
                    tracing::warn!("the launcher answered a network state request out of turn")
                }
                Err(e) => tracing::warn!("interfaces of running instances: {e}"),
            }
        }
        found
    }

    /// Resource use.
    pub async fn stats(&self, cg: &Cgroups, name: &InstanceName) -> HelperResult<InstanceStats> {
        self.entry(name)?;
        self.stats_many(cg, std::slice::from_ref(name))
            .await
            .pop()
            .map(|(_, s)| s)
            .ok_or_else(|| not_running(name))
    }

    /// Runs a command in the instance.
    pub async fn exec(
        &self,
        cg: &Cgroups,
        spec: ExecSpec,
    ) -> HelperResult<silo_proto::privileged::ExecStarted> {
        spec.validate()?;
        let (info, init, _) = self.entry(&spec.instance)?;
        if init.exited().await {
            return Err(not_running(&spec.instance));
        }
        let (status_ours, status_theirs) =
            wire::pair().map_err(|e| HelperError::io("socketpair", "exec status", e))?;
        let mut child_fds: Vec<OwnedFd> = vec![status_theirs, init.dup()?];
        let mut our_ends: Vec<OwnedFd> = Vec::new();
        if !spec.interactive {
            let (r0, w0) = pipe()?;
            let (r1, w1) = pipe()?;
            let (r2, w2) = pipe()?;
            child_fds.extend([r0, w1, w2]);
            our_ends.extend([w0, r1, r2]);
        }
        let interactive = spec.interactive;
        let req = launcher::Request::Exec(launcher::ExecReq {
            userns: info.idmap_base.is_some(),
            cgroups: cg.place(&spec.instance),
            spec,
        });
        let borrowed: Vec<_> = child_fds.iter().map(|f| f.as_fd()).collect();
        match self.launcher.call(&req, &borrowed).await? {
            Reply::ExecForked => {}
            Reply::Failed(why) => {
                return Err(HelperError::Io {
                    op: "exec".into(),
                    target: "command".into(),
                    message: why,
                    errno: None,
                })
            }
            Reply::Started { .. } | Reply::NetState(_) | Reply::DiskDone | Reply::FileForked => {
                return Err(HelperError::Unsupported(
                    "launcher answered out of turn".into(),
                ))
            }
        }
        drop(borrowed);
        drop(child_fds);
        launcher::set_nonblocking(&status_ours);
        let status = launcher::async_fd(status_ours)
            .map_err(|e| HelperError::io("register", "exec status", e))?;
        let first = tokio::time::timeout(Duration::from_secs(30), recv_status(&status))
            .await
            .map_err(|_| {
                HelperError::Unsupported("the command did not start within 30s".into())
            })??;
        let (pid, mut fds) = match first {
            Some((ExecStatus::Started { pid }, fds)) => (pid, fds),
            Some((ExecStatus::Failed(why), _)) => {
                return Err(HelperError::Io {
                    op: "exec".into(),
                    target: "command".into(),
                    message: why,
                    errno: None,
                })
            }
            Some((ExecStatus::Exited(_), _)) | None => {
                return Err(HelperError::Unsupported(
                    "the command's parent vanished".into(),
                ))
            }
        };
        // The attacher's pidfd of its unreaped child rides last: never one opened again from
        // a pid number, which could name another process by the time it is used.
        let pidfd = fds.pop().map(Pidfd::new);
        if interactive {
            our_ends = fds.drain(..).take(1).collect();
        }
        let ticket = if our_ends.is_empty() {
            // Interactive, but the command failed before it had a terminal: an empty pipe
            // stands in so silod still gets its one fd and then the exit status.
            let (r, _w) = pipe()?;
            self.send_fds(&[r])?
        } else {
            self.send_fds(&our_ends)?
        };
        let id = self
            .next_exec
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.execs.lock().map_err(|_| poisoned())?.insert(
            id,
            ExecEntry {
                pidfd,
                status: Arc::new(tokio::sync::Mutex::new(status)),
            },
        );
        Ok(silo_proto::privileged::ExecStarted {
            id,
            pid: pid as u32,
            fds: ticket,
        })
    }

    fn send_fds(&self, fds: &[OwnedFd]) -> HelperResult<silo_proto::fdpass::FdTicket> {
        let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        self.fds
            .send(&b)
            .map_err(|e| HelperError::Unsupported(format!("fd channel: {e}")))
    }

    /// Waits for an exec'd command.
    pub async fn exec_wait(&self, id: u64, timeout: Duration) -> HelperResult<Option<i32>> {
        let status = self
            .execs
            .lock()
            .map_err(|_| poisoned())?
            .get(&id)
            .map(|e| e.status.clone())
            .ok_or_else(|| HelperError::NotFound {
                what: format!("exec {id}"),
            })?;
        let guard = status.lock().await;
        let r = match tokio::time::timeout(timeout, recv_status(&guard)).await {
            Err(_) => return Ok(None),
            Ok(r) => r?,
        };
        let code = match r {
            Some((ExecStatus::Exited(c), _)) => c,
            Some((ExecStatus::Failed(why), _)) => {
                tracing::warn!(exec = id, %why, "exec failed");
                1
            }
            _ => 1,
        };
        self.execs.lock().map_err(|_| poisoned())?.remove(&id);
        Ok(Some(code))
    }

    /// Signals an exec'd command.
    pub async fn exec_signal(&self, id: u64, sig: i32) -> HelperResult<()> {
        if !silo_proto::privileged::signal_allowed(sig) {
            return Err(HelperError::invalid(
                "signal",
                format!("{sig} is not a signal"),
            ));
        }
        let p = self
            .execs
            .lock()
            .map_err(|_| poisoned())?
            .get(&id)
            .and_then(|e| e.pidfd.clone())
            .ok_or_else(|| HelperError::NotFound {
                what: format!("exec {id}"),
            })?;
        p.signal(sig).await
    }

    /// Connects to the monitor's console socket and hands the connection to silod.
    pub fn console(&self, name: &InstanceName) -> HelperResult<silo_proto::fdpass::FdTicket> {
        self.entry(name)?;
        let dir = self.rundirs.open_dir(&[name.as_str()])?;
        let path = format!("/proc/self/fd/{}/console.sock", dir.fd().as_raw_fd());
        let s = std::os::unix::net::UnixStream::connect(&path)
            .map_err(|e| HelperError::io("connect", "the instance's console", e))?;
        self.send_fds(&[OwnedFd::from(s)])
    }

    /// Binds a new listening socket `sock` in the running instance's guest-API directory
    /// (mounted at its /dev/lxd since the start) and hands it to silod. The directory is
    /// root's, beneath the root-owned runtime directory, opened without following anything;
    /// whatever socket was there (an earlier silod's) is replaced, which the instance sees at
    /// once through its mount of the directory.
    pub fn devlxd_listener(
        &self,
        name: &InstanceName,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        self.entry(name)?;
        let dir = self
            .rundirs
            .open_dir(&[name.as_str(), DEVLXD_DIR])
            .map_err(|e| match e {
                HelperError::NotFound { .. } => HelperError::NotFound {
                    what: format!(
                        "/dev/lxd of instance {:?} (started with security.devlxd=false)",
                        name.as_str()
                    ),
                },
                e => e,
            })?;
        match nix::unistd::unlinkat(
            dir.fd(),
            DEVLXD_SOCK,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(HelperError::errno("unlinkat", DEVLXD_SOCK, e)),
        }
        let path = format!("/proc/self/fd/{}/{DEVLXD_SOCK}", dir.fd().as_raw_fd());
        let l = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| HelperError::io("bind", "the instance's /dev/lxd/sock", e))?;
        // Any process of the instance may connect (silod answers only container root, as
        // LXD does); bind left the umask's mode. The name was just made in root's directory.
        nix::sys::stat::fchmodat(
            dir.fd(),
            DEVLXD_SOCK,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| HelperError::errno("fchmodat", DEVLXD_SOCK, e))?;
        self.send_fds(&[OwnedFd::from(l)])
    }

    /// Resizes the console: the pty named in the monitor's record, checked to be a devpts
    /// terminal owned by the instance's root before the ioctl.
    pub fn console_resize(&self, name: &InstanceName, w: u16, h: u16) -> HelperResult<()> {
        if !(1..=1000).contains(&w) || !(1..=1000).contains(&h) {
            return Err(HelperError::invalid("size", format!("{w}x{h}")));
        }
        let (info, _, _) = self.entry(name)?;
        let dir = self.rundirs.open_dir(&[name.as_str()])?;
        let pts = read_at(&dir, "console.pts", 64)
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default();
        let n = pts.strip_prefix("/dev/pts/").unwrap_or("");
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HelperError::NotFound {
                what: format!("console of instance {:?}", name.as_str()),
            });
        }
        let fd = nix::fcntl::open(
            pts.as_str(),
            nix::fcntl::OFlag::O_RDWR
                | nix::fcntl::OFlag::O_NOCTTY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| HelperError::errno("open", &pts, e))?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| HelperError::errno("fstat", &pts, e))?;
        let owner = info.idmap_base.unwrap_or(0) as u32;
        // devpts slaves have majors 136 to 143.
        let major = libc::major(st.st_rdev);
        if !(136..=143).contains(&major) || st.st_uid != owner {
            return Err(HelperError::invalid(
                "console",
                format!("{pts} is not this instance's console"),
            ));
        }
        let ws = libc::winsize {
            ws_row: h,
            ws_col: w,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on a terminal fd we hold, with a pointer to a winsize.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(HelperError::io(
                "TIOCSWINSZ",
                &pts,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// The console log's tail.
    pub fn console_log(&self, name: &InstanceName, max: u64) -> HelperResult<Vec<u8>> {
        let dir = self
            .rundirs
            .open_dir(&[name.as_str()])
            .map_err(|_| HelperError::NotFound {
                what: format!("console log of instance {:?}", name.as_str()),
            })?;
        Ok(read_at(&dir, "console.log", max.min(16 << 20)).unwrap_or_default())
    }

    /// Empties the console log. The monitor appends (O_APPEND), so its next write lands at the
    /// new end.
    pub fn console_log_clear(&self, name: &InstanceName) -> HelperResult<()> {
        let what = || HelperError::NotFound {
            what: format!("console log of instance {:?}", name.as_str()),
        };
        let dir = self
            .rundirs
            .open_dir(&[name.as_str()])
            .map_err(|_| what())?;
        let fd = match nix::fcntl::openat(
            dir.fd(),
            "console.log",
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Never started since it was created: nothing to clear.
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(HelperError::errno("open", "console.log", e)),
        };
        let st = nix::sys::stat::fstat(&fd)
            .map_err(|e| HelperError::errno("fstat", "console.log", e))?;
        let regular = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
            & nix::sys::stat::SFlag::S_IFMT
            == nix::sys::stat::SFlag::S_IFREG;
        if !regular || st.st_uid != 0 {
            return Err(HelperError::invalid(
                "console.log",
                "not a regular file of root's",
            ));
        }
        nix::unistd::ftruncate(&fd, 0)
            .map_err(|e| HelperError::errno("ftruncate", "console.log", e))
    }

    /// Removes a stopped instance's runtime directory.
    pub fn forget(&self, name: &InstanceName) -> HelperResult<()> {
        if self.is_running(name) {
            return Err(HelperError::InUse {
                what: format!("instance {:?}", name.as_str()),
                by: "it is running".into(),
            });
        }
        if let Ok(mut s) = self.stopped.lock() {
            s.remove(name);
        }
        match self.rundirs.exists(name.as_str()) {
            Ok(true) => self.rundirs.remove_tree(name.as_str()),
            _ => Ok(()),
        }
    }

    /// Releases a held init: one `g` into the instance's `go` FIFO, which must be the root-owned
    /// FIFO its monitor made (a planted file or a FIFO of someone else's is refused).
    pub fn release(&self, name: &InstanceName) -> HelperResult<()> {
        if !self.is_running(name) {
            return Err(HelperError::OutOfOrder(format!(
                "instance {:?} is not running",
                name.as_str()
            )));
        }
        let dir = self.rundirs.open_dir(&[name.as_str()])?;
        let fd = nix::fcntl::openat(
            dir.fd(),
            "go",
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| match e {
            // No reader (ENXIO) or no FIFO: init is not waiting.
            nix::errno::Errno::ENXIO | nix::errno::Errno::ENOENT => {
                HelperError::OutOfOrder(format!(
                    "instance {:?} is not waiting for its release",
                    name.as_str()
                ))
            }
            e => HelperError::errno("open", format!("{}/go", dir.display()), e),
        })?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| HelperError::errno("fstat", "go", e))?;
        let fifo = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
            & nix::sys::stat::SFlag::S_IFMT
            == nix::sys::stat::SFlag::S_IFIFO;
        if !fifo || st.st_uid != 0 {
            return Err(HelperError::invalid(
                "release",
                format!("{}/go is not silo-priv's FIFO", dir.display()),
            ));
        }
        nix::unistd::write(&fd, b"g").map_err(|e| HelperError::errno("write", "go", e))?;
        unlink(&dir, "go");
        tracing::info!(instance = %name, "released");
        Ok(())
    }

    /// Whether an instance runs (for limits changes).
    pub fn is_running(&self, name: &InstanceName) -> bool {
        self.running
            .lock()
            .map(|r| r.contains_key(name))
            .unwrap_or(false)
    }
}

async fn recv_status(a: &AsyncFd<OwnedFd>) -> HelperResult<Option<(ExecStatus, Vec<OwnedFd>)>> {
    loop {
        let mut g = a
            .readable()
            .await
            .map_err(|e| HelperError::io("poll", "exec status", e))?;
        match g.try_io(|s| wire::recv::<ExecStatus>(s.get_ref().as_fd())) {
            Ok(r) => return r.map_err(|e| HelperError::io("recv", "exec status", e)),
            Err(_) => continue,
        }
    }
}

fn pipe() -> HelperResult<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| HelperError::errno("pipe", "exec", e))
}

/// A start's claim on its name and ids; dropping it (the start ended, either way) releases
/// them.
struct Reservation<'a> {
    rt: &'a Runtime,
    name: InstanceName,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.rt.starting.lock() {
            s.remove(&self.name);
        }
    }
}

fn poisoned() -> HelperError {
    HelperError::Unsupported("silo-priv state lock poisoned".into())
}

fn not_running(name: &InstanceName) -> HelperError {
    HelperError::OutOfOrder(format!("instance {:?} is not running", name.as_str()))
}

/// A device record line: `c|b MAJOR MINOR INSIDE-PATH`.
fn parse_node_line(line: &str) -> Option<(silo_proto::privileged::NodeKind, u32, u32, &str)> {
    let mut f = line.splitn(4, ' ');
    let kind = match f.next()? {
        "c" => silo_proto::privileged::NodeKind::Char,
        "b" => silo_proto::privileged::NodeKind::Block,
        _ => return None,
    };
    let major = f.next()?.parse().ok()?;
    let minor = f.next()?.parse().ok()?;
    let inside = f.next()?;
    silo_proto::types::RelPath::new(inside.to_string()).ok()?;
    Some((kind, major, minor, inside))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that another process has taken since is never mistaken for the one recorded:
    /// the pid is recycled for real (host root sets ns_last_pid just below it).
    #[test]
    fn a_recycled_pid_is_not_taken_for_the_process_that_had_it() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test recycles a pid through /proc/sys/kernel/ns_last_pid: run it as root"
        );
        let spawn = || {
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("sleep")
        };
        let mut first = spawn();
        let pid = first.id();
        // Start times count clock ticks: let the next process start in a later one.
        std::thread::sleep(Duration::from_millis(50));
        let start = sys::start_time(pid as i32).expect("start time");
        assert!(pidfd_verified(pid, start).is_some());
        first.kill().expect("kill");
        first.wait().expect("wait");
        assert!(pidfd_verified(pid, start).is_none(), "a dead pid");
        let mut second = None;
        for _ in 0..50 {
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
                .expect("ns_last_pid");
            let mut c = spawn();
            if c.id() == pid {
                second = Some(c);
                break;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut second = second.expect("the pid was not handed out again in 50 tries");
        assert!(
            pidfd_verified(pid, start).is_none(),
            "pid {pid} now names another process"
        );
        let now = sys::start_time(pid as i32).expect("start time");
        assert!(pidfd_verified(pid, now).is_some());
        let _ = second.kill();
        let _ = second.wait();
    }

    #[test]
    fn records_round_trip() {
        let n = InstanceName::new("c1").expect("name");
        let i = RunningInfo {
            instance: n.clone(),
            init_pid: 10,
            monitor_pid: 9,
            started_at: 1700000000,
            idmap_base: Some(1065536),
            idmap_size: 65536,
            systemd: true,
            frozen: false,
        };
        let (back, st) = RunningInfo::parse_record(&n, &i.record_line(777)).expect("parse");
        assert_eq!(back, i);
        assert_eq!(st, 777);
        assert!(RunningInfo::parse_record(&n, "1 2 3").is_none());
        assert_eq!(parse_exit("exited 3\n"), InitExit::Exited(3));
        assert_eq!(parse_exit("signaled 1"), InitExit::Signaled(1));
        assert_eq!(
            parse_exit("failed no init"),
            InitExit::StartFailed("no init".into())
        );
        assert_eq!(parse_exit("garbage"), InitExit::Unknown);
    }
}
