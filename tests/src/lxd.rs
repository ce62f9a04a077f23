//! A real LXD 5.0.2 daemon for tests: its own `LXD_DIR`, in a network namespace the test makes,
//! set up from a preseed with no network, `core.https_address` on loopback and a trust password,
//! and a `dir` storage pool. Killed by its PID, its mounts and directory removed on drop.
//!
//! The daemon comes from Debian 12's `lxd` package: `lxd` in PATH when the package is installed,
//! else the package and the libraries it needs extracted (not installed, so no service starts) under
//! `$SILO_TEST_LXD_ROOT` or `/var/cache/silo/lxd-5.0.2`: `tests/fetch-lxd.sh` makes that tree.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{cleanup_mounts, in_netns, new_netns, require_root, unique_dir, wait_until};

/// The trust password every TestLxd has.
pub const TRUST_PASSWORD: &str = "silo-test-pw";
/// The port LXD listens on (its own network namespace, so no clash).
pub const PORT: u16 = 8443;

/// The port of a second LXD started in the same namespace ([`TestLxd::start_beside`]).
pub const PORT2: u16 = 8444;

/// Where the `lxd` binary and its libraries are: (binary, extra PATH, LD_LIBRARY_PATH,
/// the root of an extracted tree).
fn lxd_install() -> (PathBuf, Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) {
    let root = std::env::var_os("SILO_TEST_LXD_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/silo/lxd-5.0.2"));
    let bin = root.join("usr/bin/lxd");
    if bin.exists() {
        return (
            bin,
            Some(root.join("usr/bin")),
            Some(root.join("usr/lib/x86_64-linux-gnu")),
            Some(root),
        );
    }
    for p in ["/usr/bin/lxd", "/usr/sbin/lxd"] {
        if Path::new(p).exists() {
            return (PathBuf::from(p), None, None, None);
        }
    }
    panic!(
        "no LXD daemon: install Debian's lxd package, or run tests/fetch-lxd.sh to extract it \
         under /var/cache/silo/lxd-5.0.2 (or set SILO_TEST_LXD_ROOT)"
    );
}

/// A running LXD daemon.
#[derive(Debug)]
pub struct TestLxd {
    /// Its `LXD_DIR`.
    pub dir: PathBuf,
    child: Option<Child>,
    netns: OwnedFd,
    port: u16,
    bin: PathBuf,
    path_env: String,
    ld_path: Option<PathBuf>,
}

impl TestLxd {
    /// Starts LXD in a new network namespace and applies the preseed.
    pub fn start(name: &str) -> TestLxd {
        TestLxd::start_in(name, new_netns(), PORT, None, None)
    }

    /// Starts LXD in a new network namespace with a managed bridge `lxdbr0` on `cidr` (e.g.
    /// "10.251.0.1/24", no IPv6) and eth0 on it in the default profile: the setup silo's
    /// embedded defaults make, for comparing the two.
    pub fn start_bridged(name: &str, cidr: &str) -> TestLxd {
        TestLxd::start_in(name, new_netns(), PORT, None, Some(cidr))
    }

    /// Starts LXD with this server certificate and key (PEM) instead of the one it makes.
    pub fn start_with_server_cert(name: &str, crt: &str, key: &str) -> TestLxd {
        TestLxd::start_in(name, new_netns(), PORT, Some((crt, key)), None)
    }

    /// Starts a second LXD in `other`'s network namespace, listening on [`PORT2`], so the two
    /// can pull images from each other.
    pub fn start_beside(name: &str, other: &TestLxd) -> TestLxd {
        TestLxd::start_in(
            name,
            other.netns.try_clone().expect("dup netns"),
            PORT2,
            None,
            None,
        )
    }

    /// Starts LXD in `d`'s network namespace, listening on 127.0.0.1:`port`, so LXD and that
    /// silod reach each other on loopback (give silod another port with
    /// [`crate::TestDaemon::listen_https`]).
    pub fn start_in_netns_of(name: &str, d: &crate::TestDaemon, port: u16) -> TestLxd {
        TestLxd::start_in(
            name,
            d.netns.try_clone().expect("dup netns"),
            port,
            None,
            None,
        )
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The network namespace it runs in (for clients that must reach it on loopback).
    pub fn netns(&self) -> &OwnedFd {
        &self.netns
    }

    fn start_in(
        name: &str,
        netns: OwnedFd,
        port: u16,
        cert: Option<(&str, &str)>,
        bridge: Option<&str>,
    ) -> TestLxd {
        require_root();
        let dir = unique_dir(&format!("lxd-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("LXD_DIR");
        if let Some((crt, key)) = cert {
            std::fs::write(dir.join("server.crt"), crt).expect("server.crt");
            std::fs::write(dir.join("server.key"), key).expect("server.key");
        }
        let (bin, extra_path, ld_path, tree) = lxd_install();
        let mut path_env = std::env::var("PATH").unwrap_or_default();
        if let Some(p) = extra_path {
            path_env = format!("{}:{path_env}", p.display());
        }
        let mut l = TestLxd {
            dir,
            child: None,
            netns,
            port,
            bin,
            path_env,
            ld_path,
        };
        let mut cmd = l.command();
        if bridge.is_some() {
            // LXD finds its bridge in /sys/class/net, and sysfs shows the network namespace of
            // whoever mounted it: LXD gets a mount namespace with a sysfs of its own network
            // namespace, and the host's cgroup mounts moved back beneath it.
            let mut wrapped = Command::new("unshare");
            wrapped
                .args(["-m", "--propagation", "private", "sh", "-c"])
                .arg(
                    "d=$(mktemp -d) && mount --rbind /sys/fs/cgroup \"$d\" \
                     && mount -t sysfs sysfs /sys && mount --move \"$d\" /sys/fs/cgroup \
                     && rmdir \"$d\" && exec \"$@\"",
                )
                .arg("lxd")
                .arg(cmd.get_program())
                .args(cmd.get_args())
                .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
            cmd = wrapped;
        }
        let log = std::fs::File::create(l.log_path()).expect("lxd log");
        cmd.stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .stdin(Stdio::null());
        let child = in_netns(&l.netns, move || cmd.spawn().expect("spawn lxd"));
        l.child = Some(child);
        let o = l.lxd(&["waitready", "--timeout=60"], None);
        assert!(
            o.status.success(),
            "lxd waitready: {}\n{}",
            crate::show(&o),
            l.log_text()
        );
        // Containers are privileged: this host's /etc/subuid gives root no range for LXD's
        // idmap. liblxc from an extracted tree needs its rootfs mount point named, as the
        // compiled-in one is not there.
        let rootfs_mount = tree
            .map(|t| {
                format!(
                    "    raw.lxc: lxc.rootfs.mount={}\n",
                    t.join("usr/lib/x86_64-linux-gnu/lxc/rootfs").display()
                )
            })
            .unwrap_or_default();
        let (networks, eth0) = match bridge {
            Some(cidr) => (
                format!(
                    "networks:\n- name: lxdbr0\n  type: bridge\n  config: {{ipv4.address: {cidr}, \
                     ipv4.nat: \"true\", ipv6.address: none}}\n"
                ),
                "    eth0: {name: eth0, network: lxdbr0, type: nic}\n",
            ),
            None => (String::new(), ""),
        };
        let preseed = format!(
            "config:\n  core.https_address: 127.0.0.1:{port}\n  core.trust_password: {TRUST_PASSWORD}\n\
             {networks}storage_pools:\n- name: default\n  driver: dir\n\
             profiles:\n- name: default\n  config:\n    security.privileged: \"true\"\n{rootfs_mount}\
             \x20 devices:\n    root: {{path: /, pool: default, type: disk}}\n{eth0}"
        );
        let o = l.lxd(&["init", "--preseed"], Some(preseed.as_bytes()));
        assert!(
            o.status.success(),
            "lxd init --preseed: {}",
            crate::show(&o)
        );
        let up = wait_until(Duration::from_secs(20), || {
            in_netns(&l.netns, move || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
        });
        assert!(
            up,
            "LXD does not listen on 127.0.0.1:{port}: {}",
            l.log_text()
        );
        l
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("LXD_DIR", &self.dir)
            .env("PATH", &self.path_env)
            .arg("--logfile")
            .arg(self.dir.join("lxd.log"));
        if let Some(l) = &self.ld_path {
            c.env("LD_LIBRARY_PATH", l);
        }
        c
    }

    fn log_path(&self) -> PathBuf {
        PathBuf::from(format!("{}.out", self.dir.display()))
    }

    /// The daemon's output, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs `lxd ARGS` (waitready, init) against this daemon.
    pub fn lxd(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = Command::new(&self.bin);
        c.env("LXD_DIR", &self.dir)
            .env("PATH", &self.path_env)
            .args(args);
        if let Some(l) = &self.ld_path {
            c.env("LD_LIBRARY_PATH", l);
        }
        run_with_stdin(c, stdin)
    }

    /// Runs the stock `lxc` against this daemon's unix socket.
    pub fn lxc(&self, args: &[&str]) -> Output {
        let mut c = Command::new("lxc");
        c.env("LXD_DIR", &self.dir)
            .env("LXD_CONF", self.dir.join("lxc-conf"))
            .args(args);
        run_with_stdin(c, None)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The server certificate's fingerprint (sha256 of its DER).
    pub fn fingerprint(&self) -> String {
        let pem = std::fs::read(self.dir.join("server.crt")).expect("LXD's server.crt");
        let der = silo_cli::tls::cert_from_pem(&pem, "server.crt").expect("pem");
        silo_cli::tls::fingerprint(&der)
    }

    /// Runs `silo ARGS` with `SILO_CONF=conf` inside this daemon's network namespace.
    pub fn silo(&self, conf: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(crate::bin("silo"));
        c.env("SILO_CONF", conf)
            .env("SILO_SOCKET", self.dir.join("no-local-silod.socket"))
            .env_remove("SILO_REMOTE")
            .args(args);
        let input = stdin.map(|s| s.as_bytes().to_vec());
        in_netns(&self.netns, move || run_with_stdin(c, input.as_deref()))
    }

    /// Runs `f` on a thread in this daemon's network namespace.
    pub fn run_in_netns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.netns, f)
    }

    /// Deletes every instance, stops the daemon (`lxd shutdown`, then SIGKILL by PID) and
    /// cleans up.
    pub fn stop(&mut self) {
        if self.child.is_some() {
            let o = self.lxc(&["list", "--format", "csv", "-c", "n"]);
            for name in String::from_utf8_lossy(&o.stdout).lines() {
                let name = name.trim();
                if !name.is_empty() {
                    let _ = self.lxc(&["delete", "--force", name]);
                }
            }
            let _ = self.lxd(&["shutdown", "--timeout=20"], None);
        }
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let done = wait_until(Duration::from_secs(15), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !done {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // LXD leaves its managed bridges' dnsmasq running when it stops: end each process
        // started with a path of this LXD_DIR, by its PID.
        for (pid, _) in crate::procs_naming(&self.dir) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        cleanup_mounts(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.log_path());
    }
}

impl Drop for TestLxd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_with_stdin(mut c: Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().expect("spawn");
    if let Some(data) = stdin {
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(data);
        }
    }
    child.wait_with_output().expect("wait")
}
