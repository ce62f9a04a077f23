//! `/1.0/storage-pools` and their volumes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{json, Value};
use silo_proto::store::VolumeKind;

use super::render;
use super::response::{async_op, sync, sync_etag, ApiResult, DomainError};
use super::ListQuery;

use crate::service::custom_volumes;
use crate::service::storage;
use crate::service::volume_backups;
use crate::service::Services;

/// `GET /1.0/storage-pools`.
pub async fn list(State(d): State<Arc<Services>>, Query(q): Query<ListQuery>) -> ApiResult {
    let pools = storage::list(&d.db)?;
    if q.recursive() {
        let mut out = Vec::new();
        for p in &pools {
            out.push(render::pool(p, storage::used_by(&d.db, &p.name)?));
        }
        Ok(sync(out))
    } else {
        Ok(sync(
            pools
                .iter()
                .map(|p| format!("/1.0/storage-pools/{}", p.name))
                .collect::<Vec<_>>(),
        ))
    }
}

#[derive(Debug, Deserialize)]
pub struct PoolPost {
    name: String,
    driver: String,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    description: String,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    config: BTreeMap<String, String>,
}

/// `POST /1.0/storage-pools`.
pub async fn create(State(d): State<Arc<Services>>, body: axum::body::Bytes) -> ApiResult {
    let p: PoolPost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    storage::create(
        &d.db,
        &d.helpers,
        &p.name,
        &p.driver,
        &p.description,
        p.config,
    )
    .await?;
    d.events.lifecycle(
        "storage-pool-created",
        &format!("/1.0/storage-pools/{}", p.name),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `GET /1.0/storage-pools/{name}`.
pub async fn get_one(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    let p = storage::get(&d.db, &name)?;
    Ok(sync_etag(render::pool(
        &p,
        storage::used_by(&d.db, &p.name)?,
    )))
}

#[derive(Debug, Deserialize)]
pub struct PoolPut {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<BTreeMap<String, String>>,
}

async fn write(d: &Services, name: &str, body: &[u8], patch: bool) -> ApiResult {
    let mut p = storage::get(&d.db, name)?;
    let w: PoolPut = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    match w.description {
        Some(x) => p.description = x,
        None if !patch => p.description.clear(),
        None => {}
    }
    if let Some(c) = w.config {
        if patch {
            p.config.extend(c);
        } else {
            p.config = c;
        }
    }
    storage::update(&d.db, &p)?;
    Ok(sync(Value::Null))
}

/// `PUT /1.0/storage-pools/{name}`.
pub async fn put(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &name, &body, false).await
}

/// `PATCH /1.0/storage-pools/{name}`.
pub async fn patch(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    write(&d, &name, &body, true).await
}

/// `DELETE /1.0/storage-pools/{name}`.
pub async fn delete(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    storage::delete(&d.db, &d.helpers, &name).await?;
    d.events.lifecycle(
        "storage-pool-deleted",
        &format!("/1.0/storage-pools/{name}"),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `GET /1.0/storage-pools/{name}/resources`.
pub async fn resources(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    storage::get(&d.db, &name)?;
    Ok(sync(storage::resources(&d.helpers, &name).await?))
}

fn kind_of(t: &str) -> Result<VolumeKind, DomainError> {
    match t {
        "container" => Ok(VolumeKind::Container),
        "image" => Ok(VolumeKind::Image),
        "custom" => Ok(VolumeKind::Custom),
        "virtual-machine" => Err(DomainError::BadRequest(
            "virtual-machine volumes are not supported: silo runs containers".into(),
        )),
        other => Err(DomainError::BadRequest(format!(
            "unknown volume type {other:?}"
        ))),
    }
}

async fn volume_objects(
    d: &Services,
    pool: &str,
    only: Option<&str>,
) -> Result<Vec<silo_api::StorageVolume>, DomainError> {
    let wanted = |kind: &str| only.is_none_or(|o| o == kind);
    let mut out = Vec::new();
    if wanted("container") {
        for i in crate::service::instances::list_records(&d.db)?
            .into_iter()
            .filter(|i| i.pool == pool)
        {
            let used_by = vec![silo_api::paths::instance(&i.name)];
            out.push(render::volume(
                "container",
                &i.name,
                "",
                Default::default(),
                used_by,
            ));
        }
    }
    if wanted("image") {
        for fp in storage::image_volumes(&d.db, pool)? {
            let used_by = vec![silo_api::paths::image(&fp)];
            out.push(render::volume(
                "image",
                &fp,
                "",
                Default::default(),
                used_by,
            ));
        }
    }
    if wanted("custom") {
        for (n, desc, cfg) in storage::custom_volumes(&d.db, pool)? {
            let used_by = custom_volumes::used_by(&d.db, pool, &n)?;
            out.push(render::volume("custom", &n, &desc, cfg, used_by));
            // As LXD: each snapshot follows its volume, named `<volume>/<snapshot>`.
            for s in crate::service::custom_volumes::snapshots(&d.db, pool, &n)? {
                out.push(render::volume(
                    "custom",
                    &format!("{n}/{}", s.name),
                    &s.description,
                    s.config,
                    Vec::new(),
                ));
            }
        }
    }
    Ok(out)
}

fn urls(pool: &str, objs: &[silo_api::StorageVolume]) -> Vec<String> {
    objs.iter()
        .map(|o| match o.name.split_once('/') {
            Some((v, snap)) => custom_volumes::snapshot_url(pool, v, snap),
            None => silo_api::paths::storage_volume(pool, &o.kind, &o.name),
        })
        .collect()
}

/// `GET /1.0/storage-pools/{pool}/volumes`.
pub async fn volumes(
    State(d): State<Arc<Services>>,
    Path(pool): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    let objs = volume_objects(&d, &pool, None).await?;
    let filter = crate::model::filter::Filter::parse(q.filter.as_deref().unwrap_or(""))?;
    let objs: Vec<silo_api::StorageVolume> =
        objs.into_iter().filter(|o| filter.accepts(o)).collect();
    if q.recursive() {
        Ok(sync(objs))
    } else {
        Ok(sync(urls(&pool, &objs)))
    }
}

/// `GET /1.0/storage-pools/{pool}/volumes/{type}`.
pub async fn volumes_of(
    State(d): State<Arc<Services>>,
    Path((pool, t)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    kind_of(&t)?;
    let objs = volume_objects(&d, &pool, Some(&t)).await?;
    if q.recursive() {
        Ok(sync(objs))
    } else {
        Ok(sync(urls(&pool, &objs)))
    }
}

#[derive(Debug, Deserialize)]
pub struct VolumePost {
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    description: String,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    source: silo_api::StorageVolumeSource,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    content_type: String,
}

/// `POST /1.0/storage-pools/{pool}/volumes[/custom]`: a custom volume: empty, a copy of
/// another (`source.type: copy`, from any pool), or from another host (`migration`).
pub async fn volume_create(
    State(d): State<Arc<Services>>,
    Path(pool): Path<String>,
    req: axum::extract::Request,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    let octets = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/octet-stream"));
    if octets {
        return backup_import(d, pool, req).await;
    }
    let body = axum::body::to_bytes(req.into_body(), 4 << 20)
        .await
        .map_err(|e| DomainError::BadRequest(format!("reading the request: {e}")))?;
    let v: VolumePost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if !v.kind.is_empty() && v.kind != "custom" {
        return Err(DomainError::BadRequest(format!(
            "only custom volumes can be created directly, not {:?}",
            v.kind
        )));
    }
    match v.content_type.as_str() {
        "" | "filesystem" => {}
        "block" => {
            return Err(DomainError::BadRequest(format!(
                "custom volumes of content type \"block\" are not supported: no storage \
                 driver here gives block volumes (pool {pool:?} is {}); use \"filesystem\"",
                storage::get(&d.db, &pool)?.driver
            )))
        }
        other => {
            return Err(DomainError::BadRequest(format!(
                "Invalid content type {other:?}"
            )))
        }
    }
    match v.source.kind.as_str() {
        "" | "none" => {}
        "copy" => {
            let src_pool = if v.source.pool.is_empty() {
                pool.clone()
            } else {
                v.source.pool.clone()
            };
            let c = Services::clone(&d);
            let op = d.ops.start(
                "task",
                "Copying storage volume",
                BTreeMap::new(),
                false,
                move |_ctx| async move {
                    storage::copy_custom_volume(
                        &c,
                        &src_pool,
                        &v.source.name,
                        &pool,
                        &v.name,
                        &v.description,
                        v.source.volume_only,
                    )
                    .await
                    .map(|()| Value::Null)
                },
            );
            return Ok(async_op(&op));
        }
        "migration" => {
            let req = crate::service::migration::volume::TargetRequest {
                pool,
                name: v.name,
                description: v.description,
                config: v
                    .config
                    .into_iter()
                    .filter(|(_, x)| !x.is_empty())
                    .collect(),
                source: v.source,
            };
            let op = crate::service::migration::volume::start_target(&d, req).await?;
            return Ok(async_op(&op));
        }
        other => {
            return Err(DomainError::BadRequest(format!(
                "unknown volume source type {other:?}"
            )))
        }
    }
    storage::create_custom_volume(&d, &pool, &v.name, &v.description, &v.config).await?;
    Ok(sync(Value::Null))
}

/// `POST /1.0/storage-pools/{pool}/volumes/custom/{name}`: rename, move to another pool, or
/// send to another host (`migration: true`).
pub async fn volume_post(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    if kind_of(&t)? != VolumeKind::Custom {
        return Err(DomainError::BadRequest(format!(
            "{t} volumes go with their {}",
            if t == "image" { "image" } else { "instance" }
        )));
    }
    let p: silo_api::StorageVolumePost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if !p.project.is_empty() && p.project != "default" {
        return Err(DomainError::BadRequest(format!(
            "project {:?} not found: silo has the default project only",
            p.project
        )));
    }
    if p.migration {
        let op = crate::service::migration::volume::start_source(
            &d,
            &pool,
            &name,
            p.target,
            p.volume_only,
        )
        .await?;
        return Ok(async_op(&op));
    }
    let to_pool = if p.pool.is_empty() {
        pool.clone()
    } else {
        p.pool
    };
    storage::get(&d.db, &to_pool)?;
    let to = if p.name.is_empty() {
        name.clone()
    } else {
        p.name
    };
    if to_pool == pool {
        // A rename is answered when done, as LXD's (its client does not wait on one).
        storage::move_custom_volume(&d, &pool, &name, &to_pool, &to).await?;
        return Ok(sync(Value::Null));
    }
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Moving storage volume",
        BTreeMap::new(),
        false,
        move |_ctx| async move {
            storage::move_custom_volume(&c, &pool, &name, &to_pool, &to)
                .await
                .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/storage-pools/{pool}/volumes/{type}/{name}`.
pub async fn volume_get(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    kind_of(&t)?;
    volume_objects(&d, &pool, Some(&t))
        .await?
        .into_iter()
        .find(|o| o.name == name)
        .map(sync_etag)
        .ok_or_else(|| {
            DomainError::NotFound(format!(
                "storage volume {name:?} ({t}) not found in pool {pool:?}"
            ))
        })
}

/// `DELETE /1.0/storage-pools/{pool}/volumes/custom/{name}`.
pub async fn volume_delete(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    if kind_of(&t)? != VolumeKind::Custom {
        return Err(DomainError::BadRequest(format!(
            "{t} volumes go with their {}",
            if t == "image" { "image" } else { "instance" }
        )));
    }
    storage::delete_custom_volume(&d, &pool, &name).await?;
    Ok(sync(Value::Null))
}

fn custom_only(t: &str) -> Result<(), DomainError> {
    if kind_of(t)? != VolumeKind::Custom {
        return Err(DomainError::BadRequest(format!(
            "Invalid storage volume type {t:?}"
        )));
    }
    Ok(())
}

async fn volume_write(
    d: &Arc<Services>,
    pool: &str,
    t: &str,
    name: &str,
    body: &[u8],
    patch: bool,
) -> ApiResult {
    storage::get(&d.db, pool)?;
    custom_only(t)?;
    let (_, _, config) = custom_volumes::get(&d.db, pool, name)?;
    let w: silo_api::StorageVolumePut = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if !patch && !w.restore.is_empty() {
        custom_volumes::restore(d, pool, name, &w.restore).await?;
        return Ok(sync(Value::Null));
    }
    // As LXD: PATCH merges the config it is given into the current one; the description is
    // what the body says in both.
    let config = if patch {
        let mut c = config;
        c.extend(w.config);
        c
    } else {
        w.config
    };
    custom_volumes::update(d, pool, name, &w.description, config).await?;
    Ok(sync(Value::Null))
}

/// `PUT /1.0/storage-pools/{pool}/volumes/custom/{name}`: config and description, or a
/// restore from a snapshot (`{"restore": "<snapshot>"}`).
pub async fn volume_put(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    volume_write(&d, &pool, &t, &name, &body, false).await
}

/// `PATCH /1.0/storage-pools/{pool}/volumes/custom/{name}`.
pub async fn volume_patch(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    volume_write(&d, &pool, &t, &name, &body, true).await
}

/// `GET /1.0/storage-pools/{pool}/volumes/custom/{name}/state`.
pub async fn volume_state(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    Ok(sync(custom_volumes::state(&d, &pool, &name).await?))
}

fn snapshot_resources(pool: &str, name: &str) -> BTreeMap<String, Vec<String>> {
    let mut r = BTreeMap::new();
    r.insert(
        "storage_volumes".to_string(),
        vec![silo_api::paths::storage_volume(pool, "custom", name)],
    );
    r
}

/// `GET /1.0/storage-pools/{pool}/volumes/custom/{name}/snapshots`.
pub async fn snapshots(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    let all = custom_volumes::snapshots(&d.db, &pool, &name)?;
    if q.recursive() {
        Ok(sync(
            all.iter()
                .map(|s| render::volume_snapshot(s, true))
                .collect::<Vec<_>>(),
        ))
    } else {
        Ok(sync(
            all.iter()
                .map(|s| custom_volumes::snapshot_url(&pool, &name, &s.name))
                .collect::<Vec<_>>(),
        ))
    }
}

/// `POST /1.0/storage-pools/{pool}/volumes/custom/{name}/snapshots`.
pub async fn snapshot_create(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    custom_volumes::get(&d.db, &pool, &name)?;
    let req: silo_api::StorageVolumeSnapshotsPost = if body.is_empty() {
        Default::default()
    } else {
        super::lenient::from_slice(&body)
            .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?
    };
    let snap = if req.name.is_empty() {
        custom_volumes::next_name(&d.db, &pool, &name)?
    } else {
        req.name
    };
    custom_volumes::check_snapshot_name(&snap)?;
    let expires = match req.expires_at {
        None => None,
        Some(e) => Some(crate::model::parse::parse_expiry_time(&e)?.unwrap_or_default()),
    };
    if custom_volumes::snapshot(&d.db, &pool, &name, &snap).is_ok() {
        return Err(DomainError::Conflict(format!(
            "Snapshot {snap:?} already in use"
        )));
    }
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Snapshotting storage volume",
        snapshot_resources(&pool, &name),
        false,
        move |_ctx| async move {
            custom_volumes::create_snapshot(&c, &pool, &name, &snap, expires)
                .await
                .map(|_| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/storage-pools/{pool}/volumes/custom/{name}/snapshots/{snap}`.
pub async fn snapshot_get(
    State(d): State<Arc<Services>>,
    Path((pool, t, name, snap)): Path<(String, String, String, String)>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    let s = custom_volumes::snapshot(&d.db, &pool, &name, &snap)?;
    Ok(sync_etag(render::volume_snapshot(&s, false)))
}

async fn snapshot_write(
    d: &Arc<Services>,
    pool: &str,
    t: &str,
    name: &str,
    snap: &str,
    body: &[u8],
    patch: bool,
) -> ApiResult {
    storage::get(&d.db, pool)?;
    custom_only(t)?;
    let cur = custom_volumes::snapshot(&d.db, pool, name, snap)?;
    let v: Value = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let w: silo_api::StorageVolumeSnapshotPut = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let given = |k: &str| v.get(k).is_some();
    // PUT replaces both fields; PATCH only those the body names (LXD decodes it over the
    // current values).
    let description = if patch && !given("description") {
        cur.description.clone()
    } else {
        w.description
    };
    let expires_at = match w.expires_at {
        _ if patch && !given("expires_at") => cur.expires_at.clone(),
        None => String::new(),
        Some(e) => crate::model::parse::parse_expiry_time(&e)?.unwrap_or_default(),
    };
    custom_volumes::update_snapshot(d, pool, name, snap, &description, &expires_at)?;
    Ok(sync(Value::Null))
}

/// `PUT /1.0/storage-pools/{pool}/volumes/custom/{name}/snapshots/{snap}`.
pub async fn snapshot_put(
    State(d): State<Arc<Services>>,
    Path((pool, t, name, snap)): Path<(String, String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    snapshot_write(&d, &pool, &t, &name, &snap, &body, false).await
}

/// `PATCH /1.0/storage-pools/{pool}/volumes/custom/{name}/snapshots/{snap}`.
pub async fn snapshot_patch(
    State(d): State<Arc<Services>>,
    Path((pool, t, name, snap)): Path<(String, String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    snapshot_write(&d, &pool, &t, &name, &snap, &body, true).await
}

/// `POST /1.0/storage-pools/{pool}/volumes/custom/{name}/snapshots/{snap}`: a rename.
pub async fn snapshot_post(
    State(d): State<Arc<Services>>,
    Path((pool, t, name, snap)): Path<(String, String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    custom_volumes::snapshot(&d.db, &pool, &name, &snap)?;
    let p: silo_api::StorageVolumeSnapshotPost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if p.name.is_empty() {
        return Err(DomainError::BadRequest("No name provided".into()));
    }
    if p.name.contains('/') {
        return Err(DomainError::BadRequest(
            "Storage volume names may not contain slashes".into(),
        ));
    }
    custom_volumes::check_snapshot_name(&p.name)?;
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Renaming storage volume snapshot",
        snapshot_resources(&pool, &name),
        false,
        move |_ctx| async move {
            custom_volumes::rename_snapshot(&c, &pool, &name, &snap, &p.name)
                .await
                .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `DELETE /1.0/storage-pools/{pool}/volumes/custom/{name}/snapshots/{snap}`.
pub async fn snapshot_delete(
    State(d): State<Arc<Services>>,
    Path((pool, t, name, snap)): Path<(String, String, String, String)>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    custom_volumes::snapshot(&d.db, &pool, &name, &snap)?;
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Deleting storage volume snapshot",
        snapshot_resources(&pool, &name),
        false,
        move |_ctx| async move {
            custom_volumes::delete_snapshot(&c, &pool, &name, &snap)
                .await
                .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}

fn backup_resources(pool: &str, name: &str, backup: &str) -> BTreeMap<String, Vec<String>> {
    let mut r = snapshot_resources(pool, name);
    // lxc storage volume export (5.0) reads the backup's bare name from here.
    r.insert("backups".to_string(), vec![backup.to_string()]);
    r
}

/// `GET /1.0/storage-pools/{pool}/volumes/custom/{name}/backups`.
pub async fn backups(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    let all = volume_backups::list(&d.db, &pool, &name)?;
    if q.recursive() {
        Ok(sync(
            all.iter().map(render::volume_backup).collect::<Vec<_>>(),
        ))
    } else {
        Ok(sync(
            all.iter()
                .map(|b| volume_backups::backup_url(&pool, &name, &b.name))
                .collect::<Vec<_>>(),
        ))
    }
}

/// `POST /1.0/storage-pools/{pool}/volumes/custom/{name}/backups` (async).
pub async fn backup_create(
    State(d): State<Arc<Services>>,
    Path((pool, t, name)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    let p: silo_api::StoragePoolVolumeBackupsPost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let bname = if p.name.is_empty() {
        volume_backups::next_name(&d.db, &pool, &name)?
    } else {
        p.name.clone()
    };
    let expires = crate::service::events::parse_expiry_time(&p.expires_at)
        .map_err(DomainError::BadRequest)?;
    volume_backups::check(
        &d.db,
        &pool,
        &name,
        &bname,
        &p.compression_algorithm,
        p.optimized_storage,
    )?;
    let c = Services::clone(&d);
    let res = backup_resources(&pool, &name, &bname);
    let op = d.ops.start(
        "task",
        "Backing up storage volume",
        res,
        false,
        move |_ctx| async move {
            volume_backups::create(
                &c,
                &pool,
                &name,
                volume_backups::NewBackup {
                    name: bname,
                    volume_only: p.volume_only,
                    expires_at: expires.unwrap_or_default(),
                    compression: p.compression_algorithm,
                },
            )
            .await
            .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/storage-pools/{pool}/volumes/custom/{name}/backups/{backup}`.
pub async fn backup_get(
    State(d): State<Arc<Services>>,
    Path((pool, t, name, b)): Path<(String, String, String, String)>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    Ok(sync(render::volume_backup(&volume_backups::get(
        &d.db, &pool, &name, &b,
    )?)))
}

/// `DELETE /1.0/storage-pools/{pool}/volumes/custom/{name}/backups/{backup}` (async).
pub async fn backup_delete(
    State(d): State<Arc<Services>>,
    Path((pool, t, name, b)): Path<(String, String, String, String)>,
) -> ApiResult {
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    volume_backups::get(&d.db, &pool, &name, &b)?;
    let c = Services::clone(&d);
    let res = backup_resources(&pool, &name, &b);
    let op =
        d.ops.start(
            "task",
            "Removing storage volume backup",
            res,
            false,
            move |_ctx| async move {
                volume_backups::delete(&c, &pool, &name, &b).map(|()| Value::Null)
            },
        );
    Ok(async_op(&op))
}

/// `GET /1.0/storage-pools/{pool}/volumes/custom/{name}/backups/{backup}/export`.
pub async fn backup_export(
    State(d): State<Arc<Services>>,
    Path((pool, t, name, b)): Path<(String, String, String, String)>,
) -> Result<axum::response::Response, DomainError> {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    storage::get(&d.db, &pool)?;
    custom_only(&t)?;
    let p = volume_backups::file(&d, &pool, &name, &b)?;
    let (body, len) = super::images::file_body(p)?;
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(r)
}

/// `POST /1.0/storage-pools/{pool}/volumes/custom` with an `application/octet-stream` body:
/// a custom volume backup to import (`X-LXD-name` optional).
async fn backup_import(d: Arc<Services>, pool: String, req: axum::extract::Request) -> ApiResult {
    use futures::StreamExt;
    let name = req
        .headers()
        .get("x-lxd-name")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let stream = req
        .into_body()
        .into_data_stream()
        .map(|r| r.map_err(|e| e.to_string()));
    let (path, _, _) = super::images::receive_stream(&d, Box::pin(stream)).await?;
    let c = Services::clone(&d);
    let mut res = BTreeMap::new();
    if let Some(n) = &name {
        res.insert(
            "storage_volumes".to_string(),
            vec![silo_api::paths::storage_volume(&pool, "custom", n)],
        );
    }
    let op = d.ops.start(
        "task",
        "Importing custom volume from backup",
        res,
        false,
        move |_ctx| async move {
            let r = volume_backups::import(&c, &path, &pool, name).await;
            let _ = std::fs::remove_file(&path);
            r.map(|n| json!({"name": n}))
        },
    );
    Ok(async_op(&op))
}
