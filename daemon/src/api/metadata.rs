//! `/1.0/instances/{name}/metadata` and `/metadata/templates?path=`: the instance's
//! metadata.yaml and template files (`lxc config metadata`, `lxc config template`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::response::{sync, sync_etag, ApiResult, DomainError};
use crate::service::{metadata, Services};

#[derive(Debug, serde::Deserialize)]
pub struct TemplateQuery {
    path: Option<String>,
}

fn check_etag(current: &silo_api::ImageMetadata, headers: &HeaderMap) -> Result<(), DomainError> {
    super::check_if_match(headers, "the metadata", || Ok(vec![super::etag(current)]))
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DomainError> {
    super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))
}

/// `GET`: metadata.yaml as JSON, with its ETag.
pub async fn get(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    Ok(sync_etag(metadata::get(&d, &name).await?))
}

/// `PUT`: replaces metadata.yaml.
pub async fn put(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let md: silo_api::ImageMetadata = decode(&body)?;
    if super::if_match(&headers).is_some() {
        check_etag(&metadata::get(&d, &name).await?, &headers)?;
    }
    metadata::put(&d, &name, &md).await?;
    Ok(sync(Value::Null))
}

/// `PATCH`: the body decoded over the current metadata, as LXD's Go decoder does: fields
/// given replace, `properties` and `templates` entries are added to or replace the current.
pub async fn patch(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let current = metadata::get(&d, &name).await?;
    check_etag(&current, &headers)?;
    let patch: serde_json::Map<String, Value> = decode(&body)?;
    let mut merged = serde_json::to_value(&current)
        .map_err(|e| DomainError::Internal(format!("metadata: {e}")))?;
    for (k, v) in patch {
        let key = k.to_ascii_lowercase();
        match (merged.get_mut(&key), v) {
            (Some(Value::Object(have)), Value::Object(add))
                if key == "properties" || key == "templates" =>
            {
                have.extend(add);
            }
            (_, v) => {
                merged[key] = v;
            }
        }
    }
    let md: silo_api::ImageMetadata = super::lenient::from_value(merged)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    metadata::put(&d, &name, &md).await?;
    Ok(sync(Value::Null))
}

fn template_of(q: &TemplateQuery) -> Option<&str> {
    q.path.as_deref().filter(|p| !p.is_empty())
}

fn missing_path() -> DomainError {
    DomainError::BadRequest("missing path argument".into())
}

/// `GET /metadata/templates`: the template names; with `?path=`, one template's bytes.
pub async fn templates_get(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<TemplateQuery>,
) -> ApiResult {
    let Some(t) = template_of(&q) else {
        return Ok(sync(metadata::templates(&d, &name).await?));
    };
    let data = metadata::template(&d, &name, t).await?;
    let mut r: Response = data.into_response();
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("inline;filename={t}")) {
        h.insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// `POST /metadata/templates?path=`: creates or replaces a template with the raw body.
pub async fn templates_post(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<TemplateQuery>,
    body: axum::body::Bytes,
) -> ApiResult {
    let t = template_of(&q).ok_or_else(missing_path)?;
    metadata::template_put(&d, &name, t, body.to_vec()).await?;
    Ok(sync(Value::Null))
}

/// `DELETE /metadata/templates?path=`.
pub async fn templates_delete(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<TemplateQuery>,
) -> ApiResult {
    let t = template_of(&q).ok_or_else(missing_path)?;
    metadata::template_delete(&d, &name, t).await?;
    Ok(sync(Value::Null))
}
