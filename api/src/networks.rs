//! Networks: `/1.0/networks[/<name>]`, their state and leases.

use serde::{Deserialize, Serialize};

use crate::StringMap;

/// A network: `GET /1.0/networks/<name>` (managed bridges and the host's other interfaces).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// "bridge", "physical", "loopback", ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether silo manages it.
    pub managed: bool,
    /// "Created" (managed) or "" (not).
    pub status: String,
    /// Configuration.
    pub config: StringMap,
    /// Instances and profiles using it (URLs).
    pub used_by: Vec<String>,
    /// Cluster members ("none" alone).
    pub locations: Vec<String>,
}

/// The writable part of a network: `PUT/PATCH /1.0/networks/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkPut {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
}

impl From<&Network> for NetworkPut {
    fn from(n: &Network) -> Self {
        NetworkPut {
            config: n.config.clone(),
            description: n.description.clone(),
        }
    }
}

/// `POST /1.0/networks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworksPost {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
    /// Name.
    pub name: String,
    /// "bridge" (or empty).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `POST /1.0/networks/<name>`: rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkPost {
    /// New name.
    pub name: String,
}

/// One lease: `GET /1.0/networks/<name>/leases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkLease {
    /// The instance's (or gateway's) name.
    pub hostname: String,
    /// MAC address.
    pub hwaddr: String,
    /// IP address.
    pub address: String,
    /// "static", "dynamic" or "gateway".
    #[serde(rename = "type")]
    pub kind: String,
    /// Cluster member ("none").
    pub location: String,
}

/// `GET /1.0/networks/<name>/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkState {
    /// Addresses.
    pub addresses: Vec<NetworkStateAddress>,
    /// Traffic.
    pub counters: NetworkStateCounters,
    /// MAC address.
    pub hwaddr: String,
    /// MTU.
    pub mtu: i64,
    /// "up" or "down".
    pub state: String,
    /// "broadcast", "loopback", ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Bond details (`None`: null, not a bond).
    pub bond: Option<NetworkStateBond>,
    /// Bridge details (`None`: null, not a bridge).
    pub bridge: Option<NetworkStateBridge>,
    /// VLAN details (`None`: null, not a VLAN).
    pub vlan: Option<NetworkStateVLAN>,
    /// OVN details (silo has no OVN: always left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ovn: Option<NetworkStateOVN>,
}

/// One address of a network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateAddress {
    /// "inet" or "inet6".
    pub family: String,
    /// The address.
    pub address: String,
    /// Prefix length.
    pub netmask: String,
    /// "global", "link", "local".
    pub scope: String,
}

/// Traffic of a network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateCounters {
    /// Bytes in.
    pub bytes_received: i64,
    /// Bytes out.
    pub bytes_sent: i64,
    /// Packets in.
    pub packets_received: i64,
    /// Packets out.
    pub packets_sent: i64,
}

/// A bridge's details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateBridge {
    /// Bridge id.
    pub id: String,
    /// Spanning tree.
    pub stp: bool,
    /// Forward delay (centiseconds).
    pub forward_delay: u64,
    /// Default VLAN.
    pub vlan_default: u64,
    /// VLAN filtering.
    pub vlan_filtering: bool,
    /// Ports.
    pub upper_devices: Vec<String>,
}

/// A bond's details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateBond {
    /// Bonding mode.
    pub mode: String,
    /// Transmit hash policy.
    pub transmit_policy: String,
    /// Up delay (ms).
    pub up_delay: u64,
    /// Down delay (ms).
    pub down_delay: u64,
    /// MII polling frequency (ms).
    pub mii_frequency: u64,
    /// MII state.
    pub mii_state: String,
    /// Member interfaces.
    pub lower_devices: Vec<String>,
}

/// A VLAN's details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateVLAN {
    /// Parent interface.
    pub lower_device: String,
    /// VLAN id.
    pub vid: u64,
}

/// An OVN network's details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateOVN {
    /// The chassis.
    pub chassis: String,
}
