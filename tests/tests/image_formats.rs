//! Image tarballs as other tools write them: Python's `tarfile` in its USTAR, GNU and PAX
//! formats (leading `/` and `./` on names, parents with no member of their own, long names and
//! long link names, hard links named from the top with `/` or `./`), and a hand-made v7
//! tarball (no magic, directories as file members ending in `/`). Each is built here, imported
//! through the stock `lxc image import` and through the API (`silo image import`), and
//! launched. metadata.yaml carries keys silo does not use, which are kept: the export gives
//! back the very file. What resolves outside the volume is still refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use silo_tests::{busybox_image, show, TestDaemon};

/// Rewrites the busybox test image as `fmt` (ustar, gnu, pax, v7, or escape: a hostile one).
const BUILD: &str = r#"
import io, sys, tarfile
src, out, fmt = sys.argv[1:4]
META = b"""architecture: x86_64
creation_date: 1700000000
expiry_date: 1900000000
made_by: {tool: python-tarfile, version: 3}
properties:
  os: busybox
  release: 1.35
  serial: 20240101
  description: written by python
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
    mystery: {a: 1}
    properties: {}
"""
lead = {"ustar": "/", "gnu": "./", "pax": "/", "v7": "", "escape": "/"}[fmt]
form = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}.get(fmt, tarfile.USTAR_FORMAT)
buf = io.BytesIO()
d = tarfile.open(fileobj=buf, mode="w", format=form)
def add(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
    ti = tarfile.TarInfo(lead + name)
    ti.type, ti.mode, ti.mtime, ti.linkname = kind, mode, 1700000000, link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    d.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
with tarfile.open(src) as s:
    for m in s.getmembers():
        name = m.name
        while name.startswith("./"):
            name = name[2:]
        name = name.rstrip("/")
        if name == "metadata.yaml":
            add(name, data=META)
            continue
        # No member of their own: GNU tar makes them anyway.
        if m.isdir() and name in ("rootfs", "rootfs/etc", "templates"):
            continue
        m.name = lead + name
        d.addfile(m, s.extractfile(m) if m.isfile() else None)
if fmt == "escape":
    add("rootfs/esc", tarfile.SYMTYPE, link="/tmp")
    add("rootfs/esc/silo-i18-escape", data=b"escaped\n")
else:
    add("rootfs/opt/tree/deep/file.txt", data=b"deep\n")
    add("rootfs/opt/hard", tarfile.LNKTYPE, link=lead + "rootfs/opt/tree/deep/file.txt")
    if fmt == "ustar":
        # A 200-byte name: the ustar prefix field holds its first part.
        long = "rootfs/opt/" + "p" * 90 + "/" + "n" * 98
        add(long, data=b"long\n")
    if fmt in ("gnu", "pax"):
        # Names and link names past any fixed field: GNU's ././@LongLink, PAX's path/linkpath.
        long = "rootfs/opt/" + "/".join("%02d" % i + "n" * 70 for i in range(4)) + "/file"
        add(long, data=b"long\n")
        add("rootfs/opt/longhard", tarfile.LNKTYPE, link="./" + long)
        add("rootfs/opt/longlink", tarfile.SYMTYPE, link="/" + long[len("rootfs/"):])
d.close()
data = bytearray(buf.getvalue())
if fmt == "v7":
    # No magic, version, owner names or prefix; directories are file members ending in `/`.
    off = 0
    while off + 512 <= len(data) and any(data[off:off + 512]):
        h = data[off:off + 512]
        assert h[345] == 0, "v7 has no prefix field"
        if h[156:157] in (b"0", b"5"):
            h[156] = 0
        h[257:512] = bytes(255)
        h[148:156] = b" " * 8
        h[148:156] = b"%06o\0 " % sum(h)
        data[off:off + 512] = h
        size = int(bytes(h[124:136]).strip(b"\0 ") or b"0", 8)
        off += 512 + (size + 511) // 512 * 512
    open(out, "wb").write(data)
else:
    import gzip
    open(out, "wb").write(gzip.compress(bytes(data), mtime=0))
"#;

fn build(dir: &Path, fmt: &str) -> PathBuf {
    let src = busybox_image(false);
    let out = dir.join(format!("i18-{fmt}.tar"));
    let o = Command::new("python3")
        .arg("-c")
        .arg(BUILD)
        .arg(&src[0])
        .arg(&out)
        .arg(fmt)
        .output()
        .expect("python3 is installed by scripts/deps");
    assert!(
        o.status.success(),
        "building the {fmt} tarball: {}",
        show(&o)
    );
    out
}

fn sha256(p: &Path) -> String {
    silo_tests::fingerprint_of(&[p.to_path_buf()])
}

fn lxc_ok(d: &TestDaemon, args: &[&str]) -> String {
    let o = d.lxc(args);
    assert!(o.status.success(), "lxc {args:?}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn silo_ok(d: &TestDaemon, args: &[&str]) -> String {
    let o = d.silo(args);
    assert!(o.status.success(), "silo {args:?}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What silod keeps of the image's metadata, and that the export is the file imported.
fn check_image(d: &TestDaemon, fp: &str, file: &Path) {
    let img = d.api_ok("GET", &format!("/1.0/images/{fp}"), None);
    assert_eq!(img["architecture"], "x86_64", "{img}");
    assert_eq!(img["properties"]["release"], "1.35", "{img}");
    assert_eq!(img["properties"]["serial"], "20240101", "{img}");
    assert!(
        img["expires_at"]
            .as_str()
            .unwrap_or("")
            .starts_with("2030-"),
        "{img}"
    );
    let (c, body) = d.api_raw("GET", &format!("/1.0/images/{fp}/export"));
    assert_eq!(c, 200);
    assert!(
        body == std::fs::read(file).expect("read"),
        "the export is the file imported"
    );
}

/// What the container sees of the members only these formats can carry.
fn check_instance(d: &TestDaemon, name: &str, fmt: &str) {
    let sh = |cmd: &str| {
        let (rc, out, err) = d.exec(name, &["sh", "-c", cmd]);
        assert_eq!(rc, 0, "{fmt}: {cmd}: {out}{err}");
        out
    };
    assert_eq!(sh("cat /opt/tree/deep/file.txt"), "deep\n");
    // Parents no member describes: root's, 0755, as GNU tar makes them.
    assert_eq!(
        sh("stat -c '%a %u %g' / /etc /opt /opt/tree /opt/tree/deep"),
        "755 0 0\n".repeat(5),
        "{fmt}"
    );
    assert_eq!(
        sh("stat -c '%h %i' /opt/hard /opt/tree/deep/file.txt | sort -u | wc -l; stat -c %h /opt/hard"),
        "1\n2\n",
        "{fmt}: one inode, two links"
    );
    // The image's template rendered: metadata.yaml's unknown keys did not stop it.
    assert_eq!(sh("cat /etc/hostname").trim(), name, "{fmt}");
    match fmt {
        "ustar" => {
            let long = format!("/opt/{}/{}", "p".repeat(90), "n".repeat(98));
            assert_eq!(sh(&format!("cat {long}")), "long\n");
        }
        "gnu" | "pax" => {
            assert_eq!(sh("cat /opt/longlink"), "long\n", "{fmt}");
            assert_eq!(sh("stat -c %h /opt/longhard"), "2\n", "{fmt}");
            assert!(sh("readlink /opt/longlink").len() > 280, "{fmt}");
        }
        _ => {}
    }
}

#[test]
fn images_as_other_tools_write_them() {
    let d = TestDaemon::start("i18-formats");
    for fmt in ["ustar", "gnu", "pax", "v7"] {
        let file = build(&d.dir, fmt);
        let fp = sha256(&file);
        let path = file.to_str().expect("utf-8");
        // The stock client uploads it...
        let alias = format!("l-{fmt}");
        lxc_ok(&d, &["image", "import", path, "--alias", &alias]);
        check_image(&d, &fp, &file);
        let ct = format!("l{fmt}");
        lxc_ok(&d, &["launch", &alias, &ct]);
        check_instance(&d, &ct, fmt);
        lxc_ok(&d, &["delete", "--force", &ct]);
        lxc_ok(&d, &["image", "delete", &alias]);
        // ...and so does silo, through the API.
        let alias = format!("s-{fmt}");
        let out = silo_ok(&d, &["image", "import", path, "--alias", &alias]);
        assert!(out.contains(&fp), "{out}");
        check_image(&d, &fp, &file);
        let ct = format!("s{fmt}");
        d.launch(&alias, &ct);
        check_instance(&d, &ct, fmt);
        silo_ok(&d, &["delete", "--force", &ct]);
        silo_ok(&d, &["image", "delete", &alias]);
        let _ = std::fs::remove_file(&file);
    }
}

/// Stripping a leading `/` makes nothing reachable that was not: a symlink to /tmp, then a
/// member written through it, is refused and writes nothing on the host.
#[test]
fn a_python_tarball_cannot_write_through_a_symlink() {
    let d = TestDaemon::start("i18-escape");
    let escaped = Path::new("/tmp/silo-i18-escape");
    let _ = std::fs::remove_file(escaped);
    let file = build(&d.dir, "escape");
    let path = file.to_str().expect("utf-8");
    // silod reads metadata.yaml at import; silo-store unpacks when the image is first used.
    lxc_ok(&d, &["image", "import", path, "--alias", "esc"]);
    let o = d.lxc(&["init", "esc", "c-esc"]);
    assert!(!o.status.success(), "unpacked: {}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(err.contains("symlink"), "{err}");
    let o = d.silo(&["init", "esc", "c-esc2"]);
    assert!(!o.status.success(), "unpacked: {}", show(&o));
    assert!(!escaped.exists(), "an image wrote through its symlink");
    let (_, v) = d.api("GET", "/1.0/instances", None);
    assert_eq!(v["metadata"], serde_json::json!([]), "no instance kept");
}

/// `silo image import DIR` packs the directory as `lxc image import DIR` does; the stock
/// client's own packing is accepted too; both launch, and metadata.yaml's keys silo does not
/// use stay in the stored image.
#[test]
fn image_directory_import() {
    let d = TestDaemon::start("i18-dirimport");
    let dir = d.dir.join("imgdir");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let src = busybox_image(false);
    let o = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["--numeric-owner", "-xzf"])
        .arg(&src[0])
        .output()
        .expect("tar");
    assert!(o.status.success(), "{}", show(&o));
    let meta = std::fs::read_to_string(dir.join("metadata.yaml")).expect("metadata");
    std::fs::write(
        dir.join("metadata.yaml"),
        format!("{meta}expiry_date: 1900000000\nmade_by: {{tool: hand}}\n"),
    )
    .expect("write");
    let path = dir.to_str().expect("utf-8");
    for (client, alias) in [("lxc", "dir-l"), ("silo", "dir-s")] {
        let o = if client == "lxc" {
            d.lxc(&["image", "import", path, "--alias", alias])
        } else {
            d.silo(&["image", "import", path, "--alias", alias])
        };
        assert!(
            o.status.success(),
            "{client} image import DIR: {}",
            show(&o)
        );
        let img = d.api_ok("GET", &format!("/1.0/images/aliases/{alias}"), None);
        let fp = img["target"].as_str().expect("target").to_string();
        let img = d.api_ok("GET", &format!("/1.0/images/{fp}"), None);
        assert_eq!(img["properties"]["os"], "busybox", "{img}");
        assert!(
            img["expires_at"]
                .as_str()
                .unwrap_or("")
                .starts_with("2030-"),
            "{img}"
        );
        // The export is a tarball whose metadata.yaml still has the key silo does not use.
        let (c, body) = d.api_raw("GET", &format!("/1.0/images/{fp}/export"));
        assert_eq!(c, 200);
        let exported = d.dir.join("exported.tar.xz");
        std::fs::write(&exported, body).expect("write");
        let o = Command::new("tar")
            .args(["-xJOf"])
            .arg(&exported)
            .arg("metadata.yaml")
            .output()
            .expect("tar");
        assert!(o.status.success(), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("made_by: {tool: hand}"),
            "{}",
            show(&o)
        );
        let _ = std::fs::remove_file(&exported);
        let ct = format!("c-{alias}");
        d.launch(alias, &ct);
        let (rc, out, _) = d.exec(&ct, &["cat", "/etc/hostname"]);
        assert_eq!((rc, out.trim()), (0, ct.as_str()));
        silo_ok(&d, &["delete", "--force", &ct]);
        silo_ok(&d, &["image", "delete", alias]);
    }
    // A directory without metadata.yaml is refused before anything is sent.
    std::fs::remove_file(dir.join("metadata.yaml")).expect("rm");
    let o = d.silo(&["image", "import", path]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no metadata.yaml"),
        "{}",
        show(&o)
    );
}
