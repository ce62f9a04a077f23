//! `silo config ...`: instance configuration (and, with no instance, the server's), and
//! instance devices, as `lxc config` does them: GET, change, PUT with If-Match.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use crate::client::{if_match, Client};
use crate::commands::CmdError;
use crate::util::{self, enc, fail, out, outln};

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
        /// The device's type (disk, nic, ...).
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

fn instance_path(name: &str) -> String {
    format!("/1.0/instances/{}", enc(name))
}

/// GETs an instance with its ETag.
pub async fn get_instance(
    client: &Client,
    name: &str,
) -> Result<(Value, Option<String>), CmdError> {
    Ok(client.get_etag(&instance_path(name)).await?)
}

/// The writable part of an instance object.
pub fn writable(inst: &Value) -> Value {
    let mut m = Map::new();
    for k in INSTANCE_KEYS {
        if let Some(v) = inst.get(*k) {
            m.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(m)
}

/// PUTs an instance's writable fields with If-Match and waits for the operation.
pub async fn put_instance(
    client: &Client,
    name: &str,
    body: &Value,
    etag: Option<String>,
) -> Result<(), CmdError> {
    let headers = if_match(etag);
    client
        .operate("PUT", &instance_path(name), Some(body), &headers)
        .await?;
    Ok(())
}

/// The map at `k` in an object, made an empty map when missing or null.
pub fn obj_mut<'a>(v: &'a mut Value, k: &str) -> Result<&'a mut Map<String, Value>, CmdError> {
    let bad = || CmdError::Fail(format!("unexpected answer from silod: {k} is not a map"));
    let m = v.as_object_mut().ok_or_else(bad)?;
    let e = m.entry(k).or_insert_with(|| json!({}));
    if e.is_null() {
        *e = json!({});
    }
    e.as_object_mut().ok_or_else(bad)
}

/// Runs `silo config ...`.
pub async fn run(client: &Client, cmd: ConfigCmd) -> Result<(), CmdError> {
    match cmd {
        ConfigCmd::Show { instance, expanded } => match instance {
            None => {
                let v = client.get("/1.0").await?;
                out(&util::yaml_ordered(&v, &["config"])?)
            }
            Some(name) => {
                let (inst, _) = get_instance(client, &name).await?;
                let mut w = writable(&inst);
                if expanded {
                    w["config"] = inst.get("expanded_config").cloned().unwrap_or(json!({}));
                    w["devices"] = inst.get("expanded_devices").cloned().unwrap_or(json!({}));
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
                let v = client.get("/1.0").await?;
                outln(&util::vs(v.get("config").and_then(|c| c.get(&key))))
            }
            (name, Some(key)) => {
                let (inst, _) = get_instance(client, &name).await?;
                let map = if expanded {
                    "expanded_config"
                } else {
                    "config"
                };
                outln(&util::vs(inst.get(map).and_then(|c| c.get(&key))))
            }
        },
        ConfigCmd::Set { args } => set(client, &args).await,
        ConfigCmd::Unset { first, key } => match (first, key) {
            (key, None) => server_patch(client, vec![(key, String::new())]).await,
            (name, Some(key)) => {
                let (mut inst, etag) = get_instance(client, &name).await?;
                let cfg = obj_mut(&mut inst, "config")?;
                if cfg.remove(&key).is_none() {
                    return fail(format!("can't unset key '{key}', it's not currently set"));
                }
                put_instance(client, &name, &writable(&inst), etag).await
            }
        },
        ConfigCmd::Edit { instance } => match instance {
            None => edit_server(client).await,
            Some(name) => edit_instance(client, &name).await,
        },
        ConfigCmd::Device(d) => device(client, d).await,
    }
}

async fn server_patch(client: &Client, pairs: Vec<(String, String)>) -> Result<(), CmdError> {
    let cfg: Map<String, Value> = pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    client
        .query("PATCH", "/1.0", Some(&json!({ "config": cfg })))
        .await?;
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
    let (mut inst, etag) = get_instance(client, name).await?;
    let cfg = obj_mut(&mut inst, "config")?;
    for (k, v) in pairs {
        cfg.insert(k, Value::String(v));
    }
    put_instance(client, name, &writable(&inst), etag).await
}

async fn edit_instance(client: &Client, name: &str) -> Result<(), CmdError> {
    let (inst, etag) = get_instance(client, name).await?;
    let mut shown = writable(&inst);
    shown["name"] = inst.get("name").cloned().unwrap_or(Value::Null);
    let mut order = vec!["name"];
    order.extend_from_slice(INSTANCE_KEYS);
    let current = util::yaml_ordered(&shown, &order)?;
    util::edit(INSTANCE_EDIT_HELP, &current, |text| {
        let etag = etag.clone();
        async move {
            let mut v = util::parse_yaml(&text)?;
            if let Some(c) = v.get_mut("config") {
                util::stringify_map(c);
            }
            if let Some(d) = v.get_mut("devices") {
                util::stringify_devices(d);
            }
            if let Value::Object(m) = &mut v {
                m.remove("name");
            }
            put_instance(client, name, &v, etag).await
        }
    })
    .await
}

async fn edit_server(client: &Client) -> Result<(), CmdError> {
    let (v, etag) = client.get_etag("/1.0").await?;
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
            let body = json!({"config": v.get("config").cloned().unwrap_or(json!({}))});
            let headers = if_match(etag);
            client.operate("PUT", "/1.0", Some(&body), &headers).await?;
            Ok(())
        }
    })
    .await
}

/// Adds a device `name` of type `kind` with `props` (`KEY=VALUE`) to a devices map.
pub fn add_device(
    devices: &mut Map<String, Value>,
    name: &str,
    kind: &str,
    props: &[String],
) -> Result<(), CmdError> {
    let mut d = Map::new();
    d.insert("type".to_string(), Value::String(kind.to_string()));
    d.extend(util::kv_map(props)?);
    insert_device(devices, name, d)
}

/// Adds the device `name` to a devices map, unless one of that name is there already.
pub fn insert_device(
    devices: &mut Map<String, Value>,
    name: &str,
    device: Map<String, Value>,
) -> Result<(), CmdError> {
    if devices.contains_key(name) {
        return fail("The device already exists");
    }
    devices.insert(name.to_string(), Value::Object(device));
    Ok(())
}

pub fn device_names(devices: &Value) -> String {
    let mut names: Vec<&String> = devices
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|n| format!("{n}\n"))
        .collect::<Vec<_>>()
        .concat()
}

async fn device(client: &Client, cmd: DeviceCmd) -> Result<(), CmdError> {
    match cmd {
        DeviceCmd::Add {
            instance,
            device,
            kind,
            props,
        } => {
            let (mut inst, etag) = get_instance(client, &instance).await?;
            add_device(obj_mut(&mut inst, "devices")?, &device, &kind, &props)?;
            put_instance(client, &instance, &writable(&inst), etag).await?;
            outln(&format!("Device {device} added to {instance}"))
        }
        DeviceCmd::Remove { instance, devices } => {
            let (mut inst, etag) = get_instance(client, &instance).await?;
            let expanded = inst.get("expanded_devices").cloned().unwrap_or(json!({}));
            let local = obj_mut(&mut inst, "devices")?;
            for d in &devices {
                if local.remove(d).is_none() {
                    if expanded.get(d).is_some() {
                        return fail("Device from profile(s) cannot be removed from individual instance. Override device or modify profile instead");
                    }
                    return fail("Device doesn't exist");
                }
            }
            put_instance(client, &instance, &writable(&inst), etag).await?;
            for d in &devices {
                outln(&format!("Device {d} removed from {instance}"))?;
            }
            Ok(())
        }
        DeviceCmd::Show { instance } => {
            let (inst, _) = get_instance(client, &instance).await?;
            out(&util::yaml(
                &inst.get("devices").cloned().unwrap_or(json!({})),
            )?)
        }
        DeviceCmd::List { instance } => {
            let (inst, _) = get_instance(client, &instance).await?;
            out(&device_names(
                &inst.get("devices").cloned().unwrap_or(json!({})),
            ))
        }
    }
}
