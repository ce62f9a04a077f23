//! Profiles: `/1.0/profiles[/<name>]`.

use serde::{Deserialize, Serialize};

use crate::{DeviceMap, StringMap};

/// A profile: `GET /1.0/profiles/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Configuration.
    pub config: StringMap,
    /// Devices.
    pub devices: DeviceMap,
    /// Instances using it (URLs).
    pub used_by: Vec<String>,
}

/// The writable part of a profile: `PUT/PATCH /1.0/profiles/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfilePut {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
    /// Devices.
    pub devices: DeviceMap,
}

impl From<&Profile> for ProfilePut {
    fn from(p: &Profile) -> Self {
        ProfilePut {
            config: p.config.clone(),
            description: p.description.clone(),
            devices: p.devices.clone(),
        }
    }
}

/// `POST /1.0/profiles`; also a profile in `silo init`'s preseed (fields in the order
/// `--dump` prints them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfilesPost {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
    /// Devices.
    pub devices: DeviceMap,
    /// Name.
    pub name: String,
}

/// `POST /1.0/profiles/<name>`: rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfilePost {
    /// New name.
    pub name: String,
}
