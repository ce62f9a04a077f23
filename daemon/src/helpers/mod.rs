//! Spawning the three root helpers and talking to them.
//!
//! Each helper gets its own socketpair for tarpc (fd 3) and its own SEQPACKET socketpair for
//! fds (fd 4); nothing else crosses exec (every other fd is close-on-exec, and the child
//! closes the rest with close_range before exec). silod cannot respawn a helper once it has
//! dropped root, so a helper's death ends silod with a non-zero status and its supervisor
//! (systemd, `Restart=on-failure`) starts the whole group again.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use silo_proto::fdpass::{self, FdReceiver};
use silo_proto::net::NetClient;
use silo_proto::privileged::PrivClient;
use silo_proto::store::StoreClient;
use silo_proto::{HelperHello, FDPASS_FD};
use tarpc::client;

#[cfg(test)]
pub mod fake;

mod facade;

pub use facade::{HelperFailure, NetHelper, PrivHelper, StoreHelper};

/// Which helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperKind {
    /// silo-priv.
    Priv,
    /// silo-net.
    Net,
    /// silo-store.
    Store,
}

impl HelperKind {
    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            HelperKind::Priv => "silo-priv",
            HelperKind::Net => "silo-net",
            HelperKind::Store => "silo-store",
        }
    }

    /// All three, in start order.
    pub const ALL: [HelperKind; 3] = [HelperKind::Priv, HelperKind::Net, HelperKind::Store];
}

/// Errors talking to or starting helpers.
#[derive(Debug, thiserror::Error)]
pub enum HelperCallError {
    /// The helper is gone or the channel broke.
    #[error("{helper} is not answering ({source}); silod will exit so its supervisor restarts the helpers")]
    Rpc {
        /// Which helper.
        helper: &'static str,
        /// tarpc's error.
        source: tarpc::client::RpcError,
    },
    /// Starting it failed.
    #[error("starting {helper} from {path}: {source}")]
    Spawn {
        /// Which helper.
        helper: &'static str,
        /// The binary.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A started helper before silod drops root: the child and silod's ends of its sockets.
#[derive(Debug)]
pub struct Spawned {
    /// Which one.
    pub kind: HelperKind,
    /// The child process.
    pub child: Child,
    /// silod's end of the RPC socketpair.
    pub rpc: OwnedFd,
    /// silod's end of the fd-passing pair.
    pub fds: OwnedFd,
}

/// Options every helper is started with, chosen by root at silod's start.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// Where the helper binaries are.
    pub dir: PathBuf,
    /// The state dir.
    pub state_dir: PathBuf,
    /// The policy file.
    pub policy: PathBuf,
    /// Pass `--insecure-seccomp-log`.
    pub seccomp_log: bool,
}

/// Starts one helper as root. Runs before silod drops privileges, with no other threads.
pub fn spawn(kind: HelperKind, opts: &SpawnOptions) -> Result<Spawned, HelperCallError> {
    let path = opts.dir.join(kind.binary());
    let err = |source: std::io::Error| HelperCallError::Spawn {
        helper: kind.binary(),
        path: path.display().to_string(),
        source,
    };
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(err)?;
    let (fd_theirs, fd_ours) =
        fdpass::pair().map_err(|e| err(std::io::Error::other(e.to_string())))?;
    let rpc_child: OwnedFd = theirs.into();
    let rpc_raw = rpc_child.as_raw_fd();
    let fds_raw = fd_theirs.as_raw_fd();
    let mut cmd = Command::new(&path);
    cmd.arg("--state-dir")
        .arg(&opts.state_dir)
        .arg("--policy")
        .arg(&opts.policy)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null());
    if let Ok(v) = std::env::var("SILO_LOG") {
        cmd.env("SILO_LOG", v);
    }
    if opts.seccomp_log {
        cmd.arg("--insecure-seccomp-log");
    }
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // calls (dup2, close_range, prctl) on fds that are open in the child.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto fixed numbers clears CLOEXEC on the copies only, in this child only.
            fdpass::place_in_child(rpc_raw, fds_raw)?;
            // Nothing else crosses exec, whatever a library left open without CLOEXEC.
            libc::syscall(libc::SYS_close_range, FDPASS_FD as u32 + 1, u32::MAX, 0u32);
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(err)?;
    drop(rpc_child);
    drop(fd_theirs);
    Ok(Spawned {
        kind,
        child,
        rpc: ours.into(),
        fds: fd_ours,
    })
}

/// A live helper from silod's side.
#[derive(Debug, Clone)]
pub struct HelperHandle {
    /// Which one.
    pub kind: HelperKind,
    /// Its pid.
    pub pid: u32,
    /// Its hello, taken at start.
    pub hello: HelperHello,
    /// The fds it sends.
    pub fds: FdReceiver,
}

/// The three clients.
#[derive(Debug, Clone)]
pub struct Helpers {
    /// silo-priv.
    pub privileged: PrivHelper,
    /// silo-net.
    pub net: NetHelper,
    /// silo-store.
    pub store: StoreHelper,
    /// Per-helper facts, in [`HelperKind::ALL`] order.
    pub handles: Vec<HelperHandle>,
}

impl Helpers {
    /// Takes the fds `kind` sent under `ticket` on its side channel (waiting up to 10 s off
    /// the runtime's threads, since the receiver blocks).
    pub async fn take_fds(
        &self,
        kind: HelperKind,
        ticket: silo_proto::fdpass::FdTicket,
    ) -> Result<Vec<OwnedFd>, String> {
        let rx = self
            .handles
            .iter()
            .find(|h| h.kind == kind)
            .map(|h| h.fds.clone())
            .ok_or_else(|| format!("{} is not connected", kind.binary()))?;
        let fds = tokio::task::spawn_blocking(move || rx.take(ticket, Duration::from_secs(10)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if fds.is_empty() {
            return Err(format!("{} sent no fd", kind.binary()));
        }
        Ok(fds)
    }
}

/// A context with a deadline suited to helper work.
fn ctx() -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + Duration::from_secs(300);
    c
}

/// Maps a tarpc failure for `helper`.
fn rpc_err(helper: &'static str) -> impl FnOnce(tarpc::client::RpcError) -> HelperCallError {
    move |source| HelperCallError::Rpc { helper, source }
}

/// Connects to the spawned helpers (inside the runtime, after the drop) and says hello.
pub async fn connect(spawned: Vec<(HelperKind, u32, OwnedFd, OwnedFd)>) -> anyhow::Result<Helpers> {
    let mut privileged = None;
    let mut net = None;
    let mut store = None;
    let mut handles = Vec::new();
    for (kind, pid, rpc, fds) in spawned {
        let stream = silo_proto::transport::stream_from_fd(rpc)?;
        let fds = FdReceiver::spawn(fds, kind.binary())?;
        let hello = match kind {
            HelperKind::Priv => {
                let c = PrivClient::new(
                    client::Config::default(),
                    silo_proto::transport::transport(stream),
                )
                .spawn();
                let h = c.hello(ctx()).await.map_err(rpc_err(kind.binary()))?;
                privileged = Some(c);
                h
            }
            HelperKind::Net => {
                let c = NetClient::new(
                    client::Config::default(),
                    silo_proto::transport::transport(stream),
                )
                .spawn();
                let h = c.hello(ctx()).await.map_err(rpc_err(kind.binary()))?;
                net = Some(c);
                h
            }
            HelperKind::Store => {
                let c = StoreClient::new(
                    client::Config::default(),
                    silo_proto::transport::transport(stream),
                )
                .spawn();
                let h = c.hello(ctx()).await.map_err(rpc_err(kind.binary()))?;
                store = Some(c);
                h
            }
        };
        if hello.version != env!("CARGO_PKG_VERSION") || hello.helper != kind.binary() {
            anyhow::bail!(
                "{} answered as {} version {}, silod is version {}",
                kind.binary(),
                hello.helper,
                hello.version,
                env!("CARGO_PKG_VERSION")
            );
        }
        handles.push(HelperHandle {
            kind,
            pid,
            hello,
            fds,
        });
    }
    match (privileged, net, store) {
        (Some(privileged), Some(net), Some(store)) => Ok(Helpers {
            privileged: PrivHelper(privileged),
            net: NetHelper(net),
            store: StoreHelper(store),
            handles,
        }),
        _ => anyhow::bail!("not all three helpers were started"),
    }
}

/// Where the helper binaries live by default: beside silod's own executable (a build tree),
/// else `/usr/libexec/silo` (the package: helpers are not on PATH).
pub fn default_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|d| d.join(HelperKind::Priv.binary()).exists())
        .unwrap_or_else(|| PathBuf::from(LIBEXEC))
}

/// Where the package installs the helpers.
pub const LIBEXEC: &str = "/usr/libexec/silo";
