//! silod's HTTPS API and trust store: the stock `lxc` client over TLS (password and token),
//! wrong passwords, expired and reused tokens, untrusted callers, rebinding the address, and
//! the server certificate across restarts. Every client runs inside the daemon's own network
//! namespace, on its loopback.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, show, wait_until, TestDaemon};

/// The stock client with its own config dir (`conf`: a client certificate of its own),
/// inside silod's network namespace.
fn lxc_net(d: &TestDaemon, conf: &Path, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!(
            "--net=/proc/{}/fd/{}",
            std::process::id(),
            d.netns.as_raw_fd()
        ))
        .arg("lxc")
        .args(args)
        .env("LXD_CONF", conf)
        .env_remove("LXD_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("nsenter lxc")
}

/// curl inside silod's network namespace: (HTTP status, body as JSON or Null).
fn curl(d: &TestDaemon, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut args: Vec<String> = vec![
        "curl".into(),
        "-sk".into(),
        "-o".into(),
        "-".into(),
        "-w".into(),
        "\n%{http_code}".into(),
        "-X".into(),
        method.into(),
    ];
    if let Some(b) = body {
        args.push("-d".into());
        args.push(b.to_string());
    }
    args.push(url.into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = d.netns_cmd(&refs);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Whether anything accepts TCP connections on 127.0.0.1:`port` in silod's namespace.
fn port_open(d: &TestDaemon, port: u16) -> bool {
    let o = d.netns_cmd(&[
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "--max-time",
        "5",
        &format!("https://127.0.0.1:{port}/"),
    ]);
    // 7: could not connect. Anything else means something answered.
    o.status.code() != Some(7)
}

fn set_config(d: &TestDaemon, cfg: Value) -> (u16, Value) {
    d.api("PATCH", "/1.0", Some(json!({ "config": cfg })))
}

fn listen(d: &TestDaemon, port: u16) {
    let (c, v) = set_config(
        d,
        json!({"core.https_address": format!("127.0.0.1:{port}"), "core.trust_password": "s3cret"}),
    );
    assert_eq!(c, 200, "{v}");
    assert!(
        wait_until(Duration::from_secs(5), || port_open(d, port)),
        "nothing listens on {port}; log:\n{}",
        d.log_text()
    );
}

fn certificates(d: &TestDaemon) -> Vec<Value> {
    d.api_ok("GET", "/1.0/certificates?recursion=1", None)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn stock_lxc_adds_the_remote_with_password_and_token_then_launches_and_execs() {
    let d = TestDaemon::start("https-lxc");
    d.import(&busybox_image(false)[0], "busybox");
    listen(&d, 8443);
    let url = "https://127.0.0.1:8443";

    let a = d.dir.join("lxc-a");
    let o = lxc_net(
        &d,
        &a,
        &[
            "remote",
            "add",
            "s",
            url,
            "--password",
            "s3cret",
            "--accept-certificate",
        ],
    );
    assert!(o.status.success(), "remote add: {}", show(&o));
    let certs = certificates(&d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(certs[0]["type"], "client");

    let o = lxc_net(&d, &a, &["info", "s:"]);
    assert!(o.status.success(), "info: {}", show(&o));
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(info.contains("auth: trusted"), "{info}");
    // The client's own certificate makes any TLS client trusted, and it is told which one.
    let o = d.netns_cmd(&[
        "curl",
        "-sk",
        "--cert",
        &a.join("client.crt").to_string_lossy(),
        "--key",
        &a.join("client.key").to_string_lossy(),
        "https://127.0.0.1:8443/1.0",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(v["metadata"]["auth"], "trusted", "{v}");
    assert_eq!(v["metadata"]["auth_user_method"], "tls", "{v}");
    assert_eq!(
        v["metadata"]["auth_user_name"], certs[0]["fingerprint"],
        "{v}"
    );
    let fp = d.api_ok("GET", "/1.0", None)["environment"]["certificate_fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(fp.len(), 64, "{fp}");
    assert!(
        info.contains(&fp),
        "lxc info shows the server certificate: {info}"
    );

    let o = lxc_net(&d, &a, &["launch", "s:busybox", "s:c1"]);
    assert!(o.status.success(), "launch: {}", show(&o));
    let o = lxc_net(&d, &a, &["list", "s:", "--format", "csv", "-c", "ns"]);
    assert!(o.status.success(), "list: {}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("c1,RUNNING"),
        "{}",
        show(&o)
    );
    let o = lxc_net(&d, &a, &["exec", "s:c1", "--", "echo", "hi"]);
    assert!(o.status.success(), "exec: {}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "hi");

    // The token flow: the stock client makes the token over the unix socket...
    let o = d.lxc(&["config", "trust", "add", "--name", "cli1"]);
    assert!(o.status.success(), "trust add: {}", show(&o));
    let token = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string();
    let o = d.lxc(&["config", "trust", "list-tokens", "--format", "csv"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("cli1"),
        "list-tokens: {}",
        show(&o)
    );
    // ...and another client joins with it.
    let b = d.dir.join("lxc-b");
    let o = lxc_net(
        &d,
        &b,
        &["remote", "add", "s2", &token, "--accept-certificate"],
    );
    assert!(o.status.success(), "remote add with a token: {}", show(&o));
    let o = lxc_net(&d, &b, &["list", "s2:", "--format", "csv", "-c", "n"]);
    assert!(
        o.status.success(),
        "list over the token's trust: {}",
        show(&o)
    );
    assert!(certificates(&d).iter().any(|c| c["name"] == "cli1"));

    // Used once, the token is gone.
    let c = d.dir.join("lxc-c");
    let o = lxc_net(
        &d,
        &c,
        &["remote", "add", "s3", &token, "--accept-certificate"],
    );
    assert!(!o.status.success(), "a reused token was accepted");
    assert_eq!(certificates(&d).len(), 2);

    // A removed certificate is untrusted at its next request.
    let fp_b = certificates(&d)
        .iter()
        .find(|c| c["name"] == "cli1")
        .and_then(|c| c["fingerprint"].as_str().map(str::to_string))
        .expect("cli1's certificate");
    let o = d.lxc(&["config", "trust", "remove", &fp_b]);
    assert!(o.status.success(), "trust remove: {}", show(&o));
    let o = lxc_net(&d, &b, &["list", "s2:"]);
    assert!(!o.status.success(), "a removed client still lists");

    let o = lxc_net(&d, &a, &["delete", "--force", "s:c1"]);
    assert!(o.status.success(), "delete: {}", show(&o));
}

#[test]
fn wrong_passwords_are_refused_add_nothing_and_are_rate_limited() {
    let d = TestDaemon::start("https-badpw");
    listen(&d, 8443);
    let url = "https://127.0.0.1:8443/1.0/certificates";
    for i in 0..5 {
        let (c, v) = curl(
            &d,
            "POST",
            url,
            Some(json!({"type": "client", "password": format!("wrong{i}")})),
        );
        assert_eq!(c, 403, "attempt {i}: {v}");
        assert_eq!(v["error"], "not authorized", "{v}");
    }
    let (c, v) = curl(
        &d,
        "POST",
        url,
        Some(json!({"type": "client", "password": "s3cret"})),
    );
    assert_eq!(c, 429, "the sixth try within a minute: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("too many wrong trust passwords"),
        "{v}"
    );
    assert!(
        certificates(&d).is_empty(),
        "a wrong password added a certificate"
    );
    // The limit is per address: the stock client over ::1 still gets in with the right one.
    let (c, v) = set_config(&d, json!({"core.https_address": "[::1]:8444"}));
    assert_eq!(c, 200, "{v}");
    let a = d.dir.join("lxc-a");
    let o = lxc_net(
        &d,
        &a,
        &[
            "remote",
            "add",
            "s",
            "https://[::1]:8444",
            "--password",
            "s3cret",
            "--accept-certificate",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(certificates(&d).len(), 1);
}

#[test]
fn untrusted_clients_get_403_and_only_public_images() {
    let d = TestDaemon::start("https-untrusted");
    let img = busybox_image(false);
    d.import(&img[0], "busybox");
    let private_fp = d.api_ok("GET", "/1.0/images/aliases/busybox", None)["target"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    listen(&d, 8443);
    let base = "https://127.0.0.1:8443";

    let (c, v) = curl(&d, "GET", &format!("{base}/1.0"), None);
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["metadata"]["auth"], "untrusted");
    assert_eq!(v["metadata"]["environment"]["server_pid"], 0, "{v}");
    assert!(
        v["metadata"]["config"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{v}"
    );
    for (m, p) in [
        ("GET", "/1.0/instances"),
        ("GET", "/1.0/containers"),
        ("GET", "/1.0/certificates"),
        ("GET", "/1.0/events"),
        ("GET", "/1.0/operations"),
        ("GET", "/1.0/storage-pools"),
        ("PUT", "/1.0"),
        ("POST", "/1.0/instances"),
        ("DELETE", &format!("/1.0/images/{private_fp}")),
        ("POST", &format!("/1.0/images/{private_fp}/secret")),
    ] {
        let (c, v) = curl(&d, m, &format!("{base}{p}"), Some(json!({})));
        assert_eq!(c, 403, "{m} {p}: {v}");
        assert_eq!(v["error"], "not authorized", "{m} {p}: {v}");
        assert_eq!(v["error_code"], 403, "{m} {p}: {v}");
    }
    // Private images do not show, by listing, fingerprint, prefix, alias or export.
    let (c, v) = curl(&d, "GET", &format!("{base}/1.0/images"), None);
    assert_eq!((c, v["metadata"].clone()), (200, json!([])), "{v}");
    for p in [
        format!("/1.0/images/{private_fp}"),
        format!("/1.0/images/{}", &private_fp[..8]),
        format!("/1.0/images/{private_fp}/export"),
        "/1.0/images/aliases/busybox".to_string(),
    ] {
        let (c, v) = curl(&d, "GET", &format!("{base}{p}"), None);
        assert_eq!(c, 404, "{p}: {v}");
    }
    let (_, v) = curl(&d, "GET", &format!("{base}/1.0/images/aliases"), None);
    assert_eq!(v["metadata"], json!([]), "{v}");

    // A one-time secret lets one private download through.
    let op = d
        .api("POST", &format!("/1.0/images/{private_fp}/secret"), None)
        .1;
    let secret = op["metadata"]["metadata"]["secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(secret.len(), 64, "{op}");
    let (c, _) = curl(
        &d,
        "GET",
        &format!("{base}/1.0/images/{private_fp}?secret={secret}"),
        None,
    );
    assert_eq!(c, 200);
    let o = d.netns_cmd(&[
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/1.0/images/{private_fp}/export?secret={secret}"),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200");
    let o = d.netns_cmd(&[
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/1.0/images/{private_fp}/export?secret={secret}"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "404",
        "a used secret worked twice"
    );

    // Made public, the image and its alias are readable.
    d.api_ok(
        "PATCH",
        &format!("/1.0/images/{private_fp}"),
        Some(json!({"public": true})),
    );
    let (c, v) = curl(&d, "GET", &format!("{base}/1.0/images?recursion=1"), None);
    assert_eq!(c, 200);
    assert_eq!(v["metadata"][0]["fingerprint"], private_fp.as_str(), "{v}");
    let (c, v) = curl(
        &d,
        "GET",
        &format!("{base}/1.0/images/aliases/busybox"),
        None,
    );
    assert_eq!(
        (c, v["metadata"]["target"].clone()),
        (200, json!(private_fp))
    );
    let o = d.netns_cmd(&[
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/1.0/images/{private_fp}/export"),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200");
}

#[test]
fn https_address_rebinds_at_once_refuses_busy_and_low_ports_and_clears() {
    let d = TestDaemon::start("https-rebind");
    listen(&d, 8443);
    let (c, v) = set_config(&d, json!({"core.https_address": "127.0.0.1:9443"}));
    assert_eq!(c, 200, "{v}");
    assert!(port_open(&d, 9443), "the new port is not open");
    assert!(!port_open(&d, 8443), "the old port still accepts");

    // A busy port: 400 naming it, and the old listener keeps serving.
    let busy = silo_tests::in_netns(&d.netns, || {
        std::net::TcpListener::bind("127.0.0.1:10443").expect("bind a busy port")
    });
    let (c, v) = set_config(&d, json!({"core.https_address": "127.0.0.1:10443"}));
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1:10443"),
        "{v}"
    );
    assert!(
        port_open(&d, 9443),
        "a failed rebind closed the old listener"
    );
    let cfg = d.api_ok("GET", "/1.0", None)["config"].clone();
    assert_eq!(cfg["core.https_address"], "127.0.0.1:9443", "{cfg}");
    drop(busy);

    // A privileged port is refused with a reason.
    let (c, v) = set_config(&d, json!({"core.https_address": "127.0.0.1:443"}));
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("privileged"),
        "{v}"
    );
    assert!(port_open(&d, 9443));

    // The forms LXD takes: a bare port on every address.
    let (c, v) = set_config(&d, json!({"core.https_address": ":11443"}));
    assert_eq!(c, 200, "{v}");
    assert!(port_open(&d, 11443) && !port_open(&d, 9443));
    let addrs = d.api_ok("GET", "/1.0", None)["environment"]["addresses"].clone();
    assert!(
        addrs
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "127.0.0.1:11443")),
        "{addrs}"
    );

    // The same port on an overlapping address: the old listener hands over.
    let (c, v) = set_config(&d, json!({"core.https_address": "127.0.0.1:11443"}));
    assert_eq!(c, 200, "{v}");
    assert!(port_open(&d, 11443));
    // ...and when the new one cannot be bound even then, the old one is back.
    let busy6 = silo_tests::in_netns(&d.netns, || {
        std::net::TcpListener::bind("[::1]:11443").expect("bind [::1]")
    });
    let (c, v) = set_config(&d, json!({"core.https_address": "[::]:11443"}));
    assert_eq!(c, 400, "{v}");
    assert!(port_open(&d, 11443), "the old listener did not come back");
    assert_eq!(
        d.api_ok("GET", "/1.0", None)["config"]["core.https_address"],
        "127.0.0.1:11443"
    );
    drop(busy6);

    // Cleared: nothing listens.
    let (c, v) = set_config(&d, json!({"core.https_address": ""}));
    assert_eq!(c, 200, "{v}");
    assert!(!port_open(&d, 11443), "still listening after clearing");
}

#[test]
fn server_certificate_is_made_once_and_survives_restart() {
    let mut d = TestDaemon::start("https-cert");
    let env = d.api_ok("GET", "/1.0", None)["environment"].clone();
    let fp = env["certificate_fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(fp.len(), 64, "{env}");
    assert!(
        env["certificate"]
            .as_str()
            .unwrap_or_default()
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "{env}"
    );
    let key = std::fs::metadata(d.dir.join("server.key")).expect("server.key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    let o = d.silo(&["info"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&fp),
        "silo info: {}",
        show(&o)
    );
    // Served over TLS too: the certificate a client sees is the one GET /1.0 names.
    listen(&d, 8443);
    let o = d.netns_cmd(&[
        "sh",
        "-c",
        "openssl s_client -connect 127.0.0.1:8443 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
    ]);
    let seen = String::from_utf8_lossy(&o.stdout)
        .replace(':', "")
        .to_lowercase();
    assert!(seen.contains(&fp), "TLS shows {seen}, GET /1.0 {fp}");

    d.keep_dir(true);
    d.stop();
    d.spawn();
    d.keep_dir(false);
    let again = d.api_ok("GET", "/1.0", None)["environment"]["certificate_fingerprint"].clone();
    assert_eq!(
        again,
        json!(fp),
        "the server certificate changed across a restart"
    );
    // The address is served again at start.
    assert!(wait_until(Duration::from_secs(5), || port_open(&d, 8443)));
}

fn last_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn expired_and_revoked_tokens_are_refused_and_silo_tokens_work_with_lxc() {
    let d = TestDaemon::start("https-token-expiry");
    listen(&d, 8443);
    // A token silo's CLI prints is one the stock client takes.
    let o = d.silo(&["config", "trust", "add", "ok1"]);
    assert!(o.status.success(), "silo config trust add: {}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("Client ok1 certificate add token:"));
    let z = d.dir.join("lxc-z");
    let o = lxc_net(
        &d,
        &z,
        &["remote", "add", "s", &last_line(&o), "--accept-certificate"],
    );
    assert!(
        o.status.success(),
        "lxc remote add with silo's token: {}",
        show(&o)
    );
    let o = lxc_net(&d, &z, &["list", "s:"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(certificates(&d).len(), 1);

    let (c, v) = set_config(&d, json!({"core.remote_token_expiry": "2S"}));
    assert_eq!(c, 200, "{v}");
    let o = d.silo(&["config", "trust", "add", "late"]);
    assert!(o.status.success(), "silo config trust add: {}", show(&o));
    let token = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string();
    let o = d.silo(&["config", "trust", "list-tokens"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("late"),
        "{}",
        show(&o)
    );
    std::thread::sleep(Duration::from_secs(3));
    let a = d.dir.join("lxc-a");
    let o = lxc_net(
        &d,
        &a,
        &["remote", "add", "s", &token, "--accept-certificate"],
    );
    assert!(
        !o.status.success(),
        "an expired token was accepted: {}",
        show(&o)
    );
    assert_eq!(certificates(&d).len(), 1);
    let o = d.silo(&["config", "trust", "list-tokens"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("late"),
        "{}",
        show(&o)
    );

    // A revoked token is refused too.
    let o = d.silo(&["config", "trust", "add", "gone"]);
    let token = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string();
    let o = d.silo(&["config", "trust", "revoke-token", "gone"]);
    assert!(o.status.success(), "revoke-token: {}", show(&o));
    let o = lxc_net(
        &d,
        &a,
        &["remote", "add", "s", &token, "--accept-certificate"],
    );
    assert!(!o.status.success(), "a revoked token was accepted");
    assert_eq!(certificates(&d).len(), 1);
}

#[test]
fn silo_config_trust_adds_shows_edits_and_removes_certificates() {
    let d = TestDaemon::start("https-trust-cli");
    let crt = d.dir.join("desk.crt");
    let key = d.dir.join("desk.key");
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
            "/CN=desk-cn",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", show(&o));
    let crt_s = crt.to_string_lossy().to_string();

    let o = d.silo(&["config", "trust", "add", &crt_s, "--restricted"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("projects"),
        "{}",
        show(&o)
    );
    let o = d.silo(&["config", "trust", "add", &crt_s, "--type", "nonsense"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(certificates(&d).is_empty());

    let o = d.silo(&["config", "trust", "add", &crt_s]);
    assert!(o.status.success(), "{}", show(&o));
    let certs = certificates(&d);
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["name"], "desk-cn", "the common name names it");
    let fp = certs[0]["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let o = d.silo(&["config", "trust", "add", &crt_s]);
    assert!(!o.status.success(), "added twice: {}", show(&o));

    let o = d.silo(&["config", "trust", "list", "--format", "csv"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.contains(&format!("client,desk-cn,desk-cn,{}", &fp[..12])),
        "{text}"
    );
    let o = d.silo(&["config", "trust", "show", &fp[..10]]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("BEGIN CERTIFICATE"),
        "{}",
        show(&o)
    );

    let mut child = Command::new(silo_tests::bin("silo"))
        .args(["config", "trust", "edit", &fp])
        .env("SILO_SOCKET", d.socket())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("silo");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"name: desk2\ntype: metrics\n")
            .expect("write");
    }
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", show(&o));
    let certs = certificates(&d);
    assert_eq!(
        (certs[0]["name"].clone(), certs[0]["type"].clone()),
        (json!("desk2"), json!("metrics"))
    );
    // PATCH changes only what it names (a null is not a change); PUT takes LXD's object
    // with fields it does not know.
    let path = format!("/1.0/certificates/{fp}");
    d.api_ok("PATCH", &path, Some(json!({"name": "desk3", "type": null})));
    let cert = d.api_ok("GET", &path, None);
    assert_eq!(
        (cert["name"].clone(), cert["type"].clone()),
        (json!("desk3"), json!("metrics"))
    );
    d.api_ok(
        "PUT",
        &path,
        Some(json!({"name": "desk4", "type": "client", "projects": null, "description": "x"})),
    );
    let cert = d.api_ok("GET", &path, None);
    assert_eq!(
        (cert["name"].clone(), cert["type"].clone()),
        (json!("desk4"), json!("client"))
    );
    // LXD's certificate_update: PUT with another certificate replaces it in the entry.
    let crt2 = d.dir.join("desk2.crt");
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
            "/CN=desk2-cn",
            "-keyout",
        ])
        .arg(d.dir.join("desk2.key"))
        .arg("-out")
        .arg(&crt2)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", show(&o));
    let pem2 = std::fs::read_to_string(&crt2).expect("desk2.crt");
    d.api_ok(
        "PUT",
        &path,
        Some(json!({"name": "desk4", "type": "client", "certificate": pem2})),
    );
    let certs = certificates(&d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_ne!(certs[0]["fingerprint"], json!(fp), "replaced");
    assert_eq!(certs[0]["name"], "desk4");
    assert_eq!(
        d.api("GET", &path, None).0,
        404,
        "the old fingerprint is gone"
    );
    let fp = certs[0]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let (c, v) = d.api(
        "PUT",
        &format!("/1.0/certificates/{fp}"),
        Some(json!({"name": "x", "type": "client", "certificate": "not a certificate"})),
    );
    assert_eq!(c, 400, "{v}");

    let o = d.silo(&["config", "trust", "remove", &fp]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(certificates(&d).is_empty());
    let o = d.silo(&["config", "trust", "remove", &fp]);
    assert!(!o.status.success());
}

#[test]
fn a_privileged_port_is_bound_by_silo_net_only_where_the_policy_lists_it() {
    let mut d = TestDaemon::start_with_policy("https-lowport", "https_privileged_ports = [443]\n");
    let (c, v) = set_config(&d, json!({"core.https_address": "127.0.0.1:443"}));
    assert_eq!(c, 200, "{v}; log:\n{}", d.log_text());
    let (c, v) = curl(&d, "GET", "https://127.0.0.1:443/1.0", None);
    assert_eq!(
        (c, v["metadata"]["auth"].clone()),
        (200, json!("untrusted")),
        "{v}"
    );
    // A port the policy does not list: refused with the key that would allow it.
    let (c, v) = set_config(&d, json!({"core.https_address": "127.0.0.1:444"}));
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("https_privileged_ports"),
        "{v}"
    );
    assert!(port_open(&d, 443), "a refused change closed the listener");
    // Kept across a restart: silo-net binds it again at start.
    d.keep_dir(true);
    d.stop();
    d.spawn();
    d.keep_dir(false);
    assert!(
        wait_until(Duration::from_secs(5), || port_open(&d, 443)),
        "log:\n{}",
        d.log_text()
    );
    let (c, _) = set_config(&d, json!({"core.https_address": ""}));
    assert_eq!(c, 200);
    assert!(!port_open(&d, 443));
}
