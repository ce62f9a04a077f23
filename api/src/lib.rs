//! The objects and requests of LXD's REST API 1.0 that silo serves, with LXD's JSON field names
//! (LXD's `shared/api` Go package is the model), for silod, the CLI and the tests alike.
//!
//! Serde only. Every type takes `null` and missing fields as their zero value and ignores
//! unknown fields when decoded through [`lenient`], as LXD's Go decoder does; fields LXD has
//! and silo does not send are left out of the JSON when empty, so encoding an object gives the
//! JSON silod has always sent.

pub mod backups;
pub mod certificates;
pub mod cluster;
pub mod events;
pub mod images;
pub mod instances;
pub mod lenient;
pub mod migration;
pub mod networks;
pub mod operations;
pub mod paths;
pub mod preseed;
pub mod profiles;
pub mod projects;
pub mod resources;
pub mod response;
pub mod server;
pub mod simplestreams;
pub mod snapshots;
pub mod storage;
pub mod units;
pub mod warnings;

use std::collections::BTreeMap;

pub use backups::*;
pub use certificates::*;
pub use cluster::*;
pub use events::*;
pub use images::*;
pub use instances::*;
pub use networks::*;
pub use operations::*;
pub use preseed::*;
pub use profiles::*;
pub use projects::*;
pub use resources::*;
pub use response::*;
pub use server::*;
pub use snapshots::*;
pub use storage::*;
pub use warnings::*;

/// A configuration map (`config`, `properties`, one device), Go's `map[string]string`.
pub type StringMap = BTreeMap<String, String>;

/// Devices by name, Go's `map[string]map[string]string`.
pub type DeviceMap = BTreeMap<String, BTreeMap<String, String>>;

/// LXD's zero time, what an unset `expires_at` or `last_used_at` reads as.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// For `skip_serializing_if`: a field LXD has and silo leaves out while it is false.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// For `skip_serializing_if`: a byte count LXD leaves out while it is 0.
pub(crate) fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// For `skip_serializing_if`: a number LXD has and silo leaves out while it is 0.
pub(crate) fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests;
