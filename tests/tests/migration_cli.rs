//! `silo copy` and `silo move` between two silods (issue 16), driven by silo's CLI as lxc
//! drives LXD: two daemons in two network namespaces joined by a veth (`link_netns`, A on
//! 198.18.0.1, B on 198.18.0.2, both listening on HTTPS), the CLI inside B's namespace with
//! both added as remotes. A busybox instance with two snapshots on A is copied in each mode
//! (pull, push, relay), as a snapshot, without its snapshots and with a config override,
//! then moved; a running source without --stateless fails with LXD's CRIU message and leaves
//! nothing on the target, and with --stateless it moves, its copy started. The same CLI also
//! copies and moves between two real LXD 5.0.2 servers in each mode.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, link_netns, show, wait_until, TestDaemon};

const PASSWORD: &str = "m1grate-pw";
const PORT: u16 = 8443;

/// A client configuration dir of the test's own, removed on drop.
struct Conf(PathBuf);

impl Conf {
    fn new(name: &str) -> Conf {
        let d = silo_tests::unique_dir(&format!("conf-{name}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("conf dir");
        Conf(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Conf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two linked daemons, both listening, and a CLI config on B's side with remotes `a` and
/// `b` (both over HTTPS, as another client machine would see them).
struct Pair {
    a: TestDaemon,
    b: TestDaemon,
    conf: Conf,
}

impl Pair {
    fn new(name: &str) -> Pair {
        let a = TestDaemon::start(&format!("{name}-a"));
        let b = TestDaemon::start(&format!("{name}-b"));
        link_netns(&a, &b);
        let conf = Conf::new(name);
        let p = Pair { a, b, conf };
        p.listen(&p.a, "198.18.0.1");
        p.listen(&p.b, "198.18.0.2");
        for (remote, addr) in [("a", "198.18.0.1"), ("b", "198.18.0.2")] {
            let url = format!("https://{addr}:{PORT}");
            ok(
                p.silo(&[
                    "remote",
                    "add",
                    remote,
                    &url,
                    "--password",
                    PASSWORD,
                    "--accept-certificate",
                ]),
                &format!("remote add {remote}"),
            );
        }
        p
    }

    /// `d` listens on `addr`:PORT with the trust password; waits until B's side reaches it.
    fn listen(&self, d: &TestDaemon, addr: &str) {
        let (c, v) = d.api(
            "PATCH",
            "/1.0",
            Some(
                json!({"config": {"core.https_address": format!("{addr}:{PORT}"),
                                   "core.trust_password": PASSWORD}}),
            ),
        );
        assert_eq!(c, 200, "{v}");
        let url = format!("https://{addr}:{PORT}");
        let up = wait_until(Duration::from_secs(10), || {
            let o = self
                .b
                .netns_cmd(&["curl", "-sk", "-o", "/dev/null", "--max-time", "5", &url]);
            o.status.code() == Some(0)
        });
        assert!(up, "{url} does not answer; log:\n{}", d.log_text());
    }

    /// silo's CLI inside B's network namespace with the pair's config.
    fn silo(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!(
                "--net=/proc/{}/fd/{}",
                std::process::id(),
                self.b.netns.as_raw_fd()
            ))
            .arg(silo_tests::bin("silo"))
            .args(args)
            .env("SILO_CONF", self.conf.path())
            .env("SILO_SOCKET", self.b.socket())
            .env_remove("SILO_REMOTE")
            .env_remove("SILO_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("nsenter silo")
    }

    /// A stopped busybox instance `name` on A with snapshots snap0 and snap1, each marked
    /// by a file written before it was taken.
    fn source(&self, name: &str) {
        let files = busybox_image(false);
        let mut args: Vec<&str> = vec!["image", "import"];
        args.extend(files.iter().map(|f| f.to_str().expect("utf-8 path")));
        args.extend(["--alias", "bb"]);
        ok(self.a.silo(&args), "image import on A");
        ok(self.a.silo(&["launch", "bb", name]), "launch on A");
        for snap in ["snap0", "snap1"] {
            let (code, _, err) = self
                .a
                .exec(name, &["sh", "-c", &format!("echo {snap} > /root/mark")]);
            assert_eq!(code, 0, "mark {snap}: {err}");
            ok(self.a.silo(&["snapshot", name, snap]), "snapshot");
        }
        let (code, _, err) = self.a.exec(name, &["sh", "-c", "echo main > /root/mark"]);
        assert_eq!(code, 0, "mark main: {err}");
        ok(self.a.silo(&["stop", name, "--force"]), "stop on A");
    }
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {}", show(&o));
    o
}

fn snapshot_names(d: &TestDaemon, name: &str) -> Vec<String> {
    let v = d.api_ok("GET", &format!("/1.0/instances/{name}/snapshots"), None);
    let mut n: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|u| u.rsplit('/').next())
        .map(str::to_string)
        .collect();
    n.sort();
    n
}

fn instance_names(d: &TestDaemon) -> Vec<String> {
    let v = d.api_ok("GET", "/1.0/instances", None);
    let mut n: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|u| u.rsplit('/').next())
        .map(str::to_string)
        .collect();
    n.sort();
    n
}

/// Starts `name` on `d`, checks its root holds `mark`, and stops it again.
fn starts_with_mark(d: &TestDaemon, name: &str, mark: &str) {
    let op = d.set_state(name, "start", false);
    assert_eq!(op["status"], "Success", "start {name}: {op}");
    let (code, out, err) = d.exec(name, &["cat", "/root/mark"]);
    assert_eq!(code, 0, "cat mark in {name}: {err}");
    assert_eq!(out.trim(), mark, "{name}");
    let (code, _, err) = d.exec(name, &["true"]);
    assert_eq!(code, 0, "exec true in {name}: {err}");
    d.set_state(name, "stop", true);
}

#[test]
fn copy_between_hosts_in_each_mode_with_snapshots_and_overrides() {
    let p = Pair::new("mig-copy");
    p.source("c");
    let src = p.a.api_ok("GET", "/1.0/instances/c", None);

    // Each mode: the instance and both snapshots.
    for (mode, name) in [("pull", "c"), ("push", "cpush"), ("relay", "crelay")] {
        let o = p.silo(&["copy", "a:c", &format!("b:{name}"), "--mode", mode]);
        assert!(o.status.success(), "copy --mode {mode}: {}", show(&o));
        assert_eq!(
            snapshot_names(&p.b, name),
            vec!["snap0", "snap1"],
            "--mode {mode}"
        );
        let copy = p.b.api_ok("GET", &format!("/1.0/instances/{name}"), None);
        assert_eq!(copy["status"], "Stopped", "{copy}");
        assert_eq!(copy["architecture"], src["architecture"], "{copy}");
        assert_eq!(
            copy["config"]["volatile.base_image"], src["config"]["volatile.base_image"],
            "{copy}"
        );
        // A copy gets its own identity (a MAC address of its own when the source has one).
        let hwaddr = &src["config"]["volatile.eth0.hwaddr"];
        if hwaddr.is_string() {
            assert_ne!(&copy["config"]["volatile.eth0.hwaddr"], hwaddr, "{copy}");
        }
    }
    starts_with_mark(&p.b, "c", "main");
    starts_with_mark(&p.b, "crelay", "main");
    // The source is untouched and A's migration operations are over.
    assert_eq!(p.a.status("c"), "Stopped");
    let running = p.a.api_ok("GET", "/1.0/operations?recursion=1", None);
    assert!(
        running
            .get("running")
            .is_none_or(|r| r.as_array().is_none_or(|r| r.is_empty())),
        "{running}"
    );

    // A snapshot into an instance of its own: its content, no snapshots.
    ok(p.silo(&["copy", "a:c/snap0", "b:c2"]), "copy a:c/snap0");
    assert!(snapshot_names(&p.b, "c2").is_empty());
    starts_with_mark(&p.b, "c2", "snap0");

    // Without the snapshots.
    ok(
        p.silo(&["copy", "a:c", "b:c3", "--instance-only"]),
        "copy --instance-only",
    );
    assert!(snapshot_names(&p.b, "c3").is_empty());

    // A config override.
    ok(
        p.silo(&["copy", "a:c", "b:c4", "-c", "limits.memory=64MiB"]),
        "copy -c",
    );
    let c4 = p.b.api_ok("GET", "/1.0/instances/c4", None);
    assert_eq!(c4["config"]["limits.memory"], "64MiB", "{c4}");
    assert_eq!(snapshot_names(&p.b, "c4"), vec!["snap0", "snap1"]);

    // An existing name on the target: refused before any transfer, the copy left alone.
    let o = p.silo(&["copy", "a:c", "b:c4"]);
    assert!(!o.status.success(), "{}", show(&o));
    let c4_again = p.b.api_ok("GET", "/1.0/instances/c4", None);
    assert_eq!(c4_again["config"], c4["config"]);

    // --refresh brings the first copy up to date: the new snapshot, the new content, and
    // the source's settings over the copy's (its own id range kept).
    p.a.set_state("c", "start", false);
    let (code, _, err) = p.a.exec("c", &["sh", "-c", "echo refreshed > /root/mark"]);
    assert_eq!(code, 0, "{err}");
    p.a.set_state("c", "stop", true);
    ok(p.a.silo(&["snapshot", "c", "snap2"]), "snapshot snap2");
    ok(
        p.a.silo(&["config", "set", "c", "user.note", "fresh"]),
        "config set",
    );
    let idmap =
        p.b.api_ok("GET", "/1.0/instances/c", None)["config"]["volatile.idmap.base"].clone();
    ok(
        p.silo(&["copy", "a:c", "b:c", "--refresh"]),
        "copy --refresh",
    );
    assert_eq!(snapshot_names(&p.b, "c"), vec!["snap0", "snap1", "snap2"]);
    let c = p.b.api_ok("GET", "/1.0/instances/c", None);
    assert_eq!(c["config"]["user.note"], "fresh", "{c}");
    assert_eq!(c["config"]["volatile.idmap.base"], idmap, "{c}");
    starts_with_mark(&p.b, "c", "refreshed");
}

#[test]
fn move_between_hosts_deletes_the_source_only_after_the_copy() {
    let p = Pair::new("mig-move");
    p.source("c");
    let o = p.silo(&["move", "a:c", "b:c"]);
    assert!(o.status.success(), "move: {}", show(&o));
    assert!(
        instance_names(&p.a).is_empty(),
        "the source is gone: {:?}",
        instance_names(&p.a)
    );
    assert_eq!(instance_names(&p.b), vec!["c"]);
    assert_eq!(snapshot_names(&p.b, "c"), vec!["snap0", "snap1"]);
    starts_with_mark(&p.b, "c", "main");

    // Back again from B's own socket (the target dials the address B lists in
    // environment.addresses), under another name, pushed.
    let o = p.silo(&["move", "c", "a:back", "--mode", "push"]);
    assert!(o.status.success(), "move back: {}", show(&o));
    assert!(instance_names(&p.b).is_empty());
    assert_eq!(instance_names(&p.a), vec!["back"]);
    assert_eq!(snapshot_names(&p.a, "back"), vec!["snap0", "snap1"]);
}

#[test]
fn running_source_without_stateless_fails_with_the_criu_message() {
    let p = Pair::new("mig-live");
    p.source("c");
    let op = p.a.set_state("c", "start", false);
    assert_eq!(op["status"], "Success", "{op}");

    for mode in ["pull", "push", "relay"] {
        let o = p.silo(&["copy", "a:c", "b:c", "--mode", mode]);
        assert!(!o.status.success(), "--mode {mode}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(
                "Unable to perform container live migration. CRIU isn't installed on the source server"
            ),
            "--mode {mode}: {}",
            show(&o)
        );
        assert!(
            instance_names(&p.b).is_empty(),
            "--mode {mode} left {:?} on B",
            instance_names(&p.b)
        );
    }
    // The push target's operation was cancelled, not left waiting for the source.
    let gone = wait_until(Duration::from_secs(15), || {
        let ops = p.b.api_ok("GET", "/1.0/operations?recursion=1", None);
        ops.get("running")
            .and_then(Value::as_array)
            .is_none_or(|r| r.is_empty())
    });
    assert!(gone, "B still has running operations");

    // A move fails the same way and keeps the source running.
    let o = p.silo(&["move", "a:c", "b:c"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("CRIU isn't installed"),
        "{}",
        show(&o)
    );
    assert_eq!(p.a.status("c"), "Running");
    assert!(instance_names(&p.b).is_empty());
}

#[test]
fn stateless_move_of_a_running_instance_starts_the_copy() {
    let p = Pair::new("mig-stateless");
    p.source("c");
    let op = p.a.set_state("c", "start", false);
    assert_eq!(op["status"], "Success", "{op}");
    let o = p.silo(&["move", "a:c", "b:c", "--stateless"]);
    assert!(o.status.success(), "move --stateless: {}", show(&o));
    assert!(
        instance_names(&p.a).is_empty(),
        "{:?}",
        instance_names(&p.a)
    );
    assert_eq!(p.b.status("c"), "Running");
    let (code, out, err) = p.b.exec("c", &["cat", "/root/mark"]);
    assert_eq!((code, out.trim()), (0, "main"), "{err}");
    assert_eq!(snapshot_names(&p.b, "c"), vec!["snap0", "snap1"]);
}

/// The same CLI against two real LXD 5.0.2 servers (the protocol's reference): a stopped
/// container with a snapshot copied in each mode, a snapshot copied, and a move. Both LXDs
/// share one network namespace (a on PORT, b on PORT2), the CLI runs there too.
#[test]
fn silo_cli_copies_and_moves_between_two_lxd_servers() {
    use silo_tests::lxd::{TestLxd, TRUST_PASSWORD};
    let a = TestLxd::start("mig-lxd-a");
    let b = TestLxd::start_beside("mig-lxd-b", &a);
    let conf = Conf::new("mig-lxd");
    let silo = |args: &[&str]| a.silo(conf.path(), args, None);
    for (name, url) in [("a", a.url()), ("b", b.url())] {
        ok(
            silo(&[
                "remote",
                "add",
                name,
                &url,
                "--password",
                TRUST_PASSWORD,
                "--accept-certificate",
            ]),
            &format!("remote add {name}"),
        );
    }
    let image = busybox_image(false);
    ok(
        a.lxc(&[
            "image",
            "import",
            image[0].to_str().expect("utf-8"),
            "--alias",
            "bb",
        ]),
        "lxc image import",
    );
    ok(a.lxc(&["init", "bb", "c"]), "lxc init");
    ok(a.lxc(&["snapshot", "c", "snap0"]), "lxc snapshot");
    let lxd_snapshots = |d: &TestLxd, name: &str| -> String {
        let o = ok(
            d.lxc(&["query", &format!("/1.0/instances/{name}/snapshots")]),
            "query snapshots",
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };

    for mode in ["pull", "push", "relay"] {
        let name = format!("c-{mode}");
        let o = silo(&["copy", "a:c", &format!("b:{name}"), "--mode", mode]);
        assert!(
            o.status.success(),
            "copy --mode {mode}: {}\nlog of b:\n{}",
            show(&o),
            b.log_text()
        );
        assert!(
            lxd_snapshots(&b, &name).contains("snap0"),
            "--mode {mode}: {}",
            lxd_snapshots(&b, &name)
        );
    }
    ok(silo(&["copy", "a:c/snap0", "b:fromsnap"]), "copy a:c/snap0");
    assert!(!lxd_snapshots(&b, "fromsnap").contains("snap0"));
    ok(
        silo(&["copy", "a:c", "b:limited", "-c", "limits.memory=64MiB"]),
        "copy -c",
    );
    let o = ok(
        b.lxc(&["config", "get", "limited", "limits.memory"]),
        "config get",
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "64MiB");

    let o = silo(&["move", "a:c", "b:moved"]);
    assert!(o.status.success(), "move: {}", show(&o));
    let o = ok(a.lxc(&["list", "--format", "csv", "-c", "n"]), "list a");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "",
        "a keeps nothing"
    );
    assert!(lxd_snapshots(&b, "moved").contains("snap0"));
}
