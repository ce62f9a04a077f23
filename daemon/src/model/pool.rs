//! A storage pool's record and its custom volumes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A pool record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pool {
    /// Name.
    pub name: String,
    /// "dir".
    pub driver: String,
    /// Description.
    pub description: String,
    /// Config.
    pub config: BTreeMap<String, String>,
}

/// A custom volume: (name, description, config).
pub type CustomVolume = (String, String, BTreeMap<String, String>);
