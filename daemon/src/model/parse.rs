//! One copy of each value parser LXD's configuration uses: booleans, durations, byte sizes,
//! CPU limits, memory limits and whole numbers. Each gives a typed value or a [`ParseError`]
//! that says what was expected; callers add which key it was.

/// Why a value does not parse. The text is what the API answers (after the key's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not one of LXD's boolean spellings.
    #[error("{0:?} is not a boolean (true/false, 1/0, yes/no, on/off)")]
    Bool(String),
    /// Not a whole number (≥ 0).
    #[error("{0:?} is not a whole number")]
    Whole(String),
    /// A count that is not digits, or does not fit LXD's int64.
    #[error("{value:?} is not a whole number of {unit} (0 or more)")]
    Count {
        /// The value given.
        value: String,
        /// What it counts ("hours").
        unit: &'static str,
    },
    /// A count too large for int64.
    #[error("{value} {unit} is too large")]
    CountTooLarge {
        /// The value given.
        value: String,
        /// What it counts.
        unit: &'static str,
    },
    /// A byte size `silo_proto::types::parse_bytes` refused.
    #[error("{0}")]
    Bytes(String),
    /// A memory limit below what a container can start with.
    #[error("{0:?} is below 4MiB")]
    MemoryTooSmall(String),
    /// A memory percentage outside 1%..100%.
    #[error("{0:?} is not a valid percentage (1% to 100%)")]
    Percent(String),
    /// Neither a CPU count nor a CPU set.
    #[error("{0:?} is not a CPU count or set (e.g. 2, 0-1, 0,2)")]
    Cpu(String),
    /// A CPU count of 0.
    #[error("{0:?}: at least one CPU")]
    NoCpu(String),
    /// A snapshot expiry part that is not `<number><unit>`.
    #[error("invalid snapshots.expiry {value:?}: {part:?} is not <number><unit>")]
    ExpiryPart {
        /// The whole value.
        value: String,
        /// The part that is wrong.
        part: String,
    },
    /// A snapshot expiry unit LXD does not know.
    #[error("invalid snapshots.expiry {value:?}: unit of {part:?} is not M, H, d, w, m or y")]
    ExpiryUnit {
        /// The whole value.
        value: String,
        /// The part that is wrong.
        part: String,
    },
    /// A snapshot expiry beyond what a timestamp can hold.
    #[error("invalid snapshots.expiry {0:?}: more than {MAX_EXPIRY_YEARS} years")]
    ExpiryTooLong(String),
    /// A DHCP lease time that is not `<n>[smhd]`.
    #[error("invalid value {0:?} for ipv4.dhcp.expiry: expected e.g. 1h, 30m or 3600")]
    Lease(String),
    /// A DHCP lease time under dnsmasq's minimum.
    #[error("invalid value {0:?} for ipv4.dhcp.expiry: at least 2m (dnsmasq's minimum)")]
    LeaseTooShort(String),
    /// Not an RFC 3339 time.
    #[error("expires_at {value:?} is not an RFC 3339 time: {why}")]
    Time {
        /// The value given.
        value: String,
        /// The parser's reason.
        why: String,
    },
}

/// LXD's booleans: `true/false`, `1/0`, `yes/no`, `on/off`, in any case (LXD lower-cases
/// before comparing).
pub fn parse_bool(v: &str) -> Result<bool, ParseError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ParseError::Bool(v.to_string())),
    }
}

/// LXD's `shared.IsTrue`: true only for a true spelling; anything else (unset, garbage) is
/// false.
pub fn is_true(v: &str) -> bool {
    parse_bool(v) == Ok(true)
}

/// A boolean key read with a default: unset or empty gives `default`, else [`is_true`].
pub fn is_true_or(v: Option<&str>, default: bool) -> bool {
    match v {
        None | Some("") => default,
        Some(v) => is_true(v),
    }
}

/// A whole number ≥ 0 as Rust's `u64` parses it (LXD's `validate.IsUint*`).
pub fn parse_whole(v: &str) -> Result<u64, ParseError> {
    v.parse::<u64>()
        .map_err(|_| ParseError::Whole(v.to_string()))
}

/// A count of `unit` for server keys: digits only (no sign), fitting LXD's int64.
pub fn parse_count(v: &str, unit: &'static str) -> Result<u64, ParseError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Count {
            value: v.to_string(),
            unit,
        });
    }
    v.parse::<i64>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| ParseError::CountTooLarge {
            value: v.to_string(),
            unit,
        })
}

/// A byte size (`512MiB`, `1GB`, `4096`), as `silo_proto` parses them for every helper.
pub fn parse_size(v: &str) -> Result<u64, ParseError> {
    silo_proto::types::parse_bytes(v).map_err(ParseError::Bytes)
}

/// The smallest memory limit a container is given: below it init and a shell do not fit.
pub const MIN_MEMORY: u64 = 4 << 20;

/// `limits.memory`: a byte size, or a whole percentage of the host's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// Bytes, at least [`MIN_MEMORY`].
    Bytes(u64),
    /// 1..=100 percent of the host's memory.
    Percent(u8),
}

impl MemoryLimit {
    /// The limit in bytes on a host with `host_total` bytes of memory.
    pub fn bytes(self, host_total: u64) -> u64 {
        match self {
            MemoryLimit::Bytes(b) => b,
            MemoryLimit::Percent(p) => host_total / 100 * u64::from(p),
        }
    }
}

/// Parses `limits.memory` as LXD does: an integer percentage (`50%`, not `0%`) or a size;
/// silo also refuses sizes under [`MIN_MEMORY`].
pub fn parse_memory(v: &str) -> Result<MemoryLimit, ParseError> {
    if let Some(p) = v.strip_suffix('%') {
        return p
            .parse::<u8>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .map(MemoryLimit::Percent)
            .ok_or_else(|| ParseError::Percent(v.to_string()));
    }
    let b = parse_size(v)?;
    if b < MIN_MEMORY {
        return Err(ParseError::MemoryTooSmall(v.to_string()));
    }
    Ok(MemoryLimit::Bytes(b))
}

/// `limits.cpu`: a number of CPUs, or a set of CPU ids (`0-1,3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuLimit {
    /// This many CPUs (≥ 1), the first ones.
    Count(u32),
    /// These CPU ids, sorted, without repeats.
    Set(Vec<u32>),
}

impl CpuLimit {
    /// The highest CPU id this needs (for checking against the host's CPUs).
    pub fn highest(&self) -> u32 {
        match self {
            CpuLimit::Count(n) => n.saturating_sub(1),
            CpuLimit::Set(s) => s.last().copied().unwrap_or(0),
        }
    }

    /// The cgroup `cpuset.cpus` text: a count `n` pins the first `n` CPUs, as LXD's
    /// non-balanced mode does.
    pub fn cpuset(&self) -> String {
        match self {
            CpuLimit::Count(1) => "0".to_string(),
            CpuLimit::Count(n) => format!("0-{}", n.saturating_sub(1)),
            CpuLimit::Set(s) => {
                // Runs of consecutive ids as ranges, so what is written reads like the input.
                let mut parts: Vec<String> = Vec::new();
                let mut i = 0;
                while i < s.len() {
                    let start = s[i];
                    let mut end = start;
                    while i + 1 < s.len() && s[i + 1] == end + 1 {
                        i += 1;
                        end = s[i];
                    }
                    parts.push(if start == end {
                        start.to_string()
                    } else {
                        format!("{start}-{end}")
                    });
                    i += 1;
                }
                parts.join(",")
            }
        }
    }
}

/// Parses `limits.cpu`: digits alone are a count (0 refused), anything else a CPU set as
/// silo-priv takes it (ids below 4096, ranges low-high).
pub fn parse_cpu(v: &str) -> Result<CpuLimit, ParseError> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return match v.parse::<u32>() {
            Ok(0) => Err(ParseError::NoCpu(v.to_string())),
            Ok(n) if n <= 4096 => Ok(CpuLimit::Count(n)),
            _ => Err(ParseError::Cpu(v.to_string())),
        };
    }
    silo_proto::privileged::parse_cpuset(v)
        .map(CpuLimit::Set)
        .map_err(|_| ParseError::Cpu(v.to_string()))
}

/// The longest `snapshots.expiry` taken: beyond it the expiry time would not fit a timestamp
/// (adding it to now would fail, or overflow).
pub const MAX_EXPIRY_YEARS: i64 = 1000;

/// LXD's `snapshots.expiry` syntax: space-separated `<n><unit>` with units M (minutes), H, d,
/// w, m (months, 30 days), y; gives seconds. Empty is 0 (no expiry).
pub fn parse_snapshot_expiry(e: &str) -> Result<i64, ParseError> {
    let too_long = || ParseError::ExpiryTooLong(e.to_string());
    let mut total = 0i64;
    for part in e.split_whitespace() {
        // Split before the last character, which may be more than one byte.
        let cut = part.char_indices().last().map(|(i, _)| i).unwrap_or(0);
        let (n, unit) = part.split_at(cut);
        let n: i64 = n.parse().map_err(|_| ParseError::ExpiryPart {
            value: e.to_string(),
            part: part.to_string(),
        })?;
        let mul = match unit {
            "M" => 60,
            "H" => 3600,
            "d" => 86400,
            "w" => 7 * 86400,
            "m" => 30 * 86400,
            "y" => 365 * 86400,
            _ => {
                return Err(ParseError::ExpiryUnit {
                    value: e.to_string(),
                    part: part.to_string(),
                })
            }
        };
        total = n
            .checked_mul(mul)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(too_long)?;
    }
    if total.abs() > MAX_EXPIRY_YEARS * 365 * 86400 {
        return Err(too_long());
    }
    Ok(total)
}

/// LXD's `ipv4.dhcp.expiry`: seconds, or a number with s/m/h/d; gives seconds, at least 120
/// (dnsmasq's minimum lease).
pub fn parse_lease_time(v: &str) -> Result<u32, ParseError> {
    let (num, mul) = match v.as_bytes().last() {
        Some(b's') => (&v[..v.len() - 1], 1),
        Some(b'm') => (&v[..v.len() - 1], 60),
        Some(b'h') => (&v[..v.len() - 1], 3600),
        Some(b'd') => (&v[..v.len() - 1], 86400),
        _ => (v, 1),
    };
    let n: u32 = num.parse().map_err(|_| ParseError::Lease(v.to_string()))?;
    n.checked_mul(mul)
        .filter(|s| *s >= 120)
        .ok_or_else(|| ParseError::LeaseTooShort(v.to_string()))
}

/// An `expires_at` from a request, normalised to UTC RFC 3339; `None` for no expiry (empty,
/// or Go's zero time that LXD clients send).
pub fn parse_expiry_time(s: &str) -> Result<Option<String>, ParseError> {
    if s.is_empty() || s.starts_with("0001-01-01") {
        return Ok(None);
    }
    let bad = |why: String| ParseError::Time {
        value: s.to_string(),
        why,
    };
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(e.to_string()))?;
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_as_lxd_spells_them() {
        for t in ["true", "TRUE", "True", "1", "yes", "YES", "on", "On"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
            assert!(is_true(t));
        }
        for f in ["false", "FALSE", "0", "no", "off", "Off"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
            assert!(!is_true(f));
        }
        for bad in ["", "2", "maybe", "t", "enabled", " true"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
            assert!(!is_true(bad));
        }
        assert!(is_true_or(None, true));
        assert!(is_true_or(Some(""), true));
        assert!(!is_true_or(Some("garbage"), true));
        assert!(!is_true_or(Some("off"), true));
        assert!(is_true_or(Some("on"), false));
    }

    #[test]
    fn whole_numbers_and_counts() {
        assert_eq!(parse_whole("0"), Ok(0));
        assert_eq!(parse_whole("42"), Ok(42));
        for bad in ["", "-1", "1.5", "x"] {
            assert!(parse_whole(bad).is_err(), "{bad}");
        }
        for good in ["0", "6", "9223372036854775807"] {
            assert!(parse_count(good, "hours").is_ok(), "{good}");
        }
        for bad in [
            "-1",
            "+1",
            "1.5",
            "1h",
            " 1",
            "six",
            "9223372036854775808",
            "",
        ] {
            assert!(parse_count(bad, "hours").is_err(), "{bad}");
        }
        assert_eq!(
            parse_count("x", "days").expect_err("x").to_string(),
            "\"x\" is not a whole number of days (0 or more)"
        );
    }

    #[test]
    fn memory_limits() {
        assert_eq!(parse_memory("50%"), Ok(MemoryLimit::Percent(50)));
        assert_eq!(parse_memory("100%"), Ok(MemoryLimit::Percent(100)));
        assert_eq!(parse_memory("1GiB"), Ok(MemoryLimit::Bytes(1 << 30)));
        assert_eq!(parse_memory("4MiB"), Ok(MemoryLimit::Bytes(4 << 20)));
        // Integer percentages only, as LXD parses them; before, "50.5%" passed validation and
        // then failed at start.
        for bad in [
            "0%", "101%", "50.5%", "-1%", "%", "x%", "1MiB", "1000", "lots",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert_eq!(MemoryLimit::Percent(50).bytes(1000), 500);
        assert_eq!(MemoryLimit::Bytes(7).bytes(1000), 7);
    }

    #[test]
    fn cpu_limits() {
        assert_eq!(parse_cpu("2"), Ok(CpuLimit::Count(2)));
        assert_eq!(parse_cpu("0-1"), Ok(CpuLimit::Set(vec![0, 1])));
        assert_eq!(parse_cpu("0,2"), Ok(CpuLimit::Set(vec![0, 2])));
        assert_eq!(parse_cpu("3,0-1"), Ok(CpuLimit::Set(vec![0, 1, 3])));
        for bad in [
            "0",
            "",
            "x",
            "1-",
            "3-1",
            "0-99999",
            "-1",
            "1.5",
            "99999999999",
        ] {
            assert!(parse_cpu(bad).is_err(), "{bad}");
        }
        assert_eq!(CpuLimit::Count(1).cpuset(), "0");
        assert_eq!(CpuLimit::Count(4).cpuset(), "0-3");
        assert_eq!(CpuLimit::Set(vec![0, 1, 3, 5, 6]).cpuset(), "0-1,3,5-6");
        assert_eq!(CpuLimit::Count(4).highest(), 3);
        assert_eq!(CpuLimit::Set(vec![0, 7]).highest(), 7);
    }

    #[test]
    fn snapshot_expiry() {
        assert_eq!(parse_snapshot_expiry(""), Ok(0));
        assert_eq!(parse_snapshot_expiry("1d 2H 3M"), Ok(86400 + 7200 + 180));
        assert_eq!(parse_snapshot_expiry("1w"), Ok(7 * 86400));
        assert_eq!(parse_snapshot_expiry("1m 1y"), Ok(395 * 86400));
        for bad in ["1", "d", "1x", "1D", "1é", "x1d"] {
            assert!(parse_snapshot_expiry(bad).is_err(), "{bad}");
        }
        // Overflow used to panic (debug) or wrap (release); far futures are refused.
        for huge in [
            "9223372036854775807y",
            "99999999999d",
            "1001y",
            "1000y 1000y",
        ] {
            assert!(
                matches!(
                    parse_snapshot_expiry(huge),
                    Err(ParseError::ExpiryTooLong(_))
                ),
                "{huge}"
            );
        }
        assert!(parse_snapshot_expiry("1000y").is_ok());
    }

    #[test]
    fn lease_times() {
        assert_eq!(parse_lease_time("1h"), Ok(3600));
        assert_eq!(parse_lease_time("30m"), Ok(1800));
        assert_eq!(parse_lease_time("3600"), Ok(3600));
        assert_eq!(parse_lease_time("2m"), Ok(120));
        assert_eq!(parse_lease_time("1d"), Ok(86400));
        assert!(matches!(
            parse_lease_time("60"),
            Err(ParseError::LeaseTooShort(_))
        ));
        for bad in ["", "h", "1x", "-1h", "1.5h", "é"] {
            assert!(
                matches!(parse_lease_time(bad), Err(ParseError::Lease(_))),
                "{bad}"
            );
        }
        assert!(parse_lease_time("99999999d").is_err());
    }

    #[test]
    fn expiry_times() {
        assert_eq!(parse_expiry_time(""), Ok(None));
        assert_eq!(parse_expiry_time("0001-01-01T00:00:00Z"), Ok(None));
        assert_eq!(
            parse_expiry_time("2030-01-02T03:04:05+02:00"),
            Ok(Some("2030-01-02T01:04:05Z".to_string()))
        );
        assert!(parse_expiry_time("tomorrow").is_err());
    }
}
