//! LXD's response envelope and the one API error type, mapped to HTTP status in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::operations::Operation;

/// A sync answer.
pub fn sync<T: Serialize>(metadata: T) -> Response {
    let body = json!({
        "type": "sync",
        "status": "Success",
        "status_code": 200,
        "operation": "",
        "error_code": 0,
        "error": "",
        "metadata": metadata,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A sync answer with an ETag header.
pub fn sync_etag<T: Serialize>(metadata: T) -> Response {
    let etag = crate::api::etag(&metadata);
    let mut r = sync(metadata);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// An async answer naming a background operation.
pub fn async_op(op: &Operation) -> Response {
    let url = format!("/1.0/operations/{}", op.id);
    let body = json!({
        "type": "async",
        "status": "Operation created",
        "status_code": 100,
        "operation": url,
        "error_code": 0,
        "error": "",
        "metadata": op,
    });
    let mut r = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Every way an API call can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 412.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
    /// 503: a helper went away; silod is about to exit for its supervisor to restart it.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({
            "type": "error",
            "status": "",
            "status_code": 0,
            "operation": "",
            "error_code": status.as_u16(),
            "error": self.to_string(),
            "metadata": null,
        });
        (status, axum::Json(body)).into_response()
    }
}

impl From<silo_proto::HelperError> for ApiError {
    fn from(e: silo_proto::HelperError) -> Self {
        let msg = e.to_string();
        match e.http_status() {
            400 => ApiError::BadRequest(msg),
            403 => ApiError::Forbidden(msg),
            404 => ApiError::NotFound(msg),
            409 => ApiError::Conflict(msg),
            _ => ApiError::Internal(msg),
        }
    }
}

impl From<crate::helpers::HelperCallError> for ApiError {
    fn from(e: crate::helpers::HelperCallError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// Result of a handler.
pub type ApiResult = Result<Response, ApiError>;

/// Deserializes `null` as the type's default: the stock client sends `"config": null` for
/// empty maps.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
