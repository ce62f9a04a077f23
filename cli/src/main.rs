//! `silo`: the command-line client.

use clap::Parser;

fn main() {
    let cli = match expand_aliases() {
        Some(args) => silo_cli::Cli::parse_from(args),
        // Untouched, so arguments that are not UTF-8 (file names) reach clap as they are.
        None => silo_cli::Cli::parse(),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(silo_cli::commands::run(cli)) {
        Ok(()) => {}
        Err(silo_cli::commands::CmdError::Exit(code)) => {
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::exit(code);
        }
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    }
}

/// The command line with the user's aliases (config.yml's `aliases:`) expanded once, as lxc
/// expands them; a target starting with `/` runs that program instead.
fn expand_aliases() -> Option<Vec<String>> {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // A config.yml that cannot be read leaves the aliases out, as lxc does; the command
    // itself reports it.
    let conf = silo_cli::remotes::Config::load().ok()?;
    match silo_cli::aliases::expand(&conf.file.aliases, &args) {
        Ok(Some(new)) if new.first().is_some_and(|p| p.starts_with('/')) => {
            use std::os::unix::process::CommandExt;
            let err = std::process::Command::new(&new[0]).args(&new[1..]).exec();
            eprintln!("Error: Processing aliases failed: {err}");
            std::process::exit(1);
        }
        Ok(Some(new)) => Some(new),
        Ok(None) => None,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    }
}
