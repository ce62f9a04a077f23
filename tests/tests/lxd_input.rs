//! LXD's leniency on input, through the real daemon: `null` gives a field its zero value and
//! unknown fields are ignored, as LXD's Go decoder does; a wrong type is still refused.

use serde_json::json;
use silo_tests::{busybox_image, TestDaemon};

#[test]
fn null_and_unknown_fields_are_taken_as_lxd_takes_them() {
    let d = TestDaemon::start("lxd-input");
    d.import(&busybox_image(false)[0], "busybox");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": "c1",
            "source": {"type": "image", "alias": "busybox", "fingerprint": null, "server": null,
                       "zzz": 1},
            "config": null, "devices": null, "profiles": null, "ephemeral": null,
            "description": null, "type": null, "architecture": null, "stateful": null,
            "instance_type": null, "unknown_field": {"x": [1, null]},
        })),
    );
    let inst = d.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(inst["ephemeral"], false, "{inst}");
    assert_eq!(
        inst["profiles"],
        json!(["default"]),
        "null profiles are the default: {inst}"
    );
    d.api_ok(
        "PUT",
        "/1.0/instances/c1/state",
        Some(json!({"action": "start", "timeout": null, "force": null, "stateful": null})),
    );
    assert_eq!(d.status("c1"), "Running");
    let (c, v) = d.api(
        "POST",
        "/1.0/instances/c1/exec",
        Some(json!({
            "command": ["true"], "environment": null, "width": null, "height": null,
            "user": null, "group": null, "cwd": null, "wait-for-websocket": false,
            "interactive": false, "record-output": null,
        })),
    );
    assert_eq!(c, 202, "{v}");
    assert_eq!(d.wait_op(&v)["status"], "Success");
    // LXD's width and height are int64: -1 means "no size given".
    let (c, v) = d.api(
        "POST",
        "/1.0/instances/c1/exec",
        Some(json!({"command": ["true"], "width": -1, "height": -1, "wait-for-websocket": false})),
    );
    assert_eq!(c, 202, "{v}");
    assert_eq!(d.wait_op(&v)["status"], "Success");
    d.api_ok(
        "POST",
        "/1.0/instances/c1/snapshots",
        Some(json!({"name": "s1", "stateful": null, "expires_at": null})),
    );
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"config": {"user.note": "kept"}, "devices": null, "description": null})),
    );
    let inst = d.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(inst["config"]["user.note"], "kept", "{inst}");
    d.api_ok(
        "POST",
        "/1.0/profiles",
        Some(json!({"name": "p1", "config": null, "devices": null, "description": null})),
    );
    // A wrong type is still a 400 naming the problem.
    let (c, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "c2", "source": {"type": "image", "alias": "busybox"},
                    "ephemeral": "yes"}),
        ),
    );
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("invalid"),
        "{v}"
    );
}

/// Go's decoder matches a key to a field whatever its case (`"Name"` fills `name`), preferring
/// the exact spelling; invalid UTF-8 inside a string becomes U+FFFD instead of a refusal.
#[test]
fn keys_in_any_case_and_invalid_utf8_are_taken_as_lxd_takes_them() {
    let d = TestDaemon::start("lxd-input-case");
    d.api_ok(
        "POST",
        "/1.0/profiles",
        Some(json!({"Name": "p-case", "DESCRIPTION": "upper", "Config": {"user.Key": "v"}})),
    );
    let p = d.api_ok("GET", "/1.0/profiles/p-case", None);
    assert_eq!(p["description"], "upper", "{p}");
    assert_eq!(
        p["config"]["user.Key"], "v",
        "map keys keep their case: {p}"
    );
    d.api_ok(
        "PATCH",
        "/1.0/profiles/p-case",
        Some(json!({"description": "exact", "Description": "folded"})),
    );
    let p = d.api_ok("GET", "/1.0/profiles/p-case", None);
    assert_eq!(p["description"], "exact", "the exact key wins: {p}");

    let answer = raw_request(
        &d,
        "PATCH",
        "/1.0/profiles/p-case",
        b"{\"description\": \"bad \xff byte\"}",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let p = d.api_ok("GET", "/1.0/profiles/p-case", None);
    assert_eq!(p["description"], "bad \u{fffd} byte", "{p}");

    // PUT of an instance goes through the same decoder (it once decoded strictly).
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c-case", "source": {"type": "none"}})),
    );
    let (code, op) = d.api(
        "PUT",
        "/1.0/instances/c-case",
        Some(
            json!({"Description": "folded", "Profiles": ["default"], "config": null,
                    "devices": null, "ephemeral": null}),
        ),
    );
    assert_eq!(code, 202, "{op}");
    assert_eq!(d.wait_op(&op)["status"], "Success");
    let i = d.api_ok("GET", "/1.0/instances/c-case", None);
    assert_eq!(i["description"], "folded", "{i}");
    d.api_ok("DELETE", "/1.0/instances/c-case", None);
}

/// One request with a body that is not valid UTF-8 (which no `Value` can hold), over the socket
/// by hand; returns the whole answer as text.
fn raw_request(d: &TestDaemon, method: &str, path: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: unix.socket\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(body).expect("write body");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read answer");
    String::from_utf8_lossy(&out).into_owned()
}

/// Config values are checked once, by the parsers the daemon also starts instances with: a
/// value refused at start must be refused when it is set, and an out-of-range number must be a
/// 400, not an arithmetic overflow in the handler.
#[test]
fn config_values_are_checked_as_they_are_used() {
    let d = TestDaemon::start("lxd-input-values");
    for (k, v, want) in [
        // Summing units overflowed i64: a panic in the handler (debug), a wrapped expiry and a
        // panicking time addition at the next snapshot (release).
        ("snapshots.expiry", "9223372036854775807y", "1000 years"),
        (
            "snapshots.expiry",
            "99999999999999d 99999999999999d",
            "1000 years",
        ),
        // Passed validation, then every start failed on them.
        ("limits.memory", "50.5%", "percentage"),
        ("limits.cpu", "3-1", "CPU"),
        ("limits.cpu", "0-99999", "CPU"),
    ] {
        let (c, r) = d.api(
            "POST",
            "/1.0/profiles",
            Some(json!({"name": "p-values", "config": {k: v}})),
        );
        assert_eq!(c, 400, "{k}={v}: {r}");
        let e = r["error"].as_str().unwrap_or_default();
        assert!(
            e.contains(&format!("{k:?}")) && e.contains(want),
            "{k}={v}: {e}"
        );
    }
    // What LXD takes still goes through.
    d.api_ok(
        "POST",
        "/1.0/profiles",
        Some(json!({"name": "p-values", "config": {
            "snapshots.expiry": "1000y", "limits.memory": "50%", "limits.cpu": "0-1",
            "boot.autostart": "YES",
        }})),
    );
    d.api_ok("DELETE", "/1.0/profiles/p-values", None);
}
