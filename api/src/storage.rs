//! Storage pools and volumes: `/1.0/storage-pools[/<pool>[/volumes[/<type>[/<name>]]]]`.

use serde::{Deserialize, Serialize};

use crate::StringMap;

/// A pool: `GET /1.0/storage-pools/<pool>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePool {
    /// Name.
    pub name: String,
    /// "dir" or "btrfs".
    pub driver: String,
    /// Description.
    pub description: String,
    /// Configuration.
    pub config: StringMap,
    /// "Created".
    pub status: String,
    /// Cluster members ("none" alone).
    pub locations: Vec<String>,
    /// Instances, images, profiles and volumes using it (URLs).
    pub used_by: Vec<String>,
}

/// The writable part of a pool: `PUT/PATCH /1.0/storage-pools/<pool>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePoolPut {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
}

impl From<&StoragePool> for StoragePoolPut {
    fn from(p: &StoragePool) -> Self {
        StoragePoolPut {
            config: p.config.clone(),
            description: p.description.clone(),
        }
    }
}

/// `POST /1.0/storage-pools`; also a pool in `silo init`'s preseed (fields in the order
/// `--dump` prints them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePoolsPost {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
    /// Name.
    pub name: String,
    /// "dir" or "btrfs".
    pub driver: String,
}

/// `GET /1.0/storage-pools/<pool>/resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStoragePool {
    /// Space in bytes.
    pub space: ResourcesStoragePoolSpace,
    /// Inodes.
    pub inodes: ResourcesStoragePoolInodes,
}

/// Space of a pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStoragePoolSpace {
    /// Bytes used.
    pub used: u64,
    /// Bytes in all.
    pub total: u64,
}

/// Inodes of a pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStoragePoolInodes {
    /// Inodes used.
    pub used: u64,
    /// Inodes in all.
    pub total: u64,
}

/// A volume: `GET /1.0/storage-pools/<pool>/volumes/<type>/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolume {
    /// Name.
    pub name: String,
    /// "container", "image" or "custom".
    #[serde(rename = "type")]
    pub kind: String,
    /// "filesystem" (LXD also has "block").
    pub content_type: String,
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
    /// Cluster member ("none").
    pub location: String,
    /// What uses it (URLs).
    pub used_by: Vec<String>,
    /// Creation time (silo leaves it out).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    /// Project (silo leaves it out).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project: String,
}

/// The writable part of a volume: `PUT/PATCH /1.0/storage-pools/<pool>/volumes/<type>/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumePut {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
    /// A snapshot to restore.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restore: String,
}

/// `POST /1.0/storage-pools/<pool>/volumes[/custom]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumesPost {
    /// Name.
    pub name: String,
    /// "custom" (or empty).
    #[serde(rename = "type")]
    pub kind: String,
    /// Description.
    pub description: String,
    /// Configuration.
    pub config: StringMap,
    /// "filesystem" or "block".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    /// Copy or migrate from another volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<StorageVolumeSource>,
}

/// Where a new volume comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSource {
    /// Volume to copy.
    pub name: String,
    /// "copy" or "migration".
    #[serde(rename = "type")]
    pub kind: String,
    /// Pool of the volume to copy.
    pub pool: String,
    /// Leave the snapshots out.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub volume_only: bool,
    /// Update an existing copy.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub refresh: bool,
    /// Migration: the source server's certificate (PEM).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificate: String,
    /// Migration: "pull" or "push".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Migration (pull): the source's operation URL.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub operation: String,
    /// Migration (pull): the source's websocket secrets.
    #[serde(rename = "secrets", skip_serializing_if = "StringMap::is_empty")]
    pub websockets: StringMap,
}

/// `POST /1.0/storage-pools/<pool>/volumes/<type>/<name>`: rename, move to another pool, or
/// send to another host (`migration`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumePost {
    /// New name.
    pub name: String,
    /// Move to this pool.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pool: String,
    /// Send to another host.
    pub migration: bool,
    /// Push: where to.
    pub target: Option<StorageVolumePostTarget>,
    /// Leave the snapshots out.
    pub volume_only: bool,
    /// Move to this project.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project: String,
}

/// Where a pushed volume goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumePostTarget {
    /// The target's certificate (PEM).
    pub certificate: String,
    /// The target's operation URL.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub operation: String,
    /// Its websocket secrets.
    #[serde(rename = "secrets", skip_serializing_if = "StringMap::is_empty")]
    pub websockets: StringMap,
}

/// A custom volume's snapshot: `GET .../volumes/custom/<v>/snapshots/<s>` (`name` is the
/// snapshot's own there, `<v>/<s>` in a recursive listing, as LXD answers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshot {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The volume's config when it was taken.
    pub config: StringMap,
    /// "filesystem".
    pub content_type: String,
    /// Creation time.
    pub created_at: String,
    /// When it is deleted (null: never).
    pub expires_at: Option<String>,
}

/// The writable part of a volume snapshot: `PUT/PATCH .../snapshots/<s>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshotPut {
    /// Description.
    pub description: String,
    /// When it is deleted (null or Go's zero time: never).
    pub expires_at: Option<String>,
}

/// `POST .../volumes/custom/<v>/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshotsPost {
    /// Name (empty: `snap<N>`).
    pub name: String,
    /// When it is deleted (null: from the volume's `snapshots.expiry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `POST .../snapshots/<s>`: a rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshotPost {
    /// New name.
    pub name: String,
}

/// `GET .../volumes/custom/<v>/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeState {
    /// Space figures.
    pub usage: StorageVolumeStateUsage,
}

/// A volume's space figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeStateUsage {
    /// Bytes used (left out when 0, as LXD).
    #[serde(skip_serializing_if = "crate::is_zero_u64")]
    pub used: u64,
    /// The quota in bytes (0: none).
    pub total: i64,
}
