//! `/1.0/warnings`: LXD's `api.Warning` and `api.WarningPut`.

use serde::{Deserialize, Serialize};

/// A warning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Warning {
    /// "new", "acknowledged" or "resolved".
    pub status: String,
    /// Its UUID.
    pub uuid: String,
    /// The cluster member it is about ("none" on a single host, as LXD).
    pub location: String,
    /// Its project ("" for the server's own).
    pub project: String,
    /// LXD's type name.
    #[serde(rename = "type")]
    pub kind: String,
    /// How often it was seen.
    pub count: i64,
    /// When first seen.
    pub first_seen_at: String,
    /// When last seen.
    pub last_seen_at: String,
    /// The last message.
    pub last_message: String,
    /// "low", "moderate" or "high".
    pub severity: String,
    /// The entity it is about ("" for the host).
    pub entity_url: String,
}

/// `PUT`/`PATCH /1.0/warnings/<uuid>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WarningPut {
    /// "acknowledged" or "new".
    pub status: String,
}
