//! packaging/: the systemd unit verifies, and the sysusers and tmpfiles snippets apply to an
//! empty root.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn packaging() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn run_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut c = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn (is systemd installed?)");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    c.wait_with_output().expect("wait")
}

#[test]
fn unit_verifies() {
    let unit = std::fs::read_to_string(packaging().join("silod.service")).expect("unit");
    assert!(
        unit.contains("Restart=on-failure"),
        "the supervisor restart is the recovery design"
    );
    assert!(unit.contains("Type=notify"));
    let dir = tempfile::tempdir().expect("tmp");
    let local = unit.replace(
        "/usr/bin/silod",
        &silo_tests::bin("silod").display().to_string(),
    );
    let path = dir.path().join("silod.service");
    std::fs::write(&path, local).expect("write");
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd)");
    assert!(
        o.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sysusers_and_tmpfiles_apply() {
    let root = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    let users = std::fs::read_to_string(packaging().join("silo.sysusers.conf")).expect("sysusers");
    let o = run_stdin(
        Command::new("systemd-sysusers")
            .arg(format!("--root={}", root.path().display()))
            .arg("-"),
        &users,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("silo:") && l.ends_with(":/nonexistent:/usr/sbin/nologin")),
        "{passwd}"
    );
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("group");
    assert!(group.lines().any(|l| l.starts_with("silo:")), "{group}");
    let tmp = std::fs::read_to_string(packaging().join("silo.tmpfiles.conf")).expect("tmpfiles");
    let o = run_stdin(
        Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", root.path().display()))
            .arg("--create")
            .arg("-"),
        &tmp,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(root.path().join("var/lib/silo")).expect("state dir");
    assert_eq!(m.permissions().mode() & 0o7777, 0o711);
    assert!(root.path().join("etc/silo").is_dir());
}

#[test]
fn example_policy_parses_to_the_defaults() {
    let text = std::fs::read_to_string(packaging().join("policy.toml")).expect("policy");
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, text).expect("write");
    let loaded = silo_proto::jail::policy::Policy::load(&p).expect("parses");
    let default = silo_proto::jail::policy::Policy {
        source: loaded.source.clone(),
        ..Default::default()
    };
    assert_eq!(
        loaded, default,
        "the shipped example documents the defaults"
    );
}
