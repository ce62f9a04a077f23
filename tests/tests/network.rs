//! Networking for real, inside a network namespace each test's silod runs in: the managed
//! bridge with NAT, DHCP and DNS; nics of every kind; proxy devices; the networks API.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;
use silo_tests::{busybox_image, in_netns, wait_until, TestDaemon};

fn busybox(d: &TestDaemon) {
    d.import(&busybox_image(false)[0], "busybox");
}

fn text(o: &std::process::Output) -> String {
    silo_tests::show(o)
}

fn wait_ipv4(d: &TestDaemon, name: &str) -> String {
    d.wait_ipv4(name)
}

fn nft_ruleset(d: &TestDaemon) -> String {
    let o = d.netns_cmd(&["nft", "list", "ruleset"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn links(d: &TestDaemon) -> String {
    String::from_utf8_lossy(&d.netns_cmd(&["ip", "-br", "link"]).stdout).into_owned()
}

/// Whether silod's namespace has an interface of exactly this name.
fn has_link(d: &TestDaemon, name: &str) -> bool {
    links(d)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|n| n.split('@').next() == Some(name))
}

#[test]
fn two_containers_on_the_default_bridge_reach_each_other_by_name() {
    let d = TestDaemon::start("net-bridge");
    // A foreign table must survive everything silo does.
    assert!(d
        .netns_cmd(&["nft", "add", "table", "inet", "other"])
        .status
        .success());
    busybox(&d);
    // The default network: silobr0 with auto subnets and NAT, eth0 in the default profile.
    let n = d.api_ok("GET", "/1.0/networks/silobr0", None);
    let cfg = &n["config"];
    let v4 = cfg["ipv4.address"]
        .as_str()
        .expect("ipv4.address")
        .to_string();
    assert!(v4.starts_with("10.") && v4.ends_with("/24"), "{n}");
    assert!(
        cfg["ipv6.address"]
            .as_str()
            .is_some_and(|a| a.starts_with("fd42:")),
        "{n}"
    );
    assert_eq!(cfg["ipv4.nat"], "true");
    assert_eq!(n["managed"], true);
    let p = d.api_ok("GET", "/1.0/profiles/default", None);
    assert_eq!(
        p["devices"]["eth0"],
        json!({"type": "nic", "network": "silobr0", "name": "eth0"})
    );

    d.launch("busybox", "c1");
    d.launch("busybox", "c2");
    let a1 = wait_ipv4(&d, "c1");
    let a2 = wait_ipv4(&d, "c2");
    let subnet = v4.rsplit_once('.').expect("dot").0.to_string();
    assert!(
        a1.starts_with(&subnet) && a2.starts_with(&subnet),
        "{a1} {a2} in {v4}"
    );
    assert_ne!(a1, a2);
    // The MAC is kept in volatile and is what the instance has.
    let (_, c1) = d.api("GET", "/1.0/instances/c1", None);
    let mac = c1["metadata"]["config"]["volatile.eth0.hwaddr"]
        .as_str()
        .expect("hwaddr")
        .to_string();
    assert!(mac.starts_with("00:16:3e:"), "{mac}");
    let (code, o, _) = d.exec("c1", &["cat", "/sys/class/net/eth0/address"]);
    assert_eq!((code, o.trim()), (0, mac.as_str()));
    let host = c1["metadata"]["config"]["volatile.eth0.host_name"]
        .as_str()
        .expect("host_name")
        .to_string();
    assert!(has_link(&d, &host), "{}", links(&d));

    // Ping each other by address and by name through dnsmasq.
    let (code, o, e) = d.exec("c1", &["ping", "-c", "1", "-W", "2", &a2]);
    assert_eq!(code, 0, "{o}{e}");
    let ok = wait_until(Duration::from_secs(10), || {
        d.exec("c1", &["ping", "-c", "1", "-W", "2", "c2.silo"]).0 == 0
    });
    let (_, o, e) = d.exec("c1", &["nslookup", "c2.silo"]);
    assert!(ok, "c1 cannot ping c2.silo: {o}{e}");
    assert!(o.contains(&a2), "c2.silo resolves to {a2}: {o}");
    let (code, o, e) = d.exec("c2", &["ping", "-c", "1", "-W", "2", "c1.silo"]);
    assert_eq!(code, 0, "{o}{e}");

    // Leases: both instances, by name and MAC; the CLI shows them too, and list the address.
    let leases = d.api_ok("GET", "/1.0/networks/silobr0/leases", None);
    let l = leases.as_array().expect("array");
    assert!(
        l.iter().any(|x| x["hostname"] == "c1"
            && x["address"] == a1.as_str()
            && x["hwaddr"] == mac.as_str()),
        "{leases}"
    );
    assert!(
        l.iter()
            .any(|x| x["hostname"] == "c2" && x["address"] == a2.as_str()),
        "{leases}"
    );
    assert!(l.iter().any(|x| x["type"] == "gateway"), "{leases}");
    let o = d.silo(&["network", "list-leases", "silobr0"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&a1),
        "{}",
        text(&o)
    );
    let o = d.silo(&["list", "-c", "n4"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains(&format!("{a1} (eth0)")), "{s}");

    // NAT is in silo's own table only, and the foreign table is untouched.
    let rules = nft_ruleset(&d);
    let tag = silo_proto::install_tag(&d.dir);
    assert!(rules.contains(&format!("table inet silo-{tag}")), "{rules}");
    assert!(rules.contains("table inet other"), "{rules}");
    let net = v4.replace(".1/24", ".0/24");
    assert!(
        rules.contains(&format!(
            "ip saddr {net} ip daddr != {net} oifname != \"silobr0\" masquerade"
        )),
        "{rules}"
    );
    assert_eq!(
        rules.matches("masquerade").count(),
        2,
        "one v4 and one v6 rule: {rules}"
    );

    // Network state through the API and the CLI.
    let st = d.api_ok("GET", "/1.0/networks/silobr0/state", None);
    assert_eq!(st["state"], "up");
    assert!(
        st["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["address"] == v4.trim_end_matches("/24"))),
        "{st}"
    );
    assert!(
        st["bridge"]["upper_devices"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == host.as_str())),
        "{st}"
    );

    // Deleting a network in use is refused.
    let (c, v) = d.api("DELETE", "/1.0/networks/silobr0", None);
    assert_eq!(c, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("in use"), "{v}");

    // A fixed address is a DHCP reservation: the instance gets exactly it, by name too.
    // (Not an address dnsmasq already handed to c1 or c2: that would be a conflict of the
    // test's own making.)
    let fixed = (200..250)
        .map(|h| format!("{subnet}.{h}"))
        .find(|a| *a != a1 && *a != a2)
        .expect("a free address");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": "c3", "source": {"type": "image", "alias": "busybox"},
            "devices": {"eth0": {"type": "nic", "network": "silobr0", "name": "eth0", "ipv4.address": fixed}}
        })),
    );
    d.set_state("c3", "start", false);
    assert_eq!(wait_ipv4(&d, "c3"), fixed);
    // Reachability, not latency: under a loaded CI machine the new instance's addresses (IPv6
    // duplicate address detection included) can take longer than a quiet run's second.
    let ok = wait_until(Duration::from_secs(30), || {
        // The reservation is an IPv4 one: ask for that address by name (busybox's ping
        // would otherwise take c3's AAAA record, whose SLAAC address may still be tentative).
        d.exec("c1", &["ping", "-4", "-c", "1", "-W", "2", "c3.silo"])
            .0
            == 0
    });
    let (_, o, e) = d.exec("c1", &["nslookup", "c3.silo"]);
    if !ok {
        // What each side sees, to tell a neighbour, bridge-port or filtering problem apart.
        let mut why = String::new();
        for (c, cmd) in [
            ("c1", &["ip", "addr"][..]),
            ("c1", &["ip", "neigh"][..]),
            ("c1", &["ip", "route"][..]),
            ("c3", &["ip", "addr"][..]),
            ("c3", &["ip", "neigh"][..]),
            ("c3", &["ip", "route"][..]),
        ] {
            let (code, o, e) = d.exec(c, cmd);
            why += &format!("{c} {cmd:?} ({code}):\n{o}{e}\n");
        }
        for cmd in [
            &["bridge", "link"][..],
            &["ip", "neigh"][..],
            &["ip", "-s", "link"][..],
            &["nft", "list", "ruleset"][..],
        ] {
            why += &format!("host {cmd:?}:\n{}\n", text(&d.netns_cmd(cmd)));
        }
        panic!("c1 cannot ping c3.silo ({fixed}) in 30 s: {o}{e}\n{why}");
    }
    assert!(o.contains(&fixed), "c3.silo resolves to {fixed}: {o}{e}");
    let leases = d.api_ok("GET", "/1.0/networks/silobr0/leases", None);
    assert!(
        leases
            .as_array()
            .expect("a")
            .iter()
            .any(|x| x["hostname"] == "c3"
                && x["address"] == fixed.as_str()
                && x["type"] == "static"),
        "{leases}"
    );

    // A reservation is one instance's: the same address for another is refused (LXD's 409
    // and wording), at create and by editing, and so is one outside the subnet or the
    // bridge's own; nothing is made.
    let nic =
        |a: &str| json!({"type": "nic", "network": "silobr0", "name": "eth0", "ipv4.address": a});
    let gateway = format!("{subnet}.1");
    for (addr, code, why) in [
        (fixed.as_str(), 409, format!("IP address \"{fixed}\" already defined on another NIC: nic \"eth0\" of instance \"c3\"")),
        ("192.0.2.7", 400, "is not within network \"silobr0\"'s subnet".to_string()),
        (gateway.as_str(), 400, "own, network or broadcast address".to_string()),
    ] {
        let (c, v) = d.api(
            "POST",
            "/1.0/instances",
            Some(json!({
                "name": "c4", "source": {"type": "image", "alias": "busybox"},
                "devices": {"eth0": nic(addr)}
            })),
        );
        assert_eq!(c, code, "{addr}: {v}");
        assert!(v["error"].as_str().unwrap_or("").contains(&why), "{addr}: {v}");
        let (c, _) = d.api("GET", "/1.0/instances/c4", None);
        assert_eq!(c, 404, "no c4 after a refused create");
    }
    let (c, v) = d.api(
        "PATCH",
        "/1.0/instances/c2",
        Some(json!({"devices": {"eth0": nic(&fixed)}})),
    );
    assert_eq!(c, 409, "{v}");
    let c2 = d.api_ok("GET", "/1.0/instances/c2", None);
    assert!(c2["devices"].get("eth0").is_none(), "c2 unchanged: {c2}");

    // Stopping takes the veth away with the instance's namespace.
    d.set_state("c1", "stop", true);
    assert!(
        wait_until(Duration::from_secs(5), || !has_link(&d, &host)),
        "{}",
        links(&d)
    );
    let (_, c1) = d.api("GET", "/1.0/instances/c1", None);
    assert!(
        c1["metadata"]["config"]
            .get("volatile.eth0.host_name")
            .is_none(),
        "{c1}"
    );
    // A restart gets the same MAC and so the same lease.
    d.set_state("c1", "start", false);
    assert_eq!(wait_ipv4(&d, "c1"), a1);

    // Nothing of the test's networking outlives its silod.
    let dir = d.dir.display().to_string();
    drop(d);
    let mut left = Vec::new();
    let gone = wait_until(Duration::from_secs(5), || {
        let ps = std::process::Command::new("ps")
            .args(["-eo", "pid,args"])
            .output()
            .expect("ps");
        left = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains("dnsmasq") && l.contains(&dir))
            .map(str::to_string)
            .collect();
        left.is_empty()
    });
    assert!(gone, "dnsmasq outlived silod: {left:?}");
}

/// A listing asks silo-priv for every running instance's interfaces in one request, with
/// one descriptor per instance: more instances than one message of descriptors held (8 once)
/// left every address out. And one instance powering itself off among many is noticed by
/// the one request that follows them all.
#[test]
fn a_listing_shows_the_addresses_of_a_dozen_instances_and_one_stopping_among_them() {
    let d = TestDaemon::start("net-dozen");
    busybox(&d);
    let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    for n in &names {
        d.launch("busybox", n);
    }
    let mut missing = names.clone();
    let ok = wait_until(Duration::from_secs(30), || {
        let (_, v) = d.api("GET", "/1.0/instances?recursion=2", None);
        missing = names
            .iter()
            .filter(|n| {
                let i = v["metadata"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|i| i["name"] == n.as_str());
                !i.is_some_and(|i| {
                    i["state"]["network"]["eth0"]["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|a| a["family"] == "inet")
                })
            })
            .cloned()
            .collect();
        missing.is_empty()
    });
    assert!(ok, "no IPv4 in the listing for {missing:?}");
    let o = d.lxc(&["list", "--format", "csv", "-c", "n4"]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        csv.lines().filter(|l| l.contains("(eth0)")).count(),
        12,
        "lxc list shows every address:\n{csv}"
    );

    let (code, _, err) = d.exec("c5", &["poweroff"]);
    assert_eq!(code, 0, "poweroff: {err}");
    assert!(
        wait_until(Duration::from_secs(15), || d.status("c5") == "Stopped"),
        "c5 powered off: its status follows"
    );
    for n in names.iter().filter(|n| *n != "c5") {
        assert_eq!(d.status(n), "Running", "{n} runs on");
    }
    d.set_state("c5", "start", false);
    assert_eq!(d.status("c5"), "Running");
    d.exec("c5", &["poweroff"]);
    assert!(
        wait_until(Duration::from_secs(15), || d.status("c5") == "Stopped"),
        "a second run of c5 is followed too"
    );
}

#[test]
fn networks_api_create_update_delete_and_refusals() {
    let d = TestDaemon::start("net-api");
    // Another manager's bridge and subnet on the host: auto avoids it, an overlap is refused.
    for cmd in [
        &["ip", "link", "add", "lxdbr0", "type", "bridge"][..],
        &["ip", "addr", "add", "10.0.3.1/24", "dev", "lxdbr0"],
        &["ip", "link", "set", "lxdbr0", "up"],
    ] {
        assert!(d.netns_cmd(cmd).status.success());
    }
    let (c, v) = d.api(
        "POST",
        "/1.0/networks",
        Some(json!({"name": "silobr1", "type": "bridge", "config": {"ipv4.address": "10.0.3.50/24", "ipv6.address": "none"}})),
    );
    assert_eq!(c, 400, "{v}");
    let e = v["error"].as_str().unwrap_or("");
    assert!(e.contains("overlaps") && e.contains("10.0.3.1/24"), "{e}");
    assert!(!has_link(&d, "silobr1"), "nothing half-made: {}", links(&d));
    // A name outside silo's own is refused before anything is looked at.
    let (c, v) = d.api(
        "POST",
        "/1.0/networks",
        Some(json!({"name": "lxdbr0", "type": "bridge", "config": {}})),
    );
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("must start with \"silo\""),
        "{v}"
    );
    // Taking over a foreign interface is refused, even under silo's prefix.
    assert!(d
        .netns_cmd(&["ip", "link", "add", "silofrgn0", "type", "bridge"])
        .status
        .success());
    let (c, v) = d.api(
        "POST",
        "/1.0/networks",
        Some(json!({"name": "silofrgn0", "type": "bridge", "config": {}})),
    );
    assert_eq!(c, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("not silo's"),
        "{v}"
    );
    // sriov and ovn keep their names and say why not.
    for t in ["sriov", "ovn"] {
        let (c, v) = d.api(
            "POST",
            "/1.0/networks",
            Some(json!({"name": "x1", "type": t})),
        );
        assert_eq!(c, 400);
        assert!(
            v["error"]
                .as_str()
                .unwrap_or("")
                .contains("not supported on this host"),
            "{v}"
        );
    }
    let (c, v) = d.api(
        "POST",
        "/1.0/networks",
        Some(json!({"name": "silobr1", "config": {"bogus.key": "1"}})),
    );
    assert_eq!(c, 400);
    assert!(
        v["error"].as_str().unwrap_or("").contains("bogus.key"),
        "{v}"
    );

    // A bridge with a given subnet, no NAT, no IPv6; then changed.
    d.api_ok(
        "POST",
        "/1.0/networks",
        Some(json!({"name": "silobr1", "description": "test", "config": {"ipv4.address": "10.77.0.1/24", "ipv6.address": "none", "ipv4.nat": "false"}})),
    );
    let o = d.netns_cmd(&["ip", "-br", "addr", "show", "silobr1"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("10.77.0.1/24"),
        "{}",
        text(&o)
    );
    assert_eq!(
        nft_ruleset(&d).matches("silobr1").count(),
        0,
        "no NAT asked for silobr1"
    );
    d.api_ok(
        "PATCH",
        "/1.0/networks/silobr1",
        Some(json!({"config": {"ipv4.address": "10.78.0.1/24", "ipv4.nat": "true"}})),
    );
    let o = d.netns_cmd(&["ip", "-br", "addr", "show", "silobr1"]);
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        s.contains("10.78.0.1/24") && !s.contains("10.77.0.1"),
        "{s}"
    );
    assert!(
        nft_ruleset(&d).contains("ip saddr 10.78.0.0/24"),
        "{}",
        nft_ruleset(&d)
    );
    // Unmanaged host interfaces show in the list, and can't be changed.
    let all = d.api_ok("GET", "/1.0/networks?recursion=1", None);
    let names: Vec<&str> = all
        .as_array()
        .expect("a")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert!(
        names.contains(&"lxdbr0") && names.contains(&"silobr1") && names.contains(&"silobr0"),
        "{all}"
    );
    assert!(all
        .as_array()
        .expect("a")
        .iter()
        .any(|n| n["name"] == "lxdbr0" && n["managed"] == false));
    let (c, _) = d.api(
        "PATCH",
        "/1.0/networks/lxdbr0",
        Some(json!({"config": {"ipv4.nat": "true"}})),
    );
    assert_eq!(c, 400);
    // The CLI: list, show, set, get, delete.
    let o = d.silo(&["network", "list"]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("silobr1"),
        "{}",
        text(&o)
    );
    let o = d.silo(&["network", "set", "silobr1", "ipv4.dhcp.expiry", "2h"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = d.silo(&["network", "get", "silobr1", "ipv4.dhcp.expiry"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2h");
    let dns = d.netns_cmd(&[
        "sh",
        "-c",
        "ps -eo args | grep '[d]nsmasq.*interface=silobr1'",
    ]);
    assert!(
        String::from_utf8_lossy(&dns.stdout).contains("7200s"),
        "dnsmasq restarted with the new expiry: {}",
        text(&dns)
    );
    // DHCP ranges: dnsmasq hands out only those, and an instance's lease is inside one.
    let o = d.silo(&[
        "network",
        "set",
        "silobr1",
        "ipv4.dhcp.ranges",
        "10.78.0.100-10.78.0.109,10.78.0.200-10.78.0.200",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let dns = d.netns_cmd(&[
        "sh",
        "-c",
        "ps -eo args | grep '[d]nsmasq.*interface=silobr1'",
    ]);
    let args = String::from_utf8_lossy(&dns.stdout).into_owned();
    assert!(
        args.contains("--dhcp-range=10.78.0.100,10.78.0.109,7200s")
            && args.contains("--dhcp-range=10.78.0.200,10.78.0.200,7200s")
            && !args.contains("10.78.0.2,"),
        "{args}"
    );
    busybox(&d);
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": "r1", "source": {"type": "image", "alias": "busybox"},
            "devices": {"eth0": {"type": "nic", "network": "silobr1", "name": "eth0"}}
        })),
    );
    d.set_state("r1", "start", false);
    let got = wait_ipv4(&d, "r1");
    let host: u8 = got
        .strip_prefix("10.78.0.")
        .and_then(|h| h.parse().ok())
        .unwrap_or(0);
    assert!(
        (100..=109).contains(&host) || host == 200,
        "r1's lease {got} is inside ipv4.dhcp.ranges"
    );
    d.set_state("r1", "stop", true);
    d.api_ok("DELETE", "/1.0/instances/r1", None);
    // Ranges that cannot work are refused, naming why, and the network keeps its ranges.
    for (bad, why) in [
        (
            "10.79.0.10-10.79.0.20",
            "not within the subnet 10.78.0.0/24",
        ),
        (
            "10.78.0.1-10.78.0.20",
            "includes the gateway address 10.78.0.1",
        ),
        ("10.78.0.20-10.78.0.10", "ends before it starts"),
        ("10.78.0.20", "is not a FIRST-LAST range"),
    ] {
        let o = d.silo(&["network", "set", "silobr1", "ipv4.dhcp.ranges", bad]);
        assert!(
            !o.status.success() && text(&o).contains(why),
            "{bad}: {}",
            text(&o)
        );
    }
    let o = d.silo(&["network", "get", "silobr1", "ipv4.dhcp.ranges"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "10.78.0.100-10.78.0.109,10.78.0.200-10.78.0.200"
    );
    let o = d.silo(&["network", "delete", "silobr1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!has_link(&d, "silobr1"), "{}", links(&d));
    assert!(!nft_ruleset(&d).contains("silobr1"));
    let dns = d.netns_cmd(&[
        "sh",
        "-c",
        "ps -eo args | grep -c '[d]nsmasq.*interface=silobr1' || true",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&dns.stdout).trim(),
        "0",
        "silobr1's dnsmasq is gone"
    );
}

fn http_get(port: u16) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn proxy_device_forwards_host_connections_to_a_service_inside() {
    // Unix sockets on the host only beneath a host_paths entry of the policy; the host
    // service the bind=instance device below reaches is listed in proxy_host_connect.
    let sockdir = std::path::PathBuf::from(format!("/tmp/silo-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&sockdir).expect("socket dir");
    let d = TestDaemon::start_with_policy(
        "net-proxy",
        &format!(
            "host_paths = [\"{}\"]\nproxy_host_connect = [\"tcp:127.0.0.1:8080\"]\n",
            sockdir.display()
        ),
    );
    busybox(&d);
    d.launch("busybox", "web");
    let (code, _, e) = d.exec(
        "web",
        &["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && httpd -p 127.0.0.1:8080 -h /www"],
    );
    assert_eq!(code, 0, "{e}");
    // Privileged ports need the policy; the refusal names what would allow it.
    let (c, v) = d.api(
        "PATCH",
        "/1.0/instances/web",
        Some(json!({"devices": {"low": {"type": "proxy", "listen": "tcp:127.0.0.1:80", "connect": "tcp:127.0.0.1:8080"}}})),
    );
    let v = if c == 202 { d.wait_op(&v) } else { v };
    assert!(v.to_string().contains("allow_privileged_ports"), "{v}");
    let o = d.silo(&[
        "config",
        "device",
        "add",
        "web",
        "http",
        "proxy",
        "listen=tcp:127.0.0.1:18080",
        "connect=tcp:127.0.0.1:8080",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r = in_netns(&d.netns, || {
        let mut errs = Vec::new();
        for _ in 0..1000 {
            match http_get(18080) {
                Ok(b) if b.contains("hello-from-web") => {}
                other => errs.push(format!("{other:?}")),
            }
        }
        let hs: Vec<_> = (0..100)
            .map(|_| std::thread::spawn(|| http_get(18080)))
            .collect();
        for h in hs {
            match h.join() {
                Ok(Ok(b)) if b.contains("hello-from-web") => {}
                other => errs.push(format!("{other:?}")),
            }
        }
        errs
    });
    assert!(r.is_empty(), "{} failures, first: {:?}", r.len(), r.first());
    // The forwarder runs as the instance's root id on the host, with no capabilities (bounding
    // set too) and no_new_privs; dnsmasq as nobody.
    let (_, web) = d.api("GET", "/1.0/instances/web", None);
    let base = web["metadata"]["config"]["volatile.idmap.base"]
        .as_str()
        .expect("base")
        .to_string();
    let status =
        |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |st: &str, k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    // Other tests' daemons may give their instances the same base id: the forwarder is told
    // apart by the network namespace it forwards into, web's.
    let state = d.api_ok("GET", "/1.0/instances/web/state", None);
    let init = state["pid"].as_i64().expect("web's pid");
    let netns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let web_ns = netns(&init.to_string());
    assert!(web_ns.is_some(), "web's network namespace");
    let forwarders: Vec<String> = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .filter(|p| {
            let st = status(p);
            field(&st, "Name:") == "silo-net" && field(&st, "Uid:") == base && netns(p) == web_ns
        })
        .collect();
    assert_eq!(
        forwarders.len(),
        1,
        "one forwarder for the one proxy device"
    );
    let st = status(&forwarders[0]);
    for (k, v) in [
        ("CapEff:", "0000000000000000"),
        ("CapPrm:", "0000000000000000"),
        ("CapBnd:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
        ("Gid:", base.as_str()),
    ] {
        assert_eq!(field(&st, k), v, "forwarder {k}\n{st}");
    }

    // Survives a restart of the instance.
    d.set_state("web", "restart", true);
    let (code, _, e) = d.exec("web", &["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && httpd -p 127.0.0.1:8080 -h /www"]);
    assert_eq!(code, 0, "{e}");
    let ok = wait_until(Duration::from_secs(10), || {
        in_netns(&d.netns, || http_get(18080)).is_ok_and(|b| b.contains("hello-from-web"))
    });
    assert!(ok, "the proxy works again after a restart");
    // A unix socket on the host (tcp inside), where the policy allows it, and not elsewhere.
    let sock = sockdir.join("web.sock");
    let o = d.silo(&[
        "config",
        "device",
        "add",
        "web",
        "usock",
        "proxy",
        &format!("listen=unix:{}", sock.display()),
        "connect=tcp:127.0.0.1:8080",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let mut u = std::os::unix::net::UnixStream::connect(&sock).expect("connect the unix proxy");
    u.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .expect("write");
    let mut body = String::new();
    u.read_to_string(&mut body).expect("read");
    assert!(body.contains("hello-from-web"), "{body}");
    let o = d.silo(&[
        "config",
        "device",
        "add",
        "web",
        "bad",
        "proxy",
        "listen=unix:/root/silo-test.sock",
        "connect=tcp:127.0.0.1:8080",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("host_paths"),
        "{}",
        text(&o)
    );
    assert!(!std::path::Path::new("/root/silo-test.sock").exists());
    // A unix socket inside the instance (bind=instance) is made as the instance's root.
    let o = d.silo(&[
        "config",
        "device",
        "add",
        "web",
        "insock",
        "proxy",
        "listen=unix:/run/web.sock",
        "connect=tcp:127.0.0.1:8080",
        "bind=instance",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let (code, o, e) = d.exec("web", &["stat", "-c", "%F %u", "/run/web.sock"]);
    assert_eq!((code, o.trim()), (0, "socket 0"), "{e}");
    let _ = std::fs::remove_dir_all(&sockdir);

    // Gone with the device.
    let o = d.silo(&["config", "device", "remove", "web", "http"]);
    assert!(o.status.success(), "{}", text(&o));
    let gone = wait_until(Duration::from_secs(5), || {
        in_netns(&d.netns, || http_get(18080)).is_err()
    });
    assert!(gone, "nothing listens once the device is removed");
}

/// A host interface for macvlan/physical nics to use. This kernel has no dummy driver, so it
/// is one end of a veth pair (the other end, `<name>p`, stays on the host).
fn host_iface(d: &TestDaemon, name: &str) {
    let peer = format!("{name}p");
    let o = d.netns_cmd(&[
        "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for n in [name, peer.as_str()] {
        assert!(d
            .netns_cmd(&["ip", "link", "set", n, "up"])
            .status
            .success());
    }
}

#[test]
fn macvlan_and_physical_nics_follow_the_policy() {
    let d =
        TestDaemon::start_with_policy("net-phys", "host_interfaces = [\"dummy0\", \"dummy1\"]\n");
    busybox(&d);
    host_iface(&d, "dummy0");
    host_iface(&d, "dummy1");
    host_iface(&d, "dummy9");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": "m1", "source": {"type": "image", "alias": "busybox"},
            "devices": {
                "eth1": {"type": "nic", "nictype": "macvlan", "parent": "dummy0"},
                "eth2": {"type": "nic", "nictype": "physical", "parent": "dummy1"},
            }
        })),
    );
    d.set_state("m1", "start", false);
    let (code, o, e) = d.exec("m1", &["ip", "-o", "link"]);
    assert_eq!(code, 0, "{e}");
    assert!(o.contains("eth1@") && o.contains("eth2"), "{o}");
    assert!(
        !has_link(&d, "dummy1"),
        "the physical nic is inside: {}",
        links(&d)
    );
    d.set_state("m1", "stop", false);
    assert!(
        wait_until(Duration::from_secs(5), || has_link(&d, "dummy1")),
        "dummy1 came back: {}",
        links(&d)
    );
    // An interface the policy does not name is refused, and the instance does not stay half up.
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": "m2", "source": {"type": "image", "alias": "busybox"},
            "devices": {"eth1": {"type": "nic", "nictype": "physical", "parent": "dummy9"}}
        })),
    );
    let v = d.set_state("m2", "start", false);
    assert!(
        v.to_string().contains("dummy9") && v.to_string().contains("host_interfaces"),
        "{v}"
    );
    assert_eq!(d.status("m2"), "Stopped");
    assert!(has_link(&d, "dummy9"));
    // Hot-plug: a nic added to a running instance appears; removed, it goes.
    d.set_state("m1", "start", false);
    let o = d.silo(&[
        "config",
        "device",
        "add",
        "m1",
        "eth3",
        "nic",
        "network=silobr0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let (_, o, _) = d.exec("m1", &["ip", "-o", "link"]);
    assert!(o.contains("eth3"), "{o}");
    let o = d.silo(&["config", "device", "remove", "m1", "eth3"]);
    assert!(o.status.success(), "{}", text(&o));
    let (_, o, _) = d.exec("m1", &["ip", "-o", "link"]);
    assert!(!o.contains("eth3"), "{o}");
    d.set_state("m1", "stop", true);
    assert!(
        wait_until(Duration::from_secs(5), || has_link(&d, "dummy1")),
        "{}",
        links(&d)
    );
}

#[test]
fn the_stock_lxc_client_drives_networks_and_proxies() {
    let d = TestDaemon::start("net-lxc");
    busybox(&d);
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let list = ok(d.lxc(&["network", "list", "--format", "csv"]));
    assert!(
        list.lines().any(|l| l.starts_with("silobr0,bridge,YES,")),
        "{list}"
    );
    ok(d.lxc(&[
        "network",
        "create",
        "silolxc1",
        "ipv4.address=10.91.0.1/24",
        "ipv6.address=none",
    ]));
    let show = ok(d.lxc(&["network", "show", "silolxc1"]));
    assert!(show.contains("ipv4.address: 10.91.0.1/24"), "{show}");
    assert!(show.contains("managed: true"), "{show}");
    assert!(has_link(&d, "silolxc1"));
    ok(d.lxc(&["network", "delete", "silolxc1"]));
    assert!(!has_link(&d, "silolxc1"));

    ok(d.lxc(&["launch", "busybox", "c1"]));
    let (code, _, e) = d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo via-lxc > /www/index.html && httpd -p 127.0.0.1:8081 -h /www",
        ],
    );
    assert_eq!(code, 0, "{e}");
    ok(d.lxc(&[
        "config",
        "device",
        "add",
        "c1",
        "web",
        "proxy",
        "listen=tcp:127.0.0.1:18081",
        "connect=tcp:127.0.0.1:8081",
    ]));
    let body = in_netns(&d.netns, || http_get(18081));
    assert!(
        body.as_deref().is_ok_and(|b| b.contains("via-lxc")),
        "{body:?}"
    );
    let ip = wait_ipv4(&d, "c1");
    // IPv4 and IPv6 columns as lxc shows them (SLAAC from dnsmasq's router advertisements).
    let mut row = String::new();
    let both = wait_until(Duration::from_secs(20), || {
        row = ok(d.lxc(&["list", "c1", "-c", "n46", "--format", "csv"]));
        row.contains(&format!("{ip} (eth0)")) && row.contains("fd42:")
    });
    assert!(both, "{row}");
}
