//! `silo-priv`: namespaces, idmaps, cgroups, pivot_root, init, exec.
//!
//! Instance cgroups live under a root of silo-priv's choosing (`silo-<tag>/<instance>` in
//! every hierarchy), never under a path silod names.

use serde::{Deserialize, Serialize};

use crate::error::HelperResult;
use crate::names::InstanceName;
use crate::HelperHello;

/// How the host's cgroups are laid out, as detected from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupLayout {
    /// Only cgroup v1 controllers (possibly with an empty cgroup2 beside them: "hybrid").
    Legacy {
        /// Controller hierarchies found, e.g. "memory", "pids", "name=systemd".
        hierarchies: Vec<String>,
    },
    /// A single cgroup2 hierarchy with these controllers enabled.
    Unified {
        /// Controllers available at the root.
        controllers: Vec<String>,
    },
}

/// What silo-priv created for an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupInfo {
    /// The instance.
    pub instance: InstanceName,
    /// Absolute directories created, one per hierarchy.
    pub paths: Vec<String>,
}

/// A range of host ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First host id.
    pub start: u64,
    /// How many.
    pub count: u64,
}

impl IdRange {
    /// One past the last id.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.count)
    }
}

/// The host ids instances' user namespaces are carved from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRanges {
    /// Root's ranges, those in both /etc/subuid and /etc/subgid (LXD's default
    /// 1000000:1000000000 when root has no entry), ascending.
    pub root: Vec<IdRange>,
    /// The parts of `root` no other owner holds in /etc/subuid or /etc/subgid, ascending and
    /// each at least one instance's 65536 ids: the only ids silo-priv maps.
    pub usable: Vec<IdRange>,
}

/// The namespace helper's RPC surface.
#[tarpc::service]
pub trait Priv {
    /// Who answers, for `GET /1.0`.
    async fn hello() -> HelperHello;
    /// The cgroup layout silo-priv detected on this host.
    async fn cgroup_layout() -> HelperResult<CgroupLayout>;
    /// Creates an instance's cgroup in every hierarchy. Refuses an existing one.
    async fn create_cgroup(instance: InstanceName) -> HelperResult<CgroupInfo>;
    /// Lists the instances that have a cgroup.
    async fn list_cgroups() -> HelperResult<Vec<InstanceName>>;
    /// Removes an instance's cgroup; refuses while any process is in it.
    async fn delete_cgroup(instance: InstanceName) -> HelperResult<()>;
    /// The id ranges instances are allocated from.
    async fn id_range() -> HelperResult<IdRanges>;
    /// Starts an instance: cgroup, namespaces, idmapped root, init. Answers once init runs,
    /// or with the reason it could not. Refused if it runs or is being started already, if
    /// its id range overlaps that of an instance running or being started, or lies outside
    /// [`IdRanges::usable`], or if it is privileged and the policy does not allow that.
    async fn start(spec: StartSpec) -> HelperResult<RunningInfo>;
    /// Asks init to shut down (SIGRTMIN+3 for systemd, SIGPWR otherwise), or kills it.
    async fn stop(instance: InstanceName, force: bool) -> HelperResult<()>;
    /// Waits up to `timeout_ms` for init to end, and then removes the cgroup; answers how
    /// it ended ([`InitExit::Running`] on timeout).
    async fn wait_stopped(instance: InstanceName, timeout_ms: u64) -> HelperResult<InitExit>;
    /// The instances running now (adopted from an earlier silo-priv too).
    async fn running() -> HelperResult<Vec<RunningInfo>>;
    /// Resource use of a running instance.
    async fn stats(instance: InstanceName) -> HelperResult<InstanceStats>;
    /// Resource use of every running instance in one call (listings), at most 4096 names.
    async fn stats_many(
        instances: Vec<InstanceName>,
    ) -> HelperResult<Vec<(InstanceName, InstanceStats)>>;
    /// Changes a running instance's limits.
    async fn set_limits(instance: InstanceName, limits: Limits) -> HelperResult<()>;
    /// Freezes (or thaws) a running instance's processes, waiting until the kernel says they
    /// are: what makes a snapshot of a running instance crash-consistent, as LXD does.
    async fn freeze(instance: InstanceName, frozen: bool) -> HelperResult<()>;
    /// Runs a command in a running instance, in all its namespaces and its cgroup, with its
    /// capabilities and seccomp filter.
    async fn exec(spec: ExecSpec) -> HelperResult<ExecStarted>;
    /// Waits up to `timeout_ms` for an exec'd command; `Some(status)` once it ended (the exit
    /// code, 128+signal when killed).
    async fn exec_wait(id: u64, timeout_ms: u64) -> HelperResult<Option<i32>>;
    /// Signals an exec'd command.
    async fn exec_signal(id: u64, signal: i32) -> HelperResult<()>;
    /// Connects to the instance's console; the socket arrives on the fd side channel.
    async fn console(instance: InstanceName) -> HelperResult<crate::fdpass::FdTicket>;
    /// Sets the console's terminal size (1 to 1000 columns and rows).
    async fn console_resize(instance: InstanceName, width: u16, height: u16) -> HelperResult<()>;
    /// The tail of the console log (at most `max` bytes).
    async fn console_log(instance: InstanceName, max: u64) -> HelperResult<Vec<u8>>;
    /// Removes what silo-priv keeps for a deleted instance (its console log and records);
    /// refused while it runs.
    async fn forget(instance: InstanceName) -> HelperResult<()>;
    /// Lets a held instance's init exec `/sbin/init` (see [`StartSpec::hold`]).
    async fn release(instance: InstanceName) -> HelperResult<()>;
    /// Whether a disk device's source may be used at all: a host path must lie beneath a
    /// policy `host_paths` entry. Asked when a device is added or edited, before it is stored
    /// (silo-priv asks the same again at every start and hot-plug).
    async fn check_disk_source(source: DiskSource) -> HelperResult<()>;
    /// Hot-plugs a disk into a running instance. Answers `false` when the source is missing
    /// and the disk is not required (nothing mounted).
    async fn attach_disk(instance: InstanceName, disk: DiskMount) -> HelperResult<bool>;
    /// Unplugs the disk mounted at `path` inside a running instance (nothing there is no
    /// error).
    async fn detach_disk(instance: InstanceName, path: crate::types::RelPath) -> HelperResult<()>;
    /// Whether a host device may be given at all: the node (found on the host by silo-priv)
    /// must be one a policy `host_devices` entry names. Answers how many nodes it stands for
    /// now. Asked when a device is added or edited.
    async fn check_host_device(device: HostDevice) -> HelperResult<u32>;
    /// Hot-plugs a host device (its nodes) into a running instance; answers how many nodes
    /// went in (0: none present and not required).
    async fn attach_host_device(instance: InstanceName, device: HostDevice) -> HelperResult<u32>;
    /// Unplugs a host device silo-priv plugged in, by the device's name.
    async fn detach_host_device(
        instance: InstanceName,
        device: crate::DeviceName,
    ) -> HelperResult<()>;
}

/// A device node's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
}

/// Owner and mode of the nodes a host device makes inside an instance (the instance's own ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeOwner {
    /// Owner inside the instance, 0..65535.
    pub uid: u32,
    /// Group inside the instance, 0..65535.
    pub gid: u32,
    /// Permission bits, at most 0o777.
    pub mode: u32,
}

/// Which host device nodes a `unix-char`, `unix-block`, `usb` or `gpu` device stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostNodes {
    /// `unix-char`/`unix-block`: one node, by its host path (`source`) or its numbers.
    Unix {
        /// Character or block.
        kind: NodeKind,
        /// The host node (`source`); else found from `major`/`minor` through /sys/dev.
        source: Option<crate::types::HostPath>,
        /// `major` and `minor`.
        numbers: Option<(u32, u32)>,
        /// Where inside the instance (default: the source's path).
        path: Option<crate::types::RelPath>,
    },
    /// `usb`: every node under /dev/bus/usb of a device with these ids (hex, as lsusb shows).
    Usb {
        /// `vendorid`.
        vendor: Option<String>,
        /// `productid`.
        product: Option<String>,
    },
    /// `gpu` with `gputype=physical`: DRM nodes (and NVIDIA's, when present) of the GPUs these
    /// filters select.
    Gpu {
        /// `vendorid`.
        vendor: Option<String>,
        /// `productid`.
        product: Option<String>,
        /// `id`: the DRM card number.
        id: Option<u32>,
        /// `pci`: the PCI address, e.g. `0000:00:02.0`.
        pci: Option<String>,
    },
}

/// A host device to give an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDevice {
    /// The device's name.
    pub device: crate::DeviceName,
    /// What it stands for.
    pub nodes: HostNodes,
    /// Owner and mode inside.
    pub owner: NodeOwner,
    /// A start fails when no node is present (`required`).
    pub required: bool,
}

impl HostDevice {
    /// Checks what needs no host.
    pub fn validate(&self) -> Result<(), crate::HelperError> {
        let o = &self.owner;
        if o.uid >= 65536 || o.gid >= 65536 || o.mode > 0o777 {
            return Err(crate::HelperError::invalid(
                "device",
                format!(
                    "device {:?}: uid/gid must be 0..65535 and mode at most 0777",
                    self.device.as_str()
                ),
            ));
        }
        let hex = |v: &Option<String>| {
            v.as_ref()
                .is_none_or(|s| s.len() == 4 && s.chars().all(|c| c.is_ascii_hexdigit()))
        };
        match &self.nodes {
            HostNodes::Unix {
                source: None,
                numbers: None,
                ..
            } => Err(crate::HelperError::invalid(
                "device",
                "a unix device needs a source or major and minor",
            )),
            HostNodes::Unix {
                source: None,
                path: None,
                ..
            } => Err(crate::HelperError::invalid(
                "device",
                "a unix device given by major and minor needs a path",
            )),
            HostNodes::Usb { vendor, product }
            | HostNodes::Gpu {
                vendor, product, ..
            } if !hex(vendor) || !hex(product) => Err(crate::HelperError::invalid(
                "device",
                "vendorid and productid are four hex digits",
            )),
            HostNodes::Gpu { pci: Some(p), .. }
                if p.len() > 32
                    || !p
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') =>
            {
                Err(crate::HelperError::invalid(
                    "device",
                    format!("invalid pci address {p:?}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Where a `disk` device's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskSource {
    /// A custom volume: `<state>/storage-pools/<pool>/custom/<volume>`, found by silo-priv
    /// beneath its own fd. Its files keep the instance's own ids on disk, as root volumes do,
    /// so every instance it is attached to sees the same owners.
    Volume {
        /// The pool.
        pool: crate::PoolName,
        /// The custom volume.
        volume: crate::VolumeName,
    },
    /// A host directory or file, allowed only beneath a policy `host_paths` entry and opened
    /// without following a symlink. Host ids show as the same ids inside, except host root's,
    /// which the instance sees as nobody and can never write as.
    Host(crate::types::HostPath),
}

impl std::fmt::Display for DiskSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskSource::Volume { pool, volume } => {
                write!(
                    f,
                    "custom volume {:?} of pool {:?}",
                    volume.as_str(),
                    pool.as_str()
                )
            }
            DiskSource::Host(p) => write!(f, "host path {p}"),
        }
    }
}

/// How a disk's mount propagates mount events (LXD's `propagation`). A mount shared with the
/// host is never offered: container root's mounts would reach the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    /// `private`/`rprivate` (LXD's default): no events either way.
    #[default]
    Private,
    /// `slave`/`rslave`: mounts the host makes beneath the source appear inside, never the
    /// other way.
    Slave,
}

/// A `disk` device to mount in an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskMount {
    /// The device's name (for messages).
    pub device: crate::DeviceName,
    /// Where the data comes from.
    pub source: DiskSource,
    /// Where inside the instance, relative to its root; parents are created as container root
    /// and resolved inside the instance (a symlink there can never lead out).
    pub path: crate::types::RelPath,
    /// Mounted read-only.
    pub readonly: bool,
    /// `recursive`: a host path's submounts come along.
    pub recursive: bool,
    /// `required=false` lets a missing source be skipped.
    pub required: bool,
    /// Mount propagation.
    pub propagation: Propagation,
}

/// An instance's resource limits, as silo-priv writes them into its cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (`limits.memory`).
    pub memory: Option<u64>,
    /// CPUs the instance may run on, as a cpuset list "0-1,3" (`limits.cpu`).
    pub cpus: Option<String>,
    /// Maximum number of processes (`limits.processes`).
    pub processes: Option<u64>,
}

impl Limits {
    /// Checks the values are ones a cgroup can take.
    pub fn validate(&self) -> Result<(), crate::HelperError> {
        if let Some(m) = self.memory {
            if m < (4 << 20) {
                return Err(crate::HelperError::invalid(
                    "limits.memory",
                    format!("{m} bytes is below the 4MiB an instance needs"),
                ));
            }
        }
        if let Some(p) = self.processes {
            if p == 0 || p > 4_194_304 {
                return Err(crate::HelperError::invalid(
                    "limits.processes",
                    format!("{p} is not between 1 and 4194304"),
                ));
            }
        }
        if let Some(c) = &self.cpus {
            parse_cpuset(c).map_err(|r| crate::HelperError::invalid("limits.cpu", r))?;
        }
        Ok(())
    }
}

/// Parses a cpuset list ("0-1,3") into CPU numbers, refusing anything else.
pub fn parse_cpuset(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    if s.is_empty() || s.len() > 256 {
        return Err(format!("{s:?} is not a CPU list like \"0-1,3\""));
    }
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a
            .parse()
            .map_err(|_| format!("{s:?} is not a CPU list like \"0-1,3\""))?;
        let b: u32 = b
            .parse()
            .map_err(|_| format!("{s:?} is not a CPU list like \"0-1,3\""))?;
        if a > b || b >= 4096 {
            return Err(format!("{s:?}: bad CPU range {part:?}"));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// What silod asks for when it starts an instance. The rootfs is not named by path: silo-priv
/// finds `<state>/storage-pools/<pool>/containers/<instance>` itself, beneath its own fd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartSpec {
    /// The instance (also its hostname).
    pub instance: InstanceName,
    /// The pool holding its root volume.
    pub pool: crate::PoolName,
    /// First host id of its 65536-id range; `None` asks for a privileged container (no user
    /// namespace), which the root policy must allow.
    pub idmap_base: Option<u64>,
    /// Limits applied before init runs.
    pub limits: Limits,
    /// Disks mounted before init runs, in order (a parent path before what lies beneath it).
    pub disks: Vec<DiskMount>,
    /// Host devices given before init runs.
    pub devices: Vec<HostDevice>,
    /// Hold init just before it execs `/sbin/init` until [`Priv::release`] (or 60 s, after
    /// which it gives up): the time for silod to plug in the instance's nics, so that the
    /// image's network configuration finds them at boot.
    pub hold: bool,
}

/// How an instance's init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitExit {
    /// Still running.
    Running,
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal (SIGHUP from a reboot in the container, SIGINT from a halt or
    /// poweroff, SIGKILL from a forced stop).
    Signaled(i32),
    /// The start failed before init ran; the monitor's reason.
    StartFailed(String),
    /// Gone, and the monitor left no record (the host rebooted, or the record was lost).
    Unknown,
}

/// A running (or just stopped) instance as silo-priv tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningInfo {
    /// The instance.
    pub instance: InstanceName,
    /// Its init's pid on the host.
    pub init_pid: u32,
    /// The monitor's pid on the host.
    pub monitor_pid: u32,
    /// Unix time init was started.
    pub started_at: i64,
    /// Its id range base (`None` = privileged).
    pub idmap_base: Option<u64>,
    /// Whether init is systemd (stopped with SIGRTMIN+3 rather than SIGPWR).
    pub systemd: bool,
}

impl RunningInfo {
    /// The line the monitor writes to `<state>/runtime/<instance>/init` (root's, 0600) once
    /// init runs; silo-priv adopts from it and silo-net finds the instance's namespaces by it.
    /// `start_time` is init's start time in clock ticks (field 22 of /proc/<pid>/stat), which
    /// tells a recycled pid from the instance's init.
    pub fn record_line(&self, start_time: u64) -> String {
        format!(
            "{} {} {} {} {} {}\n",
            self.init_pid,
            self.monitor_pid,
            start_time,
            self.started_at,
            self.idmap_base.map_or("-".to_string(), |b| b.to_string()),
            u8::from(self.systemd)
        )
    }

    /// Parses [`RunningInfo::record_line`]'s output: the info and init's start time.
    pub fn parse_record(name: &InstanceName, s: &str) -> Option<(RunningInfo, u64)> {
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() != 6 {
            return None;
        }
        Some((
            RunningInfo {
                instance: name.clone(),
                init_pid: f[0].parse().ok()?,
                monitor_pid: f[1].parse().ok()?,
                started_at: f[3].parse().ok()?,
                idmap_base: if f[4] == "-" {
                    None
                } else {
                    Some(f[4].parse().ok()?)
                },
                systemd: f[5] == "1",
            },
            f[2].parse().ok()?,
        ))
    }
}

/// Per-interface counters, read from the instance's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCounters {
    /// Interface name inside the instance.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// MTU.
    pub mtu: u64,
    /// Hardware address.
    pub hwaddr: String,
    /// "up" or "down".
    pub state: String,
    /// Addresses as (family "inet"/"inet6", address, netmask bits, scope).
    pub addresses: Vec<(String, String, u8, String)>,
}

/// A running instance's resource use, read from its cgroup and namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStats {
    /// Init's host pid.
    pub pid: u32,
    /// Processes in its cgroup.
    pub processes: u64,
    /// CPU time used, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, bytes.
    pub memory: u64,
    /// Peak memory use, bytes.
    pub memory_peak: u64,
    /// Swap in use, bytes.
    pub swap: u64,
    /// Interfaces.
    pub net: Vec<NetCounters>,
}

/// Largest total size of an exec's command and environment.
pub const MAX_EXEC_BYTES: usize = 128 * 1024;

/// A command to run inside a running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The instance.
    pub instance: InstanceName,
    /// argv; argv[0] is looked up in PATH inside the instance when it has no '/'.
    pub command: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the instance ("" = the user's home or /).
    pub cwd: String,
    /// User id inside the instance.
    pub uid: u32,
    /// Group id inside the instance.
    pub gid: u32,
    /// With a terminal (one pty for stdin/stdout/stderr) or with three pipes.
    pub interactive: bool,
    /// Terminal size.
    pub width: u16,
    /// Terminal size.
    pub height: u16,
}

impl ExecSpec {
    /// Checks what the kernel and the container would refuse anyway, and sizes.
    pub fn validate(&self) -> Result<(), crate::HelperError> {
        fn inv(w: &str, r: impl Into<String>) -> crate::HelperError {
            crate::HelperError::invalid(w, r)
        }
        if self.command.is_empty() || self.command[0].is_empty() {
            return Err(inv("command", "no command given"));
        }
        let mut total = 0usize;
        for a in &self.command {
            if a.contains('\0') {
                return Err(inv("command", "an argument contains a NUL byte"));
            }
            total += a.len() + 1;
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(inv(
                    "environment",
                    format!("bad variable name or value {k:?}"),
                ));
            }
            total += k.len() + v.len() + 2;
        }
        if total > MAX_EXEC_BYTES {
            return Err(inv(
                "command",
                format!("command and environment take {total} bytes (at most {MAX_EXEC_BYTES})"),
            ));
        }
        if self.cwd.contains('\0') || self.cwd.len() > 4096 {
            return Err(inv("cwd", "not a usable path"));
        }
        if self.uid >= 65536 || self.gid >= 65536 {
            return Err(inv(
                "user",
                format!(
                    "uid {} / gid {} is not mapped in the instance (0 to 65535 are)",
                    self.uid, self.gid
                ),
            ));
        }
        Ok(())
    }
}

/// What silod gets back from `exec`: fds on the side channel, and an id to wait on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStarted {
    /// Names this exec in `exec_wait` and `exec_signal`.
    pub id: u64,
    /// The process's host pid.
    pub pid: u32,
    /// One fd (the pty master) when interactive; else stdin (write end), stdout and stderr
    /// (read ends).
    pub fds: crate::fdpass::FdTicket,
}

/// Signals silod may send to an exec'd process or an instance's init.
pub fn signal_allowed(sig: i32) -> bool {
    (1..=64).contains(&sig) && sig != 32 && sig != 33
}
