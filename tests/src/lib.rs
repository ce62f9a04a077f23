//! The integration-test harness: real silod, real helpers, real CLI, as root.
//!
//! Every test gets its own state dir (so its own installation tag, hence its own cgroup
//! root and bridge marks) and cleans up in `Drop`, even when it fails: processes by pid,
//! cgroups under its tag, the state dir.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cluster;
pub mod corpus;
pub mod hostile;
pub mod image_server;
pub mod lxc_client;
pub mod lxd;
pub mod migration_peer;
pub mod side;
pub mod trees;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails the test (never skips) when not root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these integration tests need root (real namespaces, cgroups, helpers); run them as root"
    );
}

/// The directory holding the built binaries (target/debug or target/release).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test-binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    for b in ["silod", "silo", "silo-priv", "silo-net", "silo-store"] {
        assert!(
            dir.join(b).exists(),
            "{} is not built in {}: run the tests with `cargo test --workspace`",
            b,
            dir.display()
        );
    }
    dir
}

/// A binary's path.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Makes sure the `silo` user and group exist (as packaging/silo.sysusers.conf would).
pub fn ensure_silo_user() {
    if nix::unistd::User::from_name("silo")
        .ok()
        .flatten()
        .is_some()
    {
        return;
    }
    let _ = Command::new("groupadd").args(["--system", "silo"]).status();
    let st = Command::new("useradd")
        .args([
            "--system",
            "--gid",
            "silo",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "silo",
        ])
        .status()
        .expect("useradd");
    assert!(
        st.success()
            || nix::unistd::User::from_name("silo")
                .ok()
                .flatten()
                .is_some(),
        "cannot create the silo user"
    );
}

/// A fresh state dir path, unique to this test process and call.
pub fn unique_dir(name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    PathBuf::from(format!("/tmp/silo-t-{name}-{}-{n}", std::process::id()))
}

/// Removes every cgroup silo-priv could have made for the installation at `state_dir`.
pub fn cleanup_cgroups(state_dir: &Path) {
    let tag = silo_proto::install_tag(state_dir);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if !(right.starts_with("cgroup ") || right.starts_with("cgroup2 ")) {
            continue;
        }
        if let Some(mp) = left.split(' ').nth(4) {
            let d = Path::new(mp).join(format!("silo-{tag}"));
            if d.exists() {
                rmdir_tree(&d);
            }
        }
    }
}

fn rmdir_tree(d: &Path) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(d);
}

/// Pids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// The command name of a pid.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether a pid is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Waits until `f` holds or the timeout passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A running silod for one test.
#[derive(Debug)]
pub struct TestDaemon {
    /// Its state dir.
    pub dir: PathBuf,
    /// The silod process.
    pub child: Option<Child>,
    /// Its stderr log file.
    pub log: PathBuf,
    /// Extra args it was started with.
    pub args: Vec<String>,
    keep_dir: bool,
    /// Run silod (and so its helpers) in a mount namespace whose /sys/fs/cgroup is a lone
    /// cgroup2: how a pure-cgroup2 host looks to silo-priv's detection.
    pure_cgroup2: bool,
    /// The network namespace silod and its helpers run in (made by the test, loopback up):
    /// bridges, veths, nft tables and dnsmasq stay in it and go with it.
    pub netns: std::os::fd::OwnedFd,
    /// Extra environment for silod (SSL_CERT_FILE for a test CA).
    pub env: Vec<(String, String)>,
}

/// A command's outcome for an assertion message: status, stdout and stderr.
pub fn show(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A new network namespace with its loopback up, held by an fd.
pub fn new_netns() -> std::os::fd::OwnedFd {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let ns = std::fs::File::open("/proc/thread-self/ns/net").expect("open netns");
        // A child spawned from this thread runs in the thread's namespace.
        let st = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(
            st.success(),
            "ip link set lo up in the test's network namespace"
        );
        std::os::fd::OwnedFd::from(ns)
    })
    .join()
    .expect("netns thread")
}

/// Runs `f` on a thread inside network namespace `ns` (sockets it makes live there).
pub fn in_netns<T: Send + 'static>(
    ns: &std::os::fd::OwnedFd,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let ns = ns.try_clone().expect("dup netns fd");
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in the test's network namespace")
}

/// Joins two test daemons' network namespaces with a veth pair and answers the addresses
/// (a's, b's). They come from 198.18.0.0/15, the benchmarking range nothing outside the tests'
/// own namespaces uses; each pair is private to its two namespaces, which take the veth with
/// them when they go.
pub fn link_netns(a: &TestDaemon, b: &TestDaemon) -> (String, String) {
    let peer_pid = b.pid().to_string();
    in_netns(&a.netns, move || {
        for args in [
            vec![
                "link", "add", "silo-l0", "type", "veth", "peer", "name", "silo-l1", "netns",
                &peer_pid,
            ],
            vec!["addr", "add", "198.18.0.1/30", "dev", "silo-l0"],
            vec!["link", "set", "silo-l0", "up"],
        ] {
            let o = Command::new("ip").args(&args).output().expect("ip");
            assert!(o.status.success(), "ip {args:?}: {}", show(&o));
        }
    });
    in_netns(&b.netns, || {
        for args in [
            vec!["addr", "add", "198.18.0.2/30", "dev", "silo-l1"],
            vec!["link", "set", "silo-l1", "up"],
        ] {
            let o = Command::new("ip").args(&args).output().expect("ip");
            assert!(o.status.success(), "ip {args:?}: {}", show(&o));
        }
    });
    ("198.18.0.1".to_string(), "198.18.0.2".to_string())
}

impl TestDaemon {
    /// A fresh state dir (and, when given, a root policy file beside it); silod not started.
    fn prepare(name: &str, policy: Option<&str>, args: &[&str], pure_cgroup2: bool) -> TestDaemon {
        require_root();
        ensure_silo_user();
        let dir = unique_dir(name);
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(p) = policy {
            std::fs::write(format!("{}.policy.toml", dir.display()), p).expect("policy");
        }
        TestDaemon {
            log: PathBuf::from(format!("{}.log", dir.display())),
            dir,
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            keep_dir: false,
            pure_cgroup2,
            netns: new_netns(),
            env: Vec::new(),
        }
    }

    /// The instance's IPv4 address on eth0 as its state shows it, once DHCP gave one (panics
    /// after 20 s).
    pub fn wait_ipv4(&self, name: &str) -> String {
        let mut addr = String::new();
        let ok = wait_until(Duration::from_secs(20), || {
            let (_, v) = self.api("GET", &format!("/1.0/instances/{name}/state"), None);
            addr = v["metadata"]["network"]["eth0"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["family"] == "inet")
                .and_then(|a| a["address"].as_str())
                .unwrap_or("")
                .to_string();
            !addr.is_empty()
        });
        assert!(
            ok,
            "{name} got no IPv4 address on eth0; log:\n{}",
            self.log_text()
        );
        addr
    }

    /// Runs a command inside silod's network namespace.
    pub fn netns_cmd(&self, args: &[&str]) -> std::process::Output {
        let ns = format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            std::os::fd::AsRawFd::as_raw_fd(&self.netns)
        );
        Command::new("nsenter")
            .arg(format!("--net={ns}"))
            .args(args)
            .output()
            .expect("nsenter")
    }

    /// Starts silod as on a host with only cgroup2 mounted (see `pure_cgroup2`).
    pub fn start_pure_cgroup2(name: &str) -> TestDaemon {
        let mut d = Self::prepare(name, None, &[], true);
        d.spawn();
        d
    }

    /// [`TestDaemon::start_pure_cgroup2`] with a root policy file of the given text.
    pub fn start_pure_cgroup2_with_policy(name: &str, policy: &str) -> TestDaemon {
        let mut d = Self::prepare(name, Some(policy), &[], true);
        d.spawn();
        d
    }

    /// Starts silod in a fresh state dir and waits for its API.
    pub fn start(name: &str) -> TestDaemon {
        Self::start_with(name, &[])
    }

    /// Starts silod with a root policy file of the given text.
    pub fn start_with_policy(name: &str, policy: &str) -> TestDaemon {
        let mut d = Self::prepare(name, Some(policy), &[], false);
        d.spawn();
        d
    }

    /// Starts silod with extra environment variables (e.g. SSL_CERT_FILE).
    pub fn start_with_env(name: &str, env: &[(&str, &str)]) -> TestDaemon {
        let mut d = Self::prepare(name, None, &[], false);
        d.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.spawn();
        d
    }

    /// Starts silod with extra arguments.
    pub fn start_with(name: &str, args: &[&str]) -> TestDaemon {
        let mut d = Self::prepare(name, None, args, false);
        d.spawn();
        d
    }

    /// (Re)starts silod on this state dir (as a supervisor would) and waits for the API.
    pub fn spawn(&mut self) {
        // Instances' monitors outlive silod by design; when a test kills silod they must come
        // back to the test process (not to a PID 1 that may never reap them) to be reaped.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = if self.pure_cgroup2 {
            let mut c = Command::new("unshare");
            c.args(["-m", "--propagation", "private", "sh", "-c"])
                .arg("umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" \"$@\"")
                .arg(bin("silod"));
            c
        } else {
            Command::new(bin("silod"))
        };
        cmd.arg("--state-dir")
            .arg(&self.dir)
            .arg("--policy")
            .arg(format!("{}.policy.toml", self.dir.display()))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let ns = std::os::fd::AsRawFd::as_raw_fd(&self.netns);
        // SAFETY: setns is async-signal-safe; the fd stays open in the parent until spawn returns.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn silod");
        self.child = Some(child);
        let sock = self.socket();
        let ok = wait_until(Duration::from_secs(20), || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "silod exited during start ({st}); log:\n{}",
                        self.log_text()
                    );
                }
            }
            // The socket is bound before the helpers answer; ready means the API answers.
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
                && self.try_api("GET", "/1.0").is_some()
        });
        assert!(
            ok,
            "silod did not serve its API in 20 s; log:\n{}",
            self.log_text()
        );
    }

    /// silod's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("unix.socket")
    }

    /// silod's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// Makes silod listen for HTTPS on `addr` (e.g. `127.0.0.1:8443`, inside its network
    /// namespace) with trust password `password`, and waits until the port accepts.
    pub fn listen_https(&self, addr: &str, password: &str) {
        let (c, v) = self.api(
            "PATCH",
            "/1.0",
            Some(serde_json::json!({"config": {
                "core.https_address": addr, "core.trust_password": password}})),
        );
        assert_eq!(c, 200, "core.https_address={addr}: {v}");
        let a = addr.to_string();
        let up = wait_until(Duration::from_secs(10), || {
            let a = a.clone();
            in_netns(&self.netns, move || {
                std::net::TcpStream::connect(a.as_str()).is_ok()
            })
        });
        assert!(
            up,
            "silod does not listen on {addr}; log:\n{}",
            self.log_text()
        );
    }

    /// The helpers' pids by name.
    pub fn helpers(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = children_of(self.pid())
            .into_iter()
            .map(|p| (comm(p), p))
            .filter(|(c, _)| c.starts_with("silo-"))
            .collect();
        v.sort();
        v
    }

    /// An API client.
    pub fn client(&self) -> silo_cli::client::Client {
        silo_cli::client::Client::new(self.socket())
    }

    /// One API call on a throwaway runtime: (HTTP status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(self.client().raw(method, path, body.as_ref()))
            .expect("api call")
    }

    fn try_api(&self, method: &str, path: &str) -> Option<u16> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_millis(500),
                self.client().raw(method, path, None),
            )
            .await
            .ok()?
            .ok()
            .map(|(c, _)| c)
        })
    }

    /// Waits for the operation an async answer names; returns the final operation.
    pub fn wait_op(&self, answer: &Value) -> Value {
        let op = answer["operation"]
            .as_str()
            .unwrap_or_else(|| panic!("not an async answer: {answer}"))
            .to_string();
        let (c, v) = self.api("GET", &format!("{op}/wait?timeout=600"), None);
        assert_eq!(c, 200, "{v}");
        v["metadata"].clone()
    }

    /// An async call that must succeed: panics with the operation's error otherwise.
    pub fn api_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (c, v) = self.api(method, path, body);
        assert!(c == 200 || c == 202, "{method} {path}: {c} {v}");
        if v["type"] == "async" {
            let op = self.wait_op(&v);
            assert_eq!(op["status"], "Success", "{method} {path}: {op}");
            op
        } else {
            v["metadata"].clone()
        }
    }

    /// Imports an image file under `alias`.
    pub fn import(&self, path: &Path, alias: &str) {
        let o = self.silo(&["image", "import", &path.to_string_lossy(), "--alias", alias]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// Creates and starts an instance from an image alias.
    pub fn launch(&self, alias: &str, name: &str) {
        self.api_ok(
            "POST",
            "/1.0/instances",
            Some(serde_json::json!({"name": name, "source": {"type": "image", "alias": alias}})),
        );
        self.api_ok(
            "PUT",
            &format!("/1.0/instances/{name}/state"),
            Some(serde_json::json!({"action": "start"})),
        );
    }

    /// Changes an instance's state (start, stop, restart); returns the final operation.
    pub fn set_state(&self, name: &str, action: &str, force: bool) -> Value {
        let (c, v) = self.api(
            "PUT",
            &format!("/1.0/instances/{name}/state"),
            Some(serde_json::json!({"action": action, "force": force, "timeout": 60})),
        );
        assert_eq!(c, 202, "{action} {name}: {v}");
        self.wait_op(&v)
    }

    /// The instance's status ("Running", "Stopped").
    pub fn status(&self, name: &str) -> String {
        let (_, v) = self.api("GET", &format!("/1.0/instances/{name}"), None);
        v["metadata"]["status"].as_str().unwrap_or("").to_string()
    }

    /// Runs a command in the instance through the API (record-output, no websockets):
    /// (exit code, stdout, stderr).
    pub fn exec(&self, name: &str, cmd: &[&str]) -> (i64, String, String) {
        self.exec_as(name, cmd, 0)
    }

    /// [`TestDaemon::exec`] as another user.
    pub fn exec_as(&self, name: &str, cmd: &[&str], uid: u32) -> (i64, String, String) {
        let (c, v) = self.api(
            "POST",
            &format!("/1.0/instances/{name}/exec"),
            Some(serde_json::json!({
                "command": cmd, "wait-for-websocket": false, "record-output": true,
                "interactive": false, "user": uid, "group": uid,
            })),
        );
        assert_eq!(c, 202, "exec {cmd:?}: {v}");
        let op = self.wait_op(&v);
        assert_eq!(op["status"], "Success", "exec {cmd:?}: {op}");
        let md = &op["metadata"];
        let read = |k: &str| {
            let path = md["output"][k].as_str().unwrap_or_default().to_string();
            let (_, body) = self.api_raw("GET", &path);
            String::from_utf8_lossy(&body).into_owned()
        };
        (md["return"].as_i64().unwrap_or(-1), read("1"), read("2"))
    }

    /// A GET whose body is not JSON.
    pub fn api_raw(&self, method: &str, path: &str) -> (u16, Vec<u8>) {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-X",
                method,
                "--unix-socket",
            ])
            .arg(self.socket())
            .arg(format!("http://silo{path}"))
            .output()
            .expect("curl");
        let mut body = out.stdout;
        let nl = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
        let code = String::from_utf8_lossy(&body[nl + 1..])
            .trim()
            .parse()
            .unwrap_or(0);
        body.truncate(nl);
        (code, body)
    }

    /// Runs the stock LXD client against this daemon.
    pub fn lxc(&self, args: &[&str]) -> std::process::Output {
        Command::new("lxc")
            .args(args)
            .env("LXD_DIR", &self.dir)
            .env("LXD_CONF", self.dir.join("lxc-conf"))
            .stdin(Stdio::null())
            .output()
            .expect("lxc (Debian's lxd-client) is installed by scripts/deps")
    }

    /// Runs the `silo` CLI against this daemon with `input` on its stdin.
    pub fn silo_stdin(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write;
        let mut c = Command::new(bin("silo"))
            .args(args)
            .env("SILO_SOCKET", self.socket())
            .env_remove("SILO_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("silo");
        c.stdin
            .take()
            .expect("silo's stdin")
            .write_all(input.as_bytes())
            .expect("writing silo's stdin");
        c.wait_with_output().expect("silo")
    }

    /// Runs the `silo` CLI against this daemon.
    pub fn silo(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("silo"))
            .args(args)
            .env("SILO_SOCKET", self.socket())
            .env_remove("SILO_DIR")
            .output()
            .expect("run silo")
    }

    /// Waits for silod to exit and returns its status code (or 128+signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the next [`TestDaemon::spawn`] starts silod as on a host with only cgroup2
    /// mounted (see [`TestDaemon::start_pure_cgroup2`]).
    pub fn set_pure_cgroup2(&mut self, pure: bool) {
        self.pure_cgroup2 = pure;
    }

    /// Keeps the state dir after drop (to restart on it in the same test).
    pub fn keep_dir(&mut self, keep: bool) {
        self.keep_dir = keep;
    }

    /// Stops silod (SIGTERM, then SIGKILL) and makes sure its helpers are gone.
    pub fn stop(&mut self) {
        let helpers: Vec<u32> = if self.child.is_some() {
            self.helpers().into_iter().map(|(_, p)| p).collect()
        } else {
            Vec::new()
        };
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > end {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The etcd keeper (a fork of silod) and a cluster member's etcd end with silod.
        let cluster: Vec<u32> = procs_naming(&self.dir)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| matches!(comm(*p).as_str(), "silod" | "etcd"))
            .collect();
        for p in helpers.into_iter().chain(cluster) {
            if !wait_until(Duration::from_secs(5), || !alive(p)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.stop();
        // Instances outlive silod by design: end them and their monitors too.
        kill_instances(&self.dir);
        cleanup_mounts(&self.dir);
        cleanup_cgroups(&self.dir);
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_file(&self.log);
            let _ = std::fs::remove_file(format!("{}.policy.toml", self.dir.display()));
        }
    }
}

/// Pids in the installation's instance cgroups (every hierarchy, nested groups too).
pub fn instance_pids(state_dir: &Path) -> Vec<u32> {
    let tag = silo_proto::install_tag(state_dir);
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<u32>) {
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&e.path(), out);
            }
        }
    }
    for h in ["memory", "pids", "unified", "systemd", "cpuset"] {
        walk(
            &Path::new("/sys/fs/cgroup")
                .join(h)
                .join(format!("silo-{tag}")),
            &mut out,
        );
    }
    walk(
        &Path::new("/sys/fs/cgroup").join(format!("silo-{tag}")),
        &mut out,
    );
    out.sort_unstable();
    out.dedup();
    out
}

/// Thaws every frozen instance of the installation at `state_dir`: a frozen process does not
/// die of SIGKILL under the v1 freezer, so cleanup thaws first.
pub fn thaw_instances(state_dir: &Path) {
    let tag = silo_proto::install_tag(state_dir);
    for (root, file, value) in [
        ("/sys/fs/cgroup/freezer", "freezer.state", "THAWED"),
        ("/sys/fs/cgroup/unified", "cgroup.freeze", "0"),
        ("/sys/fs/cgroup", "cgroup.freeze", "0"),
    ] {
        let d = Path::new(root).join(format!("silo-{tag}"));
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let _ = std::fs::write(e.path().join(file), value);
        }
    }
}

/// Kills every instance process and monitor of the installation at `state_dir`.
pub fn kill_instances(state_dir: &Path) {
    thaw_instances(state_dir);
    for _ in 0..50 {
        let pids = instance_pids(state_dir);
        if pids.is_empty() {
            break;
        }
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (p, _) in procs_for(state_dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    wait_until(Duration::from_secs(5), || procs_for(state_dir).is_empty());
    reap_orphans();
}

/// Reaps exited silo processes handed to the test process as subreaper (monitors whose
/// launcher died). Only zombies named silo-priv are waited for, by pid: a `Child` the test
/// still holds is never touched.
pub fn reap_orphans() {
    for p in children_of(std::process::id()) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if zombie && stat.contains("(silo-priv)") {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(p as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}

/// Waits until systemd, PID 1 of the instance `name`, has finished booting (running or
/// degraded), for two minutes at the most.
pub fn wait_booted(d: &TestDaemon, name: &str) {
    until_systemd_up(name, |cmd| d.exec(name, cmd).1);
}

/// Waits until systemd in the instance `name` has finished booting (running or degraded),
/// for two minutes at the most; `run` runs a command in it and answers its stdout (the API,
/// or `lxc exec` for benches that drive silo and LXD alike).
pub fn until_systemd_up(name: &str, run: impl Fn(&[&str]) -> String) {
    let t0 = Instant::now();
    let mut state = String::new();
    while t0.elapsed() < Duration::from_secs(120) {
        state = run(&["timeout", "120", "systemctl", "is-system-running", "--wait"])
            .trim()
            .to_string();
        if state == "running" || state == "degraded" {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("systemd in {name} ended up {state:?}");
}

/// Builds (or reuses) the debian image (debootstrap, systemd); returns the unified tarball.
pub fn debian_image() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-image-debian");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "building the debian image failed (it needs Debian's archive through apt's mirror):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(PathBuf::from)
        .expect("build-image-debian printed no path");
    p
}

/// Live processes with an argument that is `dir` or names a path beneath it (silod and its
/// helpers, the dnsmasq of LXD and of silo, which name their files there).
pub fn procs_naming(dir: &Path) -> Vec<(u32, String)> {
    let (exact, beneath) = (dir.display().to_string(), format!("{}/", dir.display()));
    procs_where(|cmd| cmd.split(' ').any(|a| a == exact || a.contains(&beneath)))
}

/// Live processes whose command line names `state_dir` (silod and its helpers do).
pub fn procs_for(state_dir: &Path) -> Vec<(u32, String)> {
    let needle = state_dir.display().to_string();
    procs_where(|cmd| cmd.split(' ').any(|a| a == needle))
}

/// Live processes whose command line (arguments joined by spaces) `pick` takes.
fn procs_where(pick: impl Fn(&str) -> bool) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{p}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if pick(&cmd) && alive(p) {
            out.push((p, cmd));
        }
    }
    out
}

/// Builds (or reuses from the cache) the busybox test image; returns the unified tarball, or
/// (with `split`) the metadata and rootfs tarballs.
pub fn busybox_image(split: bool) -> Vec<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-image-busybox");
    let mut cmd = Command::new(&script);
    if split {
        cmd.arg("--split");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "building the busybox image failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paths: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    if split {
        let meta = paths
            .iter()
            .find(|p| p.to_string_lossy().ends_with(".meta.tar.gz"))
            .expect("meta")
            .clone();
        let rootfs = paths
            .iter()
            .find(|p| p.to_string_lossy().ends_with(".rootfs.tar.gz"))
            .expect("rootfs")
            .clone();
        vec![meta, rootfs]
    } else {
        vec![paths.first().expect("image path").clone()]
    }
}

/// sha256 of the concatenated files, as LXD fingerprints images.
pub fn fingerprint_of(files: &[PathBuf]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for f in files {
        let mut file = std::fs::File::open(f).expect("open");
        std::io::copy(&mut file, &mut h).expect("hash");
    }
    hex::encode(h.finalize())
}

/// Detaches every mount beneath `dir` (pools a test left mounted); their loop devices detach
/// themselves once unmounted.
pub fn cleanup_mounts(dir: &Path) {
    let prefix = dir.display().to_string();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mount points beneath `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// Loop devices backed by a file beneath `dir`.
pub fn loops_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        let backing = e.path().join("loop/backing_file");
        if let Ok(b) = std::fs::read_to_string(&backing) {
            if b.trim().starts_with(&prefix) {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// A spare disk for a test: a sparse file of its own on a loop device of its own (what a
/// host's empty `/dev/sdb` would be), detached and removed on drop. Declare it before the
/// TestDaemon that uses it, so the daemon (and its mounts) go first.
#[derive(Debug)]
pub struct SpareDisk {
    /// The device node, e.g. `/dev/loop7`.
    pub dev: String,
    img: PathBuf,
}

impl SpareDisk {
    /// A `size`-byte empty disk.
    pub fn new(name: &str, size: u64) -> SpareDisk {
        let img = unique_dir(name).with_extension("disk");
        std::fs::File::create(&img)
            .expect("disk file")
            .set_len(size)
            .expect("disk size");
        let o = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)
            .output()
            .expect("losetup");
        assert!(
            o.status.success(),
            "losetup --find --show {}: {}",
            img.display(),
            show(&o)
        );
        let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup gave {dev:?}");
        SpareDisk { dev, img }
    }

    /// Where the device is mounted, if anywhere (from /proc/self/mountinfo's sources).
    pub fn mount_points(&self) -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let source = right.split(' ').nth(1)?;
                (source == self.dev).then(|| left.split(' ').nth(4).map(str::to_string))?
            })
            .collect()
    }
}

impl Drop for SpareDisk {
    fn drop(&mut self) {
        for m in self.mount_points() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
        let _ = std::fs::remove_file(&self.img);
    }
}

/// Whether a mountinfo line is silo-store's nosuid bind of a dir pool: a directory mounted
/// onto itself (its root inside its filesystem is the tail of its mount point).
fn is_self_bind(line: &str) -> bool {
    let f: Vec<&str> = line.split(' ').collect();
    match (f.get(3), f.get(4)) {
        (Some(root), Some(mp)) => *root != "/" && mp.ends_with(root),
        _ => false,
    }
}

/// Mount points beneath `dir` other than the nosuid binds of dir pools onto themselves (which
/// every dir pool has while it exists): what a test means by "no mount left behind".
pub fn foreign_mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| !is_self_bind(l))
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// The mount options (per-mount and superblock) of the mount that `path` is on: the
/// longest mount point containing it, the topmost where several are stacked.
pub fn mount_options_of(path: &Path) -> String {
    let p = path.display().to_string();
    let mut best: Option<(usize, String)> = None;
    for l in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(mp) = f.get(4) else { continue };
        let within = p == *mp || p.starts_with(&format!("{}/", mp.trim_end_matches('/')));
        if within && best.as_ref().is_none_or(|(n, _)| mp.len() >= *n) {
            let sup = l.split(" - ").nth(1).unwrap_or_default();
            best = Some((mp.len(), format!("{} {}", f.get(5).unwrap_or(&""), sup)));
        }
    }
    best.map(|(_, o)| o).unwrap_or_default()
}

/// Commands that give a test's own network namespace an uplink as DHCP would leave it: a veth
/// `uplink0` and a default route through 192.168.77.1, a gateway no connected subnet holds
/// (onlink). Nothing is ever sent through it.
pub const UPLINK_WITH_DEFAULT_ROUTE: &[&[&str]] = &[
    &[
        "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
    ],
    &["ip", "link", "set", "uplink0", "up"],
    &[
        "ip",
        "route",
        "add",
        "default",
        "via",
        "192.168.77.1",
        "dev",
        "uplink0",
        "onlink",
    ],
];

/// A state dir and a policy path for a helper a test drives raw (as a hostile silod would),
/// cleaned up in Drop even when the test fails: instances, cgroups, mounts, files.
#[derive(Debug)]
pub struct HelperDirs {
    /// The helper's state dir.
    pub state: PathBuf,
    /// Where its policy file goes (written by the test when it wants one).
    pub policy: PathBuf,
}

impl HelperDirs {
    /// Fresh, empty dirs named after the test.
    pub fn new(name: &str) -> HelperDirs {
        let state = unique_dir(name);
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).expect("state");
        HelperDirs {
            policy: PathBuf::from(format!("{}.policy.toml", state.display())),
            state,
        }
    }
}

impl Drop for HelperDirs {
    fn drop(&mut self) {
        kill_instances(&self.state);
        cleanup_cgroups(&self.state);
        // Dir pools' nosuid binds are the host's mounts: they outlive the helper.
        cleanup_mounts(&self.state);
        let _ = std::fs::remove_dir_all(&self.state);
        let _ = std::fs::remove_file(&self.policy);
    }
}

/// A raw websocket client (Debian's python3) for an instance's `/dev/lxd/sock`: one upgrade
/// to `$DEVLXD_PATH` on `$DEVLXD_SOCK`, then the status line and the first text frame printed.
pub const DEVLXD_WS_CLIENT: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(8); s.connect(os.environ["DEVLXD_SOCK"])
s.sendall(b"GET " + os.environ["DEVLXD_PATH"].encode() + b" HTTP/1.1\r\nHost: lxd\r\n"
          b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(1)
print(buf.split(b"\r\n")[0].decode())
def exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: sys.exit("closed")
        b += c
    return b
h = exact(2); n = h[1] & 0x7f
if n == 126: n = int.from_bytes(exact(2), "big")
print(exact(n).decode())
"#;
