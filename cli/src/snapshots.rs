//! `silo snapshot`, `silo restore`, `silo move`/`rename`, as `lxc` does them.

use silo_api::{
    ImageAlias, ImagesPost, ImagesPostSource, InstancePost, InstancePut, InstanceSnapshotPost,
    InstanceSnapshotsPost, InstanceSource, InstanceStatePut, InstancesPost,
};

use crate::client::Client;
use crate::commands::CmdError;
use crate::util::fail;

/// `silo snapshot`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  silo snapshot c1            a snapshot named snap<N>
  silo snapshot c1 before-upgrade")]
pub struct SnapshotArgs {
    /// The instance.
    pub instance: String,
    /// The snapshot's name (default: snap<N>).
    pub name: Option<String>,
    /// Replace an existing snapshot of that name.
    #[arg(long)]
    pub reuse: bool,
    /// Never expire, whatever snapshots.expiry says.
    #[arg(long)]
    pub no_expiry: bool,
    /// Include the running state (not supported: silo has no CRIU).
    #[arg(long)]
    pub stateful: bool,
}

/// `silo restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The instance.
    pub instance: String,
    /// The snapshot to restore.
    pub snapshot: String,
}

/// `silo move` / `silo rename`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  silo move c1 c2                      rename a stopped instance (and its snapshots)
  silo move c1/snap0 c1/before-upgrade rename a snapshot
  silo move a:c1 b:c1                  to another server: copied, then deleted from a")]
pub struct MoveArgs {
    /// The instance or INSTANCE/SNAPSHOT.
    pub source: String,
    /// The new name (INSTANCE/SNAPSHOT or just SNAPSHOT for a snapshot), or REMOTE:[NAME]
    /// to move the instance to another server.
    pub target: String,
    /// Between servers: who connects to whom (pull: the target dials the source; push: the
    /// source dials the target; relay: this client dials both).
    #[arg(long, value_enum, default_value_t = crate::migrate::Mode::Pull)]
    pub mode: crate::migrate::Mode,
    /// Between servers: move the instance without its snapshots.
    #[arg(long)]
    pub instance_only: bool,
    /// Between servers: move a running instance without its state (it is stopped, and its
    /// copy started on the target).
    #[arg(long)]
    pub stateless: bool,
    /// Between servers: a configuration key for the moved instance (repeatable).
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Between servers: the moved instance's profiles instead of the source's (repeatable).
    #[arg(short = 'p', long = "profile")]
    pub profiles: Vec<String>,
    /// Between servers: no profiles on the moved instance.
    #[arg(long, conflicts_with = "profiles")]
    pub no_profiles: bool,
    /// Between servers: the storage pool of the moved instance's root disk.
    #[arg(short = 's', long, value_name = "POOL")]
    pub storage: Option<String>,
}

impl MoveArgs {
    /// Whether an option only a move between servers takes was given.
    fn has_overrides(&self) -> bool {
        !self.config.is_empty() || !self.profiles.is_empty() || self.no_profiles
    }
}

/// `silo snapshot INSTANCE [NAME]`.
pub async fn snapshot(client: &Client, a: SnapshotArgs) -> Result<(), CmdError> {
    if a.reuse {
        if let Some(n) = &a.name {
            if client.snapshot(&a.instance, n).await.is_ok() {
                client.delete_snapshot(&a.instance, n).await?;
            }
        }
    }
    let req = InstanceSnapshotsPost {
        name: a.name.clone().unwrap_or_default(),
        stateful: a.stateful,
        // LXD's zero time is "never"; none at all is the instance's snapshots.expiry.
        expires_at: a.no_expiry.then(|| silo_api::ZERO_TIME.to_string()),
    };
    client.create_snapshot(&a.instance, &req).await?;
    Ok(())
}

/// `silo restore INSTANCE SNAPSHOT`.
pub async fn restore(client: &Client, a: RestoreArgs) -> Result<(), CmdError> {
    let put = InstancePut {
        restore: a.snapshot,
        ..Default::default()
    };
    client.update_instance(&a.instance, &put, None).await?;
    Ok(())
}

/// `silo move SOURCE TARGET`: an instance rename, or a snapshot rename.
pub async fn move_cmd(client: &Client, a: MoveArgs) -> Result<(), CmdError> {
    if a.has_overrides() {
        return fail("Can't override configuration or profiles in local rename");
    }
    if a.storage.is_some() {
        return fail("Moving an instance to another storage pool is not supported yet");
    }
    match a.source.split_once('/') {
        Some((inst, snap)) => {
            let new = match a.target.split_once('/') {
                Some((i, s)) if i == inst => s,
                Some(_) => return fail("A snapshot can only be renamed within its instance"),
                None => a.target.as_str(),
            };
            let req = InstanceSnapshotPost {
                name: new.to_string(),
                ..Default::default()
            };
            client.rename_snapshot(inst, snap, &req).await?;
        }
        None => {
            if a.target.contains('/') {
                return fail("An instance cannot be renamed into a snapshot");
            }
            let req = InstancePost {
                name: a.target.clone(),
                ..Default::default()
            };
            client.rename_instance(&a.source, &req).await?;
        }
    }
    Ok(())
}

/// `silo copy`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  silo copy c1 c2                 the instance and its snapshots
  silo copy c1/snap0 c3           a new instance from a snapshot
  silo copy c1 c4 --instance-only
  silo copy a:c1 b:c1             to another server (b pulls from a; --mode push|relay)
  silo copy a:c1/snap0 b:c5 -c limits.memory=64MiB")]
pub struct CopyArgs {
    /// The instance or INSTANCE/SNAPSHOT to copy.
    pub source: String,
    /// The new instance's name (the server picks one when omitted).
    pub target: Option<String>,
    /// Copy the instance without its snapshots.
    #[arg(long)]
    pub instance_only: bool,
    /// A configuration key for the copy (repeatable; replaces the source's config).
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Make the copy ephemeral.
    #[arg(short = 'e', long)]
    pub ephemeral: bool,
    /// Bring an existing copy up to date with the source (root filesystem and snapshots).
    #[arg(long)]
    pub refresh: bool,
    /// Between servers: who connects to whom (pull: the target dials the source; push: the
    /// source dials the target; relay: this client dials both).
    #[arg(long, value_enum, default_value_t = crate::migrate::Mode::Pull)]
    pub mode: crate::migrate::Mode,
    /// Between servers: copy a running instance without its state (silo has no CRIU, so a
    /// running instance copies only this way).
    #[arg(long)]
    pub stateless: bool,
    /// The copy's profiles instead of the source's (repeatable).
    #[arg(short = 'p', long = "profile")]
    pub profiles: Vec<String>,
    /// No profiles on the copy.
    #[arg(long, conflicts_with = "profiles")]
    pub no_profiles: bool,
    /// The storage pool of the copy's root disk.
    #[arg(short = 's', long, value_name = "POOL")]
    pub storage: Option<String>,
}

/// `silo copy SOURCE [TARGET]`.
pub async fn copy(client: &Client, a: CopyArgs) -> Result<(), CmdError> {
    if a.refresh && a.no_profiles {
        return fail("--no-profiles cannot be used with --refresh");
    }
    let profiles = if a.no_profiles {
        Some(Vec::new())
    } else if a.profiles.is_empty() {
        None
    } else {
        Some(a.profiles.clone())
    };
    // The source's devices with the root disk on POOL (the server takes the source's own
    // devices when the request brings none).
    let devices = match &a.storage {
        None => silo_api::DeviceMap::new(),
        Some(pool) => {
            let devices = match a.source.split_once('/') {
                Some((i, s)) => client.snapshot(i, s).await?.devices,
                None => client.instance(&a.source).await?.devices,
            };
            crate::migrate::with_root_pool(devices, pool)?
        }
    };
    let req = InstancesPost {
        name: a.target.clone().unwrap_or_default(),
        source: InstanceSource {
            kind: "copy".into(),
            source: a.source.clone(),
            instance_only: a.instance_only,
            refresh: a.refresh,
            ..Default::default()
        },
        ephemeral: a.ephemeral,
        config: crate::util::kv_map(&a.config)?,
        profiles,
        devices,
        ..Default::default()
    };
    client.create_instance(&req).await?;
    Ok(())
}

/// `silo publish`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  silo publish c1/snap0 --alias web-base
  silo publish c1 --alias x --compression xz os=Debian release=12")]
pub struct PublishArgs {
    /// The stopped instance, or INSTANCE/SNAPSHOT.
    pub source: String,
    /// Properties of the image (KEY=VALUE).
    pub properties: Vec<String>,
    /// An alias for the new image (repeatable).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// gzip (default), xz, zstd or none.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Make the image public.
    #[arg(long)]
    pub public: bool,
    /// Stop a running instance for the publish and start it again after.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `silo publish SOURCE`, printing "Instance published with fingerprint: <fp>" as lxc does.
pub async fn publish(client: &Client, a: PublishArgs) -> Result<(), CmdError> {
    if a.source.contains(':') {
        return fail("Publishing to or from another server is not supported yet");
    }
    let snapshot = a.source.contains('/');
    let mut restart = false;
    if !snapshot {
        let st = client.instance_state(&a.source).await?;
        if st.status_code == 103 {
            if !a.force {
                return fail("The instance is currently running. Use --force to have it stopped and restarted");
            }
            let stop = InstanceStatePut {
                action: "stop".into(),
                timeout: 30,
                ..Default::default()
            };
            client.set_instance_state(&a.source, &stop).await?;
            restart = true;
        }
    }
    let req = ImagesPost {
        source: ImagesPostSource {
            kind: if snapshot { "snapshot" } else { "instance" }.into(),
            name: a.source.clone(),
            ..Default::default()
        },
        properties: crate::util::kv_map(&a.properties)?,
        aliases: a
            .aliases
            .iter()
            .map(|n| ImageAlias {
                name: n.clone(),
                description: String::new(),
            })
            .collect(),
        public: a.public,
        compression_algorithm: a.compression.clone(),
        ..Default::default()
    };
    let r = client.publish(&req).await;
    if restart {
        let start = InstanceStatePut {
            action: "start".into(),
            ..Default::default()
        };
        client.set_instance_state(&a.source, &start).await?;
    }
    let created: silo_api::ImageCreated = r?.metadata_as().unwrap_or_default();
    crate::util::outln(&format!(
        "Instance published with fingerprint: {}",
        created.fingerprint
    ))
}
