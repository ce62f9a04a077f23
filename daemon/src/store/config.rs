//! Server configuration (`config`): one row per key. Global: every member of a cluster answers
//! `GET /1.0` with the same keys.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use crate::store::db::Db;
use crate::store::error::StoreError;

/// All keys.
pub fn all(db: &Db) -> Result<BTreeMap<String, String>, StoreError> {
    db.run(|c| all_in(c))
}

/// One key.
pub fn get(db: &Db, key: &str) -> Result<Option<String>, StoreError> {
    db.run(|c| {
        Ok(c.query_row(
            "SELECT value FROM config WHERE key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()?)
    })
}

/// The keys that are each member's own in a cluster (where it listens, which of its
/// volumes holds images and backups), as LXD scopes them; every other key is the cluster's.
pub const MEMBER_KEYS: &[&str] = &[
    "core.https_address",
    "storage.images_volume",
    "storage.backups_volume",
];

/// Whether `key` is a member's own.
pub fn is_member_key(key: &str) -> bool {
    MEMBER_KEYS.contains(&key)
}

/// Replaces the whole config in one transaction. When clustered, the cluster's keys are
/// written to the cluster and this member's own keys here.
pub fn replace(db: &Db, cfg: &BTreeMap<String, String>) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        let global = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            m.iter()
                .filter(|(k, _)| !is_member_key(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        r.replace_config(&global(&all(db)?), &global(cfg))?;
        return db.tx(|tx| {
            for k in MEMBER_KEYS {
                match cfg.get(*k) {
                    Some(v) => set_in(tx, k, v)?,
                    None => delete_in(tx, k)?,
                }
            }
            Ok(())
        });
    }
    db.tx(|tx| {
        tx.execute("DELETE FROM config", [])?;
        for (k, v) in cfg {
            set_in(tx, k, v)?;
        }
        Ok(())
    })
}

/// Every key, in a transaction.
pub(crate) fn all_in(c: &rusqlite::Connection) -> Result<BTreeMap<String, String>, StoreError> {
    let mut st = c.prepare("SELECT key, value FROM config ORDER BY key")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Sets one key.
pub(crate) fn set_in(c: &rusqlite::Connection, k: &str, v: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO config (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![k, v],
    )?;
    Ok(())
}

/// Removes one key.
pub(crate) fn delete_in(c: &rusqlite::Connection, k: &str) -> Result<(), StoreError> {
    c.execute("DELETE FROM config WHERE key = ?1", params![k])?;
    Ok(())
}
