//! `disk` devices for real: custom volumes and host paths mounted in running containers, at
//! start and hot-plugged, with the owners, modes and flags the instance should see, and every
//! refusal (policy, symlinks, missing sources) leaving nothing behind.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use silo_tests::{busybox_image, show, TestDaemon};

fn busybox(d: &TestDaemon) {
    d.import(&busybox_image(false)[0], "busybox");
}

/// Creates (without starting) an instance with extra devices.
fn create(d: &TestDaemon, name: &str, devices: serde_json::Value) -> (u16, serde_json::Value) {
    let (code, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(json!({"name": name, "source": {"type": "image", "alias": "busybox"}, "devices": devices})),
    );
    if code == 202 {
        let op = d.wait_op(&v);
        return (if op["status"] == "Success" { 200 } else { 500 }, op);
    }
    (code, v)
}

fn start(d: &TestDaemon, name: &str) {
    let op = d.set_state(name, "start", false);
    assert_eq!(op["status"], "Success", "start {name}: {op}");
}

fn sh(d: &TestDaemon, name: &str, script: &str) -> (i64, String, String) {
    d.exec(name, &["sh", "-c", script])
}

fn sh_ok(d: &TestDaemon, name: &str, script: &str) -> String {
    let (rc, out, err) = sh(d, name, script);
    assert_eq!(rc, 0, "{script}: {out} {err}");
    out
}

fn mounted_inside(d: &TestDaemon, name: &str, path: &str) -> bool {
    let out = sh_ok(d, name, "cat /proc/self/mountinfo");
    out.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(path))
}

/// A host directory shared with instances (removed at the end, mounts under it first).
struct Share {
    dir: tempfile::TempDir,
}

impl Share {
    fn new() -> Share {
        let dir = tempfile::Builder::new()
            .prefix("silo-share-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        Share { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn policy(&self) -> String {
        format!("host_paths = [{:?}]\n", self.path().display().to_string())
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        silo_tests::cleanup_mounts(self.dir.path());
    }
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
}

#[test]
fn a_custom_volume_keeps_its_owners_in_every_instance_it_is_attached_to() {
    let d = TestDaemon::start("disk-volume");
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/storage-pools/default/volumes",
        Some(json!({"name": "vol1", "type": "custom"})),
    );
    // Through the CLI, as a user would: a device on a stopped instance, then a start.
    let (code, v) = create(&d, "c1", json!({}));
    assert_eq!(code, 200, "{v}");
    let o = d.silo(&[
        "config",
        "device",
        "add",
        "c1",
        "data",
        "disk",
        "pool=default",
        "source=vol1",
        "path=/data",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    start(&d, "c1");
    assert_eq!(d.status("c1"), "Running");
    assert!(mounted_inside(&d, "c1", "/data"));
    sh_ok(
        &d,
        "c1",
        "echo hello > /data/f && chown 1000:1001 /data/f && chmod 640 /data/f && mkdir /data/d",
    );
    // On the host the volume keeps the instance's own ids (no shift), as root volumes do.
    let host = d.dir.join("storage-pools/default/custom/vol1/f");
    let md = std::fs::metadata(&host).expect("the file is in the volume on the host");
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (1000, 1001, 0o640));
    assert_eq!(std::fs::read_to_string(&host).expect("read"), "hello\n");

    // The same volume through a profile, read-only, in a second instance: same owners.
    d.api_ok(
        "POST",
        "/1.0/profiles",
        Some(json!({"name": "shared", "devices": {"data": {
            "type": "disk", "pool": "default", "source": "vol1", "path": "/srv/data",
            "readonly": "true"}}})),
    );
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c2", "profiles": ["default", "shared"],
            "source": {"type": "image", "alias": "busybox"}})),
    );
    start(&d, "c2");
    assert_eq!(
        sh_ok(&d, "c2", "stat -c '%u %g %a' /srv/data/f").trim(),
        "1000 1001 640"
    );
    assert_eq!(sh_ok(&d, "c2", "cat /srv/data/f"), "hello\n");
    let (rc, _, err) = sh(&d, "c2", "touch /srv/data/x");
    assert_ne!(rc, 0, "a read-only disk took a write");
    assert!(err.contains("Read-only"), "{err}");
    // Container root cannot lift the flag: the kernel locked it when the mount arrived.
    let (rc, _, _) = sh(&d, "c2", "mount -o remount,rw /srv/data");
    assert_ne!(
        rc, 0,
        "container root remounted a read-only disk read-write"
    );
    let (rc, _, _) = sh(&d, "c2", "mount -o remount,rw,bind /srv/data");
    assert_ne!(
        rc, 0,
        "container root remounted a read-only disk read-write"
    );
    assert!(!d.dir.join("storage-pools/default/custom/vol1/x").exists());
}

#[test]
fn host_paths_under_the_policy_keep_host_owners_but_never_host_root() {
    let share = Share::new();
    std::fs::create_dir(share.p("user")).expect("mkdir");
    chown(&share.p("user"), 1000, 1000);
    std::fs::write(share.p("user/mine"), "mine\n").expect("write");
    chown(&share.p("user/mine"), 1000, 1000);
    std::fs::write(share.p("rootfile"), "root's\n").expect("write");
    std::fs::write(share.p("single"), "one file\n").expect("write");
    let d = TestDaemon::start_with_policy("disk-host", &share.policy());
    busybox(&d);
    d.launch("busybox", "c1");

    // Hot-plugged with the stock lxc client into the running instance.
    let src = share.path().display().to_string();
    let o = d.lxc(&[
        "config",
        "device",
        "add",
        "c1",
        "h",
        "disk",
        &format!("source={src}"),
        "path=/mnt/h",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(mounted_inside(&d, "c1", "/mnt/h"));
    assert_eq!(
        sh_ok(&d, "c1", "stat -c '%u %g' /mnt/h/user/mine").trim(),
        "1000 1000"
    );
    // Host root's files are nobody's inside, and container root cannot write as host root.
    assert_eq!(
        sh_ok(&d, "c1", "stat -c '%u %g' /mnt/h/rootfile").trim(),
        "65534 65534"
    );
    let (rc, _, _) = sh(&d, "c1", "echo x >> /mnt/h/rootfile");
    assert_ne!(rc, 0, "container root wrote to host root's file");
    let (rc, _, _) = sh(&d, "c1", "touch /mnt/h/user/by-container-root");
    assert_ne!(rc, 0, "container root created a file as host root");
    assert!(!share.p("user/by-container-root").exists());
    // The instance's uid 1000 writes as host uid 1000.
    let (rc, out, err) = d.exec_as("c1", &["touch", "/mnt/h/user/new"], 1000);
    assert_eq!(rc, 0, "{out} {err}");
    let md = std::fs::metadata(share.p("user/new")).expect("made on the host");
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    // Neither set-uid programs nor device nodes of the host's work through it.
    let opts = sh_ok(&d, "c1", "grep ' /mnt/h ' /proc/self/mountinfo");
    assert!(opts.contains("nosuid") && opts.contains("nodev"), "{opts}");

    // A single file, with silo's own CLI.
    let o = d.silo(&[
        "config",
        "device",
        "add",
        "c1",
        "one",
        "disk",
        &format!("source={src}/single"),
        "path=/etc/from-host",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(sh_ok(&d, "c1", "cat /etc/from-host"), "one file\n");

    // Unplugged: the mounts go, the host's files stay.
    let o = d.lxc(&["config", "device", "remove", "c1", "h"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["config", "device", "remove", "c1", "one"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(!mounted_inside(&d, "c1", "/mnt/h"));
    assert!(!mounted_inside(&d, "c1", "/etc/from-host"));
    assert!(share.p("user/mine").exists() && share.p("single").exists());

    // Across a restart of the instance, a device stored on it is mounted at start.
    let o = d.lxc(&[
        "config",
        "device",
        "add",
        "c1",
        "h",
        "disk",
        &format!("source={src}/user"),
        "path=/home/u",
        "readonly=true",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    d.set_state("c1", "restart", true);
    assert_eq!(sh_ok(&d, "c1", "cat /home/u/mine"), "mine\n");
    let (rc, _, _) = d.exec_as("c1", &["touch", "/home/u/ro"], 1000);
    assert_ne!(rc, 0, "a read-only host path took a write");
}

#[test]
fn a_host_path_the_policy_does_not_allow_is_refused_at_create_edit_and_start() {
    let share = Share::new();
    std::fs::create_dir(share.p("ok")).expect("mkdir");
    std::os::unix::fs::symlink("/etc", share.p("link")).expect("symlink");
    let outside = tempfile::tempdir().expect("tmp");
    let out = outside.path().display().to_string();
    let mut d = TestDaemon::start_with_policy("disk-policy", &share.policy());
    busybox(&d);

    // At create: a 403 naming the policy key, and no instance.
    let (code, v) = create(
        &d,
        "c1",
        json!({"h": {"type": "disk", "source": out, "path": "/mnt"}}),
    );
    assert_eq!(code, 403, "{v}");
    assert!(v.to_string().contains("host_paths"), "{v}");
    assert_eq!(d.api("GET", "/1.0/instances/c1", None).0, 404);

    // At edit: refused, and the device is not stored.
    let (code, v) = create(&d, "c1", json!({}));
    assert_eq!(code, 200, "{v}");
    let (code, v) = d.api(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"h": {"type": "disk", "source": out, "path": "/mnt"}}})),
    );
    assert_eq!(code, 403, "{v}");
    assert!(v.to_string().contains("host_paths"), "{v}");
    let i = d.api_ok("GET", "/1.0/instances/c1", None);
    assert!(i["devices"].get("h").is_none(), "{i}");
    let (code, v) = d.api(
        "POST",
        "/1.0/profiles",
        Some(
            json!({"name": "p", "devices": {"h": {"type": "disk", "source": out, "path": "/mnt"}}}),
        ),
    );
    assert_eq!(code, 403, "{v}");

    // Through a symlink beneath an allowed path: stored (the policy allows the prefix), but
    // silo-priv opens nothing through a link, so the start fails and leaves nothing running.
    let link = share.p("link").display().to_string();
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"h": {"type": "disk", "source": link, "path": "/mnt"}}})),
    );
    let op = d.set_state("c1", "start", false);
    assert_eq!(op["status"], "Failure", "{op}");
    assert!(op["err"].as_str().unwrap_or("").contains("symlink"), "{op}");
    assert_eq!(d.status("c1"), "Stopped");
    assert!(silo_tests::instance_pids(&d.dir).is_empty());

    // At start: allowed when stored, refused once root takes the path out of the policy.
    let ok = share.p("ok").display().to_string();
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"h": {"type": "disk", "source": ok, "path": "/mnt"}}})),
    );
    d.stop();
    std::fs::write(format!("{}.policy.toml", d.dir.display()), "").expect("policy");
    d.spawn();
    let op = d.set_state("c1", "start", false);
    assert_eq!(op["status"], "Failure", "{op}");
    assert!(
        op["err"].as_str().unwrap_or("").contains("host_paths"),
        "{op}"
    );
    assert_eq!(d.status("c1"), "Stopped");
    assert!(silo_tests::instance_pids(&d.dir).is_empty());
}

#[test]
fn missing_sources_fail_the_start_unless_not_required() {
    let share = Share::new();
    let missing = share.p("missing").display().to_string();
    let d = TestDaemon::start_with_policy("disk-missing", &share.policy());
    busybox(&d);
    let (code, v) = create(
        &d,
        "c1",
        json!({"h": {"type": "disk", "source": missing, "path": "/mnt/m"}}),
    );
    assert_eq!(code, 200, "{v}");
    let op = d.set_state("c1", "start", false);
    assert_eq!(op["status"], "Failure", "{op}");
    assert!(op["err"].as_str().unwrap_or("").contains("missing"), "{op}");
    assert_eq!(d.status("c1"), "Stopped");
    assert!(silo_tests::instance_pids(&d.dir).is_empty());

    // A custom volume that is not there is refused when stored.
    let (code, v) = d.api(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"v": {"type": "disk", "pool": "default", "source": "nope", "path": "/v"}}})),
    );
    assert_eq!(code, 404, "{v}");

    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"h": {"type": "disk", "source": missing, "path": "/mnt/m", "required": "false"}}})),
    );
    start(&d, "c1");
    assert_eq!(d.status("c1"), "Running");
    assert!(!mounted_inside(&d, "c1", "/mnt/m"));
}

#[test]
fn a_symlink_inside_the_instance_never_leads_a_mount_out() {
    let share = Share::new();
    std::fs::write(share.p("marker"), "x").expect("write");
    let d = TestDaemon::start_with_policy("disk-escape", &share.policy());
    busybox(&d);
    d.launch("busybox", "c1");
    let escape = format!("/tmp/silo-disk-escape-{}", std::process::id());
    // Container root plants links pointing at host-looking places.
    sh_ok(
        &d,
        "c1",
        &format!(
            "mkdir -p {escape} && ln -s ../../../../..{escape} /evil && ln -s /proc/1/root /evil2"
        ),
    );
    let src = share.path().display().to_string();
    for (dev, path) in [("e1", "/evil/sub"), ("e2", "/evil2/x")] {
        let (code, v) = d.api(
            "PATCH",
            "/1.0/instances/c1",
            Some(json!({"devices": {dev: {"type": "disk", "source": src, "path": path}}})),
        );
        assert!(code == 200 || code == 500, "{v}");
    }
    // Whatever was made is inside the instance, never on the host.
    assert!(
        !Path::new(&escape).exists(),
        "a mount followed a link onto the host"
    );
    let (rc, out, _) = sh(&d, "c1", &format!("cat {escape}/sub/marker"));
    assert_eq!((rc, out.as_str()), (0, "x"), "resolved inside the instance");
    let (rc, _, _) = sh(&d, "c1", "ls /evil2/x");
    assert_ne!(rc, 0, "a mount went through /proc/1/root");
}

#[test]
fn slave_propagation_shows_the_hosts_later_mounts_and_shared_is_refused() {
    let share = Share::new();
    std::fs::create_dir(share.p("sub")).expect("mkdir");
    let s = share.path().display().to_string();
    // The share as a shared mount of its own, so that the host's mounts under it propagate.
    for args in [
        vec!["--bind", s.as_str(), s.as_str()],
        vec!["--make-shared", s.as_str()],
    ] {
        let o = Command::new("mount").args(&args).output().expect("mount");
        assert!(o.status.success(), "{}", show(&o));
    }
    let d = TestDaemon::start_with_policy("disk-prop", &share.policy());
    busybox(&d);
    d.launch("busybox", "c1");
    let (code, v) = d.api(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"h": {"type": "disk", "source": s, "path": "/h", "propagation": "shared"}}})),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("slave"), "{v}");
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"h": {"type": "disk", "source": s, "path": "/h", "propagation": "slave"}}})),
    );
    let sub = share.p("sub").display().to_string();
    let o = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "silo-prop-test", &sub])
        .output()
        .expect("mount");
    assert!(o.status.success(), "{}", show(&o));
    std::fs::write(share.p("sub/late"), "late\n").expect("write");
    assert_eq!(sh_ok(&d, "c1", "cat /h/sub/late"), "late\n");
    // And nothing the instance mounts there reaches the host.
    sh_ok(&d, "c1", "mount -t tmpfs none /h/sub");
    assert!(
        share.p("sub/late").exists(),
        "the instance's mount reached the host"
    );
}

#[test]
fn a_dir_pool_on_a_host_directory_the_policy_allows() {
    let share = Share::new();
    for d in ["pool", "full", "theirs"] {
        std::fs::create_dir(share.p(d)).expect("mkdir");
    }
    std::fs::write(share.p("full/x"), "x").expect("write");
    chown(&share.p("theirs"), 1000, 1000);
    std::os::unix::fs::symlink(share.p("pool"), share.p("link")).expect("symlink");
    let outside = tempfile::tempdir().expect("tmp");
    let d = TestDaemon::start_with_policy("disk-dirpool", &share.policy());
    busybox(&d);
    let create = |name: &str, source: &str| {
        d.api(
            "POST",
            "/1.0/storage-pools",
            Some(json!({"name": name, "driver": "dir", "config": {"source": source}})),
        )
    };
    for (name, src, code, word) in [
        (
            "p1",
            outside.path().display().to_string(),
            403,
            "host_paths",
        ),
        (
            "p2",
            share.p("full").display().to_string(),
            400,
            "not empty",
        ),
        ("p3", share.p("link").display().to_string(), 400, "symlink"),
        (
            "p4",
            share.p("theirs").display().to_string(),
            400,
            "owned by root",
        ),
    ] {
        let (c, v) = create(name, &src);
        assert_eq!(c, code, "{src}: {v}");
        assert!(v.to_string().contains(word), "{src}: {v}");
        assert_eq!(
            d.api("GET", &format!("/1.0/storage-pools/{name}"), None).0,
            404
        );
        assert!(!d.dir.join("storage-pools").join(name).exists());
    }
    let src = share.p("pool").display().to_string();
    let (c, v) = create("hostdir", &src);
    assert_eq!(c, 200, "{v}");
    let o = d.lxc(&["launch", "busybox", "c1", "-s", "hostdir"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(d.status("c1"), "Running");
    // The instance's volume is in the host directory itself.
    assert!(share.p("pool/containers/c1/rootfs/bin/busybox").exists());
    // Survives a restart of silo (the bind is found in place, not stacked).
    let mut d = d;
    d.stop();
    d.spawn();
    let mounts_before = silo_tests::mounts_under(&d.dir).len();
    d.stop();
    d.spawn();
    assert_eq!(silo_tests::mounts_under(&d.dir).len(), mounts_before);
    let o = d.lxc(&["delete", "-f", "c1"]);
    assert!(o.status.success(), "{}", show(&o));
    let (c, v) = d.api("DELETE", "/1.0/storage-pools/hostdir", None);
    assert_eq!(c, 200, "{v}");
    // The host directory stays, as it was given: empty.
    assert!(share.p("pool").is_dir());
    assert_eq!(std::fs::read_dir(share.p("pool")).expect("ls").count(), 0);
}

#[test]
fn a_profile_edit_reaches_the_running_instances_that_use_it() {
    let share = Share::new();
    std::fs::write(share.p("f"), "shared\n").expect("write");
    let d = TestDaemon::start_with_policy("disk-profile", &share.policy());
    busybox(&d);
    d.api_ok("POST", "/1.0/profiles", Some(json!({"name": "data"})));
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c1", "profiles": ["default", "data"],
            "source": {"type": "image", "alias": "busybox"}})),
    );
    start(&d, "c1");
    d.launch("busybox", "other");
    let src = share.path().display().to_string();
    let o = d.lxc(&[
        "profile",
        "device",
        "add",
        "data",
        "d",
        "disk",
        &format!("source={src}"),
        "path=/data",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(sh_ok(&d, "c1", "cat /data/f"), "shared\n");
    assert!(
        !mounted_inside(&d, "other", "/data"),
        "an instance without the profile got it"
    );
    let o = d.lxc(&["profile", "device", "remove", "data", "d"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(!mounted_inside(&d, "c1", "/data"));
}

#[test]
fn images_and_backups_live_in_the_custom_volumes_the_server_names() {
    let mut d = TestDaemon::start("disk-statevols");
    busybox(&d);
    let fp = d.api_ok("GET", "/1.0/images/aliases/busybox", None)["target"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    for v in ["imgs", "baks"] {
        d.api_ok(
            "POST",
            "/1.0/storage-pools/default/volumes",
            Some(json!({"name": v, "type": "custom"})),
        );
    }
    let custom = d.dir.join("storage-pools/default/custom");
    let vol = |v: &str| custom.join(v);
    d.api_ok(
        "PATCH",
        "/1.0",
        Some(json!({"config": {"storage.images_volume": "default/imgs",
            "storage.backups_volume": "default/baks"}})),
    );
    // The image moved into the volume, and silod works from there.
    assert!(vol("imgs").join("images").join(&fp).exists());
    d.launch("busybox", "c1");
    // What holds silod's data is never an instance's disk, nor the other way round.
    let (code, v) = d.api(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"i": {"type": "disk", "pool": "default", "source": "imgs", "path": "/i"}}})),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("storage.images_volume"), "{v}");
    d.api_ok(
        "POST",
        "/1.0/storage-pools/default/volumes",
        Some(json!({"name": "used", "type": "custom"})),
    );
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"u": {"type": "disk", "pool": "default", "source": "used", "path": "/u"}}})),
    );
    let (code, v) = d.api(
        "PATCH",
        "/1.0",
        Some(json!({"config": {"storage.backups_volume": "default/used"}})),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("attached"), "{v}");
    d.api_ok(
        "POST",
        "/1.0/instances/c1/backups",
        Some(json!({"name": "b1"})),
    );
    assert!(
        vol("baks").join("backups/c1/b1").exists(),
        "the backup is not in its volume"
    );
    // After a restart of silod the volumes are found in place.
    d.stop();
    d.spawn();
    let (code, bytes) = d.api_raw("GET", &format!("/1.0/images/{fp}/export"));
    assert_eq!(code, 200);
    assert!(bytes.len() > 1000);
    let (code, _) = d.api_raw("GET", "/1.0/instances/c1/backups/b1/export");
    assert_eq!(code, 200);
    // Unset: everything comes back to silod's own directories.
    d.api_ok(
        "PATCH",
        "/1.0",
        Some(json!({"config": {"storage.images_volume": "", "storage.backups_volume": ""}})),
    );
    assert!(!vol("imgs").join("images").join(&fp).exists());
    assert!(d.dir.join("images").join(&fp).exists());
    assert!(d.dir.join("backups/c1/b1").exists());
    assert!(silo_tests::mounts_under(&d.dir.join("images")).is_empty());
    let (code, _) = d.api_raw("GET", "/1.0/instances/c1/backups/b1/export");
    assert_eq!(code, 200);
}

#[test]
fn instances_copy_and_move_between_pools_on_one_host() {
    let d = TestDaemon::start("disk-poolmove");
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "p2", "driver": "dir"})),
    );
    let (code, v) = create(&d, "c1", json!({}));
    assert_eq!(code, 200, "{v}");
    start(&d, "c1");
    sh_ok(&d, "c1", "echo mine > /root/marker");
    d.set_state("c1", "stop", true);
    let o = d.lxc(&["copy", "c1", "c2", "-s", "p2"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.lxc(&["move", "c1", "c3", "-s", "p2"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(d.api("GET", "/1.0/instances/c1", None).0, 404);
    for c in ["c2", "c3"] {
        let i = d.api_ok("GET", &format!("/1.0/instances/{c}"), None);
        assert_eq!(i["expanded_devices"]["root"]["pool"], "p2", "{i}");
        assert!(d
            .dir
            .join(format!(
                "storage-pools/p2/containers/{c}/rootfs/root/marker"
            ))
            .exists());
        start(&d, c);
        assert_eq!(sh_ok(&d, c, "cat /root/marker"), "mine\n");
    }
    assert!(!d.dir.join("storage-pools/default/containers/c1").exists());
    // And back, keeping the name (LXD's pool move: POST with the pool).
    d.set_state("c3", "stop", true);
    let o = d.lxc(&["move", "c3", "-s", "default"]);
    assert!(o.status.success(), "{}", show(&o));
    let i = d.api_ok("GET", "/1.0/instances/c3", None);
    assert_eq!(i["expanded_devices"]["root"]["pool"], "default", "{i}");
    assert!(!d.dir.join("storage-pools/p2/containers/c3").exists());
}

#[test]
fn a_custom_volumes_size_holds_inside_the_instance_on_btrfs() {
    let d = TestDaemon::start("disk-quota");
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "bt", "driver": "btrfs", "config": {"size": "512MiB"}})),
    );
    d.api_ok(
        "POST",
        "/1.0/storage-pools/bt/volumes",
        Some(json!({"name": "small", "type": "custom", "config": {"size": "32MiB"}})),
    );
    let (code, v) = create(
        &d,
        "c1",
        json!({"v": {"type": "disk", "pool": "bt", "source": "small", "path": "/small"}}),
    );
    assert_eq!(code, 200, "{v}");
    start(&d, "c1");
    let (rc, _, err) = sh(
        &d,
        "c1",
        "dd if=/dev/zero of=/small/big bs=1M count=64 && sync",
    );
    assert_ne!(rc, 0, "64MiB went into a 32MiB volume");
    assert!(err.contains("quota"), "{err}");
    // Within the size, writes go through.
    sh_ok(
        &d,
        "c1",
        "rm -f /small/big && sync && dd if=/dev/zero of=/small/ok bs=1M count=8 && sync",
    );
}

#[test]
fn disk_io_limits_throttle_the_device_beneath_each_disk() {
    let d = TestDaemon::start("disk-io");
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/storage-pools/default/volumes",
        Some(json!({"name": "v", "type": "custom"})),
    );
    let (code, v) = create(
        &d,
        "c1",
        json!({
            "root": {"type": "disk", "pool": "default", "path": "/", "limits.read": "2MB"},
            "v": {"type": "disk", "pool": "default", "source": "v", "path": "/v", "limits.write": "1MB"},
        }),
    );
    assert_eq!(code, 200, "{v}");
    start(&d, "c1");
    let tag = silo_proto::install_tag(&d.dir);
    let cg = format!("/sys/fs/cgroup/blkio/silo-{tag}/c1");
    let file =
        |f: &str| std::fs::read_to_string(format!("{cg}/blkio.throttle.{f}")).unwrap_or_default();
    // Both disks sit on the same host disk: one rule per direction.
    assert!(
        file("read_bps_device").trim().ends_with(" 2000000"),
        "{}",
        file("read_bps_device")
    );
    assert!(
        file("write_bps_device").trim().ends_with(" 1000000"),
        "{}",
        file("write_bps_device")
    );
    // Direct writes to the volume go at its limit: 3 MB take about 3 s.
    let t = std::time::Instant::now();
    sh_ok(
        &d,
        "c1",
        "dd if=/dev/zero of=/v/f bs=256k count=12 oflag=direct 2>/dev/null",
    );
    let took = t.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(1800),
        "3 MB at 1 MB/s took {took:?}"
    );
    // Live: a change applies at once, and an unset clears the rule.
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"v": {"type": "disk", "pool": "default", "source": "v", "path": "/v", "limits.max": "50iops"}}})),
    );
    assert!(
        file("write_bps_device").trim().is_empty(),
        "{}",
        file("write_bps_device")
    );
    assert!(
        file("read_iops_device").trim().ends_with(" 50"),
        "{}",
        file("read_iops_device")
    );
    assert!(
        file("write_iops_device").trim().ends_with(" 50"),
        "{}",
        file("write_iops_device")
    );
}
