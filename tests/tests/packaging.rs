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
fn units_verify() {
    let unit = std::fs::read_to_string(packaging().join("silod.service")).expect("unit");
    assert!(
        unit.contains("Restart=on-failure"),
        "the supervisor restart is the recovery design"
    );
    assert!(unit.contains("Type=notify"));
    let dir = tempfile::tempdir().expect("tmp");
    for name in ["silod.service", "silo-containers.service"] {
        let text = std::fs::read_to_string(packaging().join(name)).expect("unit");
        let local = text.replace(
            "/usr/bin/silod",
            &silo_tests::bin("silod").display().to_string(),
        );
        std::fs::write(dir.path().join(name), local).expect("write");
    }
    let o = Command::new("systemd-analyze")
        // The man pages exist once the package is installed (checked in a booted Debian
        // below), not on a build host.
        .args(["verify", "--man=no"])
        .arg(dir.path().join("silod.service"))
        .arg(dir.path().join("silo-containers.service"))
        .current_dir(dir.path())
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

/// `silod shutdown` (silo-containers.service's ExecStop, run when the host goes down) stops
/// every instance within its `boot.host_shutdown_timeout` and silod exits; silod's next start
/// (the next boot) starts again those that ran, unless `boot.autostart=false`. SIGPWR does
/// the same, as LXD's.
#[test]
fn host_shutdown_stops_instances_and_the_next_start_brings_them_back() {
    use silo_tests::{bin, busybox_image, instance_pids, wait_until, TestDaemon};
    use std::time::{Duration, Instant};

    let mut d = TestDaemon::start("hostdown");
    let dir = d.dir.clone();
    let shutdown = |args: &[&str]| {
        Command::new(bin("silod"))
            .arg("--state-dir")
            .arg(&dir)
            .arg("shutdown")
            .args(args)
            .output()
            .expect("silod shutdown")
    };
    d.import(&busybox_image(false)[0], "busybox");
    for n in ["clean", "stubborn", "noauto", "off"] {
        d.launch("busybox", n);
    }
    let ok = |o: std::process::Output| assert!(o.status.success(), "{}", silo_tests::show(&o));
    // "stubborn" hangs in its shutdown actions, so it is killed after its own 2 s.
    ok(d.silo(&["config", "set", "stubborn", "boot.host_shutdown_timeout=2"]));
    let (rc, o, e) = d.exec(
        "stubborn",
        &[
            "sh",
            "-c",
            "echo '::shutdown:/bin/sleep 600' >> /etc/inittab && kill -HUP 1",
        ],
    );
    assert_eq!(rc, 0, "{o}{e}");
    ok(d.silo(&["config", "set", "noauto", "boot.autostart=false"]));
    ok(d.silo(&["stop", "off"]));

    let t0 = Instant::now();
    let o = shutdown(&["--timeout", "90"]);
    let took = t0.elapsed();
    assert!(
        o.status.success(),
        "{}\n{}",
        silo_tests::show(&o),
        d.log_text()
    );
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("cleanly: clean, noauto;") && said.contains("timeout: stubborn"),
        "{said}"
    );
    assert!(took >= Duration::from_secs(2), "stubborn had 2 s: {took:?}");
    assert!(
        took < Duration::from_secs(30),
        "not the default 30 s: {took:?}"
    );
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        d.log_text()
    );
    assert!(instance_pids(&dir).is_empty(), "{:?}", instance_pids(&dir));
    let again = shutdown(&[]);
    assert!(again.status.success(), "{}", silo_tests::show(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("not running"));

    // The next boot.
    d.spawn();
    let states = |d: &TestDaemon| ["clean", "stubborn", "noauto", "off"].map(|n| d.status(n));
    assert!(
        wait_until(Duration::from_secs(30), || states(&d)
            == ["Running", "Running", "Stopped", "Stopped"]),
        "{:?}\n{}",
        states(&d),
        d.log_text()
    );

    // SIGPWR: the same, from a signal.
    ok(d.silo(&["config", "set", "stubborn", "boot.host_shutdown_timeout=1"]));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGPWR,
    );
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        d.log_text()
    );
    assert!(instance_pids(&dir).is_empty(), "{:?}", instance_pids(&dir));
    d.spawn();
    assert!(
        wait_until(Duration::from_secs(30), || states(&d)
            == ["Running", "Running", "Stopped", "Stopped"]),
        "{:?}",
        states(&d)
    );
}

/// Where scripts/deps keeps the Debian packages silo's package depends on (dnsmasq-base,
/// rsync and what they need), for installing it offline in a booted Debian instance.
const DEP_DEBS: &str = "/var/cache/silo/debs/silo-deps";

fn build_deb(out: &std::path::Path, version: &str, extra: &[&str]) -> PathBuf {
    let o = Command::new(packaging().join("build-deb"))
        .arg("--bin-dir")
        .arg(silo_tests::bin_dir())
        .args(["--fast", "--version", version, "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("run packaging/build-deb");
    assert!(
        o.status.success(),
        "packaging/build-deb {version}: {}",
        silo_tests::show(&o)
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// The package where it is meant to run: a booted Debian 12 with systemd as PID 1 (the debian
/// image in a privileged, nesting silo instance, so that its /var/lib/silo is on a filesystem
/// that can be idmapped). Inside it, through apt and systemd only: install (Depends resolved
/// by apt from a local archive), launch a busybox container, upgrade to a newer build and
/// restart silod with the container running (same init pid), refuse a downgrade below the
/// database's schema, reboot the host (the container is shut down cleanly by
/// silo-containers.service and started again at boot), and purge.
#[test]
fn a_booted_debian_installs_upgrades_and_purges_the_package() {
    use serde_json::json;
    use silo_tests::{busybox_image, debian_image, TestDaemon};
    use std::time::{Duration, Instant};

    let deps = std::path::Path::new(DEP_DEBS);
    assert!(
        std::fs::read_dir(deps)
            .map(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("dnsmasq-base_"))))
            .unwrap_or(false),
        "{DEP_DEBS} has no dnsmasq-base: run scripts/deps (it downloads silo's dependencies for this test)"
    );
    // Declared before the daemon, so dropped after its instances are gone.
    let repo = tempfile::Builder::new()
        .prefix("silo-pkg-repo")
        .tempdir()
        .expect("tmp");
    let v1 = build_deb(repo.path(), "0.1.0+pkgtest1", &[]);
    let v2 = build_deb(repo.path(), "0.1.0+pkgtest2", &["--no-lintian"]);
    let schema = Command::new(silo_tests::bin("silod"))
        .arg("schema")
        .output()
        .expect("silod schema");
    let schema: u32 = String::from_utf8_lossy(&schema.stdout)
        .trim()
        .parse()
        .expect("silod schema prints a number");
    let old = build_deb(
        repo.path(),
        "0.0.9",
        &["--no-lintian", "--schema", &(schema - 1).to_string()],
    );
    for e in std::fs::read_dir(deps).expect("deps").flatten() {
        std::fs::copy(e.path(), repo.path().join(e.file_name())).expect("copy a dependency");
    }
    let o = Command::new("sh")
        .arg("-c")
        .arg("dpkg-scanpackages -m . /dev/null > Packages")
        .current_dir(repo.path())
        .output()
        .expect("dpkg-scanpackages (dpkg-dev)");
    assert!(o.status.success(), "{}", silo_tests::show(&o));

    let images = busybox_image(false)[0]
        .parent()
        .expect("image dir")
        .display()
        .to_string();
    let repo_dir = repo.path().display().to_string();
    let d = TestDaemon::start_with_policy(
        "pkg",
        &format!("allow_privileged = true\nhost_paths = [{repo_dir:?}, {images:?}]\n"),
    );
    d.import(&debian_image(), "debian");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": "host",
            "source": {"type": "image", "alias": "debian"},
            "config": {"security.privileged": "true", "security.nesting": "true"},
            "devices": {
                "repo": {"type": "disk", "source": repo_dir, "path": "/opt/repo", "readonly": "true"},
                "images": {"type": "disk", "source": images, "path": "/opt/images", "readonly": "true"},
            },
        })),
    );
    let sh = |script: &str| d.exec("host", &["sh", "-c", script]);
    let sh_ok = |script: &str| {
        let (rc, out, err) = sh(script);
        if rc != 0 {
            let (_, journal, _) =
                sh("journalctl -u silod -u silo-containers --no-pager | tail -n 40");
            panic!("{script}: exit {rc}\n{out}{err}\njournal:\n{journal}");
        }
        out
    };
    let op = d.set_state("host", "start", false);
    assert_eq!(op["status"], "Success", "{op}");
    silo_tests::wait_booted(&d, "host");

    // Debian's lxd package gives _lxd and root the same range: silo must take one of its own.
    sh_ok(
        "printf '_lxd:1000000:1000000000\\nroot:1000000:1000000000\\n' | tee /etc/subuid > /etc/subgid \
         && echo 'deb [trusted=yes] file:/opt/repo ./' > /etc/apt/silo-test.list",
    );
    let apt =
        "apt-get -q -o Dir::Etc::sourcelist=/etc/apt/silo-test.list -o Dir::Etc::sourceparts=- \
               -o Dpkg::Use-Pty=0";
    sh_ok(&format!("{apt} update"));
    let name = |p: &PathBuf| {
        p.file_name()
            .expect("deb name")
            .to_string_lossy()
            .into_owned()
    };
    let install = sh_ok(&format!(
        "DEBIAN_FRONTEND=noninteractive {apt} install -y --no-install-recommends /opt/repo/{} 2>&1",
        name(&v1)
    ));
    assert!(
        install.contains("Setting up dnsmasq-base"),
        "apt resolved Depends: {install}"
    );
    assert_eq!(
        sh_ok(
            "systemctl is-enabled silod silo-containers; systemctl is-active silod silo-containers"
        ),
        "enabled\nenabled\nactive\nactive\n"
    );
    assert_eq!(
        sh_ok("grep ^root: /etc/subuid; grep ^root: /etc/subgid"),
        "root:1000000:1000000000\nroot:1001000000:1000000000\nroot:1000000:1000000000\nroot:1001000000:1000000000\n"
    );
    sh_ok(
        "id silo && stat -c '%U:%G %a' /var/lib/silo | grep -qx 'silo:silo 711' \
         && test -f /etc/silo/policy.toml && test -x /usr/libexec/silo/silo-priv \
         && test ! -e /usr/bin/silo-priv && test -f /usr/share/man/man8/silod.8.gz \
         && test -f /usr/share/man/man1/silo-launch.1.gz \
         && test -f /usr/share/bash-completion/completions/silo \
         && test -f /usr/share/zsh/vendor-completions/_silo \
         && test -f /usr/share/fish/vendor_completions.d/silo.fish \
         && dpkg-query -W -f '${Conffiles}' silo | grep -q /etc/silo/policy.toml",
    );

    sh_ok("silo image import /opt/images/busybox-x86_64.tar.gz --alias busybox && silo launch busybox c1");
    let init_pid = || -> u64 {
        let s: serde_json::Value =
            serde_json::from_str(&sh_ok("silo query /1.0/instances/c1/state")).expect("state json");
        s["pid"].as_u64().unwrap_or(0)
    };
    let pid = init_pid();
    assert!(pid > 0, "c1 runs");
    let map = sh_ok("silo exec c1 -- cat /proc/self/uid_map");
    let base: u64 = map
        .split_whitespace()
        .nth(1)
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    assert!(
        base >= 1_001_000_000,
        "c1 is mapped into silo's own range, not _lxd's: {map}"
    );
    // A clean shutdown leaves a mark (busybox init runs its shutdown actions).
    sh_ok("silo exec c1 -- sh -c \"echo '::shutdown:/bin/touch /clean-shutdown' >> /etc/inittab && kill -HUP 1\"");

    // An upgrade with the container running: silod restarts (the database migrates), c1
    // does not.
    let main_pid = || {
        sh_ok("systemctl show -p MainPID --value silod")
            .trim()
            .to_string()
    };
    let before = main_pid();
    let up = sh_ok(&format!(
        "DEBIAN_FRONTEND=noninteractive {apt} install -y /opt/repo/{} 2>&1",
        name(&v2)
    ));
    assert!(
        up.contains("Unpacking silo (0.1.0+pkgtest2) over (0.1.0+pkgtest1)"),
        "{up}"
    );
    assert_ne!(main_pid(), before, "the upgrade restarted silod");
    assert_eq!(init_pid(), pid, "c1 kept running through the upgrade");
    assert_eq!(
        sh_ok("grep -c ^root: /etc/subuid"),
        "2\n",
        "no second range of its own"
    );
    sh_ok("systemctl restart silod");
    assert_eq!(
        init_pid(),
        pid,
        "c1 kept running through systemctl restart silod"
    );
    assert_eq!(sh_ok("silo exec c1 -- hostname").trim(), "c1");
    sh_ok("systemctl stop silod && systemctl is-active silo-containers");
    assert_eq!(
        sh(&format!("test -d /proc/{pid}")).0,
        0,
        "c1 kept running while silod was stopped"
    );
    sh_ok("systemctl start silod");
    assert_eq!(init_pid(), pid);

    // A downgrade below the database's schema is refused before anything is unpacked.
    let (rc, out, err) = sh(&format!(
        "DEBIAN_FRONTEND=noninteractive {apt} install -y --allow-downgrades /opt/repo/{} 2>&1",
        name(&old)
    ));
    assert_ne!(rc, 0, "{out}{err}");
    assert!(
        out.contains(&format!("database is at schema {schema}"))
            && out.contains("downgrade is refused"),
        "{out}{err}"
    );
    assert_eq!(
        sh_ok("dpkg-query -W -f '${Version} ${Status}' silo"),
        "0.1.0+pkgtest2 install ok installed"
    );
    assert_eq!(sh_ok("systemctl is-active silod"), "active\n");

    // The host reboots: c1 is shut down cleanly and comes back at boot.
    let op = d.set_state("host", "restart", false);
    assert_eq!(op["status"], "Success", "{op}");
    silo_tests::wait_booted(&d, "host");
    let t0 = Instant::now();
    while sh("silo list c1 --format csv -c s").1.trim() != "RUNNING" {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "c1 did not start again at boot: {}",
            sh_ok("silo list --format csv -c ns; journalctl -b -u silod --no-pager | tail -n 30")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    sh_ok("silo exec c1 -- test -f /clean-shutdown");
    assert_ne!(init_pid(), pid);

    // Purge: the instances are shut down, then what is removed is said before it goes.
    let purge = sh_ok(&format!(
        "DEBIAN_FRONTEND=noninteractive {apt} purge -y silo 2>&1"
    ));
    assert!(
        purge.contains("purging removes silo's state, /var/lib/silo") && purge.contains("silo.db"),
        "{purge}"
    );
    sh_ok(
        "test ! -e /var/lib/silo && test ! -e /etc/silo && ! systemctl cat silod >/dev/null 2>&1 \
         && ! ip link show silobr0 >/dev/null 2>&1 \
         && test -z \"$(cat /sys/fs/cgroup/silo-*/*/cgroup.procs 2>/dev/null)\" \
         && ! dpkg-query -W silo 2>/dev/null | grep -q .",
    );
}

/// The snapcraft recipe (which cannot be built here) passes snapcraft's own JSON schema, and
/// the check fails on a recipe that does not.
#[test]
fn the_snap_recipe_passes_snapcrafts_schema() {
    let check = packaging().join("snap/check");
    let o = Command::new(&check).output().expect("packaging/snap/check");
    assert!(o.status.success(), "{}", silo_tests::show(&o));
    let recipe = std::fs::read_to_string(packaging().join("snap/snapcraft.yaml")).expect("recipe");
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("snapcraft.yaml");
    std::fs::write(
        &bad,
        recipe.replace("confinement: classic", "confinement: clasic"),
    )
    .expect("write");
    let o = Command::new(&check)
        .arg(&bad)
        .output()
        .expect("packaging/snap/check");
    assert_eq!(o.status.code(), Some(1), "{}", silo_tests::show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("'clasic' is not one of")
            || String::from_utf8_lossy(&o.stderr).contains("'clasic' is not one of"),
        "{}",
        silo_tests::show(&o)
    );
}
