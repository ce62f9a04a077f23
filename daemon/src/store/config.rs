//! Server configuration (`config`): one row per key. Global: every member of a cluster answers
//! `GET /1.0` with the same keys.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use crate::store::db::Db;
use crate::store::error::StoreError;

/// All keys.
pub fn all(db: &Db) -> Result<BTreeMap<String, String>, StoreError> {
    db.run(|c| {
        let mut st = c.prepare("SELECT key, value FROM config ORDER BY key")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })
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

/// Replaces the whole config in one transaction.
pub fn replace(db: &Db, cfg: &BTreeMap<String, String>) -> Result<(), StoreError> {
    db.tx(|tx| {
        tx.execute("DELETE FROM config", [])?;
        for (k, v) in cfg {
            tx.execute(
                "INSERT INTO config (key, value) VALUES (?1, ?2)",
                params![k, v],
            )?;
        }
        Ok(())
    })
}
