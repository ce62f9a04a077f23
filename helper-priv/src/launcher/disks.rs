//! Disk devices: a custom volume or a host path mounted into a running (or held) instance.
//!
//! One forked child per request does the work, so that the namespaces it enters never leak
//! into the launcher. It is non-dumpable and never joins the instance's pid namespace, so
//! container root can neither ptrace it nor see it (runc's CVE-2016-9962).
//!
//! The mount must reach the instance with its flags locked (a `readonly` host path that
//! container root could remount read-write would be no promise), yet not locked to its
//! parent (or it could never be unplugged). The kernel locks a mount's flags when it copies
//! a mount namespace into a less privileged user namespace, and a clone of a mount is never
//! locked to a parent. So the child:
//! 1. clones the source (`open_tree`) and sets its idmap, `ro`, `nosuid`/`nodev` and
//!    propagation while it is detached;
//! 2. attaches it in a private mount namespace of the host's user namespace;
//! 3. joins the instance's user namespace as container root and unshares a mount namespace:
//!    the copy of that mount now has its flags locked;
//! 4. clones it again from there (flags stay locked), joins the instance's mount namespace,
//!    resolves the target inside the instance (symlinks resolve as if its root were `/`, so
//!    none leads out; missing parents are made as container root) and moves the mount there.
//!
//! A privileged instance (no user namespace) skips 2 and 3: its root is host root anyway.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::{wire, Reply};
use crate::sys;

/// One disk to mount. Fds: a pidfd of the instance's init, then the source (an `O_PATH` fd
/// silo-priv opened: a custom volume beneath its pools fd, or a host path the policy allows).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachReq {
    /// The instance's init, by host pid (checked against the pidfd after every use).
    pub pid: i32,
    /// Container root's host id (`None`: privileged, no user namespace).
    pub base: Option<u64>,
    /// Where, relative to the instance's root (a checked `RelPath`).
    pub path: String,
    /// A host path: its ids are mapped as the instance's except host root's, which stays
    /// unmapped (seen as nobody, never written as). A custom volume maps exactly as the
    /// instance's root does.
    pub host: bool,
    pub readonly: bool,
    pub recursive: bool,
    /// Slave propagation (else private).
    pub slave: bool,
    /// A host device: the source fd is then the instance's devices directory (root's, in its
    /// runtime directory), where this node is made and from which it is bind-mounted.
    pub node: Option<NodeReq>,
}

/// A device node to make for an instance (owner and mode as the instance sees them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReq {
    /// Its file name in the devices directory (checked: one plain component).
    pub name: String,
    pub block: bool,
    pub major: u32,
    pub minor: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Makes the node in the devices directory and opens it. Its owner on disk is the instance's
/// own id: the mount is idmapped through the instance's map, as a custom volume is.
fn make_node(dir: BorrowedFd<'_>, n: &NodeReq) -> Result<OwnedFd, String> {
    if n.name.is_empty() || n.name.contains('/') || n.name == "." || n.name == ".." {
        return Err(format!("bad node name {:?}", n.name));
    }
    let _ = nix::unistd::unlinkat(
        dir,
        n.name.as_str(),
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
    let kind = if n.block {
        nix::sys::stat::SFlag::S_IFBLK
    } else {
        nix::sys::stat::SFlag::S_IFCHR
    };
    nix::sys::stat::mknodat(
        dir,
        n.name.as_str(),
        kind,
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(u64::from(n.major), u64::from(n.minor)),
    )
    .map_err(|e| format!("mknod {}: {e}", n.name))?;
    let fd = nix::fcntl::openat(
        dir,
        n.name.as_str(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", n.name))?;
    nix::unistd::fchownat(
        dir,
        n.name.as_str(),
        Some(nix::unistd::Uid::from_raw(n.uid)),
        Some(nix::unistd::Gid::from_raw(n.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| format!("chown {}: {e}", n.name))?;
    nix::sys::stat::fchmodat(
        dir,
        n.name.as_str(),
        Mode::from_bits_truncate(n.mode & 0o777),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| format!("chmod {}: {e}", n.name))?;
    Ok(fd)
}

/// Unmount what is at `path` (relative to the instance's root). Fds: a pidfd of init.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetachReq {
    pub path: String,
    /// Also remove the empty file that was the mount point (a device node's), as container
    /// root, if it is still one.
    pub remove_file: bool,
}

const OPEN_TREE_CLONE: u32 = 1;
const AT_RECURSIVE: u32 = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

/// How long the child may take: it never waits on the instance.
const CHILD_TIMEOUT_MS: i32 = 30_000;

/// Runs `f` in a forked child and returns its answer. The child keeps only the answer socket
/// and the fds in `keep`: nothing of the launcher's (its socket to silo-priv above all) goes
/// with it into the instance's namespaces.
fn in_child(keep: &[RawFd], f: impl FnOnce() -> Result<Reply, String>) -> Result<Reply, String> {
    let (ours, theirs) = wire::pair().map_err(|e| e.to_string())?;
    // SAFETY: the launcher is single-threaded; the child leaves through _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let mut keep = keep.to_vec();
            keep.push(theirs.as_raw_fd());
            sys::close_fds_except(&keep);
            let r = silo_proto::jail::caps_drop::non_dumpable()
                .map_err(|e| e.to_string())
                .and_then(|()| f());
            let _ = wire::send(theirs.as_fd(), &r, &[]);
            // SAFETY: leaving the forked child without the parent's destructors.
            unsafe { libc::_exit(i32::from(r.is_err())) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            let answer = if wire::wait_readable(ours.as_fd(), CHILD_TIMEOUT_MS) {
                wire::recv::<Result<Reply, String>>(ours.as_fd()).map_err(|e| e.to_string())
            } else {
                // SAFETY: kill with a pid we forked.
                unsafe { libc::kill(child.as_raw(), libc::SIGKILL) };
                Err("the disk was not mounted within 30s".into())
            };
            // SAFETY: waitpid on our own child.
            unsafe { libc::waitpid(child.as_raw(), std::ptr::null_mut(), 0) };
            match answer? {
                Some((r, _)) => r,
                None => Err("the disk mounter ended without an answer".into()),
            }
        }
    }
}

fn check_alive(pidfd: BorrowedFd<'_>) -> Result<(), String> {
    sys::pidfd_signal(pidfd, 0).map_err(|_| "the instance's init has ended".to_string())
}

/// Reads init's `uid_map` or `gid_map` as (inside, outside, count) lines.
fn read_map(pid: i32, pidfd: BorrowedFd<'_>, which: &str) -> Result<Vec<(u64, u64, u64)>, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{which}"))
        .map_err(|e| format!("reading the instance's {which}: {e}"))?;
    // Read by pid: only valid if the pidfd's process still lives (then the pid is its).
    check_alive(pidfd)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("unreadable {which} line {line:?}"))?;
        if let [a, b, c] = f[..] {
            out.push((a, b, c));
        } else {
            return Err(format!("unreadable {which} line {line:?}"));
        }
    }
    Ok(out)
}

/// The map of a host path's mount: the instance's map with inside id 0 taken out, so that
/// host root's files show as nobody and container root never writes as host root.
pub fn without_root(map: &[(u64, u64, u64)]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for &(inside, outside, count) in map {
        if inside == 0 && count > 0 {
            if count > 1 {
                out.push((1, outside + 1, count - 1));
            }
        } else if count > 0 {
            out.push((inside, outside, count));
        }
    }
    out
}

fn map_text(map: &[(u64, u64, u64)]) -> String {
    map.iter()
        .map(|(a, b, c)| format!("{a} {b} {c}\n"))
        .collect()
}

/// A user namespace with these maps, held by nothing but the returned fd: a child that
/// unshares one, has its maps written and is killed once its namespace is open.
pub fn userns_with(uid: &[(u64, u64, u64)], gid: &[(u64, u64, u64)]) -> Result<OwnedFd, String> {
    if uid.is_empty() || gid.is_empty() {
        return Err("the instance maps no id but root".into());
    }
    let (ours, theirs) = wire::pair().map_err(|e| e.to_string())?;
    // SAFETY: called from a single-threaded process; the child leaves through _exit.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = nix::unistd::write(&theirs, if ok { b"u" } else { b"x" });
            // Held until the parent has what it needs and kills it.
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&theirs, &mut b);
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(theirs);
    let r = (|| {
        let mut b = [0u8; 1];
        if !wire::wait_readable(ours.as_fd(), 10_000)
            || nix::unistd::read(&ours, &mut b) != Ok(1)
            || b[0] != b'u'
        {
            return Err("could not make a user namespace for the disk's id map".to_string());
        }
        let pid = child.as_raw();
        std::fs::write(format!("/proc/{pid}/uid_map"), map_text(uid))
            .map_err(|e| format!("writing the disk's uid map: {e}"))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), map_text(gid))
            .map_err(|e| format!("writing the disk's gid map: {e}"))?;
        std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map(OwnedFd::from)
            .map_err(|e| format!("opening the disk's user namespace: {e}"))
    })();
    // SAFETY: kill and reap our own unreaped child (its pid cannot have been reused).
    unsafe {
        libc::kill(child.as_raw(), libc::SIGKILL);
        libc::waitpid(child.as_raw(), std::ptr::null_mut(), 0);
    }
    r
}

fn open_tree(fd: BorrowedFd<'_>, path: &str, recursive: bool) -> Result<OwnedFd, String> {
    let p = sys::cstr(path).map_err(|e| e.to_string())?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as u32;
    }
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: a valid fd, a NUL-terminated path and flags; returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), p.as_ptr(), flags) };
    if r < 0 {
        return Err(format!(
            "cloning the disk's source: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn set_attrs(
    tree: BorrowedFd<'_>,
    req: &AttachReq,
    userns: Option<BorrowedFd<'_>>,
) -> Result<(), String> {
    let mut set = MOUNT_ATTR_NODEV;
    let mut clr = 0;
    if req.node.is_some() {
        // The node itself is what this mount is for; nothing set-uid can come with it.
        set = MOUNT_ATTR_NOSUID;
        clr = MOUNT_ATTR_NODEV;
    } else if req.host {
        // A host path never gives the instance set-uid files or devices of the host's.
        set |= MOUNT_ATTR_NOSUID;
    } else {
        // On the host every pool is mounted nosuid,nodev; inside, a volume's set-uid programs
        // work as the root volume's do.
        clr |= MOUNT_ATTR_NOSUID;
    }
    if req.readonly {
        set |= MOUNT_ATTR_RDONLY;
    }
    if userns.is_some() {
        set |= MOUNT_ATTR_IDMAP;
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: if req.slave {
            libc::MS_SLAVE
        } else {
            libc::MS_PRIVATE
        },
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let empty = sys::cstr("").map_err(|e| e.to_string())?;
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if req.recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: valid fds, an empty path with AT_EMPTY_PATH, a mount_attr of the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(
            if e.raw_os_error() == Some(libc::EINVAL) && userns.is_some() {
                format!("the source's filesystem cannot be idmapped ({e})")
            } else {
                format!("setting the disk's mount attributes: {e}")
            },
        );
    }
    Ok(())
}

fn move_mount(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), String> {
    let empty = sys::cstr("").map_err(|e| e.to_string())?;
    // SAFETY: valid fds and empty NUL-terminated paths with the EMPTY_PATH flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(format!(
            "attaching the disk: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn is_dir(fd: BorrowedFd<'_>) -> Result<bool, String> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| format!("fstat: {e}"))?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Opens `rel` inside the root `root` (an instance's), making what is missing as the caller's
/// current ids (container root): directories, and for a file source the last component as an
/// empty file. Symlinks resolve inside the root, so no path leads out of the instance.
pub fn make_target(root: BorrowedFd<'_>, rel: &str, dir: bool) -> Result<OwnedFd, String> {
    let comps: Vec<&str> = rel.split('/').collect();
    let mut cur: OwnedFd = root.try_clone_to_owned().map_err(|e| format!("dup: {e}"))?;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let want_dir = !last || dir;
        let sofar = comps[..=i].join("/");
        let how = || {
            let mut f = OFlag::O_PATH;
            if want_dir {
                f |= OFlag::O_DIRECTORY;
            }
            silo_proto::jail::beneath::in_root_how(f)
        };
        cur = match openat2(root, sofar.as_str(), how()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let made = if want_dir {
                    nix::sys::stat::mkdirat(&cur, *c, Mode::from_bits_truncate(0o755))
                } else {
                    nix::fcntl::openat(
                        &cur,
                        *c,
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                };
                match made {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(format!("creating /{sofar} in the instance: {e}")),
                }
                openat2(root, sofar.as_str(), how())
                    .map_err(|e| format!("opening /{sofar} in the instance: {e}"))?
            }
            Err(Errno::ENOTDIR) => {
                return Err(format!(
                    "/{sofar} in the instance is not a directory (the disk's source is {})",
                    if dir { "a directory" } else { "a file" }
                ))
            }
            Err(e) => return Err(format!("opening /{sofar} in the instance: {e}")),
        };
    }
    if !dir && is_dir(cur.as_fd())? {
        return Err(format!(
            "/{rel} in the instance is a directory, and the disk's source is a file"
        ));
    }
    Ok(cur)
}

/// Becomes container root inside the user namespace just joined.
fn become_container_root() -> Result<(), String> {
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let g = nix::unistd::Gid::from_raw(0);
    let u = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(g, g, g).map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(u, u, u).map_err(|e| format!("setresuid: {e}"))?;
    Ok(())
}

/// A flag-locked clone of `tree` (see the module's notes): attached in a private namespace of
/// the host's user namespace, copied into a namespace of the instance's, and cloned from
/// there. Leaves the caller in the instance's user namespace as container root.
fn locked_clone(
    tree: OwnedFd,
    userns: BorrowedFd<'_>,
    dir: bool,
    recursive: bool,
) -> Result<OwnedFd, String> {
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(mount): {e}"))?;
    sys::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| e.to_string())?;
    // A scratch tmpfs of this private namespace holds the attach point; container root
    // (which looks it up again below) needs to pass through it.
    sys::mount(
        Some("none"),
        "/tmp",
        Some("tmpfs"),
        libc::MS_NOSUID,
        Some("size=16k,mode=711"),
    )
    .map_err(|e| e.to_string())?;
    let at = if dir {
        std::fs::create_dir("/tmp/d").map(|()| "/tmp/d")
    } else {
        std::fs::File::create("/tmp/d").map(|_| "/tmp/d")
    }
    .map_err(|e| format!("scratch attach point: {e}"))?;
    sys::move_mount_to(tree.as_fd(), at).map_err(|e| e.to_string())?;
    drop(tree);
    sys::setns_fd(userns, libc::CLONE_NEWUSER, "user").map_err(|e| e.to_string())?;
    become_container_root()?;
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(mount) in the instance's user namespace: {e}"))?;
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open /: {e}"))?;
    open_tree(root.as_fd(), "tmp/d", recursive)
}

/// Mounts a disk in a running or held instance.
pub fn attach(req: AttachReq, fds: Vec<OwnedFd>) -> Result<Reply, String> {
    let [pidfd, src]: [OwnedFd; 2] = fds
        .try_into()
        .map_err(|_| "a disk attach takes two fds".to_string())?;
    let keep = [pidfd.as_raw_fd(), src.as_raw_fd()];
    in_child(&keep, move || {
        check_alive(pidfd.as_fd())?;
        let src = match &req.node {
            Some(n) => make_node(src.as_fd(), n)?,
            None => src,
        };
        let dir = is_dir(src.as_fd())?;
        // Opened now, as host root: a held init is not dumpable, and once this process is
        // in the instance's user namespace it may no longer reach init's namespaces by pid.
        let mntns = std::fs::File::open(format!("/proc/{}/ns/mnt", req.pid))
            .map(OwnedFd::from)
            .map_err(|e| format!("opening the instance's mount namespace: {e}"))?;
        check_alive(pidfd.as_fd())?;
        let userns = match req.base {
            None => None,
            Some(_) => {
                let inst = std::fs::File::open(format!("/proc/{}/ns/user", req.pid))
                    .map(OwnedFd::from)
                    .map_err(|e| format!("opening the instance's user namespace: {e}"))?;
                check_alive(pidfd.as_fd())?;
                let map = if req.host {
                    let uid = without_root(&read_map(req.pid, pidfd.as_fd(), "uid_map")?);
                    let gid = without_root(&read_map(req.pid, pidfd.as_fd(), "gid_map")?);
                    Some(userns_with(&uid, &gid)?)
                } else {
                    None
                };
                Some((inst, map))
            }
        };
        let tree = open_tree(src.as_fd(), "", req.recursive)?;
        drop(src);
        let idmap = userns
            .as_ref()
            .map(|(inst, map)| map.as_ref().unwrap_or(inst).as_fd());
        set_attrs(tree.as_fd(), &req, idmap)?;
        let tree = match &userns {
            Some((inst, _)) => locked_clone(tree, inst.as_fd(), dir, req.recursive)?,
            None => tree,
        };
        sys::setns_fd(mntns.as_fd(), libc::CLONE_NEWNS, "mount").map_err(|e| e.to_string())?;
        let root = nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("open the instance's /: {e}"))?;
        let target = make_target(root.as_fd(), &req.path, dir)?;
        move_mount(tree.as_fd(), target.as_fd())?;
        Ok(Reply::DiskDone)
    })
}

/// Unmounts the disk at a path in a running instance. Nothing mounted there is no error.
pub fn detach(req: DetachReq, fds: Vec<OwnedFd>) -> Result<Reply, String> {
    let [pidfd]: [OwnedFd; 1] = fds
        .try_into()
        .map_err(|_| "a disk detach takes one fd".to_string())?;
    let keep = [pidfd.as_raw_fd()];
    in_child(&keep, move || {
        check_alive(pidfd.as_fd())?;
        sys::setns_pidfd(pidfd.as_fd(), libc::CLONE_NEWNS).map_err(|e| e.to_string())?;
        let root = nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("open the instance's /: {e}"))?;
        let (parent, name) = match req.path.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, req.path.as_str()),
        };
        let dir = match parent {
            Some(p) => match openat2(
                root.as_fd(),
                p,
                silo_proto::jail::beneath::in_root_how(OFlag::O_PATH | OFlag::O_DIRECTORY),
            ) {
                Ok(d) => d,
                Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(Reply::DiskDone),
                Err(e) => return Err(format!("opening /{p} in the instance: {e}")),
            },
            None => root,
        };
        nix::unistd::fchdir(&dir).map_err(|e| format!("chdir: {e}"))?;
        match nix::mount::umount2(
            name,
            nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
        ) {
            // EINVAL: not a mount point (container root may have unmounted it itself).
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(e) => return Err(format!("unmounting /{} in the instance: {e}", req.path)),
        }
        if req.remove_file {
            // Only the empty placeholder, never whatever container root may have put there.
            if let Ok(st) =
                nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            {
                if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size == 0 {
                    let _ =
                        nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
                }
            }
        }
        Ok(Reply::DiskDone)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_never_map_root() {
        assert_eq!(
            without_root(&[(0, 1_000_000, 65536)]),
            vec![(1, 1_000_001, 65535)]
        );
        // A raw.idmap-style map with holes keeps every line but root's.
        assert_eq!(
            without_root(&[
                (0, 1_000_000, 1000),
                (1000, 1000, 1),
                (1001, 1_001_001, 64535)
            ]),
            vec![
                (1, 1_000_001, 999),
                (1000, 1000, 1),
                (1001, 1_001_001, 64535)
            ]
        );
        assert_eq!(without_root(&[(0, 5, 1)]), vec![]);
    }
}
