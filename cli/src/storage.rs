//! `silo storage ...`: pools and their volumes, as `lxc storage` does them.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde_json::{json, Value};
use silo_api::{StoragePoolPut, StoragePoolsPost, StorageVolumesPost};

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
    /// Delete custom volumes.
    #[command(alias = "rm")]
    Delete {
        /// The pool.
        pool: String,
        /// The volumes ([custom/]NAME).
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Show a volume as YAML ([TYPE/]NAME, TYPE custom, container or image; default custom).
    Show {
        /// The pool.
        pool: String,
        /// [TYPE/]NAME.
        volume: String,
    },
}

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
    }
}

async fn volume(client: &Client, cmd: VolumeCmd) -> Result<(), CmdError> {
    match cmd {
        VolumeCmd::List { pool, format } => {
            let vols = client.storage_volumes(&pool).await?;
            let mut rows: Vec<Vec<String>> = vols
                .iter()
                .map(|v| {
                    vec![
                        v.kind.clone(),
                        v.name.clone(),
                        v.description.clone(),
                        v.content_type.clone(),
                        v.used_by.len().to_string(),
                    ]
                })
                .collect();
            util::sort_rows(&mut rows);
            let text = format::render(
                format,
                &["TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE", "USED BY"],
                &rows,
                &as_value(&vols),
            )
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
                client.delete_storage_volume(&pool, &kind, &name).await?;
                outln(&format!("Storage volume {name} deleted"))?;
            }
            Ok(())
        }
        VolumeCmd::Show { pool, volume } => {
            let (name, kind) = parse_volume(&volume);
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

#[cfg(test)]
mod tests {
    use super::*;

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
