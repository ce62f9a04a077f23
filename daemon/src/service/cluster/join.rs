//! Join tokens, and a join from both sides: the joiner's `PUT /1.0/cluster` and the
//! accepting member's `/internal/cluster/accept`.

use super::*;

/// What a joiner sends to `/internal/cluster/accept`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AcceptRequest {
    /// The joiner's name.
    pub name: String,
    /// Its API address.
    pub address: String,
    /// The token's secret.
    pub secret: String,
    /// Its silo version.
    pub version: String,
    /// Its architecture.
    pub architecture: String,
    /// Its HTTPS certificate (PEM).
    pub certificate: String,
}

/// What the accepting member answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptResponse {
    /// The cluster's CA.
    pub ca: pki::Ca,
    /// Whether the joiner runs an etcd of the database.
    pub database: bool,
    /// etcd's members, the joiner included when it is one (name, peer address).
    pub initial_cluster: Vec<(String, SocketAddr)>,
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
}

/// The member side of a join: checks the token and the joiner, records it, makes room for
/// it in etcd.
pub async fn accept(c: &Services, req: AcceptRequest) -> Result<AcceptResponse, DomainError> {
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    let etcd = &j.etcd;
    valid_member_name(&req.name)?;
    let Some(tok) = etcd.get::<TokenRecord>("tokens", &req.secret).await? else {
        return Err(DomainError::Forbidden(
            "No valid join token matches (wrong, already used, or expired)".into(),
        ));
    };
    if tok.server_name != req.name {
        return Err(DomainError::Forbidden(format!(
            "The join token is for a member named {:?}, not {:?}",
            tok.server_name, req.name
        )));
    }
    if req.version != version() {
        return Err(DomainError::BadRequest(format!(
            "The joining server runs silo {}, the cluster runs silo {}: join with the same version",
            req.version,
            version()
        )));
    }
    let address = parse_address(&req.address).map_err(|why| {
        DomainError::BadRequest(format!("server address {:?}: {why}", req.address))
    })?;
    let members: Vec<(String, MemberRecord)> = etcd.list("members").await?;
    if let Some((n, _)) = members
        .iter()
        .find(|(_, m)| m.address == address.to_string())
    {
        return Err(DomainError::BadRequest(format!(
            "The address {address} is already member {n}'s"
        )));
    }
    let database = members.iter().filter(|(_, m)| m.database).count() < MAX_VOTERS;
    let record = MemberRecord {
        name: req.name.clone(),
        address: address.to_string(),
        certificate: req.certificate.clone(),
        architecture: req.architecture.clone(),
        version: req.version.clone(),
        database,
        ..Default::default()
    };
    let body = serde_json::to_vec(&record).map_err(|e| DomainError::Internal(e.to_string()))?;
    let tk = key("tokens", &req.secret);
    let mk = key("members", &req.name);
    let ok = etcd
        .txn(
            Txn::new()
                .when([
                    Compare::version(tk.clone(), CompareOp::Greater, 0),
                    Compare::create_revision(mk.clone(), CompareOp::Equal, 0),
                ])
                .and_then([TxnOp::delete(tk, None), TxnOp::put(mk, body, None)]),
        )
        .await?;
    if !ok {
        return Err(
            if etcd
                .get::<MemberRecord>("members", &req.name)
                .await?
                .is_some()
            {
                DomainError::Conflict(format!(
                    "The cluster already has a member named {:?}",
                    req.name
                ))
            } else {
                DomainError::Forbidden("The join token was used meanwhile".into())
            },
        );
    }
    let undo = || async {
        let _ = etcd.delete("members", &req.name).await;
    };
    let ca = match pki::load_ca(&dir(c)) {
        Ok(ca) => ca,
        Err(e) => {
            undo().await;
            return Err(DomainError::Internal(e));
        }
    };
    let mut initial = Vec::new();
    if database {
        match add_learner(etcd, &req.name, address).await {
            Ok(i) => initial = i,
            Err(e) => {
                undo().await;
                return Err(e);
            }
        }
    }
    let endpoints = voters(etcd)
        .await?
        .into_iter()
        .filter(|(_, _, _, learner)| !learner)
        .map(|(_, _, p, _)| client_url_of_peer(p))
        .collect();
    c.events.lifecycle(
        "cluster-member-added",
        &format!("/1.0/cluster/members/{}", req.name),
        json!({}),
    );
    Ok(AcceptResponse {
        ca,
        database,
        initial_cluster: initial,
        endpoints,
    })
}

/// `PUT /1.0/cluster` with a join token: this host joins the token's cluster.
pub async fn join(c: &Services, put: silo_api::ClusterPut) -> Result<(), DomainError> {
    let _busy = c.cluster.busy.lock().await;
    if c.cluster.joined().is_some() {
        return Err(DomainError::BadRequest(
            "This server is already clustered".into(),
        ));
    }
    let raw = if put.cluster_token.is_empty() {
        put.cluster_password.as_str()
    } else {
        put.cluster_token.as_str()
    };
    let token = silo_api::ClusterMemberJoinToken::decode(raw).map_err(DomainError::BadRequest)?;
    let name = if put.server_name.is_empty() {
        token.server_name.clone()
    } else {
        put.server_name.clone()
    };
    valid_member_name(&name)?;
    if name != token.server_name {
        return Err(DomainError::BadRequest(format!(
            "The join token is for a member named {:?}, not {name:?}",
            token.server_name
        )));
    }
    if let Ok(exp) = time::OffsetDateTime::parse(
        &token.expires_at,
        &time::format_description::well_known::Rfc3339,
    ) {
        if exp < time::OffsetDateTime::now_utc() {
            return Err(DomainError::Forbidden(format!(
                "The join token expired at {}",
                token.expires_at
            )));
        }
    }
    let n = instance_names(c)?.len();
    if n > 0 {
        return Err(DomainError::BadRequest(format!(
            "This server has {n} instance(s): a member joins a cluster empty"
        )));
    }
    if !put.server_address.is_empty() {
        let cur = crate::store::config::get(&c.db, crate::service::server::HTTPS_ADDRESS)?
            .unwrap_or_default();
        if cur != put.server_address {
            let mut req = BTreeMap::new();
            req.insert(
                crate::service::server::HTTPS_ADDRESS.to_string(),
                json!(put.server_address),
            );
            crate::service::server::update(c, &req, true, None).await?;
        }
    }
    let address = own_address(c)?;
    let id = c
        .trust
        .identity()
        .ok_or_else(|| DomainError::Internal("this server has no certificate".into()))?
        .clone();
    let req = AcceptRequest {
        name: name.clone(),
        address: address.to_string(),
        secret: token.secret.clone(),
        version: version(),
        architecture: c.host.kernel_architecture.clone(),
        certificate: id.cert_pem.clone(),
    };
    let body = serde_json::to_value(&req).map_err(|e| DomainError::Internal(e.to_string()))?;
    let mut errors = Vec::new();
    let mut answer = None;
    for a in &token.addresses {
        match peer::call(
            a,
            &token.fingerprint,
            Some(&id),
            hyper::Method::POST,
            "/internal/cluster/accept",
            Some(&body),
        )
        .await
        {
            Ok(v) => {
                answer = Some(v);
                break;
            }
            Err(e) => errors.push(format!("{a}: {e}")),
        }
    }
    let Some(answer) = answer else {
        return Err(DomainError::BadRequest(format!(
            "Failed to join the cluster: {}",
            errors.join("; ")
        )));
    };
    let acc: AcceptResponse = serde_json::from_value(answer)
        .map_err(|e| DomainError::Internal(format!("the cluster's answer to the join: {e}")))?;
    let d = dir(c);
    let mut endpoints = acc.endpoints.clone();
    if acc.database {
        endpoints.insert(0, client_url(address));
    }
    let local = LocalMember {
        name: name.clone(),
        address,
        database: acc.database,
        endpoints,
        initial_cluster: acc.initial_cluster.clone(),
        member_fps: Vec::new(),
    };
    let r = async {
        let keeper = c.cluster.keeper()?.clone();
        keeper.request(KeeperRequest::Wipe).await?;
        pki::install(&d, &acc.ca, &name, address.ip()).map_err(DomainError::Internal)?;
        let etcd = if acc.database {
            keeper
                .request(KeeperRequest::Start(local.launch(false)))
                .await?;
            let etcd = connect_ready(&d, &acc.endpoints, Duration::from_secs(30)).await?;
            promote(&etcd, peer_addr(address)).await?;
            etcd
        } else {
            connect_ready(&d, &acc.endpoints, Duration::from_secs(30)).await?
        };
        // The cluster's pools and networks this host lacks, with its own keys.
        let made = super::definitions::make_for_joiner(c, &etcd, &put.member_config).await?;
        // This host's profiles, images and config give way to the cluster's: its copy is
        // made afresh from etcd once the membership is installed.
        let r = async {
            crate::store::replica::forget_revision(&c.db)?;
            write_local(&d, &local)
        }
        .await;
        if let Err(e) = r {
            super::definitions::undo_made(c, &made).await;
            return Err(e);
        }
        Ok::<_, DomainError>(etcd)
    }
    .await;
    match r {
        Ok(etcd) => {
            install(c, local, etcd).await;
            Ok(())
        }
        Err(e) => {
            // The cluster recorded the member: take it back out (best effort), so the
            // name can join again.
            if let Ok(etcd) = Etcd::connect(&d, &acc.endpoints).await {
                let _ = etcd.delete("members", &name).await;
                if let Ok(vs) = voters(&etcd).await {
                    for (id, _, p, _) in vs {
                        if p == peer_addr(address) {
                            let _ = etcd.member_remove(id).await;
                        }
                    }
                }
            }
            wipe_local(c).await;
            Err(e)
        }
    }
}

/// `POST /1.0/cluster/members {server_name}`: a join token, as a token operation.
pub async fn issue_token(c: &Services, name: &str) -> Result<Operation, DomainError> {
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    valid_member_name(name)?;
    if j.etcd.get::<MemberRecord>("members", name).await?.is_some() {
        return Err(DomainError::Conflict(format!(
            "The cluster already has a member named {name:?}"
        )));
    }
    let id = c
        .trust
        .identity()
        .ok_or_else(|| DomainError::Internal("the server has no certificate".into()))?
        .clone();
    let lifetime = match crate::store::config::get(&c.db, "cluster.join_token_expiry")? {
        Some(v) if !v.is_empty() => {
            crate::model::trust::parse_expiry(&v).map_err(DomainError::BadRequest)?
        }
        _ => DEFAULT_TOKEN_EXPIRY,
    };
    let secret = silo_proto::random::bytes::<32>()
        .map(hex::encode)
        .map_err(|e| DomainError::Internal(format!("no random bytes for the token: {e}")))?;
    let expires = time::OffsetDateTime::now_utc() + lifetime;
    let expires_at = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut client = j.etcd.client();
    let lease = client
        .lease_grant(lifetime.as_secs().max(1) as i64, None)
        .await
        .map_err(EtcdError::from)?
        .id();
    let rec = TokenRecord {
        server_name: name.to_string(),
        expires_at: expires_at.clone(),
    };
    j.etcd.put("tokens", &secret, &rec, Some(lease)).await?;
    let meta = serde_json::to_value(silo_api::ClusterJoinTokenMetadata {
        server_name: name.to_string(),
        secret: secret.clone(),
        fingerprint: id.fingerprint.clone(),
        addresses: vec![j.local.address.to_string()],
        expires_at,
    })
    .map_err(|e| DomainError::Internal(e.to_string()))?;
    let etcd = j.etcd.clone();
    let op = c.ops.start_full(
        crate::service::operations::Operations::new_id(),
        TOKEN_CLASS,
        "Requesting a cluster join token",
        BTreeMap::new(),
        meta,
        true,
        move |ctx| async move {
            let revoked = ctx.cancelled();
            tokio::select! {
                _ = tokio::time::sleep(lifetime) => Err(DomainError::Forbidden("Token has expired".into())),
                _ = revoked.cancelled() => {
                    // Revoked (`lxc cluster revoke-token`): the token goes with it.
                    let _ = etcd.delete("tokens", &secret).await;
                    Err(DomainError::BadRequest("The join token was revoked".into()))
                }
            }
        },
    );
    Ok(op)
}
