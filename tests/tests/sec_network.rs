//! Managed networks cannot take over the host's routes (security finding 3): public subnets,
//! the default route's gateway, the host's resolvers and names of interfaces the host may
//! create later are refused by silod with a clear 400, and nothing is left behind. silo-net
//! refusing the same when a hostile daemon asks directly is in `hostile_daemon.rs`.

use serde_json::json;
use silo_tests::TestDaemon;

fn text(o: &std::process::Output) -> String {
    silo_tests::show(o)
}

/// The interface names in silod's network namespace.
fn link_names(d: &TestDaemon) -> Vec<String> {
    let o = d.netns_cmd(&["ip", "-br", "link"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Nothing of a refused network exists: no link, no mention in nftables, no dnsmasq.
fn assert_nothing_left(d: &TestDaemon, name: &str) {
    assert!(
        !link_names(d).iter().any(|n| n == name),
        "no link {name} remains: {:?}",
        link_names(d)
    );
    let o = d.netns_cmd(&["nft", "list", "ruleset"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(name),
        "no nft rule names {name}: {}",
        text(&o)
    );
    let o = d.netns_cmd(&[
        "sh",
        "-c",
        &format!("ps -eo args | grep -c '[d]nsmasq.*interface={name}$\\|[d]nsmasq.*interface={name} ' || true"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "0",
        "no dnsmasq serves {name}"
    );
    let (c, v) = d.api("GET", &format!("/1.0/networks/{name}"), None);
    assert_eq!(c, 404, "no record of {name}: {v}");
}

/// POSTs a bridge and expects a 400 whose error contains `why`.
fn refused(d: &TestDaemon, name: &str, v4: &str, v6: &str, why: &str) {
    let (c, v) = d.api(
        "POST",
        "/1.0/networks",
        Some(json!({"name": name, "type": "bridge",
                    "config": {"ipv4.address": v4, "ipv6.address": v6}})),
    );
    assert_eq!(c, 400, "{name} {v4} {v6}: {v}");
    let e = v["error"].as_str().unwrap_or("");
    assert!(
        e.contains(why),
        "{name} {v4} {v6}: {e:?} should say {why:?}"
    );
    assert_nothing_left(d, name);
}

#[test]
fn public_subnets_and_host_names_are_refused_through_the_api() {
    let d = TestDaemon::start("secnet-pub");
    // The default bridge still comes up on auto subnets.
    let n = d.api_ok("GET", "/1.0/networks/silobr0", None);
    let v4 = n["config"]["ipv4.address"].as_str().unwrap_or("");
    assert!(v4.starts_with("10.") && v4.ends_with("/24"), "{n}");
    // The live report: these pulled 8.8.8.8, 1.1.1.1 and 9.9.9.9 into a bridge.
    for v4 in ["8.8.8.1/8", "9.9.9.1/8", "1.1.1.2/8", "172.32.0.1/16"] {
        refused(&d, "silosecpub0", v4, "none", "network_ranges");
    }
    refused(
        &d,
        "silosecpub0",
        "none",
        "2001:4860::1/32",
        "network_ranges",
    );
    let o = d.netns_cmd(&["ip", "route", "get", "9.9.9.9"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("silosecpub0"),
        "{}",
        text(&o)
    );
    // Names of interfaces the host may create later.
    for name in ["docker0", "eth1", "wlan0", "enp0s99"] {
        refused(&d, name, "10.93.0.1/24", "none", "must start with \"silo\"");
    }
    // A change to a public subnet is refused too and leaves the bridge as it was.
    let (c, v) = d.api(
        "PATCH",
        "/1.0/networks/silobr0",
        Some(json!({"config": {"ipv4.address": "8.8.8.1/8"}})),
    );
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("network_ranges"),
        "{v}"
    );
    let o = d.netns_cmd(&["ip", "-br", "addr", "show", "silobr0"]);
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(s.contains(v4) && !s.contains("8.8.8.1"), "{s}");
    // A nic cannot name its host end like a host interface.
    let (c, v) = d.api(
        "POST",
        "/1.0/profiles",
        Some(json!({"name": "secnetp", "devices": {"eth0": {"type": "nic", "network": "silobr0", "host_name": "eth1"}}})),
    );
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("must start with \"silo\""),
        "{v}"
    );
}

/// The first IPv4 nameserver of the host's resolv.conf that is not loopback.
fn host_resolver() -> std::net::Ipv4Addr {
    let conf = std::fs::read_to_string("/etc/resolv.conf").expect("read /etc/resolv.conf");
    conf.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
        .unwrap_or_else(|| {
            panic!(
                "this test needs an IPv4 nameserver that is not loopback in /etc/resolv.conf \
                 (silo guards the host's resolvers read from it); found:\n{conf}"
            )
        })
}

#[test]
fn the_default_gateway_and_the_resolvers_count_as_used() {
    let ns = host_resolver();
    let o = ns.octets();
    // The resolver's /24, listed in the policy so that only the resolver rule can refuse it
    // (whatever range the host's resolver is in).
    let policy = format!("network_ranges = [\"{}.{}.{}.0/24\"]\n", o[0], o[1], o[2]);
    let d = TestDaemon::start_with_policy("secnet-gw", &policy);
    for cmd in silo_tests::UPLINK_WITH_DEFAULT_ROUTE {
        let out = d.netns_cmd(cmd);
        assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    }
    refused(
        &d,
        "silosecgw0",
        "192.168.77.5/24",
        "none",
        "gateway 192.168.77.1",
    );
    refused(
        &d,
        "silosecgw0",
        "192.168.0.1/16",
        "none",
        "gateway 192.168.77.1",
    );
    let host = if o[3] == 1 { 2 } else { 1 };
    refused(
        &d,
        "silosecns0",
        &format!("{}.{}.{}.{host}/24", o[0], o[1], o[2]),
        "none",
        &format!("resolver {ns}"),
    );
    // A subnet beside them is fine.
    d.api_ok(
        "POST",
        "/1.0/networks",
        Some(json!({"name": "silosecok0", "config": {"ipv4.address": "192.168.78.1/24", "ipv6.address": "none"}})),
    );
    assert!(link_names(&d).iter().any(|n| n == "silosecok0"));
    d.api_ok("DELETE", "/1.0/networks/silosecok0", None);
    assert_nothing_left(&d, "silosecok0");
}

#[test]
fn the_policy_can_list_more_ranges_and_name_prefixes() {
    let d = TestDaemon::start_with_policy(
        "secnet-pol",
        "network_ranges = [\"198.18.0.0/15\", \"2001:db8::/32\"]\nnetwork_name_prefixes = [\"lxdbr\"]\n",
    );
    d.api_ok(
        "POST",
        "/1.0/networks",
        Some(json!({"name": "lxdbr7", "config": {"ipv4.address": "198.18.5.1/24", "ipv6.address": "2001:db8:1::1/64"}})),
    );
    let o = d.netns_cmd(&["ip", "-br", "addr", "show", "lxdbr7"]);
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        s.contains("198.18.5.1/24") && s.contains("2001:db8:1::1/64"),
        "{}",
        text(&o)
    );
    d.api_ok("DELETE", "/1.0/networks/lxdbr7", None);
    assert_nothing_left(&d, "lxdbr7");
    // Only what it lists.
    refused(&d, "lxdbr8", "198.20.0.1/24", "none", "network_ranges");
    refused(
        &d,
        "docker0",
        "10.93.0.1/24",
        "none",
        "network_name_prefixes",
    );
}
