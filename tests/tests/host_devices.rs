//! Host devices (`unix-char`, `unix-block`, `usb`, `gpu`) for real: only nodes the root
//! policy names, made inside with the asked owner and mode, and the instance's device
//! controller (v1 `devices`, or the cgroup2 BPF program) letting it open exactly those.

use std::process::Command;

use serde_json::json;
use silo_tests::{busybox_image, show, SpareDisk, TestDaemon};

fn busybox(d: &TestDaemon) {
    d.import(&busybox_image(false)[0], "busybox");
}

fn sh(d: &TestDaemon, name: &str, script: &str) -> (i64, String, String) {
    d.exec(name, &["sh", "-c", script])
}

fn sh_ok(d: &TestDaemon, name: &str, script: &str) -> String {
    let (rc, out, err) = sh(d, name, script);
    assert_eq!(rc, 0, "{script}: {out} {err}");
    out
}

/// The instance's group in the hierarchy that controls devices here.
fn device_cgroup(d: &TestDaemon, name: &str, v2: bool) -> String {
    let tag = silo_proto::install_tag(&d.dir);
    if v2 {
        format!("/sys/fs/cgroup/unified/silo-{tag}/{name}")
    } else {
        format!("/sys/fs/cgroup/devices/silo-{tag}/{name}")
    }
}

/// Reads the first bytes of `dev` from a host process put into the instance's cgroup: what the
/// device controller lets anything in that group do, whoever it is.
fn read_in_cgroup(cg: &str, dev: &str) -> std::process::Output {
    Command::new("sh")
        .args([
            "-c",
            &format!("echo $$ > {cg}/cgroup.procs && exec head -c 13 {dev}"),
        ])
        .output()
        .expect("sh")
}

fn loop_with(name: &str, content: &[u8]) -> SpareDisk {
    let disk = SpareDisk::new(name, 1 << 20);
    std::fs::write(&disk.dev, content).expect("write the loop device");
    disk
}

fn block_device_under_policy(d: &TestDaemon, disk: &SpareDisk, v2: bool) {
    busybox(d);
    d.launch("busybox", "c1");
    let cg = device_cgroup(d, "c1", v2);
    // Nothing in the instance's group opens the disk before it is given.
    let o = read_in_cgroup(&cg, &disk.dev);
    assert!(
        !o.status.success(),
        "the device controller let it through: {}",
        show(&o)
    );

    let o = d.lxc(&[
        "config",
        "device",
        "add",
        "c1",
        "xdisk",
        "unix-block",
        &format!("source={}", disk.dev),
        "path=/dev/xdisk",
        "uid=1000",
        "gid=1001",
        "mode=0640",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        sh_ok(d, "c1", "stat -c '%F %u %g %a' /dev/xdisk").trim(),
        "block special file 1000 1001 640"
    );
    let (rc, out, err) = d.exec_as("c1", &["head", "-c", "13", "/dev/xdisk"], 1000);
    assert_eq!((rc, out.as_str()), (0, "silo-dev-test"), "{err}");
    // Another uid is kept out by the mode.
    let (rc, _, _) = d.exec_as("c1", &["head", "-c", "1", "/dev/xdisk"], 1002);
    assert_ne!(rc, 0, "mode 0640 let another user read");
    let o = read_in_cgroup(&cg, &disk.dev);
    assert!(o.status.success(), "{}", show(&o));

    // Unplugged: the node goes, and so does the controller's permission.
    let o = d.lxc(&["config", "device", "remove", "c1", "xdisk"]);
    assert!(o.status.success(), "{}", show(&o));
    let (rc, _, _) = sh(d, "c1", "test -e /dev/xdisk && head -c 1 /dev/xdisk");
    assert_ne!(rc, 0, "the node is still usable after its removal");
    let o = read_in_cgroup(&cg, &disk.dev);
    assert!(
        !o.status.success(),
        "still allowed after unplug: {}",
        show(&o)
    );

    // Stored on the instance, it is given again at every start (by numbers this time).
    let meta = std::fs::metadata(&disk.dev).expect("stat");
    use std::os::unix::fs::MetadataExt;
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let o = d.silo(&[
        "config",
        "device",
        "add",
        "c1",
        "xdisk",
        "unix-block",
        &format!("major={major}"),
        &format!("minor={minor}"),
        "path=/dev/disk-by-number",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    d.set_state("c1", "restart", true);
    assert_eq!(
        sh_ok(d, "c1", "head -c 13 /dev/disk-by-number"),
        "silo-dev-test"
    );
}

#[test]
fn a_block_device_the_policy_names_is_given_with_its_owner_and_mode() {
    let disk = loop_with("hostdev-loop", b"silo-dev-test");
    let d =
        TestDaemon::start_with_policy("hostdev-v1", &format!("host_devices = [{:?}]\n", disk.dev));
    block_device_under_policy(&d, &disk, false);
    // LXD's default list is what the rest of the instance gets.
    let list = std::fs::read_to_string(format!("{}/devices.list", device_cgroup(&d, "c1", false)))
        .expect("devices.list");
    for rule in [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
        "c 10:229 rwm",
    ] {
        assert!(list.lines().any(|l| l == rule), "{rule} missing: {list}");
    }
    assert!(!list.lines().any(|l| l == "a *:* rwm"), "{list}");
}

#[test]
fn on_cgroup2_a_device_program_allows_exactly_the_given_nodes() {
    let disk = loop_with("hostdev-loop2", b"silo-dev-test");
    let d = TestDaemon::start_pure_cgroup2_with_policy(
        "hostdev-v2",
        &format!("host_devices = [{:?}]\n", disk.dev),
    );
    block_device_under_policy(&d, &disk, true);
    // The instance itself still has its ordinary devices.
    assert_eq!(
        sh_ok(
            &d,
            "c1",
            "echo x > /dev/null && head -c 3 /dev/zero | wc -c"
        )
        .trim(),
        "3"
    );
}

#[test]
fn host_devices_outside_the_policy_are_refused_naming_it() {
    let disk = loop_with("hostdev-deny", b"x");
    let d = TestDaemon::start_with_policy("hostdev-deny", "");
    busybox(&d);
    let dev = disk.dev.as_str();
    // At create, with nothing made.
    let (code, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "c1", "source": {"type": "image", "alias": "busybox"},
            "devices": {"x": {"type": "unix-block", "source": dev}}}),
        ),
    );
    assert_eq!(code, 403, "{v}");
    assert!(v.to_string().contains("host_devices"), "{v}");
    assert_eq!(d.api("GET", "/1.0/instances/c1", None).0, 404);
    d.launch("busybox", "c1");
    for dev in [
        json!({"type": "unix-block", "source": dev}),
        json!({"type": "unix-char", "source": "/dev/kmsg"}),
        json!({"type": "unix-char", "major": "1", "minor": "11", "path": "/dev/k"}),
    ] {
        let (code, v) = d.api(
            "PATCH",
            "/1.0/instances/c1",
            Some(json!({"devices": {"x": dev}})),
        );
        assert_eq!(code, 403, "{dev}: {v}");
        assert!(v.to_string().contains("host_devices"), "{v}");
    }
    // A symlink is never followed to a node, and a wrong type is named.
    let (code, v) = d.api(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"x": {"type": "unix-char", "source": "/dev/stdin"}}})),
    );
    assert!(code == 400 || code == 403, "{v}");
    // Types this host cannot give say so.
    for (dev, word) in [
        (json!({"type": "gpu", "gputype": "mig"}), "not available"),
        (json!({"type": "tpm", "path": "/dev/tpm0"}), "swtpm"),
        (
            json!({"type": "unix-char", "path": "/dev/x"}),
            "major and minor",
        ),
        (json!({"type": "usb", "vendorid": "xyz"}), "hex"),
    ] {
        let (code, v) = d.api(
            "PATCH",
            "/1.0/instances/c1",
            Some(json!({"devices": {"x": dev}})),
        );
        assert_eq!(code, 400, "{dev}: {v}");
        assert!(v.to_string().contains(word), "{dev}: {v}");
    }
    // Nothing of it reached the record or the instance.
    let i = d.api_ok("GET", "/1.0/instances/c1", None);
    assert!(i["devices"].get("x").is_none(), "{i}");
    let (rc, _, _) = sh(&d, "c1", "ls /dev/k /dev/kmsg");
    assert_ne!(rc, 0);
}

#[test]
fn usb_and_gpu_devices_absent_from_this_host() {
    let d = TestDaemon::start_with_policy(
        "hostdev-absent",
        "host_devices = [\"/dev/bus/usb\", \"/dev/dri\"]\n",
    );
    busybox(&d);
    d.launch("busybox", "c1");
    // A usb device is not required by default (as LXD): absent, the instance goes on.
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"u": {"type": "usb", "vendorid": "dead", "productid": "beef"}}})),
    );
    d.set_state("c1", "restart", true);
    assert_eq!(d.status("c1"), "Running");
    // Required and absent, it is refused when stored, naming what is missing.
    let (code, v) = d.api(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"u": {"type": "usb", "vendorid": "dead", "required": "true"}}})),
    );
    assert_eq!(code, 404, "{v}");
    assert!(v.to_string().contains("USB device dead"), "{v}");
    // A GPU: this host has no DRM node, said at once.
    let (code, v) = d.api(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"g": {"type": "gpu"}}})),
    );
    assert_eq!(code, 404, "{v}");
    assert!(v.to_string().contains("GPU"), "{v}");
}

#[test]
fn a_char_device_is_made_with_the_asked_owner_and_mode_through_silo() {
    // A node of the test's own, named in the policy: the null device under another name.
    let dir = tempfile::Builder::new()
        .prefix("silo-hostdev-")
        .tempdir()
        .expect("tempdir");
    let node = dir.path().join("null2");
    let o = Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .output()
        .expect("mknod");
    assert!(o.status.success(), "{}", show(&o));
    let node = node.display().to_string();
    let d = TestDaemon::start_with_policy(
        "hostdev-char",
        &format!("host_devices = [{:?}]\n", dir.path().display().to_string()),
    );
    busybox(&d);
    d.launch("busybox", "c1");
    let o = d.silo(&[
        "config",
        "device",
        "add",
        "c1",
        "n",
        "unix-char",
        &format!("source={node}"),
        "path=/dev/mine/null2",
        "uid=1000",
        "gid=1000",
        "mode=0620",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        sh_ok(&d, "c1", "stat -c '%F %t:%T %u %g %a' /dev/mine/null2").trim(),
        "character special file 1:3 1000 1000 620"
    );
    let (rc, _, err) = d.exec_as("c1", &["sh", "-c", "echo x > /dev/mine/null2"], 1000);
    assert_eq!(rc, 0, "{err}");
    // A group member may write but not read; others neither.
    let (rc, _, _) = d.exec_as("c1", &["sh", "-c", "cat /dev/mine/null2"], 1001);
    assert_ne!(rc, 0);
    let o = d.silo(&["config", "device", "remove", "c1", "n"]);
    assert!(o.status.success(), "{}", show(&o));
    let (rc, _, _) = sh(&d, "c1", "test -e /dev/mine/null2");
    assert_ne!(rc, 0, "the node outlived its device");
}
