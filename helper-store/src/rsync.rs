//! rsync transfers for migration with LXD hosts (`lxc copy a:c b:c`).
//!
//! The transfer format every LXD host understands is rsync's own protocol over a websocket:
//! silod relays bytes between the peer's websocket and a stream socket that silo-store hands
//! it, and `/usr/bin/rsync` runs on the volume with exactly the options LXD uses (any other
//! option set and the two file lists fall out of step).
//!
//! silo-store's filter forbids execve, so before it confines itself it forks this runner (as
//! it forks the formatter). The runner keeps only the file capabilities its sessions need
//! (plus SETPCAP to cut each session's bounding set), landlocks itself to the pools (no
//! execute there), the rsync binary, the loader and libraries, and its own binary (the
//! sender's remote shell). Per session it forks a child that dies with it, keeps only the
//! transport socket, the volume (as its cwd) and a stderr pipe, cuts its capabilities to the
//! role's set (bounding set included, so they survive execve as exactly that set), sets
//! no_new_privs, landlocks itself to the volume and the programs, installs the reviewed
//! `rsync-seccomp.json` filter and execs rsync. The runner collects rsync's stderr, reaps it
//! and answers how it ended on the session's own status socket, which silo-store waits on
//! without blocking its runtime; silo-store closing that socket kills the session.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use caps::Capability;
use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::launcher::{async_fd, close_fds_except, set_nonblocking, LauncherClient};
use silo_proto::jail::seccomp::SeccompMode;
use silo_proto::jail::wire;
use silo_proto::store::{RsyncFeatures, RsyncReport, RsyncRole};

/// The filter compiled by build.rs from ../rsync-seccomp.json, installed in each session's
/// child right before it execs rsync.
static SECCOMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rsync-seccomp.bpf"));
static SECCOMP_LOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rsync-seccomp_log.bpf"));

/// Sessions at once; more are refused.
pub const MAX_SESSIONS: usize = 8;

/// The rsync LXD hosts run (Debian's).
const RSYNC: &str = "/usr/bin/rsync";

/// What selects silo-store's relay mode (the sender's remote shell) in `main`.
pub const RELAY_ARG: &str = "--rsync-relay";

/// Bytes of rsync's unexplained stderr kept for the error.
const STDERR_KEEP: usize = 16 * 1024;

/// Longest `rsync_wait`.
const MAX_WAIT_SECS: u32 = 3600;

/// Receiver: writes files of any owner and mode, sets owners, keeps set-group-id bits and
/// writes file capabilities. No MKNOD (device nodes are refused and counted), no SYS_ADMIN.
pub const RECEIVE_CAPS: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_SETFCAP,
];

/// Sender: reads every file and directory whatever its mode.
pub const SEND_CAPS: &[Capability] = &[Capability::CAP_DAC_READ_SEARCH];

/// The runner's: both roles' sets, and SETPCAP to cut a session's bounding set.
const RUNNER_CAPS: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
];

/// The loaders rsync (and silo-store, the relay) may be linked against; the existing ones get
/// execute rights (the kernel opens the interpreter for execution).
const LOADERS: &[&str] = &[
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-linux-armhf.so.3",
    "/lib64/ld64.so.2",
    "/lib/ld-linux-riscv64-lp64d.so.1",
];

/// Read-only for the loader and libraries (and what glibc and rsync read at start).
const SYSTEM_READ: &[&str] = &[
    "/usr/lib",
    "/lib",
    "/lib64",
    "/etc/ld.so.cache",
    "/dev/urandom",
];

/// The fds a sender's rsync passes on to its remote shell (the relay).
pub const RELAY_SOCK_FD: RawFd = 3;
const RELAY_EXE_FD: RawFd = 4;
/// The volume in the child, until it is its cwd and landlock's.
const VOLUME_FD: RawFd = 5;

/// The rsync argument list LXD uses for `role` (its `rsync.Send`/`rsync.Recv`), on the
/// volume as the cwd.
pub fn args(role: RsyncRole, f: RsyncFeatures) -> Vec<String> {
    let mut a: Vec<String> = match role {
        RsyncRole::Receive => vec![
            "rsync",
            "--server",
            "-vlogDtpre.iLsfx",
            "--numeric-ids",
            "--devices",
            "--partial",
            "--sparse",
        ],
        RsyncRole::Send => vec![
            "rsync",
            "-ar",
            "--devices",
            "--numeric-ids",
            "--partial",
            "--sparse",
        ],
    }
    .into_iter()
    .map(String::from)
    .collect();
    if f.xattrs {
        a.push("--xattrs".into());
        a.push("--filter=-x security.selinux".into());
    }
    if f.delete {
        a.push("--delete".into());
    }
    if f.compress {
        a.push("--compress".into());
        a.push("--compress-level=2".into());
    }
    if f.checksum {
        a.push("--checksum".into());
    }
    match role {
        RsyncRole::Receive => {
            a.push(".".into());
            a.push("./".into());
        }
        RsyncRole::Send => {
            // The destination is for the remote shell's argument list, which the relay
            // ignores (LXD's own sender names the same).
            a.push("./".into());
            a.push("localhost:/tmp/foo".into());
            a.push("-e".into());
            a.push(format!("/proc/self/fd/{RELAY_EXE_FD} {RELAY_ARG}"));
        }
    }
    a
}

/// How one line of a receiver's stderr counts.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A device node the receiver could not make (it holds no CAP_MKNOD).
    Device,
    /// rsync's closing summary of such errors.
    Summary,
    /// Anything else: a failure.
    Other,
}

/// Classifies a stderr line. A refused device node reads
/// `rsync: [generator] mknod "<path>" failed: Operation not permitted (1)`; rsync escapes
/// control characters in names, so a name cannot start a line of its own.
pub fn classify(line: &str) -> Line {
    let line = line.trim_end();
    if line.starts_with("rsync: [generator] mknod \"")
        && line.ends_with("\" failed: Operation not permitted (1)")
    {
        Line::Device
    } else if line.starts_with("rsync error: some files/attrs were not transferred") {
        Line::Summary
    } else {
        Line::Other
    }
}

/// Runner → silo-store, once per session on its status socket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ended {
    /// rsync's exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Device nodes refused.
    pub devices: u64,
    /// Lines that are neither refused devices nor the summary.
    pub other_lines: u64,
    /// Their text, bounded.
    pub other: String,
}

/// How a session's end becomes the answer to `rsync_wait`.
pub fn outcome(role: RsyncRole, e: &Ended, what: &str) -> HelperResult<RsyncReport> {
    let ok = match (role, e.code) {
        (_, Some(0)) => true,
        // Files that vanished while being sent: the source was in use, as LXD accepts.
        (RsyncRole::Send, Some(24)) => true,
        // Partial transfer whose only errors are refused device nodes.
        (RsyncRole::Receive, Some(23)) => e.other_lines == 0 && e.devices > 0,
        _ => false,
    };
    if ok {
        return Ok(RsyncReport {
            skipped_devices: e.devices,
        });
    }
    let how = match (e.code, e.signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended".to_string(),
    };
    let role = match role {
        RsyncRole::Send => "send",
        RsyncRole::Receive => "receive",
    };
    Err(HelperError::Io {
        op: format!("rsync ({role})"),
        target: what.to_string(),
        message: format!("rsync {how}: {}", e.other.trim()),
        errno: None,
    })
}

// ---------------------------------------------------------------------------------------
// silo-store's side

#[derive(Debug, Serialize, Deserialize)]
struct Start {
    role: RsyncRole,
    features: RsyncFeatures,
}

#[derive(Debug, Serialize, Deserialize)]
enum Started {
    Ok { pid: i32 },
    Err(String),
}

#[derive(Debug)]
struct Session {
    role: RsyncRole,
    what: String,
    status: tokio::io::unix::AsyncFd<OwnedFd>,
    floor: Option<Floor>,
    /// A receive's volume directory: rsync gives `.` the sender's mode and owner, so
    /// silo-store takes it back when the session ends, however it ends.
    volume: Option<OwnedFd>,
    /// Why the floor watcher ended the session (what `wait` then answers).
    floored: Mutex<Option<HelperError>>,
}

impl Session {
    /// Puts the volume directory back to root's, mode 0700, after a receive.
    fn reclaim(&self) {
        let Some(v) = &self.volume else { return };
        if let Err(e) = nix::unistd::fchown(
            v,
            Some(nix::unistd::Uid::from_raw(0)),
            Some(nix::unistd::Gid::from_raw(0)),
        )
        .and_then(|()| {
            nix::sys::stat::fchmod(
                v,
                nix::sys::stat::Mode::from_bits_truncate(crate::images::VOLUME_MODE),
            )
        }) {
            tracing::error!(what = %self.what, error = %e, "taking back a received volume's directory failed");
        }
    }

    /// Ends the session's rsync (EOF on the runner's end: it kills the process group).
    fn stop(&self) {
        let _ = nix::sys::socket::shutdown(
            self.status.get_ref().as_raw_fd(),
            nix::sys::socket::Shutdown::Write,
        );
    }
}

/// A receive into a dir pool must leave the policy's `dir_pool_reserve` free on the host
/// filesystem, as every other write into such a pool does. rsync has no total-size limit,
/// so silo-store watches the free space while silod waits and ends the session at the floor.
#[derive(Debug)]
pub struct Floor {
    /// The pool's directory.
    pub pool: OwnedFd,
    /// Bytes to leave free.
    pub reserve: u64,
    /// Names the policy in the refusal.
    pub policy: silo_proto::jail::policy::Policy,
}

impl Floor {
    /// Bytes available now, when at or below the reserve.
    fn crossed(&self) -> Option<u64> {
        let st = nix::sys::statvfs::fstatvfs(&self.pool).ok()?;
        let avail = st.blocks_available().saturating_mul(st.fragment_size());
        (avail <= self.reserve).then_some(avail)
    }

    /// The refusal, when the floor is crossed.
    fn refusal(&self, what: &str) -> Option<HelperError> {
        let avail = self.crossed()?;
        Some(self.policy.deny(format!(
            "receiving {what} would leave less than dir_pool_reserve ({} bytes) free on the \
             pool's host filesystem ({avail} bytes available now)",
            self.reserve
        )))
    }
}

/// silo-store's handle on the runner and its sessions.
#[derive(Debug)]
pub struct Sessions {
    runner: LauncherClient,
    table: Mutex<HashMap<u64, Arc<Session>>>,
    active: AtomicUsize,
    next: AtomicU64,
}

/// Set before the runner is forked (it reads them in its copy of memory).
static RUNNER_POOLS: OnceLock<(PathBuf, u64, u64)> = OnceLock::new();
static RUNNER_SECCOMP_LOG: OnceLock<bool> = OnceLock::new();

impl Sessions {
    /// Forks the runner. Runs in silo-store's start-up, before its own jail, with no threads.
    /// `pools` is the directory silo-store opened (checked) at `path`: the runner's landlock
    /// rule must be for that very directory, whatever silod has done to the path since.
    pub fn spawn(path: &Path, pools: BorrowedFd<'_>, mode: SeccompMode) -> HelperResult<Sessions> {
        let st = nix::sys::stat::fstat(pools)
            .map_err(|e| HelperError::errno("fstat", path.display(), e))?;
        let _ = RUNNER_POOLS.set((path.to_path_buf(), st.st_dev, st.st_ino));
        let _ = RUNNER_SECCOMP_LOG.set(mode == SeccompMode::LogOnly);
        Ok(Sessions {
            runner: LauncherClient::fork("silo-store's rsync runner", runner_main)?,
            table: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            next: AtomicU64::new(1),
        })
    }

    fn release(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// Starts rsync on `volume` (a directory fd opened beneath the pool); answers the session
    /// id and silod's end of the transport.
    pub async fn start(
        &self,
        role: RsyncRole,
        features: RsyncFeatures,
        volume: OwnedFd,
        what: String,
        floor: Option<Floor>,
    ) -> HelperResult<(u64, OwnedFd)> {
        if self.active.fetch_add(1, Ordering::SeqCst) >= MAX_SESSIONS {
            self.release();
            return Err(HelperError::InUse {
                what: "rsync transfers".into(),
                by: format!("{MAX_SESSIONS} transfers already running"),
            });
        }
        let r = self.start_inner(role, features, volume, what, floor).await;
        if r.is_err() {
            self.release();
        }
        r
    }

    async fn start_inner(
        &self,
        role: RsyncRole,
        features: RsyncFeatures,
        volume: OwnedFd,
        what: String,
        floor: Option<Floor>,
    ) -> HelperResult<(u64, OwnedFd)> {
        let (silod_end, rsync_end) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| HelperError::errno("socketpair", "rsync transport", e))?;
        // Not wire::pair: its buffer sizing needs setsockopt, which silo-store's filter
        // forbids; one small message crosses this socket.
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| HelperError::errno("socketpair", "rsync status", e))?;
        let started: Started = self
            .runner
            .call(
                &Start { role, features },
                &[volume.as_fd(), rsync_end.as_fd(), theirs.as_fd()],
            )
            .await?;
        // Only the runner's child may hold these now: EOF must reach silod when rsync ends.
        // A receive's volume fd stays, to take the directory back at the end.
        drop((rsync_end, theirs));
        let volume = (role == RsyncRole::Receive).then_some(volume);
        let pid = match started {
            Started::Ok { pid } => pid,
            Started::Err(e) => {
                return Err(HelperError::Io {
                    op: "starting rsync".into(),
                    target: what,
                    message: e,
                    errno: None,
                })
            }
        };
        set_nonblocking(&ours);
        let status = async_fd(ours).map_err(|e| HelperError::io("register", "rsync status", e))?;
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        tracing::info!(id, pid, ?role, ?features, %what, "started rsync");
        self.table
            .lock()
            .map_err(|_| HelperError::Unsupported("rsync session table poisoned".into()))?
            .insert(
                id,
                Arc::new(Session {
                    role,
                    what,
                    status,
                    floor,
                    volume,
                    floored: Mutex::new(None),
                }),
            );
        self.watch_floor(id);
        Ok((id, silod_end))
    }

    /// Ends a receive at the dir pool reserve whether or not silod is waiting on it: a
    /// compromised silod that never waits must not fill the host's filesystem.
    fn watch_floor(&self, id: u64) {
        let Ok(s) = self.get(id) else { return };
        if s.floor.is_none() {
            return;
        }
        let weak = Arc::downgrade(&s);
        drop(s);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Gone from the table and from every waiter: the session is over.
                let Some(s) = weak.upgrade() else { return };
                if let Some(e) = s.floor.as_ref().and_then(|f| f.refusal(&s.what)) {
                    tracing::warn!(id, what = %s.what, "ending an rsync receive at the dir pool reserve");
                    if let Ok(mut f) = s.floored.lock() {
                        *f = Some(e);
                    }
                    s.stop();
                    return;
                }
            }
        });
    }

    fn get(&self, id: u64) -> HelperResult<Arc<Session>> {
        self.table
            .lock()
            .ok()
            .and_then(|t| t.get(&id).cloned())
            .ok_or_else(|| HelperError::NotFound {
                what: format!("rsync session {id}"),
            })
    }

    fn forget(&self, id: u64) -> bool {
        let gone = self
            .table
            .lock()
            .ok()
            .and_then(|mut t| t.remove(&id))
            .is_some();
        if gone {
            self.release();
        }
        gone
    }

    /// Waits up to `secs` for session `id` to end.
    pub async fn wait(&self, id: u64, secs: u32) -> HelperResult<Option<RsyncReport>> {
        let s = self.get(id)?;
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs.min(MAX_WAIT_SECS)));
        let end = loop {
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            match tokio::time::timeout(step, recv_end(&s.status)).await {
                Ok(end) => break end,
                Err(_elapsed) => {
                    if let Some(e) = s.floor.as_ref().and_then(|f| f.refusal(&s.what)) {
                        self.abort(id).await?;
                        tracing::warn!(id, what = %s.what, "ended an rsync receive at the dir pool reserve");
                        return Err(e);
                    }
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
            }
        };
        if !self.forget(id) {
            // Aborted meanwhile.
            return Err(HelperError::NotFound {
                what: format!("rsync session {id}"),
            });
        }
        s.reclaim();
        let end = end.map_err(|e| HelperError::Io {
            op: "waiting for rsync".into(),
            target: s.what.clone(),
            message: e,
            errno: None,
        })?;
        // Finished before a check caught it: still over the floor, still refused (silod
        // removes a volume whose receive failed).
        let floored = s.floored.lock().ok().and_then(|mut f| f.take());
        let r = match floored.or_else(|| s.floor.as_ref().and_then(|f| f.refusal(&s.what))) {
            Some(e) => Err(e),
            None => outcome(s.role, &end, &s.what),
        };
        tracing::info!(id, code = ?end.code, signal = ?end.signal, devices = end.devices, ok = r.is_ok(), "rsync ended");
        r.map(Some)
    }

    /// Kills session `id` and forgets it; returns once the runner has reaped it.
    pub async fn abort(&self, id: u64) -> HelperResult<()> {
        let s = self.get(id)?;
        if !self.forget(id) {
            return Err(HelperError::NotFound {
                what: format!("rsync session {id}"),
            });
        }
        s.stop();
        let _ = tokio::time::timeout(Duration::from_secs(10), recv_end(&s.status)).await;
        s.reclaim();
        tracing::info!(id, what = %s.what, "aborted rsync");
        Ok(())
    }
}

async fn recv_end(fd: &tokio::io::unix::AsyncFd<OwnedFd>) -> Result<Ended, String> {
    loop {
        let mut ready = fd.readable().await.map_err(|e| e.to_string())?;
        match ready.try_io(|s| wire::recv::<Ended>(s.as_fd())) {
            Ok(Ok(Some((e, _)))) => return Ok(e),
            Ok(Ok(None)) => return Err("the rsync runner went away (see silo-store's log)".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_would_block) => continue,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The runner (forked before silo-store's jail)

struct Running {
    pid: i32,
    role: RsyncRole,
    pidfd: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    status: OwnedFd,
    /// silo-store closed its end: killed.
    aborted: bool,
    wait_status: Option<i32>,
    exited_at: Option<Instant>,
    partial: Vec<u8>,
    end: Ended,
}

impl Running {
    fn line(&mut self, l: &[u8]) {
        let l = String::from_utf8_lossy(l);
        if l.trim().is_empty() {
            return;
        }
        let kind = if self.role == RsyncRole::Receive {
            classify(&l)
        } else {
            Line::Other
        };
        match kind {
            Line::Device => self.end.devices += 1,
            Line::Summary => {}
            Line::Other => {
                self.end.other_lines += 1;
                if self.end.other.len() < STDERR_KEEP {
                    let room = STDERR_KEEP - self.end.other.len();
                    let l: String = l.trim_end().chars().take(room).collect();
                    self.end.other.push_str(&l);
                    self.end.other.push('\n');
                }
            }
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
            let l: Vec<u8> = self.partial.drain(..=nl).collect();
            self.line(&l);
        }
        // A line longer than anything rsync writes: count what there is.
        if self.partial.len() > 64 * 1024 {
            let l = std::mem::take(&mut self.partial);
            self.line(&l);
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("silo-store rsync runner: {msg}");
    std::process::exit(2)
}

fn runner_main(sock: OwnedFd) -> ! {
    // Dies with silo-store (forked from its only thread), and reaps what rsync leaves.
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    if nix::unistd::getppid().as_raw() == 1 {
        std::process::exit(0);
    }
    let Some((pools, dev, ino)) = RUNNER_POOLS.get() else {
        die("no pools directory")
    };
    let exe = match nix::fcntl::open(
        "/proc/self/exe",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(f) => f,
        Err(e) => die(&format!("opening its own binary: {e}")),
    };
    if let Err(e) = confine_runner(pools, (*dev, *ino), exe.as_fd()) {
        die(&format!("cannot confine itself: {e}"));
    }
    let log_only = RUNNER_SECCOMP_LOG.get().copied().unwrap_or(false);
    let mut sessions: Vec<Running> = Vec::new();
    let mut linger_until: Option<Instant> = None;
    loop {
        let mut pfds = vec![libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // (session index, which fd): 0 stderr, 1 status, 2 pidfd.
        let mut owners = vec![(usize::MAX, 0u8)];
        for (i, s) in sessions.iter().enumerate() {
            if let Some(e) = &s.stderr {
                pfds.push(libc::pollfd {
                    fd: e.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                owners.push((i, 0));
            }
            if !s.aborted {
                pfds.push(libc::pollfd {
                    fd: s.status.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                owners.push((i, 1));
            }
            if let (Some(p), None) = (&s.pidfd, s.wait_status) {
                pfds.push(libc::pollfd {
                    fd: p.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                owners.push((i, 2));
            }
        }
        // Idle, it sleeps until silo-store asks; with sessions, it wakes to reap rsync's
        // leftovers and to end the stderr grace period.
        // A session's group is killed when its rsync ends; its members die a moment later and
        // are reaped in the few seconds after, not left as zombies until the next request.
        let lingering = linger_until.is_some_and(|t| Instant::now() < t);
        let timeout = if sessions.is_empty() && !lingering {
            -1
        } else {
            500
        };
        // SAFETY: a valid array of pollfds of the length given.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            die("poll failed");
        }
        for (p, (i, which)) in pfds.iter().zip(owners.iter()) {
            if p.revents == 0 {
                continue;
            }
            if *i == usize::MAX {
                match wire::recv::<Start>(sock.as_fd()) {
                    Ok(Some((req, fds))) => {
                        let answer = match start_session(&req, fds, exe.as_fd(), log_only) {
                            Ok(r) => {
                                let pid = r.pid;
                                sessions.push(r);
                                Started::Ok { pid }
                            }
                            Err(e) => Started::Err(e),
                        };
                        if wire::send(sock.as_fd(), &answer, &[]).is_err() {
                            kill_all_and_exit(&sessions);
                        }
                    }
                    // silo-store is gone: so are its sessions.
                    Ok(None) | Err(_) => kill_all_and_exit(&sessions),
                }
                continue;
            }
            let s = &mut sessions[*i];
            match which {
                0 => {
                    let mut buf = [0u8; 8192];
                    match s.stderr.as_ref().map(|e| nix::unistd::read(e, &mut buf)) {
                        Some(Ok(0)) | Some(Err(_)) | None => s.stderr = None,
                        Some(Ok(n)) => s.feed(&buf[..n]),
                    }
                }
                1 => {
                    let mut buf = [0u8; 64];
                    // Nothing is ever sent on it: readable means silo-store shut its end.
                    if matches!(
                        nix::sys::socket::recv(
                            s.status.as_raw_fd(),
                            &mut buf,
                            nix::sys::socket::MsgFlags::MSG_DONTWAIT
                        ),
                        Ok(0) | Err(_)
                    ) || p.revents & (libc::POLLHUP | libc::POLLERR) != 0
                    {
                        s.aborted = true;
                        kill_group(s.pid);
                    }
                }
                _ => {}
            }
        }
        reap(&mut sessions);
        // Finished: exited and stderr drained (or given two seconds after exit).
        let mut k = 0;
        while k < sessions.len() {
            let s = &sessions[k];
            let done = s.wait_status.is_some()
                && (s.stderr.is_none()
                    || s.exited_at
                        .is_some_and(|t| t.elapsed() > Duration::from_secs(2)));
            if !done {
                k += 1;
                continue;
            }
            let mut s = sessions.swap_remove(k);
            linger_until = Some(Instant::now() + Duration::from_secs(5));
            let rest = std::mem::take(&mut s.partial);
            s.line(&rest);
            let st = s.wait_status.unwrap_or(0);
            if libc::WIFEXITED(st) {
                s.end.code = Some(libc::WEXITSTATUS(st));
            } else if libc::WIFSIGNALED(st) {
                s.end.signal = Some(libc::WTERMSIG(st));
            }
            if s.end.code != Some(0) {
                eprintln!(
                    "silo-store rsync runner: session {} ended: code {:?}, signal {:?}, {} device nodes refused: {}",
                    s.pid,
                    s.end.code,
                    s.end.signal,
                    s.end.devices,
                    s.end.other.trim()
                );
            }
            let _ = wire::send(s.status.as_fd(), &s.end, &[]);
        }
    }
}

fn kill_group(pid: i32) {
    // SAFETY: kill with a negative pid signals the session's process group; its leader is
    // not reaped yet (reaping happens after this), so the group id is still its own.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

fn kill_all_and_exit(sessions: &[Running]) -> ! {
    for s in sessions {
        if s.wait_status.is_none() {
            kill_group(s.pid);
        }
    }
    std::process::exit(0)
}

/// Reaps every exited process (the runner is a subreaper: rsync's own children that outlive
/// it come here). A session's leader is peeked first, so its group (rsync's forks, the relay)
/// is killed before its id can be reused.
fn reap(sessions: &mut [Running]) {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid siginfo pointer.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid for SIGCHLD-type siginfo, zero when nothing waited.
        let pid = unsafe { info.si_pid() };
        if r != 0 || pid == 0 {
            return;
        }
        let session = sessions.iter_mut().find(|s| s.pid == pid);
        if let Some(s) = &session {
            if s.wait_status.is_none() {
                kill_group(pid);
            }
        }
        let mut st = 0;
        // SAFETY: waitpid on a child known to have exited.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        if let Some(s) = session {
            s.wait_status = Some(st);
            s.exited_at = Some(Instant::now());
            s.pidfd = None;
        }
    }
}

fn landlock_err(e: impl std::fmt::Display) -> String {
    format!("landlock: {e}")
}

fn base_ruleset(abi: ABI) -> Result<landlock::RulesetCreated, String> {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(landlock_err)?
        .handle_access(AccessNet::from_all(abi))
        .map_err(landlock_err)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(landlock_err)?
        .create()
        .map_err(landlock_err)
}

/// Rules for the programs: execute rsync, the loader and (the sender's relay) silo-store's
/// own binary; read the libraries.
fn program_rules(
    mut rs: landlock::RulesetCreated,
    abi: ABI,
    exe: Option<BorrowedFd<'_>>,
) -> Result<landlock::RulesetCreated, String> {
    let run: BitFlags<AccessFs> = AccessFs::Execute | AccessFs::ReadFile;
    let read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
    let run_paths = std::iter::once(RSYNC).chain(LOADERS.iter().copied());
    for p in run_paths.filter(|p| Path::new(p).exists()) {
        let fd = PathFd::new(p).map_err(landlock_err)?;
        rs = rs
            .add_rule(PathBeneath::new(fd, run & AccessFs::from_file(abi)))
            .map_err(landlock_err)?;
    }
    if let Some(exe) = exe {
        rs = rs
            .add_rule(PathBeneath::new(exe, run))
            .map_err(landlock_err)?;
    }
    for p in SYSTEM_READ.iter().filter(|p| Path::new(p).exists()) {
        let fd = PathFd::new(p).map_err(landlock_err)?;
        let is_dir = Path::new(p).is_dir();
        let access = if is_dir {
            read
        } else {
            AccessFs::ReadFile.into()
        };
        rs = rs
            .add_rule(PathBeneath::new(fd, access))
            .map_err(landlock_err)?;
    }
    Ok(rs)
}

fn confine_runner(pools: &Path, id: (u64, u64), exe: BorrowedFd<'_>) -> Result<(), String> {
    silo_proto::jail::caps_drop::keep_only(RUNNER_CAPS).map_err(|e| e.to_string())?;
    let abi = ABI::V6;
    let rs = program_rules(base_ruleset(abi)?, abi, Some(exe))?;
    // Beneath the pools, everything a receiver does (never executing what is there); a
    // session's own layer narrows it to its volume.
    // Opened without following a symlink, and it must be the directory silo-store checked.
    let pools = nix::fcntl::open(
        pools,
        nix::fcntl::OFlag::O_PATH
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("opening the pools directory: {e}"))?;
    let st = nix::sys::stat::fstat(&pools).map_err(|e| format!("fstat: {e}"))?;
    if (st.st_dev, st.st_ino) != id {
        return Err("the pools directory changed since silo-store opened it".into());
    }
    let st = rs
        .add_rule(PathBeneath::new(
            pools,
            AccessFs::from_all(abi) & !BitFlags::from(AccessFs::Execute),
        ))
        .map_err(landlock_err)?
        .restrict_self()
        .map_err(landlock_err)?;
    if st.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("landlock not fully enforced: {:?}", st.ruleset));
    }
    Ok(())
}

/// In the session's child: the volume (fd [`VOLUME_FD`], already the cwd) with the role's
/// rights, the programs, nothing else.
fn confine_session(role: RsyncRole) -> Result<(), String> {
    let abi = ABI::V6;
    // SAFETY: VOLUME_FD was placed by start_session's child code and stays open here.
    let vol = unsafe { BorrowedFd::borrow_raw(VOLUME_FD) };
    // SAFETY: as above for the relay's binary, open in a sender only.
    let exe = (role == RsyncRole::Send).then(|| unsafe { BorrowedFd::borrow_raw(RELAY_EXE_FD) });
    let vol_access = match role {
        RsyncRole::Receive => AccessFs::from_all(abi) & !BitFlags::from(AccessFs::Execute),
        RsyncRole::Send => AccessFs::ReadFile | AccessFs::ReadDir,
    };
    let st = program_rules(base_ruleset(abi)?, abi, exe)?
        .add_rule(PathBeneath::new(vol, vol_access))
        .map_err(landlock_err)?
        .restrict_self()
        .map_err(landlock_err)?;
    if st.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("landlock not fully enforced: {:?}", st.ruleset));
    }
    let keep = match role {
        RsyncRole::Receive => RECEIVE_CAPS,
        RsyncRole::Send => SEND_CAPS,
    };
    // Bounding set cut to `keep` and nothing inheritable or ambient: as root, what survives
    // execve is exactly the bounding set.
    silo_proto::jail::caps_drop::confine_caps(keep).map_err(|e| e.to_string())?;
    Ok(())
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, String> {
    v.iter()
        .map(|s| CString::new(s.as_str()).map_err(|e| e.to_string()))
        .collect()
}

/// Forks the session's child; answers it with its stderr pipe.
fn start_session(
    req: &Start,
    fds: Vec<OwnedFd>,
    exe: BorrowedFd<'_>,
    log_only: bool,
) -> Result<Running, String> {
    let Ok::<[OwnedFd; 3], _>([volume, transport, status]) = fds.try_into() else {
        return Err("a start request carries three fds".into());
    };
    let st = nix::sys::stat::fstat(&volume).map_err(|e| format!("fstat: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err("the volume is not a directory".into());
    }
    let argv = cstrings(&args(req.role, req.features))?;
    let env = cstrings(&[
        "PATH=/usr/bin:/bin".to_string(),
        "LC_ALL=C".to_string(),
        "HOME=/nonexistent".to_string(),
    ])?;
    let rsync = CString::new(RSYNC).map_err(|e| e.to_string())?;
    let filter = if log_only { SECCOMP_LOG } else { SECCOMP };
    silo_proto::jail::seccomp::decode(filter).map_err(|e| e.to_string())?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
    let role = req.role;
    let runner = nix::unistd::getpid().as_raw();
    // SAFETY: the runner is single-threaded; the child only arranges fds, confines itself
    // and execs, leaving through _exit on any failure.
    let pid = match unsafe { nix::unistd::fork() } {
        Err(e) => return Err(format!("fork: {e}")),
        Ok(nix::unistd::ForkResult::Child) => {
            let fail = |what: &str| -> ! {
                let msg = format!("rsync session setup: {what}\n");
                // SAFETY: writing a local buffer to fd 2 (the stderr pipe once placed).
                unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
                // SAFETY: leaving the forked child without the runner's exit path.
                unsafe { libc::_exit(126) }
            };
            // SAFETY: prctl and setpgid with integer arguments.
            unsafe {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                libc::setpgid(0, 0);
            }
            if nix::unistd::getppid().as_raw() != runner {
                // SAFETY: as above.
                unsafe { libc::_exit(126) }
            }
            // Out of the way of 0..=5 first, then into place (dup2 clears close-on-exec).
            let high = |fd: RawFd| -> RawFd {
                // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an open fd.
                unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100) }
            };
            let (t, v, e) = (
                high(transport.as_raw_fd()),
                high(volume.as_raw_fd()),
                high(err_w.as_raw_fd()),
            );
            let x = high(exe.as_raw_fd());
            if t < 0 || v < 0 || e < 0 || x < 0 {
                fail("dup");
            }
            let mut ok = true;
            let mut dup2 = |from: RawFd, to: RawFd| {
                // SAFETY: dup2 of open fds.
                ok &= unsafe { libc::dup2(from, to) } == to;
            };
            match role {
                RsyncRole::Receive => {
                    // rsync --server speaks its protocol on stdin and stdout.
                    dup2(t, 0);
                    dup2(t, 1);
                    dup2(e, 2);
                }
                RsyncRole::Send => {
                    // Nothing on stdin; its output is logged; the relay finds the transport
                    // and its own binary on fixed fds.
                    let mut p = [0; 2];
                    // SAFETY: pipe into a local array.
                    if unsafe { libc::pipe(p.as_mut_ptr()) } != 0 {
                        fail("pipe");
                    }
                    // SAFETY: closing the write end we made: stdin reads EOF.
                    unsafe { libc::close(p[1]) };
                    dup2(p[0], 0);
                    dup2(e, 1);
                    dup2(e, 2);
                    dup2(t, RELAY_SOCK_FD);
                    dup2(x, RELAY_EXE_FD);
                }
            }
            dup2(v, VOLUME_FD);
            if !ok {
                fail("dup2");
            }
            let keep: &[RawFd] = match role {
                RsyncRole::Receive => &[VOLUME_FD],
                RsyncRole::Send => &[RELAY_SOCK_FD, RELAY_EXE_FD, VOLUME_FD],
            };
            close_fds_except(keep);
            // SAFETY: fchdir and fcntl on the volume fd placed above.
            unsafe {
                if libc::fchdir(VOLUME_FD) != 0 {
                    fail("fchdir to the volume");
                }
                libc::fcntl(VOLUME_FD, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            if let Err(e) = confine_session(role) {
                fail(&e);
            }
            // SAFETY: closing the volume fd; the cwd and landlock's rule keep what they need.
            unsafe { libc::close(VOLUME_FD) };
            if silo_proto::jail::seccomp::install(filter).is_err() {
                fail("seccomp");
            }
            let argv_p: Vec<*const libc::c_char> = argv
                .iter()
                .map(|a| a.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect();
            let env_p: Vec<*const libc::c_char> = env
                .iter()
                .map(|a| a.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect();
            // SAFETY: NUL-terminated arrays of C strings that live until execve.
            unsafe { libc::execve(rsync.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
            fail("execve /usr/bin/rsync")
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child.as_raw(),
    };
    // SAFETY: setpgid on our own child (also done by the child: whichever runs first).
    unsafe { libc::setpgid(pid, pid) };
    drop((volume, transport, err_w));
    // SAFETY: pidfd_open with a pid of our unreaped child and no flags.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = (pidfd >= 0).then(|| {
        // SAFETY: pidfd_open returned a new fd that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) }
    });
    Ok(Running {
        pid,
        role,
        pidfd,
        stderr: Some(err_r),
        status,
        aborted: false,
        wait_status: None,
        exited_at: None,
        partial: Vec::new(),
        end: Ended::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a compromised rsync could do after `confine_session`: run in a forked child as
    /// the session's child is, with the volume on VOLUME_FD (and, for a sender, the binary on
    /// RELAY_EXE_FD). Returns the child's exit code.
    fn confined(role: RsyncRole, vol: &Path, work: impl FnOnce() -> i32) -> i32 {
        let v = std::fs::File::open(vol).expect("volume");
        let x = std::fs::File::open("/proc/self/exe").expect("exe");
        // SAFETY: the child only places fds, confines itself, probes and leaves with _exit.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                // SAFETY: dup2 of open fds onto the numbers the session's child uses.
                unsafe {
                    libc::dup2(v.as_raw_fd(), VOLUME_FD);
                    libc::dup2(x.as_raw_fd(), RELAY_EXE_FD);
                    libc::fchdir(VOLUME_FD);
                }
                let code = match confine_session(role) {
                    Err(_) => 100,
                    Ok(()) => work(),
                };
                // SAFETY: leaving the forked child without the harness's exit path.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).expect("wait") {
                    nix::sys::wait::WaitStatus::Exited(_, c) => c,
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    fn errno_of<T>(r: std::io::Result<T>) -> i32 {
        match r {
            Ok(_) => 0,
            Err(e) => e.raw_os_error().unwrap_or(-1),
        }
    }

    #[test]
    fn a_session_reaches_only_its_volume_and_its_programs() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test confines forked children as sessions are and needs root"
        );
        let t = tempfile::tempdir().expect("tmp");
        let vol = t.path().join("vol");
        std::fs::create_dir_all(vol.join("rootfs")).expect("mkdir");
        std::fs::write(vol.join("rootfs/f"), b"x").expect("file");
        std::fs::write(t.path().join("outside"), b"host").expect("file");
        let outside = t.path().join("outside");
        let probe = |outside: PathBuf| {
            move || {
                let checks = [
                    // Inside the volume: read, write, rename across directories.
                    errno_of(std::fs::read("rootfs/f")) == 0,
                    errno_of(std::fs::write("rootfs/g", b"y")) == 0,
                    errno_of(std::fs::rename("rootfs/g", "moved")) == 0,
                    // Outside: neither read nor write; no shell; no TCP.
                    errno_of(std::fs::read(&outside)) == libc::EACCES,
                    errno_of(std::fs::write(&outside, b"owned")) == libc::EACCES,
                    errno_of(std::fs::read("/etc/passwd")) == libc::EACCES,
                    errno_of(
                        std::process::Command::new("/bin/sh")
                            .arg("-c")
                            .arg("true")
                            .status(),
                    ) == libc::EACCES,
                    errno_of(std::net::TcpStream::connect("127.0.0.1:9")) == libc::EACCES,
                    // A device node: no CAP_MKNOD.
                    {
                        let c = c"rootfs/null";
                        // SAFETY: a C string path.
                        let r = unsafe {
                            libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3))
                        };
                        r != 0
                    },
                ];
                checks.iter().position(|ok| !ok).map_or(0, |i| i as i32 + 1)
            }
        };
        assert_eq!(
            confined(RsyncRole::Receive, &vol, probe(outside.clone())),
            0,
            "receiver: the number is the first check that failed (100: confine failed)"
        );
        assert_eq!(std::fs::read(&outside).expect("outside"), b"host");
        assert!(vol.join("moved").exists());
        let sender = move || {
            let checks = [
                errno_of(std::fs::read("rootfs/f")) == 0,
                errno_of(std::fs::write("rootfs/h", b"y")) == libc::EACCES,
                errno_of(std::fs::read(&outside)) == libc::EACCES,
                errno_of(
                    std::process::Command::new("/bin/sh")
                        .arg("-c")
                        .arg("true")
                        .status(),
                ) == libc::EACCES,
            ];
            checks.iter().position(|ok| !ok).map_or(0, |i| i as i32 + 1)
        };
        assert_eq!(
            confined(RsyncRole::Send, &vol, sender),
            0,
            "sender: the number is the first check that failed (100: confine failed)"
        );
    }

    #[test]
    fn the_rsync_filter_kills_mount_ptrace_bpf_namespaces_and_inet() {
        let forbidden: [(&str, libc::c_long, [libc::c_long; 3]); 7] = [
            // BTRFS_IOC_SUBVOL_CREATE: only isatty's TCGETS is an allowed ioctl.
            ("ioctl", libc::SYS_ioctl, [0, 0x5000_940e, 0]),
            ("mount", libc::SYS_mount, [0, 0, 0]),
            (
                "ptrace",
                libc::SYS_ptrace,
                [libc::PTRACE_TRACEME as libc::c_long, 0, 0],
            ),
            ("bpf", libc::SYS_bpf, [0, 0, 0]),
            (
                "unshare",
                libc::SYS_unshare,
                [libc::CLONE_NEWUSER as libc::c_long, 0, 0],
            ),
            ("setns", libc::SYS_setns, [0, 0, 0]),
            (
                "socket",
                libc::SYS_socket,
                [
                    libc::AF_INET as libc::c_long,
                    libc::SOCK_STREAM as libc::c_long,
                    0,
                ],
            ),
        ];
        for (name, nr, a) in forbidden {
            // SAFETY: the child installs the filter and makes one system call, then _exit.
            match unsafe { nix::unistd::fork() }.expect("fork") {
                nix::unistd::ForkResult::Child => {
                    // SAFETY: prctl with integer arguments (no_new_privs, needed to filter).
                    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                    if silo_proto::jail::seccomp::install(SECCOMP).is_err() {
                        // SAFETY: leaving the forked child.
                        unsafe { libc::_exit(10) }
                    }
                    // SAFETY: a raw system call with integer arguments; the filter stops it.
                    unsafe { libc::syscall(nr, a[0], a[1], a[2]) };
                    // SAFETY: leaving the forked child.
                    unsafe { libc::_exit(0) }
                }
                nix::unistd::ForkResult::Parent { child } => {
                    let st = nix::sys::wait::waitpid(child, None).expect("wait");
                    assert_eq!(
                        st,
                        nix::sys::wait::WaitStatus::Signaled(
                            child,
                            nix::sys::signal::Signal::SIGSYS,
                            false
                        ),
                        "{name} must kill the process"
                    );
                }
            }
        }
    }

    #[test]
    fn arguments_are_lxds() {
        let f = RsyncFeatures {
            xattrs: true,
            delete: true,
            compress: true,
            checksum: false,
        };
        assert_eq!(
            args(RsyncRole::Receive, f).join(" "),
            "rsync --server -vlogDtpre.iLsfx --numeric-ids --devices --partial --sparse \
             --xattrs --filter=-x security.selinux --delete --compress --compress-level=2 . ./"
        );
        assert_eq!(
            args(RsyncRole::Send, RsyncFeatures::default()).join(" "),
            "rsync -ar --devices --numeric-ids --partial --sparse ./ localhost:/tmp/foo -e \
             /proc/self/fd/4 --rsync-relay"
        );
    }

    #[test]
    fn only_refused_devices_make_a_partial_receive_succeed() {
        let mut r = Running {
            pid: 0,
            role: RsyncRole::Receive,
            pidfd: None,
            stderr: None,
            status: OwnedFd::from(std::fs::File::open("/dev/null").expect("null")),
            aborted: false,
            wait_status: None,
            exited_at: None,
            partial: Vec::new(),
            end: Ended::default(),
        };
        r.feed(b"rsync: [generator] mknod \"/v/rootfs/dev/null\" failed: Operation not permitted (1)\nrsync: [generator] mknod \"/v/rootfs/dev/zero\" failed: Opera");
        r.feed(b"tion not permitted (1)\nrsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1394) [generator=3.5.0]\n");
        r.end.code = Some(23);
        assert_eq!(
            outcome(RsyncRole::Receive, &r.end, "v").expect("ok"),
            RsyncReport { skipped_devices: 2 }
        );
        r.feed(b"rsync: [receiver] open \"/v/x\" failed: Permission denied (13)\n");
        let e = outcome(RsyncRole::Receive, &r.end, "v").expect_err("fails");
        assert!(e.to_string().contains("Permission denied"), "{e}");
        assert_eq!(
            classify("rsync: [generator] mknod \"x\" failed: File exists (17)"),
            Line::Other
        );
        // 24 (vanished files) is fine for a sender only.
        let v = Ended {
            code: Some(24),
            ..Ended::default()
        };
        assert!(outcome(RsyncRole::Send, &v, "v").is_ok());
        assert!(outcome(RsyncRole::Receive, &v, "v").is_err());
    }
}
