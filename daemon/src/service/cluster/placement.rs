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
