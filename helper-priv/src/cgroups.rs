//! A thin cgroupfs layer for v1, hybrid and unified hosts, detected from
//! /proc/self/mountinfo rather than assumed. Instance cgroups live at
//! `<hierarchy>/silo-<tag>/<instance>`: outside silod's and the helpers' own cgroups, and
//! named by silo-priv, never by a path from silod.

use std::path::{Path, PathBuf};

use crate::launcher::CgroupPlace;
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::privileged::{
    BlockIo, CgroupLayout, CpuAllowance, CpuTimes, HugePageSize, InstanceStats, Limits, MemoryStat,
    MAX_DISK_NAME,
};
use silo_proto::InstanceName;

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// Its controllers ("memory", "name=systemd"), or empty for cgroup2.
    pub controllers: Vec<String>,
    /// Whether this is cgroup2.
    pub v2: bool,
}

/// The host's cgroups as silo-priv uses them.
#[derive(Debug, Clone)]
pub struct Cgroups {
    hierarchies: Vec<Hierarchy>,
    parent: String,
    tag: String,
    /// The root policy's per-instance process ceiling (`max_processes`): the default
    /// `pids.max`, and the most `limits.processes` may ask for.
    max_processes: Option<u64>,
}

/// Parses /proc/self/mountinfo text into hierarchies.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let mount = PathBuf::from(l[4]);
        match r[0] {
            "cgroup2" => out.push(Hierarchy {
                mount,
                controllers: Vec::new(),
                v2: true,
            }),
            "cgroup" => {
                let controllers = r[2]
                    .split(',')
                    .filter(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro"
                                | "nosuid"
                                | "nodev"
                                | "noexec"
                                | "relatime"
                                | "clone_children"
                        )
                    })
                    .filter(|o| !o.starts_with("release_agent="))
                    .map(str::to_string)
                    .collect();
                out.push(Hierarchy {
                    mount,
                    controllers,
                    v2: false,
                })
            }
            _ => {}
        }
    }
    out
}

/// The group of the instances' monitors, beside the instances' own.
const MONITORS: &str = ".monitors";

fn io(op: &str, p: &Path, e: std::io::Error) -> HelperError {
    HelperError::io(op, p.display(), e)
}

impl Cgroups {
    /// Reads the mount table. Runs before the jail.
    pub fn detect(state_dir: &Path) -> HelperResult<Cgroups> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| io("read", Path::new("/proc/self/mountinfo"), e))?;
        let hierarchies = parse_mountinfo(&text);
        if hierarchies.is_empty() {
            return Err(HelperError::Unsupported(
                "no cgroup filesystem is mounted".into(),
            ));
        }
        let tag = silo_proto::install_tag(state_dir);
        Ok(Cgroups {
            hierarchies,
            parent: format!("silo-{tag}"),
            tag,
            max_processes: None,
        })
    }

    /// Applies the root policy's per-instance process ceiling (0: none).
    pub fn with_process_ceiling(mut self, max: u64) -> Cgroups {
        self.max_processes = (max > 0).then_some(max);
        self
    }

    /// The layout, as reported to silod.
    pub fn layout(&self) -> CgroupLayout {
        let v1: Vec<String> = self
            .hierarchies
            .iter()
            .filter(|h| !h.v2)
            .map(|h| h.controllers.join(","))
            .collect();
        if v1.is_empty() {
            let ctrl = self
                .hierarchies
                .iter()
                .find(|h| h.v2)
                .and_then(|h| std::fs::read_to_string(h.mount.join("cgroup.controllers")).ok())
                .unwrap_or_default();
            CgroupLayout::Unified {
                controllers: ctrl.split_whitespace().map(str::to_string).collect(),
            }
        } else {
            CgroupLayout::Legacy { hierarchies: v1 }
        }
    }

    fn dirs(&self, name: &InstanceName) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.mount.join(&self.parent).join(name.as_str()))
            .collect()
    }

    fn ensure_parent(&self, h: &Hierarchy) -> HelperResult<()> {
        let p = h.mount.join(&self.parent);
        match std::fs::create_dir(&p) {
            Ok(()) => {
                if h.controllers.iter().any(|c| c == "cpuset") {
                    // A new v1 cpuset group starts with no cpus or mems and takes no tasks
                    // until set.
                    inherit_cpuset(&h.mount, &p)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("mkdir", &p, e)),
        }
        if h.v2 {
            // Hand the usual controllers down so instances can be limited (again on a parent
            // an older silo-priv made, which may lack one); a controller the host does not
            // offer, or binds to a v1 hierarchy, is skipped.
            let avail =
                std::fs::read_to_string(h.mount.join("cgroup.controllers")).unwrap_or_default();
            for c in ["cpu", "memory", "pids", "io", "hugetlb"] {
                if avail.split_whitespace().any(|a| a == c) {
                    let _ = std::fs::write(h.mount.join("cgroup.subtree_control"), format!("+{c}"));
                    let _ = std::fs::write(p.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
        }
        Ok(())
    }

    pub fn create(&self, name: &InstanceName) -> HelperResult<Vec<PathBuf>> {
        let dirs = self.dirs(name);
        if dirs.iter().any(|d| d.exists()) {
            return Err(HelperError::AlreadyExists {
                what: format!("cgroup of instance {name:?}"),
            });
        }
        let mut made: Vec<PathBuf> = Vec::new();
        for (h, d) in self.hierarchies.iter().zip(&dirs) {
            let r = self.ensure_parent(h).and_then(|()| {
                std::fs::create_dir(d).map_err(|e| io("mkdir", d, e))?;
                if h.controllers.iter().any(|c| c == "cpuset") {
                    inherit_cpuset(&h.mount.join(&self.parent), d)?;
                }
                Ok(())
            });
            if let Err(e) = r {
                for m in &made {
                    let _ = remove_cgroup_tree(m);
                }
                self.remove_empty_parents();
                return Err(e);
            }
            made.push(d.clone());
        }
        Ok(made)
    }

    pub fn list(&self) -> Vec<InstanceName> {
        let Some(h) = self.hierarchies.first() else {
            return Vec::new();
        };
        let mut out: Vec<InstanceName> = std::fs::read_dir(h.mount.join(&self.parent))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| InstanceName::new(e.file_name().to_string_lossy().into_owned()).ok())
            .collect();
        out.sort();
        out
    }

    pub fn delete(&self, name: &InstanceName) -> HelperResult<()> {
        let dirs: Vec<PathBuf> = self.dirs(name).into_iter().filter(|d| d.exists()).collect();
        if dirs.is_empty() {
            return Err(HelperError::NotFound {
                what: format!("cgroup of instance {name:?}"),
            });
        }
        for d in &dirs {
            let n = count_procs(d);
            if n > 0 {
                return Err(HelperError::InUse {
                    what: format!("cgroup of instance {name:?}"),
                    by: format!("{n} processes in {}", d.display()),
                });
            }
        }
        for d in &dirs {
            remove_cgroup_tree(d)?;
        }
        self.remove_empty_parents();
        Ok(())
    }

    /// Whether the instance has a cgroup in any hierarchy.
    pub fn exists(&self, name: &InstanceName) -> bool {
        self.dirs(name).iter().any(|d| d.exists())
    }

    /// The installation tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Where an instance's monitor lives: a group beside the instances' (not an instance
    /// name: names start with a letter) in every hierarchy. Left in the group of whoever
    /// started silo-priv, the monitors would be killed with a systemd unit's stop or restart
    /// (KillMode=mixed), and with them the instances' consoles and exit records; and a
    /// monitor passes through its instance's v1 groups to hand them to init, so it needs a
    /// place of its own to go back to.
    pub fn monitor_place(&self) -> HelperResult<CgroupPlace> {
        let mut place = CgroupPlace::default();
        for h in &self.hierarchies {
            self.ensure_parent(h)?;
            let d = h.mount.join(&self.parent).join(MONITORS);
            match std::fs::create_dir(&d) {
                Ok(()) => {
                    if h.controllers.iter().any(|c| c == "cpuset") {
                        inherit_cpuset(&h.mount.join(&self.parent), &d)?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("mkdir", &d, e)),
            }
            if h.v2 {
                place.v2_dir = Some(d.display().to_string());
            } else {
                place.v1_tasks.push(d.join("tasks").display().to_string());
            }
        }
        Ok(place)
    }

    /// Where a process goes to be in the instance's groups.
    pub fn place(&self, name: &InstanceName) -> CgroupPlace {
        let mut place = CgroupPlace::default();
        for (h, d) in self.hierarchies.iter().zip(self.dirs(name)) {
            if h.v2 {
                place.v2_dir = Some(d.display().to_string());
            } else {
                place.v1_tasks.push(d.join("tasks").display().to_string());
            }
        }
        place
    }

    /// The instance's group in the v1 hierarchy of `controller`, when the host has one.
    pub fn v1_dir(&self, name: &InstanceName, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| !h.v2 && h.controllers.iter().any(|c| c == controller))
            .map(|h| h.mount.join(&self.parent).join(name.as_str()))
    }

    /// The instance's group in the cgroup2 hierarchy, when the host has one.
    pub fn v2_dir(&self, name: &InstanceName) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.v2)
            .map(|h| h.mount.join(&self.parent).join(name.as_str()))
    }

    /// The directory of the hierarchy that holds `file` for this instance: a v1 controller
    /// hierarchy when the host has one (hybrid hosts bind controllers there), else cgroup2.
    fn dir_with(&self, name: &InstanceName, v1: &str, v2: &str) -> Option<(PathBuf, bool)> {
        for h in &self.hierarchies {
            if !h.v2 && h.controllers.iter().any(|c| c == v1) {
                return Some((h.mount.join(&self.parent).join(name.as_str()), false));
            }
        }
        let d = self.v2_dir(name)?;
        let avail =
            std::fs::read_to_string(d.parent()?.join("cgroup.subtree_control")).unwrap_or_default();
        avail
            .split_whitespace()
            .any(|c| c == v2)
            .then_some((d, true))
    }

    /// Freezes or thaws the instance's group and waits (up to 10 s) until the kernel reports
    /// it done: the v1 freezer where the host has one, else cgroup2's cgroup.freeze.
    pub async fn freeze(&self, name: &InstanceName, frozen: bool) -> HelperResult<()> {
        let (dir, v2) = self
            .dir_with(name, "freezer", "")
            .or_else(|| self.v2_dir(name).map(|d| (d, true)))
            .ok_or_else(|| HelperError::Unsupported("the host has no cgroup freezer".into()))?;
        let (file, value, state_file) = if v2 {
            (
                "cgroup.freeze",
                if frozen { "1" } else { "0" },
                "cgroup.events",
            )
        } else {
            (
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
                "freezer.state",
            )
        };
        std::fs::write(dir.join(file), value).map_err(|e| io("write", &dir.join(file), e))?;
        let done = |s: &str| {
            if v2 {
                s.lines()
                    .any(|l| l.trim() == if frozen { "frozen 1" } else { "frozen 0" })
            } else {
                s.trim() == value
            }
        };
        for _ in 0..1000 {
            let s = std::fs::read_to_string(dir.join(state_file))
                .map_err(|e| io("read", &dir.join(state_file), e))?;
            if done(&s) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if frozen {
            // Never leave an instance half-frozen behind a failed snapshot.
            let thaw = if v2 { "0" } else { "THAWED" };
            let _ = std::fs::write(dir.join(file), thaw);
        }
        Err(HelperError::Unsupported(format!(
            "instance {:?} did not {} within 10s",
            name.as_str(),
            if frozen { "freeze" } else { "thaw" }
        )))
    }

    /// Whether the instance's group is frozen or freezing, read from the kernel each time:
    /// silo-priv keeps no record of it, so a restarted silo-priv or silod sees what the
    /// cgroup says. v1: `freezer.state` is not THAWED; v2: `cgroup.freeze` asks for it.
    pub fn is_frozen(&self, name: &InstanceName) -> bool {
        let Some((dir, v2)) = self
            .dir_with(name, "freezer", "")
            .or_else(|| self.v2_dir(name).map(|d| (d, true)))
        else {
            return false;
        };
        if v2 {
            std::fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        } else {
            std::fs::read_to_string(dir.join("freezer.state"))
                .is_ok_and(|s| !s.trim().is_empty() && s.trim() != "THAWED")
        }
    }

    /// Writes the limits (a `None` lifts that limit).
    pub fn apply_limits(&self, name: &InstanceName, l: &Limits) -> HelperResult<()> {
        l.validate()?;
        let write = |d: &Path, f: &str, v: &str| -> HelperResult<()> {
            std::fs::write(d.join(f), v).map_err(|e| io("write", &d.join(f), e))
        };
        let need = |what: &str| {
            HelperError::Unsupported(format!(
                "{what} cannot be applied: the host has no {what} cgroup controller available to silo"
            ))
        };
        if let (Some(p), Some(max)) = (l.processes, self.max_processes) {
            if p > max {
                return Err(HelperError::invalid(
                    "limits.processes",
                    format!(
                        "{p} is more than the {max} processes the root policy allows one \
                         instance (max_processes)"
                    ),
                ));
            }
        }
        // Those the host may lack refuse before anything is written: a refused change leaves
        // the running instance's limits as they were.
        self.apply_disk_priority(name, l)?;
        self.apply_hugepages(name, l)?;
        self.apply_memory(name, l)?;
        self.apply_cpu(name, l)?;
        // Unset means the policy's ceiling: a fork bomb in one instance must not take every
        // pid of the host.
        match (
            self.dir_with(name, "pids", "pids"),
            l.processes.or(self.max_processes),
        ) {
            (Some((d, _)), p) => write(&d, "pids.max", &p.map_or("max".into(), |p| p.to_string()))?,
            (None, Some(_)) if l.processes.is_some() => return Err(need("limits.processes")),
            (None, Some(max)) => tracing::warn!(
                instance = %name,
                "no pids controller: the policy's ceiling of {max} processes is not enforced"
            ),
            (None, None) => {}
        }
        match (self.dir_with(name, "cpuset", "cpuset"), &l.cpus) {
            (Some((d, _)), c) => {
                let v = match c {
                    Some(c) => c.clone(),
                    None => d
                        .parent()
                        .and_then(|p| std::fs::read_to_string(p.join("cpuset.cpus")).ok())
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                };
                if !v.is_empty() {
                    write(&d, "cpuset.cpus", &v)?;
                }
            }
            (None, Some(_)) => return Err(need("limits.cpu")),
            (None, None) => {}
        }
        Ok(())
    }

    /// `limits.memory` with `.enforce`, `.swap` and `.swap.priority`, as LXD applies them: a
    /// hard limit also gets a soft limit of 90% (v1); `enforce=soft` sets only the soft one
    /// (v1 `memory.soft_limit_in_bytes`, cgroup2 `memory.high`: reclaimed and throttled above
    /// it, never killed); `swap=false` caps memory+swap at the memory limit (v1
    /// `memory.memsw.limit_in_bytes`, cgroup2 `memory.swap.max=0`) and sets swappiness 0;
    /// `swap.priority` p gives v1 swappiness 70-p. Unset keys put the kernel's defaults back,
    /// so a live unset lifts them.
    fn apply_memory(&self, name: &InstanceName, l: &Limits) -> HelperResult<()> {
        let asked = [
            ("limits.memory", l.memory.is_some()),
            ("limits.memory.swap", l.memory_swap == Some(false)),
            (
                "limits.memory.swap.priority",
                l.memory_swap_priority.is_some(),
            ),
        ];
        let Some((d, v2)) = self.dir_with(name, "memory", "memory") else {
            return match asked.iter().find(|(_, a)| *a) {
                Some((k, _)) => Err(need_controller(k, "memory")),
                None => Ok(()),
            };
        };
        let no_swap = l.memory_swap == Some(false);
        if v2 {
            if l.memory_swap_priority.is_some() {
                return Err(missing(
                    "limits.memory.swap.priority",
                    "cgroup2 has no per-group swappiness (memory.swappiness is cgroup v1's)",
                ));
            }
            if no_swap && !d.join("memory.swap.max").exists() {
                return Err(missing(
                    "limits.memory.swap",
                    "the host's cgroup2 memory controller has no memory.swap.max (a kernel \
                     without swap accounting)",
                ));
            }
            let (max, high) = match (l.memory, l.memory_soft) {
                (Some(m), false) => (m.to_string(), "max".to_string()),
                (Some(m), true) => ("max".to_string(), m.to_string()),
                (None, _) => ("max".to_string(), "max".to_string()),
            };
            write_file(&d, "memory.high", &high)?;
            write_file(&d, "memory.max", &max)?;
            if d.join("memory.swap.max").exists() {
                write_file(&d, "memory.swap.max", if no_swap { "0" } else { "max" })?;
            }
            return Ok(());
        }
        let memsw = d.join("memory.memsw.limit_in_bytes").exists();
        if no_swap && l.memory.is_some() && !l.memory_soft && !memsw {
            return Err(missing(
                "limits.memory.swap",
                "the host's memory controller has no swap accounting \
                 (memory.memsw.limit_in_bytes; boot with swapaccount=1)",
            ));
        }
        let swappiness = d.join("memory.swappiness").exists();
        if !swappiness && (no_swap || l.memory_swap_priority.is_some()) {
            return Err(missing(
                if no_swap {
                    "limits.memory.swap"
                } else {
                    "limits.memory.swap.priority"
                },
                "the host's memory controller has no memory.swappiness",
            ));
        }
        // memsw may never be below the memory limit: lift it first, set it last.
        if memsw {
            write_file(&d, "memory.memsw.limit_in_bytes", "-1")?;
        }
        let (hard, soft) = match (l.memory, l.memory_soft) {
            (Some(m), false) => (m.to_string(), soft_of_hard(m).to_string()),
            (Some(m), true) => ("-1".to_string(), m.to_string()),
            (None, _) => ("-1".to_string(), "-1".to_string()),
        };
        write_file(&d, "memory.limit_in_bytes", &hard)?;
        write_file(&d, "memory.soft_limit_in_bytes", &soft)?;
        if let (true, true, Some(m), false) = (memsw, no_swap, l.memory, l.memory_soft) {
            write_file(&d, "memory.memsw.limit_in_bytes", &m.to_string())?;
        }
        if swappiness {
            let sw = match (no_swap, l.memory_swap_priority) {
                (true, _) => 0,
                (false, Some(p)) => 70 - u32::from(p),
                (false, None) => 60,
            };
            write_file(&d, "memory.swappiness", &sw.to_string())?;
        }
        Ok(())
    }

    /// `limits.cpu.allowance` and `limits.cpu.priority` as LXD's `ParseCPU` maps them: the
    /// weight is the allowance's share of the maximum (v1 cpu.shares 1024, cgroup2 cpu.weight
    /// 100; a time allowance or none gives the maximum) less 10-priority; a time allowance is
    /// also a CFS quota. Unset, the kernel's defaults go back.
    fn apply_cpu(&self, name: &InstanceName, l: &Limits) -> HelperResult<()> {
        let Some((d, v2)) = self.dir_with(name, "cpu", "cpu") else {
            return match (l.cpu_allowance.is_some(), l.cpu_priority.is_some()) {
                (true, _) => Err(need_controller("limits.cpu.allowance", "cpu")),
                (_, true) => Err(need_controller("limits.cpu.priority", "cpu")),
                _ => Ok(()),
            };
        };
        let (weight, quota) = cpu_weight_and_quota(l.cpu_allowance, l.cpu_priority, v2);
        if v2 {
            write_file(&d, "cpu.weight", &weight.to_string())?;
            let max = match quota {
                Some((q, p)) => format!("{q} {p}"),
                None => "max 100000".to_string(),
            };
            write_file(&d, "cpu.max", &max)?;
        } else {
            write_file(&d, "cpu.shares", &weight.to_string())?;
            let (q, p) = quota.map_or(("-1".to_string(), 100_000), |(q, p)| (q.to_string(), p));
            // The quota first: a period shorter than the old quota's is then never checked
            // against it.
            write_file(&d, "cpu.cfs_quota_us", "-1")?;
            write_file(&d, "cpu.cfs_period_us", &p.to_string())?;
            write_file(&d, "cpu.cfs_quota_us", &q)?;
        }
        Ok(())
    }

    /// `limits.hugepages.<size>`: the hugetlb controller's limit for each size the host has
    /// (v1 `hugetlb.<size>.limit_in_bytes`, cgroup2 `hugetlb.<size>.max`); a size the host
    /// lacks, or no hugetlb controller, is refused naming the key.
    fn apply_hugepages(&self, name: &InstanceName, l: &Limits) -> HelperResult<()> {
        let Some((d, v2)) = self.dir_with(name, "hugetlb", "hugetlb") else {
            return match l.hugepages.first() {
                Some((size, _)) => Err(need_controller(size.key(), "hugetlb")),
                None => Ok(()),
            };
        };
        let file = |size: HugePageSize| {
            if v2 {
                format!("hugetlb.{}.max", size.suffix())
            } else {
                format!("hugetlb.{}.limit_in_bytes", size.suffix())
            }
        };
        if let Some((size, _)) = l.hugepages.iter().find(|(s, _)| !d.join(file(*s)).exists()) {
            return Err(missing(
                size.key(),
                &format!(
                    "this host has no {} huge pages (no {} in its hugetlb controller)",
                    size.suffix(),
                    file(*size)
                ),
            ));
        }
        for size in HugePageSize::ALL {
            let file = file(size);
            let want = l
                .hugepages
                .iter()
                .find(|(s, _)| *s == size)
                .map(|(_, b)| *b);
            if !d.join(&file).exists() {
                continue;
            }
            let v = match (want, v2) {
                (Some(b), _) => b.to_string(),
                (None, true) => "max".to_string(),
                (None, false) => "-1".to_string(),
            };
            write_file(&d, &file, &v)?;
        }
        Ok(())
    }

    /// `limits.disk.priority` as LXD maps it: weight = priority × 100 (0 → 10), written to
    /// the first weight file the host's I/O controller has (v1 `blkio.weight` or
    /// `blkio.bfq.weight`, cgroup2 `io.weight` or `io.bfq.weight`); refused naming the key
    /// where there is none (the block layer only weighs I/O under CFQ or BFQ).
    fn apply_disk_priority(&self, name: &InstanceName, l: &Limits) -> HelperResult<()> {
        let dir = self.dir_with(name, "blkio", "io");
        let files: &[&str] = match &dir {
            Some((_, false)) => &["blkio.weight", "blkio.bfq.weight"],
            Some((_, true)) => &["io.weight", "io.bfq.weight"],
            None => &[],
        };
        let found = dir
            .as_ref()
            .and_then(|(d, _)| files.iter().find(|f| d.join(f).exists()).map(|f| (d, *f)));
        match (found, l.disk_priority) {
            (Some((d, f)), p) => {
                let w = match p {
                    Some(0) => 10,
                    Some(p) => u32::from(p) * 100,
                    // The kernel's defaults: CFQ's 500, BFQ's and cgroup2's 100.
                    None if f == "blkio.weight" => 500,
                    None => 100,
                };
                let v = if f == "io.weight" {
                    format!("default {w}")
                } else {
                    w.to_string()
                };
                write_file(d, f, &v)
            }
            (None, Some(_)) => Err(missing(
                "limits.disk.priority",
                if dir.is_some() {
                    "the host's I/O cgroup controller offers no weight (blkio.weight, \
                     blkio.bfq.weight, io.weight or io.bfq.weight: its block devices use no \
                     weighing I/O scheduler such as BFQ)"
                } else {
                    "the host has no blkio or io cgroup controller available to silo"
                },
            )),
            (None, None) => Ok(()),
        }
    }

    /// Resource use read from the instance's cgroups.
    pub fn stats(&self, name: &InstanceName) -> InstanceStats {
        let num = |d: &Path, f: &str| -> Option<u64> {
            std::fs::read_to_string(d.join(f)).ok()?.trim().parse().ok()
        };
        let mut s = InstanceStats::default();
        if let Some((d, v2)) = self.dir_with(name, "memory", "memory") {
            if v2 {
                s.memory = num(&d, "memory.current").unwrap_or(0);
                s.memory_peak = num(&d, "memory.peak").unwrap_or(s.memory);
                s.swap = num(&d, "memory.swap.current").unwrap_or(0);
            } else {
                s.memory = num(&d, "memory.usage_in_bytes").unwrap_or(0);
                s.memory_peak = num(&d, "memory.max_usage_in_bytes").unwrap_or(s.memory);
                s.swap = num(&d, "memory.memsw.usage_in_bytes")
                    .map(|t| t.saturating_sub(s.memory))
                    .unwrap_or(0);
            }
        }
        if let Some((d, v2)) = self.dir_with(name, "cpuacct", "cpu") {
            s.cpu_ns = if v2 {
                std::fs::read_to_string(d.join("cpu.stat"))
                    .ok()
                    .and_then(|t| {
                        t.lines().find_map(|l| {
                            l.strip_prefix("usage_usec ")
                                .and_then(|v| v.trim().parse::<u64>().ok())
                        })
                    })
                    .map(|u| u * 1000)
                    .unwrap_or(0)
            } else {
                num(&d, "cpuacct.usage").unwrap_or(0)
            };
        }
        if let Some((d, v2)) = self.dir_with(name, "memory", "memory") {
            let read = |f: &str| std::fs::read_to_string(d.join(f)).ok();
            s.memory_stat = read("memory.stat").map(|t| parse_memory_stat(&t, v2));
            s.memory_limit = if v2 {
                read("memory.max").and_then(|t| t.trim().parse().ok())
            } else {
                // v1 answers a page-rounded i64::MAX when unlimited.
                num(&d, "memory.limit_in_bytes").filter(|l| *l < (1 << 62))
            };
        }
        if let Some((d, v2)) = self.dir_with(name, "cpuacct", "cpu") {
            s.cpu_times = if v2 {
                std::fs::read_to_string(d.join("cpu.stat"))
                    .map(|t| vec![parse_cpu_stat_v2(&t)])
                    .unwrap_or_default()
            } else {
                std::fs::read_to_string(d.join("cpuacct.usage_all"))
                    .map(|t| parse_usage_all(&t))
                    .unwrap_or_default()
            };
        }
        if let Some((d, v2)) = self.dir_with(name, "blkio", "io") {
            let names = std::fs::read_to_string("/proc/partitions")
                .map(|t| parse_partitions(&t))
                .unwrap_or_default();
            let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
            s.io = if v2 {
                parse_io_stat(&read("io.stat"), &names)
            } else {
                parse_blkio_v1(
                    &read("blkio.throttle.io_service_bytes_recursive"),
                    &read("blkio.throttle.io_serviced_recursive"),
                    &names,
                )
            };
        }
        s.processes = match self.dir_with(name, "pids", "pids") {
            Some((d, _)) => num(&d, "pids.current").unwrap_or(0),
            None => self
                .dirs(name)
                .first()
                .map(|d| count_procs(d) as u64)
                .unwrap_or(0),
        };
        s
    }

    fn remove_empty_parents(&self) {
        for h in &self.hierarchies {
            // rmdir only succeeds on an empty group: other instances (and their monitors)
            // keep it in place.
            let _ = std::fs::remove_dir(h.mount.join(&self.parent).join(MONITORS));
            let _ = std::fs::remove_dir(h.mount.join(&self.parent));
        }
    }
}

/// `memory.stat` into the figures LXD exports: v1's hierarchical `total_*` lines, v2's own
/// names.
pub fn parse_memory_stat(text: &str, v2: bool) -> MemoryStat {
    let mut m = MemoryStat::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        let Ok(v) = v.trim().parse::<u64>() else {
            continue;
        };
        let slot = match (v2, k) {
            (false, "total_active_anon") | (true, "active_anon") => &mut m.active_anon,
            (false, "total_active_file") | (true, "active_file") => &mut m.active_file,
            (false, "total_inactive_anon") | (true, "inactive_anon") => &mut m.inactive_anon,
            (false, "total_inactive_file") | (true, "inactive_file") => &mut m.inactive_file,
            (false, "total_unevictable") | (true, "unevictable") => &mut m.unevictable,
            (false, "total_writeback") | (true, "file_writeback") => &mut m.writeback,
            (false, "total_dirty") | (true, "file_dirty") => &mut m.dirty,
            (false, "total_mapped_file") | (true, "file_mapped") => &mut m.mapped,
            (false, "total_rss") => &mut m.rss,
            (false, "total_shmem") | (true, "shmem") => &mut m.shmem,
            (false, "total_cache") | (true, "file") => &mut m.cache,
            _ => continue,
        };
        *slot = v;
    }
    m
}

/// v1 `cpuacct.usage_all`: `cpu user system` lines in nanoseconds, after a header.
pub fn parse_usage_all(text: &str) -> Vec<CpuTimes> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(CpuTimes {
                cpu: f.next()?.parse().ok()?,
                user_ns: f.next()?.parse().ok()?,
                system_ns: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// cgroup2 `cpu.stat`'s `user_usec` and `system_usec`, as CPU 0's (LXD does the same: v2 has
/// no per-CPU split).
pub fn parse_cpu_stat_v2(text: &str) -> CpuTimes {
    let mut t = CpuTimes::default();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let (Some(k), Some(Ok(v))) = (f.next(), f.next().map(str::parse::<u64>)) else {
            continue;
        };
        match k {
            "user_usec" => t.user_ns = v.saturating_mul(1000),
            "system_usec" => t.system_ns = v.saturating_mul(1000),
            _ => {}
        }
    }
    t
}

/// /proc/partitions as `maj:min` → kernel name, keeping only plain names.
pub fn parse_partitions(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (maj, min, name) = (f.first()?, f.get(1)?, f.get(3)?);
            maj.parse::<u32>().ok()?;
            min.parse::<u32>().ok()?;
            let plain = name.len() <= MAX_DISK_NAME
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            plain.then(|| (format!("{maj}:{min}"), name.to_string()))
        })
        .collect()
}

fn disk_entry<'a>(
    out: &'a mut Vec<BlockIo>,
    id: &str,
    names: &[(String, String)],
) -> &'a mut BlockIo {
    let device = names
        .iter()
        .find(|(k, _)| k == id)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| id.to_string());
    match out.iter().position(|d| d.device == device) {
        Some(i) => &mut out[i],
        None => {
            out.push(BlockIo {
                device,
                ..Default::default()
            });
            let last = out.len() - 1;
            &mut out[last]
        }
    }
}

fn is_dev_id(id: &str) -> bool {
    id.split_once(':')
        .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
}

/// cgroup2 `io.stat`: `maj:min rbytes=.. wbytes=.. rios=.. wios=..` lines.
pub fn parse_io_stat(text: &str, names: &[(String, String)]) -> Vec<BlockIo> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some(id) = f.next().filter(|i| is_dev_id(i)) else {
            continue;
        };
        let d = disk_entry(&mut out, id, names);
        for kv in f {
            let Some((k, Ok(v))) = kv.split_once('=').map(|(k, v)| (k, v.parse::<u64>())) else {
                continue;
            };
            match k {
                "rbytes" => d.read_bytes = v,
                "wbytes" => d.written_bytes = v,
                "rios" => d.reads = v,
                "wios" => d.writes = v,
                _ => {}
            }
        }
    }
    out
}

/// v1 `blkio.throttle.io_service_bytes_recursive` and `..._io_serviced_recursive`:
/// `maj:min Read|Write|... n` lines.
pub fn parse_blkio_v1(bytes: &str, ios: &str, names: &[(String, String)]) -> Vec<BlockIo> {
    let mut out = Vec::new();
    for (text, is_bytes) in [(bytes, true), (ios, false)] {
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [id, op, v] = f[..] else { continue };
            let (true, Ok(v)) = (is_dev_id(id), v.parse::<u64>()) else {
                continue;
            };
            let d = disk_entry(&mut out, id, names);
            match (op, is_bytes) {
                ("Read", true) => d.read_bytes = v,
                ("Write", true) => d.written_bytes = v,
                ("Read", false) => d.reads = v,
                ("Write", false) => d.writes = v,
                _ => {}
            }
        }
    }
    out
}

/// LXD's soft limit beside a hard one: 90% of it.
pub fn soft_of_hard(m: u64) -> u64 {
    (u128::from(m) * 9 / 10) as u64
}

fn write_file(d: &Path, f: &str, v: &str) -> HelperResult<()> {
    std::fs::write(d.join(f), v).map_err(|e| io("write", &d.join(f), e))
}

fn need_controller(key: &str, controller: &str) -> HelperError {
    HelperError::Unsupported(format!(
        "{key} cannot be applied: the host has no {controller} cgroup controller available to silo"
    ))
}

fn missing(key: &str, why: &str) -> HelperError {
    HelperError::Unsupported(format!("{key} cannot be applied: {why}"))
}

/// LXD's `ParseCPU`: the CPU weight (v1 cpu.shares, or cgroup2 cpu.weight when `v2`) and the
/// CFS quota and period in microseconds for a time allowance. The weight never goes below
/// what the kernel takes (2 shares, weight 1), where LXD's would reach 0.
pub fn cpu_weight_and_quota(
    allowance: Option<CpuAllowance>,
    priority: Option<u8>,
    v2: bool,
) -> (u64, Option<(u64, u64)>) {
    let max: i64 = if v2 { 100 } else { 1024 };
    let mut w = -(10 - i64::from(priority.unwrap_or(10).min(10)));
    let quota = match allowance {
        Some(CpuAllowance::Percent(p)) => {
            w += max * i64::from(p) / 100;
            None
        }
        Some(CpuAllowance::Time {
            quota_us,
            period_us,
        }) => {
            w += max;
            Some((quota_us, period_us))
        }
        None => {
            w += max;
            None
        }
    };
    (w.max(if v2 { 1 } else { 2 }) as u64, quota)
}

fn inherit_cpuset(parent: &Path, child: &Path) -> HelperResult<()> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let cur = std::fs::read_to_string(child.join(f)).unwrap_or_default();
        if cur.trim().is_empty() {
            let v = std::fs::read_to_string(parent.join(f))
                .map_err(|e| io("read", &parent.join(f), e))?;
            std::fs::write(child.join(f), v.trim()).map_err(|e| io("write", &child.join(f), e))?;
        }
    }
    Ok(())
}

fn count_procs(dir: &Path) -> usize {
    let mut n = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            n += count_procs(&e.path());
        }
    }
    n
}

/// Removes a cgroup and the groups nested in it (systemd in a container makes many),
/// deepest first. cgroupfs directories are removed with rmdir even though they hold files.
fn remove_cgroup_tree(dir: &Path) -> HelperResult<()> {
    for e in std::fs::read_dir(dir)
        .map_err(|e| io("readdir", dir, e))?
        .flatten()
    {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_cgroup_tree(&e.path())?;
        }
    }
    std::fs::remove_dir(dir).map_err(|e| io("rmdir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_files_parse_as_lxd_reads_them() {
        let parts = parse_partitions(
            "major minor  #blocks  name\n\n 254        0  268435456 vda\n 254  1 1 vda1\n 7 0 1 ../x\n",
        );
        assert_eq!(parts.len(), 2, "{parts:?}");
        let v1 = parse_blkio_v1(
            "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 1\nTotal 12288\n",
            "254:0 Read 1\n254:0 Write 2\n7:0 Read 3\n",
            &parts,
        );
        assert_eq!(
            v1,
            vec![
                BlockIo {
                    device: "vda".into(),
                    read_bytes: 4096,
                    reads: 1,
                    written_bytes: 8192,
                    writes: 2
                },
                BlockIo {
                    device: "7:0".into(),
                    reads: 3,
                    ..Default::default()
                },
            ]
        );
        let v2 = parse_io_stat(
            "254:1 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
            &parts,
        );
        assert_eq!(v2[0].device, "vda1");
        assert_eq!(
            (
                v2[0].read_bytes,
                v2[0].written_bytes,
                v2[0].reads,
                v2[0].writes
            ),
            (10, 20, 1, 2)
        );
        let cpus = parse_usage_all("cpu user system\n0 100 200\n1 300 400\n");
        assert_eq!(cpus.len(), 2);
        assert_eq!(
            (cpus[1].cpu, cpus[1].user_ns, cpus[1].system_ns),
            (1, 300, 400)
        );
        let c2 = parse_cpu_stat_v2("usage_usec 5\nuser_usec 3\nsystem_usec 2\n");
        assert_eq!((c2.cpu, c2.user_ns, c2.system_ns), (0, 3000, 2000));
        let m1 = parse_memory_stat("cache 1\nrss 2\ntotal_cache 10\ntotal_rss 20\n", false);
        assert_eq!((m1.cache, m1.rss), (10, 20));
        let m2 = parse_memory_stat("anon 5\nfile 7\nfile_dirty 3\nactive_anon 4\n", true);
        assert_eq!((m2.cache, m2.dirty, m2.active_anon, m2.rss), (7, 3, 4, 0));
    }

    #[test]
    fn cpu_allowance_and_priority_map_as_lxd() {
        let pct = Some(CpuAllowance::Percent(50));
        assert_eq!(cpu_weight_and_quota(pct, None, false), (512, None));
        assert_eq!(cpu_weight_and_quota(pct, None, true), (50, None));
        assert_eq!(cpu_weight_and_quota(None, None, false), (1024, None));
        assert_eq!(cpu_weight_and_quota(None, Some(0), false), (1014, None));
        assert_eq!(cpu_weight_and_quota(None, Some(5), true), (95, None));
        let time = Some(CpuAllowance::Time {
            quota_us: 25_000,
            period_us: 100_000,
        });
        assert_eq!(
            cpu_weight_and_quota(time, Some(10), false),
            (1024, Some((25_000, 100_000)))
        );
        // LXD's would reach 0, which cgroup2 refuses.
        assert_eq!(
            cpu_weight_and_quota(Some(CpuAllowance::Percent(1)), Some(0), true),
            (1, None)
        );
        assert_eq!(
            cpu_weight_and_quota(Some(CpuAllowance::Percent(1)), Some(0), false),
            (2, None)
        );
    }

    #[test]
    fn parses_hybrid_and_unified() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n\
36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n\
37 25 0:32 / /sys/fs/cgroup/systemd rw shared:12 - cgroup cgroup rw,xattr,name=systemd\n\
38 25 0:33 / /proc rw - proc proc rw\n";
        let h = parse_mountinfo(hybrid);
        assert_eq!(h.len(), 3);
        assert!(h[0].v2);
        assert_eq!(h[1].controllers, vec!["memory"]);
        assert_eq!(h[2].controllers, vec!["xattr", "name=systemd"]);
        let unified = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let u = parse_mountinfo(unified);
        assert_eq!(u.len(), 1);
        assert!(u[0].v2);
    }
}
