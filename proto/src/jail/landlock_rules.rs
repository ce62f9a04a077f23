//! Landlock rulesets, required to be fully enforced (fail closed, never best effort).

use std::path::PathBuf;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The ABI silo is written against (this host's kernel has ABI 7).
pub const ABI_USED: ABI = ABI::V6;

/// Landlock could not be enforced as declared.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// Building or enforcing the ruleset failed.
    #[error("landlock: {0}")]
    Ruleset(String),
    /// The kernel enforced less than asked.
    #[error("landlock: not fully enforced ({0}); refusing to run with a weaker sandbox")]
    Partial(String),
}

/// What a process may reach through the filesystem and network.
#[derive(Debug, Clone, Default)]
pub struct LandlockSpec {
    /// None: the process mounts or pivots, which landlock's fs rules forbid; only net and scope
    /// rules apply. Some: all fs access is handled and only these paths are reachable.
    pub fs: Option<FsRules>,
    /// Deny signalling processes outside the domain (off for silo-priv, which signals the
    /// containers a previous incarnation of itself started).
    pub scope_signal: bool,
    /// TCP: nothing at all unless set.
    pub net: NetRules,
}

/// Which TCP ports a process may bind.
#[derive(Debug, Clone, Default)]
pub enum TcpBind {
    /// None at all.
    #[default]
    Nothing,
    /// These ports, e.g. `1024..=65535` for an API listener on any unprivileged port (a
    /// privileged port stays refused even where `ip_unprivileged_port_start` was lowered).
    /// Landlock takes one rule per port, about 1.8 µs each: 1024..=65535 costs some 115 ms.
    Ports(Vec<std::ops::RangeInclusive<u16>>),
    /// Left to the kernel: any port the process's capabilities allow (without
    /// CAP_NET_BIND_SERVICE, the unprivileged ones).
    Unhandled,
}

/// What a process may do with TCP. Landlock's TCP rules are per port: a port not listed here
/// cannot be bound (or connected to, when connecting is handled).
#[derive(Debug, Clone, Default)]
pub struct NetRules {
    /// Which TCP ports may be bound.
    pub bind_tcp: TcpBind,
    /// Connect to any TCP port (image servers and remotes are at any port the user names);
    /// when false no TCP connect is allowed at all.
    pub connect_tcp_any: bool,
}

/// Filesystem rules.
#[derive(Debug, Clone, Default)]
pub struct FsRules {
    /// Paths readable (and, for directories, listable and executable) beneath.
    pub read: Vec<PathBuf>,
    /// Paths fully writable beneath.
    pub write: Vec<PathBuf>,
}

impl LandlockSpec {
    /// Restricts the calling thread and its future children. Returns a description.
    pub fn restrict_self(&self) -> Result<String, LandlockError> {
        let abi = ABI_USED;
        let e = |x: &dyn std::fmt::Display| LandlockError::Ruleset(x.to_string());
        let mut scopes = landlock::make_bitflags!(Scope::{AbstractUnixSocket});
        if self.scope_signal {
            scopes |= Scope::Signal;
        }
        // An access left unhandled is allowed everywhere.
        let mut net_handled = AccessNet::from_all(abi);
        if self.net.connect_tcp_any {
            net_handled &= !AccessNet::ConnectTcp;
        }
        if matches!(self.net.bind_tcp, TcpBind::Unhandled) {
            net_handled &= !AccessNet::BindTcp;
        }
        let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
        if !net_handled.is_empty() {
            ruleset = ruleset.handle_access(net_handled).map_err(|x| e(&x))?;
        }
        let mut ruleset = ruleset.scope(scopes).map_err(|x| e(&x))?;
        let mut what = String::from("net+scope");
        if self.fs.is_some() {
            ruleset = ruleset
                .handle_access(AccessFs::from_all(abi))
                .map_err(|x| e(&x))?;
            what = String::from("fs+net+scope");
        }
        let mut created = ruleset.create().map_err(|x| e(&x))?;
        let ranges = match &self.net.bind_tcp {
            TcpBind::Ports(r) => r.as_slice(),
            TcpBind::Nothing | TcpBind::Unhandled => &[],
        };
        let ports = ranges.iter().flat_map(|r| r.clone());
        created = created
            .add_rules(
                ports.map(|p| Ok::<_, landlock::RulesetError>(NetPort::new(p, AccessNet::BindTcp))),
            )
            .map_err(|x| e(&x))?;
        if let Some(fs) = &self.fs {
            created = created
                .add_rules(path_beneath_rules(&fs.read, AccessFs::from_read(abi)))
                .map_err(|x| e(&x))?
                .add_rules(path_beneath_rules(&fs.write, AccessFs::from_all(abi)))
                .map_err(|x| e(&x))?;
        }
        let status = created.restrict_self().map_err(|x| e(&x))?;
        match status.ruleset {
            RulesetStatus::FullyEnforced => {}
            other => return Err(LandlockError::Partial(format!("{other:?}"))),
        }
        if self.fs.is_none() {
            what.push_str(" fully enforced (no fs rules: this process mounts)");
        } else {
            what.push_str(" fully enforced");
        }
        Ok(what)
    }
}

#[cfg(test)]
mod tests {
    use super::{LandlockSpec, NetRules, TcpBind};
    use std::net::{TcpListener, TcpStream};

    /// Landlock applies to the thread that restricts itself (and threads it starts), so the
    /// test restricts a thread of its own and leaves the harness's threads alone.
    #[test]
    fn tcp_bind_is_limited_to_the_listed_ports_and_connect_is_free() {
        let free = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral");
        let allowed = free.local_addr().expect("addr").port();
        drop(free);
        let peer = TcpListener::bind("127.0.0.1:0").expect("peer listener");
        let peer_addr = peer.local_addr().expect("peer addr");
        let outcome = std::thread::spawn(move || {
            let spec = LandlockSpec {
                fs: None,
                scope_signal: false,
                net: NetRules {
                    bind_tcp: TcpBind::Ports(vec![allowed..=allowed]),
                    connect_tcp_any: true,
                },
            };
            spec.restrict_self().expect("restrict");
            let in_range = TcpListener::bind(("127.0.0.1", allowed)).map(|_| ());
            let outside = TcpListener::bind(("127.0.0.1", allowed.wrapping_add(1).max(1025)))
                .map(|_| ())
                .map_err(|e| e.kind());
            let privileged = TcpListener::bind("127.0.0.1:1")
                .map(|_| ())
                .map_err(|e| e.kind());
            let connect = TcpStream::connect(peer_addr).map(|_| ());
            (in_range.is_ok(), outside, privileged, connect.is_ok())
        })
        .join()
        .expect("join");
        assert!(outcome.0, "bind on the listed port");
        assert_eq!(
            outcome.1,
            Err(std::io::ErrorKind::PermissionDenied),
            "bind on another port"
        );
        assert_eq!(
            outcome.2,
            Err(std::io::ErrorKind::PermissionDenied),
            "bind on port 1"
        );
        assert!(outcome.3, "connect to any port");
        drop(peer);
    }
}
