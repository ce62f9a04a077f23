//! silod's records rendered as LXD's API objects (`silo_api`): the one place the wire shape of
//! an instance, snapshot, backup, profile, network, pool or image is decided. The service layer
//! hands over records and what goes with them (expanded config, `used_by`, state); nothing
//! below `api/` knows the JSON.

use std::collections::BTreeMap;

use silo_api::StringMap;
use silo_proto::net::LinkState;
use silo_proto::privileged::InstanceStats;

use crate::service::backups::Backup;
use crate::service::images::{Alias, Image};
use crate::service::instances::Instance;
use crate::service::networks::Network;
use crate::service::profiles::{Device, Profile};
use crate::service::snapshots::Snapshot;
use crate::service::storage::Pool;

/// Config and devices with the profiles applied.
pub type Expanded = (StringMap, BTreeMap<String, Device>);

fn or_zero_time(t: &str, zero: &str) -> String {
    if t.is_empty() {
        zero.to_string()
    } else {
        t.to_string()
    }
}

/// An instance; `status` is ("Running", 103) or ("Stopped", 102).
pub fn instance(i: &Instance, (ec, ed): Expanded, status: (&str, i64)) -> silo_api::Instance {
    silo_api::Instance {
        architecture: i.architecture.clone(),
        config: i.config.clone(),
        devices: i.devices.clone(),
        ephemeral: i.ephemeral,
        profiles: i.profiles.clone(),
        stateful: i.stateful,
        description: i.description.clone(),
        created_at: i.created_at.clone(),
        expanded_config: ec,
        expanded_devices: ed,
        name: i.name.clone(),
        status: status.0.to_string(),
        status_code: status.1,
        last_used_at: or_zero_time(&i.last_used_at, "1970-01-01T00:00:00Z"),
        location: crate::service::host::location(),
        kind: i.kind.clone(),
        project: "default".into(),
        restore: String::new(),
    }
}

/// An instance with its state, snapshots and backups (`recursion=2`, `instance_get_full`).
pub fn instance_full(
    i: silo_api::Instance,
    state: Option<silo_api::InstanceState>,
    snapshots: Vec<silo_api::InstanceSnapshot>,
    backups: Vec<silo_api::InstanceBackup>,
) -> silo_api::InstanceFull {
    silo_api::InstanceFull {
        architecture: i.architecture,
        config: i.config,
        devices: i.devices,
        ephemeral: i.ephemeral,
        profiles: i.profiles,
        stateful: i.stateful,
        description: i.description,
        created_at: i.created_at,
        expanded_config: i.expanded_config,
        expanded_devices: i.expanded_devices,
        name: i.name,
        status: i.status,
        status_code: i.status_code,
        last_used_at: i.last_used_at,
        location: i.location,
        kind: i.kind,
        project: i.project,
        restore: i.restore,
        state: Some(state.unwrap_or_else(stopped_state)),
        snapshots,
        backups,
    }
}

/// The state of a stopped instance.
pub fn stopped_state() -> silo_api::InstanceState {
    silo_api::InstanceState {
        status: "Stopped".into(),
        status_code: 102,
        ..Default::default()
    }
}

fn n(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The state of a running instance from silo-priv's counters; `disk` is the root volume's use.
pub fn running_state(s: &InstanceStats, disk: Option<u64>) -> silo_api::InstanceState {
    let network = s
        .net
        .iter()
        .map(|c| {
            let iface = silo_api::InstanceStateNetwork {
                addresses: c
                    .addresses
                    .iter()
                    .map(
                        |(family, address, mask, scope)| silo_api::InstanceStateNetworkAddress {
                            family: family.clone(),
                            address: address.clone(),
                            netmask: mask.to_string(),
                            scope: scope.clone(),
                        },
                    )
                    .collect(),
                counters: silo_api::InstanceStateNetworkCounters {
                    bytes_received: n(c.rx_bytes),
                    bytes_sent: n(c.tx_bytes),
                    packets_received: n(c.rx_packets),
                    packets_sent: n(c.tx_packets),
                    errors_received: n(c.rx_errors),
                    errors_sent: n(c.tx_errors),
                    packets_dropped_inbound: n(c.rx_dropped),
                    packets_dropped_outbound: n(c.tx_dropped),
                },
                hwaddr: c.hwaddr.clone(),
                host_name: String::new(),
                mtu: n(c.mtu),
                state: c.state.clone(),
                kind: if c.name == "lo" {
                    "loopback"
                } else {
                    "broadcast"
                }
                .into(),
            };
            (c.name.clone(), iface)
        })
        .collect();
    silo_api::InstanceState {
        status: "Running".into(),
        status_code: 103,
        disk: disk
            .map(|u| {
                BTreeMap::from([(
                    "root".to_string(),
                    silo_api::InstanceStateDisk {
                        usage: n(u),
                        total: 0,
                    },
                )])
            })
            .unwrap_or_default(),
        memory: silo_api::InstanceStateMemory {
            usage: n(s.memory),
            usage_peak: n(s.memory_peak),
            swap_usage: n(s.swap),
            swap_usage_peak: 0,
            total: 0,
        },
        network: Some(network),
        pid: i64::from(s.pid),
        processes: n(s.processes),
        cpu: silo_api::InstanceStateCPU { usage: n(s.cpu_ns) },
    }
}

/// A snapshot.
pub fn snapshot(s: &Snapshot, (ec, ed): Expanded) -> silo_api::InstanceSnapshot {
    silo_api::InstanceSnapshot {
        architecture: s.architecture.clone(),
        config: s.config.clone(),
        created_at: s.created_at.clone(),
        description: s.description.clone(),
        devices: s.devices.clone(),
        ephemeral: false,
        expanded_config: ec,
        expanded_devices: ed,
        expires_at: or_zero_time(&s.expires_at, silo_api::ZERO_TIME),
        last_used_at: silo_api::ZERO_TIME.into(),
        name: s.name.clone(),
        profiles: s.profiles.clone(),
        stateful: false,
        size: -1,
    }
}

/// A backup.
pub fn backup(b: &Backup) -> silo_api::InstanceBackup {
    silo_api::InstanceBackup {
        name: b.name.clone(),
        created_at: b.created_at.clone(),
        expires_at: or_zero_time(&b.expires_at, silo_api::ZERO_TIME),
        instance_only: b.instance_only,
        container_only: b.instance_only,
        optimized_storage: b.optimized,
    }
}

/// A profile.
pub fn profile(p: &Profile, used_by: Vec<String>) -> silo_api::Profile {
    silo_api::Profile {
        name: p.name.clone(),
        description: p.description.clone(),
        config: p.config.clone(),
        devices: p.devices.clone(),
        used_by,
    }
}

/// A managed network.
pub fn network(n: &Network, used_by: Vec<String>) -> silo_api::Network {
    silo_api::Network {
        name: n.name.clone(),
        description: n.description.clone(),
        kind: n.kind.clone(),
        managed: true,
        status: "Created".into(),
        config: n.config.clone(),
        used_by,
        locations: vec![crate::service::host::location()],
    }
}

/// A host interface silo does not manage, as LXD lists it.
pub fn unmanaged_network(l: &LinkState) -> silo_api::Network {
    let kind = match l.kind.as_str() {
        "" if l.link_type == "loopback" => "loopback",
        "" => "physical",
        "bridge" => "bridge",
        "bond" => "bond",
        "vlan" => "vlan",
        _ => "unknown",
    };
    silo_api::Network {
        name: l.name.as_str().to_string(),
        kind: kind.into(),
        managed: false,
        locations: vec![crate::service::host::location()],
        ..Default::default()
    }
}

/// A network's state.
pub fn network_state(l: &LinkState) -> silo_api::NetworkState {
    silo_api::NetworkState {
        addresses: l
            .addresses
            .iter()
            .map(|a| silo_api::NetworkStateAddress {
                family: if a.address.is_ipv4() { "inet" } else { "inet6" }.into(),
                address: a.address.to_string(),
                netmask: a.prefix.to_string(),
                scope: a.scope.clone(),
            })
            .collect(),
        counters: silo_api::NetworkStateCounters {
            bytes_received: n(l.counters[0]),
            bytes_sent: n(l.counters[1]),
            packets_received: n(l.counters[2]),
            packets_sent: n(l.counters[3]),
        },
        hwaddr: l.hwaddr.clone(),
        mtu: i64::from(l.mtu),
        state: if l.up { "up" } else { "down" }.into(),
        kind: l.link_type.clone(),
        bond: None,
        bridge: (l.kind == "bridge").then(|| silo_api::NetworkStateBridge {
            id: String::new(),
            stp: false,
            forward_delay: 1500,
            vlan_default: 1,
            vlan_filtering: false,
            upper_devices: l.ports.clone(),
        }),
        vlan: None,
        ovn: None,
    }
}

/// A storage pool.
pub fn pool(p: &Pool, used_by: Vec<String>) -> silo_api::StoragePool {
    silo_api::StoragePool {
        name: p.name.clone(),
        driver: p.driver.clone(),
        description: p.description.clone(),
        config: p.config.clone(),
        status: "Created".into(),
        locations: vec![crate::service::host::location()],
        used_by,
    }
}

/// A storage volume (silo's volumes are all filesystems on the one host).
pub fn volume(
    kind: &str,
    name: &str,
    description: &str,
    config: StringMap,
    used_by: Vec<String>,
) -> silo_api::StorageVolume {
    silo_api::StorageVolume {
        name: name.into(),
        kind: kind.into(),
        content_type: "filesystem".into(),
        config,
        description: description.into(),
        location: crate::service::host::location(),
        // Every volume is in the one project silo has, named as LXD names it.
        project: "default".into(),
        used_by,
        ..Default::default()
    }
}

/// A custom volume's snapshot: `full` names it `<volume>/<snapshot>` with a null
/// `expires_at` when it has none (a listing), else by its own name with Go's zero time (a
/// single GET), as LXD answers each.
pub fn volume_snapshot(
    s: &crate::model::pool::VolumeSnapshot,
    full: bool,
) -> silo_api::StorageVolumeSnapshot {
    let expires_at = match (s.expires_at.is_empty(), full) {
        (false, _) => Some(s.expires_at.clone()),
        (true, true) => None,
        (true, false) => Some(silo_api::ZERO_TIME.to_string()),
    };
    silo_api::StorageVolumeSnapshot {
        name: if full {
            format!("{}/{}", s.volume, s.name)
        } else {
            s.name.clone()
        },
        description: s.description.clone(),
        config: s.config.clone(),
        content_type: "filesystem".into(),
        created_at: s.created_at.clone(),
        expires_at,
    }
}

/// A custom volume's backup.
pub fn volume_backup(b: &crate::model::backup::VolumeBackup) -> silo_api::StoragePoolVolumeBackup {
    silo_api::StoragePoolVolumeBackup {
        name: b.name.clone(),
        created_at: b.created_at.clone(),
        expires_at: or_zero_time(&b.expires_at, silo_api::ZERO_TIME),
        volume_only: b.volume_only,
        optimized_storage: false,
    }
}

/// An image alias.
pub fn alias(a: &Alias) -> silo_api::ImageAliasesEntry {
    silo_api::ImageAliasesEntry {
        name: a.name.clone(),
        target: a.target.clone(),
        description: a.description.clone(),
        kind: "container".into(),
    }
}

/// An image with the aliases that point at it.
pub fn image(i: &Image, aliases: &[Alias]) -> silo_api::Image {
    silo_api::Image {
        aliases: aliases
            .iter()
            .filter(|a| a.target == i.fingerprint)
            .map(|a| silo_api::ImageAlias {
                name: a.name.clone(),
                description: a.description.clone(),
            })
            .collect(),
        architecture: i.architecture.clone(),
        auto_update: i.auto_update,
        cached: i.cached,
        created_at: i.created_at.clone(),
        expires_at: i.expires_at.clone(),
        filename: i.filename.clone(),
        fingerprint: i.fingerprint.clone(),
        last_used_at: or_zero_time(&i.last_used_at, silo_api::ZERO_TIME),
        profiles: i.profiles.clone(),
        properties: i.properties.clone(),
        public: i.public,
        size: n(i.size),
        kind: i.kind.clone(),
        uploaded_at: i.uploaded_at.clone(),
        update_source: i.update_source.as_ref().map(|s| silo_api::ImageSource {
            alias: s.alias.clone(),
            certificate: s.certificate.clone(),
            protocol: s.protocol.clone(),
            server: s.server.clone(),
            image_type: s.image_type.clone(),
        }),
    }
}
