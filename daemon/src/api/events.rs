//! `GET /1.0/events`: the websocket every stock client opens before an async request.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::response::DomainError;
use crate::service::Services;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    #[serde(rename = "type")]
    kinds: Option<String>,
}

const KINDS: [&str; 3] = ["operation", "logging", "lifecycle"];

/// Upgrades and streams events of the asked types (all when none are named).
pub async fn events(
    State(d): State<Arc<Services>>,
    Query(q): Query<EventsQuery>,
    headers: axum::http::HeaderMap,
    kind: Option<axum::Extension<crate::model::trust::CallerKind>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let kinds: HashSet<String> = match q.kinds.as_deref() {
        None | Some("") => KINDS.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            let mut set = HashSet::new();
            for k in list.split(',') {
                if !KINDS.contains(&k) {
                    return DomainError::BadRequest(format!(
                        "unknown event type {k:?}: expected operation, logging or lifecycle"
                    ))
                    .into_response();
                }
                set.insert(k.to_string());
            }
            set
        }
    };
    let Ok(ws) = ws else {
        return DomainError::BadRequest(
            "/1.0/events is a websocket: connect with an upgrade".into(),
        )
        .into_response();
    };
    // Another member relaying this one's events to its own listeners: only this member's
    // own, so no event goes round the cluster twice.
    let own_only = headers.contains_key(crate::service::cluster::peer::FORWARDED)
        && kind.is_some_and(|k| k.0 == crate::model::trust::CallerKind::Member);
    let rx = d.events.subscribe();
    ws.on_upgrade(move |sock| stream(sock, rx, kinds, own_only))
}

async fn stream(
    mut sock: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<crate::service::events::Event>,
    kinds: HashSet<String>,
    own_only: bool,
) {
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if !kinds.contains(&ev.kind) || (own_only && ev.relayed) {
                        continue;
                    }
                    let Ok(text) = serde_json::to_string(&ev) else { continue };
                    if sock.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "an events listener fell behind");
                }
                Err(_) => return,
            },
            msg = sock.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
