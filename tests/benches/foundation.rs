//! Foundation figures: silod start-to-ready, idle RSS of each process, and the median
//! daemon-to-helper RPC round trip. Run as root: `cargo bench -p silo-tests --bench foundation`.

use std::time::{Duration, Instant};

use silo_proto::store::StoreClient;
use silo_tests::hostile::Helper;
use silo_tests::TestDaemon;
use tarpc::client::Config;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn main() {
    silo_tests::require_root();
    // Start to API ready, 10 times.
    let mut starts = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let d = TestDaemon::start("bench-start");
        starts.push(t.elapsed());
        drop(d);
    }
    let med = percentile(&mut starts, 0.5);
    println!(
        "silod start to API ready: median {:.1} ms (n=10, min {:.1} ms, max {:.1} ms)",
        ms(med),
        ms(starts[0]),
        ms(starts[9])
    );

    // Idle RSS.
    let d = TestDaemon::start("bench-rss");
    std::thread::sleep(Duration::from_secs(1));
    let rss = |pid: u32| {
        silo_proto::procinfo::read(pid)
            .map(|c| c.rss_kib)
            .unwrap_or(0)
    };
    println!("idle RSS: silod {} KiB", rss(d.pid()));
    for (n, p) in d.helpers() {
        println!("idle RSS: {n} {} KiB", rss(p));
    }
    // API round trip: GET /1.0 over the unix socket (includes /proc reads of four processes).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let client = d.client();
    let mut api = Vec::new();
    rt.block_on(async {
        for _ in 0..500 {
            let t = Instant::now();
            client
                .raw("GET", "/1.0/operations", None)
                .await
                .expect("api");
            api.push(t.elapsed());
        }
    });
    let m = percentile(&mut api, 0.5);
    let p99 = percentile(&mut api, 0.99);
    println!(
        "API GET /1.0/operations round trip: median {:.3} ms, p99 {:.3} ms (n=500)",
        ms(m),
        ms(p99)
    );
    drop(d);

    // RPC round trip to a helper started and jailed exactly as silod does.
    let state = silo_tests::unique_dir("bench-rpc");
    let policy = std::path::PathBuf::from(format!("{}.policy.toml", state.display()));
    let mut h = Helper::spawn("silo-store", &state, &policy, false, &[]);
    let mut rtts = Vec::new();
    rt.block_on(async {
        let c = StoreClient::new(Config::default(), h.transport()).spawn();
        for _ in 0..200 {
            c.hello(tarpc::context::current()).await.expect("warm");
        }
        for _ in 0..5000 {
            let t = Instant::now();
            c.hello(tarpc::context::current()).await.expect("hello");
            rtts.push(t.elapsed());
        }
    });
    let m = percentile(&mut rtts, 0.5);
    let p99 = percentile(&mut rtts, 0.99);
    println!(
        "daemon-to-helper RPC (silo-store hello): median {:.1} us, p99 {:.1} us (n=5000)",
        us(m),
        us(p99)
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&state);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
