//! Playing a compromised silod: start a helper exactly as silod does (fds 3 and 4, same
//! arguments, production jail) and talk to it directly, with typed clients for well-formed but
//! hostile requests and "raw" mirror services (same wire layout, `String` where the real
//! service has a validated name) for requests silod's own types could never build.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use silo_proto::error::HelperResult;
use silo_proto::net::BridgeInfo;
use silo_proto::privileged::CgroupInfo;
use silo_proto::store::{PoolDriver, PoolInfo};
use silo_proto::HelperHello;

/// The store service with unvalidated names (mirrors `silo_proto::store::Store`'s first calls).
#[tarpc::service]
pub trait RawStore {
    /// Same slot as `hello`.
    async fn hello() -> HelperHello;
    /// Same slot as `create_pool`, with a raw name.
    async fn create_pool(pool: String, driver: PoolDriver) -> HelperResult<PoolInfo>;
}

/// The priv service with unvalidated names.
#[tarpc::service]
pub trait RawPriv {
    /// Same slot as `hello`.
    async fn hello() -> HelperHello;
    /// Same slot as `cgroup_layout`.
    async fn cgroup_layout() -> HelperResult<silo_proto::privileged::CgroupLayout>;
    /// Same slot as `create_cgroup`, with a raw name.
    async fn create_cgroup(instance: String) -> HelperResult<CgroupInfo>;
}

/// The net service with unvalidated names.
#[tarpc::service]
pub trait RawNet {
    /// Same slot as `hello`.
    async fn hello() -> HelperHello;
    /// Same slot as `ensure_bridge`, with raw values.
    async fn ensure_bridge(spec: RawBridgeSpec) -> HelperResult<BridgeInfo>;
}

/// `silo_proto::net::BridgeSpec`'s wire layout with raw strings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RawBridgeSpec {
    /// name
    pub name: String,
    /// ipv4
    pub ipv4: Option<String>,
    /// ipv6
    pub ipv6: Option<String>,
    /// ipv4_nat
    pub ipv4_nat: bool,
    /// ipv6_nat
    pub ipv6_nat: bool,
    /// ipv4_dhcp
    pub ipv4_dhcp: bool,
    /// ipv6_dhcp
    pub ipv6_dhcp: bool,
    /// ipv6_dhcp_stateful
    pub ipv6_dhcp_stateful: bool,
    /// dhcp_expiry
    pub dhcp_expiry: u32,
    /// mtu
    pub mtu: Option<u32>,
    /// dns_domain
    pub dns_domain: String,
    /// dns
    pub dns: bool,
    /// ipv4_dhcp_ranges, as (first, last) octets
    pub ipv4_dhcp_ranges: Vec<([u8; 4], [u8; 4])>,
    /// ipv6_dhcp_ranges, as (first, last) octets
    pub ipv6_dhcp_ranges: Vec<([u8; 16], [u8; 16])>,
}

impl RawBridgeSpec {
    /// A plain bridge with raw name and IPv4 CIDR.
    pub fn new(name: &str, ipv4: Option<&str>) -> Self {
        RawBridgeSpec {
            name: name.into(),
            ipv4: ipv4.map(str::to_string),
            ipv6: None,
            ipv4_nat: false,
            ipv6_nat: false,
            ipv4_dhcp: true,
            ipv6_dhcp: false,
            ipv6_dhcp_stateful: false,
            dhcp_expiry: 3600,
            mtu: None,
            dns_domain: "silo".into(),
            dns: true,
            ipv4_dhcp_ranges: Vec::new(),
            ipv6_dhcp_ranges: Vec::new(),
        }
    }
}

/// A helper started by the test.
#[derive(Debug)]
pub struct Helper {
    /// The process.
    pub child: Child,
    /// Our end of its RPC socket.
    pub rpc: Option<OwnedFd>,
    /// Our end of its fd channel.
    pub fds: Option<OwnedFd>,
    /// Its stderr.
    pub log: PathBuf,
}

impl Helper {
    /// Starts `name` for `state_dir`; `own_netns` puts it in a fresh network namespace so
    /// network tests never touch the host's interfaces.
    pub fn spawn(
        name: &str,
        state_dir: &Path,
        policy: &Path,
        own_netns: bool,
        extra: &[&str],
    ) -> Helper {
        Helper::spawn_inner(name, state_dir, policy, own_netns, extra, None)
    }

    /// Starts `name` in a mount namespace of its own where the files `subuid` and `subgid`
    /// are bind-mounted over /etc/subuid and /etc/subgid: how a host with those entries looks
    /// to the helper, with the host's own files untouched.
    pub fn spawn_with_subids(
        name: &str,
        state_dir: &Path,
        policy: &Path,
        subuid: &Path,
        subgid: &Path,
    ) -> Helper {
        Helper::spawn_inner(
            name,
            state_dir,
            policy,
            false,
            &[],
            Some((subuid.to_path_buf(), subgid.to_path_buf())),
        )
    }

    fn spawn_inner(
        name: &str,
        state_dir: &Path,
        policy: &Path,
        own_netns: bool,
        extra: &[&str],
        subids: Option<(PathBuf, PathBuf)>,
    ) -> Helper {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        crate::require_root();
        let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("path");
        // Made before the fork: the child only makes system calls.
        let binds: Vec<(CString, CString)> = subids
            .iter()
            .flat_map(|(u, g)| {
                [
                    (cstr(u), cstr(Path::new("/etc/subuid"))),
                    (cstr(g), cstr(Path::new("/etc/subgid"))),
                ]
            })
            .collect();
        let root = cstr(Path::new("/"));
        std::fs::create_dir_all(state_dir).expect("state dir");
        let log = PathBuf::from(format!("{}.{name}.log", state_dir.display()));
        let logf = std::fs::File::create(&log).expect("log");
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
        let (fd_theirs, fd_ours) = silo_proto::fdpass::pair().expect("fd pair");
        let theirs: OwnedFd = theirs.into();
        let (r, f) = (theirs.as_raw_fd(), fd_theirs.as_raw_fd());
        let mut cmd = Command::new(crate::bin(name));
        cmd.arg("--state-dir")
            .arg(state_dir)
            .arg("--policy")
            .arg(policy)
            .args(extra);
        cmd.stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf);
        // SAFETY: runs in the forked child before exec; only dup2/unshare/mount system calls
        // on open fds and on C strings made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if own_netns && libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if !binds.is_empty() {
                    // Its own mount namespace, private so the binds never reach the host's.
                    if libc::unshare(libc::CLONE_NEWNS) != 0
                        || libc::mount(
                            std::ptr::null(),
                            root.as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    for (from, to) in &binds {
                        if libc::mount(
                            from.as_ptr(),
                            to.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        ) != 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                }
                silo_proto::fdpass::place_in_child(r, f)
            });
        }
        let child = cmd.spawn().expect("spawn helper");
        Helper {
            child,
            rpc: Some(ours.into()),
            fds: Some(fd_ours),
            log,
        }
    }

    /// A tarpc transport on our end (call inside a runtime).
    pub fn transport<In, Out>(&mut self) -> silo_proto::transport::SiloTransport<In, Out>
    where
        In: for<'de> serde::Deserialize<'de>,
        Out: serde::Serialize,
    {
        let fd = self.rpc.take().expect("transport taken once");
        silo_proto::transport::transport(silo_proto::transport::stream_from_fd(fd).expect("stream"))
    }

    /// Its log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for it to exit; returns (code, signal).
    pub fn wait(&mut self, timeout: std::time::Duration) -> (Option<i32>, Option<i32>) {
        use std::os::unix::process::ExitStatusExt;
        let end = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return (st.code(), st.signal());
            }
            if std::time::Instant::now() > end {
                return (None, None);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
