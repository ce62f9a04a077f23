//! `GET /`, `GET/PUT/PATCH /1.0`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::response::{sync, sync_etag, ApiResult, DomainError};
use crate::service::{server, Services};

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

/// The storage drivers this host can make pools with, as LXD lists them.
fn supported_drivers(btrfs: Option<&str>) -> Vec<Value> {
    let mut v = Vec::new();
    if let Some(version) = btrfs {
        v.push(json!({"Name": "btrfs", "Version": version, "Remote": false}));
    }
    v.push(json!({"Name": "dir", "Version": "1", "Remote": false}));
    v
}

/// The server object (also used by `silo info`), from the stored configuration: secrets are
/// masked here so no caller can show them.
pub fn server_info(d: &Services, config: &BTreeMap<String, String>) -> serde_json::Value {
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
        "config": server::shown(config),
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
            "storage_supported_drivers": supported_drivers(d.host.btrfs.as_deref()),
        },
        "silo": {
            "state_dir": d.state_dir.display().to_string(),
            "uptime_secs": d.started.elapsed().as_secs(),
            "schema_version": server::schema_version(),
            "processes": std::iter::once(daemon).chain(helpers).collect::<Vec<_>>(),
        },
    })
}

/// `GET /1.0`.
pub async fn get_server(State(d): State<Arc<Services>>) -> ApiResult {
    let (cfg, etag) = server::config(&d)?;
    let mut r = sync(server_info(&d, &cfg));
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(axum::http::header::ETAG, v);
    }
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub struct ServerPut {
    #[serde(default)]
    config: BTreeMap<String, Value>,
}

/// `PUT /1.0`: replace the server configuration.
pub async fn put_server(
    State(d): State<Arc<Services>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &headers, &body, false)?;
    Ok(sync_etag(serde_json::Value::Null))
}

/// `PATCH /1.0`: merge into the server configuration.
pub async fn patch_server(
    State(d): State<Arc<Services>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &headers, &body, true)?;
    Ok(sync(serde_json::Value::Null))
}

fn write(d: &Services, headers: &HeaderMap, body: &[u8], patch: bool) -> Result<(), DomainError> {
    let req: ServerPut = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let if_match = headers
        .get(axum::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok());
    server::update(d, &req.config, patch, if_match)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_list_btrfs_when_usable() {
        let names = |v: Vec<Value>| -> Vec<String> {
            v.iter()
                .map(|d| d["Name"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(names(supported_drivers(None)), ["dir"]);
        let v = supported_drivers(Some("6.2"));
        assert_eq!(
            v[0],
            json!({"Name": "btrfs", "Version": "6.2", "Remote": false})
        );
        assert_eq!(names(v), ["btrfs", "dir"]);
    }
}
