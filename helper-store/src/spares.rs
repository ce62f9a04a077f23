//! Spare copies of image volumes on dir pools. A dir pool makes an instance's root volume
//! by copying the image's tree, which on ext4 is one metadata operation after another (a
//! busybox image: 306 entries, 10 to 120 ms here depending on the journal; a Debian one:
//! 13,000 entries). Once an instance has been made from an image, silo-store copies that
//! image again in the background into `<pool>/spares/<image>`, and the next instance made
//! from it takes the copy with one rename. The copy is made exactly as `copy_volume` makes
//! a volume, so what an instance gets is the same either way, and the pool stays plain
//! directory trees.
//!
//! At most one spare per image and pool, made only after an instance was made from that
//! image (an image merely stored costs nothing more), within the policy's
//! `dir_pool_reserve` as every write, and never on btrfs pools (a snapshot is already
//! instant). A spare goes with its image.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use silo_proto::jail::beneath::Root;
use silo_proto::store::VolumeKind;
use silo_proto::{HelperError, HelperResult, PoolName, VolumeName};

use crate::pools::StoreServer;

/// Where a pool keeps its spares.
pub(crate) const SPARES_DIR: &str = "spares";

/// The lock of one (pool, image)'s spare.
type SpareLock = Arc<tokio::sync::Mutex<()>>;

/// One lock per (pool, image): a spare is taken, made or dropped by one request at a time.
#[derive(Debug, Default)]
pub(crate) struct Spares(Mutex<HashMap<(String, String), SpareLock>>);

impl Spares {
    fn lock(&self, pool: &PoolName, image: &VolumeName) -> SpareLock {
        match self.0.lock() {
            Ok(mut m) => m
                .entry((pool.as_str().to_string(), image.as_str().to_string()))
                .or_default()
                .clone(),
            // A poisoned map: a lock of its own still serialises this caller's work.
            Err(_) => Arc::default(),
        }
    }
}

/// The name a spare is made under, renamed to the image's name when complete: a spare is
/// never seen half-made, even after a crash.
fn unfinished(image: &VolumeName) -> String {
    format!("{}.new", image.as_str())
}

impl StoreServer {
    /// Whether a pool keeps spares: a dir pool.
    fn keeps_spares(&self, pool_dir: &Root) -> bool {
        !self.pool_is_btrfs(pool_dir)
    }

    /// Moves the spare of `image` into `kdir` as `dst`, if there is one; answers whether it
    /// did. Refuses an existing `dst`, as a copy would.
    pub(crate) async fn take_spare(
        &self,
        pool_dir: &Root,
        pool: &PoolName,
        image: &VolumeName,
        kdir: &Root,
        dst: &str,
        what: &str,
    ) -> HelperResult<bool> {
        if !self.keeps_spares(pool_dir) {
            return Ok(false);
        }
        let lock = self.0.spares.lock(pool, image);
        let _held = lock.lock().await;
        let Ok(sdir) = pool_dir.open_dir(&[SPARES_DIR]) else {
            return Ok(false);
        };
        if !sdir.exists(image.as_str())? {
            return Ok(false);
        }
        // Only silo-store writes beneath a pool; still, a directory and not a link.
        sdir.open_dir(&[image.as_str()])?;
        Self::rename_noreplace(&sdir, image.as_str(), kdir, dst).map_err(|e| match e {
            nix::errno::Errno::EEXIST => HelperError::AlreadyExists {
                what: what.to_string(),
            },
            e => HelperError::errno("renameat2", dst, e),
        })?;
        Ok(true)
    }

    /// Makes the spare of `image` in the background, unless the pool keeps none or it has
    /// one already. A failure only means the next instance is copied.
    pub(crate) fn refill_spare(&self, pool: PoolName, image: VolumeName) {
        let me = self.clone();
        tokio::task::spawn_local(async move {
            let t0 = std::time::Instant::now();
            match me.make_spare(&pool, &image).await {
                Ok(true) => {
                    tracing::debug!(pool = %pool, image = %image, ms = t0.elapsed().as_millis() as u64, "made a spare")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(pool = %pool, image = %image, error = %e, "making a spare copy of an image")
                }
            }
        });
    }

    async fn make_spare(&self, pool: &PoolName, image: &VolumeName) -> HelperResult<bool> {
        let lock = self.0.spares.lock(pool, image);
        let _held = lock.lock().await;
        let dir = self.pool(pool)?;
        if !self.keeps_spares(&dir) {
            return Ok(false);
        }
        let src = Self::open_volume(&dir, pool, VolumeKind::Image, image)?;
        let (sdir, _) = dir.mkdir_all(&[SPARES_DIR], 0o700)?;
        if sdir.exists(image.as_str())? {
            return Ok(false);
        }
        let tmp = unfinished(image);
        if sdir.exists(&tmp)? {
            self.remove_volume(&sdir, &tmp)?;
        }
        let budget = self.write_budget(&dir)?;
        let target = sdir.mkdir_new(&tmp, crate::images::VOLUME_MODE, "a spare volume")?;
        if let Err(e) = crate::images::copy(&src, &target, budget).await {
            let _ = self.remove_volume(&sdir, &tmp);
            return Err(e);
        }
        Self::rename_noreplace(&sdir, &tmp, &sdir, image.as_str())
            .map_err(|e| HelperError::errno("renameat2", image.as_str(), e))?;
        Ok(true)
    }

    /// Removes the image volume `image` (in `kdir`) and its spare, made or being made. Both
    /// under the spare's lock: a refill copying from an image half removed would skip what
    /// has vanished and leave a spare short of files for an image imported again.
    pub(crate) async fn remove_image_and_spare(
        &self,
        pool_dir: &Root,
        kdir: &Root,
        pool: &PoolName,
        image: &VolumeName,
    ) -> HelperResult<()> {
        let lock = self.0.spares.lock(pool, image);
        let _held = lock.lock().await;
        if let Ok(sdir) = pool_dir.open_dir(&[SPARES_DIR]) {
            for name in [image.as_str().to_string(), unfinished(image)] {
                if sdir.exists(&name)? {
                    self.remove_volume(&sdir, &name)?;
                }
            }
        }
        self.remove_volume(kdir, image.as_str())
    }
}
