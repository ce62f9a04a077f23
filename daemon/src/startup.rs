//! silod's start: the short root phase (state dir, helpers, socket), the one-way drop, the
//! jail, then the API. Helper death ends silod with status 1 so that its supervisor restarts
//! the whole group (silod cannot start root processes any more once it has dropped).

use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use nix::unistd::{chown, Group, User};
use silo_proto::jail::SeccompMode;

use crate::helpers::{self, HelperKind, SpawnOptions};
use crate::state::{Daemon, HostFacts};

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
    /// Directory holding silo-priv, silo-net and silo-store (default: beside silod).
    #[arg(long)]
    pub helpers_dir: Option<PathBuf>,
    /// INSECURE: log seccomp violations instead of killing (for building allow-lists).
    #[arg(long)]
    pub insecure_seccomp_log: bool,
}

/// Makes the state dir: owned by silod's user and the API group, mode 0711.
fn prepare_state_dir(
    dir: &Path,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(md) if md.file_type().is_symlink() => {
            bail!("state dir {} is a symlink; refusing", dir.display())
        }
        Ok(md) if !md.is_dir() => bail!("state dir {} is not a directory", dir.display()),
        Ok(_) => {}
        Err(_) => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state dir {}", dir.display()))?,
    }
    chown(dir, Some(uid), Some(gid)).with_context(|| format!("chown {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("chmod {}", dir.display()))?;
    // An admin who opened the database as root (sqlite3 leaves root-owned -wal/-shm files)
    // would otherwise lock silod out of its own database.
    for f in ["silo.db", "silo.db-wal", "silo.db-shm"] {
        let p = dir.join(f);
        if let Ok(md) = std::fs::symlink_metadata(&p) {
            if md.file_type().is_file() {
                std::os::unix::fs::lchown(&p, Some(uid.as_raw()), Some(gid.as_raw()))
                    .with_context(|| format!("chown {}", p.display()))?;
            }
        }
    }
    Ok(())
}

/// Binds the API socket as root and hands it to silod's user and the API group.
fn bind_socket(
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
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(l)
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
async fn ensure_defaults(d: &Daemon) -> anyhow::Result<()> {
    if crate::storage::list(&d.db)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_empty()
    {
        let r = crate::storage::create(
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
            Err(crate::api::response::ApiError::Conflict(_)) => {
                d.db.with(|c| c.execute("INSERT INTO storage_pools (name, driver, description, config) VALUES ('default', 'dir', 'Default silo storage pool', '{}')", []).map(|_| ()))?;
            }
            Err(e) => return Err(anyhow::anyhow!("creating the default storage pool: {e}")),
        }
    }
    let fresh = crate::profiles::ensure_default(&d.db, "default")
        .map_err(|e| anyhow::anyhow!("creating the default profile: {e}"))?;
    crate::networks::bring_up_all(&d.db, &d.helpers).await;
    if fresh {
        // LXD's lxdbr0: a NATed bridge on free subnets, and eth0 on it in the default profile.
        match crate::networks::create_default(&d.db, &d.helpers).await {
            Ok(()) => tracing::info!(
                bridge = crate::networks::DEFAULT_BRIDGE,
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
pub fn run(args: Args, events: crate::events::Events) -> anyhow::Result<i32> {
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
    prepare_state_dir(&args.state_dir, user.uid, group.gid)?;
    let host = HostFacts::gather();

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
    let listener = bind_socket(&args.state_dir.join("unix.socket"), user.uid, group.gid)?;
    let notify = notify_socket();

    // The drop: for good.
    silo_proto::jail::user::drop_to(user.uid, user.gid)
        .context("dropping to the unprivileged user")?;
    let mode = if args.insecure_seccomp_log {
        SeccompMode::LogOnly
    } else {
        SeccompMode::Enforce
    };
    let report = crate::confinement::jail(&args.state_dir, mode)
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
        listener,
        notify,
        host,
        report.landlock,
        events,
        t0,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    args: Args,
    spawned: Vec<helpers::Spawned>,
    listener: std::os::unix::net::UnixListener,
    notify: Option<std::os::unix::net::UnixDatagram>,
    host: HostFacts,
    landlock: String,
    events: crate::events::Events,
    t0: Instant,
) -> anyhow::Result<i32> {
    let (dead_tx, mut dead_rx) = tokio::sync::mpsc::unbounded_channel::<(HelperKind, String)>();
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
    let helpers = tokio::select! {
        h = helpers::connect(conns) => h?,
        Some((kind, status)) = dead_rx.recv() => bail!("{} exited during start-up ({status}); see its log above", kind.binary()),
    };
    let db = crate::db::Db::open(&args.state_dir.join("silo.db"))?;
    let daemon = Arc::new(Daemon {
        helpers,
        ops: crate::operations::Operations::new(events.clone()),
        events: events.clone(),
        db,
        state_dir: args.state_dir.clone(),
        started: t0,
        host,
        landlock,
        image_locks: Default::default(),
        creating: Default::default(),
        stopping: Default::default(),
        sockets: Default::default(),
    });
    crate::images::gc_uploads(&args.state_dir);
    ensure_defaults(&daemon).await?;
    crate::storage::mount_all(&daemon.db, &daemon.helpers)
        .await
        .map_err(|e| anyhow::anyhow!("mounting storage pools: {e}"))?;
    if let Err(e) = crate::storage::collect_orphans(&daemon.db, &daemon.helpers).await {
        // Serving beats refusing to start over a leftover; the next start tries again.
        tracing::error!(error = %e, "collecting orphaned volumes failed; they stay until the next start");
    }
    {
        // Re-adopt what runs and autostart the rest in the background: the API is up at once.
        let c = daemon.instance_ctx();
        tokio::spawn(async move { crate::runtime::on_daemon_start(&c).await });
    }
    {
        // Housekeeping at the start of every minute: scheduled snapshots are taken, and
        // snapshots and backups past their expiry go.
        let c = daemon.instance_ctx();
        let state = args.state_dir.clone();
        crate::backups::reconcile(&c.db, &state);
        tokio::spawn(async move {
            loop {
                let now = time::OffsetDateTime::now_utc();
                let into = u64::from(now.second()) * 1000 + u64::from(now.millisecond());
                tokio::time::sleep(std::time::Duration::from_millis(60_000 - into.min(59_999)))
                    .await;
                let minute = time::OffsetDateTime::now_utc();
                crate::snapshots::run_schedules(&c, minute).await;
                crate::snapshots::expire(&c).await;
                crate::backups::expire(&c.db, &state, &c.events);
            }
        });
    }
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let app = crate::api::router(daemon.clone());
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
