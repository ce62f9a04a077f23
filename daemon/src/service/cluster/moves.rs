//! An instance moved to another member (`lxc move c1 --target m2`): the member holding it
//! offers it as a migration source, hands its placement to the target, and asks the target
//! to pull it (the same migration a copy between hosts uses); the instance here is deleted
//! once the target has it. If the target fails, the placement comes back and the instance
//! stays here, untouched.

use super::*;

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
    let body = json!({
        "name": name,
        "architecture": inst.architecture,
        "config": inst.config,
        "devices": inst.devices,
        "profiles": inst.profiles,
        "ephemeral": inst.ephemeral,
        "description": inst.description,
        "type": inst.kind,
        "source": {
            "type": "migration",
            "mode": "pull",
            "operation": format!("https://{}/1.0/operations/{}", j.local.address, op.id),
            "certificate": id.cert_pem,
            "secrets": secrets,
        },
    });
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
