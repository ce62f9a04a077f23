//! Networking figures: the time a nic adds to a launch (busybox, create + start, with and
//! without `eth0` on silobr0), and a proxy device against a direct connection to the
//! instance's address: connection rate (sequential HTTP requests for a small file) and
//! throughput (one download of 256 MiB). Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench network`
//! Everything happens inside the network namespace the bench's silod runs in.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;
use silo_tests::{busybox_image, in_netns, TestDaemon};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn launch(d: &TestDaemon, name: &str, nic: bool) -> Duration {
    let mut body = json!({"name": name, "source": {"type": "image", "alias": "busybox"}});
    if !nic {
        body["devices"] = json!({"eth0": {"type": "none"}});
    }
    let t = Instant::now();
    d.api_ok("POST", "/1.0/instances", Some(body));
    d.set_state(name, "start", false);
    let took = t.elapsed();
    d.set_state(name, "stop", true);
    d.api_ok("DELETE", &format!("/1.0/instances/{name}"), None);
    took
}

fn get(addr: std::net::SocketAddr, path: &str) -> usize {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .expect("write");
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return n,
            Ok(k) => n += k,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn main() {
    let d = TestDaemon::start("bench-net");
    d.import(&busybox_image(false)[0], "busybox");
    // Warm the image volume and the page cache.
    launch(&d, "warm", true);
    let with: Vec<Duration> = (0..10)
        .map(|i| launch(&d, &format!("n{i}"), true))
        .collect();
    let without: Vec<Duration> = (0..10)
        .map(|i| launch(&d, &format!("x{i}"), false))
        .collect();
    let (w, wo) = (median(with), median(without));
    println!("launch busybox (create + start), median of 10:");
    println!("  with eth0 on silobr0   {}", ms(w));
    println!("  without a nic          {}", ms(wo));
    println!("  networking adds        {}", ms(w.saturating_sub(wo)));

    d.launch("busybox", "web");
    let (code, _, e) = d.exec(
        "web",
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo hello > /www/index.html && dd if=/dev/zero of=/www/big bs=1M count=256 2>/dev/null && httpd -p 8080 -h /www",
        ],
    );
    assert_eq!(code, 0, "{e}");
    let ip = d.wait_ipv4("web");

    d.api_ok(
        "PATCH",
        "/1.0/instances/web",
        Some(json!({"devices": {"http": {"type": "proxy", "listen": "tcp:127.0.0.1:18080", "connect": "tcp:127.0.0.1:8080"}}})),
    );
    let direct: std::net::SocketAddr = format!("{ip}:8080").parse().expect("addr");
    let proxied: std::net::SocketAddr = "127.0.0.1:18080".parse().expect("addr");
    let results = in_netns(&d.netns, move || {
        let mut out = Vec::new();
        for (what, addr) in [
            ("direct to the instance", direct),
            ("through the proxy", proxied),
        ] {
            get(addr, "/index.html");
            let n = 2000;
            let t = Instant::now();
            for _ in 0..n {
                assert!(get(addr, "/index.html") > 0);
            }
            let rate = n as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            let bytes = get(addr, "/big");
            let secs = t.elapsed().as_secs_f64();
            out.push((what, rate, bytes as f64 / secs / (1 << 20) as f64, bytes));
        }
        out
    });
    println!("HTTP from the host's side to busybox httpd in the instance:");
    for (what, rate, mibs, bytes) in results {
        println!(
            "  {what:<24} {rate:>8.0} connections/s (2000 sequential)   {mibs:>7.0} MiB/s ({} MiB download)",
            bytes >> 20
        );
    }
}
