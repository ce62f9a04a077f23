//! `/1.0/instances` (and the old `/1.0/containers` paths).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{json, Value};

use super::render;
use super::response::{async_op, sync, ApiResult, DomainError};
use super::ListQuery;
use crate::service::instances::{self, CreateRequest, Writable};
use crate::service::{lifecycle, Services};

fn resources(name: &str) -> BTreeMap<String, Vec<String>> {
    let mut r = BTreeMap::new();
    r.insert(
        "instances".to_string(),
        vec![format!("/1.0/instances/{name}")],
    );
    r
}

/// `GET /1.0/instances`: recursion 0 (URLs), 1 (objects), 2 (with state, snapshots, backups).
pub async fn list(State(d): State<Arc<Services>>, Query(q): Query<ListQuery>) -> ApiResult {
    let filter = crate::model::filter::Filter::parse(q.filter.as_deref().unwrap_or(""))?;
    let level = q.level();
    let c = Services::clone(&d);
    let run = crate::service::runtime::running(&c).await?;
    let mut stats = if level >= 2 && !run.is_empty() {
        crate::service::runtime::stats_many(&c, run.keys().cloned().collect()).await?
    } else {
        Default::default()
    };
    let profiles = crate::service::expansion::Expander::load(&d.db)?;
    let mut out = Vec::new();
    for i in instances::list_records(&d.db)? {
        let running = run.get(&i.name).map(|r| r.frozen);
        let obj = render::instance(
            &i,
            profiles.expand(&i.profiles, &i.config, &i.devices),
            status(running),
        );
        let obj = if level >= 2 {
            let state = running.map(|frozen| match stats.remove(&i.name) {
                Some(s) => with_status(render::running_state(&s, None), frozen),
                None => running_stub(frozen),
            });
            Listed::Full(Box::new(full(&d, &profiles, obj, state)))
        } else {
            Listed::Plain(Box::new(obj))
        };
        if filter.accepts(&obj) {
            out.push(obj);
        }
    }
    if level == 0 {
        Ok(sync(
            out.iter()
                .map(|o| silo_api::paths::instance(o.name()))
                .collect::<Vec<_>>(),
        ))
    } else {
        Ok(sync(out))
    }
}

/// An entry of a listing: recursion 1 or 2.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Listed {
    Plain(Box<silo_api::Instance>),
    Full(Box<silo_api::InstanceFull>),
}

impl Listed {
    fn name(&self) -> &str {
        match self {
            Listed::Plain(i) => &i.name,
            Listed::Full(i) => &i.name,
        }
    }
}

/// LXD's status and code: `None` is stopped, `Some(frozen)` running or frozen.
fn status(running: Option<bool>) -> (&'static str, i64) {
    match running {
        Some(true) => ("Frozen", 110),
        Some(false) => ("Running", 103),
        None => ("Stopped", 102),
    }
}

/// A running instance's state, marked frozen when it is.
fn with_status(mut s: silo_api::InstanceState, frozen: bool) -> silo_api::InstanceState {
    let (text, code) = status(Some(frozen));
    s.status = text.into();
    s.status_code = code;
    s
}

/// `obj` with its state, snapshots and backups.
fn full(
    d: &Services,
    profiles: &crate::service::expansion::Expander,
    obj: silo_api::Instance,
    state: Option<silo_api::InstanceState>,
) -> silo_api::InstanceFull {
    let snapshots = crate::service::snapshots::list(&d.db, &obj.name)
        .unwrap_or_default()
        .iter()
        .map(|s| render::snapshot(s, profiles.expand(&s.profiles, &s.config, &s.devices)))
        .collect();
    let backups = crate::service::backups::list(&d.db, &obj.name)
        .unwrap_or_default()
        .iter()
        .map(render::backup)
        .collect();
    render::instance_full(obj, state, snapshots, backups)
}

/// `POST /1.0/instances`: a JSON create request, or a backup tarball to import.
pub async fn create(State(d): State<Arc<Services>>, req: axum::extract::Request) -> ApiResult {
    let octets = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/octet-stream"));
    if octets {
        return super::backups::import(d, req).await;
    }
    let body = axum::body::to_bytes(req.into_body(), 4 << 20)
        .await
        .map_err(|e| DomainError::BadRequest(format!("reading the request: {e}")))?;
    let req: CreateRequest = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let c = Services::clone(&d);
    if req.source.kind == "migration" {
        let op = crate::service::migration::target::start(&c, req).await?;
        return Ok(async_op(&op));
    }
    if req.source.kind == "copy" && req.source.refresh && instances::get(&d.db, &req.name).is_ok() {
        // `copy --refresh` onto an existing copy: bring it up to date with its source.
        let name = req.name.clone();
        let op = d.ops.start(
            "task",
            "Refreshing instance",
            resources(&name),
            false,
            move |_ctx| async move {
                crate::service::snapshots::refresh_copy(
                    &c,
                    &req.source.source,
                    &name,
                    req.source.instance_only,
                )
                .await
                .map(|()| Value::Null)
            },
        );
        return Ok(async_op(&op));
    }
    crate::service::devices::check(&c, &req.devices).await?;
    let (req, image) = lifecycle::prepare(&c, req)?;
    let name = req.name.clone();
    // In a cluster the name is claimed for this member before the operation starts: of
    // two launches of one name through two members, the second is refused here.
    if let Err(e) = crate::service::cluster::claim_instance(&c, &name).await {
        c.creating.release(&name);
        return Err(e);
    }
    if req.source.kind == "image" && !req.source.server.is_empty() {
        let op = d.ops.start(
            "task",
            "Creating instance",
            resources(&name),
            false,
            move |ctx| async move {
                let report = move |s: String| {
                    ctx.set_metadata(serde_json::json!({ "download_progress": s }))
                };
                lifecycle::create_remote(&c, req, &report)
                    .await
                    .map(|_| Value::Null)
            },
        );
        return Ok(async_op(&op));
    }
    let op = d.ops.start(
        "task",
        "Creating instance",
        resources(&name),
        false,
        move |_ctx| async move { lifecycle::create(&c, req, image).await.map(|_| Value::Null) },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/instances/{name}` (recursion=1: the full object, instance_get_full).
pub async fn get_one(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    if name.contains('/') {
        // As LXD 5.0 (`lxc info c1/snap0` asks here): snapshots live under /snapshots.
        return Err(DomainError::BadRequest("Invalid instance name".into()));
    }
    let i = instances::get(&d.db, &name)?;
    let c = Services::clone(&d);
    let running = crate::service::runtime::run_state(&c, &name)
        .await?
        .map(|r| r.frozen);
    let profiles = crate::service::expansion::Expander::load(&d.db)?;
    let obj = render::instance(
        &i,
        profiles.expand(&i.profiles, &i.config, &i.devices),
        status(running),
    );
    let etag = etag_of(&i);
    let mut r = if q.level() >= 1 {
        let state = match running {
            Some(frozen) => Some(
                crate::service::runtime::stats(&c, &name)
                    .await
                    .map(|s| with_status(render::running_state(&s, None), frozen))
                    .unwrap_or_else(|_| running_stub(frozen)),
            ),
            None => None,
        };
        sync(full(&d, &profiles, obj, state))
    } else {
        sync(obj)
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(axum::http::header::ETAG, v);
    }
    Ok(r)
}

/// A running instance whose counters could not be read: its status alone.
fn running_stub(frozen: bool) -> silo_api::InstanceState {
    with_status(Default::default(), frozen)
}

/// An instance's ETag: over what PUT can change (never the expanded view), so checking an
/// If-Match needs no profile expansion.
fn etag_of(i: &instances::Instance) -> String {
    super::etag(&silo_api::InstancePut {
        config: i.config.clone(),
        devices: i.devices.clone(),
        ephemeral: i.ephemeral,
        profiles: i.profiles.clone(),
        description: i.description.clone(),
        ..Default::default()
    })
}

fn check_etag(d: &Services, name: &str, headers: &HeaderMap) -> Result<(), DomainError> {
    super::check_if_match(headers, &format!("instance {name:?}"), || {
        Ok(vec![etag_of(&instances::get(&d.db, name)?)])
    })
}

/// `PUT /1.0/instances/{name}`: replace the writable fields (async, as LXD).
pub async fn put(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    check_etag(&d, &name, &headers)?;
    let bad = |e: serde_json::Error| DomainError::BadRequest(format!("invalid request body: {e}"));
    let put: silo_api::InstancePut = super::lenient::from_slice(&body).map_err(bad)?;
    if let Some(snap) = Some(put.restore.as_str()).filter(|s| !s.is_empty()) {
        // lxc sends "<instance>/<snapshot>".
        let snap = match snap.split_once('/') {
            Some((inst, s)) if inst == name => s,
            Some(_) => {
                return Err(DomainError::BadRequest(format!(
                    "snapshot {snap:?} is not one of instance {name:?}'s"
                )))
            }
            None => snap,
        };
        return super::snapshots::restore(&d, name.clone(), snap.to_string()).await;
    }
    let w: Writable = super::lenient::from_slice(&body).map_err(bad)?;
    // Validate now so a bad request is a 400, not a failed operation.
    let i = instances::apply_dry(&d.db, &name, w.clone(), false)?;
    crate::service::devices::check(&d, &i.devices).await?;
    let dd = d.clone();
    let op = d.ops.start(
        "task",
        "Updating instance",
        resources(&i.name),
        false,
        move |_ctx| async move {
            let before = instances::get(&dd.db, &name)?;
            instances::apply(&dd.db, &name, w, false)?;
            if let Err(e) =
                crate::service::runtime::apply_live(&Services::clone(&dd), &name, &before).await
            {
                // The running instance could not take the new limits: keep the old record.
                let _ = instances::restore(&dd.db, &before);
                return Err(e);
            }
            dd.events.lifecycle(
                "instance-updated",
                &format!("/1.0/instances/{name}"),
                json!({}),
            );
            Ok(Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// `PATCH /1.0/instances/{name}`: merge (sync).
pub async fn patch(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    check_etag(&d, &name, &headers)?;
    let w: Writable = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let before = instances::get(&d.db, &name)?;
    let after = instances::apply_dry(&d.db, &name, w.clone(), true)?;
    crate::service::devices::check(&d, &after.devices).await?;
    instances::apply(&d.db, &name, w, true)?;
    if let Err(e) = crate::service::runtime::apply_live(&Services::clone(&d), &name, &before).await
    {
        // The limits could not be applied to the running instance: keep the old record.
        let _ = instances::restore(&d.db, &before);
        return Err(e);
    }
    d.events.lifecycle(
        "instance-updated",
        &format!("/1.0/instances/{name}"),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `DELETE /1.0/instances/{name}` (async).
pub async fn delete(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    instances::get(&d.db, &name)?;
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Deleting instance",
        resources(&name),
        false,
        move |_ctx| async move { lifecycle::delete(&c, &name).await.map(|()| Value::Null) },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/instances/{name}/state`.
pub async fn state(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    let i = instances::get(&d.db, &name)?;
    let c = Services::clone(&d);
    let Some(info) = crate::service::runtime::run_state(&c, &name).await? else {
        return Ok(sync(render::stopped_state()));
    };
    let s = crate::service::runtime::stats(&c, &name).await?;
    let disk = crate::service::runtime::disk_usage(&c, &i).await;
    Ok(sync(with_status(
        render::running_state(&s, disk),
        info.frozen,
    )))
}

/// The body of `PUT /1.0/instances/{name}/state`.
#[derive(Debug, serde::Deserialize)]
pub struct StateChange {
    action: String,
    #[serde(default = "minus_one")]
    timeout: i64,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    stateful: bool,
}

fn minus_one() -> i64 {
    -1
}

/// `PUT /1.0/instances/{name}/state`: start, stop, restart, freeze, unfreeze.
pub async fn put_state(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    instances::get(&d.db, &name)?;
    let req: StateChange = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if req.stateful {
        return Err(DomainError::BadRequest(
            "stateful start and stop (CRIU) are not supported by silo".into(),
        ));
    }
    let timeout = (req.timeout >= 0).then(|| std::time::Duration::from_secs(req.timeout as u64));
    let c = Services::clone(&d);
    let running = crate::service::runtime::is_running(&c, &name).await?;
    let description = match req.action.as_str() {
        "start" if running => {
            return Err(DomainError::BadRequest(format!(
                "instance {name:?} is already running"
            )))
        }
        "stop" | "restart" if !running => {
            return Err(DomainError::BadRequest(format!(
                "instance {name:?} is already stopped"
            )))
        }
        "start" => "Starting instance",
        "stop" => "Stopping instance",
        "restart" => "Restarting instance",
        "freeze" => "Freezing instance",
        "unfreeze" => "Unfreezing instance",
        other => {
            return Err(DomainError::BadRequest(format!(
                "unknown action {other:?}: expected start, stop, restart, freeze or unfreeze"
            )))
        }
    };
    let action = req.action.clone();
    let force = req.force;
    let op = d.ops.start(
        "task",
        description,
        resources(&name),
        false,
        move |_ctx| async move {
            state_action(&c, &name, &action, force, timeout)
                .await
                .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// One checked state change of one instance.
async fn state_action(
    c: &Services,
    name: &str,
    action: &str,
    force: bool,
    timeout: Option<std::time::Duration>,
) -> Result<(), DomainError> {
    match action {
        "start" => crate::service::runtime::start(c, name).await.map(|_| ()),
        "stop" => crate::service::runtime::stop(c, name, force, timeout)
            .await
            .map(|_| ()),
        "freeze" => crate::service::runtime::set_frozen(c, name, true).await,
        "unfreeze" => crate::service::runtime::set_frozen(c, name, false).await,
        _ => crate::service::runtime::restart(c, name, force, timeout).await,
    }
}

/// The body of `PUT /1.0/instances`.
#[derive(Debug, serde::Deserialize)]
pub struct BulkStateChange {
    #[serde(default, deserialize_with = "crate::model::null_default")]
    state: Option<StateChange>,
}

/// `PUT /1.0/instances`: one state change for every instance it changes (`lxc start --all`,
/// `lxc pause --all`), in one operation, side by side; failures are reported together, as
/// LXD's `instance_bulk_state_change` does.
pub async fn put_all(State(d): State<Arc<Services>>, body: axum::body::Bytes) -> ApiResult {
    let req: BulkStateChange = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let Some(req) = req.state else {
        return Err(DomainError::BadRequest("no state given".into()));
    };
    if req.stateful {
        return Err(DomainError::BadRequest(
            "stateful start and stop (CRIU) are not supported by silo".into(),
        ));
    }
    let action = req.action.clone();
    let description = match action.as_str() {
        "start" => "Starting instances",
        "stop" => "Stopping instances",
        "restart" => "Restarting instances",
        "freeze" => "Freezing instances",
        "unfreeze" => "Unfreezing instances",
        other => {
            return Err(DomainError::BadRequest(format!(
                "unknown action {other:?}: expected start, stop, restart, freeze or unfreeze"
            )))
        }
    };
    let timeout = (req.timeout >= 0).then(|| std::time::Duration::from_secs(req.timeout as u64));
    let c = Services::clone(&d);
    let running = crate::service::runtime::running(&c).await?;
    // As LXD: only the instances the action changes.
    let names: Vec<String> = instances::list_records(&d.db)?
        .into_iter()
        .map(|i| i.name)
        .filter(|n| match (action.as_str(), running.get(n)) {
            ("start", None) => true,
            ("stop" | "restart", Some(_)) => true,
            ("freeze", Some(r)) => !r.frozen,
            ("unfreeze", Some(r)) => r.frozen,
            _ => false,
        })
        .collect();
    let mut res = BTreeMap::new();
    res.insert(
        "instances".to_string(),
        names
            .iter()
            .map(|n| format!("/1.0/instances/{n}"))
            .collect::<Vec<_>>(),
    );
    let force = req.force;
    let op = d
        .ops
        .start("task", description, res, false, move |_ctx| async move {
            let results = futures::future::join_all(names.iter().map(|n| {
                let c = &c;
                let action = &action;
                async move { (n, state_action(c, n, action, force, timeout).await) }
            }))
            .await;
            let failed: Vec<String> = results
                .into_iter()
                .filter_map(|(n, r)| r.err().map(|e| format!(" - Instance: {n}: {e}")))
                .collect();
            if failed.is_empty() {
                Ok(Value::Null)
            } else {
                Err(DomainError::BadRequest(format!(
                    "The following instances failed to update state:\n{}",
                    failed.join("\n")
                )))
            }
        });
    Ok(async_op(&op))
}

fn websocket_resources(name: &str) -> BTreeMap<String, Vec<String>> {
    let mut r = resources(name);
    r.insert("containers".into(), vec![format!("/1.0/containers/{name}")]);
    r
}

/// `POST /1.0/instances/{name}/exec`.
pub async fn exec(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    instances::get(&d.db, &name)?;
    let req: crate::service::exec::ExecRequest = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if req.command.is_empty() {
        return Err(DomainError::BadRequest("no command given".into()));
    }
    if req.record_output && (req.wait_for_websocket || req.interactive) {
        return Err(DomainError::BadRequest(
            "record-output cannot be combined with wait-for-websocket or interactive".into(),
        ));
    }
    if req.user >= 65536 || req.group >= 65536 {
        return Err(DomainError::BadRequest(format!(
            "user {} / group {} is not mapped in the instance (ids 0 to 65535 are)",
            req.user, req.group
        )));
    }
    let c = Services::clone(&d);
    match crate::service::runtime::run_state(&c, &name).await? {
        None => {
            return Err(DomainError::BadRequest(format!(
                "instance {name:?} is not running"
            )))
        }
        // As LXD: a command would hang frozen as it joins the instance's cgroup.
        Some(r) if r.frozen => {
            return Err(DomainError::BadRequest(format!(
                "instance {name:?} is frozen"
            )))
        }
        Some(_) => {}
    }
    let id = crate::service::operations::Operations::new_id();
    let env: serde_json::Map<String, Value> = crate::service::exec::environment(&req)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let mut md = json!({
        "command": req.command,
        "environment": env,
        "interactive": req.interactive,
    });
    let (class, streams) = if req.wait_for_websocket {
        let names: &[&str] = if req.interactive {
            &["0", "control"]
        } else {
            &["0", "1", "2", "control"]
        };
        let s = crate::service::exec::Streams::new(&d.sockets, &id, names);
        md["fds"] = json!(s.secrets);
        ("websocket", Some(s))
    } else {
        ("task", None)
    };
    let events = d.events.clone();
    let md0 = md.clone();
    let cmd = req.command.clone();
    let op_id = id.clone();
    let op = d.ops.start_full(
        id,
        class,
        "Executing command",
        websocket_resources(&name),
        md,
        false,
        move |_ctx| async move {
            events.lifecycle(
                "instance-exec",
                &format!("/1.0/instances/{name}"),
                json!({"command": cmd}),
            );
            crate::service::exec::run(c, name, op_id, req, streams, md0).await
        },
    );
    Ok(async_op(&op))
}

/// `POST /1.0/instances/{name}/console`.
pub async fn console(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    instances::get(&d.db, &name)?;
    let req: silo_api::InstanceConsolePost = if body.is_empty() {
        Default::default()
    } else {
        super::lenient::from_slice(&body)
            .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?
    };
    let t = req.kind.as_str();
    if !t.is_empty() && t != "console" {
        return Err(DomainError::BadRequest(format!(
            "console type {t:?} is not supported (containers have a text console only)"
        )));
    }
    let c = Services::clone(&d);
    if !crate::service::runtime::is_running(&c, &name).await? {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is not running"
        )));
    }
    let id = crate::service::operations::Operations::new_id();
    let s = crate::service::exec::Streams::new(&d.sockets, &id, &["0", "control"]);
    let md = json!({"fds": s.secrets});
    let op = d.ops.start_full(
        id,
        "websocket",
        "Showing console",
        websocket_resources(&name),
        md,
        false,
        move |_ctx| async move { crate::service::exec::console(c, name, s).await },
    );
    Ok(async_op(&op))
}

/// `GET /1.0/instances/{name}/console`: the console log.
pub async fn console_log(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    let log = crate::service::exec::console_log(&d, &name).await?;
    Ok(axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        log,
    )))
}

/// `DELETE /1.0/instances/{name}/console`: empties the console log.
pub async fn console_log_clear(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
) -> ApiResult {
    crate::service::exec::console_log_clear(&d, &name).await?;
    Ok(sync(Value::Null))
}

/// `GET /1.0/instances/{name}/logs`: the recorded exec outputs.
pub async fn logs(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    instances::get(&d.db, &name)?;
    let dir = crate::service::exec::output_dir(&d.state_dir, &name);
    // lxc.log is where LXD keeps its container log; silo's is the console log.
    let mut out = vec![format!("/1.0/instances/{name}/logs/lxc.log")];
    if let Ok(mut rd) = tokio::fs::read_dir(&dir).await {
        while let Ok(Some(e)) = rd.next_entry().await {
            out.push(format!(
                "/1.0/instances/{name}/logs/{}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    Ok(sync(out))
}

/// `GET /1.0/instances/{name}/logs/{file}` and `/logs/exec-output/{file}`.
pub async fn log_file(
    State(d): State<Arc<Services>>,
    Path((name, file)): Path<(String, String)>,
) -> ApiResult {
    instances::get(&d.db, &name)?;
    if file == "lxc.log" {
        return console_log(State(d), Path(name)).await;
    }
    if !file.starts_with("exec_")
        || file.contains('/')
        || !(file.ends_with(".stdout") || file.ends_with(".stderr"))
    {
        return Err(DomainError::NotFound(format!(
            "log file {file:?} not found"
        )));
    }
    let p = crate::service::exec::output_dir(&d.state_dir, &name).join(&file);
    let data = tokio::fs::read(&p)
        .await
        .map_err(|_| DomainError::NotFound(format!("log file {file:?} not found")))?;
    Ok(axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        data,
    )))
}

/// `DELETE /1.0/instances/{name}/logs/{file}`.
pub async fn log_delete(
    State(d): State<Arc<Services>>,
    Path((name, file)): Path<(String, String)>,
) -> ApiResult {
    instances::get(&d.db, &name)?;
    if !file.starts_with("exec_") || file.contains('/') {
        return Err(DomainError::NotFound(format!(
            "log file {file:?} not found"
        )));
    }
    let p = crate::service::exec::output_dir(&d.state_dir, &name).join(&file);
    tokio::fs::remove_file(&p)
        .await
        .map_err(|_| DomainError::NotFound(format!("log file {file:?} not found")))?;
    Ok(sync(Value::Null))
}

/// `?target=MEMBER`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TargetQuery {
    #[serde(default)]
    target: Option<String>,
}

/// `POST /1.0/instances/{name}`: rename a stopped instance (`silo move c1 c2`), with its
/// snapshots (async); with `migration: true`, send it to another host.
pub async fn rename(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(tq): Query<TargetQuery>,
    body: axum::body::Bytes,
) -> ApiResult {
    let p: silo_api::InstancePost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    // `lxc move c1 --target m2` in a cluster: this member (the instance's) moves it there.
    if let Some(to) = tq.target.filter(|t| !t.is_empty()) {
        if d.cluster.joined().is_some() && p.migration {
            if !p.name.is_empty() && p.name != name {
                return Err(DomainError::BadRequest(
                    "an instance keeps its name when it moves to another member: rename it before or after".into(),
                ));
            }
            let c = Services::clone(&d);
            let op = d.ops.start(
                "task",
                "Moving instance to another member",
                resources(&name),
                false,
                move |_ctx| async move {
                    crate::service::member_moves::move_to(&c, &name, &to)
                        .await
                        .map(|()| Value::Null)
                },
            );
            return Ok(async_op(&op));
        }
    }
    if p.migration && !p.pool.is_empty() && p.target.is_none() {
        let to = if p.name.is_empty() {
            name.clone()
        } else {
            p.name.clone()
        };
        let instance_only = p.instance_only || p.container_only;
        let c = Services::clone(&d);
        let op = d.ops.start(
            "task",
            "Moving instance to another pool",
            resources(&name),
            false,
            move |_ctx| async move {
                lifecycle::move_to_pool(&c, &name, &to, &p.pool, instance_only)
                    .await
                    .map(|()| Value::Null)
            },
        );
        return Ok(async_op(&op));
    }
    if p.migration {
        if !p.pool.is_empty() || !p.project.is_empty() {
            return Err(DomainError::BadRequest(
                "moving an instance to another project is not supported (silo has no projects)"
                    .into(),
            ));
        }
        let req = crate::service::migration::source::SourceRequest {
            instance: name,
            snapshot: None,
            live: p.live,
            instance_only: p.instance_only || p.container_only,
            target: p.target,
        };
        let op = crate::service::migration::source::start(&d, req).await?;
        return Ok(async_op(&op));
    }
    lifecycle::check_rename(&d, &name, &p.name)?;
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Renaming instance",
        resources(&name),
        false,
        move |_ctx| async move {
            lifecycle::rename(&c, &name, &p.name)
                .await
                .map(|()| Value::Null)
        },
    );
    Ok(async_op(&op))
}
