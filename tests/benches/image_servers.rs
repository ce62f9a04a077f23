//! Image-server figures: pulling the debian image (a simplestreams tree written by `silo
//! image export-simplestreams`) over HTTPS on loopback, in MB/s, against `curl` of the same
//! file from the same server; creating an instance from a server's alias once the image is
//! cached against creating it from a local alias. Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench image_servers`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use silo_tests::image_server::{ca_bundle, ImageServer, TestPki};
use silo_tests::{fingerprint_of, TestDaemon};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn debian_image() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-image-debian");
    let out = Command::new(&script).output().expect("build-image-debian");
    assert!(
        out.status.success(),
        "the debian image is needed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(PathBuf::from)
        .expect("image path")
}

fn op(d: &TestDaemon, path: &str, body: Value) -> Duration {
    let t = Instant::now();
    let (c, v) = d.api("POST", path, Some(body));
    assert_eq!(c, 202, "{v}");
    let o = d.wait_op(&v);
    assert_eq!(o["status"], "Success", "{o}");
    t.elapsed()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

fn main() {
    silo_tests::require_root();
    let pki = TestPki::new("silo bench CA");
    let (_ca_dir, ca_file) = ca_bundle(&pki.ca_pem);
    let d = TestDaemon::start_with_env("bench-iserv", &[("SSL_CERT_FILE", s(&ca_file))]);
    let img = debian_image();
    let fp = fingerprint_of(std::slice::from_ref(&img));
    let tree = tempfile::tempdir().expect("tree");
    let o = d.silo(&["image", "import", s(&img), "--alias", "deb"]);
    assert!(o.status.success(), "{}", silo_tests::show(&o));
    let o = d.silo(&["image", "export-simplestreams", s(tree.path()), "deb"]);
    assert!(o.status.success(), "{}", silo_tests::show(&o));
    d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);
    let file = format!("images/{fp}/lxd_combined.tar.gz");
    let size = std::fs::metadata(tree.path().join(&file))
        .expect("file")
        .len();
    let server = ImageServer::start(&d.netns, tree.path(), &pki);
    let url = server.url();
    let mb = size as f64 / 1e6;

    let curl: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let o = d.netns_cmd(&[
                "curl",
                "-sSf",
                "--cacert",
                s(&ca_file),
                "-o",
                "/dev/null",
                &format!("{url}/{file}"),
            ]);
            assert!(o.status.success(), "{}", silo_tests::show(&o));
            t.elapsed()
        })
        .collect();
    let curl = median(curl);
    // The same into a file on the state dir's filesystem, synced, as silod keeps it.
    let dest = d.dir.join("bench-curl.out");
    let curl_disk: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let o = d.netns_cmd(&[
                "sh",
                "-c",
                &format!(
                    "curl -sSf --cacert {} -o {} {url}/{file} && sync {}",
                    s(&ca_file),
                    s(&dest),
                    s(&dest)
                ),
            ]);
            assert!(o.status.success(), "{}", silo_tests::show(&o));
            t.elapsed()
        })
        .collect();
    let curl_disk = median(curl_disk);
    let _ = std::fs::remove_file(&dest);
    let pulls: Vec<Duration> = (0..3)
        .map(|_| {
            let t = op(
                &d,
                "/1.0/images",
                json!({"source": {"type": "image", "mode": "pull", "server": url,
                                  "protocol": "simplestreams", "alias": "deb"}}),
            );
            d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);
            t
        })
        .collect();
    let pull = median(pulls);
    println!(
        "curl into a synced file {:.0} ms ({:.0} MB/s)",
        curl_disk.as_secs_f64() * 1e3,
        mb / curl_disk.as_secs_f64()
    );
    println!(
        "debian ({mb:.1} MB) over HTTPS on loopback: curl {:.0} ms ({:.0} MB/s), silod pull {:.0} ms ({:.0} MB/s, index + download + checks + import)",
        curl.as_secs_f64() * 1e3,
        mb / curl.as_secs_f64(),
        pull.as_secs_f64() * 1e3,
        mb / pull.as_secs_f64()
    );

    // Creating from a server's alias once the image is cached, against a local alias.
    let remote = |n: &str| {
        json!({"name": n, "source": {"type": "image", "server": url,
                                     "protocol": "simplestreams", "alias": "deb"}})
    };
    op(&d, "/1.0/instances", remote("warm"));
    d.api_ok(
        "POST",
        "/1.0/images/aliases",
        Some(json!({"name": "deb-local", "target": fp})),
    );
    let mut from_remote = Vec::new();
    let mut from_local = Vec::new();
    for i in 0..3 {
        from_remote.push(op(&d, "/1.0/instances", remote(&format!("r{i}"))));
        from_local.push(op(
            &d,
            "/1.0/instances",
            json!({"name": format!("l{i}"), "source": {"type": "image", "alias": "deb-local"}}),
        ));
    }
    println!(
        "create from a cached server alias {:.0} ms, from a local alias {:.0} ms (median of 3)",
        median(from_remote).as_secs_f64() * 1e3,
        median(from_local).as_secs_f64() * 1e3
    );
    for n in ["warm", "r0", "r1", "r2", "l0", "l1", "l2"] {
        d.api_ok("DELETE", &format!("/1.0/instances/{n}"), None);
    }
}
