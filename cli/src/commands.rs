//! What each subcommand does.

use clap::CommandFactory;
use serde_json::Value;

use crate::client::{socket_path, Client, ClientError};
use crate::format;
use crate::util::out;
use crate::{Cli, Command, InfoFormat, OperationCmd};

/// Errors a command reports to the user as one line.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// From the client.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Output failed.
    #[error("{0}")]
    Output(String),
    /// The command cannot do what was asked (bad arguments, a refused state, ...).
    #[error("{0}")]
    Fail(String),
    /// Nothing to print: leave with this status (`silo exec` passes on the command's).
    #[error("exit status {0}")]
    Exit(i32),
}

fn show(v: &Value, f: InfoFormat) -> Result<(), CmdError> {
    let s = match f {
        InfoFormat::Yaml => format::yaml(v).map_err(CmdError::Output)?,
        InfoFormat::Json => {
            serde_json::to_string_pretty(v).map_err(|e| CmdError::Output(e.to_string()))? + "\n"
        }
    };
    out(&s)
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CmdError> {
    let client = Client::new(socket_path());
    match cli.command {
        Command::Init(a) => crate::instances::init(&client, a).await,
        Command::Launch(a) => crate::instances::launch(&client, a).await,
        Command::Start(a) => {
            crate::instances::state_action(&client, "start", a.names, a.all, false, -1).await
        }
        Command::Stop(a) => {
            crate::instances::state_action(&client, "stop", a.names, a.all, a.force, a.timeout)
                .await
        }
        Command::Restart(a) => {
            crate::instances::state_action(&client, "restart", a.names, a.all, a.force, a.timeout)
                .await
        }
        Command::Exec(a) => crate::exec::exec(&client, a).await,
        Command::Console(a) => crate::exec::console(&client, a).await,
        Command::File(c) => crate::files::run(&client, c).await,
        Command::Info {
            name: Some(name),
            show_log,
            ..
        } => crate::instances::info(&client, &name, show_log).await,
        Command::List(a) => crate::instances::list(&client, a).await,
        Command::Delete(a) => crate::instances::delete(&client, a).await,
        Command::Config(c) => crate::config::run(&client, c).await,
        Command::Image(c) => crate::images::run(&client, c).await,
        Command::Profile(c) => crate::profiles::run(&client, c).await,
        Command::Snapshot(a) => crate::snapshots::snapshot(&client, a).await,
        Command::Restore(a) => crate::snapshots::restore(&client, a).await,
        Command::Move(a) => crate::snapshots::move_cmd(&client, a).await,
        Command::Copy(a) => crate::snapshots::copy(&client, a).await,
        Command::Publish(a) => crate::snapshots::publish(&client, a).await,
        Command::Export(a) => crate::backups::export(&client, a).await,
        Command::Import(a) => crate::backups::import(&client, a).await,
        Command::Network(c) => crate::networks::run(&client, c).await,
        Command::Storage(c) => crate::storage::run(&client, c).await,
        Command::Version => version(&client).await,
        Command::Info {
            name: None, format, ..
        } => {
            // Printed as the server sent it, silo's own section and all: free-form here.
            let v = client.get(&silo_api::paths::server()).await?;
            show(&v, format)
        }
        Command::Operation(OperationCmd::List { format }) => operation_list(&client, format).await,
        Command::Operation(OperationCmd::Show { id }) => {
            let v = serde_json::to_value(client.operation(&id).await?)
                .map_err(|e| CmdError::Output(e.to_string()))?;
            show(&v, InfoFormat::Yaml)
        }
        Command::Operation(OperationCmd::Delete { id }) => {
            client
                .query("DELETE", &silo_api::paths::operation(&id), None)
                .await?;
            Ok(())
        }
        Command::Monitor { types, format } => monitor(&client, &types, format).await,
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "silo", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage { dir } => manpages(&dir),
    }
}

/// `silo version`: the client's, and the server's if it answers.
async fn version(client: &Client) -> Result<(), CmdError> {
    out(&format!("Client version: {}\n", env!("CARGO_PKG_VERSION")))?;
    let server = match client.server().await {
        Ok(v) if !v.environment.server_version.is_empty() => v.environment.server_version,
        Ok(_) => "unknown".to_string(),
        Err(_) => "unreachable".to_string(),
    };
    out(&format!("Server version: {server}\n"))
}

/// `silo operation list`: a table of the server's operations, oldest first.
async fn operation_list(client: &Client, format: format::Format) -> Result<(), CmdError> {
    let mut ops: Vec<silo_api::Operation> =
        client.operations().await?.into_values().flatten().collect();
    ops.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|o| {
            vec![
                o.id.clone(),
                o.class.to_uppercase(),
                o.description.clone(),
                o.status.to_uppercase(),
                if o.may_cancel { "YES" } else { "NO" }.to_string(),
                o.created_at.clone(),
            ]
        })
        .collect();
    let raw = serde_json::to_value(&ops).map_err(|e| CmdError::Output(e.to_string()))?;
    let text = format::render(
        format,
        &[
            "ID",
            "TYPE",
            "DESCRIPTION",
            "STATUS",
            "CANCELABLE",
            "CREATED",
        ],
        &rows,
        &raw,
    )
    .map_err(CmdError::Output)?;
    out(&text)
}

/// `silo monitor`: prints the server's events (of `types`, or all) as they come.
async fn monitor(client: &Client, types: &[String], format: InfoFormat) -> Result<(), CmdError> {
    for t in types {
        if !["operation", "logging", "lifecycle"].contains(&t.as_str()) {
            return Err(CmdError::Output(format!(
                "unknown event type {t:?}: expected operation, logging or lifecycle"
            )));
        }
    }
    let joined = types.join(",");
    let filter = if types.is_empty() {
        None
    } else {
        Some(joined.as_str())
    };
    let mut failed = None;
    client
        .events(filter, |ev| {
            let r = match format {
                InfoFormat::Yaml => format::yaml(&ev).map(|y| y + "\n"),
                InfoFormat::Json => serde_json::to_string(&ev)
                    .map(|j| j + "\n")
                    .map_err(|e| e.to_string()),
            }
            .map_err(CmdError::Output)
            .and_then(|t| out(&t));
            if let Err(e) = r {
                failed = Some(e);
                return false;
            }
            true
        })
        .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `silo manpage DIR`: a man page for silo and one for each subcommand.
fn manpages(dir: &std::path::Path) -> Result<(), CmdError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CmdError::Output(format!("creating {}: {e}", dir.display())))?;
    let cmd = Cli::command();
    write_man(&cmd, "silo", dir)?;
    for sub in cmd.get_subcommands() {
        let name = format!("silo-{}", sub.get_name());
        write_man(sub, &name, dir)?;
    }
    Ok(())
}

fn write_man(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> Result<(), CmdError> {
    let cmd = cmd.clone().name(name.to_string().leak() as &str);
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| CmdError::Output(e.to_string()))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf)
        .map_err(|e| CmdError::Output(format!("writing {}: {e}", path.display())))
}
