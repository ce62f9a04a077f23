//! `silo`: the command-line client.

use clap::Parser;

fn main() {
    let cli = silo_cli::Cli::parse();
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
