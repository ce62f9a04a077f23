//! Migration figures (issue 16): the debian instance with two snapshots copied between hosts
//! by the stock `lxc` client, and `--refresh` after one file changed.
//! - silo to silo: two silods in two network namespaces joined by a veth (`link_netns`);
//! - LXD to LXD: two LXD 5.0.2 daemons on the loopback of one namespace (the reference);
//! - LXD to silo: LXD in silod's namespace.
//!
//! - LXD to LXD on btrfs, the reference for the line above;
//! - silo to silo on btrfs: the same two silods with btrfs loop pools, so the volumes travel
//!   as btrfs send streams (a `--refresh` still goes by rsync).
//!
//! The other pools are `dir` pools. Each figure is the median of three copies. Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench migration`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use silo_tests::lxc_client::Lxc;
use silo_tests::lxd::{TestLxd, TRUST_PASSWORD};
use silo_tests::{link_netns, show, TestDaemon};

const PW: &str = "bench-pw";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed(lxc: &Lxc, args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = lxc.run(args);
    let d = t.elapsed();
    assert!(o.status.success(), "lxc {}: {}", args.join(" "), show(&o));
    d
}

/// Writes a 1 MiB file whose contents (and size) depend on `v`.
fn change(root: &Path, v: usize) {
    let data: Vec<u8> = (0..(1 << 20) + v).map(|i| (i * 31 + v) as u8).collect();
    std::fs::write(root.join("root/bench-file"), data).expect("write");
}

/// The copy figures for `src:d1` → `dst:` (three copies named c0..c2), then `--refresh` of
/// c0 after one file changed on the source (three times).
fn figures(label: &str, lxc: &Lxc, src: &str, dst: &str, src_root: &Path, extra: &[&str]) {
    let copies: Vec<Duration> = (0..3)
        .map(|i| {
            let (from, to) = (format!("{src}:d1"), format!("{dst}:c{i}"));
            let mut args = vec!["copy", from.as_str(), to.as_str()];
            args.extend_from_slice(extra);
            timed(lxc, &args)
        })
        .collect();
    let refreshes: Vec<Duration> = (0..3)
        .map(|i| {
            change(src_root, i + 10);
            timed(
                lxc,
                &[
                    "copy",
                    &format!("{src}:d1"),
                    &format!("{dst}:c0"),
                    "--refresh",
                ],
            )
        })
        .collect();
    println!(
        "{label:<19} copy (debian, 2 snapshots) {:>8.0} ms   --refresh after one file changed {:>7.0} ms",
        ms(median(copies)),
        ms(median(refreshes))
    );
}

fn silo_instance(d: &TestDaemon, pool: &str) -> std::path::PathBuf {
    d.import(&silo_tests::debian_image(), "debian");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "d1", "source": {"type": "image", "alias": "debian"},
                    "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}}),
        ),
    );
    let root = silo_tests::trees::silo_rootfs(&d.dir, pool, "d1");
    for (i, s) in ["snap0", "snap1"].iter().enumerate() {
        change(&root, i);
        d.api_ok(
            "POST",
            "/1.0/instances/d1/snapshots",
            Some(json!({"name": s})),
        );
    }
    change(&root, 2);
    root
}

fn lxd_instance(l: &TestLxd, pool: &str) -> std::path::PathBuf {
    let img = silo_tests::debian_image();
    let ok = |args: &[&str]| {
        let o = l.lxc(args);
        assert!(o.status.success(), "lxc {}: {}", args.join(" "), show(&o));
    };
    ok(&[
        "image",
        "import",
        &img.to_string_lossy(),
        "--alias",
        "debian",
    ]);
    if pool != "default" {
        ok(&["storage", "create", pool, "btrfs", "size=4GiB"]);
    }
    ok(&["init", "debian", "d1", "-s", pool]);
    let root = silo_tests::trees::lxd_rootfs(&l.dir, pool, "d1");
    for (i, s) in ["snap0", "snap1"].iter().enumerate() {
        change(&root, i);
        ok(&["snapshot", "d1", s]);
    }
    change(&root, 2);
    root
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    {
        let a = TestDaemon::start("bm-mig-a");
        let b = TestDaemon::start("bm-mig-b");
        link_netns(&a, &b);
        a.listen_https("198.18.0.1:8443", PW);
        b.listen_https("198.18.0.2:8443", PW);
        let lxc = Lxc::new("bm-mig-ss", &b.netns);
        lxc.add_remote("a", "https://198.18.0.1:8443", PW);
        lxc.add_remote("b", "https://198.18.0.2:8443", PW);
        let root = silo_instance(&a, "default");
        figures("silo -> silo", &lxc, "a", "b", &root, &[]);
    }
    {
        let a = TestDaemon::start("bm-mig-ba");
        let b = TestDaemon::start("bm-mig-bb");
        link_netns(&a, &b);
        for d in [&a, &b] {
            d.api_ok(
                "POST",
                "/1.0/storage-pools",
                Some(json!({"name": "bt", "driver": "btrfs", "config": {"size": "4GiB"}})),
            );
            // Copies land on the default profile's pool: make it the btrfs one.
            d.api_ok(
                "PATCH",
                "/1.0/profiles/default",
                Some(json!({"devices": {"root": {"type": "disk", "path": "/", "pool": "bt"}}})),
            );
        }
        a.listen_https("198.18.0.1:8443", PW);
        b.listen_https("198.18.0.2:8443", PW);
        let lxc = Lxc::new("bm-mig-bt", &b.netns);
        lxc.add_remote("a", "https://198.18.0.1:8443", PW);
        lxc.add_remote("b", "https://198.18.0.2:8443", PW);
        let root = silo_instance(&a, "bt");
        figures("silo -> silo btrfs", &lxc, "a", "b", &root, &[]);
    }
    {
        let a = TestLxd::start("bm-mig-la");
        let b = TestLxd::start_beside("bm-mig-lb", &a);
        let lxc = Lxc::new("bm-mig-ll", a.netns());
        lxc.add_remote("a", &a.url(), TRUST_PASSWORD);
        lxc.add_remote("b", &b.url(), TRUST_PASSWORD);
        let root = lxd_instance(&a, "default");
        figures("LXD -> LXD", &lxc, "a", "b", &root, &[]);
    }
    {
        let a = TestLxd::start("bm-mig-lba");
        let b = TestLxd::start_beside("bm-mig-lbb", &a);
        let ok = |args: &[&str]| {
            let o = b.lxc(args);
            assert!(o.status.success(), "lxc {}: {}", args.join(" "), show(&o));
        };
        ok(&["storage", "create", "bt", "btrfs", "size=4GiB"]);
        let lxc = Lxc::new("bm-mig-llb", a.netns());
        lxc.add_remote("a", &a.url(), TRUST_PASSWORD);
        lxc.add_remote("b", &b.url(), TRUST_PASSWORD);
        let root = lxd_instance(&a, "bt");
        figures("LXD -> LXD btrfs", &lxc, "a", "b", &root, &["-s", "bt"]);
    }
    {
        let s = TestDaemon::start("bm-mig-s");
        s.listen_https("127.0.0.1:8443", PW);
        let l = TestLxd::start_in_netns_of("bm-mig-l", &s, 8444);
        let lxc = Lxc::new("bm-mig-ls", &s.netns);
        lxc.add_remote("s", "https://127.0.0.1:8443", PW);
        lxc.add_remote("l", "https://127.0.0.1:8444", TRUST_PASSWORD);
        let root = lxd_instance(&l, "default");
        figures("LXD -> silo", &lxc, "l", "s", &root, &[]);
    }
}
