//! Runtime figures: launch (create + start) of busybox on dir and btrfs, debian until systemd
//! is up, `exec -- true`, `list` with 1, 50 and 200 running instances, and the host memory
//! silo's own processes take, idle and per running instance. Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench runtime`
//! The stock `lxc` client drives silod (as the LXD figures it is compared with were taken).

use std::process::Command;
use std::time::{Duration, Instant};

use silo_tests::{procs_for, TestDaemon};

fn lxc(d: &TestDaemon, args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = d.lxc(args);
    assert!(
        o.status.success(),
        "lxc {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Proportional set size (shared pages split among sharers) of every silo process: silod,
/// the helpers and their forked children, and the instances' monitors.
fn silo_pss_kib(d: &TestDaemon) -> u64 {
    procs_for(&d.dir)
        .iter()
        .filter_map(|(p, _)| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

fn list_times(d: &TestDaemon, label: &str) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..5 {
        a.push(lxc(d, &["list", "--format", "csv"]));
        let t = Instant::now();
        let o = d.silo(&["list", "--format", "csv"]);
        assert!(o.status.success());
        b.push(t.elapsed());
    }
    println!("list with {label} running: lxc list {} / silo list {} (median of 5)", ms(median(a)), ms(median(b)));
}

fn until_systemd_up(d: &TestDaemon, name: &str) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        let o = d.lxc(&["exec", name, "--", "systemctl", "is-system-running", "--wait"]);
        let s = String::from_utf8_lossy(&o.stdout);
        if s.contains("running") || s.contains("degraded") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name}: systemd did not come up");
}

fn main() {
    silo_tests::require_root();
    let d = TestDaemon::start("bench-rt");
    d.import(&silo_tests::busybox_image(false)[0], "bb");
    let idle = silo_pss_kib(&d);
    println!("silo processes idle: {} KiB PSS", idle);
    lxc(&d, &["launch", "bb", "warm"]);
    // busybox launch on dir (image already unpacked in the pool).
    let mut t = Vec::new();
    for i in 0..20 {
        t.push(lxc(&d, &["launch", "bb", &format!("l{i}")]));
    }
    println!("busybox launch on dir (lxc launch): median {} (n=20)", ms(median(t)));
    // exec round trips.
    let mut t = Vec::new();
    for _ in 0..20 {
        t.push(lxc(&d, &["exec", "l0", "--", "true"]));
    }
    println!("lxc exec l0 -- true: median {} (n=20)", ms(median(t)));
    let mut t = Vec::new();
    for _ in 0..20 {
        let s = Instant::now();
        let (code, _, _) = d.exec("l0", &["true"]);
        assert_eq!(code, 0);
        t.push(s.elapsed());
    }
    println!("API exec true (record-output, wait): median {} (n=20)", ms(median(t)));
    for i in 1..20 {
        lxc(&d, &["delete", "-f", &format!("l{i}")]);
    }
    lxc(&d, &["delete", "-f", "warm"]);
    list_times(&d, "1");
    let one = silo_pss_kib(&d);
    for i in 1..50 {
        d.launch("bb", &format!("l{i}"));
    }
    list_times(&d, "50");
    let fifty = silo_pss_kib(&d);
    println!(
        "silo processes with 50 running: {} KiB PSS ({:.0} KiB per instance over idle)",
        fifty,
        (fifty.saturating_sub(idle)) as f64 / 50.0
    );
    for i in 50..200 {
        d.launch("bb", &format!("l{i}"));
    }
    list_times(&d, "200");
    let two = silo_pss_kib(&d);
    println!(
        "silo processes with 200 running: {} KiB PSS ({:.0} KiB per instance over idle; 1 running: {} KiB)",
        two,
        (two.saturating_sub(idle)) as f64 / 200.0,
        one
    );
    let monitors: Vec<u64> = procs_for(&d.dir)
        .iter()
        .filter_map(|(p, _)| {
            let st = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            // Monitors are the silo-priv forks that hold no capabilities at all.
            (st.contains("Name:\tsilo-priv") && st.contains("CapEff:\t0000000000000000")).then_some(())?;
            let r = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok()?;
            r.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .collect();
    if !monitors.is_empty() {
        println!(
            "monitor PSS: mean {} KiB over {} monitors",
            monitors.iter().sum::<u64>() / monitors.len() as u64,
            monitors.len()
        );
    }
    let t = Instant::now();
    for i in 0..200 {
        let _ = d.lxc(&["stop", "-f", &format!("l{i}")]);
    }
    println!("stop -f of 200: {:.1} s", t.elapsed().as_secs_f64());
    // btrfs.
    d.api_ok(
        "POST",
        "/1.0/storage-pools",
        Some(serde_json::json!({"name": "bt", "driver": "btrfs", "config": {"size": "8GiB"}})),
    );
    lxc(&d, &["launch", "bb", "bwarm", "-s", "bt"]);
    let mut t = Vec::new();
    for i in 0..10 {
        t.push(lxc(&d, &["launch", "bb", &format!("bt{i}"), "-s", "bt"]));
    }
    println!("busybox launch on btrfs (lxc launch): median {} (n=10)", ms(median(t)));
    // debian until systemd is up, on dir and btrfs.
    let deb = silo_tests::debian_image();
    d.import(&deb, "deb");
    for (pool, label) in [("default", "dir"), ("bt", "btrfs")] {
        lxc(&d, &["launch", "deb", &format!("dwarm-{label}"), "-s", pool]);
        lxc(&d, &["delete", "-f", &format!("dwarm-{label}")]);
        let mut t = Vec::new();
        for i in 0..3 {
            let name = format!("d{label}{i}");
            let s = Instant::now();
            lxc(&d, &["launch", "deb", &name, "-s", pool]);
            until_systemd_up(&d, &name);
            t.push(s.elapsed());
            lxc(&d, &["delete", "-f", &name]);
        }
        println!("debian launch until systemd is up on {label}: median {} (n=3)", ms(median(t)));
    }
    let _ = Command::new("sync").status();
}
