//! Storage pools and networks in a cluster, as LXD defines them: each member has its own
//! (its own directory, its own bridge), made from one cluster-wide definition. A create
//! with `--target MEMBER` records only that member's own keys (`source`, `parent`, ...) as
//! pending; the create without `--target` then makes the pool or network on every member
//! at once, each with the cluster's keys and its own. Changes and deletes without
//! `--target` go to every member. The HTTP side (sending to each member) is
//! `api/forward.rs`.

use super::*;
use crate::service::cluster::routing::PeerAddr;
use serde_json::Value;

/// What is defined cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defined {
    /// `/1.0/storage-pools`.
    Pool,
    /// `/1.0/networks`.
    Network,
}

impl Defined {
    /// The collection's path segment.
    pub fn segment(self) -> &'static str {
        match self {
            Defined::Pool => "storage-pools",
            Defined::Network => "networks",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Defined::Pool => "storage pool",
            Defined::Network => "network",
        }
    }

    /// The field naming the driver or type.
    fn kind_field(self) -> &'static str {
        match self {
            Defined::Pool => "driver",
            Defined::Network => "type",
        }
    }

    /// The keys that are each member's own (LXD's member-specific keys).
    pub fn member_keys(self) -> &'static [&'static str] {
        match self {
            Defined::Pool => &[
                "source",
                "size",
                "zfs.pool_name",
                "lvm.vg_name",
                "lvm.thinpool_name",
            ],
            Defined::Network => &[
                "bridge.external_interfaces",
                "parent",
                "bgp.ipv4.nexthop",
                "bgp.ipv6.nexthop",
            ],
        }
    }

    /// Which definition a path's first two segments name.
    pub fn of(segment: &str) -> Option<Defined> {
        match segment {
            "storage-pools" => Some(Defined::Pool),
            "networks" => Some(Defined::Network),
            _ => None,
        }
    }
}

/// One member's pending part of a definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Pending {
    /// The driver (pools) or type (networks) it was given with, if any.
    pub kind: String,
    /// The member's own keys.
    pub config: BTreeMap<String, String>,
}

fn pending_dir(what: Defined, name: &str) -> String {
    format!("pending-{}/{name}", what.segment())
}

fn joined(c: &Services) -> Result<Arc<Joined>, DomainError> {
    c.cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))
}

fn name_of(what: Defined, body: &Value) -> Result<String, DomainError> {
    let n = body["name"].as_str().unwrap_or_default();
    if n.is_empty() || n.contains('/') || n == "." || n == ".." {
        return Err(DomainError::BadRequest(format!(
            "invalid {} name {n:?}",
            what.what()
        )));
    }
    Ok(n.to_string())
}

fn config_of(body: &Value) -> Result<BTreeMap<String, String>, DomainError> {
    match &body["config"] {
        Value::Null => Ok(BTreeMap::new()),
        v => serde_json::from_value(v.clone())
            .map_err(|e| DomainError::BadRequest(format!("config: {e}"))),
    }
}

/// `POST /1.0/<pools|networks>?target=MEMBER`: records `member`'s own keys for the
/// definition `body` names, to be made when the definition is created without a target.
pub async fn record_pending(
    c: &Services,
    what: Defined,
    member: &str,
    body: &Value,
) -> Result<(), DomainError> {
    let j = joined(c)?;
    let name = name_of(what, body)?;
    if j.etcd
        .get::<MemberRecord>("members", member)
        .await?
        .is_none()
    {
        return Err(DomainError::NotFound(format!(
            "No cluster member named {member:?}"
        )));
    }
    let config = config_of(body)?;
    if let Some(k) = config
        .keys()
        .find(|k| !what.member_keys().contains(&k.as_str()))
    {
        return Err(DomainError::BadRequest(format!(
            "{k:?} is the cluster's key for the {} {name:?}, not member {member:?}'s: with --target only {} may be given",
            what.what(),
            what.member_keys().join(", ")
        )));
    }
    let exists = match what {
        Defined::Pool => crate::service::storage::get(&c.db, &name).is_ok(),
        Defined::Network => crate::service::networks::get(&c.db, &name).is_ok(),
    };
    if exists {
        return Err(DomainError::Conflict(format!(
            "the {} {name:?} is already created",
            what.what()
        )));
    }
    let p = Pending {
        kind: body[what.kind_field()]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        config,
    };
    j.etcd
        .put(&pending_dir(what, &name), member, &p, None)
        .await?;
    Ok(())
}

/// For `POST /1.0/<pools|networks>` without a target: the body each member is sent (the
/// cluster's keys and its own), once every member has its pending part and is ONLINE.
pub async fn plan_create(
    c: &Services,
    what: Defined,
    body: &Value,
) -> Result<Vec<(PeerAddr, Value)>, DomainError> {
    let j = joined(c)?;
    let name = name_of(what, body)?;
    let global = config_of(body)?;
    if let Some(k) = global
        .keys()
        .find(|k| what.member_keys().contains(&k.as_str()))
    {
        return Err(DomainError::BadRequest(format!(
            "{k:?} is each member's own key: give it with --target MEMBER for every member"
        )));
    }
    let pending: BTreeMap<String, Pending> = j
        .etcd
        .list(&pending_dir(what, &name))
        .await?
        .into_iter()
        .collect();
    if pending.is_empty() {
        return Err(DomainError::BadRequest(format!(
            "the {} {name:?} is not pending on any member (use --target MEMBER first, on each)",
            what.what()
        )));
    }
    let members: Vec<(String, MemberRecord)> = j.etcd.list("members").await?;
    let missing: Vec<&str> = members
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !pending.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        return Err(DomainError::BadRequest(format!(
            "the {} {name:?} is not defined on members {} (use --target MEMBER for each)",
            what.what(),
            missing.join(", ")
        )));
    }
    let kind = body[what.kind_field()].as_str().unwrap_or_default();
    let mut out = Vec::new();
    for (n, m) in members {
        if !is_online(&j, &n).await? {
            return Err(DomainError::Unavailable(format!(
                "cluster member {n:?} is offline: the {} {name:?} cannot be made on it",
                what.what()
            )));
        }
        let p = &pending[&n];
        if !p.kind.is_empty() && !kind.is_empty() && p.kind != kind {
            return Err(DomainError::BadRequest(format!(
                "the {} {name:?} is pending on member {n:?} as {:?}, not {kind:?}",
                what.what(),
                p.kind
            )));
        }
        let mut cfg = global.clone();
        cfg.extend(p.config.clone());
        let mut b = body.clone();
        b["config"] =
            serde_json::to_value(&cfg).map_err(|e| DomainError::Internal(e.to_string()))?;
        if kind.is_empty() && !p.kind.is_empty() {
            b[what.kind_field()] = Value::String(p.kind.clone());
        }
        out.push((PeerAddr::from(&m), b));
    }
    Ok(out)
}

/// Forgets a definition's pending parts (it was made on every member).
pub async fn clear_pending(c: &Services, what: Defined, name: &str) -> Result<(), DomainError> {
    let j = joined(c)?;
    for m in j.etcd.names(&pending_dir(what, name)).await? {
        j.etcd.delete(&pending_dir(what, name), &m).await?;
    }
    Ok(())
}

/// Every member, ONLINE, to send a change or delete to; an OFFLINE one refuses it whole
/// (it would miss the change).
pub async fn everyone(
    c: &Services,
    what: Defined,
    name: &str,
) -> Result<Vec<PeerAddr>, DomainError> {
    let j = joined(c)?;
    let members: Vec<(String, MemberRecord)> = j.etcd.list("members").await?;
    let mut out = Vec::new();
    for (n, m) in members {
        if !is_online(&j, &n).await? {
            return Err(DomainError::Unavailable(format!(
                "cluster member {n:?} is offline: the {} {name:?} cannot be changed on every member",
                what.what()
            )));
        }
        out.push(PeerAddr::from(&m));
    }
    Ok(out)
}

/// A pool or network as the cluster defines it (its keys without any member's own): what
/// a member that joins later makes for itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Definition {
    /// The driver (pools) or type (networks).
    pub kind: String,
    /// Its description.
    pub description: String,
    /// The cluster's keys.
    pub config: BTreeMap<String, String>,
}

fn defined_dir(what: Defined) -> String {
    format!("defined-{}", what.segment())
}

impl Defined {
    fn without_member_keys(self, cfg: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        cfg.iter()
            .filter(|(k, _)| !self.member_keys().contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Records what the cluster defines as `name` (after a create or change on every member),
/// from this member's own copy of it.
pub async fn record_defined(c: &Services, what: Defined, name: &str) -> Result<(), DomainError> {
    let j = joined(c)?;
    let d = local_definition(c, what, name)?;
    j.etcd.put(&defined_dir(what), name, &d, None).await?;
    Ok(())
}

fn local_definition(c: &Services, what: Defined, name: &str) -> Result<Definition, DomainError> {
    Ok(match what {
        Defined::Pool => {
            let p = crate::service::storage::get(&c.db, name)?;
            Definition {
                kind: p.driver,
                description: p.description,
                config: what.without_member_keys(&p.config),
            }
        }
        Defined::Network => {
            let n = crate::service::networks::get(&c.db, name)?;
            Definition {
                kind: n.kind,
                description: n.description,
                config: what.without_member_keys(&n.config),
            }
        }
    })
}

/// Forgets a definition (deleted on every member).
pub async fn forget_defined(c: &Services, what: Defined, name: &str) -> Result<(), DomainError> {
    let j = joined(c)?;
    j.etcd.delete(&defined_dir(what), name).await?;
    Ok(())
}

/// At bootstrap: this host's pools and networks become the cluster's definitions.
pub async fn seed(c: &Services, etcd: &Etcd) -> Result<(), DomainError> {
    for p in crate::service::storage::list(&c.db)? {
        let d = local_definition(c, Defined::Pool, &p.name)?;
        etcd.put(&defined_dir(Defined::Pool), &p.name, &d, None)
            .await?;
    }
    for n in crate::service::networks::list(&c.db)? {
        let d = local_definition(c, Defined::Network, &n.name)?;
        etcd.put(&defined_dir(Defined::Network), &n.name, &d, None)
            .await?;
    }
    Ok(())
}

fn entity(what: Defined) -> &'static str {
    match what {
        Defined::Pool => "storage-pool",
        Defined::Network => "network",
    }
}

/// What a joiner must give for each definition (`GET /1.0/cluster`'s `member_config`): the
/// member keys its driver takes.
pub async fn member_config(
    c: &Services,
) -> Result<Vec<silo_api::ClusterMemberConfigKey>, DomainError> {
    let Some(j) = c.cluster.joined() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for what in [Defined::Pool, Defined::Network] {
        for (name, d) in j.etcd.list::<Definition>(&defined_dir(what)).await? {
            let keys: &[&str] = match (what, d.kind.as_str()) {
                (Defined::Pool, "btrfs") => &["source", "size"],
                (Defined::Pool, _) => &["source"],
                (Defined::Network, "macvlan" | "physical") => &["parent"],
                (Defined::Network, _) => &["bridge.external_interfaces"],
            };
            for k in keys {
                out.push(silo_api::ClusterMemberConfigKey {
                    entity: entity(what).into(),
                    name: name.clone(),
                    key: k.to_string(),
                    value: String::new(),
                    description: format!("\"{k}\" property for {} \"{name}\"", entity(what)),
                });
            }
        }
    }
    Ok(out)
}

/// A joiner makes the cluster's pools and networks it does not have, each with the cluster's
/// keys and the values `member_config` gives it; what it made (to undo if the join fails).
pub async fn make_for_joiner(
    c: &Services,
    etcd: &Etcd,
    member_config: &[silo_api::ClusterMemberConfigKey],
) -> Result<Vec<(Defined, String)>, DomainError> {
    let mut made = Vec::new();
    let r = async {
        // Pools first: a network never needs a pool, a profile may need both.
        for what in [Defined::Pool, Defined::Network] {
            for (name, d) in etcd.list::<Definition>(&defined_dir(what)).await? {
                let exists = match what {
                    Defined::Pool => crate::service::storage::get(&c.db, &name).is_ok(),
                    Defined::Network => crate::service::networks::get(&c.db, &name).is_ok(),
                };
                if exists {
                    continue;
                }
                let mut cfg = d.config.clone();
                for k in member_config
                    .iter()
                    .filter(|k| k.entity == entity(what) && k.name == name && !k.value.is_empty())
                {
                    cfg.insert(k.key.clone(), k.value.clone());
                }
                match what {
                    Defined::Pool => {
                        crate::service::storage::create(
                            &c.db,
                            &c.helpers,
                            &name,
                            &d.kind,
                            &d.description,
                            cfg,
                        )
                        .await?;
                    }
                    Defined::Network => {
                        crate::service::networks::create(
                            &c.db,
                            &c.helpers,
                            &name,
                            &d.kind,
                            &d.description,
                            cfg,
                        )
                        .await?;
                    }
                }
                made.push((what, name));
            }
        }
        Ok::<_, DomainError>(())
    }
    .await;
    match r {
        Ok(()) => Ok(made),
        Err(e) => {
            undo_made(c, &made).await;
            Err(DomainError::BadRequest(format!(
                "making the cluster's pools and networks on this member: {e}"
            )))
        }
    }
}

/// Deletes what [`make_for_joiner`] made (a join that failed after it).
pub async fn undo_made(c: &Services, made: &[(Defined, String)]) {
    for (what, name) in made.iter().rev() {
        let r = match what {
            Defined::Pool => crate::service::storage::delete(&c.db, &c.helpers, name).await,
            Defined::Network => crate::service::networks::delete(&c.db, &c.helpers, name)
                .await
                .map(|_| ()),
        };
        if let Err(e) = r {
            tracing::warn!(name, error = %e, "undoing a pool or network made for a failed join");
        }
    }
}
