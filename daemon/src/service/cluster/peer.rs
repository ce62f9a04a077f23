//! Member-to-member HTTPS: a request to another member's API, its certificate pinned by
//! fingerprint (from the join token, or from the member's record), this member's own HTTPS
//! certificate as the client certificate (the other member trusts it as a member's).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use crate::service::image_server::Pinned;
use crate::service::trust::ServerIdentity;

/// How long a member has to answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read.
const LIMIT: usize = 16 << 20;

fn config(pin: &str, me: Option<&ServerIdentity>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    // ring: the workspace's provider.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned::by_fingerprint(
            pin,
            provider.signature_verification_algorithms,
        )));
    let cfg = match me {
        Some(id) => {
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
                .map_err(|e| format!("this member's key: {e}"))?;
            b.with_client_auth_cert(vec![CertificateDer::from(id.cert_der.clone())], key)
                .map_err(|e| format!("this member's certificate: {e}"))?
        }
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Opens TLS to `addr` (`ip:port`), pinned to `pin`.
pub async fn connect(
    addr: &str,
    pin: &str,
    me: Option<&ServerIdentity>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let cfg = config(pin, me)?;
    // A link that just came back may answer "no route" for a moment (its neighbour entry
    // failed while it was down): tried again for up to 3 s; a timeout is not.
    let t0 = std::time::Instant::now();
    let tcp = loop {
        match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
        {
            Err(_) => return Err(format!("connecting to {addr}: timed out")),
            Ok(Ok(t)) => break t,
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable
                ) && t0.elapsed() < Duration::from_secs(3) =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(Err(e)) => return Err(format!("connecting to {addr}: {e}")),
        }
    };
    let _ = tcp.set_nodelay(true);
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(addr)
        .trim_matches(['[', ']']);
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{addr}: {e}"))?;
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("TLS with {addr}: timed out"))?
    .map_err(|e| format!("TLS with {addr}: {e}"))
}

/// Sends `req` to the member at `addr` on a connection of its own; its response.
async fn send(
    addr: &str,
    pin: &str,
    me: Option<&ServerIdentity>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let tls = connect(addr, pin, me).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("{addr}: {e}"))
}

/// The header that marks a call one member makes of another's API to be served there (not
/// routed on again); honoured only from a member.
pub const FORWARDED: &str = "x-silo-forwarded";

/// Sends `method path` with `body` as JSON to the member at `addr`; answers the response's
/// `metadata`, or its error message.
pub async fn call(
    addr: &str,
    pin: &str,
    me: Option<&ServerIdentity>,
    method: hyper::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    request(addr, pin, me, method, path, body, false).await
}

/// [`call`], marked to be served by that member itself.
pub async fn call_forwarded(
    addr: &str,
    pin: &str,
    me: Option<&ServerIdentity>,
    method: hyper::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    request(addr, pin, me, method, path, body, true).await
}

async fn request(
    addr: &str,
    pin: &str,
    me: Option<&ServerIdentity>,
    method: hyper::Method,
    path: &str,
    body: Option<&Value>,
    forwarded: bool,
) -> Result<Value, String> {
    let fut = async {
        let data = match body {
            Some(v) => serde_json::to_vec(v).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr)
            .header(hyper::header::USER_AGENT, "silo-cluster")
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if forwarded {
            req = req.header(FORWARDED, "1");
        }
        let req = req
            .body(Full::new(Bytes::from(data)))
            .map_err(|e| e.to_string())?;
        let resp = send(addr, pin, me, req).await?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), LIMIT)
            .collect()
            .await
            .map_err(|e| format!("{addr}: reading the answer: {e}"))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{addr}: the answer is not JSON ({status}): {e}"))?;
        if !status.is_success() || v["type"] == "error" {
            let msg = v["error"].as_str().unwrap_or("").to_string();
            return Err(if msg.is_empty() {
                format!("{addr} answered {status}")
            } else {
                msg
            });
        }
        Ok(v["metadata"].clone())
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| format!("{addr} did not answer within {TIMEOUT:?}"))?
}

/// How long a member has to send a file (an image of some hundred MiB over a LAN).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Fetches `path` from the member at `addr` into file `dest` (created, never followed),
/// feeding every byte to `hash`; the bytes written.
pub async fn download(
    addr: &str,
    pin: &str,
    me: Option<&ServerIdentity>,
    path: &str,
    dest: &std::path::Path,
    hash: &mut sha2::Sha256,
) -> Result<u64, String> {
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let fut = async {
        let req = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(path)
            .header(hyper::header::HOST, addr)
            .header(hyper::header::USER_AGENT, "silo-cluster")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = send(addr, pin, me, req).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = http_body_util::Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(match v["error"].as_str() {
                Some(m) if !m.is_empty() => m.to_string(),
                _ => format!("{addr} answered {status}"),
            });
        }
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(|e| format!("creating {}: {e}", dest.display()))?;
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("{addr}: reading the file: {e}"))?;
            if let Some(data) = frame.data_ref() {
                hash.update(data);
                f.write_all(data)
                    .await
                    .map_err(|e| format!("writing {}: {e}", dest.display()))?;
                n += data.len() as u64;
            }
        }
        f.sync_all()
            .await
            .map_err(|e| format!("writing {}: {e}", dest.display()))?;
        Ok(n)
    };
    tokio::time::timeout(DOWNLOAD_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{addr} did not send {path} within {DOWNLOAD_TIMEOUT:?}"))?
}
