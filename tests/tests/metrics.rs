//! `/1.0/metrics`: LXD's Prometheus text, scraped over the unix socket and over HTTPS with a
//! `metrics` certificate, parsed by the Prometheus client library's own text parser (Debian's
//! python3-prometheus-client, installed by scripts/deps), with figures that move when an
//! instance works.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, show, wait_until, TestDaemon};

/// One parsed sample: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// The parser of the Prometheus python client (`text_string_to_metric_families`), run over
/// `text`; the samples as JSON. Fails (with the parser's error) on text it refuses.
fn parse(text: &str) -> Vec<Sample> {
    const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    // Debian's module lives in the system interpreter, not in a user's pyenv.
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (Debian's python3 is installed by scripts/deps)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(text.as_bytes())
            .expect("write to the parser");
    }
    let o = child.wait_with_output().expect("parser");
    assert!(
        o.status.success(),
        "the Prometheus parser refused the text (is python3-prometheus-client installed? \
         scripts/deps installs it):\n{}\n--- text ---\n{text}",
        show(&o)
    );
    let v: Vec<Value> = serde_json::from_slice(&o.stdout).expect("parser output");
    v.into_iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap_or_default().to_string(),
            labels: s["labels"].as_object().cloned().unwrap_or_default(),
            value: s["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect()
}

/// The samples of `name` whose labels include every pair of `want`.
fn find<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .collect()
}

fn scrape(d: &TestDaemon, query: &str) -> String {
    let (c, body) = d.api_raw("GET", &format!("/1.0/metrics{query}"));
    let text = String::from_utf8_lossy(&body).to_string();
    assert_eq!(c, 200, "{text}");
    text
}

/// Seconds of CPU `c1` used, user and system over every CPU.
fn cpu_seconds(samples: &[Sample], name: &str) -> f64 {
    find(samples, "lxd_cpu_seconds_total", &[("name", name)])
        .iter()
        .map(|s| s.value)
        .sum()
}

/// curl inside silod's network namespace with a client certificate: (status, body).
fn curl_cert(d: &TestDaemon, url: &str, cert: Option<(&Path, &Path)>) -> (u16, String) {
    let mut args: Vec<String> = vec![
        "curl".into(),
        "-sk".into(),
        "-o".into(),
        "-".into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    if let Some((crt, key)) = cert {
        args.extend([
            "--cert".into(),
            crt.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]);
    }
    args.push(url.into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = d.netns_cmd(&refs);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn make_cert(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let crt = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", show(&o));
    (crt, key)
}

#[test]
fn metrics_scrape_over_the_socket_parses_and_cpu_and_memory_move() {
    let d = TestDaemon::start("metrics-unix");
    let img = busybox_image(false);
    d.import(&img[0], "busybox");
    d.launch("busybox", "mt1");

    let before = parse(&scrape(&d, ""));
    let c1 = [
        ("name", "mt1"),
        ("project", "default"),
        ("type", "container"),
    ];
    for m in [
        "lxd_procs_total",
        "lxd_memory_MemTotal_bytes",
        "lxd_memory_MemAvailable_bytes",
        "lxd_memory_Cached_bytes",
        "lxd_memory_RSS_bytes",
    ] {
        assert_eq!(find(&before, m, &c1).len(), 1, "{m}: {before:?}");
    }
    assert!(find(&before, "lxd_procs_total", &c1)[0].value >= 1.0);
    // Per-CPU split by mode, as LXD: user and system for each CPU.
    let modes: Vec<&str> = find(&before, "lxd_cpu_seconds_total", &c1)
        .iter()
        .filter_map(|s| s.labels.get("mode").and_then(Value::as_str))
        .collect();
    assert!(
        modes.contains(&"user") && modes.contains(&"system"),
        "{modes:?}"
    );
    // Counters read inside the instance's network namespace.
    assert_eq!(
        find(
            &before,
            "lxd_network_receive_packets_total",
            &[("name", "mt1"), ("device", "lo")]
        )
        .len(),
        1,
        "{before:?}"
    );
    // The root disk's filesystem, LXD's labels.
    let fs = find(
        &before,
        "lxd_filesystem_size_bytes",
        &[("name", "mt1"), ("mountpoint", "/")],
    );
    assert_eq!(fs.len(), 1, "{before:?}");
    assert!(fs[0].value > 0.0);
    // The daemon's own figures.
    assert_eq!(
        find(
            &before,
            "lxd_instances",
            &[("project", "default"), ("type", "container")]
        )[0]
        .value,
        1.0
    );
    assert!(find(&before, "lxd_uptime_seconds", &[])[0].value > 0.0);
    assert!(find(&before, "process_resident_memory_bytes", &[])[0].value > 1e6);

    // Burn about a second of CPU inside the instance: its counter follows.
    let cpu0 = cpu_seconds(&before, "mt1");
    let (rc, _, err) = d.exec(
        "mt1",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; ping -c 3 -i 0.2 127.0.0.1 >/dev/null; dd if=/dev/zero of=/root/f bs=1M count=8 oflag=direct 2>/dev/null; sync",
        ],
    );
    assert_eq!(rc, 0, "{err}");
    let after = parse(&scrape(&d, ""));
    let cpu1 = cpu_seconds(&after, "mt1");
    assert!(cpu1 - cpu0 >= 0.2, "CPU seconds went from {cpu0} to {cpu1}");
    // 8 MiB written with O_DIRECT reach the pool's block device, counted by the cgroup.
    let written = |s: &[Sample]| -> f64 {
        find(s, "lxd_disk_written_bytes_total", &[("name", "mt1")])
            .iter()
            .map(|x| x.value)
            .sum()
    };
    assert!(
        written(&after) - written(&before) >= 8.0 * 1024.0 * 1024.0,
        "disk writes went from {} to {}",
        written(&before),
        written(&after)
    );
    let lo = |s: &[Sample]| {
        find(
            s,
            "lxd_network_receive_packets_total",
            &[("name", "mt1"), ("device", "lo")],
        )[0]
        .value
    };
    assert!(
        lo(&after) >= lo(&before) + 6.0,
        "{} {}",
        lo(&before),
        lo(&after)
    );

    // ?project=: the default project has it, another has no instance.
    let p = parse(&scrape(&d, "?project=default"));
    assert!(!find(&p, "lxd_procs_total", &c1).is_empty());
    let p = parse(&scrape(&d, "?project=other"));
    assert!(find(&p, "lxd_procs_total", &[]).is_empty(), "{p:?}");

    // A stopped instance has no samples, but is still counted.
    d.set_state("mt1", "stop", true);
    let s = parse(&scrape(&d, ""));
    assert!(find(&s, "lxd_procs_total", &[("name", "mt1")]).is_empty());
    assert_eq!(
        find(&s, "lxd_instances", &[("type", "container")])[0].value,
        1.0
    );
}

#[test]
fn metrics_certificates_reach_only_metrics_over_https() {
    let d = TestDaemon::start("metrics-https");
    let (c, v) = d.api(
        "PATCH",
        "/1.0",
        Some(json!({"config": {"core.https_address": "127.0.0.1:8443"}})),
    );
    assert_eq!(c, 200, "{v}");
    let base = "https://127.0.0.1:8443";
    assert!(
        wait_until(Duration::from_secs(5), || curl_cert(
            &d,
            &format!("{base}/1.0"),
            None
        )
        .0 == 200),
        "no HTTPS listener; log:\n{}",
        d.log_text()
    );
    let (mcrt, mkey) = make_cert(&d.dir, "scraper");
    let (ccrt, ckey) = make_cert(&d.dir, "stranger");
    let pem = std::fs::read_to_string(&mcrt).expect("cert");
    let (c, v) = d.api(
        "POST",
        "/1.0/certificates",
        Some(json!({"type": "metrics", "name": "scraper", "certificate": pem})),
    );
    assert!(c == 200 || c == 201, "{v}");
    let metrics = Some((mcrt.as_path(), mkey.as_path()));

    let (c, text) = curl_cert(&d, &format!("{base}/1.0/metrics"), metrics);
    assert_eq!(c, 200, "{text}");
    let s = parse(&text);
    assert!(!find(&s, "lxd_uptime_seconds", &[]).is_empty(), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");

    // The metrics certificate reaches nothing else; untrusted callers not even metrics.
    for p in ["/1.0/instances", "/1.0/certificates", "/1.0/resources"] {
        let (c, body) = curl_cert(&d, &format!("{base}{p}"), metrics);
        assert_eq!(c, 403, "{p}: {body}");
    }
    for cert in [None, Some((ccrt.as_path(), ckey.as_path()))] {
        let (c, body) = curl_cert(&d, &format!("{base}/1.0/metrics"), cert);
        assert_eq!(c, 403, "{body}");
    }

    // core.metrics_authentication=false opens the scrape (and only it) to anyone, as LXD.
    let set = |v: &str| {
        let (c, body) = d.api(
            "PATCH",
            "/1.0",
            Some(json!({"config": {"core.metrics_authentication": v}})),
        );
        assert_eq!(c, 200, "{body}");
    };
    set("false");
    let (c, text) = curl_cert(&d, &format!("{base}/1.0/metrics"), None);
    assert_eq!(c, 200, "{text}");
    assert!(!find(&parse(&text), "lxd_uptime_seconds", &[]).is_empty());
    let (c, body) = curl_cert(&d, &format!("{base}/1.0/instances"), None);
    assert_eq!(c, 403, "{body}");
    set("true");
    let (c, body) = curl_cert(&d, &format!("{base}/1.0/metrics"), None);
    assert_eq!(c, 403, "{body}");
}

/// Every metric name and label set LXD 5.0.2 gives a running container is in silo's scrape of
/// one, so queries and dashboards written against LXD find their series.
#[test]
fn a_running_container_has_the_series_lxd_5_0_gives_it() {
    let l = silo_tests::lxd::TestLxd::start("metrics-lxd");
    let d = TestDaemon::start("metrics-vs-lxd");
    let img = busybox_image(false);
    let img0 = img[0].to_string_lossy().to_string();
    let ok = |o: std::process::Output| assert!(o.status.success(), "{}", show(&o));
    ok(l.lxc(&["image", "import", &img0, "--alias", "bb"]));
    ok(l.lxc(&["launch", "bb", "ml1"]));
    d.import(&img[0], "busybox");
    d.launch("busybox", "ml1");

    let o = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(l.dir.join("unix.socket"))
        .arg("http://lxd/1.0/metrics")
        .output()
        .expect("curl");
    let theirs = parse(&String::from_utf8_lossy(&o.stdout));
    let ours = parse(&scrape(&d, ""));
    // (name, label names) of the container's series.
    let series = |s: &[Sample]| -> std::collections::BTreeSet<(String, Vec<String>)> {
        s.iter()
            .filter(|x| x.labels.get("name").and_then(Value::as_str) == Some("ml1"))
            .map(|x| (x.name.clone(), x.labels.keys().cloned().collect()))
            .collect()
    };
    let (theirs, ours) = (series(&theirs), series(&ours));
    assert!(!theirs.is_empty(), "LXD gave no series: {}", show(&o));
    let missing: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        missing.is_empty(),
        "series LXD has and silo lacks: {missing:#?}\nsilo's: {ours:#?}"
    );
    ok(l.lxc(&["delete", "--force", "ml1"]));
}
