//! Work inside an instance's network namespace, done by silo-net's launcher (single-threaded,
//! so setns moves the whole process and back). A link can be moved *into* a namespace from
//! outside (RTM_SETLINK with IFLA_NET_NS_PID), but the kernel refuses to combine a target
//! namespace id with a move, so moving one *out* (a physical nic at stop) or deleting one (a
//! macvlan on hot-unplug) needs a netlink socket inside.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::{Deserialize, Serialize};

use crate::launcher::{open_netns, InitRef};

/// Runs `f` with the calling process in the instance's network namespace, then returns to
/// the namespace it was in; `f` gets an fd of that original namespace.
pub fn in_instance_netns<T>(
    init: InitRef,
    f: impl FnOnce(BorrowedFd<'_>) -> Result<T, String>,
) -> Result<T, String> {
    let host = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| format!("opening silo-net's network namespace: {e}"))?;
    let ns = open_netns(init)?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("entering the instance's network namespace: {e}"))?;
    let r = f(host.as_fd());
    if let Err(e) = nix::sched::setns(&host, nix::sched::CloneFlags::CLONE_NEWNET) {
        // The launcher must never keep working from inside an instance.
        eprintln!("silo-net launcher: cannot return to its network namespace: {e}");
        std::process::exit(3);
    }
    r
}

pub use silo_proto::netlink::{request, route_socket};

/// A default route inside an instance: via a gateway on the link (on-link, as LXD's
/// link-local gateways are not in any subnet there), or straight out of the link.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum DefaultRoute {
    /// `default via <gw> dev <link> onlink`.
    Via(IpAddr),
    /// `default dev <link>`, IPv4 (`true`) or IPv6.
    Dev { ipv4: bool },
}

fn link_index(sock: &netlink_sys::Socket, name: &str) -> Result<u32, String> {
    let mut get = LinkMessage::default();
    get.attributes.push(LinkAttribute::IfName(name.to_string()));
    let found = request(sock, RouteNetlinkMessage::GetLink(get), 0)
        .map_err(|e| format!("finding {name} in the instance: {e}"))?;
    found
        .iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
            _ => None,
        })
        .ok_or_else(|| format!("{name} is not in the instance"))
}

/// In the current namespace: brings link `name` up and gives it the addresses (no duplicate
/// address detection: they are the instance's by configuration) and default routes. A veth
/// end made in the instance cannot be made up in the request that creates it (the kernel
/// answers ENOTCONN: its peer is not linked yet), so it comes up here.
pub fn configure(
    name: &str,
    addrs: &[(IpAddr, u8)],
    routes: &[DefaultRoute],
) -> Result<(), String> {
    let sock = route_socket()?;
    let index = link_index(&sock, name)?;
    let mut up = LinkMessage::default();
    up.header.index = index;
    up.header.flags = LinkFlags::Up;
    up.header.change_mask = LinkFlags::Up;
    request(&sock, RouteNetlinkMessage::SetLink(up), 0)
        .map_err(|e| format!("bringing {name} up in the instance: {e}"))?;
    for (ip, plen) in addrs {
        let mut m = AddressMessage::default();
        m.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.prefix_len = *plen;
        m.header.index = index;
        m.header.scope = AddressScope::Universe;
        if ip.is_ipv4() {
            m.attributes.push(AddressAttribute::Local(*ip));
        } else {
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        m.attributes.push(AddressAttribute::Address(*ip));
        request(
            &sock,
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| format!("adding {ip}/{plen} to {name} in the instance: {e}"))?;
    }
    for r in routes {
        let mut m = RouteMessage::default();
        let v4 = match r {
            DefaultRoute::Via(gw) => gw.is_ipv4(),
            DefaultRoute::Dev { ipv4 } => *ipv4,
        };
        m.header.address_family = if v4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.kind = RouteType::Unicast;
        m.header.destination_prefix_length = 0;
        m.attributes.push(RouteAttribute::Oif(index));
        match r {
            DefaultRoute::Via(gw) => {
                m.header.scope = RouteScope::Universe;
                m.header.flags = RouteFlags::Onlink;
                m.attributes.push(RouteAttribute::Gateway(match gw {
                    IpAddr::V4(a) => RouteAddress::Inet(*a),
                    IpAddr::V6(a) => RouteAddress::Inet6(*a),
                }));
            }
            DefaultRoute::Dev { .. } => m.header.scope = RouteScope::Link,
        }
        request(
            &sock,
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| format!("adding a default route {r:?} on {name} in the instance: {e}"))?;
    }
    Ok(())
}

/// In the current namespace: moves link `name` to the namespace `host` as `new_name` (down),
/// or deletes it when `new_name` is None.
pub fn move_or_delete(
    name: &str,
    new_name: Option<&str>,
    host: BorrowedFd<'_>,
) -> Result<(), String> {
    let sock = route_socket()?;
    let mut get = LinkMessage::default();
    get.attributes.push(LinkAttribute::IfName(name.to_string()));
    let found = request(&sock, RouteNetlinkMessage::GetLink(get), 0)
        .map_err(|e| format!("finding {name} in the instance: {e}"))?;
    let index = found
        .iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
            _ => None,
        })
        .ok_or_else(|| format!("{name} is not in the instance"))?;
    match new_name {
        None => {
            let mut del = LinkMessage::default();
            del.header.index = index;
            request(&sock, RouteNetlinkMessage::DelLink(del), 0)
                .map_err(|e| format!("deleting {name} in the instance: {e}"))?;
        }
        Some(n) => {
            let mut set = LinkMessage::default();
            set.header.index = index;
            // Down before it leaves, so the host sees it as it was before the instance took it.
            set.header.change_mask = LinkFlags::Up;
            set.attributes
                .push(LinkAttribute::NetNsFd(host.as_raw_fd()));
            set.attributes.push(LinkAttribute::IfName(n.to_string()));
            request(&sock, RouteNetlinkMessage::SetLink(set), 0)
                .map_err(|e| format!("moving {name} back to the host as {n}: {e}"))?;
        }
    }
    Ok(())
}
