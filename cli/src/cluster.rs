//! `silo cluster ...`: a cluster's members, as `lxc cluster` shows and changes them.

use clap::Subcommand;

use crate::client::Client;
use crate::commands::CmdError;
use crate::format;
use crate::util::{out, outln};

/// `silo cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Turn this server into the first member of a new cluster (needs core.https_address).
    Enable {
        /// This member's name.
        name: String,
    },
    /// Print a join token for a new member called NAME.
    Add {
        /// The name the new member will have.
        name: String,
    },
    /// Join the cluster a token names (this server must have no instances).
    Join {
        /// The join token (`silo cluster add` on a member prints it).
        token: String,
        /// This server's address as the members reach it (sets core.https_address).
        #[arg(long)]
        address: Option<String>,
        /// This member's name (default: the token's).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the members.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: format::Format,
    },
    /// Show one member.
    Show {
        /// The member.
        name: String,
    },
    /// Remove a member (--force: even one that holds instances or cannot be reached).
    #[command(alias = "rm")]
    Remove {
        /// The member.
        name: String,
        /// Remove it whatever it holds.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Stop a member's instances and keep new ones off it.
    Evacuate {
        /// The member.
        name: String,
        /// How: stop (instances on local storage cannot move).
        #[arg(long, default_value = "stop")]
        action: String,
    },
    /// Start again what evacuate stopped, and place instances on the member again.
    Restore {
        /// The member.
        name: String,
    },
    /// Rename a member.
    Rename {
        /// The member.
        name: String,
        /// Its new name.
        new_name: String,
    },
    /// Print one of a member's config keys (e.g. scheduler.instance).
    Get {
        /// The member.
        name: String,
        /// The key.
        key: String,
    },
    /// Set member config keys: `KEY=VALUE...` or `KEY VALUE`.
    Set {
        /// The member.
        name: String,
        /// `KEY=VALUE...`, or `KEY VALUE`.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Remove one of a member's config keys.
    Unset {
        /// The member.
        name: String,
        /// The key.
        key: String,
    },
}

/// `KEY=VALUE...` or `KEY VALUE` as pairs.
fn pairs(args: &[String]) -> Result<Vec<(String, String)>, CmdError> {
    if args.len() == 2 && !args[0].contains('=') {
        return Ok(vec![(args[0].clone(), args[1].clone())]);
    }
    args.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CmdError::Fail(format!("{a:?} is not KEY=VALUE")))
        })
        .collect()
}

/// Writes member `name`'s config with `f` applied (a whole PUT of the member's fields).
async fn change_config(
    client: &Client,
    name: &str,
    f: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
) -> Result<(), CmdError> {
    let m: silo_api::ClusterMember = client.get_as(&member_path(name)).await?;
    let mut put = silo_api::ClusterMemberPut::from(m);
    f(&mut put.config);
    let body = serde_json::to_value(&put).map_err(|e| CmdError::Output(e.to_string()))?;
    client.query("PUT", &member_path(name), Some(&body)).await?;
    Ok(())
}

fn member_path(name: &str) -> String {
    format!("/1.0/cluster/members/{}", silo_api::paths::escape(name))
}

/// Runs one `silo cluster` command.
pub async fn run(client: &Client, cmd: ClusterCmd) -> Result<(), CmdError> {
    match cmd {
        ClusterCmd::Enable { name } => {
            client
                .run(
                    "PUT",
                    "/1.0/cluster",
                    Some(&silo_api::ClusterPut {
                        server_name: name.clone(),
                        enabled: true,
                        ..Default::default()
                    }),
                    &[],
                )
                .await?;
            outln(&format!("Clustering enabled: this server is member {name}"))
        }
        ClusterCmd::Add { name } => {
            let body = serde_json::to_value(silo_api::ClusterMembersPost {
                server_name: name.clone(),
            })
            .map_err(|e| CmdError::Output(e.to_string()))?;
            let a = client
                .request("POST", "/1.0/cluster/members", Some(&body), &[])
                .await?;
            let op = a.metadata()?;
            let meta: silo_api::ClusterJoinTokenMetadata =
                serde_json::from_value(op["metadata"].clone()).map_err(|e| {
                    CmdError::Fail(format!("the server's join token operation: {e}"))
                })?;
            let token = silo_api::ClusterMemberJoinToken::from(meta);
            outln(&format!("Member {name} join token:"))?;
            outln(&token.encode())
        }
        ClusterCmd::Join {
            token,
            address,
            name,
        } => {
            let t = silo_api::ClusterMemberJoinToken::decode(&token).map_err(CmdError::Fail)?;
            let name = name.unwrap_or(t.server_name.clone());
            client
                .run(
                    "PUT",
                    "/1.0/cluster",
                    Some(&silo_api::ClusterPut {
                        server_name: name.clone(),
                        enabled: true,
                        cluster_token: token,
                        server_address: address.unwrap_or_default(),
                        ..Default::default()
                    }),
                    &[],
                )
                .await?;
            outln(&format!("Joined the cluster as member {name}"))
        }
        ClusterCmd::List { format } => {
            let list: Vec<silo_api::ClusterMember> =
                client.get_as("/1.0/cluster/members?recursion=1").await?;
            let mut rows: Vec<Vec<String>> = list
                .iter()
                .map(|m| {
                    vec![
                        m.server_name.clone(),
                        m.url.clone(),
                        m.roles.join("\n"),
                        m.architecture.clone(),
                        m.failure_domain.clone(),
                        m.description.clone(),
                        m.status.to_uppercase(),
                        m.message.clone(),
                    ]
                })
                .collect();
            crate::util::sort_rows(&mut rows);
            let raw = serde_json::to_value(&list).map_err(|e| CmdError::Output(e.to_string()))?;
            let text = format::render(
                format,
                &[
                    "NAME",
                    "URL",
                    "ROLES",
                    "ARCHITECTURE",
                    "FAILURE DOMAIN",
                    "DESCRIPTION",
                    "STATE",
                    "MESSAGE",
                ],
                &rows,
                &raw,
            )
            .map_err(CmdError::Output)?;
            out(&text)
        }
        ClusterCmd::Show { name } => {
            let v = client.get(&member_path(&name)).await?;
            out(&format::yaml(&v).map_err(CmdError::Output)?)
        }
        ClusterCmd::Remove { name, force } => {
            let path = if force {
                format!("{}?force=1", member_path(&name))
            } else {
                member_path(&name)
            };
            client.query("DELETE", &path, None).await?;
            outln(&format!("Member {name} removed"))
        }
        ClusterCmd::Evacuate { name, action } => {
            client
                .run(
                    "POST",
                    &format!("{}/state", member_path(&name)),
                    Some(&silo_api::ClusterMemberStatePost {
                        action: "evacuate".into(),
                        mode: action,
                    }),
                    &[],
                )
                .await?;
            outln(&format!("Member {name} evacuated"))
        }
        ClusterCmd::Restore { name } => {
            client
                .run(
                    "POST",
                    &format!("{}/state", member_path(&name)),
                    Some(&silo_api::ClusterMemberStatePost {
                        action: "restore".into(),
                        ..Default::default()
                    }),
                    &[],
                )
                .await?;
            outln(&format!("Member {name} restored"))
        }
        ClusterCmd::Rename { name, new_name } => {
            let body = serde_json::to_value(silo_api::ClusterMemberPost {
                server_name: new_name.clone(),
            })
            .map_err(|e| CmdError::Output(e.to_string()))?;
            client
                .query("POST", &member_path(&name), Some(&body))
                .await?;
            outln(&format!("Member {name} renamed to {new_name}"))
        }
        ClusterCmd::Get { name, key } => {
            let m: silo_api::ClusterMember = client.get_as(&member_path(&name)).await?;
            outln(m.config.get(&key).map(String::as_str).unwrap_or(""))
        }
        ClusterCmd::Set { name, args } => {
            let kv = pairs(&args)?;
            change_config(client, &name, |c| {
                for (k, v) in kv {
                    c.insert(k, v);
                }
            })
            .await
        }
        ClusterCmd::Unset { name, key } => {
            change_config(client, &name, |c| {
                c.remove(&key);
            })
            .await
        }
    }
}
