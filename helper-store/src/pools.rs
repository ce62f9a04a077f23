//! Storage pools and volumes beneath `<state-dir>/storage-pools`, loop files beneath
//! `<state-dir>/disks`. Every request is validated as if silod were hostile.

use std::os::fd::AsFd;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag};
use nix::sys::stat::Mode;
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::{beneath_how, Root};
use silo_proto::jail::boot::Boot;
use silo_proto::jail::policy::Policy;
use silo_proto::store::{PoolDriver, PoolInfo, VolumeKind};
use silo_proto::{PoolName, VolumeName};

/// Smallest loop file: below this no filesystem silo supports fits.
pub(crate) const MIN_LOOP_FILE: u64 = 32 << 20;

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) state: Root,
    pub(crate) pools: Root,
    pub(crate) disks: Root,
    pub(crate) policy: Policy,
    pub(crate) tag: String,
    pub(crate) landlock: std::sync::OnceLock<String>,
    pub(crate) formatter: crate::mkfs::Formatter,
    pub(crate) rsync: crate::rsync::Sessions,
    pub(crate) btrfs: crate::migrate::Sessions,
    pub(crate) fds: Arc<silo_proto::fdpass::FdSender>,
    pub(crate) spares: crate::spares::Spares,
}

/// The storage service.
#[derive(Debug, Clone)]
pub struct StoreServer(pub(crate) Arc<Inner>);

impl StoreServer {
    /// Opens (creating if needed) the helper's two roots. Runs before the jail.
    pub fn open(b: &Boot) -> HelperResult<StoreServer> {
        let state = Root::open(&b.state_dir)?;
        let (pools, _) = state.mkdir_all(&["storage-pools"], 0o711)?;
        let (disks, _) = state.mkdir_all(&["disks"], 0o700)?;
        let formatter =
            crate::mkfs::Formatter::spawn(&b.state_dir.join("disks"), &b.policy.block_devices)?;
        let rsync = crate::rsync::Sessions::spawn(
            &b.state_dir.join("storage-pools"),
            pools.fd(),
            b.seccomp_mode,
        )?;
        Ok(StoreServer(Arc::new(Inner {
            formatter,
            rsync,
            btrfs: crate::migrate::Sessions::default(),
            fds: b.fds.clone(),
            spares: Default::default(),
            state,
            pools,
            disks,
            policy: b.policy.clone(),
            tag: silo_proto::install_tag(&b.state_dir),
            landlock: std::sync::OnceLock::new(),
        })))
    }

    /// Records what landlock reported, for `hello`.
    pub fn with_landlock(self, landlock: String) -> StoreServer {
        let _ = self.0.landlock.set(landlock);
        self
    }

    /// Opens a pool's directory for work on its volumes: the directory is first made sure to
    /// sit on a nosuid, nodev mount (a dir pool gets its own bind mount onto itself), so that
    /// no set-user-id file a container or an image made is ever set-user-id from the host.
    /// Done here rather than only at creation and start, so a daemon that never asks for the
    /// mount cannot leave a pool without it.
    pub(crate) fn pool(&self, pool: &PoolName) -> HelperResult<Root> {
        let dir = self.pool_raw(pool)?;
        if crate::btrfs::is_nosuid_nodev(dir.fd()) {
            return Ok(dir);
        }
        crate::btrfs::bind_self_nosuid(dir.fd())?;
        drop(dir);
        let dir = self.pool_raw(pool)?;
        if !crate::btrfs::is_nosuid_nodev(dir.fd()) {
            return Err(HelperError::Io {
                op: "bind-mounting the pool nosuid,nodev".into(),
                target: dir.display().to_string(),
                message: "the pool directory is still not on a nosuid, nodev mount".into(),
                errno: None,
            });
        }
        tracing::info!(pool = %pool, "mounted the pool directory onto itself nosuid,nodev");
        Ok(dir)
    }

    /// Takes every mount off a pool's directory (its nosuid bind, a btrfs), topmost first.
    pub(crate) fn unmount_all(&self, pool: &PoolName) -> HelperResult<()> {
        for _ in 0..8 {
            let dir = match self.pool_raw(pool) {
                Ok(d) => d,
                Err(HelperError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            if !crate::btrfs::is_mount_root(dir.fd()) {
                return Ok(());
            }
            crate::btrfs::unmount(dir.fd())?;
        }
        Err(HelperError::InUse {
            what: format!("storage pool {:?}", pool.as_str()),
            by: "more mounts than silo makes on its directory".into(),
        })
    }

    /// Opens a pool's directory as it is (no mount made).
    pub(crate) fn pool_raw(&self, pool: &PoolName) -> HelperResult<Root> {
        self.0
            .pools
            .open_dir(&[pool.as_str()])
            .map_err(|e| match e {
                HelperError::NotFound { .. } => HelperError::NotFound {
                    what: format!("storage pool {:?}", pool.as_str()),
                },
                e => e,
            })
    }

    pub(crate) fn pool_info_of(&self, pool: &PoolName, dir: &Root) -> HelperResult<PoolInfo> {
        let st = nix::sys::statvfs::fstatvfs(dir.fd())
            .map_err(|e| HelperError::errno("fstatvfs", dir.display(), e))?;
        let frsize = st.fragment_size();
        let total = st.blocks().saturating_mul(frsize);
        let free = st.blocks_free().saturating_mul(frsize);
        let driver = if self.pool_is_btrfs(dir) {
            let img = format!("{}.img", pool.as_str());
            let size = nix::sys::stat::fstatat(
                self.0.disks.fd(),
                img.as_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map(|st| st.st_size as u64)
            .unwrap_or(0);
            PoolDriver::Btrfs { size }
        } else {
            PoolDriver::Dir
        };
        Ok(PoolInfo {
            name: pool.clone(),
            driver,
            space_total: total,
            space_used: total.saturating_sub(free),
            space_avail: st.blocks_available().saturating_mul(frsize),
            fs_type: crate::btrfs::fs_type_name(dir.fd()).to_string(),
        })
    }

    /// Bytes of data a write into the pool may still add: on a dir pool, the host
    /// filesystem's free space above the policy's `dir_pool_reserve` (refused outright when
    /// nothing is left); on a btrfs pool, its own filesystem bounds it (unlimited here).
    pub(crate) fn write_budget(&self, dir: &Root) -> HelperResult<u64> {
        if self.pool_is_btrfs(dir) {
            return Ok(u64::MAX);
        }
        let reserve = self.0.policy.dir_pool_reserve;
        let st = nix::sys::statvfs::fstatvfs(dir.fd())
            .map_err(|e| HelperError::errno("fstatvfs", dir.display(), e))?;
        let avail = st.blocks_available().saturating_mul(st.fragment_size());
        if avail <= reserve {
            return Err(self.reserve_denied(avail));
        }
        Ok(avail - reserve)
    }

    pub(crate) fn reserve_denied(&self, avail: u64) -> HelperError {
        self.0.policy.deny(format!(
            "the write would leave less than dir_pool_reserve ({} bytes) free on the pool's \
             host filesystem ({avail} bytes available now)",
            self.0.policy.dir_pool_reserve
        ))
    }

    /// Limits for unpacking into a pool: the policy's, and no more bytes than the budget.
    /// Answers whether the budget is what binds (to name the reserve in a refusal).
    pub(crate) fn unpack_limits(
        &self,
        dir: &Root,
    ) -> HelperResult<(silo_proto::image::extract::Limits, bool)> {
        let budget = self.write_budget(dir)?;
        let by_reserve = budget < self.0.policy.max_image_size;
        Ok((
            silo_proto::image::extract::Limits {
                max_bytes: budget.min(self.0.policy.max_image_size),
                max_entries: self.0.policy.max_image_entries,
            },
            by_reserve,
        ))
    }

    /// A byte-limit refusal becomes a reserve refusal when the reserve set the limit.
    pub(crate) fn name_reserve(&self, dir: &Root, by_reserve: bool, e: HelperError) -> HelperError {
        let over = e.to_string().contains("bytes of file data")
            || e.to_string().contains("exceeds the limit");
        if by_reserve && over {
            let avail = nix::sys::statvfs::fstatvfs(dir.fd())
                .map(|st| st.blocks_available().saturating_mul(st.fragment_size()))
                .unwrap_or(0);
            return self.reserve_denied(avail);
        }
        e
    }

    pub(crate) fn check_loop_size(&self, size: u64) -> HelperResult<()> {
        let max = self.0.policy.max_loop_file_size;
        if size < MIN_LOOP_FILE {
            return Err(HelperError::invalid(
                "size",
                format!("{size} bytes is below the minimum of {MIN_LOOP_FILE} bytes (32MiB)"),
            ));
        }
        if size > max {
            return Err(self.0.policy.deny(format!(
                "a {size}-byte loop file is larger than max_loop_file_size ({max} bytes)"
            )));
        }
        let st = nix::sys::statvfs::fstatvfs(self.0.disks.fd())
            .map_err(|e| HelperError::errno("fstatvfs", self.0.disks.display(), e))?;
        // Against the free space (above the reserve), not the filesystem's size: the sparse
        // file fills as the pool does, and must not be able to fill the host.
        let avail = st.blocks_available().saturating_mul(st.fragment_size());
        let room = avail.saturating_sub(self.0.policy.dir_pool_reserve);
        if size > room {
            return Err(HelperError::invalid(
                "size",
                format!(
                    "{size} bytes is more than the free space of the filesystem holding the \
                     state dir ({avail} bytes available, less dir_pool_reserve of {} bytes)",
                    self.0.policy.dir_pool_reserve
                ),
            ));
        }
        Ok(())
    }

    /// Creates the sparse loop file `<pool>.img` beneath disks/ and returns it open.
    pub(crate) fn make_loop_file(
        &self,
        pool: &PoolName,
        size: u64,
    ) -> HelperResult<std::os::fd::OwnedFd> {
        self.check_loop_size(size)?;
        let name = format!("{}.img", pool.as_str());
        let how = beneath_how(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR, 0o600);
        let shown = format!("{}/{name}", self.0.disks.display());
        let fd = openat2(self.0.disks.fd(), name.as_str(), how).map_err(|e| match e {
            Errno::EEXIST => HelperError::AlreadyExists {
                what: format!("loop file for storage pool {:?}", pool.as_str()),
            },
            e => HelperError::errno("openat2", &shown, e),
        })?;
        let len = i64::try_from(size).map_err(|_| HelperError::invalid("size", "out of range"))?;
        if let Err(e) = nix::unistd::ftruncate(fd.as_fd(), len) {
            let _ = self.0.disks.remove_tree(&name);
            return Err(HelperError::errno("ftruncate", &shown, e));
        }
        Ok(fd)
    }

    /// Loop file, mkfs (by the formatter), loop device, mount onto the pool directory.
    pub(crate) fn make_btrfs(&self, pool: &PoolName, dir: &Root, size: u64) -> HelperResult<()> {
        let file = self.make_loop_file(pool, size)?;
        self.0
            .formatter
            .mkfs_btrfs(&format!("{}.img", pool.as_str()), &fs_label(pool))?;
        self.attach_and_mount(pool, &file, dir)
    }

    /// Checks a block device for a btrfs pool: the policy must list it exactly, it must be a
    /// block device node reached through no symlink, and nothing may hold it. The kernel
    /// answers an exclusive open with EBUSY while the device is mounted, backs a loop or
    /// device-mapper device, or is another pool's.
    pub(crate) fn check_block_device(
        &self,
        source: &silo_proto::types::HostPath,
    ) -> HelperResult<()> {
        if !self
            .0
            .policy
            .block_devices
            .iter()
            .any(|d| d.as_path() == std::path::Path::new(source.as_str()))
        {
            return Err(self.0.policy.deny(format!(
                "block device {source} is not listed in block_devices"
            )));
        }
        let fd = open_host_path(source, OFlag::O_RDWR | OFlag::O_EXCL).map_err(|e| match e {
            Errno::ELOOP => HelperError::invalid(
                "source",
                format!("{source} goes through a symlink; name the device node itself"),
            ),
            Errno::ENOENT => HelperError::NotFound {
                what: format!("block device {source}"),
            },
            Errno::EBUSY => HelperError::InUse {
                what: format!("block device {source}"),
                by: "a mounted filesystem or another holder".into(),
            },
            e => HelperError::errno("openat2", source, e),
        })?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| HelperError::errno("fstat", source, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFBLK {
            return Err(HelperError::invalid(
                "source",
                format!("{source} is not a block device"),
            ));
        }
        Ok(())
    }

    /// mkfs (by the formatter, never forced) on a listed block device, then mount it.
    pub(crate) fn make_btrfs_device(
        &self,
        pool: &PoolName,
        dir: &Root,
        source: &silo_proto::types::HostPath,
    ) -> HelperResult<()> {
        self.0
            .formatter
            .mkfs_btrfs_device(std::path::Path::new(source.as_str()), &fs_label(pool))?;
        self.mount_device(pool, dir, source)
    }

    pub(crate) fn mount_device(
        &self,
        pool: &PoolName,
        dir: &Root,
        source: &silo_proto::types::HostPath,
    ) -> HelperResult<()> {
        // Checked again right before: the policy may have changed since the pool was made,
        // and nothing else may have taken the device meanwhile.
        self.check_block_device(source)?;
        crate::btrfs::mount_btrfs(source.as_str(), dir.fd())?;
        let root = self.pool(pool)?;
        nix::sys::stat::fchmod(root.fd(), Mode::from_bits_truncate(0o711))
            .map_err(|e| HelperError::errno("fchmod", root.display(), e))
    }

    pub(crate) fn attach_and_mount(
        &self,
        pool: &PoolName,
        file: &std::os::fd::OwnedFd,
        dir: &Root,
    ) -> HelperResult<()> {
        let (dev, path) = crate::btrfs::attach_loop(
            file.as_fd(),
            &format!("silo:{}:{}", self.0.tag, pool.as_str()),
            false,
        )?;
        let r = crate::btrfs::mount_btrfs(&path, dir.fd());
        // The device stays attached while mounted and detaches itself after (autoclear).
        drop(dev);
        r?;
        // The pool's new root (the filesystem's): root's, traversable only.
        let root = self.pool(pool)?;
        nix::sys::stat::fchmod(root.fd(), Mode::from_bits_truncate(0o711))
            .map_err(|e| HelperError::errno("fchmod", root.display(), e))
    }

    /// Opens a host directory for a btrfs pool: the policy must list it (or a parent) in
    /// host_paths; no symlink is followed on the way; it must be on btrfs and hold nothing but
    /// silo's own layout.
    /// Opens a pool's host directory: beneath a `host_paths` entry, from `/`, through no
    /// symlink.
    fn open_pool_source(
        &self,
        source: &silo_proto::types::HostPath,
    ) -> HelperResult<std::os::fd::OwnedFd> {
        if !self.0.policy.host_paths.iter().any(|p| source.is_within(p)) {
            return Err(self.0.policy.deny(format!(
                "storage pool source {source} is not beneath any of host_paths"
            )));
        }
        open_host_path(source, OFlag::O_DIRECTORY | OFlag::O_RDONLY).map_err(|e| match e {
            // O_NOFOLLOW|O_DIRECTORY on a final symlink answers ENOTDIR.
            Errno::ELOOP | Errno::ENOTDIR => HelperError::invalid(
                "source",
                format!("{source} goes through a symlink or is not a directory"),
            ),
            Errno::ENOENT => HelperError::NotFound {
                what: format!("storage pool source {source}"),
            },
            e => HelperError::errno("openat2", source, e),
        })
    }

    /// Opens a dir pool's host source: beneath `host_paths`, no symlink on the way, a
    /// directory owned by root that no one else may write (silo's volumes live in it), and
    /// empty but for what an earlier pool of silo's left.
    pub(crate) fn open_host_dir(
        &self,
        source: &silo_proto::types::HostPath,
    ) -> HelperResult<std::os::fd::OwnedFd> {
        let fd = self.open_pool_source(source)?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| HelperError::errno("fstat", source, e))?;
        if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
            return Err(HelperError::invalid(
                "source",
                format!(
                    "{source} must be owned by root and writable by no one else (it is uid {}, mode {:o})",
                    st.st_uid,
                    st.st_mode & 0o7777
                ),
            ));
        }
        Ok(fd)
    }

    pub(crate) fn open_host_btrfs(
        &self,
        source: &silo_proto::types::HostPath,
    ) -> HelperResult<std::os::fd::OwnedFd> {
        let fd = self.open_pool_source(source)?;
        if !crate::btrfs::is_btrfs(fd.as_fd()) {
            return Err(HelperError::invalid(
                "source",
                format!("{source} is not on a btrfs filesystem"),
            ));
        }
        let listing = Root::from_fd(
            fd.try_clone()
                .map_err(|e| HelperError::io("dup", source, e))?,
            source.to_string(),
        )
        .list()?;
        if let Some(other) = listing.iter().find(|n| {
            !matches!(
                n.as_str(),
                "containers" | "images" | "custom" | crate::custom::SNAPSHOTS_DIR
            )
        }) {
            return Err(HelperError::invalid(
                "source",
                format!("{source} is not empty ({other:?}); silo takes an empty directory"),
            ));
        }
        Ok(fd)
    }

    /// Takes a half-made pool away again: unmount, loop file, directory.
    pub(crate) fn undo_pool(&self, pool: &PoolName) {
        let _ = self.unmount_all(pool);
        let _ = self.0.disks.remove_tree(&format!("{}.img", pool.as_str()));
        let _ = self.0.pools.remove_tree(pool.as_str());
    }

    /// Whether the pool directory is a btrfs mounted there (not merely on a btrfs host).
    pub(crate) fn pool_is_btrfs(&self, dir: &Root) -> bool {
        crate::btrfs::is_btrfs(dir.fd()) && !crate::btrfs::is_btrfs(self.0.pools.fd())
    }

    /// Makes an empty volume directory: a subvolume on btrfs pools.
    pub(crate) fn new_volume(
        &self,
        pool_dir: &Root,
        kdir: &Root,
        name: &str,
        what: &str,
    ) -> HelperResult<Root> {
        if self.pool_is_btrfs(pool_dir) {
            crate::btrfs::subvol_create(kdir.fd(), name).map_err(|e| match e {
                HelperError::AlreadyExists { .. } => HelperError::AlreadyExists {
                    what: what.to_string(),
                },
                e => e,
            })?;
            let d = kdir.open_dir(&[name])?;
            nix::sys::stat::fchmod(d.fd(), Mode::from_bits_truncate(crate::images::VOLUME_MODE))
                .map_err(|e| HelperError::errno("fchmod", d.display(), e))?;
            Ok(d)
        } else {
            kdir.mkdir_new(name, crate::images::VOLUME_MODE, what)
        }
    }

    /// Renames `from` in `from_dir` to `to` in `to_dir`, refusing (EEXIST) to replace anything.
    pub(crate) fn rename_noreplace(
        from_dir: &Root,
        from: &str,
        to_dir: &Root,
        to: &str,
    ) -> Result<(), nix::errno::Errno> {
        nix::fcntl::renameat2(
            from_dir.fd(),
            from,
            to_dir.fd(),
            to,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
    }

    /// Removes a volume: the subvolume ioctl on btrfs, a careful tree removal elsewhere.
    pub(crate) fn remove_volume(&self, kdir: &Root, name: &str) -> HelperResult<()> {
        if let Ok(v) = kdir.open_dir(&[name]) {
            if crate::btrfs::is_subvolume(v.fd()) {
                drop(v);
                return crate::btrfs::subvol_delete(kdir.fd(), name);
            }
        }
        kdir.remove_tree(name)
    }

    /// An optimized backup: each volume as a btrfs send stream of a read-only snapshot of it
    /// (made beside it and deleted after), packed with the two YAML files.
    pub(crate) async fn pack_optimized(
        &self,
        pool: &PoolName,
        instance: &VolumeName,
        snapshots: &[(VolumeName, VolumeName)],
        index_yaml: String,
        backup_yaml: String,
        compression: silo_proto::store::PackCompression,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        let dir = self.pool(pool)?;
        if !self.pool_is_btrfs(&dir) {
            return Err(HelperError::invalid(
                "backup",
                format!(
                    "optimized backups need a btrfs pool; {:?} is not one",
                    pool.as_str()
                ),
            ));
        }
        // As LXD: the snapshots oldest first, the first whole and each later one as its
        // difference from the one before; the instance last, as its difference from the newest.
        let mut parts = Vec::new();
        for (name, v) in snapshots {
            parts.push((
                VolumeKind::Snapshot,
                v.clone(),
                format!("backup/snapshots/{}.bin", name.as_str()),
            ));
        }
        parts.push((
            VolumeKind::Container,
            instance.clone(),
            "backup/container.bin".to_string(),
        ));
        let mut blobs = Vec::new();
        // Read-only snapshots made for sending, kept as the parents of the next part and all
        // deleted at the end, whatever happened.
        let mut made: Vec<(Root, String)> = Vec::new();
        let sent = (|| {
            for (kind, vol, member) in parts {
                let kdir = dir.open_dir(&[kind.dir_name()])?;
                let src = Self::open_volume(&dir, pool, kind, &vol)?;
                // A leading dot: no volume can have this name (VolumeName refuses it), so a
                // snapshot called e.g. "s1.send-ro" is never taken for the scratch copy of "s1".
                let ro = format!(".send-ro-{}", vol.as_str());
                if kdir.exists(&ro)? {
                    crate::btrfs::subvol_delete(kdir.fd(), &ro)?;
                }
                crate::btrfs::snapshot_ro(src.fd(), kdir.fd(), &ro)?;
                let snap = kdir.open_dir(&[ro.as_str()])?;
                made.push((kdir, ro));
                let parent = match made.len() {
                    n if n >= 2 => {
                        let (pdir, pname) = &made[n - 2];
                        Some(pdir.open_dir(&[pname.as_str()])?)
                    }
                    _ => None,
                };
                let out = self.tmpfile()?;
                crate::btrfs::send(snap.fd(), parent.as_ref().map(|p| p.fd()), out.as_fd())?;
                blobs.push((member, out));
            }
            Ok::<(), HelperError>(())
        })();
        for (kdir, ro) in &made {
            let _ = crate::btrfs::subvol_delete(kdir.fd(), ro);
        }
        sent?;
        let out = self.tmpfile()?;
        let child_out = out
            .try_clone()
            .map_err(|e| HelperError::io("dup", "backup file", e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        silo_proto::image::pack::pack_tree_with(
            child_out,
            pack_compression(compression),
            now,
            &[
                ("backup/index.yaml".to_string(), index_yaml.into_bytes()),
                (
                    "backup/container/backup.yaml".to_string(),
                    backup_yaml.into_bytes(),
                ),
            ],
            &[],
            blobs,
        )
        .map_err(|e| HelperError::Io {
            op: "packing the backup".into(),
            target: format!("instance {:?}", instance.as_str()),
            message: e,
            errno: None,
        })?;
        tracing::info!(pool = %pool, instance = %instance, snapshots = snapshots.len(), "packed optimized backup");
        self.send_readonly(&out)
    }

    /// An unlinked file in silo-store's own directory: root's, gone with its last fd.
    pub(crate) fn tmpfile(&self) -> HelperResult<std::fs::File> {
        let fd = nix::fcntl::openat(
            self.0.disks.fd(),
            ".",
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| HelperError::errno("open(O_TMPFILE)", self.0.disks.display(), e))?;
        Ok(std::fs::File::from(fd))
    }

    pub(crate) fn rootfs(&self, pool: &PoolName, instance: &VolumeName) -> HelperResult<Root> {
        self.pool(pool)?
            .open_dir(&["containers", instance.as_str(), "rootfs"])
            .map_err(|e| match e {
                HelperError::NotFound { .. } => HelperError::NotFound {
                    what: format!("root volume of instance {:?}", instance.as_str()),
                },
                e => e,
            })
    }

    /// Sends silod a finished tarball read-only: a fresh open of the unlinked, root-only
    /// file (offset 0), so silod can read it but neither write into silo-store's directory
    /// nor run it (mode 0600, no execute bit, not silod's to chmod).
    pub(crate) fn send_readonly(
        &self,
        f: &std::fs::File,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        let p = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(f));
        // The magic link of silo-store's own fd: it names that file and nothing else.
        let ro = nix::fcntl::open(
            p.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| HelperError::errno("reopen read-only", "packed file", e))?;
        self.send_fd(&ro)
    }

    pub(crate) fn send_fd(
        &self,
        fd: &std::os::fd::OwnedFd,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        self.0
            .fds
            .send(&[fd.as_fd()])
            .map_err(|e| HelperError::Unsupported(format!("fd channel: {e}")))
    }

    /// Opens `<kind>/<volume>` beneath a pool's directory (no symlink followed, as every
    /// `Root` open); a missing one is named as the volume, not as a path.
    pub(crate) fn open_volume(
        dir: &Root,
        pool: &PoolName,
        kind: VolumeKind,
        vol: &VolumeName,
    ) -> HelperResult<Root> {
        dir.open_dir(&[kind.dir_name(), vol.as_str()])
            .map_err(|e| match e {
                HelperError::NotFound { .. } => HelperError::NotFound {
                    what: Self::volume_what(pool, kind, vol),
                },
                e => e,
            })
    }

    pub(crate) fn volume_what(pool: &PoolName, kind: VolumeKind, vol: &VolumeName) -> String {
        format!(
            "storage volume {:?} ({}) in pool {:?}",
            vol.as_str(),
            kind.dir_name(),
            pool.as_str()
        )
    }
}

pub(crate) use silo_proto::jail::beneath::open_host_path;

/// The filesystem label of a pool's btrfs: `silo-<pool>`, in the characters mkfs takes.
pub(crate) fn fs_label(pool: &PoolName) -> String {
    format!("silo-{}", pool.as_str())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn pack_compression(
    c: silo_proto::store::PackCompression,
) -> silo_proto::image::Compression {
    use silo_proto::image::Compression;
    use silo_proto::store::PackCompression as P;
    match c {
        P::None => Compression::None,
        P::Gzip => Compression::Gzip,
        P::Xz => Compression::Xz,
        P::Zstd => Compression::Zstd,
    }
}
