//! Every instance gets host ids of its own: concurrent creates claim distinct ranges in one
//! database step, concurrent starts are checked and reserved in silo-priv in one step, and no
//! range touches ids /etc/subuid or /etc/subgid give another owner.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use silo_proto::privileged::{IdKind, Limits, PrivClient, RawIdmapEntry, StartSpec};
use silo_proto::{HelperError, InstanceName, PoolName};
use silo_tests::hostile::Helper;
use silo_tests::{busybox_image, TestDaemon};
use tarpc::client::Config;
use tarpc::context;

const N: usize = 20;

/// Host id ranges [start, end) of a uid_map or gid_map.
fn map_ranges(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[1], f[1] + f[2]))
        })
        .collect()
}

/// Every non-root owner's range in the host's /etc/subuid and /etc/subgid.
fn other_owners() -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for f in ["/etc/subuid", "/etc/subgid"] {
        for l in std::fs::read_to_string(f).unwrap_or_default().lines() {
            let p: Vec<&str> = l.trim().split(':').collect();
            if p.len() != 3 || p[0] == "root" || p[0] == "0" {
                continue;
            }
            if let (Ok(s), Ok(c)) = (p[1].parse::<u64>(), p[2].parse::<u64>()) {
                out.push((format!("{f} {}", p[0]), s, s + c));
            }
        }
    }
    out
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn concurrent_creates_and_starts_get_disjoint_id_ranges() {
    let d = TestDaemon::start("idmap-conc");
    d.import(&busybox_image(false)[0], "busybox");
    let names: Vec<String> = (0..N).map(|i| format!("idm{i}")).collect();
    // All creates at once: each picks its base while the others copy their volumes.
    std::thread::scope(|s| {
        for n in &names {
            let d = &d;
            s.spawn(move || {
                d.api_ok(
                    "POST",
                    "/1.0/instances",
                    Some(json!({"name": n, "source": {"type": "image", "alias": "busybox"}})),
                );
            });
        }
    });
    let bases: Vec<u64> = names
        .iter()
        .map(|n| {
            let (_, v) = d.api("GET", &format!("/1.0/instances/{n}"), None);
            v["metadata"]["config"]["volatile.idmap.base"]
                .as_str()
                .and_then(|b| b.parse().ok())
                .unwrap_or_else(|| panic!("{n} has no volatile.idmap.base: {v}"))
        })
        .collect();
    let distinct: HashSet<u64> = bases.iter().copied().collect();
    assert_eq!(distinct.len(), N, "bases shared: {bases:?}");
    // All starts at once.
    std::thread::scope(|s| {
        for n in &names {
            let d = &d;
            s.spawn(move || {
                d.api_ok(
                    "PUT",
                    &format!("/1.0/instances/{n}/state"),
                    Some(json!({"action": "start"})),
                );
            });
        }
    });
    let others = other_owners();
    let mut maps: Vec<(String, (u64, u64))> = Vec::new();
    for (n, base) in names.iter().zip(&bases) {
        let (_, st) = d.api("GET", &format!("/1.0/instances/{n}/state"), None);
        let pid = st["metadata"]["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("{n} has no init pid: {st}"));
        for f in ["uid_map", "gid_map"] {
            let text = std::fs::read_to_string(format!("/proc/{pid}/{f}")).expect("map");
            let r = map_ranges(&text);
            assert_eq!(r, vec![(*base, base + 65536)], "{n} {f}: {text}");
            for (o, s, e) in &others {
                assert!(
                    !overlap(r[0], (*s, *e)),
                    "{n} {f} {r:?} overlaps {o} {s}-{e}"
                );
            }
            maps.push((format!("{n} {f}"), r[0]));
        }
    }
    for (i, (a, ra)) in maps.iter().enumerate() {
        for (b, rb) in &maps[i + 1..] {
            // An instance's uid and gid maps name the same ids.
            if a.split(' ').next() != b.split(' ').next() {
                assert!(!overlap(*ra, *rb), "{a} {ra:?} overlaps {b} {rb:?}");
            }
        }
    }
    // Deleting frees a range for the next create, which gets a range no one else has.
    d.api_ok(
        "PUT",
        "/1.0/instances/idm0/state",
        Some(json!({"action": "stop", "force": true})),
    );
    d.api_ok("DELETE", "/1.0/instances/idm0", None);
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "idm-next", "source": {"type": "image", "alias": "busybox"}})),
    );
    let (_, v) = d.api("GET", "/1.0/instances/idm-next", None);
    let next: u64 = v["metadata"]["config"]["volatile.idmap.base"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .expect("base");
    assert!(
        bases[1..]
            .iter()
            .all(|b| !overlap((next, next + 65536), (*b, b + 65536))),
        "{next} overlaps one of {bases:?}"
    );
}

/// A silo-priv driven directly, as a compromised silod would; instances and cgroups go in Drop.
struct Priv {
    dirs: silo_tests::HelperDirs,
    files: Vec<PathBuf>,
}

impl Priv {
    fn new(name: &str) -> Priv {
        Priv {
            dirs: silo_tests::HelperDirs::new(name),
            files: Vec::new(),
        }
    }

    fn file(&mut self, name: &str, text: &str) -> PathBuf {
        let p = PathBuf::from(format!("{}.{name}", self.dirs.state.display()));
        std::fs::write(&p, text).expect("write");
        self.files.push(p.clone());
        p
    }
}

impl Drop for Priv {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A root volume as silo-store makes it, with the busybox image's files.
fn plant_rootfs(state: &Path, name: &str) {
    let rootfs = state
        .join("storage-pools/p/containers")
        .join(name)
        .join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("mkdir");
    let img = busybox_image(false).remove(0);
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&img)
        .args(["--strip-components=1", "-C"])
        .arg(&rootfs)
        .arg("rootfs")
        .status()
        .expect("tar");
    assert!(st.success());
}

fn spec(name: &str, base: u64) -> StartSpec {
    StartSpec {
        instance: InstanceName::new(name).expect("name"),
        pool: PoolName::new("p").expect("pool"),
        idmap_base: Some(base),
        idmap_size: 65536,
        nesting: false,
        limits: Limits::default(),
        disks: Vec::new(),
        devices: Vec::new(),
        hold: false,
        raw_idmap: Vec::new(),
        devlxd: false,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

#[test]
fn priv_refuses_concurrent_starts_sharing_ids() {
    let p = Priv::new("idmap-hpriv");
    let mut h = Helper::spawn("silo-priv", &p.dirs.state, &p.dirs.policy, false, &[]);
    let rt = rt();
    let c = rt.block_on(async { PrivClient::new(Config::default(), h.transport()).spawn() });
    let ranges = rt
        .block_on(c.id_range(context::current()))
        .expect("rpc")
        .expect("ranges");
    let base = ranges.usable[0].start;
    for n in ["s1", "s2", "s3", "s4", "s5"] {
        plant_rootfs(&p.dirs.state, n);
    }
    rt.block_on(async {
        // The same base, and overlapping ones, asked for at once: one start wins.
        for (a, b) in [
            (spec("s1", base), spec("s2", base)),
            (spec("s3", base + 131072), spec("s4", base + 131072 + 100)),
        ] {
            let (ra, rb) = tokio::join!(
                c.start(context::current(), a),
                c.start(context::current(), b)
            );
            let (ra, rb) = (ra.expect("rpc"), rb.expect("rpc"));
            let (ok, refused) = match (&ra, &rb) {
                (Ok(i), Err(e)) | (Err(e), Ok(i)) => (i, e),
                _ => panic!("exactly one start must win: {ra:?} {rb:?}"),
            };
            assert!(
                matches!(refused, HelperError::Invalid { reason, .. } if reason.contains("overlap")),
                "{refused:?}"
            );
            let map = std::fs::read_to_string(format!("/proc/{}/uid_map", ok.init_pid))
                .expect("uid_map");
            assert_eq!(
                map_ranges(&map)[0].0,
                ok.idmap_base.expect("base"),
                "{map}"
            );
        }
        // One instance started twice at once, on free ids: once.
        let (ra, rb) = tokio::join!(
            c.start(context::current(), spec("s5", base + 4 * 65536)),
            c.start(context::current(), spec("s5", base + 6 * 65536))
        );
        let (ra, rb) = (ra.expect("rpc"), rb.expect("rpc"));
        assert!(
            matches!(
                (&ra, &rb),
                (Ok(_), Err(HelperError::OutOfOrder(_))) | (Err(HelperError::OutOfOrder(_)), Ok(_))
            ),
            "{ra:?} {rb:?}"
        );
        // A refused start holds nothing: the ids of the one refused above are free.
        let running = c
            .running(context::current())
            .await
            .expect("rpc")
            .expect("running");
        assert_eq!(running.len(), 3, "{running:?}");
    });
}

#[test]
fn priv_keeps_clear_of_other_owners_subordinate_ids() {
    let mut p = Priv::new("idmap-owners");
    plant_rootfs(&p.dirs.state, "o1");
    // Debian's lxd package: _lxd and root share one range, which LXD maps its containers to.
    let lxd = "_lxd:100000:1000000001\nroot:100000:1000000001\n";
    let (u, g) = (p.file("subuid1", lxd), p.file("subgid1", lxd));
    let mut h = Helper::spawn_with_subids("silo-priv", &p.dirs.state, &p.dirs.policy, &u, &g);
    let rt = rt();
    let c = rt.block_on(async { PrivClient::new(Config::default(), h.transport()).spawn() });
    rt.block_on(async {
        let r = c.id_range(context::current()).await.expect("rpc");
        let e = r.expect_err("no usable range").to_string();
        assert!(
            e.contains("no subordinate id range of root is free of other owners")
                && e.contains("root:1001000000:1000000000"),
            "{e}"
        );
        // LXD's first container's ids: refused, as is everything else.
        let r = c
            .start(context::current(), spec("o1", 165536))
            .await
            .expect("rpc");
        assert!(
            matches!(&r, Err(HelperError::Unsupported(m)) if m.contains("no subordinate id range")),
            "{r:?}"
        );
    });
    drop(c);
    drop(h);
    // With the suggested line added, only it is used; ids _lxd holds are refused by name.
    let more = format!("{lxd}root:1001000000:1000000000\n");
    let (u, g) = (p.file("subuid2", &more), p.file("subgid2", &more));
    let mut h = Helper::spawn_with_subids("silo-priv", &p.dirs.state, &p.dirs.policy, &u, &g);
    let c = rt.block_on(async { PrivClient::new(Config::default(), h.transport()).spawn() });
    rt.block_on(async {
        let r = c
            .id_range(context::current())
            .await
            .expect("rpc")
            .expect("ranges");
        assert_eq!(r.usable.len(), 1, "{r:?}");
        assert_eq!(
            (r.usable[0].start, r.usable[0].count),
            (1_001_000_000, 1_000_000_000)
        );
        for base in [165536, 1_000_100_000 - 100] {
            let r = c
                .start(context::current(), spec("o1", base))
                .await
                .expect("rpc");
            assert!(
                matches!(&r, Err(HelperError::Invalid { reason, .. }) if reason.contains("\"_lxd\"")),
                "{base}: {r:?}"
            );
        }
        let running = c
            .running(context::current())
            .await
            .expect("rpc")
            .expect("running");
        assert!(running.is_empty(), "{running:?}");
    });
}

/// Root's first subordinate uid as silo-priv sees it (LXD's default 1000000 without an entry).
fn root_subuid_start() -> u64 {
    std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let p: Vec<&str> = l.trim().split(':').collect();
            (p.len() == 3 && (p[0] == "root" || p[0] == "0"))
                .then(|| p[1].parse::<u64>().ok())
                .flatten()
        })
        .unwrap_or(1_000_000)
}

fn owner(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    format!("{} {}", m.uid(), m.gid())
}

#[test]
fn raw_idmap_maps_policy_allowed_host_ids_into_the_instance() {
    let d = TestDaemon::start_with_policy("idmap-raw", "raw_idmap_host_ids = [\"1000-1999\"]\n");
    d.import(&busybox_image(false)[0], "busybox");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c1", "source": {"type": "image", "alias": "busybox"}})),
    );
    let (_, v) = d.api("GET", "/1.0/instances/c1", None);
    let base: u64 = v["metadata"]["config"]["volatile.idmap.base"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .expect("base");
    // Malformed or never-allowed maps are refused when set, naming the key.
    for (bad, why) in [
        ("uid 1000", "LXD's syntax"),
        ("both 0 1000", "host root"),
        ("both 1000 0", "container root"),
        ("both 1000-1001 1000", "maps 2 host ids onto 1"),
    ] {
        let (c, v) = d.api(
            "PATCH",
            "/1.0/instances/c1",
            Some(json!({"config": {"raw.idmap": bad}})),
        );
        let e = v["error"].as_str().unwrap_or_default();
        assert!(
            c == 400 && e.contains("raw.idmap") && e.contains(why),
            "{bad}: {c} {v}"
        );
    }
    // The root volume keeps the instance's own ids on disk (the idmapped mount shifts them):
    // files of the instance's 1000, whose host id the map now replaces, and of its 1001.
    let rootfs = d.dir.join("storage-pools/default/containers/c1/rootfs");
    let chown = |p: &Path, id: u64| {
        std::os::unix::fs::chown(p, Some(id as u32), Some(id as u32)).expect("chown")
    };
    std::fs::create_dir_all(rootfs.join("srv")).expect("mkdir");
    for (f, id) in [("srv/c1000", 1000), ("srv/c1001", 1001)] {
        std::fs::write(rootfs.join(f), "").expect("write");
        chown(&rootfs.join(f), id);
    }
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"config": {"raw.idmap": "both 1000 1000"}})),
    );
    d.api_ok(
        "PUT",
        "/1.0/instances/c1/state",
        Some(json!({"action": "start"})),
    );
    // The maps have the hole punched, as LXD writes them.
    let want = format!("0 {base} 1000\n1000 1000 1\n1001 {} 64535", base + 1001);
    for f in ["uid_map", "gid_map"] {
        let (code, o, e) = d.exec("c1", &["cat", &format!("/proc/self/{f}")]);
        assert_eq!(code, 0, "{e}");
        let lines: Vec<String> = o
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(lines.join("\n"), want, "{f}");
    }
    // Through the idmapped root the instance's files keep their owners, 1000's included: the
    // mount goes through the same map, so the instance's 1000 on disk is host user 1000 in the
    // kernel and 1000 again inside (no file turns into the overflow id).
    let (code, o, e) = d.exec(
        "c1",
        &[
            "stat",
            "-c",
            "%n %u %g",
            "/srv/c1000",
            "/srv/c1001",
            "/bin/busybox",
        ],
    );
    assert_eq!(code, 0, "{e}");
    assert_eq!(
        o.trim(),
        "/srv/c1000 1000 1000\n/srv/c1001 1001 1001\n/bin/busybox 0 0"
    );
    // Off the root volume the host ids show: what the instance's 1000 makes on its tmpfs is
    // host user 1000's, and a host user 1000's file is the instance's 1000 (it was the
    // overflow id before raw.idmap).
    let (code, _, e) = d.exec_as(
        "c1",
        &["sh", "-c", "echo x > /dev/shm/by-1000 && cat /srv/c1000"],
        1000,
    );
    assert_eq!(code, 0, "{e}");
    let st = d.api_ok("GET", "/1.0/instances/c1/state", None);
    let pid = st["pid"].as_u64().expect("pid");
    let shm = PathBuf::from(format!("/proc/{pid}/root/dev/shm"));
    assert_eq!(owner(&shm.join("by-1000")), "1000 1000");
    // (Host root has no id on the instance's tmpfs to create it with: container root makes it,
    // the host gives it to host user 1000, which the kernel takes only if 1000 is mapped.)
    let (code, _, e) = d.exec("c1", &["touch", "/dev/shm/from-host"]);
    assert_eq!(code, 0, "{e}");
    chown(&shm.join("from-host"), 1000);
    let (code, o, e) = d.exec("c1", &["stat", "-c", "%u %g", "/dev/shm/from-host"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(o.trim(), "1000 1000");
    // What the instance's 1000 writes to its root volume is its 1000 on disk; container
    // root's is its 0, as without raw.idmap.
    let (code, _, e) = d.exec_as("c1", &["touch", "/tmp/by-1000"], 1000);
    assert_eq!(code, 0, "{e}");
    assert_eq!(owner(&rootfs.join("tmp/by-1000")), "1000 1000");
    let (code, _, e) = d.exec("c1", &["touch", "/srv/by-root"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(owner(&rootfs.join("srv/by-root")), "0 0");
    // Ids the policy does not list, or that belong to the subordinate ranges instances are
    // made of, are refused at start by silo-priv, naming why.
    d.set_state("c1", "stop", true);
    let sub = root_subuid_start();
    for (map, why) in [
        (
            "both 2000 2000".to_string(),
            "raw_idmap_host_ids".to_string(),
        ),
        (
            format!("uid {} 1000", sub + 5),
            "subordinate range".to_string(),
        ),
        (
            "gid 1990-2010 1990-2010".to_string(),
            "raw_idmap_host_ids".to_string(),
        ),
    ] {
        d.api_ok(
            "PATCH",
            "/1.0/instances/c1",
            Some(json!({"config": {"raw.idmap": map}})),
        );
        let (c, v) = d.api(
            "PUT",
            "/1.0/instances/c1/state",
            Some(json!({"action": "start"})),
        );
        let op = if c == 202 { d.wait_op(&v) } else { v };
        let text = op.to_string();
        assert!(text.contains(&why), "{map}: {text}");
        assert_eq!(d.status("c1"), "Stopped", "{map}");
    }
}

#[test]
fn priv_refuses_raw_idmaps_a_compromised_silod_sends() {
    let p = Priv::new("idmap-rawpriv");
    let policy = p.dirs.policy.clone();
    std::fs::write(&policy, "raw_idmap_host_ids = [\"1000-1999\"]\n").expect("policy");
    plant_rootfs(&p.dirs.state, "r1");
    let mut h = Helper::spawn("silo-priv", &p.dirs.state, &policy, false, &[]);
    let rt = rt();
    let c = rt.block_on(async { PrivClient::new(Config::default(), h.transport()).spawn() });
    let ranges = rt
        .block_on(c.id_range(context::current()))
        .expect("rpc")
        .expect("ranges");
    let base = ranges.usable[0].start;
    let raw = |kind, host, container, count| RawIdmapEntry {
        kind,
        host,
        container,
        count,
    };
    rt.block_on(async {
        for (map, why) in [
            (vec![raw(IdKind::Both, 0, 1000, 1)], "host root"),
            (vec![raw(IdKind::Uid, 1000, 0, 1)], "container root"),
            (vec![raw(IdKind::Uid, 1000, 65000, 1000)], "1-65535"),
            (vec![raw(IdKind::Gid, base, 1000, 1)], "subordinate range"),
            (
                vec![raw(IdKind::Both, 1000, 5, 1), raw(IdKind::Uid, 1000, 6, 1)],
                "overlap",
            ),
            (vec![raw(IdKind::Both, 1000, 5, 1); 40], "at most"),
            (vec![raw(IdKind::Uid, 1999, 5, 2)], "raw_idmap_host_ids"),
        ] {
            let mut s = spec("r1", base);
            s.raw_idmap = map.clone();
            let r = c.start(context::current(), s).await.expect("rpc");
            let e = r.expect_err("refused").to_string();
            assert!(e.contains(why), "{map:?}: {e}");
        }
        // Nothing to map into without a user namespace.
        let mut s = spec("r1", base);
        s.idmap_base = None;
        s.raw_idmap = vec![raw(IdKind::Both, 1000, 1000, 1)];
        let e = c
            .start(context::current(), s)
            .await
            .expect("rpc")
            .expect_err("refused")
            .to_string();
        assert!(e.contains("raw.idmap") && e.contains("privileged"), "{e}");
        let running = c
            .running(context::current())
            .await
            .expect("rpc")
            .expect("running");
        assert!(running.is_empty(), "{running:?}");
        // An allowed map starts, and the kernel has the lines silo-priv computed.
        let mut s = spec("r1", base);
        s.raw_idmap = vec![raw(IdKind::Uid, 1500, 33, 2)];
        let info = c
            .start(context::current(), s)
            .await
            .expect("rpc")
            .expect("start");
        let map =
            std::fs::read_to_string(format!("/proc/{}/uid_map", info.init_pid)).expect("uid_map");
        let lines: Vec<String> = map
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            lines,
            [
                format!("0 {base} 33"),
                "33 1500 2".to_string(),
                format!("35 {} 65501", base + 35)
            ]
        );
        let gmap =
            std::fs::read_to_string(format!("/proc/{}/gid_map", info.init_pid)).expect("gid_map");
        assert_eq!(
            gmap.split_whitespace().collect::<Vec<_>>(),
            ["0", &base.to_string(), "65536"]
        );
    });
}
