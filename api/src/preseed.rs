//! `silo init`'s preseed: LXD's `InitPreseed`, what `lxd init --dump` prints and `--preseed`
//! takes. Fields are in the order `--dump` prints them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ProfilesPost, StoragePoolsPost, StringMap};

/// The whole preseed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InitPreseed {
    /// Server configuration (Go's `map[string]any`, as in [`crate::ServerPut`]).
    pub config: BTreeMap<String, Value>,
    /// Managed networks.
    pub networks: Vec<InitNetworksProjectPost>,
    /// Storage pools.
    pub storage_pools: Vec<StoragePoolsPost>,
    /// Profiles.
    pub profiles: Vec<ProfilesPost>,
    /// Projects (silo has only "default").
    pub projects: Vec<ProjectsPost>,
    /// Clustering (free-form here: silo refuses any).
    pub cluster: Option<Value>,
}

/// A network in a preseed: [`crate::NetworksPost`] with its project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InitNetworksProjectPost {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
    /// Name.
    pub name: String,
    /// "bridge" (or empty).
    #[serde(rename = "type")]
    pub kind: String,
    /// Project ("" or "default").
    pub project: String,
}

/// A project in a preseed (`POST /1.0/projects` in LXD).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectsPost {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
    /// Name.
    pub name: String,
}
