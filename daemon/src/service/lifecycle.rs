//! An instance's life as a whole: create (from an image, a copy or nothing), delete, rename.
//! These orchestrate the other services (images, storage, networks, snapshots, backups, the
//! runtime), so they sit above them; the instance records and their rules are in
//! `instances.rs`, below.

use std::collections::{BTreeMap, HashSet};

use serde_json::json;
use silo_proto::store::VolumeKind;
use silo_proto::{ImageFingerprint, InstanceName, PoolName, VolumeName};

use crate::model::devices::DeviceType;
use crate::model::profile::{expand, root_pool};
use crate::service::expansion::load_profiles;
use crate::service::instances::{
    claim_idmap, get, idmap_json, list_records, validate_config, write, CreateRequest, Instance,
};
use crate::service::profiles::validate_devices;
use crate::service::{DomainError, Services};
use crate::store::db::Db;

const ADJ: [&str; 24] = [
    "amber", "brave", "calm", "deft", "eager", "fair", "glad", "hale", "keen", "lucid", "merry",
    "noble", "proud", "quick", "rapid", "sly", "tidy", "urban", "vivid", "warm", "young", "zesty",
    "bold", "crisp",
];

const NOUN: [&str; 24] = [
    "otter", "heron", "lynx", "finch", "badger", "marten", "osprey", "ibex", "koala", "lemur",
    "gecko", "raven", "bison", "crane", "dingo", "egret", "ferret", "gibbon", "hare", "jackal",
    "kestrel", "llama", "moose", "newt",
];

fn random_name(db: &Db) -> Result<String, DomainError> {
    let existing: HashSet<String> = list_records(db)?.into_iter().map(|i| i.name).collect();
    for _ in 0..100 {
        let u = uuid::Uuid::new_v4();
        let b = u.as_bytes();
        let n = format!(
            "{}-{}",
            ADJ[b[0] as usize % ADJ.len()],
            NOUN[b[1] as usize % NOUN.len()]
        );
        if !existing.contains(&n) {
            return Ok(n);
        }
    }
    Err(DomainError::Internal(
        "could not pick a free instance name".into(),
    ))
}

/// Checks a create request and resolves what it needs; fast, before the operation starts.
pub fn prepare(
    c: &Services,
    mut req: CreateRequest,
) -> Result<(CreateRequest, Option<crate::service::images::Image>), DomainError> {
    if req.name.is_empty() {
        req.name = random_name(&c.db)?;
    }
    InstanceName::new(req.name.clone()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    if !req.kind.is_empty() && req.kind != "container" {
        return Err(DomainError::BadRequest(format!(
            "instance type {:?} is not supported: silo runs containers",
            req.kind
        )));
    }
    if get(&c.db, &req.name).is_ok() {
        return Err(DomainError::Conflict(format!(
            "instance {:?} already exists",
            req.name
        )));
    }
    if req.source.kind == "copy" {
        let (src, snap) = match req.source.source.split_once('/') {
            Some((i, s)) => (i.to_string(), Some(s.to_string())),
            None => (req.source.source.clone(), None),
        };
        let si = get(&c.db, &src).map_err(|_| {
            DomainError::NotFound(format!("the source instance {src:?} does not exist"))
        })?;
        let (cfg, devs, profs) = match &snap {
            Some(s) => {
                let s = crate::service::snapshots::get(&c.db, &src, s)?;
                (s.config, s.devices, s.profiles)
            }
            None => (si.config.clone(), si.devices.clone(), si.profiles.clone()),
        };
        // As lxc copy does: the source's settings unless the request brings its own, and
        // no volatile key (a copy gets new ids, MAC addresses and host names).
        if req.config.is_empty() {
            req.config = cfg
                .into_iter()
                .filter(|(k, _)| !k.starts_with("volatile."))
                .collect();
        }
        req.config.retain(|k, _| !k.starts_with("volatile."));
        if req.devices.is_empty() {
            req.devices = devs;
        }
        if req.profiles.is_none() {
            req.profiles = Some(profs);
        }
    }
    // image_profiles: an instance made from a local image without a profile list gets the
    // image's profiles, as LXD gives them.
    if req.profiles.is_none() && req.source.kind == "image" && req.source.server.is_empty() {
        let what = if req.source.fingerprint.is_empty() {
            &req.source.alias
        } else {
            &req.source.fingerprint
        };
        if let Ok(img) = crate::service::images::resolve(&c.db, what) {
            if !img.profiles.is_empty() {
                req.profiles = Some(img.profiles.clone());
            }
        }
    }
    validate_config(&req.config, false)?;
    validate_devices(&c.db, &req.devices)?;
    let profiles = load_profiles(
        &c.db,
        req.profiles.get_or_insert_with(|| vec!["default".into()]),
    )?;
    let (_, ed) = expand(&profiles, &req.config, &req.devices);
    crate::service::networks::check_nic_claims(&c.db, &req.name, &req.config, &ed)?;
    let pool = root_pool(&ed).map_err(DomainError::BadRequest)?;
    crate::service::storage::get(&c.db, &pool)?;
    let image = match req.source.kind.as_str() {
        // From an image server: pulled into the cache inside the operation (create_remote).
        "image" if !req.source.server.is_empty() => None,
        "image" => {
            let what = if req.source.fingerprint.is_empty() {
                &req.source.alias
            } else {
                &req.source.fingerprint
            };
            Some(crate::service::images::resolve(&c.db, what)?)
        }
        "none" | "copy" | "migration" => None,
        "" => return Err(DomainError::BadRequest(
            "missing source: give source.type \"image\" (with an alias or fingerprint) or \"none\""
                .into(),
        )),
        other => {
            return Err(DomainError::BadRequest(format!(
                "source type {other:?} is not supported yet"
            )))
        }
    };
    if !c.creating.claim(&req.name) {
        return Err(DomainError::Conflict(format!(
            "instance {:?} is already being created",
            req.name
        )));
    }
    Ok((req, image))
}

/// Does the create (inside an operation). Nothing is left behind on failure.
pub async fn create(
    c: &Services,
    req: CreateRequest,
    image: Option<crate::service::images::Image>,
) -> Result<Instance, DomainError> {
    let name = req.name.clone();
    let r = create_inner(c, req, image).await;
    c.creating.release(&name);
    if r.is_err() {
        crate::service::cluster::release_instance(c, &name).await;
    }
    r
}

/// Creates an instance from an image server's image (inside the operation): pulls it into
/// the cache unless it is there (`cached: true`, auto-updated per
/// `images.auto_update_cached`), then creates as [`create`] does. `report` gets the
/// download's progress.
pub async fn create_remote(
    c: &Services,
    req: CreateRequest,
    report: &(dyn Fn(String) + Send + Sync),
) -> Result<Instance, DomainError> {
    use crate::service::image_server::{pull, PullOptions, PullSource};
    let src = PullSource {
        server: req.source.server.clone(),
        protocol: req.source.protocol.clone(),
        alias: req.source.alias.clone(),
        fingerprint: req.source.fingerprint.clone(),
        secret: req.source.secret.clone(),
        certificate: req.source.certificate.clone(),
    };
    let auto_update = crate::store::config::all(&c.db)?
        .get("images.auto_update_cached")
        .map(|v| crate::model::parse::parse_bool(v).unwrap_or(true))
        .unwrap_or(true);
    let opts = PullOptions {
        cached: true,
        auto_update,
        ..Default::default()
    };
    let img = match pull(c, &src, opts, report).await {
        Ok(i) => i,
        Err(e) => {
            c.creating.release(&req.name);
            crate::service::cluster::release_instance(c, &req.name).await;
            return Err(e);
        }
    };
    create(c, req, Some(img)).await
}

async fn create_inner(
    c: &Services,
    req: CreateRequest,
    image: Option<crate::service::images::Image>,
) -> Result<Instance, DomainError> {
    let profiles = load_profiles(&c.db, req.profiles.as_deref().unwrap_or(&[]))?;
    let (ec, ed) = expand(&profiles, &req.config, &req.devices);
    let pool = root_pool(&ed).map_err(DomainError::BadRequest)?;
    let pn = PoolName::new(pool.clone()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let vol =
        VolumeName::new(req.name.clone()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let range = c.helpers.privileged.id_range().await?;
    let size = crate::service::instances::wanted_idmap_size(&ec)?;
    let claim = claim_idmap(&c.db, &req.name, &range, size)?;
    let base = claim.base;
    let mut config = req.config.clone();
    let target = RootVolume {
        pool: &pool,
        pn: &pn,
        vol: &vol,
    };
    let architecture = match &image {
        Some(img) => fill_from_image(c, &target, img, &mut config).await?,
        None if req.source.kind == "copy" => {
            fill_from_copy(c, &target, &req.source.source, &mut config).await?
        }
        None => {
            c.helpers
                .store
                .create_volume(pn.clone(), VolumeKind::Container, vol.clone())
                .await?;
            std::env::consts::ARCH.to_string()
        }
    };
    let inst = new_record(&req, config, base, claim.size, architecture, pool.clone());
    let copying = req.source.kind == "copy";
    let trigger = match &image {
        Some(_) => Some("create"),
        // A copy's image templates run with the "copy" trigger (its /etc/hostname).
        None if copying => Some("copy"),
        None => None,
    };
    let rendered = match trigger {
        Some(trigger) => {
            let cfg = expand(&profiles, &inst.config, &inst.devices).0;
            crate::service::runtime::render_templates(c, &inst, &cfg, trigger).await
        }
        None => Ok(()),
    };
    if let Err(e) = rendered.and_then(|()| write(&c.db, &inst, true)) {
        let _ = c
            .helpers
            .store
            .delete_volume(pn, VolumeKind::Container, vol)
            .await;
        return Err(e);
    }
    if copying && !req.source.instance_only && !req.source.source.contains('/') {
        // The source's snapshots come along, each under the new name.
        if let Err(e) = crate::service::snapshots::copy_all(c, &req.source.source, &inst).await {
            let _ = delete(c, &inst.name).await;
            return Err(e);
        }
    }
    c.events.lifecycle(
        "instance-created",
        &format!("/1.0/instances/{}", inst.name),
        json!({}),
    );
    Ok(inst)
}

/// The new instance's root volume: its pool (by name and checked name) and volume name.
struct RootVolume<'a> {
    pool: &'a str,
    pn: &'a PoolName,
    vol: &'a VolumeName,
}

/// Fills the root volume from an image (unpacked on the pool first if it is not yet) and
/// records the image's properties; returns the image's architecture.
async fn fill_from_image(
    c: &Services,
    target: &RootVolume<'_>,
    img: &crate::service::images::Image,
    config: &mut BTreeMap<String, String>,
) -> Result<String, DomainError> {
    let fp = ImageFingerprint::new(img.fingerprint.clone())
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    crate::service::cluster::records::ensure_image_here(c, img).await?;
    crate::service::storage::ensure_image_volume(
        &c.db,
        &c.helpers,
        &c.image_locks,
        target.pool,
        &fp,
    )
    .await?;
    c.helpers
        .store
        .copy_volume(
            target.pn.clone(),
            VolumeKind::Image,
            VolumeName::new(img.fingerprint.clone())
                .map_err(|e| DomainError::Internal(e.to_string()))?,
            VolumeKind::Container,
            target.vol.clone(),
        )
        .await?;
    for (k, v) in &img.properties {
        config
            .entry(format!("image.{k}"))
            .or_insert_with(|| v.clone());
    }
    config.insert("volatile.base_image".into(), img.fingerprint.clone());
    let _ = crate::service::images::touch(&c.db, &img.fingerprint);
    Ok(img.architecture.clone())
}

/// Fills the root volume from another instance or one of its snapshots (`source` is
/// `instance` or `instance/snapshot`), on the same pool; returns the source's architecture.
async fn fill_from_copy(
    c: &Services,
    target: &RootVolume<'_>,
    source: &str,
    config: &mut BTreeMap<String, String>,
) -> Result<String, DomainError> {
    let pool = target.pool;
    let (src, snap) = match source.split_once('/') {
        Some((i, s)) => (i.to_string(), Some(s.to_string())),
        None => (source.to_string(), None),
    };
    let si = get(&c.db, &src)?;
    let (kind, from) = match &snap {
        Some(s) => (
            VolumeKind::Snapshot,
            crate::service::snapshots::volume(&src, s)?,
        ),
        None => (
            VolumeKind::Container,
            VolumeName::new(src.clone()).map_err(|e| DomainError::BadRequest(e.to_string()))?,
        ),
    };
    if si.pool == pool {
        c.helpers
            .store
            .copy_volume(
                target.pn.clone(),
                kind,
                from,
                VolumeKind::Container,
                target.vol.clone(),
            )
            .await?;
    } else {
        let sp =
            PoolName::new(si.pool.clone()).map_err(|e| DomainError::Internal(e.to_string()))?;
        crate::service::storage::copy_across_pools(
            &c.helpers,
            (&sp, kind, &from),
            (target.pn, VolumeKind::Container, target.vol),
        )
        .await?;
    }
    if let Some(b) = si.config.get("volatile.base_image") {
        config.insert("volatile.base_image".into(), b.clone());
    }
    Ok(si.architecture.clone())
}

/// The new instance's record: the request's settings plus its fresh identity (uuid, idmap).
pub(crate) fn new_record(
    req: &CreateRequest,
    mut config: BTreeMap<String, String>,
    base: u64,
    size: u64,
    architecture: String,
    pool: String,
) -> Instance {
    config.insert("volatile.uuid".into(), uuid::Uuid::new_v4().to_string());
    config.insert("volatile.idmap.base".into(), base.to_string());
    config.insert("volatile.idmap.next".into(), idmap_json(base, size));
    config.insert("volatile.last_state.idmap".into(), "[]".into());
    Instance {
        name: req.name.clone(),
        kind: "container".into(),
        architecture,
        ephemeral: req.ephemeral,
        stateful: false,
        description: req.description.clone(),
        created_at: crate::service::events::now_rfc3339(),
        last_used_at: String::new(),
        config,
        devices: req.devices.clone(),
        profiles: req.profiles.clone().unwrap_or_default(),
        pool,
    }
}

/// Deletes a (stopped) instance: its volume, then its record.
pub async fn delete(c: &Services, name: &str) -> Result<(), DomainError> {
    let i = get(&c.db, name)?;
    if i.config
        .get("security.protection.delete")
        .is_some_and(|v| crate::model::parse::is_true(v))
    {
        return Err(DomainError::Forbidden(format!(
            "instance {name:?} is protected (security.protection.delete)"
        )));
    }
    if crate::service::runtime::is_running(c, name).await? {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is running: stop it first (or delete with --force)"
        )));
    }
    // Snapshots first: a failure leaves the instance whole and the delete can be retried.
    crate::service::snapshots::delete_all(c, name).await?;
    let pn = PoolName::new(i.pool.clone()).map_err(|e| DomainError::Internal(e.to_string()))?;
    let vol = VolumeName::new(i.name.clone()).map_err(|e| DomainError::Internal(e.to_string()))?;
    match c
        .helpers
        .store
        .delete_volume(pn, VolumeKind::Container, vol)
        .await
    {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    crate::store::instances::delete(&c.db, name)?;
    crate::service::cluster::release_instance(c, name).await;
    if let Ok((_, devs)) =
        load_profiles(&c.db, &i.profiles).map(|p| expand(&p, &i.config, &i.devices))
    {
        for (dn, d) in devs
            .iter()
            .filter(|(_, d)| DeviceType::of(d) == DeviceType::Nic)
        {
            if let Ok(plan) = crate::service::networks::plan_nic(&c.db, dn, d, &i.config) {
                crate::service::networks::forget_nic(&c.helpers, &plan).await;
            }
        }
    }
    if let Ok(n) = silo_proto::InstanceName::new(name.to_string()) {
        // The console log and exec outputs go with the instance.
        let _ = c.helpers.privileged.forget(n).await;
    }
    if let Some(dir) = &c.logs {
        let _ = tokio::fs::remove_dir_all(dir.join(name)).await;
    }
    // Its backups go with it, as in LXD (their records went with the instance's row).
    if let Some(dir) = &c.backups {
        let _ = tokio::fs::remove_dir_all(dir.join(name)).await;
    }
    c.events.lifecycle(
        "instance-deleted",
        &format!("/1.0/instances/{name}"),
        json!({}),
    );
    Ok(())
}

/// Renames a stopped instance with its volume and snapshots (`silo move c1 c2`).
/// Checks a rename before its operation starts: the instance exists, the new name is valid
/// and free.
/// Moves a stopped instance to another pool on this host, under `to` (its own name or a new
/// one), with its snapshots unless `instance_only` (LXD's `instance_pool_move`): a copy onto
/// the pool under a passing name, the original deleted, the copy renamed. The root disk's
/// pool is set on the instance itself, as LXD does.
pub async fn move_to_pool(
    c: &Services,
    name: &str,
    to: &str,
    pool: &str,
    instance_only: bool,
) -> Result<(), DomainError> {
    let i = get(&c.db, name)?;
    if crate::service::runtime::is_running(c, name).await? {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is running: stop it before moving it to another pool"
        )));
    }
    crate::service::storage::get(&c.db, pool)?;
    if i.pool == pool {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is already on pool {pool:?}"
        )));
    }
    if to != name {
        check_rename(c, name, to)?;
    }
    let profiles = load_profiles(&c.db, &i.profiles)?;
    let (_, ed) = expand(&profiles, &i.config, &i.devices);
    let mut root = ed
        .iter()
        .find(|(_, d)| {
            d.get("type").map(String::as_str) == Some("disk")
                && d.get("path").map(String::as_str) == Some("/")
        })
        .map(|(n, d)| (n.clone(), d.clone()))
        .ok_or_else(|| DomainError::BadRequest(format!("instance {name:?} has no root disk")))?;
    root.1.insert("pool".into(), pool.to_string());
    let passing = format!("move-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut devices = i.devices.clone();
    devices.insert(root.0, root.1);
    let req: CreateRequest = serde_json::from_value(serde_json::json!({
        "name": passing,
        "source": {"type": "copy", "source": name, "instance_only": instance_only},
        "devices": devices,
    }))
    .map_err(|e| DomainError::Internal(format!("building the copy: {e}")))?;
    let (req, image) = prepare(c, req)?;
    create(c, req, image).await?;
    if let Err(e) = delete(c, name).await {
        let _ = delete(c, &passing).await;
        return Err(e);
    }
    rename(c, &passing, to).await
}

pub fn check_rename(c: &Services, name: &str, to: &str) -> Result<(), DomainError> {
    get(&c.db, name)?;
    InstanceName::new(to.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    if get(&c.db, to).is_ok() {
        return Err(DomainError::Conflict(format!(
            "instance {to:?} already exists"
        )));
    }
    Ok(())
}

/// Renames a stopped instance with its snapshots and volumes.
pub async fn rename(c: &Services, name: &str, to: &str) -> Result<(), DomainError> {
    let i = get(&c.db, name)?;
    if crate::service::runtime::is_running(c, name).await? {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is running: stop it before renaming it"
        )));
    }
    if crate::store::instances::exists(&c.db, to)? {
        return Err(DomainError::Conflict(format!(
            "instance {to:?} already exists"
        )));
    }
    // The new name is the cluster's first: two members cannot both rename to it.
    crate::service::cluster::claim_instance(c, to).await?;
    let pn = PoolName::new(i.pool.clone()).map_err(|e| DomainError::Internal(e.to_string()))?;
    let from =
        VolumeName::new(name.to_string()).map_err(|e| DomainError::Internal(e.to_string()))?;
    let dst =
        VolumeName::new(to.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    if let Err(e) = c
        .helpers
        .store
        .rename_volume(
            pn.clone(),
            VolumeKind::Container,
            from.clone(),
            dst.clone(),
            false,
        )
        .await
    {
        crate::service::cluster::release_instance(c, to).await;
        return Err(e.into());
    }
    let moved = async {
        crate::service::snapshots::rename_instance(c, &i, to).await?;
        crate::store::instances::rename(&c.db, name, to)?;
        Ok::<(), DomainError>(())
    }
    .await;
    if let Err(e) = moved {
        let _ = c
            .helpers
            .store
            .rename_volume(pn, VolumeKind::Container, dst, from, false)
            .await;
        crate::service::cluster::release_instance(c, to).await;
        return Err(e);
    }
    crate::service::cluster::release_instance(c, name).await;
    // The backup records followed the row (ON UPDATE CASCADE); their files follow here.
    if let Some(dir) = &c.backups {
        if let Err(e) = std::fs::rename(dir.join(name), dir.join(to)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(instance = name, to, error = %e, "moving the backups of a renamed instance failed");
            }
        }
    }
    if let Ok(n) = silo_proto::InstanceName::new(name.to_string()) {
        // The old name's console log and records.
        let _ = c.helpers.privileged.forget(n).await;
    }
    c.events.lifecycle(
        "instance-renamed",
        &format!("/1.0/instances/{to}"),
        json!({"old_name": name}),
    );
    Ok(())
}

/// Deletes the ephemeral instances the runtime's watcher reports stopped, until silod exits.
pub fn spawn_reaper(c: Services, mut stopped: tokio::sync::mpsc::UnboundedReceiver<String>) {
    tokio::spawn(async move {
        while let Some(name) = stopped.recv().await {
            if let Err(e) = delete(&c, &name).await {
                tracing::warn!(instance = %name, error = %e, "deleting a stopped ephemeral instance failed");
            }
        }
    });
}
