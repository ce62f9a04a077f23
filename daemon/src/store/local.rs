//! Node-local records: what is true of this host only, and so never goes to a cluster-wide
//! store. `image_volumes` (an image unpacked into a pool here) and instances' running state
//! (their `volatile.*` keys and `last_used_at`) are written here; the id ranges have their
//! own module, [`crate::store::idmap`].

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

/// Sets an instance's running state on this host: `volatile.*` keys (an empty value removes
/// one) and optionally `last_used_at`, in one transaction. Any other key is refused: the
/// instance's definition changes through [`crate::store::instances::update`] only. The keys
/// still live in the instance's `config` column (see `store/mod.rs`); this is their one
/// writer at run time, so moving them to a table of their own changes this function alone.
pub fn set_volatile(
    db: &Db,
    name: &str,
    keys: &[(&str, &str)],
    last_used: Option<&str>,
) -> Result<(), StoreError> {
    if let Some((k, _)) = keys.iter().find(|(k, _)| !k.starts_with("volatile.")) {
        return Err(StoreError::NotVolatile {
            instance: name.to_string(),
            key: (*k).to_string(),
        });
    }
    crate::store::instances::set_keys(db, name, keys, last_used)
}
