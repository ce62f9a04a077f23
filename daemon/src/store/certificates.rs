//! `certificates`: the trust store (global: every member trusts the same clients).

use rusqlite::{params, Row};

use crate::model::trust::CertRecord;
use crate::store::db::Db;
use crate::store::error::{unique, Named, StoreError};

fn row(r: &Row<'_>) -> Result<CertRecord, StoreError> {
    Ok(CertRecord {
        fingerprint: r.get(0)?,
        kind: r.get(1)?,
        name: r.get(2)?,
        certificate: r.get(3)?,
    })
}

fn select(
    c: &rusqlite::Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<CertRecord>, StoreError> {
    crate::store::db::rows(
        c,
        &format!(
            "SELECT fingerprint, type, name, certificate FROM certificates {filter} ORDER BY fingerprint"
        ),
        args,
        row,
    )
}

/// Every trusted certificate.
pub fn all(db: &Db) -> Result<Vec<CertRecord>, StoreError> {
    db.run(|c| select(c, "", []))
}

/// The certificate whose fingerprint is `fp` exactly (the trust check).
pub fn by_fingerprint(db: &Db, fp: &str) -> Result<Option<CertRecord>, StoreError> {
    db.run(|c| Ok(select(c, "WHERE fingerprint = ?1", params![fp])?.pop()))
}

/// Certificates whose fingerprint starts with `prefix` (LXD takes a unique prefix in URLs).
pub fn by_prefix(db: &Db, prefix: &str) -> Result<Vec<CertRecord>, StoreError> {
    // Hex only reaches the LIKE pattern, so `%` and `_` in a request cannot widen it.
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Vec::new());
    }
    let pattern = format!("{}%", prefix.to_ascii_lowercase());
    db.run(|c| select(c, "WHERE fingerprint LIKE ?1", params![pattern]))
}

/// Records a new certificate; `Conflict` if it is already trusted.
pub fn insert(db: &Db, cert: &CertRecord) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.insert_certificate(cert);
    }
    db.run(|c| {
        c.execute(
            "INSERT INTO certificates (fingerprint, type, name, certificate) VALUES (?1, ?2, ?3, ?4)",
            params![cert.fingerprint, cert.kind, cert.name, cert.certificate],
        )
        .map_err(|e| unique(e, Named::new("certificate", &cert.fingerprint)))?;
        Ok(())
    })
}

/// Changes a certificate's name and type, and with `replace` the certificate itself (its new
/// fingerprint and PEM); `Conflict` if the new one is already trusted.
pub fn update(
    db: &Db,
    fp: &str,
    name: &str,
    kind: &str,
    replace: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        let old = by_fingerprint(db, fp)?
            .ok_or_else(|| StoreError::not_found(Named::new("certificate", fp)))?;
        let mut new = old.clone();
        new.name = name.to_string();
        new.kind = kind.to_string();
        if let Some((f, p)) = replace {
            new.fingerprint = f.to_string();
            new.certificate = p.to_string();
        }
        return r.replace_certificate(&old, &new);
    }
    let (new_fp, pem) = replace.unzip();
    db.run(|c| {
        let n = c
            .execute(
                "UPDATE certificates SET name = ?2, type = ?3,
                    fingerprint = COALESCE(?4, fingerprint), certificate = COALESCE(?5, certificate)
                 WHERE fingerprint = ?1",
                params![fp, name, kind, new_fp, pem],
            )
            .map_err(|e| unique(e, Named::new("certificate", new_fp.unwrap_or(fp))))?;
        if n == 0 {
            return Err(StoreError::not_found(Named::new("certificate", fp)));
        }
        Ok(())
    })
}

/// Forgets a certificate.
pub fn delete(db: &Db, fp: &str) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.delete_certificate(fp);
    }
    db.run(|c| delete_in(c, fp))
}

/// Writes a certificate's row (the cluster's copy).
pub(crate) fn upsert_in(c: &rusqlite::Connection, cert: &CertRecord) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO certificates (fingerprint, type, name, certificate) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(fingerprint) DO UPDATE SET type = excluded.type, name = excluded.name,
         certificate = excluded.certificate",
        params![cert.fingerprint, cert.kind, cert.name, cert.certificate],
    )?;
    Ok(())
}

/// Removes a certificate's row.
pub(crate) fn delete_in(c: &rusqlite::Connection, fp: &str) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM certificates WHERE fingerprint = ?1",
        params![fp],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_round_trip() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        let c = CertRecord {
            fingerprint: "ab12".into(),
            kind: "client".into(),
            name: "laptop".into(),
            certificate: "PEM".into(),
        };
        insert(&db, &c).expect("insert");
        assert!(matches!(insert(&db, &c), Err(StoreError::Conflict(_))));
        assert_eq!(by_fingerprint(&db, "ab12").expect("get"), Some(c.clone()));
        assert_eq!(by_fingerprint(&db, "ab").expect("get"), None);
        assert_eq!(by_prefix(&db, "AB").expect("prefix").len(), 1);
        assert!(by_prefix(&db, "%").expect("prefix").is_empty());
        update(&db, "ab12", "desk", "metrics", None).expect("update");
        assert_eq!(all(&db).expect("all")[0].kind, "metrics");
        // Replaced: the entry moves to the new fingerprint, onto one already there it cannot.
        update(&db, "ab12", "desk", "client", Some(("cd34", "PEM2"))).expect("replace");
        assert_eq!(by_fingerprint(&db, "ab12").expect("get"), None);
        assert_eq!(
            by_fingerprint(&db, "cd34")
                .expect("get")
                .map(|r| r.certificate),
            Some("PEM2".to_string())
        );
        insert(&db, &c).expect("insert again");
        assert!(matches!(
            update(&db, "ab12", "x", "client", Some(("cd34", "PEM2"))),
            Err(StoreError::Conflict(_))
        ));
        delete(&db, "ab12").expect("delete");
        delete(&db, "cd34").expect("delete");
        assert!(all(&db).expect("all").is_empty());
        assert!(update(&db, "ab12", "x", "client", None).is_err());
    }
}
