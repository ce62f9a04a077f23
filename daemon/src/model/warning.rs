//! Warnings (`/1.0/warnings`): what silo found degraded on this host, as LXD's warnings are
//! typed, counted and acknowledged. LXD's own type codes, names and severities where one
//! matches (its `warningtype` package); silo's own conditions numbered from 1000.

/// A warning's type. The code is what the database keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WarningType {
    /// LXD 1: no blkio (v1) or io (v2) controller.
    MissingCGroupBlkio,
    /// LXD 3.
    MissingCGroupCpuController,
    /// LXD 4.
    MissingCGroupCpusetController,
    /// LXD 5.
    MissingCGroupCpuacctController,
    /// LXD 6.
    MissingCGroupDevicesController,
    /// LXD 7.
    MissingCGroupFreezerController,
    /// LXD 8.
    MissingCGroupHugetlbController,
    /// LXD 9.
    MissingCGroupMemoryController,
    /// LXD 11.
    MissingCGroupPidsController,
    /// LXD 12.
    MissingCGroupMemorySwapAccounting,
    /// LXD 14.
    AppArmorNotAvailable,
    /// silo: the kernel has no ipvlan driver (`nictype=ipvlan` nics are refused).
    MissingIpvlan,
    /// silo: no dnsmasq where silo-net runs it (managed networks get no DHCP or DNS).
    MissingDnsmasq,
}

impl WarningType {
    /// Every type, for decoding.
    pub const ALL: &'static [WarningType] = &[
        WarningType::MissingCGroupBlkio,
        WarningType::MissingCGroupCpuController,
        WarningType::MissingCGroupCpusetController,
        WarningType::MissingCGroupCpuacctController,
        WarningType::MissingCGroupDevicesController,
        WarningType::MissingCGroupFreezerController,
        WarningType::MissingCGroupHugetlbController,
        WarningType::MissingCGroupMemoryController,
        WarningType::MissingCGroupPidsController,
        WarningType::MissingCGroupMemorySwapAccounting,
        WarningType::AppArmorNotAvailable,
        WarningType::MissingIpvlan,
        WarningType::MissingDnsmasq,
    ];

    /// The stored code (LXD's numbering for LXD's types).
    pub fn code(self) -> i64 {
        use WarningType::*;
        match self {
            MissingCGroupBlkio => 1,
            MissingCGroupCpuController => 3,
            MissingCGroupCpusetController => 4,
            MissingCGroupCpuacctController => 5,
            MissingCGroupDevicesController => 6,
            MissingCGroupFreezerController => 7,
            MissingCGroupHugetlbController => 8,
            MissingCGroupMemoryController => 9,
            MissingCGroupPidsController => 11,
            MissingCGroupMemorySwapAccounting => 12,
            AppArmorNotAvailable => 14,
            MissingIpvlan => 1000,
            MissingDnsmasq => 1001,
        }
    }

    /// The type of a stored code.
    pub fn from_code(code: i64) -> Option<WarningType> {
        Self::ALL.iter().copied().find(|t| t.code() == code)
    }

    /// The `type` field as the API shows it (LXD's `TypeNames`).
    pub fn name(self) -> &'static str {
        use WarningType::*;
        match self {
            MissingCGroupBlkio => "Couldn't find the CGroup blkio",
            MissingCGroupCpuController => "Couldn't find the CGroup CPU controller",
            MissingCGroupCpusetController => "Couldn't find the CGroup CPUset controller",
            MissingCGroupCpuacctController => "Couldn't find the CGroup CPUacct controller",
            MissingCGroupDevicesController => "Couldn't find the CGroup devices controller",
            MissingCGroupFreezerController => "Couldn't find the CGroup freezer controller",
            MissingCGroupHugetlbController => "Couldn't find the CGroup hugetlb controller",
            MissingCGroupMemoryController => "Couldn't find the CGroup memory controller",
            MissingCGroupPidsController => "Couldn't find the CGroup pids controller",
            MissingCGroupMemorySwapAccounting => "Couldn't find the CGroup memory swap accounting",
            AppArmorNotAvailable => "AppArmor support has been disabled",
            MissingIpvlan => "Couldn't find kernel support for ipvlan",
            MissingDnsmasq => "Couldn't find dnsmasq",
        }
    }

    /// LXD's severity: every host-feature warning is "low".
    pub fn severity(self) -> &'static str {
        "low"
    }
}

/// A warning's status, LXD's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningStatus {
    /// 1.
    New,
    /// 2.
    Acknowledged,
    /// 3.
    Resolved,
}

impl WarningStatus {
    /// The stored code.
    pub fn code(self) -> i64 {
        match self {
            WarningStatus::New => 1,
            WarningStatus::Acknowledged => 2,
            WarningStatus::Resolved => 3,
        }
    }

    /// The status of a stored code.
    pub fn from_code(code: i64) -> Option<WarningStatus> {
        [
            WarningStatus::New,
            WarningStatus::Acknowledged,
            WarningStatus::Resolved,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// The API's word.
    pub fn name(self) -> &'static str {
        match self {
            WarningStatus::New => "new",
            WarningStatus::Acknowledged => "acknowledged",
            WarningStatus::Resolved => "resolved",
        }
    }

    /// The status an API word names.
    pub fn parse(s: &str) -> Option<WarningStatus> {
        [
            WarningStatus::New,
            WarningStatus::Acknowledged,
            WarningStatus::Resolved,
        ]
        .into_iter()
        .find(|st| st.name() == s)
    }
}

/// A stored warning.
#[derive(Debug, Clone, PartialEq)]
pub struct WarningRecord {
    /// Its UUID.
    pub uuid: String,
    /// Its project ("" for the server's own).
    pub project: String,
    /// The entity it is about ("" for the host).
    pub entity_url: String,
    /// Its type.
    pub kind: WarningType,
    /// The last message seen.
    pub last_message: String,
    /// How often it was seen.
    pub count: i64,
    /// RFC 3339.
    pub first_seen_at: String,
    /// RFC 3339.
    pub last_seen_at: String,
    /// Its status.
    pub status: WarningStatus,
}

/// The cgroup controllers the host offers, and how: from /proc/self/mountinfo's cgroup
/// mounts and cgroup2's `cgroup.controllers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupView {
    /// Controllers of v1 hierarchies.
    pub v1: Vec<String>,
    /// Controllers cgroup2 offers (its root's `cgroup.controllers`), if it is mounted.
    pub v2: Option<Vec<String>>,
    /// Whether v1's memory controller accounts swap (`memory.memsw.*`).
    pub v1_swap_accounting: bool,
}

impl CgroupView {
    fn has(&self, v1: &str, v2: Option<&str>) -> bool {
        self.v1.iter().any(|c| c == v1)
            || match (v2, &self.v2) {
                (Some(""), Some(_)) => true,
                (Some(c), Some(list)) => list.iter().any(|x| x == c),
                _ => false,
            }
    }
}

/// The host-feature warnings a host with these facts raises, with their messages. A v2-only
/// feature that needs no controller (devices through BPF, cgroup.freeze) counts as present
/// wherever cgroup2 is mounted.
pub fn host_conditions(
    cg: &CgroupView,
    apparmor: bool,
    ipvlan: Option<bool>,
    dnsmasq: bool,
) -> Vec<(WarningType, String)> {
    use WarningType::*;
    let mut out = Vec::new();
    let checks: [(WarningType, &str, Option<&str>, &str); 9] = [
        (
            MissingCGroupBlkio,
            "blkio",
            Some("io"),
            "disk I/O limits and limits.disk.priority cannot be applied",
        ),
        (
            MissingCGroupCpuController,
            "cpu",
            Some("cpu"),
            "limits.cpu.allowance and limits.cpu.priority cannot be applied",
        ),
        (
            MissingCGroupCpusetController,
            "cpuset",
            Some("cpuset"),
            "limits.cpu cannot pin CPUs",
        ),
        (
            MissingCGroupCpuacctController,
            "cpuacct",
            Some("cpu"),
            "CPU usage cannot be reported",
        ),
        (
            MissingCGroupDevicesController,
            "devices",
            Some(""),
            "device access cannot be restricted",
        ),
        (
            MissingCGroupFreezerController,
            "freezer",
            Some(""),
            "instances cannot be frozen",
        ),
        (
            MissingCGroupHugetlbController,
            "hugetlb",
            Some("hugetlb"),
            "limits.hugepages.* cannot be applied",
        ),
        (
            MissingCGroupMemoryController,
            "memory",
            Some("memory"),
            "limits.memory cannot be applied and memory use cannot be reported",
        ),
        (
            MissingCGroupPidsController,
            "pids",
            Some("pids"),
            "limits.processes cannot be applied",
        ),
    ];
    for (t, v1, v2, what) in checks {
        if !cg.has(v1, v2) {
            out.push((t, format!("{}: {what}", t.name())));
        }
    }
    let v1_memory = cg.v1.iter().any(|c| c == "memory");
    if v1_memory && !cg.v1_swap_accounting {
        out.push((
            MissingCGroupMemorySwapAccounting,
            "Couldn't find the CGroup memory swap accounting: limits.memory.swap cannot be applied"
                .into(),
        ));
    }
    if !apparmor {
        out.push((
            AppArmorNotAvailable,
            "AppArmor support has been disabled because of lack of kernel support".into(),
        ));
    }
    match ipvlan {
        Some(true) => {}
        Some(false) => out.push((
            MissingIpvlan,
            "The kernel was built without CONFIG_IPVLAN: nics with nictype=ipvlan are refused"
                .into(),
        )),
        None => out.push((
            MissingIpvlan,
            "The kernel does not say whether it has CONFIG_IPVLAN (no /proc/config.gz): nics with nictype=ipvlan may be refused"
                .into(),
        )),
    }
    if !dnsmasq {
        out.push((
            MissingDnsmasq,
            "/usr/sbin/dnsmasq is missing: managed networks get no DHCP or DNS".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_lxd() {
        for t in WarningType::ALL {
            assert_eq!(WarningType::from_code(t.code()), Some(*t));
        }
        assert_eq!(WarningType::MissingCGroupMemoryController.code(), 9);
        assert_eq!(WarningType::AppArmorNotAvailable.code(), 14);
        assert_eq!(
            WarningStatus::parse("acknowledged"),
            Some(WarningStatus::Acknowledged)
        );
        assert_eq!(WarningStatus::from_code(3), Some(WarningStatus::Resolved));
        assert_eq!(WarningStatus::parse("ack"), None);
    }

    #[test]
    fn conditions_of_hybrid_and_pure_v2_hosts() {
        let hybrid = CgroupView {
            v1: [
                "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
            ]
            .map(String::from)
            .to_vec(),
            v2: Some(vec!["hugetlb".into()]),
            v1_swap_accounting: true,
        };
        assert!(host_conditions(&hybrid, true, Some(true), true).is_empty());
        // cgroup2 left with only hugetlb (the v1 hierarchies keep the rest).
        let bare_v2 = CgroupView {
            v2: Some(vec!["hugetlb".into()]),
            ..Default::default()
        };
        let types: Vec<WarningType> = host_conditions(&bare_v2, false, Some(false), true)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        use WarningType::*;
        assert_eq!(
            types,
            vec![
                MissingCGroupBlkio,
                MissingCGroupCpuController,
                MissingCGroupCpusetController,
                MissingCGroupCpuacctController,
                MissingCGroupMemoryController,
                MissingCGroupPidsController,
                AppArmorNotAvailable,
                MissingIpvlan,
            ]
        );
    }
}
