//! Bridges silo owns, and what silo-net reads of the host's links. Ownership is an interface
//! alias (`silo:<tag>`) that silo-net sets when it creates a link and checks before it changes
//! or deletes one, so a hostile daemon cannot point it at the host's uplink or another
//! manager's bridge.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::net::{BridgeInfo, BridgeSpec, IfAddress, LinkState, SubnetChoice};
use silo_proto::types::{Ipv4Cidr, Ipv6Cidr};
use silo_proto::IfName;

use crate::server::NetServer;

pub fn nl(op: &str, target: impl std::fmt::Display, e: rtnetlink::Error) -> HelperError {
    let errno = match &e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    };
    HelperError::Io {
        op: op.to_string(),
        target: target.to_string(),
        message: e.to_string(),
        errno,
    }
}

pub fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn link_alias(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(n) => Some(n.as_str()),
        _ => None,
    })
}

fn link_kind(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k.to_string()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

pub fn is_bridge(m: &LinkMessage) -> bool {
    m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

fn mtu_of(m: &LinkMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(v) => Some(*v),
            _ => None,
        })
        .unwrap_or(0)
}

fn hwaddr_of(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

fn controller_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

fn addr_of(a: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    a.attributes
        .iter()
        .find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        })
        .or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        })
}

fn scope_name(s: AddressScope) -> &'static str {
    match s {
        AddressScope::Universe => "global",
        AddressScope::Link => "link",
        AddressScope::Host => "local",
        _ => "global",
    }
}

/// The gateways a route names: its own (`RTA_GATEWAY`, or `RTA_VIA` across families) and
/// those of its multipath next hops.
fn gateways(attrs: &[RouteAttribute]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for attr in attrs {
        match attr {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => out.push(IpAddr::V4(*g)),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => out.push(IpAddr::V6(*g)),
            RouteAttribute::Via(RouteVia::Inet(g)) => out.push(IpAddr::V4(*g)),
            RouteAttribute::Via(RouteVia::Inet6(g)) => out.push(IpAddr::V6(*g)),
            RouteAttribute::MultiPath(hops) => {
                for h in hops {
                    out.extend(gateways(&h.attributes));
                }
            }
            _ => {}
        }
    }
    out
}

/// A route's destination as `ip route` shows it.
fn route_dst(r: &RouteMessage) -> String {
    let plen = r.header.destination_prefix_length;
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(format!("{d}/{plen}")),
            RouteAttribute::Destination(RouteAddress::Inet6(d)) => Some(format!("{d}/{plen}")),
            _ => None,
        })
        .unwrap_or_else(|| "default".to_string())
}

/// The first of 100 random candidates `gen` accepts.
fn first_free<T>(mut gen: impl FnMut(usize) -> Option<T>) -> Option<T> {
    (0..CANDIDATES).find_map(&mut gen)
}

/// How many random subnets `auto` tries, as LXD does.
const CANDIDATES: usize = 100;

/// Whether two prefixes share any address (different families never do).
pub(crate) fn prefixes_overlap(a: IpAddr, alen: u8, b: IpAddr, blen: u8) -> bool {
    let p = u32::from(alen.min(blen));
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(x) & m == u32::from(y) & m
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(x) & m == u128::from(y) & m
        }
        _ => false,
    }
}

/// Random bytes for names and subnets (a failure is an error, never zeroed bytes).
pub fn random_bytes<const N: usize>() -> HelperResult<[u8; N]> {
    silo_proto::random::bytes::<N>()
        .map_err(|e| HelperError::Unsupported(format!("choosing at random: {e}")))
}

impl NetServer {
    pub fn handle(&self) -> &Handle {
        &self.0.handle
    }

    pub async fn find_link(&self, name: &str) -> HelperResult<Option<LinkMessage>> {
        let mut links = self
            .handle()
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(l) => Ok(l),
            Err(rtnetlink::Error::NetlinkError(m))
                if m.code.map(|c| -c.get()) == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(nl("get link", name, e)),
        }
    }

    pub fn owned(&self, m: &LinkMessage) -> bool {
        link_alias(m) == Some(self.0.marker.as_str())
    }

    /// Marks a link as this silo's (the kernel applies IFLA_IFALIAS only on a change, not at
    /// creation, so it is a second message).
    pub async fn mark(&self, index: u32) -> HelperResult<()> {
        self.handle()
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .alias(self.0.marker.clone())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| nl("mark", index, e))
    }

    async fn all_addresses(&self) -> HelperResult<Vec<AddressMessage>> {
        self.handle()
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("get addresses", "host", e))
    }

    async fn addresses_of(&self, index: u32) -> HelperResult<Vec<AddressMessage>> {
        self.handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("get addresses", index, e))
    }

    async fn info(&self, m: &LinkMessage) -> HelperResult<BridgeInfo> {
        let name = IfName::new(link_name(m).unwrap_or_default())?;
        let mut ipv4 = None;
        let mut ipv6 = None;
        for a in self.addresses_of(m.header.index).await? {
            match addr_of(&a) {
                Some(IpAddr::V4(v4)) => ipv4 = Ipv4Cidr::new(v4, a.header.prefix_len).ok(),
                Some(IpAddr::V6(v6)) if a.header.scope == AddressScope::Universe => {
                    ipv6 = Ipv6Cidr::new(v6, a.header.prefix_len).ok()
                }
                _ => {}
            }
        }
        Ok(BridgeInfo {
            dnsmasq_pid: self.dnsmasq_pid(&name),
            name,
            index: m.header.index,
            ipv4,
            ipv6,
            mtu: mtu_of(m),
            hwaddr: hwaddr_of(m),
            up: m.header.flags.contains(LinkFlags::Up),
        })
    }

    /// The prefixes in use on the host, from its addresses and routes (all tables), except
    /// those on `except` (the bridge being changed).
    pub(crate) async fn used_prefixes(
        &self,
        except: Option<u32>,
    ) -> HelperResult<Vec<(IpAddr, u8, String)>> {
        let mut out = Vec::new();
        for a in self.all_addresses().await? {
            if Some(a.header.index) == except {
                continue;
            }
            if let Some(ip) = addr_of(&a) {
                if ip.is_loopback() || a.header.scope == AddressScope::Link {
                    continue;
                }
                out.push((
                    ip,
                    a.header.prefix_len,
                    format!(
                        "{ip}/{} on interface index {}",
                        a.header.prefix_len, a.header.index
                    ),
                ));
            }
        }
        let v4: Vec<RouteMessage> = self
            .handle()
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("get routes", "host", e))?;
        let v6: Vec<RouteMessage> = self
            .handle()
            .route()
            .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("get routes", "host", e))?;
        for r in v4.iter().chain(v6.iter()) {
            let plen = r.header.destination_prefix_length;
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            // Every gateway the host routes through is used, the default route's first: a
            // bridge holding it would answer for the host's router.
            if !(except.is_some() && oif == except) {
                for gw in gateways(&r.attributes) {
                    let full = if gw.is_ipv4() { 32 } else { 128 };
                    out.push((
                        gw,
                        full,
                        format!("the gateway {gw} of the host route {}", route_dst(r)),
                    ));
                }
            }
            // The default route overlaps everything by definition; local and broadcast
            // entries restate addresses already counted.
            if plen == 0
                || !matches!(
                    r.header.kind,
                    RouteType::Unicast
                        | RouteType::BlackHole
                        | RouteType::Prohibit
                        | RouteType::Unreachable
                )
            {
                continue;
            }
            if except.is_some() && oif == except {
                continue;
            }
            for attr in &r.attributes {
                let dst = match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => IpAddr::V4(*d),
                    RouteAttribute::Destination(RouteAddress::Inet6(d)) => IpAddr::V6(*d),
                    _ => continue,
                };
                if dst.is_loopback()
                    || matches!(dst, IpAddr::V6(d) if (d.segments()[0] & 0xffc0) == 0xfe80 || d.is_multicast())
                {
                    continue;
                }
                out.push((dst, plen, format!("the host route {dst}/{plen}")));
            }
        }
        for ns in &self.0.resolvers {
            let full = if ns.is_ipv4() { 32 } else { 128 };
            out.push((
                *ns,
                full,
                format!("the host's DNS resolver {ns} (/etc/resolv.conf)"),
            ));
        }
        Ok(out)
    }

    /// Refuses subnets that overlap any address or route already on the host. Decided from
    /// the host's own tables; nothing is probed on the wire.
    async fn check_overlap(
        &self,
        v4: Option<&Ipv4Cidr>,
        v6: Option<&Ipv6Cidr>,
        except: Option<u32>,
    ) -> HelperResult<()> {
        for (ip, plen, what) in self.used_prefixes(except).await? {
            match (ip, v4, v6) {
                (IpAddr::V4(a), Some(c), _) if c.overlaps(a, plen) => {
                    return Err(HelperError::invalid(
                        "ipv4.address",
                        format!("{c} overlaps {what}"),
                    ))
                }
                (IpAddr::V6(a), _, Some(c)) if c.overlaps(a, plen) => {
                    return Err(HelperError::invalid(
                        "ipv6.address",
                        format!("{c} overlaps {what}"),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub async fn pick_subnets(
        &self,
        want4: bool,
        want6: bool,
        avoid4: &[Ipv4Cidr],
        avoid6: &[Ipv6Cidr],
    ) -> HelperResult<SubnetChoice> {
        let used = self.used_prefixes(None).await?;
        let free = |net: IpAddr, plen: u8| {
            !used
                .iter()
                .any(|(ip, p, _)| prefixes_overlap(*ip, *p, net, plen))
        };
        let mut choice = SubnetChoice {
            ipv4: None,
            ipv6: None,
        };
        if want4 {
            // LXD's space: 10.X.Y.1/24 at random, 100 tries.
            let seeds = random_bytes::<{ 2 * CANDIDATES }>()?;
            choice.ipv4 = Some(
                first_free(|i| {
                    let r = &seeds[2 * i..2 * i + 2];
                    Ipv4Cidr::new(Ipv4Addr::new(10, r[0], r[1], 1), 24)
                        .ok()
                        .filter(|c| free(IpAddr::V4(c.network()), 24))
                        .filter(|c| !avoid4.iter().any(|o| c.overlaps(o.network(), o.prefix())))
                })
                .ok_or_else(|| {
                    HelperError::Unsupported(
                        "no free 10.x.y.0/24 subnet found; set ipv4.address by hand".into(),
                    )
                })?,
            );
        }
        if want6 {
            let seeds = random_bytes::<{ 6 * CANDIDATES }>()?;
            choice.ipv6 = Some(
                first_free(|i| {
                    let r = &seeds[6 * i..6 * i + 6];
                    let seg = |i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
                    let a = Ipv6Addr::new(0xfd42, seg(0), seg(2), seg(4), 0, 0, 0, 1);
                    Ipv6Cidr::new(a, 64)
                        .ok()
                        .filter(|c| free(IpAddr::V6(c.network()), 64))
                        .filter(|c| !avoid6.iter().any(|o| c.overlaps(o.network(), o.prefix())))
                })
                .ok_or_else(|| {
                    HelperError::Unsupported(
                        "no free fd42::/64 subnet found; set ipv6.address by hand".into(),
                    )
                })?,
            );
        }
        Ok(choice)
    }

    pub async fn ensure_bridge(&self, spec: BridgeSpec) -> HelperResult<BridgeInfo> {
        let name = spec.name.clone();
        if let Some(m) = spec.mtu {
            if !(1280..=9000).contains(&m) {
                return Err(HelperError::invalid(
                    "mtu",
                    format!("{m} is outside 1280..9000"),
                ));
            }
        }
        if spec.dhcp_expiry < 120 {
            return Err(HelperError::invalid(
                "ipv4.dhcp.expiry",
                "must be at least 2 minutes (dnsmasq's minimum)",
            ));
        }
        spec.check_dhcp_ranges()
            .map_err(|e| HelperError::invalid("dhcp ranges", e))?;
        // A silo-owned name and private (or policy-listed) subnets, before anything is
        // looked at or made: silod may be lying.
        self.rules()
            .check_bridge(name.as_str(), spec.ipv4.as_ref(), spec.ipv6.as_ref())
            .map_err(|e| HelperError::invalid("network", e))?;
        if self.0.policy.host_interfaces.contains(&name) {
            return Err(HelperError::invalid(
                "bridge name",
                format!("{name} is a host interface named in the policy; silo will not create or take it over"),
            ));
        }
        let existing = self.find_link(name.as_str()).await?;
        let created = existing.is_none();
        let index = match existing {
            Some(m) if !(self.owned(&m) && is_bridge(&m)) => {
                return Err(HelperError::AlreadyExists {
                    what: format!("interface {name} (not silo's; silo will not touch it)"),
                })
            }
            Some(m) => m.header.index,
            None => self.create_bridge(&spec).await?,
        };
        let r = async {
            self.set_addresses(index, &spec).await?;
            if let Some(mtu) = spec.mtu {
                self.handle()
                    .link()
                    .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
                    .execute()
                    .await
                    .map_err(|e| nl("set mtu", &name, e))?;
            }
            self.remember_bridge(spec.clone())?;
            self.sync_nat().await?;
            self.run_dnsmasq(&spec).await
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(bridge = %name, error = %e, "bridge setup failed");
            if created {
                // Nothing half-made: no bridge, rules or dnsmasq of a failed create remain.
                let _ = self.stop_dnsmasq(&name).await;
                let _ = self.forget_bridge(&name);
                let _ = self.sync_nat().await;
                let _ = self.handle().link().del(index).execute().await;
                let _ = self.remove_network_dir(&name);
            }
            return Err(e);
        }
        tracing::info!(bridge = %name, ipv4 = ?spec.ipv4, ipv6 = ?spec.ipv6, "bridge ready");
        let m = self
            .find_link(name.as_str())
            .await?
            .ok_or_else(|| HelperError::NotFound {
                what: format!("bridge {name}"),
            })?;
        self.info(&m).await
    }

    async fn create_bridge(&self, spec: &BridgeSpec) -> HelperResult<u32> {
        let name = &spec.name;
        self.check_overlap(spec.ipv4.as_ref(), spec.ipv6.as_ref(), None)
            .await?;
        let mut msg = LinkBridge::new(name.as_str());
        if let Some(m) = spec.mtu {
            msg = msg.mtu(m);
        }
        self.handle()
            .link()
            .add(msg.build())
            .execute()
            .await
            .map_err(|e| nl("create bridge", name, e))?;
        let created =
            self.find_link(name.as_str())
                .await?
                .ok_or_else(|| HelperError::NotFound {
                    what: format!("bridge {name} just created"),
                })?;
        let index = created.header.index;
        let finish = async {
            self.handle()
                .link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .alias(self.0.marker.clone())
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| nl("set up", name, e))?;
            self.set_addresses(index, spec).await
        };
        if let Err(e) = finish.await {
            // Nothing half-made: take the bridge away again.
            let _ = self.handle().link().del(index).execute().await;
            return Err(e);
        }
        tracing::info!(bridge = %name, "created bridge");
        Ok(index)
    }

    /// Makes the bridge's global addresses exactly the spec's.
    async fn set_addresses(&self, index: u32, spec: &BridgeSpec) -> HelperResult<()> {
        let current = self.addresses_of(index).await?;
        let want: Vec<(IpAddr, u8)> = spec
            .ipv4
            .iter()
            .map(|c| (IpAddr::V4(c.addr()), c.prefix()))
            .chain(spec.ipv6.iter().map(|c| (IpAddr::V6(c.addr()), c.prefix())))
            .collect();
        let mut have = Vec::new();
        for a in current {
            let Some(ip) = addr_of(&a) else { continue };
            if a.header.scope != AddressScope::Universe {
                continue;
            }
            if want.contains(&(ip, a.header.prefix_len)) {
                have.push((ip, a.header.prefix_len));
            } else {
                self.handle()
                    .address()
                    .del(a)
                    .execute()
                    .await
                    .map_err(|e| nl("remove address", &spec.name, e))?;
            }
        }
        let missing: Vec<(IpAddr, u8)> = want.into_iter().filter(|w| !have.contains(w)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.check_overlap(
            spec.ipv4
                .as_ref()
                .filter(|c| missing.contains(&(IpAddr::V4(c.addr()), c.prefix()))),
            spec.ipv6
                .as_ref()
                .filter(|c| missing.contains(&(IpAddr::V6(c.addr()), c.prefix()))),
            Some(index),
        )
        .await?;
        for (ip, plen) in missing {
            let mut req = self.handle().address().add(index, ip, plen);
            if ip.is_ipv6() {
                // A bridge without ports has no carrier, and duplicate address detection would
                // keep the address tentative, so dnsmasq could not bind it.
                req.message_mut()
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            req.execute()
                .await
                .map_err(|e| nl("add address", &spec.name, e))?;
        }
        Ok(())
    }

    pub async fn bridge_info(&self, name: &IfName) -> HelperResult<BridgeInfo> {
        match self.find_link(name.as_str()).await? {
            Some(m) if self.owned(&m) && is_bridge(&m) => self.info(&m).await,
            _ => Err(HelperError::NotFound {
                what: format!("silo bridge {name}"),
            }),
        }
    }

    pub async fn list_bridges(&self) -> HelperResult<Vec<BridgeInfo>> {
        let links = self.links().await?;
        let mut out = Vec::new();
        for m in links.iter().filter(|m| self.owned(m) && is_bridge(m)) {
            out.push(self.info(m).await?);
        }
        Ok(out)
    }

    async fn links(&self) -> HelperResult<Vec<LinkMessage>> {
        self.handle()
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("get links", "host", e))
    }

    pub async fn delete_bridge(&self, name: &IfName) -> HelperResult<()> {
        let m = self
            .find_link(name.as_str())
            .await?
            .ok_or_else(|| HelperError::NotFound {
                what: format!("bridge {name}"),
            })?;
        if !self.owned(&m) || !is_bridge(&m) {
            return Err(HelperError::Denied {
                policy: self.0.policy.source.clone(),
                what: format!("interface {name} is not a bridge this silo created"),
            });
        }
        self.stop_dnsmasq(name).await?;
        self.forget_bridge(name)?;
        self.sync_nat().await?;
        self.handle()
            .link()
            .del(m.header.index)
            .execute()
            .await
            .map_err(|e| nl("delete bridge", name, e))?;
        self.remove_network_dir(name)?;
        tracing::info!(bridge = %name, "deleted bridge");
        Ok(())
    }

    fn state_of(
        &self,
        m: &LinkMessage,
        addrs: &[AddressMessage],
        all: &[LinkMessage],
    ) -> HelperResult<LinkState> {
        let name = IfName::new(link_name(m).unwrap_or_default())?;
        let counters = m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Stats64(s) => {
                    Some([s.rx_bytes, s.tx_bytes, s.rx_packets, s.tx_packets])
                }
                _ => None,
            })
            .unwrap_or_default();
        let addresses = addrs
            .iter()
            .filter(|a| a.header.index == m.header.index)
            .filter_map(|a| {
                addr_of(a).map(|ip| IfAddress {
                    address: ip,
                    prefix: a.header.prefix_len,
                    scope: scope_name(a.header.scope).to_string(),
                })
            })
            .collect();
        let ports = all
            .iter()
            .filter(|p| controller_of(p) == Some(m.header.index))
            .filter_map(|p| link_name(p).map(str::to_string))
            .collect();
        let kind = link_kind(m);
        Ok(LinkState {
            name,
            link_type: if m.header.flags.contains(LinkFlags::Loopback) {
                "loopback".into()
            } else {
                "broadcast".into()
            },
            kind,
            mtu: mtu_of(m),
            hwaddr: hwaddr_of(m),
            up: m.header.flags.contains(LinkFlags::Up),
            addresses,
            counters,
            ports,
            owned: self.owned(m),
        })
    }

    pub async fn list_links(&self) -> HelperResult<Vec<LinkState>> {
        let links = self.links().await?;
        let addrs = self.all_addresses().await?;
        links
            .iter()
            .map(|m| self.state_of(m, &addrs, &links))
            .collect()
    }

    pub async fn link_state(&self, name: &IfName) -> HelperResult<LinkState> {
        let links = self.links().await?;
        let addrs = self.all_addresses().await?;
        let m = links
            .iter()
            .find(|m| link_name(m) == Some(name.as_str()))
            .ok_or_else(|| HelperError::NotFound {
                what: format!("interface {name}"),
            })?;
        self.state_of(m, &addrs, &links)
    }
}
