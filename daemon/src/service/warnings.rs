//! Warnings: raised by silo when it finds a feature degraded on this host (at each start),
//! listed, acknowledged and deleted through `/1.0/warnings` as LXD's.

use serde_json::json;

use crate::model::warning::{WarningRecord, WarningStatus, WarningType};
use crate::service::events::now_rfc3339;
use crate::service::{DomainError, Services};

/// Every warning, or those of `project` (the server's own warnings have no project and show
/// under every project filter, as LXD's host warnings do under `default`).
pub fn list(c: &Services, project: Option<&str>) -> Result<Vec<WarningRecord>, DomainError> {
    let all = crate::store::warnings::all(&c.db)?;
    Ok(match project {
        Some(p) => all
            .into_iter()
            .filter(|w| w.project.is_empty() || w.project == p)
            .collect(),
        None => all,
    })
}

/// One warning.
pub fn get(c: &Services, uuid: &str) -> Result<WarningRecord, DomainError> {
    Ok(crate::store::warnings::get(&c.db, uuid)?)
}

/// How many warnings are not resolved (`lxd_warnings_total`).
pub fn active_count(c: &Services) -> Result<usize, DomainError> {
    Ok(crate::store::warnings::all(&c.db)?
        .iter()
        .filter(|w| w.status != WarningStatus::Resolved)
        .count())
}

/// Sets a warning's status from a request: only "acknowledged" or "new", as LXD.
pub fn set_status(c: &Services, uuid: &str, status: &str) -> Result<(), DomainError> {
    let st = WarningStatus::parse(status)
        .ok_or_else(|| DomainError::BadRequest(format!("Invalid warning type {status:?}")))?;
    if st == WarningStatus::Resolved {
        return Err(DomainError::Forbidden(
            "Status may only be set to \"acknowledge\" or \"new\"".into(),
        ));
    }
    crate::store::warnings::set_status(&c.db, uuid, st, &now_rfc3339())?;
    let action = if st == WarningStatus::Acknowledged {
        "warning-acknowledged"
    } else {
        "warning-reset"
    };
    c.events
        .lifecycle(action, &silo_api::paths::warning(uuid), json!({}));
    Ok(())
}

/// Deletes a warning.
pub fn delete(c: &Services, uuid: &str) -> Result<(), DomainError> {
    crate::store::warnings::delete(&c.db, uuid)?;
    c.events.lifecycle(
        "warning-deleted",
        &silo_api::paths::warning(uuid),
        json!({}),
    );
    Ok(())
}

/// Records what this start found degraded (`found`, from [`crate::service::HostFacts`]):
/// each seen once more (raised the first time, counted after), and the host warnings not
/// found this time resolved, as LXD does at its start. Resolved warnings a day old go.
pub fn record_host_conditions(
    c: &Services,
    found: &[(WarningType, String)],
) -> Result<(), DomainError> {
    let now = now_rfc3339();
    for (kind, message) in found {
        let fresh = uuid::Uuid::new_v4().to_string();
        let uuid = crate::store::warnings::upsert(&c.db, "", "", *kind, message, &now, &fresh)?;
        tracing::warn!(%uuid, "{message}");
    }
    for kind in WarningType::ALL {
        if !found.iter().any(|(k, _)| k == kind) {
            let n = crate::store::warnings::resolve_type(&c.db, *kind, &now)?;
            if n > 0 {
                tracing::info!(kind = kind.name(), "resolved: the host has it now");
            }
        }
    }
    let day_ago = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    if let Ok(cut) = day_ago.format(&time::format_description::well_known::Rfc3339) {
        crate::store::warnings::prune_resolved(&c.db, &cut)?;
    }
    Ok(())
}
