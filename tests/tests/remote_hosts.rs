//! silod to silod over HTTPS: two daemons in two network namespaces joined by a veth
//! (`link_netns`, 198.18.0.1 / 198.18.0.2, never any other address). silo's CLI and the stock
//! `lxc` client run inside B's namespace with their own config dirs: remotes added with the
//! trust password and with a token, instances launched on B from A's public image and on A
//! itself, private images copied with a one-time secret, a refresh after A moves its alias;
//! a certificate that changed since it was pinned, A vanishing in the middle of a copy, and an
//! untrusted client asking for A's private image.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, fingerprint_of, link_netns, show, wait_until, TestDaemon};

const PASSWORD: &str = "r3mote-pw";
const PORT: u16 = 8443;

/// A client configuration dir of the test's own, removed on drop.
struct Conf(PathBuf);

impl Conf {
    fn new(name: &str) -> Conf {
        let d = silo_tests::unique_dir(&format!("conf-{name}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("conf dir");
        Conf(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Conf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn ns_path(d: &TestDaemon) -> String {
    format!(
        "--net=/proc/{}/fd/{}",
        std::process::id(),
        d.netns.as_raw_fd()
    )
}

/// silo's CLI inside `b`'s network namespace: `local` is b's silod, the config in `conf`.
fn silo_b(b: &TestDaemon, conf: &Conf, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(ns_path(b))
        .arg(silo_tests::bin("silo"))
        .args(args)
        .env("SILO_CONF", conf.path())
        .env("SILO_SOCKET", b.socket())
        .env_remove("SILO_REMOTE")
        .env_remove("SILO_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("nsenter silo")
}

/// The stock client inside `b`'s network namespace with its own config dir.
fn lxc_b(b: &TestDaemon, conf: &Conf, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(ns_path(b))
        .arg("lxc")
        .args(args)
        .env("LXD_CONF", conf.path())
        .env_remove("LXD_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("nsenter lxc")
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {}", show(&o));
    o
}

/// A listens on 198.18.0.1:PORT with the trust password, and answers there from B's side.
fn listen(a: &TestDaemon, b: &TestDaemon) -> String {
    let (c, v) = a.api(
        "PATCH",
        "/1.0",
        Some(
            json!({"config": {"core.https_address": format!("198.18.0.1:{PORT}"),
                               "core.trust_password": PASSWORD}}),
        ),
    );
    assert_eq!(c, 200, "{v}");
    let url = format!("https://198.18.0.1:{PORT}");
    let up = wait_until(Duration::from_secs(10), || {
        let o = b.netns_cmd(&["curl", "-sk", "-o", "/dev/null", "--max-time", "5", &url]);
        o.status.code() == Some(0)
    });
    assert!(up, "A does not answer on {url}; log:\n{}", a.log_text());
    url
}

/// Two daemons, linked, A listening. Answers (A, B, A's URL).
fn pair(name: &str) -> (TestDaemon, TestDaemon, String) {
    let a = TestDaemon::start(&format!("{name}-a"));
    let b = TestDaemon::start(&format!("{name}-b"));
    link_netns(&a, &b);
    let url = listen(&a, &b);
    (a, b, url)
}

fn import(d: &TestDaemon, files: &[PathBuf], alias: &str, public: bool) -> String {
    let mut args: Vec<&str> = vec!["image", "import"];
    args.extend(files.iter().map(|f| f.to_str().expect("utf-8 path")));
    args.extend(["--alias", alias]);
    if public {
        args.push("--public");
    }
    ok(d.silo(&args), "image import");
    fingerprint_of(files)
}

/// The split busybox image with its metadata tarball recompressed: the same image under
/// another fingerprint (a third version next to the unified and the split one).
fn busybox_variant(dir: &Path) -> Vec<PathBuf> {
    let split = busybox_image(true);
    let meta = dir.join("bb-variant.meta.tar.gz");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' | gzip -1 > '{}'",
            split[0].display(),
            meta.display()
        ))
        .output()
        .expect("sh");
    assert!(o.status.success(), "recompress metadata: {}", show(&o));
    vec![meta, split[1].clone()]
}

fn images(d: &TestDaemon) -> Vec<Value> {
    d.api_ok("GET", "/1.0/images?recursion=1", None)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Anything a download would leave in the state dir's image store.
fn leftovers(d: &TestDaemon) -> Vec<String> {
    std::fs::read_dir(d.dir.join("images"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn server_fingerprint(d: &TestDaemon) -> String {
    let pem = std::fs::read(d.dir.join("server.crt")).expect("server.crt");
    let der = silo_cli::tls::cert_from_pem(&pem, "server.crt").expect("pem");
    silo_cli::tls::fingerprint(&der)
}

#[test]
fn silo_cli_on_b_uses_silod_a_launches_copies_execs_and_refreshes() {
    let (a, b, url) = pair("rh-cli");
    let conf = Conf::new("rh-cli");
    let tmp = tempfile::tempdir().expect("tmp");
    let bb_fp = import(&a, &busybox_image(false), "bb", true);
    let private = busybox_variant(tmp.path());
    let priv_fp = import(&a, &private, "secretbb", false);

    ok(
        silo_b(
            &b,
            &conf,
            &[
                "remote",
                "add",
                "a",
                &url,
                "--password",
                PASSWORD,
                "--accept-certificate",
            ],
        ),
        "remote add a",
    );
    let o = ok(
        silo_b(&b, &conf, &["remote", "list", "--format", "csv"]),
        "remote list",
    );
    assert!(
        text(&o).contains(&format!("a,{url},lxd,tls")),
        "{}",
        show(&o)
    );
    let o = ok(
        silo_b(&b, &conf, &["list", "a:", "--format", "csv"]),
        "list a:",
    );
    assert_eq!(text(&o).trim(), "", "A has no instances yet: {}", show(&o));
    let o = ok(
        silo_b(&b, &conf, &["image", "list", "a:", "--format", "csv"]),
        "image list a:",
    );
    assert!(
        text(&o).contains("bb") && text(&o).contains("secretbb"),
        "{}",
        show(&o)
    );

    // On B from A's public image: cached, its source pinned to A's certificate.
    ok(
        silo_b(&b, &conf, &["launch", "a:bb", "c1"]),
        "launch a:bb c1",
    );
    let img = b.api_ok("GET", &format!("/1.0/images/{bb_fp}"), None);
    assert_eq!(img["cached"], true, "{img}");
    assert_eq!(img["update_source"]["protocol"], "lxd", "{img}");
    assert_eq!(img["update_source"]["server"], url, "{img}");
    assert_eq!(img["update_source"]["alias"], "bb", "{img}");
    let cert = img["update_source"]["certificate"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let der = silo_cli::tls::cert_from_pem(cert.as_bytes(), "update_source").expect("pinned pem");
    assert_eq!(silo_cli::tls::fingerprint(&der), server_fingerprint(&a));
    let c1 = b.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(c1["status"], "Running", "{c1}");
    assert_eq!(c1["config"]["volatile.base_image"], bb_fp, "{c1}");
    ok(silo_b(&b, &conf, &["exec", "c1", "--", "true"]), "exec c1");
    assert!(
        a.api_ok("GET", "/1.0/instances", None)
            .as_array()
            .is_some_and(|v| v.is_empty()),
        "c1 is B's, not A's"
    );

    // A private image through a one-time secret, its aliases copied.
    ok(
        silo_b(
            &b,
            &conf,
            &["image", "copy", "a:secretbb", "local:", "--copy-aliases"],
        ),
        "image copy a:secretbb",
    );
    let img = b.api_ok("GET", &format!("/1.0/images/{priv_fp}"), None);
    assert_eq!(img["cached"], false, "{img}");
    let alias = b.api_ok("GET", "/1.0/images/aliases/secretbb", None);
    assert_eq!(alias["target"], priv_fp, "{alias}");
    // The secret was spent: A has no pending secret operation left.
    let secrets: Vec<Value> = a
        .api_ok("GET", "/1.0/operations?recursion=1", None)
        .get("running")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(
        secrets
            .iter()
            .all(|o| o["metadata"].get("secret").is_none()),
        "{secrets:?}"
    );

    // An instance on A itself, driven over TLS.
    ok(
        silo_b(&b, &conf, &["launch", "a:bb", "a:c2"]),
        "launch a:bb a:c2",
    );
    assert_eq!(a.status("c2"), "Running");
    let o = ok(
        silo_b(&b, &conf, &["exec", "a:c2", "--", "echo", "hi"]),
        "exec a:c2",
    );
    assert_eq!(text(&o), "hi\n", "{}", show(&o));
    let o = ok(
        silo_b(&b, &conf, &["list", "a:", "--format", "csv"]),
        "list a:",
    );
    assert!(text(&o).contains("c2,RUNNING"), "{}", show(&o));
    assert!(
        b.api("GET", "/1.0/instances/c2", None).0 == 404,
        "c2 is A's, not B's"
    );

    // A moves `bb` to a newer image: `silo image refresh` on B follows it.
    let new_fp = import(&a, &busybox_image(true), "bb-next", true);
    assert_ne!(new_fp, bb_fp);
    a.api_ok(
        "PUT",
        "/1.0/images/aliases/bb",
        Some(json!({"target": new_fp, "description": ""})),
    );
    let o = ok(
        silo_b(&b, &conf, &["image", "refresh", &bb_fp[..12]]),
        "image refresh",
    );
    assert!(!text(&o).contains("already up to date"), "{}", show(&o));
    let img = b.api_ok("GET", &format!("/1.0/images/{new_fp}"), None);
    assert_eq!(img["cached"], true, "{img}");
    assert_eq!(img["update_source"]["alias"], "bb", "{img}");
    let c1 = b.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(c1["config"]["volatile.base_image"], new_fp, "{c1}");
    assert_eq!(
        b.api("GET", &format!("/1.0/images/{bb_fp}"), None).0,
        404,
        "the replaced version is removed"
    );

    // A token made on A adds a second remote from B.
    let o = ok(a.silo(&["config", "trust", "add", "b-token"]), "trust add");
    let token = text(&o)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(!token.is_empty(), "{}", show(&o));
    let conf2 = Conf::new("rh-cli-token");
    ok(
        silo_b(&b, &conf2, &["remote", "add", "a2", &token]),
        "remote add a2 TOKEN",
    );
    let o = ok(
        silo_b(&b, &conf2, &["list", "a2:", "--format", "csv"]),
        "list a2:",
    );
    assert!(text(&o).contains("c2"), "{}", show(&o));
    // Single use: a second client cannot spend it again.
    let conf3 = Conf::new("rh-cli-token2");
    let o = silo_b(&b, &conf3, &["remote", "add", "a3", &token]);
    assert!(!o.status.success(), "a token used twice: {}", show(&o));

    for (d, c) in [(&b, "c1"), (&a, "c2")] {
        d.set_state(c, "stop", true);
        d.api_ok("DELETE", &format!("/1.0/instances/{c}"), None);
    }
}

#[test]
fn changed_certificate_vanishing_server_and_untrusted_clients() {
    let (mut a, b, url) = pair("rh-faults");
    let conf = Conf::new("rh-faults");
    let tmp = tempfile::tempdir().expect("tmp");
    import(&a, &busybox_image(false), "bb", true);
    let private = busybox_variant(tmp.path());
    let priv_fp = import(&a, &private, "secretbb", false);

    // An untrusted client on B's side sees the public image and not the private one, by
    // alias or by fingerprint, and cannot copy it without a secret.
    let anon = Conf::new("rh-faults-anon");
    ok(
        lxc_b(
            &b,
            &anon,
            &[
                "remote",
                "add",
                "pub",
                &url,
                "--public",
                "--accept-certificate",
            ],
        ),
        "lxc remote add --public",
    );
    let o = ok(
        lxc_b(&b, &anon, &["image", "list", "pub:", "--format", "csv"]),
        "image list",
    );
    assert!(
        text(&o).contains("bb") && !text(&o).contains("secretbb"),
        "{}",
        show(&o)
    );
    let (c, _) = curl_b(&b, &format!("{url}/1.0/images/{priv_fp}"));
    assert_eq!(c, 404, "an untrusted client must not see a private image");
    let (c, _) = curl_b(&b, &format!("{url}/1.0/images/{priv_fp}/export"));
    assert_eq!(c, 404, "nor export it");
    let (c, _) = curl_b(
        &b,
        &format!("{url}/1.0/images/{priv_fp}/export?secret=guessed"),
    );
    assert_eq!(c, 404, "nor export it with a wrong secret");
    // B's silod is an untrusted client of A too: a pull without a secret fails, by
    // fingerprint or by alias, and leaves nothing on B.
    let a_pem = std::fs::read_to_string(a.dir.join("server.crt")).expect("server.crt");
    for (key, value) in [("fingerprint", priv_fp.as_str()), ("alias", "secretbb")] {
        let mut source = json!({"type": "image", "mode": "pull", "server": url,
                                "protocol": "lxd", "certificate": a_pem});
        source[key] = json!(value);
        let (c, v) = b.api("POST", "/1.0/images", Some(json!({ "source": source })));
        assert_eq!(c, 202, "{v}");
        let o = b.wait_op(&v);
        assert_eq!(
            o["status"], "Failure",
            "pulled a private image by {key}: {o}"
        );
    }
    assert_eq!(images(&b), Vec::<Value>::new(), "B caches nothing");

    ok(
        silo_b(
            &b,
            &conf,
            &[
                "remote",
                "add",
                "a",
                &url,
                "--password",
                PASSWORD,
                "--accept-certificate",
            ],
        ),
        "remote add a",
    );
    let old_fp = server_fingerprint(&a);

    // A vanishes in the middle of a copy (the link slowed to ~4 MB/s so it is mid-way):
    // nothing is left on B.
    let deb = silo_tests::debian_image();
    let deb_fp = import(&a, std::slice::from_ref(&deb), "deb", true);
    for (d, dev) in [(&a, "silo-l0"), (&b, "silo-l1")] {
        let o = d.netns_cmd(&[
            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "32mbit", "burst", "32kb",
            "latency", "400ms",
        ]);
        assert!(o.status.success(), "tc: {}", show(&o));
    }
    let before = leftovers(&b);
    let ns = ns_path(&b);
    let (sock, cpath) = (b.socket(), conf.path().to_path_buf());
    let copy = Command::new("nsenter")
        .arg(ns)
        .arg(silo_tests::bin("silo"))
        .args(["image", "copy", "a:deb", "local:"])
        .env("SILO_CONF", &cpath)
        .env("SILO_SOCKET", &sock)
        .env_remove("SILO_REMOTE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("silo image copy");
    // Wait until B is downloading (a temporary file grows in its image store).
    let started = wait_until(Duration::from_secs(30), || {
        leftovers(&b).len() > before.len()
    });
    assert!(
        started,
        "B never started downloading; log:\n{}",
        b.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    a.keep_dir(true);
    a.stop();
    let o = copy.wait_with_output().expect("wait copy");
    assert!(
        !o.status.success(),
        "the copy succeeded without A: {}",
        show(&o)
    );
    assert!(
        b.api("GET", &format!("/1.0/images/{deb_fp}"), None).0 == 404,
        "no image record on B"
    );
    let settled = wait_until(Duration::from_secs(10), || leftovers(&b) == before);
    assert!(
        settled,
        "files left in B's image store: {:?} (before {before:?})",
        leftovers(&b)
    );
    let vols = b.api_ok("GET", "/1.0/storage-pools/default/volumes/image", None);
    assert!(
        !vols.to_string().contains(&deb_fp),
        "no image volume left on B: {vols}"
    );
    assert_eq!(images(&b), Vec::<Value>::new(), "B caches nothing");

    // A comes back with another certificate: B's pin refuses it, naming both fingerprints.
    let _ = b.netns_cmd(&["tc", "qdisc", "del", "dev", "silo-l1", "root"]);
    let _ = a.netns_cmd(&["tc", "qdisc", "del", "dev", "silo-l0", "root"]);
    let _ = std::fs::remove_file(a.dir.join("server.crt"));
    let _ = std::fs::remove_file(a.dir.join("server.key"));
    a.spawn();
    a.keep_dir(false);
    let up = wait_until(Duration::from_secs(10), || {
        b.netns_cmd(&["curl", "-sk", "-o", "/dev/null", "--max-time", "5", &url])
            .status
            .code()
            == Some(0)
    });
    assert!(up, "A listens again; log:\n{}", a.log_text());
    let new_fp = server_fingerprint(&a);
    assert_ne!(new_fp, old_fp, "A made a new certificate");
    let o = silo_b(&b, &conf, &["list", "a:"]);
    assert!(
        !o.status.success(),
        "a changed certificate was accepted: {}",
        show(&o)
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&old_fp) && e.contains(&new_fp),
        "names both fingerprints: {}",
        show(&o)
    );
    let o = silo_b(&b, &conf, &["launch", "a:bb", "c9"]);
    assert!(
        !o.status.success(),
        "launch through a changed certificate: {}",
        show(&o)
    );
    assert_eq!(images(&b), Vec::<Value>::new(), "B caches nothing");
}

/// curl inside B's namespace without a client certificate: (status, body).
fn curl_b(b: &TestDaemon, url: &str) -> (u16, String) {
    let o = b.netns_cmd(&["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", url]);
    (text(&o).trim().parse().unwrap_or(0), text(&o))
}

#[test]
fn the_stock_lxc_client_copies_and_launches_between_two_silods() {
    let (a, b, url_a) = pair("rh-lxc");
    let url_b = format!("https://198.18.0.2:{PORT}");
    let (c, v) = b.api(
        "PATCH",
        "/1.0",
        Some(
            json!({"config": {"core.https_address": format!("198.18.0.2:{PORT}"),
                               "core.trust_password": PASSWORD}}),
        ),
    );
    assert_eq!(c, 200, "{v}");
    let bb_fp = import(&a, &busybox_image(false), "bb", true);
    let conf = Conf::new("rh-lxc");
    for (name, url) in [("a", &url_a), ("b", &url_b)] {
        ok(
            lxc_b(
                &b,
                &conf,
                &[
                    "remote",
                    "add",
                    name,
                    url,
                    "--password",
                    PASSWORD,
                    "--accept-certificate",
                ],
            ),
            "lxc remote add",
        );
    }
    ok(
        lxc_b(
            &b,
            &conf,
            &["image", "copy", "a:bb", "b:", "--alias", "bb2"],
        ),
        "lxc image copy a:bb b: --alias bb2",
    );
    let alias = b.api_ok("GET", "/1.0/images/aliases/bb2", None);
    assert_eq!(alias["target"], bb_fp, "{alias}");
    // lxc sends the public image's alias as its fingerprint: the copy follows that alias.
    let img = b.api_ok("GET", &format!("/1.0/images/{bb_fp}"), None);
    assert_eq!(img["update_source"]["alias"], "bb", "{img}");
    assert_eq!(img["update_source"]["server"], url_a.as_str(), "{img}");
    ok(
        lxc_b(&b, &conf, &["launch", "a:bb", "b:c3"]),
        "lxc launch a:bb b:c3",
    );
    assert_eq!(b.status("c3"), "Running");
    let c3 = b.api_ok("GET", "/1.0/instances/c3", None);
    assert_eq!(c3["config"]["volatile.base_image"], bb_fp, "{c3}");
    let o = ok(
        lxc_b(&b, &conf, &["exec", "b:c3", "--", "echo", "hi"]),
        "lxc exec b:c3",
    );
    assert_eq!(text(&o), "hi\n");
    let o = ok(
        lxc_b(&b, &conf, &["list", "a:", "--format", "csv"]),
        "lxc list a:",
    );
    assert_eq!(text(&o).trim(), "", "{}", show(&o));
    b.set_state("c3", "stop", true);
    b.api_ok("DELETE", "/1.0/instances/c3", None);
}
