//! Profiles: named config and devices that instances expand, in order, under their own.

use std::collections::BTreeMap;

use crate::model::devices::DeviceSpec;
use crate::service::DomainError;
use crate::store::db::Db;

pub use crate::model::profile::{Device, Profile};

/// Profile names: like LXD's (no '/', not "." or "..", no leading/trailing space), at most 64.
pub fn validate_name(n: &str) -> Result<(), DomainError> {
    if n.is_empty()
        || n.len() > 64
        || n == "."
        || n == ".."
        || n.contains('/')
        || n.trim() != n
        || n.chars().any(char::is_control)
    {
        return Err(DomainError::BadRequest(format!(
            "invalid profile name {n:?}"
        )));
    }
    Ok(())
}

/// All profiles.
pub fn list(db: &Db) -> Result<Vec<Profile>, DomainError> {
    Ok(crate::store::profiles::all(db)?)
}

/// One profile.
pub fn get(db: &Db, name: &str) -> Result<Profile, DomainError> {
    Ok(crate::store::profiles::get(db, name)?)
}

/// Checks a profile's config and devices (the same rules as an instance's local ones).
pub fn validate(db: &Db, p: &Profile) -> Result<(), DomainError> {
    validate_name(&p.name)?;
    crate::model::config::check_instance_config(&p.config, false)?;
    crate::service::profiles::validate_devices(db, &p.devices)?;
    Ok(())
}

/// Creates a profile.
pub fn create(db: &Db, p: &Profile) -> Result<(), DomainError> {
    validate(db, p)?;
    if list(db)?.iter().any(|x| x.name == p.name) {
        return Err(DomainError::Conflict(format!(
            "profile {:?} already exists",
            p.name
        )));
    }
    write(db, p)
}

pub fn write(db: &Db, p: &Profile) -> Result<(), DomainError> {
    Ok(crate::store::profiles::put(db, p)?)
}

/// Replaces a profile; every instance using it must still be valid afterwards.
pub fn update(db: &Db, p: &Profile) -> Result<(), DomainError> {
    validate(db, p)?;
    get(db, &p.name)?;
    for i in crate::store::instances::all(db)? {
        if i.profiles.contains(&p.name) {
            let mut profiles: Vec<Profile> = Vec::new();
            for n in &i.profiles {
                profiles.push(if n == &p.name { p.clone() } else { get(db, n)? });
            }
            let (_, devices) = crate::model::profile::expand(&profiles, &i.config, &i.devices);
            let root = crate::model::profile::root_pool(&devices).map_err(|e| {
                DomainError::BadRequest(format!(
                    "profile change would break instance {:?}: {e}",
                    i.name
                ))
            })?;
            if root != i.pool {
                return Err(DomainError::BadRequest(format!(
                    "profile change would move instance {:?}'s root disk from pool {:?} to {root:?}",
                    i.name, i.pool
                )));
            }
        }
    }
    write(db, p)
}

/// Instances using a profile.
pub fn used_by(db: &Db, name: &str) -> Result<Vec<String>, DomainError> {
    Ok(crate::store::instances::all(db)?
        .into_iter()
        .filter(|i| i.profiles.iter().any(|p| p == name))
        .map(|i| format!("/1.0/instances/{}", i.name))
        .collect())
}

/// Deletes an unused profile (never "default").
pub fn delete(db: &Db, name: &str) -> Result<(), DomainError> {
    if name == "default" {
        return Err(DomainError::Forbidden(
            "the default profile cannot be deleted".into(),
        ));
    }
    get(db, name)?;
    let users = used_by(db, name)?;
    if !users.is_empty() {
        return Err(DomainError::BadRequest(format!(
            "profile {name:?} is in use by {}",
            users.join(", ")
        )));
    }
    crate::store::profiles::delete(db, name)?;
    Ok(())
}

/// Renames a profile (never "default"); instances follow.
pub fn rename(db: &Db, from: &str, to: &str) -> Result<(), DomainError> {
    if from == "default" {
        return Err(DomainError::Forbidden(
            "the default profile cannot be renamed".into(),
        ));
    }
    validate_name(to)?;
    get(db, from)?;
    if list(db)?.iter().any(|p| p.name == to) {
        return Err(DomainError::Conflict(format!(
            "profile {to:?} already exists"
        )));
    }
    crate::store::profiles::rename(db, from, to)?;
    Ok(())
}

/// Makes the default profile empty, as a fresh LXD has it, if it is missing.
pub fn ensure_empty_default(db: &Db) -> Result<bool, DomainError> {
    if list(db)?.iter().any(|p| p.name == "default") {
        return Ok(false);
    }
    write(
        db,
        &Profile {
            name: "default".into(),
            description: "Default LXD profile".into(),
            config: BTreeMap::new(),
            devices: BTreeMap::new(),
        },
    )?;
    Ok(true)
}

/// Makes the default profile (root disk on `pool`) if it is missing.
pub fn ensure_default(db: &Db, pool: &str) -> Result<bool, DomainError> {
    if list(db)?.iter().any(|p| p.name == "default") {
        return Ok(false);
    }
    let mut devices = BTreeMap::new();
    let mut root = Device::new();
    root.insert("type".into(), "disk".into());
    root.insert("path".into(), "/".into());
    root.insert("pool".into(), pool.into());
    devices.insert("root".into(), root);
    write(
        db,
        &Profile {
            name: "default".into(),
            description: "Default silo profile".into(),
            config: BTreeMap::new(),
            devices,
        },
    )?;
    Ok(true)
}

/// Checks devices: each parsed by [`DeviceSpec::parse`] (types, keys, syntax), then what
/// needs the database: pools and networks must exist.
pub fn validate_devices(db: &Db, devices: &BTreeMap<String, Device>) -> Result<(), DomainError> {
    for (name, d) in devices {
        let bad = |why: String| DomainError::BadRequest(format!("invalid device {name:?}: {why}"));
        match DeviceSpec::parse(name, d)? {
            DeviceSpec::Disk(disk) => {
                if let Some(p) = &disk.pool {
                    crate::service::storage::get(db, p)
                        .map_err(|_| bad(format!("storage pool {p:?} not found")))?;
                }
            }
            DeviceSpec::Nic(nic) => {
                crate::service::networks::validate_nic(db, &nic).map_err(bad)?
            }
            DeviceSpec::Proxy(_) | DeviceSpec::None(_) | DeviceSpec::Host(_) => {}
        }
    }
    Ok(())
}
