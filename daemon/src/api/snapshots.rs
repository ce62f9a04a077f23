//! `/1.0/instances/<name>/snapshots`, restore (`PUT /1.0/instances/<name> {"restore": ...}`)
//! and instance rename (`POST /1.0/instances/<name> {"name": ...}`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;

use super::render;
use super::response::{async_op, sync, ApiResult, DomainError};
use super::ListQuery;
use crate::service::instances;
use crate::service::snapshots;
use crate::service::Services;

fn resources(name: &str, snap: Option<&str>) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut r = std::collections::BTreeMap::new();
    r.insert(
        "instances".to_string(),
        vec![format!("/1.0/instances/{name}")],
    );
    if let Some(s) = snap {
        r.insert(
            "instances_snapshots".to_string(),
            vec![format!("/1.0/instances/{name}/snapshots/{s}")],
        );
    }
    r
}

/// `GET /1.0/instances/{name}/snapshots`.
pub async fn list(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    instances::get(&d.db, &name)?;
    let all = snapshots::list(&d.db, &name)?;
    if q.recursive() {
        let profiles = crate::service::expansion::Expander::load(&d.db)?;
        Ok(sync(
            all.iter()
                .map(|s| render::snapshot(s, profiles.expand(&s.profiles, &s.config, &s.devices)))
                .collect::<Vec<_>>(),
        ))
    } else {
        Ok(sync(
            all.iter()
                .map(|s| format!("/1.0/instances/{name}/snapshots/{}", s.name))
                .collect::<Vec<_>>(),
        ))
    }
}

#[derive(Debug, Deserialize)]
pub struct SnapshotPost {
    #[serde(default)]
    name: String,
    #[serde(default)]
    stateful: bool,
    #[serde(default)]
    expires_at: Option<String>,
}

/// `POST /1.0/instances/{name}/snapshots` (async).
pub async fn create(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let p: SnapshotPost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    instances::get(&d.db, &name)?;
    if p.stateful {
        return Err(DomainError::BadRequest(
            "stateful snapshots are not supported: silo does not checkpoint running processes (no CRIU)".into(),
        ));
    }
    let snap = if p.name.is_empty() {
        snapshots::next_name(&d.db, &name)?
    } else {
        p.name.clone()
    };
    snapshots::check_name(&snap)?;
    if snapshots::get(&d.db, &name, &snap).is_ok() {
        return Err(DomainError::Conflict(format!(
            "snapshot {snap:?} of instance {name:?} already exists"
        )));
    }
    let expires = match p.expires_at.as_deref() {
        Some(e) => crate::service::events::parse_expiry_time(e).map_err(DomainError::BadRequest)?,
        None => None,
    };
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Snapshotting instance",
        resources(&name, Some(&snap)),
        false,
        move |_ctx| async move {
            snapshots::create(&c, &name, &snap, expires)
                .await
                .map(|_| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/instances/{name}/snapshots/{snap}`.
pub async fn get_one(
    State(d): State<Arc<Services>>,
    Path((name, snap)): Path<(String, String)>,
) -> ApiResult {
    let s = snapshots::get(&d.db, &name, &snap)?;
    let profiles = crate::service::expansion::Expander::load(&d.db)?;
    let mut obj = render::snapshot(&s, profiles.expand(&s.profiles, &s.config, &s.devices));
    if let Some(n) = snapshots::usage(&d, &s).await {
        obj.size = i64::try_from(n).unwrap_or(i64::MAX);
    }
    let mut r = sync(obj);
    // As LXD: the ETag covers what PUT can change, the expiry.
    let etag = snapshot_etag(&s);
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(axum::http::header::ETAG, v);
    }
    Ok(r)
}

fn snapshot_etag(s: &snapshots::Snapshot) -> String {
    super::etag(&[&s.expires_at])
}

/// `PUT` and `PATCH /1.0/instances/{name}/snapshots/{snap}` (async): as LXD 5.0, only
/// `expires_at` is taken (a body without it changes nothing; the description is kept).
pub async fn put(
    State(d): State<Arc<Services>>,
    Path((name, snap)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let s = snapshots::get(&d.db, &name, &snap)?;
    super::check_if_match(&headers, &format!("snapshot {snap:?}"), || {
        Ok(vec![snapshot_etag(&s)])
    })?;
    let req: serde_json::Map<String, Value> = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let expires = match req.get("expires_at") {
        Some(Value::String(e)) => {
            Some(crate::service::events::parse_expiry_time(e).map_err(DomainError::BadRequest)?)
        }
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(DomainError::BadRequest(format!(
                "invalid expires_at {other}: expected an RFC 3339 time"
            )))
        }
    };
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Updating snapshot",
        resources(&name, Some(&snap)),
        false,
        move |_ctx| async move {
            if let Some(e) = expires {
                snapshots::set_expiry(&c, &name, &snap, e)?;
            }
            Ok(Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `POST /1.0/instances/{name}/snapshots/{snap}`: rename (async); with `migration: true`,
/// send the snapshot to another host as an instance of its own.
pub async fn rename(
    State(d): State<Arc<Services>>,
    Path((name, snap)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let p: silo_api::InstanceSnapshotPost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if p.migration {
        let req = crate::service::migration::source::SourceRequest {
            instance: name,
            snapshot: Some(snap),
            live: false,
            instance_only: true,
            target: p.target,
        };
        let op = crate::service::migration::source::start(&d, req).await?;
        return Ok(async_op(&op));
    }
    snapshots::get(&d.db, &name, &snap)?;
    snapshots::check_name(&p.name)?;
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Renaming snapshot",
        resources(&name, Some(&snap)),
        false,
        move |_ctx| async move {
            snapshots::rename(&c, &name, &snap, &p.name)
                .await
                .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `DELETE /1.0/instances/{name}/snapshots/{snap}` (async).
pub async fn delete(
    State(d): State<Arc<Services>>,
    Path((name, snap)): Path<(String, String)>,
) -> ApiResult {
    snapshots::get(&d.db, &name, &snap)?;
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Deleting snapshot",
        resources(&name, Some(&snap)),
        false,
        move |_ctx| async move {
            snapshots::delete(&c, &name, &snap)
                .await
                .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `PUT /1.0/instances/{name}` with `{"restore": "<snapshot>"}` (async).
pub async fn restore(d: &Arc<Services>, name: String, snap: String) -> ApiResult {
    snapshots::get(&d.db, &name, &snap)?;
    let c = Services::clone(d);
    let op = d.ops.start(
        "task",
        "Restoring snapshot",
        resources(&name, Some(&snap)),
        false,
        move |_ctx| async move {
            snapshots::restore(&c, &name, &snap)
                .await
                .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}
