//! LXD's response envelope and the one API error type, mapped to HTTP status in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::service::operations::Operation;

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

pub use crate::service::DomainError;

impl IntoResponse for DomainError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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

/// Result of a handler.
pub type ApiResult = Result<Response, DomainError>;
