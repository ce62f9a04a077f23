//! Custom volume backups (`silo storage volume export` / `import`) in LXD 5.0's layout:
//! `backup/index.yaml` (with the volume's and its snapshots' records under `config`),
//! `backup/volume/`, `backup/volume-snapshots/<name>/`. silo-store packs and unpacks the
//! volumes; silod keeps the tarballs in `<state>/volume-backups/<pool>/<volume>/`, their
//! records in `custom_volume_backups`, and reads only `backup/index.yaml` of an import.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use silo_proto::store::PackCompression;
use silo_proto::{PoolName, VolumeName};

use crate::helpers::HelperKind;
use crate::model::backup::VolumeBackup;
use crate::model::pool::VolumeSnapshot;
use crate::service::custom_volumes;
use crate::service::{DomainError, Services};
use crate::store::db::Db;

/// Where a volume's backups are kept.
pub fn dir_of(state: &Path, pool: &str, volume: &str) -> PathBuf {
    state.join("volume-backups").join(pool).join(volume)
}

/// The records `config` of index.yaml carries (LXD's `backup/config.Config`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexConfig {
    /// The pool the volume was in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<silo_api::StoragePool>,
    /// The volume's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<silo_api::StorageVolume>,
    /// Its snapshots' records, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_snapshots: Vec<silo_api::StorageVolumeSnapshot>,
}

/// `backup/index.yaml` of a custom volume backup.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Index {
    /// The volume's name.
    pub name: String,
    /// The pool driver it came from.
    pub backend: String,
    /// The pool it came from.
    pub pool: String,
    /// Snapshot names, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// Driver-specific streams (refused here).
    pub optimized: bool,
    /// Always false here.
    pub optimized_header: bool,
    /// "custom".
    #[serde(rename = "type")]
    pub kind: String,
    /// The records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<IndexConfig>,
}

fn bad(e: silo_proto::NameError) -> DomainError {
    DomainError::BadRequest(e.to_string())
}

/// A volume's backups.
pub fn list(db: &Db, pool: &str, volume: &str) -> Result<Vec<VolumeBackup>, DomainError> {
    custom_volumes::get(db, pool, volume)?;
    Ok(crate::store::volume_backups::of_volume(db, pool, volume)?)
}

/// One backup.
pub fn get(db: &Db, pool: &str, volume: &str, name: &str) -> Result<VolumeBackup, DomainError> {
    custom_volumes::get(db, pool, volume)?;
    crate::store::volume_backups::get(db, pool, volume, name).map_err(|e| match e {
        crate::store::error::StoreError::NotFound(_) => DomainError::NotFound(format!(
            "backup {name:?} of custom volume {volume:?} not found in pool {pool:?}"
        )),
        e => e.into(),
    })
}

/// LXD's default name: `backup<N>` with the first unused N.
pub fn next_name(db: &Db, pool: &str, volume: &str) -> Result<String, DomainError> {
    let have = list(db, pool, volume)?;
    Ok((0..)
        .map(|n| format!("backup{n}"))
        .find(|n| !have.iter().any(|b| b.name == *n))
        .unwrap_or_else(|| "backup".into()))
}

fn compression(c: &str) -> Result<PackCompression, DomainError> {
    Ok(match c {
        "" | "gzip" => PackCompression::Gzip,
        "none" => PackCompression::None,
        "xz" => PackCompression::Xz,
        "zstd" => PackCompression::Zstd,
        other => {
            return Err(DomainError::BadRequest(format!(
                "unsupported compression algorithm {other:?} (gzip, xz, zstd or none)"
            )))
        }
    })
}

/// What a new backup is asked to be.
#[derive(Debug, Clone)]
pub struct NewBackup {
    /// Its name.
    pub name: String,
    /// Without the snapshots.
    pub volume_only: bool,
    /// Expiry (RFC 3339) or empty.
    pub expires_at: String,
    /// gzip, xz, zstd or none.
    pub compression: String,
}

/// Checks a backup request before its operation starts.
pub fn check(
    db: &Db,
    pool: &str,
    volume: &str,
    name: &str,
    comp: &str,
    optimized: bool,
) -> Result<(), DomainError> {
    custom_volumes::get(db, pool, volume)?;
    custom_volumes::check_snapshot_name(name)
        .map_err(|e| DomainError::BadRequest(e.to_string().replace("snapshot", "backup")))?;
    compression(comp)?;
    if optimized {
        return Err(DomainError::BadRequest(
            "optimized custom volume backups are not supported: silo writes LXD's portable \
             layout (leave out --optimized-storage)"
                .into(),
        ));
    }
    if crate::store::volume_backups::get(db, pool, volume, name).is_ok() {
        return Err(DomainError::Conflict(format!(
            "Backup {name:?} already exists"
        )));
    }
    Ok(())
}

/// index.yaml of a backup of `volume` with `snaps`.
fn index_of(
    db: &Db,
    pool: &str,
    volume: &str,
    snaps: &[VolumeSnapshot],
) -> Result<Index, DomainError> {
    let p = crate::store::pools::get(db, pool)?;
    let (_, description, config) = custom_volumes::get(db, pool, volume)?;
    let vol = silo_api::StorageVolume {
        name: volume.into(),
        kind: "custom".into(),
        content_type: "filesystem".into(),
        config,
        description,
        location: "none".into(),
        ..Default::default()
    };
    let snapshots: Vec<silo_api::StorageVolumeSnapshot> = snaps
        .iter()
        .map(|s| silo_api::StorageVolumeSnapshot {
            name: s.name.clone(),
            description: s.description.clone(),
            config: s.config.clone(),
            content_type: "filesystem".into(),
            created_at: s.created_at.clone(),
            // Always a time, Go's zero for never: LXD's import dereferences it.
            expires_at: Some(if s.expires_at.is_empty() {
                silo_api::ZERO_TIME.to_string()
            } else {
                s.expires_at.clone()
            }),
        })
        .collect();
    Ok(Index {
        name: volume.into(),
        backend: p.driver.clone(),
        pool: pool.into(),
        snapshots: snaps.iter().map(|s| s.name.clone()).collect(),
        optimized: false,
        optimized_header: false,
        kind: "custom".into(),
        config: Some(IndexConfig {
            pool: Some(silo_api::StoragePool {
                name: p.name.clone(),
                driver: p.driver.clone(),
                description: p.description.clone(),
                config: p.config.clone(),
                status: "Created".into(),
                locations: vec!["none".into()],
                used_by: Vec::new(),
            }),
            volume: Some(vol),
            volume_snapshots: snapshots,
        }),
    })
}

/// Makes a backup (inside its operation): silo-store packs the tarball, silod keeps it.
pub async fn create(
    c: &Services,
    pool: &str,
    volume: &str,
    req: NewBackup,
) -> Result<(), DomainError> {
    let comp = compression(&req.compression)?;
    let snaps = if req.volume_only {
        Vec::new()
    } else {
        custom_volumes::snapshots(&c.db, pool, volume)?
    };
    let index = index_of(&c.db, pool, volume, &snaps)?;
    let index_yaml =
        serde_norway::to_string(&index).map_err(|e| DomainError::Internal(e.to_string()))?;
    let snap_names = snaps
        .iter()
        .map(|s| VolumeName::new(s.name.clone()).map_err(bad))
        .collect::<Result<Vec<_>, _>>()?;
    let ticket = c
        .helpers
        .store
        .pack_custom_backup(
            PoolName::new(pool.to_string()).map_err(bad)?,
            VolumeName::new(volume.to_string()).map_err(bad)?,
            snap_names,
            index_yaml,
            comp,
        )
        .await?;
    let fd = c
        .helpers
        .take_fds(HelperKind::Store, ticket)
        .await
        .map_err(DomainError::Internal)?
        .remove(0);
    let dir = dir_of(&c.state_dir, pool, volume);
    let path = dir.join(&req.name);
    store_file(fd, dir, path.clone()).await?;
    let b = VolumeBackup {
        pool: pool.into(),
        volume: volume.into(),
        name: req.name.clone(),
        created_at: crate::service::events::now_rfc3339(),
        expires_at: req.expires_at,
        volume_only: req.volume_only,
    };
    if let Err(e) = crate::store::volume_backups::insert(&c.db, &b) {
        let _ = std::fs::remove_file(&path);
        return Err(e.into());
    }
    c.events.lifecycle(
        "storage-volume-backup-created",
        &backup_url(pool, volume, &req.name),
        json!({}),
    );
    Ok(())
}

/// Copies the packed tarball from silo-store's fd to `dest` through a temporary file in
/// `dir`, so a failed copy leaves no partial backup.
async fn store_file(
    fd: std::os::fd::OwnedFd,
    dir: PathBuf,
    dest: PathBuf,
) -> Result<(), DomainError> {
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

/// A backup's URL.
pub fn backup_url(pool: &str, volume: &str, name: &str) -> String {
    format!(
        "{}/backups/{name}",
        silo_api::paths::storage_volume(pool, "custom", volume)
    )
}

/// A backup's tarball.
pub fn file(c: &Services, pool: &str, volume: &str, name: &str) -> Result<PathBuf, DomainError> {
    get(&c.db, pool, volume, name)?;
    let p = dir_of(&c.state_dir, pool, volume).join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(DomainError::NotFound(format!(
            "backup {name:?} of custom volume {volume:?} has lost its file {}",
            p.display()
        )))
    }
}

/// Deletes a backup: its file, then its record.
pub fn delete(c: &Services, pool: &str, volume: &str, name: &str) -> Result<(), DomainError> {
    get(&c.db, pool, volume, name)?;
    match std::fs::remove_file(dir_of(&c.state_dir, pool, volume).join(name)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DomainError::Internal(format!("deleting the backup: {e}"))),
    }
    crate::store::volume_backups::delete(&c.db, pool, volume, name)?;
    c.events.lifecycle(
        "storage-volume-backup-deleted",
        &backup_url(pool, volume, name),
        json!({}),
    );
    Ok(())
}

/// Removes every backup file of a volume (its records go with the volume's).
pub fn delete_all(state: &Path, pool: &str, volume: &str) {
    let dir = dir_of(state, pool, volume);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a volume's backups");
        }
    }
}

/// Moves a volume's backup files with its rename or move (their records follow by the
/// foreign key within a pool).
pub fn rename_all(state: &Path, pool: &str, from: &str, to_pool: &str, to: &str) {
    let (a, b) = (dir_of(state, pool, from), dir_of(state, to_pool, to));
    if !a.exists() {
        return;
    }
    if let Some(parent) = b.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::rename(&a, &b) {
        tracing::warn!(from = %a.display(), to = %b.display(), error = %e, "moving a volume's backups");
    }
}

/// Deletes backups whose `expires_at` has passed (silod's housekeeping).
pub fn expire(c: &Services) {
    let now = crate::service::events::now_rfc3339();
    let Ok(all) = crate::store::volume_backups::expiring(&c.db) else {
        return;
    };
    for b in all.into_iter().filter(|b| b.expires_at < now) {
        match delete(c, &b.pool, &b.volume, &b.name) {
            Ok(()) => {
                tracing::info!(pool = %b.pool, volume = %b.volume, backup = %b.name, "expired volume backup deleted")
            }
            Err(e) => {
                tracing::warn!(pool = %b.pool, volume = %b.volume, backup = %b.name, error = %e, "deleting an expired volume backup failed")
            }
        }
    }
}

/// Reads `backup/index.yaml` out of an uploaded tarball (at most 1 MiB); nothing else of it
/// is read here.
fn read_index(path: &Path) -> Result<Index, DomainError> {
    use std::io::Read;
    let bad = |m: String| DomainError::BadRequest(format!("not a custom volume backup: {m}"));
    let f = std::fs::File::open(path).map_err(|e| DomainError::Internal(e.to_string()))?;
    let stream = silo_proto::image::open_tar_stream(f, 1 << 40).map_err(|e| bad(e.to_string()))?;
    let mut ar = tar::Archive::new(stream);
    for e in ar.entries().map_err(|e| bad(e.to_string()))? {
        let mut e = e.map_err(|e| bad(e.to_string()))?;
        let p = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .to_string();
        if p != "backup/index.yaml" {
            continue;
        }
        let limit = 1u64 << 20;
        if e.size() > limit {
            return Err(bad(format!("{p} is larger than {limit} bytes")));
        }
        let mut s = String::new();
        e.by_ref()
            .take(limit)
            .read_to_string(&mut s)
            .map_err(|e| bad(format!("{p}: {e}")))?;
        return serde_norway::from_str(&s).map_err(|e| bad(format!("{p}: {e}")));
    }
    Err(bad("no backup/index.yaml".into()))
}

/// Imports an uploaded custom volume backup into `pool` as `name` (or the backup's), with
/// its snapshots. Nothing remains on failure.
pub async fn import(
    c: &Services,
    upload: &Path,
    pool: &str,
    name: Option<String>,
) -> Result<String, DomainError> {
    let up = upload.to_path_buf();
    let index = tokio::task::spawn_blocking(move || read_index(&up))
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))??;
    if index.kind != "custom" {
        return Err(DomainError::BadRequest(format!(
            "the backup is of type {:?}, not a custom volume (import instances with \
             `silo import`)",
            index.kind
        )));
    }
    if index.optimized {
        return Err(DomainError::BadRequest(
            "optimized custom volume backups are not supported here: export it without \
             --optimized-storage"
                .into(),
        ));
    }
    let name = name.filter(|n| !n.is_empty()).unwrap_or(index.name.clone());
    let vn = VolumeName::new(name.clone()).map_err(bad)?;
    let pn = PoolName::new(pool.to_string()).map_err(bad)?;
    crate::store::pools::get(&c.db, pool)?;
    if custom_volumes::get(&c.db, pool, &name).is_ok() {
        return Err(DomainError::Conflict(format!(
            "custom volume {name:?} already exists in pool {pool:?}"
        )));
    }
    let cfg = index.config.clone().unwrap_or_default();
    let (description, mut config) = cfg
        .volume
        .map(|v| (v.description, v.config))
        .unwrap_or_default();
    config.retain(|_, v| !v.is_empty());
    custom_volumes::check_config(&c.db, pool, &name, &config)?;
    let records: BTreeMap<&str, &silo_api::StorageVolumeSnapshot> = cfg
        .volume_snapshots
        .iter()
        .map(|s| (s.name.rsplit('/').next().unwrap_or(""), s))
        .collect();
    let mut snaps = Vec::new();
    let mut snap_names = Vec::new();
    for s in &index.snapshots {
        custom_volumes::check_snapshot_name(s)?;
        if snaps.iter().any(|x: &VolumeSnapshot| &x.name == s) {
            return Err(DomainError::BadRequest(format!(
                "the backup lists snapshot {s:?} twice"
            )));
        }
        let r = records.get(s.as_str());
        let expires_at = match r.and_then(|r| r.expires_at.as_deref()) {
            Some(e) => crate::model::parse::parse_expiry_time(e)?.unwrap_or_default(),
            None => String::new(),
        };
        snaps.push(VolumeSnapshot {
            pool: pool.into(),
            volume: name.clone(),
            name: s.clone(),
            created_at: r
                .map(|r| r.created_at.clone())
                .filter(|t| crate::model::parse::parse_expiry_time(t).is_ok_and(|t| t.is_some()))
                .unwrap_or_else(crate::service::events::now_rfc3339),
            expires_at,
            description: r.map(|r| r.description.clone()).unwrap_or_default(),
            config: r.map(|r| r.config.clone()).unwrap_or_default(),
        });
        snap_names.push(VolumeName::new(s.clone()).map_err(bad)?);
    }
    let upload_name = upload
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    c.helpers
        .store
        .unpack_custom_backup(
            pn.clone(),
            VolumeName::new(upload_name).map_err(|e| DomainError::Internal(e.to_string()))?,
            vn.clone(),
            snap_names,
        )
        .await?;
    let recorded = async {
        crate::store::pools::insert_custom_volume_with(&c.db, pool, &name, &description, &config)?;
        for s in &snaps {
            crate::store::volume_snapshots::insert(&c.db, s)?;
        }
        if crate::model::pool::volume_size(&config) > 0 {
            custom_volumes::apply_size(c, pool, &name, &config).await?;
        }
        Ok::<(), DomainError>(())
    }
    .await;
    if let Err(e) = recorded {
        let _ = crate::store::pools::delete_custom_volume(&c.db, pool, &name);
        let _ = c
            .helpers
            .store
            .delete_volume(pn, silo_proto::store::VolumeKind::Custom, vn)
            .await;
        return Err(e);
    }
    c.events.lifecycle(
        "storage-volume-created",
        &silo_api::paths::storage_volume(pool, "custom", &name),
        json!({}),
    );
    Ok(name)
}
