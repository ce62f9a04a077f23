//! Scale: busybox containers with eth0 on a bridge, until 1000 run or something breaks, on
//! silo and on LXD 5.0.2; the scale curve of issue 20.
//!
//! At 10, 100, 500 and 1000 running it measures, on a settled machine: the RSS and PSS of all
//! the manager's processes, `lxc list` and `silo list`, `lxc exec c -- true`, and the launch
//! of the next three instances, each alone. At the end, `lxc delete --force` of them all in one command. Between
//! the checkpoints the instances are launched four at a time, with the stock client.
//!
//! Both managers get a /22 bridge (1021 DHCP addresses), a dir pool and eth0 in the default
//! profile; they run one after the other, each in a network namespace of its own.
//!
//! Run as root: `cargo build --release --workspace && cargo bench -p silo-tests --bench scale`
//! `SILO_SCALE_MAX` (default 1000) is the last checkpoint; `SILO_SCALE_SIDES` (default
//! `silo,lxd`) which managers run; `SILO_SCALE_LXD_MAX` a lower ceiling for LXD.

use std::time::{Duration, Instant};

use silo_tests::lxd::TestLxd;
use silo_tests::side::{Figure, Side};
use silo_tests::TestDaemon;

const CHECKPOINTS: [usize; 4] = [10, 100, 500, 1000];
/// Launches in flight while filling up to the next checkpoint.
const WORKERS: usize = 4;
/// The pause before each measurement, so the last launches' boots are over.
const SETTLE: Duration = Duration::from_secs(3);

/// The figures at one count of running instances.
struct Point {
    running: usize,
    launch: Figure,
    lxc_list: Figure,
    silo_list: Figure,
    exec: Figure,
    rss: f64,
    pss: f64,
}

/// What one manager did.
struct Run {
    name: &'static str,
    points: Vec<Point>,
    /// `lxc delete --force` of all, and how many.
    delete_all: Option<(usize, Duration)>,
    /// What stopped it before the last checkpoint.
    broke: Option<String>,
    /// Wall clock of filling, per instance, over the whole run.
    fill: Figure,
}

fn timed(s: &Side, args: &[&str], fig: &mut Figure) -> Result<(), String> {
    let t = Instant::now();
    let o = s.lxc_out(args);
    if !o.status.success() {
        return Err(format!("lxc {args:?}: {}", silo_tests::show(&o)));
    }
    fig.push_ms(t.elapsed());
    Ok(())
}

fn run(s: &Side, max: usize) -> Run {
    let mut r = Run {
        name: s.name(),
        points: vec![],
        delete_all: None,
        broke: None,
        fill: Figure::default(),
    };
    let mut running = 0;
    for &at in CHECKPOINTS.iter().filter(|&&c| c <= max) {
        eprintln!("[{}] filling to {at}", s.name());
        match s.launch_many("bb", running..at, WORKERS) {
            Ok(f) => r.fill.0.extend(f.0),
            Err(e) => {
                r.broke = Some(e);
                break;
            }
        }
        running = at;
        std::thread::sleep(SETTLE);
        let mut p = Point {
            running: at,
            launch: Figure::default(),
            lxc_list: Figure::default(),
            silo_list: Figure::default(),
            exec: Figure::default(),
            rss: s.rss_mb(),
            pss: s.pss_mb(),
        };
        let step = (|| -> Result<(), String> {
            for _ in 0..3 {
                timed(s, &["list"], &mut p.lxc_list)?;
                timed(
                    s,
                    &["exec", &Side::instance_name(0), "--", "true"],
                    &mut p.exec,
                )?;
                if let Side::Silo(d) = s {
                    let t = Instant::now();
                    let o = d.silo(&["list"]);
                    if !o.status.success() {
                        return Err(format!("silo list: {}", silo_tests::show(&o)));
                    }
                    p.silo_list.push_ms(t.elapsed());
                }
            }
            // The next three, each alone on a settled machine.
            for _ in 0..3 {
                timed(
                    s,
                    &["launch", "bb", &Side::instance_name(running)],
                    &mut p.launch,
                )?;
                running += 1;
                std::thread::sleep(SETTLE);
            }
            Ok(())
        })();
        eprintln!(
            "[{}] at {at}: launch {}, lxc list {}, exec {}, RSS {:.0} MB",
            s.name(),
            p.launch.show("ms"),
            p.lxc_list.show("ms"),
            p.exec.show("ms"),
            p.rss
        );
        r.points.push(p);
        if let Err(e) = step {
            r.broke = Some(e);
            break;
        }
    }
    // Whatever was launched goes, in one command, as a user tearing down would.
    let names: Vec<String> = (0..running).map(Side::instance_name).collect();
    if !names.is_empty() {
        let mut args = vec!["delete", "--force"];
        args.extend(names.iter().map(String::as_str));
        let t = Instant::now();
        let o = s.lxc_out(&args);
        if o.status.success() {
            r.delete_all = Some((names.len(), t.elapsed()));
        } else {
            let e = format!("delete --force of all: {}", silo_tests::show(&o));
            r.broke.get_or_insert(e);
        }
    }
    r
}

fn main() {
    silo_tests::require_root();
    let env_num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let max = env_num("SILO_SCALE_MAX").unwrap_or(1000);
    let lxd_max = env_num("SILO_SCALE_LXD_MAX").unwrap_or(max);
    let sides = std::env::var("SILO_SCALE_SIDES").unwrap_or_else(|_| "silo,lxd".into());
    let bb = silo_tests::busybox_image(false).remove(0);
    let mut runs = vec![];
    for side in sides.split(',') {
        let (s, m) = match side {
            "silo" => {
                let d = TestDaemon::start("bench-scale");
                let o = d.lxc(&["network", "set", "silobr0", "ipv4.address", "10.252.0.1/22"]);
                assert!(o.status.success(), "network set: {}", silo_tests::show(&o));
                (Side::Silo(d), max)
            }
            "lxd" => (
                Side::Lxd(TestLxd::start_bridged("bench-scale", "10.253.0.1/22")),
                lxd_max,
            ),
            other => panic!("SILO_SCALE_SIDES: unknown manager {other:?} (silo, lxd)"),
        };
        s.lxc(&["image", "import", &bb.to_string_lossy(), "--alias", "bb"]);
        runs.push(run(&s, m));
        drop(s);
    }

    println!();
    println!("| manager | running | launch the next | `lxc list` | `silo list` | `lxc exec` | RSS | PSS |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &runs {
        for p in &r.points {
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.0} MB | {:.0} MB |",
                r.name,
                p.running,
                p.launch.show("ms"),
                p.lxc_list.show("ms"),
                p.silo_list.show("ms"),
                p.exec.show("ms"),
                p.rss,
                p.pss
            );
        }
    }
    println!();
    for r in &runs {
        println!(
            "- {}: launches while filling, {WORKERS} in flight: {}",
            r.name,
            r.fill.show("ms")
        );
        if let Some((n, t)) = r.delete_all {
            println!(
                "- {}: `lxc delete --force` of all {n}: {:.1} s",
                r.name,
                t.as_secs_f64()
            );
        }
        match &r.broke {
            Some(e) => println!("- {}: stopped early: {e}", r.name),
            None => println!("- {}: reached every checkpoint", r.name),
        }
    }
}
