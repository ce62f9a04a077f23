//! `custom_volume_snapshots`: global records of custom volumes' snapshots.

use rusqlite::{params, Row};

use crate::model::pool::VolumeSnapshot;
use crate::store::db::Db;
use crate::store::error::{decode, encode, unique, Named, StoreError};

const TABLE: &str = "custom_volume_snapshots";

fn row(r: &Row<'_>) -> Result<VolumeSnapshot, StoreError> {
    let pool: String = r.get("pool")?;
    let volume: String = r.get("volume")?;
    let name: String = r.get("name")?;
    let key = format!("{pool}/{volume}/{name}");
    Ok(VolumeSnapshot {
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        description: r.get("description")?,
        config: decode(TABLE, &key, "config", &r.get::<_, String>("config")?)?,
        pool,
        volume,
        name,
    })
}

fn select(
    db: &Db,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<VolumeSnapshot>, StoreError> {
    db.run(|c| {
        crate::store::db::rows(
            c,
            &format!("SELECT * FROM custom_volume_snapshots {filter} ORDER BY created_at, name"),
            args,
            row,
        )
    })
}

fn named(volume: &str, name: &str, pool: &str) -> Named {
    Named::in_pool("custom volume snapshot", format!("{volume}/{name}"), pool)
}

/// A volume's snapshots, oldest first.
pub fn of_volume(db: &Db, pool: &str, volume: &str) -> Result<Vec<VolumeSnapshot>, StoreError> {
    select(db, "WHERE pool = ?1 AND volume = ?2", params![pool, volume])
}

/// One snapshot.
pub fn get(db: &Db, pool: &str, volume: &str, name: &str) -> Result<VolumeSnapshot, StoreError> {
    select(
        db,
        "WHERE pool = ?1 AND volume = ?2 AND name = ?3",
        params![pool, volume, name],
    )?
    .pop()
    .ok_or_else(|| StoreError::not_found(named(volume, name, pool)))
}

/// Every snapshot that has an expiry.
pub fn expiring(db: &Db) -> Result<Vec<VolumeSnapshot>, StoreError> {
    select(db, "WHERE expires_at != ''", [])
}

/// Records a snapshot; `Conflict` if the volume has one of that name.
pub fn insert(db: &Db, s: &VolumeSnapshot) -> Result<(), StoreError> {
    let key = format!("{}/{}/{}", s.pool, s.volume, s.name);
    let cfg = encode(TABLE, &key, "config", &s.config)?;
    db.run(|c| {
        c.execute(
            "INSERT INTO custom_volume_snapshots (pool, volume, name, created_at, expires_at, description, config) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![s.pool, s.volume, s.name, s.created_at, s.expires_at, s.description, cfg],
        )
        .map_err(|e| unique(e, named(&s.volume, &s.name, &s.pool)))?;
        Ok(())
    })
}

/// Sets a snapshot's description and expiry.
pub fn update(
    db: &Db,
    pool: &str,
    volume: &str,
    name: &str,
    description: &str,
    expires_at: &str,
) -> Result<(), StoreError> {
    db.run(|c| {
        let n = c.execute(
            "UPDATE custom_volume_snapshots SET description = ?4, expires_at = ?5 WHERE pool = ?1 AND volume = ?2 AND name = ?3",
            params![pool, volume, name, description, expires_at],
        )?;
        if n == 0 {
            return Err(StoreError::not_found(named(volume, name, pool)));
        }
        Ok(())
    })
}

/// Renames a snapshot; `Conflict` if `to` is taken.
pub fn rename(db: &Db, pool: &str, volume: &str, from: &str, to: &str) -> Result<(), StoreError> {
    db.run(|c| {
        let n = c
            .execute(
                "UPDATE custom_volume_snapshots SET name = ?4 WHERE pool = ?1 AND volume = ?2 AND name = ?3",
                params![pool, volume, from, to],
            )
            .map_err(|e| unique(e, named(volume, to, pool)))?;
        if n == 0 {
            return Err(StoreError::not_found(named(volume, from, pool)));
        }
        Ok(())
    })
}

/// Forgets a snapshot.
pub fn delete(db: &Db, pool: &str, volume: &str, name: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "DELETE FROM custom_volume_snapshots WHERE pool = ?1 AND volume = ?2 AND name = ?3",
            params![pool, volume, name],
        )?;
        Ok(())
    })
}
