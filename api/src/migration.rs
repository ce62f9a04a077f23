//! LXD's migration protocol, as LXD 5.0 speaks it between hosts.
//!
//! Two websockets join the source and the target of a copy: `control` carries protobuf
//! messages (one per binary websocket message, the schema beside this file in
//! `migrate.proto`, LXD's `lxd/migration/migrate.proto`), and `fs` carries the data, as a
//! sequence of streams each ended by an empty text message. The order is:
//!
//! 1. source → target: [`MigrationHeader`], the offer (filesystem type, rsync features,
//!    snapshots with their configs, the on-disk id map);
//! 2. target → source: [`MigrationHeader`], the answer (the type and features both have, the
//!    snapshots it wants);
//! 3. on `fs`: the index header ([`MigrationInfo`] one way, [`MigrationInfoResponse`] back),
//!    then one rsync stream per snapshot, oldest first, then the instance's;
//! 4. target → source: [`MigrationControl`] `success: true` once everything is in place, or
//!    either side's `success: false` with the reason at any time.
//!
//! The messages are proto2 with `required` fields: prost encodes them always but does not
//! check them when decoding, so [`MigrationHeader::check`] does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the volumes travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MigrationFsType {
    /// rsync (what every LXD host understands).
    Rsync = 0,
    /// btrfs send streams.
    Btrfs = 1,
    /// zfs send streams.
    Zfs = 2,
    /// Ceph RBD.
    Rbd = 3,
    /// Block volumes (VMs) with rsync for the config.
    BlockAndRsync = 4,
}

/// How a running instance's state travels (silo has no CRIU: only `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuType {
    /// CRIU images over rsync.
    CriuRsync = 0,
    /// P.Haul.
    Phaul = 1,
    /// A running instance copied without its state (a second, final rsync pass follows).
    None = 2,
}

/// One id map entry: on-disk `hostid..hostid+maprange` are the instance's `nsid..`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdMapType {
    /// Applies to uids.
    #[prost(bool, required, tag = "1")]
    pub isuid: bool,
    /// Applies to gids.
    #[prost(bool, required, tag = "2")]
    pub isgid: bool,
    /// First on-disk id.
    #[prost(int32, required, tag = "3")]
    pub hostid: i32,
    /// First id inside.
    #[prost(int32, required, tag = "4")]
    pub nsid: i32,
    /// How many.
    #[prost(int32, required, tag = "5")]
    pub maprange: i32,
}

/// A config key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Config {
    /// Key.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// A device.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    /// Device name.
    #[prost(string, required, tag = "1")]
    pub name: String,
    /// Its keys.
    #[prost(message, repeated, tag = "2")]
    pub config: Vec<Config>,
}

/// A snapshot as the header lists it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    /// Its name (without the instance's).
    #[prost(string, required, tag = "1")]
    pub name: String,
    /// Its own config.
    #[prost(message, repeated, tag = "2")]
    pub local_config: Vec<Config>,
    /// Its profiles.
    #[prost(string, repeated, tag = "3")]
    pub profiles: Vec<String>,
    /// Ephemeral.
    #[prost(bool, required, tag = "4")]
    pub ephemeral: bool,
    /// Its own devices.
    #[prost(message, repeated, tag = "5")]
    pub local_devices: Vec<Device>,
    /// LXD's architecture number (x86_64 is 2).
    #[prost(int32, required, tag = "6")]
    pub architecture: i32,
    /// Whether it holds state.
    #[prost(bool, required, tag = "7")]
    pub stateful: bool,
    /// Unix seconds.
    #[prost(int64, optional, tag = "8")]
    pub creation_date: Option<i64>,
    /// Unix seconds.
    #[prost(int64, optional, tag = "9")]
    pub last_used_date: Option<i64>,
    /// Unix seconds (Go's zero time when it has none).
    #[prost(int64, optional, tag = "10")]
    pub expiry_date: Option<i64>,
}

/// rsync's options.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct RsyncFeatures {
    /// `--xattrs`.
    #[prost(bool, optional, tag = "1")]
    pub xattrs: Option<bool>,
    /// `--delete`.
    #[prost(bool, optional, tag = "2")]
    pub delete: Option<bool>,
    /// `--compress`.
    #[prost(bool, optional, tag = "3")]
    pub compress: Option<bool>,
    /// Set by hosts that negotiate features (LXD ≥ 4.x): without it, the three above are on.
    #[prost(bool, optional, tag = "4")]
    pub bidirectional: Option<bool>,
}

/// zfs options (never offered by silo, decoded to be ignored).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct ZfsFeatures {
    /// Compressed streams.
    #[prost(bool, optional, tag = "1")]
    pub compress: Option<bool>,
    /// A header before the streams.
    #[prost(bool, optional, tag = "2")]
    pub migration_header: Option<bool>,
}

/// btrfs options.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct BtrfsFeatures {
    /// A JSON header listing the subvolumes before the streams.
    #[prost(bool, optional, tag = "1")]
    pub migration_header: Option<bool>,
    /// Nested subvolumes in that header.
    #[prost(bool, optional, tag = "2")]
    pub header_subvolumes: Option<bool>,
    /// Subvolume UUIDs in it (for refresh).
    #[prost(bool, optional, tag = "3")]
    pub header_subvolume_uuids: Option<bool>,
}

/// The offer and its answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrationHeader {
    /// How the volumes travel.
    #[prost(enumeration = "MigrationFsType", required, tag = "1")]
    pub fs: i32,
    /// How state travels; unset for a stopped instance.
    #[prost(enumeration = "CriuType", optional, tag = "2")]
    pub criu: Option<i32>,
    /// The on-disk id map of the source's volume (empty: ids are the instance's own).
    #[prost(message, repeated, tag = "3")]
    pub idmap: Vec<IdMapType>,
    /// Snapshot names, oldest first.
    #[prost(string, repeated, tag = "4")]
    pub snapshot_names: Vec<String>,
    /// The snapshots, in the same order.
    #[prost(message, repeated, tag = "5")]
    pub snapshots: Vec<Snapshot>,
    /// CRIU pre-dumps.
    #[prost(bool, optional, tag = "7")]
    pub predump: Option<bool>,
    /// rsync's options.
    #[prost(message, optional, tag = "8")]
    pub rsync_features: Option<RsyncFeatures>,
    /// Update an existing copy.
    #[prost(bool, optional, tag = "9")]
    pub refresh: Option<bool>,
    /// zfs's options.
    #[prost(message, optional, tag = "10")]
    pub zfs_features: Option<ZfsFeatures>,
    /// A VM's block volume size.
    #[prost(int64, optional, tag = "11")]
    pub volume_size: Option<i64>,
    /// btrfs's options.
    #[prost(message, optional, tag = "12")]
    pub btrfs_features: Option<BtrfsFeatures>,
    /// Version of the JSON index header sent first on `fs` (0: none).
    #[prost(uint32, optional, tag = "13")]
    pub index_header_version: Option<u32>,
}

/// The last word on `control`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrationControl {
    /// Whether it worked.
    #[prost(bool, required, tag = "1")]
    pub success: bool,
    /// Why not.
    #[prost(string, optional, tag = "2")]
    pub message: Option<String>,
}

/// The index header version silo speaks (LXD 5.0's `migration.IndexHeaderVersion`).
pub const INDEX_HEADER_VERSION: u32 = 1;

/// At most this many snapshots in a header.
pub const MAX_SNAPSHOTS: usize = 1024;

/// LXD's number for x86_64 in `Snapshot.architecture` (`shared/osarch`).
pub fn architecture_id(name: &str) -> i32 {
    match name {
        "i686" => 1,
        "x86_64" => 2,
        "armv7l" | "armv6l" | "armv8l" => 3,
        "aarch64" => 4,
        "ppc" => 5,
        "ppc64" => 6,
        "ppc64le" => 7,
        "s390x" => 8,
        "mips" => 9,
        "mips64" => 10,
        "riscv32" => 11,
        "riscv64" => 12,
        _ => 0,
    }
}

/// The architecture name for LXD's number.
pub fn architecture_name(id: i32) -> Option<&'static str> {
    Some(match id {
        1 => "i686",
        2 => "x86_64",
        3 => "armv7l",
        4 => "aarch64",
        5 => "ppc",
        6 => "ppc64",
        7 => "ppc64le",
        8 => "s390x",
        9 => "mips",
        10 => "mips64",
        11 => "riscv32",
        12 => "riscv64",
        _ => return None,
    })
}

/// A header that breaks the protocol's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError(pub String);

impl std::error::Error for HeaderError {}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "migration header: {}", self.0)
    }
}

impl MigrationHeader {
    /// The filesystem type, if known.
    pub fn fs_type(&self) -> Option<MigrationFsType> {
        MigrationFsType::try_from(self.fs).ok()
    }

    /// The rsync features as both ends apply them: a peer that does not negotiate
    /// (no `bidirectional`) has xattrs, delete and compress on.
    pub fn rsync_options(&self) -> (bool, bool, bool) {
        match self.rsync_features {
            Some(f) if f.bidirectional == Some(true) => (
                f.xattrs.unwrap_or(false),
                f.delete.unwrap_or(false),
                f.compress.unwrap_or(false),
            ),
            _ => (true, true, true),
        }
    }

    /// Checks what proto2 and LXD require of a header a peer sent: names and snapshots
    /// agree, names are plain and unique, bounded counts, a known filesystem type.
    pub fn check(&self) -> Result<(), HeaderError> {
        if self.fs_type().is_none() {
            return Err(HeaderError(format!("unknown filesystem type {}", self.fs)));
        }
        if self.snapshot_names.len() > MAX_SNAPSHOTS || self.snapshots.len() > MAX_SNAPSHOTS {
            return Err(HeaderError(format!("more than {MAX_SNAPSHOTS} snapshots")));
        }
        if self.snapshot_names.len() != self.snapshots.len() {
            return Err(HeaderError(format!(
                "{} snapshot names but {} snapshots",
                self.snapshot_names.len(),
                self.snapshots.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (n, s) in self.snapshot_names.iter().zip(&self.snapshots) {
            if n != &s.name {
                return Err(HeaderError(format!(
                    "snapshot name {n:?} does not match its entry {:?}",
                    s.name
                )));
            }
            if n.is_empty() || n.len() > 128 || n.contains('/') || n == "." || n == ".." {
                return Err(HeaderError(format!("bad snapshot name {n:?}")));
            }
            if !seen.insert(n.as_str()) {
                return Err(HeaderError(format!("snapshot {n:?} listed twice")));
            }
        }
        if self.idmap.len() > 64 {
            return Err(HeaderError("more than 64 id map entries".into()));
        }
        for m in &self.idmap {
            if m.hostid < 0 || m.nsid < 0 || m.maprange <= 0 {
                return Err(HeaderError(format!(
                    "bad id map entry {}:{}:{}",
                    m.hostid, m.nsid, m.maprange
                )));
            }
        }
        Ok(())
    }
}

impl Snapshot {
    /// Its config as a map.
    pub fn config_map(&self) -> BTreeMap<String, String> {
        self.local_config
            .iter()
            .map(|c| (c.key.clone(), c.value.clone()))
            .collect()
    }

    /// Its devices as LXD's map of maps.
    pub fn device_map(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.local_devices
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    d.config
                        .iter()
                        .map(|c| (c.key.clone(), c.value.clone()))
                        .collect(),
                )
            })
            .collect()
    }
}

/// `Config` entries from a map, sorted by key.
pub fn config_list(m: &BTreeMap<String, String>) -> Vec<Config> {
    m.iter()
        .map(|(k, v)| Config {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// `Device` entries from LXD's map of maps.
pub fn device_list(m: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Device> {
    m.iter()
        .map(|(n, c)| Device {
            name: n.clone(),
            config: config_list(c),
        })
        .collect()
}

/// What the target answers to an offer: rsync (the type every host has) with the features
/// both sides have, the index header version both speak, and the snapshots it wants (all of
/// them, or for a refresh only `wanted`).
pub fn answer_offer(
    offer: &MigrationHeader,
    ours: RsyncFeatures,
    refresh: bool,
    wanted: Option<&[String]>,
) -> MigrationHeader {
    let (x, d, c) = offer.rsync_options();
    let features = RsyncFeatures {
        xattrs: Some(x && ours.xattrs.unwrap_or(false)),
        delete: Some(d && ours.delete.unwrap_or(false)),
        compress: Some(c && ours.compress.unwrap_or(false)),
        bidirectional: Some(offer.rsync_features.and_then(|f| f.bidirectional) == Some(true)),
    };
    let (names, snaps): (Vec<String>, Vec<Snapshot>) = offer
        .snapshot_names
        .iter()
        .zip(&offer.snapshots)
        .filter(|(n, _)| wanted.is_none_or(|w| w.contains(n)))
        .map(|(n, s)| (n.clone(), s.clone()))
        .unzip();
    MigrationHeader {
        fs: MigrationFsType::Rsync as i32,
        criu: offer.criu.filter(|c| *c == CriuType::None as i32),
        idmap: Vec::new(),
        snapshot_names: names,
        snapshots: snaps,
        predump: Some(false),
        rsync_features: Some(features),
        refresh: Some(refresh),
        zfs_features: None,
        volume_size: None,
        btrfs_features: None,
        index_header_version: Some(
            offer
                .index_header_version
                .unwrap_or(0)
                .min(INDEX_HEADER_VERSION),
        ),
    }
}

/// The btrfs features silo offers: the migration header (listing the subvolumes) and nested
/// subvolumes in it. Not `header_subvolume_uuids`: silo refreshes with rsync, so a refresh
/// never negotiates btrfs (LXD's `MatchTypes` needs the UUIDs for that).
pub fn our_btrfs() -> BtrfsFeatures {
    BtrfsFeatures {
        migration_header: Some(true),
        header_subvolumes: Some(true),
        header_subvolume_uuids: None,
    }
}

/// Makes `answer` (from [`answer_offer`]) a btrfs answer when LXD's `MatchTypes` would: the
/// offer is btrfs, the target's pool is btrfs (`pool_btrfs`), and it is not a refresh nor a
/// running source's two passes (`criu: NONE`; LXD refuses those with btrfs streams). Nested
/// subvolumes are not accepted (silo's receiver makes plain volumes), so a source with some
/// fails instead of losing them.
pub fn answer_btrfs(offer: &MigrationHeader, answer: &mut MigrationHeader, pool_btrfs: bool) {
    let wanted = pool_btrfs
        && offer.fs_type() == Some(MigrationFsType::Btrfs)
        && offer.refresh != Some(true)
        && answer.refresh != Some(true)
        && offer.criu != Some(CriuType::None as i32);
    if !wanted {
        return;
    }
    let offered = offer.btrfs_features.unwrap_or_default();
    answer.fs = MigrationFsType::Btrfs as i32;
    answer.btrfs_features = Some(BtrfsFeatures {
        migration_header: Some(offered.migration_header == Some(true)),
        header_subvolumes: Some(false),
        header_subvolume_uuids: None,
    });
}

/// LXD's btrfs migration header (`BTRFSMetaDataHeader`), sent after the index header when
/// `migration_header` was negotiated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BtrfsHeader {
    /// The subvolumes, snapshots oldest first, the volume's own last.
    pub subvolumes: Vec<BtrfsSubvolume>,
}

/// One subvolume of a [`BtrfsHeader`] (LXD's `BTRFSSubVolume`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BtrfsSubvolume {
    /// Where in the volume ("/": the volume itself).
    pub path: String,
    /// The snapshot it belongs to ("" for the volume).
    pub snapshot: String,
    /// Read-only.
    pub readonly: bool,
    /// Its UUID (for refresh; silo leaves it empty).
    pub uuid: String,
}

/// The JSON index header the source sends first on `fs` (LXD's `migration.Info`): the
/// instance's backup config. LXD's config struct has YAML tags only, so its JSON keys are the
/// Go field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MigrationInfo {
    /// The backup config.
    #[serde(rename = "Config")]
    pub config: Option<InfoConfig>,
}

/// LXD's `backup.Config`, as far as a migration reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InfoConfig {
    /// The instance.
    #[serde(rename = "Container")]
    pub container: Option<serde_json::Value>,
    /// Its snapshots.
    #[serde(rename = "Snapshots")]
    pub snapshots: Vec<serde_json::Value>,
    /// Its pool.
    #[serde(rename = "Pool")]
    pub pool: Option<serde_json::Value>,
    /// Its profiles.
    #[serde(rename = "Profiles")]
    pub profiles: Vec<serde_json::Value>,
    /// Its root volume.
    #[serde(rename = "Volume")]
    pub volume: Option<serde_json::Value>,
    /// Its root volume's snapshots.
    #[serde(rename = "VolumeSnapshots")]
    pub volume_snapshots: Vec<serde_json::Value>,
}

/// The target's answer to the index header (LXD's `migration.InfoResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MigrationInfoResponse {
    /// 200 when the target goes on.
    #[serde(rename = "StatusCode")]
    pub status_code: i64,
    /// Why not.
    #[serde(rename = "Error")]
    pub error: String,
    /// Whether the target refreshes an existing copy.
    #[serde(rename = "Refresh")]
    pub refresh: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn offer() -> MigrationHeader {
        MigrationHeader {
            fs: MigrationFsType::Rsync as i32,
            criu: None,
            idmap: vec![IdMapType {
                isuid: true,
                isgid: false,
                hostid: 1_000_000,
                nsid: 0,
                maprange: 65536,
            }],
            snapshot_names: vec!["snap0".into(), "snap1".into()],
            snapshots: ["snap0", "snap1"]
                .iter()
                .map(|n| Snapshot {
                    name: (*n).into(),
                    local_config: vec![Config {
                        key: "limits.cpu".into(),
                        value: "1".into(),
                    }],
                    profiles: vec!["default".into()],
                    ephemeral: false,
                    local_devices: vec![],
                    architecture: 2,
                    stateful: false,
                    creation_date: Some(1_700_000_000),
                    last_used_date: Some(-62_135_596_800),
                    expiry_date: Some(-62_135_596_800),
                })
                .collect(),
            predump: Some(false),
            rsync_features: Some(RsyncFeatures {
                xattrs: Some(true),
                delete: Some(true),
                compress: Some(true),
                bidirectional: Some(true),
            }),
            refresh: None,
            zfs_features: None,
            volume_size: None,
            btrfs_features: None,
            index_header_version: Some(1),
        }
    }

    #[test]
    fn a_header_survives_the_wire_and_required_fields_are_always_encoded() {
        let h = offer();
        let bytes = h.encode_to_vec();
        assert_eq!(MigrationHeader::decode(bytes.as_slice()).unwrap(), h);
        // proto2 required bool false is still on the wire: tag 1 varint 0 of MigrationControl.
        let c = MigrationControl {
            success: false,
            message: None,
        };
        assert_eq!(c.encode_to_vec(), vec![0x08, 0x00]);
        // fs=RSYNC (0) is encoded too, as LXD's Go decoder requires.
        let minimal = MigrationHeader {
            fs: 0,
            ..Default::default()
        };
        assert_eq!(minimal.encode_to_vec(), vec![0x08, 0x00]);
    }

    #[test]
    fn decodes_lxd_style_bytes_written_by_hand() {
        // fs=0, criu=NONE(2), snapshotNames="s", snapshots{name="s",ephemeral=false,
        // architecture=2,stateful=false}, rsyncFeatures{xattrs,delete,compress,bidirectional},
        // indexHeaderVersion=1.
        let bytes: Vec<u8> = vec![
            0x08, 0x00, 0x10, 0x02, 0x22, 0x01, b's', 0x2a, 0x09, 0x0a, 0x01, b's', 0x20, 0x00,
            0x30, 0x02, 0x38, 0x00, 0x42, 0x08, 0x08, 0x01, 0x10, 0x01, 0x18, 0x01, 0x20, 0x01,
            0x68, 0x01,
        ];
        let h = MigrationHeader::decode(bytes.as_slice()).unwrap();
        assert_eq!(h.fs_type(), Some(MigrationFsType::Rsync));
        assert_eq!(h.criu, Some(CriuType::None as i32));
        assert_eq!(h.snapshot_names, vec!["s".to_string()]);
        assert_eq!(h.snapshots[0].architecture, 2);
        assert_eq!(h.rsync_options(), (true, true, true));
        assert_eq!(h.index_header_version, Some(1));
        h.check().unwrap();
    }

    #[test]
    fn check_refuses_headers_that_break_the_rules() {
        let mut h = offer();
        h.snapshot_names.push("snap9".into());
        assert!(h.check().unwrap_err().0.contains("3 snapshot names but 2"));
        let mut h = offer();
        h.snapshot_names[1] = "snap0".into();
        h.snapshots[1].name = "snap0".into();
        assert!(h.check().unwrap_err().0.contains("twice"));
        let mut h = offer();
        h.snapshot_names[0] = "../x".into();
        h.snapshots[0].name = "../x".into();
        assert!(h.check().unwrap_err().0.contains("bad snapshot name"));
        let mut h = offer();
        h.fs = 42;
        assert!(h.check().is_err());
        offer().check().unwrap();
    }

    #[test]
    fn the_answer_keeps_common_features_and_wanted_snapshots() {
        let mut o = offer();
        o.rsync_features = Some(RsyncFeatures {
            xattrs: Some(true),
            delete: Some(false),
            compress: Some(true),
            bidirectional: Some(true),
        });
        let ours = RsyncFeatures {
            xattrs: Some(true),
            delete: Some(true),
            compress: Some(false),
            bidirectional: Some(true),
        };
        let a = answer_offer(&o, ours, true, Some(&["snap1".to_string()]));
        assert_eq!(a.rsync_options(), (true, false, false));
        assert_eq!(a.snapshot_names, vec!["snap1".to_string()]);
        assert_eq!(a.refresh, Some(true));
        assert_eq!(a.index_header_version, Some(1));
        // An old peer without bidirectional: everything on, and the answer says so too.
        o.rsync_features = None;
        let a = answer_offer(&o, ours, false, None);
        assert_eq!(a.snapshot_names.len(), 2);
        assert_eq!(a.rsync_options(), (true, true, true));
    }

    #[test]
    fn btrfs_is_answered_only_as_lxd_matches_it() {
        let mut o = offer();
        o.fs = MigrationFsType::Btrfs as i32;
        o.btrfs_features = Some(BtrfsFeatures {
            migration_header: Some(true),
            header_subvolumes: Some(true),
            header_subvolume_uuids: Some(true),
        });
        let mut a = answer_offer(&o, RsyncFeatures::default(), false, None);
        answer_btrfs(&o, &mut a, true);
        assert_eq!(a.fs_type(), Some(MigrationFsType::Btrfs));
        let f = a.btrfs_features.unwrap();
        assert_eq!(f.migration_header, Some(true));
        assert_eq!(f.header_subvolumes, Some(false));
        // A dir pool, a refresh, a running source: rsync.
        let mut a = answer_offer(&o, RsyncFeatures::default(), false, None);
        answer_btrfs(&o, &mut a, false);
        assert_eq!(a.fs_type(), Some(MigrationFsType::Rsync));
        let mut a = answer_offer(&o, RsyncFeatures::default(), true, None);
        answer_btrfs(&o, &mut a, true);
        assert_eq!(a.fs_type(), Some(MigrationFsType::Rsync));
        o.criu = Some(CriuType::None as i32);
        let mut a = answer_offer(&o, RsyncFeatures::default(), false, None);
        answer_btrfs(&o, &mut a, true);
        assert_eq!(a.fs_type(), Some(MigrationFsType::Rsync));
        // An rsync offer stays rsync.
        let o = offer();
        let mut a = answer_offer(&o, RsyncFeatures::default(), false, None);
        answer_btrfs(&o, &mut a, true);
        assert_eq!(a.fs_type(), Some(MigrationFsType::Rsync));
        let h: BtrfsHeader = serde_json::from_str(
            r#"{"subvolumes":[{"path":"/","snapshot":"s0","readonly":true,"uuid":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(h.subvolumes[0].snapshot, "s0");
    }

    #[test]
    fn the_index_header_uses_go_field_names() {
        let i = MigrationInfo {
            config: Some(InfoConfig {
                container: Some(serde_json::json!({"name": "c1"})),
                ..Default::default()
            }),
        };
        let s = serde_json::to_string(&i).unwrap();
        assert!(
            s.contains("\"Config\":{\"Container\":{\"name\":\"c1\"}"),
            "{s}"
        );
        let r: MigrationInfoResponse =
            serde_json::from_str(r#"{"StatusCode":200,"Error":"","Refresh":false}"#).unwrap();
        assert_eq!(r.status_code, 200);
    }
}
