//! Copying and moving instances between hosts with LXD 5.0's migration protocol.
//!
//! The protocol's messages are `silo_api::migration`; the websockets are [`wire`]. This host
//! is the *source* (`POST /1.0/instances/<name>` or `.../snapshots/<snap>` with
//! `migration: true`, [`source`]) or the *target* (`POST /1.0/instances` with
//! `source.type: migration`, [`target`]); either side may be the one that dials (`pull`: the
//! target dials the source; `push`: the source dials the target; `relay`: the client dials
//! both and joins them). silod parses only the control messages and the index header: the
//! volumes travel as rsync streams between silo-store's confined rsync and the peer's, and
//! silod moves their bytes without reading them.

pub mod source;
pub mod target;
pub mod volume;
pub mod wire;

use std::time::Duration;

use silo_proto::store::{BtrfsReport, RsyncFeatures, RsyncReport, RsyncRole, VolumeKind};
use silo_proto::{PoolName, VolumeName};

use crate::helpers::HelperKind;
use crate::service::operations::OpCtx;
use crate::service::Services;
use wire::Channel;

/// How long the peer has to connect both websockets (LXD waits as long).
pub const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// The rsync features silo offers and accepts: all LXD knows.
pub fn our_rsync() -> silo_api::migration::RsyncFeatures {
    silo_api::migration::RsyncFeatures {
        xattrs: Some(true),
        delete: Some(true),
        compress: Some(true),
        bidirectional: Some(true),
    }
}

/// The features a negotiated header names, as silo-store takes them.
pub fn store_features(h: &silo_api::migration::MigrationHeader) -> RsyncFeatures {
    let (xattrs, delete, compress) = h.rsync_options();
    RsyncFeatures {
        xattrs,
        delete,
        compress,
        checksum: false,
    }
}

/// One volume of a transfer, by pool, kind and name.
#[derive(Debug, Clone)]
pub struct Volume {
    /// The pool.
    pub pool: PoolName,
    /// Container or snapshot.
    pub kind: VolumeKind,
    /// Its name.
    pub name: VolumeName,
}

/// Reports a transfer's progress in the operation's metadata as LXD does
/// (`fs_progress: "<volume>: 12.34MB (1.23MB/s)"`), at most twice a second.
pub fn progress_reporter(ctx: &OpCtx, label: String) -> impl Fn(u64) + Send + Sync + 'static {
    let ctx = ctx.clone();
    let started = std::time::Instant::now();
    let last = std::sync::Mutex::new(std::time::Instant::now() - Duration::from_secs(1));
    move |bytes| {
        let Ok(mut l) = last.lock() else { return };
        if l.elapsed() < Duration::from_millis(500) {
            return;
        }
        *l = std::time::Instant::now();
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let text = format!(
            "{label}: {} ({}/s)",
            human(bytes as f64),
            human(bytes as f64 / secs)
        );
        ctx.set_metadata(serde_json::json!({ "fs_progress": text }));
    }
}

fn human(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2}GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2}MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.2}kB", b / 1e3)
    } else {
        format!("{b:.0}B")
    }
}

/// Runs one rsync stream of `vol` over `fs`: silo-store's rsync in `role`, the peer's at the
/// other end. Kills silo-store's side if the stream breaks.
pub async fn transfer(
    c: &Services,
    fs: &mut Channel,
    vol: &Volume,
    role: RsyncRole,
    features: RsyncFeatures,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<RsyncReport, String> {
    let session = c
        .helpers
        .store
        .rsync_start(vol.pool.clone(), vol.kind, vol.name.clone(), role, features)
        .await
        .map_err(|e| format!("starting rsync on {}: {e}", vol.name))?;
    // Dropped before the session ended (a bounded pass timed out): the session is aborted,
    // not left holding one of silo-store's slots.
    let mut guard = AbortOnDrop {
        c: c.clone(),
        id: Some(session.id),
    };
    let fd = match c.helpers.take_fds(HelperKind::Store, session.fd).await {
        Ok(mut fds) => fds.remove(0),
        Err(e) => {
            let _ = c.helpers.store.rsync_abort(session.id).await;
            guard.id = None;
            return Err(format!("the rsync socket of {}: {e}", vol.name));
        }
    };
    let r = relay_and_wait(c, fs, vol, session.id, fd, progress).await;
    guard.id = None;
    r
}

/// Sends snapshot `snapshot` of custom volume `vol` over `fs` with rsync (how a custom
/// volume's snapshots migrate: each before the volume itself).
pub async fn transfer_custom_snapshot(
    c: &Services,
    fs: &mut Channel,
    vol: &Volume,
    snapshot: &VolumeName,
    features: RsyncFeatures,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<RsyncReport, String> {
    let session = c
        .helpers
        .store
        .rsync_send_custom_snapshot(
            vol.pool.clone(),
            vol.name.clone(),
            snapshot.clone(),
            features,
        )
        .await
        .map_err(|e| format!("starting rsync on {}/{snapshot}: {e}", vol.name))?;
    let mut guard = AbortOnDrop {
        c: c.clone(),
        id: Some(session.id),
    };
    let fd = match c.helpers.take_fds(HelperKind::Store, session.fd).await {
        Ok(mut fds) => fds.remove(0),
        Err(e) => {
            let _ = c.helpers.store.rsync_abort(session.id).await;
            guard.id = None;
            return Err(format!("the rsync socket of {}/{snapshot}: {e}", vol.name));
        }
    };
    let r = relay_and_wait(c, fs, vol, session.id, fd, progress).await;
    guard.id = None;
    r
}

/// Aborts an rsync session when dropped while still armed.
struct AbortOnDrop {
    c: Services,
    id: Option<u64>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let c = self.c.clone();
            tokio::spawn(async move {
                let _ = c.helpers.store.rsync_abort(id).await;
            });
        }
    }
}

impl std::fmt::Debug for AbortOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbortOnDrop").field("id", &self.id).finish()
    }
}

async fn relay_and_wait(
    c: &Services,
    fs: &mut Channel,
    vol: &Volume,
    id: u64,
    fd: std::os::fd::OwnedFd,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<RsyncReport, String> {
    // silo-store checks the pool's reserve while it is waited on, so the wait runs beside
    // the relay rather than after it; its failure (rsync's own) ends the transfer at once.
    let wait = async {
        loop {
            match c.helpers.store.rsync_wait(id, 5).await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => continue,
                Err(e) => return Err(format!("rsync of {}: {e}", vol.name)),
            }
        }
    };
    let relay = fs.relay(fd, progress);
    tokio::pin!(wait, relay);
    let mut relayed = false;
    loop {
        tokio::select! {
            r = &mut relay, if !relayed => {
                if let Err(e) = r {
                    let _ = c.helpers.store.rsync_abort(id).await;
                    return Err(e);
                }
                relayed = true;
            }
            w = &mut wait => {
                if w.is_err() {
                    let _ = c.helpers.store.rsync_abort(id).await;
                    return w;
                }
                if relayed {
                    return w;
                }
                // rsync is done: the peer's end marker is all that is left to come.
                return match relay.await {
                    Ok(_) => w,
                    Err(e) => Err(e),
                };
            }
        }
    }
}

/// Runs one btrfs stream of `vol` over `fs`: silo-store sends it (`parent`: the difference
/// from that snapshot volume) or receives it into the new volume `vol` (`parent`: the volume
/// an incremental stream starts from). Ends silo-store's session if the stream breaks.
pub async fn btrfs_transfer(
    c: &Services,
    fs: &mut Channel,
    vol: &Volume,
    parent: Option<&Volume>,
    send: bool,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<BtrfsReport, String> {
    let parent = parent.map(|p| (p.kind, p.name.clone()));
    let started = if send {
        c.helpers
            .store
            .btrfs_send_start(vol.pool.clone(), vol.kind, vol.name.clone(), parent)
            .await
    } else {
        c.helpers
            .store
            .btrfs_receive_start(vol.pool.clone(), vol.kind, vol.name.clone(), parent)
            .await
    };
    let session = started.map_err(|e| format!("starting the btrfs stream of {}: {e}", vol.name))?;
    let fd = match c.helpers.take_fds(HelperKind::Store, session.fd).await {
        Ok(mut fds) => fds.remove(0),
        Err(e) => {
            let _ = c.helpers.store.btrfs_abort(session.id).await;
            return Err(format!("the btrfs socket of {}: {e}", vol.name));
        }
    };
    let wait = async {
        loop {
            match c.helpers.store.btrfs_wait(session.id, 5).await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => continue,
                Err(e) => return Err(format!("btrfs stream of {}: {e}", vol.name)),
            }
        }
    };
    let relay = async {
        if send {
            fs.relay_out(fd, progress).await
        } else {
            fs.relay_in(fd, progress).await
        }
    };
    tokio::pin!(wait, relay);
    let mut relayed = false;
    loop {
        tokio::select! {
            r = &mut relay, if !relayed => {
                if let Err(e) = r {
                    let _ = c.helpers.store.btrfs_abort(session.id).await;
                    return Err(e);
                }
                relayed = true;
            }
            w = &mut wait => {
                if w.is_err() || relayed {
                    return w;
                }
                // The send ended (all of it is in the socket) or the receive applied the
                // stream's end: the relay finishes what is left.
                return match relay.await {
                    Ok(_) => w,
                    Err(e) => Err(e),
                };
            }
        }
    }
}

/// Why the peer stopped, when it said so on `control` (its `MigrationControl` message), else
/// `err` as it is.
pub async fn peer_reason(control: &mut Channel, err: String) -> String {
    match tokio::time::timeout(
        Duration::from_secs(2),
        control.recv_proto::<silo_api::migration::MigrationControl>(),
    )
    .await
    {
        Ok(Ok(m)) if !m.success => m.message.unwrap_or(err),
        _ => err,
    }
}

/// Unix seconds of an RFC 3339 time ("" and bad values: Go's zero time, as LXD sends it).
pub fn unix_secs(t: &str) -> i64 {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .unwrap_or(GO_ZERO_TIME)
}

/// RFC 3339 of Unix seconds; "" for Go's zero time and anything out of range.
pub fn rfc3339(secs: i64) -> String {
    if secs <= GO_ZERO_TIME {
        return String::new();
    }
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Go's `time.Time{}` in Unix seconds (0001-01-01T00:00:00Z).
pub const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Sends the index header when the answer asked for one, and reads the target's reply.
pub async fn index_send(
    fs: &mut Channel,
    answer: &silo_api::migration::MigrationHeader,
    info: &silo_api::migration::MigrationInfo,
) -> Result<(), String> {
    if answer.index_header_version.unwrap_or(0) < 1 {
        return Ok(());
    }
    fs.send_json(info).await?;
    let r: silo_api::migration::MigrationInfoResponse = fs.recv_json().await?;
    if r.status_code != 200 {
        return Err(if r.error.is_empty() {
            format!(
                "the target refused the migration (status {})",
                r.status_code
            )
        } else {
            r.error
        });
    }
    Ok(())
}

/// Reads the index header when our answer asked for one, and accepts it.
pub async fn index_recv(
    fs: &mut Channel,
    answer: &silo_api::migration::MigrationHeader,
) -> Result<Option<silo_api::migration::MigrationInfo>, String> {
    if answer.index_header_version.unwrap_or(0) < 1 {
        return Ok(None);
    }
    let info: silo_api::migration::MigrationInfo = fs.recv_json().await?;
    fs.send_json(&silo_api::migration::MigrationInfoResponse {
        status_code: 200,
        error: String::new(),
        refresh: Some(answer.refresh == Some(true)),
    })
    .await?;
    Ok(Some(info))
}

/// Sends the last word on `control`: success, or why not.
pub async fn send_outcome(control: &Channel, outcome: Result<(), &str>) {
    let msg = silo_api::migration::MigrationControl {
        success: outcome.is_ok(),
        message: outcome.err().map(str::to_string),
    };
    if let Err(e) = control.send_proto(&msg).await {
        tracing::debug!(error = %e, "the migration peer left before the outcome");
    }
}

/// Waits for the target's last word (the source's end of a migration).
pub async fn recv_outcome(control: &mut Channel) -> Result<(), String> {
    let done: silo_api::migration::MigrationControl = control
        .recv_proto()
        .await
        .map_err(|e| format!("the target did not confirm the migration: {e}"))?;
    if done.success {
        Ok(())
    } else {
        Err(done
            .message
            .unwrap_or_else(|| "the target failed the migration".into()))
    }
}

/// The peer's operation channels: dialed (`operation` given) or awaited on our operation's
/// secrets.
pub async fn connect_pair(
    operation: &str,
    secrets: &std::collections::BTreeMap<String, String>,
    certificate: &str,
) -> Result<(Channel, Channel), String> {
    let secret = |n: &str| secrets.get(n).cloned().unwrap_or_default();
    let control = wire::dial(operation, &secret("control"), certificate, "control").await?;
    let fs = wire::dial(operation, &secret("fs"), certificate, "fs").await?;
    Ok((control, fs))
}

/// Waits for the peer to dial both websockets of our operation.
pub async fn accept_pair(
    streams: crate::service::exec::Streams,
) -> Result<(Channel, Channel), String> {
    let mut socks = streams.connect_all(CONNECT_WAIT).await?;
    match (socks.remove("control"), socks.remove("fs")) {
        (Some(control), Some(fs)) => Ok((
            Channel::from_axum(control, "control"),
            Channel::from_axum(fs, "fs"),
        )),
        _ => Err("the migration websockets did not connect".into()),
    }
}

/// How a migration operation gets the peer's two websockets.
#[derive(Debug)]
pub enum Link {
    /// Already dialed before the operation started (a push source: LXD dials the target
    /// before it answers).
    Ready(Channel, Channel),
    /// Dialed from inside the operation (a pull target): the peer's operation URL, its
    /// secrets and the certificate to pin.
    Dial {
        /// `https://host:port/1.0/operations/<id>`.
        operation: String,
        /// `control` and `fs`.
        secrets: std::collections::BTreeMap<String, String>,
        /// PEM.
        certificate: String,
    },
    /// The peer dials us: a `websocket` operation whose metadata holds the secrets.
    Accept,
}

/// Starts a migration operation: `task` when the websockets are dialed, `websocket` with
/// the secrets in its metadata when the peer dials them. `body` gets the two channels (or
/// why there are none). Not cancellable: a dropped body would leave its helper session and,
/// on a target, half-received volumes behind; a stalled peer times out instead.
pub fn start_op<F, Fut>(
    c: &Services,
    description: &str,
    resources: std::collections::BTreeMap<String, Vec<String>>,
    link: Link,
    body: F,
) -> crate::service::operations::Operation
where
    F: FnOnce(OpCtx, Result<(Channel, Channel), crate::service::DomainError>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = Result<serde_json::Value, crate::service::DomainError>>
        + Send
        + 'static,
{
    use crate::service::DomainError;
    let id = crate::service::operations::Operations::new_id();
    let (class, metadata, streams) = match link {
        Link::Accept => {
            let streams = crate::service::exec::Streams::new(&c.sockets, &id, &["control", "fs"]);
            let md = serde_json::json!(streams.secrets);
            ("websocket", md, Some(streams))
        }
        _ => ("task", serde_json::Value::Null, None),
    };
    c.ops.start_full(
        id,
        class,
        description,
        resources,
        metadata,
        false,
        move |ctx| async move {
            let pair = match (link, streams) {
                (Link::Ready(control, fs), _) => Ok((control, fs)),
                (
                    Link::Dial {
                        operation,
                        secrets,
                        certificate,
                    },
                    _,
                ) => connect_pair(&operation, &secrets, &certificate)
                    .await
                    .map_err(DomainError::BadRequest),
                (Link::Accept, Some(s)) => accept_pair(s).await.map_err(DomainError::Internal),
                (Link::Accept, None) => Err(DomainError::Internal(
                    "the migration websockets were not registered".into(),
                )),
            };
            body(ctx, pair).await
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_cross_as_lxd_sends_them() {
        assert_eq!(unix_secs("2024-01-02T03:04:05Z"), 1_704_164_645);
        assert_eq!(rfc3339(1_704_164_645), "2024-01-02T03:04:05Z");
        assert_eq!(unix_secs(""), GO_ZERO_TIME);
        assert_eq!(rfc3339(GO_ZERO_TIME), "");
    }

    #[test]
    fn sizes_read_as_lxd_prints_them() {
        assert_eq!(human(999.0), "999B");
        assert_eq!(human(12_340_000.0), "12.34MB");
    }
}
