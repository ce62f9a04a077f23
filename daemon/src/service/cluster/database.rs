//! The database role: etcd's voters, a learner added and promoted, the role handed over
//! when a database member leaves.

use super::*;

/// etcd's voters and their client URLs, from etcd's own member list.
pub(super) async fn voters(
    etcd: &Etcd,
) -> Result<Vec<(u64, String, SocketAddr, bool)>, DomainError> {
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

pub(super) fn client_url_of_peer(peer: SocketAddr) -> String {
    format!(
        "https://{}",
        SocketAddr::new(peer.ip(), peer.port().wrapping_sub(1))
    )
}

/// Adds the member `name` at `address` to etcd as a learner; answers etcd's members with
/// it (name, peer address), what its etcd starts with.
pub(super) async fn add_learner(
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

/// Promotes the learner at `peer` once it has caught up (etcd refuses until then).
pub(super) async fn promote(etcd: &Etcd, peer: SocketAddr) -> Result<(), DomainError> {
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

/// On the cluster's leader, at each heartbeat: while the database has fewer than
/// [`MAX_VOTERS`] members and an ONLINE member holds none, hand it a role. Only the leader
/// asks, and its choice is a write fenced by its leadership, so two members never pick two
/// different ones at once.
pub(super) async fn keep_database_full(c: &Services, j: &Joined) {
    if j.leadership.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Ok(vs) = voters(&j.etcd).await else {
        return;
    };
    if vs.iter().any(|(_, _, _, learner)| *learner) {
        // A member is catching up already.
        return;
    }
    hand_over_database(c, j).await;
}

/// After a database member left: asks an ONLINE member that is not one to take the role,
/// while the database has fewer than [`MAX_VOTERS`].
pub(super) async fn hand_over_database(c: &Services, j: &Joined) {
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
        // The choice, written under the leader key's revision: refused (and so not acted
        // on) if this member no longer leads.
        let rev = j.leadership.load(Ordering::Relaxed);
        if rev == 0 {
            return;
        }
        let choice = serde_json::to_vec(n).unwrap_or_default();
        let t = Txn::new()
            .when([Compare::create_revision(
                crate::store::etcd::LEADER_KEY,
                CompareOp::Equal,
                rev,
            )])
            .and_then([TxnOp::put(key("handover", "database"), choice, None)]);
        match j.etcd.txn(t).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!("no longer the cluster's leader: leaving the database role's handover to the new one");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording the database role's handover");
                return;
            }
        }
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
