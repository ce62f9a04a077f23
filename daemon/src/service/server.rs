//! The server's configuration: LXD 5.0's keys and how each is checked, the trust password
//! stored hashed, and changes made one at a time against the ETag the client saw.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::config::{self, KeyType, TRUST_PASSWORD};
use crate::model::password;
use crate::service::{DomainError, Services};
use crate::store::db::Db;

/// The ETag of the server configuration: over what GET shows (the trust password as `true`),
/// so a client's If-Match after a GET matches, and only what PUT can change.
pub fn config_etag(cfg: &BTreeMap<String, String>) -> String {
    crate::model::etag(&json!({"config": shown(cfg)}))
}

/// `POOL/VOLUME` naming an existing custom volume.
fn check_custom_volume(db: &Db, v: &str) -> Result<(), DomainError> {
    let bad = |m: String| Err(DomainError::BadRequest(m));
    let (pool, volume) = config::parse_custom_volume_ref(v).map_err(DomainError::BadRequest)?;
    if !crate::service::storage::list(db)?
        .iter()
        .any(|p| p.name == pool)
    {
        return bad(format!("storage pool {pool:?} does not exist"));
    }
    if !crate::service::storage::custom_volumes(db, pool)?
        .iter()
        .any(|(name, _, _)| name == volume)
    {
        return bad(format!(
            "storage pool {pool:?} has no custom volume {volume:?}: create it first (silo storage volume create {pool} {volume})"
        ));
    }
    Ok(())
}

/// The configuration as GET shows it: the trust password as `true` (as LXD does), never
/// its stored form.
pub fn shown(cfg: &BTreeMap<String, String>) -> BTreeMap<String, Value> {
    cfg.iter()
        .map(|(k, v)| {
            let v = if k == TRUST_PASSWORD {
                Value::Bool(true)
            } else {
                Value::String(v.clone())
            };
            (k.clone(), v)
        })
        .collect()
}

/// Checks a request's keys against the stored configuration `cur`; gives each key's new
/// stored value, or `None` to remove it. Values are strings; numbers and booleans are taken
/// as their JSON text, `null` and "" unset.
fn validate(
    db: &Db,
    cur: &BTreeMap<String, String>,
    cfg: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Option<String>>, DomainError> {
    let mut out = BTreeMap::new();
    for (k, v) in cfg {
        let kind = config::server_key(k)?.kind;
        // GET shows a set password as `true`; a client sending the configuration back (lxc
        // config set/edit PUT it whole) means "keep it", as in LXD. The string "true" is a
        // password like any other.
        if kind == KeyType::Secret && *v == Value::Bool(true) {
            out.insert(k.clone(), cur.get(k).cloned());
            continue;
        }
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if v.is_empty() {
            out.insert(k.clone(), None);
            continue;
        }
        let invalid = |e: String| DomainError::BadRequest(format!("invalid value for {k:?}: {e}"));
        let stored = match kind {
            KeyType::Secret => password::hash_password(&v)?,
            KeyType::CustomVolumeRef => {
                // Checked only when it changes: a volume deleted since it was set must not make
                // every later PUT of the whole configuration (what `lxc config set` sends) fail.
                if cur.get(k) != Some(&v) {
                    check_custom_volume(db, &v).map_err(|e| match e {
                        DomainError::BadRequest(m) => invalid(m),
                        other => other,
                    })?;
                }
                v
            }
            _ => {
                config::check_server_value(k, &v)?;
                v
            }
        };
        out.insert(k.clone(), Some(stored));
    }
    Ok(out)
}

/// Held from reading the configuration to writing it back, so two concurrent changes
/// cannot both pass If-Match (or both merge into the same old map) and lose one.
static WRITER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The stored configuration and its ETag.
pub fn config(c: &Services) -> Result<(BTreeMap<String, String>, String), DomainError> {
    let cfg = crate::store::config::all(&c.db)?;
    let etag = config_etag(&cfg);
    Ok((cfg, etag))
}

/// Replaces (`patch` false) or merges into (`patch` true) the configuration with `req`,
/// refusing with 412 when `if_match` is given and the configuration changed since.
pub async fn update(
    c: &Services,
    req: &BTreeMap<String, Value>,
    patch: bool,
    if_match: Option<&str>,
) -> Result<(), DomainError> {
    {
        let _w = WRITER.lock().await;
        let cur = crate::store::config::all(&c.db)?;
        if let Some(want) = if_match {
            if want.trim_matches('"') != config_etag(&cur) {
                return Err(DomainError::PreconditionFailed(
                    "ETag doesn't match: the server configuration changed meanwhile".into(),
                ));
            }
        }
        let changes = validate(&c.db, &cur, req)?;
        let before = cur.clone();
        let next = if patch {
            let mut merged = cur;
            for (k, v) in changes {
                match v {
                    Some(v) => merged.insert(k, v),
                    None => merged.remove(&k),
                };
            }
            merged
        } else {
            changes
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        };
        // The new address is bound before anything is written: a bad or busy one is a 400
        // and the old listener keeps serving.
        let addr = next.get(HTTPS_ADDRESS).cloned();
        let rebind = !c.https.is_current(addr.as_deref());
        let (bound, stopped) = match (&addr, rebind) {
            (Some(v), true) => {
                let (b, stopped) = c.https.bind_replacing(&c.helpers, v).await?;
                (Some(b), stopped)
            }
            _ => (None, None),
        };
        // Images and backups move into (or out of) their custom volume before the key says
        // they are there; a failed move leaves the key as it was.
        for (key, dir) in crate::service::storage::STATE_VOLUME_KEYS {
            let from = before
                .get(key)
                .map(String::as_str)
                .filter(|v| !v.is_empty());
            let to = next.get(key).map(String::as_str).filter(|v| !v.is_empty());
            crate::service::storage::relocate_state_dir(c, dir, from, to).await?;
        }
        if let Err(e) = crate::store::config::replace(&c.db, &next) {
            if let Some(old) = stopped {
                drop(bound);
                c.https.restore(&c.helpers, &old).await;
            }
            return Err(e.into());
        }
        if rebind {
            c.https.switch(bound);
        }
    }
    c.events.lifecycle("config-updated", "/1.0", json!({}));
    Ok(())
}

/// The key naming where silod listens for HTTPS.
pub const HTTPS_ADDRESS: &str = "core.https_address";

/// Listens where the stored configuration says (at start). A failure is logged, not fatal:
/// the unix socket still serves, and a PUT of a good address fixes it.
pub async fn start_https(c: &Services) {
    let addr = match crate::store::config::get(&c.db, HTTPS_ADDRESS) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "reading core.https_address");
            return;
        }
    };
    if let Some(v) = addr.filter(|v| !v.is_empty()) {
        match crate::service::endpoints::bind_any(&c.helpers, &v).await {
            Ok(b) => c.https.switch(Some(b)),
            Err(e) => tracing::error!(error = %e, "not listening for HTTPS"),
        }
    }
}

/// The database schema version this silod writes.
pub fn schema_version() -> i64 {
    crate::store::db::schema_version()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Db) {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        crate::store::pools::insert(
            &db,
            &crate::model::pool::Pool {
                name: "default".into(),
                driver: "dir".into(),
                description: String::new(),
                config: BTreeMap::new(),
            },
        )
        .expect("pool");
        crate::store::pools::insert_custom_volume(&db, "default", "imgs", "").expect("volume");
        (t, db)
    }

    fn req(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn custom_volume_names_what_is_missing() {
        let (_t, db) = db();
        assert!(check_custom_volume(&db, "default/imgs").is_ok());
        let msg = |v: &str| match check_custom_volume(&db, v) {
            Err(DomainError::BadRequest(m)) => m,
            other => panic!("{v}: {other:?}"),
        };
        assert!(msg("nopool/imgs").contains("storage pool \"nopool\" does not exist"));
        assert!(msg("default/novol").contains("no custom volume \"novol\""));
        for bad in ["default", "/imgs", "default/", "default/imgs/x", ""] {
            assert!(msg(bad).contains("POOL/VOLUME"), "{bad}");
        }
    }

    #[test]
    fn validate_stores_hashes_keeps_placeholders_and_names_keys() {
        let (_t, db) = db();
        let mut cur = BTreeMap::new();
        let out = validate(
            &db,
            &cur,
            &req(&[
                ("core.trust_password", json!("pw")),
                ("images.auto_update_interval", json!(0)),
                ("images.auto_update_cached", json!(false)),
                ("core.https_address", json!("[::]:8443")),
                ("storage.images_volume", json!("default/imgs")),
                ("images.remote_cache_expiry", Value::Null),
            ]),
        )
        .expect("valid");
        let hash = out["core.trust_password"].clone().expect("set");
        assert!(password::verify_password(&hash, "pw"));
        assert_eq!(out["images.auto_update_interval"].as_deref(), Some("0"));
        assert_eq!(out["images.auto_update_cached"].as_deref(), Some("false"));
        assert_eq!(out["images.remote_cache_expiry"], None);

        cur.insert("core.trust_password".to_string(), hash.clone());
        // `true` (what GET shows) keeps the stored hash; "true" is a new password.
        let out = validate(&db, &cur, &req(&[("core.trust_password", json!(true))])).expect("ok");
        assert_eq!(out["core.trust_password"].as_deref(), Some(hash.as_str()));
        let out = validate(&db, &cur, &req(&[("core.trust_password", json!("true"))])).expect("ok");
        let new = out["core.trust_password"].clone().expect("set");
        assert!(password::verify_password(&new, "true"));
        let out = validate(&db, &cur, &req(&[("core.trust_password", json!(""))])).expect("ok");
        assert_eq!(out["core.trust_password"], None);
        // With no password set, the placeholder leaves it unset.
        let out = validate(
            &db,
            &BTreeMap::new(),
            &req(&[("core.trust_password", json!(true))]),
        )
        .expect("ok");
        assert_eq!(out["core.trust_password"], None);

        for (k, v) in [
            ("core.https_address", json!("localhost:8443")),
            ("images.auto_update_interval", json!(-1)),
            ("images.auto_update_interval", json!("soon")),
            ("images.auto_update_cached", json!("maybe")),
            ("images.remote_cache_expiry", json!(1.5)),
            ("storage.backups_volume", json!("default/missing")),
            ("storage.images_volume", json!("nopool/imgs")),
            ("no.such.key", json!("1")),
        ] {
            let e = validate(&db, &cur, &req(&[(k, v.clone())])).expect_err(k);
            assert!(
                matches!(&e, DomainError::BadRequest(m) if m.contains(&format!("{k:?}"))),
                "{k}={v}: {e:?}"
            );
        }

        // A volume set earlier and deleted since does not block PUTs that carry it unchanged.
        cur.insert(
            "storage.backups_volume".to_string(),
            "default/gone".to_string(),
        );
        let out = validate(
            &db,
            &cur,
            &req(&[("storage.backups_volume", json!("default/gone"))]),
        )
        .expect("unchanged");
        assert_eq!(
            out["storage.backups_volume"].as_deref(),
            Some("default/gone")
        );
    }

    #[test]
    fn shown_masks_the_password_and_etag_follows_it() {
        let mut cfg = BTreeMap::new();
        cfg.insert(
            "core.trust_password".to_string(),
            "sha256$aa$bb".to_string(),
        );
        cfg.insert("images.auto_update_interval".to_string(), "0".to_string());
        let s = shown(&cfg);
        assert_eq!(s["core.trust_password"], Value::Bool(true));
        assert_eq!(s["images.auto_update_interval"], json!("0"));
        // A new password (another hash) shows the same, so the ETag stays what GET gave.
        let mut other = cfg.clone();
        other.insert(
            "core.trust_password".to_string(),
            "sha256$cc$dd".to_string(),
        );
        assert_eq!(config_etag(&cfg), config_etag(&other));
        assert_eq!(
            config_etag(&cfg),
            crate::model::etag(
                &json!({"config": {"core.trust_password": true, "images.auto_update_interval": "0"}})
            )
        );
    }
}
