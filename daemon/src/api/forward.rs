//! Every API call works from any member: this layer (after the trust check) sends a call
//! about an instance to the member it is placed on, a create to the member the scheduler or
//! `?target=` picks, an operation's calls to the member that runs it, and merges instance
//! listings from all members. Forwarded calls go over member-to-member TLS with this
//! member's certificate, marked [`FORWARDED`] so the receiver serves them itself; websocket
//! upgrades (exec, console, migration) are spliced through.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::model::trust::CallerKind;
use crate::service::cluster::definitions::{self, Defined};
use crate::service::cluster::routing::PeerAddr;
use crate::service::cluster::routing::{self, decide, Route};
use crate::service::cluster::{peer, Joined};
use crate::service::{DomainError, Services};

/// The header that marks a call one member forwarded to another: served where it lands.
pub use crate::service::cluster::peer::FORWARDED;

fn query_param(req: &Request, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The layer.
pub async fn route(State(d): State<Arc<Services>>, req: Request, next: Next) -> Response {
    let Some(j) = d.cluster.joined() else {
        return next.run(req).await;
    };
    let kind = req.extensions().get::<CallerKind>().copied();
    if req.headers().contains_key(FORWARDED) && kind == Some(CallerKind::Member) {
        crate::service::cluster::records::sync(&d).await;
        return next.run(req).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let target = query_param(&req, "target");
    let route = match decide(&d, &j, method, path, target).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if !matches!(route, Route::Member(_)) {
        // What this member serves, it serves from its copy of the cluster's records: made
        // current first, so a write that finished anywhere is seen here.
        crate::service::cluster::records::sync(&d).await;
    }
    match route {
        Route::Local => next.run(req).await,
        Route::Member(m) => match routing::member(&j, &m).await {
            Ok(rec) => forward(&d, &rec, req).await,
            Err(e) => e.into_response(),
        },
        Route::ListAll => list_all(&d, &j, req, next).await,
        Route::ProfileUsedBy => profile_used_by(&d, &j, req, next).await,
        Route::Pending(what, member) => match pending(&d, what, &member, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        },
        Route::CreateEverywhere(what) => match create_everywhere(&d, what, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        },
        Route::Everywhere(what, name) => match everywhere(&d, what, &name, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        },
        Route::ProfileUnused => match profile_used_elsewhere(&d, &j, req.uri().path()).await {
            Ok(()) => next.run(req).await,
            Err(e) => e.into_response(),
        },
    }
}

fn error_response(e: String) -> Response {
    DomainError::Unavailable(e).into_response()
}

/// Sends `req` to member `rec` and answers its response (streamed; a websocket upgrade is
/// spliced through).
pub async fn forward(d: &Services, rec: &PeerAddr, mut req: Request) -> Response {
    let tls = match peer::connect(&rec.address, &rec.pin, d.trust.identity()).await {
        Ok(t) => t,
        Err(e) => return error_response(format!("forwarding to member {}: {e}", rec.name)),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await {
        Ok(x) => x,
        Err(e) => return error_response(format!("forwarding to member {}: {e}", rec.name)),
    };
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let upgrade = req.headers().get(hyper::header::UPGRADE).is_some();
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut up = hyper::Request::builder().method(parts.method.clone()).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    );
    for (k, v) in parts.headers.iter() {
        if k != hyper::header::HOST {
            up = up.header(k, v);
        }
    }
    up = up
        .header(hyper::header::HOST, rec.address.as_str())
        .header(FORWARDED, "1");
    let up = match up.body(body) {
        Ok(r) => r,
        Err(e) => return error_response(e.to_string()),
    };
    let mut resp = match sender.send_request(up).await {
        Ok(r) => r,
        Err(e) => return error_response(format!("forwarding to member {}: {e}", rec.name)),
    };
    if resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut resp);
        let mut out = Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        if let Some(client) = client_upgrade {
            tokio::spawn(async move {
                if let (Ok(a), Ok(b)) = (client.await, upstream.await) {
                    let mut a = TokioIo::new(a);
                    let mut b = TokioIo::new(b);
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
        return out.body(Body::empty()).unwrap_or_default();
    }
    let (parts, body) = resp.into_parts();
    if parts.status == hyper::StatusCode::ACCEPTED {
        // An operation started there: its later calls (wait, websockets, cancel) go there.
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return error_response(format!("member {}: {e}", rec.name)),
        };
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            if let Some(id) = v["metadata"]["id"].as_str() {
                d.cluster.record_op(id, &rec.name);
            }
        }
        return Response::from_parts(parts, Body::from(bytes));
    }
    Response::from_parts(parts, Body::new(body))
}

/// `GET /1.0/instances` in a cluster: this member's answer and every other member's,
/// merged; an OFFLINE member's instances are listed from their placement, in an unknown
/// state (never left out: they are not lost).
async fn list_all(d: &Services, j: &Joined, req: Request, next: Next) -> Response {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let recursion: u8 = query_param(&req, "recursion")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let base = req.uri().path().to_string();
    let (parts, mut whole) = match local_json(req, next).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let routing::Listing {
        members,
        alive,
        placed,
    } = match routing::listing(j).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let calls = members
        .iter()
        .filter(|(n, _)| *n != j.local.name)
        .map(|(n, m)| {
            let pq = pq.clone();
            let online = alive.contains(n);
            async move {
                if !online {
                    return (n.clone(), None);
                }
                let r = forwarded_get(d, &m.address, &m.pin, &pq).await;
                (n.clone(), r.ok())
            }
        });
    let answers = futures::future::join_all(calls).await;
    let mut items: Vec<Value> = whole["metadata"].as_array().cloned().unwrap_or_default();
    for (member, answer) in answers {
        match answer {
            Some(Value::Array(a)) => items.extend(a),
            _ => {
                for (name, _) in placed.iter().filter(|(_, m)| *m == member) {
                    items.push(if recursion == 0 {
                        json!(format!("{base}/{name}"))
                    } else {
                        serde_json::to_value(silo_api::Instance {
                            name: name.clone(),
                            location: member.clone(),
                            status: "Unknown".into(),
                            kind: "container".into(),
                            project: "default".into(),
                            ..Default::default()
                        })
                        .unwrap_or_default()
                    });
                }
            }
        }
    }
    whole["metadata"] = Value::Array(items);
    with_json(parts, &whole)
}

/// The `used_by` of profile `path` on every other ONLINE member.
async fn used_by_elsewhere(
    d: &Services,
    j: &Joined,
    path: &str,
) -> Result<Vec<(String, Result<Vec<String>, String>)>, DomainError> {
    let l = routing::listing(j).await?;
    let calls = l
        .members
        .iter()
        .filter(|(n, _)| *n != j.local.name)
        .map(|(n, m)| {
            let online = l.alive.contains(n);
            async move {
                if !online {
                    return (n.clone(), Err(format!("cluster member {n:?} is offline")));
                }
                let r = forwarded_get(d, &m.address, &m.pin, path).await.map(|v| {
                    v["used_by"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                });
                (n.clone(), r)
            }
        });
    Ok(futures::future::join_all(calls).await)
}

/// This member's own answer to `req`, as JSON to add to; the answer itself when it is not a
/// success or not JSON.
async fn local_json(
    req: Request,
    next: Next,
) -> Result<(axum::http::response::Parts, Value), Response> {
    let local = next.run(req).await;
    if !local.status().is_success() {
        return Err(local);
    }
    let (parts, body) = local.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
        return Err(error_response("reading this member's answer".into()));
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => Ok((parts, v)),
        Err(_) => Err(Response::from_parts(parts, Body::from(bytes))),
    }
}

/// The answer `parts` with `whole` as its body (its length changed).
fn with_json(mut parts: axum::http::response::Parts, whole: &Value) -> Response {
    let body = serde_json::to_vec(whole).unwrap_or_default();
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// `GET /1.0/profiles/{name}`: this member's answer with every member's users.
async fn profile_used_by(d: &Services, j: &Joined, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let (parts, mut whole) = match local_json(req, next).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let others = match used_by_elsewhere(d, j, &path).await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let mut users: Vec<Value> = whole["metadata"]["used_by"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (_, r) in others {
        for u in r.unwrap_or_default() {
            let u = Value::String(u);
            if !users.contains(&u) {
                users.push(u);
            }
        }
    }
    whole["metadata"]["used_by"] = Value::Array(users);
    with_json(parts, &whole)
}

/// Refuses a profile's delete while an instance on any member uses it, or a member that
/// could not say is offline.
async fn profile_used_elsewhere(d: &Services, j: &Joined, path: &str) -> Result<(), DomainError> {
    let name = path.rsplit('/').next().unwrap_or_default();
    for (member, r) in used_by_elsewhere(d, j, path).await? {
        match r {
            Ok(users) if users.is_empty() => {}
            Ok(users) => {
                return Err(DomainError::BadRequest(format!(
                    "profile {name:?} is in use by {} (on member {member:?})",
                    users.join(", ")
                )))
            }
            // The profile is not there yet: the member's copy answers with the cluster's.
            Err(e) if e.contains("not found") => {}
            Err(e) => {
                return Err(DomainError::Unavailable(format!(
                    "cannot tell whether member {member:?} uses profile {name:?}: {e}"
                )))
            }
        }
    }
    Ok(())
}

/// The JSON body of `req` (at most 1 MiB: a definition).
async fn json_body(req: Request) -> Result<Value, DomainError> {
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| DomainError::BadRequest(format!("reading the request body: {e}")))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))
}

/// `POST /1.0/<pools|networks>?target=MEMBER`.
async fn pending(
    d: &Services,
    what: Defined,
    member: &str,
    req: Request,
) -> Result<Response, DomainError> {
    let body = json_body(req).await?;
    definitions::record_pending(d, what, member, &body).await?;
    Ok(crate::api::response::sync(Value::Null))
}

/// `POST /1.0/<pools|networks>` in a cluster: made on every member, or on none (those made
/// before a member failed are deleted again).
async fn create_everywhere(
    d: &Services,
    what: Defined,
    req: Request,
) -> Result<Response, DomainError> {
    let body = json_body(req).await?;
    let plan = definitions::plan_create(d, what, &body).await?;
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let coll = format!("/1.0/{}", what.segment());
    let item = format!("{coll}/{}", silo_api::paths::escape(&name));
    let mut done: Vec<&PeerAddr> = Vec::new();
    for (m, b) in &plan {
        match forwarded_send(d, m, hyper::Method::POST, &coll, Some(b)).await {
            Ok(_) => done.push(m),
            Err(e) => {
                for m in done {
                    if let Err(u) = forwarded_send(d, m, hyper::Method::DELETE, &item, None).await {
                        tracing::warn!(member = %m.name, error = %u, "undoing a cluster-wide create");
                    }
                }
                return Err(DomainError::BadRequest(format!(
                    "creating {name:?} on member {:?}: {e}",
                    m.name
                )));
            }
        }
    }
    definitions::clear_pending(d, what, &name).await?;
    definitions::record_defined(d, what, &name).await?;
    Ok(crate::api::response::sync(Value::Null))
}

/// `PUT`/`PATCH`/`DELETE /1.0/<pools|networks>/<name>` in a cluster: on every member. A
/// delete counts members that never had it as done.
async fn everywhere(
    d: &Services,
    what: Defined,
    name: &str,
    req: Request,
) -> Result<Response, DomainError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = json_body(req).await?;
    let body = (!body.is_null()).then_some(body);
    let members = definitions::everyone(d, what, name).await?;
    if method == hyper::Method::DELETE {
        // Deleted everywhere or nowhere: a member whose instances use it refuses first.
        for m in &members {
            if let Ok(v) = forwarded_send(d, m, hyper::Method::GET, &path, None).await {
                let users: Vec<&str> = v["used_by"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                if !users.is_empty() {
                    return Err(DomainError::BadRequest(format!(
                        "{} {name:?} is in use on member {:?} by {}",
                        what.segment(),
                        m.name,
                        users.join(", ")
                    )));
                }
            }
        }
    }
    let mut errors = Vec::new();
    let mut found = 0;
    for m in &members {
        match forwarded_send(d, m, method.clone(), &path, body.as_ref()).await {
            Ok(_) => found += 1,
            Err(e) if method == hyper::Method::DELETE && e.contains("not found") => {}
            Err(e) => errors.push(format!("member {:?}: {e}", m.name)),
        }
    }
    if !errors.is_empty() {
        return Err(DomainError::BadRequest(errors.join("; ")));
    }
    if found == 0 {
        return Err(DomainError::NotFound(format!(
            "{} {name:?} not found on any member",
            what.segment()
        )));
    }
    if method == hyper::Method::DELETE {
        definitions::clear_pending(d, what, name).await?;
        definitions::forget_defined(d, what, name).await?;
    } else {
        definitions::record_defined(d, what, name).await?;
    }
    Ok(crate::api::response::sync(Value::Null))
}

/// `method path` with `body` to member `m` (this one too), served there (marked
/// forwarded); its metadata, or its error's message.
async fn forwarded_send(
    d: &Services,
    m: &PeerAddr,
    method: hyper::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    peer::call_forwarded(&m.address, &m.pin, d.trust.identity(), method, path, body).await
}

/// A GET to another member, served there (marked forwarded); its metadata.
async fn forwarded_get(d: &Services, addr: &str, pin: &str, pq: &str) -> Result<Value, String> {
    peer::call_forwarded(addr, pin, d.trust.identity(), hyper::Method::GET, pq, None).await
}
