//! LXD's response envelope and the one API error type, mapped to HTTP status in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::operations::Operation;

/// `metadata` as the envelope's JSON. silo's API objects always serialize (string keys only),
/// so a failure here is a bug shown as `null`, not a panic in a handler.
fn to_json<T: Serialize>(metadata: T) -> serde_json::Value {
    serde_json::to_value(metadata).unwrap_or_default()
}

/// A sync answer.
pub fn sync<T: Serialize>(metadata: T) -> Response {
    let body = silo_api::Response::sync(to_json(metadata));
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
    let url = silo_api::paths::operation(&op.id);
    let body = silo_api::Response::async_op(url.clone(), to_json(op));
    let mut r = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub use crate::service::DomainError;

impl IntoResponse for DomainError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = silo_api::Response::error(status.as_u16(), self.to_string());
        (status, axum::Json(body)).into_response()
    }
}

/// Result of a handler.
pub type ApiResult = Result<Response, DomainError>;
