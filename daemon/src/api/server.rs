//! `GET /`, `GET/PUT/PATCH /1.0`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};

use super::response::{sync, sync_etag, ApiResult, DomainError};
use crate::model::trust::{CallerKind, Peer};
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
fn supported_drivers(btrfs: Option<&str>) -> Vec<silo_api::ServerStorageDriverInfo> {
    let driver = |name: &str, version: &str| silo_api::ServerStorageDriverInfo {
        name: name.into(),
        version: version.into(),
        remote: false,
    };
    let mut v = Vec::new();
    if let Some(version) = btrfs {
        v.push(driver("btrfs", version));
    }
    v.push(driver("dir", "1"));
    v
}

/// The server object (also used by `silo info`), from the stored configuration: secrets are
/// masked here so no caller can show them.
pub fn server_info(d: &Services, config: &BTreeMap<String, String>) -> silo_api::Server {
    let helpers = d.helpers.handles.iter().map(|h| {
        let mut v = confinement_json(h.pid, &h.hello.landlock);
        v["name"] = json!(h.kind.binary());
        v
    });
    let mut daemon = confinement_json(std::process::id(), &d.landlock);
    daemon["name"] = json!("silod");
    let s = |v: &str| v.to_string();
    silo_api::Server {
        config: server::shown(config),
        api_extensions: super::API_EXTENSIONS.iter().map(|e| s(e)).collect(),
        api_status: s("stable"),
        api_version: s("1.0"),
        auth: s("trusted"),
        auth_methods: vec![s("tls")],
        public: false,
        environment: silo_api::ServerEnvironment {
            architectures: vec![d.host.kernel_architecture.clone()],
            driver: s("silo"),
            driver_version: s(env!("CARGO_PKG_VERSION")),
            firewall: s("nftables"),
            kernel: s("Linux"),
            kernel_architecture: d.host.kernel_architecture.clone(),
            kernel_version: d.host.kernel_version.clone(),
            os_name: d.host.os_name.clone(),
            os_version: d.host.os_version.clone(),
            project: s("default"),
            server: s("silo"),
            server_clustered: d.cluster.joined().is_some(),
            server_event_mode: s("full-mesh"),
            server_name: d
                .cluster
                .member_name()
                .unwrap_or_else(|| d.host.hostname.clone()),
            server_pid: i64::from(std::process::id()),
            server_version: s(env!("CARGO_PKG_VERSION")),
            storage: s("dir"),
            storage_version: s("1"),
            storage_supported_drivers: supported_drivers(d.host.btrfs.as_deref()),
            addresses: d.https.addresses(),
            certificate: d
                .trust
                .identity()
                .map(|i| i.cert_pem.clone())
                .unwrap_or_default(),
            certificate_fingerprint: d
                .trust
                .identity()
                .map(|i| i.fingerprint.clone())
                .unwrap_or_default(),
            ..Default::default()
        },
        silo: Some(silo_api::SiloServerInfo {
            state_dir: d.state_dir.display().to_string(),
            uptime_secs: d.started.elapsed().as_secs(),
            schema_version: server::schema_version(),
            processes: std::iter::once(daemon).chain(helpers).collect(),
        }),
        ..Default::default()
    }
}

/// What an untrusted caller sees of `GET /1.0`, as LXD shows it: the API's version and
/// extensions and how to authenticate, nothing of the host.
fn untrusted_view() -> silo_api::Server {
    silo_api::Server {
        api_extensions: super::API_EXTENSIONS
            .iter()
            .map(|e| e.to_string())
            .collect(),
        api_status: "stable".into(),
        api_version: "1.0".into(),
        auth: "untrusted".into(),
        auth_methods: vec!["tls".into()],
        public: false,
        ..Default::default()
    }
}

/// `GET /1.0`.
pub async fn get_server(
    State(d): State<Arc<Services>>,
    Extension(kind): Extension<CallerKind>,
    peer: Option<Extension<Peer>>,
) -> ApiResult {
    if !kind.trusted() {
        return Ok(sync(untrusted_view()));
    }
    let (cfg, etag) = server::config(&d)?;
    let mut info = server_info(&d, &cfg);
    // As LXD: a TLS client is told which of its certificates it is known by.
    if let Some(Extension(Peer::Tls { cert: Some(c), .. })) = peer {
        info.auth_user_name = c.1.clone();
        info.auth_user_method = "tls".into();
    }
    let mut r = sync(info);
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
    write(&d, &headers, &body, false).await?;
    Ok(sync_etag(serde_json::Value::Null))
}

/// `PATCH /1.0`: merge into the server configuration.
pub async fn patch_server(
    State(d): State<Arc<Services>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &headers, &body, true).await?;
    Ok(sync(serde_json::Value::Null))
}

async fn write(
    d: &Services,
    headers: &HeaderMap,
    body: &[u8],
    patch: bool,
) -> Result<(), DomainError> {
    let req: ServerPut = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    server::update(d, &req.config, patch, super::if_match(headers)).await
}

/// `PUT /internal/shutdown` (`silod shutdown`, what `lxd shutdown` asks): stops every
/// instance as a host shutdown does and then silod exits. The trust rule keeps it to the unix
/// socket (`model::trust::access`).
pub async fn internal_shutdown(State(d): State<Arc<Services>>) -> ApiResult {
    tracing::info!("asked to shut down with the host: stopping every instance");
    let report = crate::service::runtime::shutdown_all(&d).await?;
    tracing::info!(?report, "every instance stopped; silod exits");
    Ok(sync(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_list_btrfs_when_usable() {
        let names = |v: Vec<silo_api::ServerStorageDriverInfo>| -> Vec<String> {
            v.into_iter().map(|d| d.name).collect()
        };
        assert_eq!(names(supported_drivers(None)), ["dir"]);
        let v = supported_drivers(Some("6.2"));
        assert_eq!(
            serde_json::to_value(&v[0]).expect("json"),
            json!({"Name": "btrfs", "Version": "6.2", "Remote": false})
        );
        assert_eq!(names(v), ["btrfs", "dir"]);
    }
}
