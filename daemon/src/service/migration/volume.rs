//! Custom volumes between hosts (`lxc storage volume copy a:pool/vol b:pool/vol`): the same
//! protocol as instances, without state, id maps or templates. Snapshots do not travel
//! between hosts yet: a source volume with snapshots is refused unless the copy is
//! `--volume-only`, and so are the ones an LXD source offers, by name.

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
    let snaps = crate::store::volume_snapshots::of_volume(&c.db, pool, name)?;
    if !snaps.is_empty() && !volume_only {
        return Err(DomainError::BadRequest(format!(
            "custom volume {name:?} has snapshots ({}), which silo does not send to another \
             host yet: copy it with --volume-only",
            snaps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
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
            let r = send(&c2, &vol, &label, &info, &mut control, &mut fs, &ctx).await;
            if let Err(e) = r {
                let e = super::peer_reason(&mut control, e).await;
                super::send_outcome(&control, Err(&e)).await;
                return Err(DomainError::Internal(e));
            }
            Ok(Value::Null)
        },
    ))
}

async fn send(
    c: &Services,
    vol: &Volume,
    label: &str,
    info: &MigrationInfo,
    control: &mut Channel,
    fs: &mut Channel,
    ctx: &OpCtx,
) -> Result<(), String> {
    let offer = MigrationHeader {
        fs: MigrationFsType::Rsync as i32,
        rsync_features: Some(our_rsync()),
        index_header_version: Some(silo_api::migration::INDEX_HEADER_VERSION),
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
    if !answer.snapshot_names.is_empty() {
        return Err("the target asked for snapshots that were not offered".into());
    }
    super::index_send(fs, &answer, info).await?;
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
    if !offer.snapshot_names.is_empty() && !req.source.volume_only {
        return Err(format!(
            "the source volume has snapshots ({}), which silo does not receive from another host yet: copy it with --volume-only",
            offer.snapshot_names.join(", ")
        ));
    }
    let answer = answer_offer(&offer, our_rsync(), false, Some(&[]));
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
