//! Custom volumes between hosts (`lxc storage volume copy a:pool/vol b:pool/vol`): the same
//! protocol as instances, without state, id maps or templates. Snapshots travel as LXD's do
//! (unless `--volume-only`): offered by name with their records, then sent oldest first with
//! rsync before the volume itself; the target receives each into the new volume and
//! snapshots it there.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use silo_api::migration::{
    answer_offer, InfoConfig, MigrationFsType, MigrationHeader, MigrationInfo,
};
use silo_proto::store::{RsyncRole, VolumeKind};
use silo_proto::{PoolName, VolumeName};

use super::wire::Channel;
use super::{our_rsync, progress_reporter, store_features, transfer, Volume};
use crate::service::operations::{OpCtx, Operation};
use crate::service::{DomainError, Services};

fn volume(pool: &str, name: &str) -> Result<Volume, DomainError> {
    Ok(Volume {
        pool: PoolName::new(pool.to_string())
            .map_err(|e| DomainError::BadRequest(e.to_string()))?,
        kind: VolumeKind::Custom,
        name: VolumeName::new(name.to_string())
            .map_err(|e| DomainError::BadRequest(e.to_string()))?,
    })
}

fn exists(c: &Services, pool: &str, name: &str) -> Result<bool, DomainError> {
    Ok(crate::service::storage::custom_volumes(&c.db, pool)?
        .iter()
        .any(|v| v.0 == name))
}

fn resources(pool: &str, name: &str) -> BTreeMap<String, Vec<String>> {
    let mut r = BTreeMap::new();
    r.insert(
        "storage_volumes".to_string(),
        vec![format!("/1.0/storage-pools/{pool}/volumes/custom/{name}")],
    );
    r
}

/// `POST /1.0/storage-pools/<pool>/volumes/custom/<name>` with `migration: true`.
pub async fn start_source(
    c: &Services,
    pool: &str,
    name: &str,
    target: Option<silo_api::StorageVolumePostTarget>,
    volume_only: bool,
) -> Result<Operation, DomainError> {
    crate::service::storage::get(&c.db, pool)?;
    let (_, description, config) = crate::service::custom_volumes::get(&c.db, pool, name)?;
    let snaps = if volume_only {
        Vec::new()
    } else {
        crate::store::volume_snapshots::of_volume(&c.db, pool, name)?
    };
    let vol = volume(pool, name)?;
    let label = name.to_string();
    let info = MigrationInfo {
        config: Some(InfoConfig {
            volume: serde_json::to_value(silo_api::StorageVolume {
                name: name.to_string(),
                kind: "custom".into(),
                content_type: "filesystem".into(),
                config,
                description,
                ..Default::default()
            })
            .ok(),
            pool: Some(json!({"name": pool})),
            ..Default::default()
        }),
    };
    let link = match target {
        Some(t) => {
            let (control, fs) = super::connect_pair(&t.operation, &t.websockets, &t.certificate)
                .await
                .map_err(DomainError::BadRequest)?;
            super::Link::Ready(control, fs)
        }
        None => super::Link::Accept,
    };
    let c2 = c.clone();
    Ok(super::start_op(
        c,
        "Migrating storage volume",
        resources(pool, name),
        link,
        move |ctx, pair| async move {
            let (mut control, mut fs) = pair?;
            let r = send(
                &c2,
                &vol,
                &label,
                &info,
                &snaps,
                &mut control,
                &mut fs,
                &ctx,
            )
            .await;
            if let Err(e) = r {
                let e = super::peer_reason(&mut control, e).await;
                super::send_outcome(&control, Err(&e)).await;
                return Err(DomainError::Internal(e));
            }
            Ok(Value::Null)
        },
    ))
}

/// A custom volume snapshot as the migration header carries it (LXD's
/// `volumeSnapshotToProtobuf`).
fn pb_snapshot(s: &crate::model::pool::VolumeSnapshot) -> silo_api::migration::Snapshot {
    silo_api::migration::Snapshot {
        name: s.name.clone(),
        local_config: silo_api::migration::config_list(&s.config),
        profiles: Vec::new(),
        ephemeral: false,
        local_devices: Vec::new(),
        architecture: 0,
        stateful: false,
        creation_date: Some(super::unix_secs(&s.created_at)),
        last_used_date: Some(super::GO_ZERO_TIME),
        expiry_date: Some(super::unix_secs(&s.expires_at)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    c: &Services,
    vol: &Volume,
    label: &str,
    info: &MigrationInfo,
    snaps: &[crate::model::pool::VolumeSnapshot],
    control: &mut Channel,
    fs: &mut Channel,
    ctx: &OpCtx,
) -> Result<(), String> {
    let offer = MigrationHeader {
        fs: MigrationFsType::Rsync as i32,
        rsync_features: Some(our_rsync()),
        index_header_version: Some(silo_api::migration::INDEX_HEADER_VERSION),
        snapshot_names: snaps.iter().map(|s| s.name.clone()).collect(),
        snapshots: snaps.iter().map(pb_snapshot).collect(),
        ..Default::default()
    };
    control.send_proto(&offer).await?;
    let answer: MigrationHeader = control
        .recv_proto()
        .await
        .map_err(|e| format!("the target did not answer the migration offer: {e}"))?;
    if answer.fs_type() != Some(MigrationFsType::Rsync) {
        return Err(format!(
            "the target asked for transfer type {}, but silo sends rsync only",
            answer.fs
        ));
    }
    let mut sent: Vec<&crate::model::pool::VolumeSnapshot> = Vec::new();
    for n in &answer.snapshot_names {
        if sent.iter().any(|s| &s.name == n) {
            return Err(format!("the target asked for snapshot {n:?} twice"));
        }
        let s = snaps
            .iter()
            .find(|s| &s.name == n)
            .ok_or_else(|| format!("the target asked for snapshot {n:?}, which was not offered"))?;
        sent.push(s);
    }
    // The index header lists only what is sent.
    let mut info = info.clone();
    if let Some(cfg) = info.config.as_mut() {
        cfg.volume_snapshots = sent
            .iter()
            .filter_map(|s| {
                serde_json::to_value(silo_api::StorageVolumeSnapshot {
                    name: s.name.clone(),
                    description: s.description.clone(),
                    config: s.config.clone(),
                    content_type: "filesystem".into(),
                    created_at: s.created_at.clone(),
                    expires_at: Some(if s.expires_at.is_empty() {
                        silo_api::ZERO_TIME.to_string()
                    } else {
                        s.expires_at.clone()
                    }),
                })
                .ok()
            })
            .collect();
    }
    super::index_send(fs, &answer, &info).await?;
    for s in &sent {
        let sn = VolumeName::new(s.name.clone()).map_err(|e| e.to_string())?;
        let report = progress_reporter(ctx, format!("{label}/{}", s.name));
        super::transfer_custom_snapshot(c, fs, vol, &sn, store_features(&answer), &report).await?;
    }
    let report = progress_reporter(ctx, label.to_string());
    transfer(
        c,
        fs,
        vol,
        RsyncRole::Send,
        store_features(&answer),
        &report,
    )
    .await?;
    super::recv_outcome(control).await
}

/// What a `source.type: migration` volume create asks.
#[derive(Debug, Clone)]
pub struct TargetRequest {
    /// The pool.
    pub pool: String,
    /// The new volume's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its config (checked for the pool's driver before anything is made).
    pub config: BTreeMap<String, String>,
    /// Where from.
    pub source: silo_api::StorageVolumeSource,
}

/// `POST /1.0/storage-pools/<pool>/volumes/custom` with `source.type: migration`.
pub async fn start_target(c: &Services, req: TargetRequest) -> Result<Operation, DomainError> {
    crate::service::storage::get(&c.db, &req.pool)?;
    let vol = volume(&req.pool, &req.name)?;
    crate::service::custom_volumes::check_config(&c.db, &req.pool, &req.name, &req.config)?;
    let (vol_pool, vol_name) = (req.pool.clone(), req.name.clone());
    if req.source.refresh {
        return Err(DomainError::NotImplemented(
            "refreshing a custom volume from another host is not supported yet".into(),
        ));
    }
    if exists(c, &req.pool, &req.name)? {
        return Err(DomainError::Conflict(format!(
            "custom volume {:?} already exists in pool {:?}",
            req.name, req.pool
        )));
    }
    let push = match req.source.mode.as_str() {
        "" | "pull" => false,
        "push" => true,
        m => {
            return Err(DomainError::NotImplemented(format!(
                "Mode {m:?} not implemented"
            )))
        }
    };
    let link = if push {
        super::Link::Accept
    } else {
        super::Link::Dial {
            operation: req.source.operation.clone(),
            secrets: req.source.websockets.clone(),
            certificate: req.source.certificate.clone(),
        }
    };
    let res = resources(&vol_pool, &vol_name);
    let c2 = c.clone();
    Ok(super::start_op(
        c,
        "Creating storage volume",
        res,
        link,
        move |ctx, pair| async move {
            let (mut control, mut fs) = pair?;
            match receive(&c2, &req, &vol, &mut control, &mut fs, &ctx).await {
                Ok(()) => {
                    super::send_outcome(&control, Ok(())).await;
                    Ok(Value::Null)
                }
                Err(e) => {
                    let e = super::peer_reason(&mut control, e).await;
                    super::send_outcome(&control, Err(&e)).await;
                    Err(DomainError::Internal(e))
                }
            }
        },
    ))
}

async fn receive(
    c: &Services,
    req: &TargetRequest,
    vol: &Volume,
    control: &mut Channel,
    fs: &mut Channel,
    ctx: &OpCtx,
) -> Result<(), String> {
    let offer: MigrationHeader = control
        .recv_proto()
        .await
        .map_err(|e| format!("reading the migration offer: {e}"))?;
    offer.check().map_err(|e| e.to_string())?;
    let wanted: Option<&[String]> = if req.source.volume_only {
        Some(&[])
    } else {
        None
    };
    let answer = answer_offer(&offer, our_rsync(), false, wanted);
    // Every snapshot name is checked before anything is made.
    let mut snaps: Vec<crate::model::pool::VolumeSnapshot> = Vec::new();
    for (n, pb) in answer.snapshot_names.iter().zip(&answer.snapshots) {
        crate::service::custom_volumes::check_snapshot_name(n).map_err(|e| e.to_string())?;
        if snaps.iter().any(|s| &s.name == n) {
            return Err(format!("the source offered snapshot {n:?} twice"));
        }
        let config: BTreeMap<String, String> = pb
            .local_config
            .iter()
            .map(|c| (c.key.clone(), c.value.clone()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        crate::service::custom_volumes::check_config(&c.db, &req.pool, &req.name, &config)
            .map_err(|e| format!("snapshot {n:?}: {e}"))?;
        let created = super::rfc3339(pb.creation_date.unwrap_or(super::GO_ZERO_TIME));
        snaps.push(crate::model::pool::VolumeSnapshot {
            pool: req.pool.clone(),
            volume: req.name.clone(),
            name: n.clone(),
            created_at: if created.is_empty() {
                crate::service::events::now_rfc3339()
            } else {
                created
            },
            expires_at: super::rfc3339(pb.expiry_date.unwrap_or(super::GO_ZERO_TIME)),
            description: String::new(),
            config,
        });
    }
    if answer.snapshot_names.len() != answer.snapshots.len() {
        return Err("the source offered snapshot names and records that do not match".into());
    }
    control.send_proto(&answer).await?;
    super::index_recv(fs, &answer).await?;
    // The volume exists only in the pool until everything arrived and was checked: nothing
    // can attach a half-received volume.
    c.helpers
        .store
        .create_volume(vol.pool.clone(), VolumeKind::Custom, vol.name.clone())
        .await
        .map_err(|e| format!("creating volume {:?}: {e}", req.name))?;
    let report = progress_reporter(ctx, req.name.clone());
    let received = async {
        // Each snapshot arrives as the volume was then: received into the new volume, checked,
        // and snapshotted there; the volume itself comes last.
        for s in &snaps {
            let sreport = progress_reporter(ctx, format!("{}/{}", req.name, s.name));
            transfer(
                c,
                fs,
                vol,
                RsyncRole::Receive,
                store_features(&answer),
                &sreport,
            )
            .await?;
            c.helpers
                .store
                .shift_volume(
                    vol.pool.clone(),
                    VolumeKind::Custom,
                    vol.name.clone(),
                    Vec::new(),
                )
                .await
                .map_err(|e| format!("volume {:?}: {e}", req.name))?;
            let sn = VolumeName::new(s.name.clone()).map_err(|e| e.to_string())?;
            c.helpers
                .store
                .custom_snapshot_create(vol.pool.clone(), vol.name.clone(), sn)
                .await
                .map_err(|e| format!("snapshot {:?}: {e}", s.name))?;
        }
        transfer(
            c,
            fs,
            vol,
            RsyncRole::Receive,
            store_features(&answer),
            &report,
        )
        .await?;
        // LXD sends a custom volume's files with the ids they have on its disk and no map:
        // they must be ids an instance can hold.
        c.helpers
            .store
            .shift_volume(
                vol.pool.clone(),
                VolumeKind::Custom,
                vol.name.clone(),
                Vec::new(),
            )
            .await
            .map_err(|e| format!("volume {:?}: {e}", req.name))?;
        crate::store::pools::insert_custom_volume_with(
            &c.db,
            &req.pool,
            &req.name,
            &req.description,
            &req.config,
        )
        .map_err(|e| e.to_string())?;
        for s in &snaps {
            if let Err(e) = crate::store::volume_snapshots::insert(&c.db, s) {
                let _ = crate::store::pools::delete_custom_volume(&c.db, &req.pool, &req.name);
                return Err(e.to_string());
            }
        }
        if crate::model::pool::volume_size(&req.config) > 0 {
            if let Err(e) =
                crate::service::custom_volumes::apply_size(c, &req.pool, &req.name, &req.config)
                    .await
            {
                let _ = crate::store::pools::delete_custom_volume(&c.db, &req.pool, &req.name);
                return Err(e.to_string());
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = received {
        if let Err(d) = c
            .helpers
            .store
            .delete_volume(vol.pool.clone(), VolumeKind::Custom, vol.name.clone())
            .await
        {
            tracing::warn!(volume = %req.name, error = %d, "removing a half-received volume failed");
        }
        return Err(e);
    }
    Ok(())
}
