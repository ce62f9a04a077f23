//! `silo remote ...` and `remote:name` against a real LXD 5.0.2 (tests/src/lxd.rs): adding a
//! remote with the trust password or a token, refusals that leave nothing behind, a server
//! certificate that changed since it was pinned, and listing instances and images on it.

use std::path::{Path, PathBuf};

use silo_tests::lxd::{TestLxd, TRUST_PASSWORD};
use silo_tests::show;

/// A client configuration directory of the test's own, removed on drop.
struct Conf(PathBuf);

impl Conf {
    fn new(name: &str) -> Conf {
        let d = silo_tests::unique_dir(&format!("conf-{name}"));
        let _ = std::fs::remove_dir_all(&d);
        Conf(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn config_yml(&self) -> String {
        std::fs::read_to_string(self.0.join("config.yml")).unwrap_or_default()
    }
    fn pinned(&self, remote: &str) -> PathBuf {
        self.0.join("servercerts").join(format!("{remote}.crt"))
    }
}

impl Drop for Conf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Standard base64 of `s` (coreutils' base64, as LXD encodes its tokens).
fn base64(s: &str) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("base64");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(s.as_bytes())
        .expect("write");
    let o = c.wait_with_output().expect("base64");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Runs silo with no server around (remote management only touches config.yml).
fn silo(conf: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(silo_tests::bin("silo"))
        .env("SILO_CONF", conf)
        .env("SILO_SOCKET", conf.join("no-silod.socket"))
        .env_remove("SILO_REMOTE")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("silo")
}

#[test]
fn remote_add_with_password_lists_instances_and_images_and_refuses_a_changed_cert() {
    let lxd = TestLxd::start("rpw");
    let conf = Conf::new("rpw");
    let bb = silo_tests::busybox_image(false);
    let file = bb[0].to_str().expect("utf-8 path");
    let o = lxd.lxc(&["image", "import", file, "--alias", "bbremote"]);
    assert!(o.status.success(), "lxc image import: {}", show(&o));

    // Declining the certificate adds nothing.
    let o = lxd.silo(
        conf.path(),
        &[
            "remote",
            "add",
            "s",
            &lxd.url(),
            "--password",
            TRUST_PASSWORD,
        ],
        Some("n\n"),
    );
    assert!(!o.status.success(), "declined add succeeded: {}", show(&o));
    assert!(err(&o).contains("NACKed"), "{}", show(&o));
    assert!(
        text(&o).contains(&lxd.fingerprint()),
        "the prompt shows the fingerprint: {}",
        show(&o)
    );
    assert!(!conf.pinned("s").exists());
    assert!(!conf.config_yml().contains("127.0.0.1"));

    // Accepting it (by typing the fingerprint, as lxc allows) adds and pins it.
    let answer = format!("{}\n", lxd.fingerprint());
    let o = lxd.silo(
        conf.path(),
        &[
            "remote",
            "add",
            "s",
            &lxd.url(),
            "--password",
            TRUST_PASSWORD,
        ],
        Some(&answer),
    );
    assert!(o.status.success(), "remote add: {}", show(&o));
    assert!(
        text(&o).contains("Client certificate now trusted by server: s"),
        "{}",
        show(&o)
    );
    let yml = conf.config_yml();
    assert!(yml.contains("addr: https://127.0.0.1:8443"), "{yml}");
    assert!(
        yml.contains("auth_type: tls") && yml.contains("protocol: lxd"),
        "{yml}"
    );
    let pem = std::fs::read(conf.pinned("s")).expect("pinned cert");
    let der = silo_cli::tls::cert_from_pem(&pem, "s.crt").expect("pem");
    assert_eq!(silo_cli::tls::fingerprint(&der), lxd.fingerprint());
    // The client key is private to its owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(conf.path().join("client.key"))
        .expect("client.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "client.key mode {mode:o}");
    // LXD now trusts our certificate.
    let o = lxd.lxc(&["config", "trust", "list", "--format", "csv"]);
    assert!(
        o.status.success() && !text(&o).trim().is_empty(),
        "{}",
        show(&o)
    );

    // The stock lxc client reads the config.yml we wrote: same layout.
    let o = std::process::Command::new("lxc")
        .env("LXD_CONF", conf.path())
        .args(["remote", "list", "--format", "csv"])
        .output()
        .expect("lxc");
    assert!(
        o.status.success(),
        "lxc remote list on silo's config: {}",
        show(&o)
    );
    assert!(
        text(&o).contains("s,https://127.0.0.1:8443,lxd,tls,NO,NO,NO"),
        "{}",
        show(&o)
    );

    let o = lxd.silo(conf.path(), &["list", "s:", "--format", "csv"], None);
    assert!(o.status.success(), "silo list s: {}", show(&o));
    assert_eq!(text(&o).trim(), "", "LXD has no instances: {}", show(&o));
    let o = lxd.silo(
        conf.path(),
        &["image", "list", "s:", "--format", "csv"],
        None,
    );
    assert!(o.status.success(), "silo image list s: {}", show(&o));
    assert!(text(&o).contains("bbremote"), "{}", show(&o));
    let o = lxd.silo(conf.path(), &["info", "s:"], None);
    assert!(
        o.status.success() && text(&o).contains("auth: trusted"),
        "{}",
        show(&o)
    );
    let o = lxd.silo(conf.path(), &["profile", "show", "s:default"], None);
    assert!(
        o.status.success() && text(&o).contains("pool: default"),
        "{}",
        show(&o)
    );

    // Another certificate in place of the pinned one: refused, naming both fingerprints.
    let (other, _) = silo_cli::tls::generate_client_cert().expect("cert");
    std::fs::write(conf.pinned("s"), &other).expect("replace pinned cert");
    let other_der = silo_cli::tls::cert_from_pem(other.as_bytes(), "x").expect("pem");
    let other_fp = silo_cli::tls::fingerprint(&other_der);
    let o = lxd.silo(conf.path(), &["list", "s:"], None);
    assert!(
        !o.status.success(),
        "a changed certificate was accepted: {}",
        show(&o)
    );
    let e = err(&o);
    assert!(e.contains("changed"), "{e}");
    assert!(e.contains(&other_fp), "names the pinned fingerprint: {e}");
    assert!(
        e.contains(&lxd.fingerprint()),
        "names the presented fingerprint: {e}"
    );
}

#[test]
fn remote_add_wrong_password_leaves_nothing_and_token_add_works() {
    let lxd = TestLxd::start("rtok");
    let conf = Conf::new("rtok");
    let o = lxd.silo(
        conf.path(),
        &[
            "remote",
            "add",
            "s",
            &lxd.url(),
            "--password",
            "wrong",
            "--accept-certificate",
        ],
        None,
    );
    assert!(!o.status.success(), "wrong password accepted: {}", show(&o));
    assert!(!conf.pinned("s").exists(), "a pinned cert was left behind");
    assert!(
        !conf.config_yml().contains("127.0.0.1"),
        "{}",
        conf.config_yml()
    );
    let o = silo(conf.path(), &["remote", "list", "--format", "csv"]);
    assert!(!text(&o).contains("127.0.0.1"), "{}", show(&o));

    // A token from `lxc config trust add`.
    let o = lxd.lxc(&["config", "trust", "add", "--name", "silo-t1"]);
    assert!(o.status.success(), "lxc config trust add: {}", show(&o));
    let token = text(&o)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string();
    let decoded = silo_cli::remotes::CertificateToken::decode(&token).expect("LXD's token decodes");
    assert_eq!(decoded.fingerprint, lxd.fingerprint());
    assert_eq!(decoded.client_name, "silo-t1");
    // The same token claiming another server certificate: refused before anything is sent.
    let mut forged: serde_json::Value = serde_json::to_value(&decoded).expect("json");
    forged["fingerprint"] = serde_json::Value::String("00".repeat(32));
    let forged = base64(&forged.to_string());
    let o = lxd.silo(conf.path(), &["remote", "add", "t", &forged], None);
    assert!(
        !o.status.success(),
        "a forged token was accepted: {}",
        show(&o)
    );
    assert!(err(&o).contains("fingerprint mismatch"), "{}", show(&o));
    assert!(err(&o).contains(&lxd.fingerprint()), "{}", show(&o));
    assert!(!conf.pinned("t").exists());

    let o = lxd.silo(conf.path(), &["remote", "add", "t", &token], None);
    assert!(o.status.success(), "remote add with a token: {}", show(&o));
    assert!(conf.pinned("t").exists());
    let o = lxd.silo(conf.path(), &["info", "t:"], None);
    assert!(
        o.status.success() && text(&o).contains("auth: trusted"),
        "{}",
        show(&o)
    );
    let o = lxd.lxc(&["config", "trust", "list", "--format", "csv"]);
    assert!(text(&o).contains("silo-t1"), "{}", show(&o));

    // The token is single-use: a second client cannot use it.
    let conf2 = Conf::new("rtok2");
    let o = lxd.silo(conf2.path(), &["remote", "add", "t", &token], None);
    assert!(
        !o.status.success(),
        "a used token was accepted: {}",
        show(&o)
    );
    assert!(!conf2.pinned("t").exists(), "a pinned cert was left behind");
    assert!(!conf2.config_yml().contains("127.0.0.1"));
}

#[test]
fn remote_management_and_static_remotes() {
    let conf = Conf::new("rmgmt");
    let o = silo(conf.path(), &["remote", "list", "--format", "csv"]);
    assert!(o.status.success(), "{}", show(&o));
    let t = text(&o);
    assert!(
        t.contains("local (current),unix://,lxd,file access,NO,YES,NO"),
        "{t}"
    );
    assert!(
        t.contains("images,https://images.linuxcontainers.org,simplestreams,none,YES,NO,NO"),
        "{t}"
    );
    assert!(
        t.contains("ubuntu,https://cloud-images.ubuntu.com/releases,simplestreams"),
        "{t}"
    );
    assert!(
        t.contains("ubuntu-daily,https://cloud-images.ubuntu.com/daily"),
        "{t}"
    );
    assert_eq!(
        text(&silo(conf.path(), &["remote", "get-default"])).trim(),
        "local"
    );

    // A config.yml the stock lxc wrote is silo's too (the simplestreams fast path of
    // `lxc remote add` does not connect anywhere).
    std::fs::create_dir_all(conf.path()).expect("conf dir");
    let o = std::process::Command::new("lxc")
        .env("LXD_CONF", conf.path())
        .args([
            "remote",
            "add",
            "fromlxc",
            "https://127.0.0.1:9/lxc",
            "--protocol",
            "simplestreams",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("lxc");
    assert!(o.status.success(), "lxc remote add: {}", show(&o));
    let t = text(&silo(conf.path(), &["remote", "list", "--format", "csv"]));
    assert!(
        t.contains("fromlxc,https://127.0.0.1:9/lxc,simplestreams,none,YES,NO,NO"),
        "{t}"
    );
    assert!(t.contains("local (current),unix://"), "{t}");

    for args in [
        &["remote", "remove", "local"][..],
        &["remote", "remove", "ubuntu"],
        &["remote", "rename", "ubuntu-daily", "x"],
        &["remote", "set-url", "local", "https://10.0.0.1"],
    ] {
        let o = silo(conf.path(), args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(
            err(&o).contains("is static and cannot be modified"),
            "{args:?}: {}",
            show(&o)
        );
    }

    // As lxc, `remote add` keeps a simplestreams remote it cannot reach (with a warning).
    let add = [
        "remote",
        "add",
        "ss",
        "https://127.0.0.1:9/streams",
        "--protocol",
        "simplestreams",
    ];
    let o = silo(conf.path(), &add);
    assert!(
        o.status.success() && err(&o).contains("cannot reach"),
        "{}",
        show(&o)
    );
    assert!(conf.config_yml().contains("127.0.0.1:9/streams"));
    let o = silo(conf.path(), &add);
    assert!(
        !o.status.success() && err(&o).contains("exists"),
        "{}",
        show(&o)
    );
    let o = silo(conf.path(), &["remote", "remove", "ss"]);
    assert!(o.status.success(), "{}", show(&o));
    // The one lxc wrote stands in for it.
    let o = silo(conf.path(), &["remote", "rename", "fromlxc", "ss"]);
    assert!(o.status.success(), "{}", show(&o));
    // A simplestreams remote has no instances.
    let o = silo(conf.path(), &["list", "ss:"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        err(&o).contains("simplestreams image server"),
        "{}",
        show(&o)
    );
    // Its images are read from its index, here unreachable: said as such.
    let o = silo(conf.path(), &["image", "list", "ss:"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(err(&o).contains("cannot reach"), "{}", show(&o));
    // And it cannot be written to.
    let o = silo(conf.path(), &["image", "delete", "ss:x"]);
    assert!(
        !o.status.success() && err(&o).contains("read-only"),
        "{}",
        show(&o)
    );
    let o = silo(conf.path(), &["list", "nope:"]);
    assert!(
        err(&o).contains("The remote \"nope\" doesn't exist"),
        "{}",
        show(&o)
    );

    assert!(silo(conf.path(), &["remote", "switch", "ss"])
        .status
        .success());
    assert_eq!(
        text(&silo(conf.path(), &["remote", "get-default"])).trim(),
        "ss"
    );
    let o = silo(conf.path(), &["remote", "remove", "ss"]);
    assert!(
        err(&o).contains("Can't remove the default remote"),
        "{}",
        show(&o)
    );
    let o = silo(conf.path(), &["remote", "rename", "ss", "mine"]);
    assert!(o.status.success(), "{}", show(&o));
    // Renaming the default remote moves the default with it.
    assert_eq!(
        text(&silo(conf.path(), &["remote", "get-default"])).trim(),
        "mine"
    );
    let o = silo(
        conf.path(),
        &["remote", "set-url", "mine", "https://127.0.0.1:10/s"],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        conf.config_yml().contains("addr: https://127.0.0.1:10/s"),
        "{}",
        conf.config_yml()
    );
    assert!(silo(conf.path(), &["remote", "switch", "local"])
        .status
        .success());
    let o = silo(conf.path(), &["remote", "remove", "mine"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = silo(conf.path(), &["remote", "remove", "images"]);
    assert!(
        o.status.success(),
        "images is a default, not static: {}",
        show(&o)
    );
    let t = text(&silo(conf.path(), &["remote", "list", "--format", "csv"]));
    assert!(!t.contains("mine") && !t.contains("images,"), "{t}");
    assert!(t.contains("ubuntu,"), "static remotes stay: {t}");
}

/// Adds `lxd` as remote `name` with the trust password.
fn add_remote(lxd: &TestLxd, conf: &Conf, name: &str, url: &str) {
    let o = lxd.silo(
        conf.path(),
        &[
            "remote",
            "add",
            name,
            url,
            "--password",
            TRUST_PASSWORD,
            "--accept-certificate",
        ],
        None,
    );
    assert!(o.status.success(), "remote add {name}: {}", show(&o));
}

#[test]
fn image_copy_and_init_from_a_private_image_on_another_lxd() {
    let a = TestLxd::start("rsrc");
    let b = TestLxd::start_beside("rdst", &a);
    let conf = Conf::new("rcopy");
    add_remote(&a, &conf, "a", &a.url());
    add_remote(&a, &conf, "b", &b.url());
    let unified = silo_tests::busybox_image(false);
    let split = silo_tests::busybox_image(true);
    let files: Vec<&str> = split.iter().map(|p| p.to_str().expect("utf-8")).collect();
    let o = a.lxc(&[
        "image",
        "import",
        unified[0].to_str().expect("utf-8"),
        "--alias",
        "bbsrc",
    ]);
    assert!(o.status.success(), "import: {}", show(&o));
    let mut args = vec!["image", "import"];
    args.extend(&files);
    args.extend(["--alias", "bbsplit"]);
    let o = a.lxc(&args);
    assert!(o.status.success(), "import split: {}", show(&o));
    let fp = silo_tests::fingerprint_of(&unified);

    // Private on a: the copy needs the one-time secret silo asks a for.
    let o = a.silo(
        conf.path(),
        &[
            "image",
            "copy",
            "a:bbsrc",
            "b:",
            "--alias",
            "copied",
            "--auto-update",
        ],
        None,
    );
    assert!(
        o.status.success(),
        "image copy: {}\n{}",
        show(&o),
        b.log_text()
    );
    assert!(
        text(&o).contains("Image copied successfully!"),
        "{}",
        show(&o)
    );
    let o = b.lxc(&["image", "show", "copied"]);
    assert!(o.status.success(), "{}", show(&o));
    let shown = text(&o);
    assert!(shown.contains("auto_update: true"), "{shown}");
    let o = b.lxc(&["query", &format!("/1.0/images/{fp}")]);
    let info = text(&o);
    // The same image (by fingerprint: lxc copies by fingerprint, so LXD records no update
    // source for it) with the new alias.
    assert!(
        info.contains(&fp) && info.contains("\"copied\""),
        "{}",
        show(&o)
    );
    let o = a.silo(
        conf.path(),
        &["image", "list", "b:", "--format", "csv"],
        None,
    );
    assert!(text(&o).contains("copied"), "{}", show(&o));

    // init from a's image onto b: b pulls it (as a cached image) and creates the instance.
    // The split image is public on a, so b is told its alias (and records a as its source).
    let split_fp = silo_tests::fingerprint_of(&split);
    let o = a.lxc(&[
        "query",
        "-X",
        "PATCH",
        &format!("/1.0/images/{split_fp}"),
        "--data",
        r#"{"public": true}"#,
    ]);
    assert!(o.status.success(), "make bbsplit public: {}", show(&o));
    let o = a.silo(conf.path(), &["init", "a:bbsplit", "b:c1"], None);
    assert!(
        o.status.success(),
        "init a:bbsplit b:c1: {}\n{}",
        show(&o),
        b.log_text()
    );
    let o = a.silo(
        conf.path(),
        &["list", "b:", "--format", "csv", "-c", "ns"],
        None,
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(text(&o).trim(), "c1,STOPPED", "{}", show(&o));
    let o = b.lxc(&["image", "list", "--format", "csv", "-c", "F"]);
    assert!(
        text(&o).contains(&split_fp),
        "b has a's split image now: {}",
        show(&o)
    );
    let o = b.lxc(&["query", &format!("/1.0/images/{split_fp}")]);
    assert!(
        text(&o).contains("\"cached\": true") && text(&o).contains("\"alias\": \"bbsplit\""),
        "b keeps a's image cached with its source: {}",
        show(&o)
    );
    // Refreshing it asks b to check a for a newer version: there is none.
    let o = a.silo(
        conf.path(),
        &["image", "refresh", &format!("b:{split_fp}")],
        None,
    );
    assert!(
        o.status.success(),
        "image refresh: {}\n{}",
        show(&o),
        b.log_text()
    );
    assert!(
        text(&o).contains("Image already up to date."),
        "{}",
        show(&o)
    );
    let o = a.silo(conf.path(), &["delete", "b:c1"], None);
    assert!(o.status.success(), "{}", show(&o));

    // launch from a's image onto b, then exec over HTTPS (TLS websockets).
    let o = a.silo(conf.path(), &["launch", "a:bbsrc", "b:c2"], None);
    assert!(
        o.status.success(),
        "launch a:bbsrc b:c2: {}\n{}",
        show(&o),
        b.log_text()
    );
    let o = a.silo(
        conf.path(),
        &[
            "exec",
            "b:c2",
            "--",
            "sh",
            "-c",
            "echo hello-$((6*7)); exit 3",
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "exec b:c2: {}\n{}",
        show(&o),
        b.log_text()
    );
    assert_eq!(text(&o).trim(), "hello-42", "{}", show(&o));
    // Files go over the same HTTPS client.
    let o = a.silo(
        conf.path(),
        &["file", "push", "-", "b:c2/tmp/over-https"],
        Some("pushed over https\n"),
    );
    assert!(o.status.success(), "file push: {}", show(&o));
    let o = a.silo(
        conf.path(),
        &["file", "pull", "b:c2/tmp/over-https", "-"],
        None,
    );
    assert!(o.status.success(), "file pull: {}", show(&o));
    assert_eq!(text(&o), "pushed over https\n", "{}", show(&o));
    let o = a.silo(conf.path(), &["delete", "--force", "b:c2"], None);
    assert!(o.status.success(), "{}", show(&o));

    // Names on two servers in one command are refused.
    let o = a.silo(conf.path(), &["start", "a:x", "b:y"], None);
    assert!(
        !o.status.success() && err(&o).contains("different remotes"),
        "{}",
        show(&o)
    );
}

/// A private CA and a server certificate for 127.0.0.1 it signed: (CA PEM, cert PEM, key PEM).
fn private_ca() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "silo test private CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &issuer).expect("server cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn remote_signed_by_a_ca_of_the_system_store_needs_no_pin() {
    let (ca, crt, key) = private_ca();
    let lxd = TestLxd::start_with_server_cert("rca", &crt, &key);
    let conf = Conf::new("rca");
    // The system store is the CA file rustls-native-certs reads: SSL_CERT_FILE stands in for
    // a CA added with update-ca-certificates without touching this machine's store.
    let bundle = conf.path().with_extension("ca.pem");
    std::fs::write(&bundle, &ca).expect("CA bundle");
    let with_ca = |args: &[&str]| {
        let mut c = std::process::Command::new(silo_tests::bin("silo"));
        c.env("SILO_CONF", conf.path())
            .env("SSL_CERT_FILE", &bundle)
            .env("SSL_CERT_DIR", conf.path().join("no-such-dir"))
            .env("SILO_SOCKET", conf.path().join("no-silod.socket"))
            .args(args)
            .stdin(std::process::Stdio::null());
        lxd.run_in_netns(move || c.output().expect("silo"))
    };
    // No prompt (stdin is closed: a prompt would fail) and nothing pinned.
    let o = with_ca(&[
        "remote",
        "add",
        "s",
        &lxd.url(),
        "--password",
        TRUST_PASSWORD,
    ]);
    assert!(o.status.success(), "remote add: {}", show(&o));
    assert!(
        !text(&o).contains("Certificate fingerprint"),
        "{}",
        show(&o)
    );
    assert!(
        !conf.pinned("s").exists(),
        "a CA-signed certificate is not pinned"
    );
    let o = with_ca(&["list", "s:", "--format", "csv"]);
    assert!(o.status.success(), "list through the CA: {}", show(&o));
    // Without that CA in the store the server is not trusted: nothing pinned vouches for it.
    let o = lxd.silo(conf.path(), &["list", "s:"], None);
    assert!(
        !o.status.success(),
        "no CA, no pin, yet accepted: {}",
        show(&o)
    );
    assert!(err(&o).contains("not signed by a CA"), "{}", show(&o));
    let _ = std::fs::remove_file(&bundle);
}
