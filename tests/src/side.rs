//! The benches' view of a manager under test: silo or LXD 5.0.2, driven by the stock `lxc`
//! client, with the memory of all its processes; and the samples of one figure.

use std::ops::Range;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lxd::TestLxd;
use crate::TestDaemon;

/// One manager under test, driven by the stock client.
#[derive(Debug)]
pub enum Side {
    /// silod, its helpers and monitors.
    Silo(TestDaemon),
    /// LXD 5.0.2 and its monitors.
    Lxd(TestLxd),
}

impl Side {
    pub fn name(&self) -> &'static str {
        match self {
            Side::Silo(_) => "silo",
            Side::Lxd(_) => "LXD 5.0.2",
        }
    }

    pub fn lxc_out(&self, args: &[&str]) -> Output {
        match self {
            Side::Silo(d) => d.lxc(args),
            Side::Lxd(l) => l.lxc(args),
        }
    }

    /// Runs `lxc ARGS`, which must succeed; returns how long it took.
    pub fn lxc(&self, args: &[&str]) -> Duration {
        let t = Instant::now();
        let o = self.lxc_out(args);
        let took = t.elapsed();
        assert!(
            o.status.success(),
            "[{}] lxc {args:?}: {}",
            self.name(),
            crate::show(&o)
        );
        took
    }

    /// The name the benches give their `i`th instance.
    pub fn instance_name(i: usize) -> String {
        format!("s{i:04}")
    }

    /// The daemon's unix socket.
    pub fn socket(&self) -> PathBuf {
        match self {
            Side::Silo(d) => d.socket(),
            Side::Lxd(l) => l.dir.join("unix.socket"),
        }
    }

    /// The daemon's pid (silod's or LXD's).
    pub fn daemon_pid(&self) -> u32 {
        match self {
            Side::Silo(d) => d.pid(),
            Side::Lxd(l) => l.pid().unwrap_or(0),
        }
    }

    /// Launches the instances numbered `range` from `image` with the stock client, `workers`
    /// at a time. Returns each launch's duration, or the first failure (after which no more
    /// are started).
    pub fn launch_many(
        &self,
        image: &str,
        range: Range<usize>,
        workers: usize,
    ) -> Result<Figure, String> {
        let next = AtomicUsize::new(range.start);
        let failed: Mutex<Option<String>> = Mutex::new(None);
        let took = Mutex::new(Figure::default());
        std::thread::scope(|sc| {
            for _ in 0..workers {
                sc.spawn(|| loop {
                    if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= range.end {
                        return;
                    }
                    let name = Self::instance_name(i);
                    let t = Instant::now();
                    let o = self.lxc_out(&["launch", image, &name]);
                    if o.status.success() {
                        if let Ok(mut f) = took.lock() {
                            f.push_ms(t.elapsed());
                        }
                    } else if let Ok(mut f) = failed.lock() {
                        f.get_or_insert_with(|| {
                            format!("launch of {name} failed: {}", crate::show(&o))
                        });
                    }
                });
            }
        });
        match failed.into_inner() {
            Ok(None) => took.into_inner().map_err(|_| "poisoned".into()),
            Ok(Some(e)) => Err(e),
            Err(_) => Err("a launch worker panicked".into()),
        }
    }

    /// The pids of every process of the manager: the daemon and whatever names its
    /// directory (helpers, monitors, dnsmasq; LXD's `[lxc monitor]`s and dnsmasq).
    pub fn pids(&self) -> Vec<u32> {
        let (dir, main) = match self {
            Side::Silo(d) => (&d.dir, d.pid()),
            Side::Lxd(l) => (&l.dir, l.pid().unwrap_or(0)),
        };
        let mut out = vec![main];
        out.extend(
            crate::procs_naming(dir)
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| *p != main),
        );
        out
    }

    /// RSS of all the manager's processes, in MB: what the table measures. Pages
    /// shared between processes (a forked monitor's binary and libc) count once per process.
    pub fn rss_mb(&self) -> f64 {
        self.sum_kib("status", "VmRSS:")
    }

    /// PSS of all the manager's processes, in MB: each shared page divided among those that
    /// share it, so the sum is what the manager costs the host.
    pub fn pss_mb(&self) -> f64 {
        self.sum_kib("smaps_rollup", "Pss:")
    }

    fn sum_kib(&self, file: &str, key: &str) -> f64 {
        let kib: u64 = self
            .pids()
            .iter()
            .filter_map(|p| kib_of(*p, file, key))
            .sum();
        kib as f64 / 1024.0
    }
}

/// The RSS of one process, in MB (0 once it is gone).
pub fn rss_mb_of(pid: u32) -> f64 {
    kib_of(pid, "status", "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

/// A `KEY  N kB` line of `/proc/PID/FILE`.
fn kib_of(pid: u32, file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples of one figure.
#[derive(Debug, Default)]
pub struct Figure(pub Vec<f64>);

impl Figure {
    /// Adds a duration, in milliseconds.
    pub fn push_ms(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e3);
    }

    /// `median unit (min–max, n=…)`, or `—` without samples; `s` shows milliseconds as seconds.
    pub fn show(&self, unit: &str) -> String {
        if self.0.is_empty() {
            return "—".into();
        }
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let med = v[v.len() / 2];
        let (lo, hi) = (v[0], v[v.len() - 1]);
        let f = |x: f64| {
            if unit == "s" {
                format!("{:.2}", x / 1e3)
            } else {
                format!("{x:.0}")
            }
        };
        format!("{} {unit} ({}–{}, n={})", f(med), f(lo), f(hi), v.len())
    }

    /// The median sample.
    pub fn median(&self) -> Option<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
}
