//! `profiles`: global.

use std::collections::HashMap;

use rusqlite::{params, Row};

use crate::model::profile::Profile;
use crate::store::db::Db;
use crate::store::error::{decode, encode, unique, Named, StoreError};

const TABLE: &str = "profiles";

fn row(r: &Row<'_>) -> Result<Profile, StoreError> {
    let name: String = r.get(0)?;
    Ok(Profile {
        description: r.get(1)?,
        config: decode(TABLE, &name, "config", &r.get::<_, String>(2)?)?,
        devices: decode(TABLE, &name, "devices", &r.get::<_, String>(3)?)?,
        name,
    })
}

fn select(
    c: &rusqlite::Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Profile>, StoreError> {
    crate::store::db::rows(
        c,
        &format!("SELECT name, description, config, devices FROM profiles {filter} ORDER BY name"),
        args,
        row,
    )
}

/// All profiles, by name.
pub fn all(db: &Db) -> Result<Vec<Profile>, StoreError> {
    db.run(|c| select(c, "", []))
}

/// Every profile read once, by name: what a listing of many instances expands from. A row
/// that does not decode is its own error, so it fails only the instances that use it.
pub fn by_name(db: &Db) -> Result<HashMap<String, Result<Profile, StoreError>>, StoreError> {
    db.run(|c| {
        let mut st =
            c.prepare("SELECT name, description, config, devices FROM profiles ORDER BY name")?;
        let mut rows = st.query([])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            out.insert(name, row(r));
        }
        Ok(out)
    })
}

fn get_in(c: &rusqlite::Connection, name: &str) -> Result<Profile, StoreError> {
    select(c, "WHERE name = ?1", params![name])?
        .pop()
        .ok_or_else(|| StoreError::not_found(Named::new("profile", name)))
}

/// One profile.
pub fn get(db: &Db, name: &str) -> Result<Profile, StoreError> {
    db.run(|c| get_in(c, name))
}

/// Creates or replaces a profile. A stored row that does not decode is not overwritten.
pub fn put(db: &Db, p: &Profile) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.put_profile(p);
    }
    db.tx(|tx| {
        match get_in(tx, &p.name) {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        upsert_in(tx, p)
    })
}

/// Writes a profile's row (for this module and the cluster's copy).
pub(crate) fn upsert_in(c: &rusqlite::Connection, p: &Profile) -> Result<(), StoreError> {
    let cfg = encode(TABLE, &p.name, "config", &p.config)?;
    let dev = encode(TABLE, &p.name, "devices", &p.devices)?;
    c.execute(
        "INSERT INTO profiles (name, description, config, devices) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(name) DO UPDATE SET description = excluded.description, config = excluded.config, devices = excluded.devices",
        params![p.name, p.description, cfg, dev],
    )?;
    Ok(())
}

/// Removes a profile's row.
pub(crate) fn delete_in(c: &rusqlite::Connection, name: &str) -> Result<(), StoreError> {
    c.execute("DELETE FROM profiles WHERE name = ?1", params![name])?;
    Ok(())
}

/// Forgets a profile.
pub fn delete(db: &Db, name: &str) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.delete_profile(name);
    }
    db.run(|c| delete_in(c, name))
}

/// Renames a profile and every instance's mention of it, in one transaction.
pub fn rename(db: &Db, from: &str, to: &str) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.rename_profile(from, to);
    }
    db.tx(|tx| {
        let n = tx
            .execute(
                "UPDATE profiles SET name = ?2 WHERE name = ?1",
                params![from, to],
            )
            .map_err(|e| unique(e, Named::new("profile", to)))?;
        if n == 0 {
            return Err(StoreError::not_found(Named::new("profile", from)));
        }
        rename_mentions_in(tx, from, to)
    })
}

/// Renames every instance's mention of profile `from` to `to`.
pub(crate) fn rename_mentions_in(
    tx: &rusqlite::Connection,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    let mut rows: Vec<(String, String)> = Vec::new();
    {
        let mut st = tx.prepare("SELECT name, profiles FROM instances")?;
        let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for x in it {
            rows.push(x?);
        }
    }
    for (inst, profs) in rows {
        let mut v: Vec<String> = decode("instances", &inst, "profiles", &profs)?;
        if v.iter().any(|p| p == from) {
            for p in v.iter_mut() {
                if p == from {
                    *p = to.to_string();
                }
            }
            tx.execute(
                "UPDATE instances SET profiles = ?2 WHERE name = ?1",
                params![inst, encode("instances", &inst, "profiles", &v)?],
            )?;
        }
    }
    Ok(())
}
