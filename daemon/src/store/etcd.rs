//! The cluster's global records in etcd (the cluster's engine behind `store/`; the
//! single-host store is SQLite in [`crate::store::db`]), over `etcd-client` with mutual TLS.
//!
//! Keys (all beneath `/silo/`):
//! - `members/<name>`: a [`MemberRecord`];
//! - `alive/<name>`: held under the member's lease: present while it heartbeats;
//! - `heartbeat/<name>`: when it last renewed that lease (for OFFLINE's message);
//! - `tokens/<secret>`: a join token's [`TokenRecord`], under a lease that ends with it;
//! - `instances/<name>`: which member an instance is placed on.
//!
//! Every decision is a conditional transaction: a name is free when its key's
//! `create_revision` is 0, a token is used when its delete succeeds in the same
//! transaction that writes the member. Reads are linearizable (etcd-client's default).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, TlsOptions, Txn, TxnOp,
};
use serde::{Deserialize, Serialize};

/// How often silod's client pings etcd on an idle connection (above etcd's
/// `--grpc-keepalive-min-time`, which silo-side etcd is started with at 2 s).
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// How long one etcd call may take before it is an error.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

const PREFIX: &str = "/silo/";

/// The cluster's leader key: its holder's name, under that member's lease
/// (`service/cluster/leader.rs`).
pub const LEADER_KEY: &str = "/silo/leader";

/// The cluster CA's certificate (PEM), beneath `<state>/cluster`: what etcd and its
/// clients trust.
pub const CA_CERT: &str = "ca.crt";
/// The CA's key.
pub const CA_KEY: &str = "ca.key";
/// This member's certificate, for etcd's client and peer connections both ways.
pub const MEMBER_CERT: &str = "member.crt";
/// This member's key.
pub const MEMBER_KEY: &str = "member.key";
/// The DNS name every member certificate holds and the etcd client verifies.
pub const ETCD_NAME: &str = "silo-etcd";

/// A member as the cluster records it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MemberRecord {
    /// Its name.
    pub name: String,
    /// Its API address (`ip:port`).
    pub address: String,
    /// Its HTTPS certificate (PEM): what the other members pin and trust it by.
    pub certificate: String,
    /// Its architecture.
    pub architecture: String,
    /// Its description.
    pub description: String,
    /// Its failure domain.
    pub failure_domain: String,
    /// silo's version on it.
    pub version: String,
    /// Whether it runs an etcd of the database.
    pub database: bool,
    /// "" or "evacuated".
    pub state: String,
    /// Its config (`scheduler.instance`).
    pub config: std::collections::BTreeMap<String, String>,
}

/// A join token as the cluster keeps it until used.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TokenRecord {
    /// The name the joiner must have.
    pub server_name: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

/// Errors of the cluster's database.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// etcd answered with an error, or could not be reached.
    #[error("the cluster database: {0}")]
    Etcd(String),
    /// etcd did not answer in time.
    #[error("the cluster database did not answer within {0:?} (no quorum?)")]
    Timeout(Duration),
    /// A record does not decode.
    #[error("the cluster database holds a bad record at {0}: {1}")]
    Corrupt(String, String),
    /// The local certificate files.
    #[error("the cluster certificates: {0}")]
    Files(String),
}

impl From<etcd_client::Error> for EtcdError {
    fn from(e: etcd_client::Error) -> EtcdError {
        EtcdError::Etcd(e.to_string())
    }
}

/// The key of `what` under the prefix.
pub fn key(what: &str, name: &str) -> String {
    format!("{PREFIX}{what}/{name}")
}

/// A connection to the cluster's etcd. A connection that failed (a member cut off and
/// back, a keepalive that timed out) is replaced by a fresh one before a retry, rather
/// than trusting the gRPC channel to notice.
#[derive(Clone)]
pub struct Etcd {
    client: Arc<RwLock<Client>>,
    dir: PathBuf,
    endpoints: Arc<RwLock<Vec<String>>>,
    last_reconnect: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Which endpoint the connection is to: one at a time, the next after a failure.
    current: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Etcd")
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(EtcdError::from),
        Err(_) => Err(EtcdError::Timeout(CALL_TIMEOUT)),
    }
}

/// Whether an error says the endpoint (not the request) failed: another endpoint, or the
/// same once it has a leader again, may answer.
fn unavailable(e: &EtcdError) -> bool {
    match e {
        EtcdError::Timeout(_) => true,
        EtcdError::Etcd(m) => {
            m.contains("unavailable")
                || m.contains("connect error")
                || m.contains("transport error")
                || m.contains("no leader")
        }
        _ => false,
    }
}

/// How long a call is retried while etcd is unavailable.
pub const RETRY_FOR: Duration = Duration::from_secs(8);

impl Etcd {
    /// Connects to `endpoints` (`https://ip:port`) with this member's certificate from `dir`.
    pub async fn connect(dir: &Path, endpoints: &[String]) -> Result<Etcd, EtcdError> {
        // The first endpoint is this member's own etcd when it has one: its answers are
        // as linearizable as the leader's, without a hop across the network.
        let first = endpoints
            .first()
            .ok_or_else(|| EtcdError::Etcd("no etcd endpoint known".into()))?;
        let client = Self::open(dir, std::slice::from_ref(first)).await?;
        Ok(Etcd {
            client: Arc::new(RwLock::new(client)),
            dir: dir.to_path_buf(),
            endpoints: Arc::new(RwLock::new(endpoints.to_vec())),
            last_reconnect: Arc::default(),
            current: Arc::default(),
        })
    }

    /// Adds an endpoint (a new database member) for the next connection.
    pub fn add_endpoint(&self, url: &str) {
        let mut e = self.endpoints.write().unwrap_or_else(|p| p.into_inner());
        if !e.iter().any(|x| x == url) {
            e.push(url.to_string());
        }
    }

    /// Forgets an endpoint (a database member removed).
    pub fn remove_endpoint(&self, url: &str) {
        self.endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|x| x != url);
    }

    /// Replaces the connection with a fresh one to the next endpoint (after an error on a
    /// stream this module does not see), at most once a second.
    pub async fn reconnect(&self) {
        {
            let mut last = self
                .last_reconnect
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let next = {
            let e = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
            if e.is_empty() {
                return;
            }
            let i = self
                .current
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .wrapping_add(1);
            e[i % e.len()].clone()
        };
        match Self::open(&self.dir, &[next]).await {
            Ok(c) => *self.client.write().unwrap_or_else(|p| p.into_inner()) = c,
            Err(e) => tracing::debug!(error = %e, "reconnecting to etcd"),
        }
    }

    /// Runs `f` with the client until it answers, retrying while etcd is unavailable (on a
    /// fresh connection), for at most [`RETRY_FOR`]. Every call retried this way is safe to
    /// repeat: reads, puts of a whole value, and transactions whose compares make a second
    /// run a no-op or an answer the caller checks (a name claimed by itself).
    async fn retried<T, F, Fut>(&self, mut f: F) -> Result<T, EtcdError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let t0 = std::time::Instant::now();
        loop {
            match timed(f(self.client())).await {
                Err(e) if unavailable(&e) && t0.elapsed() < RETRY_FOR => {
                    tracing::debug!(error = %e, "etcd unavailable; retrying");
                    self.reconnect().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    async fn open(dir: &Path, endpoints: &[String]) -> Result<Client, EtcdError> {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f)).map_err(|e| EtcdError::Files(format!("{f}: {e}")))
        };
        let tls = TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(CA_CERT)?))
            .identity(etcd_client::Identity::from_pem(
                read(MEMBER_CERT)?,
                read(MEMBER_KEY)?,
            ))
            .domain_name(ETCD_NAME);
        let opts = ConnectOptions::new()
            .with_tls(tls)
            .with_keep_alive(KEEPALIVE, CALL_TIMEOUT)
            .with_keep_alive_while_idle(true)
            .with_connect_timeout(Duration::from_secs(1))
            // Without a leader the member's etcd cannot serve a linearizable answer: fail
            // at once rather than wait.
            .with_require_leader(true);
        timed(Client::connect(endpoints, Some(opts))).await
    }

    /// The raw client (leases, cluster membership).
    pub fn client(&self) -> Client {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every record beneath `what/`, decoded.
    pub async fn list<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
    ) -> Result<Vec<(String, T)>, EtcdError> {
        let prefix = format!("{PREFIX}{what}/");
        let r = self
            .retried(|mut c| {
                let p = prefix.clone();
                async move { c.get(p, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let mut out = Vec::new();
        for kv in r.kvs() {
            let k = String::from_utf8_lossy(kv.key()).to_string();
            let v = serde_json::from_slice(kv.value())
                .map_err(|e| EtcdError::Corrupt(k.clone(), e.to_string()))?;
            out.push((k[prefix.len()..].to_string(), v));
        }
        Ok(out)
    }

    /// The names beneath `what/` (keys only).
    pub async fn names(&self, what: &str) -> Result<Vec<String>, EtcdError> {
        let prefix = format!("{PREFIX}{what}/");
        let r = self
            .retried(|mut c| {
                let p = prefix.clone();
                async move {
                    c.get(p, Some(GetOptions::new().with_prefix().with_keys_only()))
                        .await
                }
            })
            .await?;
        Ok(r.kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key()[prefix.len()..]).to_string())
            .collect())
    }

    /// One record.
    pub async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        name: &str,
    ) -> Result<Option<T>, EtcdError> {
        let k = key(what, name);
        let r = self
            .retried(|mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        match r.kvs().first() {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(kv.value())
                .map(Some)
                .map_err(|e| EtcdError::Corrupt(k, e.to_string())),
        }
    }

    /// Writes a record (unconditionally).
    pub async fn put<T: Serialize>(
        &self,
        what: &str,
        name: &str,
        v: &T,
        lease: Option<i64>,
    ) -> Result<(), EtcdError> {
        let body = serde_json::to_vec(v).map_err(|e| EtcdError::Etcd(e.to_string()))?;
        let k = key(what, name);
        self.retried(|mut c| {
            let (k, body) = (k.clone(), body.clone());
            let opts = lease.map(|l| PutOptions::new().with_lease(l));
            async move { c.put(k, body, opts).await }
        })
        .await?;
        Ok(())
    }

    /// Writes a record only if its key does not exist; false when it did.
    pub async fn create<T: Serialize>(
        &self,
        what: &str,
        name: &str,
        v: &T,
    ) -> Result<bool, EtcdError> {
        let k = key(what, name);
        let body = serde_json::to_vec(v).map_err(|e| EtcdError::Etcd(e.to_string()))?;
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k, body, None)]);
        self.txn(txn).await
    }

    /// Deletes a record; whether it existed.
    pub async fn delete(&self, what: &str, name: &str) -> Result<bool, EtcdError> {
        let k = key(what, name);
        let r = self
            .retried(|mut c| {
                let k = k.clone();
                async move { c.delete(k, None).await }
            })
            .await?;
        Ok(r.deleted() > 0)
    }

    /// A read with `opts`, its answer whole (its header's revision).
    pub async fn retried_get(
        &self,
        key: String,
        opts: GetOptions,
    ) -> Result<etcd_client::GetResponse, EtcdError> {
        self.retried(|mut c| {
            let (k, o) = (key.clone(), opts.clone());
            async move { c.get(k, Some(o)).await }
        })
        .await
    }

    /// Runs a transaction; its answer whole (its header's revision).
    pub async fn txn_raw(&self, txn: Txn) -> Result<etcd_client::TxnResponse, EtcdError> {
        self.retried(|mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })
        .await
    }

    /// Runs a transaction.
    pub async fn txn(&self, txn: Txn) -> Result<bool, EtcdError> {
        let r = self
            .retried(|mut c| {
                let t = txn.clone();
                async move { c.txn(t).await }
            })
            .await?;
        Ok(r.succeeded())
    }

    /// etcd's members: (id, name, peer URLs, learner).
    pub async fn etcd_members(&self) -> Result<Vec<(u64, String, Vec<String>, bool)>, EtcdError> {
        let r = self
            .retried(|mut c| async move { c.member_list().await })
            .await?;
        Ok(r.members()
            .iter()
            .map(|m| {
                (
                    m.id(),
                    m.name().to_string(),
                    m.peer_urls().to_vec(),
                    m.is_learner(),
                )
            })
            .collect())
    }

    /// Removes etcd member `id` (retried while etcd is unavailable: removing twice fails
    /// with "member not found", which counts as done).
    pub async fn member_remove(&self, id: u64) -> Result<(), EtcdError> {
        let r = self
            .retried(|mut c| async move { c.member_remove(id).await })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(EtcdError::Etcd(m)) if m.contains("member not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Promotes learner `id`.
    pub async fn member_promote(&self, id: u64) -> Result<(), EtcdError> {
        self.retried(|mut c| async move { c.member_promote(id).await })
            .await
            .map(|_| ())
    }

    /// The id of etcd's current leader, as the member this client reaches sees it.
    pub async fn leader(&self) -> Result<u64, EtcdError> {
        let r = self
            .retried(|mut c| async move { c.status().await })
            .await?;
        Ok(r.leader())
    }
}
