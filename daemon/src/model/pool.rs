//! A storage pool's record and its custom volumes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A pool record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pool {
    /// Name.
    pub name: String,
    /// "dir".
    pub driver: String,
    /// Description.
    pub description: String,
    /// Config.
    pub config: BTreeMap<String, String>,
}

/// A custom volume: (name, description, config).
pub type CustomVolume = (String, String, BTreeMap<String, String>);

/// A snapshot of a custom volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeSnapshot {
    /// The volume's pool.
    pub pool: String,
    /// The volume.
    pub volume: String,
    /// The snapshot's own name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, or empty for never.
    pub expires_at: String,
    /// Description.
    pub description: String,
    /// The volume's config when it was taken.
    pub config: BTreeMap<String, String>,
}

/// Why a custom volume's config is refused (LXD 5.0's rules for custom filesystem volumes on
/// dir and btrfs pools, with its wording where it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeConfigError {
    /// A key LXD does not take for these volumes.
    #[error("Invalid option for volume {volume:?} option {key:?}")]
    Unknown {
        /// The volume.
        volume: String,
        /// The key.
        key: String,
    },
    /// A block-backed driver's key on a filesystem volume.
    #[error(
        "Invalid option for volume {volume:?} option {key:?}: only volumes of block-backed \
         drivers (lvm, zfs volumes, ceph) have it; {driver} volumes are directories of the \
         pool's own filesystem"
    )]
    BlockOnly {
        /// The volume.
        volume: String,
        /// The key.
        key: String,
        /// The pool's driver.
        driver: String,
    },
    /// A value that does not parse.
    #[error("Invalid value for volume {volume:?} option {key:?}: {why}")]
    Value {
        /// The volume.
        volume: String,
        /// The key.
        key: String,
        /// Why.
        why: String,
    },
    /// `size` on a pool whose driver cannot enforce it.
    #[error(
        "Invalid value for volume {volume:?} option \"size\": the dir driver cannot enforce \
         size on custom volumes (use a btrfs pool for a quota)"
    )]
    SizeOnDir {
        /// The volume.
        volume: String,
    },
}

/// The byte limit `size` sets (0: none).
pub fn volume_size(config: &BTreeMap<String, String>) -> u64 {
    config
        .get("size")
        .and_then(|s| crate::model::parse::parse_size(s).ok())
        .unwrap_or(0)
}

/// Checks a custom volume's config for a pool of `driver` ("dir" or "btrfs").
pub fn check_volume_config(
    volume: &str,
    driver: &str,
    config: &BTreeMap<String, String>,
) -> Result<(), VolumeConfigError> {
    use crate::model::parse;
    for (k, v) in config {
        let value = |why: String| VolumeConfigError::Value {
            volume: volume.to_string(),
            key: k.clone(),
            why,
        };
        match k.as_str() {
            "size" => {
                if v.is_empty() {
                    continue;
                }
                let n = parse::parse_size(v).map_err(|e| value(e.to_string()))?;
                if n > 0 && driver != "btrfs" {
                    return Err(VolumeConfigError::SizeOnDir {
                        volume: volume.to_string(),
                    });
                }
            }
            "snapshots.expiry" => {
                if !v.is_empty() {
                    parse::parse_snapshot_expiry(v).map_err(|e| value(e.to_string()))?;
                }
            }
            "snapshots.schedule" => {
                if !v.is_empty() {
                    crate::model::schedule::Schedule::parse(v).map_err(value)?;
                }
            }
            "security.shifted" | "security.unmapped" => {
                if !v.is_empty() {
                    parse::parse_bool(v).map_err(|e| value(e.to_string()))?;
                }
            }
            "snapshots.pattern" | "volatile.idmap.last" | "volatile.idmap.next" => {}
            "block.filesystem" | "block.mount_options" => {
                return Err(VolumeConfigError::BlockOnly {
                    volume: volume.to_string(),
                    key: k.clone(),
                    driver: driver.to_string(),
                })
            }
            k if k.starts_with("user.") => {}
            _ => {
                return Err(VolumeConfigError::Unknown {
                    volume: volume.to_string(),
                    key: k.clone(),
                })
            }
        }
    }
    Ok(())
}

/// Checks a volume snapshot's name: it names a directory, so letters, digits, `-`, `_` and
/// `.`, 1 to 63 characters, not starting with `.` or `-` (LXD forbids `/`).
pub fn check_snapshot_name(s: &str) -> Result<(), String> {
    let bad = |why: &str| format!("invalid snapshot name {s:?}: {why}");
    if s.is_empty() {
        return Err(bad("must not be empty"));
    }
    if s.contains('/') {
        return Err(bad("must not contain '/'"));
    }
    if s.len() > 63 {
        return Err(bad("must be at most 63 characters"));
    }
    if s.starts_with(['.', '-']) {
        return Err(bad("must not start with '.' or '-'"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(bad(&format!(
            "must only contain letters, digits, '-', '_' and '.', found {c:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn volume_keys_as_lxd_takes_them() {
        let ok = cfg(&[
            ("snapshots.expiry", "1d"),
            ("snapshots.schedule", "@daily"),
            ("snapshots.pattern", "s%d"),
            ("security.shifted", "true"),
            ("security.unmapped", "false"),
            ("user.anything", "x"),
        ]);
        assert_eq!(check_volume_config("v", "dir", &ok), Ok(()));
        assert_eq!(
            check_volume_config("v", "btrfs", &cfg(&[("size", "64MiB")])),
            Ok(())
        );
        assert_eq!(volume_size(&cfg(&[("size", "64MiB")])), 64 << 20);
        let e = check_volume_config("v", "dir", &cfg(&[("bogus", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid option for volume \"v\" option \"bogus\""
        );
        let e = check_volume_config("v", "dir", &cfg(&[("size", "1GiB")])).unwrap_err();
        assert!(
            e.to_string().contains("dir driver cannot enforce size"),
            "{e}"
        );
        let e =
            check_volume_config("v", "btrfs", &cfg(&[("block.filesystem", "ext4")])).unwrap_err();
        assert!(e.to_string().contains("\"block.filesystem\""), "{e}");
        assert!(e.to_string().contains("block-backed"), "{e}");
        assert!(check_snapshot_name("snap0").is_ok());
        for bad in ["", "a/b", ".x", "-x", "a b", &"x".repeat(64)] {
            assert!(check_snapshot_name(bad).is_err(), "{bad:?}");
        }
        for bad in [
            ("size", "lots"),
            ("snapshots.expiry", "3x"),
            ("security.shifted", "maybe"),
        ] {
            let e = check_volume_config("v", "btrfs", &cfg(&[bad])).unwrap_err();
            assert!(e.to_string().contains(bad.0), "{e}");
        }
    }
}
