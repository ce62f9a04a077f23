//! Instances as records: create from an image (unpack once per pool, copy per instance),
//! list, show, update, delete; config and device validation; profile expansion.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::json;
use silo_proto::privileged::{IdRange, IdRanges};

use crate::model::profile::{expand, root_pool};
use crate::service::expansion::load_profiles;
use crate::service::profiles::validate_devices;
use crate::service::profiles::Device;
use crate::service::DomainError;
use crate::store::db::Db;

pub use crate::model::instance::Instance;

/// All instance records.
pub fn list_records(db: &Db) -> Result<Vec<Instance>, DomainError> {
    Ok(crate::store::instances::all(db)?)
}

/// One record.
pub fn get(db: &Db, name: &str) -> Result<Instance, DomainError> {
    Ok(crate::store::instances::get(db, name)?)
}

pub(crate) fn write(db: &Db, i: &Instance, insert: bool) -> Result<(), DomainError> {
    if insert {
        crate::store::instances::insert(db, i)?;
    } else {
        crate::store::instances::update(db, i)?;
    }
    Ok(())
}

/// Puts a record back as it was (a live change that failed).
pub fn restore(db: &Db, i: &Instance) -> Result<(), DomainError> {
    write(db, i, false)
}

/// Sets an instance's running state: volatile keys (an empty value removes the key) and
/// optionally last_used_at, in one transaction (node-local: see `store/mod.rs`).
pub fn set_keys(
    db: &Db,
    name: &str,
    keys: &[(&str, &str)],
    last_used: Option<&str>,
) -> Result<(), DomainError> {
    Ok(crate::store::local::set_volatile(
        db, name, keys, last_used,
    )?)
}

/// Checks a whole config map against the key table in [`crate::model::config`].
pub fn validate_config(
    cfg: &BTreeMap<String, String>,
    allow_volatile: bool,
) -> Result<(), DomainError> {
    Ok(crate::model::config::check_instance_config(
        cfg,
        allow_volatile,
    )?)
}

/// Names being created right now (a second create of the same name is refused at once).
#[derive(Debug, Default, Clone)]
pub struct Creating(Arc<Mutex<HashSet<String>>>);

impl Creating {
    pub(crate) fn claim(&self, name: &str) -> bool {
        self.0
            .lock()
            .map(|mut s| s.insert(name.to_string()))
            .unwrap_or(false)
    }
    /// Whether `name` is being created now.
    pub(crate) fn is_claimed(&self, name: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    pub(crate) fn release(&self, name: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(name);
        }
    }
}

/// A create request (`POST /1.0/instances`) and where the instance comes from, as LXD's API
/// has them.
pub use silo_api::{InstanceSource as Source, InstancesPost as CreateRequest};

/// Ids per 65536-id block; an instance holds one or more.
const IDS_PER_INSTANCE: u64 = 65536;

/// The lowest base whose `size` ids lie in one of `usable` and overlap no 65536-id block in
/// `used`.
fn first_free_base(usable: &[IdRange], used: &[u64], size: u64) -> Option<u64> {
    let mut used = used.to_vec();
    used.sort_unstable();
    usable.iter().find_map(|r| {
        let mut cand = r.start;
        for &u in &used {
            if u.saturating_add(IDS_PER_INSTANCE) <= cand {
                continue;
            }
            if u >= cand.saturating_add(size) {
                break;
            }
            cand = u.saturating_add(IDS_PER_INSTANCE);
        }
        (cand.checked_add(size)? <= r.end()).then_some(cand)
    })
}

/// The ids a new instance with this (expanded) config gets: `security.idmap.size` rounded up
/// to whole 65536-id blocks, 65536 when unset.
pub(crate) fn wanted_idmap_size(cfg: &BTreeMap<String, String>) -> Result<u64, DomainError> {
    let Some(v) = cfg.get("security.idmap.size").filter(|v| !v.is_empty()) else {
        return Ok(IDS_PER_INSTANCE);
    };
    let n: u64 = v.parse().map_err(|_| {
        DomainError::BadRequest(format!("security.idmap.size {v:?} is not a whole number"))
    })?;
    let size = n.max(1).div_ceil(IDS_PER_INSTANCE) * IDS_PER_INSTANCE;
    silo_proto::privileged::check_idmap_size(size)
        .map_err(|e| DomainError::BadRequest(e.to_string()))?;
    Ok(size)
}

/// The ids an instance holds, as its `volatile.idmap.next` records them (65536 for records
/// that say nothing else).
pub(crate) fn idmap_size_of(config: &BTreeMap<String, String>) -> u64 {
    config
        .get("volatile.idmap.next")
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .and_then(|v| {
            v.get(0)
                .and_then(|e| e.get("Maprange"))
                .and_then(|m| m.as_u64())
        })
        .filter(|m| *m >= IDS_PER_INSTANCE)
        .unwrap_or(IDS_PER_INSTANCE)
}

/// An instance's id range, claimed in the database under its name. Dropped before the
/// instance's row is written (the create failed), it releases the range; once the row exists
/// the claim stays with it, and goes when the instance is deleted.
#[derive(Debug)]
pub(crate) struct IdmapClaim {
    db: Db,
    name: String,
    /// The first host id.
    pub base: u64,
    /// How many ids.
    pub size: u64,
}

impl Drop for IdmapClaim {
    fn drop(&mut self) {
        if let Err(e) = crate::store::idmap::release_unused(&self.db, &self.name, self.base) {
            tracing::warn!(instance = %self.name, error = %e, "releasing an id range failed");
        }
    }
}

/// Claims an id range for new instance `name`: each instance gets its own 65536 ids,
/// overlapping no other instance's (LXD's security.idmap.isolated) and inside what silo-priv
/// says is usable. Picking the base and recording it are one transaction under the database's
/// one lock, so concurrent creates, copies and imports get distinct ranges.
pub(crate) fn claim_idmap(
    db: &Db,
    name: &str,
    ranges: &IdRanges,
    size: u64,
) -> Result<IdmapClaim, DomainError> {
    let base = crate::store::idmap::claim(db, name, size / IDS_PER_INSTANCE, |used| {
        first_free_base(&ranges.usable, used, size)
    })?;
    let base = base.ok_or_else(|| {
        let have: Vec<String> = ranges
            .usable
            .iter()
            .map(|r| format!("{}:{}", r.start, r.count))
            .collect();
        DomainError::Conflict(format!(
            "no free id range of {size} ids left in {}; delete an instance or give root a larger subordinate range in /etc/subuid and /etc/subgid",
            have.join(", ")
        ))
    })?;
    Ok(IdmapClaim {
        db: db.clone(),
        name: name.to_string(),
        base,
        size,
    })
}

pub(crate) fn idmap_json(base: u64, size: u64) -> String {
    json!([
        {"Isuid": true, "Isgid": false, "Hostid": base, "Nsid": 0, "Maprange": size},
        {"Isuid": false, "Isgid": true, "Hostid": base, "Nsid": 0, "Maprange": size},
    ])
    .to_string()
}

/// The writable part of an instance (PUT/PATCH).
#[derive(Debug, Clone, Deserialize)]
pub struct Writable {
    /// Config (volatile keys are kept from the record).
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    /// Devices.
    #[serde(default)]
    pub devices: Option<BTreeMap<String, Device>>,
    /// Profiles.
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Ephemeral.
    #[serde(default)]
    pub ephemeral: Option<bool>,
}

/// Applies a PUT (replace) or PATCH (merge) after validating the result.
pub fn apply(db: &Db, name: &str, w: Writable, patch: bool) -> Result<Instance, DomainError> {
    let i = apply_dry(db, name, w, patch)?;
    write(db, &i, false)?;
    Ok(i)
}

/// Computes and validates what [`apply`] would store, without storing it.
pub fn apply_dry(db: &Db, name: &str, w: Writable, patch: bool) -> Result<Instance, DomainError> {
    let mut i = get(db, name)?;
    let volatile: BTreeMap<String, String> = i
        .config
        .iter()
        .filter(|(k, _)| k.starts_with("volatile."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(cfg) = w.config {
        let user: BTreeMap<String, String> = cfg
            .into_iter()
            .filter(|(k, _)| !k.starts_with("volatile."))
            .collect();
        validate_config(&user, false)?;
        if patch {
            for (k, v) in user {
                if v.is_empty() {
                    i.config.remove(&k);
                } else {
                    i.config.insert(k, v);
                }
            }
        } else {
            i.config = user;
            i.config.extend(volatile);
        }
    }
    if let Some(d) = w.devices {
        validate_devices(db, &d)?;
        if patch {
            i.devices.extend(d);
        } else {
            i.devices = d;
        }
    }
    if let Some(p) = w.profiles {
        i.profiles = p;
    }
    if let Some(d) = w.description {
        i.description = d;
    }
    if let Some(e) = w.ephemeral {
        i.ephemeral = e;
    }
    let profiles = load_profiles(db, &i.profiles)?;
    let (_, ed) = expand(&profiles, &i.config, &i.devices);
    crate::service::networks::check_nic_claims(db, &i.name, &i.config, &ed)?;
    let root = root_pool(&ed).map_err(DomainError::BadRequest)?;
    if root != i.pool {
        return Err(DomainError::BadRequest(format!("the root disk cannot move from pool {:?} to {root:?} by editing; moving instances comes with copy/move", i.pool)));
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::profile::Profile;

    fn r(start: u64, count: u64) -> IdRange {
        IdRange { start, count }
    }

    #[test]
    fn first_free_base_skips_used_and_unaligned_ranges() {
        let u = [r(1_000_000, 4 * 65536)];
        assert_eq!(first_free_base(&u, &[], 65536), Some(1_000_000));
        assert_eq!(first_free_base(&u, &[1_000_000], 65536), Some(1_065_536));
        // An older base off the grid still blocks what it overlaps.
        assert_eq!(
            first_free_base(&u, &[1_000_000, 1_065_536 + 10], 65536),
            Some(1_065_536 + 10 + 65536)
        );
        assert_eq!(
            first_free_base(&u, &[1_000_000, 1_065_536, 1_131_072, 1_196_608], 65536),
            None
        );
        // The next usable range when the first is full; too-small ranges are skipped.
        let u = [r(1_000_000, 65536), r(2_000_000, 100), r(3_000_000, 65536)];
        assert_eq!(first_free_base(&u, &[1_000_000], 65536), Some(3_000_000));
        assert_eq!(first_free_base(&u, &[1_000_000, 3_000_000], 65536), None);
        // A nesting instance's several blocks need that many free in a row.
        let u = [r(1_000_000, 4 * 65536)];
        assert_eq!(
            first_free_base(&u, &[1_065_536], 2 * 65536),
            Some(1_131_072)
        );
        assert_eq!(
            first_free_base(&u, &[1_131_072], 2 * 65536),
            Some(1_000_000)
        );
        assert_eq!(
            first_free_base(&u, &[1_065_536, 1_196_608], 2 * 65536),
            None
        );
        assert_eq!(first_free_base(&u, &[], 4 * 65536), Some(1_000_000));
    }

    #[test]
    fn idmap_sizes_round_up_to_blocks_and_are_read_back() {
        let cfg = |v: &str| BTreeMap::from([("security.idmap.size".to_string(), v.to_string())]);
        assert_eq!(wanted_idmap_size(&BTreeMap::new()).ok(), Some(65536));
        assert_eq!(wanted_idmap_size(&cfg("65536")).ok(), Some(65536));
        assert_eq!(wanted_idmap_size(&cfg("100000")).ok(), Some(131072));
        assert!(wanted_idmap_size(&cfg("x")).is_err());
        assert!(wanted_idmap_size(&cfg("100000000")).is_err());
        let rec = BTreeMap::from([(
            "volatile.idmap.next".to_string(),
            idmap_json(1_000_000, 196608),
        )]);
        assert_eq!(idmap_size_of(&rec), 196608);
        assert_eq!(idmap_size_of(&BTreeMap::new()), 65536);
    }

    fn ranges() -> IdRanges {
        IdRanges {
            root: vec![r(1_000_000, 3 * 65536)],
            usable: vec![r(1_000_000, 3 * 65536)],
        }
    }

    fn instance(name: &str, base: u64) -> Instance {
        let mut config = BTreeMap::new();
        config.insert("volatile.idmap.base".to_string(), base.to_string());
        Instance {
            name: name.into(),
            kind: "container".into(),
            architecture: "x86_64".into(),
            ephemeral: false,
            stateful: false,
            description: String::new(),
            created_at: String::new(),
            last_used_at: String::new(),
            config,
            devices: BTreeMap::new(),
            profiles: vec![],
            pool: "p".into(),
        }
    }

    #[test]
    fn claims_are_distinct_released_and_follow_the_instance() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        crate::store::pools::insert(&db, &pool()).expect("pool");
        let a = claim_idmap(&db, "a", &ranges(), 65536).expect("a");
        let b = claim_idmap(&db, "b", &ranges(), 65536).expect("b");
        assert_eq!((a.base, b.base), (1_000_000, 1_065_536));
        // b's create fails: its range is free again.
        drop(b);
        let c = claim_idmap(&db, "c", &ranges(), 65536).expect("c");
        assert_eq!(c.base, 1_065_536);
        // a's create succeeds: its claim outlives the guard, follows a rename, and goes with
        // the instance.
        write(&db, &instance("a", a.base), true).expect("write");
        drop(a);
        let d = claim_idmap(&db, "d", &ranges(), 65536).expect("d");
        assert_eq!(d.base, 1_131_072);
        let full = claim_idmap(&db, "e", &ranges(), 65536).unwrap_err();
        assert!(full.to_string().contains("no free id range"), "{full}");
        crate::store::instances::rename(&db, "a", "a2").expect("rename");
        let claims = crate::store::idmap::all(&db).expect("claims");
        assert!(
            claims.contains(&(1_000_000, "a2".to_string())),
            "{claims:?}"
        );
        crate::store::instances::delete(&db, "a2").expect("delete");
        assert_eq!(
            claim_idmap(&db, "e", &ranges(), 65536).expect("e").base,
            1_000_000
        );
    }

    fn pool() -> crate::model::pool::Pool {
        crate::model::pool::Pool {
            name: "p".into(),
            driver: "dir".into(),
            description: String::new(),
            config: BTreeMap::new(),
        }
    }

    #[test]
    fn a_listing_expands_profiles_exactly_as_a_single_get_does() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        crate::store::pools::insert(&db, &pool()).expect("pool");
        let mut p = Profile {
            name: "p".into(),
            ..Default::default()
        };
        p.config.insert("limits.cpu".into(), "2".into());
        crate::store::profiles::put(&db, &p).expect("profile");
        // Listed twice (a record an older silod let through): neither path expands it.
        let mut twice = instance("twice", 1_000_000);
        twice.profiles = vec!["p".into(), "p".into()];
        let mut once = instance("once", 1_065_536);
        once.profiles = vec!["p".into()];
        for i in [&twice, &once] {
            write(&db, i, true).expect("write");
        }
        let all = crate::service::expansion::Expander::load(&db).expect("profiles");
        for i in [&twice, &once] {
            let single = expand(
                &load_profiles(&db, &i.profiles).unwrap_or_default(),
                &i.config,
                &i.devices,
            );
            let listed = all.expand(&i.profiles, &i.config, &i.devices);
            assert_eq!(single, listed, "{}", i.name);
        }
        let (config, _) = all.expand(&once.profiles, &once.config, &once.devices);
        assert_eq!(config["limits.cpu"], "2");
        let (config, _) = all.expand(&twice.profiles, &twice.config, &twice.devices);
        assert!(
            !config.contains_key("limits.cpu"),
            "a profile listed twice is not expanded"
        );
        let err = load_profiles(&db, &twice.profiles).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    #[test]
    fn a_store_failure_loading_profiles_is_not_profile_not_found() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        let p = Profile {
            name: "p".into(),
            ..Default::default()
        };
        crate::store::profiles::put(&db, &p).expect("profile");
        crate::store::damage(&db, "profiles", "devices", "p", "x");
        let err = load_profiles(&db, &["p".to_string()]).unwrap_err();
        assert_eq!(err.status(), 500, "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");
        // Only the instances using the damaged profile are refused.
        crate::store::profiles::put(
            &db,
            &Profile {
                name: "fine".into(),
                ..Default::default()
            },
        )
        .expect("fine");
        assert_eq!(
            load_profiles(&db, &["fine".to_string()])
                .expect("fine")
                .len(),
            1
        );
        let missing = load_profiles(&db, &["q".to_string()]).unwrap_err();
        assert_eq!(
            (missing.status(), missing.to_string()),
            (400, "profile \"q\" not found".to_string())
        );
    }

    #[test]
    fn a_corrupt_config_is_neither_read_as_empty_nor_written_back() {
        let t = tempfile::tempdir().expect("tmp");
        let db = Db::open(&t.path().join("silo.db")).expect("open");
        crate::store::pools::insert(&db, &pool()).expect("pool");
        write(&db, &instance("a", 1_000_000), true).expect("write");
        let bad = "{\"volatile.idmap.base\": \"1000000\", oops";
        crate::store::damage(&db, "instances", "config", "a", bad);
        // Before: read as {} and the next write saved {"volatile.last_state.power": ...},
        // losing the instance's id range.
        let read = get(&db, "a").expect_err("corrupt");
        assert_eq!(read.status(), 500);
        assert!(
            read.to_string()
                .contains("\"a\" of table instances: column config is corrupt"),
            "{read}"
        );
        set_keys(&db, "a", &[("volatile.last_state.power", "STOPPED")], None).expect_err("refused");
        assert_eq!(
            crate::store::raw_column(&db, "instances", "config", "a"),
            bad
        );
    }
}
