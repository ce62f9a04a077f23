//! `backups`: records of instances' backup tarballs (the files are this host's).

use rusqlite::{params, Row};

use crate::model::backup::Backup;
use crate::store::db::Db;
use crate::store::error::{unique, Named, StoreError};

fn row(r: &Row<'_>) -> Result<Backup, StoreError> {
    Ok(Backup {
        instance: r.get("instance")?,
        name: r.get("name")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        instance_only: r.get("instance_only")?,
        optimized: r.get("optimized_storage")?,
    })
}

fn select(db: &Db, filter: &str, args: impl rusqlite::Params) -> Result<Vec<Backup>, StoreError> {
    db.run(|c| {
        crate::store::db::rows(
            c,
            &format!("SELECT * FROM backups {filter} ORDER BY name"),
            args,
            row,
        )
    })
}

/// Every backup record.
pub fn all(db: &Db) -> Result<Vec<Backup>, StoreError> {
    select(db, "", [])
}

/// An instance's backups, by name.
pub fn of_instance(db: &Db, instance: &str) -> Result<Vec<Backup>, StoreError> {
    select(db, "WHERE instance = ?1", params![instance])
}

/// One backup.
pub fn get(db: &Db, instance: &str, name: &str) -> Result<Backup, StoreError> {
    select(
        db,
        "WHERE instance = ?1 AND name = ?2",
        params![instance, name],
    )?
    .pop()
    .ok_or_else(|| StoreError::not_found(Named::of_instance("backup", name, instance)))
}

/// Every backup that has an expiry.
pub fn expiring(db: &Db) -> Result<Vec<Backup>, StoreError> {
    select(db, "WHERE expires_at != ''", [])
}

/// Records a backup; `Conflict` if the instance has one of that name.
pub fn insert(db: &Db, b: &Backup) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "INSERT INTO backups (instance, name, created_at, expires_at, instance_only, optimized_storage) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![b.instance, b.name, b.created_at, b.expires_at, b.instance_only, b.optimized],
        )
        .map_err(|e| unique(e, Named::of_instance("backup", &b.name, &b.instance)))?;
        Ok(())
    })
}

/// Forgets a backup.
pub fn delete(db: &Db, instance: &str, name: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "DELETE FROM backups WHERE instance = ?1 AND name = ?2",
            params![instance, name],
        )?;
        Ok(())
    })
}

/// Renames a backup's record.
pub fn rename(db: &Db, instance: &str, from: &str, to: &str) -> Result<(), StoreError> {
    db.run(|c| {
        let n = c
            .execute(
                "UPDATE backups SET name = ?3 WHERE instance = ?1 AND name = ?2",
                params![instance, from, to],
            )
            .map_err(|e| unique(e, Named::of_instance("backup", to, instance)))?;
        if n == 0 {
            return Err(StoreError::not_found(Named::of_instance(
                "backup", from, instance,
            )));
        }
        Ok(())
    })
}
