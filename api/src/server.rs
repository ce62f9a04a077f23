//! `GET /1.0`, `PUT/PATCH /1.0`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StringMap;

/// The server: `GET /1.0`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Server {
    /// Server configuration; values are strings except the trust password, shown as `true`.
    pub config: BTreeMap<String, Value>,
    /// API extensions the server has.
    pub api_extensions: Vec<String>,
    /// "stable".
    pub api_status: String,
    /// "1.0".
    pub api_version: String,
    /// "trusted" or "untrusted".
    pub auth: String,
    /// "tls" (and "candid", "rbac" in LXD).
    pub auth_methods: Vec<String>,
    /// Who the client is, when the server says.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_user_name: String,
    /// How the client authenticated, when the server says.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_user_method: String,
    /// Whether the server is public.
    pub public: bool,
    /// The host and daemon.
    pub environment: ServerEnvironment,
    /// silo's own facts (not in LXD): state dir, uptime, confinement of each process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silo: Option<SiloServerInfo>,
}

/// The writable part of the server: `PUT/PATCH /1.0`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerPut {
    /// Go's `map[string]any`: LXD takes any JSON value here and checks it per key.
    pub config: BTreeMap<String, Value>,
}

/// The host and daemon, in `Server`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerEnvironment {
    /// Addresses the API listens on.
    pub addresses: Vec<String>,
    /// Architectures instances can have.
    pub architectures: Vec<String>,
    /// The server's certificate (PEM).
    pub certificate: String,
    /// Its SHA-256 fingerprint.
    pub certificate_fingerprint: String,
    /// "silo" (LXD: "lxc").
    pub driver: String,
    /// The driver's version.
    pub driver_version: String,
    /// "nftables" or "xtables".
    pub firewall: String,
    /// Instance types the server supports (LXD 5.0: "container", "virtual-machine").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<String>,
    /// "Linux".
    pub kernel: String,
    /// e.g. "x86_64".
    pub kernel_architecture: String,
    /// Kernel features by name ("true"/"false").
    pub kernel_features: StringMap,
    /// e.g. "6.1.0-13-amd64".
    pub kernel_version: String,
    /// liblxc features by name.
    pub lxc_features: StringMap,
    /// The host's OS.
    pub os_name: String,
    /// Its version.
    pub os_version: String,
    /// The project the request was for.
    pub project: String,
    /// "silo" (LXD: "lxd").
    pub server: String,
    /// Whether clustered.
    pub server_clustered: bool,
    /// "full-mesh", "hub-server" or "hub-client".
    pub server_event_mode: String,
    /// Whether an LTS release.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub server_lts: bool,
    /// The host's name.
    pub server_name: String,
    /// The daemon's pid.
    pub server_pid: i64,
    /// The daemon's version.
    pub server_version: String,
    /// Storage drivers in use, comma-separated.
    pub storage: String,
    /// Their versions.
    pub storage_version: String,
    /// Storage drivers the host can make pools with.
    pub storage_supported_drivers: Vec<ServerStorageDriverInfo>,
}

/// One storage driver in `storage_supported_drivers` (LXD spells these fields capitalized).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerStorageDriverInfo {
    /// "dir", "btrfs".
    #[serde(rename = "Name")]
    pub name: String,
    /// Its version.
    #[serde(rename = "Version")]
    pub version: String,
    /// Whether its pools are remote (shared between hosts).
    #[serde(rename = "Remote")]
    pub remote: bool,
}

/// silo's additions to `GET /1.0`, shown by `silo info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SiloServerInfo {
    /// silod's state directory.
    pub state_dir: String,
    /// Seconds since silod started.
    pub uptime_secs: u64,
    /// The database schema's version.
    pub schema_version: i64,
    /// silod and each helper: pid, ids, capabilities, seccomp, landlock (free-form: what
    /// `/proc` says, or an error).
    pub processes: Vec<Value>,
}
