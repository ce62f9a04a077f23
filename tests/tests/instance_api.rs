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

#[test]
fn pause_works_with_cgroup2s_freezer() {
    // No v1 freezer in sight: silo-priv freezes through cgroup.freeze and reads it back.
    let d = TestDaemon::start_pure_cgroup2("inst-freeze2");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "f2");
    let (code, _, e) = d.exec(
        "f2",
        &[
            "sh",
            "-c",
            "(i=0; while :; do i=$((i+1)); echo $i > /root/n; usleep 100000; done) \
             </dev/null >/dev/null 2>&1 &",
        ],
    );
    assert_eq!(code, 0, "{e}");
    assert!(wait_until(Duration::from_secs(5), || counter(&d, "f2") > 0));
    let op = d.set_state("f2", "freeze", false);
    assert_eq!(op["status"], "Success", "{op}");
    assert_eq!(status_of(&d, "f2"), frozen_status());
    let tag = silo_proto::install_tag(&d.dir);
    let events = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/unified/silo-{tag}/f2/cgroup.events"
    ))
    .expect("the instance's cgroup2 group");
    assert!(events.lines().any(|l| l == "frozen 1"), "{events}");
    assert!(!advances(&d, "f2", Duration::from_millis(1500)));
    let op = d.set_state("f2", "unfreeze", false);
    assert_eq!(op["status"], "Success", "{op}");
    assert_eq!(status_of(&d, "f2"), running_status());
    assert!(advances(&d, "f2", Duration::from_millis(1500)));
    let op = d.set_state("f2", "freeze", false);
    assert_eq!(op["status"], "Success", "{op}");
    let op = d.set_state("f2", "stop", false);
    assert_eq!(op["status"], "Success", "a frozen instance stops: {op}");
    assert_eq!(d.status("f2"), "Stopped");
    d.api_ok("DELETE", "/1.0/instances/f2", None);
}

/// Runs a client (`lxc` with this daemon's LXD_DIR/LXD_CONF, or `silo`) with `input` on stdin.
fn with_stdin(d: &TestDaemon, lxc: bool, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut cmd = if lxc {
        let mut c = Command::new("lxc");
        c.env("LXD_DIR", &d.dir)
            .env("LXD_CONF", d.dir.join("lxc-conf"));
        c
    } else {
        let mut c = Command::new(silo_tests::bin("silo"));
        c.env("SILO_SOCKET", d.socket()).env_remove("SILO_DIR");
        c
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes());
    }
    child.wait_with_output().expect("client output")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn metadata_and_templates_through_lxc_and_silo() {
    let d = TestDaemon::start("inst-meta");
    d.import(&busybox_image(false)[0], "busybox");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "md", "source": {"type": "image", "alias": "busybox"}})),
    );
    // The image's metadata.yaml and template, as lxc shows them.
    let o = d.lxc(&["config", "metadata", "show", "md"]);
    assert!(o.status.success(), "{}", show(&o));
    let shown = stdout(&o);
    assert!(
        shown.contains("architecture: ") && shown.contains("/etc/hostname:"),
        "{shown}"
    );
    assert!(shown.contains("template: hostname.tpl"), "{shown}");
    let md = d.api_ok("GET", "/1.0/instances/md/metadata", None);
    assert_eq!(
        md["templates"]["/etc/hostname"]["when"],
        json!(["create", "copy"])
    );
    let o = d.lxc(&["config", "template", "list", "md", "--format", "csv"]);
    assert_eq!(stdout(&o).trim(), "hostname.tpl", "{}", show(&o));
    let o = d.lxc(&["config", "template", "show", "md", "hostname.tpl"]);
    assert_eq!(stdout(&o), "{{ container.name }}\n", "{}", show(&o));

    // A new template (lxc create makes it empty; edit fills it from stdin), hooked to start
    // through `lxc config metadata edit`.
    let o = d.lxc(&["config", "template", "create", "md", "motd.tpl"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = with_stdin(
        &d,
        true,
        &["config", "template", "edit", "md", "motd.tpl"],
        "hello {{ container.name }} at {{ trigger }}\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let edited = format!(
        "{shown}\n",
        shown = shown.replace(
            "templates:\n",
            "templates:\n  /etc/motd:\n    when:\n    - start\n    template: motd.tpl\n"
        )
    );
    let o = with_stdin(&d, true, &["config", "metadata", "edit", "md"], &edited);
    assert!(o.status.success(), "{}", show(&o));
    let md = d.api_ok("GET", "/1.0/instances/md/metadata", None);
    assert_eq!(md["templates"]["/etc/motd"]["template"], "motd.tpl", "{md}");
    assert_eq!(
        md["templates"]["/etc/hostname"]["template"], "hostname.tpl",
        "the rest is kept"
    );
    d.set_state("md", "start", false);
    let (code, o, e) = d.exec("md", &["cat", "/etc/motd"]);
    assert_eq!((code, o.as_str()), (0, "hello md at start\n"), "{e}");

    // silo: edit the template, and the next start renders the new text.
    let o = with_stdin(
        &d,
        false,
        &["config", "template", "edit", "md", "motd.tpl"],
        "bye {{ instance.name }}\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["config", "template", "show", "md", "motd.tpl"]);
    assert_eq!(stdout(&o), "bye {{ instance.name }}\n", "{}", show(&o));
    d.set_state("md", "restart", true);
    let (code, o, e) = d.exec("md", &["cat", "/etc/motd"]);
    assert_eq!((code, o.as_str()), (0, "bye md\n"), "{e}");
    let o = d.silo(&["config", "template", "list", "md", "--format", "csv"]);
    assert_eq!(stdout(&o), "hostname.tpl\nmotd.tpl\n", "{}", show(&o));
    let o = d.silo(&["config", "metadata", "show", "md"]);
    assert!(stdout(&o).contains("/etc/motd:"), "{}", show(&o));
    // PATCH adds to the templates; PUT replaces the whole.
    d.api_ok(
        "PATCH",
        "/1.0/instances/md/metadata",
        Some(json!({"properties": {"extra": "yes"}})),
    );
    let md = d.api_ok("GET", "/1.0/instances/md/metadata", None);
    assert_eq!(md["properties"]["extra"], "yes");
    assert_eq!(md["properties"]["os"], "busybox", "{md}");
    let o = d.silo(&["config", "template", "delete", "md", "motd.tpl"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.lxc(&["config", "template", "show", "md", "motd.tpl"]);
    assert!(!o.status.success(), "deleted: {}", show(&o));

    // Names are one plain component: nothing beside or above templates/.
    for (method, path) in [
        (
            "GET",
            "/1.0/instances/md/metadata/templates?path=../metadata.yaml",
        ),
        ("GET", "/1.0/instances/md/metadata/templates?path=.."),
        (
            "POST",
            "/1.0/instances/md/metadata/templates?path=../rootfs/etc/passwd",
        ),
        ("POST", "/1.0/instances/md/metadata/templates?path=a%2Fb"),
        (
            "DELETE",
            "/1.0/instances/md/metadata/templates?path=..%2Fmetadata.yaml",
        ),
    ] {
        let (c, body) = d.api_raw(method, path);
        assert_eq!(
            c,
            400,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (c, _) = d.api_raw("DELETE", "/1.0/instances/md/metadata/templates?path=nope");
    assert_eq!(c, 404);
    // Metadata whose templates name something outside templates/ is refused whole.
    let (c, v) = d.api(
        "PUT",
        "/1.0/instances/md/metadata",
        Some(json!({"architecture": "x86_64", "creation_date": 1,
            "templates": {"/etc/x": {"when": ["start"], "template": "../../rootfs/etc/shadow"}}})),
    );
    assert_eq!(c, 400, "{v}");
    // A symlink planted in templates/ (by whoever wrote the volume) is never followed:
    // reading it is refused, writing replaces the link, not its target.
    let vol = d.dir.join("storage-pools/default/containers/md");
    let outside = d.dir.join("outside-target");
    std::fs::write(&outside, "host file\n").expect("outside");
    std::os::unix::fs::symlink(&outside, vol.join("templates/evil.tpl")).expect("symlink");
    let (c, body) = d.api_raw("GET", "/1.0/instances/md/metadata/templates?path=evil.tpl");
    assert_ne!(c, 200, "{}", String::from_utf8_lossy(&body));
    assert!(!String::from_utf8_lossy(&body).contains("host file"));
    let o = with_stdin(
        &d,
        false,
        &["config", "template", "edit", "md", "evil.tpl"],
        "overwritten\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(&outside).expect("outside"),
        "host file\n"
    );
    assert!(!vol
        .join("templates/evil.tpl")
        .symlink_metadata()
        .expect("evil")
        .file_type()
        .is_symlink());
    // templates/ itself a symlink: refused, not followed.
    std::fs::rename(vol.join("templates"), vol.join("templates.real")).expect("rename");
    std::os::unix::fs::symlink(d.dir.join("storage-pools"), vol.join("templates")).expect("ln");
    let (c, _) = d.api_raw(
        "GET",
        "/1.0/instances/md/metadata/templates?path=hostname.tpl",
    );
    assert_ne!(c, 200);
    let (c, _) = d.api_raw("POST", "/1.0/instances/md/metadata/templates?path=x.tpl");
    assert_ne!(c, 200);
    assert!(!d.dir.join("storage-pools/x.tpl").exists());
    std::fs::remove_file(vol.join("templates")).expect("rm link");
    std::fs::rename(vol.join("templates.real"), vol.join("templates")).expect("rename back");
    d.set_state("md", "stop", true);
    d.api_ok("DELETE", "/1.0/instances/md", None);
}

#[test]
fn snapshot_put_changes_the_expiry_as_lxd_5_0() {
    let d = TestDaemon::start("inst-snapput");
    d.import(&busybox_image(false)[0], "busybox");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "sp", "source": {"type": "image", "alias": "busybox"}})),
    );
    d.api_ok(
        "POST",
        "/1.0/instances/sp/snapshots",
        Some(json!({"name": "s0"})),
    );
    let s = d.api_ok("GET", "/1.0/instances/sp/snapshots/s0", None);
    assert_eq!(s["expires_at"], "0001-01-01T00:00:00Z", "{s}");
    assert!(
        s["size"].as_i64().unwrap_or(-1) >= 0,
        "the volume's use: {s}"
    );
    assert!(
        s["created_at"].as_str().unwrap_or("").starts_with("20"),
        "{s}"
    );
    // PUT with expires_at (async), PATCH the same; a description alone changes nothing.
    d.api_ok(
        "PUT",
        "/1.0/instances/sp/snapshots/s0",
        Some(json!({"expires_at": "2031-02-03T04:05:06Z"})),
    );
    let s = d.api_ok("GET", "/1.0/instances/sp/snapshots/s0", None);
    assert!(
        s["expires_at"]
            .as_str()
            .unwrap_or("")
            .starts_with("2031-02-03T04:05:06"),
        "{s}"
    );
    d.api_ok(
        "PATCH",
        "/1.0/instances/sp/snapshots/s0",
        Some(json!({"description": "ignored by LXD 5.0"})),
    );
    let s = d.api_ok("GET", "/1.0/instances/sp/snapshots/s0", None);
    assert_eq!(s["description"], "");
    assert!(s["expires_at"].as_str().unwrap_or("").starts_with("2031"));
    let (c, v) = d.api(
        "PUT",
        "/1.0/instances/sp/snapshots/s0",
        Some(json!({"expires_at": "next tuesday"})),
    );
    assert_eq!(c, 400, "{v}");
    // If-Match: a stale ETag is refused.
    let o = Command::new("curl")
        .args(["-s", "-X", "PUT", "-H", "If-Match: \"stale\"", "-d"])
        .arg(r#"{"expires_at": "2032-01-01T00:00:00Z"}"#)
        .arg("--unix-socket")
        .arg(d.socket())
        .arg("http://silo/1.0/instances/sp/snapshots/s0")
        .output()
        .expect("curl");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["error_code"], 412, "{v}");
    // The stock client: config edit of a snapshot sends its expires_at; show reads it back.
    let o = with_stdin(
        &d,
        true,
        &["config", "edit", "sp/s0"],
        "expires_at: 2033-04-05T06:07:08Z\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let o = d.lxc(&["config", "show", "sp/s0"]);
    assert!(
        stdout(&o).contains("expires_at: 2033-04-05T06:07:08Z"),
        "{}",
        show(&o)
    );
    let o = d.lxc(&["info", "sp"]);
    assert!(stdout(&o).contains("2033/04/05"), "{}", show(&o));
    // lxc info of a snapshot name is refused as LXD 5.0 does; silo info shows it.
    let o = d.lxc(&["info", "sp/s0"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Invalid instance name"),
        "{}",
        show(&o)
    );
    let o = d.silo(&["info", "sp/s0"]);
    let text = stdout(&o);
    assert!(
        text.contains("Name: s0") && text.contains("Expires: 2033/04/05"),
        "{}",
        show(&o)
    );
    // silo config show/edit of a snapshot, as lxc's.
    let o = with_stdin(
        &d,
        false,
        &["config", "edit", "sp/s0"],
        "expires_at: 2034-01-02T03:04:05Z\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["config", "show", "sp/s0"]);
    assert!(
        stdout(&o).contains("expires_at: 2034-01-02T03:04:05Z") && stdout(&o).contains("name: s0"),
        "{}",
        show(&o)
    );
    // Back to never.
    d.api_ok(
        "PUT",
        "/1.0/instances/sp/snapshots/s0",
        Some(json!({"expires_at": "0001-01-01T00:00:00Z"})),
    );
    let s = d.api_ok("GET", "/1.0/instances/sp/snapshots/s0", None);
    assert_eq!(s["expires_at"], "0001-01-01T00:00:00Z");
    d.api_ok("DELETE", "/1.0/instances/sp", None);
}

fn console_log(d: &TestDaemon, name: &str) -> Vec<u8> {
    let (c, body) = d.api_raw("GET", &format!("/1.0/instances/{name}/console"));
    assert_eq!(c, 200, "{}", String::from_utf8_lossy(&body));
    body
}

fn contains(hay: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(hay).contains(needle)
}

#[test]
fn console_log_clears_and_serves_several_readers() {
    let d = TestDaemon::start("inst-console");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "cl");
    let (code, _, e) = d.exec("cl", &["sh", "-c", "echo marker-one > /dev/console"]);
    assert_eq!(code, 0, "{e}");
    assert!(
        wait_until(Duration::from_secs(5), || contains(
            &console_log(&d, "cl"),
            "marker-one"
        )),
        "the console log has what init's console got"
    );
    // Several readers at once each get the whole log.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let sock = d.socket();
            std::thread::spawn(move || {
                Command::new("curl")
                    .args(["-s", "--unix-socket"])
                    .arg(sock)
                    .arg("http://silo/1.0/instances/cl/console")
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default()
            })
        })
        .collect();
    for r in readers {
        let got = r.join().expect("reader");
        assert!(
            contains(&got, "marker-one"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    // DELETE empties it; what comes next is appended from the start, with no hole.
    let (c, v) = d.api("DELETE", "/1.0/instances/cl/console", None);
    assert_eq!(c, 200, "{v}");
    assert!(!contains(&console_log(&d, "cl"), "marker-one"));
    let (code, _, e) = d.exec("cl", &["sh", "-c", "echo marker-two > /dev/console"]);
    assert_eq!(code, 0, "{e}");
    assert!(wait_until(Duration::from_secs(5), || contains(
        &console_log(&d, "cl"),
        "marker-two"
    )));
    let log = console_log(&d, "cl");
    assert!(!log.contains(&0), "no sparse hole before the new text");
    assert!(!contains(&log, "marker-one"));
    let o = d.lxc(&["console", "cl", "--show-log"]);
    assert!(stdout(&o).contains("marker-two"), "{}", show(&o));
    let o = d.silo(&["console", "cl", "--show-log"]);
    assert!(stdout(&o).contains("marker-two"), "{}", show(&o));
    // A VGA console is refused with its reason.
    let (c, v) = d.api(
        "POST",
        "/1.0/instances/cl/console",
        Some(json!({"type": "vga", "width": 80, "height": 25})),
    );
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("text console"),
        "{v}"
    );
    // Stopped: the log stays readable and can be cleared too.
    d.set_state("cl", "stop", true);
    assert!(contains(&console_log(&d, "cl"), "marker-two"));
    let (c, v) = d.api("DELETE", "/1.0/instances/cl/console", None);
    assert_eq!(c, 200, "{v}");
    assert!(console_log(&d, "cl").is_empty());
    let (c, _) = d.api("DELETE", "/1.0/instances/nope/console", None);
    assert_eq!(c, 404);
    d.api_ok("DELETE", "/1.0/instances/cl", None);
}

/// A request with a raw body through curl: (status, body).
fn curl(
    d: &TestDaemon,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[&str],
) -> (u16, String, String) {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "-D",
        "/dev/stderr",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ]);
    for h in headers {
        c.args(["-H", h]);
    }
    if let Some(b) = body {
        c.args(["--data-binary", b]);
    }
    let o = c
        .arg("--unix-socket")
        .arg(d.socket())
        .arg(format!("http://silo{path}"))
        .output()
        .expect("curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        body.to_string(),
        String::from_utf8_lossy(&o.stderr).to_lowercase(),
    )
}

#[test]
fn files_of_a_running_instance_are_where_it_sees_them() {
    let d = TestDaemon::start("inst-files");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "fl");
    let (code, o, _) = d.exec(
        "fl",
        &[
            "sh",
            "-c",
            "grep -c ' /run tmpfs\\| /dev/shm tmpfs' /proc/mounts",
        ],
    );
    assert_eq!(
        (code, o.trim()),
        (0, "2"),
        "/run and /dev/shm are the instance's own tmpfs"
    );
    // Written through the API, read inside; written inside, read through the API.
    let (c, b, _) = curl(
        &d,
        "POST",
        "/1.0/instances/fl/files?path=/run/x",
        Some("from-api\n"),
        &["X-LXD-uid: 1000", "X-LXD-gid: 1000", "X-LXD-mode: 0640"],
    );
    assert_eq!(c, 200, "{b}");
    let (code, o, e) = d.exec("fl", &["sh", "-c", "cat /run/x; stat -c '%u %g %a' /run/x"]);
    assert_eq!((code, o.as_str()), (0, "from-api\n1000 1000 640\n"), "{e}");
    let (code, _, e) = d.exec(
        "fl",
        &[
            "sh",
            "-c",
            "echo from-inside > /dev/shm/y; mkdir /run/d; touch /run/d/z",
        ],
    );
    assert_eq!(code, 0, "{e}");
    let (c, b, h) = curl(
        &d,
        "GET",
        "/1.0/instances/fl/files?path=/dev/shm/y",
        None,
        &[],
    );
    assert_eq!((c, b.as_str()), (200, "from-inside\n"), "{h}");
    assert!(
        h.contains("x-lxd-type: file") && h.contains("x-lxd-size: 12"),
        "{h}"
    );
    // HEAD: the same headers, no body.
    let (c, b, h) = curl(
        &d,
        "HEAD",
        "/1.0/instances/fl/files?path=/dev/shm/y",
        None,
        &[],
    );
    assert_eq!((c, b.as_str()), (200, ""), "{h}");
    assert!(
        h.contains("x-lxd-type: file")
            && h.contains("x-lxd-mode: 0644")
            && h.contains("x-lxd-size: 12"),
        "{h}"
    );
    assert!(
        h.contains("x-lxd-modified: 20") && h.contains("+0000 utc"),
        "{h}"
    );
    let (c, b, h) = curl(&d, "HEAD", "/1.0/instances/fl/files?path=/run/d", None, &[]);
    assert_eq!((c, b.as_str()), (200, ""), "{h}");
    assert!(h.contains("x-lxd-type: directory"), "{h}");
    let l = d.api_ok("GET", "/1.0/instances/fl/files?path=/run/d", None);
    assert_eq!(l, json!(["z"]));
    // The stock client: push, pull and edit on /dev/shm.
    let local = d.dir.join("local-file");
    std::fs::write(&local, "pushed\n").expect("local");
    let o = d.lxc(&[
        "file",
        "push",
        &local.to_string_lossy(),
        "fl/dev/shm/pushed",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let (code, o2, _) = d.exec("fl", &["cat", "/dev/shm/pushed"]);
    assert_eq!((code, o2.as_str()), (0, "pushed\n"));
    let pulled = d.dir.join("pulled");
    let o = d.lxc(&["file", "pull", "fl/dev/shm/y", &pulled.to_string_lossy()]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(&pulled).expect("pulled"),
        "from-inside\n"
    );
    let o = with_stdin(&d, true, &["file", "edit", "fl/dev/shm/y"], "edited\n");
    assert!(o.status.success(), "{}", show(&o));
    let (_, o2, _) = d.exec("fl", &["cat", "/dev/shm/y"]);
    assert_eq!(o2, "edited\n");
    // silo too.
    let o = d.silo(&["file", "pull", "fl/run/x", &pulled.to_string_lossy()]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(&pulled).expect("pulled"),
        "from-api\n"
    );
    // DELETE inside the instance's mounts.
    let (c, b, _) = curl(
        &d,
        "DELETE",
        "/1.0/instances/fl/files?path=/run/x",
        None,
        &[],
    );
    assert_eq!(c, 200, "{b}");
    assert_ne!(d.exec("fl", &["test", "-e", "/run/x"]).0, 0);

    // Container root's symlinks: never out of the instance, never through a magic link,
    // never written through.
    let (code, _, e) = d.exec(
        "fl",
        &[
            "sh",
            "-c",
            "ln -s /proc/1/root/etc /run/evil; ln -s ../../../../../../etc /run/up; \
           ln -s /proc/self/fd /run/fds; echo inside-hostname > /etc/hostname-probe; \
           ln -s /etc/hostname-probe /run/victim",
        ],
    );
    assert_eq!(code, 0, "{e}");
    let host_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let (c, b, _) = curl(
        &d,
        "GET",
        "/1.0/instances/fl/files?path=/run/up/hostname-probe",
        None,
        &[],
    );
    assert_eq!(
        (c, b.as_str()),
        (200, "inside-hostname\n"),
        "'..' stops at the instance's /"
    );
    let (c, b, _) = curl(
        &d,
        "GET",
        "/1.0/instances/fl/files?path=/run/up/hostname",
        None,
        &[],
    );
    assert!(
        c != 200 || b != host_hostname || host_hostname.is_empty(),
        "{b}"
    );
    let (c, b, _) = curl(
        &d,
        "GET",
        "/1.0/instances/fl/files?path=/run/evil/hostname-probe",
        None,
        &[],
    );
    assert_ne!(c, 200, "a magic link is refused: {b}");
    let (c, b, _) = curl(
        &d,
        "GET",
        "/1.0/instances/fl/files?path=/run/fds/0",
        None,
        &[],
    );
    assert_ne!(c, 200, "{b}");
    let (c, b, h) = curl(
        &d,
        "GET",
        "/1.0/instances/fl/files?path=/run/evil",
        None,
        &[],
    );
    assert_eq!(
        (c, b.as_str()),
        (200, "/proc/1/root/etc"),
        "reported, not followed: {h}"
    );
    let (c, b, _) = curl(
        &d,
        "POST",
        "/1.0/instances/fl/files?path=/run/victim",
        Some("x"),
        &[],
    );
    assert_ne!(c, 200, "{b}");
    let (_, o2, _) = d.exec("fl", &["cat", "/etc/hostname-probe"]);
    assert_eq!(o2, "inside-hostname\n", "not written through the link");

    // The child moving a file's bytes (held up by a slow reader): container root, outside the
    // instance's pid namespace, non-dumpable (its /proc files stay host root's), and holding
    // no fd of the host's state.
    let (code, _, e) = d.exec(
        "fl",
        &["dd", "if=/dev/zero", "of=/dev/shm/big", "bs=1M", "count=32"],
    );
    assert_eq!(code, 0, "{e}");
    let base: u32 = d.api_ok("GET", "/1.0/instances/fl", None)["config"]["volatile.idmap.base"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .expect("volatile.idmap.base");
    let slow = Killed(Some(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "curl -s --unix-socket {} 'http://silo/1.0/instances/fl/files?path=/dev/shm/big' | (sleep 8; cat >/dev/null)",
                d.socket().display()
            ))
            .spawn()
            .expect("slow reader"),
    ));
    let find = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let uid_line = st.lines().find(|l| l.starts_with("Uid:"))?.to_string();
                let nspid = st.lines().find(|l| l.starts_with("NSpid:"))?.to_string();
                (st.starts_with("Name:\tsilo-priv")
                    && uid_line.split_whitespace().nth(1) == Some(base.to_string().as_str())
                    && nspid.split_whitespace().count() == 2)
                    .then_some((pid, uid_line))
            })
    };
    let mut child = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            child = find();
            child.is_some()
        }),
        "the files child runs as container root (host uid {base})"
    );
    let (pid, uid_line) = child.expect("child");
    let all_base = uid_line
        .split_whitespace()
        .skip(1)
        .all(|u| u == base.to_string());
    assert!(all_base, "{uid_line}");
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::symlink_metadata(format!("/proc/{pid}/environ")).expect("proc file"),
    );
    assert_eq!(
        owner, 0,
        "non-dumpable: its /proc files stay host root's, out of container root's reach"
    );
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    assert!(fds.len() <= 6, "{fds:?}");
    let state = d.dir.to_string_lossy().into_owned();
    assert!(fds.iter().all(|f| !f.starts_with(&state)), "{fds:?}");
    drop(slow);

    // Measured: a read in the running instance (a forked child entering it) and in the
    // stopped one's volume (silo-store).
    let time_reads = |n: u32| {
        let t = std::time::Instant::now();
        for _ in 0..n {
            let (c, _, _) = curl(
                &d,
                "GET",
                "/1.0/instances/fl/files?path=/etc/hostname-probe",
                None,
                &[],
            );
            assert_eq!(c, 200);
        }
        t.elapsed() / n
    };
    let running = time_reads(20);
    d.set_state("fl", "stop", true);
    let stopped = time_reads(20);
    eprintln!(
        "files GET: {running:?} per read running (silo-priv), {stopped:?} stopped (silo-store)"
    );
    // Stopped: the root volume, as before (its /run is the empty mount point).
    let (c, b, _) = curl(
        &d,
        "GET",
        "/1.0/instances/fl/files?path=/etc/hostname-probe",
        None,
        &[],
    );
    assert_eq!((c, b.as_str()), (200, "inside-hostname\n"));
    let (c, _, _) = curl(
        &d,
        "GET",
        "/1.0/instances/fl/files?path=/dev/shm/y",
        None,
        &[],
    );
    assert_eq!(c, 404, "the tmpfs went with the instance");
    d.api_ok("DELETE", "/1.0/instances/fl", None);
}
