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
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.2}{}", UNITS[i])
    }
}

/// Parses sizes as LXD accepts them: "512MiB", "10GB", "1GiB", "4096" (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number with an optional unit"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1000,
        "MB" => 1000_u64.pow(2),
        "GB" => 1000_u64.pow(3),
        "TB" => 1000_u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        u => return Err(format!("invalid size {s:?}: unknown unit {u:?}")),
    };
    let v = num * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("invalid size {s:?}: out of range"));
    }
    Ok(v as u64)
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
