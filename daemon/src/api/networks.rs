//! `/1.0/networks`: silo's managed networks, and the host's other interfaces as unmanaged ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::render;
use super::response::{sync, sync_etag, ApiResult, DomainError};
use super::ListQuery;

use crate::service::networks;
use crate::service::Services;

/// `GET /1.0/networks`.
pub async fn list(State(d): State<Arc<Services>>, Query(q): Query<ListQuery>) -> ApiResult {
    let filter = crate::model::filter::Filter::parse(q.filter.as_deref().unwrap_or(""))?;
    let objs: Vec<silo_api::Network> = networks::all(&d)
        .await?
        .iter()
        .map(object)
        .filter(|o| filter.accepts(o))
        .collect();
    if q.recursive() {
        Ok(sync(objs))
    } else {
        Ok(sync(
            objs.iter()
                .map(|o| silo_api::paths::network(&o.name))
                .collect::<Vec<_>>(),
        ))
    }
}

#[derive(Debug, Deserialize)]
pub struct NetworkPost {
    name: String,
    #[serde(
        default,
        rename = "type",
        deserialize_with = "crate::model::null_default"
    )]
    kind: String,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    description: String,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    config: BTreeMap<String, String>,
}

/// `POST /1.0/networks`.
pub async fn create(State(d): State<Arc<Services>>, body: axum::body::Bytes) -> ApiResult {
    let p: NetworkPost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    networks::create(
        &d.db,
        &d.helpers,
        &p.name,
        &p.kind,
        &p.description,
        p.config,
    )
    .await?;
    d.events.lifecycle(
        "network-created",
        &format!("/1.0/networks/{}", p.name),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `GET /1.0/networks/{name}`.
pub async fn get_one(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    Ok(sync_etag(object(&networks::one(&d, &name).await?)))
}

#[derive(Debug, Deserialize)]
pub struct NetworkPut {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<BTreeMap<String, String>>,
}

fn object(n: &networks::Listed) -> silo_api::Network {
    match n {
        networks::Listed::Managed(n, used_by) => render::network(n, used_by.clone()),
        networks::Listed::Host(l) => render::unmanaged_network(l),
    }
}

async fn write(
    d: &Services,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    patch: bool,
) -> ApiResult {
    let mut n = networks::get(&d.db, name).map_err(|e| match e {
        DomainError::NotFound(_) => DomainError::BadRequest(format!(
            "network {name:?} is not managed by silo; only managed networks can be modified"
        )),
        e => e,
    })?;
    super::check_if_match(headers, &format!("network {name:?}"), || {
        let obj = render::network(&n, networks::used_by(&d.db, &n.name)?);
        Ok(vec![
            super::etag(&obj),
            super::etag(&silo_api::NetworkPut::from(&obj)),
        ])
    })?;
    let w: NetworkPut = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    match w.description {
        Some(x) => n.description = x,
        None if !patch => n.description.clear(),
        None => {}
    }
    if let Some(c) = w.config {
        if patch {
            for (k, v) in c {
                // LXD's PATCH removes a key given as "".
                if v.is_empty() {
                    n.config.remove(&k);
                } else {
                    n.config.insert(k, v);
                }
            }
        } else {
            n.config = c.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        }
    }
    networks::update(&d.db, &d.helpers, n).await?;
    d.events.lifecycle(
        "network-updated",
        &format!("/1.0/networks/{name}"),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `PUT /1.0/networks/{name}`.
pub async fn put(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &name, &headers, &body, false).await
}

/// `PATCH /1.0/networks/{name}`.
pub async fn patch(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &name, &headers, &body, true).await
}

#[derive(Debug, Deserialize)]
pub struct RenamePost {
    name: String,
}

/// `POST /1.0/networks/{name}`: rename an unused network.
pub async fn rename(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let r: RenamePost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let n = networks::get(&d.db, &name)?;
    if !networks::used_by(&d.db, &name)?.is_empty() {
        return Err(DomainError::BadRequest(format!(
            "network {name:?} is in use; only unused networks can be renamed"
        )));
    }
    networks::create(
        &d.db,
        &d.helpers,
        &r.name,
        &n.kind,
        &n.description,
        n.config.clone(),
    )
    .await?;
    networks::delete(&d.db, &d.helpers, &name).await?;
    d.events.lifecycle(
        "network-renamed",
        &format!("/1.0/networks/{}", r.name),
        json!({"old_name": name}),
    );
    Ok(sync(Value::Null))
}

/// `DELETE /1.0/networks/{name}`.
pub async fn delete(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    networks::delete(&d.db, &d.helpers, &name).await?;
    d.events.lifecycle(
        "network-deleted",
        &format!("/1.0/networks/{name}"),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `GET /1.0/networks/{name}/state`.
pub async fn state(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    let l = networks::link_state(&d, &name).await?;
    Ok(sync(render::network_state(&l)))
}

/// `GET /1.0/networks/{name}/leases`.
pub async fn leases(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    let n = networks::get(&d.db, &name)?;
    if n.kind != "bridge" {
        return Err(DomainError::BadRequest(format!(
            "network {name:?} is a {} network: only managed bridges have leases",
            n.kind
        )));
    }
    Ok(sync(networks::leases(&d.db, &d.helpers, &n).await?))
}
