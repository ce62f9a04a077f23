//! A backup's record.

/// A backup's record; its tarball is `<state>/backups/<instance>/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// The instance.
    pub instance: String,
    /// The backup's name.
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC; empty for never.
    pub expires_at: String,
    /// Made without the instance's snapshots.
    pub instance_only: bool,
    /// Volumes as btrfs send streams.
    pub optimized: bool,
}

/// A custom volume backup's record; its tarball is
/// `<state>/volume-backups/<pool>/<volume>/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeBackup {
    /// The volume's pool.
    pub pool: String,
    /// The volume.
    pub volume: String,
    /// The backup's name.
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC; empty for never.
    pub expires_at: String,
    /// Made without the volume's snapshots.
    pub volume_only: bool,
}
