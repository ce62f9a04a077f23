//! The `/1.0/events` stream: operation, logging and lifecycle events, as LXD sends them.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One event, in LXD's envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// "operation", "logging" or "lifecycle".
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339 time.
    pub timestamp: String,
    /// The payload.
    pub metadata: serde_json::Value,
    /// Cluster member; "none" when not clustered.
    pub location: String,
    /// Project.
    #[serde(default)]
    pub project: String,
    /// Relayed from another cluster member (sent to this member's own listeners, never on
    /// to another member, which has it from its source).
    #[serde(skip)]
    pub relayed: bool,
}

/// The fan-out of events to every `/1.0/events` listener.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

/// RFC 3339 timestamp with nanoseconds, as LXD writes them.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An `expires_at` from a request, in UTC as silo stores it; `None` for no expiry. The parser
/// is [`crate::model::parse::parse_expiry_time`]; this keeps the API's callers' shape.
pub fn parse_expiry_time(s: &str) -> Result<Option<String>, String> {
    crate::model::parse::parse_expiry_time(s).map_err(|e| e.to_string())
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// A new, empty fan-out.
    pub fn new() -> Events {
        let (tx, _) = broadcast::channel(1024);
        Events { tx }
    }

    /// Sends an event to every listener (none listening is fine).
    pub fn send(&self, kind: &str, metadata: serde_json::Value) {
        let _ = self.tx.send(Event {
            kind: kind.to_string(),
            timestamp: now_rfc3339(),
            metadata,
            location: crate::service::host::location(),
            project: "default".into(),
            relayed: false,
        });
    }

    /// Passes on an event another cluster member sent.
    pub fn relay(&self, mut ev: Event) {
        ev.relayed = true;
        let _ = self.tx.send(ev);
    }

    /// Sends a lifecycle event (`action` such as "instance-created").
    pub fn lifecycle(&self, action: &str, source: &str, context: serde_json::Value) {
        self.send(
            "lifecycle",
            serde_json::json!({
                "action": action,
                "source": source,
                "context": context,
                "requestor": {"username": "", "protocol": "unix"},
            }),
        );
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// A tracing layer that forwards log records at info and above as `logging` events.
#[derive(Debug)]
pub struct LogForwarder {
    events: Events,
}

impl LogForwarder {
    /// Forwards into `events`.
    pub fn new(events: Events) -> Self {
        LogForwarder { events }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    context: serde_json::Map<String, serde_json::Value>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.context.insert(
                field.name().to_string(),
                serde_json::Value::String(format!("{value:?}")),
            );
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.context.insert(
                field.name().to_string(),
                serde_json::Value::String(value.to_string()),
            );
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogForwarder {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let level = *event.metadata().level();
        if level > tracing::Level::INFO {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let lvl = match level {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            _ => "info",
        };
        self.events.send(
            "logging",
            serde_json::json!({"message": f.message, "level": lvl, "context": f.context}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times() {
        assert_eq!(parse_expiry_time(""), Ok(None));
        assert_eq!(parse_expiry_time("0001-01-01T00:00:00Z"), Ok(None));
        assert_eq!(
            parse_expiry_time("2027-01-02T03:04:05+02:00"),
            Ok(Some("2027-01-02T01:04:05Z".to_string()))
        );
        assert!(parse_expiry_time("tomorrow").is_err());
    }
}
