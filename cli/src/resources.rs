//! `silo info --resources`: the server's hardware, laid out as `lxc info --resources` prints it.

use std::fmt::Write as _;

use silo_api::units::format_iec;
use silo_api::{
    Resources, ResourcesCPUSocket, ResourcesGPUCard, ResourcesNetworkCard, ResourcesStorageDisk,
};

/// LXD's `GetByteSizeStringIEC(n, 0)` for caches ("48KiB").
fn iec0(n: u64) -> String {
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    for unit in ["KiB", "MiB", "GiB", "TiB", "PiB"] {
        v /= 1024.0;
        if v < 1024.0 {
            return format!("{v:.0}{unit}");
        }
    }
    format!("{:.0}EiB", v / 1024.0)
}

fn cpu(o: &mut String, c: &ResourcesCPUSocket, p: &str) {
    if !c.vendor.is_empty() {
        let _ = writeln!(o, "{p}Vendor: {}", c.vendor);
    }
    if !c.name.is_empty() {
        let _ = writeln!(o, "{p}Name: {}", c.name);
    }
    if !c.cache.is_empty() {
        let _ = writeln!(o, "{p}Caches:");
        for k in &c.cache {
            let _ = writeln!(
                o,
                "{p}  - Level {} (type: {}): {}",
                k.level,
                k.kind,
                iec0(k.size)
            );
        }
    }
    let _ = writeln!(o, "{p}Cores:");
    for core in &c.cores {
        let _ = writeln!(o, "{p}  - Core {}", core.core);
        let _ = writeln!(o, "{p}    Frequency: {}Mhz", core.frequency);
        let _ = writeln!(o, "{p}    Threads:");
        for t in &core.threads {
            let _ = writeln!(
                o,
                "{p}      - {} (id: {}, online: {}, NUMA node: {})",
                t.thread, t.id, t.online, t.numa_node
            );
        }
    }
    if c.frequency > 0 {
        if c.frequency_turbo > 0 && c.frequency_minimum > 0 {
            let _ = writeln!(
                o,
                "{p}Frequency: {}Mhz (min: {}Mhz, max: {}Mhz)",
                c.frequency, c.frequency_minimum, c.frequency_turbo
            );
        } else {
            let _ = writeln!(o, "{p}Frequency: {}Mhz", c.frequency);
        }
    }
}

fn ids(o: &mut String, p: &str, what: &str, name: &str, id: &str) {
    if !name.is_empty() {
        let _ = writeln!(o, "{p}{what}: {name} ({id})");
    }
}

fn gpu(o: &mut String, g: &ResourcesGPUCard, p: &str) {
    let _ = writeln!(o, "{p}NUMA node: {}", g.numa_node);
    ids(o, p, "Vendor", &g.vendor, &g.vendor_id);
    ids(o, p, "Product", &g.product, &g.product_id);
    if !g.pci_address.is_empty() {
        let _ = writeln!(o, "{p}PCI address: {}", g.pci_address);
    }
    if !g.driver.is_empty() {
        let _ = writeln!(o, "{p}Driver: {} ({})", g.driver, g.driver_version);
    }
    if let Some(d) = &g.drm {
        let _ = writeln!(o, "{p}DRM:");
        let _ = writeln!(o, "{p}  ID: {}", d.id);
        let _ = writeln!(o, "{p}  Card: {} ({})", d.card_name, d.card_device);
        if !d.control_name.is_empty() {
            let _ = writeln!(o, "{p}  Control: {} ({})", d.control_name, d.control_device);
        }
        if !d.render_name.is_empty() {
            let _ = writeln!(o, "{p}  Render: {} ({})", d.render_name, d.render_device);
        }
    }
}

fn nic(o: &mut String, n: &ResourcesNetworkCard, p: &str) {
    let _ = writeln!(o, "{p}NUMA node: {}", n.numa_node);
    ids(o, p, "Vendor", &n.vendor, &n.vendor_id);
    ids(o, p, "Product", &n.product, &n.product_id);
    if !n.pci_address.is_empty() {
        let _ = writeln!(o, "{p}PCI address: {}", n.pci_address);
    }
    if !n.driver.is_empty() {
        let _ = writeln!(o, "{p}Driver: {} ({})", n.driver, n.driver_version);
    }
    if !n.ports.is_empty() {
        let _ = writeln!(o, "{p}Ports:");
        for port in &n.ports {
            let _ = writeln!(o, "{p}  - Port {} ({})", port.port, port.protocol);
            let _ = writeln!(o, "{p}    ID: {}", port.id);
            if !port.address.is_empty() {
                let _ = writeln!(o, "{p}    Address: {}", port.address);
            }
            let _ = writeln!(o, "{p}    Auto negotiation: {}", port.auto_negotiation);
            let _ = writeln!(o, "{p}    Link detected: {}", port.link_detected);
            if port.link_speed > 0 {
                let _ = writeln!(
                    o,
                    "{p}    Link speed: {}Mbit/s ({} duplex)",
                    port.link_speed, port.link_duplex
                );
            }
        }
    }
}

fn disk(o: &mut String, d: &ResourcesStorageDisk, p: &str) {
    let _ = writeln!(o, "{p}NUMA node: {}", d.numa_node);
    let _ = writeln!(o, "{p}ID: {}", d.id);
    let _ = writeln!(o, "{p}Device: {}", d.device);
    if !d.model.is_empty() {
        let _ = writeln!(o, "{p}Model: {}", d.model);
    }
    if !d.kind.is_empty() {
        let _ = writeln!(o, "{p}Type: {}", d.kind);
    }
    let _ = writeln!(o, "{p}Size: {}", format_iec(d.size));
    if !d.wwn.is_empty() {
        let _ = writeln!(o, "{p}WWN: {}", d.wwn);
    }
    let _ = writeln!(o, "{p}Read-Only: {}", d.read_only);
    let _ = writeln!(o, "{p}Removable: {}", d.removable);
    if !d.partitions.is_empty() {
        let _ = writeln!(o, "{p}Partitions:");
        for part in &d.partitions {
            let _ = writeln!(o, "{p}  - Partition {}", part.partition);
            let _ = writeln!(o, "{p}    ID: {}", part.id);
            let _ = writeln!(o, "{p}    Device: {}", part.device);
            let _ = writeln!(o, "{p}    Read-Only: {}", part.read_only);
            let _ = writeln!(o, "{p}    Size: {}", format_iec(part.size));
        }
    }
}

/// The text `lxc info --resources` prints for `r`.
pub fn render(r: &Resources) -> String {
    let mut o = String::new();
    match r.cpu.sockets.as_slice() {
        [one] => {
            let _ = writeln!(o, "CPU ({}):", r.cpu.architecture);
            cpu(&mut o, one, "  ");
        }
        many if many.len() > 1 => {
            let _ = writeln!(o, "CPUs ({}):", r.cpu.architecture);
            for s in many {
                let _ = writeln!(o, "  Socket {}:", s.socket);
                cpu(&mut o, s, "    ");
            }
        }
        _ => {}
    }
    let m = &r.memory;
    let _ = writeln!(o, "\nMemory:");
    if m.hugepages_total > 0 {
        let _ = writeln!(o, "  Hugepages:");
        let _ = writeln!(
            o,
            "    Free: {}",
            format_iec(m.hugepages_total.saturating_sub(m.hugepages_used))
        );
        let _ = writeln!(o, "    Used: {}", format_iec(m.hugepages_used));
        let _ = writeln!(o, "    Total: {}", format_iec(m.hugepages_total));
    }
    if m.nodes.len() > 1 {
        let _ = writeln!(o, "  NUMA nodes:");
        for n in &m.nodes {
            let _ = writeln!(o, "    Node {}:", n.numa_node);
            let _ = writeln!(
                o,
                "      Free: {}",
                format_iec(n.total.saturating_sub(n.used))
            );
            let _ = writeln!(o, "      Used: {}", format_iec(n.used));
            let _ = writeln!(o, "      Total: {}", format_iec(n.total));
        }
    }
    let _ = writeln!(o, "  Free: {}", format_iec(m.total.saturating_sub(m.used)));
    let _ = writeln!(o, "  Used: {}", format_iec(m.used));
    let _ = writeln!(o, "  Total: {}", format_iec(m.total));
    type Section<'a, T> = (&'a [T], &'a str, &'a str, fn(&mut String, &T, &str));
    fn section<T>(o: &mut String, (items, one, many, f): Section<'_, T>, card: &str) {
        match items {
            [single] => {
                let _ = writeln!(o, "\n{one}:");
                f(o, single, "  ");
            }
            _ if items.len() > 1 => {
                let _ = writeln!(o, "\n{many}:");
                for (i, x) in items.iter().enumerate() {
                    let _ = writeln!(o, "  {card} {i}:");
                    f(o, x, "    ");
                }
            }
            _ => {}
        }
    }
    section(&mut o, (&r.gpu.cards, "GPU", "GPUs", gpu), "Card");
    section(&mut o, (&r.network.cards, "NIC", "NICs", nic), "Card");
    section(&mut o, (&r.storage.disks, "Disk", "Disks", disk), "Disk");
    o
}
