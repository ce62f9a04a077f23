//! Instances' nics and proxy devices. An instance is found by name through the record its
//! monitor wrote in `<state>/runtime/<name>/init` (root's): silod never gives silo-net a pid
//! or a namespace fd, so it cannot aim a nic or a forwarder at another process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressScope};
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, IpVlanMode, LinkAttribute, LinkInfo, MacVlanMode,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkIfb, LinkIpVlan, LinkMacVlan, LinkUnspec, LinkVeth, RouteMessageBuilder};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::net::{IpvlanMode, NicAddrs, NicKind, NicSpec};
use silo_proto::privileged::RunningInfo;
use silo_proto::proxy::{ProxyAddr, ProxyBind, ProxySpec};
use silo_proto::{IfName, InstanceName};

use crate::bridges::{is_bridge, nl, prefixes_overlap, random_bytes};
use crate::kernel;
use crate::launcher::{same_process, start_time, InitRef, Reply, Request};
use crate::netns::DefaultRoute;
use crate::nft;
use crate::server::NetServer;

/// A running instance as silo-priv's monitor recorded it.
pub struct Instance {
    pub init: InitRef,
    pub info: RunningInfo,
}

impl NetServer {
    pub fn instance(&self, name: &InstanceName) -> HelperResult<Instance> {
        let not_running =
            || HelperError::OutOfOrder(format!("instance {:?} is not running", name.as_str()));
        let dir = self
            .0
            .state
            .open_dir(&["runtime", name.as_str()])
            .map_err(|_| not_running())?;
        let fd = nix::fcntl::openat(
            dir.fd(),
            "init",
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|_| not_running())?;
        let st = nix::sys::stat::fstat(&fd)
            .map_err(|e| HelperError::errno("fstat", "init record", e))?;
        if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
            return Err(HelperError::invalid(
                "instance record",
                format!("{}/init is not root's", dir.display()),
            ));
        }
        let mut s = String::new();
        use std::io::Read;
        std::fs::File::from(fd)
            .take(4096)
            .read_to_string(&mut s)
            .map_err(|e| HelperError::io("read", "init record", e))?;
        let (info, start) = RunningInfo::parse_record(name, &s).ok_or_else(not_running)?;
        let init = InitRef {
            pid: info.init_pid as i32,
            start_time: start,
        };
        if start_time(init.pid) != Some(start) {
            return Err(not_running());
        }
        Ok(Instance { init, info })
    }

    fn policy_allows_parent(&self, parent: &IfName) -> HelperResult<()> {
        if self.0.policy.host_interfaces.contains(parent) {
            Ok(())
        } else {
            Err(self.0.policy.deny(format!(
                "host interface {parent} is not in host_interfaces; silo will not use it"
            )))
        }
    }

    async fn link_index(&self, name: &IfName) -> HelperResult<u32> {
        Ok(self
            .find_link(name.as_str())
            .await?
            .ok_or_else(|| HelperError::NotFound {
                what: format!("interface {name}"),
            })?
            .header
            .index)
    }

    /// Moves a host link into the instance as `nic.name`, up, in one RTM_SETLINK (the kernel
    /// renames it on arrival, so a clash with an existing name fails before anything shows).
    async fn move_in(&self, index: u32, inst: &Instance, nic: &NicSpec) -> HelperResult<()> {
        let mut b = LinkUnspec::new_with_index(index)
            .setns_by_pid(inst.init.pid as u32)
            .name(nic.name.to_string())
            .up();
        if let Some(m) = nic.hwaddr {
            b = b.address(m.octets().to_vec());
        }
        if let Some(mtu) = nic.mtu {
            b = b.mtu(mtu);
        }
        self.handle()
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(|e| nl("move into the instance", &nic.name, e))?;
        // The pid was checked against the record before; a recycled pid now would mean the
        // link went elsewhere, so check the same process still holds it.
        if !same_process(inst.init) {
            return Err(HelperError::OutOfOrder(
                "the instance stopped while its nic was added".into(),
            ));
        }
        Ok(())
    }

    pub async fn attach_nic(
        &self,
        name: &InstanceName,
        nic: &NicSpec,
    ) -> HelperResult<Option<IfName>> {
        if let Some(m) = nic.mtu {
            if !(1280..=9000).contains(&m) {
                return Err(HelperError::invalid(
                    "mtu",
                    format!("{m} is outside 1280..9000"),
                ));
            }
        }
        if let NicKind::Bridged { host_name, .. }
        | NicKind::P2p { host_name, .. }
        | NicKind::Routed { host_name, .. } = &nic.kind
        {
            // The host end is a new host interface: never a name the host may want.
            silo_proto::types::check_host_veth_name(host_name.as_str())
                .map_err(|e| HelperError::invalid("nic", e))?;
        }
        self.check_unsupported(nic)?;
        let inst = self.instance(name)?;
        match &nic.kind {
            NicKind::Bridged { bridge, host_name } => {
                let br = self.find_link(bridge.as_str()).await?.ok_or_else(|| {
                    HelperError::NotFound {
                        what: format!("bridge {bridge}"),
                    }
                })?;
                if !is_bridge(&br) {
                    return Err(HelperError::invalid(
                        "parent",
                        format!("{bridge} is not a bridge"),
                    ));
                }
                if !self.owned(&br) {
                    self.policy_allows_parent(bridge)?;
                }
                self.veth(host_name, Some(br.header.index), &inst, nic)
                    .await?;
                tracing::info!(instance = %name, nic = %nic.name, host = %host_name, bridge = %bridge, "nic attached");
                Ok(Some(host_name.clone()))
            }
            NicKind::Macvlan { parent } => {
                self.policy_allows_parent(parent)?;
                let pidx = self.link_index(parent).await?;
                let tmp = format!("silo{}", hex(&random_bytes::<5>()?));
                self.handle()
                    .link()
                    .add(LinkMacVlan::new(&tmp, pidx, MacVlanMode::Bridge).build())
                    .execute()
                    .await
                    .map_err(|e| nl("create macvlan", parent, e))?;
                let tmp_name = IfName::new(tmp)?;
                let idx = self.link_index(&tmp_name).await?;
                if let Err(e) = self.move_in(idx, &inst, nic).await {
                    let _ = self.handle().link().del(idx).execute().await;
                    return Err(e);
                }
                tracing::info!(instance = %name, nic = %nic.name, parent = %parent, "macvlan attached");
                Ok(None)
            }
            NicKind::Physical { parent } => {
                self.policy_allows_parent(parent)?;
                let m = self.find_link(parent.as_str()).await?.ok_or_else(|| {
                    HelperError::NotFound {
                        what: format!("interface {parent}"),
                    }
                })?;
                if self.owned(&m) {
                    return Err(HelperError::invalid(
                        "parent",
                        format!("{parent} is one of silo's own interfaces"),
                    ));
                }
                self.move_in(m.header.index, &inst, nic).await?;
                tracing::info!(instance = %name, nic = %nic.name, parent = %parent, "physical nic attached");
                Ok(None)
            }
            NicKind::P2p { host_name, routes } => {
                if routes.len() > 2 * silo_proto::net::MAX_NIC_ADDRS {
                    return Err(HelperError::invalid("nic", "too many routes"));
                }
                let used = self.used_prefixes(None).await?;
                for r in routes {
                    let key = if r.net().is_ipv4() {
                        "ipv4.routes"
                    } else {
                        "ipv6.routes"
                    };
                    self.check_routable(key, r.net(), r.prefix(), &used)?;
                }
                let idx = self.veth(host_name, None, &inst, nic).await?;
                let r = async {
                    for r in routes {
                        self.host_route(idx, r.net(), r.prefix(), host_name).await?;
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = r {
                    let _ = self.handle().link().del(idx).execute().await;
                    return Err(e);
                }
                tracing::info!(instance = %name, nic = %nic.name, host = %host_name, routes = routes.len(), "p2p nic attached");
                Ok(Some(host_name.clone()))
            }
            NicKind::Routed {
                host_name,
                parent,
                addrs,
            } => {
                self.attach_routed(&inst, nic, host_name, parent.as_ref(), addrs)
                    .await?;
                tracing::info!(instance = %name, nic = %nic.name, host = %host_name, "routed nic attached");
                Ok(Some(host_name.clone()))
            }
            NicKind::Ipvlan {
                parent,
                mode,
                addrs,
            } => {
                self.policy_allows_parent(parent)?;
                addrs.check().map_err(|e| HelperError::invalid("nic", e))?;
                // An ipvlan takes the parent's traffic for its addresses: never one the host
                // answers to, routes through or asks names of. (The LAN's other addresses are
                // the point of an ipvlan; the policy's host_interfaces entry consents to that.)
                for (ip, plen, what) in self.used_prefixes(None).await? {
                    if what.starts_with("the host route") {
                        continue;
                    }
                    if let Some(a) = addrs.all().find(|a| {
                        let full = if a.is_ipv4() { 32 } else { 128 };
                        prefixes_overlap(*a, full, ip, plen.max(full))
                    }) {
                        return Err(self.0.policy.deny(format!(
                            "ipvlan address {a} is {what}; the host would lose that traffic"
                        )));
                    }
                }
                let pidx = self.link_index(parent).await?;
                let tmp = format!("silo{}", hex(&random_bytes::<5>()?));
                let kmode = match mode {
                    IpvlanMode::L2 => IpVlanMode::L2,
                    IpvlanMode::L3s => IpVlanMode::L3S,
                };
                if let Err(e) = self
                    .handle()
                    .link()
                    .add(LinkIpVlan::new(&tmp, pidx, kmode).build())
                    .execute()
                    .await
                {
                    return Err(match kernel::lacks("an ipvlan nic", "CONFIG_IPVLAN") {
                        Some(why) => HelperError::Unsupported(why),
                        None => nl("create ipvlan", parent, e),
                    });
                }
                let idx = self.link_index(&IfName::new(tmp)?).await?;
                let r = async {
                    self.move_in(idx, &inst, nic).await?;
                    let routes = [
                        (addrs.ipv4_gateway && !addrs.ipv4.is_empty())
                            .then_some(DefaultRoute::Dev { ipv4: true }),
                        (addrs.ipv6_gateway && !addrs.ipv6.is_empty())
                            .then_some(DefaultRoute::Dev { ipv4: false }),
                    ];
                    self.configure_inside(&inst, nic, addrs, routes.into_iter().flatten().collect())
                        .await
                }
                .await;
                if let Err(e) = r {
                    // Wherever it is now, the ipvlan goes: on the host by index, inside with
                    // the namespace's own netlink.
                    if self.handle().link().del(idx).execute().await.is_err() {
                        let _ = self.remove_inside(&inst, nic).await;
                    }
                    return Err(e);
                }
                tracing::info!(instance = %name, nic = %nic.name, parent = %parent, "ipvlan attached");
                Ok(None)
            }
        }
    }

    /// A veth pair: the host end `host_name` (marked as silo's, up, on `bridge` when given),
    /// the other end made in the instance's network namespace as `nic.name`, up. Answers the
    /// host end's index; on a failure nothing is left.
    ///
    /// The instance's end is created where it belongs, in the one RTM_NEWLINK that makes the
    /// pair, rather than made on the host and moved in: a move between network namespaces
    /// waits for an RCU grace period (about 11 ms here, a seventh of a launch). A name that
    /// clashes inside the instance fails the whole request, before anything exists. The
    /// host end stays down until its filter and shaping are in place, and a veth end sends
    /// nothing while its peer is down: nothing the instance sends goes unfiltered.
    async fn veth(
        &self,
        host_name: &IfName,
        bridge: Option<u32>,
        inst: &Instance,
        nic: &NicSpec,
    ) -> HelperResult<u32> {
        if self.find_link(host_name.as_str()).await?.is_some() {
            return Err(HelperError::AlreadyExists {
                what: format!("interface {host_name}"),
            });
        }
        let mut peer =
            LinkUnspec::new_with_name(nic.name.as_str()).setns_by_pid(inst.init.pid as u32);
        if let Some(m) = nic.hwaddr {
            peer = peer.address(m.octets().to_vec());
        }
        if let Some(mtu) = nic.mtu {
            peer = peer.mtu(mtu);
        }
        let peer = peer.build();
        let mut pair = LinkVeth::new(host_name.as_str(), nic.name.as_str()).build();
        for a in &mut pair.attributes {
            if let LinkAttribute::LinkInfo(infos) = a {
                for i in infos.iter_mut() {
                    if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = i {
                        *p = peer.clone();
                    }
                }
            }
        }
        self.handle()
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(|e| nl("create veth", host_name, e))?;
        let r = async {
            // The pid was checked against the record before; a recycled pid now would mean
            // the instance's end went elsewhere, so check the same process still holds it.
            if !same_process(inst.init) {
                return Err(HelperError::OutOfOrder(
                    "the instance stopped while its nic was added".into(),
                ));
            }
            self.up_inside(inst, nic).await?;
            let host_idx = self.link_index(host_name).await?;
            self.mark(host_idx).await?;
            if let (Some(f), Some(mac)) = (&nic.filter, nic.hwaddr) {
                self.filter(host_name, mac.octets(), f)?;
            }
            if let Some(rate) = nic.limits.ingress {
                self.shape(host_idx, host_name, rate).await?;
            }
            if let Some(rate) = nic.limits.egress {
                self.shape_egress(host_idx, host_name, rate).await?;
            }
            let mut up = LinkUnspec::new_with_index(host_idx).up();
            if let Some(b) = bridge {
                up = up.controller(b);
            }
            if let Some(mtu) = nic.mtu {
                up = up.mtu(mtu);
            }
            self.handle()
                .link()
                .set(up.build())
                .execute()
                .await
                .map_err(|e| nl("bring up", host_name, e))?;
            Ok(host_idx)
        }
        .await;
        if r.is_err() {
            // Deleting one end takes the other with it, wherever it is.
            if let Ok(i) = self.link_index(host_name).await {
                let _ = self.handle().link().del(i).execute().await;
            }
            if nic.filter.is_some() {
                let _ = self.unfilter(host_name);
            }
            if nic.limits.egress.is_some() {
                if let Ok(ifb) = ifb_name(host_name) {
                    let _ = self.delete_host_end(&ifb).await;
                }
            }
        }
        r
    }

    /// `limits.egress`: an ifb (silo's, named after the host end) whose root is a tbf, and
    /// the host end's ingress redirected to it.
    async fn shape_egress(&self, host_idx: u32, host_name: &IfName, rate: u64) -> HelperResult<()> {
        let ifb = ifb_name(host_name)?;
        if self.find_link(ifb.as_str()).await?.is_some() {
            return Err(HelperError::AlreadyExists {
                what: format!("interface {ifb}"),
            });
        }
        self.handle()
            .link()
            .add(LinkIfb::new(ifb.as_str()).build())
            .execute()
            .await
            .map_err(|e| nl("create ifb", &ifb, e))?;
        let ifb_idx = self.link_index(&ifb).await?;
        self.mark(ifb_idx).await?;
        self.handle()
            .link()
            .set(LinkUnspec::new_with_index(ifb_idx).up().build())
            .execute()
            .await
            .map_err(|e| nl("bring up", &ifb, e))?;
        self.shape(ifb_idx, &ifb, rate).await?;
        self.handle()
            .qdisc()
            .add(host_idx as i32)
            .ingress()
            .execute()
            .await
            .map_err(|e| nl("add an ingress qdisc to", host_name, e))?;
        // ETH_P_ALL, in network byte order as the kernel compares it.
        self.handle()
            .traffic_filter(host_idx as i32)
            .add()
            .parent(0xffff_0000)
            .protocol(0x0003u16.to_be())
            .redirect(ifb_idx)
            .map_err(|e| nl("redirect the ingress of", host_name, e))?
            .execute()
            .await
            .map_err(|e| nl("redirect the ingress of", host_name, e))
    }

    /// `limits.ingress`: what reaches the instance leaves the host end, so a token bucket
    /// (tbf) as the host end's root qdisc limits it. The burst is 20 ms of the rate (at least
    /// 32 KiB, more than a full frame) and the queue 50 ms more.
    async fn shape(&self, index: u32, host_name: &IfName, rate_bits: u64) -> HelperResult<()> {
        use futures::StreamExt;
        use netlink_packet_core::{
            DefaultNla, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
            NLM_F_REQUEST,
        };
        use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
        use rtnetlink::packet_route::RouteNetlinkMessage;
        const TCA_TBF_PARMS: u16 = 1;
        const TCA_TBF_RATE64: u16 = 4;
        const TCA_TBF_BURST: u16 = 6;
        // TC_LINKLAYER_ETHERNET: the kernel computes transmit times itself, no rate table.
        const LINKLAYER_ETHERNET: u8 = 1;
        let bytes = (rate_bits / 8).max(1);
        let burst = (bytes / 50).clamp(32 * 1024, u64::from(u32::MAX)) as u32;
        let limit = (u64::from(burst) + bytes / 20).min(u64::from(u32::MAX)) as u32;
        // struct tc_tbf_qopt: rate and peakrate (struct tc_ratespec: cell_log, linklayer,
        // overhead, cell_align, mpu, rate), limit, buffer, mtu; in the host's byte order.
        let mut qopt = Vec::with_capacity(36);
        qopt.extend([0, LINKLAYER_ETHERNET]);
        qopt.extend(0u16.to_ne_bytes());
        qopt.extend(0i16.to_ne_bytes());
        qopt.extend(0u16.to_ne_bytes());
        qopt.extend((bytes.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
        qopt.extend([0u8; 12]);
        qopt.extend(limit.to_ne_bytes());
        qopt.extend(0u32.to_ne_bytes());
        qopt.extend(0u32.to_ne_bytes());
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::ROOT;
        msg.header.handle = TcHandle::from(0x0001_0000);
        msg.attributes.push(TcAttribute::Kind("tbf".to_string()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, qopt)),
            TcOption::Other(DefaultNla::new(
                TCA_TBF_RATE64,
                bytes.to_ne_bytes().to_vec(),
            )),
            TcOption::Other(DefaultNla::new(TCA_TBF_BURST, burst.to_ne_bytes().to_vec())),
        ]));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let mut handle = self.handle().clone();
        let mut answers = handle
            .request(req)
            .map_err(|e| nl("limit (tbf qdisc)", host_name, e))?;
        while let Some(m) = answers.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                if e.code.is_some() {
                    return Err(nl(
                        "limit (tbf qdisc)",
                        host_name,
                        rtnetlink::Error::NetlinkError(e),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Installs a bridged nic's anti-spoofing chain on its host end.
    fn filter(
        &self,
        host_name: &IfName,
        mac: [u8; 6],
        f: &silo_proto::net::NicFiltering,
    ) -> HelperResult<()> {
        let table = &self.0.nft_table;
        nft::add_nic_filter(
            table,
            &nft::NicFilter {
                device: host_name.clone(),
                mac,
                ipv4: f.ipv4.clone(),
                ipv6: f.ipv6.clone(),
            },
        )
        .map_err(|e| HelperError::Io {
            op: "nftables".into(),
            target: format!("table netdev {table}"),
            errno: e.errno(),
            message: e.to_string(),
        })
    }

    /// Removes a nic's anti-spoofing chain (none is fine).
    fn unfilter(&self, host_name: &IfName) -> HelperResult<()> {
        let table = &self.0.nft_table;
        nft::remove_nic_filter(table, host_name).map_err(|e| HelperError::Io {
            op: "nftables".into(),
            target: format!("table netdev {table}"),
            errno: e.errno(),
            message: e.to_string(),
        })
    }

    /// Refuses what silo cannot do on this host, naming why, before anything is made.
    fn check_unsupported(&self, nic: &NicSpec) -> HelperResult<()> {
        if let Some(f) = &nic.filter {
            if !matches!(nic.kind, NicKind::Bridged { .. }) {
                return Err(HelperError::invalid(
                    "security.mac_filtering",
                    "filtering is for bridged nics",
                ));
            }
            if nic.hwaddr.is_none() {
                return Err(HelperError::invalid(
                    "security.mac_filtering",
                    "a filtered nic needs its MAC address",
                ));
            }
            let n = f.ipv4.as_ref().map_or(0, Vec::len) + f.ipv6.as_ref().map_or(0, Vec::len);
            if n > 2 * silo_proto::net::MAX_NIC_ADDRS {
                return Err(HelperError::invalid("nic", "too many filtered addresses"));
            }
        }
        if let Some(id) = nic.vlan {
            let why = match &nic.kind {
                NicKind::Bridged { .. } => kernel::lacks(
                    "vlan on a bridged nic (bridge VLAN filtering)",
                    "CONFIG_BRIDGE_VLAN_FILTERING",
                ),
                NicKind::Macvlan { .. }
                | NicKind::Ipvlan { .. }
                | NicKind::Routed {
                    parent: Some(_), ..
                } => kernel::lacks(
                    "vlan on a macvlan, ipvlan or routed nic (a VLAN sub-interface of the parent)",
                    "CONFIG_VLAN_8021Q",
                ),
                _ => {
                    return Err(HelperError::invalid(
                        "vlan",
                        "only bridged, macvlan, ipvlan and routed nics with a parent take a vlan",
                    ))
                }
            };
            return Err(HelperError::Unsupported(why.unwrap_or_else(|| {
                format!("vlan {id}: silo does not put nics on VLANs yet")
            })));
        }
        let l = nic.limits;
        if l.egress.is_some() {
            // What the instance sends arrives on the host end's ingress, where no queue can
            // hold it: it is redirected (mirred) to an ifb, whose own egress is shaped.
            for (what, option) in [
                (
                    "limits.egress (an ifb to shape the host end's ingress on)",
                    "CONFIG_IFB",
                ),
                (
                    "limits.egress (redirecting the host end's ingress with tc's mirred)",
                    "CONFIG_NET_ACT_MIRRED",
                ),
                ("limits.egress (tc's u32 classifier)", "CONFIG_NET_CLS_U32"),
            ] {
                if let Some(why) = kernel::lacks(what, option) {
                    return Err(HelperError::Unsupported(why));
                }
            }
        }
        if (l.ingress.is_some() || l.egress.is_some())
            && !matches!(
                nic.kind,
                NicKind::Bridged { .. } | NicKind::P2p { .. } | NicKind::Routed { .. }
            )
        {
            return Err(HelperError::invalid(
                "limits.ingress",
                "only nics with a host end (bridged, p2p, routed) take limits",
            ));
        }
        Ok(())
    }

    /// Refuses routing `net/prefix` to an instance where that would take traffic the host
    /// sends elsewhere: as for a managed network's subnet, it must lie in a private range (or
    /// one the policy lists in `network_ranges`) and overlap none of the host's addresses,
    /// routes (silo's managed networks and earlier routed nics included), gateways and
    /// resolvers.
    fn check_routable(
        &self,
        key: &str,
        net: IpAddr,
        prefix: u8,
        used: &[(IpAddr, u8, String)],
    ) -> HelperResult<()> {
        silo_proto::types::check_managed_subnet(key, net, prefix, &self.0.policy.network_ranges)
            .map_err(|e| self.0.policy.deny(e))?;
        if let Some((_, _, what)) = used
            .iter()
            .find(|(ip, plen, _)| prefixes_overlap(net, prefix, *ip, *plen))
        {
            return Err(self.0.policy.deny(format!(
                "{key}: {net}/{prefix} overlaps {what}; routing it to an instance would take \
                 that traffic from the host"
            )));
        }
        Ok(())
    }

    /// The host end's own address: link-local (the default) or, like the nic's addresses,
    /// routable without taking host traffic; never a gateway, route or resolver the host uses.
    fn check_host_address(
        &self,
        key: &str,
        a: IpAddr,
        used: &[(IpAddr, u8, String)],
    ) -> HelperResult<()> {
        let link_local = match a {
            IpAddr::V4(v) => v.is_link_local(),
            IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
        };
        let full = if a.is_ipv4() { 32 } else { 128 };
        if !link_local {
            return self.check_routable(key, a, full, used);
        }
        if a.is_ipv4() {
            if let Some((_, _, what)) = used
                .iter()
                .find(|(ip, plen, _)| prefixes_overlap(a, full, *ip, *plen))
            {
                return Err(self.0.policy.deny(format!(
                    "{key}: {a} overlaps {what}; the host would lose that traffic"
                )));
            }
        }
        Ok(())
    }

    /// `ip route add net/prefix dev <index>` in the main table.
    async fn host_route(
        &self,
        index: u32,
        net: IpAddr,
        prefix: u8,
        host_name: &IfName,
    ) -> HelperResult<()> {
        let msg = match net {
            IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(a, prefix)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(a, prefix)
                .output_interface(index)
                .build(),
        };
        self.handle()
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| nl(&format!("add the route {net}/{prefix} via"), host_name, e))
    }

    /// A routed nic: checks, the veth, the host end's gateway addresses, the instance's
    /// addresses and default routes, host routes, then proxy ARP/NDP entries on the parent.
    async fn attach_routed(
        &self,
        inst: &Instance,
        nic: &NicSpec,
        host_name: &IfName,
        parent: Option<&IfName>,
        addrs: &NicAddrs,
    ) -> HelperResult<()> {
        addrs.check().map_err(|e| HelperError::invalid("nic", e))?;
        let used = self.used_prefixes(None).await?;
        for a in &addrs.ipv4 {
            self.check_routable("ipv4.address", IpAddr::V4(*a), 32, &used)?;
        }
        for a in &addrs.ipv6 {
            self.check_routable("ipv6.address", IpAddr::V6(*a), 128, &used)?;
        }
        let v4 = !addrs.ipv4.is_empty();
        let v6 = !addrs.ipv6.is_empty();
        if v4 {
            self.check_host_address(
                "ipv4.host_address",
                IpAddr::V4(addrs.ipv4_host_address),
                &used,
            )?;
        }
        if v6 {
            self.check_host_address(
                "ipv6.host_address",
                IpAddr::V6(addrs.ipv6_host_address),
                &used,
            )?;
        }
        let parent_idx = match parent {
            Some(p) => {
                self.policy_allows_parent(p)?;
                let m = self
                    .find_link(p.as_str())
                    .await?
                    .ok_or_else(|| HelperError::NotFound {
                        what: format!("interface {p}"),
                    })?;
                if self.owned(&m) {
                    return Err(HelperError::invalid(
                        "parent",
                        format!("{p} is one of silo's own interfaces"),
                    ));
                }
                // As LXD: silo does not change sysctls of interfaces it does not own, so what
                // proxy ARP/NDP needs on the parent must already be set.
                let mut need = Vec::new();
                if v4 {
                    need.push(format!("net/ipv4/conf/{p}/forwarding"));
                }
                if v6 {
                    need.push("net/ipv6/conf/all/forwarding".to_string());
                    need.push("net/ipv6/conf/all/proxy_ndp".to_string());
                    need.push(format!("net/ipv6/conf/{p}/forwarding"));
                    need.push(format!("net/ipv6/conf/{p}/proxy_ndp"));
                }
                for k in need {
                    let v = std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap_or_default();
                    if v.trim() != "1" {
                        return Err(HelperError::invalid(
                            "parent",
                            format!("routed mode requires sysctl {}=1", k.replace('/', ".")),
                        ));
                    }
                }
                Some(m.header.index)
            }
            None => None,
        };
        let idx = self.veth(host_name, None, inst, nic).await?;
        let mut proxied: Vec<IpAddr> = Vec::new();
        let r = async {
            // As LXD: a family whose gateway is `none` gets neither the default route inside
            // nor the gateway address on the host end.
            if v4 && addrs.ipv4_gateway {
                let mut req =
                    self.handle()
                        .address()
                        .add(idx, IpAddr::V4(addrs.ipv4_host_address), 32);
                // Link scope: it is this link's gateway, not an address of the host's.
                req.message_mut().header.scope = AddressScope::Link;
                req.execute()
                    .await
                    .map_err(|e| nl("add the gateway address to", host_name, e))?;
            }
            if v6 && addrs.ipv6_gateway {
                let mut req =
                    self.handle()
                        .address()
                        .add(idx, IpAddr::V6(addrs.ipv6_host_address), 128);
                req.message_mut()
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
                req.execute()
                    .await
                    .map_err(|e| nl("add the gateway address to", host_name, e))?;
            }
            let mut routes = Vec::new();
            if v4 && addrs.ipv4_gateway {
                routes.push(DefaultRoute::Via(IpAddr::V4(addrs.ipv4_host_address)));
            }
            if v6 && addrs.ipv6_gateway {
                routes.push(DefaultRoute::Via(IpAddr::V6(addrs.ipv6_host_address)));
            }
            self.configure_inside(inst, nic, addrs, routes).await?;
            for a in addrs.all() {
                let full = if a.is_ipv4() { 32 } else { 128 };
                self.host_route(idx, a, full, host_name).await?;
            }
            if let Some(p) = parent_idx {
                for a in addrs.all() {
                    self.handle()
                        .neighbours()
                        .add(p, a)
                        .flags(NeighbourFlags::Proxy)
                        .execute()
                        .await
                        .map_err(|e| nl(&format!("add a proxy entry for {a} on"), p, e))?;
                    proxied.push(a);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            let _ = self.handle().link().del(idx).execute().await;
            if let Some(p) = parent_idx {
                for a in proxied {
                    let _ = self.del_proxy(p, a).await;
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes a proxy ARP/NDP entry for `a` on interface `index`.
    async fn del_proxy(&self, index: u32, a: IpAddr) -> HelperResult<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = if a.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.ifindex = index;
        m.header.flags = NeighbourFlags::Proxy;
        m.attributes.push(NeighbourAttribute::Destination(match a {
            IpAddr::V4(v) => NeighbourAddress::Inet(v),
            IpAddr::V6(v) => NeighbourAddress::Inet6(v),
        }));
        match self.handle().neighbours().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.map(|c| -c.get()) == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(e) => Err(nl(&format!("remove the proxy entry for {a} on"), index, e)),
        }
    }

    /// Whether any host route still sends `a` somewhere (another nic may own it now).
    async fn routed_anywhere(&self, a: IpAddr) -> HelperResult<bool> {
        let full = if a.is_ipv4() { 32 } else { 128 };
        Ok(self
            .used_prefixes(None)
            .await?
            .iter()
            .any(|(ip, plen, what)| {
                *ip == a && *plen == full && what.starts_with("the host route")
            }))
    }

    /// The instance's addresses and default routes, set inside by the launcher.
    async fn configure_inside(
        &self,
        inst: &Instance,
        nic: &NicSpec,
        addrs: &NicAddrs,
        routes: Vec<DefaultRoute>,
    ) -> HelperResult<()> {
        let list: Vec<(IpAddr, u8)> = addrs
            .ipv4
            .iter()
            .map(|a| (IpAddr::V4(*a), 32))
            .chain(addrs.ipv6.iter().map(|a| (IpAddr::V6(*a), 128)))
            .collect();
        if list.is_empty() && routes.is_empty() {
            return Ok(());
        }
        self.netns_addrs(inst, nic, list, routes).await
    }

    /// Brings the instance's end of a veth up, inside (see `netns::configure`).
    async fn up_inside(&self, inst: &Instance, nic: &NicSpec) -> HelperResult<()> {
        self.netns_addrs(inst, nic, Vec::new(), Vec::new()).await
    }

    /// Brings `nic` up inside the instance and gives it `addrs` and `routes`, through the
    /// launcher.
    async fn netns_addrs(
        &self,
        inst: &Instance,
        nic: &NicSpec,
        addrs: Vec<(IpAddr, u8)>,
        routes: Vec<DefaultRoute>,
    ) -> HelperResult<()> {
        let r: Reply = self
            .0
            .launcher
            .call(
                &Request::NetnsAddrs {
                    init: inst.init,
                    name: nic.name.to_string(),
                    addrs,
                    routes,
                },
                &[],
            )
            .await?;
        match r {
            Reply::Failed(why) => Err(HelperError::Unsupported(why)),
            _ => Ok(()),
        }
    }

    /// Deletes the nic inside the instance (a macvlan or ipvlan on unplug).
    async fn remove_inside(&self, inst: &Instance, nic: &NicSpec) -> HelperResult<()> {
        let r: Reply = self
            .0
            .launcher
            .call(
                &Request::NetnsLink {
                    init: inst.init,
                    name: nic.name.to_string(),
                    new_name: None,
                },
                &[],
            )
            .await?;
        match r {
            Reply::Failed(why) => Err(HelperError::Unsupported(why)),
            _ => Ok(()),
        }
    }

    pub async fn detach_nic(&self, name: &InstanceName, nic: &NicSpec) -> HelperResult<()> {
        match &nic.kind {
            NicKind::Bridged { host_name, .. } | NicKind::P2p { host_name, .. } => {
                // Works whether or not the instance still runs: the host end is silo's, and
                // so are the filter chain and the egress ifb named after it.
                self.release_host_end(host_name, nic).await
            }
            NicKind::Routed {
                host_name,
                parent,
                addrs,
            } => {
                // Its host routes go with the host end; proxy entries on the parent stay
                // unless taken away, and go only when no route sends the address anywhere
                // (another instance's nic may hold it since).
                self.release_host_end(host_name, nic).await?;
                if let Some(p) = parent {
                    self.policy_allows_parent(p)?;
                    if let Some(m) = self.find_link(p.as_str()).await? {
                        for a in addrs.all() {
                            if !self.routed_anywhere(a).await? {
                                self.del_proxy(m.header.index, a).await?;
                            }
                        }
                    }
                }
                Ok(())
            }
            NicKind::Ipvlan { parent, .. } => {
                self.policy_allows_parent(parent)?;
                match self.instance(name) {
                    Ok(inst) => self.remove_inside(&inst, nic).await,
                    // Stopped: the ipvlan went with the namespace.
                    Err(HelperError::OutOfOrder(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            NicKind::Macvlan { parent } | NicKind::Physical { parent } => {
                self.policy_allows_parent(parent)?;
                let inst = match self.instance(name) {
                    Ok(i) => i,
                    // Stopped: the macvlan went with the namespace; a physical nic came back.
                    Err(HelperError::OutOfOrder(_)) => return Ok(()),
                    Err(e) => return Err(e),
                };
                let new_name = match &nic.kind {
                    NicKind::Physical { parent } => {
                        if self.find_link(parent.as_str()).await?.is_some() {
                            return Err(HelperError::AlreadyExists {
                                what: format!("interface {parent} on the host"),
                            });
                        }
                        Some(parent.to_string())
                    }
                    _ => None,
                };
                let r: Reply = self
                    .0
                    .launcher
                    .call(
                        &Request::NetnsLink {
                            init: inst.init,
                            name: nic.name.to_string(),
                            new_name,
                        },
                        &[],
                    )
                    .await?;
                match r {
                    Reply::Failed(why) => Err(HelperError::Unsupported(why)),
                    _ => Ok(()),
                }
            }
        }
    }

    /// The host end, its filter chain and its egress ifb.
    async fn release_host_end(&self, host_name: &IfName, nic: &NicSpec) -> HelperResult<()> {
        self.delete_host_end(host_name).await?;
        if nic.filter.is_some() {
            self.unfilter(host_name)?;
        }
        if nic.limits.egress.is_some() {
            self.delete_host_end(&ifb_name(host_name)?).await?;
        }
        Ok(())
    }

    /// Deletes a veth's host end (and so its peer and routes) if it is silo's.
    async fn delete_host_end(&self, host_name: &IfName) -> HelperResult<()> {
        let Some(m) = self.find_link(host_name.as_str()).await? else {
            return Ok(());
        };
        if !self.owned(&m) {
            return Err(self
                .0
                .policy
                .deny(format!("interface {host_name} is not silo's")));
        }
        self.handle()
            .link()
            .del(m.header.index)
            .execute()
            .await
            .map_err(|e| nl("delete veth", host_name, e))
    }

    /// The host side of a proxy, in either direction, is what the policy allows: listening
    /// on the host keeps its rules (ports below 1024, unix sockets under `host_paths`);
    /// connecting to the host (`bind=instance`) reaches only unix sockets under `host_paths`
    /// and TCP/UDP addresses `proxy_host_connect` lists.
    fn check_proxy_policy(&self, spec: &ProxySpec) -> HelperResult<()> {
        let policy = &self.0.policy;
        let unix_allowed = |path: &silo_proto::proxy::UnixPath, what: &str| {
            let p = std::path::Path::new(path.as_str());
            if policy.host_paths.iter().any(|b| p.starts_with(b)) {
                Ok(())
            } else {
                Err(policy.deny(format!(
                    "{what} a unix socket at {} on the host needs a host_paths entry above it",
                    path.as_str()
                )))
            }
        };
        match spec.bind {
            ProxyBind::Host => match &spec.listen {
                ProxyAddr::Tcp { ports, .. } | ProxyAddr::Udp { ports, .. } => {
                    if ports.first() < 1024 && !policy.allow_privileged_ports {
                        return Err(policy.deny(format!(
                            "listening on host port {} (below 1024) needs allow_privileged_ports",
                            ports.first()
                        )));
                    }
                    Ok(())
                }
                ProxyAddr::Unix { path } => unix_allowed(path, "listening on"),
            },
            ProxyBind::Instance => match &spec.connect {
                ProxyAddr::Unix { path } => unix_allowed(path, "connecting to"),
                tcp_or_udp => {
                    if policy
                        .proxy_host_connect
                        .iter()
                        .any(|a| a.covers(tcp_or_udp))
                    {
                        Ok(())
                    } else {
                        Err(policy.deny(format!(
                            "connecting to {tcp_or_udp} on the host (bind=instance) needs a \
                             proxy_host_connect entry covering it"
                        )))
                    }
                }
            },
        }
    }

    pub async fn start_proxy(
        &self,
        name: &InstanceName,
        device: &str,
        spec: &ProxySpec,
    ) -> HelperResult<()> {
        spec.validate()?;
        self.check_proxy_policy(spec)?;
        let inst = self.instance(name)?;
        // The forwarder runs as the instance's root on the host: unprivileged there, and the
        // owner of what the instance's root owns inside. Privileged instances get nobody.
        let uid = inst.info.idmap_base.map(|b| b as u32).unwrap_or(65534);
        let r: Reply = self
            .0
            .launcher
            .call(
                &Request::Forward {
                    key: format!("{name}/{device}"),
                    init: inst.init,
                    uid,
                    spec: spec.clone(),
                },
                &[],
            )
            .await?;
        match r {
            Reply::Failed(why) => Err(HelperError::invalid(format!("proxy device {device}"), why)),
            _ => {
                tracing::info!(instance = %name, device, listen = %spec.listen, connect = %spec.connect, "proxy started");
                Ok(())
            }
        }
    }

    pub async fn stop_proxy(&self, name: &InstanceName, device: Option<&str>) -> HelperResult<()> {
        let prefix = match device {
            Some(d) => format!("{name}/{d}"),
            None => format!("{name}/"),
        };
        let _: Reply = self
            .0
            .launcher
            .call(&Request::StopForwards { prefix }, &[])
            .await?;
        Ok(())
    }
}

/// The ifb shaping a nic's egress: its host end's name (at most 14 bytes of it) and `i`.
fn ifb_name(host_name: &IfName) -> HelperResult<IfName> {
    let h = host_name.as_str();
    Ok(IfName::new(format!("{}i", &h[..h.len().min(14)]))?)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
