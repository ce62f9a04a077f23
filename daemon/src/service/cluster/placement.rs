//! Where instances are: names claimed and released in the cluster, and a member's
//! evacuation and restore.

use super::*;

/// Refuses a member's state change that reached another member (forwarding sends it to the
/// member itself).
pub fn check_is_me(c: &Services, name: &str) -> Result<(), DomainError> {
    if c.cluster.member_name().as_deref() == Some(name) {
        Ok(())
    } else {
        Err(DomainError::NotFound(format!(
            "No cluster member named {name:?} here"
        )))
    }
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
                    let to = super::routing::schedule(&j).await?;
                    super::moves::move_to(c, &i, &to).await?;
                    let ran = stopped.contains(&i);
                    if ran {
                        on_member(
                            c,
                            &j,
                            &to,
                            hyper::Method::PUT,
                            &format!("/1.0/instances/{i}/state"),
                            Some(json!({"action": "start"})),
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
                    let stop = json!({"action": "stop", "force": true});
                    let _ = on_member(c, &j, &owner, hyper::Method::PUT, &state, Some(stop)).await;
                    let mv = json!({"name": i, "migration": true});
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

/// Records a new instance's placement on this member: a name is the cluster's once.
/// Standalone hosts have nothing to record.
pub async fn claim_instance(c: &Services, instance: &str) -> Result<(), DomainError> {
    let Some(j) = c.cluster.joined() else {
        return Ok(());
    };
    let claimed = match j.etcd.create("instances", instance, &j.local.name).await {
        Ok(b) => b,
        Err(e) => {
            // The claim may have landed before its answer was lost (the member cut off
            // as etcd took it): released, if it is this member's, once etcd answers again.
            let (c, instance) = (Services::clone(c), instance.to_string());
            tokio::spawn(async move {
                // After the failed request has let go of the name here.
                tokio::time::sleep(Duration::from_secs(1)).await;
                if !crate::store::instances::exists(&c.db, &instance).unwrap_or(true)
                    && !c.creating.is_claimed(&instance)
                {
                    release_instance(&c, &instance).await;
                }
            });
            return Err(e.into());
        }
    };
    if claimed {
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

pub(super) async fn release_once(j: &Joined, instance: &str) -> Result<(), EtcdError> {
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
    let m = super::routing::member(j, member).await?;
    let id = c.trust.identity();
    let fail = |e: String| DomainError::BadRequest(format!("on member {member:?}: {e}"));
    let answer = super::peer::call_forwarded(&m.address, &m.pin, id, method, path, body.as_ref())
        .await
        .map_err(fail)?;
    if let Some(op) = answer["id"]
        .as_str()
        .filter(|_| answer["class"].is_string())
    {
        let done = super::peer::call_forwarded(
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
