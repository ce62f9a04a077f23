//! Figures of issue 18's API: a file read from a running instance (silo-priv's files child)
//! and from a stopped one (silo-store), a `/dev/lxd` request from container root, a metrics
//! scrape with ten running instances, `/1.0/resources`, freeze and unfreeze, and the bulk
//! state change against one call per instance. Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench guest_api`

use std::process::Command;
use std::time::Instant;

use serde_json::json;
use silo_tests::{busybox_image, TestDaemon};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    format!("{lo:.1}-{hi:.1} ms")
}

/// curl's own time per request (ms), `n` requests to `url` in one curl run, so process start
/// is not counted. `prefix` runs curl through another command (nsenter).
fn curl_times(prefix: &[&str], socket: &str, url: &str, n: usize) -> Vec<f64> {
    let mut cmd = Command::new(prefix.first().copied().unwrap_or("curl"));
    if !prefix.is_empty() {
        cmd.args(&prefix[1..]).arg("curl");
    }
    cmd.args([
        "-s",
        "-w",
        "%{http_code} %{time_total}\\n",
        "--unix-socket",
        socket,
    ]);
    // `-o` is per URL: each transfer's body is thrown away.
    for _ in 0..n {
        cmd.args(["-o", "/dev/null", url]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|l| {
            let (code, t) = l.split_once(' ').expect("code and time");
            assert_eq!(code, "200", "{url}: {text}");
            t.parse::<f64>().expect("seconds") * 1000.0
        })
        .collect()
}

fn report(label: &str, v: Vec<f64>) {
    println!(
        "{label:<44}: median {:.1} ms, {} ({} runs)",
        median(v.clone()),
        spread(&v),
        v.len()
    );
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let d = TestDaemon::start("bench-guest");
    d.import(&busybox_image(false)[0], "busybox");
    let sock = d.socket().display().to_string();
    for n in 0..10 {
        d.launch("busybox", &format!("g{n}"));
    }
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "stopped", "source": {"type": "image", "alias": "busybox"}})),
    );
    let (rc, _, e) = d.exec("g0", &["sh", "-c", "echo hello > /run/x"]);
    assert_eq!(rc, 0, "{e}");

    report(
        "files GET /run/x, running (silo-priv)",
        curl_times(
            &[],
            &sock,
            "http://silo/1.0/instances/g0/files?path=/run/x",
            30,
        ),
    );
    report(
        "files GET /etc/hostname, stopped (silo-store)",
        curl_times(
            &[],
            &sock,
            "http://silo/1.0/instances/stopped/files?path=/etc/hostname",
            30,
        ),
    );
    report(
        "GET /1.0/metrics, 10 running",
        curl_times(&[], &sock, "http://silo/1.0/metrics", 20),
    );
    report(
        "GET /1.0/resources",
        curl_times(&[], &sock, "http://silo/1.0/resources", 20),
    );

    // /dev/lxd from container root: its user namespace entered, through /proc/<init>/root.
    let st = d.api_ok("GET", "/1.0/instances/g0/state", None);
    let pid = st["pid"].as_i64().expect("pid").to_string();
    let guest_sock = format!("/proc/{pid}/root/dev/lxd/sock");
    let ns = ["nsenter", "-t", &pid, "-U", "-S", "0", "-G", "0", "--"];
    report("/dev/lxd GET /1.0/config/user.x", {
        d.api_ok(
            "PATCH",
            "/1.0/instances/g0",
            Some(json!({"config": {"user.x": "y"}})),
        );
        curl_times(&ns, &guest_sock, "http://lxd/1.0/config/user.x", 50)
    });

    let (mut freeze, mut thaw) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        freeze.push(timed(|| {
            d.set_state("g1", "freeze", false);
        }));
        thaw.push(timed(|| {
            d.set_state("g1", "unfreeze", false);
        }));
    }
    report("freeze (lxc pause)", freeze);
    report("unfreeze", thaw);

    // Ten instances stopped and started: one bulk call each way, against ten calls.
    let bulk = |action: &str| {
        timed(|| {
            d.api_ok(
                "PUT",
                "/1.0/instances",
                Some(json!({"state": {"action": action, "force": true}})),
            );
        })
    };
    let (mut bulk_stop, mut bulk_start, mut one_by_one) = (Vec::new(), Vec::new(), Vec::new());
    d.api_ok("DELETE", "/1.0/instances/stopped", None);
    for _ in 0..3 {
        bulk_stop.push(bulk("stop"));
        bulk_start.push(bulk("start"));
        one_by_one.push(timed(|| {
            for n in 0..10 {
                d.set_state(&format!("g{n}"), "stop", true);
            }
            for n in 0..10 {
                d.set_state(&format!("g{n}"), "start", false);
            }
        }));
    }
    report("PUT /1.0/instances stop, 10 running", bulk_stop);
    report("PUT /1.0/instances start, 10 stopped", bulk_start);
    report("the same, 20 calls one by one (stop+start)", one_by_one);
}
