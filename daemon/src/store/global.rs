//! The interfaces the rest of silod could reach the database through: [`GlobalStore`] for
//! records every host shares (a cluster engine would serve these), [`LocalStore`] for what is
//! true of this host only (SQLite on each host whatever serves the global ones). [`Db`], the
//! SQLite store, implements both. See `store/mod.rs` for which record is which, and why.

use std::collections::BTreeMap;

use crate::model::backup::Backup;
use crate::model::image::{Image, ImageAlias};
use crate::model::instance::{Instance, Snapshot};
use crate::model::network::Network;
use crate::model::pool::{CustomVolume, Pool};
use crate::model::profile::Profile;
use crate::store::db::Db;
use crate::store::error::StoreError;

/// The global records: instances' definitions, profiles, images and aliases, networks,
/// pools and custom volumes, snapshots, backups, server config.
pub trait GlobalStore: Send + Sync {
    // Instance's definitions: [`crate::store::instances`].
    /// See [`crate::store::instances::all`].
    fn instances(&self) -> Result<Vec<Instance>, StoreError>;
    /// See [`crate::store::instances::get`].
    fn instance(&self, name: &str) -> Result<Instance, StoreError>;
    /// See [`crate::store::instances::insert`].
    fn insert_instance(&self, i: &Instance) -> Result<(), StoreError>;
    /// See [`crate::store::instances::update`].
    fn update_instance(&self, i: &Instance) -> Result<(), StoreError>;
    /// See [`crate::store::instances::delete`].
    fn delete_instance(&self, name: &str) -> Result<(), StoreError>;
    /// See [`crate::store::instances::rename`].
    fn rename_instance(&self, from: &str, to: &str) -> Result<(), StoreError>;
    // Profiles: [`crate::store::profiles`].
    /// See [`crate::store::profiles::all`].
    fn profiles(&self) -> Result<Vec<Profile>, StoreError>;
    /// See [`crate::store::profiles::get`].
    fn profile(&self, name: &str) -> Result<Profile, StoreError>;
    /// See [`crate::store::profiles::put`].
    fn put_profile(&self, p: &Profile) -> Result<(), StoreError>;
    /// See [`crate::store::profiles::delete`].
    fn delete_profile(&self, name: &str) -> Result<(), StoreError>;
    /// See [`crate::store::profiles::rename`].
    fn rename_profile(&self, from: &str, to: &str) -> Result<(), StoreError>;
    // Images and aliases: [`crate::store::images`].
    /// See [`crate::store::images::all`].
    fn images(&self) -> Result<Vec<Image>, StoreError>;
    /// See [`crate::store::images::get`].
    fn image(&self, fp: &str) -> Result<Option<Image>, StoreError>;
    /// See [`crate::store::images::insert`].
    fn insert_image(&self, i: &Image) -> Result<(), StoreError>;
    /// See [`crate::store::images::update`].
    fn update_image(&self, i: &Image) -> Result<(), StoreError>;
    /// See [`crate::store::images::touch`].
    fn touch_image(&self, fp: &str, when: &str) -> Result<(), StoreError>;
    /// See [`crate::store::images::delete`].
    fn delete_image(&self, fp: &str) -> Result<(), StoreError>;
    /// See [`crate::store::images::aliases`].
    fn image_aliases(&self) -> Result<Vec<ImageAlias>, StoreError>;
    /// See [`crate::store::images::alias_put`].
    fn put_image_alias(&self, a: &ImageAlias) -> Result<(), StoreError>;
    /// See [`crate::store::images::alias_delete`].
    fn delete_image_alias(&self, name: &str) -> Result<(), StoreError>;
    /// See [`crate::store::images::alias_rename`].
    fn rename_image_alias(&self, from: &str, to: &str) -> Result<(), StoreError>;
    // Networks: [`crate::store::networks`].
    /// See [`crate::store::networks::all`].
    fn networks(&self) -> Result<Vec<Network>, StoreError>;
    /// See [`crate::store::networks::get`].
    fn network(&self, name: &str) -> Result<Network, StoreError>;
    /// See [`crate::store::networks::insert`].
    fn insert_network(&self, n: &Network) -> Result<(), StoreError>;
    /// See [`crate::store::networks::update`].
    fn update_network(&self, n: &Network) -> Result<(), StoreError>;
    /// See [`crate::store::networks::delete`].
    fn delete_network(&self, name: &str) -> Result<(), StoreError>;
    // Storage pools and custom volumes: [`crate::store::pools`].
    /// See [`crate::store::pools::all`].
    fn pools(&self) -> Result<Vec<Pool>, StoreError>;
    /// See [`crate::store::pools::get`].
    fn pool(&self, name: &str) -> Result<Pool, StoreError>;
    /// See [`crate::store::pools::insert`].
    fn insert_pool(&self, p: &Pool) -> Result<(), StoreError>;
    /// See [`crate::store::pools::set_description`].
    fn set_pool_description(&self, name: &str, description: &str) -> Result<(), StoreError>;
    /// See [`crate::store::pools::delete`].
    fn delete_pool(&self, name: &str) -> Result<(), StoreError>;
    /// See [`crate::store::pools::custom_volumes`].
    fn custom_volumes(&self, pool: &str) -> Result<Vec<CustomVolume>, StoreError>;
    /// See [`crate::store::pools::insert_custom_volume`].
    fn insert_custom_volume(
        &self,
        pool: &str,
        name: &str,
        description: &str,
    ) -> Result<(), StoreError>;
    /// See [`crate::store::pools::delete_custom_volume`].
    fn delete_custom_volume(&self, pool: &str, name: &str) -> Result<(), StoreError>;
    // Snapshots: [`crate::store::snapshots`].
    /// See [`crate::store::snapshots::of_instance`].
    fn snapshots(&self, instance: &str) -> Result<Vec<Snapshot>, StoreError>;
    /// See [`crate::store::snapshots::get`].
    fn snapshot(&self, instance: &str, name: &str) -> Result<Snapshot, StoreError>;
    /// See [`crate::store::snapshots::expiring`].
    fn expiring_snapshots(&self) -> Result<Vec<Snapshot>, StoreError>;
    /// See [`crate::store::snapshots::insert`].
    fn insert_snapshot(&self, s: &Snapshot) -> Result<(), StoreError>;
    /// See [`crate::store::snapshots::delete`].
    fn delete_snapshot(&self, instance: &str, name: &str) -> Result<(), StoreError>;
    /// See [`crate::store::snapshots::rename`].
    fn rename_snapshot(&self, instance: &str, from: &str, to: &str) -> Result<(), StoreError>;
    // Backups: [`crate::store::backups`].
    /// See [`crate::store::backups::all`].
    fn backups(&self) -> Result<Vec<Backup>, StoreError>;
    /// See [`crate::store::backups::of_instance`].
    fn instance_backups(&self, instance: &str) -> Result<Vec<Backup>, StoreError>;
    /// See [`crate::store::backups::get`].
    fn backup(&self, instance: &str, name: &str) -> Result<Backup, StoreError>;
    /// See [`crate::store::backups::expiring`].
    fn expiring_backups(&self) -> Result<Vec<Backup>, StoreError>;
    /// See [`crate::store::backups::insert`].
    fn insert_backup(&self, b: &Backup) -> Result<(), StoreError>;
    /// See [`crate::store::backups::delete`].
    fn delete_backup(&self, instance: &str, name: &str) -> Result<(), StoreError>;
    /// See [`crate::store::backups::rename`].
    fn rename_backup(&self, instance: &str, from: &str, to: &str) -> Result<(), StoreError>;
    // Server config: [`crate::store::config`].
    /// See [`crate::store::config::all`].
    fn server_config(&self) -> Result<BTreeMap<String, String>, StoreError>;
    /// See [`crate::store::config::get`].
    fn server_config_key(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// See [`crate::store::config::replace`].
    fn replace_server_config(&self, cfg: &BTreeMap<String, String>) -> Result<(), StoreError>;
}

impl GlobalStore for Db {
    fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        crate::store::instances::all(self)
    }
    fn instance(&self, name: &str) -> Result<Instance, StoreError> {
        crate::store::instances::get(self, name)
    }
    fn insert_instance(&self, i: &Instance) -> Result<(), StoreError> {
        crate::store::instances::insert(self, i)
    }
    fn update_instance(&self, i: &Instance) -> Result<(), StoreError> {
        crate::store::instances::update(self, i)
    }
    fn delete_instance(&self, name: &str) -> Result<(), StoreError> {
        crate::store::instances::delete(self, name)
    }
    fn rename_instance(&self, from: &str, to: &str) -> Result<(), StoreError> {
        crate::store::instances::rename(self, from, to)
    }
    fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        crate::store::profiles::all(self)
    }
    fn profile(&self, name: &str) -> Result<Profile, StoreError> {
        crate::store::profiles::get(self, name)
    }
    fn put_profile(&self, p: &Profile) -> Result<(), StoreError> {
        crate::store::profiles::put(self, p)
    }
    fn delete_profile(&self, name: &str) -> Result<(), StoreError> {
        crate::store::profiles::delete(self, name)
    }
    fn rename_profile(&self, from: &str, to: &str) -> Result<(), StoreError> {
        crate::store::profiles::rename(self, from, to)
    }
    fn images(&self) -> Result<Vec<Image>, StoreError> {
        crate::store::images::all(self)
    }
    fn image(&self, fp: &str) -> Result<Option<Image>, StoreError> {
        crate::store::images::get(self, fp)
    }
    fn insert_image(&self, i: &Image) -> Result<(), StoreError> {
        crate::store::images::insert(self, i)
    }
    fn update_image(&self, i: &Image) -> Result<(), StoreError> {
        crate::store::images::update(self, i)
    }
    fn touch_image(&self, fp: &str, when: &str) -> Result<(), StoreError> {
        crate::store::images::touch(self, fp, when)
    }
    fn delete_image(&self, fp: &str) -> Result<(), StoreError> {
        crate::store::images::delete(self, fp)
    }
    fn image_aliases(&self) -> Result<Vec<ImageAlias>, StoreError> {
        crate::store::images::aliases(self)
    }
    fn put_image_alias(&self, a: &ImageAlias) -> Result<(), StoreError> {
        crate::store::images::alias_put(self, a)
    }
    fn delete_image_alias(&self, name: &str) -> Result<(), StoreError> {
        crate::store::images::alias_delete(self, name)
    }
    fn rename_image_alias(&self, from: &str, to: &str) -> Result<(), StoreError> {
        crate::store::images::alias_rename(self, from, to)
    }
    fn networks(&self) -> Result<Vec<Network>, StoreError> {
        crate::store::networks::all(self)
    }
    fn network(&self, name: &str) -> Result<Network, StoreError> {
        crate::store::networks::get(self, name)
    }
    fn insert_network(&self, n: &Network) -> Result<(), StoreError> {
        crate::store::networks::insert(self, n)
    }
    fn update_network(&self, n: &Network) -> Result<(), StoreError> {
        crate::store::networks::update(self, n)
    }
    fn delete_network(&self, name: &str) -> Result<(), StoreError> {
        crate::store::networks::delete(self, name)
    }
    fn pools(&self) -> Result<Vec<Pool>, StoreError> {
        crate::store::pools::all(self)
    }
    fn pool(&self, name: &str) -> Result<Pool, StoreError> {
        crate::store::pools::get(self, name)
    }
    fn insert_pool(&self, p: &Pool) -> Result<(), StoreError> {
        crate::store::pools::insert(self, p)
    }
    fn set_pool_description(&self, name: &str, description: &str) -> Result<(), StoreError> {
        crate::store::pools::set_description(self, name, description)
    }
    fn delete_pool(&self, name: &str) -> Result<(), StoreError> {
        crate::store::pools::delete(self, name)
    }
    fn custom_volumes(&self, pool: &str) -> Result<Vec<CustomVolume>, StoreError> {
        crate::store::pools::custom_volumes(self, pool)
    }
    fn insert_custom_volume(
        &self,
        pool: &str,
        name: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        crate::store::pools::insert_custom_volume(self, pool, name, description)
    }
    fn delete_custom_volume(&self, pool: &str, name: &str) -> Result<(), StoreError> {
        crate::store::pools::delete_custom_volume(self, pool, name)
    }
    fn snapshots(&self, instance: &str) -> Result<Vec<Snapshot>, StoreError> {
        crate::store::snapshots::of_instance(self, instance)
    }
    fn snapshot(&self, instance: &str, name: &str) -> Result<Snapshot, StoreError> {
        crate::store::snapshots::get(self, instance, name)
    }
    fn expiring_snapshots(&self) -> Result<Vec<Snapshot>, StoreError> {
        crate::store::snapshots::expiring(self)
    }
    fn insert_snapshot(&self, s: &Snapshot) -> Result<(), StoreError> {
        crate::store::snapshots::insert(self, s)
    }
    fn delete_snapshot(&self, instance: &str, name: &str) -> Result<(), StoreError> {
        crate::store::snapshots::delete(self, instance, name)
    }
    fn rename_snapshot(&self, instance: &str, from: &str, to: &str) -> Result<(), StoreError> {
        crate::store::snapshots::rename(self, instance, from, to)
    }
    fn backups(&self) -> Result<Vec<Backup>, StoreError> {
        crate::store::backups::all(self)
    }
    fn instance_backups(&self, instance: &str) -> Result<Vec<Backup>, StoreError> {
        crate::store::backups::of_instance(self, instance)
    }
    fn backup(&self, instance: &str, name: &str) -> Result<Backup, StoreError> {
        crate::store::backups::get(self, instance, name)
    }
    fn expiring_backups(&self) -> Result<Vec<Backup>, StoreError> {
        crate::store::backups::expiring(self)
    }
    fn insert_backup(&self, b: &Backup) -> Result<(), StoreError> {
        crate::store::backups::insert(self, b)
    }
    fn delete_backup(&self, instance: &str, name: &str) -> Result<(), StoreError> {
        crate::store::backups::delete(self, instance, name)
    }
    fn rename_backup(&self, instance: &str, from: &str, to: &str) -> Result<(), StoreError> {
        crate::store::backups::rename(self, instance, from, to)
    }
    fn server_config(&self) -> Result<BTreeMap<String, String>, StoreError> {
        crate::store::config::all(self)
    }
    fn server_config_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        crate::store::config::get(self, key)
    }
    fn replace_server_config(&self, cfg: &BTreeMap<String, String>) -> Result<(), StoreError> {
        crate::store::config::replace(self, cfg)
    }
}

/// The node-local records: id ranges held on this host, images unpacked into its pools,
/// instances' running state.
pub trait LocalStore: Send + Sync {
    // Id ranges: [`crate::store::idmap`].
    /// See [`crate::store::idmap::claim`].
    fn claim_idmap(
        &self,
        name: &str,
        blocks: u64,
        pick: &mut dyn FnMut(&[u64]) -> Option<u64>,
    ) -> Result<Option<u64>, StoreError>;
    /// See [`crate::store::idmap::release_unused`].
    fn release_unused_idmap(&self, name: &str, base: u64) -> Result<(), StoreError>;
    /// See [`crate::store::idmap::all`].
    fn idmap_claims(&self) -> Result<Vec<(u64, String)>, StoreError>;
    // Images unpacked into this host's pools: [`crate::store::local`].
    /// See [`crate::store::local::image_volumes`].
    fn image_volumes(&self, pool: &str) -> Result<Vec<String>, StoreError>;
    /// See [`crate::store::local::add_image_volume`].
    fn add_image_volume(&self, pool: &str, fp: &str) -> Result<(), StoreError>;
    /// See [`crate::store::local::remove_image_volume`].
    fn remove_image_volume(&self, pool: &str, fp: &str) -> Result<(), StoreError>;
    // Instances' running state: [`crate::store::local::set_volatile`].
    /// See [`crate::store::local::set_volatile`].
    fn set_volatile_keys(
        &self,
        name: &str,
        keys: &[(&str, &str)],
        last_used: Option<&str>,
    ) -> Result<(), StoreError>;
}

impl LocalStore for Db {
    fn claim_idmap(
        &self,
        name: &str,
        blocks: u64,
        pick: &mut dyn FnMut(&[u64]) -> Option<u64>,
    ) -> Result<Option<u64>, StoreError> {
        crate::store::idmap::claim(self, name, blocks, pick)
    }
    fn release_unused_idmap(&self, name: &str, base: u64) -> Result<(), StoreError> {
        crate::store::idmap::release_unused(self, name, base)
    }
    fn idmap_claims(&self) -> Result<Vec<(u64, String)>, StoreError> {
        crate::store::idmap::all(self)
    }
    fn image_volumes(&self, pool: &str) -> Result<Vec<String>, StoreError> {
        crate::store::local::image_volumes(self, pool)
    }
    fn add_image_volume(&self, pool: &str, fp: &str) -> Result<(), StoreError> {
        crate::store::local::add_image_volume(self, pool, fp)
    }
    fn remove_image_volume(&self, pool: &str, fp: &str) -> Result<(), StoreError> {
        crate::store::local::remove_image_volume(self, pool, fp)
    }
    fn set_volatile_keys(
        &self,
        name: &str,
        keys: &[(&str, &str)],
        last_used: Option<&str>,
    ) -> Result<(), StoreError> {
        crate::store::local::set_volatile(self, name, keys, last_used)
    }
}
