//! `/1.0/certificates[/<fingerprint>]`: the trust store, as LXD 5.0 serves it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Extension;
use serde_json::Value;

use super::response::{async_op, sync, sync_etag, ApiResult, DomainError};
use super::ListQuery;
use crate::model::trust::{CallerKind, Peer};
use crate::service::{trust, Services};

/// `GET /1.0/certificates`.
pub async fn list(State(d): State<Arc<Services>>, Query(q): Query<ListQuery>) -> ApiResult {
    let all = trust::list(&d)?;
    if q.recursive() {
        Ok(sync(all.iter().map(trust::to_api).collect::<Vec<_>>()))
    } else {
        Ok(sync(
            all.iter()
                .map(|c| silo_api::paths::certificate(&c.fingerprint))
                .collect::<Vec<_>>(),
        ))
    }
}

/// `POST /1.0/certificates`.
pub async fn create(
    State(d): State<Arc<Services>>,
    Extension(kind): Extension<CallerKind>,
    peer: Option<Extension<Peer>>,
    body: axum::body::Bytes,
) -> ApiResult {
    let req: silo_api::CertificatesPost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let (peer_cert, addr) = match peer.as_ref().map(|p| &p.0) {
        Some(Peer::Tls { addr, cert }) => (
            cert.as_ref().map(|c| c.0.clone()),
            // ::ffff:a.b.c.d on a dual-stack listener counts as a.b.c.d.
            Some(addr.ip().to_canonical()),
        ),
        _ => (None, None),
    };
    let caller = trust::AddCaller {
        kind,
        peer_cert,
        addr,
    };
    // The scrypt check is slow on purpose: off the async workers.
    let d2 = d.clone();
    let addresses = d.https.addresses();
    let added = tokio::task::spawn_blocking(move || trust::add(&d2, &caller, req, addresses))
        .await
        .map_err(|e| DomainError::Internal(format!("adding the certificate: {e}")))??;
    match added {
        trust::Added::Token(op) => Ok(async_op(&op)),
        trust::Added::Certificate(fp) => {
            // LXD answers a sync response with a Location as 201 Created.
            let mut r = sync(Value::Null);
            *r.status_mut() = StatusCode::CREATED;
            if let Ok(v) = HeaderValue::from_str(&silo_api::paths::certificate(&fp)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
    }
}

/// `GET /1.0/certificates/<fingerprint>`.
pub async fn get_one(State(d): State<Arc<Services>>, Path(fp): Path<String>) -> ApiResult {
    Ok(sync_etag(trust::to_api(&trust::get(&d, &fp)?)))
}

fn write(d: &Services, fp: &str, headers: &HeaderMap, body: &[u8], patch: bool) -> ApiResult {
    let (req, keys): (silo_api::CertificatePut, _) = super::lenient::from_slice_with_keys(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    // PUT replaces name and type; PATCH changes only what the body names.
    let given = |k: &str| !patch || keys.contains(k);
    let name = given("name").then_some(req.name);
    let kind = given("type").then_some(req.kind);
    let certificate = given("certificate").then_some(req.certificate);
    trust::update(
        d,
        fp,
        name,
        kind,
        certificate,
        req.restricted,
        super::if_match(headers),
    )?;
    Ok(sync(Value::Null))
}

/// `PUT /1.0/certificates/<fingerprint>`.
pub async fn put(
    State(d): State<Arc<Services>>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &fp, &headers, &body, false)
}

/// `PATCH /1.0/certificates/<fingerprint>`.
pub async fn patch(
    State(d): State<Arc<Services>>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &fp, &headers, &body, true)
}

/// `DELETE /1.0/certificates/<fingerprint>`.
pub async fn delete(State(d): State<Arc<Services>>, Path(fp): Path<String>) -> ApiResult {
    trust::delete(&d, &fp)?;
    Ok(sync(Value::Null))
}
