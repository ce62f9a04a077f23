//! The database: rusqlite in the state dir, WAL, versioned migrations applied at start.
//!
//! All writes go through one connection behind one lock (the one writer path); the schema
//! version is SQLite's `user_version`. A database written by a newer silod is refused.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::store::error::StoreError;

/// Schema migrations, in order; entry N moves the schema from version N to N+1.
/// Never edit a shipped entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: server configuration.
    "CREATE TABLE config (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);",
    // 2: images, aliases, storage pools, image volumes, profiles, instances.
    "CREATE TABLE images (
        fingerprint TEXT PRIMARY KEY NOT NULL,
        filename TEXT NOT NULL,
        size INTEGER NOT NULL,
        public INTEGER NOT NULL DEFAULT 0,
        architecture TEXT NOT NULL,
        type TEXT NOT NULL DEFAULT 'container',
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        uploaded_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL DEFAULT '',
        auto_update INTEGER NOT NULL DEFAULT 0,
        cached INTEGER NOT NULL DEFAULT 0,
        split INTEGER NOT NULL DEFAULT 0,
        compression TEXT NOT NULL DEFAULT '.tar',
        properties TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[\"default\"]'
     );
     CREATE TABLE image_aliases (
        name TEXT PRIMARY KEY NOT NULL,
        fingerprint TEXT NOT NULL REFERENCES images(fingerprint) ON DELETE CASCADE,
        description TEXT NOT NULL DEFAULT ''
     );
     CREATE TABLE storage_pools (
        name TEXT PRIMARY KEY NOT NULL,
        driver TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}'
     );
     CREATE TABLE image_volumes (
        pool TEXT NOT NULL REFERENCES storage_pools(name),
        fingerprint TEXT NOT NULL,
        PRIMARY KEY (pool, fingerprint)
     );
     CREATE TABLE custom_volumes (
        pool TEXT NOT NULL REFERENCES storage_pools(name),
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (pool, name)
     );
     CREATE TABLE profiles (
        name TEXT PRIMARY KEY NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}'
     );
     CREATE TABLE instances (
        name TEXT PRIMARY KEY NOT NULL,
        type TEXT NOT NULL DEFAULT 'container',
        architecture TEXT NOT NULL,
        ephemeral INTEGER NOT NULL DEFAULT 0,
        stateful INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[]',
        pool TEXT NOT NULL REFERENCES storage_pools(name)
     );",
    // 3: networks.
    "CREATE TABLE networks (
        name TEXT PRIMARY KEY NOT NULL,
        type TEXT NOT NULL DEFAULT 'bridge',
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}'
     );",
    // 4: instance snapshots.
    "CREATE TABLE snapshots (
        instance TEXT NOT NULL REFERENCES instances(name) ON DELETE CASCADE ON UPDATE CASCADE,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[]',
        architecture TEXT NOT NULL,
        PRIMARY KEY (instance, name)
     );",
    // 5: instance backups (the tarballs are files under <state>/backups/<instance>/).
    "CREATE TABLE backups (
        instance TEXT NOT NULL REFERENCES instances(name) ON DELETE CASCADE ON UPDATE CASCADE,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL DEFAULT '',
        instance_only INTEGER NOT NULL DEFAULT 0,
        optimized_storage INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (instance, name)
     );",
    // 6: instances' id ranges, one row per claim, taken in the same transaction that picks
    // the base (before a create awaits anything), so two creates can never pick the same one.
    // Not a foreign key: a create claims its range before its instance row exists. The
    // triggers carry a claim along when its instance is renamed and drop it when deleted.
    "CREATE TABLE idmap_ranges (
        base INTEGER PRIMARY KEY NOT NULL,
        instance TEXT NOT NULL UNIQUE
     );
     INSERT OR IGNORE INTO idmap_ranges (base, instance)
        SELECT CAST(json_extract(config, '$.\"volatile.idmap.base\"') AS INTEGER), name
        FROM instances
        WHERE json_extract(config, '$.\"volatile.idmap.base\"') IS NOT NULL
        ORDER BY created_at, name;
     CREATE TRIGGER idmap_ranges_follow_rename AFTER UPDATE OF name ON instances BEGIN
        UPDATE idmap_ranges SET instance = NEW.name WHERE instance = OLD.name;
     END;
     CREATE TRIGGER idmap_ranges_follow_delete AFTER DELETE ON instances BEGIN
        DELETE FROM idmap_ranges WHERE instance = OLD.name;
     END;",
    // 7: where a cached or auto-updated image came from (JSON of `UpdateSource`, '' if none).
    "ALTER TABLE images ADD COLUMN update_source TEXT NOT NULL DEFAULT '';",
    // 8: the trust store: certificates of clients allowed over TLS (LXD's `certificates`).
    "CREATE TABLE certificates (
        fingerprint TEXT PRIMARY KEY NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        certificate TEXT NOT NULL
     );",
    // 9: custom volumes' snapshots; they follow their volume's rename and go with its delete.
    "CREATE TABLE custom_volume_snapshots (
        pool TEXT NOT NULL,
        volume TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (pool, volume, name),
        FOREIGN KEY (pool, volume) REFERENCES custom_volumes(pool, name)
            ON DELETE CASCADE ON UPDATE CASCADE
     );",
    // 10: custom volumes' backups (tarballs under <state>/volume-backups/<pool>/<volume>/).
    "CREATE TABLE custom_volume_backups (
        pool TEXT NOT NULL,
        volume TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL DEFAULT '',
        volume_only INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (pool, volume, name),
        FOREIGN KEY (pool, volume) REFERENCES custom_volumes(pool, name)
            ON DELETE CASCADE ON UPDATE CASCADE
     );",
    // 11: an instance may hold several 65536-id blocks (security.idmap.size): one row each.
    "CREATE TABLE idmap_ranges_blocks (
        base INTEGER PRIMARY KEY NOT NULL,
        instance TEXT NOT NULL
     );
     INSERT INTO idmap_ranges_blocks (base, instance) SELECT base, instance FROM idmap_ranges;
     DROP TRIGGER idmap_ranges_follow_rename;
     DROP TRIGGER idmap_ranges_follow_delete;
     DROP TABLE idmap_ranges;
     ALTER TABLE idmap_ranges_blocks RENAME TO idmap_ranges;
     CREATE INDEX idmap_ranges_by_instance ON idmap_ranges (instance);
     CREATE TRIGGER idmap_ranges_follow_rename AFTER UPDATE OF name ON instances BEGIN
        UPDATE idmap_ranges SET instance = NEW.name WHERE instance = OLD.name;
     END;
     CREATE TRIGGER idmap_ranges_follow_delete AFTER DELETE ON instances BEGIN
        DELETE FROM idmap_ranges WHERE instance = OLD.name;
     END;",
    // 12: warnings (LXD's /1.0/warnings): one row per (project, entity, type), counted.
    "CREATE TABLE warnings (
        uuid TEXT PRIMARY KEY NOT NULL,
        project TEXT NOT NULL DEFAULT '',
        entity_url TEXT NOT NULL DEFAULT '',
        type_code INTEGER NOT NULL,
        last_message TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        status INTEGER NOT NULL,
        UNIQUE (project, entity_url, type_code)
     );",
    // 13: projects' own fields (silo has the default project only: its description).
    "CREATE TABLE projects (name TEXT PRIMARY KEY NOT NULL, description TEXT NOT NULL);",
    // 14: the etcd revision this host's copy of the cluster's global records is at (0: no
    // copy; the next watch starts with a full read). See `store/replica.rs`.
    "CREATE TABLE replica (id INTEGER PRIMARY KEY CHECK (id = 0), revision INTEGER NOT NULL);
     INSERT INTO replica (id, revision) VALUES (0, 0);",
];

/// The error this module had before the store had its own; kept so older call sites read.
pub use crate::store::error::StoreError as DbError;

/// The handle; clone freely.
#[derive(Debug, Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: String,
    /// When clustered: where the global records' writes go (etcd), this database keeping
    /// the copy they are read from.
    replica: Arc<std::sync::RwLock<Replicated>>,
}

/// Where this database's global records are written.
#[derive(Debug, Default, Clone)]
enum Replicated {
    /// Here: a standalone host.
    #[default]
    Standalone,
    /// A member that has not reached its cluster yet (just started): global writes are
    /// refused, never made here alone.
    Pending,
    /// To the cluster.
    Joined(Arc<dyn crate::store::writes::GlobalWrites>),
}

/// The schema version this silod writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

impl Db {
    /// Opens (creating) the database and migrates it.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let shown = path.display().to_string();
        let e = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(e)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(e)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(e)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(e)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(e)?;
        let known = schema_version();
        if found > known {
            return Err(StoreError::TooNew {
                path: shown,
                found,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = conn.transaction().map_err(e)?;
            tx.execute_batch(sql).map_err(e)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(e)?;
            tx.commit().map_err(e)?;
            tracing::info!(version = i + 1, "applied database migration");
        }
        // The package's preinst reads the schema version from the file's header (it refuses a
        // downgrade below it), which WAL mode leaves stale until a checkpoint.
        if found < known {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(e)?;
        }
        // Claims of creates that never finished (silod stopped mid-create): nothing is being
        // created while the database opens.
        let dropped = conn
            .execute(
                "DELETE FROM idmap_ranges WHERE instance NOT IN (SELECT name FROM instances)",
                [],
            )
            .map_err(e)?;
        if dropped > 0 {
            tracing::info!(dropped, "released the id ranges of unfinished creates");
        }
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path: shown,
            replica: Arc::default(),
        })
    }

    /// The cluster's global records, when this host is a member: the global writes of
    /// `store/` go there instead of to SQLite. An error while a member has not reached its
    /// cluster yet.
    pub fn replica(
        &self,
    ) -> Result<Option<Arc<dyn crate::store::writes::GlobalWrites>>, StoreError> {
        match &*self.replica.read().unwrap_or_else(|p| p.into_inner()) {
            Replicated::Standalone => Ok(None),
            Replicated::Pending => Err(StoreError::Cluster(
                "this member has not reached its cluster's database yet: try again shortly".into(),
            )),
            Replicated::Joined(r) => Ok(Some(r.clone())),
        }
    }

    /// Whether this host is standalone (its global records are its own).
    pub fn is_standalone(&self) -> bool {
        matches!(
            &*self.replica.read().unwrap_or_else(|p| p.into_inner()),
            Replicated::Standalone
        )
    }

    /// Sets (joined) or clears (standalone again) where global writes go.
    pub fn set_replica(&self, r: Option<Arc<dyn crate::store::writes::GlobalWrites>>) {
        *self.replica.write().unwrap_or_else(|p| p.into_inner()) = match r {
            Some(r) => Replicated::Joined(r),
            None => Replicated::Standalone,
        };
    }

    /// A member starting: global writes wait for its cluster (refused until then).
    pub fn set_replica_pending(&self) {
        *self.replica.write().unwrap_or_else(|p| p.into_inner()) = Replicated::Pending;
    }

    /// Runs `f` with the connection (the single writer path). For store/ only: SQL lives there.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.run(|c| f(c).map_err(StoreError::from))
    }

    /// Runs `f` with the connection, its SQLite errors naming this database's file.
    pub(crate) fn run<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&mut c).map_err(|e| match e {
            StoreError::Sqlite { path, source } if path.is_empty() => StoreError::Sqlite {
                path: self.path.clone(),
                source,
            },
            e => e,
        })
    }

    /// Runs `f` in one transaction, committed only if it succeeds: reads and the writes that
    /// depend on them cannot interleave with another writer.
    pub(crate) fn tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run(|c| {
            let tx = c.transaction()?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })
    }
}

/// Every row `sql` selects, decoded by `row`: the one read loop every table shares.
pub(crate) fn rows<T>(
    c: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    row: fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut st = c.prepare(sql)?;
    let mut rows = st.query(args)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row(r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_and_refuses_newer() {
        let t = tempfile::tempdir().expect("tmp");
        let p = t.path().join("silo.db");
        let db = Db::open(&p).expect("open");
        db.with(|c| c.execute("INSERT INTO config (key, value) VALUES ('core.x', '1')", []))
            .expect("write");
        drop(db);
        let db = Db::open(&p).expect("reopen");
        let kept: String = db
            .with(|c| {
                c.query_row("SELECT value FROM config WHERE key = 'core.x'", [], |r| {
                    r.get(0)
                })
            })
            .expect("read back");
        assert_eq!(kept, "1");
        let mode: String = db
            .with(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
            .expect("mode");
        assert_eq!(mode, "wal");
        db.with(|c| c.pragma_update(None, "user_version", schema_version() + 1))
            .expect("bump");
        drop(db);
        let err = Db::open(&p).unwrap_err().to_string();
        assert!(err.contains("newer than this silod"), "{err}");
    }
}
