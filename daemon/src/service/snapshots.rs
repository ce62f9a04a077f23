//! Instance snapshots: records in the database, volumes in silo-store.
//!
//! A snapshot's volume is `containers-snapshots/<instance>.<snapshot>` in the instance's pool
//! (instance names hold no dot, so the first dot splits the name). A snapshot of a running
//! instance is taken with the instance frozen, so it is crash-consistent, as LXD does.

use serde_json::json;
use silo_proto::store::VolumeKind;
use silo_proto::{InstanceName, PoolName, VolumeName};

use crate::service::instances::{self, Instance};
use crate::service::DomainError;
use crate::service::Services;
use crate::store::db::Db;

pub use crate::model::instance::Snapshot;

/// Checks a snapshot name: it becomes part of a volume name, so letters, digits, `-`, `_`
/// and `.`, 1 to 63 characters, not starting with `.` or `-` (LXD forbids `/` too).
pub fn check_name(s: &str) -> Result<(), DomainError> {
    let bad = |why: &str| DomainError::BadRequest(format!("invalid snapshot name {s:?}: {why}"));
    if s.is_empty() {
        return Err(bad("must not be empty"));
    }
    if s.contains('/') {
        return Err(bad("must not contain '/'"));
    }
    if s.len() > 63 {
        return Err(bad("must be at most 63 characters"));
    }
    if s.starts_with(['.', '-']) {
        return Err(bad("must not start with '.' or '-'"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(bad(&format!(
            "must only contain letters, digits, '-', '_' and '.', found {c:?}"
        )));
    }
    Ok(())
}

/// The snapshot's volume name.
pub fn volume(instance: &str, snap: &str) -> Result<VolumeName, DomainError> {
    VolumeName::new(format!("{instance}.{snap}"))
        .map_err(|e| DomainError::BadRequest(e.to_string()))
}

fn pool(i: &Instance) -> Result<PoolName, DomainError> {
    PoolName::new(i.pool.clone()).map_err(|e| DomainError::Internal(e.to_string()))
}

/// An instance's snapshots, oldest first.
pub fn list(db: &Db, instance: &str) -> Result<Vec<Snapshot>, DomainError> {
    Ok(crate::store::snapshots::of_instance(db, instance)?)
}

/// One snapshot.
pub fn get(db: &Db, instance: &str, name: &str) -> Result<Snapshot, DomainError> {
    Ok(crate::store::snapshots::get(db, instance, name)?)
}

/// Changes a snapshot's expiry (`None`: never), as LXD 5.0's snapshot PUT does.
pub fn set_expiry(
    c: &Services,
    instance: &str,
    name: &str,
    expires_at: Option<String>,
) -> Result<(), DomainError> {
    crate::store::snapshots::set_expiry(
        &c.db,
        instance,
        name,
        expires_at.as_deref().unwrap_or(""),
    )?;
    c.events.lifecycle(
        "instance-snapshot-updated",
        &format!("/1.0/instances/{instance}/snapshots/{name}"),
        serde_json::json!({}),
    );
    Ok(())
}

/// Bytes the snapshot's volume holds on disk, when silo-store can tell.
pub async fn usage(c: &Services, s: &Snapshot) -> Option<u64> {
    let i = instances::get(&c.db, &s.instance).ok()?;
    let pn = pool(&i).ok()?;
    let vol = volume(&s.instance, &s.name).ok()?;
    c.helpers
        .store
        .volume_usage(pn, VolumeKind::Snapshot, vol)
        .await
        .ok()
}

/// Records a snapshot (its volume exists already).
pub fn insert_record(db: &Db, s: &Snapshot) -> Result<(), DomainError> {
    insert(db, s)
}

fn insert(db: &Db, s: &Snapshot) -> Result<(), DomainError> {
    Ok(crate::store::snapshots::insert(db, s)?)
}

/// LXD's default name: `snap<N>` with the first unused N.
pub fn next_name(db: &Db, instance: &str) -> Result<String, DomainError> {
    let have: Vec<String> = list(db, instance)?.into_iter().map(|s| s.name).collect();
    Ok((0..)
        .map(|n| format!("snap{n}"))
        .find(|n| !have.contains(n))
        .unwrap_or_else(|| "snap".into()))
}

/// Takes a snapshot (stateless). A running instance is frozen for the copy.
pub async fn create(
    c: &Services,
    instance: &str,
    name: &str,
    expires_at: Option<String>,
) -> Result<Snapshot, DomainError> {
    check_name(name)?;
    let i = instances::get(&c.db, instance)?;
    if get(&c.db, instance, name).is_ok() {
        return Err(DomainError::Conflict(format!(
            "snapshot {name:?} of instance {instance:?} already exists"
        )));
    }
    let pn = pool(&i)?;
    let vol = volume(instance, name)?;
    let src = VolumeName::new(instance.to_string())
        .map_err(|e| DomainError::BadRequest(e.to_string()))?;
    // An instance paused by its user is already consistent, and must stay paused after.
    let running = crate::service::runtime::run_state(c, instance)
        .await?
        .is_some_and(|r| !r.frozen);
    let n = InstanceName::new(instance.to_string())
        .map_err(|e| DomainError::BadRequest(e.to_string()))?;
    if running {
        c.helpers.privileged.freeze(n.clone(), true).await?;
    }
    let copied = c
        .helpers
        .store
        .copy_volume(
            pn.clone(),
            VolumeKind::Container,
            src,
            VolumeKind::Snapshot,
            vol.clone(),
        )
        .await;
    if running {
        // Thawed whatever the copy did.
        let thawed = c.helpers.privileged.freeze(n, false).await;
        if thawed.is_err() {
            tracing::error!(instance, ?thawed, "thawing after a snapshot failed");
        }
    }
    copied.map_err(|e| match e {
        crate::helpers::HelperFailure::Refused(silo_proto::HelperError::Io {
            message,
            errno: Some(libc::ENOSPC),
            ..
        }) => DomainError::BadRequest(format!("the storage pool {:?} is full: {message}", i.pool)),
        e => e.into(),
    })?;
    let expires_at = match expires_at {
        Some(e) => e,
        None => expiry_from(&c.db, &i)?,
    };
    let s = Snapshot {
        instance: instance.into(),
        name: name.into(),
        created_at: crate::service::events::now_rfc3339(),
        expires_at,
        description: String::new(),
        config: i.config.clone(),
        devices: i.devices.clone(),
        profiles: i.profiles.clone(),
        architecture: i.architecture.clone(),
    };
    if let Err(e) = insert(&c.db, &s) {
        let _ = c
            .helpers
            .store
            .delete_volume(pn, VolumeKind::Snapshot, vol)
            .await;
        return Err(e);
    }
    c.events.lifecycle(
        "instance-snapshot-created",
        &format!("/1.0/instances/{instance}/snapshots/{name}"),
        json!({}),
    );
    Ok(s)
}

/// `snapshots.expiry` (LXD's `1d`, `2w`, `3m`, `1y`, `6H`, `30M` list, summed) from now.
fn expiry_from(db: &Db, i: &Instance) -> Result<String, DomainError> {
    let profiles = crate::service::expansion::load_profiles(db, &i.profiles).unwrap_or_default();
    let (cfg, _) = crate::model::profile::expand(&profiles, &i.config, &i.devices);
    let Some(e) = cfg.get("snapshots.expiry").filter(|e| !e.is_empty()) else {
        return Ok(String::new());
    };
    let secs = crate::model::parse::parse_snapshot_expiry(e)?;
    // Bounded by the parser, but a time past year 9999 must be an error, not a panic.
    let t = time::OffsetDateTime::now_utc()
        .checked_add(time::Duration::seconds(secs))
        .ok_or_else(|| DomainError::BadRequest(format!("snapshots.expiry {e:?} is too far")))?;
    Ok(t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default())
}

/// Deletes a snapshot.
pub async fn delete(c: &Services, instance: &str, name: &str) -> Result<(), DomainError> {
    let i = instances::get(&c.db, instance)?;
    get(&c.db, instance, name)?;
    match c
        .helpers
        .store
        .delete_volume(pool(&i)?, VolumeKind::Snapshot, volume(instance, name)?)
        .await
    {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    crate::store::snapshots::delete(&c.db, instance, name)?;
    c.events.lifecycle(
        "instance-snapshot-deleted",
        &format!("/1.0/instances/{instance}/snapshots/{name}"),
        json!({}),
    );
    Ok(())
}

/// Renames a snapshot.
pub async fn rename(c: &Services, instance: &str, from: &str, to: &str) -> Result<(), DomainError> {
    check_name(to)?;
    let i = instances::get(&c.db, instance)?;
    get(&c.db, instance, from)?;
    if get(&c.db, instance, to).is_ok() {
        return Err(DomainError::Conflict(format!(
            "snapshot {to:?} of instance {instance:?} already exists"
        )));
    }
    c.helpers
        .store
        .rename_volume(
            pool(&i)?,
            VolumeKind::Snapshot,
            volume(instance, from)?,
            volume(instance, to)?,
            false,
        )
        .await?;
    crate::store::snapshots::rename(&c.db, instance, from, to)?;
    Ok(())
}

/// Restores a snapshot: its root filesystem replaces the instance's (swapped in atomically)
/// and its configuration comes back, the instance's volatile keys kept. A running instance is
/// stopped first and started again after, as LXD does.
pub async fn restore(c: &Services, instance: &str, name: &str) -> Result<(), DomainError> {
    let i = instances::get(&c.db, instance)?;
    let s = get(&c.db, instance, name)?;
    let running = crate::service::runtime::is_running(c, instance).await?;
    if running {
        crate::service::runtime::stop(c, instance, false, Some(std::time::Duration::from_secs(30)))
            .await?;
    }
    replace_root(
        c,
        &pool(&i)?,
        VolumeKind::Snapshot,
        volume(instance, name)?,
        instance,
        "restoring",
    )
    .await?;
    let mut restored = i.clone();
    restored.config = s
        .config
        .iter()
        .filter(|(k, _)| !k.starts_with("volatile."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(
            i.config
                .iter()
                .filter(|(k, _)| k.starts_with("volatile."))
                .map(|(k, v)| (k.clone(), v.clone())),
        )
        .collect();
    restored.devices = s.devices.clone();
    restored.profiles = s.profiles.clone();
    instances::restore(&c.db, &restored)?;
    c.events.lifecycle(
        "instance-restored",
        &format!("/1.0/instances/{instance}"),
        json!({"snapshot": name}),
    );
    if running {
        crate::service::runtime::start(c, instance).await?;
    }
    Ok(())
}

/// Deletes every snapshot of an instance (before the instance itself goes).
pub async fn delete_all(c: &Services, instance: &str) -> Result<(), DomainError> {
    for s in list(&c.db, instance)? {
        delete(c, instance, &s.name).await?;
    }
    Ok(())
}

/// Renames the snapshot volumes of an instance being renamed (the rows follow the instance's
/// through ON UPDATE CASCADE).
pub async fn rename_instance(c: &Services, i: &Instance, to: &str) -> Result<(), DomainError> {
    for s in list(&c.db, &i.name)? {
        c.helpers
            .store
            .rename_volume(
                pool(i)?,
                VolumeKind::Snapshot,
                volume(&i.name, &s.name)?,
                volume(to, &s.name)?,
                false,
            )
            .await?;
    }
    Ok(())
}

/// Copies every snapshot of `from` to the new instance `to` (`silo copy` without
/// `--instance-only`).
pub async fn copy_all(c: &Services, from: &str, to: &Instance) -> Result<(), DomainError> {
    let src_pool = pool(&instances::get(&c.db, from)?)?;
    let dst_pool = pool(to)?;
    for s in list(&c.db, from)? {
        let (sv, dv) = (volume(from, &s.name)?, volume(&to.name, &s.name)?);
        if src_pool == dst_pool {
            c.helpers
                .store
                .copy_volume(
                    dst_pool.clone(),
                    VolumeKind::Snapshot,
                    sv,
                    VolumeKind::Snapshot,
                    dv,
                )
                .await?;
        } else {
            crate::service::storage::copy_across_pools(
                &c.helpers,
                (&src_pool, VolumeKind::Snapshot, &sv),
                (&dst_pool, VolumeKind::Snapshot, &dv),
            )
            .await?;
        }
        let copy = Snapshot {
            instance: to.name.clone(),
            config: s
                .config
                .iter()
                .filter(|(k, _)| !k.starts_with("volatile."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..s
        };
        insert(&c.db, &copy)?;
    }
    Ok(())
}

/// Takes the snapshots `snapshots.schedule` asks for in the minute `now` falls in (running
/// instances, and stopped ones too with `snapshots.schedule.stopped`).
pub async fn run_schedules(c: &Services, now: time::OffsetDateTime) {
    let Ok(all) = instances::list_records(&c.db) else {
        return;
    };
    for i in all {
        let profiles =
            crate::service::expansion::load_profiles(&c.db, &i.profiles).unwrap_or_default();
        let (cfg, _) = crate::model::profile::expand(&profiles, &i.config, &i.devices);
        let Some(s) = cfg.get("snapshots.schedule").filter(|s| !s.is_empty()) else {
            continue;
        };
        let Ok(sched) = crate::model::schedule::Schedule::parse(s) else {
            continue;
        };
        if !sched.matches(now) {
            continue;
        }
        let stopped_too = cfg
            .get("snapshots.schedule.stopped")
            .is_some_and(|v| crate::model::parse::is_true(v));
        if !stopped_too
            && !crate::service::runtime::is_running(c, &i.name)
                .await
                .unwrap_or(false)
        {
            continue;
        }
        let taken: Vec<String> = list(&c.db, &i.name)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect();
        let name = crate::model::schedule::snapshot_name(
            cfg.get("snapshots.pattern")
                .map(String::as_str)
                .unwrap_or(""),
            &taken,
        );
        match create(c, &i.name, &name, None).await {
            Ok(_) => {
                tracing::info!(instance = %i.name, snapshot = %name, "scheduled snapshot taken")
            }
            Err(e) => tracing::warn!(instance = %i.name, error = %e, "scheduled snapshot failed"),
        }
    }
}

/// Makes instance `target`'s root a copy of volume `from`: copied beside it first, under a
/// name no instance can have (instance names hold no dot), then swapped in atomically, so a
/// failure leaves the old root whole.
async fn replace_root(
    c: &Services,
    pn: &PoolName,
    kind: VolumeKind,
    from: VolumeName,
    target: &str,
    why: &str,
) -> Result<(), DomainError> {
    let tmp = VolumeName::new(format!("{target}.{why}"))
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let _ = c
        .helpers
        .store
        .delete_volume(pn.clone(), VolumeKind::Container, tmp.clone())
        .await;
    let swapped = async {
        c.helpers
            .store
            .copy_volume(pn.clone(), kind, from, VolumeKind::Container, tmp.clone())
            .await?;
        c.helpers
            .store
            .rename_volume(
                pn.clone(),
                VolumeKind::Container,
                tmp.clone(),
                VolumeName::new(target.to_string())
                    .map_err(|e| DomainError::Internal(e.to_string()))?,
                true,
            )
            .await?;
        Ok::<(), DomainError>(())
    }
    .await;
    if swapped.is_err() {
        let _ = c
            .helpers
            .store
            .delete_volume(pn.clone(), VolumeKind::Container, tmp)
            .await;
    }
    swapped
}

/// `copy --refresh` onto an existing (stopped) copy: its root becomes the source's again
/// (swapped in atomically), and its snapshots become the source's (missing ones copied, ones
/// the source no longer has deleted). Its own config and identity stay.
pub async fn refresh_copy(
    c: &Services,
    source: &str,
    target: &str,
    instance_only: bool,
) -> Result<(), DomainError> {
    let t = instances::get(&c.db, target)?;
    if crate::service::runtime::is_running(c, target).await? {
        return Err(DomainError::BadRequest(format!(
            "instance {target:?} is running: stop it before refreshing it"
        )));
    }
    let (src, snap) = match source.split_once('/') {
        Some((i, s)) => (i.to_string(), Some(s.to_string())),
        None => (source.to_string(), None),
    };
    let si = instances::get(&c.db, &src)?;
    if si.pool != t.pool {
        return Err(DomainError::BadRequest(format!(
            "refreshing across storage pools is not supported yet: {src:?} is on {:?}, {target:?} on {:?}",
            si.pool, t.pool
        )));
    }
    let pn = pool(&t)?;
    let (kind, from) = match &snap {
        Some(s) => {
            get(&c.db, &src, s)?;
            (VolumeKind::Snapshot, volume(&src, s)?)
        }
        None => (
            VolumeKind::Container,
            VolumeName::new(src.clone()).map_err(|e| DomainError::BadRequest(e.to_string()))?,
        ),
    };
    replace_root(c, &pn, kind, from, target, "refreshing").await?;
    if !instance_only && snap.is_none() {
        let want = list(&c.db, &src)?;
        let have = list(&c.db, target)?;
        for h in have
            .iter()
            .filter(|h| !want.iter().any(|w| w.name == h.name))
        {
            delete(c, target, &h.name).await?;
        }
        for w in want
            .iter()
            .filter(|w| !have.iter().any(|h| h.name == w.name))
        {
            c.helpers
                .store
                .copy_volume(
                    pn.clone(),
                    VolumeKind::Snapshot,
                    volume(&src, &w.name)?,
                    VolumeKind::Snapshot,
                    volume(target, &w.name)?,
                )
                .await?;
            insert(
                &c.db,
                &Snapshot {
                    instance: target.to_string(),
                    config: w
                        .config
                        .iter()
                        .filter(|(k, _)| !k.starts_with("volatile."))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    ..w.clone()
                },
            )?;
        }
    }
    c.events.lifecycle(
        "instance-updated",
        &format!("/1.0/instances/{target}"),
        json!({"refreshed_from": source}),
    );
    Ok(())
}

/// Deletes snapshots whose `expires_at` has passed (silod's housekeeping, every minute).
pub async fn expire(c: &Services) {
    let now = crate::service::events::now_rfc3339();
    let all = match crate::store::snapshots::expiring(&c.db) {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "listing expiring snapshots failed");
            return;
        }
    };
    for s in all.into_iter().filter(|s| s.expires_at < now) {
        match delete(c, &s.instance, &s.name).await {
            Ok(()) => {
                tracing::info!(instance = %s.instance, snapshot = %s.name, "expired snapshot deleted")
            }
            Err(e) => {
                tracing::warn!(instance = %s.instance, snapshot = %s.name, error = %e, "deleting an expired snapshot failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_expiry() {
        assert!(check_name("snap0").is_ok() && check_name("before-upgrade.1").is_ok());
        for bad in ["", "a/b", ".x", "-x", "with space", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(volume("c1", "snap0").expect("v").as_str(), "c1.snap0");
    }
}
