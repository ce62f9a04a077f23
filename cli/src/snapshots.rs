//! `silo snapshot`, `silo restore`, `silo move`/`rename`, as `lxc` does them.

use serde_json::{json, Value};

use crate::client::Client;
use crate::commands::CmdError;
use crate::util::{enc, fail};

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
  silo move c1/snap0 c1/before-upgrade rename a snapshot")]
pub struct MoveArgs {
    /// The instance or INSTANCE/SNAPSHOT.
    pub source: String,
    /// The new name (INSTANCE/SNAPSHOT or just SNAPSHOT for a snapshot).
    pub target: String,
}

/// `silo snapshot INSTANCE [NAME]`.
pub async fn snapshot(client: &Client, a: SnapshotArgs) -> Result<(), CmdError> {
    let base = format!("/1.0/instances/{}/snapshots", enc(&a.instance));
    if a.reuse {
        if let Some(n) = &a.name {
            let path = format!("{base}/{}", enc(n));
            if client.get(&path).await.is_ok() {
                client.operate("DELETE", &path, None, &[]).await?;
            }
        }
    }
    let mut body = json!({"name": a.name.clone().unwrap_or_default(), "stateful": a.stateful});
    body["expires_at"] = if a.no_expiry {
        json!("0001-01-01T00:00:00Z")
    } else {
        Value::Null
    };
    client.operate("POST", &base, Some(&body), &[]).await?;
    Ok(())
}

/// `silo restore INSTANCE SNAPSHOT`.
pub async fn restore(client: &Client, a: RestoreArgs) -> Result<(), CmdError> {
    let path = format!("/1.0/instances/{}", enc(&a.instance));
    client
        .operate("PUT", &path, Some(&json!({"restore": a.snapshot})), &[])
        .await?;
    Ok(())
}

/// `silo move SOURCE TARGET`: an instance rename, or a snapshot rename.
pub async fn move_cmd(client: &Client, a: MoveArgs) -> Result<(), CmdError> {
    match a.source.split_once('/') {
        Some((inst, snap)) => {
            let new = match a.target.split_once('/') {
                Some((i, s)) if i == inst => s,
                Some(_) => return fail("A snapshot can only be renamed within its instance"),
                None => a.target.as_str(),
            };
            let path = format!("/1.0/instances/{}/snapshots/{}", enc(inst), enc(snap));
            client
                .operate("POST", &path, Some(&json!({"name": new})), &[])
                .await?;
        }
        None => {
            if a.target.contains('/') {
                return fail("An instance cannot be renamed into a snapshot");
            }
            if a.target.contains(':') || a.source.contains(':') {
                return fail("Moving instances between servers is not supported yet");
            }
            let path = format!("/1.0/instances/{}", enc(&a.source));
            client
                .operate("POST", &path, Some(&json!({"name": a.target})), &[])
                .await?;
        }
    }
    Ok(())
}
