//! Route netlink requests made from inside a network namespace (feature `netlink`): what the
//! root helpers use instead of reading an instance's files, which container root controls.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, State};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::privileged::NetCounters;

/// A netlink route socket in the calling thread's network namespace.
pub fn route_socket() -> Result<Socket, String> {
    let mut s = Socket::new(NETLINK_ROUTE).map_err(|e| format!("netlink socket: {e}"))?;
    s.bind(&SocketAddr::new(0, 0))
        .map_err(|e| format!("netlink bind: {e}"))?;
    Ok(s)
}

/// Sends one request and collects the answers up to the ack (or the dump's end).
pub fn request(
    sock: &Socket,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, String> {
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    hdr.sequence_number = 1;
    let mut m = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    sock.send(&buf, 0)
        .map_err(|e| format!("netlink send: {e}"))?;
    let mut out = Vec::new();
    loop {
        let mut data: Vec<u8> = Vec::with_capacity(64 * 1024);
        sock.recv(&mut data, 0)
            .map_err(|e| format!("netlink recv: {e}"))?;
        if data.is_empty() {
            return Err("netlink: the socket closed".into());
        }
        let mut off = 0;
        while off < data.len() {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                .map_err(|e| format!("netlink decode: {e}"))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(out),
                        Some(c) => Err(std::io::Error::from_raw_os_error(-c.get()).to_string()),
                    }
                }
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::InnerMessage(i) => out.push(i),
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

/// Every interface of the current network namespace with its counters, MTU, hardware
/// address, state and addresses, all from the kernel (RTM_GETLINK and RTM_GETADDR dumps).
pub fn interfaces() -> Result<Vec<NetCounters>, String> {
    let sock = route_socket()?;
    let links = request(
        &sock,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
    )?;
    let mut out: Vec<(u32, NetCounters)> = links
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some((l.header.index, link_counters(&l))),
            _ => None,
        })
        .collect();
    let addrs = request(
        &sock,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        NLM_F_DUMP,
    )?;
    let mut v4: Vec<(u32, (String, String, u8, String))> = Vec::new();
    let mut v6 = Vec::new();
    for m in addrs {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        // IFA_LOCAL is the interface's own address where it differs from IFA_ADDRESS
        // (point-to-point); otherwise IFA_ADDRESS is.
        let local = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = local.or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        let Some(ip) = addr else { continue };
        let (family, scope) = match (ip, a.header.scope) {
            (std::net::IpAddr::V4(_), AddressScope::Host) => ("inet", "local"),
            (std::net::IpAddr::V4(_), AddressScope::Link) => ("inet", "link"),
            (std::net::IpAddr::V4(_), _) => ("inet", "global"),
            (std::net::IpAddr::V6(_), AddressScope::Host) => ("inet6", "host"),
            (std::net::IpAddr::V6(_), AddressScope::Link) => ("inet6", "link"),
            (std::net::IpAddr::V6(_), _) => ("inet6", "global"),
        };
        let entry = (
            a.header.index,
            (
                family.to_string(),
                ip.to_string(),
                a.header.prefix_len,
                scope.to_string(),
            ),
        );
        if ip.is_ipv4() {
            v4.push(entry);
        } else {
            v6.push(entry);
        }
    }
    // IPv4 first, as `lxc info` lists them.
    for (index, a) in v4.into_iter().chain(v6) {
        if let Some((_, n)) = out.iter_mut().find(|(i, _)| *i == index) {
            n.addresses.push(a);
        }
    }
    Ok(out.into_iter().map(|(_, n)| n).collect())
}

fn link_counters(l: &LinkMessage) -> NetCounters {
    let mut n = NetCounters {
        state: "up".into(),
        ..Default::default()
    };
    let mut hwaddr = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(s) => n.name = s.clone(),
            LinkAttribute::Mtu(m) => n.mtu = u64::from(*m),
            LinkAttribute::Address(b) => hwaddr = Some(b.clone()),
            LinkAttribute::OperState(State::Down) => n.state = "down".into(),
            LinkAttribute::Stats64(s) => {
                n.rx_bytes = s.rx_bytes;
                n.tx_bytes = s.tx_bytes;
                n.rx_packets = s.rx_packets;
                n.tx_packets = s.tx_packets;
                n.rx_errors = s.rx_errors;
                n.tx_errors = s.tx_errors;
                n.rx_dropped = s.rx_dropped;
                n.tx_dropped = s.tx_dropped;
            }
            _ => {}
        }
    }
    // Loopback's all-zero address is no hardware address (LXD shows none).
    if n.name != "lo" {
        if let Some(b) = hwaddr {
            n.hwaddr = b
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":");
        }
    }
    n
}
