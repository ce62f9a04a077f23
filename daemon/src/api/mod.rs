//! The REST API: LXD's 1.0 surface over the unix socket. All routes are in [`router`];
//! handlers only translate HTTP to calls on the daemon's modules and back.

pub mod accept;
pub mod backups;
pub mod certificates;
pub mod cluster;
pub mod devlxd;
pub mod events;
pub mod files;
pub mod forward;
pub mod images;
pub mod instances;
pub mod metadata;
/// Request bodies decoded with LXD's leniency: the decoder lives in the shared API types crate.
pub use silo_api::lenient;
pub mod metrics;
pub mod networks;
pub mod operations;
pub mod profiles;
pub mod projects;
pub mod render;
pub mod resources;
pub mod response;
pub mod server;
pub mod snapshots;
pub mod storage;
pub mod trust;
pub mod warnings;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::service::Services;
use response::DomainError;

/// The extensions silod implements, and only those (clients gate features on this list).
pub const API_EXTENSIONS: &[&str] = &[
    // `description` on operations.
    "operation_description",
    // Copying and moving instances between hosts (LXD's migration protocol): push and relay
    // modes, the push target, --instance-only.
    "container_push",
    "container_push_target",
    "container_only_migration",
    // Moving a stopped instance to another pool on this host (POST with `pool`).
    "instance_pool_move",
    // Custom volumes copied and moved between pools, and to other hosts.
    "storage_api_local_volume_handling",
    "storage_api_remote_volume_handling",
    // Custom volumes: renamed (a sync POST), snapshots (with expiry), state.
    "storage_api_volume_rename",
    "storage_api_volume_snapshots",
    "custom_volume_snapshot_expiry",
    "storage_volume_state",
    // Custom volume backups: create/list/export/delete, import with X-LXD-name.
    "custom_volume_backup",
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
    // /1.0/instances (the client falls back to /1.0/containers without it).
    "instances",
    // ?filter= on instances, images and volumes.
    "api_filtering",
    // GET /1.0/instances?recursion=2 with state, snapshots and backups.
    "container_full",
    // GET /1.0/instances/<name>?recursion=1 returns the full instance.
    "instance_get_full",
    // used_by on profiles.
    "profile_usedby",
    // The storage pools and volumes API.
    "storage",
    // Profiles attached to images.
    "image_profiles",
    // description on profiles, pools, volumes.
    "entity_description",
    // /1.0/resources and /1.0/storage-pools/<pool>/resources.
    "resources",
    // The v2 layout of /1.0/resources (CPU sockets, cores, threads).
    "resources_v2",
    // limits.cpu, limits.memory, limits.processes in cgroups.
    "resource_limits",
    // cpu.usage in the instance state.
    "container_cpu_time",
    // network addresses and counters in the instance state.
    "network_state",
    // nic devices beyond bridged/macvlan/physical: p2p's ipv4.routes/ipv6.routes, routed
    // (gateway and host address keys, limits), ipvlan (mode), IP filtering on bridged nics.
    "container_nic_routes",
    "container_nic_routed",
    "container_nic_routed_gateway",
    "container_nic_routed_host_address",
    "container_nic_routed_limits",
    "container_nic_ipvlan",
    "container_nic_ipvlan_mode",
    "container_nic_ipfilter",
    // exec: record-output, signals over the control socket, user/group/cwd.
    "container_exec_recording",
    "container_exec_signal_handling",
    "container_exec_user_group_cwd",
    // POST/GET /1.0/instances/<name>/console.
    "console",
    // /1.0/instances/<name>/metadata and its templates.
    "container_edit_metadata",
    // HEAD on the files API.
    "instance_file_head",
    // /dev/lxd: `security.devlxd`, its events websocket, cloud-init.* keys and /1.0/devices.
    "restrict_devlxd",
    "devlxd_events",
    "cloud_init",
    // The files API: directories, delete, append, symlinks.
    "directory_manipulation",
    "file_delete",
    "file_append",
    "file_symlinks",
    "file_get_symlink",
    // /1.0/networks: managed bridges (NAT, DHCP, DNS), macvlan and physical networks.
    "network",
    "network_leases",
    "network_dhcp_expiry",
    // proxy devices (tcp, udp, unix; bind=host and bind=instance).
    "proxy",
    "proxy_unix",
    "proxy_udp",
    "proxy_tcp_udp_multi_port_handling",
    // Publishing with a chosen compression (`lxc publish --compression`), images created
    // with their aliases in one request, nics naming a managed `network`.
    "image_compression_algorithm",
    "image_create_aliases",
    "instance_nic_network",
    // Snapshots with expiry (snapshots.expiry, expires_at at creation).
    "snapshot_expiry",
    "snapshot_expiry_creation",
    // Instance backups: create/list/export/delete, import with X-LXD-name and X-LXD-pool.
    "container_backup",
    "backup_compression",
    "backup_compression_algorithm",
    "container_backup_override_pool",
    "backup_override_name",
    // copy --refresh onto an existing copy, on this host or from another.
    "container_incremental_copy",
    // The HTTPS API: PUT/PATCH of a trusted certificate, one-time add tokens
    // (`lxc config trust add`).
    "certificate_update",
    "certificate_token",
    // ?all-projects=true on instance and volume listings (`lxc list --all-projects`,
    // `lxc storage volume list --all-projects`): silo has the default project only, which
    // is every project.
    "instance_all_projects",
    "storage_volumes_all_projects",
    // /1.0/warnings: what silo found degraded on this host, acknowledged or deleted.
    "warnings",
    // /1.0/metrics: Prometheus text, for local users and `metrics` certificates.
    "metrics",
    // lxd_cpu_seconds_total counts seconds (LXD 5.0's fix; dashboards key on it).
    "metrics_cpu_seconds",
    // PUT /1.0/instances: one state change for all (`lxc start --all`, `lxc pause --all`).
    "instance_bulk_state_change",
    // /1.0/cluster: bootstrap, join tokens, members (over etcd).
    "clustering",
    "clustering_join",
    "clustering_join_token",
    // POST /1.0/cluster/members/<name>/state: evacuate (stop or migrate) and restore.
    "clustering_evacuation",
];

/// The whole route table.
pub fn router(d: Arc<Services>) -> Router {
    Router::new()
        .route("/", get(server::root))
        .route(
            "/1.0",
            get(server::get_server)
                .put(server::put_server)
                .patch(server::patch_server),
        )
        .route("/1.0/events", get(events::events))
        .route(
            "/internal/shutdown",
            axum::routing::put(server::internal_shutdown),
        )
        .route(
            "/1.0/certificates",
            get(certificates::list).post(certificates::create),
        )
        .route(
            "/1.0/certificates/{fp}",
            get(certificates::get_one)
                .put(certificates::put)
                .patch(certificates::patch)
                .delete(certificates::delete),
        )
        .route("/1.0/cluster", get(cluster::get).put(cluster::put))
        .route(
            "/1.0/cluster/members",
            get(cluster::members).post(cluster::add),
        )
        .route(
            "/1.0/cluster/members/{name}",
            get(cluster::member)
                .delete(cluster::remove)
                .put(cluster::member_put)
                .patch(cluster::member_patch)
                .post(cluster::member_rename),
        )
        .route(
            "/1.0/cluster/members/{name}/state",
            post(cluster::member_state),
        )
        .route("/internal/cluster/accept", post(cluster::accept))
        .route("/internal/cluster/leave", post(cluster::leave))
        .route("/internal/cluster/database", post(cluster::database))
        .route(
            "/internal/cluster/images/{fp}/{part}",
            get(cluster::image_file),
        )
        .route("/1.0/resources", get(resources::get))
        .route("/1.0/metrics", get(metrics::get))
        .route("/1.0/warnings", get(warnings::list))
        .route(
            "/1.0/warnings/{uuid}",
            get(warnings::get_one)
                .put(warnings::put)
                .patch(warnings::put)
                .delete(warnings::delete),
        )
        .route("/1.0/operations", get(operations::list))
        .route(
            "/1.0/operations/{id}",
            get(operations::get_one).delete(operations::cancel),
        )
        .route("/1.0/operations/{id}/wait", get(operations::wait))
        .route("/1.0/operations/{id}/websocket", get(operations::websocket))
        .route(
            "/1.0/images",
            get(images::list)
                .post(images::create)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/1.0/images/aliases",
            get(images::aliases_list).post(images::aliases_create),
        )
        .route(
            "/1.0/images/aliases/{name}",
            get(images::alias_get)
                .put(images::alias_put)
                .patch(images::alias_patch)
                .post(images::alias_rename)
                .delete(images::alias_delete),
        )
        .route(
            "/1.0/images/{fp}",
            get(images::get_one)
                .put(images::put)
                .patch(images::patch)
                .delete(images::delete),
        )
        .route("/1.0/images/{fp}/export", get(images::export))
        .route("/1.0/images/{fp}/refresh", post(images::refresh))
        .route("/1.0/images/{fp}/secret", post(images::secret))
        .route("/1.0/profiles", get(profiles::list).post(profiles::create))
        .route("/1.0/projects", get(projects::list).post(projects::create))
        .route(
            "/1.0/projects/{name}",
            get(projects::get_one)
                .put(projects::put)
                .patch(projects::patch)
                .post(projects::rename)
                .delete(projects::delete),
        )
        .route("/1.0/projects/{name}/state", get(projects::state))
        .route(
            "/1.0/profiles/{name}",
            get(profiles::get_one)
                .put(profiles::put)
                .patch(profiles::patch)
                .post(profiles::rename)
                .delete(profiles::delete),
        )
        .route(
            "/1.0/storage-pools",
            get(storage::list).post(storage::create),
        )
        .route(
            "/1.0/storage-pools/{name}",
            get(storage::get_one)
                .put(storage::put)
                .patch(storage::patch)
                .delete(storage::delete),
        )
        .route(
            "/1.0/storage-pools/{name}/resources",
            get(storage::resources),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes",
            get(storage::volumes)
                .post(storage::volume_create)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}",
            get(storage::volumes_of)
                .post(vol_create_typed)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}",
            get(storage::volume_get)
                .post(storage::volume_post)
                .put(storage::volume_put)
                .patch(storage::volume_patch)
                .delete(storage::volume_delete),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}/state",
            get(storage::volume_state),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}/snapshots",
            get(storage::snapshots).post(storage::snapshot_create),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}/backups",
            get(storage::backups).post(storage::backup_create),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}/backups/{backup}",
            get(storage::backup_get).delete(storage::backup_delete),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}/backups/{backup}/export",
            get(storage::backup_export),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}/snapshots/{snap}",
            get(storage::snapshot_get)
                .put(storage::snapshot_put)
                .patch(storage::snapshot_patch)
                .post(storage::snapshot_post)
                .delete(storage::snapshot_delete),
        )
        .route("/1.0/networks", get(networks::list).post(networks::create))
        .route(
            "/1.0/networks/{name}",
            get(networks::get_one)
                .put(networks::put)
                .patch(networks::patch)
                .post(networks::rename)
                .delete(networks::delete),
        )
        .route("/1.0/networks/{name}/state", get(networks::state))
        .route("/1.0/networks/{name}/leases", get(networks::leases))
        .merge(instance_routes("/1.0/instances"))
        .merge(instance_routes("/1.0/containers"))
        .fallback(not_found)
        .layer(middleware::from_fn(projects::check_param))
        .layer(middleware::from_fn_with_state(
            d.clone(),
            crate::api::forward::route,
        ))
        .layer(middleware::from_fn_with_state(d.clone(), trust::authorize))
        .layer(middleware::from_fn(log_request))
        .with_state(d)
}

fn instance_routes(base: &str) -> Router<Arc<Services>> {
    Router::new()
        .route(
            base,
            get(instances::list)
                .post(instances::create)
                .put(instances::put_all)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            &format!("{base}/{{name}}"),
            get(instances::get_one)
                .put(instances::put)
                .patch(instances::patch)
                .post(instances::rename)
                .delete(instances::delete),
        )
        .route(
            &format!("{base}/{{name}}/backups"),
            get(backups::list).post(backups::create),
        )
        .route(
            &format!("{base}/{{name}}/backups/{{backup}}"),
            get(backups::get_one)
                .post(backups::rename)
                .delete(backups::delete),
        )
        .route(
            &format!("{base}/{{name}}/backups/{{backup}}/export"),
            get(backups::export),
        )
        .route(
            &format!("{base}/{{name}}/snapshots"),
            get(snapshots::list).post(snapshots::create),
        )
        .route(
            &format!("{base}/{{name}}/snapshots/{{snap}}"),
            get(snapshots::get_one)
                .put(snapshots::put)
                .patch(snapshots::put)
                .post(snapshots::rename)
                .delete(snapshots::delete),
        )
        .route(
            &format!("{base}/{{name}}/state"),
            get(instances::state).put(instances::put_state),
        )
        .route(&format!("{base}/{{name}}/exec"), post(instances::exec))
        .route(
            &format!("{base}/{{name}}/console"),
            get(instances::console_log)
                .post(instances::console)
                .delete(instances::console_log_clear),
        )
        .route(
            &format!("{base}/{{name}}/files"),
            get(files::get)
                .head(files::head)
                .post(files::post)
                .delete(files::delete)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            &format!("{base}/{{name}}/metadata"),
            get(metadata::get).put(metadata::put).patch(metadata::patch),
        )
        .route(
            &format!("{base}/{{name}}/metadata/templates"),
            get(metadata::templates_get)
                .post(metadata::templates_post)
                .delete(metadata::templates_delete),
        )
        .route(&format!("{base}/{{name}}/logs"), get(instances::logs))
        .route(
            &format!("{base}/{{name}}/logs/{{file}}"),
            get(instances::log_file).delete(instances::log_delete),
        )
        .route(
            &format!("{base}/{{name}}/logs/exec-output/{{file}}"),
            get(instances::log_file).delete(instances::log_delete),
        )
}

async fn vol_create_typed(
    state: axum::extract::State<Arc<Services>>,
    axum::extract::Path((pool, t)): axum::extract::Path<(String, String)>,
    req: Request,
) -> response::ApiResult {
    if t != "custom" {
        return Err(DomainError::BadRequest(format!(
            "only custom volumes can be created directly, not {t:?}"
        )));
    }
    storage::volume_create(state, axum::extract::Path(pool), req).await
}

/// `?recursion=` and `?filter=` on listings.
#[derive(Debug, serde::Deserialize, Default)]
pub struct ListQuery {
    /// 0, 1 or 2.
    #[serde(default)]
    pub recursion: Option<String>,
    /// api_filtering expression.
    #[serde(default)]
    pub filter: Option<String>,
}

impl ListQuery {
    /// The recursion level (0 when absent or invalid).
    pub fn level(&self) -> u8 {
        self.recursion
            .as_deref()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }

    /// recursion >= 1.
    pub fn recursive(&self) -> bool {
        self.level() >= 1
    }
}

async fn not_found() -> DomainError {
    DomainError::NotFound("not found".into())
}

async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let t0 = std::time::Instant::now();
    let r = next.run(req).await;
    tracing::debug!(%method, %uri, status = r.status().as_u16(), us = t0.elapsed().as_micros() as u64, "api request");
    r
}

pub use crate::model::etag;

/// The ETag a write names in `If-Match` (quotes trimmed), if it names one.
pub fn if_match(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"'))
}

/// Refuses a write from a stale read, as LXD does: when it names an ETag, it must be one of
/// `current`'s (computed only then); `what` names the object in the 412.
pub fn check_if_match(
    headers: &axum::http::HeaderMap,
    what: &str,
    current: impl FnOnce() -> Result<Vec<String>, DomainError>,
) -> Result<(), DomainError> {
    let Some(want) = if_match(headers) else {
        return Ok(());
    };
    if current()?.iter().any(|e| e == want) {
        Ok(())
    } else {
        Err(DomainError::PreconditionFailed(format!(
            "{what} changed meanwhile (ETag mismatch)"
        )))
    }
}
