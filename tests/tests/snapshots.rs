//! Snapshots, restore and rename on dir and btrfs pools, through the API, `silo` and `lxc`.

use serde_json::json;
use silo_tests::{busybox_image, show, TestDaemon};

fn snapshot_cycle(d: &TestDaemon) {
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    let (code, _, e) = d.exec("c1", &["sh", "-c", "echo one > /root/state"]);
    assert_eq!(code, 0, "{e}");
    // A snapshot of a running instance (frozen for the copy, thawed after).
    d.api_ok(
        "POST",
        "/1.0/instances/c1/snapshots",
        Some(json!({"name": "s1"})),
    );
    assert_eq!(d.status("c1"), "Running");
    let (code, o, _) = d.exec("c1", &["cat", "/root/state"]);
    assert_eq!((code, o.as_str()), (0, "one\n"), "still running, thawed");
    // Defaults and refusals.
    d.api_ok("POST", "/1.0/instances/c1/snapshots", Some(json!({})));
    let list = d.api_ok("GET", "/1.0/instances/c1/snapshots", None);
    assert_eq!(
        list,
        json!([
            "/1.0/instances/c1/snapshots/s1",
            "/1.0/instances/c1/snapshots/snap0"
        ])
    );
    for (body, code, want) in [
        (json!({"name": "s1"}), 409, "already exists"),
        (json!({"name": "a/b"}), 400, "'/'"),
        (json!({"name": "x", "stateful": true}), 400, "stateful"),
    ] {
        let (c, v) = d.api("POST", "/1.0/instances/c1/snapshots", Some(body.clone()));
        assert_eq!(c, code, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(want),
            "{body}: {v}"
        );
    }
    let (c, v) = d.api("PUT", "/1.0/instances/c1", Some(json!({"restore": "nope"})));
    assert_eq!(c, 404, "{v}");
    // Change things, then restore (a running instance is stopped and started again).
    let (code, _, e) = d.exec("c1", &["sh", "-c", "echo two > /root/state; rm /bin/ls"]);
    assert_eq!(code, 0, "{e}");
    let o = d.silo(&["restore", "c1", "s1"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(d.status("c1"), "Running");
    let (code, o, _) = d.exec("c1", &["cat", "/root/state"]);
    assert_eq!((code, o.as_str()), (0, "one\n"));
    assert_eq!(d.exec("c1", &["ls", "/"]).0, 0, "/bin/ls is back");
    // Rename and delete a snapshot; info lists them.
    let o = d.silo(&["move", "c1/snap0", "c1/before-upgrade"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["info", "c1"]);
    let info = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        info.contains("before-upgrade") && info.contains("s1"),
        "{info}"
    );
    let o = d.silo(&["delete", "c1/before-upgrade"]);
    assert!(o.status.success(), "{}", show(&o));
    let list = d.api_ok("GET", "/1.0/instances/c1/snapshots", None);
    assert_eq!(list, json!(["/1.0/instances/c1/snapshots/s1"]));
    // Copies: the instance with its snapshots, a snapshot, the instance alone; each copy has
    // its own MAC and hostname.
    let o = d.silo(&["copy", "c1", "c2"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["copy", "c1/s1", "c3"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["copy", "c1", "c4", "--instance-only"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        d.api_ok("GET", "/1.0/instances/c2/snapshots", None),
        json!(["/1.0/instances/c2/snapshots/s1"])
    );
    assert_eq!(
        d.api_ok("GET", "/1.0/instances/c4/snapshots", None),
        json!([])
    );
    d.set_state("c2", "start", false);
    let (code, o, _) = d.exec("c2", &["sh", "-c", "hostname; cat /root/state"]);
    assert_eq!((code, o.as_str()), (0, "c2\none\n"));
    let mac = |n: &str| {
        d.api_ok("GET", &format!("/1.0/instances/{n}"), None)["config"]["volatile.eth0.hwaddr"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_ne!(mac("c1"), mac("c2"));
    d.set_state("c2", "stop", true);
    let (c, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c5", "source": {"type": "copy", "source": "c1/nope"}})),
    );
    assert_eq!(c, 404, "{v}");
    // --refresh brings a copy up to date: its root and its snapshots become the source's.
    let (code, _, e) = d.exec("c1", &["sh", "-c", "echo three > /root/state"]);
    assert_eq!(code, 0, "{e}");
    assert!(d.silo(&["snapshot", "c1", "s3"]).status.success());
    let o = d.silo(&["copy", "c1", "c2", "--refresh"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        d.api_ok("GET", "/1.0/instances/c2/snapshots", None),
        json!([
            "/1.0/instances/c2/snapshots/s1",
            "/1.0/instances/c2/snapshots/s3"
        ])
    );
    assert_ne!(mac("c1"), mac("c2"), "the copy keeps its own identity");
    d.set_state("c2", "start", false);
    let (code, o, _) = d.exec("c2", &["cat", "/root/state"]);
    assert_eq!((code, o.as_str()), (0, "three\n"));
    d.set_state("c2", "stop", true);
    let o = d.silo(&["delete", "c1/s3"]);
    assert!(o.status.success(), "{}", show(&o));
    for n in ["c2", "c3", "c4"] {
        d.api_ok("DELETE", &format!("/1.0/instances/{n}"), None);
    }
    // Move (rename) a stopped instance with its snapshots.
    d.set_state("c1", "stop", true);
    let o = d.silo(&["move", "c1", "c9"]);
    assert!(o.status.success(), "{}", show(&o));
    let s = d.api_ok("GET", "/1.0/instances/c9/snapshots/s1", None);
    assert_eq!(s["name"], "s1");
    d.set_state("c9", "start", false);
    // The same root filesystem under the new name (its /etc/hostname is the image's
    // create/copy template, so it keeps the old name, as in LXD).
    let (code, o, _) = d.exec("c9", &["cat", "/root/state"]);
    assert_eq!((code, o.as_str()), (0, "three\n"));
    d.set_state("c9", "stop", true);
    // Deleting the instance takes its snapshots with it.
    d.api_ok("DELETE", "/1.0/instances/c9", None);
    let (c, _) = d.api("GET", "/1.0/instances/c9/snapshots/s1", None);
    assert_eq!(c, 404);
}

#[test]
fn snapshots_on_a_dir_pool() {
    let d = TestDaemon::start("snap-dir");
    snapshot_cycle(&d);
}

#[test]
fn snapshots_on_a_btrfs_pool() {
    let d = TestDaemon::start("snap-btrfs");
    let o = d.silo(&[
        "init",
        "--auto",
        "--storage-backend",
        "btrfs",
        "--storage-create-loop",
        "2",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    snapshot_cycle(&d);
}

#[test]
fn the_stock_lxc_client_snapshots_and_restores() {
    let d = TestDaemon::start("snap-lxc");
    d.import(&busybox_image(false)[0], "busybox");
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(d.lxc(&["launch", "busybox", "c1"]));
    ok(d.lxc(&["exec", "c1", "--", "sh", "-c", "echo kept > /root/f"]));
    ok(d.lxc(&["snapshot", "c1", "snap-a"]));
    ok(d.lxc(&["exec", "c1", "--", "rm", "/root/f"]));
    let info = ok(d.lxc(&["info", "c1"]));
    assert!(info.contains("snap-a"), "{info}");
    ok(d.lxc(&["restore", "c1", "snap-a"]));
    let f = ok(d.lxc(&["exec", "c1", "--", "cat", "/root/f"]));
    assert_eq!(f, "kept\n");
    ok(d.lxc(&["copy", "c1/snap-a", "c3"]));
    ok(d.lxc(&["copy", "c1", "c4"]));
    let info = ok(d.lxc(&["info", "c4"]));
    assert!(info.contains("snap-a"), "the copy has the snapshot: {info}");
    ok(d.lxc(&["start", "c3"]));
    assert_eq!(ok(d.lxc(&["exec", "c3", "--", "cat", "/root/f"])), "kept\n");
    ok(d.lxc(&["delete", "--force", "c3"]));
    ok(d.lxc(&["delete", "c4"]));
    ok(d.lxc(&["delete", "c1/snap-a"]));
    // snapshots.expiry sets a new snapshot's expiry (silod deletes it when it passes).
    ok(d.lxc(&["config", "set", "c1", "snapshots.expiry", "2d"]));
    ok(d.lxc(&["snapshot", "c1", "e1"]));
    let s = d.api_ok("GET", "/1.0/instances/c1/snapshots/e1", None);
    let exp = s["expires_at"].as_str().unwrap_or("").to_string();
    let created = s["created_at"].as_str().unwrap_or("").to_string();
    assert!(exp > created && !exp.starts_with("0001"), "{s}");
    ok(d.lxc(&["delete", "c1/e1"]));
    ok(d.lxc(&["stop", "c1", "--force"]));
    ok(d.lxc(&["move", "c1", "c2"]));
    let list = ok(d.lxc(&["list", "--format", "csv", "-c", "n"]));
    assert_eq!(list.trim(), "c2");
}

fn sha256_of(p: &std::path::Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(p).expect("open");
    std::io::copy(&mut f, &mut h).expect("read");
    hex::encode(h.finalize())
}

#[test]
fn publish_export_and_reuse_on_another_host() {
    let a = TestDaemon::start("pub-a");
    a.import(&busybox_image(false)[0], "busybox");
    a.launch("busybox", "c1");
    let (code, _, e) = a.exec("c1", &["sh", "-c", "echo published > /root/mark"]);
    assert_eq!(code, 0, "{e}");
    let o = a.silo(&["snapshot", "c1", "s1"]);
    assert!(o.status.success(), "{}", show(&o));
    // A snapshot publishes while the instance runs; the instance itself needs --force.
    let o = a.silo(&["publish", "c1/s1", "--alias", "mine", "os=Custom"]);
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let fp = out
        .trim()
        .strip_prefix("Instance published with fingerprint: ")
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert_eq!(fp.len(), 64, "{out}");
    let img = a.api_ok("GET", &format!("/1.0/images/{fp}"), None);
    assert_eq!(img["properties"]["os"], "Custom", "{img}");
    let o = a.silo(&["publish", "c1", "--alias", "running"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("running"),
        "{}",
        show(&o)
    );
    let o = a.silo(&[
        "publish",
        "c1",
        "--force",
        "--alias",
        "forced",
        "--compression",
        "zstd",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(a.status("c1"), "Running", "started again after --force");
    let (c, v) = a.api(
        "POST",
        "/1.0/images",
        Some(json!({"source": {"type": "snapshot", "name": "c1/nope"}})),
    );
    assert_eq!(c, 404, "{v}");
    // Export: the file hashes to the fingerprint, and another silod imports it as the same.
    let dir = tempfile::tempdir().expect("tmp");
    let o = a.silo(&["image", "export", "mine", &dir.path().display().to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(sha256_of(&files[0]), fp);
    let b = TestDaemon::start("pub-b");
    b.import(&files[0], "mine");
    let bimg = b.api_ok("GET", "/1.0/images/aliases/mine", None);
    assert_eq!(bimg["target"], fp.as_str());
    b.launch("mine", "c2");
    let (code, o, _) = b.exec("c2", &["sh", "-c", "cat /root/mark; hostname"]);
    assert_eq!((code, o.as_str()), (0, "published\nc2\n"));
    // The stock client publishes and exports too.
    let o = a.lxc(&["publish", "c1/s1", "--alias", "via-lxc"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Instance published with fingerprint"),
        "{}",
        show(&o)
    );
    let dir2 = tempfile::tempdir().expect("tmp");
    let o = a.lxc(&[
        "image",
        "export",
        "via-lxc",
        &format!("{}/", dir2.path().display()),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    // --compression needs image_compression_algorithm, which silo now lists: lxc sends it.
    let o = a.lxc(&[
        "publish",
        "c1/s1",
        "--alias",
        "plain",
        "--compression",
        "none",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let dir3 = tempfile::tempdir().expect("tmp");
    let o = a.lxc(&[
        "image",
        "export",
        "plain",
        &format!("{}/", dir3.path().display()),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let exported: Vec<_> = std::fs::read_dir(dir3.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert_eq!(exported.len(), 1, "{exported:?}");
    let head = std::fs::read(&exported[0]).expect("read");
    // An uncompressed tarball: no gzip, xz or zstd magic, a ustar header at 257.
    assert_eq!(&head[257..262], b"ustar", "not a plain tarball");
}

#[test]
fn export_and_import_backups_with_snapshots() {
    let a = TestDaemon::start("bak-a");
    a.import(&busybox_image(false)[0], "busybox");
    a.launch("busybox", "c1");
    let (code, _, e) = a.exec("c1", &["sh", "-c", "echo v1 > /root/v"]);
    assert_eq!(code, 0, "{e}");
    assert!(a.silo(&["snapshot", "c1", "s1"]).status.success());
    let (code, _, _) = a.exec("c1", &["sh", "-c", "echo v2 > /root/v"]);
    assert_eq!(code, 0);
    a.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"config": {"user.note": "kept"}})),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("c1.tar.gz");
    let o = a.silo(&["export", "c1", &file.display().to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        a.api_ok("GET", "/1.0/instances/c1/backups", None),
        json!([]),
        "the server's copy is gone"
    );
    // Another silod: the instance, its config and its snapshot come back.
    let b = TestDaemon::start("bak-b");
    let o = b.silo(&["import", &file.display().to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    let i = b.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(i["config"]["user.note"], "kept", "{i}");
    assert_eq!(
        b.api_ok("GET", "/1.0/instances/c1/snapshots", None),
        json!(["/1.0/instances/c1/snapshots/s1"])
    );
    b.set_state("c1", "start", false);
    let (code, o, _) = b.exec("c1", &["cat", "/root/v"]);
    assert_eq!((code, o.as_str()), (0, "v2\n"));
    let o = b.silo(&["restore", "c1", "s1"]);
    assert!(o.status.success(), "{}", show(&o));
    let (code, o, _) = b.exec("c1", &["cat", "/root/v"]);
    assert_eq!((code, o.as_str()), (0, "v1\n"));
    // Under another name, without snapshots; a taken name is refused with nothing made.
    let file2 = dir.path().join("only.tar.gz");
    let o = a.silo(&[
        "export",
        "c1",
        &file2.display().to_string(),
        "--instance-only",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let o = b.silo(&["import", &file2.display().to_string(), "c2"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        b.api_ok("GET", "/1.0/instances/c2/snapshots", None),
        json!([])
    );
    let o = b.silo(&["import", &file2.display().to_string(), "c2"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{}",
        show(&o)
    );
    // Not a backup: refused clearly.
    let junk = dir.path().join("junk.tar.gz");
    std::fs::write(&junk, b"not a tarball at all").expect("write");
    let o = b.silo(&["import", &junk.display().to_string(), "c3"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("backup"),
        "{}",
        show(&o)
    );
    let (c, _) = b.api("GET", "/1.0/instances/c3", None);
    assert_eq!(c, 404);
    // The stock client: lxc export / lxc import.
    let file3 = dir.path().join("lxc.tar.gz");
    let o = a.lxc(&["export", "c1", &file3.display().to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    let o = b.lxc(&["import", &file3.display().to_string(), "c4"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = b.lxc(&["info", "c4"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("s1"),
        "{}",
        show(&o)
    );
}

#[test]
fn hostile_backups_are_refused_and_leave_nothing() {
    use silo_tests::corpus::Tar;
    let d = TestDaemon::start("bak-hostile");
    let dir = tempfile::tempdir().expect("tmp");
    let index = b"name: evil\nbackend: dir\npool: default\nsnapshots: [s1]\ntype: container\n";
    let by = b"container:\n  name: evil\n  config: {}\n  devices: {}\n  profiles: [default]\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a symlink out of the rootfs, then a file through it", {
            let mut t = Tar::new();
            t.file("backup/index.yaml", 0o644, index)
                .file("backup/container/backup.yaml", 0o644, by)
                .dir("backup/container/rootfs", 0o755)
                .symlink("backup/container/rootfs/etc", "/etc")
                .file("backup/container/rootfs/etc/silo-pwned", 0o644, b"x");
            t.finish()
        }),
        ("a member climbing out with ..", {
            let mut t = Tar::new();
            t.file("backup/index.yaml", 0o644, index)
                .file("backup/container/backup.yaml", 0o644, by)
                .dir("backup/container/rootfs", 0o755)
                .file(
                    "backup/container/rootfs/../../../../../tmp/silo-pwned",
                    0o644,
                    b"x",
                );
            t.finish()
        }),
        ("a snapshot name that climbs", {
            let mut t = Tar::new();
            t.file(
                "backup/index.yaml",
                0o644,
                b"name: evil\nsnapshots: ['../../x']\ntype: container\n",
            )
            .file("backup/container/backup.yaml", 0o644, by)
            .dir("backup/container/rootfs", 0o755);
            t.finish()
        }),
    ];
    for (what, bytes) in cases {
        let f = dir.path().join("evil.tar");
        std::fs::write(&f, &bytes).expect("write");
        let o = d.silo(&["import", &f.display().to_string()]);
        assert!(!o.status.success(), "{what}: {}", show(&o));
        let (c, _) = d.api("GET", "/1.0/instances/evil", None);
        assert_eq!(c, 404, "{what}: no instance is left");
        assert!(!std::path::Path::new("/etc/silo-pwned").exists(), "{what}");
        assert!(!std::path::Path::new("/tmp/silo-pwned").exists(), "{what}");
        let leftovers: Vec<_> = ["containers", "containers-snapshots"]
            .iter()
            .flat_map(|k| {
                std::fs::read_dir(d.dir.join("storage-pools/default").join(k))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
            })
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    }
}

fn entries(d: &TestDaemon, kind: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.dir.join("storage-pools/default").join(kind))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn kill_silod(d: &mut TestDaemon) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    assert_eq!(d.wait_exit(std::time::Duration::from_secs(5)), Some(137));
    d.spawn();
}

/// kill -9 of silod in the middle of a copy and of a publish (of the debian instance, big
/// enough to be caught mid-way): after the restart no volume, row, image or temp file of the
/// interrupted request remains, and the same request succeeds.
#[test]
fn kill_during_copy_and_publish_leaves_nothing_and_retry_works() {
    let mut d = TestDaemon::start("snap-kill");
    d.import(&silo_tests::debian_image(), "debian");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "src", "source": {"type": "image", "alias": "debian"}})),
    );
    let copy = json!({"name": "dst", "source": {"type": "copy", "source": "src"}});
    let (c, _) = d.api("POST", "/1.0/instances", Some(copy.clone()));
    assert_eq!(c, 202);
    assert!(
        silo_tests::wait_until(std::time::Duration::from_secs(20), || entries(
            &d,
            "containers"
        )
        .contains(&"dst".to_string())),
        "the copy started"
    );
    kill_silod(&mut d);
    assert_eq!(
        entries(&d, "containers"),
        vec!["src".to_string()],
        "{}",
        d.log_text()
    );
    let (c, _) = d.api("GET", "/1.0/instances/dst", None);
    assert_eq!(c, 404);
    d.api_ok("POST", "/1.0/instances", Some(copy));
    assert_eq!(
        entries(&d, "containers"),
        vec!["dst".to_string(), "src".to_string()]
    );

    let imgdir = d.dir.join("images");
    let images = || {
        let mut v: Vec<String> = std::fs::read_dir(&imgdir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = images();
    // gzip: seconds of packing on any machine, so the kill lands inside it (an uncompressed
    // publish can finish within the wait on a fast disk).
    let publish = json!({"source": {"type": "instance", "name": "dst"}, "aliases": [{"name": "pub"}], "compression_algorithm": "gzip"});
    let (c, _) = d.api("POST", "/1.0/images", Some(publish.clone()));
    assert_eq!(c, 202);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    kill_silod(&mut d);
    assert_eq!(images(), before, "no temp file or half image remains");
    let (c, _) = d.api("GET", "/1.0/images/aliases/pub", None);
    assert_eq!(c, 404);
    let op = d.api_ok("POST", "/1.0/images", Some(publish));
    let fp = op["metadata"]["fingerprint"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(fp.len(), 64, "{op}");
    assert_eq!(
        d.api_ok("GET", "/1.0/images/aliases/pub", None)["target"],
        fp.as_str()
    );
}

/// snapshots.schedule: a cron schedule silod runs at the start of each minute (this test waits
/// for one); bad schedules are refused when set.
#[test]
fn scheduled_snapshots() {
    let d = TestDaemon::start("snap-sched");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    for bad in ["every minute", "61 * * * *", "@sometimes"] {
        let (c, v) = d.api(
            "PATCH",
            "/1.0/instances/c1",
            Some(json!({"config": {"snapshots.schedule": bad}})),
        );
        assert_eq!(c, 400, "{bad}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or("")
                .contains("snapshots.schedule"),
            "{v}"
        );
    }
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(
            json!({"config": {"snapshots.schedule": "* * * * *", "snapshots.pattern": "auto-%d"}}),
        ),
    );
    let ok = silo_tests::wait_until(std::time::Duration::from_secs(75), || {
        d.api_ok("GET", "/1.0/instances/c1/snapshots", None)
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s == "/1.0/instances/c1/snapshots/auto-0"))
    });
    assert!(
        ok,
        "no scheduled snapshot within 75 s; log:\n{}",
        d.log_text()
    );
}

/// A full pool (a 1 GiB loop-backed btrfs pool filled from inside an instance): creating an
/// instance from a big image and importing a backup fail with a clear error and leave nothing;
/// what needs no new space (a snapshot) still works.
#[test]
fn a_full_pool_fails_clearly_and_leaves_nothing() {
    let d = TestDaemon::start("snap-full");
    let o = d.silo(&[
        "init",
        "--auto",
        "--storage-backend",
        "btrfs",
        "--storage-create-loop",
        "1",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    d.import(&busybox_image(false)[0], "busybox");
    d.import(&silo_tests::debian_image(), "debian");
    d.launch("busybox", "c1");
    let dir = tempfile::tempdir().expect("tmp");
    let bak = dir.path().join("c1.tar.gz");
    assert!(d
        .silo(&["export", "c1", &bak.display().to_string()])
        .status
        .success());
    // Fill the pool from inside.
    let (_, _, e) = d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "dd if=/dev/urandom of=/root/fill bs=1M count=2000",
        ],
    );
    assert!(e.contains("No space left"), "the pool is full: {e}");
    let before = (entries(&d, "containers"), entries(&d, "images"));
    let o = d.silo(&["launch", "debian", "d1"]);
    assert!(!o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(
        err.contains("full") || err.contains("no space left"),
        "{}",
        show(&o)
    );
    let (c, _) = d.api("GET", "/1.0/instances/d1", None);
    assert_eq!(c, 404, "no instance record");
    assert_eq!(
        (entries(&d, "containers"), entries(&d, "images")),
        before,
        "no half-made volume"
    );
    let o = d.silo(&["import", &bak.display().to_string(), "c9"]);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
        assert!(
            err.contains("full") || err.contains("no space left"),
            "{}",
            show(&o)
        );
        let (c, _) = d.api("GET", "/1.0/instances/c9", None);
        assert_eq!(c, 404);
        assert_eq!(entries(&d, "containers"), before.0);
    }
    // A snapshot shares every extent: it needs (almost) no space.
    let o = d.silo(&["snapshot", "c1", "s1"]);
    assert!(o.status.success(), "{}", show(&o));
    d.set_state("c1", "stop", true);
}

/// The tree as `find` and `stat` see it from inside (names, types, modes, owners, sizes,
/// link counts, mtimes, link targets), for comparing a restored instance with its source.
fn tree(d: &TestDaemon, name: &str) -> String {
    let (code, o, e) = d.exec(
        name,
        &[
            "sh",
            "-c",
            // Directory sizes are the filesystem's own (ext4 and btrfs differ); mount points
            // and what boot rewrites are not the volume's.
            "find / -xdev ! -path /etc/hostname ! -path /etc/resolv.conf ! -path /dev ! -path /proc ! -path /sys ! -path /run | sort | while read -r f; do if [ -d \"$f\" ] && [ ! -L \"$f\" ]; then stat -c '%n %f %u %g %Y' \"$f\"; else stat -c '%n %f %u %g %s %h %Y %N' \"$f\"; fi; done",
        ],
    );
    assert_eq!(code, 0, "{e}");
    o
}

/// Panics with the lines only one of two trees has.
fn same_tree(left: &str, right: &str, what: &str) {
    let l: std::collections::BTreeSet<&str> = left.lines().collect();
    let r: std::collections::BTreeSet<&str> = right.lines().collect();
    let only_l: Vec<_> = l.difference(&r).collect();
    let only_r: Vec<_> = r.difference(&l).collect();
    assert!(
        only_l.is_empty() && only_r.is_empty(),
        "{what}: only in the first: {only_l:#?}\nonly in the second: {only_r:#?}"
    );
}

/// A silod on a 2 GiB btrfs loop pool with busybox instance c1 running.
fn btrfs_with_c1(name: &str) -> TestDaemon {
    let a = TestDaemon::start(name);
    let o = a.silo(&[
        "init",
        "--auto",
        "--storage-backend",
        "btrfs",
        "--storage-create-loop",
        "2",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    a.import(&busybox_image(false)[0], "busybox");
    a.launch("busybox", "c1");
    a
}

#[test]
fn optimized_export_leaves_snapshots_named_like_its_scratch_copies_alone() {
    let a = btrfs_with_c1("bak-opt-names");
    for (content, snap) in [("one", "s1"), ("two", "s1.send-ro")] {
        let (code, _, e) = a.exec("c1", &["sh", "-c", &format!("echo {content} > /root/f")]);
        assert_eq!(code, 0, "{e}");
        assert!(a.silo(&["snapshot", "c1", snap]).status.success());
    }
    a.set_state("c1", "stop", true);
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("opt.tar.gz");
    let o = a.silo(&[
        "export",
        "c1",
        &f.display().to_string(),
        "--optimized-storage",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let snaps = a.dir.join("storage-pools/default/containers-snapshots");
    let mut left: Vec<String> = std::fs::read_dir(&snaps)
        .expect("snapshots dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["c1.s1", "c1.s1.send-ro"],
        "both snapshots kept, no scratch copy left"
    );
    assert_eq!(
        std::fs::read_to_string(snaps.join("c1.s1.send-ro/rootfs/root/f")).expect("f"),
        "two\n",
        "the snapshot keeps its own content"
    );
    let listed = a.api_ok("GET", "/1.0/instances/c1/snapshots", None);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

#[test]
fn optimized_backups_are_btrfs_send_streams() {
    let a = btrfs_with_c1("bak-opt-a");
    let (code, _, e) = a.exec(
        "c1",
        &[
            "sh",
            "-c",
            concat!(
            "echo v1 > /root/v; mkfifo /root/fifo; ln -s /etc/passwd /root/lnk; mkdir /root/d; ",
            "ln /root/v /root/d/hard; chown 1000:1000 /root/v; chmod 640 /root/v; ",
            // Older inodes moved into newer directories: the stream sends them as orphans
            // renamed into place.
            "echo old > /root/old; dd if=/dev/urandom of=/root/big bs=1k count=300 2>/dev/null; ",
            "mkdir -p /root/n1/n2; mv /root/old /root/big /root/n1/n2/; mv /root/d /root/n1/; ",
            "ln /root/n1/n2/old /root/n1/old-link",
        ),
        ],
    );
    assert_eq!(code, 0, "{e}");
    assert!(a.silo(&["snapshot", "c1", "s1"]).status.success());
    // s2 and the instance are sent as differences: existing entries move between
    // directories, are removed, replaced and added.
    let (code, _, e) = a.exec(
        "c1",
        &[
            "sh",
            "-c",
            concat!(
                "echo v2 > /root/v; mv /root/n1/d /root/moved-d; mv /root/n1/n2/big /root/; ",
                "rm -r /root/n1/n2; mkdir /root/new; echo n > /root/new/f; ",
                "ln -s new/f /root/new-link; mkfifo /root/n1/fifo2; mv /root/lnk /root/new/"
            ),
        ],
    );
    assert_eq!(code, 0, "{e}");
    assert!(a.silo(&["snapshot", "c1", "s2"]).status.success());
    let (code, _, e) = a.exec(
        "c1",
        &[
            "sh",
            "-c",
            concat!(
                "echo v3 >> /root/v; mv /root/moved-d /root/new/; rm /root/fifo; ",
                "dd if=/dev/urandom of=/root/big bs=1k count=10 seek=5 conv=notrunc 2>/dev/null; ",
                "cp /root/big /root/new/big-copy; mv /root/new /root/n1/new"
            ),
        ],
    );
    assert_eq!(code, 0, "{e}");
    a.set_state("c1", "stop", true);
    // Extended attributes travel in the streams (a capability survives the chown after it).
    let vol = |d: &TestDaemon, name: &str| {
        d.dir
            .join("storage-pools/default/containers")
            .join(name)
            .join("rootfs/root")
    };
    set_xattr(
        &vol(&a, "c1").join("v"),
        "security.capability",
        &NET_RAW_CAP,
    );
    set_xattr(&vol(&a, "c1").join("n1"), "user.silo", b"dir");
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("opt.tar.gz");
    let o = a.silo(&[
        "export",
        "c1",
        &f.display().to_string(),
        "--optimized-storage",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let listing = std::process::Command::new("tar")
        .arg("tzf")
        .arg(&f)
        .output()
        .expect("tar");
    let members = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        members.contains("backup/container.bin")
            && members.contains("backup/snapshots/s1.bin")
            && members.contains("backup/snapshots/s2.bin"),
        "{members}"
    );
    // Received on a dir pool: the same tree, the snapshot restorable.
    let b = TestDaemon::start("bak-opt-b");
    let o = b.silo(&["import", &f.display().to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    a.set_state("c1", "start", false);
    b.set_state("c1", "start", false);
    same_tree(&tree(&b, "c1"), &tree(&a, "c1"), "imported on a dir pool");
    assert_eq!(
        xattr_of(&vol(&b, "c1").join("v"), "security.capability").as_deref(),
        Some(&NET_RAW_CAP[..])
    );
    assert_eq!(
        xattr_of(&vol(&b, "c1").join("n1"), "user.silo").as_deref(),
        Some(&b"dir"[..])
    );
    // And on the btrfs pool it came from, under another name.
    let o = a.silo(&["import", &f.display().to_string(), "c2"]);
    assert!(o.status.success(), "{}", show(&o));
    a.set_state("c2", "start", false);
    same_tree(
        &tree(&a, "c2").replace("/c2", "/c1"),
        &tree(&a, "c1"),
        "imported on btrfs",
    );
    a.set_state("c2", "stop", true);
    // Each snapshot came back as it was taken.
    for snap in ["s2", "s1"] {
        for d in [&a, &b] {
            let o = d.silo(&["restore", "c1", snap]);
            assert!(o.status.success(), "{}", show(&o));
        }
        same_tree(&tree(&b, "c1"), &tree(&a, "c1"), snap);
    }
    let (code, o, _) = b.exec("c1", &["cat", "/root/v"]);
    assert_eq!((code, o.as_str()), (0, "v1\n"));
    // A dir pool has no send streams to offer.
    let o = b.silo(&[
        "export",
        "c1",
        &dir.path().join("x.tar.gz").display().to_string(),
        "--optimized-storage",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("btrfs"),
        "{}",
        show(&o)
    );
    a.set_state("c1", "stop", true);
    b.set_state("c1", "stop", true);
}

/// One send stream command: its number and its (attribute, value) pairs.
type SendCmd = (u16, Vec<(u16, Vec<u8>)>);

/// A hand-made send stream: header, then (command, attributes) as the kernel lays them out.
fn send_stream(cmds: &[SendCmd]) -> Vec<u8> {
    let mut out = b"btrfs-stream\0".to_vec();
    out.extend(1u32.to_le_bytes());
    for (cmd, attrs) in cmds {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend(t.to_le_bytes());
            body.extend((v.len() as u16).to_le_bytes());
            body.extend(v);
        }
        out.extend((body.len() as u32).to_le_bytes());
        out.extend(cmd.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(body);
    }
    out
}

#[test]
fn hostile_send_streams_are_refused() {
    use silo_tests::corpus::Tar;
    let d = TestDaemon::start("bak-opt-hostile");
    let dir = tempfile::tempdir().expect("tmp");
    let path = |p: &str| (15u16, p.as_bytes().to_vec());
    let streams: Vec<(&str, Vec<u8>)> = vec![
        (
            "a file written through a symlink to the host",
            send_stream(&[
                (
                    1,
                    vec![
                        path("x"),
                        (1, vec![0; 16]),
                        (2, 1u64.to_le_bytes().to_vec()),
                    ],
                ),
                (8, vec![path("rootfs"), (17, b"/etc".to_vec())]),
                (3, vec![path("rootfs/silo-pwned")]),
            ]),
        ),
        (
            "a path that climbs",
            send_stream(&[(3, vec![path("../../../tmp/silo-pwned")])]),
        ),
        ("garbage", b"not a send stream".to_vec()),
    ];
    for (what, bin) in streams {
        let mut t = Tar::new();
        t.file(
            "backup/index.yaml",
            0o644,
            b"name: evil\nbackend: btrfs\npool: default\nsnapshots: []\noptimized: true\ntype: container\n",
        )
        .file("backup/container/backup.yaml", 0o644, b"container:\n  name: evil\n")
        .file("backup/container.bin", 0o600, &bin);
        let f = dir.path().join("evil.tar");
        std::fs::write(&f, t.finish()).expect("write");
        let o = d.silo(&["import", &f.display().to_string()]);
        assert!(!o.status.success(), "{what}: {}", show(&o));
        let (c, _) = d.api("GET", "/1.0/instances/evil", None);
        assert_eq!(c, 404, "{what}");
        assert!(entries(&d, "containers").is_empty(), "{what}");
        assert!(!std::path::Path::new("/etc/silo-pwned").exists(), "{what}");
        assert!(!std::path::Path::new("/tmp/silo-pwned").exists(), "{what}");
    }
}

#[test]
fn backup_records_rename_expire_and_follow_their_instance() {
    let mut d = TestDaemon::start("bak-records");
    d.import(&busybox_image(false)[0], "busybox");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c1", "source": {"type": "image", "alias": "busybox"}})),
    );
    d.api_ok(
        "POST",
        "/1.0/instances/c1/snapshots",
        Some(json!({"name": "s1"})),
    );
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .to_offset(time::UtcOffset::from_hms(2, 0, 0).expect("offset"))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    d.api_ok(
        "POST",
        "/1.0/instances/c1/backups",
        Some(json!({"name": "b1", "instance_only": true, "expires_at": later})),
    );
    let b = d.api_ok("GET", "/1.0/instances/c1/backups/b1", None);
    assert_eq!(b["instance_only"], true, "{b}");
    assert_eq!(b["optimized_storage"], false, "{b}");
    let exp = b["expires_at"].as_str().unwrap_or("");
    assert!(
        exp.ends_with('Z') && !exp.starts_with("0001"),
        "stored in UTC: {b}"
    );
    let (code, body) = d.api(
        "POST",
        "/1.0/instances/c1/backups",
        Some(json!({"name": "b2", "expires_at": "next tuesday"})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("expires_at"), "{body}");
    // Rename; the old name is gone and the file follows.
    d.api_ok(
        "POST",
        "/1.0/instances/c1/backups/b1",
        Some(json!({"name": "b1r"})),
    );
    assert_eq!(d.api("GET", "/1.0/instances/c1/backups/b1", None).0, 404);
    let (code, bytes) = d.api_raw("GET", "/1.0/instances/c1/backups/b1r/export");
    assert_eq!(code, 200);
    assert!(bytes.len() > 1000);
    let full = d.api_ok("GET", "/1.0/instances/c1?recursion=2", None);
    assert_eq!(full["backups"][0]["name"], "b1r", "{full}");
    // A backup past its expiry goes at silod's next minute of housekeeping.
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    d.api_ok(
        "POST",
        "/1.0/instances/c1/backups",
        Some(json!({"name": "short", "expires_at": soon})),
    );
    assert!(
        silo_tests::wait_until(std::time::Duration::from_secs(75), || {
            d.api("GET", "/1.0/instances/c1/backups/short", None).0 == 404
        }),
        "an expired backup was not deleted"
    );
    assert!(!d.dir.join("backups/c1/short").exists());
    assert!(d.dir.join("backups/c1/b1r").exists());
    // Renaming the instance takes its backups along.
    d.api_ok("POST", "/1.0/instances/c1", Some(json!({"name": "c2"})));
    assert_eq!(
        d.api_ok("GET", "/1.0/instances/c2/backups", None),
        json!(["/1.0/instances/c2/backups/b1r"])
    );
    assert_eq!(
        d.api_raw("GET", "/1.0/instances/c2/backups/b1r/export").0,
        200
    );
    // A file an older silod left with no record is adopted at startup (what it holds read
    // from its index.yaml); the backups of an instance that is gone are removed.
    std::fs::copy(d.dir.join("backups/c2/b1r"), d.dir.join("backups/c2/older")).expect("copy");
    std::fs::create_dir_all(d.dir.join("backups/ghost")).expect("mkdir");
    std::fs::write(d.dir.join("backups/ghost/x"), b"x").expect("write");
    // As silod (the silo user) would have left them.
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(d.dir.join("backups")).expect("backups dir");
    for p in ["backups/c2/older", "backups/ghost", "backups/ghost/x"] {
        std::os::unix::fs::chown(d.dir.join(p), Some(owner.uid()), Some(owner.gid()))
            .expect("chown");
    }
    d.stop();
    d.spawn();
    let older = d.api_ok("GET", "/1.0/instances/c2/backups/older", None);
    assert_eq!(older["instance_only"], true, "{older}");
    assert!(!d.dir.join("backups/ghost").exists());
    // Deleting the instance deletes its backups; a new one of the same name has none.
    d.api_ok("DELETE", "/1.0/instances/c2", None);
    assert!(!d.dir.join("backups/c2").exists());
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c2", "source": {"type": "image", "alias": "busybox"}})),
    );
    assert_eq!(
        d.api_ok("GET", "/1.0/instances/c2/backups", None),
        json!([])
    );
}

fn run_ok(cmd: &str, args: &[&str]) {
    let o = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", show(&o));
}

/// An optimized backup as LXD makes it: the first snapshot whole, each later volume as its
/// difference from the one before (`btrfs send -p`), with `optimized_header.yaml`.
#[test]
fn lxd_style_incremental_optimized_backups_import() {
    use silo_tests::corpus::Tar;
    let a = btrfs_with_c1("bak-lxdopt-a");
    let sh = |script: &str| {
        let (code, _, e) = a.exec("c1", &["sh", "-c", script]);
        assert_eq!(code, 0, "{script}: {e}");
    };
    sh(concat!(
        "mkdir -p /root/a/deep /root/b; echo one > /root/a/x; echo keep > /root/a/deep/k; ",
        "ln /root/a/x /root/a/x-link; ln -s /etc/hostname /root/a/l; mkfifo /root/b/p; ",
        "dd if=/dev/urandom of=/root/b/big bs=1k count=200 2>/dev/null"
    ));
    assert!(a.silo(&["snapshot", "c1", "s1"]).status.success());
    // Existing entries move into other and into new directories, names are reused, files
    // change and go.
    sh(concat!(
        "mv /root/a/deep /root/b/; mkdir /root/c; mv /root/a/l /root/c/; mv /root/b/p /root/c/; ",
        "echo two >> /root/a/x; echo new > /root/a/deep; rm /root/a/x-link; ",
        "dd if=/dev/urandom of=/root/b/big bs=1k count=8 seek=50 conv=notrunc 2>/dev/null"
    ));
    assert!(a.silo(&["snapshot", "c1", "s2"]).status.success());
    sh(concat!(
        "mv /root/c /root/b/deep/c; mv /root/a/x /root/x; rmdir /root/b/deep/c 2>/dev/null; ",
        "cp /root/b/big /root/b/big2; chmod 600 /root/b/big2; chown 5:5 /root/x"
    ));
    a.set_state("c1", "stop", true);
    let dir = tempfile::tempdir().expect("tmp");
    // backup.yaml as silo writes it (the same as LXD's for what silo reads).
    let plain = dir.path().join("plain.tar.gz");
    let o = a.silo(&["export", "c1", &plain.display().to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    let by = std::process::Command::new("tar")
        .args([
            "xzf",
            &plain.display().to_string(),
            "-O",
            "backup/container/backup.yaml",
        ])
        .output()
        .expect("tar");
    assert!(by.status.success());
    // The streams, made with btrfs-progs from read-only snapshots on the pool itself (they go
    // with the pool's loop file when the test daemon is dropped).
    let pool = a.dir.join("storage-pools/default");
    let ro = |src: &str, name: &str| {
        let dst = pool.join(name).display().to_string();
        run_ok(
            "btrfs",
            &[
                "subvolume",
                "snapshot",
                "-r",
                &pool.join(src).display().to_string(),
                &dst,
            ],
        );
        dst
    };
    let (r1, r2, rc) = (
        ro("containers-snapshots/c1.s1", "ro-s1"),
        ro("containers-snapshots/c1.s2", "ro-s2"),
        ro("containers/c1", "ro-c1"),
    );
    let bin = |name: &str| dir.path().join(name).display().to_string();
    run_ok("btrfs", &["-q", "send", "-f", &bin("s1.bin"), &r1]);
    run_ok(
        "btrfs",
        &["-q", "send", "-p", &r1, "-f", &bin("s2.bin"), &r2],
    );
    run_ok(
        "btrfs",
        &["-q", "send", "-p", &r2, "-f", &bin("c.bin"), &rc],
    );
    for r in [&rc, &r2, &r1] {
        run_ok("btrfs", &["subvolume", "delete", r]);
    }
    let read = |n: &str| std::fs::read(dir.path().join(n)).expect("bin");
    let mut t = Tar::new();
    t.file(
        "backup/index.yaml",
        0o644,
        b"name: c1\nbackend: btrfs\npool: default\nsnapshots:\n- s1\n- s2\noptimized: true\noptimized_header: true\ntype: container\n",
    )
    .file("backup/container/backup.yaml", 0o644, &by.stdout)
    .file(
        "backup/optimized_header.yaml",
        0o644,
        b"subvolumes:\n- snapshot: s1\n  path: /\n  readonly: true\n- snapshot: s2\n  path: /\n  readonly: true\n- snapshot: \"\"\n  path: /\n  readonly: false\n",
    )
    .file("backup/snapshots/s1.bin", 0o600, &read("s1.bin"))
    .file("backup/snapshots/s2.bin", 0o600, &read("s2.bin"))
    .file("backup/container.bin", 0o600, &read("c.bin"));
    let f = dir.path().join("lxd-opt.tar");
    std::fs::write(&f, t.finish()).expect("write");
    let b = TestDaemon::start("bak-lxdopt-b");
    let o = b.silo(&["import", &f.display().to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    a.set_state("c1", "start", false);
    b.set_state("c1", "start", false);
    same_tree(&tree(&b, "c1"), &tree(&a, "c1"), "the instance");
    for snap in ["s2", "s1"] {
        for d in [&a, &b] {
            let o = d.silo(&["restore", "c1", snap]);
            assert!(o.status.success(), "{}", show(&o));
        }
        same_tree(&tree(&b, "c1"), &tree(&a, "c1"), snap);
    }
    a.set_state("c1", "stop", true);
    b.set_state("c1", "stop", true);
    // Nested subvolumes are refused by name, and a difference without the volume before it.
    let mut t = Tar::new();
    t.file(
        "backup/index.yaml",
        0o644,
        b"name: c9\nbackend: btrfs\npool: default\nsnapshots: []\noptimized: true\noptimized_header: true\ntype: container\n",
    )
    .file("backup/container/backup.yaml", 0o644, &by.stdout)
    .file(
        "backup/optimized_header.yaml",
        0o644,
        b"subvolumes:\n- snapshot: \"\"\n  path: /\n  readonly: false\n- snapshot: \"\"\n  path: /var/lib/machines\n  readonly: false\n",
    )
    .file("backup/container.bin", 0o600, &read("c.bin"));
    std::fs::write(&f, t.finish()).expect("write");
    let o = b.silo(&["import", &f.display().to_string(), "c9"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/var/lib/machines"),
        "{}",
        show(&o)
    );
    let mut t = Tar::new();
    t.file(
        "backup/index.yaml",
        0o644,
        b"name: c9\nbackend: btrfs\npool: default\nsnapshots: []\noptimized: true\ntype: container\n",
    )
    .file("backup/container/backup.yaml", 0o644, &by.stdout)
    .file("backup/container.bin", 0o600, &read("c.bin"));
    std::fs::write(&f, t.finish()).expect("write");
    let o = b.silo(&["import", &f.display().to_string(), "c9"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("incremental"),
        "{}",
        show(&o)
    );
    assert_eq!(b.api("GET", "/1.0/instances/c9", None).0, 404);
}

fn xattr_of(p: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let (cp, cn) = (
        std::ffi::CString::new(p.as_os_str().as_bytes()).expect("path"),
        std::ffi::CString::new(name).expect("name"),
    );
    let mut buf = vec![0u8; 4096];
    // SAFETY: lgetxattr writes at most buf.len() bytes into our buffer.
    let n = unsafe {
        libc::lgetxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn set_xattr(p: &std::path::Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let (cp, cn) = (
        std::ffi::CString::new(p.as_os_str().as_bytes()).expect("path"),
        std::ffi::CString::new(name).expect("name"),
    );
    // SAFETY: lsetxattr reads value.len() bytes from our buffer.
    let r = unsafe {
        libc::lsetxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name} on {}", p.display());
}

/// A v2 file capability: cap_net_raw, effective and permitted.
const NET_RAW_CAP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Hard links across directories: a confined child cannot make them (landlock's REFER), so
/// silo-store makes them for it; snapshots, copies, images made by publish and backups keep
/// them on a dir pool, and extended attributes (a file capability, user.*) with them.
#[test]
fn cross_directory_hard_links_survive_copies_images_and_backups() {
    use std::os::unix::fs::MetadataExt;
    let d = TestDaemon::start("xdir-links");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    let (code, _, e) = d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "mkdir -p /root/d/e; echo x > /root/f; ln /root/f /root/d/e/g",
        ],
    );
    assert_eq!(code, 0, "{e}");
    d.set_state("c1", "stop", true);
    let root_of = |vol: &str| {
        d.dir
            .join("storage-pools/default")
            .join(vol)
            .join("rootfs/root")
    };
    set_xattr(
        &root_of("containers/c1").join("f"),
        "security.capability",
        &NET_RAW_CAP,
    );
    set_xattr(&root_of("containers/c1").join("d"), "user.silo", b"dir");
    let linked = |vol: &str| {
        let r = root_of(vol);
        let (a, b) = (
            std::fs::metadata(r.join("f")).expect("f"),
            std::fs::metadata(r.join("d/e/g")).expect("g"),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "{vol}");
        assert_eq!(
            xattr_of(&r.join("f"), "security.capability").as_deref(),
            Some(&NET_RAW_CAP[..]),
            "{vol}"
        );
        assert_eq!(
            xattr_of(&r.join("d"), "user.silo").as_deref(),
            Some(&b"dir"[..]),
            "{vol}"
        );
    };
    assert!(d.silo(&["snapshot", "c1", "s1"]).status.success());
    linked("containers-snapshots/c1.s1");
    let o = d.silo(&["copy", "c1", "c2"]);
    assert!(o.status.success(), "{}", show(&o));
    linked("containers/c2");
    let o = d.silo(&["restore", "c1", "s1"]);
    assert!(o.status.success(), "{}", show(&o));
    linked("containers/c1");
    let o = d.silo(&["publish", "c1", "--alias", "linked"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["init", "linked", "c3"]);
    assert!(o.status.success(), "{}", show(&o));
    linked("containers/c3");
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("b.tar.gz");
    let o = d.silo(&["export", "c1", &f.display().to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["import", &f.display().to_string(), "c4"]);
    assert!(o.status.success(), "{}", show(&o));
    linked("containers/c4");
    linked("containers-snapshots/c4.s1");
}
