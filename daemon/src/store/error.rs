//! The store's one error. Messages of `NotFound` and `Conflict` are the texts the API has
//! always answered with (`instance "x" not found`), so mapping them to a status keeps them.

use std::fmt;

/// Where a named record lives, when its name alone does not say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A top-level record (an instance, a profile, ...).
    Top,
    /// A record of an instance (a snapshot, a backup): `snapshot "s" of instance "c1"`.
    OfInstance(String),
    /// A record of a pool (a custom volume): `custom volume "v" ... in pool "p"`.
    InPool(String),
}

/// A record's kind and name, rendered as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// "instance", "profile", "storage pool", ...
    pub what: &'static str,
    /// The record's name.
    pub name: String,
    /// Where it lives.
    pub scope: Scope,
}

impl Named {
    /// A top-level record.
    pub fn new(what: &'static str, name: impl Into<String>) -> Named {
        Named {
            what,
            name: name.into(),
            scope: Scope::Top,
        }
    }

    /// A record of an instance.
    pub fn of_instance(what: &'static str, name: impl Into<String>, instance: &str) -> Named {
        Named {
            what,
            name: name.into(),
            scope: Scope::OfInstance(instance.to_string()),
        }
    }

    /// A record of a pool.
    pub fn in_pool(what: &'static str, name: impl Into<String>, pool: &str) -> Named {
        Named {
            what,
            name: name.into(),
            scope: Scope::InPool(pool.to_string()),
        }
    }

    fn render(&self, f: &mut fmt::Formatter<'_>, verdict: &str) -> fmt::Result {
        let Named { what, name, scope } = self;
        match scope {
            Scope::Top => write!(f, "{what} {name:?} {verdict}"),
            Scope::OfInstance(i) => write!(f, "{what} {name:?} of instance {i:?} {verdict}"),
            Scope::InPool(p) => write!(f, "{what} {name:?} {verdict} in pool {p:?}"),
        }
    }
}

/// The record is missing (404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub Named);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.render(f, "not found")
    }
}

/// The record exists already (409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken(pub Named);

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.render(f, "already exists")
    }
}

/// Every way the store fails.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The file.
        path: String,
        /// The error.
        source: rusqlite::Error,
    },
    /// The file is newer than this silod.
    #[error("database {path} has schema version {found}, newer than this silod knows ({known}); refusing to start: run the silod that wrote it, or a newer one")]
    TooNew {
        /// The file.
        path: String,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
    /// A lock was poisoned by a panic.
    #[error("database lock poisoned")]
    Poisoned,
    /// A stored column does not decode. Never read as a default: writing that default back
    /// would lose what the row held (an instance's `volatile.idmap.base`, say).
    #[error("database row {row:?} of table {table}: column {column} is corrupt ({reason}); refusing to use or overwrite it")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row's key.
        row: String,
        /// The column.
        column: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A value does not encode for storage.
    #[error("encoding column {column} of {table} row {row:?}: {reason}")]
    Encode {
        /// The table.
        table: &'static str,
        /// The row's key.
        row: String,
        /// The column.
        column: &'static str,
        /// What the encoder said.
        reason: String,
    },
    /// A running-state write named a key that is not running state.
    #[error("instance {instance:?}: {key:?} is not a volatile key; only volatile keys are this host's running state")]
    NotVolatile {
        /// The instance.
        instance: String,
        /// The key.
        key: String,
    },
    /// No such record.
    #[error("{0}")]
    NotFound(Missing),
    /// The cluster's database (etcd) failed or did not answer.
    #[error("{0}")]
    Cluster(String),
    /// The record exists already.
    #[error("{0}")]
    Conflict(Taken),
}

impl StoreError {
    /// `what "name" not found`.
    pub fn not_found(n: Named) -> StoreError {
        StoreError::NotFound(Missing(n))
    }

    /// `what "name" already exists`.
    pub fn conflict(n: Named) -> StoreError {
        StoreError::Conflict(Taken(n))
    }
}

/// Inside a store function the path is not at hand; [`crate::store::db::Db::run`] fills it in.
impl From<rusqlite::Error> for StoreError {
    fn from(source: rusqlite::Error) -> Self {
        StoreError::Sqlite {
            path: String::new(),
            source,
        }
    }
}

/// A JSON column of `table`'s row `row`, decoded; never defaulted.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    row: &str,
    column: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table,
        row: row.to_string(),
        column,
        reason: e.to_string(),
    })
}

/// A value as a JSON column.
pub(crate) fn encode<T: serde::Serialize>(
    table: &'static str,
    row: &str,
    column: &'static str,
    v: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Encode {
        table,
        row: row.to_string(),
        column,
        reason: e.to_string(),
    })
}

/// A primary-key clash as `Conflict`, any other failure as itself.
pub(crate) fn unique(e: rusqlite::Error, n: Named) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::conflict(n)
        }
        _ => e.into(),
    }
}
