//! `exec` and `console`: LXD's websocket protocol on silod's side.
//!
//! An exec is an operation of class "websocket" whose metadata carries one secret per
//! stream (`0`, `1`, `2`, `control`; interactive: `0` and `control`). The client connects each
//! with `GET /1.0/operations/<id>/websocket?secret=…`; data travels in binary messages and a
//! zero-length text message marks end of stream. silo-priv runs the command and hands silod
//! its ends of the pipes (or the pty master); silod only moves bytes.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::helpers::{HelperKind, Helpers};
use crate::service::DomainError;

/// How long the client has to connect its websockets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Websockets waiting for their operation, by secret.
#[derive(Debug, Default, Clone)]
pub struct Sockets(Arc<Mutex<HashMap<String, Waiting>>>);

/// An operation id and the sender the connected socket goes to.
type Waiting = (String, oneshot::Sender<WebSocket>);

impl Sockets {
    /// Registers a secret for operation `op`; the receiver gets the connected socket.
    fn expect(&self, op: &str) -> (String, oneshot::Receiver<WebSocket>) {
        let secret = hex::encode(uuid::Uuid::new_v4().as_bytes())
            + &hex::encode(uuid::Uuid::new_v4().as_bytes());
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.0.lock() {
            m.insert(secret.clone(), (op.to_string(), tx));
        }
        (secret, rx)
    }

    /// Takes the waiting end for `secret` of operation `op`.
    pub fn take(&self, op: &str, secret: &str) -> Option<oneshot::Sender<WebSocket>> {
        let mut m = self.0.lock().ok()?;
        match m.get(secret) {
            Some((o, _)) if o == op => m.remove(secret).map(|(_, tx)| tx),
            _ => None,
        }
    }

    fn forget(&self, secrets: &[String]) {
        if let Ok(mut m) = self.0.lock() {
            for s in secrets {
                m.remove(s);
            }
        }
    }
}

/// `POST /1.0/instances/<name>/exec` as LXD's API has it.
pub use silo_api::InstanceExecPost as ExecRequest;

/// The environment LXD gives an exec'd command, with the request's on top.
pub fn environment(req: &ExecRequest) -> Vec<(String, String)> {
    let mut env: std::collections::BTreeMap<String, String> = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("LANG", "C.UTF-8"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if req.user == 0 {
        env.insert("HOME".into(), "/root".into());
        env.insert("USER".into(), "root".into());
    }
    for (k, v) in &req.environment {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

/// Secrets of an exec or console operation and the receivers of its sockets.
#[derive(Debug)]
pub struct Streams {
    /// Stream name → secret, for the operation metadata.
    pub secrets: HashMap<String, String>,
    waiting: HashMap<String, oneshot::Receiver<WebSocket>>,
    sockets: Sockets,
}

impl Streams {
    /// Registers the named streams for operation `op`.
    pub fn new(sockets: &Sockets, op: &str, names: &[&str]) -> Streams {
        let mut secrets = HashMap::new();
        let mut waiting = HashMap::new();
        for n in names {
            let (s, rx) = sockets.expect(op);
            secrets.insert(n.to_string(), s);
            waiting.insert(n.to_string(), rx);
        }
        Streams {
            secrets,
            waiting,
            sockets: sockets.clone(),
        }
    }

    /// Waits up to `within` for every stream (a migration's `control` and `fs`).
    pub async fn connect_all(
        mut self,
        within: Duration,
    ) -> Result<HashMap<String, WebSocket>, String> {
        let mut got = HashMap::new();
        let deadline = tokio::time::Instant::now() + within;
        let names: Vec<String> = self.waiting.keys().cloned().collect();
        for n in names {
            let Some(rx) = self.waiting.remove(&n) else {
                continue;
            };
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(ws)) => {
                    got.insert(n, ws);
                }
                _ => return Err("Timed out waiting for migration connections".into()),
            }
        }
        Ok(got)
    }

    /// Waits for the `required` streams; returns them and the receiver of `control`.
    async fn connect(
        mut self,
        required: &[&str],
    ) -> Result<(HashMap<String, WebSocket>, Option<ControlStream>), String> {
        let mut got = HashMap::new();
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        for r in required {
            let Some(rx) = self.waiting.remove(*r) else {
                continue;
            };
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(ws)) => {
                    got.insert(r.to_string(), ws);
                }
                _ => {
                    let all: Vec<String> = self.secrets.values().cloned().collect();
                    self.sockets.forget(&all);
                    return Err("Timed out waiting for websockets to connect".into());
                }
            }
        }
        // Control may connect later than the data streams: its secret stays registered until
        // the operation ends (the guard), not just until the data streams are in.
        let control = self.waiting.remove("control").map(|rx| {
            let secret = self.secrets.remove("control").unwrap_or_default();
            ControlStream {
                rx,
                _forget: Forget(self.sockets.clone(), secret),
            }
        });
        Ok((got, control))
    }
}

/// The control stream's receiver, with its secret forgotten when this goes.
#[derive(Debug)]
struct ControlStream {
    rx: oneshot::Receiver<WebSocket>,
    _forget: Forget,
}

#[derive(Debug)]
struct Forget(Sockets, String);

impl Drop for Forget {
    fn drop(&mut self) {
        self.0.forget(std::slice::from_ref(&self.1));
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let all: Vec<String> = self.secrets.values().cloned().collect();
        self.sockets.forget(&all);
    }
}

/// Our ends of a non-interactive exec's stdio: stdin's write end, stdout's and stderr's read
/// ends.
fn stdio(fds: Vec<OwnedFd>) -> Result<(OwnedFd, OwnedFd, OwnedFd), String> {
    let mut it = fds.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err("silo-priv sent too few fds".into()),
    }
}

fn nonblocking(fd: &OwnedFd) {
    let _ = nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
}

/// An fd (pipe, pty master, socket) used with the reactor.
struct Async(AsyncFd<OwnedFd>);

impl Async {
    fn new(fd: OwnedFd) -> std::io::Result<Async> {
        nonblocking(&fd);
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open for its whole life.
        let a = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Async(a))
    }

    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut g = self.0.readable().await?;
            match g.try_io(|f| nix::unistd::read(f.get_ref(), buf).map_err(std::io::Error::from)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_) => continue,
            }
        }
    }

    async fn write_all(&self, mut b: &[u8]) -> std::io::Result<()> {
        while !b.is_empty() {
            let mut g = self.0.writable().await?;
            match g.try_io(|f| nix::unistd::write(f.get_ref(), b).map_err(std::io::Error::from)) {
                Ok(Ok(n)) => b = &b[n..],
                Ok(Err(e)) => return Err(e),
                Err(_) => continue,
            }
        }
        Ok(())
    }
}

/// Sends `fd`'s output as binary messages, then the end-of-stream barrier.
async fn pump_out(src: Arc<Async>, mut ws: futures::stream::SplitSink<WebSocket, Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if ws
                    .send(Message::Binary(buf[..n].to_vec().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = ws.send(Message::Text(String::new().into())).await;
    let _ = ws.close().await;
}

/// Writes the client's binary messages into `dst` until close (or the end-of-stream barrier
/// when `eof_closes`: stdin's end closes the pipe; a pty has no such end).
async fn pump_in(
    dst: Arc<Async>,
    mut ws: futures::stream::SplitStream<WebSocket>,
    eof_closes: bool,
) {
    while let Some(Ok(m)) = ws.next().await {
        let go_on = match m {
            Message::Binary(b) => dst.write_all(&b).await.is_ok(),
            Message::Text(t) => !(t.is_empty() && eof_closes),
            Message::Close(_) => false,
            _ => true,
        };
        if !go_on {
            break;
        }
    }
}

#[derive(Debug, Deserialize)]
struct Control {
    command: String,
    // lxc's signal message carries `"args": null` (Go's nil map): a map that must be there
    // would drop every signal.
    #[serde(default, deserialize_with = "crate::model::null_default")]
    args: HashMap<String, String>,
    #[serde(default)]
    signal: i32,
}

fn resize(master: &Async, w: u16, h: u16) {
    let ws = libc::winsize {
        ws_row: h,
        ws_col: w,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on the pty master with a pointer to a winsize.
    unsafe { libc::ioctl(master.0.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Handles control messages: resize and signals. When the client closes the control socket
/// while the command runs, the command is killed, as LXD does (a client that went away must
/// not leave a shell running).
async fn control_loop(
    mut ws: WebSocket,
    helpers: Helpers,
    exec_id: u64,
    master: Option<Arc<Async>>,
) -> bool {
    while let Some(Ok(m)) = ws.next().await {
        let Message::Text(t) = m else {
            if matches!(m, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(c) = serde_json::from_str::<Control>(&t) else {
            continue;
        };
        match c.command.as_str() {
            "window-resize" => {
                let num = |k: &str| {
                    c.args
                        .get(k)
                        .and_then(|v| v.parse::<u16>().ok())
                        .unwrap_or(0)
                };
                if let Some(m) = &master {
                    resize(m, num("width"), num("height"));
                }
            }
            "signal" => {
                let _ = helpers.privileged.exec_signal(exec_id, c.signal).await;
            }
            _ => {}
        }
    }
    // Gone before the command ended: end it. (After the end the exec is unknown: no-op.)
    let _ = helpers.privileged.exec_signal(exec_id, libc::SIGKILL).await;
    true
}

/// Where recorded exec output goes.
pub fn output_dir(state_dir: &std::path::Path, instance: &str) -> std::path::PathBuf {
    state_dir.join("logs").join(instance)
}

type Pumps = Vec<tokio::task::JoinHandle<()>>;

/// Joins the client's websockets to the command: the pty (interactive) or its stdin, stdout
/// and stderr; and the control stream, if any. Returns the output pumps and the control task.
fn attach_streams(
    helpers: &Helpers,
    exec_id: u64,
    interactive: bool,
    fds: &mut Vec<OwnedFd>,
    mut socks: HashMap<String, WebSocket>,
    control: Option<ControlStream>,
) -> Result<(Pumps, Option<tokio::task::JoinHandle<()>>), DomainError> {
    let mut pumps = Vec::new();
    let master = if interactive {
        let m = Arc::new(Async::new(fds.remove(0)).map_err(|e| e.to_string())?);
        let ws = socks
            .remove("0")
            .ok_or_else(|| DomainError::Internal("stream 0 missing".into()))?;
        let (tx, rx) = ws.split();
        pumps.push(tokio::spawn(pump_out(m.clone(), tx)));
        let mm = m.clone();
        tokio::spawn(async move {
            pump_in(mm, rx, false).await;
        });
        Some(m)
    } else {
        let (w0, r1, r2) = stdio(std::mem::take(fds))?;
        let stdin = Arc::new(Async::new(w0).map_err(|e| e.to_string())?);
        let (_, rx0) = socks
            .remove("0")
            .ok_or_else(|| DomainError::Internal("stream 0 missing".into()))?
            .split();
        tokio::spawn(async move {
            pump_in(stdin, rx0, true).await;
        });
        for (name, fd) in [("1", r1), ("2", r2)] {
            let a = Arc::new(Async::new(fd).map_err(|e| e.to_string())?);
            let (tx, _rx) = socks
                .remove(name)
                .ok_or_else(|| DomainError::Internal("stream missing".into()))?
                .split();
            pumps.push(tokio::spawn(pump_out(a, tx)));
        }
        None
    };
    let control_task = control.map(|c| {
        let h = helpers.clone();
        tokio::spawn(async move {
            let ControlStream { rx, _forget } = c;
            if let Ok(ws) = rx.await {
                control_loop(ws, h, exec_id, master).await;
            }
        })
    });
    Ok((pumps, control_task))
}

/// Without websockets: closes stdin and reads stdout and stderr to their end, into files
/// under `record_to` (the directory, the instance and the operation id) if given. Returns
/// the pumps and the recorded files' URLs by stream.
async fn drain_output(
    fds: Vec<OwnedFd>,
    record_to: Option<(std::path::PathBuf, &str, &str)>,
) -> Result<(Pumps, serde_json::Map<String, Value>), DomainError> {
    let (w0, r1, r2) = stdio(fds)?;
    drop(w0);
    let mut pumps = Vec::new();
    let mut outputs = serde_json::Map::new();
    for (name, fd) in [("1", r1), ("2", r2)] {
        let a = Async::new(fd).map_err(|e| e.to_string())?;
        let file = match &record_to {
            Some((dir, instance, op_id)) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                let fname = format!(
                    "exec_{op_id}.{}",
                    if name == "1" { "stdout" } else { "stderr" }
                );
                outputs.insert(
                    name.into(),
                    json!(format!(
                        "/1.0/instances/{instance}/logs/exec-output/{fname}"
                    )),
                );
                Some(
                    tokio::fs::File::create(dir.join(&fname))
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
            None => None,
        };
        pumps.push(tokio::spawn(async move {
            let mut file = file;
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = a.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Some(f) = file.as_mut() {
                    let _ = f.write_all(&buf[..n]).await;
                }
            }
        }));
    }
    Ok((pumps, outputs))
}

/// Waits for the command's exit code, in short polls (one helper call never blocks long).
async fn wait_exit(helpers: &Helpers, exec_id: u64) -> Result<i32, DomainError> {
    loop {
        match helpers
            .privileged
            .exec_wait(exec_id, 200_000)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(c) => return Ok(c),
            None => continue,
        }
    }
}

/// Runs an exec operation to its end; returns the final metadata.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    c: crate::service::Services,
    instance: String,
    op_id: String,
    req: ExecRequest,
    streams: Option<Streams>,
    mut metadata: Value,
) -> Result<Value, DomainError> {
    let (helpers, state_dir) = (c.helpers, c.state_dir);
    let interactive = req.interactive;
    let connected = match streams {
        Some(s) => {
            let required: &[&str] = if interactive {
                &["0"]
            } else {
                &["0", "1", "2"]
            };
            Some(s.connect(required).await?)
        }
        None => None,
    };
    let spec = silo_proto::privileged::ExecSpec {
        instance: silo_proto::InstanceName::new(instance.clone()).map_err(|e| e.to_string())?,
        command: req.command.clone(),
        env: environment(&req),
        cwd: req.cwd.clone(),
        uid: req.user,
        gid: req.group,
        interactive: interactive && connected.is_some(),
        // LXD's int64; -1 (or anything out of range) means the client gave no size.
        width: u16::try_from(req.width).unwrap_or(0),
        height: u16::try_from(req.height).unwrap_or(0),
    };
    let started = helpers.privileged.exec(spec).await?;
    let mut fds = helpers.take_fds(HelperKind::Priv, started.fds).await?;
    let (pumps, control_task) = match connected {
        Some((socks, control)) => {
            attach_streams(&helpers, started.id, interactive, &mut fds, socks, control)?
        }
        None => {
            // No websockets: stdin is empty; output is recorded or dropped.
            let record_to = req.record_output.then(|| {
                (
                    output_dir(&state_dir, &instance),
                    instance.as_str(),
                    op_id.as_str(),
                )
            });
            let (pumps, outputs) = drain_output(std::mem::take(&mut fds), record_to).await?;
            if req.record_output {
                metadata["output"] = Value::Object(outputs);
            }
            (pumps, None)
        }
    };
    let code = wait_exit(&helpers, started.id).await?;
    // Output still in the pipes is delivered; a background process that keeps them open does
    // not hold the operation up for long.
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
    }
    if let Some(t) = control_task {
        t.abort();
    }
    metadata["return"] = json!(code);
    Ok(metadata)
}

/// Runs a console operation: the client's stream `0` joined to the instance's console.
pub async fn console(
    c: crate::service::Services,
    instance: String,
    streams: Streams,
) -> Result<Value, DomainError> {
    let helpers = c.helpers;
    let name_c = silo_proto::InstanceName::new(instance.clone()).map_err(|e| e.to_string())?;
    let helpers_c = helpers.clone();
    let (mut socks, control) = streams.connect(&["0"]).await?;
    let ticket = helpers
        .privileged
        .console(silo_proto::InstanceName::new(instance).map_err(|e| e.to_string())?)
        .await?;
    let mut fds = helpers.take_fds(HelperKind::Priv, ticket).await?;
    let sock = std::os::unix::net::UnixStream::from(fds.remove(0));
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let sock = tokio::net::UnixStream::from_std(sock).map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = sock.into_split();
    let ws = socks
        .remove("0")
        .ok_or_else(|| DomainError::Internal("stream 0 missing".into()))?;
    let (mut tx, mut rx) = ws.split();
    let out = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0
                || tx
                    .send(Message::Binary(buf[..n].to_vec().into()))
                    .await
                    .is_err()
            {
                break;
            }
        }
        let _ = tx.send(Message::Text(String::new().into())).await;
        let _ = tx.close().await;
    });
    // The client detaches by closing either socket (`lxc console` closes control); it resizes
    // the console with window-resize messages.
    let control_closed = async move {
        match control {
            Some(c) => {
                let ControlStream { rx, _forget } = c;
                if let Ok(mut ws) = rx.await {
                    while let Some(Ok(m)) = ws.next().await {
                        match m {
                            Message::Close(_) => break,
                            Message::Text(t) => {
                                if let Ok(c) = serde_json::from_str::<Control>(&t) {
                                    if c.command == "window-resize" {
                                        let num = |k: &str| {
                                            c.args
                                                .get(k)
                                                .and_then(|v| v.parse::<u16>().ok())
                                                .unwrap_or(0)
                                        };
                                        let r = helpers_c
                                            .privileged
                                            .console_resize(
                                                name_c.clone(),
                                                num("width"),
                                                num("height"),
                                            )
                                            .await;
                                        if let Err(e) = r {
                                            tracing::info!(error = %e, "console resize refused");
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    let input = async move {
        while let Some(Ok(m)) = rx.next().await {
            let go_on = match m {
                Message::Binary(b) => wr.write_all(&b).await.is_ok(),
                Message::Close(_) => false,
                _ => true,
            };
            if !go_on {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::select! {
        () = control_closed => {}
        () = input => {}
    }
    out.abort();
    Ok(Value::Null)
}

/// Empties the instance's console log (`DELETE /1.0/instances/<name>/console`).
pub async fn console_log_clear(
    c: &crate::service::Services,
    instance: &str,
) -> Result<(), DomainError> {
    crate::service::instances::get(&c.db, instance)?;
    let n = silo_proto::InstanceName::new(instance.to_string())
        .map_err(|e| DomainError::BadRequest(e.to_string()))?;
    Ok(c.helpers.privileged.console_log_clear(n).await?)
}

/// The console log of `instance` (the last MiB), empty when it has none.
pub async fn console_log(
    c: &crate::service::Services,
    instance: &str,
) -> Result<Vec<u8>, DomainError> {
    crate::service::instances::get(&c.db, instance)?;
    let n = silo_proto::InstanceName::new(instance.to_string())
        .map_err(|e| DomainError::BadRequest(e.to_string()))?;
    Ok(c.helpers
        .privileged
        .console_log(n, 1 << 20)
        .await
        .unwrap_or_default())
}
