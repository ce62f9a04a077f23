//! Runtime figures: launch (create + start) of busybox on dir and btrfs, debian until systemd
//! is up, `exec -- true`, `list` with 1, 50 and 200 running instances, and the host memory
//! silo's own processes take, idle and per running instance. Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench runtime`
//! The stock `lxc` client drives silod (as the LXD figures it is compared with were taken).

use std::process::Command;
use std::time::{Duration, Instant};

use silo_tests::{procs_for, TestDaemon};

/// What the figures are taken against: silod (a TestDaemon) or LXD 5.0.2 from Debian.
struct Target {
    name: &'static str,
    silo: Option<TestDaemon>,
    lxd: Option<Lxd>,
}

/// LXD started by this bench with its own LXD_DIR and a preseed (no network, a dir and a
/// btrfs pool): never `lxd init --auto`, whose subnet probing pings outside addresses.
struct Lxd {
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Drop for Lxd {
    fn drop(&mut self) {
        let _ = Command::new("lxd")
            .args(["shutdown", "--timeout", "30"])
            .env("LXD_DIR", &self.dir)
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep ' {}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l",
                self.dir.display()
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lxd {
    fn start() -> Option<Lxd> {
        if Command::new("lxd").arg("--version").output().is_err() {
            println!("lxd is not installed: no LXD column (apt-get install lxd)");
            return None;
        }
        let dir = std::path::PathBuf::from("/tmp/silo-bench-lxd");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let child = Command::new("lxd")
            .args(["--group", "root", "--logfile"])
            .arg(dir.join("lxd.log"))
            .env("LXD_DIR", &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let l = Lxd { dir, child };
        let ok = Command::new("lxd")
            .args(["waitready", "--timeout", "60"])
            .env("LXD_DIR", &l.dir)
            .status()
            .ok()?
            .success();
        if !ok {
            println!("lxd did not start");
            return None;
        }
        let preseed = "config: {}\nnetworks: []\nstorage_pools:\n- name: default\n  driver: dir\n- name: bt\n  driver: btrfs\n  config:\n    size: 8GiB\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n";
        let mut c = Command::new("lxd")
            .args(["init", "--preseed"])
            .env("LXD_DIR", &l.dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        std::io::Write::write_all(c.stdin.as_mut()?, preseed.as_bytes()).ok()?;
        drop(c.stdin.take());
        if !c.wait().ok()?.success() {
            println!("lxd init --preseed failed");
            return None;
        }
        Some(l)
    }
}

/// lxd itself and its per-container `[lxc monitor]` processes.
fn lxd_pids(l: &Lxd) -> Vec<u32> {
    let needle = l.dir.display().to_string();
    let mut out = vec![l.child.id()];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("[lxc monitor]") && cmd.contains(&needle) {
            out.push(p);
        }
    }
    out
}

impl Target {
    fn lxc(&self, args: &[&str]) -> std::process::Output {
        match (&self.silo, &self.lxd) {
            (Some(d), _) => d.lxc(args),
            (_, Some(l)) => Command::new("lxc")
                .args(args)
                .env("LXD_DIR", &l.dir)
                .env("LXD_CONF", l.dir.join("lxc-conf"))
                .stdin(std::process::Stdio::null())
                .output()
                .expect("lxc"),
            _ => unreachable!("a target is silo or LXD"),
        }
    }

    /// PSS of the manager's own processes (silod, helpers, monitors; or lxd and its
    /// `[lxc monitor]` processes).
    fn pss_kib(&self) -> u64 {
        let pids: Vec<u32> = match (&self.silo, &self.lxd) {
            (Some(d), _) => procs_for(&d.dir).into_iter().map(|(p, _)| p).collect(),
            (_, Some(l)) => lxd_pids(l),
            _ => vec![],
        };
        pids.iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
            .filter_map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Pss:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .sum()
    }
}

fn lxc(d: &Target, args: &[&str]) -> Duration {
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

fn list_times(d: &Target, label: &str) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..5 {
        a.push(lxc(d, &["list", "--format", "csv"]));
        if let Some(s) = &d.silo {
            let t = Instant::now();
            let o = s.silo(&["list", "--format", "csv"]);
            assert!(o.status.success());
            b.push(t.elapsed());
        }
    }
    let own = if b.is_empty() {
        String::new()
    } else {
        format!(" / silo list {}", ms(median(b)))
    };
    println!(
        "[{}] list with {label} running: lxc list {}{own} (median of 5)",
        d.name,
        ms(median(a))
    );
}

fn until_systemd_up(d: &Target, name: &str) {
    silo_tests::until_systemd_up(name, |cmd| {
        let mut args = vec!["exec", name, "--"];
        args.extend_from_slice(cmd);
        String::from_utf8_lossy(&d.lxc(&args).stdout).into_owned()
    });
}

fn main() {
    silo_tests::require_root();
    let bb = silo_tests::busybox_image(false).remove(0);
    let deb = silo_tests::debian_image();
    let only = std::env::var("SILO_BENCH_ONLY").unwrap_or_default();
    if only != "lxd" {
        let t = Target {
            name: "silo",
            silo: Some(TestDaemon::start("bench-rt")),
            lxd: None,
        };
        run(&t, &bb, &deb);
    }
    if only != "silo" {
        if let Some(l) = Lxd::start() {
            let t = Target {
                name: "lxd",
                silo: None,
                lxd: Some(l),
            };
            run(&t, &bb, &deb);
        }
    }
}

fn run(d: &Target, bb: &std::path::Path, deb: &std::path::Path) {
    let n = d.name;
    let o = d.lxc(&["image", "import", &bb.to_string_lossy(), "--alias", "bb"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let idle = d.pss_kib();
    println!("[{n}] manager processes idle: {idle} KiB PSS");
    lxc(d, &["launch", "bb", "warm"]);
    let mut t = Vec::new();
    for i in 0..20 {
        t.push(lxc(d, &["launch", "bb", &format!("l{i}")]));
    }
    println!(
        "[{n}] busybox launch on dir (lxc launch): median {} (n=20)",
        ms(median(t))
    );
    let mut t = Vec::new();
    for _ in 0..20 {
        t.push(lxc(d, &["exec", "l0", "--", "true"]));
    }
    println!("[{n}] lxc exec l0 -- true: median {} (n=20)", ms(median(t)));
    if let Some(s) = &d.silo {
        let mut t = Vec::new();
        for _ in 0..20 {
            let st = Instant::now();
            let o = s.silo(&["exec", "l0", "--", "true"]);
            if !o.status.success() {
                println!(
                    "[{n}] silo exec failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                break;
            }
            t.push(st.elapsed());
        }
        if !t.is_empty() {
            println!(
                "[{n}] silo exec l0 -- true: median {} (n={})",
                ms(median(t.clone())),
                t.len()
            );
        }
    }
    for i in 1..20 {
        lxc(d, &["delete", "-f", &format!("l{i}")]);
    }
    lxc(d, &["delete", "-f", "warm"]);
    list_times(d, "1");
    for i in 1..50 {
        lxc(d, &["launch", "bb", &format!("l{i}")]);
    }
    list_times(d, "50");
    let fifty = d.pss_kib();
    println!(
        "[{n}] manager processes with 50 running: {fifty} KiB PSS ({:.0} KiB per instance over idle)",
        (fifty.saturating_sub(idle)) as f64 / 50.0
    );
    for i in 50..200 {
        lxc(d, &["launch", "bb", &format!("l{i}")]);
    }
    list_times(d, "200");
    let two = d.pss_kib();
    println!(
        "[{n}] manager processes with 200 running: {two} KiB PSS ({:.0} KiB per instance over idle)",
        (two.saturating_sub(idle)) as f64 / 200.0
    );
    let t = Instant::now();
    for i in 0..200 {
        let _ = d.lxc(&["delete", "-f", &format!("l{i}")]);
    }
    println!(
        "[{n}] delete -f of 200 running: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if d.silo.is_some() {
        lxc(d, &["storage", "create", "bt", "btrfs", "size=8GiB"]);
    }
    lxc(d, &["launch", "bb", "bwarm", "-s", "bt"]);
    let mut t = Vec::new();
    for i in 0..10 {
        t.push(lxc(d, &["launch", "bb", &format!("bt{i}"), "-s", "bt"]));
    }
    println!(
        "[{n}] busybox launch on btrfs (lxc launch): median {} (n=10)",
        ms(median(t))
    );
    for i in 0..10 {
        lxc(d, &["delete", "-f", &format!("bt{i}")]);
    }
    lxc(d, &["delete", "-f", "bwarm"]);
    let o = d.lxc(&["image", "import", &deb.to_string_lossy(), "--alias", "deb"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (pool, label) in [("default", "dir"), ("bt", "btrfs")] {
        lxc(d, &["launch", "deb", &format!("dwarm-{label}"), "-s", pool]);
        lxc(d, &["delete", "-f", &format!("dwarm-{label}")]);
        let mut t = Vec::new();
        for i in 0..3 {
            let name = format!("d{label}{i}");
            let s = Instant::now();
            lxc(d, &["launch", "deb", &name, "-s", pool]);
            until_systemd_up(d, &name);
            t.push(s.elapsed());
            lxc(d, &["delete", "-f", &name]);
        }
        println!(
            "[{n}] debian launch until systemd is up on {label}: median {} (n=3)",
            ms(median(t))
        );
    }
    let _ = Command::new("sync").status();
}
