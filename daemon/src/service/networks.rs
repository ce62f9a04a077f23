//! Networks: records in the database, the work in silo-net. Also what instances' `nic` and
//! `proxy` devices turn into at start, hot-plug and stop.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Value};
use silo_proto::net::{
    parse_bit_rate, parse_dhcp_ranges, BridgeSpec, HostEntry, NicKind, NicLimits, NicSpec,
};
use silo_proto::proxy::ProxySpec;
use silo_proto::types::{DnsDomain, Ipv4Cidr, Ipv6Cidr, MacAddr};
use silo_proto::{DeviceName, IfName, InstanceName};

use crate::helpers::Helpers;
use crate::model::devices::{DeviceType, NicDevice, ProxyDevice};
use crate::service::profiles::Device;
use crate::service::{DomainError, Services};
use crate::store::db::Db;

pub use crate::model::network::Network;

/// The bridge a fresh silo makes, and the default profile's `eth0` joins.
pub const DEFAULT_BRIDGE: &str = "silobr0";

fn bad(msg: impl Into<String>) -> DomainError {
    DomainError::BadRequest(msg.into())
}

fn is_true(v: Option<&String>, default: bool) -> bool {
    crate::model::parse::is_true_or(v.map(String::as_str), default)
}

fn check_bool(k: &str, v: &str) -> Result<(), DomainError> {
    if v.is_empty() {
        return Ok(());
    }
    crate::model::parse::parse_bool(v)
        .map(|_| ())
        .map_err(|e| bad(format!("invalid value for {k}: {e}")))
}

/// LXD's duration syntax for `ipv4.dhcp.expiry`, in seconds.
pub fn parse_expiry(v: &str) -> Result<u32, DomainError> {
    Ok(crate::model::parse::parse_lease_time(v)?)
}

/// Checks a network's type and config keys; `auto` stays for [`create`] to resolve.
pub fn validate(kind: &str, config: &BTreeMap<String, String>) -> Result<(), DomainError> {
    match kind {
        "bridge" => {
            for (k, v) in config {
                match k.as_str() {
                    "ipv4.address" => {
                        if !matches!(v.as_str(), "auto" | "none" | "") {
                            v.parse::<Ipv4Cidr>()
                                .map_err(|e| bad(format!("invalid value for ipv4.address: {e}")))?;
                        }
                    }
                    "ipv6.address" => {
                        if !matches!(v.as_str(), "auto" | "none" | "") {
                            v.parse::<Ipv6Cidr>()
                                .map_err(|e| bad(format!("invalid value for ipv6.address: {e}")))?;
                        }
                    }
                    "ipv4.nat" | "ipv6.nat" | "ipv4.dhcp" | "ipv6.dhcp" | "ipv6.dhcp.stateful" => {
                        check_bool(k, v)?
                    }
                    "ipv4.dhcp.expiry" => {
                        parse_expiry(v)?;
                    }
                    "ipv4.dhcp.ranges" => {
                        parse_dhcp_ranges::<Ipv4Addr>(k, v).map_err(bad)?;
                    }
                    "ipv6.dhcp.ranges" => {
                        parse_dhcp_ranges::<Ipv6Addr>(k, v).map_err(bad)?;
                    }
                    "bridge.mtu" => {
                        let m: u32 = v
                            .parse()
                            .map_err(|_| bad(format!("invalid value {v:?} for bridge.mtu")))?;
                        if !(1280..=9000).contains(&m) {
                            return Err(bad(format!("bridge.mtu {m} is outside 1280..9000")));
                        }
                    }
                    "bridge.driver" => {
                        if v != "native" && !v.is_empty() {
                            return Err(bad(format!(
                                "bridge.driver {v:?} is not supported on this host: only \"native\" (openvswitch is not installed)"
                            )));
                        }
                    }
                    "dns.domain" => {
                        DnsDomain::new(v.clone()).map_err(|e| bad(e.to_string()))?;
                    }
                    "dns.mode" => {
                        if !matches!(v.as_str(), "managed" | "none" | "") {
                            return Err(bad(format!(
                                "invalid value {v:?} for dns.mode: \"managed\" or \"none\""
                            )));
                        }
                    }
                    k if k.starts_with("user.") => {}
                    other => {
                        return Err(bad(format!(
                            "unknown configuration key {other:?} for a bridge network"
                        )))
                    }
                }
            }
            Ok(())
        }
        "macvlan" | "physical" => {
            for (k, v) in config {
                match k.as_str() {
                    "parent" => {
                        IfName::new(v.clone()).map_err(|e| bad(e.to_string()))?;
                    }
                    "mtu" => {
                        v.parse::<u32>()
                            .map_err(|_| bad(format!("invalid value {v:?} for mtu")))?;
                    }
                    k if k.starts_with("user.") => {}
                    other => {
                        return Err(bad(format!(
                            "unknown configuration key {other:?} for a {kind} network"
                        )))
                    }
                }
            }
            if !config.contains_key("parent") {
                return Err(bad(format!("a {kind} network needs a parent interface")));
            }
            Ok(())
        }
        "sriov" => Err(bad(
            "network type \"sriov\" is not supported on this host: it has no SR-IOV capable network card",
        )),
        "ovn" => Err(bad(
            "network type \"ovn\" is not supported on this host: it needs an OVN cluster (ovn-host and openvswitch)",
        )),
        "" => Err(bad("missing network type")),
        other => Err(bad(format!("unknown network type {other:?}"))),
    }
}

/// The bridge silo-net makes of a bridge network's (resolved) config.
pub fn bridge_spec(n: &Network) -> Result<BridgeSpec, DomainError> {
    let c = &n.config;
    let ipv4 = match c.get("ipv4.address").map(String::as_str) {
        None | Some("") | Some("none") => None,
        Some(v) => Some(v.parse::<Ipv4Cidr>().map_err(|e| bad(e.to_string()))?),
    };
    let ipv6 = match c.get("ipv6.address").map(String::as_str) {
        None | Some("") | Some("none") => None,
        Some(v) => Some(v.parse::<Ipv6Cidr>().map_err(|e| bad(e.to_string()))?),
    };
    let spec = BridgeSpec {
        name: IfName::new(n.name.clone()).map_err(|e| bad(e.to_string()))?,
        ipv4,
        ipv6,
        ipv4_nat: is_true(c.get("ipv4.nat"), false),
        ipv6_nat: is_true(c.get("ipv6.nat"), false),
        ipv4_dhcp: is_true(c.get("ipv4.dhcp"), true),
        ipv6_dhcp: is_true(c.get("ipv6.dhcp"), true),
        ipv6_dhcp_stateful: is_true(c.get("ipv6.dhcp.stateful"), false),
        dhcp_expiry: match c.get("ipv4.dhcp.expiry") {
            Some(v) if !v.is_empty() => parse_expiry(v)?,
            _ => 3600,
        },
        mtu: c.get("bridge.mtu").and_then(|m| m.parse().ok()),
        dns_domain: DnsDomain::new(
            c.get("dns.domain")
                .filter(|d| !d.is_empty())
                .cloned()
                .unwrap_or_else(|| "silo".into()),
        )
        .map_err(|e| bad(e.to_string()))?,
        dns: c.get("dns.mode").map(String::as_str) != Some("none"),
        ipv4_dhcp_ranges: parse_dhcp_ranges(
            "ipv4.dhcp.ranges",
            c.get("ipv4.dhcp.ranges").map(String::as_str).unwrap_or(""),
        )
        .map_err(bad)?,
        ipv6_dhcp_ranges: parse_dhcp_ranges(
            "ipv6.dhcp.ranges",
            c.get("ipv6.dhcp.ranges").map(String::as_str).unwrap_or(""),
        )
        .map_err(bad)?,
    };
    spec.check_dhcp_ranges().map_err(bad)?;
    Ok(spec)
}

/// All network records.
pub fn list(db: &Db) -> Result<Vec<Network>, DomainError> {
    Ok(crate::store::networks::all(db)?)
}

/// One network record.
pub fn get(db: &Db, name: &str) -> Result<Network, DomainError> {
    Ok(crate::store::networks::get(db, name)?)
}

fn save(db: &Db, n: &Network, insert: bool) -> Result<(), DomainError> {
    if insert {
        crate::store::networks::insert(db, n)?;
    } else {
        crate::store::networks::update(db, n)?;
    }
    Ok(())
}

/// Replaces `auto` addresses with free subnets silo-net picks (avoiding the other networks'
/// subnets), and fills LXD's defaults for a new bridge (NAT on for `auto` subnets).
async fn resolve_auto(
    db: &Db,
    helpers: &Helpers,
    n: &mut Network,
    fresh: bool,
) -> Result<(), DomainError> {
    if n.kind != "bridge" {
        return Ok(());
    }
    if fresh {
        // LXD's defaults for a new bridge: both families auto with NAT.
        for k in ["ipv4.address", "ipv6.address"] {
            n.config.entry(k.into()).or_insert_with(|| "auto".into());
        }
    }
    let want4 = n.config.get("ipv4.address").map(String::as_str) == Some("auto");
    let want6 = n.config.get("ipv6.address").map(String::as_str) == Some("auto");
    if !want4 && !want6 {
        return Ok(());
    }
    let others: Vec<Network> = list(db)?.into_iter().filter(|o| o.name != n.name).collect();
    let avoid4 = others
        .iter()
        .filter_map(|o| o.config.get("ipv4.address").and_then(|v| v.parse().ok()))
        .collect();
    let avoid6 = others
        .iter()
        .filter_map(|o| o.config.get("ipv6.address").and_then(|v| v.parse().ok()))
        .collect();
    let choice = helpers
        .net
        .pick_subnets(want4, want6, avoid4, avoid6)
        .await?;
    if let Some(c) = choice.ipv4 {
        n.config.insert("ipv4.address".into(), c.to_string());
        n.config
            .entry("ipv4.nat".into())
            .or_insert_with(|| "true".into());
    }
    if let Some(c) = choice.ipv6 {
        n.config.insert("ipv6.address".into(), c.to_string());
        n.config
            .entry("ipv6.nat".into())
            .or_insert_with(|| "true".into());
    }
    Ok(())
}

/// The root policy's additions to the managed-network rules (silod cannot read the policy).
async fn network_rules(helpers: &Helpers) -> Result<silo_proto::net::NetworkRules, DomainError> {
    Ok(helpers.net.network_rules().await?)
}

/// Creates a network. A bridge is made real at once; nothing remains if that fails.
pub async fn create(
    db: &Db,
    helpers: &Helpers,
    name: &str,
    kind: &str,
    description: &str,
    config: BTreeMap<String, String>,
) -> Result<Network, DomainError> {
    let kind = if kind.is_empty() { "bridge" } else { kind };
    IfName::new(name.to_string()).map_err(|e| bad(format!("invalid network name: {e}")))?;
    validate(kind, &config)?;
    let rules = if kind == "bridge" {
        let rules = network_rules(helpers).await?;
        silo_proto::types::check_bridge_name(name, &rules.name_prefixes).map_err(bad)?;
        Some(rules)
    } else {
        None
    };
    if list(db)?.iter().any(|n| n.name == name) {
        return Err(DomainError::Conflict(format!(
            "network {name:?} already exists"
        )));
    }
    let mut n = Network {
        name: name.into(),
        kind: kind.into(),
        description: description.into(),
        config,
    };
    resolve_auto(db, helpers, &mut n, true).await?;
    if let Some(rules) = rules {
        let spec = bridge_spec(&n)?;
        rules
            .check_bridge(&n.name, spec.ipv4.as_ref(), spec.ipv6.as_ref())
            .map_err(bad)?;
        helpers.net.ensure_bridge(spec).await?;
    }
    if let Err(e) = save(db, &n, true) {
        if n.kind == "bridge" {
            if let Ok(i) = IfName::new(n.name.clone()) {
                let _ = helpers.net.delete_bridge(i).await;
            }
        }
        return Err(e);
    }
    tracing::info!(network = %n.name, kind = %n.kind, "network created");
    Ok(n)
}

/// Changes a network's description and config (made real before it is saved).
pub async fn update(db: &Db, helpers: &Helpers, mut n: Network) -> Result<(), DomainError> {
    validate(&n.kind, &n.config)?;
    resolve_auto(db, helpers, &mut n, false).await?;
    if n.kind == "bridge" {
        let spec = bridge_spec(&n)?;
        network_rules(helpers)
            .await?
            .check_bridge(&n.name, spec.ipv4.as_ref(), spec.ipv6.as_ref())
            .map_err(bad)?;
        helpers.net.ensure_bridge(spec).await?;
    }
    save(db, &n, false)
}

/// Deletes an unused network.
pub async fn delete(db: &Db, helpers: &Helpers, name: &str) -> Result<(), DomainError> {
    let n = get(db, name)?;
    let users = used_by(db, name)?;
    if !users.is_empty() {
        return Err(DomainError::BadRequest(format!(
            "network {name:?} is in use by {}",
            users.join(", ")
        )));
    }
    if n.kind == "bridge" {
        let i = IfName::new(n.name.clone()).map_err(|e| bad(e.to_string()))?;
        match helpers.net.delete_bridge(i).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    crate::store::networks::delete(db, name)?;
    tracing::info!(network = %name, "network deleted");
    Ok(())
}

/// Brings every bridge network up (silod's start; silo-net starts from nothing).
pub async fn bring_up_all(db: &Db, helpers: &Helpers) {
    let Ok(all) = list(db) else { return };
    for n in all.into_iter().filter(|n| n.kind == "bridge") {
        let r = async {
            helpers.net.ensure_bridge(bridge_spec(&n)?).await?;
            Ok::<(), DomainError>(())
        }
        .await;
        match r {
            Ok(()) => tracing::info!(network = %n.name, "network up"),
            Err(e) => {
                tracing::error!(network = %n.name, error = %e, "bringing the network up failed")
            }
        }
    }
}

/// Whether a nic device refers to network `name` (by `network`, or by `parent` for bridged
/// nics on a silo bridge).
fn nic_uses(d: &Device, name: &str) -> bool {
    DeviceType::of(d) == DeviceType::Nic
        && (d.get("network").map(String::as_str) == Some(name)
            || d.get("parent").map(String::as_str) == Some(name))
}

/// The instances and profiles whose devices use a network, as API URLs.
pub fn used_by(db: &Db, name: &str) -> Result<Vec<String>, DomainError> {
    let mut out = Vec::new();
    for p in crate::store::profiles::all(db)? {
        if p.devices.values().any(|d| nic_uses(d, name)) {
            out.push(format!("/1.0/profiles/{}", p.name));
        }
    }
    for i in crate::store::instances::all(db)? {
        let profiles =
            crate::service::expansion::load_profiles(db, &i.profiles).unwrap_or_default();
        let (_, devs) = crate::model::profile::expand(&profiles, &i.config, &i.devices);
        if devs.values().any(|d| nic_uses(d, name)) {
            out.push(format!("/1.0/instances/{}", i.name));
        }
    }
    Ok(out)
}

// ---- nic and proxy devices ----

/// What one nic device of an instance becomes.
#[derive(Debug, Clone)]
pub struct NicPlan {
    /// The device's name.
    pub device: String,
    /// For silo-net.
    pub spec: NicSpec,
    /// A managed bridge's name, when the nic gets a dnsmasq host entry there.
    pub managed_bridge: Option<IfName>,
    /// Static addresses for the host entry.
    pub ipv4: Option<Ipv4Addr>,
    /// Static IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
}

/// The database's part of checking a nic (its map already read by
/// [`crate::model::devices::NicDevice::parse`]): the network it names must exist, and its
/// static addresses must fit it.
pub fn validate_nic(db: &Db, nic: &NicDevice) -> Result<(), String> {
    if let Some(net) = nic.network() {
        let n = get(db, net).map_err(|_| format!("network {net:?} not found"))?;
        check_static_in_subnet(&n, nic.map())?;
    }
    Ok(())
}

/// A static address on a managed bridge is a DHCP reservation in that bridge's subnet: one
/// outside it, or the bridge's own, network or broadcast address, would never be handed out
/// and the instance would boot without one, so it is refused up front, as LXD does.
fn check_static_in_subnet(n: &Network, d: &Device) -> Result<(), String> {
    if n.kind != "bridge" {
        for k in ["ipv4.address", "ipv6.address"] {
            if d.contains_key(k) {
                return Err(format!(
                    "{k} is a DHCP reservation on a managed bridge; network {:?} is a {}",
                    n.name, n.kind
                ));
            }
        }
        return Ok(());
    }
    let spec = bridge_spec(n).map_err(|e| e.to_string())?;
    if let Some(a) = d.get("ipv4.address") {
        let a: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("invalid ipv4.address {a:?}"))?;
        let Some(net) = spec.ipv4 else {
            return Err(format!(
                "ipv4.address {a}: network {:?} has no IPv4 (ipv4.address is none)",
                n.name
            ));
        };
        if !net.overlaps(a, 32) {
            return Err(format!(
                "ipv4.address {a} is not within network {:?}'s subnet {}/{}",
                n.name,
                net.network(),
                net.prefix()
            ));
        }
        if a == net.addr() || a == net.network() || a == net.broadcast() {
            return Err(format!(
                "ipv4.address {a} is network {:?}'s own, network or broadcast address",
                n.name
            ));
        }
    }
    if let Some(a) = d.get("ipv6.address") {
        let a: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("invalid ipv6.address {a:?}"))?;
        let Some(net) = spec.ipv6 else {
            return Err(format!(
                "ipv6.address {a}: network {:?} has no IPv6 (ipv6.address is none)",
                n.name
            ));
        };
        if !net.overlaps(a, 128) {
            return Err(format!(
                "ipv6.address {a} is not within network {:?}'s subnet {}/{}",
                n.name,
                net.network(),
                net.prefix()
            ));
        }
        if a == net.addr() || a == net.network() {
            return Err(format!(
                "ipv6.address {a} is network {:?}'s own or network address",
                n.name
            ));
        }
    }
    Ok(())
}

/// What a nic on a managed network claims there: its static addresses (parsed, so `fd42::05`
/// and `fd42::5` compare equal) and its MAC address (the `hwaddr` key, else the one silo
/// recorded in `volatile.<device>.hwaddr`).
struct NicClaim {
    device: String,
    network: String,
    addresses: Vec<std::net::IpAddr>,
    mac: Option<MacAddr>,
}

fn nic_claims(
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
) -> Vec<NicClaim> {
    let mut out = Vec::new();
    for (dn, d) in devices {
        if DeviceType::of(d) != DeviceType::Nic {
            continue;
        }
        let Some(net) = d.get("network") else {
            continue;
        };
        let addresses = ["ipv4.address", "ipv6.address"]
            .iter()
            .filter_map(|k| d.get(*k).and_then(|a| a.parse().ok()))
            .collect();
        let mac = d
            .get("hwaddr")
            .or_else(|| config.get(&format!("volatile.{dn}.hwaddr")))
            .and_then(|m| m.parse().ok());
        out.push(NicClaim {
            device: dn.clone(),
            network: net.clone(),
            addresses,
            mac,
        });
    }
    out
}

/// The first thing two sets of nic claims both hold on one network, described.
fn clash(mine: &NicClaim, theirs: &NicClaim) -> Option<String> {
    if mine.network != theirs.network {
        return None;
    }
    if let Some(a) = mine.addresses.iter().find(|a| theirs.addresses.contains(a)) {
        return Some(format!("IP address \"{a}\""));
    }
    match (&mine.mac, &theirs.mac) {
        (Some(a), Some(b)) if a == b => Some(format!("MAC address \"{a}\"")),
        _ => None,
    }
}

/// Checks an instance's (expanded) nics on managed networks: each static address within its
/// network's subnet as it is now, and no static address or MAC address that another nic on the
/// same network already holds, since dnsmasq would give one address to two MACs (or one MAC's
/// lease to two instances) and both would fight over it. Run on the expanded devices (a
/// profile can carry the address) at create, edit and start, as LXD checks at validation and
/// again at start, with its wording and its 409.
pub fn check_nic_claims(
    db: &Db,
    instance: &str,
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
) -> Result<(), DomainError> {
    for (dn, d) in devices {
        if DeviceType::of(d) != DeviceType::Nic {
            continue;
        }
        if let Some(net) = d.get("network") {
            let n = get(db, net)?;
            check_static_in_subnet(&n, d).map_err(|e| bad(format!("nic {dn:?}: {e}")))?;
        }
    }
    let mine = nic_claims(config, devices);
    if mine.is_empty() {
        return Ok(());
    }
    for (i, a) in mine.iter().enumerate() {
        for b in &mine[..i] {
            if let Some(what) = clash(a, b) {
                return Err(DomainError::Conflict(format!(
                    "{what} already defined on another NIC: nics {:?} and {:?} of this instance on network {:?}",
                    b.device, a.device, a.network
                )));
            }
        }
    }
    for other in crate::store::instances::all(db)? {
        if other.name == instance {
            continue;
        }
        let profiles = crate::service::expansion::load_profiles(db, &other.profiles)?;
        let (_, theirs) = crate::model::profile::expand(&profiles, &other.config, &other.devices);
        for b in nic_claims(&other.config, &theirs) {
            for a in &mine {
                if let Some(what) = clash(a, &b) {
                    return Err(DomainError::Conflict(format!(
                        "{what} already defined on another NIC: nic {:?} of instance {:?} on network {:?}",
                        b.device, other.name, b.network
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Parses a proxy device into what silo-net runs.
pub fn proxy_spec(d: &Device) -> Result<ProxySpec, String> {
    ProxyDevice::parse(d).map(|p| p.spec)
}

/// The interface name inside the instance LXD would give a nic device.
fn nic_name(device: &str, d: &Device) -> Result<IfName, DomainError> {
    let n = d.get("name").cloned().unwrap_or_else(|| device.to_string());
    IfName::new(n).map_err(|e| bad(format!("nic {device:?}: {e}")))
}

/// Plans a nic device for an instance, given its volatile keys (the MAC and host name).
pub fn plan_nic(
    db: &Db,
    device: &str,
    d: &Device,
    volatile: &BTreeMap<String, String>,
) -> Result<NicPlan, DomainError> {
    let hw = d
        .get("hwaddr")
        .or_else(|| volatile.get(&format!("volatile.{device}.hwaddr")))
        .map(|h| h.parse::<MacAddr>().map_err(|e| bad(e.to_string())))
        .transpose()?;
    // A volatile name from before host-side names had to be silo's is not reused.
    let host_name = volatile
        .get(&format!("volatile.{device}.host_name"))
        .filter(|h| silo_proto::types::check_host_veth_name(h).is_ok())
        .cloned()
        .or_else(|| d.get("host_name").cloned());
    let mut managed_net = None;
    let (kind, parent, managed) = match d.get("network") {
        Some(net) => {
            let n = get(db, net)?;
            managed_net = Some(n.clone());
            match n.kind.as_str() {
                "bridge" => ("bridged".to_string(), n.name.clone(), true),
                k => (
                    k.to_string(),
                    n.config.get("parent").cloned().unwrap_or_default(),
                    false,
                ),
            }
        }
        None => (
            d.get("nictype").cloned().unwrap_or_default(),
            d.get("parent").cloned().unwrap_or_default(),
            false,
        ),
    };
    let nic = NicDevice::parse(d).map_err(|e| bad(format!("nic {device:?}: {e}")))?;
    let host_name = || -> Result<IfName, DomainError> {
        IfName::new(match host_name.clone() {
            Some(h) => h,
            None => random_host_name().map_err(|e| DomainError::Internal(e.to_string()))?,
        })
        .map_err(|e| bad(e.to_string()))
    };
    let parent_of =
        |p: String| IfName::new(p).map_err(|e| bad(format!("nic {device:?}: parent: {e}")));
    let kind = match kind.as_str() {
        "bridged" => NicKind::Bridged {
            bridge: parent_of(parent)?,
            host_name: host_name()?,
        },
        "macvlan" => NicKind::Macvlan {
            parent: parent_of(parent)?,
        },
        "physical" => NicKind::Physical {
            parent: parent_of(parent)?,
        },
        "p2p" => NicKind::P2p {
            host_name: host_name()?,
            routes: nic.routes.clone(),
        },
        "routed" => NicKind::Routed {
            host_name: host_name()?,
            parent: if parent.is_empty() {
                None
            } else {
                Some(parent_of(parent)?)
            },
            addrs: nic.addrs.clone().unwrap_or_else(no_addrs),
        },
        "ipvlan" => NicKind::Ipvlan {
            parent: parent_of(parent)?,
            mode: nic.ipvlan_mode,
            addrs: nic.addrs.clone().unwrap_or_else(no_addrs),
        },
        o => return Err(bad(format!("nic {device:?}: unsupported type {o:?}"))),
    };
    let mtu = d.get("mtu").and_then(|m| m.parse().ok());
    let mut limits = NicLimits::default();
    for (k, v) in &nic.limits {
        let r = parse_bit_rate(v).map_err(|e| bad(format!("nic {device:?}: {k}: {e}")))?;
        match k.as_str() {
            "limits.ingress" => limits.ingress = Some(r),
            "limits.egress" => limits.egress = Some(r),
            _ => {
                limits.ingress.get_or_insert(r);
                limits.egress.get_or_insert(r);
            }
        }
    }
    let filter = nic_filter(device, d, &nic, &kind, hw, managed_net.as_ref())?;
    let managed_bridge = match (&kind, managed) {
        (NicKind::Bridged { bridge, .. }, true) => Some(bridge.clone()),
        _ => None,
    };
    Ok(NicPlan {
        device: device.to_string(),
        spec: NicSpec {
            name: nic_name(device, d)?,
            hwaddr: if matches!(kind, NicKind::Physical { .. }) {
                None
            } else {
                hw
            },
            mtu,
            kind,
            vlan: nic.vlan,
            limits,
            filter,
        },
        managed_bridge,
        ipv4: d.get("ipv4.address").and_then(|a| a.parse().ok()),
        ipv6: d.get("ipv6.address").and_then(|a| a.parse().ok()),
    })
}

/// `security.*_filtering` of a bridged nic: what it may send from. IPv4 needs the nic's
/// fixed `ipv4.address` (silo does not pick one); IPv6 allows its link-local address and its
/// `ipv6.address`, or else the SLAAC address its MAC gives on the network's /64.
fn nic_filter(
    device: &str,
    d: &Device,
    nic: &NicDevice,
    kind: &NicKind,
    hw: Option<MacAddr>,
    net: Option<&Network>,
) -> Result<Option<silo_proto::net::NicFiltering>, DomainError> {
    let on = |k: &str| d.get(k).is_some_and(|v| crate::model::parse::is_true(v));
    let (ipv4, ipv6) = (on("security.ipv4_filtering"), on("security.ipv6_filtering"));
    if !(on("security.mac_filtering") || ipv4 || ipv6) {
        return Ok(None);
    }
    let refuse = |why: String| Err(bad(format!("nic {device:?}: {why}")));
    if !matches!(kind, NicKind::Bridged { .. }) {
        return refuse("security.*_filtering is for bridged nics".into());
    }
    let Some(mac) = hw else {
        return refuse("a filtered nic needs a MAC address".into());
    };
    let v4 = if ipv4 {
        match nic.ipv4 {
            Some(a) => Some(vec![a]),
            None => {
                return refuse(
                    "security.ipv4_filtering needs the nic's ipv4.address (a fixed address on \
                     its network) to know what it may send from"
                        .into(),
                )
            }
        }
    } else {
        None
    };
    let v6 =
        if ipv6 {
            let m = mac.octets();
            let eui = [
                ((m[0] ^ 0x02) as u16) << 8 | m[1] as u16,
                (m[2] as u16) << 8 | 0xff,
                0xfe00 | m[3] as u16,
                (m[4] as u16) << 8 | m[5] as u16,
            ];
            let with =
                |p: [u16; 4]| Ipv6Addr::new(p[0], p[1], p[2], p[3], eui[0], eui[1], eui[2], eui[3]);
            let mut list = vec![with([0xfe80, 0, 0, 0])];
            match nic.ipv6 {
                Some(a) => list.push(a),
                None => {
                    let subnet = net
                        .and_then(|n| bridge_spec(n).ok())
                        .and_then(|s| s.ipv6)
                        .filter(|c| c.prefix() == 64);
                    match subnet {
                        Some(c) => {
                            let s = c.network().segments();
                            list.push(with([s[0], s[1], s[2], s[3]]));
                        }
                        None => return refuse(
                            "security.ipv6_filtering needs the nic's ipv6.address, or a managed \
                             network with a /64 for its SLAAC address"
                                .into(),
                        ),
                    }
                }
            }
            Some(list)
        } else {
            None
        };
    Ok(Some(silo_proto::net::NicFiltering { ipv4: v4, ipv6: v6 }))
}

fn no_addrs() -> silo_proto::net::NicAddrs {
    silo_proto::net::NicAddrs {
        ipv4: Vec::new(),
        ipv6: Vec::new(),
        ipv4_gateway: true,
        ipv6_gateway: true,
        ipv4_host_address: silo_proto::net::ROUTED_HOST_V4,
        ipv6_host_address: silo_proto::net::ROUTED_HOST_V6,
    }
}

/// Host-side veth names: LXD's shape (a prefix and 8 hex digits) under silo's own prefix,
/// so that they never take a name the host (or another manager's `veth...`) wants.
fn random_host_name() -> Result<String, silo_proto::random::RandomError> {
    let b = silo_proto::random::bytes::<4>()?;
    Ok(format!(
        "{}{:02x}{:02x}{:02x}{:02x}",
        silo_proto::types::SILO_IF_PREFIX,
        b[0],
        b[1],
        b[2],
        b[3]
    ))
}

/// A MAC for a new nic, under LXD's 00:16:3e prefix.
pub fn random_mac() -> Result<MacAddr, silo_proto::random::RandomError> {
    Ok(MacAddr::random_lxd(silo_proto::random::bytes::<3>()?))
}

/// The `volatile.<dev>.hwaddr` keys an instance's nics still lack.
pub fn missing_hwaddrs(
    devices: &BTreeMap<String, Device>,
    config: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, silo_proto::random::RandomError> {
    devices
        .iter()
        .filter(|(_, d)| DeviceType::of(d) == DeviceType::Nic)
        .filter(|(n, d)| {
            d.get("hwaddr").is_none() && !config.contains_key(&format!("volatile.{n}.hwaddr"))
        })
        .map(|(n, _)| Ok((format!("volatile.{n}.hwaddr"), random_mac()?.to_string())))
        .collect()
}

/// Plugs a nic into a running instance: its dnsmasq host entry first (so its first DHCP
/// request already gets its name and any fixed address), then the link.
pub async fn attach(
    helpers: &Helpers,
    instance: &InstanceName,
    plan: &NicPlan,
) -> Result<Option<IfName>, DomainError> {
    if let (Some(br), Some(hw)) = (&plan.managed_bridge, plan.spec.hwaddr) {
        helpers
            .net
            .set_host_entry(
                br.clone(),
                HostEntry {
                    hwaddr: hw,
                    instance: instance.clone(),
                    ipv4: plan.ipv4,
                    ipv6: plan.ipv6,
                },
            )
            .await?;
    }
    let host = helpers
        .net
        .attach_nic(instance.clone(), plan.spec.clone())
        .await
        .map_err(|e| DomainError::BadRequest(format!("nic {:?}: {e}", plan.device)))?;
    Ok(host)
}

/// Unplugs a nic (hot-unplug or stop of an instance with a physical nic).
pub async fn detach(
    helpers: &Helpers,
    instance: &InstanceName,
    plan: &NicPlan,
) -> Result<(), DomainError> {
    helpers
        .net
        .detach_nic(instance.clone(), plan.spec.clone())
        .await?;
    Ok(())
}

/// After an instance stopped (however it did): what its nics left on the host outside its
/// namespace goes (a routed nic's proxy ARP/NDP entries on its parent, a bridged nic's filter
/// chain, the ifb shaping a nic's egress; veths and routes went with the namespace).
pub async fn release_host_side(helpers: &Helpers, instance: &InstanceName, plans: &[NicPlan]) {
    for plan in plans {
        let routed = matches!(
            plan.spec.kind,
            NicKind::Routed {
                parent: Some(_),
                ..
            }
        );
        let filtered =
            matches!(plan.spec.kind, NicKind::Bridged { .. }) && plan.spec.filter.is_some();
        let shaped = plan.spec.limits.egress.is_some()
            && matches!(
                plan.spec.kind,
                NicKind::Bridged { .. } | NicKind::P2p { .. } | NicKind::Routed { .. }
            );
        if routed || filtered || shaped {
            if let Err(e) = detach(helpers, instance, plan).await {
                tracing::warn!(instance = %instance, nic = %plan.device, error = %e, "removing a nic's host-side state failed");
            }
        }
    }
}

/// Removes a deleted instance's (or removed nic's) dnsmasq host entry.
pub async fn forget_nic(helpers: &Helpers, plan: &NicPlan) {
    if let (Some(br), Some(hw)) = (&plan.managed_bridge, plan.spec.hwaddr) {
        let _ = helpers.net.remove_host_entry(br.clone(), hw).await;
    }
}

/// Starts a proxy device's forwarder.
pub async fn start_proxy(
    helpers: &Helpers,
    instance: &InstanceName,
    device: &str,
    d: &Device,
) -> Result<(), DomainError> {
    let spec = proxy_spec(d).map_err(|e| bad(format!("proxy device {device:?}: {e}")))?;
    let dev = DeviceName::new(device.to_string()).map_err(|e| bad(e.to_string()))?;
    helpers.net.start_proxy(instance.clone(), dev, spec).await?;
    Ok(())
}

/// Stops one proxy device's forwarder, or all of an instance's.
pub async fn stop_proxy(helpers: &Helpers, instance: &InstanceName, device: Option<&str>) {
    let dev = device.and_then(|d| DeviceName::new(d.to_string()).ok());
    let _ = helpers.net.stop_proxy(instance.clone(), dev).await;
}

/// `/1.0/networks/<n>/leases`: the gateway's own addresses, static entries from instances'
/// nics, then what dnsmasq handed out.
pub async fn leases(db: &Db, helpers: &Helpers, n: &Network) -> Result<Vec<Value>, DomainError> {
    let mut out = Vec::new();
    for k in ["ipv4.address", "ipv6.address"] {
        if let Some(a) = n.config.get(k).and_then(|v| v.split('/').next()) {
            if a.contains(['.', ':']) {
                out.push(json!({"hostname": format!("{}.gw", n.name), "hwaddr": "", "address": a, "type": "gateway", "location": "none"}));
            }
        }
    }
    let mut statics = std::collections::HashSet::new();
    for i in crate::store::instances::all(db)? {
        let profiles =
            crate::service::expansion::load_profiles(db, &i.profiles).unwrap_or_default();
        let (_, devs) = crate::model::profile::expand(&profiles, &i.config, &i.devices);
        for (dn, d) in devs.iter().filter(|(_, d)| nic_uses(d, &n.name)) {
            let hw = d
                .get("hwaddr")
                .or_else(|| i.config.get(&format!("volatile.{dn}.hwaddr")))
                .cloned()
                .unwrap_or_default();
            for k in ["ipv4.address", "ipv6.address"] {
                if let Some(a) = d.get(k) {
                    statics.insert(a.clone());
                    out.push(json!({"hostname": i.name, "hwaddr": hw, "address": a, "type": "static", "location": "none"}));
                }
            }
        }
    }
    let br = IfName::new(n.name.clone()).map_err(|e| bad(e.to_string()))?;
    for l in helpers.net.leases(br).await? {
        let a = l.address.to_string();
        if statics.contains(&a) {
            continue;
        }
        out.push(json!({"hostname": l.hostname, "hwaddr": l.hwaddr, "address": a, "type": "dynamic", "location": "none"}));
    }
    Ok(out)
}

/// A fresh silo's network: `silobr0` on free subnets with NAT, and `eth0` on it in the
/// default profile (what `lxd init`'s defaults give).
pub async fn create_default(db: &Db, helpers: &Helpers) -> Result<(), DomainError> {
    if list(db)?.iter().all(|n| n.name != DEFAULT_BRIDGE) {
        create(db, helpers, DEFAULT_BRIDGE, "bridge", "", BTreeMap::new()).await?;
    }
    let mut p = crate::store::profiles::get(db, "default")?;
    if !p
        .devices
        .values()
        .any(|d| DeviceType::of(d) == DeviceType::Nic)
    {
        let mut nic = Device::new();
        nic.insert("type".into(), "nic".into());
        nic.insert("network".into(), DEFAULT_BRIDGE.into());
        nic.insert("name".into(), "eth0".into());
        p.devices.insert("eth0".into(), nic);
        crate::store::profiles::put(db, &p)?;
    }
    Ok(())
}

/// A network as listed: one silo manages (with what uses it), or another host interface.
#[derive(Debug, Clone)]
pub enum Listed {
    /// A managed network and its `used_by`.
    Managed(Network, Vec<String>),
    /// An interface of the host silo does not manage.
    Host(silo_proto::net::LinkState),
}

impl Listed {
    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Listed::Managed(n, _) => &n.name,
            Listed::Host(l) => l.name.as_str(),
        }
    }
}

/// Every network: silo's managed ones and the host's other links, by name.
pub async fn all(d: &Services) -> Result<Vec<Listed>, DomainError> {
    let managed = list(&d.db)?;
    let links = d.helpers.net.list_links().await?;
    let mut out = Vec::new();
    for l in links {
        // silo's own veth ends belong to instances, not to the network list.
        if !l.owned && !managed.iter().any(|n| n.name == l.name.as_str()) {
            out.push(Listed::Host(l));
        }
    }
    for n in managed {
        let used = used_by(&d.db, &n.name)?;
        out.push(Listed::Managed(n, used));
    }
    out.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(out)
}

/// One network by name, managed or not.
pub async fn one(d: &Services, name: &str) -> Result<Listed, DomainError> {
    match get(&d.db, name) {
        Ok(n) => {
            let used = used_by(&d.db, &n.name)?;
            Ok(Listed::Managed(n, used))
        }
        Err(e) => {
            let Ok(i) = IfName::new(name.to_string()) else {
                return Err(e);
            };
            match d.helpers.net.link_state(i).await {
                Ok(l) if !l.owned => Ok(Listed::Host(l)),
                _ => Err(e),
            }
        }
    }
}

/// The state of the host link `name` (a managed bridge or any other interface).
pub async fn link_state(
    d: &Services,
    name: &str,
) -> Result<silo_proto::net::LinkState, DomainError> {
    let i = IfName::new(name.to_string())
        .map_err(|_| DomainError::NotFound(format!("network {name:?} not found")))?;
    let l = d.helpers.net.link_state(i).await.map_err(|e| match e {
        e if e.is_not_found() => DomainError::NotFound(format!("network {name:?} not found")),
        e => e.into(),
    })?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bridge_config_is_checked() {
        assert!(validate(
            "bridge",
            &cfg(&[("ipv4.address", "10.1.2.1/24"), ("ipv4.nat", "true")])
        )
        .is_ok());
        assert!(validate(
            "bridge",
            &cfg(&[("ipv4.address", "auto"), ("ipv6.address", "none")])
        )
        .is_ok());
        for (k, v) in [
            ("ipv4.address", "10.1.2.0/24"),
            ("ipv4.address", "banana"),
            ("ipv6.address", "fe80::1/64"),
            ("ipv4.nat", "maybe"),
            ("bridge.mtu", "100"),
            ("bridge.driver", "openvswitch"),
            ("dns.domain", "a b"),
            ("ipv4.dhcp.expiry", "30s"),
            ("no.such.key", "1"),
        ] {
            let e = validate("bridge", &cfg(&[(k, v)])).unwrap_err().to_string();
            assert!(
                e.contains(k) || e.contains(v) || e.contains("invalid"),
                "{k}={v}: {e}"
            );
        }
        let e = validate("sriov", &cfg(&[])).unwrap_err().to_string();
        assert!(e.contains("not supported on this host"), "{e}");
        let e = validate("ovn", &cfg(&[])).unwrap_err().to_string();
        assert!(e.contains("not supported on this host"), "{e}");
        assert!(validate("macvlan", &cfg(&[])).is_err());
        assert!(validate("macvlan", &cfg(&[("parent", "eth0")])).is_ok());
    }

    #[test]
    fn filtered_nics_allow_their_own_addresses_only() {
        let n = Network {
            name: "silobr0".into(),
            kind: "bridge".into(),
            description: String::new(),
            config: cfg(&[
                ("ipv4.address", "10.1.2.1/24"),
                ("ipv6.address", "fd42:1:2:3::1/64"),
            ]),
        };
        let kind = NicKind::Bridged {
            bridge: IfName::new("silobr0").expect("n"),
            host_name: IfName::new("silo0001").expect("n"),
        };
        let mac: MacAddr = "00:16:3e:ab:cd:01".parse().expect("mac");
        let filter = |kv: &[(&str, &str)], kind: &NicKind, hw: Option<MacAddr>| {
            let mut d = cfg(&[("type", "nic"), ("network", "silobr0")]);
            d.extend(cfg(kv));
            let nic = NicDevice::parse(&d).expect("parse");
            nic_filter("eth0", &d, &nic, kind, hw, Some(&n))
        };
        assert_eq!(filter(&[], &kind, Some(mac)).expect("none"), None);
        let f = filter(
            &[
                ("security.ipv4_filtering", "true"),
                ("security.ipv6_filtering", "yes"),
                ("ipv4.address", "10.1.2.50"),
            ],
            &kind,
            Some(mac),
        )
        .expect("filter")
        .expect("on");
        assert_eq!(f.ipv4, Some(vec![Ipv4Addr::new(10, 1, 2, 50)]));
        // Link-local and SLAAC addresses from the MAC (EUI-64, universal bit flipped).
        let want: Vec<Ipv6Addr> = ["fe80::216:3eff:feab:cd01", "fd42:1:2:3:216:3eff:feab:cd01"]
            .iter()
            .map(|a| a.parse().expect("v6"))
            .collect();
        assert_eq!(f.ipv6, Some(want));
        let mac_only = filter(&[("security.mac_filtering", "true")], &kind, Some(mac))
            .expect("mac")
            .expect("on");
        assert_eq!((mac_only.ipv4, mac_only.ipv6), (None, None));
        for (kv, kind, hw, why) in [
            (
                &[("security.ipv4_filtering", "true")][..],
                &kind,
                Some(mac),
                "needs the nic's ipv4.address",
            ),
            (
                &[("security.mac_filtering", "true")][..],
                &kind,
                None,
                "needs a MAC address",
            ),
            (
                &[("security.mac_filtering", "true")][..],
                &NicKind::Macvlan {
                    parent: IfName::new("eth0").expect("n"),
                },
                Some(mac),
                "is for bridged nics",
            ),
        ] {
            let e = filter(kv, kind, hw).expect_err(why).to_string();
            assert!(e.contains(why), "{kv:?}: {e}");
        }
    }

    #[test]
    fn bridge_specs_follow_lxd_defaults() {
        let n = Network {
            name: "silobr0".into(),
            kind: "bridge".into(),
            description: String::new(),
            config: cfg(&[
                ("ipv4.address", "10.1.2.1/24"),
                ("ipv4.nat", "true"),
                ("ipv4.dhcp.expiry", "2h"),
            ]),
        };
        let s = bridge_spec(&n).expect("spec");
        assert!(s.ipv4_nat && s.ipv4_dhcp && s.dns && s.ipv6.is_none());
        assert_eq!(s.dhcp_expiry, 7200);
        assert_eq!(s.dns_domain.as_str(), "silo");
    }

    #[test]
    fn proxy_devices_parse() {
        let mut d = Device::new();
        d.insert("type".into(), "proxy".into());
        d.insert("listen".into(), "tcp:0.0.0.0:5672".into());
        d.insert("connect".into(), "tcp:127.0.0.1:5672".into());
        assert!(proxy_spec(&d).is_ok());
        d.insert("bind".into(), "moon".into());
        assert!(proxy_spec(&d).unwrap_err().contains("bind"));
        d.insert("bind".into(), "instance".into());
        d.insert("nat".into(), "true".into());
        assert!(proxy_spec(&d).unwrap_err().contains("nat"));
    }

    #[test]
    fn static_addresses_must_be_inside_the_bridge_subnet() {
        let n = Network {
            name: "br1".into(),
            kind: "bridge".into(),
            description: String::new(),
            config: cfg(&[
                ("ipv4.address", "10.1.2.1/24"),
                ("ipv6.address", "fd42:1:2:3::1/64"),
            ]),
        };
        let nic = |kv: &[(&str, &str)]| -> Device { cfg(kv) };
        for ok in [
            nic(&[("ipv4.address", "10.1.2.50")]),
            nic(&[("ipv6.address", "fd42:1:2:3::50")]),
            nic(&[]),
        ] {
            assert_eq!(check_static_in_subnet(&n, &ok), Ok(()), "{ok:?}");
        }
        for (bad, why) in [
            (
                nic(&[("ipv4.address", "10.1.3.50")]),
                "not within network \"br1\"'s subnet 10.1.2.0/24",
            ),
            (
                nic(&[("ipv4.address", "10.1.2.1")]),
                "own, network or broadcast",
            ),
            (
                nic(&[("ipv4.address", "10.1.2.0")]),
                "own, network or broadcast",
            ),
            (
                nic(&[("ipv4.address", "10.1.2.255")]),
                "own, network or broadcast",
            ),
            (nic(&[("ipv6.address", "fd42:1:2:4::50")]), "not within"),
            (nic(&[("ipv6.address", "fd42:1:2:3::1")]), "own or network"),
            (nic(&[("ipv4.address", "banana")]), "invalid ipv4.address"),
        ] {
            let e = check_static_in_subnet(&n, &bad).expect_err("refused");
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let v6only = Network {
            config: cfg(&[
                ("ipv4.address", "none"),
                ("ipv6.address", "fd42:1:2:3::1/64"),
            ]),
            ..n.clone()
        };
        let e = check_static_in_subnet(&v6only, &nic(&[("ipv4.address", "10.1.2.50")]))
            .expect_err("no IPv4");
        assert!(e.contains("has no IPv4"), "{e}");
        let mv = Network {
            kind: "macvlan".into(),
            config: cfg(&[("parent", "eth0")]),
            ..n
        };
        let e = check_static_in_subnet(&mv, &nic(&[("ipv4.address", "10.1.2.50")]))
            .expect_err("not a bridge");
        assert!(e.contains("is a macvlan"), "{e}");
    }

    #[test]
    fn nic_claims_clash_on_one_network_only() {
        let devs = |net: &str, kv: &[(&str, &str)]| -> BTreeMap<String, Device> {
            let mut d = cfg(kv);
            d.insert("type".into(), "nic".into());
            d.insert("network".into(), net.into());
            BTreeMap::from([("eth0".to_string(), d)])
        };
        let one = |c: &BTreeMap<String, String>, d: &BTreeMap<String, Device>| {
            let mut v = nic_claims(c, d);
            assert_eq!(v.len(), 1);
            v.remove(0)
        };
        let none = BTreeMap::new();
        let a = one(&none, &devs("br1", &[("ipv6.address", "fd42::05")]));
        let b = one(&none, &devs("br1", &[("ipv6.address", "fd42::5")]));
        assert_eq!(clash(&a, &b).as_deref(), Some("IP address \"fd42::5\""));
        let c = one(&none, &devs("br2", &[("ipv6.address", "fd42::5")]));
        assert_eq!(clash(&a, &c), None, "another network");
        // The MAC from volatile counts as much as a set hwaddr.
        let vol = cfg(&[("volatile.eth0.hwaddr", "00:16:3e:00:00:01")]);
        let m1 = one(&vol, &devs("br1", &[]));
        let m2 = one(&none, &devs("br1", &[("hwaddr", "00:16:3E:00:00:01")]));
        assert_eq!(
            clash(&m1, &m2).as_deref(),
            Some("MAC address \"00:16:3e:00:00:01\"")
        );
        let m3 = one(&none, &devs("br1", &[("hwaddr", "00:16:3e:00:00:02")]));
        assert_eq!(clash(&m1, &m3), None);
        // Only nics with a network claim anything.
        let mut plain = cfg(&[("type", "nic"), ("nictype", "macvlan"), ("parent", "eth0")]);
        plain.insert("hwaddr".into(), "00:16:3e:00:00:01".into());
        assert!(nic_claims(&none, &BTreeMap::from([("eth1".to_string(), plain)])).is_empty());
    }

    #[test]
    fn host_names_and_macs_look_like_lxds() {
        let h = random_host_name().expect("random");
        assert!(h.starts_with("silo") && h.len() == 12, "{h}");
        assert!(random_mac()
            .expect("random")
            .to_string()
            .starts_with("00:16:3e:"));
        let mut devs = BTreeMap::new();
        let mut nic = Device::new();
        nic.insert("type".into(), "nic".into());
        devs.insert("eth0".to_string(), nic);
        let miss = missing_hwaddrs(&devs, &BTreeMap::new()).expect("random");
        assert_eq!(miss.len(), 1);
        assert_eq!(miss[0].0, "volatile.eth0.hwaddr");
        let have = cfg(&[("volatile.eth0.hwaddr", "00:16:3e:00:00:01")]);
        assert!(missing_hwaddrs(&devs, &have).expect("random").is_empty());
    }
}
