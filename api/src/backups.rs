//! Backups: `/1.0/instances/<name>/backups[/<backup>]`.

use serde::{Deserialize, Serialize};

/// A backup: `GET /1.0/instances/<name>/backups/<backup>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceBackup {
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: String,
    /// Expiry ([`crate::ZERO_TIME`]: never).
    pub expires_at: String,
    /// Without the snapshots.
    pub instance_only: bool,
    /// Older name of `instance_only` (same value).
    pub container_only: bool,
    /// In the pool driver's own format (btrfs send streams).
    pub optimized_storage: bool,
}

/// `POST /1.0/instances/<name>/backups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceBackupsPost {
    /// Name (generated when empty).
    pub name: String,
    /// Expiry (RFC 3339; empty: never).
    pub expires_at: String,
    /// Without the snapshots.
    pub instance_only: bool,
    /// Older name of `instance_only`.
    pub container_only: bool,
    /// In the pool driver's own format.
    pub optimized_storage: bool,
    /// "gzip" (default), "xz", "zstd", "none".
    pub compression_algorithm: String,
}

/// `POST /1.0/instances/<name>/backups/<backup>`: rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceBackupPost {
    /// New name.
    pub name: String,
}

/// A custom volume's backup: `GET /1.0/storage-pools/<p>/volumes/custom/<v>/backups/<b>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePoolVolumeBackup {
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: String,
    /// Expiry ([`crate::ZERO_TIME`]: never).
    pub expires_at: String,
    /// Without the snapshots.
    pub volume_only: bool,
    /// In the pool driver's own format (never, here).
    pub optimized_storage: bool,
}

/// `POST /1.0/storage-pools/<p>/volumes/custom/<v>/backups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePoolVolumeBackupsPost {
    /// Name (generated when empty).
    pub name: String,
    /// Expiry (RFC 3339; empty or Go's zero time: never).
    pub expires_at: String,
    /// Without the snapshots.
    pub volume_only: bool,
    /// In the pool driver's own format (refused here).
    pub optimized_storage: bool,
    /// "gzip" (default), "xz", "zstd", "none".
    pub compression_algorithm: String,
}
