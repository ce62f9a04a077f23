//! Talking to silod (or an LXD-compatible server): over the unix socket found as LXD's client
//! finds it, or over HTTPS to a remote; HTTP/1.1, the response envelope, waiting on
//! operations, and the events websocket.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use silo_api::{lenient, paths};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::tls;

/// A connection to a server: its unix socket, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// The local unix socket.
    Unix(UnixStream),
    /// HTTPS to a remote.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A websocket to the server (unix socket or TLS).
pub type WebSocket = tokio_tungstenite::WebSocketStream<Stream>;

/// An HTTPS server: where it is and how its certificate is judged.
#[derive(Debug)]
pub struct HttpsTarget {
    /// The remote's name, for messages.
    pub remote: String,
    /// Host (an IPv6 address in brackets) and port.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The TLS configuration (verifier and client certificate).
    pub tls: Arc<rustls::ClientConfig>,
    /// What the verifier saw on the last handshake.
    pub seen: Arc<Mutex<tls::Seen>>,
    /// The pinned certificate's fingerprint, if the remote has one.
    pub pinned: Option<String>,
}

impl HttpsTarget {
    /// `https://host:port`.
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }
}

/// How a client reaches its server.
#[derive(Debug, Clone)]
pub enum Transport {
    /// The unix socket at this path.
    Unix(PathBuf),
    /// HTTPS.
    Https(Arc<HttpsTarget>),
}

/// Client errors, each one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach silod at {path}: {source} (is silod running? set SILO_SOCKET or SILO_DIR to point at it)")]
    Connect {
        /// The socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// TCP or TLS to a remote failed.
    #[error("cannot reach {url}: {msg}")]
    Remote {
        /// The remote's URL.
        url: String,
        /// What failed.
        msg: String,
    },
    /// A remote's certificate is not the one pinned when it was added.
    #[error("the certificate of remote {remote} changed since it was added: pinned {pinned}, presented {presented}; refusing to connect (remove and add the remote again if the change is expected)")]
    CertChanged {
        /// The remote.
        remote: String,
        /// Fingerprint of the pinned certificate.
        pinned: String,
        /// Fingerprint of the certificate the server presented.
        presented: String,
    },
    /// HTTP failed.
    #[error("talking to silod: {0}")]
    Http(String),
    /// The daemon answered with an error.
    #[error("{0}")]
    Api(String),
    /// The answer was not what the API promises.
    #[error("unexpected answer from silod: {0}")]
    Protocol(String),
}

/// Where the daemon's socket is: `SILO_SOCKET`, else `SILO_DIR/unix.socket`, else
/// `/var/lib/silo/unix.socket`.
pub fn socket_path() -> PathBuf {
    if let Some(s) = std::env::var_os("SILO_SOCKET").filter(|s| !s.is_empty()) {
        return PathBuf::from(s);
    }
    if let Some(d) = std::env::var_os("SILO_DIR").filter(|s| !s.is_empty()) {
        return PathBuf::from(d).join("unix.socket");
    }
    PathBuf::from("/var/lib/silo/unix.socket")
}

/// The `If-Match` header for an ETag from an earlier GET (none without one).
pub fn if_match(etag: Option<String>) -> Vec<(&'static str, String)> {
    etag.into_iter().map(|e| ("if-match", e)).collect()
}

/// A connection-per-request client for one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
}

impl Client {
    /// A client for the socket at `path`.
    pub fn new(path: PathBuf) -> Client {
        Client {
            transport: Transport::Unix(path),
        }
    }

    /// A client for an HTTPS server.
    pub fn https(target: HttpsTarget) -> Client {
        Client {
            transport: Transport::Https(Arc::new(target)),
        }
    }

    /// How this client reaches its server.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The `Host` header.
    fn host_header(&self) -> String {
        match &self.transport {
            Transport::Unix(_) => "unix.socket".into(),
            Transport::Https(t) => format!("{}:{}", t.host, t.port),
        }
    }

    async fn connect(&self) -> Result<Stream, ClientError> {
        match &self.transport {
            Transport::Unix(path) => {
                UnixStream::connect(path)
                    .await
                    .map(Stream::Unix)
                    .map_err(|source| ClientError::Connect {
                        path: path.display().to_string(),
                        source,
                    })
            }
            Transport::Https(t) => Self::connect_tls(t).await.map(|s| Stream::Tls(Box::new(s))),
        }
    }

    async fn connect_tls(
        t: &HttpsTarget,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        let fail = |msg: String| ClientError::Remote { url: t.url(), msg };
        let bare = t.host.trim_matches(['[', ']']).to_string();
        let tcp = TcpStream::connect((bare.as_str(), t.port))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from(bare)
            .map_err(|e| fail(format!("bad host name: {e}")))?;
        if let Ok(mut s) = t.seen.lock() {
            *s = tls::Seen::default();
        }
        let conn = tokio_rustls::TlsConnector::from(t.tls.clone())
            .connect(name, tcp)
            .await;
        conn.map_err(|e| {
            let seen = t.seen.lock().ok();
            if let Some(s) = seen.as_deref() {
                if s.pin_mismatch {
                    return ClientError::CertChanged {
                        remote: t.remote.clone(),
                        pinned: t.pinned.clone().unwrap_or_default(),
                        presented: s
                            .presented
                            .as_deref()
                            .map(tls::fingerprint)
                            .unwrap_or_default(),
                    };
                }
                if let Some(ca) = &s.ca_error {
                    return fail(format!(
                        "the server certificate is not signed by a CA of the system's store \
                         and no certificate is pinned for remote {}: {ca}",
                        t.remote
                    ));
                }
            }
            fail(format!("TLS: {e}"))
        })
    }

    /// Connects once and returns the server's certificate (DER) as presented. Only useful
    /// with a client whose TLS trust is [`tls::Trust::Capture`].
    pub async fn peer_certificate(&self) -> Result<Vec<u8>, ClientError> {
        let Transport::Https(t) = &self.transport else {
            return Err(ClientError::Protocol("not an HTTPS remote".into()));
        };
        let s = Self::connect_tls(t).await?;
        s.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or_else(|| ClientError::Remote {
                url: t.url(),
                msg: "the server presented no certificate".into(),
            })
    }

    /// Sends `req` on a fresh connection and returns the response head and body stream.
    async fn send<B>(&self, req: Request<B>) -> Result<hyper::Response<Incoming>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    fn builder(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
    ) -> hyper::http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.host_header())
            .header("user-agent", concat!("silo/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        b
    }

    async fn json_answer(resp: hyper::Response<Incoming>) -> Result<Answer, ClientError> {
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!("{status} with a body that is not JSON: {e}"))
        })?;
        Ok(Answer {
            status,
            etag,
            body: v,
        })
    }

    /// Sends a request with a JSON body (if any) and extra headers; returns the whole answer.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, ClientError> {
        let bytes = match body {
            Some(v) => {
                Bytes::from(serde_json::to_vec(v).map_err(|e| ClientError::Http(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let req = self
            .builder(method, path, headers)
            .header("content-type", "application/json")
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Self::json_answer(self.send(req).await?).await
    }

    /// Sends a request whose body is streamed (large uploads) and returns the whole answer.
    /// `headers` must carry the content type (and the length, when known).
    pub async fn request_stream<B>(
        &self,
        method: &str,
        path: &str,
        body: B,
        headers: &[(&str, String)],
    ) -> Result<Answer, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let req = self
            .builder(method, path, headers)
            .body(body)
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Self::json_answer(self.send(req).await?).await
    }

    /// GETs `path` and returns the response with its body unread (downloads). An answer
    /// other than 200 is read as the API's error envelope.
    pub async fn download(&self, path: &str) -> Result<hyper::Response<Incoming>, ClientError> {
        let req = self
            .builder("GET", path, &[])
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self.send(req).await?;
        if resp.status().as_u16() == 200 {
            return Ok(resp);
        }
        let a = Self::json_answer(resp).await?;
        a.metadata()?;
        Err(ClientError::Protocol(format!(
            "status {} for a download",
            a.status
        )))
    }

    /// GETs `path` from a plain web server (a simplestreams tree, not the API: no envelope)
    /// and returns at most `limit` bytes of its body; any status but 200 is an error naming
    /// it, and a longer body is refused rather than held.
    pub async fn get_file(&self, path: &str, limit: usize) -> Result<Bytes, ClientError> {
        let req = self
            .builder("GET", path, &[])
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self.send(req).await?;
        let status = resp.status();
        if status.as_u16() != 200 {
            return Err(ClientError::Api(format!("GET {path}: HTTP {status}")));
        }
        let body = http_body_util::Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ClientError::Protocol(format!("{path} is larger than {limit} bytes"))
                } else {
                    ClientError::Http(e.to_string())
                }
            })?;
        Ok(body.to_bytes())
    }

    /// GETs `path` and returns its whole raw body (console logs, file contents).
    pub async fn get_raw(&self, path: &str) -> Result<Bytes, ClientError> {
        let resp = self.download(path).await?;
        Ok(resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes())
    }

    /// Sends a request and returns the raw status and JSON body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let a = self.request(method, path, body, &[]).await?;
        Ok((a.status, a.body))
    }

    /// Sends a request and returns the envelope's metadata, or the API's error.
    pub async fn query(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.request(method, path, body, &[]).await?.metadata()
    }

    /// GET returning the metadata and the ETag (for a later If-Match).
    pub async fn get_etag(&self, path: &str) -> Result<(Value, Option<String>), ClientError> {
        let a = self.request("GET", path, None, &[]).await?;
        let etag = a.etag.clone();
        Ok((a.metadata()?, etag))
    }

    /// Sends a request and, when the server answers with a background operation, waits
    /// for it. Returns the operation (with its `metadata`, `resources`, ...) when there
    /// was one, else the sync answer's metadata.
    pub async fn operate(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.request(method, path, body, headers)
            .await?
            .finish(self)
            .await
    }

    /// GET shorthand.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.query("GET", path, None).await
    }

    /// Waits for an operation to end; fails with its error text if it failed. Returns the
    /// operation's metadata.
    pub async fn wait(&self, op_id: &str) -> Result<Value, ClientError> {
        Ok(self.operation_wait(op_id).await?.metadata)
    }

    /// Waits for an operation to end (`/1.0/operations/<id>/wait`); returns the whole
    /// operation, or its error.
    pub async fn wait_op(&self, op_id: &str) -> Result<Value, ClientError> {
        let op = self.operation_wait(op_id).await?;
        serde_json::to_value(op).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Opens a websocket on `path` (which starts with `/1.0/...`) over the client's transport.
    pub async fn websocket(&self, path: &str) -> Result<WebSocket, ClientError> {
        let stream = self.connect().await?;
        // The stream is already TLS where it must be: the URL only names host and path.
        let url = format!("ws://{}{path}", self.host_header());
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| ClientError::Http(format!("websocket {path}: {e}")))?;
        Ok(ws)
    }

    /// Opens `/1.0/events` and calls `on_event` for each event until it returns false.
    pub async fn events(
        &self,
        types: Option<&str>,
        mut on_event: impl FnMut(Value) -> bool,
    ) -> Result<(), ClientError> {
        use futures::StreamExt;
        let path = match types {
            Some(t) => paths::events_of(t),
            None => paths::events(),
        };
        let mut ws = self.websocket(&path).await?;
        while let Some(msg) = ws.next().await {
            let msg = msg.map_err(|e| ClientError::Http(format!("events websocket: {e}")))?;
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                let v: Value =
                    serde_json::from_str(&t).map_err(|e| ClientError::Protocol(e.to_string()))?;
                if !on_event(v) {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The envelope's metadata decoded as `T` with LXD's leniency (`null` is the zero value,
/// unknown fields are ignored).
fn decode<T: DeserializeOwned>(path: &str, v: Value) -> Result<T, ClientError> {
    lenient::from_value(v).map_err(|e| ClientError::Protocol(format!("{path}: {e}")))
}

fn to_json<B: Serialize>(body: &B) -> Result<Value, ClientError> {
    serde_json::to_value(body).map_err(|e| ClientError::Http(e.to_string()))
}

/// Typed calls: every object and request is a `silo_api` type, every path from
/// `silo_api::paths`.
impl Client {
    /// GETs `path` and decodes its metadata as `T`.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        decode(path, self.get(path).await?)
    }

    /// GETs `path` and decodes its metadata as `T`, with the ETag for a later If-Match.
    pub async fn get_as_etag<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, Option<String>), ClientError> {
        let (v, etag) = self.get_etag(path).await?;
        Ok((decode(path, v)?, etag))
    }

    /// Sends `body` and waits for the operation when the answer is async; a sync answer is
    /// given as a finished operation whose metadata is the answer's.
    pub async fn run<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, String)],
    ) -> Result<silo_api::Operation, ClientError> {
        let body = body.map(to_json).transpose()?;
        let a = self.request(method, path, body.as_ref(), headers).await?;
        let meta = a.metadata()?;
        match a.operation_id() {
            Some(id) => self.operation_wait(&id).await,
            None => Ok(silo_api::Operation {
                status: "Success".into(),
                status_code: 200,
                metadata: meta,
                ..Default::default()
            }),
        }
    }

    /// Sends `body` and returns the id of the operation the server started (`None` for a
    /// sync answer), or the server's refusal: a caller can tell a refused request from an
    /// operation that failed.
    pub async fn start<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<Option<String>, ClientError> {
        let body = body.map(to_json).transpose()?;
        let a = self.request(method, path, body.as_ref(), &[]).await?;
        a.metadata()?;
        Ok(a.operation_id())
    }

    /// Sends a request that has no body.
    async fn run_empty(
        &self,
        method: &str,
        path: &str,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run::<Value>(method, path, None, &[]).await
    }

    /// Waits for an operation to end; its error when it failed.
    pub async fn operation_wait(&self, id: &str) -> Result<silo_api::Operation, ClientError> {
        let path = paths::operation_wait(id, -1);
        let op: silo_api::Operation = self.get_as(&path).await?;
        if op.succeeded() {
            return Ok(op);
        }
        Err(ClientError::Api(if op.err.is_empty() {
            "operation failed".to_string()
        } else {
            op.err
        }))
    }

    /// One operation, as it is now.
    pub async fn operation(&self, id: &str) -> Result<silo_api::Operation, ClientError> {
        self.get_as(&paths::operation(id)).await
    }

    /// Every operation, by status ("running", "success", ...).
    pub async fn operations(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<silo_api::Operation>>, ClientError> {
        self.get_as(&paths::recursion(&paths::operations(), 1))
            .await
    }

    /// The server.
    pub async fn server(&self) -> Result<silo_api::Server, ClientError> {
        self.get_as(&paths::server()).await
    }

    /// Replaces the server's configuration (If-Match with `etag`).
    pub async fn update_server(
        &self,
        put: &silo_api::ServerPut,
        etag: Option<String>,
    ) -> Result<(), ClientError> {
        self.run("PUT", &paths::server(), Some(put), &if_match(etag))
            .await
            .map(drop)
    }

    /// Merges keys into the server's configuration.
    pub async fn patch_server(&self, put: &silo_api::ServerPut) -> Result<(), ClientError> {
        self.run("PATCH", &paths::server(), Some(put), &[])
            .await
            .map(drop)
    }

    /// Every instance.
    pub async fn instances(&self) -> Result<Vec<silo_api::Instance>, ClientError> {
        self.get_as(&paths::recursion(&paths::instances(), 1)).await
    }

    /// Every instance with its state, snapshots and backups.
    pub async fn instances_full(&self) -> Result<Vec<silo_api::InstanceFull>, ClientError> {
        self.get_as(&paths::recursion(&paths::instances(), 2)).await
    }

    /// One instance.
    pub async fn instance(&self, name: &str) -> Result<silo_api::Instance, ClientError> {
        self.get_as(&paths::instance(name)).await
    }

    /// One instance with its ETag.
    pub async fn instance_etag(
        &self,
        name: &str,
    ) -> Result<(silo_api::Instance, Option<String>), ClientError> {
        self.get_as_etag(&paths::instance(name)).await
    }

    /// One instance with its state, snapshots and backups.
    pub async fn instance_full(&self, name: &str) -> Result<silo_api::InstanceFull, ClientError> {
        self.get_as(&paths::recursion(&paths::instance(name), 2))
            .await
    }

    /// Creates an instance; waits for it.
    pub async fn create_instance(
        &self,
        req: &silo_api::InstancesPost,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run("POST", &paths::instances(), Some(req), &[]).await
    }

    /// Replaces an instance's writable part (If-Match with `etag`).
    pub async fn update_instance(
        &self,
        name: &str,
        put: &silo_api::InstancePut,
        etag: Option<String>,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run("PUT", &paths::instance(name), Some(put), &if_match(etag))
            .await
    }

    /// Renames an instance.
    pub async fn rename_instance(
        &self,
        name: &str,
        req: &silo_api::InstancePost,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run("POST", &paths::instance(name), Some(req), &[])
            .await
    }

    /// Deletes an instance.
    pub async fn delete_instance(&self, name: &str) -> Result<silo_api::Operation, ClientError> {
        self.run_empty("DELETE", &paths::instance(name)).await
    }

    /// An instance's state.
    pub async fn instance_state(&self, name: &str) -> Result<silo_api::InstanceState, ClientError> {
        self.get_as(&paths::instance_state(name)).await
    }

    /// Starts, stops, restarts, freezes or unfreezes an instance; waits for it.
    pub async fn set_instance_state(
        &self,
        name: &str,
        req: &silo_api::InstanceStatePut,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run("PUT", &paths::instance_state(name), Some(req), &[])
            .await
    }

    /// An instance's snapshots.
    pub async fn snapshots(
        &self,
        name: &str,
    ) -> Result<Vec<silo_api::InstanceSnapshot>, ClientError> {
        self.get_as(&paths::recursion(&paths::snapshots(name), 1))
            .await
    }

    /// One snapshot.
    pub async fn snapshot(
        &self,
        name: &str,
        snap: &str,
    ) -> Result<silo_api::InstanceSnapshot, ClientError> {
        self.get_as(&paths::snapshot(name, snap)).await
    }

    /// Takes a snapshot; waits for it.
    pub async fn create_snapshot(
        &self,
        name: &str,
        req: &silo_api::InstanceSnapshotsPost,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run("POST", &paths::snapshots(name), Some(req), &[])
            .await
    }

    /// Renames a snapshot; waits for it.
    pub async fn rename_snapshot(
        &self,
        name: &str,
        snap: &str,
        req: &silo_api::InstanceSnapshotPost,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run("POST", &paths::snapshot(name, snap), Some(req), &[])
            .await
    }

    /// Deletes a snapshot; waits for it.
    pub async fn delete_snapshot(
        &self,
        name: &str,
        snap: &str,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run_empty("DELETE", &paths::snapshot(name, snap)).await
    }

    /// An instance's backups.
    pub async fn backups(&self, name: &str) -> Result<Vec<silo_api::InstanceBackup>, ClientError> {
        self.get_as(&paths::recursion(&paths::backups(name), 1))
            .await
    }

    /// Makes a backup; waits for it.
    pub async fn create_backup(
        &self,
        name: &str,
        req: &silo_api::InstanceBackupsPost,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run("POST", &paths::backups(name), Some(req), &[])
            .await
    }

    /// Deletes a backup; waits for it.
    pub async fn delete_backup(
        &self,
        name: &str,
        backup: &str,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run_empty("DELETE", &paths::backup(name, backup)).await
    }

    /// Every image.
    pub async fn images(&self) -> Result<Vec<silo_api::Image>, ClientError> {
        self.get_as(&paths::recursion(&paths::images(), 1)).await
    }

    /// One image (by fingerprint or a unique prefix).
    pub async fn image(&self, fingerprint: &str) -> Result<silo_api::Image, ClientError> {
        self.get_as(&paths::image(fingerprint)).await
    }

    /// One image with its ETag.
    pub async fn image_etag(
        &self,
        fingerprint: &str,
    ) -> Result<(silo_api::Image, Option<String>), ClientError> {
        self.get_as_etag(&paths::image(fingerprint)).await
    }

    /// Replaces an image's writable part.
    pub async fn update_image(
        &self,
        fingerprint: &str,
        put: &silo_api::ImagePut,
        etag: Option<String>,
    ) -> Result<(), ClientError> {
        self.run(
            "PUT",
            &paths::image(fingerprint),
            Some(put),
            &if_match(etag),
        )
        .await
        .map(drop)
    }

    /// Deletes an image; waits for it.
    pub async fn delete_image(
        &self,
        fingerprint: &str,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run_empty("DELETE", &paths::image(fingerprint)).await
    }

    /// Publishes an instance or snapshot as an image; waits for it.
    pub async fn publish(
        &self,
        req: &silo_api::ImagesPost,
    ) -> Result<silo_api::Operation, ClientError> {
        self.run("POST", &paths::images(), Some(req), &[]).await
    }

    /// Every image alias.
    pub async fn image_aliases(&self) -> Result<Vec<silo_api::ImageAliasesEntry>, ClientError> {
        self.get_as(&paths::recursion(&paths::image_aliases(), 1))
            .await
    }

    /// One image alias.
    pub async fn image_alias(
        &self,
        name: &str,
    ) -> Result<silo_api::ImageAliasesEntry, ClientError> {
        self.get_as(&paths::image_alias(name)).await
    }

    /// Creates an image alias.
    pub async fn create_image_alias(
        &self,
        req: &silo_api::ImageAliasesPost,
    ) -> Result<(), ClientError> {
        self.run("POST", &paths::image_aliases(), Some(req), &[])
            .await
            .map(drop)
    }

    /// Renames an image alias.
    pub async fn rename_image_alias(
        &self,
        name: &str,
        req: &silo_api::ImageAliasesEntryPost,
    ) -> Result<(), ClientError> {
        self.run("POST", &paths::image_alias(name), Some(req), &[])
            .await
            .map(drop)
    }

    /// Deletes an image alias.
    pub async fn delete_image_alias(&self, name: &str) -> Result<(), ClientError> {
        self.run_empty("DELETE", &paths::image_alias(name))
            .await
            .map(drop)
    }

    /// Every profile.
    pub async fn profiles(&self) -> Result<Vec<silo_api::Profile>, ClientError> {
        self.get_as(&paths::recursion(&paths::profiles(), 1)).await
    }

    /// One profile.
    pub async fn profile(&self, name: &str) -> Result<silo_api::Profile, ClientError> {
        self.get_as(&paths::profile(name)).await
    }

    /// One profile with its ETag.
    pub async fn profile_etag(
        &self,
        name: &str,
    ) -> Result<(silo_api::Profile, Option<String>), ClientError> {
        self.get_as_etag(&paths::profile(name)).await
    }

    /// Creates a profile.
    pub async fn create_profile(&self, req: &silo_api::ProfilesPost) -> Result<(), ClientError> {
        self.run("POST", &paths::profiles(), Some(req), &[])
            .await
            .map(drop)
    }

    /// Replaces a profile's writable part (If-Match with `etag`).
    pub async fn update_profile(
        &self,
        name: &str,
        put: &silo_api::ProfilePut,
        etag: Option<String>,
    ) -> Result<(), ClientError> {
        self.run("PUT", &paths::profile(name), Some(put), &if_match(etag))
            .await
            .map(drop)
    }

    /// Renames a profile.
    pub async fn rename_profile(
        &self,
        name: &str,
        req: &silo_api::ProfilePost,
    ) -> Result<(), ClientError> {
        self.run("POST", &paths::profile(name), Some(req), &[])
            .await
            .map(drop)
    }

    /// Deletes a profile.
    pub async fn delete_profile(&self, name: &str) -> Result<(), ClientError> {
        self.run_empty("DELETE", &paths::profile(name))
            .await
            .map(drop)
    }

    /// Every network (managed or not).
    pub async fn networks(&self) -> Result<Vec<silo_api::Network>, ClientError> {
        self.get_as(&paths::recursion(&paths::networks(), 1)).await
    }

    /// One network.
    pub async fn network(&self, name: &str) -> Result<silo_api::Network, ClientError> {
        self.get_as(&paths::network(name)).await
    }

    /// One network with its ETag.
    pub async fn network_etag(
        &self,
        name: &str,
    ) -> Result<(silo_api::Network, Option<String>), ClientError> {
        self.get_as_etag(&paths::network(name)).await
    }

    /// Creates a network.
    pub async fn create_network(&self, req: &silo_api::NetworksPost) -> Result<(), ClientError> {
        self.run("POST", &paths::networks(), Some(req), &[])
            .await
            .map(drop)
    }

    /// Replaces a network's writable part (If-Match with `etag`).
    pub async fn update_network(
        &self,
        name: &str,
        put: &silo_api::NetworkPut,
        etag: Option<String>,
    ) -> Result<(), ClientError> {
        self.run("PUT", &paths::network(name), Some(put), &if_match(etag))
            .await
            .map(drop)
    }

    /// Renames a network.
    pub async fn rename_network(
        &self,
        name: &str,
        req: &silo_api::NetworkPost,
    ) -> Result<(), ClientError> {
        self.run("POST", &paths::network(name), Some(req), &[])
            .await
            .map(drop)
    }

    /// Sets (or, with "", unsets) config keys of a network, leaving the others.
    pub async fn patch_network_config(
        &self,
        name: &str,
        config: &silo_api::StringMap,
        etag: Option<String>,
    ) -> Result<(), ClientError> {
        /// PATCH with the config alone: a `NetworkPut` would also clear the description.
        #[derive(Serialize)]
        struct ConfigPatch<'a> {
            config: &'a silo_api::StringMap,
        }
        self.run(
            "PATCH",
            &paths::network(name),
            Some(&ConfigPatch { config }),
            &if_match(etag),
        )
        .await
        .map(drop)
    }

    /// Deletes a network.
    pub async fn delete_network(&self, name: &str) -> Result<(), ClientError> {
        self.run_empty("DELETE", &paths::network(name))
            .await
            .map(drop)
    }

    /// A network's state.
    pub async fn network_state(&self, name: &str) -> Result<silo_api::NetworkState, ClientError> {
        self.get_as(&paths::network_state(name)).await
    }

    /// A network's leases.
    pub async fn network_leases(
        &self,
        name: &str,
    ) -> Result<Vec<silo_api::NetworkLease>, ClientError> {
        self.get_as(&paths::network_leases(name)).await
    }

    /// Every storage pool.
    pub async fn storage_pools(&self) -> Result<Vec<silo_api::StoragePool>, ClientError> {
        self.get_as(&paths::recursion(&paths::storage_pools(), 1))
            .await
    }

    /// One storage pool.
    pub async fn storage_pool(&self, name: &str) -> Result<silo_api::StoragePool, ClientError> {
        self.get_as(&paths::storage_pool(name)).await
    }

    /// One storage pool with its ETag.
    pub async fn storage_pool_etag(
        &self,
        name: &str,
    ) -> Result<(silo_api::StoragePool, Option<String>), ClientError> {
        self.get_as_etag(&paths::storage_pool(name)).await
    }

    /// Creates a storage pool.
    pub async fn create_storage_pool(
        &self,
        req: &silo_api::StoragePoolsPost,
    ) -> Result<(), ClientError> {
        self.run("POST", &paths::storage_pools(), Some(req), &[])
            .await
            .map(drop)
    }

    /// Replaces a storage pool's writable part (If-Match with `etag`).
    pub async fn update_storage_pool(
        &self,
        name: &str,
        put: &silo_api::StoragePoolPut,
        etag: Option<String>,
    ) -> Result<(), ClientError> {
        self.run(
            "PUT",
            &paths::storage_pool(name),
            Some(put),
            &if_match(etag),
        )
        .await
        .map(drop)
    }

    /// Deletes a storage pool.
    pub async fn delete_storage_pool(&self, name: &str) -> Result<(), ClientError> {
        self.run_empty("DELETE", &paths::storage_pool(name))
            .await
            .map(drop)
    }

    /// A storage pool's space.
    pub async fn storage_pool_resources(
        &self,
        name: &str,
    ) -> Result<silo_api::ResourcesStoragePool, ClientError> {
        self.get_as(&paths::storage_pool_resources(name)).await
    }

    /// A storage pool's volumes.
    pub async fn storage_volumes(
        &self,
        pool: &str,
    ) -> Result<Vec<silo_api::StorageVolume>, ClientError> {
        self.get_as(&paths::recursion(&paths::storage_volumes(pool), 1))
            .await
    }

    /// One storage volume.
    pub async fn storage_volume(
        &self,
        pool: &str,
        kind: &str,
        name: &str,
    ) -> Result<silo_api::StorageVolume, ClientError> {
        self.get_as(&paths::storage_volume(pool, kind, name)).await
    }

    /// Creates a custom storage volume.
    pub async fn create_storage_volume(
        &self,
        pool: &str,
        req: &silo_api::StorageVolumesPost,
    ) -> Result<(), ClientError> {
        self.run(
            "POST",
            &paths::storage_volumes_of(pool, "custom"),
            Some(req),
            &[],
        )
        .await
        .map(drop)
    }

    /// Deletes a storage volume.
    pub async fn delete_storage_volume(
        &self,
        pool: &str,
        kind: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        self.run_empty("DELETE", &paths::storage_volume(pool, kind, name))
            .await
            .map(drop)
    }
}

/// One answer from the API: status, ETag and the JSON envelope.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The ETag header, if any.
    pub etag: Option<String>,
    /// The JSON body (LXD's envelope).
    pub body: Value,
}

impl Answer {
    /// The envelope.
    fn envelope(&self) -> Result<silo_api::Response, ClientError> {
        lenient::from_value(self.body.clone())
            .map_err(|e| ClientError::Protocol(format!("not LXD's envelope: {e}")))
    }

    /// The envelope's metadata, or the API's error.
    pub fn metadata(&self) -> Result<Value, ClientError> {
        let r = self.envelope()?;
        match r.kind.as_str() {
            "error" => Err(ClientError::Api(if r.error.is_empty() {
                "unknown error".to_string()
            } else {
                r.error
            })),
            "sync" | "async" => Ok(r.metadata),
            _ => Err(ClientError::Protocol(format!(
                "no response type in {}",
                self.body
            ))),
        }
    }

    /// The operation id of an async answer.
    pub fn operation_id(&self) -> Option<String> {
        let r = self.envelope().ok().filter(|r| r.kind == "async")?;
        let url = if r.operation.is_empty() {
            r.metadata_as::<silo_api::Operation>().ok()?.id
        } else {
            r.operation
        };
        let id = url.rsplit('/').next().unwrap_or("").to_string();
        (!id.is_empty()).then_some(id)
    }

    /// Checks the answer; an async one is waited for and its operation returned, a sync
    /// one gives its metadata.
    pub async fn finish(self, client: &Client) -> Result<Value, ClientError> {
        let meta = self.metadata()?;
        match self.operation_id() {
            Some(id) => client.wait_op(&id).await,
            None => Ok(meta),
        }
    }
}
