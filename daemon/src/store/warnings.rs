//! `warnings`: LXD's warnings, one row per (project, entity, type), counted each time seen.

use rusqlite::{params, OptionalExtension, Row};

use crate::model::warning::{WarningRecord, WarningStatus, WarningType};
use crate::store::db::Db;
use crate::store::error::{Named, StoreError};

const COLUMNS: &str = "uuid, project, entity_url, type_code, last_message, count, \
                       first_seen_at, last_seen_at, status";

fn row(r: &Row<'_>) -> Result<WarningRecord, StoreError> {
    let uuid: String = r.get(0)?;
    let code: i64 = r.get(3)?;
    let status: i64 = r.get(8)?;
    let corrupt = |column: &'static str, v: i64| StoreError::Corrupt {
        table: "warnings",
        row: uuid.clone(),
        column,
        reason: format!("unknown code {v}"),
    };
    Ok(WarningRecord {
        kind: WarningType::from_code(code).ok_or_else(|| corrupt("type_code", code))?,
        status: WarningStatus::from_code(status).ok_or_else(|| corrupt("status", status))?,
        project: r.get(1)?,
        entity_url: r.get(2)?,
        last_message: r.get(4)?,
        count: r.get(5)?,
        first_seen_at: r.get(6)?,
        last_seen_at: r.get(7)?,
        uuid,
    })
}

/// Every warning, oldest first.
pub fn all(db: &Db) -> Result<Vec<WarningRecord>, StoreError> {
    db.run(|c| {
        crate::store::db::rows(
            c,
            &format!("SELECT {COLUMNS} FROM warnings ORDER BY first_seen_at, uuid"),
            [],
            row,
        )
    })
}

/// One warning by UUID.
pub fn get(db: &Db, uuid: &str) -> Result<WarningRecord, StoreError> {
    db.run(|c| {
        crate::store::db::rows(
            c,
            &format!("SELECT {COLUMNS} FROM warnings WHERE uuid = ?1"),
            params![uuid],
            row,
        )?
        .pop()
        .ok_or_else(|| StoreError::not_found(Named::new("warning", uuid)))
    })
}

/// Records that a warning was seen (LXD's `UpsertWarning`): a new row, or the existing one's
/// count, time and message updated, and a resolved one made new again. Returns its UUID.
pub fn upsert(
    db: &Db,
    project: &str,
    entity_url: &str,
    kind: WarningType,
    message: &str,
    now: &str,
    new_uuid: &str,
) -> Result<String, StoreError> {
    db.tx(|tx| {
        let found: Option<String> = tx
            .query_row(
                "SELECT uuid FROM warnings WHERE project = ?1 AND entity_url = ?2 AND type_code = ?3",
                params![project, entity_url, kind.code()],
                |r| r.get(0),
            )
            .optional()?;
        match found {
            Some(uuid) => {
                tx.execute(
                    "UPDATE warnings SET count = count + 1, last_message = ?2, last_seen_at = ?3,
                        updated_at = ?3,
                        status = CASE status WHEN ?4 THEN ?5 ELSE status END
                     WHERE uuid = ?1",
                    params![
                        uuid,
                        message,
                        now,
                        WarningStatus::Resolved.code(),
                        WarningStatus::New.code()
                    ],
                )?;
                Ok(uuid)
            }
            None => {
                tx.execute(
                    "INSERT INTO warnings (uuid, project, entity_url, type_code, last_message,
                        count, first_seen_at, last_seen_at, updated_at, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6, ?6, ?7)",
                    params![
                        new_uuid,
                        project,
                        entity_url,
                        kind.code(),
                        message,
                        now,
                        WarningStatus::New.code()
                    ],
                )?;
                Ok(new_uuid.to_string())
            }
        }
    })
}

/// Sets a warning's status.
pub fn set_status(db: &Db, uuid: &str, status: WarningStatus, now: &str) -> Result<(), StoreError> {
    db.run(|c| {
        let n = c.execute(
            "UPDATE warnings SET status = ?2, updated_at = ?3 WHERE uuid = ?1",
            params![uuid, status.code(), now],
        )?;
        if n == 0 {
            return Err(StoreError::not_found(Named::new("warning", uuid)));
        }
        Ok(())
    })
}

/// Resolves the unresolved warnings of `kind` (LXD's `ResolveWarningsByLocalNodeAndType`);
/// answers how many.
pub fn resolve_type(db: &Db, kind: WarningType, now: &str) -> Result<usize, StoreError> {
    db.run(|c| {
        Ok(c.execute(
            "UPDATE warnings SET status = ?2, updated_at = ?3 WHERE type_code = ?1 AND status != ?2",
            params![kind.code(), WarningStatus::Resolved.code(), now],
        )?)
    })
}

/// Deletes resolved warnings last updated before `before` (RFC 3339, compared as text: silo
/// writes every time in UTC with the same layout).
pub fn prune_resolved(db: &Db, before: &str) -> Result<usize, StoreError> {
    db.run(|c| {
        Ok(c.execute(
            "DELETE FROM warnings WHERE status = ?1 AND updated_at < ?2",
            params![WarningStatus::Resolved.code(), before],
        )?)
    })
}

/// Deletes a warning.
pub fn delete(db: &Db, uuid: &str) -> Result<(), StoreError> {
    db.run(|c| {
        let n = c.execute("DELETE FROM warnings WHERE uuid = ?1", params![uuid])?;
        if n == 0 {
            return Err(StoreError::not_found(Named::new("warning", uuid)));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_count_resolve_and_come_back_new() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        let k = WarningType::MissingIpvlan;
        let u = upsert(&db, "", "", k, "first", "2026-01-01T00:00:00Z", "u1").expect("new");
        assert_eq!(u, "u1");
        let u2 = upsert(&db, "", "", k, "again", "2026-01-02T00:00:00Z", "u2").expect("seen");
        assert_eq!(u2, "u1", "the same warning, counted");
        let w = get(&db, "u1").expect("get");
        assert_eq!((w.count, w.last_message.as_str()), (2, "again"));
        assert_eq!(w.first_seen_at, "2026-01-01T00:00:00Z");
        set_status(
            &db,
            "u1",
            WarningStatus::Acknowledged,
            "2026-01-02T00:00:01Z",
        )
        .expect("ack");
        upsert(&db, "", "", k, "third", "2026-01-03T00:00:00Z", "u3").expect("seen");
        assert_eq!(
            get(&db, "u1").expect("get").status,
            WarningStatus::Acknowledged
        );
        assert_eq!(
            resolve_type(&db, k, "2026-01-04T00:00:00Z").expect("resolve"),
            1
        );
        assert_eq!(get(&db, "u1").expect("get").status, WarningStatus::Resolved);
        upsert(&db, "", "", k, "back", "2026-01-05T00:00:00Z", "u4").expect("seen");
        let w = get(&db, "u1").expect("get");
        assert_eq!((w.status, w.count), (WarningStatus::New, 4));
        resolve_type(&db, k, "2026-01-06T00:00:00Z").expect("resolve");
        assert_eq!(
            prune_resolved(&db, "2026-01-05T00:00:00Z").expect("prune"),
            0
        );
        assert_eq!(
            prune_resolved(&db, "2026-01-07T00:00:00Z").expect("prune"),
            1
        );
        assert!(matches!(get(&db, "u1"), Err(StoreError::NotFound(_))));
        assert!(matches!(delete(&db, "u1"), Err(StoreError::NotFound(_))));
    }
}
