//! `/1.0/instances` (and the old `/1.0/containers` paths).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{json, Value};

use super::response::{async_op, sync, ApiError, ApiResult};
use super::ListQuery;
use crate::instances::{self, CreateRequest, Writable};
use crate::state::Daemon;

fn resources(name: &str) -> BTreeMap<String, Vec<String>> {
    let mut r = BTreeMap::new();
    r.insert(
        "instances".to_string(),
        vec![format!("/1.0/instances/{name}")],
    );
    r
}

/// `GET /1.0/instances`: recursion 0 (URLs), 1 (objects), 2 (with state, snapshots, backups).
pub async fn list(State(d): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> ApiResult {
    let filter = crate::filter::Filter::parse(q.filter.as_deref().unwrap_or(""))?;
    let level = q.level();
    let mut out = Vec::new();
    for i in instances::list_records(&d.db)? {
        let obj = instances::to_api(&d.db, &i, level >= 2)?;
        if filter.matches(&obj) {
            out.push(obj);
        }
    }
    if level == 0 {
        Ok(sync(
            out.iter()
                .map(|o| format!("/1.0/instances/{}", o["name"].as_str().unwrap_or("")))
                .collect::<Vec<_>>(),
        ))
    } else {
        Ok(sync(out))
    }
}

/// `POST /1.0/instances`.
pub async fn create(State(d): State<Arc<Daemon>>, body: axum::body::Bytes) -> ApiResult {
    let req: CreateRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
    let c = d.instance_ctx();
    let (req, image) = instances::prepare(&c, req)?;
    let name = req.name.clone();
    let op = d.ops.start(
        "task",
        "Creating instance",
        resources(&name),
        false,
        move |_ctx| async move {
            instances::create(&c, req, image)
                .await
                .map(|_| Value::Null)
                .map_err(|e| e.to_string())
        },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/instances/{name}` (recursion=1: the full object, instance_get_full).
pub async fn get_one(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let i = instances::get(&d.db, &name)?;
    let full = q.level() >= 1;
    let obj = instances::to_api(&d.db, &i, full)?;
    let etag = super::etag(&writable_view(&obj));
    let mut r = sync(obj);
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(axum::http::header::ETAG, v);
    }
    Ok(r)
}

fn writable_view(obj: &Value) -> Value {
    json!({
        "config": obj["config"],
        "devices": obj["devices"],
        "profiles": obj["profiles"],
        "description": obj["description"],
        "ephemeral": obj["ephemeral"],
    })
}

fn check_etag(d: &Daemon, name: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(want) = headers
        .get(axum::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let i = instances::get(&d.db, name)?;
        let have = super::etag(&writable_view(&instances::to_api(&d.db, &i, false)?));
        if want.trim_matches('"') != have {
            return Err(ApiError::PreconditionFailed(format!(
                "instance {name:?} changed meanwhile (ETag mismatch)"
            )));
        }
    }
    Ok(())
}

/// `PUT /1.0/instances/{name}`: replace the writable fields (async, as LXD).
pub async fn put(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    check_etag(&d, &name, &headers)?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
    if v.get("restore")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::BadRequest(
            "restoring snapshots is not supported yet".into(),
        ));
    }
    let w: Writable = serde_json::from_value(v)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
    // Validate now so a bad request is a 400, not a failed operation.
    let i = instances::apply_dry(&d.db, &name, w.clone(), false)?;
    let dd = d.clone();
    let op = d.ops.start(
        "task",
        "Updating instance",
        resources(&i.name),
        false,
        move |_ctx| async move {
            instances::apply(&dd.db, &name, w, false).map_err(|e| e.to_string())?;
            dd.events.lifecycle(
                "instance-updated",
                &format!("/1.0/instances/{name}"),
                json!({}),
            );
            Ok(Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `PATCH /1.0/instances/{name}`: merge (sync).
pub async fn patch(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    check_etag(&d, &name, &headers)?;
    let w: Writable = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
    instances::apply(&d.db, &name, w, true)?;
    d.events.lifecycle(
        "instance-updated",
        &format!("/1.0/instances/{name}"),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `DELETE /1.0/instances/{name}` (async).
pub async fn delete(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult {
    instances::get(&d.db, &name)?;
    let c = d.instance_ctx();
    let op = d.ops.start(
        "task",
        "Deleting instance",
        resources(&name),
        false,
        move |_ctx| async move {
            instances::delete(&c, &name)
                .await
                .map(|()| Value::Null)
                .map_err(|e| e.to_string())
        },
    );
    Ok(async_op(&op))
}

/// `POST /1.0/instances/{name}`: rename and migration arrive with copy/move.
pub async fn post(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult {
    instances::get(&d.db, &name)?;
    Err(ApiError::BadRequest(
        "renaming and migrating instances are not supported yet".into(),
    ))
}

/// `GET /1.0/instances/{name}/state`.
pub async fn state(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult {
    instances::get(&d.db, &name)?;
    Ok(sync(instances::stopped_state()))
}

/// `PUT /1.0/instances/{name}/state`: starting and stopping arrive with the runtime.
pub async fn put_state(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult {
    instances::get(&d.db, &name)?;
    Err(ApiError::BadRequest(format!(
        "cannot change the state of {name:?}: running instances is not supported by this silo yet"
    )))
}
