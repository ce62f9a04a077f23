//! A thin cgroupfs layer for v1, hybrid and unified hosts, detected from
//! /proc/self/mountinfo rather than assumed. Instance cgroups live at
//! `<hierarchy>/silo-<tag>/<instance>`: outside silod's and the helpers' own cgroups, and
//! named by silo-priv, never by a path from silod.

use std::path::{Path, PathBuf};

use silo_proto::error::{HelperError, HelperResult};
use silo_proto::privileged::{CgroupLayout, InstanceStats, Limits};
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
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(io("mkdir", &p, e)),
        }
        if h.controllers.iter().any(|c| c == "cpuset") {
            // A new v1 cpuset group starts with no cpus or mems and takes no tasks until set.
            inherit_cpuset(&h.mount, &p)?;
        }
        if h.v2 {
            // Hand the usual controllers down so instances can be limited; a controller the
            // host does not offer is skipped.
            let avail =
                std::fs::read_to_string(h.mount.join("cgroup.controllers")).unwrap_or_default();
            for c in ["cpu", "memory", "pids", "io"] {
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

    /// The cgroup.procs files a process joins to be in the instance's cgroups.
    pub fn procs_files(&self, name: &InstanceName) -> Vec<String> {
        self.dirs(name)
            .iter()
            .map(|d| d.join("cgroup.procs").display().to_string())
            .collect()
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
        match (self.dir_with(name, "memory", "memory"), l.memory) {
            (Some((d, v2)), m) => {
                let v = m.map_or(if v2 { "max".into() } else { "-1".into() }, |m| {
                    m.to_string()
                });
                write(
                    &d,
                    if v2 {
                        "memory.max"
                    } else {
                        "memory.limit_in_bytes"
                    },
                    &v,
                )?;
            }
            (None, Some(_)) => return Err(need("limits.memory")),
            (None, None) => {}
        }
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
            // rmdir only succeeds on an empty group: other instances keep it in place.
            let _ = std::fs::remove_dir(h.mount.join(&self.parent));
        }
    }
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
