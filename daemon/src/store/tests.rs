//! The store against a database in a temp dir: round trips of every table, corrupt columns,
//! not-found and conflict texts, exclusive id-range claims. Runs as a normal user.

use std::collections::BTreeMap;

use tempfile::TempDir;

use crate::model::backup::Backup;
use crate::model::image::{Image, ImageAlias};
use crate::model::instance::{Instance, Snapshot};
use crate::model::network::Network;
use crate::model::pool::Pool;
use crate::model::profile::{Device, Profile};
use crate::store::db::Db;
use crate::store::error::StoreError;
use crate::store::{
    backups, config, idmap, images, instances, local, networks, pools, profiles, snapshots,
    GlobalStore, LocalStore,
};

fn db() -> (TempDir, Db) {
    let t = tempfile::tempdir().expect("tmp");
    let db = Db::open(&t.path().join("silo.db")).expect("open");
    pools::insert(&db, &pool("p")).expect("pool");
    (t, db)
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pool(name: &str) -> Pool {
    Pool {
        name: name.into(),
        driver: "dir".into(),
        description: "d".into(),
        config: map(&[("source", "/x")]),
    }
}

fn root() -> BTreeMap<String, Device> {
    let mut d = BTreeMap::new();
    d.insert(
        "root".to_string(),
        map(&[("type", "disk"), ("path", "/"), ("pool", "p")]),
    );
    d
}

fn instance(name: &str) -> Instance {
    Instance {
        name: name.into(),
        kind: "container".into(),
        architecture: "x86_64".into(),
        ephemeral: true,
        stateful: false,
        description: "desc".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: String::new(),
        config: map(&[("volatile.idmap.base", "1000000"), ("limits.cpu", "1")]),
        devices: root(),
        profiles: vec!["default".into()],
        pool: "p".into(),
    }
}

/// Writes a raw column value, as a damaged file or a bad hand edit would leave it.
fn damage(db: &Db, sql: &str) {
    db.with(|c| c.execute(sql, [])).expect("damage");
}

fn raw(db: &Db, sql: &str) -> String {
    db.with(|c| c.query_row(sql, [], |r| r.get(0)))
        .expect("raw")
}

fn assert_corrupt(e: StoreError, table: &str, row: &str, column: &str) {
    match &e {
        StoreError::Corrupt {
            table: t,
            row: r,
            column: c,
            ..
        } => {
            assert_eq!((*t, r.as_str(), *c), (table, row, column), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(table) && msg.contains(row) && msg.contains(column),
                "{msg}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn instances_round_trip() {
    let (_t, db) = db();
    let mut a = instance("a");
    instances::insert(&db, &a).expect("insert");
    instances::insert(&db, &instance("b")).expect("insert b");
    assert_eq!(instances::get(&db, "a").expect("get"), a);
    a.description = "changed".into();
    a.devices.clear();
    instances::update(&db, &a).expect("update");
    assert_eq!(instances::get(&db, "a").expect("get"), a);
    instances::set_keys(
        &db,
        "a",
        &[("volatile.x", "1"), ("limits.cpu", "")],
        Some("t1"),
    )
    .expect("keys");
    let got = instances::get(&db, "a").expect("get");
    assert_eq!(got.config.get("volatile.x").map(String::as_str), Some("1"));
    assert!(!got.config.contains_key("limits.cpu"));
    assert_eq!(got.last_used_at, "t1");
    instances::rename(&db, "a", "c").expect("rename");
    let names: Vec<String> = instances::all(&db)
        .expect("all")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["b", "c"]);
    assert!(instances::exists(&db, "c").expect("exists"));
    instances::delete(&db, "c").expect("delete");
    assert!(!instances::exists(&db, "c").expect("exists"));
}

#[test]
fn not_found_and_conflict_texts_are_the_apis() {
    let (_t, db) = db();
    let e = |r: Result<(), StoreError>| r.expect_err("should fail").to_string();
    assert_eq!(
        instances::get(&db, "x").expect_err("missing").to_string(),
        "instance \"x\" not found"
    );
    instances::insert(&db, &instance("a")).expect("a");
    instances::insert(&db, &instance("b")).expect("b");
    assert_eq!(
        e(instances::insert(&db, &instance("a"))),
        "instance \"a\" already exists"
    );
    assert_eq!(
        e(instances::rename(&db, "a", "b")),
        "instance \"b\" already exists"
    );
    assert_eq!(
        e(instances::rename(&db, "x", "y")),
        "instance \"x\" not found"
    );
    assert_eq!(
        e(instances::update(&db, &instance("x"))),
        "instance \"x\" not found"
    );
    assert_eq!(
        e(instances::set_keys(&db, "x", &[], None)),
        "instance \"x\" not found"
    );
    assert_eq!(
        profiles::get(&db, "x").expect_err("missing").to_string(),
        "profile \"x\" not found"
    );
    assert_eq!(
        networks::get(&db, "n").expect_err("missing").to_string(),
        "network \"n\" not found"
    );
    assert_eq!(
        pools::get(&db, "q").expect_err("missing").to_string(),
        "storage pool \"q\" not found"
    );
    assert_eq!(
        e(pools::insert(&db, &pool("p"))),
        "storage pool \"p\" already exists"
    );
    pools::insert_custom_volume(&db, "p", "v", "").expect("volume");
    assert_eq!(
        e(pools::insert_custom_volume(&db, "p", "v", "")),
        "custom volume \"v\" already exists in pool \"p\""
    );
    assert_eq!(
        snapshots::get(&db, "a", "s")
            .expect_err("missing")
            .to_string(),
        "snapshot \"s\" of instance \"a\" not found"
    );
    assert_eq!(
        backups::get(&db, "a", "b")
            .expect_err("missing")
            .to_string(),
        "backup \"b\" of instance \"a\" not found"
    );
    assert_eq!(e(images::alias_delete(&db, "al")), "alias \"al\" not found");
}

#[test]
fn a_corrupt_column_is_an_error_naming_the_row_and_is_not_written_over() {
    let (_t, db) = db();
    instances::insert(&db, &instance("a")).expect("a");
    instances::insert(&db, &instance("b")).expect("b");
    let bad = "{\"volatile.idmap.base\": \"1000000\", oops";
    damage(
        &db,
        &format!("UPDATE instances SET config = '{bad}' WHERE name = 'a'"),
    );
    assert_corrupt(
        instances::get(&db, "a").expect_err("corrupt"),
        "instances",
        "a",
        "config",
    );
    assert_corrupt(
        instances::all(&db).expect_err("corrupt"),
        "instances",
        "a",
        "config",
    );
    // Nothing reads it as empty and saves that back: every write of the row is refused and
    // the stored text stays as it was, for a human to repair.
    assert_corrupt(
        instances::set_keys(&db, "a", &[("volatile.last_state.power", "STOPPED")], None)
            .expect_err("refused"),
        "instances",
        "a",
        "config",
    );
    assert_corrupt(
        instances::update(&db, &instance("a")).expect_err("refused"),
        "instances",
        "a",
        "config",
    );
    assert_eq!(
        raw(&db, "SELECT config FROM instances WHERE name = 'a'"),
        bad
    );
    // Nor can its id range be handed out while it is unknown.
    assert_corrupt(
        idmap::claim(&db, "new", 1, |_| Some(2_000_000)).expect_err("refused"),
        "instances",
        "a",
        "config",
    );
    // The other row is untouched and still reads.
    assert_eq!(instances::get(&db, "b").expect("b"), instance("b"));
    // A wrong shape is as corrupt as broken JSON.
    damage(&db, "UPDATE instances SET profiles = '{}' WHERE name = 'b'");
    assert_corrupt(
        instances::get(&db, "b").expect_err("corrupt"),
        "instances",
        "b",
        "profiles",
    );
    // Every JSON column of every table decodes the same way.
    profiles::put(&db, &profile("pr")).expect("profile");
    damage(&db, "UPDATE profiles SET devices = 'x' WHERE name = 'pr'");
    assert_corrupt(
        profiles::get(&db, "pr").expect_err("corrupt"),
        "profiles",
        "pr",
        "devices",
    );
    assert_corrupt(
        profiles::put(&db, &profile("pr")).expect_err("refused"),
        "profiles",
        "pr",
        "devices",
    );
    networks::insert(&db, &network("n")).expect("network");
    damage(&db, "UPDATE networks SET config = '' WHERE name = 'n'");
    assert_corrupt(
        networks::update(&db, &network("n")).expect_err("refused"),
        "networks",
        "n",
        "config",
    );
    damage(
        &db,
        "UPDATE storage_pools SET config = '[' WHERE name = 'p'",
    );
    assert_corrupt(
        pools::get(&db, "p").expect_err("corrupt"),
        "storage_pools",
        "p",
        "config",
    );
    images::insert(&db, &image("ab")).expect("image");
    damage(
        &db,
        "UPDATE images SET properties = '1' WHERE fingerprint = 'ab'",
    );
    assert_corrupt(
        images::update(&db, &image("ab")).expect_err("refused"),
        "images",
        "ab",
        "properties",
    );
    snapshots::insert(&db, &snapshot("b", "s0")).expect("snapshot");
    damage(
        &db,
        "UPDATE snapshots SET devices = 'null' WHERE name = 's0'",
    );
    assert_corrupt(
        snapshots::of_instance(&db, "b").expect_err("corrupt"),
        "snapshots",
        "b/s0",
        "devices",
    );
}

fn profile(name: &str) -> Profile {
    Profile {
        name: name.into(),
        description: "pd".into(),
        config: map(&[("limits.memory", "1GiB")]),
        devices: root(),
    }
}

fn network(name: &str) -> Network {
    Network {
        name: name.into(),
        kind: "bridge".into(),
        description: "nd".into(),
        config: map(&[("ipv4.address", "10.1.2.1/24")]),
    }
}

fn image(fp: &str) -> Image {
    Image {
        fingerprint: fp.into(),
        filename: "f.tar.xz".into(),
        size: 1 << 40,
        public: true,
        architecture: "x86_64".into(),
        kind: "container".into(),
        created_at: "c".into(),
        expires_at: "e".into(),
        uploaded_at: "u".into(),
        last_used_at: String::new(),
        auto_update: false,
        cached: true,
        split: true,
        compression: ".tar.xz".into(),
        properties: map(&[("os", "debian")]),
        profiles: vec!["default".into()],
        update_source: Some(crate::model::image::UpdateSource {
            alias: "debian/12".into(),
            certificate: String::new(),
            protocol: "simplestreams".into(),
            server: "https://images.example".into(),
            image_type: "container".into(),
        }),
    }
}

fn snapshot(instance: &str, name: &str) -> Snapshot {
    Snapshot {
        instance: instance.into(),
        name: name.into(),
        created_at: format!("2026-01-01T00:00:0{}Z", name.len()),
        expires_at: String::new(),
        description: "sd".into(),
        config: map(&[("limits.cpu", "2")]),
        devices: root(),
        profiles: vec!["default".into()],
        architecture: "x86_64".into(),
    }
}

#[test]
fn profiles_round_trip_and_rename_follows_instances() {
    let (_t, db) = db();
    let mut p = profile("base");
    profiles::put(&db, &p).expect("put");
    profiles::put(&db, &profile("other")).expect("put");
    assert_eq!(profiles::get(&db, "base").expect("get"), p);
    p.description = "new".into();
    profiles::put(&db, &p).expect("replace");
    assert_eq!(profiles::get(&db, "base").expect("get"), p);
    let mut i = instance("a");
    i.profiles = vec!["other".into(), "base".into()];
    instances::insert(&db, &i).expect("a");
    assert_eq!(
        profiles::rename(&db, "base", "other")
            .expect_err("taken")
            .to_string(),
        "profile \"other\" already exists"
    );
    profiles::rename(&db, "base", "renamed").expect("rename");
    assert_eq!(
        instances::get(&db, "a").expect("a").profiles,
        ["other", "renamed"]
    );
    let all = profiles::by_name(&db).expect("map");
    assert_eq!(all.len(), 2);
    assert_eq!(all["renamed"].as_ref().expect("decodes").description, "new");
    profiles::delete(&db, "renamed").expect("delete");
    assert!(profiles::get(&db, "renamed").is_err());
}

#[test]
fn images_and_aliases_round_trip() {
    let (_t, db) = db();
    let mut i = image("abcd");
    images::insert(&db, &i).expect("insert");
    assert_eq!(
        images::insert(&db, &i).expect_err("dup").to_string(),
        "image \"abcd\" already exists"
    );
    assert_eq!(images::get(&db, "abcd").expect("get"), Some(i.clone()));
    i.public = false;
    i.properties.insert("release".into(), "12".into());
    images::update(&db, &i).expect("update");
    images::touch(&db, "abcd", "now").expect("touch");
    i.last_used_at = "now".into();
    assert_eq!(images::all(&db).expect("all"), [i.clone()]);
    let a = ImageAlias {
        name: "deb".into(),
        target: "abcd".into(),
        description: "ad".into(),
    };
    images::alias_put(&db, &a).expect("alias");
    assert_eq!(
        images::aliases(&db).expect("aliases"),
        std::slice::from_ref(&a)
    );
    images::alias_put(&db, &a).expect("alias again");
    images::alias_put(
        &db,
        &ImageAlias {
            name: "other".into(),
            ..a.clone()
        },
    )
    .expect("other");
    assert_eq!(
        images::alias_rename(&db, "deb", "other")
            .expect_err("taken")
            .to_string(),
        "alias \"other\" already exists"
    );
    images::alias_rename(&db, "deb", "debian").expect("rename");
    images::alias_delete(&db, "debian").expect("delete");
    // Aliases go with their image.
    images::delete(&db, "abcd").expect("delete");
    assert!(images::aliases(&db).expect("aliases").is_empty());
    assert_eq!(images::get(&db, "abcd").expect("get"), None);
}

#[test]
fn networks_pools_volumes_round_trip() {
    let (_t, db) = db();
    let mut n = network("br1");
    networks::insert(&db, &n).expect("insert");
    assert_eq!(
        networks::insert(&db, &n).expect_err("dup").to_string(),
        "network \"br1\" already exists"
    );
    n.config.insert("ipv4.nat".into(), "true".into());
    networks::update(&db, &n).expect("update");
    assert_eq!(networks::all(&db).expect("all"), [n]);
    networks::delete(&db, "br1").expect("delete");
    assert!(networks::all(&db).expect("all").is_empty());

    pools::insert(&db, &pool("q")).expect("q");
    pools::set_description(&db, "q", "qq").expect("describe");
    let q = pools::get(&db, "q").expect("q");
    assert_eq!(
        (q.description.as_str(), q.config.clone()),
        ("qq", pool("q").config)
    );
    pools::insert_custom_volume(&db, "q", "v1", "vd").expect("v1");
    assert_eq!(
        pools::custom_volumes(&db, "q").expect("volumes"),
        [("v1".to_string(), "vd".to_string(), BTreeMap::new())]
    );
    pools::delete_custom_volume(&db, "q", "v1").expect("delete v1");
    local::add_image_volume(&db, "q", "abcd").expect("image volume");
    assert_eq!(local::image_volumes(&db, "q").expect("iv"), ["abcd"]);
    local::remove_image_volume(&db, "q", "abcd").expect("rm");
    assert!(local::image_volumes(&db, "q").expect("iv").is_empty());
    pools::delete(&db, "q").expect("delete");
    assert_eq!(pools::all(&db).expect("all"), [pool("p")]);
}

#[test]
fn snapshots_and_backups_round_trip_and_follow_the_instance() {
    let (_t, db) = db();
    instances::insert(&db, &instance("a")).expect("a");
    let s0 = snapshot("a", "s0");
    let mut s1 = snapshot("a", "snap1");
    s1.expires_at = "2030-01-01T00:00:00Z".into();
    snapshots::insert(&db, &s0).expect("s0");
    snapshots::insert(&db, &s1).expect("s1");
    assert_eq!(
        snapshots::insert(&db, &s0).expect_err("dup").to_string(),
        "snapshot \"s0\" of instance \"a\" already exists"
    );
    assert_eq!(
        snapshots::of_instance(&db, "a").expect("list"),
        [s0.clone(), s1.clone()]
    );
    assert_eq!(snapshots::expiring(&db).expect("exp"), [s1.clone()]);
    snapshots::rename(&db, "a", "s0", "s2").expect("rename");
    assert_eq!(
        snapshots::get(&db, "a", "s2").expect("s2").config,
        s0.config
    );
    snapshots::delete(&db, "a", "s2").expect("delete");

    let b = Backup {
        instance: "a".into(),
        name: "b0".into(),
        created_at: "c".into(),
        expires_at: "x".into(),
        instance_only: true,
        optimized: false,
    };
    backups::insert(&db, &b).expect("b0");
    assert_eq!(
        backups::insert(&db, &b).expect_err("dup").to_string(),
        "backup \"b0\" of instance \"a\" already exists"
    );
    assert_eq!(
        backups::of_instance(&db, "a").expect("list"),
        std::slice::from_ref(&b)
    );
    assert_eq!(
        backups::expiring(&db).expect("exp"),
        std::slice::from_ref(&b)
    );
    backups::rename(&db, "a", "b0", "b1").expect("rename");
    assert!(backups::get(&db, "a", "b1").expect("b1").instance_only);
    // Records follow a rename of their instance and go with its deletion.
    instances::rename(&db, "a", "z").expect("rename");
    assert_eq!(snapshots::of_instance(&db, "z").expect("list").len(), 1);
    assert_eq!(backups::all(&db).expect("all")[0].instance, "z");
    instances::delete(&db, "z").expect("delete");
    assert!(snapshots::expiring(&db).expect("exp").is_empty());
    assert!(backups::all(&db).expect("all").is_empty());
}

#[test]
fn server_config_round_trip() {
    let (_t, db) = db();
    let cfg = map(&[
        ("core.https_address", ":8443"),
        ("images.auto_update_interval", "0"),
    ]);
    config::replace(&db, &cfg).expect("replace");
    assert_eq!(config::all(&db).expect("all"), cfg);
    assert_eq!(
        config::get(&db, "core.https_address")
            .expect("get")
            .as_deref(),
        Some(":8443")
    );
    config::replace(&db, &BTreeMap::new()).expect("clear");
    assert_eq!(config::get(&db, "core.https_address").expect("get"), None);
}

#[test]
fn the_sqlite_store_serves_both_interfaces() {
    let (_t, db) = db();
    let g: &dyn GlobalStore = &db;
    g.insert_instance(&instance("a")).expect("insert");
    let l: &dyn LocalStore = &db;
    l.set_volatile_keys("a", &[("volatile.k", "v")], Some("now"))
        .expect("keys");
    let got = g.instance("a").expect("get");
    assert_eq!(
        (got.config["volatile.k"].as_str(), got.last_used_at.as_str()),
        ("v", "now")
    );
    // Running state is volatile keys only: the definition changes through the global store.
    let e = l
        .set_volatile_keys("a", &[("limits.cpu", "4")], None)
        .expect_err("not running state");
    assert!(matches!(e, StoreError::NotVolatile { .. }), "{e}");
    assert_eq!(
        g.instance("a")
            .expect("get")
            .config
            .get("limits.cpu")
            .map(String::as_str),
        Some("1")
    );
    g.put_profile(&profile("pr")).expect("profile");
    assert_eq!(g.profiles().expect("profiles").len(), 1);
    let base = l
        .claim_idmap("new", 1, &mut |used: &[u64]| {
            assert!(used.contains(&1_000_000), "{used:?}");
            Some(2_000_000)
        })
        .expect("claim");
    assert_eq!(base, Some(2_000_000));
    assert!(l
        .idmap_claims()
        .expect("claims")
        .contains(&(2_000_000, "new".to_string())));
}

/// The lowest free base of 65536 ids from 1_000_000 (aligned, for the test).
fn lowest_free(used: &[u64]) -> Option<u64> {
    (0..1000u64)
        .map(|k| 1_000_000 + k * 65536)
        .find(|b| !used.contains(b))
}

#[test]
fn idmap_claims_are_exclusive_under_concurrent_claimers() {
    let (_t, db) = db();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|n| {
                        idmap::claim(&db, &format!("c{t}-{n}"), 1, |used| {
                            // Widen the window between reading the bases and recording the
                            // pick: another claimer must still not get in between.
                            std::thread::yield_now();
                            lowest_free(used)
                        })
                        .expect("claim")
                        .expect("a free base")
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    all.sort_unstable();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (100, 100), "two claimers got one base");
    assert_eq!(idmap::all(&db).expect("claims").len(), 100);
    // A claim of a create that failed goes; one whose instance was recorded stays.
    let claims = idmap::all(&db).expect("claims");
    let base_of = |who: &str| {
        claims
            .iter()
            .find(|(_, w)| w == who)
            .map(|(b, _)| *b)
            .expect("claimed")
    };
    idmap::release_unused(&db, "c0-0", base_of("c0-0")).expect("release");
    instances::insert(&db, &instance("c0-1")).expect("recorded");
    idmap::release_unused(&db, "c0-1", base_of("c0-1")).expect("kept");
    let left = idmap::all(&db).expect("claims");
    assert_eq!(left.len(), 99);
    assert!(left.iter().all(|(_, who)| who != "c0-0"));
}

#[test]
fn records_from_before_the_claims_table_keep_their_ids() {
    let t = tempfile::tempdir().expect("tmp");
    let p = t.path().join("silo.db");
    let db = Db::open(&p).expect("open");
    pools::insert(&db, &pool("p")).expect("pool");
    let with_base = |name: &str, base: u64| {
        let mut i = instance(name);
        i.config
            .insert("volatile.idmap.base".into(), base.to_string());
        i
    };
    instances::insert(&db, &with_base("old1", 1_000_000)).expect("old1");
    instances::insert(&db, &with_base("old2", 1_000_000)).expect("old2");
    instances::insert(&db, &with_base("old3", 1_131_072)).expect("old3");
    // Back to schema 5, as an older silod left it (the bug: two instances on one base).
    db.with(|c| {
        c.execute_batch(
            "DROP TRIGGER idmap_ranges_follow_rename; DROP TRIGGER idmap_ranges_follow_delete;
             DROP TABLE idmap_ranges; ALTER TABLE images DROP COLUMN update_source;
             DROP TABLE certificates; DROP TABLE custom_volume_snapshots;
             DROP TABLE custom_volume_backups; DROP TABLE warnings;
             DROP TABLE projects; DROP TABLE replica;
             PRAGMA user_version = 5;",
        )
    })
    .expect("downgrade");
    drop(db);
    let db = Db::open(&p).expect("migrate");
    let claimed = idmap::all(&db).expect("claims");
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    assert_eq!(claimed[0].0, 1_000_000);
    assert_eq!(claimed[1], (1_131_072, "old3".to_string()));
    let n = idmap::claim(&db, "new", 1, lowest_free).expect("new");
    assert_eq!(n, Some(1_065_536));
    // A claim left by a create that never finished is dropped when the database opens.
    drop(db);
    let db = Db::open(&p).expect("reopen");
    assert_eq!(idmap::all(&db).expect("claims").len(), 2);
}

#[test]
fn volume_snapshots_follow_their_volume() {
    use crate::model::pool::VolumeSnapshot;
    use crate::store::volume_snapshots as vs;
    let (_t, db) = db();
    let mut cfg = std::collections::BTreeMap::new();
    cfg.insert("user.k".to_string(), "v".to_string());
    pools::insert_custom_volume_with(&db, "p", "v1", "d", &cfg).expect("v1");
    assert_eq!(pools::custom_volumes(&db, "p").expect("vols")[0].2, cfg);
    let snap = |name: &str, expires: &str| VolumeSnapshot {
        pool: "p".into(),
        volume: "v1".into(),
        name: name.into(),
        created_at: format!("2026-01-01T00:00:0{}Z", name.len()),
        expires_at: expires.into(),
        description: String::new(),
        config: cfg.clone(),
    };
    vs::insert(&db, &snap("s0", "")).expect("s0");
    vs::insert(&db, &snap("s01", "2001-01-01T00:00:00Z")).expect("s01");
    assert!(matches!(
        vs::insert(&db, &snap("s0", "")),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(vs::expiring(&db).expect("expiring").len(), 1);
    vs::update(&db, "p", "v1", "s0", "desc", "2030-01-01T00:00:00Z").expect("update");
    vs::rename(&db, "p", "v1", "s0", "first").expect("rename");
    assert_eq!(
        vs::get(&db, "p", "v1", "first").expect("get").description,
        "desc"
    );
    // A volume's rename carries its snapshots' records; its delete drops them.
    pools::rename_custom_volume(&db, "p", "v1", "v2").expect("rename volume");
    assert_eq!(vs::of_volume(&db, "p", "v2").expect("of v2").len(), 2);
    assert!(vs::of_volume(&db, "p", "v1").expect("of v1").is_empty());
    pools::delete_custom_volume(&db, "p", "v2").expect("delete volume");
    assert!(vs::of_volume(&db, "p", "v2").expect("after").is_empty());
}

#[test]
fn the_clusters_copy_applies_puts_deletes_renames_and_full_reads() {
    use crate::store::replica::apply_for_test;
    use serde_json::json;
    let (_t, db) = db();
    let mut i = instance("c1");
    i.profiles = vec!["default".into(), "web".into()];
    instances::insert(&db, &i).expect("c1");
    config::replace(
        &db,
        &map(&[("core.https_address", "10.0.0.1:8443"), ("images.x", "old")]),
    )
    .expect("config");
    let img = image(&"a".repeat(64));
    let alias = ImageAlias {
        name: "deb".into(),
        target: img.fingerprint.clone(),
        description: String::new(),
    };
    // An alias before its image in one answer: applied after it.
    apply_for_test(
        &db,
        &[
            ("aliases", "deb", Some(json!(alias))),
            ("images", &img.fingerprint, Some(json!(img))),
            ("profiles", "web", Some(json!(profile("web")))),
            ("config", "images.x", Some(json!("new"))),
        ],
        false,
    )
    .expect("apply");
    assert_eq!(
        images::get(&db, &img.fingerprint).expect("get"),
        Some(img.clone())
    );
    assert_eq!(images::aliases(&db).expect("aliases"), vec![alias.clone()]);
    assert_eq!(profiles::get(&db, "web").expect("web"), profile("web"));
    assert_eq!(
        config::get(&db, "images.x").expect("x").as_deref(),
        Some("new")
    );
    // A rename: the profile's rows move, and the instances' mentions with a note.
    let mut renamed = profile("web");
    renamed.name = "www".into();
    apply_for_test(
        &db,
        &[
            ("profiles", "web", None),
            ("profiles", "www", Some(json!(renamed))),
            (
                "profile-renames",
                "web",
                Some(json!({"from": "web", "to": "www"})),
            ),
        ],
        false,
    )
    .expect("rename");
    assert_eq!(
        instances::get(&db, "c1").expect("c1").profiles,
        vec!["default".to_string(), "www".into()]
    );
    // A re-applied image put keeps its aliases (an upsert, never delete and insert).
    apply_for_test(
        &db,
        &[("images", &img.fingerprint, Some(json!(img)))],
        false,
    )
    .expect("again");
    assert_eq!(images::aliases(&db).expect("aliases").len(), 1);
    // A full read: what etcd does not hold goes (the image reported gone), this member's
    // own keys stay.
    let gone = apply_for_test(
        &db,
        &[("profiles", "default", Some(json!(profile("default"))))],
        true,
    )
    .expect("full read");
    assert_eq!(gone, vec![img.fingerprint.clone()]);
    assert!(images::all(&db).expect("images").is_empty());
    assert!(images::aliases(&db).expect("aliases").is_empty());
    let names: Vec<String> = profiles::all(&db)
        .expect("all")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["default"]);
    assert_eq!(
        config::all(&db).expect("config"),
        map(&[("core.https_address", "10.0.0.1:8443")])
    );
    // A record that does not decode is an error naming it, and nothing of its answer lands.
    let e = apply_for_test(
        &db,
        &[
            ("profiles", "ok", Some(json!(profile("ok")))),
            ("profiles", "bad", Some(json!({"config": 3}))),
        ],
        false,
    )
    .expect_err("a bad record");
    assert!(e.to_string().contains("/silo/global/profiles/bad"), "{e}");
    assert!(profiles::get(&db, "ok").is_err());
}
