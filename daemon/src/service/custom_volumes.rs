//! Custom volumes beyond create/copy/move (`storage.rs`): their config and description,
//! state, users, quotas, and snapshots (`custom-snapshots/<volume>/<snapshot>` in the pool,
//! made by silo-store; records in `custom_volume_snapshots`).

use std::collections::BTreeMap;

use serde_json::json;
use silo_proto::{PoolName, VolumeName};

use crate::model::pool::{CustomVolume, VolumeSnapshot};
use crate::service::{DomainError, Services};
use crate::store::db::Db;

/// Checks a snapshot's name (LXD's rules as silo applies them to instance snapshots).
pub fn check_snapshot_name(s: &str) -> Result<(), DomainError> {
    crate::model::pool::check_snapshot_name(s).map_err(DomainError::BadRequest)
}

fn bad(e: silo_proto::NameError) -> DomainError {
    DomainError::BadRequest(e.to_string())
}

fn names(pool: &str, volume: &str) -> Result<(PoolName, VolumeName), DomainError> {
    Ok((
        PoolName::new(pool.to_string()).map_err(bad)?,
        VolumeName::new(volume.to_string()).map_err(bad)?,
    ))
}

/// One custom volume's record.
pub fn get(db: &Db, pool: &str, name: &str) -> Result<CustomVolume, DomainError> {
    crate::store::pools::custom_volumes(db, pool)?
        .into_iter()
        .find(|v| v.0 == name)
        .ok_or_else(|| {
            DomainError::NotFound(format!("custom volume {name:?} not found in pool {pool:?}"))
        })
}

/// Checks a custom volume's config for its pool's driver (LXD's rules and wording).
pub fn check_config(
    db: &Db,
    pool: &str,
    volume: &str,
    config: &BTreeMap<String, String>,
) -> Result<(), DomainError> {
    let p = crate::store::pools::get(db, pool)?;
    crate::model::pool::check_volume_config(volume, &p.driver, config)
        .map_err(|e| DomainError::BadRequest(e.to_string()))
}

/// Whether a device names custom volume `volume` of `pool`.
fn names_volume(d: &BTreeMap<String, String>, pool: &str, volume: &str) -> bool {
    crate::model::devices::DeviceType::of(d) == crate::model::devices::DeviceType::Disk
        && d.get("pool").map(String::as_str) == Some(pool)
        && d.get("source").map(String::as_str) == Some(volume)
}

/// What uses a custom volume, as LXD lists it: instances whose own disk devices name it
/// (not through profiles), then profiles whose devices do. silo has the default project
/// only, which LXD's URLs leave without `?project=`.
pub fn used_by(db: &Db, pool: &str, volume: &str) -> Result<Vec<String>, DomainError> {
    let mut out = Vec::new();
    for i in crate::store::instances::all(db)? {
        if i.devices.values().any(|d| names_volume(d, pool, volume)) {
            out.push(silo_api::paths::instance(&i.name));
        }
    }
    for p in crate::store::profiles::all(db)? {
        if p.devices.values().any(|d| names_volume(d, pool, volume)) {
            out.push(format!("/1.0/profiles/{}", p.name));
        }
    }
    Ok(out)
}

/// Instances using the volume (their own devices or their profiles') that are running.
pub async fn running_users(
    c: &Services,
    pool: &str,
    volume: &str,
) -> Result<Vec<String>, DomainError> {
    // Asked of silo-priv directly: the runtime service sits above this module.
    let running: Vec<String> = c
        .helpers
        .privileged
        .running()
        .await?
        .into_iter()
        .map(|r| r.instance.as_str().to_string())
        .collect();
    let mut out = Vec::new();
    for i in crate::store::instances::all(&c.db)? {
        let profiles =
            crate::service::expansion::load_profiles(&c.db, &i.profiles).unwrap_or_default();
        let (_, devices) = crate::model::profile::expand(&profiles, &i.config, &i.devices);
        if devices.values().any(|d| names_volume(d, pool, volume)) && running.contains(&i.name) {
            out.push(i.name);
        }
    }
    Ok(out)
}

/// Refuses a change to a volume a running instance has mounted (LXD's rename and move rule).
pub async fn refuse_if_running(c: &Services, pool: &str, volume: &str) -> Result<(), DomainError> {
    let users = running_users(c, pool, volume).await?;
    if !users.is_empty() {
        return Err(DomainError::BadRequest(format!(
            "Volume is still in use by running instances ({})",
            users.join(", ")
        )));
    }
    Ok(())
}

/// Refuses deleting a volume anything uses (LXD: 400 "The storage volume is still in use"),
/// naming the users.
pub fn refuse_if_used(db: &Db, pool: &str, volume: &str) -> Result<(), DomainError> {
    let users = used_by(db, pool, volume)?;
    if !users.is_empty() {
        return Err(DomainError::BadRequest(format!(
            "The storage volume is still in use by {}",
            users.join(", ")
        )));
    }
    Ok(())
}

/// Applies `size` from `config` to the volume (silo-store limits the btrfs qgroup).
pub async fn apply_size(
    c: &Services,
    pool: &str,
    volume: &str,
    config: &BTreeMap<String, String>,
) -> Result<(), DomainError> {
    let (pn, vn) = names(pool, volume)?;
    let bytes = crate::model::pool::volume_size(config);
    c.helpers.store.set_volume_quota(pn, vn, bytes).await?;
    Ok(())
}

/// `PUT/PATCH`: a new description and config. The config is checked as a whole first; a
/// size change is applied before the record changes, and undone if recording fails.
pub async fn update(
    c: &Services,
    pool: &str,
    volume: &str,
    description: &str,
    config: BTreeMap<String, String>,
) -> Result<(), DomainError> {
    let (_, _, old) = get(&c.db, pool, volume)?;
    // An empty value is an unset key (lxc's `unset` sends one), as LXD stores none.
    let mut config = config;
    config.retain(|_, v| !v.is_empty());
    check_config(&c.db, pool, volume, &config)?;
    let size_changed =
        crate::model::pool::volume_size(&old) != crate::model::pool::volume_size(&config);
    if size_changed {
        apply_size(c, pool, volume, &config).await?;
    }
    if let Err(e) =
        crate::store::pools::update_custom_volume(&c.db, pool, volume, description, &config)
    {
        if size_changed {
            let _ = apply_size(c, pool, volume, &old).await;
        }
        return Err(e.into());
    }
    c.events.lifecycle(
        "storage-volume-updated",
        &silo_api::paths::storage_volume(pool, "custom", volume),
        json!({}),
    );
    Ok(())
}

/// `GET .../state`: bytes used, and the quota (`size`, 0 when none, as LXD).
pub async fn state(
    c: &Services,
    pool: &str,
    volume: &str,
) -> Result<silo_api::StorageVolumeState, DomainError> {
    let (_, _, config) = get(&c.db, pool, volume)?;
    let (pn, vn) = names(pool, volume)?;
    let used = c
        .helpers
        .store
        .volume_usage(pn, silo_proto::store::VolumeKind::Custom, vn)
        .await?;
    let total = i64::try_from(crate::model::pool::volume_size(&config)).unwrap_or(i64::MAX);
    Ok(silo_api::StorageVolumeState {
        usage: silo_api::StorageVolumeStateUsage { used, total },
    })
}

/// A volume's snapshots, oldest first.
pub fn snapshots(db: &Db, pool: &str, volume: &str) -> Result<Vec<VolumeSnapshot>, DomainError> {
    get(db, pool, volume)?;
    Ok(crate::store::volume_snapshots::of_volume(db, pool, volume)?)
}

/// One snapshot.
pub fn snapshot(
    db: &Db,
    pool: &str,
    volume: &str,
    name: &str,
) -> Result<VolumeSnapshot, DomainError> {
    get(db, pool, volume)?;
    crate::store::volume_snapshots::get(db, pool, volume, name).map_err(|e| match e {
        crate::store::error::StoreError::NotFound(_) => DomainError::NotFound(format!(
            "snapshot {name:?} of custom volume {volume:?} not found in pool {pool:?}"
        )),
        e => e.into(),
    })
}

/// `snapshots.expiry` of `config` from now (empty: never).
fn expiry_from(config: &BTreeMap<String, String>) -> Result<String, DomainError> {
    let Some(e) = config.get("snapshots.expiry").filter(|e| !e.is_empty()) else {
        return Ok(String::new());
    };
    let secs = crate::model::parse::parse_snapshot_expiry(e)?;
    let t = time::OffsetDateTime::now_utc()
        .checked_add(time::Duration::seconds(secs))
        .ok_or_else(|| DomainError::BadRequest(format!("snapshots.expiry {e:?} is too far")))?;
    Ok(t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default())
}

/// The name LXD gives a snapshot asked for without one: `snapshots.pattern` (default
/// `snap%d`) with the first free number.
pub fn next_name(db: &Db, pool: &str, volume: &str) -> Result<String, DomainError> {
    let (_, _, config) = get(db, pool, volume)?;
    let taken: Vec<String> = snapshots(db, pool, volume)?
        .into_iter()
        .map(|s| s.name)
        .collect();
    Ok(crate::model::schedule::snapshot_name(
        config
            .get("snapshots.pattern")
            .map(String::as_str)
            .unwrap_or(""),
        &taken,
    ))
}

/// Takes a snapshot. `expires_at`: `None` for the volume's `snapshots.expiry`, `Some("")`
/// for never. Nothing remains if recording it fails.
pub async fn create_snapshot(
    c: &Services,
    pool: &str,
    volume: &str,
    name: &str,
    expires_at: Option<String>,
) -> Result<VolumeSnapshot, DomainError> {
    check_snapshot_name(name)?;
    let (_, _, config) = get(&c.db, pool, volume)?;
    if crate::store::volume_snapshots::get(&c.db, pool, volume, name).is_ok() {
        return Err(DomainError::Conflict(format!(
            "Snapshot {name:?} already in use"
        )));
    }
    let expires_at = match expires_at {
        Some(e) => e,
        None => expiry_from(&config)?,
    };
    let (pn, vn) = names(pool, volume)?;
    let sn = VolumeName::new(name.to_string()).map_err(bad)?;
    c.helpers
        .store
        .custom_snapshot_create(pn.clone(), vn.clone(), sn.clone())
        .await?;
    let s = VolumeSnapshot {
        pool: pool.into(),
        volume: volume.into(),
        name: name.into(),
        created_at: crate::service::events::now_rfc3339(),
        expires_at,
        description: String::new(),
        config,
    };
    if let Err(e) = crate::store::volume_snapshots::insert(&c.db, &s) {
        let _ = c.helpers.store.custom_snapshot_delete(pn, vn, sn).await;
        return Err(e.into());
    }
    c.events.lifecycle(
        "storage-volume-snapshot-created",
        &snapshot_url(pool, volume, name),
        json!({}),
    );
    Ok(s)
}

/// A snapshot's URL.
pub fn snapshot_url(pool: &str, volume: &str, name: &str) -> String {
    format!(
        "{}/snapshots/{name}",
        silo_api::paths::storage_volume(pool, "custom", volume)
    )
}

/// Sets a snapshot's description and expiry (`""`: never).
pub fn update_snapshot(
    c: &Services,
    pool: &str,
    volume: &str,
    name: &str,
    description: &str,
    expires_at: &str,
) -> Result<(), DomainError> {
    snapshot(&c.db, pool, volume, name)?;
    crate::store::volume_snapshots::update(&c.db, pool, volume, name, description, expires_at)?;
    c.events.lifecycle(
        "storage-volume-snapshot-updated",
        &snapshot_url(pool, volume, name),
        json!({}),
    );
    Ok(())
}

/// Renames a snapshot.
pub async fn rename_snapshot(
    c: &Services,
    pool: &str,
    volume: &str,
    from: &str,
    to: &str,
) -> Result<(), DomainError> {
    check_snapshot_name(to)?;
    snapshot(&c.db, pool, volume, from)?;
    if from == to {
        return Ok(());
    }
    if crate::store::volume_snapshots::get(&c.db, pool, volume, to).is_ok() {
        return Err(DomainError::Conflict(format!(
            "Snapshot {to:?} already in use"
        )));
    }
    let (pn, vn) = names(pool, volume)?;
    let (f, t) = (
        VolumeName::new(from.to_string()).map_err(bad)?,
        VolumeName::new(to.to_string()).map_err(bad)?,
    );
    c.helpers
        .store
        .custom_snapshot_rename(pn.clone(), vn.clone(), f.clone(), t.clone())
        .await?;
    if let Err(e) = crate::store::volume_snapshots::rename(&c.db, pool, volume, from, to) {
        let _ = c.helpers.store.custom_snapshot_rename(pn, vn, t, f).await;
        return Err(e.into());
    }
    c.events.lifecycle(
        "storage-volume-snapshot-renamed",
        &snapshot_url(pool, volume, to),
        json!({"old_name": from}),
    );
    Ok(())
}

/// Deletes a snapshot (its volume first, then its record).
pub async fn delete_snapshot(
    c: &Services,
    pool: &str,
    volume: &str,
    name: &str,
) -> Result<(), DomainError> {
    snapshot(&c.db, pool, volume, name)?;
    let (pn, vn) = names(pool, volume)?;
    let sn = VolumeName::new(name.to_string()).map_err(bad)?;
    match c.helpers.store.custom_snapshot_delete(pn, vn, sn).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    crate::store::volume_snapshots::delete(&c.db, pool, volume, name)?;
    c.events.lifecycle(
        "storage-volume-snapshot-deleted",
        &snapshot_url(pool, volume, name),
        json!({}),
    );
    Ok(())
}

/// Restores a volume from its snapshot (`PUT {"restore": "<snapshot>"}`); the volume's
/// quota is set again on its new contents.
pub async fn restore(
    c: &Services,
    pool: &str,
    volume: &str,
    name: &str,
) -> Result<(), DomainError> {
    let (_, _, config) = get(&c.db, pool, volume)?;
    snapshot(&c.db, pool, volume, name)?;
    refuse_if_running(c, pool, volume).await?;
    let (pn, vn) = names(pool, volume)?;
    let sn = VolumeName::new(name.to_string()).map_err(bad)?;
    c.helpers.store.custom_snapshot_restore(pn, vn, sn).await?;
    if crate::model::pool::volume_size(&config) > 0 {
        apply_size(c, pool, volume, &config).await?;
    }
    c.events.lifecycle(
        "storage-volume-restored",
        &silo_api::paths::storage_volume(pool, "custom", volume),
        json!({"snapshot": name}),
    );
    Ok(())
}

/// Copies every snapshot of `src` to new volume `dst` in the same pool, with its record.
pub async fn copy_snapshots(
    c: &Services,
    pool: &str,
    src: &str,
    dst: &str,
) -> Result<(), DomainError> {
    let (pn, sv) = names(pool, src)?;
    let dv = VolumeName::new(dst.to_string()).map_err(bad)?;
    for s in crate::store::volume_snapshots::of_volume(&c.db, pool, src)? {
        let sn = VolumeName::new(s.name.clone()).map_err(bad)?;
        c.helpers
            .store
            .custom_snapshot_copy(pn.clone(), sv.clone(), sn, dv.clone())
            .await?;
        crate::store::volume_snapshots::insert(
            &c.db,
            &VolumeSnapshot {
                volume: dst.into(),
                ..s
            },
        )?;
    }
    Ok(())
}

/// Records copies of `src`'s snapshots as `dst`'s (their volumes made already).
pub fn record_snapshot_copies(
    db: &Db,
    src_pool: &str,
    src: &str,
    pool: &str,
    dst: &str,
) -> Result<(), DomainError> {
    for s in crate::store::volume_snapshots::of_volume(db, src_pool, src)? {
        crate::store::volume_snapshots::insert(
            db,
            &VolumeSnapshot {
                pool: pool.into(),
                volume: dst.into(),
                ..s
            },
        )?;
    }
    Ok(())
}

/// Deletes custom volume snapshots whose `expires_at` has passed (silod's housekeeping).
pub async fn expire(c: &Services) {
    let now = crate::service::events::now_rfc3339();
    let all = match crate::store::volume_snapshots::expiring(&c.db) {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "listing expiring volume snapshots failed");
            return;
        }
    };
    for s in all.into_iter().filter(|s| s.expires_at < now) {
        match delete_snapshot(c, &s.pool, &s.volume, &s.name).await {
            Ok(()) => {
                tracing::info!(pool = %s.pool, volume = %s.volume, snapshot = %s.name, "expired volume snapshot deleted")
            }
            Err(e) => {
                tracing::warn!(pool = %s.pool, volume = %s.volume, snapshot = %s.name, error = %e, "deleting an expired volume snapshot failed")
            }
        }
    }
}

/// Takes the snapshots custom volumes' `snapshots.schedule` asks for in the minute `now`
/// falls in.
pub async fn run_schedules(c: &Services, now: time::OffsetDateTime) {
    let Ok(pools) = crate::store::pools::all(&c.db) else {
        return;
    };
    for p in pools {
        let Ok(vols) = crate::store::pools::custom_volumes(&c.db, &p.name) else {
            continue;
        };
        for (v, _, cfg) in vols {
            let Some(s) = cfg.get("snapshots.schedule").filter(|s| !s.is_empty()) else {
                continue;
            };
            let Ok(sched) = crate::model::schedule::Schedule::parse(s) else {
                continue;
            };
            if !sched.matches(now) {
                continue;
            }
            let r = match next_name(&c.db, &p.name, &v) {
                Ok(name) => create_snapshot(c, &p.name, &v, &name, None).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(s) => {
                    tracing::info!(pool = %p.name, volume = %v, snapshot = %s.name, "scheduled volume snapshot taken")
                }
                Err(e) => {
                    tracing::warn!(pool = %p.name, volume = %v, error = %e, "scheduled volume snapshot failed")
                }
            }
        }
    }
}

/// Points the disk devices of instances and profiles that name `old_pool`/`old` at
/// `new_pool`/`new` (LXD does this when a volume is renamed or moved).
pub fn update_users(
    db: &Db,
    old_pool: &str,
    old: &str,
    new_pool: &str,
    new: &str,
) -> Result<(), DomainError> {
    let repoint = |devices: &mut BTreeMap<String, crate::model::profile::Device>| {
        let mut changed = false;
        for d in devices.values_mut() {
            if names_volume(d, old_pool, old) {
                d.insert("pool".into(), new_pool.into());
                d.insert("source".into(), new.into());
                changed = true;
            }
        }
        changed
    };
    for mut i in crate::store::instances::all(db)? {
        if repoint(&mut i.devices) {
            crate::store::instances::update(db, &i)?;
        }
    }
    for mut p in crate::store::profiles::all(db)? {
        if repoint(&mut p.devices) {
            crate::store::profiles::put(db, &p)?;
        }
    }
    Ok(())
}
