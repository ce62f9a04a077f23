//! Storage pools and volumes: records in the database, the work in silo-store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use silo_proto::store::{PoolDriver, VolumeKind};
use silo_proto::{ImageFingerprint, PoolName, VolumeName};

use crate::helpers::Helpers;
use crate::service::{DomainError, Services};
use crate::store::db::Db;

pub use crate::model::pool::{CustomVolume, Pool};

/// Default size of a loop-backed pool's sparse file.
const DEFAULT_LOOP_SIZE: u64 = 5 << 30;

/// Drivers this host answers for, with their configuration; the rest get a clear refusal
/// naming what is missing.
pub fn check_driver(
    driver: &str,
    config: &BTreeMap<String, String>,
) -> Result<PoolDriver, DomainError> {
    let unknown = |allowed: &[&str]| {
        config
            .keys()
            .find(|k| !allowed.contains(&k.as_str()))
            .map(|k| {
                DomainError::BadRequest(format!(
                    "unknown configuration key {k:?} for a {driver} pool"
                ))
            })
    };
    match driver {
        "dir" => {
            if let Some(e) = unknown(&["source"]) {
                return Err(e);
            }
            match config.get("source").filter(|s| !s.is_empty()) {
                Some(src) => Ok(PoolDriver::DirPath {
                    source: silo_proto::types::HostPath::new(src.clone())
                        .map_err(|e| DomainError::BadRequest(format!("invalid source: {e}")))?,
                }),
                None => Ok(PoolDriver::Dir),
            }
        }
        "btrfs" => {
                        if let Some(src) = config.get("source") {
                if let Some(e) = unknown(&["source"]) {
                    return Err(e);
                }
                let source = silo_proto::types::HostPath::new(src.clone())
                    .map_err(|e| DomainError::BadRequest(format!("invalid source: {e}")))?;
                // A device node is formatted (when the policy lists it); a directory must
                // already be on a mounted btrfs.
                if src.starts_with("/dev/") {
                    return Ok(PoolDriver::BtrfsDevice { source });
                }
                return Ok(PoolDriver::BtrfsPath { source });
            }
            if let Some(e) = unknown(&["size"]) {
                return Err(e);
            }
            let size = match config.get("size") {
                Some(v) => silo_proto::types::parse_bytes(v).map_err(|e| DomainError::BadRequest(format!("invalid size: {e}")))?,
                None => DEFAULT_LOOP_SIZE,
            };
            Ok(PoolDriver::Btrfs { size })
        }
        "lvm" => Err(DomainError::BadRequest(lvm_refusal())),
        "zfs" => Err(DomainError::BadRequest(
            "storage driver \"zfs\" is not supported on this host: it needs the zfs kernel module and zfsutils-linux".into(),
        )),
        "ceph" | "cephfs" | "cephobject" => Err(DomainError::BadRequest(format!(
            "storage driver {driver:?} is not supported on this host: it needs a Ceph cluster and ceph-common"
        ))),
        other => Err(DomainError::BadRequest(format!("unknown storage driver {other:?}"))),
    }
}

/// Why lvm pools cannot be made here. LVM thin pools need the kernel's device-mapper
/// (dm-thin); a kernel without it lists no `device-mapper` in /proc/misc.
fn lvm_refusal() -> String {
    let misc = std::fs::read_to_string("/proc/misc").unwrap_or_default();
    if !misc
        .lines()
        .any(|l| l.trim_end().ends_with("device-mapper"))
    {
        "storage driver \"lvm\" is not supported on this host: the kernel has no device-mapper (dm-thin), which LVM thin pools need; use \"btrfs\" or \"dir\"".into()
    } else {
        "storage driver \"lvm\" is not available in this silo yet; use \"btrfs\" or \"dir\"".into()
    }
}

/// All pools.
pub fn list(db: &Db) -> Result<Vec<Pool>, DomainError> {
    Ok(crate::store::pools::all(db)?)
}

/// One pool.
pub fn get(db: &Db, name: &str) -> Result<Pool, DomainError> {
    Ok(crate::store::pools::get(db, name)?)
}

/// Creates a pool (silo-store makes it, then the record). Nothing half-made on failure.
pub async fn create(
    db: &Db,
    helpers: &Helpers,
    name: &str,
    driver: &str,
    description: &str,
    config: BTreeMap<String, String>,
) -> Result<Pool, DomainError> {
    let pn = PoolName::new(name).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let drv = check_driver(driver, &config)?;
    let mut config = config;
    if let PoolDriver::Btrfs { size } = &drv {
        config.insert("size".into(), size.to_string());
    }
    if list(db)?.iter().any(|p| p.name == name) {
        return Err(DomainError::Conflict(format!(
            "storage pool {name:?} already exists"
        )));
    }
    helpers.store.create_pool(pn.clone(), drv).await?;
    let pool = Pool {
        name: name.into(),
        driver: driver.into(),
        description: description.into(),
        config,
    };
    let r = crate::store::pools::insert(db, &pool);
    if let Err(e) = r {
        let _ = helpers.store.delete_pool(pn).await;
        return Err(e.into());
    }
    Ok(pool)
}

/// Updates description (and config, which dir pools do not take).
pub fn update(db: &Db, p: &Pool) -> Result<(), DomainError> {
    let current = get(db, &p.name)?;
    if p.config != current.config {
        return Err(DomainError::BadRequest(format!(
            "the configuration of {} pools cannot change after creation",
            p.driver
        )));
    }
    crate::store::pools::set_description(db, &p.name, &p.description)?;
    Ok(())
}

/// What uses a pool: profiles, instances, custom volumes (as API URLs).
pub fn used_by(db: &Db, name: &str) -> Result<Vec<String>, DomainError> {
    let mut out = Vec::new();
    for p in crate::store::profiles::all(db)? {
        if p.devices.values().any(|d| {
            crate::model::devices::DeviceType::of(d) == crate::model::devices::DeviceType::Disk
                && d.get("pool").map(String::as_str) == Some(name)
        }) {
            out.push(format!("/1.0/profiles/{}", p.name));
        }
    }
    for i in crate::store::instances::all(db)? {
        if i.pool == name {
            out.push(format!("/1.0/instances/{}", i.name));
        }
    }
    for v in custom_volumes(db, name)? {
        out.push(format!("/1.0/storage-pools/{name}/volumes/custom/{}", v.0));
    }
    Ok(out)
}

/// Deletes an unused pool.
pub async fn delete(db: &Db, helpers: &Helpers, name: &str) -> Result<(), DomainError> {
    get(db, name)?;
    let users = used_by(db, name)?;
    if !users.is_empty() {
        return Err(DomainError::BadRequest(format!(
            "storage pool {name:?} is in use by {}",
            users.join(", ")
        )));
    }
    let pn = PoolName::new(name).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    // Cached image volumes go with the pool.
    for fp in image_volumes(db, name)? {
        if let Ok(v) = VolumeName::new(fp.clone()) {
            helpers
                .store
                .delete_volume(pn.clone(), VolumeKind::Image, v)
                .await?;
        }
        crate::store::local::remove_image_volume(db, name, &fp)?;
    }
    helpers.store.delete_pool(pn).await?;
    crate::store::pools::delete(db, name)?;
    Ok(())
}

/// `GET /1.0/storage-pools/<p>/resources`.
pub async fn resources(helpers: &Helpers, name: &str) -> Result<Value, DomainError> {
    let pn = PoolName::new(name).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let info = helpers.store.pool_info(pn).await?;
    Ok(
        json!({"space": {"used": info.space_used, "total": info.space_total}, "inodes": {"used": 0, "total": 0}}),
    )
}

/// Fingerprints of image volumes in a pool.
pub fn image_volumes(db: &Db, pool: &str) -> Result<Vec<String>, DomainError> {
    Ok(crate::store::local::image_volumes(db, pool)?)
}

/// Custom volumes of a pool.
pub fn custom_volumes(db: &Db, pool: &str) -> Result<Vec<CustomVolume>, DomainError> {
    Ok(crate::store::pools::custom_volumes(db, pool)?)
}

/// Serializes unpacking of one image into one pool.
#[derive(Debug, Default, Clone)]
pub struct ImageLocks(Arc<Mutex<LockMap>>);

/// One async lock per (pool, fingerprint).
type LockMap = HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

impl ImageLocks {
    /// The lock one download of `fp` from an image server holds, so concurrent pulls of the
    /// same image share it (keyed apart from every pool: a pool name is never empty).
    pub fn download_lock(&self, fp: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.lock_for("", fp)
    }

    fn lock_for(&self, pool: &str, fp: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((pool.to_string(), fp.to_string()))
            .or_default()
            .clone()
    }
}

/// Makes sure `fp` is unpacked in `pool` (once per pool), unpacking it now if not.
pub async fn ensure_image_volume(
    db: &Db,
    helpers: &Helpers,
    locks: &ImageLocks,
    pool: &str,
    fp: &ImageFingerprint,
) -> Result<(), DomainError> {
    let lock = locks.lock_for(pool, fp.as_str());
    let _g = lock.lock().await;
    if image_volumes(db, pool)?.iter().any(|f| f == fp.as_str()) {
        return Ok(());
    }
    let pn = PoolName::new(pool).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    helpers.store.unpack_image(pn, fp.clone()).await?;
    crate::store::local::add_image_volume(db, pool, fp.as_str())?;
    Ok(())
}

/// Mounts pools again (after a reboot), at silod's start: loop-backed ones, and every dir
/// pool's nosuid bind (silo-store also makes that itself before any work on a pool).
pub async fn mount_all(db: &Db, helpers: &Helpers) -> Result<(), DomainError> {
    for p in list(db)? {
        let pn = PoolName::new(p.name.clone()).map_err(|e| DomainError::Internal(e.to_string()))?;
        helpers
            .store
            .mount_pool(pn, check_driver(&p.driver, &p.config)?)
            .await?;
    }
    Ok(())
}

/// Removes an image's cached volumes from every pool.
pub async fn drop_image_volumes(db: &Db, helpers: &Helpers, fp: &str) -> Result<(), DomainError> {
    for p in list(db)? {
        if image_volumes(db, &p.name)?.iter().any(|f| f == fp) {
            let pn =
                PoolName::new(p.name.clone()).map_err(|e| DomainError::Internal(e.to_string()))?;
            let v = VolumeName::new(fp).map_err(|e| DomainError::Internal(e.to_string()))?;
            match helpers.store.delete_volume(pn, VolumeKind::Image, v).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            crate::store::local::remove_image_volume(db, &p.name, fp)?;
        }
    }
    Ok(())
}

/// Removes volumes silo-store holds that the database does not know (a silod killed between
/// the two), at start, so nothing orphaned stays on disk.
pub async fn collect_orphans(db: &Db, helpers: &Helpers) -> Result<(), DomainError> {
    for p in list(db)? {
        let Ok(pn) = PoolName::new(p.name.clone()) else {
            continue;
        };
        let known_images = image_volumes(db, &p.name)?;
        let known_instances: Vec<String> = crate::store::instances::all(db)?
            .into_iter()
            .filter(|i| i.pool == p.name)
            .map(|i| i.name)
            .collect();
        let known_custom: Vec<String> = custom_volumes(db, &p.name)?
            .into_iter()
            .map(|v| v.0)
            .collect();
        let mut known_snapshots = Vec::new();
        for i in &known_instances {
            for s in crate::store::snapshots::of_instance(db, i)? {
                known_snapshots.push(format!("{i}.{}", s.name));
            }
        }
        for (kind, known) in [
            (VolumeKind::Image, &known_images),
            (VolumeKind::Container, &known_instances),
            (VolumeKind::Custom, &known_custom),
            (VolumeKind::Snapshot, &known_snapshots),
        ] {
            let on_disk = helpers.store.list_volumes(pn.clone(), kind).await?;
            for v in on_disk {
                if !known.iter().any(|k| k == v.as_str()) {
                    tracing::warn!(pool = %p.name, volume = %v, kind = kind.dir_name(), "removing an orphaned volume left by an interrupted operation");
                    helpers.store.delete_volume(pn.clone(), kind, v).await?;
                }
            }
        }
        // Custom volumes' snapshots a silod killed between disk and record left behind.
        for vol in &known_custom {
            let Ok(vn) = VolumeName::new(vol.clone()) else {
                continue;
            };
            let known: Vec<String> = crate::store::volume_snapshots::of_volume(db, &p.name, vol)?
                .into_iter()
                .map(|s| s.name)
                .collect();
            for s in helpers
                .store
                .custom_snapshot_list(pn.clone(), vn.clone())
                .await?
            {
                if !known.iter().any(|k| k == s.as_str()) {
                    tracing::warn!(pool = %p.name, volume = %vol, snapshot = %s, "removing an orphaned custom volume snapshot left by an interrupted operation");
                    helpers
                        .store
                        .custom_snapshot_delete(pn.clone(), vn.clone(), s)
                        .await?;
                }
            }
        }
    }
    Ok(())
}

/// Creates an empty custom volume; nothing remains if recording it fails.
pub async fn create_custom_volume(
    c: &Services,
    pool: &str,
    name: &str,
    description: &str,
    config: &BTreeMap<String, String>,
) -> Result<(), DomainError> {
    // An empty value is no key (LXD stores none).
    let config: BTreeMap<String, String> = config
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let config = &config;
    crate::service::custom_volumes::check_config(&c.db, pool, name, config)?;
    let vn =
        VolumeName::new(name.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    if custom_volumes(&c.db, pool)?.iter().any(|x| x.0 == name) {
        return Err(DomainError::Conflict(format!(
            "custom volume {:?} already exists in pool {pool:?}",
            name
        )));
    }
    let pn = PoolName::new(pool.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    c.helpers
        .store
        .create_volume(pn.clone(), VolumeKind::Custom, vn.clone())
        .await?;
    let r = async {
        if crate::model::pool::volume_size(config) > 0 {
            crate::service::custom_volumes::apply_size(c, pool, name, config).await?;
        }
        crate::store::pools::insert_custom_volume_with(&c.db, pool, name, description, config)?;
        Ok::<(), DomainError>(())
    }
    .await;
    if let Err(e) = r {
        let _ = c
            .helpers
            .store
            .delete_volume(pn, VolumeKind::Custom, vn)
            .await;
        return Err(e);
    }
    Ok(())
}

/// Deletes a custom volume and its record.
pub async fn delete_custom_volume(c: &Services, pool: &str, name: &str) -> Result<(), DomainError> {
    if !custom_volumes(&c.db, pool)?.iter().any(|x| x.0 == name) {
        return Err(DomainError::NotFound(format!(
            "custom volume {name:?} not found in pool {pool:?}"
        )));
    }
    crate::service::custom_volumes::refuse_if_used(&c.db, pool, name)?;
    let pn = PoolName::new(pool.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let vn =
        VolumeName::new(name.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    // Its snapshots go with it (silo-store removes them with the volume; their records
    // follow the volume's by the foreign key).
    match c
        .helpers
        .store
        .delete_volume(pn, VolumeKind::Custom, vn)
        .await
    {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    crate::store::pools::delete_custom_volume(&c.db, pool, name)?;
    crate::service::volume_backups::delete_all(&c.state_dir, pool, name);
    Ok(())
}

/// One volume, by pool, kind and name.
pub type VolumeRef<'a> = (&'a PoolName, VolumeKind, &'a VolumeName);

/// Copies volume `src` into new volume `dst` on another pool (a copy between pools, whose
/// filesystems may differ): silo-store's confined rsync sends `src` and another receives into
/// `dst`, and silod joins their sockets. Nothing is left of `dst` on failure.
pub async fn copy_across_pools(
    helpers: &Helpers,
    src: VolumeRef<'_>,
    dst: VolumeRef<'_>,
) -> Result<(), DomainError> {
    use silo_proto::store::RsyncFeatures;
    let features = RsyncFeatures {
        xattrs: true,
        delete: false,
        compress: false,
        checksum: false,
    };
    helpers
        .store
        .create_volume(dst.0.clone(), dst.1, dst.2.clone())
        .await?;
    let copied = rsync_into(helpers, RsyncSource::Volume(src), dst, features).await;
    if copied.is_err() {
        let _ = helpers
            .store
            .delete_volume(dst.0.clone(), dst.1, dst.2.clone())
            .await;
    }
    copied
}

/// What an rsync copy between pools reads.
#[derive(Debug, Clone, Copy)]
pub enum RsyncSource<'a> {
    /// A volume.
    Volume(VolumeRef<'a>),
    /// A custom volume's snapshot: (pool, volume, snapshot).
    CustomSnapshot(&'a PoolName, &'a VolumeName, &'a VolumeName),
}

/// Copies `src` into the existing volume `dst` with two confined rsyncs whose sockets silod
/// joins; with `features.delete`, what `dst` holds and `src` lacks goes.
async fn rsync_into(
    helpers: &Helpers,
    src: RsyncSource<'_>,
    dst: VolumeRef<'_>,
    features: silo_proto::store::RsyncFeatures,
) -> Result<(), DomainError> {
    use silo_proto::store::RsyncRole;
    let shown = match src {
        RsyncSource::Volume(v) => v.2.to_string(),
        RsyncSource::CustomSnapshot(_, v, s) => format!("{v}/{s}"),
    };
    let copied = async {
        let recv = helpers
            .store
            .rsync_start(
                dst.0.clone(),
                dst.1,
                dst.2.clone(),
                RsyncRole::Receive,
                features,
            )
            .await?;
        let sent = match src {
            RsyncSource::Volume(src) => {
                helpers
                    .store
                    .rsync_start(
                        src.0.clone(),
                        src.1,
                        src.2.clone(),
                        RsyncRole::Send,
                        features,
                    )
                    .await
            }
            RsyncSource::CustomSnapshot(p, v, snap) => {
                helpers
                    .store
                    .rsync_send_custom_snapshot(p.clone(), v.clone(), snap.clone(), features)
                    .await
            }
        };
        let send = match sent {
            Ok(s) => s,
            Err(e) => {
                let _ = helpers.store.rsync_abort(recv.id).await;
                return Err(DomainError::from(e));
            }
        };
        let wait = |id: u64| async move {
            loop {
                match helpers.store.rsync_wait(id, 5).await {
                    Ok(Some(_)) => return Ok(()),
                    Ok(None) => continue,
                    Err(e) => return Err(DomainError::from(e)),
                }
            }
        };
        let waits = async {
            let (sent, received) = tokio::join!(wait(send.id), wait(recv.id));
            sent.and(received)
        };
        let joined = join_rsync(helpers, recv.fd, send.fd);
        tokio::pin!(waits, joined);
        // Joining fails before both sockets are taken: nothing would end the rsyncs, so they
        // are aborted at once rather than waited on.
        let r = tokio::select! {
            j = &mut joined => match j {
                Ok(()) => waits.await,
                Err(e) => Err(DomainError::Internal(format!(
                    "copying {shown} to pool {}: {e}",
                    dst.0
                ))),
            },
            w = &mut waits => w,
        };
        if r.is_err() {
            let _ = helpers.store.rsync_abort(recv.id).await;
            let _ = helpers.store.rsync_abort(send.id).await;
        }
        r
    }
    .await;
    copied
}

/// Copies custom volume `src` of `sp` with its snapshots to new volume `dst` of `dp` (another
/// pool): each snapshot, oldest first, is sent into the new volume and snapshotted there,
/// then the volume itself; nothing is left of `dst` on failure.
async fn copy_custom_across_pools(
    c: &Services,
    (sp, sv): (&PoolName, &VolumeName),
    (dp, dv): (&PoolName, &VolumeName),
    snapshots: &[String],
) -> Result<(), DomainError> {
    // As LXD's local copies: later passes update what earlier ones wrote, so files are
    // compared by content (a change within the same second of the same size is not missed).
    let features = silo_proto::store::RsyncFeatures {
        xattrs: true,
        delete: true,
        compress: false,
        checksum: true,
    };
    c.helpers
        .store
        .create_volume(dp.clone(), VolumeKind::Custom, dv.clone())
        .await?;
    let dst = (dp, VolumeKind::Custom, dv);
    let copied = async {
        for s in snapshots {
            let sn =
                VolumeName::new(s.clone()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
            rsync_into(
                &c.helpers,
                RsyncSource::CustomSnapshot(sp, sv, &sn),
                dst,
                features,
            )
            .await?;
            c.helpers
                .store
                .custom_snapshot_create(dp.clone(), dv.clone(), sn)
                .await?;
        }
        rsync_into(
            &c.helpers,
            RsyncSource::Volume((sp, VolumeKind::Custom, sv)),
            dst,
            features,
        )
        .await
    }
    .await;
    if copied.is_err() {
        let _ = c
            .helpers
            .store
            .delete_volume(dp.clone(), VolumeKind::Custom, dv.clone())
            .await;
    }
    copied
}

/// Joins two rsyncs' sockets until both directions have ended.
async fn join_rsync(
    helpers: &Helpers,
    a: silo_proto::fdpass::FdTicket,
    b: silo_proto::fdpass::FdTicket,
) -> Result<(), String> {
    use crate::helpers::HelperKind;
    let stream = |fd: std::os::fd::OwnedFd| -> Result<tokio::net::UnixStream, String> {
        let s = std::os::unix::net::UnixStream::from(fd);
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        tokio::net::UnixStream::from_std(s).map_err(|e| e.to_string())
    };
    let mut a = stream(helpers.take_fds(HelperKind::Store, a).await?.remove(0))?;
    let mut b = stream(helpers.take_fds(HelperKind::Store, b).await?.remove(0))?;
    tokio::io::copy_bidirectional(&mut a, &mut b)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Copies custom volume `src` of pool `src_pool` as new volume `dst` of pool `pool` (the same
/// pool or another), with its config and, unless `volume_only`, its snapshots; nothing
/// remains on failure.
pub async fn copy_custom_volume(
    c: &Services,
    src_pool: &str,
    src: &str,
    pool: &str,
    dst: &str,
    description: &str,
    volume_only: bool,
) -> Result<(), DomainError> {
    get(&c.db, src_pool)?;
    if let Some((vol, snap)) = src.split_once('/') {
        // `<volume>/<snapshot>`: a new volume from a snapshot (lxc's copy pool/vol/snap).
        return copy_snapshot_as_volume(c, (src_pool, vol, snap), pool, dst, description).await;
    }
    let Some((_, _, config)) = custom_volumes(&c.db, src_pool)?
        .into_iter()
        .find(|x| x.0 == src)
    else {
        return Err(DomainError::NotFound(format!(
            "custom volume {src:?} not found in pool {src_pool:?}"
        )));
    };
    if custom_volumes(&c.db, pool)?.iter().any(|x| x.0 == dst) {
        return Err(DomainError::Conflict(format!(
            "custom volume {dst:?} already exists in pool {pool:?}"
        )));
    }
    // The copy keeps the source's config, which must suit the target pool's driver.
    crate::service::custom_volumes::check_config(&c.db, pool, dst, &config)?;
    let with_snapshots = !volume_only
        && !crate::store::volume_snapshots::of_volume(&c.db, src_pool, src)?.is_empty();
    let snapshot_names: Vec<String> = if with_snapshots {
        crate::store::volume_snapshots::of_volume(&c.db, src_pool, src)?
            .into_iter()
            .map(|s| s.name)
            .collect()
    } else {
        Vec::new()
    };
    let bad = |e: silo_proto::NameError| DomainError::BadRequest(e.to_string());
    let (sp, sv) = (
        PoolName::new(src_pool.to_string()).map_err(bad)?,
        VolumeName::new(src.to_string()).map_err(bad)?,
    );
    let (dp, dv) = (
        PoolName::new(pool.to_string()).map_err(bad)?,
        VolumeName::new(dst.to_string()).map_err(bad)?,
    );
    if sp == dp {
        c.helpers
            .store
            .copy_volume(
                dp.clone(),
                VolumeKind::Custom,
                sv,
                VolumeKind::Custom,
                dv.clone(),
            )
            .await?;
    } else if with_snapshots {
        copy_custom_across_pools(c, (&sp, &sv), (&dp, &dv), &snapshot_names).await?;
    } else {
        copy_across_pools(
            &c.helpers,
            (&sp, VolumeKind::Custom, &sv),
            (&dp, VolumeKind::Custom, &dv),
        )
        .await?;
    }
    let recorded = async {
        crate::store::pools::insert_custom_volume_with(&c.db, pool, dst, description, &config)?;
        let made = async {
            if crate::model::pool::volume_size(&config) > 0 {
                crate::service::custom_volumes::apply_size(c, pool, dst, &config).await?;
            }
            if with_snapshots && sp == dp {
                crate::service::custom_volumes::copy_snapshots(c, pool, src, dst).await?;
            } else if with_snapshots {
                crate::service::custom_volumes::record_snapshot_copies(
                    &c.db, src_pool, src, pool, dst,
                )?;
            }
            Ok::<(), DomainError>(())
        }
        .await;
        if made.is_err() {
            let _ = crate::store::pools::delete_custom_volume(&c.db, pool, dst);
        }
        made
    }
    .await;
    if let Err(e) = recorded {
        let _ = c
            .helpers
            .store
            .delete_volume(dp, VolumeKind::Custom, dv)
            .await;
        return Err(e);
    }
    Ok(())
}

/// Makes new custom volume `dst` of `pool` from snapshot `snap` of volume `vol` of
/// `src_pool` (with the snapshot's config); nothing remains on failure.
async fn copy_snapshot_as_volume(
    c: &Services,
    (src_pool, vol, snap): (&str, &str, &str),
    pool: &str,
    dst: &str,
    description: &str,
) -> Result<(), DomainError> {
    let s = crate::service::custom_volumes::snapshot(&c.db, src_pool, vol, snap)?;
    if custom_volumes(&c.db, pool)?.iter().any(|x| x.0 == dst) {
        return Err(DomainError::Conflict(format!(
            "custom volume {dst:?} already exists in pool {pool:?}"
        )));
    }
    crate::service::custom_volumes::check_config(&c.db, pool, dst, &s.config)?;
    let bad = |e: silo_proto::NameError| DomainError::BadRequest(e.to_string());
    let (sp, sv, sn) = (
        PoolName::new(src_pool.to_string()).map_err(bad)?,
        VolumeName::new(vol.to_string()).map_err(bad)?,
        VolumeName::new(snap.to_string()).map_err(bad)?,
    );
    let (dp, dv) = (
        PoolName::new(pool.to_string()).map_err(bad)?,
        VolumeName::new(dst.to_string()).map_err(bad)?,
    );
    c.helpers
        .store
        .create_volume(dp.clone(), VolumeKind::Custom, dv.clone())
        .await?;
    let mut recorded = false;
    let made = async {
        if sp == dp {
            // The snapshot copied in as the new volume's own, restored, then dropped: each
            // step a typed call silo-store checks (and near free on btrfs).
            let store = &c.helpers.store;
            store
                .custom_snapshot_copy(dp.clone(), sv.clone(), sn.clone(), dv.clone())
                .await?;
            store
                .custom_snapshot_restore(dp.clone(), dv.clone(), sn.clone())
                .await?;
            store
                .custom_snapshot_delete(dp.clone(), dv.clone(), sn.clone())
                .await?;
        } else {
            let features = silo_proto::store::RsyncFeatures {
                xattrs: true,
                ..Default::default()
            };
            rsync_into(
                &c.helpers,
                RsyncSource::CustomSnapshot(&sp, &sv, &sn),
                (&dp, VolumeKind::Custom, &dv),
                features,
            )
            .await?;
        }
        crate::store::pools::insert_custom_volume_with(&c.db, pool, dst, description, &s.config)?;
        recorded = true;
        if crate::model::pool::volume_size(&s.config) > 0 {
            crate::service::custom_volumes::apply_size(c, pool, dst, &s.config).await?;
        }
        Ok::<(), DomainError>(())
    }
    .await;
    if let Err(e) = made {
        if recorded {
            let _ = crate::store::pools::delete_custom_volume(&c.db, pool, dst);
        }
        let _ = c
            .helpers
            .store
            .delete_volume(dp, VolumeKind::Custom, dv)
            .await;
        return Err(e);
    }
    Ok(())
}

/// Renames custom volume `name` of `pool` to `to`, or moves it to pool `to_pool` (a copy,
/// then the original goes).
pub async fn move_custom_volume(
    c: &Services,
    pool: &str,
    name: &str,
    to_pool: &str,
    to: &str,
) -> Result<(), DomainError> {
    crate::service::custom_volumes::refuse_if_running(c, pool, name).await?;
    if to_pool != pool {
        let description = custom_volumes(&c.db, pool)?
            .into_iter()
            .find(|x| x.0 == name)
            .map(|x| x.1)
            .unwrap_or_default();
        copy_custom_volume(c, pool, name, to_pool, to, &description, false).await?;
        // Devices naming the volume follow it (LXD's rule), so the old one is unused now.
        crate::service::custom_volumes::update_users(&c.db, pool, name, to_pool, to)?;
        return delete_custom_volume(c, pool, name).await;
    }
    if name == to {
        return Ok(());
    }
    crate::service::custom_volumes::get(&c.db, pool, name)?;
    if custom_volumes(&c.db, pool)?.iter().any(|x| x.0 == to) {
        return Err(DomainError::Conflict(format!(
            "custom volume {to:?} already exists in pool {pool:?}"
        )));
    }
    let bad = |e: silo_proto::NameError| DomainError::BadRequest(e.to_string());
    let pn = PoolName::new(pool.to_string()).map_err(bad)?;
    let (from, dst) = (
        VolumeName::new(name.to_string()).map_err(bad)?,
        VolumeName::new(to.to_string()).map_err(bad)?,
    );
    // The record is renamed first (its snapshots' records follow by the foreign key), so the
    // new name is claimed before anything moves on disk.
    crate::store::pools::rename_custom_volume(&c.db, pool, name, to)?;
    if let Err(e) = c
        .helpers
        .store
        .rename_volume(pn, VolumeKind::Custom, from, dst, false)
        .await
    {
        let _ = crate::store::pools::rename_custom_volume(&c.db, pool, to, name);
        return Err(e.into());
    }
    crate::service::volume_backups::rename_all(&c.state_dir, pool, name, pool, to);
    crate::service::custom_volumes::update_users(&c.db, pool, name, pool, to)?;
    Ok(())
}

/// The server keys naming a custom volume that holds one of silod's directories.
pub const STATE_VOLUME_KEYS: [(&str, silo_proto::store::StateDir); 2] = [
    ("storage.images_volume", silo_proto::store::StateDir::Images),
    (
        "storage.backups_volume",
        silo_proto::store::StateDir::Backups,
    ),
];

fn pool_volume(v: &str) -> Result<(PoolName, VolumeName), DomainError> {
    let (p, vol) = v
        .split_once('/')
        .ok_or_else(|| DomainError::BadRequest(format!("{v:?} is not POOL/VOLUME")))?;
    Ok((
        PoolName::new(p.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?,
        VolumeName::new(vol.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?,
    ))
}

/// Copies `from` into `to`: directories and regular files, never through a symlink (what is
/// neither is left out), keeping what `to` has already.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with("tmp-") {
            continue;
        }
        let md = std::fs::symlink_metadata(e.path())?;
        let dest = to.join(&name);
        if md.is_dir() {
            match std::fs::create_dir(&dest) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            n += copy_tree(&e.path(), &dest)?;
        } else if md.is_file() && std::fs::symlink_metadata(&dest).is_err() {
            std::fs::copy(e.path(), &dest)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Empties a directory of silod's (its entries, not itself).
fn clear_dir(dir: &std::path::Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if std::fs::symlink_metadata(e.path())?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Moves silod's images or backups directory between its own disk (`None`) and a custom
/// volume (`Some("pool/volume")`), with what it holds, as LXD does when
/// `storage.images_volume` or `storage.backups_volume` changes.
pub async fn relocate_state_dir(
    c: &Services,
    dir: silo_proto::store::StateDir,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(), DomainError> {
    if from == to {
        return Ok(());
    }
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| DomainError::Internal(format!("{what}: {e}"))
    };
    let live = c.state_dir.join(dir.name());
    let staged = c.state_dir.join(dir.staging_name());
    std::fs::create_dir_all(&live).map_err(io("creating the directory"))?;
    match std::fs::create_dir(&staged) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating the staging directory")(e)),
    }
    match to {
        Some(v) => {
            let (pool, vol) = pool_volume(v)?;
            // What instances could write there, silod would take for its own images or
            // backups and serve to users.
            let users =
                crate::service::custom_volumes::used_by(&c.db, pool.as_str(), vol.as_str())?;
            if !users.is_empty() {
                return Err(DomainError::BadRequest(format!(
                    "custom volume {v:?} is attached to {}: a volume holding silod's {} may not be attached to instances",
                    users.join(", "),
                    dir.name()
                )));
            }
            c.helpers
                .store
                .mount_state_dir(dir, pool, vol, true)
                .await?;
            let copied = copy_tree(&live, &staged).map_err(io("copying into the volume"))?;
            if from.is_none() {
                // silod's own copies would only lie hidden under the volume's mount.
                clear_dir(&live).map_err(io("clearing the old directory"))?;
            }
            c.helpers.store.promote_state_dir(dir).await?;
            tracing::info!(
                dir = dir.name(),
                volume = v,
                copied,
                "moved into a custom volume"
            );
        }
        None => {
            copy_tree(&live, &staged).map_err(io("copying out of the volume"))?;
            // Moved, not copied: the volume keeps nothing of silod's afterwards.
            clear_dir(&live).map_err(io("clearing the volume"))?;
            c.helpers.store.unmount_state_dir(dir).await?;
            clear_dir(&live).map_err(io("clearing the directory"))?;
            for e in std::fs::read_dir(&staged).map_err(io("reading the staging directory"))? {
                let e = e.map_err(io("reading the staging directory"))?;
                std::fs::rename(e.path(), live.join(e.file_name())).map_err(io("moving back"))?;
            }
            tracing::info!(dir = dir.name(), "moved back out of its custom volume");
        }
    }
    // unlinkat, not rmdir: silod's seccomp filter allows the one call for both.
    nix::unistd::unlinkat(
        nix::fcntl::AT_FDCWD,
        &staged,
        nix::unistd::UnlinkatFlags::RemoveDir,
    )
    .map_err(|e| io("removing the staging directory")(e.into()))?;
    Ok(())
}

/// Mounts the custom volumes the server configuration names for images and backups (at
/// silod's start; a volume already in place is left as it is).
pub async fn mount_state_volumes(c: &Services) -> Result<(), DomainError> {
    for (key, dir) in STATE_VOLUME_KEYS {
        if let Some(v) = crate::store::config::get(&c.db, key)?.filter(|v| !v.is_empty()) {
            let (pool, vol) = pool_volume(&v)?;
            std::fs::create_dir_all(c.state_dir.join(dir.name()))
                .map_err(|e| DomainError::Internal(format!("creating {}: {e}", dir.name())))?;
            c.helpers
                .store
                .mount_state_dir(dir, pool, vol, false)
                .await?;
        }
    }
    Ok(())
}
