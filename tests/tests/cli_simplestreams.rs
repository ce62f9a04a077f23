//! silo's own CLI on a simplestreams remote, end to end: a tree written by `silo image
//! export-simplestreams` from the busybox test image, served over HTTPS by the test server
//! on the loopback of the daemon's network namespace, with a test CA that both silod and the
//! CLI trust through SSL_CERT_FILE. The CLI reads the index itself (list, info, show, alias
//! list), silod pulls (launch, copy, refresh); alias names with '/' survive the round trip;
//! an untrusted or unreachable server and a missing alias are refused as a user sees them.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use silo_tests::image_server::{ca_bundle, ImageServer, TestPki};
use silo_tests::{busybox_image, fingerprint_of, show, TestDaemon};

/// The tree's plain alias and its alias with a '/' (as `debian/12` is on images:).
const ALIAS: &str = "bbcli";
const SLASHED: &str = "bbos/12";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The CLI as a user runs it: in the daemon's network namespace (where the image server
/// listens), with a client config dir of the test's own and the test CA trusted.
struct Cli<'a> {
    d: &'a TestDaemon,
    conf: tempfile::TempDir,
    ca_file: PathBuf,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let ns = format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            std::os::fd::AsRawFd::as_raw_fd(&self.d.netns)
        );
        std::process::Command::new("nsenter")
            .arg(format!("--net={ns}"))
            .arg(silo_tests::bin("silo"))
            .args(args)
            .env("SILO_SOCKET", self.d.socket())
            .env("SILO_CONF", self.conf.path())
            .env("SSL_CERT_FILE", &self.ca_file)
            .env_remove("SILO_DIR")
            .env_remove("SILO_REMOTE")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("nsenter silo")
    }

    /// Runs and asserts success; answers stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "silo {args:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and asserts failure; answers stderr.
    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "silo {args:?} succeeded: {}", show(&o));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

/// Imports `files` with `aliases`, writes a simplestreams tree of it into `tree` and
/// removes the image again, so it can only come back from the server. Answers its
/// fingerprint.
fn publish_tree(d: &TestDaemon, files: &[PathBuf], aliases: &[&str], tree: &Path) -> String {
    let fp = fingerprint_of(files);
    let mut args = vec!["image", "import"];
    args.extend(files.iter().map(|f| s(f)));
    for a in aliases {
        args.extend(["--alias", a]);
    }
    let o = d.silo(&args);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["image", "export-simplestreams", s(tree), aliases[0]]);
    assert!(o.status.success(), "{}", show(&o));
    d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);
    fp
}

fn image(d: &TestDaemon, fp: &str) -> Value {
    d.api_ok("GET", &format!("/1.0/images/{fp}"), None)
}

fn alias_names(img: &Value) -> Vec<String> {
    img["aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn cli_lists_launches_copies_and_refreshes_from_a_simplestreams_remote() {
    let pki = TestPki::new("silo test CA cli");
    let (_ca_dir, ca_file) = ca_bundle(&pki.ca_pem);
    let d = TestDaemon::start_with_env("ss-cli", &[("SSL_CERT_FILE", s(&ca_file))]);
    let tree = tempfile::tempdir().expect("tree");
    let fp = publish_tree(&d, &busybox_image(true), &[ALIAS, SLASHED], tree.path());
    let exported =
        std::fs::read_to_string(tree.path().join("streams/v1/images.json")).expect("images.json");
    assert!(
        exported.contains(SLASHED),
        "the tree keeps the '/' alias: {exported}"
    );
    let server = ImageServer::start(&d.netns, tree.path(), &pki);
    let url = server.url();
    let cli = Cli {
        d: &d,
        conf: tempfile::tempdir().expect("conf"),
        ca_file: ca_file.clone(),
    };
    cli.ok(&["remote", "add", "ss", &url, "--protocol", "simplestreams"]);
    let remotes = cli.ok(&["remote", "list", "--format", "csv"]);
    assert!(
        remotes.contains(&format!("ss,{url},simplestreams,none,YES,NO,NO")),
        "public, no pin: {remotes}"
    );

    // The CLI reads the index itself, with lxc's columns and LXD's derived aliases.
    let before = server.requests().len();
    let table = cli.ok(&["image", "list", "ss:"]);
    for col in [
        "ALIAS",
        "FINGERPRINT",
        "PUBLIC",
        "DESCRIPTION",
        "ARCHITECTURE",
        "TYPE",
        "SIZE",
        "UPLOAD DATE",
    ] {
        assert!(table.contains(col), "{col}: {table}");
    }
    assert!(table.contains(&fp[..12]), "{table}");
    let paths: Vec<String> = server.requests()[before..]
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("streams/v1/index.json"))
            && paths.iter().any(|p| p.ends_with("streams/v1/images.json")),
        "the CLI fetched the index: {paths:?}"
    );
    let csv = cli.ok(&["image", "list", "ss:", "--format", "csv", "-c", "LFpat"]);
    assert!(csv.contains(&fp), "{csv}");
    assert!(csv.contains(SLASHED), "{csv}");
    assert!(csv.contains(&format!("{ALIAS}/amd64")), "{csv}");
    assert!(csv.contains(",yes,x86_64,CONTAINER"), "{csv}");
    // Filters: part of an alias, and a property.
    let arch = std::env::consts::ARCH;
    let hit = cli.ok(&["image", "list", "ss:", "bbos", "--format", "csv", "-c", "F"]);
    assert_eq!(hit.trim(), fp, "{hit}");
    let hit = cli.ok(&[
        "image",
        "list",
        "ss:",
        "architecture=amd64",
        "--format",
        "csv",
        "-c",
        "F",
    ]);
    assert_eq!(hit.trim(), fp, "{hit}");
    let miss = cli.ok(&["image", "list", "ss:", "nosuchthing", "--format", "csv"]);
    assert_eq!(miss.trim(), "", "{miss}");

    let info = cli.ok(&["image", "info", &format!("ss:{ALIAS}")]);
    assert!(info.contains(&format!("Fingerprint: {fp}")), "{info}");
    assert!(info.contains("Public: yes"), "{info}");
    assert!(info.contains(&format!("Architecture: {arch}")), "{info}");
    assert!(info.contains(&format!("    - {SLASHED}")), "{info}");
    let shown = cli.ok(&["image", "show", &format!("ss:{SLASHED}")]);
    assert!(shown.contains("public: true"), "{shown}");
    let by_prefix = cli.ok(&["image", "info", &format!("ss:{}", &fp[..10])]);
    assert!(by_prefix.contains(&fp), "{by_prefix}");
    let aliases = cli.ok(&["image", "alias", "list", "ss:", "--format", "csv"]);
    for a in [
        ALIAS.to_string(),
        SLASHED.to_string(),
        format!("{SLASHED}/amd64"),
    ] {
        assert!(
            aliases.contains(&format!("{a},{},CONTAINER", &fp[..12])),
            "{a}: {aliases}"
        );
    }
    let some = cli.ok(&["image", "alias", "list", "ss:", "bbos", "--format", "csv"]);
    assert!(!some.contains(&format!("{ALIAS},")), "{some}");
    // A name the server lacks, said before silod is asked.
    let e = cli.fails(&["image", "info", "ss:nosuch/1"]);
    assert!(e.contains("has no image \"nosuch/1\""), "{e}");
    let e = cli.fails(&["launch", "ss:nosuch/1", "cnone"]);
    assert!(e.contains("has no image \"nosuch/1\""), "{e}");
    let (code, _) = d.api("GET", "/1.0/instances/cnone", None);
    assert_eq!(code, 404, "nothing created for a missing image");
    // The index is read-only.
    let e = cli.fails(&["image", "delete", &format!("ss:{ALIAS}")]);
    assert!(e.contains("read-only"), "{e}");

    // Launch from the remote: pulled once into the cache, with its source.
    cli.ok(&["launch", &format!("ss:{ALIAS}"), "c1"]);
    let img = image(&d, &fp);
    assert_eq!(img["cached"], true, "{img}");
    assert_eq!(img["update_source"]["server"], url, "{img}");
    assert_eq!(img["update_source"]["protocol"], "simplestreams", "{img}");
    assert_eq!(img["update_source"]["alias"], ALIAS, "{img}");
    let (rc, stdout, stderr) = d.exec("c1", &["echo", "from-ss"]);
    assert_eq!((rc, stdout.trim()), (0, "from-ss"), "{stderr}");
    cli.ok(&["delete", "-f", "c1"]);
    d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);

    // Copy by the '/' alias, auto-updated, under a new '/' alias.
    cli.ok(&[
        "image",
        "copy",
        &format!("ss:{SLASHED}"),
        "local:",
        "--alias",
        "my/copy",
        "--auto-update",
    ]);
    let img = image(&d, &fp);
    assert_eq!(img["cached"], false, "{img}");
    assert_eq!(img["auto_update"], true, "{img}");
    assert_eq!(img["update_source"]["alias"], SLASHED, "{img}");
    assert_eq!(alias_names(&img), vec!["my/copy".to_string()], "{img}");
    // Local aliases with '/' everywhere the CLI names them (escaped as %2F on the wire).
    let local = cli.ok(&["image", "alias", "list", "--format", "csv"]);
    assert!(local.contains(&format!("my/copy,{}", &fp[..12])), "{local}");
    let info = cli.ok(&["image", "info", "my/copy"]);
    assert!(info.contains(&fp), "{info}");
    cli.ok(&["image", "alias", "create", "a/b/c", &fp]);
    cli.ok(&["image", "alias", "rename", "a/b/c", "d/e"]);
    let local = cli.ok(&["image", "alias", "list", "--format", "csv"]);
    assert!(
        local.contains("d/e,") && !local.contains("a/b/c"),
        "{local}"
    );
    cli.ok(&["launch", "d/e", "c2"]);
    let c2 = d.api_ok("GET", "/1.0/instances/c2", None);
    assert_eq!(c2["config"]["volatile.base_image"], fp, "{c2}");
    cli.ok(&["delete", "-f", "c2"]);
    cli.ok(&["image", "alias", "delete", "d/e"]);
    let local = cli.ok(&["image", "alias", "list", "--format", "csv"]);
    assert!(!local.contains("d/e"), "{local}");

    // The tree moves to a newer version (the unified image) under the same aliases:
    // `image refresh` follows it and moves the local alias.
    let new_fp = publish_tree(&d, &busybox_image(false), &[ALIAS, SLASHED], tree.path());
    assert_ne!(new_fp, fp);
    let out = cli.ok(&["image", "refresh", "my/copy"]);
    assert!(out.contains("Image refreshed successfully!"), "{out}");
    let target = d.api_ok("GET", "/1.0/images/aliases/my%2Fcopy", None);
    assert_eq!(target["target"], new_fp, "{target}");
    let out = cli.ok(&["image", "refresh", "my/copy"]);
    assert!(out.contains("already up to date"), "{out}");
    let _ = d.api("DELETE", &format!("/1.0/images/{fp}"), None);
    d.api_ok("DELETE", &format!("/1.0/images/{new_fp}"), None);

    // --copy-aliases: the image's aliases on the server, '/' ones included.
    cli.ok(&[
        "image",
        "copy",
        &format!("ss:{ALIAS}"),
        "local:",
        "--copy-aliases",
    ]);
    let names = alias_names(&image(&d, &new_fp));
    for a in [ALIAS, SLASHED] {
        assert!(names.iter().any(|n| n == a), "{a}: {names:?}");
    }
    cli.ok(&["launch", SLASHED, "c3"]);
    let c3 = d.api_ok("GET", "/1.0/instances/c3", None);
    assert_eq!(c3["config"]["volatile.base_image"], new_fp, "{c3}");
    cli.ok(&["delete", "-f", "c3"]);
    d.api_ok("DELETE", &format!("/1.0/images/{new_fp}"), None);
}

#[test]
fn cli_on_untrusted_and_unreachable_simplestreams_servers() {
    let trusted = TestPki::new("silo test CA cli trusted");
    let (_ca_dir, ca_file) = ca_bundle(&trusted.ca_pem);
    let d = TestDaemon::start_with_env("ss-cli-bad", &[("SSL_CERT_FILE", s(&ca_file))]);
    let tree = tempfile::tempdir().expect("tree");
    publish_tree(&d, &busybox_image(false), &[ALIAS], tree.path());
    // A server whose certificate comes from a CA nobody trusts.
    let rogue = TestPki::new("silo test CA cli rogue");
    let server = ImageServer::start(&d.netns, tree.path(), &rogue);
    let cli = Cli {
        d: &d,
        conf: tempfile::tempdir().expect("conf"),
        ca_file: ca_file.clone(),
    };
    // Added as lxc adds it (without needing the server), with a warning naming the problem;
    // every use then fails with the same clear message and sends nothing over the connection.
    let add = |name: &str, url: &str| {
        let o = cli.run(&["remote", "add", name, url, "--protocol", "simplestreams"]);
        assert!(o.status.success(), "remote add {name}: {}", show(&o));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let w = add("rogue", &server.url());
    assert!(
        w.contains("Warning") && w.contains("not signed by a CA of the system's store"),
        "{w}"
    );
    let e = cli.fails(&["image", "list", "rogue:"]);
    assert!(
        e.contains("not signed by a CA of the system's store"),
        "{e}"
    );
    let e = cli.fails(&["launch", &format!("rogue:{ALIAS}"), "crogue"]);
    assert!(
        e.contains("not signed by a CA of the system's store"),
        "{e}"
    );
    assert_eq!(d.api("GET", "/1.0/instances/crogue", None).0, 404);
    assert!(
        server.requests().is_empty(),
        "no request over the untrusted connection"
    );
    // Nothing listens there.
    let w = add("gone", "https://127.0.0.1:1");
    assert!(w.contains("cannot reach https://127.0.0.1:1"), "{w}");
    let e = cli.fails(&["image", "list", "gone:"]);
    assert!(e.contains("cannot reach https://127.0.0.1:1"), "{e}");
    // A web server without a simplestreams tree.
    let empty = tempfile::tempdir().expect("empty tree");
    let plain = ImageServer::start(&d.netns, empty.path(), &trusted);
    let w = add("plain", &plain.url());
    assert!(w.contains("HTTP 404"), "{w}");
    let e = cli.fails(&["image", "list", "plain:"]);
    assert!(e.contains("HTTP 404"), "{e}");
    for r in ["rogue", "gone", "plain"] {
        cli.ok(&["remote", "remove", r]);
    }
    // A remote that worked and then went away: a clear error, no instance.
    let good = ImageServer::start(&d.netns, tree.path(), &trusted);
    cli.ok(&[
        "remote",
        "add",
        "good",
        &good.url(),
        "--protocol",
        "simplestreams",
    ]);
    drop(good);
    let e = cli.fails(&["image", "list", "good:"]);
    assert!(e.contains("cannot reach"), "{e}");
    let e = cli.fails(&["launch", &format!("good:{ALIAS}"), "cgone"]);
    assert!(e.contains("cannot reach"), "{e}");
    assert_eq!(d.api("GET", "/1.0/instances/cgone", None).0, 404);
    assert_eq!(
        d.api_ok("GET", "/1.0/images", None),
        json!([]),
        "nothing cached"
    );
}
