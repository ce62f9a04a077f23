//! silo-store's rsync transfers (LXD-compatible migration) and id shifting, driven directly
//! as silod (or a compromised silod) would: the test plays silod's relay and the LXD peer
//! with Debian's own rsync and LXD's arguments.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use silo_proto::fdpass::FdReceiver;
use silo_proto::store::{
    IdShift, PoolDriver, RsyncFeatures, RsyncReport, RsyncRole, RsyncSession, StoreClient,
    VolumeKind,
};
use silo_proto::{HelperError, PoolName, VolumeName};
use silo_tests::hostile::Helper;
use silo_tests::HelperDirs;
use tarpc::client::Config;
use tarpc::context;

/// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETFCAP.
const RECEIVE_CAPS: u64 = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 31);
/// DAC_READ_SEARCH.
const SEND_CAPS: u64 = 1 << 2;

struct Store {
    h: Helper,
    rt: tokio::runtime::Runtime,
    c: StoreClient,
    fds: FdReceiver,
    // Last: the state dir goes after the helper that uses it.
    d: HelperDirs,
}

fn ctx() -> context::Context {
    let mut c = context::current();
    c.deadline = Instant::now() + Duration::from_secs(120);
    c
}

fn pool() -> PoolName {
    PoolName::new("p1").expect("name")
}

fn vol(n: &str) -> VolumeName {
    VolumeName::new(n).expect("name")
}

impl Store {
    fn new(name: &str) -> Store {
        Store::with_dirs(HelperDirs::new(name))
    }

    fn with_dirs(d: HelperDirs) -> Store {
        let mut h = Helper::spawn("silo-store", &d.state, &d.policy, false, &[]);
        let fds = FdReceiver::spawn(h.fds.take().expect("fd channel"), "silo-store")
            .expect("fd receiver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let c = rt.block_on(async { StoreClient::new(Config::default(), h.transport()).spawn() });
        rt.block_on(c.create_pool(ctx(), pool(), PoolDriver::Dir))
            .expect("rpc")
            .expect("pool");
        Store { h, rt, c, fds, d }
    }

    fn volume(&self, name: &str) -> PathBuf {
        self.rt
            .block_on(
                self.c
                    .create_volume(ctx(), pool(), VolumeKind::Container, vol(name)),
            )
            .expect("rpc")
            .expect("volume");
        self.d.state.join("storage-pools/p1/containers").join(name)
    }

    fn start(
        &self,
        name: &str,
        role: RsyncRole,
        f: RsyncFeatures,
    ) -> Result<(RsyncSession, OwnedFd), HelperError> {
        let s = self
            .rt
            .block_on(
                self.c
                    .rsync_start(ctx(), pool(), VolumeKind::Container, vol(name), role, f),
            )
            .unwrap_or_else(|e| panic!("rpc: {e}\nsilo-store's log:\n{}", self.h.log_text()))?;
        let mut fds = self
            .fds
            .take(s.fd, Duration::from_secs(10))
            .expect("transport fd");
        Ok((s, fds.remove(0)))
    }

    fn wait(&self, id: u64) -> Result<RsyncReport, HelperError> {
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            match self
                .rt
                .block_on(self.c.rsync_wait(ctx(), id, 5))
                .expect("rpc")
            {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => assert!(Instant::now() < end, "rsync session {id} never ended"),
                Err(e) => return Err(e),
            }
        }
    }

    /// Processes below silo-store's rsync runner (its sessions and what they fork).
    /// No session process is left: the runner kills a session's group when its rsync ends
    /// and reaps it a moment later, so this waits a little for the reaping.
    fn assert_no_sessions(&self) {
        let gone = silo_tests::wait_until(std::time::Duration::from_secs(5), || {
            self.sessions().is_empty()
        });
        let left: Vec<String> = self
            .sessions()
            .iter()
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                format!(
                    "{p} {:?} {:?}",
                    String::from_utf8_lossy(&cmd).replace('\0', " "),
                    status_field(*p, "State")
                )
            })
            .collect();
        assert!(gone, "session processes left: {left:?}");
    }

    fn sessions(&self) -> Vec<u32> {
        let helper = self.h.child.id();
        let runners: Vec<u32> = children(helper)
            .into_iter()
            .filter(|p| children(*p).iter().all(|c| *c != helper))
            .collect();
        let mut out = Vec::new();
        for r in runners {
            let mut todo = children(r);
            while let Some(p) = todo.pop() {
                todo.extend(children(p));
                out.push(p);
            }
        }
        out
    }
}

fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().to_string())
    })
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if status_field(p, "PPid").and_then(|v| v.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn caps_of(pid: u32, key: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, key).expect("cap field"), 16).expect("hex")
}

fn setxattr(p: &Path, name: &str, value: &[u8]) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    let n = std::ffi::CString::new(name).expect("name");
    // SAFETY: C strings and a buffer of the length given.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name} on {}", p.display());
}

fn getxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    let n = std::ffi::CString::new(name).expect("name");
    let mut buf = [0u8; 256];
    // SAFETY: C strings and a buffer of the length given.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

/// A v2 file capability: cap_net_raw, effective.
fn net_raw_cap() -> Vec<u8> {
    let mut v = vec![0u8; 20];
    v[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    v[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    v
}

fn mknod(p: &Path, kind: libc::mode_t, dev: libc::dev_t) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a C string path.
    let r = unsafe { libc::mknod(c.as_ptr(), kind | 0o644, dev) };
    assert_eq!(r, 0, "mknod");
}

/// An LXD-like instance tree: files, a directory, a symlink, a hard link, a set-user-id file
/// of uid 1000, `user.x`, a file capability, a FIFO and a char device.
fn lxd_tree(src: &Path) {
    let r = src.join("rootfs");
    std::fs::create_dir_all(r.join("etc")).expect("mkdir");
    std::fs::create_dir_all(r.join("dev")).expect("mkdir");
    std::fs::write(src.join("metadata.yaml"), b"architecture: x86_64\n").expect("meta");
    std::fs::write(r.join("etc/hostname"), b"lxd-c1\n").expect("file");
    std::fs::write(r.join("big"), vec![42u8; 300_000]).expect("file");
    std::os::unix::fs::symlink("etc/hostname", r.join("link")).expect("symlink");
    std::fs::hard_link(r.join("etc/hostname"), r.join("hard")).expect("link");
    std::fs::write(r.join("suid"), b"#!/bin/false\n").expect("file");
    std::os::unix::fs::chown(r.join("suid"), Some(1000), Some(1000)).expect("chown");
    std::fs::set_permissions(r.join("suid"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod");
    setxattr(&r.join("etc/hostname"), "user.x", b"hello");
    std::fs::write(r.join("ping"), b"\x7fELF").expect("file");
    setxattr(&r.join("ping"), "security.capability", &net_raw_cap());
    mknod(&r.join("fifo"), libc::S_IFIFO, 0);
    mknod(&r.join("dev/null"), libc::S_IFCHR, libc::makedev(1, 3));
}

/// LXD's sender (`rsync -ar --devices --numeric-ids --partial --sparse [features] <src>/
/// localhost:/tmp/foo -e <netcat>`) whose remote shell reaches `sock`: silo-store's relay
/// binary plays `lxd netcat`, with the socket silod would relay on its fd 3.
fn lxd_send(src: &Path, sock: OwnedFd, f: RsyncFeatures) -> std::process::Output {
    let mut a: Vec<String> = ["-ar", "--devices", "--numeric-ids", "--partial", "--sparse"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if f.xattrs {
        a.push("--xattrs".into());
        a.push("--filter=-x security.selinux".into());
    }
    if f.delete {
        a.push("--delete".into());
    }
    if f.compress {
        a.push("--compress".into());
        a.push("--compress-level=2".into());
    }
    a.push(format!("{}/", src.display()));
    a.push("localhost:/tmp/foo".into());
    a.push("-e".into());
    a.push(format!(
        "{} --rsync-relay",
        silo_tests::bin("silo-store").display()
    ));
    let raw = sock.as_raw_fd();
    let mut cmd = Command::new("/usr/bin/rsync");
    cmd.args(&a).stdin(Stdio::null());
    // SAFETY: dup2 in the forked child before exec, on an fd open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run rsync");
    drop(sock);
    out
}

fn all() -> RsyncFeatures {
    RsyncFeatures {
        xattrs: true,
        delete: true,
        compress: true,
        checksum: false,
    }
}

#[test]
fn rsync_receives_an_lxd_tree_and_skips_device_nodes() {
    let s = Store::new("rsync-recv");
    let v = s.volume("c1");
    let src = tempfile::tempdir().expect("src");
    lxd_tree(src.path());
    // The sender's top directory is open to all and someone else's: rsync gives the
    // volume's directory that mode and owner, and silo-store takes it back at the end.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        std::os::unix::fs::chown(src.path(), Some(1234), Some(1234)).expect("chown");
    }
    let (sess, sock) = s.start("c1", RsyncRole::Receive, all()).expect("start");
    let out = lxd_send(src.path(), sock, all());
    assert!(
        out.status.success(),
        "LXD's sender failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = s.wait(sess.id).expect("the receive succeeds");
    assert_eq!(
        rep.skipped_devices, 1,
        "the char device is skipped and counted"
    );
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&v).expect("volume");
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o700, 0, 0),
            "the volume's directory is root's again"
        );
    }
    let r = v.join("rootfs");
    assert_eq!(
        std::fs::read(r.join("etc/hostname")).expect("file"),
        b"lxd-c1\n"
    );
    assert_eq!(std::fs::read(r.join("hard")).expect("file"), b"lxd-c1\n");
    assert_eq!(
        std::fs::read(r.join("big")).expect("file"),
        vec![42u8; 300_000]
    );
    assert_eq!(
        std::fs::read_link(r.join("link")).expect("link"),
        Path::new("etc/hostname")
    );
    assert_eq!(
        getxattr(&r.join("etc/hostname"), "user.x").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        getxattr(&r.join("ping"), "security.capability"),
        Some(net_raw_cap()),
        "file capability kept"
    );
    let m = std::fs::symlink_metadata(r.join("suid")).expect("suid");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o4755));
    assert!(std::fs::symlink_metadata(r.join("fifo"))
        .expect("fifo")
        .file_type()
        .is_fifo());
    assert!(
        std::fs::symlink_metadata(r.join("dev/null")).is_err(),
        "no device node made"
    );
    assert!(v.join("metadata.yaml").is_file());
    s.assert_no_sessions();
}

#[test]
fn rsync_sends_a_volume_to_an_lxd_receiver() {
    let s = Store::new("rsync-send");
    let v = s.volume("c2");
    lxd_tree(&v);
    // Device nodes in a volume are not silo's (nodev), but a sent tree may hold them.
    std::fs::remove_file(v.join("rootfs/dev/null")).expect("rm");
    // Unreadable to its owner: the sender reads it with DAC_READ_SEARCH.
    std::fs::write(v.join("rootfs/secret"), b"shadow").expect("secret");
    std::fs::set_permissions(
        v.join("rootfs/secret"),
        std::fs::Permissions::from_mode(0o000),
    )
    .expect("chmod");
    let dst = tempfile::tempdir().expect("dst");
    let (sess, sock) = s.start("c2", RsyncRole::Send, all()).expect("start");
    // LXD's receiver, on the socket silod would relay.
    let sock2 = sock.try_clone().expect("dup");
    let out = Command::new("/usr/bin/rsync")
        .args([
            "--server",
            "-vlogDtpre.iLsfx",
            "--numeric-ids",
            "--devices",
            "--partial",
            "--sparse",
            "--xattrs",
            "--filter=-x security.selinux",
            "--delete",
            "--compress",
            "--compress-level=2",
            ".",
        ])
        .arg(format!("{}/", dst.path().display()))
        .stdin(Stdio::from(sock))
        .stdout(Stdio::from(sock2))
        .stderr(Stdio::piped())
        .output()
        .expect("rsync --server");
    assert!(
        out.status.success(),
        "LXD's receiver failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait(sess.id).expect("the send succeeds");
    let r = dst.path().join("rootfs");
    assert_eq!(
        std::fs::read(r.join("etc/hostname")).expect("file"),
        b"lxd-c1\n"
    );
    assert_eq!(std::fs::read(r.join("secret")).expect("file"), b"shadow");
    assert_eq!(
        getxattr(&r.join("etc/hostname"), "user.x").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        getxattr(&r.join("ping"), "security.capability"),
        Some(net_raw_cap())
    );
    let m = std::fs::symlink_metadata(r.join("suid")).expect("suid");
    assert_eq!((m.uid(), m.mode() & 0o7777), (1000, 0o4755));
    assert!(dst.path().join("metadata.yaml").is_file());
    s.assert_no_sessions();
}

#[test]
fn rsync_receive_never_writes_outside_the_volume() {
    let s = Store::new("rsync-hostile");
    let v = s.volume("c3");
    let victim = tempfile::tempdir().expect("victim");
    std::fs::write(victim.path().join("keep"), b"precious").expect("keep");
    // First transfer: `rootfs/etc` is a symlink to a host directory.
    let one = tempfile::tempdir().expect("one");
    std::fs::create_dir(one.path().join("rootfs")).expect("mkdir");
    std::os::unix::fs::symlink(victim.path(), one.path().join("rootfs/etc")).expect("symlink");
    let (a, sock) = s.start("c3", RsyncRole::Receive, all()).expect("start");
    let out = lxd_send(one.path(), sock, all());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait(a.id).expect("a symlink is fine to receive");
    // Second: files under `etc/`, which on the receiver is that symlink.
    let two = tempfile::tempdir().expect("two");
    std::fs::create_dir_all(two.path().join("rootfs/etc")).expect("mkdir");
    std::fs::write(two.path().join("rootfs/etc/keep"), b"owned").expect("file");
    std::fs::write(two.path().join("rootfs/etc/planted"), b"owned").expect("file");
    let (b, sock) = s.start("c3", RsyncRole::Receive, all()).expect("start");
    let _ = lxd_send(two.path(), sock, all());
    let second = s.wait(b.id);
    assert_eq!(
        std::fs::read(victim.path().join("keep")).expect("keep"),
        b"precious"
    );
    assert!(
        !victim.path().join("planted").exists(),
        "wrote through the symlink"
    );
    assert_eq!(
        std::fs::read_dir(victim.path()).expect("ls").count(),
        1,
        "nothing new in the host directory"
    );
    // rsync replaced the symlink with the directory the sender listed, inside the volume.
    second.expect("the second receive");
    let etc = std::fs::symlink_metadata(v.join("rootfs/etc")).expect("etc");
    assert!(etc.is_dir(), "{etc:?}");
    assert_eq!(
        std::fs::read(v.join("rootfs/etc/planted")).expect("planted"),
        b"owned"
    );
}

#[test]
fn rsync_refuses_symlinked_and_missing_volumes() {
    let s = Store::new("rsync-names");
    let outside = tempfile::tempdir().expect("outside");
    let kdir = s.d.state.join("storage-pools/p1/containers");
    s.volume("real");
    std::os::unix::fs::symlink(outside.path(), kdir.join("c4")).expect("plant");
    for role in [RsyncRole::Receive, RsyncRole::Send] {
        let e = s.start("c4", role, all()).expect_err("a symlinked volume");
        assert!(
            e.to_string().contains("symlink") || e.to_string().contains("c4"),
            "{e}"
        );
        let e = s.start("nope", role, all()).expect_err("a missing volume");
        assert!(matches!(e, HelperError::NotFound { .. }), "{e:?}");
    }
    assert_eq!(std::fs::read_dir(outside.path()).expect("ls").count(), 0);
    s.assert_no_sessions();
    let e =
        s.rt.block_on(s.c.rsync_wait(ctx(), 12345, 1))
            .expect("rpc")
            .expect_err("unknown session");
    assert!(matches!(e, HelperError::NotFound { .. }), "{e:?}");
}

/// The rsync process of a session (not its forks or the relay).
fn rsync_pid(s: &Store, want: &str) -> u32 {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = s.sessions().into_iter().find(|p| {
            let c = cmdline(*p);
            c.starts_with("rsync ") && c.contains(want)
        }) {
            // Past execve (the comm is rsync's once it runs).
            if status_field(p, "Name").as_deref() == Some("rsync") {
                return p;
            }
        }
        assert!(Instant::now() < end, "no rsync session process found");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_confined(pid: u32, caps: u64, what: &str) {
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(caps_of(pid, key), caps, "{what}: {key}");
    }
    for key in ["CapInh", "CapAmb"] {
        assert_eq!(caps_of(pid, key), 0, "{what}: {key}");
    }
    assert_eq!(
        status_field(pid, "NoNewPrivs").as_deref(),
        Some("1"),
        "{what}"
    );
    assert_eq!(status_field(pid, "Seccomp").as_deref(), Some("2"), "{what}");
}

#[test]
fn rsync_sessions_are_confined_bounded_and_aborted() {
    let s = Store::new("rsync-conf");
    let v = s.volume("c5");
    // A receiver waiting for its peer.
    let (recv, _sock_r) = s
        .start("c5", RsyncRole::Receive, RsyncFeatures::default())
        .expect("start");
    let pid = rsync_pid(&s, "--server");
    assert_confined(pid, RECEIVE_CAPS, "receiver");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd"),
        v.canonicalize().expect("volume")
    );
    let fds: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(fds.len(), 3, "only stdin, stdout, stderr: {fds:?}");
    // A sender and its relay waiting for theirs.
    let (send, _sock_s) = s
        .start("c5", RsyncRole::Send, RsyncFeatures::default())
        .expect("start");
    let spid = rsync_pid(&s, "-ar");
    assert_confined(spid, SEND_CAPS, "sender");
    let end = Instant::now() + Duration::from_secs(10);
    let relay = loop {
        if let Some(r) = children(spid)
            .into_iter()
            .find(|p| cmdline(*p).contains("--rsync-relay"))
        {
            break r;
        }
        assert!(Instant::now() < end, "the sender never started its relay");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_confined(relay, SEND_CAPS, "relay");
    // At most 8 at once.
    let mut more = Vec::new();
    for _ in 0..6 {
        more.push(
            s.start("c5", RsyncRole::Receive, RsyncFeatures::default())
                .expect("start"),
        );
    }
    let e = s
        .start("c5", RsyncRole::Receive, RsyncFeatures::default())
        .expect_err("a ninth");
    assert!(matches!(e, HelperError::InUse { .. }), "{e:?}");
    // Aborting kills each session and everything it forked, and forgets it.
    let ids: Vec<u64> = [recv.id, send.id]
        .into_iter()
        .chain(more.iter().map(|(m, _)| m.id))
        .collect();
    for id in &ids {
        s.rt.block_on(s.c.rsync_abort(ctx(), *id))
            .expect("rpc")
            .expect("abort");
    }
    s.assert_no_sessions();
    for p in [pid, spid, relay] {
        assert!(!Path::new(&format!("/proc/{p}")).exists(), "{p} survived");
    }
    let e =
        s.rt.block_on(s.c.rsync_wait(ctx(), recv.id, 1))
            .expect("rpc")
            .expect_err("forgotten");
    assert!(matches!(e, HelperError::NotFound { .. }), "{e:?}");
    // Slots are free again.
    let (again, _sock) = s
        .start("c5", RsyncRole::Receive, RsyncFeatures::default())
        .expect("start after aborts");
    s.rt.block_on(s.c.rsync_abort(ctx(), again.id))
        .expect("rpc")
        .expect("abort");
}

#[test]
fn shift_volume_maps_owners_and_keeps_setuid_bits() {
    let s = Store::new("rsync-shift");
    let v = s.volume("c6");
    let r = v.join("rootfs");
    std::fs::create_dir_all(r.join("home/u")).expect("mkdir");
    std::fs::write(v.join("metadata.yaml"), b"architecture: x86_64\n").expect("meta");
    std::fs::write(r.join("suid"), b"x").expect("file");
    std::fs::write(r.join("home/u/f"), b"x").expect("file");
    std::fs::write(r.join("ping"), b"x").expect("file");
    std::os::unix::fs::symlink("/etc/passwd", r.join("home/u/l")).expect("symlink");
    let own = |p: &Path, u: u32, g: u32| {
        std::os::unix::fs::lchown(p, Some(u), Some(g)).expect("chown");
    };
    for p in [r.clone(), r.join("home"), r.join("ping")] {
        own(&p, 1_000_000, 1_000_000);
    }
    own(&r.join("suid"), 1_000_000, 1_000_000);
    std::fs::set_permissions(r.join("suid"), std::fs::Permissions::from_mode(0o6755))
        .expect("chmod");
    own(&r.join("home/u"), 1_001_000, 1_001_000);
    own(&r.join("home/u/f"), 1_001_000, 1_000_005);
    own(&r.join("home/u/l"), 1_001_000, 1_001_000);
    setxattr(&r.join("ping"), "security.capability", &net_raw_cap());
    // A name that is not UTF-8.
    let latin1 = r.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9"));
    std::fs::write(&latin1, b"x").expect("file");
    own(&latin1, 1_000_033, 1_000_033);
    let map = vec![IdShift {
        isuid: true,
        isgid: true,
        hostid: 1_000_000,
        nsid: 0,
        range: 65536,
    }];
    let shift = |map: Vec<IdShift>| {
        s.rt.block_on(s.c.shift_volume(ctx(), pool(), VolumeKind::Container, vol("c6"), map))
            .expect("rpc")
    };
    let n = shift(map.clone()).expect("shift");
    assert_eq!(n, 8, "rootfs, home, suid, ping, u, f, l, caf\\xe9");
    let m = std::fs::symlink_metadata(&latin1).expect("latin1");
    assert_eq!((m.uid(), m.gid()), (33, 33));
    let ids = |p: &Path| {
        let m = std::fs::symlink_metadata(p).expect("meta");
        (m.uid(), m.gid())
    };
    assert_eq!(ids(&r), (0, 0));
    assert_eq!(ids(&r.join("home/u")), (1000, 1000));
    assert_eq!(ids(&r.join("home/u/f")), (1000, 5));
    assert_eq!(ids(&r.join("home/u/l")), (1000, 1000), "the symlink itself");
    assert_eq!(ids(Path::new("/etc/passwd")), (0, 0), "not followed");
    let m = std::fs::metadata(r.join("suid")).expect("suid");
    assert_eq!(
        (m.uid(), m.mode() & 0o7777),
        (0, 0o6755),
        "set-id bits kept"
    );
    assert_eq!(
        getxattr(&r.join("ping"), "security.capability"),
        Some(net_raw_cap()),
        "file capability kept"
    );
    assert_eq!(
        ids(&v.join("metadata.yaml")),
        (0, 0),
        "outside rootfs: untouched"
    );
    // Already the instance's: an empty map changes nothing.
    assert_eq!(shift(Vec::new()).expect("no-op"), 0);
    // An id the map does not cover is named, with its path.
    std::fs::write(r.join("stray"), b"x").expect("file");
    own(&r.join("stray"), 2_000_000, 0);
    let e = shift(Vec::new()).expect_err("outside 0..65536");
    assert!(
        e.to_string().contains("2000000") && e.to_string().contains("stray"),
        "{e}"
    );
    own(&r.join("stray"), 1_000_001, 1_000_001);
    own(&r.join("home"), 1_000_000, 1_000_000);
    let e = shift(map).expect_err("0 is not in the map");
    assert!(e.to_string().contains("uid 0"), "{e}");
    assert_eq!(
        ids(&r.join("stray")),
        (1_000_001, 1_000_001),
        "a refused map changes nothing"
    );
}

#[test]
fn rsync_sessions_die_with_silo_store() {
    let mut s = Store::new("rsync-death");
    s.volume("c7");
    let (_recv, _sock) = s
        .start("c7", RsyncRole::Receive, RsyncFeatures::default())
        .expect("start");
    let pid = rsync_pid(&s, "--server");
    let runner = status_field(pid, "PPid").expect("ppid");
    s.h.child.kill().expect("kill silo-store");
    let _ = s.h.child.wait();
    let end = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists()
        || Path::new(&format!("/proc/{runner}")).exists()
    {
        assert!(
            Instant::now() < end,
            "the runner ({runner}) or rsync ({pid}) outlived silo-store"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rsync_receive_stops_at_the_dir_pool_reserve() {
    // The state dir on a filesystem of its own, so that other tests cannot move its free
    // space; 32 MiB of room above the reserve, and 48 MiB of incompressible data sent.
    let d = HelperDirs::new("rsync-reserve");
    nix::mount::mount(
        Some("tmpfs"),
        &d.state,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=256m,mode=0755"),
    )
    .expect("tmpfs for the state dir");
    let st = nix::sys::statvfs::statvfs(&d.state).expect("statvfs");
    let avail = st.blocks_available() * st.fragment_size();
    std::fs::write(
        &d.policy,
        format!("dir_pool_reserve = {}\n", avail - (32 << 20)),
    )
    .expect("policy");
    let s = Store::with_dirs(d);
    s.volume("c8");
    let src = tempfile::tempdir().expect("src");
    std::fs::create_dir(src.path().join("rootfs")).expect("mkdir");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..(48 << 20) / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(src.path().join("rootfs/big"), &data).expect("big");
    let (sess, sock) = s
        .start("c8", RsyncRole::Receive, RsyncFeatures::default())
        .expect("start");
    let _ = lxd_send(src.path(), sock, RsyncFeatures::default());
    let e = s.wait(sess.id).expect_err("crosses the reserve");
    assert!(matches!(e, HelperError::Denied { .. }), "{e:?}");
    assert!(e.to_string().contains("dir_pool_reserve"), "{e}");
    s.assert_no_sessions();
}

#[test]
fn rsync_reports_a_broken_peer_as_rsyncs_own_error() {
    let s = Store::new("rsync-garbage");
    s.volume("c9");
    for role in [RsyncRole::Receive, RsyncRole::Send] {
        let (sess, sock) = s.start("c9", role, all()).expect("start");
        let mut f = std::fs::File::from(sock);
        // Not rsync's protocol, then end of stream: what a broken or hostile peer sends.
        let _ = std::io::Write::write_all(&mut f, &[0xff; 4096]);
        let _ = nix::sys::socket::shutdown(f.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        let e = s.wait(sess.id).expect_err("a failed transfer");
        let text = e.to_string();
        // rsync's own exit (a protocol error), with its message: never a seccomp kill
        // (signal 31) on its error paths.
        assert!(text.contains("rsync exited with code"), "{role:?}: {text}");
        assert!(!text.contains("signal"), "{role:?}: {text}");
        drop(f);
    }
    s.assert_no_sessions();
}
