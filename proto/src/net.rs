//! `silo-net`: bridges, veths, nftables, dnsmasq, proxy forwarders.
//!
//! silo-net only ever changes interfaces it created itself: each carries an interface alias
//! naming this silo installation, and the helper checks it before every change. Host
//! interfaces are reached only when the root policy names them. Instances are named, never
//! given by pid or fd: silo-net finds an instance's network namespace from the root-owned
//! record silo-priv's monitor wrote, so silod cannot point it at another process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::error::HelperResult;
use crate::names::{DeviceName, IfName};
use crate::proxy::ProxySpec;
use crate::types::{DnsDomain, Ipv4Cidr, Ipv6Cidr, MacAddr};
use crate::{HelperHello, InstanceName};

/// A bridge silo-net owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeInfo {
    /// Interface name.
    pub name: IfName,
    /// Kernel interface index.
    pub index: u32,
    /// Its IPv4 gateway address, if any.
    pub ipv4: Option<Ipv4Cidr>,
    /// Its IPv6 gateway address, if any.
    pub ipv6: Option<Ipv6Cidr>,
    /// MTU.
    pub mtu: u32,
    /// MAC address, "aa:bb:..".
    pub hwaddr: String,
    /// Whether the link is up.
    pub up: bool,
    /// The pid of its dnsmasq, when one runs.
    pub dnsmasq_pid: Option<u32>,
}

/// Everything about a managed bridge that silo-net makes real. `ensure_bridge` brings the
/// host to exactly this (creating the bridge when it is missing), so the same call creates,
/// updates and restores after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeSpec {
    /// The bridge's name.
    pub name: IfName,
    /// IPv4 gateway address and subnet.
    pub ipv4: Option<Ipv4Cidr>,
    /// IPv6 gateway address and subnet.
    pub ipv6: Option<Ipv6Cidr>,
    /// Masquerade IPv4 traffic leaving the subnet.
    pub ipv4_nat: bool,
    /// Masquerade IPv6 traffic leaving the subnet.
    pub ipv6_nat: bool,
    /// Serve DHCPv4.
    pub ipv4_dhcp: bool,
    /// Serve DHCPv6 (stateless unless `ipv6_dhcp_stateful`); router advertisements always.
    pub ipv6_dhcp: bool,
    /// Hand out DHCPv6 addresses instead of leaving them to SLAAC.
    pub ipv6_dhcp_stateful: bool,
    /// DHCPv4 lease time in seconds (dnsmasq's minimum is 120).
    pub dhcp_expiry: u32,
    /// MTU of the bridge.
    pub mtu: Option<u32>,
    /// The DNS domain dnsmasq answers for (`<instance>.<domain>`).
    pub dns_domain: DnsDomain,
    /// Run a DNS server at all (`dns.mode` none turns it off).
    pub dns: bool,
    /// `ipv4.dhcp.ranges`: where DHCPv4 hands out addresses; empty means the whole subnet
    /// but the gateway.
    pub ipv4_dhcp_ranges: Vec<DhcpRange<Ipv4Addr>>,
    /// `ipv6.dhcp.ranges`: where stateful DHCPv6 hands out addresses; empty means the whole
    /// subnet.
    pub ipv6_dhcp_ranges: Vec<DhcpRange<Ipv6Addr>>,
}

/// An inclusive DHCP address range, `first-last` in LXD's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpRange<A> {
    /// First address handed out.
    pub first: A,
    /// Last address handed out.
    pub last: A,
}

/// At most this many ranges per family: each is one dnsmasq argument.
pub const MAX_DHCP_RANGES: usize = 16;

/// Parses LXD's `FIRST-LAST[,FIRST-LAST...]` (spaces around the parts allowed).
pub fn parse_dhcp_ranges<A: std::str::FromStr>(
    key: &str,
    v: &str,
) -> Result<Vec<DhcpRange<A>>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part
            .split_once('-')
            .ok_or_else(|| format!("{key}: {part:?} is not a FIRST-LAST range"))?;
        let parse = |x: &str| {
            x.trim()
                .parse::<A>()
                .map_err(|_| format!("{key}: {:?} in {part:?} is not an address", x.trim()))
        };
        out.push(DhcpRange {
            first: parse(a)?,
            last: parse(b)?,
        });
    }
    if out.len() > MAX_DHCP_RANGES {
        return Err(format!(
            "{key}: {} ranges, at most {MAX_DHCP_RANGES}",
            out.len()
        ));
    }
    Ok(out)
}

impl BridgeSpec {
    /// Checks the DHCP ranges against the subnets: each range in order, inside its subnet,
    /// and clear of the network, broadcast and gateway addresses, so dnsmasq is never told
    /// to lease an address that cannot work. Both silod (for a clear 400) and silo-net (which
    /// trusts nothing silod sends) run it.
    pub fn check_dhcp_ranges(&self) -> Result<(), String> {
        if self.ipv4_dhcp_ranges.len() > MAX_DHCP_RANGES
            || self.ipv6_dhcp_ranges.len() > MAX_DHCP_RANGES
        {
            return Err(format!("at most {MAX_DHCP_RANGES} DHCP ranges per family"));
        }
        let v4: Vec<(IpAddr, IpAddr)> = self
            .ipv4_dhcp_ranges
            .iter()
            .map(|r| (r.first.into(), r.last.into()))
            .collect();
        check_ranges(
            "ipv4.dhcp.ranges",
            &v4,
            self.ipv4.map(|c| {
                (
                    (c.network().into(), c.prefix()),
                    vec![
                        ("network", c.network().into()),
                        ("broadcast", c.broadcast().into()),
                        ("gateway", c.addr().into()),
                    ],
                )
            }),
        )?;
        let v6: Vec<(IpAddr, IpAddr)> = self
            .ipv6_dhcp_ranges
            .iter()
            .map(|r| (r.first.into(), r.last.into()))
            .collect();
        check_ranges(
            "ipv6.dhcp.ranges",
            &v6,
            self.ipv6.map(|c| {
                (
                    (c.network().into(), c.prefix()),
                    vec![
                        ("network", c.network().into()),
                        ("gateway", c.addr().into()),
                    ],
                )
            }),
        )
    }
}

/// A subnet as (network address, prefix length), and the addresses in it no range may cover.
type RangeBounds = ((IpAddr, u8), Vec<(&'static str, IpAddr)>);

/// One family's ranges: each in order, inside the subnet, clear of its reserved addresses.
fn check_ranges(
    key: &str,
    ranges: &[(IpAddr, IpAddr)],
    subnet: Option<RangeBounds>,
) -> Result<(), String> {
    if ranges.is_empty() {
        return Ok(());
    }
    let Some(((net, prefix), reserved)) = subnet else {
        let family = if key.starts_with("ipv4") {
            "IPv4"
        } else {
            "IPv6"
        };
        return Err(format!("{key} is set but the network has no {family}"));
    };
    // Both families as u128, IPv4 in the low 32 bits.
    let int = |a: IpAddr| match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let bits: u32 = if net.is_ipv4() { 32 } else { 128 };
    let host_bits = bits - u32::from(prefix).min(bits);
    // checked_shr: a /0 would shift by the whole width.
    let top = |a: IpAddr| int(a).checked_shr(host_bits).unwrap_or(0);
    let inside = |a: IpAddr| a.is_ipv4() == net.is_ipv4() && top(a) == top(net);
    for &(first, last) in ranges {
        if int(first) > int(last) {
            return Err(format!("{key}: {first}-{last} ends before it starts"));
        }
        if !inside(first) || !inside(last) {
            return Err(format!(
                "{key}: {first}-{last} is not within the subnet {net}/{prefix}"
            ));
        }
        for (what, a) in &reserved {
            if (int(first)..=int(last)).contains(&int(*a)) {
                return Err(format!(
                    "{key}: {first}-{last} includes the {what} address {a}"
                ));
            }
        }
    }
    Ok(())
}

/// The subnets `auto` picked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetChoice {
    /// The gateway address of a free IPv4 /24.
    pub ipv4: Option<Ipv4Cidr>,
    /// The gateway address of a free IPv6 /64.
    pub ipv6: Option<Ipv6Cidr>,
}

/// An address on an interface, for `/1.0/networks/<n>/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfAddress {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// "global", "link" or "local".
    pub scope: String,
}

/// What `/1.0/networks/<n>/state` shows about any host interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    /// The interface.
    pub name: IfName,
    /// Its kind as LXD names it: "broadcast" (ethernet-like), "loopback", ...
    pub link_type: String,
    /// The kernel's kind ("bridge", "veth", "dummy", "" for physical).
    pub kind: String,
    /// MTU.
    pub mtu: u32,
    /// MAC address.
    pub hwaddr: String,
    /// Whether it is up.
    pub up: bool,
    /// Its addresses.
    pub addresses: Vec<IfAddress>,
    /// Bytes received, bytes sent, packets received, packets sent.
    pub counters: [u64; 4],
    /// Ports, when it is a bridge.
    pub ports: Vec<String>,
    /// Whether this silo owns it.
    pub owned: bool,
}

/// One DHCP lease dnsmasq handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Client host name ("" when it gave none).
    pub hostname: String,
    /// MAC address (empty for DHCPv6 leases, which carry a DUID).
    pub hwaddr: String,
    /// The address.
    pub address: IpAddr,
    /// When it ends, seconds since the epoch (0: never).
    pub expiry: i64,
}

/// A static DHCP host entry (LXD's dnsmasq.hosts file for one nic): the instance's name for
/// DNS and optionally fixed addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// The nic's MAC address.
    pub hwaddr: MacAddr,
    /// The instance it belongs to (its DNS name).
    pub instance: InstanceName,
    /// A fixed IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// A fixed IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
}

/// How a nic reaches the outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NicKind {
    /// A veth pair whose host end joins `bridge` (silo's, or a host bridge the policy names).
    Bridged {
        /// The bridge.
        bridge: IfName,
        /// The host end's name.
        host_name: IfName,
    },
    /// A macvlan (bridge mode) on a host interface the policy names.
    Macvlan {
        /// The parent.
        parent: IfName,
    },
    /// A host interface the policy names, moved into the instance while it runs.
    Physical {
        /// The host interface.
        parent: IfName,
    },
    /// A veth pair with no bridge (LXD's `p2p`): the host end stays on the host, with routes
    /// to `routes` through it.
    P2p {
        /// The host end's name (under silo's prefix).
        host_name: IfName,
        /// `ipv4.routes` and `ipv6.routes`: host routes to these ranges via the host end.
        routes: Vec<crate::types::IpRange>,
    },
    /// A veth pair whose instance end gets fixed addresses, routed by the host (LXD's
    /// `routed`): host routes to each address via the host end, proxy ARP/NDP entries on
    /// `parent` when given, and a default route inside via a link-local gateway.
    Routed {
        /// The host end's name (under silo's prefix).
        host_name: IfName,
        /// A host interface the policy names, to answer ARP/NDP for the addresses on.
        parent: Option<IfName>,
        /// The addresses and gateways inside.
        addrs: NicAddrs,
    },
    /// An ipvlan on a host interface the policy names, with fixed addresses.
    Ipvlan {
        /// The parent.
        parent: IfName,
        /// `mode`: l2 or l3s.
        mode: IpvlanMode,
        /// The addresses and gateways inside.
        addrs: NicAddrs,
    },
}

/// `ipvlan`'s `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpvlanMode {
    /// Layer 2: the parent's neighbours see the instance's addresses on the parent's MAC.
    L2,
    /// Layer 3 with the host's netfilter (LXD's default).
    L3s,
}

/// At most this many addresses (or routes) per family on one nic.
pub const MAX_NIC_ADDRS: usize = 64;

/// Fixed addresses of a routed or ipvlan nic and how the instance reaches the outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicAddrs {
    /// `ipv4.address` (a comma list), each a /32 inside.
    pub ipv4: Vec<Ipv4Addr>,
    /// `ipv6.address`, each a /128 inside.
    pub ipv6: Vec<Ipv6Addr>,
    /// `ipv4.gateway`: a default route inside (auto), or none.
    pub ipv4_gateway: bool,
    /// `ipv6.gateway`.
    pub ipv6_gateway: bool,
    /// `ipv4.host_address`: the host end's IPv4 address, the instance's gateway (routed).
    pub ipv4_host_address: Ipv4Addr,
    /// `ipv6.host_address`.
    pub ipv6_host_address: Ipv6Addr,
}

/// LXD's host-side gateway of a routed nic, IPv4.
pub const ROUTED_HOST_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
/// LXD's host-side gateway of a routed nic, IPv6.
pub const ROUTED_HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

impl NicAddrs {
    /// Every address, both families.
    pub fn all(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(self.ipv6.iter().map(|a| IpAddr::V6(*a)))
    }

    /// The checks that need nothing but the value: counts, unicast addresses, no duplicates.
    pub fn check(&self) -> Result<(), String> {
        if self.ipv4.len() > MAX_NIC_ADDRS || self.ipv6.len() > MAX_NIC_ADDRS {
            return Err(format!("at most {MAX_NIC_ADDRS} addresses per family"));
        }
        let all: Vec<IpAddr> = self.all().collect();
        for (i, a) in all.iter().enumerate() {
            check_unicast(*a)?;
            if all[..i].contains(a) {
                return Err(format!("address {a} is given twice"));
            }
        }
        check_unicast(IpAddr::V4(self.ipv4_host_address))?;
        check_unicast(IpAddr::V6(self.ipv6_host_address))?;
        Ok(())
    }
}

/// An address a nic may carry: not unspecified, loopback, multicast or broadcast.
pub fn check_unicast(a: IpAddr) -> Result<(), String> {
    let bad = match a {
        IpAddr::V4(v) => {
            v.is_unspecified() || v.is_loopback() || v.is_multicast() || v.is_broadcast()
        }
        IpAddr::V6(v) => v.is_unspecified() || v.is_loopback() || v.is_multicast(),
    };
    if bad {
        Err(format!("{a} is not a unicast address"))
    } else {
        Ok(())
    }
}

/// One nic of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// Its name inside the instance (`eth0`).
    pub name: IfName,
    /// Its MAC address inside the instance (physical nics keep their own).
    pub hwaddr: Option<MacAddr>,
    /// MTU inside the instance.
    pub mtu: Option<u32>,
    /// What it is.
    pub kind: NicKind,
    /// `vlan`: the VLAN the nic is on (a bridge port's VLAN, or a VLAN sub-interface of a
    /// macvlan or ipvlan parent).
    pub vlan: Option<u16>,
    /// `limits.ingress` and `limits.egress` (`limits.max` sets both), bits per second.
    pub limits: NicLimits,
    /// `security.mac_filtering`/`ipv4_filtering`/`ipv6_filtering` (bridged nics): what the
    /// instance may send from. The MAC is `hwaddr`, which must be set.
    pub filter: Option<NicFiltering>,
}

/// Anti-spoofing on a bridged nic: frames only from its MAC, and, per family when set,
/// packets only from these addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicFiltering {
    /// `security.ipv4_filtering`: the IPv4 sources allowed.
    pub ipv4: Option<Vec<Ipv4Addr>>,
    /// `security.ipv6_filtering`: the IPv6 sources allowed (its link-local address among them).
    pub ipv6: Option<Vec<Ipv6Addr>>,
}

/// Bandwidth limits of a nic, bits per second, as the instance sees its traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicLimits {
    /// Traffic into the instance.
    pub ingress: Option<u64>,
    /// Traffic out of the instance.
    pub egress: Option<u64>,
}

/// Parses LXD's bit rates (`100Mbit`, `1Gbit`, `512kbit`, `1000bit`) into bits per second.
pub fn parse_bit_rate(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{v:?} is not a bit rate such as 100Mbit"))?;
    let mult: u64 = match unit.trim() {
        "" | "bit" => 1,
        "kbit" => 1_000,
        "Mbit" => 1_000_000,
        "Gbit" => 1_000_000_000,
        "Tbit" => 1_000_000_000_000,
        "Kibit" => 1 << 10,
        "Mibit" => 1 << 20,
        "Gibit" => 1 << 30,
        "Tibit" => 1 << 40,
        u => {
            return Err(format!(
                "{v:?}: unknown unit {u:?} (bit, kbit, Mbit, Gbit, Tbit)"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|r| *r > 0)
        .ok_or_else(|| format!("{v:?} is not a usable bit rate"))
}

/// The network helper's RPC surface.
#[tarpc::service]
pub trait Net {
    /// Who answers, for `GET /1.0`.
    async fn hello() -> HelperHello;
    /// Makes a silo bridge match `spec`: creates it when missing (refusing subnets that overlap
    /// the host's routes and addresses, and names of interfaces silo does not own), sets its
    /// addresses and MTU, programs NAT in silo's own nft table and (re)starts its dnsmasq.
    async fn ensure_bridge(spec: BridgeSpec) -> HelperResult<BridgeInfo>;
    /// Reports one bridge this silo owns.
    async fn bridge_info(name: IfName) -> HelperResult<BridgeInfo>;
    /// Lists the bridges this silo owns.
    async fn list_bridges() -> HelperResult<Vec<BridgeInfo>>;
    /// Deletes a bridge this silo owns with its dnsmasq, NAT rules and files; refuses any
    /// other interface.
    async fn delete_bridge(name: IfName) -> HelperResult<()>;
    /// Picks free subnets for `auto` from the host's routes and addresses (never by probing),
    /// also avoiding `avoid` (silo's networks that are not up).
    async fn pick_subnets(
        ipv4: bool,
        ipv6: bool,
        avoid4: Vec<Ipv4Cidr>,
        avoid6: Vec<Ipv6Cidr>,
    ) -> HelperResult<SubnetChoice>;
    /// The host's interfaces (for `GET /1.0/networks`).
    async fn list_links() -> HelperResult<Vec<LinkState>>;
    /// One host interface's state.
    async fn link_state(name: IfName) -> HelperResult<LinkState>;
    /// A silo bridge's DHCP leases.
    async fn leases(bridge: IfName) -> HelperResult<Vec<Lease>>;
    /// Writes (or replaces) a nic's static host entry on a silo bridge.
    async fn set_host_entry(bridge: IfName, entry: HostEntry) -> HelperResult<()>;
    /// Removes a nic's static host entry.
    async fn remove_host_entry(bridge: IfName, hwaddr: MacAddr) -> HelperResult<()>;
    /// Gives a running instance a nic. Returns the host-side name (veth end) when there is one.
    async fn attach_nic(instance: InstanceName, nic: NicSpec) -> HelperResult<Option<IfName>>;
    /// Takes a nic away from a running instance (physical ones go back to the host under
    /// their own name); a stopped instance's nics are already gone with its namespace.
    async fn detach_nic(instance: InstanceName, nic: NicSpec) -> HelperResult<()>;
    /// Starts (or restarts) the forwarder of an instance's proxy device. Host-side listen
    /// addresses are checked against the policy (ports below 1024, unix socket paths).
    async fn start_proxy(
        instance: InstanceName,
        device: DeviceName,
        spec: ProxySpec,
    ) -> HelperResult<()>;
    /// Stops one proxy device's forwarder (`None`: all of the instance's).
    async fn stop_proxy(instance: InstanceName, device: Option<DeviceName>) -> HelperResult<()>;
    /// What the root policy adds to the rules for managed networks (so silod can refuse with
    /// a clear 400 before asking for anything; silo-net checks again on every request).
    async fn network_rules() -> NetworkRules;
    /// Binds a listening TCP socket for silod's HTTPS API on a port below 1024 that the root
    /// policy lists in `https_privileged_ports`, and hands it over on the fd channel. silod
    /// binds ports from 1024 up itself.
    async fn bind_api_listener(addr: std::net::SocketAddr)
        -> HelperResult<crate::fdpass::FdTicket>;
}

/// The root policy's additions to the managed-network rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRules {
    /// Ranges besides the private ones (`network_ranges`).
    pub ranges: Vec<crate::types::IpRange>,
    /// Bridge name prefixes besides `silo` (`network_name_prefixes`).
    pub name_prefixes: Vec<String>,
}

impl NetworkRules {
    /// Checks a bridge's name and subnets against the rules: a silo-owned name, private
    /// subnets or ones the policy lists.
    pub fn check_bridge(
        &self,
        name: &str,
        ipv4: Option<&Ipv4Cidr>,
        ipv6: Option<&Ipv6Cidr>,
    ) -> Result<(), String> {
        crate::types::check_bridge_name(name, &self.name_prefixes)?;
        if let Some(c) = ipv4 {
            crate::types::check_managed_subnet(
                "ipv4.address",
                IpAddr::V4(c.network()),
                c.prefix(),
                &self.ranges,
            )?;
        }
        if let Some(c) = ipv6 {
            crate::types::check_managed_subnet(
                "ipv6.address",
                IpAddr::V6(c.network()),
                c.prefix(),
                &self.ranges,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v4: &str, v6: &str) -> BridgeSpec {
        BridgeSpec {
            name: IfName::new("br1").expect("n"),
            ipv4: Some(v4.parse().expect("c")),
            ipv6: Some(v6.parse().expect("c")),
            ipv4_nat: false,
            ipv6_nat: false,
            ipv4_dhcp: true,
            ipv6_dhcp: true,
            ipv6_dhcp_stateful: true,
            dhcp_expiry: 3600,
            mtu: None,
            dns_domain: DnsDomain::new("silo").expect("d"),
            dns: true,
            ipv4_dhcp_ranges: Vec::new(),
            ipv6_dhcp_ranges: Vec::new(),
        }
    }

    #[test]
    fn bit_rates_and_nic_addresses() {
        assert_eq!(parse_bit_rate("100Mbit"), Ok(100_000_000));
        assert_eq!(parse_bit_rate("512kbit"), Ok(512_000));
        assert_eq!(parse_bit_rate("1Gibit"), Ok(1 << 30));
        assert_eq!(parse_bit_rate("1000"), Ok(1000));
        for bad in ["", "0bit", "10MB", "fast", "99999999999999999999Tbit"] {
            assert!(parse_bit_rate(bad).is_err(), "{bad}");
        }
        let ok = NicAddrs {
            ipv4: vec![Ipv4Addr::new(10, 0, 0, 5)],
            ipv6: vec!["fd00::5".parse().expect("v6")],
            ipv4_gateway: true,
            ipv6_gateway: true,
            ipv4_host_address: ROUTED_HOST_V4,
            ipv6_host_address: ROUTED_HOST_V6,
        };
        assert_eq!(ok.check(), Ok(()));
        let mut twice = ok.clone();
        twice.ipv4.push(Ipv4Addr::new(10, 0, 0, 5));
        assert!(twice.check().expect_err("twice").contains("given twice"));
        let mut multicast = ok.clone();
        multicast.ipv4 = vec![Ipv4Addr::new(224, 0, 0, 1)];
        assert!(multicast.check().is_err());
        let mut many = ok.clone();
        many.ipv6 = (0..=MAX_NIC_ADDRS as u16)
            .map(|i| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i + 1))
            .collect();
        assert!(many.check().expect_err("many").contains("at most"));
    }

    #[test]
    fn dhcp_ranges_parse_as_lxd_writes_them() {
        let r: Vec<DhcpRange<Ipv4Addr>> =
            parse_dhcp_ranges("k", "10.0.0.10-10.0.0.20, 10.0.0.30 - 10.0.0.40,").expect("ok");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].first, Ipv4Addr::new(10, 0, 0, 30));
        assert!(parse_dhcp_ranges::<Ipv4Addr>("k", "")
            .expect("empty")
            .is_empty());
        for (bad, why) in [
            ("10.0.0.10", "not a FIRST-LAST range"),
            (
                "10.0.0.10-banana",
                "\"banana\" in \"10.0.0.10-banana\" is not an address",
            ),
        ] {
            let e = parse_dhcp_ranges::<Ipv4Addr>("ipv4.dhcp.ranges", bad).expect_err(bad);
            assert!(
                e.starts_with("ipv4.dhcp.ranges: ") && e.contains(why),
                "{e}"
            );
        }
        let many = vec!["10.0.0.10-10.0.0.11"; MAX_DHCP_RANGES + 1].join(",");
        assert!(parse_dhcp_ranges::<Ipv4Addr>("k", &many).is_err());
    }

    #[test]
    fn dhcp_ranges_must_fit_the_subnet() {
        let base = spec("10.1.2.1/24", "fd42:1:2:3::1/64");
        let with = |r4: &str, r6: &str| {
            let mut s = base.clone();
            s.ipv4_dhcp_ranges = parse_dhcp_ranges("k", r4).expect("parse");
            s.ipv6_dhcp_ranges = parse_dhcp_ranges("k", r6).expect("parse");
            s.check_dhcp_ranges()
        };
        assert_eq!(
            with("10.1.2.2-10.1.2.254", "fd42:1:2:3::2-fd42:1:2:3::ffff"),
            Ok(())
        );
        for (r4, r6, why) in [
            ("10.1.2.0-10.1.2.9", "", "network address"),
            ("10.1.2.200-10.1.2.255", "", "broadcast address"),
            ("10.1.2.1-10.1.2.9", "", "gateway address"),
            ("10.1.3.2-10.1.3.9", "", "not within the subnet 10.1.2.0/24"),
            ("10.1.2.9-10.1.2.2", "", "ends before it starts"),
            ("", "fd42:1:2:4::2-fd42:1:2:4::9", "not within the subnet"),
            ("", "fd42:1:2:3::-fd42:1:2:3::9", "network address"),
        ] {
            let e = with(r4, r6).expect_err(why);
            assert!(e.contains(why), "{r4} {r6}: {e}");
        }
        let mut none = base.clone();
        none.ipv4 = None;
        none.ipv4_dhcp_ranges = parse_dhcp_ranges("k", "10.1.2.2-10.1.2.9").expect("parse");
        assert!(none
            .check_dhcp_ranges()
            .expect_err("no v4")
            .contains("no IPv4"));
    }
}
