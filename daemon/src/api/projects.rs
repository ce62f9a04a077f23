//! `/1.0/projects`: LXD's default project, the only one silo has.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use serde_json::Value;

use super::response::{sync, sync_etag, ApiResult, DomainError};
use super::ListQuery;
use crate::service::projects;
use crate::service::Services;

/// `GET /1.0/projects`.
pub async fn list(State(d): State<Arc<Services>>, Query(q): Query<ListQuery>) -> ApiResult {
    if q.recursive() {
        Ok(sync(vec![projects::get(&d, projects::DEFAULT)?]))
    } else {
        Ok(sync(vec![silo_api::paths::project(projects::DEFAULT)]))
    }
}

/// `POST /1.0/projects`.
pub async fn create() -> ApiResult {
    Err(projects::create())
}

/// `GET /1.0/projects/{name}`.
pub async fn get_one(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    Ok(sync_etag(projects::get(&d, &name)?))
}

fn body(b: &[u8]) -> Result<silo_api::ProjectPut, DomainError> {
    super::lenient::from_slice(b)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))
}

/// `PUT /1.0/projects/{name}`.
pub async fn put(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    b: axum::body::Bytes,
) -> ApiResult {
    projects::update(&d, &name, &body(&b)?, false)?;
    Ok(sync(Value::Null))
}

/// `PATCH /1.0/projects/{name}`.
pub async fn patch(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    b: axum::body::Bytes,
) -> ApiResult {
    projects::update(&d, &name, &body(&b)?, true)?;
    Ok(sync(Value::Null))
}

/// `POST /1.0/projects/{name}`: rename.
pub async fn rename(Path(name): Path<String>) -> ApiResult {
    Err(projects::refuse_rename_or_delete(&name, "renamed"))
}

/// `DELETE /1.0/projects/{name}`.
pub async fn delete(Path(name): Path<String>) -> ApiResult {
    Err(projects::refuse_rename_or_delete(&name, "deleted"))
}

/// `GET /1.0/projects/{name}/state`.
pub async fn state(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    Ok(sync(projects::state(&d, &name)?))
}

/// `?project=` names a project silo has: another is a 404 everywhere, rather than the default
/// project's objects answered under a name the caller thinks is separate.
pub async fn check_param(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wanted = req.uri().query().and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "project")
            .map(|(_, v)| v)
    });
    // LXD scrapes metrics per project without looking the project up: another project's
    // scrape is empty there, and is here.
    let scrape = req.uri().path() == "/1.0/metrics";
    match wanted {
        Some(p) if !p.is_empty() && !scrape => match projects::check(&p) {
            Ok(()) => next.run(req).await,
            Err(e) => e.into_response(),
        },
        _ => next.run(req).await,
    }
}
