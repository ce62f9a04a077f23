//! The HTTPS server (wiring): rustls with the server's keypair, TLS 1.2 and 1.3, client
//! certificates requested but not required and not judged here: any certificate whose
//! holder proves its key is accepted, and trust is the request layer's (the API's trust
//! middleware looks the fingerprint up), as LXD does. Each connection's requests carry a
//! [`Peer`] naming the client's address and certificate.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_util::sync::CancellationToken;

use crate::model::trust::{fingerprint, Peer};
use crate::service::endpoints::ServeFn;
use crate::service::trust::ServerIdentity;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once on one listener; more wait in the kernel's backlog, so a
/// flood of idle handshakes cannot take every fd silod has.
const MAX_CONNECTIONS: usize = 512;

/// Asks every client for a certificate and accepts whichever it sends, after the handshake
/// signature proves the client holds its key: who is trusted is decided per request.
#[derive(Debug)]
struct AnyClientCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// rustls's configuration for the server's identity.
pub fn server_config(id: &ServerIdentity) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    // ring is the backend the workspace chose (no C toolchain dependency); rustls marks it
    // deprecated only because post-quantum key exchange needs aws-lc-rs.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let verifier = Arc::new(AnyClientCert {
        algs: provider.signature_verification_algorithms,
    });
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the server key: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(id.cert_der.clone())], key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn connection(
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    tcp: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
) {
    // Responses go out as several small TLS records: without NODELAY, Nagle and the client's
    // delayed ACK add some 40 ms to every request.
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            return;
        }
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::new((c.as_ref().to_vec(), fingerprint(c.as_ref()))));
    let peer = Peer::Tls { addr, cert };
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(peer.clone());
        tower::ServiceExt::oneshot(router.clone(), req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tls), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%addr, error = %e, "HTTPS connection ended");
    }
}

/// The server the HTTPS endpoint runs on each listener it binds.
pub fn serve_fn(router: axum::Router, cfg: Arc<rustls::ServerConfig>) -> ServeFn {
    Arc::new(move |l: std::net::TcpListener, stop: CancellationToken| {
        let router = router.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
        tokio::spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "HTTPS listener");
                    return;
                }
            };
            crate::api::accept::bounded(
                MAX_CONNECTIONS,
                &stop,
                "the HTTPS endpoint",
                || listener.accept(),
                |(tcp, addr), permit| {
                    let (acceptor, router) = (acceptor.clone(), router.clone());
                    tokio::spawn(async move {
                        connection(acceptor, router, tcp, addr).await;
                        drop(permit);
                    });
                },
            )
            .await;
            // The listener is dropped here: the port closes at once.
        });
    })
}
