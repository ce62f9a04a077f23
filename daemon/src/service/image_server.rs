//! Pulling images from image servers: simplestreams trees and LXD servers (the `lxd`
//! protocol), over HTTPS (or plain HTTP for simplestreams, as LXD allows).
//!
//! TLS trusts the system's CA store (rustls-native-certs, which honours `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`); a request that carries a server certificate (`source.certificate`, an
//! `lxd` remote's) trusts exactly that certificate instead. One connection per request, over
//! hyper 1's client connection API.
//!
//! A download is streamed into a temp file beside the images (`images/tmp-*`, which a
//! restarted silod removes) with its sha256 computed on the way. A connection that is cut
//! resumes with a `Range` request, [`RETRIES`] times with a growing pause; then the download
//! fails with the reason and the temp file is removed. Every file's sha256 and the image's
//! combined fingerprint are checked before the image is handed to the ordinary import path
//! ([`crate::service::images::commit`]), so nothing unchecked is ever recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::Digest;
use silo_api::simplestreams::{self, FileRole};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::model::image::UpdateSource;
use crate::service::images::{self, Image, Received};
use crate::service::{DomainError, Services};

/// How many times a cut download is resumed before it fails.
pub const RETRIES: u32 = 3;
/// The first pause before resuming; doubled each time.
const BACKOFF: Duration = Duration::from_millis(250);
/// Connecting (TCP and TLS) to a server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Waiting for a response's headers, or for the next bytes of a body.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest image file taken (the same bound as an upload).
const MAX_FILE: u64 = 64 << 30;
/// The largest JSON answer of an LXD server (alias, image record).
const MAX_JSON: usize = 4 << 20;
/// Bytes gathered before one write to the temp file.
const WRITE_BUFFER: usize = 1 << 20;
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// How often a download's progress is written to its operation.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Why talking to an image server failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server's URL is not one silo can use.
    #[error("invalid image server URL {0:?}: {1}")]
    Url(String, String),
    /// TCP connect failed or timed out.
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    /// The TLS handshake failed (an untrusted or changed certificate among others).
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    /// An HTTP-level failure (the connection broke, a timeout).
    #[error("fetching {0}: {1}")]
    Http(String, String),
    /// The server answered with an error status.
    #[error("fetching {0}: the server answered {1}")]
    Status(String, u16),
    /// An answer larger than allowed.
    #[error("fetching {0}: the answer is larger than {1} bytes")]
    TooLarge(String, u64),
    /// A file or image did not hash to what the server announced.
    #[error("{0}: sha256 mismatch: expected {1}, got {2}")]
    Checksum(String, String, String),
    /// The connection was cut more often than the retries allow.
    #[error("downloading {0}: {1} (gave up after {2} retries)")]
    GaveUp(String, String, u32),
    /// A bad answer from the server (invalid JSON, no such alias...).
    #[error("{0}")]
    Protocol(String),
    /// Local I/O (the temp file).
    #[error("{0}")]
    Local(String),
}

impl From<FetchError> for DomainError {
    fn from(e: FetchError) -> DomainError {
        match e {
            FetchError::Local(m) => DomainError::Internal(m),
            FetchError::Status(_, 404) => DomainError::NotFound(e.to_string()),
            other => DomainError::BadRequest(other.to_string()),
        }
    }
}

/// Accepts exactly one certificate, as LXD's client does for a remote whose certificate it
/// stored at `remote add` (or, for a cluster member, whose fingerprint its record names).
#[derive(Debug)]
pub struct Pinned {
    want: Pin,
    algs: WebPkiSupportedAlgorithms,
}

/// What a [`Pinned`] verifier accepts.
#[derive(Debug)]
enum Pin {
    /// This certificate.
    Der(CertificateDer<'static>),
    /// The certificate with this sha256 fingerprint (lower-case hex).
    Fingerprint(String),
}

impl Pinned {
    /// A verifier accepting only the certificate whose fingerprint is `fp`.
    pub fn by_fingerprint(fp: &str, algs: WebPkiSupportedAlgorithms) -> Pinned {
        Pinned {
            want: Pin::Fingerprint(fp.to_ascii_lowercase()),
            algs,
        }
    }
}

fn cert_fingerprint(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = cert_fingerprint(end_entity);
        let (ok, want) = match &self.want {
            Pin::Der(der) => (end_entity.as_ref() == der.as_ref(), cert_fingerprint(der)),
            Pin::Fingerprint(fp) => (got == *fp, fp.clone()),
        };
        if ok {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate (fingerprint {got}) is not the one given for it ({want})"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The TLS settings for one server: the system's CA store, or one pinned certificate.
fn tls_config(pinned_pem: &str) -> Result<Arc<rustls::ClientConfig>, FetchError> {
    use rustls::pki_types::pem::PemObject;
    // The crates chosen for the workspace use ring; its provider is the one at hand.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Local(format!("TLS settings: {e}")))?;
    let config = if pinned_pem.trim().is_empty() {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(FetchError::Local(format!(
                "no CA certificates found in the system store (SSL_CERT_FILE, SSL_CERT_DIR or /etc/ssl/certs){}",
                if why.is_empty() { String::new() } else { format!(": {why}") }
            )));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let der = CertificateDer::from_pem_slice(pinned_pem.as_bytes()).map_err(|e| {
            FetchError::Protocol(format!("invalid source certificate (expected PEM): {e}"))
        })?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                want: Pin::Der(der),
                algs: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// A connection to a server: TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client for one image server.
#[derive(Clone)]
pub struct Server {
    /// The server's URL without a trailing `/`.
    base: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("base", &self.base).finish()
    }
}

impl Server {
    /// A client for `url` (`https://` or `http://`), trusting `certificate` (PEM) if given,
    /// else the system's CA store.
    pub fn new(url: &str, certificate: &str) -> Result<Server, FetchError> {
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| {
            FetchError::Url(url.into(), e.to_string())
        })?;
        let tls = match uri.scheme_str() {
            Some("https") => Some(tls_config(certificate)?),
            Some("http") => None,
            _ => {
                return Err(FetchError::Url(
                    url.into(),
                    "expected an https:// (or http://) URL".into(),
                ))
            }
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(FetchError::Url(url.into(), "no host".into()));
        }
        if uri.query().is_some() {
            return Err(FetchError::Url(url.into(), "no query expected".into()));
        }
        Ok(Server {
            base: url.trim_end_matches('/').to_string(),
            tls,
        })
    }

    /// The URL of `path` (relative to the server, as an index names its files).
    pub fn url(&self, path: &str) -> Result<String, FetchError> {
        let rel = path.trim_start_matches('/');
        if rel.contains("://") || rel.split('/').any(|s| s == "..") {
            return Err(FetchError::Protocol(format!(
                "the server names a file outside itself: {path:?}"
            )));
        }
        Ok(format!("{}/{rel}", self.base))
    }

    /// Opens a connection for `url` (on this server), for a protocol other than plain GETs
    /// (a migration's websockets).
    pub async fn open(&self, url: &str) -> Result<Box<dyn Io>, FetchError> {
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| {
            FetchError::Url(url.into(), e.to_string())
        })?;
        self.connect(&uri).await
    }

    async fn connect(&self, uri: &Uri) -> Result<Box<dyn Io>, FetchError> {
        let shown = uri.to_string();
        let host = uri.host().unwrap_or("");
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((bare.as_str(), port)),
        )
        .await
        .map_err(|_| FetchError::Connect(shown.clone(), "timed out".into()))?
        .map_err(|e| FetchError::Connect(shown.clone(), e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = match (&self.tls, uri.scheme_str()) {
            (_, Some("http")) => return Ok(Box::new(tcp)),
            (Some(tls), _) => tls,
            (None, _) => {
                return Err(FetchError::Url(
                    shown,
                    "an https URL named by a plain-http server".into(),
                ))
            }
        };
        let name = ServerName::try_from(bare.clone())
            .map_err(|e| FetchError::Url(shown.clone(), e.to_string()))?;
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| FetchError::Tls(bare.clone(), "the handshake timed out".into()))?
        .map_err(|e| {
            let msg = e.to_string();
            let hint = if msg.contains("UnknownIssuer") || msg.contains("invalid peer certificate")
            {
                ": the server's certificate is not trusted (not signed by a CA in the system store; add the CA with update-ca-certificates)"
            } else {
                ""
            };
            FetchError::Tls(format!("{bare}:{port}"), format!("{msg}{hint}"))
        })?;
        Ok(Box::new(stream))
    }

    /// Sends a GET for `url` with `headers`, following up to [`MAX_REDIRECTS`] redirects
    /// that keep the scheme (a CDN in front of an image server); answers the response with
    /// its body unread.
    async fn get(
        &self,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<hyper::Response<Incoming>, FetchError> {
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.get_once(&current, headers).await?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let next = resp
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let scheme = |u: &str| u.split("://").next().map(str::to_ascii_lowercase);
            current = if next.starts_with('/') {
                let uri: Uri = current.parse().map_err(|e: hyper::http::uri::InvalidUri| {
                    FetchError::Url(current.clone(), e.to_string())
                })?;
                format!(
                    "{}://{}{next}",
                    uri.scheme_str().unwrap_or("https"),
                    uri.authority().map(|a| a.as_str()).unwrap_or("")
                )
            } else if next.contains("://") && scheme(&next) == scheme(&current) {
                next
            } else {
                return Err(FetchError::Protocol(format!(
                    "fetching {current}: a redirect to {next:?} (another scheme, or none)"
                )));
            };
        }
        Err(FetchError::Protocol(format!(
            "fetching {url}: more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// One GET, no redirects followed.
    async fn get_once(
        &self,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<hyper::Response<Incoming>, FetchError> {
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| {
            FetchError::Url(url.into(), e.to_string())
        })?;
        let io = self.connect(&uri).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| FetchError::Http(url.into(), e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let path = uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into());
        let mut req = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, "silo");
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Http(url.into(), e.to_string()))?;
        tokio::time::timeout(READ_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| FetchError::Http(url.into(), "no answer in time".into()))?
            .map_err(|e| FetchError::Http(url.into(), e.to_string()))
    }

    /// The whole body of `url`, at most `limit` bytes; a non-2xx answer is an error.
    pub async fn get_bytes(&self, url: &str, limit: usize) -> Result<Vec<u8>, FetchError> {
        let resp = self.get(url, &[]).await?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(url.into(), resp.status().as_u16()));
        }
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = next_frame(&mut body, url).await? {
            if out.len() + frame.len() > limit {
                return Err(FetchError::TooLarge(url.into(), limit as u64));
            }
            out.extend_from_slice(&frame);
        }
        Ok(out)
    }
}

async fn next_frame(body: &mut Incoming, url: &str) -> Result<Option<Bytes>, FetchError> {
    loop {
        let frame = tokio::time::timeout(READ_TIMEOUT, body.frame())
            .await
            .map_err(|_| FetchError::Http(url.into(), "the transfer stalled".into()))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(FetchError::Http(url.into(), e.to_string())),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Writes a download's progress into its operation as LXD does (`download_progress`), at
/// most every [`PROGRESS_EVERY`].
pub struct Progress<'a> {
    report: &'a (dyn Fn(String) + Send + Sync),
    last: Option<Instant>,
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").finish()
    }
}

impl<'a> Progress<'a> {
    /// Reports through `report`.
    pub fn new(report: &'a (dyn Fn(String) + Send + Sync)) -> Progress<'a> {
        Progress { report, last: None }
    }

    fn update(&mut self, label: &str, done: u64, total: u64, started: Instant, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .last
                .is_some_and(|t| now.duration_since(t) < PROGRESS_EVERY)
        {
            return;
        }
        self.last = Some(now);
        let secs = now.duration_since(started).as_secs_f64().max(0.001);
        let rate = silo_api::units::format_si((done as f64 / secs) as u64);
        let text = match done.saturating_mul(100).checked_div(total) {
            Some(pct) => format!("{label}: {}% ({rate}/s)", pct.min(100)),
            None => format!("{label}: {} ({rate}/s)", silo_api::units::format_si(done)),
        };
        (self.report)(text);
    }
}

/// A file being downloaded: removed on drop unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn temp_path(state: &Path) -> PathBuf {
    images::images_dir(state).join(format!("tmp-{}", uuid::Uuid::new_v4()))
}

/// What a finished download gives: the file, its size, and its hash (seeded with the
/// hash of the files before it, for a combined fingerprint).
struct Downloaded {
    file: TempFile,
    size: u64,
    sha256: String,
    combined: Option<sha2::Sha256>,
}

/// Downloads `url` into a temp file, resuming a cut connection with `Range`. `expect` is
/// the file's sha256 and size when the index announces them; `seed` continues a combined
/// hash over this file's bytes.
async fn download(
    server: &Server,
    state: &Path,
    url: &str,
    expect: Option<(&str, u64)>,
    seed: Option<sha2::Sha256>,
    label: &str,
    progress: &mut Progress<'_>,
) -> Result<Downloaded, FetchError> {
    let (tmp, mut out) = create_temp(state).await?;
    let limit = expect.map(|(_, s)| s).unwrap_or(MAX_FILE).min(MAX_FILE);
    let total = expect.map(|(_, s)| s).unwrap_or(0);
    let mut own = sha2::Sha256::new();
    let mut combined = seed.clone();
    let mut have: u64 = 0;
    let mut failures: u32 = 0;
    let started = Instant::now();
    loop {
        let attempt: Result<(), FetchError> = async {
            let headers: Vec<(&str, String)> = if have > 0 {
                vec![("range", format!("bytes={have}-"))]
            } else {
                Vec::new()
            };
            let resp = server.get(url, &headers).await?;
            let status = resp.status().as_u16();
            match status {
                200 if have > 0 => {
                    // The server ignored the range: start over.
                    tracing::info!(url, "the server does not resume; downloading again");
                    out.flush()
                        .await
                        .map_err(|e| FetchError::Local(e.to_string()))?;
                    out.get_mut()
                        .set_len(0)
                        .await
                        .map_err(|e| FetchError::Local(e.to_string()))?;
                    use tokio::io::AsyncSeekExt;
                    out.seek(std::io::SeekFrom::Start(0))
                        .await
                        .map_err(|e| FetchError::Local(e.to_string()))?;
                    own = sha2::Sha256::new();
                    combined = seed.clone();
                    have = 0;
                }
                200 => {}
                206 if have > 0 => {
                    let from = resp
                        .headers()
                        .get(hyper::header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.parse::<u64>().ok());
                    if from != Some(have) {
                        return Err(FetchError::Protocol(format!(
                            "fetching {url}: the server resumed at {from:?}, not at byte {have}"
                        )));
                    }
                }
                s => return Err(FetchError::Status(url.into(), s)),
            }
            let mut body = resp.into_body();
            while let Some(chunk) = next_frame(&mut body, url).await? {
                have += chunk.len() as u64;
                if have > limit {
                    return Err(FetchError::TooLarge(url.into(), limit));
                }
                own.update(&chunk);
                if let Some(c) = combined.as_mut() {
                    c.update(&chunk);
                }
                out.write_all(&chunk)
                    .await
                    .map_err(|e| FetchError::Local(format!("writing the download: {e}")))?;
                progress.update(label, have, total, started, false);
            }
            if total > 0 && have < total {
                return Err(FetchError::Http(
                    url.into(),
                    format!("the connection closed after {have} of {total} bytes"),
                ));
            }
            Ok(())
        }
        .await;
        match attempt {
            Ok(()) => break,
            // A cut connection (or one that could not be made) is retried; what the server
            // answered on purpose is not.
            Err(FetchError::Http(_, why)) | Err(FetchError::Connect(_, why)) => {
                failures += 1;
                if failures > RETRIES {
                    return Err(FetchError::GaveUp(url.into(), why, RETRIES));
                }
                let pause = BACKOFF * 2u32.pow(failures - 1);
                tracing::info!(url, have, failures, ?pause, %why, "download cut; resuming");
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
    out.flush()
        .await
        .map_err(|e| FetchError::Local(format!("writing the download: {e}")))?;
    out.get_mut()
        .sync_all()
        .await
        .map_err(|e| FetchError::Local(format!("syncing the download: {e}")))?;
    progress.update(label, have, total, started, true);
    let sha256 = hex::encode(own.finalize());
    if let Some((want, _)) = expect {
        if !want.eq_ignore_ascii_case(&sha256) {
            return Err(FetchError::Checksum(
                url.into(),
                want.to_ascii_lowercase(),
                sha256,
            ));
        }
    }
    Ok(Downloaded {
        file: tmp,
        size: have,
        sha256,
        combined,
    })
}

/// Where to pull from: `POST /1.0/images` and `POST /1.0/instances` give the same fields.
#[derive(Debug, Clone, Default)]
pub struct PullSource {
    /// The server's URL.
    pub server: String,
    /// `simplestreams` or `lxd` (empty: `lxd`, as LXD defaults it).
    pub protocol: String,
    /// An alias on the server.
    pub alias: String,
    /// Or a fingerprint (or a unique prefix).
    pub fingerprint: String,
    /// A one-time secret for a private image on an LXD server.
    pub secret: String,
    /// The server's PEM certificate to trust instead of the CA store.
    pub certificate: String,
}

/// What to make of a pulled image.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Aliases to create.
    pub aliases: Vec<images::Alias>,
    /// Public image.
    pub public: bool,
    /// Keep it up to date from its source.
    pub auto_update: bool,
    /// A cache entry (pulled to create an instance), removed when unused for a while.
    pub cached: bool,
}

/// An image as a server offers it, and how to fetch it.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// Its full fingerprint.
    pub fingerprint: String,
    /// The original file name.
    pub filename: String,
    /// Properties to record.
    pub properties: std::collections::BTreeMap<String, String>,
    /// How to fetch it.
    fetch: Fetch,
}

#[derive(Debug, Clone)]
enum Fetch {
    /// Files of a simplestreams tree, each with its sha256.
    Files(Vec<simplestreams::File>),
    /// An LXD server's `/export` (one file or a multipart of metadata and rootfs), or a
    /// direct URL image.
    Export(String),
}

fn protocol_of(src: &PullSource) -> Result<&'static str, FetchError> {
    match src.protocol.as_str() {
        "" | "lxd" => Ok("lxd"),
        "simplestreams" => Ok("simplestreams"),
        "direct" => Ok("direct"),
        other => Err(FetchError::Protocol(format!(
            "unsupported image server protocol {other:?} (lxd or simplestreams)"
        ))),
    }
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks the server which image `src` names now (an alias moves to newer versions).
pub async fn resolve(
    server: &Server,
    src: &PullSource,
    local_arch: &str,
) -> Result<RemoteImage, FetchError> {
    let what = if src.fingerprint.is_empty() {
        src.alias.as_str()
    } else {
        src.fingerprint.as_str()
    };
    let protocol = protocol_of(src)?;
    if what.is_empty() && protocol != "direct" {
        return Err(FetchError::Protocol(
            "the source names no image: give an alias or a fingerprint".into(),
        ));
    }
    match protocol {
        "simplestreams" => {
            let index_url = server.url(simplestreams::INDEX_PATH)?;
            let index = simplestreams::parse_index(
                &server
                    .get_bytes(&index_url, simplestreams::MAX_INDEX_BYTES)
                    .await?,
            )
            .map_err(|e| FetchError::Protocol(format!("{index_url}: {e}")))?;
            let path = index
                .images_path()
                .map_err(|e| FetchError::Protocol(format!("{index_url}: {e}")))?;
            let products_url = server.url(path)?;
            let products = simplestreams::parse_products(
                &server
                    .get_bytes(&products_url, simplestreams::MAX_INDEX_BYTES)
                    .await?,
            )
            .map_err(|e| FetchError::Protocol(format!("{products_url}: {e}")))?;
            let mut imgs = products.images();
            simplestreams::apply_aliases(&mut imgs, local_arch);
            let img = simplestreams::find(&imgs, what).ok_or_else(|| {
                FetchError::Protocol(format!(
                    "the image server {} has no image {what:?} for {local_arch}",
                    server.base
                ))
            })?;
            Ok(RemoteImage {
                fingerprint: img.fingerprint.clone(),
                filename: img.filename.clone(),
                properties: img.properties.clone(),
                fetch: Fetch::Files(img.files.clone()),
            })
        }
        "direct" => {
            // LXD's direct URL images: the URL answers headers naming the image's hash and
            // where to fetch it.
            let resp = server
                .get(
                    &server.base,
                    &[
                        ("lxd-server-architectures", local_arch.to_string()),
                        ("lxd-server-version", "5.0.2".to_string()),
                    ],
                )
                .await?;
            if !resp.status().is_success() {
                return Err(FetchError::Status(
                    server.base.clone(),
                    resp.status().as_u16(),
                ));
            }
            let header = |k: &str| {
                resp.headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let (hash, url) = (header("lxd-image-hash"), header("lxd-image-url"));
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || url.is_empty() {
                return Err(FetchError::Protocol(format!(
                    "{}: missing or invalid LXD-Image-Hash and LXD-Image-URL headers",
                    server.base
                )));
            }
            Ok(RemoteImage {
                fingerprint: hash.to_ascii_lowercase(),
                filename: String::new(),
                properties: Default::default(),
                fetch: Fetch::Export(url),
            })
        }
        _ => {
            let secret = if src.secret.is_empty() {
                String::new()
            } else {
                format!("?secret={}", url_escape(&src.secret))
            };
            let alias_target = |name: &str| {
                let url = server.url(&format!("1.0/images/aliases/{}", url_escape(name)));
                async move {
                    let v = lxd_metadata(server, &url?).await?;
                    Ok::<String, FetchError>(
                        v.get("target")
                            .and_then(|t| t.as_str())
                            .unwrap_or("")
                            .to_string(),
                    )
                }
            };
            let fp = if src.fingerprint.is_empty() {
                alias_target(&src.alias).await?
            } else if is_full_fingerprint(&src.fingerprint) {
                src.fingerprint.clone()
            } else {
                // The stock client sends a public image's alias as its fingerprint (so the
                // copy's auto-update follows the alias); LXD looks it up as an alias first,
                // then as a fingerprint prefix.
                match alias_target(&src.fingerprint).await {
                    Ok(target) => target,
                    Err(FetchError::Status(_, 404)) => src.fingerprint.clone(),
                    Err(e) => return Err(e),
                }
            };
            if fp.is_empty() || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FetchError::Protocol(format!(
                    "the server answered an invalid fingerprint for {what:?}"
                )));
            }
            let url = server.url(&format!("1.0/images/{fp}{secret}"))?;
            let img: silo_api::Image =
                silo_api::lenient::from_value(lxd_metadata(server, &url).await?)
                    .map_err(|e| FetchError::Protocol(format!("{url}: invalid image: {e}")))?;
            if img.fingerprint.len() != 64
                || !img.fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(FetchError::Protocol(format!(
                    "{url}: invalid fingerprint {:?}",
                    img.fingerprint
                )));
            }
            let export = server.url(&format!("1.0/images/{}/export{secret}", img.fingerprint))?;
            Ok(RemoteImage {
                fingerprint: img.fingerprint.to_ascii_lowercase(),
                filename: img.filename,
                properties: img.properties,
                fetch: Fetch::Export(export),
            })
        }
    }
}

/// The `metadata` of an LXD server's sync answer.
async fn lxd_metadata(server: &Server, url: &str) -> Result<serde_json::Value, FetchError> {
    let resp = server.get(url, &[]).await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = next_frame(&mut body, url).await? {
        if out.len() + frame.len() > MAX_JSON {
            return Err(FetchError::TooLarge(url.into(), MAX_JSON as u64));
        }
        out.extend_from_slice(&frame);
    }
    let v: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| FetchError::Protocol(format!("{url}: invalid answer: {e}")))?;
    if !(200..300).contains(&status) {
        let msg = v.get("error").and_then(|e| e.as_str()).unwrap_or("");
        return Err(if status == 404 {
            FetchError::Status(url.into(), 404)
        } else {
            FetchError::Protocol(format!("{url}: the server answered {status}: {msg}"))
        });
    }
    Ok(v.get("metadata")
        .cloned()
        .unwrap_or(serde_json::Value::Null))
}

/// Downloads an LXD server's export: one file, or a multipart of `metadata` and `rootfs`.
/// Retried whole on a cut connection (an export has no per-file hash to resume against).
async fn download_export(
    server: &Server,
    state: &Path,
    url: &str,
    progress: &mut Progress<'_>,
) -> Result<(Downloaded, Option<Downloaded>), FetchError> {
    let mut failures = 0;
    loop {
        match export_once(server, state, url, progress).await {
            Ok(r) => return Ok(r),
            Err(FetchError::Http(_, why)) | Err(FetchError::Connect(_, why)) => {
                failures += 1;
                if failures > RETRIES {
                    return Err(FetchError::GaveUp(url.into(), why, RETRIES));
                }
                tokio::time::sleep(BACKOFF * 2u32.pow(failures - 1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn export_once(
    server: &Server,
    state: &Path,
    url: &str,
    progress: &mut Progress<'_>,
) -> Result<(Downloaded, Option<Downloaded>), FetchError> {
    let resp = server.get(url, &[]).await?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(url.into(), resp.status().as_u16()));
    }
    let ctype = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let total = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let started = Instant::now();
    let body = resp.into_body();
    let url_owned = url.to_string();
    let stream = futures::stream::unfold(body, move |mut b| {
        let u = url_owned.clone();
        async move {
            match next_frame(&mut b, &u).await {
                Ok(Some(d)) => Some((Ok::<Bytes, FetchError>(d), b)),
                Ok(None) => None,
                Err(e) => Some((Err(e), b)),
            }
        }
    });
    if let Some(boundary) = ctype
        .starts_with("multipart/")
        .then(|| multer::parse_boundary(&ctype).ok())
        .flatten()
    {
        let mut mp = multer::Multipart::new(stream, boundary);
        let mut meta: Option<Downloaded> = None;
        let mut root: Option<Downloaded> = None;
        let mut done = 0u64;
        while let Some(mut field) = mp
            .next_field()
            .await
            .map_err(|e| FetchError::Http(url.into(), e.to_string()))?
        {
            let name = field.name().unwrap_or("").to_string();
            let role = match name.as_str() {
                "metadata" => "metadata",
                "rootfs" => "rootfs",
                other => {
                    return Err(FetchError::Protocol(format!(
                        "{url}: unexpected part {other:?} (expected metadata and rootfs)"
                    )))
                }
            };
            let seed = if role == "rootfs" {
                meta.as_ref().and_then(|m| m.combined.clone())
            } else {
                Some(sha2::Sha256::new())
            };
            let mut sink = Sink::new(state, seed).await?;
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| FetchError::Http(url.into(), e.to_string()))?
            {
                done += chunk.len() as u64;
                sink.write(&chunk, url).await?;
                progress.update(role, done, total, started, false);
            }
            let d = sink.finish().await?;
            if role == "metadata" {
                meta = Some(d);
            } else {
                root = Some(d);
            }
        }
        let meta = meta.ok_or_else(|| FetchError::Protocol(format!("{url}: no metadata part")))?;
        if root.is_none() {
            return Err(FetchError::Protocol(format!("{url}: no rootfs part")));
        }
        progress.update("rootfs", done, total, started, true);
        Ok((meta, root))
    } else {
        futures::pin_mut!(stream);
        use futures::StreamExt;
        let mut sink = Sink::new(state, None).await?;
        let mut done = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            done += chunk.len() as u64;
            sink.write(&chunk, url).await?;
            progress.update("metadata", done, total, started, false);
        }
        if total > 0 && done < total {
            return Err(FetchError::Http(
                url.into(),
                format!("the connection closed after {done} of {total} bytes"),
            ));
        }
        progress.update("metadata", done, total, started, true);
        Ok((sink.finish().await?, None))
    }
}

/// A temp file written from a stream, hashed on the way.
struct Sink {
    tmp: TempFile,
    out: tokio::io::BufWriter<tokio::fs::File>,
    own: sha2::Sha256,
    combined: Option<sha2::Sha256>,
    size: u64,
}

/// A new temp file beside the images (removed on drop unless kept), behind a large write
/// buffer: each write is a hop to tokio's blocking pool.
async fn create_temp(
    state: &Path,
) -> Result<(TempFile, tokio::io::BufWriter<tokio::fs::File>), FetchError> {
    let dir = images::images_dir(state);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| FetchError::Local(format!("creating {}: {e}", dir.display())))?;
    let tmp = TempFile {
        path: temp_path(state),
        keep: false,
    };
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp.path)
        .await
        .map_err(|e| FetchError::Local(format!("creating {}: {e}", tmp.path.display())))?;
    Ok((tmp, tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file)))
}

impl Sink {
    async fn new(state: &Path, combined: Option<sha2::Sha256>) -> Result<Sink, FetchError> {
        let (tmp, out) = create_temp(state).await?;
        Ok(Sink {
            tmp,
            out,
            own: sha2::Sha256::new(),
            combined,
            size: 0,
        })
    }

    async fn write(&mut self, chunk: &[u8], url: &str) -> Result<(), FetchError> {
        self.size += chunk.len() as u64;
        if self.size > MAX_FILE {
            return Err(FetchError::TooLarge(url.into(), MAX_FILE));
        }
        self.own.update(chunk);
        if let Some(c) = self.combined.as_mut() {
            c.update(chunk);
        }
        self.out
            .write_all(chunk)
            .await
            .map_err(|e| FetchError::Local(format!("writing the download: {e}")))
    }

    async fn finish(mut self) -> Result<Downloaded, FetchError> {
        self.out
            .flush()
            .await
            .map_err(|e| FetchError::Local(format!("writing the download: {e}")))?;
        self.out
            .get_mut()
            .sync_all()
            .await
            .map_err(|e| FetchError::Local(format!("syncing the download: {e}")))?;
        Ok(Downloaded {
            file: self.tmp,
            size: self.size,
            sha256: hex::encode(self.own.finalize()),
            combined: self.combined,
        })
    }
}

/// Downloads what `img` is made of and checks it: each file's sha256, then the combined
/// fingerprint (metadata ‖ rootfs, or the one file's hash). Answers the temp files.
async fn fetch_checked(
    server: &Server,
    state: &Path,
    img: &RemoteImage,
    progress: &mut Progress<'_>,
) -> Result<(Downloaded, Option<Downloaded>), FetchError> {
    let (meta, root) = match &img.fetch {
        Fetch::Files(files) => {
            let meta_f = files
                .iter()
                .find(|f| f.role == FileRole::Meta)
                .ok_or_else(|| FetchError::Protocol("the image has no metadata file".into()))?;
            let root_f = files.iter().find(|f| f.role == FileRole::Root);
            let meta_url = server.url(&meta_f.path)?;
            let meta = download(
                server,
                state,
                &meta_url,
                Some((&meta_f.sha256, meta_f.size)),
                root_f.map(|_| sha2::Sha256::new()),
                "metadata",
                progress,
            )
            .await?;
            let root = match root_f {
                Some(r) => {
                    let url = server.url(&r.path)?;
                    Some(
                        download(
                            server,
                            state,
                            &url,
                            Some((&r.sha256, r.size)),
                            meta.combined.clone(),
                            "rootfs",
                            progress,
                        )
                        .await?,
                    )
                }
                None => None,
            };
            (meta, root)
        }
        Fetch::Export(url) => {
            let url = if url.contains("://") {
                url.clone()
            } else {
                server.url(url)?
            };
            download_export(server, state, &url, progress).await?
        }
    };
    let got = match &root {
        Some(r) => r
            .combined
            .clone()
            .map(|h| hex::encode(h.finalize()))
            .unwrap_or_default(),
        None => meta.sha256.clone(),
    };
    if got != img.fingerprint {
        return Err(FetchError::Checksum(
            "the image's combined fingerprint".into(),
            img.fingerprint.clone(),
            got,
        ));
    }
    Ok((meta, root))
}

/// Pulls an image into the local store (or finds it there already), with the given
/// settings. Concurrent pulls of the same image share one download.
pub async fn pull(
    c: &Services,
    src: &PullSource,
    opts: PullOptions,
    report: &(dyn Fn(String) + Send + Sync),
) -> Result<Image, DomainError> {
    let protocol = protocol_of(src)?;
    if src.fingerprint.len() == 64 && opts.cached {
        // A full fingerprint already here (an instance from a cached image): no need to ask
        // the server, which may be gone.
        if let Some(existing) = images::get(&c.db, &src.fingerprint.to_ascii_lowercase())? {
            return Ok(existing);
        }
    }
    let server = Server::new(&src.server, &src.certificate)?;
    let remote = resolve(&server, src, &c.host.kernel_architecture).await?;
    let lock = c.image_locks.download_lock(&remote.fingerprint);
    let _held = lock.lock().await;
    if let Some(existing) = images::get(&c.db, &remote.fingerprint)? {
        // Already here (pulled before, or by a concurrent pull that held the lock).
        for a in &opts.aliases {
            let a = images::Alias {
                target: existing.fingerprint.clone(),
                ..a.clone()
            };
            images::alias_put(&c.db, &a, true)?;
        }
        if !opts.cached && existing.cached {
            // An explicit copy of what was only a cache entry keeps it for good.
            crate::store::images::set_origin(
                &c.db,
                &existing.fingerprint,
                false,
                opts.auto_update || existing.auto_update,
                existing.update_source.as_ref(),
            )
            .map_err(DomainError::from)?;
        }
        return images::get(&c.db, &existing.fingerprint)?
            .ok_or_else(|| DomainError::Internal("the image vanished".into()));
    }
    let mut progress = Progress::new(report);
    let (meta, root) = fetch_checked(&server, &c.state_dir, &remote, &mut progress).await?;
    let filename = if remote.filename.is_empty() {
        meta.file
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        remote.filename.clone()
    };
    let received = Received {
        main: (meta.file.path.clone(), meta.size),
        rootfs: root.as_ref().map(|r| (r.file.path.clone(), r.size)),
        fingerprint: remote.fingerprint.clone(),
        filename,
        public: opts.public,
        properties: remote.properties.clone(),
        aliases: opts.aliases.clone(),
    };
    let source = UpdateSource {
        alias: source_alias(src, &remote.fingerprint),
        certificate: src.certificate.clone(),
        protocol: protocol.to_string(),
        server: src.server.clone(),
        image_type: "container".into(),
    };
    let db = c.db.clone();
    let state = c.state_dir.clone();
    // The record and its origin are written together on a blocking thread that finishes even
    // if the operation is cancelled meanwhile: an image is recorded whole or not at all. The
    // temp files' guards go with it (commit moves the files away on success).
    let img = tokio::task::spawn_blocking(move || {
        let _files = (meta, root);
        let img = images::commit(&db, &state, &received)?;
        if let Err(e) = crate::store::images::set_origin(
            &db,
            &img.fingerprint,
            opts.cached,
            opts.auto_update,
            Some(&source),
        ) {
            let _ = images::remove(&db, &img.fingerprint);
            images::remove_files(&state, &img.fingerprint);
            return Err(DomainError::from(e));
        }
        Ok(img)
    })
    .await
    .map_err(|e| DomainError::Internal(e.to_string()))??;
    c.events.lifecycle(
        "image-created",
        &format!("/1.0/images/{}", img.fingerprint),
        serde_json::json!({}),
    );
    images::get(&c.db, &img.fingerprint)?
        .ok_or_else(|| DomainError::Internal("the image vanished".into()))
}

fn is_full_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The alias an update follows: the one asked for, or what the client sent as the
/// "fingerprint" when it was not one (the stock client sends a public image's alias there,
/// and LXD records it as the source's alias so that auto-update follows it).
fn source_alias(src: &PullSource, fingerprint: &str) -> String {
    if !src.alias.is_empty() || src.fingerprint.is_empty() {
        return src.alias.clone();
    }
    let sent = src.fingerprint.to_ascii_lowercase();
    if fingerprint.starts_with(&sent) {
        String::new()
    } else {
        src.fingerprint.clone()
    }
}

/// The source an image was pulled from, as a [`PullSource`] naming its alias.
pub fn source_of(s: &UpdateSource) -> PullSource {
    PullSource {
        server: s.server.clone(),
        protocol: s.protocol.clone(),
        alias: s.alias.clone(),
        fingerprint: String::new(),
        secret: String::new(),
        certificate: s.certificate.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_stay_on_the_server() {
        let s = Server::new("http://127.0.0.1:8000/base/", "").expect("server");
        assert_eq!(
            s.url("streams/v1/index.json").expect("url"),
            "http://127.0.0.1:8000/base/streams/v1/index.json"
        );
        assert!(s.url("../etc/passwd").is_err());
        assert!(s.url("http://elsewhere/x").is_err());
        assert!(Server::new("ftp://x/", "").is_err());
        assert!(Server::new("https:///nohost", "").is_err());
    }

    #[test]
    fn an_alias_sent_as_the_fingerprint_is_the_source_alias() {
        let fp = "db80776924026d0489f531d4907a513e9acab22eb9cc64bfd44fdac911b95035";
        let src = |alias: &str, fingerprint: &str| PullSource {
            alias: alias.into(),
            fingerprint: fingerprint.into(),
            ..Default::default()
        };
        assert_eq!(source_alias(&src("", "bb"), fp), "bb");
        assert_eq!(source_alias(&src("deb", ""), fp), "deb");
        assert_eq!(source_alias(&src("", fp), fp), "");
        assert_eq!(source_alias(&src("", "DB8077"), fp), "");
        assert!(is_full_fingerprint(fp));
        assert!(!is_full_fingerprint("bb"));
    }

    #[test]
    fn a_pinned_certificate_must_be_pem() {
        assert!(matches!(
            Server::new("https://127.0.0.1:8443", "not a certificate"),
            Err(FetchError::Protocol(_))
        ));
    }

    #[test]
    fn progress_reads_as_lxd_prints_it() {
        let seen = std::sync::Mutex::new(Vec::new());
        let report = |s: String| seen.lock().expect("lock").push(s);
        let mut p = Progress::new(&report);
        let t = Instant::now() - Duration::from_secs(1);
        p.update("rootfs", 50, 100, t, true);
        p.update("rootfs", 60, 100, t, false);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1, "rate-limited: {seen:?}");
        assert!(seen[0].starts_with("rootfs: 50% ("), "{}", seen[0]);
        assert!(seen[0].ends_with("/s)"), "{}", seen[0]);
    }
}
