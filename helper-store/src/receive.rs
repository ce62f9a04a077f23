//! Applying a btrfs send stream (protocol 1, a full send) beneath a volume directory: what
//! `btrfs receive` does, for optimized backups, written for a hostile stream. Every path is
//! resolved beneath the target with no symlink followed (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS
//! on the parent, *at calls with AT_SYMLINK_NOFOLLOW on the last component), sizes are
//! bounded, and device nodes are skipped as image unpacking skips them. It runs in a child
//! landlocked to the target volume.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Bounds on one receive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes written into files.
    pub max_bytes: u64,
    /// Commands.
    pub max_commands: u64,
}

/// What a receive did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Commands applied.
    pub commands: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Device nodes skipped.
    pub skipped_devices: u64,
}

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// The largest command the kernel sends (protocol 1: BTRFS_SEND_BUF_SIZE is 64 KiB).
const MAX_COMMAND: u32 = 1 << 20;

// Commands (include/uapi/linux/btrfs... send.h, protocol 1).
const SUBVOL: u16 = 1;
const SNAPSHOT: u16 = 2;
const MKFILE: u16 = 3;
const MKDIR: u16 = 4;
const MKNOD: u16 = 5;
const MKFIFO: u16 = 6;
const MKSOCK: u16 = 7;
const SYMLINK: u16 = 8;
const RENAME: u16 = 9;
const LINK: u16 = 10;
const UNLINK: u16 = 11;
const RMDIR: u16 = 12;
const SET_XATTR: u16 = 13;
const REMOVE_XATTR: u16 = 14;
const WRITE: u16 = 15;
const CLONE: u16 = 16;
const TRUNCATE: u16 = 17;
const CHMOD: u16 = 18;
const CHOWN: u16 = 19;
const UTIMES: u16 = 20;
const END: u16 = 21;
const UPDATE_EXTENT: u16 = 22;

// Attributes.
const A_SIZE: u16 = 4;
const A_MODE: u16 = 5;
const A_UID: u16 = 6;
const A_GID: u16 = 7;
const A_ATIME: u16 = 11;
const A_MTIME: u16 = 10;
const A_XATTR_NAME: u16 = 13;
const A_XATTR_DATA: u16 = 14;
const A_PATH: u16 = 15;
const A_PATH_TO: u16 = 16;
const A_PATH_LINK: u16 = 17;
const A_FILE_OFFSET: u16 = 18;
const A_DATA: u16 = 19;
const A_CLONE_PATH: u16 = 22;
const A_CLONE_OFFSET: u16 = 23;
const A_CLONE_LEN: u16 = 24;

struct Cmd {
    kind: u16,
    attrs: Vec<(u16, Vec<u8>)>,
}

impl Cmd {
    fn get(&self, a: u16) -> Result<&[u8], String> {
        self.attrs
            .iter()
            .find(|(t, _)| *t == a)
            .map(|(_, v)| v.as_slice())
            .ok_or_else(|| format!("command {} lacks attribute {a}", self.kind))
    }
    fn u64(&self, a: u16) -> Result<u64, String> {
        let v = self.get(a)?;
        let b: [u8; 8] = v
            .try_into()
            .map_err(|_| format!("attribute {a} is not 8 bytes"))?;
        Ok(u64::from_le_bytes(b))
    }
    fn path(&self, a: u16) -> Result<String, String> {
        let v = self.get(a)?;
        String::from_utf8(v.to_vec()).map_err(|_| format!("attribute {a} is not a UTF-8 path"))
    }
    fn time(&self, a: u16) -> Result<libc::timespec, String> {
        let v = self.get(a)?;
        if v.len() != 12 {
            return Err(format!("attribute {a} is not a timespec"));
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&v[..8]);
        let mut n = [0u8; 4];
        n.copy_from_slice(&v[8..]);
        Ok(libc::timespec {
            tv_sec: u64::from_le_bytes(s) as libc::time_t,
            tv_nsec: u32::from_le_bytes(n).min(999_999_999) as libc::c_long,
        })
    }
}

fn read_cmd(r: &mut dyn Read) -> Result<Option<Cmd>, String> {
    let mut h = [0u8; 10];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("reading the stream: {e}")),
    }
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let kind = u16::from_le_bytes([h[4], h[5]]);
    if len > MAX_COMMAND {
        return Err(format!("a command of {len} bytes is over the limit"));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)
        .map_err(|e| format!("reading the stream: {e}"))?;
    let mut attrs = Vec::new();
    let mut i = 0usize;
    while i + 4 <= body.len() {
        let t = u16::from_le_bytes([body[i], body[i + 1]]);
        let l = u16::from_le_bytes([body[i + 2], body[i + 3]]) as usize;
        i += 4;
        if i + l > body.len() {
            return Err("an attribute runs past its command".into());
        }
        attrs.push((t, body[i..i + l].to_vec()));
        i += l;
    }
    Ok(Some(Cmd { kind, attrs }))
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS)
}

/// Splits a stream path into (parent directory fd, last component), checking every part.
fn parent_of(root: BorrowedFd<'_>, path: &str) -> Result<(OwnedFd, String), String> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if comps.is_empty() || comps.iter().any(|c| *c == "." || *c == "..") || path.contains('\0') {
        return Err(format!("path {path:?} is not a plain relative path"));
    }
    let (last, dirs) = comps.split_last().ok_or("empty path")?;
    let parent = if dirs.is_empty() {
        nix::fcntl::openat(
            root,
            ".",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    } else {
        openat2(
            root,
            dirs.join("/").as_str(),
            how(OFlag::O_DIRECTORY | OFlag::O_RDONLY),
        )
    }
    .map_err(|e| format!("{path}: {e}"))?;
    Ok((parent, (*last).to_string()))
}

fn open_file(root: BorrowedFd<'_>, path: &str, flags: OFlag) -> Result<OwnedFd, String> {
    let (p, name) = parent_of(root, path)?;
    openat2(p.as_fd(), name.as_str(), how(flags)).map_err(|e| format!("{path}: {e}"))
}

fn errno(path: &str, what: &str) -> String {
    format!("{what} {path}: {}", std::io::Error::last_os_error())
}

/// Applies a send stream beneath `root`.
pub fn receive(r: &mut dyn Read, root: BorrowedFd<'_>, limits: Limits) -> Result<Report, String> {
    let mut magic = [0u8; 13];
    r.read_exact(&mut magic)
        .map_err(|e| format!("not a btrfs send stream: {e}"))?;
    if &magic != MAGIC {
        return Err("not a btrfs send stream (bad magic)".into());
    }
    let mut v = [0u8; 4];
    r.read_exact(&mut v)
        .map_err(|e| format!("reading the stream: {e}"))?;
    if u32::from_le_bytes(v) != 1 {
        return Err(format!(
            "send stream version {} is not supported (1 is)",
            u32::from_le_bytes(v)
        ));
    }
    let mut rep = Report::default();
    let mut pending = Pending::default();
    while let Some(c) = read_cmd(r)? {
        rep.commands += 1;
        if rep.commands > limits.max_commands {
            return Err(format!("more than {} commands", limits.max_commands));
        }
        if pending.intercept(&c, root, &mut rep, &limits)? {
            continue;
        }
        apply(&c, root, &mut rep, &limits)?;
        if c.kind == END {
            break;
        }
    }
    Ok(rep)
}

/// New inodes arrive as orphans at the top (`o<ino>-<gen>-0`) and are then renamed into
/// place. silo-store's landlock domain has no REFER right, so nothing can move between
/// directories: orphans are made only when their final name is known (or when something
/// else needs them first), right where they belong.
#[derive(Default)]
struct Pending {
    /// Orphans not made yet, by name: the command that makes them, and the commands that
    /// came for paths inside them before they were renamed into place.
    made: std::collections::HashMap<String, (Cmd, Vec<Cmd>)>,
    /// Bytes held in those commands (bounded).
    held: usize,
    /// Hard links that had to be copies (no REFER right): (copy, original), brought up to
    /// date with their original when the stream ends.
    copies: Vec<(String, String)>,
}

/// The most command bytes held back for orphans not yet in place.
const MAX_HELD: usize = 64 << 20;

/// The bytes a held command takes.
fn size(c: &Cmd) -> usize {
    c.attrs.iter().map(|a| a.1.len() + 4).sum::<usize>() + 10
}

fn is_orphan(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('o') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit()))
}

/// `p` as it is named once `from` is renamed to `to`.
fn rebase_path(p: &str, from: &str, to: &str) -> Option<String> {
    if p == from {
        Some(to.to_string())
    } else {
        p.strip_prefix(from)
            .filter(|rest| rest.starts_with('/'))
            .map(|rest| format!("{to}{rest}"))
    }
}

/// `c` with every path attribute starting `from/` (or equal to `from`) rewritten to `to`.
fn rebase(mut c: Cmd, from: &str, to: &str) -> Cmd {
    for a in c.attrs.iter_mut() {
        if matches!(a.0, A_PATH | A_PATH_TO | A_PATH_LINK | A_CLONE_PATH) {
            if let Some(n) = rebase_path(&String::from_utf8_lossy(&a.1), from, to) {
                a.1 = n.into_bytes();
            }
        }
    }
    c
}

impl Pending {
    fn owner(&self, c: &Cmd) -> Option<String> {
        for a in [A_PATH, A_PATH_TO, A_PATH_LINK, A_CLONE_PATH] {
            if let Ok(p) = c.path(a) {
                let top = p.split('/').next().unwrap_or("");
                if p.contains('/') && self.made.contains_key(top) {
                    return Some(top.to_string());
                }
            }
        }
        None
    }

    /// Takes the commands that create, move or reach into orphans not yet in place; returns
    /// whether it took `c`.
    fn intercept(
        &mut self,
        c: &Cmd,
        root: BorrowedFd<'_>,
        rep: &mut Report,
        limits: &Limits,
    ) -> Result<bool, String> {
        let creates = matches!(c.kind, MKFILE | MKDIR | MKNOD | MKFIFO | MKSOCK | SYMLINK);
        if creates {
            let p = c.path(A_PATH)?;
            if is_orphan(&p) {
                self.held += size(c);
                if self.held > MAX_HELD {
                    return Err(
                        "too much of the stream is held for entries not yet in place".into(),
                    );
                }
                self.made.insert(
                    p,
                    (
                        Cmd {
                            kind: c.kind,
                            attrs: c.attrs.clone(),
                        },
                        Vec::new(),
                    ),
                );
                return Ok(true);
            }
        }
        if c.kind == LINK
            && self.owner(c).is_none()
            && !self.made.contains_key(&c.path(A_PATH_LINK)?)
        {
            let (new, old) = (c.path(A_PATH)?, c.path(A_PATH_LINK)?);
            match link_at(root, &old, &new) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    copy_file(root, &old, &new)?;
                    self.copies.push((new, old));
                }
                Err(e) => return Err(format!("linking {new}: {e}")),
            }
            return Ok(true);
        }
        if c.kind == END {
            for (copy, orig) in std::mem::take(&mut self.copies) {
                refresh_copy(root, &orig, &copy)?;
            }
            return Ok(false);
        }
        if c.kind == RENAME {
            let from = c.path(A_PATH)?;
            let to = c.path(A_PATH_TO)?;
            for (copy, orig) in self.copies.iter_mut() {
                for p in [copy, orig] {
                    if let Some(n) = rebase_path(p, &from, &to) {
                        *p = n;
                    }
                }
            }
            // What is held elsewhere was sent when `from` still had its old name.
            for (_, (made, later)) in self.made.iter_mut() {
                if from != to {
                    *made = rebase(
                        std::mem::replace(
                            made,
                            Cmd {
                                kind: 0,
                                attrs: Vec::new(),
                            },
                        ),
                        &from,
                        &to,
                    );
                    for l in later.iter_mut() {
                        *l = rebase(
                            std::mem::replace(
                                l,
                                Cmd {
                                    kind: 0,
                                    attrs: Vec::new(),
                                },
                            ),
                            &from,
                            &to,
                        );
                    }
                }
            }
            if let Some((made, later)) = self.made.remove(&from) {
                let mut cmds = vec![rebase(made, &from, &to)];
                cmds.extend(later.into_iter().map(|l| rebase(l, &from, &to)));
                // Renamed into a directory that is itself not in place yet: it waits there.
                let top = to.split('/').next().unwrap_or("").to_string();
                if to.contains('/') {
                    if let Some((_, waiting)) = self.made.get_mut(&top) {
                        waiting.extend(cmds);
                        return Ok(true);
                    }
                }
                for (i, l) in cmds.into_iter().enumerate() {
                    self.held = self.held.saturating_sub(size(&l));
                    // The first is the orphan's own creation, now at its final name.
                    if i == 0 || !self.intercept(&l, root, rep, limits)? {
                        apply(&l, root, rep, limits)?;
                    }
                }
                return Ok(true);
            }
        }
        if let Some(top) = self.owner(c) {
            self.held += size(c);
            if self.held > MAX_HELD {
                return Err("too much of the stream is held for entries not yet in place".into());
            }
            if let Some((_, later)) = self.made.get_mut(&top) {
                later.push(Cmd {
                    kind: c.kind,
                    attrs: c.attrs.clone(),
                });
            }
            return Ok(true);
        }
        // Anything else naming an orphan itself (a write, a chmod): make it at the top.
        for a in [A_PATH, A_PATH_LINK, A_CLONE_PATH] {
            if let Ok(p) = c.path(a) {
                if let Some((made, later)) = self.made.remove(&p) {
                    for l in std::iter::once(made).chain(later) {
                        self.held = self.held.saturating_sub(size(&l));
                        apply(&l, root, rep, limits)?;
                    }
                }
            }
        }
        Ok(false)
    }
}

fn cstr(s: &str) -> Result<std::ffi::CString, String> {
    std::ffi::CString::new(s).map_err(|_| format!("{s:?} holds a NUL"))
}

fn apply(c: &Cmd, root: BorrowedFd<'_>, rep: &mut Report, limits: &Limits) -> Result<(), String> {
    match c.kind {
        // The stream names the sent subvolume; its contents land in the target itself.
        SUBVOL | END | UPDATE_EXTENT => Ok(()),
        SNAPSHOT => Err("incremental send streams are not supported (full sends only)".into()),
        MKFILE | MKDIR | MKNOD | MKFIFO | MKSOCK | SYMLINK => {
            let path = c.path(A_PATH)?;
            let (p, name) = parent_of(root, &path)?;
            let n = cstr(&name)?;
            // SAFETY: *at syscalls on a directory fd we own, with NUL-terminated names.
            let rc = unsafe {
                match c.kind {
                    MKFILE => {
                        let fd = libc::openat(
                            p.as_raw_fd(),
                            n.as_ptr(),
                            libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_WRONLY
                                | libc::O_CLOEXEC
                                | libc::O_NOFOLLOW,
                            0o600,
                        );
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        fd.min(0)
                    }
                    MKDIR => libc::mkdirat(p.as_raw_fd(), n.as_ptr(), 0o700),
                    MKFIFO => libc::mknodat(p.as_raw_fd(), n.as_ptr(), libc::S_IFIFO | 0o600, 0),
                    MKSOCK => libc::mknodat(p.as_raw_fd(), n.as_ptr(), libc::S_IFSOCK | 0o600, 0),
                    SYMLINK => {
                        let target = cstr(&c.path(A_PATH_LINK)?)?;
                        libc::symlinkat(target.as_ptr(), p.as_raw_fd(), n.as_ptr())
                    }
                    _ => {
                        // Device nodes: an unprivileged container cannot use them anyway.
                        rep.skipped_devices += 1;
                        0
                    }
                }
            };
            if rc < 0 {
                return Err(errno(&path, "creating"));
            }
            Ok(())
        }
        RENAME | LINK => {
            let path = c.path(A_PATH)?;
            let (to, other) = if c.kind == RENAME {
                (c.path(A_PATH_TO)?, path.clone())
            } else {
                (path.clone(), c.path(A_PATH_LINK)?)
            };
            let (p1, n1) = parent_of(root, &other)?;
            let (p2, n2) = parent_of(root, &to)?;
            let (a, b) = (cstr(&n1)?, cstr(&n2)?);
            // SAFETY: *at syscalls on directory fds we own, with NUL-terminated names; no
            // symlink is followed (linkat without AT_SYMLINK_FOLLOW).
            let rc = unsafe {
                if c.kind == RENAME {
                    libc::renameat(p1.as_raw_fd(), a.as_ptr(), p2.as_raw_fd(), b.as_ptr())
                } else {
                    libc::linkat(p1.as_raw_fd(), a.as_ptr(), p2.as_raw_fd(), b.as_ptr(), 0)
                }
            };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EXDEV) && c.kind == LINK {
                    // A hard link into another directory needs REFER: a copy keeps the
                    // content (not the sharing).
                    return copy_file(root, &other, &to);
                }
                return Err(format!(
                    "{} {path}: {e}",
                    if c.kind == RENAME {
                        "renaming"
                    } else {
                        "linking"
                    }
                ));
            }
            Ok(())
        }
        UNLINK | RMDIR => {
            let path = c.path(A_PATH)?;
            let (p, name) = parent_of(root, &path)?;
            let n = cstr(&name)?;
            let flag = if c.kind == RMDIR {
                libc::AT_REMOVEDIR
            } else {
                0
            };
            // SAFETY: unlinkat on a directory fd we own with a NUL-terminated name.
            if unsafe { libc::unlinkat(p.as_raw_fd(), n.as_ptr(), flag) } < 0 {
                return Err(errno(&path, "removing"));
            }
            Ok(())
        }
        WRITE => {
            let path = c.path(A_PATH)?;
            let off = c.u64(A_FILE_OFFSET)?;
            let data = c.get(A_DATA)?;
            rep.bytes += data.len() as u64;
            if rep.bytes > limits.max_bytes {
                return Err(format!("more than {} bytes of file data", limits.max_bytes));
            }
            let fd = open_file(root, &path, OFlag::O_WRONLY)?;
            nix::sys::uio::pwrite(fd.as_fd(), data, off as i64)
                .map_err(|e| format!("writing {path}: {e}"))?;
            Ok(())
        }
        CLONE => {
            // Same-subvolume clones of a full send: copied (FICLONERANGE would also do).
            let path = c.path(A_PATH)?;
            let off = c.u64(A_FILE_OFFSET)?;
            let len = c.u64(A_CLONE_LEN)?;
            let src_off = c.u64(A_CLONE_OFFSET)?;
            let src = c.path(A_CLONE_PATH)?;
            rep.bytes += len;
            if rep.bytes > limits.max_bytes {
                return Err(format!("more than {} bytes of file data", limits.max_bytes));
            }
            let s = open_file(root, &src, OFlag::O_RDONLY)?;
            let d = open_file(root, &path, OFlag::O_WRONLY)?;
            let mut buf = vec![0u8; 1 << 16];
            let mut done = 0u64;
            while done < len {
                let want = ((len - done) as usize).min(buf.len());
                let n = nix::sys::uio::pread(s.as_fd(), &mut buf[..want], (src_off + done) as i64)
                    .map_err(|e| format!("reading {src}: {e}"))?;
                if n == 0 {
                    break;
                }
                nix::sys::uio::pwrite(d.as_fd(), &buf[..n], (off + done) as i64)
                    .map_err(|e| format!("writing {path}: {e}"))?;
                done += n as u64;
            }
            Ok(())
        }
        TRUNCATE => {
            let path = c.path(A_PATH)?;
            let size = c.u64(A_SIZE)?;
            if size > limits.max_bytes {
                return Err(format!("{path}: size {size} is over the limit"));
            }
            let fd = open_file(root, &path, OFlag::O_WRONLY)?;
            nix::unistd::ftruncate(&fd, size as i64).map_err(|e| format!("truncating {path}: {e}"))
        }
        // The volume's own directory keeps the mode, owner and times silo gave it.
        CHMOD | CHOWN | UTIMES | SET_XATTR | REMOVE_XATTR
            if c.path(A_PATH)?.trim_matches('/').is_empty() =>
        {
            Ok(())
        }
        CHMOD => {
            let path = c.path(A_PATH)?;
            let mode = (c.u64(A_MODE)? & 0o7777) as libc::c_uint;
            let (p, name) = parent_of(root, &path)?;
            let n = cstr(&name)?;
            // SAFETY: fchmodat2 (never following a symlink) on a directory fd we own.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_fchmodat2,
                    p.as_raw_fd(),
                    n.as_ptr(),
                    mode,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc < 0 {
                return Err(errno(&path, "chmod"));
            }
            Ok(())
        }
        CHOWN => {
            let path = c.path(A_PATH)?;
            let uid = c.u64(A_UID)?.min(u64::from(u32::MAX - 1)) as u32;
            let gid = c.u64(A_GID)?.min(u64::from(u32::MAX - 1)) as u32;
            let (p, name) = parent_of(root, &path)?;
            let n = cstr(&name)?;
            // SAFETY: fchownat with AT_SYMLINK_NOFOLLOW on a directory fd we own.
            if unsafe {
                libc::fchownat(
                    p.as_raw_fd(),
                    n.as_ptr(),
                    uid,
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            } < 0
            {
                return Err(errno(&path, "chown"));
            }
            Ok(())
        }
        UTIMES => {
            let path = c.path(A_PATH)?;
            let times = [c.time(A_ATIME)?, c.time(A_MTIME)?];
            let (p, name) = parent_of(root, &path)?;
            let n = cstr(&name)?;
            // SAFETY: utimensat with a two-element timespec array and AT_SYMLINK_NOFOLLOW.
            if unsafe {
                libc::utimensat(
                    p.as_raw_fd(),
                    n.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            } < 0
            {
                return Err(errno(&path, "utimes"));
            }
            Ok(())
        }
        SET_XATTR | REMOVE_XATTR => {
            // Only on what can be opened without following a symlink; capabilities and ACLs
            // come back, other namespaces the child may not set are skipped.
            let path = c.path(A_PATH)?;
            let name = cstr(&c.path(A_XATTR_NAME)?)?;
            let Ok(fd) = open_file(root, &path, OFlag::O_RDONLY | OFlag::O_NONBLOCK) else {
                return Ok(());
            };
            // SAFETY: fsetxattr/fremovexattr on an fd we own with buffers we own.
            unsafe {
                if c.kind == SET_XATTR {
                    let data = c.get(A_XATTR_DATA)?;
                    libc::fsetxattr(
                        fd.as_raw_fd(),
                        name.as_ptr(),
                        data.as_ptr() as *const libc::c_void,
                        data.len(),
                        0,
                    );
                } else {
                    libc::fremovexattr(fd.as_raw_fd(), name.as_ptr());
                }
            }
            Ok(())
        }
        other => Err(format!("unknown send stream command {other}")),
    }
}

/// Finds `member` (`backup/container.bin` or `backup/snapshots/<name>.bin`) in a backup
/// tarball read from `input` and applies the send stream it holds beneath `root`.
pub fn from_backup(
    input: OwnedFd,
    member: &str,
    root: BorrowedFd<'_>,
    limits: Limits,
) -> Result<Report, String> {
    let stream = silo_proto::image::open_tar_stream(std::fs::File::from(input), 1 << 40)
        .map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(stream);
    for e in ar
        .entries()
        .map_err(|e| format!("reading the backup: {e}"))?
    {
        let mut e = e.map_err(|e| format!("reading the backup: {e}"))?;
        let p = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .to_string();
        if p == member {
            if !e.header().entry_type().is_file() {
                return Err(format!("{member} is not a regular file"));
            }
            return receive(&mut e, root, limits);
        }
    }
    Err(format!("the backup has no {member}"))
}

/// Copies regular file `from` to a new file `to` (content, mode, owner).
fn copy_file(root: BorrowedFd<'_>, from: &str, to: &str) -> Result<(), String> {
    let s = open_file(root, from, OFlag::O_RDONLY)?;
    let st = nix::sys::stat::fstat(&s).map_err(|e| format!("{from}: {e}"))?;
    let (p, name) = parent_of(root, to)?;
    let d = openat2(
        p.as_fd(),
        name.as_str(),
        how(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL).mode(Mode::from_bits_truncate(0o600)),
    )
    .map_err(|e| format!("{to}: {e}"))?;
    let mut src = std::fs::File::from(s);
    let mut dst = std::fs::File::from(d);
    std::io::copy(&mut src, &mut dst).map_err(|e| format!("copying {from} to {to}: {e}"))?;
    nix::unistd::fchown(
        &dst,
        Some(nix::unistd::Uid::from_raw(st.st_uid)),
        Some(nix::unistd::Gid::from_raw(st.st_gid)),
    )
    .map_err(|e| format!("{to}: {e}"))?;
    nix::sys::stat::fchmod(&dst, Mode::from_bits_truncate(st.st_mode & 0o7777))
        .map_err(|e| format!("{to}: {e}"))?;
    Ok(())
}

fn link_at(root: BorrowedFd<'_>, old: &str, new: &str) -> std::io::Result<()> {
    let to_io = |e: String| std::io::Error::other(e);
    let (p1, n1) = parent_of(root, old).map_err(to_io)?;
    let (p2, n2) = parent_of(root, new).map_err(to_io)?;
    let (a, b) = (cstr(&n1).map_err(to_io)?, cstr(&n2).map_err(to_io)?);
    // SAFETY: linkat on directory fds we own with NUL-terminated names; no symlink followed.
    if unsafe { libc::linkat(p1.as_raw_fd(), a.as_ptr(), p2.as_raw_fd(), b.as_ptr(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes a copy standing in for a hard link equal to its original again (content, mode,
/// owner, times), once the stream has written everything.
fn refresh_copy(root: BorrowedFd<'_>, orig: &str, copy: &str) -> Result<(), String> {
    let (p, name) = parent_of(root, copy)?;
    let n = cstr(&name)?;
    // Replacing the copy touches its directory, whose times the stream has already set.
    let dst = nix::sys::stat::fstat(&p).map_err(|e| format!("{copy}: {e}"))?;
    let dir_times = [
        libc::timespec {
            tv_sec: dst.st_atime,
            tv_nsec: dst.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: dst.st_mtime,
            tv_nsec: dst.st_mtime_nsec,
        },
    ];
    // SAFETY: unlinkat on a directory fd we own with a NUL-terminated name.
    if unsafe { libc::unlinkat(p.as_raw_fd(), n.as_ptr(), 0) } < 0 {
        return Err(errno(copy, "replacing"));
    }
    copy_file(root, orig, copy)?;
    let s = open_file(root, orig, OFlag::O_RDONLY)?;
    let st = nix::sys::stat::fstat(&s).map_err(|e| format!("{orig}: {e}"))?;
    let times = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: utimensat with a two-element timespec array on a directory fd we own.
    if unsafe {
        libc::utimensat(
            p.as_raw_fd(),
            n.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } < 0
    {
        return Err(errno(copy, "utimes"));
    }
    // SAFETY: futimens with a two-element timespec array on a directory fd we own.
    if unsafe { libc::futimens(p.as_raw_fd(), dir_times.as_ptr()) } < 0 {
        return Err(errno(copy, "utimes of the directory of"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestCmd<'a> = (u16, Vec<(u16, &'a [u8])>);

    fn stream(cmds: &[TestCmd<'_>]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(1u32.to_le_bytes());
        for (kind, attrs) in cmds {
            let mut body = Vec::new();
            for (t, v) in attrs {
                body.extend(t.to_le_bytes());
                body.extend((v.len() as u16).to_le_bytes());
                body.extend(*v);
            }
            out.extend((body.len() as u32).to_le_bytes());
            out.extend(kind.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(body);
        }
        out
    }

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        max_commands: 1000,
    };

    fn run(bytes: &[u8]) -> (tempfile::TempDir, Result<Report, String>) {
        let dir = tempfile::tempdir().expect("tmp");
        let root = std::fs::File::open(dir.path()).expect("open");
        let r = receive(&mut &bytes[..], root.as_fd(), LIMITS);
        (dir, r)
    }

    #[test]
    fn orphans_land_where_they_are_renamed_to() {
        let off = 0u64.to_le_bytes();
        let mode = 0o640u64.to_le_bytes();
        let (dir, r) = run(&stream(&[
            (SUBVOL, vec![(A_PATH, b"vol")]),
            (MKDIR, vec![(A_PATH, b"o258-1-0")]),
            (MKFILE, vec![(A_PATH, b"o259-1-0")]),
            // Into a directory that is itself still an orphan: held until it is placed.
            (
                RENAME,
                vec![(A_PATH, b"o259-1-0"), (A_PATH_TO, b"o258-1-0/f")],
            ),
            (RENAME, vec![(A_PATH, b"o258-1-0"), (A_PATH_TO, b"d")]),
            (
                WRITE,
                vec![(A_PATH, b"d/f"), (A_FILE_OFFSET, &off), (A_DATA, b"hello")],
            ),
            (LINK, vec![(A_PATH, b"g"), (A_PATH_LINK, b"d/f")]),
            (CHMOD, vec![(A_PATH, b"d/f"), (A_MODE, &mode)]),
            (SYMLINK, vec![(A_PATH, b"o260-1-0"), (A_PATH_LINK, b"/etc")]),
            (RENAME, vec![(A_PATH, b"o260-1-0"), (A_PATH_TO, b"l")]),
            (END, vec![]),
        ]));
        let rep = r.expect("receive");
        assert_eq!(rep.bytes, 5);
        let p = dir.path();
        assert_eq!(std::fs::read(p.join("d/f")).expect("d/f"), b"hello");
        assert_eq!(std::fs::read(p.join("g")).expect("g"), b"hello");
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(p.join("d/f")).expect("meta");
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(
            std::fs::read_link(p.join("l")).expect("l"),
            std::path::Path::new("/etc")
        );
        let names: Vec<_> = std::fs::read_dir(p)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('o')), "{names:?}");
    }

    #[test]
    fn hostile_streams_fail() {
        let off = 0u64.to_le_bytes();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bad magic", b"btrfs-strea\0\0\x01\0\0\0".to_vec()),
            (
                "a climbing path",
                stream(&[(MKFILE, vec![(A_PATH, b"../x")])]),
            ),
            (
                "through a symlink",
                stream(&[
                    (SYMLINK, vec![(A_PATH, b"l"), (A_PATH_LINK, b"/tmp")]),
                    (MKFILE, vec![(A_PATH, b"l/x")]),
                ]),
            ),
            (
                "writing through a symlink",
                stream(&[
                    (SYMLINK, vec![(A_PATH, b"l"), (A_PATH_LINK, b"/etc/passwd")]),
                    (
                        WRITE,
                        vec![(A_PATH, b"l"), (A_FILE_OFFSET, &off), (A_DATA, b"x")],
                    ),
                ]),
            ),
            (
                "an incremental stream",
                stream(&[(SNAPSHOT, vec![(A_PATH, b"s")])]),
            ),
            (
                "too much data",
                stream(&[
                    (MKFILE, vec![(A_PATH, b"f")]),
                    (
                        TRUNCATE,
                        vec![(A_PATH, b"f"), (A_SIZE, &(2u64 << 20).to_le_bytes())],
                    ),
                ]),
            ),
        ];
        for (what, bytes) in cases {
            let (_dir, r) = run(&bytes);
            assert!(r.is_err(), "{what}: {r:?}");
        }
    }
}
