//! `GET /1.0/resources`: the host's hardware as silod (unprivileged, landlocked) reads it,
//! checked against what lscpu, lsblk, /proc and /sys say, and rendered by the stock
//! `lxc info --resources`.

use std::process::Command;

use serde_json::Value;
use silo_tests::{show, TestDaemon};

/// lscpu's "Key: value" lines.
fn lscpu(key: &str) -> String {
    let o = Command::new("lscpu")
        .env("LC_ALL", "C")
        .output()
        .expect("lscpu");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("lscpu has no {key:?}"))
}

fn meminfo_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .expect("meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .expect("meminfo key")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

#[test]
fn resources_match_the_host_and_lxc_renders_them() {
    let d = TestDaemon::start("resources");
    let r = d.api_ok("GET", "/1.0/resources", None);

    // CPUs: lscpu's counts, model and vendor; every logical CPU once.
    let cpu = &r["cpu"];
    let logical: u64 = lscpu("CPU(s)").parse().expect("CPU(s)");
    assert_eq!(u(&cpu["total"]), logical, "{cpu:#}");
    let sockets = cpu["sockets"].as_array().expect("sockets");
    assert_eq!(sockets.len().to_string(), lscpu("Socket(s)"), "{cpu:#}");
    let s0 = &sockets[0];
    assert_eq!(s0["name"], lscpu("Model name").as_str(), "{s0:#}");
    assert_eq!(s0["vendor"], lscpu("Vendor ID").as_str(), "{s0:#}");
    assert_eq!(
        s0["cores"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
            .to_string(),
        lscpu("Core(s) per socket"),
        "{s0:#}"
    );
    let mut ids: Vec<i64> = sockets
        .iter()
        .flat_map(|s| s["cores"].as_array().cloned().unwrap_or_default())
        .flat_map(|c| c["threads"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["id"].as_i64())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..logical as i64).collect::<Vec<_>>());
    // Caches as /sys lists them for CPU 0.
    let l1d = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index0/size")
        .expect("cpu0 cache");
    let l1d: u64 = l1d.trim().trim_end_matches('K').parse::<u64>().expect("K") * 1024;
    let cache = s0["cache"].as_array().expect("cache");
    assert_eq!(u(&cache[0]["level"]), 1, "{cache:?}");
    assert_eq!(u(&cache[0]["size"]), l1d, "{cache:?}");

    // Memory: at least MemTotal (the memory blocks count what the kernel keeps too), and
    // used below total.
    let mem = &r["memory"];
    let mem_total = meminfo_kb("MemTotal") * 1024;
    assert!(
        u(&mem["total"]) >= mem_total && u(&mem["total"]) < mem_total * 11 / 10,
        "{mem:#} vs MemTotal {mem_total}"
    );
    assert!(
        u(&mem["used"]) > 0 && u(&mem["used"]) < u(&mem["total"]),
        "{mem:#}"
    );
    assert_eq!(
        mem["nodes"].as_array().map(Vec::len).unwrap_or(0),
        std::fs::read_dir("/sys/devices/system/node")
            .expect("nodes")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("node"))
            .count()
    );

    // Disks: lsblk's whole disks that have a device, with their sizes and partitions.
    let o = Command::new("lsblk")
        .args(["-b", "-d", "-n", "-o", "NAME,SIZE"])
        .output()
        .expect("lsblk");
    let disks = r["storage"]["disks"].as_array().expect("disks").clone();
    let mut checked = 0;
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let mut f = line.split_whitespace();
        let (Some(name), Some(size)) = (f.next(), f.next()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/sys/class/block/{name}/device")).exists() {
            assert!(
                disks.iter().all(|d| d["id"] != name),
                "{name} has no device"
            );
            continue;
        }
        let disk = disks
            .iter()
            .find(|d| d["id"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {disks:#?}"));
        assert_eq!(u(&disk["size"]).to_string(), size, "{disk:#}");
        let parts = std::fs::read_dir(format!("/sys/class/block/{name}"))
            .expect("disk dir")
            .flatten()
            .filter(|e| e.path().join("partition").exists())
            .count();
        assert_eq!(
            disk["partitions"].as_array().map(Vec::len),
            Some(parts),
            "{disk:#}"
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "no disk with a device on this host: {}",
        show(&o)
    );
    assert_eq!(u(&r["storage"]["total"]), disks.len() as u64);

    // Network cards: every interface backed by a device is a port of one card.
    let ports: Vec<String> = r["network"]["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect();
    let mut want: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("net")
        .flatten()
        .filter(|e| e.path().join("device").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    want.sort();
    let mut got = ports.clone();
    got.sort();
    assert_eq!(got, want);

    // PCI: every function, with its ids.
    let pci = r["pci"]["devices"].as_array().expect("pci");
    let sys_pci: Vec<_> = std::fs::read_dir("/sys/bus/pci/devices")
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert_eq!(pci.len(), sys_pci.len());
    for e in sys_pci {
        let addr = e.file_name().to_string_lossy().into_owned();
        let vendor = std::fs::read_to_string(e.path().join("vendor")).expect("vendor");
        let dev = pci
            .iter()
            .find(|p| p["pci_address"] == addr.as_str())
            .unwrap_or_else(|| panic!("{addr} missing"));
        assert_eq!(
            dev["vendor_id"],
            vendor.trim().trim_start_matches("0x"),
            "{dev}"
        );
    }

    // The machine's kind, as systemd-detect-virt says it (what LXD runs).
    let detect = |arg: &str| {
        Command::new("systemd-detect-virt")
            .args([arg, "--quiet"])
            .status()
            .expect("systemd-detect-virt")
            .success()
    };
    let kind = if detect("--container") {
        "container"
    } else if detect("--vm") {
        "virtual-machine"
    } else {
        "physical"
    };
    assert_eq!(r["system"]["type"], kind, "{:#}", r["system"]);

    // The stock client renders it all.
    let o = d.lxc(&["info", "--resources"]);
    assert!(o.status.success(), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    // silo's CLI prints what lxc prints.
    let o = d.silo(&["info", "--resources"]);
    assert!(o.status.success(), "{}", show(&o));
    // Memory in use moves between the two requests.
    let steady = |t: &str| -> String {
        t.lines()
            .filter(|l| !l.starts_with("  Free: ") && !l.starts_with("  Used: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(steady(&String::from_utf8_lossy(&o.stdout)), steady(&text));
    let first_disk = disks[0]["id"].as_str().unwrap_or_default().to_string();
    for want in [
        "CPU (",
        "Memory:",
        "Disk",
        &format!("ID: {first_disk}"),
        &lscpu("Model name"),
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

/// The same host as LXD 5.0.2 describes it: the same shape, and the same figures where they
/// do not move (silo leaves out what LXD takes from udev's database: disk ids and paths).
#[test]
fn resources_are_what_lxd_5_0_says_of_this_host() {
    let l = silo_tests::lxd::TestLxd::start("resources-lxd");
    let d = TestDaemon::start("resources-vs-lxd");
    let o = l.lxc(&["query", "/1.0/resources"]);
    assert!(o.status.success(), "{}", show(&o));
    let theirs: Value = serde_json::from_slice(&o.stdout).expect("LXD's JSON");
    let ours = d.api_ok("GET", "/1.0/resources", None);
    // Drops `keys` from every object under `v`.
    fn strip(mut v: Value, keys: &[&str]) -> Value {
        fn walk(v: &mut Value, keys: &[&str]) {
            match v {
                Value::Object(m) => {
                    for k in keys {
                        m.remove(*k);
                    }
                    m.values_mut().for_each(|x| walk(x, keys));
                }
                Value::Array(a) => a.iter_mut().for_each(|x| walk(x, keys)),
                _ => {}
            }
        }
        walk(&mut v, keys);
        v
    }
    // Frequencies move between two reads; `used` memory too.
    assert_eq!(
        strip(ours["cpu"].clone(), &["frequency"]),
        strip(theirs["cpu"].clone(), &["frequency"])
    );
    assert_eq!(
        strip(ours["memory"].clone(), &["used", "hugepages_used"]),
        strip(theirs["memory"].clone(), &["used", "hugepages_used"])
    );
    // LXD takes a disk's ids, paths, serial, WWN and model from udev's database, which silod
    // does not read; its block_size reads 0 where sysfs says 512 (silo gives sysfs's).
    let udev = [
        "device_id",
        "device_path",
        "serial",
        "wwn",
        "model",
        "block_size",
    ];
    assert_eq!(
        strip(ours["storage"].clone(), &udev),
        strip(theirs["storage"].clone(), &udev)
    );
    // LXD lists a card's ports through ethtool ioctls in its own network namespace, where a
    // host interface is not: the test LXD shows none; silo reads them from sysfs.
    assert_eq!(
        strip(ours["network"].clone(), &["ports"]),
        strip(theirs["network"].clone(), &["ports"])
    );
    for section in ["pci", "usb", "gpu", "system"] {
        assert_eq!(ours[section], theirs[section], "{section}");
    }
}
