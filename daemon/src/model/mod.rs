//! Pure rules of silo's domain: typed records, config keys, devices, filters, schedules. Nothing
//! here does I/O or depends on another layer, so all of it is unit-tested as a normal user.

pub mod config;
pub mod devices;
pub mod devlxd;
pub mod filter;
pub mod limits;
pub mod parse;
pub mod password;
pub mod schedule;
pub mod trust;
pub mod warning;

// The records silo keeps, as plain data (store/ reads and writes them).
pub mod backup;
pub mod image;
pub mod instance;
pub mod network;
pub mod pool;
pub mod profile;

/// Deserializes `null` as the type's default: the stock client sends `"config": null` for
/// empty maps.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An ETag for a JSON-serializable value: sha256 of its canonical JSON.
pub fn etag<T: serde::Serialize>(v: &T) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(bytes))
}
