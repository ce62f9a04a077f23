//! `custom_volume_backups`: records of custom volumes' backups.

use rusqlite::{params, Row};

use crate::model::backup::VolumeBackup;
use crate::store::db::Db;
use crate::store::error::{unique, Named, StoreError};

fn row(r: &Row<'_>) -> Result<VolumeBackup, StoreError> {
    Ok(VolumeBackup {
        pool: r.get("pool")?,
        volume: r.get("volume")?,
        name: r.get("name")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        volume_only: r.get::<_, i64>("volume_only")? != 0,
    })
}

fn select(
    db: &Db,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<VolumeBackup>, StoreError> {
    db.run(|c| {
        crate::store::db::rows(
            c,
            &format!("SELECT * FROM custom_volume_backups {filter} ORDER BY created_at, name"),
            args,
            row,
        )
    })
}

fn named(volume: &str, name: &str, pool: &str) -> Named {
    Named::in_pool("custom volume backup", format!("{volume}/{name}"), pool)
}

/// A volume's backups, oldest first.
pub fn of_volume(db: &Db, pool: &str, volume: &str) -> Result<Vec<VolumeBackup>, StoreError> {
    select(db, "WHERE pool = ?1 AND volume = ?2", params![pool, volume])
}

/// One backup.
pub fn get(db: &Db, pool: &str, volume: &str, name: &str) -> Result<VolumeBackup, StoreError> {
    select(
        db,
        "WHERE pool = ?1 AND volume = ?2 AND name = ?3",
        params![pool, volume, name],
    )?
    .pop()
    .ok_or_else(|| StoreError::not_found(named(volume, name, pool)))
}

/// Every backup that has an expiry.
pub fn expiring(db: &Db) -> Result<Vec<VolumeBackup>, StoreError> {
    select(db, "WHERE expires_at != ''", [])
}

/// Records a backup; `Conflict` if the volume has one of that name.
pub fn insert(db: &Db, b: &VolumeBackup) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "INSERT INTO custom_volume_backups (pool, volume, name, created_at, expires_at, volume_only) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![b.pool, b.volume, b.name, b.created_at, b.expires_at, i64::from(b.volume_only)],
        )
        .map_err(|e| unique(e, named(&b.volume, &b.name, &b.pool)))?;
        Ok(())
    })
}

/// Forgets a backup.
pub fn delete(db: &Db, pool: &str, volume: &str, name: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "DELETE FROM custom_volume_backups WHERE pool = ?1 AND volume = ?2 AND name = ?3",
            params![pool, volume, name],
        )?;
        Ok(())
    })
}
