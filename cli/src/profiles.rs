//! `silo profile ...`, as `lxc profile` does it.

use clap::Subcommand;
use serde_json::Value;
use silo_api::{lenient, Profile, ProfilePost, ProfilePut, ProfilesPost};

use crate::client::Client;
use crate::commands::CmdError;
use crate::config::{add_device, change_instance, device_names, devices_yaml, get_instance};
use crate::format::{self, Format};
use crate::util::{self, fail, out, outln};

/// `silo profile ...`.
#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// List profiles.
    #[command(alias = "ls")]
    List {
        /// `REMOTE:` to list on another server.
        #[arg(value_name = "REMOTE:")]
        remote: Option<String>,
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
    /// Copy a profile (config, description, devices) to a new name.
    #[command(alias = "cp")]
    Copy {
        /// The profile to copy.
        source: String,
        /// The new profile's name.
        target: String,
        /// Update the target if it exists already.
        #[arg(long)]
        refresh: bool,
    },
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
    /// Print a key of a profile's device.
    Get {
        /// The profile.
        profile: String,
        /// The device.
        device: String,
        /// The key.
        key: String,
    },
    /// Set keys of a profile's device: KEY VALUE, or KEY=VALUE...
    Set {
        /// The profile.
        profile: String,
        /// The device.
        device: String,
        /// KEY VALUE, or KEY=VALUE...
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Remove a key from a profile's device.
    Unset {
        /// The profile.
        profile: String,
        /// The device.
        device: String,
        /// The key.
        key: String,
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

/// Changes a profile's writable part with `change` and PUTs it back with If-Match.
pub async fn change_profile(
    client: &Client,
    name: &str,
    change: impl FnOnce(&mut ProfilePut) -> Result<(), CmdError>,
) -> Result<(), CmdError> {
    let (p, etag) = client.profile_etag(name).await?;
    let mut put = ProfilePut::from(&p);
    change(&mut put)?;
    client.update_profile(name, &put, etag).await?;
    Ok(())
}

async fn set_profiles(
    client: &Client,
    instance: &str,
    profiles: Vec<String>,
) -> Result<(), CmdError> {
    change_instance(client, instance, |_, put| {
        put.profiles = profiles;
        Ok(())
    })
    .await
}

fn as_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// `silo profile list`: the profiles, how many use each.
async fn list(client: &Client, format: Format) -> Result<(), CmdError> {
    let profiles: Vec<Profile> = client.profiles().await?;
    let mut rows: Vec<Vec<String>> = profiles
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.description.clone(),
                p.used_by.len().to_string(),
            ]
        })
        .collect();
    util::sort_rows(&mut rows);
    let text = format::render(
        format,
        &["NAME", "DESCRIPTION", "USED BY"],
        &rows,
        &as_value(&profiles),
    )
    .map_err(CmdError::Output)?;
    out(&text)
}

/// `silo profile edit`: the profile in the editor, saved with its ETag.
async fn edit(client: &Client, profile: &str) -> Result<(), CmdError> {
    let (p, etag) = client.profile_etag(profile).await?;
    let current = util::yaml_ordered(
        &as_value(&p),
        &["name", "description", "config", "devices", "used_by"],
    )?;
    util::edit(PROFILE_EDIT_HELP, &current, |text| {
        let etag = etag.clone();
        let profile = profile.to_string();
        async move {
            let put: ProfilePut = lenient::from_yaml_value(util::parse_yaml(&text)?)
                .map_err(|e| CmdError::Fail(e.to_string()))?;
            client.update_profile(&profile, &put, etag).await?;
            Ok(())
        }
    })
    .await
}

/// Runs `silo profile ...`.
pub async fn run(client: &Client, cmd: ProfileCmd) -> Result<(), CmdError> {
    match cmd {
        ProfileCmd::List { format, .. } => list(client, format).await,
        ProfileCmd::Show { profile } => {
            let p = client.profile(&profile).await?;
            out(&util::yaml_ordered(
                &as_value(&p),
                &["config", "description", "devices", "name", "used_by"],
            )?)
        }
        ProfileCmd::Create {
            profile,
            description,
        } => {
            client
                .create_profile(&ProfilesPost {
                    name: profile.clone(),
                    description,
                    ..Default::default()
                })
                .await?;
            outln(&format!("Profile {profile} created"))
        }
        ProfileCmd::Edit { profile } => edit(client, &profile).await,
        ProfileCmd::Copy {
            source,
            target,
            refresh,
        } => {
            let p = client.profile(&source).await?;
            if refresh && client.profile(&target).await.is_ok() {
                return change_profile(client, &target, |put| {
                    put.config = p.config.clone();
                    put.description = p.description.clone();
                    put.devices = p.devices.clone();
                    Ok(())
                })
                .await;
            }
            client
                .create_profile(&ProfilesPost {
                    name: target,
                    config: p.config,
                    description: p.description,
                    devices: p.devices,
                })
                .await?;
            Ok(())
        }
        ProfileCmd::Delete { profiles } => {
            for p in profiles {
                client.delete_profile(&p).await?;
                outln(&format!("Profile {p} deleted"))?;
            }
            Ok(())
        }
        ProfileCmd::Rename { old, new } => {
            client
                .rename_profile(&old, &ProfilePost { name: new.clone() })
                .await?;
            outln(&format!("Profile {old} renamed to {new}"))
        }
        ProfileCmd::Get { profile, key } => {
            let p = client.profile(&profile).await?;
            outln(p.config.get(&key).map(String::as_str).unwrap_or_default())
        }
        ProfileCmd::Set { profile, args } => {
            let pairs = util::set_pairs(&args)?;
            change_profile(client, &profile, |put| {
                put.config.extend(pairs);
                Ok(())
            })
            .await
        }
        ProfileCmd::Unset { profile, key } => {
            change_profile(client, &profile, |put| {
                if put.config.remove(&key).is_none() {
                    return fail(format!("can't unset key '{key}', it's not currently set"));
                }
                Ok(())
            })
            .await
        }
        ProfileCmd::Add { instance, profile } => {
            let (inst, _) = get_instance(client, &instance).await?;
            let mut profiles = inst.profiles;
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
            let mut profiles = inst.profiles;
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
            change_profile(client, &profile, |put| {
                add_device(&mut put.devices, &device, &kind, &props)
            })
            .await?;
            outln(&format!("Device {device} added to {profile}"))
        }
        ProfileDeviceCmd::Remove { profile, devices } => {
            change_profile(client, &profile, |put| {
                for d in &devices {
                    if put.devices.remove(d).is_none() {
                        return fail("Device doesn't exist");
                    }
                }
                Ok(())
            })
            .await?;
            for d in &devices {
                outln(&format!("Device {d} removed from {profile}"))?;
            }
            Ok(())
        }
        ProfileDeviceCmd::Show { profile } => {
            let p = client.profile(&profile).await?;
            out(&devices_yaml(&p.devices)?)
        }
        ProfileDeviceCmd::List { profile } => {
            let p = client.profile(&profile).await?;
            out(&device_names(&p.devices))
        }
        ProfileDeviceCmd::Get {
            profile,
            device,
            key,
        } => {
            let p = client.profile(&profile).await?;
            let Some(d) = p.devices.get(&device) else {
                return fail("Device doesn't exist");
            };
            outln(d.get(&key).map(String::as_str).unwrap_or_default())
        }
        ProfileDeviceCmd::Set {
            profile,
            device,
            args,
        } => {
            let kvs = util::set_pairs(&args)?;
            change_profile(client, &profile, |put| match put.devices.get_mut(&device) {
                Some(d) => {
                    d.extend(kvs);
                    Ok(())
                }
                None => fail("Device doesn't exist"),
            })
            .await
        }
        ProfileDeviceCmd::Unset {
            profile,
            device,
            key,
        } => {
            change_profile(client, &profile, |put| match put.devices.get_mut(&device) {
                Some(d) => {
                    d.remove(&key);
                    Ok(())
                }
                None => fail("Device doesn't exist"),
            })
            .await
        }
    }
}
