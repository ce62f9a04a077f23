//! `silo-net`: bridges, veths, nftables, dnsmasq, proxy forwarders.
//!
//! silo-net only ever changes interfaces it created itself: each carries an interface alias
//! naming this silo installation, and the helper checks it before every change. Host
//! interfaces are reached only when the root policy names them.

use serde::{Deserialize, Serialize};

use crate::error::HelperResult;
use crate::names::IfName;
use crate::types::Ipv4Cidr;
use crate::HelperHello;

/// A bridge silo-net owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeInfo {
    /// Interface name.
    pub name: IfName,
    /// Kernel interface index.
    pub index: u32,
    /// Its IPv4 gateway address, if any.
    pub ipv4: Option<Ipv4Cidr>,
    /// MTU.
    pub mtu: u32,
    /// MAC address, "aa:bb:..".
    pub hwaddr: String,
    /// Whether the link is up.
    pub up: bool,
}

/// The network helper's RPC surface.
#[tarpc::service]
pub trait Net {
    /// Who answers, for `GET /1.0`.
    async fn hello() -> HelperHello;
    /// Creates a bridge owned by this silo, optionally with an IPv4 gateway address.
    /// Refuses names of existing interfaces and subnets that overlap a host route.
    async fn create_bridge(
        name: IfName,
        ipv4: Option<Ipv4Cidr>,
        mtu: Option<u32>,
    ) -> HelperResult<BridgeInfo>;
    /// Reports one bridge this silo owns.
    async fn bridge_info(name: IfName) -> HelperResult<BridgeInfo>;
    /// Lists the bridges this silo owns.
    async fn list_bridges() -> HelperResult<Vec<BridgeInfo>>;
    /// Deletes a bridge this silo owns; refuses any other interface.
    async fn delete_bridge(name: IfName) -> HelperResult<()>;
}
