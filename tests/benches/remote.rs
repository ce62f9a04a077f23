//! silod-to-silod figures: two silods in two network namespaces joined by a veth
//! (`link_netns`), the clients inside B's namespace. `list` over HTTPS against the unix
//! socket (silo and lxc); `silo launch a:ALIAS` once the image is cached against a local
//! alias; the lxd-protocol pull (`silo image copy a:deb local:`) in MB/s against `curl` of the
//! same `/export`; `lxc image copy` between two silods side by side with the same between two
//! LXD 5.0.2 daemons (TestLxd, loopback of one namespace). The simplestreams pull and create
//! figures are in benches/image_servers.rs. Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench remote`.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use silo_tests::lxd::TestLxd;
use silo_tests::{busybox_image, fingerprint_of, link_netns, show, wait_until, TestDaemon};

const PASSWORD: &str = "bench-pw";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {}", show(&o));
    o
}

/// Runs `prog ARGS` inside `d`'s network namespace with `env`.
fn in_ns(d: &TestDaemon, prog: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new("nsenter");
    c.arg(format!(
        "--net=/proc/{}/fd/{}",
        std::process::id(),
        d.netns.as_raw_fd()
    ))
    .arg(prog)
    .args(args)
    .env_remove("SILO_REMOTE")
    .env_remove("LXD_DIR")
    .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("nsenter")
}

/// Times `n` runs of `f`, answering the median.
fn timed(n: usize, mut f: impl FnMut(usize)) -> Duration {
    median(
        (0..n)
            .map(|i| {
                let t = Instant::now();
                f(i);
                t.elapsed()
            })
            .collect(),
    )
}

fn listen(d: &TestDaemon, addr: &str) {
    let (c, v) = d.api(
        "PATCH",
        "/1.0",
        Some(json!({"config": {"core.https_address": addr,
                               "core.trust_password": PASSWORD}})),
    );
    assert_eq!(c, 200, "{v}");
}

fn main() {
    silo_tests::require_root();
    let a = TestDaemon::start("bench-rh-a");
    let b = TestDaemon::start("bench-rh-b");
    link_netns(&a, &b);
    listen(&a, "198.18.0.1:8443");
    listen(&b, "198.18.0.2:8443");
    let url_a = "https://198.18.0.1:8443";
    let url_b = "https://198.18.0.2:8443";
    assert!(
        wait_until(Duration::from_secs(10), || {
            b.netns_cmd(&["curl", "-sk", "-o", "/dev/null", url_a])
                .status
                .success()
        }),
        "A does not answer from B"
    );
    let work = tempfile::tempdir().expect("work dir");
    let silo_conf = work.path().join("silo-conf");
    let lxc_conf = work.path().join("lxc-conf");
    let silo_bin = silo_tests::bin("silo");
    let lxc_bin = PathBuf::from("lxc");
    let sock_b = b.socket();
    let silo_b = |args: &[&str]| {
        in_ns(
            &b,
            &silo_bin,
            args,
            &[("SILO_CONF", &silo_conf), ("SILO_SOCKET", &sock_b)],
        )
    };
    let lxc_b = |args: &[&str]| in_ns(&b, &lxc_bin, args, &[("LXD_CONF", &lxc_conf)]);
    ok(
        silo_b(&[
            "remote",
            "add",
            "a",
            url_a,
            "--password",
            PASSWORD,
            "--accept-certificate",
        ]),
        "silo remote add",
    );
    for (name, url) in [("a", url_a), ("b", url_b)] {
        ok(
            lxc_b(&[
                "remote",
                "add",
                name,
                url,
                "--password",
                PASSWORD,
                "--accept-certificate",
            ]),
            "lxc remote add",
        );
    }

    // list: three running instances on A, over HTTPS from B's side and on A's unix socket.
    let bb = busybox_image(false);
    let bb_fp = fingerprint_of(&bb);
    ok(
        a.silo(&["image", "import", s(&bb[0]), "--alias", "bb", "--public"]),
        "import bb",
    );
    for i in 0..3 {
        ok(a.silo(&["launch", "bb", &format!("l{i}")]), "launch on A");
    }
    let n = 20;
    let silo_https = timed(n, |_| {
        ok(silo_b(&["list", "a:", "--format", "csv"]), "silo list a:");
    });
    let silo_unix = timed(n, |_| {
        ok(a.silo(&["list", "--format", "csv"]), "silo list");
    });
    let lxc_https = timed(n, |_| {
        ok(lxc_b(&["list", "a:", "--format", "csv"]), "lxc list a:");
    });
    let lxc_unix = timed(n, |_| {
        ok(a.lxc(&["list", "--format", "csv"]), "lxc list");
    });
    println!(
        "list, 3 instances, median of {n}: silo over HTTPS {:.1} ms, on the unix socket {:.1} ms; \
         lxc over HTTPS {:.1} ms, on the unix socket {:.1} ms",
        ms(silo_https),
        ms(silo_unix),
        ms(lxc_https),
        ms(lxc_unix)
    );
    for i in 0..3 {
        ok(
            a.silo(&["delete", "--force", &format!("l{i}")]),
            "delete on A",
        );
    }

    // launch a:bb on B once the image is cached there, against a local alias on B.
    ok(silo_b(&["launch", "a:bb", "warm"]), "launch a:bb warm");
    b.api_ok(
        "POST",
        "/1.0/images/aliases",
        Some(json!({"name": "bb-local", "target": bb_fp})),
    );
    let k = 5;
    let from_remote = timed(k, |i| {
        ok(silo_b(&["launch", "a:bb", &format!("r{i}")]), "launch a:bb");
    });
    let from_local = timed(k, |i| {
        ok(
            silo_b(&["launch", "bb-local", &format!("p{i}")]),
            "launch bb-local",
        );
    });
    println!(
        "silo launch (busybox, created and started), median of {k}: a:bb cached {:.0} ms, \
         local alias {:.0} ms",
        ms(from_remote),
        ms(from_local)
    );
    for name in std::iter::once("warm".to_string())
        .chain((0..k).map(|i| format!("r{i}")))
        .chain((0..k).map(|i| format!("p{i}")))
    {
        ok(b.silo(&["delete", "--force", &name]), "delete on B");
    }
    b.api_ok("DELETE", &format!("/1.0/images/{bb_fp}"), None);

    // The lxd-protocol pull of the debian image against curl of the same /export.
    let deb = silo_tests::debian_image();
    let deb_fp = fingerprint_of(std::slice::from_ref(&deb));
    let mb = std::fs::metadata(&deb).expect("debian image").len() as f64 / 1e6;
    ok(
        a.silo(&["image", "import", s(&deb), "--alias", "deb", "--public"]),
        "import deb",
    );
    let export = format!("{url_a}/1.0/images/{deb_fp}/export");
    let curl = timed(3, |_| {
        ok(
            b.netns_cmd(&["curl", "-sSfk", "-o", "/dev/null", &export]),
            "curl",
        );
    });
    let dest = b.dir.join("bench-curl.out");
    let curl_disk = timed(3, |_| {
        ok(
            b.netns_cmd(&[
                "sh",
                "-c",
                &format!("curl -sSfk -o {0} {export} && sync {0}", s(&dest)),
            ]),
            "curl to disk",
        );
    });
    let _ = std::fs::remove_file(&dest);
    let delete_on_b = || b.api_ok("DELETE", &format!("/1.0/images/{deb_fp}"), None);
    let pull = timed(3, |_| {
        ok(
            silo_b(&["image", "copy", "a:deb", "local:"]),
            "silo image copy",
        );
        delete_on_b();
    });
    println!(
        "debian ({mb:.1} MB) A to B over HTTPS on a veth, median of 3: curl of /export {:.0} ms \
         ({:.0} MB/s), into a synced file {:.0} ms ({:.0} MB/s); silo image copy a:deb local: \
         {:.0} ms ({:.0} MB/s, resolve + download + checks + import)",
        ms(curl),
        mb / curl.as_secs_f64(),
        ms(curl_disk),
        mb / curl_disk.as_secs_f64(),
        ms(pull),
        mb / pull.as_secs_f64()
    );

    // lxc image copy between the two silods, then between two LXD 5.0.2 daemons.
    let silo_copy = timed(3, |_| {
        ok(
            lxc_b(&["image", "copy", "a:deb", "b:"]),
            "lxc image copy silods",
        );
        delete_on_b();
    });
    drop(b);
    drop(a);
    let la = TestLxd::start("bench-rh-la");
    let lb = TestLxd::start_beside("bench-rh-lb", &la);
    ok(
        la.lxc(&["image", "import", s(&deb), "--alias", "deb", "--public"]),
        "lxc image import on LXD",
    );
    let conf = work.path().join("lxd-pair-conf");
    let lxc_l = |args: Vec<String>| {
        let conf = conf.clone();
        la.run_in_netns(move || {
            Command::new("lxc")
                .args(&args)
                .env("LXD_CONF", &conf)
                .env_remove("LXD_DIR")
                .stdin(Stdio::null())
                .output()
                .expect("lxc")
        })
    };
    for (name, l) in [("la", &la), ("lb", &lb)] {
        ok(
            lxc_l(
                [
                    "remote",
                    "add",
                    name,
                    &l.url(),
                    "--password",
                    silo_tests::lxd::TRUST_PASSWORD,
                    "--accept-certificate",
                ]
                .map(String::from)
                .to_vec(),
            ),
            "lxc remote add LXD",
        );
    }
    let lxd_copy = timed(3, |_| {
        ok(
            lxc_l(
                ["image", "copy", "la:deb", "lb:"]
                    .map(String::from)
                    .to_vec(),
            ),
            "lxc image copy LXDs",
        );
        ok(
            lxc_l(
                ["image", "delete", &format!("lb:{deb_fp}")]
                    .map(String::from)
                    .to_vec(),
            ),
            "lxc image delete",
        );
    });
    println!(
        "lxc image copy of debian ({mb:.1} MB), median of 3: silod to silod {:.0} ms ({:.0} MB/s), \
         LXD 5.0.2 to LXD 5.0.2 {:.0} ms ({:.0} MB/s)",
        ms(silo_copy),
        mb / silo_copy.as_secs_f64(),
        ms(lxd_copy),
        mb / lxd_copy.as_secs_f64()
    );
}
