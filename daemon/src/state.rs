//! The daemon's shared state, handed to every API handler.

use std::path::PathBuf;
use std::time::Instant;

use crate::db::Db;
use crate::events::Events;
use crate::helpers::Helpers;
use crate::operations::Operations;

/// Facts gathered once at start (before landlock narrows what silod can read).
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// uname -r.
    pub kernel_version: String,
    /// uname -m.
    pub kernel_architecture: String,
    /// uname -n.
    pub hostname: String,
    /// os-release NAME.
    pub os_name: String,
    /// os-release VERSION_ID.
    pub os_version: String,
}

impl HostFacts {
    /// Reads uname and os-release.
    pub fn gather() -> HostFacts {
        let u = nix::sys::utsname::uname().ok();
        let s = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            u.as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let osr = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        let field = |k: &str| {
            osr.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        HostFacts {
            kernel_version: s(|u| u.release()),
            kernel_architecture: s(|u| u.machine()),
            hostname: s(|u| u.nodename()),
            os_name: field("NAME"),
            os_version: field("VERSION_ID"),
        }
    }
}

/// Everything handlers share.
#[derive(Debug)]
pub struct Daemon {
    /// The three helpers.
    pub helpers: Helpers,
    /// Background operations.
    pub ops: Operations,
    /// The events fan-out.
    pub events: Events,
    /// The database.
    pub db: Db,
    /// The state dir.
    pub state_dir: PathBuf,
    /// When silod started.
    pub started: Instant,
    /// Host facts.
    pub host: HostFacts,
    /// What silod's own landlock reported.
    pub landlock: String,
    /// One unpack per (pool, image) at a time.
    pub image_locks: crate::storage::ImageLocks,
    /// Instance names being created.
    pub creating: crate::instances::Creating,
    /// Instances being stopped on request.
    pub stopping: crate::runtime::Stopping,
    /// Websockets of exec and console operations, by secret.
    pub sockets: crate::exec::Sockets,
}

impl Daemon {
    /// What instance operations need.
    pub fn instance_ctx(&self) -> crate::instances::Ctx {
        crate::instances::Ctx {
            db: self.db.clone(),
            helpers: self.helpers.clone(),
            locks: self.image_locks.clone(),
            creating: self.creating.clone(),
            events: self.events.clone(),
            stopping: self.stopping.clone(),
            logs: Some(self.state_dir.join("logs")),
        }
    }
}
