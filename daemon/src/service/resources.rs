//! `GET /1.0/resources`: the host's CPUs, memory, GPUs, network cards, disks, PCI and USB
//! devices and DMI data, read from /sys and /proc as LXD 5.0's `lxd/resources` reads them.
//! silod reads them itself, unprivileged: its landlock allows /proc and the /sys subtrees
//! named in `confinement.rs` read-only. What only root may read (DMI's `product_uuid` and
//! serial numbers) and what LXD takes from udev's database or `systemd-detect-virt` (disk
//! ids and paths, containers) is left empty.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use silo_api::{
    Resources, ResourcesCPU, ResourcesCPUCache, ResourcesCPUCore, ResourcesCPUSocket,
    ResourcesCPUThread, ResourcesGPU, ResourcesGPUCard, ResourcesGPUCardDRM, ResourcesMemory,
    ResourcesMemoryNode, ResourcesNetwork, ResourcesNetworkCard, ResourcesNetworkCardPort,
    ResourcesPCI, ResourcesPCIDevice, ResourcesStorage, ResourcesStorageDisk,
    ResourcesStorageDiskPartition, ResourcesSystem, ResourcesSystemChassis,
    ResourcesSystemFirmware, ResourcesSystemMotherboard, ResourcesUSB, ResourcesUSBDevice,
    ResourcesUSBDeviceInterface,
};

/// Where the files are: `/` on a host, a fake tree in unit tests.
#[derive(Debug, Clone)]
pub struct Sys {
    root: PathBuf,
    /// The running kernel's release: a built-in driver's version, as LXD reports it.
    kernel: String,
}

impl Default for Sys {
    fn default() -> Self {
        Sys {
            root: PathBuf::from("/"),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

fn read_str(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_u64(p: &Path) -> Option<u64> {
    read_str(p)?.parse().ok()
}

/// A sysfs hex id ("0x1af4") as LXD shows it ("1af4").
fn read_hex_id(p: &Path) -> String {
    read_str(p)
        .map(|s| s.trim_start_matches("0x").to_string())
        .unwrap_or_default()
}

fn read_hex_u64(p: &Path) -> u64 {
    read_str(p)
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn entries(p: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A NUMA node as sysfs gives it (-1: none, shown as 0).
fn numa_of(dev: &Path) -> u64 {
    read_str(&dev.join("numa_node"))
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map(|n| n as u64)
        .unwrap_or(0)
}

/// The nearest ancestor of a resolved device path on `subsystem`.
fn ancestor_on(dev: &Path, subsystem: &str) -> Option<PathBuf> {
    let real = std::fs::canonicalize(dev).ok()?;
    real.ancestors()
        .find(|a| link_name(&a.join("subsystem")).as_deref() == Some(subsystem))
        .map(Path::to_path_buf)
}

fn pci_address(dev: &Path) -> String {
    ancestor_on(dev, "pci")
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

fn usb_address(dev: &Path) -> String {
    ancestor_on(dev, "usb")
        .into_iter()
        .flat_map(|p| p.ancestors().map(Path::to_path_buf).collect::<Vec<_>>())
        .find_map(|p| {
            Some(format!(
                "{}:{}",
                read_u64(&p.join("busnum"))?,
                read_u64(&p.join("devnum"))?
            ))
        })
        .unwrap_or_default()
}

fn driver_of(sys: &Sys, dev: &Path) -> (String, String) {
    let driver = link_name(&dev.join("driver")).unwrap_or_default();
    // A built-in driver has no version of its own: it is the kernel's (LXD's rule).
    let version = if driver.is_empty() {
        String::new()
    } else {
        read_str(&sys.path("sys/module").join(&driver).join("version"))
            .unwrap_or_else(|| sys.kernel.clone())
    };
    (driver, version)
}

/// A CPU list ("0-3,8") as numbers.
fn parse_cpu_list(s: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    out.extend(a..=b.min(a + 65536));
                }
            }
            None => out.extend(part.parse::<u64>().ok()),
        }
    }
    out
}

/// A cache size ("48K") in bytes.
fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1024),
        Some('M') => (&s[..s.len() - 1], 1024 * 1024),
        Some('G') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>().map(|n| n * mult).unwrap_or(0)
}

/// /proc/cpuinfo's blocks by processor number: (vendor_id, model name).
fn parse_cpuinfo(text: &str) -> BTreeMap<u64, (String, String)> {
    let mut out = BTreeMap::new();
    for block in text.split("\n\n") {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                let (key, v) = l.split_once(':')?;
                (key.trim() == k).then(|| v.trim().to_string())
            })
        };
        let Some(id) = field("processor").and_then(|p| p.parse().ok()) else {
            continue;
        };
        out.insert(
            id,
            (
                field("vendor_id").unwrap_or_default(),
                field("model name").unwrap_or_default(),
            ),
        );
    }
    out
}

/// meminfo lines ("MemTotal:  123 kB", or a node's "Node 0 MemTotal: 123 kB") by key, in
/// bytes for kB figures.
fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let l = match l.strip_prefix("Node ") {
            Some(rest) => rest.split_once(' ').map_or(rest, |(_, r)| r),
            None => l,
        };
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let mut f = v.split_whitespace();
        let Some(Ok(n)) = f.next().map(str::parse::<u64>) else {
            continue;
        };
        let n = if f.next() == Some("kB") { n * 1024 } else { n };
        out.insert(k.trim().to_string(), n);
    }
    out
}

impl Sys {
    /// A fake tree rooted at `root` (unit tests).
    pub fn at(root: &Path) -> Sys {
        Sys {
            root: root.to_path_buf(),
            kernel: "6.1.0-test".into(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Everything; `system_type` is what the start found (see
    /// [`crate::service::HostFacts::system_type`]), "" to guess from the CPU flags.
    pub fn read(&self, system_type: &str) -> Resources {
        let cpuinfo = std::fs::read_to_string(self.path("proc/cpuinfo")).unwrap_or_default();
        let gpu = self.gpu();
        let network = self.network();
        let storage = self.storage();
        let usb = self.usb();
        let pci = self.pci();
        Resources {
            cpu: self.cpu(&cpuinfo),
            memory: self.memory(),
            gpu,
            network,
            storage,
            usb,
            pci,
            system: self.system(&cpuinfo, system_type),
        }
    }

    /// CPUs by socket, core and thread (LXD's `GetCPU`).
    pub fn cpu(&self, cpuinfo: &str) -> ResourcesCPU {
        let base = self.path("sys/devices/system/cpu");
        let info = parse_cpuinfo(cpuinfo);
        let isolated = read_str(&base.join("isolated"))
            .map(|s| parse_cpu_list(&s))
            .unwrap_or_default();
        // socket -> (core, die) -> threads (id, numa, online, MHz)
        type Threads = Vec<(u64, u64, bool, u64)>;
        let mut sockets: BTreeMap<u64, BTreeMap<(u64, u64), Threads>> = BTreeMap::new();
        let mut socket_dirs: BTreeMap<u64, PathBuf> = BTreeMap::new();
        let mut socket_info: BTreeMap<u64, (String, String)> = BTreeMap::new();
        let mut freq_bounds: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut total = 0;
        for (name, dir) in entries(&base) {
            let Some(id) = name.strip_prefix("cpu").and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            total += 1;
            let online = read_u64(&dir.join("online")).is_none_or(|v| v == 1);
            let topo = dir.join("topology");
            let num = |f: &str| {
                read_str(&topo.join(f))
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|n| *n >= 0)
                    .map_or(0, |n| n as u64)
            };
            let (socket, core, die) = (num("physical_package_id"), num("core_id"), num("die_id"));
            let numa = entries(&dir)
                .iter()
                .find_map(|(n, _)| n.strip_prefix("node").and_then(|x| x.parse().ok()))
                .unwrap_or(0);
            let cpufreq = dir.join("cpufreq");
            // cpufreq's only, as LXD: /proc/cpuinfo's "cpu MHz" is a guess on most VMs.
            let mhz = read_u64(&cpufreq.join("scaling_cur_freq")).map_or(0, |k| k / 1000);
            if let (Some(min), Some(max)) = (
                read_u64(&cpufreq.join("cpuinfo_min_freq")),
                read_u64(&cpufreq.join("cpuinfo_max_freq")),
            ) {
                freq_bounds
                    .entry(socket)
                    .or_insert((min / 1000, max / 1000));
            }
            if let Some((vendor, model)) = info.get(&id) {
                socket_info
                    .entry(socket)
                    .or_insert_with(|| (vendor.clone(), model.clone()));
            }
            socket_dirs.entry(socket).or_insert_with(|| dir.clone());
            sockets
                .entry(socket)
                .or_default()
                .entry((core, die))
                .or_default()
                .push((id, numa, online, mhz));
        }
        let sockets = sockets
            .into_iter()
            .map(|(socket, cores)| {
                let cores: Vec<ResourcesCPUCore> = cores
                    .into_iter()
                    .map(|((core, die), mut threads)| {
                        threads.sort();
                        ResourcesCPUCore {
                            core,
                            die,
                            frequency: threads.first().map_or(0, |t| t.3),
                            threads: threads
                                .iter()
                                .enumerate()
                                .map(|(i, (id, numa, online, _))| ResourcesCPUThread {
                                    id: *id as i64,
                                    numa_node: *numa,
                                    thread: i as u64,
                                    online: *online,
                                    isolated: isolated.contains(id),
                                })
                                .collect(),
                        }
                    })
                    .collect();
                let freq = if cores.is_empty() {
                    0
                } else {
                    cores.iter().map(|c| c.frequency).sum::<u64>() / cores.len() as u64
                };
                let (vendor, name) = socket_info.remove(&socket).unwrap_or_default();
                let (min, turbo) = freq_bounds.get(&socket).copied().unwrap_or((0, 0));
                ResourcesCPUSocket {
                    name,
                    vendor,
                    socket,
                    cache: socket_dirs
                        .get(&socket)
                        .map(|d| cache_of(&d.join("cache")))
                        .unwrap_or_default(),
                    cores,
                    frequency: freq,
                    frequency_minimum: min,
                    frequency_turbo: turbo,
                }
            })
            .collect();
        ResourcesCPU {
            architecture: std::env::consts::ARCH.to_string(),
            sockets,
            total,
        }
    }

    /// Total memory from the memory blocks online (what /proc/meminfo's MemTotal leaves out
    /// for the kernel), or 0 where the kernel has no memory block devices.
    fn block_memory(&self, dir: &Path) -> u64 {
        let size = read_hex_u64(&self.path("sys/devices/system/memory/block_size_bytes"));
        let online = entries(dir)
            .iter()
            .filter(|(n, p)| {
                n.strip_prefix("memory")
                    .is_some_and(|x| x.parse::<u64>().is_ok())
                    && read_u64(&p.join("online")) == Some(1)
            })
            .count() as u64;
        size * online
    }

    /// Memory, huge pages and NUMA nodes (LXD's `GetMemory`).
    pub fn memory(&self) -> ResourcesMemory {
        let m =
            parse_meminfo(&std::fs::read_to_string(self.path("proc/meminfo")).unwrap_or_default());
        let get = |k: &str| m.get(k).copied().unwrap_or(0);
        let hp_size = get("Hugepagesize");
        let mut total = self.block_memory(&self.path("sys/devices/system/memory"));
        if total == 0 {
            total = get("MemTotal");
        }
        let nodes = entries(&self.path("sys/devices/system/node"))
            .into_iter()
            .filter_map(|(name, dir)| {
                let n = name.strip_prefix("node")?.parse::<u64>().ok()?;
                let nm = parse_meminfo(&std::fs::read_to_string(dir.join("meminfo")).ok()?);
                let g = |k: &str| nm.get(k).copied().unwrap_or(0);
                let mut t = self.block_memory(&dir);
                if t == 0 {
                    t = g("MemTotal");
                }
                Some(ResourcesMemoryNode {
                    numa_node: n,
                    hugepages_used: g("HugePages_Total").saturating_sub(g("HugePages_Free"))
                        * hp_size,
                    hugepages_total: g("HugePages_Total") * hp_size,
                    used: g("MemUsed"),
                    total: t,
                })
            })
            .collect();
        ResourcesMemory {
            nodes,
            hugepages_total: get("HugePages_Total") * hp_size,
            hugepages_used: get("HugePages_Total").saturating_sub(get("HugePages_Free")) * hp_size,
            hugepages_size: hp_size,
            used: total
                .saturating_sub(get("MemFree"))
                .saturating_sub(get("Cached"))
                .saturating_sub(get("Buffers")),
            total,
        }
    }

    /// GPUs: DRM cards and their render and control nodes.
    pub fn gpu(&self) -> ResourcesGPU {
        let base = self.path("sys/class/drm");
        let all = entries(&base);
        let mut cards = Vec::new();
        for (name, path) in &all {
            let Some(id) = name
                .strip_prefix("card")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let dev = path.join("device");
            let real = std::fs::canonicalize(&dev).ok();
            let node_of = |prefix: &str| {
                all.iter().find_map(|(n, p)| {
                    (n.starts_with(prefix) && std::fs::canonicalize(p.join("device")).ok() == real)
                        .then(|| (n.clone(), read_str(&p.join("dev")).unwrap_or_default()))
                })
            };
            let (render_name, render_device) = node_of("renderD").unwrap_or_default();
            let (control_name, control_device) = node_of("controlD").unwrap_or_default();
            let (driver, driver_version) = driver_of(self, &dev);
            cards.push(ResourcesGPUCard {
                driver,
                driver_version,
                drm: Some(ResourcesGPUCardDRM {
                    id,
                    card_name: name.clone(),
                    card_device: read_str(&path.join("dev")).unwrap_or_default(),
                    control_name,
                    control_device,
                    render_name,
                    render_device,
                }),
                numa_node: numa_of(&dev),
                pci_address: pci_address(&dev),
                vendor_id: read_hex_id(&dev.join("vendor")),
                product_id: read_hex_id(&dev.join("device")),
                usb_address: usb_address(&dev),
                ..Default::default()
            });
        }
        ResourcesGPU {
            total: cards.len() as u64,
            cards,
        }
    }

    /// Network cards: interfaces backed by a device, grouped by it, one port each.
    pub fn network(&self) -> ResourcesNetwork {
        let mut cards: BTreeMap<PathBuf, ResourcesNetworkCard> = BTreeMap::new();
        for (name, path) in entries(&self.path("sys/class/net")) {
            let dev = path.join("device");
            let Ok(real) = std::fs::canonicalize(&dev) else {
                continue;
            };
            let card = cards.entry(real.clone()).or_insert_with(|| {
                let (driver, driver_version) = driver_of(self, &dev);
                // A virtio device's NUMA node is its PCI function's.
                let pci = ancestor_on(&dev, "pci").unwrap_or_else(|| real.clone());
                ResourcesNetworkCard {
                    driver,
                    driver_version,
                    numa_node: numa_of(&pci),
                    pci_address: pci_address(&dev),
                    vendor_id: Some(read_hex_id(&dev.join("vendor")))
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| read_hex_id(&pci.join("vendor"))),
                    product_id: Some(read_hex_id(&dev.join("device")))
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| read_hex_id(&pci.join("device"))),
                    usb_address: usb_address(&dev),
                    ..Default::default()
                }
            });
            let carrier = read_u64(&path.join("carrier")) == Some(1);
            card.ports.push(ResourcesNetworkCardPort {
                id: name.clone(),
                address: read_str(&path.join("address")).unwrap_or_default(),
                port: read_u64(&path.join("dev_port")).unwrap_or(0),
                protocol: match read_u64(&path.join("type")) {
                    Some(32) => "infiniband",
                    _ => "ethernet",
                }
                .into(),
                link_detected: carrier,
                link_speed: if carrier {
                    read_str(&path.join("speed"))
                        .and_then(|s| s.parse::<i64>().ok())
                        .filter(|s| *s > 0)
                        .map_or(0, |s| s as u64)
                } else {
                    0
                },
                link_duplex: if carrier {
                    read_str(&path.join("duplex"))
                        .filter(|d| d != "unknown")
                        .unwrap_or_default()
                } else {
                    String::new()
                },
                ..Default::default()
            });
        }
        let cards: Vec<ResourcesNetworkCard> = cards.into_values().collect();
        ResourcesNetwork {
            total: cards.len() as u64,
            cards,
        }
    }

    /// Disks and their partitions (LXD's `GetStorage`): block devices backed by a device.
    pub fn storage(&self) -> ResourcesStorage {
        let base = self.path("sys/class/block");
        let mut disks = Vec::new();
        for (name, path) in entries(&base) {
            let dev = path.join("device");
            if !dev.exists() {
                continue;
            }
            let Some(device) = read_str(&path.join("dev")) else {
                continue;
            };
            let kind = link_name(&dev.join("subsystem")).unwrap_or_default();
            if kind == "rbd" {
                continue;
            }
            let removable = read_u64(&path.join("removable")) == Some(1);
            let partitions = entries(&path)
                .into_iter()
                .filter(|(n, p)| n.starts_with(&name) && p.join("partition").exists())
                .map(|(n, p)| ResourcesStorageDiskPartition {
                    id: n,
                    device: read_str(&p.join("dev")).unwrap_or_default(),
                    read_only: read_u64(&p.join("ro")) == Some(1),
                    size: read_u64(&p.join("size")).unwrap_or(0) * 512,
                    partition: read_u64(&p.join("partition")).unwrap_or(0),
                })
                .collect();
            disks.push(ResourcesStorageDisk {
                kind: if name.starts_with("sr") && removable {
                    "cdrom".into()
                } else {
                    kind
                },
                device,
                model: read_str(&dev.join("model")).unwrap_or_default(),
                read_only: read_u64(&path.join("ro")) == Some(1),
                size: read_u64(&path.join("size")).unwrap_or(0) * 512,
                removable,
                wwn: read_str(&dev.join("wwid")).unwrap_or_default(),
                numa_node: numa_of(&dev),
                block_size: read_u64(&path.join("queue/logical_block_size")).unwrap_or(0),
                firmware_version: read_str(&dev.join("firmware_rev")).unwrap_or_default(),
                // LXD's 1: rotational, speed unknown (the speed is udev's to tell).
                rpm: u64::from(read_u64(&path.join("queue/rotational")) == Some(1)),
                serial: read_str(&dev.join("serial")).unwrap_or_default(),
                partitions,
                pci_address: pci_address(&dev),
                usb_address: usb_address(&dev),
                id: name,
                ..Default::default()
            });
        }
        ResourcesStorage {
            total: disks.len() as u64,
            disks,
        }
    }

    /// PCI devices.
    pub fn pci(&self) -> ResourcesPCI {
        let devices: Vec<ResourcesPCIDevice> = entries(&self.path("sys/bus/pci/devices"))
            .into_iter()
            .map(|(name, p)| {
                let (driver, driver_version) = driver_of(self, &p);
                ResourcesPCIDevice {
                    driver,
                    driver_version,
                    numa_node: numa_of(&p),
                    pci_address: name,
                    vendor_id: read_hex_id(&p.join("vendor")),
                    product_id: read_hex_id(&p.join("device")),
                    iommu_group: link_name(&p.join("iommu_group"))
                        .and_then(|g| g.parse().ok())
                        .unwrap_or(0),
                    ..Default::default()
                }
            })
            .collect();
        ResourcesPCI {
            total: devices.len() as u64,
            devices,
        }
    }

    /// USB devices other than hubs, with their interfaces.
    pub fn usb(&self) -> ResourcesUSB {
        let base = self.path("sys/bus/usb/devices");
        let mut devices = Vec::new();
        for (name, p) in entries(&base) {
            if name.contains(':') || read_str(&p.join("bDeviceClass")).as_deref() == Some("09") {
                continue;
            }
            let (Some(bus), Some(devnum)) =
                (read_u64(&p.join("busnum")), read_u64(&p.join("devnum")))
            else {
                continue;
            };
            let interfaces = entries(&p)
                .into_iter()
                .filter(|(n, _)| n.starts_with(&format!("{name}:")))
                .map(|(_, ip)| {
                    let (driver, driver_version) = driver_of(self, &ip);
                    ResourcesUSBDeviceInterface {
                        class_id: read_hex_u64(&ip.join("bInterfaceClass")),
                        subclass_id: read_hex_u64(&ip.join("bInterfaceSubClass")),
                        number: read_hex_u64(&ip.join("bInterfaceNumber")),
                        driver,
                        driver_version,
                        ..Default::default()
                    }
                })
                .collect();
            devices.push(ResourcesUSBDevice {
                bus_address: bus,
                device_address: devnum,
                interfaces,
                vendor: read_str(&p.join("manufacturer")).unwrap_or_default(),
                vendor_id: read_str(&p.join("idVendor")).unwrap_or_default(),
                product: read_str(&p.join("product")).unwrap_or_default(),
                product_id: read_str(&p.join("idProduct")).unwrap_or_default(),
                speed: read_str(&p.join("speed"))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.0),
            });
        }
        ResourcesUSB {
            total: devices.len() as u64,
            devices,
        }
    }

    /// DMI data (what an unprivileged reader may see of it) and the machine's kind.
    pub fn system(&self, cpuinfo: &str, system_type: &str) -> ResourcesSystem {
        // Without systemd-detect-virt: a hypervisor sets the CPUID bit the kernel shows as the
        // `hypervisor` flag.
        let vm = cpuinfo
            .lines()
            .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
        let kind = match (system_type, vm) {
            ("", true) => "virtual-machine",
            ("", false) => "physical",
            (t, _) => t,
        };
        let mut s = ResourcesSystem {
            kind: kind.into(),
            ..Default::default()
        };
        let dmi = self.path("sys/class/dmi/id");
        if !dmi.exists() {
            return s;
        }
        let r = |f: &str| read_str(&dmi.join(f)).unwrap_or_default();
        s.uuid = r("product_uuid");
        s.vendor = r("sys_vendor");
        s.product = r("product_name");
        s.family = r("product_family");
        s.version = r("product_version");
        s.sku = r("product_sku");
        s.serial = r("product_serial");
        s.firmware = Some(ResourcesSystemFirmware {
            vendor: r("bios_vendor"),
            date: r("bios_date"),
            version: r("bios_version"),
        });
        s.chassis = Some(ResourcesSystemChassis {
            vendor: r("chassis_vendor"),
            kind: read_u64(&dmi.join("chassis_type"))
                .map(chassis_type)
                .unwrap_or_default()
                .into(),
            serial: r("chassis_serial"),
            version: r("chassis_version"),
        });
        s.motherboard = Some(ResourcesSystemMotherboard {
            vendor: r("board_vendor"),
            product: r("board_name"),
            serial: r("board_serial"),
            version: r("board_version"),
        });
        s
    }
}

/// A CPU's caches from its `cache/index*` directories.
fn cache_of(dir: &Path) -> Vec<ResourcesCPUCache> {
    entries(dir)
        .into_iter()
        .filter(|(n, _)| n.starts_with("index"))
        .filter_map(|(_, p)| {
            Some(ResourcesCPUCache {
                level: read_u64(&p.join("level"))?,
                kind: read_str(&p.join("type"))?,
                size: parse_size(&read_str(&p.join("size"))?),
            })
        })
        .collect()
}

/// SMBIOS chassis types (DMTF DSP0134), as LXD names them.
fn chassis_type(t: u64) -> &'static str {
    match t {
        1 => "Other",
        2 => "Unknown",
        3 => "Desktop",
        4 => "Low Profile Desktop",
        5 => "Pizza Box",
        6 => "Mini Tower",
        7 => "Tower",
        8 => "Portable",
        9 => "Laptop",
        10 => "Notebook",
        11 => "Hand Held",
        12 => "Docking Station",
        13 => "All in One",
        14 => "Sub Notebook",
        15 => "Space-saving",
        16 => "Lunch Box",
        17 => "Main Server Chassis",
        18 => "Expansion Chassis",
        19 => "SubChassis",
        20 => "Bus Expansion Chassis",
        21 => "Peripheral Chassis",
        22 => "RAID Chassis",
        23 => "Rack Mount Chassis",
        24 => "Sealed-case PC",
        25 => "Multi-system chassis",
        26 => "Compact PCI",
        27 => "Advanced TCA",
        28 => "Blade",
        29 => "Blade Enclosure",
        30 => "Tablet",
        31 => "Convertible",
        32 => "Detachable",
        33 => "IoT Gateway",
        34 => "Embedded PC",
        35 => "Mini PC",
        36 => "Stick PC",
        _ => "",
    }
}

/// The resources of this host.
pub fn read(system_type: &str) -> Resources {
    Sys::default().read(system_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn cpus_memory_and_disks_from_a_fake_tree() {
        let t = tempfile::tempdir().expect("tmp");
        let r = t.path();
        for (cpu, core) in [(0, 0), (1, 0), (2, 1), (3, 1)] {
            let d = format!("sys/devices/system/cpu/cpu{cpu}");
            put(r, &format!("{d}/topology/physical_package_id"), "0\n");
            put(r, &format!("{d}/topology/core_id"), &format!("{core}\n"));
            put(r, &format!("{d}/topology/die_id"), "0\n");
            std::fs::create_dir_all(r.join(format!("{d}/node0"))).expect("node");
            put(r, &format!("{d}/cpufreq/scaling_cur_freq"), "2000000\n");
            put(r, &format!("{d}/cpufreq/cpuinfo_min_freq"), "800000\n");
            put(r, &format!("{d}/cpufreq/cpuinfo_max_freq"), "3500000\n");
        }
        put(r, "sys/devices/system/cpu/cpu3/online", "0\n");
        put(r, "sys/devices/system/cpu/isolated", "2-3\n");
        put(r, "sys/devices/system/cpu/cpu0/cache/index0/level", "1\n");
        put(r, "sys/devices/system/cpu/cpu0/cache/index0/type", "Data\n");
        put(r, "sys/devices/system/cpu/cpu0/cache/index0/size", "48K\n");
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\ncpu MHz\t\t: 2100.000\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\n";
        let sys = Sys::at(r);
        let cpu = sys.cpu(cpuinfo);
        assert_eq!(cpu.total, 4);
        assert_eq!(cpu.sockets.len(), 1);
        let s = &cpu.sockets[0];
        assert_eq!(
            (s.name.as_str(), s.vendor.as_str()),
            ("Xeon", "GenuineIntel")
        );
        assert_eq!(
            (s.frequency, s.frequency_minimum, s.frequency_turbo),
            (2000, 800, 3500)
        );
        assert_eq!(s.cache[0].size, 48 * 1024);
        assert_eq!(s.cores.len(), 2);
        let t3 = &s.cores[1].threads[1];
        assert_eq!(
            (t3.id, t3.thread, t3.online, t3.isolated),
            (3, 1, false, true)
        );

        put(
            r,
            "proc/meminfo",
            "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 40 kB\nHugePages_Total: 4\nHugePages_Free: 1\nHugepagesize: 2048 kB\n",
        );
        put(r, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 1000 kB\nNode 0 MemUsed: 600 kB\nNode 0 HugePages_Total: 4\nNode 0 HugePages_Free: 1\n");
        let m = sys.memory();
        assert_eq!((m.total, m.used), (1000 * 1024, 850 * 1024));
        assert_eq!(
            (m.hugepages_total, m.hugepages_used),
            (4 * 2048 * 1024, 3 * 2048 * 1024)
        );
        assert_eq!(m.nodes[0].used, 600 * 1024);

        put(r, "sys/class/block/vda/dev", "254:0\n");
        put(r, "sys/class/block/vda/size", "2048\n");
        put(r, "sys/class/block/vda/ro", "0\n");
        put(r, "sys/class/block/vda/queue/logical_block_size", "512\n");
        put(r, "sys/class/block/vda/queue/rotational", "1\n");
        put(r, "sys/class/block/vda/device/serial", "abc\n");
        put(r, "sys/class/block/vda/vda1/dev", "254:1\n");
        put(r, "sys/class/block/vda/vda1/size", "1024\n");
        put(r, "sys/class/block/vda/vda1/partition", "1\n");
        put(r, "sys/class/block/loop0/dev", "7:0\n");
        let st = sys.storage();
        assert_eq!(st.total, 1, "loop devices have no device: {st:?}");
        let d = &st.disks[0];
        assert_eq!(
            (d.id.as_str(), d.size, d.rpm, d.serial.as_str()),
            ("vda", 1024 * 1024, 1, "abc")
        );
        assert_eq!(d.partitions[0].size, 512 * 1024);
        assert_eq!(parse_cpu_list("0-2,5"), vec![0, 1, 2, 5]);
    }
}
