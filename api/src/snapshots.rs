//! Snapshots: `/1.0/instances/<name>/snapshots[/<snap>]`.

use serde::{Deserialize, Serialize};

use crate::{DeviceMap, InstancePostTarget, StringMap};

/// A snapshot: `GET /1.0/instances/<name>/snapshots/<snap>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSnapshot {
    /// e.g. "x86_64".
    pub architecture: String,
    /// The instance's configuration when taken.
    pub config: StringMap,
    /// Creation time.
    pub created_at: String,
    /// Description.
    pub description: String,
    /// The instance's devices when taken.
    pub devices: DeviceMap,
    /// Always false for snapshots.
    pub ephemeral: bool,
    /// Configuration with the profiles applied.
    pub expanded_config: StringMap,
    /// Devices with the profiles applied.
    pub expanded_devices: DeviceMap,
    /// Expiry ([`crate::ZERO_TIME`]: never).
    pub expires_at: String,
    /// Last use.
    pub last_used_at: String,
    /// The snapshot's own name (without the instance's).
    pub name: String,
    /// The instance's profiles when taken.
    pub profiles: Vec<String>,
    /// Whether it holds running state.
    pub stateful: bool,
    /// Bytes on disk (-1: unknown).
    pub size: i64,
}

/// `POST /1.0/instances/<name>/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSnapshotsPost {
    /// Name (next free `snapN` when empty).
    pub name: String,
    /// Keep the running state (refused: no CRIU).
    pub stateful: bool,
    /// Expiry (RFC 3339); `None` or empty: the instance's `snapshots.expiry`.
    pub expires_at: Option<String>,
}

/// `POST /1.0/instances/<name>/snapshots/<snap>`: rename (or migrate, which silo refuses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSnapshotPost {
    /// New name.
    pub name: String,
    /// Migrate to another server.
    pub migration: bool,
    /// Live migration.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub live: bool,
    /// Target of a push migration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<InstancePostTarget>,
}

/// `PUT/PATCH /1.0/instances/<name>/snapshots/<snap>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSnapshotPut {
    /// Expiry (RFC 3339).
    pub expires_at: String,
}
