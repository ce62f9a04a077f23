//! Projects' own fields (`projects`): global. silo has LXD's default project only, whose
//! description is what a caller may change.

use rusqlite::{params, OptionalExtension};

use crate::store::db::Db;
use crate::store::error::StoreError;

/// A project's stored description, `None` when it was never set.
pub fn description(db: &Db, name: &str) -> Result<Option<String>, StoreError> {
    db.run(|c| {
        Ok(c.query_row(
            "SELECT description FROM projects WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()?)
    })
}

/// Sets a project's description.
pub fn set_description(db: &Db, name: &str, description: &str) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute(
            "INSERT INTO projects (name, description) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET description = excluded.description",
            params![name, description],
        )?;
        Ok(())
    })
}
