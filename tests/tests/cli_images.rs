//! The `silo` CLI end to end against a real silod: images (import unified and split,
//! list, info, show, aliases, export checked against the fingerprint, delete), instances
//! (init, list, config, delete), profiles and storage; one-line errors with exit code 1.

use std::path::Path;
use std::process::Output;

use silo_tests::{busybox_image, fingerprint_of, TestDaemon};

fn ok(d: &TestDaemon, args: &[&str]) -> String {
    let o = d.silo(args);
    assert!(
        o.status.success(),
        "silo {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(d: &TestDaemon, args: &[&str]) -> String {
    let o: Output = d.silo(args);
    assert_eq!(o.status.code(), Some(1), "silo {args:?} should fail");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one-line error expected: {err}");
    assert!(err.starts_with("Error: "), "{err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn images_via_the_cli() {
    let d = TestDaemon::start("cli-img");
    let unified = busybox_image(false);
    let split = busybox_image(true);
    let fp = fingerprint_of(&unified);
    let fp_split = fingerprint_of(&split);

    let out = ok(
        &d,
        &[
            "image",
            "import",
            s(&unified[0]),
            "--alias",
            "bb",
            "--alias",
            "bb2",
            "-p",
            "user.k=v",
        ],
    );
    assert_eq!(out, format!("Image imported with fingerprint: {fp}\n"));
    let out = ok(
        &d,
        &[
            "image",
            "import",
            s(&split[0]),
            s(&split[1]),
            "--alias",
            "bbsplit",
            "--public",
        ],
    );
    assert_eq!(
        out,
        format!("Image imported with fingerprint: {fp_split}\n")
    );

    // The table as lxc draws it.
    let list = ok(&d, &["image", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[1].starts_with("|    ALIAS    | FINGERPRINT  | PUBLIC |"),
        "{list}"
    );
    assert!(
        list.contains(&format!("| bb (1 more) | {} | no ", &fp[..12])),
        "{list}"
    );
    assert!(
        list.contains(&format!("| bbsplit     | {} | yes ", &fp_split[..12])),
        "{list}"
    );
    assert!(
        list.contains("| CONTAINER | ") && list.contains("MB | "),
        "{list}"
    );
    let csv = ok(&d, &["image", "list", "bbsplit", "--format", "csv"]);
    assert_eq!(csv.lines().count(), 1, "{csv}");
    assert!(
        csv.starts_with(&format!("bbsplit,{},yes,", &fp_split[..12])),
        "{csv}"
    );
    let csv = ok(&d, &["image", "list", "user.k=v", "--format", "csv"]);
    assert!(csv.starts_with("bb (1 more),"), "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, &["image", "list", "--format", "json"])).expect("json");
    assert_eq!(json.as_array().map(Vec::len), Some(2));

    let info = ok(&d, &["image", "info", "bb"]);
    assert!(
        info.starts_with(&format!("Fingerprint: {fp}\nSize: ")),
        "{info}"
    );
    assert!(info.contains("Aliases:\n    - bb\n    - bb2\n"), "{info}");
    let show = ok(&d, &["image", "show", &fp[..8]]);
    assert!(
        show.starts_with("auto_update: false\nproperties:\n"),
        "{show}"
    );
    assert!(show.contains("  user.k: v\n"), "{show}");

    // Aliases.
    ok(&d, &["image", "alias", "create", "third", &fp[..12]]);
    ok(&d, &["image", "alias", "rename", "third", "fourth"]);
    let aliases = ok(&d, &["image", "alias", "list", "--format", "csv"]);
    assert!(
        aliases.contains(&format!("fourth,{},CONTAINER,", &fp[..12])),
        "{aliases}"
    );
    ok(&d, &["image", "alias", "delete", "fourth"]);
    fails(&d, &["image", "alias", "delete", "fourth"]);

    // Export: files named by the server in a directory, or after TARGET; both verified.
    let out = tempfile::tempdir().expect("tmp");
    assert_eq!(
        ok(&d, &["image", "export", "bb", s(out.path())]),
        "Image exported successfully!\n"
    );
    ok(&d, &["image", "export", "bbsplit", s(out.path())]);
    let named = out.path().join("named");
    ok(&d, &["image", "export", "bbsplit", s(&named)]);
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("{fp_split}.tar.gz"),
            format!("{fp}.tar.gz"),
            format!("meta-{fp_split}.tar.gz"),
            "named".to_string(),
            "named.root".to_string(),
        ]
    );
    assert_eq!(
        fingerprint_of(&[out.path().join(format!("{fp}.tar.gz"))]),
        fp
    );
    assert_eq!(
        fingerprint_of(&[named.clone(), out.path().join("named.root")]),
        fp_split
    );

    // Errors are one line with exit code 1.
    let e = fails(&d, &["image", "info", "nope"]);
    assert!(e.contains("not found"), "{e}");
    fails(&d, &["image", "import", "/nonexistent/file.tar.gz"]);
    fails(&d, &["image", "export", "nope", s(out.path())]);

    ok(&d, &["image", "delete", "bb", &fp_split[..12]]);
    let csv = ok(&d, &["image", "list", "--format", "csv"]);
    assert_eq!(csv, "");
}

#[test]
fn instances_profiles_and_storage_via_the_cli() {
    let d = TestDaemon::start("cli-inst");
    let unified = busybox_image(false);
    ok(
        &d,
        &["image", "import", s(&unified[0]), "--alias", "busybox"],
    );

    assert_eq!(ok(&d, &["init", "busybox", "c1"]), "Creating c1\n");
    let out = ok(&d, &["init", "busybox", "-c", "user.a=1", "-e"]);
    assert!(
        out.starts_with("Creating the instance\nInstance name is: "),
        "{out}"
    );
    let list = ok(&d, &["list", "c1"]);
    assert!(
        list.contains("| NAME |  STATE  | IPV4 | IPV6 |   TYPE    | SNAPSHOTS |"),
        "{list}"
    );
    assert!(
        list.contains("| c1   | STOPPED |      |      | CONTAINER | 0         |"),
        "{list}"
    );
    let csv = ok(&d, &["list", "user.a=1", "-c", "nt", "--format", "csv"]);
    assert!(csv.ends_with(",CONTAINER (EPHEMERAL)\n"), "{csv}");
    assert_eq!(
        ok(&d, &["list", "-c", "nbP", "--format", "csv", "c1"]),
        "c1,default,default\n"
    );

    // Config.
    ok(&d, &["config", "set", "c1", "user.x", "1"]);
    ok(&d, &["config", "set", "c1", "user.y=2", "user.z=a=b"]);
    assert_eq!(ok(&d, &["config", "get", "c1", "user.z"]), "a=b\n");
    ok(&d, &["config", "unset", "c1", "user.x"]);
    fails(&d, &["config", "unset", "c1", "user.x"]);
    let show = ok(&d, &["config", "show", "c1"]);
    assert!(show.starts_with("architecture: "), "{show}");
    assert!(show.contains("  user.y: \"2\"\n"), "{show}");
    assert!(show.contains("devices: {}\n"), "{show}");
    let expanded = ok(&d, &["config", "show", "c1", "--expanded"]);
    assert!(expanded.contains("  root:\n"), "{expanded}");

    // Profiles.
    assert_eq!(ok(&d, &["profile", "create", "p1"]), "Profile p1 created\n");
    ok(&d, &["profile", "set", "p1", "user.p", "1"]);
    assert_eq!(ok(&d, &["profile", "get", "p1", "user.p"]), "1\n");
    assert_eq!(
        ok(&d, &["profile", "add", "c1", "p1"]),
        "Profile p1 added to c1\n"
    );
    fails(&d, &["profile", "add", "c1", "p1"]);
    let csv = ok(&d, &["profile", "list", "--format", "csv"]);
    assert!(csv.contains("p1,,1\n"), "{csv}");
    assert_eq!(
        ok(&d, &["profile", "remove", "c1", "p1"]),
        "Profile p1 removed from c1\n"
    );
    assert_eq!(
        ok(&d, &["profile", "rename", "p1", "p2"]),
        "Profile p1 renamed to p2\n"
    );
    assert_eq!(ok(&d, &["profile", "delete", "p2"]), "Profile p2 deleted\n");

    // Storage.
    let info = ok(&d, &["storage", "info", "default"]);
    assert!(info.starts_with("info:\n  description: "), "{info}");
    assert!(info.contains("used by:\n  instances:\n"), "{info}");
    assert_eq!(
        ok(&d, &["storage", "volume", "create", "default", "v1"]),
        "Storage volume v1 created\n"
    );
    let vols = ok(
        &d,
        &["storage", "volume", "list", "default", "--format", "csv"],
    );
    assert!(vols.contains("custom,v1,,filesystem,0\n"), "{vols}");
    ok(&d, &["storage", "volume", "delete", "default", "v1"]);

    // Delete.
    ok(&d, &["delete", "c1"]);
    fails(&d, &["delete", "c1"]);
    let csv = ok(&d, &["list", "c1", "--format", "csv"]);
    assert_eq!(csv, "");
}
