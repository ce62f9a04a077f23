//! `silo copy` and `silo move` between two servers, with LXD 5.0's migration protocol as the
//! stock `lxc` client drives it (client/lxd_instances.go `CopyInstance`, lxc/copy.go,
//! lxc/move.go):
//!
//! - **pull** (default): the source starts a `websocket` operation whose metadata holds the
//!   secrets; the target is asked to create the instance from `<source>/1.0/operations/<id>`
//!   and dials the source itself.
//! - **push**: the target starts the `websocket` operation; the source is asked to dial it.
//! - **relay**: both start `websocket` operations and this client dials all four websockets
//!   and joins them, message by message.
//!
//! The target's request is built here from the source's writable configuration
//! ([`target_request`]); neither daemon trusts the other's view of it.

use std::collections::BTreeMap;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use silo_api::{
    paths, InstancePost, InstancePostTarget, InstanceSnapshotPost, InstanceSource, InstancesPost,
    Server, StringMap,
};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Client, ClientError, Transport, WebSocket};
use crate::commands::{wait_with_progress, CmdError};
use crate::remotes::Config;
use crate::util::fail;

/// Who dials whom (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// The target dials the source (the source must listen on the network).
    #[default]
    Pull,
    /// The source dials the target (the target must listen on the network).
    Push,
    /// This client dials both and relays the data (both must listen on the network).
    Relay,
}

/// What the instance (or snapshot) being copied looks like on the source: the writable part
/// lxc copies, and whether it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceEntry {
    /// e.g. "x86_64".
    pub architecture: String,
    /// Its own configuration (not the expanded one).
    pub config: StringMap,
    /// Its own devices.
    pub devices: silo_api::DeviceMap,
    /// Its profiles.
    pub profiles: Vec<String>,
    /// Ephemeral.
    pub ephemeral: bool,
    /// Description.
    pub description: String,
    /// "container" (instances only; lxc leaves it empty for a snapshot of an old server).
    pub kind: String,
    /// Running now (a snapshot never is).
    pub running: bool,
    /// A stateful snapshot (silo makes none).
    pub stateful: bool,
    /// A snapshot, copied into an instance of its own.
    pub snapshot: bool,
}

impl SourceEntry {
    /// From `GET /1.0/instances/<name>`.
    pub fn from_instance(i: &silo_api::Instance) -> SourceEntry {
        SourceEntry {
            architecture: i.architecture.clone(),
            config: i.config.clone(),
            devices: i.devices.clone(),
            profiles: i.profiles.clone(),
            ephemeral: i.ephemeral,
            description: i.description.clone(),
            kind: i.kind.clone(),
            // LXD's api.Running.
            running: i.status_code == 103,
            stateful: i.stateful,
            snapshot: false,
        }
    }

    /// From `GET /1.0/instances/<name>/snapshots/<snap>` (its parent gives the type).
    pub fn from_snapshot(s: &silo_api::InstanceSnapshot, kind: &str) -> SourceEntry {
        SourceEntry {
            architecture: s.architecture.clone(),
            config: s.config.clone(),
            devices: s.devices.clone(),
            profiles: s.profiles.clone(),
            ephemeral: s.ephemeral,
            description: s.description.clone(),
            kind: kind.to_string(),
            running: false,
            stateful: s.stateful,
            snapshot: true,
        }
    }
}

/// The options of a copy or move, as lxc's `copyInstance` takes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyOptions {
    /// The new instance's name ("": the server picks one).
    pub name: String,
    /// `-c KEY=VALUE`, applied over the source's configuration.
    pub config: StringMap,
    /// `-p` (replaces the source's profiles when given).
    pub profiles: Option<Vec<String>>,
    /// `--no-profiles`.
    pub no_profiles: bool,
    /// `-s POOL`: the root disk's pool on the target.
    pub storage: Option<String>,
    /// `Some` overrides the source's ephemeral flag (copy), `None` keeps it (move).
    pub ephemeral: Option<bool>,
    /// Keep the volatile keys (move, refresh).
    pub keep_volatile: bool,
    /// Live (with its state): lxc's default, unless `--stateless` or `--refresh`.
    pub stateful: bool,
    /// `--instance-only`.
    pub instance_only: bool,
    /// `--refresh`.
    pub refresh: bool,
    /// `--mode`.
    pub mode: Mode,
}

/// The key of the root disk in `devices` (type disk, path `/`, no source), as LXD's
/// `GetRootDiskDevice` finds it; more than one is an error.
fn root_disk_key(devices: &silo_api::DeviceMap) -> Result<Option<String>, CmdError> {
    let mut found = None;
    for (k, d) in devices {
        let is_root = d.get("type").map(String::as_str) == Some("disk")
            && d.get("path").map(String::as_str) == Some("/")
            && d.get("source").is_none_or(String::is_empty);
        if is_root {
            if found.is_some() {
                return fail("More than one root device found");
            }
            found = Some(k.clone());
        }
    }
    Ok(found)
}

/// `devices` with the root disk on `pool` (`-s`): the root disk's pool set, or a root disk
/// added when the devices have none (it came from a profile), as lxc does.
pub fn with_root_pool(
    mut devices: silo_api::DeviceMap,
    pool: &str,
) -> Result<silo_api::DeviceMap, CmdError> {
    match root_disk_key(&devices)? {
        Some(k) => {
            if let Some(d) = devices.get_mut(&k) {
                d.insert("pool".into(), pool.to_string());
            }
        }
        None => {
            let root: StringMap = [("type", "disk"), ("path", "/"), ("pool", pool)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            devices.insert("root".into(), root);
        }
    }
    Ok(devices)
}

/// Whether a key of the source's configuration goes to a remote copy that drops the
/// volatile ones (LXD's `InstanceIncludeWhenCopying(key, remoteCopy=true)`).
fn include_when_copying(key: &str) -> bool {
    key == "volatile.base_image" || !key.starts_with("volatile.")
}

/// The target's `POST /1.0/instances` body, before the mode's `source` fields: the source's
/// writable part with the overrides applied as lxc applies them.
pub fn target_request(entry: &SourceEntry, o: &CopyOptions) -> Result<InstancesPost, CmdError> {
    let mut config = entry.config.clone();
    for (k, v) in &o.config {
        config.insert(k.clone(), v.clone());
    }
    if !o.keep_volatile {
        config.retain(|k, _| include_when_copying(k));
    }
    // A copy never inherits the source's power state.
    config.remove("volatile.last_state.power");
    let profiles = match (&o.profiles, o.no_profiles) {
        (Some(p), _) => p.clone(),
        (None, true) => Vec::new(),
        (None, false) => entry.profiles.clone(),
    };
    let devices = match &o.storage {
        Some(pool) => with_root_pool(entry.devices.clone(), pool)?,
        None => entry.devices.clone(),
    };
    // lxc: an instance goes live when it runs, a snapshot when it holds a state.
    let live = o.stateful
        && if entry.snapshot {
            entry.stateful
        } else {
            entry.running
        };
    Ok(InstancesPost {
        name: o.name.clone(),
        kind: entry.kind.clone(),
        profiles: Some(profiles),
        config,
        devices,
        ephemeral: o.ephemeral.unwrap_or(entry.ephemeral),
        description: entry.description.clone(),
        architecture: entry.architecture.clone(),
        stateful: entry.stateful && o.stateful,
        source: InstanceSource {
            kind: "migration".into(),
            base_image: entry
                .config
                .get("volatile.base_image")
                .cloned()
                .unwrap_or_default(),
            live,
            instance_only: o.instance_only,
            container_only: o.instance_only,
            refresh: o.refresh,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// The URLs a peer may reach `server` at (LXD's `GetConnectionInfo().Addresses`): the
/// remote's own HTTPS URL first, then each address the server says it listens on.
pub fn server_urls(transport: &Transport, server: &Server) -> Vec<String> {
    let mut urls = Vec::new();
    if let Transport::Https(t) = transport {
        urls.push(t.url());
    }
    for a in &server.environment.addresses {
        if a.starts_with(':') {
            continue;
        }
        let u = format!("https://{a}");
        if !urls.contains(&u) {
            urls.push(u);
        }
    }
    urls
}

/// The string secrets in a `websocket` operation's metadata (lxc reads every value as a
/// string: anything else is a broken server).
fn secrets_of(op: &silo_api::Operation) -> Result<StringMap, CmdError> {
    let Some(m) = op.metadata.as_object() else {
        return fail("the migration operation carries no websocket secrets");
    };
    m.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_string())),
            None => fail(format!(
                "the migration operation's metadata key {k:?} is not a secret"
            )),
        })
        .collect()
}

/// Sends a request that must start an operation and returns that operation as the server
/// described it in its answer (secrets and all).
async fn start_op(
    client: &Client,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<silo_api::Operation, CmdError> {
    let body = serde_json::to_value(body).map_err(|e| CmdError::Output(e.to_string()))?;
    let a = client.request("POST", path, Some(&body), &[]).await?;
    let meta = a.metadata()?;
    let id = a.operation_id().ok_or_else(|| {
        CmdError::Fail(format!("the server answered {path} without an operation"))
    })?;
    let mut op: silo_api::Operation = silo_api::lenient::from_value(meta)
        .map_err(|e| ClientError::Protocol(format!("{path}: {e}")))?;
    op.id = id;
    Ok(op)
}

/// Cancels an operation that is no longer wanted; its own failure is secondary.
async fn cancel(client: &Client, id: &str) {
    if let Err(e) = client.query("DELETE", &paths::operation(id), None).await {
        tracing::debug!(operation = id, error = %e, "cancelling a migration operation");
    }
}

/// One URL's failure, for [`remote_error`].
struct UrlError {
    url: String,
    err: String,
}

/// LXD's `remoteOperationError`: one error as it is, several different ones listed by URL.
fn remote_error(what: &str, errors: &[UrlError]) -> CmdError {
    let first = errors
        .first()
        .map(|e| e.err.as_str())
        .unwrap_or("no address to try");
    if errors.iter().all(|e| e.err == first) {
        return CmdError::Fail(format!("{what}: {first}"));
    }
    let list: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.url, e.err))
        .collect();
    CmdError::Fail(format!("{what}:\n - {}", list.join("\n - ")))
}

/// Whether an operation's error says the peer could not be reached at that URL (worth the
/// next URL), rather than a failed transfer.
fn is_connection_error(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    [
        "connection refused",
        "did not answer in time",
        "no route to host",
        "network is unreachable",
        "timed out",
    ]
    .iter()
    .any(|m| e.contains(m))
}

/// The copy source, as parsed from `[remote:]NAME[/SNAP]`.
#[derive(Debug, Clone)]
pub struct Side {
    /// The remote.
    pub remote: String,
    /// The instance.
    pub instance: String,
    /// The snapshot, when copying one.
    pub snapshot: Option<String>,
}

/// Copies `src` to remote `dst_remote` (instance `o.name`, or a name the server picks).
/// Returns the new instance's name.
pub async fn copy(
    conf: &Config,
    src: &Side,
    dst_remote: &str,
    o: &CopyOptions,
    move_source: bool,
) -> Result<String, CmdError> {
    if o.refresh && o.no_profiles {
        return fail("--no-profiles cannot be used with --refresh");
    }
    if src.snapshot.is_some() && o.instance_only {
        return fail("--instance-only can't be passed when the source is a snapshot");
    }
    if src.snapshot.is_some() && o.refresh {
        return fail("--refresh can only be used with instances");
    }
    let source = conf.instance_client(&src.remote)?;
    let target = conf.instance_client(dst_remote)?;
    let src_info = source.server().await?;
    let dst_info = target.server().await?;
    check_extensions(&src_info, &dst_info, o)?;

    let instance = source.instance(&src.instance).await?;
    let entry = match &src.snapshot {
        Some(s) => {
            SourceEntry::from_snapshot(&source.snapshot(&src.instance, s).await?, &instance.kind)
        }
        None => SourceEntry::from_instance(&instance),
    };
    let mut req = target_request(&entry, o)?;
    // lxc starts the copy itself only after a stateless move of a running instance; a
    // stateful one would come up running on its own.
    let start_after = move_source && entry.running && !o.stateful;

    let live = req.source.live;
    let src_path = match &src.snapshot {
        Some(s) => paths::snapshot(&src.instance, s),
        None => paths::instance(&src.instance),
    };
    let src_body = |target: Option<InstancePostTarget>| -> Value {
        let v = match &src.snapshot {
            Some(_) => serde_json::to_value(InstanceSnapshotPost {
                name: o.name.clone(),
                migration: true,
                live,
                target,
            }),
            None => serde_json::to_value(InstancePost {
                migration: true,
                live,
                instance_only: o.instance_only,
                container_only: o.instance_only,
                target,
                ..Default::default()
            }),
        };
        v.unwrap_or(Value::Null)
    };

    let done = match o.mode {
        Mode::Pull => {
            pull(
                &source,
                &src_info,
                &src_path,
                &src_body(None),
                &target,
                &mut req,
            )
            .await?
        }
        Mode::Push => push(&source, &src_path, &src_body, &target, &dst_info, &mut req).await?,
        Mode::Relay => relay(&source, &src_path, &src_body(None), &target, &mut req).await?,
    };
    let name = if o.name.is_empty() {
        done.resources
            .get("instances")
            .and_then(|i| i.first())
            .and_then(|u| u.rsplit('/').next())
            .map(paths::unescape)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| CmdError::Fail("Failed to get the new instance name".into()))?
    } else {
        o.name.clone()
    };
    if o.refresh {
        // As lxc: the source's settings over the refreshed copy, keeping the copy's own id
        // range.
        let (cur, etag) = target.instance_etag(&name).await.map_err(|e| {
            CmdError::Fail(format!("Failed to refresh target instance '{name}': {e}"))
        })?;
        let mut config = req.config.clone();
        match cur.config.get("volatile.idmap.next") {
            Some(v) => config.insert("volatile.idmap.next".into(), v.clone()),
            None => config.remove("volatile.idmap.next"),
        };
        let put = silo_api::InstancePut {
            architecture: req.architecture.clone(),
            config,
            devices: req.devices.clone(),
            ephemeral: req.ephemeral,
            profiles: req.profiles.clone().unwrap_or_default(),
            description: req.description.clone(),
            ..Default::default()
        };
        target.update_instance(&name, &put, etag).await?;
    }
    if o.name.is_empty() {
        crate::util::outln(&format!("Instance name is: {name}"))?;
    }
    if start_after {
        let start = silo_api::InstanceStatePut {
            action: "start".into(),
            ..Default::default()
        };
        target.set_instance_state(&name, &start).await?;
    }
    Ok(name)
}

/// lxc's checks of the API extensions both servers need for what is asked.
fn check_extensions(src: &Server, dst: &Server, o: &CopyOptions) -> Result<(), CmdError> {
    let has = |s: &Server, e: &str| s.api_extensions.iter().any(|x| x == e);
    let both = |e: &str| -> Result<(), CmdError> {
        if !has(dst, e) {
            return fail(format!(
                "The target server is missing the required \"{e}\" API extension"
            ));
        }
        if !has(src, e) {
            return fail(format!(
                "The source server is missing the required \"{e}\" API extension"
            ));
        }
        Ok(())
    };
    if o.instance_only {
        both("container_only_migration")?;
    }
    if matches!(o.mode, Mode::Push | Mode::Relay) {
        both("container_push")?;
    }
    if o.mode == Mode::Push && !has(src, "container_push_target") {
        return fail(
            "The source server is missing the required \"container_push_target\" API extension",
        );
    }
    if o.refresh {
        both("container_incremental_copy")?;
    }
    Ok(())
}

/// The operation's progress while it runs, then its end.
async fn wait(client: &Client, id: &str) -> Result<silo_api::Operation, CmdError> {
    wait_with_progress(client, id, "Transferring instance").await
}

/// Pull: the source offers, the target dials it. Tries each of the source's URLs as lxc does.
async fn pull(
    source: &Client,
    src_info: &Server,
    src_path: &str,
    src_body: &Value,
    target: &Client,
    req: &mut InstancesPost,
) -> Result<silo_api::Operation, CmdError> {
    let urls = server_urls(source.transport(), src_info);
    if urls.is_empty() {
        return fail("The source server isn't listening on the network");
    }
    let src_op = start_op(source, src_path, src_body).await?;
    req.source.mode = "pull".into();
    req.source.secrets = secrets_of(&src_op)?;
    req.source.certificate = src_info.environment.certificate.clone();
    let mut errors = Vec::new();
    let mut done = None;
    for url in &urls {
        req.source.operation = format!("{url}{}", paths::operation(&src_op.id));
        let tgt_op = match start_op(target, &paths::instances(), req).await {
            Ok(op) => op,
            Err(e) => {
                errors.push(UrlError {
                    url: url.clone(),
                    err: e.to_string(),
                });
                continue;
            }
        };
        match wait(target, &tgt_op.id).await {
            Ok(op) => {
                done = Some(op);
                break;
            }
            Err(e) => {
                let err = e.to_string();
                let retry = is_connection_error(&err);
                errors.push(UrlError {
                    url: url.clone(),
                    err,
                });
                if !retry {
                    break;
                }
            }
        }
    }
    let Some(done) = done else {
        cancel(source, &src_op.id).await;
        return Err(remote_error("Failed instance creation", &errors));
    };
    // The source's operation ends once the target confirmed: a move deletes it only then.
    source.operation_wait(&src_op.id).await?;
    Ok(done)
}

/// Push: the target waits, the source dials it. Tries each of the target's URLs.
async fn push(
    source: &Client,
    src_path: &str,
    src_body: &dyn Fn(Option<InstancePostTarget>) -> Value,
    target: &Client,
    dst_info: &Server,
    req: &mut InstancesPost,
) -> Result<silo_api::Operation, CmdError> {
    let urls = server_urls(target.transport(), dst_info);
    if urls.is_empty() {
        return fail("The target server isn't listening on the network");
    }
    req.source.mode = "push".into();
    let tgt_op = start_op(target, &paths::instances(), req).await?;
    let secrets = match secrets_of(&tgt_op) {
        Ok(s) => s,
        Err(e) => {
            cancel(target, &tgt_op.id).await;
            return Err(e);
        }
    };
    let mut errors = Vec::new();
    let mut ok = false;
    for url in &urls {
        let t = InstancePostTarget {
            certificate: dst_info.environment.certificate.clone(),
            operation: format!("{url}{}", paths::operation(&tgt_op.id)),
            websockets: secrets.clone(),
        };
        let src_op = match start_op(source, src_path, &src_body(Some(t))).await {
            Ok(op) => op,
            Err(e) => {
                errors.push(UrlError {
                    url: url.clone(),
                    err: e.to_string(),
                });
                continue;
            }
        };
        match wait(source, &src_op.id).await {
            Ok(_) => {
                ok = true;
                break;
            }
            Err(e) => {
                let err = e.to_string();
                let retry = is_connection_error(&err);
                errors.push(UrlError {
                    url: url.clone(),
                    err,
                });
                if !retry {
                    break;
                }
            }
        }
    }
    if !ok {
        // The target would give up on its own after its connect timeout; say so now.
        cancel(target, &tgt_op.id).await;
        return Err(remote_error("Failed instance migration", &errors));
    }
    Ok(target.operation_wait(&tgt_op.id).await?)
}

/// Relay: both wait for websockets; this client dials the four and joins them.
async fn relay(
    source: &Client,
    src_path: &str,
    src_body: &Value,
    target: &Client,
    req: &mut InstancesPost,
) -> Result<silo_api::Operation, CmdError> {
    let src_op = start_op(source, src_path, src_body).await?;
    req.source.mode = "push".into();
    let tgt_op = match start_op(target, &paths::instances(), req).await {
        Ok(op) => op,
        Err(e) => {
            cancel(source, &src_op.id).await;
            return Err(e);
        }
    };
    let joined = async {
        let src_secrets = secrets_of(&src_op)?;
        let tgt_secrets = secrets_of(&tgt_op)?;
        join_sockets(
            source,
            &src_op.id,
            &src_secrets,
            target,
            &tgt_op.id,
            &tgt_secrets,
        )
        .await
    }
    .await;
    let relays = match joined {
        Ok(r) => r,
        Err(e) => {
            cancel(source, &src_op.id).await;
            cancel(target, &tgt_op.id).await;
            return Err(e);
        }
    };
    let r = wait(target, &tgt_op.id).await;
    let r = match r {
        Ok(op) => source
            .operation_wait(&src_op.id)
            .await
            .map(|_| op)
            .map_err(CmdError::from),
        Err(e) => {
            cancel(source, &src_op.id).await;
            Err(e)
        }
    };
    for h in relays {
        h.abort();
    }
    r
}

/// Dials `control` and then every other socket on both sides (lxc's `proxyMigration`) and
/// starts one relay per pair.
async fn join_sockets(
    source: &Client,
    src_id: &str,
    src_secrets: &StringMap,
    target: &Client,
    tgt_id: &str,
    tgt_secrets: &StringMap,
) -> Result<Vec<tokio::task::JoinHandle<()>>, CmdError> {
    for n in tgt_secrets.keys() {
        if !src_secrets.contains_key(n) {
            return fail(format!(
                "Migration target expects the \"{n}\" socket but source isn't providing it"
            ));
        }
    }
    if tgt_secrets.get("control").is_none_or(String::is_empty) {
        return fail("Migration target didn't setup the required \"control\" socket");
    }
    let mut names: Vec<&String> = vec![];
    if let Some((k, _)) = src_secrets.get_key_value("control") {
        names.push(k);
    }
    names.extend(src_secrets.keys().filter(|k| *k != "control"));
    let mut relays = Vec::new();
    for n in names {
        let Some(tgt_secret) = tgt_secrets.get(n) else {
            // A socket only the source offers is not used by this target.
            continue;
        };
        let a = source
            .websocket(&paths::operation_websocket(src_id, &src_secrets[n]))
            .await?;
        let b = target
            .websocket(&paths::operation_websocket(tgt_id, tgt_secret))
            .await?;
        relays.push(tokio::spawn(join(a, b, n.clone())));
    }
    Ok(relays)
}

/// Copies messages both ways, each with its type (binary data, and the empty text message
/// that ends one stream of the fs socket), until either side closes; then closes both.
pub async fn join(a: WebSocket, b: WebSocket, name: String) {
    let (mut a_tx, mut a_rx) = a.split();
    let (mut b_tx, mut b_rx) = b.split();
    tokio::select! {
        () = forward(&mut a_rx, &mut b_tx, &name) => {}
        () = forward(&mut b_rx, &mut a_tx, &name) => {}
    }
    let _ = a_tx.close().await;
    let _ = b_tx.close().await;
}

/// One direction of [`join`]: every data message as it came, until a close or an error.
async fn forward(
    rx: &mut futures::stream::SplitStream<WebSocket>,
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    name: &str,
) {
    while let Some(m) = rx.next().await {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(socket = name, error = %e, "relayed websocket ended");
                return;
            }
        };
        match m {
            Message::Text(_) | Message::Binary(_) => {
                if let Err(e) = tx.send(m).await {
                    tracing::debug!(socket = name, error = %e, "relaying a message");
                    return;
                }
            }
            Message::Close(_) => return,
            // Each connection answers its own pings.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// `source` and `target` when they are on different remotes: `(remote, instance, snapshot)`
/// of the source and `(remote, name)` of the target. `None` for a copy on one server.
pub fn crossing(
    conf: &Config,
    source: &str,
    target: Option<&str>,
) -> Result<Option<(Side, String, String)>, CmdError> {
    let Some(target) = target else {
        return Ok(None);
    };
    let (sr, sname) = conf.parse_remote(source)?;
    let (dr, dname) = conf.parse_remote(target)?;
    if sr == dr {
        return Ok(None);
    }
    if sname.is_empty() {
        return fail("You must specify a source instance name");
    }
    let (instance, snapshot) = match sname.split_once('/') {
        Some((i, s)) => (i.to_string(), Some(s.to_string())),
        None => (sname.to_string(), None),
    };
    // lxc names the copy after its source when only `remote:` is given.
    let name = if dname.is_empty() {
        instance.clone()
    } else {
        dname.to_string()
    };
    Ok(Some((
        Side {
            remote: sr,
            instance,
            snapshot,
        },
        dr,
        name,
    )))
}

/// `silo copy REMOTE:SOURCE OTHER:[NAME]`.
pub async fn copy_cmd(
    conf: &Config,
    a: crate::snapshots::CopyArgs,
    src: Side,
    dst_remote: String,
    name: String,
) -> Result<(), CmdError> {
    let o = CopyOptions {
        name,
        config: overrides(&a.config)?,
        profiles: (!a.profiles.is_empty()).then_some(a.profiles),
        no_profiles: a.no_profiles,
        storage: a.storage,
        ephemeral: Some(a.ephemeral),
        // lxc keeps the volatile keys of a refreshed copy: it is the same instance again.
        keep_volatile: a.refresh,
        stateful: !a.stateless && !a.refresh,
        instance_only: a.instance_only,
        refresh: a.refresh,
        mode: a.mode,
    };
    copy(conf, &src, &dst_remote, &o, false).await.map(drop)
}

/// `silo move REMOTE:SOURCE OTHER:[NAME]`: a copy that keeps the volatile keys, then the
/// source deleted (stopped first if it runs) once the copy succeeded, as lxc does.
pub async fn move_cmd(
    conf: &Config,
    a: crate::snapshots::MoveArgs,
    src: Side,
    dst_remote: String,
    name: String,
) -> Result<(), CmdError> {
    let o = CopyOptions {
        name,
        config: overrides(&a.config)?,
        profiles: (!a.profiles.is_empty()).then_some(a.profiles),
        no_profiles: a.no_profiles,
        storage: a.storage,
        ephemeral: None,
        keep_volatile: true,
        stateful: !a.stateless,
        instance_only: a.instance_only,
        refresh: false,
        mode: a.mode,
    };
    copy(conf, &src, &dst_remote, &o, true).await?;
    let source = conf.instance_client(&src.remote)?;
    let deleted = match &src.snapshot {
        Some(s) => source
            .delete_snapshot(&src.instance, s)
            .await
            .map(drop)
            .map_err(CmdError::from),
        None => {
            let del = crate::instances::DeleteArgs {
                names: vec![src.instance.clone()],
                force: true,
            };
            crate::instances::delete(&source, del).await
        }
    };
    deleted.map_err(|e| {
        CmdError::Fail(format!(
            "Failed to delete original instance after copying it: {e}"
        ))
    })
}

/// `-c KEY=VALUE` arguments as lxc reads them (split at the first `=`, nothing trimmed).
pub fn overrides(config: &[String]) -> Result<StringMap, CmdError> {
    let mut m = BTreeMap::new();
    for c in config {
        let Some((k, v)) = c.split_once('=') else {
            return fail(format!("Bad key=value pair: {c}"));
        };
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> SourceEntry {
        let config: StringMap = [
            ("limits.cpu", "1"),
            ("volatile.base_image", "abc"),
            ("volatile.eth0.hwaddr", "00:16:3e:00:00:01"),
            ("volatile.idmap.next", "[]"),
            ("volatile.last_state.power", "RUNNING"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut devices = silo_api::DeviceMap::new();
        devices.insert(
            "root".into(),
            [("type", "disk"), ("path", "/"), ("pool", "default")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        SourceEntry {
            architecture: "x86_64".into(),
            config,
            devices,
            profiles: vec!["default".into(), "web".into()],
            ephemeral: false,
            description: "d".into(),
            kind: "container".into(),
            running: false,
            stateful: false,
            snapshot: false,
        }
    }

    fn opts() -> CopyOptions {
        CopyOptions {
            name: "c2".into(),
            stateful: true,
            ephemeral: Some(false),
            ..Default::default()
        }
    }

    #[test]
    fn copy_drops_volatile_keys_but_the_base_image() {
        let mut o = opts();
        o.config =
            overrides(&["limits.memory=64MiB".into(), "limits.cpu=2".into()]).expect("overrides");
        let r = target_request(&entry(), &o).expect("request");
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(
            v["config"],
            json!({"limits.cpu": "2", "limits.memory": "64MiB", "volatile.base_image": "abc"})
        );
        assert_eq!(v["architecture"], "x86_64");
        assert_eq!(v["type"], "container");
        assert_eq!(v["name"], "c2");
        assert_eq!(v["profiles"], json!(["default", "web"]));
        assert_eq!(v["source"]["type"], "migration");
        assert_eq!(v["source"]["base-image"], "abc");
        // Stopped: never live, whatever --stateless says.
        assert!(v["source"].get("live").is_none());
        assert!(v["source"].get("container_only").is_none());
    }

    #[test]
    fn move_and_refresh_keep_volatile_keys_but_the_power_state() {
        let mut o = opts();
        o.keep_volatile = true;
        let r = target_request(&entry(), &o).expect("request");
        assert_eq!(
            r.config.get("volatile.eth0.hwaddr").map(String::as_str),
            Some("00:16:3e:00:00:01")
        );
        assert!(r.config.contains_key("volatile.idmap.next"));
        assert!(!r.config.contains_key("volatile.last_state.power"));
    }

    #[test]
    fn profiles_storage_and_ephemeral_overrides() {
        let mut o = opts();
        o.profiles = Some(vec!["other".into()]);
        o.storage = Some("fast".into());
        o.ephemeral = Some(true);
        let r = target_request(&entry(), &o).expect("request");
        assert_eq!(r.profiles, Some(vec!["other".to_string()]));
        assert_eq!(r.devices["root"]["pool"], "fast");
        assert_eq!(r.devices["root"]["path"], "/");
        assert!(r.ephemeral);

        let mut o = opts();
        o.no_profiles = true;
        o.storage = Some("fast".into());
        let mut e = entry();
        e.devices.clear();
        e.ephemeral = true;
        o.ephemeral = None;
        let r = target_request(&e, &o).expect("request");
        // An empty list, not a missing one: the target must not apply "default".
        assert_eq!(
            serde_json::to_value(&r).expect("json")["profiles"],
            json!([])
        );
        assert_eq!(
            serde_json::to_value(&r.devices["root"]).expect("json"),
            json!({"type": "disk", "path": "/", "pool": "fast"})
        );
        // A move keeps the source's ephemeral flag.
        assert!(r.ephemeral);
    }

    #[test]
    fn two_root_disks_are_refused() {
        let mut e = entry();
        let root = e.devices["root"].clone();
        e.devices.insert("root2".into(), root);
        let mut o = opts();
        o.storage = Some("p".into());
        assert!(target_request(&e, &o).is_err());
    }

    #[test]
    fn live_only_for_a_running_source_without_stateless() {
        let mut e = entry();
        e.running = true;
        let r = target_request(&e, &opts()).expect("request");
        assert!(r.source.live);
        let mut o = opts();
        o.stateful = false;
        let r = target_request(&e, &o).expect("request");
        assert!(!r.source.live);
    }

    #[test]
    fn instance_only_sets_the_legacy_field_too() {
        let mut o = opts();
        o.instance_only = true;
        let v = serde_json::to_value(target_request(&entry(), &o).expect("r")).expect("json");
        assert_eq!(v["source"]["instance_only"], true);
        assert_eq!(v["source"]["container_only"], true);
    }

    #[test]
    fn urls_of_a_server() {
        let mut s = Server::default();
        s.environment.addresses = vec![
            "198.18.0.1:8443".into(),
            ":8443".into(),
            "[fd00::1]:8443".into(),
        ];
        let t = Transport::Unix("/x".into());
        assert_eq!(
            server_urls(&t, &s),
            vec!["https://198.18.0.1:8443", "https://[fd00::1]:8443"]
        );
        assert!(server_urls(&t, &Server::default()).is_empty());
    }

    #[test]
    fn secrets_must_be_strings() {
        let op = silo_api::Operation {
            metadata: json!({"control": "a", "fs": "b"}),
            ..Default::default()
        };
        let s = secrets_of(&op).expect("secrets");
        assert_eq!(s["control"], "a");
        assert_eq!(s["fs"], "b");
        let bad = silo_api::Operation {
            metadata: json!({"control": "a", "fs_progress": {"x": 1}}),
            ..Default::default()
        };
        assert!(secrets_of(&bad).is_err());
    }

    /// The two ends of a websocket over a unix socket pair: (client, server).
    async fn ws_pair() -> (WebSocket, WebSocket) {
        use tokio_tungstenite::tungstenite::protocol::Role;
        let (x, y) = tokio::net::UnixStream::pair().expect("socketpair");
        let client = tokio_tungstenite::WebSocketStream::from_raw_socket(
            crate::client::Stream::Unix(x),
            Role::Client,
            None,
        )
        .await;
        let server = tokio_tungstenite::WebSocketStream::from_raw_socket(
            crate::client::Stream::Unix(y),
            Role::Server,
            None,
        )
        .await;
        (client, server)
    }

    #[tokio::test]
    async fn the_relay_keeps_message_types_and_closes_both_sides() {
        // source daemon <-> (relay a) ... (relay b) <-> target daemon
        let (mut source, relay_a) = ws_pair().await;
        let (relay_b, mut target) = ws_pair().await;
        let relay = tokio::spawn(join(relay_a, relay_b, "fs".into()));
        let sent = vec![
            Message::Binary(vec![0u8, 1, 2, 255].into()),
            // The end of one stream of the fs socket: an empty text message.
            Message::Text(String::new().into()),
            Message::Text("{\"StatusCode\":200}".to_string().into()),
        ];
        for m in &sent {
            source.send(m.clone()).await.expect("send");
        }
        for m in &sent {
            let got = target.next().await.expect("a message").expect("ok");
            assert_eq!(&got, m);
        }
        // And the other way.
        target
            .send(Message::Binary(vec![9u8].into()))
            .await
            .expect("send back");
        let got = source.next().await.expect("a message").expect("ok");
        assert_eq!(got, Message::Binary(vec![9u8].into()));
        // One side closing ends the relay and closes the other side.
        source.close(None).await.expect("close");
        tokio::time::timeout(std::time::Duration::from_secs(5), relay)
            .await
            .expect("the relay ends")
            .expect("join");
        let end = tokio::time::timeout(std::time::Duration::from_secs(5), target.next())
            .await
            .expect("the target side ends");
        assert!(
            matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
            "{end:?}"
        );
    }

    #[test]
    fn unreachable_urls_are_worth_the_next_one() {
        assert!(is_connection_error(
            "connecting the control websocket of https://x/1.0/operations/1: IO error: Connection refused (os error 111)"
        ));
        assert!(is_connection_error(
            "the fs websocket of https://x/1.0/operations/1 did not answer in time"
        ));
        assert!(!is_connection_error("starting rsync on c: no space left"));
    }

    #[test]
    fn errors_by_url_as_lxc_prints_them() {
        let one = remote_error(
            "Failed instance creation",
            &[UrlError {
                url: "https://a".into(),
                err: "boom".into(),
            }],
        );
        assert_eq!(one.to_string(), "Failed instance creation: boom");
        let two = remote_error(
            "Failed instance creation",
            &[
                UrlError {
                    url: "https://a".into(),
                    err: "x".into(),
                },
                UrlError {
                    url: "https://b".into(),
                    err: "y".into(),
                },
            ],
        );
        assert_eq!(
            two.to_string(),
            "Failed instance creation:\n - https://a: x\n - https://b: y"
        );
    }
}
