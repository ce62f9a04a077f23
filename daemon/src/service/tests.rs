//! Unit tests of the service layer through the fake helpers (`helpers::fake`): a database in a
//! temp dir, no root, no kernel. They check the rules that live in silod (id-range claims,
//! profile expansion, nic claims, snapshot naming and expiry, LXD's backup index), not what
//! the helpers do with them (the integration tests in `tests/` do that, as root).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use silo_proto::privileged::{IdRange, IdRanges};
use silo_proto::store::VolumeKind;

use super::*;
use crate::helpers::fake::{self, FakeHost};
use crate::store::db::Db;

const IDS: u64 = 65536;

struct World {
    c: Services,
    host: Arc<FakeHost>,
    _dir: tempfile::TempDir,
}

/// A daemon with a `default` dir pool, the default profile (root disk on it) and root's
/// subordinate ids enough for `instances` instances.
async fn world(instances: u64) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let range = IdRange {
        start: 1_000_000,
        count: instances * IDS,
    };
    let host = FakeHost::new(IdRanges {
        root: vec![range],
        usable: vec![range],
    });
    let events = events::Events::new();
    let (reaper, stopped) = runtime::Reaper::channel();
    let c = Services {
        helpers: fake::helpers(host.clone()),
        ops: operations::Operations::new(events.clone()),
        events,
        db: Db::open(&dir.path().join("silo.db")).expect("database"),
        state_dir: dir.path().to_path_buf(),
        started: Instant::now(),
        host: HostFacts::default(),
        landlock: String::new(),
        image_locks: Default::default(),
        creating: Default::default(),
        stopping: Default::default(),
        watcher: Default::default(),
        shutdown: Default::default(),
        sockets: Default::default(),
        reaper,
        logs: None,
        backups: None,
        trust: Default::default(),
        https: Default::default(),
        devlxd: Default::default(),
        cluster: Default::default(),
    };
    lifecycle::spawn_reaper(c.clone(), stopped);
    storage::create(&c.db, &c.helpers, "default", "dir", "", BTreeMap::new())
        .await
        .expect("default pool");
    profiles::ensure_default(&c.db, "default").expect("default profile");
    World { c, host, _dir: dir }
}

fn request(v: serde_json::Value) -> instances::CreateRequest {
    serde_json::from_value(v).expect("a create request")
}

async fn create(c: &Services, v: serde_json::Value) -> Result<instances::Instance, DomainError> {
    let (req, image) = lifecycle::prepare(c, request(v))?;
    lifecycle::create(c, req, image).await
}

fn base_of(i: &instances::Instance) -> u64 {
    i.config["volatile.idmap.base"]
        .parse()
        .expect("a numeric idmap base")
}

#[tokio::test]
async fn each_instance_gets_its_own_id_range_and_a_full_host_leaves_nothing_behind() {
    let w = world(3).await;
    let mut bases = Vec::new();
    for n in ["c1", "c2", "c3"] {
        let i = create(&w.c, json!({"name": n, "source": {"type": "none"}}))
            .await
            .expect("create");
        bases.push(base_of(&i));
        assert!(w.host.has_volume("default", VolumeKind::Container, n));
    }
    bases.sort();
    assert_eq!(bases, [1_000_000, 1_000_000 + IDS, 1_000_000 + 2 * IDS]);

    let e = create(&w.c, json!({"name": "c4", "source": {"type": "none"}}))
        .await
        .expect_err("a fourth instance has no ids left");
    assert_eq!(e.status(), 409, "{e}");
    assert!(!w.host.has_volume("default", VolumeKind::Container, "c4"));
    assert_eq!(
        instances::get(&w.c.db, "c4")
            .expect_err("no record")
            .status(),
        404
    );

    // Deleting one frees its range for the next.
    lifecycle::delete(&w.c, "c2").await.expect("delete");
    let i = create(&w.c, json!({"name": "c5", "source": {"type": "none"}}))
        .await
        .expect("the freed range is used again");
    assert_eq!(base_of(&i), 1_000_000 + IDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_share_a_range() {
    let w = world(8).await;
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let c = w.c.clone();
            tokio::spawn(async move {
                create(
                    &c,
                    json!({"name": format!("p{n}"), "source": {"type": "none"}}),
                )
                .await
            })
        })
        .collect();
    let mut bases = Vec::new();
    for t in tasks {
        bases.push(base_of(&t.await.expect("task").expect("create")));
    }
    bases.sort();
    bases.dedup();
    assert_eq!(bases.len(), 8, "two instances share an id range: {bases:?}");
}

#[tokio::test]
async fn profiles_expand_in_order_and_the_instance_wins() {
    let w = world(2).await;
    let mut p = profiles::get(&w.c.db, "default").expect("default profile");
    p.name = "big".into();
    p.config = BTreeMap::from([
        ("limits.memory".to_string(), "1GiB".to_string()),
        ("limits.cpu".to_string(), "2".to_string()),
    ]);
    p.devices = BTreeMap::new();
    profiles::create(&w.c.db, &p).expect("profile");
    let i = create(
        &w.c,
        json!({"name": "c1", "source": {"type": "none"}, "profiles": ["default", "big"],
               "config": {"limits.cpu": "1"}}),
    )
    .await
    .expect("create");
    let loaded = crate::service::expansion::load_profiles(&w.c.db, &i.profiles).expect("profiles");
    let (config, devices) = crate::model::profile::expand(&loaded, &i.config, &i.devices);
    assert_eq!(config["limits.memory"], "1GiB", "from the profile");
    assert_eq!(config["limits.cpu"], "1", "the instance's own value wins");
    assert_eq!(
        devices["root"]["pool"], "default",
        "the root disk from default"
    );

    let e = create(
        &w.c,
        json!({"name": "c2", "source": {"type": "none"}, "profiles": ["default", "missing"]}),
    )
    .await
    .expect_err("a missing profile");
    assert!(e.to_string().contains("missing"), "{e}");
}

#[tokio::test]
async fn a_static_address_or_mac_is_claimed_by_one_instance_only() {
    let w = world(3).await;
    networks::create(
        &w.c.db,
        &w.c.helpers,
        "silotest0",
        "bridge",
        "",
        BTreeMap::from([
            ("ipv4.address".to_string(), "10.201.7.1/24".to_string()),
            ("ipv6.address".to_string(), "none".to_string()),
        ]),
    )
    .await
    .expect("network");
    let nic = |addr: &str, mac: &str| {
        json!({"eth0": {"type": "nic", "network": "silotest0", "name": "eth0",
                        "ipv4.address": addr, "hwaddr": mac}})
    };
    create(
        &w.c,
        json!({"name": "c1", "source": {"type": "none"},
               "devices": nic("10.201.7.10", "00:16:3e:aa:bb:01")}),
    )
    .await
    .expect("first claim");
    let e = create(
        &w.c,
        json!({"name": "c2", "source": {"type": "none"},
               "devices": nic("10.201.7.10", "00:16:3e:aa:bb:02")}),
    )
    .await
    .expect_err("the same address");
    assert_eq!(e.status(), 409, "{e}");
    assert!(e.to_string().contains("c1"), "names the holder: {e}");
    let e = create(
        &w.c,
        json!({"name": "c3", "source": {"type": "none"},
               "devices": nic("10.201.7.11", "00:16:3e:aa:bb:01")}),
    )
    .await
    .expect_err("the same MAC");
    assert_eq!(e.status(), 409, "{e}");
    let e = create(
        &w.c,
        json!({"name": "c4", "source": {"type": "none"},
               "devices": nic("10.99.0.5", "00:16:3e:aa:bb:04")}),
    )
    .await
    .expect_err("outside the network's subnet");
    assert_eq!(e.status(), 400, "{e}");
    assert!(!w.host.has_volume("default", VolumeKind::Container, "c2"));
}

#[tokio::test]
async fn snapshots_are_named_in_turn_and_expire() {
    let w = world(1).await;
    create(&w.c, json!({"name": "c1", "source": {"type": "none"}}))
        .await
        .expect("create");
    assert_eq!(snapshots::next_name(&w.c.db, "c1").expect("name"), "snap0");
    snapshots::create(&w.c, "c1", "snap0", None)
        .await
        .expect("snapshot");
    assert_eq!(snapshots::next_name(&w.c.db, "c1").expect("name"), "snap1");
    assert!(w
        .host
        .has_volume("default", VolumeKind::Snapshot, "c1.snap0"));
    let e = snapshots::create(&w.c, "c1", "snap0", None)
        .await
        .expect_err("a second snap0");
    assert_eq!(e.status(), 409, "{e}");

    // One already expired, one not: expiry removes the first and its volume only.
    snapshots::create(&w.c, "c1", "old", Some("2001-01-01T00:00:00Z".into()))
        .await
        .expect("expired snapshot");
    snapshots::create(&w.c, "c1", "keep", Some("2999-01-01T00:00:00Z".into()))
        .await
        .expect("future snapshot");
    snapshots::expire(&w.c).await;
    let left: Vec<String> = snapshots::list(&w.c.db, "c1")
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(left, ["snap0", "keep"], "oldest first");
    assert!(!w.host.has_volume("default", VolumeKind::Snapshot, "c1.old"));
}

#[test]
fn lxd_backup_index_reads_as_lxd_writes_it() {
    // backup/index.yaml as LXD 5.0 writes it for a container with two snapshots; fields silo
    // does not use (config, the pool's own record) are ignored, as LXD's decoder would.
    let yaml = "name: web\nbackend: btrfs\npool: default\nsnapshots:\n- snap0\n- snap1\n\
                optimized: true\noptimized_header: true\ntype: container\nconfig:\n  container:\n    name: web\n";
    let i: backups::Index = serde_norway::from_str(yaml).expect("index.yaml");
    assert_eq!(i.name, "web");
    assert_eq!(i.snapshots, ["snap0", "snap1"]);
    assert!(i.optimized);
    assert_eq!(i.kind, "container");
    let bare: backups::Index = serde_norway::from_str("name: c1\n").expect("minimal index");
    assert!(bare.snapshots.is_empty() && !bare.optimized);
}

fn image_record(fp: &str, cached: bool, last_used: &str) -> images::Image {
    images::Image {
        fingerprint: fp.to_string(),
        filename: "x.tar.gz".into(),
        size: 1,
        public: false,
        architecture: "x86_64".into(),
        kind: "container".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        expires_at: "1970-01-01T00:00:00Z".into(),
        uploaded_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: last_used.into(),
        auto_update: false,
        cached,
        split: false,
        compression: "tar.gz".into(),
        properties: BTreeMap::new(),
        profiles: vec!["default".into()],
        update_source: None,
    }
}

#[tokio::test]
async fn cached_images_unused_past_the_expiry_go_and_nothing_else() {
    let w = world(1).await;
    let c = &w.c;
    let now = time::OffsetDateTime::parse(
        "2026-03-01T00:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .expect("time");
    let (old, recent, kept, in_use) = (
        "a".repeat(64),
        "b".repeat(64),
        "c".repeat(64),
        "d".repeat(64),
    );
    images::insert(&c.db, &image_record(&old, true, "2026-02-01T00:00:00Z")).expect("old");
    images::insert(&c.db, &image_record(&recent, true, "2026-02-25T00:00:00Z")).expect("recent");
    // Not a cache entry: kept however old.
    images::insert(&c.db, &image_record(&kept, false, "")).expect("kept");
    // Old, cached, but an instance was made from it.
    images::insert(&c.db, &image_record(&in_use, true, "2026-01-02T00:00:00Z")).expect("in use");
    create(c, json!({"name": "c1", "source": {"type": "none"}}))
        .await
        .expect("create");
    instances::set_keys(&c.db, "c1", &[("volatile.base_image", &in_use)], None).expect("base");
    image_updates::expire_cached(c, now).await;
    let left: Vec<String> = images::list(&c.db)
        .expect("list")
        .into_iter()
        .map(|i| i.fingerprint)
        .collect();
    assert_eq!(left, vec![recent.clone(), kept.clone(), in_use.clone()]);
    // 0 days keeps every cached image.
    crate::store::config::replace(
        &c.db,
        &BTreeMap::from([("images.remote_cache_expiry".to_string(), "0".to_string())]),
    )
    .expect("config");
    let later = now + time::Duration::days(400);
    image_updates::expire_cached(c, later).await;
    assert_eq!(images::list(&c.db).expect("list").len(), 3);
}

/// A client certificate (DER) as a TLS client would present it.
fn client_cert(cn: &str) -> Vec<u8> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.self_signed(&kp).expect("sign").der().as_ref().to_vec()
}

fn untrusted(cert: Vec<u8>, addr: &str) -> trust::AddCaller {
    trust::AddCaller {
        kind: crate::model::trust::CallerKind::Untrusted,
        peer_cert: Some(cert),
        addr: Some(addr.parse().expect("ip")),
    }
}

fn post(v: serde_json::Value) -> silo_api::CertificatesPost {
    serde_json::from_value(v).expect("CertificatesPost")
}

#[tokio::test]
async fn trust_store_passwords_and_single_use_tokens() {
    let w = world(1).await;
    let c = &w.c;
    c.trust.set_identity(
        trust::load_or_create_identity(&c.state_dir, "host").expect("server identity"),
    );
    server::update(
        c,
        &[("core.trust_password".to_string(), json!("pw"))]
            .into_iter()
            .collect(),
        true,
        None,
    )
    .await
    .expect("password");

    // Wrong passwords: refused, nothing added, and after five the address waits.
    for i in 0..5 {
        let e = trust::add(
            c,
            &untrusted(client_cert("a"), "10.0.0.1"),
            post(json!({"type": "client", "password": format!("bad{i}")})),
            vec![],
        )
        .expect_err("wrong password");
        assert!(matches!(e, DomainError::Forbidden(_)), "{e:?}");
    }
    let e = trust::add(
        c,
        &untrusted(client_cert("a"), "10.0.0.1"),
        post(json!({"type": "client", "password": "pw"})),
        vec![],
    )
    .expect_err("limited");
    assert_eq!(e.status(), 429, "{e}");
    assert!(trust::list(c).expect("list").is_empty());
    // Another address is not limited; restricted is refused with a reason.
    let e = trust::add(
        c,
        &untrusted(client_cert("b"), "10.0.0.2"),
        post(json!({"type": "client", "password": "pw", "restricted": true})),
        vec![],
    )
    .expect_err("restricted");
    assert!(e.to_string().contains("projects"), "{e}");
    let added = trust::add(
        c,
        &untrusted(client_cert("b"), "10.0.0.2"),
        post(json!({"type": "client", "password": "pw", "certificate": "ignored"})),
        vec![],
    )
    .expect("right password");
    assert!(matches!(added, trust::Added::Certificate(_)));
    let certs = trust::list(c).expect("list");
    assert_eq!((certs.len(), certs[0].name.as_str()), (1, "b"));
    assert_eq!(
        trust::kind_of(c, &certs[0].fingerprint),
        crate::model::trust::CallerKind::Client
    );

    // A token, used by one client; a second use (even racing) is refused.
    let local = trust::AddCaller {
        kind: crate::model::trust::CallerKind::Local,
        peer_cert: None,
        addr: None,
    };
    let trust::Added::Token(op) = trust::add(
        c,
        &local,
        post(json!({"name": "laptop", "type": "client", "token": true})),
        vec!["127.0.0.1:8443".into()],
    )
    .expect("token") else {
        panic!("no token operation");
    };
    let token = crate::model::trust::CertificateAddToken {
        client_name: "laptop".into(),
        fingerprint: String::new(),
        addresses: vec![],
        secret: op.metadata["secret"].as_str().expect("secret").into(),
        expires_at: String::new(),
    }
    .encode();
    let (c1, c2) = (c.clone(), c.clone());
    let (t1, t2) = (token.clone(), token.clone());
    let a = tokio::task::spawn_blocking(move || {
        trust::add(
            &c1,
            &untrusted(client_cert("x"), "10.0.0.3"),
            post(json!({"type": "client", "password": t1, "name": "evil"})),
            vec![],
        )
    });
    let b = tokio::task::spawn_blocking(move || {
        trust::add(
            &c2,
            &untrusted(client_cert("y"), "10.0.0.4"),
            post(json!({"type": "client", "password": t2})),
            vec![],
        )
    });
    let (a, b) = (a.await.expect("join"), b.await.expect("join"));
    assert_eq!(
        u8::from(a.is_ok()) + u8::from(b.is_ok()),
        1,
        "one use only: {a:?} {b:?}"
    );
    let names: Vec<String> = trust::list(c)
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(
        names.contains(&"laptop".to_string()),
        "the token names the certificate, not the client: {names:?}"
    );
    assert_eq!(names.len(), 2);
}

#[tokio::test]
async fn custom_volume_snapshots_follow_schedule_pattern_and_expiry() {
    let w = world(1).await;
    let mut cfg = BTreeMap::new();
    cfg.insert("snapshots.schedule".to_string(), "* * * * *".to_string());
    cfg.insert("snapshots.pattern".to_string(), "auto-%d".to_string());
    cfg.insert("snapshots.expiry".to_string(), "1d".to_string());
    storage::create_custom_volume(&w.c, "default", "v1", "", &cfg)
        .await
        .expect("volume");
    // The schedule matches every minute: one snapshot per run, named by the pattern, with
    // the volume's expiry.
    let now = time::OffsetDateTime::now_utc();
    custom_volumes::run_schedules(&w.c, now).await;
    custom_volumes::run_schedules(&w.c, now).await;
    let snaps = custom_volumes::snapshots(&w.c.db, "default", "v1").expect("snapshots");
    let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["auto-0", "auto-1"]);
    assert!(snaps[0].expires_at > crate::service::events::now_rfc3339());
    assert!(w
        .host
        .has_volume("default", VolumeKind::Custom, "v1/auto-0"));
    let e = custom_volumes::create_snapshot(&w.c, "default", "v1", "auto-0", None)
        .await
        .expect_err("taken");
    assert_eq!(e.status(), 409, "{e}");
    // An expired one goes at the next housekeeping, with its volume; the others stay.
    custom_volumes::create_snapshot(
        &w.c,
        "default",
        "v1",
        "old",
        Some("2001-01-01T00:00:00Z".into()),
    )
    .await
    .expect("old");
    custom_volumes::expire(&w.c).await;
    let left: Vec<String> = custom_volumes::snapshots(&w.c.db, "default", "v1")
        .expect("snapshots")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(left, ["auto-0", "auto-1"]);
    assert!(!w.host.has_volume("default", VolumeKind::Custom, "v1/old"));
}

#[tokio::test]
async fn custom_volume_users_are_found_refused_and_follow_a_rename() {
    let w = world(1).await;
    storage::create_custom_volume(&w.c, "default", "v1", "", &BTreeMap::new())
        .await
        .expect("volume");
    let e = storage::create_custom_volume(
        &w.c,
        "default",
        "v2",
        "",
        &[("size".to_string(), "1GiB".to_string())].into(),
    )
    .await
    .expect_err("size on dir");
    assert!(
        e.to_string().contains("dir driver cannot enforce size"),
        "{e}"
    );
    assert!(!w.host.has_volume("default", VolumeKind::Custom, "v2"));
    let disk = |src: &str| -> crate::model::profile::Device {
        [
            ("type", "disk"),
            ("pool", "default"),
            ("source", src),
            ("path", "/d"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let mut p = crate::store::profiles::get(&w.c.db, "default").expect("profile");
    p.devices.insert("data".into(), disk("v1"));
    crate::store::profiles::put(&w.c.db, &p).expect("put");
    assert_eq!(
        custom_volumes::used_by(&w.c.db, "default", "v1").expect("used_by"),
        ["/1.0/profiles/default"]
    );
    let e = storage::delete_custom_volume(&w.c, "default", "v1")
        .await
        .expect_err("in use");
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("/1.0/profiles/default"), "{e}");
    storage::move_custom_volume(&w.c, "default", "v1", "default", "v3")
        .await
        .expect("rename");
    let p = crate::store::profiles::get(&w.c.db, "default").expect("profile");
    assert_eq!(p.devices["data"]["source"], "v3");
    assert!(custom_volumes::used_by(&w.c.db, "default", "v1")
        .expect("used_by")
        .is_empty());
}
