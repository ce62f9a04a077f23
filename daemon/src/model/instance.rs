//! An instance's record and its snapshots' records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::profile::Device;

/// An instance record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    /// Name.
    pub name: String,
    /// "container".
    pub kind: String,
    /// Architecture.
    pub architecture: String,
    /// Ephemeral.
    pub ephemeral: bool,
    /// Stateful.
    pub stateful: bool,
    /// Description.
    pub description: String,
    /// Creation time.
    pub created_at: String,
    /// Last start.
    pub last_used_at: String,
    /// Local config.
    pub config: BTreeMap<String, String>,
    /// Local devices.
    pub devices: BTreeMap<String, Device>,
    /// Profiles, in order.
    pub profiles: Vec<String>,
    /// The pool holding its root volume.
    pub pool: String,
}

/// A snapshot record.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The instance.
    pub instance: String,
    /// The snapshot's own name.
    pub name: String,
    /// When it was taken.
    pub created_at: String,
    /// When it expires ("" for never).
    pub expires_at: String,
    /// Description.
    pub description: String,
    /// The instance's local config at the time.
    pub config: BTreeMap<String, String>,
    /// The instance's local devices at the time.
    pub devices: BTreeMap<String, Device>,
    /// Its profiles at the time.
    pub profiles: Vec<String>,
    /// Architecture.
    pub architecture: String,
}
