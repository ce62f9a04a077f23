//! The etcd keeper: the one process that may start etcd.
//!
//! silod may not `execve` (its seccomp filter kills it), so in its root phase it forks this
//! small child, which drops to the same unprivileged user and enters a jail of its own: no
//! capabilities, no_new_privs, landlock with the state dir read-write and, beyond silod's
//! read-only paths, exactly `/usr/bin/etcd` and the C library it links executable. It then
//! serves one request at a time on a socketpair: start etcd with these settings, stop it.
//! It builds etcd's argv itself from typed settings it checks (a member name, IP addresses
//! and ports, the peers' names and addresses), so a compromised silod gains nothing here it
//! did not have: the keeper's uid is silod's, and etcd's only files are beneath the state
//! dir. It restarts etcd when etcd dies, and stops it and exits when silod's end closes.
//!
//! Not confined by seccomp: etcd is a Go program whose runtime's syscalls change with its
//! version, and a filter that kills it would take the cluster's database down; landlock and
//! the unprivileged uid are its walls (`CONFINEMENT.md`).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use silo_proto::jail::landlock_rules::{FsRules, NetRules, TcpBind};
use silo_proto::jail::{existing, LandlockSpec};

/// Where etcd lives on Debian (`etcd-server`).
pub const ETCD: &str = "/usr/bin/etcd";

/// etcd's Raft heartbeat, in ms: members on one LAN answer within a few ms.
pub const HEARTBEAT_MS: u32 = 100;
/// etcd's election timeout, in ms (10 heartbeats, etcd's advice): a leader cut off is
/// replaced about a second later.
pub const ELECTION_MS: u32 = 1000;
/// The smallest keepalive interval etcd accepts from a client; silod's client pings every
/// [`crate::store::etcd::KEEPALIVE`] (5 s), above it, so etcd never drops it as abusive.
pub const GRPC_KEEPALIVE_MIN: &str = "2s";

/// How to run this member's etcd.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EtcdLaunch {
    /// The member's name (etcd's `--name`).
    pub name: String,
    /// The address etcd listens on, for clients and peers.
    pub ip: IpAddr,
    /// The client port.
    pub client_port: u16,
    /// The peer port.
    pub peer_port: u16,
    /// Every database member at start, this one included: (name, peer address).
    pub initial_cluster: Vec<(String, SocketAddr)>,
    /// A new cluster (the bootstrap member) or joining an existing one.
    pub new_cluster: bool,
}

/// What silod asks the keeper.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Start etcd (stopping one that runs first).
    Start(EtcdLaunch),
    /// Stop etcd and forget its settings.
    Stop,
    /// Stop etcd and remove its data dir (the member left the database).
    Wipe,
}

/// Errors of the keeper, on either side.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// The settings are not acceptable.
    #[error("etcd settings refused: {0}")]
    Refused(String),
    /// etcd could not be started.
    #[error("starting etcd: {0}")]
    Start(String),
    /// The keeper is gone or did not answer.
    #[error("the etcd keeper: {0}")]
    Channel(String),
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !n.starts_with(['-', '.'])
}

impl EtcdLaunch {
    /// Checks the settings; the keeper trusts nothing else of them.
    pub fn check(&self) -> Result<(), KeeperError> {
        if !valid_name(&self.name) {
            return Err(KeeperError::Refused(format!(
                "member name {:?}: letters, digits, '-', '_' and '.' only, 1 to 63",
                self.name
            )));
        }
        if self.ip.is_unspecified() || self.ip.is_multicast() {
            return Err(KeeperError::Refused(format!(
                "etcd must listen on one address, not {}",
                self.ip
            )));
        }
        if self.client_port < 1024 || self.peer_port < 1024 || self.client_port == self.peer_port {
            return Err(KeeperError::Refused(format!(
                "ports {} and {}: two different ports from 1024 up",
                self.client_port, self.peer_port
            )));
        }
        if self.initial_cluster.is_empty() || self.initial_cluster.len() > 7 {
            return Err(KeeperError::Refused(
                "the initial cluster has 1 to 7 members".into(),
            ));
        }
        let mut me = false;
        for (n, a) in &self.initial_cluster {
            if !valid_name(n) {
                return Err(KeeperError::Refused(format!("peer name {n:?}")));
            }
            if n == &self.name {
                me = *a == SocketAddr::new(self.ip, self.peer_port);
            }
        }
        if !me {
            return Err(KeeperError::Refused(format!(
                "the initial cluster does not hold {} at {}",
                self.name,
                SocketAddr::new(self.ip, self.peer_port)
            )));
        }
        Ok(())
    }

    /// etcd's command line; certificates and data are at fixed places beneath `dir`
    /// (`<state>/cluster`).
    pub fn argv(&self, dir: &Path) -> Vec<String> {
        let url = |a: SocketAddr| format!("https://{a}");
        let client = url(SocketAddr::new(self.ip, self.client_port));
        let peer = url(SocketAddr::new(self.ip, self.peer_port));
        let initial = self
            .initial_cluster
            .iter()
            .map(|(n, a)| format!("{n}={}", url(*a)))
            .collect::<Vec<_>>()
            .join(",");
        let p = |f: &str| dir.join(f).display().to_string();
        let state = if self.new_cluster { "new" } else { "existing" };
        vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", p("etcd")),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial}"),
            format!("--initial-cluster-state={state}"),
            "--initial-cluster-token=silo".into(),
            format!("--cert-file={}", p(super::pki::MEMBER_CERT)),
            format!("--key-file={}", p(super::pki::MEMBER_KEY)),
            format!("--trusted-ca-file={}", p(super::pki::CA_CERT)),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={}", p(super::pki::MEMBER_CERT)),
            format!("--peer-key-file={}", p(super::pki::MEMBER_KEY)),
            format!("--peer-trusted-ca-file={}", p(super::pki::CA_CERT)),
            "--peer-client-cert-auth=true".into(),
            // 3.4 defaults to off: a member returning from a partition would otherwise
            // force an election with its higher term and unseat a healthy leader.
            "--pre-vote=true".into(),
            format!("--heartbeat-interval={HEARTBEAT_MS}"),
            format!("--election-timeout={ELECTION_MS}"),
            format!("--grpc-keepalive-min-time={GRPC_KEEPALIVE_MIN}"),
            "--enable-v2=false".into(),
            "--auto-compaction-mode=revision".into(),
            "--auto-compaction-retention=10000".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ]
    }
}

/// silod's end: one request at a time.
#[derive(Debug)]
pub struct Keeper {
    sock: Mutex<BufReader<UnixStream>>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Ok,
    Err(String),
}

impl Keeper {
    /// Sends `req` and waits for the answer (blocking: call from a blocking thread).
    pub fn call(&self, req: &Request) -> Result<(), KeeperError> {
        let mut s = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        let mut line =
            serde_json::to_string(req).map_err(|e| KeeperError::Channel(e.to_string()))?;
        line.push('\n');
        s.get_mut()
            .write_all(line.as_bytes())
            .map_err(|e| KeeperError::Channel(format!("sending: {e}")))?;
        let mut answer = String::new();
        s.read_line(&mut answer)
            .map_err(|e| KeeperError::Channel(format!("reading: {e}")))?;
        match serde_json::from_str::<Reply>(&answer) {
            Ok(Reply::Ok) => Ok(()),
            Ok(Reply::Err(m)) => Err(KeeperError::Start(m)),
            Err(_) if answer.is_empty() => Err(KeeperError::Channel("it exited".into())),
            Err(e) => Err(KeeperError::Channel(format!("bad answer: {e}"))),
        }
    }

    /// Async wrapper of [`Keeper::call`].
    pub async fn request(self: &Arc<Self>, req: Request) -> Result<(), KeeperError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.call(&req))
            .await
            .map_err(|e| KeeperError::Channel(e.to_string()))?
    }
}

/// The keeper's jail: silod's read-only paths plus etcd and the C library, the state dir
/// read-write, TCP bind and connect on unprivileged ports (etcd's client and peer ports).
fn landlock(state_dir: &Path) -> LandlockSpec {
    let mut read = existing(&[
        ETCD,
        "/lib",
        "/lib64",
        "/usr/lib",
        "/etc/ld.so.cache",
        "/dev/null",
        "/dev/urandom",
    ]);
    // Name resolution's files, should a peer URL ever name a host.
    read.extend(existing(&[
        "/proc",
        "/etc/hosts",
        "/etc/nsswitch.conf",
        "/etc/resolv.conf",
        "/etc/host.conf",
        "/etc/gai.conf",
    ]));
    read.retain(|p| !p.starts_with(state_dir));
    LandlockSpec {
        fs: Some(FsRules {
            read,
            write: vec![state_dir.to_path_buf()],
        }),
        scope_signal: true,
        net: NetRules {
            bind_tcp: TcpBind::Unhandled,
            connect_tcp_any: true,
        },
    }
}

/// Forks the keeper (root phase: before any thread exists). The child drops to `uid`/`gid`
/// and never returns.
pub fn spawn(
    state_dir: &Path,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> anyhow::Result<Keeper> {
    let (parent, child) = UnixStream::pair()?;
    // SAFETY: silod is single-threaded here (the runtime is built after the drop), so the
    // child may run any code; it only ever calls `keeper_main`, which exits.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(child);
            Ok(Keeper {
                sock: Mutex::new(BufReader::new(parent)),
            })
        }
        nix::unistd::ForkResult::Child => {
            drop(parent);
            let code = match keeper_main(child, state_dir, uid, gid) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("silod etcd keeper: {e:#}");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// Moves `sock` to fd 3 and closes every other fd above 2: the keeper holds nothing of
/// silod's (state dir fd, helper sockets, the API socket).
fn only_socket(sock: UnixStream) -> anyhow::Result<UnixStream> {
    let raw = sock.as_raw_fd();
    if raw != 3 {
        // SAFETY: dup2 onto fd 3, which this fresh child owns whatever it held: it is
        // closed with the rest below unless it is the copy made here.
        if unsafe { libc::dup2(raw, 3) } < 0 {
            anyhow::bail!("dup2: {}", std::io::Error::last_os_error());
        }
        drop(sock);
    } else {
        std::mem::forget(sock);
    }
    // SAFETY: close_range on fds this process owns and will not use again; fd 3 (the
    // socket) is kept.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) };
    if r != 0 {
        anyhow::bail!("close_range: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd 3 is the dup of the socket made above and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    Ok(UnixStream::from(fd))
}

struct Running {
    want: Option<EtcdLaunch>,
    child: Option<Child>,
}

fn keeper_main(
    sock: UnixStream,
    state_dir: &Path,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> anyhow::Result<()> {
    let sock = only_socket(sock)?;
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    silo_proto::jail::user::drop_to(uid, gid)?;
    silo_proto::jail::caps_drop::keep_only(&[])?;
    landlock(state_dir).restrict_self()?;
    let dir = state_dir.join("cluster");
    let state = Arc::new(Mutex::new(Running {
        want: None,
        child: None,
    }));
    {
        let state = state.clone();
        let dir = dir.clone();
        std::thread::spawn(move || supervise(&state, &dir));
    }
    let mut reader = BufReader::new(sock.try_clone()?);
    let mut out = sock;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::Err(format!("bad request: {e}")),
            Ok(req) => match handle(&state, &dir, req) {
                Ok(()) => Reply::Ok,
                Err(e) => Reply::Err(e.to_string()),
            },
        };
        let mut s = serde_json::to_string(&reply)?;
        s.push('\n');
        out.write_all(s.as_bytes())?;
    }
    // silod is gone: so is its database.
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    st.want = None;
    stop(&mut st);
    Ok(())
}

fn handle(state: &Mutex<Running>, dir: &Path, req: Request) -> Result<(), KeeperError> {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    match req {
        Request::Start(l) => {
            l.check()?;
            stop(&mut st);
            let child = start(&l, dir)?;
            st.child = Some(child);
            st.want = Some(l);
        }
        Request::Stop => {
            st.want = None;
            stop(&mut st);
        }
        Request::Wipe => {
            st.want = None;
            stop(&mut st);
            let data = dir.join("etcd");
            if data.exists() {
                std::fs::remove_dir_all(&data)
                    .map_err(|e| KeeperError::Start(format!("removing {}: {e}", data.display())))?;
            }
        }
    }
    Ok(())
}

fn start(l: &EtcdLaunch, dir: &Path) -> Result<Child, KeeperError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"))
        .map_err(|e| KeeperError::Start(format!("etcd.log: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| KeeperError::Start(e.to_string()))?;
    let mut cmd = Command::new(ETCD);
    cmd.args(l.argv(dir))
        .env_clear()
        .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: prctl in the child between fork and exec is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| KeeperError::Start(format!("{ETCD}: {e}")))
}

fn stop(st: &mut Running) {
    if let Some(mut c) = st.child.take() {
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Restarts etcd when it died while wanted, at most once a second.
fn supervise(state: &Mutex<Running>, dir: &Path) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let dead = match st.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => st.want.is_some(),
        };
        if !dead {
            continue;
        }
        st.child = None;
        if let Some(l) = st.want.clone() {
            // Once it joined, a restart must not try to join again.
            let mut l = l;
            if dir.join("etcd").join("member").exists() {
                l.new_cluster = false;
            }
            match start(&l, dir) {
                Ok(c) => st.child = Some(c),
                Err(e) => eprintln!("silod etcd keeper: restarting etcd: {e}"),
            }
        }
    }
}

/// Where a member's cluster files live.
pub fn cluster_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> EtcdLaunch {
        EtcdLaunch {
            name: "m1".into(),
            ip: "10.1.2.3".parse().unwrap(),
            client_port: 8444,
            peer_port: 8445,
            initial_cluster: vec![("m1".into(), "10.1.2.3:8445".parse().unwrap())],
            new_cluster: true,
        }
    }

    #[test]
    fn settings_are_checked_before_any_argv_is_built() {
        assert!(launch().check().is_ok());
        let mut l = launch();
        l.name = "--data-dir=/etc".into();
        assert!(l.check().is_err());
        let mut l = launch();
        l.initial_cluster[0].0 = "a,b=https://1.2.3.4:1".into();
        assert!(l.check().unwrap_err().to_string().contains("peer name"));
        let mut l = launch();
        l.initial_cluster = vec![("m2".into(), "10.1.2.4:8445".parse().unwrap())];
        assert!(l
            .check()
            .unwrap_err()
            .to_string()
            .contains("does not hold m1"));
        let mut l = launch();
        l.ip = "0.0.0.0".parse().unwrap();
        assert!(l.check().is_err());
        let mut l = launch();
        l.peer_port = 80;
        assert!(l.check().is_err());
    }

    #[test]
    fn argv_names_pre_vote_mutual_tls_and_the_timeouts() {
        let a = launch().argv(Path::new("/s/cluster"));
        for want in [
            "--pre-vote=true",
            "--client-cert-auth=true",
            "--peer-client-cert-auth=true",
            "--initial-cluster=m1=https://10.1.2.3:8445",
            "--listen-client-urls=https://10.1.2.3:8444",
            "--data-dir=/s/cluster/etcd",
            "--heartbeat-interval=100",
            "--election-timeout=1000",
            "--grpc-keepalive-min-time=2s",
            "--initial-cluster-state=new",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
    }
}
