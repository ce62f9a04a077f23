//! Instances as records: create from an image (unpack once per pool, copy per instance),
//! list, show, update, delete; config and device validation; profile expansion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::json;
use silo_proto::privileged::{IdRange, IdRanges};
use silo_proto::store::VolumeKind;
use silo_proto::{ImageFingerprint, InstanceName, PoolName, VolumeName};

use crate::model::devices::{DeviceSpec, DeviceType};
use crate::service::profiles::{Device, Profile};
use crate::service::{DomainError, Services};
use crate::store::db::Db;

pub use crate::model::instance::Instance;

/// All instance records.
pub fn list_records(db: &Db) -> Result<Vec<Instance>, DomainError> {
    Ok(crate::store::instances::all(db)?)
}

/// One record.
pub fn get(db: &Db, name: &str) -> Result<Instance, DomainError> {
    Ok(crate::store::instances::get(db, name)?)
}

pub(crate) fn write(db: &Db, i: &Instance, insert: bool) -> Result<(), DomainError> {
    if insert {
        crate::store::instances::insert(db, i)?;
    } else {
        crate::store::instances::update(db, i)?;
    }
    Ok(())
}

/// Puts a record back as it was (a live change that failed).
pub fn restore(db: &Db, i: &Instance) -> Result<(), DomainError> {
    write(db, i, false)
}

/// Sets an instance's running state: volatile keys (an empty value removes the key) and
/// optionally last_used_at, in one transaction (node-local: see `store/mod.rs`).
pub fn set_keys(
    db: &Db,
    name: &str,
    keys: &[(&str, &str)],
    last_used: Option<&str>,
) -> Result<(), DomainError> {
    Ok(crate::store::local::set_volatile(
        db, name, keys, last_used,
    )?)
}

/// Checks a whole config map against the key table in [`crate::model::config`].
pub fn validate_config(
    cfg: &BTreeMap<String, String>,
    allow_volatile: bool,
) -> Result<(), DomainError> {
    Ok(crate::model::config::check_instance_config(
        cfg,
        allow_volatile,
    )?)
}

/// Checks devices: each parsed by [`DeviceSpec::parse`] (types, keys, syntax), then what
/// needs the database: pools and networks must exist.
pub fn validate_devices(db: &Db, devices: &BTreeMap<String, Device>) -> Result<(), DomainError> {
    for (name, d) in devices {
        let bad = |why: String| DomainError::BadRequest(format!("invalid device {name:?}: {why}"));
        match DeviceSpec::parse(name, d)? {
            DeviceSpec::Disk(disk) => {
                if let Some(p) = &disk.pool {
                    crate::service::storage::get(db, p)
                        .map_err(|_| bad(format!("storage pool {p:?} not found")))?;
                }
            }
            DeviceSpec::Nic(nic) => {
                crate::service::networks::validate_nic(db, &nic).map_err(bad)?
            }
            DeviceSpec::Proxy(_) | DeviceSpec::None(_) => {}
        }
    }
    Ok(())
}

/// Expands profiles (in order) and then the local config and devices.
pub fn expand(
    profiles: &[Profile],
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
) -> (BTreeMap<String, String>, BTreeMap<String, Device>) {
    let mut c = BTreeMap::new();
    let mut d = BTreeMap::new();
    for p in profiles {
        c.extend(p.config.clone());
        d.extend(p.devices.clone());
    }
    c.extend(config.clone());
    d.extend(devices.clone());
    d.retain(|_, v: &mut Device| DeviceType::of(v) != DeviceType::None);
    (c, d)
}

/// The pool of the root disk in expanded devices.
pub fn root_pool(devices: &BTreeMap<String, Device>) -> Result<String, String> {
    let roots: Vec<&Device> = devices
        .values()
        .filter(|d| {
            DeviceType::of(d) == DeviceType::Disk
                && d.get("path").map(String::as_str) == Some("/")
                && d.get("source").is_none()
        })
        .collect();
    match roots.as_slice() {
        [] => Err("no root disk device (a disk with path \"/\" and a pool); add one or use a profile that has one".into()),
        [r] => r.get("pool").cloned().ok_or_else(|| "the root disk device has no pool".to_string()),
        _ => Err("more than one root disk device".into()),
    }
}

/// Every profile, read once, by name: what a listing of many instances expands from. A
/// profile whose row does not decode holds its error, for the instances that use it.
pub type ProfileMap = HashMap<String, Result<Profile, String>>;

/// Every profile, by name.
pub fn profile_map(db: &Db) -> Result<ProfileMap, DomainError> {
    Ok(crate::store::profiles::by_name(db)?
        .into_iter()
        .map(|(n, p)| (n, p.map_err(|e| e.to_string())))
        .collect())
}

/// Profiles by name, in order.
pub fn load_profiles(db: &Db, names: &[String]) -> Result<Vec<Profile>, DomainError> {
    pick_profiles(&profile_map(db)?, names)
}

/// Profiles by name, in order, from profiles read before: the same checks as
/// [`load_profiles`] (each listed once, each existing).
pub fn pick_profiles(all: &ProfileMap, names: &[String]) -> Result<Vec<Profile>, DomainError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in names {
        if !seen.insert(n) {
            return Err(DomainError::BadRequest(format!(
                "profile {n:?} is listed twice"
            )));
        }
        match all.get(n) {
            Some(Ok(p)) => out.push(p.clone()),
            Some(Err(e)) => return Err(DomainError::Internal(e.clone())),
            None => return Err(DomainError::BadRequest(format!("profile {n:?} not found"))),
        }
    }
    Ok(out)
}

/// Names being created right now (a second create of the same name is refused at once).
#[derive(Debug, Default, Clone)]
pub struct Creating(Arc<Mutex<HashSet<String>>>);

impl Creating {
    pub(crate) fn claim(&self, name: &str) -> bool {
        self.0
            .lock()
            .map(|mut s| s.insert(name.to_string()))
            .unwrap_or(false)
    }
    pub(crate) fn release(&self, name: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(name);
        }
    }
}

/// A create request (`POST /1.0/instances`) and where the instance comes from, as LXD's API
/// has them.
pub use silo_api::{InstanceSource as Source, InstancesPost as CreateRequest};

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
        "image" => {
            if !req.source.server.is_empty() {
                return Err(DomainError::BadRequest("images from remote servers are not supported yet: import the image locally first".into()));
            }
            let what = if req.source.fingerprint.is_empty() {
                &req.source.alias
            } else {
                &req.source.fingerprint
            };
            Some(crate::service::images::resolve(&c.db, what)?)
        }
        "none" | "copy" => None,
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

/// Ids per instance.
const IDS_PER_INSTANCE: u64 = 65536;

/// The lowest base whose 65536 ids lie in one of `usable` and overlap no id range in `used`.
fn first_free_base(usable: &[IdRange], used: &[u64]) -> Option<u64> {
    let mut used = used.to_vec();
    used.sort_unstable();
    usable.iter().find_map(|r| {
        let mut cand = r.start;
        for &u in &used {
            if u.saturating_add(IDS_PER_INSTANCE) <= cand {
                continue;
            }
            if u >= cand.saturating_add(IDS_PER_INSTANCE) {
                break;
            }
            cand = u.saturating_add(IDS_PER_INSTANCE);
        }
        (cand.checked_add(IDS_PER_INSTANCE)? <= r.end()).then_some(cand)
    })
}

/// An instance's id range, claimed in the database under its name. Dropped before the
/// instance's row is written (the create failed), it releases the range; once the row exists
/// the claim stays with it, and goes when the instance is deleted.
#[derive(Debug)]
pub(crate) struct IdmapClaim {
    db: Db,
    name: String,
    /// The first host id.
    pub base: u64,
}

impl Drop for IdmapClaim {
    fn drop(&mut self) {
        if let Err(e) = crate::store::idmap::release_unused(&self.db, &self.name, self.base) {
            tracing::warn!(instance = %self.name, error = %e, "releasing an id range failed");
        }
    }
}

/// Claims an id range for new instance `name`: each instance gets its own 65536 ids,
/// overlapping no other instance's (LXD's security.idmap.isolated) and inside what silo-priv
/// says is usable. Picking the base and recording it are one transaction under the database's
/// one lock, so concurrent creates, copies and imports get distinct ranges.
pub(crate) fn claim_idmap(
    db: &Db,
    name: &str,
    ranges: &IdRanges,
) -> Result<IdmapClaim, DomainError> {
    let base = crate::store::idmap::claim(db, name, |used| first_free_base(&ranges.usable, used))?;
    let base = base.ok_or_else(|| {
        let have: Vec<String> = ranges
            .usable
            .iter()
            .map(|r| format!("{}:{}", r.start, r.count))
            .collect();
        DomainError::Conflict(format!(
            "no free id range of 65536 ids left in {}; delete an instance or give root a larger subordinate range in /etc/subuid and /etc/subgid",
            have.join(", ")
        ))
    })?;
    Ok(IdmapClaim {
        db: db.clone(),
        name: name.to_string(),
        base,
    })
}

pub(crate) fn idmap_json(base: u64) -> String {
    json!([
        {"Isuid": true, "Isgid": false, "Hostid": base, "Nsid": 0, "Maprange": 65536},
        {"Isuid": false, "Isgid": true, "Hostid": base, "Nsid": 0, "Maprange": 65536},
    ])
    .to_string()
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
    r
}

async fn create_inner(
    c: &Services,
    req: CreateRequest,
    image: Option<crate::service::images::Image>,
) -> Result<Instance, DomainError> {
    let profiles = load_profiles(&c.db, req.profiles.as_deref().unwrap_or(&[]))?;
    let (_, ed) = expand(&profiles, &req.config, &req.devices);
    let pool = root_pool(&ed).map_err(DomainError::BadRequest)?;
    let pn = PoolName::new(pool.clone()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let vol =
        VolumeName::new(req.name.clone()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let range = c.helpers.privileged.id_range().await?;
    let claim = claim_idmap(&c.db, &req.name, &range)?;
    let base = claim.base;
    let mut config = req.config.clone();
    let mut architecture = std::env::consts::ARCH.to_string();
    match &image {
        Some(img) => {
            let fp = ImageFingerprint::new(img.fingerprint.clone())
                .map_err(|e| DomainError::Internal(e.to_string()))?;
            crate::service::storage::ensure_image_volume(
                &c.db,
                &c.helpers,
                &c.image_locks,
                &pool,
                &fp,
            )
            .await?;
            c.helpers
                .store
                .copy_volume(
                    pn.clone(),
                    VolumeKind::Image,
                    VolumeName::new(img.fingerprint.clone())
                        .map_err(|e| DomainError::Internal(e.to_string()))?,
                    VolumeKind::Container,
                    vol.clone(),
                )
                .await?;
            for (k, v) in &img.properties {
                config
                    .entry(format!("image.{k}"))
                    .or_insert_with(|| v.clone());
            }
            config.insert("volatile.base_image".into(), img.fingerprint.clone());
            architecture = img.architecture.clone();
            let _ = crate::service::images::touch(&c.db, &img.fingerprint);
        }
        None if req.source.kind == "copy" => {
            let (src, snap) = match req.source.source.split_once('/') {
                Some((i, s)) => (i.to_string(), Some(s.to_string())),
                None => (req.source.source.clone(), None),
            };
            let si = get(&c.db, &src)?;
            if si.pool != pool {
                return Err(DomainError::BadRequest(format!(
                    "copying between storage pools is not supported yet: {src:?} is on {:?}, the copy's root disk on {pool:?}",
                    si.pool
                )));
            }
            let (kind, from) = match &snap {
                Some(s) => (
                    VolumeKind::Snapshot,
                    crate::service::snapshots::volume(&src, s)?,
                ),
                None => (
                    VolumeKind::Container,
                    VolumeName::new(src.clone())
                        .map_err(|e| DomainError::BadRequest(e.to_string()))?,
                ),
            };
            c.helpers
                .store
                .copy_volume(pn.clone(), kind, from, VolumeKind::Container, vol.clone())
                .await?;
            if let Some(b) = si.config.get("volatile.base_image") {
                config.insert("volatile.base_image".into(), b.clone());
            }
            architecture = si.architecture.clone();
        }
        None => {
            c.helpers
                .store
                .create_volume(pn.clone(), VolumeKind::Container, vol.clone())
                .await?;
        }
    }
    config.insert("volatile.uuid".into(), uuid::Uuid::new_v4().to_string());
    config.insert("volatile.idmap.base".into(), base.to_string());
    config.insert("volatile.idmap.next".into(), idmap_json(base));
    config.insert("volatile.last_state.idmap".into(), "[]".into());
    let inst = Instance {
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
    };
    let copying = req.source.kind == "copy";
    let rendered = match &image {
        Some(_) => {
            let cfg = expand(&profiles, &inst.config, &inst.devices).0;
            crate::service::runtime::render_templates(c, &inst, &cfg, "create").await
        }
        // A copy's image templates run with the "copy" trigger (its /etc/hostname).
        None if copying => {
            let cfg = expand(&profiles, &inst.config, &inst.devices).0;
            crate::service::runtime::render_templates(c, &inst, &cfg, "copy").await
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

/// The writable part of an instance (PUT/PATCH).
#[derive(Debug, Clone, Deserialize)]
pub struct Writable {
    /// Config (volatile keys are kept from the record).
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    /// Devices.
    #[serde(default)]
    pub devices: Option<BTreeMap<String, Device>>,
    /// Profiles.
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Ephemeral.
    #[serde(default)]
    pub ephemeral: Option<bool>,
}

/// Applies a PUT (replace) or PATCH (merge) after validating the result.
pub fn apply(db: &Db, name: &str, w: Writable, patch: bool) -> Result<Instance, DomainError> {
    let i = apply_dry(db, name, w, patch)?;
    write(db, &i, false)?;
    Ok(i)
}

/// Computes and validates what [`apply`] would store, without storing it.
pub fn apply_dry(db: &Db, name: &str, w: Writable, patch: bool) -> Result<Instance, DomainError> {
    let mut i = get(db, name)?;
    let volatile: BTreeMap<String, String> = i
        .config
        .iter()
        .filter(|(k, _)| k.starts_with("volatile."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(cfg) = w.config {
        let user: BTreeMap<String, String> = cfg
            .into_iter()
            .filter(|(k, _)| !k.starts_with("volatile."))
            .collect();
        validate_config(&user, false)?;
        if patch {
            for (k, v) in user {
                if v.is_empty() {
                    i.config.remove(&k);
                } else {
                    i.config.insert(k, v);
                }
            }
        } else {
            i.config = user;
            i.config.extend(volatile);
        }
    }
    if let Some(d) = w.devices {
        validate_devices(db, &d)?;
        if patch {
            i.devices.extend(d);
        } else {
            i.devices = d;
        }
    }
    if let Some(p) = w.profiles {
        i.profiles = p;
    }
    if let Some(d) = w.description {
        i.description = d;
    }
    if let Some(e) = w.ephemeral {
        i.ephemeral = e;
    }
    let profiles = load_profiles(db, &i.profiles)?;
    let (_, ed) = expand(&profiles, &i.config, &i.devices);
    crate::service::networks::check_nic_claims(db, &i.name, &i.config, &ed)?;
    let root = root_pool(&ed).map_err(DomainError::BadRequest)?;
    if root != i.pool {
        return Err(DomainError::BadRequest(format!("the root disk cannot move from pool {:?} to {root:?} by editing; moving instances comes with copy/move", i.pool)));
    }
    Ok(i)
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
    let pn = PoolName::new(i.pool.clone()).map_err(|e| DomainError::Internal(e.to_string()))?;
    let from =
        VolumeName::new(name.to_string()).map_err(|e| DomainError::Internal(e.to_string()))?;
    let dst =
        VolumeName::new(to.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    c.helpers
        .store
        .rename_volume(
            pn.clone(),
            VolumeKind::Container,
            from.clone(),
            dst.clone(),
            false,
        )
        .await?;
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
        return Err(e);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, count: u64) -> IdRange {
        IdRange { start, count }
    }

    #[test]
    fn first_free_base_skips_used_and_unaligned_ranges() {
        let u = [r(1_000_000, 4 * 65536)];
        assert_eq!(first_free_base(&u, &[]), Some(1_000_000));
        assert_eq!(first_free_base(&u, &[1_000_000]), Some(1_065_536));
        // An older base off the grid still blocks what it overlaps.
        assert_eq!(
            first_free_base(&u, &[1_000_000, 1_065_536 + 10]),
            Some(1_065_536 + 10 + 65536)
        );
        assert_eq!(
            first_free_base(&u, &[1_000_000, 1_065_536, 1_131_072, 1_196_608]),
            None
        );
        // The next usable range when the first is full; too-small ranges are skipped.
        let u = [r(1_000_000, 65536), r(2_000_000, 100), r(3_000_000, 65536)];
        assert_eq!(first_free_base(&u, &[1_000_000]), Some(3_000_000));
        assert_eq!(first_free_base(&u, &[1_000_000, 3_000_000]), None);
    }

    fn ranges() -> IdRanges {
        IdRanges {
            root: vec![r(1_000_000, 3 * 65536)],
            usable: vec![r(1_000_000, 3 * 65536)],
        }
    }

    fn instance(name: &str, base: u64) -> Instance {
        let mut config = BTreeMap::new();
        config.insert("volatile.idmap.base".to_string(), base.to_string());
        Instance {
            name: name.into(),
            kind: "container".into(),
            architecture: "x86_64".into(),
            ephemeral: false,
            stateful: false,
            description: String::new(),
            created_at: String::new(),
            last_used_at: String::new(),
            config,
            devices: BTreeMap::new(),
            profiles: vec![],
            pool: "p".into(),
        }
    }

    #[test]
    fn claims_are_distinct_released_and_follow_the_instance() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        crate::store::pools::insert(&db, &pool()).expect("pool");
        let a = claim_idmap(&db, "a", &ranges()).expect("a");
        let b = claim_idmap(&db, "b", &ranges()).expect("b");
        assert_eq!((a.base, b.base), (1_000_000, 1_065_536));
        // b's create fails: its range is free again.
        drop(b);
        let c = claim_idmap(&db, "c", &ranges()).expect("c");
        assert_eq!(c.base, 1_065_536);
        // a's create succeeds: its claim outlives the guard, follows a rename, and goes with
        // the instance.
        write(&db, &instance("a", a.base), true).expect("write");
        drop(a);
        let d = claim_idmap(&db, "d", &ranges()).expect("d");
        assert_eq!(d.base, 1_131_072);
        let full = claim_idmap(&db, "e", &ranges()).unwrap_err();
        assert!(full.to_string().contains("no free id range"), "{full}");
        crate::store::instances::rename(&db, "a", "a2").expect("rename");
        let claims = crate::store::idmap::all(&db).expect("claims");
        assert!(
            claims.contains(&(1_000_000, "a2".to_string())),
            "{claims:?}"
        );
        crate::store::instances::delete(&db, "a2").expect("delete");
        assert_eq!(claim_idmap(&db, "e", &ranges()).expect("e").base, 1_000_000);
    }

    fn pool() -> crate::model::pool::Pool {
        crate::model::pool::Pool {
            name: "p".into(),
            driver: "dir".into(),
            description: String::new(),
            config: BTreeMap::new(),
        }
    }

    #[test]
    fn a_listing_expands_profiles_exactly_as_a_single_get_does() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        crate::store::pools::insert(&db, &pool()).expect("pool");
        let mut p = Profile {
            name: "p".into(),
            ..Default::default()
        };
        p.config.insert("limits.cpu".into(), "2".into());
        crate::store::profiles::put(&db, &p).expect("profile");
        // Listed twice (a record an older silod let through): neither path expands it.
        let mut twice = instance("twice", 1_000_000);
        twice.profiles = vec!["p".into(), "p".into()];
        let mut once = instance("once", 1_065_536);
        once.profiles = vec!["p".into()];
        for i in [&twice, &once] {
            write(&db, i, true).expect("write");
        }
        let all = Expander::load(&db).expect("profiles");
        for i in [&twice, &once] {
            let single = expand(
                &load_profiles(&db, &i.profiles).unwrap_or_default(),
                &i.config,
                &i.devices,
            );
            let listed = all.expand(&i.profiles, &i.config, &i.devices);
            assert_eq!(single, listed, "{}", i.name);
        }
        let (config, _) = all.expand(&once.profiles, &once.config, &once.devices);
        assert_eq!(config["limits.cpu"], "2");
        let (config, _) = all.expand(&twice.profiles, &twice.config, &twice.devices);
        assert!(
            !config.contains_key("limits.cpu"),
            "a profile listed twice is not expanded"
        );
        let err = load_profiles(&db, &twice.profiles).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    #[test]
    fn a_store_failure_loading_profiles_is_not_profile_not_found() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        let p = Profile {
            name: "p".into(),
            ..Default::default()
        };
        crate::store::profiles::put(&db, &p).expect("profile");
        crate::store::damage(&db, "profiles", "devices", "p", "x");
        let err = load_profiles(&db, &["p".to_string()]).unwrap_err();
        assert_eq!(err.status(), 500, "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");
        // Only the instances using the damaged profile are refused.
        crate::store::profiles::put(
            &db,
            &Profile {
                name: "fine".into(),
                ..Default::default()
            },
        )
        .expect("fine");
        assert_eq!(
            load_profiles(&db, &["fine".to_string()])
                .expect("fine")
                .len(),
            1
        );
        let missing = load_profiles(&db, &["q".to_string()]).unwrap_err();
        assert_eq!(
            (missing.status(), missing.to_string()),
            (400, "profile \"q\" not found".to_string())
        );
    }

    #[test]
    fn a_corrupt_config_is_neither_read_as_empty_nor_written_back() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        crate::store::pools::insert(&db, &pool()).expect("pool");
        write(&db, &instance("a", 1_000_000), true).expect("write");
        let bad = "{\"volatile.idmap.base\": \"1000000\", oops";
        crate::store::damage(&db, "instances", "config", "a", bad);
        // Before: read as {} and the next write saved {"volatile.last_state.power": ...},
        // losing the instance's id range.
        let read = get(&db, "a").expect_err("corrupt");
        assert_eq!(read.status(), 500);
        assert!(
            read.to_string()
                .contains("\"a\" of table instances: column config is corrupt"),
            "{read}"
        );
        set_keys(&db, "a", &[("volatile.last_state.power", "STOPPED")], None).expect_err("refused");
        assert_eq!(
            crate::store::raw_column(&db, "instances", "config", "a"),
            bad
        );
    }
}

/// Profiles read once, to expand many instances and snapshots without a query each (a listing
/// of hundreds of instances). Expansion is the same as for one instance read alone.
#[derive(Debug)]
pub struct Expander(ProfileMap);

impl Expander {
    /// Reads every profile.
    pub fn load(db: &Db) -> Result<Expander, DomainError> {
        Ok(Expander(profile_map(db)?))
    }

    /// `config` and `devices` with the named profiles applied in order. A profile list that
    /// does not resolve (a profile gone, or damaged) renders unexpanded rather than failing the
    /// whole listing.
    pub fn expand(
        &self,
        names: &[String],
        config: &BTreeMap<String, String>,
        devices: &BTreeMap<String, Device>,
    ) -> (BTreeMap<String, String>, BTreeMap<String, Device>) {
        let profiles = pick_profiles(&self.0, names).unwrap_or_default();
        expand(&profiles, config, devices)
    }
}
