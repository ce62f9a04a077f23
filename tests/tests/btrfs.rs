//! btrfs pools on loop files: created, formatted (by silo-store's confined formatter) and
//! mounted by silo-store; image volumes are subvolumes, instances are snapshots; a full pool
//! fails cleanly; a reboot's unmount is repaired at start; nothing stays mounted or attached.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use silo_tests::{busybox_image, foreign_mounts_under, loops_under, SpareDisk, TestDaemon};

fn wait_op(d: &TestDaemon, code: u16, v: &serde_json::Value) -> serde_json::Value {
    assert_eq!(code, 202, "{v}");
    let id = v["metadata"]["id"].as_str().expect("op id");
    let (_, w) = d.api(
        "GET",
        &format!("/1.0/operations/{id}/wait?timeout=120"),
        None,
    );
    w["metadata"].clone()
}

fn import(d: &TestDaemon, path: &std::path::Path, alias: &str) {
    let o = d.silo(&["image", "import", &path.to_string_lossy(), "--alias", alias]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn btrfs_pool_lifecycle() {
    let d = TestDaemon::start("btrfs-life");
    let (c, v) = d.api(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "bt", "driver": "btrfs", "config": {"size": "512MiB"}})),
    );
    assert_eq!(c, 200, "{v}");
    let pool = d.dir.join("storage-pools/bt");
    assert_eq!(
        foreign_mounts_under(&d.dir),
        vec![pool.display().to_string()]
    );
    assert_eq!(loops_under(&d.dir).len(), 1);
    let img = d.dir.join("disks/bt.img");
    let md = std::fs::metadata(&img).expect("loop file");
    assert_eq!(md.len(), 512 << 20);
    assert!(md.blocks() * 512 < 100 << 20, "sparse");
    import(&d, &busybox_image(false)[0], "bb");
    for name in ["c1", "c2"] {
        let (c, v) = d.api(
            "POST",
            "/1.0/instances",
            Some(
                json!({"name": name, "source": {"type": "image", "alias": "bb"},
            "devices": {"root": {"type": "disk", "path": "/", "pool": "bt"}}}),
            ),
        );
        let op = wait_op(&d, c, &v);
        assert_eq!(op["status_code"], 200, "{op}");
    }
    // Instances are snapshots (subvolume roots: inode 256) of the image subvolume.
    for name in ["c1", "c2"] {
        let m = std::fs::metadata(pool.join("containers").join(name)).expect("volume");
        assert_eq!(m.ino(), 256, "{name} is a subvolume");
        assert_eq!(m.mode() & 0o777, 0o700);
        assert!(pool
            .join("containers")
            .join(name)
            .join("rootfs/bin/busybox")
            .is_file());
    }
    let out = Command::new("btrfs")
        .args(["subvolume", "list"])
        .arg(&pool)
        .output()
        .expect("btrfs");
    let list = String::from_utf8_lossy(&out.stdout);
    assert_eq!(list.lines().count(), 3, "{list}");
    // The pool mount keeps set-user-id programs from running on the host.
    let opts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = opts
        .lines()
        .find(|l| l.contains(&pool.display().to_string()))
        .expect("mount line");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    // A pool in use cannot go.
    let (c, v) = d.api("DELETE", "/1.0/storage-pools/bt", None);
    assert_eq!(c, 400, "{v}");
    for name in ["c1", "c2"] {
        let (c, v) = d.api("DELETE", &format!("/1.0/instances/{name}"), None);
        assert_eq!(wait_op(&d, c, &v)["status_code"], 200);
    }
    let (c, v) = d.api("DELETE", "/1.0/storage-pools/bt", None);
    assert_eq!(c, 200, "{v}");
    assert!(foreign_mounts_under(&d.dir).is_empty());
    assert!(
        silo_tests::wait_until(Duration::from_secs(5), || loops_under(&d.dir).is_empty()),
        "loop device detached"
    );
    assert!(!img.exists() && !pool.exists());
}

#[test]
fn btrfs_bad_requests_make_nothing() {
    let d = TestDaemon::start("btrfs-bad");
    for (cfg, word) in [
        (json!({"size": "10MiB"}), "minimum"),
        (json!({"size": "100TiB"}), "max_loop_file_size"),
        (json!({"size": "lots"}), "invalid size"),
        (json!({"source": "/dev/sda"}), "not listed in block_devices"),
        (json!({"compression": "zstd"}), "unknown configuration key"),
    ] {
        let (c, v) = d.api(
            "POST",
            "/1.0/storage-pools",
            Some(json!({"name": "bt", "driver": "btrfs", "config": cfg})),
        );
        assert_eq!(c / 100, 4, "{v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(word),
            "{word}: {v}"
        );
    }
    for (driver, word) in [
        ("zfs", "zfsutils-linux"),
        ("ceph", "Ceph"),
        ("lvm", "lvm"),
        ("nope", "unknown storage driver"),
    ] {
        let (c, v) = d.api(
            "POST",
            "/1.0/storage-pools",
            Some(json!({"name": "p", "driver": driver})),
        );
        assert_eq!(c, 400);
        assert!(
            v["error"].as_str().unwrap_or("").contains(word),
            "{driver}: {v}"
        );
    }
    assert!(foreign_mounts_under(&d.dir).is_empty());
    assert!(loops_under(&d.dir).is_empty());
    assert_eq!(
        std::fs::read_dir(d.dir.join("disks"))
            .expect("disks")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(d.dir.join("storage-pools"))
            .expect("pools")
            .count(),
        1,
        "only default"
    );
}

#[test]
fn full_pool_fails_cleanly() {
    let d = TestDaemon::start("btrfs-full");
    let (c, v) = d.api(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "small", "driver": "btrfs", "config": {"size": "256MiB"}})),
    );
    assert_eq!(c, 200, "{v}");
    // An image with a 400 MB file: more than the pool holds.
    let t = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(t.path().join("img/rootfs")).expect("mkdir");
    std::fs::write(
        t.path().join("img/metadata.yaml"),
        "architecture: x86_64\ncreation_date: 1\n",
    )
    .expect("meta");
    let f = std::fs::File::create(t.path().join("img/rootfs/big")).expect("big");
    f.set_len(400 << 20).expect("size");
    let tarball = t.path().join("big.tar.gz");
    let st = Command::new("tar")
        .arg("-C")
        .arg(t.path().join("img"))
        .args(["--owner=0", "--group=0", "-czf"])
        .arg(&tarball)
        .args(["metadata.yaml", "rootfs"])
        .status()
        .expect("tar");
    assert!(st.success());
    import(&d, &tarball, "big");
    let (c, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "c1", "source": {"type": "image", "alias": "big"},
        "devices": {"root": {"type": "disk", "path": "/", "pool": "small"}}}),
        ),
    );
    let op = wait_op(&d, c, &v);
    assert_eq!(op["status_code"], 400, "{op}");
    assert!(
        op["err"].as_str().unwrap_or("").contains("No space left"),
        "{op}"
    );
    let (_, list) = d.api("GET", "/1.0/instances", None);
    assert_eq!(list["metadata"], json!([]));
    let pool = d.dir.join("storage-pools/small");
    assert_eq!(
        std::fs::read_dir(pool.join("images"))
            .expect("images")
            .count(),
        0,
        "no half-made image volume"
    );
    assert_eq!(
        std::fs::read_dir(pool.join("containers"))
            .expect("containers")
            .count(),
        0
    );
    // The pool can be deleted (nothing of the failed create holds it) and silo goes on.
    let (c, v) = d.api("DELETE", "/1.0/storage-pools/small", None);
    assert_eq!(c, 200, "{v}");
    assert!(foreign_mounts_under(&d.dir).is_empty());
}

#[test]
fn pools_are_mounted_again_at_start() {
    let mut d = TestDaemon::start("btrfs-remount");
    let (c, v) = d.api(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "bt", "driver": "btrfs", "config": {"size": "256MiB"}})),
    );
    assert_eq!(c, 200, "{v}");
    import(&d, &busybox_image(false)[0], "bb");
    let (c, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "c1", "source": {"type": "image", "alias": "bb"},
        "devices": {"root": {"type": "disk", "path": "/", "pool": "bt"}}}),
        ),
    );
    assert_eq!(wait_op(&d, c, &v)["status_code"], 200);
    // A reboot: silod stops and the pool is unmounted.
    d.stop();
    silo_tests::cleanup_mounts(&d.dir);
    assert!(silo_tests::wait_until(Duration::from_secs(5), || {
        loops_under(&d.dir).is_empty()
    }));
    assert!(!d.dir.join("storage-pools/bt/containers/c1").exists());
    d.spawn();
    assert_eq!(foreign_mounts_under(&d.dir).len(), 1);
    assert!(
        d.dir
            .join("storage-pools/bt/containers/c1/rootfs/bin/busybox")
            .is_file(),
        "the instance's volume is back"
    );
    let (_, list) = d.api("GET", "/1.0/instances", None);
    assert_eq!(list["metadata"], json!(["/1.0/instances/c1"]));
}

/// A btrfs filesystem of the test's own, mounted on a loop device, torn down on drop.
struct HostBtrfs {
    img: std::path::PathBuf,
    mnt: std::path::PathBuf,
}

impl HostBtrfs {
    fn new(name: &str) -> HostBtrfs {
        let base = silo_tests::unique_dir(name);
        let img = base.with_extension("img");
        let mnt = base.with_extension("mnt");
        std::fs::create_dir_all(&mnt).expect("mnt");
        std::fs::File::create(&img)
            .expect("img")
            .set_len(512 << 20)
            .expect("size");
        let o = Command::new("mkfs.btrfs")
            .args(["-q", "-f"])
            .arg(&img)
            .output()
            .expect("mkfs.btrfs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .output()
            .expect("mount");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        HostBtrfs { img, mnt }
    }
}

impl Drop for HostBtrfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.mnt);
        let _ = std::fs::remove_file(&self.img);
    }
}

#[test]
fn btrfs_pool_on_a_policy_allowed_host_path() {
    let host = HostBtrfs::new("btrfs-hostfs");
    std::fs::create_dir(host.mnt.join("pools")).expect("pools");
    std::fs::create_dir(host.mnt.join("full")).expect("full");
    std::fs::write(host.mnt.join("full/data"), b"x").expect("data");
    std::os::unix::fs::symlink(host.mnt.join("pools"), host.mnt.join("link")).expect("symlink");
    let ext = tempfile::tempdir().expect("tmp");
    let policy = format!(
        "host_paths = [{:?}, {:?}]\n",
        host.mnt.display().to_string(),
        ext.path().display().to_string()
    );
    let d = TestDaemon::start_with_policy("btrfs-hostpath", &policy);
    let create = |name: &str, source: &str| {
        d.api(
            "POST",
            "/1.0/storage-pools",
            Some(json!({"name": name, "driver": "btrfs", "config": {"source": source}})),
        )
    };
    // Refusals: outside the policy, through a symlink, not btrfs, not empty, not normalized.
    for (src, code, word) in [
        ("/var/lib".to_string(), 403, "host_paths"),
        (host.mnt.join("link").display().to_string(), 400, "symlink"),
        (ext.path().display().to_string(), 400, "not on a btrfs"),
        (
            host.mnt.join("full").display().to_string(),
            400,
            "not empty",
        ),
        (format!("{}/../x", host.mnt.display()), 400, "normalized"),
    ] {
        let (c, v) = create("hb", &src);
        assert_eq!(c, code, "{src}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(word),
            "{src}: {v}"
        );
    }
    assert!(
        !d.dir.join("storage-pools/hb").exists(),
        "nothing half-made"
    );
    let src = host.mnt.join("pools");
    let (c, v) = create("hb", &src.display().to_string());
    assert_eq!(c, 200, "{v}");
    import(&d, &busybox_image(false)[0], "bb");
    let (c, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "c1", "source": {"type": "image", "alias": "bb"},
        "devices": {"root": {"type": "disk", "path": "/", "pool": "hb"}}}),
        ),
    );
    assert_eq!(wait_op(&d, c, &v)["status_code"], 200);
    let vol = src.join("containers/c1");
    assert_eq!(
        std::fs::metadata(&vol).expect("volume").ino(),
        256,
        "a snapshot on the host's btrfs"
    );
    let (c, v) = d.api("DELETE", "/1.0/instances/c1", None);
    assert_eq!(wait_op(&d, c, &v)["status_code"], 200);
    let (c, v) = d.api("DELETE", "/1.0/storage-pools/hb", None);
    assert_eq!(c, 200, "{v}");
    assert!(foreign_mounts_under(&d.dir).is_empty());
    let left: Vec<_> = std::fs::read_dir(&src)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter().all(|n| n == "images"),
        "only the cached image (deleted with the image) may remain: {left:?}"
    );
    assert!(
        host.mnt.join("full/data").exists(),
        "the rest of the host filesystem is untouched"
    );
}

fn blkid(dev: &str, tag: &str) -> String {
    let o = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", tag, dev])
        .output()
        .expect("blkid");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn btrfs_pool_on_a_policy_listed_block_device() {
    let disk = SpareDisk::new("btrfs-dev", 512 << 20);
    let used = SpareDisk::new("btrfs-dev-used", 128 << 20);
    let unlisted = SpareDisk::new("btrfs-dev-unlisted", 128 << 20);
    let o = Command::new("mkfs.ext4")
        .args(["-q", "-F", &used.dev])
        .output()
        .expect("mkfs.ext4");
    assert!(o.status.success(), "{}", silo_tests::show(&o));
    let policy = format!("block_devices = [{:?}, {:?}]\n", disk.dev, used.dev);
    let mut d = TestDaemon::start_with_policy("btrfs-dev", &policy);
    let create = |d: &TestDaemon, name: &str, source: &str| {
        d.api(
            "POST",
            "/1.0/storage-pools",
            Some(json!({"name": name, "driver": "btrfs", "config": {"source": source}})),
        )
    };

    // Refusals, each leaving nothing: a device the policy does not list, one holding a
    // filesystem (never formatted over), one that is mounted, a path that is no device.
    let other = tempfile::tempdir().expect("tmp");
    for (src, code, why) in [
        (unlisted.dev.clone(), 403, "not listed in block_devices"),
        (used.dev.clone(), 400, "already holds a filesystem"),
        ("/dev/null".to_string(), 403, "not listed in block_devices"),
    ] {
        let (c, v) = create(&d, "bd", &src);
        assert_eq!(c, code, "{src}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(why),
            "{src}: {v}"
        );
        assert!(
            !d.dir.join("storage-pools/bd").exists(),
            "{src}: nothing half-made"
        );
        let (c, _) = d.api("GET", "/1.0/storage-pools/bd", None);
        assert_eq!(c, 404);
    }
    assert_eq!(blkid(&used.dev, "TYPE"), "ext4", "the ext4 is untouched");
    assert_eq!(
        blkid(&unlisted.dev, "TYPE"),
        "",
        "the unlisted disk is untouched"
    );
    let o = Command::new("mount")
        .arg(&used.dev)
        .arg(other.path())
        .output()
        .expect("mount");
    assert!(o.status.success(), "{}", silo_tests::show(&o));
    let (c, v) = create(&d, "bd", &used.dev);
    assert_eq!(c, 409, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("in use"), "{v}");
    let _ = nix::mount::umount2(other.path(), nix::mount::MntFlags::MNT_DETACH);

    // The listed empty disk: formatted (labelled after the pool), mounted, used.
    let (c, v) = create(&d, "bd", &disk.dev);
    assert_eq!(c, 200, "{v}");
    assert_eq!(blkid(&disk.dev, "TYPE"), "btrfs");
    assert_eq!(blkid(&disk.dev, "LABEL"), "silo-bd");
    let pool_dir = d.dir.join("storage-pools/bd").display().to_string();
    assert_eq!(disk.mount_points(), vec![pool_dir.clone()]);
    let p = d.api_ok("GET", "/1.0/storage-pools/bd", None);
    assert_eq!(p["config"]["source"], disk.dev.as_str(), "{p}");
    let r = d.api_ok("GET", "/1.0/storage-pools/bd/resources", None);
    let total = r["space"]["total"].as_u64().unwrap_or(0);
    assert!(
        (400 << 20..=512 << 20).contains(&total),
        "the pool is the disk's size: {r}"
    );
    // The same disk again, for another pool, is refused: it is in use.
    let (c, v) = create(&d, "bd2", &disk.dev);
    assert_eq!(c, 409, "{v}");
    import(&d, &busybox_image(false)[0], "bb");
    let (c, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "c1", "source": {"type": "image", "alias": "bb"},
            "devices": {"root": {"type": "disk", "path": "/", "pool": "bd"}}}),
        ),
    );
    assert_eq!(wait_op(&d, c, &v)["status_code"], 200);
    d.set_state("c1", "start", false);
    let (code, out, err) = d.exec("c1", &["cat", "/proc/self/mountinfo"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" / ") && out.contains("btrfs"), "{out}");
    d.set_state("c1", "stop", true);

    // A reboot: the pool is mounted again from the device at start.
    d.stop();
    silo_tests::cleanup_mounts(&d.dir);
    assert!(disk.mount_points().is_empty());
    d.spawn();
    assert_eq!(disk.mount_points(), vec![pool_dir]);
    d.set_state("c1", "start", false);
    assert_eq!(d.exec("c1", &["true"]).0, 0);
    d.set_state("c1", "stop", true);

    let (c, v) = d.api("DELETE", "/1.0/storage-pools/bd", None);
    assert_eq!(c, 400, "a pool in use is kept: {v}");
    let (c, v) = d.api("DELETE", "/1.0/instances/c1", None);
    assert_eq!(wait_op(&d, c, &v)["status_code"], 200);
    // The image's cached volume on the pool goes with the image.
    for img in d
        .api_ok("GET", "/1.0/images", None)
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let (c, v) = d.api("DELETE", img.as_str().unwrap_or(""), None);
        assert_eq!(wait_op(&d, c, &v)["status_code"], 200);
    }
    let (c, v) = d.api("DELETE", "/1.0/storage-pools/bd", None);
    assert_eq!(c, 200, "{v}");
    assert!(disk.mount_points().is_empty(), "unmounted");
    assert!(foreign_mounts_under(&d.dir).is_empty());
}
