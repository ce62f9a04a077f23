//! Images and aliases: `/1.0/images[/<fingerprint>]`, `/1.0/images/aliases[/<name>]`.

use serde::{Deserialize, Serialize};

use crate::StringMap;

/// An image: `GET /1.0/images/<fingerprint>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Image {
    /// Aliases pointing at it.
    pub aliases: Vec<ImageAlias>,
    /// e.g. "x86_64".
    pub architecture: String,
    /// Refreshed from its source.
    pub auto_update: bool,
    /// Downloaded to create an instance (not by the user).
    pub cached: bool,
    /// When it was built.
    pub created_at: String,
    /// When it expires.
    pub expires_at: String,
    /// File name at export.
    pub filename: String,
    /// SHA-256 of the image file(s).
    pub fingerprint: String,
    /// Last use ([`crate::ZERO_TIME`]: never).
    pub last_used_at: String,
    /// Profiles new instances get.
    pub profiles: Vec<String>,
    /// Properties (`os`, `release`, `description`, ...).
    pub properties: StringMap,
    /// Readable by untrusted clients.
    pub public: bool,
    /// Bytes.
    pub size: i64,
    /// "container" (LXD also has "virtual-machine").
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was added.
    pub uploaded_at: String,
    /// Where it is refreshed from (`None`: null, a local image).
    pub update_source: Option<ImageSource>,
}

/// An alias as an image lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAlias {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
}

/// Where an image is refreshed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageSource {
    /// Alias on the server.
    pub alias: String,
    /// Server's certificate.
    pub certificate: String,
    /// "lxd" or "simplestreams".
    pub protocol: String,
    /// Server URL.
    pub server: String,
    /// "container".
    pub image_type: String,
}

/// The writable part of an image: `PUT/PATCH /1.0/images/<fingerprint>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagePut {
    /// Refreshed from its source.
    pub auto_update: bool,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// Profiles new instances get.
    pub profiles: Vec<String>,
    /// Properties.
    pub properties: StringMap,
    /// Readable by untrusted clients.
    pub public: bool,
}

/// `POST /1.0/images` with a JSON body: publish an instance or snapshot (the upload of a
/// tarball sends no JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagesPost {
    /// Aliases to create.
    pub aliases: Vec<ImageAlias>,
    /// Refreshed from its source.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub auto_update: bool,
    /// "gzip" (default), "xz", "zstd", "none".
    pub compression_algorithm: String,
    /// Expiry (RFC 3339).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub expires_at: String,
    /// File name at export.
    pub filename: String,
    /// Profiles new instances get.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Properties (over those of the instance's own image).
    pub properties: StringMap,
    /// Readable by untrusted clients.
    pub public: bool,
    /// What to make it from.
    pub source: ImagesPostSource,
}

/// What [`ImagesPost`] makes an image from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagesPostSource {
    /// "instance", "container", "snapshot" (LXD also has "image", "url").
    #[serde(rename = "type")]
    pub kind: String,
    /// The instance, or `INSTANCE/SNAPSHOT`.
    pub name: String,
    /// Image fingerprint on a remote.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// Image alias on a remote.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias: String,
    /// Remote server.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server: String,
    /// Remote protocol.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Remote certificate.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificate: String,
    /// Secret for a private remote image.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret: String,
    /// "pull" or "push".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// URL of a "url" source.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Source project.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project: String,
    /// "container" or "virtual-machine".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_type: String,
}

/// An alias: `GET /1.0/images/aliases/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAliasesEntry {
    /// Name.
    pub name: String,
    /// The image's fingerprint.
    pub target: String,
    /// Description.
    pub description: String,
    /// "container".
    #[serde(rename = "type")]
    pub kind: String,
}

/// `POST /1.0/images/aliases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAliasesPost {
    /// Name.
    pub name: String,
    /// The image's fingerprint (or a prefix).
    pub target: String,
    /// Description.
    pub description: String,
    /// "container".
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// `PUT/PATCH /1.0/images/aliases/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAliasesEntryPut {
    /// Description.
    pub description: String,
    /// The image's fingerprint.
    pub target: String,
}

/// `POST /1.0/images/aliases/<name>`: rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAliasesEntryPost {
    /// New name.
    pub name: String,
}

/// The metadata of the operation that made an image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageCreated {
    /// Its fingerprint.
    pub fingerprint: String,
    /// Its size in bytes.
    pub size: i64,
}
