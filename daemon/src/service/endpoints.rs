//! The network endpoint (`core.https_address`): which address silod listens on, bound here and
//! handed to the TLS server the wiring installed. A change binds the new address before
//! anything else, so a bad or busy one leaves the old listener as it was.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::helpers::{HelperKind, Helpers};
use crate::model::config::parse_https_address;
use crate::service::DomainError;

/// Serves TLS on a bound listener until the token is cancelled (installed by the wiring, which
/// knows the router and the server's certificate).
pub type ServeFn = Arc<dyn Fn(std::net::TcpListener, CancellationToken) + Send + Sync>;

#[derive(Default)]
struct Current {
    /// The configured value and the socket address it is bound to.
    bound: Option<(String, SocketAddr)>,
    stop: Option<CancellationToken>,
    /// A duplicate of the served listener's fd: shutting it down stops the listening socket
    /// at once, before the accept task notices the cancellation, so the port is free for the
    /// next bind as soon as [`Https::switch`] returns.
    closer: Option<std::net::TcpListener>,
}

/// The HTTPS endpoint; clone freely.
#[derive(Clone, Default)]
pub struct Https {
    current: Arc<Mutex<Current>>,
    serve: Arc<OnceLock<ServeFn>>,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cur = self.current.lock().map(|c| c.bound.clone()).ok().flatten();
        f.debug_struct("Https").field("bound", &cur).finish()
    }
}

/// A listener bound for a new address, not serving yet.
#[derive(Debug)]
pub struct Bound {
    value: String,
    addr: SocketAddr,
    listener: std::net::TcpListener,
}

fn socket_addr(value: &str) -> Result<SocketAddr, DomainError> {
    let (host, port) = parse_https_address(value)
        .map_err(|e| DomainError::BadRequest(format!("core.https_address {value:?}: {e}")))?;
    Ok(SocketAddr::new(
        host.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        port,
    ))
}

/// Binds `value` (a `core.https_address`) on a port from 1024 up, as silod may itself.
pub fn bind(value: &str) -> Result<Bound, DomainError> {
    let addr = socket_addr(value)?;
    if addr.port() < 1024 {
        return Err(DomainError::BadRequest(format!(
            "core.https_address {value:?}: port {} is privileged: silod binds ports from 1024 up itself, and a lower one only when the root policy lists it in https_privileged_ports",
            addr.port()
        )));
    }
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        DomainError::BadRequest(format!(
            "cannot listen on {addr} (core.https_address {value:?}): {e}"
        ))
    })?;
    finish(value, addr, listener)
}

/// Binds `value`; a port below 1024 is bound by silo-net, if the root policy lists it in
/// `https_privileged_ports`, and handed over.
pub async fn bind_any(helpers: &Helpers, value: &str) -> Result<Bound, DomainError> {
    let addr = socket_addr(value)?;
    if addr.port() >= 1024 {
        return bind(value);
    }
    let refused = |e: String| {
        DomainError::BadRequest(format!(
            "cannot listen on {addr} (core.https_address {value:?}): {e}"
        ))
    };
    let ticket = helpers
        .net
        .bind_api_listener(addr)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let fd = helpers
        .take_fds(HelperKind::Net, ticket)
        .await
        .map_err(refused)?
        .pop()
        .ok_or_else(|| refused("silo-net sent no socket".into()))?;
    let listener = std::net::TcpListener::from(fd);
    // What arrived must be a TCP socket bound to the port asked for: a mix-up here would
    // serve the API somewhere else.
    match listener.local_addr() {
        Ok(a) if a.port() == addr.port() => {}
        other => return Err(refused(format!("silo-net handed over {other:?}"))),
    }
    finish(value, addr, listener)
}

fn finish(
    value: &str,
    addr: SocketAddr,
    listener: std::net::TcpListener,
) -> Result<Bound, DomainError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| DomainError::Internal(format!("listener on {addr}: {e}")))?;
    let addr = listener.local_addr().unwrap_or(addr);
    Ok(Bound {
        value: value.to_string(),
        addr,
        listener,
    })
}

impl Https {
    /// Installs the server (once, at start).
    pub fn install(&self, serve: ServeFn) {
        let _ = self.serve.set(serve);
    }

    /// Whether `value` is what is bound now (no rebind needed).
    pub fn is_current(&self, value: Option<&str>) -> bool {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        cur.bound.as_ref().map(|(v, _)| v.as_str()) == value
    }

    /// Binds `value` to replace what is bound now. When the new address overlaps the old on
    /// the same port (`[::]:8443` to `127.0.0.1:8443`), the old listener must close first: it
    /// is stopped, the new one bound, and on failure the old one bound and served again, so
    /// a refused change leaves the endpoint as it was. Returns the new listener, and the old
    /// value when it was stopped (for [`Https::restore`] if what follows fails).
    pub async fn bind_replacing(
        &self,
        helpers: &Helpers,
        value: &str,
    ) -> Result<(Bound, Option<String>), DomainError> {
        let first = match bind_any(helpers, value).await {
            Ok(b) => return Ok((b, None)),
            Err(e) => e,
        };
        let (old_value, old_port) = {
            let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            match &cur.bound {
                Some((v, a)) => (v.clone(), a.port()),
                None => return Err(first),
            }
        };
        let same_port = parse_https_address(value).is_ok_and(|(_, p)| p == old_port);
        if !same_port {
            return Err(first);
        }
        self.switch(None);
        match bind_any(helpers, value).await {
            Ok(b) => Ok((b, Some(old_value))),
            Err(e) => {
                self.restore(helpers, &old_value).await;
                Err(e)
            }
        }
    }

    /// Serves `value` again after a change that stopped it failed.
    pub async fn restore(&self, helpers: &Helpers, value: &str) {
        match bind_any(helpers, value).await {
            Ok(b) => self.switch(Some(b)),
            Err(e) => tracing::error!(error = %e, "could not listen again on the old address"),
        }
    }

    /// Serves `next` instead of what is served now; `None` stops listening. The old listener
    /// closes at once; connections already open finish.
    pub fn switch(&self, next: Option<Bound>) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stop) = cur.stop.take() {
            stop.cancel();
        }
        if let Some(l) = cur.closer.take() {
            use std::os::fd::AsRawFd;
            // A listening socket shut down leaves LISTEN at once (accept then fails and the
            // task ends); with SO_REUSEADDR on both, the same port binds again.
            if let Err(e) =
                nix::sys::socket::shutdown(l.as_raw_fd(), nix::sys::socket::Shutdown::Both)
            {
                tracing::warn!(error = %e, "shutting down the old HTTPS listener");
            }
        }
        cur.bound = None;
        if let Some(b) = next {
            let Some(serve) = self.serve.get() else {
                tracing::warn!(addr = %b.addr, "no TLS server installed; not listening");
                return;
            };
            let stop = CancellationToken::new();
            tracing::info!(addr = %b.addr, "listening for HTTPS");
            cur.closer = b.listener.try_clone().ok();
            serve(b.listener, stop.clone());
            cur.bound = Some((b.value, b.addr));
            cur.stop = Some(stop);
        }
    }

    /// The addresses clients reach the API on, as LXD lists them (`environment.addresses`,
    /// a token's `addresses`). A wildcard lists loopback: silod's jail does not enumerate
    /// the host's interfaces.
    pub fn addresses(&self) -> Vec<String> {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let Some((_, addr)) = cur.bound else {
            return Vec::new();
        };
        if addr.ip().is_unspecified() {
            let port = addr.port();
            let mut v = vec![format!("127.0.0.1:{port}")];
            if addr.is_ipv6() {
                v.push(format!("[::1]:{port}"));
            }
            v
        } else {
            vec![addr.to_string()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_refuses_low_ports_and_busy_ones() {
        let e = bind("127.0.0.1:443").expect_err("low port");
        assert!(e.to_string().contains("https_privileged_ports"), "{e}");
        let b = bind("127.0.0.1:0").expect_err("port 0 is not a port");
        assert!(matches!(b, DomainError::BadRequest(_)));
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        if port >= 1024 {
            let e = bind(&format!("127.0.0.1:{port}")).expect_err("busy");
            assert!(e.to_string().contains("cannot listen on"), "{e}");
        }
    }
}
