//! Each helper driven directly by a test playing a compromised silod: traversal, planted
//! symlinks, odd and over-long names, huge sizes, foreign interfaces. Every request is
//! refused with a clear error (or, for frames silod's own types could not build, the helper
//! refuses the frame and closes the channel), and nothing changes on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use silo_proto::net::NetClient;
use silo_proto::privileged::PrivClient;
use silo_proto::store::{PoolDriver, StoreClient, VolumeKind};
use silo_proto::{HelperError, IfName, InstanceName, PoolName, VolumeName};
use silo_tests::hostile::{Helper, RawBridgeSpec, RawNetClient, RawPrivClient, RawStoreClient};

/// A bridge spec for silo-net: IPv4 only, DHCP and DNS on.
fn bridge(name: &str, ipv4: Option<&str>, mtu: Option<u32>) -> silo_proto::net::BridgeSpec {
    silo_proto::net::BridgeSpec {
        name: IfName::new(name).expect("name"),
        ipv4: ipv4.map(|c| c.parse().expect("cidr")),
        ipv6: None,
        ipv4_nat: true,
        ipv6_nat: false,
        ipv4_dhcp: true,
        ipv6_dhcp: false,
        ipv6_dhcp_stateful: false,
        dhcp_expiry: 3600,
        mtu,
        dns_domain: silo_proto::types::DnsDomain::new("silo").expect("domain"),
        dns: true,
        ipv4_dhcp_ranges: Vec::new(),
        ipv6_dhcp_ranges: Vec::new(),
    }
}
use tarpc::client::Config;
use tarpc::context;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

use silo_tests::HelperDirs as Dirs;

fn ctx() -> context::Context {
    context::current()
}

/// The helper refused a frame and closed: the call failed, it exited with status 3, and its
/// log names what it refused.
fn assert_refused_frame(h: &mut Helper, what: &str) {
    let (code, sig) = h.wait(Duration::from_secs(5));
    let log = h.log_text();
    assert_eq!(
        (code, sig),
        (Some(3), None),
        "helper should exit 3 after refusing; log:\n{log}"
    );
    assert!(
        log.contains("refusing a malformed request from silod"),
        "{log}"
    );
    assert!(log.contains(what), "log should name {what:?}:\n{log}");
}

#[test]
fn store_refuses_traversal_names_and_closes() {
    let d = Dirs::new("hstore-raw");
    let outside = d.state.with_extension("outside");
    for bad in ["../../outside", "/etc", "a/b", "..", &"x".repeat(10_000)] {
        let mut h = Helper::spawn("silo-store", &d.state, &d.policy, false, &[]);
        let rt = rt();
        let c =
            rt.block_on(async { RawStoreClient::new(Config::default(), h.transport()).spawn() });
        let r = rt.block_on(c.create_pool(ctx(), bad.to_string(), PoolDriver::Dir));
        assert!(r.is_err(), "{bad:?} must not get an answer: {r:?}");
        assert_refused_frame(&mut h, "invalid storage pool name");
    }
    assert!(!outside.exists());
    let pools = std::fs::read_dir(d.state.join("storage-pools"))
        .expect("pools")
        .count();
    assert_eq!(pools, 0, "nothing was created");
}

#[test]
fn store_refuses_a_planted_symlink_at_start() {
    let d = Dirs::new("hstore-plant");
    let outside = tempfile::tempdir().expect("outside");
    std::os::unix::fs::symlink(outside.path(), d.state.join("storage-pools")).expect("plant");
    let mut h = Helper::spawn("silo-store", &d.state, &d.policy, false, &[]);
    let (code, _) = h.wait(Duration::from_secs(5));
    let log = h.log_text();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("is a symlink or leaves its root; refusing to follow it"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("ls").count(),
        0,
        "nothing written through the link"
    );
}

#[test]
fn store_refuses_a_silod_owned_directory() {
    let d = Dirs::new("hstore-owned");
    std::fs::create_dir(d.state.join("storage-pools")).expect("dir");
    let silo = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("nobody");
    nix::unistd::chown(&d.state.join("storage-pools"), Some(silo.uid), None).expect("chown");
    let mut h = Helper::spawn("silo-store", &d.state, &d.policy, false, &[]);
    let (code, _) = h.wait(Duration::from_secs(5));
    let log = h.log_text();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("not root; refusing a directory silod could have planted"),
        "{log}"
    );
}

#[test]
fn store_does_its_job_and_refuses_hostile_requests() {
    let d = Dirs::new("hstore");
    let mut h = Helper::spawn("silo-store", &d.state, &d.policy, false, &[]);
    let rt = rt();
    let c = rt.block_on(async { StoreClient::new(Config::default(), h.transport()).spawn() });
    let pool = PoolName::new("p1").expect("name");
    let vol = VolumeName::new("c1").expect("name");
    rt.block_on(async {
        let info = c
            .create_pool(ctx(), pool.clone(), PoolDriver::Dir)
            .await
            .expect("rpc")
            .expect("create pool");
        assert!(info.space_total > 0);
        let again = c
            .create_pool(ctx(), pool.clone(), PoolDriver::Dir)
            .await
            .expect("rpc");
        assert!(
            matches!(again, Err(HelperError::AlreadyExists { .. })),
            "{again:?}"
        );
        // Formatting a host disk the policy does not list (the default lists none) is
        // denied before anything is opened or made.
        for dev in ["/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/loop0"] {
            let r = c
                .create_pool(
                    ctx(),
                    PoolName::new("p9").expect("n"),
                    PoolDriver::BtrfsDevice {
                        source: silo_proto::types::HostPath::new(dev).expect("path"),
                    },
                )
                .await
                .expect("rpc");
            assert!(matches!(r, Err(HelperError::Denied { .. })), "{dev}: {r:?}");
        }
        assert!(!d.state.join("storage-pools/p9").exists());
        c.create_volume(ctx(), pool.clone(), VolumeKind::Container, vol.clone())
            .await
            .expect("rpc")
            .expect("volume");
        let missing = c
            .create_volume(
                ctx(),
                PoolName::new("nope").expect("n"),
                VolumeKind::Container,
                vol.clone(),
            )
            .await
            .expect("rpc");
        assert_eq!(
            missing.unwrap_err().to_string(),
            "storage pool \"nope\" not found"
        );
        // A root-owned volume: silod planting a symlink inside is impossible, but root in a
        // container could; removal must never follow it.
        let vdir = d.state.join("storage-pools/p1/containers/c1");
        let victim = tempfile::tempdir().expect("victim");
        std::fs::write(victim.path().join("keep"), b"precious").expect("write");
        std::os::unix::fs::symlink(victim.path(), vdir.join("escape")).expect("symlink");
        std::fs::write(vdir.join("data"), vec![7u8; 100_000]).expect("write");
        let used = c
            .volume_usage(ctx(), pool.clone(), VolumeKind::Container, vol.clone())
            .await
            .expect("rpc")
            .expect("usage");
        assert!(used >= 100_000, "{used}");
        let busy = c.delete_pool(ctx(), pool.clone()).await.expect("rpc");
        assert!(matches!(busy, Err(HelperError::InUse { .. })), "{busy:?}");
        c.delete_volume(ctx(), pool.clone(), VolumeKind::Container, vol.clone())
            .await
            .expect("rpc")
            .expect("delete");
        assert!(
            victim.path().join("keep").exists(),
            "delete followed a symlink out of the volume"
        );
        // Sizes.
        let huge = c
            .create_loop_file(ctx(), pool.clone(), u64::MAX)
            .await
            .expect("rpc");
        assert!(matches!(huge, Err(HelperError::Denied { .. })), "{huge:?}");
        assert!(huge.unwrap_err().to_string().contains("max_loop_file_size"));
        let tiny = c
            .create_loop_file(ctx(), pool.clone(), 1)
            .await
            .expect("rpc");
        assert!(matches!(tiny, Err(HelperError::Invalid { .. })), "{tiny:?}");
        let ok = c
            .create_loop_file(ctx(), pool.clone(), 64 << 20)
            .await
            .expect("rpc")
            .expect("loop file");
        assert_eq!(ok.size, 64 << 20);
        let md = std::fs::metadata(d.state.join("disks/p1.img")).expect("img");
        assert_eq!(md.len(), 64 << 20);
        assert!(std::os::unix::fs::MetadataExt::blocks(&md) < 1024, "sparse");
        c.delete_loop_file(ctx(), pool.clone())
            .await
            .expect("rpc")
            .expect("rm loop");
        // silod swaps the top-level directory for a symlink after start: the helper keeps
        // using the directory it opened, never the link.
        let outside = tempfile::tempdir().expect("outside");
        std::fs::rename(d.state.join("storage-pools"), d.state.join("moved")).expect("rename");
        std::os::unix::fs::symlink(outside.path(), d.state.join("storage-pools")).expect("plant");
        c.create_pool(ctx(), PoolName::new("p2").expect("n"), PoolDriver::Dir)
            .await
            .expect("rpc")
            .expect("p2");
        assert_eq!(
            std::fs::read_dir(outside.path()).expect("ls").count(),
            0,
            "nothing written through the swapped link"
        );
        assert!(d.state.join("moved/p2").is_dir());
    });
    // The helper kept serving throughout: well-formed but hostile requests get errors, not a crash.
    assert!(
        h.child.try_wait().expect("wait").is_none(),
        "{}",
        h.log_text()
    );
}

#[test]
fn store_refuses_frames_over_the_limit() {
    use std::io::Write;
    let d = Dirs::new("hstore-frame");
    let mut h = Helper::spawn("silo-store", &d.state, &d.policy, false, &[]);
    let fd = h.rpc.take().expect("rpc");
    let mut s = std::os::unix::net::UnixStream::from(fd);
    // A length prefix of 64 MiB: past the 16 MiB frame limit.
    let _ = s.write_all(&(64u32 << 20).to_be_bytes());
    let _ = s.write_all(&[0u8; 4096]);
    let (code, _) = h.wait(Duration::from_secs(5));
    assert_eq!(code, Some(3), "{}", h.log_text());
    assert!(
        h.log_text().contains("frame size too big"),
        "{}",
        h.log_text()
    );
}

#[test]
fn priv_makes_cgroups_only_under_its_own_root() {
    let d = Dirs::new("hpriv");
    let tag = silo_proto::install_tag(&d.state);
    let mut h = Helper::spawn("silo-priv", &d.state, &d.policy, false, &[]);
    let rt = rt();
    let c = rt.block_on(async { PrivClient::new(Config::default(), h.transport()).spawn() });
    let name = InstanceName::new("c1").expect("name");
    rt.block_on(async {
        let layout = c.cgroup_layout(ctx()).await.expect("rpc").expect("layout");
        let info = c
            .create_cgroup(ctx(), name.clone())
            .await
            .expect("rpc")
            .expect("create");
        assert!(!info.paths.is_empty());
        for p in &info.paths {
            assert!(p.ends_with(&format!("/silo-{tag}/c1")), "{p}");
            assert!(Path::new(p).is_dir(), "{p} exists on the host ({layout:?})");
        }
        let dup = c.create_cgroup(ctx(), name.clone()).await.expect("rpc");
        assert!(
            matches!(dup, Err(HelperError::AlreadyExists { .. })),
            "{dup:?}"
        );
        assert_eq!(
            c.list_cgroups(ctx()).await.expect("rpc").expect("list"),
            vec![name.clone()]
        );
        c.delete_cgroup(ctx(), name.clone())
            .await
            .expect("rpc")
            .expect("delete");
        for p in &info.paths {
            assert!(!Path::new(p).exists(), "{p} removed");
            assert!(
                !Path::new(p).parent().expect("parent").exists(),
                "empty silo-{tag} removed too"
            );
        }
        let gone = c.delete_cgroup(ctx(), name.clone()).await.expect("rpc");
        assert!(
            matches!(gone, Err(HelperError::NotFound { .. })),
            "{gone:?}"
        );
    });
    drop(c);
    // A raw client sends what silod's types cannot build.
    for bad in [
        "../../../../sys/fs/cgroup/memory",
        "x/y",
        "9lives",
        &"a".repeat(64),
    ] {
        let mut h = Helper::spawn("silo-priv", &d.state, &d.policy, false, &[]);
        let c = rt.block_on(async { RawPrivClient::new(Config::default(), h.transport()).spawn() });
        let r = rt.block_on(c.create_cgroup(ctx(), bad.to_string()));
        assert!(r.is_err(), "{bad:?}: {r:?}");
        assert_refused_frame(&mut h, "invalid instance name");
    }
}

fn in_netns(pid: u32, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg("-t")
        .arg(pid.to_string())
        .arg("-n")
        .args(args)
        .output()
        .expect("nsenter")
}

#[test]
fn net_changes_only_its_own_interfaces() {
    let d = Dirs::new("hnet");
    // The helper runs in a network namespace of the test's own: the host's links are never touched.
    let mut h = Helper::spawn("silo-net", &d.state, &d.policy, true, &[]);
    let pid = h.child.id();
    let rt = rt();
    let c = rt.block_on(async { NetClient::new(Config::default(), h.transport()).spawn() });
    // A foreign interface with an address, made by "another manager".
    let o = in_netns(pid, &["ip", "link", "add", "other0", "type", "bridge"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        in_netns(pid, &["ip", "addr", "add", "10.77.0.1/24", "dev", "other0"])
            .status
            .success()
    );
    assert!(in_netns(pid, &["ip", "link", "set", "other0", "up"])
        .status
        .success());
    rt.block_on(async {
        let br = IfName::new("silotestbr0").expect("name");
        let info = c
            .ensure_bridge(ctx(), bridge(br.as_str(), Some("10.78.0.1/24"), Some(1500)))
            .await
            .expect("rpc")
            .expect("create");
        assert_eq!(
            (info.name.as_str(), info.mtu, info.up),
            ("silotestbr0", 1500, true)
        );
        assert!(
            info.dnsmasq_pid.is_some(),
            "a dnsmasq serves the bridge: {info:?}"
        );
        // The same spec again changes nothing and is not an error.
        let again = c
            .ensure_bridge(ctx(), bridge(br.as_str(), Some("10.78.0.1/24"), Some(1500)))
            .await
            .expect("rpc")
            .expect("ensure again");
        assert_eq!(again.index, info.index);
        // A hostile daemon cannot aim a nic at a process: instances are found by silo-priv's
        // root-owned records only.
        let nic = silo_proto::net::NicSpec {
            name: IfName::new("eth0").expect("n"),
            hwaddr: None,
            mtu: None,
            kind: silo_proto::net::NicKind::Bridged {
                bridge: br.clone(),
                host_name: IfName::new("siloghost").expect("n"),
            },
            vlan: None,
            limits: Default::default(),
            filter: None,
        };
        let ghost = c
            .attach_nic(ctx(), InstanceName::new("ghost").expect("n"), nic)
            .await
            .expect("rpc");
        assert!(
            matches!(&ghost, Err(HelperError::OutOfOrder(m)) if m.contains("not running")),
            "{ghost:?}"
        );
        assert_eq!(
            info.ipv4.map(|c| c.to_string()),
            Some("10.78.0.1/24".into())
        );
        let listed = c.list_bridges(ctx()).await.expect("rpc").expect("list");
        assert_eq!(
            listed.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
            ["silotestbr0"]
        );
        // Refusals.
        let foreign = c
            .delete_bridge(ctx(), IfName::new("other0").expect("n"))
            .await
            .expect("rpc");
        assert!(
            matches!(foreign, Err(HelperError::Denied { .. })),
            "{foreign:?}"
        );
        let lo = c
            .delete_bridge(ctx(), IfName::new("lo").expect("n"))
            .await
            .expect("rpc");
        assert!(matches!(lo, Err(HelperError::Denied { .. })), "{lo:?}");
        let taken = c
            .ensure_bridge(ctx(), bridge("other0", None, None))
            .await
            .expect("rpc");
        // A name that is not silo's own is refused by rule, whoever holds it.
        let msg = taken.unwrap_err().to_string();
        assert!(msg.contains("must start with \"silo\""), "{msg}");
        let overlap = c
            .ensure_bridge(ctx(), bridge("silotestbr1", Some("10.77.5.1/16"), None))
            .await
            .expect("rpc");
        let msg = overlap.unwrap_err().to_string();
        assert!(
            msg.contains("overlaps") && msg.contains("10.77.0.1/24"),
            "{msg}"
        );
        let mtu = c
            .ensure_bridge(ctx(), bridge("silotestbr1", None, Some(70000)))
            .await
            .expect("rpc");
        assert!(matches!(mtu, Err(HelperError::Invalid { .. })), "{mtu:?}");
        // DHCP ranges silod did not check: outside the subnet, over the gateway, backwards.
        for (first, last, why) in [
            ("10.78.0.10", "10.79.0.10", "not within the subnet"),
            ("10.78.0.1", "10.78.0.10", "gateway"),
            ("10.78.0.20", "10.78.0.10", "ends before it starts"),
        ] {
            let mut spec = bridge("silotestbr1", Some("10.78.0.1/24"), None);
            spec.ipv4_dhcp_ranges = vec![silo_proto::net::DhcpRange {
                first: first.parse().expect("a"),
                last: last.parse().expect("a"),
            }];
            let r = c.ensure_bridge(ctx(), spec).await.expect("rpc");
            let msg = r.expect_err("refused").to_string();
            assert!(msg.contains(why), "{first}-{last}: {msg}");
        }
        c.delete_bridge(ctx(), br.clone())
            .await
            .expect("rpc")
            .expect("delete");
    });
    let links = String::from_utf8_lossy(&in_netns(pid, &["ip", "-br", "link"]).stdout).into_owned();
    assert!(
        links.contains("other0"),
        "the foreign interface is untouched: {links}"
    );
    assert!(
        !links.contains("silotestbr"),
        "no half-made bridge remains: {links}"
    );
    drop(c);
    for bad in ["../../x", "way-too-long-interface-name", "eth 0", ""] {
        let mut h = Helper::spawn("silo-net", &d.state, &d.policy, true, &[]);
        let c = rt.block_on(async { RawNetClient::new(Config::default(), h.transport()).spawn() });
        let r = rt.block_on(c.ensure_bridge(ctx(), RawBridgeSpec::new(bad, None)));
        assert!(r.is_err(), "{bad:?}: {r:?}");
        assert_refused_frame(&mut h, "invalid interface name");
    }
    let mut h = Helper::spawn("silo-net", &d.state, &d.policy, true, &[]);
    let c = rt.block_on(async { RawNetClient::new(Config::default(), h.transport()).spawn() });
    let r = rt.block_on(c.ensure_bridge(ctx(), RawBridgeSpec::new("okname", Some("10.0.0.0/33"))));
    assert!(r.is_err());
    assert_refused_frame(&mut h, "invalid IPv4 CIDR");
}

#[test]
fn a_root_owned_policy_is_required() {
    let d = Dirs::new("hpolicy");
    std::fs::write(&d.policy, "allow_privileged = true\n").expect("write");
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("nobody");
    nix::unistd::chown(&d.policy, Some(nobody.uid), None).expect("chown");
    let mut h = Helper::spawn("silo-store", &d.state, &d.policy, false, &[]);
    let (code, _) = h.wait(Duration::from_secs(5));
    let log = h.log_text();
    assert_eq!(code, Some(2));
    assert!(log.contains("must be owned by root"), "{log}");
}

/// A root volume silo-store would have made: `storage-pools/p/containers/<name>/rootfs`, all
/// root's, with the busybox image's files.
fn plant_rootfs(state: &Path, name: &str) -> PathBuf {
    let vol = state.join("storage-pools/p/containers").join(name);
    let rootfs = vol.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("mkdir");
    let img = silo_tests::busybox_image(false).remove(0);
    let st = Command::new("tar")
        .args(["-xzf"])
        .arg(&img)
        .args(["--strip-components=1", "-C"])
        .arg(&rootfs)
        .arg("rootfs")
        .status()
        .expect("tar");
    assert!(st.success());
    rootfs
}

#[test]
fn priv_refuses_hostile_starts_and_execs() {
    use silo_proto::privileged::{ExecSpec, InitExit, Limits, StartSpec};
    let d = Dirs::new("hpriv-rt");
    let mut h = Helper::spawn("silo-priv", &d.state, &d.policy, false, &[]);
    let rt = rt();
    let c = rt.block_on(async { PrivClient::new(Config::default(), h.transport()).spawn() });
    let ranges = rt.block_on(c.id_range(ctx())).expect("rpc").expect("range");
    let range = ranges.usable[0];
    let root_end = ranges.root.last().expect("root range").end();
    let pool = PoolName::new("p").expect("pool");
    let spec = |name: &str, base: Option<u64>| StartSpec {
        instance: InstanceName::new(name).expect("name"),
        pool: pool.clone(),
        idmap_base: base,
        idmap_size: 65536,
        nesting: false,
        limits: Limits::default(),
        disks: Vec::new(),
        devices: Vec::new(),
        hold: false,
        raw_idmap: Vec::new(),
        devlxd: false,
    };
    plant_rootfs(&d.state, "c1");
    rt.block_on(async {
        // Host root's ids (base 0), or any base outside root's subordinate range: refused.
        for base in [0, ranges.root[0].start - 65536, root_end] {
            let r = c.start(ctx(), spec("c1", Some(base))).await.expect("rpc");
            assert!(
                matches!(r, Err(HelperError::Invalid { .. })),
                "base {base}: {r:?}"
            );
        }
        // A privileged container needs the root policy's allow_privileged.
        let r = c.start(ctx(), spec("c1", None)).await.expect("rpc");
        assert!(matches!(r, Err(HelperError::Denied { .. })), "{r:?}");
        // No such volume.
        let r = c
            .start(ctx(), spec("nosuch", Some(range.start)))
            .await
            .expect("rpc");
        assert!(matches!(r, Err(HelperError::NotFound { .. })), "{r:?}");
        // Nonsense limits.
        let mut bad = spec("c1", Some(range.start));
        bad.limits.memory = Some(1);
        let r = c.start(ctx(), bad).await.expect("rpc");
        assert!(matches!(r, Err(HelperError::Invalid { .. })), "{r:?}");
        // A good start, then an overlapping id range for another instance.
        let info = c
            .start(ctx(), spec("c1", Some(range.start)))
            .await
            .expect("rpc")
            .expect("start");
        assert!(info.init_pid > 1);
        let r = c
            .start(ctx(), spec("c1", Some(range.start + 65536)))
            .await
            .expect("rpc");
        assert!(matches!(r, Err(HelperError::OutOfOrder(_))), "twice: {r:?}");
        plant_rootfs(&d.state, "c2");
        let r = c
            .start(ctx(), spec("c2", Some(range.start + 100)))
            .await
            .expect("rpc");
        assert!(
            matches!(&r, Err(HelperError::Invalid { reason, .. }) if reason.contains("overlap")),
            "{r:?}"
        );
        // Exec: unmapped users, empty commands, unknown execs.
        let ex = |uid: u32, cmd: Vec<String>| ExecSpec {
            instance: InstanceName::new("c1").expect("n"),
            command: cmd,
            env: vec![],
            cwd: String::new(),
            uid,
            gid: 0,
            interactive: false,
            width: 0,
            height: 0,
        };
        let r = c
            .exec(ctx(), ex(70000, vec!["id".into()]))
            .await
            .expect("rpc");
        assert!(matches!(r, Err(HelperError::Invalid { .. })), "{r:?}");
        let r = c.exec(ctx(), ex(0, vec![])).await.expect("rpc");
        assert!(matches!(r, Err(HelperError::Invalid { .. })), "{r:?}");
        let r = c
            .exec(ctx(), ex(0, vec!["a\0b".into()]))
            .await
            .expect("rpc");
        assert!(matches!(r, Err(HelperError::Invalid { .. })), "{r:?}");
        let r = c.exec_signal(ctx(), 999, 9).await.expect("rpc");
        assert!(matches!(r, Err(HelperError::NotFound { .. })), "{r:?}");
        let r = c
            .set_limits(
                ctx(),
                InstanceName::new("c2").expect("n"),
                Limits::default(),
            )
            .await
            .expect("rpc");
        assert!(
            matches!(r, Err(HelperError::OutOfOrder(_))),
            "not running: {r:?}"
        );
        // Console resizes: sizes checked, applied to the instance's console pty.
        let n1 = InstanceName::new("c1").expect("n");
        let r = c
            .console_resize(ctx(), n1.clone(), 0, 24)
            .await
            .expect("rpc");
        assert!(matches!(r, Err(HelperError::Invalid { .. })), "{r:?}");
        let r = c
            .console_resize(ctx(), InstanceName::new("c2").expect("n"), 80, 24)
            .await
            .expect("rpc");
        assert!(r.is_err(), "not running: {r:?}");
        c.console_resize(ctx(), n1.clone(), 100, 40)
            .await
            .expect("rpc")
            .expect("resize");
        let pts =
            std::fs::read_to_string(d.state.join("runtime/c1/console.pts")).expect("pts record");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(pts.trim())
            .expect("pts");
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ into a local winsize on a terminal fd we hold.
        unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::TIOCGWINSZ,
                &mut ws,
            )
        };
        assert_eq!((ws.ws_col, ws.ws_row), (100, 40));
        // /dev/lxd: a listener only for a running instance started with it (c1 was not) and
        // only in its own root-owned directory: a symlink there is not followed.
        let r = c.devlxd_listener(ctx(), n1.clone()).await.expect("rpc");
        assert!(matches!(r, Err(HelperError::NotFound { .. })), "{r:?}");
        let r = c
            .devlxd_listener(ctx(), InstanceName::new("c2").expect("n"))
            .await
            .expect("rpc");
        assert!(r.is_err(), "not running: {r:?}");
        let elsewhere = d.state.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, d.state.join("runtime/c1/devlxd")).expect("ln");
        let r = c.devlxd_listener(ctx(), n1.clone()).await.expect("rpc");
        assert!(r.is_err(), "followed a symlink: {r:?}");
        assert!(!elsewhere.join("sock").exists());
        // The good one still stops cleanly.
        c.stop(ctx(), InstanceName::new("c1").expect("n"), true)
            .await
            .expect("rpc")
            .expect("stop");
        let e = c
            .wait_stopped(ctx(), InstanceName::new("c1").expect("n"), 10_000)
            .await
            .expect("rpc")
            .expect("wait");
        assert_eq!(e, InitExit::Signaled(9));
    });
    // A rootfs planted by someone other than root (a compromised silod's own files) is refused.
    let evil = plant_rootfs(&d.state, "evil");
    std::os::unix::fs::chown(&evil, Some(65534), Some(65534)).expect("chown");
    let r = rt
        .block_on(c.start(ctx(), spec("evil", Some(range.start))))
        .expect("rpc");
    assert!(r.is_err(), "{r:?}");
    // A symlinked volume pointing at the host root is refused too.
    let link = d.state.join("storage-pools/p/containers/linked");
    std::os::unix::fs::symlink("/", &link).expect("symlink");
    let r = rt
        .block_on(c.start(ctx(), spec("linked", Some(range.start))))
        .expect("rpc");
    assert!(r.is_err(), "{r:?}");
    assert!(silo_tests::instance_pids(&d.state).is_empty());
}

/// Every dnsmasq among a helper's descendants.
fn dnsmasq_under(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in silo_tests::children_of(p) {
            if silo_tests::comm(c) == "dnsmasq" {
                out.push(c);
            }
            todo.push(c);
        }
    }
    out
}

#[test]
fn net_refuses_public_subnets_gateways_and_host_names() {
    let d = Dirs::new("hnetrules");
    let mut h = Helper::spawn("silo-net", &d.state, &d.policy, true, &[]);
    let pid = h.child.id();
    let rt = rt();
    let c = rt.block_on(async { NetClient::new(Config::default(), h.transport()).spawn() });
    // A default route through a gateway no connected subnet holds, as an uplink would have,
    // and a multipath route: each next hop's gateway is used too.
    let lo_up: &[&str] = &["ip", "link", "set", "lo", "up"];
    let multipath: &[&str] = &[
        "ip",
        "route",
        "add",
        "172.20.0.0/16",
        "nexthop",
        "via",
        "192.168.79.1",
        "dev",
        "uplink0",
        "onlink",
        "nexthop",
        "via",
        "192.168.79.2",
        "dev",
        "uplink0",
        "onlink",
    ];
    let cmds = std::iter::once(lo_up)
        .chain(silo_tests::UPLINK_WITH_DEFAULT_ROUTE.iter().copied())
        .chain(std::iter::once(multipath));
    for cmd in cmds {
        let o = in_netns(pid, cmd);
        assert!(
            o.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let v6 = |name: &str, cidr: &str| {
        let mut s = bridge(name, None, None);
        s.ipv6 = Some(cidr.parse().expect("cidr"));
        s
    };
    // Well-formed requests silod's types can build, each breaking one rule.
    let cases = [
        (
            bridge("silohpub0", Some("8.8.8.1/8"), None),
            "network_ranges",
        ),
        (
            bridge("silohpub0", Some("9.9.9.1/8"), None),
            "network_ranges",
        ),
        (
            bridge("silohpub0", Some("1.1.1.2/8"), None),
            "network_ranges",
        ),
        (v6("silohpub0", "2001:4860::1/32"), "network_ranges"),
        (
            bridge("silohgw0", Some("192.168.77.5/24"), None),
            "gateway 192.168.77.1",
        ),
        (
            bridge("silohgw0", Some("192.168.79.5/24"), None),
            "of the host route 172.20.0.0/16",
        ),
        (
            bridge("docker0", Some("10.93.0.1/24"), None),
            "must start with \"silo\"",
        ),
        (
            bridge("eth1", Some("10.93.0.1/24"), None),
            "must start with \"silo\"",
        ),
        (
            bridge("wlan0", Some("10.93.0.1/24"), None),
            "must start with \"silo\"",
        ),
        (
            bridge("enp0s99", Some("10.93.0.1/24"), None),
            "must start with \"silo\"",
        ),
    ];
    rt.block_on(async {
        for (spec, why) in cases {
            let what = format!("{} {:?} {:?}", spec.name, spec.ipv4, spec.ipv6);
            let r = c.ensure_bridge(ctx(), spec).await.expect("rpc");
            match r {
                Err(HelperError::Invalid { .. }) => {
                    let msg = r.unwrap_err().to_string();
                    assert!(msg.contains(why), "{what}: {msg}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // The host end of a nic cannot take a host interface's name either (checked before
        // the instance is even looked for).
        let nic = silo_proto::net::NicSpec {
            name: IfName::new("eth0").expect("n"),
            hwaddr: None,
            mtu: None,
            kind: silo_proto::net::NicKind::Bridged {
                bridge: IfName::new("silohok0").expect("n"),
                host_name: IfName::new("eth1").expect("n"),
            },
            vlan: None,
            limits: Default::default(),
            filter: None,
        };
        let r = c
            .attach_nic(ctx(), InstanceName::new("ghost").expect("n"), nic)
            .await
            .expect("rpc");
        assert!(
            matches!(&r, Err(HelperError::Invalid { .. }))
                && r.as_ref().unwrap_err().to_string().contains("host_name"),
            "{r:?}"
        );
        // Still serving, and a private subnet beside the gateway is fine.
        let ok = c
            .ensure_bridge(ctx(), bridge("silohok0", Some("192.168.78.1/24"), None))
            .await
            .expect("rpc")
            .expect("a private subnet");
        assert_eq!(ok.name.as_str(), "silohok0");
        c.delete_bridge(ctx(), ok.name)
            .await
            .expect("rpc")
            .expect("delete");
    });
    let links = String::from_utf8_lossy(&in_netns(pid, &["ip", "-br", "link"]).stdout).into_owned();
    for name in [
        "silohpub0",
        "silohgw0",
        "docker0",
        "eth1",
        "wlan0",
        "enp0s99",
        "silohok0",
    ] {
        assert!(
            !links
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} left behind: {links}"
        );
    }
    let rules =
        String::from_utf8_lossy(&in_netns(pid, &["nft", "list", "ruleset"]).stdout).into_owned();
    assert!(
        !rules.contains("silohpub0") && !rules.contains("docker0"),
        "{rules}"
    );
    assert!(dnsmasq_under(pid).is_empty(), "no dnsmasq remains");
    drop(c);
}
