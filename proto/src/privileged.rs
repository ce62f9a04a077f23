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
    /// Waits up to `timeout_ms` for the init of any of `instances` (at most 65536) to end;
    /// answers those whose init has ended or that do not run, without cleaning up after them
    /// ([`Priv::wait_stopped`] does that). One call follows every running instance, so
    /// the requests in flight do not grow with their number.
    async fn wait_any_stopped(
        instances: Vec<InstanceName>,
        timeout_ms: u64,
    ) -> HelperResult<Vec<InstanceName>>;
    /// The instances running now (adopted from an earlier silo-priv too).
    async fn running() -> HelperResult<Vec<RunningInfo>>;
    /// One instance's record if it runs: what a request about one instance asks, without
    /// reading every running instance's freezer state.
    async fn running_one(instance: InstanceName) -> HelperResult<Option<RunningInfo>>;
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
    /// A new listening socket for the running instance's `/dev/lxd/sock` (the listener
    /// arrives on the fd side channel). silo-priv binds it in the instance's root-owned
    /// `devlxd` directory, which the instance has mounted read-only at `/dev/lxd` since its
    /// start with [`StartSpec::devlxd`]; an earlier socket there is replaced, so a restarted
    /// silod serves the same instance again. Refused for an instance started without it.
    async fn devlxd_listener(instance: InstanceName) -> HelperResult<crate::fdpass::FdTicket>;
    /// Empties the instance's console log (running or not; `DELETE .../console`). Only a
    /// regular, root-owned `console.log` in its root-owned runtime directory is truncated.
    async fn console_log_clear(instance: InstanceName) -> HelperResult<()>;
    /// The files API inside a running instance, where it sees its files (its own mounts:
    /// `/run`, `/dev/shm`, a tmpfs `/tmp`...): a forked, non-dumpable child in its user and
    /// mount namespaces, as container root, resolving beneath its `/`
    /// (`silo_proto::jail::files`). A file's bytes come through a pipe on the fd side
    /// channel. Refused when it does not run.
    async fn file_get(instance: InstanceName, path: String)
        -> HelperResult<crate::store::FileMeta>;
    /// Creates or replaces `path` in a running instance as its root; for a file, a socket on
    /// the fd side channel takes the bytes and answers `ok` or `error: ...` (as silo-store's).
    async fn file_put(
        instance: InstanceName,
        path: String,
        put: crate::store::FilePut,
    ) -> HelperResult<Option<crate::fdpass::FdTicket>>;
    /// Removes a file, symlink or empty directory in a running instance.
    async fn file_delete(instance: InstanceName, path: String) -> HelperResult<()>;
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

/// What a disk's I/O limits are on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskIoTarget {
    /// The instance's root volume in this pool.
    Root(crate::PoolName),
    /// A disk device's source.
    Source(DiskSource),
}

/// One disk's I/O limits (per second; `None`: no limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskIo {
    /// Whose device.
    pub target: DiskIoTarget,
    /// Bytes read.
    pub read_bps: Option<u64>,
    /// Bytes written.
    pub write_bps: Option<u64>,
    /// Read operations.
    pub read_iops: Option<u64>,
    /// Write operations.
    pub write_iops: Option<u64>,
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
    /// `limits.cpu.allowance`: a share of CPU time under contention, or a hard time cap.
    pub cpu_allowance: Option<CpuAllowance>,
    /// `limits.cpu.priority`, 0 to 10 (10, the default, is the most CPU time).
    pub cpu_priority: Option<u8>,
    /// `limits.memory.enforce=soft`: `memory` is a soft limit (v1 `memory.soft_limit_in_bytes`,
    /// cgroup2 `memory.high`) instead of a hard one.
    pub memory_soft: bool,
    /// `limits.memory.swap`: `Some(false)` forbids swapping the instance's memory out.
    pub memory_swap: Option<bool>,
    /// `limits.memory.swap.priority`, 0 to 10 (v1 `memory.swappiness` = 70 - priority).
    pub memory_swap_priority: Option<u8>,
    /// `limits.hugepages.<size>`: bytes of huge pages of that size, at most one per size.
    pub hugepages: Vec<(HugePageSize, u64)>,
    /// `limits.disk.priority`, 0 to 10 (blkio/io weight = priority × 100, 0 → 10).
    pub disk_priority: Option<u8>,
    /// `limits.read`/`limits.write`/`limits.max` of disk devices (the root disk's too): the
    /// blkio throttle of the block device beneath each source, summed per device.
    pub disk_io: Vec<DiskIo>,
}

/// `limits.cpu.allowance` as LXD takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpuAllowance {
    /// `50%`: this share of CPU time when the host is busy (cpu.shares / cpu.weight), 1 to 100.
    Percent(u8),
    /// `25ms/100ms`: at most `quota_us` of CPU time in every `period_us` (CFS bandwidth).
    Time {
        /// Microseconds of CPU time per period (1 ms up to 1024 periods, i.e. 1024 CPUs).
        quota_us: u64,
        /// The period in microseconds, 1 ms to 1 s as the kernel takes it.
        period_us: u64,
    },
}

impl CpuAllowance {
    /// Parses LXD's syntax: `<1-100>%` or `<quota>ms/<period>ms`.
    pub fn parse(v: &str) -> Result<CpuAllowance, String> {
        let bad = || format!("{v:?} is not a percentage like 50% or a time like 25ms/100ms");
        if let Some(p) = v.strip_suffix('%') {
            let a = CpuAllowance::Percent(p.parse().map_err(|_| bad())?);
            a.validate()?;
            return Ok(a);
        }
        let (q, p) = v.split_once('/').ok_or_else(bad)?;
        let ms = |s: &str| -> Result<u64, String> {
            s.strip_suffix("ms")
                .unwrap_or(s)
                .parse::<u64>()
                .map_err(|_| bad())
        };
        let a = CpuAllowance::Time {
            quota_us: ms(q)?.checked_mul(1000).ok_or_else(bad)?,
            period_us: ms(p)?.checked_mul(1000).ok_or_else(bad)?,
        };
        a.validate()?;
        Ok(a)
    }

    /// What the kernel takes: 1% to 100%; a period of 1 ms to 1 s, a quota of at least 1 ms
    /// and at most 1024 periods.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            CpuAllowance::Percent(p) if (1..=100).contains(&p) => Ok(()),
            CpuAllowance::Percent(p) => Err(format!("{p}% is not between 1% and 100%")),
            CpuAllowance::Time {
                quota_us,
                period_us,
            } => {
                if !(1000..=1_000_000).contains(&period_us) {
                    return Err(format!(
                        "a period of {}ms is not between 1ms and 1000ms",
                        period_us / 1000
                    ));
                }
                if quota_us < 1000 || quota_us > period_us.saturating_mul(1024) {
                    return Err(format!(
                        "a quota of {}ms is not between 1ms and 1024 periods",
                        quota_us / 1000
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The huge page sizes LXD has keys for (`limits.hugepages.64KB` ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HugePageSize {
    /// 64 KiB (arm64).
    Size64KB,
    /// 1 MiB (s390x).
    Size1MB,
    /// 2 MiB (x86-64, arm64).
    Size2MB,
    /// 1 GiB (x86-64, arm64).
    Size1GB,
}

impl HugePageSize {
    /// Every size, in LXD's order.
    pub const ALL: [HugePageSize; 4] = [
        HugePageSize::Size64KB,
        HugePageSize::Size1MB,
        HugePageSize::Size2MB,
        HugePageSize::Size1GB,
    ];

    /// The name in the key and in the hugetlb controller's files ("2MB").
    pub fn suffix(self) -> &'static str {
        match self {
            HugePageSize::Size64KB => "64KB",
            HugePageSize::Size1MB => "1MB",
            HugePageSize::Size2MB => "2MB",
            HugePageSize::Size1GB => "1GB",
        }
    }

    /// The configuration key.
    pub fn key(self) -> &'static str {
        match self {
            HugePageSize::Size64KB => "limits.hugepages.64KB",
            HugePageSize::Size1MB => "limits.hugepages.1MB",
            HugePageSize::Size2MB => "limits.hugepages.2MB",
            HugePageSize::Size1GB => "limits.hugepages.1GB",
        }
    }

    /// The size whose key this is.
    pub fn of_key(k: &str) -> Option<HugePageSize> {
        HugePageSize::ALL.into_iter().find(|s| s.key() == k)
    }
}

/// The most bytes of huge pages a limit may name (2^62: far beyond any host, and clear of the
/// kernel's signed page counters).
pub const MAX_HUGEPAGES_BYTES: u64 = 1 << 62;

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
        if let Some(a) = &self.cpu_allowance {
            a.validate()
                .map_err(|r| crate::HelperError::invalid("limits.cpu.allowance", r))?;
        }
        for (key, p) in [
            ("limits.cpu.priority", self.cpu_priority),
            ("limits.memory.swap.priority", self.memory_swap_priority),
            ("limits.disk.priority", self.disk_priority),
        ] {
            if let Some(p) = p.filter(|p| *p > 10) {
                return Err(crate::HelperError::invalid(
                    key,
                    format!("{p} is not between 0 and 10"),
                ));
            }
        }
        for (i, (size, bytes)) in self.hugepages.iter().enumerate() {
            if self.hugepages[..i].iter().any(|(s, _)| s == size) {
                return Err(crate::HelperError::invalid(size.key(), "given twice"));
            }
            if *bytes > MAX_HUGEPAGES_BYTES {
                return Err(crate::HelperError::invalid(
                    size.key(),
                    format!("{bytes} bytes is more than {MAX_HUGEPAGES_BYTES}"),
                ));
            }
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
    /// How many ids from `idmap_base` the instance maps (`security.idmap.size`): 65536, or
    /// a multiple of it up to [`MAX_IDMAP_SIZE`] for an instance that runs containers of its
    /// own (`security.nesting`).
    pub idmap_size: u64,
    /// `security.nesting`: the instance may run containers of its own (a fully visible
    /// proc and sysfs at /dev/.lxc, as LXD gives it).
    pub nesting: bool,
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
    /// `raw.idmap`: host ids mapped into the instance in place of its own range's (holes
    /// punched in the `0 <base> 65536` map, as LXD does). Only host ids the root policy's
    /// `raw_idmap_host_ids` lists; silo-priv checks them against every subordinate range.
    pub raw_idmap: Vec<RawIdmapEntry>,
    /// `security.devlxd`: mount the instance's own guest-API directory (where
    /// [`Priv::devlxd_listener`] binds its socket) read-only at `/dev/lxd`.
    pub devlxd: bool,
}

/// Which ids a `raw.idmap` line maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdKind {
    /// `uid`.
    Uid,
    /// `gid`.
    Gid,
    /// `both`.
    Both,
}

impl IdKind {
    /// Whether the line maps user ids (`uid == true`) or group ids.
    pub fn maps(self, uid: bool) -> bool {
        matches!(
            (self, uid),
            (IdKind::Both, _) | (IdKind::Uid, true) | (IdKind::Gid, false)
        )
    }
}

/// One `raw.idmap` line: host ids `host..host+count` are the instance's
/// `container..container+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawIdmapEntry {
    /// uid, gid or both.
    pub kind: IdKind,
    /// First host id.
    pub host: u64,
    /// First id in the instance.
    pub container: u64,
    /// How many.
    pub count: u64,
}

/// Most `raw.idmap` lines (each punches one hole: the kernel takes 340 map lines).
pub const MAX_RAW_IDMAP_ENTRIES: usize = 32;

/// Parses LXD's `raw.idmap`: lines `uid|gid|both <host> <container>`, each id a number or an
/// inclusive range `1000-1002` (both sides the same size); blank lines are skipped. The result
/// also passes [`check_raw_idmap`].
pub fn parse_raw_idmap(text: &str) -> Result<Vec<RawIdmapEntry>, String> {
    let range = |s: &str| -> Result<(u64, u64), String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let a: u64 = a
            .parse()
            .map_err(|_| format!("{s:?} is not an id or a range like 1000-1002"))?;
        let b: u64 = b
            .parse()
            .map_err(|_| format!("{s:?} is not an id or a range like 1000-1002"))?;
        if b < a {
            return Err(format!("range {s:?} ends before it starts"));
        }
        Ok((a, b - a + 1))
    };
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [kind, host, container] = f[..] else {
            return Err(format!(
                "line {line:?} is not \"uid|gid|both <host id> <instance id>\""
            ));
        };
        let kind = match kind {
            "uid" => IdKind::Uid,
            "gid" => IdKind::Gid,
            "both" => IdKind::Both,
            k => return Err(format!("line {line:?}: {k:?} is not uid, gid or both")),
        };
        let ((host, n), (container, m)) = (range(host)?, range(container)?);
        if n != m {
            return Err(format!(
                "line {line:?} maps {n} host ids onto {m} instance ids"
            ));
        }
        out.push(RawIdmapEntry {
            kind,
            host,
            container,
            count: n,
        });
    }
    check_raw_idmap(&out)?;
    Ok(out)
}

/// The rules every `raw.idmap` keeps whatever the policy says: at most
/// [`MAX_RAW_IDMAP_ENTRIES`] lines; instance ids inside 1..65535 (container root stays the
/// instance's own: its console, cgroup and devices are chowned to it); never host id 0 nor
/// the kernel's "no id"; no id mapped twice on either side.
pub fn check_raw_idmap(entries: &[RawIdmapEntry]) -> Result<(), String> {
    if entries.len() > MAX_RAW_IDMAP_ENTRIES {
        return Err(format!(
            "{} lines; at most {MAX_RAW_IDMAP_ENTRIES}",
            entries.len()
        ));
    }
    for e in entries {
        if e.count == 0 {
            return Err("a line maps no ids".into());
        }
        let cend = e.container.saturating_add(e.count);
        if e.container == 0 || cend > 65536 {
            return Err(format!(
                "instance ids {}-{} are not inside 1-65535 (container root keeps its own id)",
                e.container,
                cend - 1
            ));
        }
        let hend = e.host.saturating_add(e.count);
        if e.host == 0 || hend > u64::from(u32::MAX) {
            return Err(format!(
                "host ids {}-{} include host root (0) or lie beyond 4294967294",
                e.host,
                hend.saturating_sub(1)
            ));
        }
    }
    for uid in [true, false] {
        let of: Vec<&RawIdmapEntry> = entries.iter().filter(|e| e.kind.maps(uid)).collect();
        for (i, a) in of.iter().enumerate() {
            for b in &of[..i] {
                let over = |x: u64, y: u64| x < y + b.count && y < x + a.count;
                if over(a.host, b.host) || over(a.container, b.container) {
                    return Err(format!(
                        "{} {}-{} and {}-{} overlap another line's",
                        if uid { "uids" } else { "gids" },
                        a.host,
                        a.host + a.count - 1,
                        a.container,
                        a.container + a.count - 1
                    ));
                }
            }
        }
    }
    Ok(())
}

/// One line of a uid_map or gid_map: instance ids `container..container+count` are host ids
/// `host..host+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapLine {
    /// First id in the instance.
    pub container: u64,
    /// First host id.
    pub host: u64,
    /// How many.
    pub count: u64,
}

/// The instance's uid (or gid) map: its 65536 ids at `base`, with each `raw.idmap` line's
/// instance ids taken from the host ids it names instead (the ids at `base` they replace are
/// left unmapped, as in LXD). `raw` must have passed [`check_raw_idmap`].
pub fn id_map(base: u64, size: u64, raw: &[RawIdmapEntry], uid: bool) -> Vec<IdMapLine> {
    let mut holes: Vec<&RawIdmapEntry> = raw.iter().filter(|e| e.kind.maps(uid)).collect();
    holes.sort_by_key(|e| e.container);
    let mut out = Vec::new();
    let mut next = 0u64;
    for e in holes {
        if e.container > next {
            out.push(IdMapLine {
                container: next,
                host: base + next,
                count: e.container - next,
            });
        }
        out.push(IdMapLine {
            container: e.container,
            host: e.host,
            count: e.count,
        });
        next = e.container + e.count;
    }
    if next < size {
        out.push(IdMapLine {
            container: next,
            host: base + next,
            count: size - next,
        });
    }
    out
}

/// The host id an instance id has under `map`.
pub fn host_id(map: &[IdMapLine], id: u64) -> Option<u64> {
    map.iter()
        .find(|l| l.container <= id && id < l.container + l.count)
        .map(|l| l.host + (id - l.container))
}

/// The text the kernel takes in `/proc/<pid>/uid_map`.
pub fn id_map_text(map: &[IdMapLine]) -> String {
    map.iter()
        .map(|l| format!("{} {} {}\n", l.container, l.host, l.count))
        .collect()
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
    /// How many ids its range holds (65536 unless `security.idmap.size` asked for more).
    pub idmap_size: u64,
    /// Whether init is systemd (stopped with SIGRTMIN+3 rather than SIGPWR).
    pub systemd: bool,
    /// Whether its processes are frozen (`lxc pause`): read from the cgroup freezer each time
    /// silo-priv answers, never recorded, so it stays true across a restart of silod or
    /// silo-priv.
    pub frozen: bool,
}

impl RunningInfo {
    /// The line the monitor writes to `<state>/runtime/<instance>/init` (root's, 0600) once
    /// init runs; silo-priv adopts from it and silo-net finds the instance's namespaces by it.
    /// `start_time` is init's start time in clock ticks (field 22 of /proc/<pid>/stat), which
    /// tells a recycled pid from the instance's init.
    pub fn record_line(&self, start_time: u64) -> String {
        format!(
            "{} {} {} {} {} {} {}\n",
            self.init_pid,
            self.monitor_pid,
            start_time,
            self.started_at,
            self.idmap_base.map_or("-".to_string(), |b| b.to_string()),
            u8::from(self.systemd),
            self.idmap_size
        )
    }

    /// Parses [`RunningInfo::record_line`]'s output: the info and init's start time.
    pub fn parse_record(name: &InstanceName, s: &str) -> Option<(RunningInfo, u64)> {
        let f: Vec<&str> = s.split_whitespace().collect();
        // Six fields from monitors of before `security.idmap.size` (65536 ids each).
        if f.len() != 6 && f.len() != 7 {
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
                frozen: false,
                idmap_size: match f.get(6) {
                    Some(n) => n.parse().ok()?,
                    None => 65536,
                },
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
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
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
    /// CPU time split by mode: one entry per CPU on cgroup v1 (`cpuacct.usage_all`), one
    /// entry for CPU 0 on cgroup2 (`cpu.stat` has no per-CPU split), as LXD reports it.
    pub cpu_times: Vec<CpuTimes>,
    /// The memory controller's `memory.stat` figures LXD exports (none without one).
    pub memory_stat: Option<MemoryStat>,
    /// The group's memory limit in bytes (None: unlimited).
    pub memory_limit: Option<u64>,
    /// Block I/O per device, from the blkio (v1) or io (v2) controller.
    pub io: Vec<BlockIo>,
}

/// One CPU's time by mode, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTimes {
    /// The CPU's number.
    pub cpu: u32,
    /// Time in user mode.
    pub user_ns: u64,
    /// Time in kernel mode.
    pub system_ns: u64,
}

/// A memory cgroup's `memory.stat`, in bytes (v1 `total_*` figures, v2 names mapped as LXD
/// maps them: `file` is the cache, `anon` has no v1 `rss` twin and stays 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStat {
    /// Anonymous memory on the active LRU list.
    pub active_anon: u64,
    /// File-backed memory on the active LRU list.
    pub active_file: u64,
    /// Anonymous memory on the inactive LRU list.
    pub inactive_anon: u64,
    /// File-backed memory on the inactive LRU list.
    pub inactive_file: u64,
    /// Unevictable memory.
    pub unevictable: u64,
    /// Memory queued for writeback.
    pub writeback: u64,
    /// Dirty memory.
    pub dirty: u64,
    /// Mapped files.
    pub mapped: u64,
    /// Anonymous and swap cache memory (v1 only).
    pub rss: u64,
    /// Shared memory.
    pub shmem: u64,
    /// Page cache.
    pub cache: u64,
}

/// Longest block device name silo-priv reports; longer or odd names are sent as `maj:min`.
pub const MAX_DISK_NAME: usize = 32;

/// Block I/O of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockIo {
    /// The device's kernel name (`vda`, `nvme0n1`), or `maj:min` when it has none.
    pub device: String,
    /// Bytes read.
    pub read_bytes: u64,
    /// Reads completed.
    pub reads: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Writes completed.
    pub writes: u64,
}

/// Most ids one instance may map: 64 instances' worth, room for a nested silo or LXD.
pub const MAX_IDMAP_SIZE: u64 = 64 * 65536;

/// Checks an id range size: a whole number of 65536-id blocks, at most [`MAX_IDMAP_SIZE`].
pub fn check_idmap_size(size: u64) -> Result<(), crate::HelperError> {
    if size < 65536 || !size.is_multiple_of(65536) || size > MAX_IDMAP_SIZE {
        return Err(crate::HelperError::invalid(
            "security.idmap.size",
            format!("{size} ids: must be a multiple of 65536 from 65536 to {MAX_IDMAP_SIZE}"),
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_allowance_parses_as_lxd() {
        assert_eq!(CpuAllowance::parse("50%"), Ok(CpuAllowance::Percent(50)));
        assert_eq!(
            CpuAllowance::parse("25ms/100ms"),
            Ok(CpuAllowance::Time {
                quota_us: 25_000,
                period_us: 100_000
            })
        );
        assert_eq!(
            CpuAllowance::parse("200ms/100ms"),
            Ok(CpuAllowance::Time {
                quota_us: 200_000,
                period_us: 100_000
            })
        );
        for bad in [
            "0%",
            "101%",
            "50",
            "x%",
            "0ms/100ms",
            "1ms/2000ms",
            "5ms/0ms",
            "-1ms/10ms",
        ] {
            assert!(CpuAllowance::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_refuse_out_of_range_values() {
        let l = Limits {
            cpu_priority: Some(11),
            ..Limits::default()
        };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("limits.cpu.priority"));
        let l = Limits {
            disk_priority: Some(200),
            ..Limits::default()
        };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("limits.disk.priority"));
        let l = Limits {
            hugepages: vec![(HugePageSize::Size2MB, 1), (HugePageSize::Size2MB, 2)],
            ..Limits::default()
        };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("limits.hugepages.2MB"));
        let l = Limits {
            cpu_allowance: Some(CpuAllowance::Time {
                quota_us: 10,
                period_us: 100_000,
            }),
            ..Limits::default()
        };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("limits.cpu.allowance"));
        assert_eq!(
            HugePageSize::of_key("limits.hugepages.1GB"),
            Some(HugePageSize::Size1GB)
        );
    }

    #[test]
    fn raw_idmap_parses_lxd_syntax_and_punches_holes() {
        let r = parse_raw_idmap("both 1000 1000\n\nuid 2000-2002 50-52\n").expect("parses");
        assert_eq!(
            r,
            vec![
                RawIdmapEntry {
                    kind: IdKind::Both,
                    host: 1000,
                    container: 1000,
                    count: 1
                },
                RawIdmapEntry {
                    kind: IdKind::Uid,
                    host: 2000,
                    container: 50,
                    count: 3
                }
            ]
        );
        let base = 1_000_000;
        assert_eq!(
            id_map_text(&id_map(base, 65536, &r, true)),
            "0 1000000 50\n50 2000 3\n53 1000053 947\n1000 1000 1\n1001 1001001 64535\n"
        );
        let g = id_map(base, 65536, &r, false);
        assert_eq!(
            id_map_text(&g),
            "0 1000000 1000\n1000 1000 1\n1001 1001001 64535\n"
        );
        assert_eq!(host_id(&g, 5), Some(base + 5));
        assert_eq!(host_id(&g, 1000), Some(1000));
        assert_eq!(host_id(&g, 70000), None);
        assert_eq!(
            id_map_text(&id_map(base, 65536, &[], true)),
            "0 1000000 65536\n"
        );
        // The last instance id can be mapped: no empty tail line.
        let end = parse_raw_idmap("uid 3000 65535").expect("parses");
        assert_eq!(
            id_map_text(&id_map(base, 65536, &end, true)),
            "0 1000000 65535\n65535 3000 1\n"
        );
    }

    #[test]
    fn raw_idmap_refuses_what_no_policy_may_allow() {
        for (bad, why) in [
            ("both 0 1000", "host root"),
            ("both 1000 0", "container root"),
            ("uid 1000 65536", "1-65535"),
            ("uid 1000-1001 5", "maps 2 host ids onto 1"),
            ("uid 1000 1000\nboth 1000 2000", "overlap"),
            ("gid 1000 1000\nboth 2000 1000", "overlap"),
            ("user 1000 1000", "not uid, gid or both"),
            ("uid 1000", "not \"uid|gid|both"),
            ("uid 1002-1000 5-7", "ends before"),
            ("uid 4294967295 5", "beyond"),
        ] {
            let e = parse_raw_idmap(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        // uid and gid lines may name the same ids.
        assert!(parse_raw_idmap("uid 1000 1000\ngid 1000 1000").is_ok());
        let many: String = (0..33)
            .map(|i| format!("uid {} {}\n", 1000 + i, 1 + i))
            .collect();
        assert!(parse_raw_idmap(&many).unwrap_err().contains("at most"));
    }
}
