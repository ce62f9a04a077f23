//! The `Store` service: silo-store's side of its tarpc channel with silod. Each call takes
//! silod's request as hostile, checks it, and leaves the work to the modules that own it
//! (`pools`, `images`, `files`, `btrfs`, `receive`, ...).

use std::os::fd::AsFd;

use nix::fcntl::{openat2, OFlag};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::{beneath_how, Root};
use silo_proto::store::{LoopFileInfo, PoolDriver, PoolInfo, Store, UnpackReport, VolumeKind};
use silo_proto::{HelperHello, ImageFingerprint, PoolName, VolumeName};
use tarpc::context::Context;

use crate::pools::*;

impl Store for StoreServer {
    async fn file_get(
        self,
        _: Context,
        pool: PoolName,
        instance: VolumeName,
        path: String,
    ) -> HelperResult<silo_proto::store::FileMeta> {
        let root = self.rootfs(&pool, &instance)?;
        let (mut meta, fd) = crate::files::get(&root, &path)?;
        if let Some(fd) = fd {
            // Never the file's own fd: its contents, through a pipe.
            let pipe = crate::files::feed(fd)?;
            meta.fd = Some(self.send_fd(&pipe)?);
        }
        Ok(meta)
    }

    async fn file_put(
        self,
        _: Context,
        pool: PoolName,
        instance: VolumeName,
        path: String,
        put: silo_proto::store::FilePut,
    ) -> HelperResult<Option<silo_proto::fdpass::FdTicket>> {
        let budget = self.write_budget(&self.pool(&pool)?)?;
        let root = self.rootfs(&pool, &instance)?;
        match crate::files::put(&root, &path, &put)? {
            // Never the file's own fd: a socket whose data silo-store writes into it.
            Some(fd) => Ok(Some(self.send_fd(&crate::files::drain(fd, budget)?)?)),
            None => Ok(None),
        }
    }

    async fn render_templates(
        self,
        _: Context,
        pool: PoolName,
        instance: VolumeName,
        vars: silo_proto::store::TemplateVars,
    ) -> HelperResult<Vec<String>> {
        if !matches!(vars.trigger.as_str(), "create" | "copy" | "start") {
            return Err(HelperError::invalid(
                "trigger",
                format!("{:?}", vars.trigger),
            ));
        }
        let vol = self
            .pool(&pool)?
            .open_dir(&["containers", instance.as_str()])?;
        let root = self.rootfs(&pool, &instance)?;
        crate::templates::apply(&vol, &root, &vars)
    }

    async fn file_delete(
        self,
        _: Context,
        pool: PoolName,
        instance: VolumeName,
        path: String,
    ) -> HelperResult<()> {
        let root = self.rootfs(&pool, &instance)?;
        crate::files::delete(&root, &path)
    }

    async fn hello(self, _: Context) -> HelperHello {
        HelperHello {
            helper: "silo-store".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            tag: self.0.tag.clone(),
            landlock: self.0.landlock.get().cloned().unwrap_or_default(),
        }
    }

    async fn create_pool(
        self,
        _: Context,
        pool: PoolName,
        driver: PoolDriver,
    ) -> HelperResult<PoolInfo> {
        let what = format!("storage pool {:?}", pool.as_str());
        // Check what can be checked before anything is made.
        let host = match &driver {
            PoolDriver::BtrfsPath { source } => Some(self.open_host_btrfs(source)?),
            PoolDriver::DirPath { source } => {
                let fd = self.open_host_dir(source)?;
                let listing = silo_proto::jail::beneath::Root::from_fd(
                    fd.try_clone()
                        .map_err(|e| HelperError::io("dup", source, e))?,
                    source.to_string(),
                )
                .list()?;
                if let Some(other) = listing
                    .iter()
                    .find(|n| !VolumeKind::ALL.iter().any(|k| k.dir_name() == n.as_str()))
                {
                    return Err(HelperError::invalid(
                        "source",
                        format!("{source} is not empty ({other:?}); silo takes an empty directory"),
                    ));
                }
                Some(fd)
            }
            PoolDriver::BtrfsDevice { source } => {
                self.check_block_device(source)?;
                None
            }
            _ => None,
        };
        if let PoolDriver::Btrfs { size } = driver {
            self.check_loop_size(size)?;
            if self.0.disks.exists(&format!("{}.img", pool.as_str()))? {
                return Err(HelperError::AlreadyExists {
                    what: format!("loop file for {what}"),
                });
            }
        }
        let dir = self.0.pools.mkdir_new(pool.as_str(), 0o711, &what)?;
        let made = match (&driver, &host) {
            (PoolDriver::Btrfs { size }, _) => self.make_btrfs(&pool, &dir, *size),
            (PoolDriver::BtrfsPath { .. } | PoolDriver::DirPath { .. }, Some(src)) => {
                crate::btrfs::bind_dir(src.as_fd(), dir.fd())
            }
            (PoolDriver::BtrfsDevice { source }, _) => self.make_btrfs_device(&pool, &dir, source),
            _ => Ok(()),
        };
        let dir = match made.and_then(|()| self.pool(&pool)) {
            Ok(d) => d,
            Err(e) => {
                self.undo_pool(&pool);
                return Err(e);
            }
        };
        for kind in VolumeKind::ALL {
            if let Err(e) = dir.mkdir_all(&[kind.dir_name()], 0o711) {
                drop(dir);
                self.undo_pool(&pool);
                return Err(e);
            }
        }
        tracing::info!(pool = %pool, driver = ?driver, "created storage pool");
        self.pool_info_of(&pool, &dir)
    }

    async fn pool_info(self, _: Context, pool: PoolName) -> HelperResult<PoolInfo> {
        let dir = self.pool(&pool)?;
        self.pool_info_of(&pool, &dir)
    }

    async fn delete_pool(self, _: Context, pool: PoolName) -> HelperResult<()> {
        let dir = self.pool_raw(&pool)?;
        let mut used = Vec::new();
        let dirs = VolumeKind::ALL
            .iter()
            .map(|k| k.dir_name())
            .chain([crate::custom::SNAPSHOTS_DIR]);
        for d in dirs {
            if let Ok(k) = dir.open_dir(&[d]) {
                for v in k.list()? {
                    used.push(format!("{d}/{v}"));
                }
            }
        }
        if !used.is_empty() {
            return Err(HelperError::InUse {
                what: format!("storage pool {:?}", pool.as_str()),
                by: format!("volumes {}", used.join(", ")),
            });
        }
        let btrfs = self.pool_is_btrfs(&dir);
        // On a host path (btrfs or dir), take silo's own (empty) directories away first: the
        // host directory stays as it was given.
        for kind in VolumeKind::ALL {
            let _ = dir.remove_tree(kind.dir_name());
        }
        let _ = dir.remove_tree(crate::custom::SNAPSHOTS_DIR);
        let _ = dir.remove_tree(crate::spares::SPARES_DIR);
        drop(dir);
        // The btrfs mount, and the nosuid bind of a dir pool (or beneath a btrfs).
        self.unmount_all(&pool)?;
        if btrfs {
            let _ = self.0.disks.remove_tree(&format!("{}.img", pool.as_str()));
        }
        self.0.pools.remove_tree(pool.as_str())?;
        tracing::info!(pool = %pool, "deleted storage pool");
        Ok(())
    }

    async fn create_volume(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
    ) -> HelperResult<()> {
        let dir = self.pool(&pool)?;
        let (kdir, _) = dir.mkdir_all(&[kind.dir_name()], 0o711)?;
        self.new_volume(
            &dir,
            &kdir,
            volume.as_str(),
            &Self::volume_what(&pool, kind, &volume),
        )?;
        tracing::info!(pool = %pool, volume = %volume, kind = kind.dir_name(), "created volume");
        Ok(())
    }

    async fn list_volumes(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
    ) -> HelperResult<Vec<VolumeName>> {
        let dir = self.pool(&pool)?;
        let kdir = dir.open_dir(&[kind.dir_name()])?;
        Ok(kdir
            .list()?
            .into_iter()
            .filter_map(|n| VolumeName::new(n).ok())
            .collect())
    }

    async fn volume_usage(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
    ) -> HelperResult<u64> {
        let dir = self.pool(&pool)?;
        Self::open_volume(&dir, &pool, kind, &volume)?.usage()
    }

    async fn delete_volume(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
    ) -> HelperResult<()> {
        let dir = self.pool(&pool)?;
        let kdir = dir.open_dir(&[kind.dir_name()])?;
        if !kdir.exists(volume.as_str())? {
            return Err(HelperError::NotFound {
                what: Self::volume_what(&pool, kind, &volume),
            });
        }
        if kind == VolumeKind::Custom {
            // A custom volume's snapshots go with it (first: a failure leaves the volume).
            self.custom_snapshots_remove_all(&dir, &volume)?;
        }
        if kind == VolumeKind::Image {
            self.remove_image_and_spare(&dir, &kdir, &pool, &volume)
                .await?;
        } else {
            self.remove_volume(&kdir, volume.as_str())?;
        }
        tracing::info!(pool = %pool, volume = %volume, kind = kind.dir_name(), "deleted volume");
        Ok(())
    }

    async fn create_loop_file(
        self,
        _: Context,
        pool: PoolName,
        size: u64,
    ) -> HelperResult<LoopFileInfo> {
        self.make_loop_file(&pool, size)?;
        tracing::info!(pool = %pool, size, "created loop file");
        Ok(LoopFileInfo { pool, size })
    }

    async fn delete_loop_file(self, _: Context, pool: PoolName) -> HelperResult<()> {
        let name = format!("{}.img", pool.as_str());
        if !self.0.disks.exists(&name)? {
            return Err(HelperError::NotFound {
                what: format!("loop file for storage pool {:?}", pool.as_str()),
            });
        }
        self.0.disks.remove_tree(&name)
    }

    async fn unpack_image(
        self,
        _: Context,
        pool: PoolName,
        fingerprint: ImageFingerprint,
    ) -> HelperResult<UnpackReport> {
        let dir = self.pool(&pool)?;
        let (limits, by_reserve) = self.unpack_limits(&dir)?;
        let (kdir, _) = dir.mkdir_all(&[VolumeKind::Image.dir_name()], 0o711)?;
        let vol = VolumeName::new(fingerprint.as_str())?;
        let target = self.new_volume(
            &dir,
            &kdir,
            vol.as_str(),
            &Self::volume_what(&pool, VolumeKind::Image, &vol),
        )?;
        let t0 = std::time::Instant::now();
        let r = match self.0.state.open_untrusted_dir("images") {
            Ok(images) => crate::images::unpack(&images, &target, &fingerprint, limits)
                .await
                .map_err(|e| self.name_reserve(&dir, by_reserve, e)),
            Err(e) => Err(e),
        };
        match r {
            Ok(rep) => {
                tracing::info!(pool = %pool, image = %fingerprint, entries = rep.entries, bytes = rep.bytes, ms = t0.elapsed().as_millis() as u64, "unpacked image");
                Ok(rep)
            }
            Err(e) => {
                // Nothing half-made.
                if let Err(rm) = self.remove_volume(&kdir, vol.as_str()) {
                    tracing::error!(error = %rm, "removing a failed image volume");
                }
                tracing::warn!(pool = %pool, image = %fingerprint, error = %e, "refused image");
                Err(e)
            }
        }
    }

    async fn copy_volume(
        self,
        _: Context,
        pool: PoolName,
        src_kind: VolumeKind,
        src: VolumeName,
        dst_kind: VolumeKind,
        dst: VolumeName,
    ) -> HelperResult<u64> {
        let dir = self.pool(&pool)?;
        let sdir = Self::open_volume(&dir, &pool, src_kind, &src)?;
        let (kdir, _) = dir.mkdir_all(&[dst_kind.dir_name()], 0o711)?;
        let t0 = std::time::Instant::now();
        if crate::btrfs::is_subvolume(sdir.fd()) && self.pool_is_btrfs(&dir) {
            // A snapshot: near instant, sharing every extent with the image volume.
            if kdir.exists(dst.as_str())? {
                return Err(HelperError::AlreadyExists {
                    what: Self::volume_what(&pool, dst_kind, &dst),
                });
            }
            crate::btrfs::snapshot(sdir.fd(), kdir.fd(), dst.as_str())?;
            let usage = kdir
                .open_dir(&[dst.as_str()])
                .and_then(|d| d.usage())
                .unwrap_or(0);
            tracing::info!(pool = %pool, src = %src, dst = %dst, ms = t0.elapsed().as_millis() as u64, "snapshotted volume");
            return Ok(usage);
        }
        let what = Self::volume_what(&pool, dst_kind, &dst);
        let from_image = src_kind == VolumeKind::Image;
        if from_image
            && self
                .take_spare(&dir, &pool, &src, &kdir, dst.as_str(), &what)
                .await?
        {
            tracing::info!(pool = %pool, src = %src, dst = %dst, ms = t0.elapsed().as_millis() as u64, "took the image's spare copy");
            self.refill_spare(pool, src);
            return Ok(0);
        }
        let budget = self.write_budget(&dir)?;
        let target = self.new_volume(&dir, &kdir, dst.as_str(), &what)?;
        match crate::images::copy(&sdir, &target, budget)
            .await
            .map_err(|e| self.name_reserve(&dir, budget != u64::MAX, e))
        {
            Ok(bytes) => {
                tracing::info!(pool = %pool, src = %src, dst = %dst, bytes, ms = t0.elapsed().as_millis() as u64, "copied volume");
                if from_image {
                    self.refill_spare(pool, src);
                }
                Ok(bytes)
            }
            Err(e) => {
                let _ = self.remove_volume(&kdir, dst.as_str());
                Err(e)
            }
        }
    }

    async fn rename_volume(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        from: VolumeName,
        to: VolumeName,
        replace: bool,
    ) -> HelperResult<()> {
        let dir = self.pool(&pool)?;
        let kdir = dir.open_dir(&[kind.dir_name()])?;
        // Both names must be real root-owned volume directories (or `to` absent), never a
        // planted symlink.
        Self::open_volume(&dir, &pool, kind, &from)?;
        let exists = kdir.exists(to.as_str())?;
        if exists && !replace {
            return Err(HelperError::AlreadyExists {
                what: Self::volume_what(&pool, kind, &to),
            });
        }
        if exists {
            kdir.open_dir(&[to.as_str()])?;
            nix::fcntl::renameat2(
                kdir.fd(),
                from.as_str(),
                kdir.fd(),
                to.as_str(),
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(|e| HelperError::errno("renameat2(RENAME_EXCHANGE)", to.as_str(), e))?;
            // `from` now holds the replaced volume.
            self.remove_volume(&kdir, from.as_str())?;
        } else {
            if kind == VolumeKind::Custom {
                // The snapshots first: their directory is named after the volume.
                self.custom_snapshots_rename_all(&dir, &from, &to)?;
            }
            if let Err(e) = nix::fcntl::renameat2(
                kdir.fd(),
                from.as_str(),
                kdir.fd(),
                to.as_str(),
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ) {
                if kind == VolumeKind::Custom {
                    let _ = self.custom_snapshots_rename_all(&dir, &to, &from);
                }
                return Err(HelperError::errno("renameat2", to.as_str(), e));
            }
        }
        tracing::info!(pool = %pool, kind = kind.dir_name(), from = %from, to = %to, replace, "renamed volume");
        Ok(())
    }

    async fn pack_volume(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        compression: silo_proto::store::PackCompression,
        meta: silo_proto::store::PackMeta,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        use silo_proto::image::ImageMetadata;
        let dir = self.pool(&pool)?;
        let vdir = Self::open_volume(&dir, &pool, kind, &volume)?;
        // The image's templates go along: they are what the volume's metadata.yaml names.
        let templates = crate::templates::volume_metadata(&vdir)?
            .map(|m| m.templates)
            .unwrap_or_default();
        let md = ImageMetadata {
            architecture: meta.architecture,
            creation_date: meta.creation_date,
            expiry_date: None,
            properties: meta.properties,
            templates,
        };
        let compression = pack_compression(compression);
        let out = self.tmpfile()?;
        let child_out = out
            .try_clone()
            .map_err(|e| HelperError::io("dup", "image file", e))?;
        let path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&vdir.fd())
        );
        let t0 = std::time::Instant::now();
        crate::child::run("image pack", &[], &[vdir.fd()], move || {
            silo_proto::image::pack::pack(std::path::Path::new(&path), child_out, compression, &md)
        })
        .await?
        .map_err(|e| HelperError::Io {
            op: "packing the image".into(),
            target: Self::volume_what(&pool, kind, &volume),
            message: e,
            errno: None,
        })?;
        let size = out.metadata().map(|m| m.len()).unwrap_or(0);
        tracing::info!(pool = %pool, volume = %volume, size, ms = t0.elapsed().as_millis() as u64, "packed image");
        self.send_readonly(&out)
    }

    async fn pack_backup(
        self,
        _: Context,
        pool: PoolName,
        instance: VolumeName,
        backup: silo_proto::store::BackupPack,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        let silo_proto::store::BackupPack {
            snapshots,
            index_yaml,
            backup_yaml,
            compression,
            optimized,
        } = backup;
        if optimized {
            return self
                .pack_optimized(
                    &pool,
                    &instance,
                    &snapshots,
                    index_yaml,
                    backup_yaml,
                    compression,
                )
                .await;
        }
        if index_yaml.len() > 1 << 20 || backup_yaml.len() > 4 << 20 {
            return Err(HelperError::invalid(
                "backup",
                "index.yaml or backup.yaml is too large",
            ));
        }
        let dir = self.pool(&pool)?;
        let open = |kind: VolumeKind, v: &VolumeName| Self::open_volume(&dir, &pool, kind, v);
        let ivol = open(VolumeKind::Container, &instance)?;
        let mut svols = Vec::new();
        for (name, v) in &snapshots {
            svols.push((name.clone(), open(VolumeKind::Snapshot, v)?));
        }
        let out = self.tmpfile()?;
        let child_out = out
            .try_clone()
            .map_err(|e| HelperError::io("dup", "backup file", e))?;
        let fdpath =
            |r: &Root| format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&r.fd()));
        let mut trees = vec![(
            "backup/container".to_string(),
            std::path::PathBuf::from(fdpath(&ivol)),
        )];
        for (name, r) in &svols {
            trees.push((
                format!("backup/snapshots/{}", name.as_str()),
                std::path::PathBuf::from(fdpath(r)),
            ));
        }
        let files = vec![
            ("backup/index.yaml".to_string(), index_yaml.into_bytes()),
            (
                "backup/container/backup.yaml".to_string(),
                backup_yaml.into_bytes(),
            ),
        ];
        let mut read = vec![ivol.fd()];
        read.extend(svols.iter().map(|(_, r)| r.fd()));
        let compression = pack_compression(compression);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let t0 = std::time::Instant::now();
        crate::child::run("backup pack", &[], &read, move || {
            silo_proto::image::pack::pack_tree(child_out, compression, now, &files, &trees)
        })
        .await?
        .map_err(|e| HelperError::Io {
            op: "packing the backup".into(),
            target: format!("instance {:?}", instance.as_str()),
            message: e,
            errno: None,
        })?;
        let size = out.metadata().map(|m| m.len()).unwrap_or(0);
        tracing::info!(pool = %pool, instance = %instance, snapshots = snapshots.len(), size, ms = t0.elapsed().as_millis() as u64, "packed backup");
        self.send_readonly(&out)
    }

    async fn unpack_backup(
        self,
        _: Context,
        pool: PoolName,
        upload: VolumeName,
        instance: VolumeName,
        snapshots: Vec<(VolumeName, VolumeName)>,
        optimized: bool,
    ) -> HelperResult<()> {
        let dir = self.pool(&pool)?;
        let uploads = self.0.state.open_untrusted_dir("images")?;
        // Refused at once when the pool's filesystem is already at its reserve.
        let (_, by_reserve) = self.unpack_limits(&dir)?;
        // An optimized backup holds one send stream per volume; a plain one a tree per volume.
        let part = |tree: Vec<String>, bin: String| if optimized { vec![bin] } else { tree };
        let mut parts = vec![(
            VolumeKind::Container,
            instance.clone(),
            part(
                vec!["backup".to_string(), "container".to_string()],
                "backup/container.bin".to_string(),
            ),
        )];
        for (name, v) in &snapshots {
            parts.push((
                VolumeKind::Snapshot,
                v.clone(),
                part(
                    vec![
                        "backup".into(),
                        "snapshots".into(),
                        name.as_str().to_string(),
                    ],
                    format!("backup/snapshots/{}.bin", name.as_str()),
                ),
            ));
        }
        if optimized {
            // Streams after the first may be differences from the volume before them: the
            // snapshots oldest first, then the instance (LXD's order).
            parts.rotate_left(1);
        }
        let mut made: Vec<(VolumeKind, VolumeName)> = Vec::new();
        let t0 = std::time::Instant::now();
        let r = async {
            let mut previous: Option<Root> = None;
            for (kind, vol, prefix) in parts {
                // Free space shrinks as parts land: each part gets what is left above the reserve.
                let limits = self.unpack_limits(&dir)?.0;
                let (kdir, _) = dir.mkdir_all(&[kind.dir_name()], 0o711)?;
                let target = self.new_volume(
                    &dir,
                    &kdir,
                    vol.as_str(),
                    &Self::volume_what(&pool, kind, &vol),
                )?;
                made.push((kind, vol.clone()));
                let input = crate::images::open_upload(&uploads, upload.as_str())?;
                let root = target.fd();
                if optimized {
                    let member = prefix.concat();
                    let rl = crate::receive::Limits {
                        max_bytes: limits.max_bytes,
                        max_commands: limits.max_entries.saturating_mul(16),
                    };
                    let base = previous.as_ref().map(|p| p.fd());
                    let read: Vec<std::os::fd::BorrowedFd<'_>> = base.into_iter().collect();
                    let member_name = prefix.concat();
                    let got = crate::child::run("receive backup", &[root], &read, move || {
                        crate::receive::from_backup(input, &member, root, base, rl)
                    })
                    .await?
                    .map_err(|e: String| HelperError::invalid("backup", e))?;
                    tracing::info!(
                        member = %member_name,
                        commands = got.commands,
                        bytes = got.bytes,
                        incremental = got.incremental,
                        moved_by_copy = got.moved_by_copy,
                        link_copies = got.link_copies,
                        stashed = got.stashed,
                        skipped_devices = got.skipped_devices,
                        "received send stream"
                    );
                    previous = Some(target);
                    continue;
                }
                crate::child::run("unpack backup", &[root], &[], move || {
                    let s = silo_proto::image::open_tar_stream(
                        std::fs::File::from(input),
                        limits.max_bytes.saturating_mul(2).max(1 << 20),
                    )?;
                    silo_proto::image::extract::extract_part(s, root, &prefix, &limits)
                })
                .await?
                .map_err(|e: silo_proto::image::ImageError| {
                    HelperError::invalid("backup", e.to_string())
                })?;
            }
            Ok::<(), HelperError>(())
        }
        .await
        .map_err(|e| self.name_reserve(&dir, by_reserve, e));
        if let Err(e) = r {
            for (kind, vol) in made {
                if let Ok(k) = dir.open_dir(&[kind.dir_name()]) {
                    let _ = self.remove_volume(&k, vol.as_str());
                }
            }
            tracing::warn!(pool = %pool, instance = %instance, error = %e, "refused backup");
            return Err(e);
        }
        tracing::info!(pool = %pool, instance = %instance, snapshots = snapshots.len(), ms = t0.elapsed().as_millis() as u64, "unpacked backup");
        Ok(())
    }

    async fn mount_pool(
        self,
        _: Context,
        pool: PoolName,
        driver: PoolDriver,
    ) -> HelperResult<PoolInfo> {
        // As it is: a btrfs goes onto the bare directory, not onto a nosuid bind of it.
        let dir = self.pool_raw(&pool)?;
        if !self.pool_is_btrfs(&dir) {
            match &driver {
                PoolDriver::Btrfs { .. } => {
                    let img = format!("{}.img", pool.as_str());
                    let how = beneath_how(OFlag::O_RDWR, 0);
                    let file = openat2(self.0.disks.fd(), img.as_str(), how).map_err(|e| {
                        HelperError::errno(
                            "openat2",
                            format!("{}/{img}", self.0.disks.display()),
                            e,
                        )
                    })?;
                    self.attach_and_mount(&pool, &file, &dir)?;
                }
                PoolDriver::BtrfsPath { source } => {
                    let src = self.open_host_btrfs(source)?;
                    crate::btrfs::bind_dir(src.as_fd(), dir.fd())?;
                }
                PoolDriver::BtrfsDevice { source } => self.mount_device(&pool, &dir, source)?,
                PoolDriver::DirPath { source } => {
                    let src = self.open_host_dir(source)?;
                    let same = |a: &nix::sys::stat::FileStat, b: &nix::sys::stat::FileStat| {
                        a.st_dev == b.st_dev && a.st_ino == b.st_ino
                    };
                    let (Ok(s), Ok(d)) =
                        (nix::sys::stat::fstat(&src), nix::sys::stat::fstat(dir.fd()))
                    else {
                        return Err(HelperError::invalid(
                            "source",
                            format!("cannot stat {source}"),
                        ));
                    };
                    // Still bound from before a restart of silo's: leave it.
                    if !same(&s, &d) {
                        crate::btrfs::bind_dir(src.as_fd(), dir.fd())?;
                    }
                }
                PoolDriver::Dir => {}
            }
            if !matches!(driver, PoolDriver::Dir) {
                tracing::info!(pool = %pool, "mounted storage pool");
            }
        }
        let dir = self.pool(&pool)?;
        self.pool_info_of(&pool, &dir)
    }

    async fn mount_state_dir(
        self,
        _: Context,
        dir: silo_proto::store::StateDir,
        pool: PoolName,
        volume: VolumeName,
        staging: bool,
    ) -> HelperResult<()> {
        crate::statedirs::mount(&self.0.pools, &self.0.state, dir, &pool, &volume, staging)
    }

    async fn promote_state_dir(
        self,
        _: Context,
        dir: silo_proto::store::StateDir,
    ) -> HelperResult<()> {
        crate::statedirs::promote(&self.0.state, dir)
    }

    async fn unmount_state_dir(
        self,
        _: Context,
        dir: silo_proto::store::StateDir,
    ) -> HelperResult<()> {
        crate::statedirs::unmount(&self.0.state, dir)
    }

    async fn rsync_start(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        role: silo_proto::store::RsyncRole,
        features: silo_proto::store::RsyncFeatures,
    ) -> HelperResult<silo_proto::store::RsyncSession> {
        if role == silo_proto::store::RsyncRole::Receive && kind == VolumeKind::Image {
            // An image volume holds what silo-store itself unpacked and checked, and every
            // instance made from the image copies it: nothing may be received into one.
            return Err(HelperError::Invalid {
                what: format!("receiving into image volume {volume}"),
                reason: "image volumes are only made by unpacking an image".into(),
            });
        }
        let dir = self.pool(&pool)?;
        // A real, root-owned directory beneath the pool (no symlink anywhere): rsync runs with
        // it as its cwd and landlock's root, and names nothing else.
        let vdir = Self::open_volume(&dir, &pool, kind, &volume)?;
        let what = Self::volume_what(&pool, kind, &volume);
        let fd = vdir
            .fd()
            .try_clone_to_owned()
            .map_err(|e| HelperError::io("dup", &what, e))?;
        // What arrives counts against the dir pool reserve like any other write (btrfs pools
        // are bounded by their own filesystem).
        let floor = if role == silo_proto::store::RsyncRole::Receive && !self.pool_is_btrfs(&dir) {
            self.write_budget(&dir)?;
            Some(crate::rsync::Floor {
                pool: dir
                    .fd()
                    .try_clone_to_owned()
                    .map_err(|e| HelperError::io("dup", dir.display(), e))?,
                reserve: self.0.policy.dir_pool_reserve,
                policy: self.0.policy.clone(),
            })
        } else {
            None
        };
        let (id, transport) = self.0.rsync.start(role, features, fd, what, floor).await?;
        match self.send_fd(&transport) {
            Ok(ticket) => Ok(silo_proto::store::RsyncSession { id, fd: ticket }),
            Err(e) => {
                let _ = self.0.rsync.abort(id).await;
                Err(e)
            }
        }
    }

    async fn rsync_wait(
        self,
        _: Context,
        id: u64,
        max_wait_secs: u32,
    ) -> HelperResult<Option<silo_proto::store::RsyncReport>> {
        self.0.rsync.wait(id, max_wait_secs).await
    }

    async fn rsync_abort(self, _: Context, id: u64) -> HelperResult<()> {
        self.0.rsync.abort(id).await
    }

    async fn btrfs_send_start(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        parent: Option<(VolumeKind, VolumeName)>,
    ) -> HelperResult<silo_proto::store::RsyncSession> {
        self.btrfs_send(pool, kind, volume, parent).await
    }

    async fn btrfs_receive_start(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        base: Option<(VolumeKind, VolumeName)>,
    ) -> HelperResult<silo_proto::store::RsyncSession> {
        self.btrfs_receive(pool, kind, volume, base).await
    }

    async fn btrfs_wait(
        self,
        _: Context,
        id: u64,
        max_wait_secs: u32,
    ) -> HelperResult<Option<silo_proto::store::BtrfsReport>> {
        self.0.btrfs.wait(id, max_wait_secs).await
    }

    async fn btrfs_abort(self, _: Context, id: u64) -> HelperResult<()> {
        self.0.btrfs.abort(id).await
    }

    async fn custom_snapshot_create(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
    ) -> HelperResult<()> {
        self.custom_snapshot_make(&pool, &volume, &snapshot).await
    }

    async fn custom_snapshot_delete(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
    ) -> HelperResult<()> {
        self.custom_snapshot_remove(&pool, &volume, &snapshot)
    }

    async fn custom_snapshot_rename(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
        from: VolumeName,
        to: VolumeName,
    ) -> HelperResult<()> {
        self.custom_snapshot_move(&pool, &volume, &from, &to)
    }

    async fn custom_snapshot_list(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
    ) -> HelperResult<Vec<VolumeName>> {
        self.custom_snapshot_names(&pool, &volume)
    }

    async fn custom_snapshot_restore(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
    ) -> HelperResult<()> {
        self.custom_snapshot_put_back(&pool, &volume, &snapshot)
            .await
    }

    async fn custom_snapshot_copy(
        self,
        _: Context,
        pool: PoolName,
        src: VolumeName,
        snapshot: VolumeName,
        dst: VolumeName,
    ) -> HelperResult<()> {
        self.custom_snapshot_duplicate(&pool, &src, &snapshot, &dst)
            .await
    }

    async fn pack_custom_backup(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
        snapshots: Vec<VolumeName>,
        index_yaml: String,
        compression: silo_proto::store::PackCompression,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        self.custom_backup_pack(&pool, &volume, &snapshots, index_yaml, compression)
            .await
    }

    async fn unpack_custom_backup(
        self,
        _: Context,
        pool: PoolName,
        upload: VolumeName,
        volume: VolumeName,
        snapshots: Vec<VolumeName>,
    ) -> HelperResult<()> {
        self.custom_backup_unpack(&pool, &upload, &volume, &snapshots)
            .await
    }

    async fn rsync_send_custom_snapshot(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
        features: silo_proto::store::RsyncFeatures,
    ) -> HelperResult<silo_proto::store::RsyncSession> {
        let snap = self.custom_snapshot_dir(&pool, &volume, &snapshot)?;
        let what = format!(
            "snapshot {:?} of custom volume {:?} in pool {:?}",
            snapshot.as_str(),
            volume.as_str(),
            pool.as_str()
        );
        let fd = snap
            .fd()
            .try_clone_to_owned()
            .map_err(|e| HelperError::io("dup", &what, e))?;
        let (id, transport) = self
            .0
            .rsync
            .start(silo_proto::store::RsyncRole::Send, features, fd, what, None)
            .await?;
        match self.send_fd(&transport) {
            Ok(ticket) => Ok(silo_proto::store::RsyncSession { id, fd: ticket }),
            Err(e) => {
                let _ = self.0.rsync.abort(id).await;
                Err(e)
            }
        }
    }

    async fn set_volume_quota(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
        bytes: u64,
    ) -> HelperResult<()> {
        self.volume_quota(&pool, &volume, bytes)
    }

    async fn shift_volume(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        map: Vec<silo_proto::store::IdShift>,
    ) -> HelperResult<u64> {
        let dir = self.pool(&pool)?;
        let vdir = Self::open_volume(&dir, &pool, kind, &volume)?;
        let what = Self::volume_what(&pool, kind, &volume);
        let changed =
            crate::shift::shift(&vdir, &map, self.0.policy.max_image_entries, &what).await?;
        tracing::info!(pool = %pool, volume = %volume, changed, "shifted volume ids");
        Ok(changed)
    }

    async fn instance_metadata(
        self,
        _: Context,
        pool: PoolName,
        instance: VolumeName,
        request: silo_proto::store::MetadataRequest,
    ) -> HelperResult<silo_proto::store::MetadataReply> {
        let dir = self.pool(&pool)?;
        // Only writes count against the dir pool's reserve: reads work on a full pool.
        let budget = match request {
            silo_proto::store::MetadataRequest::Put(_)
            | silo_proto::store::MetadataRequest::PutTemplate(..) => self.write_budget(&dir)?,
            _ => u64::MAX,
        };
        let vol = dir
            .open_dir(&["containers", instance.as_str()])
            .map_err(|e| match e {
                HelperError::NotFound { .. } => HelperError::NotFound {
                    what: format!("volume of instance {:?}", instance.as_str()),
                },
                e => e,
            })?;
        crate::metadata::handle(&vol, budget, request)
    }
}
