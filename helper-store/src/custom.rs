//! Custom volumes' snapshots and quotas. Snapshots sit where LXD keeps them,
//! `<pool>/custom-snapshots/<volume>/<snapshot>`: read-only subvolume snapshots on btrfs,
//! copies (reflinked where the filesystem can) elsewhere. Every name is a validated
//! `VolumeName` and every directory is opened beneath the pool, root-owned, no symlink.

use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::Root;
use silo_proto::store::VolumeKind;
use silo_proto::{PoolName, VolumeName};

use crate::pools::StoreServer;

/// The directory of custom volumes' snapshots inside a pool (LXD's name).
pub(crate) const SNAPSHOTS_DIR: &str = "custom-snapshots";

impl StoreServer {
    fn snapshot_what(pool: &PoolName, volume: &VolumeName, snapshot: &VolumeName) -> String {
        format!(
            "snapshot {:?} of custom volume {:?} in pool {:?}",
            snapshot.as_str(),
            volume.as_str(),
            pool.as_str()
        )
    }

    /// The snapshot directory of `volume`, made if missing (root's, traversable only).
    fn snapshots_dir_made(&self, dir: &Root, volume: &VolumeName) -> HelperResult<Root> {
        Ok(dir.mkdir_all(&[SNAPSHOTS_DIR, volume.as_str()], 0o711)?.0)
    }

    /// The snapshot directory of `volume`, if it has one.
    fn snapshots_dir(dir: &Root, volume: &VolumeName) -> HelperResult<Option<Root>> {
        if !dir.exists(SNAPSHOTS_DIR)? {
            return Ok(None);
        }
        let top = dir.open_dir(&[SNAPSHOTS_DIR])?;
        if !top.exists(volume.as_str())? {
            return Ok(None);
        }
        Ok(Some(top.open_dir(&[volume.as_str()])?))
    }

    pub(crate) async fn custom_snapshot_make(
        &self,
        pool: &PoolName,
        volume: &VolumeName,
        snapshot: &VolumeName,
    ) -> HelperResult<()> {
        let dir = self.pool(pool)?;
        let src = Self::open_volume(&dir, pool, VolumeKind::Custom, volume)?;
        let sdir = self.snapshots_dir_made(&dir, volume)?;
        let what = Self::snapshot_what(pool, volume, snapshot);
        if sdir.exists(snapshot.as_str())? {
            return Err(HelperError::AlreadyExists { what });
        }
        self.copy_tree_into(&dir, &src, &sdir, snapshot.as_str(), true, &what)
            .await?;
        tracing::info!(pool = %pool, volume = %volume, snapshot = %snapshot, "snapshotted custom volume");
        Ok(())
    }

    /// Makes `name` in `parent` a copy of `src`: a snapshot on btrfs (read-only if asked),
    /// a reflinked copy bounded by the pool's write budget elsewhere. Nothing is left on
    /// failure.
    async fn copy_tree_into(
        &self,
        dir: &Root,
        src: &Root,
        parent: &Root,
        name: &str,
        readonly: bool,
        what: &str,
    ) -> HelperResult<()> {
        if self.pool_is_btrfs(dir) && crate::btrfs::is_subvolume(src.fd()) {
            return if readonly {
                crate::btrfs::snapshot_ro(src.fd(), parent.fd(), name)
            } else {
                crate::btrfs::snapshot(src.fd(), parent.fd(), name)
            };
        }
        let budget = self.write_budget(dir)?;
        let target = self.new_volume(dir, parent, name, what)?;
        let r = crate::images::copy(src, &target, budget)
            .await
            .map_err(|e| self.name_reserve(dir, budget != u64::MAX, e));
        if let Err(e) = r {
            drop(target);
            let _ = self.remove_volume(parent, name);
            return Err(e);
        }
        Ok(())
    }

    /// Opens snapshot `snapshot` of `volume` (root-owned, no symlink on the way).
    pub(crate) fn custom_snapshot_dir(
        &self,
        pool: &PoolName,
        volume: &VolumeName,
        snapshot: &VolumeName,
    ) -> HelperResult<Root> {
        let dir = self.pool(pool)?;
        let what = Self::snapshot_what(pool, volume, snapshot);
        let Some(sdir) = Self::snapshots_dir(&dir, volume)? else {
            return Err(HelperError::NotFound { what });
        };
        if !sdir.exists(snapshot.as_str())? {
            return Err(HelperError::NotFound { what });
        }
        sdir.open_dir(&[snapshot.as_str()])
    }

    pub(crate) fn custom_snapshot_remove(
        &self,
        pool: &PoolName,
        volume: &VolumeName,
        snapshot: &VolumeName,
    ) -> HelperResult<()> {
        let dir = self.pool(pool)?;
        let what = Self::snapshot_what(pool, volume, snapshot);
        let Some(sdir) = Self::snapshots_dir(&dir, volume)? else {
            return Err(HelperError::NotFound { what });
        };
        if !sdir.exists(snapshot.as_str())? {
            return Err(HelperError::NotFound { what });
        }
        // A real root-owned directory, never a planted link.
        sdir.open_dir(&[snapshot.as_str()])?;
        self.remove_volume(&sdir, snapshot.as_str())?;
        tracing::info!(pool = %pool, volume = %volume, snapshot = %snapshot, "deleted custom volume snapshot");
        Ok(())
    }

    /// Removes every snapshot of `volume` and its snapshot directory (a volume's delete).
    pub(crate) fn custom_snapshots_remove_all(
        &self,
        dir: &Root,
        volume: &VolumeName,
    ) -> HelperResult<()> {
        let Some(sdir) = Self::snapshots_dir(dir, volume)? else {
            return Ok(());
        };
        for name in sdir.list()? {
            self.remove_volume(&sdir, &name)?;
        }
        drop(sdir);
        dir.open_dir(&[SNAPSHOTS_DIR])?.remove_tree(volume.as_str())
    }

    /// Moves `from`'s snapshot directory to `to` (a volume's rename).
    pub(crate) fn custom_snapshots_rename_all(
        &self,
        dir: &Root,
        from: &VolumeName,
        to: &VolumeName,
    ) -> HelperResult<()> {
        if Self::snapshots_dir(dir, from)?.is_none() {
            return Ok(());
        }
        let top = dir.open_dir(&[SNAPSHOTS_DIR])?;
        if top.exists(to.as_str())? {
            // Left by nothing silo made; refuse rather than mix two volumes' snapshots.
            return Err(HelperError::AlreadyExists {
                what: format!("snapshots of custom volume {:?}", to.as_str()),
            });
        }
        Self::rename_noreplace(&top, from.as_str(), &top, to.as_str())
            .map_err(|e| HelperError::errno("renameat2", to.as_str(), e))
    }

    pub(crate) fn custom_snapshot_move(
        &self,
        pool: &PoolName,
        volume: &VolumeName,
        from: &VolumeName,
        to: &VolumeName,
    ) -> HelperResult<()> {
        let dir = self.pool(pool)?;
        let Some(sdir) = Self::snapshots_dir(&dir, volume)? else {
            return Err(HelperError::NotFound {
                what: Self::snapshot_what(pool, volume, from),
            });
        };
        if !sdir.exists(from.as_str())? {
            return Err(HelperError::NotFound {
                what: Self::snapshot_what(pool, volume, from),
            });
        }
        sdir.open_dir(&[from.as_str()])?;
        nix::fcntl::renameat2(
            sdir.fd(),
            from.as_str(),
            sdir.fd(),
            to.as_str(),
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EEXIST => HelperError::AlreadyExists {
                what: Self::snapshot_what(pool, volume, to),
            },
            e => HelperError::errno("renameat2", to.as_str(), e),
        })?;
        tracing::info!(pool = %pool, volume = %volume, from = %from, to = %to, "renamed custom volume snapshot");
        Ok(())
    }

    pub(crate) fn custom_snapshot_names(
        &self,
        pool: &PoolName,
        volume: &VolumeName,
    ) -> HelperResult<Vec<VolumeName>> {
        let dir = self.pool(pool)?;
        Ok(match Self::snapshots_dir(&dir, volume)? {
            Some(s) => s
                .list()?
                .into_iter()
                .filter_map(|n| VolumeName::new(n).ok())
                .collect(),
            None => Vec::new(),
        })
    }

    pub(crate) async fn custom_snapshot_put_back(
        &self,
        pool: &PoolName,
        volume: &VolumeName,
        snapshot: &VolumeName,
    ) -> HelperResult<()> {
        let dir = self.pool(pool)?;
        Self::open_volume(&dir, pool, VolumeKind::Custom, volume)?;
        let what = Self::snapshot_what(pool, volume, snapshot);
        let Some(sdir) = Self::snapshots_dir(&dir, volume)? else {
            return Err(HelperError::NotFound { what });
        };
        if !sdir.exists(snapshot.as_str())? {
            return Err(HelperError::NotFound { what });
        }
        let snap = sdir.open_dir(&[snapshot.as_str()])?;
        let kdir = dir.open_dir(&[VolumeKind::Custom.dir_name()])?;
        // A leading dot: no volume can be called this (VolumeName refuses it).
        let scratch = format!(".restore-{}", volume.as_str());
        if kdir.exists(&scratch)? {
            self.remove_volume(&kdir, &scratch)?;
        }
        self.copy_tree_into(&dir, &snap, &kdir, &scratch, false, &what)
            .await?;
        if let Err(e) = nix::fcntl::renameat2(
            kdir.fd(),
            scratch.as_str(),
            kdir.fd(),
            volume.as_str(),
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        ) {
            let _ = self.remove_volume(&kdir, &scratch);
            return Err(HelperError::errno(
                "renameat2(RENAME_EXCHANGE)",
                volume.as_str(),
                e,
            ));
        }
        // `scratch` now holds what the volume was.
        self.remove_volume(&kdir, &scratch)?;
        tracing::info!(pool = %pool, volume = %volume, snapshot = %snapshot, "restored custom volume");
        Ok(())
    }

    pub(crate) async fn custom_snapshot_duplicate(
        &self,
        pool: &PoolName,
        src: &VolumeName,
        snapshot: &VolumeName,
        dst: &VolumeName,
    ) -> HelperResult<()> {
        let dir = self.pool(pool)?;
        Self::open_volume(&dir, pool, VolumeKind::Custom, dst)?;
        let what = Self::snapshot_what(pool, src, snapshot);
        let Some(sdir) = Self::snapshots_dir(&dir, src)? else {
            return Err(HelperError::NotFound { what });
        };
        if !sdir.exists(snapshot.as_str())? {
            return Err(HelperError::NotFound { what });
        }
        let snap = sdir.open_dir(&[snapshot.as_str()])?;
        let ddir = self.snapshots_dir_made(&dir, dst)?;
        let dwhat = Self::snapshot_what(pool, dst, snapshot);
        if ddir.exists(snapshot.as_str())? {
            return Err(HelperError::AlreadyExists { what: dwhat });
        }
        self.copy_tree_into(&dir, &snap, &ddir, snapshot.as_str(), true, &dwhat)
            .await
    }

    pub(crate) fn volume_quota(
        &self,
        pool: &PoolName,
        volume: &VolumeName,
        bytes: u64,
    ) -> HelperResult<()> {
        let dir = self.pool(pool)?;
        let vdir = Self::open_volume(&dir, pool, VolumeKind::Custom, volume)?;
        if !self.pool_is_btrfs(&dir) || !crate::btrfs::is_subvolume(vdir.fd()) {
            if bytes == 0 {
                return Ok(());
            }
            return Err(HelperError::invalid(
                "size",
                "the dir driver cannot enforce size on custom volumes (only btrfs pools have \
                 per-volume quotas here)",
            ));
        }
        if bytes == 0 {
            return match crate::btrfs::qgroup_limit(vdir.fd(), None) {
                Ok(()) => Ok(()),
                // Quotas never turned on: there is no limit to clear.
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
                Err(e) => Err(HelperError::io(
                    "BTRFS_IOC_QGROUP_LIMIT",
                    volume.as_str(),
                    e,
                )),
            };
        }
        crate::btrfs::quota_enable(dir.fd())?;
        crate::btrfs::qgroup_limit(vdir.fd(), Some(bytes))
            .map_err(|e| HelperError::io("BTRFS_IOC_QGROUP_LIMIT", volume.as_str(), e))?;
        tracing::info!(pool = %pool, volume = %volume, bytes, "set custom volume quota");
        Ok(())
    }
}

impl StoreServer {
    pub(crate) async fn custom_backup_pack(
        &self,
        pool: &PoolName,
        volume: &VolumeName,
        snapshots: &[VolumeName],
        index_yaml: String,
        compression: silo_proto::store::PackCompression,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        if index_yaml.len() > 1 << 20 {
            return Err(HelperError::invalid("backup", "index.yaml is too large"));
        }
        let dir = self.pool(pool)?;
        let vdir = Self::open_volume(&dir, pool, VolumeKind::Custom, volume)?;
        let mut svols = Vec::new();
        if !snapshots.is_empty() {
            let Some(sdir) = Self::snapshots_dir(&dir, volume)? else {
                return Err(HelperError::NotFound {
                    what: Self::snapshot_what(pool, volume, &snapshots[0]),
                });
            };
            for s in snapshots {
                if !sdir.exists(s.as_str())? {
                    return Err(HelperError::NotFound {
                        what: Self::snapshot_what(pool, volume, s),
                    });
                }
                svols.push((s.clone(), sdir.open_dir(&[s.as_str()])?));
            }
        }
        let out = self.tmpfile()?;
        let child_out = out
            .try_clone()
            .map_err(|e| HelperError::io("dup", "backup file", e))?;
        let fdpath =
            |r: &Root| format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&r.fd()));
        let mut trees = vec![(
            "backup/volume".to_string(),
            std::path::PathBuf::from(fdpath(&vdir)),
        )];
        for (name, r) in &svols {
            trees.push((
                format!("backup/volume-snapshots/{}", name.as_str()),
                std::path::PathBuf::from(fdpath(r)),
            ));
        }
        let files = vec![("backup/index.yaml".to_string(), index_yaml.into_bytes())];
        let mut read = vec![vdir.fd()];
        read.extend(svols.iter().map(|(_, r)| r.fd()));
        let compression = crate::pools::pack_compression(compression);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        crate::child::run("custom backup pack", &[], &read, move || {
            silo_proto::image::pack::pack_tree(child_out, compression, now, &files, &trees)
        })
        .await?
        .map_err(|e| HelperError::Io {
            op: "packing the backup".into(),
            target: Self::volume_what(pool, VolumeKind::Custom, volume),
            message: e,
            errno: None,
        })?;
        tracing::info!(pool = %pool, volume = %volume, snapshots = snapshots.len(), "packed custom volume backup");
        self.send_readonly(&out)
    }

    pub(crate) async fn custom_backup_unpack(
        &self,
        pool: &PoolName,
        upload: &VolumeName,
        volume: &VolumeName,
        snapshots: &[VolumeName],
    ) -> HelperResult<()> {
        let dir = self.pool(pool)?;
        let uploads = self.0.state.open_untrusted_dir("images")?;
        // Refused at once when the pool's filesystem is already at its reserve.
        let (_, by_reserve) = self.unpack_limits(&dir)?;
        let kdir = dir.mkdir_all(&[VolumeKind::Custom.dir_name()], 0o711)?.0;
        if kdir.exists(volume.as_str())? {
            return Err(HelperError::AlreadyExists {
                what: Self::volume_what(pool, VolumeKind::Custom, volume),
            });
        }
        if Self::snapshots_dir(&dir, volume)?.is_some() {
            return Err(HelperError::AlreadyExists {
                what: format!("snapshots of custom volume {:?}", volume.as_str()),
            });
        }
        let mut made_volume = false;
        let r = async {
            // The volume first, then each snapshot into its own new directory.
            let mut parts: Vec<(Option<&VolumeName>, Vec<String>)> =
                vec![(None, vec!["backup".into(), "volume".into()])];
            for s in snapshots {
                parts.push((
                    Some(s),
                    vec![
                        "backup".into(),
                        "volume-snapshots".into(),
                        s.as_str().to_string(),
                    ],
                ));
            }
            for (snap, prefix) in parts {
                let limits = self.unpack_limits(&dir)?.0;
                let (parent, name, what) = match snap {
                    None => (
                        dir.open_dir(&[VolumeKind::Custom.dir_name()])?,
                        volume.as_str().to_string(),
                        Self::volume_what(pool, VolumeKind::Custom, volume),
                    ),
                    Some(s) => (
                        self.snapshots_dir_made(&dir, volume)?,
                        s.as_str().to_string(),
                        Self::snapshot_what(pool, volume, s),
                    ),
                };
                let target = self.new_volume(&dir, &parent, &name, &what)?;
                if snap.is_none() {
                    made_volume = true;
                }
                let input = crate::images::open_upload(&uploads, upload.as_str())?;
                let root = target.fd();
                crate::child::run("unpack custom backup", &[root], &[], move || {
                    let s = silo_proto::image::open_tar_stream(
                        std::fs::File::from(input),
                        limits.max_bytes.saturating_mul(2).max(1 << 20),
                    )?;
                    silo_proto::image::extract::extract_tree_part(s, root, &prefix, &limits)
                })
                .await?
                .map_err(|e: silo_proto::image::ImageError| {
                    HelperError::invalid("backup", e.to_string())
                })?;
                if snap.is_some() && crate::btrfs::is_subvolume(target.fd()) {
                    // As every custom volume snapshot here: read-only.
                    crate::btrfs::set_readonly(target.fd(), true)?;
                }
            }
            Ok::<(), HelperError>(())
        }
        .await
        .map_err(|e| self.name_reserve(&dir, by_reserve, e));
        if let Err(e) = r {
            let _ = self.custom_snapshots_remove_all(&dir, volume);
            if made_volume {
                let _ = self.remove_volume(&kdir, volume.as_str());
            }
            tracing::warn!(pool = %pool, volume = %volume, error = %e, "refused custom volume backup");
            return Err(e);
        }
        tracing::info!(pool = %pool, volume = %volume, snapshots = snapshots.len(), "unpacked custom volume backup");
        Ok(())
    }
}
