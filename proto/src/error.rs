//! The one error type every helper returns across the boundary.
//!
//! It is a serializable enum, never a bare string, so silod can map each case onto an LXD
//! status code (404, 409, 403, 400, 500) without parsing text.

use serde::{Deserialize, Serialize};

/// What a helper answers when it refuses or fails a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum HelperError {
    /// The object already exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// The object, e.g. `storage volume "c1" in pool "default"`.
        what: String,
    },
    /// The root-owned policy file does not allow this.
    #[error("denied by policy {policy}: {what}")]
    Denied {
        /// The policy file that decided.
        policy: String,
        /// What was asked for, and which key would allow it.
        what: String,
    },
    /// The object is in use and cannot be removed.
    #[error("{what} is in use: {by}")]
    InUse {
        /// The object.
        what: String,
        /// What holds it.
        by: String,
    },
    /// A system call or file operation failed.
    #[error("{op} {target}: {message}")]
    Io {
        /// The operation, e.g. "mkdirat".
        op: String,
        /// What it acted on.
        target: String,
        /// The OS error text.
        message: String,
        /// The errno, when there was one.
        errno: Option<i32>,
    },
    /// A request argument is malformed or out of range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which argument.
        what: String,
        /// Why.
        reason: String,
    },
    /// The object does not exist.
    #[error("{what} not found")]
    NotFound {
        /// The object.
        what: String,
    },
    /// The helper is in the wrong state for this request (e.g. a call out of order).
    #[error("out of order: {0}")]
    OutOfOrder(String),
    /// The host lacks something this needs.
    #[error("not supported on this host: {0}")]
    Unsupported(String),
}

impl HelperError {
    /// Builds an `Io` error from an errno and the operation that failed.
    pub fn io(op: &str, target: impl std::fmt::Display, err: std::io::Error) -> Self {
        HelperError::Io {
            op: op.to_string(),
            target: target.to_string(),
            message: err.to_string(),
            errno: err.raw_os_error(),
        }
    }

    /// Builds an `Io` error from a nix errno.
    pub fn errno(op: &str, target: impl std::fmt::Display, err: nix::errno::Errno) -> Self {
        Self::io(op, target, std::io::Error::from_raw_os_error(err as i32))
    }

    /// Builds an `Invalid` error.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        HelperError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status LXD would use for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            HelperError::AlreadyExists { .. } | HelperError::InUse { .. } => 409,
            HelperError::Denied { .. } => 403,
            HelperError::Invalid { .. } => 400,
            HelperError::NotFound { .. } => 404,
            HelperError::OutOfOrder(_) => 409,
            HelperError::Io { .. } | HelperError::Unsupported(_) => 500,
        }
    }
}

impl From<crate::names::NameError> for HelperError {
    fn from(e: crate::names::NameError) -> Self {
        HelperError::Invalid {
            what: e.kind,
            reason: format!("{:?}: {}", e.value, e.reason),
        }
    }
}

/// Result type of every helper RPC.
pub type HelperResult<T> = Result<T, HelperError>;
