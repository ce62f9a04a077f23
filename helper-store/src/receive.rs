//! Applying a btrfs send stream (protocol 1) beneath a volume directory: what `btrfs receive`
//! does, for optimized backups and migrations between btrfs pools (`migrate.rs`), written
//! for a hostile stream. A full stream fills an empty
//! volume; an incremental one (LXD sends each snapshot after the first, and the instance, as
//! its difference from the one before) starts from a copy of the volume received before it. Every path is
//! resolved beneath the target with no symlink followed (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS
//! on the parent, *at calls with AT_SYMLINK_NOFOLLOW on the last component), sizes are
//! bounded, and device nodes are skipped as image unpacking skips them. It runs in a child
//! landlocked to the target volume.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{openat2, OFlag, OpenHow};
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
    /// Whether the stream was a difference from the volume before it.
    pub incremental: bool,
    /// Entries moved into another directory by copying (no REFER).
    pub moved_by_copy: u64,
    /// Hard links into another directory kept as copies (no REFER).
    pub link_copies: u64,
    /// Entries taken under a stash name while a command for them waited.
    pub stashed: u64,
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
const A_UUID: u16 = 1;
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
const A_CLONE_UUID: u16 = 20;
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
    silo_proto::jail::beneath::beneath_how(flags, 0)
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

/// A stat's access and modification times, as utimensat takes them.
fn times_of(st: &nix::sys::stat::FileStat) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ]
}

/// Sets the times of `name` in directory `dir` (never following a symlink), or of `dir`
/// itself without a name.
fn set_times(
    dir: BorrowedFd<'_>,
    name: Option<&std::ffi::CStr>,
    times: &[libc::timespec; 2],
) -> std::io::Result<()> {
    // SAFETY: utimensat/futimens on a directory fd we hold, with a NUL-terminated name and a
    // two-element timespec array.
    let rc = unsafe {
        match name {
            Some(n) => libc::utimensat(
                dir.as_raw_fd(),
                n.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            ),
            None => libc::futimens(dir.as_raw_fd(), times.as_ptr()),
        }
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn errno(path: &str, what: &str) -> String {
    format!("{what} {path}: {}", std::io::Error::last_os_error())
}

/// Where a stream lands.
struct Target<'a> {
    /// The new volume.
    root: BorrowedFd<'a>,
    /// The volume received before this one, which an incremental stream is a difference from
    /// (read only).
    base: Option<BorrowedFd<'a>>,
    /// The sent subvolume's uuid, as the stream names it.
    uuid: Vec<u8>,
    /// The uuid of the subvolume an incremental stream is a difference from.
    parent_uuid: Vec<u8>,
    /// Device nodes the stream made that were skipped: what it later does to them is moot.
    skipped: std::cell::RefCell<std::collections::HashSet<String>>,
    /// File capabilities set since the last chown of their path (a chown clears them).
    caps: std::cell::RefCell<std::collections::HashMap<String, Vec<u8>>>,
}

/// Applies a send stream beneath `root`; `base` is the volume an incremental stream starts
/// from (copied into `root` first).
pub fn receive(
    r: &mut dyn Read,
    root: BorrowedFd<'_>,
    base: Option<BorrowedFd<'_>>,
    limits: Limits,
) -> Result<Report, String> {
    receive_with(r, root, base, false, limits)
}

/// Applies an incremental stream beneath `root`, a writable btrfs snapshot of `base` already
/// (a migration's chain of volumes then stays one lineage of subvolumes, which a later
/// incremental `BTRFS_IOC_SEND` between them needs). A whole stream is refused.
pub fn receive_onto(
    r: &mut dyn Read,
    root: BorrowedFd<'_>,
    base: BorrowedFd<'_>,
    limits: Limits,
) -> Result<Report, String> {
    receive_with(r, root, Some(base), true, limits)
}

fn receive_with(
    r: &mut dyn Read,
    root: BorrowedFd<'_>,
    base: Option<BorrowedFd<'_>>,
    prefilled: bool,
    limits: Limits,
) -> Result<Report, String> {
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
    let mut t = Target {
        root,
        base,
        uuid: Vec::new(),
        parent_uuid: Vec::new(),
        skipped: Default::default(),
        caps: Default::default(),
    };
    while let Some(c) = read_cmd(r)? {
        rep.commands += 1;
        if rep.commands > limits.max_commands {
            return Err(format!("more than {} commands", limits.max_commands));
        }
        if matches!(c.kind, SUBVOL | SNAPSHOT) {
            if rep.commands != 1 {
                return Err("a stream names its subvolume only at its start".into());
            }
            t.uuid = c.get(A_UUID).unwrap_or(&[]).to_vec();
            if prefilled && c.kind != SNAPSHOT {
                return Err("a whole stream where a difference was announced".into());
            }
            if c.kind == SNAPSHOT && prefilled {
                t.parent_uuid = c.get(A_CLONE_UUID).unwrap_or(&[]).to_vec();
                rep.incremental = true;
            } else if c.kind == SNAPSHOT {
                let base = t.base.ok_or(
                    "an incremental stream that is not preceded by the volume it is a difference from",
                )?;
                t.parent_uuid = c.get(A_CLONE_UUID).unwrap_or(&[]).to_vec();
                rep.incremental = true;
                crate::copy::copy_tree(base, root, u64::MAX)
                    .map_err(|e| format!("copying the volume the stream starts from: {e}"))?;
            }
            continue;
        }
        if pending.intercept(&c, &t, &mut rep, &limits)? {
            continue;
        }
        apply(&c, &t, &mut rep, &limits)?;
        if c.kind == END {
            break;
        }
    }
    Ok(rep)
}

/// New inodes arrive as orphans at the top (`o<ino>-<gen>-0`) and are then renamed into
/// place. A confined child has no landlock REFER right, so moving between directories means
/// asking the parent (`child::refer`): orphans are made only when their final name is known
/// (or when something else needs them first), right where they belong, which saves most of
/// those round trips.
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
    /// Extra names (`.silo-recv-<n>`, beside the original) that keep what a held link or
    /// rename will take, while the stream goes on with the name it had.
    stashes: Vec<String>,
    /// Stash names given so far.
    stashed: u64,
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
    /// Removes the stash a just applied link came from.
    fn unstash(&mut self, c: &Cmd, root: BorrowedFd<'_>) -> Result<(), String> {
        if c.kind == LINK {
            let src = c.path(A_PATH_LINK)?;
            if let Some(i) = self.stashes.iter().position(|s| *s == src) {
                self.stashes.remove(i);
                keeping_dir_times(root, &src, || unlink_at(root, &src))?;
            }
        }
        Ok(())
    }

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
        t: &Target<'_>,
        rep: &mut Report,
        limits: &Limits,
    ) -> Result<bool, String> {
        let creates = matches!(c.kind, MKFILE | MKDIR | MKNOD | MKFIFO | MKSOCK | SYMLINK);
        if creates {
            let p = c.path(A_PATH)?;
            if is_orphan(&p) {
                self.hold_orphan(p, c)?;
                return Ok(true);
            }
        }
        if c.kind == LINK
            && self.owner(c).is_none()
            && !self.made.contains_key(&c.path(A_PATH_LINK)?)
        {
            self.link_in_place(c, t, rep)?;
            return Ok(true);
        }
        if c.kind == END {
            self.finish(t.root)?;
            return Ok(false);
        }
        if c.kind == RENAME {
            let from = c.path(A_PATH)?;
            let to = c.path(A_PATH_TO)?;
            self.rebase_all(&from, &to);
            if let Some(orphan) = self.made.remove(&from) {
                self.place_orphan(orphan, &from, &to, t, rep, limits)?;
                return Ok(true);
            }
        }
        if let Some(top) = self.owner(c) {
            self.hold_inside(&top, c, t.root, rep)?;
            return Ok(true);
        }
        self.make_named_orphans(c, t, rep, limits)?;
        Ok(false)
    }

    /// Holds the command that makes orphan `p` until its final name is known.
    fn hold_orphan(&mut self, p: String, c: &Cmd) -> Result<(), String> {
        self.held += size(c);
        if self.held > MAX_HELD {
            return Err("too much of the stream is held for entries not yet in place".into());
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
        Ok(())
    }

    /// A hard link between entries already in place: made now, as a copy where not even the
    /// parent may link across directories.
    fn link_in_place(&mut self, c: &Cmd, t: &Target<'_>, rep: &mut Report) -> Result<(), String> {
        let root = t.root;
        let (new, old) = (c.path(A_PATH)?, c.path(A_PATH_LINK)?);
        if t.skipped.borrow().contains(&old) {
            t.skipped.borrow_mut().insert(new);
            return Ok(());
        }
        match link_at(root, &old, &new) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                rep.link_copies += 1;
                if !copy_entry(root, &old, &new)? {
                    self.copies.push((new, old));
                }
            }
            Err(e) => return Err(format!("linking {new}: {e}")),
        }
        Ok(())
    }

    /// At the stream's end: the stashes go, and copies standing in for hard links take their
    /// originals' final content.
    fn finish(&mut self, root: BorrowedFd<'_>) -> Result<(), String> {
        for stash in std::mem::take(&mut self.stashes) {
            keeping_dir_times(root, &stash, || unlink_at(root, &stash))?;
        }
        for (copy, orig) in std::mem::take(&mut self.copies) {
            // An original the stream has since removed left the copy as the file itself.
            if open_file(root, &orig, OFlag::O_PATH).is_ok() {
                refresh_copy(root, &orig, &copy)?;
            }
        }
        Ok(())
    }

    /// Renames every path held (copies, stashes, held commands) as a RENAME of `from` to `to`
    /// does.
    fn rebase_all(&mut self, from: &str, to: &str) {
        for (copy, orig) in self.copies.iter_mut() {
            for p in [copy, orig] {
                if let Some(n) = rebase_path(p, from, to) {
                    *p = n;
                }
            }
        }
        for p in self.stashes.iter_mut() {
            if let Some(n) = rebase_path(p, from, to) {
                *p = n;
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
                    from,
                    to,
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
                        from,
                        to,
                    );
                }
            }
        }
    }

    /// An orphan renamed to its final name `to`: made there with what waited for it, unless
    /// `to` is inside another orphan not in place yet.
    fn place_orphan(
        &mut self,
        (made, later): (Cmd, Vec<Cmd>),
        from: &str,
        to: &str,
        t: &Target<'_>,
        rep: &mut Report,
        limits: &Limits,
    ) -> Result<(), String> {
        let mut cmds = vec![rebase(made, from, to)];
        cmds.extend(later.into_iter().map(|l| rebase(l, from, to)));
        // Renamed into a directory that is itself not in place yet: it waits there.
        let top = to.split('/').next().unwrap_or("").to_string();
        if to.contains('/') {
            if let Some((_, waiting)) = self.made.get_mut(&top) {
                waiting.extend(cmds);
                return Ok(());
            }
        }
        for (i, l) in cmds.into_iter().enumerate() {
            self.held = self.held.saturating_sub(size(&l));
            // The first is the orphan's own creation, now at its final name.
            if i == 0 || !self.intercept(&l, t, rep, limits)? {
                apply(&l, t, rep, limits)?;
                self.unstash(&l, t.root)?;
            }
        }
        Ok(())
    }

    /// Holds a command for a path inside orphan `top` until it is in place.
    fn hold_inside(
        &mut self,
        top: &str,
        c: &Cmd,
        root: BorrowedFd<'_>,
        rep: &mut Report,
    ) -> Result<(), String> {
        self.held += size(c);
        if self.held > MAX_HELD {
            return Err("too much of the stream is held for entries not yet in place".into());
        }
        let mut c = Cmd {
            kind: c.kind,
            attrs: c.attrs.clone(),
        };
        if matches!(c.kind, RENAME | LINK) {
            self.stash_source(&mut c, root, rep)?;
        }
        if let Some((_, later)) = self.made.get_mut(top) {
            later.push(c);
        }
        Ok(())
    }

    /// What is linked or moved into an entry not yet in place is taken now, under a stash
    /// name in its own directory (which needs no REFER): the stream may unlink or reuse the
    /// old name before the held command runs. `c` is pointed at the stash.
    fn stash_source(
        &mut self,
        c: &mut Cmd,
        root: BorrowedFd<'_>,
        rep: &mut Report,
    ) -> Result<(), String> {
        let attr = if c.kind == RENAME {
            A_PATH
        } else {
            A_PATH_LINK
        };
        let src = c.path(attr)?;
        let src_top = src.split('/').next().unwrap_or("");
        let pending =
            self.made.contains_key(&src) || (src.contains('/') && self.made.contains_key(src_top));
        let live = !pending;
        if live {
            self.stashed += 1;
            rep.stashed += 1;
            let stash = match src.rsplit_once('/') {
                Some((d, _)) => format!("{d}/.silo-recv-{}", self.stashed),
                None => format!(".silo-recv-{}", self.stashed),
            };
            if c.kind == RENAME {
                keeping_dir_times(root, &src, || {
                    rename_at(root, &src, &stash).map_err(|e| format!("renaming {src}: {e}"))
                })?;
                for (copy, orig) in self.copies.iter_mut() {
                    for p in [copy, orig] {
                        if let Some(n) = rebase_path(p, &src, &stash) {
                            *p = n;
                        }
                    }
                }
            } else {
                keeping_dir_times(root, &src, || {
                    link_at(root, &src, &stash).map_err(|e| format!("linking {src}: {e}"))
                })?;
                self.stashes.push(stash.clone());
            }
            for a in c.attrs.iter_mut() {
                if a.0 == attr {
                    a.1 = stash.clone().into_bytes();
                }
            }
        }
        Ok(())
    }

    /// Anything else naming an orphan itself (a write, a chmod): make it at the top.
    fn make_named_orphans(
        &mut self,
        c: &Cmd,
        t: &Target<'_>,
        rep: &mut Report,
        limits: &Limits,
    ) -> Result<(), String> {
        for a in [A_PATH, A_PATH_LINK, A_CLONE_PATH] {
            if let Ok(p) = c.path(a) {
                if let Some((made, later)) = self.made.remove(&p) {
                    for l in std::iter::once(made).chain(later) {
                        self.held = self.held.saturating_sub(size(&l));
                        apply(&l, t, rep, limits)?;
                        self.unstash(&l, t.root)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn cstr(s: &str) -> Result<std::ffi::CString, String> {
    std::ffi::CString::new(s).map_err(|_| format!("{s:?} holds a NUL"))
}

/// Applies one command of the stream (after `Pending` has let it through).
fn apply(c: &Cmd, t: &Target<'_>, rep: &mut Report, limits: &Limits) -> Result<(), String> {
    let root = t.root;
    if follow_skipped(c, t)? {
        return Ok(());
    }
    match c.kind {
        END | UPDATE_EXTENT => Ok(()),
        SUBVOL | SNAPSHOT => Err("a stream names its subvolume only at its start".into()),
        MKFILE | MKDIR | MKNOD | MKFIFO | MKSOCK | SYMLINK => make_entry(c, t, rep),
        RENAME | LINK => rename_or_link(c, root, rep),
        UNLINK | RMDIR => remove_entry(c, root),
        WRITE => write_data(c, root, rep, limits),
        CLONE => clone_range(c, t, rep, limits),
        TRUNCATE => truncate_file(c, root, limits),
        // The volume's own directory keeps the mode, owner and times silo gave it.
        CHMOD | CHOWN | UTIMES | SET_XATTR | REMOVE_XATTR
            if c.path(A_PATH)?.trim_matches('/').is_empty() =>
        {
            Ok(())
        }
        CHMOD => chmod_entry(c, root),
        CHOWN => chown_entry(c, t),
        UTIMES => set_entry_times(c, root),
        SET_XATTR | REMOVE_XATTR => change_xattr(c, t),
        other => Err(format!("unknown send stream command {other}")),
    }
}

/// Follows the device nodes that were skipped (see `make_entry`) through the renames, links
/// and unlinks the stream sends for them; returns whether `c` was about one, and so is done.
fn follow_skipped(c: &Cmd, t: &Target<'_>) -> Result<bool, String> {
    if t.skipped
        .borrow()
        .contains(&c.path(A_PATH).unwrap_or_default())
    {
        let path = c.path(A_PATH)?;
        let mut skipped = t.skipped.borrow_mut();
        match c.kind {
            RENAME => {
                skipped.remove(&path);
                skipped.insert(c.path(A_PATH_TO)?);
            }
            UNLINK => {
                skipped.remove(&path);
            }
            _ => {}
        }
        return Ok(true);
    }
    if c.kind == LINK && t.skipped.borrow().contains(&c.path(A_PATH_LINK)?) {
        t.skipped.borrow_mut().insert(c.path(A_PATH)?);
        return Ok(true);
    }
    Ok(false)
}

/// MKFILE, MKDIR, MKNOD, MKFIFO, MKSOCK, SYMLINK: a new entry, owned by root and private
/// until the stream's CHOWN and CHMOD for it.
fn make_entry(c: &Cmd, t: &Target<'_>, rep: &mut Report) -> Result<(), String> {
    let path = c.path(A_PATH)?;
    let (p, name) = parent_of(t.root, &path)?;
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
                t.skipped.borrow_mut().insert(path.clone());
                0
            }
        }
    };
    if rc < 0 {
        return Err(errno(&path, "creating"));
    }
    Ok(())
}

/// RENAME and LINK: in one directory by the child itself; across directories by the parent
/// (no REFER right here), and failing that by a copy.
fn rename_or_link(c: &Cmd, root: BorrowedFd<'_>, rep: &mut Report) -> Result<(), String> {
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
    let mut e = std::io::Error::last_os_error();
    if rc < 0 && e.raw_os_error() == Some(libc::EXDEV) {
        // Across directories: the parent does it (see child.rs).
        let op = if c.kind == RENAME {
            crate::child::Refer::Rename
        } else {
            crate::child::Refer::Link
        };
        match crate::child::refer(op, p1.as_fd(), &n1, p2.as_fd(), &n2) {
            Ok(()) => return Ok(()),
            Err(x) => e = std::io::Error::from(x),
        }
    }
    if rc < 0 {
        if e.raw_os_error() == Some(libc::EXDEV) && c.kind == LINK {
            // Not even the parent would link it: a copy keeps the content (not the
            // sharing).
            rep.link_copies += 1;
            return copy_entry(root, &other, &to).map(|_| ());
        }
        if e.raw_os_error() == Some(libc::EXDEV) {
            // Nor move it: copy, then remove.
            rep.moved_by_copy += 1;
            return move_by_copy(root, &other, &to);
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

/// UNLINK and RMDIR.
fn remove_entry(c: &Cmd, root: BorrowedFd<'_>) -> Result<(), String> {
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

/// WRITE: data at an offset, counted against the byte limit before it is written.
fn write_data(
    c: &Cmd,
    root: BorrowedFd<'_>,
    rep: &mut Report,
    limits: &Limits,
) -> Result<(), String> {
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

/// CLONE: a range of another file copied in, counted against the byte limit before it is
/// read.
fn clone_range(c: &Cmd, t: &Target<'_>, rep: &mut Report, limits: &Limits) -> Result<(), String> {
    let root = t.root;
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
    // A clone from the subvolume the stream is a difference from reads the volume
    // received before; any other comes from this one.
    let clone_uuid = c.get(A_CLONE_UUID).unwrap_or(&[]);
    let from = if !t.parent_uuid.is_empty()
        && clone_uuid == t.parent_uuid.as_slice()
        && clone_uuid != t.uuid.as_slice()
    {
        t.base.ok_or("a clone from a volume that is not there")?
    } else {
        root
    };
    let s = open_file(from, &src, OFlag::O_RDONLY)?;
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

/// TRUNCATE, to a size no larger than the byte limit.
fn truncate_file(c: &Cmd, root: BorrowedFd<'_>, limits: &Limits) -> Result<(), String> {
    let path = c.path(A_PATH)?;
    let size = c.u64(A_SIZE)?;
    if size > limits.max_bytes {
        return Err(format!("{path}: size {size} is over the limit"));
    }
    let fd = open_file(root, &path, OFlag::O_WRONLY)?;
    nix::unistd::ftruncate(&fd, size as i64).map_err(|e| format!("truncating {path}: {e}"))
}

/// CHMOD, never following a symlink.
fn chmod_entry(c: &Cmd, root: BorrowedFd<'_>) -> Result<(), String> {
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

/// CHOWN, never following a symlink, and the file capabilities it clears set again.
fn chown_entry(c: &Cmd, t: &Target<'_>) -> Result<(), String> {
    let root = t.root;
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
    // A chown clears file capabilities; the stream set them before it (as btrfs
    // receive does, they are set again).
    let cap = t.caps.borrow_mut().remove(&path);
    if let Some(cap) = cap {
        set_xattr(root, &path, "security.capability", Some(&cap))?;
    }
    Ok(())
}

/// UTIMES, never following a symlink.
fn set_entry_times(c: &Cmd, root: BorrowedFd<'_>) -> Result<(), String> {
    let path = c.path(A_PATH)?;
    let times = [c.time(A_ATIME)?, c.time(A_MTIME)?];
    let (p, name) = parent_of(root, &path)?;
    let n = cstr(&name)?;
    set_times(p.as_fd(), Some(&n), &times).map_err(|e| format!("utimes {path}: {e}"))
}

/// SET_XATTR and REMOVE_XATTR; file capabilities are remembered for the CHOWN that follows.
fn change_xattr(c: &Cmd, t: &Target<'_>) -> Result<(), String> {
    let path = c.path(A_PATH)?;
    let name = c.path(A_XATTR_NAME)?;
    let data = if c.kind == SET_XATTR {
        Some(c.get(A_XATTR_DATA)?)
    } else {
        None
    };
    if name == "security.capability" {
        if let Some(d) = data {
            t.caps.borrow_mut().insert(path.clone(), d.to_vec());
        }
    }
    set_xattr(t.root, &path, &name, data)
}

/// Sets (or with `None` removes) an extended attribute on what `path` names, through an fd
/// opened without following a symlink: a symlink's own are left out (only trusted.* and
/// security.* could be set on one), as are those only CAP_SYS_ADMIN may set.
fn set_xattr(
    root: BorrowedFd<'_>,
    path: &str,
    name: &str,
    data: Option<&[u8]>,
) -> Result<(), String> {
    let Ok(fd) = open_file(root, path, OFlag::O_RDONLY | OFlag::O_NONBLOCK) else {
        return Ok(());
    };
    let n = cstr(name)?;
    // SAFETY: fsetxattr/fremovexattr on an fd we own, with a NUL-terminated name and a buffer
    // we own.
    let rc = unsafe {
        match data {
            Some(d) => libc::fsetxattr(
                fd.as_raw_fd(),
                n.as_ptr(),
                d.as_ptr() as *const libc::c_void,
                d.len(),
                0,
            ),
            None => libc::fremovexattr(fd.as_raw_fd(), n.as_ptr()),
        }
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        let ignorable = match e.raw_os_error() {
            Some(libc::EPERM) => silo_proto::image::xattr::privileged(name.as_bytes()),
            Some(libc::ENODATA) => data.is_none(),
            _ => false,
        };
        if !ignorable {
            return Err(format!("extended attribute {name} of {path}: {e}"));
        }
    }
    Ok(())
}

/// Finds `member` (`backup/container.bin` or `backup/snapshots/<name>.bin`) in a backup
/// tarball read from `input` and applies the send stream it holds beneath `root`.
pub fn from_backup(
    input: OwnedFd,
    member: &str,
    root: BorrowedFd<'_>,
    base: Option<BorrowedFd<'_>>,
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
            return receive(&mut e, root, base, limits);
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
    crate::copy::copy_xattrs(src.as_fd(), dst.as_fd(), to)
}

/// `from` moved to `to` in another directory without REFER: copied there, then removed.
fn move_by_copy(root: BorrowedFd<'_>, from: &str, to: &str) -> Result<(), String> {
    let is_dir = copy_entry(root, from, to)?;
    let (p1, n1) = parent_of(root, from)?;
    let parent = silo_proto::jail::beneath::Root::from_fd(p1, from.to_string());
    if is_dir {
        parent.remove_tree(&n1).map_err(|e| e.to_string())
    } else {
        let a = cstr(&n1)?;
        // SAFETY: unlinkat on a directory fd we own with a NUL-terminated name.
        if unsafe { libc::unlinkat(parent.fd().as_raw_fd(), a.as_ptr(), 0) } < 0 {
            return Err(errno(from, "removing (moved)"));
        }
        Ok(())
    }
}

/// Recreates `from` as `to` (a directory with everything beneath it; a symlink, fifo or
/// socket as itself), with owner, mode and times; returns whether it was a directory.
fn copy_entry(root: BorrowedFd<'_>, from: &str, to: &str) -> Result<bool, String> {
    use nix::sys::stat::{fstatat, SFlag};
    let (p1, n1) = parent_of(root, from)?;
    let (p2, n2) = parent_of(root, to)?;
    let st = fstatat(&p1, n1.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| format!("{from}: {e}"))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let (a, b) = (cstr(&n1)?, cstr(&n2)?);
    let mode = (st.st_mode & 0o7777) as libc::mode_t;
    // SAFETY: *at syscalls on directory fds we own, with NUL-terminated names and buffers we
    // own; nothing is followed.
    let rc = unsafe {
        match kind {
            SFlag::S_IFDIR => libc::mkdirat(p2.as_raw_fd(), b.as_ptr(), 0o700),
            SFlag::S_IFLNK => {
                let mut buf = vec![0u8; 4097];
                let n = libc::readlinkat(
                    p1.as_raw_fd(),
                    a.as_ptr(),
                    buf.as_mut_ptr() as *mut libc::c_char,
                    buf.len() - 1,
                );
                if n < 0 {
                    -1
                } else {
                    buf.truncate(n as usize);
                    buf.push(0);
                    libc::symlinkat(
                        buf.as_ptr() as *const libc::c_char,
                        p2.as_raw_fd(),
                        b.as_ptr(),
                    )
                }
            }
            SFlag::S_IFIFO | SFlag::S_IFSOCK => {
                libc::mknodat(p2.as_raw_fd(), b.as_ptr(), kind.bits() | 0o600, 0)
            }
            SFlag::S_IFREG => 0,
            // Device nodes were never made (see MKNOD).
            _ => 1,
        }
    };
    if rc < 0 {
        return Err(errno(to, "moving (by copy) to"));
    }
    match kind {
        SFlag::S_IFREG => copy_file(root, from, to)?,
        SFlag::S_IFDIR => {
            let src = openat2(&p1, n1.as_str(), how(OFlag::O_DIRECTORY | OFlag::O_RDONLY))
                .map_err(|e| format!("{from}: {e}"))?;
            let dst = openat2(&p2, n2.as_str(), how(OFlag::O_DIRECTORY | OFlag::O_RDONLY))
                .map_err(|e| format!("{to}: {e}"))?;
            crate::copy::copy_tree(src.as_fd(), dst.as_fd(), u64::MAX)
                .map_err(|e| format!("moving {from} to {to}: {e}"))?;
            crate::copy::copy_xattrs(src.as_fd(), dst.as_fd(), to)?;
        }
        _ => {}
    }
    if rc == 0 {
        let times = times_of(&st);
        // SAFETY: *at syscalls on a directory fd we own with a NUL-terminated name, never
        // following a symlink.
        unsafe {
            if libc::fchownat(
                p2.as_raw_fd(),
                b.as_ptr(),
                st.st_uid,
                st.st_gid,
                libc::AT_SYMLINK_NOFOLLOW,
            ) < 0
                || (kind != SFlag::S_IFLNK
                    && libc::syscall(
                        libc::SYS_fchmodat2,
                        p2.as_raw_fd(),
                        b.as_ptr(),
                        mode,
                        libc::AT_SYMLINK_NOFOLLOW,
                    ) < 0)
                || libc::utimensat(
                    p2.as_raw_fd(),
                    b.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                ) < 0
            {
                return Err(errno(to, "moving (by copy) to"));
            }
        }
    }
    Ok(kind == SFlag::S_IFDIR)
}

/// Runs `f` (which adds or removes a stash name beside `path`) and gives `path`'s directory
/// back the times it had: stashes are silo's, not the stream's.
fn keeping_dir_times(
    root: BorrowedFd<'_>,
    path: &str,
    f: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let (p, _) = parent_of(root, path)?;
    let st = nix::sys::stat::fstat(&p).map_err(|e| format!("{path}: {e}"))?;
    f()?;
    set_times(p.as_fd(), None, &times_of(&st))
        .map_err(|e| format!("utimes of the directory of {path}: {e}"))
}

fn rename_at(root: BorrowedFd<'_>, old: &str, new: &str) -> std::io::Result<()> {
    let to_io = |e: String| std::io::Error::other(e);
    let (p1, n1) = parent_of(root, old).map_err(to_io)?;
    let (p2, n2) = parent_of(root, new).map_err(to_io)?;
    let (a, b) = (cstr(&n1).map_err(to_io)?, cstr(&n2).map_err(to_io)?);
    // SAFETY: renameat on directory fds we own with NUL-terminated names.
    if unsafe { libc::renameat(p1.as_raw_fd(), a.as_ptr(), p2.as_raw_fd(), b.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn unlink_at(root: BorrowedFd<'_>, path: &str) -> Result<(), String> {
    let (p, name) = parent_of(root, path)?;
    let n = cstr(&name)?;
    // SAFETY: unlinkat on a directory fd we own with a NUL-terminated name.
    if unsafe { libc::unlinkat(p.as_raw_fd(), n.as_ptr(), 0) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(format!("removing {path}: {e}"));
        }
    }
    Ok(())
}

fn link_at(root: BorrowedFd<'_>, old: &str, new: &str) -> std::io::Result<()> {
    let to_io = |e: String| std::io::Error::other(e);
    let (p1, n1) = parent_of(root, old).map_err(to_io)?;
    let (p2, n2) = parent_of(root, new).map_err(to_io)?;
    let (a, b) = (cstr(&n1).map_err(to_io)?, cstr(&n2).map_err(to_io)?);
    // SAFETY: linkat on directory fds we own with NUL-terminated names; no symlink followed.
    if unsafe { libc::linkat(p1.as_raw_fd(), a.as_ptr(), p2.as_raw_fd(), b.as_ptr(), 0) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EXDEV) {
            return crate::child::refer(
                crate::child::Refer::Link,
                p1.as_fd(),
                &n1,
                p2.as_fd(),
                &n2,
            )
            .map_err(std::io::Error::from);
        }
        return Err(e);
    }
    Ok(())
}

/// Makes a copy standing in for a hard link equal to its original again (content, mode,
/// owner, times), once the stream has written everything.
fn refresh_copy(root: BorrowedFd<'_>, orig: &str, copy: &str) -> Result<(), String> {
    // Replacing the copy touches its directory, whose times the stream has already set.
    keeping_dir_times(root, copy, || {
        unlink_at(root, copy)?;
        copy_file(root, orig, copy)?;
        let s = open_file(root, orig, OFlag::O_RDONLY)?;
        let st = nix::sys::stat::fstat(&s).map_err(|e| format!("{orig}: {e}"))?;
        let (p, name) = parent_of(root, copy)?;
        let n = cstr(&name)?;
        set_times(p.as_fd(), Some(&n), &times_of(&st)).map_err(|e| format!("utimes {copy}: {e}"))
    })
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
        let r = receive(&mut &bytes[..], root.as_fd(), None, LIMITS);
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
    fn incremental_streams_start_from_the_volume_before() {
        let base = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(base.path().join("a")).expect("a");
        std::fs::create_dir_all(base.path().join("b")).expect("b");
        std::fs::write(base.path().join("a/x"), b"hello").expect("x");
        let basefd = std::fs::File::open(base.path()).expect("open");
        let (u1, u2) = ([1u8; 16], [2u8; 16]);
        let (zero, five) = (0u64.to_le_bytes(), 5u64.to_le_bytes());
        let bytes = stream(&[
            (
                SNAPSHOT,
                vec![(A_PATH, b"vol"), (A_UUID, &u2), (A_CLONE_UUID, &u1)],
            ),
            (RENAME, vec![(A_PATH, b"a/x"), (A_PATH_TO, b"b/x")]),
            (MKFILE, vec![(A_PATH, b"o300-1-0")]),
            (RENAME, vec![(A_PATH, b"o300-1-0"), (A_PATH_TO, b"b/y")]),
            // From the parent's a/x, which this volume no longer has.
            (
                CLONE,
                vec![
                    (A_PATH, b"b/y"),
                    (A_FILE_OFFSET, &zero),
                    (A_CLONE_LEN, &five),
                    (A_CLONE_UUID, &u1),
                    (A_CLONE_PATH, b"a/x"),
                    (A_CLONE_OFFSET, &zero),
                ],
            ),
            (END, vec![]),
        ]);
        let dir = tempfile::tempdir().expect("tmp");
        let root = std::fs::File::open(dir.path()).expect("open");
        receive(&mut &bytes[..], root.as_fd(), Some(basefd.as_fd()), LIMITS).expect("receive");
        let p = dir.path();
        assert!(!p.join("a/x").exists());
        assert_eq!(std::fs::read(p.join("b/x")).expect("b/x"), b"hello");
        assert_eq!(std::fs::read(p.join("b/y")).expect("b/y"), b"hello");
        // The base is only read.
        assert_eq!(
            std::fs::read(base.path().join("a/x")).expect("a/x"),
            b"hello"
        );
        // Without the volume before it, an incremental stream is refused.
        let dir = tempfile::tempdir().expect("tmp");
        let root = std::fs::File::open(dir.path()).expect("open");
        assert!(receive(&mut &bytes[..], root.as_fd(), None, LIMITS).is_err());
    }

    #[test]
    fn moves_by_copy_keep_the_tree() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path();
        std::fs::create_dir_all(p.join("a/sub")).expect("mkdir");
        std::fs::create_dir_all(p.join("c")).expect("mkdir");
        std::fs::write(p.join("a/sub/f"), b"data").expect("f");
        std::os::unix::fs::symlink("/etc/passwd", p.join("a/l")).expect("symlink");
        std::fs::set_permissions(p.join("a"), std::fs::Permissions::from_mode(0o751))
            .expect("chmod");
        std::os::unix::fs::chown(p.join("a/sub/f"), Some(1234), Some(5678)).expect("chown");
        let root = std::fs::File::open(p).expect("open");
        move_by_copy(root.as_fd(), "a", "c/a").expect("move");
        move_by_copy(root.as_fd(), "c/a/l", "l2").expect("move symlink");
        assert!(!p.join("a").exists());
        assert_eq!(std::fs::read(p.join("c/a/sub/f")).expect("f"), b"data");
        let m = std::fs::metadata(p.join("c/a/sub/f")).expect("meta");
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        let m = std::fs::metadata(p.join("c/a")).expect("meta");
        assert_eq!(m.permissions().mode() & 0o7777, 0o751);
        assert_eq!(
            std::fs::read_link(p.join("l2")).expect("l2"),
            std::path::Path::new("/etc/passwd")
        );
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
