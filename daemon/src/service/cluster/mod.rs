//! Clustering: several silo hosts as one, their shared records in etcd.
//!
//! silo never implements consensus: the database members (up to [`MAX_VOTERS`]) each run an
//! etcd (Debian's `etcd-server`) that silod starts through its [`keeper`], with mutual TLS
//! from the cluster's own CA ([`pki`]); every member talks to them with `etcd-client`
//! ([`db`]). A member proves it is alive by holding a lease ([`heartbeat`]): the others see
//! it OFFLINE once the lease lapses, `cluster.offline_threshold` after its last renewal.
//!
//! - Bootstrap: [`enable`] makes the CA, starts a one-member etcd, records the member.
//! - A join token ([`issue_token`]) is a record in etcd under a lease that ends with it.
//! - A joiner ([`join`]) calls `/internal/cluster/accept` on the token's member, pinned to
//!   the token's fingerprint; [`accept`] uses up the token and records the member in one
//!   transaction (so a name is taken once, a token used once), adds the joiner to etcd as a
//!   learner when the database has fewer than three voters, and answers the CA. The joiner
//!   starts its etcd and promotes itself once it has caught up.
//! - Members trust each other's HTTPS certificates as recorded in etcd.
//!
//! This host's side (`<state>/cluster/member.json`, the certificates, etcd's data) stays on
//! this host: it is how silod finds the cluster again at start.

pub mod keeper;
pub mod peer;
pub mod pki;
pub mod routing;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, LeaseGrantOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::service::operations::Operation;
use crate::service::{DomainError, Services};
use crate::store::etcd as db;
pub use crate::store::etcd::{key, Etcd, EtcdError, MemberRecord, TokenRecord};
use keeper::{EtcdLaunch, Keeper, Request as KeeperRequest};

/// Database members at most (etcd voters); the others are its clients.
pub const MAX_VOTERS: usize = 3;
/// LXD's default `cluster.offline_threshold`, in seconds.
pub const DEFAULT_OFFLINE_THRESHOLD: u64 = 20;
/// LXD's minimum for it.
pub const MIN_OFFLINE_THRESHOLD: u64 = 10;
/// LXD's default `cluster.join_token_expiry`.
pub const DEFAULT_TOKEN_EXPIRY: Duration = Duration::from_secs(3 * 3600);
/// The file naming this host's membership.
pub const MEMBER_FILE: &str = "member.json";
/// The class of join-token operations, as LXD's.
const TOKEN_CLASS: &str = "token";

impl From<EtcdError> for DomainError {
    fn from(e: EtcdError) -> DomainError {
        DomainError::Unavailable(e.to_string())
    }
}

impl From<keeper::KeeperError> for DomainError {
    fn from(e: keeper::KeeperError) -> DomainError {
        DomainError::Internal(e.to_string())
    }
}

/// This host's membership, as kept in `<state>/cluster/member.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LocalMember {
    /// The member's name.
    pub name: String,
    /// Its API address.
    pub address: SocketAddr,
    /// Whether it runs an etcd of the database.
    pub database: bool,
    /// etcd's client URLs, as last known.
    pub endpoints: Vec<String>,
    /// The etcd cluster it started with (name, peer address).
    pub initial_cluster: Vec<(String, SocketAddr)>,
    /// The members' HTTPS certificate fingerprints as last read: members are trusted by
    /// these from the start, before the database answers again.
    #[serde(default)]
    pub member_fps: Vec<String>,
}

impl LocalMember {
    fn launch(&self, new_cluster: bool) -> EtcdLaunch {
        EtcdLaunch {
            name: self.name.clone(),
            ip: self.address.ip(),
            client_port: client_port(self.address),
            peer_port: peer_port(self.address),
            initial_cluster: self.initial_cluster.clone(),
            new_cluster,
        }
    }
}

/// etcd's client port: the API port + 1.
pub fn client_port(api: SocketAddr) -> u16 {
    api.port().wrapping_add(1)
}

/// etcd's peer port: the API port + 2.
pub fn peer_port(api: SocketAddr) -> u16 {
    api.port().wrapping_add(2)
}

fn client_url(api: SocketAddr) -> String {
    format!("https://{}", SocketAddr::new(api.ip(), client_port(api)))
}

fn peer_addr(api: SocketAddr) -> SocketAddr {
    SocketAddr::new(api.ip(), peer_port(api))
}

/// A member of a cluster, once joined.
#[derive(Debug)]
pub struct Joined {
    /// This host's membership.
    pub local: LocalMember,
    /// The cluster's database.
    pub etcd: Etcd,
    /// Whether this member's lease is current (it counts itself ONLINE).
    online: AtomicBool,
    /// Ends the heartbeat.
    stop: CancellationToken,
    /// Whether the heartbeat gives up its lease when it ends (leaving), or leaves it to the
    /// membership that replaces it (a member that took up a database role).
    revoke_on_stop: AtomicBool,
    /// The members' HTTPS certificate fingerprints, as last read.
    member_fps: RwLock<HashSet<String>>,
}

impl Joined {
    /// Whether this member's lease is current.
    pub fn online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }
}

/// The cluster side of silod (shared by every clone of the services).
#[derive(Debug, Default, Clone)]
pub struct Cluster(Arc<ClusterInner>);

/// What every clone of [`Cluster`] shares.
#[derive(Debug, Default)]
pub struct ClusterInner {
    keeper: Option<Arc<Keeper>>,
    joined: RwLock<Option<Arc<Joined>>>,
    /// One membership change at a time on this host.
    busy: tokio::sync::Mutex<()>,
    /// Whether this member is taking up a database role now.
    becoming: AtomicBool,
    /// Operations started on other members through this one: id to member.
    remote_ops: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// This member's name for `location` fields ("none" when standalone, as LXD): one silod
/// per process, so a process-wide value.
static LOCATION: RwLock<Option<String>> = RwLock::new(None);

/// What `location` fields say of this host's objects.
pub fn location() -> String {
    LOCATION
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| "none".into())
}

impl std::ops::Deref for Cluster {
    type Target = ClusterInner;
    fn deref(&self) -> &ClusterInner {
        &self.0
    }
}

impl Cluster {
    /// With the keeper forked at start (none in unit tests: no cluster there).
    pub fn new(keeper: Option<Keeper>) -> Cluster {
        Cluster(Arc::new(ClusterInner {
            keeper: keeper.map(Arc::new),
            ..Default::default()
        }))
    }

    /// This member, when clustered.
    pub fn joined(&self) -> Option<Arc<Joined>> {
        self.joined
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// This member's name, when clustered.
    pub fn member_name(&self) -> Option<String> {
        self.joined().map(|j| j.local.name.clone())
    }

    /// Whether `fp` is a member's HTTPS certificate (a member calling).
    pub fn is_member(&self, fp: &str) -> bool {
        self.joined().is_some_and(|j| {
            j.member_fps
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(fp)
        })
    }

    fn keeper(&self) -> Result<&Arc<Keeper>, DomainError> {
        self.keeper
            .as_ref()
            .ok_or_else(|| DomainError::Internal("no etcd keeper in this process".into()))
    }

    /// Records that operation `id` runs on `member`.
    pub fn record_op(&self, id: &str, member: &str) {
        let mut m = self.remote_ops.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: the oldest entries are of operations long finished.
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(id.to_string(), member.to_string());
    }

    /// The member running operation `id`, when one was forwarded through here.
    pub fn op_member(&self, id: &str) -> Option<String> {
        self.remote_ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn set(&self, j: Option<Arc<Joined>>) {
        // Replaced by a new membership: its lease stays until the new one holds its own.
        let leaving = j.is_none();
        *LOCATION.write().unwrap_or_else(|p| p.into_inner()) =
            j.as_ref().map(|j| j.local.name.clone());
        let old = std::mem::replace(
            &mut *self.joined.write().unwrap_or_else(|p| p.into_inner()),
            j,
        );
        if let Some(o) = old {
            o.revoke_on_stop.store(leaving, Ordering::SeqCst);
            o.stop.cancel();
        }
    }
}

fn instance_names(c: &Services) -> Result<Vec<String>, DomainError> {
    Ok(crate::store::instances::all(&c.db)?
        .into_iter()
        .map(|i| i.name)
        .collect())
}

fn dir(c: &Services) -> PathBuf {
    keeper::cluster_dir(&c.state_dir)
}

fn valid_member_name(n: &str) -> Result<(), DomainError> {
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
        && !n.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(DomainError::BadRequest(format!(
            "invalid member name {n:?}: letters, digits and '-', 1 to 63, not all digits, no '-' at either end"
        )))
    }
}

/// silo's version as members compare it on join.
pub fn version() -> String {
    format!(
        "{} (schema {})",
        env!("CARGO_PKG_VERSION"),
        crate::service::server::schema_version()
    )
}

/// This host's API address from `core.https_address`: one IP and a port.
fn own_address(c: &Services) -> Result<SocketAddr, DomainError> {
    let v = crate::store::config::get(&c.db, crate::service::server::HTTPS_ADDRESS)?
        .unwrap_or_default();
    parse_address(&v).map_err(|why| {
        DomainError::BadRequest(format!(
            "clustering needs core.https_address set to this server's own address, an IP and a port (e.g. 10.0.0.1:8443){}: {why}",
            if v.is_empty() { String::new() } else { format!(", not {v:?}") }
        ))
    })
}

fn parse_address(v: &str) -> Result<SocketAddr, String> {
    if v.is_empty() {
        return Err("it is not set".into());
    }
    let a: SocketAddr = v
        .parse()
        .or_else(|_| format!("{v}:8443").parse())
        .map_err(|_| "not an IP address and port".to_string())?;
    if a.ip().is_unspecified() {
        return Err("a wildcard address cannot be reached by other members".into());
    }
    if a.port() > 65533 {
        return Err("etcd takes the two ports above it".into());
    }
    Ok(a)
}

fn write_local(dir: &Path, m: &LocalMember) -> Result<(), DomainError> {
    let text = serde_json::to_string_pretty(m).map_err(|e| DomainError::Internal(e.to_string()))?;
    let tmp = dir.join("member.json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, dir.join(MEMBER_FILE)))
        .map_err(|e| DomainError::Internal(format!("writing {MEMBER_FILE}: {e}")))
}

fn read_local(dir: &Path) -> Result<Option<LocalMember>, String> {
    match std::fs::read(dir.join(MEMBER_FILE)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{MEMBER_FILE}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{MEMBER_FILE}: {e}")),
    }
}

/// Removes this host's cluster files (after a failed join, or on leaving).
async fn wipe_local(c: &Services) {
    if let Ok(k) = c.cluster.keeper() {
        if let Err(e) = k.request(KeeperRequest::Wipe).await {
            tracing::error!(error = %e, "stopping etcd");
        }
    }
    let d = dir(c);
    for f in [
        MEMBER_FILE,
        pki::CA_CERT,
        pki::CA_KEY,
        pki::MEMBER_CERT,
        pki::MEMBER_KEY,
    ] {
        let _ = std::fs::remove_file(d.join(f));
    }
}

/// The offline threshold from `cluster.offline_threshold` (LXD's default and minimum).
pub fn offline_threshold(c: &Services) -> Duration {
    let v = crate::store::config::get(&c.db, "cluster.offline_threshold")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_OFFLINE_THRESHOLD);
    Duration::from_secs(v.max(MIN_OFFLINE_THRESHOLD))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn record_of(c: &Services, name: &str, address: SocketAddr, database: bool) -> MemberRecord {
    MemberRecord {
        name: name.to_string(),
        address: address.to_string(),
        certificate: c
            .trust
            .identity()
            .map(|i| i.cert_pem.clone())
            .unwrap_or_default(),
        architecture: c.host.kernel_architecture.clone(),
        version: version(),
        database,
        ..Default::default()
    }
}

/// Connects to etcd, waiting (up to `wait`) until it answers with a leader.
async fn connect_ready(
    dir: &Path,
    endpoints: &[String],
    wait: Duration,
) -> Result<Etcd, EtcdError> {
    let t0 = Instant::now();
    loop {
        let r = async {
            let e = Etcd::connect(dir, endpoints).await?;
            e.leader().await?;
            Ok::<_, EtcdError>(e)
        }
        .await;
        match r {
            Ok(e) => return Ok(e),
            Err(e) if t0.elapsed() >= wait => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Takes up membership: registers it alive (so the caller sees it ONLINE at once when it
/// can) and starts the heartbeat.
async fn install(c: &Services, local: LocalMember, etcd: Etcd) -> Arc<Joined> {
    let j = Arc::new(Joined {
        local,
        etcd,
        online: AtomicBool::new(false),
        stop: CancellationToken::new(),
        revoke_on_stop: AtomicBool::new(true),
        member_fps: RwLock::new(HashSet::new()),
    });
    *j.member_fps.write().unwrap_or_else(|p| p.into_inner()) =
        j.local.member_fps.iter().cloned().collect();
    c.cluster.set(Some(j.clone()));
    let first = match register(&j, offline_threshold(c)).await {
        Ok(lease) => {
            j.online.store(true, Ordering::Relaxed);
            refresh(&c.state_dir, &j).await;
            Some(lease)
        }
        Err(e) => {
            tracing::warn!(error = %e, "registering this member as alive; the heartbeat retries");
            None
        }
    };
    tokio::spawn(heartbeat(Services::clone(c), j.clone(), first));
    j
}

/// A new lease with this member's alive key under it, and its heartbeat time.
async fn register(j: &Joined, ttl: Duration) -> Result<i64, EtcdError> {
    let mut client = j.etcd.client();
    let lease = tokio::time::timeout(
        db::CALL_TIMEOUT,
        client.lease_grant(ttl.as_secs() as i64, None::<LeaseGrantOptions>),
    )
    .await
    .map_err(|_| EtcdError::Timeout(db::CALL_TIMEOUT))??
    .id();
    let name = &j.local.name;
    j.etcd
        .put("alive", name, &now_rfc3339(), Some(lease))
        .await?;
    j.etcd.put("heartbeat", name, &now_rfc3339(), None).await?;
    Ok(lease)
}

/// At start: finds this host's membership again and rejoins (starting etcd on a database
/// member). Runs in the background: a cluster without quorum must not keep silod from
/// serving its local API.
pub async fn resume(c: Services) {
    let d = dir(&c);
    let local = match read_local(&d) {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "this host's cluster membership cannot be read; not rejoining");
            return;
        }
    };
    if local.database {
        let k = match c.cluster.keeper() {
            Ok(k) => k.clone(),
            Err(e) => {
                tracing::error!(error = %e, "cannot start etcd");
                return;
            }
        };
        if let Err(e) = k.request(KeeperRequest::Start(local.launch(false))).await {
            tracing::error!(error = %e, "starting this member's etcd");
        }
    }
    loop {
        match Etcd::connect(&d, &local.endpoints).await {
            Ok(etcd) => {
                install(&c, local, etcd).await;
                tracing::info!("rejoined the cluster");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the cluster's database is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// `PUT /1.0/cluster {server_name, enabled: true}` on a standalone host: it becomes the
/// cluster's first member.
pub async fn enable(c: &Services, name: &str) -> Result<(), DomainError> {
    let _busy = c.cluster.busy.lock().await;
    if c.cluster.joined().is_some() {
        return Err(DomainError::BadRequest(
            "This server is already clustered".into(),
        ));
    }
    valid_member_name(name)?;
    let address = own_address(c)?;
    let d = dir(c);
    let keeper = c.cluster.keeper()?.clone();
    let local = LocalMember {
        name: name.to_string(),
        address,
        database: true,
        endpoints: vec![client_url(address)],
        initial_cluster: vec![(name.to_string(), peer_addr(address))],
        member_fps: Vec::new(),
    };
    let r = async {
        keeper.request(KeeperRequest::Wipe).await?;
        let ca = pki::new_ca().map_err(DomainError::Internal)?;
        pki::install(&d, &ca, name, address.ip()).map_err(DomainError::Internal)?;
        keeper
            .request(KeeperRequest::Start(local.launch(true)))
            .await?;
        let etcd = connect_ready(&d, &local.endpoints, Duration::from_secs(30)).await?;
        etcd.put("members", name, &record_of(c, name, address, true), None)
            .await?;
        etcd.put("cluster", "version", &version(), None).await?;
        // This host's instances are now the cluster's, placed here.
        for i in instance_names(c)? {
            etcd.put("instances", &i, &name.to_string(), None).await?;
        }
        write_local(&d, &local)?;
        Ok::<_, DomainError>(etcd)
    }
    .await;
    match r {
        Ok(etcd) => {
            install(c, local, etcd).await;
            c.events
                .lifecycle("cluster-enabled", "/1.0/cluster", json!({}));
            Ok(())
        }
        Err(e) => {
            wipe_local(c).await;
            Err(e)
        }
    }
}

/// What a joiner sends to `/internal/cluster/accept`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AcceptRequest {
    /// The joiner's name.
    pub name: String,
    /// Its API address.
    pub address: String,
    /// The token's secret.
    pub secret: String,
    /// Its silo version.
    pub version: String,
    /// Its architecture.
    pub architecture: String,
    /// Its HTTPS certificate (PEM).
    pub certificate: String,
}

/// What the accepting member answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptResponse {
    /// The cluster's CA.
    pub ca: pki::Ca,
    /// Whether the joiner runs an etcd of the database.
    pub database: bool,
    /// etcd's members, the joiner included when it is one (name, peer address).
    pub initial_cluster: Vec<(String, SocketAddr)>,
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
}

/// etcd's voters and their client URLs, from etcd's own member list.
async fn voters(etcd: &Etcd) -> Result<Vec<(u64, String, SocketAddr, bool)>, DomainError> {
    let mut out = Vec::new();
    for (id, name, peers, learner) in etcd.etcd_members().await? {
        let Some(p) = peers.first() else { continue };
        let addr: SocketAddr = p
            .trim_start_matches("https://")
            .parse()
            .map_err(|e| DomainError::Internal(format!("etcd peer URL {p:?}: {e}")))?;
        out.push((id, name, addr, learner));
    }
    Ok(out)
}

fn client_url_of_peer(peer: SocketAddr) -> String {
    format!(
        "https://{}",
        SocketAddr::new(peer.ip(), peer.port().wrapping_sub(1))
    )
}

/// The member side of a join: checks the token and the joiner, records it, makes room for
/// it in etcd.
pub async fn accept(c: &Services, req: AcceptRequest) -> Result<AcceptResponse, DomainError> {
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    let etcd = &j.etcd;
    valid_member_name(&req.name)?;
    let Some(tok) = etcd.get::<TokenRecord>("tokens", &req.secret).await? else {
        return Err(DomainError::Forbidden(
            "No valid join token matches (wrong, already used, or expired)".into(),
        ));
    };
    if tok.server_name != req.name {
        return Err(DomainError::Forbidden(format!(
            "The join token is for a member named {:?}, not {:?}",
            tok.server_name, req.name
        )));
    }
    if req.version != version() {
        return Err(DomainError::BadRequest(format!(
            "The joining server runs silo {}, the cluster runs silo {}: join with the same version",
            req.version,
            version()
        )));
    }
    let address = parse_address(&req.address).map_err(|why| {
        DomainError::BadRequest(format!("server address {:?}: {why}", req.address))
    })?;
    let members: Vec<(String, MemberRecord)> = etcd.list("members").await?;
    if let Some((n, _)) = members
        .iter()
        .find(|(_, m)| m.address == address.to_string())
    {
        return Err(DomainError::BadRequest(format!(
            "The address {address} is already member {n}'s"
        )));
    }
    let database = members.iter().filter(|(_, m)| m.database).count() < MAX_VOTERS;
    let record = MemberRecord {
        name: req.name.clone(),
        address: address.to_string(),
        certificate: req.certificate.clone(),
        architecture: req.architecture.clone(),
        version: req.version.clone(),
        database,
        ..Default::default()
    };
    let body = serde_json::to_vec(&record).map_err(|e| DomainError::Internal(e.to_string()))?;
    let tk = key("tokens", &req.secret);
    let mk = key("members", &req.name);
    let ok = etcd
        .txn(
            Txn::new()
                .when([
                    Compare::version(tk.clone(), CompareOp::Greater, 0),
                    Compare::create_revision(mk.clone(), CompareOp::Equal, 0),
                ])
                .and_then([TxnOp::delete(tk, None), TxnOp::put(mk, body, None)]),
        )
        .await?;
    if !ok {
        return Err(
            if etcd
                .get::<MemberRecord>("members", &req.name)
                .await?
                .is_some()
            {
                DomainError::Conflict(format!(
                    "The cluster already has a member named {:?}",
                    req.name
                ))
            } else {
                DomainError::Forbidden("The join token was used meanwhile".into())
            },
        );
    }
    let undo = || async {
        let _ = etcd.delete("members", &req.name).await;
    };
    let ca = match pki::load_ca(&dir(c)) {
        Ok(ca) => ca,
        Err(e) => {
            undo().await;
            return Err(DomainError::Internal(e));
        }
    };
    let mut initial = Vec::new();
    if database {
        match add_learner(etcd, &req.name, address).await {
            Ok(i) => initial = i,
            Err(e) => {
                undo().await;
                return Err(e);
            }
        }
    }
    let endpoints = voters(etcd)
        .await?
        .into_iter()
        .filter(|(_, _, _, learner)| !learner)
        .map(|(_, _, p, _)| client_url_of_peer(p))
        .collect();
    c.events.lifecycle(
        "cluster-member-added",
        &format!("/1.0/cluster/members/{}", req.name),
        json!({}),
    );
    Ok(AcceptResponse {
        ca,
        database,
        initial_cluster: initial,
        endpoints,
    })
}

/// Adds the member `name` at `address` to etcd as a learner; answers etcd's members with
/// it (name, peer address), what its etcd starts with.
async fn add_learner(
    etcd: &Etcd,
    name: &str,
    address: SocketAddr,
) -> Result<Vec<(String, SocketAddr)>, DomainError> {
    let mut client = etcd.client();
    let url = format!("https://{}", peer_addr(address));
    // etcd refuses a change of membership until every member has been connected for
    // some seconds (its strict reconfiguration check): right after another change, wait.
    let t0 = Instant::now();
    let added = loop {
        let r = client
            .member_add(
                [url.clone()],
                Some(etcd_client::MemberAddOptions::new().with_is_learner()),
            )
            .await;
        match r {
            Err(e)
                if e.to_string().contains("unhealthy cluster")
                    && t0.elapsed() < Duration::from_secs(30) =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => break other,
        }
    };
    let added = added.map_err(|e| {
        DomainError::Unavailable(format!("adding {name} to the cluster's database: {e}"))
    })?;
    let new_id = added.member().map(|m| m.id());
    let mut initial = Vec::new();
    for m in added.member_list() {
        let n = if Some(m.id()) == new_id || m.name().is_empty() {
            name.to_string()
        } else {
            m.name().to_string()
        };
        if let Some(a) = m
            .peer_urls()
            .first()
            .and_then(|u| u.trim_start_matches("https://").parse().ok())
        {
            initial.push((n, a));
        }
    }
    Ok(initial)
}

/// Makes this member a database member (another left the database): it joins etcd as a
/// learner, starts its etcd and promotes itself once caught up.
pub async fn become_database(c: &Services) -> Result<(), DomainError> {
    let _busy = c.cluster.busy.lock().await;
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    if j.local.database {
        return Ok(());
    }
    let address = j.local.address;
    let initial = add_learner(&j.etcd, &j.local.name, address).await?;
    let mut local = j.local.clone();
    local.database = true;
    local.initial_cluster = initial;
    local.endpoints.retain(|e| *e != client_url(address));
    local.endpoints.insert(0, client_url(address));
    let keeper = c.cluster.keeper()?.clone();
    let started = async {
        keeper.request(KeeperRequest::Wipe).await?;
        keeper
            .request(KeeperRequest::Start(local.launch(false)))
            .await?;
        promote(&j.etcd, peer_addr(address)).await
    }
    .await;
    if let Err(e) = started {
        // Out of etcd again, so the database does not wait for a learner that never comes.
        if let Ok(vs) = voters(&j.etcd).await {
            for (id, _, p, _) in vs {
                if p == peer_addr(address) {
                    let _ = j.etcd.member_remove(id).await;
                }
            }
        }
        let _ = keeper.request(KeeperRequest::Wipe).await;
        return Err(e);
    }
    write_local(&dir(c), &local)?;
    if let Some(mut rec) = j.etcd.get::<MemberRecord>("members", &local.name).await? {
        rec.database = true;
        j.etcd.put("members", &local.name, &rec, None).await?;
    }
    let etcd = Etcd::connect(&dir(c), &local.endpoints).await?;
    install(c, local, etcd).await;
    tracing::info!("this member now holds the cluster's database");
    Ok(())
}

/// `PUT /1.0/cluster` with a join token: this host joins the token's cluster.
pub async fn join(c: &Services, put: silo_api::ClusterPut) -> Result<(), DomainError> {
    let _busy = c.cluster.busy.lock().await;
    if c.cluster.joined().is_some() {
        return Err(DomainError::BadRequest(
            "This server is already clustered".into(),
        ));
    }
    let raw = if put.cluster_token.is_empty() {
        put.cluster_password.as_str()
    } else {
        put.cluster_token.as_str()
    };
    let token = silo_api::ClusterMemberJoinToken::decode(raw).map_err(DomainError::BadRequest)?;
    let name = if put.server_name.is_empty() {
        token.server_name.clone()
    } else {
        put.server_name.clone()
    };
    valid_member_name(&name)?;
    if name != token.server_name {
        return Err(DomainError::BadRequest(format!(
            "The join token is for a member named {:?}, not {name:?}",
            token.server_name
        )));
    }
    if let Ok(exp) = time::OffsetDateTime::parse(
        &token.expires_at,
        &time::format_description::well_known::Rfc3339,
    ) {
        if exp < time::OffsetDateTime::now_utc() {
            return Err(DomainError::Forbidden(format!(
                "The join token expired at {}",
                token.expires_at
            )));
        }
    }
    let n = instance_names(c)?.len();
    if n > 0 {
        return Err(DomainError::BadRequest(format!(
            "This server has {n} instance(s): a member joins a cluster empty"
        )));
    }
    if !put.server_address.is_empty() {
        let cur = crate::store::config::get(&c.db, crate::service::server::HTTPS_ADDRESS)?
            .unwrap_or_default();
        if cur != put.server_address {
            let mut req = BTreeMap::new();
            req.insert(
                crate::service::server::HTTPS_ADDRESS.to_string(),
                json!(put.server_address),
            );
            crate::service::server::update(c, &req, true, None).await?;
        }
    }
    let address = own_address(c)?;
    let id = c
        .trust
        .identity()
        .ok_or_else(|| DomainError::Internal("this server has no certificate".into()))?
        .clone();
    let req = AcceptRequest {
        name: name.clone(),
        address: address.to_string(),
        secret: token.secret.clone(),
        version: version(),
        architecture: c.host.kernel_architecture.clone(),
        certificate: id.cert_pem.clone(),
    };
    let body = serde_json::to_value(&req).map_err(|e| DomainError::Internal(e.to_string()))?;
    let mut errors = Vec::new();
    let mut answer = None;
    for a in &token.addresses {
        match peer::call(
            a,
            &token.fingerprint,
            Some(&id),
            hyper::Method::POST,
            "/internal/cluster/accept",
            Some(&body),
        )
        .await
        {
            Ok(v) => {
                answer = Some(v);
                break;
            }
            Err(e) => errors.push(format!("{a}: {e}")),
        }
    }
    let Some(answer) = answer else {
        return Err(DomainError::BadRequest(format!(
            "Failed to join the cluster: {}",
            errors.join("; ")
        )));
    };
    let acc: AcceptResponse = serde_json::from_value(answer)
        .map_err(|e| DomainError::Internal(format!("the cluster's answer to the join: {e}")))?;
    let d = dir(c);
    let mut endpoints = acc.endpoints.clone();
    if acc.database {
        endpoints.insert(0, client_url(address));
    }
    let local = LocalMember {
        name: name.clone(),
        address,
        database: acc.database,
        endpoints,
        initial_cluster: acc.initial_cluster.clone(),
        member_fps: Vec::new(),
    };
    let r = async {
        let keeper = c.cluster.keeper()?.clone();
        keeper.request(KeeperRequest::Wipe).await?;
        pki::install(&d, &acc.ca, &name, address.ip()).map_err(DomainError::Internal)?;
        let etcd = if acc.database {
            keeper
                .request(KeeperRequest::Start(local.launch(false)))
                .await?;
            let etcd = connect_ready(&d, &acc.endpoints, Duration::from_secs(30)).await?;
            promote(&etcd, peer_addr(address)).await?;
            etcd
        } else {
            connect_ready(&d, &acc.endpoints, Duration::from_secs(30)).await?
        };
        write_local(&d, &local)?;
        Ok::<_, DomainError>(etcd)
    }
    .await;
    match r {
        Ok(etcd) => {
            install(c, local, etcd).await;
            Ok(())
        }
        Err(e) => {
            // The cluster recorded the member: take it back out (best effort), so the
            // name can join again.
            if let Ok(etcd) = Etcd::connect(&d, &acc.endpoints).await {
                let _ = etcd.delete("members", &name).await;
                if let Ok(vs) = voters(&etcd).await {
                    for (id, _, p, _) in vs {
                        if p == peer_addr(address) {
                            let _ = etcd.member_remove(id).await;
                        }
                    }
                }
            }
            wipe_local(c).await;
            Err(e)
        }
    }
}

/// Promotes the learner at `peer` once it has caught up (etcd refuses until then).
async fn promote(etcd: &Etcd, peer: SocketAddr) -> Result<(), DomainError> {
    let t0 = Instant::now();
    loop {
        let vs = voters(etcd).await?;
        let Some((id, _, _, learner)) = vs.into_iter().find(|(_, _, p, _)| *p == peer) else {
            return Err(DomainError::Internal(format!(
                "this member ({peer}) is not in the cluster's database"
            )));
        };
        if !learner {
            return Ok(());
        }
        match etcd.member_promote(id).await {
            Ok(_) => return Ok(()),
            Err(e) if t0.elapsed() > Duration::from_secs(60) => {
                return Err(DomainError::Unavailable(format!(
                    "this member's etcd did not catch up with the cluster: {e}"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Renews this member's lease and records its heartbeat, re-registering when the lease is
/// gone (the others declared it offline), stepping down (not ONLINE in its own eyes) when
/// the TTL passes without a renewal.
async fn heartbeat(c: Services, j: Arc<Joined>, first: Option<i64>) {
    let mut last_ok = Instant::now();
    let mut first = first;
    'grant: loop {
        if j.stop.is_cancelled() {
            return;
        }
        let ttl = offline_threshold(&c);
        if last_ok.elapsed() > ttl && j.online.swap(false, Ordering::Relaxed) {
            tracing::warn!("this member lost its lease: the others see it OFFLINE");
        }
        let lease = match first.take() {
            Some(l) => l,
            None => match register(&j, ttl).await {
                Ok(l) => l,
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'grant,
                        _ = j.stop.cancelled() => return,
                    }
                }
            },
        };
        last_ok = Instant::now();
        if !j.online.swap(true, Ordering::Relaxed) {
            tracing::info!("this member is registered alive");
        }
        refresh(&c.state_dir, &j).await;
        keep_database_full(&c, &j).await;
        let name = j.local.name.clone();
        let mut client = j.etcd.client();
        // Renew at a third of the TTL: two renewals may fail before the lease lapses.
        let every = ttl / 3;
        'stream: loop {
            let Ok(Ok((mut keeper, mut stream))) =
                tokio::time::timeout(db::CALL_TIMEOUT, client.lease_keep_alive(lease)).await
            else {
                if last_ok.elapsed() > ttl {
                    continue 'grant;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                j.etcd.reconnect().await;
                client = j.etcd.client();
                continue 'stream;
            };
            loop {
                let renewed = async {
                    keeper.keep_alive().await?;
                    stream.message().await
                };
                match tokio::time::timeout(db::CALL_TIMEOUT, renewed).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => {
                        last_ok = Instant::now();
                        if !j.online.swap(true, Ordering::Relaxed) {
                            tracing::info!("this member holds its lease again");
                        }
                        let _ = j.etcd.put("heartbeat", &name, &now_rfc3339(), None).await;
                        refresh(&c.state_dir, &j).await;
                        keep_database_full(&c, &j).await;
                    }
                    // TTL 0: "lease not found": the cluster declared this member offline
                    // and its alive key went with the lease; register anew.
                    Ok(Ok(Some(_))) => continue 'grant,
                    _ => {
                        if last_ok.elapsed() > ttl {
                            j.online.store(false, Ordering::Relaxed);
                            continue 'grant;
                        }
                        j.etcd.reconnect().await;
                        client = j.etcd.client();
                        continue 'stream;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = j.stop.cancelled() => {
                        if j.revoke_on_stop.load(Ordering::SeqCst) {
                            let _ = client.lease_revoke(lease).await;
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// Reads the members' certificates (who may call as a member) and etcd's client URLs
/// (kept for the next start).
async fn refresh(state_dir: &Path, j: &Joined) {
    if let Ok(ms) = j.etcd.list::<MemberRecord>("members").await {
        let fps: HashSet<String> = ms
            .iter()
            .filter_map(|(_, m)| crate::service::trust::pem_fingerprint(&m.certificate))
            .collect();
        let changed = {
            let mut cur = j.member_fps.write().unwrap_or_else(|p| p.into_inner());
            let changed = *cur != fps;
            *cur = fps.clone();
            changed
        };
        if changed {
            // Kept for the next start (written only while this host is still a member).
            let d = keeper::cluster_dir(state_dir);
            if let Ok(Some(mut local)) = read_local(&d) {
                let mut v: Vec<String> = fps.into_iter().collect();
                v.sort();
                local.member_fps = v;
                if let Err(e) = write_local(&d, &local) {
                    tracing::warn!(error = %e, "keeping the members' certificates");
                }
            }
        }
    }
    if let Ok(vs) = voters(&j.etcd).await {
        for (_, _, p, learner) in vs {
            if !learner {
                j.etcd.add_endpoint(&client_url_of_peer(p));
            }
        }
    }
}

/// `POST /1.0/cluster/members {server_name}`: a join token, as a token operation.
pub async fn issue_token(c: &Services, name: &str) -> Result<Operation, DomainError> {
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    valid_member_name(name)?;
    if j.etcd.get::<MemberRecord>("members", name).await?.is_some() {
        return Err(DomainError::Conflict(format!(
            "The cluster already has a member named {name:?}"
        )));
    }
    let id = c
        .trust
        .identity()
        .ok_or_else(|| DomainError::Internal("the server has no certificate".into()))?
        .clone();
    let lifetime = match crate::store::config::get(&c.db, "cluster.join_token_expiry")? {
        Some(v) if !v.is_empty() => {
            crate::model::trust::parse_expiry(&v).map_err(DomainError::BadRequest)?
        }
        _ => DEFAULT_TOKEN_EXPIRY,
    };
    let secret = silo_proto::random::bytes::<32>()
        .map(hex::encode)
        .map_err(|e| DomainError::Internal(format!("no random bytes for the token: {e}")))?;
    let expires = time::OffsetDateTime::now_utc() + lifetime;
    let expires_at = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut client = j.etcd.client();
    let lease = client
        .lease_grant(lifetime.as_secs().max(1) as i64, None)
        .await
        .map_err(EtcdError::from)?
        .id();
    let rec = TokenRecord {
        server_name: name.to_string(),
        expires_at: expires_at.clone(),
    };
    j.etcd.put("tokens", &secret, &rec, Some(lease)).await?;
    let meta = json!({
        "serverName": name,
        "secret": secret,
        "fingerprint": id.fingerprint,
        "addresses": [j.local.address.to_string()],
        "expiresAt": expires_at,
    });
    let etcd = j.etcd.clone();
    let op = c.ops.start_full(
        crate::service::operations::Operations::new_id(),
        TOKEN_CLASS,
        "Requesting a cluster join token",
        BTreeMap::new(),
        meta,
        true,
        move |ctx| async move {
            let revoked = ctx.cancelled();
            tokio::select! {
                _ = tokio::time::sleep(lifetime) => Err(DomainError::Forbidden("Token has expired".into())),
                _ = revoked.cancelled() => {
                    // Revoked (`lxc cluster revoke-token`): the token goes with it.
                    let _ = etcd.delete("tokens", &secret).await;
                    Err(DomainError::BadRequest("The join token was revoked".into()))
                }
            }
        },
    );
    Ok(op)
}

/// The members as LXD shows them.
pub async fn members(c: &Services) -> Result<Vec<silo_api::ClusterMember>, DomainError> {
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    let records: Vec<(String, MemberRecord)> = j.etcd.list("members").await?;
    let alive: HashSet<String> = j.etcd.names("alive").await?.into_iter().collect();
    let beats: BTreeMap<String, String> = j.etcd.list("heartbeat").await?.into_iter().collect();
    let vs = voters(&j.etcd).await.unwrap_or_default();
    let leader = j.etcd.leader().await.unwrap_or(0);
    let mut out = Vec::new();
    for (name, m) in records {
        let addr: Option<SocketAddr> = m.address.parse().ok();
        let voter = addr.and_then(|a| vs.iter().find(|(_, _, p, _)| *p == peer_addr(a)));
        let mut roles = Vec::new();
        let database = matches!(voter, Some((_, _, _, false)));
        if database {
            roles.push("database".to_string());
            if voter.map(|v| v.0) == Some(leader) {
                roles.insert(0, "database-leader".to_string());
            }
        }
        let (status, message) = if m.state == "evacuated" {
            ("Evacuated", "Unavailable due to maintenance".to_string())
        } else if alive.contains(&name) {
            ("Online", "Fully operational".to_string())
        } else {
            let since = beats.get(&name).and_then(|t| {
                time::OffsetDateTime::parse(
                    t.trim_matches('"'),
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
            });
            let msg = match since {
                Some(t) => {
                    let secs = (time::OffsetDateTime::now_utc() - t).as_seconds_f64();
                    format!("No heartbeat for {secs:.1}s ({t})")
                }
                None => "No heartbeat yet".to_string(),
            };
            ("Offline", msg)
        };
        out.push(silo_api::ClusterMember {
            server_name: name,
            url: format!("https://{}", m.address),
            database,
            status: status.into(),
            message,
            architecture: m.architecture,
            failure_domain: if m.failure_domain.is_empty() {
                "default".into()
            } else {
                m.failure_domain
            },
            description: m.description,
            config: m.config,
            groups: vec!["default".into()],
            roles,
        });
    }
    Ok(out)
}

/// Whether `name` is ONLINE.
pub async fn is_online(j: &Joined, name: &str) -> Result<bool, DomainError> {
    Ok(j.etcd.names("alive").await?.iter().any(|n| n == name))
}

/// `DELETE /1.0/cluster/members/<name>`: removes a member (with `force`, even one that holds
/// instances or is unreachable).
pub async fn remove(c: &Services, name: &str, force: bool) -> Result<(), DomainError> {
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    let Some(rec) = j.etcd.get::<MemberRecord>("members", name).await? else {
        return Err(DomainError::NotFound(format!(
            "No cluster member named {name:?}"
        )));
    };
    if name == j.local.name {
        return Err(DomainError::BadRequest(
            "A member cannot remove itself: remove it through another member".into(),
        ));
    }
    let placed: Vec<(String, String)> = j.etcd.list("instances").await?;
    let held: Vec<&str> = placed
        .iter()
        .filter(|(_, m)| m == name)
        .map(|(i, _)| i.as_str())
        .collect();
    if !held.is_empty() && !force {
        return Err(DomainError::BadRequest(format!(
            "Member {name:?} still holds {} instance(s) ({}): move or delete them, or remove it with --force",
            held.len(),
            held.join(", ")
        )));
    }
    // Tell it first, while it is still trusted as a member: it stops its etcd and forgets
    // the cluster. An unreachable member needs --force.
    let told = peer::call(
        &rec.address,
        &crate::service::trust::pem_fingerprint(&rec.certificate).unwrap_or_default(),
        c.trust.identity(),
        hyper::Method::POST,
        "/internal/cluster/leave",
        None,
    )
    .await;
    if let Err(e) = &told {
        if !force {
            return Err(DomainError::BadRequest(format!(
                "Member {name:?} cannot be reached to leave ({e}): remove it with --force"
            )));
        }
    }
    if let Some(addr) = rec.address.parse::<SocketAddr>().ok().map(peer_addr) {
        for (id, _, p, _) in voters(&j.etcd).await? {
            if p == addr {
                j.etcd.member_remove(id).await.map_err(|e| {
                    DomainError::Unavailable(format!("removing {name} from etcd: {e}"))
                })?;
                j.etcd.remove_endpoint(&client_url_of_peer(p));
            }
        }
    }
    let mut ops = vec![
        TxnOp::delete(key("members", name), None),
        TxnOp::delete(key("alive", name), None),
        TxnOp::delete(key("heartbeat", name), None),
    ];
    for i in held {
        ops.push(TxnOp::delete(key("instances", i), None));
    }
    j.etcd.txn(Txn::new().and_then(ops)).await?;
    if rec.database {
        hand_over_database(c, &j).await;
    }
    c.events.lifecycle(
        "cluster-member-removed",
        &format!("/1.0/cluster/members/{name}"),
        json!({}),
    );
    Ok(())
}

/// Starts [`become_database`] in the background (once at a time): it can take longer than
/// the asking member waits (etcd's reconfiguration check, catching up).
pub fn become_database_soon(c: &Services) {
    if c.cluster.becoming.swap(true, Ordering::SeqCst) {
        return;
    }
    let c = Services::clone(c);
    tokio::spawn(async move {
        if let Err(e) = become_database(&c).await {
            tracing::warn!(error = %e, "taking up a database role");
        }
        c.cluster.becoming.store(false, Ordering::SeqCst);
    });
}

/// On the etcd leader's member, at each heartbeat: while the database has fewer than
/// [`MAX_VOTERS`] members and an ONLINE member holds none, hand it a role. Only the leader
/// asks, so two members never pick two different ones at once.
async fn keep_database_full(c: &Services, j: &Joined) {
    if !j.local.database {
        return;
    }
    let (Ok(vs), Ok(leader)) = (voters(&j.etcd).await, j.etcd.leader().await) else {
        return;
    };
    let me = peer_addr(j.local.address);
    if !vs.iter().any(|(id, _, p, _)| *id == leader && *p == me) {
        return;
    }
    if vs.iter().any(|(_, _, _, learner)| *learner) {
        // A member is catching up already.
        return;
    }
    hand_over_database(c, j).await;
}

/// After a database member left: asks an ONLINE member that is not one to take the role,
/// while the database has fewer than [`MAX_VOTERS`].
async fn hand_over_database(c: &Services, j: &Joined) {
    let Ok(members) = j.etcd.list::<MemberRecord>("members").await else {
        return;
    };
    if members.iter().filter(|(_, m)| m.database).count() >= MAX_VOTERS {
        return;
    }
    let alive: HashSet<String> = j
        .etcd
        .names("alive")
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (n, m) in members
        .iter()
        .filter(|(n, m)| !m.database && alive.contains(n))
    {
        let pin = crate::service::trust::pem_fingerprint(&m.certificate).unwrap_or_default();
        match peer::call(
            &m.address,
            &pin,
            c.trust.identity(),
            hyper::Method::POST,
            "/internal/cluster/database",
            None,
        )
        .await
        {
            Ok(_) => {
                tracing::info!(member = %n, "handed the database role over");
                return;
            }
            Err(e) => tracing::warn!(member = %n, error = %e, "could not take the database role"),
        }
    }
}

/// `/internal/cluster/leave`, from a member removing this one: forget the cluster.
pub async fn leave(c: &Services) -> Result<(), DomainError> {
    let _busy = c.cluster.busy.lock().await;
    if c.cluster.joined().is_none() {
        return Err(DomainError::BadRequest(
            "This server is not clustered".into(),
        ));
    }
    c.cluster.set(None);
    wipe_local(c).await;
    c.events
        .lifecycle("cluster-member-left", "/1.0/cluster", json!({}));
    Ok(())
}

/// `POST /1.0/cluster/members/<name>/state` on the member itself: `evacuate` stops its
/// running instances (instances on local storage cannot move: `migrate` is refused) and
/// keeps the scheduler off it; `restore` starts again what evacuate stopped.
pub async fn set_state(c: &Services, action: &str, mode: &str) -> Result<(), DomainError> {
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    let name = j.local.name.clone();
    let Some(mut rec) = j.etcd.get::<MemberRecord>("members", &name).await? else {
        return Err(DomainError::NotFound(format!(
            "No cluster member named {name:?}"
        )));
    };
    match action {
        "evacuate" => {
            if !matches!(mode, "" | "stop" | "auto") {
                return Err(DomainError::BadRequest(format!(
                    "evacuation mode {mode:?}: instances on local storage cannot move to another member; use \"stop\""
                )));
            }
            if rec.state == "evacuated" {
                return Err(DomainError::BadRequest(format!(
                    "Member {name:?} is already evacuated"
                )));
            }
            rec.state = "evacuated".into();
            j.etcd.put("members", &name, &rec, None).await?;
            let mut stopped = Vec::new();
            for i in instance_names(c)? {
                if crate::service::runtime::is_running(c, &i).await? {
                    crate::service::runtime::stop(c, &i, false, Some(Duration::from_secs(30)))
                        .await?;
                    stopped.push(i);
                }
            }
            j.etcd.put("evacuated", &name, &stopped, None).await?;
        }
        "restore" => {
            if rec.state != "evacuated" {
                return Err(DomainError::BadRequest(format!(
                    "Member {name:?} is not evacuated"
                )));
            }
            let stopped: Vec<String> = j.etcd.get("evacuated", &name).await?.unwrap_or_default();
            for i in &stopped {
                if crate::store::instances::exists(&c.db, i)?
                    && !crate::service::runtime::is_running(c, i).await?
                {
                    crate::service::runtime::start(c, i).await?;
                }
            }
            rec.state = String::new();
            j.etcd.put("members", &name, &rec, None).await?;
            j.etcd.delete("evacuated", &name).await?;
        }
        other => {
            return Err(DomainError::BadRequest(format!(
                "unknown action {other:?}: evacuate or restore"
            )))
        }
    }
    c.events.lifecycle(
        &format!("cluster-member-{action}d"),
        &format!("/1.0/cluster/members/{name}"),
        json!({}),
    );
    Ok(())
}

/// Records a new instance's placement on this member: a name is the cluster's once.
/// Standalone hosts have nothing to record.
pub async fn claim_instance(c: &Services, instance: &str) -> Result<(), DomainError> {
    let Some(j) = c.cluster.joined() else {
        return Ok(());
    };
    if j.etcd.create("instances", instance, &j.local.name).await? {
        Ok(())
    } else {
        let owner = j
            .etcd
            .get::<String>("instances", instance)
            .await?
            .unwrap_or_default();
        // A retried claim may find its own first attempt: a name claimed by this member is
        // this member's to settle (its `creating` set and database keep two local creates
        // of one name apart).
        if owner == j.local.name {
            return Ok(());
        }
        Err(DomainError::Conflict(format!(
            "Instance {instance:?} already exists (on member {owner})"
        )))
    }
}

/// Releases an instance's placement (deleted, or its create failed). When the database
/// cannot be reached now (this member cut off), it keeps trying in the background: a name
/// is never left claimed by an instance that does not exist.
pub async fn release_instance(c: &Services, instance: &str) {
    let Some(j) = c.cluster.joined() else {
        return;
    };
    if release_once(&j, instance).await.is_ok() {
        return;
    }
    let instance = instance.to_string();
    let c = Services::clone(c);
    tokio::spawn(async move {
        let mut pause = Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = j.stop.cancelled() => return,
            }
            // A create of the same name through this member since then owns the claim.
            if crate::store::instances::exists(&c.db, &instance).unwrap_or(true)
                || c.creating.is_claimed(&instance)
            {
                return;
            }
            match release_once(&j, &instance).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(instance, error = %e, "releasing the instance's name in the cluster; retrying");
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
}

async fn release_once(j: &Joined, instance: &str) -> Result<(), EtcdError> {
    let k = key("instances", instance);
    let me = serde_json::to_vec(&j.local.name).unwrap_or_default();
    // Only this member's claim: never another's of the same name.
    j.etcd
        .txn(
            Txn::new()
                .when([Compare::value(k.clone(), CompareOp::Equal, me)])
                .and_then([TxnOp::delete(k, None)]),
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_address_is_one_ip_and_a_port_with_two_more_above() {
        assert_eq!(
            parse_address("10.0.0.1:8443").unwrap(),
            "10.0.0.1:8443".parse().unwrap()
        );
        assert_eq!(
            parse_address("10.0.0.1").unwrap(),
            "10.0.0.1:8443".parse().unwrap()
        );
        assert!(parse_address("0.0.0.0:8443")
            .unwrap_err()
            .contains("wildcard"));
        assert!(parse_address("").unwrap_err().contains("not set"));
        assert!(parse_address("host:1").is_err());
        assert!(parse_address("10.0.0.1:65535").is_err());
        let a: SocketAddr = "10.0.0.1:8443".parse().unwrap();
        assert_eq!(client_url(a), "https://10.0.0.1:8444");
        assert_eq!(peer_addr(a), "10.0.0.1:8445".parse().unwrap());
        assert_eq!(client_url_of_peer(peer_addr(a)), client_url(a));
    }

    #[test]
    fn member_names_are_hostnames() {
        for ok in ["m1", "node-2", "a"] {
            assert!(valid_member_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "123", "a.b", &"x".repeat(64)] {
            assert!(valid_member_name(bad).is_err(), "{bad}");
        }
    }
}
