//! silo-net's RPC service: each call checks its typed request and hands it to the module of
//! its concept (bridges, dnsmasq, nics and proxies).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rtnetlink::Handle;
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::Root;
use silo_proto::jail::boot::Boot;
use silo_proto::jail::launcher::LauncherClient;
use silo_proto::jail::policy::Policy;
use silo_proto::net::{
    BridgeInfo, BridgeSpec, HostEntry, Lease, LinkState, Net, NetworkRules, NicSpec, SubnetChoice,
};
use silo_proto::proxy::ProxySpec;
use silo_proto::types::{Ipv4Cidr, Ipv6Cidr, MacAddr};
use silo_proto::{DeviceName, HelperHello, IfName, InstanceName};
use tarpc::context::Context;

/// What silo-net opened and started before its jail.
#[derive(Debug)]
pub struct Prepared {
    /// The state dir.
    pub state: Root,
    /// `<state>/networks` (root's).
    pub networks: Root,
    /// The launcher.
    pub launcher: LauncherClient,
    /// The host's DNS resolvers (`/etc/resolv.conf`, read before the jail, which keeps /etc
    /// out of reach): no managed subnet may take them over.
    pub resolvers: Vec<std::net::IpAddr>,
}

#[derive(Debug)]
pub struct Inner {
    pub handle: Handle,
    pub policy: Policy,
    pub tag: String,
    pub marker: String,
    pub nft_table: String,
    pub landlock: String,
    pub state: Root,
    pub networks: Root,
    pub launcher: LauncherClient,
    pub resolvers: Vec<std::net::IpAddr>,
    /// The bridges this silo-net made real, by name (what NAT and dnsmasq are built from).
    pub bridges: Mutex<HashMap<IfName, BridgeSpec>>,
    /// Their dnsmasq pids.
    pub dnsmasq: Mutex<HashMap<IfName, u32>>,
    /// The fd side channel to silod.
    pub fds: Arc<silo_proto::fdpass::FdSender>,
}

/// The network service.
#[derive(Debug, Clone)]
pub struct NetServer(pub Arc<Inner>);

impl NetServer {
    /// Builds the service around an open netlink handle.
    pub fn new(handle: Handle, b: &Boot, landlock: String, p: Prepared) -> NetServer {
        let tag = silo_proto::install_tag(&b.state_dir);
        NetServer(Arc::new(Inner {
            handle,
            policy: b.policy.clone(),
            marker: format!("silo:{tag}"),
            nft_table: format!("silo-{tag}"),
            tag,
            landlock,
            state: p.state,
            networks: p.networks,
            launcher: p.launcher,
            resolvers: p.resolvers,
            bridges: Mutex::new(HashMap::new()),
            dnsmasq: Mutex::new(HashMap::new()),
            fds: b.fds.clone(),
        }))
    }
}

impl Net for NetServer {
    async fn hello(self, _: Context) -> HelperHello {
        HelperHello {
            helper: "silo-net".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            tag: self.0.tag.clone(),
            landlock: self.0.landlock.clone(),
        }
    }

    async fn ensure_bridge(self, _: Context, spec: BridgeSpec) -> HelperResult<BridgeInfo> {
        NetServer::ensure_bridge(&self, spec).await
    }

    async fn bridge_info(self, _: Context, name: IfName) -> HelperResult<BridgeInfo> {
        NetServer::bridge_info(&self, &name).await
    }

    async fn list_bridges(self, _: Context) -> HelperResult<Vec<BridgeInfo>> {
        NetServer::list_bridges(&self).await
    }

    async fn delete_bridge(self, _: Context, name: IfName) -> HelperResult<()> {
        NetServer::delete_bridge(&self, &name).await
    }

    async fn pick_subnets(
        self,
        _: Context,
        ipv4: bool,
        ipv6: bool,
        avoid4: Vec<Ipv4Cidr>,
        avoid6: Vec<Ipv6Cidr>,
    ) -> HelperResult<SubnetChoice> {
        NetServer::pick_subnets(&self, ipv4, ipv6, &avoid4, &avoid6).await
    }

    async fn list_links(self, _: Context) -> HelperResult<Vec<LinkState>> {
        NetServer::list_links(&self).await
    }

    async fn link_state(self, _: Context, name: IfName) -> HelperResult<LinkState> {
        NetServer::link_state(&self, &name).await
    }

    async fn leases(self, _: Context, bridge: IfName) -> HelperResult<Vec<Lease>> {
        NetServer::leases(&self, &bridge)
    }

    async fn set_host_entry(
        self,
        _: Context,
        bridge: IfName,
        entry: HostEntry,
    ) -> HelperResult<()> {
        NetServer::set_host_entry(&self, &bridge, &entry).await
    }

    async fn remove_host_entry(
        self,
        _: Context,
        bridge: IfName,
        hwaddr: MacAddr,
    ) -> HelperResult<()> {
        NetServer::remove_host_entry(&self, &bridge, &hwaddr).await
    }

    async fn attach_nic(
        self,
        _: Context,
        instance: InstanceName,
        nic: NicSpec,
    ) -> HelperResult<Option<IfName>> {
        NetServer::attach_nic(&self, &instance, &nic).await
    }

    async fn detach_nic(
        self,
        _: Context,
        instance: InstanceName,
        nic: NicSpec,
    ) -> HelperResult<()> {
        NetServer::detach_nic(&self, &instance, &nic).await
    }

    async fn start_proxy(
        self,
        _: Context,
        instance: InstanceName,
        device: DeviceName,
        spec: ProxySpec,
    ) -> HelperResult<()> {
        NetServer::start_proxy(&self, &instance, device.as_str(), &spec).await
    }

    async fn stop_proxy(
        self,
        _: Context,
        instance: InstanceName,
        device: Option<DeviceName>,
    ) -> HelperResult<()> {
        NetServer::stop_proxy(&self, &instance, device.as_ref().map(|d| d.as_str())).await
    }

    async fn network_rules(self, _: Context) -> NetworkRules {
        self.rules()
    }

    async fn bind_api_listener(
        self,
        _: Context,
        addr: std::net::SocketAddr,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        NetServer::bind_api_listener(&self, addr).await
    }
}

impl NetServer {
    /// A listening socket for silod's HTTPS API on a privileged port the policy lists.
    pub async fn bind_api_listener(
        &self,
        addr: std::net::SocketAddr,
    ) -> HelperResult<silo_proto::fdpass::FdTicket> {
        let port = addr.port();
        if port >= 1024 {
            return Err(HelperError::invalid(
                format!("API listener {addr}"),
                "silod binds ports from 1024 up itself",
            ));
        }
        if !self.0.policy.https_privileged_ports.contains(&port) {
            return Err(HelperError::Denied {
                policy: self.0.policy.source.clone(),
                what: format!(
                    "serving the HTTPS API on port {port} (below 1024) needs it in https_privileged_ports"
                ),
            });
        }
        let (reply, fds): (crate::launcher::Reply, Vec<std::os::fd::OwnedFd>) = self
            .0
            .launcher
            .call_with_fds(&crate::launcher::Request::ListenTcp { addr }, &[])
            .await?;
        match reply {
            crate::launcher::Reply::Failed(e) => {
                Err(HelperError::invalid(format!("API listener {addr}"), e))
            }
            _ => {
                let fd = fds.into_iter().next().ok_or_else(|| {
                    HelperError::Unsupported("the launcher sent no listener".into())
                })?;
                use std::os::fd::AsFd;
                self.0
                    .fds
                    .send(&[fd.as_fd()])
                    .map_err(|e| HelperError::Unsupported(format!("fd channel: {e}")))
            }
        }
    }

    /// The managed-network rules with the policy's additions.
    pub fn rules(&self) -> NetworkRules {
        NetworkRules {
            ranges: self.0.policy.network_ranges.clone(),
            name_prefixes: self.0.policy.network_name_prefixes.clone(),
        }
    }
}

/// The nameservers of a resolv.conf; loopback ones (a local stub) are left out, since no
/// managed subnet can hold them anyway.
pub fn parse_resolvers(text: &str) -> Vec<std::net::IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        // A scoped IPv6 nameserver ("fe80::1%eth0") is link-local: it cannot be in a subnet.
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .filter(|a| !a.is_loopback())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn resolvers_are_read_as_resolv_conf_writes_them() {
        let r = super::parse_resolvers(
            "# generated\nsearch example.org\nnameserver 10.255.255.53\nnameserver 127.0.0.53\n\
             nameserver fd00::53\nnameserver fe80::1%eth0\noptions edns0\nnameserver\n",
        );
        assert_eq!(
            r,
            [
                "10.255.255.53".parse::<std::net::IpAddr>().expect("ip"),
                "fd00::53".parse().expect("ip")
            ]
        );
    }
}
