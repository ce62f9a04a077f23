//! `/1.0/cluster` and `/internal/cluster/*`: LXD 5.0's clustering API.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::response::{async_op, sync, ApiResult, DomainError};
use super::ListQuery;
use crate::service::cluster;
use crate::service::Services;

fn body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, DomainError> {
    super::lenient::from_slice(b)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))
}

/// `GET /1.0/cluster`.
pub async fn get(State(d): State<Arc<Services>>) -> ApiResult {
    Ok(sync(silo_api::Cluster {
        server_name: d.cluster.member_name().unwrap_or_default(),
        enabled: d.cluster.joined().is_some(),
        member_config: cluster::definitions::member_config(&d).await?,
    }))
}

/// `PUT /1.0/cluster`: bootstrap (`enabled` and a name), join (with a token), as an
/// operation as LXD's.
pub async fn put(State(d): State<Arc<Services>>, b: axum::body::Bytes) -> ApiResult {
    let req: silo_api::ClusterPut = body(&b)?;
    if !req.enabled {
        return Err(DomainError::BadRequest(
            "Disabling clustering is done by removing the member (silo cluster remove)".into(),
        ));
    }
    let joining = !req.cluster_token.is_empty() || !req.cluster_password.is_empty();
    if !joining && req.server_name.is_empty() {
        return Err(DomainError::BadRequest(
            "server_name is required to enable clustering".into(),
        ));
    }
    let c = Services::clone(&d);
    let description = if joining {
        "Joining cluster"
    } else {
        "Creating bootstrap node"
    };
    let op = d.ops.start(
        "task",
        description,
        BTreeMap::new(),
        false,
        move |_ctx| async move {
            if joining {
                cluster::join(&c, req).await?;
            } else {
                cluster::enable(&c, &req.server_name).await?;
            }
            Ok(serde_json::Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/cluster/members`.
pub async fn members(State(d): State<Arc<Services>>, Query(q): Query<ListQuery>) -> ApiResult {
    let all = cluster::members(&d).await?;
    if q.recursive() {
        Ok(sync(all))
    } else {
        Ok(sync(
            all.iter()
                .map(|m| format!("/1.0/cluster/members/{}", m.server_name))
                .collect::<Vec<_>>(),
        ))
    }
}

/// `POST /1.0/cluster/members`: a join token operation.
pub async fn add(State(d): State<Arc<Services>>, b: axum::body::Bytes) -> ApiResult {
    let req: silo_api::ClusterMembersPost = body(&b)?;
    let op = cluster::issue_token(&d, &req.server_name).await?;
    Ok(async_op(&op))
}

/// `GET /1.0/cluster/members/<name>`.
pub async fn member(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    cluster::members(&d)
        .await?
        .into_iter()
        .find(|m| m.server_name == name)
        .map(sync)
        .ok_or_else(|| DomainError::NotFound(format!("No cluster member named {name:?}")))
}

/// `PUT /1.0/cluster/members/<name>`: its config, description and failure domain.
pub async fn member_put(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    b: axum::body::Bytes,
) -> ApiResult {
    let req: silo_api::ClusterMemberPut = body(&b)?;
    cluster::members::update(&d, &name, req).await?;
    Ok(sync(serde_json::Value::Null))
}

/// `PATCH /1.0/cluster/members/<name>`: the fields given over the current ones (config keys
/// merged, as LXD's decoder merges a map).
pub async fn member_patch(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    b: axum::body::Bytes,
) -> ApiResult {
    let patch: serde_json::Value = body(&b)?;
    cluster::members::patch(&d, &name, &patch).await?;
    Ok(sync(serde_json::Value::Null))
}

/// `POST /1.0/cluster/members/<name>` `{server_name}`: a rename, done by the member itself
/// (forwarded to it).
pub async fn member_rename(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    b: axum::body::Bytes,
) -> ApiResult {
    let req: silo_api::ClusterMemberPost = body(&b)?;
    cluster::check_is_me(&d, &name)?;
    cluster::members::rename(&d, &req.server_name).await?;
    Ok(sync(serde_json::Value::Null))
}

/// `?force=1`.
#[derive(Debug, Deserialize, Default)]
pub struct ForceQuery {
    #[serde(default)]
    force: Option<String>,
}

/// `DELETE /1.0/cluster/members/<name>`.
pub async fn remove(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult {
    let force = matches!(q.force.as_deref(), Some("1" | "true"));
    cluster::remove(&d, &name, force).await?;
    Ok(sync(serde_json::Value::Null))
}

/// `POST /1.0/cluster/members/<name>/state` (forwarded to the member when it is another):
/// evacuate or restore, as an operation.
pub async fn member_state(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    b: axum::body::Bytes,
) -> ApiResult {
    let req: silo_api::ClusterMemberStatePost = body(&b)?;
    cluster::check_is_me(&d, &name)?;
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        if req.action == "restore" {
            "Restoring cluster member"
        } else {
            "Evacuating cluster member"
        },
        BTreeMap::new(),
        false,
        move |_ctx| async move {
            crate::service::member_moves::set_state(&c, &req.action, &req.mode).await?;
            Ok(serde_json::Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `POST /internal/cluster/accept`: a joiner with a token.
pub async fn accept(State(d): State<Arc<Services>>, b: axum::body::Bytes) -> ApiResult {
    let req: cluster::AcceptRequest = body(&b)?;
    Ok(sync(cluster::accept(&d, req).await?))
}

/// `POST /internal/cluster/database`: take a database role another member left.
pub async fn database(State(d): State<Arc<Services>>) -> ApiResult {
    cluster::become_database_soon(&d);
    Ok(sync(serde_json::Value::Null))
}

/// `POST /internal/cluster/leave`: another member removed this one.
pub async fn leave(State(d): State<Arc<Services>>) -> ApiResult {
    cluster::leave(&d).await?;
    Ok(sync(serde_json::Value::Null))
}

/// `GET /internal/cluster/images/{fp}/{meta|rootfs}`: an image's file, for a member that
/// needs the image and has not got it yet.
pub async fn image_file(
    State(d): State<Arc<Services>>,
    axum::extract::Path((fp, part)): axum::extract::Path<(String, String)>,
) -> Result<axum::response::Response, DomainError> {
    let path = cluster::records::image_file(&d, &fp, &part)?;
    let (body, len) = crate::api::images::file_body(path)?;
    let mut r = axum::response::IntoResponse::into_response((axum::http::StatusCode::OK, body));
    r.headers_mut().insert(
        axum::http::header::CONTENT_LENGTH,
        axum::http::HeaderValue::from(len),
    );
    Ok(r)
}
