//! The server's configuration: LXD 5.0's keys and how each is checked, the trust password
//! stored hashed, and changes made one at a time against the ETag the client saw.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::service::{DomainError, Services};
use crate::store::db::Db;

/// The ETag of the server configuration: over what GET shows (the trust password as `true`),
/// so a client's If-Match after a GET matches, and only what PUT can change.
pub fn config_etag(cfg: &BTreeMap<String, String>) -> String {
    crate::model::etag(&json!({"config": shown(cfg)}))
}

/// The key whose value is a secret: stored hashed, shown as `true`.
const TRUST_PASSWORD: &str = "core.trust_password";

/// How a key's value is checked and stored.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Checked on its own; stored as given.
    Plain(fn(&str) -> Result<(), String>),
    /// Checked against the database, and only when it changes: a volume deleted since it was
    /// set must not make every later PUT of the whole configuration (what `lxc config set`
    /// sends) fail. A `BadRequest` names what is wrong; other errors pass through.
    Db(fn(&Db, &str) -> Result<(), DomainError>),
    /// Stored as [`hash_password`]'s output, never as given.
    Secret,
}

/// Server configuration keys silod knows, as LXD 5.0 names and parses them.
const SERVER_KEYS: &[(&str, Kind)] = &[
    // Stored only: silod serves the unix socket alone until remote access (TLS and client
    // certificates) is implemented; nothing listens on this address yet.
    ("core.https_address", Kind::Plain(check_https_address)),
    // Kept for the remote access to come, which checks a new client's password with
    // `verify_password`.
    (TRUST_PASSWORD, Kind::Secret),
    // Hours between refreshes of auto-updating images, 0 disables; stored only until the
    // updater arrives with remotes.
    ("images.auto_update_interval", Kind::Plain(check_hours)),
    ("images.auto_update_cached", Kind::Plain(check_bool)),
    // Days an unused cached image is kept; stored only until remotes cache images.
    ("images.remote_cache_expiry", Kind::Plain(check_days)),
    ("storage.images_volume", Kind::Db(check_custom_volume)),
    ("storage.backups_volume", Kind::Db(check_custom_volume)),
];

/// LXD's port for `core.https_address` when it names none.
pub const DEFAULT_HTTPS_PORT: u16 = 8443;

/// Parses `core.https_address` as LXD takes it: `[host]:port`, `host`, `:port`; the host an IP
/// literal (IPv6 in brackets when a port follows) or empty for every address.
pub fn parse_https_address(v: &str) -> Result<(Option<IpAddr>, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("port {p:?} is not a number"));
        }
        match p.parse::<u16>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("port {p} is outside 1-65535")),
        }
    };
    if let Some(rest) = v.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{v:?} has no ']' after the IPv6 address"))?;
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        let p = match after {
            "" => DEFAULT_HTTPS_PORT,
            a => port(
                a.strip_prefix(':')
                    .ok_or_else(|| format!("expected ':PORT' after ']', got {a:?}"))?,
            )?,
        };
        return Ok((Some(IpAddr::V6(ip)), p));
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok((Some(ip), DEFAULT_HTTPS_PORT));
    }
    if let Some(p) = v.strip_prefix(':') {
        return Ok((None, port(p)?));
    }
    let Some((host, p)) = v.rsplit_once(':') else {
        return Err(format!(
            "{v:?} is not an IP address (host names are not accepted)"
        ));
    };
    if host.parse::<Ipv6Addr>().is_ok() || host.contains(':') {
        return Err(format!(
            "{v:?}: an IPv6 address followed by a port goes in brackets, as in [::1]:8443"
        ));
    }
    let ip: Ipv4Addr = host
        .parse()
        .map_err(|_| format!("{host:?} is not an IP address (host names are not accepted)"))?;
    Ok((Some(IpAddr::V4(ip)), port(p)?))
}

fn check_https_address(v: &str) -> Result<(), String> {
    parse_https_address(v).map(|_| ())
}

/// A whole number ≥ 0 that fits LXD's int64.
fn check_count(v: &str, unit: &str) -> Result<(), String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{v:?} is not a whole number of {unit} (0 or more)"));
    }
    v.parse::<i64>()
        .map(|_| ())
        .map_err(|_| format!("{v} {unit} is too large"))
}

fn check_hours(v: &str) -> Result<(), String> {
    check_count(v, "hours")
}

fn check_days(v: &str) -> Result<(), String> {
    check_count(v, "days")
}

fn check_bool(v: &str) -> Result<(), String> {
    if crate::service::instances::is_bool(v) {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a boolean (true/false, 1/0, yes/no, on/off)"
        ))
    }
}

/// `POOL/VOLUME` naming an existing custom volume.
fn check_custom_volume(db: &Db, v: &str) -> Result<(), DomainError> {
    let bad = |m: String| Err(DomainError::BadRequest(m));
    let Some((pool, volume)) = v
        .split_once('/')
        .filter(|(p, vol)| !p.is_empty() && !vol.is_empty() && !vol.contains('/'))
    else {
        return bad(format!("{v:?} is not POOL/VOLUME"));
    };
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

/// scrypt's cost as LXD sets it for its trust password (N = 2^14, r = 8, p = 1): about 16 MiB
/// and tens of milliseconds per guess, where one sha256 would allow billions a second to
/// anyone holding a copy of the database.
const SCRYPT_LOG_N: u8 = 14;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SCRYPT_LEN: usize = 32;

fn scrypt_digest(
    salt: &[u8],
    password: &str,
    log_n: u8,
    r: u32,
    p: u32,
) -> Option<[u8; SCRYPT_LEN]> {
    let params = scrypt::Params::new(log_n, r, p, SCRYPT_LEN).ok()?;
    let mut out = [0u8; SCRYPT_LEN];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out).ok()?;
    Some(out)
}

fn sha256_digest(salt: &[u8], password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    h.finalize().into()
}

fn hash_with_salt(salt: &[u8], password: &str) -> Result<String, DomainError> {
    let digest = scrypt_digest(salt, password, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
        .ok_or_else(|| DomainError::Internal(format!("scrypt for {TRUST_PASSWORD} failed")))?;
    Ok(format!(
        "scrypt${SCRYPT_LOG_N}${SCRYPT_R}${SCRYPT_P}${}${}",
        hex::encode(salt),
        hex::encode(digest)
    ))
}

/// The trust password's stored form, `scrypt$<log2 N>$<r>$<p>$<salt hex>$<digest hex>`, with a
/// fresh 16-byte salt: the database (and its backups) never hold the clear text, two servers
/// with the same password store different values, and the cost is written beside the digest
/// so that raising it later still verifies what is stored.
pub fn hash_password(password: &str) -> Result<String, DomainError> {
    let mut salt = [0u8; 16];
    silo_proto::random::fill(&mut salt).map_err(|e| {
        DomainError::Internal(format!("getrandom for the salt of {TRUST_PASSWORD}: {e}"))
    })?;
    hash_with_salt(&salt, password)
}

/// Whether `password` is the one [`hash_password`] stored as `stored`. The `sha256$<salt>$<digest>`
/// form an earlier silod stored is still verified, so upgrading keeps a set password.
pub fn verify_password(stored: &str, password: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let (want, got) = match parts.as_slice() {
        ["scrypt", log_n, r, p, salt, digest] => {
            let (Ok(log_n), Ok(r), Ok(p), Ok(salt), Ok(want)) = (
                log_n.parse::<u8>(),
                r.parse::<u32>(),
                p.parse::<u32>(),
                hex::decode(salt),
                hex::decode(digest),
            ) else {
                return false;
            };
            // A stored cost is bounded so that a tampered row cannot make one check take
            // minutes or gigabytes.
            if log_n > 20 || r > 32 || p > 4 {
                return false;
            }
            match scrypt_digest(&salt, password, log_n, r, p) {
                Some(got) => (want, got.to_vec()),
                None => return false,
            }
        }
        ["sha256", salt, digest] => {
            let (Ok(salt), Ok(want)) = (hex::decode(salt), hex::decode(digest)) else {
                return false;
            };
            (want, sha256_digest(&salt, password).to_vec())
        }
        _ => return false,
    };
    // Constant time: how many leading bytes match must not show in the answer's timing.
    want.len() == got.len()
        && want
            .iter()
            .zip(got.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
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
        let Some((_, kind)) = SERVER_KEYS.iter().find(|(name, _)| name == k) else {
            return Err(DomainError::BadRequest(format!(
                "unknown server configuration key {k:?}"
            )));
        };
        // GET shows a set password as `true`; a client sending the configuration back (lxc
        // config set/edit PUT it whole) means "keep it", as in LXD. The string "true" is a
        // password like any other.
        if matches!(kind, Kind::Secret) && *v == Value::Bool(true) {
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
            Kind::Plain(check) => {
                check(&v).map_err(invalid)?;
                v
            }
            Kind::Db(check) => {
                if cur.get(k) != Some(&v) {
                    check(db, &v).map_err(|e| match e {
                        DomainError::BadRequest(m) => invalid(m),
                        other => other,
                    })?;
                }
                v
            }
            Kind::Secret => hash_password(&v)?,
        };
        out.insert(k.clone(), Some(stored));
    }
    Ok(out)
}

/// Held from reading the configuration to writing it back, so two concurrent changes
/// cannot both pass If-Match (or both merge into the same old map) and lose one.
static WRITER: Mutex<()> = Mutex::new(());

/// The stored configuration and its ETag.
pub fn config(c: &Services) -> Result<(BTreeMap<String, String>, String), DomainError> {
    let cfg = c.db.config()?;
    let etag = config_etag(&cfg);
    Ok((cfg, etag))
}

/// Replaces (`patch` false) or merges into (`patch` true) the configuration with `req`,
/// refusing with 412 when `if_match` is given and the configuration changed since.
pub fn update(
    c: &Services,
    req: &BTreeMap<String, Value>,
    patch: bool,
    if_match: Option<&str>,
) -> Result<(), DomainError> {
    {
        let _w = WRITER.lock().unwrap_or_else(|p| p.into_inner());
        let cur = c.db.config()?;
        if let Some(want) = if_match {
            if want.trim_matches('"') != config_etag(&cur) {
                return Err(DomainError::PreconditionFailed(
                    "ETag doesn't match: the server configuration changed meanwhile".into(),
                ));
            }
        }
        let changes = validate(&c.db, &cur, req)?;
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
        c.db.config_replace(&next)?;
    }
    c.events.lifecycle("config-updated", "/1.0", json!({}));
    Ok(())
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
        db.with(|c| {
            c.execute(
                "INSERT INTO storage_pools (name, driver) VALUES ('default', 'dir')",
                [],
            )?;
            c.execute(
                "INSERT INTO custom_volumes (pool, name) VALUES ('default', 'imgs')",
                [],
            )
        })
        .expect("seed");
        (t, db)
    }

    fn req(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn https_address_forms() {
        let v6 = |s: &str| Some(IpAddr::V6(s.parse().expect("v6")));
        let v4 = |s: &str| Some(IpAddr::V4(s.parse().expect("v4")));
        for (given, want) in [
            ("[::]:8443", (v6("::"), 8443)),
            ("[::1]:1", (v6("::1"), 1)),
            ("[fd00::1]", (v6("fd00::1"), 8443)),
            ("::", (v6("::"), 8443)),
            ("::1", (v6("::1"), 8443)),
            ("10.0.0.1", (v4("10.0.0.1"), 8443)),
            ("10.0.0.1:65535", (v4("10.0.0.1"), 65535)),
            ("0.0.0.0:9443", (v4("0.0.0.0"), 9443)),
            (":8443", (None, 8443)),
            (":1", (None, 1)),
        ] {
            assert_eq!(parse_https_address(given), Ok(want), "{given}");
        }
        for bad in [
            ":",
            ":0",
            ":65536",
            ":+1",
            ":-1",
            ":https",
            "[::1]:",
            "[::1]:0",
            "[::1]x",
            "[::1",
            "[10.0.0.1]:80",
            "[]:80",
            "::1:8443:",
            "fe80::1:x",
            "localhost",
            "localhost:8443",
            "example.com:8443",
            "10.0.0.256",
            "10.0.0.1:",
            "10.0.0.1:99999",
            "fe80::1%eth0",
            " 10.0.0.1",
        ] {
            assert!(parse_https_address(bad).is_err(), "{bad} accepted");
        }
        let e = parse_https_address("localhost").expect_err("host name");
        assert!(e.contains("host names"), "{e}");
    }

    #[test]
    fn counts_and_bools() {
        for good in ["0", "6", "24", "9223372036854775807"] {
            assert_eq!(check_hours(good), Ok(()), "{good}");
            assert_eq!(check_days(good), Ok(()), "{good}");
        }
        for bad in ["-1", "+1", "1.5", "1h", " 1", "six", "9223372036854775808"] {
            assert!(check_hours(bad).is_err(), "{bad}");
            assert!(check_days(bad).is_err(), "{bad}");
        }
        for good in ["true", "false", "1", "0", "yes", "no", "on", "off", "TRUE"] {
            assert_eq!(check_bool(good), Ok(()), "{good}");
        }
        for bad in ["2", "maybe", "t", "enabled"] {
            assert!(check_bool(bad).is_err(), "{bad}");
        }
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
    fn password_hash_is_salted_and_verifies() {
        let a = hash_password("s3cret").expect("hash");
        let b = hash_password("s3cret").expect("hash");
        assert_ne!(a, b, "a fresh salt each time");
        for h in [&a, &b] {
            assert!(!h.contains("s3cret"));
            let parts: Vec<&str> = h.split('$').collect();
            assert_eq!(parts[..4], ["scrypt", "14", "8", "1"], "{h}");
            assert_eq!(parts[4].len(), 32, "16-byte salt: {h}");
            assert_eq!(parts[5].len(), 64, "32-byte digest: {h}");
            assert!(verify_password(h, "s3cret"));
            assert!(!verify_password(h, "s3cret "));
            assert!(!verify_password(h, ""));
        }
        // RFC 7914's scrypt test vector (N = 1024, r = 8, p = 16), first 32 bytes.
        assert_eq!(
            hex::encode(scrypt_digest(b"NaCl", "password", 10, 8, 16).expect("scrypt")),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
        );
        let salt = [7u8; 16];
        let stored = hash_with_salt(&salt, "pw").expect("hash");
        let want = hex::encode(scrypt_digest(&salt, "pw", 14, 8, 1).expect("scrypt"));
        assert_eq!(
            stored,
            format!("scrypt$14$8$1${}${want}", hex::encode(salt))
        );
        // The cost is read from the row: a lower one still verifies, a huge one is refused
        // rather than computed.
        let cheap = hex::encode(scrypt_digest(&salt, "pw", 4, 1, 1).expect("scrypt"));
        assert!(verify_password(
            &format!("scrypt$4$1$1${}${cheap}", hex::encode(salt)),
            "pw"
        ));
        assert!(!verify_password(
            &format!("scrypt$30$8$1${}${want}", hex::encode(salt)),
            "pw"
        ));
        // An earlier silod's sha256(salt ‖ password) still verifies.
        let legacy = hex::encode(Sha256::digest([&salt[..], b"pw"].concat()));
        let legacy = format!("sha256${}${legacy}", hex::encode(salt));
        assert!(verify_password(&legacy, "pw"));
        assert!(!verify_password(&legacy, "pW"));
        for broken in [
            "",
            "s3cret",
            "sha256$zz$00",
            "md5$00$00",
            "scrypt$14$8$1$zz$00",
            "scrypt$x$8$1$00$00",
            &format!("{a}$x"),
        ] {
            assert!(!verify_password(broken, "s3cret"), "{broken}");
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
        assert!(verify_password(&hash, "pw"));
        assert_eq!(out["images.auto_update_interval"].as_deref(), Some("0"));
        assert_eq!(out["images.auto_update_cached"].as_deref(), Some("false"));
        assert_eq!(out["images.remote_cache_expiry"], None);

        cur.insert("core.trust_password".to_string(), hash.clone());
        // `true` (what GET shows) keeps the stored hash; "true" is a new password.
        let out = validate(&db, &cur, &req(&[("core.trust_password", json!(true))])).expect("ok");
        assert_eq!(out["core.trust_password"].as_deref(), Some(hash.as_str()));
        let out = validate(&db, &cur, &req(&[("core.trust_password", json!("true"))])).expect("ok");
        let new = out["core.trust_password"].clone().expect("set");
        assert!(verify_password(&new, "true"));
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
