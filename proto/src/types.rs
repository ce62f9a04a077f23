//! Small typed values used in requests: CIDRs, byte sizes, relative paths.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

use crate::names::NameError;

/// An IPv4 address with prefix length, as used for a bridge's gateway address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// Builds a CIDR; the prefix must leave room for hosts (8 to 30).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, NameError> {
        let s = format!("{addr}/{prefix}");
        if !(8..=30).contains(&prefix) {
            return Err(err(&s, "prefix length must be between 8 and 30"));
        }
        if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() || addr.is_loopback()
        {
            return Err(err(&s, "must be a unicast, non-loopback address"));
        }
        let c = Ipv4Cidr { addr, prefix };
        if c.addr == c.network() {
            return Err(err(&s, "the address must not be the network address"));
        }
        if c.addr == c.broadcast() {
            return Err(err(&s, "the address must not be the broadcast address"));
        }
        Ok(c)
    }

    /// The host address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as a u32.
    pub fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether two networks share any address.
    pub fn overlaps(&self, other_net: Ipv4Addr, other_prefix: u8) -> bool {
        let p = self.prefix.min(other_prefix);
        let mask = if p == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(p))
        };
        (u32::from(self.addr) & mask) == (u32::from(other_net) & mask)
    }
}

fn err(value: &str, reason: &str) -> NameError {
    NameError {
        kind: "IPv4 CIDR".to_string(),
        value: value.chars().take(80).collect(),
        reason: reason.to_string(),
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| err(s, "expected ADDRESS/PREFIX, e.g. 10.12.0.1/24"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err(s, "not an IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| err(s, "prefix is not a number"))?;
        Ipv4Cidr::new(addr, prefix)
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ipv4Cidr({self})")
    }
}

/// A range of addresses (network address and prefix length, host bits zero), either family:
/// what the root policy lists in `network_ranges`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpRange {
    net: std::net::IpAddr,
    prefix: u8,
}

fn err_range(value: &str, reason: &str) -> NameError {
    NameError {
        kind: "address range".to_string(),
        value: value.chars().take(80).collect(),
        reason: reason.to_string(),
    }
}

impl IpRange {
    /// `net/prefix`; the address must be the network address of the range.
    pub fn new(net: std::net::IpAddr, prefix: u8) -> Result<Self, NameError> {
        let s = format!("{net}/{prefix}");
        let (bits, int) = match net {
            std::net::IpAddr::V4(a) => (32u32, u128::from(u32::from(a))),
            std::net::IpAddr::V6(a) => (128u32, u128::from(a)),
        };
        if u32::from(prefix) > bits {
            return Err(err_range(&s, "prefix length is longer than the address"));
        }
        let host_bits = bits - u32::from(prefix);
        let host_mask = if host_bits == 0 {
            0
        } else {
            u128::MAX >> (128 - host_bits)
        };
        if int & host_mask != 0 {
            return Err(err_range(
                &s,
                "must be a network address (host bits zero), e.g. 198.18.0.0/15",
            ));
        }
        Ok(IpRange { net, prefix })
    }

    /// Its network address.
    pub fn net(&self) -> std::net::IpAddr {
        self.net
    }

    /// Its prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr/prefix` lies entirely inside this range.
    pub fn contains(&self, addr: std::net::IpAddr, prefix: u8) -> bool {
        if prefix < self.prefix {
            return false;
        }
        match (self.net, addr) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
                let m = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(a) & m == u32::from(n)
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => {
                let m = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(a) & m == u128::from(n)
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpRange {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| err_range(s, "expected NETWORK/PREFIX, e.g. 198.18.0.0/15"))?;
        let net: std::net::IpAddr = a.parse().map_err(|_| err_range(s, "not an IP address"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| err_range(s, "prefix is not a number"))?;
        IpRange::new(net, prefix)
    }
}

impl TryFrom<String> for IpRange {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}

impl From<IpRange> for String {
    fn from(r: IpRange) -> String {
        r.to_string()
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl fmt::Debug for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpRange({self})")
    }
}

/// Where managed networks may take their subnets without the policy saying more: the private
/// ranges no public service lives in (RFC 1918, RFC 6598 shared space, IPv6 ULA). A public
/// subnet on a silo bridge would pull the host's own traffic to, say, 8.8.8.8 into it.
pub const PRIVATE_RANGES: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

/// The policy key that lists more ranges (named in refusals).
pub const RANGES_KEY: &str = "network_ranges";

/// Checks that a managed network's subnet lies inside the private ranges or one `extra`
/// range (the root policy's `network_ranges`). Both silod (for a clear 400) and silo-net
/// (which trusts nothing silod sends) run it.
pub fn check_managed_subnet(
    key: &str,
    addr: std::net::IpAddr,
    prefix: u8,
    extra: &[IpRange],
) -> Result<(), String> {
    let private = PRIVATE_RANGES
        .iter()
        .filter_map(|r| r.parse::<IpRange>().ok());
    if private
        .chain(extra.iter().copied())
        .any(|r| r.contains(addr, prefix))
    {
        return Ok(());
    }
    Err(format!(
        "{key}: {addr}/{prefix} is not inside a private range ({}) or a range the root policy \
         lists in {RANGES_KEY}; a managed network must not take over public addresses",
        PRIVATE_RANGES.join(", ")
    ))
}

/// What interfaces silo creates on the host must start with (bridges may also take a prefix
/// the root policy lists), so that silo never squats a name the host may want later
/// (`eth1`, `wlan0`, `docker0`, `enp0s3`...).
pub const SILO_IF_PREFIX: &str = "silo";

/// The policy key that lists more bridge name prefixes (named in refusals).
pub const PREFIXES_KEY: &str = "network_name_prefixes";

/// Checks a managed bridge's name: it starts with `silo` or one of `extra` (the policy's
/// `network_name_prefixes`).
pub fn check_bridge_name(name: &str, extra: &[String]) -> Result<(), String> {
    if name.starts_with(SILO_IF_PREFIX)
        || extra
            .iter()
            .any(|p| !p.is_empty() && name.starts_with(p.as_str()))
    {
        return Ok(());
    }
    Err(format!(
        "network name {name:?} must start with \"{SILO_IF_PREFIX}\" (or a prefix the root \
         policy lists in {PREFIXES_KEY}), so that silo never takes a name the host may give \
         an interface of its own"
    ))
}

/// Checks the host-side name of a nic (a veth end silo creates): it starts with `silo`.
pub fn check_host_veth_name(name: &str) -> Result<(), String> {
    if name.starts_with(SILO_IF_PREFIX) {
        return Ok(());
    }
    Err(format!(
        "host_name {name:?} must start with \"{SILO_IF_PREFIX}\", so that silo never takes a \
         name the host may give an interface of its own"
    ))
}

/// A relative path beneath some root chosen by the helper: no `..`, no `.`, no empty or
/// absolute components, no NUL, at most 4096 bytes and 255 bytes per component.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    /// Checks and wraps `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
        let s: String = s.into();
        let e = |r: &str| NameError {
            kind: "relative path".to_string(),
            value: s.chars().take(80).collect(),
            reason: r.to_string(),
        };
        if s.is_empty() {
            return Err(e("must not be empty"));
        }
        if s.len() > 4096 {
            return Err(e("must be at most 4096 bytes"));
        }
        if s.starts_with('/') {
            return Err(e("must be relative, not absolute"));
        }
        if s.contains('\0') {
            return Err(e("must not contain NUL"));
        }
        for c in s.split('/') {
            match c {
                "" => {
                    return Err(e(
                        "must not contain empty components ('//' or a trailing '/')",
                    ))
                }
                "." | ".." => return Err(e("must not contain '.' or '..' components")),
                c if c.len() > 255 => return Err(e("a component is longer than 255 bytes")),
                _ => {}
            }
        }
        Ok(RelPath(s))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl TryFrom<String> for RelPath {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        RelPath::new(s)
    }
}

impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelPath({:?})", self.0)
    }
}

/// An absolute host path as a request carries it: normalized (no `.`, `..`, empty components),
/// no NUL, at most 4096 bytes. Whether silo may touch it is the policy's call, in the helper.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPath(String);

impl HostPath {
    /// Checks and wraps `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
        let s: String = s.into();
        let e = |r: &str| NameError {
            kind: "host path".to_string(),
            value: s.chars().take(80).collect(),
            reason: r.to_string(),
        };
        if !s.starts_with('/') || s.len() < 2 {
            return Err(e("must be an absolute path below /"));
        }
        if s.len() > 4096 || s.contains('\0') {
            return Err(e("must be at most 4096 bytes, without NUL"));
        }
        if s[1..]
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(e("must be normalized: no '.', '..', '//' or trailing '/'"));
        }
        Ok(HostPath(s))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its components below `/`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/')
    }

    /// Whether `self` is `base` or lies beneath it.
    pub fn is_within(&self, base: &std::path::Path) -> bool {
        let base = base.to_string_lossy();
        let base = base.trim_end_matches('/');
        self.0 == base
            || (self.0.starts_with(base) && self.0.as_bytes().get(base.len()) == Some(&b'/'))
    }
}

impl TryFrom<String> for HostPath {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        HostPath::new(s)
    }
}

impl From<HostPath> for String {
    fn from(p: HostPath) -> String {
        p.0
    }
}

impl fmt::Display for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostPath({:?})", self.0)
    }
}

/// Formats a byte count the way LXD's client does (1024-based, e.g. "12.50MiB").
pub fn human_bytes(n: u64) -> String {
    silo_api::units::format_iec(n)
}

/// Parses sizes as LXD accepts them: "512MiB", "10GB", "1GiB", "4096" (bytes). One copy, in
/// `silo_api::units`, for silod, the helpers and the CLI.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    silo_api::units::parse_bytes(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_refuses() {
        let c: Ipv4Cidr = "10.12.0.1/24".parse().expect("valid");
        assert_eq!(c.network().to_string(), "10.12.0.0");
        assert!(c.overlaps("10.12.0.0".parse().expect("ip"), 16));
        assert!(!c.overlaps("10.13.0.0".parse().expect("ip"), 24));
        for bad in [
            "10.0.0.0/24",
            "10.0.0.255/24",
            "10.0.0.1/31",
            "127.0.0.1/8",
            "x/24",
            "10.0.0.1",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn managed_subnets_are_private_unless_listed() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        for (a, p) in [
            ("10.1.2.1", 24),
            ("172.16.9.1", 24),
            ("192.168.77.1", 24),
            ("100.64.0.1", 10),
            ("fd42:1::1", 64),
        ] {
            assert_eq!(check_managed_subnet("k", ip(a), p, &[]), Ok(()), "{a}/{p}");
        }
        for (a, p) in [
            ("8.8.8.1", 8),
            ("9.9.9.1", 8),
            ("1.1.1.2", 8),
            ("10.0.0.1", 7),
            ("172.32.0.1", 24),
            ("198.18.0.1", 24),
            ("2001:4860::1", 32),
            ("fe00::1", 16),
        ] {
            let e = check_managed_subnet("ipv4.address", ip(a), p, &[]).expect_err(a);
            assert!(e.contains("network_ranges") && e.contains("private"), "{e}");
        }
        let extra: IpRange = "198.18.0.0/15".parse().expect("range");
        assert_eq!(
            check_managed_subnet("k", ip("198.18.3.1"), 24, &[extra]),
            Ok(())
        );
        assert!(check_managed_subnet("k", ip("198.16.0.1"), 14, &[extra]).is_err());
        assert!("198.18.0.1/15".parse::<IpRange>().is_err(), "host bits");
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("::/0".parse::<IpRange>().is_ok());
    }

    #[test]
    fn interface_names_are_silos_own() {
        assert_eq!(check_bridge_name("silobr0", &[]), Ok(()));
        for bad in ["docker0", "eth1", "wlan0", "enp0s99", "lxdbr0", "br1"] {
            let e = check_bridge_name(bad, &[]).expect_err(bad);
            assert!(e.contains("must start with \"silo\""), "{e}");
        }
        assert_eq!(check_bridge_name("lxdbr0", &["lxdbr".into()]), Ok(()));
        assert!(check_bridge_name("eth1", &["".into()]).is_err());
        assert_eq!(check_host_veth_name("silo0a1b2c3d"), Ok(()));
        assert!(check_host_veth_name("veth1234").is_err());
    }

    #[test]
    fn relpath_refuses_escapes() {
        for bad in ["", "/etc", "a/../b", "..", "./a", "a//b", "a/", "a\0b"] {
            assert!(RelPath::new(bad).is_err(), "{bad:?}");
        }
        assert!(RelPath::new("a/b/c.txt").is_ok());
        assert!(RelPath::new("x".repeat(256)).is_err());
    }

    #[test]
    fn host_paths() {
        assert!(HostPath::new("/srv/pools/a").is_ok());
        for bad in ["relative", "/", "/a/../b", "/a//b", "/a/", "/a/./b"] {
            assert!(HostPath::new(bad).is_err(), "{bad}");
        }
        let p = HostPath::new("/srv/pools/a").expect("path");
        assert!(p.is_within(std::path::Path::new("/srv/pools")));
        assert!(p.is_within(std::path::Path::new("/srv/pools/")));
        assert!(!p.is_within(std::path::Path::new("/srv/po")));
        assert!(!p.is_within(std::path::Path::new("/other")));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12XB").is_err());
        assert_eq!(human_bytes(1536), "1.50KiB");
        assert_eq!(human_bytes(12), "12B");
    }
}

/// An IPv6 address with prefix length, as used for a bridge's gateway address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv6Cidr {
    addr: std::net::Ipv6Addr,
    prefix: u8,
}

fn err6(value: &str, reason: &str) -> NameError {
    NameError {
        kind: "IPv6 CIDR".to_string(),
        value: value.chars().take(80).collect(),
        reason: reason.to_string(),
    }
}

impl Ipv6Cidr {
    /// Builds a CIDR; the prefix must leave room for hosts (16 to 124).
    pub fn new(addr: std::net::Ipv6Addr, prefix: u8) -> Result<Self, NameError> {
        let s = format!("{addr}/{prefix}");
        if !(16..=124).contains(&prefix) {
            return Err(err6(&s, "prefix length must be between 16 and 124"));
        }
        if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
            return Err(err6(&s, "must be a unicast, non-loopback address"));
        }
        if (addr.segments()[0] & 0xffc0) == 0xfe80 {
            return Err(err6(&s, "must not be a link-local address"));
        }
        let c = Ipv6Cidr { addr, prefix };
        if c.addr == c.network() {
            return Err(err6(&s, "the address must not be the network address"));
        }
        Ok(c)
    }

    /// The host address.
    pub fn addr(&self) -> std::net::Ipv6Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask_of(prefix: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix))
        }
    }

    /// The network address.
    pub fn network(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::from(u128::from(self.addr) & Self::mask_of(self.prefix))
    }

    /// Whether two networks share any address.
    pub fn overlaps(&self, other_net: std::net::Ipv6Addr, other_prefix: u8) -> bool {
        let mask = Self::mask_of(self.prefix.min(other_prefix));
        (u128::from(self.addr) & mask) == (u128::from(other_net) & mask)
    }
}

impl std::str::FromStr for Ipv6Cidr {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| err6(s, "expected ADDRESS/PREFIX, e.g. fd42:1:2:3::1/64"))?;
        let addr: std::net::Ipv6Addr = a.parse().map_err(|_| err6(s, "not an IPv6 address"))?;
        let prefix: u8 = p.parse().map_err(|_| err6(s, "prefix is not a number"))?;
        Ipv6Cidr::new(addr, prefix)
    }
}

impl TryFrom<String> for Ipv6Cidr {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}

impl From<Ipv6Cidr> for String {
    fn from(c: Ipv6Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ipv6Cidr({self})")
    }
}

/// A unicast Ethernet MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Wraps six bytes; multicast and all-zero addresses are refused.
    pub fn new(b: [u8; 6]) -> Result<Self, NameError> {
        let m = MacAddr(b);
        let e = |r: &str| NameError {
            kind: "MAC address".to_string(),
            value: m.to_string(),
            reason: r.to_string(),
        };
        if b[0] & 1 == 1 {
            return Err(e(
                "must be a unicast address (the first octet's low bit clear)",
            ));
        }
        if b == [0; 6] {
            return Err(e("must not be all zeros"));
        }
        Ok(m)
    }

    /// The bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// A random locally administered address under LXD's `00:16:3e` prefix, as LXD makes for
    /// `volatile.<nic>.hwaddr`.
    pub fn random_lxd(seed: [u8; 3]) -> MacAddr {
        MacAddr([0x00, 0x16, 0x3e, seed[0] & 0x7f, seed[1], seed[2]])
    }

    /// The modified EUI-64 interface identifier SLAAC derives from this MAC.
    pub fn eui64(&self) -> [u8; 8] {
        let b = self.0;
        [b[0] ^ 2, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]]
    }
}

impl std::str::FromStr for MacAddr {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let e = |r: &str| NameError {
            kind: "MAC address".to_string(),
            value: s.chars().take(80).collect(),
            reason: r.to_string(),
        };
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(e("expected six ':'-separated hex octets"));
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(e("each octet is two hex digits"));
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| e("not hexadecimal"))?;
        }
        MacAddr::new(b)
    }
}

impl TryFrom<String> for MacAddr {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

/// A DNS domain for a managed network (`dns.domain`): dot-separated labels of letters, digits
/// and dashes, at most 253 bytes. It ends up on dnsmasq's command line, so nothing else passes.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsDomain(String);

impl DnsDomain {
    /// Checks and wraps `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
        let s: String = s.into();
        let e = |r: &str| NameError {
            kind: "DNS domain".to_string(),
            value: s.chars().take(80).collect(),
            reason: r.to_string(),
        };
        if s.is_empty() || s.len() > 253 {
            return Err(e("must be 1 to 253 characters"));
        }
        for l in s.split('.') {
            if l.is_empty() || l.len() > 63 {
                return Err(e("each label must be 1 to 63 characters"));
            }
            if !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                || l.starts_with('-')
                || l.ends_with('-')
            {
                return Err(e("labels hold letters, digits and inner dashes only"));
            }
        }
        Ok(DnsDomain(s))
    }

    /// The domain.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DnsDomain {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        DnsDomain::new(s)
    }
}

impl From<DnsDomain> for String {
    fn from(d: DnsDomain) -> String {
        d.0
    }
}

impl fmt::Display for DnsDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DnsDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DnsDomain({:?})", self.0)
    }
}

#[cfg(test)]
mod net_type_tests {
    use super::*;

    #[test]
    fn ipv6_cidrs() {
        let c: Ipv6Cidr = "fd42:1:2:3::1/64".parse().expect("ok");
        assert_eq!(c.network().to_string(), "fd42:1:2:3::");
        assert!(c.overlaps("fd42:1:2::".parse().expect("a"), 48));
        assert!(!c.overlaps("fd42:1:2:4::".parse().expect("a"), 64));
        for bad in [
            "fd42::/64",
            "::1/64",
            "fe80::1/64",
            "fd42::1/8",
            "x/64",
            "fd42::1",
        ] {
            assert!(bad.parse::<Ipv6Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn macs() {
        let m: MacAddr = "00:16:3e:aa:bb:cc".parse().expect("ok");
        assert_eq!(m.to_string(), "00:16:3e:aa:bb:cc");
        assert_eq!(m.eui64(), [2, 0x16, 0x3e, 0xff, 0xfe, 0xaa, 0xbb, 0xcc]);
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "00:16:3e:aa:bb",
            "zz:16:3e:aa:bb:cc",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert_eq!(
            MacAddr::random_lxd([0xff, 1, 2]).to_string(),
            "00:16:3e:7f:01:02"
        );
    }

    #[test]
    fn domains() {
        assert!(DnsDomain::new("silo").is_ok());
        assert!(DnsDomain::new("lab.example").is_ok());
        for bad in ["", "a..b", "-a", "a b", "a,b", "x/y", &"a".repeat(64)] {
            assert!(DnsDomain::new(bad).is_err(), "{bad:?}");
        }
    }
}
