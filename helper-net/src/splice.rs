//! The forwarding engine of a `proxy` device.
//!
//! The forwarder process binds its listeners ([`bind`]) in one network namespace, switches to
//! the other, drops privileges and then calls [`run_all`]: every socket [`run_all`] creates
//! (upstream connections, per-client UDP sockets) is therefore made in the *other*
//! namespace. Nothing here depends on namespaces; the targets are plain addresses
//! ([`targets`]) interpreted wherever the process happens to be.
//!
//! One client's failure (refused upstream, reset, timeout) is logged and forgotten; only a
//! listener that can no longer accept ends the forwarder.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use silo_proto::proxy::{ProxyAddr, ProxyError, ProxySpec};
use tokio::io::unix::AsyncFd;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A bound, listening socket, created before the namespace switch.
#[derive(Debug)]
pub enum Listener {
    /// Accepts TCP connections.
    Tcp(std::net::TcpListener),
    /// Receives datagrams from any number of clients.
    Udp(std::net::UdpSocket),
    /// Accepts unix stream connections.
    Unix(std::os::unix::net::UnixListener),
}

/// Where one listener's clients are forwarded to, resolved after the namespace switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A TCP server.
    Tcp(SocketAddr),
    /// A UDP server.
    Udp(SocketAddr),
    /// A unix stream socket.
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp:{a}"),
            Target::Udp(a) => write!(f, "udp:{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// How much one forwarder process may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent stream connections plus UDP sessions, over all of a forwarder's listeners.
    /// Extra connections are accepted and closed at once; extra UDP clients' datagrams are
    /// dropped.
    pub max_conns: usize,
    /// A UDP session with no datagram either way for this long is dropped (LXD: 30 s).
    pub udp_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 1024,
            udp_idle: Duration::from_secs(30),
        }
    }
}

/// An upstream that accepts the SYN but never answers must not hold a connection slot for
/// the kernel's two-minute SYN retry budget.
/// Bytes moved per splice(2) call: a pipe's default capacity (16 pages), so one call can fill
/// the empty pipe of a direction in one go.
const SPLICE_CHUNK: usize = 64 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Large enough for any UDP datagram, so none is silently truncated.
const DATAGRAM_MAX: usize = 65536;

fn context(e: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Binds every listening socket `addr` stands for, in port order (one per port of a range),
/// so that the `i`th listener pairs with the `i`th entry of [`targets`].
///
/// A unix socket path that already exists is removed first only if it is a socket nobody
/// listens on; any other file, or a live socket, is an error.
pub fn bind(addr: &ProxyAddr) -> io::Result<Vec<Listener>> {
    match addr {
        ProxyAddr::Tcp { host, ports } => ports
            .iter()
            .map(|port| {
                let sa = SocketAddr::new(*host, port);
                std::net::TcpListener::bind(sa)
                    .map(Listener::Tcp)
                    .map_err(|e| context(e, format_args!("bind tcp:{sa}")))
            })
            .collect(),
        ProxyAddr::Udp { host, ports } => ports
            .iter()
            .map(|port| {
                let sa = SocketAddr::new(*host, port);
                std::net::UdpSocket::bind(sa)
                    .map(Listener::Udp)
                    .map_err(|e| context(e, format_args!("bind udp:{sa}")))
            })
            .collect(),
        ProxyAddr::Unix { path } => {
            let path = path.as_path();
            remove_stale_socket(path)?;
            let l = std::os::unix::net::UnixListener::bind(path)
                .map_err(|e| context(e, format_args!("bind unix:{}", path.display())))?;
            Ok(vec![Listener::Unix(l)])
        }
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let what = format_args!("unix:{}", path.display()).to_string();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(context(e, format_args!("lstat {what}"))),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{what} exists and is not a socket; refusing to remove it"),
        ));
    }
    // A socket someone still serves on is not ours to take over. (A blocking connect can
    // only stall when a live listener's backlog is full, and then we refuse anyway.)
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{what} is a live socket; refusing to remove it"),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|e| context(e, format_args!("remove stale socket {what}"))),
        Err(e) => Err(context(e, format_args!("probe existing socket {what}"))),
    }
}

/// The target of each listening socket of `spec.listen`, in the order [`bind`] returns them:
/// the matching port of a connect range, or the single connect address they share.
pub fn targets(spec: &ProxySpec) -> Result<Vec<Target>, ProxyError> {
    spec.validate()?;
    (0..spec.listen.len())
        .map(|i| {
            let connect = spec.connect_for(i).ok_or_else(|| ProxyError::Field {
                field: "connect",
                reason: format!("no address for listen socket {i}"),
            })?;
            Ok(match connect {
                ProxyAddr::Tcp { host, ports } => Target::Tcp(SocketAddr::new(host, ports.first())),
                ProxyAddr::Udp { host, ports } => Target::Udp(SocketAddr::new(host, ports.first())),
                ProxyAddr::Unix { path } => Target::Unix(path.as_path().to_path_buf()),
            })
        })
        .collect()
}

/// Forwards one listener to one target; see [`run_all`].
#[cfg(test)]
pub async fn run(listener: Listener, target: Target, limits: Limits) -> io::Result<()> {
    run_all(vec![(listener, target)], limits).await
}

/// Forwards every listener to its target until one listener fails fatally, and returns that
/// error (it never returns `Ok`). The connection cap in `limits` is shared by all listeners.
/// Connections already spliced are left to the runtime: the forwarder process exits on
/// that error, which ends them.
///
/// Stream connections are spliced with half-close propagation: when one side shuts its
/// writing half, the other side's writing half is shut and the reverse direction carries on.
/// UDP clients each get their own connected upstream socket, so replies find their way back.
pub async fn run_all(pairs: Vec<(Listener, Target)>, limits: Limits) -> io::Result<()> {
    if pairs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a proxy forwarder needs at least one listener",
        ));
    }
    if limits.max_conns == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a proxy forwarder that may hold no connection would refuse every client",
        ));
    }
    let slots = Arc::new(Semaphore::new(limits.max_conns.min(Semaphore::MAX_PERMITS)));
    // Convert everything before spawning, so a mismatched pair fails the whole call at once.
    let mut serving = Vec::with_capacity(pairs.len());
    for (listener, target) in pairs {
        serving.push(Serving::new(listener, target)?);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for s in serving {
        tasks.spawn(s.run(slots.clone(), limits.udp_idle));
    }
    match tasks.join_next().await {
        Some(Ok(e)) => Err(e),
        Some(Err(e)) => Err(io::Error::other(format!("proxy listener task failed: {e}"))),
        None => Err(io::Error::other("proxy listener tasks vanished")),
    }
}

enum Serving {
    Tcp(tokio::net::TcpListener, Target),
    Unix(tokio::net::UnixListener, Target),
    Udp(tokio::net::UdpSocket, SocketAddr),
}

impl Serving {
    fn new(listener: Listener, target: Target) -> io::Result<Self> {
        let mismatch = |l: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot forward a {l} listener to {target}"),
            )
        };
        Ok(match listener {
            Listener::Tcp(l) => {
                if matches!(target, Target::Udp(_)) {
                    return Err(mismatch("tcp"));
                }
                l.set_nonblocking(true)?;
                Serving::Tcp(tokio::net::TcpListener::from_std(l)?, target)
            }
            Listener::Unix(l) => {
                if matches!(target, Target::Udp(_)) {
                    return Err(mismatch("unix"));
                }
                l.set_nonblocking(true)?;
                Serving::Unix(tokio::net::UnixListener::from_std(l)?, target)
            }
            Listener::Udp(s) => {
                let Target::Udp(to) = target else {
                    return Err(mismatch("udp"));
                };
                s.set_nonblocking(true)?;
                Serving::Udp(tokio::net::UdpSocket::from_std(s)?, to)
            }
        })
    }

    /// Returns only the error that ended the listener.
    async fn run(self, slots: Arc<Semaphore>, udp_idle: Duration) -> io::Error {
        let mut refusals = Throttle::default();
        match self {
            Serving::Tcp(l, target) => loop {
                let (stream, peer) = match l.accept().await {
                    Ok(c) => c,
                    Err(e) => match survive(e, "accept tcp").await {
                        Ok(()) => continue,
                        Err(e) => return e,
                    },
                };
                let Some(slot) = admit(&slots, &mut refusals, &target) else {
                    continue;
                };
                // Latency over packing: the client already chose how to batch its writes.
                let _ = stream.set_nodelay(true);
                match stream.into_std() {
                    Ok(s) => spawn_splice(s.into(), peer.to_string(), target.clone(), slot),
                    Err(e) => {
                        tracing::warn!(peer = %peer, error = %e, "proxy: cannot take the connection")
                    }
                }
            },
            Serving::Unix(l, target) => loop {
                let stream = match l.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => match survive(e, "accept unix").await {
                        Ok(()) => continue,
                        Err(e) => return e,
                    },
                };
                let Some(slot) = admit(&slots, &mut refusals, &target) else {
                    continue;
                };
                match stream.into_std() {
                    Ok(s) => spawn_splice(s.into(), "unix client".into(), target.clone(), slot),
                    Err(e) => tracing::warn!(error = %e, "proxy: cannot take the unix connection"),
                }
            },
            Serving::Udp(sock, to) => serve_udp(Arc::new(sock), to, slots, udp_idle).await,
        }
    }
}

/// Decides whether a listener survives an error. Errors about the socket itself end it;
/// everything else (a connection aborted before accept, fd or memory exhaustion) is logged,
/// and resource shortages pause the loop so it does not spin on a backlog it cannot drain.
async fn survive(e: io::Error, op: &str) -> io::Result<()> {
    let errno = e.raw_os_error();
    if matches!(
        errno,
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP | libc::EFAULT)
    ) {
        tracing::error!(error = %e, "proxy listener failed: {op}");
        return Err(context(e, op));
    }
    tracing::warn!(error = %e, "proxy listener: {op}");
    if matches!(
        errno,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Logs at most once a second, so a flood of refused clients cannot flood the log.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// Whether to log now, and how many events went unlogged since the last time.
    fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

fn admit(
    slots: &Arc<Semaphore>,
    refusals: &mut Throttle,
    target: &dyn fmt::Display,
) -> Option<OwnedSemaphorePermit> {
    match slots.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            if let Some(earlier) = refusals.hit() {
                tracing::warn!(
                    upstream = %target,
                    also_refused = earlier,
                    "proxy connection limit reached; refusing a client"
                );
            }
            None
        }
    }
}

/// Forwards one stream connection both ways until both sides have finished.
///
/// The bytes never enter user space: each direction splices from its source socket into a
/// pipe of its own and from the pipe into the other socket, as `socat`'s and HAProxy's
/// splicing modes do. Each socket is taken out of tokio's stream types (which would keep
/// them registered with the reactor) and watched through an [`AsyncFd`] instead, so the
/// fds can be handed to splice(2).
fn spawn_splice(client: OwnedFd, peer: String, target: Target, slot: OwnedSemaphorePermit) {
    tokio::spawn(async move {
        let _slot = slot;
        let upstream = tokio::time::timeout(CONNECT_TIMEOUT, connect(&target)).await;
        let upstream = match upstream {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => {
                tracing::warn!(peer = %peer, upstream = %target, error = %e, "proxy: cannot connect upstream");
                return;
            }
            Err(_) => {
                tracing::warn!(peer = %peer, upstream = %target, "proxy: upstream connect timed out");
                return;
            }
        };
        match splice_both(client, upstream).await {
            Ok((up, down)) => {
                tracing::debug!(peer = %peer, upstream = %target, up, down, "proxy connection closed");
            }
            Err(e) => {
                tracing::warn!(peer = %peer, upstream = %target, error = %e, "proxy connection failed")
            }
        }
    });
}

async fn connect(target: &Target) -> io::Result<OwnedFd> {
    Ok(match target {
        Target::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a).await?;
            let _ = s.set_nodelay(true);
            s.into_std()?.into()
        }
        Target::Unix(p) => tokio::net::UnixStream::connect(p).await?.into_std()?.into(),
        Target::Udp(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stream cannot be forwarded to a udp target",
            ))
        }
    })
}

/// A pipe, both ends non-blocking: the kernel buffer one direction splices through.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(io::Error::from)?;
        Ok(Pipe { read, write })
    }
}

fn splice(from: &impl AsRawFd, to: &impl AsRawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) on two fds that stay open for the call, with null offsets (both
    // are sockets or pipes, which have none); it touches no memory of ours.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves one direction until its source ends, then passes the end on (shutdown of the
/// destination's writing half, so half-closed connections work as with a direct one).
/// Returns the bytes moved.
async fn pump(from: &AsyncFd<OwnedFd>, to: &AsyncFd<OwnedFd>) -> io::Result<u64> {
    let pipe = Pipe::new()?;
    let mut total = 0u64;
    loop {
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
        let n = loop {
            let mut ready = from.readable().await?;
            match ready.try_io(|sock| splice(sock, &pipe.write, SPLICE_CHUNK)) {
                Ok(r) => break r?,
                Err(_would_block) => continue,
            }
        };
        if n == 0 {
            // SAFETY: shutdown(2) on a socket fd we own; an error (the peer is gone) only
            // means there is nobody left to tell.
            unsafe { libc::shutdown(to.get_ref().as_raw_fd(), libc::SHUT_WR) };
            return Ok(total);
        }
        // And here the pipe holds data, so EAGAIN can only mean the socket is full.
        let mut left = n;
        while left > 0 {
            let mut ready = to.writable().await?;
            match ready.try_io(|sock| splice(&pipe.read, sock, left)) {
                Ok(r) => left -= r?,
                Err(_would_block) => continue,
            }
        }
        total += n as u64;
    }
}

/// Both directions of one connection; an error in either ends both (the sockets close when
/// this returns). Returns the bytes sent up and down.
async fn splice_both(client: OwnedFd, upstream: OwnedFd) -> io::Result<(u64, u64)> {
    // SAFETY: an OwnedFd keeps its one fd open, and its as_raw_fd always returns it, until
    // the AsyncFd that owns it is dropped.
    let client = unsafe { AsyncFd::register(client) }.map_err(io::Error::from)?;
    // SAFETY: as above.
    let upstream = unsafe { AsyncFd::register(upstream) }.map_err(io::Error::from)?;
    tokio::try_join!(pump(&client, &upstream), pump(&upstream, &client))
}

/// One UDP client's upstream socket and when it last carried a datagram either way.
struct Session {
    upstream: Arc<tokio::net::UdpSocket>,
    last: Instant,
    _slot: OwnedSemaphorePermit,
}

/// Sessions by client address. A std mutex, never held across an await: both the receive
/// loop and each session's reply task touch it, and the idle check plus removal must be one
/// step so a datagram arriving at that moment either refreshes the session or finds it gone.
type Sessions = Arc<Mutex<HashMap<SocketAddr, Session>>>;

fn lock(s: &Sessions) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Session>> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes `client`'s session if it is still the one using `upstream` (a newer session for
/// the same client is not this task's to end).
fn forget(sessions: &Sessions, client: SocketAddr, upstream: &Arc<tokio::net::UdpSocket>) {
    let mut map = lock(sessions);
    if map
        .get(&client)
        .is_some_and(|s| Arc::ptr_eq(&s.upstream, upstream))
    {
        map.remove(&client);
    }
}

async fn serve_udp(
    sock: Arc<tokio::net::UdpSocket>,
    to: SocketAddr,
    slots: Arc<Semaphore>,
    idle: Duration,
) -> io::Error {
    let sessions: Sessions = Arc::default();
    let mut refusals = Throttle::default();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let (n, client) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => match survive(e, "receive udp").await {
                Ok(()) => continue,
                Err(e) => return e,
            },
        };
        let existing = {
            let mut map = lock(&sessions);
            map.get_mut(&client).map(|s| {
                s.last = Instant::now();
                s.upstream.clone()
            })
        };
        let upstream = match existing {
            Some(u) => u,
            None => {
                let Some(slot) = admit(&slots, &mut refusals, &format_args!("udp:{to}")) else {
                    continue;
                };
                match open_session(&sock, client, to, slot, &sessions, idle).await {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(peer = %client, upstream = %to, error = %e, "proxy: cannot open udp upstream");
                        continue;
                    }
                }
            }
        };
        if let Err(e) = upstream.send(&buf[..n]).await {
            tracing::warn!(peer = %client, upstream = %to, error = %e, "proxy: udp send upstream failed");
        }
    }
}

async fn open_session(
    sock: &Arc<tokio::net::UdpSocket>,
    client: SocketAddr,
    to: SocketAddr,
    slot: OwnedSemaphorePermit,
    sessions: &Sessions,
    idle: Duration,
) -> io::Result<Arc<tokio::net::UdpSocket>> {
    let any = match to {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let upstream = tokio::net::UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    // Connected, so the kernel only hands us the target's replies and reports its ICMP errors.
    upstream.connect(to).await?;
    let upstream = Arc::new(upstream);
    lock(sessions).insert(
        client,
        Session {
            upstream: upstream.clone(),
            last: Instant::now(),
            _slot: slot,
        },
    );
    tokio::spawn(relay_replies(
        sock.clone(),
        client,
        upstream.clone(),
        sessions.clone(),
        idle,
    ));
    Ok(upstream)
}

async fn relay_replies(
    sock: Arc<tokio::net::UdpSocket>,
    client: SocketAddr,
    upstream: Arc<tokio::net::UdpSocket>,
    sessions: Sessions,
    idle: Duration,
) {
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let deadline = {
            let map = lock(&sessions);
            match map.get(&client) {
                Some(s) if Arc::ptr_eq(&s.upstream, &upstream) => s.last + idle,
                _ => return,
            }
        };
        match tokio::time::timeout_at(deadline, upstream.recv(&mut buf)).await {
            Err(_) => {
                let map = lock(&sessions);
                // A datagram from the client may have refreshed the session meanwhile.
                if map.get(&client).is_some_and(|s| {
                    Arc::ptr_eq(&s.upstream, &upstream) && s.last + idle > Instant::now()
                }) {
                    continue;
                }
                drop(map);
                forget(&sessions, client, &upstream);
                tracing::debug!(peer = %client, "proxy: idle udp session dropped");
                return;
            }
            Ok(Ok(n)) => {
                if let Some(s) = lock(&sessions).get_mut(&client) {
                    s.last = Instant::now();
                }
                if let Err(e) = sock.send_to(&buf[..n], client).await {
                    tracing::warn!(peer = %client, error = %e, "proxy: udp send to client failed");
                }
            }
            // The target answered an earlier datagram with ICMP unreachable; it may come back.
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::warn!(peer = %client, error = %e, "proxy: udp target refused a datagram");
            }
            Ok(Err(e)) => {
                tracing::warn!(peer = %client, error = %e, "proxy: udp upstream failed; dropping session");
                forget(&sessions, client, &upstream);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpStream, UdpSocket, UnixStream};

    const TEST_TIMEOUT: Duration = Duration::from_secs(120);

    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(TEST_TIMEOUT, f)
            .await
            .expect("test timed out")
    }

    /// Echoes every byte until EOF, then shuts its writing half.
    async fn echo<S: AsyncRead + AsyncWrite + Unpin>(s: S) {
        let (mut r, mut w) = tokio::io::split(s);
        tokio::io::copy(&mut r, &mut w).await.expect("echo copy");
        w.shutdown().await.expect("echo shutdown");
    }

    async fn tcp_echo_server() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(echo(s));
            }
        });
        addr
    }

    fn unix_echo_server(path: &Path) {
        let l = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(echo(s));
            }
        });
    }

    fn tcp_listener() -> (Listener, SocketAddr) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        (Listener::Tcp(l), a)
    }

    fn start(listener: Listener, target: Target, limits: Limits) {
        tokio::spawn(async move {
            let e = run(listener, target, limits).await;
            panic!("forwarder ended: {e:?}");
        });
    }

    /// Distinct bytes per connection, so crossed streams would show.
    fn pattern(seed: usize, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(7919)) as u8)
            .collect()
    }

    /// Sends `data`, shuts the writing half and returns everything read back.
    async fn round_trip<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        s: S,
        data: Vec<u8>,
    ) -> Vec<u8> {
        let (mut r, mut w) = tokio::io::split(s);
        let writer = tokio::spawn(async move {
            w.write_all(&data).await.expect("write");
            w.shutdown().await.expect("shutdown");
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read");
        writer.await.expect("writer");
        got
    }

    #[tokio::test]
    async fn tcp_sequential_connections() {
        within(async {
            let echo = tcp_echo_server().await;
            let (l, addr) = tcp_listener();
            start(l, Target::Tcp(echo), Limits::default());
            for i in 0..1000 {
                let data = pattern(i, 1 + i % 300);
                let s = TcpStream::connect(addr).await.unwrap();
                assert_eq!(round_trip(s, data.clone()).await, data, "connection {i}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn bulk_data_arrives_whole_and_in_order_both_ways() {
        // 24 MiB each way at once through tcp and unix hops: many splices per direction,
        // with full socket buffers (partial moves out of the pipe) on both sides.
        within(async {
            let echo = tcp_echo_server().await;
            let dir = tempfile::tempdir().unwrap();
            let sock = dir.path().join("mid.sock");
            let mid = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            start(Listener::Unix(mid), Target::Tcp(echo), Limits::default());
            let (l, addr) = tcp_listener();
            start(l, Target::Unix(sock), Limits::default());
            let data = pattern(3, 24 << 20);
            let s = TcpStream::connect(addr).await.unwrap();
            let got = round_trip(s, data.clone()).await;
            assert_eq!(got.len(), data.len());
            assert!(got == data, "the bytes came back changed or reordered");
        })
        .await;
    }

    #[tokio::test]
    async fn tcp_concurrent_connections() {
        within(async {
            let echo = tcp_echo_server().await;
            let (l, addr) = tcp_listener();
            start(l, Target::Tcp(echo), Limits::default());
            let clients: Vec<_> = (0..100)
                .map(|i| {
                    tokio::spawn(async move {
                        let data = pattern(i, 64 * 1024 + i);
                        let s = TcpStream::connect(addr).await.unwrap();
                        let got = round_trip(s, data.clone()).await;
                        assert_eq!(got.len(), data.len(), "connection {i}");
                        assert!(got == data, "connection {i}: bytes differ");
                    })
                })
                .collect();
            for c in clients {
                c.await.unwrap();
            }
        })
        .await;
    }

    #[tokio::test]
    async fn half_close_both_ways() {
        within(async {
            // The server reads to EOF before it answers: only a propagated FIN lets it reply.
            let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server_addr = server.local_addr().unwrap();
            tokio::spawn(async move {
                loop {
                    let (mut s, _) = server.accept().await.unwrap();
                    tokio::spawn(async move {
                        let mut got = Vec::new();
                        s.read_to_end(&mut got).await.unwrap();
                        s.write_all(format!("got {} bytes", got.len()).as_bytes())
                            .await
                            .unwrap();
                        s.shutdown().await.unwrap();
                    });
                }
            });
            let (l, addr) = tcp_listener();
            start(l, Target::Tcp(server_addr), Limits::default());
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&[7u8; 5000]).await.unwrap();
            c.shutdown().await.unwrap();
            let mut reply = String::new();
            c.read_to_string(&mut reply).await.unwrap();
            assert_eq!(reply, "got 5000 bytes");

            // The other way round: the server says goodbye and shuts its half first; the
            // client can still send, and the server still receives.
            let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server_addr = server.local_addr().unwrap();
            let received = tokio::spawn(async move {
                let (mut s, _) = server.accept().await.unwrap();
                s.write_all(b"bye").await.unwrap();
                s.shutdown().await.unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                got
            });
            let (l, addr) = tcp_listener();
            start(l, Target::Tcp(server_addr), Limits::default());
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut greeting = Vec::new();
            c.read_to_end(&mut greeting).await.unwrap();
            assert_eq!(greeting, b"bye");
            c.write_all(b"after your FIN").await.unwrap();
            c.shutdown().await.unwrap();
            assert_eq!(received.await.unwrap(), b"after your FIN");
        })
        .await;
    }

    #[tokio::test]
    async fn unix_to_tcp_and_tcp_to_unix() {
        within(async {
            let dir = tempfile::tempdir().unwrap();
            let echo = tcp_echo_server().await;
            let front = dir.path().join("front.sock");
            let addr: ProxyAddr = format!("unix:{}", front.display()).parse().unwrap();
            let mut ls = bind(&addr).unwrap();
            start(ls.remove(0), Target::Tcp(echo), Limits::default());
            for i in 0..20 {
                let data = pattern(i, 10_000 + i);
                let s = UnixStream::connect(&front).await.unwrap();
                assert_eq!(round_trip(s, data.clone()).await, data, "unix->tcp {i}");
            }

            let back = dir.path().join("back.sock");
            unix_echo_server(&back);
            let (l, addr) = tcp_listener();
            start(l, Target::Unix(back), Limits::default());
            for i in 0..20 {
                let data = pattern(i + 100, 10_000 + i);
                let s = TcpStream::connect(addr).await.unwrap();
                assert_eq!(round_trip(s, data.clone()).await, data, "tcp->unix {i}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn upstream_failure_does_not_end_the_forwarder() {
        within(async {
            let dir = tempfile::tempdir().unwrap();
            let back = dir.path().join("late.sock");
            let (l, addr) = tcp_listener();
            start(l, Target::Unix(back.clone()), Limits::default());
            // Nothing listens yet: the client is accepted, then closed (reset, if the
            // forwarder had unread bytes from it).
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(b"lost").await;
            let mut got = Vec::new();
            if let Err(e) = s.read_to_end(&mut got).await {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
            }
            assert!(got.is_empty(), "{got:?}");
            unix_echo_server(&back);
            let s = TcpStream::connect(addr).await.unwrap();
            assert_eq!(round_trip(s, b"found".to_vec()).await, b"found");
        })
        .await;
    }

    /// `n` listeners on consecutive ports of 127.0.0.1, for port-range tests.
    fn consecutive_ports(n: u16) -> Vec<std::net::TcpListener> {
        for _ in 0..200 {
            let base = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if base > u16::MAX - n {
                continue;
            }
            let got: Vec<_> = (base..base + n)
                .map_while(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
                .collect();
            if got.len() == usize::from(n) {
                return got;
            }
        }
        panic!("no {n} consecutive free ports");
    }

    #[tokio::test]
    async fn port_range_forwards_port_by_port() {
        within(async {
            // Each backend names itself, so a crossed pairing shows.
            let backends = consecutive_ports(3);
            let first_backend = backends[0].local_addr().unwrap().port();
            for (i, b) in backends.into_iter().enumerate() {
                b.set_nonblocking(true).unwrap();
                let b = tokio::net::TcpListener::from_std(b).unwrap();
                tokio::spawn(async move {
                    loop {
                        let (mut s, _) = b.accept().await.unwrap();
                        let mut got = Vec::new();
                        s.read_to_end(&mut got).await.unwrap();
                        got.extend_from_slice(format!(" via backend {i}").as_bytes());
                        s.write_all(&got).await.unwrap();
                    }
                });
            }
            // Free ports can be taken between probing and binding; retry on a fresh range.
            let (spec, listeners) = (0..20)
                .find_map(|_| {
                    let probe = consecutive_ports(3);
                    let first = probe[0].local_addr().unwrap().port();
                    drop(probe);
                    let spec = ProxySpec::parse(
                        &format!("tcp:127.0.0.1:{}-{}", first, first + 2),
                        &format!("tcp:127.0.0.1:{}-{}", first_backend, first_backend + 2),
                        "",
                    )
                    .unwrap();
                    bind(&spec.listen).ok().map(|l| (spec, l))
                })
                .expect("bind a free range");
            assert_eq!(listeners.len(), 3);
            let ts = targets(&spec).unwrap();
            assert_eq!(
                ts,
                (0..3)
                    .map(|i| Target::Tcp(SocketAddr::from(([127, 0, 0, 1], first_backend + i))))
                    .collect::<Vec<_>>()
            );
            let ProxyAddr::Tcp { ports, .. } = spec.listen else {
                panic!("not tcp");
            };
            tokio::spawn(async move {
                let e = run_all(listeners.into_iter().zip(ts).collect(), Limits::default()).await;
                panic!("forwarder ended: {e:?}");
            });
            for (i, port) in ports.iter().enumerate() {
                for round in 0..3 {
                    let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    let got = round_trip(s, format!("port {port}").into_bytes()).await;
                    assert_eq!(
                        String::from_utf8(got).unwrap(),
                        format!("port {port} via backend {i}"),
                        "round {round}"
                    );
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn connection_cap_refuses_extras() {
        within(async {
            let echo = tcp_echo_server().await;
            let (l, addr) = tcp_listener();
            start(
                l,
                Target::Tcp(echo),
                Limits {
                    max_conns: 2,
                    ..Limits::default()
                },
            );
            let mut held = Vec::new();
            for i in 0..2u8 {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(&[i; 10]).await.unwrap();
                let mut back = [0u8; 10];
                s.read_exact(&mut back).await.unwrap();
                assert_eq!(back, [i; 10]);
                held.push(s);
            }
            // The third is accepted by the kernel, then closed by the forwarder unanswered.
            let mut extra = TcpStream::connect(addr).await.unwrap();
            let _ = extra.write_all(b"anyone?").await;
            let mut got = Vec::new();
            let r = tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut got))
                .await
                .expect("the client over the cap was not closed");
            assert!(got.is_empty(), "refused client got {got:?}");
            if let Err(e) = r {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
            }
            // The held connections still work.
            for (i, s) in held.iter_mut().enumerate() {
                s.write_all(b"still here").await.unwrap();
                let mut back = [0u8; 10];
                s.read_exact(&mut back).await.unwrap();
                assert_eq!(&back, b"still here", "held {i}");
            }
            // Closing one frees its slot once the splice has wound down.
            let mut first = held.remove(0);
            first.shutdown().await.unwrap();
            let mut rest = Vec::new();
            first.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            drop(first);
            let mut ok = false;
            for _ in 0..100 {
                let s = TcpStream::connect(addr).await.unwrap();
                if round_trip(s, b"welcome".to_vec()).await == b"welcome" {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(ok, "a freed slot was never reused");
        })
        .await;
    }

    /// Replies with the datagram followed by the address it came from.
    async fn udp_echo_server() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; DATAGRAM_MAX];
            loop {
                let (n, from) = s.recv_from(&mut buf).await.unwrap();
                let mut reply = buf[..n].to_vec();
                reply.extend_from_slice(format!("|{from}").as_bytes());
                s.send_to(&reply, from).await.unwrap();
            }
        });
        addr
    }

    fn udp_listener() -> (Listener, SocketAddr) {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = s.local_addr().unwrap();
        (Listener::Udp(s), a)
    }

    /// Sends `data` and returns the payload echoed and the upstream address the server saw.
    async fn udp_ask(c: &UdpSocket, data: &[u8]) -> (Vec<u8>, String) {
        c.send(data).await.unwrap();
        let mut buf = vec![0u8; DATAGRAM_MAX];
        let n = tokio::time::timeout(Duration::from_secs(10), c.recv(&mut buf))
            .await
            .expect("udp reply")
            .unwrap();
        let split = buf[..n].iter().rposition(|b| *b == b'|').unwrap();
        (
            buf[..split].to_vec(),
            String::from_utf8(buf[split + 1..n].to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn udp_three_clients() {
        within(async {
            let echo = udp_echo_server().await;
            let (l, addr) = udp_listener();
            start(l, Target::Udp(echo), Limits::default());
            let clients: Vec<_> = (0..3usize)
                .map(|i| {
                    tokio::spawn(async move {
                        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                        c.connect(addr).await.unwrap();
                        let mut upstreams = std::collections::HashSet::new();
                        for k in 0..50 {
                            let data = pattern(i * 1000 + k, 1 + k * 97);
                            let (got, via) = udp_ask(&c, &data).await;
                            assert_eq!(got, data, "client {i} datagram {k}");
                            upstreams.insert(via);
                        }
                        // A datagram near the maximum comes back whole.
                        let big = pattern(i, 60_000);
                        let (got, via) = udp_ask(&c, &big).await;
                        assert!(got == big, "client {i}: big datagram differs");
                        upstreams.insert(via);
                        assert_eq!(upstreams.len(), 1, "client {i} used {upstreams:?}");
                        upstreams.into_iter().next().unwrap()
                    })
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            for c in clients {
                seen.insert(c.await.unwrap());
            }
            assert_eq!(seen.len(), 3, "each client gets its own upstream socket");
        })
        .await;
    }

    #[tokio::test]
    async fn udp_idle_sessions_expire() {
        within(async {
            let echo = udp_echo_server().await;
            let (l, addr) = udp_listener();
            start(
                l,
                Target::Udp(echo),
                Limits {
                    max_conns: 1,
                    udp_idle: Duration::from_millis(300),
                },
            );
            let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            c.connect(addr).await.unwrap();
            let (got, first) = udp_ask(&c, b"one").await;
            assert_eq!(got, b"one");
            // Traffic keeps the session alive past the idle time.
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let (got, via) = udp_ask(&c, b"again").await;
                assert_eq!(got, b"again");
                assert_eq!(via, first);
            }
            // With max_conns 1, a second client is dropped while the first is active.
            let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            other.connect(addr).await.unwrap();
            other.send(b"me too").await.unwrap();
            let mut buf = [0u8; 64];
            assert!(
                tokio::time::timeout(Duration::from_millis(200), other.recv(&mut buf))
                    .await
                    .is_err(),
                "a client over the cap got an answer"
            );
            // Once idle, the session is gone: its slot is free and a new upstream socket
            // is used.
            tokio::time::sleep(Duration::from_millis(700)).await;
            let (got, via) = udp_ask(&other, b"me now").await;
            assert_eq!(got, b"me now");
            assert_ne!(via, first);
        })
        .await;
    }

    #[tokio::test]
    async fn unix_bind_handles_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        let addr: ProxyAddr = format!("unix:{}", path.display()).parse().unwrap();

        std::fs::write(&path, b"precious").unwrap();
        let e = bind(&addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        std::fs::remove_file(&path).unwrap();

        std::fs::create_dir(&path).unwrap();
        assert!(bind(&addr).is_err());
        assert!(path.is_dir());
        std::fs::remove_dir(&path).unwrap();

        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        assert!(bind(&addr).is_err());
        assert!(path.symlink_metadata().unwrap().file_type().is_symlink());
        std::fs::remove_file(&path).unwrap();

        // A live socket is someone else's.
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = bind(&addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        drop(live);

        // The same socket file, now stale, is replaced.
        assert!(path.symlink_metadata().unwrap().file_type().is_socket());
        let ls = bind(&addr).unwrap();
        assert!(matches!(ls.as_slice(), [Listener::Unix(_)]));
    }

    #[tokio::test]
    async fn mismatched_pairs_are_refused() {
        let (l, _) = udp_listener();
        let e = run(
            l,
            Target::Tcp(([127, 0, 0, 1], 1).into()),
            Limits::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let (l, _) = tcp_listener();
        let e = run(
            l,
            Target::Udp(([127, 0, 0, 1], 1).into()),
            Limits::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let e = run_all(Vec::new(), Limits::default()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let (l, _) = tcp_listener();
        let none = Limits {
            max_conns: 0,
            ..Limits::default()
        };
        let e = run(l, Target::Tcp(([127, 0, 0, 1], 1).into()), none)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn targets_follow_the_spec() {
        let spec = ProxySpec::parse("tcp:0.0.0.0:80-81", "unix:/run/app.sock", "").unwrap();
        assert_eq!(
            targets(&spec).unwrap(),
            vec![
                Target::Unix("/run/app.sock".into()),
                Target::Unix("/run/app.sock".into())
            ]
        );
        let spec = ProxySpec::parse("udp:[::]:53", "udp:[::1]:5353", "").unwrap();
        assert_eq!(
            targets(&spec).unwrap(),
            vec![Target::Udp("[::1]:5353".parse().unwrap())]
        );
        let bad = ProxySpec {
            listen: "udp:0.0.0.0:53".parse().unwrap(),
            connect: "tcp:127.0.0.1:53".parse().unwrap(),
            bind: Default::default(),
        };
        assert!(targets(&bad).is_err());
    }
}
