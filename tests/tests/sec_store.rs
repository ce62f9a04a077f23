//! silo-store's security fixes: set-user-id files in volumes are inert on the host (pools on
//! nosuid,nodev mounts, and no fd of a volume's file ever reaches silod); squashfs rootfs are
//! read in user space, never mounted; dir pools keep the policy's reserve free.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use silo_proto::fdpass::FdReceiver;
use silo_proto::store::{FileKind, FilePut, PoolDriver, StoreClient, VolumeKind};
use silo_proto::{HelperError, ImageFingerprint, PoolName, VolumeName};
use silo_tests::hostile::Helper;
use silo_tests::TestDaemon;
use tarpc::client::Config;
use tarpc::context;

/// Runs coreutils' `id -u` from the file behind `fd` (its /proc magic link: no directory on
/// the way is searched, as with a leaked fd) as uid/gid 65534 with no groups; answers what it
/// printed, or the exec's error.
fn euid_running_as_nobody(fd: std::os::fd::RawFd) -> Result<String, std::io::Error> {
    let mut cmd = Command::new(format!("/proc/self/fd/{fd}"));
    cmd.arg0("id").arg("-u");
    // SAFETY: between fork and exec only async-signal-safe calls on plain integers.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(65534, 65534, 65534) != 0
                || libc::setresuid(65534, 65534, 65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whatever fd silod was handed, running it as an unprivileged user never gives euid 0: it
/// either runs without set-user-id or cannot be executed at all.
fn assert_never_runs_as_root(fd: &OwnedFd) {
    match euid_running_as_nobody(fd.as_raw_fd()) {
        Ok(euid) => assert_ne!(euid, "0", "the fd ran set-user-id root"),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::ENOEXEC)),
            "{e}"
        ),
    }
}

fn file_type(fd: &OwnedFd) -> u32 {
    nix::sys::stat::fstat(fd).expect("fstat").st_mode & libc::S_IFMT
}

/// A Debian instance c1 in which container root made `/usr/local/bin/sid`, a set-user-id
/// root copy of coreutils' `id` (Debian's busybox drops set-user-id privileges by itself, so
/// it could not tell a working bit from an inert one).
fn debian_with_setuid_id(name: &str) -> TestDaemon {
    let d = TestDaemon::start(name);
    d.import(&silo_tests::debian_image(), "debian");
    d.launch("debian", "c1");
    let (code, out, err) = d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "cp /usr/bin/id /usr/local/bin/sid && chmod 4755 /usr/local/bin/sid",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    d
}

/// (a) A set-user-id root program made by container root is on a nosuid mount on the host,
/// and running it from its host file as an unprivileged user does not give euid 0.
#[test]
fn setuid_files_in_volumes_are_inert_on_the_host() {
    let d = debian_with_setuid_id("sec-suid-host");
    let host = d
        .dir
        .join("storage-pools/default/containers/c1/rootfs/usr/local/bin/sid");
    let md = std::fs::metadata(&host).expect("the host file");
    // The premise: on disk it is a set-user-id file of host root (ids are not shifted).
    assert_eq!((md.mode() & 0o4000, md.uid()), (0o4000, 0), "{md:?}");
    let opts = silo_tests::mount_options_of(&d.dir.join("storage-pools/default/containers"));
    assert!(
        opts.contains("nosuid") && opts.contains("nodev"),
        "the pool's volumes are on a nosuid,nodev mount: {opts}"
    );
    let f = std::fs::File::open(&host).expect("open as root");
    let euid = euid_running_as_nobody(f.as_raw_fd()).expect("it runs, without set-user-id");
    assert_eq!(euid, "65534", "the host file ran set-user-id root");
}

/// (c) Inside the container, set-user-id still works: a non-root user there runs the program
/// with euid 0 (the container's root). Needs silo-priv to clear nosuid on the instance's own
/// idmapped clone of its rootfs.
#[test]
fn setuid_still_works_inside_the_container() {
    let d = debian_with_setuid_id("sec-suid-inside");
    let (code, out, err) = d.exec_as("c1", &["/usr/local/bin/sid", "-u"], 1000);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        "0",
        "set-user-id root inside the container (silo-priv must clear MOUNT_ATTR_NOSUID on the \
         instance's rootfs clone)"
    );
}

/// A raw silo-store and its fd channel, as a compromised silod holds them.
struct Raw {
    state: PathBuf,
    policy: PathBuf,
    helper: Helper,
    client: StoreClient,
    fds: FdReceiver,
    rt: tokio::runtime::Runtime,
}

impl Raw {
    fn new(name: &str, policy: Option<&str>) -> Raw {
        Raw::new_with(name, |_| policy.map(str::to_string), None)
    }

    /// With the state dir on a tmpfs of `tmpfs` bytes when given (so free space is this
    /// test's alone), and a policy written after the state dir exists.
    fn new_with(
        name: &str,
        policy: impl FnOnce(&Path) -> Option<String>,
        tmpfs: Option<u64>,
    ) -> Raw {
        let state = silo_tests::unique_dir(name);
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).expect("state dir");
        if let Some(size) = tmpfs {
            let opts = format!("size={size},mode=0755");
            nix::mount::mount(
                Some("tmpfs"),
                &state,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            )
            .expect("tmpfs for the state dir");
        }
        std::fs::create_dir_all(state.join("images")).expect("images");
        let policy = policy(&state);
        let policy = policy.as_deref();
        let silo = nix::unistd::User::from_name("silo")
            .ok()
            .flatten()
            .map(|u| u.uid)
            .unwrap_or(nix::unistd::Uid::from_raw(65534));
        nix::unistd::chown(&state.join("images"), Some(silo), None).expect("chown");
        let policy_path = PathBuf::from(format!("{}.policy.toml", state.display()));
        if let Some(p) = policy {
            std::fs::write(&policy_path, p).expect("policy");
        }
        let mut helper = Helper::spawn("silo-store", &state, &policy_path, false, &[]);
        let fds = FdReceiver::spawn(helper.fds.take().expect("fd channel"), "silo-store")
            .expect("fd receiver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let client =
            rt.block_on(async { StoreClient::new(Config::default(), helper.transport()).spawn() });
        rt.block_on(client.create_pool(ctx(), pool(), PoolDriver::Dir))
            .expect("rpc")
            .unwrap_or_else(|e| panic!("pool: {e}\n{}", helper.log_text()));
        Raw {
            state,
            policy: policy_path,
            helper,
            client,
            fds,
            rt,
        }
    }

    fn pool_dir(&self) -> PathBuf {
        self.state.join("storage-pools/p")
    }

    /// Stores an upload as silod would (owned by silod's user); answers its fingerprint.
    fn upload(&self, meta: &[u8], rootfs: &[u8]) -> ImageFingerprint {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(meta);
        h.update(rootfs);
        let fp = ImageFingerprint::new(hex::encode(h.finalize())).expect("fp");
        let silo = nix::unistd::User::from_name("silo")
            .ok()
            .flatten()
            .map(|u| u.uid)
            .unwrap_or(nix::unistd::Uid::from_raw(65534));
        for (name, bytes) in [(fp.to_string(), meta), (format!("{fp}.rootfs"), rootfs)] {
            let p = self.state.join("images").join(name);
            std::fs::write(&p, bytes).expect("write");
            nix::unistd::chown(&p, Some(silo), None).expect("chown");
        }
        fp
    }

    fn unpack(
        &self,
        fp: &ImageFingerprint,
    ) -> Result<silo_proto::store::UnpackReport, HelperError> {
        self.rt
            .block_on(self.client.unpack_image(ctx(), pool(), fp.clone()))
            .expect("rpc")
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        silo_tests::cleanup_mounts(&self.state);
        let _ = std::fs::remove_dir_all(&self.state);
        let _ = std::fs::remove_file(&self.policy);
    }
}

fn ctx() -> context::Context {
    let mut c = context::current();
    c.deadline = std::time::Instant::now() + Duration::from_secs(300);
    c
}

fn pool() -> PoolName {
    PoolName::new("p").expect("name")
}

/// (b) A compromised silod asking for a set-user-id root file gets its bytes through a pipe,
/// never an fd of the file; writing one gets a socket, never the file's fd. The pool is a
/// nosuid bind of its own, gone with the pool.
#[test]
fn a_hostile_daemon_gets_no_fd_of_a_volume_file() {
    let r = Raw::new("sec-fdget", None);
    let pool_dir = r.pool_dir();
    let opts = silo_tests::mount_options_of(&pool_dir);
    assert!(
        opts.contains("nosuid") && opts.contains("nodev"),
        "a dir pool is a nosuid,nodev mount: {opts}"
    );
    let vol = VolumeName::new("c1").expect("name");
    r.rt.block_on(
        r.client
            .create_volume(ctx(), pool(), VolumeKind::Container, vol.clone()),
    )
    .expect("rpc")
    .expect("volume");
    let rootfs = pool_dir.join("containers/c1/rootfs");
    std::fs::create_dir(&rootfs).expect("rootfs");
    let id = std::fs::read("/usr/bin/id").expect("id");
    std::fs::write(rootfs.join("sid"), &id).expect("sid");
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &rootfs.join("sid"),
        nix::sys::stat::Mode::from_bits_truncate(0o4755),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .expect("chmod");

    let meta =
        r.rt.block_on(r.client.file_get(ctx(), pool(), vol.clone(), "/sid".into()))
            .expect("rpc")
            .expect("file_get");
    assert_eq!(meta.mode & 0o4000, 0o4000);
    let mut got = r
        .fds
        .take(meta.fd.expect("a ticket"), Duration::from_secs(10))
        .expect("fds");
    assert_eq!(got.len(), 1);
    let fd = got.pop().expect("fd");
    assert_eq!(
        file_type(&fd),
        libc::S_IFIFO,
        "silod must get a pipe, not the file"
    );
    assert_never_runs_as_root(&fd);
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut bytes)
        .expect("read");
    assert_eq!(bytes, id, "the pipe carries the file's contents");

    // Writing: a socket whose data silo-store writes, and an answer once it is in place.
    let put = FilePut {
        kind: FileKind::File,
        uid: 0,
        gid: 0,
        mode: 0o4755,
        append: false,
        target: String::new(),
    };
    let ticket =
        r.rt.block_on(
            r.client
                .file_put(ctx(), pool(), vol.clone(), "/new".into(), put),
        )
        .expect("rpc")
        .expect("file_put")
        .expect("a ticket");
    let fd = r
        .fds
        .take(ticket, Duration::from_secs(10))
        .expect("fds")
        .pop()
        .expect("fd");
    assert_eq!(
        file_type(&fd),
        libc::S_IFSOCK,
        "silod must get a socket, not the file"
    );
    assert_never_runs_as_root(&fd);
    let mut s = std::os::unix::net::UnixStream::from(fd);
    s.write_all(b"new contents").expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    assert_eq!(answer, "ok");
    assert_eq!(
        std::fs::read(rootfs.join("new")).expect("new"),
        b"new contents"
    );

    // A packed image goes out as a read-only open of a root-only file: not writable, not
    // runnable.
    let ticket =
        r.rt.block_on(r.client.pack_volume(
            ctx(),
            pool(),
            VolumeKind::Container,
            vol.clone(),
            silo_proto::store::PackCompression::None,
            silo_proto::store::PackMeta {
                architecture: "x86_64".into(),
                creation_date: 1,
                properties: Default::default(),
            },
        ))
        .expect("rpc")
        .unwrap_or_else(|e| panic!("pack: {e}\n{}", r.helper.log_text()));
    let fd = r
        .fds
        .take(ticket, Duration::from_secs(10))
        .expect("fds")
        .pop()
        .expect("fd");
    let fl = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).expect("getfl");
    assert_eq!(fl & libc::O_ACCMODE, libc::O_RDONLY, "read-only");
    let st = nix::sys::stat::fstat(&fd).expect("fstat");
    assert_eq!((st.st_mode & 0o7777, st.st_uid, st.st_nlink), (0o600, 0, 0));
    assert_never_runs_as_root(&fd);

    // Deleting the pool takes its bind away: nothing stays mounted.
    r.rt.block_on(
        r.client
            .delete_volume(ctx(), pool(), VolumeKind::Container, vol),
    )
    .expect("rpc")
    .expect("delete volume");
    r.rt.block_on(r.client.delete_pool(ctx(), pool()))
        .expect("rpc")
        .unwrap_or_else(|e| panic!("delete pool: {e}\n{}", r.helper.log_text()));
    assert!(
        silo_tests::mounts_under(&r.state).is_empty(),
        "{:?}",
        silo_tests::mounts_under(&r.state)
    );
    assert!(!pool_dir.exists());
}

/// A split image's metadata half (a gzipped tarball with metadata.yaml).
fn meta_tarball(dir: &Path) -> Vec<u8> {
    let m = dir.join("meta");
    std::fs::create_dir_all(&m).expect("meta");
    std::fs::write(
        m.join("metadata.yaml"),
        "architecture: x86_64\ncreation_date: 1\n",
    )
    .expect("metadata");
    let out = dir.join("meta.tar.gz");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&m)
        .arg("-czf")
        .arg(&out)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    std::fs::read(&out).expect("read")
}

fn mksquashfs(tree: &Path, out: &Path, extra: &[&str]) -> Vec<u8> {
    let o = Command::new("mksquashfs")
        .arg(tree)
        .arg(out)
        .args(["-noappend", "-quiet", "-no-progress"])
        .args(extra)
        .output()
        .expect("mksquashfs (squashfs-tools)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).expect("read")
}

fn squashfs_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(" - ").nth(1).unwrap_or("").starts_with("squashfs "))
        .map(str::to_string)
        .collect()
}

fn images_in(r: &Raw) -> Vec<String> {
    std::fs::read_dir(r.pool_dir().join("images"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A squashfs rootfs unpacks without the kernel mounting anything, with the tarball rules:
/// set-user-id bits kept, device nodes skipped, symlinks stored (never followed).
#[test]
fn squashfs_rootfs_is_read_in_user_space() {
    let r = Raw::new("sec-squash", None);
    let mounts_before = squashfs_mounts();
    let t = tempfile::tempdir().expect("tmp");
    let tree = t.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).expect("mkdir");
    std::fs::create_dir_all(tree.join("dev")).expect("mkdir");
    std::fs::write(tree.join("bin/x"), "hello").expect("x");
    std::fs::write(tree.join("bin/s"), "suid").expect("s");
    std::fs::set_permissions(
        tree.join("bin/s"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .expect("chmod");
    std::os::unix::fs::symlink("/etc/shadow", tree.join("escape")).expect("symlink");
    std::os::unix::fs::symlink("../../../../../../../../tmp", tree.join("up")).expect("symlink");
    nix::sys::stat::mknod(
        &tree.join("dev/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod");
    let sq = mksquashfs(&tree, &t.path().join("r.squashfs"), &[]);
    let fp = r.upload(&meta_tarball(t.path()), &sq);
    let rep = r
        .unpack(&fp)
        .unwrap_or_else(|e| panic!("{e}\n{}", r.helper.log_text()));
    assert_eq!(rep.skipped_devices, 1, "{rep:?}");
    let root = r.pool_dir().join("images").join(fp.as_str()).join("rootfs");
    assert_eq!(
        std::fs::read_to_string(root.join("bin/x")).expect("x"),
        "hello"
    );
    let m = std::fs::metadata(root.join("bin/s")).expect("s");
    assert_eq!(m.mode() & 0o7777, 0o4755, "set-user-id kept as a tarball's");
    assert_eq!(
        std::fs::read_link(root.join("escape")).expect("link"),
        PathBuf::from("/etc/shadow")
    );
    assert!(std::fs::read_link(root.join("up")).is_ok());
    assert!(
        !root.join("dev/null").exists(),
        "device nodes are never made"
    );
    assert_eq!(squashfs_mounts(), mounts_before, "nothing mounted");
    assert!(silo_tests::loops_under(&r.state).is_empty());
}

/// A split image whose rootfs is a squashfs imports and launches through the API, and no
/// squashfs is ever mounted on the way.
#[test]
fn squashfs_image_imports_and_launches() {
    let d = TestDaemon::start("sec-squash-launch");
    let mounts_before = squashfs_mounts();
    let split = silo_tests::busybox_image(true);
    let t = tempfile::tempdir().expect("tmp");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-xzf")
        .arg(&split[1])
        .status()
        .expect("tar");
    assert!(st.success());
    let sq = t.path().join("rootfs.squashfs");
    mksquashfs(&tree, &sq, &[]);
    let o = d.lxc(&[
        "image",
        "import",
        &split[0].to_string_lossy(),
        &sq.to_string_lossy(),
        "--alias",
        "sq",
    ]);
    assert!(o.status.success(), "{}", silo_tests::show(&o));
    d.launch("sq", "c1");
    assert_eq!(d.status("c1"), "Running");
    let (code, out, err) = d.exec("c1", &["busybox", "true"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(squashfs_mounts(), mounts_before, "nothing mounted");
    assert!(silo_tests::loops_under(&d.dir).is_empty());
}

/// Hostile squashfs rootfs are refused (or contained) with a clear error and nothing left.
#[test]
fn hostile_squashfs_is_refused_or_contained() {
    let mut r = Raw::new(
        "sec-squash-bad",
        Some("max_image_size = 67108864\nmax_image_entries = 1000\n"),
    );
    let mounts_before = squashfs_mounts();
    let t = tempfile::tempdir().expect("tmp");
    let meta = meta_tarball(t.path());

    // A sparse file far beyond max_image_size: refused before a byte is decompressed.
    let tree = t.path().join("sparse");
    std::fs::create_dir_all(&tree).expect("mkdir");
    let f = std::fs::File::create(tree.join("big")).expect("big");
    f.set_len(1 << 30).expect("sparse");
    let sq = mksquashfs(&tree, &t.path().join("sparse.squashfs"), &[]);
    let fp = r.upload(&meta, &sq);
    let e = r.unpack(&fp).expect_err("over the limit");
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
    assert!(images_in(&r).is_empty(), "{:?}", images_in(&r));

    // Too many entries.
    let tree = t.path().join("many");
    std::fs::create_dir_all(&tree).expect("mkdir");
    for i in 0..1100 {
        std::fs::write(tree.join(format!("f{i}")), "").expect("f");
    }
    let sq = mksquashfs(&tree, &t.path().join("many.squashfs"), &[]);
    let fp = r.upload(&meta, &sq);
    let e = r.unpack(&fp).expect_err("too many entries");
    assert!(e.to_string().contains("entries"), "{e}");
    assert!(images_in(&r).is_empty());

    // A corrupt superblock (the magic kept, the rest garbage), and a truncated image.
    let tree = t.path().join("ok");
    std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
    std::fs::write(tree.join("etc/hostname"), "x".repeat(10_000)).expect("f");
    let good = mksquashfs(&tree, &t.path().join("ok.squashfs"), &[]);
    let mut corrupt = good.clone();
    for b in corrupt.iter_mut().take(96).skip(4) {
        *b = 0xff;
    }
    // Half of what the superblock says is used (the file is padded to 4 KiB beyond it).
    let used = u64::from_le_bytes(good[40..48].try_into().expect("bytes_used"));
    let mut short = good.clone();
    short.truncate((used / 2) as usize);
    for (what, bytes) in [("corrupt superblock", corrupt), ("truncated", short)] {
        let fp = r.upload(&meta, &bytes);
        let e = r.unpack(&fp).expect_err(what);
        assert!(e.to_string().contains("squashfs"), "{what}: {e}");
        assert!(images_in(&r).is_empty(), "{what}: {:?}", images_in(&r));
    }

    // Names the kernel would never write: "..", and a name holding a slash, edited into an
    // uncompressed directory table. Contained beneath the volume, or refused.
    let tree = t.path().join("names");
    std::fs::create_dir_all(tree.join("d")).expect("mkdir");
    std::fs::write(tree.join("d/QQ"), "dotdot").expect("f");
    std::fs::write(tree.join("d/ZZZZZZZZZ"), "slash").expect("f");
    let mut sq = mksquashfs(
        &tree,
        &t.path().join("names.squashfs"),
        &["-noI", "-noD", "-noF", "-noX"],
    );
    let replace = |sq: &mut Vec<u8>, from: &[u8], to: &[u8]| {
        let at = sq
            .windows(from.len())
            .position(|w| w == from)
            .expect("name in the directory table");
        sq[at..at + from.len()].copy_from_slice(to);
    };
    replace(&mut sq, b"QQ", b"..");
    replace(&mut sq, b"ZZZZZZZZZ", b"../../../");
    let canary = r.state.join("storage-pools/p/images");
    let fp = r.upload(&meta, &sq);
    match r.unpack(&fp) {
        Ok(_) => {
            let vol = r.pool_dir().join("images").join(fp.as_str());
            // Everything landed beneath the volume: nothing beside it in images/ or above.
            assert_eq!(images_in(&r), vec![fp.to_string()]);
            for p in [canary.join("QQ"), canary.join("d"), r.state.join("d")] {
                assert!(!p.exists(), "{} escaped", p.display());
            }
            assert!(vol.join("rootfs").is_dir());
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(images_in(&r).is_empty());
        }
    }
    assert_eq!(squashfs_mounts(), mounts_before, "nothing mounted");
    assert!(silo_tests::loops_under(&r.state).is_empty());
    assert!(
        r.helper.child.try_wait().expect("wait").is_none(),
        "silo-store kept serving:\n{}",
        r.helper.log_text()
    );
}

/// An image with a single `size`-byte file of zeros (a sparse file, so cheap to make).
fn zeros_image(dir: &Path, size: u64) -> Vec<u8> {
    let root = dir.join("zimg");
    std::fs::create_dir_all(root.join("rootfs")).expect("mkdir");
    std::fs::write(
        root.join("metadata.yaml"),
        "architecture: x86_64\ncreation_date: 1\n",
    )
    .expect("meta");
    std::fs::File::create(root.join("rootfs/zeros"))
        .expect("zeros")
        .set_len(size)
        .expect("len");
    let out = dir.join("z.tar.gz");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-czf")
        .arg(&out)
        .args(["metadata.yaml", "rootfs"])
        .status()
        .expect("tar");
    assert!(st.success());
    std::fs::read(&out).expect("read")
}

fn avail_of(p: &Path) -> (u64, u64) {
    let st = nix::sys::statvfs::statvfs(p).expect("statvfs");
    (
        st.blocks_available() * st.fragment_size(),
        st.blocks() * st.fragment_size(),
    )
}

/// A dir pool keeps the policy's reserve free: an unpack, a copy and an upload that would
/// cross it fail naming it, with nothing left; loop files are sized against free space.
#[test]
fn dir_pools_keep_the_reserve_free() {
    // The state dir on a filesystem of its own, so that tests running beside this one cannot
    // move its free space; 64 MiB of room above the reserve.
    let mut sizes = (0, 0);
    let r = Raw::new_with(
        "sec-reserve",
        |state| {
            sizes = avail_of(state);
            Some(format!(
                "dir_pool_reserve = {}\n",
                sizes.0.saturating_sub(64 << 20)
            ))
        },
        Some(1 << 30),
    );
    let (avail, total) = sizes;
    let reserve = avail.saturating_sub(64 << 20);
    let t = tempfile::tempdir().expect("tmp");
    let img = zeros_image(t.path(), 256 << 20);
    let fp = r.upload(&img, b"");
    // A unified image: take the empty rootfs half away again.
    std::fs::remove_file(r.state.join("images").join(format!("{fp}.rootfs"))).expect("rm");
    let e = r.unpack(&fp).expect_err("crosses the reserve");
    assert!(matches!(e, HelperError::Denied { .. }), "{e:?}");
    assert!(e.to_string().contains("dir_pool_reserve"), "{e}");
    assert!(images_in(&r).is_empty());

    // A copy of a volume holding a 256 MiB (sparse) file.
    let src = VolumeName::new("src").expect("name");
    r.rt.block_on(
        r.client
            .create_volume(ctx(), pool(), VolumeKind::Custom, src.clone()),
    )
    .expect("rpc")
    .expect("volume");
    std::fs::File::create(r.pool_dir().join("custom/src/zeros"))
        .expect("zeros")
        .set_len(256 << 20)
        .expect("len");
    let dst = VolumeName::new("dst").expect("name");
    let e =
        r.rt.block_on(r.client.copy_volume(
            ctx(),
            pool(),
            VolumeKind::Custom,
            src,
            VolumeKind::Custom,
            dst,
        ))
        .expect("rpc")
        .expect_err("crosses the reserve");
    assert!(e.to_string().contains("dir_pool_reserve"), "{e}");
    assert!(!r.pool_dir().join("custom/dst").exists());

    // An upload through the files API: refused past the budget, the file cut back.
    let vol = VolumeName::new("c1").expect("name");
    r.rt.block_on(
        r.client
            .create_volume(ctx(), pool(), VolumeKind::Container, vol.clone()),
    )
    .expect("rpc")
    .expect("volume");
    std::fs::create_dir(r.pool_dir().join("containers/c1/rootfs")).expect("rootfs");
    let put = FilePut {
        kind: FileKind::File,
        uid: 0,
        gid: 0,
        mode: 0o644,
        append: false,
        target: String::new(),
    };
    let ticket =
        r.rt.block_on(r.client.file_put(ctx(), pool(), vol, "/big".into(), put))
            .expect("rpc")
            .expect("file_put")
            .expect("ticket");
    let fd = r
        .fds
        .take(ticket, Duration::from_secs(10))
        .expect("fds")
        .pop()
        .expect("fd");
    let mut s = std::os::unix::net::UnixStream::from(fd);
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..256 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.contains("dir_pool_reserve"), "{answer:?}");
    let left = std::fs::metadata(r.pool_dir().join("containers/c1/rootfs/big"))
        .expect("big")
        .len();
    assert_eq!(left, 0, "the refused upload is cut back");

    // A loop file larger than the free space above the reserve, though smaller than the
    // filesystem: refused.
    let size = 512u64 << 20;
    assert!(size < total && size > avail - reserve);
    let e =
        r.rt.block_on(
            r.client
                .create_loop_file(ctx(), PoolName::new("lp").expect("n"), size),
        )
        .expect("rpc")
        .expect_err("more than the free space");
    assert!(e.to_string().contains("free space"), "{e}");
    assert!(!r.state.join("disks/lp.img").exists());
}

/// With the default reserve, a loop file is checked against free space, not the size of the
/// filesystem.
#[test]
fn loop_files_are_sized_against_free_space() {
    let r = Raw::new("sec-loopfree", None);
    let (avail, total) = avail_of(&r.state);
    // Between the free space and the filesystem's size (and within max_loop_file_size).
    let size = avail + (total - avail) / 2;
    assert!(size < 1 << 40, "this filesystem is too large for the check");
    let e =
        r.rt.block_on(
            r.client
                .create_loop_file(ctx(), PoolName::new("lp").expect("n"), size),
        )
        .expect("rpc")
        .expect_err("more than the free space");
    assert!(e.to_string().contains("free space"), "{e}");
    assert!(!r.state.join("disks/lp.img").exists());
}
