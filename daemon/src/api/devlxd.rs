//! The HTTP side of `/dev/lxd/sock`: one small server per instance listener, bounded because
//! container root is the client (connections, header size and time, events listeners), with
//! answers rendered as LXD's devlxd renders them (JSON, raw bytes, or Go's `http.Error` text).
//! Which instance a request concerns is the listener's ([`Guest`]), never the request's.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::model::devlxd::Answer;
use crate::service::devlxd::{Guest, GuestEvent, ServeFn};
use crate::service::Services;

/// Connections served at once per instance (events listeners included); more wait in the
/// listen backlog.
const MAX_CONNECTIONS: usize = 16;
/// Events listeners at once per instance.
const MAX_EVENT_LISTENERS: usize = 4;
/// Time to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of a connection that is not an events stream (keep-alive included).
const CONNECTION_TIME: Duration = Duration::from_secs(120);
/// Most bytes of a request head hyper buffers.
const MAX_HEAD: usize = 16 * 1024;

/// One connection's context, put in each of its requests.
struct Conn {
    c: Services,
    guest: Guest,
    /// The peer's host uid, from the kernel (SO_PEERCRED), if it could be read.
    peer_uid: Option<u32>,
    events: Arc<Semaphore>,
    stop: CancellationToken,
    /// Set while the connection streams events (LXD's never end; the events semaphore bounds
    /// them instead of [`CONNECTION_TIME`]).
    streaming: std::sync::atomic::AtomicBool,
}

/// What [`crate::service::devlxd`] runs for each instance listener.
pub fn serve_fn() -> ServeFn {
    Arc::new(|c, guest, listener, stop| {
        tokio::spawn(accept_loop(c, guest, listener, stop));
    })
}

async fn accept_loop(
    c: Services,
    guest: Guest,
    listener: std::os::unix::net::UnixListener,
    stop: CancellationToken,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(instance = %guest.instance, error = %e, "/dev/lxd listener");
            return;
        }
    };
    let events = Arc::new(Semaphore::new(MAX_EVENT_LISTENERS));
    let what = format!("{}'s /dev/lxd/sock", guest.instance);
    super::accept::bounded(
        MAX_CONNECTIONS,
        &stop,
        &what,
        || listener.accept(),
        |(s, _), permit| {
            let conn = Conn {
                c: c.clone(),
                guest: guest.clone(),
                peer_uid: s.peer_cred().ok().map(|p| p.uid()),
                events: events.clone(),
                stop: stop.clone(),
                streaming: Default::default(),
            };
            tokio::spawn(connection(Arc::new(conn), s, permit));
        },
    )
    .await;
    tracing::info!(instance = %guest.instance, "no longer serving /dev/lxd/sock");
}

async fn connection(conn: Arc<Conn>, s: tokio::net::UnixStream, _permit: OwnedSemaphorePermit) {
    let stop = conn.stop.clone();
    let watched = conn.clone();
    let deadline = async move {
        loop {
            tokio::time::sleep(CONNECTION_TIME).await;
            if !watched.streaming.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
        }
    };
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let conn = conn.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(conn, req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(s), svc)
        .with_upgrades();
    tokio::select! {
        _ = served => {}
        () = stop.cancelled() => {}
        () = deadline => {}
    }
}

/// Go's `http.Error`: the text, a newline, `text/plain`.
fn http_error(status: u16, msg: &str) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        format!("{msg}\n"),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn handle(conn: Arc<Conn>, req: Request<hyper::body::Incoming>) -> Response {
    // As LXD: only the instance's root may ask (its uid on the host, from the kernel).
    if conn.peer_uid != Some(conn.guest.root_uid) {
        return http_error(401, "Access denied for non-root user");
    }
    let view = match crate::service::devlxd::view(&conn.c, &conn.guest.instance) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(instance = %conn.guest.instance, error = %e, "a /dev/lxd request");
            return http_error(500, "internal server error");
        }
    };
    let (mut parts, _body) = req.into_parts();
    match crate::model::devlxd::answer(parts.uri.path(), parts.uri.query(), &view) {
        Answer::Json(v) => {
            // Go's json.Encoder ends with a newline.
            let mut body = serde_json::to_vec(&v).unwrap_or_default();
            body.push(b'\n');
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Answer::Raw(s) => {
            let mut r = Response::new(Body::from(s));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Answer::Error(status, msg) => http_error(status, msg),
        Answer::NoRoute => http_error(404, "404 page not found"),
        Answer::Events(types) => {
            let Ok(permit) = conn.events.clone().try_acquire_owned() else {
                return http_error(503, "too many event listeners");
            };
            let rx = conn.c.devlxd.subscribe();
            let (instance, stop) = (conn.guest.instance.clone(), conn.stop.clone());
            let upgrade = parts
                .headers
                .get(header::UPGRADE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
            if upgrade {
                match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
                    Ok(ws) => ws
                        .on_upgrade(move |sock| stream_ws(sock, rx, instance, types, stop, permit)),
                    Err(e) => e.into_response(),
                }
            } else {
                // Without an upgrade LXD streams the events on the bare connection; here they
                // come as a body of JSON lines, for as long as the client reads.
                conn.streaming
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let body = futures::stream::unfold(
                    (rx, instance, types, stop, permit),
                    |(mut rx, instance, types, stop, permit)| async move {
                        let ev = next_event(&mut rx, &instance, &types, &stop).await?;
                        let mut line = serde_json::to_vec(&ev.json).unwrap_or_default();
                        line.push(b'\n');
                        Some((
                            Ok::<_, std::convert::Infallible>(line),
                            (rx, instance, types, stop, permit),
                        ))
                    },
                );
                Response::new(Body::from_stream(body))
            }
        }
    }
}

/// The next event for `instance` of one of `types`; `None` once the stream should end.
async fn next_event(
    rx: &mut broadcast::Receiver<GuestEvent>,
    instance: &str,
    types: &[String],
    stop: &CancellationToken,
) -> Option<GuestEvent> {
    loop {
        let ev = tokio::select! {
            () = stop.cancelled() => return None,
            ev = rx.recv() => ev,
        };
        match ev {
            Ok(ev) if ev.instance == instance && types.contains(&ev.kind) => return Some(ev),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    instance,
                    skipped = n,
                    "a /dev/lxd events listener fell behind"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

async fn stream_ws(
    mut sock: WebSocket,
    mut rx: broadcast::Receiver<GuestEvent>,
    instance: String,
    types: Vec<String>,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    loop {
        tokio::select! {
            ev = next_event(&mut rx, &instance, &types, &stop) => {
                let Some(ev) = ev else { break };
                let Ok(text) = serde_json::to_string(&ev.json) else { continue };
                if sock.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            msg = sock.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = futures::SinkExt::close(&mut sock).await;
}
