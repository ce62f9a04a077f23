//! A thin cgroupfs layer for v1, hybrid and unified hosts, detected from
//! /proc/self/mountinfo rather than assumed. Instance cgroups live at
//! `<hierarchy>/silo-<tag>/<instance>`: outside silod's and the helpers' own cgroups, and
//! named by silo-priv, never by a path from silod.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use silo_proto::error::{HelperError, HelperResult};
use silo_proto::privileged::{CgroupInfo, CgroupLayout, IdRange, Priv};
use silo_proto::{HelperHello, InstanceName};
use tarpc::context::Context;

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
        })
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

    fn create(&self, name: &InstanceName) -> HelperResult<Vec<PathBuf>> {
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

    fn list(&self) -> Vec<InstanceName> {
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

    fn delete(&self, name: &InstanceName) -> HelperResult<()> {
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

#[derive(Debug)]
struct Inner {
    cg: Cgroups,
    ids: Result<IdRange, HelperError>,
    landlock: String,
}

/// Parses root's entry of an /etc/subuid-style file.
pub fn parse_subid(text: &str) -> Option<IdRange> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        match (f.next(), f.next(), f.next()) {
            (Some("root") | Some("0"), Some(s), Some(c)) => Some(IdRange {
                start: s.parse().ok()?,
                count: c.parse().ok()?,
            }),
            _ => None,
        }
    })
}

/// Root's id range from /etc/subuid and /etc/subgid (read before the jail).
pub fn host_id_range() -> Result<IdRange, HelperError> {
    let u = std::fs::read_to_string("/etc/subuid")
        .ok()
        .and_then(|t| parse_subid(&t));
    let g = std::fs::read_to_string("/etc/subgid")
        .ok()
        .and_then(|t| parse_subid(&t));
    let r = match (u, g) {
        (None, None) => IdRange { start: 1_000_000, count: 1_000_000_000 },
        (Some(u), Some(g)) if u.start == g.start => IdRange { start: u.start, count: u.count.min(g.count) },
        (Some(u), Some(g)) => {
            return Err(HelperError::Unsupported(format!(
                "root's /etc/subuid range starts at {} but /etc/subgid at {}; silo needs them to start at the same id",
                u.start, g.start
            )))
        }
        _ => return Err(HelperError::Unsupported("root has an entry in only one of /etc/subuid and /etc/subgid".into())),
    };
    if r.count < 65536 {
        return Err(HelperError::Unsupported(format!(
            "root's subordinate id range has {} ids; one container needs 65536",
            r.count
        )));
    }
    Ok(r)
}

/// The namespace helper's service.
#[derive(Debug, Clone)]
pub struct PrivServer(Arc<Inner>);

impl PrivServer {
    /// Builds the service.
    pub fn new(cg: Cgroups, ids: Result<IdRange, HelperError>, landlock: String) -> PrivServer {
        PrivServer(Arc::new(Inner { cg, ids, landlock }))
    }
}

impl Priv for PrivServer {
    async fn hello(self, _: Context) -> HelperHello {
        HelperHello {
            helper: "silo-priv".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            tag: self.0.cg.tag.clone(),
            landlock: self.0.landlock.clone(),
        }
    }

    async fn cgroup_layout(self, _: Context) -> HelperResult<CgroupLayout> {
        Ok(self.0.cg.layout())
    }

    async fn create_cgroup(self, _: Context, instance: InstanceName) -> HelperResult<CgroupInfo> {
        let paths = self.0.cg.create(&instance)?;
        tracing::info!(instance = %instance, "created cgroup");
        Ok(CgroupInfo {
            instance,
            paths: paths.iter().map(|p| p.display().to_string()).collect(),
        })
    }

    async fn list_cgroups(self, _: Context) -> HelperResult<Vec<InstanceName>> {
        Ok(self.0.cg.list())
    }

    async fn id_range(self, _: Context) -> HelperResult<IdRange> {
        self.0.ids.clone()
    }

    async fn delete_cgroup(self, _: Context, instance: InstanceName) -> HelperResult<()> {
        self.0.cg.delete(&instance)?;
        tracing::info!(instance = %instance, "deleted cgroup");
        Ok(())
    }
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
        assert_eq!(
            parse_subid("silo:1:2\nroot:100000:65536\n"),
            Some(IdRange {
                start: 100000,
                count: 65536
            })
        );
        let unified = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let u = parse_mountinfo(unified);
        assert_eq!(u.len(), 1);
        assert!(u[0].v2);
    }
}
