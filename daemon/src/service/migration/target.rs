//! The target side: this host receives an instance from another (`source.type: migration`).
//!
//! Everything the source sends is untrusted: the header is checked
//! ([`MigrationHeader::check`]), snapshot configs go through the config schema with their
//! volatile keys dropped, the data is written by silo-store's confined rsync, and the ids are
//! checked (and shifted through the header's id map) before the instance is recorded. The new
//! instance gets its own id range, MAC addresses and volatile keys. Nothing is recorded until
//! everything arrived; any failure removes every volume made.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use silo_api::migration::{
    answer_btrfs, answer_offer, architecture_name, BtrfsHeader, CriuType, MigrationFsType,
    MigrationHeader,
};
use silo_proto::store::{IdShift, RsyncRole, VolumeKind};
use silo_proto::{PoolName, VolumeName};

use super::wire::Channel;
use super::{our_rsync, progress_reporter, rfc3339, store_features, transfer, Volume};
use crate::model::profile::{expand, root_pool};
use crate::service::expansion::load_profiles;
use crate::service::instances::{self, CreateRequest, Instance};
use crate::service::operations::{OpCtx, Operation};
use crate::service::snapshots::{self, Snapshot};
use crate::service::{DomainError, Services};

/// Checks a `source.type: migration` create request and starts its operation: `task`
/// after dialing the source (pull), or `websocket` with secrets for the source (push, relay).
pub async fn start(c: &Services, mut req: CreateRequest) -> Result<Operation, DomainError> {
    let mode = match req.source.mode.as_str() {
        "" | "pull" => Mode::Pull,
        "push" => Mode::Push,
        m => {
            return Err(DomainError::NotImplemented(format!(
                "Mode {m:?} not implemented"
            )))
        }
    };
    // A copy gets its own identity: the source's volatile keys (a move sends them) stay
    // behind, but for the image it came from.
    req.config.retain(|k, _| !k.starts_with("volatile."));
    let source = req.source.clone();
    let existing = match instances::get(&c.db, &req.name) {
        Ok(i) if req.source.refresh => Some(i),
        _ => None,
    };
    let (req, refresh) = match existing {
        // `copy --refresh` onto an existing copy: only what changed travels, into its volume.
        Some(i) => {
            if crate::service::runtime::is_running(c, &i.name).await? {
                return Err(DomainError::BadRequest(format!(
                    "instance {:?} is running: stop it before refreshing it",
                    i.name
                )));
            }
            if !c.creating.claim(&i.name) {
                return Err(DomainError::Conflict(format!(
                    "instance {:?} is already being created or refreshed",
                    i.name
                )));
            }
            let mut req = req;
            req.profiles = Some(i.profiles.clone());
            req.devices = i.devices.clone();
            req.config = i.config.clone();
            (req, Some(i))
        }
        None => (crate::service::lifecycle::prepare(c, req)?.0, None),
    };
    let name = req.name.clone();
    let mut resources = BTreeMap::new();
    resources.insert(
        "instances".to_string(),
        vec![format!("/1.0/instances/{name}")],
    );
    let link = match mode {
        Mode::Pull => super::Link::Dial {
            operation: source.operation.clone(),
            secrets: source.secrets.clone(),
            certificate: source.certificate.clone(),
        },
        Mode::Push => super::Link::Accept,
    };
    let c2 = c.clone();
    Ok(super::start_op(
        c,
        "Creating instance",
        resources,
        link,
        move |ctx, pair| async move {
            let r = match pair {
                Ok((control, fs)) => run(&c2, &req, refresh.as_ref(), control, fs, &ctx).await,
                Err(e) => Err(e),
            };
            c2.creating.release(&req.name);
            r.map(|()| Value::Null)
        },
    ))
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Pull,
    Push,
}

/// The volumes made so far, removed on failure.
#[derive(Debug, Default)]
struct Made {
    pool: Option<PoolName>,
    main: Option<VolumeName>,
    snapshots: Vec<VolumeName>,
}

impl Made {
    async fn remove(&self, c: &Services) {
        let Some(pool) = &self.pool else { return };
        for s in &self.snapshots {
            if let Err(e) = c
                .helpers
                .store
                .delete_volume(pool.clone(), VolumeKind::Snapshot, s.clone())
                .await
            {
                tracing::warn!(volume = %s, error = %e, "removing a half-received snapshot failed");
            }
        }
        if let Some(m) = &self.main {
            if let Err(e) = c
                .helpers
                .store
                .delete_volume(pool.clone(), VolumeKind::Container, m.clone())
                .await
            {
                tracing::warn!(volume = %m, error = %e, "removing a half-received instance failed");
            }
        }
    }
}

async fn run(
    c: &Services,
    req: &CreateRequest,
    refresh: Option<&Instance>,
    mut control: Channel,
    mut fs: Channel,
    ctx: &OpCtx,
) -> Result<(), DomainError> {
    let mut made = Made::default();
    let received = receive(c, req, refresh, &mut control, &mut fs, ctx, &mut made).await;
    let snaps = match received {
        Ok(s) => s,
        Err(e) => {
            let e = super::peer_reason(&mut control, e).await;
            super::send_outcome(&control, Err(&e)).await;
            made.remove(c).await;
            return Err(DomainError::Internal(e));
        }
    };
    let recorded = match refresh {
        Some(_) => record_refresh(c, &snaps),
        None => record(c, req, &snaps).await,
    };
    if let Err(e) = recorded {
        super::send_outcome(&control, Err(&e.to_string())).await;
        made.remove(c).await;
        return Err(e);
    }
    // Recorded: from here on the copy exists, whatever the source hears.
    super::send_outcome(&control, Ok(())).await;
    c.events.lifecycle(
        if refresh.is_some() {
            "instance-updated"
        } else {
            "instance-created"
        },
        &format!("/1.0/instances/{}", req.name),
        json!({}),
    );
    Ok(())
}

/// The id map of a header, as silo-store takes it.
fn shifts(h: &MigrationHeader) -> Vec<IdShift> {
    h.idmap
        .iter()
        .map(|m| IdShift {
            isuid: m.isuid,
            isgid: m.isgid,
            hostid: m.hostid.max(0) as u32,
            nsid: m.nsid.max(0) as u32,
            range: m.maprange.max(0) as u32,
        })
        .collect()
}

/// Receives everything into new volumes; answers the snapshot records to write.
#[allow(clippy::too_many_arguments)]
async fn receive(
    c: &Services,
    req: &CreateRequest,
    refresh: Option<&Instance>,
    control: &mut Channel,
    fs: &mut Channel,
    ctx: &OpCtx,
    made: &mut Made,
) -> Result<Vec<Snapshot>, String> {
    let offer: MigrationHeader = control
        .recv_proto()
        .await
        .map_err(|e| format!("reading the migration offer: {e}"))?;
    offer.check().map_err(|e| e.to_string())?;
    match offer.fs_type() {
        Some(MigrationFsType::BlockAndRsync) => {
            return Err("the source sends a virtual machine: silo runs containers".into())
        }
        _ if offer.criu == Some(CriuType::CriuRsync as i32)
            || offer.criu == Some(CriuType::Phaul as i32) =>
        {
            return Err(
                "the source sends a live instance with its state, which needs CRIU: silo has none; copy it stopped or with --stateless".into(),
            )
        }
        _ => {}
    }
    let wanted = match refresh {
        Some(i) => Some(refresh_plan(c, i, &offer).await?),
        None => None,
    };
    let profiles =
        load_profiles(&c.db, req.profiles.as_deref().unwrap_or(&[])).map_err(|e| e.to_string())?;
    let (_, ed) = expand(&profiles, &req.config, &req.devices);
    let pool = PoolName::new(root_pool(&ed)?).map_err(|e| e.to_string())?;
    let pool_btrfs = crate::service::storage::get(&c.db, pool.as_str())
        .map(|p| p.driver == "btrfs")
        .unwrap_or(false);
    let mut answer = answer_offer(&offer, our_rsync(), refresh.is_some(), wanted.as_deref());
    answer_btrfs(&offer, &mut answer, pool_btrfs);
    control.send_proto(&answer).await?;
    let features = store_features(&answer);
    super::index_recv(fs, &answer).await?;
    let main = VolumeName::new(req.name.clone()).map_err(|e| e.to_string())?;
    made.pool = Some(pool.clone());
    if answer.fs_type() == Some(MigrationFsType::Btrfs) {
        return receive_btrfs(c, req, &offer, &answer, &pool, &main, fs, ctx, made).await;
    }
    if refresh.is_none() {
        let filled = features.delete && prefill(c, req, &pool, &main).await;
        if !filled {
            c.helpers
                .store
                .create_volume(pool.clone(), VolumeKind::Container, main.clone())
                .await
                .map_err(|e| format!("creating the volume of {:?}: {e}", req.name))?;
        }
        made.main = Some(main.clone());
    }
    let into = Volume {
        pool: pool.clone(),
        kind: VolumeKind::Container,
        name: main.clone(),
    };
    let map = shifts(&offer);
    let mut records = Vec::new();
    for s in &answer.snapshots {
        snapshots::check_name(&s.name).map_err(|e| e.to_string())?;
        let report = progress_reporter(ctx, s.name.clone());
        transfer(c, fs, &into, RsyncRole::Receive, features, &report).await?;
        let vol = snapshots::volume(&req.name, &s.name).map_err(|e| e.to_string())?;
        c.helpers
            .store
            .copy_volume(
                pool.clone(),
                VolumeKind::Container,
                main.clone(),
                VolumeKind::Snapshot,
                vol.clone(),
            )
            .await
            .map_err(|e| format!("snapshotting {:?}: {e}", s.name))?;
        made.snapshots.push(vol.clone());
        c.helpers
            .store
            .shift_volume(pool.clone(), VolumeKind::Snapshot, vol, map.clone())
            .await
            .map_err(|e| format!("snapshot {:?}: {e}", s.name))?;
        records.push(snapshot_record(req, s)?);
    }
    let report = progress_reporter(ctx, req.name.clone());
    transfer(c, fs, &into, RsyncRole::Receive, features, &report).await?;
    if answer.criu == Some(CriuType::None as i32) {
        // A running source sends its volume twice, the second time frozen.
        transfer(c, fs, &into, RsyncRole::Receive, features, &report).await?;
    }
    c.helpers
        .store
        .shift_volume(pool, VolumeKind::Container, main, map)
        .await
        .map_err(|e| format!("instance {:?}: {e}", req.name))?;
    Ok(records)
}

/// The btrfs transfer (LXD's `CreateVolumeFromMigration`): the migration header when it was
/// negotiated, then each snapshot's stream straight into its own new snapshot volume
/// (oldest first, each starting from the one before), then the instance's into its new
/// volume. The ids are checked and shifted once everything arrived, so that each
/// incremental stream starts from the volume exactly as the source sent it.
#[allow(clippy::too_many_arguments)]
async fn receive_btrfs(
    c: &Services,
    req: &CreateRequest,
    offer: &MigrationHeader,
    answer: &MigrationHeader,
    pool: &PoolName,
    main: &VolumeName,
    fs: &mut Channel,
    ctx: &OpCtx,
    made: &mut Made,
) -> Result<Vec<Snapshot>, String> {
    let f = answer.btrfs_features.unwrap_or_default();
    if f.migration_header == Some(true) {
        let h: BtrfsHeader = fs.recv_json().await?;
        for s in &h.subvolumes {
            if s.path != "/" {
                return Err(format!(
                    "the source has a nested btrfs subvolume ({:?}), which silo cannot receive",
                    s.path
                ));
            }
            if !s.snapshot.is_empty() && !answer.snapshot_names.contains(&s.snapshot) {
                return Err(format!(
                    "the btrfs migration header names snapshot {:?}, which was not sent",
                    s.snapshot
                ));
            }
        }
        // One entry per volume at most: no nested ones.
        if h.subvolumes.len() > answer.snapshots.len() + 1 {
            return Err("the btrfs migration header lists more subvolumes than were sent".into());
        }
    }
    let mut records = Vec::new();
    let mut previous: Option<Volume> = None;
    for s in &answer.snapshots {
        snapshots::check_name(&s.name).map_err(|e| e.to_string())?;
        let vol = Volume {
            pool: pool.clone(),
            kind: VolumeKind::Snapshot,
            name: snapshots::volume(&req.name, &s.name).map_err(|e| e.to_string())?,
        };
        records.push(snapshot_record(req, s)?);
        let report = progress_reporter(ctx, s.name.clone());
        super::btrfs_transfer(c, fs, &vol, previous.as_ref(), false, &report).await?;
        made.snapshots.push(vol.name.clone());
        previous = Some(vol);
    }
    let into = Volume {
        pool: pool.clone(),
        kind: VolumeKind::Container,
        name: main.clone(),
    };
    let report = progress_reporter(ctx, req.name.clone());
    super::btrfs_transfer(c, fs, &into, previous.as_ref(), false, &report).await?;
    made.main = Some(main.clone());
    let map = shifts(offer);
    for v in &made.snapshots {
        c.helpers
            .store
            .shift_volume(pool.clone(), VolumeKind::Snapshot, v.clone(), map.clone())
            .await
            .map_err(|e| format!("snapshot volume {v:?}: {e}"))?;
    }
    c.helpers
        .store
        .shift_volume(pool.clone(), VolumeKind::Container, main.clone(), map)
        .await
        .map_err(|e| format!("instance {:?}: {e}", req.name))?;
    Ok(records)
}

/// Fills the new volume from the instance's base image when this host has it, so that
/// rsync only sends what differs (LXD does the same); rsync's `--delete` then removes what
/// the source no longer has. Answers whether it did.
async fn prefill(c: &Services, req: &CreateRequest, pool: &PoolName, main: &VolumeName) -> bool {
    let fp = &req.source.base_image;
    if fp.is_empty() {
        return false;
    }
    if !matches!(crate::service::images::get(&c.db, fp), Ok(Some(_))) {
        return false;
    }
    let (Ok(ifp), Ok(ivol)) = (
        silo_proto::ImageFingerprint::new(fp.clone()),
        VolumeName::new(fp.clone()),
    ) else {
        return false;
    };
    let ready = crate::service::storage::ensure_image_volume(
        &c.db,
        &c.helpers,
        &c.image_locks,
        pool.as_str(),
        &ifp,
    )
    .await;
    if let Err(e) = ready {
        tracing::debug!(image = %fp, error = %e, "no pre-fill from the base image");
        return false;
    }
    match c
        .helpers
        .store
        .copy_volume(
            pool.clone(),
            VolumeKind::Image,
            ivol,
            VolumeKind::Container,
            main.clone(),
        )
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(image = %fp, error = %e, "no pre-fill from the base image");
            false
        }
    }
}

/// What a refresh sends: the source's snapshots this copy lacks (by name and creation
/// time, as LXD compares them). The copy's snapshots the source no longer has, or has anew
/// under the same name, are deleted first.
async fn refresh_plan(
    c: &Services,
    i: &Instance,
    offer: &MigrationHeader,
) -> Result<Vec<String>, String> {
    let ours = snapshots::list(&c.db, &i.name).map_err(|e| e.to_string())?;
    let theirs: BTreeMap<&str, i64> = offer
        .snapshots
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.creation_date.unwrap_or(super::GO_ZERO_TIME),
            )
        })
        .collect();
    let mut kept = Vec::new();
    for s in &ours {
        match theirs.get(s.name.as_str()) {
            Some(t) if *t == super::unix_secs(&s.created_at) => kept.push(s.name.clone()),
            _ => snapshots::delete(c, &i.name, &s.name)
                .await
                .map_err(|e| format!("deleting snapshot {:?} for the refresh: {e}", s.name))?,
        }
    }
    Ok(offer
        .snapshot_names
        .iter()
        .filter(|n| !kept.contains(n))
        .cloned()
        .collect())
}

/// Records the snapshots a refresh brought.
fn record_refresh(c: &Services, snaps: &[Snapshot]) -> Result<(), DomainError> {
    for s in snaps {
        snapshots::insert_record(&c.db, s)?;
    }
    Ok(())
}

/// A received snapshot's record: its config through the schema, without volatile keys.
fn snapshot_record(
    req: &CreateRequest,
    s: &silo_api::migration::Snapshot,
) -> Result<Snapshot, String> {
    let mut config = s.config_map();
    config.retain(|k, _| !k.starts_with("volatile."));
    instances::validate_config(&config, false)
        .map_err(|e| format!("snapshot {:?}: {e}", s.name))?;
    let architecture = architecture_name(s.architecture)
        .map(str::to_string)
        .unwrap_or_else(|| req.architecture.clone());
    Ok(Snapshot {
        instance: req.name.clone(),
        name: s.name.clone(),
        created_at: rfc3339(s.creation_date.unwrap_or(super::GO_ZERO_TIME)),
        expires_at: rfc3339(s.expiry_date.unwrap_or(super::GO_ZERO_TIME)),
        description: String::new(),
        config,
        devices: s.device_map(),
        profiles: s.profiles.clone(),
        architecture,
    })
}

/// Writes the instance's record (with its own identity) and its snapshots'.
async fn record(c: &Services, req: &CreateRequest, snaps: &[Snapshot]) -> Result<(), DomainError> {
    let profiles = load_profiles(&c.db, req.profiles.as_deref().unwrap_or(&[]))?;
    let (_, ed) = expand(&profiles, &req.config, &req.devices);
    let pool = root_pool(&ed).map_err(DomainError::BadRequest)?;
    let range = c.helpers.privileged.id_range().await?;
    let size = instances::wanted_idmap_size(&req.config)?;
    let claim = instances::claim_idmap(&c.db, &req.name, &range, size)?;
    let architecture = if req.architecture.is_empty() {
        std::env::consts::ARCH.to_string()
    } else {
        req.architecture.clone()
    };
    let mut config = req.config.clone();
    // The source's word for the image the instance came from: kept only if it is a
    // fingerprint.
    if silo_proto::ImageFingerprint::new(req.source.base_image.clone()).is_ok() {
        config.insert("volatile.base_image".into(), req.source.base_image.clone());
    }
    let inst = crate::service::lifecycle::new_record(
        req,
        config,
        claim.base,
        claim.size,
        architecture,
        pool,
    );
    let cfg = expand(&profiles, &inst.config, &inst.devices).0;
    // The copy's image templates run with the "copy" trigger (its /etc/hostname), as a
    // local copy's do.
    crate::service::runtime::render_templates(c, &inst, &cfg, "copy").await?;
    instances::write(&c.db, &inst, true)?;
    for s in snaps {
        if let Err(e) = snapshots::insert_record(&c.db, s) {
            let _ = crate::store::instances::delete(&c.db, &req.name);
            return Err(e);
        }
    }
    Ok(())
}
