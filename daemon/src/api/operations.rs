//! `/1.0/operations`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::response::{sync, ApiResult, DomainError};
use crate::service::operations::OpError;
use crate::service::Services;

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    recursion: Option<String>,
}

impl From<OpError> for DomainError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotFound => DomainError::NotFound(e.to_string()),
            OpError::NotCancellable => DomainError::Forbidden(e.to_string()),
            OpError::NotRunning => DomainError::BadRequest(e.to_string()),
        }
    }
}

/// `GET /1.0/operations`: a map from lower-case status to operations (or their URLs).
pub async fn list(State(d): State<Arc<Services>>, Query(q): Query<ListQuery>) -> ApiResult {
    let recursive = q.recursion.as_deref().map(|r| r != "0").unwrap_or(false);
    let ops = d.ops.list();
    if recursive {
        let mut by: BTreeMap<String, Vec<crate::service::operations::Operation>> = BTreeMap::new();
        for op in ops {
            by.entry(op.status.to_lowercase()).or_default().push(op);
        }
        Ok(sync(by))
    } else {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for op in ops {
            by.entry(op.status.to_lowercase())
                .or_default()
                .push(format!("/1.0/operations/{}", op.id));
        }
        Ok(sync(by))
    }
}

/// `GET /1.0/operations/{id}`.
pub async fn get_one(State(d): State<Arc<Services>>, Path(id): Path<String>) -> ApiResult {
    Ok(sync(d.ops.get(&id)?))
}

/// `DELETE /1.0/operations/{id}`: cancel.
pub async fn cancel(State(d): State<Arc<Services>>, Path(id): Path<String>) -> ApiResult {
    d.ops.cancel(&id)?;
    Ok(sync(serde_json::Value::Null))
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    timeout: Option<String>,
}

/// `GET /1.0/operations/{id}/wait?timeout=N` (seconds; -1 or absent waits forever).
pub async fn wait(
    State(d): State<Arc<Services>>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult {
    let timeout = match q.timeout.as_deref() {
        None | Some("-1") => None,
        Some(t) => {
            let secs: f64 = t.parse().map_err(|_| {
                DomainError::BadRequest(format!("invalid timeout {t:?}: expected seconds or -1"))
            })?;
            if !(0.0..=86400.0 * 7.0).contains(&secs) {
                return Err(DomainError::BadRequest(format!(
                    "invalid timeout {t:?}: out of range"
                )));
            }
            Some(Duration::from_secs_f64(secs))
        }
    };
    Ok(sync(d.ops.wait(&id, timeout).await?))
}

#[derive(Debug, Deserialize)]
pub struct SocketQuery {
    secret: String,
}

/// `GET /1.0/operations/{id}/websocket?secret=`: one stream of an exec or console operation.
pub async fn websocket(
    State(d): State<Arc<Services>>,
    Path(id): Path<String>,
    Query(q): Query<SocketQuery>,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // A request that is no upgrade leaves the secret for the real connection.
    let Ok(ws) = ws else {
        return DomainError::BadRequest("this is a websocket: connect with an upgrade".into())
            .into_response();
    };
    let Some(tx) = d.sockets.take(&id, &q.secret) else {
        return DomainError::Forbidden(format!(
            "no stream of operation {id:?} waits for that secret"
        ))
        .into_response();
    };
    // Nothing silo's streams carry comes near 16 MiB a message (migration headers are
    // bounded lower): a peer cannot make silod buffer more.
    ws.max_message_size(16 << 20)
        .max_frame_size(16 << 20)
        .on_upgrade(move |sock| async move {
            let _ = tx.send(sock);
        })
}
