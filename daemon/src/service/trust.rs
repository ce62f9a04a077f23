//! Trust: the server's keypair, the trust store (`/1.0/certificates`), adding a client with the
//! trust password (wrong ones limited per address) or a one-time token, and who a TLS caller is.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use serde_json::json;

use crate::model::password;
use crate::model::trust::{
    self as rules, CallerKind, CertRecord, CertificateAddToken, FailureLimiter,
};
use crate::service::operations::Operation;
use crate::service::{DomainError, Services};

/// The operation class and description of a certificate add token, as LXD names them.
pub const TOKEN_CLASS: &str = "token";
/// See [`TOKEN_CLASS`].
pub const TOKEN_DESCRIPTION: &str = "Certificate add token";

/// The server's TLS identity: made at first start, kept in the state dir.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// sha256 of the DER, hex.
    pub fingerprint: String,
}

/// Trust state shared by every request.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    identity: Arc<OnceLock<ServerIdentity>>,
    limiter: Arc<Mutex<FailureLimiter>>,
    /// Token operations already used: cancelling is asynchronous, so two clients racing with
    /// the same token must not both see it running.
    used_tokens: Arc<Mutex<HashSet<String>>>,
}

impl Trust {
    /// The server identity, once loaded (none in unit tests that do not load one).
    pub fn identity(&self) -> Option<&ServerIdentity> {
        self.identity.get()
    }

    /// Sets the identity (at start).
    pub fn set_identity(&self, id: ServerIdentity) {
        let _ = self.identity.set(id);
    }
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| format!("not a PEM certificate: {e}"))
}

/// Writes `data` to `path` with `mode`, through a temporary file never opened through a
/// symlink, synced, then renamed over `path`.
pub(crate) fn write_private(path: &Path, data: &str, mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(data.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Loads `server.crt`/`server.key` from the state dir, or makes them as LXD does (ECDSA P-384,
/// self-signed, CN `root@<hostname>`, ten years) when neither exists.
pub fn load_or_create_identity(state_dir: &Path, hostname: &str) -> Result<ServerIdentity, String> {
    let crt = state_dir.join("server.crt");
    let key = state_dir.join("server.key");
    if crt.exists() || key.exists() {
        let cert_pem =
            std::fs::read_to_string(&crt).map_err(|e| format!("reading {}: {e}", crt.display()))?;
        let key_pem =
            std::fs::read_to_string(&key).map_err(|e| format!("reading {}: {e}", key.display()))?;
        let cert_der = pem_to_der(&cert_pem).map_err(|e| format!("{}: {e}", crt.display()))?;
        return Ok(ServerIdentity {
            fingerprint: rules::fingerprint(&cert_der),
            cert_pem,
            key_pem,
            cert_der,
        });
    }
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .map_err(|e| format!("generating the server key: {e}"))?;
    let mut sans = vec!["127.0.0.1".to_string(), "::1".to_string()];
    if !hostname.is_empty() {
        sans.insert(0, hostname.to_string());
    }
    let mut params = rcgen::CertificateParams::new(sans)
        .map_err(|e| format!("server certificate parameters: {e}"))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "silo");
    dn.push(rcgen::DnType::CommonName, format!("root@{hostname}"));
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&kp)
        .map_err(|e| format!("signing the server certificate: {e}"))?;
    let id = ServerIdentity {
        cert_pem: cert.pem(),
        key_pem: kp.serialize_pem(),
        cert_der: cert.der().as_ref().to_vec(),
        fingerprint: rules::fingerprint(cert.der()),
    };
    // The key first: a certificate without its key would be loaded next start and fail.
    write_private(&key, &id.key_pem, 0o600)
        .map_err(|e| format!("writing {}: {e}", key.display()))?;
    write_private(&crt, &id.cert_pem, 0o644)
        .map_err(|e| format!("writing {}: {e}", crt.display()))?;
    tracing::info!(fingerprint = %id.fingerprint, "made the server certificate");
    Ok(id)
}

/// What a TLS client with certificate fingerprint `fp` is.
pub fn kind_of(c: &Services, fp: &str) -> CallerKind {
    if c.cluster.is_member(fp) {
        return CallerKind::Member;
    }
    match crate::store::certificates::by_fingerprint(&c.db, fp) {
        Ok(Some(r)) if r.kind == "client" => CallerKind::Client,
        Ok(Some(r)) if r.kind == "metrics" => CallerKind::Metrics,
        Ok(_) => CallerKind::Untrusted,
        Err(e) => {
            // Failing closed: a broken trust store trusts nobody over the network.
            tracing::error!(error = %e, "reading the trust store");
            CallerKind::Untrusted
        }
    }
}

/// LXD's API object for a record.
pub fn to_api(r: &CertRecord) -> silo_api::Certificate {
    silo_api::Certificate {
        name: r.name.clone(),
        kind: r.kind.clone(),
        restricted: false,
        projects: Vec::new(),
        certificate: r.certificate.clone(),
        fingerprint: r.fingerprint.clone(),
    }
}

/// Every trusted certificate.
pub fn list(c: &Services) -> Result<Vec<CertRecord>, DomainError> {
    Ok(crate::store::certificates::all(&c.db)?)
}

/// The certificate `fp` names (a unique prefix, as LXD takes it).
pub fn get(c: &Services, fp: &str) -> Result<CertRecord, DomainError> {
    let mut found = crate::store::certificates::by_prefix(&c.db, fp)?;
    match found.len() {
        0 => Err(DomainError::NotFound("Certificate not found".into())),
        1 => Ok(found.remove(0)),
        _ => Err(DomainError::BadRequest(format!(
            "more than one certificate matches {fp:?}"
        ))),
    }
}

fn check_kind(kind: &str) -> Result<String, DomainError> {
    let k = if kind.is_empty() { "client" } else { kind };
    if rules::CERT_TYPES.contains(&k) {
        Ok(k.to_string())
    } else {
        Err(DomainError::BadRequest(format!(
            "Invalid certificate type {kind:?} (client or metrics)"
        )))
    }
}

fn refuse_restricted(restricted: bool) -> Result<(), DomainError> {
    if restricted {
        return Err(DomainError::BadRequest(
            "restricted certificates are not supported: they limit a client to projects, which silo does not have yet".into(),
        ));
    }
    Ok(())
}

/// Replaces (PUT) or merges into (PATCH, fields given) a certificate's name and type, against
/// the ETag the client saw.
pub fn update(
    c: &Services,
    fp: &str,
    name: Option<String>,
    kind: Option<String>,
    certificate: Option<String>,
    restricted: bool,
    if_match: Option<&str>,
) -> Result<(), DomainError> {
    let cur = get(c, fp)?;
    if let Some(want) = if_match {
        if want.trim_matches('"') != crate::model::etag(&to_api(&cur)) {
            return Err(DomainError::PreconditionFailed(
                "ETag doesn't match: the certificate changed meanwhile".into(),
            ));
        }
    }
    refuse_restricted(restricted)?;
    let kind = check_kind(&kind.unwrap_or(cur.kind.clone()))?;
    let name = name.unwrap_or(cur.name.clone());
    // LXD's certificate_update: a new certificate replaces the old one under the same entry.
    let replacement = match certificate.filter(|s| !s.trim().is_empty()) {
        Some(s) => {
            let der = decode_certificate(&s)?;
            common_name(&der)?;
            let new_fp = rules::fingerprint(&der);
            (new_fp != cur.fingerprint).then(|| (new_fp, pem_of(&der)))
        }
        None => None,
    };
    crate::store::certificates::update(
        &c.db,
        &cur.fingerprint,
        &name,
        &kind,
        replacement.as_ref().map(|(f, p)| (f.as_str(), p.as_str())),
    )?;
    let now_fp = replacement.map_or(cur.fingerprint, |(f, _)| f);
    c.events.lifecycle(
        "certificate-updated",
        &silo_api::paths::certificate(&now_fp),
        json!({}),
    );
    Ok(())
}

/// Removes a certificate from the trust store: its client is untrusted from its next request.
pub fn delete(c: &Services, fp: &str) -> Result<(), DomainError> {
    let cur = get(c, fp)?;
    crate::store::certificates::delete(&c.db, &cur.fingerprint)?;
    c.events.lifecycle(
        "certificate-deleted",
        &silo_api::paths::certificate(&cur.fingerprint),
        json!({}),
    );
    Ok(())
}

/// Who is adding a certificate, as the connection says.
#[derive(Debug, Clone)]
pub struct AddCaller {
    /// Trusted or not.
    pub kind: CallerKind,
    /// The TLS client's certificate (DER), if any.
    pub peer_cert: Option<Vec<u8>>,
    /// The client's address (TLS only).
    pub addr: Option<IpAddr>,
}

/// What `POST /1.0/certificates` did.
#[derive(Debug)]
pub enum Added {
    /// A certificate joined the trust store.
    Certificate(String),
    /// A token operation was made.
    Token(Box<Operation>),
}

fn decode_certificate(s: &str) -> Result<Vec<u8>, DomainError> {
    let s = s.trim();
    let der = if s.starts_with("-----BEGIN") {
        pem_to_der(s).map_err(DomainError::BadRequest)?
    } else {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| DomainError::BadRequest(format!("invalid certificate: {e}")))?
    };
    Ok(der)
}

/// The certificate's subject CN, checking that it parses as an X.509 certificate.
fn common_name(der: &[u8]) -> Result<String, DomainError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| DomainError::BadRequest(format!("invalid certificate material: {e}")))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok(cn)
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The token's lifetime from `core.remote_token_expiry`.
fn token_lifetime(c: &Services) -> Result<Duration, DomainError> {
    match crate::store::config::get(&c.db, "core.remote_token_expiry")? {
        Some(v) if !v.is_empty() => rules::parse_expiry(&v).map_err(DomainError::Internal),
        _ => Ok(rules::DEFAULT_TOKEN_EXPIRY),
    }
}

fn random_secret() -> Result<String, DomainError> {
    silo_proto::random::bytes::<32>()
        .map(hex::encode)
        .map_err(|e| DomainError::Internal(format!("no random bytes for the token: {e}")))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Starts a token operation for a client called `name`.
fn create_token(
    c: &Services,
    name: &str,
    kind: &str,
    addresses: Vec<String>,
) -> Result<Operation, DomainError> {
    let id = c
        .trust
        .identity()
        .ok_or_else(|| DomainError::Internal("the server has no certificate".into()))?;
    let lifetime = token_lifetime(c)?;
    let expires = time::OffsetDateTime::now_utc() + lifetime;
    let meta = json!({
        "secret": random_secret()?,
        "fingerprint": id.fingerprint,
        "addresses": addresses,
        "request": {
            "name": name,
            "type": kind,
            "restricted": false,
            "projects": [],
            "certificate": "",
            "password": "",
            "token": true,
        },
        "expiresAt": rfc3339(expires),
    });
    let op = c.ops.start_full(
        crate::service::operations::Operations::new_id(),
        TOKEN_CLASS,
        TOKEN_DESCRIPTION,
        BTreeMap::new(),
        meta,
        true,
        move |_ctx| async move {
            tokio::time::sleep(lifetime).await;
            Err(DomainError::Forbidden("Token has expired".into()))
        },
    );
    Ok(op)
}

/// Running token operations (what `list-tokens` shows).
pub fn tokens(c: &Services) -> Vec<Operation> {
    c.ops
        .list()
        .into_iter()
        .filter(|o| o.class == TOKEN_CLASS && o.status_code == 103)
        .collect()
}

/// Finds the running token operation with `secret`, uses it up and returns the name and type
/// it was made for; `None` when there is none.
fn consume_token(c: &Services, secret: &str) -> Result<Option<(String, String)>, DomainError> {
    let mut used = c
        .trust
        .used_tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let live: HashSet<String> = c.ops.list().into_iter().map(|o| o.id.clone()).collect();
    used.retain(|id| live.contains(id));
    let Some(op) = tokens(c).into_iter().find(|o| {
        !used.contains(&o.id) && o.metadata.get("secret").and_then(|s| s.as_str()) == Some(secret)
    }) else {
        return Ok(None);
    };
    used.insert(op.id.clone());
    // Single use: the operation ends now whatever follows.
    let _ = c.ops.cancel(&op.id);
    if let Some(exp) = op.metadata.get("expiresAt").and_then(|v| v.as_str()) {
        let exp = time::OffsetDateTime::parse(exp, &time::format_description::well_known::Rfc3339)
            .map_err(|e| DomainError::Internal(format!("token expiry {exp:?}: {e}")))?;
        if time::OffsetDateTime::now_utc() > exp {
            return Err(DomainError::Forbidden("Token has expired".into()));
        }
    }
    let req = &op.metadata["request"];
    let s = |k: &str| {
        req.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    Ok(Some((s("name"), s("type"))))
}

/// Checks the trust password for an untrusted caller from `addr`, counting wrong ones.
fn check_password(c: &Services, addr: Option<IpAddr>, given: &str) -> Result<(), DomainError> {
    let addr = addr.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    {
        let mut l = c.trust.limiter.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(wait) = l.check(addr, Instant::now()) {
            return Err(DomainError::TooManyRequests(format!(
                "too many wrong trust passwords from {addr}: try again in {} seconds",
                wait.as_secs().max(1)
            )));
        }
    }
    let stored = crate::store::config::get(&c.db, crate::model::config::TRUST_PASSWORD)?;
    let ok = stored.is_some_and(|h| password::verify_password(&h, given));
    if !ok {
        c.trust
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed(addr, Instant::now());
        tracing::warn!(%addr, "bad trust password");
        return Err(DomainError::Forbidden("not authorized".into()));
    }
    Ok(())
}

/// `POST /1.0/certificates`, as LXD 5.0 does it: a trusted caller adds any certificate or asks
/// for a token; an untrusted one adds its own TLS certificate with the trust password or a
/// token (sent as the password, as LXD's client does).
pub fn add(
    c: &Services,
    caller: &AddCaller,
    mut req: silo_api::CertificatesPost,
    addresses: Vec<String>,
) -> Result<Added, DomainError> {
    if req.token && !req.certificate.is_empty() {
        return Err(DomainError::BadRequest(
            "Can't use certificate if token is requested".into(),
        ));
    }
    refuse_restricted(req.restricted)?;
    if !caller.kind.trusted() {
        if req.password.is_empty() {
            return Err(DomainError::Forbidden("not authorized".into()));
        }
        match CertificateAddToken::decode(&req.password) {
            Some(token) => match consume_token(c, &token.secret)? {
                Some((name, kind)) => {
                    // The token decides; the client overrides nothing.
                    req = silo_api::CertificatesPost {
                        name,
                        kind,
                        ..Default::default()
                    };
                }
                None => {
                    return Err(DomainError::Forbidden(
                        "No matching certificate add operation found".into(),
                    ))
                }
            },
            None => check_password(c, caller.addr, &req.password)?,
        }
        // An untrusted caller only ever adds the certificate it connected with.
        req.certificate.clear();
        req.token = false;
    }
    let kind = check_kind(&req.kind)?;
    if req.token {
        if kind != "client" {
            return Err(DomainError::BadRequest(
                "Tokens can only be issued for client certificates".into(),
            ));
        }
        return Ok(Added::Token(Box::new(create_token(
            c, &req.name, &kind, addresses,
        )?)));
    }
    let der = if !req.certificate.is_empty() {
        decode_certificate(&req.certificate)?
    } else if let Some(der) = &caller.peer_cert {
        der.clone()
    } else if caller.kind == CallerKind::Local {
        return Err(DomainError::BadRequest(
            "Can't use TLS data on non-TLS link: give the certificate".into(),
        ));
    } else {
        return Err(DomainError::BadRequest(
            "No client certificate provided".into(),
        ));
    };
    let cn = common_name(&der)?;
    let name = if !req.name.is_empty() {
        req.name.clone()
    } else if !cn.is_empty() {
        cn
    } else {
        caller.addr.map(|a| a.to_string()).unwrap_or_default()
    };
    let fp = rules::fingerprint(&der);
    if crate::store::certificates::by_fingerprint(&c.db, &fp)?.is_some() {
        return Err(DomainError::BadRequest(
            "Certificate already in trust store".into(),
        ));
    }
    crate::store::certificates::insert(
        &c.db,
        &CertRecord {
            fingerprint: fp.clone(),
            kind,
            name,
            certificate: pem_of(&der),
        },
    )?;
    c.events.lifecycle(
        "certificate-created",
        &silo_api::paths::certificate(&fp),
        json!({}),
    );
    Ok(Added::Certificate(fp))
}

/// Whether `core.metrics_authentication` is off: `/1.0/metrics` open to anyone who reaches
/// the API (LXD's default is on).
pub fn metrics_open(c: &Services) -> bool {
    crate::store::config::get(&c.db, crate::model::config::METRICS_AUTHENTICATION)
        .ok()
        .flatten()
        .is_some_and(|v| matches!(v.as_str(), "false" | "0" | "off" | "no"))
}

/// The fingerprint of a PEM certificate (`None` when it does not decode).
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    pem_to_der(pem).ok().map(|der| rules::fingerprint(&der))
}
