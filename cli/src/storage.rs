//! `silo storage ...`: pools and their volumes, as `lxc storage` does them.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde_json::{json, Value};
use silo_api::{lenient, StoragePoolPut, StoragePoolsPost, StorageVolumesPost};

use crate::client::Client;
use crate::commands::CmdError;
use crate::format::{self, Format};
use crate::util::{self, fail, out, outln};

/// `silo storage ...`.
#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// Create a storage pool.
    #[command(after_help = "Example: silo storage create fast dir")]
    Create {
        /// The pool.
        pool: String,
        /// The driver (dir, ...).
        driver: String,
        /// Configuration keys.
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Its description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List storage pools.
    #[command(alias = "ls")]
    List {
        /// `REMOTE:` to list on another server.
        #[arg(value_name = "REMOTE:")]
        remote: Option<String>,
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a storage pool as YAML.
    Show {
        /// The pool.
        pool: String,
        /// Show the pool's resources (space) instead.
        #[arg(long)]
        resources: bool,
    },
    /// Show useful information about a storage pool: space and users.
    Info {
        /// The pool.
        pool: String,
        /// Show the space in bytes.
        #[arg(long)]
        bytes: bool,
    },
    /// Edit a storage pool's description and configuration in $EDITOR (or from YAML on
    /// stdin).
    Edit {
        /// The pool.
        pool: String,
    },
    /// Delete storage pools.
    #[command(alias = "rm")]
    Delete {
        /// The pools.
        #[arg(required = true)]
        pools: Vec<String>,
    },
    /// Print a storage pool configuration key.
    Get {
        /// The pool.
        pool: String,
        /// The key.
        key: String,
    },
    /// Set storage pool configuration keys: POOL KEY VALUE, or POOL KEY=VALUE...
    Set {
        /// The pool.
        pool: String,
        /// KEY VALUE, or KEY=VALUE...
        #[arg(required = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Unset a storage pool configuration key.
    Unset {
        /// The pool.
        pool: String,
        /// The key.
        key: String,
    },
    /// Manage storage volumes.
    #[command(subcommand)]
    Volume(VolumeCmd),
}

/// `silo storage volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// List a pool's volumes.
    #[command(alias = "ls")]
    List {
        /// The pool.
        pool: String,
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
        /// Volumes of every project (silo has the default project only), with a PROJECT
        /// column first, as lxc shows them.
        #[arg(long)]
        all_projects: bool,
    },
    /// Create a custom volume.
    Create {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// Configuration keys.
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Its description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete custom volumes (or a snapshot: VOLUME/SNAPSHOT).
    #[command(alias = "rm")]
    Delete {
        /// The pool.
        pool: String,
        /// The volumes ([custom/]NAME[/SNAPSHOT]).
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Show a volume (or a snapshot: VOLUME/SNAPSHOT) as YAML ([TYPE/]NAME, TYPE custom,
    /// container or image; default custom).
    Show {
        /// The pool.
        pool: String,
        /// [TYPE/]NAME[/SNAPSHOT].
        volume: String,
    },
    /// Print a volume's (or a snapshot's) configuration key.
    Get {
        /// The pool.
        pool: String,
        /// [custom/]NAME[/SNAPSHOT].
        volume: String,
        /// The key.
        key: String,
    },
    /// Set volume configuration keys: KEY=VALUE... or KEY VALUE.
    Set {
        /// The pool.
        pool: String,
        /// [custom/]NAME.
        volume: String,
        /// KEY=VALUE..., or KEY VALUE.
        #[arg(required = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Unset a volume configuration key.
    Unset {
        /// The pool.
        pool: String,
        /// [custom/]NAME.
        volume: String,
        /// The key.
        key: String,
    },
    /// Edit a volume's (or a snapshot's) writable part as YAML in $EDITOR (or from stdin).
    Edit {
        /// The pool.
        pool: String,
        /// [custom/]NAME[/SNAPSHOT].
        volume: String,
    },
    /// Show a volume's usage and snapshots.
    Info {
        /// The pool.
        pool: String,
        /// [custom/]NAME.
        volume: String,
    },
    /// Rename a volume (OLD NEW) or a snapshot (VOL/OLD VOL/NEW).
    Rename {
        /// The pool.
        pool: String,
        /// The current name.
        old: String,
        /// The new name.
        new: String,
    },
    /// Copy a volume: POOL/VOLUME POOL/VOLUME.
    #[command(alias = "cp")]
    Copy {
        /// POOL/VOLUME.
        source: String,
        /// POOL/VOLUME.
        target: String,
        /// Copy the volume without its snapshots.
        #[arg(long)]
        volume_only: bool,
    },
    /// Move (or rename) a volume, within a pool or to another: POOL/VOLUME POOL/VOLUME.
    #[command(alias = "mv")]
    Move {
        /// POOL/VOLUME.
        source: String,
        /// POOL/VOLUME.
        target: String,
    },
    /// Snapshot a custom volume.
    Snapshot {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// The snapshot's name (default: the volume's snapshots.pattern, snap%d).
        snapshot: Option<String>,
        /// The snapshot never expires (whatever snapshots.expiry says).
        #[arg(long)]
        no_expiry: bool,
        /// Replace a snapshot of the same name.
        #[arg(long)]
        reuse: bool,
    },
    /// Restore a custom volume from one of its snapshots.
    Restore {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// The snapshot.
        snapshot: String,
    },
    /// Attach a custom volume to an instance: POOL VOLUME INSTANCE [DEVICE] PATH.
    Attach {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// The instance.
        instance: String,
        /// [DEVICE] PATH (the device is named after the volume by default).
        #[arg(num_args = 0..=2)]
        rest: Vec<String>,
    },
    /// Detach a custom volume from an instance.
    Detach {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// The instance.
        instance: String,
        /// The device (found by pool and volume when left out).
        device: Option<String>,
    },
    /// Attach a custom volume to a profile: POOL VOLUME PROFILE [DEVICE] PATH.
    AttachProfile {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// The profile.
        profile: String,
        /// [DEVICE] PATH (the device is named after the volume by default).
        #[arg(num_args = 0..=2)]
        rest: Vec<String>,
    },
    /// Detach a custom volume from a profile.
    DetachProfile {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// The profile.
        profile: String,
        /// The device (found by pool and volume when left out).
        device: Option<String>,
    },
    /// Export a custom volume (and its snapshots) as a backup tarball: POOL VOLUME [FILE].
    Export {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// The file to write (default: backup.tar.gz, as lxc).
        target: Option<std::path::PathBuf>,
        /// Leave the snapshots out.
        #[arg(long)]
        volume_only: bool,
        /// Use the storage driver's own format (not supported).
        #[arg(long)]
        optimized_storage: bool,
        /// gzip (default), xz, zstd or none.
        #[arg(long = "compression", default_value = "gzip")]
        compression: String,
    },
    /// Import a custom volume backup: POOL FILE [VOLUME].
    Import {
        /// The pool.
        pool: String,
        /// The backup file.
        file: std::path::PathBuf,
        /// The new volume's name (default: the backup's).
        volume: Option<String>,
    },
}

const VOLUME_EDIT_HELP: &str = "### This is a YAML representation of a storage volume.
### Any line starting with a '# will be ignored.
###
### A storage volume consists of a set of configuration items.
###
### name: vol1
### type: custom
### used_by: []
### config:
###   size: \"61203283968\"";

/// lxc's `parseVolume`: "image/abc" → ("abc", "image"); a name without a known type prefix
/// is a custom volume.
fn parse_volume(arg: &str) -> (String, String) {
    match arg.split_once('/') {
        Some((t, n)) if ["custom", "image", "container", "virtual-machine"].contains(&t) => {
            (n.to_string(), t.to_string())
        }
        _ => (arg.to_string(), "custom".to_string()),
    }
}

/// Groups used_by URLs by kind, as `lxc storage info` does.
fn group_used_by(urls: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for u in urls {
        let (path, query) = u.split_once('?').unwrap_or((u.as_str(), ""));
        let fields: Vec<&str> = path
            .trim_start_matches(silo_api::paths::API)
            .trim_start_matches('/')
            .split('/')
            .collect();
        let n = fields.len();
        let (mut kind, mut name) = ("unrecognized".to_string(), path.to_string());
        if n > 1 {
            kind = fields[0].to_string();
            name = fields[1].to_string();
            if fields[n - 2] == "snapshots" {
                continue;
            }
            if fields[0] == "storage-pools" && n > 3 {
                kind = fields[2].to_string();
                name = fields[3].to_string();
                if kind == "volumes" && n > 4 {
                    name = fields[4].to_string();
                }
            }
        }
        let mut attribs = Vec::new();
        for (k, v) in query.split('&').filter_map(|p| p.split_once('=')) {
            if k == "project" && !v.is_empty() {
                attribs.push(format!("project {v:?}"));
            }
            if k == "target" && !v.is_empty() {
                attribs.push(format!("location {v:?}"));
            }
        }
        if !attribs.is_empty() {
            name = format!("{name} ({})", attribs.join(", "));
        }
        m.entry(kind).or_default().push(name);
    }
    m
}

/// Changes a pool's writable part with `change` and PUTs it back with If-Match.
async fn change_pool(
    client: &Client,
    name: &str,
    change: impl FnOnce(&mut StoragePoolPut) -> Result<(), CmdError>,
) -> Result<(), CmdError> {
    let (p, etag) = client.storage_pool_etag(name).await?;
    let mut put = StoragePoolPut::from(&p);
    change(&mut put)?;
    client.update_storage_pool(name, &put, etag).await?;
    Ok(())
}

fn as_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// `silo storage list`: the pools, their source, users and state.
async fn list(client: &Client, format: Format) -> Result<(), CmdError> {
    let pools = client.storage_pools().await?;
    let mut rows: Vec<Vec<String>> = pools
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.driver.clone(),
                p.config.get("source").cloned().unwrap_or_default(),
                p.description.clone(),
                p.used_by.len().to_string(),
                p.status.to_uppercase(),
            ]
        })
        .collect();
    util::sort_rows(&mut rows);
    let text = format::render(
        format,
        &[
            "NAME",
            "DRIVER",
            "SOURCE",
            "DESCRIPTION",
            "USED BY",
            "STATE",
        ],
        &rows,
        &as_value(&pools),
    )
    .map_err(CmdError::Output)?;
    out(&text)
}

/// `silo storage show`: the pool's settings, or its resources with `--resources`.
async fn show(client: &Client, pool: &str, resources: bool) -> Result<(), CmdError> {
    if resources {
        let r = client.storage_pool_resources(pool).await?;
        return out(&util::yaml(&as_value(&r))?);
    }
    let mut p = client.storage_pool(pool).await?;
    p.used_by.sort();
    out(&util::yaml_ordered(
        &as_value(&p),
        &[
            "config",
            "description",
            "name",
            "driver",
            "used_by",
            "status",
            "locations",
        ],
    )?)
}

/// `silo storage info`: the pool's space and users.
async fn info(client: &Client, pool: &str, bytes: bool) -> Result<(), CmdError> {
    let p = client.storage_pool(pool).await?;
    let r = client.storage_pool_resources(pool).await?;
    let size = |n: u64| {
        if bytes {
            n.to_string()
        } else {
            util::size_iec(n)
        }
    };
    let mut info = BTreeMap::new();
    info.insert("name", p.name.clone());
    info.insert("driver", p.driver.clone());
    info.insert("description", p.description.clone());
    info.insert("total space", size(r.space.total));
    info.insert("space used", size(r.space.used));
    let info = json!({ "info": info });
    let users = json!({ "used by": group_used_by(&p.used_by) });
    out(&(util::yaml(&info)? + &util::yaml(&users)?))
}

/// Runs `silo storage ...`.
pub async fn run(client: &Client, cmd: StorageCmd) -> Result<(), CmdError> {
    match cmd {
        StorageCmd::Create {
            pool,
            driver,
            config,
            description,
        } => {
            client
                .create_storage_pool(&StoragePoolsPost {
                    config: util::kv_map(&config)?,
                    description,
                    name: pool.clone(),
                    driver,
                })
                .await?;
            outln(&format!("Storage pool {pool} created"))
        }
        StorageCmd::List { format, .. } => list(client, format).await,
        StorageCmd::Show { pool, resources } => show(client, &pool, resources).await,
        StorageCmd::Info { pool, bytes } => info(client, &pool, bytes).await,
        StorageCmd::Delete { pools } => {
            for p in pools {
                client.delete_storage_pool(&p).await?;
                outln(&format!("Storage pool {p} deleted"))?;
            }
            Ok(())
        }
        StorageCmd::Get { pool, key } => {
            let p = client.storage_pool(&pool).await?;
            outln(p.config.get(&key).map(String::as_str).unwrap_or_default())
        }
        StorageCmd::Set { pool, args } => {
            let pairs = util::set_pairs(&args)?;
            change_pool(client, &pool, |put| {
                put.config.extend(pairs);
                Ok(())
            })
            .await
        }
        StorageCmd::Unset { pool, key } => {
            change_pool(client, &pool, |put| {
                if put.config.remove(&key).is_none() {
                    return fail(format!("can't unset key '{key}', it's not currently set"));
                }
                Ok(())
            })
            .await
        }
        StorageCmd::Volume(v) => volume(client, v).await,
        StorageCmd::Edit { pool } => edit_pool(client, &pool).await,
    }
}

const POOL_EDIT_HELP: &str = "\
### This is a YAML representation of a storage pool.
### Any line starting with a '#' will be ignored.
###
### A storage pool consists of a set of configuration items.
###
### An example would look like:
### name: default
### driver: dir
### config:
###   source: /var/lib/silo/storage-pools/default
###
### Note that only the description and configuration keys can be changed.";

/// `silo storage edit POOL`: the pool as YAML, edited, PUT back with If-Match.
async fn edit_pool(client: &Client, pool: &str) -> Result<(), CmdError> {
    let (p, etag) = client.storage_pool_etag(pool).await?;
    let v = serde_json::to_value(&p).map_err(|e| CmdError::Output(e.to_string()))?;
    let current = util::yaml_ordered(
        &v,
        &[
            "config",
            "description",
            "name",
            "driver",
            "used_by",
            "status",
            "locations",
        ],
    )?;
    util::edit(POOL_EDIT_HELP, &current, |text| {
        let etag = etag.clone();
        let pool = pool.to_string();
        async move {
            let put: silo_api::StoragePoolPut =
                silo_api::lenient::from_yaml_value(util::parse_yaml(&text)?)
                    .map_err(|e| CmdError::Fail(e.to_string()))?;
            client.update_storage_pool(&pool, &put, etag).await?;
            Ok(())
        }
    })
    .await
}

async fn volume(client: &Client, cmd: VolumeCmd) -> Result<(), CmdError> {
    match cmd {
        VolumeCmd::List {
            pool,
            format,
            all_projects,
        } => {
            let vols = client.storage_volumes(&pool).await?;
            let mut rows: Vec<Vec<String>> = vols
                .iter()
                .map(|v| {
                    let mut row = vec![
                        // As lxc: a snapshot is `<volume>/<snapshot>`.
                        if v.name.contains('/') {
                            format!("{} (snapshot)", v.kind)
                        } else {
                            v.kind.clone()
                        },
                        v.name.clone(),
                        v.description.clone(),
                        v.content_type.clone(),
                        v.used_by.len().to_string(),
                    ];
                    if all_projects {
                        let project = if v.project.is_empty() {
                            "default"
                        } else {
                            v.project.as_str()
                        };
                        row.insert(0, project.to_string());
                    }
                    row
                })
                .collect();
            util::sort_rows(&mut rows);
            let mut headers = vec!["TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE", "USED BY"];
            if all_projects {
                headers.insert(0, "PROJECT");
            }
            let text = format::render(format, &headers, &rows, &as_value(&vols))
                .map_err(CmdError::Output)?;
            out(&text)
        }
        VolumeCmd::Create {
            pool,
            volume,
            config,
            description,
        } => {
            client
                .create_storage_volume(
                    &pool,
                    &StorageVolumesPost {
                        name: volume.clone(),
                        kind: "custom".into(),
                        description,
                        config: util::kv_map(&config)?,
                        ..Default::default()
                    },
                )
                .await?;
            outln(&format!("Storage volume {volume} created"))
        }
        VolumeCmd::Delete { pool, volumes } => {
            for v in volumes {
                let (name, kind) = parse_volume(&v);
                match split_snapshot(&name)? {
                    (vol, Some(snap)) => {
                        client
                            .run::<Value>("DELETE", &snapshot_path(&pool, &vol, &snap), None, &[])
                            .await?;
                    }
                    (_, None) => client.delete_storage_volume(&pool, &kind, &name).await?,
                }
                outln(&format!("Storage volume {name} deleted"))?;
            }
            Ok(())
        }
        VolumeCmd::Get { pool, volume, key } => {
            let (name, kind) = parse_volume(&volume);
            let config = match split_snapshot(&name)? {
                (vol, Some(snap)) => {
                    client
                        .get_as::<silo_api::StorageVolumeSnapshot>(&snapshot_path(
                            &pool, &vol, &snap,
                        ))
                        .await?
                        .config
                }
                (vol, None) => client.storage_volume(&pool, &kind, &vol).await?.config,
            };
            match config.get(&key) {
                Some(v) => outln(v),
                None => Ok(()),
            }
        }
        VolumeCmd::Set { pool, volume, args } => {
            let (name, _) = parse_volume(&volume);
            if split_snapshot(&name)?.1.is_some() {
                return fail("Snapshots are read-only and can't have their configuration changed");
            }
            let pairs = util::set_pairs(&args)?;
            change_volume(client, &pool, &name, |put| {
                put.config.extend(pairs);
                Ok(())
            })
            .await
        }
        VolumeCmd::Unset { pool, volume, key } => {
            let (name, _) = parse_volume(&volume);
            if split_snapshot(&name)?.1.is_some() {
                return fail("Snapshots are read-only and can't have their configuration changed");
            }
            // As lxc: the key set to "" (the server drops empty values).
            change_volume(client, &pool, &name, |put| {
                put.config.insert(key, String::new());
                Ok(())
            })
            .await
        }
        VolumeCmd::Edit { pool, volume } => volume_edit(client, &pool, &volume).await,
        VolumeCmd::Info { pool, volume } => volume_info(client, &pool, &volume).await,
        VolumeCmd::Rename { pool, old, new } => {
            let (name, kind) = parse_volume(&old);
            match split_snapshot(&name)? {
                (vol, Some(snap)) => {
                    let (nvol, nsnap) = split_snapshot(&new)?;
                    if nvol != vol {
                        return fail(
                            "Invalid new snapshot name, parent volume must be the same as source",
                        );
                    }
                    let Some(nsnap) = nsnap else {
                        return fail("Invalid new snapshot name");
                    };
                    client
                        .run(
                            "POST",
                            &snapshot_path(&pool, &vol, &snap),
                            Some(&silo_api::StorageVolumeSnapshotPost {
                                name: nsnap.clone(),
                            }),
                            &[],
                        )
                        .await?;
                    outln(&format!(
                        "Renamed storage volume from \"{name}\" to \"{nsnap}\""
                    ))
                }
                (vol, None) => {
                    client
                        .run(
                            "POST",
                            &silo_api::paths::storage_volume(&pool, &kind, &vol),
                            Some(&silo_api::StorageVolumePost {
                                name: new.clone(),
                                ..Default::default()
                            }),
                            &[],
                        )
                        .await?;
                    outln(&format!(
                        "Renamed storage volume from \"{vol}\" to \"{new}\""
                    ))
                }
            }
        }
        VolumeCmd::Copy {
            source,
            target,
            volume_only,
        } => {
            let (sp, sv) = pool_volume(&source, "source")?;
            let (tp, tv) = pool_volume(&target, "target")?;
            // A snapshot's copy takes the snapshot's config and description (as lxc).
            let (config, description) = match split_snapshot(&sv)? {
                (vol, Some(snap)) => {
                    let s: silo_api::StorageVolumeSnapshot =
                        client.get_as(&snapshot_path(&sp, &vol, &snap)).await?;
                    (s.config, s.description)
                }
                (vol, None) => {
                    let v: silo_api::StorageVolume = client
                        .get_as(&silo_api::paths::storage_volume(&sp, "custom", &vol))
                        .await?;
                    (v.config, v.description)
                }
            };
            client
                .run(
                    "POST",
                    &silo_api::paths::storage_volumes_of(&tp, "custom"),
                    Some(&StorageVolumesPost {
                        name: tv,
                        kind: "custom".into(),
                        description,
                        config,
                        source: Some(silo_api::StorageVolumeSource {
                            name: sv,
                            kind: "copy".into(),
                            pool: sp,
                            volume_only,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    &[],
                )
                .await?;
            outln("Storage volume copied successfully!")
        }
        VolumeCmd::Move { source, target } => {
            let (sp, sv) = pool_volume(&source, "source")?;
            let (tp, tv) = pool_volume(&target, "target")?;
            client
                .run(
                    "POST",
                    &silo_api::paths::storage_volume(&sp, "custom", &sv),
                    Some(&silo_api::StorageVolumePost {
                        name: tv,
                        pool: tp,
                        ..Default::default()
                    }),
                    &[],
                )
                .await?;
            outln("Storage volume moved successfully!")
        }
        VolumeCmd::Snapshot {
            pool,
            volume,
            snapshot,
            no_expiry,
            reuse,
        } => {
            let (name, kind) = parse_volume(&volume);
            if kind != "custom" {
                return fail("Only \"custom\" volumes can be snapshotted");
            }
            client.storage_volume(&pool, &kind, &name).await?;
            if let (true, Some(s)) = (reuse, &snapshot) {
                let p = snapshot_path(&pool, &name, s);
                if client.get(&p).await.is_ok() {
                    client.run::<Value>("DELETE", &p, None, &[]).await?;
                }
            }
            let req = silo_api::StorageVolumeSnapshotsPost {
                name: snapshot.unwrap_or_default(),
                expires_at: no_expiry.then(|| silo_api::ZERO_TIME.to_string()),
            };
            client
                .run(
                    "POST",
                    &format!(
                        "{}/snapshots",
                        silo_api::paths::storage_volume(&pool, "custom", &name)
                    ),
                    Some(&req),
                    &[],
                )
                .await?;
            Ok(())
        }
        VolumeCmd::Restore {
            pool,
            volume,
            snapshot,
        } => {
            let path = silo_api::paths::storage_volume(&pool, "custom", &volume);
            client.get(&path).await?;
            client
                .run(
                    "PUT",
                    &path,
                    Some(&silo_api::StorageVolumePut {
                        restore: snapshot,
                        ..Default::default()
                    }),
                    &[],
                )
                .await?;
            Ok(())
        }
        VolumeCmd::Attach {
            pool,
            volume,
            instance,
            rest,
        } => {
            let (name, kind) = parse_volume(&volume);
            if kind != "custom" {
                return fail("Only \"custom\" volumes can be attached to instances");
            }
            let (dev, path) = attach_args(&name, &rest);
            crate::config::change_instance(client, &instance, |_, put| {
                crate::config::insert_device(
                    &mut put.devices,
                    &dev,
                    disk_device(&pool, &name, &path),
                )
            })
            .await
        }
        VolumeCmd::Detach {
            pool,
            volume,
            instance,
            device,
        } => {
            crate::config::change_instance(client, &instance, |_, put| {
                let dev = detach_name(&put.devices, &pool, &volume, device)?;
                put.devices.remove(&dev);
                Ok(())
            })
            .await
        }
        VolumeCmd::AttachProfile {
            pool,
            volume,
            profile,
            rest,
        } => {
            let (name, kind) = parse_volume(&volume);
            if kind != "custom" {
                return fail("Only \"custom\" volumes can be attached to instances");
            }
            // As lxc: the volume must exist.
            let v = client.storage_volume(&pool, &kind, &name).await?;
            let (dev, path) = attach_args(&name, &rest);
            crate::profiles::change_profile(client, &profile, |put| {
                crate::config::insert_device(
                    &mut put.devices,
                    &dev,
                    disk_device(&pool, &v.name, &path),
                )
            })
            .await
        }
        VolumeCmd::DetachProfile {
            pool,
            volume,
            profile,
            device,
        } => {
            crate::profiles::change_profile(client, &profile, |put| {
                let dev = detach_name(&put.devices, &pool, &volume, device)?;
                put.devices.remove(&dev);
                Ok(())
            })
            .await
        }
        VolumeCmd::Export {
            pool,
            volume,
            target,
            volume_only,
            optimized_storage,
            compression,
        } => {
            let req = silo_api::StoragePoolVolumeBackupsPost {
                volume_only,
                optimized_storage,
                compression_algorithm: compression,
                ..Default::default()
            };
            volume_export(client, &pool, &volume, target, &req).await
        }
        VolumeCmd::Import { pool, file, volume } => {
            volume_import(client, &pool, &file, volume).await
        }
        VolumeCmd::Show { pool, volume } => {
            let (name, kind) = parse_volume(&volume);
            if let (vol, Some(snap)) = split_snapshot(&name)? {
                let s = client.get(&snapshot_path(&pool, &vol, &snap)).await?;
                return out(&util::yaml_ordered(
                    &s,
                    &[
                        "description",
                        "expires_at",
                        "name",
                        "config",
                        "content_type",
                        "created_at",
                    ],
                )?);
            }
            let mut v = as_value(&client.storage_volume(&pool, &kind, &name).await?);
            // Fields lxc prints with Go's zero values when the server leaves them out.
            if let Value::Object(m) = &mut v {
                m.entry("project").or_insert(json!(""));
                m.entry("created_at").or_insert(json!(silo_api::ZERO_TIME));
            }
            out(&util::yaml_ordered(
                &v,
                &[
                    "config",
                    "description",
                    "name",
                    "type",
                    "used_by",
                    "location",
                    "content_type",
                    "project",
                    "created_at",
                ],
            )?)
        }
    }
}

/// Splits `NAME/SNAPSHOT` (lxc refuses more than one '/').
fn split_snapshot(name: &str) -> Result<(String, Option<String>), CmdError> {
    let f: Vec<&str> = name.split('/').collect();
    match f.as_slice() {
        [v] => Ok((v.to_string(), None)),
        [v, s] => Ok((v.to_string(), Some(s.to_string()))),
        _ => fail("Invalid snapshot name"),
    }
}

/// lxc's `POOL/VOLUME` argument of copy and move.
fn pool_volume(arg: &str, which: &str) -> Result<(String, String), CmdError> {
    match arg.split_once('/') {
        Some((p, v)) if !p.is_empty() && !v.is_empty() => Ok((p.to_string(), v.to_string())),
        _ => fail(format!("No storage pool for {which} volume specified")),
    }
}

fn snapshot_path(pool: &str, volume: &str, snap: &str) -> String {
    format!(
        "{}/snapshots/{snap}",
        silo_api::paths::storage_volume(pool, "custom", volume)
    )
}

/// lxc's device name and path for attach: `[DEVICE] PATH` after the instance, the device
/// named after the volume when only a path is given.
fn attach_args(volume: &str, rest: &[String]) -> (String, String) {
    match rest {
        [path] => (volume.to_string(), path.clone()),
        [dev, path] => (dev.clone(), path.clone()),
        _ => (volume.to_string(), String::new()),
    }
}

/// The device of `devices` to detach: `device` if given (it must exist), else the one disk
/// naming `pool` and `volume`.
fn detach_name(
    devices: &silo_api::DeviceMap,
    pool: &str,
    volume: &str,
    device: Option<String>,
) -> Result<String, CmdError> {
    let name = match device {
        Some(d) => d,
        None => {
            let found: Vec<&String> = devices
                .iter()
                .filter(|(_, d)| {
                    d.get("type").map(String::as_str) == Some("disk")
                        && d.get("pool").map(String::as_str) == Some(pool)
                        && d.get("source").map(String::as_str) == Some(volume)
                })
                .map(|(n, _)| n)
                .collect();
            match found.as_slice() {
                [] => return fail("No device found for this storage volume"),
                [one] => (*one).clone(),
                _ => return fail("More than one device matches, specify the device name"),
            }
        }
    };
    if !devices.contains_key(&name) {
        return fail("The specified device doesn't exist");
    }
    Ok(name)
}

fn disk_device(pool: &str, volume: &str, path: &str) -> silo_api::StringMap {
    let mut d = silo_api::StringMap::new();
    d.insert("type".into(), "disk".into());
    d.insert("pool".into(), pool.into());
    d.insert("source".into(), volume.into());
    d.insert("path".into(), path.into());
    d
}

/// PUTs a custom volume's writable part after `change` (lxc's set/unset).
async fn change_volume(
    client: &Client,
    pool: &str,
    volume: &str,
    change: impl FnOnce(&mut silo_api::StorageVolumePut) -> Result<(), CmdError>,
) -> Result<(), CmdError> {
    let path = silo_api::paths::storage_volume(pool, "custom", volume);
    let v: silo_api::StorageVolume = client.get_as(&path).await?;
    let mut put = silo_api::StorageVolumePut {
        config: v.config,
        description: v.description,
        restore: String::new(),
    };
    change(&mut put)?;
    client.run("PUT", &path, Some(&put), &[]).await?;
    Ok(())
}

/// `silo storage volume info`.
async fn volume_info(client: &Client, pool: &str, volume: &str) -> Result<(), CmdError> {
    let (name, kind) = parse_volume(volume);
    if name.contains('/') || kind == "image" {
        return fail("Only instance or custom volumes are supported");
    }
    let path = silo_api::paths::storage_volume(pool, &kind, &name);
    let v: silo_api::StorageVolume = client.get_as(&path).await?;
    let st: silo_api::StorageVolumeState = client.get_as(&format!("{path}/state")).await?;
    let snaps: Vec<silo_api::StorageVolumeSnapshot> = client
        .get_as(&format!("{path}/snapshots?recursion=1"))
        .await?;
    let mut text = format!("Name: {}\n", v.name);
    if !v.description.is_empty() {
        text += &format!("Description: {}\n", v.description);
    }
    text += &format!(
        "Type: {}\nContent type: {}\n",
        if v.kind.is_empty() { "custom" } else { &v.kind },
        if v.content_type.is_empty() {
            "filesystem"
        } else {
            &v.content_type
        }
    );
    text += &format!("Usage: {}\n", util::size_iec(st.usage.used));
    if st.usage.total > 0 {
        text += &format!("Total: {}\n", util::size_iec(st.usage.total as u64));
    }
    if !snaps.is_empty() {
        text += "\nSnapshots:\n";
        let mut rows: Vec<Vec<String>> = snaps
            .iter()
            .map(|s| {
                vec![
                    s.name.rsplit('/').next().unwrap_or("").to_string(),
                    s.description.clone(),
                    s.expires_at
                        .as_deref()
                        .and_then(util::time_set)
                        .map(util::time_short)
                        .unwrap_or_else(|| " ".into()),
                ]
            })
            .collect();
        util::sort_rows(&mut rows);
        text += &format::render(
            Format::Table,
            &["NAME", "DESCRIPTION", "EXPIRES AT"],
            &rows,
            &as_value(&snaps),
        )
        .map_err(CmdError::Output)?;
    }
    out(&text)
}

/// `silo storage volume edit`.
async fn volume_edit(client: &Client, pool: &str, volume: &str) -> Result<(), CmdError> {
    let (name, kind) = parse_volume(volume);
    let (vol, snap) = split_snapshot(&name)?;
    let path = match &snap {
        Some(s) => snapshot_path(pool, &vol, s),
        None => silo_api::paths::storage_volume(pool, &kind, &vol),
    };
    let current = util::yaml(&client.get(&path).await?)?;
    util::edit(VOLUME_EDIT_HELP, &current, |text| {
        let path = path.clone();
        let is_snap = snap.is_some();
        async move {
            let v = util::parse_yaml(&text)?;
            let body = if is_snap {
                let put: silo_api::StorageVolumeSnapshotPut =
                    lenient::from_yaml_value(v).map_err(|e| CmdError::Fail(e.to_string()))?;
                as_value(&put)
            } else {
                let put: silo_api::StorageVolumePut =
                    lenient::from_yaml_value(v).map_err(|e| CmdError::Fail(e.to_string()))?;
                as_value(&put)
            };
            client.run("PUT", &path, Some(&body), &[]).await?;
            Ok(())
        }
    })
    .await
}

/// `silo storage volume export`: a backup made on the server, downloaded, then removed there.
async fn volume_export(
    client: &Client,
    pool: &str,
    volume: &str,
    target: Option<std::path::PathBuf>,
    req: &silo_api::StoragePoolVolumeBackupsPost,
) -> Result<(), CmdError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let (name, kind) = parse_volume(volume);
    if kind != "custom" {
        return fail("Only \"custom\" volumes can be exported");
    }
    let vpath = silo_api::paths::storage_volume(pool, "custom", &name);
    let op = client
        .run("POST", &format!("{vpath}/backups"), Some(req), &[])
        .await?;
    let Some(backup) = op
        .resources
        .get("backups")
        .and_then(|b| b.first())
        .and_then(|url| url.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .map(silo_api::paths::unescape)
    else {
        return fail("The server did not say which backup it made");
    };
    let bpath = format!("{vpath}/backups/{backup}");
    let target = target.unwrap_or_else(|| std::path::PathBuf::from("backup.tar.gz"));
    let result: Result<(), CmdError> = async {
        let resp = client.download(&format!("{bpath}/export")).await?;
        let mut f = tokio::fs::File::create(&target)
            .await
            .map_err(|e| CmdError::Fail(format!("Creating {}: {e}", target.display())))?;
        let mut body = http_body_util::BodyExt::into_data_stream(resp.into_body());
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| CmdError::Fail(format!("Downloading the backup: {e}")))?;
            f.write_all(&chunk)
                .await
                .map_err(|e| CmdError::Fail(format!("Writing {}: {e}", target.display())))?;
        }
        f.sync_all()
            .await
            .map_err(|e| CmdError::Fail(format!("Writing {}: {e}", target.display())))
    }
    .await;
    // The server's copy goes whatever happened (lxc does the same).
    let _ = client.run::<Value>("DELETE", &bpath, None, &[]).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&target);
    }
    result?;
    outln("Backup exported successfully!")
}

/// `silo storage volume import POOL FILE [NAME]`.
async fn volume_import(
    client: &Client,
    pool: &str,
    file: &std::path::Path,
    name: Option<String>,
) -> Result<(), CmdError> {
    use futures::StreamExt;
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| CmdError::Fail(format!("Opening {}: {e}", file.display())))?;
    let len = f
        .metadata()
        .await
        .map(|m| m.len())
        .map_err(|e| CmdError::Fail(e.to_string()))?;
    let mut headers = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("content-length", len.to_string()),
    ];
    if let Some(n) = &name {
        headers.push(("x-lxd-name", n.clone()));
    }
    let body = http_body_util::StreamBody::new(
        crate::images::file_stream(f).map(|c| c.map(hyper::body::Frame::data)),
    );
    let answer = client
        .request_stream(
            "POST",
            &silo_api::paths::storage_volumes_of(pool, "custom"),
            body,
            &headers,
        )
        .await?;
    answer.finish(client).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_and_detach_arguments_as_lxc() {
        assert_eq!(attach_args("v", &["/d".into()]), ("v".into(), "/d".into()));
        assert_eq!(
            attach_args("v", &["data".into(), "/d".into()]),
            ("data".into(), "/d".into())
        );
        let mut devs = silo_api::DeviceMap::new();
        devs.insert("a".into(), disk_device("p", "v", "/a"));
        assert_eq!(detach_name(&devs, "p", "v", None).ok(), Some("a".into()));
        devs.insert("b".into(), disk_device("p", "v", "/b"));
        assert!(detach_name(&devs, "p", "v", None).is_err(), "two match");
        assert!(detach_name(&devs, "p", "w", None).is_err(), "none match");
        assert!(detach_name(&devs, "p", "v", Some("c".into())).is_err());
        assert_eq!(
            split_snapshot("v/s").ok(),
            Some(("v".into(), Some("s".into())))
        );
        assert!(split_snapshot("v/s/x").is_err());
        assert_eq!(
            pool_volume("p/v", "source").ok(),
            Some(("p".into(), "v".into()))
        );
        assert!(pool_volume("v", "target").is_err());
    }

    #[test]
    fn volumes() {
        assert_eq!(parse_volume("v1"), ("v1".into(), "custom".into()));
        assert_eq!(parse_volume("image/abc"), ("abc".into(), "image".into()));
        assert_eq!(parse_volume("a/b"), ("a/b".into(), "custom".into()));
    }

    #[test]
    fn used_by_groups() {
        let g = group_used_by(&[
            "/1.0/instances/c1".into(),
            "/1.0/profiles/default".into(),
            "/1.0/instances/c2?project=p".into(),
            "/1.0/storage-pools/default/volumes/custom/v1".into(),
            "/1.0/instances/c1/snapshots/s0".into(),
        ]);
        assert_eq!(g["instances"], vec!["c1", "c2 (project \"p\")"]);
        assert_eq!(g["profiles"], vec!["default"]);
        assert_eq!(g["volumes"], vec!["v1"]);
    }
}
