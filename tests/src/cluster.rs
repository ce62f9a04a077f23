//! A cluster of test daemons: each silod in its own network namespace, joined by veths to
//! a bridge in a hub namespace on 198.19.<subnet>.0/24 (the benchmarking block nothing
//! outside the tests' namespaces uses). Shared by `tests/cluster.rs` and the cluster bench.

use std::os::fd::OwnedFd;
use std::process::Command;

use serde_json::{json, Value};

use crate::{in_netns, new_netns, show, TestDaemon};

/// The hub: a bridge the members' veths are enslaved to.
#[derive(Debug)]
pub struct Hub {
    /// The hub's namespace.
    pub ns: OwnedFd,
    /// The third octet of its range.
    pub subnet: u8,
}

fn ip_in(ns: &OwnedFd, args: Vec<String>) {
    in_netns(ns, move || {
        let o = Command::new("ip").args(&args).output().expect("ip");
        assert!(o.status.success(), "ip {args:?}: {}", show(&o));
    })
}

impl Hub {
    /// A hub with its bridge.
    pub fn new(subnet: u8) -> Hub {
        let ns = new_netns();
        ip_in(&ns, svec(&["link", "add", "br0", "type", "bridge"]));
        ip_in(&ns, svec(&["link", "set", "br0", "up"]));
        Hub { ns, subnet }
    }

    /// Plugs member `i` (1..) in: its eth `cl0` gets 198.19.<subnet>.<i>/24.
    pub fn plug(&self, d: &TestDaemon, i: u8) -> String {
        let port = format!("hub{i}");
        ip_in(
            &self.ns,
            vec![
                "link".into(),
                "add".into(),
                port.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                "cl0".into(),
                "netns".into(),
                d.pid().to_string(),
            ],
        );
        ip_in(
            &self.ns,
            svec(&["link", "set", &port, "master", "br0", "up"]),
        );
        let addr = format!("198.19.{}.{i}", self.subnet);
        ip_in(
            &d.netns,
            svec(&["addr", "add", &format!("{addr}/24"), "dev", "cl0"]),
        );
        ip_in(&d.netns, svec(&["link", "set", "cl0", "up"]));
        addr
    }

    /// Cuts (or restores) member `i`'s link on the hub's side.
    pub fn set_link(&self, i: u8, up: bool) {
        ip_in(
            &self.ns,
            svec(&[
                "link",
                "set",
                &format!("hub{i}"),
                if up { "up" } else { "down" },
            ]),
        );
    }
}

fn svec(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A member: its daemon and address.
#[derive(Debug)]
pub struct Member {
    /// Its daemon.
    pub d: TestDaemon,
    /// Its member name (m1, m2...).
    pub name: String,
    /// Its address on the hub.
    pub addr: String,
}

/// Starts `n` members (m1..), plugged into `hub`, listening on their hub address.
pub fn start_members(test: &str, hub: &Hub, n: u8) -> Vec<Member> {
    (1..=n).map(|i| start_member(test, hub, i)).collect()
}

/// Starts member `i`: its daemon, its address on the hub, a 10 s offline threshold.
pub fn start_member(test: &str, hub: &Hub, i: u8) -> Member {
    {
        let d = TestDaemon::start(&format!("{test}-m{i}"));
        let addr = hub.plug(&d, i);
        d.listen_https(&format!("{addr}:8443"), "cluster-test-pw");
        // The quickest threshold LXD allows: 10 s.
        let (c, v) = d.api(
            "PATCH",
            "/1.0",
            Some(json!({"config": {"cluster.offline_threshold": "10"}})),
        );
        assert_eq!(c, 200, "cluster.offline_threshold: {v}");
        Member {
            d,
            name: format!("m{i}"),
            addr,
        }
    }
}

/// Waits for the operation an async answer names; its error ("" when it succeeded).
pub fn op_error(d: &TestDaemon, answer: &Value) -> String {
    let op = d.wait_op(answer);
    op["err"].as_str().unwrap_or("").to_string()
}

/// A join token for `name` from member `m` (`lxc cluster add`'s request).
pub fn token(m: &Member, name: &str) -> String {
    let (c, v) = m.d.api(
        "POST",
        "/1.0/cluster/members",
        Some(json!({"server_name": name})),
    );
    assert_eq!(c, 202, "token for {name}: {v}");
    let meta: silo_api::ClusterJoinTokenMetadata =
        serde_json::from_value(v["metadata"]["metadata"].clone()).expect("token metadata");
    silo_api::ClusterMemberJoinToken::from(meta).encode()
}

/// Joins `m` to the cluster with `token`; the operation's error when it fails.
pub fn join(m: &Member, token: &str) -> Result<(), String> {
    let (c, v) = m.d.api(
        "PUT",
        "/1.0/cluster",
        Some(json!({
            "server_name": m.name, "enabled": true, "cluster_token": token,
            "server_address": format!("{}:8443", m.addr),
        })),
    );
    if c != 202 {
        return Err(format!("{c}: {v}"));
    }
    let e = op_error(&m.d, &v);
    if e.is_empty() {
        Ok(())
    } else {
        Err(e)
    }
}

/// The members as `d` lists them (none while it cannot: callers poll or count).
pub fn members(d: &TestDaemon) -> Vec<Value> {
    let (c, v) = d.api("GET", "/1.0/cluster/members?recursion=1", None);
    if c != 200 {
        eprintln!("members: {c} {v}");
        return Vec::new();
    }
    v["metadata"].as_array().cloned().unwrap_or_default()
}

/// A member's status as `d` sees it ("" while `d` cannot say: polling tolerates a
/// member between two connections to the database).
pub fn status_of(d: &TestDaemon, name: &str) -> String {
    let (c, v) = d.api("GET", "/1.0/cluster/members?recursion=1", None);
    if c != 200 {
        return String::new();
    }
    v["metadata"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .find(|m| m["server_name"] == name)
        .map(|m| m["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// A hub and `n` members formed into a cluster: m1 bootstraps, the others join.
pub fn form(test: &str, subnet: u8, n: u8) -> (Hub, Vec<Member>) {
    let hub = Hub::new(subnet);
    let ms = start_members(test, &hub, n);
    ms[0].d.api_ok(
        "PUT",
        "/1.0/cluster",
        Some(json!({"server_name": "m1", "enabled": true})),
    );
    for m in &ms[1..] {
        let t = token(&ms[0], &m.name);
        join(m, &t).unwrap_or_else(|e| {
            panic!(
                "{} joining: {e}\nlog:\n{}\nm1's log:\n{}",
                m.name,
                m.d.log_text(),
                ms[0].d.log_text()
            )
        });
    }
    (hub, ms)
}

/// Creates and starts a busybox instance through `d`, on `target` when given.
pub fn launch_on(d: &TestDaemon, name: &str, target: Option<&str>) -> Result<(), String> {
    let path = match target {
        Some(t) => format!("/1.0/instances?target={t}"),
        None => "/1.0/instances".to_string(),
    };
    let (c, v) = d.api(
        "POST",
        &path,
        Some(json!({"name": name, "source": {"type": "image", "alias": "busybox"}})),
    );
    if c != 202 {
        return Err(format!("{c}: {}", v["error"]));
    }
    let e = op_error(d, &v);
    if !e.is_empty() {
        return Err(e);
    }
    let (c, v) = d.api(
        "PUT",
        &format!("/1.0/instances/{name}/state"),
        Some(json!({"action": "start"})),
    );
    if c != 202 {
        return Err(format!("start: {c}: {}", v["error"]));
    }
    let e = op_error(d, &v);
    if e.is_empty() {
        Ok(())
    } else {
        Err(format!("start: {e}"))
    }
}

/// The member an instance is on, as `d` shows it.
pub fn location_of(d: &TestDaemon, name: &str) -> String {
    let (c, v) = d.api("GET", &format!("/1.0/instances/{name}"), None);
    assert_eq!(c, 200, "{name}: {v}");
    v["metadata"]["location"].as_str().unwrap_or("").to_string()
}
