//! silo-net's launcher: forked before silo-net confines itself, for what silo-net's own jail
//! forbids: running dnsmasq (execve), entering instances' network namespaces (setns) and
//! forking proxy forwarders. It keeps only the capabilities those need (bounding set cut at
//! start), sets no_new_privs, and takes only the requests below from silo-net, which has
//! validated them. It supervises what it started: a dnsmasq that dies is started again; all
//! of its children die with it (PR_SET_PDEATHSIG), and it leaves when silo-net's end closes.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use silo_proto::jail::wire;
use silo_proto::proxy::ProxySpec;

use crate::netns;

/// Capabilities the launcher (and so dnsmasq, before it drops to its user) may hold.
const CAPS: &[caps::Capability] = &[
    // dnsmasq: DHCP raw sockets, binding 53/67/547, SO_BINDTODEVICE, dropping to its user.
    caps::Capability::CAP_NET_ADMIN,
    caps::Capability::CAP_NET_RAW,
    caps::Capability::CAP_NET_BIND_SERVICE,
    caps::Capability::CAP_SETUID,
    caps::Capability::CAP_SETGID,
    // dnsmasq writes its lease file in silo's root-owned network directory.
    caps::Capability::CAP_CHOWN,
    // Entering an instance's network namespace (setns), and opening /proc/<init>/ns/net of a
    // process running under the instance's ids.
    caps::Capability::CAP_SYS_ADMIN,
    caps::Capability::CAP_SYS_PTRACE,
    // Reloading and stopping dnsmasq, which runs as its own user.
    caps::Capability::CAP_KILL,
    // Forwarders empty their bounding set before they give up root.
    caps::Capability::CAP_SETPCAP,
    // Forwarders take the instance's root directory as their own (chroot), so unix paths on
    // the instance's side resolve inside it, symlinks included.
    caps::Capability::CAP_SYS_CHROOT,
];

/// Identifies an instance's init the way silo-priv's record does: a recycled pid has another
/// start time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct InitRef {
    pub pid: i32,
    pub start_time: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Start (or restart with new arguments) the dnsmasq of a bridge.
    Dnsmasq {
        bridge: String,
        args: Vec<String>,
        log: String,
    },
    /// Make a bridge's dnsmasq re-read its host entries (SIGHUP).
    Reload { bridge: String },
    /// Stop a bridge's dnsmasq.
    StopDnsmasq { bridge: String },
    /// In an instance's network namespace: move a link back to silo-net's namespace under
    /// `new_name` (Some) or delete it (None).
    NetnsLink {
        init: InitRef,
        name: String,
        new_name: Option<String>,
    },
    /// In an instance's network namespace: give link `name` these addresses and default
    /// routes (a routed or ipvlan nic's fixed configuration).
    NetnsAddrs {
        init: InitRef,
        name: String,
        addrs: Vec<(std::net::IpAddr, u8)>,
        routes: Vec<netns::DefaultRoute>,
    },
    /// Start a forwarder for a proxy device, replacing one under the same key.
    Forward {
        key: String,
        init: InitRef,
        /// The uid and gid the forwarder runs as (the instance's root on the host).
        uid: u32,
        spec: ProxySpec,
    },
    /// Stop the forwarders whose key starts with this prefix.
    StopForwards { prefix: String },
    /// Bind and listen on a TCP address (silod's HTTPS API on a privileged port the server
    /// checked against the policy); the reply carries the listening socket.
    ListenTcp { addr: std::net::SocketAddr },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Done,
    Pid(i32),
    Failed(String),
}

#[derive(Debug)]
struct Dnsmasq {
    pid: i32,
    args: Vec<String>,
    log: String,
    started: Instant,
    restarts: u32,
}

#[derive(Debug, Default)]
struct State {
    dnsmasq: HashMap<String, Dnsmasq>,
    forwards: HashMap<String, i32>,
}

/// The launcher's main loop (in the forked child).
pub fn serve(sock: OwnedFd) -> ! {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    if let Err(e) = confine() {
        eprintln!("silo-net launcher: {e}");
        std::process::exit(2);
    }
    let mut st = State::default();
    loop {
        supervise(&mut st);
        if !wire::wait_readable(sock.as_fd(), 250) {
            continue;
        }
        let (req, _fds) = match wire::recv::<Request>(sock.as_fd()) {
            Ok(Some(x)) => x,
            Ok(None) => shutdown(&mut st),
            Err(e) => {
                let _ = wire::send(
                    sock.as_fd(),
                    &Reply::Failed(format!("bad request: {e}")),
                    &[],
                );
                continue;
            }
        };
        let (reply, fds) = match req {
            Request::ListenTcp { addr } => match listen_tcp(addr) {
                Ok(fd) => (Reply::Done, vec![fd]),
                Err(e) => (Reply::Failed(e), Vec::new()),
            },
            req => (
                handle(&mut st, req).unwrap_or_else(Reply::Failed),
                Vec::new(),
            ),
        };
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        if wire::send(sock.as_fd(), &reply, &borrowed).is_err() {
            shutdown(&mut st);
        }
    }
}

fn confine() -> Result<(), String> {
    silo_proto::jail::caps_drop::confine_caps(CAPS).map_err(|e| e.to_string())
}

fn shutdown(st: &mut State) -> ! {
    for d in st.dnsmasq.values() {
        kill(d.pid, libc::SIGTERM);
    }
    for pid in st.forwards.values() {
        kill(*pid, libc::SIGKILL);
    }
    std::process::exit(0)
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill with a pid this launcher forked (still unreaped, so not recycled).
    unsafe { libc::kill(pid, sig) };
}

/// Reaps children; restarts a dnsmasq that died on its own (at most once a second, and not
/// after ten quick deaths in a row, when its log says why).
fn supervise(st: &mut State) {
    for (pid, status) in silo_proto::jail::launcher::reap_children() {
        st.forwards.retain(|_, p| *p != pid);
        let Some(bridge) = st
            .dnsmasq
            .iter()
            .find(|(_, d)| d.pid == pid)
            .map(|(b, _)| b.clone())
        else {
            continue;
        };
        let Some(mut d) = st.dnsmasq.remove(&bridge) else {
            continue;
        };
        eprintln!("silo-net launcher: dnsmasq of {bridge} ended (status {status:#x})");
        if d.started.elapsed() > Duration::from_secs(30) {
            d.restarts = 0;
        }
        if d.restarts >= 10 {
            eprintln!(
                "silo-net launcher: giving up on dnsmasq of {bridge}; see {}",
                d.log
            );
            continue;
        }
        std::thread::sleep(Duration::from_millis(
            1000u64.saturating_sub(d.started.elapsed().as_millis() as u64),
        ));
        match spawn_dnsmasq(&d.args, &d.log) {
            Ok(pid) => {
                d.pid = pid;
                d.started = Instant::now();
                d.restarts += 1;
                st.dnsmasq.insert(bridge, d);
            }
            Err(e) => eprintln!("silo-net launcher: restarting dnsmasq of {bridge}: {e}"),
        }
    }
}

fn handle(st: &mut State, req: Request) -> Result<Reply, String> {
    match req {
        Request::Dnsmasq { bridge, args, log } => {
            if let Some(old) = st.dnsmasq.remove(&bridge) {
                stop_and_wait(old.pid, libc::SIGTERM);
            }
            let pid = spawn_dnsmasq(&args, &log)?;
            // dnsmasq reports bad options and busy ports at once: an early exit is a failure.
            std::thread::sleep(Duration::from_millis(150));
            let mut status = 0;
            // SAFETY: waitpid with WNOHANG on our child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
                return Err(format!("dnsmasq for {bridge} exited at start: {tail}"));
            }
            st.dnsmasq.insert(
                bridge,
                Dnsmasq {
                    pid,
                    args,
                    log,
                    started: Instant::now(),
                    restarts: 0,
                },
            );
            Ok(Reply::Pid(pid))
        }
        Request::Reload { bridge } => {
            if let Some(d) = st.dnsmasq.get(&bridge) {
                kill(d.pid, libc::SIGHUP);
            }
            Ok(Reply::Done)
        }
        Request::StopDnsmasq { bridge } => {
            if let Some(d) = st.dnsmasq.remove(&bridge) {
                stop_and_wait(d.pid, libc::SIGTERM);
            }
            Ok(Reply::Done)
        }
        Request::NetnsLink {
            init,
            name,
            new_name,
        } => {
            netns::in_instance_netns(init, |host| {
                netns::move_or_delete(&name, new_name.as_deref(), host)
            })?;
            Ok(Reply::Done)
        }
        Request::NetnsAddrs {
            init,
            name,
            addrs,
            routes,
        } => {
            netns::in_instance_netns(init, |_| netns::configure(&name, &addrs, &routes))?;
            Ok(Reply::Done)
        }
        Request::Forward {
            key,
            init,
            uid,
            spec,
        } => {
            if let Some(pid) = st.forwards.remove(&key) {
                stop_and_wait(pid, libc::SIGKILL);
            }
            let pid = crate::forwarder::spawn(init, uid, &spec)?;
            st.forwards.insert(key, pid);
            Ok(Reply::Pid(pid))
        }
        Request::ListenTcp { .. } => {
            Err("ListenTcp is answered, with its fd, by the serve loop".into())
        }
        Request::StopForwards { prefix } => {
            let keys: Vec<String> = st
                .forwards
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in keys {
                if let Some(pid) = st.forwards.remove(&k) {
                    stop_and_wait(pid, libc::SIGKILL);
                }
            }
            Ok(Reply::Done)
        }
    }
}

/// A listening TCP socket on `addr` (SO_REUSEADDR, as std sets it), close-on-exec.
fn listen_tcp(addr: std::net::SocketAddr) -> Result<OwnedFd, String> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(OwnedFd::from(l))
}

/// Signals a child and reaps it (SIGKILL after 2 s).
fn stop_and_wait(pid: i32, sig: i32) {
    kill(pid, sig);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        // SAFETY: waitpid with WNOHANG on our child.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if r == pid || r < 0 {
            return;
        }
        if Instant::now() > deadline {
            kill(pid, libc::SIGKILL);
            // SAFETY: waitpid on our child, which SIGKILL ends.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_dnsmasq(args: &[String], log: &str) -> Result<i32, String> {
    use std::os::unix::process::CommandExt;
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("dnsmasq log {log}: {e}"))?;
    let err = logf.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new("/usr/sbin/dnsmasq");
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(logf)
        .stderr(err)
        .env_clear();
    // SAFETY: the closure only calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting /usr/sbin/dnsmasq: {e}"))?;
    Ok(child.id() as i32)
}

/// Whether a pid's start time still matches (it has not been recycled).
pub fn same_process(init: InitRef) -> bool {
    start_time(init.pid) == Some(init.start_time)
}

pub use silo_proto::procinfo::start_time;

/// Opens an instance init's network namespace, checking it is still that process.
pub fn open_netns(init: InitRef) -> Result<OwnedFd, String> {
    let f = std::fs::File::open(format!("/proc/{}/ns/net", init.pid))
        .map_err(|e| format!("opening the instance's network namespace: {e}"))?;
    if !same_process(init) {
        return Err("the instance's init is gone".into());
    }
    Ok(OwnedFd::from(f))
}
