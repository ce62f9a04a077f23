//! A profile: named config and devices that instances expand, in order, under their own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A device: its keys (type, path, pool, ...).
pub type Device = BTreeMap<String, String>;

/// A profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default, deserialize_with = "crate::model::null_default")]
    pub description: String,
    /// Config.
    #[serde(default, deserialize_with = "crate::model::null_default")]
    pub config: BTreeMap<String, String>,
    /// Devices.
    #[serde(default, deserialize_with = "crate::model::null_default")]
    pub devices: BTreeMap<String, Device>,
}
