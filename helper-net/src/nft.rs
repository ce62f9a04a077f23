//! silo's NAT masquerade, programmed into nftables over netlink (NETLINK_NETFILTER), never by
//! running `nft`: that would put execve in silo-net's allow-list and daemon-supplied names on a
//! command line, and make silo depend on the nft binary's version and text syntax.
//!
//! silo owns exactly one table, `inet <table>`, and rebuilds it whole on every change in a single
//! nfnetlink batch, so the kernel either applies all of it or none of it and other managers'
//! tables (firewalld, docker, LXD) are never read or touched.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, DevHookNumber, ExpressionAttribute,
    Expressions, Hook, Immediate, InetHookNumber, ListAttribute, Meta, MetaKey, NfTablesMessage,
    Operator, Payload, Register, RuleAttribute, RuleMessage, TableAttribute, TableMessage, Verdict,
    VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use silo_proto::{IfName, NameError};

/// Address family of one NAT rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

/// Masquerade what leaves `subnet/prefix` through any interface but `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRule {
    /// Interface name, at most 15 bytes.
    pub bridge: String,
    pub family: Family,
    /// Any address inside the subnet; host bits are ignored.
    pub subnet: IpAddr,
    pub prefix: u8,
}

/// Why programming nftables failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables: invalid table name {name:?}: {reason}")]
    InvalidTable { name: String, reason: &'static str },
    #[error("nftables: invalid bridge name for a NAT rule: {0}")]
    InvalidBridge(#[from] NameError),
    #[error("nftables: invalid NAT rule for bridge {bridge}: {reason}")]
    InvalidRule { bridge: String, reason: String },
    #[error("nftables: {op} table inet {table}: {what}: {source}")]
    Socket {
        op: &'static str,
        table: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("nftables: {op} table inet {table}: the kernel refused {message}: {}",
        nix::errno::Errno::from_raw(*errno))]
    Kernel {
        op: &'static str,
        table: String,
        /// The batch message that failed, or "the batch" when the kernel refused it as a whole.
        message: String,
        errno: i32,
    },
    #[error("nftables: {op} table inet {table}: {reason}")]
    Protocol {
        op: &'static str,
        table: String,
        reason: String,
    },
}

impl NftError {
    /// The kernel's errno, when the kernel (not validation or decoding) refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Kernel { errno, .. } => Some(*errno),
            NftError::Socket { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

// nfnetlink subsystem id for nf_tables, carried as res_id of the batch delimiters.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
// NF_ACCEPT, the chain policy.
const NF_ACCEPT: u32 = 1;
// NF_IP_PRI_NAT_SRC: `priority srcnat`, where LXD and nft's own examples put masquerading.
const PRIORITY_SRCNAT: u32 = 100;
// NFT_PAYLOAD_NETWORK_HEADER.
const NETWORK_HEADER: u32 = 1;
// The kernel loads IFNAMSIZ bytes for `meta oifname`, and nft pads the name to it.
const IFNAMSIZ: usize = 16;
const TABLE_NAME_MAX: usize = 32;
// Generous kernel memory (skb truesize) per ack, to size the receive buffer so no ack is dropped.
const ACK_BUDGET: usize = 2048;
const MIN_SOCKET_BUFFER: usize = 256 * 1024;

/// Atomically replaces silo's own table `inet <table>` with one nat chain per bridge, named
/// `pstrt.<bridge>` (type nat hook postrouting priority 100, policy accept), holding for each rule
/// of that bridge:
///   v4: meta nfproto ipv4 ip saddr S ip daddr != S oifname != "<bridge>" masquerade
///   v6: meta nfproto ipv6 ip6 saddr S ip6 daddr != S oifname != "<bridge>" masquerade
///
/// An empty rule list deletes the table. Never touches any other table.
pub fn sync_table(table: &str, rules: &[NatRule]) -> Result<(), NftError> {
    check_table(table)?;
    let chains = prepare(rules)?;
    if chains.is_empty() {
        return delete_table(table);
    }
    let mut batch = reset_table(table);
    batch.push(Request::new(
        format!("NEWTABLE inet {table}"),
        NLM_F_CREATE,
        NfTablesMessage::NewTable(TableMessage {
            attributes: vec![TableAttribute::Name(table.to_string())],
        }),
    ));
    for (bridge, nets) in &chains {
        let chain = format!("pstrt.{bridge}");
        batch.push(Request::new(
            format!("NEWCHAIN {chain}"),
            NLM_F_CREATE,
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(table.to_string()),
                    ChainAttribute::Name(chain.clone()),
                    ChainAttribute::Hook(vec![
                        Hook::Number(InetHookNumber::PostRouting.into()),
                        Hook::Priority(PRIORITY_SRCNAT),
                    ]),
                    ChainAttribute::Policy(NF_ACCEPT),
                    ChainAttribute::Type("nat".to_string()),
                ],
            }),
        ));
        for net in nets {
            batch.push(Request::new(
                format!("NEWRULE in {chain}: {}", net.describe(bridge)),
                NLM_F_CREATE | NLM_F_APPEND,
                NfTablesMessage::NewRule(RuleMessage {
                    attributes: vec![
                        RuleAttribute::Table(table.to_string()),
                        RuleAttribute::Chain(chain.clone()),
                        RuleAttribute::Expressions(net.expressions(bridge)),
                    ],
                }),
            ));
        }
    }
    transact("syncing", table, batch)
}

/// Deletes `inet <table>` if it exists (idempotent: missing table is not an error).
pub fn delete_table(table: &str) -> Result<(), NftError> {
    check_table(table)?;
    transact("deleting", table, reset_table(table))
}

/// Deleting a missing table fails with ENOENT and would abort the batch, so the table is first
/// created if missing: NEWTABLE without NLM_F_EXCL leaves an existing table as it is.
fn reset_table(table: &str) -> Vec<Request> {
    let name = || vec![TableAttribute::Name(table.to_string())];
    vec![
        Request::new(
            format!("NEWTABLE inet {table} (so that deleting it cannot fail)"),
            NLM_F_CREATE,
            NfTablesMessage::NewTable(TableMessage { attributes: name() }),
        ),
        Request::new(
            format!("DELTABLE inet {table}"),
            0,
            NfTablesMessage::DeleteTable(TableMessage { attributes: name() }),
        ),
    ]
}

fn check_table(table: &str) -> Result<(), NftError> {
    let refuse = |reason| {
        Err(NftError::InvalidTable {
            name: table.chars().take(80).collect(),
            reason,
        })
    };
    if table.is_empty() || table.len() > TABLE_NAME_MAX {
        return refuse("must be 1 to 32 characters");
    }
    if !table
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
    {
        return refuse("must only contain a-z, 0-9, '_', '.' and '-'");
    }
    // So that `nft list table inet <table>` cannot take it for an option.
    if table.starts_with('-') {
        return refuse("must not start with '-'");
    }
    Ok(())
}

/// One subnet to masquerade, its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

/// Validates the rules and groups them by bridge; duplicates collapse into one rule.
fn prepare(rules: &[NatRule]) -> Result<BTreeMap<String, Vec<Net>>, NftError> {
    let mut chains: BTreeMap<String, Vec<Net>> = BTreeMap::new();
    for r in rules {
        let bridge = IfName::new(r.bridge.as_str())?;
        let invalid = |reason: String| NftError::InvalidRule {
            bridge: bridge.as_str().to_string(),
            reason,
        };
        let max = match (r.family, r.subnet) {
            (Family::V4, IpAddr::V4(_)) => 32,
            (Family::V6, IpAddr::V6(_)) => 128,
            (f, a) => return Err(invalid(format!("family {f:?} does not match subnet {a}"))),
        };
        // A /0 would masquerade every source and then match no destination at all.
        if r.prefix == 0 || r.prefix > max {
            return Err(invalid(format!(
                "prefix length {} of {} must be 1 to {max}",
                r.prefix, r.subnet
            )));
        }
        let addr = match r.subnet {
            IpAddr::V4(a) => IpAddr::from(masked(a.octets(), r.prefix)),
            IpAddr::V6(a) => IpAddr::from(masked(a.octets(), r.prefix)),
        };
        let net = Net {
            addr,
            prefix: r.prefix,
        };
        let nets = chains.entry(bridge.as_str().to_string()).or_default();
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    Ok(chains)
}

fn masked<const N: usize>(mut octets: [u8; N], prefix: u8) -> [u8; N] {
    for (i, b) in octets.iter_mut().enumerate() {
        *b &= mask_byte(prefix, i);
    }
    octets
}

/// The mask byte at `index` of a `prefix`-bit netmask.
fn mask_byte(prefix: u8, index: usize) -> u8 {
    let bits = usize::from(prefix).saturating_sub(index * 8).min(8);
    // bits is 0..=8, so the shift never overflows a u16.
    (0xff00u16 >> bits) as u8
}

impl Net {
    /// What `nft list` prints for this rule, for error messages.
    fn describe(&self, bridge: &str) -> String {
        let proto = if self.addr.is_ipv4() { "ip" } else { "ip6" };
        let (addr, p) = (self.addr, self.prefix);
        format!(
            "{proto} saddr {addr}/{p} {proto} daddr != {addr}/{p} oifname != \"{bridge}\" masquerade"
        )
    }

    /// The expressions nft 1.0.6 itself generates for the rule (`nft --debug=netlink`), so that
    /// `nft list` prints it back as `ip saddr 10.0.0.0/24` rather than as raw expressions: an
    /// inet table sees both families, so the nfproto test comes first for the payload offsets to
    /// mean anything; a prefix on a byte boundary loads only the bytes it covers, any other
    /// loads the whole address and masks it.
    fn expressions(&self, bridge: &str) -> Vec<ListAttribute<ExpressionAttribute>> {
        let (nfproto, saddr, daddr, octets) = match self.addr {
            IpAddr::V4(a) => (libc::NFPROTO_IPV4 as u8, 12, 16, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::NFPROTO_IPV6 as u8, 8, 24, a.octets().to_vec()),
        };
        let partial = !self.prefix.is_multiple_of(8);
        let len = if partial {
            octets.len()
        } else {
            usize::from(self.prefix / 8)
        };
        let net = octets[..len].to_vec();

        let mut e = Vec::with_capacity(11);
        e.push(meta(MetaKey::Nfproto));
        e.push(cmp(Operator::Equal, vec![nfproto]));
        for (offset, op) in [(saddr, Operator::Equal), (daddr, Operator::NotEqual)] {
            e.push(Expressions::Payload(vec![
                Payload::DestinationRegister(Register::Reg1),
                Payload::Base(NETWORK_HEADER),
                Payload::Offset(offset),
                Payload::Len(len as u32),
            ]));
            if partial {
                e.push(Expressions::Bitwise(vec![
                    Bitwise::SourceRegister(Register::Reg1),
                    Bitwise::DestinationRegister(Register::Reg1),
                    Bitwise::Length(len as u32),
                    Bitwise::Mask(DataAttribute::Value(
                        (0..len).map(|i| mask_byte(self.prefix, i)).collect(),
                    )),
                    Bitwise::Xor(DataAttribute::Value(vec![0; len])),
                ]));
            }
            e.push(cmp(op, net.clone()));
        }
        e.push(meta(MetaKey::Oifname));
        let mut name = bridge.as_bytes().to_vec();
        name.resize(IFNAMSIZ, 0);
        e.push(cmp(Operator::NotEqual, name));

        let mut list: Vec<ListAttribute<ExpressionAttribute>> =
            e.into_iter().map(Into::into).collect();
        // masq takes no attributes here (no port range, no flags), so it is only a name.
        list.push(ListAttribute::Element(vec![ExpressionAttribute::Name(
            "masq".to_string(),
        )]));
        list
    }
}

/// What a nic on a bridge may send: frames from its own MAC only, and (when filtered) IPv4
/// and IPv6 packets and ARP from its own addresses only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicFilter {
    /// The host end of the nic's veth, whose ingress the chain hooks.
    pub device: IfName,
    /// The nic's MAC address.
    pub mac: [u8; 6],
    /// IPv4 sources allowed (0.0.0.0, a DHCP client's, is added); None: IPv4 unfiltered.
    pub ipv4: Option<Vec<std::net::Ipv4Addr>>,
    /// IPv6 sources allowed (`::`, duplicate address detection's, is added); router
    /// advertisements are dropped. None: IPv6 unfiltered.
    pub ipv6: Option<Vec<std::net::Ipv6Addr>>,
}

// NFT_PAYLOAD_LL_HEADER.
const LINK_HEADER: u32 = 0;
const NF_DROP: u32 = 0;
const ETH_ARP: [u8; 2] = [0x08, 0x06];
const ETH_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_IPV6: [u8; 2] = [0x86, 0xdd];

/// The chain of one nic's filter in `netdev <table>`.
fn filter_chain(device: &IfName) -> String {
    format!("nic.{device}")
}

fn load(base: u32, offset: u32, len: u32) -> Expressions {
    Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
}

fn verdict(code: u32) -> Expressions {
    Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(
            Verdict::Other(code),
        )])),
    ])
}

/// One rule: every expression must match for the verdict.
fn rule(matches: Vec<Expressions>, code: u32) -> Vec<ListAttribute<ExpressionAttribute>> {
    matches
        .into_iter()
        .chain(std::iter::once(verdict(code)))
        .map(Into::into)
        .collect()
}

fn ethertype(t: [u8; 2]) -> [Expressions; 2] {
    [load(LINK_HEADER, 12, 2), cmp(Operator::Equal, t.to_vec())]
}

/// The rules of a nic's filter, in order, each with what `nft list` would call it.
fn filter_rules(f: &NicFilter) -> Vec<(String, Vec<ListAttribute<ExpressionAttribute>>)> {
    let mac = f.mac.to_vec();
    let mut out = vec![
        (
            "ether saddr != <mac> drop".to_string(),
            rule(
                vec![
                    load(LINK_HEADER, 6, 6),
                    cmp(Operator::NotEqual, mac.clone()),
                ],
                NF_DROP,
            ),
        ),
        (
            "arp saddr ether != <mac> drop".to_string(),
            rule(
                ethertype(ETH_ARP)
                    .into_iter()
                    .chain([load(NETWORK_HEADER, 8, 6), cmp(Operator::NotEqual, mac)])
                    .collect(),
                NF_DROP,
            ),
        ),
    ];
    if let Some(v4) = &f.ipv4 {
        let allowed: Vec<std::net::Ipv4Addr> = v4
            .iter()
            .copied()
            .chain(std::iter::once(std::net::Ipv4Addr::UNSPECIFIED))
            .collect();
        // ARP's sender address sits at 14, IPv4's source at 12.
        for (t, offset, what) in [(ETH_ARP, 14, "arp saddr ip"), (ETH_IPV4, 12, "ip saddr")] {
            for a in &allowed {
                out.push((
                    format!("{what} {a} accept"),
                    rule(
                        ethertype(t)
                            .into_iter()
                            .chain([
                                load(NETWORK_HEADER, offset, 4),
                                cmp(Operator::Equal, a.octets().to_vec()),
                            ])
                            .collect(),
                        NF_ACCEPT,
                    ),
                ));
            }
            out.push((
                format!("ether type {t:02x?} drop"),
                rule(ethertype(t).into_iter().collect(), NF_DROP),
            ));
        }
    }
    if let Some(v6) = &f.ipv6 {
        // Router advertisements (ICMPv6 type 134 right after the fixed header): an instance
        // must not become the bridge's router.
        out.push((
            "icmpv6 type nd-router-advert drop".to_string(),
            rule(
                ethertype(ETH_IPV6)
                    .into_iter()
                    .chain([
                        load(NETWORK_HEADER, 6, 1),
                        cmp(Operator::Equal, vec![58]),
                        load(NETWORK_HEADER, 40, 1),
                        cmp(Operator::Equal, vec![134]),
                    ])
                    .collect(),
                NF_DROP,
            ),
        ));
        for a in v6
            .iter()
            .copied()
            .chain(std::iter::once(std::net::Ipv6Addr::UNSPECIFIED))
        {
            out.push((
                format!("ip6 saddr {a} accept"),
                rule(
                    ethertype(ETH_IPV6)
                        .into_iter()
                        .chain([
                            load(NETWORK_HEADER, 8, 16),
                            cmp(Operator::Equal, a.octets().to_vec()),
                        ])
                        .collect(),
                    NF_ACCEPT,
                ),
            ));
        }
        out.push((
            "ether type ip6 drop".to_string(),
            rule(ethertype(ETH_IPV6).into_iter().collect(), NF_DROP),
        ));
    }
    out
}

/// Installs a nic's filter: a chain `nic.<device>` in silo's own `netdev <table>`, hooked
/// at the host end's ingress (so it sees every frame the instance sends, before the bridge),
/// replacing one of the same name, in one batch.
pub fn add_nic_filter(table: &str, f: &NicFilter) -> Result<(), NftError> {
    check_table(table)?;
    remove_nic_filter(table, &f.device)?;
    let chain = filter_chain(&f.device);
    let mut batch = vec![
        Request::netdev(
            format!("NEWTABLE netdev {table}"),
            NLM_F_CREATE,
            NfTablesMessage::NewTable(TableMessage {
                attributes: vec![TableAttribute::Name(table.to_string())],
            }),
        ),
        Request::netdev(
            format!("NEWCHAIN {chain}"),
            NLM_F_CREATE,
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(table.to_string()),
                    ChainAttribute::Name(chain.clone()),
                    ChainAttribute::Hook(vec![
                        Hook::Number(DevHookNumber::Ingress.into()),
                        Hook::Priority(0),
                        Hook::NetDeviceName(f.device.to_string()),
                    ]),
                    ChainAttribute::Policy(NF_ACCEPT),
                    ChainAttribute::Type("filter".to_string()),
                ],
            }),
        ),
    ];
    for (what, exprs) in filter_rules(f) {
        batch.push(Request::netdev(
            format!("NEWRULE in {chain}: {what}"),
            NLM_F_CREATE | NLM_F_APPEND,
            NfTablesMessage::NewRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(table.to_string()),
                    RuleAttribute::Chain(chain.clone()),
                    RuleAttribute::Expressions(exprs),
                ],
            }),
        ));
    }
    transact("filtering a nic in", table, batch)
}

/// Removes a nic's filter chain (idempotent: a missing table or chain is not an error).
pub fn remove_nic_filter(table: &str, device: &IfName) -> Result<(), NftError> {
    check_table(table)?;
    let chain = filter_chain(device);
    let r = transact(
        "unfiltering a nic in",
        table,
        vec![
            Request::netdev(
                format!("NEWTABLE netdev {table} (so that the chain's removal can only miss it)"),
                NLM_F_CREATE,
                NfTablesMessage::NewTable(TableMessage {
                    attributes: vec![TableAttribute::Name(table.to_string())],
                }),
            ),
            Request::netdev(
                format!("DELCHAIN {chain}"),
                0,
                NfTablesMessage::DeleteChain(ChainMessage {
                    attributes: vec![
                        ChainAttribute::Table(table.to_string()),
                        ChainAttribute::Name(chain),
                    ],
                }),
            ),
        ],
    );
    match r {
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

fn meta(key: MetaKey) -> Expressions {
    Expressions::Meta(vec![
        Meta::Key(key),
        Meta::DestinationRegister(Register::Reg1),
    ])
}

fn cmp(op: Operator, data: Vec<u8>) -> Expressions {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data)),
    ])
}

/// One message of a batch, with what to call it if the kernel refuses it.
#[derive(Debug)]
struct Request {
    what: String,
    flags: u16,
    body: NfTablesMessage,
    family: NetfilterProtoFamily,
}

impl Request {
    fn new(what: String, flags: u16, body: NfTablesMessage) -> Self {
        Request {
            what,
            flags,
            body,
            family: NetfilterProtoFamily::Inet,
        }
    }

    /// A request on a `netdev` table (nics' anti-spoofing filters).
    fn netdev(what: String, flags: u16, body: NfTablesMessage) -> Self {
        Request {
            what,
            flags,
            body,
            family: NetfilterProtoFamily::NetDev,
        }
    }
}

fn message(
    family: NetfilterProtoFamily,
    res_id: u16,
    inner: impl Into<NetfilterMessageInner>,
    flags: u16,
    seq: u32,
) -> NetlinkMessage<NetfilterMessage> {
    let mut m = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(family, 0, res_id),
        inner,
    ));
    m.header.flags = NLM_F_REQUEST | flags;
    m.header.sequence_number = seq;
    m.finalize();
    m
}

/// Sends `requests` between BatchBegin and BatchEnd in one datagram (the kernel only applies a
/// batch atomically when it arrives whole) and checks every message's ack.
fn transact(op: &'static str, table: &str, requests: Vec<Request>) -> Result<(), NftError> {
    let sock_err = |what| {
        let table = table.to_string();
        move |source| NftError::Socket {
            op,
            table,
            what,
            source,
        }
    };
    let protocol = |reason: String| NftError::Protocol {
        op,
        table: table.to_string(),
        reason,
    };

    // Sequence numbers: 0 is BatchBegin, 1..=n the requests, n + 1 BatchEnd. The socket is
    // fresh, so nothing else can answer with these numbers. Kernels since 6.10 also ack the
    // delimiters (BatchEnd only when the batch committed); older ones ignore NLM_F_ACK there,
    // so only the requests' acks are required. A batch the kernel refuses as a whole (no
    // CAP_NET_ADMIN, a failed commit) is reported as an error on BatchBegin's sequence number.
    let n = requests.len() as u32;
    let mut msgs = Vec::with_capacity(requests.len() + 2);
    msgs.push(message(
        NetfilterProtoFamily::Unspec,
        NFNL_SUBSYS_NFTABLES,
        ControlMessage::BatchBegin,
        NLM_F_ACK,
        0,
    ));
    let mut labels = Vec::with_capacity(requests.len());
    for (seq, r) in (1..).zip(requests) {
        msgs.push(message(r.family, 0, r.body, r.flags | NLM_F_ACK, seq));
        labels.push(r.what);
    }
    msgs.push(message(
        NetfilterProtoFamily::Unspec,
        NFNL_SUBSYS_NFTABLES,
        ControlMessage::BatchEnd,
        NLM_F_ACK,
        n + 1,
    ));
    let mut datagram = Vec::new();
    for m in &msgs {
        let start = datagram.len();
        datagram.resize(start + m.buffer_len(), 0);
        m.serialize(&mut datagram[start..]);
        datagram.resize(datagram.len().next_multiple_of(4), 0);
    }

    let sock = Socket::new(NETLINK_NETFILTER).map_err(sock_err("opening a netlink socket"))?;
    // Error acks would otherwise echo the whole failed message back.
    sock.set_cap_ack(true)
        .map_err(sock_err("setting NETLINK_CAP_ACK"))?;
    // A large table outgrows the default buffers: the kernel refuses a datagram larger than the
    // send buffer, and drops acks that do not fit the receive buffer. CAP_NET_ADMIN (which
    // nftables needs anyway) lets the FORCE variants exceed net.core.{w,r}mem_max.
    setsockopt(
        &sock,
        sockopt::SndBufForce,
        &datagram.len().max(MIN_SOCKET_BUFFER),
    )
    .map_err(|e| sock_err("setting SO_SNDBUFFORCE")(io::Error::from(e)))?;
    setsockopt(
        &sock,
        sockopt::RcvBufForce,
        &(msgs.len() * ACK_BUDGET).max(MIN_SOCKET_BUFFER),
    )
    .map_err(|e| sock_err("setting SO_RCVBUFFORCE")(io::Error::from(e)))?;

    let sent = sock
        .send_to(&datagram, &SocketAddr::new(0, 0), 0)
        .map_err(sock_err("sending the batch"))?;
    if sent != datagram.len() {
        return Err(protocol(format!(
            "sent {sent} of {} bytes of the batch",
            datagram.len()
        )));
    }

    // The kernel runs the whole batch inside sendto(), so every ack is already queued when it
    // returns: reading without blocking until the queue is empty collects all of them, and a
    // kernel that sends fewer cannot hang the caller. (nft reads its acks the same way.)
    let mut codes: HashMap<u32, i32> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let got = match sock.recv_from(&mut &mut buf[..], libc::MSG_DONTWAIT) {
            Ok((got, _)) => got.min(buf.len()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(sock_err("reading the acks")(e)),
        };
        let mut rest = &buf[..got];
        while !rest.is_empty() {
            let len = rest
                .get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .filter(|len| (16..=rest.len()).contains(len))
                .ok_or_else(|| protocol(format!("truncated reply ({} bytes)", rest.len())))?;
            let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&rest[..len])
                .map_err(|e| protocol(format!("undecodable reply: {e}")))?;
            if let NetlinkPayload::Error(e) = reply.payload {
                let code = e.code.map_or(0, |c| c.get());
                let seq = reply.header.sequence_number;
                // Keep the error if a message were answered twice.
                let entry = codes.entry(seq).or_insert(code);
                if *entry == 0 {
                    *entry = code;
                }
            }
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        }
    }

    // The first failure is the cause; later messages usually fail because of it (or are
    // reported as refused because the batch was aborted).
    let mut failed: Vec<(u32, i32)> = codes
        .iter()
        .filter(|(_, c)| **c < 0)
        .map(|(s, c)| (*s, *c))
        .collect();
    failed.sort_unstable();
    if let Some(&(seq, code)) = failed.first() {
        let message = match seq.checked_sub(1).and_then(|i| labels.get(i as usize)) {
            Some(what) => what.clone(),
            None => "the batch".to_string(),
        };
        return Err(NftError::Kernel {
            op,
            table: table.to_string(),
            message,
            errno: -code,
        });
    }
    let acked = (1..=n).filter(|s| codes.contains_key(s)).count();
    if acked != labels.len() {
        return Err(protocol(format!(
            "the kernel acknowledged {acked} of {} messages",
            labels.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::process::Command;

    const TABLE: &str = "silo-test";

    /// Runs `f` on a new thread that has unshared its network namespace, so nothing here can
    /// touch the host's tables.
    fn in_netns(f: impl FnOnce() + Send + 'static) {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the nftables tests need root (CAP_NET_ADMIN in a new network namespace)"
        );
        let t = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(NEWNET)");
            let ours = std::fs::read_link("/proc/thread-self/ns/net").expect("thread netns");
            let process = std::fs::read_link("/proc/self/ns/net").expect("process netns");
            assert_ne!(ours, process, "unshare moved the whole process");
            // `nft` must see this thread's namespace: a child inherits the namespaces of the
            // thread that forks it, not those of the main thread.
            let child = Command::new("readlink")
                .arg("/proc/self/ns/net")
                .output()
                .expect("run readlink");
            assert_eq!(
                String::from_utf8_lossy(&child.stdout).trim(),
                ours.to_string_lossy(),
                "a child of this thread is not in its network namespace"
            );
            f()
        });
        if let Err(p) = t.join() {
            std::panic::resume_unwind(p);
        }
    }

    fn nft(args: &[&str]) -> String {
        let out = Command::new("nft").args(args).output().expect("run nft");
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("nft prints UTF-8")
    }

    /// The objects of `nft -j <args>`, without the metainfo.
    fn nft_json(args: &[&str]) -> Vec<Value> {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let v: Value = serde_json::from_str(&nft(&all)).expect("nft -j prints JSON");
        v["nftables"]
            .as_array()
            .expect("nftables array")
            .iter()
            .filter(|o| o.get("metainfo").is_none())
            .cloned()
            .collect()
    }

    /// (family, name) of every table in the namespace.
    fn tables() -> Vec<(String, String)> {
        let mut t: Vec<(String, String)> = nft_json(&["list", "ruleset"])
            .iter()
            .filter_map(|o| o.get("table"))
            .map(|t| {
                (
                    t["family"].as_str().unwrap().into(),
                    t["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        t.sort();
        t
    }

    /// Chains of `inet <table>` with their rules' expressions, in listing order.
    fn chains(table: &str) -> Vec<(Value, Vec<Value>)> {
        let objs = nft_json(&["list", "table", "inet", table]);
        let mut out: Vec<(Value, Vec<Value>)> = Vec::new();
        for o in &objs {
            if let Some(c) = o.get("chain") {
                let mut c = c.clone();
                c.as_object_mut().unwrap().remove("handle");
                out.push((c, Vec::new()));
            }
        }
        for o in &objs {
            if let Some(r) = o.get("rule") {
                assert_eq!(r["family"], "inet");
                assert_eq!(r["table"], table);
                let chain = out
                    .iter_mut()
                    .find(|(c, _)| c["name"] == r["chain"])
                    .expect("rule in a listed chain");
                chain.1.push(r["expr"].clone());
            }
        }
        out
    }

    fn chain(table: &str, bridge: &str) -> Value {
        json!({"family": "inet", "table": table, "name": format!("pstrt.{bridge}"),
               "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"})
    }

    /// What nft prints for `<proto> saddr N ip daddr != N oifname != "<bridge>" masquerade`.
    fn masq(proto: &str, net: &str, len: u8, bridge: &str) -> Value {
        let n = json!({"prefix": {"addr": net, "len": len}});
        json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "saddr"}}, "right": n}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": proto, "field": "daddr"}}, "right": n}},
            {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": bridge}},
            {"masquerade": null}
        ])
    }

    fn v4(bridge: &str, a: [u8; 4], prefix: u8) -> NatRule {
        NatRule {
            bridge: bridge.into(),
            family: Family::V4,
            subnet: IpAddr::V4(Ipv4Addr::from(a)),
            prefix,
        }
    }

    fn v6(bridge: &str, a: &str, prefix: u8) -> NatRule {
        NatRule {
            bridge: bridge.into(),
            family: Family::V6,
            subnet: IpAddr::V6(a.parse::<Ipv6Addr>().unwrap()),
            prefix,
        }
    }

    #[test]
    fn sync_replace_delete() {
        in_netns(|| {
            nft(&["add", "table", "inet", "other"]);
            nft(&[
                "add",
                "chain",
                "inet",
                "other",
                "c",
                "{ type nat hook postrouting priority 100; policy accept; }",
            ]);
            nft(&[
                "add",
                "rule",
                "inet",
                "other",
                "c",
                "oifname",
                "\"eth9\"",
                "masquerade",
            ]);
            // Same name as silo's table in another family: not silo's.
            nft(&["add", "table", "ip", TABLE]);
            let other = nft(&["-j", "list", "table", "inet", "other"]);
            let ip_same_name = nft(&["-j", "list", "table", "ip", TABLE]);

            // Host bits set, prefixes on and off byte boundaries, a 15-byte name.
            let rules = vec![
                v4("silobr0", [10, 1, 2, 1], 24),
                v6("silobr0", "fd42:1:2:3::1", 64),
                v4("silo-bridge-15b", [10, 9, 7, 1], 20),
                v6("silo-bridge-15b", "fd00:a:b:c1::1", 60),
                // The same rule twice collapses into one.
                v4("silobr0", [10, 1, 2, 77], 24),
            ];
            sync_table(TABLE, &rules).expect("sync");

            let text = nft(&["list", "table", "inet", TABLE]);
            println!("nft list table inet {TABLE}:\n{text}");
            assert_eq!(
                chains(TABLE),
                vec![
                    (
                        chain(TABLE, "silo-bridge-15b"),
                        vec![
                            masq("ip", "10.9.0.0", 20, "silo-bridge-15b"),
                            masq("ip6", "fd00:a:b:c0::", 60, "silo-bridge-15b"),
                        ]
                    ),
                    (
                        chain(TABLE, "silobr0"),
                        vec![
                            masq("ip", "10.1.2.0", 24, "silobr0"),
                            masq("ip6", "fd42:1:2:3::", 64, "silobr0"),
                        ]
                    ),
                ]
            );
            assert_eq!(
                tables(),
                vec![
                    ("inet".into(), "other".into()),
                    ("inet".into(), TABLE.into()),
                    ("ip".into(), TABLE.into()),
                ]
            );

            // Syncing the same rules again is not an error (the table exists now).
            sync_table(TABLE, &rules).expect("sync again");
            assert_eq!(chains(TABLE).len(), 2);

            // Fewer rules: the bridge that lost its rules loses its chain.
            sync_table(TABLE, &[v4("silo-bridge-15b", [10, 9, 0, 0], 20)]).expect("sync fewer");
            assert_eq!(
                chains(TABLE),
                vec![(
                    chain(TABLE, "silo-bridge-15b"),
                    vec![masq("ip", "10.9.0.0", 20, "silo-bridge-15b")]
                )]
            );

            delete_table(TABLE).expect("delete");
            delete_table(TABLE).expect("deleting a missing table is a no-op");
            assert_eq!(
                tables(),
                vec![("inet".into(), "other".into()), ("ip".into(), TABLE.into())]
            );

            // An empty rule list deletes the table.
            sync_table(TABLE, &rules).expect("sync");
            sync_table(TABLE, &[]).expect("sync nothing");
            sync_table(TABLE, &[]).expect("sync nothing again");
            assert_eq!(
                tables(),
                vec![("inet".into(), "other".into()), ("ip".into(), TABLE.into())]
            );

            assert_eq!(nft(&["-j", "list", "table", "inet", "other"]), other);
            assert_eq!(nft(&["-j", "list", "table", "ip", TABLE]), ip_same_name);
        });
    }

    #[test]
    fn exact_listing() {
        in_netns(|| {
            sync_table(
                "silo",
                &[
                    v4("silobr0", [10, 1, 2, 1], 24),
                    v6("silobr0", "fd42:1:2:3::1", 64),
                ],
            )
            .expect("sync");
            assert_eq!(
                nft(&["list", "table", "inet", "silo"]),
                "table inet silo {\n\
                 \tchain pstrt.silobr0 {\n\
                 \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
                 \t\tip saddr 10.1.2.0/24 ip daddr != 10.1.2.0/24 oifname != \"silobr0\" masquerade\n\
                 \t\tip6 saddr fd42:1:2:3::/64 ip6 daddr != fd42:1:2:3::/64 oifname != \"silobr0\" masquerade\n\
                 \t}\n\
                 }\n"
            );
        });
    }

    /// A batch that fails part-way changes nothing, and the error names the failing message.
    #[test]
    fn failed_batch_changes_nothing() {
        in_netns(|| {
            sync_table(TABLE, &[v4("silobr0", [10, 1, 2, 0], 24)]).expect("sync");
            let before = nft(&["-j", "list", "table", "inet", TABLE]);

            let mut batch = reset_table(TABLE);
            batch.push(Request::new(
                format!("NEWTABLE inet {TABLE}"),
                NLM_F_CREATE,
                NfTablesMessage::NewTable(TableMessage {
                    attributes: vec![TableAttribute::Name(TABLE.into())],
                }),
            ));
            batch.push(Request::new(
                "NEWRULE into a missing chain".into(),
                NLM_F_CREATE | NLM_F_APPEND,
                NfTablesMessage::NewRule(RuleMessage {
                    attributes: vec![
                        RuleAttribute::Table(TABLE.into()),
                        RuleAttribute::Chain("pstrt.missing".into()),
                        RuleAttribute::Expressions(vec![ListAttribute::Element(vec![
                            ExpressionAttribute::Name("masq".into()),
                        ])]),
                    ],
                }),
            ));
            let err = transact("testing", TABLE, batch).expect_err("a rule in a missing chain");
            match &err {
                NftError::Kernel {
                    op,
                    table,
                    message,
                    errno,
                } => {
                    assert_eq!(*op, "testing");
                    assert_eq!(table, TABLE);
                    assert_eq!(message, "NEWRULE into a missing chain");
                    assert_eq!(*errno, libc::ENOENT);
                }
                other => panic!("expected a kernel error, got {other:?}"),
            }
            assert_eq!(err.errno(), Some(libc::ENOENT));
            println!("{err}");
            assert_eq!(nft(&["-j", "list", "table", "inet", TABLE]), before);
        });
    }

    #[test]
    fn without_net_admin_the_errno_is_eperm() {
        in_netns(|| {
            // Capabilities are per thread: only this test's thread loses it.
            caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_NET_ADMIN,
            )
            .expect("drop CAP_NET_ADMIN");
            let err = sync_table(TABLE, &[v4("silobr0", [10, 1, 2, 0], 24)])
                .expect_err("nftables without CAP_NET_ADMIN");
            assert_eq!(err.errno(), Some(libc::EPERM), "{err}");
            assert_eq!(
                delete_table(TABLE).map_err(|e| e.errno()),
                Err(Some(libc::EPERM))
            );
        });
    }

    #[test]
    fn bad_input_is_refused() {
        in_netns(|| {
            let ok = [v4("silobr0", [10, 0, 0, 0], 24)];
            for t in [
                "",
                "Silo",
                "a/b",
                "a b",
                "-x",
                "tab\0le",
                "é",
                &"a".repeat(33),
            ] {
                assert!(
                    matches!(sync_table(t, &ok), Err(NftError::InvalidTable { .. })),
                    "table {t:?} accepted"
                );
                assert!(
                    matches!(delete_table(t), Err(NftError::InvalidTable { .. })),
                    "table {t:?} accepted for deletion"
                );
            }
            for t in ["silo", "a", "silo_1.x-y", &"a".repeat(32)] {
                check_table(t).expect("valid table name");
            }
            for b in [
                "",
                "a/b",
                "a b",
                "tab\tx",
                "sixteen-bytes-xx",
                "..",
                "nul\0x",
            ] {
                assert!(
                    matches!(
                        sync_table(TABLE, &[v4(b, [10, 0, 0, 0], 24)]),
                        Err(NftError::InvalidBridge(_))
                    ),
                    "bridge {b:?} accepted"
                );
            }
            let bad_rules = [
                v4("silobr0", [10, 0, 0, 0], 0),
                v4("silobr0", [10, 0, 0, 0], 33),
                v6("silobr0", "fd00::", 0),
                v6("silobr0", "fd00::", 129),
                NatRule {
                    family: Family::V6,
                    ..v4("silobr0", [10, 0, 0, 0], 24)
                },
                NatRule {
                    family: Family::V4,
                    ..v6("silobr0", "fd00::", 64)
                },
            ];
            for r in bad_rules {
                let e = sync_table(TABLE, &[ok[0].clone(), r.clone()]);
                assert!(
                    matches!(e, Err(NftError::InvalidRule { .. })),
                    "{r:?} accepted: {e:?}"
                );
            }
            // Nothing was created by any of the refused calls.
            assert_eq!(tables(), Vec::<(String, String)>::new());
        });
    }

    /// More than the default socket buffers hold: a datagram of about 1 MB and ~4000 acks.
    #[test]
    fn large_table() {
        in_netns(|| {
            let rules: Vec<NatRule> = (0..1000u32)
                .flat_map(|i| {
                    let b = format!("silobr{i}");
                    let [_, _, hi, lo] = i.to_be_bytes();
                    [
                        v4(&b, [10, hi, lo, 0], 24),
                        v6(&b, &format!("fd42:{i:x}::"), 64),
                        v4(&b, [172, 16 + hi, lo, 0], 28),
                    ]
                })
                .collect();
            sync_table(TABLE, &rules).expect("sync a large table");
            let objs = nft_json(&["list", "table", "inet", TABLE]);
            let count = |kind: &str| objs.iter().filter(|o| o.get(kind).is_some()).count();
            assert_eq!((count("chain"), count("rule")), (1000, 3000));
            delete_table(TABLE).expect("delete");
        });
    }

    /// The module needs nothing silo-net's seccomp allow-list refuses. The filter's mismatch
    /// action kills the process, so a missing syscall ends the test binary with SIGSYS.
    #[test]
    fn allowed_by_silo_net_seccomp() {
        in_netns(|| {
            let prog = silo_proto::jail::seccomp::decode(crate::confinement::SECCOMP)
                .expect("silo-net's compiled filter");
            // This thread only (no TSYNC): the rest of the test binary stays unconfined.
            seccompiler::apply_filter(&prog).expect("install the filter");
            let rules = [
                v4("silobr0", [10, 1, 2, 0], 24),
                v6("silobr0", "fd42::", 64),
            ];
            sync_table(TABLE, &rules).expect("sync under seccomp");
            sync_table(TABLE, &rules[..1]).expect("replace under seccomp");
            delete_table(TABLE).expect("delete under seccomp");
            delete_table(TABLE).expect("delete again under seccomp");
        });
    }

    #[test]
    fn masks() {
        assert_eq!(
            (0..4).map(|i| mask_byte(20, i)).collect::<Vec<_>>(),
            [255, 255, 240, 0]
        );
        assert_eq!(
            (0..4).map(|i| mask_byte(32, i)).collect::<Vec<_>>(),
            [255; 4]
        );
        assert_eq!(
            (0..2).map(|i| mask_byte(1, i)).collect::<Vec<_>>(),
            [128, 0]
        );
    }
}
