//! silo and LXD 5.0.2 side by side, in one run, rounds interleaved: the table of issue 20.
//!
//! Both managers get the same setup: a `dir` pool, a managed bridge with NAT and DHCP, eth0
//! on it in the default profile, the same busybox and debian images. Each runs in a network
//! namespace of its own. silo's instances are unprivileged (idmapped mounts); LXD's are
//! privileged, because this host gives root no subordinate range for LXD's idmap (which
//! spares LXD the id shifting). The stock `lxc` client drives both, so client costs match.
//!
//! Run as root: `cargo build --release --workspace && cargo bench -p silo-tests --bench compare`
//! `SILO_BENCH_ROUNDS` (default 7) sets the rounds of the fast figures; the debian figures
//! take 3 rounds.

use std::time::{Duration, Instant};

use silo_tests::lxd::TestLxd;
use silo_tests::side::{Figure, Side};
use silo_tests::TestDaemon;

/// The pause before each measured launch and after it.
const SETTLE: Duration = Duration::from_millis(1500);

fn until_systemd_up(s: &Side, name: &str) {
    silo_tests::until_systemd_up(name, |cmd| {
        let mut args = vec!["exec", name, "--"];
        args.extend_from_slice(cmd);
        String::from_utf8_lossy(&s.lxc_out(&args).stdout).into_owned()
    });
}

/// The figures, per side.
#[derive(Default)]
struct Figures {
    launch: Figure,
    lxc_exec: Figure,
    floor: Figure,
    silo_exec: Figure,
    debian: Figure,
    publish: Figure,
    rss9: Figure,
    pss9: Figure,
}

fn main() {
    silo_tests::require_root();
    let rounds: usize = std::env::var("SILO_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let bb = silo_tests::busybox_image(false).remove(0);
    let deb = silo_tests::debian_image();
    let sides = [
        Side::Silo(TestDaemon::start("bench-cmp")),
        Side::Lxd(TestLxd::start_bridged("bench-cmp", "10.251.0.1/24")),
    ];
    let mut figs: [Figures; 2] = Default::default();
    for s in &sides {
        s.lxc(&["image", "import", &bb.to_string_lossy(), "--alias", "bb"]);
        s.lxc(&["image", "import", &deb.to_string_lossy(), "--alias", "deb"]);
        // The first launch warms caches on both sides.
        s.lxc(&["launch", "bb", "warm"]);
    }

    // Busybox launch, exec, the client's floor: interleaved rounds.
    for r in 0..rounds {
        for (s, f) in sides.iter().zip(figs.iter_mut()) {
            // The instance launched before boots on the same two cores: let it settle, so
            // each side is measured on a quiet machine rather than on the other's boot.
            std::thread::sleep(SETTLE);
            let name = format!("b{r}");
            f.launch.push_ms(s.lxc(&["launch", "bb", &name]));
            std::thread::sleep(SETTLE);
            f.floor.push_ms(s.lxc(&["query", "/1.0"]));
            f.lxc_exec.push_ms(s.lxc(&["exec", "warm", "--", "true"]));
            if let Side::Silo(d) = s {
                let t = Instant::now();
                let o = d.silo(&["exec", "warm", "--", "true"]);
                let took = t.elapsed();
                assert!(o.status.success(), "silo exec: {}", silo_tests::show(&o));
                f.silo_exec.push_ms(took);
            }
        }
    }
    // Memory with 9 running: "warm" and b0..b7 (or as many rounds as ran, topped up).
    for (s, f) in sides.iter().zip(figs.iter_mut()) {
        for r in rounds..8 {
            s.lxc(&["launch", "bb", &format!("b{r}")]);
        }
        for r in 8..rounds {
            s.lxc(&["delete", "-f", &format!("b{r}")]);
        }
        std::thread::sleep(Duration::from_secs(2));
        f.rss9.0.push(s.rss_mb());
        f.pss9.0.push(s.pss_mb());
        for r in 0..8 {
            s.lxc(&["delete", "-f", &format!("b{r}")]);
        }
    }

    // Debian until systemd is up, then publish it (gzip, LXD's default): 3 rounds.
    for r in 0..3 {
        for (s, f) in sides.iter().zip(figs.iter_mut()) {
            let name = format!("d{r}");
            let t = Instant::now();
            s.lxc(&["launch", "deb", &name]);
            until_systemd_up(s, &name);
            f.debian.push_ms(t.elapsed());
            s.lxc(&["stop", "-f", &name]);
            let alias = format!("pub{r}");
            f.publish.push_ms(s.lxc(&[
                "publish",
                &name,
                "--alias",
                &alias,
                "--compression",
                "gzip",
            ]));
            s.lxc(&["image", "delete", &alias]);
            s.lxc(&["delete", "-f", &name]);
        }
    }

    let [silo, lxd] = &figs;
    let ratio = |a: &Figure, b: &Figure| match (a.median(), b.median()) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
        _ => "—".into(),
    };
    println!();
    println!(
        "| work | {} | {} | LXD/silo |",
        sides[1].name(),
        sides[0].name()
    );
    println!("|---|---|---|---|");
    let row = |label: &str, a: &Figure, b: &Figure, unit: &str| {
        println!(
            "| {label} | {} | {} | {} |",
            b.show(unit),
            a.show(unit),
            ratio(b, a)
        );
    };
    row(
        "`lxc launch busybox`, eth0 on a bridge",
        &silo.launch,
        &lxd.launch,
        "ms",
    );
    row("`lxc exec c -- true`", &silo.lxc_exec, &lxd.lxc_exec, "ms");
    row(
        "the client's floor, `lxc query /1.0`",
        &silo.floor,
        &lxd.floor,
        "ms",
    );
    row(
        "`silo exec c -- true`",
        &silo.silo_exec,
        &lxd.silo_exec,
        "ms",
    );
    row(
        "debian launch until systemd is up, dir pool",
        &silo.debian,
        &lxd.debian,
        "s",
    );
    row("publish debian, gzip", &silo.publish, &lxd.publish, "s");
    row(
        "RSS of the manager's processes, 9 running",
        &silo.rss9,
        &lxd.rss9,
        "MB",
    );
    row(
        "PSS of the manager's processes, 9 running",
        &silo.pss9,
        &lxd.pss9,
        "MB",
    );
    println!();
    println!("median (min–max, n) of each figure; {rounds} interleaved rounds, debian 3");
    drop(sides);
}
