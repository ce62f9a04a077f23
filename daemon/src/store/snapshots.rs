//! `snapshots`: global records of instances' snapshots.

use rusqlite::{params, Row};

use crate::model::instance::Snapshot;
use crate::store::db::Db;
use crate::store::error::{decode, encode, unique, Named, StoreError};

const TABLE: &str = "snapshots";

fn row(r: &Row<'_>) -> Result<Snapshot, StoreError> {
    let instance: String = r.get("instance")?;
    let name: String = r.get("name")?;
    let key = format!("{instance}/{name}");
    Ok(Snapshot {
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        description: r.get("description")?,
        config: decode(TABLE, &key, "config", &r.get::<_, String>("config")?)?,
        devices: decode(TABLE, &key, "devices", &r.get::<_, String>("devices")?)?,
        profiles: decode(TABLE, &key, "profiles", &r.get::<_, String>("profiles")?)?,
        architecture: r.get("architecture")?,
        instance,
        name,
    })
}

fn select(db: &Db, filter: &str, args: impl rusqlite::Params) -> Result<Vec<Snapshot>, StoreError> {
    db.run(|c| {
        crate::store::db::rows(
            c,
            &format!("SELECT * FROM snapshots {filter} ORDER BY created_at, name"),
            args,
            row,
        )
    })
}

/// An instance's snapshots, oldest first.
pub fn of_instance(db: &Db, instance: &str) -> Result<Vec<Snapshot>, StoreError> {
    select(db, "WHERE instance = ?1", params![instance])
}

/// One snapshot.
pub fn get(db: &Db, instance: &str, name: &str) -> Result<Snapshot, StoreError> {
    select(
        db,
        "WHERE instance = ?1 AND name = ?2",
        params![instance, name],
    )?
    .pop()
    .ok_or_else(|| StoreError::not_found(Named::of_instance("snapshot", name, instance)))
}

/// Every snapshot that has an expiry.
pub fn expiring(db: &Db) -> Result<Vec<Snapshot>, StoreError> {
    select(db, "WHERE expires_at != ''", [])
}

/// Records a snapshot; `Conflict` if the instance has one of that name.
pub fn insert(db: &Db, s: &Snapshot) -> Result<(), StoreError> {
    let key = format!("{}/{}", s.instance, s.name);
    let cfg = encode(TABLE, &key, "config", &s.config)?;
    let dev = encode(TABLE, &key, "devices", &s.devices)?;
    let prof = encode(TABLE, &key, "profiles", &s.profiles)?;
    db.run(|c| {
        c.execute(
            "INSERT INTO snapshots (instance, name, created_at, expires_at, description, config, devices, profiles, architecture) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![s.instance, s.name, s.created_at, s.expires_at, s.description, cfg, dev, prof, s.architecture],
        )
        .map_err(|e| unique(e, Named::of_instance("snapshot", &s.name, &s.instance)))?;
        Ok(())
    })
}

/// Forgets a snapshot.
pub fn delete(db: &Db, instance: &str, name: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "DELETE FROM snapshots WHERE instance = ?1 AND name = ?2",
            params![instance, name],
        )?;
        Ok(())
    })
}

/// Renames a snapshot.
pub fn rename(db: &Db, instance: &str, from: &str, to: &str) -> Result<(), StoreError> {
    db.run(|c| {
        let n = c
            .execute(
                "UPDATE snapshots SET name = ?3 WHERE instance = ?1 AND name = ?2",
                params![instance, from, to],
            )
            .map_err(|e| unique(e, Named::of_instance("snapshot", to, instance)))?;
        if n == 0 {
            return Err(StoreError::not_found(Named::of_instance(
                "snapshot", from, instance,
            )));
        }
        Ok(())
    })
}

/// Sets a snapshot's expiry ("" for never).
pub fn set_expiry(db: &Db, instance: &str, name: &str, expires_at: &str) -> Result<(), StoreError> {
    db.run(|c| {
        let n = c.execute(
            "UPDATE snapshots SET expires_at = ?3 WHERE instance = ?1 AND name = ?2",
            params![instance, name, expires_at],
        )?;
        if n == 0 {
            return Err(StoreError::not_found(Named::of_instance(
                "snapshot", name, instance,
            )));
        }
        Ok(())
    })
}
