//! Validated names that cross the privilege boundary.
//!
//! Every name is checked when it is built *and* when it is deserialized, so a helper never
//! holds an `InstanceName` that could climb out of a directory or overflow an interface name.
//! A daemon that sends a malformed name breaks the protocol: the helper's decoder refuses the
//! frame, logs what it refused and closes the channel (the monitor idea from OpenSSH).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    /// What kind of name it was meant to be ("instance name", "interface name", ...).
    pub kind: String,
    /// The refused value, truncated to 80 characters so a hostile peer cannot flood logs.
    pub value: String,
    /// The rule it broke.
    pub reason: String,
}

impl NameError {
    fn new(kind: &str, value: &str, reason: impl Into<String>) -> Self {
        let value: String = value.chars().take(80).collect();
        NameError {
            kind: kind.to_string(),
            value,
            reason: reason.into(),
        }
    }
}

/// LXD's rule for instance names: a valid hostname label (RFC 1123), 1 to 63 characters,
/// letters, digits and dashes, not starting with a digit or dash, not ending with a dash.
fn check_hostname_label(kind: &str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::new(kind, s, "must not be empty"));
    }
    if s.len() > 63 {
        return Err(NameError::new(kind, s, "must be at most 63 characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(NameError::new(
            kind,
            s,
            format!("must only contain letters, digits and dashes, found {c:?}"),
        ));
    }
    let first = s.as_bytes()[0];
    if first.is_ascii_digit() || first == b'-' {
        return Err(NameError::new(
            kind,
            s,
            "must not start with a digit or a dash",
        ));
    }
    if s.ends_with('-') {
        return Err(NameError::new(kind, s, "must not end with a dash"));
    }
    Ok(())
}

/// A name that is used as one path component: letters, digits, `-`, `_` and `.`,
/// 1 to 64 characters, not `.` or `..`, not starting with `.` or `-`.
fn check_component(kind: &str, s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::new(kind, s, "must not be empty"));
    }
    if s.len() > max {
        return Err(NameError::new(
            kind,
            s,
            format!("must be at most {max} characters"),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::new(
            kind,
            s,
            format!("must only contain letters, digits, '-', '_' and '.', found {c:?}"),
        ));
    }
    if s.starts_with('.') || s.starts_with('-') {
        return Err(NameError::new(kind, s, "must not start with '.' or '-'"));
    }
    Ok(())
}

/// Linux interface names: 1 to 15 bytes (IFNAMSIZ - 1), no '/', ':' or whitespace, not `.`/`..`.
fn check_ifname(kind: &str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::new(kind, s, "must not be empty"));
    }
    if s.len() > 15 {
        return Err(NameError::new(kind, s, "must be at most 15 characters"));
    }
    if s == "." || s == ".." {
        return Err(NameError::new(kind, s, "must not be '.' or '..'"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::new(
            kind,
            s,
            format!("must only contain letters, digits, '-', '_' and '.', found {c:?}"),
        ));
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal, |$s:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What this name is called in error messages.
            pub const KIND: &'static str = $kind;

            /// Checks `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let $s: String = s.into();
                $check?;
                Ok($name($s))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $name::new(s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

validated_name!(
    /// An instance name, as LXD validates it (a hostname label).
    InstanceName,
    "instance name",
    |s| check_hostname_label(InstanceName::KIND, &s)
);

validated_name!(
    /// A storage pool name; used as a directory name beneath the state dir.
    PoolName,
    "storage pool name",
    |s| check_component(PoolName::KIND, &s, 64)
);

validated_name!(
    /// A storage volume name; used as a directory name beneath a pool.
    VolumeName,
    "storage volume name",
    |s| check_component(VolumeName::KIND, &s, 128)
);

validated_name!(
    /// A network interface name on the host (bridge, veth end, parent).
    IfName,
    "interface name",
    |s| check_ifname(IfName::KIND, &s)
);

validated_name!(
    /// A device name in an instance's or profile's devices (`eth0`, `root`, `web`).
    DeviceName,
    "device name",
    |s| check_component(DeviceName::KIND, &s, 64)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_follow_lxd() {
        for ok in ["c1", "web-01", "a", &"x".repeat(63)] {
            assert!(InstanceName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "a/b",
            "../x",
            &"x".repeat(64),
            "é",
        ] {
            let err = InstanceName::new(bad).unwrap_err();
            assert_eq!(err.kind, "instance name", "{bad}");
        }
    }

    #[test]
    fn component_names_cannot_climb() {
        for bad in ["..", ".", "a/b", "/abs", ".hidden", "-x", "a\0b", ""] {
            assert!(PoolName::new(bad).is_err(), "{bad:?}");
            assert!(VolumeName::new(bad).is_err(), "{bad:?}");
        }
        assert!(PoolName::new("default").is_ok());
        assert!(VolumeName::new("c1.snap-0_x").is_ok());
    }

    #[test]
    fn interface_names_fit_ifnamsiz() {
        assert!(IfName::new("silobr0").is_ok());
        assert!(IfName::new("a234567890123456").is_err());
        assert!(IfName::new("a b").is_err());
        assert!(IfName::new("..").is_err());
        assert!(IfName::new("eth0:1").is_err());
    }

    #[test]
    fn deserializing_validates() {
        let bad: Result<InstanceName, _> = serde_json::from_str("\"../etc\"");
        let msg = bad.unwrap_err().to_string();
        assert!(msg.contains("invalid instance name"), "{msg}");
        let good: InstanceName = serde_json::from_str("\"c1\"").expect("valid");
        assert_eq!(good.as_str(), "c1");
    }
}

/// An image fingerprint: the sha256 LXD computes, as 64 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageFingerprint(String);

impl ImageFingerprint {
    /// Checks `s` (64 lower-case hex digits) and wraps it.
    pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
        let s: String = s.into();
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(NameError::new(
                "image fingerprint",
                &s,
                "must be 64 lower-case hex digits (a sha256)",
            ));
        }
        Ok(ImageFingerprint(s))
    }

    /// As a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ImageFingerprint {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        ImageFingerprint::new(s)
    }
}

impl From<ImageFingerprint> for String {
    fn from(f: ImageFingerprint) -> String {
        f.0
    }
}

impl fmt::Display for ImageFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ImageFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageFingerprint({})", &self.0[..12.min(self.0.len())])
    }
}
