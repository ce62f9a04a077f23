//! silod pulling images from a simplestreams server over HTTPS: a tree written by `silo image
//! export-simplestreams` from the busybox test image, served by the test server (a test CA in
//! SSL_CERT_FILE) on the loopback of the daemon's own network namespace. Pull by alias, create
//! from a server into the cache, refresh to a newer version; wrong hashes, cut connections,
//! a vanishing server and an untrusted certificate refused with nothing left behind.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use silo_tests::image_server::{ca_bundle, ImageServer, TestPki};
use silo_tests::{busybox_image, fingerprint_of, show, TestDaemon};

/// The alias the tree gives the image.
const ALIAS: &str = "bbss";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A silod trusting `pki`'s CA through SSL_CERT_FILE.
fn daemon(name: &str, ca_file: &Path) -> TestDaemon {
    TestDaemon::start_with_env(name, &[("SSL_CERT_FILE", s(ca_file))])
}

/// Imports `files` with `alias`, writes a simplestreams tree of it into `tree` and removes
/// the image again, so it can only come back from the server. Answers its fingerprint.
fn publish_tree(d: &TestDaemon, files: &[PathBuf], alias: &str, tree: &Path) -> String {
    let fp = fingerprint_of(files);
    let mut args = vec!["image", "import"];
    args.extend(files.iter().map(|f| s(f)));
    args.extend(["--alias", alias]);
    let o = d.silo(&args);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["image", "export-simplestreams", s(tree), alias]);
    assert!(o.status.success(), "{}", show(&o));
    d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);
    fp
}

fn pull_body(url: &str, alias: &str) -> Value {
    json!({
        "source": {"type": "image", "mode": "pull", "server": url,
                   "protocol": "simplestreams", "alias": alias},
        "aliases": [{"name": "pulled", "description": "from the server"}],
        "auto_update": true
    })
}

/// POSTs and waits for the operation; answers it (failed or not).
fn op(d: &TestDaemon, path: &str, body: Value) -> Value {
    let (c, v) = d.api("POST", path, Some(body));
    assert_eq!(c, 202, "POST {path}: {v}");
    d.wait_op(&v)
}

fn images(d: &TestDaemon) -> Vec<Value> {
    d.api_ok("GET", "/1.0/images?recursion=1", None)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Files a download would leave behind in the state dir.
fn leftovers(d: &TestDaemon) -> Vec<String> {
    std::fs::read_dir(d.dir.join("images"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp-"))
        .collect()
}

fn assert_nothing_cached(d: &TestDaemon, what: &str) {
    assert_eq!(images(d), Vec::<Value>::new(), "{what}: nothing is cached");
    assert_eq!(
        leftovers(d),
        Vec::<String>::new(),
        "{what}: no partial file"
    );
}

/// The rootfs's path in the tree (the file a cut or corruption targets).
fn rootfs_path(fp: &str) -> String {
    format!("images/{fp}/rootfs")
}

#[test]
fn pull_launch_and_refresh_from_a_simplestreams_server() {
    let pki = TestPki::new("silo test CA pull");
    let (_ca_dir, ca_file) = ca_bundle(&pki.ca_pem);
    let mut d = daemon("iserv-pull", &ca_file);
    let tree = tempfile::tempdir().expect("tree");
    let fp = publish_tree(&d, &busybox_image(true), ALIAS, tree.path());
    let index: Value = serde_json::from_slice(
        &std::fs::read(tree.path().join("streams/v1/images.json")).expect("images.json"),
    )
    .expect("json");
    assert!(index.to_string().contains(&fp), "{index}");
    let server = ImageServer::start(&d.netns, tree.path(), &pki);
    let url = server.url();

    // Pull by alias: the image with the requested alias and its source.
    let o = op(&d, "/1.0/images", pull_body(&url, ALIAS));
    assert_eq!(o["status"], "Success", "{o}\n{}", d.log_text());
    assert_eq!(o["metadata"]["fingerprint"], fp, "{o}");
    let img = d.api_ok("GET", &format!("/1.0/images/{fp}"), None);
    assert_eq!(img["cached"], false, "{img}");
    assert_eq!(img["auto_update"], true, "{img}");
    assert_eq!(
        img["update_source"],
        json!({"alias": ALIAS, "certificate": "", "protocol": "simplestreams",
               "server": url, "image_type": "container"}),
        "{img}"
    );
    assert_eq!(img["aliases"][0]["name"], "pulled", "{img}");
    // Both files came over the wire, whole.
    let paths: Vec<String> = server.requests().into_iter().map(|(p, _)| p).collect();
    assert!(paths.contains(&rootfs_path(&fp)), "{paths:?}");
    assert_eq!(leftovers(&d), Vec::<String>::new());
    d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);

    // Two pulls of one image at once (the rootfs sent slowly so they overlap) share one
    // download, and both succeed.
    server.slow(&rootfs_path(&fp), std::time::Duration::from_millis(40));
    let before = server.requests().len();
    let bare = json!({"source": {"type": "image", "mode": "pull", "server": url,
                      "protocol": "simplestreams", "alias": ALIAS}});
    let (c1, a1) = d.api("POST", "/1.0/images", Some(bare.clone()));
    let (c2, a2) = d.api("POST", "/1.0/images", Some(bare));
    assert_eq!((c1, c2), (202, 202), "{a1} {a2}");
    for a in [&a1, &a2] {
        let o = d.wait_op(a);
        assert_eq!(o["status"], "Success", "{o}");
        assert_eq!(o["metadata"]["fingerprint"], fp, "{o}");
    }
    let rootfs_gets = server.requests()[before..]
        .iter()
        .filter(|(p, _)| *p == rootfs_path(&fp))
        .count();
    assert_eq!(rootfs_gets, 1, "one download for both pulls");
    server.clear_faults();
    d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);

    // Create from the server: pulled into the cache (cached, auto-updated by default).
    let o = op(
        &d,
        "/1.0/instances",
        json!({"name": "c1", "source": {"type": "image", "server": url,
               "protocol": "simplestreams", "alias": ALIAS}}),
    );
    assert_eq!(o["status"], "Success", "{o}\n{}", d.log_text());
    let img = d.api_ok("GET", &format!("/1.0/images/{fp}"), None);
    assert_eq!(img["cached"], true, "{img}");
    assert_eq!(img["auto_update"], true, "{img}");
    assert_eq!(img["update_source"]["server"], url, "{img}");
    assert_ne!(img["last_used_at"], "0001-01-01T00:00:00Z", "{img}");
    let c1 = d.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(c1["config"]["volatile.base_image"], fp, "{c1}");
    // A second instance from the same alias uses the cached image: no new download.
    let before = server.requests().len();
    let o = op(
        &d,
        "/1.0/instances",
        json!({"name": "c2", "source": {"type": "image", "server": url,
               "protocol": "simplestreams", "alias": ALIAS}}),
    );
    assert_eq!(o["status"], "Success", "{o}");
    let after: Vec<String> = server.requests()[before..]
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert!(
        after.iter().all(|p| p.starts_with("streams/")),
        "only the index was read again: {after:?}"
    );
    // Refresh with nothing newer: nothing changes (through the API and `silo image refresh`).
    let o = op(&d, &format!("/1.0/images/{fp}/refresh"), json!({}));
    assert_eq!(o["status"], "Success", "{o}");
    assert_eq!(o["metadata"]["refreshed"], false, "{o}");
    let out = d.silo(&["image", "refresh", &fp[..12]]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Image already up to date.\n"
    );

    // The tree gets a newer version under the same alias (the unified busybox image).
    let new_fp = publish_tree(&d, &busybox_image(false), ALIAS, tree.path());
    assert_ne!(new_fp, fp);
    d.api_ok(
        "POST",
        "/1.0/images/aliases",
        Some(json!({"name": "mine", "target": fp})),
    );
    let o = op(&d, &format!("/1.0/images/{fp}/refresh"), json!({}));
    assert_eq!(o["status"], "Success", "{o}\n{}", d.log_text());
    assert_eq!(o["metadata"]["refreshed"], true, "{o}");
    // Aliases and instances moved; the old image is gone, the new one keeps the source.
    let alias = d.api_ok("GET", "/1.0/images/aliases/mine", None);
    assert_eq!(alias["target"], new_fp, "{alias}");
    for c in ["c1", "c2"] {
        let i = d.api_ok("GET", &format!("/1.0/instances/{c}"), None);
        assert_eq!(i["config"]["volatile.base_image"], new_fp, "{c}: {i}");
    }
    let (code, _) = d.api("GET", &format!("/1.0/images/{fp}"), None);
    assert_eq!(code, 404, "the old version is removed");
    let img = d.api_ok("GET", &format!("/1.0/images/{new_fp}"), None);
    assert_eq!(img["cached"], true, "{img}");
    assert_eq!(img["update_source"]["alias"], ALIAS, "{img}");
    // The updater runs at start: the tree moves again (to the split image), silod restarts,
    // and the auto-updated cached image follows without being asked.
    let third = publish_tree(&d, &busybox_image(true), ALIAS, tree.path());
    assert_eq!(third, fp);
    d.stop();
    d.spawn();
    let moved = silo_tests::wait_until(std::time::Duration::from_secs(30), || {
        d.api_ok("GET", "/1.0/images/aliases/mine", None)["target"] == json!(fp)
    });
    assert!(
        moved,
        "the updater refreshed at start; log:\n{}",
        d.log_text()
    );
    let i = d.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(i["config"]["volatile.base_image"], fp, "{i}");
    let gone = silo_tests::wait_until(std::time::Duration::from_secs(10), || {
        d.api("GET", &format!("/1.0/images/{new_fp}"), None).0 == 404
    });
    assert!(gone, "the version it replaced is removed");
    let new_fp = fp.clone();

    // With the server gone, a create naming the cached image's fingerprint still works (the
    // stock client sends the fingerprint it resolved).
    drop(server);
    let o = op(
        &d,
        "/1.0/instances",
        json!({"name": "c3", "source": {"type": "image", "server": url,
               "protocol": "simplestreams", "alias": ALIAS, "fingerprint": new_fp}}),
    );
    assert_eq!(o["status"], "Success", "{o}");
    for c in ["c1", "c2", "c3"] {
        d.api_ok("DELETE", &format!("/1.0/instances/{c}"), None);
    }
}

#[test]
fn bad_hashes_cut_connections_and_untrusted_servers() {
    let pki = TestPki::new("silo test CA faults");
    let (_ca_dir, ca_file) = ca_bundle(&pki.ca_pem);
    let d = daemon("iserv-faults", &ca_file);
    let tree = tempfile::tempdir().expect("tree");
    let fp = publish_tree(&d, &busybox_image(true), ALIAS, tree.path());
    let root = rootfs_path(&fp);
    let root_len = std::fs::metadata(tree.path().join(&root))
        .expect("rootfs")
        .len();
    let server = ImageServer::start(&d.netns, tree.path(), &pki);
    let url = server.url();

    // A file whose bytes do not match its sha256: refused, nothing kept.
    server.corrupt(&root);
    let o = op(&d, "/1.0/images", pull_body(&url, ALIAS));
    assert_eq!(o["status"], "Failure", "{o}");
    let err = o["err"].as_str().unwrap_or("");
    assert!(
        err.contains("sha256 mismatch") && err.contains(&root),
        "{err}"
    );
    assert_nothing_cached(&d, "a corrupt file");
    drop(server);

    // A cut half-way through the rootfs: resumed with a Range request, and whole.
    let server = ImageServer::start(&d.netns, tree.path(), &pki);
    let url = server.url();
    server.cut(&root, root_len / 2, 1);
    let o = op(&d, "/1.0/images", pull_body(&url, ALIAS));
    assert_eq!(o["status"], "Success", "{o}\n{}", d.log_text());
    assert_eq!(o["metadata"]["fingerprint"], fp);
    let ranges: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .filter(|(p, _)| *p == root)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        ranges,
        vec![None, Some(format!("bytes={}-", root_len / 2))],
        "one cut, one resume from where it stopped"
    );
    d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);

    // Cut more often than the retries allow: a clear error, nothing kept.
    server.cut(&root, root_len / 2, 10);
    let o = op(&d, "/1.0/images", pull_body(&url, ALIAS));
    assert_eq!(o["status"], "Failure", "{o}");
    let err = o["err"].as_str().unwrap_or("");
    assert!(err.contains("gave up after 3 retries"), "{err}");
    assert_nothing_cached(&d, "a download cut too often");
    let cuts = server
        .requests()
        .iter()
        .filter(|(p, r)| *p == root && r.is_some())
        .count();
    // The first cut of the earlier pull and its resume, then one try and three resumes.
    assert_eq!(cuts, 1 + 3, "three resumes before giving up");
    server.clear_faults();

    // Cancelled mid-download (the rootfs sent slowly): the operation says so, nothing is kept.
    server.slow(&root, std::time::Duration::from_millis(150));
    let (c, v) = d.api("POST", "/1.0/images", Some(pull_body(&url, ALIAS)));
    assert_eq!(c, 202, "{v}");
    let op_path = v["operation"].as_str().expect("operation").to_string();
    let downloading = silo_tests::wait_until(std::time::Duration::from_secs(20), || {
        let (_, o) = d.api("GET", &op_path, None);
        o["metadata"]["metadata"]["download_progress"]
            .as_str()
            .is_some_and(|p| p.starts_with("rootfs: "))
    });
    assert!(downloading, "the operation reports the rootfs's progress");
    let (c, v) = d.api("DELETE", &op_path, None);
    assert_eq!(c, 200, "{v}");
    let (_, o) = d.api("GET", &format!("{op_path}/wait?timeout=30"), None);
    assert_eq!(o["metadata"]["status"], "Cancelled", "{o}");
    assert!(
        silo_tests::wait_until(std::time::Duration::from_secs(5), || leftovers(&d)
            .is_empty()),
        "the partial file goes"
    );
    assert_nothing_cached(&d, "a cancelled pull");
    server.clear_faults();

    // A combined fingerprint the files do not make: refused before anything is recorded.
    let images_json = tree.path().join("streams/v1/images.json");
    let good = std::fs::read_to_string(&images_json).expect("images.json");
    let wrong = "0".repeat(64);
    // Only the combined hashes (quoted whole values), not the paths that contain it.
    let edited = good.replace(&format!("\"{fp}\""), &format!("\"{wrong}\""));
    assert_ne!(edited, good);
    std::fs::write(&images_json, edited).expect("edit");
    let o = op(&d, "/1.0/images", pull_body(&url, ALIAS));
    assert_eq!(o["status"], "Failure", "{o}");
    let err = o["err"].as_str().unwrap_or("");
    assert!(
        err.contains("combined fingerprint") && err.contains(&wrong) && err.contains(&fp),
        "{err}"
    );
    assert_nothing_cached(&d, "a wrong combined fingerprint");
    std::fs::write(&images_json, good).expect("restore");

    // The server disappears during the copy: an error, nothing left.
    server.vanish_during(&root, root_len / 3);
    let o = op(&d, "/1.0/images", pull_body(&url, ALIAS));
    assert_eq!(o["status"], "Failure", "{o}");
    let err = o["err"].as_str().unwrap_or("");
    assert!(err.contains(&root) && err.contains("gave up"), "{err}");
    assert_nothing_cached(&d, "a server that went away");
    drop(server);

    // A server whose certificate no trusted CA signed: refused, saying so.
    let other = TestPki::new("not the CA silod trusts");
    let rogue = ImageServer::start(&d.netns, tree.path(), &other);
    let o = op(&d, "/1.0/images", pull_body(&rogue.url(), ALIAS));
    assert_eq!(o["status"], "Failure", "{o}");
    let err = o["err"].as_str().unwrap_or("");
    assert!(err.contains("not trusted"), "{err}");
    assert!(rogue.requests().is_empty(), "no request went over it");
    assert_nothing_cached(&d, "an untrusted server");
}

/// An LXD server's answers for one split image, as `lxc image copy` reads them: the alias,
/// the image record (with a secret, as for a private image) and the multipart export.
fn mimic_lxd(server: &ImageServer, files: &[PathBuf], fp: &str, alias: &str, secret: &str) {
    let sync = |metadata: Value| {
        serde_json::to_vec(
            &json!({"type": "sync", "status": "Success", "status_code": 200,
                                   "metadata": metadata}),
        )
        .expect("json")
    };
    let j = [("Content-Type", "application/json")];
    server.route(
        &format!("1.0/images/aliases/{alias}"),
        &j,
        sync(json!({"name": alias, "target": fp, "description": "", "type": "container"})),
    );
    server.route(
        &format!("1.0/images/{fp}?secret={secret}"),
        &j,
        sync(
            json!({"fingerprint": fp, "filename": "busybox.tar.gz", "public": false,
                    "architecture": "x86_64", "type": "container", "size": 1,
                    "properties": {"os": "busybox", "description": "from lxd"},
                    "update_source": null, "aliases": null}),
        ),
    );
    let boundary = "silo-test-boundary-1";
    let mut body = Vec::new();
    for (name, f) in [("metadata", &files[0]), ("rootfs", &files[1])] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.tar.gz\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&std::fs::read(f).expect("image file"));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ctype = format!("multipart/form-data; boundary={boundary}");
    server.route(
        &format!("1.0/images/{fp}/export?secret={secret}"),
        &[("Content-Type", ctype.as_str())],
        body,
    );
}

#[test]
fn lxd_protocol_with_a_pinned_certificate_and_direct_urls() {
    let pki = TestPki::new("silo test CA lxd");
    let (_ca_dir, ca_file) = ca_bundle(&pki.ca_pem);
    let d = daemon("iserv-lxd", &ca_file);
    let split = busybox_image(true);
    let fp = fingerprint_of(&split);
    let empty = tempfile::tempdir().expect("dir");
    // An LXD server with its own self-signed certificate, no CA silod trusts: the request
    // carries that certificate, as `lxc remote add` stored it.
    let own = TestPki::new("an LXD server's own certificate");
    let lxd = ImageServer::start(&d.netns, empty.path(), &own);
    mimic_lxd(&lxd, &split, &fp, "bb-lxd", "s3cret");
    let body = |cert: &str| {
        json!({"source": {"type": "image", "mode": "pull", "server": lxd.url(),
                          "protocol": "lxd", "alias": "bb-lxd", "secret": "s3cret",
                          "certificate": cert, "image_type": "container"},
               "public": true})
    };
    // Another certificate than the server's: refused, naming both.
    let o = op(&d, "/1.0/images", body(&pki.server_pem));
    assert_eq!(o["status"], "Failure", "{o}");
    let err = o["err"].as_str().unwrap_or("");
    assert!(err.contains("is not the one given for it"), "{err}");
    assert_nothing_cached(&d, "a changed certificate");
    // The pinned one: pulled by alias with the secret, metadata and rootfs checked.
    let o = op(&d, "/1.0/images", body(&own.server_pem));
    assert_eq!(o["status"], "Success", "{o}\n{}", d.log_text());
    assert_eq!(o["metadata"]["fingerprint"], fp, "{o}");
    let img = d.api_ok("GET", &format!("/1.0/images/{fp}"), None);
    assert_eq!(img["public"], true, "{img}");
    assert_eq!(img["update_source"]["protocol"], "lxd", "{img}");
    assert_eq!(img["update_source"]["certificate"], own.server_pem, "{img}");
    assert_eq!(img["properties"]["description"], "from lxd", "{img}");
    d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);

    // LXD's direct URL images: the URL names the hash and where the file is.
    let unified = busybox_image(false);
    let ufp = fingerprint_of(&unified);
    let files = tempfile::tempdir().expect("dir");
    std::fs::copy(&unified[0], files.path().join("bb.tar.gz")).expect("copy");
    let web = ImageServer::start(&d.netns, files.path(), &pki);
    // The file is behind two redirects, one relative and one absolute, as behind a CDN.
    web.redirect("elsewhere/bb.tar.gz", "/bb.tar.gz");
    web.redirect(
        "cdn/bb.tar.gz",
        &format!("{}/elsewhere/bb.tar.gz", web.url()),
    );
    let file_url = format!("{}/cdn/bb.tar.gz", web.url());
    web.route(
        "direct/bb",
        &[
            ("LXD-Image-Hash", ufp.as_str()),
            ("LXD-Image-URL", file_url.as_str()),
        ],
        Vec::new(),
    );
    let o = op(
        &d,
        "/1.0/images",
        json!({"source": {"type": "url", "url": format!("{}/direct/bb", web.url())},
               "aliases": [{"name": "from-url"}]}),
    );
    assert_eq!(o["status"], "Success", "{o}\n{}", d.log_text());
    assert_eq!(o["metadata"]["fingerprint"], ufp, "{o}");
    let a = d.api_ok("GET", "/1.0/images/aliases/from-url", None);
    assert_eq!(a["target"], ufp, "{a}");
    let followed: Vec<String> = web.requests().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        followed,
        [
            "direct/bb",
            "cdn/bb.tar.gz",
            "elsewhere/bb.tar.gz",
            "bb.tar.gz"
        ],
        "redirects followed"
    );
    // A hash the file does not have: refused.
    d.api_ok("DELETE", &format!("/1.0/images/{ufp}"), None);
    let wrong = "1".repeat(64);
    web.route(
        "direct/bad",
        &[
            ("LXD-Image-Hash", wrong.as_str()),
            ("LXD-Image-URL", file_url.as_str()),
        ],
        Vec::new(),
    );
    let o = op(
        &d,
        "/1.0/images",
        json!({"source": {"type": "url", "url": format!("{}/direct/bad", web.url())}}),
    );
    assert_eq!(o["status"], "Failure", "{o}");
    assert!(
        o["err"].as_str().unwrap_or("").contains("fingerprint"),
        "{o}"
    );
    assert_nothing_cached(&d, "a direct URL with a wrong hash");
}

/// The stock `lxc` in the daemon's network namespace (where the image server listens),
/// trusting the test CA as silod does.
fn lxc_in_netns(d: &TestDaemon, ca_file: &Path, args: &[&str]) -> std::process::Output {
    let ns = format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        std::os::fd::AsRawFd::as_raw_fd(&d.netns)
    );
    std::process::Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .arg("lxc")
        .args(args)
        .env("LXD_DIR", &d.dir)
        .env("LXD_CONF", d.dir.join("lxc-conf"))
        .env("SSL_CERT_FILE", ca_file)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("lxc (Debian's lxd-client) is installed by scripts/deps")
}

#[test]
fn the_stock_lxc_client_copies_and_launches_from_a_simplestreams_remote() {
    let pki = TestPki::new("silo test CA lxc");
    let (_ca_dir, ca_file) = ca_bundle(&pki.ca_pem);
    let d = daemon("iserv-lxc", &ca_file);
    let tree = tempfile::tempdir().expect("tree");
    let fp = publish_tree(&d, &busybox_image(true), ALIAS, tree.path());
    let server = ImageServer::start(&d.netns, tree.path(), &pki);
    let run = |args: &[&str]| {
        let o = lxc_in_netns(&d, &ca_file, args);
        assert!(o.status.success(), "lxc {args:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    run(&[
        "remote",
        "add",
        "ss",
        &server.url(),
        "--protocol",
        "simplestreams",
        "--public",
    ]);
    // The client lists the tree itself, then asks silod to pull.
    let listed = run(&["image", "list", "ss:", "--format", "csv", "-c", "lf"]);
    assert!(listed.contains(ALIAS), "{listed}");
    run(&[
        "image",
        "copy",
        &format!("ss:{ALIAS}"),
        "local:",
        "--alias",
        "copied",
        "--auto-update",
    ]);
    let img = d.api_ok("GET", &format!("/1.0/images/{fp}"), None);
    assert_eq!(img["cached"], false, "{img}");
    assert_eq!(img["auto_update"], true, "{img}");
    assert_eq!(img["update_source"]["protocol"], "simplestreams", "{img}");
    // lxc sends the alias as the fingerprint; it is what refresh follows, as in LXD.
    assert_eq!(img["update_source"]["alias"], ALIAS, "{img}");
    assert_eq!(img["aliases"][0]["name"], "copied", "{img}");
    // lxc sent the alias as the fingerprint: the copy follows that alias, so a refresh
    // has something to ask the server about.
    assert_eq!(img["update_source"]["alias"], ALIAS, "{img}");
    let o = op(&d, &format!("/1.0/images/{fp}/refresh"), json!({}));
    assert_eq!(o["status"], "Success", "{o}");
    assert_eq!(o["metadata"]["refreshed"], false, "{o}");
    d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);
    // `lxc init ss:ALIAS`: created from the server through the cache.
    run(&["init", &format!("ss:{ALIAS}"), "c1"]);
    let img = d.api_ok("GET", &format!("/1.0/images/{fp}"), None);
    assert_eq!(img["cached"], true, "{img}");
    let c1 = d.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(c1["config"]["volatile.base_image"], fp, "{c1}");
    d.api_ok("DELETE", "/1.0/instances/c1", None);
}
