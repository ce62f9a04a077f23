//! Where a call goes in a cluster: to this member, to the member an instance is placed
//! on, a create to the member `?target=` or the scheduler picks, an operation's calls to
//! the member that runs it. The HTTP side (forwarding, splicing, merging listings) is
//! `api/forward.rs`.

use std::collections::BTreeMap;

use super::definitions::Defined;
use super::{Joined, MemberRecord};
use crate::service::{DomainError, Services};

/// Where a call goes.
#[derive(Debug)]
pub enum Route {
    /// Served here.
    Local,
    /// Served by this member.
    Member(String),
    /// An instance listing: merged from every member.
    ListAll,
    /// A profile read: served here, its `used_by` merged from every member (instances'
    /// definitions are with their members).
    ProfileUsedBy,
    /// A profile delete: served here once every other member says none of its instances
    /// uses the profile.
    ProfileUnused,
    /// A pool or network created with `--target`: that member's own keys, pending.
    Pending(Defined, String),
    /// A pool or network created without `--target`: made on every member.
    CreateEverywhere(Defined),
    /// A pool or network changed or deleted without `--target`: on every member.
    Everywhere(Defined, String),
}

/// Decides where `method path` (with `?target=`) goes.
pub async fn decide(
    d: &Services,
    j: &Joined,
    method: axum::http::Method,
    path: String,
    target: Option<String>,
) -> Result<Route, DomainError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.first() == Some(&"internal") {
        return Ok(Route::Local);
    }
    let me = &j.local.name;
    let target = target.filter(|t| !t.is_empty());
    match segs.as_slice() {
        // Every member relays the others' events: a client (which may name a target member)
        // sees every member's events on the member it talks to.
        ["1.0", "events"] => Ok(Route::Local),
        ["1.0", "instances" | "containers"] if method == axum::http::Method::GET => {
            Ok(Route::ListAll)
        }
        ["1.0", "instances" | "containers"] if method == axum::http::Method::POST => {
            let to = match target {
                Some(t) => t,
                None => schedule(j).await?,
            };
            check_online(j, &to).await?;
            check_not_evacuated(j, &to).await?;
            Ok(if &to == me {
                Route::Local
            } else {
                Route::Member(to)
            })
        }
        ["1.0", "instances" | "containers", name, ..] => {
            match j.etcd.get::<String>("instances", name).await? {
                Some(owner) if &owner != me => {
                    check_online(j, &owner).await?;
                    Ok(Route::Member(owner))
                }
                _ => Ok(Route::Local),
            }
        }
        ["1.0", seg] if method == axum::http::Method::POST && Defined::of(seg).is_some() => {
            let what = Defined::of(seg).ok_or_else(|| DomainError::Internal(seg.to_string()))?;
            Ok(match target {
                Some(t) => Route::Pending(what, t),
                None => Route::CreateEverywhere(what),
            })
        }
        ["1.0", seg, name]
            if target.is_none()
                && Defined::of(seg).is_some()
                && matches!(
                    method,
                    axum::http::Method::PUT
                        | axum::http::Method::PATCH
                        | axum::http::Method::DELETE
                ) =>
        {
            let what = Defined::of(seg).ok_or_else(|| DomainError::Internal(seg.to_string()))?;
            Ok(Route::Everywhere(what, name.to_string()))
        }
        ["1.0", "profiles", _] if method == axum::http::Method::GET => Ok(Route::ProfileUsedBy),
        ["1.0", "profiles", _] if method == axum::http::Method::DELETE => Ok(Route::ProfileUnused),
        // A member renames itself.
        ["1.0", "cluster", "members", name]
            if method == axum::http::Method::POST && *name != me.as_str() =>
        {
            check_member_exists(j, name).await?;
            check_online(j, name).await?;
            Ok(Route::Member(name.to_string()))
        }
        // A member's state is changed by the member itself.
        ["1.0", "cluster", "members", name, "state"] if *name != me.as_str() => {
            check_member_exists(j, name).await?;
            Ok(Route::Member(name.to_string()))
        }
        ["1.0", "operations", id, ..] => {
            if d.ops.get(id).is_ok() {
                return Ok(Route::Local);
            }
            if let Some(m) = d.cluster.op_member(id) {
                return Ok(Route::Member(m));
            }
            Ok(match find_operation(d, j, id).await {
                Some(m) => Route::Member(m),
                None => Route::Local,
            })
        }
        _ => match target {
            Some(t) if &t != me => {
                check_online(j, &t).await?;
                Ok(Route::Member(t))
            }
            _ => Ok(Route::Local),
        },
    }
}

/// The ONLINE member (not evacuated) with the fewest instances; ties go to the first name.
pub async fn schedule(j: &Joined) -> Result<String, DomainError> {
    let members: Vec<(String, MemberRecord)> = j.etcd.list("members").await?;
    let alive: std::collections::HashSet<String> =
        j.etcd.names("alive").await?.into_iter().collect();
    let placed: Vec<(String, String)> = j.etcd.list("instances").await?;
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, m) in &members {
        if alive.contains(n) && m.state.is_empty() && super::members::schedulable(m) {
            count.insert(n.as_str(), 0);
        }
    }
    for (_, owner) in &placed {
        if let Some(c) = count.get_mut(owner.as_str()) {
            *c += 1;
        }
    }
    count
        .into_iter()
        .min_by_key(|(_, c)| *c)
        .map(|(n, _)| n.to_string())
        .ok_or_else(|| {
            DomainError::Unavailable("No cluster member is online to place the instance on".into())
        })
}

async fn check_member_exists(j: &Joined, name: &str) -> Result<(), DomainError> {
    match j.etcd.get::<MemberRecord>("members", name).await? {
        Some(_) => Ok(()),
        None => Err(DomainError::NotFound(format!(
            "No cluster member named {name:?}"
        ))),
    }
}

async fn check_online(j: &Joined, name: &str) -> Result<(), DomainError> {
    if j.etcd.get::<MemberRecord>("members", name).await?.is_none() {
        return Err(DomainError::NotFound(format!(
            "No cluster member named {name:?}"
        )));
    }
    // This member asks its own lease flag: it steps down when the lease lapsed unrenewed.
    let online = if name == j.local.name {
        j.online()
    } else {
        super::is_online(j, name).await?
    };
    if !online {
        return Err(DomainError::Unavailable(format!(
            "Cluster member {name:?} is offline"
        )));
    }
    Ok(())
}

/// New instances are not placed on an evacuated member (its own still answer there).
async fn check_not_evacuated(j: &Joined, name: &str) -> Result<(), DomainError> {
    match j.etcd.get::<MemberRecord>("members", name).await? {
        Some(m) if m.state == "evacuated" => Err(DomainError::BadRequest(format!(
            "Cluster member {name:?} is evacuated: new instances go elsewhere until it is restored"
        ))),
        _ => Ok(()),
    }
}

/// Asks the other members which one runs operation `id`.
async fn find_operation(d: &Services, j: &Joined, id: &str) -> Option<String> {
    let members: Vec<(String, MemberRecord)> = j.etcd.list("members").await.ok()?;
    for (n, m) in members {
        if n == j.local.name {
            continue;
        }
        let pin = crate::service::trust::pem_fingerprint(&m.certificate).unwrap_or_default();
        let r = super::peer::call(
            &m.address,
            &pin,
            d.trust.identity(),
            hyper::Method::GET,
            &format!("/1.0/operations/{id}"),
            None,
        )
        .await;
        if r.is_ok() {
            d.cluster.record_op(id, &n);
            return Some(n);
        }
    }
    None
}

/// How to reach a member's API: its address and the certificate fingerprint it is pinned to.
#[derive(Debug, Clone)]
pub struct PeerAddr {
    /// Its name.
    pub name: String,
    /// `ip:port`.
    pub address: String,
    /// Its HTTPS certificate's fingerprint.
    pub pin: String,
}

impl From<&MemberRecord> for PeerAddr {
    fn from(m: &MemberRecord) -> PeerAddr {
        PeerAddr {
            name: m.name.clone(),
            address: m.address.clone(),
            pin: crate::service::trust::pem_fingerprint(&m.certificate).unwrap_or_default(),
        }
    }
}

/// How to reach member `name`.
pub async fn member(j: &Joined, name: &str) -> Result<PeerAddr, DomainError> {
    j.etcd
        .get::<MemberRecord>("members", name)
        .await?
        .map(|m| PeerAddr::from(&m))
        .ok_or_else(|| DomainError::NotFound(format!("No cluster member named {name:?}")))
}

/// What an instance listing merges: the members, which are alive, where instances are.
#[derive(Debug)]
pub struct Listing {
    /// Every member: name and how to reach it.
    pub members: Vec<(String, PeerAddr)>,
    /// The members holding their lease.
    pub alive: std::collections::HashSet<String>,
    /// (instance, member) placements.
    pub placed: Vec<(String, String)>,
}

/// Reads what [`Listing`] holds.
pub async fn listing(j: &Joined) -> Result<Listing, DomainError> {
    Ok(Listing {
        members: j
            .etcd
            .list::<MemberRecord>("members")
            .await?
            .iter()
            .map(|(n, m)| (n.clone(), PeerAddr::from(m)))
            .collect(),
        alive: j.etcd.names("alive").await?.into_iter().collect(),
        placed: j.etcd.list("instances").await?,
    })
}
