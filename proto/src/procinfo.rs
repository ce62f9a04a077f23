//! What a process's confinement looks like from the outside, as read from /proc.
//!
//! silod reports this for itself and each helper in `GET /1.0`; the tests assert on it.

use serde::{Deserialize, Serialize};

/// Capability names indexed by number (linux/capability.h, up to CAP_CHECKPOINT_RESTORE).
const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The confinement of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// Process id.
    pub pid: u32,
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gids: [u32; 4],
    /// Effective capability set, as names.
    pub cap_eff: Vec<String>,
    /// Permitted capability set, as names.
    pub cap_prm: Vec<String>,
    /// Bounding set, as names.
    pub cap_bnd: Vec<String>,
    /// Ambient set, as names.
    pub cap_amb: Vec<String>,
    /// NoNewPrivs flag.
    pub no_new_privs: bool,
    /// Seccomp mode: 0 none, 1 strict, 2 filter.
    pub seccomp: u8,
    /// Number of seccomp filters attached.
    pub seccomp_filters: u32,
    /// Seconds since the process started.
    pub uptime_secs: u64,
    /// Resident set size in KiB.
    pub rss_kib: u64,
}

/// Decodes a capability mask into names.
pub fn cap_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            CAP_NAMES
                .get(b as usize)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("cap_{b}"))
        })
        .collect()
}

fn field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

fn ids(s: Option<&str>) -> [u32; 4] {
    let mut out = [u32::MAX; 4];
    if let Some(s) = s {
        for (i, v) in s.split_whitespace().take(4).enumerate() {
            out[i] = v.parse().unwrap_or(u32::MAX);
        }
    }
    out
}

fn mask(s: Option<&str>) -> u64 {
    s.and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0)
}

/// Parses the text of /proc/PID/status (and the start time from /proc/PID/stat).
pub fn parse_status(pid: u32, status: &str, uptime_secs: u64) -> Confinement {
    Confinement {
        pid,
        uids: ids(field(status, "Uid")),
        gids: ids(field(status, "Gid")),
        cap_eff: cap_names(mask(field(status, "CapEff"))),
        cap_prm: cap_names(mask(field(status, "CapPrm"))),
        cap_bnd: cap_names(mask(field(status, "CapBnd"))),
        cap_amb: cap_names(mask(field(status, "CapAmb"))),
        no_new_privs: field(status, "NoNewPrivs") == Some("1"),
        seccomp: field(status, "Seccomp")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        seccomp_filters: field(status, "Seccomp_filters")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        uptime_secs,
        rss_kib: field(status, "VmRSS")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0),
    }
}

/// Reads a live process's confinement.
pub fn read(pid: u32) -> std::io::Result<Confinement> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let up = std::fs::read_to_string("/proc/uptime")?;
    // starttime is field 22; fields after the ")" of comm are space separated from field 3.
    let start_ticks: u64 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let boot_secs: f64 = up
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let uptime = (boot_secs as u64).saturating_sub(start_ticks / hz);
    Ok(parse_status(pid, &status, uptime))
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), which tells
/// a recycled pid from the process it once named.
pub fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let s = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\t5\t5\t5\nCapEff:\t0000000000201000\nCapPrm:\t0000000000201000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\nVmRSS:\t  1234 kB\n";
        let c = parse_status(7, s, 3);
        assert_eq!(c.uids, [1000; 4]);
        assert_eq!(c.cap_eff, vec!["net_admin", "sys_admin"]);
        assert!(c.cap_bnd.is_empty());
        assert!(c.no_new_privs);
        assert_eq!(c.seccomp, 2);
        assert_eq!(c.rss_kib, 1234);
    }

    #[test]
    fn reads_self() {
        let c = read(std::process::id()).expect("read self");
        assert_eq!(c.pid, std::process::id());
        assert!(c.rss_kib > 0);
    }
}
