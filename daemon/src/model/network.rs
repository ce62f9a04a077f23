//! A network's record, as stored and as the service layer works on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A network record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Network {
    /// Name (the interface name for bridges).
    pub name: String,
    /// "bridge", "macvlan" or "physical".
    pub kind: String,
    /// Description.
    pub description: String,
    /// Config, with `auto` addresses replaced by the subnets picked.
    pub config: BTreeMap<String, String>,
}
