//! The stock `lxc` client with a config dir of its own (`LXD_CONF`: its own client
//! certificate and remotes), run inside a test's network namespace so it reaches servers
//! (silod and/or LXD) on that namespace's loopback. Its config dir goes on drop.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{in_netns, show, unique_dir};

/// An `lxc` client configuration in one network namespace.
#[derive(Debug)]
pub struct Lxc {
    /// Its `LXD_CONF` directory.
    pub conf: PathBuf,
    netns: OwnedFd,
}

impl Lxc {
    /// A fresh client (no remotes yet) that runs in network namespace `netns`.
    pub fn new(name: &str, netns: &OwnedFd) -> Lxc {
        let conf = unique_dir(&format!("lxc-{name}"));
        let _ = std::fs::remove_dir_all(&conf);
        std::fs::create_dir_all(&conf).expect("LXD_CONF dir");
        Lxc {
            conf,
            netns: netns.try_clone().expect("dup netns"),
        }
    }

    /// Runs `lxc ARGS` (never the local unix socket: `LXD_DIR` is cleared, so commands
    /// without a remote fail instead of reaching some other daemon).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new("lxc");
        c.args(args)
            .env("LXD_CONF", &self.conf)
            .env("LXD_DIR", self.conf.join("no-local-daemon"))
            .stdin(Stdio::null());
        in_netns(&self.netns, move || {
            c.output()
                .expect("lxc (Debian's lxd-client) is installed by scripts/deps")
        })
    }

    /// [`Lxc::run`] and how long it took.
    pub fn timed(&self, args: &[&str]) -> (Output, Duration) {
        let t = Instant::now();
        let o = self.run(args);
        (o, t.elapsed())
    }

    /// [`Lxc::timed`] that gives up after `limit`: `None` when the client had not finished
    /// (it is killed by its pid; what it started on a server may still run there).
    pub fn timed_bounded(&self, args: &[&str], limit: Duration) -> Option<(Output, Duration)> {
        let mut c = Command::new("lxc");
        c.args(args)
            .env("LXD_CONF", &self.conf)
            .env("LXD_DIR", self.conf.join("no-local-daemon"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t = Instant::now();
        let mut child = in_netns(&self.netns, move || {
            c.spawn()
                .expect("lxc (Debian's lxd-client) is installed by scripts/deps")
        });
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return child.wait_with_output().ok().map(|o| (o, t.elapsed())),
                Ok(None) if t.elapsed() < limit => std::thread::sleep(Duration::from_millis(100)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// Runs `lxc ARGS`, panics with its output unless it succeeds; answers stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "lxc {}: {}", args.join(" "), show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Adds remote `name` at `url` (`https://host:port`) with a trust password, accepting
    /// its certificate.
    pub fn add_remote(&self, name: &str, url: &str, password: &str) {
        self.ok(&[
            "remote",
            "add",
            name,
            url,
            "--password",
            password,
            "--accept-certificate",
        ]);
    }

    /// Adds remote `name` with a join token (`lxc config trust add` / `silo config trust
    /// add` output), accepting the certificate the token names.
    pub fn add_remote_token(&self, name: &str, token: &str) {
        self.ok(&["remote", "add", name, token, "--accept-certificate"]);
    }
}

impl Drop for Lxc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.conf);
    }
}
