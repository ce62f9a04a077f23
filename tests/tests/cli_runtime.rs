//! The `silo` CLI's runtime commands against a real silod: launch, exec (with and without a
//! terminal), start/stop/restart, info, list, files, console log, delete --force.

use silo_tests::{busybox_image, instance_pids, TestDaemon};

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn silo_cli_runs_containers() {
    let d = TestDaemon::start("cli-rt");
    d.import(&busybox_image(false)[0], "busybox");
    let out = ok(&d.silo(&["launch", "busybox", "c1"]));
    assert_eq!(out, "Creating c1\nStarting c1\n");
    // Non-interactive exec: streams apart, the command's exit code is silo's.
    let o = d.silo(&[
        "exec",
        "c1",
        "--env",
        "X=42",
        "--cwd",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo $X $PWD; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "42 /tmp\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let o = d.silo(&["exec", "c1", "--", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127));
    let o = d.silo(&[
        "exec", "c1", "--user", "1000", "--group", "1000", "--", "id", "-u",
    ]);
    assert_eq!(ok(&o), "1000\n");
    // With a terminal (through script, which gives silo a pty).
    let o = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} exec c1 -- sh -c 'tty; exit 4'",
            silo_tests::bin("silo").display()
        ))
        .arg("/dev/null")
        .env("SILO_SOCKET", d.socket())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("/dev/pts/0"),
        "{o:?}"
    );
    assert_eq!(o.status.code(), Some(4));
    // list and info.
    assert_eq!(
        ok(&d.silo(&["list", "--format", "csv", "-c", "ns"])),
        "c1,RUNNING\n"
    );
    let info = ok(&d.silo(&["info", "c1"]));
    // The seed's layout, in order.
    let keys: Vec<&str> = info
        .lines()
        .filter(|l| !l.starts_with(' ') && l.contains(':'))
        .map(|l| l.split(':').next().unwrap_or(""))
        .collect();
    let want = [
        "Name",
        "Location",
        "Remote",
        "Architecture",
        "Created",
        "Status",
        "Type",
        "Profiles",
        "Pid",
        "Ips",
        "Resources",
    ];
    let pos: Vec<usize> = want
        .iter()
        .map(|k| {
            keys.iter()
                .position(|x| x == k)
                .unwrap_or_else(|| panic!("no {k}: in\n{info}"))
        })
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "order {keys:?}");
    assert!(
        info.contains("Name: c1") && info.contains("Status: Running"),
        "{info}"
    );
    assert!(info.contains("Profiles: default"), "{info}");
    assert!(
        info.contains("lo:\tinet\t127.0.0.1") && info.contains("Processes:"),
        "{info}"
    );
    // Files, recursively, modes kept.
    let tree = d.dir.join("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
    std::fs::write(tree.join("sub/f"), "data\n").expect("write");
    std::fs::set_permissions(
        tree.join("sub/f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o751),
    )
    .expect("chmod");
    ok(&d.silo(&["file", "push", "-r", &tree.to_string_lossy(), "c1/root/"]));
    let o = d.silo(&[
        "exec",
        "c1",
        "--",
        "stat",
        "-c",
        "%a %s",
        "/root/tree/sub/f",
    ]);
    assert_eq!(ok(&o), "751 5\n");
    let back = d.dir.join("back");
    std::fs::create_dir_all(&back).expect("mkdir");
    ok(&d.silo(&[
        "file",
        "pull",
        "-r",
        "c1/root/tree",
        &back.to_string_lossy(),
    ]));
    assert_eq!(
        std::fs::read_to_string(back.join("tree/sub/f")).expect("pulled"),
        "data\n"
    );
    ok(&d.silo(&["file", "delete", "c1/root/tree/sub/f"]));
    // stop, start, restart; delete needs --force while running.
    ok(&d.silo(&["stop", "c1"]));
    assert_eq!(
        ok(&d.silo(&["list", "--format", "csv", "-c", "ns"])),
        "c1,STOPPED\n"
    );
    ok(&d.silo(&["start", "c1"]));
    ok(&d.silo(&["restart", "c1", "--force"]));
    let o = d.silo(&["console", "c1", "--show-log"]);
    ok(&o);
    let o = d.silo(&["delete", "c1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--force"),
        "{o:?}"
    );
    ok(&d.silo(&["delete", "c1", "--force"]));
    assert!(instance_pids(&d.dir).is_empty());
    let o = d.silo(&["exec", "c1", "--", "true"]);
    assert!(!o.status.success());
}
