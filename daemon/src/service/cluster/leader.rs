//! The cluster's leader: the member holding `/silo/leader`, put under its heartbeat lease
//! by the first member to find the key free (so it goes when that member stops renewing,
//! and another takes it). Leader-only work (the database role's handover, refreshing and
//! expiring the cluster's images) runs there, and every write it makes is fenced: its
//! transaction also compares the key's `create_revision` with the one this member won,
//! so a member that lost the key (cut off, its lease expired) cannot write on as leader
//! after another took over, whatever it still believes.

use std::future::Future;
use std::sync::atomic::Ordering;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::Joined;
use crate::service::Services;
use crate::store::etcd::LEADER_KEY;
use crate::store::replica::FENCE;

/// Takes the leader key if it is free, and notes whether this member holds it (and since
/// which revision). Runs at each heartbeat, with the lease just renewed.
pub(super) async fn campaign(j: &Joined, lease: i64) {
    let me = serde_json::to_vec(&j.local.name).unwrap_or_default();
    let take = Txn::new()
        .when([Compare::create_revision(LEADER_KEY, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            LEADER_KEY,
            me.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let won = match j.etcd.txn_raw(take).await {
        Ok(r) if r.succeeded() => r.header().map(|h| h.revision()),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "campaigning for the cluster's leader key");
            return;
        }
    };
    let held = match won {
        Some(rev) => {
            tracing::info!(revision = rev, "this member leads the cluster");
            rev
        }
        None => match j
            .etcd
            .retried_get(LEADER_KEY.to_string(), etcd_client::GetOptions::new())
            .await
        {
            Ok(r) => match r.kvs().first() {
                Some(kv) if kv.value() == me.as_slice() && kv.lease() == lease => {
                    kv.create_revision()
                }
                _ => 0,
            },
            Err(_) => return,
        },
    };
    j.leadership.store(held, Ordering::Relaxed);
}

/// The revision this member's leadership began at, when it leads (and so fences with).
pub fn leadership(c: &Services) -> Option<i64> {
    let j = c.cluster.joined()?;
    match j.leadership.load(Ordering::Relaxed) {
        0 => None,
        rev if j.online() => Some(rev),
        _ => None,
    }
}

/// Runs leader-only work: at once on a standalone host; on the leader with its global
/// writes fenced by its leadership; not at all on another member (none when it is not).
pub async fn as_leader<F: Future>(c: &Services, work: F) -> Option<F::Output> {
    if c.db.is_standalone() {
        return Some(work.await);
    }
    let rev = leadership(c)?;
    Some(FENCE.scope(rev, work).await)
}
