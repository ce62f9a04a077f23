//! silod's root phase and the CLI against planted files and terminals: the state dir's
//! database files are handed to silod's user only when they are its own (no symlink, no hard
//! link to a file elsewhere), silod keeps no terminal of the root shell that started it, and
//! `silo file pull` never makes a set-uid file on the host.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use silo_tests::{bin, busybox_image, ensure_silo_user, require_root, wait_until, TestDaemon};

const PROTECTED_HARDLINKS: &str = "/proc/sys/fs/protected_hardlinks";

/// Serializes the tests here that change `fs.protected_hardlinks`.
static SYSCTL: Mutex<()> = Mutex::new(());

/// `fs.protected_hardlinks=0` for one test (as on a host that turned it off, so silod's
/// user may hard-link files it does not own); the old value comes back in Drop, even when
/// the test panics.
struct HardlinksUnprotected {
    old: String,
    _lock: MutexGuard<'static, ()>,
}

impl HardlinksUnprotected {
    fn set() -> Self {
        let lock = SYSCTL.lock().unwrap_or_else(|e| e.into_inner());
        let old = std::fs::read_to_string(PROTECTED_HARDLINKS)
            .unwrap_or_else(|e| panic!("reading {PROTECTED_HARDLINKS}: {e}"));
        std::fs::write(PROTECTED_HARDLINKS, "0")
            .unwrap_or_else(|e| panic!("writing {PROTECTED_HARDLINKS}: {e}"));
        HardlinksUnprotected {
            old: old.trim().to_string(),
            _lock: lock,
        }
    }
}

impl Drop for HardlinksUnprotected {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(PROTECTED_HARDLINKS, &self.old) {
            eprintln!("restoring {PROTECTED_HARDLINKS} to {}: {e}", self.old);
        }
    }
}

/// A state dir as silod's first run leaves it (owned by silod's user, 0711) and a root-owned
/// scratch file beside it standing for a system file; both removed in Drop.
struct Planted {
    state: PathBuf,
    scratch_dir: PathBuf,
    scratch: PathBuf,
    netns: std::os::fd::OwnedFd,
    silod: Option<Child>,
    /// Another directory to remove in Drop.
    outer: Option<PathBuf>,
}

impl Planted {
    fn new(name: &str) -> Self {
        require_root();
        ensure_silo_user();
        let state = silo_tests::unique_dir(name);
        let scratch_dir = PathBuf::from(format!("{}.scratch", state.display()));
        let _ = std::fs::remove_dir_all(&state);
        let _ = std::fs::remove_dir_all(&scratch_dir);
        std::fs::create_dir(&state).expect("state dir");
        let silo = nix::unistd::User::from_name("silo")
            .expect("lookup")
            .expect("silo user");
        std::os::unix::fs::chown(&state, Some(silo.uid.as_raw()), Some(silo.gid.as_raw()))
            .expect("chown state dir");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o711))
            .expect("chmod state dir");
        std::fs::create_dir(&scratch_dir).expect("scratch dir");
        std::fs::set_permissions(&scratch_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod scratch dir");
        let scratch = scratch_dir.join("secret");
        std::fs::write(&scratch, "root's secret\n").expect("scratch file");
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o600))
            .expect("chmod scratch");
        Planted {
            state,
            scratch_dir,
            scratch,
            netns: silo_tests::new_netns(),
            silod: None,
            outer: None,
        }
    }

    /// Runs `ln ARGS` as silod's user, as a compromised silod of an earlier run would.
    fn ln_as_silo(&self, args: &[&str]) {
        let o = Command::new("setpriv")
            .args(["--reuid=silo", "--regid=silo", "--clear-groups", "ln"])
            .args(args)
            .output()
            .expect("setpriv");
        assert!(o.status.success(), "ln as silo: {}", silo_tests::show(&o));
    }

    /// Starts silod on the state dir; its exit status and log if it ends within 20 s,
    /// `None` (and it is stopped) if it went on serving.
    fn run_silod(&mut self) -> (Option<std::process::ExitStatus>, String) {
        let log = PathBuf::from(format!("{}.log", self.state.display()));
        let logf = std::fs::File::create(&log).expect("log");
        let mut cmd = Command::new(bin("silod"));
        cmd.arg("--state-dir")
            .arg(&self.state)
            .arg("--policy")
            .arg(format!("{}.policy.toml", self.state.display()))
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf);
        in_netns(&mut cmd, &self.netns);
        self.silod = Some(cmd.spawn().expect("spawn silod"));
        let mut status = None;
        wait_until(Duration::from_secs(20), || {
            status = self
                .silod
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            status.is_some()
        });
        (status, std::fs::read_to_string(&log).unwrap_or_default())
    }

    fn assert_scratch_untouched(&self) {
        let md = std::fs::metadata(&self.scratch).expect("scratch");
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (0, 0, 0o600),
            "the root-owned file behind the planted link changed hands"
        );
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        if let Some(mut c) = self.silod.take() {
            stop(c.id());
            let _ = c.wait();
        }
        // What a silod that did start left (dnsmasq, cgroups).
        silo_tests::kill_instances(&self.state);
        silo_tests::cleanup_cgroups(&self.state);
        let _ = std::fs::remove_dir_all(&self.state);
        let _ = std::fs::remove_dir_all(&self.scratch_dir);
        let _ = std::fs::remove_file(format!("{}.log", self.state.display()));
        if let Some(o) = &self.outer {
            let _ = std::fs::remove_dir_all(o);
        }
    }
}

/// Stops a silod this test started: SIGTERM (its helpers and their children go with it),
/// SIGKILL after 5 s.
fn stop(pid: u32) {
    let p = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
    if !wait_until(Duration::from_secs(5), || !silo_tests::alive(pid)) {
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Runs the command in network namespace `ns` (what silod and its helpers set up stays there).
fn in_netns(cmd: &mut Command, ns: &std::os::fd::OwnedFd) {
    let ns = std::os::fd::AsRawFd::as_raw_fd(ns);
    // SAFETY: setns is async-signal-safe; the fd stays open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn silod_refuses_a_hard_linked_wal_file() {
    let _sysctl = HardlinksUnprotected::set();
    let mut p = Planted::new("sec-hardlink");
    let wal = p.state.join("silo.db-wal");
    p.ln_as_silo(&[
        p.scratch.to_str().expect("utf-8"),
        wal.to_str().expect("utf-8"),
    ]);
    let (status, log) = p.run_silod();
    p.assert_scratch_untouched();
    let status =
        status.unwrap_or_else(|| panic!("silod started on a hard-linked WAL; log:\n{log}"));
    assert!(!status.success(), "{status}; log:\n{log}");
    assert!(
        log.contains(&wal.display().to_string()) && log.contains("hard link"),
        "the refusal names the file; log:\n{log}"
    );
}

#[test]
fn silod_refuses_a_symlinked_wal_file() {
    let mut p = Planted::new("sec-symlink");
    let wal = p.state.join("silo.db-wal");
    p.ln_as_silo(&[
        "-s",
        p.scratch.to_str().expect("utf-8"),
        wal.to_str().expect("utf-8"),
    ]);
    let (status, log) = p.run_silod();
    p.assert_scratch_untouched();
    let status = status.unwrap_or_else(|| panic!("silod started on a symlinked WAL; log:\n{log}"));
    assert!(!status.success(), "{status}; log:\n{log}");
    assert!(
        log.contains(&wal.display().to_string()) && log.contains("symlink"),
        "the refusal names the file; log:\n{log}"
    );
}

#[test]
fn silod_refuses_a_state_dir_owned_by_another_user() {
    let mut p = Planted::new("sec-foreign");
    // nobody's directory must not be handed to silod's user by root.
    std::os::unix::fs::chown(&p.state, Some(65534), Some(65534)).expect("chown");
    let (status, log) = p.run_silod();
    let md = std::fs::metadata(&p.state).expect("state");
    assert_eq!((md.uid(), md.gid()), (65534, 65534), "log:\n{log}");
    let status = status.unwrap_or_else(|| panic!("silod started; log:\n{log}"));
    assert!(!status.success(), "{status}; log:\n{log}");
    assert!(log.contains("owned by uid 65534"), "log:\n{log}");
}

#[test]
fn silod_refuses_a_state_dir_below_a_directory_silo_can_rewrite() {
    let mut p = Planted::new("sec-ancestor");
    // The state dir one level below a directory silod's user owns (such as another
    // installation's state dir): silod's user could swap it for a symlink at any time.
    let outer = p.state.clone();
    let inner = outer.join("inner");
    std::fs::create_dir(&inner).expect("inner state dir");
    p.state = inner.clone();
    p.outer = Some(outer.clone());
    let (status, log) = p.run_silod();
    let md = std::fs::metadata(&inner).expect("inner");
    assert_eq!(md.uid(), 0, "the state dir changed hands; log:\n{log}");
    let status = status.unwrap_or_else(|| panic!("silod started; log:\n{log}"));
    assert!(!status.success(), "{status}; log:\n{log}");
    assert!(
        log.contains(&format!("{}, above the state dir", outer.display())),
        "log:\n{log}"
    );
}

/// `tty_nr`, field 7 of /proc/PID/stat (0: no controlling terminal).
fn tty_nr(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(')').map(|(_, r)| r).expect("stat format");
    // After "pid (comm)": state ppid pgrp session tty_nr.
    after
        .split_whitespace()
        .nth(4)
        .and_then(|v| v.parse().ok())
        .expect("tty_nr")
}

#[test]
fn silod_keeps_no_terminal_of_the_shell_that_started_it() {
    require_root();
    ensure_silo_user();
    let state = silo_tests::unique_dir("sec-tty");
    let _ = std::fs::remove_dir_all(&state);
    let pidfile = PathBuf::from(format!("{}.pid", state.display()));
    let log = PathBuf::from(format!("{}.log", state.display()));
    let netns = silo_tests::new_netns();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    // A root shell whose terminal is the pty (session leader, pty as controlling terminal),
    // starting silod in the background with the terminal as its stdin, as `silod &` in a
    // terminal would (sh would give a background job /dev/null: fd 3 carries the terminal).
    let logf = std::fs::File::create(&log).expect("log");
    let mut cmd = Command::new("setsid");
    cmd.args(["--ctty", "sh", "-c"])
        .arg("exec 3<&0; \"$0\" \"$@\" <&3 3<&- & echo $! >\"$PIDFILE\"; wait")
        .arg(bin("silod"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--policy")
        .arg(format!("{}.policy.toml", state.display()))
        .env("PIDFILE", &pidfile)
        .stdin(Stdio::from(pty.slave))
        .stdout(logf.try_clone().expect("log"))
        .stderr(logf);
    in_netns(&mut cmd, &netns);
    let mut shell = cmd.spawn().expect("spawn setsid sh");
    struct Cleanup<'a>(&'a Path, &'a Path, &'a Path, Option<u32>);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            if let Some(pid) = self.3 {
                stop(pid);
            }
            silo_tests::kill_instances(self.0);
            silo_tests::cleanup_cgroups(self.0);
            // The pool's bind mount outlives a silod stopped by signal.
            silo_tests::cleanup_mounts(self.0);
            let _ = std::fs::remove_dir_all(self.0);
            let _ = std::fs::remove_file(self.1);
            let _ = std::fs::remove_file(self.2);
        }
    }
    let mut cleanup = Cleanup(&state, &pidfile, &log, None);
    let mut pid = None;
    wait_until(Duration::from_secs(10), || {
        pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        pid.is_some()
    });
    let pid = pid.expect("the shell wrote silod's pid");
    cleanup.3 = Some(pid);
    let sock = state.join("unix.socket");
    let up = wait_until(Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(up, "silod did not bind its socket; log:\n{}", log_text());
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0")).expect("fd 0"),
        PathBuf::from("/dev/null"),
        "silod's stdin"
    );
    assert_eq!(tty_nr(pid), 0, "silod has a controlling terminal");
    // The shell still has its terminal: silod left it, nobody took it away.
    assert_ne!(tty_nr(shell.id()), 0, "the test's shell lost its terminal");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    assert!(
        !fds.iter()
            .any(|t| t.starts_with("/dev/pts") || t == "/dev/tty"),
        "silod holds a terminal fd: {fds:?}"
    );
    drop(cleanup);
    let _ = shell.kill();
    let _ = shell.wait();
    // The master outlives silod's checks: closing it would hang the terminal up.
    drop(pty.master);
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", silo_tests::show(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

#[test]
fn file_pull_drops_setuid_setgid_and_sticky_bits() {
    let d = TestDaemon::start("sec-pull");
    d.import(&busybox_image(false)[0], "busybox");
    ok(&d.silo(&["launch", "busybox", "p1"]));
    let (code, out, err) = d.exec(
        "p1",
        &[
            "sh",
            "-c",
            "echo hi >/root/suid && chmod 4755 /root/suid && mkdir -p /root/tree/sub && \
             echo x >/root/tree/sub/sgid && chmod 2755 /root/tree/sub/sgid && \
             chmod 2755 /root/tree/sub && chmod 1777 /root/tree",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let host = PathBuf::from(format!("{}.pulled", d.dir.display()));
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir(&host).expect("host dir");
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(host.clone());
    let file = host.join("suid");
    ok(&d.silo(&[
        "file",
        "pull",
        "p1/root/suid",
        file.to_str().expect("utf-8"),
    ]));
    assert_eq!(std::fs::read_to_string(&file).expect("pulled"), "hi\n");
    assert_eq!(mode_of(&file), 0o755, "a set-uid file pulled as root");
    ok(&d.silo(&[
        "file",
        "pull",
        "-r",
        "p1/root/tree",
        host.to_str().expect("utf-8"),
    ]));
    assert_eq!(mode_of(&host.join("tree")), 0o777);
    assert_eq!(mode_of(&host.join("tree/sub")), 0o755);
    assert_eq!(mode_of(&host.join("tree/sub/sgid")), 0o755);
    ok(&d.silo(&["delete", "--force", "p1"]));
}
