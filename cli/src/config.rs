//! `silo config ...`: instance configuration (and, with no instance, the server's), and
//! instance devices, as `lxc config` does them: GET, change, PUT with If-Match.

use clap::Subcommand;
use serde_json::{Map, Value};
use silo_api::{lenient, DeviceMap, Instance, InstancePut, ServerPut, StringMap};

use crate::client::Client;
use crate::commands::CmdError;
use crate::util::{self, fail, out, outln};

/// `silo config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Show an instance's configuration as YAML (the server's with no instance).
    Show {
        /// The instance.
        instance: Option<String>,
        /// Show the configuration with its profiles applied.
        #[arg(short = 'e', long)]
        expanded: bool,
    },
    /// Print an instance's configuration key (a server key with one argument).
    #[command(after_help = "\
Examples:
  silo config get c1 limits.cpu                an instance key
  silo config get images.auto_update_interval  a server key")]
    Get {
        /// The instance, or the server key when it is the only argument.
        #[arg(value_name = "INSTANCE|KEY")]
        first: String,
        /// The instance's key.
        #[arg(value_name = "KEY")]
        key: Option<String>,
        /// Look in the configuration with its profiles applied.
        #[arg(short = 'e', long)]
        expanded: bool,
    },
    /// Set instance (or server) configuration keys.
    #[command(after_help = "\
Forms:
  silo config set c1 limits.cpu 2                 one instance key
  silo config set c1 limits.cpu=2 user.a=b        several instance keys
  silo config set images.auto_update_interval 6   one server key (two arguments, no '=')
  silo config set images.auto_update_interval=6   server keys (the first argument has '=')")]
    Set {
        /// [INSTANCE] KEY VALUE, or [INSTANCE] KEY=VALUE...
        #[arg(required = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Unset an instance's configuration key (a server key with one argument).
    Unset {
        /// The instance, or the server key when it is the only argument.
        #[arg(value_name = "INSTANCE|KEY")]
        first: String,
        /// The instance's key.
        #[arg(value_name = "KEY")]
        key: Option<String>,
    },
    /// Edit an instance's (or the server's) configuration in $EDITOR, or from YAML on stdin.
    Edit {
        /// The instance (the server when omitted).
        instance: Option<String>,
    },
    /// Manage an instance's devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Show or edit an instance's metadata.yaml.
    #[command(subcommand)]
    Metadata(crate::metadata::MetadataCmd),
    /// Manage an instance's template files.
    #[command(subcommand)]
    Template(crate::metadata::TemplateCmd),
    /// Manage the clients the server trusts over HTTPS.
    #[command(subcommand)]
    Trust(crate::trust::TrustCmd),
}

/// `silo config device ...`.
#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// Add a device to an instance.
    #[command(
        after_help = "Example: silo config device add c1 data disk source=/srv/data path=/data"
    )]
    Add {
        /// The instance.
        instance: String,
        /// The device's name.
        device: String,
        /// The device's type: disk, nic, proxy, unix-char, unix-block, usb, gpu or none (host
        /// paths and host devices only where the host's root policy allows them).
        #[arg(value_name = "TYPE")]
        kind: String,
        /// Device keys.
        #[arg(value_name = "KEY=VALUE")]
        props: Vec<String>,
    },
    /// Remove devices from an instance.
    #[command(alias = "rm")]
    Remove {
        /// The instance.
        instance: String,
        /// The devices.
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Show an instance's own devices as YAML.
    Show {
        /// The instance.
        instance: String,
    },
    /// List an instance's own devices.
    #[command(alias = "ls")]
    List {
        /// The instance.
        instance: String,
    },
    /// Print a key of one of an instance's own devices.
    Get {
        /// The instance.
        instance: String,
        /// The device.
        device: String,
        /// The key.
        key: String,
    },
    /// Set keys of one of an instance's own devices: KEY VALUE, or KEY=VALUE...
    Set {
        /// The instance.
        instance: String,
        /// The device.
        device: String,
        /// KEY VALUE, or KEY=VALUE...
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Remove a key from one of an instance's own devices.
    Unset {
        /// The instance.
        instance: String,
        /// The device.
        device: String,
        /// The key.
        key: String,
    },
    /// Copy a device the instance has from its profiles into its own devices (to change it
    /// for this instance alone), with KEY=VALUE changes.
    Override {
        /// The instance.
        instance: String,
        /// The device.
        device: String,
        /// Keys to change.
        #[arg(value_name = "KEY=VALUE")]
        props: Vec<String>,
    },
}

const INSTANCE_EDIT_HELP: &str = "\
### This is a YAML representation of the configuration.
### Any line starting with a '# will be ignored.
###
### A sample configuration looks like:
### name: instance1
### profiles:
### - default
### config:
###   volatile.eth0.hwaddr: 00:16:3e:e9:f8:7f
### devices:
###   homedir:
###     path: /extra
###     source: /home/user
###     type: disk
### ephemeral: false
###
### Note that the name is shown but cannot be changed";

const SERVER_EDIT_HELP: &str = "\
### This is a YAML representation of the configuration.
### Any line starting with a '# will be ignored.
###
### A sample configuration looks like:
### config:
###   images.auto_update_interval: \"6\"";

/// The fields of an instance that PUT takes, in the order lxc prints them.
pub const INSTANCE_KEYS: &[&str] = &[
    "architecture",
    "config",
    "devices",
    "ephemeral",
    "profiles",
    "stateful",
    "description",
];

/// GETs an instance with its ETag.
pub async fn get_instance(
    client: &Client,
    name: &str,
) -> Result<(Instance, Option<String>), CmdError> {
    Ok(client.instance_etag(name).await?)
}

/// The writable part of an instance as lxc prints it: [`INSTANCE_KEYS`] of the object.
pub fn writable(inst: &Instance) -> Value {
    let v = serde_json::to_value(inst).unwrap_or_default();
    let mut m = Map::new();
    for k in INSTANCE_KEYS {
        if let Some(x) = v.get(*k) {
            m.insert((*k).to_string(), x.clone());
        }
    }
    Value::Object(m)
}

/// PUTs an instance's writable fields with If-Match and waits for the operation.
pub async fn put_instance(
    client: &Client,
    name: &str,
    put: &InstancePut,
    etag: Option<String>,
) -> Result<(), CmdError> {
    client.update_instance(name, put, etag).await?;
    Ok(())
}

/// Changes an instance's writable part with `change` and PUTs it back with If-Match.
pub async fn change_instance(
    client: &Client,
    name: &str,
    change: impl FnOnce(&Instance, &mut InstancePut) -> Result<(), CmdError>,
) -> Result<(), CmdError> {
    let (inst, etag) = get_instance(client, name).await?;
    let mut put = InstancePut::from(&inst);
    change(&inst, &mut put)?;
    put_instance(client, name, &put, etag).await
}

/// Runs `silo config ...`.
pub async fn run(client: &Client, cmd: ConfigCmd) -> Result<(), CmdError> {
    match cmd {
        ConfigCmd::Show { instance, expanded } => match instance {
            None => {
                let v = serde_json::to_value(client.server().await?).unwrap_or_default();
                out(&util::yaml_ordered(&v, &["config"])?)
            }
            Some(name) if name.contains('/') => {
                // A snapshot, as lxc shows it: the whole object.
                let (inst, snap) = name.split_once('/').unwrap_or_default();
                let s = client.snapshot(inst, snap).await?;
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                if expanded {
                    v["config"] = v["expanded_config"].clone();
                    v["devices"] = v["expanded_devices"].clone();
                }
                out(&util::yaml(&v)?)
            }
            Some(name) => {
                let (inst, _) = get_instance(client, &name).await?;
                let mut w = writable(&inst);
                if expanded {
                    w["config"] = serde_json::to_value(&inst.expanded_config).unwrap_or_default();
                    w["devices"] = serde_json::to_value(&inst.expanded_devices).unwrap_or_default();
                }
                out(&util::yaml_ordered(&w, INSTANCE_KEYS)?)
            }
        },
        ConfigCmd::Get {
            first,
            key,
            expanded,
        } => match (first, key) {
            (key, None) => {
                let server = client.server().await?;
                outln(&util::vs(server.config.get(&key)))
            }
            (name, Some(key)) => {
                let (inst, _) = get_instance(client, &name).await?;
                let map = if expanded {
                    &inst.expanded_config
                } else {
                    &inst.config
                };
                outln(map.get(&key).map(String::as_str).unwrap_or_default())
            }
        },
        ConfigCmd::Trust(t) => crate::trust::run(client, t).await,
        ConfigCmd::Set { args } => set(client, &args).await,
        ConfigCmd::Unset { first, key } => match (first, key) {
            (key, None) => server_patch(client, vec![(key, String::new())]).await,
            (name, Some(key)) => {
                change_instance(client, &name, |_, put| {
                    if put.config.remove(&key).is_none() {
                        return fail(format!("can't unset key '{key}', it's not currently set"));
                    }
                    Ok(())
                })
                .await
            }
        },
        ConfigCmd::Edit { instance } => match instance {
            None => edit_server(client).await,
            Some(name) if name.contains('/') => edit_snapshot(client, &name).await,
            Some(name) => edit_instance(client, &name).await,
        },
        ConfigCmd::Device(d) => device(client, d).await,
        ConfigCmd::Metadata(m) => crate::metadata::metadata(client, m).await,
        ConfigCmd::Template(t) => crate::metadata::template(client, t).await,
    }
}

async fn server_patch(client: &Client, pairs: Vec<(String, String)>) -> Result<(), CmdError> {
    let config = pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    client.patch_server(&ServerPut { config }).await?;
    Ok(())
}

async fn set(client: &Client, args: &[String]) -> Result<(), CmdError> {
    let (instance, pairs): (Option<&String>, Vec<(String, String)>) = match args {
        [] => return fail("expected [INSTANCE] KEY VALUE or [INSTANCE] KEY=VALUE..."),
        [one] if !one.contains('=') => {
            return fail("expected [INSTANCE] KEY VALUE or [INSTANCE] KEY=VALUE...")
        }
        [name, key, value] if !key.contains('=') => {
            (Some(name), vec![(key.clone(), value.clone())])
        }
        [key, value] if !key.contains('=') && !value.contains('=') => {
            (None, vec![(key.clone(), value.clone())])
        }
        [first, ..] if first.contains('=') => (
            None,
            args.iter().map(|a| util::kv(a)).collect::<Result<_, _>>()?,
        ),
        [name, rest @ ..] => (
            Some(name),
            rest.iter().map(|a| util::kv(a)).collect::<Result<_, _>>()?,
        ),
    };
    let Some(name) = instance else {
        return server_patch(client, pairs).await;
    };
    change_instance(client, name, |_, put| {
        put.config.extend(pairs);
        Ok(())
    })
    .await
}

async fn edit_instance(client: &Client, name: &str) -> Result<(), CmdError> {
    let (inst, etag) = get_instance(client, name).await?;
    let mut shown = writable(&inst);
    shown["name"] = Value::String(inst.name.clone());
    let mut order = vec!["name"];
    order.extend_from_slice(INSTANCE_KEYS);
    let current = util::yaml_ordered(&shown, &order)?;
    util::edit(INSTANCE_EDIT_HELP, &current, |text| {
        let etag = etag.clone();
        async move {
            let put: InstancePut = lenient::from_yaml_value(util::parse_yaml(&text)?)
                .map_err(|e| CmdError::Fail(e.to_string()))?;
            put_instance(client, name, &put, etag).await
        }
    })
    .await
}

/// `silo config edit INSTANCE/SNAPSHOT`: as LXD 5.0, only the expiry can change.
async fn edit_snapshot(client: &Client, name: &str) -> Result<(), CmdError> {
    let (inst, snap) = name.split_once('/').unwrap_or_default();
    let s = client.snapshot(inst, snap).await?;
    let current = util::yaml(&serde_json::to_value(&s).unwrap_or_default())?;
    let path = silo_api::paths::snapshot(inst, snap);
    util::edit(SNAPSHOT_EDIT_HELP, &current, |text| {
        let path = path.clone();
        async move {
            let put: silo_api::InstanceSnapshotPut =
                lenient::from_yaml_value(util::parse_yaml(&text)?)
                    .map_err(|e| CmdError::Fail(e.to_string()))?;
            let body = serde_json::to_value(&put).unwrap_or_default();
            client.operate("PUT", &path, Some(&body), &[]).await?;
            Ok(())
        }
    })
    .await
}

const SNAPSHOT_EDIT_HELP: &str = "### This is a YAML representation of an instance snapshot.
### Any line starting with a '# will be ignored.
### Only expires_at can be changed.";

async fn edit_server(client: &Client) -> Result<(), CmdError> {
    let (v, etag) = client.get_etag(&silo_api::paths::server()).await?;
    let current = util::yaml_ordered(&v, &["config"])?;
    util::edit(SERVER_EDIT_HELP, &current, |text| {
        let etag = etag.clone();
        async move {
            let mut v = util::parse_yaml(&text)?;
            if let Some(c) = v.get_mut("config") {
                // The server shows a set trust password as `true` and takes `true` back as
                // "unchanged": stringifying it would set the password to the word "true".
                let kept = c.get("core.trust_password") == Some(&Value::Bool(true));
                util::stringify_map(c);
                if kept {
                    c["core.trust_password"] = Value::Bool(true);
                }
            }
            let put: ServerPut =
                lenient::from_value(v).map_err(|e| CmdError::Fail(e.to_string()))?;
            client.update_server(&put, etag).await?;
            Ok(())
        }
    })
    .await
}

/// Adds a device `name` of type `kind` with `props` (`KEY=VALUE`) to a devices map.
pub fn add_device(
    devices: &mut DeviceMap,
    name: &str,
    kind: &str,
    props: &[String],
) -> Result<(), CmdError> {
    let mut d = StringMap::new();
    d.insert("type".to_string(), kind.to_string());
    for p in props {
        let (k, v) = util::kv(p)?;
        d.insert(k, v);
    }
    insert_device(devices, name, d)
}

/// Adds the device `name` to a devices map, unless one of that name is there already.
pub fn insert_device(
    devices: &mut DeviceMap,
    name: &str,
    device: StringMap,
) -> Result<(), CmdError> {
    if devices.contains_key(name) {
        return fail("The device already exists");
    }
    devices.insert(name.to_string(), device);
    Ok(())
}

/// The names of devices, one a line, sorted.
pub fn device_names(devices: &DeviceMap) -> String {
    devices.keys().map(|n| format!("{n}\n")).collect()
}

/// A devices map as YAML.
pub fn devices_yaml(devices: &DeviceMap) -> Result<String, CmdError> {
    util::yaml(&serde_json::to_value(devices).unwrap_or_default())
}

async fn device(client: &Client, cmd: DeviceCmd) -> Result<(), CmdError> {
    match cmd {
        DeviceCmd::Add {
            instance,
            device,
            kind,
            props,
        } => {
            change_instance(client, &instance, |_, put| {
                add_device(&mut put.devices, &device, &kind, &props)
            })
            .await?;
            outln(&format!("Device {device} added to {instance}"))
        }
        DeviceCmd::Remove { instance, devices } => {
            change_instance(client, &instance, |inst, put| {
                for d in &devices {
                    if put.devices.remove(d).is_none() {
                        if inst.expanded_devices.contains_key(d) {
                            return fail("Device from profile(s) cannot be removed from individual instance. Override device or modify profile instead");
                        }
                        return fail("Device doesn't exist");
                    }
                }
                Ok(())
            })
            .await?;
            for d in &devices {
                outln(&format!("Device {d} removed from {instance}"))?;
            }
            Ok(())
        }
        DeviceCmd::Show { instance } => {
            let (inst, _) = get_instance(client, &instance).await?;
            out(&devices_yaml(&inst.devices)?)
        }
        DeviceCmd::List { instance } => {
            let (inst, _) = get_instance(client, &instance).await?;
            out(&device_names(&inst.devices))
        }
        DeviceCmd::Get {
            instance,
            device,
            key,
        } => {
            let (inst, _) = get_instance(client, &instance).await?;
            let Some(d) = inst.devices.get(&device) else {
                if inst.expanded_devices.contains_key(&device) {
                    return fail(
                        "Device from profile(s) cannot be retrieved for individual instance",
                    );
                }
                return fail("Device doesn't exist");
            };
            outln(d.get(&key).map(String::as_str).unwrap_or_default())
        }
        DeviceCmd::Set {
            instance,
            device,
            args,
        } => {
            let kvs = util::set_pairs(&args)?;
            change_instance(client, &instance, |inst, put| {
                own_device(inst, &mut put.devices, &device)?.extend(kvs);
                Ok(())
            })
            .await
        }
        DeviceCmd::Unset {
            instance,
            device,
            key,
        } => {
            change_instance(client, &instance, |inst, put| {
                own_device(inst, &mut put.devices, &device)?.remove(&key);
                Ok(())
            })
            .await
        }
        DeviceCmd::Override {
            instance,
            device,
            props,
        } => {
            change_instance(client, &instance, |inst, put| {
                if put.devices.contains_key(&device) {
                    return fail("The device already exists");
                }
                let Some(mut d) = inst.expanded_devices.get(&device).cloned() else {
                    return fail("The profile device doesn't exist");
                };
                for p in &props {
                    let (k, v) = util::kv(p)?;
                    d.insert(k, v);
                }
                put.devices.insert(device.clone(), d);
                Ok(())
            })
            .await?;
            outln(&format!("Device {device} overridden for {instance}"))
        }
    }
}

/// The instance's own device `name`, to change; one it has from a profile is refused as lxc
/// refuses it (`override` copies it in first).
fn own_device<'a>(
    inst: &Instance,
    devices: &'a mut DeviceMap,
    name: &str,
) -> Result<&'a mut StringMap, CmdError> {
    if !devices.contains_key(name) && inst.expanded_devices.contains_key(name) {
        return fail("Device from profile(s) cannot be modified for individual instance. Override device or modify profile instead");
    }
    devices
        .get_mut(name)
        .ok_or_else(|| CmdError::Fail("Device doesn't exist".into()))
}
