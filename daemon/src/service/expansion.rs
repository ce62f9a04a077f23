//! Profiles applied to instances and snapshots: read from the store, picked in order with
//! LXD's checks (each listed once, each existing), expanded under the local config. The one
//! place every service expands from, so a listing and a single GET expand alike.

use std::collections::BTreeMap;

use crate::model::profile::{Device, Profile, ProfileMap};
use crate::service::DomainError;
use crate::store::db::Db;

/// Every profile, by name.
pub fn profile_map(db: &Db) -> Result<ProfileMap, DomainError> {
    Ok(crate::store::profiles::by_name(db)?
        .into_iter()
        .map(|(n, p)| (n, p.map_err(|e| e.to_string())))
        .collect())
}

/// Profiles by name, in order.
pub fn load_profiles(db: &Db, names: &[String]) -> Result<Vec<Profile>, DomainError> {
    Ok(crate::model::profile::pick(&profile_map(db)?, names)?)
}

/// Profiles read once, to expand many instances and snapshots without a query each (a listing
/// of hundreds of instances). Expansion is the same as for one instance read alone.
#[derive(Debug)]
pub struct Expander(ProfileMap);

impl Expander {
    /// Reads every profile.
    pub fn load(db: &Db) -> Result<Expander, DomainError> {
        Ok(Expander(profile_map(db)?))
    }

    /// `config` and `devices` with the named profiles applied in order. A profile list that
    /// does not resolve (a profile gone, or damaged) renders unexpanded rather than failing the
    /// whole listing.
    pub fn expand(
        &self,
        names: &[String],
        config: &BTreeMap<String, String>,
        devices: &BTreeMap<String, Device>,
    ) -> (BTreeMap<String, String>, BTreeMap<String, Device>) {
        let profiles = crate::model::profile::pick(&self.0, names).unwrap_or_default();
        crate::model::profile::expand(&profiles, config, devices)
    }
}
