//! Instance backups (`silo export` / `silo import`): LXD's tarball layout
//! (`backup/index.yaml`, `backup/container/` with `backup.yaml`, `backup/snapshots/<name>/`).
//! silo-store packs and unpacks the volumes; silod keeps the files in `<state>/backups/`, their
//! records in the `backups` table, and reads only the two YAML files of an import itself.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use silo_proto::store::PackCompression;
use silo_proto::{PoolName, VolumeName};

use crate::helpers::HelperKind;
use crate::service::instances::{self, Instance};
use crate::service::profiles::Device;
use crate::service::snapshots::{self, Snapshot};
use crate::service::DomainError;
use crate::service::Services;
use crate::store::db::Db;

pub use crate::model::backup::Backup;

/// `backup/index.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    /// The instance's name.
    pub name: String,
    /// The pool driver it came from.
    #[serde(default)]
    pub backend: String,
    /// The pool it came from.
    #[serde(default)]
    pub pool: String,
    /// Snapshot names, oldest first.
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// Volumes as btrfs send streams (`backup/container.bin`, `backup/snapshots/<n>.bin`).
    #[serde(default)]
    pub optimized: bool,
    /// Always false here.
    #[serde(default)]
    pub optimized_header: bool,
    /// "container".
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// LXD's `backup/optimized_header.yaml` (btrfs): the subvolumes of each volume.
#[derive(Debug, Deserialize)]
struct OptimizedHeader {
    #[serde(default)]
    subvolumes: Vec<HeaderSubvolume>,
}

#[derive(Debug, Deserialize)]
struct HeaderSubvolume {
    #[serde(default)]
    snapshot: String,
    #[serde(default)]
    path: String,
}

/// What `backup/container/backup.yaml` says of the instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupInstance {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// Local config.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Local devices.
    #[serde(default)]
    pub devices: BTreeMap<String, Device>,
    /// Profiles.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Ephemeral.
    #[serde(default)]
    pub ephemeral: bool,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Creation time.
    #[serde(default)]
    pub created_at: String,
    /// Snapshot expiry (snapshots only).
    #[serde(default)]
    pub expires_at: String,
}

/// `backup/container/backup.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupYaml {
    /// The instance.
    pub container: BackupInstance,
    /// Its snapshots.
    #[serde(default)]
    pub snapshots: Vec<BackupInstance>,
}

/// Where the tarballs live: `<state>/backups/<instance>/<name>`.
pub fn root(state: &Path) -> PathBuf {
    state.join("backups")
}

fn dir_of(state: &Path, instance: &str) -> PathBuf {
    root(state).join(instance)
}

/// An instance's backups, by name.
pub fn list(db: &Db, instance: &str) -> Result<Vec<Backup>, DomainError> {
    Ok(crate::store::backups::of_instance(db, instance)?)
}

/// One backup's record.
pub fn get(db: &Db, instance: &str, name: &str) -> Result<Backup, DomainError> {
    Ok(crate::store::backups::get(db, instance, name)?)
}

fn insert(db: &Db, b: &Backup) -> Result<(), DomainError> {
    Ok(crate::store::backups::insert(db, b)?)
}

fn compression(c: &str) -> Result<PackCompression, DomainError> {
    Ok(match c {
        "" | "gzip" => PackCompression::Gzip,
        "xz" => PackCompression::Xz,
        "zstd" => PackCompression::Zstd,
        "none" => PackCompression::None,
        other => {
            return Err(DomainError::BadRequest(format!(
                "compression algorithm {other:?} is not supported (gzip, xz, zstd or none)"
            )))
        }
    })
}

/// Checks a backup request before its operation starts.
pub fn check(
    c: &Services,
    instance: &str,
    name: &str,
    comp: &str,
    optimized: bool,
) -> Result<(), DomainError> {
    instances::get(&c.db, instance)?;
    snapshots::check_name(name)
        .map_err(|e| DomainError::BadRequest(e.to_string().replace("snapshot", "backup")))?;
    if optimized {
        let i = instances::get(&c.db, instance)?;
        let driver = crate::service::storage::get(&c.db, &i.pool)?.driver;
        if driver != "btrfs" {
            return Err(DomainError::BadRequest(format!(
                "optimized-storage backups are btrfs send streams: instance {instance:?} is on a {driver} pool"
            )));
        }
    }
    compression(comp)?;
    Ok(())
}

/// What a new backup is to be.
#[derive(Debug, Clone)]
pub struct NewBackup {
    /// Its name.
    pub name: String,
    /// Without the instance's snapshots.
    pub instance_only: bool,
    /// Volumes as btrfs send streams.
    pub optimized: bool,
    /// When silod deletes it (RFC 3339, UTC), if ever.
    pub expires_at: Option<String>,
    /// gzip, xz, zstd or none.
    pub compression: String,
}

/// Makes a backup of an instance (inside the operation).
pub async fn create(
    c: &Services,
    state: &Path,
    instance: &str,
    req: NewBackup,
) -> Result<(), DomainError> {
    let NewBackup {
        name,
        instance_only,
        optimized,
        expires_at,
        compression: comp,
    } = req;
    let (name, comp) = (name.as_str(), comp.as_str());
    let i = instances::get(&c.db, instance)?;
    let path = dir_of(state, instance).join(name);
    if path.exists() || get(&c.db, instance, name).is_ok() {
        return Err(DomainError::Conflict(format!(
            "backup {name:?} of instance {instance:?} already exists"
        )));
    }
    let snaps: Vec<Snapshot> = if instance_only {
        Vec::new()
    } else {
        snapshots::list(&c.db, instance)?
    };
    let pool = crate::service::storage::get(&c.db, &i.pool)?;
    let (index, by) = manifests(&i, &snaps, pool.driver.clone(), optimized);
    let index_yaml = to_yaml(&index)?;
    let backup_yaml = to_yaml(&by)?;
    let mut vols = Vec::new();
    for s in &snaps {
        vols.push((
            VolumeName::new(s.name.clone()).map_err(|e| DomainError::Internal(e.to_string()))?,
            snapshots::volume(instance, &s.name)?,
        ));
    }
    let ticket = c
        .helpers
        .store
        .pack_backup(
            PoolName::new(i.pool.clone()).map_err(|e| DomainError::Internal(e.to_string()))?,
            VolumeName::new(i.name.clone()).map_err(|e| DomainError::Internal(e.to_string()))?,
            silo_proto::store::BackupPack {
                snapshots: vols,
                index_yaml,
                backup_yaml,
                compression: compression(comp)?,
                optimized,
            },
        )
        .await?;
    let fd = c
        .helpers
        .take_fds(HelperKind::Store, ticket)
        .await
        .map_err(DomainError::Internal)?
        .remove(0);
    store_file(fd, dir_of(state, instance), path.clone()).await?;
    let b = Backup {
        instance: instance.to_string(),
        name: name.to_string(),
        created_at: crate::service::events::now_rfc3339(),
        expires_at: expires_at.unwrap_or_default(),
        instance_only,
        optimized,
    };
    if let Err(e) = insert(&c.db, &b) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    c.events.lifecycle(
        "instance-backup-created",
        &format!("/1.0/instances/{instance}/backups/{name}"),
        json!({}),
    );
    Ok(())
}

/// The backup's index.yaml (what is in the tarball) and backup.yaml (the instance's and its
/// snapshots' records) as LXD writes them.
fn manifests(
    i: &Instance,
    snaps: &[Snapshot],
    backend: String,
    optimized: bool,
) -> (Index, BackupYaml) {
    let index = Index {
        name: i.name.clone(),
        backend,
        pool: i.pool.clone(),
        snapshots: snaps.iter().map(|s| s.name.clone()).collect(),
        optimized,
        optimized_header: false,
        kind: "container".into(),
    };
    let entry = |name: &str,
                 config: &BTreeMap<String, String>,
                 devices: &BTreeMap<String, Device>,
                 profiles: &[String],
                 created: &str,
                 expires: &str| BackupInstance {
        name: name.to_string(),
        architecture: i.architecture.clone(),
        config: config.clone(),
        devices: devices.clone(),
        profiles: profiles.to_vec(),
        ephemeral: i.ephemeral,
        description: i.description.clone(),
        created_at: created.to_string(),
        expires_at: expires.to_string(),
    };
    let by = BackupYaml {
        container: entry(
            &i.name,
            &i.config,
            &i.devices,
            &i.profiles,
            &i.created_at,
            "",
        ),
        snapshots: snaps
            .iter()
            .map(|s| {
                entry(
                    &s.name,
                    &s.config,
                    &s.devices,
                    &s.profiles,
                    &s.created_at,
                    &s.expires_at,
                )
            })
            .collect(),
    };
    (index, by)
}

/// Copies the packed backup from the store helper's fd to `dest` in `dir`, through a
/// temporary file so that a failed copy leaves no partial backup behind.
async fn store_file(fd: OwnedFd, dir: PathBuf, dest: PathBuf) -> Result<(), DomainError> {
    tokio::task::spawn_blocking(move || -> Result<(), DomainError> {
        use std::io::Seek;
        std::fs::create_dir_all(&dir).map_err(|e| DomainError::Internal(e.to_string()))?;
        let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
        let mut src = std::fs::File::from(fd);
        src.rewind()
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        let r = std::fs::File::create(&tmp)
            .and_then(|mut out| std::io::copy(&mut src, &mut out).and_then(|_| out.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &dest));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(DomainError::Internal(format!("storing the backup: {e}")));
        }
        Ok(())
    })
    .await
    .map_err(|e| DomainError::Internal(e.to_string()))?
}

fn to_yaml<T: Serialize>(v: &T) -> Result<String, DomainError> {
    serde_norway::to_string(v).map_err(|e| DomainError::Internal(e.to_string()))
}

/// A backup's tarball.
pub fn file(db: &Db, state: &Path, instance: &str, name: &str) -> Result<PathBuf, DomainError> {
    get(db, instance, name)?;
    let p = dir_of(state, instance).join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(DomainError::NotFound(format!(
            "backup {name:?} of instance {instance:?} has lost its file {}",
            p.display()
        )))
    }
}

/// Deletes a backup: its file, then its record.
pub fn delete(db: &Db, state: &Path, instance: &str, name: &str) -> Result<(), DomainError> {
    get(db, instance, name)?;
    match std::fs::remove_file(dir_of(state, instance).join(name)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DomainError::Internal(format!("deleting the backup: {e}"))),
    }
    crate::store::backups::delete(db, instance, name)?;
    Ok(())
}

/// Renames a backup (`POST /1.0/instances/<i>/backups/<b>`).
pub fn rename(
    db: &Db,
    state: &Path,
    instance: &str,
    from: &str,
    to: &str,
) -> Result<(), DomainError> {
    get(db, instance, from)?;
    snapshots::check_name(to)
        .map_err(|e| DomainError::BadRequest(e.to_string().replace("snapshot", "backup")))?;
    let dir = dir_of(state, instance);
    if get(db, instance, to).is_ok() || dir.join(to).exists() {
        return Err(DomainError::Conflict(format!(
            "backup {to:?} of instance {instance:?} already exists"
        )));
    }
    std::fs::rename(dir.join(from), dir.join(to))
        .map_err(|e| DomainError::Internal(format!("renaming the backup: {e}")))?;
    let r = crate::store::backups::rename(db, instance, from, to);
    if let Err(e) = r {
        let _ = std::fs::rename(dir.join(to), dir.join(from));
        return Err(e.into());
    }
    Ok(())
}

/// Deletes backups whose `expires_at` has passed (silod's housekeeping, every minute).
pub fn expire(db: &Db, state: &Path, events: &crate::service::events::Events) {
    let now = crate::service::events::now_rfc3339();
    let all = match crate::store::backups::expiring(db) {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "listing expiring backups failed");
            return;
        }
    };
    for b in all.into_iter().filter(|b| b.expires_at < now) {
        match delete(db, state, &b.instance, &b.name) {
            Ok(()) => {
                tracing::info!(instance = %b.instance, backup = %b.name, "expired backup deleted");
                events.lifecycle(
                    "instance-backup-deleted",
                    &format!("/1.0/instances/{}/backups/{}", b.instance, b.name),
                    json!({}),
                );
            }
            Err(e) => {
                tracing::warn!(instance = %b.instance, backup = %b.name, error = %e, "deleting an expired backup failed")
            }
        }
    }
}

/// At startup, squares the files with the records: a record whose file is gone is dropped; a
/// file with no record (left by an older silod, which kept no records) is adopted with what
/// its own index.yaml says if its instance exists, and removed if it does not (LXD deletes an
/// instance's backups with it).
pub fn reconcile(db: &Db, state: &Path) {
    let rows = match crate::store::backups::all(db) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "listing backups failed");
            return;
        }
    };
    for b in &rows {
        if !dir_of(state, &b.instance).join(&b.name).is_file() {
            tracing::warn!(instance = %b.instance, backup = %b.name, "backup file is gone; dropping its record");
            if let Err(e) = crate::store::backups::delete(db, &b.instance, &b.name) {
                tracing::warn!(instance = %b.instance, backup = %b.name, error = %e, "dropping a backup record failed");
            }
        }
    }
    for d in std::fs::read_dir(root(state))
        .into_iter()
        .flatten()
        .flatten()
    {
        let instance = d.file_name().to_string_lossy().into_owned();
        // A row that exists but does not decode still owns its backups: only a missing row
        // (or a failed lookup, which removes nothing) decides.
        let Ok(exists) = crate::store::instances::exists(db, &instance) else {
            continue;
        };
        if !exists {
            tracing::info!(
                instance,
                "removing the backups of an instance that no longer exists"
            );
            let _ = std::fs::remove_dir_all(d.path());
            continue;
        }
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                // A backup whose making was cut short.
                let _ = std::fs::remove_file(f.path());
                continue;
            }
            if rows
                .iter()
                .any(|b| b.instance == instance && b.name == name)
            {
                continue;
            }
            let created = f
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| {
                    time::OffsetDateTime::from(t)
                        .format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(crate::service::events::now_rfc3339);
            let (optimized, instance_only) = match read_yamls(&f.path()) {
                Ok((index, _)) => (index.optimized, index.snapshots.is_empty()),
                Err(e) => {
                    tracing::warn!(instance, backup = name, error = %e, "an unrecorded backup file is not a backup; leaving it");
                    continue;
                }
            };
            let b = Backup {
                instance: instance.clone(),
                name: name.clone(),
                created_at: created,
                expires_at: String::new(),
                instance_only,
                optimized,
            };
            if snapshots::check_name(&name).is_ok() && insert(db, &b).is_ok() {
                tracing::info!(instance, backup = name, "adopted a backup file");
            }
        }
    }
}

/// Reads index.yaml and backup.yaml out of an uploaded backup (bounded: 1 MiB and 4 MiB), and
/// LXD's `optimized_header.yaml` when the index says there is one.
fn read_yamls(path: &Path) -> Result<(Index, BackupYaml), DomainError> {
    use std::io::Read;
    let bad = |m: String| DomainError::BadRequest(format!("not a silo/LXD backup: {m}"));
    let f = std::fs::File::open(path).map_err(|e| DomainError::Internal(e.to_string()))?;
    let stream = silo_proto::image::open_tar_stream(f, 1 << 40).map_err(|e| bad(e.to_string()))?;
    let mut ar = tar::Archive::new(stream);
    let (mut index, mut by, mut header) = (None, None, None);
    for e in ar.entries().map_err(|e| bad(e.to_string()))? {
        let mut e = e.map_err(|e| bad(e.to_string()))?;
        let p = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .to_string();
        let (limit, slot) = match p.as_str() {
            "backup/index.yaml" => (1u64 << 20, &mut index),
            "backup/container/backup.yaml" => (4u64 << 20, &mut by),
            "backup/optimized_header.yaml" => (1u64 << 20, &mut header),
            _ => continue,
        };
        if e.size() > limit {
            return Err(bad(format!("{p} is larger than {limit} bytes")));
        }
        let mut s = String::new();
        e.by_ref()
            .take(limit)
            .read_to_string(&mut s)
            .map_err(|e| bad(format!("{p}: {e}")))?;
        *slot = Some(s);
        let wants_header = index
            .as_deref()
            .and_then(|i| serde_norway::from_str::<Index>(i).ok())
            .map(|i| i.optimized_header)
            .unwrap_or(true);
        if index.is_some() && by.is_some() && (header.is_some() || !wants_header) {
            break;
        }
    }
    let index: Index =
        serde_norway::from_str(&index.ok_or_else(|| bad("no backup/index.yaml".into()))?)
            .map_err(|e| bad(format!("backup/index.yaml: {e}")))?;
    if let Some(h) = header {
        // LXD lists the btrfs subvolumes of each volume; silo restores each volume's own
        // subvolume, so nested ones (a container that made subvolumes inside itself) are
        // refused rather than silently left out.
        let h: OptimizedHeader = serde_norway::from_str(&h)
            .map_err(|e| bad(format!("backup/optimized_header.yaml: {e}")))?;
        if let Some(n) = h.subvolumes.iter().find(|v| v.path != "/") {
            return Err(DomainError::BadRequest(format!(
                "the backup holds a nested btrfs subvolume ({:?} in {}), which silo does not restore",
                n.path,
                if n.snapshot.is_empty() { "the instance".to_string() } else { format!("snapshot {:?}", n.snapshot) }
            )));
        }
    }
    let by: BackupYaml =
        serde_norway::from_str(&by.ok_or_else(|| bad("no backup/container/backup.yaml".into()))?)
            .map_err(|e| bad(format!("backup/container/backup.yaml: {e}")))?;
    Ok((index, by))
}

/// Imports an uploaded backup (inside the operation) as instance `name` (or the backup's),
/// on `pool` (or the default profile's root pool). Nothing remains on failure.
pub async fn import(
    c: &Services,
    upload: &Path,
    name: Option<String>,
    pool: Option<String>,
) -> Result<Instance, DomainError> {
    let up = upload.to_path_buf();
    let (index, by) = tokio::task::spawn_blocking(move || read_yamls(&up))
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))??;
    let name = name.filter(|n| !n.is_empty()).unwrap_or(index.name.clone());
    silo_proto::InstanceName::new(name.clone())
        .map_err(|e| DomainError::BadRequest(e.to_string()))?;
    if crate::store::instances::exists(&c.db, &name)? {
        return Err(DomainError::Conflict(format!(
            "instance {name:?} already exists"
        )));
    }
    let pool = match pool.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None if crate::service::storage::get(&c.db, &index.pool).is_ok() => index.pool.clone(),
        None => {
            let profiles =
                crate::service::expansion::load_profiles(&c.db, &["default".to_string()])?;
            let (_, ed) =
                crate::model::profile::expand(&profiles, &BTreeMap::new(), &BTreeMap::new());
            crate::model::profile::root_pool(&ed).map_err(DomainError::BadRequest)?
        }
    };
    crate::service::storage::get(&c.db, &pool)?;
    instances::validate_config(
        &by.container
            .config
            .iter()
            .filter(|(k, _)| !k.starts_with("volatile."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        false,
    )?;
    crate::service::profiles::validate_devices(&c.db, &by.container.devices)?;
    let mut snaps = Vec::new();
    for s in &index.snapshots {
        snapshots::check_name(s)?;
        snaps.push((
            VolumeName::new(s.clone()).map_err(|e| DomainError::BadRequest(e.to_string()))?,
            snapshots::volume(&name, s)?,
        ));
    }
    if !c.creating.claim(&name) {
        return Err(DomainError::Conflict(format!(
            "instance {name:?} is already being created"
        )));
    }
    let by = root_on_pool(c, by, &pool)?;
    let r = import_inner(c, upload, &name, &pool, &index, &by, snaps).await;
    c.creating.release(&name);
    r
}

/// As LXD does for an import onto another pool (`X-LXD-pool`): when the root disk the
/// instance's profiles and devices give names another pool, the instance gets a root disk of
/// its own on the pool its volume is on, so its devices say where it lives.
fn root_on_pool(c: &Services, mut by: BackupYaml, pool: &str) -> Result<BackupYaml, DomainError> {
    let profiles = crate::service::expansion::load_profiles(&c.db, &by.container.profiles)?;
    let (_, ed) = crate::model::profile::expand(&profiles, &BTreeMap::new(), &by.container.devices);
    let root = ed.iter().find(|(_, d)| {
        crate::model::devices::DeviceType::of(d) == crate::model::devices::DeviceType::Disk
            && d.get("path").map(String::as_str) == Some("/")
            && d.get("source").is_none()
    });
    if let Some((key, dev)) = root {
        if dev.get("pool").map(String::as_str) != Some(pool) {
            let mut dev = dev.clone();
            dev.insert("pool".into(), pool.to_string());
            by.container.devices.insert(key.clone(), dev);
        }
    }
    Ok(by)
}

async fn import_inner(
    c: &Services,
    upload: &Path,
    name: &str,
    pool: &str,
    index: &Index,
    by: &BackupYaml,
    snaps: Vec<(VolumeName, VolumeName)>,
) -> Result<Instance, DomainError> {
    let upload_name = upload
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pn = PoolName::new(pool.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let vol =
        VolumeName::new(name.to_string()).map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let range = c.helpers.privileged.id_range().await?;
    let size = instances::wanted_idmap_size(&by.container.config)?;
    let claim = instances::claim_idmap(&c.db, name, &range, size)?;
    let base = claim.base;
    c.helpers
        .store
        .unpack_backup(
            pn.clone(),
            VolumeName::new(upload_name).map_err(|e| DomainError::Internal(e.to_string()))?,
            vol.clone(),
            snaps.clone(),
            index.optimized,
        )
        .await?;
    let inst = imported_record(name, pool, &by.container, base, claim.size);
    if let Err(e) = record_import(c, &inst, index, by) {
        undo_import(c, name, &pn, vol, snaps).await;
        return Err(e);
    }
    c.events.lifecycle(
        "instance-created",
        &format!("/1.0/instances/{name}"),
        json!({}),
    );
    Ok(inst)
}

/// A backup's settings without its volatile keys (but for the base image): ids and
/// addresses are the imported instance's own.
fn keep_volatile(cfg: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    cfg.iter()
        .filter(|(k, _)| !k.starts_with("volatile.") || *k == "volatile.base_image")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The imported instance's record: the backup's settings with a fresh identity (uuid, idmap).
fn imported_record(
    name: &str,
    pool: &str,
    from: &BackupInstance,
    base: u64,
    size: u64,
) -> Instance {
    let mut config = keep_volatile(&from.config);
    config.insert("volatile.uuid".into(), uuid::Uuid::new_v4().to_string());
    config.insert("volatile.idmap.base".into(), base.to_string());
    config.insert(
        "volatile.idmap.next".into(),
        instances::idmap_json(base, size),
    );
    config.insert("volatile.last_state.idmap".into(), "[]".into());
    Instance {
        name: name.to_string(),
        kind: "container".into(),
        architecture: if from.architecture.is_empty() {
            std::env::consts::ARCH.to_string()
        } else {
            from.architecture.clone()
        },
        ephemeral: from.ephemeral,
        stateful: false,
        description: from.description.clone(),
        created_at: crate::service::events::now_rfc3339(),
        last_used_at: String::new(),
        config,
        devices: from.devices.clone(),
        profiles: from.profiles.clone(),
        pool: pool.to_string(),
    }
}

/// Writes the imported instance's record and its snapshots' (as the index lists them).
fn record_import(
    c: &Services,
    inst: &Instance,
    index: &Index,
    by: &BackupYaml,
) -> Result<(), DomainError> {
    let name = &inst.name;
    instances::write(&c.db, inst, true)?;
    for s in &index.snapshots {
        let b = by
            .snapshots
            .iter()
            .find(|x| &x.name == s)
            .cloned()
            .unwrap_or_default();
        crate::service::snapshots::insert_record(
            &c.db,
            &Snapshot {
                instance: name.to_string(),
                name: s.clone(),
                created_at: if b.created_at.is_empty() {
                    crate::service::events::now_rfc3339()
                } else {
                    b.created_at.clone()
                },
                expires_at: b.expires_at.clone(),
                description: String::new(),
                config: keep_volatile(&b.config),
                devices: b.devices.clone(),
                profiles: b.profiles.clone(),
                architecture: inst.architecture.clone(),
            },
        )?;
    }
    Ok(())
}

/// Undoes a failed import: the record, then the unpacked volumes.
async fn undo_import(
    c: &Services,
    name: &str,
    pn: &PoolName,
    vol: VolumeName,
    snaps: Vec<(VolumeName, VolumeName)>,
) {
    let _ = crate::store::instances::delete(&c.db, name);
    let _ = c
        .helpers
        .store
        .delete_volume(pn.clone(), silo_proto::store::VolumeKind::Container, vol)
        .await;
    for (_, v) in snaps {
        let _ = c
            .helpers
            .store
            .delete_volume(pn.clone(), silo_proto::store::VolumeKind::Snapshot, v)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_keeps_the_backups_of_an_instance_whose_row_is_corrupt() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        crate::store::pools::insert(
            &db,
            &crate::model::pool::Pool {
                name: "p".into(),
                driver: "dir".into(),
                description: String::new(),
                config: BTreeMap::new(),
            },
        )
        .expect("pool");
        let i = Instance {
            name: "c1".into(),
            kind: "container".into(),
            architecture: "x86_64".into(),
            ephemeral: false,
            stateful: false,
            description: String::new(),
            created_at: String::new(),
            last_used_at: String::new(),
            config: BTreeMap::new(),
            devices: BTreeMap::new(),
            profiles: vec![],
            pool: "p".into(),
        };
        crate::store::instances::insert(&db, &i).expect("instance");
        let dir = dir_of(t.path(), "c1");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("b0"), b"not a tarball").expect("file");
        let gone = dir_of(t.path(), "gone");
        std::fs::create_dir_all(&gone).expect("dir");
        crate::store::damage(&db, "instances", "config", "c1", "{");
        reconcile(&db, t.path());
        assert!(
            dir.join("b0").exists(),
            "a corrupt row's backups were removed"
        );
        assert!(!gone.exists(), "the backups of a missing instance stay");
    }
}
