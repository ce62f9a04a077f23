//! `/1.0/profiles`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::render;
use super::response::{sync, sync_etag, ApiResult, DomainError};
use super::ListQuery;
use crate::service::profiles::{self, Device, Profile};
use crate::service::Services;

/// `GET /1.0/profiles`.
pub async fn list(State(d): State<Arc<Services>>, Query(q): Query<ListQuery>) -> ApiResult {
    let all = profiles::list(&d.db)?;
    if q.recursive() {
        let mut out = Vec::new();
        for p in &all {
            out.push(render::profile(p, profiles::used_by(&d.db, &p.name)?));
        }
        Ok(sync(out))
    } else {
        Ok(sync(
            all.iter()
                .map(|p| format!("/1.0/profiles/{}", p.name))
                .collect::<Vec<_>>(),
        ))
    }
}

/// `POST /1.0/profiles`.
pub async fn create(State(d): State<Arc<Services>>, body: axum::body::Bytes) -> ApiResult {
    let p: Profile = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    crate::service::devices::check(&d, &p.devices).await?;
    profiles::create(&d.db, &p)?;
    d.events.lifecycle(
        "profile-created",
        &format!("/1.0/profiles/{}", p.name),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `GET /1.0/profiles/{name}`.
pub async fn get_one(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    let p = profiles::get(&d.db, &name)?;
    Ok(sync_etag(render::profile(
        &p,
        profiles::used_by(&d.db, &p.name)?,
    )))
}

#[derive(Debug, Deserialize)]
pub struct ProfilePut {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    devices: Option<std::collections::BTreeMap<String, Device>>,
}

async fn write(
    d: &Services,
    name: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    patch: bool,
) -> ApiResult {
    let mut p = profiles::get(&d.db, name)?;
    // The ETag GET gave: a write from a stale read is refused, as LXD refuses it.
    super::check_if_match(headers, &format!("profile {name:?}"), || {
        Ok(vec![super::etag(&render::profile(
            &p,
            profiles::used_by(&d.db, name)?,
        ))])
    })?;
    let w: ProfilePut = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if patch {
        if let Some(x) = w.description {
            p.description = x;
        }
        if let Some(x) = w.config {
            for (k, v) in x {
                if v.is_empty() {
                    p.config.remove(&k);
                } else {
                    p.config.insert(k, v);
                }
            }
        }
        if let Some(x) = w.devices {
            p.devices.extend(x);
        }
    } else {
        p.description = w.description.unwrap_or_default();
        p.config = w.config.unwrap_or_default();
        p.devices = w.devices.unwrap_or_default();
    }
    crate::service::devices::check(d, &p.devices).await?;
    let before = profiles::get(&d.db, name)?;
    profiles::update(&d.db, &p)?;
    crate::service::runtime::apply_profile_live(d, name, &before).await?;
    d.events.lifecycle(
        "profile-updated",
        &format!("/1.0/profiles/{name}"),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `PUT /1.0/profiles/{name}`.
pub async fn put(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &name, &headers, &body, false).await
}

/// `PATCH /1.0/profiles/{name}`.
pub async fn patch(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &name, &headers, &body, true).await
}

/// `POST /1.0/profiles/{name}`: rename.
pub async fn rename(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let v: HashMap<String, String> = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let to = v
        .get("name")
        .ok_or_else(|| DomainError::BadRequest("missing name".into()))?;
    profiles::rename(&d.db, &name, to)?;
    d.events.lifecycle(
        "profile-renamed",
        &format!("/1.0/profiles/{to}"),
        json!({"old_name": name}),
    );
    Ok(sync(Value::Null))
}

/// `DELETE /1.0/profiles/{name}`.
pub async fn delete(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    profiles::delete(&d.db, &name)?;
    d.events.lifecycle(
        "profile-deleted",
        &format!("/1.0/profiles/{name}"),
        json!({}),
    );
    Ok(sync(Value::Null))
}
