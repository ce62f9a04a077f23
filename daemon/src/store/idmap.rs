//! `idmap_ranges`: which host id range each instance on this host holds. Node-local: the ids
//! are this host's subordinate ids, so another host's claims say nothing about them.

use rusqlite::params;

use crate::store::db::Db;
use crate::store::error::StoreError;

/// Claims a base for new instance `name`: `pick` sees every base in use (claims, and
/// instances' own `volatile.idmap.base` from before the claims table) and returns a free one.
/// Reading the bases and recording the pick are one transaction under the database's one lock,
/// so two concurrent claimers never get the same base. `None` when `pick` finds none.
pub fn claim(
    db: &Db,
    name: &str,
    blocks: u64,
    pick: impl FnOnce(&[u64]) -> Option<u64>,
) -> Result<Option<u64>, StoreError> {
    db.tx(|tx| {
        // A claim this name left behind without an instance (a failed create whose release
        // failed) is stale.
        tx.execute(
            "DELETE FROM idmap_ranges WHERE instance = ?1
             AND NOT EXISTS (SELECT 1 FROM instances WHERE name = ?1)",
            params![name],
        )?;
        // An instance whose config does not decode might hold any range: claiming while one
        // exists could hand its ids to a second instance.
        let corrupt: Option<String> = {
            let mut st = tx.prepare("SELECT name FROM instances
                 WHERE CASE WHEN json_valid(config) THEN json_type(config) != 'object' ELSE 1 END",)?;
            let mut rows = st.query([])?;
            rows.next()?.map(|r| r.get(0)).transpose()?
        };
        if let Some(row) = corrupt {
            return Err(StoreError::Corrupt {
                table: "instances",
                row,
                column: "config",
                reason: "not a JSON object; its id range is unknown, so no range can be claimed".into(),
            });
        }
        let mut used: Vec<u64> = Vec::new();
        {
            let mut st = tx.prepare(
                "SELECT base FROM idmap_ranges
                 UNION SELECT CAST(json_extract(config, '$.\"volatile.idmap.base\"') AS INTEGER)
                 FROM instances WHERE json_extract(config, '$.\"volatile.idmap.base\"') IS NOT NULL",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                if let Ok(b) = u64::try_from(r.get::<_, i64>(0)?) {
                    used.push(b);
                }
            }
        }
        used.sort_unstable();
        let Some(base) = pick(&used) else {
            return Ok(None);
        };
        let base_i = i64::try_from(base).map_err(|_| StoreError::Encode {
            table: "idmap_ranges",
            row: name.to_string(),
            column: "base",
            reason: format!("{base} is out of range"),
        })?;
        // A range of several 65536-id blocks (security.idmap.size) is one row per block, so
        // that every other claimer sees each block taken.
        for k in 0..blocks.max(1) {
            tx.execute(
                "INSERT INTO idmap_ranges (base, instance) VALUES (?1, ?2)",
                params![base_i + (k as i64) * 65536, name],
            )?;
        }
        Ok(Some(base))
    })
}

/// Releases `name`'s claim on `base` if no instance of that name was recorded (the create
/// failed); once the instance exists the claim stays with it.
pub fn release_unused(db: &Db, name: &str, base: u64) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "DELETE FROM idmap_ranges WHERE instance = ?1 AND base >= ?2
             AND NOT EXISTS (SELECT 1 FROM instances WHERE name = ?1)",
            params![name, base as i64],
        )?;
        Ok(())
    })
}

/// Every claim: (base, instance), by base.
pub fn all(db: &Db) -> Result<Vec<(u64, String)>, StoreError> {
    db.run(|c| {
        let mut st = c.prepare("SELECT base, instance FROM idmap_ranges ORDER BY base")?;
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let base: i64 = r.get(0)?;
            let owner: String = r.get(1)?;
            let base = u64::try_from(base).map_err(|e| StoreError::Corrupt {
                table: "idmap_ranges",
                row: owner.clone(),
                column: "base",
                reason: e.to_string(),
            })?;
            out.push((base, owner));
        }
        Ok(out)
    })
}
