//! `silo network ...`: networks, and attaching instances and profiles to them, as LXD 5.0's
//! `lxc network` does it.

use std::fmt::Write as _;

use clap::Subcommand;
use serde_json::Value;
use silo_api::{
    lenient, DeviceMap, Network, NetworkLease, NetworkPost, NetworkPut, NetworkState, NetworksPost,
    StringMap,
};

use crate::client::Client;
use crate::commands::CmdError;
use crate::config::{change_instance, insert_device};
use crate::format::{self, Format};
use crate::profiles::change_profile;
use crate::util::{self, fail, out, outln};

/// `silo network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Attach network interfaces to instances.
    #[command(long_about = "Attach new network interfaces to instances.\n\n\
        The device is named after the network unless DEVICE is given; the interface inside \
        the instance is named after the device unless INTERFACE is given.")]
    Attach {
        /// The network.
        network: String,
        /// The instance.
        instance: String,
        /// The device's name (default: the network's).
        device: Option<String>,
        /// The interface's name in the instance (default: the device's).
        interface: Option<String>,
    },
    /// Attach network interfaces to profiles.
    AttachProfile {
        /// The network.
        network: String,
        /// The profile.
        profile: String,
        /// The device's name (default: the network's).
        device: Option<String>,
        /// The interface's name in the instances (default: the device's).
        interface: Option<String>,
    },
    /// Create new networks.
    #[command(
        after_help = "Example: silo network create silobr1 ipv4.address=10.0.5.1/24 ipv6.address=none"
    )]
    Create {
        /// The network.
        network: String,
        /// Configuration keys.
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Network type.
        #[arg(short = 't', long = "type", value_name = "TYPE", default_value = "bridge",
              value_parser = ["bridge", "macvlan", "physical", "sriov", "ovn"])]
        kind: String,
        /// Its description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete networks.
    #[command(alias = "rm")]
    Delete {
        /// The networks.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Detach network interfaces from instances.
    Detach {
        /// The network.
        network: String,
        /// The instance.
        instance: String,
        /// The device (needed when several of the instance's devices use the network).
        device: Option<String>,
    },
    /// Detach network interfaces from profiles.
    DetachProfile {
        /// The network.
        network: String,
        /// The profile.
        profile: String,
        /// The device (needed when several of the profile's devices use the network).
        device: Option<String>,
    },
    /// Edit network configurations as YAML ($EDITOR, or YAML on stdin).
    Edit {
        /// The network.
        network: String,
    },
    /// Get values for network configuration keys.
    Get {
        /// The network.
        network: String,
        /// The key.
        key: String,
    },
    /// Get runtime information on networks.
    Info {
        /// The network.
        network: String,
    },
    /// List available networks.
    #[command(alias = "ls")]
    List {
        /// `REMOTE:` to list on another server.
        #[arg(value_name = "REMOTE:")]
        remote: Option<String>,
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List DHCP leases.
    ListLeases {
        /// The network.
        network: String,
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Rename networks.
    #[command(alias = "mv")]
    Rename {
        /// The current name.
        old: String,
        /// The new name.
        new: String,
    },
    /// Set network configuration keys: NETWORK KEY=VALUE..., or NETWORK KEY VALUE.
    #[command(
        long_about = "Set network configuration keys.\n\n\
            For backward compatibility, a single configuration key may still be set with:\n    \
            silo network set NETWORK KEY VALUE",
        after_help = "Example: silo network set silobr0 ipv4.nat=false ipv6.address=none"
    )]
    Set {
        /// The network.
        network: String,
        /// KEY=VALUE..., or KEY VALUE.
        #[arg(required = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Show network configurations.
    Show {
        /// The network.
        network: String,
    },
    /// Unset network configuration keys.
    Unset {
        /// The network.
        network: String,
        /// The key.
        key: String,
    },
}

const NETWORK_EDIT_HELP: &str = "\
### This is a YAML representation of the network.
### Any line starting with a '# will be ignored.
###
### A network consists of a set of configuration items.
###
### An example would look like:
### name: lxdbr0
### config:
###   ipv4.address: 10.62.42.1/24
###   ipv4.nat: true
###   ipv6.address: fd00:56ad:9f7a:9800::1/64
###   ipv6.nat: true
### managed: true
### type: bridge
###
### Note that only the configuration can be changed.";

/// The fields of a network in the order lxc prints them (Go's `api.Network`).
const NETWORK_KEYS: &[&str] = &[
    "config",
    "description",
    "name",
    "type",
    "used_by",
    "managed",
    "status",
    "locations",
];

/// A network as lxc prints it: `used_by` sorted.
fn normalized(n: &Network) -> Value {
    let mut n = n.clone();
    n.used_by.sort();
    serde_json::to_value(n).unwrap_or_default()
}

fn require_managed(n: &Network) -> Result<(), CmdError> {
    if n.managed {
        Ok(())
    } else {
        fail("Only managed networks can be modified")
    }
}

/// The rows of `network list`: loopback and unknown interfaces are left out, as lxc does.
fn list_rows(networks: &[Network]) -> Vec<Vec<String>> {
    let cfg = |n: &Network, k: &str| n.config.get(k).cloned().unwrap_or_default();
    let mut rows: Vec<Vec<String>> = networks
        .iter()
        .filter(|n| !matches!(n.kind.as_str(), "loopback" | "unknown"))
        .map(|n| {
            vec![
                n.name.clone(),
                n.kind.clone(),
                if n.managed { "YES" } else { "NO" }.to_string(),
                cfg(n, "ipv4.address"),
                cfg(n, "ipv6.address"),
                n.description.clone(),
                n.used_by.len().to_string(),
                n.status.to_uppercase(),
            ]
        })
        .collect();
    util::sort_rows(&mut rows);
    rows
}

const LIST_HEADERS: &[&str] = &[
    "NAME",
    "TYPE",
    "MANAGED",
    "IPV4",
    "IPV6",
    "DESCRIPTION",
    "USED BY",
    "STATE",
];

/// The rows of `network list-leases`.
fn lease_rows(leases: &[NetworkLease]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.hostname.clone(),
                l.hwaddr.clone(),
                l.address.clone(),
                l.kind.to_uppercase(),
            ]
        })
        .collect();
    util::sort_rows(&mut rows);
    rows
}

const LEASE_HEADERS: &[&str] = &["HOSTNAME", "MAC ADDRESS", "IP ADDRESS", "TYPE"];

/// `network info`'s text for a network's state, as lxc prints it.
fn info_text(name: &str, st: &NetworkState) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Name: {name}");
    let _ = writeln!(o, "MAC address: {}", st.hwaddr);
    let _ = writeln!(o, "MTU: {}", st.mtu);
    let _ = writeln!(o, "State: {}", st.state);
    let _ = writeln!(o, "Type: {}", st.kind);
    if !st.addresses.is_empty() {
        o.push_str("\nIP addresses:\n");
        for a in &st.addresses {
            let _ = writeln!(
                o,
                "  {}\t{}/{} ({})",
                a.family, a.address, a.netmask, a.scope
            );
        }
    }
    let c = &st.counters;
    let size = |n: i64| util::size_si(u64::try_from(n).unwrap_or(0));
    o.push_str("\nNetwork usage:\n");
    let _ = writeln!(o, "  Bytes received: {}", size(c.bytes_received));
    let _ = writeln!(o, "  Bytes sent: {}", size(c.bytes_sent));
    let _ = writeln!(o, "  Packets received: {}", c.packets_received);
    let _ = writeln!(o, "  Packets sent: {}", c.packets_sent);
    if let Some(x) = &st.bond {
        o.push_str("\nBond:\n");
        let _ = writeln!(o, "  Mode: {}", x.mode);
        let _ = writeln!(o, "  Transmit policy: {}", x.transmit_policy);
        let _ = writeln!(o, "  Up delay: {}", x.up_delay);
        let _ = writeln!(o, "  Down delay: {}", x.down_delay);
        let _ = writeln!(o, "  MII Frequency: {}", x.mii_frequency);
        let _ = writeln!(o, "  MII state: {}", x.mii_state);
        let _ = writeln!(o, "  Lower devices: {}", x.lower_devices.join(", "));
    }
    if let Some(x) = &st.bridge {
        o.push_str("\nBridge:\n");
        let _ = writeln!(o, "  ID: {}", x.id);
        let _ = writeln!(o, "  STP: {}", x.stp);
        let _ = writeln!(o, "  Forward delay: {}", x.forward_delay);
        let _ = writeln!(o, "  Default VLAN ID: {}", x.vlan_default);
        let _ = writeln!(o, "  VLAN filtering: {}", x.vlan_filtering);
        let _ = writeln!(o, "  Upper devices: {}", x.upper_devices.join(", "));
    }
    if let Some(x) = &st.vlan {
        o.push_str("\nVLAN:\n");
        let _ = writeln!(o, "  Lower device: {}", x.lower_device);
        let _ = writeln!(o, "  VLAN ID: {}", x.vid);
    }
    if let Some(x) = &st.ovn {
        o.push_str("\nOVN:\n");
        let _ = writeln!(o, "  Chassis: {}", x.chassis);
    }
    o
}

/// The NIC device `network attach` adds for `network` (the network object): its name and
/// its keys. A managed network is referred to by `network`; an unmanaged interface gets a
/// macvlan NIC on it (bridged for a bridge), as lxc does. The device is named after the
/// network unless `device` is given, the interface after the device unless `interface` is.
fn nic_device(
    network: &Network,
    net_name: &str,
    device: Option<&str>,
    interface: Option<&str>,
) -> (String, StringMap) {
    let dev = device.unwrap_or(net_name).to_string();
    let mut d = StringMap::new();
    d.insert("type".to_string(), "nic".to_string());
    if network.managed {
        d.insert("network".to_string(), net_name.to_string());
    } else {
        let nictype = if network.kind == "bridge" {
            "bridged"
        } else {
            "macvlan"
        };
        d.insert("nictype".to_string(), nictype.to_string());
        d.insert("parent".to_string(), net_name.to_string());
    }
    d.insert("name".to_string(), interface.unwrap_or(&dev).to_string());
    (dev, d)
}

/// The device `network detach` removes from `devices`: `device` when given (it must be a NIC
/// on the network), else the one NIC whose `network` or `parent` is the network.
fn nic_to_detach(
    devices: &DeviceMap,
    network: &str,
    device: Option<&str>,
) -> Result<String, CmdError> {
    let key = |d: &StringMap, k: &str| d.get(k).map(String::as_str) == Some(network);
    let on_network = |d: &StringMap| {
        d.get("type").map(String::as_str) == Some("nic") && (key(d, "parent") || key(d, "network"))
    };
    let name = match device {
        Some(d) => d.to_string(),
        None => {
            let found: Vec<&String> = devices
                .iter()
                .filter(|(_, d)| on_network(d))
                .map(|(n, _)| n)
                .collect();
            match found.as_slice() {
                [] => return fail("No device found for this network"),
                [one] => (*one).clone(),
                _ => return fail("More than one device matches, specify the device name"),
            }
        }
    };
    match devices.get(&name) {
        None => fail("The specified device doesn't exist"),
        Some(d) if !on_network(d) => fail("The specified device doesn't match the network"),
        Some(_) => Ok(name),
    }
}

/// PATCHes config keys of a managed network (a value of "" unsets the key, as in LXD).
async fn patch_config(
    client: &Client,
    name: &str,
    pairs: Vec<(String, String)>,
) -> Result<(), CmdError> {
    let (n, etag) = client.network_etag(name).await?;
    require_managed(&n)?;
    let config: StringMap = pairs.into_iter().collect();
    client.patch_network_config(name, &config, etag).await?;
    Ok(())
}

/// `silo network edit`: the network's settings in the editor, saved with its ETag.
async fn edit(client: &Client, network: &str) -> Result<(), CmdError> {
    let (n, etag) = client.network_etag(network).await?;
    require_managed(&n)?;
    let current = util::yaml_ordered(&normalized(&n), NETWORK_KEYS)?;
    util::edit(NETWORK_EDIT_HELP, &current, |text| {
        let etag = etag.clone();
        let network = network.to_string();
        async move {
            let put: NetworkPut = lenient::from_yaml_value(util::parse_yaml(&text)?)
                .map_err(|e| CmdError::Fail(e.to_string()))?;
            client.update_network(&network, &put, etag).await?;
            Ok(())
        }
    })
    .await
}

/// Runs `silo network ...`.
pub async fn run(client: &Client, cmd: NetworkCmd) -> Result<(), CmdError> {
    match cmd {
        NetworkCmd::Attach {
            network,
            instance,
            device,
            interface,
        } => {
            let n = client.network(&network).await?;
            let (dev, d) = nic_device(&n, &network, device.as_deref(), interface.as_deref());
            change_instance(client, &instance, |_, put| {
                insert_device(&mut put.devices, &dev, d)
            })
            .await
        }
        NetworkCmd::AttachProfile {
            network,
            profile,
            device,
            interface,
        } => {
            let n = client.network(&network).await?;
            let (dev, d) = nic_device(&n, &network, device.as_deref(), interface.as_deref());
            change_profile(client, &profile, |put| {
                insert_device(&mut put.devices, &dev, d)
            })
            .await
        }
        NetworkCmd::Create {
            network,
            config,
            kind,
            description,
        } => {
            let config = util::kv_map(&config)?;
            client
                .create_network(&NetworksPost {
                    config,
                    description,
                    name: network.clone(),
                    kind,
                })
                .await?;
            outln(&format!("Network {network} created"))
        }
        NetworkCmd::Delete { networks } => {
            for n in networks {
                client.delete_network(&n).await?;
                outln(&format!("Network {n} deleted"))?;
            }
            Ok(())
        }
        NetworkCmd::Detach {
            network,
            instance,
            device,
        } => {
            change_instance(client, &instance, |_, put| {
                let dev = nic_to_detach(&put.devices, &network, device.as_deref())?;
                put.devices.remove(&dev);
                Ok(())
            })
            .await
        }
        NetworkCmd::DetachProfile {
            network,
            profile,
            device,
        } => {
            change_profile(client, &profile, |put| {
                let dev = nic_to_detach(&put.devices, &network, device.as_deref())?;
                put.devices.remove(&dev);
                Ok(())
            })
            .await
        }
        NetworkCmd::Edit { network } => edit(client, &network).await,
        NetworkCmd::Get { network, key } => {
            let n = client.network(&network).await?;
            // lxc prints nothing at all for a key that is not set.
            match n.config.get(&key) {
                Some(v) => outln(v),
                None => Ok(()),
            }
        }
        NetworkCmd::Info { network } => {
            let st = client.network_state(&network).await?;
            out(&info_text(&network, &st))
        }
        NetworkCmd::List { format, .. } => {
            let networks = client.networks().await?;
            let text = format::render(
                format,
                LIST_HEADERS,
                &list_rows(&networks),
                &serde_json::to_value(&networks).unwrap_or_default(),
            )
            .map_err(CmdError::Output)?;
            out(&text)
        }
        NetworkCmd::ListLeases { network, format } => {
            let leases = client.network_leases(&network).await?;
            let text = format::render(
                format,
                LEASE_HEADERS,
                &lease_rows(&leases),
                &serde_json::to_value(&leases).unwrap_or_default(),
            )
            .map_err(CmdError::Output)?;
            out(&text)
        }
        NetworkCmd::Rename { old, new } => {
            client
                .rename_network(&old, &NetworkPost { name: new.clone() })
                .await?;
            outln(&format!("Network {old} renamed to {new}"))
        }
        NetworkCmd::Set { network, args } => {
            let pairs = util::set_pairs(&args)?;
            patch_config(client, &network, pairs).await
        }
        NetworkCmd::Show { network } => {
            let n = client.network(&network).await?;
            out(&util::yaml_ordered(&normalized(&n), NETWORK_KEYS)?)
        }
        NetworkCmd::Unset { network, key } => {
            patch_config(client, &network, vec![(key, String::new())]).await
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
        lenient::from_value(v).expect("decodes")
    }

    fn sample_networks() -> Value {
        json!([
            {"name": "silobr0", "type": "bridge", "managed": true, "description": "default",
             "config": {"ipv4.address": "10.148.21.1/24", "ipv4.nat": "true",
                        "ipv6.address": "fd42:4b0c:2f5a:e6a1::1/64"},
             "used_by": ["/1.0/profiles/default", "/1.0/instances/c1"],
             "status": "Created", "locations": ["none"]},
            {"name": "lo", "type": "loopback", "managed": false, "config": {},
             "used_by": [], "status": ""},
            {"name": "eth0", "type": "physical", "managed": false, "config": {},
             "description": "", "used_by": null, "status": ""},
            {"name": "br10", "type": "bridge", "managed": true,
             "config": {"ipv4.address": "none", "ipv6.address": "none"},
             "used_by": [], "status": "Created"}
        ])
    }

    #[test]
    fn list_table() {
        let v = sample_networks();
        let rows = list_rows(&typed::<Vec<Network>>(v.clone()));
        let t = format::render(Format::Table, LIST_HEADERS, &rows, &v).expect("render");
        assert_eq!(
            t,
            "\
+---------+----------+---------+----------------+---------------------------+-------------+---------+---------+
|  NAME   |   TYPE   | MANAGED |      IPV4      |           IPV6            | DESCRIPTION | USED BY |  STATE  |
+---------+----------+---------+----------------+---------------------------+-------------+---------+---------+
| br10    | bridge   | YES     | none           | none                      |             | 0       | CREATED |
+---------+----------+---------+----------------+---------------------------+-------------+---------+---------+
| eth0    | physical | NO      |                |                           |             | 0       |         |
+---------+----------+---------+----------------+---------------------------+-------------+---------+---------+
| silobr0 | bridge   | YES     | 10.148.21.1/24 | fd42:4b0c:2f5a:e6a1::1/64 | default     | 2       | CREATED |
+---------+----------+---------+----------------+---------------------------+-------------+---------+---------+
"
        );
        let csv = format::render(Format::Csv, LIST_HEADERS, &rows, &v).expect("csv");
        assert_eq!(
            csv.lines().last(),
            Some("silobr0,bridge,YES,10.148.21.1/24,fd42:4b0c:2f5a:e6a1::1/64,default,2,CREATED")
        );
        // json/yaml show the objects as the server sent them, loopback included.
        let j = format::render(Format::Json, LIST_HEADERS, &rows, &v).expect("json");
        assert!(j.contains("\"loopback\""));
    }

    #[test]
    fn show_yaml() {
        let v = sample_networks();
        let y = util::yaml_ordered(&normalized(&typed(v[0].clone())), NETWORK_KEYS).expect("yaml");
        assert_eq!(
            y,
            "\
config:
  ipv4.address: 10.148.21.1/24
  ipv4.nat: \"true\"
  ipv6.address: fd42:4b0c:2f5a:e6a1::1/64
description: default
name: silobr0
type: bridge
used_by:
- /1.0/instances/c1
- /1.0/profiles/default
managed: true
status: Created
locations:
- none
"
        );
        let y = util::yaml_ordered(
            &normalized(&typed(
                json!({"name": "eth0", "type": "physical", "used_by": null}),
            )),
            NETWORK_KEYS,
        )
        .expect("yaml");
        assert_eq!(
            y,
            "config: {}\ndescription: \"\"\nname: eth0\ntype: physical\nused_by: []\nmanaged: false\nstatus: \"\"\nlocations: []\n"
        );
    }

    #[test]
    fn leases_table() {
        let leases = json!([
            {"hostname": "c2", "hwaddr": "00:16:3e:aa:bb:02", "address": "10.148.21.12", "type": "dynamic", "location": ""},
            {"hostname": "c1", "hwaddr": "00:16:3e:aa:bb:01", "address": "10.148.21.11", "type": "static"},
            {"hostname": "silobr0.gw", "hwaddr": "00:16:3e:00:00:01", "address": "10.148.21.1", "type": "gateway"}
        ]);
        let rows = lease_rows(&typed::<Vec<NetworkLease>>(leases.clone()));
        let t = format::render(Format::Table, LEASE_HEADERS, &rows, &leases).expect("render");
        assert_eq!(
            t,
            "\
+------------+-------------------+--------------+---------+
|  HOSTNAME  |    MAC ADDRESS    |  IP ADDRESS  |  TYPE   |
+------------+-------------------+--------------+---------+
| c1         | 00:16:3e:aa:bb:01 | 10.148.21.11 | STATIC  |
+------------+-------------------+--------------+---------+
| c2         | 00:16:3e:aa:bb:02 | 10.148.21.12 | DYNAMIC |
+------------+-------------------+--------------+---------+
| silobr0.gw | 00:16:3e:00:00:01 | 10.148.21.1  | GATEWAY |
+------------+-------------------+--------------+---------+
"
        );
        assert_eq!(
            lease_rows(&[]),
            Vec::<Vec<String>>::new(),
            "no leases, no rows"
        );
    }

    #[test]
    fn info() {
        let st = json!({
            "addresses": [
                {"family": "inet", "address": "10.148.21.1", "netmask": "24", "scope": "global"},
                {"family": "inet6", "address": "fe80::216:3eff:fe00:1", "netmask": "64", "scope": "link"}
            ],
            "counters": {"bytes_received": 1_234_567, "bytes_sent": 512,
                         "packets_received": 1500, "packets_sent": 7},
            "hwaddr": "00:16:3e:00:00:01", "mtu": 1500, "state": "up", "type": "broadcast",
            "bond": null,
            "bridge": {"id": "8000.00163e000001", "stp": false, "forward_delay": 1500,
                       "upper_devices": ["veth1", "veth2"], "vlan_default": 1, "vlan_filtering": true},
            "vlan": null, "ovn": null
        });
        assert_eq!(
            info_text("silobr0", &typed(st)),
            "\
Name: silobr0
MAC address: 00:16:3e:00:00:01
MTU: 1500
State: up
Type: broadcast

IP addresses:
  inet\t10.148.21.1/24 (global)
  inet6\tfe80::216:3eff:fe00:1/64 (link)

Network usage:
  Bytes received: 1.23MB
  Bytes sent: 512B
  Packets received: 1500
  Packets sent: 7

Bridge:
  ID: 8000.00163e000001
  STP: false
  Forward delay: 1500
  Default VLAN ID: 1
  VLAN filtering: true
  Upper devices: veth1, veth2
"
        );
        // No addresses, no counters: the usage block stays, with zeros.
        let t = info_text(
            "eth9",
            &typed(json!({"state": "down", "type": "broadcast"})),
        );
        assert!(!t.contains("IP addresses"));
        assert!(t.contains("MTU: 0\n"));
        assert!(t.ends_with("Network usage:\n  Bytes received: 0B\n  Bytes sent: 0B\n  Packets received: 0\n  Packets sent: 0\n"));
    }

    #[test]
    fn attach_naming() {
        let managed: Network = typed(json!({"name": "silobr0", "type": "bridge", "managed": true}));
        let (dev, d) = nic_device(&managed, "silobr0", None, None);
        assert_eq!(dev, "silobr0");
        assert_eq!(
            serde_json::to_value(d).expect("json"),
            json!({"type": "nic", "network": "silobr0", "name": "silobr0"})
        );
        let (dev, d) = nic_device(&managed, "silobr0", Some("eth1"), None);
        assert_eq!(dev, "eth1");
        assert_eq!(d["name"], "eth1");
        let (dev, d) = nic_device(&managed, "silobr0", Some("eth1"), Some("net1"));
        assert_eq!((dev.as_str(), d["name"].as_str()), ("eth1", "net1"));
        // Unmanaged interfaces get a macvlan NIC (a bridged one on a bridge) on them.
        let host: Network = typed(json!({"name": "eth0", "type": "physical", "managed": false}));
        let (_, d) = nic_device(&host, "eth0", None, None);
        assert_eq!(
            serde_json::to_value(d).expect("json"),
            json!({"type": "nic", "nictype": "macvlan", "parent": "eth0", "name": "eth0"})
        );
        let hostbr: Network = typed(json!({"name": "br9", "type": "bridge", "managed": false}));
        assert_eq!(
            nic_device(&hostbr, "br9", None, None).1["nictype"],
            "bridged"
        );
    }

    #[test]
    fn detach_choice() {
        let devices = json!({
            "root": {"type": "disk", "path": "/", "pool": "default"},
            "eth0": {"type": "nic", "network": "silobr0", "name": "eth0"},
            "mv": {"type": "nic", "nictype": "macvlan", "parent": "eth9"},
            "a": {"type": "nic", "network": "br1"},
            "b": {"type": "nic", "network": "br1"}
        });
        let m: &DeviceMap = &typed(devices);
        let err = |r: Result<String, CmdError>| r.expect_err("an error").to_string();
        assert_eq!(nic_to_detach(m, "silobr0", None).expect("found"), "eth0");
        assert_eq!(nic_to_detach(m, "eth9", None).expect("found"), "mv");
        assert_eq!(nic_to_detach(m, "br1", Some("b")).expect("found"), "b");
        assert_eq!(
            err(nic_to_detach(m, "br1", None)),
            "More than one device matches, specify the device name"
        );
        assert_eq!(
            err(nic_to_detach(m, "nope", None)),
            "No device found for this network"
        );
        assert_eq!(
            err(nic_to_detach(m, "silobr0", Some("eth5"))),
            "The specified device doesn't exist"
        );
        assert_eq!(
            err(nic_to_detach(m, "silobr0", Some("root"))),
            "The specified device doesn't match the network"
        );
    }

    #[test]
    fn command_line() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            let mut v = vec!["silo", "network"];
            v.extend_from_slice(args);
            match crate::Cli::try_parse_from(v).map(|c| c.command) {
                Ok(crate::Command::Network(n)) => Ok(n),
                Ok(other) => panic!("not a network command: {other:?}"),
                Err(e) => Err(e),
            }
        };
        match parse(&["create", "br1", "ipv4.address=auto", "-t", "macvlan"]) {
            Ok(NetworkCmd::Create {
                network,
                config,
                kind,
                description,
            }) => {
                assert_eq!(network, "br1");
                assert_eq!(config, vec!["ipv4.address=auto"]);
                assert_eq!(kind, "macvlan");
                assert_eq!(description, "");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["create", "br2"]) {
            Ok(NetworkCmd::Create { kind, .. }) => assert_eq!(kind, "bridge"),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["create", "br3", "--type", "vxlan"]).is_err());
        match parse(&["attach-profile", "br1", "default", "eth1"]) {
            Ok(NetworkCmd::AttachProfile {
                device, interface, ..
            }) => assert_eq!((device.as_deref(), interface), (Some("eth1"), None)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["list-leases", "br1", "-f", "json"]),
            Ok(NetworkCmd::ListLeases {
                format: Format::Json,
                ..
            })
        ));
        assert!(matches!(parse(&["ls"]), Ok(NetworkCmd::List { .. })));
        assert!(matches!(
            parse(&["mv", "a", "b"]),
            Ok(NetworkCmd::Rename { .. })
        ));
        assert!(parse(&["set", "br1"]).is_err());
        assert!(parse(&["attach", "br1"]).is_err());
    }
}
