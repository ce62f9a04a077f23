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
//!
//! Modules: [`join`] (tokens, join, accept), [`database`] (voters, learners, the role handed
//! over), [`heartbeat`] (the lease, refreshes), [`placement`] (names claimed and released,
//! evacuate and restore), [`routing`] (where a call goes), [`keeper`], [`pki`], [`peer`];
//! this file holds the membership itself: bootstrap, resume, the member list, removal.

mod database;
pub mod definitions;
mod heartbeat;
mod join;
pub mod keeper;
pub mod leader;
pub mod members;
pub mod peer;
pub mod pki;
mod placement;
pub mod records;
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

pub use database::become_database_soon;
use database::{
    add_learner, client_url_of_peer, hand_over_database, keep_database_full, promote, voters,
};
use heartbeat::install;
pub use join::{accept, issue_token, join, AcceptRequest, AcceptResponse};
pub use placement::{check_is_me, claim_instance, release_instance};

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
    /// The leader key's `create_revision` while this member holds it (0: it does not).
    leadership: std::sync::atomic::AtomicI64,
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

pub use crate::service::host::location;

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
        crate::service::host::set_location(j.as_ref().map(|j| j.local.name.clone()));
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

/// Whether the host with state dir `state` is a cluster member (its membership file is
/// there), before anything reads it.
pub fn is_member(state: &Path) -> bool {
    keeper::cluster_dir(state).join(MEMBER_FILE).exists()
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
    records::stop(c);
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
        // This host's instances are now the cluster's, placed here; its profiles, images
        // and config the cluster's records.
        for i in instance_names(c)? {
            etcd.put("instances", &i, &name.to_string(), None).await?;
        }
        crate::store::replica::Replica::seed(&etcd, &c.db).await?;
        definitions::seed(c, &etcd).await?;
        crate::store::replica::forget_revision(&c.db)?;
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
