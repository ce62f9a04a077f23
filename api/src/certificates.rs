//! Trusted client certificates: `/1.0/certificates[/<fingerprint>]`.

use serde::{Deserialize, Serialize};

/// A trusted certificate: `GET /1.0/certificates/<fingerprint>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Certificate {
    /// Name.
    pub name: String,
    /// "client" (LXD also has "metrics").
    #[serde(rename = "type")]
    pub kind: String,
    /// Limited to `projects`.
    pub restricted: bool,
    /// Projects it may use when restricted.
    pub projects: Vec<String>,
    /// The certificate (PEM).
    pub certificate: String,
    /// Its SHA-256 fingerprint.
    pub fingerprint: String,
}

/// The writable part of a certificate: `PUT/PATCH /1.0/certificates/<fingerprint>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificatePut {
    /// Name.
    pub name: String,
    /// "client".
    #[serde(rename = "type")]
    pub kind: String,
    /// Limited to `projects`.
    pub restricted: bool,
    /// Projects it may use when restricted.
    pub projects: Vec<String>,
    /// The certificate (PEM).
    pub certificate: String,
}

/// `POST /1.0/certificates`: trust a certificate (with the trust password or a token).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificatesPost {
    /// Name.
    pub name: String,
    /// "client".
    #[serde(rename = "type")]
    pub kind: String,
    /// Limited to `projects`.
    pub restricted: bool,
    /// Projects it may use when restricted.
    pub projects: Vec<String>,
    /// The certificate (PEM; empty: the client's TLS certificate).
    pub certificate: String,
    /// The trust password.
    pub password: String,
    /// Ask for a join token instead.
    pub token: bool,
}
