//! silod's start: the short root phase (state dir, helpers, socket), the one-way drop, the
//! jail, then the API. Helper death ends silod with status 1 so that its supervisor restarts
//! the whole group (silod cannot start root processes any more once it has dropped).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use nix::unistd::{Group, User};
use silo_proto::jail::SeccompMode;

use crate::helpers::{self, HelperKind, SpawnOptions};
use crate::service::{HostFacts, Services};

/// silod's command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "silod",
    version,
    about = "silo's daemon: starts the three root helpers, drops to an unprivileged user, serves LXD's REST API"
)]
pub struct Args {
    /// State directory (database, API socket, storage).
    #[arg(long, default_value = "/var/lib/silo", env = "SILO_DIR")]
    pub state_dir: PathBuf,
    /// The unprivileged user silod runs as after start-up.
    #[arg(long, default_value = "silo")]
    pub user: String,
    /// The group that may use the API socket (mode 0660).
    #[arg(long, default_value = "silo")]
    pub group: String,
    /// The root-owned policy file the helpers read.
    #[arg(long, default_value = silo_proto::jail::policy::DEFAULT_PATH)]
    pub policy: PathBuf,
    /// Directory holding silo-priv, silo-net and silo-store (default: beside silod when they
    /// are there, else /usr/libexec/silo, where the package puts them).
    #[arg(long)]
    pub helpers_dir: Option<PathBuf>,
    /// INSECURE: log seccomp violations instead of killing (for building allow-lists).
    #[arg(long)]
    pub insecure_seccomp_log: bool,
    /// Start bare, as a fresh LXD 5.0: an empty default profile, no storage pool, no managed
    /// network, for a provisioning tool (a preseed, `lxc` scripts) that sets up the daemon
    /// itself. Without it silod makes its embedded defaults on a fresh state dir: a `dir`
    /// pool, `silobr0`, and root and eth0 in the default profile (what a newcomer wants).
    /// `SILOD_BARE=1` (or `true`, `yes`) in the environment does the same.
    #[arg(
        long,
        env = "SILOD_BARE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub bare: bool,
    /// Something else than serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What silod does instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Stop every instance as a host shutdown does (each gets its
    /// boot.host_shutdown_timeout to shut down cleanly, 30 s by default, then is killed),
    /// and have the running silod exit. The instances that ran start again at silod's next
    /// start unless boot.autostart=false. silo-containers.service runs this when the host
    /// shuts down; a plain stop or restart of silod.service leaves instances running.
    Shutdown {
        /// Seconds to wait for silod to finish (0: as long as it takes).
        #[arg(long, short = 't', default_value_t = 0)]
        timeout: u64,
    },
    /// Print silod's man page (roff) on stdout.
    #[command(hide = true)]
    Manpage,
    /// Print the database schema version this silod writes (the package refuses a
    /// downgrade below the schema of the database it finds).
    #[command(hide = true)]
    Schema,
}

/// What the root phase refuses to touch in the state dir. silod's user owns the state dir,
/// so a compromised silod of an earlier run may have planted anything there for the next
/// start: every chown below goes through an fd opened without following symlinks and is
/// checked first.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// A symlink where silod expects a file or directory of its own.
    #[error("{0} is a symlink; refusing to start (remove it: silod never makes one there)")]
    Symlink(PathBuf),
    /// Not the expected kind of file.
    #[error("{0} is not {1}; refusing to start")]
    WrongType(PathBuf, &'static str),
    /// A hard link: the same inode may be a system file elsewhere.
    #[error("{0} has {1} hard links; refusing to start (it may be a link to a file outside the state dir: remove it)")]
    HardLinked(PathBuf, u64),
    /// Owned by someone other than root or silod's user.
    #[error("{0} is owned by uid {1}, neither root nor silod's user; refusing to hand it to silod's user")]
    ForeignOwner(PathBuf, u32),
    /// A directory above the state dir that silod's user may change.
    #[error("{0}, above the state dir, is writable by silod's user; refusing to start (it could swap the state dir for a link into a root-owned tree)")]
    WritableAncestor(PathBuf),
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateDirError {
    let path = path.to_path_buf();
    move |source| StateDirError::Io { what, path, source }
}

/// Opens `name` beneath `dir` without following a symlink in its last component (O_PATH:
/// opening a planted device or FIFO for real could have side effects). `None` if absent.
fn open_nofollow(
    dir: &OwnedFd,
    name: &str,
    path: &Path,
    flags: libc::c_int,
) -> Result<Option<OwnedFd>, StateDirError> {
    let c = std::ffi::CString::new(name).map_err(|_| StateDirError::Io {
        what: "opening",
        path: path.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: openat on a directory fd we own with a NUL-terminated name; the returned fd,
    // when valid, is owned by nobody else.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            Some(libc::ELOOP) => Err(StateDirError::Symlink(path.to_path_buf())),
            _ => Err(StateDirError::Io {
                what: "opening",
                path: path.to_path_buf(),
                source: e,
            }),
        };
    }
    // SAFETY: fd is a fresh descriptor we just opened.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Checks an opened inode before root hands it over: the expected type, a single link, and
/// an owner that is root or silod's user already (so no one else's file changes hands).
fn check_inode(
    fd: &OwnedFd,
    path: &Path,
    kind: libc::mode_t,
    kind_name: &'static str,
    uid: nix::unistd::Uid,
) -> Result<(), StateDirError> {
    let st =
        nix::sys::stat::fstat(fd).map_err(|e| io_err("fstat", path)(std::io::Error::from(e)))?;
    if st.st_mode & libc::S_IFMT != kind {
        return Err(StateDirError::WrongType(path.to_path_buf(), kind_name));
    }
    if kind != libc::S_IFDIR && st.st_nlink != 1 {
        return Err(StateDirError::HardLinked(
            path.to_path_buf(),
            st.st_nlink as u64,
        ));
    }
    if st.st_uid != 0 && st.st_uid != uid.as_raw() {
        return Err(StateDirError::ForeignOwner(path.to_path_buf(), st.st_uid));
    }
    Ok(())
}

/// fchown by fd (works on O_PATH descriptors too, through AT_EMPTY_PATH).
fn chown_fd(
    fd: &OwnedFd,
    path: &Path,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> Result<(), StateDirError> {
    // SAFETY: fchownat on an fd we own with an empty, NUL-terminated path and AT_EMPTY_PATH:
    // it changes exactly the inode the fd refers to.
    let r = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid.as_raw(),
            gid.as_raw(),
            libc::AT_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(io_err("chown", path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Refuses a state dir below a directory silod's user could rewrite (its own, one writable
/// by one of `gids`, or a world-writable one without the sticky bit): it could swap a
/// component for a symlink into a root-owned tree between root's checks and its chown.
/// `dir` is resolved first, so each real directory on the way is checked.
fn check_ancestors(
    dir: &Path,
    uid: nix::unistd::Uid,
    gids: &[nix::unistd::Gid],
) -> Result<(), StateDirError> {
    let real = std::fs::canonicalize(dir).map_err(io_err("resolving", dir))?;
    for a in real.ancestors() {
        let md = std::fs::metadata(a).map_err(io_err("stat", a))?;
        let sticky = md.mode() & libc::S_ISVTX != 0;
        let group_writable = md.mode() & 0o020 != 0 && gids.iter().any(|g| g.as_raw() == md.gid());
        let world_writable = md.mode() & 0o002 != 0;
        if md.uid() == uid.as_raw() || (!sticky && (group_writable || world_writable)) {
            return Err(StateDirError::WritableAncestor(a.to_path_buf()));
        }
    }
    Ok(())
}

/// Makes the state dir: owned by silod's user and the API group, mode 0711. Returns an fd
/// on it so the rest of the root phase works beneath it, never through its path again.
fn prepare_state_dir(
    dir: &Path,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
    gids: &[nix::unistd::Gid],
) -> Result<OwnedFd, StateDirError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    // Before creating anything: mkdir -p must not follow a path silod's user can rewrite.
    let existing = parent
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    check_ancestors(existing, uid, gids)?;
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(_) => std::fs::create_dir_all(dir).map_err(io_err("creating state dir", dir))?,
    }
    check_ancestors(parent, uid, gids)?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| StateDirError::WrongType(dir.to_path_buf(), "a directory"))?;
    let pfd: OwnedFd = std::fs::File::open(parent)
        .map_err(io_err("opening", parent))?
        .into();
    let dfd = open_nofollow(&pfd, name, dir, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| match e {
            // O_DIRECTORY on a non-directory.
            StateDirError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOTDIR) => {
                StateDirError::WrongType(dir.to_path_buf(), "a directory")
            }
            e => e,
        })?
        .ok_or_else(|| {
            io_err("opening", dir)(std::io::Error::from(std::io::ErrorKind::NotFound))
        })?;
    check_inode(&dfd, dir, libc::S_IFDIR, "a directory", uid)?;
    chown_fd(&dfd, dir, uid, gid)?;
    nix::sys::stat::fchmod(&dfd, nix::sys::stat::Mode::from_bits_truncate(0o711))
        .map_err(|e| io_err("chmod", dir)(std::io::Error::from(e)))?;
    // An admin who opened the database as root (sqlite3 leaves root-owned -wal/-shm files)
    // would otherwise lock silod out of its own database.
    for f in ["silo.db", "silo.db-wal", "silo.db-shm"] {
        let p = dir.join(f);
        if let Some(fd) = open_nofollow(&dfd, f, &p, libc::O_PATH)? {
            check_inode(&fd, &p, libc::S_IFREG, "a regular file", uid)?;
            chown_fd(&fd, &p, uid, gid)?;
        }
    }
    Ok(dfd)
}

/// Binds the API socket as root and hands it to silod's user and the API group.
fn bind_socket(
    state: &OwnedFd,
    path: &Path,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_symlink() || (md.mode() & libc::S_IFMT) != libc::S_IFSOCK {
            bail!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            );
        }
        // A stale socket from an earlier run: only one silod may serve a state dir.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another silod is already serving {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    // The mode comes from the umask at bind time: a chmod by path after the bind could
    // follow whatever silod's user put there in between.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let l = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l.with_context(|| format!("binding {}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("socket name")?;
    // The inode just bound, by fd, checked: a hard link planted in its place has two links.
    let fd = open_nofollow(state, name, path, libc::O_PATH)?
        .with_context(|| format!("{} vanished after bind", path.display()))?;
    check_inode(&fd, path, libc::S_IFSOCK, "a socket", uid)?;
    chown_fd(&fd, path, uid, gid)?;
    Ok(l)
}

/// Detaches silod from whatever terminal started it: fds its starter leaked are closed,
/// stdin becomes /dev/null and silod leaves the session (so no controlling terminal), before
/// any helper is spawned. A terminal fd kept by a later-compromised silod would let it push
/// keystrokes into the root shell that started it (TIOCSTI); the seccomp filter refuses that
/// ioctl too. stdout and stderr stay: they carry the log wherever the admin sent it.
fn detach_from_terminal() -> anyhow::Result<()> {
    // SAFETY: nothing in silod owns an fd above 2 yet (main only parsed its arguments and set
    // up logging to stderr), and silod takes no fds from its starter (no socket activation),
    // so everything from 3 up was leaked to it: closing them leaves no dangling owner.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } != 0 {
        return Err(std::io::Error::last_os_error()).context("closing inherited fds");
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    // SAFETY: dup2 of an fd we own onto fd 0; no other thread exists yet.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("making /dev/null silod's stdin");
    }
    match nix::unistd::setsid() {
        Ok(_) => Ok(()),
        // Already a process-group leader (a shell with job control, a supervisor's session).
        Err(nix::errno::Errno::EPERM) => {
            let tty = match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOCTTY)
                .open("/dev/tty")
            {
                Ok(t) => t,
                // No controlling terminal: nothing to leave.
                Err(_) => return Ok(()),
            };
            if nix::unistd::getsid(None).ok() == Some(nix::unistd::getpid()) {
                bail!("silod leads a session with a controlling terminal; start it under a supervisor or with setsid(1) and </dev/null");
            }
            // SAFETY: TIOCNOTTY takes no argument; it only clears this process's ctty.
            if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCNOTTY) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("leaving the controlling terminal");
            }
            Ok(())
        }
        Err(e) => Err(e).context("setsid"),
    }
}

/// systemd's readiness socket, connected while silod can still reach it.
fn notify_socket() -> Option<std::os::unix::net::UnixDatagram> {
    let path = std::env::var_os("NOTIFY_SOCKET")?;
    let s = std::os::unix::net::UnixDatagram::unbound().ok()?;
    let bytes = path.as_encoded_bytes();
    let r = if let Some(abs) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abs).and_then(|a| s.connect_addr(&a))
    } else {
        s.connect(Path::new(&path))
    };
    r.ok().map(|_| s)
}

/// silod's embedded defaults: a `dir` pool named "default" and the default profile with the
/// root disk on it, made on first start (a later `silo init` edits them).
async fn ensure_defaults(d: &Services, bare: bool) -> anyhow::Result<()> {
    if bare {
        // LXD's fresh daemon: the default profile exists, empty; nothing else is made.
        crate::service::profiles::ensure_empty_default(&d.db)
            .map_err(|e| anyhow::anyhow!("creating the default profile: {e}"))?;
        crate::service::networks::bring_up_all(&d.db, &d.helpers).await;
        return Ok(());
    }
    if crate::service::storage::list(&d.db)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_empty()
    {
        let r = crate::service::storage::create(
            &d.db,
            &d.helpers,
            "default",
            "dir",
            "Default silo storage pool",
            Default::default(),
        )
        .await;
        match r {
            Ok(_) => tracing::info!("created the default storage pool (dir)"),
            // A pool directory without a record (a lost database): adopt it.
            Err(crate::service::DomainError::Conflict(_)) => {
                crate::store::pools::insert(
                    &d.db,
                    &crate::model::pool::Pool {
                        name: "default".into(),
                        driver: "dir".into(),
                        description: "Default silo storage pool".into(),
                        config: Default::default(),
                    },
                )?;
            }
            Err(e) => return Err(anyhow::anyhow!("creating the default storage pool: {e}")),
        }
    }
    let fresh = crate::service::profiles::ensure_default(&d.db, "default")
        .map_err(|e| anyhow::anyhow!("creating the default profile: {e}"))?;
    crate::service::networks::bring_up_all(&d.db, &d.helpers).await;
    if fresh {
        // LXD's lxdbr0: a NATed bridge on free subnets, and eth0 on it in the default profile.
        match crate::service::networks::create_default(&d.db, &d.helpers).await {
            Ok(()) => tracing::info!(
                bridge = crate::service::networks::DEFAULT_BRIDGE,
                "created the default network"
            ),
            Err(e) => {
                tracing::error!(error = %e, "creating the default network failed; instances start without a nic until one is added")
            }
        }
    }
    Ok(())
}

/// Runs silod; returns the process exit status.
/// Raises the soft limit on open files to the hard one, for silod and the helpers it spawns,
/// as Go's runtime does for LXD: each running instance holds descriptors in silod (its
/// `/dev/lxd` listener and event streams) and in the helpers, and a shell's soft 1024 ends a
/// host's containers well below a thousand.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(soft, hard, "raising the open files limit: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("reading the open files limit: {e}"),
    }
}

pub fn run(args: Args, events: crate::service::events::Events) -> anyhow::Result<i32> {
    let t0 = Instant::now();
    if !nix::unistd::geteuid().is_root() {
        bail!("silod must be started as root: it starts the three root helpers, then drops to --user {}", args.user);
    }
    if !args.state_dir.is_absolute() {
        bail!(
            "--state-dir must be an absolute path, got {}",
            args.state_dir.display()
        );
    }
    let user = User::from_name(&args.user)
        .context("looking up --user")?
        .with_context(|| format!("user {:?} does not exist: create it (see packaging/silo.sysusers.conf) or pass --user", args.user))?;
    let group = Group::from_name(&args.group)
        .context("looking up --group")?
        .with_context(|| format!("group {:?} does not exist: create it (see packaging/silo.sysusers.conf) or pass --group", args.group))?;
    if user.uid.is_root() {
        bail!(
            "--user {} is root; silod's API must not run as root",
            args.user
        );
    }
    detach_from_terminal()?;
    raise_nofile();
    let state_fd = prepare_state_dir(&args.state_dir, user.uid, group.gid, &[user.gid, group.gid])?;
    let host = HostFacts::gather();
    // The etcd keeper, before anything else holds fds it should not see (it closes all
    // but its socket anyway) and while silod is still single-threaded.
    let keeper = crate::service::cluster::keeper::spawn(&args.state_dir, user.uid, group.gid)
        .context("forking the etcd keeper")?;

    // Root phase: spawn the helpers with only their own fds.
    let opts = SpawnOptions {
        dir: args
            .helpers_dir
            .clone()
            .unwrap_or_else(helpers::default_dir),
        state_dir: args.state_dir.clone(),
        policy: args.policy.clone(),
        seccomp_log: args.insecure_seccomp_log,
    };
    let mut spawned = Vec::new();
    for kind in HelperKind::ALL {
        spawned.push(helpers::spawn(kind, &opts)?);
    }
    let listener = bind_socket(
        &state_fd,
        &args.state_dir.join("unix.socket"),
        user.uid,
        group.gid,
    )?;
    drop(state_fd);
    let notify = notify_socket();

    // The drop: for good.
    silo_proto::jail::user::drop_to(user.uid, user.gid)
        .context("dropping to the unprivileged user")?;
    let mode = if args.insecure_seccomp_log {
        SeccompMode::LogOnly
    } else {
        SeccompMode::Enforce
    };
    // An operator's own CA bundle (rustls-native-certs honours these) stays readable.
    let extra_read: Vec<PathBuf> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .filter_map(std::env::var_os)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .collect();
    let report = crate::confinement::jail(&args.state_dir, mode, &extra_read)
        .enter()
        .context("entering silod's jail")?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the runtime")?;
    rt.block_on(serve(
        args,
        spawned,
        keeper,
        listener,
        notify,
        host,
        report.landlock,
        events,
        t0,
    ))
}

/// Watches each helper from a thread of its own: its exit is sent on `dead` (silod then exits
/// too). Returns the helpers' sockets to connect to.
fn watch_helpers(
    spawned: Vec<helpers::Spawned>,
    dead_tx: &tokio::sync::mpsc::UnboundedSender<(HelperKind, String)>,
) -> anyhow::Result<Vec<(HelperKind, u32, OwnedFd, OwnedFd)>> {
    let mut conns: Vec<(HelperKind, u32, OwnedFd, OwnedFd)> = Vec::new();
    for s in spawned {
        let pid = s.child.id();
        conns.push((s.kind, pid, s.rpc, s.fds));
        let tx = dead_tx.clone();
        let mut child = s.child;
        let kind = s.kind;
        std::thread::Builder::new()
            .name(format!("wait-{}", kind.binary()))
            .spawn(move || {
                let status = child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                let _ = tx.send((kind, status));
            })?;
    }
    Ok(conns)
}

/// What runs beside the API: adoption and autostart, and the minutely housekeeping.
fn spawn_background(daemon: &Arc<Services>, state_dir: &Path) {
    {
        // Re-adopt what runs and autostart the rest in the background: the API is up at once.
        let c = Services::clone(daemon);
        tokio::spawn(async move { crate::service::runtime::on_daemon_start(&c).await });
    }
    {
        // Pulled images kept current, unused cached ones expired (at start, then on the
        // configured interval).
        let c = Services::clone(daemon);
        tokio::spawn(crate::service::image_updates::run(c));
    }
    {
        // Housekeeping at the start of every minute: scheduled snapshots are taken, and
        // snapshots and backups past their expiry go.
        let c = Services::clone(daemon);
        let state = state_dir.to_path_buf();
        crate::service::backups::reconcile(&c.db, &state);
        tokio::spawn(async move {
            loop {
                let now = time::OffsetDateTime::now_utc();
                let into = u64::from(now.second()) * 1000 + u64::from(now.millisecond());
                tokio::time::sleep(std::time::Duration::from_millis(60_000 - into.min(59_999)))
                    .await;
                let minute = time::OffsetDateTime::now_utc();
                crate::service::snapshots::run_schedules(&c, minute).await;
                crate::service::snapshots::expire(&c).await;
                crate::service::custom_volumes::run_schedules(&c, minute).await;
                crate::service::custom_volumes::expire(&c).await;
                crate::service::volume_backups::expire(&c);
                crate::service::backups::expire(&c.db, &state, &c.events);
            }
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    args: Args,
    spawned: Vec<helpers::Spawned>,
    keeper: crate::service::cluster::keeper::Keeper,
    listener: std::os::unix::net::UnixListener,
    notify: Option<std::os::unix::net::UnixDatagram>,
    host: HostFacts,
    landlock: String,
    events: crate::service::events::Events,
    t0: Instant,
) -> anyhow::Result<i32> {
    let (dead_tx, mut dead_rx) = tokio::sync::mpsc::unbounded_channel::<(HelperKind, String)>();
    let conns = watch_helpers(spawned, &dead_tx)?;
    let helpers = tokio::select! {
        h = helpers::connect(conns) => h?,
        Some((kind, status)) = dead_rx.recv() => bail!("{} exited during start-up ({status}); see its log above", kind.binary()),
    };
    let db = crate::store::db::Db::open(&args.state_dir.join("silo.db"))?;
    if crate::service::cluster::is_member(&args.state_dir) {
        // Until it reaches its cluster, a member writes no global record on its own.
        db.set_replica_pending();
    }
    let (reaper, stopped) = crate::service::runtime::Reaper::channel();
    let daemon = Arc::new(Services {
        helpers,
        ops: crate::service::operations::Operations::new(events.clone()),
        events: events.clone(),
        db,
        state_dir: args.state_dir.clone(),
        started: t0,
        host,
        landlock,
        image_locks: Default::default(),
        creating: Default::default(),
        stopping: Default::default(),
        watcher: Default::default(),
        shutdown: Default::default(),
        sockets: Default::default(),
        reaper,
        logs: Some(args.state_dir.join("logs")),
        backups: Some(crate::service::backups::root(&args.state_dir)),
        trust: Default::default(),
        https: Default::default(),
        devlxd: Default::default(),
        cluster: crate::service::cluster::Cluster::new(Some(keeper)),
    });
    daemon.devlxd.install(crate::api::devlxd::serve_fn());
    crate::service::lifecycle::spawn_reaper(Services::clone(&daemon), stopped);
    crate::service::images::gc_uploads(&args.state_dir);
    ensure_defaults(&daemon, args.bare).await?;
    crate::service::storage::mount_all(&daemon.db, &daemon.helpers)
        .await
        .map_err(|e| anyhow::anyhow!("mounting storage pools: {e}"))?;
    if let Err(e) = crate::service::storage::mount_state_volumes(&daemon).await {
        tracing::error!(error = %e, "mounting the custom volumes of storage.images_volume/backups_volume failed; images and backups are read from silod's own directories until fixed");
    }
    if let Err(e) = crate::service::storage::collect_orphans(&daemon.db, &daemon.helpers).await {
        // Serving beats refusing to start over a leftover; the next start tries again.
        tracing::error!(error = %e, "collecting orphaned volumes failed; they stay until the next start");
    }
    if let Err(e) = crate::service::warnings::record_host_conditions(&daemon, &daemon.host.degraded)
    {
        tracing::error!(error = %e, "recording this host's warnings failed");
    }
    spawn_background(&daemon, &args.state_dir);
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let app = crate::api::router(daemon.clone());
    let identity =
        crate::service::trust::load_or_create_identity(&args.state_dir, &daemon.host.hostname)
            .map_err(|e| anyhow::anyhow!("the server certificate: {e}"))?;
    let tls = crate::tls::server_config(&identity)?;
    daemon.trust.set_identity(identity);
    daemon.https.install(crate::tls::serve_fn(app.clone(), tls));
    crate::service::server::start_https(&daemon).await;
    // A member finds its cluster again in the background: a cluster without quorum must
    // not keep this host's own API down.
    tokio::spawn(crate::service::cluster::resume(Services::clone(&daemon)));
    // Requests on the unix socket come from the API group: trusted.
    let app = app.layer(axum::Extension(crate::model::trust::Peer::Local));
    tracing::info!(
        state_dir = %args.state_dir.display(),
        ready_ms = t0.elapsed().as_millis() as u64,
        "silod is ready"
    );
    if let Some(n) = notify {
        let _ = n.send(b"READY=1");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // As LXD: SIGPWR is the host going down, so instances are stopped first.
    let mut pwr =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGPWR))?;
    let server = std::future::IntoFuture::into_future(axum::serve(listener, app));
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => {
            r.context("serving the API")?;
            Ok(0)
        }
        Some((kind, status)) = dead_rx.recv() => {
            tracing::error!(helper = kind.binary(), %status, "a helper died; exiting so the supervisor restarts silod and its helpers");
            // A short grace period: requests in flight fail with a clear error (their helper
            // call answers "not answering") and their operations and events say so, instead
            // of connections simply dropping.
            let grace = tokio::time::sleep(std::time::Duration::from_secs(2));
            tokio::select! {
                _ = &mut server => {}
                () = grace => {}
            }
            Ok(1)
        }
        () = daemon.shutdown.done() => {
            // The answer to `silod shutdown` is still on its way out.
            let grace = tokio::time::sleep(std::time::Duration::from_millis(500));
            tokio::select! {
                _ = &mut server => {}
                () = grace => {}
            }
            Ok(0)
        }
        _ = pwr.recv() => {
            tracing::info!("SIGPWR: stopping every instance with the host");
            match crate::service::runtime::shutdown_all(&daemon).await {
                Ok(report) => tracing::info!(?report, "every instance stopped"),
                Err(e) => tracing::error!(error = %e, "stopping the instances failed"),
            }
            Ok(0)
        }
        _ = term.recv() => {
            tracing::info!("SIGTERM: shutting down");
            Ok(0)
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: shutting down");
            Ok(0)
        }
    }
}
