//! The two websockets of a migration, whichever side opened them.
//!
//! A websocket a peer opened on us (axum's) and one we dialed (tungstenite's) are both turned
//! into a [`Channel`]: a pair of queues of [`Frame`]s pumped by two tasks, so the protocol code
//! never sees which library carries it. LXD's framing is kept as it is: a protobuf message or
//! a piece of a data stream is one binary message, and an empty text message ends a stream.

use std::os::fd::OwnedFd;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What travels on a migration websocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A binary message: a protobuf message on `control`, data on `fs`.
    Data(Vec<u8>),
    /// An empty text message: the end of one stream on `fs`.
    End,
}

/// One websocket as two queues. `rx` yields `None` once the peer closed it (or it broke);
/// dropping `tx` closes it.
#[derive(Debug)]
pub struct Channel {
    /// What we send.
    pub tx: mpsc::Sender<Frame>,
    /// What the peer sent.
    pub rx: mpsc::Receiver<Frame>,
    /// "control" or "fs", for messages.
    pub name: &'static str,
}

/// How long a peer may leave a stream without a message before the migration fails.
pub const STALL: Duration = Duration::from_secs(120);

/// The largest JSON frame (the index header) accepted.
const MAX_JSON: usize = 8 << 20;

/// The largest protobuf message accepted (a header with a thousand snapshots' configs).
const MAX_PROTO: usize = 16 << 20;

/// What a websocket message is to a migration.
enum Pumped {
    /// A frame.
    Frame(Frame),
    /// Nothing (ping, pong).
    Skip,
    /// The peer closed.
    Closed,
}

/// Pumps a websocket's two halves to and from the queues of a [`Channel`], whichever
/// library carries it (`to` and `from` translate its messages).
fn pumps<M, Si, St, E>(
    mut sink: Si,
    mut stream: St,
    name: &'static str,
    to: fn(Frame) -> M,
    close: fn() -> M,
    from: fn(M) -> Pumped,
) -> Channel
where
    M: Send + 'static,
    Si: futures::Sink<M> + Unpin + Send + 'static,
    St: futures::Stream<Item = Result<M, E>> + Unpin + Send + 'static,
    E: Send + 'static,
{
    let (tx, mut out_rx) = mpsc::channel::<Frame>(16);
    let (in_tx, rx) = mpsc::channel::<Frame>(16);
    tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if sink.send(to(f)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(close()).await;
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            let f = match from(m) {
                Pumped::Frame(f) => f,
                Pumped::Skip => continue,
                Pumped::Closed => break,
            };
            if in_tx.send(f).await.is_err() {
                return;
            }
        }
    });
    Channel { tx, rx, name }
}

impl Channel {
    /// A channel over a websocket a peer opened on us.
    pub fn from_axum(ws: axum::extract::ws::WebSocket, name: &'static str) -> Channel {
        use axum::extract::ws::Message;
        let (sink, stream) = ws.split();
        pumps(
            sink,
            stream,
            name,
            |f| match f {
                Frame::Data(d) => Message::Binary(d.into()),
                Frame::End => Message::Text(String::new().into()),
            },
            || Message::Close(None),
            |m| match m {
                Message::Binary(b) => Pumped::Frame(Frame::Data(b.to_vec())),
                Message::Text(t) if t.is_empty() => Pumped::Frame(Frame::End),
                Message::Text(t) => Pumped::Frame(Frame::Data(t.as_bytes().to_vec())),
                Message::Close(_) => Pumped::Closed,
                Message::Ping(_) | Message::Pong(_) => Pumped::Skip,
            },
        )
    }

    /// A channel over a websocket we dialed.
    pub fn from_tungstenite<S>(
        ws: tokio_tungstenite::WebSocketStream<S>,
        name: &'static str,
    ) -> Channel
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use tokio_tungstenite::tungstenite::Message;
        let (sink, stream) = ws.split();
        pumps(
            sink,
            stream,
            name,
            |f| match f {
                Frame::Data(d) => Message::Binary(d.into()),
                Frame::End => Message::Text(String::new().into()),
            },
            || Message::Close(None),
            |m| match m {
                Message::Binary(b) => Pumped::Frame(Frame::Data(b.to_vec())),
                Message::Text(t) if t.is_empty() => Pumped::Frame(Frame::End),
                Message::Text(t) => Pumped::Frame(Frame::Data(t.as_bytes().to_vec())),
                Message::Close(_) => Pumped::Closed,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Pumped::Skip,
            },
        )
    }

    /// The next frame, or why there is none.
    pub async fn next(&mut self) -> Result<Frame, String> {
        match tokio::time::timeout(STALL, self.rx.recv()).await {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(format!("the peer closed the {} websocket", self.name)),
            Err(_) => Err(format!(
                "the peer sent nothing on the {} websocket for {} s",
                self.name,
                STALL.as_secs()
            )),
        }
    }

    /// Sends one frame.
    pub async fn send(&self, f: Frame) -> Result<(), String> {
        self.tx
            .send(f)
            .await
            .map_err(|_| format!("the {} websocket is closed", self.name))
    }

    /// Sends one protobuf message as one binary message.
    pub async fn send_proto<M: prost::Message>(&self, m: &M) -> Result<(), String> {
        self.send(Frame::Data(m.encode_to_vec())).await
    }

    /// Receives one protobuf message: the next message must be binary.
    pub async fn recv_proto<M: prost::Message + Default>(&mut self) -> Result<M, String> {
        match self.next().await? {
            Frame::Data(d) if d.len() <= MAX_PROTO => M::decode(d.as_slice())
                .map_err(|e| format!("a malformed message on the {} websocket: {e}", self.name)),
            Frame::Data(_) => Err(format!(
                "an oversized message on the {} websocket",
                self.name
            )),
            Frame::End => Err(format!(
                "only binary messages are allowed on the {} websocket",
                self.name
            )),
        }
    }

    /// Sends a JSON value as one stream (data, then the end marker).
    pub async fn send_json<T: serde::Serialize>(&self, v: &T) -> Result<(), String> {
        let bytes = serde_json::to_vec(v).map_err(|e| e.to_string())?;
        self.send(Frame::Data(bytes)).await?;
        self.send(Frame::End).await
    }

    /// Receives one stream and decodes it as JSON, as LXD's decoder does (lenient).
    pub async fn recv_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, String> {
        let mut buf = Vec::new();
        while let Frame::Data(d) = self.next().await? {
            if buf.len() + d.len() > MAX_JSON {
                return Err(format!(
                    "an index header larger than {MAX_JSON} bytes on the {} websocket",
                    self.name
                ));
            }
            buf.extend_from_slice(&d);
        }
        silo_api::lenient::from_slice(&buf).map_err(|e| {
            format!(
                "a malformed JSON header on the {} websocket: {e}",
                self.name
            )
        })
    }

    /// Moves one rsync stream each way between this channel and `sock` (silo-store's end
    /// of an rsync transfer) until both have ended: EOF on `sock` sends the end marker; the
    /// peer's end marker shuts down `sock`'s write side. `progress` gets the bytes moved.
    pub async fn relay(
        &mut self,
        sock: OwnedFd,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, String> {
        let std_sock = std::os::unix::net::UnixStream::from(sock);
        std_sock
            .set_nonblocking(true)
            .map_err(|e| format!("rsync socket: {e}"))?;
        let sock =
            tokio::net::UnixStream::from_std(std_sock).map_err(|e| format!("rsync socket: {e}"))?;
        let (mut r, mut w) = sock.into_split();
        let tx = self.tx.clone();
        let name = self.name;
        let moved = std::sync::atomic::AtomicU64::new(0);
        let outgoing = async {
            let mut buf = vec![0u8; 128 << 10];
            loop {
                let n = r
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("reading from rsync: {e}"))?;
                if n == 0 {
                    break;
                }
                let total = moved.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                progress(total + n as u64);
                // A peer that stops reading must not hold the transfer (and a frozen
                // source) forever.
                tokio::time::timeout(STALL, tx.send(Frame::Data(buf[..n].to_vec())))
                    .await
                    .map_err(|_| {
                        format!(
                            "the peer read nothing on the {name} websocket for {} s",
                            STALL.as_secs()
                        )
                    })?
                    .map_err(|_| format!("the {name} websocket is closed"))?;
            }
            tx.send(Frame::End)
                .await
                .map_err(|_| format!("the {name} websocket is closed"))
        };
        let incoming = async {
            loop {
                match self.next().await? {
                    Frame::Data(d) => {
                        let total =
                            moved.fetch_add(d.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        progress(total + d.len() as u64);
                        // rsync may have exited on an error of its own: the peer's data then
                        // has nowhere to go, which its outcome reports, not this write.
                        if w.write_all(&d).await.is_err() {
                            drain_to_end(self).await?;
                            return Ok::<(), String>(());
                        }
                    }
                    Frame::End => {
                        let _ = w.shutdown().await;
                        return Ok(());
                    }
                }
            }
        };
        // Either side failing ends both: a peer gone must not leave us reading rsync forever.
        tokio::try_join!(outgoing, incoming)?;
        Ok(moved.into_inner())
    }
}

impl Channel {
    /// Sends one btrfs stream: everything read from `sock` (silo-store's send), then the end
    /// marker. A btrfs stream goes one way only.
    pub async fn relay_out(
        &mut self,
        sock: OwnedFd,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, String> {
        let std_sock = std::os::unix::net::UnixStream::from(sock);
        std_sock
            .set_nonblocking(true)
            .map_err(|e| format!("btrfs socket: {e}"))?;
        let mut sock =
            tokio::net::UnixStream::from_std(std_sock).map_err(|e| format!("btrfs socket: {e}"))?;
        let name = self.name;
        let mut moved = 0u64;
        let mut buf = vec![0u8; 128 << 10];
        loop {
            let n = sock
                .read(&mut buf)
                .await
                .map_err(|e| format!("reading the btrfs stream: {e}"))?;
            if n == 0 {
                break;
            }
            moved += n as u64;
            progress(moved);
            self.tx
                .send(Frame::Data(buf[..n].to_vec()))
                .await
                .map_err(|_| format!("the {name} websocket is closed"))?;
        }
        self.tx
            .send(Frame::End)
            .await
            .map_err(|_| format!("the {name} websocket is closed"))?;
        Ok(moved)
    }

    /// Receives one btrfs stream into `sock` (silo-store's receive) up to the peer's end
    /// marker, then shuts down `sock`'s write side. When the receiver stopped reading (it
    /// failed, which its outcome reports) the rest of the stream is read and dropped.
    pub async fn relay_in(
        &mut self,
        sock: OwnedFd,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, String> {
        let std_sock = std::os::unix::net::UnixStream::from(sock);
        std_sock
            .set_nonblocking(true)
            .map_err(|e| format!("btrfs socket: {e}"))?;
        let mut sock =
            tokio::net::UnixStream::from_std(std_sock).map_err(|e| format!("btrfs socket: {e}"))?;
        let mut moved = 0u64;
        loop {
            match self.next().await? {
                Frame::Data(d) => {
                    moved += d.len() as u64;
                    progress(moved);
                    if sock.write_all(&d).await.is_err() {
                        drain_to_end(self).await?;
                        return Ok(moved);
                    }
                }
                Frame::End => {
                    let _ = sock.shutdown().await;
                    return Ok(moved);
                }
            }
        }
    }
}

/// Reads and drops the rest of the current stream.
async fn drain_to_end(ch: &mut Channel) -> Result<(), String> {
    loop {
        if ch.next().await? == Frame::End {
            return Ok(());
        }
    }
}

/// Dials `<operation>/websocket?secret=<secret>` on the peer, trusting only `certificate`
/// (PEM; the system store when empty). `operation` is the peer's operation URL,
/// `https://host:port/1.0/operations/<id>`.
pub async fn dial(
    operation: &str,
    secret: &str,
    certificate: &str,
    name: &'static str,
) -> Result<Channel, String> {
    let (base, path) = split_operation_url(operation)?;
    if secret.is_empty() || secret.len() > 256 || !secret.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(format!("the {name} secret is not a plain token"));
    }
    let server =
        crate::service::image_server::Server::new(&base, certificate).map_err(|e| e.to_string())?;
    let https = format!("{base}{path}/websocket?secret={secret}");
    let io = server.open(&https).await.map_err(|e| e.to_string())?;
    let wss = format!("wss{}", https.trim_start_matches("https"));
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async_with_config(
            wss.as_str(),
            io,
            Some(
                tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .max_message_size(Some(16 << 20))
                    .max_frame_size(Some(16 << 20)),
            ),
        ),
    )
    .await
    .map_err(|_| format!("the {name} websocket of {operation} did not answer in time"))?
    .map_err(|e| format!("connecting the {name} websocket of {operation}: {e}"))?;
    Ok(Channel::from_tungstenite(ws, name))
}

/// Splits a peer's operation URL into `https://host:port` and `/1.0/operations/<id>`,
/// refusing anything else (a query, another path, another scheme).
pub fn split_operation_url(url: &str) -> Result<(String, String), String> {
    let bad = |why: &str| format!("invalid migration operation URL {url:?}: {why}");
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("expected https://"))?;
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("no operation path"))?;
    if host.is_empty() || host.contains(['@', '?', '#']) {
        return Err(bad("bad host"));
    }
    let id = path
        .strip_prefix("1.0/operations/")
        .ok_or_else(|| bad("expected /1.0/operations/<id>"))?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(bad("bad operation id"));
    }
    Ok((format!("https://{host}"), format!("/1.0/operations/{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_urls_name_one_operation() {
        let (b, p) = split_operation_url("https://127.0.0.1:8443/1.0/operations/3f1e-aa").unwrap();
        assert_eq!(b, "https://127.0.0.1:8443");
        assert_eq!(p, "/1.0/operations/3f1e-aa");
        let (b, _) = split_operation_url("https://[::1]:8443/1.0/operations/x").unwrap();
        assert_eq!(b, "https://[::1]:8443");
        for bad in [
            "http://h/1.0/operations/x",
            "https://h/1.0/instances/x",
            "https://h/1.0/operations/x?y=1",
            "https://h/1.0/operations/../x",
            "https://u@h/1.0/operations/x",
            "https:///1.0/operations/x",
        ] {
            assert!(split_operation_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_relay_moves_both_streams_and_ends_each_with_its_marker() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (tx, mut peer_rx) = mpsc::channel(16);
        let (peer_tx, rx) = mpsc::channel(16);
        let mut ch = Channel { tx, rx, name: "fs" };
        // The "rsync" end: writes a line, then reads what the peer sent to its end.
        let rsync = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = theirs;
            s.write_all(b"from rsync").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        peer_tx
            .send(Frame::Data(b"from the peer".to_vec()))
            .await
            .unwrap();
        peer_tx.send(Frame::End).await.unwrap();
        let n = ch.relay(OwnedFd::from(ours), &|_| {}).await.unwrap();
        assert_eq!(n, 23);
        assert_eq!(rsync.join().unwrap(), b"from the peer");
        assert_eq!(
            peer_rx.recv().await,
            Some(Frame::Data(b"from rsync".to_vec()))
        );
        assert_eq!(peer_rx.recv().await, Some(Frame::End));
    }
}
