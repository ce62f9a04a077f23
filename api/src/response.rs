//! LXD's response envelope: every answer is one of these.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{"type": "sync"|"async"|"error", ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Response {
    /// "sync", "async" or "error".
    #[serde(rename = "type")]
    pub kind: String,
    /// "Success", "Operation created" ("" on errors).
    pub status: String,
    /// 200, 100 (0 on errors).
    pub status_code: i64,
    /// The operation's URL on async answers.
    pub operation: String,
    /// The HTTP status on errors (0 otherwise).
    pub error_code: i64,
    /// The error's text.
    pub error: String,
    /// The object, list or operation.
    pub metadata: Value,
}

impl Response {
    /// A sync answer.
    pub fn sync(metadata: Value) -> Response {
        Response {
            kind: "sync".into(),
            status: "Success".into(),
            status_code: 200,
            operation: String::new(),
            error_code: 0,
            error: String::new(),
            metadata,
        }
    }

    /// An async answer: `operation` is the operation's URL, `metadata` the operation.
    pub fn async_op(operation: String, metadata: Value) -> Response {
        Response {
            kind: "async".into(),
            status: "Operation created".into(),
            status_code: 100,
            operation,
            error_code: 0,
            error: String::new(),
            metadata,
        }
    }

    /// An error answer with its HTTP status.
    pub fn error(code: u16, error: String) -> Response {
        Response {
            kind: "error".into(),
            status: String::new(),
            status_code: 0,
            operation: String::new(),
            error_code: i64::from(code),
            error,
            metadata: Value::Null,
        }
    }

    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.kind == "error"
    }

    /// The metadata as a typed object (`null` is the type's zero value).
    pub fn metadata_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        crate::lenient::from_value(self.metadata.clone())
    }
}
