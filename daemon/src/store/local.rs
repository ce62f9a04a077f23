//! Node-local records: what is true of this host only, and so never goes to a cluster-wide
//! store. `image_volumes` (an image unpacked into a pool here) lives in this module; the id
//! ranges have their own, [`crate::store::idmap`].

use rusqlite::params;

use crate::store::db::Db;
use crate::store::error::StoreError;

/// Fingerprints of the images unpacked in `pool` on this host.
pub fn image_volumes(db: &Db, pool: &str) -> Result<Vec<String>, StoreError> {
    db.run(|c| {
        let mut st = c.prepare(
            "SELECT fingerprint FROM image_volumes WHERE pool = ?1 ORDER BY fingerprint",
        )?;
        let rows = st.query_map(params![pool], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })
}

/// Records that `fp` is unpacked in `pool`.
pub fn add_image_volume(db: &Db, pool: &str, fp: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "INSERT INTO image_volumes (pool, fingerprint) VALUES (?1, ?2)",
            params![pool, fp],
        )?;
        Ok(())
    })
}

/// Forgets that `fp` is unpacked in `pool`.
pub fn remove_image_volume(db: &Db, pool: &str, fp: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "DELETE FROM image_volumes WHERE pool = ?1 AND fingerprint = ?2",
            params![pool, fp],
        )?;
        Ok(())
    })
}
