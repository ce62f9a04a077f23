//! `/dev/lxd/sock`, the guest API, through real containers: what LXD 5.0's devlxd answers
//! (config of `user.*`/`cloud-init.*` only, meta-data, devices, events), `security.devlxd`,
//! isolation between instances, a read-only and locked /dev/lxd, a silod restart, and
//! cloud-init's own LXD datasource reading it.
//!
//! Busybox has no unix-socket HTTP client, so requests to busybox instances go from the host
//! through the instance's own root (`/proc/<init>/root/dev/lxd/sock`, the instance's mount of
//! it) as the instance's root uid; the debian instance asks from inside with perl (in its
//! base system).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, debian_image, wait_until, TestDaemon};

/// The instance's init pid and host uid of its root.
fn init_and_root(d: &TestDaemon, name: &str) -> (u32, u32) {
    let st = d.api_ok("GET", &format!("/1.0/instances/{name}/state"), None);
    let pid = st["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no init pid: {st}")) as u32;
    let i = d.api_ok("GET", &format!("/1.0/instances/{name}"), None);
    let base = i["config"]["volatile.idmap.base"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .expect("volatile.idmap.base");
    (pid, base)
}

/// A command run as uid `uid` of the instance (its user namespace entered, nothing else), so
/// that it reaches the instance's /dev/lxd through `/proc/<init>/root` and connects with that
/// uid's host id; `None`: as host root, outside.
fn as_guest(d: &TestDaemon, name: &str, uid: Option<u32>, argv: &[&str]) -> Command {
    let (pid, _) = init_and_root(d, name);
    let mut cmd = match uid {
        Some(u) => {
            let mut c = Command::new("nsenter");
            c.arg("-t").arg(pid.to_string()).args([
                "-U",
                "-S",
                &u.to_string(),
                "-G",
                &u.to_string(),
                "--",
            ]);
            c.args(argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.env("DEVLXD_SOCK", format!("/proc/{pid}/root/dev/lxd/sock"));
    cmd
}

/// `curl` on the instance's /dev/lxd/sock as the instance's `uid` (`None`: host root):
/// (status, body). Status 0: no connection.
fn guest_curl(d: &TestDaemon, name: &str, uid: Option<u32>, args: &[&str]) -> (u16, String) {
    let (pid, _) = init_and_root(d, name);
    let sock = format!("/proc/{pid}/root/dev/lxd/sock");
    let mut argv = vec![
        "curl",
        "-s",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "--max-time",
        "10",
        "--unix-socket",
    ];
    argv.push(&sock);
    argv.extend_from_slice(args);
    let out = as_guest(d, name, uid, &argv).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn guest_get(d: &TestDaemon, name: &str, path: &str) -> (u16, String) {
    guest_curl(d, name, Some(0), &[&format!("http://lxd{path}")])
}

fn create(d: &TestDaemon, name: &str, config: Value) {
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": name, "source": {"type": "image", "alias": "busybox"}, "config": config})),
    );
    d.set_state(name, "start", false);
}

fn set_config(d: &TestDaemon, name: &str, key: &str, value: &str) {
    let o = d.lxc(&["config", "set", name, key, value]);
    assert!(o.status.success(), "lxc config set: {o:?}");
}

#[test]
fn devlxd_answers_as_lxd_and_only_for_container_root() {
    let d = TestDaemon::start("devlxd-api");
    d.import(&busybox_image(false)[0], "busybox");
    create(&d, "c1", json!({"user.meta-data": "extra: 1\n"}));
    // The stock client sets a key; the guest reads it.
    set_config(&d, "c1", "user.foo", "bar baz");
    set_config(&d, "c1", "limits.processes", "500");
    set_config(&d, "c1", "cloud-init.user-data", "#cloud-config\n");
    assert_eq!(guest_get(&d, "c1", "/"), (200, "[\"/1.0\"]\n".to_string()));
    let (c, body) = guest_get(&d, "c1", "/1.0");
    assert_eq!(c, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["api_version"], "1.0");
    assert_eq!(v["instance_type"], "container");
    assert_eq!(v["location"], "none");
    let (c, body) = guest_get(&d, "c1", "/1.0/config");
    assert_eq!(c, 200, "{body}");
    let mut keys: Vec<String> = serde_json::from_str(&body).expect("json");
    keys.sort();
    assert_eq!(
        keys,
        [
            "/1.0/config/cloud-init.user-data",
            "/1.0/config/user.foo",
            "/1.0/config/user.meta-data"
        ]
    );
    assert_eq!(
        guest_get(&d, "c1", "/1.0/config/user.foo"),
        (200, "bar baz".to_string())
    );
    // Keys outside user.* and cloud-init.*: 403 as LXD, set or not.
    for k in [
        "limits.processes",
        "volatile.idmap.base",
        "security.privileged",
    ] {
        assert_eq!(
            guest_get(&d, "c1", &format!("/1.0/config/{k}")),
            (403, "not authorized\n".to_string()),
            "{k}"
        );
    }
    assert_eq!(
        guest_get(&d, "c1", "/1.0/config/user.nothing"),
        (404, "not found\n".to_string())
    );
    assert_eq!(
        guest_get(&d, "c1", "/1.0/nothing"),
        (404, "404 page not found\n".to_string())
    );
    assert_eq!(
        guest_get(&d, "c1", "/1.0/meta-data"),
        (
            200,
            "#cloud-config\ninstance-id: c1\nlocal-hostname: c1\nextra: 1\n".to_string()
        )
    );
    let (c, body) = guest_get(&d, "c1", "/1.0/devices");
    assert_eq!(c, 200, "{body}");
    let devs: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(devs["root"]["type"], "disk", "{devs}");
    // Only container root: host root is refused (LXD's 401; another uid of the instance is
    // in the debian test, which asks from inside).
    assert_eq!(
        guest_curl(&d, "c1", None, &["http://lxd/1.0"]),
        (401, "Access denied for non-root user\n".to_string())
    );
    // What the guest sees: a socket in a read-only directory it cannot change or uncover.
    let (code, out, err) = d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "test -S /dev/lxd/sock && ls /dev/lxd && stat -c '%a' /dev/lxd/sock; \
             rm -f /dev/lxd/sock && echo removed; touch /dev/lxd/x && echo made; \
             umount /dev/lxd && echo unmounted; umount -l /dev/lxd && echo detached; \
             umount -f /dev/lxd && echo forced; mount -o remount,rw /dev/lxd && echo rw; \
             mount -o remount,bind,rw /dev/lxd && echo bind-rw; \
             grep -q ' /dev/lxd ro,' /proc/self/mountinfo || echo not-ro; true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "sock\n666\n", "stderr: {err}");
    assert_eq!(guest_get(&d, "c1", "/1.0/config/user.foo").0, 200);
    // No host process keeps the directory open (the monitor lives as long as the instance).
    let dir = d.dir.join("runtime/c1/devlxd");
    let holders: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|p| std::fs::read_dir(p.path().join("fd")).ok())
        .flat_map(|fds| fds.flatten())
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == dir))
        .map(|fd| fd.path().display().to_string())
        .collect();
    assert!(holders.is_empty(), "{holders:?}");
    // Stopped: nothing answers; started again: a new socket serves.
    d.set_state("c1", "stop", true);
    let host_sock = d.dir.join("runtime/c1/devlxd/sock");
    assert!(
        !dir.exists(),
        "a stopped instance's /dev/lxd directory is left"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&host_sock).is_err(),
        "a stopped instance's socket still answers"
    );
    d.set_state("c1", "start", false);
    assert_eq!(
        guest_get(&d, "c1", "/1.0/config/user.foo"),
        (200, "bar baz".to_string())
    );
}

#[test]
fn security_devlxd_false_means_no_dev_lxd_and_refusal_at_once() {
    let d = TestDaemon::start("devlxd-off");
    d.import(&busybox_image(false)[0], "busybox");
    create(&d, "off", json!({"security.devlxd": "false"}));
    let (code, out, _) = d.exec("off", &["sh", "-c", "ls -a /dev/lxd || echo none"]);
    assert_eq!((code, out.as_str()), (0, "none\n"));
    assert!(!d.dir.join("runtime/off/devlxd").exists());
    // Turned off on a running instance: refused at once (as LXD's handlers check it), the
    // mount goes at the next start.
    create(&d, "on", json!({"user.a": "1"}));
    assert_eq!(guest_get(&d, "on", "/1.0/config/user.a"), (200, "1".into()));
    set_config(&d, "on", "security.devlxd", "false");
    assert_eq!(
        guest_get(&d, "on", "/1.0/config/user.a"),
        (403, "not authorized\n".into())
    );
    assert_eq!(
        guest_get(&d, "on", "/1.0"),
        (403, "not authorized\n".into())
    );
    d.set_state("on", "restart", true);
    let (_, out, _) = d.exec("on", &["sh", "-c", "ls /dev/lxd || echo none"]);
    assert_eq!(out, "none\n");
    // And back on: mounted and served at the next start.
    set_config(&d, "on", "security.devlxd", "true");
    d.set_state("on", "restart", true);
    assert_eq!(guest_get(&d, "on", "/1.0/config/user.a"), (200, "1".into()));
}

#[test]
fn an_instance_sees_only_its_own_config_and_events() {
    let d = TestDaemon::start("devlxd-iso");
    d.import(&busybox_image(false)[0], "busybox");
    create(&d, "a", json!({"user.secret": "of-a"}));
    create(&d, "b", json!({"user.secret": "of-b"}));
    assert_eq!(
        guest_get(&d, "a", "/1.0/config/user.secret"),
        (200, "of-a".into())
    );
    assert_eq!(
        guest_get(&d, "b", "/1.0/config/user.secret"),
        (200, "of-b".into())
    );
    // Nothing in a's /dev/lxd but its own socket; no way to silod's API socket or b's.
    let (_, out, _) = d.exec("a", &["sh", "-c", "ls -a /dev/lxd"]);
    assert_eq!(out, ".\n..\nsock\n");
    // A Host header or path naming the other instance changes nothing.
    assert_eq!(
        guest_curl(
            &d,
            "a",
            Some(0),
            &["-H", "Host: b", "http://b/1.0/config/user.secret"]
        ),
        (200, "of-a".into())
    );
    assert_eq!(
        guest_get(&d, "a", "/1.0/instances/b").0,
        404,
        "not LXD's main API"
    );
    // Events: a's listener gets a's config change, never b's.
    let (pid, _) = init_and_root(&d, "a");
    let sock = format!("/proc/{pid}/root/dev/lxd/sock");
    let listener = as_guest(
        &d,
        "a",
        Some(0),
        &[
            "curl",
            "-s",
            "-N",
            "--max-time",
            "6",
            "--unix-socket",
            &sock,
            "http://lxd/1.0/events",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("curl events");
    // And over a websocket, as LXD serves it (a raw client: one upgrade, then frames).

    let ws = as_guest(
        &d,
        "a",
        Some(0),
        &["/usr/bin/python3", "-c", silo_tests::DEVLXD_WS_CLIENT],
    )
    .env("DEVLXD_PATH", "/1.0/events?type=device")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("python3 websocket client");
    std::thread::sleep(Duration::from_millis(1500));
    set_config(&d, "b", "user.secret", "b-changed");
    set_config(&d, "a", "user.secret", "a-changed");
    set_config(&d, "a", "limits.processes", "300");
    let o = d.lxc(&[
        "config",
        "device",
        "add",
        "b",
        "nb",
        "nic",
        "network=silobr0",
    ]);
    assert!(o.status.success(), "{o:?}");
    let o = d.lxc(&[
        "config",
        "device",
        "add",
        "a",
        "na",
        "nic",
        "network=silobr0",
    ]);
    assert!(o.status.success(), "{o:?}");
    let out = ws.wait_with_output().expect("websocket client");
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, frame) = text.split_once('\n').unwrap_or_default();
    assert_eq!(
        status,
        "HTTP/1.1 101 Switching Protocols",
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev: Value = serde_json::from_str(frame.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(ev["type"], "device");
    assert_eq!(
        ev["metadata"],
        json!({"action": "added", "name": "na", "config": {"type": "nic", "network": "silobr0"}})
    );
    let out = listener.wait_with_output().expect("events");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect();
    // a's own changes only (no limits.* key: LXD sends user.* only), in order.
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["type"], "config");
    assert_eq!(
        lines[0]["metadata"],
        json!({"key": "user.secret", "old_value": "of-a", "value": "a-changed"})
    );
    assert_eq!(lines[1]["type"], "device");
    assert_eq!(lines[1]["metadata"]["name"], "na");
}

#[test]
fn devlxd_survives_a_silod_restart() {
    let mut d = TestDaemon::start("devlxd-restart");
    d.import(&busybox_image(false)[0], "busybox");
    create(&d, "c1", json!({"user.k": "v1"}));
    assert_eq!(
        guest_get(&d, "c1", "/1.0/config/user.k"),
        (200, "v1".into())
    );
    let (pid, _) = init_and_root(&d, "c1");
    // silod (and its helpers) killed: the instance runs on, its socket has no listener.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 silod");
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(128 + 9));
    assert_eq!(root_get(pid), 0, "nothing listens while silod is down");
    d.spawn();
    assert_eq!(init_and_root(&d, "c1").0, pid, "the same instance runs");
    // The new silod serves it again, through the same mount, with the config as it is now.
    assert!(
        wait_until(Duration::from_secs(10), || guest_get(
            &d,
            "c1",
            "/1.0/config/user.k"
        ) == (200, "v1".to_string())),
        "not served after the restart; log:\n{}",
        d.log_text()
    );
    set_config(&d, "c1", "user.k", "v2");
    assert_eq!(
        guest_get(&d, "c1", "/1.0/config/user.k"),
        (200, "v2".into())
    );
}

/// Whether anything answers on the instance `pid`'s socket as host root (0: no connection).
fn root_get(pid: u32) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("--unix-socket")
        .arg(format!("/proc/{pid}/root/dev/lxd/sock"))
        .arg("http://lxd/1.0")
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The debian image's perl, from inside: cloud-init's LXD datasource's request sequence
/// (meta-data, the config list, each key it lists, devices), raw HTTP on /dev/lxd/sock.
#[test]
fn a_debian_guest_reads_devlxd_as_cloud_init_does() {
    let d = TestDaemon::start("devlxd-debian");
    d.import(&debian_image(), "debian");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "deb", "source": {"type": "image", "alias": "debian"},
            "config": {"cloud-init.user-data": "#cloud-config\nhostname: x\n", "limits.memory": "256MiB"}})),
    );
    d.set_state("deb", "start", false);
    set_config(&d, "deb", "user.foo", "bar");
    let get = r#"
        use IO::Socket::UNIX;
        my $s = IO::Socket::UNIX->new(Peer => "/dev/lxd/sock") or die "connect: $!";
        print $s "GET $ARGV[0] HTTP/1.1\r\nHost: lxd\r\nConnection: close\r\n\r\n";
        local $/; my $r = <$s>;
        my ($head, $body) = split /\r\n\r\n/, $r, 2;
        my ($code) = $head =~ m{^HTTP/1\.\d (\d+)};
        print "$code $body";
    "#;
    let ask = |path: &str| {
        let (code, out, err) = d.exec("deb", &["perl", "-e", get, path]);
        assert_eq!(code, 0, "perl {path}: {err}");
        out
    };
    assert_eq!(
        ask("/1.0/meta-data"),
        "200 #cloud-config\ninstance-id: deb\nlocal-hostname: deb\n"
    );
    let list = ask("/1.0/config");
    let routes: Vec<String> =
        serde_json::from_str(list.strip_prefix("200 ").expect("200")).expect("json");
    assert_eq!(
        routes,
        ["/1.0/config/cloud-init.user-data", "/1.0/config/user.foo"]
    );
    assert_eq!(
        ask("/1.0/config/cloud-init.user-data"),
        "200 #cloud-config\nhostname: x\n"
    );
    assert_eq!(ask("/1.0/config/user.foo"), "200 bar");
    assert_eq!(ask("/1.0/config/limits.memory"), "403 not authorized\n");
    assert!(ask("/1.0/devices").starts_with("200 {"));
    // A user other than root inside is refused, as LXD does.
    let (code, out, _) = d.exec_as("deb", &["perl", "-e", get, "/1.0"], 1000);
    assert_eq!(code, 0);
    assert_eq!(out, "401 Access denied for non-root user\n");
}

/// cloud-init's own LXD datasource (Debian's cloud-init package, unpacked for the test, never
/// installed) reads the instance's /dev/lxd/sock as the instance's root: it finds the
/// platform viable and reads meta-data, every config key it is offered and the devices.
#[test]
fn cloud_init_lxd_datasource_reads_devlxd() {
    let work = tempfile::Builder::new()
        .prefix("silo-t-devlxd-ci-")
        .tempdir()
        .expect("tempdir");
    // The instance's root reads the package through the host's /tmp.
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    // cloud-init and what its URL helper imports, for Debian's own python3 (any other python
    // on the host may keep its packages where the instance's root cannot read them):
    // scripts/deps keeps Debian's packages in a cache, fetched here when it is missing.
    let cache = std::path::Path::new("/var/cache/silo/debs/cloud-init");
    let debs: Vec<std::path::PathBuf> = std::fs::read_dir(cache)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    if debs.iter().any(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cloud-init_"))
    }) {
        for deb in &debs {
            if let Some(name) = deb.file_name() {
                std::fs::copy(deb, work.path().join(name)).expect("copy a cached .deb");
            }
        }
    } else {
        let o = Command::new("apt-get")
            .args([
                "download",
                "cloud-init",
                "python3-requests",
                "python3-urllib3",
                "python3-idna",
                "python3-certifi",
                "python3-charset-normalizer",
                "python3-chardet",
            ])
            .current_dir(work.path())
            .output()
            .expect("apt-get");
        assert!(
            o.status.success(),
            "this test reads cloud-init's datasource from Debian's cloud-init package, which \
             is neither in {} (scripts/deps puts it there) nor downloadable: {}",
            cache.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let root = work.path().join("x");
    for deb in std::fs::read_dir(work.path())
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
    {
        let o = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .output()
            .expect("dpkg-deb");
        assert!(o.status.success(), "{o:?}");
    }
    let pkgs = root.join("usr/lib/python3/dist-packages");
    assert!(pkgs.join("cloudinit/sources/DataSourceLXD.py").exists());

    let d = TestDaemon::start("devlxd-ci");
    d.import(&busybox_image(false)[0], "busybox");
    create(
        &d,
        "ci",
        json!({
            "cloud-init.user-data": "#cloud-config\nhostname: from-silo\n",
            "user.meta-data": "extra: 1\n",
            "user.network-config": "version: 2\n",
            "limits.memory": "128MiB",
        }),
    );
    // configobj (a dependency of cloud-init's distro modules, unused by the datasource) is
    // stubbed: the host need not have it.
    let script = r#"
import json, os, sys, types
sys.path.insert(0, sys.argv[1])
stub = types.ModuleType("configobj"); stub.ConfigObj = object; sys.modules["configobj"] = stub
from cloudinit.sources import DataSourceLXD as ds
ds.LXD_SOCKET_PATH = os.environ["DEVLXD_SOCK"]
print(json.dumps({"viable": ds.is_platform_viable(), "md": ds.read_metadata()}))
"#;
    let pkgs = pkgs.to_string_lossy().into_owned();
    let o = as_guest(
        &d,
        "ci",
        Some(0),
        &["/usr/bin/python3", "-c", script, &pkgs],
    )
    .output()
    .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["viable"], true);
    let md = &v["md"];
    assert_eq!(
        md["meta-data"],
        "#cloud-config\ninstance-id: ci\nlocal-hostname: ci\nextra: 1\n"
    );
    assert_eq!(md["user-data"], "#cloud-config\nhostname: from-silo\n");
    assert_eq!(md["network-config"], "version: 2\n");
    assert_eq!(
        md["config"],
        json!({
            "cloud-init.user-data": "#cloud-config\nhostname: from-silo\n",
            "user.meta-data": "extra: 1\n",
            "user.network-config": "version: 2\n",
        })
    );
    assert_eq!(md["devices"]["root"]["type"], "disk", "{md}");
}

/// Container root is the client: connections, request heads and idle time are bounded, and
/// a flood of idle connections neither starves silod's API nor keeps the guest API shut.
#[test]
fn devlxd_is_bounded_against_a_hostile_guest() {
    let d = TestDaemon::start("devlxd-bounds");
    d.import(&busybox_image(false)[0], "busybox");
    create(&d, "c1", json!({"user.k": "v"}));
    let flood = r#"
import os, socket, sys, time
path = os.environ["DEVLXD_SOCK"]
def get(extra=b""):
    s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(path)
    s.sendall(b"GET /1.0/config/user.k HTTP/1.1\r\nHost: lxd\r\n" + extra + b"Connection: close\r\n\r\n")
    r = b""
    while True:
        c = s.recv(65536)
        if not c: break
        r += c
    return r.split(b"\r\n")[0].decode()
t = time.time()
for _ in range(200): assert get().endswith(" 200 OK")
print("200 requests ms", int((time.time() - t) * 1000))
# A head larger than the server buffers: refused, not stored (the refusal may reset the
# connection while the rest is still being sent).
try:
    print("big head", get(b"X-Big: " + b"a" * 100000 + b"\r\n"))
except (ConnectionResetError, BrokenPipeError):
    print("big head reset")
# 40 idle connections (more than the 16 served at once).
idle = []
for _ in range(40):
    s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(path); idle.append(s)
sys.stdout.flush()
print("idle open", flush=True)
t = time.time()
closed = 0
for s in idle[:16]:
    try:
        if s.recv(1) == b"": closed += 1
    except OSError:
        closed += 1
print("idle closed by the server", closed, "after s", int(time.time() - t))
print("after the flood", get())
"#;
    let mut child = as_guest(&d, "c1", Some(0), &["/usr/bin/python3", "-c", flood])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    // While the guest holds its connections, silod's own API answers.
    std::thread::sleep(Duration::from_secs(4));
    let t = std::time::Instant::now();
    let (code, _) = d.api("GET", "/1.0/instances", None);
    assert_eq!(code, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let ok = wait_until(Duration::from_secs(60), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(ok, "the flood client did not finish");
    let out = child.wait_with_output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("big head HTTP/1.1 431") || text.contains("big head reset"),
        "{text}"
    );
    assert!(text.contains("idle closed by the server 16"), "{text}");
    assert!(text.contains("after the flood HTTP/1.1 200 OK"), "{text}");
}
