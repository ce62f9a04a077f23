//! Instance API gaps of LXD 5.0 (issue 18): pause/resume (freeze), through the API, the stock
//! `lxc` and `silo`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, show, wait_until, TestDaemon};

/// A background command ended (by pid) when the test ends, passing or not.
struct Killed(Option<Child>);

impl Killed {
    fn output(mut self) -> String {
        let Some(mut c) = self.0.take() else {
            return String::new();
        };
        let _ = c.kill();
        c.wait_with_output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The instance's counter file, read through the files API (which works while it is frozen).
fn counter(d: &TestDaemon, name: &str) -> u64 {
    let (code, body) = d.api_raw("GET", &format!("/1.0/instances/{name}/files?path=/root/n"));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    String::from_utf8_lossy(&body).trim().parse().unwrap_or(0)
}

/// Whether the counter moves within `wait`.
fn advances(d: &TestDaemon, name: &str, wait: Duration) -> bool {
    let a = counter(d, name);
    std::thread::sleep(wait);
    counter(d, name) != a
}

/// What the kernel says of the instance's freezer (v1 `freezer.state`, or cgroup2's
/// `cgroup.events` "frozen" line).
fn kernel_frozen(d: &TestDaemon, name: &str) -> bool {
    let tag = silo_proto::install_tag(&d.dir);
    let v1 = format!("/sys/fs/cgroup/freezer/silo-{tag}/{name}/freezer.state");
    if let Ok(s) = std::fs::read_to_string(&v1) {
        return s.trim() == "FROZEN";
    }
    let v2 = format!("/sys/fs/cgroup/unified/silo-{tag}/{name}/cgroup.events");
    let s = std::fs::read_to_string(&v2).expect("neither a v1 nor a cgroup2 freezer file");
    s.lines().any(|l| l.trim() == "frozen 1")
}

fn status_of(d: &TestDaemon, name: &str) -> (String, i64, String, i64) {
    let i = d.api_ok("GET", &format!("/1.0/instances/{name}"), None);
    let s = d.api_ok("GET", &format!("/1.0/instances/{name}/state"), None);
    (
        i["status"].as_str().unwrap_or("").into(),
        i["status_code"].as_i64().unwrap_or(0),
        s["status"].as_str().unwrap_or("").into(),
        s["status_code"].as_i64().unwrap_or(0),
    )
}

fn frozen_status() -> (String, i64, String, i64) {
    ("Frozen".into(), 110, "Frozen".into(), 110)
}

fn running_status() -> (String, i64, String, i64) {
    ("Running".into(), 103, "Running".into(), 103)
}

#[test]
fn pause_and_resume_freeze_the_processes() {
    let mut d = TestDaemon::start("inst-freeze");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "fz");
    let (code, _, e) = d.exec(
        "fz",
        &[
            "sh",
            "-c",
            "(i=0; while :; do i=$((i+1)); echo $i > /root/n; usleep 100000; done) \
             </dev/null >/dev/null 2>&1 &",
        ],
    );
    assert_eq!(code, 0, "{e}");
    assert!(
        wait_until(Duration::from_secs(5), || counter(&d, "fz") > 0),
        "the counter runs"
    );
    let monitor = Killed(Some(
        Command::new(silo_tests::bin("silo"))
            .args(["monitor", "--type", "lifecycle", "--format", "json"])
            .env("SILO_SOCKET", d.socket())
            .stdout(Stdio::piped())
            .spawn()
            .expect("silo monitor"),
    ));
    std::thread::sleep(Duration::from_millis(500));

    // The stock client: lxc pause, then lxc start (which sends unfreeze for a frozen one).
    let o = d.lxc(&["pause", "fz"]);
    assert!(o.status.success(), "lxc pause: {}", show(&o));
    assert_eq!(status_of(&d, "fz"), frozen_status());
    assert!(kernel_frozen(&d, "fz"), "the cgroup freezer is frozen");
    assert!(
        !advances(&d, "fz", Duration::from_millis(1500)),
        "a frozen counter does not move"
    );
    let o = d.lxc(&["list", "fz", "--format", "csv", "-c", "ns"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "fz,FROZEN",
        "{}",
        show(&o)
    );
    // As LXD: no exec into a frozen instance, and no second freeze or start.
    let (c, v) = d.api(
        "POST",
        "/1.0/instances/fz/exec",
        Some(json!({"command": ["true"], "record-output": true})),
    );
    assert_eq!(c, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("frozen"), "{v}");
    let (c, v) = d.api(
        "PUT",
        "/1.0/instances/fz/state",
        Some(json!({"action": "freeze"})),
    );
    assert_eq!(c, 202, "{v}");
    let op = d.wait_op(&v);
    assert!(
        op["err"].as_str().unwrap_or("").contains("already frozen"),
        "{op}"
    );
    let (c, v) = d.api(
        "PUT",
        "/1.0/instances/fz/state",
        Some(json!({"action": "start"})),
    );
    assert_eq!(c, 400, "{v}");
    let o = d.lxc(&["start", "fz"]);
    assert!(
        o.status.success(),
        "lxc start of a frozen one: {}",
        show(&o)
    );
    assert_eq!(status_of(&d, "fz"), running_status());
    assert!(!kernel_frozen(&d, "fz"));
    assert!(advances(&d, "fz", Duration::from_millis(1500)), "thawed");
    let (c, v) = d.api(
        "PUT",
        "/1.0/instances/fz/state",
        Some(json!({"action": "unfreeze"})),
    );
    assert_eq!(c, 202, "{v}");
    let op = d.wait_op(&v);
    assert!(
        op["err"].as_str().unwrap_or("").contains("already running"),
        "{op}"
    );

    // silo pause survives a restart of silod: the state is the cgroup's, not a memory.
    let o = d.silo(&["pause", "fz"]);
    assert!(o.status.success(), "silo pause: {}", show(&o));
    assert_eq!(status_of(&d, "fz"), frozen_status());
    let events = monitor.output();
    d.stop();
    d.spawn();
    assert_eq!(
        status_of(&d, "fz"),
        frozen_status(),
        "after a silod restart"
    );
    assert!(!advances(&d, "fz", Duration::from_millis(1000)));
    let o = d.silo(&["list", "--format", "csv", "-c", "ns"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("fz,FROZEN"),
        "{}",
        show(&o)
    );
    let o = d.silo(&["start", "fz"]);
    assert!(
        o.status.success(),
        "silo start of a paused one: {}",
        show(&o)
    );
    assert_eq!(status_of(&d, "fz"), running_status());
    assert!(advances(&d, "fz", Duration::from_millis(1500)));

    // A snapshot of a paused instance leaves it paused.
    let o = d.silo(&["pause", "fz"]);
    assert!(o.status.success(), "{}", show(&o));
    d.api_ok(
        "POST",
        "/1.0/instances/fz/snapshots",
        Some(json!({"name": "s0"})),
    );
    assert_eq!(status_of(&d, "fz"), frozen_status(), "still paused");

    // A clean stop of a frozen instance thaws it first, so init sees the signal.
    let op = d.set_state("fz", "stop", false);
    assert_eq!(op["status"], "Success", "{op}");
    assert_eq!(d.status("fz"), "Stopped");
    let (c, v) = d.api(
        "PUT",
        "/1.0/instances/fz/state",
        Some(json!({"action": "freeze"})),
    );
    assert_eq!(c, 202, "{v}");
    let op = d.wait_op(&v);
    assert!(
        op["err"].as_str().unwrap_or("").contains("isn't running"),
        "{op}"
    );
    // A forced stop too.
    d.set_state("fz", "start", false);
    let o = d.lxc(&["pause", "fz"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.lxc(&["stop", "fz", "--force"]);
    assert!(o.status.success(), "lxc stop --force: {}", show(&o));
    assert_eq!(d.status("fz"), "Stopped");

    let actions: Vec<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["metadata"]["action"].as_str().map(String::from))
        .filter(|a| a.starts_with("instance-paused") || a.starts_with("instance-resumed"))
        .collect();
    assert_eq!(
        actions,
        ["instance-paused", "instance-resumed", "instance-paused"],
        "{events}"
    );
    d.api_ok("DELETE", "/1.0/instances/fz", None);
}
