//! A profile: named config and devices that instances expand, in order, under their own.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::model::devices::DeviceType;

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

/// Expands profiles (in order) and then the local config and devices.
pub fn expand(
    profiles: &[Profile],
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
) -> (BTreeMap<String, String>, BTreeMap<String, Device>) {
    let mut c = BTreeMap::new();
    let mut d = BTreeMap::new();
    for p in profiles {
        c.extend(p.config.clone());
        d.extend(p.devices.clone());
    }
    c.extend(config.clone());
    d.extend(devices.clone());
    d.retain(|_, v: &mut Device| DeviceType::of(v) != DeviceType::None);
    (c, d)
}

/// The pool of the root disk in expanded devices.
pub fn root_pool(devices: &BTreeMap<String, Device>) -> Result<String, String> {
    let roots: Vec<&Device> = devices
        .values()
        .filter(|d| {
            DeviceType::of(d) == DeviceType::Disk
                && d.get("path").map(String::as_str) == Some("/")
                && d.get("source").is_none()
        })
        .collect();
    match roots.as_slice() {
        [] => Err("no root disk device (a disk with path \"/\" and a pool); add one or use a profile that has one".into()),
        [r] => r.get("pool").cloned().ok_or_else(|| "the root disk device has no pool".to_string()),
        _ => Err("more than one root disk device".into()),
    }
}

/// Every profile, read once, by name: what a listing of many instances expands from. A
/// profile whose row does not decode holds its error, for the instances that use it.
pub type ProfileMap = HashMap<String, Result<Profile, String>>;

/// Why a profile list does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// A profile named twice (a 400).
    #[error("profile {0:?} is listed twice")]
    ListedTwice(String),
    /// A profile that does not exist (a 400).
    #[error("profile {0:?} not found")]
    NotFound(String),
    /// A profile whose stored row does not decode (a 500): its error.
    #[error("{0}")]
    Damaged(String),
}

/// Profiles by name, in order, from profiles read before: the same checks as
/// a profile list read alone (each listed once, each existing).
pub fn pick(all: &ProfileMap, names: &[String]) -> Result<Vec<Profile>, ProfileError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in names {
        if !seen.insert(n) {
            return Err(ProfileError::ListedTwice(n.clone()));
        }
        match all.get(n) {
            Some(Ok(p)) => out.push(p.clone()),
            Some(Err(e)) => return Err(ProfileError::Damaged(e.clone())),
            None => return Err(ProfileError::NotFound(n.clone())),
        }
    }
    Ok(out)
}
