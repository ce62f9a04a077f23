//! Instances moving between cluster members: one moved to another member
//! (`lxc move c1 --target m2`), and a member's evacuation and restore (its instances stopped,
//! or moved away and back). Above `lifecycle` and `migration`, which it drives, and above
//! `cluster`, whose placement it hands over.
//!
//! A move: the member holding the instance offers it as a migration source, hands its
//! placement to the target, and asks the target to pull it (the same migration a copy
//! between hosts uses); the instance here is deleted once the target has it. If the target
//! fails, the placement comes back and the instance stays here, untouched.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde_json::json;

use crate::service::cluster::{is_online, key, peer, routing, Joined, MemberRecord};
use crate::service::{DomainError, Services};

/// An API object as the JSON a member is sent.
fn typed<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, DomainError> {
    serde_json::to_value(v).map_err(|e| DomainError::Internal(e.to_string()))
}

/// A state change request.
fn state_put(action: &str, force: bool) -> silo_api::InstanceStatePut {
    silo_api::InstanceStatePut {
        action: action.into(),
        force,
        ..Default::default()
    }
}

fn instance_names(c: &Services) -> Result<Vec<String>, DomainError> {
    Ok(crate::store::instances::all(&c.db)?
        .into_iter()
        .map(|i| i.name)
        .collect())
}

/// `POST /1.0/cluster/members/<name>/state` on the member itself: `evacuate` stops its
/// running instances (`stop`, `auto`) or moves each to the member the scheduler picks and
/// starts it there again if it ran (`migrate`), and keeps the scheduler off it; `restore`
/// brings back what evacuate moved and starts again what it stopped.
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
            if !matches!(mode, "" | "stop" | "auto" | "migrate") {
                return Err(DomainError::BadRequest(format!(
                    "evacuation mode {mode:?}: one of stop, migrate, auto"
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
            if mode == "migrate" {
                let mut moved: Vec<(String, bool)> = Vec::new();
                for i in instance_names(c)? {
                    let to = routing::schedule(&j).await?;
                    move_to(c, &i, &to).await?;
                    let ran = stopped.contains(&i);
                    if ran {
                        on_member(
                            c,
                            &j,
                            &to,
                            hyper::Method::PUT,
                            &format!("/1.0/instances/{i}/state"),
                            Some(typed(&state_put("start", false))?),
                        )
                        .await?;
                    }
                    moved.push((i, ran));
                    j.etcd.put("evacuated-moved", &name, &moved, None).await?;
                }
            }
        }
        "restore" => {
            if rec.state != "evacuated" {
                return Err(DomainError::BadRequest(format!(
                    "Member {name:?} is not evacuated"
                )));
            }
            // What evacuate moved comes back (stopped where it is, moved, started here).
            let moved: Vec<(String, bool)> = j
                .etcd
                .get("evacuated-moved", &name)
                .await?
                .unwrap_or_default();
            for (i, ran) in &moved {
                let Some(owner) = j.etcd.get::<String>("instances", i).await? else {
                    continue;
                };
                if owner != name {
                    let state = format!("/1.0/instances/{i}/state");
                    let stop = typed(&state_put("stop", true))?;
                    let _ = on_member(c, &j, &owner, hyper::Method::PUT, &state, Some(stop)).await;
                    let mv = typed(&silo_api::InstancePost {
                        name: i.clone(),
                        migration: true,
                        ..Default::default()
                    })?;
                    on_member(
                        c,
                        &j,
                        &owner,
                        hyper::Method::POST,
                        &format!("/1.0/instances/{i}?target={name}"),
                        Some(mv),
                    )
                    .await?;
                }
                if *ran && !crate::service::runtime::is_running(c, i).await? {
                    crate::service::runtime::start(c, i).await?;
                }
            }
            j.etcd.delete("evacuated-moved", &name).await?;
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

/// Moves stopped instance `name` from this member to member `to`.
pub async fn move_to(c: &Services, name: &str, to: &str) -> Result<(), DomainError> {
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    let me = j.local.name.clone();
    if to == me {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is on member {me:?} already"
        )));
    }
    let target = routing::member(&j, to).await?;
    if !is_online(&j, to).await? {
        return Err(DomainError::Unavailable(format!(
            "Cluster member {to:?} is offline"
        )));
    }
    let inst = crate::service::instances::get(&c.db, name)?;
    if crate::service::runtime::is_running(c, name).await? {
        return Err(DomainError::BadRequest(format!(
            "instance {name:?} is running: stop it before moving it to another member (its state cannot travel)"
        )));
    }
    let id = c
        .trust
        .identity()
        .ok_or_else(|| DomainError::Internal("this member has no certificate".into()))?
        .clone();
    // The instance offered for pulling, as to any host.
    let op = crate::service::migration::source::start(
        c,
        crate::service::migration::source::SourceRequest {
            instance: name.to_string(),
            ..Default::default()
        },
    )
    .await?;
    let secrets: BTreeMap<String, String> = serde_json::from_value(op.metadata.clone())
        .map_err(|e| DomainError::Internal(format!("the migration's secrets: {e}")))?;
    // The placement is the target's before it creates: its claim finds the name its own.
    hand_placement(&j, name, &me, to).await?;
    let body = typed(&silo_api::InstancesPost {
        name: name.to_string(),
        kind: inst.kind.clone(),
        profiles: Some(inst.profiles.clone()),
        config: inst.config.clone(),
        devices: inst.devices.clone(),
        ephemeral: inst.ephemeral,
        description: inst.description.clone(),
        architecture: inst.architecture.clone(),
        source: silo_api::InstanceSource {
            kind: "migration".into(),
            mode: "pull".into(),
            operation: format!("https://{}/1.0/operations/{}", j.local.address, op.id),
            certificate: id.cert_pem.clone(),
            secrets,
            ..Default::default()
        },
        ..Default::default()
    })?;
    let r = async {
        let answer = peer::call_forwarded(
            &target.address,
            &target.pin,
            Some(&id),
            hyper::Method::POST,
            "/1.0/instances",
            Some(&body),
        )
        .await?;
        let op_id = answer["id"].as_str().unwrap_or_default().to_string();
        let done = peer::call_forwarded(
            &target.address,
            &target.pin,
            Some(&id),
            hyper::Method::GET,
            &format!("/1.0/operations/{op_id}/wait?timeout=3600"),
            None,
        )
        .await?;
        match done["err"].as_str() {
            Some(e) if !e.is_empty() => Err(e.to_string()),
            _ => Ok(()),
        }
    }
    .await;
    if let Err(e) = r {
        // Back to this member: the target released (or never took) the name.
        if let Err(p) = hand_placement_back(&j, name, to, &me).await {
            tracing::error!(instance = name, error = %p, "taking the instance's placement back after a failed move");
        }
        let _ = c.ops.cancel(&op.id);
        return Err(DomainError::BadRequest(format!(
            "moving {name:?} to member {to:?}: {e}"
        )));
    }
    // The target holds it now: the copy here goes (its placement is the target's, so the
    // delete leaves the name alone).
    crate::service::lifecycle::delete(c, name).await?;
    c.events.lifecycle(
        "instance-moved",
        &format!("/1.0/instances/{name}"),
        json!({"from": me, "to": to}),
    );
    Ok(())
}

/// Moves the placement of `name` from `from` to `to`, only if `from` holds it.
async fn hand_placement(j: &Joined, name: &str, from: &str, to: &str) -> Result<(), DomainError> {
    let k = key("instances", name);
    let enc = |s: &str| serde_json::to_vec(&s).unwrap_or_default();
    let t = Txn::new()
        .when([Compare::value(k.clone(), CompareOp::Equal, enc(from))])
        .and_then([TxnOp::put(k, enc(to), None)]);
    if j.etcd.txn(t).await? {
        Ok(())
    } else {
        Err(DomainError::Conflict(format!(
            "instance {name:?} is not placed on member {from:?}"
        )))
    }
}

/// Takes the placement back after a failed move: from the target, or, if the target's
/// failed create released it, from nobody.
async fn hand_placement_back(
    j: &Joined,
    name: &str,
    target: &str,
    me: &str,
) -> Result<(), DomainError> {
    if hand_placement(j, name, target, me).await.is_ok() {
        return Ok(());
    }
    if j.etcd.create("instances", name, &me.to_string()).await? {
        return Ok(());
    }
    Err(DomainError::Conflict(format!(
        "instance {name:?}'s placement was taken by another member during the move"
    )))
}

/// `method path` on member `member`, served there; waits for its operation when it answers
/// with one, and answers its error.
async fn on_member(
    c: &Services,
    j: &Joined,
    member: &str,
    method: hyper::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(), DomainError> {
    let m = routing::member(j, member).await?;
    let id = c.trust.identity();
    let fail = |e: String| DomainError::BadRequest(format!("on member {member:?}: {e}"));
    let answer = peer::call_forwarded(&m.address, &m.pin, id, method, path, body.as_ref())
        .await
        .map_err(fail)?;
    if let Some(op) = answer["id"]
        .as_str()
        .filter(|_| answer["class"].is_string())
    {
        let done = peer::call_forwarded(
            &m.address,
            &m.pin,
            id,
            hyper::Method::GET,
            &format!("/1.0/operations/{op}/wait?timeout=3600"),
            None,
        )
        .await
        .map_err(fail)?;
        if let Some(e) = done["err"].as_str().filter(|e| !e.is_empty()) {
            return Err(fail(e.to_string()));
        }
    }
    Ok(())
}
