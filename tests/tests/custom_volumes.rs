//! Custom storage volumes as LXD 5.0 has them: config and description (PUT/PATCH), state,
//! `used_by` and the refusal to delete a volume in use, snapshots (create, list, rename,
//! restore, expiry, with the volume on copy/rename/delete), quotas on btrfs, refusals on dir,
//! and `silo storage volume ...` / `lxc storage volume ...` against silod.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, show, TestDaemon};

const VOLS: &str = "/1.0/storage-pools";

fn vol_url(pool: &str, v: &str) -> String {
    format!("{VOLS}/{pool}/volumes/custom/{v}")
}

/// The host directory of custom volume `v`.
fn host_vol(d: &TestDaemon, pool: &str, v: &str) -> PathBuf {
    d.dir
        .join("storage-pools")
        .join(pool)
        .join("custom")
        .join(v)
}

fn host_snap(d: &TestDaemon, pool: &str, v: &str, s: &str) -> PathBuf {
    d.dir
        .join("storage-pools")
        .join(pool)
        .join("custom-snapshots")
        .join(v)
        .join(s)
}

/// Entries of a directory, sorted (none if it does not exist).
fn entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// An API call that must be refused with `code` and an error containing `want`.
fn refused(d: &TestDaemon, method: &str, path: &str, body: Value, code: u16, want: &str) {
    let (c, v) = d.api(method, path, Some(body.clone()));
    let err = if v["type"] == "async" {
        let op = d.wait_op(&v);
        assert_ne!(op["status"], "Success", "{method} {path} {body}: {op}");
        op["err"].as_str().unwrap_or("").to_string()
    } else {
        assert_eq!(c, code, "{method} {path} {body}: {v}");
        v["error"].as_str().unwrap_or("").to_string()
    };
    assert!(
        err.contains(want),
        "{method} {path} {body}: {err:?} lacks {want:?}"
    );
}

fn btrfs_pool(d: &TestDaemon, name: &str) {
    d.api_ok(
        "POST",
        VOLS,
        Some(json!({"name": name, "driver": "btrfs", "config": {"size": "512MiB"}})),
    );
}

fn write_file(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
}

#[test]
fn config_state_used_by_and_refusals_on_a_dir_pool() {
    let d = TestDaemon::start("cv-config");
    let custom = d.dir.join("storage-pools/default/custom");
    // Refusals name the key (or why) and make nothing.
    for (body, want) in [
        (json!({"name": "x1", "config": {"bogus": "1"}}), "\"bogus\""),
        (
            json!({"name": "x2", "config": {"size": "1GiB"}}),
            "dir driver cannot enforce size",
        ),
        (
            json!({"name": "x3", "config": {"block.filesystem": "ext4"}}),
            "\"block.filesystem\"",
        ),
        (
            json!({"name": "x4", "config": {"block.mount_options": "noatime"}}),
            "block-backed",
        ),
        (
            json!({"name": "x5", "config": {"snapshots.expiry": "3x"}}),
            "snapshots.expiry",
        ),
        (
            json!({"name": "x6", "content_type": "block"}),
            "content type \"block\"",
        ),
    ] {
        refused(
            &d,
            "POST",
            &format!("{VOLS}/default/volumes"),
            body,
            400,
            want,
        );
    }
    assert!(entries(&custom).is_empty(), "{:?}", entries(&custom));
    let list = d.api_ok("GET", &format!("{VOLS}/default/volumes/custom"), None);
    assert_eq!(list, json!([]));

    // Create with config, then PUT replaces and PATCH merges (LXD's rules).
    d.api_ok(
        "POST",
        &format!("{VOLS}/default/volumes/custom"),
        Some(json!({"name": "v1", "description": "first",
            "config": {"user.a": "1", "snapshots.expiry": "1d"}})),
    );
    let v = d.api_ok("GET", &vol_url("default", "v1"), None);
    assert_eq!(
        v["config"],
        json!({"user.a": "1", "snapshots.expiry": "1d"}),
        "{v}"
    );
    assert_eq!(v["description"], "first");
    d.api_ok(
        "PUT",
        &vol_url("default", "v1"),
        Some(json!({"config": {"user.b": "2"}, "description": "second"})),
    );
    d.api_ok(
        "PATCH",
        &vol_url("default", "v1"),
        Some(json!({"config": {"user.c": "3"}, "description": "third"})),
    );
    let v = d.api_ok("GET", &vol_url("default", "v1"), None);
    assert_eq!(v["config"], json!({"user.b": "2", "user.c": "3"}), "{v}");
    assert_eq!(v["description"], "third");
    refused(
        &d,
        "PUT",
        &vol_url("default", "v1"),
        json!({"config": {"nope.key": "1"}}),
        400,
        "\"nope.key\"",
    );
    refused(
        &d,
        "PATCH",
        &vol_url("default", "v1"),
        json!({"config": {"size": "10MiB"}}),
        400,
        "dir driver cannot enforce size",
    );
    let v = d.api_ok("GET", &vol_url("default", "v1"), None);
    assert_eq!(
        v["config"],
        json!({"user.b": "2", "user.c": "3"}),
        "unchanged: {v}"
    );

    // State: bytes used, and the quota (0 without size, as LXD's ParseByteSizeString("")).
    write_file(
        &host_vol(&d, "default", "v1").join("blob"),
        &"x".repeat(200_000),
    );
    let st = d.api_ok("GET", &format!("{}/state", vol_url("default", "v1")), None);
    assert_eq!(st["usage"]["total"], 0, "{st}");
    assert!(st["usage"]["used"].as_u64().unwrap_or(0) >= 200_000, "{st}");

    // used_by: instances whose own devices name it, then profiles (default project: no
    // ?project=).
    d.import(&busybox_image(false)[0], "busybox");
    d.api_ok(
        "POST",
        "/1.0/profiles",
        Some(json!({"name": "withvol", "devices": {
            "data": {"type": "disk", "pool": "default", "source": "v1", "path": "/data"}}})),
    );
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c1", "source": {"type": "image", "alias": "busybox"},
            "devices": {"vol": {"type": "disk", "pool": "default", "source": "v1", "path": "/mnt"}}})),
    );
    let v = d.api_ok("GET", &vol_url("default", "v1"), None);
    assert_eq!(
        v["used_by"],
        json!(["/1.0/instances/c1", "/1.0/profiles/withvol"]),
        "{v}"
    );
    // In use: not deleted, and the refusal names the users.
    let (c, v) = d.api("DELETE", &vol_url("default", "v1"), None);
    assert_eq!(c, 400, "{v}");
    let err = v["error"].as_str().unwrap_or("");
    assert!(
        err.contains("still in use")
            && err.contains("/1.0/instances/c1")
            && err.contains("/1.0/profiles/withvol"),
        "{err}"
    );
    assert!(host_vol(&d, "default", "v1").is_dir());
    // A rename takes the devices along, as LXD's does.
    d.api_ok(
        "POST",
        &vol_url("default", "v1"),
        Some(json!({"name": "v2"})),
    );
    assert!(!host_vol(&d, "default", "v1").exists());
    assert!(host_vol(&d, "default", "v2").join("blob").is_file());
    let i = d.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(i["devices"]["vol"]["source"], "v2", "{i}");
    let p = d.api_ok("GET", "/1.0/profiles/withvol", None);
    assert_eq!(p["devices"]["data"]["source"], "v2", "{p}");
    let v = d.api_ok("GET", &vol_url("default", "v2"), None);
    assert_eq!(v["config"], json!({"user.b": "2", "user.c": "3"}), "{v}");
    // Unused again: deleted, with nothing left on disk.
    d.api_ok("DELETE", "/1.0/instances/c1", None);
    d.api_ok("DELETE", "/1.0/profiles/withvol", None);
    d.api_ok("DELETE", &vol_url("default", "v2"), None);
    assert!(entries(&custom).is_empty(), "{:?}", entries(&custom));
}

/// Snapshots on one pool: create, list, get, rename, update, restore, expiry, and with the
/// volume on copy, rename and delete.
fn snapshot_cycle(d: &TestDaemon, pool: &str, btrfs: bool) {
    let base = format!("{VOLS}/{pool}/volumes/custom");
    d.api_ok(
        "POST",
        &base,
        Some(json!({"name": "sv", "config": {"snapshots.expiry": "1d"}})),
    );
    let file = host_vol(d, pool, "sv").join("state");
    write_file(&file, "one");
    let snaps = format!("{}/snapshots", vol_url(pool, "sv"));
    d.api_ok("POST", &snaps, Some(json!({"name": "s0"})));
    // No name: snap<N>; an explicit expiry wins over snapshots.expiry; zero time is never.
    d.api_ok("POST", &snaps, Some(json!({})));
    d.api_ok(
        "POST",
        &snaps,
        Some(json!({"name": "never", "expires_at": "0001-01-01T00:00:00Z"})),
    );
    refused(
        d,
        "POST",
        &snaps,
        json!({"name": "s0"}),
        409,
        "already in use",
    );
    refused(d, "POST", &snaps, json!({"name": "a/b"}), 400, "'/'");
    let list = d.api_ok("GET", &snaps, None);
    assert_eq!(
        list,
        json!([
            format!("{snaps}/s0"),
            format!("{snaps}/snap0"),
            format!("{snaps}/never")
        ]),
        "{list}"
    );
    // The pool's volume listing has each snapshot after its volume, as LXD's.
    let all = d.api_ok("GET", &base, None);
    assert_eq!(
        all,
        json!([
            vol_url(pool, "sv"),
            format!("{snaps}/s0"),
            format!("{snaps}/snap0"),
            format!("{snaps}/never")
        ]),
        "{all}"
    );
    let all = d.api_ok("GET", &format!("{base}?recursion=1"), None);
    assert_eq!(all[1]["name"], "sv/s0", "{all}");
    let full = d.api_ok("GET", &format!("{snaps}?recursion=1"), None);
    assert_eq!(full[0]["name"], "sv/s0", "{full}");
    assert_eq!(full[2]["expires_at"], Value::Null, "{full}");
    let s0 = d.api_ok("GET", &format!("{snaps}/s0"), None);
    assert_eq!(s0["name"], "s0", "{s0}");
    assert_eq!(s0["config"], json!({"snapshots.expiry": "1d"}), "{s0}");
    let exp = s0["expires_at"].as_str().unwrap_or("");
    assert!(
        exp > "2000" && exp.len() >= 20,
        "snapshots.expiry applied: {s0}"
    );
    let never = d.api_ok("GET", &format!("{snaps}/never"), None);
    assert_eq!(never["expires_at"], "0001-01-01T00:00:00Z", "{never}");
    // The snapshot holds the volume as it was; on btrfs it is a read-only subvolume.
    let sdir = host_snap(d, pool, "sv", "s0");
    assert_eq!(
        std::fs::read_to_string(sdir.join("state")).expect("snap file"),
        "one"
    );
    if btrfs {
        let o = Command::new("btrfs")
            .args(["property", "get", "-ts"])
            .arg(&sdir)
            .arg("ro")
            .output()
            .expect("btrfs");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "ro=true",
            "{}",
            show(&o)
        );
        assert!(std::fs::write(sdir.join("new"), "x").is_err(), "read-only");
    }
    // PATCH keeps what it does not name; PUT replaces.
    d.api_ok(
        "PATCH",
        &format!("{snaps}/s0"),
        Some(json!({"description": "before"})),
    );
    let s0 = d.api_ok("GET", &format!("{snaps}/s0"), None);
    assert_eq!(s0["description"], "before");
    assert_eq!(s0["expires_at"].as_str(), Some(exp), "{s0}");
    d.api_ok(
        "PUT",
        &format!("{snaps}/s0"),
        Some(json!({"description": "before", "expires_at": null})),
    );
    let s0 = d.api_ok("GET", &format!("{snaps}/s0"), None);
    assert_eq!(s0["expires_at"], "0001-01-01T00:00:00Z", "{s0}");
    // Rename, then restore.
    d.api_ok(
        "POST",
        &format!("{snaps}/s0"),
        Some(json!({"name": "first"})),
    );
    assert!(!sdir.exists() && host_snap(d, pool, "sv", "first").is_dir());
    write_file(&file, "two");
    std::fs::write(host_vol(d, pool, "sv").join("extra"), "x").expect("extra");
    refused(
        d,
        "PUT",
        &vol_url(pool, "sv"),
        json!({"restore": "nope"}),
        404,
        "not found",
    );
    d.api_ok(
        "PUT",
        &vol_url(pool, "sv"),
        Some(json!({"restore": "first"})),
    );
    assert_eq!(std::fs::read_to_string(&file).expect("restored"), "one");
    assert!(!host_vol(d, pool, "sv").join("extra").exists());
    // Copies take the snapshots, unless volume_only.
    d.api_ok(
        "POST",
        &base,
        Some(json!({"name": "cp", "source": {"type": "copy", "name": "sv", "pool": pool}})),
    );
    d.api_ok(
        "POST",
        &base,
        Some(
            json!({"name": "cp1", "source": {"type": "copy", "name": "sv", "pool": pool,
            "volume_only": true}}),
        ),
    );
    let cps = d.api_ok("GET", &format!("{}/snapshots", vol_url(pool, "cp")), None);
    assert_eq!(cps.as_array().map(Vec::len), Some(3), "{cps}");
    assert_eq!(
        std::fs::read_to_string(host_snap(d, pool, "cp", "first").join("state")).expect("copied"),
        "one"
    );
    let cp1 = d.api_ok("GET", &format!("{}/snapshots", vol_url(pool, "cp1")), None);
    assert_eq!(cp1, json!([]));
    assert!(!d
        .dir
        .join("storage-pools")
        .join(pool)
        .join("custom-snapshots/cp1")
        .exists());
    // A volume's rename takes its snapshots; its delete removes them.
    d.api_ok("POST", &vol_url(pool, "cp"), Some(json!({"name": "cp2"})));
    assert!(host_snap(d, pool, "cp2", "first").is_dir());
    let cps = d.api_ok("GET", &format!("{}/snapshots", vol_url(pool, "cp2")), None);
    assert_eq!(cps.as_array().map(Vec::len), Some(3), "{cps}");
    for v in ["cp2", "cp1"] {
        d.api_ok("DELETE", &vol_url(pool, v), None);
    }
    // Deleting one snapshot.
    d.api_ok("DELETE", &format!("{snaps}/snap0"), None);
    assert!(!host_snap(d, pool, "sv", "snap0").exists());
    let (c, _) = d.api("GET", &format!("{snaps}/snap0"), None);
    assert_eq!(c, 404);
    d.api_ok("DELETE", &vol_url(pool, "sv"), None);
    let top = d.dir.join("storage-pools").join(pool);
    assert!(entries(&top.join("custom")).is_empty());
    assert!(
        entries(&top.join("custom-snapshots")).is_empty(),
        "{:?}",
        entries(&top.join("custom-snapshots"))
    );
}

#[test]
fn snapshots_of_custom_volumes_on_dir_and_btrfs() {
    let d = TestDaemon::start("cv-snaps");
    snapshot_cycle(&d, "default", false);
    btrfs_pool(&d, "bt");
    snapshot_cycle(&d, "bt", true);
    d.api_ok("DELETE", &format!("{VOLS}/bt"), None);
}

#[test]
fn expired_volume_snapshots_are_pruned_by_the_daemon() {
    let d = TestDaemon::start("cv-expire");
    d.api_ok(
        "POST",
        &format!("{VOLS}/default/volumes/custom"),
        Some(json!({"name": "ev"})),
    );
    let snaps = format!("{}/snapshots", vol_url("default", "ev"));
    d.api_ok(
        "POST",
        &snaps,
        Some(json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"})),
    );
    d.api_ok("POST", &snaps, Some(json!({"name": "keep"})));
    // The housekeeping task runs at the start of every minute.
    assert!(
        silo_tests::wait_until(Duration::from_secs(75), || {
            !host_snap(&d, "default", "ev", "old").exists()
        }),
        "the expired snapshot was not pruned"
    );
    let list = d.api_ok("GET", &snaps, None);
    assert_eq!(list, json!([format!("{snaps}/keep")]));
    assert!(host_snap(&d, "default", "ev", "keep").is_dir());
}

#[test]
fn size_is_a_btrfs_quota() {
    let d = TestDaemon::start("cv-quota");
    btrfs_pool(&d, "bt");
    let base = format!("{VOLS}/bt/volumes/custom");
    d.api_ok(
        "POST",
        &base,
        Some(json!({"name": "q", "config": {"size": "32MiB"}})),
    );
    let st = d.api_ok("GET", &format!("{}/state", vol_url("bt", "q")), None);
    assert_eq!(st["usage"]["total"], 32 << 20, "{st}");
    // Writing beyond the quota fails with EDQUOT (through the volume's host path, standing
    // in for an instance's mount of it).
    let dd = |name: &str, mib: u32| {
        Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!(
                "of={}",
                host_vol(&d, "bt", "q").join(name).display()
            ))
            .args(["bs=1M", &format!("count={mib}"), "conv=fsync"])
            .output()
            .expect("dd")
    };
    let o = dd("big", 64);
    assert!(!o.status.success(), "64MiB written into a 32MiB volume");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Disk quota exceeded"),
        "{}",
        show(&o)
    );
    std::fs::remove_file(host_vol(&d, "bt", "q").join("big")).expect("rm");
    // Raised: the same write fits.
    d.api_ok(
        "PATCH",
        &vol_url("bt", "q"),
        Some(json!({"config": {"size": "128MiB"}})),
    );
    let o = dd("big", 64);
    assert!(o.status.success(), "{}", show(&o));
    let st = d.api_ok("GET", &format!("{}/state", vol_url("bt", "q")), None);
    assert_eq!(st["usage"]["total"], 128 << 20, "{st}");
    assert!(
        st["usage"]["used"].as_u64().unwrap_or(0) >= 64 << 20,
        "{st}"
    );
    // Unset: no limit.
    d.api_ok("PUT", &vol_url("bt", "q"), Some(json!({"config": {}})));
    let o = dd("big2", 160);
    assert!(o.status.success(), "{}", show(&o));
    d.api_ok("DELETE", &vol_url("bt", "q"), None);
    // A sized volume cannot be copied to a dir pool, and nothing is made there.
    d.api_ok(
        "POST",
        &base,
        Some(json!({"name": "q2", "config": {"size": "16MiB"}})),
    );
    refused(
        &d,
        "POST",
        &format!("{VOLS}/default/volumes/custom"),
        json!({"name": "q2", "source": {"type": "copy", "name": "q2", "pool": "bt"}}),
        400,
        "dir driver cannot enforce size",
    );
    assert!(!host_vol(&d, "default", "q2").exists());
    d.api_ok("DELETE", &vol_url("bt", "q2"), None);
    d.api_ok("DELETE", &format!("{VOLS}/bt"), None);
}

/// Output of a command that must succeed.
fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn silo_storage_volume_commands() {
    let d = TestDaemon::start("cv-cli");
    let sv = |args: &[&str]| {
        let mut a = vec!["storage", "volume"];
        a.extend_from_slice(args);
        d.silo(&a)
    };
    ok(sv(&["create", "default", "cv", "user.x=1"]));
    ok(sv(&[
        "set",
        "default",
        "cv",
        "user.y=2",
        "snapshots.expiry=1w",
    ]));
    assert_eq!(ok(sv(&["get", "default", "cv", "user.y"])), "2\n");
    ok(sv(&["unset", "default", "cv", "user.y"]));
    assert_eq!(ok(sv(&["get", "default", "cv", "user.y"])), "");
    let v = d.api_ok("GET", &vol_url("default", "cv"), None);
    assert_eq!(
        v["config"],
        json!({"user.x": "1", "snapshots.expiry": "1w"}),
        "{v}"
    );
    let o = sv(&["set", "default", "cv", "bogus=1"]);
    assert!(
        !o.status.success() && show(&o).contains("\"bogus\""),
        "{}",
        show(&o)
    );
    // edit from stdin: the writable part.
    ok(d.silo_stdin(
        &["storage", "volume", "edit", "default", "cv"],
        "description: edited\nconfig:\n  user.x: \"9\"\n",
    ));
    let v = d.api_ok("GET", &vol_url("default", "cv"), None);
    assert_eq!(v["config"], json!({"user.x": "9"}), "{v}");
    assert_eq!(v["description"], "edited");
    // Snapshots: take, rename, show, info, restore, delete.
    write_file(&host_vol(&d, "default", "cv").join("f"), "one");
    ok(sv(&["snapshot", "default", "cv", "s1"]));
    ok(sv(&["snapshot", "default", "cv", "--no-expiry"]));
    let out = ok(sv(&["rename", "default", "cv/s1", "cv/s2"]));
    assert_eq!(out, "Renamed storage volume from \"cv/s1\" to \"s2\"\n");
    let show_s2 = ok(sv(&["show", "default", "cv/s2"]));
    assert!(show_s2.contains("name: s2"), "{show_s2}");
    write_file(&host_vol(&d, "default", "cv").join("f"), "two");
    ok(sv(&["restore", "default", "cv", "s2"]));
    assert_eq!(
        std::fs::read_to_string(host_vol(&d, "default", "cv").join("f")).expect("f"),
        "one"
    );
    let info = ok(sv(&["info", "default", "cv"]));
    assert!(
        info.starts_with(
            "Name: cv\nDescription: edited\nType: custom\nContent type: filesystem\nUsage: "
        ),
        "{info}"
    );
    assert!(
        info.contains("Snapshots:") && info.contains("s2") && info.contains("snap0"),
        "{info}"
    );
    ok(sv(&["delete", "default", "cv/snap0"]));
    assert!(!host_snap(&d, "default", "cv", "snap0").exists());
    // Copy (volume only), move to another pool, rename.
    let out = ok(sv(&["copy", "default/cv", "default/cv2", "--volume-only"]));
    assert_eq!(out, "Storage volume copied successfully!\n");
    d.api_ok(
        "POST",
        VOLS,
        Some(json!({"name": "other", "driver": "dir"})),
    );
    let out = ok(sv(&["move", "default/cv2", "other/cv3"]));
    assert_eq!(out, "Storage volume moved successfully!\n");
    assert!(host_vol(&d, "other", "cv3").join("f").is_file());
    assert!(!host_vol(&d, "default", "cv2").exists());
    // Attach and detach, to an instance and a profile, as lxc edits their devices.
    d.import(&busybox_image(false)[0], "busybox");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c1", "source": {"type": "image", "alias": "busybox"}})),
    );
    ok(sv(&["attach", "default", "cv", "c1", "/data"]));
    ok(sv(&["attach", "default", "cv", "c1", "second", "/data2"]));
    let i = d.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(
        i["devices"]["cv"],
        json!({"type": "disk", "pool": "default", "source": "cv", "path": "/data"}),
        "{i}"
    );
    assert_eq!(i["devices"]["second"]["path"], "/data2", "{i}");
    let o = sv(&["detach", "default", "cv", "c1"]);
    assert!(
        show(&o).contains("More than one device matches"),
        "{}",
        show(&o)
    );
    ok(sv(&["detach", "default", "cv", "c1", "second"]));
    ok(sv(&["detach", "default", "cv", "c1"]));
    let i = d.api_ok("GET", "/1.0/instances/c1", None);
    assert!(
        i["devices"].get("cv").is_none() && i["devices"].get("second").is_none(),
        "{i}"
    );
    ok(sv(&[
        "attach-profile",
        "default",
        "cv",
        "default",
        "vol",
        "/vol",
    ]));
    let p = d.api_ok("GET", "/1.0/profiles/default", None);
    assert_eq!(p["devices"]["vol"]["source"], "cv", "{p}");
    let v = d.api_ok("GET", &vol_url("default", "cv"), None);
    assert_eq!(v["used_by"], json!(["/1.0/profiles/default"]), "{v}");
    let o = sv(&["delete", "default", "cv"]);
    assert!(show(&o).contains("still in use"), "{}", show(&o));
    ok(sv(&["detach-profile", "default", "cv", "default"]));
    let out = ok(sv(&["rename", "default", "cv", "cvr"]));
    assert_eq!(out, "Renamed storage volume from \"cv\" to \"cvr\"\n");
    ok(sv(&["delete", "default", "cvr"]));
    ok(sv(&["delete", "other", "cv3"]));
    d.api_ok("DELETE", "/1.0/instances/c1", None);
    assert!(entries(&d.dir.join("storage-pools/default/custom")).is_empty());
    assert!(entries(&d.dir.join("storage-pools/default/custom-snapshots")).is_empty());
}

#[test]
fn the_stock_lxc_client_manages_custom_volumes() {
    let d = TestDaemon::start("cv-lxc");
    let lxc = |args: &[&str]| {
        let mut a = vec!["storage", "volume"];
        a.extend_from_slice(args);
        d.lxc(&a)
    };
    ok(lxc(&["create", "default", "lv"]));
    ok(lxc(&["set", "default", "lv", "user.k=v"]));
    assert_eq!(ok(lxc(&["get", "default", "lv", "user.k"])), "v\n");
    ok(lxc(&["unset", "default", "lv", "user.k"]));
    let v = d.api_ok("GET", &vol_url("default", "lv"), None);
    assert_eq!(v["config"], json!({}), "{v}");
    write_file(&host_vol(&d, "default", "lv").join("f"), "one");
    ok(lxc(&["snapshot", "default", "lv", "ls1"]));
    write_file(&host_vol(&d, "default", "lv").join("f"), "two");
    let listed = ok(lxc(&["list", "default"]));
    assert!(
        listed.contains("custom (snapshot)") && listed.contains("lv/ls1"),
        "{listed}"
    );
    let info = ok(lxc(&["info", "default", "lv"]));
    assert!(info.contains("Name: lv") && info.contains("ls1"), "{info}");
    ok(lxc(&["restore", "default", "lv", "ls1"]));
    assert_eq!(
        std::fs::read_to_string(host_vol(&d, "default", "lv").join("f")).expect("f"),
        "one"
    );
    let snap = ok(lxc(&["show", "default", "lv/ls1"]));
    assert!(snap.contains("name: ls1"), "{snap}");
    ok(lxc(&["rename", "default", "lv/ls1", "lv/ls2"]));
    ok(lxc(&["rename", "default", "lv", "lv2"]));
    assert!(host_snap(&d, "default", "lv2", "ls2").is_dir());
    ok(lxc(&["copy", "default/lv2", "default/lv3"]));
    ok(lxc(&["copy", "default/lv2/ls2", "default/lv4"]));
    assert_eq!(
        std::fs::read_to_string(host_vol(&d, "default", "lv4").join("f")).expect("f"),
        "one"
    );
    ok(lxc(&["delete", "default", "lv4"]));
    let snaps = d.api_ok(
        "GET",
        &format!("{}/snapshots", vol_url("default", "lv3")),
        None,
    );
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
    ok(lxc(&["delete", "default", "lv2/ls2"]));
    for v in ["lv2", "lv3"] {
        ok(lxc(&["delete", "default", v]));
    }
    assert!(entries(&d.dir.join("storage-pools/default/custom")).is_empty());
    assert!(entries(&d.dir.join("storage-pools/default/custom-snapshots")).is_empty());
}

/// Members of a tarball (`tar -tf`, any compression tar sniffs).
fn members(file: &Path) -> Vec<String> {
    let o = Command::new("tar")
        .arg("-tf")
        .arg(file)
        .output()
        .expect("tar");
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect()
}

fn member_text(file: &Path, member: &str) -> String {
    let o = Command::new("tar")
        .arg("-xOf")
        .arg(file)
        .arg(member)
        .output()
        .expect("tar");
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn export_and_import_in_lxds_custom_volume_layout() {
    let d = TestDaemon::start("cv-backup");
    let work = tempfile::tempdir().expect("tmp");
    d.api_ok(
        "POST",
        &format!("{VOLS}/default/volumes/custom"),
        Some(json!({"name": "ev", "description": "exported", "config": {"user.k": "v"}})),
    );
    write_file(&host_vol(&d, "default", "ev").join("f"), "one");
    std::fs::create_dir(host_vol(&d, "default", "ev").join("sub")).expect("mkdir");
    write_file(&host_vol(&d, "default", "ev").join("sub/g"), "deep");
    d.api_ok(
        "POST",
        &format!("{}/snapshots", vol_url("default", "ev")),
        Some(json!({"name": "s0"})),
    );
    write_file(&host_vol(&d, "default", "ev").join("f"), "two");
    let file = work.path().join("ev.tar.gz");
    let out = ok(d.silo(&[
        "storage",
        "volume",
        "export",
        "default",
        "ev",
        &file.to_string_lossy(),
    ]));
    assert_eq!(out, "Backup exported successfully!\n");
    // LXD 5.0's layout, and the server's copy removed after the download.
    let m = members(&file);
    for want in [
        "backup/index.yaml",
        "backup/volume/f",
        "backup/volume/sub/g",
        "backup/volume-snapshots/s0/f",
    ] {
        assert!(m.iter().any(|x| x == want), "{want} not in {m:?}");
    }
    assert_eq!(member_text(&file, "backup/volume/f"), "two");
    assert_eq!(member_text(&file, "backup/volume-snapshots/s0/f"), "one");
    let index = member_text(&file, "backup/index.yaml");
    for want in [
        "name: ev",
        "backend: dir",
        "pool: default",
        "type: custom",
        "- s0",
        "user.k: v",
        "volume_snapshots:",
    ] {
        assert!(index.contains(want), "{want:?} not in index.yaml:\n{index}");
    }
    let b = d.api_ok(
        "GET",
        &format!("{}/backups", vol_url("default", "ev")),
        None,
    );
    assert_eq!(b, json!([]));
    // Imported into a btrfs pool under a new name: contents, snapshot (read-only there),
    // config and description.
    btrfs_pool(&d, "bt");
    ok(d.silo(&[
        "storage",
        "volume",
        "import",
        "bt",
        &file.to_string_lossy(),
        "ev2",
    ]));
    assert_eq!(
        std::fs::read_to_string(host_vol(&d, "bt", "ev2").join("f")).expect("f"),
        "two"
    );
    assert_eq!(
        std::fs::read_to_string(host_vol(&d, "bt", "ev2").join("sub/g")).expect("g"),
        "deep"
    );
    let snap = host_snap(&d, "bt", "ev2", "s0");
    assert_eq!(
        std::fs::read_to_string(snap.join("f")).expect("snap f"),
        "one"
    );
    assert!(
        std::fs::write(snap.join("new"), "x").is_err(),
        "read-only snapshot"
    );
    let v = d.api_ok("GET", &vol_url("bt", "ev2"), None);
    assert_eq!(v["config"], json!({"user.k": "v"}), "{v}");
    assert_eq!(v["description"], "exported");
    let s = d.api_ok("GET", &format!("{}/snapshots", vol_url("bt", "ev2")), None);
    assert_eq!(s, json!([format!("{}/snapshots/s0", vol_url("bt", "ev2"))]));
    // The name taken: refused, and the existing volume is untouched.
    let o = d.silo(&[
        "storage",
        "volume",
        "import",
        "bt",
        &file.to_string_lossy(),
        "ev2",
    ]);
    assert!(
        !o.status.success() && show(&o).contains("already exists"),
        "{}",
        show(&o)
    );
    assert!(host_vol(&d, "bt", "ev2").join("f").is_file());
    // Backups through the API: list, get, export, delete; --volume-only has no snapshots.
    d.api_ok(
        "POST",
        &format!("{}/backups", vol_url("default", "ev")),
        Some(json!({"name": "b1", "volume_only": true, "compression_algorithm": "none"})),
    );
    let b1 = d.api_ok(
        "GET",
        &format!("{}/backups/b1", vol_url("default", "ev")),
        None,
    );
    assert_eq!(b1["volume_only"], true, "{b1}");
    let (c, raw) = d.api_raw(
        "GET",
        &format!("{}/backups/b1/export", vol_url("default", "ev")),
    );
    assert_eq!(c, 200);
    let plain = work.path().join("b1.tar");
    std::fs::write(&plain, raw).expect("write");
    let m = members(&plain);
    assert!(m.iter().any(|x| x == "backup/volume/f"), "{m:?}");
    assert!(
        !m.iter().any(|x| x.starts_with("backup/volume-snapshots")),
        "{m:?}"
    );
    refused(
        &d,
        "POST",
        &format!("{}/backups", vol_url("default", "ev")),
        json!({"name": "b1"}),
        409,
        "already exists",
    );
    refused(
        &d,
        "POST",
        &format!("{}/backups", vol_url("default", "ev")),
        json!({"name": "b2", "optimized_storage": true}),
        400,
        "optimized",
    );
    // A volume's delete takes its backups (files and records).
    let bdir = d.dir.join("volume-backups/default/ev");
    assert!(bdir.join("b1").is_file());
    d.api_ok("DELETE", &vol_url("default", "ev"), None);
    assert!(!bdir.exists());
    d.api_ok("DELETE", &vol_url("bt", "ev2"), None);
    d.api_ok("DELETE", &format!("{VOLS}/bt"), None);
}

#[test]
fn hostile_volume_backups_are_refused_and_leave_nothing() {
    use silo_tests::corpus::Tar;
    let d = TestDaemon::start("cv-hostile");
    let work = tempfile::tempdir().expect("tmp");
    let index = "name: hv\nbackend: dir\npool: default\ntype: custom\nsnapshots: [s0]\n\
                 optimized: false\noptimized_header: false\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "escape by dot-dot",
            {
                let mut t = Tar::new();
                t.file("backup/index.yaml", 0o644, index.as_bytes())
                    .file("backup/volume/ok", 0o644, b"x")
                    .file("backup/volume/../../../../escaped", 0o644, b"x")
                    .file("backup/volume-snapshots/s0/f", 0o644, b"x");
                t.finish()
            },
            "",
        ),
        (
            "escape through a symlink",
            {
                let mut t = Tar::new();
                t.file("backup/index.yaml", 0o644, index.as_bytes())
                    .symlink("backup/volume/link", "/tmp")
                    .file("backup/volume/link/escaped", 0o644, b"x")
                    .file("backup/volume-snapshots/s0/f", 0o644, b"x");
                t.finish()
            },
            "",
        ),
        (
            "an instance backup",
            {
                let mut t = Tar::new();
                t.file(
                    "backup/index.yaml",
                    0o644,
                    b"name: c1\nbackend: dir\npool: default\ntype: container\n",
                );
                t.finish()
            },
            "not a custom volume",
        ),
        (
            "a bad snapshot name",
            {
                let mut t = Tar::new();
                t.file(
                    "backup/index.yaml",
                    0o644,
                    b"name: hv\ntype: custom\nsnapshots: [\"../x\"]\n",
                );
                t.finish()
            },
            "snapshot name",
        ),
        (
            "an unknown config key",
            {
                let mut t = Tar::new();
                t.file(
                    "backup/index.yaml",
                    0o644,
                    b"name: hv\ntype: custom\nconfig:\n  volume:\n    config:\n      bogus: x\n",
                );
                t.finish()
            },
            "\"bogus\"",
        ),
    ];
    for (what, bytes, want) in cases {
        let f = work.path().join("h.tar");
        std::fs::write(&f, &bytes).expect("write");
        let o = d.silo(&[
            "storage",
            "volume",
            "import",
            "default",
            &f.to_string_lossy(),
        ]);
        assert!(!o.status.success(), "{what}: imported");
        assert!(show(&o).contains(want), "{what}: {}", show(&o));
        let top = d.dir.join("storage-pools/default");
        assert!(
            entries(&top.join("custom")).is_empty(),
            "{what}: {:?}",
            entries(&top.join("custom"))
        );
        assert!(
            entries(&top.join("custom-snapshots")).is_empty(),
            "{what}: {:?}",
            entries(&top.join("custom-snapshots"))
        );
        let list = d.api_ok("GET", &format!("{VOLS}/default/volumes/custom"), None);
        assert_eq!(list, json!([]), "{what}");
    }
    assert!(!Path::new("/tmp/escaped").exists());
}

#[test]
fn the_stock_lxc_client_exports_and_imports_custom_volumes() {
    let d = TestDaemon::start("cv-lxc-backup");
    let work = tempfile::tempdir().expect("tmp");
    ok(d.lxc(&["storage", "volume", "create", "default", "xv"]));
    write_file(&host_vol(&d, "default", "xv").join("f"), "lxc");
    ok(d.lxc(&["storage", "volume", "snapshot", "default", "xv", "s0"]));
    let file = work.path().join("xv.tar.gz");
    ok(d.lxc(&[
        "storage",
        "volume",
        "export",
        "default",
        "xv",
        &file.to_string_lossy(),
    ]));
    assert!(members(&file)
        .iter()
        .any(|m| m == "backup/volume-snapshots/s0/f"));
    ok(d.lxc(&[
        "storage",
        "volume",
        "import",
        "default",
        &file.to_string_lossy(),
        "xv2",
    ]));
    assert_eq!(
        std::fs::read_to_string(host_vol(&d, "default", "xv2").join("f")).expect("f"),
        "lxc"
    );
    assert!(host_snap(&d, "default", "xv2", "s0").join("f").is_file());
    let info = ok(d.lxc(&["storage", "volume", "info", "default", "xv2"]));
    assert!(info.contains("s0"), "{info}");
    for v in ["xv", "xv2"] {
        ok(d.lxc(&["storage", "volume", "delete", "default", v]));
    }
}

#[test]
fn volume_backups_cross_between_silo_and_lxd() {
    let l = silo_tests::lxd::TestLxd::start("cv-interop");
    let d = TestDaemon::start("cv-interop");
    let work = tempfile::tempdir().expect("tmp");
    // LXD → silo.
    ok(l.lxc(&[
        "storage", "volume", "create", "default", "fromlxd", "user.a=1",
    ]));
    let lvol = l.dir.join("storage-pools/default/custom/default_fromlxd");
    write_file(&lvol.join("f"), "lxd-one");
    ok(l.lxc(&["storage", "volume", "snapshot", "default", "fromlxd", "s0"]));
    write_file(&lvol.join("f"), "lxd-two");
    let a = work.path().join("fromlxd.tar.gz");
    ok(l.lxc(&[
        "storage",
        "volume",
        "export",
        "default",
        "fromlxd",
        &a.to_string_lossy(),
    ]));
    ok(d.silo(&[
        "storage",
        "volume",
        "import",
        "default",
        &a.to_string_lossy(),
    ]));
    assert_eq!(
        std::fs::read_to_string(host_vol(&d, "default", "fromlxd").join("f")).expect("f"),
        "lxd-two"
    );
    assert_eq!(
        std::fs::read_to_string(host_snap(&d, "default", "fromlxd", "s0").join("f"))
            .expect("snap f"),
        "lxd-one"
    );
    let v = d.api_ok("GET", &vol_url("default", "fromlxd"), None);
    assert_eq!(v["config"], json!({"user.a": "1"}), "{v}");
    // silo → LXD.
    let b = work.path().join("fromsilo.tar.gz");
    ok(d.silo(&[
        "storage",
        "volume",
        "export",
        "default",
        "fromlxd",
        &b.to_string_lossy(),
    ]));
    ok(l.lxc(&[
        "storage",
        "volume",
        "import",
        "default",
        &b.to_string_lossy(),
        "fromsilo",
    ]));
    let back = l.dir.join("storage-pools/default/custom/default_fromsilo");
    assert_eq!(
        std::fs::read_to_string(back.join("f")).expect("f"),
        "lxd-two"
    );
    let snap = l
        .dir
        .join("storage-pools/default/custom-snapshots/default_fromsilo/s0");
    assert_eq!(
        std::fs::read_to_string(snap.join("f")).expect("snap f"),
        "lxd-one"
    );
    let info = ok(l.lxc(&["storage", "volume", "show", "default", "fromsilo"]));
    assert!(info.contains("user.a: \"1\""), "{info}");
}

#[test]
fn snapshots_go_with_copies_and_moves_between_pools() {
    let d = TestDaemon::start("cv-xpool");
    btrfs_pool(&d, "bt");
    d.api_ok(
        "POST",
        &format!("{VOLS}/default/volumes/custom"),
        Some(json!({"name": "xv", "config": {"user.k": "v"}})),
    );
    let f = host_vol(&d, "default", "xv").join("f");
    let snaps = format!("{}/snapshots", vol_url("default", "xv"));
    for (snap, text, extra) in [("s0", "zero", true), ("s1", "one", false)] {
        write_file(&f, text);
        let g = host_vol(&d, "default", "xv").join("only-in-s0");
        if extra {
            write_file(&g, "x");
        } else {
            std::fs::remove_file(&g).expect("rm");
        }
        d.api_ok("POST", &snaps, Some(json!({"name": snap})));
    }
    write_file(&f, "now");
    // Copy to the btrfs pool: every snapshot as it was (read-only there), then the volume.
    d.api_ok(
        "POST",
        &format!("{VOLS}/bt/volumes/custom"),
        Some(json!({"name": "xc", "source": {"type": "copy", "name": "xv", "pool": "default"}})),
    );
    let read = |p: PathBuf| std::fs::read_to_string(p).expect("read");
    assert_eq!(read(host_vol(&d, "bt", "xc").join("f")), "now");
    assert!(!host_vol(&d, "bt", "xc").join("only-in-s0").exists());
    assert_eq!(read(host_snap(&d, "bt", "xc", "s0").join("f")), "zero");
    assert!(host_snap(&d, "bt", "xc", "s0").join("only-in-s0").is_file());
    assert_eq!(read(host_snap(&d, "bt", "xc", "s1").join("f")), "one");
    assert!(!host_snap(&d, "bt", "xc", "s1").join("only-in-s0").exists());
    assert!(std::fs::write(host_snap(&d, "bt", "xc", "s1").join("new"), "x").is_err());
    let list = d.api_ok("GET", &format!("{}/snapshots", vol_url("bt", "xc")), None);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let v = d.api_ok("GET", &vol_url("bt", "xc"), None);
    assert_eq!(v["config"], json!({"user.k": "v"}), "{v}");
    // A new volume from a snapshot, in the same pool and in another.
    for (pool, name) in [("default", "fs1"), ("bt", "fs2")] {
        d.api_ok(
            "POST",
            &format!("{VOLS}/{pool}/volumes/custom"),
            Some(json!({"name": name, "source": {"type": "copy", "name": "xv/s0", "pool": "default"}})),
        );
        assert_eq!(read(host_vol(&d, pool, name).join("f")), "zero");
        assert!(host_vol(&d, pool, name).join("only-in-s0").is_file());
        let v = d.api_ok("GET", &vol_url(pool, name), None);
        assert_eq!(v["config"], json!({"user.k": "v"}), "{v}");
        let s = d.api_ok("GET", &format!("{}/snapshots", vol_url(pool, name)), None);
        assert_eq!(s, json!([]), "{s}");
        d.api_ok("DELETE", &vol_url(pool, name), None);
    }
    refused(
        &d,
        "POST",
        &format!("{VOLS}/default/volumes/custom"),
        json!({"name": "fs3", "source": {"type": "copy", "name": "xv/nope", "pool": "default"}}),
        404,
        "not found",
    );
    assert!(!host_vol(&d, "default", "fs3").exists());
    // Move back to the dir pool under another name: snapshots and records follow, the
    // source goes.
    d.api_ok(
        "POST",
        &vol_url("bt", "xc"),
        Some(json!({"name": "xm", "pool": "default"})),
    );
    assert!(!host_vol(&d, "bt", "xc").exists());
    assert!(entries(&d.dir.join("storage-pools/bt/custom-snapshots")).is_empty());
    assert_eq!(read(host_snap(&d, "default", "xm", "s0").join("f")), "zero");
    assert_eq!(read(host_vol(&d, "default", "xm").join("f")), "now");
    let list = d.api_ok(
        "GET",
        &format!("{}/snapshots", vol_url("default", "xm")),
        None,
    );
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    for v in ["xv", "xm"] {
        d.api_ok("DELETE", &vol_url("default", v), None);
    }
    d.api_ok("DELETE", &format!("{VOLS}/bt"), None);
}

/// What container root puts in a volume (symlinks out of it) and links planted in silo-store's
/// own tree are never followed by snapshots, restores or exports: nothing outside is read or
/// written.
#[test]
fn planted_symlinks_are_never_followed() {
    let d = TestDaemon::start("cv-links");
    let outside = tempfile::tempdir().expect("tmp");
    write_file(&outside.path().join("secret"), "host secret");
    for v in ["v1", "v2"] {
        d.api_ok(
            "POST",
            &format!("{VOLS}/default/volumes/custom"),
            Some(json!({"name": v})),
        );
    }
    let v1 = host_vol(&d, "default", "v1");
    std::os::unix::fs::symlink(outside.path(), v1.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/etc/shadow", v1.join("shadow")).expect("symlink");
    d.api_ok(
        "POST",
        &format!("{}/snapshots", vol_url("default", "v1")),
        Some(json!({"name": "s0"})),
    );
    let snap = host_snap(&d, "default", "v1", "s0");
    assert_eq!(
        std::fs::read_link(snap.join("link")).expect("link"),
        outside.path()
    );
    assert!(std::fs::symlink_metadata(snap.join("shadow"))
        .expect("shadow")
        .is_symlink());
    // The export stores the links as links.
    let work = tempfile::tempdir().expect("tmp");
    let file = work.path().join("v1.tar");
    ok(d.silo(&[
        "storage",
        "volume",
        "export",
        "default",
        "v1",
        &file.to_string_lossy(),
        "--compression",
        "none",
    ]));
    let raw = std::fs::read(&file).expect("tarball");
    assert!(!String::from_utf8_lossy(&raw).contains("host secret"));
    assert!(
        !String::from_utf8_lossy(&raw).contains("root:"),
        "/etc/shadow's contents"
    );
    // A link planted where a volume's snapshots go: the snapshot is refused, nothing lands
    // outside.
    let top = d.dir.join("storage-pools/default/custom-snapshots");
    std::os::unix::fs::symlink(outside.path(), top.join("v2")).expect("plant");
    let (c, v) = d.api(
        "POST",
        &format!("{}/snapshots", vol_url("default", "v2")),
        Some(json!({"name": "s0"})),
    );
    let op = d.wait_op(&json!({"operation": v["operation"]}));
    assert!(c == 202 && op["status"] == "Failure", "{op}");
    assert_eq!(entries(outside.path()), vec!["secret"]);
    std::fs::remove_file(top.join("v2")).expect("unplant");
    // A link planted where a restore makes its scratch copy: removed as a link, never
    // followed; the restore completes.
    let scratch = d.dir.join("storage-pools/default/custom/.restore-v1");
    std::os::unix::fs::symlink(outside.path(), &scratch).expect("plant");
    write_file(&v1.join("f"), "later");
    d.api_ok(
        "PUT",
        &vol_url("default", "v1"),
        Some(json!({"restore": "s0"})),
    );
    assert!(!v1.join("f").exists());
    assert!(!scratch.exists());
    assert_eq!(entries(outside.path()), vec!["secret"]);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).expect("secret"),
        "host secret"
    );
    for v in ["v1", "v2"] {
        d.api_ok("DELETE", &vol_url("default", v), None);
    }
}
