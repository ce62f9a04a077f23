//! A cluster of three silods (each in its own network namespace, on a bridge of the bench's
//! own): launch, list and exec latency through the owning member and through another
//! member, against a standalone host; the time to declare a cut member OFFLINE; the time
//! until the remaining members take writes after the etcd leader's member is cut; and a
//! listing of 300 instances spread over the three members.
//!
//! Run as root: `cargo build --release --workspace && cargo bench -p silo-tests --bench cluster`
//! `SILO_CLUSTER_ROUNDS` (default 7) and `SILO_CLUSTER_SPREAD` (default 300) set the sizes.

use std::time::{Duration, Instant};

use serde_json::json;
use silo_tests::cluster::{form, launch_on, members, start_member, status_of, Hub};
use silo_tests::side::Figure;
use silo_tests::{wait_until, TestDaemon};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn create(d: &TestDaemon, name: &str, target: Option<&str>) {
    let path = match target {
        Some(t) => format!("/1.0/instances?target={t}"),
        None => "/1.0/instances".into(),
    };
    d.api_ok(
        "POST",
        &path,
        Some(json!({"name": name, "source": {"type": "image", "alias": "busybox"}})),
    );
}

fn exec(d: &TestDaemon, name: &str) {
    let (code, _, _) = d.exec(name, &["true"]);
    assert_eq!(code, 0, "exec in {name}");
}

fn remove(d: &TestDaemon, name: &str) {
    if d.status(name) == "Running" {
        d.set_state(name, "stop", true);
    }
    d.api_ok("DELETE", &format!("/1.0/instances/{name}"), None);
}

/// Launch, list (recursion 2) and exec through `via`, for instances on `on`.
fn latencies(via: &TestDaemon, on: Option<&str>, tag: &str, rounds: usize) -> [Figure; 3] {
    let (mut launch, mut list, mut ex) = (Figure::default(), Figure::default(), Figure::default());
    for r in 0..rounds {
        let n = format!("b-{tag}-{r}");
        launch.push_ms(timed(|| {
            launch_on(via, &n, on).unwrap_or_else(|e| panic!("launch {n}: {e}"));
        }));
        list.push_ms(timed(|| {
            let (c, v) = via.api("GET", "/1.0/instances?recursion=2", None);
            assert_eq!(c, 200, "{v}");
        }));
        ex.push_ms(timed(|| exec(via, &n)));
        remove(via, &n);
    }
    [launch, list, ex]
}

fn main() {
    silo_tests::require_root();
    let rounds = env_usize("SILO_CLUSTER_ROUNDS", 7);
    let spread = env_usize("SILO_CLUSTER_SPREAD", 300);
    let image = silo_tests::busybox_image(false);

    // The standalone host.
    let solo_hub = Hub::new(40);
    let solo = start_member("bench-solo", &solo_hub, 1);
    solo.d.import(&image[0], "busybox");
    let [s_launch, s_list, s_exec] = latencies(&solo.d, None, "solo", rounds);
    drop(solo);

    let (hub, ms) = form("bench-cl", 41, 3);
    // Imported once (images are the cluster's); the first launch on each other member
    // copies it there, before the timed rounds.
    ms[0].d.import(&image[0], "busybox");
    let t0 = Instant::now();
    launch_on(&ms[1].d, "warm-m2", Some("m2")).expect("warm-up launch on m2");
    println!(
        "first launch on a member without the image (copied from m1): {} ms",
        t0.elapsed().as_millis()
    );
    launch_on(&ms[2].d, "warm-m3", Some("m3")).expect("warm-up launch on m3");
    for (m, n) in [(&ms[1], "warm-m2"), (&ms[2], "warm-m3")] {
        m.d.set_state(n, "stop", true);
        m.d.api_ok("DELETE", &format!("/1.0/instances/{n}"), None);
    }
    let [o_launch, o_list, o_exec] = latencies(&ms[1].d, Some("m2"), "own", rounds);
    let [f_launch, f_list, f_exec] = latencies(&ms[0].d, Some("m2"), "fwd", rounds);

    println!("cluster of 3 (silo), {rounds} rounds; median (min–max, n)");
    println!("| work | standalone | through the owning member | through another member |");
    println!("|---|---|---|---|");
    for (what, a, b, c) in [
        (
            "launch busybox (create + start)",
            &s_launch,
            &o_launch,
            &f_launch,
        ),
        ("list, recursion=2", &s_list, &o_list, &f_list),
        ("exec true (record-output)", &s_exec, &o_exec, &f_exec),
    ] {
        println!(
            "| {what} | {} | {} | {} |",
            a.show("ms"),
            b.show("ms"),
            c.show("ms")
        );
    }

    // A listing of `spread` instances over the three members (created, not started: the
    // listing's cost is the members' answers, not the instances' state).
    let t = Instant::now();
    for i in 0..spread {
        create(
            &ms[i % 3].d,
            &format!("s{i:04}"),
            Some(&format!("m{}", i % 3 + 1)),
        );
    }
    println!(
        "created {spread} instances over 3 members in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut list = Figure::default();
    let mut list0 = Figure::default();
    for _ in 0..rounds {
        list.push_ms(timed(|| {
            let (c, v) = ms[0].d.api("GET", "/1.0/instances?recursion=2", None);
            assert_eq!(c, 200);
            assert_eq!(v["metadata"].as_array().map(Vec::len), Some(spread));
        }));
        list0.push_ms(timed(|| {
            let (c, _) = ms[0].d.api("GET", "/1.0/instances", None);
            assert_eq!(c, 200);
        }));
    }
    println!(
        "list {spread} instances over 3 members, recursion=2: {}",
        list.show("ms")
    );
    println!(
        "list {spread} instances over 3 members, recursion=0: {}",
        list0.show("ms")
    );
    for i in 0..spread {
        ms[i % 3]
            .d
            .api_ok("DELETE", &format!("/1.0/instances/s{i:04}"), None);
    }

    // A member cut off: how long until the others show it OFFLINE (threshold 10 s).
    let cut = ms
        .iter()
        .position(|m| {
            !members(&ms[0].d).iter().any(|x| {
                x["server_name"] == m.name.as_str()
                    && x["roles"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|y| y == "database-leader"))
            })
        })
        .unwrap_or(2);
    let watcher = &ms[(cut + 1) % 3];
    hub.set_link((cut + 1) as u8, false);
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(40), || status_of(
        &watcher.d,
        &ms[cut].name
    ) == "Offline"));
    println!(
        "a cut member (not the leader's) shown OFFLINE after {:.1} s (cluster.offline_threshold 10 s)",
        t.elapsed().as_secs_f64()
    );
    hub.set_link((cut + 1) as u8, true);
    assert!(wait_until(Duration::from_secs(60), || members(&watcher.d)
        .iter()
        .all(|m| m["status"] == "Online")));

    // The etcd leader's member cut: how long until a write through another member works.
    let leader = members(&ms[0].d)
        .into_iter()
        .find(|m| {
            m["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|y| y == "database-leader"))
        })
        .and_then(|m| m["server_name"].as_str().map(String::from))
        .expect("a leader");
    let li = leader[1..].parse::<usize>().expect("m<N>") - 1;
    let other = &ms[(li + 1) % 3];
    hub.set_link((li + 1) as u8, false);
    let t = Instant::now();
    let mut tries = 0;
    let ok = wait_until(Duration::from_secs(30), || {
        tries += 1;
        let (c, v) = other.d.api(
            "POST",
            "/1.0/cluster/members",
            Some(json!({"server_name": format!("probe{tries}")})),
        );
        if c == 202 {
            let _ = other.d.api(
                "DELETE",
                v["operation"].as_str().unwrap_or("/1.0/operations/none"),
                None,
            );
        }
        c == 202
    });
    assert!(ok, "no write accepted after the leader's member was cut");
    println!(
        "writes through another member accepted {:.2} s after the etcd leader's member was cut ({tries} tries)",
        t.elapsed().as_secs_f64()
    );
    hub.set_link((li + 1) as u8, true);
}
