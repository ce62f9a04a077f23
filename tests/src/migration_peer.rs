//! A scripted migration peer for fault tests of issue 16: an HTTPS server (its own
//! self-signed certificate with a DNS name, as LXD pins a peer: `RootCAs` = the certificate,
//! `ServerName` = its first DNS name) that accepts LXD's operation websockets
//! (`GET /1.0/operations/<id>/websocket?secret=…`), routes them by secret to a channel name
//! (`control`, `fs`), and then plays a script: send binary or text messages, receive and
//! record, close cleanly or cut the connection. It plays the *source* in pull mode, the side
//! a pull target (silod or LXD) dials. The protobuf bytes are the test's business (build them
//! with the migration types); this module only moves websocket messages.
//!
//! Its socket is bound in a network namespace the test gives, on loopback; it is served from
//! threads of the test process and stops on drop.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// One websocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// A binary message (LXD: one protobuf message on `control`, data on `fs`).
    Binary(Vec<u8>),
    /// A text message (LXD: an empty one ends a stream on `fs`).
    Text(Vec<u8>),
    /// A close frame with its status code, if any.
    Close(Option<u16>),
}

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Wait (up to the timeout) until the peer has connected channel `name`.
    Accept(String, Duration),
    /// Send a message on a channel.
    Send(String, Msg),
    /// Receive one message on a channel (up to the timeout) and record it.
    Recv(String, Duration),
    /// Receive and record until an empty text message (LXD's end of one stream), a close or
    /// the timeout.
    RecvStream(String, Duration),
    /// Send a close frame with this code (if the connection still takes it) and drop it.
    Close(String, u16),
    /// Drop the TCP connection without a close frame (a crash or a cut cable).
    Cut(String),
    /// Do nothing for a while (the peer's timeouts).
    Sleep(Duration),
    /// Send directory `src` as LXD's source does: `rsync -ar --devices --numeric-ids
    /// --partial --sparse ARGS src/ localhost:/tmp/foo` whose remote shell is this channel
    /// (binary messages both ways), then an empty text message; wait for the target's empty
    /// text message too. `cut_after`: drop the connection once that many bytes were sent.
    Rsync {
        /// The channel (`fs`).
        channel: String,
        /// The directory whose contents go.
        src: std::path::PathBuf,
        /// The feature arguments the two sides agreed on (e.g. `--xattrs`, `--delete`).
        args: Vec<String>,
        /// Cut the connection after this many bytes of rsync data.
        cut_after: Option<u64>,
        /// How long the whole transfer may take.
        timeout: Duration,
    },
}

/// What happened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A websocket upgrade with a known secret: the channel it opened.
    Connected(String),
    /// An upgrade or request refused: (request target, status).
    Refused(String, u16),
    /// A message received on a channel.
    Received(String, Msg),
    /// A step that could not be done (timeout, I/O error): (step, error).
    Failed(String, String),
    /// The script ran to its end.
    Done,
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

#[derive(Default)]
struct Shared {
    channels: HashMap<String, Tls>,
    events: Vec<Event>,
}

/// The running peer.
pub struct MigrationPeer {
    /// Its address on the namespace's loopback.
    pub addr: SocketAddr,
    /// Its certificate, PEM (what the target is told to pin).
    pub cert_pem: String,
    /// The operation id its websocket URLs carry.
    pub op_id: String,
    /// Secret by channel name.
    pub secrets: HashMap<String, String>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MigrationPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationPeer")
            .field("addr", &self.addr)
            .field("op_id", &self.op_id)
            .finish()
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    hex::encode(b)
}

impl MigrationPeer {
    /// Listens on 127.0.0.1 in `netns` with channels `names` (each gets a random secret) and
    /// plays `script` once the server is up.
    pub fn start(netns: &std::os::fd::OwnedFd, names: &[&str], script: Vec<Step>) -> MigrationPeer {
        let params = rcgen::CertificateParams::new(vec![
            "silo-migration-peer".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("cert params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed cert");
        let der: CertificateDer<'static> = cert.der().clone();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![der],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        let config = Arc::new(config);
        let listener: TcpListener =
            crate::in_netns(netns, || TcpListener::bind("127.0.0.1:0").expect("bind"));
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let op_id = format!(
            "{}-{}-{}-{}-{}",
            random_hex(4),
            random_hex(2),
            random_hex(2),
            random_hex(2),
            random_hex(6)
        );
        let secrets: HashMap<String, String> = names
            .iter()
            .map(|n| (n.to_string(), random_hex(32)))
            .collect();
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (shared, stop, secrets, op) =
                (shared.clone(), stop.clone(), secrets.clone(), op_id.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((sock, _)) => {
                            let (config, shared, secrets, op) =
                                (config.clone(), shared.clone(), secrets.clone(), op.clone());
                            std::thread::spawn(move || {
                                let _ = upgrade(sock, config, &shared, &secrets, &op);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        {
            let (shared, stop) = (shared.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                play(&shared, &stop, script);
            }));
        }
        MigrationPeer {
            addr,
            cert_pem: cert.pem(),
            op_id,
            secrets,
            shared,
            stop,
            threads,
        }
    }

    /// The operation URL a target is given (`source.operation`).
    pub fn operation_url(&self) -> String {
        format!("https://{}/1.0/operations/{}", self.addr, self.op_id)
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.0.lock().expect("peer state").events.clone()
    }

    /// Waits (up to `timeout`) until the script is done or a step failed; answers the events.
    pub fn wait_done(&self, timeout: Duration) -> Vec<Event> {
        let (m, cv) = &*self.shared;
        let end = Instant::now() + timeout;
        let mut g = m.lock().expect("peer state");
        loop {
            if g.events
                .iter()
                .any(|e| matches!(e, Event::Done | Event::Failed(..)))
            {
                return g.events.clone();
            }
            let now = Instant::now();
            if now >= end {
                return g.events.clone();
            }
            g = cv.wait_timeout(g, end - now).expect("peer state").0;
        }
    }
}

impl Drop for MigrationPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.shared.1.notify_all();
        if let Ok(mut g) = self.shared.0.lock() {
            for (_, s) in g.channels.drain() {
                let _ = s.sock.shutdown(std::net::Shutdown::Both);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn push(shared: &(Mutex<Shared>, Condvar), e: Event) {
    shared.0.lock().expect("peer state").events.push(e);
    shared.1.notify_all();
}

/// Reads one request head; answers a websocket upgrade for a known secret (and files the
/// stream under its channel) or an LXD-style error.
fn upgrade(
    sock: TcpStream,
    config: Arc<rustls::ServerConfig>,
    shared: &(Mutex<Shared>, Condvar),
    secrets: &HashMap<String, String>,
    op: &str,
) -> std::io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tls.read(&mut byte)? == 0 || head.len() > 16 << 10 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("");
    let target = first.split(' ').nth(1).unwrap_or("/").to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let secret = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap_or("");
    let channel = secrets
        .iter()
        .find(|(_, s)| s.as_str() == secret)
        .map(|(n, _)| n.clone());
    let refuse = |tls: &mut Tls, code: u16, msg: &str| -> std::io::Result<()> {
        let body = format!(
            r#"{{"type":"error","status":"","status_code":0,"operation":"","error_code":{code},"error":"{msg}","metadata":null}}"#
        );
        write!(
            tls,
            "HTTP/1.1 {code} {msg}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        tls.flush()
    };
    if path != format!("/1.0/operations/{op}/websocket") {
        push(shared, Event::Refused(target.clone(), 404));
        return refuse(&mut tls, 404, "Not Found");
    }
    let (Some(channel), Some(key)) = (channel, headers.get("sec-websocket-key")) else {
        push(shared, Event::Refused(target.clone(), 403));
        return refuse(&mut tls, 403, "Forbidden");
    };
    let accept = base64(&sha1(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    write!(
        tls,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    tls.flush()?;
    let mut g = shared.0.lock().expect("peer state");
    g.channels.insert(channel.clone(), tls);
    g.events.push(Event::Connected(channel));
    drop(g);
    shared.1.notify_all();
    Ok(())
}

/// Runs the script; every step's failure ends it with [`Event::Failed`].
fn play(shared: &(Mutex<Shared>, Condvar), stop: &AtomicBool, script: Vec<Step>) {
    for step in script {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = run_step(shared, stop, &step) {
            push(shared, Event::Failed(format!("{step:?}"), e));
            return;
        }
    }
    push(shared, Event::Done);
}

/// Takes a channel's stream out of the registry for one step (and puts it back after).
fn with_channel<T>(
    shared: &(Mutex<Shared>, Condvar),
    name: &str,
    f: impl FnOnce(&mut Tls) -> Result<T, String>,
) -> Result<T, String> {
    let mut s = shared
        .0
        .lock()
        .expect("peer state")
        .channels
        .remove(name)
        .ok_or_else(|| format!("channel {name} is not connected"))?;
    let r = f(&mut s);
    shared
        .0
        .lock()
        .expect("peer state")
        .channels
        .insert(name.to_string(), s);
    r
}

fn run_step(
    shared: &(Mutex<Shared>, Condvar),
    stop: &AtomicBool,
    step: &Step,
) -> Result<(), String> {
    match step {
        Step::Accept(name, timeout) => {
            let (m, cv) = shared;
            let end = Instant::now() + *timeout;
            let mut g = m.lock().expect("peer state");
            while !g.channels.contains_key(name) {
                let now = Instant::now();
                if now >= end || stop.load(Ordering::SeqCst) {
                    return Err(format!("{name} did not connect in {timeout:?}"));
                }
                g = cv.wait_timeout(g, end - now).expect("peer state").0;
            }
            Ok(())
        }
        Step::Send(name, msg) => with_channel(shared, name, |s| {
            let (op, data) = match msg {
                Msg::Binary(d) => (2u8, d.clone()),
                Msg::Text(d) => (1, d.clone()),
                Msg::Close(code) => (
                    8,
                    code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default(),
                ),
            };
            write_frame(s, op, &data).map_err(|e| e.to_string())
        }),
        Step::Recv(name, timeout) => {
            let m = with_channel(shared, name, |s| read_msg(s, *timeout))?;
            push(shared, Event::Received(name.clone(), m));
            Ok(())
        }
        Step::RecvStream(name, timeout) => loop {
            let m = with_channel(shared, name, |s| read_msg(s, *timeout))?;
            let end = matches!(&m, Msg::Text(t) if t.is_empty()) || matches!(m, Msg::Close(_));
            push(shared, Event::Received(name.clone(), m));
            if end {
                return Ok(());
            }
        },
        Step::Close(name, code) => {
            // Best effort: the other side may have closed first (LXD's target closes
            // `control` right after its success message).
            let mut s = take(shared, name)?;
            let _ = write_frame(&mut s, 8, &code.to_be_bytes());
            s.conn.send_close_notify();
            let _ = s.flush();
            let _ = s.sock.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
        Step::Cut(name) => {
            let s = take(shared, name)?;
            s.sock
                .shutdown(std::net::Shutdown::Both)
                .map_err(|e| e.to_string())
        }
        Step::Sleep(d) => {
            std::thread::sleep(*d);
            Ok(())
        }
        Step::Rsync {
            channel,
            src,
            args,
            cut_after,
            timeout,
        } => {
            let mut s = take(shared, channel)?;
            let r = rsync_send(&mut s, src, args, *cut_after, *timeout);
            match r {
                Ok(true) => {
                    shared
                        .0
                        .lock()
                        .expect("peer state")
                        .channels
                        .insert(channel.clone(), s);
                    Ok(())
                }
                // Cut as asked: the connection goes.
                Ok(false) => {
                    let _ = s.sock.shutdown(std::net::Shutdown::Both);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// The fd number the rsync's remote shell finds its end of the socketpair at.
const RSH_FD: i32 = 197;

/// Runs the sending rsync with its remote shell bridged to `ws`; answers whether the
/// transfer ran to its end (false: cut as asked).
fn rsync_send(
    ws: &mut Tls,
    src: &std::path::Path,
    args: &[String],
    cut_after: Option<u64>,
    timeout: Duration,
) -> Result<bool, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    let (mine, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
    let fd = theirs.as_raw_fd();
    let mut path = src.as_os_str().to_owned();
    path.push("/");
    let mut cmd = std::process::Command::new("rsync");
    cmd.args(["-ar", "--devices", "--numeric-ids", "--partial", "--sparse"])
        .args(args)
        .arg(&path)
        .arg("localhost:/tmp/foo")
        .arg("-e")
        // rsync appends a host and the server command: ignored, as LXD's netcat does. bash, as
        // dash takes one-digit fds only. The shell rsync waits for is the cat that carries the
        // socket to rsync: it ends when this side shuts the socket (after the target's end
        // marker), as LXD's netcat ends when LXD closes its socket. A background job's stdin
        // would be /dev/null: it reads rsync's through fd 8.
        .arg(format!(
            "bash -c 'exec 8<&0; cat <&8 >&{RSH_FD} & exec cat <&{RSH_FD} 8<&-'"
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; RSH_FD is far above what the child has open, and
    // dup2 leaves the copy without CLOEXEC so the remote shell inherits it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, RSH_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn rsync: {e}"))?;
    drop(theirs);
    mine.set_nonblocking(true).map_err(|e| e.to_string())?;
    ws.sock
        .set_read_timeout(Some(Duration::from_millis(5)))
        .map_err(|e| e.to_string())?;
    let end = Instant::now() + timeout;
    let (mut sent, mut sent_end, mut got_end, mut exited) = (0u64, false, false, None);
    let mut inbuf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut mine_w = mine.try_clone().map_err(|e| e.to_string())?;
    let mut mine_r = mine;
    // The target's end marker is awaited only this long after rsync's own data ended: LXD
    // may finish its side without one.
    let mut end_grace: Option<Instant> = None;
    let mut shut = false;
    while !(sent_end && (got_end || end_grace.is_some_and(|g| Instant::now() > g))) {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "rsync transfer not done in {timeout:?}: sent {sent} bytes, our end marker \
                 {sent_end}, theirs {got_end}, rsync exited {exited:?}"
            ));
        }
        let mut idle = true;
        // rsync → websocket.
        if !sent_end {
            match mine_r.read(&mut chunk) {
                Ok(0) => {
                    write_frame(ws, 1, &[]).map_err(|e| e.to_string())?;
                    sent_end = true;
                    end_grace = Some(Instant::now() + Duration::from_secs(2));
                }
                Ok(n) => {
                    idle = false;
                    let n = match cut_after {
                        Some(c) if sent + n as u64 >= c => {
                            let keep = (c - sent) as usize;
                            write_frame(ws, 2, &chunk[..keep]).map_err(|e| e.to_string())?;
                            let _ = child.kill();
                            let _ = child.wait();
                            return Ok(false);
                        }
                        _ => n,
                    };
                    write_frame(ws, 2, &chunk[..n]).map_err(|e| e.to_string())?;
                    sent += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("rsync socket: {e}")),
            }
        }
        // websocket → rsync.
        if !got_end {
            match ws.read(&mut chunk) {
                Ok(0) => return Err("the target closed fs during the transfer".into()),
                Ok(n) => {
                    idle = false;
                    inbuf.extend_from_slice(&chunk[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("fs: {e}")),
            }
            while let Some((op, payload, used)) = parse_frame(&inbuf) {
                inbuf.drain(..used);
                match op {
                    2 | 0 if !shut => {
                        mine_w.set_nonblocking(false).map_err(|e| e.to_string())?;
                        mine_w.write_all(&payload).map_err(|e| e.to_string())?;
                        mine_w.set_nonblocking(true).map_err(|e| e.to_string())?;
                    }
                    1 if payload.is_empty() => {
                        got_end = true;
                        shut = true;
                        let _ = mine_w.shutdown(std::net::Shutdown::Write);
                    }
                    8 => return Err("the target closed fs during the transfer".into()),
                    9 => write_frame(ws, 10, &payload).map_err(|e| e.to_string())?,
                    _ => {}
                }
            }
        }
        if exited.is_none() {
            exited = child.try_wait().map_err(|e| e.to_string())?;
        }
        // rsync is done: the background cat that feeds it must see EOF so that the socket
        // (and so rsync's side of the stream) ends.
        if exited.is_some() && !shut {
            shut = true;
            let _ = mine_w.shutdown(std::net::Shutdown::Write);
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let st = match exited {
        Some(st) => st,
        None => child.wait().map_err(|e| e.to_string())?,
    };
    if !st.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("rsync {st}: {err}"));
    }
    Ok(true)
}

/// One whole frame at the start of `buf`: (opcode, unmasked payload, bytes used).
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    let mask: Option<[u8; 4]> = if masked {
        let m = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let mut payload = buf.get(at..end)?.to_vec();
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Some((op, payload, end))
}

fn take(shared: &(Mutex<Shared>, Condvar), name: &str) -> Result<Tls, String> {
    shared
        .0
        .lock()
        .expect("peer state")
        .channels
        .remove(name)
        .ok_or_else(|| format!("channel {name} is not connected"))
}

/// Writes one unmasked (server) frame with FIN set.
fn write_frame(s: &mut Tls, opcode: u8, data: &[u8]) -> std::io::Result<()> {
    let mut h = vec![0x80 | opcode];
    match data.len() {
        n if n < 126 => h.push(n as u8),
        n if n <= 0xFFFF => {
            h.push(126);
            h.extend((n as u16).to_be_bytes());
        }
        n => {
            h.push(127);
            h.extend((n as u64).to_be_bytes());
        }
    }
    s.write_all(&h)?;
    s.write_all(data)?;
    s.flush()
}

/// Reads one whole message (joining continuation frames, answering pings) within `timeout`.
fn read_msg(s: &mut Tls, timeout: Duration) -> Result<Msg, String> {
    s.sock
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut kind = None;
    let mut buf = Vec::new();
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).map_err(|e| format!("read: {e}"))?;
        let (fin, op) = (h[0] & 0x80 != 0, h[0] & 0x0F);
        let masked = h[1] & 0x80 != 0;
        let len = match h[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).map_err(|e| e.to_string())?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).map_err(|e| e.to_string())?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        if len > 256 << 20 {
            return Err(format!("frame of {len} bytes"));
        }
        let mut mask = [0u8; 4];
        if masked {
            s.read_exact(&mut mask).map_err(|e| e.to_string())?;
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).map_err(|e| e.to_string())?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match op {
            8 => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                return Ok(Msg::Close(code));
            }
            9 => write_frame(s, 10, &payload).map_err(|e| e.to_string())?,
            10 => {}
            0..=2 => {
                if op != 0 {
                    kind = Some(op);
                }
                buf.extend(payload);
                if fin {
                    return Ok(match kind {
                        Some(1) => Msg::Text(buf),
                        _ => Msg::Binary(buf),
                    });
                }
            }
            other => return Err(format!("unknown opcode {other}")),
        }
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-1, only for the websocket handshake's accept key (RFC 6455 fixes it).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend(bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// `MigrationControl{success, message}` (proto2: field 1 bool, field 2 string), encoded by
/// hand so a script can end or fail a migration without the prost types.
pub fn migration_control(success: bool, message: &str) -> Vec<u8> {
    let mut v = vec![0x08, u8::from(success)];
    if !message.is_empty() {
        v.push(0x12);
        let mut n = message.len();
        while n >= 0x80 {
            v.push((n as u8) | 0x80);
            n >>= 7;
        }
        v.push(n as u8);
        v.extend(message.as_bytes());
    }
    v
}

/// The offer of a stopped container on a `dir` pool without snapshots, as LXD's
/// `MigrationHeader` (proto2): `fs` = RSYNC, `predump` = false, `rsyncFeatures` with `xattrs`,
/// `delete` and `bidirectional` (no `compress`), no idmap (privileged), no index header.
/// Encoded by hand; the matching sender arguments are `--xattrs --delete`.
pub fn rsync_offer() -> Vec<u8> {
    let features = [0x08, 1, 0x10, 1, 0x18, 0, 0x20, 1];
    let mut v = vec![0x08, 0x00, 0x38, 0x00, 0x42, features.len() as u8];
    v.extend(features);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_helpers_match_rfc_vectors() {
        // RFC 6455 §1.3's example key and accept value.
        let accept = base64(&sha1(
            b"dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
        ));
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            hex::encode(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(
            migration_control(false, "no"),
            [0x08, 0, 0x12, 2, b'n', b'o']
        );
        assert_eq!(migration_control(true, ""), [0x08, 1]);
    }
}
