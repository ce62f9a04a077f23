//! Image and instance-record figures: import speed, first create (unpack + copy) and later
//! creates (copy only) on the dir pool. Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench images`
//! (the debian image is built by scripts/build-image-debian if not cached).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use silo_tests::TestDaemon;

fn silo(d: &TestDaemon, args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = d.silo(args);
    assert!(
        o.status.success(),
        "silo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t.elapsed()
}

fn debian_image() -> Option<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-image-debian");
    let out = Command::new(&script).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "debian image unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(PathBuf::from)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    silo_tests::require_root();
    let d = TestDaemon::start("bench-images");
    let bb = silo_tests::busybox_image(false);
    let size = std::fs::metadata(&bb[0]).map(|m| m.len()).unwrap_or(0);
    let t = silo(
        &d,
        &["image", "import", &bb[0].to_string_lossy(), "--alias", "bb"],
    );
    println!(
        "import busybox ({:.1} MB): {:.0} ms",
        size as f64 / 1e6,
        t.as_secs_f64() * 1e3
    );
    let first = silo(&d, &["init", "bb", "b0"]);
    println!(
        "create busybox on dir, first (unpack + copy): {:.0} ms",
        first.as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    for i in 1..=10 {
        times.push(silo(&d, &["init", "bb", &format!("b{i}")]));
    }
    println!(
        "create busybox on dir, cached image (copy only): median {:.0} ms (n=10)",
        median(times).as_secs_f64() * 1e3
    );
    if let Some(deb) = debian_image() {
        let size = std::fs::metadata(&deb).map(|m| m.len()).unwrap_or(0);
        let t = silo(
            &d,
            &[
                "image",
                "import",
                &deb.to_string_lossy(),
                "--alias",
                "debian",
            ],
        );
        println!(
            "import debian ({:.1} MB xz): {:.0} ms, {:.1} MB/s",
            size as f64 / 1e6,
            t.as_secs_f64() * 1e3,
            size as f64 / 1e6 / t.as_secs_f64()
        );
        let first = silo(&d, &["init", "debian", "d0"]);
        println!(
            "create debian on dir, first (unpack + copy): {:.0} ms",
            first.as_secs_f64() * 1e3
        );
        let mut times = Vec::new();
        for i in 1..=5 {
            times.push(silo(&d, &["init", "debian", &format!("d{i}")]));
        }
        println!(
            "create debian on dir, cached image (copy only): median {:.0} ms (n=5)",
            median(times).as_secs_f64() * 1e3
        );
    }
    // btrfs on a loop file: the image unpacked once into a subvolume, instances snapshots.
    let t = Instant::now();
    silo(&d, &["storage", "create", "bt", "btrfs", "size=4GiB"]);
    println!(
        "create btrfs pool (4 GiB loop file, mkfs, mount): {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let first = silo(&d, &["init", "bb", "bt0", "-s", "bt"]);
    println!(
        "create busybox on btrfs, first (unpack + snapshot): {:.0} ms",
        first.as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    for i in 1..=10 {
        times.push(silo(&d, &["init", "bb", &format!("bt{i}"), "-s", "bt"]));
    }
    println!(
        "create busybox on btrfs, cached image (snapshot): median {:.0} ms (n=10)",
        median(times).as_secs_f64() * 1e3
    );
    if d.silo(&["image", "info", "debian"]).status.success() {
        let first = silo(&d, &["init", "debian", "dbt0", "-s", "bt"]);
        println!(
            "create debian on btrfs, first (unpack + snapshot): {:.0} ms",
            first.as_secs_f64() * 1e3
        );
        let mut times = Vec::new();
        for i in 1..=5 {
            times.push(silo(
                &d,
                &["init", "debian", &format!("dbt{i}"), "-s", "bt"],
            ));
        }
        println!(
            "create debian on btrfs, cached image (snapshot): median {:.0} ms (n=5)",
            median(times).as_secs_f64() * 1e3
        );
    }
    let t = Instant::now();
    let o = d.silo(&["list", "--format", "csv"]);
    assert!(o.status.success());
    println!(
        "silo list with {} instances: {:.0} ms",
        String::from_utf8_lossy(&o.stdout).lines().count(),
        t.elapsed().as_secs_f64() * 1e3
    );
}
