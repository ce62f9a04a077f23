//! `/1.0/cluster`: LXD's `api.Cluster`, `api.ClusterPut`, `api.ClusterMember` and the join
//! token, with LXD 5.0's field names.

use serde::{Deserialize, Serialize};

use crate::StringMap;

/// `GET /1.0/cluster`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cluster {
    /// This member's name ("" when not clustered).
    pub server_name: String,
    /// Whether clustering is enabled.
    pub enabled: bool,
    /// The per-member keys a joiner must supply.
    pub member_config: Vec<ClusterMemberConfigKey>,
}

/// One per-member key a joiner supplies (a pool's `source`, a network's `parent`...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMemberConfigKey {
    /// "storage-pool" or "network".
    pub entity: String,
    /// The pool's or network's name.
    pub name: String,
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// What it is.
    pub description: String,
}

/// `PUT /1.0/cluster`: enable clustering (bootstrap), join a cluster, or leave it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterPut {
    /// This member's name.
    pub server_name: String,
    /// Enable (true) or disable.
    pub enabled: bool,
    /// The per-member keys, when joining.
    pub member_config: Vec<ClusterMemberConfigKey>,
    /// A member's address, when joining by address and password.
    pub cluster_address: String,
    /// That member's certificate (PEM), when joining by address and password.
    pub cluster_certificate: String,
    /// This member's address as the others reach it, when joining.
    pub server_address: String,
    /// The join token (LXD's `lxd init` sends it here), or its secret.
    pub cluster_password: String,
    /// The join token (silo's own field, which `silo cluster join` sends).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_token: String,
}

/// `POST /1.0/cluster/members`: a join token for a member to come.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMembersPost {
    /// The name the joiner will have.
    pub server_name: String,
}

/// The join token: base64 of this JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMemberJoinToken {
    /// The joiner's name.
    pub server_name: String,
    /// The issuing member's certificate fingerprint.
    pub fingerprint: String,
    /// Where to reach the cluster.
    pub addresses: Vec<String>,
    /// The secret.
    pub secret: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

impl ClusterMemberJoinToken {
    /// The token as users copy it.
    pub fn encode(&self) -> String {
        use base64::Engine;
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// Decodes a token, naming what is wrong with it.
    pub fn decode(s: &str) -> Result<ClusterMemberJoinToken, String> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s.trim()))
            .map_err(|e| format!("the join token is not base64: {e}"))?;
        let t: ClusterMemberJoinToken = serde_json::from_slice(&raw)
            .map_err(|e| format!("the join token is not a join token: {e}"))?;
        if t.secret.is_empty() || t.addresses.is_empty() || t.fingerprint.is_empty() {
            return Err("the join token lacks its secret, addresses or fingerprint".into());
        }
        Ok(t)
    }
}

/// The metadata of a join-token operation (`POST /1.0/cluster/members`), LXD's keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterJoinTokenMetadata {
    /// The joiner's name.
    pub server_name: String,
    /// The secret.
    pub secret: String,
    /// The issuing member's certificate fingerprint.
    pub fingerprint: String,
    /// Where to reach the cluster.
    pub addresses: Vec<String>,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

impl From<ClusterJoinTokenMetadata> for ClusterMemberJoinToken {
    fn from(m: ClusterJoinTokenMetadata) -> ClusterMemberJoinToken {
        ClusterMemberJoinToken {
            server_name: m.server_name,
            fingerprint: m.fingerprint,
            addresses: m.addresses,
            secret: m.secret,
            expires_at: m.expires_at,
        }
    }
}

/// `GET /1.0/cluster/members/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMember {
    /// Its name.
    pub server_name: String,
    /// Its API's URL.
    pub url: String,
    /// Whether it holds the database.
    pub database: bool,
    /// "Online", "Offline", "Evacuated".
    pub status: String,
    /// "Fully operational", or why not.
    pub message: String,
    /// Its architecture.
    pub architecture: String,
    /// Its failure domain.
    pub failure_domain: String,
    /// Its description.
    pub description: String,
    /// Its config (`scheduler.instance`).
    pub config: StringMap,
    /// Its groups.
    pub groups: Vec<String>,
    /// Its roles ("database", "database-leader").
    pub roles: Vec<String>,
}

/// `PUT`/`PATCH /1.0/cluster/members/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMemberPut {
    /// Its config.
    pub config: StringMap,
    /// Its description.
    pub description: String,
    /// Its failure domain.
    pub failure_domain: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// Its roles (only manual roles may be set).
    pub roles: Vec<String>,
}

/// A member's writable fields, as they are (what a `PATCH` or `silo cluster set` starts from).
impl From<ClusterMember> for ClusterMemberPut {
    fn from(m: ClusterMember) -> ClusterMemberPut {
        ClusterMemberPut {
            config: m.config,
            description: m.description,
            failure_domain: m.failure_domain,
            groups: m.groups,
            roles: m.roles,
        }
    }
}

/// `POST /1.0/cluster/members/<name>`: rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMemberPost {
    /// The new name.
    pub server_name: String,
}

/// `POST /1.0/cluster/members/<name>/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMemberStatePost {
    /// "evacuate" or "restore".
    pub action: String,
    /// "stop", "migrate" or "auto".
    pub mode: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_its_round_trip_and_a_bad_one_is_named() {
        let t = ClusterMemberJoinToken {
            server_name: "m2".into(),
            fingerprint: "ab".into(),
            addresses: vec!["10.0.0.1:8443".into()],
            secret: "s".into(),
            expires_at: "2030-01-01T00:00:00Z".into(),
        };
        assert_eq!(ClusterMemberJoinToken::decode(&t.encode()).unwrap(), t);
        assert!(ClusterMemberJoinToken::decode("!!")
            .unwrap_err()
            .contains("base64"));
        use base64::Engine;
        let junk = base64::engine::general_purpose::STANDARD.encode(b"{\"server_name\":\"x\"}");
        assert!(ClusterMemberJoinToken::decode(&junk)
            .unwrap_err()
            .contains("lacks"));
    }
}
