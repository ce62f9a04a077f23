//! Nic types beyond a managed bridge, for real, each test in its own silod's network
//! namespace: p2p and routed veths (names, MACs, MTUs, addresses, host routes, proxy
//! ARP/NDP entries, traffic), and the refusals (host traffic that must not be taken, what
//! this kernel lacks), which must leave no interface, route or neighbour entry behind.

use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, in_netns, wait_until, TestDaemon};

fn busybox(d: &TestDaemon) {
    d.import(&busybox_image(false)[0], "busybox");
}

fn text(o: &std::process::Output) -> String {
    silo_tests::show(o)
}

/// Runs a command in silod's namespace; answers stdout, failing the test on an error.
fn ns(d: &TestDaemon, args: &[&str]) -> String {
    let o = d.netns_cmd(args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The names of silod's namespace's interfaces.
fn link_names(d: &TestDaemon) -> Vec<String> {
    ns(d, &["ip", "-br", "link"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Everything a refused nic could have left on the host: links, IPv4 and IPv6 routes (the
/// local table's entries and carrier state left out: a bridge that had a port for a moment
/// keeps its link-local address), proxy neighbour entries.
fn host_state(d: &TestDaemon) -> (Vec<String>, String, String, String) {
    let mut links = link_names(d);
    links.sort();
    let routes = |family: &str| {
        ns(d, &["ip", family, "route", "show", "table", "all"])
            .lines()
            .filter(|l| !l.contains("table local"))
            .map(|l| l.replace(" linkdown", "").trim().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    (
        links,
        routes("-4"),
        routes("-6"),
        ns(d, &["ip", "neigh", "show", "proxy"]),
    )
}

/// Waits for the host to be as it was (a killed instance's namespace, and the veths in it,
/// go asynchronously).
fn assert_back(d: &TestDaemon, before: &(Vec<String>, String, String, String), what: &str) {
    let mut now = host_state(d);
    let back = wait_until(Duration::from_secs(10), || {
        now = host_state(d);
        &now == before
    });
    assert!(
        back,
        "{what} left something behind: before {before:?}, now {now:?}"
    );
}

/// A host interface for parents (this kernel has no dummy driver: one end of a veth pair).
fn host_iface(d: &TestDaemon, name: &str) {
    let peer = format!("{name}p");
    ns(
        d,
        &[
            "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
        ],
    );
    for n in [name, peer.as_str()] {
        ns(d, &["ip", "link", "set", n, "up"]);
    }
}

fn create(d: &TestDaemon, name: &str, devices: Value) {
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": name, "source": {"type": "image", "alias": "busybox"},
            "devices": devices,
        })),
    );
}

fn config(d: &TestDaemon, name: &str, key: &str) -> String {
    let v = d.api_ok("GET", &format!("/1.0/instances/{name}"), None);
    v["config"][key].as_str().unwrap_or_default().to_string()
}

fn inside(d: &TestDaemon, name: &str, cmd: &[&str]) -> String {
    let (code, o, e) = d.exec(name, cmd);
    assert_eq!(code, 0, "{cmd:?}: {o} {e}");
    o
}

/// Adds a device through the API; answers the status and the error text.
fn add_device(d: &TestDaemon, name: &str, dev: &str, spec: Value) -> (u16, String) {
    let v = d.api_ok("GET", &format!("/1.0/instances/{name}"), None);
    let mut devices = v["devices"].clone();
    devices[dev] = spec;
    let (code, r) = d.api(
        "PATCH",
        &format!("/1.0/instances/{name}"),
        Some(json!({"devices": devices})),
    );
    let r = if code == 202 { d.wait_op(&r) } else { r };
    let err = r["error"]
        .as_str()
        .or(r["err"].as_str())
        .unwrap_or_default()
        .to_string();
    (code, err)
}

#[test]
fn p2p_nics_plug_route_carry_traffic_and_unplug() {
    let d = TestDaemon::start("nic-p2p");
    busybox(&d);
    create(
        &d,
        "p1",
        json!({
            "eth1": {
                "type": "nic", "nictype": "p2p", "name": "peer1",
                "hwaddr": "00:16:3e:12:34:56", "mtu": "1400",
                "ipv4.routes": "10.123.0.0/24", "ipv6.routes": "fd12:3::/64",
            },
        }),
    );
    d.set_state("p1", "start", false);
    let link = inside(&d, "p1", &["ip", "-o", "link", "show", "peer1"]);
    assert!(
        link.contains("mtu 1400") && link.contains("00:16:3e:12:34:56"),
        "{link}"
    );
    let host = config(&d, "p1", "volatile.eth1.host_name");
    assert!(host.starts_with("silo"), "host end {host:?}");
    let hl = ns(&d, &["ip", "-d", "-o", "link", "show", &host]);
    assert!(hl.contains("mtu 1400") && hl.contains("veth"), "{hl}");
    assert!(
        !hl.contains("master"),
        "a p2p host end is on no bridge: {hl}"
    );
    let r4 = ns(&d, &["ip", "-4", "route", "show", "10.123.0.0/24"]);
    assert!(r4.contains(&format!("dev {host}")), "{r4}");
    let r6 = ns(&d, &["ip", "-6", "route", "show", "fd12:3::/64"]);
    assert!(r6.contains(&format!("dev {host}")), "{r6}");
    // Traffic through the host route: the instance takes an address in the routed range,
    // the host end one to answer from.
    inside(
        &d,
        "p1",
        &["ip", "addr", "add", "10.123.0.5/24", "dev", "peer1"],
    );
    ns(&d, &["ip", "addr", "add", "10.123.0.1/32", "dev", &host]);
    let o = d.netns_cmd(&["busybox", "ping", "-c", "1", "-W", "5", "10.123.0.5"]);
    assert!(o.status.success(), "host -> instance: {}", text(&o));
    let (code, o, e) = d.exec("p1", &["ping", "-c", "1", "-W", "5", "10.123.0.1"]);
    assert_eq!(code, 0, "instance -> host end: {o} {e}");

    // Hot-unplug takes the host end and its routes; hot-plug through the stock lxc.
    let o = d.silo(&["config", "device", "remove", "p1", "eth1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!link_names(&d).contains(&host), "{:?}", link_names(&d));
    assert!(ns(&d, &["ip", "-4", "route", "show", "10.123.0.0/24"]).is_empty());
    let o = d.lxc(&[
        "config",
        "device",
        "add",
        "p1",
        "eth2",
        "nic",
        "nictype=p2p",
        "name=eth2",
        "host_name=silop2pchosen",
    ]);
    assert!(o.status.success(), "lxc: {}", text(&o));
    let link = inside(&d, "p1", &["ip", "-o", "link", "show", "eth2"]);
    assert!(link.contains("eth2"), "{link}");
    let host2 = config(&d, "p1", "volatile.eth2.host_name");
    assert_eq!(host2, "silop2pchosen", "the host_name asked for");
    assert!(
        link_names(&d).contains(&host2),
        "{host2:?}: {:?}",
        link_names(&d)
    );
    let shown = d.lxc(&["config", "device", "show", "p1"]);
    assert!(text(&shown).contains("nictype: p2p"), "{}", text(&shown));
    d.set_state("p1", "stop", true);
    assert!(
        wait_until(Duration::from_secs(5), || !link_names(&d).contains(&host2)),
        "the host end went with the instance: {:?}",
        link_names(&d)
    );

    // Routes that would take host traffic are refused, and nothing is left behind: a public
    // range, and the managed bridge's own subnet.
    let bridge_net = d.api_ok("GET", "/1.0/networks/silobr0", None)["config"]["ipv4.address"]
        .as_str()
        .expect("silobr0 has IPv4")
        .to_string();
    let octets: Vec<&str> = bridge_net.split('.').collect();
    let bridge_range = format!("{}.{}.{}.0/24", octets[0], octets[1], octets[2]);
    for (routes, why) in [
        ("8.8.8.0/24", "network_ranges"),
        (bridge_range.as_str(), "overlaps"),
    ] {
        create(
            &d,
            "p2",
            json!({"eth1": {"type": "nic", "nictype": "p2p", "ipv4.routes": routes}}),
        );
        let before = host_state(&d);
        let v = d.set_state("p2", "start", false);
        assert!(
            v.to_string().contains(why) && v.to_string().contains(routes),
            "{routes}: {v}"
        );
        assert_eq!(d.status("p2"), "Stopped");
        // The refused instance's own eth0 (on silobr0) came and went with it.
        assert_back(&d, &before, routes);
        d.api_ok("DELETE", "/1.0/instances/p2", None);
    }
}

#[test]
fn routed_nics_take_their_addresses_gateway_and_proxy_entries() {
    let d = TestDaemon::start_with_policy("nic-routed", "host_interfaces = [\"rpar0\"]\n");
    busybox(&d);
    host_iface(&d, "rpar0");
    host_iface(&d, "rpar9");
    let nic = json!({
        "type": "nic", "nictype": "routed", "parent": "rpar0", "name": "eth1",
        "hwaddr": "00:16:3e:aa:bb:01", "mtu": "1450",
        "ipv4.address": "10.124.0.5, 10.124.0.6", "ipv6.address": "fd24::5",
        "ipv4.host_address": "169.254.0.3",
    });
    // No eth0 on the bridge: the routed nic's default route is the instance's only one.
    create(
        &d,
        "r1",
        json!({"eth0": {"type": "none"}, "eth1": nic.clone()}),
    );
    // As LXD: silo does not change a parent's sysctls; it says which it needs (forwarding
    // is on already: silo-net turns it on for the managed bridge's NAT).
    let before = host_state(&d);
    let v = d.set_state("r1", "start", false);
    assert!(
        v.to_string()
            .contains("routed mode requires sysctl net.ipv6.conf.all.proxy_ndp=1"),
        "{v}"
    );
    assert_eq!(d.status("r1"), "Stopped");
    assert_back(&d, &before, "the refused start");
    for k in [
        "net.ipv4.conf.rpar0.forwarding=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv6.conf.all.proxy_ndp=1",
        "net.ipv6.conf.rpar0.forwarding=1",
        "net.ipv6.conf.rpar0.proxy_ndp=1",
    ] {
        ns(&d, &["sysctl", "-q", "-w", k]);
    }
    d.set_state("r1", "start", false);
    let link = inside(&d, "r1", &["ip", "-o", "link", "show", "eth1"]);
    assert!(
        link.contains("mtu 1450") && link.contains("00:16:3e:aa:bb:01"),
        "{link}"
    );
    let a4 = inside(&d, "r1", &["ip", "-4", "-o", "addr", "show", "eth1"]);
    assert!(
        a4.contains("10.124.0.5/32") && a4.contains("10.124.0.6/32"),
        "{a4}"
    );
    let a6 = inside(&d, "r1", &["ip", "-6", "-o", "addr", "show", "eth1"]);
    assert!(a6.contains("fd24::5/128"), "{a6}");
    let r4 = inside(&d, "r1", &["ip", "-4", "route", "show", "default"]);
    assert!(r4.contains("via 169.254.0.3 dev eth1"), "{r4}");
    let r6 = inside(&d, "r1", &["ip", "-6", "route", "show", "default"]);
    assert!(r6.contains("via fe80::1 dev eth1"), "{r6}");
    let host = config(&d, "r1", "volatile.eth1.host_name");
    assert!(host.starts_with("silo"), "{host:?}");
    for a in ["10.124.0.5", "10.124.0.6"] {
        let r = ns(&d, &["ip", "-4", "route", "show", a]);
        assert!(r.contains(&format!("dev {host}")), "{a}: {r}");
    }
    let r = ns(&d, &["ip", "-6", "route", "show", "fd24::5"]);
    assert!(r.contains(&format!("dev {host}")), "{r}");
    let ha = ns(&d, &["ip", "-o", "addr", "show", "dev", &host]);
    assert!(
        ha.contains("169.254.0.3/32") && ha.contains("fe80::1/128"),
        "{ha}"
    );
    let proxies = ns(&d, &["ip", "neigh", "show", "proxy", "dev", "rpar0"]);
    for a in ["10.124.0.5", "10.124.0.6", "fd24::5"] {
        assert!(proxies.contains(a), "{a}: {proxies}");
    }
    // Traffic both ways: the host reaches the instance's address through its host route,
    // the instance reaches its gateway.
    let o = d.netns_cmd(&["busybox", "ping", "-c", "1", "-W", "5", "10.124.0.6"]);
    assert!(o.status.success(), "host -> instance: {}", text(&o));
    let (code, o, e) = d.exec("r1", &["ping", "-c", "1", "-W", "5", "169.254.0.3"]);
    assert_eq!(code, 0, "instance -> gateway: {o} {e}");

    // Stopping takes the host end and its routes, and the proxy entries.
    d.set_state("r1", "stop", true);
    assert!(
        wait_until(Duration::from_secs(5), || !link_names(&d).contains(&host)),
        "{:?}",
        link_names(&d)
    );
    assert!(ns(&d, &["ip", "-4", "route", "show", "10.124.0.5"]).is_empty());
    assert_eq!(
        ns(&d, &["ip", "neigh", "show", "proxy", "dev", "rpar0"]).trim(),
        "",
        "proxy entries stay after stop"
    );

    // Hot-plug on a running instance, then unplug: same cleanup.
    d.set_state("r1", "start", false);
    let (code, err) = add_device(
        &d,
        "r1",
        "eth2",
        json!({"type": "nic", "nictype": "routed", "parent": "rpar0", "ipv4.address": "10.124.0.9", "ipv4.gateway": "none"}),
    );
    assert_eq!((code, err.as_str()), (200, ""), "hot-plug");
    let only = inside(&d, "r1", &["ip", "-4", "route", "show", "default"]);
    assert_eq!(
        only.lines().count(),
        1,
        "ipv4.gateway=none adds none: {only}"
    );
    let a4 = inside(&d, "r1", &["ip", "-4", "-o", "addr", "show", "eth2"]);
    assert!(a4.contains("10.124.0.9/32"), "{a4}");
    assert!(ns(&d, &["ip", "neigh", "show", "proxy", "dev", "rpar0"]).contains("10.124.0.9"));
    let host2 = config(&d, "r1", "volatile.eth2.host_name");
    let ha = ns(&d, &["ip", "-4", "-o", "addr", "show", "dev", &host2]);
    assert!(
        !ha.contains("169.254."),
        "ipv4.gateway=none: no gateway address on the host end: {ha}"
    );
    let o = d.silo(&["config", "device", "remove", "r1", "eth2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!link_names(&d).contains(&host2));
    assert!(!ns(&d, &["ip", "neigh", "show", "proxy", "dev", "rpar0"]).contains("10.124.0.9"));
    assert!(ns(&d, &["ip", "-4", "route", "show", "10.124.0.9"]).is_empty());

    // Refusals, each leaving the host as it was: an address another nic already routes, a
    // public one, the host's own (the managed bridge's gateway), a parent the policy does not
    // name, a host address that is the host's.
    let gw = d.api_ok("GET", "/1.0/networks/silobr0", None)["config"]["ipv4.address"]
        .as_str()
        .expect("silobr0 has IPv4")
        .split('/')
        .next()
        .expect("address")
        .to_string();
    let before = host_state(&d);
    for (extra, why) in [
        (
            json!({"ipv4.address": "10.124.0.5"}),
            "overlaps the host route 10.124.0.5/32",
        ),
        (json!({"ipv4.address": "1.1.1.1"}), "network_ranges"),
        (json!({"ipv4.address": gw}), "overlaps"),
        (
            json!({"ipv4.address": "10.124.0.20", "parent": "rpar9"}),
            "host_interfaces",
        ),
        (
            json!({"ipv4.address": "10.124.0.21", "ipv4.host_address": gw}),
            "ipv4.host_address",
        ),
    ] {
        let mut spec = json!({"type": "nic", "nictype": "routed", "parent": "rpar0"});
        for (k, v) in extra.as_object().expect("object") {
            spec[k] = v.clone();
        }
        let (code, err) = add_device(&d, "r1", "eth3", spec.clone());
        assert!(err.contains(why), "{spec}: {code} {err}");
        assert_back(&d, &before, &spec.to_string());
        let cfg = d.api_ok("GET", "/1.0/instances/r1", None);
        assert!(cfg["devices"].get("eth3").is_none(), "{spec}: {cfg}");
    }
    d.set_state("r1", "stop", true);
}

/// Whether this kernel was built with `option`, from /proc/config.gz.
fn kernel_has(option: &str) -> bool {
    let o = std::process::Command::new("sh")
        .args(["-c", "zcat /proc/config.gz"])
        .output()
        .expect("zcat");
    assert!(
        o.status.success(),
        "this test reads the kernel's configuration from /proc/config.gz: {}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .any(|l| l == format!("{option}=y") || l == format!("{option}=m"))
}

#[test]
fn what_this_host_cannot_do_is_refused_naming_why() {
    let d = TestDaemon::start_with_policy("nic-refuse", "host_interfaces = [\"ipar0\"]\n");
    busybox(&d);
    host_iface(&d, "ipar0");
    create(&d, "x1", json!({}));
    d.set_state("x1", "start", false);
    // SR-IOV: no hardware, refused when the device is added.
    let (code, err) = add_device(
        &d,
        "x1",
        "eth5",
        json!({"type": "nic", "nictype": "sriov", "parent": "ipar0"}),
    );
    assert_eq!(code, 400, "{err}");
    assert!(err.contains("SR-IOV"), "{err}");
    let before = host_state(&d);
    let mut cases = vec![];
    for (spec, option) in [
        (
            json!({"type": "nic", "nictype": "ipvlan", "parent": "ipar0", "ipv4.address": "10.125.0.5"}),
            "CONFIG_IPVLAN",
        ),
        (
            json!({"type": "nic", "nictype": "macvlan", "parent": "ipar0", "vlan": "10"}),
            "CONFIG_VLAN_8021Q",
        ),
        (
            json!({"type": "nic", "network": "silobr0", "vlan": "10"}),
            "CONFIG_BRIDGE_VLAN_FILTERING",
        ),
    ] {
        assert!(
            !kernel_has(option),
            "this test checks the refusal on a kernel without {option}; this one has it, so \
             the nic should work here and needs a test of its own"
        );
        cases.push((spec, option));
    }
    for (spec, option) in cases {
        let (code, err) = add_device(&d, "x1", "eth6", spec.clone());
        assert!(err.contains(option), "{spec}: {code} {err}");
        assert_back(&d, &before, &spec.to_string());
        let n = inside(&d, "x1", &["ip", "-o", "link"]);
        assert!(!n.contains("eth6"), "{spec}: {n}");
    }
    // An ipvlan address the host answers to: refused before any driver is asked.
    let gw = d.api_ok("GET", "/1.0/networks/silobr0", None)["config"]["ipv4.address"]
        .as_str()
        .expect("silobr0 has IPv4")
        .split('/')
        .next()
        .expect("address")
        .to_string();
    let (_, err) = add_device(
        &d,
        "x1",
        "eth6",
        json!({"type": "nic", "nictype": "ipvlan", "parent": "ipar0", "ipv4.address": gw}),
    );
    assert!(err.contains("the host would lose that traffic"), "{err}");
    assert_back(&d, &before, "an ipvlan on the host's address");
    // limits on a nic without a host end: refused.
    let (_, err) = add_device(
        &d,
        "x1",
        "eth6",
        json!({"type": "nic", "nictype": "macvlan", "parent": "ipar0", "limits.ingress": "10Mbit"}),
    );
    assert!(err.contains("only nics with a host end"), "{err}");
    assert_back(&d, &before, "limits on a macvlan");
    d.set_state("x1", "stop", true);
}

#[test]
fn filtering_on_a_managed_bridge_drops_spoofed_traffic() {
    let d = TestDaemon::start("nic-filter");
    busybox(&d);
    let gw_cidr = d.api_ok("GET", "/1.0/networks/silobr0", None)["config"]["ipv4.address"]
        .as_str()
        .expect("silobr0 has IPv4")
        .to_string();
    let gw = gw_cidr.split('/').next().expect("address").to_string();
    let net = gw.rsplit_once('.').expect("dotted").0.to_string();
    let (mine, spoofed) = (format!("{net}.50"), format!("{net}.51"));
    let filtered = json!({
        "type": "nic", "network": "silobr0", "name": "eth0", "hwaddr": "00:16:3e:ab:cd:01",
        "ipv4.address": mine, "security.mac_filtering": "true",
        "security.ipv4_filtering": "true", "security.ipv6_filtering": "true",
    });
    create(&d, "f1", json!({"eth0": filtered}));
    create(&d, "f2", json!({}));
    d.set_state("f1", "start", false);
    d.set_state("f2", "start", false);
    assert_eq!(
        d.wait_ipv4("f1"),
        mine,
        "its reservation, through the filter"
    );
    d.wait_ipv4("f2");
    let host = config(&d, "f1", "volatile.eth0.host_name");
    let rules = ns(&d, &["nft", "list", "ruleset"]);
    assert!(
        rules.contains(&format!("chain nic.{host}")) && rules.contains("!= 0x163eabcd01 drop"),
        "{rules}"
    );
    let ping_from =
        |c: &str, src: &str| d.exec(c, &["ping", "-c", "1", "-W", "2", "-I", src, &gw]).0 == 0;
    assert!(ping_from("f1", &mine), "its own address passes");
    // Another address: dropped on f1; the same trick works on the unfiltered f2, so it is
    // the filter that drops it.
    for c in ["f1", "f2"] {
        inside(
            &d,
            c,
            &["ip", "addr", "add", &format!("{spoofed}/24"), "dev", "eth0"],
        );
    }
    assert!(
        !ping_from("f1", &spoofed),
        "a spoofed IPv4 source got through"
    );
    inside(
        &d,
        "f1",
        &["ip", "addr", "del", &format!("{spoofed}/24"), "dev", "eth0"],
    );
    assert!(ping_from("f2", &spoofed), "the unfiltered control");
    // Another MAC: dropped, and back to its own it passes again.
    let set_mac = |m: &str| {
        inside(&d, "f1", &["ip", "link", "set", "eth0", "address", m]);
        // The gateway learnt the old MAC; make it ask again.
        let _ = d.netns_cmd(&["ip", "neigh", "flush", "dev", "silobr0"]);
    };
    set_mac("00:16:3e:ab:cd:02");
    assert!(!ping_from("f1", &mine), "a spoofed MAC got through");
    set_mac("00:16:3e:ab:cd:01");
    assert!(ping_from("f1", &mine), "its own MAC passes again");

    // Stopping takes the chain with the veth.
    d.set_state("f1", "stop", true);
    let rules = ns(&d, &["nft", "list", "ruleset"]);
    assert!(
        !rules.contains(&format!("nic.{host}")),
        "{rules}\n{}",
        d.log_text()
    );

    // IPv4 filtering without a fixed address is refused before anything is made.
    let before = host_state(&d);
    let rules_before = ns(&d, &["nft", "list", "ruleset"]);
    create(
        &d,
        "f3",
        json!({"eth0": {"type": "nic", "network": "silobr0", "security.ipv4_filtering": "true"}}),
    );
    let v = d.set_state("f3", "start", false);
    assert!(
        v.to_string().contains("needs the nic's ipv4.address"),
        "{v}"
    );
    assert_back(&d, &before, "the refused filter");
    assert_eq!(rules_before, ns(&d, &["nft", "list", "ruleset"]));
    d.set_state("f2", "stop", true);
}

#[test]
fn bridged_nics_join_a_host_bridge_only_when_the_policy_names_it() {
    let d = TestDaemon::start_with_policy("nic-hostbr", "host_interfaces = [\"hbr0\"]\n");
    busybox(&d);
    for b in ["hbr0", "hbr9"] {
        ns(&d, &["ip", "link", "add", b, "type", "bridge"]);
        ns(&d, &["ip", "link", "set", b, "up"]);
    }
    create(
        &d,
        "h1",
        json!({"eth1": {"type": "nic", "nictype": "bridged", "parent": "hbr0", "hwaddr": "00:16:3e:00:0b:01"}}),
    );
    d.set_state("h1", "start", false);
    let host = config(&d, "h1", "volatile.eth1.host_name");
    let hl = ns(&d, &["ip", "-o", "link", "show", &host]);
    assert!(hl.contains("master hbr0"), "{hl}");
    let link = inside(&d, "h1", &["ip", "-o", "link", "show", "eth1"]);
    assert!(link.contains("00:16:3e:00:0b:01"), "{link}");
    // Traffic over the host's bridge: an address on each side.
    ns(&d, &["ip", "addr", "add", "10.126.0.1/24", "dev", "hbr0"]);
    inside(
        &d,
        "h1",
        &["ip", "addr", "add", "10.126.0.5/24", "dev", "eth1"],
    );
    let o = d.netns_cmd(&["busybox", "ping", "-c", "1", "-W", "5", "10.126.0.5"]);
    assert!(o.status.success(), "{}", text(&o));
    // A bridge the policy does not name: refused, nothing joins it.
    let before = host_state(&d);
    let (_, err) = add_device(
        &d,
        "h1",
        "eth2",
        json!({"type": "nic", "nictype": "bridged", "parent": "hbr9"}),
    );
    assert!(
        err.contains("hbr9") && err.contains("host_interfaces"),
        "{err}"
    );
    assert_back(&d, &before, "the refused bridge");
    let ports = ns(&d, &["ip", "-o", "link", "show", "master", "hbr9"]);
    assert!(ports.trim().is_empty(), "{ports}");
    d.set_state("h1", "stop", true);
    assert!(
        wait_until(Duration::from_secs(5), || !link_names(&d).contains(&host)),
        "{:?}",
        link_names(&d)
    );
}

#[test]
fn limits_ingress_shapes_what_reaches_the_instance() {
    let d = TestDaemon::start("nic-limits");
    busybox(&d);
    create(
        &d,
        "s1",
        json!({"eth0": {
            "type": "nic", "network": "silobr0", "name": "eth0",
            "limits.ingress": "8Mbit", "limits.egress": "8Mbit",
        }}),
    );
    d.set_state("s1", "start", false);
    let ip = d.wait_ipv4("s1");
    let host = config(&d, "s1", "volatile.eth0.host_name");
    let q = ns(&d, &["tc", "qdisc", "show", "dev", &host]);
    assert!(q.contains("qdisc tbf") && q.contains("rate 8Mbit"), "{q}");
    // 4 MB at 8 Mbit/s (1 MB/s) takes about 4 s; an unshaped veth moves it at once.
    inside(
        &d,
        "s1",
        &["sh", "-c", "nc -l -p 5000 >/dev/null 2>&1 </dev/null &"],
    );
    let addr: std::net::SocketAddr = format!("{ip}:5000").parse().expect("address");
    let took = in_netns(&d.netns, move || {
        use std::io::{Read, Write};
        let mut tries = 0;
        let mut s = loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => break s,
                Err(_) if tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect {addr}: {e}"),
            }
        };
        let start = std::time::Instant::now();
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..64 {
            s.write_all(&chunk).expect("write");
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        // The listener exits at the end of the stream: EOF means everything arrived.
        let _ = s.read(&mut [0u8; 16]);
        start.elapsed()
    });
    assert!(
        took >= Duration::from_millis(2500) && took <= Duration::from_secs(30),
        "4 MB through an 8 Mbit/s limit took {took:?}"
    );
    // The other way: what the instance sends goes through an ifb shaped the same way.
    let ifb = format!("{host}i");
    let q = ns(&d, &["tc", "qdisc", "show", "dev", &ifb]);
    assert!(q.contains("qdisc tbf") && q.contains("rate 8Mbit"), "{q}");
    let f = ns(&d, &["tc", "filter", "show", "dev", &host, "ingress"]);
    assert!(f.contains(&format!("Redirect to device {ifb}")), "{f}");
    let gw = d.api_ok("GET", "/1.0/networks/silobr0", None)["config"]["ipv4.address"]
        .as_str()
        .expect("silobr0 has IPv4")
        .split('/')
        .next()
        .expect("address")
        .to_string();
    let listener = in_netns(&d.netns, || {
        std::net::TcpListener::bind("0.0.0.0:5001").expect("listen in the test's namespace")
    });
    inside(
        &d,
        "s1",
        &[
            "sh",
            "-c",
            &format!("(head -c 4194304 /dev/zero | nc {gw} 5001) >/dev/null 2>&1 </dev/null &"),
        ],
    );
    let took = {
        use std::io::Read;
        let (mut c, _) = listener.accept().expect("the instance connects");
        c.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        let start = std::time::Instant::now();
        while got < 4 * 1024 * 1024 {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert_eq!(got, 4 * 1024 * 1024, "everything the instance sent");
        start.elapsed()
    };
    assert!(
        took >= Duration::from_millis(2500) && took <= Duration::from_secs(30),
        "4 MB out through an 8 Mbit/s limit took {took:?}"
    );
    d.set_state("s1", "stop", true);
    assert!(
        wait_until(Duration::from_secs(5), || !link_names(&d).contains(&ifb)),
        "the ifb goes after the stop: {:?}",
        link_names(&d)
    );
}
