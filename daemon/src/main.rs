//! silod's entry point.

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() {
    let args = silod::startup::Args::parse();
    match &args.command {
        Some(silod::startup::Command::Shutdown { timeout }) => {
            match silod::admin::shutdown(&args.state_dir, *timeout) {
                Ok(done) => {
                    println!("{done}");
                    std::process::exit(0)
                }
                Err(e) => {
                    eprintln!("silod shutdown: {e}");
                    std::process::exit(1)
                }
            }
        }
        Some(silod::startup::Command::Manpage) => {
            let cmd = <silod::startup::Args as clap::CommandFactory>::command();
            if let Err(e) = silod::admin::manpage(cmd, &mut std::io::stdout()) {
                eprintln!("silod manpage: {e}");
                std::process::exit(1)
            }
            std::process::exit(0)
        }
        Some(silod::startup::Command::Schema) => {
            println!("{}", silod::store::db::schema_version());
            std::process::exit(0)
        }
        None => {}
    }
    let events = silod::service::events::Events::new();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter_env(),
        )
        .with(silod::service::events::LogForwarder::new(events.clone()))
        .init();
    match silod::startup::run(args, events) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("silod: {e:#}");
            std::process::exit(1);
        }
    }
}

trait WithEnvFilter<S> {
    fn with_filter_env(
        self,
    ) -> tracing_subscriber::filter::Filtered<Self, tracing_subscriber::EnvFilter, S>
    where
        Self: Sized;
}

impl<S, L> WithEnvFilter<S> for L
where
    L: tracing_subscriber::Layer<S>,
    S: tracing::Subscriber,
{
    fn with_filter_env(
        self,
    ) -> tracing_subscriber::filter::Filtered<Self, tracing_subscriber::EnvFilter, S> {
        self.with_filter(
            tracing_subscriber::EnvFilter::try_from_env("SILO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
    }
}
