//! Talking to silod: finding its socket as LXD's client does, HTTP/1.1 over the unix socket,
//! the response envelope, waiting on operations, and the events websocket.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

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

    /// Sends a request and returns the raw status and JSON body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let bytes = match body {
            Some(v) => {
                Bytes::from(serde_json::to_vec(v).map_err(|e| ClientError::Http(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "unix.socket")
            .header("content-type", "application/json")
            .header("user-agent", concat!("silo/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!("{status} with a body that is not JSON: {e}"))
        })?;
        Ok((status, v))
    }

    /// Sends a request and returns the envelope's metadata, or the API's error.
    pub async fn query(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (_, v) = self.raw(method, path, body).await?;
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

    /// GET shorthand.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.query("GET", path, None).await
    }

    /// Waits for an operation to end; fails with its error text if it failed.
    pub async fn wait(&self, op_id: &str) -> Result<Value, ClientError> {
        let op = self
            .get(&format!("/1.0/operations/{op_id}/wait?timeout=-1"))
            .await?;
        match op.get("status_code").and_then(Value::as_u64) {
            Some(200) => Ok(op.get("metadata").cloned().unwrap_or(Value::Null)),
            _ => Err(ClientError::Api(
                op.get("err")
                    .and_then(Value::as_str)
                    .unwrap_or("operation failed")
                    .to_string(),
            )),
        }
    }

    /// Opens `/1.0/events` and calls `on_event` for each event until it returns false.
    pub async fn events(
        &self,
        types: Option<&str>,
        mut on_event: impl FnMut(Value) -> bool,
    ) -> Result<(), ClientError> {
        use futures::StreamExt;
        let stream = self.connect().await?;
        let url = match types {
            Some(t) => format!("ws://unix.socket/1.0/events?type={t}"),
            None => "ws://unix.socket/1.0/events".to_string(),
        };
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| ClientError::Http(format!("events websocket: {e}")))?;
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
