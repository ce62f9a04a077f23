//! `/1.0/warnings[/<uuid>]`: LXD's warnings API.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;

use super::response::{sync, ApiResult, DomainError};
use crate::model::filter::Filter;
use crate::model::warning::WarningRecord;
use crate::service::{warnings, Services};

/// `?recursion=`, `?filter=`, `?project=`.
#[derive(Debug, Deserialize, Default)]
pub struct WarningsQuery {
    #[serde(default)]
    recursion: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    project: Option<String>,
}

/// The API object of a record.
pub fn to_api(w: &WarningRecord) -> silo_api::Warning {
    silo_api::Warning {
        status: w.status.name().into(),
        uuid: w.uuid.clone(),
        location: "none".into(),
        project: w.project.clone(),
        kind: w.kind.name().into(),
        count: w.count,
        first_seen_at: w.first_seen_at.clone(),
        last_seen_at: w.last_seen_at.clone(),
        last_message: w.last_message.clone(),
        severity: w.kind.severity().into(),
        entity_url: w.entity_url.clone(),
    }
}

/// `GET /1.0/warnings`.
pub async fn list(State(d): State<Arc<Services>>, Query(q): Query<WarningsQuery>) -> ApiResult {
    let filter = Filter::parse(q.filter.as_deref().unwrap_or(""))?;
    let project = q.project.as_deref().filter(|p| !p.is_empty());
    let all: Vec<silo_api::Warning> = warnings::list(&d, project)?
        .iter()
        .map(to_api)
        .filter(|w| filter.accepts(w))
        .collect();
    let recursive = q
        .recursion
        .as_deref()
        .and_then(|r| r.parse::<u8>().ok())
        .unwrap_or(0)
        >= 1;
    if recursive {
        Ok(sync(all))
    } else {
        Ok(sync(
            all.iter()
                .map(|w| silo_api::paths::warning(&w.uuid))
                .collect::<Vec<_>>(),
        ))
    }
}

/// `GET /1.0/warnings/<uuid>`.
pub async fn get_one(State(d): State<Arc<Services>>, Path(uuid): Path<String>) -> ApiResult {
    Ok(sync(to_api(&warnings::get(&d, &uuid)?)))
}

/// `PUT` and `PATCH /1.0/warnings/<uuid>` (LXD treats both alike).
pub async fn put(
    State(d): State<Arc<Services>>,
    Path(uuid): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let req: silo_api::WarningPut = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    warnings::set_status(&d, &uuid, &req.status)?;
    Ok(sync(Value::Null))
}

/// `DELETE /1.0/warnings/<uuid>`.
pub async fn delete(State(d): State<Arc<Services>>, Path(uuid): Path<String>) -> ApiResult {
    warnings::delete(&d, &uuid)?;
    Ok(sync(Value::Null))
}
