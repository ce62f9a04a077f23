//! Talking to silod: finding its socket as LXD's client does, HTTP/1.1 over the unix socket,
//! the response envelope, waiting on operations, and the events websocket.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// A websocket to silod over its unix socket.
pub type WebSocket = tokio_tungstenite::WebSocketStream<UnixStream>;

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
    path: PathBuf,
}

impl Client {
    /// A client for the socket at `path`.
    pub fn new(path: PathBuf) -> Client {
        Client { path }
    }

    /// The socket path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    async fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.path)
            .await
            .map_err(|source| ClientError::Connect {
                path: self.path.display().to_string(),
                source,
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
        method: &str,
        path: &str,
        headers: &[(&str, String)],
    ) -> hyper::http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "unix.socket")
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
        let req = Self::builder(method, path, headers)
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
        let req = Self::builder(method, path, headers)
            .body(body)
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Self::json_answer(self.send(req).await?).await
    }

    /// GETs `path` and returns the response with its body unread (downloads). An answer
    /// other than 200 is read as the API's error envelope.
    pub async fn download(&self, path: &str) -> Result<hyper::Response<Incoming>, ClientError> {
        let req = Self::builder("GET", path, &[])
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
        let op = self.wait_op(op_id).await?;
        Ok(op.get("metadata").cloned().unwrap_or(Value::Null))
    }

    /// Waits for an operation to end (`/1.0/operations/<id>/wait`); returns the whole
    /// operation, or its error.
    pub async fn wait_op(&self, op_id: &str) -> Result<Value, ClientError> {
        let op = self
            .get(&format!("/1.0/operations/{op_id}/wait?timeout=-1"))
            .await?;
        match op.get("status_code").and_then(Value::as_u64) {
            Some(200) => Ok(op),
            _ => Err(ClientError::Api(
                op.get("err")
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty())
                    .unwrap_or("operation failed")
                    .to_string(),
            )),
        }
    }

    /// Opens a websocket on `path` (which starts with `/1.0/...`) over the unix socket.
    pub async fn websocket(&self, path: &str) -> Result<WebSocket, ClientError> {
        let stream = self.connect().await?;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://unix.socket{path}"), stream)
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
            Some(t) => format!("/1.0/events?type={t}"),
            None => "/1.0/events".to_string(),
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
    /// The envelope's metadata, or the API's error.
    pub fn metadata(&self) -> Result<Value, ClientError> {
        let v = &self.body;
        match v.get("type").and_then(Value::as_str) {
            Some("error") => Err(ClientError::Api(
                v.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string(),
            )),
            Some("sync") | Some("async") => Ok(v.get("metadata").cloned().unwrap_or(Value::Null)),
            _ => Err(ClientError::Protocol(format!("no response type in {v}"))),
        }
    }

    /// The operation id of an async answer.
    pub fn operation_id(&self) -> Option<String> {
        if self.body.get("type").and_then(Value::as_str) != Some("async") {
            return None;
        }
        let url = self
            .body
            .get("operation")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                self.body
                    .pointer("/metadata/id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })?;
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
