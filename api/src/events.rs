//! `/1.0/events`: what the websocket sends.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StringMap;

/// One event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// "operation", "lifecycle" or "logging".
    #[serde(rename = "type")]
    pub kind: String,
    /// When (RFC 3339).
    pub timestamp: String,
    /// An [`crate::Operation`], [`EventLifecycle`] or [`EventLogging`] by `type`.
    pub metadata: Value,
    /// Cluster member ("none").
    pub location: String,
    /// "default".
    pub project: String,
}

impl Event {
    /// The metadata as a typed object.
    pub fn metadata_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        crate::lenient::from_value(self.metadata.clone())
    }
}

/// A `lifecycle` event's metadata: something was created, changed, started, deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventLifecycle {
    /// e.g. "instance-started", "network-created".
    pub action: String,
    /// The object's URL.
    pub source: String,
    /// Details; their shape depends on the action (Go's `map[string]any`).
    pub context: BTreeMap<String, Value>,
    /// Who asked.
    pub requestor: Option<EventLifecycleRequestor>,
}

/// Who caused a lifecycle event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventLifecycleRequestor {
    /// The user ("" over the unix socket).
    pub username: String,
    /// "unix" or "tls".
    pub protocol: String,
    /// The client's address (silo leaves it out).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
}

/// A `logging` event's metadata: one line of the daemon's log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventLogging {
    /// The message.
    pub message: String,
    /// "debug", "info", "warn", "error".
    pub level: String,
    /// Its fields.
    pub context: StringMap,
}
