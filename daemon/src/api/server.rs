//! `GET /`, `GET/PUT/PATCH /1.0`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::response::{sync, sync_etag, ApiError, ApiResult};
use crate::state::Daemon;

/// `GET /`.
pub async fn root() -> ApiResult {
    Ok(sync(["/1.0"]))
}

fn confinement_json(pid: u32, landlock: &str) -> serde_json::Value {
    match silo_proto::procinfo::read(pid) {
        Ok(c) => {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            v["landlock"] = json!(landlock);
            v
        }
        Err(e) => json!({"pid": pid, "error": format!("reading /proc/{pid}: {e}")}),
    }
}

/// The server object (also used by `silo info`).
pub fn server_info(d: &Daemon, config: BTreeMap<String, String>) -> serde_json::Value {
    let helpers: Vec<serde_json::Value> = d
        .helpers
        .handles
        .iter()
        .map(|h| {
            let mut v = confinement_json(h.pid, &h.hello.landlock);
            v["name"] = json!(h.kind.binary());
            v
        })
        .collect();
    let mut daemon = confinement_json(std::process::id(), &d.landlock);
    daemon["name"] = json!("silod");
    json!({
        "config": config,
        "api_extensions": super::API_EXTENSIONS,
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "trusted",
        "auth_methods": ["tls"],
        "public": false,
        "environment": {
            "addresses": [],
            "architectures": [d.host.kernel_architecture.clone()],
            "certificate": "",
            "certificate_fingerprint": "",
            "driver": "silo",
            "driver_version": env!("CARGO_PKG_VERSION"),
            "firewall": "nftables",
            "kernel": "Linux",
            "kernel_architecture": d.host.kernel_architecture,
            "kernel_features": {},
            "kernel_version": d.host.kernel_version,
            "lxc_features": {},
            "os_name": d.host.os_name,
            "os_version": d.host.os_version,
            "project": "default",
            "server": "silo",
            "server_clustered": false,
            "server_event_mode": "full-mesh",
            "server_name": d.host.hostname,
            "server_pid": std::process::id(),
            "server_version": env!("CARGO_PKG_VERSION"),
            "storage": "dir",
            "storage_version": "1",
            "storage_supported_drivers": [{"Name": "dir", "Version": "1", "Remote": false}],
        },
        "silo": {
            "state_dir": d.state_dir.display().to_string(),
            "uptime_secs": d.started.elapsed().as_secs(),
            "schema_version": crate::db::schema_version(),
            "processes": std::iter::once(daemon).chain(helpers).collect::<Vec<_>>(),
        },
    })
}

/// `GET /1.0`.
pub async fn get_server(State(d): State<Arc<Daemon>>) -> ApiResult {
    let cfg = d.db.config()?;
    // The ETag covers only what PUT can change.
    let etag = super::etag(&json!({"config": cfg}));
    let mut r = sync(server_info(&d, cfg));
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(axum::http::header::ETAG, v);
    }
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub struct ServerPut {
    #[serde(default)]
    config: BTreeMap<String, serde_json::Value>,
}

/// Server configuration keys silod knows, with their validators.
/// (The remote-access and image keys arrive with the issues that implement them.)
type KeyCheck = fn(&str) -> Result<(), String>;
const SERVER_KEYS: &[(&str, KeyCheck)] = &[];

fn validate(
    cfg: &BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in cfg {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        let Some((_, check)) = SERVER_KEYS.iter().find(|(name, _)| name == k) else {
            return Err(ApiError::BadRequest(format!(
                "unknown server configuration key {k:?}"
            )));
        };
        check(&v).map_err(|e| ApiError::BadRequest(format!("invalid value for {k:?}: {e}")))?;
        if !v.is_empty() {
            out.insert(k.clone(), v);
        }
    }
    Ok(out)
}

fn check_if_match(d: &Daemon, headers: &HeaderMap) -> Result<BTreeMap<String, String>, ApiError> {
    let cur = d.db.config()?;
    if let Some(want) = headers
        .get(axum::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let have = super::etag(&json!({"config": cur}));
        if want.trim_matches('"') != have {
            return Err(ApiError::PreconditionFailed(
                "ETag doesn't match: the server configuration changed meanwhile".into(),
            ));
        }
    }
    Ok(cur)
}

/// `PUT /1.0`: replace the server configuration.
pub async fn put_server(
    State(d): State<Arc<Daemon>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    check_if_match(&d, &headers)?;
    let req: ServerPut = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
    let cfg = validate(&req.config)?;
    d.db.config_replace(&cfg)?;
    d.events.lifecycle("config-updated", "/1.0", json!({}));
    Ok(sync_etag(serde_json::Value::Null))
}

/// `PATCH /1.0`: merge into the server configuration.
pub async fn patch_server(
    State(d): State<Arc<Daemon>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let cur = check_if_match(&d, &headers)?;
    let req: ServerPut = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
    let changes = validate(&req.config)?;
    let mut merged = cur;
    for (k, v) in &req.config {
        if v.is_null() || v.as_str() == Some("") {
            merged.remove(k);
        }
    }
    merged.extend(changes);
    d.db.config_replace(&merged)?;
    d.events.lifecycle("config-updated", "/1.0", json!({}));
    Ok(sync(serde_json::Value::Null))
}
