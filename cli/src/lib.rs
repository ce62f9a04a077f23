//! The `silo` command-line client, as a library so tests and other tools can drive it.

pub mod client;
pub mod commands;
pub mod format;

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
    /// Show the server's configuration, environment and the confinement of its processes.
    Info {
        /// Output format.
        #[arg(long, value_enum, default_value = "yaml")]
        format: InfoFormat,
    },
    /// List, show and cancel background operations.
    #[command(subcommand)]
    Operation(OperationCmd),
    /// Print events from the server as they happen.
    Monitor {
        /// Only these event types (operation, logging, lifecycle), comma separated.
        #[arg(long = "type")]
        types: Vec<String>,
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
