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

/// The host id range instances' user namespaces are carved from (root's /etc/subuid and
/// /etc/subgid entries, or LXD's default 1000000:1000000000 when there are none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First host id.
    pub start: u64,
    /// How many.
    pub count: u64,
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
    /// The id range instances are allocated from.
    async fn id_range() -> HelperResult<IdRange>;
}
