//! Background operations: `/1.0/operations[/<id>]`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An operation: `GET /1.0/operations/<id>`, the metadata of an async answer, and of an
/// `operation` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Operation {
    /// UUID.
    pub id: String,
    /// "task", "websocket" or "token".
    pub class: String,
    /// e.g. "Creating instance".
    pub description: String,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// "Running", "Success", "Failure", ...
    pub status: String,
    /// 103 running, 200 success, 400 failure, 401 cancelled, ...
    pub status_code: i64,
    /// Affected objects by kind ("instances": URLs).
    pub resources: BTreeMap<String, Vec<String>>,
    /// Result or progress: its shape depends on the operation (Go's `map[string]any`; silo
    /// sends `null` when there is none).
    pub metadata: Value,
    /// Whether DELETE cancels it.
    pub may_cancel: bool,
    /// Error text on failure.
    pub err: String,
    /// Cluster member ("none").
    pub location: String,
}

impl Operation {
    /// Whether it has ended (success, failure or cancelled).
    pub fn is_final(&self) -> bool {
        matches!(self.status_code, 200 | 400 | 401)
    }

    /// Whether it ended well.
    pub fn succeeded(&self) -> bool {
        self.status_code == 200
    }

    /// The metadata as a typed object (`null` is the type's zero value).
    pub fn metadata_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        crate::lenient::from_value(self.metadata.clone())
    }
}
