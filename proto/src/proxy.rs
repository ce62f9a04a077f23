//! The addresses of a `proxy` device, as they cross the helper boundary.
//!
//! LXD writes them `tcp:0.0.0.0:80`, `tcp:[::1]:8000-8010`, `udp:127.0.0.1:53` or
//! `unix:/run/x.sock`. Every value is checked when parsed *and* when deserialized (it travels
//! as its text form), so the forwarder never binds or connects to something a hostile daemon
//! slipped past the parser.
//!
//! Deliberately narrower than LXD: one port or one range of at most [`PortRange::MAX_LEN`]
//! ports (no lists), no host names except `localhost` (resolving names would make the forwarder
//! depend on the resolver of whichever namespace it is in), no abstract unix sockets.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// Why a proxy address or device was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Not `PROTOCOL:ADDRESS` at all.
    #[error(
        "invalid proxy address {value:?}: expected tcp:HOST:PORT, udp:HOST:PORT or unix:/PATH"
    )]
    Syntax {
        /// The refused text.
        value: String,
    },
    /// The part before the first `:` is not a protocol silo forwards.
    #[error("invalid proxy address {value:?}: protocol {protocol:?} is not one of tcp, udp, unix")]
    Protocol {
        /// The refused text.
        value: String,
        /// The protocol it named.
        protocol: String,
    },
    /// The host part is not an IP literal or `localhost`.
    #[error("invalid proxy address {value:?}: host {host:?} {reason}")]
    Host {
        /// The refused text.
        value: String,
        /// The host part.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The port part is not one port or one short range.
    #[error("invalid proxy address {value:?}: port {port:?} {reason}")]
    Port {
        /// The refused text.
        value: String,
        /// The port part.
        port: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The unix socket path is unusable.
    #[error("invalid proxy address {value:?}: unix socket path {reason}")]
    Path {
        /// The refused text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A device's `listen`, `connect` or `bind` value is refused, on its own or because it
    /// does not fit the other side.
    #[error("invalid proxy {field}: {reason}")]
    Field {
        /// `listen`, `connect` or `bind`.
        field: &'static str,
        /// What is wrong, including the inner error when there is one.
        reason: String,
    },
}

/// Keeps a hostile peer from flooding logs through error messages.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

impl From<ProxyError> for crate::HelperError {
    fn from(e: ProxyError) -> Self {
        crate::HelperError::invalid("proxy device", e.to_string())
    }
}

/// One port or an inclusive range of at most [`PortRange::MAX_LEN`] ports, none of them 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The most ports one address may cover: every port is one listening socket in the
    /// forwarder, so a range is a resource the daemon asks root to hold.
    pub const MAX_LEN: usize = 64;

    /// A range of one port.
    pub fn single(port: u16) -> Result<Self, ProxyError> {
        Self::new(port, port)
    }

    /// The ports `first..=last`.
    pub fn new(first: u16, last: u16) -> Result<Self, ProxyError> {
        Self::check(first, last).map_err(|reason| {
            let text = if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            };
            ProxyError::Port {
                value: text.clone(),
                port: text,
                reason,
            }
        })
    }

    fn check(first: u16, last: u16) -> Result<Self, String> {
        if first == 0 {
            return Err("must not be 0 (ports are 1 to 65535)".into());
        }
        if last < first {
            return Err(format!("range {first}-{last} ends before it starts"));
        }
        let len = usize::from(last - first) + 1;
        if len > Self::MAX_LEN {
            return Err(format!(
                "range {first}-{last} covers {len} ports, more than the {} allowed",
                Self::MAX_LEN
            ));
        }
        Ok(PortRange { first, last })
    }

    /// The first port.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The last port (equal to `first` for a single port).
    pub fn last(&self) -> u16 {
        self.last
    }

    /// How many ports, 1 to [`PortRange::MAX_LEN`].
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// Never true; here because `len` is.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The ports in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }

    /// The `i`th port, if the range has one.
    pub fn nth(&self, i: usize) -> Option<u16> {
        self.iter().nth(i)
    }
}

impl FromStr for PortRange {
    type Err = ProxyError;
    fn from_str(s: &str) -> Result<Self, ProxyError> {
        PortRange::parse(s).map_err(|reason| ProxyError::Port {
            value: clip(s),
            port: clip(s),
            reason,
        })
    }
}

impl PortRange {
    fn parse(s: &str) -> Result<Self, String> {
        if s.contains(',') {
            return Err(format!(
                "is a list; silo supports one port or one range FIRST-LAST of at most {} ports",
                Self::MAX_LEN
            ));
        }
        let num = |p: &str| {
            // u16::from_str takes a leading '+', which would break the round trip.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("is not a port number or a range FIRST-LAST".to_string());
            }
            p.parse::<u16>()
                .map_err(|_| "is out of range (ports are 1 to 65535)".to_string())
        };
        match s.split_once('-') {
            Some((a, b)) => Self::check(num(a)?, num(b)?),
            None => {
                let p = num(s)?;
                Self::check(p, p)
            }
        }
    }
}

impl TryFrom<String> for PortRange {
    type Error = ProxyError;
    fn try_from(s: String) -> Result<Self, ProxyError> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(p: PortRange) -> String {
        p.to_string()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl fmt::Debug for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortRange({self})")
    }
}

/// A unix socket path: absolute, no NUL, no `..` component, short enough for `sun_path`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnixPath(String);

impl UnixPath {
    /// `sun_path` is 108 bytes and the kernel wants room for the terminating NUL.
    pub const MAX_LEN: usize = 107;

    /// Checks and wraps `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, ProxyError> {
        let s: String = s.into();
        Self::check(&s).map_err(|reason| ProxyError::Path {
            value: clip(&s),
            reason,
        })?;
        Ok(UnixPath(s))
    }

    fn check(s: &str) -> Result<(), String> {
        if s.starts_with('@') {
            return Err("is abstract ('@...'); only filesystem sockets are supported".into());
        }
        if !s.starts_with('/') {
            return Err("must be absolute".into());
        }
        if s.ends_with('/') {
            return Err("must name a socket, not a directory (no trailing '/')".into());
        }
        if s.contains('\0') {
            return Err("must not contain NUL".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "is {} bytes, more than the {} a unix socket address holds",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if s.split('/').any(|c| c == "..") {
            return Err("must not contain '..' components".into());
        }
        Ok(())
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as a `Path`.
    pub fn as_path(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl TryFrom<String> for UnixPath {
    type Error = ProxyError;
    fn try_from(s: String) -> Result<Self, ProxyError> {
        UnixPath::new(s)
    }
}

impl From<UnixPath> for String {
    fn from(p: UnixPath) -> String {
        p.0
    }
}

impl fmt::Display for UnixPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UnixPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnixPath({:?})", self.0)
    }
}

/// One side of a proxy device.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProxyAddr {
    /// TCP on one address, one port or a range.
    Tcp {
        /// An IP literal (`localhost` is stored as 127.0.0.1).
        host: IpAddr,
        /// The port(s).
        ports: PortRange,
    },
    /// UDP on one address, one port or a range.
    Udp {
        /// An IP literal (`localhost` is stored as 127.0.0.1).
        host: IpAddr,
        /// The port(s).
        ports: PortRange,
    },
    /// A unix stream socket.
    Unix {
        /// Its path.
        path: UnixPath,
    },
}

/// The transport a [`ProxyAddr`] uses, for compatibility checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Unix stream sockets.
    Unix,
}

impl fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyProtocol::Tcp => "tcp",
            ProxyProtocol::Udp => "udp",
            ProxyProtocol::Unix => "unix",
        })
    }
}

impl ProxyAddr {
    /// Its transport.
    pub fn protocol(&self) -> ProxyProtocol {
        match self {
            ProxyAddr::Tcp { .. } => ProxyProtocol::Tcp,
            ProxyAddr::Udp { .. } => ProxyProtocol::Udp,
            ProxyAddr::Unix { .. } => ProxyProtocol::Unix,
        }
    }

    /// How many sockets it stands for: one per port, one for a unix path.
    pub fn len(&self) -> usize {
        match self {
            ProxyAddr::Tcp { ports, .. } | ProxyAddr::Udp { ports, .. } => ports.len(),
            ProxyAddr::Unix { .. } => 1,
        }
    }

    /// Never true; here because `len` is.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether every socket `other` stands for is one this address names: same transport,
    /// same host, ports within this range (a unix path covers only itself). The root policy's
    /// `proxy_host_connect` entries are checked with it.
    pub fn covers(&self, other: &ProxyAddr) -> bool {
        match (self, other) {
            (
                ProxyAddr::Tcp { host, ports },
                ProxyAddr::Tcp {
                    host: oh,
                    ports: op,
                },
            )
            | (
                ProxyAddr::Udp { host, ports },
                ProxyAddr::Udp {
                    host: oh,
                    ports: op,
                },
            ) => host == oh && ports.first() <= op.first() && op.last() <= ports.last(),
            (ProxyAddr::Unix { path }, ProxyAddr::Unix { path: op }) => path == op,
            _ => false,
        }
    }
}

fn parse_host(value: &str, host: &str) -> Result<IpAddr, ProxyError> {
    let bad = |reason: &str| ProxyError::Host {
        value: clip(value),
        host: clip(host),
        reason: reason.to_string(),
    };
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| bad("has '[' without a closing ']'"))?;
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| bad("is not an IPv6 address (brackets are only for IPv6)"));
    }
    if host.is_empty() {
        return Err(bad("is empty; use 0.0.0.0 or [::] for every address"));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if host.contains(':') {
        return Err(bad("looks like IPv6 and must be in brackets, e.g. [::1]"));
    }
    host.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            bad("is not a valid IPv4 address")
        } else {
            bad("is a host name; only IP addresses and \"localhost\" are supported")
        }
    })
}

impl FromStr for ProxyAddr {
    type Err = ProxyError;
    fn from_str(s: &str) -> Result<Self, ProxyError> {
        let (protocol, rest) = s
            .split_once(':')
            .ok_or_else(|| ProxyError::Syntax { value: clip(s) })?;
        match protocol {
            "unix" => {
                UnixPath::check(rest).map_err(|reason| ProxyError::Path {
                    value: clip(s),
                    reason,
                })?;
                Ok(ProxyAddr::Unix {
                    path: UnixPath(rest.to_string()),
                })
            }
            "tcp" | "udp" => {
                // The port is after the last ':', so a bare IPv6 address lands in the host part
                // and is refused there with a hint about brackets.
                let (host, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| ProxyError::Syntax { value: clip(s) })?;
                let host = parse_host(s, host)?;
                let ports = PortRange::parse(port).map_err(|reason| ProxyError::Port {
                    value: clip(s),
                    port: clip(port),
                    reason,
                })?;
                Ok(if protocol == "tcp" {
                    ProxyAddr::Tcp { host, ports }
                } else {
                    ProxyAddr::Udp { host, ports }
                })
            }
            other => Err(ProxyError::Protocol {
                value: clip(s),
                protocol: clip(other),
            }),
        }
    }
}

impl TryFrom<String> for ProxyAddr {
    type Error = ProxyError;
    fn try_from(s: String) -> Result<Self, ProxyError> {
        s.parse()
    }
}

impl From<ProxyAddr> for String {
    fn from(a: ProxyAddr) -> String {
        a.to_string()
    }
}

impl fmt::Display for ProxyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (proto, host, ports) = match self {
            ProxyAddr::Unix { path } => return write!(f, "unix:{path}"),
            ProxyAddr::Tcp { host, ports } => ("tcp", host, ports),
            ProxyAddr::Udp { host, ports } => ("udp", host, ports),
        };
        match host {
            IpAddr::V4(a) => write!(f, "{proto}:{a}:{ports}"),
            IpAddr::V6(a) => write!(f, "{proto}:[{a}]:{ports}"),
        }
    }
}

impl fmt::Debug for ProxyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyAddr({self})")
    }
}

/// Which side of the device listens, as LXD's `bind` key says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyBind {
    /// Listen on the host, connect inside the instance (LXD's default).
    #[default]
    Host,
    /// Listen inside the instance, connect on the host.
    Instance,
}

impl FromStr for ProxyBind {
    type Err = ProxyError;
    fn from_str(s: &str) -> Result<Self, ProxyError> {
        match s {
            "host" => Ok(ProxyBind::Host),
            "instance" | "container" => Ok(ProxyBind::Instance),
            other => Err(ProxyError::Field {
                field: "bind",
                reason: format!("{:?} is not \"host\" or \"instance\"", clip(other)),
            }),
        }
    }
}

impl fmt::Display for ProxyBind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyBind::Host => "host",
            ProxyBind::Instance => "instance",
        })
    }
}

/// A whole proxy device. Deserializing checks that `listen` and `connect` fit together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawProxySpec")]
pub struct ProxySpec {
    /// Where the forwarder listens.
    pub listen: ProxyAddr,
    /// Where each accepted connection (or UDP client) is forwarded to.
    pub connect: ProxyAddr,
    /// Which side `listen` is on.
    pub bind: ProxyBind,
}

/// The unchecked wire form of [`ProxySpec`]; each address is still checked on its own.
#[derive(Deserialize)]
struct RawProxySpec {
    listen: ProxyAddr,
    connect: ProxyAddr,
    bind: ProxyBind,
}

impl TryFrom<RawProxySpec> for ProxySpec {
    type Error = ProxyError;
    fn try_from(r: RawProxySpec) -> Result<Self, ProxyError> {
        let spec = ProxySpec {
            listen: r.listen,
            connect: r.connect,
            bind: r.bind,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl ProxySpec {
    /// Parses a device's `listen`, `connect` and `bind` keys (`bind` empty means `host`) and
    /// validates the whole; errors name the key.
    pub fn parse(listen: &str, connect: &str, bind: &str) -> Result<Self, ProxyError> {
        let field = |field: &'static str| {
            move |e: ProxyError| ProxyError::Field {
                field,
                reason: e.to_string(),
            }
        };
        let spec = ProxySpec {
            listen: listen.parse().map_err(field("listen"))?,
            connect: connect.parse().map_err(field("connect"))?,
            bind: if bind.is_empty() {
                ProxyBind::default()
            } else {
                bind.parse()?
            },
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks that `listen` and `connect` fit together: UDP only with UDP; TCP and unix
    /// in any mix; and as many connect ports as listen sockets, or a single connect port
    /// that every listen socket forwards to.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let (l, c) = (self.listen.protocol(), self.connect.protocol());
        if (l == ProxyProtocol::Udp) != (c == ProxyProtocol::Udp) {
            return Err(ProxyError::Field {
                field: "connect",
                reason: format!(
                    "{} cannot forward {l} from listen {}; udp only forwards to udp",
                    self.connect, self.listen
                ),
            });
        }
        let (nl, nc) = (self.listen.len(), self.connect.len());
        if nc != 1 && nc != nl {
            return Err(ProxyError::Field {
                field: "connect",
                reason: format!(
                    "{} has {nc} ports but listen {} has {nl} socket(s); \
                     connect needs the same number of ports or a single port",
                    self.connect, self.listen
                ),
            });
        }
        Ok(())
    }

    /// The connect address for the `i`th listen socket (in port order): the matching port
    /// of a range, or the one connect address they all share.
    pub fn connect_for(&self, i: usize) -> Option<ProxyAddr> {
        if i >= self.listen.len() {
            return None;
        }
        let pick = |ports: &PortRange| {
            let port = if ports.len() == 1 {
                ports.first()
            } else {
                ports.nth(i)?
            };
            PortRange::single(port).ok()
        };
        Some(match &self.connect {
            ProxyAddr::Tcp { host, ports } => ProxyAddr::Tcp {
                host: *host,
                ports: pick(ports)?,
            },
            ProxyAddr::Udp { host, ports } => ProxyAddr::Udp {
                host: *host,
                ports: pick(ports)?,
            },
            ProxyAddr::Unix { path } => ProxyAddr::Unix { path: path.clone() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn p(s: &str) -> ProxyAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn refused(s: &str) -> ProxyError {
        match s.parse::<ProxyAddr>() {
            Ok(a) => panic!("{s:?} was accepted as {a}"),
            Err(e) => e,
        }
    }

    #[test]
    fn policy_entries_cover_their_ports_only() {
        let allow = p("tcp:127.0.0.1:8080-8089");
        assert!(allow.covers(&p("tcp:127.0.0.1:8080")));
        assert!(allow.covers(&p("tcp:localhost:8081-8089")));
        assert!(!allow.covers(&p("tcp:127.0.0.1:8079-8080")));
        assert!(!allow.covers(&p("udp:127.0.0.1:8080")));
        assert!(!allow.covers(&p("tcp:127.0.0.2:8080")));
        assert!(!allow.covers(&p("tcp:0.0.0.0:8080")));
        assert!(p("unix:/run/a.sock").covers(&p("unix:/run/a.sock")));
        assert!(!p("unix:/run/a.sock").covers(&p("unix:/run/b.sock")));
    }

    #[test]
    fn parses_lxd_forms() {
        assert_eq!(
            p("tcp:0.0.0.0:80"),
            ProxyAddr::Tcp {
                host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                ports: PortRange::single(80).unwrap()
            }
        );
        assert_eq!(
            p("tcp:[::1]:8080"),
            ProxyAddr::Tcp {
                host: IpAddr::V6(Ipv6Addr::LOCALHOST),
                ports: PortRange::single(8080).unwrap()
            }
        );
        assert_eq!(
            p("udp:127.0.0.1:53"),
            ProxyAddr::Udp {
                host: IpAddr::V4(Ipv4Addr::LOCALHOST),
                ports: PortRange::single(53).unwrap()
            }
        );
        let range = p("tcp:0.0.0.0:8000-8010");
        assert_eq!(range.len(), 11);
        let ProxyAddr::Tcp { ports, .. } = range else {
            panic!("not tcp")
        };
        assert_eq!((ports.first(), ports.last()), (8000, 8010));
        assert_eq!(
            ports.iter().collect::<Vec<_>>(),
            (8000..=8010).collect::<Vec<_>>()
        );
        assert_eq!(
            p("unix:/run/x.sock"),
            ProxyAddr::Unix {
                path: UnixPath::new("/run/x.sock").unwrap()
            }
        );
        assert_eq!(p("tcp:localhost:80"), p("tcp:127.0.0.1:80"));
        assert_eq!(p("tcp:LocalHost:80"), p("tcp:127.0.0.1:80"));
        assert_eq!(p("tcp:[::]:1"), p("tcp:[0:0:0:0:0:0:0:0]:1"));
        assert_eq!(p("tcp:1.2.3.4:65535").len(), 1);
        assert_eq!(p("tcp:1.2.3.4:1-64").len(), 64);
        assert_eq!(p("tcp:1.2.3.4:65472-65535").len(), 64);
        assert_eq!(p("udp:1.2.3.4:7-7"), p("udp:1.2.3.4:7"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "tcp:0.0.0.0:80",
            "tcp:[::1]:8080",
            "tcp:[fe80::1:2]:8000-8010",
            "udp:127.0.0.1:53",
            "udp:10.0.0.1:5000-5063",
            "unix:/run/x.sock",
            "unix:/a/./b c/sock",
        ] {
            let a = p(s);
            assert_eq!(a.to_string(), s);
            assert_eq!(p(&a.to_string()), a);
        }
        // Normalized forms round-trip to themselves.
        assert_eq!(p("tcp:localhost:80").to_string(), "tcp:127.0.0.1:80");
        assert_eq!(p("tcp:[0::1]:80").to_string(), "tcp:[::1]:80");
        assert_eq!(p("tcp:1.2.3.4:9-9").to_string(), "tcp:1.2.3.4:9");
    }

    #[test]
    fn refuses_syntax_and_protocols() {
        for s in ["", "tcp", "0.0.0.0:80", "tcp:80"] {
            let e = refused(s);
            assert!(
                matches!(e, ProxyError::Syntax { .. } | ProxyError::Protocol { .. }),
                "{s:?}: {e:?}"
            );
        }
        assert!(
            matches!(refused("sctp:1.2.3.4:80"), ProxyError::Protocol { protocol, .. } if protocol == "sctp")
        );
        assert!(matches!(
            refused("TCP:1.2.3.4:80"),
            ProxyError::Protocol { .. }
        ));
        assert!(matches!(refused("vsock:1:80"), ProxyError::Protocol { .. }));
        assert!(refused("tcp")
            .to_string()
            .contains("expected tcp:HOST:PORT"));
    }

    #[test]
    fn refuses_bad_hosts() {
        let host = |s: &str| match refused(s) {
            ProxyError::Host { reason, .. } => reason,
            e => panic!("{s:?}: not a host error: {e:?}"),
        };
        assert!(host("tcp:example.com:80").contains("only IP addresses and \"localhost\""));
        assert!(host("tcp:db:80").contains("host name"));
        assert!(host("tcp:localhost.localdomain:80").contains("host name"));
        assert!(host("tcp::80").contains("empty"));
        assert!(host("tcp:::1:80").contains("brackets"));
        assert!(host("tcp:[::1:80").contains("closing"));
        assert!(host("tcp:[1.2.3.4]:80").contains("not an IPv6"));
        assert!(host("tcp:[fe80::1%eth0]:80").contains("not an IPv6"));
        assert!(host("tcp:1.2.3:80").contains("not a valid IPv4"));
        assert!(host("tcp:1.2.3.256:80").contains("not a valid IPv4"));
        assert!(host("tcp:01.2.3.4:80").contains("not a valid IPv4"));
        let msg = refused("udp:example.com:53").to_string();
        assert!(msg.contains("host \"example.com\""), "{msg}");
    }

    #[test]
    fn refuses_bad_ports() {
        let port = |s: &str| match refused(s) {
            ProxyError::Port { reason, .. } => reason,
            e => panic!("{s:?}: not a port error: {e:?}"),
        };
        let list = port("tcp:1.2.3.4:80,443");
        assert!(
            list.contains("is a list") && list.contains("one range"),
            "{list}"
        );
        assert!(port("tcp:1.2.3.4:80-82,443").contains("is a list"));
        assert!(port("tcp:1.2.3.4:0").contains("must not be 0"));
        assert!(port("tcp:1.2.3.4:0-3").contains("must not be 0"));
        assert!(port("tcp:1.2.3.4:65536").contains("out of range"));
        assert!(port("tcp:1.2.3.4:").contains("not a port number"));
        assert!(port("tcp:1.2.3.4:http").contains("not a port number"));
        assert!(port("tcp:1.2.3.4:+80").contains("not a port number"));
        assert!(port("tcp:1.2.3.4: 80").contains("not a port number"));
        assert!(port("tcp:1.2.3.4:80-").contains("not a port number"));
        assert!(port("tcp:1.2.3.4:1-2-3").contains("not a port number"));
        assert!(port("tcp:1.2.3.4:90-80").contains("ends before it starts"));
        assert!(port("tcp:1.2.3.4:1000-1064").contains("65 ports"));
        assert!(port("udp:1.2.3.4:1-65535").contains("more than the 64 allowed"));
        let msg = refused("tcp:1.2.3.4:80,443").to_string();
        assert!(msg.contains("port \"80,443\""), "{msg}");
    }

    #[test]
    fn refuses_bad_unix_paths() {
        let path = |s: &str| match refused(s) {
            ProxyError::Path { reason, .. } => reason,
            e => panic!("{s:?}: not a path error: {e:?}"),
        };
        assert!(path("unix:run/x.sock").contains("absolute"));
        assert!(path("unix:").contains("absolute"));
        assert!(path("unix:@abstract").contains("abstract"));
        assert!(path("unix:/run/").contains("trailing"));
        assert!(path("unix:/").contains("trailing"));
        assert!(path("unix:/run/\0x").contains("NUL"));
        assert!(path("unix:/run/../etc/x").contains(".."));
        assert!(path("unix:/..").contains(".."));
        let long = format!("unix:/{}", "a".repeat(107));
        assert!(path(&long).contains("108 bytes"));
        assert!(p(&format!("unix:/{}", "a".repeat(106))).len() == 1);
        // "..x" is a name, not a climb.
        assert!(p("unix:/run/..x").len() == 1);
    }

    #[test]
    fn part_constructors_refuse() {
        assert!(matches!(
            PortRange::new(0, 1),
            Err(ProxyError::Port { port, .. }) if port == "0-1"
        ));
        assert!(matches!(PortRange::single(0), Err(ProxyError::Port { .. })));
        assert!(matches!(PortRange::new(9, 8), Err(ProxyError::Port { .. })));
        assert!(matches!(
            PortRange::new(1, 65),
            Err(ProxyError::Port { .. })
        ));
        assert_eq!(PortRange::new(1, 64).unwrap().len(), 64);
        assert_eq!(PortRange::new(5, 7).unwrap().nth(2), Some(7));
        assert_eq!(PortRange::new(5, 7).unwrap().nth(3), None);
        assert!(matches!(
            "80,81".parse::<PortRange>(),
            Err(ProxyError::Port { .. })
        ));
        assert!(matches!(UnixPath::new("x"), Err(ProxyError::Path { .. })));
        assert_eq!(UnixPath::new("/run/x").unwrap().as_str(), "/run/x");
    }

    #[test]
    fn errors_are_clipped() {
        let huge = format!("tcp:{}:80", "a".repeat(10_000));
        let msg = refused(&huge).to_string();
        assert!(msg.len() < 400, "{} bytes", msg.len());
    }

    #[test]
    fn deserializing_validates() {
        let a: ProxyAddr = serde_json::from_str("\"tcp:[::1]:80-81\"").unwrap();
        assert_eq!(a, p("tcp:[::1]:80-81"));
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"tcp:[::1]:80-81\"");
        for bad in [
            "\"tcp:example.com:80\"",
            "\"tcp:1.2.3.4:1-100\"",
            "\"unix:/../x\"",
            "\"udp:1.2.3.4:80,81\"",
            "{\"Tcp\":{\"host\":\"1.2.3.4\",\"ports\":\"0\"}}",
        ] {
            assert!(serde_json::from_str::<ProxyAddr>(bad).is_err(), "{bad}");
        }
        // The parts are validated on their own too.
        assert!(serde_json::from_str::<PortRange>("\"0\"").is_err());
        assert!(serde_json::from_str::<PortRange>("\"1-65\"").is_err());
        assert_eq!(
            serde_json::from_str::<PortRange>("\"1-64\"").unwrap().len(),
            64
        );
        assert!(serde_json::from_str::<UnixPath>("\"rel\"").is_err());
        let msg = serde_json::from_str::<ProxyAddr>("\"tcp:1.2.3.4:80,443\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("is a list"), "{msg}");
    }

    fn spec(listen: &str, connect: &str) -> Result<ProxySpec, ProxyError> {
        ProxySpec::parse(listen, connect, "")
    }

    #[test]
    fn spec_accepts_compatible_pairs() {
        for (l, c) in [
            ("tcp:0.0.0.0:80", "tcp:127.0.0.1:8080"),
            ("tcp:0.0.0.0:80", "unix:/run/app.sock"),
            ("unix:/run/app.sock", "tcp:127.0.0.1:80"),
            ("unix:/run/a.sock", "unix:/run/b.sock"),
            ("udp:0.0.0.0:53", "udp:127.0.0.1:53"),
            ("tcp:0.0.0.0:8000-8010", "tcp:127.0.0.1:9000-9010"),
            ("tcp:0.0.0.0:8000-8010", "tcp:127.0.0.1:9000"),
            ("tcp:0.0.0.0:8000-8010", "unix:/run/app.sock"),
            ("udp:[::]:5000-5002", "udp:[::1]:6000-6002"),
            ("tcp:[::]:80", "tcp:10.0.0.2:80"),
        ] {
            let s = spec(l, c).unwrap_or_else(|e| panic!("{l} -> {c}: {e}"));
            assert_eq!(s.bind, ProxyBind::Host);
        }
    }

    #[test]
    fn spec_refuses_incompatible_pairs() {
        for (l, c, why) in [
            (
                "udp:0.0.0.0:53",
                "tcp:127.0.0.1:53",
                "udp only forwards to udp",
            ),
            (
                "tcp:0.0.0.0:53",
                "udp:127.0.0.1:53",
                "udp only forwards to udp",
            ),
            (
                "unix:/run/a.sock",
                "udp:127.0.0.1:53",
                "udp only forwards to udp",
            ),
            (
                "udp:0.0.0.0:53",
                "unix:/run/a.sock",
                "udp only forwards to udp",
            ),
            ("tcp:0.0.0.0:80", "tcp:127.0.0.1:80-81", "has 2 ports"),
            ("tcp:0.0.0.0:80-82", "tcp:127.0.0.1:80-81", "has 2 ports"),
            ("unix:/run/a.sock", "tcp:127.0.0.1:80-81", "has 2 ports"),
            ("udp:0.0.0.0:1-3", "udp:127.0.0.1:1-4", "has 4 ports"),
        ] {
            match spec(l, c) {
                Err(ProxyError::Field { field, reason }) => {
                    assert_eq!(field, "connect", "{l} -> {c}");
                    assert!(reason.contains(why), "{l} -> {c}: {reason}");
                }
                other => panic!("{l} -> {c}: {other:?}"),
            }
        }
    }

    #[test]
    fn spec_errors_name_the_key() {
        let e = ProxySpec::parse("tcp:nowhere:80", "tcp:127.0.0.1:80", "").unwrap_err();
        assert!(
            matches!(
                e,
                ProxyError::Field {
                    field: "listen",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("invalid proxy listen: "), "{e}");
        assert!(e.to_string().contains("host name"), "{e}");
        let e = ProxySpec::parse("tcp:0.0.0.0:80", "tcp:1.2.3.4:1,2", "").unwrap_err();
        assert!(
            matches!(
                e,
                ProxyError::Field {
                    field: "connect",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = ProxySpec::parse("tcp:0.0.0.0:80", "tcp:1.2.3.4:1", "guest").unwrap_err();
        assert!(
            matches!(e, ProxyError::Field { field: "bind", .. }),
            "{e:?}"
        );
        let s = ProxySpec::parse("tcp:0.0.0.0:80", "tcp:1.2.3.4:1", "instance").unwrap();
        assert_eq!(s.bind, ProxyBind::Instance);
        assert_eq!(s.bind.to_string(), "instance");
        let s = ProxySpec::parse("tcp:0.0.0.0:80", "tcp:1.2.3.4:1", "container").unwrap();
        assert_eq!(s.bind, ProxyBind::Instance);
        let h: crate::HelperError = e.clone().into();
        assert_eq!(h.http_status(), 400);
    }

    #[test]
    fn spec_deserializing_validates_the_pair() {
        let good =
            r#"{"listen":"tcp:0.0.0.0:80-81","connect":"tcp:127.0.0.1:90-91","bind":"instance"}"#;
        let s: ProxySpec = serde_json::from_str(good).unwrap();
        assert_eq!(s.bind, ProxyBind::Instance);
        let back: ProxySpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        for bad in [
            r#"{"listen":"udp:0.0.0.0:80","connect":"tcp:127.0.0.1:90","bind":"host"}"#,
            r#"{"listen":"tcp:0.0.0.0:80","connect":"tcp:127.0.0.1:90-91","bind":"host"}"#,
            r#"{"listen":"tcp:0.0.0.0:80","connect":"tcp:127.0.0.1:90","bind":"guest"}"#,
            r#"{"listen":"tcp:0.0.0.0:80","connect":"tcp:example.com:90","bind":"host"}"#,
        ] {
            assert!(serde_json::from_str::<ProxySpec>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_for_pairs_ports() {
        let s = spec("tcp:0.0.0.0:8000-8002", "tcp:10.0.0.2:9000-9002").unwrap();
        let got: Vec<_> = (0..4).map(|i| s.connect_for(i)).collect();
        assert_eq!(
            got,
            vec![
                Some(p("tcp:10.0.0.2:9000")),
                Some(p("tcp:10.0.0.2:9001")),
                Some(p("tcp:10.0.0.2:9002")),
                None
            ]
        );
        let s = spec("udp:0.0.0.0:8000-8002", "udp:10.0.0.2:53").unwrap();
        assert_eq!(s.connect_for(2), Some(p("udp:10.0.0.2:53")));
        let s = spec("tcp:0.0.0.0:8000-8001", "unix:/run/a").unwrap();
        assert_eq!(s.connect_for(1), Some(p("unix:/run/a")));
    }
}
