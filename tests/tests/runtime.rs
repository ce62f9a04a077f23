//! Running containers for real: busybox and systemd, exec, limits, state, files, console,
//! escape attempts, and instances outliving silod.

use std::time::Duration;

use serde_json::json;
use silo_tests::{busybox_image, instance_pids, procs_for, wait_until, TestDaemon};

fn busybox(d: &TestDaemon) {
    d.import(&busybox_image(false)[0], "busybox");
}

fn out(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn busybox_lifecycle_exec_and_state() {
    let d = TestDaemon::start("rt-life");
    busybox(&d);
    d.launch("busybox", "c1");
    assert_eq!(d.status("c1"), "Running");
    // Init is PID 1 of its own pid namespace, as container root mapped to the instance's ids.
    let (code, o, _) = d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "echo $$; cat /proc/1/comm; hostname; id -u; cat /proc/self/uid_map",
        ],
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[1], "init", "{o}");
    assert_eq!(
        lines[2], "c1",
        "hostname = instance name (template and UTS namespace): {o}"
    );
    assert_eq!(lines[3], "0");
    let (_, v) = d.api("GET", "/1.0/instances/c1", None);
    let base = v["metadata"]["config"]["volatile.idmap.base"]
        .as_str()
        .expect("base")
        .to_string();
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        vec!["0", base.as_str(), "65536"]
    );
    // Exit codes, stdout and stderr apart, environment, cwd, user.
    let (code, o, e) = d.exec("c1", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((code, o.as_str(), e.as_str()), (3, "out\n", "err\n"));
    let (code, _, e) = d.exec("c1", &["no-such-command"]);
    assert_eq!(code, 127, "a missing command answers 127 as LXD does");
    assert!(e.contains("no-such-command"), "{e}");
    let (code, o, _) = d.exec_as("c1", &["id", "-u"], 1000);
    assert_eq!((code, o.trim()), (0, "1000"));
    // A user beyond the instance's 65536 ids is refused before anything runs.
    let (c, v) = d.api(
        "POST",
        "/1.0/instances/c1/exec",
        Some(json!({"command": ["true"], "user": 70000, "wait-for-websocket": false})),
    );
    assert_eq!(c, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("70000"), "{v}");
    // State: pid, processes, memory, loopback counters.
    let (_, st) = d.api("GET", "/1.0/instances/c1/state", None);
    let st = &st["metadata"];
    assert_eq!(st["status"], "Running");
    assert!(st["pid"].as_u64().unwrap_or(0) > 1, "{st}");
    assert!(st["processes"].as_u64().unwrap_or(0) >= 1, "{st}");
    assert!(st["memory"]["usage"].as_u64().unwrap_or(0) > 0, "{st}");
    assert!(
        st["network"]["lo"]["addresses"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{st}"
    );
    assert!(
        st["disk"]["root"]["usage"].as_u64().unwrap_or(0) > 0,
        "{st}"
    );
    // The instance's processes are in its own cgroup, outside silod's and the helpers'.
    let pids = instance_pids(&d.dir);
    assert!(
        pids.contains(&(st["pid"].as_u64().unwrap_or(0) as u32)),
        "{pids:?}"
    );
    for (p, _) in procs_for(&d.dir) {
        let cg = std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
        let tag = silo_proto::install_tag(&d.dir);
        assert!(
            !cg.contains(&format!("silo-{tag}")) || !d.helpers().iter().any(|(_, h)| *h == p),
            "a helper sits in an instance cgroup: {cg}"
        );
    }
    // Starting twice, deleting while running: clear refusals.
    let (c, v) = d.api(
        "PUT",
        "/1.0/instances/c1/state",
        Some(json!({"action": "start"})),
    );
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("already running"),
        "{v}"
    );
    let (c, v) = d.api("DELETE", "/1.0/instances/c1", None);
    let refused = c == 400 || (c == 202 && d.wait_op(&v)["status"] == "Failure");
    assert!(refused, "deleting a running instance must be refused: {v}");
    assert_eq!(d.status("c1"), "Running");
    // Restart keeps it running with a new init.
    let pid_before = st["pid"].as_u64();
    let op = d.set_state("c1", "restart", true);
    assert_eq!(op["status"], "Success", "{op}");
    let (_, st2) = d.api("GET", "/1.0/instances/c1/state", None);
    assert_ne!(st2["metadata"]["pid"].as_u64(), pid_before);
    // A clean stop (SIGPWR to busybox init) leaves no process and no cgroup behind.
    let op = d.set_state("c1", "stop", false);
    assert_eq!(op["status"], "Success", "{op}");
    assert_eq!(d.status("c1"), "Stopped");
    assert!(instance_pids(&d.dir).is_empty());
    let tag = silo_proto::install_tag(&d.dir);
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/memory/silo-{tag}/c1")).exists()
            && !std::path::Path::new(&format!("/sys/fs/cgroup/silo-{tag}/c1")).exists(),
        "the instance's cgroup is removed at stop"
    );
    let (c, v) = d.api(
        "PUT",
        "/1.0/instances/c1/state",
        Some(json!({"action": "stop"})),
    );
    assert_eq!(c, 400, "stopping a stopped instance: {v}");
    assert!(
        d.dir.join("runtime/c1/console.log").exists(),
        "the console log outlives a stop"
    );
    d.api_ok("DELETE", "/1.0/instances/c1", None);
    assert!(
        !d.dir.join("runtime/c1").exists(),
        "and goes with the instance"
    );
    assert!(!d.dir.join("logs/c1").exists());
}

#[test]
fn stock_client_launch_exec_list_info_files_limits() {
    let d = TestDaemon::start("rt-lxc");
    busybox(&d);
    let o = d.lxc(&["launch", "busybox", "c1"]);
    assert!(o.status.success(), "{}", out(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("Creating c1") && s.contains("Starting c1"),
        "{s}"
    );
    let o = d.lxc(&[
        "exec",
        "c1",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // Interactive: a pty inside the instance's own devpts, exit code carried back.
    let o = std::process::Command::new("script")
        .args([
            "-qec",
            "lxc exec c1 -- sh -c 'tty; stty size; exit 5'",
            "/dev/null",
        ])
        .env("LXD_DIR", &d.dir)
        .env("LXD_CONF", d.dir.join("lxc-conf"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("/dev/pts/0"), "{}", out(&o));
    assert_eq!(o.status.code(), Some(5), "{}", out(&o));
    // The console: busybox's askfirst shell on /dev/console answers; ctrl-a q detaches.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("(sleep 1; printf '\\r'; sleep 1; printf 'echo console-$((6*7))\\r'; sleep 1; printf '\\001'; sleep 0.5; printf q; sleep 1) | script -qec 'lxc console c1' /dev/null")
        .env("LXD_DIR", &d.dir)
        .env("LXD_CONF", d.dir.join("lxc-conf"))
        .output()
        .expect("script");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("console-42"),
        "{}",
        out(&o)
    );
    assert!(o.status.success(), "detached cleanly: {}", out(&o));
    let o = d.lxc(&["console", "c1", "--show-log"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("console-42"),
        "{}",
        out(&o)
    );
    let o = d.lxc(&["list", "--format", "csv", "-c", "ns"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "c1,RUNNING",
        "{}",
        out(&o)
    );
    let o = d.lxc(&["info", "c1"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("Status: RUNNING")
            && s.contains("Processes:")
            && s.contains("Memory (current):"),
        "{s}"
    );
    // Files: owner and mode kept both ways.
    let src = d.dir.join("push-me");
    std::fs::write(&src, "hello\n").expect("write");
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&src).expect("md").permissions(),
        0o640,
    );
    std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .expect("chmod");
    let o = d.lxc(&[
        "file",
        "push",
        &src.to_string_lossy(),
        "c1/root/pushed",
        "--uid",
        "1000",
        "--gid",
        "1001",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let (_, l, _) = d.exec("c1", &["stat", "-c", "%u %g %a", "/root/pushed"]);
    assert_eq!(l.trim(), "1000 1001 640");
    let back = d.dir.join("pulled");
    let o = d.lxc(&["file", "pull", "c1/root/pushed", &back.to_string_lossy()]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(std::fs::read_to_string(&back).expect("pulled"), "hello\n");
    // Limits, live.
    let o = d.lxc(&["config", "set", "c1", "limits.memory", "128MiB"]);
    assert!(o.status.success(), "{}", out(&o));
    let tag = silo_proto::install_tag(&d.dir);
    let lim = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/silo-{tag}/c1/memory.limit_in_bytes"
    ))
    .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/silo-{tag}/c1/memory.max")))
    .expect("memory limit file");
    assert_eq!(lim.trim(), (128u64 << 20).to_string());
    let o = d.lxc(&["stop", "c1"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = d.lxc(&["start", "c1"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = d.lxc(&["restart", "c1", "--force"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = d.lxc(&["delete", "c1", "--force"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(instance_pids(&d.dir).is_empty());
}

#[test]
fn escape_attempts_are_denied() {
    let d = TestDaemon::start("rt-escape");
    busybox(&d);
    d.launch("busybox", "c1");
    let sh = |script: &str| d.exec("c1", &["sh", "-c", script]);
    // Mounting a host path: the host's / is not in the instance's mount namespace at all, and
    // what it can see it cannot remount writable.
    let secret = d.dir.join("host-secret");
    std::fs::write(&secret, "host").expect("write");
    let (code, _, _) = sh(&format!(
        "cat {} || cat /proc/1/root/../..{}",
        secret.display(),
        secret.display()
    ));
    assert_ne!(
        code, 0,
        "a host file must not be reachable from the instance"
    );
    let (code, _, e) = sh("mknod /tmp/blk b 254 0");
    assert_ne!(code, 0, "no block devices in an unprivileged instance: {e}");
    let (code, _, e) = sh("mkdir -p /mnt/h && mount -t ext4 /dev/vda /mnt/h");
    assert_ne!(code, 0, "{e}");
    // /sys and /proc/sys cannot be remounted writable (the mounts are locked, see
    // sec_runtime.rs), and their host-owned keys would refuse writes anyway: the user
    // namespace is a second barrier (as in LXD).
    let (code, _, _) = sh("mount -o remount,rw /sys; mount -o remount,rw /proc/sys; echo x > /sys/kernel/uevent_helper");
    assert_ne!(code, 0, "/sys/kernel/uevent_helper must stay unwritable");
    let (code, _, _) = sh("echo 1 > /proc/sys/kernel/sysrq");
    assert_ne!(code, 0, "kernel.sysrq is the host's");
    // Module loading: the container seccomp filter answers ENOSYS.
    let (code, _, e) = sh("insmod /nonexistent.ko");
    assert_ne!(code, 0, "{e}");
    // /proc/sys outside the network namespace's keys, and /sys, are read-only.
    let (code, _, _) = sh("echo 1 > /proc/sys/kernel/sysrq");
    assert_ne!(code, 0);
    let (code, _, _) = sh("echo x > /sys/kernel/uevent_helper");
    assert_ne!(code, 0);
    let (code, _, _) = sh("echo 1 > /proc/sys/net/ipv4/ip_forward");
    assert_eq!(
        code, 0,
        "net.* keys belong to the instance's network namespace"
    );
    // The capabilities LXD drops, and seccomp, hold for exec'd processes as for init.
    let (_, o, _) = sh("grep -E 'CapBnd|Seccomp:' /proc/1/status /proc/self/status");
    let bnd: Vec<&str> = o.lines().filter(|l| l.contains("CapBnd")).collect();
    assert_eq!(bnd.len(), 2, "{o}");
    assert_eq!(
        bnd[0].split_whitespace().last(),
        bnd[1].split_whitespace().last(),
        "{o}"
    );
    let mask = u64::from_str_radix(bnd[0].split_whitespace().last().unwrap_or("0"), 16)
        .unwrap_or(u64::MAX);
    for cap in [16u32, 17, 25, 32, 33] {
        assert_eq!(
            mask & (1 << cap),
            0,
            "capability {cap} must be dropped: {o}"
        );
    }
    assert_eq!(o.matches("Seccomp:\t2").count(), 2, "{o}");
    // A fork bomb under limits.processes stays inside.
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"config": {"limits.processes": "50"}})),
    );
    let (_, _, _) = sh("for i in $(seq 200); do sleep 3 & done; wait");
    let (_, st) = d.api("GET", "/1.0/instances/c1/state", None);
    assert!(
        st["metadata"]["processes"].as_u64().unwrap_or(999) <= 50,
        "{st}"
    );
    std::thread::sleep(Duration::from_secs(4));
    // A memory hog under limits.memory is killed inside; the instance and silo carry on.
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"config": {"limits.memory": "32MiB"}})),
    );
    let (code, _, _) = sh("x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}");
    assert_ne!(code, 0, "the hog must not finish");
    let (code, o, _) = sh("echo alive");
    assert_eq!((code, o.as_str()), (0, "alive\n"));
    assert_eq!(d.status("c1"), "Running");
}

#[test]
fn init_that_exits_at_once_is_stopped_with_its_reason() {
    let d = TestDaemon::start("rt-badinit");
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c1", "source": {"type": "image", "alias": "busybox"}})),
    );
    // Replace init (a symlink to busybox, which the files API never writes through) with a
    // script that exits 7 at once.
    let (c, _) = d.api_raw("DELETE", "/1.0/instances/c1/files?path=/sbin/init");
    assert_eq!(c, 200);
    let (c, _) = {
        let o = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "-H",
                "X-LXD-mode: 0755",
                "--data-binary",
                "#!/bin/sh\necho init-bails-out\nexit 7\n",
                "--unix-socket",
            ])
            .arg(d.socket())
            .arg("http://silo/1.0/instances/c1/files?path=/sbin/init")
            .output()
            .expect("curl");
        (String::from_utf8_lossy(&o.stdout).to_string(), ())
    };
    assert_eq!(c, "200");
    d.set_state("c1", "start", false);
    assert!(
        wait_until(Duration::from_secs(10), || d.status("c1") == "Stopped"),
        "an init that exits must leave the instance Stopped"
    );
    // The monitor drains the console into its log as it reaps init: a moment after the status.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (_, log) = d.api_raw("GET", "/1.0/instances/c1/console");
            String::from_utf8_lossy(&log).contains("init-bails-out")
        }),
        "the console log keeps init's last words"
    );
    // The status turns Stopped as soon as init is gone; silod's watcher logs once the
    // monitor has written the exit record.
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_text()
            .contains("stopped by itself")),
        "silod logs it"
    );
    assert!(instance_pids(&d.dir).is_empty());
}

#[test]
fn instances_outlive_silod_and_its_helpers() {
    let mut d = TestDaemon::start("rt-outlive");
    busybox(&d);
    d.launch("busybox", "c1");
    let (_, st) = d.api("GET", "/1.0/instances/c1/state", None);
    let init = st["metadata"]["pid"].as_u64().expect("pid") as u32;
    // kill -9 silod and every helper at once.
    let mut victims: Vec<u32> = d.helpers().into_iter().map(|(_, p)| p).collect();
    victims.push(d.pid());
    for p in &victims {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(wait_until(Duration::from_secs(5), || victims
        .iter()
        .all(|p| !silo_tests::alive(*p))));
    d.wait_exit(Duration::from_secs(5));
    assert!(
        silo_tests::alive(init),
        "the instance must survive silod and the helpers"
    );
    d.spawn();
    // Re-adopted: same init, RUNNING, exec/info/stop work.
    assert_eq!(d.status("c1"), "Running");
    let (_, st) = d.api("GET", "/1.0/instances/c1/state", None);
    assert_eq!(
        st["metadata"]["pid"].as_u64(),
        Some(init as u64),
        "not restarted"
    );
    let (code, o, _) = d.exec("c1", &["echo", "still here"]);
    assert_eq!((code, o.as_str()), (0, "still here\n"));
    assert!(d.log_text().contains("adopted a running instance"));
    let op = d.set_state("c1", "stop", false);
    assert_eq!(op["status"], "Success", "{op}");
    assert!(!silo_tests::alive(init));
}

#[test]
fn autostart_at_daemon_start() {
    let mut d = TestDaemon::start("rt-auto");
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "a1", "source": {"type": "image", "alias": "busybox"}, "config": {"boot.autostart": "true"}})),
    );
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "a2", "source": {"type": "image", "alias": "busybox"}})),
    );
    d.stop();
    d.spawn();
    assert!(wait_until(Duration::from_secs(10), || d.status("a1") == "Running"));
    assert_eq!(d.status("a2"), "Stopped");
}

#[test]
fn debian_boots_systemd_and_stops_cleanly() {
    let d = TestDaemon::start("rt-debian");
    d.import(&silo_tests::debian_image(), "debian");
    d.launch("debian", "d1");
    // `--wait` returns once boot is done: running, or degraded where units need hardware or
    // a network this test does not give the instance.
    // systemd's bus comes up a moment after init starts; ask until it answers.
    let mut state = String::new();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        let (_, o, _) = d.exec(
            "d1",
            &["timeout", "120", "systemctl", "is-system-running", "--wait"],
        );
        state = o.trim().to_string();
        if state == "running" || state == "degraded" {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        state == "running" || state == "degraded",
        "systemd ended up {state:?}"
    );
    let (_, o, _) = d.exec("d1", &["sh", "-c", "cat /proc/1/comm; hostname"]);
    assert_eq!(o, "systemd\nd1\n");
    // Stop asks systemd with SIGRTMIN+3 and waits for a clean halt.
    let op = d.set_state("d1", "stop", false);
    assert_eq!(op["status"], "Success", "{op}");
    assert_eq!(d.status("d1"), "Stopped");
    assert!(instance_pids(&d.dir).is_empty());
}

#[test]
fn busybox_on_a_btrfs_pool() {
    let d = TestDaemon::start("rt-btrfs");
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "bt", "driver": "btrfs", "config": {"size": "512MiB"}})),
    );
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "b1", "source": {"type": "image", "alias": "busybox"},
                    "devices": {"root": {"type": "disk", "path": "/", "pool": "bt"}}}),
        ),
    );
    d.set_state("b1", "start", false);
    let (code, o, _) = d.exec(
        "b1",
        &[
            "sh",
            "-c",
            "touch /root/x && stat -c %u /root/x && hostname",
        ],
    );
    assert_eq!((code, o.as_str()), (0, "0\nb1\n"));
    // On disk the file belongs to the instance's root as the instance sees it (idmapped).
    let on_disk =
        std::fs::metadata(d.dir.join("storage-pools/bt/containers/b1/rootfs/root/x")).expect("x");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&on_disk), 0);
    d.set_state("b1", "stop", true);
    d.api_ok("DELETE", "/1.0/instances/b1", None);
    d.api_ok("DELETE", "/1.0/images/aliases/busybox", None);
}

fn status_field(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn launcher_and_monitor_confinement() {
    let d = TestDaemon::start("rt-conf");
    busybox(&d);
    d.launch("busybox", "c1");
    let (_, st) = d.api("GET", "/1.0/instances/c1/state", None);
    let init = st["metadata"]["pid"].as_u64().expect("pid") as u32;
    let ppid = |p: u32| -> u32 {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    };
    let monitor = ppid(init);
    let launcher = ppid(monitor);
    let priv_pid = d
        .helpers()
        .into_iter()
        .find(|(n, _)| n == "silo-priv")
        .map(|(_, p)| p)
        .expect("silo-priv");
    assert_eq!(ppid(launcher), priv_pid, "launcher forked from silo-priv");
    // The launcher: the containers' seccomp filter, without LXD's dropped capabilities.
    assert_eq!(status_field(launcher, "Seccomp"), "2");
    let bnd = u64::from_str_radix(&status_field(launcher, "CapBnd"), 16).expect("CapBnd");
    for cap in [16u32, 17, 25, 32, 33] {
        assert_eq!(bnd & (1 << cap), 0, "launcher keeps capability {cap}");
    }
    // The monitor: nothing at all once init runs. It drops its capabilities when silo-priv
    // releases init, which the start's answer does not wait for.
    assert!(
        wait_until(Duration::from_secs(5), || status_field(monitor, "CapEff")
            == "0000000000000000"),
        "the monitor keeps capabilities {}",
        status_field(monitor, "CapEff")
    );
    assert_eq!(status_field(monitor, "CapBnd"), "0000000000000000");
    assert_eq!(status_field(monitor, "NoNewPrivs"), "1");
    // Module loading from inside fails with the filter's ENOSYS, not EPERM.
    let (code, _, e) = d.exec("c1", &["sh", "-c", "insmod /dev/null"]);
    assert_ne!(code, 0, "{e}");
}

#[test]
fn privileged_only_where_the_policy_allows_it() {
    let d = TestDaemon::start("rt-priv-no");
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "p1", "source": {"type": "image", "alias": "busybox"}, "config": {"security.privileged": "true"}})),
    );
    let op = d.set_state("p1", "start", false);
    assert_eq!(op["status"], "Failure");
    assert!(
        op["err"]
            .as_str()
            .unwrap_or("")
            .contains("allow_privileged"),
        "{op}"
    );
    assert!(instance_pids(&d.dir).is_empty());
    drop(d);
    let d = TestDaemon::start_with_policy("rt-priv-yes", "allow_privileged = true\n");
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "p1", "source": {"type": "image", "alias": "busybox"}, "config": {"security.privileged": "true"}})),
    );
    let op = d.set_state("p1", "start", false);
    assert_eq!(op["status"], "Success", "{op}");
    let (code, o, _) = d.exec("p1", &["cat", "/proc/self/uid_map"]);
    assert_eq!(code, 0);
    assert_eq!(
        o.split_whitespace().collect::<Vec<_>>(),
        vec!["0", "0", "4294967295"],
        "no user namespace"
    );
    d.set_state("p1", "stop", true);
}

#[test]
fn detects_and_runs_on_a_pure_cgroup2_layout() {
    // silod and its helpers see only a cgroup2 at /sys/fs/cgroup (their own mount namespace):
    // silo-priv must detect that rather than assume this host's hybrid layout.
    let d = TestDaemon::start_pure_cgroup2("rt-cg2");
    busybox(&d);
    d.launch("busybox", "c1");
    let (_, st) = d.api("GET", "/1.0/instances/c1/state", None);
    let pid = st["metadata"]["pid"].as_u64().expect("pid");
    let tag = silo_proto::install_tag(&d.dir);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    assert!(
        cg.lines()
            .any(|l| l.starts_with("0::") && l.contains(&format!("/silo-{tag}/c1"))),
        "init is in the instance's cgroup2 group: {cg}"
    );
    let (code, o, _) = d.exec("c1", &["sh", "-c", "cat /proc/self/cgroup; echo ok"]);
    assert_eq!(code, 0);
    assert!(o.ends_with("ok\n"), "{o}");
    // A memory limit needs cgroup2's memory controller: applied when the host gives it to
    // cgroup2, refused by name when (as on a hybrid host) it is bound to v1.
    let controllers = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers"))
        .unwrap_or_default();
    let (c, v) = d.api(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"config": {"limits.memory": "64MiB"}})),
    );
    if controllers.split_whitespace().any(|c| c == "memory") {
        assert_eq!(c, 200, "{v}");
    } else {
        assert_ne!(c, 200, "{v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains("limits.memory"),
            "{v}"
        );
        let (_, v) = d.api("GET", "/1.0/instances/c1", None);
        assert!(
            v["metadata"]["config"].get("limits.memory").is_none(),
            "the record is unchanged"
        );
    }
    let op = d.set_state("c1", "stop", false);
    assert_eq!(op["status"], "Success", "{op}");
    assert!(instance_pids(&d.dir).is_empty());
}
