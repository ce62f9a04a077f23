//! Where the global records' writes go when they do not go to this host's SQLite: the
//! interface [`crate::store::replica::Replica`] (etcd) serves for a cluster member, named
//! here so that the table modules reach it through [`crate::store::db::Db`] without naming
//! the engine.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::model::image::{Image, ImageAlias};
use crate::model::profile::Profile;
use crate::model::trust::CertRecord;
use crate::store::error::StoreError;

/// The global writes of `store/`, as the cluster takes them.
pub trait GlobalWrites: Send + Sync + std::fmt::Debug {
    /// Creates or replaces a profile.
    fn put_profile(&self, p: &Profile) -> Result<(), StoreError>;
    /// Deletes a profile.
    fn delete_profile(&self, name: &str) -> Result<(), StoreError>;
    /// Renames a profile (and every member's instances' mentions of it).
    fn rename_profile(&self, from: &str, to: &str) -> Result<(), StoreError>;
    /// Records a new image; `Conflict` if recorded.
    fn insert_image(&self, i: &Image) -> Result<(), StoreError>;
    /// Changes a recorded image with `f`.
    fn modify_image(&self, fp: &str, f: &(dyn Fn(&mut Image) + Sync)) -> Result<(), StoreError>;
    /// Deletes an image and the aliases named.
    fn delete_image(&self, fp: &str, aliases: &[String]) -> Result<(), StoreError>;
    /// Creates or replaces an alias.
    fn put_alias(&self, a: &ImageAlias) -> Result<(), StoreError>;
    /// Removes an alias.
    fn delete_alias(&self, name: &str) -> Result<(), StoreError>;
    /// Renames an alias.
    fn rename_alias(&self, from: &str, to: &str) -> Result<(), StoreError>;
    /// Trusts a new certificate.
    fn insert_certificate(&self, cert: &CertRecord) -> Result<(), StoreError>;
    /// Replaces a trusted certificate.
    fn replace_certificate(&self, old: &CertRecord, new: &CertRecord) -> Result<(), StoreError>;
    /// Stops trusting a certificate.
    fn delete_certificate(&self, fp: &str) -> Result<(), StoreError>;
    /// Makes the cluster's config keys `cfg` (from `now`).
    fn replace_config(
        &self,
        now: &BTreeMap<String, String>,
        cfg: &BTreeMap<String, String>,
    ) -> Result<(), StoreError>;
    /// Waits until this host's copy holds every write finished before the call.
    fn sync(&self) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + '_>>;
}
