//! The database: one module per table over rusqlite. Decoding never defaults: a column that
//! does not decode is [`StoreError::Corrupt`] naming table, row and column, and a row that
//! does not decode is never written over. SQL lives in this layer only.
//!
//! # Global and node-local records
//!
//! SQLite is the single-host store; on a cluster member, the global records' writes go to etcd
//! ([`replica`]) and SQLite keeps the watch-fed copy they are read from. The records split:
//!
//! - **Global** (one truth for every host): [`profiles`], [`images`] and their aliases, the
//!   trust store ([`certificates`]) and server [`config`] (but for each member's own keys,
//!   [`config::MEMBER_KEYS`]); their write functions are the interface both engines serve.
//!   Instances' definitions ([`instances`], [`snapshots`], [`backups`]) stay with the member
//!   that holds the instance (every call about it is forwarded there; the cluster records its
//!   placement), and pools and networks are each member's own, made from cluster-wide
//!   definitions (`service/cluster/definitions.rs`). [`GlobalStore`] lists them.
//! - **Node-local** (true of this host only): [`idmap`] (the host id ranges instances hold:
//!   they are this host's subordinate ids) and [`local`] (which images are unpacked into which
//!   pool here), behind [`LocalStore`]. These stay in SQLite on each host whatever serves the global records.
//! - **Mixed, not yet split**: an instance's `volatile.*` config keys (its id map, the MACs and
//!   host interface names picked at start, the last power state) describe the instance where it
//!   runs. They still live in the instance's `config` column, because snapshots, backups,
//!   exports and `silo config show` read them from there, and moving them is a schema change
//!   with every reader to follow. At run time they (and `last_used_at`) are written only
//!   through [`local::set_volatile`] ([`LocalStore::set_volatile_keys`]), which refuses any
//!   other key, so the split has one place to start from. (A PUT of the whole instance still
//!   carries them through [`instances::update`], as LXD's does.)

pub mod backups;
pub mod certificates;
pub mod config;
pub mod db;
pub mod error;
pub mod etcd;
pub mod global;
pub mod idmap;
pub mod images;
pub mod instances;
pub mod local;
pub mod networks;
pub mod pools;
pub mod profiles;
pub mod projects;
pub mod replica;
pub mod snapshots;
pub mod volume_backups;
pub mod volume_snapshots;
pub mod warnings;
pub mod writes;

pub use error::StoreError;
pub use global::{GlobalStore, LocalStore};

#[cfg(test)]
mod tests;

/// For tests above the store: damage a stored column as a broken file or a bad hand edit
/// would, to check what reads and writes of that row then do.
#[cfg(test)]
pub(crate) fn damage(db: &db::Db, table: &str, column: &str, name: &str, text: &str) {
    db.with(|c| {
        c.execute(
            &format!("UPDATE {table} SET {column} = ?2 WHERE name = ?1"),
            rusqlite::params![name, text],
        )
    })
    .expect("damage");
}

/// For tests above the store: a column's stored text, as it is on disk.
#[cfg(test)]
pub(crate) fn raw_column(db: &db::Db, table: &str, column: &str, name: &str) -> String {
    db.with(|c| {
        c.query_row(
            &format!("SELECT {column} FROM {table} WHERE name = ?1"),
            rusqlite::params![name],
            |r| r.get(0),
        )
    })
    .expect("raw column")
}
