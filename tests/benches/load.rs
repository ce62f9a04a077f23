//! Load: 1000 API calls from 50 clients at once (list, info, state, exec) against 100 running
//! busybox containers, on silo and on LXD 5.0.2; the load figures of issue 20.
//!
//! Each client is a task with its own connections to the manager's unix socket, making 20
//! calls one after another, cycling through the four kinds. `exec` is `POST .../exec` with
//! `record-output` and then the operation's `wait`, counted as one call. While the calls run,
//! a sampler reads the RSS of the daemon and of all the manager's processes every 20 ms.
//!
//! Run as root: `cargo build --release --workspace && cargo bench -p silo-tests --bench load`
//! `SILO_LOAD_SIDES` (default `silo,lxd`) picks the managers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use silo_tests::lxd::TestLxd;
use silo_tests::side::{rss_mb_of, Figure, Side};
use silo_tests::TestDaemon;

const CLIENTS: usize = 50;
const CALLS_PER_CLIENT: usize = 20;
const RUNNING: usize = 100;
const KINDS: [&str; 4] = ["list", "info", "state", "exec"];

/// One client's calls: (kind, latency) or the first error.
async fn client(c: silo_cli::client::Client, id: usize) -> Result<Vec<(usize, Duration)>, String> {
    let mut out = Vec::with_capacity(CALLS_PER_CLIENT);
    for k in 0..CALLS_PER_CLIENT {
        let kind = (id + k) % KINDS.len();
        let inst = format!(
            "/1.0/instances/{}",
            Side::instance_name((id * 7 + k) % RUNNING)
        );
        let t = Instant::now();
        let (code, v) = match KINDS[kind] {
            "list" => c.raw("GET", "/1.0/instances?recursion=1", None).await,
            "info" => c.raw("GET", &inst, None).await,
            "state" => c.raw("GET", &format!("{inst}/state"), None).await,
            _ => {
                let body = json!({
                    "command": ["true"],
                    "record-output": true,
                    "wait-for-websocket": false,
                    "interactive": false,
                });
                match c.raw("POST", &format!("{inst}/exec"), Some(&body)).await {
                    Ok((202, v)) => {
                        let op = v["operation"].as_str().unwrap_or_default().to_string();
                        match c.raw("GET", &format!("{op}/wait?timeout=60"), None).await {
                            Ok((200, w)) if w["metadata"]["metadata"]["return"] == json!(0) => {
                                Ok((200, w))
                            }
                            Ok((code, w)) => Ok((code.max(500), w)),
                            Err(e) => Err(e),
                        }
                    }
                    other => other,
                }
            }
        }
        .map_err(|e| format!("{} {inst}: {e}", KINDS[kind]))?;
        if code != 200 {
            return Err(format!("{} {inst}: {code} {v}", KINDS[kind]));
        }
        out.push((kind, t.elapsed()));
    }
    Ok(out)
}

/// What one manager did under the load.
struct Run {
    name: &'static str,
    per_kind: Vec<Figure>,
    all: Figure,
    errors: Vec<String>,
    wall: Duration,
    daemon_rss: (f64, f64, f64),
    total_rss: (f64, f64, f64),
}

fn percentile(f: &Figure, p: f64) -> f64 {
    let mut v = f.0.clone();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn run(s: &Side) -> Run {
    eprintln!("[{}] launching {RUNNING}", s.name());
    if let Err(e) = s.launch_many("bb", 0..RUNNING, 4) {
        panic!("[{}] {e}", s.name());
    }
    std::thread::sleep(Duration::from_secs(5));
    let daemon = s.daemon_pid();
    let before = (rss_mb_of(daemon), s.rss_mb());
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        let pids_of = s.pids();
        std::thread::spawn(move || {
            let (mut d, mut t) = (0f64, 0f64);
            while !done.load(Ordering::SeqCst) {
                d = d.max(rss_mb_of(daemon));
                t = t.max(pids_of.iter().map(|p| rss_mb_of(*p)).sum());
                std::thread::sleep(Duration::from_millis(20));
            }
            (d, t)
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sock = s.socket();
    let t = Instant::now();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|id| tokio::spawn(client(silo_cli::client::Client::new(sock.clone()), id)))
            .collect();
        let mut out = vec![];
        for t in tasks {
            out.push(t.await.map_err(|e| e.to_string()).and_then(|r| r));
        }
        out
    });
    let wall = t.elapsed();
    done.store(true, Ordering::SeqCst);
    let peak = sampler.join().unwrap_or((f64::NAN, f64::NAN));
    std::thread::sleep(Duration::from_secs(2));
    let after = (rss_mb_of(daemon), s.rss_mb());
    let mut r = Run {
        name: s.name(),
        per_kind: (0..KINDS.len()).map(|_| Figure::default()).collect(),
        all: Figure::default(),
        errors: vec![],
        wall,
        daemon_rss: (before.0, peak.0, after.0),
        total_rss: (before.1, peak.1, after.1),
    };
    for res in results {
        match res {
            Ok(calls) => {
                for (k, d) in calls {
                    r.per_kind[k].push_ms(d);
                    r.all.push_ms(d);
                }
            }
            Err(e) => r.errors.push(e),
        }
    }
    let mut args = vec!["delete".to_string(), "--force".to_string()];
    args.extend((0..RUNNING).map(Side::instance_name));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.lxc(&args);
    r
}

fn main() {
    silo_tests::require_root();
    let bb = silo_tests::busybox_image(false).remove(0);
    let sides = std::env::var("SILO_LOAD_SIDES").unwrap_or_else(|_| "silo,lxd".into());
    let mut runs = vec![];
    for side in sides.split(',') {
        let s = match side {
            "silo" => Side::Silo(TestDaemon::start("bench-load")),
            "lxd" => Side::Lxd(TestLxd::start_bridged("bench-load", "10.254.0.1/24")),
            other => panic!("SILO_LOAD_SIDES: unknown manager {other:?} (silo, lxd)"),
        };
        s.lxc(&["image", "import", &bb.to_string_lossy(), "--alias", "bb"]);
        runs.push(run(&s));
        drop(s);
    }

    println!();
    println!(
        "{} calls from {CLIENTS} clients at once, {RUNNING} running; latency p50 / p99 in ms",
        CLIENTS * CALLS_PER_CLIENT
    );
    println!();
    println!("| manager | errors | all | list | info | state | exec | wall clock | daemon RSS before / peak / after | all processes' RSS before / peak / after |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let pp = |f: &Figure| format!("{:.0} / {:.0}", percentile(f, 0.5), percentile(f, 0.99));
    for r in &runs {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} s | {:.0} / {:.0} / {:.0} MB | {:.0} / {:.0} / {:.0} MB |",
            r.name,
            r.errors.len(),
            pp(&r.all),
            pp(&r.per_kind[0]),
            pp(&r.per_kind[1]),
            pp(&r.per_kind[2]),
            pp(&r.per_kind[3]),
            r.wall.as_secs_f64(),
            r.daemon_rss.0,
            r.daemon_rss.1,
            r.daemon_rss.2,
            r.total_rss.0,
            r.total_rss.1,
            r.total_rss.2,
        );
    }
    for r in &runs {
        for e in r.errors.iter().take(5) {
            println!("- {} error: {e}", r.name);
        }
    }
    let failed: usize = runs.iter().map(|r| r.errors.len()).sum();
    assert_eq!(failed, 0, "clients failed under load (above)");
}
