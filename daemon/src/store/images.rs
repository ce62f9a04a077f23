//! `images` and `image_aliases`: global records (the files are this host's).

use rusqlite::{params, Row};

use crate::model::image::{Image, ImageAlias, UpdateSource};
use crate::store::db::Db;
use crate::store::error::{decode, encode, unique, Named, StoreError};

const TABLE: &str = "images";

fn row(r: &Row<'_>) -> Result<Image, StoreError> {
    let fp: String = r.get("fingerprint")?;
    let size: i64 = r.get("size")?;
    Ok(Image {
        filename: r.get("filename")?,
        size: u64::try_from(size).map_err(|e| StoreError::Corrupt {
            table: TABLE,
            row: fp.clone(),
            column: "size",
            reason: e.to_string(),
        })?,
        public: r.get("public")?,
        architecture: r.get("architecture")?,
        kind: r.get("type")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        uploaded_at: r.get("uploaded_at")?,
        last_used_at: r.get("last_used_at")?,
        auto_update: r.get("auto_update")?,
        cached: r.get("cached")?,
        split: r.get("split")?,
        compression: r.get("compression")?,
        properties: decode(TABLE, &fp, "properties", &r.get::<_, String>("properties")?)?,
        profiles: decode(TABLE, &fp, "profiles", &r.get::<_, String>("profiles")?)?,
        update_source: {
            let raw: String = r.get("update_source")?;
            if raw.is_empty() {
                None
            } else {
                Some(decode(TABLE, &fp, "update_source", &raw)?)
            }
        },
        fingerprint: fp,
    })
}

fn select(
    c: &rusqlite::Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Image>, StoreError> {
    crate::store::db::rows(
        c,
        &format!("SELECT * FROM images {filter} ORDER BY fingerprint"),
        args,
        row,
    )
}

/// All images, by fingerprint.
pub fn all(db: &Db) -> Result<Vec<Image>, StoreError> {
    db.run(|c| select(c, "", []))
}

/// One image by full fingerprint, if recorded.
pub fn get(db: &Db, fp: &str) -> Result<Option<Image>, StoreError> {
    db.run(|c| Ok(select(c, "WHERE fingerprint = ?1", params![fp])?.pop()))
}

/// Records a new image; `Conflict` if the fingerprint is recorded.
pub fn insert(db: &Db, i: &Image) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.insert_image(i);
    }
    db.run(|c| {
        write_in(c, i, "INSERT").map_err(|e| match e {
            StoreError::Sqlite { source, .. } => {
                unique(source, Named::new("image", &i.fingerprint))
            }
            e => e,
        })
    })
}

/// Writes an image's row whole (for the cluster's copy): inserted, or every column replaced
/// (never a delete and insert, which would take its aliases with it).
pub(crate) fn upsert_in(c: &rusqlite::Connection, i: &Image) -> Result<(), StoreError> {
    write_in(c, i, "UPSERT")
}

fn write_in(c: &rusqlite::Connection, i: &Image, how: &str) -> Result<(), StoreError> {
    let props = encode(TABLE, &i.fingerprint, "properties", &i.properties)?;
    let profiles = encode(TABLE, &i.fingerprint, "profiles", &i.profiles)?;
    let source = match &i.update_source {
        Some(s) => encode(TABLE, &i.fingerprint, "update_source", s)?,
        None => String::new(),
    };
    let size = i64::try_from(i.size).map_err(|e| StoreError::Encode {
        table: TABLE,
        row: i.fingerprint.clone(),
        column: "size",
        reason: e.to_string(),
    })?;
    let on_conflict = if how == "UPSERT" {
        " ON CONFLICT(fingerprint) DO UPDATE SET filename = excluded.filename, size = excluded.size,
          public = excluded.public, architecture = excluded.architecture, type = excluded.type,
          created_at = excluded.created_at, expires_at = excluded.expires_at,
          uploaded_at = excluded.uploaded_at, last_used_at = excluded.last_used_at,
          auto_update = excluded.auto_update, cached = excluded.cached, split = excluded.split,
          compression = excluded.compression, properties = excluded.properties,
          profiles = excluded.profiles, update_source = excluded.update_source"
    } else {
        ""
    };
    c.execute(
        &format!("INSERT INTO images (fingerprint, filename, size, public, architecture, type, created_at, expires_at, uploaded_at, last_used_at, auto_update, cached, split, compression, properties, profiles, update_source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17){on_conflict}"),
        params![
            i.fingerprint, i.filename, size, i.public, i.architecture, i.kind, i.created_at, i.expires_at,
            i.uploaded_at, i.last_used_at, i.auto_update, i.cached, i.split, i.compression, props, profiles,
            source
        ],
    )?;
    Ok(())
}

/// Every recorded fingerprint.
pub(crate) fn fingerprints_in(c: &rusqlite::Connection) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare("SELECT fingerprint FROM images")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Removes an image's row (its aliases follow by cascade).
pub(crate) fn delete_in(c: &rusqlite::Connection, fp: &str) -> Result<(), StoreError> {
    c.execute("DELETE FROM images WHERE fingerprint = ?1", params![fp])?;
    Ok(())
}

/// Updates the writable fields (PUT/PATCH); the stored row must exist and decode.
pub fn update(db: &Db, i: &Image) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.modify_image(&i.fingerprint, &|x: &mut Image| {
            x.public = i.public;
            x.auto_update = i.auto_update;
            x.properties = i.properties.clone();
            x.profiles = i.profiles.clone();
            x.expires_at = i.expires_at.clone();
        });
    }
    let props = encode(TABLE, &i.fingerprint, "properties", &i.properties)?;
    let profiles = encode(TABLE, &i.fingerprint, "profiles", &i.profiles)?;
    db.tx(|tx| {
        if select(tx, "WHERE fingerprint = ?1", params![i.fingerprint])?.is_empty() {
            return Err(StoreError::not_found(Named::new("image", &i.fingerprint)));
        }
        tx.execute(
            "UPDATE images SET public = ?2, auto_update = ?3, properties = ?4, profiles = ?5, expires_at = ?6 WHERE fingerprint = ?1",
            params![i.fingerprint, i.public, i.auto_update, props, profiles, i.expires_at],
        )?;
        Ok(())
    })
}

/// Records where an image came from and whether it is a cache entry that updates itself.
pub fn set_origin(
    db: &Db,
    fp: &str,
    cached: bool,
    auto_update: bool,
    source: Option<&UpdateSource>,
) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.modify_image(fp, &|x: &mut Image| {
            x.cached = cached;
            x.auto_update = auto_update;
            x.update_source = source.cloned();
        });
    }
    let source = match source {
        Some(s) => encode(TABLE, fp, "update_source", s)?,
        None => String::new(),
    };
    db.run(|c| {
        let n = c.execute(
            "UPDATE images SET cached = ?2, auto_update = ?3, update_source = ?4 WHERE fingerprint = ?1",
            params![fp, cached, auto_update, source],
        )?;
        if n == 0 {
            return Err(StoreError::not_found(Named::new("image", fp)));
        }
        Ok(())
    })
}

/// Sets when an image was last used.
pub fn touch(db: &Db, fp: &str, when: &str) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return match r.modify_image(fp, &|x: &mut Image| x.last_used_at = when.to_string()) {
            Err(StoreError::NotFound(_)) => Ok(()),
            other => other,
        };
    }
    db.run(|c| {
        c.execute(
            "UPDATE images SET last_used_at = ?2 WHERE fingerprint = ?1",
            params![fp, when],
        )?;
        Ok(())
    })
}

/// Forgets an image (its aliases follow by cascade).
pub fn delete(db: &Db, fp: &str) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        let names: Vec<String> = aliases(db)?
            .into_iter()
            .filter(|a| a.target == fp)
            .map(|a| a.name)
            .collect();
        return r.delete_image(fp, &names);
    }
    db.run(|c| delete_in(c, fp))
}

/// All aliases, by name.
pub fn aliases(db: &Db) -> Result<Vec<ImageAlias>, StoreError> {
    db.run(|c| {
        let mut st =
            c.prepare("SELECT name, fingerprint, description FROM image_aliases ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(ImageAlias {
                name: r.get(0)?,
                target: r.get(1)?,
                description: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })
}

/// Creates or replaces an alias.
pub fn alias_put(db: &Db, a: &ImageAlias) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.put_alias(a);
    }
    db.run(|c| alias_upsert_in(c, a))
}

/// Writes an alias's row.
pub(crate) fn alias_upsert_in(c: &rusqlite::Connection, a: &ImageAlias) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO image_aliases (name, fingerprint, description) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET fingerprint = excluded.fingerprint, description = excluded.description",
        params![a.name, a.target, a.description],
    )?;
    Ok(())
}

/// Removes an alias's row, if there is one.
pub(crate) fn alias_delete_in(c: &rusqlite::Connection, name: &str) -> Result<(), StoreError> {
    c.execute("DELETE FROM image_aliases WHERE name = ?1", params![name])?;
    Ok(())
}

/// Removes an alias; `NotFound` if there was none.
pub fn alias_delete(db: &Db, name: &str) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.delete_alias(name);
    }
    db.run(|c| {
        let n = c.execute("DELETE FROM image_aliases WHERE name = ?1", params![name])?;
        if n == 0 {
            return Err(StoreError::not_found(Named::new("alias", name)));
        }
        Ok(())
    })
}

/// Renames an alias; `NotFound` if there was none, `Conflict` if the new name is taken.
pub fn alias_rename(db: &Db, from: &str, to: &str) -> Result<(), StoreError> {
    if let Some(r) = db.replica()? {
        return r.rename_alias(from, to);
    }
    db.run(|c| {
        let n = c
            .execute(
                "UPDATE image_aliases SET name = ?2 WHERE name = ?1",
                params![from, to],
            )
            .map_err(|e| unique(e, Named::new("alias", to)))?;
        if n == 0 {
            return Err(StoreError::not_found(Named::new("alias", from)));
        }
        Ok(())
    })
}
