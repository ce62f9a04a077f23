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
    /// Plain directories in an existing, empty host directory (LXD's `dir` pool with
    /// `source`), bind-mounted onto the pool directory; only paths the root policy lists in
    /// `host_paths`, owned by root and writable by nobody else.
    DirPath {
        /// The host directory.
        source: crate::types::HostPath,
    },
    /// btrfs that silo-store formats on a whole block device (a disk or partition) and mounts
    /// on the pool directory; only devices the root policy lists in `block_devices`, and only
    /// when they hold no filesystem yet (mkfs.btrfs is never forced).
    BtrfsDevice {
        /// The device node, e.g. `/dev/sdb`.
        source: crate::types::HostPath,
    },
}

/// One of silod's directories that a custom volume may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateDir {
    /// `<state>/images` (`storage.images_volume`).
    Images,
    /// `<state>/backups` (`storage.backups_volume`).
    Backups,
}

impl StateDir {
    /// The directory's name in the state dir and in the volume.
    pub fn name(self) -> &'static str {
        match self {
            StateDir::Images => "images",
            StateDir::Backups => "backups",
        }
    }

    /// Where silod stages a move into a volume.
    pub fn staging_name(self) -> &'static str {
        match self {
            StateDir::Images => "images.new",
            StateDir::Backups => "backups.new",
        }
    }
}

/// How a published image is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackCompression {
    /// A plain tarball.
    None,
    /// gzip (LXD's default).
    Gzip,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

/// What a published image's metadata.yaml says (its templates come from the volume's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackMeta {
    /// Architecture.
    pub architecture: String,
    /// Unix seconds.
    pub creation_date: i64,
    /// Properties (os, release, description, ...).
    pub properties: std::collections::BTreeMap<String, String>,
}

/// What goes into a backup besides the instance's volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPack {
    /// (name, snapshot volume) of each snapshot to include, oldest first.
    pub snapshots: Vec<(VolumeName, VolumeName)>,
    /// `backup/index.yaml` (at most 1 MiB).
    pub index_yaml: String,
    /// `backup/container/backup.yaml` (at most 4 MiB).
    pub backup_yaml: String,
    /// How the tarball is compressed.
    pub compression: PackCompression,
    /// btrfs send streams (`backup/container.bin`, `backup/snapshots/<name>.bin`) instead of
    /// file trees: only from a btrfs pool.
    pub optimized: bool,
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
    /// An instance's snapshot, named `<instance>.<snapshot>` (instance names hold no dot, so
    /// the first dot splits them).
    Snapshot,
}

impl VolumeKind {
    /// The directory name LXD uses for this kind inside a pool.
    pub fn dir_name(self) -> &'static str {
        match self {
            VolumeKind::Container => "containers",
            VolumeKind::Image => "images",
            VolumeKind::Custom => "custom",
            VolumeKind::Snapshot => "containers-snapshots",
        }
    }

    /// All kinds.
    pub const ALL: [VolumeKind; 4] = [
        VolumeKind::Container,
        VolumeKind::Image,
        VolumeKind::Custom,
        VolumeKind::Snapshot,
    ];
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
    /// Bytes an unprivileged writer may still use there (statvfs `f_bavail`).
    pub space_avail: u64,
    /// That filesystem's type as LXD names it (`ext4`, `btrfs`, `xfs`...; empty if unknown).
    pub fs_type: String,
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

/// What a path inside an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
}

impl FileKind {
    /// LXD's X-LXD-type value.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
        }
    }
}

/// A file inside an instance as the files API shows it. Ids are the instance's own (what its
/// root volume stores on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Type.
    pub kind: FileKind,
    /// Owner inside the instance.
    pub uid: u32,
    /// Group inside the instance.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Entries of a directory.
    pub entries: Vec<String>,
    /// Target of a symlink.
    pub target: String,
    /// Size in bytes (a file's length).
    pub size: u64,
    /// Last modification, Unix seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// A regular file's contents open for reading, on the fd side channel.
    pub fd: Option<crate::fdpass::FdTicket>,
}

/// What `file_put` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePut {
    /// Type to create.
    pub kind: FileKind,
    /// Owner inside the instance (0 to 65535).
    pub uid: u32,
    /// Group inside the instance (0 to 65535).
    pub gid: u32,
    /// Permission bits (at most 0o7777).
    pub mode: u32,
    /// Append instead of truncating.
    pub append: bool,
    /// A symlink's target.
    pub target: String,
}

/// What templates are rendered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateVars {
    /// "create", "copy" or "start".
    pub trigger: String,
    /// The instance's name.
    pub name: String,
    /// Its architecture.
    pub architecture: String,
    /// security.privileged.
    pub privileged: bool,
    /// Ephemeral.
    pub ephemeral: bool,
    /// Its expanded config (for `config_get`).
    pub config: std::collections::BTreeMap<String, String>,
}

/// The rsync options both ends of a migration agreed on (LXD's `rsyncFeatures`). Both rsyncs
/// must run with the same set, or their file lists fall out of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RsyncFeatures {
    /// `--xattrs` (and `--filter=-x security.selinux`).
    pub xattrs: bool,
    /// `--delete`: files the sender lacks are removed on the receiver (refresh).
    pub delete: bool,
    /// `--compress --compress-level=2`.
    pub compress: bool,
    /// `--checksum`: files compared by content, not size and time (LXD's local copies between
    /// pools, where a later pass updates what an earlier one wrote; never in a migration).
    pub checksum: bool,
}

/// Which end of an rsync transfer silo-store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RsyncRole {
    /// Reads the volume and sends it (rsync's client, as LXD's source runs it).
    Send,
    /// Receives into the volume (`rsync --server`, as LXD's target runs it). The volume must
    /// exist; what arrives is untrusted.
    Receive,
}

/// A running rsync transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsyncSession {
    /// For `rsync_wait` and `rsync_abort`.
    pub id: u64,
    /// A stream socket on the fd side channel carrying rsync's protocol: silod relays it to
    /// and from the peer host and shuts down its write side when the peer's stream ends.
    /// EOF on reading it means rsync's side is done (all it wrote has arrived): silod then
    /// ends the peer's stream, closes the fd and calls `rsync_wait` for the outcome. silo-store
    /// keeps no copy, so only rsync (and, for a sender, its relay) holds the other end.
    pub fd: crate::fdpass::FdTicket,
}

/// How an rsync transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RsyncReport {
    /// Device nodes the sender listed and the receiver did not make (silo provides /dev).
    pub skipped_devices: u64,
}

/// How a btrfs send or receive session of a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BtrfsReport {
    /// Send: stream bytes written; receive: file bytes written.
    pub bytes: u64,
    /// Receive: stream commands applied (0 for a send).
    pub commands: u64,
    /// Receive: device nodes skipped.
    pub skipped_devices: u64,
}

/// One entry of the id map a migration source sends with a volume (LXD's `IDMapType`):
/// on-disk ids `hostid..hostid+range` stand for the instance's `nsid..nsid+range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdShift {
    /// Applies to user ids.
    pub isuid: bool,
    /// Applies to group ids.
    pub isgid: bool,
    /// First on-disk id.
    pub hostid: u32,
    /// First id inside the instance.
    pub nsid: u32,
    /// How many.
    pub range: u32,
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
    /// Puts one of silod's directories in a custom volume (`storage.images_volume`,
    /// `storage.backups_volume`): the volume's `images` or `backups` directory (made, owned
    /// by silod's user) is bind-mounted onto `<state>/images` (a no-op if it is there
    /// already), or with `staging` onto `<state>/images.new`, which silod made empty to
    /// copy into before [`Store::promote_state_dir`].
    async fn mount_state_dir(
        dir: StateDir,
        pool: PoolName,
        volume: VolumeName,
        staging: bool,
    ) -> HelperResult<()>;
    /// Moves the staged mount from `<state>/images.new` onto `<state>/images`, taking away
    /// whatever volume was mounted there.
    async fn promote_state_dir(dir: StateDir) -> HelperResult<()>;
    /// Takes the volume off `<state>/images` (silod's own directory shows again).
    async fn unmount_state_dir(dir: StateDir) -> HelperResult<()>;
    /// Unpacks the image silod stored as `<state-dir>/images/<fp>` (plus `<fp>.rootfs` for a
    /// split image) into the pool's image volume `<fp>`, in a child landlocked to that volume.
    /// Bounded by the policy's max_image_size and max_image_entries; nothing is left on failure.
    async fn unpack_image(
        pool: PoolName,
        fingerprint: ImageFingerprint,
    ) -> HelperResult<UnpackReport>;
    /// Looks up `path` inside instance `instance`'s root volume, resolved with the volume's
    /// rootfs as `/` (a symlink can never lead out of it).
    async fn file_get(pool: PoolName, instance: VolumeName, path: String)
        -> HelperResult<FileMeta>;
    /// Creates or replaces `path` inside the instance; for a file, answers a write fd on the
    /// fd side channel. Never writes through a symlink.
    async fn file_put(
        pool: PoolName,
        instance: VolumeName,
        path: String,
        put: FilePut,
    ) -> HelperResult<Option<crate::fdpass::FdTicket>>;
    /// Renders the image templates of instance `instance` that apply to `vars.trigger` into its
    /// rootfs; answers the paths written.
    async fn render_templates(
        pool: PoolName,
        instance: VolumeName,
        vars: TemplateVars,
    ) -> HelperResult<Vec<String>>;
    /// Removes a file, symlink or empty directory inside the instance.
    async fn file_delete(pool: PoolName, instance: VolumeName, path: String) -> HelperResult<()>;
    /// Makes volume `dst` of kind `dst_kind` a copy of `src` (reflinked where the filesystem
    /// can), in a child landlocked to the two volumes. Refuses an existing `dst`.
    async fn copy_volume(
        pool: PoolName,
        src_kind: VolumeKind,
        src: VolumeName,
        dst_kind: VolumeKind,
        dst: VolumeName,
    ) -> HelperResult<u64>;
    /// Renames volume `from` to `to` within one kind. With `replace`, an existing `to` is
    /// swapped out atomically (renameat2 RENAME_EXCHANGE) and then removed: how a restore
    /// puts a snapshot's copy in place of an instance's root without a moment of neither.
    async fn rename_volume(
        pool: PoolName,
        kind: VolumeKind,
        from: VolumeName,
        to: VolumeName,
        replace: bool,
    ) -> HelperResult<()>;
    /// Packs a volume (an instance's or a snapshot's) into an image tarball in LXD's unified
    /// format, in a child landlocked to the volume; answers the ticket of an fd of the
    /// finished file (unlinked: nothing to clean up if silod dies with it).
    async fn pack_volume(
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        compression: PackCompression,
        meta: PackMeta,
    ) -> HelperResult<crate::fdpass::FdTicket>;
    /// Packs an instance's volume and snapshots into a backup tarball in LXD's layout
    /// (`backup/index.yaml`, `backup/container/` with its `backup.yaml`,
    /// `backup/snapshots/<name>/`), in a child landlocked to those volumes; answers the
    /// ticket of an fd of the unlinked file. `snapshots` are (name, snapshot volume).
    async fn pack_backup(
        pool: PoolName,
        instance: VolumeName,
        backup: BackupPack,
    ) -> HelperResult<crate::fdpass::FdTicket>;
    /// Unpacks backup file `upload` from silod's upload directory into a new instance volume
    /// and new snapshot volumes, with every check an image gets (and the policy's size
    /// limits). `snapshots` are (name in the backup, snapshot volume). Nothing remains on
    /// failure.
    async fn unpack_backup(
        pool: PoolName,
        upload: VolumeName,
        instance: VolumeName,
        snapshots: Vec<(VolumeName, VolumeName)>,
        optimized: bool,
    ) -> HelperResult<()>;
    /// Starts rsync on volume `volume` in a confined child: as the sender, reading only the
    /// volume; as the receiver (`rsync --server`), writing only beneath it, with file
    /// capabilities only (no device nodes: they are skipped and counted) and silo-store's
    /// checks on what arrived (a dir pool's `dir_pool_reserve`). Answers the socket carrying
    /// rsync's protocol. At most 8 sessions run at once; more are refused (in use). A session
    /// holds its slot until `rsync_wait` has answered its end or `rsync_abort` ended it.
    async fn rsync_start(
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        role: RsyncRole,
        features: RsyncFeatures,
    ) -> HelperResult<RsyncSession>;
    /// Waits up to `max_wait_secs` (at most 3600) for session `id` to end: `None` while it
    /// still runs, else how it ended (rsync's failure, with its messages, as an error). The
    /// session is gone once it has answered an end. A receive into a dir pool is checked
    /// against `dir_pool_reserve` while this waits, and ended (denied) at the floor: silod
    /// keeps calling it until it answers.
    async fn rsync_wait(id: u64, max_wait_secs: u32) -> HelperResult<Option<RsyncReport>>;
    /// Kills session `id`'s rsync (its whole process group) and forgets it (a peer that went
    /// away); answers once it is reaped.
    async fn rsync_abort(id: u64) -> HelperResult<()>;
    /// Starts a btrfs send stream (protocol 1) of volume `volume` of a btrfs pool in a
    /// confined child: a snapshot volume as it is, an instance's from a read-only snapshot
    /// silo-store makes and removes itself; with `parent` (a snapshot volume of the same pool)
    /// as the difference from it (`btrfs send -p`). A volume that is not read-only is made so
    /// for the send and restored after, as LXD does. Answers the socket the stream is written
    /// to (EOF at its end). At most 8 btrfs sessions (sends and receives) run at once.
    async fn btrfs_send_start(
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        parent: Option<(VolumeKind, VolumeName)>,
    ) -> HelperResult<RsyncSession>;
    /// Applies the untrusted btrfs send stream read from the answered socket into a NEW
    /// volume `volume` (refused if it exists) in a child landlocked to it, with
    /// silo-store's hostile-stream receiver (no `btrfs receive`): paths resolved beneath the
    /// volume, no device nodes, the policy's size limits. An incremental stream starts from
    /// a copy of `base` (read only). The new volume is removed if the receive fails.
    async fn btrfs_receive_start(
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        base: Option<(VolumeKind, VolumeName)>,
    ) -> HelperResult<RsyncSession>;
    /// Waits up to `max_wait_secs` (at most 3600) for btrfs session `id`: `None` while it
    /// runs, else how it ended. The session is gone once it answered an end.
    async fn btrfs_wait(id: u64, max_wait_secs: u32) -> HelperResult<Option<BtrfsReport>>;
    /// Ends btrfs session `id` (its socket is shut down, so the child's read or write
    /// fails) and forgets it; answers once the child ended (a receive's volume removed).
    async fn btrfs_abort(id: u64) -> HelperResult<()>;
    /// Snapshots custom volume `volume` as `snapshot` (LXD's layout:
    /// `custom-snapshots/<volume>/<snapshot>`): a read-only subvolume snapshot on btrfs, a
    /// copy (reflinked where the filesystem can) elsewhere. Refuses an existing snapshot.
    async fn custom_snapshot_create(
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
    ) -> HelperResult<()>;
    /// Removes snapshot `snapshot` of custom volume `volume`.
    async fn custom_snapshot_delete(
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
    ) -> HelperResult<()>;
    /// Renames snapshot `from` of custom volume `volume` to `to` (refused if `to` exists).
    async fn custom_snapshot_rename(
        pool: PoolName,
        volume: VolumeName,
        from: VolumeName,
        to: VolumeName,
    ) -> HelperResult<()>;
    /// Lists the snapshots of custom volume `volume` (none if it has no snapshot directory).
    async fn custom_snapshot_list(
        pool: PoolName,
        volume: VolumeName,
    ) -> HelperResult<Vec<VolumeName>>;
    /// Puts a writable copy of snapshot `snapshot` in place of custom volume `volume` (the
    /// copy is made beside it, then exchanged atomically, then the old contents removed).
    async fn custom_snapshot_restore(
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
    ) -> HelperResult<()>;
    /// Copies snapshot `snapshot` of custom volume `src` as snapshot `snapshot` of custom
    /// volume `dst` in the same pool (read-only on btrfs, as every custom snapshot).
    async fn custom_snapshot_copy(
        pool: PoolName,
        src: VolumeName,
        snapshot: VolumeName,
        dst: VolumeName,
    ) -> HelperResult<()>;
    /// Limits custom volume `volume` to `bytes` (0: no limit). Only btrfs pools can: quotas are
    /// enabled on the pool's filesystem and the volume's qgroup limited (referenced bytes);
    /// a dir pool's volume is refused (the host filesystem has no per-directory limit here).
    async fn set_volume_quota(pool: PoolName, volume: VolumeName, bytes: u64) -> HelperResult<()>;
    /// Packs custom volume `volume` and its snapshots `snapshots` (oldest first) into a backup
    /// tarball in LXD's custom volume layout (`backup/index.yaml`, `backup/volume/`,
    /// `backup/volume-snapshots/<name>/`), in a child reading only those volumes; answers the
    /// ticket of an fd of the unlinked file.
    async fn pack_custom_backup(
        pool: PoolName,
        volume: VolumeName,
        snapshots: Vec<VolumeName>,
        index_yaml: String,
        compression: PackCompression,
    ) -> HelperResult<crate::fdpass::FdTicket>;
    /// Unpacks custom volume backup `upload` (silod's upload directory) into NEW custom volume
    /// `volume` and its snapshots `snapshots`, with every check an image gets (the policy's
    /// size limits, members beneath each volume only) in children landlocked to each volume.
    /// Snapshots are made read-only on btrfs. Nothing remains on failure.
    async fn unpack_custom_backup(
        pool: PoolName,
        upload: VolumeName,
        volume: VolumeName,
        snapshots: Vec<VolumeName>,
    ) -> HelperResult<()>;
    /// Starts rsync's sender on snapshot `snapshot` of custom volume `volume`, as
    /// `rsync_start` does for a volume (read only, confined to the snapshot): how a custom
    /// volume's snapshots are copied to another pool.
    async fn rsync_send_custom_snapshot(
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
        features: RsyncFeatures,
    ) -> HelperResult<RsyncSession>;
    /// Rewrites the owners of everything in a received volume from the source's on-disk ids
    /// to the instance's own through `map` (empty: ids are already the instance's). Refuses an
    /// id the map does not cover or one outside the instance's 65536, naming the path; answers
    /// the inodes changed. Only `rootfs/` of a volume that has one (an instance's; its
    /// metadata.yaml and templates stay the host's); set-id bits and file capabilities are
    /// kept. Every id is checked before any is changed: a refusal changes nothing.
    async fn shift_volume(
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        map: Vec<IdShift>,
    ) -> HelperResult<u64>;
    /// Reads or writes an instance volume's `metadata.yaml` or a file of its `templates/`
    /// (LXD's `/1.0/instances/<name>/metadata`), beside its rootfs: opened beneath the volume,
    /// never through a symlink; written whole (a new file renamed over the old).
    async fn instance_metadata(
        pool: PoolName,
        instance: VolumeName,
        request: MetadataRequest,
    ) -> HelperResult<MetadataReply>;
}

/// The largest template file the metadata API reads or writes (the same bound templates
/// render with).
pub const MAX_TEMPLATE_FILE: usize = 1 << 20;

/// The largest `metadata.yaml` the metadata API writes.
pub const MAX_METADATA_FILE: usize = 1 << 20;

/// A template file's name under an instance volume's `templates/`: one plain path component
/// (no `/`, not starting with `.`, so never `.` or `..`), no NUL, 1 to 255 bytes: the rule
/// `metadata.yaml` holds its `template:` entries to.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateName(String);

impl TemplateName {
    /// Checks and wraps `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, crate::names::NameError> {
        let s: String = s.into();
        let e = |r: &str| crate::names::NameError {
            kind: "template name".to_string(),
            value: s.chars().take(80).collect(),
            reason: r.to_string(),
        };
        if s.is_empty() {
            return Err(e("must not be empty"));
        }
        if s.len() > 255 {
            return Err(e("must be at most 255 bytes"));
        }
        if s.contains('/') {
            return Err(e("must not contain '/'"));
        }
        if s.starts_with('.') {
            return Err(e("must not start with '.'"));
        }
        if s.contains('\0') {
            return Err(e("must not contain NUL"));
        }
        Ok(TemplateName(s))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TemplateName {
    type Error = crate::names::NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TemplateName::new(s)
    }
}

impl From<TemplateName> for String {
    fn from(n: TemplateName) -> String {
        n.0
    }
}

impl std::fmt::Debug for TemplateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TemplateName({:?})", self.0)
    }
}

/// What [`Store::instance_metadata`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRequest {
    /// `metadata.yaml`'s bytes ([`MetadataReply::Metadata`], `None` when it has none).
    Get,
    /// Replaces `metadata.yaml` (at most [`MAX_METADATA_FILE`] bytes; it must parse as
    /// LXD's image metadata, or the next start could not render templates).
    Put(Vec<u8>),
    /// The files of `templates/` ([`MetadataReply::Templates`]).
    ListTemplates,
    /// One template's bytes ([`MetadataReply::Template`]).
    GetTemplate(TemplateName),
    /// Creates or replaces a template (at most [`MAX_TEMPLATE_FILE`] bytes).
    PutTemplate(TemplateName, Vec<u8>),
    /// Removes a template.
    DeleteTemplate(TemplateName),
}

/// [`Store::instance_metadata`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataReply {
    /// `metadata.yaml`, if the volume has one.
    Metadata(Option<Vec<u8>>),
    /// Template file names, sorted.
    Templates(Vec<String>),
    /// A template's bytes.
    Template(Vec<u8>),
    /// Written or removed.
    Done,
}
