//! Devices silo-priv gives instances: `disk` devices other than the root disk (what it mounts)
//! and host devices (`unix-char`, `unix-block`, `usb`, `gpu`), with the checks made when one
//! is added or edited (the same policy silo-priv applies again at every start and hot-plug,
//! so that a refused host path or node is refused when it is stored, not later).

use std::collections::BTreeMap;

use silo_proto::privileged::{DiskMount, DiskSource, HostDevice};

use crate::model::devices::{DeviceSpec, DiskDevice};
use crate::service::profiles::Device;
use crate::service::{DomainError, Services};

fn bad(name: &str, why: impl std::fmt::Display) -> DomainError {
    DomainError::BadRequest(format!("invalid device {name:?}: {why}"))
}

/// The disks of a device set with what silo-priv mounts for each, parents before what lies
/// beneath them.
pub fn mounts(devices: &BTreeMap<String, Device>) -> Result<Vec<DiskMount>, DomainError> {
    let mut out = Vec::new();
    for (name, d) in devices {
        if let DeviceSpec::Disk(disk) = DeviceSpec::parse(name, d)? {
            if let Some(m) = disk.mount(name).map_err(|e| bad(name, e))? {
                out.push(m);
            }
        }
    }
    out.sort_by_key(|m| {
        (
            m.path.as_str().split('/').count(),
            m.path.as_str().to_string(),
        )
    });
    Ok(out)
}

/// The I/O limits of a device set's disks (the root disk's too).
pub fn disk_io(
    devices: &BTreeMap<String, Device>,
) -> Result<Vec<silo_proto::privileged::DiskIo>, DomainError> {
    let mut out = Vec::new();
    for (name, disk) in disk_devices(devices)? {
        if let Some(io) = disk.disk_io(&name).map_err(|e| bad(&name, e))? {
            out.push(io);
        }
    }
    Ok(out)
}

/// The host devices of a device set, as silo-priv is asked for them.
pub fn host_devices(devices: &BTreeMap<String, Device>) -> Result<Vec<HostDevice>, DomainError> {
    let mut out = Vec::new();
    for (name, d) in devices {
        if let DeviceSpec::Host(h) = DeviceSpec::parse(name, d)? {
            out.push(h.request(name).map_err(|e| bad(name, e))?);
        }
    }
    Ok(out)
}

fn disk_devices(
    devices: &BTreeMap<String, Device>,
) -> Result<Vec<(String, DiskDevice)>, DomainError> {
    let mut out = Vec::new();
    for (name, d) in devices {
        if let DeviceSpec::Disk(disk) = DeviceSpec::parse(name, d)? {
            out.push((name.clone(), disk));
        }
    }
    Ok(out)
}

fn name_device(name: &str, e: crate::helpers::HelperFailure) -> DomainError {
    match DomainError::from(e) {
        DomainError::Forbidden(why) => DomainError::Forbidden(format!("device {name:?}: {why}")),
        e => e,
    }
}

/// Checks devices as they are stored: a custom volume must exist in its pool, a host path or
/// host device node must be one the root policy allows (silo-priv answers), and two disks may
/// not share a path.
pub async fn check(c: &Services, devices: &BTreeMap<String, Device>) -> Result<(), DomainError> {
    for h in host_devices(devices)? {
        let name = h.device.as_str().to_string();
        c.helpers
            .privileged
            .check_host_device(h)
            .await
            .map_err(|e| name_device(&name, e))?;
    }
    let disks = disk_devices(devices)?;
    let mut paths: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, disk) in &disks {
        if let Some(other) = paths.insert(disk.path.as_str(), name.as_str()) {
            return Err(bad(
                name,
                format!("path {:?} is also the path of device {other:?}", disk.path),
            ));
        }
        let Some(m) = disk.mount(name).map_err(|e| bad(name, e))? else {
            continue;
        };
        match &m.source {
            DiskSource::Volume { pool, volume } => {
                let named = format!("{}/{}", pool.as_str(), volume.as_str());
                for (key, _) in crate::service::storage::STATE_VOLUME_KEYS {
                    if crate::store::config::get(&c.db, key)?.as_deref() == Some(named.as_str()) {
                        return Err(bad(
                            name,
                            format!("custom volume {named:?} holds silod's data ({key}); it cannot be attached to instances"),
                        ));
                    }
                }
                let vols = crate::service::storage::custom_volumes(&c.db, pool.as_str())?;
                if !vols.iter().any(|v| v.0 == volume.as_str()) && disk.required {
                    return Err(DomainError::NotFound(format!(
                        "device {name:?}: storage volume {:?} not found in pool {:?}",
                        volume.as_str(),
                        pool.as_str()
                    )));
                }
            }
            DiskSource::Host(_) => {
                c.helpers
                    .privileged
                    .check_disk_source(m.source.clone())
                    .await
                    .map_err(|e| name_device(name, e))?;
            }
        }
    }
    Ok(())
}
