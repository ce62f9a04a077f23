//! Membership taken up, and kept: the lease this member holds while it is alive, and
//! what each renewal refreshes (the members' certificates, etcd's endpoints).

use super::*;

/// Takes up membership: registers it alive (so the caller sees it ONLINE at once when it
/// can) and starts the heartbeat.
pub(super) async fn install(c: &Services, local: LocalMember, etcd: Etcd) -> Arc<Joined> {
    let j = Arc::new(Joined {
        local,
        etcd,
        online: AtomicBool::new(false),
        stop: CancellationToken::new(),
        revoke_on_stop: AtomicBool::new(true),
        member_fps: RwLock::new(HashSet::new()),
        leadership: std::sync::atomic::AtomicI64::new(0),
    });
    *j.member_fps.write().unwrap_or_else(|p| p.into_inner()) =
        j.local.member_fps.iter().cloned().collect();
    c.cluster.set(Some(j.clone()));
    super::records::start(c, &j);
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
pub(super) async fn register(j: &Joined, ttl: Duration) -> Result<i64, EtcdError> {
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

/// Renews this member's lease and records its heartbeat, re-registering when the lease is
/// gone (the others declared it offline), stepping down (not ONLINE in its own eyes) when
/// the TTL passes without a renewal.
pub(super) async fn heartbeat(c: Services, j: Arc<Joined>, first: Option<i64>) {
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
        super::leader::campaign(&j, lease).await;
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
                        super::leader::campaign(&j, lease).await;
                        keep_database_full(&c, &j).await;
                    }
                    // TTL 0: "lease not found": the cluster declared this member offline
                    // and its alive key went with the lease; register anew.
                    Ok(Ok(Some(_))) => continue 'grant,
                    _ => {
                        if last_ok.elapsed() > ttl {
                            j.online.store(false, Ordering::Relaxed);
                            j.leadership.store(0, Ordering::Relaxed);
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
pub(super) async fn refresh(state_dir: &Path, j: &Joined) {
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
