//! Byte sizes as LXD writes them: `limits.memory=512MiB`, `size=10GB`, and as `lxc` prints them.

use std::fmt;

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitsError {
    /// No number where one was expected.
    NotANumber(String),
    /// A suffix that is no unit.
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The suffix.
        unit: String,
    },
    /// Negative, or more than 64 bits hold.
    OutOfRange(String),
}

impl fmt::Display for UnitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitsError::NotANumber(s) => write!(
                f,
                "invalid size {s:?}: expected a number with an optional unit"
            ),
            UnitsError::UnknownUnit { input, unit } => {
                write!(f, "invalid size {input:?}: unknown unit {unit:?}")
            }
            UnitsError::OutOfRange(s) => write!(f, "invalid size {s:?}: out of range"),
        }
    }
}

impl std::error::Error for UnitsError {}

/// Parses a size as LXD's `ParseByteSizeString` does: a number and an optional unit, decimal
/// (`kB`, `MB` ... `EB`) or binary (`KiB` ... `EiB`), `B`, ` bytes` or none for bytes.
///
/// More lenient than LXD on purpose, as silo has always been: surrounding spaces, a fraction
/// (`1.5GiB`, LXD wants an integer) and `KB` for `kB` are taken. The one size LXD takes and this
/// refuses is `""` (0 to LXD): callers treat an empty key as unset before they get here.
pub fn parse_bytes(s: &str) -> Result<u64, UnitsError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| UnitsError::NotANumber(s.to_string()))?;
    let mult: f64 = match unit.trim() {
        "" | "B" | "bytes" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "PB" => 1e15,
        "EB" => 1e18,
        "KiB" => 1024.0,
        "MiB" => 1024f64.powi(2),
        "GiB" => 1024f64.powi(3),
        "TiB" => 1024f64.powi(4),
        "PiB" => 1024f64.powi(5),
        "EiB" => 1024f64.powi(6),
        u => {
            return Err(UnitsError::UnknownUnit {
                input: s.to_string(),
                unit: u.to_string(),
            })
        }
    };
    let v = num * mult;
    // u64::MAX as f64 rounds up to 2^64, which is itself out of range.
    if !v.is_finite() || v < 0.0 || v >= u64::MAX as f64 {
        return Err(UnitsError::OutOfRange(s.to_string()));
    }
    Ok(v as u64)
}

fn scaled(n: u64, base: f64, units: [&str; 6]) -> String {
    if (n as f64) < base {
        return format!("{n}B");
    }
    let mut v = n as f64;
    for unit in units {
        v /= base;
        if v < base {
            return format!("{v:.2}{unit}");
        }
    }
    format!("{v:.2}{}", units[5])
}

/// LXD's `GetByteSizeStringIEC(n, 2)`: 1024-based, "19.36GiB".
pub fn format_iec(n: u64) -> String {
    scaled(n, 1024.0, ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"])
}

/// LXD's `GetByteSizeString(n, 2)`: 1000-based, "12.30MB".
pub fn format_si(n: u64) -> String {
    scaled(n, 1000.0, ["kB", "MB", "GB", "TB", "PB", "EB"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_lxd_takes() {
        for (s, want) in [
            ("512MiB", 512 << 20),
            ("1GB", 1_000_000_000),
            ("4096", 4096),
            ("10B", 10),
            ("10 bytes", 10),
            ("2kB", 2000),
            ("3PB", 3_000_000_000_000_000),
            ("1EiB", 1 << 60),
            ("1GiB", 1 << 30),
        ] {
            assert_eq!(parse_bytes(s), Ok(want), "{s}");
        }
        // silo's own leniency beyond LXD.
        assert_eq!(parse_bytes(" 1.5KiB "), Ok(1536));
        assert_eq!(parse_bytes("1KB"), Ok(1000));
        // LXD reads "" as 0 bytes; silo's callers treat an empty key as unset before they get
        // here, and a pool's `size=""` must not become a 0-byte pool: refused, as before.
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn refuses_what_is_no_size() {
        assert!(matches!(
            parse_bytes("12XB"),
            Err(UnitsError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_bytes("lots"),
            Err(UnitsError::NotANumber(_))
        ));
        assert!(matches!(
            parse_bytes("100EiB"),
            Err(UnitsError::OutOfRange(_))
        ));
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("5 MiB MiB").is_err());
    }

    #[test]
    fn formats_as_lxc_prints() {
        assert_eq!(format_iec(12), "12B");
        assert_eq!(format_iec(1536), "1.50KiB");
        assert_eq!(format_iec(20_787_000_000), "19.36GiB");
        assert_eq!(format_si(999), "999B");
        assert_eq!(format_si(12_300_000), "12.30MB");
        assert_eq!(format_iec(u64::MAX), "16.00EiB");
    }
}
