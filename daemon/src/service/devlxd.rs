//! `/dev/lxd/sock`, the guest API, from silod's side: one listening socket per running
//! instance, and which instance a connection speaks for.
//!
//! LXD binds one socket for all instances and finds the caller from its pid's cgroup. silo
//! gives each instance its own: silo-priv binds it in a root-owned directory of the
//! instance's runtime dir, which the instance has mounted read-only (and locked) at /dev/lxd
//! since its start, and hands silod the listening fd. So a connection's instance is the
//! listener it arrived on — nothing the caller sends says who it is — and an instance can
//! reach no other instance's socket, nor silod's API socket, through its /dev/lxd.
//!
//! The directory, not the socket, is what is mounted: after a silod restart the new silod asks
//! silo-priv for a new listener per running instance, the socket file is replaced in the same
//! directory, and the instance sees the new one at once. The HTTP side is `api/devlxd.rs`,
//! installed here at start-up ([`Devlxd::install`]); the rules of what a guest reads are
//! `model/devlxd.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::helpers::HelperKind;
use crate::model::devlxd::GuestView;
use crate::service::{DomainError, Services};

/// Which instance a listener serves, and who its container root is on the host (LXD answers
/// only container root).
#[derive(Debug, Clone)]
pub struct Guest {
    /// The instance.
    pub instance: String,
    /// Host uid of the instance's root (its id base; 0 for a privileged instance).
    pub root_uid: u32,
}

/// One devlxd event, for the instance it concerns.
#[derive(Debug, Clone)]
pub struct GuestEvent {
    /// The instance whose listeners get it.
    pub instance: String,
    /// `config` or `device`.
    pub kind: String,
    /// The JSON sent: `{"type", "timestamp", "metadata"}`.
    pub json: serde_json::Value,
}

/// What serves a listener until the token is cancelled (`api::devlxd::serve_fn`).
pub type ServeFn =
    Arc<dyn Fn(Services, Guest, std::os::unix::net::UnixListener, CancellationToken) + Send + Sync>;

struct Inner {
    serve: OnceLock<ServeFn>,
    servers: Mutex<HashMap<String, CancellationToken>>,
    events: broadcast::Sender<GuestEvent>,
}

/// The guest API's listeners and events.
#[derive(Clone)]
pub struct Devlxd(Arc<Inner>);

impl std::fmt::Debug for Devlxd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devlxd")
            .field("installed", &self.0.serve.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Devlxd {
    fn default() -> Self {
        let (events, _) = broadcast::channel(256);
        Devlxd(Arc::new(Inner {
            serve: OnceLock::new(),
            servers: Mutex::new(HashMap::new()),
            events,
        }))
    }
}

impl Devlxd {
    /// Sets what serves each listener (once, at start-up).
    pub fn install(&self, f: ServeFn) {
        let _ = self.0.serve.set(f);
    }

    /// Stops serving `instance`'s socket, and every connection made through it.
    pub fn close(&self, instance: &str) {
        if let Some(t) = self
            .0
            .servers
            .lock()
            .ok()
            .and_then(|mut s| s.remove(instance))
        {
            t.cancel();
        }
    }

    /// Whether `instance`'s socket is served.
    pub fn is_served(&self, instance: &str) -> bool {
        self.0
            .servers
            .lock()
            .map(|s| s.contains_key(instance))
            .unwrap_or(false)
    }

    /// A receiver of every instance's devlxd events (listeners keep their own instance's).
    pub fn subscribe(&self) -> broadcast::Receiver<GuestEvent> {
        self.0.events.subscribe()
    }

    fn send(&self, instance: &str, kind: &str, metadata: serde_json::Value) {
        let _ = self.0.events.send(GuestEvent {
            instance: instance.to_string(),
            kind: kind.to_string(),
            json: serde_json::json!({
                "type": kind,
                "timestamp": crate::service::events::now_rfc3339(),
                "metadata": metadata,
            }),
        });
    }
}

/// Serves `instance`'s /dev/lxd/sock if it runs with `security.devlxd` on: a new listener from
/// silo-priv, replacing any served before. Called after a start, and for every running
/// instance when silod starts.
pub async fn open(
    c: &Services,
    instance: &str,
    config: &BTreeMap<String, String>,
    idmap_base: Option<u64>,
) -> Result<(), DomainError> {
    if !crate::model::devlxd::enabled(config) {
        return Ok(());
    }
    let Some(serve) = c.devlxd.0.serve.get().cloned() else {
        return Ok(());
    };
    let n = silo_proto::InstanceName::new(instance.to_string())
        .map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let root_uid = u32::try_from(idmap_base.unwrap_or(0))
        .map_err(|_| DomainError::Internal(format!("instance {instance:?}: id base too large")))?;
    let ticket = c.helpers.privileged.devlxd_listener(n).await?;
    let mut fds = c
        .helpers
        .take_fds(HelperKind::Priv, ticket)
        .await
        .map_err(DomainError::Internal)?;
    if fds.len() != 1 {
        return Err(DomainError::Internal(format!(
            "silo-priv sent {} fds for one /dev/lxd listener",
            fds.len()
        )));
    }
    let listener = std::os::unix::net::UnixListener::from(fds.remove(0));
    let stop = CancellationToken::new();
    if let Ok(mut s) = c.devlxd.0.servers.lock() {
        if let Some(old) = s.insert(instance.to_string(), stop.clone()) {
            old.cancel();
        }
    }
    serve(
        c.clone(),
        Guest {
            instance: instance.to_string(),
            root_uid,
        },
        listener,
        stop,
    );
    tracing::info!(instance, "serving /dev/lxd/sock");
    Ok(())
}

/// What a guest request reads: the instance's record as it is now.
pub fn view(c: &Services, instance: &str) -> Result<GuestView, DomainError> {
    let i = crate::service::instances::get(&c.db, instance)?;
    let profiles = crate::service::expansion::load_profiles(&c.db, &i.profiles)?;
    let (config, devices) = crate::model::profile::expand(&profiles, &i.config, &i.devices);
    Ok(GuestView {
        name: i.name,
        config,
        local: i.config,
        devices,
    })
}

/// An expanded config and expanded devices.
pub type Expanded<'a> = (
    &'a BTreeMap<String, String>,
    &'a BTreeMap<String, BTreeMap<String, String>>,
);

/// Sends the devlxd events of a running instance's change, as LXD does after an update:
/// `user.*` keys that changed, then devices removed, updated and added.
pub fn notify_changes(c: &Services, instance: &str, old: Expanded<'_>, new: Expanded<'_>) {
    if !c.devlxd.is_served(instance) {
        return;
    }
    for m in crate::model::devlxd::config_events(old.0, new.0) {
        c.devlxd.send(instance, "config", m);
    }
    for m in crate::model::devlxd::device_events(old.1, new.1) {
        c.devlxd.send(instance, "device", m);
    }
}
