//! Snapshot, copy, publish and backup figures for the debian instance (debootstrap, systemd) on a dir
//! and a btrfs pool. Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench snapshots`

use std::time::{Duration, Instant};

use serde_json::json;
use silo_tests::{debian_image, TestDaemon};

fn ms(d: Duration) -> String {
    format!("{:>9.1} ms", d.as_secs_f64() * 1000.0)
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn run(driver: &str) {
    let d = TestDaemon::start(&format!("bench-snap-{driver}"));
    if driver == "btrfs" {
        let o = d.silo(&[
            "init",
            "--auto",
            "--storage-backend",
            "btrfs",
            "--storage-create-loop",
            "8",
        ]);
        assert!(o.status.success(), "{}", silo_tests::show(&o));
    }
    d.import(&debian_image(), "debian");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "d1", "source": {"type": "image", "alias": "debian"}})),
    );
    let snap = timed(|| {
        d.api_ok(
            "POST",
            "/1.0/instances/d1/snapshots",
            Some(json!({"name": "s1"})),
        );
    });
    let restore = timed(|| {
        d.api_ok("PUT", "/1.0/instances/d1", Some(json!({"restore": "s1"})));
    });
    let copy = timed(|| {
        d.api_ok(
            "POST",
            "/1.0/instances",
            Some(json!({"name": "d2", "source": {"type": "copy", "source": "d1", "instance_only": true}})),
        );
    });
    let mut publish = Vec::new();
    for c in ["gzip", "zstd", "none"] {
        let mut fp = String::new();
        let t = timed(|| {
            let op = d.api_ok(
                "POST",
                "/1.0/images",
                Some(json!({"source": {"type": "instance", "name": "d1"}, "compression_algorithm": c})),
            );
            fp = op["metadata"]["fingerprint"]
                .as_str()
                .unwrap_or("")
                .to_string();
        });
        let size = d.api_ok("GET", &format!("/1.0/images/{fp}"), None)["size"]
            .as_u64()
            .unwrap_or(0);
        d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);
        publish.push((c, t, size));
    }
    let running_snap = {
        d.set_state("d1", "start", false);
        let t = timed(|| {
            d.api_ok(
                "POST",
                "/1.0/instances/d1/snapshots",
                Some(json!({"name": "s2"})),
            );
        });
        d.set_state("d1", "stop", true);
        t
    };
    // Backups of d1 with its two snapshots: `silo export` (make, download, delete) and
    // `silo import` of the file, plain and (btrfs) as send streams.
    let dir = tempfile::tempdir().expect("tmp");
    let mut backups = Vec::new();
    let kinds: &[(&str, bool)] = if driver == "btrfs" {
        &[("plain", false), ("optimized", true)]
    } else {
        &[("plain", false)]
    };
    for (i, (what, optimized)) in kinds.iter().enumerate() {
        let f = dir.path().join(format!("{what}.tar.zst"));
        let fs = f.display().to_string();
        let mut args = vec!["export", "d1", fs.as_str(), "--compression", "zstd"];
        if *optimized {
            args.push("--optimized-storage");
        }
        let export = timed(|| {
            let o = d.silo(&args);
            assert!(o.status.success(), "{}", silo_tests::show(&o));
        });
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        let name = format!("imported{i}");
        let import = timed(|| {
            let o = d.silo(&["import", fs.as_str(), name.as_str()]);
            assert!(o.status.success(), "{}", silo_tests::show(&o));
        });
        backups.push((*what, export, import, size));
    }
    println!("debian instance on a {driver} pool:");
    println!("  snapshot (stopped)                {}", ms(snap));
    println!("  snapshot (running, frozen)        {}", ms(running_snap));
    println!("  restore                           {}", ms(restore));
    println!("  copy (instance only)              {}", ms(copy));
    for (c, t, size) in publish {
        println!(
            "  publish, {c:<5}                    {}  ({:.1} MiB image)",
            ms(t),
            size as f64 / (1 << 20) as f64
        );
    }
    for (what, export, import, size) in backups {
        println!(
            "  backup {what:<9}, 2 snapshots, zstd: export {}  import {}  ({:.1} MiB)",
            ms(export),
            ms(import),
            size as f64 / (1 << 20) as f64
        );
    }
}

fn main() {
    run("dir");
    run("btrfs");
    println!("lvm: not measured: this kernel has no device-mapper, so silo refuses lvm pools here");
}
