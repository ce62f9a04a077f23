//! An image's record and its aliases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An image record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    /// sha256.
    pub fingerprint: String,
    /// Original file name.
    pub filename: String,
    /// Bytes of the stored file(s).
    pub size: u64,
    /// Visible to untrusted clients.
    pub public: bool,
    /// Architecture.
    pub architecture: String,
    /// container.
    #[serde(rename = "type")]
    pub kind: String,
    /// From metadata.yaml.
    pub created_at: String,
    /// Expiry.
    pub expires_at: String,
    /// Import time.
    pub uploaded_at: String,
    /// Last instance created from it.
    pub last_used_at: String,
    /// Auto-update flag.
    pub auto_update: bool,
    /// Cached from a remote.
    pub cached: bool,
    /// Split (metadata + rootfs) image.
    pub split: bool,
    /// Compression extension of the stored files (".tar.xz", ...).
    pub compression: String,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// Profiles applied to instances made from it.
    pub profiles: Vec<String>,
}

/// An alias.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageAlias {
    /// Name.
    pub name: String,
    /// Fingerprint it points at.
    pub target: String,
    /// Description.
    pub description: String,
}
