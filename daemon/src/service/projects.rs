//! Projects. silo has LXD's `default` project only: it is served as LXD 5.0 serves a fresh
//! daemon's (its features on, no limits), so tools that read or select it work; making other
//! projects is refused with the reason rather than pretended.

use std::collections::BTreeMap;

use silo_api::{Project, ProjectPut, ProjectState, ProjectStateResource};

use crate::service::expansion::Expander;
use crate::service::{DomainError, Services};

/// The one project's name.
pub const DEFAULT: &str = "default";

/// The default project's description until one is set, as LXD has it.
const DEFAULT_DESCRIPTION: &str = "Default LXD project";

/// Why there is no other project.
const ONLY_DEFAULT: &str = "silo has the default project only: projects other than \"default\" \
                            cannot be created";

/// The default project's configuration: every feature on, as in a fresh LXD 5.0.
fn config() -> BTreeMap<String, String> {
    [
        "features.images",
        "features.networks",
        "features.profiles",
        "features.storage.volumes",
    ]
    .into_iter()
    .map(|k| (k.to_string(), "true".to_string()))
    .collect()
}

/// `name` is a project silo has, or the 404 LXD answers for an unknown one.
pub fn check(name: &str) -> Result<(), DomainError> {
    if name == DEFAULT {
        Ok(())
    } else {
        Err(DomainError::NotFound(format!(
            "Project not found: {name:?} (silo has the default project only)"
        )))
    }
}

/// Everything in the project, as LXD lists it in `used_by`.
fn used_by(c: &Services) -> Result<Vec<String>, DomainError> {
    let mut out = Vec::new();
    for i in crate::service::instances::list_records(&c.db)? {
        out.push(format!("/1.0/instances/{}", i.name));
    }
    for i in crate::service::images::list(&c.db)? {
        out.push(format!("/1.0/images/{}", i.fingerprint));
    }
    for p in crate::service::profiles::list(&c.db)? {
        out.push(format!("/1.0/profiles/{}", p.name));
    }
    for n in crate::service::networks::list(&c.db)? {
        out.push(format!("/1.0/networks/{}", n.name));
    }
    for pool in crate::service::storage::list(&c.db)? {
        for (v, _, _) in crate::store::pools::custom_volumes(&c.db, &pool.name)? {
            out.push(format!(
                "/1.0/storage-pools/{}/volumes/custom/{v}",
                pool.name
            ));
        }
    }
    Ok(out)
}

/// `GET /1.0/projects/<name>`.
pub fn get(c: &Services, name: &str) -> Result<Project, DomainError> {
    check(name)?;
    let description = crate::store::projects::description(&c.db, DEFAULT)?
        .unwrap_or_else(|| DEFAULT_DESCRIPTION.to_string());
    Ok(Project {
        name: DEFAULT.into(),
        description,
        config: config(),
        used_by: used_by(c)?,
    })
}

/// `POST /1.0/projects`: refused, naming why.
pub fn create() -> DomainError {
    DomainError::NotImplemented(ONLY_DEFAULT.into())
}

/// `PUT`/`PATCH`: the description is stored as given (PATCH keeps it when the body has none);
/// the config keeps every feature on and no limits, since silo cannot enforce project limits,
/// so asking for what it already is succeeds (a provisioning tool applying its desired state
/// twice) and any other config is refused naming the key.
pub fn update(c: &Services, name: &str, put: &ProjectPut, patch: bool) -> Result<(), DomainError> {
    check_config(name, put, patch)?;
    if !(patch && put.description.is_empty()) {
        crate::store::projects::set_description(&c.db, name, &put.description)?;
    }
    Ok(())
}

fn check_config(name: &str, put: &ProjectPut, patch: bool) -> Result<(), DomainError> {
    check(name)?;
    let have = config();
    for (k, v) in &put.config {
        if have.get(k) != Some(v) {
            return Err(DomainError::BadRequest(format!(
                "project config {k:?}={v:?} is not supported: silo's default project keeps \
                 every feature on and has no project limits"
            )));
        }
    }
    if !patch {
        if let Some(k) = have.keys().find(|k| !put.config.contains_key(*k)) {
            return Err(DomainError::BadRequest(format!(
                "project config {k:?} cannot be turned off: silo's default project keeps \
                 every feature on"
            )));
        }
    }
    Ok(())
}

/// `POST /1.0/projects/<name>` (rename) and `DELETE`: LXD refuses both for `default`.
pub fn refuse_rename_or_delete(name: &str, what: &str) -> DomainError {
    match check(name) {
        Ok(()) => DomainError::Forbidden(format!("The 'default' project cannot be {what}")),
        Err(e) => e,
    }
}

fn count_cpus(v: &str) -> i64 {
    if let Ok(n) = v.trim().parse::<i64>() {
        return n;
    }
    // A pinned set ("0-1,3") counts its CPUs.
    v.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => i64::from(part.trim().parse::<i64>().is_ok()),
        })
        .sum()
}

fn bytes(v: &str) -> i64 {
    silo_api::units::parse_bytes(v)
        .ok()
        .and_then(|n| i64::try_from(n).ok())
        .unwrap_or(0)
}

/// `GET /1.0/projects/<name>/state`: usage as LXD sums it (each instance's expanded limits,
/// unset ones counting nothing; disk from root disks' and custom volumes' `size`), no limits.
pub fn state(c: &Services, name: &str) -> Result<ProjectState, DomainError> {
    check(name)?;
    let records = crate::service::instances::list_records(&c.db)?;
    let expander = Expander::load(&c.db)?;
    let (mut cpu, mut memory, mut processes, mut disk) = (0i64, 0i64, 0i64, 0i64);
    let (mut containers, mut vms) = (0i64, 0i64);
    for i in &records {
        if i.kind == "virtual-machine" {
            vms += 1;
        } else {
            containers += 1;
        }
        let (config, devices) = expander.expand(&i.profiles, &i.config, &i.devices);
        if let Some(v) = config.get("limits.cpu") {
            cpu += count_cpus(v);
        }
        if let Some(v) = config.get("limits.memory").filter(|v| !v.ends_with('%')) {
            memory += bytes(v);
        }
        if let Some(v) = config.get("limits.processes") {
            processes += v.trim().parse::<i64>().unwrap_or(0);
        }
        let root = devices.values().find(|d| {
            d.get("type").map(String::as_str) == Some("disk")
                && d.get("path").map(String::as_str) == Some("/")
        });
        if let Some(size) = root.and_then(|d| d.get("size")) {
            disk += bytes(size);
        }
    }
    for pool in crate::service::storage::list(&c.db)? {
        for (_, _, config) in crate::store::pools::custom_volumes(&c.db, &pool.name)? {
            if let Some(size) = config.get("size") {
                disk += bytes(size);
            }
        }
    }
    let networks = i64::try_from(crate::service::networks::list(&c.db)?.len()).unwrap_or(0);
    let r = |usage| ProjectStateResource { limit: -1, usage };
    let resources = [
        ("containers", containers),
        ("cpu", cpu),
        ("disk", disk),
        ("instances", containers + vms),
        ("memory", memory),
        ("networks", networks),
        ("processes", processes),
        ("virtual-machines", vms),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), r(v)))
    .collect();
    Ok(ProjectState { resources })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_count_as_lxd_sums_them() {
        assert_eq!(count_cpus("2"), 2);
        assert_eq!(count_cpus("0-1,3"), 3);
        assert_eq!(count_cpus("junk"), 0);
    }

    #[test]
    fn only_the_default_project_exists_and_stays_as_it_is() {
        assert!(check("default").is_ok());
        assert!(matches!(check("other"), Err(DomainError::NotFound(_))));
        let same = ProjectPut {
            config: config(),
            description: "Default LXD project".into(),
        };
        assert!(check_config("default", &same, false).is_ok());
        let mut off = same.clone();
        off.config.remove("features.images");
        assert!(check_config("default", &off, false).is_err());
        assert!(check_config("default", &off, true).is_ok());
        let mut limited = same;
        limited.config.insert("limits.instances".into(), "3".into());
        assert!(check_config("default", &limited, true).is_err());
    }
}
