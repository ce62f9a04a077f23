//! `silo profile ...`, as `lxc profile` does it.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{if_match, Client};
use crate::commands::CmdError;
use crate::config::{add_device, device_names, get_instance, obj_mut, put_instance, writable};
use crate::format::{self, Format};
use crate::util::{self, enc, fail, out, outln, s};

/// `silo profile ...`.
#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// List profiles.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a profile as YAML.
    Show {
        /// The profile.
        profile: String,
    },
    /// Create an empty profile.
    Create {
        /// The profile.
        profile: String,
        /// Its description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Edit a profile in $EDITOR (or from YAML on stdin).
    Edit {
        /// The profile.
        profile: String,
    },
    /// Delete profiles.
    #[command(alias = "rm")]
    Delete {
        /// The profiles.
        #[arg(required = true)]
        profiles: Vec<String>,
    },
    /// Rename a profile.
    #[command(alias = "mv")]
    Rename {
        /// The current name.
        old: String,
        /// The new name.
        new: String,
    },
    /// Print a profile's configuration key.
    Get {
        /// The profile.
        profile: String,
        /// The key.
        key: String,
    },
    /// Set profile configuration keys: P KEY VALUE, or P KEY=VALUE...
    Set {
        /// The profile.
        profile: String,
        /// KEY VALUE, or KEY=VALUE...
        #[arg(required = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Unset a profile configuration key.
    Unset {
        /// The profile.
        profile: String,
        /// The key.
        key: String,
    },
    /// Add a profile to an instance.
    Add {
        /// The instance.
        instance: String,
        /// The profile.
        profile: String,
    },
    /// Remove a profile from an instance.
    Remove {
        /// The instance.
        instance: String,
        /// The profile.
        profile: String,
    },
    /// Replace an instance's profiles with a comma-separated list ("" for none).
    Assign {
        /// The instance.
        instance: String,
        /// The profiles, comma separated.
        profiles: String,
    },
    /// Manage a profile's devices.
    #[command(subcommand)]
    Device(ProfileDeviceCmd),
}

/// `silo profile device ...`.
#[derive(Debug, Subcommand)]
pub enum ProfileDeviceCmd {
    /// Add a device to a profile.
    #[command(
        after_help = "Example: silo profile device add default root disk path=/ pool=default"
    )]
    Add {
        /// The profile.
        profile: String,
        /// The device's name.
        device: String,
        /// The device's type (disk, nic, ...).
        #[arg(value_name = "TYPE")]
        kind: String,
        /// Device keys.
        #[arg(value_name = "KEY=VALUE")]
        props: Vec<String>,
    },
    /// Remove devices from a profile.
    #[command(alias = "rm")]
    Remove {
        /// The profile.
        profile: String,
        /// The devices.
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Show a profile's devices as YAML.
    Show {
        /// The profile.
        profile: String,
    },
    /// List a profile's devices.
    #[command(alias = "ls")]
    List {
        /// The profile.
        profile: String,
    },
}

const PROFILE_EDIT_HELP: &str = "\
### This is a YAML representation of the profile.
### Any line starting with a '# will be ignored.
###
### A profile consists of a set of configuration items followed by a set of
### devices.
###
### An example would look like:
### name: onenic
### config:
###   raw.lxc: lxc.aa_profile=unconfined
### devices:
###   eth0:
###     nictype: bridged
###     parent: lxdbr0
###     type: nic
###
### Note that the name is shown but cannot be changed";

/// A profile's API path.
pub fn path(name: &str) -> String {
    format!("/1.0/profiles/{}", enc(name))
}

fn profile_writable(p: &Value) -> Value {
    json!({
        "config": p.get("config").cloned().unwrap_or(json!({})),
        "description": p.get("description").cloned().unwrap_or(json!("")),
        "devices": p.get("devices").cloned().unwrap_or(json!({})),
    })
}

/// PUTs a profile's writable fields with If-Match.
pub async fn put_profile(
    client: &Client,
    name: &str,
    p: &Value,
    etag: Option<String>,
) -> Result<(), CmdError> {
    let headers = if_match(etag);
    client
        .operate("PUT", &path(name), Some(&profile_writable(p)), &headers)
        .await?;
    Ok(())
}

fn profiles_of(inst: &Value) -> Vec<String> {
    inst.get("profiles")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|p| util::vs(Some(p))).collect())
        .unwrap_or_default()
}

async fn set_profiles(
    client: &Client,
    instance: &str,
    profiles: Vec<String>,
) -> Result<(), CmdError> {
    let (inst, etag) = get_instance(client, instance).await?;
    let mut w = writable(&inst);
    if let Value::Object(m) = &mut w {
        m.insert("profiles".to_string(), json!(profiles));
    }
    put_instance(client, instance, &w, etag).await
}

/// Runs `silo profile ...`.
pub async fn run(client: &Client, cmd: ProfileCmd) -> Result<(), CmdError> {
    match cmd {
        ProfileCmd::List { format } => {
            let v = client.get("/1.0/profiles?recursion=1").await?;
            let profiles = v.as_array().cloned().unwrap_or_default();
            let mut rows: Vec<Vec<String>> = profiles
                .iter()
                .map(|p| {
                    vec![
                        s(p, "name"),
                        s(p, "description"),
                        util::used_by(p).len().to_string(),
                    ]
                })
                .collect();
            util::sort_rows(&mut rows);
            let text = format::render(
                format,
                &["NAME", "DESCRIPTION", "USED BY"],
                &rows,
                &Value::Array(profiles),
            )
            .map_err(CmdError::Output)?;
            out(&text)
        }
        ProfileCmd::Show { profile } => {
            let p = client.get(&path(&profile)).await?;
            out(&util::yaml_ordered(
                &p,
                &["config", "description", "devices", "name", "used_by"],
            )?)
        }
        ProfileCmd::Create {
            profile,
            description,
        } => {
            client
                .query(
                    "POST",
                    "/1.0/profiles",
                    Some(&json!({"name": profile, "description": description, "config": {}, "devices": {}})),
                )
                .await?;
            outln(&format!("Profile {profile} created"))
        }
        ProfileCmd::Edit { profile } => {
            let (p, etag) = client.get_etag(&path(&profile)).await?;
            let current =
                util::yaml_ordered(&p, &["name", "description", "config", "devices", "used_by"])?;
            util::edit(PROFILE_EDIT_HELP, &current, |text| {
                let etag = etag.clone();
                let profile = profile.clone();
                async move {
                    let mut v = util::parse_yaml(&text)?;
                    if let Some(c) = v.get_mut("config") {
                        util::stringify_map(c);
                    }
                    if let Some(d) = v.get_mut("devices") {
                        util::stringify_devices(d);
                    }
                    put_profile(client, &profile, &v, etag).await
                }
            })
            .await
        }
        ProfileCmd::Delete { profiles } => {
            for p in profiles {
                client.query("DELETE", &path(&p), None).await?;
                outln(&format!("Profile {p} deleted"))?;
            }
            Ok(())
        }
        ProfileCmd::Rename { old, new } => {
            client
                .query("POST", &path(&old), Some(&json!({"name": new})))
                .await?;
            outln(&format!("Profile {old} renamed to {new}"))
        }
        ProfileCmd::Get { profile, key } => {
            let p = client.get(&path(&profile)).await?;
            outln(&util::vs(p.get("config").and_then(|c| c.get(&key))))
        }
        ProfileCmd::Set { profile, args } => {
            let pairs = util::set_pairs(&args)?;
            let (mut p, etag) = client.get_etag(&path(&profile)).await?;
            let cfg = obj_mut(&mut p, "config")?;
            for (k, v) in pairs {
                cfg.insert(k, Value::String(v));
            }
            put_profile(client, &profile, &p, etag).await
        }
        ProfileCmd::Unset { profile, key } => {
            let (mut p, etag) = client.get_etag(&path(&profile)).await?;
            if obj_mut(&mut p, "config")?.remove(&key).is_none() {
                return fail(format!("can't unset key '{key}', it's not currently set"));
            }
            put_profile(client, &profile, &p, etag).await
        }
        ProfileCmd::Add { instance, profile } => {
            let (inst, _) = get_instance(client, &instance).await?;
            let mut profiles = profiles_of(&inst);
            if profiles.contains(&profile) {
                return fail(format!(
                    "Profile {profile} is already applied to {instance}"
                ));
            }
            profiles.push(profile.clone());
            set_profiles(client, &instance, profiles).await?;
            outln(&format!("Profile {profile} added to {instance}"))
        }
        ProfileCmd::Remove { instance, profile } => {
            let (inst, _) = get_instance(client, &instance).await?;
            let mut profiles = profiles_of(&inst);
            if !profiles.contains(&profile) {
                return fail(format!(
                    "Profile {profile} isn't currently applied to {instance}"
                ));
            }
            profiles.retain(|p| *p != profile);
            set_profiles(client, &instance, profiles).await?;
            outln(&format!("Profile {profile} removed from {instance}"))
        }
        ProfileCmd::Assign { instance, profiles } => {
            let list: Vec<String> = if profiles.is_empty() {
                Vec::new()
            } else {
                profiles.split(',').map(str::to_string).collect()
            };
            set_profiles(client, &instance, list).await?;
            if profiles.is_empty() {
                outln(&format!("Profiles removed from {instance}"))
            } else {
                outln(&format!("Profiles {profiles} applied to {instance}"))
            }
        }
        ProfileCmd::Device(d) => device(client, d).await,
    }
}

async fn device(client: &Client, cmd: ProfileDeviceCmd) -> Result<(), CmdError> {
    match cmd {
        ProfileDeviceCmd::Add {
            profile,
            device,
            kind,
            props,
        } => {
            let (mut p, etag) = client.get_etag(&path(&profile)).await?;
            add_device(obj_mut(&mut p, "devices")?, &device, &kind, &props)?;
            put_profile(client, &profile, &p, etag).await?;
            outln(&format!("Device {device} added to {profile}"))
        }
        ProfileDeviceCmd::Remove { profile, devices } => {
            let (mut p, etag) = client.get_etag(&path(&profile)).await?;
            let local = obj_mut(&mut p, "devices")?;
            for d in &devices {
                if local.remove(d).is_none() {
                    return fail("Device doesn't exist");
                }
            }
            put_profile(client, &profile, &p, etag).await?;
            for d in &devices {
                outln(&format!("Device {d} removed from {profile}"))?;
            }
            Ok(())
        }
        ProfileDeviceCmd::Show { profile } => {
            let p = client.get(&path(&profile)).await?;
            out(&util::yaml(
                &p.get("devices").cloned().unwrap_or(json!({})),
            )?)
        }
        ProfileDeviceCmd::List { profile } => {
            let p = client.get(&path(&profile)).await?;
            out(&device_names(
                &p.get("devices").cloned().unwrap_or(json!({})),
            ))
        }
    }
}
