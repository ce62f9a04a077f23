//! `GET /1.0/resources`: the host's CPUs and memory, read from /proc.

use serde_json::{json, Value};

use super::response::{sync, ApiResult};

fn meminfo(key: &str, text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The resources object.
pub fn read() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let vendor = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("vendor_id")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let threads: Vec<Value> = (0..std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1))
        .map(|i| json!({"id": i, "numa_node": 0, "thread": 0, "online": true, "isolated": false}))
        .collect();
    let total_threads = threads.len();
    let total = meminfo("MemTotal:", &mem);
    let avail = meminfo("MemAvailable:", &mem);
    json!({
        "cpu": {
            "architecture": std::env::consts::ARCH,
            "sockets": [{
                "name": model, "vendor": vendor, "socket": 0,
                "cores": [{"core": 0, "die": 0, "threads": threads, "frequency": 0}],
                "cache": [], "frequency": 0, "frequency_minimum": 0, "frequency_turbo": 0,
            }],
            "total": total_threads,
        },
        "memory": {"nodes": [], "hugepages_total": 0, "hugepages_used": 0, "hugepages_size": 0, "used": total.saturating_sub(avail), "total": total},
        "gpu": {"cards": [], "total": 0},
        "network": {"cards": [], "total": 0},
        "storage": {"disks": [], "total": 0},
        "usb": {"devices": [], "total": 0},
        "pci": {"devices": [], "total": 0},
        "system": {"uuid": "", "vendor": "", "product": "", "family": "", "version": "", "sku": "", "serial": "", "type": "unknown", "firmware": null, "chassis": null, "motherboard": null},
    })
}

/// `GET /1.0/resources`.
pub async fn get() -> ApiResult {
    Ok(sync(read()))
}
