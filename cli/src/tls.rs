//! TLS to `lxd`-protocol remotes: how a server certificate is checked (the certificate pinned
//! at `remote add`, else the system's CA store) and the client certificate presented.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// TLS setup errors, one line each.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {msg}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// LXD's certificate fingerprint: the sha256 of the DER, in lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A certificate's DER as one PEM block (what servercerts/NAME.crt holds).
pub fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// The first certificate in a PEM text.
pub fn cert_from_pem(pem: &[u8], path: &str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem).map_err(|e| TlsError::File {
        path: path.to_string(),
        msg: format!("no PEM certificate: {e}"),
    })
}

/// ring, as the project's TLS everywhere uses (rustls 0.23.48 deprecates this constructor
/// only because ring has no post-quantum key exchange).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How the server's certificate is judged.
#[derive(Debug, Clone)]
pub enum Trust {
    /// It must be exactly this certificate (pinned at `remote add`).
    Pinned(CertificateDer<'static>),
    /// It must chain to the system's CA store.
    SystemCa,
    /// Anything is accepted and recorded: only to fetch a certificate for the user to judge.
    Capture,
}

/// What the verifier saw, for errors the handshake cannot word well (a changed certificate).
#[derive(Debug, Default)]
pub struct Seen {
    /// The server's leaf certificate.
    pub presented: Option<Vec<u8>>,
    /// The pinned certificate did not match the presented one.
    pub pin_mismatch: bool,
    /// Why the CA check failed.
    pub ca_error: Option<String>,
}

#[derive(Debug)]
struct Verifier {
    trust: Trust,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    seen: Arc<Mutex<Seen>>,
}

impl Verifier {
    fn record(&self, f: impl FnOnce(&mut Seen)) {
        if let Ok(mut s) = self.seen.lock() {
            f(&mut s);
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.record(|s| s.presented = Some(end_entity.to_vec()));
        match &self.trust {
            Trust::Pinned(pin) => {
                // Byte equality is LXD's rule for a pinned remote: names and dates do not
                // matter, only that it is the very certificate the user accepted.
                if pin.as_ref() == end_entity.as_ref() {
                    Ok(ServerCertVerified::assertion())
                } else {
                    self.record(|s| s.pin_mismatch = true);
                    Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::ApplicationVerificationFailure,
                    ))
                }
            }
            Trust::Capture => Ok(ServerCertVerified::assertion()),
            Trust::SystemCa => {
                let Some(w) = &self.webpki else {
                    self.record(|s| s.ca_error = Some("the system CA store is empty".into()));
                    return Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::UnknownIssuer,
                    ));
                };
                w.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                    .inspect_err(|e| {
                        let msg = e.to_string();
                        self.record(|s| s.ca_error = Some(msg));
                    })
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The system's CA store (`rustls-native-certs`: /etc/ssl/certs, so a CA added with
/// update-ca-certificates counts; `SSL_CERT_FILE`/`SSL_CERT_DIR` override it).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!("system CA store: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!("system CA store: {added} certificates, {ignored} ignored");
    roots
}

/// The client keypair presented to the server.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain (one self-signed certificate).
    pub certs: Vec<CertificateDer<'static>>,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads client.crt and client.key (PEM; PKCS#8 or LXD's SEC1 "EC PRIVATE KEY").
    pub fn load(crt: &std::path::Path, key: &std::path::Path) -> Result<Identity, TlsError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| TlsError::File {
                path: p.display().to_string(),
                msg: e.to_string(),
            })
        };
        let cert = cert_from_pem(&read(crt)?, &crt.display().to_string())?;
        let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| TlsError::File {
            path: key.display().to_string(),
            msg: format!("no PEM private key: {e}"),
        })?;
        Ok(Identity {
            certs: vec![cert],
            key: key_der,
        })
    }
}

/// A client TLS configuration judging the server by `trust`, presenting `identity` if given.
/// `seen` receives what the verifier saw, for error messages.
pub fn client_config(
    trust: Trust,
    identity: Option<&Identity>,
    seen: Arc<Mutex<Seen>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let webpki = match trust {
        Trust::SystemCa => {
            let roots = system_roots();
            if roots.is_empty() {
                None
            } else {
                Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Setup(e.to_string()))?,
                )
            }
        }
        _ => None,
    };
    let verifier = Arc::new(Verifier {
        trust,
        webpki,
        provider: provider.clone(),
        seen,
    });
    // LXD's rule: TLS 1.2 at least (both versions rustls has).
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
            .map_err(|e| TlsError::Setup(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Whether `der` (with no intermediates) chains to the system CA store for `host`.
pub fn signed_by_system_ca(der: &[u8], host: &str) -> bool {
    let roots = system_roots();
    if roots.is_empty() {
        return false;
    }
    let Ok(v) = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build()
    else {
        return false;
    };
    let Ok(name) = ServerName::try_from(host.trim_matches(['[', ']']).to_string()) else {
        return false;
    };
    v.verify_server_cert(
        &CertificateDer::from(der.to_vec()),
        &[],
        &name,
        &[],
        UnixTime::now(),
    )
    .is_ok()
}

/// Makes a client keypair as LXD's client does (ECDSA P-384, self-signed, ten years), as PEM
/// texts (certificate, key).
pub fn generate_client_cert() -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .map_err(|e| TlsError::Setup(format!("client key: {e}")))?;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "linuxcontainers.org");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{user}@{host}"));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Setup(format!("client certificate: {e}")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_client_cert_loads_and_configures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (crt, key) = generate_client_cert().expect("generate");
        assert!(crt.starts_with("-----BEGIN CERTIFICATE-----"));
        std::fs::write(dir.path().join("c.crt"), &crt).expect("write");
        std::fs::write(dir.path().join("c.key"), &key).expect("write");
        let id =
            Identity::load(&dir.path().join("c.crt"), &dir.path().join("c.key")).expect("load");
        // The PEM written back from the DER is the same certificate.
        let again = cert_from_pem(to_pem(&id.certs[0]).as_bytes(), "x").expect("pem");
        assert_eq!(again.as_ref(), id.certs[0].as_ref());
        assert_eq!(fingerprint(&id.certs[0]).len(), 64);
        client_config(Trust::Capture, Some(&id), Arc::default()).expect("config");
    }
}
