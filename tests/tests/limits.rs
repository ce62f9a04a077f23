//! The `limits.*` keys beyond memory, CPU set and processes, set on a running instance and read
//! back from the host's cgroup files, and `raw.idmap` under the root policy.

use std::path::{Path, PathBuf};

use serde_json::json;
use silo_tests::{busybox_image, TestDaemon};

/// The file `which` of the instance's group: in the v1 hierarchy of `controller` when the host
/// has one, else in cgroup2 (found from init's /proc/<pid>/cgroup and the host's mounts).
fn cg_path(d: &TestDaemon, name: &str, controller: &str, which: &str) -> PathBuf {
    let state = d.api_ok("GET", &format!("/1.0/instances/{name}/state"), None);
    let pid = state["pid"].as_u64().expect("running instance has a pid");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("init's cgroups");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut lines: Vec<(bool, &str)> = Vec::new();
    for line in cg.lines() {
        let f: Vec<&str> = line.splitn(3, ':').collect();
        if f.len() != 3 {
            continue;
        }
        if f[1].split(',').any(|c| c == controller) {
            lines.insert(0, (false, f[2]));
        } else if f[0] == "0" && f[1].is_empty() {
            lines.push((true, f[2]));
        }
    }
    for (v2, rel) in lines {
        for m in mounts.lines() {
            let Some((left, right)) = m.split_once(" - ") else {
                continue;
            };
            let mp = left.split(' ').nth(4).unwrap_or_default();
            let opts = right.split(' ').nth(2).unwrap_or_default();
            let fits = if v2 {
                right.starts_with("cgroup2 ")
            } else {
                right.starts_with("cgroup ") && opts.split(',').any(|o| o == controller)
            };
            let file = Path::new(mp).join(rel.trim_start_matches('/')).join(which);
            if fits && file.exists() {
                return file;
            }
        }
    }
    panic!("no {which} for {name}'s init ({pid}) in the {controller} controller:\n{cg}");
}

/// Whether the instance's `controller` is in a v1 hierarchy (else cgroup2).
fn is_v1(d: &TestDaemon, name: &str, controller: &str) -> bool {
    let state = d.api_ok("GET", &format!("/1.0/instances/{name}/state"), None);
    let pid = state["pid"].as_u64().expect("running instance has a pid");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("init's cgroups");
    cg.lines().any(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|c| c == controller))
    })
}

fn cg_read(d: &TestDaemon, name: &str, controller: &str, which: &str) -> String {
    let p = cg_path(d, name, controller, which);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn patch(d: &TestDaemon, name: &str, config: serde_json::Value) -> (u16, serde_json::Value) {
    d.api(
        "PATCH",
        &format!("/1.0/instances/{name}"),
        Some(json!({ "config": config })),
    )
}

fn patch_ok(d: &TestDaemon, name: &str, config: serde_json::Value) {
    let (c, v) = patch(d, name, config.clone());
    assert_eq!(c, 200, "PATCH {config}: {v}");
}

/// Removes keys as `lxc config unset` does: the record PUT back without them.
fn unset(d: &TestDaemon, name: &str, keys: &[&str]) {
    for k in keys {
        let o = d.lxc(&["config", "unset", name, k]);
        assert!(o.status.success(), "unset {k}: {}", silo_tests::show(&o));
    }
}

/// A refusal that names `key` (and `also`), leaving the record without `key`'s new value: a
/// bad value is a 400, a piece the host lacks a 500 (as `limits.memory` without a memory
/// controller).
fn refused(d: &TestDaemon, name: &str, key: &str, value: &str, also: &str) {
    let (c, v) = patch(d, name, json!({ key: value }));
    let text = v["error"].as_str().unwrap_or_default().to_string();
    assert!(
        c >= 400 && text.contains(key) && text.contains(also),
        "{key}={value}: {c} {v}"
    );
    let (_, rec) = d.api("GET", &format!("/1.0/instances/{name}"), None);
    assert_ne!(
        rec["metadata"]["config"][key].as_str(),
        Some(value),
        "the refused value stayed in the record"
    );
}

fn launched(name: &str) -> TestDaemon {
    let d = TestDaemon::start(name);
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    d
}

/// The kernel's "no limit" for a v1 memory counter (i64::MAX rounded down to a page).
const V1_UNLIMITED: &str = "9223372036854771712";

#[test]
fn cpu_allowance_and_priority_reach_the_cgroup_live() {
    let d = launched("lim-cpu");
    let v2 = !is_v1(&d, "c1", "cpu");
    let (weight, max) = if v2 {
        ("cpu.weight", 100)
    } else {
        ("cpu.shares", 1024)
    };
    assert_eq!(cg_read(&d, "c1", "cpu", weight), max.to_string());
    // A percentage is a share of the maximum weight.
    patch_ok(&d, "c1", json!({"limits.cpu.allowance": "50%"}));
    assert_eq!(cg_read(&d, "c1", "cpu", weight), (max / 2).to_string());
    // Priority takes 10-priority off, as LXD's ParseCPU does.
    patch_ok(&d, "c1", json!({"limits.cpu.priority": "5"}));
    assert_eq!(cg_read(&d, "c1", "cpu", weight), (max / 2 - 5).to_string());
    // A time allowance is a CFS quota, with the full weight (less the priority).
    patch_ok(&d, "c1", json!({"limits.cpu.allowance": "25ms/100ms"}));
    assert_eq!(cg_read(&d, "c1", "cpu", weight), (max - 5).to_string());
    if v2 {
        assert_eq!(cg_read(&d, "c1", "cpu", "cpu.max"), "25000 100000");
    } else {
        assert_eq!(cg_read(&d, "c1", "cpu", "cpu.cfs_quota_us"), "25000");
        assert_eq!(cg_read(&d, "c1", "cpu", "cpu.cfs_period_us"), "100000");
    }
    // The quota holds: a busy loop gets about a quarter of one CPU.
    let (code, _, e) = d.exec(
        "c1",
        &["sh", "-c", "timeout 2 sh -c 'while :; do :; done'; true"],
    );
    assert_eq!(code, 0, "{e}");
    let stat = cg_read(&d, "c1", "cpu", "cpu.stat");
    let throttled = stat
        .lines()
        .find_map(|l| {
            l.strip_prefix("nr_throttled ")
                .and_then(|n| n.parse::<u64>().ok())
        })
        .expect("nr_throttled in cpu.stat");
    assert!(
        throttled > 0,
        "a busy loop under a 25% quota was never throttled: {stat}"
    );
    // Bad values are refused by key and change nothing.
    refused(
        &d,
        "c1",
        "limits.cpu.allowance",
        "150%",
        "between 1% and 100%",
    );
    refused(&d, "c1", "limits.cpu.allowance", "1ms/5000ms", "period");
    refused(&d, "c1", "limits.cpu.priority", "11", "between 0 and 10");
    assert_eq!(cg_read(&d, "c1", "cpu", weight), (max - 5).to_string());
    // Unset, the kernel's defaults come back.
    unset(&d, "c1", &["limits.cpu.allowance", "limits.cpu.priority"]);
    let (_, rec) = d.api("GET", "/1.0/instances/c1", None);
    assert!(
        rec["metadata"]["config"]
            .get("limits.cpu.allowance")
            .is_none(),
        "{rec}"
    );
    assert_eq!(cg_read(&d, "c1", "cpu", weight), max.to_string());
    if v2 {
        assert_eq!(cg_read(&d, "c1", "cpu", "cpu.max"), "max 100000");
    } else {
        assert_eq!(cg_read(&d, "c1", "cpu", "cpu.cfs_quota_us"), "-1");
    }
    // Applied at start too.
    patch_ok(&d, "c1", json!({"limits.cpu.allowance": "10%"}));
    d.set_state("c1", "restart", true);
    assert_eq!(cg_read(&d, "c1", "cpu", weight), (max / 10).to_string());
}

#[test]
fn memory_enforce_swap_and_swap_priority_reach_the_cgroup_live() {
    let d = launched("lim-mem");
    assert!(
        is_v1(&d, "c1", "memory"),
        "this test reads cgroup v1's memory files; this host gives memory to cgroup2"
    );
    let m: u64 = 128 << 20;
    let page = |b: u64| (b / 4096 * 4096).to_string();
    let mem = |f: &str| cg_read(&d, "c1", "memory", f);
    // A hard limit, with LXD's soft limit of 90% beside it.
    patch_ok(&d, "c1", json!({"limits.memory": "128MiB"}));
    assert_eq!(mem("memory.limit_in_bytes"), m.to_string());
    assert_eq!(mem("memory.soft_limit_in_bytes"), page(m * 9 / 10));
    assert_eq!(mem("memory.swappiness"), "60");
    // No swap: memory+swap capped at the memory limit, swappiness 0.
    patch_ok(&d, "c1", json!({"limits.memory.swap": "false"}));
    assert_eq!(mem("memory.memsw.limit_in_bytes"), m.to_string());
    assert_eq!(mem("memory.swappiness"), "0");
    // Raising the memory limit moves the memsw cap with it (never below it).
    patch_ok(&d, "c1", json!({"limits.memory": "256MiB"}));
    assert_eq!(mem("memory.limit_in_bytes"), (2 * m).to_string());
    assert_eq!(mem("memory.memsw.limit_in_bytes"), (2 * m).to_string());
    // Swap allowed again, at a priority: swappiness 70 - priority.
    unset(&d, "c1", &["limits.memory.swap"]);
    patch_ok(
        &d,
        "c1",
        json!({"limits.memory.swap.priority": "3", "limits.memory": "128MiB"}),
    );
    assert_eq!(mem("memory.memsw.limit_in_bytes"), V1_UNLIMITED);
    assert_eq!(mem("memory.swappiness"), "67");
    // Soft: no hard limit, the soft limit at limits.memory.
    patch_ok(&d, "c1", json!({"limits.memory.enforce": "soft"}));
    assert_eq!(mem("memory.limit_in_bytes"), V1_UNLIMITED);
    assert_eq!(mem("memory.soft_limit_in_bytes"), m.to_string());
    refused(
        &d,
        "c1",
        "limits.memory.enforce",
        "strict",
        "neither hard nor soft",
    );
    refused(&d, "c1", "limits.memory.swap", "sometimes", "not a boolean");
    refused(
        &d,
        "c1",
        "limits.memory.swap.priority",
        "12",
        "between 0 and 10",
    );
    assert_eq!(mem("memory.soft_limit_in_bytes"), m.to_string());
    // Applied at start, and unset lifts everything.
    d.set_state("c1", "restart", true);
    assert_eq!(mem("memory.limit_in_bytes"), V1_UNLIMITED);
    assert_eq!(mem("memory.soft_limit_in_bytes"), m.to_string());
    assert_eq!(mem("memory.swappiness"), "67");
    unset(
        &d,
        "c1",
        &[
            "limits.memory",
            "limits.memory.enforce",
            "limits.memory.swap.priority",
        ],
    );
    assert_eq!(mem("memory.soft_limit_in_bytes"), V1_UNLIMITED);
    assert_eq!(mem("memory.swappiness"), "60");
}

#[test]
fn hugepage_limits_reach_the_cgroup_live_where_the_host_has_the_size() {
    assert!(
        Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists(),
        "this test needs a host with 2MB huge pages"
    );
    let d = launched("lim-huge");
    let (f2m, f1g, unlimited) = if !is_v1(&d, "c1", "hugetlb") {
        ("hugetlb.2MB.max", "hugetlb.1GB.max", "max")
    } else {
        (
            "hugetlb.2MB.limit_in_bytes",
            "hugetlb.1GB.limit_in_bytes",
            V1_UNLIMITED,
        )
    };
    assert_eq!(cg_read(&d, "c1", "hugetlb", f2m), unlimited);
    patch_ok(&d, "c1", json!({"limits.hugepages.2MB": "64MiB"}));
    assert_eq!(cg_read(&d, "c1", "hugetlb", f2m), (64u64 << 20).to_string());
    let has_1g = Path::new("/sys/kernel/mm/hugepages/hugepages-1048576kB").exists();
    if has_1g {
        patch_ok(&d, "c1", json!({"limits.hugepages.1GB": "0"}));
        assert_eq!(cg_read(&d, "c1", "hugetlb", f1g), "0");
    }
    // A size this host does not have is refused by key, naming the size.
    for (size, dir) in [("64KB", "hugepages-64kB"), ("1MB", "hugepages-1024kB")] {
        if !Path::new("/sys/kernel/mm/hugepages").join(dir).exists() {
            refused(
                &d,
                "c1",
                &format!("limits.hugepages.{size}"),
                "2MiB",
                &format!("no {size} huge pages"),
            );
        }
    }
    refused(&d, "c1", "limits.hugepages.2MB", "lots", "lots");
    assert_eq!(cg_read(&d, "c1", "hugetlb", f2m), (64u64 << 20).to_string());
    d.set_state("c1", "restart", true);
    assert_eq!(cg_read(&d, "c1", "hugetlb", f2m), (64u64 << 20).to_string());
    unset(&d, "c1", &["limits.hugepages.2MB"]);
    assert_eq!(cg_read(&d, "c1", "hugetlb", f2m), unlimited);
}

/// The weight file the host's I/O controller offers at its root, if any.
fn host_io_weight() -> Option<&'static str> {
    [
        "/sys/fs/cgroup/blkio/blkio.weight",
        "/sys/fs/cgroup/blkio/blkio.bfq.weight",
        "/sys/fs/cgroup/unified/io.weight",
        "/sys/fs/cgroup/io.weight",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

#[test]
fn disk_priority_is_a_weight_or_refused_naming_what_the_host_lacks() {
    let d = launched("lim-disk");
    match host_io_weight() {
        Some(f) => {
            let name = Path::new(f)
                .file_name()
                .and_then(|n| n.to_str())
                .expect("name");
            let ctl = if name.starts_with("blkio") {
                "blkio"
            } else {
                "io"
            };
            patch_ok(&d, "c1", json!({"limits.disk.priority": "3"}));
            let w = cg_read(&d, "c1", ctl, name);
            assert!(w.contains("300"), "{name}: {w}");
            patch_ok(&d, "c1", json!({"limits.disk.priority": "0"}));
            assert!(cg_read(&d, "c1", ctl, name).contains("10"));
        }
        None => {
            // This host (no BFQ, blkio bound to v1 without a weight) cannot weigh I/O: the key
            // is refused by name at once, and a start that asks for it fails saying why.
            refused(&d, "c1", "limits.disk.priority", "3", "offers no weight");
            d.set_state("c1", "stop", true);
            patch_ok(&d, "c1", json!({"limits.disk.priority": "3"}));
            let (c, v) = d.api(
                "PUT",
                "/1.0/instances/c1/state",
                Some(json!({"action": "start"})),
            );
            let op = if c == 202 { d.wait_op(&v) } else { v };
            let text = op.to_string();
            assert!(
                text.contains("limits.disk.priority") && text.contains("weight"),
                "{text}"
            );
            assert_eq!(d.status("c1"), "Stopped");
        }
    }
    refused(&d, "c1", "limits.disk.priority", "high", "between 0 and 10");
}
