//! Container root against the host processes that enter its instance: exec must never show it
//! a process that still carries host credentials (runc's CVE-2016-9962), the mounts that
//! confine it must stay put, and nothing silo-priv reads about it may go through its files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use silo_tests::{busybox_image, wait_until, TestDaemon};

/// A probe for inside the instance, as container root: spins PTRACE_SEIZE on the pids the
/// kernel hands out next (read from ns_last_pid, as an attacker predicts them) and, for every
/// process it seizes, stops it and reads its credentials. A process that still carries host
/// credentials shows the overflow uid 65534 inside the instance.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int last_pid(void) {
    char b[32];
    int fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY);
    if (fd < 0) return -1;
    int n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n <= 0) return -1;
    b[n] = 0;
    return atoi(b);
}

static void uid_line(int pid, char *out, size_t len) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    out[0] = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    int n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = 0;
    char *u = strstr(buf, "Uid:");
    if (!u) return;
    char *e = strchr(u, '\n');
    if (e) *e = 0;
    snprintf(out, len, "%s", u);
}

int main(int argc, char **argv) {
    int max = argc > 1 ? atoi(argv[1]) : 120;
    time_t end = time(NULL) + max;
    long tries = 0, attached = 0, host = 0;
    int me = getpid();
    printf("ready\n");
    fflush(stdout);
    while (time(NULL) < end && access("/tmp/probe.stop", F_OK) != 0) {
        int last = last_pid();
        for (int p = last; p <= last + 2; p++) {
            if (p <= 1 || p == me) continue;
            tries++;
            if (ptrace(PTRACE_SEIZE, p, 0, 0) != 0) continue;
            attached++;
            ptrace(PTRACE_INTERRUPT, p, 0, 0);
            int st;
            waitpid(p, &st, __WALL);
            char uid[256];
            uid_line(p, uid, sizeof uid);
            if (strstr(uid, "65534")) {
                host++;
                printf("HOST pid %d %s\n", p, uid);
            }
            ptrace(PTRACE_DETACH, p, 0, 0);
        }
    }
    printf("tries %ld attached %ld host %ld\n", tries, attached, host);
    return 0;
}
"#;

fn out(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Builds the probe as a static binary (the busybox instance has no libc).
fn build_probe(dir: &Path) -> PathBuf {
    let src = dir.join("probe.c");
    let bin = dir.join("probe");
    std::fs::write(&src, PROBE_C).expect("write probe source");
    let o = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("cc (build-essential, installed by scripts/deps) must be present");
    assert!(
        o.status.success(),
        "building the ptrace probe failed (needs a static libc: libc6-dev):\n{}",
        out(&o)
    );
    bin
}

#[test]
fn exec_never_shows_container_root_a_host_root_process() {
    let d = TestDaemon::start("sec-ptrace");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    let probe = build_probe(&d.dir);
    let o = d.silo(&[
        "file",
        "push",
        "--mode",
        "0755",
        probe.to_str().expect("utf-8 path"),
        "c1/probe",
    ]);
    assert!(o.status.success(), "pushing the probe: {}", out(&o));
    // The probe runs on, reparented to the instance's init, while the host execs.
    let (code, _, e) = d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "rm -f /tmp/probe.stop; /probe 300 > /tmp/probe.out 2>&1 &",
        ],
    );
    assert_eq!(code, 0, "{e}");
    assert!(
        wait_until(Duration::from_secs(10), || d
            .exec("c1", &["cat", "/tmp/probe.out"])
            .1
            .contains("ready")),
        "the probe did not start"
    );
    for i in 0..200 {
        let o = d.silo(&["exec", "c1", "--", "true"]);
        assert!(o.status.success(), "silo exec #{i}: {}", out(&o));
    }
    for i in 0..100 {
        let o = d.lxc(&["exec", "c1", "--", "true"]);
        assert!(o.status.success(), "lxc exec #{i}: {}", out(&o));
    }
    let (code, _, e) = d.exec("c1", &["touch", "/tmp/probe.stop"]);
    assert_eq!(code, 0, "{e}");
    let mut report = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            report = d.exec("c1", &["cat", "/tmp/probe.out"]).1;
            report.contains("tries ")
        }),
        "the probe did not finish: {report}"
    );
    let last = report
        .lines()
        .find(|l| l.starts_with("tries "))
        .expect("summary line");
    let n: Vec<u64> = last
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n.len(), 3, "{report}");
    assert!(
        n[0] > 1000,
        "the probe must really have raced the execs: {report}"
    );
    assert_eq!(
        n[2], 0,
        "container root attached to a process with host credentials:\n{report}"
    );
    assert!(!report.contains("HOST"), "{report}");
}

#[test]
fn the_mounts_that_confine_an_instance_are_locked() {
    let d = TestDaemon::start("sec-locked");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    let sh = |script: &str| d.exec("c1", &["sh", "-c", script]);
    let confining = [
        "/proc/sys",
        "/proc/sys/net",
        "/proc/sysrq-trigger",
        "/sys",
        "/proc",
        "/dev",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/console",
    ];
    for m in confining {
        if m == "/proc/sysrq-trigger" && !Path::new(m).exists() {
            continue;
        }
        for attempt in [
            format!("umount {m}"),
            format!("umount -l {m}"),
            format!("umount -f {m}"),
        ] {
            let (code, o, e) = sh(&attempt);
            assert_ne!(code, 0, "container root could `{attempt}`: {o}{e}");
        }
    }
    for m in ["/proc/sys", "/sys", "/proc/sysrq-trigger"] {
        if m == "/proc/sysrq-trigger" && !Path::new(m).exists() {
            continue;
        }
        for attempt in [
            format!("mount -o remount,rw {m}"),
            format!("mount -o remount,bind,rw {m}"),
        ] {
            let (code, o, e) = sh(&attempt);
            assert_ne!(code, 0, "container root could `{attempt}`: {o}{e}");
        }
    }
    // Still in place and still read-only after all of that.
    let (_, info, _) = sh("cat /proc/self/mountinfo");
    for (m, ro) in [
        ("/proc/sys", true),
        ("/sys", true),
        ("/proc/sys/net", false),
    ] {
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(m))
            .unwrap_or_else(|| panic!("{m} is no longer mounted:\n{info}"));
        let opts = line.split(' ').nth(5).unwrap_or_default();
        assert_eq!(
            opts.split(',').any(|o| o == "ro"),
            ro,
            "{m} has options {opts}"
        );
    }
    // The attacker's tool from the exploit: predicting pids by writing ns_last_pid.
    let (code, _, _) = sh("echo 4000 > /proc/sys/kernel/ns_last_pid");
    assert_ne!(code, 0, "ns_last_pid must not be writable");
    // A fresh proc or a writable sysfs elsewhere would undo the hiding: the kernel refuses
    // them while the existing ones are locked.
    let (code, _, e) = sh("mkdir -p /mnt/p && mount -t proc proc /mnt/p");
    assert_ne!(code, 0, "a fresh /proc mount: {e}");
    let (code, _, e) = sh("mkdir -p /mnt/s && mount -t sysfs -o rw sysfs /mnt/s");
    assert_ne!(code, 0, "a writable sysfs mount: {e}");
    // What the instance owns still works: its own network keys, devpts, /run, cgroup2.
    let (code, _, e) = sh("echo 1 > /proc/sys/net/ipv4/ip_forward");
    assert_eq!(code, 0, "the instance's own net.* keys stay writable: {e}");
    let (code, _, e) = sh("touch /run/x && ls /dev/pts/ptmx && echo ok > /dev/null");
    assert_eq!(code, 0, "{e}");
}

#[test]
fn interface_state_is_read_from_the_kernel_not_from_the_instances_files() {
    let d = TestDaemon::start("sec-netstate");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    // A host file only root may read, and a container root that points its /sys at it.
    let secret = d.dir.join("host-secret");
    std::fs::write(&secret, "HOST-SECRET-7f3a").expect("write secret");
    let script = format!(
        "mount -t tmpfs none /sys/class/net && mkdir /sys/class/net/eth0 && \
         ln -s {s} /sys/class/net/eth0/address && ln -s {s} /sys/class/net/eth0/mtu && \
         ln -s {s} /sys/class/net/eth0/operstate",
        s = secret.display()
    );
    let (code, _, e) = d.exec("c1", &["sh", "-c", &script]);
    assert_eq!(
        code, 0,
        "container root may mount over its own /sys/class/net: {e}"
    );
    let (code, real, _) = d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "ip link show eth0 | awk '/link\\/ether/ {print $2}'",
        ],
    );
    assert_eq!(code, 0);
    let real = real.trim().to_string();
    assert_eq!(real.len(), 17, "eth0 has a MAC inside: {real:?}");
    let state = d.api_ok("GET", "/1.0/instances/c1/state", None);
    let text = state.to_string();
    assert!(
        !text.contains("HOST-SECRET"),
        "a host file leaked through the instance's state: {text}"
    );
    let eth0 = &state["network"]["eth0"];
    assert_eq!(eth0["hwaddr"], real.as_str(), "{eth0}");
    assert!(eth0["mtu"].as_u64().unwrap_or(0) >= 1280, "{eth0}");
    assert_eq!(eth0["state"], "up", "{eth0}");
    let lo = &state["network"]["lo"];
    assert!(
        lo["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["address"] == "127.0.0.1")),
        "{lo}"
    );
}

/// The instance's `pids.max` as the host's pids hierarchy has it.
fn pids_max(d: &TestDaemon, name: &str) -> String {
    pids_file(d, name, "pids.max")
}

/// A file of the instance's group in the host's pids hierarchy.
fn pids_file(d: &TestDaemon, name: &str, which: &str) -> String {
    let state = d.api_ok("GET", &format!("/1.0/instances/{name}/state"), None);
    let pid = state["pid"].as_u64().expect("running instance has a pid");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("init's cgroups");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for line in cg.lines() {
        let f: Vec<&str> = line.splitn(3, ':').collect();
        if f.len() != 3 {
            continue;
        }
        let pids_v1 = f[1].split(',').any(|c| c == "pids");
        let v2 = f[0] == "0" && f[1].is_empty();
        for m in mounts.lines() {
            let Some((left, right)) = m.split_once(" - ") else {
                continue;
            };
            let mp = left.split(' ').nth(4).unwrap_or_default();
            let fits = (pids_v1 && right.starts_with("cgroup ") && right.contains("pids"))
                || (v2 && right.starts_with("cgroup2 "));
            let file = Path::new(mp).join(f[2].trim_start_matches('/')).join(which);
            if fits && file.exists() {
                return std::fs::read_to_string(file)
                    .expect(which)
                    .trim()
                    .to_string();
            }
        }
    }
    panic!("no pids.max for {name}'s init ({pid}):\n{cg}");
}

#[test]
fn the_policy_caps_every_instances_processes() {
    // Without a policy file the built-in ceiling applies to an instance that sets nothing.
    let d = TestDaemon::start("sec-pids-default");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    assert_eq!(pids_max(&d, "c1"), "20000");
    drop(d);

    let d = TestDaemon::start_with_policy("sec-pids", "max_processes = 40\n");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    assert_eq!(pids_max(&d, "c1"), "40");
    // A fork bomb stops at the ceiling; the host keeps its pids.
    let _ = d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "for i in $(seq 80); do sleep 30 & done 2>/dev/null; true",
        ],
    );
    let current: u64 = pids_file(&d, "c1", "pids.current")
        .parse()
        .expect("pids.current");
    assert!(
        current <= 40,
        "the instance ran {current} processes past its ceiling of 40"
    );
    let events = pids_file(&d, "c1", "pids.events");
    assert!(
        events
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        "the bomb never reached the ceiling: {events}"
    );
    // Asking for more than the policy allows is refused by name; less is fine.
    let (code, v) = d.api(
        "PATCH",
        "/1.0/instances/c1",
        Some(serde_json::json!({"config": {"limits.processes": "100"}})),
    );
    let text = v.to_string();
    assert!(
        code >= 400 && text.contains("max_processes"),
        "limits.processes above the policy's ceiling: {code} {text}"
    );
    assert_eq!(pids_max(&d, "c1"), "40");
    d.api_ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(serde_json::json!({"config": {"limits.processes": "25"}})),
    );
    assert_eq!(pids_max(&d, "c1"), "25");
}
