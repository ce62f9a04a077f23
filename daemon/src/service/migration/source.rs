//! The source side: this host has the instance and sends it.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use silo_api::migration::{
    architecture_id, config_list, device_list, CriuType, InfoConfig, MigrationFsType,
    MigrationHeader, MigrationInfo, Snapshot as PbSnapshot, INDEX_HEADER_VERSION,
};
use silo_proto::store::{RsyncRole, VolumeKind};
use silo_proto::{InstanceName, PoolName, VolumeName};

use super::wire::Channel;
use super::{our_rsync, progress_reporter, store_features, transfer, unix_secs, Volume};
use crate::service::instances::{self, Instance};
use crate::service::operations::{OpCtx, Operation};
use crate::service::snapshots::{self, Snapshot};
use crate::service::{DomainError, Services};

/// What a source request asks.
#[derive(Debug, Clone, Default)]
pub struct SourceRequest {
    /// The instance.
    pub instance: String,
    /// One of its snapshots, sent as an instance of its own.
    pub snapshot: Option<String>,
    /// A live copy (state included): silo has no CRIU, so only for stopped instances.
    pub live: bool,
    /// Without the snapshots.
    pub instance_only: bool,
    /// Push: the target's operation URL, secrets and certificate.
    pub target: Option<silo_api::InstancePostTarget>,
}

/// What the source sends, fixed when the request is accepted.
#[derive(Debug, Clone)]
struct Plan {
    inst: Instance,
    snapshot: Option<Snapshot>,
    /// Its snapshots, oldest first (none with `instance_only` or for a snapshot).
    snapshots: Vec<Snapshot>,
    /// Running: sent without its state, with a final pass.
    running: bool,
    /// Its pool is btrfs: btrfs send streams are offered (not for a running instance,
    /// whose two passes need rsync).
    btrfs: bool,
}

/// How long a running instance may stay frozen for the final pass of a `--stateless` copy.
const FROZEN_PASS_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// LXD's message for a live copy, word for word: lxc users know it.
const NO_CRIU: &str =
    "Unable to perform container live migration. CRIU isn't installed on the source server";

/// Checks a source request and starts its operation: `websocket` with the secrets for the
/// target to dial (pull, relay), or `task` after dialing the target (push).
pub async fn start(c: &Services, req: SourceRequest) -> Result<Operation, DomainError> {
    let inst = instances::get(&c.db, &req.instance)?;
    let snapshot = match &req.snapshot {
        Some(s) => Some(snapshots::get(&c.db, &req.instance, s)?),
        None => None,
    };
    let running = snapshot.is_none() && crate::service::runtime::is_running(c, &inst.name).await?;
    if running && req.live {
        return Err(DomainError::Internal(format!(
            "{NO_CRIU} (stop the instance, copy a snapshot of it, or copy it with --stateless)"
        )));
    }
    let snapshots = if req.instance_only || snapshot.is_some() {
        Vec::new()
    } else {
        snapshots::list(&c.db, &inst.name)?
    };
    let btrfs = !running && crate::service::storage::get(&c.db, &inst.pool)?.driver == "btrfs";
    let plan = Plan {
        inst,
        snapshot,
        snapshots,
        running,
        btrfs,
    };
    let mut resources = BTreeMap::new();
    resources.insert(
        "instances".to_string(),
        vec![format!("/1.0/instances/{}", req.instance)],
    );
    let link = match req.target {
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
        "Migrating instance",
        resources,
        link,
        move |ctx, pair| async move {
            let (control, fs) = pair?;
            run(&c2, &plan, control, fs, &ctx)
                .await
                .map(|()| Value::Null)
        },
    ))
}

async fn run(
    c: &Services,
    plan: &Plan,
    mut control: Channel,
    mut fs: Channel,
    ctx: &OpCtx,
) -> Result<(), DomainError> {
    match send(c, plan, &mut control, &mut fs, ctx).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = super::peer_reason(&mut control, e).await;
            super::send_outcome(&control, Err(&e)).await;
            Err(DomainError::Internal(e))
        }
    }
}

fn pb_snapshot(s: &Snapshot) -> PbSnapshot {
    PbSnapshot {
        name: s.name.clone(),
        local_config: config_list(&s.config),
        profiles: s.profiles.clone(),
        ephemeral: false,
        local_devices: device_list(&s.devices),
        architecture: architecture_id(&s.architecture),
        stateful: false,
        creation_date: Some(unix_secs(&s.created_at)),
        last_used_date: Some(super::GO_ZERO_TIME),
        expiry_date: Some(unix_secs(&s.expires_at)),
    }
}

/// The offer: btrfs on a btrfs pool (else rsync), rsync's features either way (the target
/// may fall back to it), the snapshots, no id map (silo's volumes hold the instance's own
/// ids).
fn offer(plan: &Plan) -> MigrationHeader {
    MigrationHeader {
        fs: if plan.btrfs {
            MigrationFsType::Btrfs as i32
        } else {
            MigrationFsType::Rsync as i32
        },
        criu: plan.running.then_some(CriuType::None as i32),
        idmap: Vec::new(),
        snapshot_names: plan.snapshots.iter().map(|s| s.name.clone()).collect(),
        snapshots: plan.snapshots.iter().map(pb_snapshot).collect(),
        predump: Some(false),
        rsync_features: Some(our_rsync()),
        refresh: None,
        zfs_features: None,
        volume_size: None,
        btrfs_features: plan.btrfs.then(silo_api::migration::our_btrfs),
        index_header_version: Some(INDEX_HEADER_VERSION),
    }
}

/// The index header: the instance and its snapshots as LXD's backup config has them, written
/// with the shared API types.
fn info(plan: &Plan, sent: &[&Snapshot]) -> MigrationInfo {
    let i = &plan.inst;
    let (config, devices, profiles) = match &plan.snapshot {
        Some(s) => (&s.config, &s.devices, &s.profiles),
        None => (&i.config, &i.devices, &i.profiles),
    };
    let value = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    let snapshot = |s: &Snapshot| silo_api::InstanceSnapshot {
        name: s.name.clone(),
        config: s.config.clone(),
        devices: s.devices.clone(),
        profiles: s.profiles.clone(),
        architecture: s.architecture.clone(),
        created_at: s.created_at.clone(),
        // Go decodes a time, never "": LXD's zero time is "never".
        expires_at: if s.expires_at.is_empty() {
            silo_api::ZERO_TIME.to_string()
        } else {
            s.expires_at.clone()
        },
        last_used_at: silo_api::ZERO_TIME.to_string(),
        ..Default::default()
    };
    let volume = |name: &str| silo_api::StorageVolume {
        name: name.to_string(),
        kind: "container".into(),
        content_type: "filesystem".into(),
        ..Default::default()
    };
    let container = silo_api::Instance {
        name: i.name.clone(),
        kind: "container".into(),
        architecture: i.architecture.clone(),
        config: config.clone(),
        devices: devices.clone(),
        profiles: profiles.clone(),
        ephemeral: i.ephemeral,
        description: i.description.clone(),
        created_at: i.created_at.clone(),
        last_used_at: if i.last_used_at.is_empty() {
            silo_api::ZERO_TIME.to_string()
        } else {
            i.last_used_at.clone()
        },
        ..Default::default()
    };
    MigrationInfo {
        config: Some(InfoConfig {
            container: Some(value(serde_json::to_value(container))),
            snapshots: sent
                .iter()
                .map(|s| value(serde_json::to_value(snapshot(s))))
                .collect(),
            pool: Some(json!({"name": i.pool})),
            profiles: Vec::new(),
            volume: Some(value(serde_json::to_value(volume(&i.name)))),
            volume_snapshots: sent
                .iter()
                .map(|s| value(serde_json::to_value(volume(&s.name))))
                .collect(),
        }),
    }
}

async fn send(
    c: &Services,
    plan: &Plan,
    control: &mut Channel,
    fs: &mut Channel,
    ctx: &OpCtx,
) -> Result<(), String> {
    let offer = offer(plan);
    control.send_proto(&offer).await?;
    let answer: MigrationHeader = control
        .recv_proto()
        .await
        .map_err(|e| format!("the target did not answer the migration offer: {e}"))?;
    let btrfs = match answer.fs_type() {
        Some(MigrationFsType::Rsync) => false,
        Some(MigrationFsType::Btrfs) if plan.btrfs => true,
        _ => {
            return Err(format!(
                "the target asked for transfer type {}, which was not offered",
                answer.fs
            ))
        }
    };
    let by_name: HashMap<&str, &Snapshot> = plan
        .snapshots
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut sent: Vec<&Snapshot> = Vec::new();
    for n in &answer.snapshot_names {
        if sent.iter().any(|s| &s.name == n) {
            return Err(format!("the target asked for snapshot {n:?} twice"));
        }
        let s = by_name
            .get(n.as_str())
            .ok_or_else(|| format!("the target asked for snapshot {n:?}, which was not offered"))?;
        sent.push(*s);
    }
    let features = store_features(&answer);
    super::index_send(fs, &answer, &info(plan, &sent)).await?;
    let pool = PoolName::new(plan.inst.pool.clone()).map_err(|e| e.to_string())?;
    if btrfs {
        send_btrfs(c, plan, &answer, &sent, &pool, fs, ctx).await?;
        return super::recv_outcome(control).await;
    }
    for s in &sent {
        let vol = Volume {
            pool: pool.clone(),
            kind: VolumeKind::Snapshot,
            name: snapshots::volume(&plan.inst.name, &s.name).map_err(|e| e.to_string())?,
        };
        let report = progress_reporter(ctx, s.name.clone());
        transfer(c, fs, &vol, RsyncRole::Send, features, &report).await?;
    }
    let main = match &plan.snapshot {
        Some(s) => Volume {
            pool: pool.clone(),
            kind: VolumeKind::Snapshot,
            name: snapshots::volume(&plan.inst.name, &s.name).map_err(|e| e.to_string())?,
        },
        None => Volume {
            pool: pool.clone(),
            kind: VolumeKind::Container,
            name: VolumeName::new(plan.inst.name.clone()).map_err(|e| e.to_string())?,
        },
    };
    let report = progress_reporter(ctx, plan.inst.name.clone());
    transfer(c, fs, &main, RsyncRole::Send, features, &report).await?;
    if plan.running && answer.criu == Some(CriuType::None as i32) {
        // The final pass of a running instance: frozen, so what it sends is consistent.
        final_pass(c, plan, fs, &main, features, &report).await?;
    }
    super::recv_outcome(control).await
}

/// The btrfs transfer, as LXD's `MigrateVolume` does it: the migration header when it was
/// negotiated, then one send stream per snapshot oldest first (each the difference from
/// the one before), then the instance (from a read-only snapshot, the difference from the
/// last snapshot); each stream ended by the end marker.
async fn send_btrfs(
    c: &Services,
    plan: &Plan,
    answer: &MigrationHeader,
    sent: &[&Snapshot],
    pool: &PoolName,
    fs: &mut Channel,
    ctx: &OpCtx,
) -> Result<(), String> {
    let f = answer.btrfs_features.unwrap_or_default();
    if f.header_subvolume_uuids == Some(true) {
        return Err("the target asked for btrfs subvolume UUIDs, which were not offered".into());
    }
    if f.migration_header == Some(true) {
        let sub = |snapshot: &str, readonly: bool| silo_api::migration::BtrfsSubvolume {
            path: "/".into(),
            snapshot: snapshot.into(),
            readonly,
            uuid: String::new(),
        };
        let mut subvolumes: Vec<_> = sent.iter().map(|s| sub(&s.name, true)).collect();
        subvolumes.push(sub("", false));
        fs.send_json(&silo_api::migration::BtrfsHeader { subvolumes })
            .await?;
    }
    let mut previous: Option<Volume> = None;
    for s in sent {
        let vol = Volume {
            pool: pool.clone(),
            kind: VolumeKind::Snapshot,
            name: snapshots::volume(&plan.inst.name, &s.name).map_err(|e| e.to_string())?,
        };
        let report = progress_reporter(ctx, s.name.clone());
        super::btrfs_transfer(c, fs, &vol, previous.as_ref(), true, &report).await?;
        previous = Some(vol);
    }
    let main = match &plan.snapshot {
        Some(s) => Volume {
            pool: pool.clone(),
            kind: VolumeKind::Snapshot,
            name: snapshots::volume(&plan.inst.name, &s.name).map_err(|e| e.to_string())?,
        },
        None => Volume {
            pool: pool.clone(),
            kind: VolumeKind::Container,
            name: VolumeName::new(plan.inst.name.clone()).map_err(|e| e.to_string())?,
        },
    };
    let report = progress_reporter(ctx, plan.inst.name.clone());
    super::btrfs_transfer(c, fs, &main, previous.as_ref(), true, &report).await?;
    Ok(())
}

async fn final_pass(
    c: &Services,
    plan: &Plan,
    fs: &mut Channel,
    main: &Volume,
    features: silo_proto::store::RsyncFeatures,
    report: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), String> {
    let n = InstanceName::new(plan.inst.name.clone()).map_err(|e| e.to_string())?;
    // An instance its user paused stays paused: neither frozen again nor thawed after.
    let paused = crate::service::runtime::is_frozen(c, &plan.inst.name)
        .await
        .unwrap_or(false);
    let frozen = if paused {
        false
    } else {
        match c.helpers.privileged.freeze(n.clone(), true).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(instance = %plan.inst.name, error = %e, "the final pass runs unfrozen: freezing failed");
                false
            }
        }
    };
    // The instance stays frozen for this pass only: bounded, whatever the peer does.
    let r = match tokio::time::timeout(
        FROZEN_PASS_LIMIT,
        transfer(c, fs, main, RsyncRole::Send, features, report),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the final pass of {} took longer than {} s with the instance frozen",
            plan.inst.name,
            FROZEN_PASS_LIMIT.as_secs()
        )),
    };
    if frozen {
        if let Err(e) = c.helpers.privileged.freeze(n, false).await {
            tracing::error!(instance = %plan.inst.name, error = %e, "thawing after a migration pass failed");
        }
    }
    r.map(|_| ())
}
