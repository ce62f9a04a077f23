//! `instances`: instances' definitions (global), with their config, which still holds the
//! node-local `volatile.*` keys (see `store/mod.rs`).

use rusqlite::{params, OptionalExtension, Row};

use crate::model::instance::Instance;
use crate::store::db::Db;
use crate::store::error::{decode, encode, unique, Named, StoreError};

const TABLE: &str = "instances";

fn row(r: &Row<'_>) -> Result<Instance, StoreError> {
    let name: String = r.get("name")?;
    let config = decode(TABLE, &name, "config", &r.get::<_, String>("config")?)?;
    let devices = decode(TABLE, &name, "devices", &r.get::<_, String>("devices")?)?;
    let profiles = decode(TABLE, &name, "profiles", &r.get::<_, String>("profiles")?)?;
    Ok(Instance {
        kind: r.get("type")?,
        architecture: r.get("architecture")?,
        ephemeral: r.get("ephemeral")?,
        stateful: r.get("stateful")?,
        description: r.get("description")?,
        created_at: r.get("created_at")?,
        last_used_at: r.get("last_used_at")?,
        config,
        devices,
        profiles,
        pool: r.get("pool")?,
        name,
    })
}

pub(crate) fn get_in(c: &rusqlite::Connection, name: &str) -> Result<Instance, StoreError> {
    let mut st = c.prepare("SELECT * FROM instances WHERE name = ?1")?;
    let mut rows = st.query(params![name])?;
    match rows.next()? {
        Some(r) => row(r),
        None => Err(StoreError::not_found(Named::new("instance", name))),
    }
}

/// All instances, by name.
pub fn all(db: &Db) -> Result<Vec<Instance>, StoreError> {
    db.run(|c| crate::store::db::rows(c, "SELECT * FROM instances ORDER BY name", [], row))
}

/// One instance.
pub fn get(db: &Db, name: &str) -> Result<Instance, StoreError> {
    db.run(|c| get_in(c, name))
}

/// Whether an instance of that name is recorded (its row need not decode).
pub fn exists(db: &Db, name: &str) -> Result<bool, StoreError> {
    db.run(|c| {
        Ok(c.query_row(
            "SELECT 1 FROM instances WHERE name = ?1",
            params![name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
    })
}

fn columns(i: &Instance) -> Result<[String; 3], StoreError> {
    Ok([
        encode(TABLE, &i.name, "config", &i.config)?,
        encode(TABLE, &i.name, "devices", &i.devices)?,
        encode(TABLE, &i.name, "profiles", &i.profiles)?,
    ])
}

/// Records a new instance; `Conflict` if the name is taken.
pub fn insert(db: &Db, i: &Instance) -> Result<(), StoreError> {
    let [cfg, dev, prof] = columns(i)?;
    db.run(|c| {
        c.execute(
            "INSERT INTO instances (name, type, architecture, ephemeral, stateful, description, created_at, last_used_at, config, devices, profiles, pool)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![i.name, i.kind, i.architecture, i.ephemeral, i.stateful, i.description, i.created_at, i.last_used_at, cfg, dev, prof, i.pool],
        )
        .map_err(|e| unique(e, Named::new("instance", &i.name)))?;
        Ok(())
    })
}

fn update_in(c: &rusqlite::Connection, i: &Instance) -> Result<(), StoreError> {
    let [cfg, dev, prof] = columns(i)?;
    c.execute(
        "UPDATE instances SET type = ?2, architecture = ?3, ephemeral = ?4, stateful = ?5, description = ?6, created_at = ?7,
         last_used_at = ?8, config = ?9, devices = ?10, profiles = ?11, pool = ?12 WHERE name = ?1",
        params![i.name, i.kind, i.architecture, i.ephemeral, i.stateful, i.description, i.created_at, i.last_used_at, cfg, dev, prof, i.pool],
    )?;
    Ok(())
}

/// Replaces an instance's record. The stored row must exist and decode: a corrupt row is
/// never overwritten (what it held, such as its id range, would be lost).
pub fn update(db: &Db, i: &Instance) -> Result<(), StoreError> {
    db.tx(|tx| {
        get_in(tx, &i.name)?;
        update_in(tx, i)
    })
}

/// Sets config keys (an empty value removes the key) and optionally `last_used_at`, reading
/// and writing in one transaction so no other write in between is lost.
pub fn set_keys(
    db: &Db,
    name: &str,
    keys: &[(&str, &str)],
    last_used: Option<&str>,
) -> Result<(), StoreError> {
    db.tx(|tx| {
        let mut i = get_in(tx, name)?;
        for (k, v) in keys {
            if v.is_empty() {
                i.config.remove(*k);
            } else {
                i.config.insert((*k).to_string(), (*v).to_string());
            }
        }
        if let Some(t) = last_used {
            i.last_used_at = t.to_string();
        }
        update_in(tx, &i)
    })
}

/// Forgets an instance; its snapshots, backups and id range go with it (cascade, trigger).
pub fn delete(db: &Db, name: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute("DELETE FROM instances WHERE name = ?1", params![name])?;
        Ok(())
    })
}

/// Renames an instance; snapshots, backups and its id range follow (cascade, trigger).
pub fn rename(db: &Db, from: &str, to: &str) -> Result<(), StoreError> {
    db.run(|c| {
        let n = c
            .execute(
                "UPDATE instances SET name = ?2 WHERE name = ?1",
                params![from, to],
            )
            .map_err(|e| unique(e, Named::new("instance", to)))?;
        if n == 0 {
            return Err(StoreError::not_found(Named::new("instance", from)));
        }
        Ok(())
    })
}
