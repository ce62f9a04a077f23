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
    /// Where it was pulled from (cached and auto-updated images).
    #[serde(default)]
    pub update_source: Option<UpdateSource>,
}

/// The image server an image came from, as LXD records it (`update_source`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpdateSource {
    /// The alias it was pulled by (empty when pulled by fingerprint).
    pub alias: String,
    /// The server's PEM certificate (lxd protocol), if pinned.
    pub certificate: String,
    /// `simplestreams` or `lxd`.
    pub protocol: String,
    /// The server's URL.
    pub server: String,
    /// `container`.
    pub image_type: String,
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
