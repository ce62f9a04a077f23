//! `silo-store`: storage pools, volumes, image unpacking, mounts, snapshots.
//!
//! Every path a request names is a validated name resolved by the helper beneath its own
//! root (`<state-dir>/storage-pools`, `<state-dir>/disks`), never a path chosen by silod.

use serde::{Deserialize, Serialize};

use crate::error::HelperResult;
use crate::names::{ImageFingerprint, PoolName, VolumeName};
use crate::HelperHello;

/// The storage drivers silo-store knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolDriver {
    /// Plain directories beneath the state dir.
    Dir,
    /// btrfs on a sparse loop file of `size` bytes that silo-store creates, formats and
    /// mounts on the pool directory; volumes are subvolumes, instances are snapshots.
    Btrfs {
        /// Bytes of the loop file (within the policy's max_loop_file_size).
        size: u64,
    },
    /// btrfs on an existing host directory of a btrfs filesystem, bind-mounted onto the pool
    /// directory; only paths the root policy lists in `host_paths`.
    BtrfsPath {
        /// The host directory.
        source: crate::types::HostPath,
    },
}

/// The kinds of volume a pool holds, as LXD names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeKind {
    /// An instance's root filesystem.
    Container,
    /// An unpacked image, cloned into instances.
    Image,
    /// A user-created volume.
    Custom,
}

impl VolumeKind {
    /// The directory name LXD uses for this kind inside a pool.
    pub fn dir_name(self) -> &'static str {
        match self {
            VolumeKind::Container => "containers",
            VolumeKind::Image => "images",
            VolumeKind::Custom => "custom",
        }
    }

    /// All kinds.
    pub const ALL: [VolumeKind; 3] = [VolumeKind::Container, VolumeKind::Image, VolumeKind::Custom];
}

/// What silo-store reports about a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    /// The pool.
    pub name: PoolName,
    /// Its driver.
    pub driver: PoolDriver,
    /// Total bytes of the filesystem holding it.
    pub space_total: u64,
    /// Bytes used on that filesystem.
    pub space_used: u64,
}

/// A sparse backing file for a loop-mounted pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopFileInfo {
    /// The pool it backs.
    pub pool: PoolName,
    /// Its apparent size in bytes.
    pub size: u64,
}

/// What unpacking an image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UnpackReport {
    /// Members unpacked.
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Device nodes skipped (silo provides /dev itself).
    pub skipped_devices: u64,
}

/// The storage helper's RPC surface.
#[tarpc::service]
pub trait Store {
    /// Who answers, for `GET /1.0`.
    async fn hello() -> HelperHello;
    /// Creates a pool's directory tree (and for btrfs its loop file, filesystem and mount).
    /// Refuses an existing pool; nothing is left on failure.
    async fn create_pool(pool: PoolName, driver: PoolDriver) -> HelperResult<PoolInfo>;
    /// Reports a pool's driver and space figures.
    async fn pool_info(pool: PoolName) -> HelperResult<PoolInfo>;
    /// Removes an empty pool. Refuses while any volume exists in it.
    async fn delete_pool(pool: PoolName) -> HelperResult<()>;
    /// Creates an empty volume directory, owned by root, mode 0711.
    async fn create_volume(
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
    ) -> HelperResult<()>;
    /// Lists the volumes of one kind in a pool.
    async fn list_volumes(pool: PoolName, kind: VolumeKind) -> HelperResult<Vec<VolumeName>>;
    /// Bytes used by a volume, counted without following symlinks or crossing mounts.
    async fn volume_usage(
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
    ) -> HelperResult<u64>;
    /// Removes a volume and everything in it, never following a symlink out of it.
    async fn delete_volume(
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
    ) -> HelperResult<()>;
    /// Creates the sparse backing file of a loop-backed pool, within the policy's size limit
    /// and the free space of the state dir's filesystem.
    async fn create_loop_file(pool: PoolName, size: u64) -> HelperResult<LoopFileInfo>;
    /// Removes a pool's backing file.
    async fn delete_loop_file(pool: PoolName) -> HelperResult<()>;
    /// Mounts a loop-backed pool again if it is not mounted (at silod's start, after a reboot).
    async fn mount_pool(pool: PoolName, driver: PoolDriver) -> HelperResult<PoolInfo>;
    /// Unpacks the image silod stored as `<state-dir>/images/<fp>` (plus `<fp>.rootfs` for a
    /// split image) into the pool's image volume `<fp>`, in a child landlocked to that volume.
    /// Bounded by the policy's max_image_size and max_image_entries; nothing is left on failure.
    async fn unpack_image(
        pool: PoolName,
        fingerprint: ImageFingerprint,
    ) -> HelperResult<UnpackReport>;
    /// Makes volume `dst` of kind `dst_kind` a copy of `src` (reflinked where the filesystem
    /// can), in a child landlocked to the two volumes. Refuses an existing `dst`.
    async fn copy_volume(
        pool: PoolName,
        src_kind: VolumeKind,
        src: VolumeName,
        dst_kind: VolumeKind,
        dst: VolumeName,
    ) -> HelperResult<u64>;
}
