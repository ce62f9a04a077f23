//! Server configuration keys (`GET/PUT/PATCH /1.0`) through the API, the `silo` CLI and the
//! stock `lxc` client: validation, the hashed and masked trust password, ETags, and the
//! storage drivers GET /1.0 lists.

use std::process::{Command, Output};

use serde_json::{json, Value};
use silo_tests::TestDaemon;

fn out(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", out(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn config(d: &TestDaemon) -> Value {
    d.api_ok("GET", "/1.0", None)["config"].clone()
}

fn patch(d: &TestDaemon, cfg: Value) -> (u16, Value) {
    d.api("PATCH", "/1.0", Some(json!({ "config": cfg })))
}

/// One request with headers: (status, ETag, body).
fn request(
    d: &TestDaemon,
    method: &str,
    body: Option<Value>,
    headers: &[(&str, String)],
) -> (u16, Option<String>, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let a = rt
        .block_on(d.client().request(method, "/1.0", body.as_ref(), headers))
        .expect("api call");
    (a.status, a.etag, a.body)
}

/// What silod stored for `key`, read from its database file.
fn stored(d: &TestDaemon, key: &str) -> Option<String> {
    let o = Command::new("sqlite3")
        .arg("-readonly")
        .arg(d.dir.join("silo.db"))
        .arg(format!("SELECT value FROM config WHERE key = '{key}'"))
        .output()
        .expect("sqlite3 (scripts/deps installs it)");
    let text = ok(o);
    let v = text.trim_end_matches('\n');
    (!v.is_empty()).then(|| v.to_string())
}

fn create_volume(d: &TestDaemon, name: &str) {
    ok(d.silo(&["storage", "volume", "create", "default", name]));
}

/// Each key's good values, as stored and shown back.
const GOOD: &[(&str, &str)] = &[
    ("core.https_address", "[::]:8443"),
    ("core.https_address", "127.0.0.1:9443"),
    ("core.https_address", ":8443"),
    ("core.https_address", "127.0.0.1"),
    ("core.https_address", "[::1]"),
    ("images.auto_update_interval", "0"),
    ("images.auto_update_interval", "12"),
    ("images.auto_update_cached", "false"),
    ("images.auto_update_cached", "on"),
    ("images.remote_cache_expiry", "0"),
    ("images.remote_cache_expiry", "10"),
    ("storage.images_volume", "default/imgs"),
    ("storage.backups_volume", "default/baks"),
];

/// Each key's bad values.
const BAD: &[(&str, &str)] = &[
    ("core.https_address", "localhost:8443"),
    ("core.https_address", ":0"),
    ("core.https_address", ":65536"),
    ("core.https_address", "::1:8443:x"),
    ("core.https_address", "[::1]:port"),
    ("images.auto_update_interval", "-1"),
    ("images.auto_update_interval", "6h"),
    ("images.auto_update_cached", "maybe"),
    ("images.remote_cache_expiry", "-3"),
    ("images.remote_cache_expiry", "ten"),
    ("storage.images_volume", "imgs"),
    ("storage.images_volume", "default/nothere"),
    ("storage.backups_volume", "nopool/baks"),
];

#[test]
fn keys_through_the_api() {
    let d = TestDaemon::start("srvcfg-api");
    create_volume(&d, "imgs");
    create_volume(&d, "baks");
    assert_eq!(config(&d), json!({}));

    for (k, v) in GOOD {
        let (c, body) = patch(&d, json!({ *k: v }));
        assert_eq!(c, 200, "{k}={v}: {body}");
        assert_eq!(config(&d)[*k], json!(v), "{k}={v}");
        assert_eq!(stored(&d, k).as_deref(), Some(*v), "{k}");
        let (c, body) = patch(&d, json!({ *k: "" }));
        assert_eq!(c, 200, "unset {k}: {body}");
        assert!(config(&d).get(*k).is_none(), "{k} unset");
        assert_eq!(stored(&d, k), None, "{k}");
    }

    // JSON numbers and booleans are taken as their text; null unsets.
    let (c, body) = patch(
        &d,
        json!({"images.auto_update_interval": 6, "images.auto_update_cached": true}),
    );
    assert_eq!(c, 200, "{body}");
    let cfg = config(&d);
    assert_eq!(cfg["images.auto_update_interval"], "6");
    assert_eq!(cfg["images.auto_update_cached"], "true");
    let (c, _) = patch(&d, json!({"images.auto_update_interval": null}));
    assert_eq!(c, 200);
    assert!(config(&d).get("images.auto_update_interval").is_none());

    // Bad values and unknown keys: 400 naming the key, through PATCH and PUT, nothing stored.
    let before = config(&d);
    for (k, v) in BAD {
        for method in ["PATCH", "PUT"] {
            let (c, body) = d.api(method, "/1.0", Some(json!({"config": { *k: v }})));
            let err = body["error"].as_str().unwrap_or_default();
            assert_eq!(c, 400, "{method} {k}={v}: {body}");
            assert!(err.contains(&format!("\"{k}\"")), "{method} {k}={v}: {err}");
        }
    }
    let (_, body) = patch(&d, json!({"storage.images_volume": "nopool/imgs"}));
    let err = body["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("storage pool \"nopool\" does not exist"),
        "{err}"
    );
    let (_, body) = patch(&d, json!({"storage.images_volume": "default/nothere"}));
    let err = body["error"].as_str().unwrap_or_default();
    assert!(err.contains("no custom volume \"nothere\""), "{err}");
    // silod listens where the address says: one this host does not have is refused, named.
    let (c, body) = patch(&d, json!({"core.https_address": "10.1.2.3"}));
    assert_eq!(c, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot listen on 10.1.2.3:8443"),
        "{body}"
    );
    assert!(config(&d).get("core.https_address").is_none());

    let (c, body) = patch(&d, json!({"x": "1"}));
    assert_eq!(c, 400);
    assert_eq!(
        body["error"].as_str(),
        Some("unknown server configuration key \"x\"")
    );
    assert_eq!(config(&d), before, "refused changes leave the config alone");

    // PUT replaces the whole configuration.
    let all = json!({
        "core.https_address": "[::]:8443",
        "images.auto_update_interval": "0",
        "images.auto_update_cached": "no",
        "images.remote_cache_expiry": "5",
        "storage.images_volume": "default/imgs",
        "storage.backups_volume": "default/baks",
    });
    let (c, body) = d.api("PUT", "/1.0", Some(json!({ "config": all })));
    assert_eq!(c, 200, "{body}");
    assert_eq!(config(&d), all);
    let (c, _) = d.api("PUT", "/1.0", Some(json!({"config": {}})));
    assert_eq!(c, 200);
    assert_eq!(config(&d), json!({}));

    // The storage drivers this host can make pools with.
    let info = d.api_ok("GET", "/1.0", None);
    let env = &info["environment"];
    assert_eq!(env["storage"], "dir");
    let drivers = env["storage_supported_drivers"]
        .as_array()
        .expect("storage_supported_drivers");
    let names: Vec<&str> = drivers.iter().filter_map(|d| d["Name"].as_str()).collect();
    assert!(names.contains(&"dir"), "{drivers:?}");
    assert!(
        names.contains(&"btrfs"),
        "btrfs-progs is installed and the kernel has btrfs: {drivers:?}"
    );
    let btrfs = drivers
        .iter()
        .find(|d| d["Name"] == "btrfs")
        .expect("btrfs");
    assert_eq!(btrfs["Remote"], false);
    let version = btrfs["Version"].as_str().unwrap_or_default();
    assert!(version.starts_with(|c: char| c.is_ascii_digit()), "{btrfs}");
}

#[test]
fn trust_password_is_hashed_masked_and_kept_by_put() {
    let d = TestDaemon::start("srvcfg-pw");
    let secret = "correct horse battery";
    let (c, body) = patch(&d, json!({"core.trust_password": secret}));
    assert_eq!(c, 200, "{body}");

    // Shown as `true`, never the clear text nor the hash.
    let (c, etag, body) = request(&d, "GET", None, &[]);
    assert_eq!(c, 200);
    assert_eq!(body["metadata"]["config"]["core.trust_password"], true);
    let text = body.to_string();
    let hash = stored(&d, "core.trust_password").expect("stored");
    assert!(!text.contains(secret) && !text.contains(&hash), "{text}");
    let shown = ok(d.silo(&["config", "show"]));
    assert!(shown.contains("core.trust_password: true"), "{shown}");
    assert!(!shown.contains(secret) && !shown.contains(&hash), "{shown}");
    assert_eq!(
        ok(d.silo(&["config", "get", "core.trust_password"])),
        "true\n"
    );
    let info = ok(d.silo(&["info"]));
    assert!(!info.contains(secret) && !info.contains(&hash), "{info}");

    // Stored salted and hashed.
    let parts: Vec<&str> = hash.split('$').collect();
    assert_eq!(parts.len(), 6, "{hash}");
    assert_eq!(parts[..4], ["scrypt", "14", "8", "1"], "{hash}");
    assert_eq!(parts[4].len(), 32, "{hash}");
    assert_eq!(parts[5].len(), 64, "{hash}");
    assert!(!hash.contains(secret));
    // And it is scrypt of the secret, checked by another implementation (OpenSSL's, through
    // Python's hashlib), not by silod's own verifier.
    let py = std::process::Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; s,p,d=sys.argv[1:]; \
             print(hashlib.scrypt(p.encode(), salt=bytes.fromhex(s), n=2**14, r=8, p=1, \
             dklen=32, maxmem=64<<20).hex()==d)",
            parts[4],
            secret,
            parts[5],
        ])
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "True",
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );

    // Sending GET's config back with its ETag keeps the password (and the ETag matches
    // what GET showed, password masked).
    let etag = etag.expect("GET /1.0 has an ETag");
    let mut cfg = body["metadata"]["config"].clone();
    cfg["images.auto_update_interval"] = json!("3");
    let (c, _, body) = request(
        &d,
        "PUT",
        Some(json!({ "config": cfg })),
        &[("if-match", etag.clone())],
    );
    assert_eq!(c, 200, "{body}");
    assert_eq!(stored(&d, "core.trust_password"), Some(hash.clone()));
    assert_eq!(
        stored(&d, "images.auto_update_interval").as_deref(),
        Some("3")
    );
    // That ETag is stale now.
    let (c, _, body) = request(
        &d,
        "PUT",
        Some(json!({ "config": cfg })),
        &[("if-match", etag)],
    );
    assert_eq!(c, 412, "{body}");
    let (_, etag, _) = request(&d, "GET", None, &[]);
    let (c, _, body) = request(
        &d,
        "PATCH",
        Some(json!({"config": {"images.remote_cache_expiry": "2"}})),
        &[("if-match", etag.expect("etag"))],
    );
    assert_eq!(c, 200, "{body}");

    // The word "true" as a string is a new password, hashed.
    let (c, _) = patch(&d, json!({"core.trust_password": "true"}));
    assert_eq!(c, 200);
    let h2 = stored(&d, "core.trust_password").expect("stored");
    assert_ne!(h2, hash);
    assert_ne!(h2, "true");

    // The same password twice gives different salts.
    let (c, _) = patch(&d, json!({"core.trust_password": secret}));
    assert_eq!(c, 200);
    let h3 = stored(&d, "core.trust_password").expect("stored");
    assert_ne!(h3, hash, "a fresh salt each time");

    // Through the CLI.
    ok(d.silo(&["config", "set", "core.trust_password", "hunter2"]));
    let h4 = stored(&d, "core.trust_password").expect("stored");
    assert!(
        h4.starts_with("scrypt$14$8$1$") && !h4.contains("hunter2"),
        "{h4}"
    );
    assert_eq!(
        ok(d.silo(&["config", "get", "core.trust_password"])),
        "true\n"
    );
    ok(d.silo(&["config", "unset", "core.trust_password"]));
    assert_eq!(stored(&d, "core.trust_password"), None);
    assert!(config(&d).get("core.trust_password").is_none());
    assert_eq!(ok(d.silo(&["config", "get", "core.trust_password"])), "\n");

    // Setting it to "" removes it; PUT without it removes it.
    let (c, _) = patch(&d, json!({"core.trust_password": "pw"}));
    assert_eq!(c, 200);
    let (c, _) = patch(&d, json!({"core.trust_password": ""}));
    assert_eq!(c, 200);
    assert_eq!(stored(&d, "core.trust_password"), None);
    let (c, _) = patch(&d, json!({"core.trust_password": "pw"}));
    assert_eq!(c, 200);
    let (c, _) = d.api("PUT", "/1.0", Some(json!({"config": {}})));
    assert_eq!(c, 200);
    assert_eq!(stored(&d, "core.trust_password"), None);
}

#[test]
fn silo_cli_and_stock_lxc() {
    let d = TestDaemon::start("srvcfg-cli");
    create_volume(&d, "imgs");
    create_volume(&d, "baks");

    for (k, v) in GOOD {
        ok(d.silo(&["config", "set", k, v]));
        assert_eq!(ok(d.silo(&["config", "get", k])), format!("{v}\n"), "{k}");
        let shown = ok(d.silo(&["config", "show"]));
        assert!(shown.contains(k), "{shown}");
        ok(d.silo(&["config", "unset", k]));
        assert_eq!(ok(d.silo(&["config", "get", k])), "\n", "{k}");
    }
    for (k, v) in BAD {
        // `--`: a value such as "-1" is not an option.
        let o = d.silo(&["config", "set", "--", k, v]);
        assert!(!o.status.success(), "{k}={v} accepted: {}", out(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(k), "{k}={v}: {err}");
    }
    let o = d.silo(&["config", "set", "core.no_such", "1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown server configuration key"),
        "{}",
        out(&o)
    );

    // Debian's lxc (5.0) sets a server key by GET then PUT of the whole config with If-Match:
    // a trust password set beforehand travels as `true` and must survive.
    ok(d.silo(&["config", "set", "core.trust_password", "s3cret"]));
    let hash = stored(&d, "core.trust_password").expect("stored");
    ok(d.lxc(&["config", "set", "images.auto_update_interval", "0"]));
    assert_eq!(
        ok(d.lxc(&["config", "get", "images.auto_update_interval"])),
        "0\n"
    );
    ok(d.lxc(&["config", "set", "core.https_address", "[::]:8443"]));
    assert_eq!(
        ok(d.lxc(&["config", "get", "core.https_address"])),
        "[::]:8443\n"
    );
    assert_eq!(stored(&d, "core.trust_password"), Some(hash));
    assert_eq!(
        ok(d.lxc(&["config", "get", "core.trust_password"])),
        "true\n"
    );
    let shown = ok(d.lxc(&["config", "show"]));
    assert!(shown.contains("core.trust_password: true"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    for (k, v) in GOOD {
        ok(d.lxc(&["config", "set", k, v]));
        assert_eq!(ok(d.lxc(&["config", "get", k])), format!("{v}\n"), "{k}");
    }
    let o = d.lxc(&["config", "set", "--", "images.auto_update_interval", "-1"]);
    assert!(!o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("images.auto_update_interval"),
        "{}",
        out(&o)
    );
    ok(d.lxc(&["config", "unset", "core.https_address"]));
    assert_eq!(ok(d.lxc(&["config", "get", "core.https_address"])), "\n");
    ok(d.lxc(&["config", "unset", "core.trust_password"]));
    assert_eq!(stored(&d, "core.trust_password"), None);
}
