//! `silo warning ...`: the server's warnings, as `lxc warning` shows and changes them.

use clap::Subcommand;
use serde_json::json;

use crate::client::Client;
use crate::commands::CmdError;
use crate::format;
use crate::util::out;

/// `silo warning ...`.
#[derive(Debug, Subcommand)]
pub enum WarningCmd {
    /// List warnings (new ones; --all adds acknowledged and resolved ones).
    #[command(alias = "ls")]
    List {
        /// Every warning, acknowledged and resolved ones too.
        #[arg(long, short = 'a')]
        all: bool,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: format::Format,
    },
    /// Show one warning.
    Show {
        /// The warning's UUID.
        uuid: String,
    },
    /// Acknowledge a warning: it is no longer listed without --all.
    Ack {
        /// The warning's UUID.
        uuid: String,
    },
    /// Delete a warning (it is raised again if seen again), or every one with --all.
    #[command(alias = "rm")]
    Delete {
        /// The warning's UUID.
        uuid: Option<String>,
        /// Delete every warning.
        #[arg(long, short = 'a')]
        all: bool,
    },
}

fn path(uuid: &str) -> String {
    silo_api::paths::warning(uuid)
}

async fn all_warnings(client: &Client) -> Result<Vec<silo_api::Warning>, CmdError> {
    Ok(client.get_as("/1.0/warnings?recursion=1").await?)
}

/// `2026-12-06T20:56:54.1Z` as lxc prints it: `2026/12/06 20:56 UTC`.
fn shown_time(t: &str) -> String {
    match (t.get(0..10), t.get(11..16)) {
        (Some(d), Some(hm)) => format!("{} {hm} UTC", d.replace('-', "/")),
        _ => t.to_string(),
    }
}

/// Runs one `silo warning` command.
pub async fn run(client: &Client, cmd: WarningCmd) -> Result<(), CmdError> {
    match cmd {
        WarningCmd::List { all, format } => {
            let list: Vec<silo_api::Warning> = all_warnings(client)
                .await?
                .into_iter()
                .filter(|w| all || (w.status != "acknowledged" && w.status != "resolved"))
                .collect();
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|w| {
                    vec![
                        w.uuid.clone(),
                        w.kind.clone(),
                        w.status.to_uppercase(),
                        w.severity.to_uppercase(),
                        w.count.to_string(),
                        w.project.clone(),
                        shown_time(&w.last_seen_at),
                    ]
                })
                .collect();
            let raw = serde_json::to_value(&list).map_err(|e| CmdError::Output(e.to_string()))?;
            let text = format::render(
                format,
                &[
                    "UUID",
                    "TYPE",
                    "STATUS",
                    "SEVERITY",
                    "COUNT",
                    "PROJECT",
                    "LAST SEEN",
                ],
                &rows,
                &raw,
            )
            .map_err(CmdError::Output)?;
            out(&text)
        }
        WarningCmd::Show { uuid } => {
            let v = client.get(&path(&uuid)).await?;
            out(&format::yaml(&v).map_err(CmdError::Output)?)
        }
        WarningCmd::Ack { uuid } => {
            client
                .query(
                    "PUT",
                    &path(&uuid),
                    Some(&json!({"status": "acknowledged"})),
                )
                .await?;
            Ok(())
        }
        WarningCmd::Delete { uuid, all } => match (uuid, all) {
            (Some(u), false) => {
                client.query("DELETE", &path(&u), None).await?;
                Ok(())
            }
            (None, true) => {
                for w in all_warnings(client).await? {
                    client.query("DELETE", &path(&w.uuid), None).await?;
                }
                Ok(())
            }
            _ => Err(CmdError::Fail(
                "name one warning's UUID, or --all for every warning".into(),
            )),
        },
    }
}
