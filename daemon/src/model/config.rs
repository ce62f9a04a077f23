//! The configuration keys silo takes, as tables in the way LXD keeps its schema
//! (`InstanceConfigKeysAny`/`InstanceConfigKeysContainer`): each key with its value type, whether
//! a change reaches a running instance, and a note; then the prefix rules and the keys silo
//! refuses with a reason. The server's keys (`PUT /1.0`) are a second table of the same shape.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::parse::{self, ParseError};

/// How a key's value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// LXD's booleans ([`parse::parse_bool`]).
    Bool,
    /// A whole number ≥ 0 ([`parse::parse_whole`]).
    Whole,
    /// `limits.memory` ([`parse::parse_memory`]).
    Memory,
    /// `limits.cpu` ([`parse::parse_cpu`]).
    Cpu,
    /// A snapshot schedule (cron or `@daily`...).
    Schedule,
    /// `snapshots.expiry` ([`parse::parse_snapshot_expiry`]).
    SnapshotExpiry,
    /// Any text: stored, passed on, or not used by silo yet.
    Text,
    /// `core.https_address` ([`parse_https_address`]).
    HttpsAddress,
    /// Hours as a whole number (0 disables).
    Hours,
    /// Days as a whole number.
    Days,
    /// `POOL/VOLUME`: the syntax is checked here, that the custom volume exists is the
    /// service's to check (against the database), and only when the value changes.
    CustomVolumeRef,
    /// A duration as LXD writes expiries (`1H 30M`; [`crate::model::trust::parse_expiry`]).
    Expiry,
    /// A secret: stored as [`crate::model::password::hash_password`]'s output, never as given.
    Secret,
    /// `limits.cpu.allowance` (`50%`, `25ms/100ms`).
    CpuAllowance,
    /// A priority 0 to 10 ([`crate::model::limits::parse_priority`]).
    Priority,
    /// `limits.memory.enforce`: `hard` or `soft`.
    MemoryEnforce,
    /// `limits.hugepages.*`: a byte size.
    HugePages,
    /// `raw.idmap` in LXD's syntax ([`silo_proto::privileged::parse_raw_idmap`]).
    RawIdmap,
}

/// One known key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The key.
    pub key: &'static str,
    /// Its value's type.
    pub kind: KeyType,
    /// Whether changing it on a running instance takes effect at once (cgroup limits do);
    /// other keys take effect at the next start.
    pub live: bool,
    /// What it is for, or what silo does (not) do with it.
    pub note: &'static str,
}

const fn key(key: &'static str, kind: KeyType, note: &'static str) -> KeySpec {
    KeySpec {
        key,
        kind,
        live: false,
        note,
    }
}

const fn live(key: &'static str, kind: KeyType, note: &'static str) -> KeySpec {
    KeySpec {
        key,
        kind,
        live: true,
        note,
    }
}

/// Instance (and profile) configuration keys silo knows, as LXD 5.0 names and parses them.
pub const INSTANCE_KEYS: &[KeySpec] = &[
    key(
        "boot.autostart",
        KeyType::Bool,
        "start with silod (unset: if it was running at shutdown)",
    ),
    key("boot.autostart.delay", KeyType::Whole, "stored"),
    key("boot.autostart.priority", KeyType::Whole, "stored"),
    key("boot.host_shutdown_timeout", KeyType::Whole, "stored"),
    key("boot.stop.priority", KeyType::Whole, "stored"),
    key(
        "cloud-init.network-config",
        KeyType::Text,
        "passed to the image",
    ),
    key("cloud-init.user-data", KeyType::Text, "passed to the image"),
    key(
        "cloud-init.vendor-data",
        KeyType::Text,
        "passed to the image",
    ),
    live(
        "limits.cpu",
        KeyType::Cpu,
        "cpuset: a count pins the first CPUs",
    ),
    live(
        "limits.cpu.allowance",
        KeyType::CpuAllowance,
        "cpu.shares/cpu.weight for a percentage, a CFS quota for a time (25ms/100ms)",
    ),
    live(
        "limits.cpu.priority",
        KeyType::Priority,
        "0-10: lowers the CPU weight by 10-priority, as LXD",
    ),
    live(
        "limits.disk.priority",
        KeyType::Priority,
        "0-10: blkio/io weight (priority × 100); refused where the host weighs no I/O",
    ),
    live(
        "limits.hugepages.64KB",
        KeyType::HugePages,
        "hugetlb limit; refused where the host lacks the size",
    ),
    live(
        "limits.hugepages.1MB",
        KeyType::HugePages,
        "hugetlb limit; refused where the host lacks the size",
    ),
    live(
        "limits.hugepages.2MB",
        KeyType::HugePages,
        "hugetlb limit; refused where the host lacks the size",
    ),
    live(
        "limits.hugepages.1GB",
        KeyType::HugePages,
        "hugetlb limit; refused where the host lacks the size",
    ),
    live(
        "limits.memory",
        KeyType::Memory,
        "memory.max: a size or a percentage of the host",
    ),
    live(
        "limits.memory.enforce",
        KeyType::MemoryEnforce,
        "soft: limits.memory becomes a soft limit (soft_limit_in_bytes / memory.high)",
    ),
    live(
        "limits.memory.swap",
        KeyType::Bool,
        "false: no swap (memsw limit = memory, swappiness 0 / swap.max 0)",
    ),
    live(
        "limits.memory.swap.priority",
        KeyType::Priority,
        "0-10: v1 swappiness 70-priority",
    ),
    live("limits.processes", KeyType::Whole, "pids.max"),
    key("linux.kernel_modules", KeyType::Text, "stored"),
    key(
        "raw.idmap",
        KeyType::RawIdmap,
        "host ids mapped in (next start), as the root policy's raw_idmap_host_ids allows",
    ),
    key(
        "security.idmap.base",
        KeyType::Text,
        "stored: silo-priv allocates id ranges itself",
    ),
    key(
        "security.devlxd",
        KeyType::Bool,
        "/dev/lxd/sock, the guest API (default true): refused at once when false, mounted or not at the next start",
    ),
    key(
        "security.devlxd.images",
        KeyType::Bool,
        "stored; silo serves no image export through /dev/lxd",
    ),
    key(
        "security.idmap.isolated",
        KeyType::Bool,
        "a range of its own",
    ),
    key(
        "security.idmap.size",
        KeyType::Whole,
        "ids of the instance's own range, in whole 65536-id blocks (when it is created)",
    ),
    key(
        "security.nesting",
        KeyType::Bool,
        "a fully visible proc and sysfs at /dev/.lxc for a container manager inside (next start)",
    ),
    key(
        "security.privileged",
        KeyType::Bool,
        "no user namespace, if the root policy allows it",
    ),
    key(
        "security.protection.delete",
        KeyType::Bool,
        "refuse deleting the instance",
    ),
    key("security.syscalls.deny_default", KeyType::Bool, "stored"),
    key(
        "snapshots.expiry",
        KeyType::SnapshotExpiry,
        "scheduled snapshots' lifetime",
    ),
    key(
        "snapshots.pattern",
        KeyType::Text,
        "scheduled snapshots' names",
    ),
    key(
        "snapshots.schedule",
        KeyType::Schedule,
        "when snapshots are taken",
    ),
    key(
        "snapshots.schedule.stopped",
        KeyType::Bool,
        "also snapshot stopped instances",
    ),
    key("user.user-data", KeyType::Text, "cloud-init's older name"),
];

/// Prefixes whose keys are free-form, as in LXD.
pub const FREE_PREFIXES: &[&str] = &["user.", "environment.", "image."];

/// Keys silo sets itself; a client may only send them back as they were (backups, copies).
pub const VOLATILE_PREFIX: &str = "volatile.";

/// Why a key LXD knows is refused.
pub const HOST_CONFINEMENT: &str =
    "not supported by silo: it would let the API shape host-level confinement";

/// Keys (a trailing `.` means a prefix) that LXD takes and silo refuses, with the reason.
pub const REFUSED_KEYS: &[(&str, &str)] = &[
    ("raw.", HOST_CONFINEMENT),
    ("security.syscalls.intercept.mount", HOST_CONFINEMENT),
];

/// Why a configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An instance or profile key.
    #[error("invalid config key {key:?}: {why}")]
    Instance {
        /// The key.
        key: String,
        /// Why.
        why: KeyError,
    },
    /// A server key nobody knows.
    #[error("unknown server configuration key {0:?}")]
    UnknownServerKey(String),
    /// A server key's value.
    #[error("invalid value for {key:?}: {why}")]
    ServerValue {
        /// The key.
        key: String,
        /// Why.
        why: KeyError,
    },
}

/// Why one key or value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a key silo (or LXD) knows.
    #[error("unknown configuration key")]
    Unknown,
    /// A key silo refuses on purpose.
    #[error("{0}")]
    Refused(&'static str),
    /// `volatile.*` from a client.
    #[error("volatile keys are set by silo")]
    Volatile,
    /// The value does not parse.
    #[error(transparent)]
    Value(#[from] ParseError),
    /// A schedule, https address or volume reference that does not parse.
    #[error("{0}")]
    Syntax(String),
}

/// The table entry for an instance key, if it has one.
pub fn instance_key(k: &str) -> Option<&'static KeySpec> {
    INSTANCE_KEYS.iter().find(|s| s.key == k)
}

/// Whether a change of `k` takes effect on a running instance without a restart.
pub fn is_live(k: &str) -> bool {
    instance_key(k).is_some_and(|s| s.live)
}

impl KeyType {
    /// Parses a value of this type, giving only whether it is valid.
    pub fn check(self, v: &str) -> Result<(), KeyError> {
        match self {
            KeyType::Bool => parse::parse_bool(v).map(|_| ())?,
            KeyType::Whole => parse::parse_whole(v).map(|_| ())?,
            KeyType::Memory => parse::parse_memory(v).map(|_| ())?,
            KeyType::Cpu => parse::parse_cpu(v).map(|_| ())?,
            KeyType::Schedule => crate::model::schedule::Schedule::parse(v)
                .map(|_| ())
                .map_err(KeyError::Syntax)?,
            KeyType::SnapshotExpiry => parse::parse_snapshot_expiry(v).map(|_| ())?,
            KeyType::Text | KeyType::Secret => {}
            KeyType::HttpsAddress => parse_https_address(v)
                .map(|_| ())
                .map_err(KeyError::Syntax)?,
            KeyType::Hours => parse::parse_count(v, "hours").map(|_| ())?,
            KeyType::Expiry => crate::model::trust::parse_expiry(v)
                .map(|_| ())
                .map_err(KeyError::Syntax)?,
            KeyType::Days => parse::parse_count(v, "days").map(|_| ())?,
            KeyType::CustomVolumeRef => parse_custom_volume_ref(v)
                .map(|_| ())
                .map_err(KeyError::Syntax)?,
            KeyType::CpuAllowance => {
                silo_proto::privileged::CpuAllowance::parse(v)
                    .map(|_| ())
                    .map_err(KeyError::Syntax)?;
            }
            KeyType::Priority => crate::model::limits::parse_priority(v)
                .map(|_| ())
                .map_err(KeyError::Syntax)?,
            KeyType::MemoryEnforce => crate::model::limits::parse_memory_enforce(v)
                .map(|_| ())
                .map_err(KeyError::Syntax)?,
            KeyType::HugePages => crate::model::limits::parse_hugepages(v)
                .map(|_| ())
                .map_err(KeyError::Syntax)?,
            KeyType::RawIdmap => silo_proto::privileged::parse_raw_idmap(v)
                .map(|_| ())
                .map_err(|e| KeyError::Syntax(format!("{e} (LXD's syntax: lines \"uid|gid|both <host id> <instance id>\", ranges as 1000-1002)")))?,
        }
        Ok(())
    }
}

/// Checks one instance (or profile) key and value; `allow_volatile` for records silo wrote
/// itself (imports, copies).
pub fn check_instance_key(k: &str, v: &str, allow_volatile: bool) -> Result<(), KeyError> {
    if let Some(spec) = instance_key(k) {
        return spec.kind.check(v);
    }
    if let Some((_, why)) = REFUSED_KEYS
        .iter()
        .find(|(r, _)| *r == k || (r.ends_with('.') && k.starts_with(r)))
    {
        return Err(KeyError::Refused(why));
    }
    if FREE_PREFIXES.iter().any(|p| k.starts_with(p)) {
        return Ok(());
    }
    if k.starts_with(VOLATILE_PREFIX) {
        return if allow_volatile {
            Ok(())
        } else {
            Err(KeyError::Volatile)
        };
    }
    Err(KeyError::Unknown)
}

/// Checks a whole instance or profile config map.
pub fn check_instance_config(
    cfg: &BTreeMap<String, String>,
    allow_volatile: bool,
) -> Result<(), ConfigError> {
    for (k, v) in cfg {
        check_instance_key(k, v, allow_volatile).map_err(|why| ConfigError::Instance {
            key: k.clone(),
            why,
        })?;
    }
    Ok(())
}

// ---- the server's keys ----

/// The key whose value is a secret: stored hashed, shown as `true`.
pub const TRUST_PASSWORD: &str = "core.trust_password";

/// LXD's switch that opens `/1.0/metrics` to untrusted callers when false.
pub const METRICS_AUTHENTICATION: &str = "core.metrics_authentication";

/// Server configuration keys silod knows, as LXD 5.0 names and parses them.
pub const SERVER_KEYS: &[KeySpec] = &[
    key(
        "core.https_address",
        KeyType::HttpsAddress,
        "where silod serves the API over TLS (rebinds at once when changed)",
    ),
    key(
        METRICS_AUTHENTICATION,
        KeyType::Bool,
        "whether GET /1.0/metrics needs a trusted or metrics certificate (default true)",
    ),
    key(
        "core.remote_token_expiry",
        KeyType::Expiry,
        "how long a certificate add token lasts (default 1d)",
    ),
    key(
        "cluster.offline_threshold",
        KeyType::Whole,
        "seconds without a heartbeat before a member is OFFLINE (default 20, at least 10)",
    ),
    key(
        "cluster.join_token_expiry",
        KeyType::Expiry,
        "how long a cluster join token lasts (default 3H)",
    ),
    key(
        TRUST_PASSWORD,
        KeyType::Secret,
        "checked (verify_password) when an untrusted TLS client adds its certificate",
    ),
    key(
        "images.auto_update_interval",
        KeyType::Hours,
        "hours between refreshes of auto-updated images, 0 disables; read at each pass",
    ),
    key(
        "images.auto_update_cached",
        KeyType::Bool,
        "whether images cached to create an instance are auto-updated",
    ),
    key(
        "images.remote_cache_expiry",
        KeyType::Days,
        "days an unused cached image is kept, 0 keeps them",
    ),
    key(
        "storage.images_volume",
        KeyType::CustomVolumeRef,
        "custom volume holding images",
    ),
    key(
        "storage.backups_volume",
        KeyType::CustomVolumeRef,
        "custom volume holding backups",
    ),
];

/// The table entry for a server key.
pub fn server_key(k: &str) -> Result<&'static KeySpec, ConfigError> {
    SERVER_KEYS
        .iter()
        .find(|s| s.key == k)
        .ok_or_else(|| ConfigError::UnknownServerKey(k.to_string()))
}

/// Checks a server key's (non-empty) value on its own; for [`KeyType::CustomVolumeRef`] the
/// service then checks the volume exists, and for [`KeyType::Secret`] it stores the hash.
pub fn check_server_value(k: &str, v: &str) -> Result<&'static KeySpec, ConfigError> {
    let spec = server_key(k)?;
    spec.kind.check(v).map_err(|why| ConfigError::ServerValue {
        key: k.to_string(),
        why,
    })?;
    Ok(spec)
}

/// `POOL/VOLUME` as the storage keys name a custom volume.
pub fn parse_custom_volume_ref(v: &str) -> Result<(&str, &str), String> {
    v.split_once('/')
        .filter(|(p, vol)| !p.is_empty() && !vol.is_empty() && !vol.contains('/'))
        .ok_or_else(|| format!("{v:?} is not POOL/VOLUME"))
}

/// LXD's port for `core.https_address` when it names none.
pub const DEFAULT_HTTPS_PORT: u16 = 8443;

/// Parses `core.https_address` as LXD takes it: `[host]:port`, `host`, `:port`; the host an IP
/// literal (IPv6 in brackets when a port follows) or empty for every address.
pub fn parse_https_address(v: &str) -> Result<(Option<IpAddr>, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("port {p:?} is not a number"));
        }
        match p.parse::<u16>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("port {p} is outside 1-65535")),
        }
    };
    if let Some(rest) = v.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{v:?} has no ']' after the IPv6 address"))?;
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        let p = match after {
            "" => DEFAULT_HTTPS_PORT,
            a => port(
                a.strip_prefix(':')
                    .ok_or_else(|| format!("expected ':PORT' after ']', got {a:?}"))?,
            )?,
        };
        return Ok((Some(IpAddr::V6(ip)), p));
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok((Some(ip), DEFAULT_HTTPS_PORT));
    }
    if let Some(p) = v.strip_prefix(':') {
        return Ok((None, port(p)?));
    }
    let Some((host, p)) = v.rsplit_once(':') else {
        return Err(format!(
            "{v:?} is not an IP address (host names are not accepted)"
        ));
    };
    if host.parse::<Ipv6Addr>().is_ok() || host.contains(':') {
        return Err(format!(
            "{v:?}: an IPv6 address followed by a port goes in brackets, as in [::1]:8443"
        ));
    }
    let ip: Ipv4Addr = host
        .parse()
        .map_err(|_| format!("{host:?} is not an IP address (host names are not accepted)"))?;
    Ok((Some(IpAddr::V4(ip)), port(p)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(k: &str, v: &str) -> String {
        check_instance_key(k, v, false)
            .expect_err(&format!("{k}={v} accepted"))
            .to_string()
    }

    #[test]
    fn table_has_no_duplicates_and_notes() {
        for table in [INSTANCE_KEYS, SERVER_KEYS] {
            for (i, a) in table.iter().enumerate() {
                assert!(!a.note.is_empty(), "{}", a.key);
                assert!(table[..i].iter().all(|b| b.key != a.key), "{} twice", a.key);
            }
        }
        let live: Vec<&str> = INSTANCE_KEYS
            .iter()
            .filter(|s| s.live)
            .map(|s| s.key)
            .collect();
        assert_eq!(
            live,
            [
                "limits.cpu",
                "limits.cpu.allowance",
                "limits.cpu.priority",
                "limits.disk.priority",
                "limits.hugepages.64KB",
                "limits.hugepages.1MB",
                "limits.hugepages.2MB",
                "limits.hugepages.1GB",
                "limits.memory",
                "limits.memory.enforce",
                "limits.memory.swap",
                "limits.memory.swap.priority",
                "limits.processes"
            ]
        );
        assert!(is_live("limits.memory") && !is_live("boot.autostart") && !is_live("user.x"));
    }

    #[test]
    fn instance_keys_accept_what_they_did() {
        for (k, v) in [
            ("boot.autostart", "true"),
            ("boot.autostart", "OFF"),
            ("security.privileged", "1"),
            ("limits.memory", "512MiB"),
            ("limits.memory", "50%"),
            ("limits.cpu", "2"),
            ("limits.cpu", "0-1"),
            ("limits.cpu", "0,2"),
            ("limits.processes", "100"),
            ("limits.cpu.allowance", "50%"),
            ("limits.cpu.allowance", "25ms/100ms"),
            ("limits.cpu.priority", "0"),
            ("limits.memory.enforce", "soft"),
            ("limits.memory.swap", "false"),
            ("limits.memory.swap.priority", "10"),
            ("limits.hugepages.2MB", "64MiB"),
            ("limits.disk.priority", "5"),
            ("boot.autostart.delay", "0"),
            ("snapshots.schedule", "@daily"),
            ("snapshots.schedule", "0 6 * * *"),
            ("snapshots.expiry", "1w 2d"),
            ("snapshots.pattern", "snap%d"),
            ("cloud-init.user-data", "#cloud-config\n"),
            ("user.anything", "x"),
            ("environment.FOO", "bar"),
            ("image.os", "debian"),
        ] {
            assert_eq!(check_instance_key(k, v, false), Ok(()), "{k}={v}");
        }
        assert_eq!(
            check_instance_key("volatile.eth0.hwaddr", "x", true),
            Ok(())
        );
    }

    #[test]
    fn instance_keys_refuse_with_reasons() {
        assert_eq!(err("no.such", "1"), "unknown configuration key");
        assert_eq!(err("boot", "1"), "unknown configuration key");
        assert!(err("boot.autostart", "maybe").contains("is not a boolean"));
        assert!(err("limits.memory", "1MiB").contains("below 4MiB"));
        assert!(err("limits.memory", "0%").contains("percentage"));
        assert!(err("limits.cpu", "0").contains("CPU"));
        assert!(err("limits.cpu", "3-1").contains("CPU"));
        assert!(err("limits.processes", "-1").contains("whole number"));
        assert!(err("limits.cpu.allowance", "101%").contains("between 1% and 100%"));
        assert!(err("limits.cpu.priority", "11").contains("between 0 and 10"));
        assert!(err("limits.memory.enforce", "x").contains("neither hard nor soft"));
        assert!(err("limits.memory.swap", "x").contains("is not a boolean"));
        assert!(err("limits.hugepages.2MB", "x").contains("\"x\""));
        assert!(err("raw.idmap", "both 0 1000").contains("host root"));
        assert!(err("raw.idmap", "uid 1000").contains("LXD's syntax"));
        assert_eq!(
            check_instance_key("raw.idmap", "both 1000 1000", false),
            Ok(())
        );
        assert!(err("snapshots.expiry", "1x").contains("unit"));
        assert!(!err("snapshots.schedule", "whenever").is_empty());
        for k in [
            "raw.lxc",
            "raw.apparmor",
            "raw.seccomp",
            "raw.qemu",
            "security.syscalls.intercept.mount",
        ] {
            assert!(err(k, "x").contains("not supported by silo"), "{k}");
        }
        assert_eq!(
            err("volatile.eth0.hwaddr", "x"),
            "volatile keys are set by silo"
        );
        let mut cfg = BTreeMap::new();
        cfg.insert("user.ok".to_string(), "1".to_string());
        cfg.insert("raw.lxc".to_string(), "x".to_string());
        assert_eq!(
            check_instance_config(&cfg, true)
                .expect_err("raw")
                .to_string(),
            format!("invalid config key \"raw.lxc\": {HOST_CONFINEMENT}")
        );
        cfg.remove("raw.lxc");
        assert_eq!(check_instance_config(&cfg, false), Ok(()));
    }

    #[test]
    fn server_keys() {
        for (k, v) in [
            ("core.https_address", "[::]:8443"),
            ("core.trust_password", "anything"),
            ("images.auto_update_interval", "0"),
            ("images.auto_update_cached", "false"),
            ("images.remote_cache_expiry", "10"),
            ("storage.images_volume", "default/imgs"),
        ] {
            assert!(check_server_value(k, v).is_ok(), "{k}={v}");
        }
        assert_eq!(
            check_server_value("storage.backups_volume", "p/v")
                .expect("ok")
                .kind,
            KeyType::CustomVolumeRef
        );
        assert_eq!(
            check_server_value(TRUST_PASSWORD, "x").expect("ok").kind,
            KeyType::Secret
        );
        for (k, v) in [
            ("core.https_address", "localhost:8443"),
            ("images.auto_update_interval", "-1"),
            ("images.auto_update_interval", "soon"),
            ("images.auto_update_cached", "maybe"),
            ("images.remote_cache_expiry", "1.5"),
            ("storage.images_volume", "default"),
        ] {
            let e = check_server_value(k, v).expect_err(k).to_string();
            assert!(e.starts_with(&format!("invalid value for {k:?}: ")), "{e}");
        }
        assert_eq!(
            check_server_value("no.such.key", "1")
                .expect_err("unknown")
                .to_string(),
            "unknown server configuration key \"no.such.key\""
        );
        assert!(check_server_value("images.auto_update_cached", "2")
            .expect_err("bool")
            .to_string()
            .contains("(true/false, 1/0, yes/no, on/off)"));
    }

    #[test]
    fn custom_volume_refs() {
        assert_eq!(
            parse_custom_volume_ref("default/imgs"),
            Ok(("default", "imgs"))
        );
        for bad in ["default", "/imgs", "default/", "default/imgs/x", ""] {
            assert!(
                parse_custom_volume_ref(bad)
                    .expect_err(bad)
                    .contains("POOL/VOLUME"),
                "{bad}"
            );
        }
    }

    #[test]
    fn https_address_forms() {
        let v6 = |s: &str| Some(IpAddr::V6(s.parse().expect("v6")));
        let v4 = |s: &str| Some(IpAddr::V4(s.parse().expect("v4")));
        for (given, want) in [
            ("[::]:8443", (v6("::"), 8443)),
            ("[::1]:1", (v6("::1"), 1)),
            ("[fd00::1]", (v6("fd00::1"), 8443)),
            ("::", (v6("::"), 8443)),
            ("::1", (v6("::1"), 8443)),
            ("10.0.0.1", (v4("10.0.0.1"), 8443)),
            ("10.0.0.1:65535", (v4("10.0.0.1"), 65535)),
            ("0.0.0.0:9443", (v4("0.0.0.0"), 9443)),
            (":8443", (None, 8443)),
            (":1", (None, 1)),
        ] {
            assert_eq!(parse_https_address(given), Ok(want), "{given}");
        }
        for bad in [
            ":",
            ":0",
            ":65536",
            ":+1",
            ":-1",
            ":https",
            "[::1]:",
            "[::1]:0",
            "[::1]x",
            "[::1",
            "[10.0.0.1]:80",
            "[]:80",
            "::1:8443:",
            "fe80::1:x",
            "localhost",
            "localhost:8443",
            "example.com:8443",
            "10.0.0.256",
            "10.0.0.1:",
            "10.0.0.1:99999",
            "fe80::1%eth0",
            " 10.0.0.1",
        ] {
            assert!(parse_https_address(bad).is_err(), "{bad} accepted");
        }
        let e = parse_https_address("localhost").expect_err("host name");
        assert!(e.contains("host names"), "{e}");
    }
}
