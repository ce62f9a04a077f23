//! Running instances from silod's side: start, stop, restart, limits, state, autostart, and
//! the watcher that notices an instance stopping by itself (poweroff or reboot inside).
//!
//! silod keeps no "running" flag of its own: silo-priv's table (which survives silod's
//! restarts through the monitors' records) is the truth, asked for on every read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use silo_proto::privileged::{InitExit, InstanceStats, Limits, RunningInfo, StartSpec};
use silo_proto::{InstanceName, PoolName};

use crate::model::devices::DeviceType;
use crate::service::instances::{self, Instance};
use crate::service::networks;
use crate::service::DomainError;
use crate::service::Services;

/// Runs whose end silod asked for (a stop, a restart, a host shutdown), by instance and init
/// pid: the watcher of that run takes the entry and leaves the rest to whoever asked. Keyed by
/// the run rather than a flag cleared once the stop returns, because the watcher may wake only
/// after that (on a busy host, with a restart already starting the next run, whose nics it
/// would then release, and recording the instance as stopped).
#[derive(Debug, Default, Clone)]
pub struct Stopping(Arc<Mutex<HashSet<(String, u32)>>>);

impl Stopping {
    fn claim(&self, name: &str, pid: u32) {
        if let Ok(mut s) = self.0.lock() {
            s.insert((name.to_string(), pid));
        }
    }
    fn release(&self, name: &str, pid: u32) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(&(name.to_string(), pid));
        }
    }
    fn take(&self, name: &str, pid: u32) -> bool {
        self.0
            .lock()
            .map(|mut s| s.remove(&(name.to_string(), pid)))
            .unwrap_or(false)
    }
}

fn iname(name: &str) -> Result<InstanceName, DomainError> {
    InstanceName::new(name.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))
}

/// What runs now, by name.
pub async fn running(c: &Services) -> Result<HashMap<String, RunningInfo>, DomainError> {
    let list = c.helpers.privileged.running().await?;
    Ok(list
        .into_iter()
        .map(|r| (r.instance.as_str().to_string(), r))
        .collect())
}

/// Whether `name` runs.
pub async fn is_running(c: &Services, name: &str) -> Result<bool, DomainError> {
    Ok(run_state(c, name).await?.is_some())
}

/// How `name` is: `None` when stopped, else silo-priv's record with the freezer's state.
pub async fn run_state(c: &Services, name: &str) -> Result<Option<RunningInfo>, DomainError> {
    // A name silo-priv could not take runs nowhere.
    let Ok(n) = iname(name) else { return Ok(None) };
    Ok(c.helpers.privileged.running_one(n).await?)
}

/// Whether `name` runs with its processes frozen (`lxc pause`).
pub async fn is_frozen(c: &Services, name: &str) -> Result<bool, DomainError> {
    Ok(run_state(c, name).await?.is_some_and(|r| r.frozen))
}

/// Freezes (`lxc pause`) or thaws a running instance, refusing as LXD does when it is not
/// running or already in that state; announces `instance-paused` or `instance-resumed`.
pub async fn set_frozen(c: &Services, name: &str, frozen: bool) -> Result<(), DomainError> {
    instances::get(&c.db, name)?;
    let Some(info) = run_state(c, name).await? else {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} isn't running"
        )));
    };
    if info.frozen == frozen {
        return Err(DomainError::BadRequest(if frozen {
            format!("instance {name:?} is already frozen")
        } else {
            format!("instance {name:?} is already running")
        }));
    }
    c.helpers.privileged.freeze(iname(name)?, frozen).await?;
    c.events.lifecycle(
        if frozen {
            "instance-paused"
        } else {
            "instance-resumed"
        },
        &format!("/1.0/instances/{name}"),
        json!({}),
    );
    Ok(())
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn host_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// The cgroup limits an expanded config asks for, as LXD reads `limits.*` (parsed by
/// [`crate::model::parse`]; the host's memory and CPUs are read here).
pub fn limits_of(config: &BTreeMap<String, String>) -> Result<Limits, DomainError> {
    use crate::model::parse;
    let bad = |k: &str, e: String| DomainError::BadRequest(format!("invalid value for {k}: {e}"));
    let mut l = Limits::default();
    if let Some(v) = config.get("limits.memory").filter(|v| !v.is_empty()) {
        let m = parse::parse_memory(v).map_err(|e| bad("limits.memory", e.to_string()))?;
        l.memory = Some(m.bytes(host_memory()));
    }
    if let Some(v) = config.get("limits.cpu").filter(|v| !v.is_empty()) {
        let host = host_cpus();
        let cpu = parse::parse_cpu(v).map_err(|e| bad("limits.cpu", e.to_string()))?;
        if cpu.highest() >= host {
            return Err(bad(
                "limits.cpu",
                format!(
                    "{v:?} needs CPU {} but this host has {host} CPUs",
                    cpu.highest()
                ),
            ));
        }
        l.cpus = Some(cpu.cpuset());
    }
    if let Some(v) = config.get("limits.processes").filter(|v| !v.is_empty()) {
        l.processes =
            Some(parse::parse_whole(v).map_err(|e| bad("limits.processes", e.to_string()))?);
    }
    crate::model::limits::fill(config, &mut l).map_err(|(k, e)| bad(&k, e))?;
    l.validate().map_err(DomainError::from)?;
    Ok(l)
}

fn expanded(c: &Services, i: &Instance) -> Result<BTreeMap<String, String>, DomainError> {
    Ok(expanded_all(c, i)?.0)
}

type Devices = BTreeMap<String, crate::service::profiles::Device>;

fn expanded_all(
    c: &Services,
    i: &Instance,
) -> Result<(BTreeMap<String, String>, Devices), DomainError> {
    let profiles = crate::service::expansion::load_profiles(&c.db, &i.profiles)?;
    Ok(crate::model::profile::expand(
        &profiles, &i.config, &i.devices,
    ))
}

fn of_type(
    devs: &Devices,
    t: DeviceType,
) -> impl Iterator<Item = (&String, &crate::service::profiles::Device)> {
    devs.iter().filter(move |(_, d)| DeviceType::of(d) == t)
}

/// Gives an instance's nics their `volatile.<dev>.hwaddr` (once; they keep it) and returns
/// the record as it now is.
fn ensure_hwaddrs(c: &Services, name: &str) -> Result<Instance, DomainError> {
    let i = instances::get(&c.db, name)?;
    let (_, devs) = expanded_all(c, &i)?;
    let missing = networks::missing_hwaddrs(&devs, &i.config)
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    if missing.is_empty() {
        return Ok(i);
    }
    let kv: Vec<(&str, &str)> = missing
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    instances::set_keys(&c.db, name, &kv, None)?;
    instances::get(&c.db, name)
}

/// The nics of an instance, planned.
fn nic_plans(
    c: &Services,
    i: &Instance,
    devs: &Devices,
) -> Result<Vec<networks::NicPlan>, DomainError> {
    of_type(devs, DeviceType::Nic)
        .map(|(n, d)| networks::plan_nic(&c.db, n, d, &i.config))
        .collect()
}

/// Plugs one nic into a running instance and records its host-side name.
async fn plug_nic(
    c: &Services,
    n: &InstanceName,
    plan: &networks::NicPlan,
) -> Result<(), DomainError> {
    if let Some(host) = networks::attach(&c.helpers, n, plan).await? {
        instances::set_keys(
            &c.db,
            n.as_str(),
            &[(
                &format!("volatile.{}.host_name", plan.device),
                host.as_str(),
            )],
            None,
        )?;
    }
    Ok(())
}

/// Plugs every nic and starts every proxy of a just-started (held) instance.
async fn plug_devices(
    c: &Services,
    n: &InstanceName,
    i: &Instance,
    devs: &Devices,
) -> Result<(), DomainError> {
    for plan in nic_plans(c, i, devs)? {
        plug_nic(c, n, &plan).await?;
    }
    for (dn, d) in of_type(devs, DeviceType::Proxy) {
        networks::start_proxy(&c.helpers, n, dn, d).await?;
    }
    Ok(())
}

/// Before an instance stops: physical nics go back to the host while its namespace still
/// exists (a virtual one would otherwise vanish with it), and its forwarders stop.
async fn unplug_before_stop(c: &Services, name: &str) {
    let Ok(n) = iname(name) else { return };
    networks::stop_proxy(&c.helpers, &n, None).await;
    let Ok(i) = instances::get(&c.db, name) else {
        return;
    };
    let Ok((_, devs)) = expanded_all(c, &i) else {
        return;
    };
    for plan in nic_plans(c, &i, &devs).unwrap_or_default() {
        if matches!(plan.spec.kind, silo_proto::net::NicKind::Physical { .. }) {
            if let Err(e) = networks::detach(&c.helpers, &n, &plan).await {
                tracing::warn!(instance = %name, nic = %plan.device, error = %e, "giving back a physical nic failed");
            }
        }
    }
}

/// After an instance stopped: its forwarders go, and the host-side names are forgotten.
async fn after_stop(c: &Services, name: &str) {
    c.devlxd.close(name);
    let Ok(n) = iname(name) else { return };
    networks::stop_proxy(&c.helpers, &n, None).await;
    if let Ok(i) = instances::get(&c.db, name) {
        if let Ok((_, devs)) = expanded_all(c, &i) {
            let plans = nic_plans(c, &i, &devs).unwrap_or_default();
            networks::release_host_side(&c.helpers, &n, &plans).await;
        }
        let keys: Vec<String> = i
            .config
            .keys()
            .filter(|k| k.starts_with("volatile.") && k.ends_with(".host_name"))
            .cloned()
            .collect();
        if !keys.is_empty() {
            let kv: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "")).collect();
            let _ = instances::set_keys(&c.db, name, &kv, None);
        }
    }
}

fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| crate::model::parse::is_true(v))
}

/// Starts a stopped instance.
pub async fn start(c: &Services, name: &str) -> Result<RunningInfo, DomainError> {
    if c.shutdown.begun() {
        return Err(DomainError::Unavailable(
            "silod is shutting down with the host: no instance starts now".into(),
        ));
    }
    instances::get(&c.db, name)?;
    if is_running(c, name).await? {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is already running"
        )));
    }
    let i = ensure_hwaddrs(c, name)?;
    let (cfg, devs) = expanded_all(c, &i)?;
    // Checked before anything runs: a bad nic or proxy fails the start with nothing made.
    networks::check_nic_claims(&c.db, name, &i.config, &devs)?;
    let plans = nic_plans(c, &i, &devs)?;
    for (dn, d) in of_type(&devs, DeviceType::Proxy) {
        networks::proxy_spec(d)
            .map_err(|e| DomainError::BadRequest(format!("proxy device {dn:?}: {e}")))?;
    }
    let hold = !plans.is_empty() || of_type(&devs, DeviceType::Proxy).next().is_some();
    let mut limits = limits_of(&cfg)?;
    limits.disk_io = crate::service::devices::disk_io(&devs)?;
    let idmap_base = if is_true(cfg.get("security.privileged")) {
        None
    } else {
        Some(
            i.config
                .get("volatile.idmap.base")
                .and_then(|b| b.parse().ok())
                .ok_or_else(|| {
                    DomainError::Internal(format!("instance {name:?} has no volatile.idmap.base"))
                })?,
        )
    };
    render_templates(c, &i, &cfg, "start").await?;
    let spec = StartSpec {
        instance: iname(name)?,
        pool: PoolName::new(i.pool.clone()).map_err(|e| DomainError::Internal(e.to_string()))?,
        idmap_base,
        idmap_size: instances::idmap_size_of(&i.config),
        nesting: is_true(cfg.get("security.nesting")),
        limits,
        disks: crate::service::devices::mounts(&devs)?,
        devices: crate::service::devices::host_devices(&devs)?,
        hold,
        raw_idmap: if idmap_base.is_some() {
            crate::model::limits::raw_idmap(&cfg)
                .map_err(|e| DomainError::BadRequest(format!("invalid value for raw.idmap: {e}")))?
        } else {
            Vec::new()
        },
        devlxd: crate::model::devlxd::enabled(&cfg),
    };
    let info = c
        .helpers
        .privileged
        .start(spec)
        .await
        .map_err(|e| match e {
            crate::helpers::HelperFailure::Refused(silo_proto::HelperError::Io {
                message, ..
            }) => DomainError::Internal(format!("failed to start instance {name:?}: {message}")),
            e => e.into(),
        })?;
    if hold {
        let n = iname(name)?;
        let plugged = async {
            plug_devices(c, &n, &i, &devs).await?;
            c.helpers.privileged.release(n.clone()).await?;
            Ok::<(), DomainError>(())
        }
        .await;
        if let Err(e) = plugged {
            // Nothing half-made: the held init goes, and with its namespace every veth and
            // macvlan; forwarders and physical nics are taken back explicitly.
            unplug_before_stop(c, name).await;
            let _ = c.helpers.privileged.stop(n.clone(), true).await;
            let _ = c.helpers.privileged.wait_stopped(n.clone(), 10_000).await;
            after_stop(c, name).await;
            return Err(e);
        }
    }
    // The guest API is a convenience of the running instance: a failure to serve it is
    // logged, not a failed start (the instance then finds nothing listening at /dev/lxd/sock).
    if let Err(e) = crate::service::devlxd::open(c, name, &cfg, info.idmap_base).await {
        tracing::warn!(instance = %name, error = %e, "serving /dev/lxd/sock failed");
    }
    instances::set_keys(
        &c.db,
        name,
        &[("volatile.last_state.power", "RUNNING")],
        Some(&crate::service::events::now_rfc3339()),
    )?;
    c.events.lifecycle(
        "instance-started",
        &format!("/1.0/instances/{name}"),
        json!({}),
    );
    watch(c.clone(), name.to_string(), info.init_pid);
    Ok(info)
}

/// Stops a running instance: asks init to shut down and waits `timeout` (None: as long as
/// it takes), or kills it (`force`).
pub async fn stop(
    c: &Services,
    name: &str,
    force: bool,
    timeout: Option<Duration>,
) -> Result<InitExit, DomainError> {
    instances::get(&c.db, name)?;
    let Some(run) = run_state(c, name).await? else {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is already stopped"
        )));
    };
    let exit = claimed_stop(c, name, run.init_pid, force, timeout).await?;
    after_stop(c, name).await;
    instances::set_keys(
        &c.db,
        name,
        &[("volatile.last_state.power", "STOPPED")],
        None,
    )?;
    c.events.lifecycle(
        "instance-stopped",
        &format!("/1.0/instances/{name}"),
        json!({}),
    );
    Ok(exit)
}

/// Stops the run of `name` whose init is `pid`, claimed for the asker, so that its watcher
/// does not take the stop for one the instance made by itself; a failed stop gives the claim
/// back.
async fn claimed_stop(
    c: &Services,
    name: &str,
    pid: u32,
    force: bool,
    timeout: Option<Duration>,
) -> Result<InitExit, DomainError> {
    c.stopping.claim(name, pid);
    unplug_before_stop(c, name).await;
    let r = stop_inner(c, name, force, timeout).await;
    if r.is_err() {
        c.stopping.release(name, pid);
    }
    r
}

async fn stop_inner(
    c: &Services,
    name: &str,
    force: bool,
    timeout: Option<Duration>,
) -> Result<InitExit, DomainError> {
    let n = iname(name)?;
    let p = &c.helpers.privileged;
    p.stop(n.clone(), force).await?;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        let left = match deadline {
            Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
            None => Duration::from_secs(200),
        };
        let chunk = left.min(Duration::from_secs(200));
        let exit = p.wait_stopped(n.clone(), chunk.as_millis() as u64).await?;
        if exit != InitExit::Running {
            return Ok(exit);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(DomainError::Internal(format!(
                "instance {name:?} did not shut down within {}s (stop it with --force)",
                timeout.map(|t| t.as_secs()).unwrap_or(0)
            )));
        }
    }
}

/// Restarts: a clean stop (or a kill with `force`), then a start.
pub async fn restart(
    c: &Services,
    name: &str,
    force: bool,
    timeout: Option<Duration>,
) -> Result<(), DomainError> {
    let Some(run) = run_state(c, name).await? else {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is not running"
        )));
    };
    claimed_stop(c, name, run.init_pid, force, timeout).await?;
    after_stop(c, name).await;
    start(c, name).await?;
    c.events.lifecycle(
        "instance-restarted",
        &format!("/1.0/instances/{name}"),
        json!({}),
    );
    Ok(())
}

/// Ephemeral instances that stopped by themselves, handed to `lifecycle` to delete (the
/// runtime sits below lifecycle, which deletes through it).
#[derive(Debug, Clone)]
pub struct Reaper(tokio::sync::mpsc::UnboundedSender<String>);

impl Reaper {
    /// A reaper and the end `lifecycle::spawn_reaper` drains.
    pub fn channel() -> (Reaper, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Reaper(tx), rx)
    }

    fn reap(&self, name: &str) {
        if self.0.send(name.to_string()).is_err() {
            tracing::warn!(
                instance = name,
                "no reaper: the stopped ephemeral instance stays"
            );
        }
    }
}

/// The running instances silod follows (by name, with their init's pid), and whether the
/// task that follows them has started.
#[derive(Debug, Default, Clone)]
pub struct Watcher(Arc<WatcherInner>);

#[derive(Debug, Default)]
struct WatcherInner {
    watched: Mutex<HashMap<String, u32>>,
    changed: tokio::sync::Notify,
    started: std::sync::atomic::AtomicBool,
}

impl Watcher {
    fn add(&self, name: String, init_pid: u32) {
        if let Ok(mut m) = self.0.watched.lock() {
            m.insert(name, init_pid);
        }
        // Stored as a permit when the follower is busy: the next wait includes this one.
        self.0.changed.notify_one();
    }

    fn names(&self) -> Vec<InstanceName> {
        self.0
            .watched
            .lock()
            .map(|m| m.keys().filter_map(|n| iname(n).ok()).collect())
            .unwrap_or_default()
    }

    fn take(&self, name: &str) -> Option<u32> {
        self.0.watched.lock().ok()?.remove(name)
    }
}

/// Follows a running instance until it stops by itself: a reboot inside (init killed by
/// SIGHUP through reboot(2) in its pid namespace) starts it again, as LXD does; an ephemeral
/// instance is deleted once stopped.
///
/// One task follows them all with one long-poll to silo-priv at a time, restarted when an
/// instance joins: a request per instance would put a thousand in flight for a thousand
/// instances, and tarpc's client holds every request past its limit of 1000 in flight.
pub fn watch(c: Services, name: String, init_pid: u32) {
    c.watcher.add(name, init_pid);
    if !c
        .watcher
        .0
        .started
        .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        tokio::spawn(follow(c));
    }
}

async fn follow(c: Services) {
    let w = c.watcher.clone();
    loop {
        let names = w.names();
        if names.is_empty() {
            w.0.changed.notified().await;
            continue;
        }
        let stopped = tokio::select! {
            r = c.helpers.privileged.wait_any_stopped(names, 200_000) => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "following the running instances");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = w.0.changed.notified() => continue,
        };
        for n in stopped {
            if let Some(pid) = w.take(n.as_str()) {
                tokio::spawn(after_exit(c.clone(), n.as_str().to_string(), pid));
            }
        }
    }
}

/// What follows an instance's init ending by itself.
async fn after_exit(c: Services, name: String, init_pid: u32) {
    let Ok(n) = iname(&name) else { return };
    let exit = match c.helpers.privileged.wait_stopped(n.clone(), 10_000).await {
        // Started again meanwhile (by name): follow the new run.
        Ok(InitExit::Running) => {
            if let Ok(run) = running(&c).await {
                if let Some(info) = run.get(&name) {
                    c.watcher.add(name.clone(), info.init_pid);
                }
            }
            return;
        }
        Ok(e) => e,
        Err(_) => return,
    };
    if c.stopping.take(&name, init_pid) || c.shutdown.begun() {
        return;
    }
    tracing::info!(instance = %name, ?exit, "instance stopped by itself");
    after_stop(&c, &name).await;
    let _ = instances::set_keys(
        &c.db,
        &name,
        &[("volatile.last_state.power", "STOPPED")],
        None,
    );
    if exit == InitExit::Signaled(libc::SIGHUP) {
        if let Err(e) = start(&c, &name).await {
            tracing::warn!(instance = %name, error = %e, "restarting after a reboot failed");
        } else {
            c.events.lifecycle(
                "instance-restarted",
                &format!("/1.0/instances/{name}"),
                json!({}),
            );
        }
        return;
    }
    c.events.lifecycle(
        "instance-shutdown",
        &format!("/1.0/instances/{name}"),
        json!({}),
    );
    if let Ok(i) = instances::get(&c.db, &name) {
        if i.ephemeral {
            c.reaper.reap(&name);
        }
    }
}

/// At silod's start: follow what runs (adopted by silo-priv), and start `boot.autostart`
/// instances (and those that were running at shutdown unless autostart says no), as LXD does.
pub async fn on_daemon_start(c: &Services) {
    let run = running(c).await.unwrap_or_default();
    for (name, info) in &run {
        watch(c.clone(), name.clone(), info.init_pid);
        // Forwarders died with the previous silo-net; nics live on in the instances. The
        // guest API's listener died with the previous silod: a new socket appears in the
        // directory each instance has mounted at /dev/lxd.
        if let (Ok(n), Ok(i)) = (iname(name), instances::get(&c.db, name)) {
            if let Ok((cfg, devs)) = expanded_all(c, &i) {
                if let Err(e) = crate::service::devlxd::open(c, name, &cfg, info.idmap_base).await {
                    tracing::warn!(instance = %name, error = %e, "serving /dev/lxd/sock again failed");
                }
                for (dn, d) in of_type(&devs, DeviceType::Proxy) {
                    if let Err(e) = networks::start_proxy(&c.helpers, &n, dn, d).await {
                        tracing::warn!(instance = %name, device = %dn, error = %e, "restarting a proxy failed");
                    }
                }
            }
        }
    }
    let Ok(all) = instances::list_records(&c.db) else {
        return;
    };
    for i in all {
        if run.contains_key(&i.name) {
            continue;
        }
        let Ok(cfg) = expanded(c, &i) else { continue };
        let auto = match cfg.get("boot.autostart") {
            Some(v) => is_true(Some(v)),
            None => {
                i.config
                    .get("volatile.last_state.power")
                    .map(String::as_str)
                    == Some("RUNNING")
            }
        };
        if auto {
            match start(c, &i.name).await {
                Ok(_) => tracing::info!(instance = %i.name, "autostarted"),
                Err(e) => tracing::warn!(instance = %i.name, error = %e, "autostart failed"),
            }
        }
    }
}

/// LXD's default for `boot.host_shutdown_timeout`, in seconds.
const HOST_SHUTDOWN_TIMEOUT: u64 = 30;

/// A host shutdown of this daemon: once begun nothing starts any more, and silod's serving
/// loop exits when it is done.
#[derive(Debug, Default, Clone)]
pub struct HostShutdown {
    begun: Arc<std::sync::atomic::AtomicBool>,
    done: Arc<tokio::sync::Notify>,
}

impl HostShutdown {
    fn begin(&self) {
        self.begun.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn begun(&self) -> bool {
        self.begun.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once a host shutdown has stopped every instance.
    pub async fn done(&self) {
        self.done.notified().await
    }
}

/// What a host shutdown did: the instances that shut down cleanly and those killed after
/// their timeout (`silod shutdown` prints them).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ShutdownReport {
    /// Shut down cleanly within their `boot.host_shutdown_timeout`.
    pub stopped: Vec<String>,
    /// Killed after it.
    pub killed: Vec<String>,
}

/// Host shutdown (`silod shutdown`, SIGPWR), as LXD's: every running instance is asked to
/// shut down cleanly and given its `boot.host_shutdown_timeout` (30 s by default), all at
/// once, then killed if it is still up. Each keeps `volatile.last_state.power=RUNNING`, so
/// the next start of silod (the host's next boot) starts it again unless `boot.autostart`
/// says no.
pub async fn shutdown_all(c: &Services) -> Result<ShutdownReport, DomainError> {
    c.shutdown.begin();
    let run = running(c).await?;
    let stops = run.into_iter().map(|(name, info)| {
        let c = c.clone();
        async move {
            let timeout = instances::get(&c.db, &name)
                .ok()
                .and_then(|i| expanded(&c, &i).ok())
                .and_then(|cfg| cfg.get("boot.host_shutdown_timeout").cloned())
                .and_then(|v| crate::model::parse::parse_whole(v.trim()).ok())
                .unwrap_or(HOST_SHUTDOWN_TIMEOUT);
            let clean = match claimed_stop(
                &c,
                &name,
                info.init_pid,
                false,
                Some(Duration::from_secs(timeout)),
            )
            .await
            {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(instance = %name, error = %e, "no clean shutdown in time; killing it");
                    // Claimed again (the failed stop gave its claim back), already unplugged.
                    c.stopping.claim(&name, info.init_pid);
                    if let Err(e) = stop_inner(&c, &name, true, None).await {
                        tracing::error!(instance = %name, error = %e, "killing it failed");
                    }
                    false
                }
            };
            // Whenever its watcher wakes, the claim (and the shutdown begun) keep it from
            // recording the instance as stopped by itself: STOPPED would keep it from the
            // next boot.
            after_stop(&c, &name).await;
            if let Err(e) = instances::set_keys(
                &c.db,
                &name,
                &[("volatile.last_state.power", "RUNNING")],
                None,
            ) {
                tracing::warn!(instance = %name, error = %e, "recording that it ran failed; it may not start at the next boot");
            }
            c.events.lifecycle(
                "instance-shutdown",
                &format!("/1.0/instances/{name}"),
                json!({}),
            );
            (name, clean)
        }
    });
    let mut report = ShutdownReport::default();
    for (name, clean) in futures::future::join_all(stops).await {
        if clean {
            report.stopped.push(name);
        } else {
            report.killed.push(name);
        }
    }
    report.stopped.sort();
    report.killed.sort();
    c.shutdown.done.notify_one();
    Ok(report)
}

/// Applies a changed record to a running instance (config set, device add/remove): limits,
/// and nics and proxies hot-plugged or unplugged.
pub async fn apply_live(c: &Services, name: &str, before: &Instance) -> Result<(), DomainError> {
    if !is_running(c, name).await? {
        return Ok(());
    }
    apply_devices_live(c, name, before).await?;
    let i = instances::get(&c.db, name)?;
    let (cfg, devs) = expanded_all(c, &i)?;
    let (old_cfg, old_devs) = expanded_all(c, before)?;
    crate::service::devlxd::notify_changes(c, name, (&old_cfg, &old_devs), (&cfg, &devs));
    let mut l = limits_of(&cfg)?;
    l.disk_io = crate::service::devices::disk_io(&devs)?;
    c.helpers.privileged.set_limits(iname(name)?, l).await?;
    Ok(())
}

/// Resource use of a running instance.
pub async fn stats(c: &Services, name: &str) -> Result<InstanceStats, DomainError> {
    Ok(c.helpers.privileged.stats(iname(name)?).await?)
}

/// Resource use of many running instances in one round trip.
pub async fn stats_many(
    c: &Services,
    names: Vec<String>,
) -> Result<HashMap<String, InstanceStats>, DomainError> {
    let names: Vec<InstanceName> = names.iter().filter_map(|n| iname(n).ok()).collect();
    Ok(c.helpers
        .privileged
        .stats_many(names)
        .await?
        .into_iter()
        .map(|(n, s)| (n.as_str().to_string(), s))
        .collect())
}

/// Disk use of the instance's root volume.
pub async fn disk_usage(c: &Services, i: &Instance) -> Option<u64> {
    let pn = PoolName::new(i.pool.clone()).ok()?;
    let vol = silo_proto::VolumeName::new(i.name.clone()).ok()?;
    c.helpers
        .store
        .volume_usage(pn, silo_proto::store::VolumeKind::Container, vol)
        .await
        .ok()
}

/// Renders the instance's image templates for `trigger` (create, copy, start).
pub async fn render_templates(
    c: &Services,
    i: &Instance,
    cfg: &BTreeMap<String, String>,
    trigger: &str,
) -> Result<(), DomainError> {
    let vars = silo_proto::store::TemplateVars {
        trigger: trigger.into(),
        name: i.name.clone(),
        architecture: i.architecture.clone(),
        privileged: is_true(cfg.get("security.privileged")),
        ephemeral: i.ephemeral,
        config: cfg.clone(),
    };
    c.helpers
        .store
        .render_templates(
            PoolName::new(i.pool.clone()).map_err(|e| DomainError::Internal(e.to_string()))?,
            silo_proto::VolumeName::new(i.name.clone())
                .map_err(|e| DomainError::Internal(e.to_string()))?,
            vars,
        )
        .await?;
    Ok(())
}

/// Hot-plug: unplugs the nics and proxies a change removed or altered, then plugs the new
/// ones, on a running instance.
async fn apply_devices_live(
    c: &Services,
    name: &str,
    before: &Instance,
) -> Result<(), DomainError> {
    let (_, old) = expanded_all(c, before)?;
    apply_device_changes(c, name, before, old).await
}

/// After profile `profile` changed from `old`: every running instance using it takes the
/// change as an edit of its own would (devices plugged and unplugged, limits set), as LXD
/// does. Answers the instances that could not, each with why.
pub async fn apply_profile_live(
    c: &Services,
    profile: &str,
    old: &crate::service::profiles::Profile,
) -> Result<(), DomainError> {
    let mut failed = Vec::new();
    // One question to silo-priv for all, not one per instance.
    let running: HashSet<String> = c
        .helpers
        .privileged
        .running()
        .await?
        .into_iter()
        .map(|r| r.instance.as_str().to_string())
        .collect();
    for i in instances::list_records(&c.db)? {
        if !i.profiles.iter().any(|p| p == profile) || !running.contains(&i.name) {
            continue;
        }
        let r = async {
            let mut profiles = crate::service::expansion::load_profiles(&c.db, &i.profiles)?;
            for p in profiles.iter_mut().filter(|p| p.name == profile) {
                *p = old.clone();
            }
            let (old_cfg, before) = crate::model::profile::expand(&profiles, &i.config, &i.devices);
            apply_device_changes(c, &i.name, &i, before.clone()).await?;
            let (cfg, devs) = expanded_all(c, &i)?;
            crate::service::devlxd::notify_changes(c, &i.name, (&old_cfg, &before), (&cfg, &devs));
            let mut l = limits_of(&cfg)?;
            l.disk_io = crate::service::devices::disk_io(&devs)?;
            c.helpers.privileged.set_limits(iname(&i.name)?, l).await?;
            Ok::<(), DomainError>(())
        }
        .await;
        if let Err(e) = r {
            failed.push(format!("{}: {e}", i.name));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(DomainError::BadRequest(format!(
            "profile {profile:?} was updated, but running instances could not take the change: {}",
            failed.join("; ")
        )))
    }
}

/// Hot-plug from the expanded devices `old` to what the record now expands to.
async fn apply_device_changes(
    c: &Services,
    name: &str,
    before: &Instance,
    old: Devices,
) -> Result<(), DomainError> {
    let n = iname(name)?;
    let i = ensure_hwaddrs(c, name)?;
    let (_, new) = expanded_all(c, &i)?;
    let changed = |t: DeviceType, dn: &str| {
        old.get(dn).filter(|d| DeviceType::of(d) == t)
            != new.get(dn).filter(|d| DeviceType::of(d) == t)
    };
    // Disks: those a change removed or altered come out (deepest first), then the new ones
    // go in (parents first).
    let disk_changed = |m: &silo_proto::privileged::DiskMount, other: &Devices| {
        old.get(m.device.as_str()) != new.get(m.device.as_str())
            || !other.contains_key(m.device.as_str())
    };
    let old_disks = crate::service::devices::mounts(&old)?;
    let new_disks = crate::service::devices::mounts(&new)?;
    for m in old_disks.iter().rev().filter(|m| disk_changed(m, &new)) {
        c.helpers
            .privileged
            .detach_disk(n.clone(), m.path.clone())
            .await?;
    }
    for m in new_disks.into_iter().filter(|m| disk_changed(m, &old)) {
        let device = m.device.as_str().to_string();
        if !c.helpers.privileged.attach_disk(n.clone(), m).await? {
            tracing::info!(instance = %name, device, "optional disk source missing; not attached");
        }
    }
    for (dn, _) in of_type(&old, DeviceType::Host).filter(|(dn, _)| changed(DeviceType::Host, dn)) {
        let dev = silo_proto::DeviceName::new(dn.clone())
            .map_err(|e| DomainError::BadRequest(e.to_string()))?;
        c.helpers
            .privileged
            .detach_host_device(n.clone(), dev)
            .await?;
    }
    for h in crate::service::devices::host_devices(&new)?
        .into_iter()
        .filter(|h| changed(DeviceType::Host, h.device.as_str()))
    {
        c.helpers
            .privileged
            .attach_host_device(n.clone(), h)
            .await?;
    }
    for (dn, _) in of_type(&old, DeviceType::Proxy).filter(|(dn, _)| changed(DeviceType::Proxy, dn))
    {
        networks::stop_proxy(&c.helpers, &n, Some(dn)).await;
    }
    for (dn, d) in of_type(&old, DeviceType::Nic).filter(|(dn, _)| changed(DeviceType::Nic, dn)) {
        let plan = networks::plan_nic(&c.db, dn, d, &before.config)?;
        networks::detach(&c.helpers, &n, &plan).await?;
        networks::forget_nic(&c.helpers, &plan).await;
    }
    for (dn, d) in of_type(&new, DeviceType::Nic).filter(|(dn, _)| changed(DeviceType::Nic, dn)) {
        let mut cfg = i.config.clone();
        // A changed nic gets a new host-side name; the old one went with the unplug.
        cfg.remove(&format!("volatile.{dn}.host_name"));
        let plan = networks::plan_nic(&c.db, dn, d, &cfg)?;
        plug_nic(c, &n, &plan).await?;
    }
    for (dn, d) in of_type(&new, DeviceType::Proxy).filter(|(dn, _)| changed(DeviceType::Proxy, dn))
    {
        networks::start_proxy(&c.helpers, &n, dn, d).await?;
    }
    Ok(())
}
