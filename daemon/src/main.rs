//! silod's entry point.

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() {
    let args = silod::startup::Args::parse();
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
