//! The REST API: LXD's 1.0 surface over the unix socket. All routes are in [`router`];
//! handlers only translate HTTP to calls on the daemon's modules and back.

pub mod events;
pub mod operations;
pub mod response;
pub mod server;

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::state::Daemon;
use response::ApiError;

/// The extensions silod implements, and only those (clients gate features on this list).
pub const API_EXTENSIONS: &[&str] = &[
    // `description` on operations.
    "operation_description",
    // `environment.os_name` / `os_version` in GET /1.0.
    "api_os",
    // `location` on events.
    "event_location",
    // `project` on events.
    "event_project",
    // ETag on GET /1.0 and If-Match on PUT/PATCH /1.0.
    "etag",
    // PATCH on /1.0.
    "patch",
];

/// The whole route table.
pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/", get(server::root))
        .route(
            "/1.0",
            get(server::get_server)
                .put(server::put_server)
                .patch(server::patch_server),
        )
        .route("/1.0/events", get(events::events))
        .route("/1.0/operations", get(operations::list))
        .route(
            "/1.0/operations/{id}",
            get(operations::get_one).delete(operations::cancel),
        )
        .route("/1.0/operations/{id}/wait", get(operations::wait))
        .fallback(not_found)
        .layer(middleware::from_fn(log_request))
        .with_state(d)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("not found".into())
}

async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let r = next.run(req).await;
    tracing::debug!(%method, %uri, status = r.status().as_u16(), "api request");
    r
}

/// An ETag for a JSON-serializable value: sha256 of its canonical JSON.
pub fn etag<T: serde::Serialize>(v: &T) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(bytes))
}
