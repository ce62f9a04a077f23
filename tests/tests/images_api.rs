//! Images, storage, profiles and instance records end to end: the stock `lxc` client against
//! a real silod, bad input refused with nothing left behind, and silod killed mid-way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, fingerprint_of, TestDaemon};

fn lxc(conf: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new("lxc")
        .args(args)
        .env("LXD_CONF", conf)
        .env_remove("LXD_DIR")
        .env_remove("LXD_SOCKET")
        .output()
        .unwrap_or_else(|e| panic!("running the stock lxc client (Debian's lxd-client): {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

struct Lxc {
    conf: tempfile::TempDir,
}

impl Lxc {
    fn new(d: &TestDaemon) -> Lxc {
        let conf = tempfile::tempdir().expect("tmp");
        let (ok, _, err) = lxc(
            conf.path(),
            &[
                "remote",
                "add",
                "s",
                &format!("unix://{}", d.socket().display()),
            ],
        );
        assert!(ok, "{err}");
        Lxc { conf }
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = lxc(self.conf.path(), args);
        assert!(ok, "lxc {args:?} failed: {err}");
        out
    }

    fn fails(&self, args: &[&str]) -> String {
        let (ok, out, err) = lxc(self.conf.path(), args);
        assert!(!ok, "lxc {args:?} should fail, printed {out}");
        err
    }
}

fn volumes(d: &TestDaemon, kind: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.dir.join("storage-pools/default").join(kind))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn stock_client_images_and_instances() {
    let d = TestDaemon::start("img-lxc");
    let l = Lxc::new(&d);
    let unified = busybox_image(false);
    let split = busybox_image(true);
    let up = unified[0].to_string_lossy().into_owned();
    let out = l.ok(&["image", "import", &up, "s:", "--alias", "bb"]);
    let fp = fingerprint_of(&unified);
    assert!(
        out.contains(&format!("Image imported with fingerprint: {fp}")),
        "{out}"
    );
    let out = l.ok(&[
        "image",
        "import",
        &split[0].to_string_lossy(),
        &split[1].to_string_lossy(),
        "s:",
        "--alias",
        "bbsplit",
    ]);
    let sfp = fingerprint_of(&split);
    assert!(
        out.contains(&sfp),
        "split fingerprint is sha256(meta ‖ rootfs): {out}"
    );
    let list = l.ok(&["image", "list", "s:"]);
    assert!(
        list.contains("bb") && list.contains(&fp[..12]) && list.contains(&sfp[..12]),
        "{list}"
    );
    // Importing the same image again is refused.
    let err = l.fails(&["image", "import", &up, "s:"]);
    assert!(err.contains("already exists"), "{err}");
    // Export gives back the very same bytes.
    let dir = tempfile::tempdir().expect("tmp");
    l.ok(&["image", "export", "s:bb", &dir.path().to_string_lossy()]);
    let exported: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(exported.len(), 1);
    assert_eq!(fingerprint_of(&exported), fp);
    let sdir = tempfile::tempdir().expect("tmp");
    l.ok(&[
        "image",
        "export",
        "s:bbsplit",
        &sdir.path().to_string_lossy(),
    ]);
    let mut parts: Vec<PathBuf> = std::fs::read_dir(sdir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .collect();
    parts.sort_by_key(|p| {
        !p.file_name()
            .map(|n| n.to_string_lossy().starts_with("meta-"))
            .unwrap_or(false)
    });
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(fingerprint_of(&parts), sfp);
    // Instances.
    let out = l.ok(&["init", "s:bb", "s:c1"]);
    assert!(out.contains("Creating c1"), "{out}");
    l.ok(&["init", "s:bbsplit", "s:c2"]);
    let list = l.ok(&["list", "s:", "--format", "csv", "-c", "ns"]);
    assert_eq!(list.trim(), "c1,STOPPED\nc2,STOPPED");
    let cfg = l.ok(&["config", "show", "s:c1"]);
    assert!(
        cfg.contains(&format!("volatile.base_image: {fp}")) && cfg.contains("image.os: busybox"),
        "{cfg}"
    );
    assert!(cfg.contains("volatile.idmap.base"), "{cfg}");
    let c1 = d
        .dir
        .join("storage-pools/default/containers/c1/rootfs/bin/busybox");
    assert!(c1.is_file(), "the root volume holds the image's files");
    assert_eq!(
        volumes(&d, "images"),
        {
            let mut v = vec![fp.clone(), sfp.clone()];
            v.sort();
            v
        },
        "each image unpacked once in the pool"
    );
    // Each instance has its own id range.
    let b1 = l.ok(&["config", "get", "s:c1", "volatile.idmap.base"]);
    let b2 = l.ok(&["config", "get", "s:c2", "volatile.idmap.base"]);
    assert_ne!(b1.trim(), b2.trim());
    l.ok(&["config", "set", "s:c1", "limits.memory", "128MiB"]);
    assert_eq!(
        l.ok(&["config", "get", "s:c1", "limits.memory"]).trim(),
        "128MiB"
    );
    let err = l.fails(&["config", "set", "s:c1", "limits.memory", "lots"]);
    assert!(err.contains("limits.memory"), "{err}");
    let err = l.fails(&[
        "config",
        "set",
        "s:c1",
        "raw.lxc",
        "lxc.apparmor.profile=unconfined",
    ]);
    assert!(err.contains("not supported"), "{err}");
    let prof = l.ok(&["profile", "show", "s:default"]);
    assert!(
        prof.contains("pool: default") && prof.contains("/1.0/instances/c1"),
        "{prof}"
    );
    let st = l.ok(&["storage", "list", "s:"]);
    assert!(st.contains("default") && st.contains("dir"), "{st}");
    // Delete: record and volume go.
    l.ok(&["delete", "s:c1"]);
    l.ok(&["delete", "s:c2"]);
    assert!(volumes(&d, "containers").is_empty());
    assert!(l.ok(&["list", "s:", "--format", "csv"]).trim().is_empty());
    l.ok(&["image", "delete", "s:bb"]);
    l.ok(&["image", "delete", "s:bbsplit"]);
    assert!(
        volumes(&d, "images").is_empty(),
        "cached image volumes go with the image"
    );
    let files: Vec<_> = std::fs::read_dir(d.dir.join("images"))
        .expect("ls")
        .flatten()
        .collect();
    assert!(files.is_empty(), "image files removed: {files:?}");
}

fn import(d: &TestDaemon, path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let c = d.client();
        let (code, v) = raw_upload(&d.socket(), &bytes).await;
        assert_eq!(code, 202, "{v}");
        let id = v["metadata"]["id"].as_str().expect("op id").to_string();
        let md = c
            .wait(&id)
            .await
            .unwrap_or_else(|e| panic!("import (op {id}): {e}"));
        md["fingerprint"].as_str().expect("fp").to_string()
    })
}

async fn raw_upload(sock: &Path, body: &[u8]) -> (u16, Value) {
    raw_upload_with(sock, body, "").await
}

async fn raw_upload_with(sock: &Path, body: &[u8], extra_headers: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(sock)
        .await
        .expect("connect");
    let head = format!("POST /1.0/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    // Read the head, then exactly Content-Length bytes (as real clients do).
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.expect("read");
        resp.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&resp).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len || n == 0 {
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&resp);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("{}");
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn op_error(d: &TestDaemon, method: &str, path: &str, body: Option<Value>) -> String {
    let (code, v) = d.api(method, path, body);
    if code >= 400 {
        return v["error"].as_str().unwrap_or("").to_string();
    }
    assert_eq!(code, 202, "{v}");
    let id = v["metadata"]["id"].as_str().expect("id");
    let (_, w) = d.api(
        "GET",
        &format!("/1.0/operations/{id}/wait?timeout=60"),
        None,
    );
    assert_eq!(w["metadata"]["status_code"], 400, "{w}");
    w["metadata"]["err"].as_str().unwrap_or("").to_string()
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let d = TestDaemon::start("img-bad");
    let unified = busybox_image(false);
    let fp = import(&d, &unified[0]);
    let create = |name: &str, extra: Value| {
        let mut b = json!({"name": name, "source": {"type": "image", "alias": fp}});
        if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        b
    };
    // Unknown image.
    let e = op_error(
        &d,
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c1", "source": {"type": "image", "alias": "nope"}})),
    );
    assert!(e.contains("not found"), "{e}");
    // Invalid names.
    for bad in ["1abc", "a_b", "a.b", "-x", &"x".repeat(64)] {
        let e = op_error(&d, "POST", "/1.0/instances", Some(create(bad, json!({}))));
        assert!(e.contains("invalid instance name"), "{bad}: {e}");
    }
    // Unknown pool, unknown profile, a bad config key, a bad device.
    let e = op_error(
        &d,
        "POST",
        "/1.0/instances",
        Some(create(
            "c1",
            json!({"devices": {"root": {"type": "disk", "path": "/", "pool": "nopool"}}}),
        )),
    );
    assert!(e.contains("nopool"), "{e}");
    let e = op_error(
        &d,
        "POST",
        "/1.0/instances",
        Some(create("c1", json!({"profiles": ["default", "ghost"]}))),
    );
    assert!(e.contains("ghost"), "{e}");
    let e = op_error(
        &d,
        "POST",
        "/1.0/instances",
        Some(create("c1", json!({"config": {"limits.cpu": "many"}}))),
    );
    assert!(e.contains("limits.cpu"), "{e}");
    let e = op_error(
        &d,
        "POST",
        "/1.0/instances",
        Some(create("c1", json!({"profiles": []}))),
    );
    assert!(e.contains("no root disk"), "{e}");
    // Duplicate name.
    assert_eq!(op_error_ok(&d, create("c1", json!({}))), "");
    let e = op_error(&d, "POST", "/1.0/instances", Some(create("c1", json!({}))));
    assert!(e.contains("already exists"), "{e}");
    // Corrupt and truncated uploads: refused, no file or record left.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (code, v) = rt.block_on(raw_upload(
        &d.socket(),
        b"this is not a tarball at all, not even close",
    ));
    assert_eq!(code, 202);
    let id = v["metadata"]["id"].as_str().expect("id");
    let (_, w) = d.api(
        "GET",
        &format!("/1.0/operations/{id}/wait?timeout=30"),
        None,
    );
    assert!(
        w["metadata"]["err"]
            .as_str()
            .unwrap_or("")
            .contains("not an image tarball"),
        "{w}"
    );
    let full = std::fs::read(&unified[0]).expect("read");
    let (code, v) = rt.block_on(raw_upload(&d.socket(), &full[..full.len() / 2]));
    assert_eq!(code, 202);
    let id = v["metadata"]["id"].as_str().expect("id");
    let (_, w) = d.api(
        "GET",
        &format!("/1.0/operations/{id}/wait?timeout=30"),
        None,
    );
    let err = w["metadata"]["err"].as_str().unwrap_or("").to_string();
    if w["metadata"]["status_code"] == 200 {
        // The metadata came first and parsed; the truncation shows when it is unpacked.
        let tfp = w["metadata"]["metadata"]["fingerprint"]
            .as_str()
            .expect("fp")
            .to_string();
        let e = op_error(
            &d,
            "POST",
            "/1.0/instances",
            Some(json!({"name": "t1", "source": {"type": "image", "fingerprint": tfp}})),
        );
        assert!(e.contains("truncated"), "{e}");
        assert!(!volumes(&d, "containers").contains(&"t1".to_string()));
        assert!(!volumes(&d, "images").contains(&tfp));
    } else {
        assert!(
            err.contains("truncated") || err.contains("not an image"),
            "{err}"
        );
    }
    // A wrong checksum (X-LXD-fingerprint) is refused before anything is stored.
    let (code, v) = rt.block_on(raw_upload_with(
        &d.socket(),
        &full,
        &format!("X-LXD-fingerprint: {}\r\n", "0".repeat(64)),
    ));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("fingerprint mismatch"),
        "{v}"
    );
    let (_, imgs) = d.api("GET", "/1.0/images", None);
    let n = imgs["metadata"].as_array().map(|a| a.len()).unwrap_or(0);
    let leftovers: Vec<String> = std::fs::read_dir(d.dir.join("images"))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(n >= 1);
    assert_eq!(
        volumes(&d, "containers"),
        vec!["c1".to_string()],
        "only the one good instance"
    );
}

fn op_error_ok(d: &TestDaemon, body: Value) -> String {
    let (code, v) = d.api("POST", "/1.0/instances", Some(body));
    assert_eq!(code, 202, "{v}");
    let id = v["metadata"]["id"].as_str().expect("id");
    let (_, w) = d.api(
        "GET",
        &format!("/1.0/operations/{id}/wait?timeout=60"),
        None,
    );
    assert_eq!(w["metadata"]["status_code"], 200, "{w}");
    String::new()
}

#[test]
fn kill_during_import_leaves_nothing_and_retry_works() {
    let mut d = TestDaemon::start("img-kill-import");
    let unified = busybox_image(false);
    let bytes = std::fs::read(&unified[0]).expect("read");
    // Send the headers and half of the body, then kill silod.
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    write!(s, "POST /1.0/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", bytes.len()).expect("head");
    s.write_all(&bytes[..bytes.len() / 2]).expect("half");
    assert!(silo_tests::wait_until(Duration::from_secs(5), || {
        std::fs::read_dir(d.dir.join("images"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
            })
            .unwrap_or(false)
    }));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(137));
    drop(s);
    d.spawn();
    let leftovers: Vec<_> = std::fs::read_dir(d.dir.join("images"))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "an interrupted upload is collected at start: {leftovers:?}"
    );
    let (_, v) = d.api("GET", "/1.0/images", None);
    assert_eq!(v["metadata"], json!([]));
    assert_eq!(import(&d, &unified[0]), fingerprint_of(&unified));
}

/// Imports an image of 30,000 small files: unpacking it takes long enough to be interrupted.
fn import_many_files(d: &TestDaemon) -> String {
    let mut t = silo_tests::corpus::Tar::new();
    t.image_prelude();
    for i in 0..30_000 {
        t.file(format!("rootfs/f/{i}"), 0o644, b"x");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("big.tar");
    std::fs::write(&path, t.finish()).expect("write");
    import(d, &path)
}

#[test]
fn kill_during_create_leaves_no_orphans_and_retry_works() {
    let mut d = TestDaemon::start("img-kill-create");
    let fp = import_many_files(&d);
    let (code, _) = d.api(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "big", "source": {"type": "image", "fingerprint": fp}})),
    );
    assert_eq!(code, 202);
    assert!(
        silo_tests::wait_until(Duration::from_secs(10), || !volumes(&d, "images")
            .is_empty()),
        "unpacking started"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(137));
    d.spawn();
    assert!(
        volumes(&d, "images").is_empty(),
        "the half-unpacked image volume is collected; log:\n{}",
        d.log_text()
    );
    assert!(
        volumes(&d, "containers").is_empty(),
        "no orphan root volume"
    );
    let (_, v) = d.api("GET", "/1.0/instances", None);
    assert_eq!(v["metadata"], json!([]));
    assert_eq!(
        op_error_ok(
            &d,
            json!({"name": "big", "source": {"type": "image", "fingerprint": fp}})
        ),
        ""
    );
    assert_eq!(volumes(&d, "containers"), vec!["big".to_string()]);
}

/// A split image whose rootfs is a squashfs: imported with its LXD fingerprint, read in user
/// space (never mounted), unpacked into the image volume, with no loop device left behind.
#[test]
fn squashfs_rootfs_images() {
    let d = TestDaemon::start("img-squashfs");
    let l = Lxc::new(&d);
    let split = busybox_image(true);
    let t = tempfile::tempdir().expect("tmp");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-xzf")
        .arg(&split[1])
        .status()
        .expect("tar");
    assert!(st.success());
    let sq = t.path().join("rootfs.squashfs");
    let o = Command::new("mksquashfs")
        .arg(&tree)
        .arg(&sq)
        .args(["-noappend", "-quiet"])
        .output()
        .expect("mksquashfs (squashfs-tools)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = vec![split[0].clone(), sq.clone()];
    let out = l.ok(&[
        "image",
        "import",
        &files[0].to_string_lossy(),
        &sq.to_string_lossy(),
        "s:",
        "--alias",
        "sq",
    ]);
    let fp = fingerprint_of(&files);
    assert!(out.contains(&fp), "{out}");
    l.ok(&["init", "s:sq", "s:c1"]);
    let c1 = d.dir.join("storage-pools/default/containers/c1/rootfs");
    assert!(c1.join("bin/busybox").is_file());
    assert!(std::fs::symlink_metadata(c1.join("sbin/init"))
        .expect("init")
        .file_type()
        .is_symlink());
    assert!(
        silo_tests::loops_under(&d.dir).is_empty(),
        "the squashfs loop device is gone"
    );
    assert!(silo_tests::foreign_mounts_under(&d.dir).is_empty());
    let ex = tempfile::tempdir().expect("tmp");
    l.ok(&["image", "export", "s:sq", &ex.path().to_string_lossy()]);
    let mut parts: Vec<PathBuf> = std::fs::read_dir(ex.path())
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .collect();
    parts.sort_by_key(|p| {
        !p.file_name()
            .map(|n| n.to_string_lossy().starts_with("meta-"))
            .unwrap_or(false)
    });
    assert!(
        parts[1].to_string_lossy().ends_with(".squashfs"),
        "{parts:?}"
    );
    assert_eq!(fingerprint_of(&parts), fp);
    // A rootfs that claims to be a squashfs but is not is refused at create, leaving nothing.
    let bad = t.path().join("bad.squashfs");
    let mut junk = b"hsqs".to_vec();
    junk.extend(std::iter::repeat_n(7u8, 8192));
    std::fs::write(&bad, &junk).expect("write");
    l.ok(&[
        "image",
        "import",
        &split[0].to_string_lossy(),
        &bad.to_string_lossy(),
        "s:",
        "--alias",
        "badsq",
    ]);
    let err = l.fails(&["init", "s:badsq", "s:c2"]);
    assert!(err.contains("squashfs"), "{err}");
    assert!(!d.dir.join("storage-pools/default/containers/c2").exists());
    assert!(silo_tests::loops_under(&d.dir).is_empty());
}

/// A helper that dies under a request: the request's operation fails with a clear error
/// naming the helper (silod keeps serving for a moment so that it can say so), silod exits 1
/// for its supervisor, and the restart leaves no orphans.
#[test]
fn helper_death_fails_in_flight_requests_clearly() {
    let mut d = TestDaemon::start("img-helper-death");
    let fp = import_many_files(&d);
    let (code, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "big", "source": {"type": "image", "fingerprint": fp}})),
    );
    assert_eq!(code, 202, "{v}");
    let id = v["metadata"]["id"].as_str().expect("id").to_string();
    let sock = d.socket();
    let waiter = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(silo_cli::client::Client::new(sock).raw(
            "GET",
            &format!("/1.0/operations/{id}/wait?timeout=-1"),
            None,
        ))
    });
    assert!(
        silo_tests::wait_until(Duration::from_secs(10), || !volumes(&d, "images")
            .is_empty()),
        "unpacking started"
    );
    let store = d
        .helpers()
        .into_iter()
        .find(|(n, _)| n == "silo-store")
        .expect("store")
        .1;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(store as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let (code, w) = waiter.join().expect("waiter").expect("wait answered");
    assert_eq!(code, 200, "{w}");
    assert_eq!(w["metadata"]["status_code"], 400, "{w}");
    let err = w["metadata"]["err"].as_str().unwrap_or("");
    assert!(err.contains("silo-store is not answering"), "{err}");
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)),
        Some(1),
        "silod exits for its supervisor"
    );
    d.spawn();
    assert!(
        volumes(&d, "images").is_empty() && volumes(&d, "containers").is_empty(),
        "no orphans after the restart"
    );
}
