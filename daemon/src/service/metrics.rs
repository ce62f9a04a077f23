//! `GET /1.0/metrics`: LXD's Prometheus text, so dashboards and alert rules written for LXD
//! read silo's. Instances' figures come from silo-priv's stats (cgroups, and counters read in
//! each instance's network namespace) and the root volume's pool; the daemon's own from
//! /proc/self. Only what silo measures is emitted: no sample stands in for a figure it lacks.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use silo_proto::privileged::InstanceStats;
use silo_proto::store::PoolInfo;
use silo_proto::PoolName;

use crate::service::{instances, runtime, DomainError, Services};

/// Every metric silo emits, in LXD's order (its `MetricType` numbering, then the daemon's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// lxd_cpu_seconds_total
    CpuSecondsTotal,
    /// lxd_disk_read_bytes_total
    DiskReadBytesTotal,
    /// lxd_disk_reads_completed_total
    DiskReadsCompletedTotal,
    /// lxd_disk_written_bytes_total
    DiskWrittenBytesTotal,
    /// lxd_disk_writes_completed_total
    DiskWritesCompletedTotal,
    /// lxd_filesystem_avail_bytes
    FilesystemAvailBytes,
    /// lxd_filesystem_free_bytes
    FilesystemFreeBytes,
    /// lxd_filesystem_size_bytes
    FilesystemSizeBytes,
    /// lxd_memory_Active_anon_bytes
    MemoryActiveAnonBytes,
    /// lxd_memory_Active_file_bytes
    MemoryActiveFileBytes,
    /// lxd_memory_Active_bytes
    MemoryActiveBytes,
    /// lxd_memory_Cached_bytes
    MemoryCachedBytes,
    /// lxd_memory_Dirty_bytes
    MemoryDirtyBytes,
    /// lxd_memory_Inactive_anon_bytes
    MemoryInactiveAnonBytes,
    /// lxd_memory_Inactive_file_bytes
    MemoryInactiveFileBytes,
    /// lxd_memory_Inactive_bytes
    MemoryInactiveBytes,
    /// lxd_memory_Mapped_bytes
    MemoryMappedBytes,
    /// lxd_memory_MemAvailable_bytes
    MemoryMemAvailableBytes,
    /// lxd_memory_MemFree_bytes
    MemoryMemFreeBytes,
    /// lxd_memory_MemTotal_bytes
    MemoryMemTotalBytes,
    /// lxd_memory_RSS_bytes
    MemoryRssBytes,
    /// lxd_memory_Shmem_bytes
    MemoryShmemBytes,
    /// lxd_memory_Swap_bytes
    MemorySwapBytes,
    /// lxd_memory_Unevictable_bytes
    MemoryUnevictableBytes,
    /// lxd_memory_Writeback_bytes
    MemoryWritebackBytes,
    /// lxd_network_receive_bytes_total
    NetworkReceiveBytesTotal,
    /// lxd_network_receive_drop_total
    NetworkReceiveDropTotal,
    /// lxd_network_receive_errs_total
    NetworkReceiveErrsTotal,
    /// lxd_network_receive_packets_total
    NetworkReceivePacketsTotal,
    /// lxd_network_transmit_bytes_total
    NetworkTransmitBytesTotal,
    /// lxd_network_transmit_drop_total
    NetworkTransmitDropTotal,
    /// lxd_network_transmit_errs_total
    NetworkTransmitErrsTotal,
    /// lxd_network_transmit_packets_total
    NetworkTransmitPacketsTotal,
    /// lxd_procs_total
    ProcsTotal,
    /// lxd_instances (LXD 5.x's daemon metrics from here on)
    Instances,
    /// lxd_operations_total
    OperationsTotal,
    /// lxd_uptime_seconds
    UptimeSeconds,
    /// lxd_warnings_total
    WarningsTotal,
    /// process_cpu_seconds_total (the Prometheus process collector's names: silod is no Go
    /// program, so it has no lxd_go_* figures)
    ProcessCpuSecondsTotal,
    /// process_open_fds
    ProcessOpenFds,
    /// process_resident_memory_bytes
    ProcessResidentMemoryBytes,
    /// process_virtual_memory_bytes
    ProcessVirtualMemoryBytes,
}

impl Metric {
    /// The name, the HELP text and the TYPE.
    pub fn describe(self) -> (&'static str, &'static str, &'static str) {
        use Metric::*;
        let (name, help) = match self {
            CpuSecondsTotal => (
                "lxd_cpu_seconds_total",
                "The total number of CPU time used in seconds.",
            ),
            DiskReadBytesTotal => (
                "lxd_disk_read_bytes_total",
                "The total number of bytes read.",
            ),
            DiskReadsCompletedTotal => (
                "lxd_disk_reads_completed_total",
                "The total number of completed reads.",
            ),
            DiskWrittenBytesTotal => (
                "lxd_disk_written_bytes_total",
                "The total number of bytes written.",
            ),
            DiskWritesCompletedTotal => (
                "lxd_disk_writes_completed_total",
                "The total number of completed writes.",
            ),
            FilesystemAvailBytes => (
                "lxd_filesystem_avail_bytes",
                "The number of available space in bytes.",
            ),
            FilesystemFreeBytes => (
                "lxd_filesystem_free_bytes",
                "The number of free space in bytes.",
            ),
            FilesystemSizeBytes => (
                "lxd_filesystem_size_bytes",
                "The size of the filesystem in bytes.",
            ),
            MemoryActiveAnonBytes => (
                "lxd_memory_Active_anon_bytes",
                "The amount of anonymous memory on active LRU list.",
            ),
            MemoryActiveFileBytes => (
                "lxd_memory_Active_file_bytes",
                "The amount of file-backed memory on active LRU list.",
            ),
            MemoryActiveBytes => (
                "lxd_memory_Active_bytes",
                "The amount of memory on active LRU list.",
            ),
            MemoryCachedBytes => ("lxd_memory_Cached_bytes", "The amount of cached memory."),
            MemoryDirtyBytes => (
                "lxd_memory_Dirty_bytes",
                "The amount of memory waiting to get written back to the disk.",
            ),
            MemoryInactiveAnonBytes => (
                "lxd_memory_Inactive_anon_bytes",
                "The amount of anonymous memory on inactive LRU list.",
            ),
            MemoryInactiveFileBytes => (
                "lxd_memory_Inactive_file_bytes",
                "The amount of file-backed memory on inactive LRU list.",
            ),
            MemoryInactiveBytes => (
                "lxd_memory_Inactive_bytes",
                "The amount of memory on inactive LRU list.",
            ),
            MemoryMappedBytes => ("lxd_memory_Mapped_bytes", "The amount of mapped memory."),
            MemoryMemAvailableBytes => (
                "lxd_memory_MemAvailable_bytes",
                "The amount of available memory.",
            ),
            MemoryMemFreeBytes => ("lxd_memory_MemFree_bytes", "The amount of free memory."),
            MemoryMemTotalBytes => ("lxd_memory_MemTotal_bytes", "The amount of used memory."),
            MemoryRssBytes => (
                "lxd_memory_RSS_bytes",
                "The amount of anonymous and swap cache memory.",
            ),
            MemoryShmemBytes => (
                "lxd_memory_Shmem_bytes",
                "The amount of cached filesystem data that is swap-backed.",
            ),
            MemorySwapBytes => ("lxd_memory_Swap_bytes", "The amount of used swap memory."),
            MemoryUnevictableBytes => (
                "lxd_memory_Unevictable_bytes",
                "The amount of unevictable memory.",
            ),
            MemoryWritebackBytes => (
                "lxd_memory_Writeback_bytes",
                "The amount of memory queued for syncing to disk.",
            ),
            NetworkReceiveBytesTotal => (
                "lxd_network_receive_bytes_total",
                "The amount of received bytes on a given interface.",
            ),
            NetworkReceiveDropTotal => (
                "lxd_network_receive_drop_total",
                "The amount of received dropped bytes on a given interface.",
            ),
            NetworkReceiveErrsTotal => (
                "lxd_network_receive_errs_total",
                "The amount of received errors on a given interface.",
            ),
            NetworkReceivePacketsTotal => (
                "lxd_network_receive_packets_total",
                "The amount of received packets on a given interface.",
            ),
            NetworkTransmitBytesTotal => (
                "lxd_network_transmit_bytes_total",
                "The amount of transmitted bytes on a given interface.",
            ),
            NetworkTransmitDropTotal => (
                "lxd_network_transmit_drop_total",
                "The amount of transmitted dropped bytes on a given interface.",
            ),
            NetworkTransmitErrsTotal => (
                "lxd_network_transmit_errs_total",
                "The amount of transmitted errors on a given interface.",
            ),
            NetworkTransmitPacketsTotal => (
                "lxd_network_transmit_packets_total",
                "The amount of transmitted packets on a given interface.",
            ),
            ProcsTotal => ("lxd_procs_total", "The number of running processes."),
            Instances => ("lxd_instances", "The number of instances."),
            OperationsTotal => ("lxd_operations_total", "The number of running operations."),
            UptimeSeconds => ("lxd_uptime_seconds", "The daemon uptime in seconds."),
            WarningsTotal => ("lxd_warnings_total", "The number of active warnings."),
            ProcessCpuSecondsTotal => (
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            ),
            ProcessOpenFds => ("process_open_fds", "Number of open file descriptors."),
            ProcessResidentMemoryBytes => (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            ProcessVirtualMemoryBytes => (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
        };
        // LXD's rule: counters end in _total, except the figures that can go down.
        let kind = match self {
            ProcsTotal | OperationsTotal | WarningsTotal => "gauge",
            _ if name.ends_with("_total") => "counter",
            _ => "gauge",
        };
        (name, help, kind)
    }
}

/// One sample: its labels (sorted on output) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label names and values.
    pub labels: BTreeMap<&'static str, String>,
    /// The value.
    pub value: f64,
}

/// Samples by metric, rendered in LXD's text layout.
#[derive(Debug, Default, Clone)]
pub struct MetricSet(BTreeMap<Metric, Vec<Sample>>);

impl MetricSet {
    /// Adds a sample with `labels` plus the set-wide `common` ones.
    pub fn add(
        &mut self,
        m: Metric,
        common: &[(&'static str, &str)],
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        let labels = common
            .iter()
            .chain(labels)
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        self.0.entry(m).or_default().push(Sample { labels, value });
    }

    /// The Prometheus/OpenMetrics text LXD writes: HELP, TYPE, samples, `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (m, samples) in &self.0 {
            let (name, help, kind) = m.describe();
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for s in samples {
                out.push_str(name);
                if !s.labels.is_empty() {
                    let labels: Vec<String> = s
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                        .collect();
                    let _ = write!(out, "{{{}}}", labels.join(","));
                }
                let _ = writeln!(out, " {}", s.value);
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

/// A label value as the exposition format quotes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The one project silo has.
const PROJECT: &str = "default";

/// One instance's samples, as LXD's container driver makes them (`lxc.Metrics`).
pub fn instance_samples(
    set: &mut MetricSet,
    name: &str,
    kind: &str,
    s: &InstanceStats,
    host_memory: u64,
) {
    let common = [("name", name), ("project", PROJECT), ("type", kind)];
    let secs = |ns: u64| ns as f64 / 1e9;
    for c in &s.cpu_times {
        let cpu = c.cpu.to_string();
        set.add(
            Metric::CpuSecondsTotal,
            &common,
            &[("cpu", &cpu), ("mode", "system")],
            secs(c.system_ns),
        );
        set.add(
            Metric::CpuSecondsTotal,
            &common,
            &[("cpu", &cpu), ("mode", "user")],
            secs(c.user_ns),
        );
    }
    for d in &s.io {
        let l = [("device", d.device.as_str())];
        set.add(Metric::DiskReadBytesTotal, &common, &l, d.read_bytes as f64);
        set.add(Metric::DiskReadsCompletedTotal, &common, &l, d.reads as f64);
        set.add(
            Metric::DiskWrittenBytesTotal,
            &common,
            &l,
            d.written_bytes as f64,
        );
        set.add(
            Metric::DiskWritesCompletedTotal,
            &common,
            &l,
            d.writes as f64,
        );
    }
    if let Some(m) = &s.memory_stat {
        for (metric, v) in [
            (Metric::MemoryActiveAnonBytes, m.active_anon),
            (Metric::MemoryActiveFileBytes, m.active_file),
            (Metric::MemoryActiveBytes, m.active_anon + m.active_file),
            (Metric::MemoryCachedBytes, m.cache),
            (Metric::MemoryDirtyBytes, m.dirty),
            (Metric::MemoryInactiveAnonBytes, m.inactive_anon),
            (Metric::MemoryInactiveFileBytes, m.inactive_file),
            (
                Metric::MemoryInactiveBytes,
                m.inactive_anon + m.inactive_file,
            ),
            (Metric::MemoryMappedBytes, m.mapped),
            (Metric::MemoryRssBytes, m.rss),
            (Metric::MemoryShmemBytes, m.shmem),
            (Metric::MemoryUnevictableBytes, m.unevictable),
            (Metric::MemoryWritebackBytes, m.writeback),
        ] {
            set.add(metric, &common, &[], v as f64);
        }
        // LXD's effective limit: the group's, or the host's memory when larger or unset.
        let limit = s
            .memory_limit
            .filter(|l| *l <= host_memory)
            .unwrap_or(host_memory);
        if limit > 0 {
            let used = s.memory as f64;
            set.add(Metric::MemoryMemTotalBytes, &common, &[], limit as f64);
            set.add(
                Metric::MemoryMemAvailableBytes,
                &common,
                &[],
                limit as f64 - used + m.cache as f64,
            );
            set.add(
                Metric::MemoryMemFreeBytes,
                &common,
                &[],
                limit as f64 - used,
            );
        }
        set.add(Metric::MemorySwapBytes, &common, &[], s.swap as f64);
    }
    for n in &s.net {
        let l = [("device", n.name.as_str())];
        for (metric, v) in [
            (Metric::NetworkReceiveBytesTotal, n.rx_bytes),
            (Metric::NetworkReceivePacketsTotal, n.rx_packets),
            (Metric::NetworkTransmitBytesTotal, n.tx_bytes),
            (Metric::NetworkTransmitPacketsTotal, n.tx_packets),
            (Metric::NetworkReceiveErrsTotal, n.rx_errors),
            (Metric::NetworkTransmitErrsTotal, n.tx_errors),
            (Metric::NetworkReceiveDropTotal, n.rx_dropped),
            (Metric::NetworkTransmitDropTotal, n.tx_dropped),
        ] {
            set.add(metric, &common, &l, v as f64);
        }
    }
    set.add(Metric::ProcsTotal, &common, &[], s.processes as f64);
}

/// The root disk's filesystem, as LXD labels it (no `type` label: LXD's quirk, kept so
/// queries written against it match).
fn filesystem_samples(set: &mut MetricSet, name: &str, info: &PoolInfo) {
    let common = [("name", name), ("project", PROJECT)];
    let l = [
        ("device", ""),
        ("fstype", info.fs_type.as_str()),
        ("mountpoint", "/"),
    ];
    set.add(
        Metric::FilesystemAvailBytes,
        &common,
        &l,
        info.space_avail as f64,
    );
    set.add(
        Metric::FilesystemFreeBytes,
        &common,
        &l,
        info.space_total.saturating_sub(info.space_used) as f64,
    );
    set.add(
        Metric::FilesystemSizeBytes,
        &common,
        &l,
        info.space_total as f64,
    );
}

/// `MemTotal` of /proc/meminfo in bytes (0 if unreadable).
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|k| k * 1024)
        .unwrap_or(0)
}

/// silod's own process figures from /proc/self.
fn process_samples(set: &mut MetricSet) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
    };
    if let Some(v) = kb("VmRSS:") {
        set.add(
            Metric::ProcessResidentMemoryBytes,
            &[],
            &[],
            (v * 1024) as f64,
        );
    }
    if let Some(v) = kb("VmSize:") {
        set.add(
            Metric::ProcessVirtualMemoryBytes,
            &[],
            &[],
            (v * 1024) as f64,
        );
    }
    // utime and stime are fields 14 and 15 of /proc/self/stat, after the parenthesised comm.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    if let Some((_, rest)) = stat.rsplit_once(')') {
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        // SAFETY: sysconf only reads a constant of the running system.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if let (Some(u), Some(s), true) = (ticks(11), ticks(12), hz > 0) {
            set.add(
                Metric::ProcessCpuSecondsTotal,
                &[],
                &[],
                (u + s) as f64 / hz as f64,
            );
        }
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        set.add(Metric::ProcessOpenFds, &[], &[], d.count() as f64);
    }
}

/// The whole scrape for `project` (None: every project; silo has only `default`).
pub async fn gather(c: &Services, project: Option<&str>) -> Result<String, DomainError> {
    let mut set = MetricSet::default();
    let records = match project {
        Some(p) if p != PROJECT => Vec::new(),
        _ => instances::list_records(&c.db)?,
    };
    // Only running instances have figures; silo-priv takes at most 4096 names a call.
    let running = if records.is_empty() {
        HashMap::new()
    } else {
        runtime::running(c).await?
    };
    let names: Vec<String> = records
        .iter()
        .filter(|i| running.contains_key(&i.name))
        .map(|i| i.name.clone())
        .collect();
    let mut stats = HashMap::new();
    for chunk in names.chunks(4096) {
        stats.extend(runtime::stats_many(c, chunk.to_vec()).await?);
    }
    let host_mem = host_memory();
    let mut pools: HashMap<String, Option<PoolInfo>> = HashMap::new();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for i in &records {
        *counts.entry(i.kind.as_str()).or_default() += 1;
        let Some(s) = stats.get(&i.name) else {
            continue;
        };
        instance_samples(&mut set, &i.name, &i.kind, s, host_mem);
        if !pools.contains_key(&i.pool) {
            let info = match PoolName::new(i.pool.clone()) {
                Ok(pn) => c.helpers.store.pool_info(pn).await.ok(),
                Err(_) => None,
            };
            pools.insert(i.pool.clone(), info);
        }
        if let Some(Some(info)) = pools.get(&i.pool) {
            filesystem_samples(&mut set, &i.name, info);
        }
    }
    if project.is_none_or(|p| p == PROJECT) {
        // LXD 5.x's daemon figures: instances by type, running operations, warnings, uptime.
        for kind in ["container", "virtual-machine"] {
            let n = counts.get(kind).copied().unwrap_or(0);
            set.add(
                Metric::Instances,
                &[],
                &[("project", PROJECT), ("type", kind)],
                n as f64,
            );
        }
    }
    let running_ops = c
        .ops
        .list()
        .iter()
        .filter(|o| o.status == "Running" || o.status == "Pending")
        .count();
    set.add(Metric::OperationsTotal, &[], &[], running_ops as f64);
    match crate::service::warnings::active_count(c) {
        Ok(n) => set.add(Metric::WarningsTotal, &[], &[], n as f64),
        Err(e) => tracing::warn!(error = %e, "counting warnings for the metrics"),
    }
    set.add(
        Metric::UptimeSeconds,
        &[],
        &[],
        c.started.elapsed().as_secs_f64(),
    );
    process_samples(&mut set);
    Ok(set.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_proto::privileged::{CpuTimes, MemoryStat, NetCounters};

    #[test]
    fn renders_as_lxd_does() {
        let mut set = MetricSet::default();
        let s = InstanceStats {
            processes: 3,
            memory: 100,
            memory_stat: Some(MemoryStat {
                cache: 10,
                ..Default::default()
            }),
            memory_limit: Some(1000),
            cpu_times: vec![CpuTimes {
                cpu: 1,
                user_ns: 1_500_000_000,
                system_ns: 0,
            }],
            net: vec![NetCounters {
                name: "eth0".into(),
                rx_bytes: 42,
                ..Default::default()
            }],
            ..Default::default()
        };
        instance_samples(&mut set, "c1", "container", &s, 4096);
        let t = set.render();
        assert!(t.contains("# TYPE lxd_cpu_seconds_total counter\n"), "{t}");
        assert!(
            t.contains(
                "lxd_cpu_seconds_total{cpu=\"1\",mode=\"user\",name=\"c1\",project=\"default\",type=\"container\"} 1.5\n"
            ),
            "{t}"
        );
        assert!(t.contains("lxd_memory_MemTotal_bytes{name=\"c1\",project=\"default\",type=\"container\"} 1000\n"), "{t}");
        assert!(t.contains("lxd_memory_MemAvailable_bytes{name=\"c1\",project=\"default\",type=\"container\"} 910\n"), "{t}");
        assert!(t.contains("# TYPE lxd_procs_total gauge\n"), "{t}");
        assert!(t.contains("lxd_network_receive_bytes_total{device=\"eth0\",name=\"c1\",project=\"default\",type=\"container\"} 42\n"), "{t}");
        assert!(t.ends_with("# EOF\n"));
        // The CPU comes before the processes, as in LXD's numbering.
        assert!(t.find("lxd_cpu_seconds_total") < t.find("lxd_procs_total"));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
