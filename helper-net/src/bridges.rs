//! Bridges silo owns. Ownership is an interface alias (`silo:<tag>`) that silo-net sets when it
//! creates a link and checks before it changes or deletes one, so a hostile daemon cannot
//! point it at the host's uplink or another manager's bridge.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::boot::Boot;
use silo_proto::jail::policy::Policy;
use silo_proto::net::{BridgeInfo, Net};
use silo_proto::types::Ipv4Cidr;
use silo_proto::{HelperHello, IfName};
use tarpc::context::Context;

#[derive(Debug)]
struct Inner {
    handle: Handle,
    policy: Policy,
    tag: String,
    marker: String,
    landlock: String,
}

/// The network service.
#[derive(Debug, Clone)]
pub struct NetServer(Arc<Inner>);

fn nl(op: &str, target: impl std::fmt::Display, e: rtnetlink::Error) -> HelperError {
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

fn link_name(m: &LinkMessage) -> Option<&str> {
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

fn is_bridge(m: &LinkMessage) -> bool {
    m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

impl NetServer {
    /// Builds the service around an open netlink handle.
    pub fn new(handle: Handle, b: &Boot, landlock: String) -> NetServer {
        let tag = silo_proto::install_tag(&b.state_dir);
        NetServer(Arc::new(Inner {
            handle,
            policy: b.policy.clone(),
            marker: format!("silo:{tag}"),
            tag,
            landlock,
        }))
    }

    async fn find_link(&self, name: &str) -> HelperResult<Option<LinkMessage>> {
        let mut links = self
            .0
            .handle
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

    fn owned(&self, m: &LinkMessage) -> bool {
        link_alias(m) == Some(self.0.marker.as_str())
    }

    async fn addresses_of(&self, index: u32) -> HelperResult<Vec<AddressMessage>> {
        self.0
            .handle
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
        for a in self.addresses_of(m.header.index).await? {
            for attr in &a.attributes {
                if let AddressAttribute::Address(IpAddr::V4(v4)) = attr {
                    ipv4 = Ipv4Cidr::new(*v4, a.header.prefix_len).ok();
                }
            }
        }
        let mtu = m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(v) => Some(*v),
                _ => None,
            })
            .unwrap_or(0);
        let hwaddr = m
            .attributes
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
            .unwrap_or_default();
        Ok(BridgeInfo {
            name,
            index: m.header.index,
            ipv4,
            mtu,
            hwaddr,
            up: m.header.flags.contains(LinkFlags::Up),
        })
    }

    /// Refuses a subnet that overlaps any IPv4 address or route already on the host.
    /// Decided from the host's own tables; nothing is probed on the wire.
    async fn check_overlap(&self, cidr: &Ipv4Cidr) -> HelperResult<()> {
        let addrs: Vec<AddressMessage> = self
            .0
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("get addresses", "host", e))?;
        for a in &addrs {
            for attr in &a.attributes {
                if let AddressAttribute::Address(IpAddr::V4(v4)) = attr {
                    if v4.is_loopback() {
                        continue;
                    }
                    if cidr.overlaps(*v4, a.header.prefix_len) {
                        return Err(HelperError::invalid(
                            "ipv4.address",
                            format!(
                                "{cidr} overlaps {v4}/{} already on interface index {}",
                                a.header.prefix_len, a.header.index
                            ),
                        ));
                    }
                }
            }
        }
        let routes: Vec<RouteMessage> = self
            .0
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("get routes", "host", e))?;
        for r in &routes {
            let plen = r.header.destination_prefix_length;
            if plen == 0 {
                continue; // the default route overlaps everything by definition
            }
            for attr in &r.attributes {
                if let RouteAttribute::Destination(RouteAddress::Inet(dst)) = attr {
                    if dst.is_loopback() {
                        continue;
                    }
                    if cidr.overlaps(*dst, plen) {
                        return Err(HelperError::invalid(
                            "ipv4.address",
                            format!("{cidr} overlaps the host route {dst}/{plen}"),
                        ));
                    }
                }
            }
        }
        Ok(())
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

    async fn create_bridge(
        self,
        _: Context,
        name: IfName,
        ipv4: Option<Ipv4Cidr>,
        mtu: Option<u32>,
    ) -> HelperResult<BridgeInfo> {
        if let Some(m) = mtu {
            if !(1280..=9000).contains(&m) {
                return Err(HelperError::invalid(
                    "mtu",
                    format!("{m} is outside 1280..9000"),
                ));
            }
        }
        if self.0.policy.host_interfaces.contains(&name) {
            return Err(HelperError::invalid(
                "bridge name",
                format!("{name} is a host interface named in the policy; silo will not create or take it over"),
            ));
        }
        if let Some(existing) = self.find_link(name.as_str()).await? {
            return Err(if self.owned(&existing) {
                HelperError::AlreadyExists {
                    what: format!("bridge {name}"),
                }
            } else {
                HelperError::AlreadyExists {
                    what: format!("interface {name} (not silo's; silo will not touch it)"),
                }
            });
        }
        if let Some(c) = &ipv4 {
            self.check_overlap(c).await?;
        }
        let mut msg = LinkBridge::new(name.as_str());
        if let Some(m) = mtu {
            msg = msg.mtu(m);
        }
        self.0
            .handle
            .link()
            .add(msg.build())
            .execute()
            .await
            .map_err(|e| nl("create bridge", &name, e))?;
        let created =
            self.find_link(name.as_str())
                .await?
                .ok_or_else(|| HelperError::NotFound {
                    what: format!("bridge {name} just created"),
                })?;
        let index = created.header.index;
        let finish = async {
            if let Some(c) = &ipv4 {
                self.0
                    .handle
                    .address()
                    .add(index, IpAddr::V4(c.addr()), c.prefix())
                    .execute()
                    .await
                    .map_err(|e| nl("add address", &name, e))?;
            }
            // The kernel applies IFLA_IFALIAS only when changing a link, not when creating it,
            // so the ownership mark goes on with the first change.
            self.0
                .handle
                .link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .alias(self.0.marker.clone())
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| nl("set up", &name, e))
        };
        if let Err(e) = finish.await {
            // Nothing half-made: take the bridge away again.
            let _ = self.0.handle.link().del(index).execute().await;
            return Err(e);
        }
        tracing::info!(bridge = %name, ipv4 = ?ipv4, "created bridge");
        let m = self
            .find_link(name.as_str())
            .await?
            .ok_or_else(|| HelperError::NotFound {
                what: format!("bridge {name}"),
            })?;
        self.info(&m).await
    }

    async fn bridge_info(self, _: Context, name: IfName) -> HelperResult<BridgeInfo> {
        match self.find_link(name.as_str()).await? {
            Some(m) if self.owned(&m) && is_bridge(&m) => self.info(&m).await,
            _ => Err(HelperError::NotFound {
                what: format!("silo bridge {name}"),
            }),
        }
    }

    async fn list_bridges(self, _: Context) -> HelperResult<Vec<BridgeInfo>> {
        let links: Vec<LinkMessage> = self
            .0
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("get links", "host", e))?;
        let mut out = Vec::new();
        for m in links.iter().filter(|m| self.owned(m) && is_bridge(m)) {
            out.push(self.info(m).await?);
        }
        Ok(out)
    }

    async fn delete_bridge(self, _: Context, name: IfName) -> HelperResult<()> {
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
        self.0
            .handle
            .link()
            .del(m.header.index)
            .execute()
            .await
            .map_err(|e| nl("delete bridge", &name, e))?;
        tracing::info!(bridge = %name, "deleted bridge");
        Ok(())
    }
}
