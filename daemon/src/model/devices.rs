//! Typed devices. LXD's API, silo's database and the wire keep devices as string maps; this
//! is where such a map is read once, with every check that needs nothing but the map
//! (required keys, known keys, value syntax). What needs the database (the pool or network
//! exists, an address is free) stays in the service.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use silo_proto::net::{IpvlanMode, NicAddrs, MAX_NIC_ADDRS, ROUTED_HOST_V4, ROUTED_HOST_V6};
use silo_proto::privileged::DiskMount;
use silo_proto::proxy::{ProxyBind, ProxySpec};
use silo_proto::types::{IpRange, MacAddr};
use silo_proto::IfName;

use crate::model::parse;

/// A device as stored: LXD's string map.
pub type DeviceMap = BTreeMap<String, String>;

/// Why a device is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The device's name (the map's key) is not one LXD takes.
    #[error("invalid device name {0:?}")]
    Name(String),
    /// Something in the device.
    #[error("invalid device {name:?}: {why}")]
    Invalid {
        /// The device's name.
        name: String,
        /// What is wrong.
        why: String,
    },
}

/// A device's `type`, read without parsing the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    /// `nic`.
    Nic,
    /// `proxy`.
    Proxy,
    /// `disk`.
    Disk,
    /// `none`: hides a profile's device of the same name.
    None,
    /// `unix-char`, `unix-block`, `usb`, `gpu`: host device nodes.
    Host,
    /// Missing, or a type silo does not take.
    Other,
}

impl DeviceType {
    /// The `type` of a stored device map.
    pub fn of(d: &DeviceMap) -> DeviceType {
        match d.get("type").map(String::as_str) {
            Some("nic") => DeviceType::Nic,
            Some("proxy") => DeviceType::Proxy,
            Some("disk") => DeviceType::Disk,
            Some("none") => DeviceType::None,
            Some("unix-char" | "unix-block" | "usb" | "gpu") => DeviceType::Host,
            _ => DeviceType::Other,
        }
    }
}

/// A device silo takes.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceSpec {
    /// A network interface.
    Nic(NicDevice),
    /// A port forwarder.
    Proxy(ProxyDevice),
    /// A filesystem: the root disk, a custom volume, or a host path.
    Disk(DiskDevice),
    /// `type: none`.
    None(DeviceMap),
    /// Host device nodes, given only where the root policy names them.
    Host(HostDeviceSpec),
}

/// A `unix-char`, `unix-block`, `usb` or `gpu` device.
#[derive(Debug, Clone, PartialEq)]
pub struct HostDeviceSpec {
    /// What silo-priv is asked for (the device name is set when it is sent).
    pub nodes: silo_proto::privileged::HostNodes,
    /// Owner and mode inside.
    pub owner: silo_proto::privileged::NodeOwner,
    /// `required`.
    pub required: bool,
    map: DeviceMap,
}

impl HostDeviceSpec {
    /// The request for silo-priv.
    pub fn request(&self, device: &str) -> Result<silo_proto::privileged::HostDevice, String> {
        let d = silo_proto::privileged::HostDevice {
            device: silo_proto::DeviceName::new(device.to_string()).map_err(|e| e.to_string())?,
            nodes: self.nodes.clone(),
            owner: self.owner,
            required: self.required,
        };
        d.validate().map_err(|e| e.to_string())?;
        Ok(d)
    }

    /// Reads a host device's map (`kind` its type).
    pub fn parse(kind: &str, d: &DeviceMap) -> Result<HostDeviceSpec, String> {
        use silo_proto::privileged::{HostNodes, NodeKind, NodeOwner};
        let keys: &[&str] = match kind {
            "unix-char" | "unix-block" => &[
                "type", "source", "path", "major", "minor", "uid", "gid", "mode", "required",
            ],
            "usb" => &[
                "type",
                "vendorid",
                "productid",
                "uid",
                "gid",
                "mode",
                "required",
            ],
            _ => &[
                "type",
                "gputype",
                "vendorid",
                "productid",
                "id",
                "pci",
                "uid",
                "gid",
                "mode",
            ],
        };
        unknown_key(d, keys, kind)?;
        let get = |k: &str| d.get(k).filter(|v| !v.is_empty()).cloned();
        let id = |k: &str| -> Result<u32, String> {
            match get(k) {
                None => Ok(0),
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|x| *x < 65536)
                    .ok_or_else(|| format!("{k} {v:?} is not an id from 0 to 65535")),
            }
        };
        let mode = match get("mode") {
            None => 0o660,
            Some(m) => u32::from_str_radix(&m, 8)
                .ok()
                .filter(|x| *x <= 0o777)
                .ok_or_else(|| format!("mode {m:?} is not octal permission bits like 0660"))?,
        };
        let owner = NodeOwner {
            uid: id("uid")?,
            gid: id("gid")?,
            mode,
        };
        let flag = |k: &str, default: bool| match get(k) {
            None => Ok(default),
            Some(v) => parse::parse_bool(&v).map_err(|e| format!("{k}: {e}")),
        };
        let hex = |k: &str| -> Result<Option<String>, String> {
            match get(k) {
                None => Ok(None),
                Some(v) if v.len() == 4 && v.chars().all(|c| c.is_ascii_hexdigit()) => {
                    Ok(Some(v.to_lowercase()))
                }
                Some(v) => Err(format!("{k} {v:?} is not four hex digits")),
            }
        };
        let (nodes, required) = match kind {
            "unix-char" | "unix-block" => {
                let num = |k: &str| -> Result<Option<u32>, String> {
                    get(k)
                        .map(|v| {
                            v.parse::<u32>()
                                .map_err(|_| format!("{k} {v:?} is not a number"))
                        })
                        .transpose()
                };
                let numbers = match (num("major")?, num("minor")?) {
                    (Some(a), Some(b)) => Some((a, b)),
                    (None, None) => None,
                    _ => return Err("major and minor go together".into()),
                };
                let source = get("source")
                    .map(|s| {
                        silo_proto::types::HostPath::new(s).map_err(|e| format!("source: {e}"))
                    })
                    .transpose()?;
                let path = get("path")
                    .map(|p| {
                        if !p.starts_with('/') {
                            return Err(format!("path {p:?} is not absolute"));
                        }
                        silo_proto::types::RelPath::new(p.trim_start_matches('/').to_string())
                            .map_err(|e| format!("path: {e}"))
                    })
                    .transpose()?;
                if source.is_none() && path.is_none() {
                    return Err("a unix device needs a source or a path".into());
                }
                if source.is_none() && numbers.is_none() {
                    return Err("a unix device without a source needs major and minor".into());
                }
                (
                    HostNodes::Unix {
                        kind: if kind == "unix-char" {
                            NodeKind::Char
                        } else {
                            NodeKind::Block
                        },
                        source,
                        numbers,
                        path,
                    },
                    flag("required", true)?,
                )
            }
            "usb" => (
                HostNodes::Usb {
                    vendor: hex("vendorid")?,
                    product: hex("productid")?,
                },
                flag("required", false)?,
            ),
            _ => {
                match get("gputype").as_deref() {
                    None | Some("physical") => {}
                    Some(t @ ("mdev" | "mig" | "sriov")) => {
                        return Err(format!(
                            "gputype {t:?} is not available on this host (it needs GPU hardware \
                             and drivers silo does not manage); use gputype=physical"
                        ))
                    }
                    Some(t) => return Err(format!("unknown gputype {t:?}")),
                }
                let card = get("id")
                    .map(|v| {
                        v.parse::<u32>()
                            .map_err(|_| format!("id {v:?} is not a card number"))
                    })
                    .transpose()?;
                (
                    HostNodes::Gpu {
                        vendor: hex("vendorid")?,
                        product: hex("productid")?,
                        id: card,
                        pci: get("pci"),
                    },
                    true,
                )
            }
        };
        Ok(HostDeviceSpec {
            nodes,
            owner,
            required,
            map: d.clone(),
        })
    }
}

/// How a nic without `network` is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicType {
    /// A veth on a bridge.
    Bridged,
    /// A macvlan on a parent interface.
    Macvlan,
    /// The parent interface itself, moved in.
    Physical,
    /// A veth pair with no bridge.
    P2p,
    /// A veth pair with fixed addresses the host routes to.
    Routed,
    /// An ipvlan on a parent interface.
    Ipvlan,
}

impl NicType {
    /// LXD's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            NicType::Bridged => "bridged",
            NicType::Macvlan => "macvlan",
            NicType::Physical => "physical",
            NicType::P2p => "p2p",
            NicType::Routed => "routed",
            NicType::Ipvlan => "ipvlan",
        }
    }
}

/// Where a nic attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicTarget {
    /// A managed network (which gives the type and parent).
    Network(String),
    /// A host interface, by `nictype` and `parent` (none for p2p, optional for routed).
    Parent {
        /// `nictype`.
        nictype: NicType,
        /// `parent`.
        parent: Option<IfName>,
    },
}

/// A `nic` device.
#[derive(Debug, Clone, PartialEq)]
pub struct NicDevice {
    /// `network`, or `nictype` and `parent`.
    pub target: NicTarget,
    /// `name`: the interface name inside the instance.
    pub name: Option<IfName>,
    /// `host_name`: the host side's name (under silo's prefix).
    pub host_name: Option<IfName>,
    /// `hwaddr`.
    pub hwaddr: Option<MacAddr>,
    /// `mtu`, 1280..=9000.
    pub mtu: Option<u32>,
    /// `ipv4.address`: a DHCP reservation on a managed bridge.
    pub ipv4: Option<Ipv4Addr>,
    /// `ipv6.address`.
    pub ipv6: Option<Ipv6Addr>,
    /// routed and ipvlan: the fixed addresses (comma lists) and gateways.
    pub addrs: Option<NicAddrs>,
    /// p2p: `ipv4.routes` and `ipv6.routes`.
    pub routes: Vec<IpRange>,
    /// ipvlan's `mode`.
    pub ipvlan_mode: IpvlanMode,
    /// `vlan`.
    pub vlan: Option<u16>,
    /// `limits.ingress`, `limits.egress`, `limits.max` as given.
    pub limits: Vec<(String, String)>,
    map: DeviceMap,
}

/// A `proxy` device.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyDevice {
    /// What silo-net runs for it.
    pub spec: ProxySpec,
    map: DeviceMap,
}

/// A `disk` device.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskDevice {
    /// `path` inside the instance, absolute.
    pub path: String,
    /// `pool`.
    pub pool: Option<String>,
    /// `source`: a custom volume's name (with `pool`) or a host path.
    pub source: Option<String>,
    /// `readonly`.
    pub readonly: bool,
    /// `required` (default true): a missing source fails the start.
    pub required: bool,
    /// `recursive`: a host path's submounts come along.
    pub recursive: bool,
    /// `propagation`.
    pub propagation: silo_proto::privileged::Propagation,
    /// `limits.read` (or `limits.max`).
    pub read_limit: Option<IoRate>,
    /// `limits.write` (or `limits.max`).
    pub write_limit: Option<IoRate>,
    map: DeviceMap,
}

/// A disk's I/O rate limit, per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoRate {
    /// Bytes (`30MB`).
    Bytes(u64),
    /// Operations (`100iops`).
    Iops(u64),
}

impl IoRate {
    /// LXD's syntax: a byte size, or a number followed by `iops`.
    pub fn parse(v: &str) -> Result<IoRate, String> {
        let r = match v.strip_suffix("iops") {
            Some(n) => IoRate::Iops(
                n.trim()
                    .parse()
                    .map_err(|_| format!("{v:?} is not a number of operations like 100iops"))?,
            ),
            None => {
                IoRate::Bytes(silo_proto::types::parse_bytes(v).map_err(|e| format!("{v:?}: {e}"))?)
            }
        };
        match r {
            IoRate::Bytes(0) | IoRate::Iops(0) => Err(format!("{v:?} would stop all I/O")),
            r => Ok(r),
        }
    }
}

impl DiskDevice {
    /// The map it was read from, as stored.
    pub fn map(&self) -> &DeviceMap {
        &self.map
    }

    /// Whether this is the root disk (path `/` from a pool).
    pub fn is_root(&self) -> bool {
        self.path == "/" && self.source.is_none()
    }

    /// Its I/O limits for silo-priv, if it has any.
    pub fn disk_io(&self, device: &str) -> Result<Option<silo_proto::privileged::DiskIo>, String> {
        use silo_proto::privileged::{DiskIo, DiskIoTarget};
        if self.read_limit.is_none() && self.write_limit.is_none() {
            return Ok(None);
        }
        let target = match self.mount(device)? {
            Some(m) => DiskIoTarget::Source(m.source),
            None => DiskIoTarget::Root(
                silo_proto::PoolName::new(self.pool.clone().unwrap_or_default())
                    .map_err(|e| format!("pool: {e}"))?,
            ),
        };
        let bytes = |r: Option<IoRate>| match r {
            Some(IoRate::Bytes(b)) => Some(b),
            _ => None,
        };
        let ops = |r: Option<IoRate>| match r {
            Some(IoRate::Iops(n)) => Some(n),
            _ => None,
        };
        Ok(Some(DiskIo {
            target,
            read_bps: bytes(self.read_limit),
            write_bps: bytes(self.write_limit),
            read_iops: ops(self.read_limit),
            write_iops: ops(self.write_limit),
        }))
    }

    /// What silo-priv mounts for it (`None` for the root disk, which is the instance's
    /// volume itself).
    pub fn mount(&self, device: &str) -> Result<Option<DiskMount>, String> {
        use silo_proto::privileged::DiskSource;
        if self.is_root() {
            return Ok(None);
        }
        let source = self
            .source
            .as_deref()
            .ok_or("a disk other than the root needs a source")?;
        let source = match &self.pool {
            Some(pool) => DiskSource::Volume {
                pool: silo_proto::PoolName::new(pool.clone()).map_err(|e| e.to_string())?,
                volume: silo_proto::VolumeName::new(source.to_string())
                    .map_err(|e| format!("source: {e}"))?,
            },
            None => DiskSource::Host(
                silo_proto::types::HostPath::new(source.to_string())
                    .map_err(|e| format!("source: {e}"))?,
            ),
        };
        Ok(Some(DiskMount {
            device: silo_proto::DeviceName::new(device.to_string()).map_err(|e| e.to_string())?,
            source,
            path: silo_proto::types::RelPath::new(self.path.trim_start_matches('/').to_string())
                .map_err(|e| format!("path: {e}"))?,
            readonly: self.readonly,
            recursive: self.recursive,
            required: self.required,
            propagation: self.propagation,
        }))
    }
}

const NIC_KEYS: &[&str] = &[
    "type",
    "nictype",
    "network",
    "parent",
    "name",
    "hwaddr",
    "mtu",
    "ipv4.address",
    "ipv6.address",
    "host_name",
    "boot.priority",
    "ipv4.routes",
    "ipv6.routes",
    "ipv4.gateway",
    "ipv6.gateway",
    "ipv4.host_address",
    "ipv6.host_address",
    "mode",
    "vlan",
    "security.mac_filtering",
    "security.ipv4_filtering",
    "security.ipv6_filtering",
    "limits.ingress",
    "limits.egress",
    "limits.max",
];

const PROXY_KEYS: &[&str] = &[
    "type",
    "listen",
    "connect",
    "bind",
    "nat",
    "proxy_protocol",
    "uid",
    "gid",
    "mode",
    "security.uid",
    "security.gid",
];

const DISK_KEYS: &[&str] = &[
    "type",
    "path",
    "pool",
    "source",
    "readonly",
    "size",
    "propagation",
    "recursive",
    "required",
    "shift",
    // For virtual machines in LXD; a container has nothing to boot from it.
    "boot.priority",
    "limits.read",
    "limits.write",
    "limits.max",
];

/// Whether `name` is a device name LXD takes.
pub fn check_device_name(name: &str) -> Result<(), DeviceError> {
    if name.is_empty()
        || name.len() > 64
        || name.contains('/')
        || name.chars().any(char::is_whitespace)
    {
        return Err(DeviceError::Name(name.to_string()));
    }
    Ok(())
}

/// LXD 5.0 keys silo refuses, by device kind, with why (a key ending in `.` is a prefix).
const REFUSED_KEYS: &[(&str, &str, &str)] = &[
    ("nic", "maas.", "MAAS is not available on this host"),
    (
        "nic",
        "acceleration",
        "it is for OVN networks, and this host has no OVN",
    ),
    (
        "nic",
        "security.port_isolation",
        "it is for OVN networks, and this host has no OVN",
    ),
    (
        "nic",
        "ipv4.routes.external",
        "it is for OVN networks, and this host has no OVN",
    ),
    (
        "nic",
        "ipv6.routes.external",
        "it is for OVN networks, and this host has no OVN",
    ),
    (
        "nic",
        "security.acls",
        "network ACLs are not part of silo (no /1.0/network-acls)",
    ),
    (
        "nic",
        "gvrp",
        "this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q)",
    ),
    (
        "nic",
        "vlan.tagged",
        "this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)",
    ),
    (
        "nic",
        "ipv4.host_table",
        "silo puts a routed or ipvlan nic's host routes in the main table only",
    ),
    (
        "nic",
        "ipv6.host_table",
        "silo puts a routed or ipvlan nic's host routes in the main table only",
    ),
    (
        "nic",
        "ipv4.neighbor_probe",
        "silo checks routed addresses against the host's own tables instead of probing the LAN",
    ),
    (
        "nic",
        "ipv6.neighbor_probe",
        "silo checks routed addresses against the host's own tables instead of probing the LAN",
    ),
    ("disk", "ceph.", "ceph is not available on this host"),
    (
        "disk",
        "raw.mount.options",
        "silo bind-mounts a disk's source; filesystem mount options do not apply",
    ),
    (
        "disk",
        "size.state",
        "it is for virtual machines; silo runs containers",
    ),
];

fn unknown_key(d: &DeviceMap, known: &[&str], what: &str) -> Result<(), String> {
    match d.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => {
            let refused = REFUSED_KEYS.iter().find(|(kind, key, _)| {
                *kind == what && (k == key || (key.ends_with('.') && k.starts_with(key)))
            });
            match refused {
                Some((_, _, why)) => Err(format!("{what} key {k:?} is refused: {why}")),
                None => Err(format!("unknown {what} key {k:?}")),
            }
        }
        None => Ok(()),
    }
}

impl DeviceSpec {
    /// Reads device `name`'s map, with every check that needs only the map.
    pub fn parse(name: &str, d: &DeviceMap) -> Result<DeviceSpec, DeviceError> {
        check_device_name(name)?;
        let invalid = |why: String| DeviceError::Invalid {
            name: name.to_string(),
            why,
        };
        match d.get("type").map(String::as_str).unwrap_or("") {
            "nic" => NicDevice::parse(d).map(DeviceSpec::Nic).map_err(invalid),
            "proxy" => ProxyDevice::parse(d)
                .map(DeviceSpec::Proxy)
                .map_err(invalid),
            "disk" => DiskDevice::parse(d).map(DeviceSpec::Disk).map_err(invalid),
            "none" => Ok(DeviceSpec::None(d.clone())),
            k @ ("unix-char" | "unix-block" | "usb" | "gpu") => HostDeviceSpec::parse(k, d)
                .map(DeviceSpec::Host)
                .map_err(invalid),
            "unix-hotplug" => Err(invalid(
                "unix-hotplug devices follow udev events, which silo does not watch; give the node with unix-char or unix-block (source or major/minor), or a usb device".into(),
            )),
            "tpm" => Err(invalid(
                "tpm devices need swtpm, which is not installed on this host".into(),
            )),
            k @ ("infiniband" | "pci") => Err(invalid(format!(
                "device type {k:?} is not available on this host (no such hardware); LXD gives it to virtual machines or needs the hardware"
            ))),
            "" => Err(invalid("missing type".into())),
            other => Err(invalid(format!(
                "device type {other:?} is not supported by silo"
            ))),
        }
    }

    /// The map as stored: exactly what was parsed, so the database and the API keep the
    /// client's spelling (`yes` stays `yes`, a MAC keeps its case).
    pub fn to_map(&self) -> DeviceMap {
        match self {
            DeviceSpec::Nic(n) => n.map.clone(),
            DeviceSpec::Proxy(p) => p.map.clone(),
            DeviceSpec::Disk(d) => d.map.clone(),
            DeviceSpec::None(m) => m.clone(),
            DeviceSpec::Host(h) => h.map.clone(),
        }
    }

    /// Its type.
    pub fn device_type(&self) -> DeviceType {
        match self {
            DeviceSpec::Nic(_) => DeviceType::Nic,
            DeviceSpec::Proxy(_) => DeviceType::Proxy,
            DeviceSpec::Disk(_) => DeviceType::Disk,
            DeviceSpec::None(_) => DeviceType::None,
            DeviceSpec::Host(_) => DeviceType::Host,
        }
    }
}

/// `ipv4.routes`/`ipv6.routes`: a comma list of ranges of the key's family.
fn parse_routes(key: &str, v: &str) -> Result<Vec<IpRange>, String> {
    let v4 = key.starts_with("ipv4");
    let out: Vec<IpRange> = v
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let r: IpRange = p.parse().map_err(|e| format!("{key}: {e}"))?;
            if r.net().is_ipv4() != v4 {
                return Err(format!(
                    "{key}: {p} is not an {} range",
                    if v4 { "IPv4" } else { "IPv6" }
                ));
            }
            Ok(r)
        })
        .collect::<Result<_, _>>()?;
    if out.len() > MAX_NIC_ADDRS {
        return Err(format!("{key}: at most {MAX_NIC_ADDRS} routes"));
    }
    Ok(out)
}

/// A routed or ipvlan nic's `ipv4.address`/`ipv6.address` (comma lists), gateways and host
/// addresses, with LXD's defaults.
fn parse_nic_addrs(d: &DeviceMap) -> Result<NicAddrs, String> {
    fn list<A: std::str::FromStr>(d: &DeviceMap, key: &str) -> Result<Vec<A>, String> {
        d.get(key)
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<A>().map_err(|_| format!("invalid {key} {p:?}")))
            .collect()
    }
    let gateway = |key: &str| match d.get(key).map(String::as_str) {
        None | Some("auto") => Ok(true),
        Some("none") => Ok(false),
        Some(o) => Err(format!("invalid {key} {o:?}: auto or none")),
    };
    let host = |key: &str| d.get(key).filter(|v| !v.is_empty());
    let a = NicAddrs {
        ipv4: list(d, "ipv4.address")?,
        ipv6: list(d, "ipv6.address")?,
        ipv4_gateway: gateway("ipv4.gateway")?,
        ipv6_gateway: gateway("ipv6.gateway")?,
        ipv4_host_address: match host("ipv4.host_address") {
            Some(v) => v
                .parse()
                .map_err(|_| format!("invalid ipv4.host_address {v:?}"))?,
            None => ROUTED_HOST_V4,
        },
        ipv6_host_address: match host("ipv6.host_address") {
            Some(v) => v
                .parse()
                .map_err(|_| format!("invalid ipv6.host_address {v:?}"))?,
            None => ROUTED_HOST_V6,
        },
    };
    a.check()?;
    Ok(a)
}

impl NicDevice {
    /// Reads a nic's map (its `type` already `nic`).
    pub fn parse(d: &DeviceMap) -> Result<NicDevice, String> {
        unknown_key(d, NIC_KEYS, "nic")?;
        let target = if let Some(net) = d.get("network") {
            if d.contains_key("nictype") || d.contains_key("parent") {
                return Err(
                    "a nic with a network takes its type and parent from it; drop nictype and parent"
                        .into(),
                );
            }
            NicTarget::Network(net.clone())
        } else {
            let nictype = match d.get("nictype").map(String::as_str) {
                Some("bridged") => NicType::Bridged,
                Some("macvlan") => NicType::Macvlan,
                Some("physical") => NicType::Physical,
                Some("p2p") => NicType::P2p,
                Some("routed") => NicType::Routed,
                Some("ipvlan") => NicType::Ipvlan,
                Some("sriov") => {
                    return Err(
                        "nictype \"sriov\" is not available on this host: it has no SR-IOV \
                         capable network card (no virtual functions to hand out)"
                            .into(),
                    )
                }
                Some(o) => return Err(format!("unknown nictype {o:?}")),
                None => return Err("a nic needs a network, or a nictype and a parent".into()),
            };
            let parent = d
                .get("parent")
                .map(|p| IfName::new(p.clone()).map_err(|e| e.to_string()))
                .transpose()?;
            match (nictype, &parent) {
                (NicType::P2p, Some(_)) => return Err("a p2p nic takes no parent".into()),
                (NicType::P2p | NicType::Routed, _) | (_, Some(_)) => {}
                (_, None) => return Err("this nic needs a parent".into()),
            }
            NicTarget::Parent { nictype, parent }
        };
        let nictype = match &target {
            NicTarget::Parent { nictype, .. } => Some(*nictype),
            NicTarget::Network(_) => None,
        };
        let only_for = |keys: &[&str], types: &[NicType], what: &str| -> Result<(), String> {
            match keys.iter().find(|k| d.contains_key(**k)) {
                Some(k) if !nictype.is_some_and(|t| types.contains(&t)) => {
                    Err(format!("{k} is only for {what} nics"))
                }
                _ => Ok(()),
            }
        };
        only_for(&["ipv4.routes", "ipv6.routes"], &[NicType::P2p], "p2p")?;
        only_for(
            &["ipv4.host_address", "ipv6.host_address"],
            &[NicType::Routed],
            "routed",
        )?;
        only_for(
            &["ipv4.gateway", "ipv6.gateway"],
            &[NicType::Routed, NicType::Ipvlan],
            "routed and ipvlan",
        )?;
        only_for(&["mode"], &[NicType::Ipvlan], "ipvlan")?;
        let routes = ["ipv4.routes", "ipv6.routes"]
            .iter()
            .filter_map(|k| d.get(*k).map(|v| (*k, v)))
            .map(|(k, v)| parse_routes(k, v))
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        let addrs = match nictype {
            Some(NicType::Routed | NicType::Ipvlan) => Some(parse_nic_addrs(d)?),
            _ => None,
        };
        let ipvlan_mode = match d.get("mode").map(String::as_str) {
            None | Some("l3s") => IpvlanMode::L3s,
            Some("l2") => IpvlanMode::L2,
            Some(o) => return Err(format!("invalid mode {o:?}: ipvlan takes l2 or l3s")),
        };
        let vlan = match d.get("vlan") {
            Some(v) => match v.parse::<u16>() {
                Ok(id) if (1..=4094).contains(&id) => Some(id),
                _ => return Err(format!("invalid vlan {v:?}: a VLAN id is 1..4094")),
            },
            None => None,
        };
        for k in [
            "security.mac_filtering",
            "security.ipv4_filtering",
            "security.ipv6_filtering",
        ] {
            if let Some(v) = d.get(k) {
                if parse::parse_bool(v).is_err() {
                    return Err(format!("invalid {k} {v:?}: a boolean"));
                }
            }
        }
        let limits: Vec<(String, String)> = ["limits.ingress", "limits.egress", "limits.max"]
            .iter()
            .filter_map(|k| d.get(*k).map(|v| (k.to_string(), v.clone())))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let name = d
            .get("name")
            .map(|n| IfName::new(n.clone()).map_err(|e| e.to_string()))
            .transpose()?;
        let host_name = match d.get("host_name") {
            Some(h) => {
                let n = IfName::new(h.clone()).map_err(|e| e.to_string())?;
                silo_proto::types::check_host_veth_name(h)?;
                Some(n)
            }
            None => None,
        };
        let hwaddr = d
            .get("hwaddr")
            .map(|h| h.parse::<MacAddr>().map_err(|e| e.to_string()))
            .transpose()?;
        let mtu = match d.get("mtu") {
            Some(m) => {
                let m: u32 = m.parse().map_err(|_| format!("invalid mtu {m:?}"))?;
                if !(1280..=9000).contains(&m) {
                    return Err(format!("mtu {m} is outside 1280..9000"));
                }
                Some(m)
            }
            None => None,
        };
        let single = addrs.is_none();
        let ipv4 = d
            .get("ipv4.address")
            .filter(|_| single)
            .map(|a| {
                a.parse::<Ipv4Addr>()
                    .map_err(|_| format!("invalid ipv4.address {a:?}"))
            })
            .transpose()?;
        let ipv6 = d
            .get("ipv6.address")
            .filter(|_| single)
            .map(|a| {
                a.parse::<Ipv6Addr>()
                    .map_err(|_| format!("invalid ipv6.address {a:?}"))
            })
            .transpose()?;
        Ok(NicDevice {
            target,
            name,
            host_name,
            hwaddr,
            mtu,
            ipv4,
            ipv6,
            addrs,
            routes,
            ipvlan_mode,
            vlan,
            limits,
            map: d.clone(),
        })
    }

    /// The map it was read from, as stored.
    pub fn map(&self) -> &DeviceMap {
        &self.map
    }

    /// The managed network it names, if any.
    pub fn network(&self) -> Option<&str> {
        match &self.target {
            NicTarget::Network(n) => Some(n),
            NicTarget::Parent { .. } => None,
        }
    }
}

impl ProxyDevice {
    /// Reads a proxy's map into what silo-net runs.
    pub fn parse(d: &DeviceMap) -> Result<ProxyDevice, String> {
        unknown_key(d, PROXY_KEYS, "proxy")?;
        let flag = |k: &str| parse::is_true_or(d.get(k).map(String::as_str), false);
        if flag("nat") {
            return Err(
                "nat=true proxies are not supported by silo; the forwarder carries the connections"
                    .into(),
            );
        }
        if flag("proxy_protocol") {
            return Err("proxy_protocol is not supported by silo".into());
        }
        let listen = d.get("listen").ok_or("a proxy needs listen")?;
        let connect = d.get("connect").ok_or("a proxy needs connect")?;
        let spec = ProxySpec {
            listen: listen.parse().map_err(|e| format!("listen: {e}"))?,
            connect: connect.parse().map_err(|e| format!("connect: {e}"))?,
            bind: match d.get("bind").map(String::as_str) {
                None | Some("") | Some("host") => ProxyBind::Host,
                Some("instance" | "container") => ProxyBind::Instance,
                Some(o) => return Err(format!("invalid bind {o:?}: \"host\" or \"instance\"")),
            },
        };
        spec.validate().map_err(|e| e.to_string())?;
        Ok(ProxyDevice {
            spec,
            map: d.clone(),
        })
    }
}

impl DiskDevice {
    /// Reads a disk's map.
    pub fn parse(d: &DeviceMap) -> Result<DiskDevice, String> {
        use silo_proto::privileged::Propagation;
        let path = d.get("path").ok_or("a disk needs a path")?;
        if !path.starts_with('/') {
            return Err(format!("path {path:?} is not absolute"));
        }
        // "/data/" and "/data" are one place; "." and ".." are never one the instance can
        // mean unambiguously.
        let path = if path == "/" {
            path.clone()
        } else {
            let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
            if comps.iter().any(|c| *c == "." || *c == "..") {
                return Err(format!("path {path:?} must not contain '.' or '..'"));
            }
            format!("/{}", comps.join("/"))
        };
        if path != "/" && d.get("source").is_none() && d.get("pool").is_none() {
            return Err("a disk other than the root needs a source or a pool".into());
        }
        unknown_key(d, DISK_KEYS, "disk")?;
        let flag = |k: &str, default: bool| match d.get(k).map(String::as_str) {
            None | Some("") => Ok(default),
            Some(v) => parse::parse_bool(v).map_err(|e| format!("{k}: {e}")),
        };
        let readonly = flag("readonly", false)?;
        let required = flag("required", true)?;
        let recursive = flag("recursive", false)?;
        flag("shift", false)?;
        let propagation = match d.get("propagation").map(String::as_str) {
            None | Some("" | "private" | "rprivate") => Propagation::Private,
            Some("slave" | "rslave") => Propagation::Slave,
            Some(p @ ("shared" | "rshared")) => {
                return Err(format!(
                    "propagation {p:?} is refused: a mount shared with the host would let the \
                     instance's root mount over host paths; use \"slave\" to see the host's mounts"
                ))
            }
            Some(p @ ("unbindable" | "runbindable")) => {
                return Err(format!("propagation {p:?} is not supported by silo"))
            }
            Some(p) => return Err(format!("unknown propagation {p:?}")),
        };
        let source = d.get("source").filter(|s| !s.is_empty()).cloned();
        let pool = d.get("pool").filter(|s| !s.is_empty()).cloned();
        if path != "/" {
            match (&pool, &source) {
                (_, None) => return Err("a disk other than the root needs a source".into()),
                (Some(_), Some(v)) if v.contains('/') => {
                    return Err(format!(
                        "source {v:?}: attaching a volume's snapshot is not supported by silo"
                    ))
                }
                (None, Some(s)) if s.starts_with("ceph:") || s.starts_with("cephfs:") => {
                    return Err(format!("source {s:?}: ceph is not available on this host"))
                }
                (None, Some(s)) if !s.starts_with('/') => {
                    return Err(format!(
                    "source {s:?} is neither an absolute host path nor, with pool, a custom volume"
                ))
                }
                _ => {}
            }
            if d.get("size").is_some_and(|s| !s.is_empty()) {
                return Err(
                    "size applies only to the root disk; set a custom volume's size on the volume"
                        .into(),
                );
            }
        } else if source.is_some() {
            return Err("the root disk (path \"/\") takes a pool, not a source".into());
        }
        let rate = |k: &str| {
            d.get(k)
                .filter(|v| !v.is_empty())
                .map(|v| IoRate::parse(v).map_err(|e| format!("{k}: {e}")))
                .transpose()
        };
        let max = rate("limits.max")?;
        let disk = DiskDevice {
            path,
            pool,
            source,
            readonly,
            required,
            recursive,
            propagation,
            read_limit: rate("limits.read")?.or(max),
            write_limit: rate("limits.write")?.or(max),
            map: d.clone(),
        };
        // Every name a mount needs is checked here, once.
        disk.mount("check")?;
        Ok(disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> DeviceMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn why(name: &str, pairs: &[(&str, &str)]) -> String {
        DeviceSpec::parse(name, &map(pairs))
            .expect_err(&format!("{pairs:?} accepted"))
            .to_string()
    }

    #[test]
    fn names_and_types() {
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert_eq!(
                why(bad, &[("type", "none")]),
                format!("invalid device name {bad:?}")
            );
        }
        assert_eq!(why("d", &[]), "invalid device \"d\": missing type");
        assert_eq!(
            why("d", &[("type", "infiniband-x")]),
            "invalid device \"d\": device type \"infiniband-x\" is not supported by silo"
        );
        assert!(why("d", &[("type", "tpm")]).contains("swtpm"));
        assert!(why("d", &[("type", "unix-hotplug")]).contains("udev"));
        assert!(why(
            "d",
            &[("type", "nic"), ("network", "n"), ("maas.subnet.ipv4", "x")]
        )
        .contains("MAAS"));
        assert!(why(
            "d",
            &[
                ("type", "disk"),
                ("path", "/x"),
                ("source", "/s"),
                ("limits.read", "fast")
            ]
        )
        .contains("limits.read"));
        assert!(why(
            "d",
            &[
                ("type", "disk"),
                ("path", "/x"),
                ("source", "/s"),
                ("limits.max", "0iops")
            ]
        )
        .contains("stop all"));
        assert!(why("d", &[("type", "gpu"), ("gputype", "mig")]).contains("not available"));
        assert!(why("d", &[("type", "unix-char"), ("path", "/dev/x")]).contains("major and minor"));
        assert!(why(
            "d",
            &[("type", "unix-char"), ("source", "/dev/x"), ("mode", "999")]
        )
        .contains("octal"));
        assert!(why("d", &[("type", "usb"), ("vendorid", "12345")]).contains("hex"));
        assert!(why(
            "d",
            &[
                ("type", "unix-char"),
                ("source", "/dev/x"),
                ("uid", "70000")
            ]
        )
        .contains("65535"));
        let none = map(&[("type", "none")]);
        let s = DeviceSpec::parse("eth0", &none).expect("none");
        assert_eq!(s.device_type(), DeviceType::None);
        assert_eq!(s.to_map(), none);
        assert_eq!(DeviceType::of(&map(&[("type", "nic")])), DeviceType::Nic);
        assert_eq!(DeviceType::of(&map(&[])), DeviceType::Other);
    }

    #[test]
    fn nics() {
        let m = map(&[
            ("type", "nic"),
            ("network", "silobr0"),
            ("name", "eth0"),
            ("hwaddr", "00:16:3E:00:00:01"),
            ("ipv4.address", "10.0.0.5"),
            ("mtu", "1500"),
        ]);
        let DeviceSpec::Nic(n) = DeviceSpec::parse("eth0", &m).expect("nic") else {
            panic!("not a nic");
        };
        assert_eq!(n.network(), Some("silobr0"));
        assert_eq!(n.ipv4, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(n.mtu, Some(1500));
        // The stored map keeps the client's spelling.
        assert_eq!(DeviceSpec::Nic(n).to_map(), m);

        let DeviceSpec::Nic(p) = DeviceSpec::parse(
            "eth1",
            &map(&[("type", "nic"), ("nictype", "macvlan"), ("parent", "eth0")]),
        )
        .expect("macvlan") else {
            panic!("not a nic");
        };
        assert!(matches!(
            p.target,
            NicTarget::Parent {
                nictype: NicType::Macvlan,
                ..
            }
        ));
        assert_eq!(p.network(), None);

        let DeviceSpec::Nic(r) = DeviceSpec::parse(
            "eth2",
            &map(&[
                ("type", "nic"),
                ("nictype", "routed"),
                ("ipv4.address", "10.0.0.5, 10.0.0.6"),
                ("ipv6.address", "fd00::5"),
                ("ipv6.gateway", "none"),
            ]),
        )
        .expect("routed") else {
            panic!("not a nic");
        };
        let a = r.addrs.expect("addresses");
        assert_eq!(a.ipv4.len(), 2);
        assert_eq!(a.ipv6.len(), 1);
        assert!(a.ipv4_gateway && !a.ipv6_gateway);
        assert_eq!(a.ipv4_host_address, ROUTED_HOST_V4);
        assert_eq!(r.ipv4, None);
        let DeviceSpec::Nic(q) = DeviceSpec::parse(
            "eth3",
            &map(&[
                ("type", "nic"),
                ("nictype", "p2p"),
                ("ipv4.routes", "10.9.0.0/24,10.9.1.0/24"),
                ("ipv6.routes", "fd09::/64"),
            ]),
        )
        .expect("p2p") else {
            panic!("not a nic");
        };
        assert_eq!(q.routes.len(), 3);

        for (pairs, want) in [
            (
                &[("type", "nic"), ("network", "n"), ("bogus", "1")][..],
                "unknown nic key \"bogus\"",
            ),
            (
                &[("type", "nic"), ("network", "n"), ("parent", "eth0")][..],
                "drop nictype and parent",
            ),
            (
                &[("type", "nic"), ("nictype", "p2p"), ("parent", "x")][..],
                "takes no parent",
            ),
            (
                &[("type", "nic"), ("nictype", "sriov"), ("parent", "x")][..],
                "not available on this host",
            ),
            (
                &[
                    ("type", "nic"),
                    ("network", "n"),
                    ("ipv4.routes", "10.0.0.0/24"),
                ][..],
                "only for p2p nics",
            ),
            (
                &[
                    ("type", "nic"),
                    ("nictype", "p2p"),
                    ("ipv4.routes", "10.0.0.1/24"),
                ][..],
                "host bits zero",
            ),
            (
                &[
                    ("type", "nic"),
                    ("nictype", "p2p"),
                    ("ipv6.routes", "10.0.0.0/24"),
                ][..],
                "not an IPv6 range",
            ),
            (
                &[
                    ("type", "nic"),
                    ("nictype", "routed"),
                    ("ipv4.address", "10.0.0.1,x"),
                ][..],
                "invalid ipv4.address \"x\"",
            ),
            (
                &[
                    ("type", "nic"),
                    ("nictype", "routed"),
                    ("ipv4.address", "10.0.0.1,10.0.0.1"),
                ][..],
                "given twice",
            ),
            (
                &[
                    ("type", "nic"),
                    ("nictype", "routed"),
                    ("ipv4.gateway", "maybe"),
                ][..],
                "auto or none",
            ),
            (
                &[
                    ("type", "nic"),
                    ("nictype", "ipvlan"),
                    ("parent", "x"),
                    ("mode", "l3"),
                ][..],
                "l2 or l3s",
            ),
            (
                &[("type", "nic"), ("nictype", "ipvlan")][..],
                "needs a parent",
            ),
            (
                &[("type", "nic"), ("network", "n"), ("vlan", "4095")][..],
                "1..4094",
            ),
            (
                &[("type", "nic"), ("nictype", "weird")][..],
                "unknown nictype",
            ),
            (&[("type", "nic")][..], "needs a network"),
            (
                &[("type", "nic"), ("nictype", "bridged")][..],
                "needs a parent",
            ),
            (
                &[("type", "nic"), ("network", "n"), ("mtu", "100")][..],
                "outside 1280..9000",
            ),
            (
                &[("type", "nic"), ("network", "n"), ("mtu", "x")][..],
                "invalid mtu",
            ),
            (
                &[("type", "nic"), ("network", "n"), ("ipv4.address", "x")][..],
                "invalid ipv4.address",
            ),
            (
                &[
                    ("type", "nic"),
                    ("network", "n"),
                    ("ipv6.address", "1.2.3.4"),
                ][..],
                "invalid ipv6.address",
            ),
        ] {
            let e = why("eth0", pairs);
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
        for bad in [
            &[("type", "nic"), ("network", "n"), ("hwaddr", "zz")][..],
            &[("type", "nic"), ("network", "n"), ("name", "a/b")][..],
            &[("type", "nic"), ("network", "n"), ("host_name", "eth9")][..],
            &[("type", "nic"), ("nictype", "bridged"), ("parent", "")][..],
        ] {
            assert!(DeviceSpec::parse("eth0", &map(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn proxies() {
        let m = map(&[
            ("type", "proxy"),
            ("listen", "tcp:127.0.0.1:8080"),
            ("connect", "tcp:127.0.0.1:80"),
        ]);
        let DeviceSpec::Proxy(p) = DeviceSpec::parse("web", &m).expect("proxy") else {
            panic!("not a proxy");
        };
        assert_eq!(p.spec.bind, ProxyBind::Host);
        assert_eq!(DeviceSpec::Proxy(p).to_map(), m);
        let with = |k: &str, v: &str| {
            let mut m = m.clone();
            m.insert(k.into(), v.into());
            DeviceSpec::parse("web", &m)
                .expect_err(&format!("{k}={v}"))
                .to_string()
        };
        assert!(with("nat", "yes").contains("nat=true"));
        assert!(with("proxy_protocol", "TRUE").contains("proxy_protocol"));
        assert!(with("bind", "elsewhere").contains("bind"));
        assert!(with("bogus", "1").contains("unknown proxy key"));
        assert!(with("listen", "nonsense").contains("listen"));
        assert!(
            why("web", &[("type", "proxy"), ("listen", "tcp:127.0.0.1:1")])
                .contains("needs connect")
        );
    }

    #[test]
    fn disks() {
        let root = map(&[("type", "disk"), ("path", "/"), ("pool", "default")]);
        let DeviceSpec::Disk(d) = DeviceSpec::parse("root", &root).expect("root") else {
            panic!("not a disk");
        };
        assert!(d.is_root() && !d.readonly);
        assert_eq!(d.pool.as_deref(), Some("default"));
        let vol = map(&[
            ("type", "disk"),
            ("path", "/data"),
            ("pool", "default"),
            ("source", "vol1"),
            ("readonly", "yes"),
        ]);
        let DeviceSpec::Disk(v) = DeviceSpec::parse("data", &vol).expect("volume") else {
            panic!("not a disk");
        };
        assert!(!v.is_root() && v.readonly && v.required);
        let m = v.mount("data").expect("mount").expect("not the root");
        assert_eq!(m.path.as_str(), "data");
        assert!(matches!(
            m.source,
            silo_proto::privileged::DiskSource::Volume { .. }
        ));
        assert_eq!(DeviceSpec::Disk(v).to_map(), vol);
        let host = map(&[
            ("type", "disk"),
            ("path", "/srv//x/"),
            ("source", "/srv/share"),
            ("required", "false"),
            ("propagation", "rslave"),
        ]);
        let DeviceSpec::Disk(h) = DeviceSpec::parse("h", &host).expect("host path") else {
            panic!("not a disk");
        };
        assert_eq!(h.path, "/srv/x");
        assert!(!h.required);
        assert_eq!(h.propagation, silo_proto::privileged::Propagation::Slave);
        for (pairs, want) in [
            (
                &[
                    ("type", "disk"),
                    ("path", "/x"),
                    ("source", "/s"),
                    ("propagation", "shared"),
                ][..],
                "mount over host paths",
            ),
            (
                &[("type", "disk"), ("path", "/x"), ("source", "rel")][..],
                "neither an absolute host path",
            ),
            (
                &[
                    ("type", "disk"),
                    ("path", "/x"),
                    ("source", "/s"),
                    ("size", "1GiB"),
                ][..],
                "only to the root disk",
            ),
            (
                &[("type", "disk"), ("path", "/x/../y"), ("source", "/s")][..],
                "'..'",
            ),
            (
                &[
                    ("type", "disk"),
                    ("path", "/x"),
                    ("pool", "p"),
                    ("source", "v/snap"),
                ][..],
                "snapshot",
            ),
            (
                &[
                    ("type", "disk"),
                    ("path", "/"),
                    ("pool", "p"),
                    ("source", "/s"),
                ][..],
                "takes a pool, not a source",
            ),
        ] {
            let e = why("d", pairs);
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
        for (pairs, want) in [
            (&[("type", "disk")][..], "needs a path"),
            (&[("type", "disk"), ("path", "data")][..], "not absolute"),
            (
                &[("type", "disk"), ("path", "/data")][..],
                "needs a source or a pool",
            ),
            (
                &[("type", "disk"), ("path", "/"), ("pool", "p"), ("x", "1")][..],
                "unknown disk key \"x\"",
            ),
            (
                &[
                    ("type", "disk"),
                    ("path", "/"),
                    ("pool", "p"),
                    ("readonly", "maybe"),
                ][..],
                "readonly",
            ),
        ] {
            let e = why("d", pairs);
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
    }
}
