//! Who may call what over the network: the one rule table the API's trust middleware applies,
//! certificate fingerprints, LXD's certificate add token, token expiries and the per-address
//! limit on wrong trust passwords. Pure: time is passed in.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who is calling, as the connection says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// The unix socket: a member of the API group, trusted as today.
    Local,
    /// TLS with a certificate in the trust store of type `client`.
    Client,
    /// TLS with a certificate of type `metrics`: `/1.0/metrics` only.
    Metrics,
    /// TLS with a cluster member's certificate: the whole API and the cluster's internal
    /// endpoints.
    Member,
    /// TLS without a trusted certificate (or none at all).
    Untrusted,
}

impl CallerKind {
    /// Whether the caller has the whole API.
    pub fn trusted(self) -> bool {
        matches!(
            self,
            CallerKind::Local | CallerKind::Client | CallerKind::Member
        )
    }
}

/// The connection a request came on (a request extension the servers set).
#[derive(Debug, Clone)]
pub enum Peer {
    /// The unix socket.
    Local,
    /// TLS.
    Tls {
        /// The client's address.
        addr: std::net::SocketAddr,
        /// Its certificate (DER) and that certificate's fingerprint, when it sent one.
        cert: Option<std::sync::Arc<(Vec<u8>, String)>>,
    },
}

/// What the rule table allows a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The whole endpoint, as the unix socket has it.
    Full,
    /// The endpoint's untrusted view: `GET /1.0` without secrets, public images only,
    /// `POST /1.0/certificates` with a password or token. Handlers filter by the caller.
    Untrusted,
    /// 403.
    Denied,
}

/// The endpoints an untrusted caller may reach (LXD's `AllowUntrusted`), by method and path
/// shape; `*` is one non-empty segment. Anything not listed is denied.
const UNTRUSTED: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/1.0"),
    ("POST", "/1.0/certificates"),
    ("GET", "/1.0/images"),
    ("GET", "/1.0/images/aliases"),
    ("GET", "/1.0/images/aliases/*"),
    ("GET", "/1.0/images/*"),
    ("GET", "/1.0/images/*/export"),
    // A migration's peer dials the operation's websockets without a client certificate, as
    // LXD's does: the operation's secret is the only check (the handler's).
    ("GET", "/1.0/operations/*/websocket"),
    // A joiner has no trusted certificate yet: the join token's secret is the check (the
    // handler's).
    ("POST", "/internal/cluster/accept"),
];

/// What only a `metrics` certificate (and trusted callers) may reach.
const METRICS: &[(&str, &str)] = &[("GET", "/1.0/metrics")];

fn shape_matches(shape: &str, path: &str) -> bool {
    if shape == "/" || path == "/" {
        return shape == path;
    }
    let (mut s, mut p) = (shape.split('/'), path.split('/'));
    loop {
        match (s.next(), p.next()) {
            (None, None) => return true,
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

fn listed(table: &[(&str, &str)], method: &str, path: &str) -> bool {
    // HEAD is a GET without its body.
    let method = if method == "HEAD" { "GET" } else { method };
    table
        .iter()
        .any(|(m, shape)| *m == method && shape_matches(shape, path))
}

/// Whether `method path` is the metrics scrape (what `core.metrics_authentication=false`
/// opens to untrusted callers, as LXD's `allowMetrics` does).
pub fn is_metrics(method: &str, path: &str) -> bool {
    listed(METRICS, method, path)
}

/// Whether `path` is one of silod's internal endpoints (`/internal/...`).
fn is_internal(path: &str) -> bool {
    path == "/internal" || path.starts_with("/internal/")
}

/// The rule: what `caller` may do with `method path` (the path without its query).
pub fn access(caller: CallerKind, method: &str, path: &str) -> Access {
    match caller {
        CallerKind::Local => Access::Full,
        // Another member: the API and the cluster's own internal endpoints, not the host's
        // (`silod shutdown`).
        CallerKind::Member if is_internal(path) && !path.starts_with("/internal/cluster/") => {
            Access::Denied
        }
        CallerKind::Member => Access::Full,
        // silod's own endpoints (`silod shutdown`) are the host's, asked for on the unix
        // socket: a TLS client may stop instances one by one, not take the daemon down.
        CallerKind::Client if is_internal(path) => Access::Denied,
        CallerKind::Client => Access::Full,
        CallerKind::Metrics if listed(METRICS, method, path) => Access::Full,
        CallerKind::Metrics | CallerKind::Untrusted => {
            if listed(UNTRUSTED, method, path) {
                Access::Untrusted
            } else {
                Access::Denied
            }
        }
    }
}

/// A certificate's fingerprint as LXD shows it: sha256 of the DER, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The certificate types LXD 5.0 stores.
pub const CERT_TYPES: &[&str] = &["client", "metrics"];

/// A trusted certificate as silo keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// sha256 of the DER.
    pub fingerprint: String,
    /// `client` or `metrics`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// PEM.
    pub certificate: String,
}

/// LXD's certificate add token (`lxc config trust add` prints it base64-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateAddToken {
    /// The name the certificate gets.
    pub client_name: String,
    /// The server certificate's fingerprint, so the client can pin it.
    pub fingerprint: String,
    /// Where the server listens.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The one-time secret.
    pub secret: String,
    /// When it stops working (RFC 3339).
    #[serde(default)]
    pub expires_at: String,
}

impl CertificateAddToken {
    /// base64 (standard, padded) of its JSON, as LXD encodes it.
    pub fn encode(&self) -> String {
        use base64::Engine;
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// Decodes a token; `None` when `s` is not one (then it is a password).
    pub fn decode(s: &str) -> Option<CertificateAddToken> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()?;
        let t: CertificateAddToken = serde_json::from_slice(&raw).ok()?;
        (!t.secret.is_empty()).then_some(t)
    }
}

/// The token lifetime when `core.remote_token_expiry` is unset. LXD 5.0's tokens never expire;
/// silo's do, so a forgotten token does not stay a way in.
pub const DEFAULT_TOKEN_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Parses `core.remote_token_expiry` as LXD writes expiries: space-separated `<n><unit>` with
/// M (minutes), H (hours), d, w, m (30 days), y (365 days); silo adds S (seconds).
pub fn parse_expiry(v: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut any = false;
    for part in v.split_whitespace() {
        let split = part
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{part:?} has no unit (S, M, H, d, w, m, y)"))?;
        let (n, unit) = part.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{part:?} does not start with a number"))?;
        let secs = match unit {
            "S" => 1,
            "M" => 60,
            "H" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "m" => 30 * 86_400,
            "y" => 365 * 86_400,
            u => return Err(format!("unknown unit {u:?} (S, M, H, d, w, m, y)")),
        };
        total = total
            .checked_add(Duration::from_secs(n.saturating_mul(secs)))
            .ok_or_else(|| format!("{v:?} is too long"))?;
        any = true;
    }
    if !any || total.is_zero() {
        return Err(format!("{v:?} is not a positive duration"));
    }
    Ok(total)
}

/// Wrong trust passwords allowed per source address in [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The window over which wrong passwords are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most, so a flood of sources cannot grow the table without bound.
const MAX_TRACKED: usize = 4096;

/// Wrong trust passwords by source address: after [`MAX_FAILURES`] in [`FAILURE_WINDOW`], the
/// address is refused without checking until the oldest failure leaves the window.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    by_addr: HashMap<IpAddr, VecDeque<Instant>>,
}

impl FailureLimiter {
    fn prune(q: &mut VecDeque<Instant>, now: Instant) {
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= FAILURE_WINDOW)
        {
            q.pop_front();
        }
    }

    /// `Err(wait)` when `addr` must wait before trying again.
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(q) = self.by_addr.get_mut(&addr) else {
            return Ok(());
        };
        Self::prune(q, now);
        if q.len() >= MAX_FAILURES {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(oldest)));
        }
        Ok(())
    }

    /// Counts a wrong password from `addr`.
    pub fn failed(&mut self, addr: IpAddr, now: Instant) {
        if self.by_addr.len() >= MAX_TRACKED && !self.by_addr.contains_key(&addr) {
            self.by_addr.retain(|_, q| {
                Self::prune(q, now);
                !q.is_empty()
            });
            if self.by_addr.len() >= MAX_TRACKED {
                // Still full of live entries: forget the lot rather than grow. An attacker
                // with thousands of addresses gains a reset, not an unbounded table.
                self.by_addr.clear();
            }
        }
        let q = self.by_addr.entry(addr).or_default();
        Self::prune(q, now);
        q.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_callers_reach_only_the_public_endpoints() {
        use CallerKind::{Client, Local, Metrics, Untrusted};
        let (full, untrusted, denied) = (Access::Full, Access::Untrusted, Access::Denied);
        for (m, p) in [
            ("GET", "/"),
            ("GET", "/1.0"),
            ("HEAD", "/1.0"),
            ("POST", "/1.0/certificates"),
            ("GET", "/1.0/images"),
            ("GET", "/1.0/images/abc"),
            ("GET", "/1.0/images/abc/export"),
            ("GET", "/1.0/images/aliases"),
            ("GET", "/1.0/images/aliases/busybox"),
        ] {
            assert_eq!(access(Untrusted, m, p), untrusted, "{m} {p}");
            assert_eq!(access(Metrics, m, p), untrusted, "{m} {p}");
            assert_eq!(access(Client, m, p), full, "{m} {p}");
            assert_eq!(access(Local, m, p), full, "{m} {p}");
        }
        for (m, p) in [
            ("GET", "/1.0/instances"),
            ("GET", "/1.0/containers"),
            ("PUT", "/1.0"),
            ("PATCH", "/1.0"),
            ("GET", "/1.0/certificates"),
            ("DELETE", "/1.0/certificates/abc"),
            ("POST", "/1.0/images"),
            ("DELETE", "/1.0/images/abc"),
            ("PUT", "/1.0/images/abc"),
            ("POST", "/1.0/images/abc/secret"),
            ("GET", "/1.0/images/abc/export/x"),
            ("GET", "/1.0/images//export"),
            ("GET", "/1.0/images/"),
            ("GET", "/1.0/"),
            ("GET", "//1.0"),
            ("GET", "/1.0/events"),
            ("GET", "/1.0/metrics"),
            ("GET", ""),
        ] {
            assert_eq!(access(Untrusted, m, p), denied, "{m} {p}");
        }
        assert_eq!(access(Metrics, "GET", "/1.0/metrics"), full);
        assert!(is_metrics("GET", "/1.0/metrics") && is_metrics("HEAD", "/1.0/metrics"));
        assert!(!is_metrics("PUT", "/1.0/metrics") && !is_metrics("GET", "/1.0/metrics/x"));
        assert_eq!(access(Metrics, "GET", "/1.0/instances"), denied);
        assert!(Local.trusted() && Client.trusted() && !Metrics.trusted());
        assert_eq!(access(Local, "PUT", "/internal/shutdown"), full);
        for who in [Client, Metrics, Untrusted] {
            assert_eq!(access(who, "PUT", "/internal/shutdown"), denied, "{who:?}");
        }
    }

    #[test]
    fn tokens_round_trip_and_passwords_are_not_tokens() {
        let t = CertificateAddToken {
            client_name: "cli1".into(),
            fingerprint: "ab".repeat(32),
            addresses: vec!["127.0.0.1:8443".into()],
            secret: "cd".repeat(32),
            expires_at: "2026-12-06T12:00:00Z".into(),
        };
        let s = t.encode();
        assert_eq!(CertificateAddToken::decode(&s), Some(t));
        assert_eq!(CertificateAddToken::decode("hunter2"), None);
        assert_eq!(CertificateAddToken::decode("aGVsbG8="), None);
        // LXD's own layout (Go field names in snake case) decodes.
        let lxd = r#"{"client_name":"x","fingerprint":"f","addresses":["a"],"secret":"s","expires_at":"0001-01-01T00:00:00Z"}"#;
        use base64::Engine;
        let enc = base64::engine::general_purpose::STANDARD.encode(lxd);
        assert_eq!(
            CertificateAddToken::decode(&enc).map(|t| t.secret),
            Some("s".into())
        );
    }

    #[test]
    fn expiries_parse_as_lxd_writes_them() {
        assert_eq!(parse_expiry("30S"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_expiry("1H 30M"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_expiry("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "0M", "10", "5x", "H", "-1H"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wrong_passwords_are_limited_per_address() {
        let mut l = FailureLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(l.check(a, t0), Ok(()), "attempt {i}");
            l.failed(a, t0);
        }
        let wait = l
            .check(a, t0 + Duration::from_secs(10))
            .expect_err("limited");
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(l.check(b, t0), Ok(()), "another address is not limited");
        assert_eq!(l.check(a, t0 + FAILURE_WINDOW), Ok(()), "the window passes");
    }

    #[test]
    fn fingerprints_are_sha256_hex() {
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
