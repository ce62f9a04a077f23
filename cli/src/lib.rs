//! The `silo` command-line client, as a library so tests and other tools can drive it.

pub mod aliases;
pub mod backups;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod exec;
pub mod files;
pub mod format;
pub mod images;
pub mod init;
pub mod instances;
pub mod metadata;
pub mod migrate;
pub mod networks;
pub mod profiles;
pub mod query;
pub mod remotes;
pub mod requests;
pub mod resources;
pub mod simplestreams;
pub mod snapshots;
pub mod storage;
pub mod tls;
pub mod trust;
pub mod util;
pub mod warnings;

use clap::{Parser, Subcommand};

/// silo: system containers, LXD's job done by a privilege-separated daemon.
#[derive(Debug, Parser)]
#[command(name = "silo", version, about, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the client and server versions.
    Version,
    /// Show an instance's state and resources, or the server's configuration, environment
    /// and the confinement of its processes.
    ///
    /// Without NAME: the server.
    Info {
        /// The instance.
        name: Option<String>,
        /// Show the instance's console log too.
        #[arg(long, requires = "name")]
        show_log: bool,
        /// Show the server's hardware (CPUs, memory, GPUs, network cards, disks).
        #[arg(long, conflicts_with = "name")]
        resources: bool,
        /// Output format (server information only).
        #[arg(long, value_enum, default_value = "yaml")]
        format: InfoFormat,
    },
    /// Create an instance from an image without starting it; with no image, set up the
    /// server (questions, --auto, --preseed, --dump).
    Init(instances::InitCmd),
    /// Create an instance from an image and start it.
    Launch(instances::InitArgs),
    /// Start instances.
    Start(instances::StartArgs),
    /// Stop instances.
    Stop(instances::StopArgs),
    /// Restart instances.
    Restart(instances::StopArgs),
    /// Pause (freeze) instances; `silo start` resumes them.
    #[command(alias = "freeze")]
    Pause(instances::StartArgs),
    /// Run a command in an instance.
    Exec(exec::ExecArgs),
    /// Attach to an instance's console.
    Console(exec::ConsoleArgs),
    /// Manage files in instances.
    #[command(subcommand)]
    File(files::FileCmd),
    /// List instances.
    #[command(alias = "ls")]
    List(instances::ListArgs),
    /// Delete instances.
    #[command(alias = "rm")]
    Delete(instances::DeleteArgs),
    /// Manage instance and server configuration keys and devices.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Manage images: import, list, show, export, delete, aliases.
    #[command(subcommand)]
    Image(images::ImageCmd),
    /// Manage profiles.
    #[command(subcommand)]
    Profile(profiles::ProfileCmd),
    /// Snapshot an instance.
    Snapshot(snapshots::SnapshotArgs),
    /// Restore an instance from a snapshot.
    Restore(snapshots::RestoreArgs),
    /// Copy an instance or a snapshot into a new instance.
    #[command(alias = "cp")]
    Copy(snapshots::CopyArgs),
    /// Publish a stopped instance or a snapshot as an image.
    Publish(snapshots::PublishArgs),
    /// Export an instance (and its snapshots) to a backup file.
    Export(backups::ExportArgs),
    /// Import an instance from a backup file.
    Import(backups::ImportArgs),
    /// Rename an instance or a snapshot.
    #[command(alias = "rename")]
    Move(snapshots::MoveArgs),
    /// Manage and attach instances to networks.
    #[command(subcommand)]
    Network(networks::NetworkCmd),
    /// Manage storage pools and volumes.
    #[command(subcommand)]
    Storage(storage::StorageCmd),
    /// Manage the remote servers this client knows.
    #[command(subcommand)]
    Remote(remotes::RemoteCmd),
    /// List, show and cancel background operations.
    #[command(subcommand)]
    Operation(OperationCmd),
    /// Send a raw query to the API, as `lxc query` does.
    Query(query::QueryArgs),
    /// Manage command aliases (in the client's config.yml).
    #[command(subcommand)]
    Alias(aliases::AliasCmd),
    /// List, show, acknowledge and delete the server's warnings.
    #[command(subcommand)]
    Warning(warnings::WarningCmd),
    /// Clusters: enable, add and join members, list, remove, evacuate and restore them.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Print events from the server as they happen.
    Monitor {
        /// Only these event types (operation, logging, lifecycle), comma separated.
        #[arg(long = "type")]
        types: Vec<String>,
        /// Events of every project (silo has the default project only).
        #[arg(long)]
        all_projects: bool,
        /// Output format for each event.
        #[arg(long, value_enum, default_value = "yaml")]
        format: InfoFormat,
    },
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages for silo and its subcommands into a directory.
    Manpage {
        /// Where to write them.
        dir: std::path::PathBuf,
    },
}

/// Formats for single objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InfoFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// `silo operation ...`.
#[derive(Debug, Subcommand)]
pub enum OperationCmd {
    /// List background operations.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: format::Format,
    },
    /// Show one operation.
    Show {
        /// The operation's id.
        id: String,
    },
    /// Cancel a running operation.
    #[command(alias = "rm")]
    Delete {
        /// The operation's id.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    fn check(cmd: &clap::Command, path: &str) {
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_name() != "help" {
                assert!(sub.get_about().is_some(), "{p} has no about");
            }
            check(sub, &p);
        }
    }

    #[test]
    fn every_subcommand_has_an_about() {
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        check(&cmd, "silo");
    }
}
