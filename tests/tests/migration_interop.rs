//! Copy and move between hosts with LXD's migration protocol, driven by the stock `lxc` 5.0
//! client: silo to silo (two silods in two linked network namespaces, 198.18.0.1 and
//! 198.18.0.2), LXD 5.0.2 to silo and silo to LXD (both in one namespace, on 127.0.0.1).
//! The copies' root filesystems and snapshots are compared with their sources on the host
//! (`silo_tests::trees`: silo keeps the instance's own ids on disk, LXD's test containers are
//! privileged, so no id offset), their configs compared, and the copies started.

use std::path::Path;

use serde_json::{json, Value};
use silo_tests::lxc_client::Lxc;
use silo_tests::lxd::{TestLxd, TRUST_PASSWORD};
use silo_tests::trees::{self, compare_dirs, show_diffs, Options};
use silo_tests::{busybox_image, link_netns, show, TestDaemon};

const PW: &str = "mig-pw";

/// What rsync (as LXD runs it: no `-H`) keeps: everything but hard links. `/etc/hostname`
/// is the copy's own: its image's "copy" template writes it (silo at once, LXD at first start).
fn opts() -> Options {
    Options {
        hardlinks: false,
        ignore: vec!["etc/hostname".into()],
        ..Options::default()
    }
}

fn assert_same(a: &Path, b: &Path, what: &str) {
    let mut d = compare_dirs(a, b, &opts()).unwrap_or_else(|e| panic!("{what}: {e}"));
    // A volume's top directory is its host's (LXD makes it 0711, silo 0700): what is in it
    // must match.
    d.retain(|x| !x.path.as_os_str().is_empty());
    assert!(d.is_empty(), "{what} differs:\n{}", show_diffs(&d, 40));
}

/// Writes `silo-mig/changed` with contents of a length of its own (rsync's quick check
/// compares size and mtime), plus a few things a migration must carry.
fn write_version(root: &Path, v: &str) {
    let m = root.join("silo-mig");
    std::fs::create_dir_all(&m).expect("mkdir");
    std::fs::write(m.join("changed"), format!("{v}\n").repeat(v.len() + 1)).expect("write");
    std::fs::write(m.join(format!("only-{v}")), v).expect("write");
}

fn enrich(root: &Path) {
    use std::os::unix::fs::{chown, symlink, PermissionsExt};
    let m = root.join("silo-mig");
    std::fs::create_dir_all(&m).expect("mkdir");
    std::fs::write(m.join("suid"), "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(m.join("suid"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod");
    std::fs::write(m.join("owned"), "1000:1001\n").expect("write");
    chown(m.join("owned"), Some(1000), Some(1001)).expect("chown");
    std::fs::write(m.join("xattr"), "x\n").expect("write");
    trees::set_xattr(&m.join("xattr"), "user.silo", b"migrated").expect("xattr");
    trees::mkfifo(&m.join("fifo"), 0o640).expect("fifo");
    symlink("/nowhere", m.join("dangling")).expect("symlink");
    let big: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(m.join("big"), big).expect("big");
}

/// Two silods, linked, each listening on its own address, and an `lxc` in B's namespace
/// with remotes `a` and `b`.
struct SiloPair {
    lxc: Lxc,
    b: TestDaemon,
    a: TestDaemon,
}

fn silo_pair(name: &str) -> SiloPair {
    let a = TestDaemon::start(&format!("{name}-a"));
    let b = TestDaemon::start(&format!("{name}-b"));
    link_netns(&a, &b);
    a.listen_https("198.18.0.1:8443", PW);
    b.listen_https("198.18.0.2:8443", PW);
    let lxc = Lxc::new(name, &b.netns);
    lxc.add_remote("a", "https://198.18.0.1:8443", PW);
    lxc.add_remote("b", "https://198.18.0.2:8443", PW);
    SiloPair { lxc, b, a }
}

fn import_busybox(d: &TestDaemon) {
    let files = busybox_image(false);
    d.import(&files[0], "busybox");
}

/// `c` on silod `d` from busybox with snapshots snap0 and snap1, a file changed between
/// each, and `limits.memory` set.
fn silo_instance(d: &TestDaemon, c: &str) {
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": c, "source": {"type": "image", "alias": "busybox"},
                     "config": {"limits.memory": "96MiB", "user.note": "migrated"}}),
        ),
    );
    let root = trees::silo_rootfs(&d.dir, "default", c);
    enrich(&root);
    for (v, snap) in [
        ("v0", Some("snap0")),
        ("v11", Some("snap1")),
        ("v222", None),
    ] {
        write_version(&root, v);
        if let Some(s) = snap {
            d.api_ok(
                "POST",
                &format!("/1.0/instances/{c}/snapshots"),
                Some(json!({"name": s})),
            );
        }
    }
}

fn get(d: &TestDaemon, path: &str) -> Value {
    let (c, v) = d.api("GET", path, None);
    assert_eq!(c, 200, "GET {path}: {v}");
    v["metadata"].clone()
}

/// The copy on `b` matches the source on `a`: root filesystem, snapshots (names, contents,
/// configs), the instance's own config (less volatile keys), and it starts.
fn check_silo_copy(a: &TestDaemon, src: &str, b: &TestDaemon, dst: &str, snaps: &[&str]) {
    assert_same(
        &trees::silo_rootfs(&a.dir, "default", src),
        &trees::silo_rootfs(&b.dir, "default", dst),
        &format!("{dst}'s root filesystem"),
    );
    let names: Vec<String> = get(b, &format!("/1.0/instances/{dst}/snapshots?recursion=1"))
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, snaps, "snapshots of {dst}");
    for s in snaps {
        assert_same(
            &trees::silo_snapshot_rootfs(&a.dir, "default", src, s),
            &trees::silo_snapshot_rootfs(&b.dir, "default", dst, s),
            &format!("{dst}/{s}"),
        );
        let sa = get(a, &format!("/1.0/instances/{src}/snapshots/{s}"));
        let sb = get(b, &format!("/1.0/instances/{dst}/snapshots/{s}"));
        // The protocol carries whole seconds (LXD's too).
        let secs = |v: &Value| {
            v["created_at"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(19)
                .collect::<String>()
        };
        assert_eq!(secs(&sa), secs(&sb), "{s}'s creation time");
        assert_eq!(sa["config"]["limits.memory"], sb["config"]["limits.memory"]);
    }
    let ia = get(a, &format!("/1.0/instances/{src}"));
    let ib = get(b, &format!("/1.0/instances/{dst}"));
    let plain = |v: &Value| -> Value {
        let mut m = v["config"].as_object().cloned().unwrap_or_default();
        m.retain(|k, _| !k.starts_with("volatile."));
        Value::Object(m)
    };
    assert_eq!(plain(&ia), plain(&ib), "config of {dst}");
    assert_eq!(ia["architecture"], ib["architecture"]);
    assert_ne!(
        ia["config"]["volatile.uuid"], ib["config"]["volatile.uuid"],
        "the copy has an identity of its own"
    );
    assert!(ib["config"]["volatile.idmap.base"].is_string(), "{ib}");
    b.api_ok(
        "PUT",
        &format!("/1.0/instances/{dst}/state"),
        Some(json!({"action": "start"})),
    );
    let (code, out, _) = b.exec(dst, &["cat", "/silo-mig/changed"]);
    assert_eq!(code, 0, "exec in {dst}: {out}");
    assert!(out.starts_with("v222"), "{out}");
    b.api_ok(
        "PUT",
        &format!("/1.0/instances/{dst}/state"),
        Some(json!({"action": "stop", "force": true})),
    );
}

#[test]
fn lxc_copies_between_two_silos_in_every_mode() {
    let p = silo_pair("mig-ss");
    import_busybox(&p.a);
    silo_instance(&p.a, "c1");
    for (mode, dst) in [("pull", "c-pull"), ("push", "c-push"), ("relay", "c-relay")] {
        let (o, t) = p
            .lxc
            .timed(&["copy", "a:c1", &format!("b:{dst}"), "--mode", mode]);
        assert!(o.status.success(), "copy --mode {mode}: {}", show(&o));
        eprintln!(
            "[migration-timing] silo->silo copy --mode {mode}: {} ms",
            t.as_millis()
        );
        check_silo_copy(&p.a, "c1", &p.b, dst, &["snap0", "snap1"]);
    }
    // A snapshot as an instance of its own.
    p.lxc.ok(&["copy", "a:c1/snap0", "b:c-snap"]);
    assert_same(
        &trees::silo_snapshot_rootfs(&p.a.dir, "default", "c1", "snap0"),
        &trees::silo_rootfs(&p.b.dir, "default", "c-snap"),
        "c-snap",
    );
    // Without snapshots, with a config key of its own.
    p.lxc.ok(&[
        "copy",
        "a:c1",
        "b:c-only",
        "--instance-only",
        "-c",
        "limits.memory=64MiB",
    ]);
    let i = get(&p.b, "/1.0/instances/c-only?recursion=1");
    assert_eq!(i["config"]["limits.memory"], "64MiB", "{i}");
    assert!(
        i["snapshots"].as_array().is_none_or(|s| s.is_empty()),
        "{i}"
    );
    // The target's profiles: named ones (which must exist there), or none with the root
    // disk given by -s.
    p.b.api_ok(
        "POST",
        "/1.0/profiles",
        Some(json!({"name": "extra", "config": {"user.extra": "yes"}})),
    );
    p.lxc.ok(&[
        "copy",
        "a:c1",
        "b:c-prof",
        "--instance-only",
        "-p",
        "default",
        "-p",
        "extra",
    ]);
    let i = get(&p.b, "/1.0/instances/c-prof");
    assert_eq!(i["profiles"], json!(["default", "extra"]), "{i}");
    p.lxc.ok(&[
        "copy",
        "a:c1",
        "b:c-noprof",
        "--instance-only",
        "--no-profiles",
        "-s",
        "default",
    ]);
    let i = get(&p.b, "/1.0/instances/c-noprof");
    assert_eq!(i["profiles"], json!([]), "{i}");
    assert_eq!(i["devices"]["root"]["pool"], "default", "{i}");
    // A name taken on the target: refused before any transfer.
    let o = p.lxc.run(&["copy", "a:c1", "b:c-pull"]);
    assert!(!o.status.success(), "{}", show(&o));
}

#[test]
fn lxc_refresh_move_and_running_sources_between_silos() {
    let p = silo_pair("mig-sr");
    import_busybox(&p.a);
    silo_instance(&p.a, "c1");
    p.lxc.ok(&["copy", "a:c1", "b:c1"]);
    // Refresh: one file changed and a snapshot more on the source.
    let root = trees::silo_rootfs(&p.a.dir, "default", "c1");
    write_version(&root, "v3333");
    p.a.api_ok(
        "POST",
        "/1.0/instances/c1/snapshots",
        Some(json!({"name": "snap2"})),
    );
    write_version(&root, "v44444");
    let (o, t) = p.lxc.timed(&["copy", "a:c1", "b:c1", "--refresh"]);
    assert!(o.status.success(), "copy --refresh: {}", show(&o));
    eprintln!(
        "[migration-timing] silo->silo copy --refresh: {} ms",
        t.as_millis()
    );
    assert_same(
        &root,
        &trees::silo_rootfs(&p.b.dir, "default", "c1"),
        "refreshed c1",
    );
    assert_same(
        &trees::silo_snapshot_rootfs(&p.a.dir, "default", "c1", "snap2"),
        &trees::silo_snapshot_rootfs(&p.b.dir, "default", "c1", "snap2"),
        "c1/snap2 after the refresh",
    );
    // A running source: no CRIU, so the stock client's live copy is refused with LXD's words
    // and nothing is made on the target; --stateless copies it running.
    p.a.api_ok(
        "PUT",
        "/1.0/instances/c1/state",
        Some(json!({"action": "start"})),
    );
    let o = p.lxc.run(&["copy", "a:c1", "b:c-live"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("CRIU isn't installed on the source server"),
        "{}",
        show(&o)
    );
    let (c, _) = p.b.api("GET", "/1.0/instances/c-live", None);
    assert_eq!(c, 404);
    p.lxc.ok(&["copy", "a:c1", "b:c-live", "--stateless"]);
    let (c, _) = p.b.api("GET", "/1.0/instances/c-live", None);
    assert_eq!(c, 200);
    // A snapshot of the running instance copies without stopping it.
    p.lxc.ok(&["copy", "a:c1/snap1", "b:c-snap1"]);
    p.a.api_ok(
        "PUT",
        "/1.0/instances/c1/state",
        Some(json!({"action": "stop", "force": true})),
    );
    // Move: the source goes only once the target has it all.
    let (o, t) = p.lxc.timed(&["move", "a:c1", "b:c-moved"]);
    assert!(o.status.success(), "move: {}", show(&o));
    eprintln!("[migration-timing] silo->silo move: {} ms", t.as_millis());
    let (c, _) = p.a.api("GET", "/1.0/instances/c1", None);
    assert_eq!(c, 404, "the moved source is gone");
    let s = get(&p.b, "/1.0/instances/c-moved/snapshots");
    assert_eq!(s.as_array().map(Vec::len), Some(3), "{s}");
}

/// silod and LXD 5.0.2 in one network namespace: silod on 127.0.0.1:8443, LXD on :8444.
struct Mixed {
    lxc: Lxc,
    lxd: TestLxd,
    silo: TestDaemon,
}

fn mixed(name: &str) -> Mixed {
    let silo = TestDaemon::start(&format!("{name}-s"));
    silo.listen_https("127.0.0.1:8443", PW);
    let lxd = TestLxd::start_in_netns_of(&format!("{name}-l"), &silo, 8444);
    let lxc = Lxc::new(name, &silo.netns);
    lxc.add_remote("s", "https://127.0.0.1:8443", PW);
    lxc.add_remote("l", "https://127.0.0.1:8444", TRUST_PASSWORD);
    Mixed { lxc, lxd, silo }
}

fn lxd_ok(l: &TestLxd, args: &[&str]) -> String {
    let o = l.lxc(args);
    assert!(o.status.success(), "lxc {}: {}", args.join(" "), show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn lxc_copies_from_lxd_to_silo_and_back() {
    let m = mixed("mig-ls");
    let files = busybox_image(false);
    lxd_ok(
        &m.lxd,
        &[
            "image",
            "import",
            &files[0].to_string_lossy(),
            "--alias",
            "busybox",
        ],
    );
    lxd_ok(
        &m.lxd,
        &["init", "busybox", "w1", "-c", "user.note=from-lxd"],
    );
    let lroot = trees::lxd_rootfs(&m.lxd.dir, "default", "w1");
    enrich(&lroot);
    for (v, snap) in [
        ("v0", Some("snap0")),
        ("v11", Some("snap1")),
        ("v222", None),
    ] {
        write_version(&lroot, v);
        if let Some(s) = snap {
            lxd_ok(&m.lxd, &["snapshot", "w1", s]);
        }
    }
    for mode in ["pull", "push", "relay"] {
        let dst = format!("w-{mode}");
        let (o, t) = m
            .lxc
            .timed(&["copy", "l:w1", &format!("s:{dst}"), "--mode", mode]);
        assert!(
            o.status.success(),
            "LXD -> silo --mode {mode}: {}",
            show(&o)
        );
        eprintln!(
            "[migration-timing] lxd->silo copy --mode {mode}: {} ms",
            t.as_millis()
        );
        assert_same(
            &lroot,
            &trees::silo_rootfs(&m.silo.dir, "default", &dst),
            &dst,
        );
        for s in ["snap0", "snap1"] {
            assert_same(
                &trees::lxd_snapshot_rootfs(&m.lxd.dir, "default", "w1", s),
                &trees::silo_snapshot_rootfs(&m.silo.dir, "default", &dst, s),
                &format!("{dst}/{s}"),
            );
        }
        let i = get(&m.silo, &format!("/1.0/instances/{dst}"));
        assert_eq!(i["config"]["user.note"], "from-lxd", "{i}");
    }
    m.silo.api_ok(
        "PUT",
        "/1.0/instances/w-pull/state",
        Some(json!({"action": "start"})),
    );
    let (code, out, _) = m.silo.exec("w-pull", &["cat", "/silo-mig/changed"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("v222"), "{out}");
    m.silo.api_ok(
        "PUT",
        "/1.0/instances/w-pull/state",
        Some(json!({"action": "stop", "force": true})),
    );
    // And back: silo to LXD, in every mode; LXD starts the copy.
    for mode in ["pull", "push", "relay"] {
        let dst = format!("back-{mode}");
        let (o, t) = m
            .lxc
            .timed(&["copy", "s:w-pull", &format!("l:{dst}"), "--mode", mode]);
        assert!(
            o.status.success(),
            "silo -> LXD --mode {mode}: {}",
            show(&o)
        );
        eprintln!(
            "[migration-timing] silo->lxd copy --mode {mode}: {} ms",
            t.as_millis()
        );
        assert_same(
            &trees::silo_rootfs(&m.silo.dir, "default", "w-pull"),
            &trees::lxd_rootfs(&m.lxd.dir, "default", &dst),
            &dst,
        );
        for s in ["snap0", "snap1"] {
            assert_same(
                &trees::silo_snapshot_rootfs(&m.silo.dir, "default", "w-pull", s),
                &trees::lxd_snapshot_rootfs(&m.lxd.dir, "default", &dst, s),
                &format!("{dst}/{s}"),
            );
        }
    }
    lxd_ok(&m.lxd, &["start", "back-pull"]);
    let out = lxd_ok(
        &m.lxd,
        &["exec", "back-pull", "--", "cat", "/silo-mig/changed"],
    );
    assert!(out.starts_with("v222"), "{out}");
    lxd_ok(&m.lxd, &["stop", "--force", "back-pull"]);
    // A move from LXD: the source is gone afterwards.
    m.lxc.ok(&["move", "l:w1", "s:w-moved"]);
    let o = m.lxd.lxc(&["info", "w1"]);
    assert!(!o.status.success(), "w1 still on LXD: {}", show(&o));
}

/// `n` bytes that neither compress nor sparsify.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn custom_volumes_and_pools_copy_between_hosts_and_on_one() {
    let m = mixed("mig-vol");
    m.silo.api_ok(
        "POST",
        "/1.0/storage-pools/default/volumes/custom",
        Some(json!({"name": "v1"})),
    );
    let v1 = m.silo.dir.join("storage-pools/default/custom/v1");
    enrich(&v1);
    write_version(&v1, "vol");
    // silo -> LXD and back, as `lxc storage volume copy` does it.
    for mode in ["pull", "push", "relay"] {
        let dst = format!("from-silo-{mode}");
        m.lxc.ok(&[
            "storage",
            "volume",
            "copy",
            "s:default/v1",
            &format!("l:default/{dst}"),
            "--mode",
            mode,
        ]);
        assert_same(
            &v1,
            &m.lxd
                .dir
                .join(format!("storage-pools/default/custom/default_{dst}")),
            &dst,
        );
    }
    // A volume with snapshots and config: both travel (as LXD's do), unless --volume-only.
    m.silo.api_ok(
        "PATCH",
        "/1.0/storage-pools/default/volumes/custom/v1",
        Some(json!({"config": {"user.k": "v"}})),
    );
    m.silo.api_ok(
        "POST",
        "/1.0/storage-pools/default/volumes/custom/v1/snapshots",
        Some(json!({"name": "vs0"})),
    );
    std::fs::write(v1.join("after-vs0"), "later").expect("write");
    m.lxc.ok(&[
        "storage",
        "volume",
        "copy",
        "s:default/v1",
        "l:default/withsnap",
    ]);
    let lxd_snap = m
        .lxd
        .dir
        .join("storage-pools/default/custom-snapshots/default_withsnap/vs0");
    assert!(
        lxd_snap.join("silo-mig/only-vol").is_file(),
        "the snapshot's files"
    );
    assert!(
        !lxd_snap.join("after-vs0").exists(),
        "the snapshot as it was"
    );
    assert!(m
        .lxd
        .dir
        .join("storage-pools/default/custom/default_withsnap/after-vs0")
        .is_file());
    let shown = m.lxc.ok(&[
        "storage",
        "volume",
        "get",
        "l:default",
        "withsnap",
        "user.k",
    ]);
    assert_eq!(shown.trim(), "v");
    // And back from LXD: the snapshot arrives as one of silo's.
    m.lxc.ok(&[
        "storage",
        "volume",
        "copy",
        "l:default/withsnap",
        "s:default/back",
    ]);
    let back_snap = m
        .silo
        .dir
        .join("storage-pools/default/custom-snapshots/back/vs0");
    assert!(back_snap.join("silo-mig/only-vol").is_file() && !back_snap.join("after-vs0").exists());
    let snaps = get(
        &m.silo,
        "/1.0/storage-pools/default/volumes/custom/back/snapshots",
    );
    assert_eq!(
        snaps,
        json!(["/1.0/storage-pools/default/volumes/custom/back/snapshots/vs0"])
    );
    m.lxc.ok(&[
        "storage",
        "volume",
        "copy",
        "s:default/v1",
        "l:default/nosnap",
        "--volume-only",
    ]);
    assert!(!m
        .lxd
        .dir
        .join("storage-pools/default/custom-snapshots/default_nosnap")
        .exists());
    m.silo.api_ok(
        "DELETE",
        "/1.0/storage-pools/default/volumes/custom/v1/snapshots/vs0",
        None,
    );
    std::fs::remove_file(v1.join("after-vs0")).expect("rm");
    m.silo.api_ok(
        "DELETE",
        "/1.0/storage-pools/default/volumes/custom/back",
        None,
    );
    m.lxc.ok(&[
        "storage",
        "volume",
        "copy",
        "l:default/from-silo-pull",
        "s:default/v2",
    ]);
    assert_same(
        &v1,
        &m.silo.dir.join("storage-pools/default/custom/v2"),
        "v2",
    );
    // A second pool on the silo host: volumes and instances copy and move across pools.
    m.silo.api_ok(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "p2", "driver": "dir"})),
    );
    m.lxc
        .ok(&["storage", "volume", "copy", "s:default/v1", "s:p2/v1"]);
    assert_same(&v1, &m.silo.dir.join("storage-pools/p2/custom/v1"), "p2/v1");
    m.lxc
        .ok(&["storage", "volume", "move", "s:p2/v1", "s:default/v3"]);
    assert_same(
        &v1,
        &m.silo.dir.join("storage-pools/default/custom/v3"),
        "v3",
    );
    assert!(!m.silo.dir.join("storage-pools/p2/custom/v1").exists());
    import_busybox(&m.silo);
    silo_instance(&m.silo, "c1");
    m.lxc.ok(&["copy", "s:c1", "s:c1-p2", "-s", "p2"]);
    let i = get(&m.silo, "/1.0/instances/c1-p2");
    assert_eq!(i["devices"]["root"]["pool"], "p2", "{i}");
    assert_same(
        &trees::silo_rootfs(&m.silo.dir, "default", "c1"),
        &trees::silo_rootfs(&m.silo.dir, "p2", "c1-p2"),
        "c1-p2",
    );
    assert_same(
        &trees::silo_snapshot_rootfs(&m.silo.dir, "default", "c1", "snap1"),
        &trees::silo_snapshot_rootfs(&m.silo.dir, "p2", "c1-p2", "snap1"),
        "c1-p2/snap1",
    );
}

#[test]
fn untrusted_callers_wrong_certificates_and_full_pools_leave_nothing() {
    let p = silo_pair("mig-bad");
    import_busybox(&p.a);
    silo_instance(&p.a, "c1");
    // No client certificate: neither side takes a migration request.
    for (url, body) in [
        (
            "https://198.18.0.1:8443/1.0/instances/c1",
            r#"{"name":"c1","migration":true}"#,
        ),
        (
            "https://198.18.0.2:8443/1.0/instances",
            r#"{"name":"x","source":{"type":"migration","mode":"push"}}"#,
        ),
    ] {
        let o = p.b.netns_cmd(&[
            "curl",
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-d",
            body,
            url,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "403",
            "POST {url}: {}",
            show(&o)
        );
    }
    // A pull whose pinned source certificate is not the source's: the target's TLS check
    // fails, saying so, and leaves nothing.
    let src = p.a.api(
        "POST",
        "/1.0/instances/c1",
        Some(json!({"migration": true})),
    );
    assert_eq!(src.0, 202, "{}", src.1);
    let op = src.1["operation"].as_str().expect("op").to_string();
    let secrets = src.1["metadata"]["metadata"].clone();
    let wrong = get(&p.b, "/1.0")["environment"]["certificate"].clone();
    let (c, v) = p.b.api(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "c-tls", "source": {"type": "migration", "mode": "pull",
            "operation": format!("https://198.18.0.1:8443{op}"), "secrets": secrets,
            "certificate": wrong}}),
        ),
    );
    assert_eq!(c, 202, "{v}");
    let done = p.b.wait_op(&v);
    assert_eq!(done["status"], "Failure", "{done}");
    assert!(
        done["err"].as_str().unwrap_or("").contains("certificate"),
        "{done}"
    );
    let (c, _) = p.b.api("GET", "/1.0/instances/c-tls", None);
    assert_eq!(c, 404);
    let a_op = p.a.wait_op(&src.1);
    assert_eq!(a_op["status"], "Failure", "the source gives up: {a_op}");
    // A target pool without room: the copy fails with ENOSPC and leaves nothing; the source
    // is untouched.
    p.b.api_ok(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "small", "driver": "btrfs", "config": {"size": "256MiB"}})),
    );
    let root = trees::silo_rootfs(&p.a.dir, "default", "c1");
    std::fs::write(root.join("noise"), noise(320 << 20)).expect("noise");
    let o = p
        .lxc
        .run(&["copy", "a:c1", "b:c-full", "-s", "small", "--instance-only"]);
    assert!(
        !o.status.success(),
        "a copy larger than the pool: {}",
        show(&o)
    );
    let (c, _) = p.b.api("GET", "/1.0/instances/c-full", None);
    assert_eq!(c, 404);
    let left: Vec<_> = std::fs::read_dir(p.b.dir.join("storage-pools/small/containers"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the full pool: {left:?}");
    assert!(root.join("noise").exists(), "the source is untouched");
    // A move that fails leaves the source where it was.
    let o = p
        .lxc
        .run(&["move", "a:c1", "b:c-full", "-s", "small", "--instance-only"]);
    assert!(
        !o.status.success(),
        "a move larger than the pool: {}",
        show(&o)
    );
    let (c, _) = p.a.api("GET", "/1.0/instances/c1", None);
    assert_eq!(c, 200, "the source of a failed move still exists");
    let (c, _) = p.b.api("GET", "/1.0/instances/c-full", None);
    assert_eq!(c, 404);
}

/// systemd reached the end of its boot in `name` on silod `d` (running, or degraded where
/// units want hardware or a network the test does not give).
fn silo_systemd_booted(d: &TestDaemon, name: &str) -> String {
    let t0 = std::time::Instant::now();
    let mut state = String::new();
    while t0.elapsed() < std::time::Duration::from_secs(120) {
        let (_, o, _) = d.exec(
            name,
            &["timeout", "120", "systemctl", "is-system-running", "--wait"],
        );
        state = o.trim().to_string();
        if state == "running" || state == "degraded" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    state
}

#[test]
fn a_debian_instance_with_snapshots_copies_from_lxd_to_silo_and_back_and_boots() {
    let m = mixed("mig-deb");
    let image = silo_tests::debian_image();
    lxd_ok(
        &m.lxd,
        &[
            "image",
            "import",
            &image.to_string_lossy(),
            "--alias",
            "debian",
        ],
    );
    lxd_ok(&m.lxd, &["init", "debian", "d1"]);
    let lroot = trees::lxd_rootfs(&m.lxd.dir, "default", "d1");
    for (v, snap) in [
        ("v0", Some("snap0")),
        ("v11", Some("snap1")),
        ("v222", None),
    ] {
        write_version(&lroot, v);
        if let Some(s) = snap {
            lxd_ok(&m.lxd, &["snapshot", "d1", s]);
        }
    }
    let (o, t) = m.lxc.timed(&["copy", "l:d1", "s:d1"]);
    assert!(o.status.success(), "LXD -> silo: {}", show(&o));
    eprintln!(
        "[migration-timing] lxd->silo debian copy: {} ms",
        t.as_millis()
    );
    assert_same(
        &lroot,
        &trees::silo_rootfs(&m.silo.dir, "default", "d1"),
        "d1",
    );
    for s in ["snap0", "snap1"] {
        assert_same(
            &trees::lxd_snapshot_rootfs(&m.lxd.dir, "default", "d1", s),
            &trees::silo_snapshot_rootfs(&m.silo.dir, "default", "d1", s),
            &format!("d1/{s}"),
        );
    }
    m.silo.api_ok(
        "PUT",
        "/1.0/instances/d1/state",
        Some(json!({"action": "start"})),
    );
    let state = silo_systemd_booted(&m.silo, "d1");
    assert!(
        state == "running" || state == "degraded",
        "systemd ended up {state:?}"
    );
    let (_, o, _) = m.silo.exec(
        "d1",
        &["sh", "-c", "cat /proc/1/comm; cat /silo-mig/changed"],
    );
    assert!(o.starts_with("systemd\nv222"), "{o}");
    m.silo.api_ok(
        "PUT",
        "/1.0/instances/d1/state",
        Some(json!({"action": "stop", "force": true})),
    );
    // Back to LXD in push mode, where it boots too.
    let (o, t) = m.lxc.timed(&["copy", "s:d1", "l:d2", "--mode", "push"]);
    assert!(o.status.success(), "silo -> LXD: {}", show(&o));
    eprintln!(
        "[migration-timing] silo->lxd debian copy: {} ms",
        t.as_millis()
    );
    assert_same(
        &trees::silo_rootfs(&m.silo.dir, "default", "d1"),
        &trees::lxd_rootfs(&m.lxd.dir, "default", "d2"),
        "d2",
    );
    lxd_ok(&m.lxd, &["start", "d2"]);
    let out = lxd_ok(
        &m.lxd,
        &[
            "exec",
            "d2",
            "--",
            "sh",
            "-c",
            "cat /proc/1/comm; cat /silo-mig/changed",
        ],
    );
    assert!(out.starts_with("systemd\nv222"), "{out}");
    lxd_ok(&m.lxd, &["stop", "--force", "d2"]);
}
