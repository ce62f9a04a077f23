//! `networks`: global definitions (each host brings its bridges up from them).

use rusqlite::{params, Row};

use crate::model::network::Network;
use crate::store::db::Db;
use crate::store::error::{decode, encode, unique, Named, StoreError};

const TABLE: &str = "networks";

fn row(r: &Row<'_>) -> Result<Network, StoreError> {
    let name: String = r.get(0)?;
    Ok(Network {
        kind: r.get(1)?,
        description: r.get(2)?,
        config: decode(TABLE, &name, "config", &r.get::<_, String>(3)?)?,
        name,
    })
}

fn select(
    c: &rusqlite::Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Network>, StoreError> {
    crate::store::db::rows(
        c,
        &format!("SELECT name, type, description, config FROM networks {filter} ORDER BY name"),
        args,
        row,
    )
}

/// All networks, by name.
pub fn all(db: &Db) -> Result<Vec<Network>, StoreError> {
    db.run(|c| select(c, "", []))
}

fn get_in(c: &rusqlite::Connection, name: &str) -> Result<Network, StoreError> {
    select(c, "WHERE name = ?1", params![name])?
        .pop()
        .ok_or_else(|| StoreError::not_found(Named::new("network", name)))
}

/// One network.
pub fn get(db: &Db, name: &str) -> Result<Network, StoreError> {
    db.run(|c| get_in(c, name))
}

/// Records a new network; `Conflict` if the name is taken.
pub fn insert(db: &Db, n: &Network) -> Result<(), StoreError> {
    let cfg = encode(TABLE, &n.name, "config", &n.config)?;
    db.run(|c| {
        c.execute(
            "INSERT INTO networks (name, type, description, config) VALUES (?1, ?2, ?3, ?4)",
            params![n.name, n.kind, n.description, cfg],
        )
        .map_err(|e| unique(e, Named::new("network", &n.name)))?;
        Ok(())
    })
}

/// Replaces a network's description and config; the stored row must exist and decode.
pub fn update(db: &Db, n: &Network) -> Result<(), StoreError> {
    let cfg = encode(TABLE, &n.name, "config", &n.config)?;
    db.tx(|tx| {
        get_in(tx, &n.name)?;
        tx.execute(
            "UPDATE networks SET description = ?2, config = ?3 WHERE name = ?1",
            params![n.name, n.description, cfg],
        )?;
        Ok(())
    })
}

/// Forgets a network.
pub fn delete(db: &Db, name: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute("DELETE FROM networks WHERE name = ?1", params![name])?;
        Ok(())
    })
}
