//! What every helper does before it reads its first request: take its two fds, parse the
//! arguments root silod gave it, load the policy, and (after its own pre-jail setup) serve.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel, Serve};

use crate::jail::policy::Policy;
use crate::jail::SeccompMode;

/// A helper's start-up arguments.
#[derive(Debug)]
pub struct Boot {
    /// The helper's name.
    pub name: &'static str,
    /// The state dir (absolute; from root silod's argv).
    pub state_dir: PathBuf,
    /// The loaded policy.
    pub policy: Policy,
    /// The RPC socket (fd 3).
    pub rpc: OwnedFd,
    /// The fd-passing socket (fd 4), shared by the services that hand fds to silod.
    pub fds: std::sync::Arc<crate::fdpass::FdSender>,
    /// Which seccomp variant to install.
    pub seccomp_mode: SeccompMode,
    /// `--selftest-escape`: enter the jail, then try what it forbids (tests only).
    pub selftest: Option<String>,
    /// A pidfd of silod: readable when silod is gone.
    pub parent: OwnedFd,
}

/// Start-up failed; the helper exits with status 2 and this on stderr.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The policy file was refused.
    #[error("policy: {0}")]
    Policy(crate::error::HelperError),
    /// The helper could not be made non-dumpable.
    #[error("cannot make the helper non-dumpable: {0}")]
    Dumpable(crate::jail::CapsError),
    /// An inherited fd is missing.
    #[error("fd {0} is not open: silo helpers are started by silod, not by hand")]
    MissingFd(i32),
}

/// Reads argv and the inherited fds.
pub fn boot(name: &'static str) -> Result<Boot, BootError> {
    // Before anything else: every helper process and all it forks (launchers, monitors,
    // attachers, forwarders) stays out of reach of ptrace from inside an instance.
    crate::jail::caps_drop::non_dumpable().map_err(BootError::Dumpable)?;
    let mut state_dir = None;
    let mut policy_path = PathBuf::from(crate::jail::policy::DEFAULT_PATH);
    let mut seccomp_mode = SeccompMode::Enforce;
    let mut selftest = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--state-dir" => state_dir = args.next().map(PathBuf::from),
            "--policy" => {
                policy_path = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| BootError::Usage("--policy needs a path".into()))?
            }
            "--insecure-seccomp-log" => seccomp_mode = SeccompMode::LogOnly,
            "--selftest-escape" => selftest = args.next(),
            other => return Err(BootError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    let state_dir = state_dir.ok_or_else(|| BootError::Usage("--state-dir is required".into()))?;
    if !state_dir.is_absolute() {
        return Err(BootError::Usage("--state-dir must be absolute".into()));
    }
    let policy = Policy::load(&policy_path).map_err(BootError::Policy)?;
    let parent = parent_pidfd()?;
    let rpc = take_fd(crate::RPC_FD)?;
    let fds = std::sync::Arc::new(crate::fdpass::FdSender::new(take_fd(crate::FDPASS_FD)?));
    Ok(Boot {
        name,
        state_dir,
        policy,
        rpc,
        fds,
        seccomp_mode,
        selftest,
        parent,
    })
}

/// A pidfd for silod. PR_SET_PDEATHSIG cannot reach a helper from silod (silod's landlock
/// signal scope stops it), and tarpc keeps a channel open while a request is in flight, so
/// the helper watches silod itself and leaves the moment it is gone.
fn parent_pidfd() -> Result<OwnedFd, BootError> {
    let ppid = nix::unistd::getppid();
    if ppid.as_raw() <= 1 {
        return Err(BootError::Usage("silod is already gone".into()));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, ppid.as_raw(), 0) };
    if fd < 0 {
        return Err(BootError::Usage(format!(
            "pidfd_open(silod): {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if nix::unistd::getppid() != ppid {
        return Err(BootError::Usage("silod is already gone".into()));
    }
    Ok(owned)
}

fn take_fd(fd: i32) -> Result<OwnedFd, BootError> {
    // SAFETY: F_GETFD on an arbitrary number only queries the table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(BootError::MissingFd(fd));
    }
    // SAFETY: silod placed this fd here for us with dup2 before exec and nothing else in this
    // process refers to it; we take sole ownership and mark it close-on-exec.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: as above, the fd is open and ours.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(owned)
}

/// The helper's process-wide setting that makes its children die with it, and keeps it from
/// outliving silod's start-up thread: set before any request is read.
pub fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes an integer signal; no pointers.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
}

/// Serves one tarpc channel until silod goes away or breaks the protocol.
/// Returns the exit status the helper should use.
pub async fn serve<S>(name: &'static str, rpc: OwnedFd, serve: S) -> i32
where
    S: Serve + Clone + 'static,
    S::Req: for<'de> serde::Deserialize<'de> + tarpc::RequestName + Unpin + 'static,
    S::Resp: serde::Serialize + Unpin + 'static,
{
    // Helpers run a current-thread runtime (a third of the multi-thread latency, and one
    // thread to confine), so requests run as local tasks.
    tokio::task::LocalSet::new()
        .run_until(serve_local(name, rpc, serve))
        .await
}

async fn serve_local<S>(name: &'static str, rpc: OwnedFd, serve: S) -> i32
where
    S: Serve + Clone + 'static,
    S::Req: for<'de> serde::Deserialize<'de> + tarpc::RequestName + Unpin + 'static,
    S::Resp: serde::Serialize + Unpin + 'static,
{
    let stream = match crate::transport::stream_from_fd(rpc) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(helper = name, error = %e, "cannot use the RPC socket");
            return 2;
        }
    };
    let transport = crate::transport::transport(stream);
    let mut requests = BaseChannel::with_defaults(transport).requests();
    while let Some(r) = requests.next().await {
        match r {
            Ok(req) => {
                tokio::task::spawn_local(req.execute(serve.clone()));
            }
            Err(e) => {
                // A frame that does not decode (a malformed name, an unknown call) can only come
                // from a daemon that is not ours: refuse it and stop serving it.
                tracing::error!(
                    helper = name,
                    error = %e,
                    source = ?std::error::Error::source(&e).map(|s| s.to_string()),
                    "refusing a malformed request from silod; closing the channel"
                );
                return 3;
            }
        }
    }
    tracing::info!(helper = name, "silod closed the channel; exiting");
    0
}

/// Logs to stderr (silod passes the helpers' stderr through to its own), filtered by SILO_LOG.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SILO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// A helper's whole life: log, boot, `prepare` (everything opened by path happens here,
/// before the jail), enter the jail built by `jail_of`, then serve on a current-thread
/// runtime. Returns the exit status.
pub fn run<P, F, Fut>(
    name: &'static str,
    jail_of: fn(&Boot) -> crate::jail::Jail,
    prepare: impl FnOnce(&Boot) -> crate::error::HelperResult<P>,
    serve: F,
) -> i32
where
    F: FnOnce(P, Boot, String) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    init_logging();
    die_with_parent();
    let b = match boot(name) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{name}: {e}");
            return 2;
        }
    };
    let prepared = match prepare(&b) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "{name} cannot prepare its resources");
            return 2;
        }
    };
    let report = match jail_of(&b).enter() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot enter the jail; refusing to serve unconfined");
            return 2;
        }
    };
    if let Some(what) = &b.selftest {
        return crate::jail::selftest::attempt(what);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the runtime");
            return 2;
        }
    };
    // The fd channel lives as long as the helper, whichever parts of `Boot` a service keeps.
    let _fds = b.fds.clone();
    let parent = match b.parent.try_clone() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot keep silod's pidfd");
            return 2;
        }
    };
    rt.block_on(async move {
        // SAFETY: `parent` is an OwnedFd moved into the AsyncFd, so it stays open and keeps its
        // number for the AsyncFd's whole life.
        let watch = match unsafe { tokio::io::unix::AsyncFd::register(parent) } {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch silod");
                return 2;
            }
        };
        tokio::select! {
            code = serve(prepared, b, report.landlock) => code,
            _ = watch.readable() => {
                tracing::warn!(helper = name, "silod is gone; leaving at once, abandoning work in flight");
                0
            }
        }
    })
}
