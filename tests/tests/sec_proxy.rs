//! Proxy devices reach only what the policy allows (security finding 5): the host side of a
//! `bind=instance` proxy is checked like a `bind=host` one (unix sockets under `host_paths`,
//! TCP/UDP only where `proxy_host_connect` lists them), and unix paths inside the instance
//! resolve inside it, so a symlink container root plants cannot lead to a host socket.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use silo_tests::{busybox_image, in_netns, wait_until, TestDaemon};

/// A scratch directory on the host, removed when dropped.
struct HostDir(PathBuf);

impl HostDir {
    fn new(tag: &str) -> HostDir {
        let p = PathBuf::from(format!("/tmp/silo-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("host dir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        HostDir(p)
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A host unix socket anyone may connect to (as many real ones are, e.g. the system bus), so
/// only silo's checks stand between a forwarder and it.
fn open_host_socket(path: &Path) -> UnixListener {
    let l = UnixListener::bind(path).expect("bind host socket");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    l.set_nonblocking(true).expect("nonblocking");
    l
}

/// Connections waiting on a listener (the kernel queues them whether or not anyone accepts).
fn pending_unix(l: &UnixListener) -> usize {
    let mut n = 0;
    while l.accept().is_ok() {
        n += 1;
    }
    n
}

fn pending_tcp(l: &std::net::TcpListener) -> usize {
    let mut n = 0;
    while l.accept().is_ok() {
        n += 1;
    }
    n
}

/// Adds a device to a running instance; Ok or the error text.
fn add_device(d: &TestDaemon, inst: &str, dev: &str, cfg: serde_json::Value) -> Result<(), String> {
    let (c, v) = d.api(
        "PATCH",
        &format!("/1.0/instances/{inst}"),
        Some(json!({"devices": {dev: cfg}})),
    );
    let v = if c == 202 { d.wait_op(&v) } else { v };
    let failed = !(200..300).contains(&c)
        || v["status_code"].as_i64().is_some_and(|s| s >= 400)
        || v["status"] == "Failure";
    if failed {
        Err(v.to_string())
    } else {
        Ok(())
    }
}

/// Container root connects to `port` inside the instance and sends a line (errors ignored:
/// whether anything answers is what the test looks at). nc runs in the background, bounded
/// by `timeout`, since a listener that never accepts would hold it; two seconds let the
/// connection go wherever it goes.
fn poke(d: &TestDaemon, inst: &str, port: u16) {
    let (code, _, e) = d.exec(
        inst,
        &[
            "sh",
            "-c",
            &format!("(echo poke | timeout 5 nc 127.0.0.1 {port}) </dev/null >/dev/null 2>&1 &"),
        ],
    );
    assert_eq!(code, 0, "{e}");
    std::thread::sleep(Duration::from_secs(2));
}

fn launch(d: &TestDaemon, name: &str) {
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", name);
}

#[test]
fn bind_instance_cannot_reach_host_sockets_outside_host_paths() {
    let dir = HostDir::new("secproxy-a");
    let allowed = dir.0.join("allowed");
    std::fs::create_dir_all(&allowed).expect("allowed dir");
    let outside = dir.0.join("outside.sock");
    let host = open_host_socket(&outside);
    let d = TestDaemon::start_with_policy(
        "secproxy-a",
        &format!("host_paths = [\"{}\"]\n", allowed.display()),
    );
    launch(&d, "pa");
    let e = add_device(
        &d,
        "pa",
        "escape",
        json!({"type": "proxy", "bind": "instance", "listen": "tcp:127.0.0.1:7003",
               "connect": format!("unix:{}", outside.display())}),
    )
    .expect_err("a host socket outside host_paths is refused");
    assert!(
        e.contains("host_paths"),
        "the refusal names the policy: {e}"
    );
    poke(&d, "pa", 7003);
    assert_eq!(pending_unix(&host), 0, "the host socket received nothing");

    // Nor through a symlink beneath host_paths (a shared directory the instance can write,
    // say): one on the way to the socket is refused, one at its name leads nowhere.
    std::os::unix::fs::symlink(&dir.0, allowed.join("up")).expect("symlink");
    std::os::unix::fs::symlink(&outside, allowed.join("final.sock")).expect("symlink");
    let e = add_device(
        &d,
        "pa",
        "viadir",
        json!({"type": "proxy", "bind": "instance", "listen": "tcp:127.0.0.1:7004",
               "connect": format!("unix:{}/up/outside.sock", allowed.display())}),
    )
    .expect_err("a symlinked directory is refused");
    assert!(e.contains("no symlinks"), "{e}");
    add_device(
        &d,
        "pa",
        "viafinal",
        json!({"type": "proxy", "bind": "instance", "listen": "tcp:127.0.0.1:7005",
               "connect": format!("unix:{}/final.sock", allowed.display())}),
    )
    .expect("the path is beneath host_paths");
    poke(&d, "pa", 7004);
    poke(&d, "pa", 7005);
    assert_eq!(
        pending_unix(&host),
        0,
        "the host socket still received nothing"
    );

    // A real socket beneath host_paths is reached.
    let real = allowed.join("real.sock");
    let served = open_host_socket(&real);
    add_device(
        &d,
        "pa",
        "real",
        json!({"type": "proxy", "bind": "instance", "listen": "tcp:127.0.0.1:7006",
               "connect": format!("unix:{}", real.display())}),
    )
    .expect("a host socket beneath host_paths");
    poke(&d, "pa", 7006);
    assert_eq!(pending_unix(&served), 1, "the allowed socket is reached");
    assert_eq!(pending_unix(&host), 0);
}

#[test]
fn bind_instance_reaches_host_tcp_only_where_the_policy_lists_it() {
    let d = TestDaemon::start_with_policy(
        "secproxy-b",
        "proxy_host_connect = [\"tcp:127.0.0.1:17401\"]\n",
    );
    // Two services on the host's loopback (the daemon's network namespace is the host here).
    let (listed, unlisted) = in_netns(&d.netns, || {
        let a = std::net::TcpListener::bind("127.0.0.1:17401").expect("bind 17401");
        let b = std::net::TcpListener::bind("127.0.0.1:17402").expect("bind 17402");
        (a, b)
    });
    unlisted.set_nonblocking(true).expect("nonblocking");
    launch(&d, "pb");
    let e = add_device(
        &d,
        "pb",
        "unlisted",
        json!({"type": "proxy", "bind": "instance", "listen": "tcp:127.0.0.1:7002",
               "connect": "tcp:127.0.0.1:17402"}),
    )
    .expect_err("an unlisted host service is refused");
    assert!(
        e.contains("proxy_host_connect"),
        "the refusal names the policy: {e}"
    );
    poke(&d, "pb", 7002);
    assert_eq!(
        pending_tcp(&unlisted),
        0,
        "the unlisted service received nothing"
    );
    // A port range reaching past the listed port is refused too.
    let e = add_device(
        &d,
        "pb",
        "range",
        json!({"type": "proxy", "bind": "instance", "listen": "tcp:127.0.0.1:7004-7005",
               "connect": "tcp:127.0.0.1:17401-17402"}),
    )
    .expect_err("a range covering an unlisted port is refused");
    assert!(e.contains("proxy_host_connect"), "{e}");

    add_device(
        &d,
        "pb",
        "listed",
        json!({"type": "proxy", "bind": "instance", "listen": "tcp:127.0.0.1:7001",
               "connect": "tcp:127.0.0.1:17401"}),
    )
    .expect("a listed host service is allowed");
    poke(&d, "pb", 7001);
    listed.set_nonblocking(true).expect("nonblocking");
    let mut conn = None;
    let reached = wait_until(Duration::from_secs(10), || {
        conn = listed.accept().ok();
        conn.is_some()
    });
    assert!(reached, "the listed service is reached");
    let (mut s, _) = conn.expect("connection");
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert_eq!(got.trim(), "poke");
    assert_eq!(pending_tcp(&unlisted), 0);
}

/// Connects to the proxy on the host side and sends a line; whatever happens next.
fn through_proxy(d: &TestDaemon, port: u16) {
    in_netns(&d.netns, move || {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let _ = s.write_all(b"through\n");
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    });
}

#[test]
fn instance_paths_resolve_inside_the_instance() {
    let dir = HostDir::new("secproxy-c");
    let target = dir.0.join("host.sock");
    let host = open_host_socket(&target);
    let d = TestDaemon::start_with_policy(
        "secproxy-c",
        "proxy_host_connect = [\"tcp:127.0.0.1:17501\"]\n",
    );
    launch(&d, "pc");
    let t = target.display().to_string();
    let parent = dir.0.display().to_string();
    // Container root plants symlinks towards the host socket: absolute, climbing with "..",
    // and through a directory.
    let (code, _, e) = d.exec(
        "pc",
        &[
            "sh",
            "-c",
            &format!(
                "mkdir -p /run && ln -sf {t} /run/x.sock && ln -sf ../../../../../..{t} /run/y.sock \
                 && ln -sf {parent} /run/d"
            ),
        ],
    );
    assert_eq!(code, 0, "{e}");
    for (port, path) in [
        (17601u16, "/run/x.sock"),
        (17602, "/run/y.sock"),
        (17603, "/run/d/host.sock"),
    ] {
        add_device(
            &d,
            "pc",
            &format!("sym{port}"),
            json!({"type": "proxy", "listen": format!("tcp:127.0.0.1:{port}"),
                   "connect": format!("unix:{path}")}),
        )
        .expect("a bind=host proxy into the instance");
        through_proxy(&d, port);
        assert_eq!(
            pending_unix(&host),
            0,
            "{path} inside the instance must not lead to the host's {t}"
        );
    }

    // A real socket at the same path inside the instance works: a bind=instance proxy
    // listens at /run/x.sock and carries what arrives to a host service the policy lists.
    let sink = in_netns(&d.netns, || {
        std::net::TcpListener::bind("127.0.0.1:17501").expect("bind 17501")
    });
    let (code, _, e) = d.exec("pc", &["rm", "-f", "/run/x.sock"]);
    assert_eq!(code, 0, "{e}");
    add_device(
        &d,
        "pc",
        "real",
        json!({"type": "proxy", "bind": "instance", "listen": "unix:/run/x.sock",
               "connect": "tcp:127.0.0.1:17501"}),
    )
    .expect("a socket inside the instance");
    let (code, o, e) = d.exec("pc", &["stat", "-c", "%F", "/run/x.sock"]);
    assert_eq!((code, o.trim()), (0, "socket"), "{e}");
    through_proxy(&d, 17601);
    sink.set_nonblocking(false).expect("blocking");
    let got = std::thread::spawn(move || {
        let (mut s, _) = sink.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        got
    });
    let ok = wait_until(Duration::from_secs(10), || got.is_finished());
    assert!(
        ok,
        "the real socket inside the instance carried the connection"
    );
    assert_eq!(got.join().expect("join").trim(), "through");
    assert_eq!(
        pending_unix(&host),
        0,
        "and the host socket still saw nothing"
    );
}
