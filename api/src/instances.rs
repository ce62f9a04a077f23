//! Instances: `/1.0/instances`, `/1.0/instances/<name>`, its state, exec and console.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{DeviceMap, InstanceBackup, InstanceSnapshot, StringMap};

/// An instance: `GET /1.0/instances/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Instance {
    /// e.g. "x86_64".
    pub architecture: String,
    /// Its own configuration.
    pub config: StringMap,
    /// Its own devices.
    pub devices: DeviceMap,
    /// Deleted when stopped.
    pub ephemeral: bool,
    /// Profiles, in the order they apply.
    pub profiles: Vec<String>,
    /// Whether it has stateful snapshots.
    pub stateful: bool,
    /// Description.
    pub description: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Configuration with the profiles applied.
    pub expanded_config: StringMap,
    /// Devices with the profiles applied.
    pub expanded_devices: DeviceMap,
    /// Name.
    pub name: String,
    /// "Running", "Stopped", ...
    pub status: String,
    /// 103 running, 102 stopped, ...
    pub status_code: i64,
    /// Last start (RFC 3339).
    pub last_used_at: String,
    /// Cluster member ("none" alone).
    pub location: String,
    /// "container".
    #[serde(rename = "type")]
    pub kind: String,
    /// "default".
    pub project: String,
    /// A snapshot to restore (PUT only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restore: String,
}

/// An instance with its state, snapshots and backups: `?recursion=2`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceFull {
    /// See [`Instance`].
    pub architecture: String,
    /// See [`Instance`].
    pub config: StringMap,
    /// See [`Instance`].
    pub devices: DeviceMap,
    /// See [`Instance`].
    pub ephemeral: bool,
    /// See [`Instance`].
    pub profiles: Vec<String>,
    /// See [`Instance`].
    pub stateful: bool,
    /// See [`Instance`].
    pub description: String,
    /// See [`Instance`].
    pub created_at: String,
    /// See [`Instance`].
    pub expanded_config: StringMap,
    /// See [`Instance`].
    pub expanded_devices: DeviceMap,
    /// See [`Instance`].
    pub name: String,
    /// See [`Instance`].
    pub status: String,
    /// See [`Instance`].
    pub status_code: i64,
    /// See [`Instance`].
    pub last_used_at: String,
    /// See [`Instance`].
    pub location: String,
    /// See [`Instance`].
    #[serde(rename = "type")]
    pub kind: String,
    /// See [`Instance`].
    pub project: String,
    /// See [`Instance`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restore: String,
    /// Its state.
    pub state: Option<InstanceState>,
    /// Its snapshots.
    pub snapshots: Vec<InstanceSnapshot>,
    /// Its backups.
    pub backups: Vec<InstanceBackup>,
}

impl InstanceFull {
    /// The instance without state, snapshots and backups.
    pub fn instance(&self) -> Instance {
        Instance {
            architecture: self.architecture.clone(),
            config: self.config.clone(),
            devices: self.devices.clone(),
            ephemeral: self.ephemeral,
            profiles: self.profiles.clone(),
            stateful: self.stateful,
            description: self.description.clone(),
            created_at: self.created_at.clone(),
            expanded_config: self.expanded_config.clone(),
            expanded_devices: self.expanded_devices.clone(),
            name: self.name.clone(),
            status: self.status.clone(),
            status_code: self.status_code,
            last_used_at: self.last_used_at.clone(),
            location: self.location.clone(),
            kind: self.kind.clone(),
            project: self.project.clone(),
            restore: self.restore.clone(),
        }
    }
}

/// The writable part of an instance: `PUT/PATCH /1.0/instances/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstancePut {
    /// e.g. "x86_64".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    /// Configuration.
    pub config: StringMap,
    /// Devices.
    pub devices: DeviceMap,
    /// Deleted when stopped.
    pub ephemeral: bool,
    /// Profiles.
    pub profiles: Vec<String>,
    /// Whether stateful.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub stateful: bool,
    /// Description.
    pub description: String,
    /// A snapshot to restore instead of the above.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restore: String,
}

/// What LXD's client sends back after a GET (`Instance.Writable()`).
impl From<&Instance> for InstancePut {
    fn from(i: &Instance) -> Self {
        InstancePut {
            architecture: i.architecture.clone(),
            config: i.config.clone(),
            devices: i.devices.clone(),
            ephemeral: i.ephemeral,
            profiles: i.profiles.clone(),
            stateful: i.stateful,
            description: i.description.clone(),
            restore: String::new(),
        }
    }
}

/// `POST /1.0/instances`: create an instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstancesPost {
    /// Name (generated when empty).
    pub name: String,
    /// "container" (or empty).
    #[serde(rename = "type")]
    pub kind: String,
    /// Profiles; `None` (Go's nil slice, `null` or absent) means `["default"]`, `[]` none.
    pub profiles: Option<Vec<String>>,
    /// Configuration.
    pub config: StringMap,
    /// Devices.
    pub devices: DeviceMap,
    /// Deleted when stopped.
    pub ephemeral: bool,
    /// Description.
    pub description: String,
    /// Where it comes from.
    pub source: InstanceSource,
    /// e.g. "x86_64".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    /// A cloud instance type (LXD's `limits.*` shorthand).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub instance_type: String,
    /// Whether stateful.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub stateful: bool,
    /// Not used on create.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restore: String,
}

/// Where a new instance comes from, in [`InstancesPost`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSource {
    /// "image", "none", "copy" (or LXD's "migration").
    #[serde(rename = "type")]
    pub kind: String,
    /// Image fingerprint (or a prefix).
    pub fingerprint: String,
    /// Image alias.
    pub alias: String,
    /// Remote image server.
    pub server: String,
    /// With type "copy": the instance (`c1`) or snapshot (`c1/snap0`) to copy.
    pub source: String,
    /// With type "copy": leave the snapshots out.
    pub instance_only: bool,
    /// With type "copy": update an existing copy.
    pub refresh: bool,
    /// Older name of `instance_only`.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub container_only: bool,
    /// Image properties to match (instead of an alias or fingerprint).
    #[serde(skip_serializing_if = "StringMap::is_empty")]
    pub properties: StringMap,
    /// Remote server's certificate.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificate: String,
    /// Remote protocol ("lxd", "simplestreams").
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Secret for a private image.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret: String,
    /// Migration mode ("pull", "push").
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Migration operation URL.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub operation: String,
    /// Migration secrets.
    #[serde(skip_serializing_if = "StringMap::is_empty")]
    pub secrets: StringMap,
    /// Base image of a migrated instance.
    #[serde(rename = "base-image", skip_serializing_if = "String::is_empty")]
    pub base_image: String,
    /// Live migration.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub live: bool,
    /// Source project.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project: String,
    /// Copy despite inconsistent snapshots.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub allow_inconsistent: bool,
}

/// `POST /1.0/instances/<name>`: rename (or migrate, which silo refuses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstancePost {
    /// New name.
    pub name: String,
    /// Migrate to another server.
    pub migration: bool,
    /// Live migration.
    pub live: bool,
    /// Leave the snapshots out.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub instance_only: bool,
    /// Older name of `instance_only`.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub container_only: bool,
    /// Target of a push migration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<InstancePostTarget>,
    /// Move to another pool.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pool: String,
    /// Move to another project.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project: String,
    /// Migrate despite inconsistent snapshots.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub allow_inconsistent: bool,
    /// Configuration to apply on the target (LXD spells it capitalized).
    #[serde(rename = "Config", skip_serializing_if = "StringMap::is_empty")]
    pub config: StringMap,
    /// Devices to apply on the target.
    #[serde(rename = "Devices", skip_serializing_if = "DeviceMap::is_empty")]
    pub devices: DeviceMap,
    /// Profiles to apply on the target.
    #[serde(rename = "Profiles", skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
}

/// Where a push migration goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstancePostTarget {
    /// The target's certificate.
    pub certificate: String,
    /// The target's operation URL.
    pub operation: String,
    /// Its websocket secrets.
    #[serde(rename = "secrets")]
    pub websockets: StringMap,
}

/// `GET /1.0/instances/<name>/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceState {
    /// "Running", "Stopped", ...
    pub status: String,
    /// 103 running, 102 stopped, ...
    pub status_code: i64,
    /// Disk use by device.
    pub disk: BTreeMap<String, InstanceStateDisk>,
    /// Memory use.
    pub memory: InstanceStateMemory,
    /// Interfaces by name; `None` (null) while stopped.
    pub network: Option<BTreeMap<String, InstanceStateNetwork>>,
    /// Init's pid on the host (0: stopped).
    pub pid: i64,
    /// Number of processes.
    pub processes: i64,
    /// CPU use.
    pub cpu: InstanceStateCPU,
}

/// One disk in [`InstanceState`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateDisk {
    /// Bytes used.
    pub usage: i64,
    /// Bytes available in all (0: unknown).
    pub total: i64,
}

/// Memory in [`InstanceState`], in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateMemory {
    /// In use.
    pub usage: i64,
    /// Most ever used.
    pub usage_peak: i64,
    /// Swap in use.
    pub swap_usage: i64,
    /// Most swap ever used.
    pub swap_usage_peak: i64,
    /// The limit (LXD's `instance_state_memory_total`; silo leaves it out).
    #[serde(skip_serializing_if = "crate::is_zero")]
    pub total: i64,
}

/// CPU in [`InstanceState`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateCPU {
    /// Nanoseconds used.
    pub usage: i64,
}

/// One interface in [`InstanceState`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateNetwork {
    /// Its addresses.
    pub addresses: Vec<InstanceStateNetworkAddress>,
    /// Traffic.
    pub counters: InstanceStateNetworkCounters,
    /// MAC address.
    pub hwaddr: String,
    /// The host side's name.
    pub host_name: String,
    /// MTU.
    pub mtu: i64,
    /// "up" or "down".
    pub state: String,
    /// "broadcast", "loopback", ...
    #[serde(rename = "type")]
    pub kind: String,
}

/// One address of an interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateNetworkAddress {
    /// "inet" or "inet6".
    pub family: String,
    /// The address.
    pub address: String,
    /// Prefix length.
    pub netmask: String,
    /// "global", "link", "local".
    pub scope: String,
}

/// Traffic of an interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateNetworkCounters {
    /// Bytes in.
    pub bytes_received: i64,
    /// Bytes out.
    pub bytes_sent: i64,
    /// Packets in.
    pub packets_received: i64,
    /// Packets out.
    pub packets_sent: i64,
    /// Errors in.
    pub errors_received: i64,
    /// Errors out.
    pub errors_sent: i64,
    /// Dropped out.
    pub packets_dropped_outbound: i64,
    /// Dropped in.
    pub packets_dropped_inbound: i64,
}

/// `PUT /1.0/instances/<name>/state`: start, stop, restart, freeze, unfreeze.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStatePut {
    /// "start", "stop", "restart", "freeze", "unfreeze".
    pub action: String,
    /// Seconds to wait for a clean stop; -1 when absent (wait as long as it takes).
    pub timeout: i64,
    /// Kill instead of a clean stop.
    pub force: bool,
    /// Keep the running state (refused: no CRIU).
    pub stateful: bool,
}

/// Absent, `timeout` is -1, as silod has always read it (LXD's zero value is 0, which its own
/// client never sends: it sends -1 or a number). A `null` timeout is 0, the zero value.
impl Default for InstanceStatePut {
    fn default() -> Self {
        InstanceStatePut {
            action: String::new(),
            timeout: -1,
            force: false,
            stateful: false,
        }
    }
}

/// `POST /1.0/instances/<name>/exec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceExecPost {
    /// argv.
    pub command: Vec<String>,
    /// Extra environment.
    pub environment: StringMap,
    /// With a pty.
    pub interactive: bool,
    /// Streams over websockets (else: discarded or recorded).
    #[serde(rename = "wait-for-websocket")]
    pub wait_for_websocket: bool,
    /// Keep stdout and stderr in log files.
    #[serde(rename = "record-output")]
    pub record_output: bool,
    /// Terminal width (Go's int64: a client may send anything, the server checks).
    pub width: i64,
    /// Terminal height.
    pub height: i64,
    /// User id.
    pub user: u32,
    /// Group id.
    pub group: u32,
    /// Working directory.
    pub cwd: String,
}

/// `POST /1.0/instances/<name>/console`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceConsolePost {
    /// Terminal width.
    pub width: i64,
    /// Terminal height.
    pub height: i64,
    /// "console" (LXD also has "vga").
    #[serde(rename = "type")]
    pub kind: String,
}

/// The metadata of an exec operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceExecMetadata {
    /// The command.
    pub command: Vec<String>,
    /// Its whole environment.
    pub environment: StringMap,
    /// With a pty.
    pub interactive: bool,
    /// The secret of each websocket by stream ("0", "1", "2", "control"), with
    /// `wait-for-websocket`.
    #[serde(skip_serializing_if = "StringMap::is_empty")]
    pub fds: StringMap,
    /// Exit code, once done.
    #[serde(rename = "return", skip_serializing_if = "Option::is_none")]
    pub return_code: Option<i64>,
    /// With `record-output`: the log file URL of each stream ("1", "2").
    #[serde(skip_serializing_if = "StringMap::is_empty")]
    pub output: StringMap,
}

/// The metadata of a console operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceConsoleMetadata {
    /// The secret of each websocket by stream ("0", "control").
    pub fds: StringMap,
}

/// One message on an exec or console operation's `control` websocket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceExecControl {
    /// "window-resize" or "signal".
    pub command: String,
    /// With "window-resize": "width" and "height".
    #[serde(skip_serializing_if = "StringMap::is_empty")]
    pub args: StringMap,
    /// With "signal": its number.
    #[serde(skip_serializing_if = "crate::is_zero")]
    pub signal: i64,
}

impl InstanceExecControl {
    /// A terminal's new size.
    pub fn resize(width: u16, height: u16) -> Self {
        InstanceExecControl {
            command: "window-resize".into(),
            args: [
                ("width".to_string(), width.to_string()),
                ("height".to_string(), height.to_string()),
            ]
            .into(),
            signal: 0,
        }
    }

    /// A signal for the command.
    pub fn signal(signal: i32) -> Self {
        InstanceExecControl {
            command: "signal".into(),
            args: StringMap::new(),
            signal: i64::from(signal),
        }
    }
}

/// `GET/PUT/PATCH /1.0/instances/<name>/metadata`: the instance's `metadata.yaml` (LXD's
/// `api.ImageMetadata`; the same keys in YAML and JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageMetadata {
    /// e.g. "x86_64".
    pub architecture: String,
    /// Unix seconds.
    pub creation_date: i64,
    /// Unix seconds (0: none).
    pub expiry_date: i64,
    /// os, release, description...
    pub properties: StringMap,
    /// Templates by the path they render to.
    pub templates: BTreeMap<String, ImageMetadataTemplate>,
}

/// One template entry of [`ImageMetadata`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageMetadataTemplate {
    /// "create", "copy", "start".
    pub when: Vec<String>,
    /// Only when the file is missing.
    pub create_only: bool,
    /// The file under `templates/`.
    pub template: String,
    /// Extra properties.
    pub properties: StringMap,
}
