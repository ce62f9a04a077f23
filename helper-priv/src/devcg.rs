//! Which device nodes an instance may open: the v1 `devices` controller where the host has
//! one (LXD's default list, plus each host device given), else on cgroup2 a BPF device
//! program attached to the instance's group.

use std::path::Path;

use silo_proto::error::{HelperError, HelperResult};
use silo_proto::privileged::NodeKind;
use silo_proto::InstanceName;

use crate::cgroups::Cgroups;

/// LXD's default: create any node (useless without access), use only these.
pub const DEFAULT_RULES: &[Rule] = &[
    Rule::any('c', "m"),
    Rule::any('b', "m"),
    Rule::one('c', 1, 3),    // null
    Rule::one('c', 1, 5),    // zero
    Rule::one('c', 1, 7),    // full
    Rule::one('c', 1, 8),    // random
    Rule::one('c', 1, 9),    // urandom
    Rule::one('c', 5, 0),    // tty
    Rule::one('c', 5, 1),    // console
    Rule::one('c', 5, 2),    // ptmx
    Rule::one('c', 10, 229), // fuse
    Rule::one('c', 10, 200), // tun
    // Pseudo-terminal slaves: the instance's own devpts, and the console (a host pty).
    Rule::major('c', 136),
    Rule::major('c', 137),
    Rule::major('c', 138),
    Rule::major('c', 139),
    Rule::major('c', 140),
    Rule::major('c', 141),
    Rule::major('c', 142),
    Rule::major('c', 143),
];

/// One rule: type `c`/`b`, numbers (`None` = any), access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: &'static str,
}

impl Rule {
    const fn any(kind: char, access: &'static str) -> Rule {
        Rule {
            kind,
            major: None,
            minor: None,
            access,
        }
    }
    const fn major(kind: char, major: u32) -> Rule {
        Rule {
            kind,
            major: Some(major),
            minor: None,
            access: "rwm",
        }
    }
    const fn one(kind: char, major: u32, minor: u32) -> Rule {
        Rule {
            kind,
            major: Some(major),
            minor: Some(minor),
            access: "rwm",
        }
    }
    /// A host device's node.
    pub fn node(kind: NodeKind, major: u32, minor: u32) -> Rule {
        let k = match kind {
            NodeKind::Char => 'c',
            NodeKind::Block => 'b',
        };
        Rule::one(k, major, minor)
    }
    /// As the v1 controller writes it.
    pub fn v1(&self) -> String {
        let n = |x: Option<u32>| x.map_or("*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

fn write(dir: &Path, file: &str, v: &str) -> HelperResult<()> {
    std::fs::write(dir.join(file), v)
        .map_err(|e| HelperError::io("write", dir.join(file).display(), e))
}

/// Gives a new instance's group the default list (before anything runs in it).
pub fn restrict(cg: &Cgroups, name: &InstanceName, extra: &[Rule]) -> HelperResult<()> {
    if let Some(d) = cg.v1_dir(name, "devices") {
        write(&d, "devices.deny", "a")?;
        for r in DEFAULT_RULES.iter().chain(extra) {
            write(&d, "devices.allow", &r.v1())?;
        }
        return Ok(());
    }
    if let Some(d) = cg.v2_dir(name) {
        let rules: Vec<Rule> = DEFAULT_RULES.iter().chain(extra).copied().collect();
        return crate::devbpf::attach(&d, &rules);
    }
    Ok(())
}

/// Lets a running instance use one more node, or takes it back.
pub fn set(cg: &Cgroups, name: &InstanceName, extra: &[Rule]) -> HelperResult<()> {
    if let Some(d) = cg.v1_dir(name, "devices") {
        // The v1 list is edited in place; a deny of a rule the list holds takes it out.
        let listed = std::fs::read_to_string(d.join("devices.list")).unwrap_or_default();
        for line in listed.lines() {
            let keep = DEFAULT_RULES.iter().chain(extra).any(|r| r.v1() == line);
            if !keep {
                let _ = write(&d, "devices.deny", line);
            }
        }
        for r in extra {
            write(&d, "devices.allow", &r.v1())?;
        }
        return Ok(());
    }
    if let Some(d) = cg.v2_dir(name) {
        let rules: Vec<Rule> = DEFAULT_RULES.iter().chain(extra).copied().collect();
        return crate::devbpf::attach(&d, &rules);
    }
    Ok(())
}
