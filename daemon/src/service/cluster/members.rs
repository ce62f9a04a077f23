//! A member's own record: its config, description and failure domain
//! (`PUT`/`PATCH /1.0/cluster/members/<name>`, `silo cluster set/get/edit`), and its rename
//! (`POST`, done by the member itself: its lease, heartbeat and membership file carry its name).

use super::*;
use serde_json::Value;

/// The member config keys LXD 5.0 has (besides `user.*`), with what each takes.
const KEYS: &[(&str, &[&str])] = &[("scheduler.instance", &["all", "manual", "group"])];

/// Member `name`'s record and its `mod_revision` (what a guarded write compares).
async fn read_member(j: &Joined, name: &str) -> Result<(MemberRecord, i64), DomainError> {
    let r = j
        .etcd
        .retried_get(key("members", name), etcd_client::GetOptions::new())
        .await?;
    let Some(kv) = r.kvs().first() else {
        return Err(DomainError::NotFound(format!(
            "No cluster member named {name:?}"
        )));
    };
    let rec = serde_json::from_slice(kv.value())
        .map_err(|e| DomainError::Internal(format!("member {name:?}'s record: {e}")))?;
    Ok((rec, kv.mod_revision()))
}

/// Checks a member's config.
pub fn check_config(cfg: &BTreeMap<String, String>) -> Result<(), DomainError> {
    for (k, v) in cfg {
        if k.starts_with("user.") {
            continue;
        }
        match KEYS.iter().find(|(key, _)| key == k) {
            Some((_, allowed)) if v.is_empty() || allowed.contains(&v.as_str()) => {}
            Some((_, allowed)) => {
                return Err(DomainError::BadRequest(format!(
                    "invalid value {v:?} for member config key {k:?}: one of {}",
                    allowed.join(", ")
                )))
            }
            None => {
                return Err(DomainError::BadRequest(format!(
                    "unknown member config key {k:?}"
                )))
            }
        }
    }
    Ok(())
}

/// Whether the scheduler may place instances on member `m` (`scheduler.instance` is not
/// `manual`: those take instances only with `--target`).
pub fn schedulable(m: &MemberRecord) -> bool {
    m.config.get("scheduler.instance").map(String::as_str) != Some("manual")
}

/// Replaces member `name`'s writable fields. Roles are the database's to decide (a change
/// is refused) and cluster groups are not kept (only `default`).
pub async fn update(
    c: &Services,
    name: &str,
    put: silo_api::ClusterMemberPut,
) -> Result<(), DomainError> {
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    check_config(&put.config)?;
    if put.groups.iter().any(|g| g != "default") {
        return Err(DomainError::BadRequest(format!(
            "cluster groups are not supported: member {name:?} can only be in \"default\", not {:?}",
            put.groups
        )));
    }
    let current = members(c)
        .await?
        .into_iter()
        .find(|m| m.server_name == name)
        .ok_or_else(|| DomainError::NotFound(format!("No cluster member named {name:?}")))?;
    let mut asked: Vec<&String> = put.roles.iter().collect();
    let mut has: Vec<&String> = current.roles.iter().collect();
    asked.sort();
    has.sort();
    if !put.roles.is_empty() && asked != has {
        return Err(DomainError::BadRequest(format!(
            "member {name:?}'s roles {:?} are set by the cluster's database, not by hand",
            current.roles
        )));
    }
    let failure_domain = if put.failure_domain == "default" {
        String::new()
    } else {
        put.failure_domain.clone()
    };
    for _ in 0..8 {
        let k = key("members", name);
        let (mut rec, rev) = read_member(&j, name).await?;
        rec.config = put.config.clone();
        rec.description = put.description.clone();
        rec.failure_domain = failure_domain.clone();
        let body = serde_json::to_vec(&rec).map_err(|e| DomainError::Internal(e.to_string()))?;
        let t = Txn::new()
            .when([Compare::mod_revision(k.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(k, body, None)]);
        if j.etcd.txn(t).await? {
            c.events.lifecycle(
                "cluster-member-updated",
                &format!("/1.0/cluster/members/{name}"),
                json!({}),
            );
            return Ok(());
        }
    }
    Err(DomainError::Conflict(format!(
        "member {name:?} kept changing under this update; try again"
    )))
}

/// `PATCH`: the fields `patch` gives over the current ones (config keys merged, a `null`
/// value removing its key, as LXD's decoder merges into a map).
pub async fn patch(c: &Services, name: &str, patch: &Value) -> Result<(), DomainError> {
    let cur = members(c)
        .await?
        .into_iter()
        .find(|m| m.server_name == name)
        .ok_or_else(|| DomainError::NotFound(format!("No cluster member named {name:?}")))?;
    let mut put = silo_api::ClusterMemberPut::from(cur);
    if let Some(cfg) = patch.get("config").and_then(|v| v.as_object()) {
        for (k, v) in cfg {
            match v.as_str() {
                Some(v) => {
                    put.config.insert(k.clone(), v.to_string());
                }
                None if v.is_null() => {
                    put.config.remove(k);
                }
                None => {
                    return Err(DomainError::BadRequest(format!(
                        "member config key {k:?}: a string, not {v}"
                    )))
                }
            }
        }
    }
    let text = |k: &str| patch.get(k).and_then(|v| v.as_str()).map(str::to_string);
    if let Some(v) = text("description") {
        put.description = v;
    }
    if let Some(v) = text("failure_domain") {
        put.failure_domain = v;
    }
    if let Some(g) = patch.get("groups").filter(|v| !v.is_null()) {
        put.groups = serde_json::from_value(g.clone())
            .map_err(|e| DomainError::BadRequest(format!("groups: {e}")))?;
    }
    if let Some(r) = patch.get("roles").filter(|v| !v.is_null()) {
        put.roles = serde_json::from_value(r.clone())
            .map_err(|e| DomainError::BadRequest(format!("roles: {e}")))?;
    }
    update(c, name, put).await
}

/// Renames this member to `to`: its record, its instances' placement, its lease's key and
/// its membership file, in that order; the record moves in one transaction that is refused
/// if `to` is taken.
pub async fn rename(c: &Services, to: &str) -> Result<(), DomainError> {
    let _busy = c.cluster.busy.lock().await;
    let j = c
        .cluster
        .joined()
        .ok_or_else(|| DomainError::BadRequest("This server is not clustered".into()))?;
    valid_member_name(to)?;
    let from = j.local.name.clone();
    if to == from {
        return Ok(());
    }
    let k = key("members", &from);
    let (mut rec, rev) = read_member(&j, &from).await?;
    rec.name = to.to_string();
    let body = serde_json::to_vec(&rec).map_err(|e| DomainError::Internal(e.to_string()))?;
    let new_key = key("members", to);
    let mut ops = vec![
        TxnOp::put(new_key.clone(), body, None),
        TxnOp::delete(k.clone(), None),
        TxnOp::delete(key("alive", &from), None),
    ];
    let placed: Vec<(String, String)> = j.etcd.list("instances").await?;
    let mine: Vec<String> = placed
        .into_iter()
        .filter(|(_, m)| *m == from)
        .map(|(i, _)| i)
        .collect();
    let to_json = serde_json::to_vec(&to).map_err(|e| DomainError::Internal(e.to_string()))?;
    // etcd caps a transaction at 128 operations: the first instances move with the record,
    // the rest right after (a member's instances are only ever placed by the member itself,
    // which is busy renaming).
    let (first, rest) = mine.split_at(mine.len().min(100));
    for i in first {
        ops.push(TxnOp::put(key("instances", i), to_json.clone(), None));
    }
    let t = Txn::new()
        .when([
            Compare::create_revision(new_key, CompareOp::Equal, 0),
            Compare::mod_revision(k, CompareOp::Equal, rev),
        ])
        .and_then(ops);
    if !j.etcd.txn(t).await? {
        return Err(DomainError::Conflict(format!(
            "a cluster member named {to:?} already exists"
        )));
    }
    for i in rest {
        j.etcd.put("instances", i, &to.to_string(), None).await?;
    }
    if let Some(ev) = j.etcd.get::<Vec<String>>("evacuated", &from).await? {
        j.etcd.put("evacuated", to, &ev, None).await?;
        j.etcd.delete("evacuated", &from).await?;
    }
    let _ = j.etcd.delete("heartbeat", &from).await;
    let mut local = j.local.clone();
    local.name = to.to_string();
    for (n, _) in local.initial_cluster.iter_mut() {
        if *n == from {
            *n = to.to_string();
        }
    }
    write_local(&dir(c), &local)?;
    // The membership under the new name: its heartbeat holds `alive/<to>` from now on.
    install(c, local, j.etcd.clone()).await;
    c.events.lifecycle(
        "cluster-member-renamed",
        &format!("/1.0/cluster/members/{to}"),
        json!({"old_name": from}),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_config_takes_lxds_keys_and_user_keys_only() {
        let cfg = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        for ok in [
            cfg("scheduler.instance", "manual"),
            cfg("scheduler.instance", ""),
            cfg("user.rack", "r1"),
        ] {
            assert!(check_config(&ok).is_ok(), "{ok:?}");
        }
        let e = check_config(&cfg("scheduler.instance", "bogus")).unwrap_err();
        assert!(e.to_string().contains("all, manual, group"), "{e}");
        let e = check_config(&cfg("core.https_address", "x")).unwrap_err();
        assert!(e.to_string().contains("core.https_address"), "{e}");
        let manual = MemberRecord {
            config: cfg("scheduler.instance", "manual"),
            ..Default::default()
        };
        assert!(!schedulable(&manual));
        assert!(schedulable(&MemberRecord::default()));
    }
}
