//! `/1.0/instances/<name>/backups` and backup import (`POST /1.0/instances` with a tarball).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::render;
use super::response::{async_op, sync, ApiResult, DomainError};
use super::ListQuery;
use crate::service::backups;
use crate::service::Services;

fn resources(name: &str, backup: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut r = BTreeMap::new();
    r.insert(
        "instances".to_string(),
        vec![format!("/1.0/instances/{name}")],
    );
    if let Some(b) = backup {
        // lxc export (5.0) reads the backup's bare name from here.
        r.insert("backups".to_string(), vec![b.to_string()]);
    }
    r
}

/// `GET /1.0/instances/{name}/backups`.
pub async fn list(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    crate::service::instances::get(&d.db, &name)?;
    let all = backups::list(&d.db, &name)?;
    if q.recursive() {
        Ok(sync(all.iter().map(render::backup).collect::<Vec<_>>()))
    } else {
        Ok(sync(
            all.iter()
                .map(|b| format!("/1.0/instances/{name}/backups/{}", b.name))
                .collect::<Vec<_>>(),
        ))
    }
}

#[derive(Debug, Deserialize)]
pub struct BackupPost {
    #[serde(default)]
    name: String,
    #[serde(default)]
    instance_only: bool,
    #[serde(default)]
    container_only: bool,
    #[serde(default)]
    optimized_storage: bool,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    compression_algorithm: String,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    expires_at: String,
}

/// `POST /1.0/instances/{name}/backups` (async).
pub async fn create(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let p: BackupPost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let c = Services::clone(&d);
    crate::service::instances::get(&d.db, &name)?;
    let bname = if p.name.is_empty() {
        let have = backups::list(&d.db, &name)?;
        (0..)
            .map(|n| format!("backup{n}"))
            .find(|n| !have.iter().any(|b| b.name == *n))
            .unwrap_or_else(|| "backup".into())
    } else {
        p.name.clone()
    };
    let expires = crate::service::events::parse_expiry_time(&p.expires_at)
        .map_err(DomainError::BadRequest)?;
    backups::check(
        &c,
        &name,
        &bname,
        &p.compression_algorithm,
        p.optimized_storage,
    )?;
    let state = d.state_dir.clone();
    let op = d.ops.start(
        "task",
        "Backing up instance",
        resources(&name, Some(&bname)),
        false,
        move |_ctx| async move {
            backups::create(
                &c,
                &state,
                &name,
                backups::NewBackup {
                    name: bname,
                    instance_only: p.instance_only || p.container_only,
                    optimized: p.optimized_storage,
                    expires_at: expires,
                    compression: p.compression_algorithm,
                },
            )
            .await
            .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/instances/{name}/backups/{backup}`.
pub async fn get_one(
    State(d): State<Arc<Services>>,
    Path((name, b)): Path<(String, String)>,
) -> ApiResult {
    Ok(sync(render::backup(&backups::get(&d.db, &name, &b)?)))
}

#[derive(Debug, Deserialize)]
pub struct BackupRename {
    name: String,
}

/// `POST /1.0/instances/{name}/backups/{backup}`: rename (async, as LXD).
pub async fn rename(
    State(d): State<Arc<Services>>,
    Path((name, b)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let p: BackupRename = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    backups::get(&d.db, &name, &b)?;
    let (db, state) = (d.db.clone(), d.state_dir.clone());
    let op = d.ops.start(
        "task",
        "Renaming instance backup",
        resources(&name, Some(&b)),
        false,
        move |_ctx| async move {
            backups::rename(&db, &state, &name, &b, &p.name).map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `DELETE /1.0/instances/{name}/backups/{backup}` (async, as LXD).
pub async fn delete(
    State(d): State<Arc<Services>>,
    Path((name, b)): Path<(String, String)>,
) -> ApiResult {
    backups::get(&d.db, &name, &b)?;
    let (db, state) = (d.db.clone(), d.state_dir.clone());
    let op = d.ops.start(
        "task",
        "Removing instance backup",
        resources(&name, Some(&b)),
        false,
        move |_ctx| async move { backups::delete(&db, &state, &name, &b).map(|()| Value::Null) },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/instances/{name}/backups/{backup}/export`.
pub async fn export(
    State(d): State<Arc<Services>>,
    Path((name, b)): Path<(String, String)>,
) -> Result<Response, DomainError> {
    let p = backups::file(&d.db, &d.state_dir, &name, &b)?;
    let (body, len) = super::images::file_body(p)?;
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(r)
}

/// `POST /1.0/instances` with an `application/octet-stream` body: import a backup
/// (`X-LXD-name`, `X-LXD-pool` optional).
pub async fn import(d: Arc<Services>, req: Request) -> ApiResult {
    // Read before the first await: a borrow of the request must not live across one.
    let (name, pool) = {
        let hdr = |k: &str| {
            req.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (hdr("x-lxd-name"), hdr("x-lxd-pool"))
    };
    let stream = req
        .into_body()
        .into_data_stream()
        .map(|r| r.map_err(|e| e.to_string()));
    let (path, _, _) = super::images::receive_stream(&d, Box::pin(stream)).await?;
    let c = Services::clone(&d);
    let mut res = BTreeMap::new();
    if let Some(n) = &name {
        res.insert("instances".to_string(), vec![format!("/1.0/instances/{n}")]);
    }
    let op = d.ops.start(
        "task",
        "Importing instance from backup",
        res,
        false,
        move |_ctx| async move {
            let r = backups::import(&c, &path, name, pool).await;
            let _ = std::fs::remove_file(&path);
            r.map(|i| json!({"name": i.name}))
        },
    );
    Ok(async_op(&op))
}
