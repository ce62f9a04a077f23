//! `storage_pools` and `custom_volumes`: global definitions. Which images are unpacked in a
//! pool on this host (`image_volumes`) is node-local: see [`crate::store::local`].

use rusqlite::{params, Row};

use crate::model::pool::{CustomVolume, Pool};
use crate::store::db::Db;
use crate::store::error::{decode, encode, unique, Named, StoreError};

fn row(r: &Row<'_>) -> Result<Pool, StoreError> {
    let name: String = r.get(0)?;
    Ok(Pool {
        driver: r.get(1)?,
        description: r.get(2)?,
        config: decode("storage_pools", &name, "config", &r.get::<_, String>(3)?)?,
        name,
    })
}

fn select(
    c: &rusqlite::Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Pool>, StoreError> {
    crate::store::db::rows(
        c,
        &format!(
            "SELECT name, driver, description, config FROM storage_pools {filter} ORDER BY name"
        ),
        args,
        row,
    )
}

/// All pools, by name.
pub fn all(db: &Db) -> Result<Vec<Pool>, StoreError> {
    db.run(|c| select(c, "", []))
}

fn get_in(c: &rusqlite::Connection, name: &str) -> Result<Pool, StoreError> {
    select(c, "WHERE name = ?1", params![name])?
        .pop()
        .ok_or_else(|| StoreError::not_found(Named::new("storage pool", name)))
}

/// One pool.
pub fn get(db: &Db, name: &str) -> Result<Pool, StoreError> {
    db.run(|c| get_in(c, name))
}

/// Records a new pool; `Conflict` if the name is taken.
pub fn insert(db: &Db, p: &Pool) -> Result<(), StoreError> {
    let cfg = encode("storage_pools", &p.name, "config", &p.config)?;
    db.run(|c| {
        c.execute(
            "INSERT INTO storage_pools (name, driver, description, config) VALUES (?1, ?2, ?3, ?4)",
            params![p.name, p.driver, p.description, cfg],
        )
        .map_err(|e| unique(e, Named::new("storage pool", &p.name)))?;
        Ok(())
    })
}

/// Sets a pool's description (its config does not change after creation).
pub fn set_description(db: &Db, name: &str, description: &str) -> Result<(), StoreError> {
    db.tx(|tx| {
        get_in(tx, name)?;
        tx.execute(
            "UPDATE storage_pools SET description = ?2 WHERE name = ?1",
            params![name, description],
        )?;
        Ok(())
    })
}

/// Forgets a pool.
pub fn delete(db: &Db, name: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute("DELETE FROM storage_pools WHERE name = ?1", params![name])?;
        Ok(())
    })
}

/// A pool's custom volumes, by name.
pub fn custom_volumes(db: &Db, pool: &str) -> Result<Vec<CustomVolume>, StoreError> {
    db.run(|c| {
        let mut st = c.prepare(
            "SELECT name, description, config FROM custom_volumes WHERE pool = ?1 ORDER BY name",
        )?;
        let mut rows = st.query(params![pool])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let key = format!("{pool}/{name}");
            let cfg = decode("custom_volumes", &key, "config", &r.get::<_, String>(2)?)?;
            out.push((name, r.get(1)?, cfg));
        }
        Ok(out)
    })
}

/// Records a new custom volume (empty config); `Conflict` if the name is taken in the pool.
pub fn insert_custom_volume(
    db: &Db,
    pool: &str,
    name: &str,
    description: &str,
) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "INSERT INTO custom_volumes (pool, name, description, config) VALUES (?1, ?2, ?3, '{}')",
            params![pool, name, description],
        )
        .map_err(|e| unique(e, Named::in_pool("custom volume", name, pool)))?;
        Ok(())
    })
}

/// Forgets a custom volume.
pub fn delete_custom_volume(db: &Db, pool: &str, name: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "DELETE FROM custom_volumes WHERE pool = ?1 AND name = ?2",
            params![pool, name],
        )?;
        Ok(())
    })
}

/// Records a new custom volume with its config; `Conflict` if the name is taken in the pool.
pub fn insert_custom_volume_with(
    db: &Db,
    pool: &str,
    name: &str,
    description: &str,
    config: &std::collections::BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let cfg = encode(
        "custom_volumes",
        &format!("{pool}/{name}"),
        "config",
        config,
    )?;
    db.run(|c| {
        c.execute(
            "INSERT INTO custom_volumes (pool, name, description, config) VALUES (?1, ?2, ?3, ?4)",
            params![pool, name, description, cfg],
        )
        .map_err(|e| unique(e, Named::in_pool("custom volume", name, pool)))?;
        Ok(())
    })
}

/// Sets a custom volume's description and config.
pub fn update_custom_volume(
    db: &Db,
    pool: &str,
    name: &str,
    description: &str,
    config: &std::collections::BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let cfg = encode(
        "custom_volumes",
        &format!("{pool}/{name}"),
        "config",
        config,
    )?;
    db.run(|c| {
        let n = c.execute(
            "UPDATE custom_volumes SET description = ?3, config = ?4 WHERE pool = ?1 AND name = ?2",
            params![pool, name, description, cfg],
        )?;
        if n == 0 {
            return Err(StoreError::not_found(Named::in_pool(
                "custom volume",
                name,
                pool,
            )));
        }
        Ok(())
    })
}

/// Renames a custom volume within its pool (its snapshots' records follow); `Conflict` if
/// `to` is taken.
pub fn rename_custom_volume(db: &Db, pool: &str, from: &str, to: &str) -> Result<(), StoreError> {
    db.run(|c| {
        let n = c
            .execute(
                "UPDATE custom_volumes SET name = ?3 WHERE pool = ?1 AND name = ?2",
                params![pool, from, to],
            )
            .map_err(|e| unique(e, Named::in_pool("custom volume", to, pool)))?;
        if n == 0 {
            return Err(StoreError::not_found(Named::in_pool(
                "custom volume",
                from,
                pool,
            )));
        }
        Ok(())
    })
}
