//! Compares two directory trees on the host, as a migration must leave them: file types, modes
//! (set-uid/gid and sticky too), owners (one side may be id-shifted), sizes, contents (sha256),
//! symlink targets, device numbers, chosen xattrs and, optionally, hard-link groups and mtimes.
//! Symlinks are never followed. Also where silo and LXD keep an instance's root filesystem.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::Digest;

/// What kind of inode an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

/// One inode as seen through one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its type.
    pub kind: Kind,
    /// Permission bits with set-uid, set-gid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner on the host.
    pub uid: u32,
    /// Group on the host.
    pub gid: u32,
    /// Size in bytes (regular files and symlinks; 0 otherwise).
    pub size: u64,
    /// sha256 of a regular file's contents, hex.
    pub sha256: Option<String>,
    /// A symlink's target, unresolved.
    pub target: Option<PathBuf>,
    /// A device's number.
    pub rdev: Option<u64>,
    /// Modification time, seconds (directories' included).
    pub mtime: i64,
    /// The xattrs kept ([`Options::xattr`]), name → value.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// (st_dev, st_ino): identifies hard links inside one scan.
    pub inode: (u64, u64),
    /// Link count.
    pub nlink: u64,
}

/// A scanned tree: paths relative to its root (the root itself is `""`).
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Every entry by relative path.
    pub entries: BTreeMap<PathBuf, Entry>,
}

/// How to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// `b`'s ids are `a`'s plus this (an unprivileged LXD container's files are shifted on
    /// disk by its idmap base; silo's are not, it maps them with an idmapped mount). Applied
    /// to uid, gid and a v3 `security.capability`'s root id.
    pub b_id_offset: i64,
    /// Compare hard-link groups (LXD's rsync has no `-H`, so an LXD copy splits them).
    pub hardlinks: bool,
    /// Compare mtimes (rsync `-t` keeps files' and directories').
    pub mtimes: bool,
    /// Relative paths (and everything beneath them) to leave out on both sides.
    pub ignore: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            b_id_offset: 0,
            hardlinks: true,
            mtimes: false,
            ignore: Vec::new(),
        }
    }
}

/// One difference between the trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Relative path.
    pub path: PathBuf,
    /// What differs, e.g. `mode 4755 != 755`.
    pub what: String,
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}: {}", self.path.display(), self.what)
    }
}

/// Whether an xattr is one a migration must carry: `user.*` and file capabilities. (ACLs and
/// security labels are not: LXD's rsync has no `-A`, and labels belong to the host.)
pub fn kept_xattr(name: &str) -> bool {
    name.starts_with("user.") || name == "security.capability"
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// The xattrs of `p` (not following a symlink) that [`kept_xattr`] keeps.
fn xattrs_of(p: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let c = cpath(p);
    let mut out = BTreeMap::new();
    // SAFETY: a NULL buffer of size 0 asks for the list's size; `c` is a valid C string.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        // Filesystems without xattrs (and special files on some) have none to compare.
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(out),
            _ => Err(e),
        };
    }
    let mut names = vec![0u8; n as usize];
    if n > 0 {
        // SAFETY: `names` has `n` writable bytes; the kernel writes at most that many.
        let m = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if m < 0 {
            return Err(std::io::Error::last_os_error());
        }
        names.truncate(m as usize);
    }
    for name in names.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name_s = String::from_utf8_lossy(name).into_owned();
        if !kept_xattr(&name_s) {
            continue;
        }
        let cn = CString::new(name).expect("xattr name without NUL");
        // SAFETY: size query with a NULL buffer; both strings are valid C strings.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut val = vec![0u8; len as usize];
        // SAFETY: `val` has `len` writable bytes; the kernel writes at most that many.
        let got =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if got < 0 {
            return Err(std::io::Error::last_os_error());
        }
        val.truncate(got as usize);
        out.insert(name_s, val);
    }
    Ok(out)
}

/// Sets an xattr on `p` without following a symlink (for tests that build trees).
pub fn set_xattr(p: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let c = cpath(p);
    let cn = CString::new(name).expect("xattr name without NUL");
    // SAFETY: valid C strings and a buffer of `value.len()` readable bytes.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            cn.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

impl Tree {
    /// Scans `root` (which must be a directory). Errors name the path that failed.
    pub fn scan(root: &Path) -> Result<Tree, String> {
        let mut t = Tree::default();
        t.walk(root, Path::new(""))?;
        Ok(t)
    }

    fn walk(&mut self, root: &Path, rel: &Path) -> Result<(), String> {
        let full = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let md =
            std::fs::symlink_metadata(&full).map_err(|e| format!("{}: {e}", full.display()))?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_char_device() {
            Kind::CharDev
        } else if ft.is_block_device() {
            Kind::BlockDev
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Socket
        };
        let err = |e: std::io::Error| format!("{}: {e}", full.display());
        let entry = Entry {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: if matches!(kind, Kind::File | Kind::Symlink) {
                md.size()
            } else {
                0
            },
            sha256: if kind == Kind::File {
                Some(sha256_file(&full).map_err(err)?)
            } else {
                None
            },
            target: if kind == Kind::Symlink {
                Some(std::fs::read_link(&full).map_err(err)?)
            } else {
                None
            },
            rdev: matches!(kind, Kind::CharDev | Kind::BlockDev).then(|| md.rdev()),
            mtime: md.mtime(),
            xattrs: xattrs_of(&full).map_err(err)?,
            inode: (md.dev(), md.ino()),
            nlink: md.nlink(),
        };
        self.entries.insert(rel.to_path_buf(), entry);
        if kind == Kind::Dir {
            let mut names: Vec<_> = std::fs::read_dir(&full)
                .map_err(err)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            names.sort();
            for n in names {
                self.walk(root, &rel.join(n))?;
            }
        }
        Ok(())
    }

    /// The entries of one kind, e.g. every device node.
    pub fn of_kind(&self, kind: Kind) -> Vec<(&PathBuf, &Entry)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.kind == kind)
            .collect()
    }

    /// Hard-link groups: for every path of a multiply-linked non-directory, the other paths
    /// in this tree that name the same inode.
    pub fn link_groups(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut by_inode: HashMap<(u64, u64), BTreeSet<PathBuf>> = HashMap::new();
        for (p, e) in &self.entries {
            if e.kind != Kind::Dir && e.nlink > 1 {
                by_inode.entry(e.inode).or_default().insert(p.clone());
            }
        }
        let mut out = BTreeMap::new();
        for group in by_inode.values().filter(|g| g.len() > 1) {
            for p in group {
                let others: BTreeSet<PathBuf> = group.iter().filter(|q| *q != p).cloned().collect();
                out.insert(p.clone(), others);
            }
        }
        out
    }
}

/// A file capability xattr decoded enough to compare across an id shift: (magic/version
/// and flags word, the cap words, root id; v2 has root id 0).
fn decode_cap(v: &[u8]) -> Option<(u32, Vec<u32>, u32)> {
    let words: Vec<u32> = v
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if words.len() * 4 != v.len() {
        return None;
    }
    let version = words.first()? & 0xFF00_0000;
    match (version, words.len()) {
        // VFS_CAP_REVISION_2: magic, 2 × (permitted, inheritable).
        (0x0200_0000, 5) => Some((words[0] & !0xFF00_0000, words[1..5].to_vec(), 0)),
        // VFS_CAP_REVISION_3: the same and the root id of the namespace that set it.
        (0x0300_0000, 6) => Some((words[0] & !0xFF00_0000, words[1..5].to_vec(), words[5])),
        _ => None,
    }
}

fn shift(id: u32, offset: i64) -> i64 {
    i64::from(id) + offset
}

fn ignored(p: &Path, ignore: &[PathBuf]) -> bool {
    ignore.iter().any(|i| p.starts_with(i))
}

fn show_xattr(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) if !s.contains('\0') => format!("{s:?}"),
        _ => hex::encode(v),
    }
}

/// Every difference between `a` and `b` under `opts`, in path order.
pub fn compare(a: &Tree, b: &Tree, opts: &Options) -> Vec<Diff> {
    let mut out = Vec::new();
    let mut d = |p: &Path, what: String| {
        out.push(Diff {
            path: p.to_path_buf(),
            what,
        })
    };
    let paths: BTreeSet<&PathBuf> = a.entries.keys().chain(b.entries.keys()).collect();
    for p in paths {
        if ignored(p, &opts.ignore) {
            continue;
        }
        let (ea, eb) = match (a.entries.get(p), b.entries.get(p)) {
            (Some(ea), Some(eb)) => (ea, eb),
            (Some(ea), None) => {
                d(p, format!("only in a ({:?})", ea.kind));
                continue;
            }
            (None, Some(eb)) => {
                d(p, format!("only in b ({:?})", eb.kind));
                continue;
            }
            (None, None) => continue,
        };
        if ea.kind != eb.kind {
            d(p, format!("type {:?} != {:?}", ea.kind, eb.kind));
            continue;
        }
        // A symlink's mode is always 0777 and means nothing.
        if ea.kind != Kind::Symlink && ea.mode != eb.mode {
            d(p, format!("mode {:o} != {:o}", ea.mode, eb.mode));
        }
        if shift(ea.uid, opts.b_id_offset) != i64::from(eb.uid) {
            d(
                p,
                format!("uid {} (+{}) != {}", ea.uid, opts.b_id_offset, eb.uid),
            );
        }
        if shift(ea.gid, opts.b_id_offset) != i64::from(eb.gid) {
            d(
                p,
                format!("gid {} (+{}) != {}", ea.gid, opts.b_id_offset, eb.gid),
            );
        }
        if ea.size != eb.size {
            d(p, format!("size {} != {}", ea.size, eb.size));
        }
        if ea.sha256 != eb.sha256 {
            d(p, "contents differ (sha256)".to_string());
        }
        if ea.target != eb.target {
            let t = |e: &Entry| {
                e.target
                    .as_ref()
                    .map(|t| format!("{:?}", t.display().to_string()))
                    .unwrap_or_else(|| "none".into())
            };
            d(p, format!("symlink target {} != {}", t(ea), t(eb)));
        }
        if ea.rdev != eb.rdev {
            d(p, format!("device {:?} != {:?}", ea.rdev, eb.rdev));
        }
        // rsync sets a symlink's mtime only where the system can (lutimes); not compared.
        if opts.mtimes && ea.kind != Kind::Symlink && ea.mtime != eb.mtime {
            d(p, format!("mtime {} != {}", ea.mtime, eb.mtime));
        }
        let names: BTreeSet<&String> = ea.xattrs.keys().chain(eb.xattrs.keys()).collect();
        for n in names {
            match (ea.xattrs.get(n), eb.xattrs.get(n)) {
                (Some(va), Some(vb)) if va == vb => {}
                (Some(va), Some(vb)) if n == "security.capability" => {
                    match (decode_cap(va), decode_cap(vb)) {
                        (Some((fa, ca, ra)), Some((fb, cb, rb)))
                            if fa == fb
                                && ca == cb
                                && (ra == rb || shift(ra, opts.b_id_offset) == i64::from(rb)) => {}
                        _ => d(
                            p,
                            format!("xattr {n}: {} != {}", hex::encode(va), hex::encode(vb)),
                        ),
                    }
                }
                (va, vb) => d(
                    p,
                    format!(
                        "xattr {n}: {} != {}",
                        va.map(|v| show_xattr(v)).unwrap_or_else(|| "absent".into()),
                        vb.map(|v| show_xattr(v)).unwrap_or_else(|| "absent".into())
                    ),
                ),
            }
        }
    }
    if opts.hardlinks {
        let (la, lb) = (a.link_groups(), b.link_groups());
        let none = BTreeSet::new();
        let paths: BTreeSet<&PathBuf> = la.keys().chain(lb.keys()).collect();
        for p in paths {
            if ignored(p, &opts.ignore) {
                continue;
            }
            let ga = la.get(p).unwrap_or(&none);
            let gb = lb.get(p).unwrap_or(&none);
            let ga: BTreeSet<&PathBuf> = ga.iter().filter(|q| !ignored(q, &opts.ignore)).collect();
            let gb: BTreeSet<&PathBuf> = gb.iter().filter(|q| !ignored(q, &opts.ignore)).collect();
            if ga != gb {
                d(
                    p,
                    format!("hard links {} != {}", show_set(&ga), show_set(&gb)),
                );
            }
        }
    }
    out
}

fn show_set(s: &BTreeSet<&PathBuf>) -> String {
    let v: Vec<String> = s.iter().map(|p| format!("/{}", p.display())).collect();
    format!("[{}]", v.join(", "))
}

/// Scans both roots and compares them.
pub fn compare_dirs(a: &Path, b: &Path, opts: &Options) -> Result<Vec<Diff>, String> {
    Ok(compare(&Tree::scan(a)?, &Tree::scan(b)?, opts))
}

/// The differences one per line (for assertion messages), at most `max` of them.
pub fn show_diffs(diffs: &[Diff], max: usize) -> String {
    let mut s: Vec<String> = diffs.iter().take(max).map(|d| d.to_string()).collect();
    if diffs.len() > max {
        s.push(format!("... and {} more", diffs.len() - max));
    }
    s.join("\n")
}

/// Where silo keeps instance `name`'s root filesystem: `<state dir>/storage-pools/<pool>/
/// containers/<name>/rootfs` (the same layout for dir and btrfs pools). Its owners are the
/// ids inside the instance: silo shifts them with an idmapped mount, not on disk.
pub fn silo_rootfs(state_dir: &Path, pool: &str, name: &str) -> PathBuf {
    state_dir
        .join("storage-pools")
        .join(pool)
        .join("containers")
        .join(name)
        .join("rootfs")
}

/// Where silo keeps snapshot `snap` of `name`: the volume `<name>.<snap>` under
/// `containers-snapshots` (silo-proto's `VolumeKind::Snapshot`).
pub fn silo_snapshot_rootfs(state_dir: &Path, pool: &str, name: &str, snap: &str) -> PathBuf {
    state_dir
        .join("storage-pools")
        .join(pool)
        .join("containers-snapshots")
        .join(format!("{name}.{snap}"))
        .join("rootfs")
}

/// Where an LXD with `LXD_DIR=lxd_dir` keeps `name`'s root filesystem on a dir pool.
pub fn lxd_rootfs(lxd_dir: &Path, pool: &str, name: &str) -> PathBuf {
    lxd_dir
        .join("storage-pools")
        .join(pool)
        .join("containers")
        .join(name)
        .join("rootfs")
}

/// Where that LXD keeps snapshot `snap` of `name`.
pub fn lxd_snapshot_rootfs(lxd_dir: &Path, pool: &str, name: &str, snap: &str) -> PathBuf {
    lxd_dir
        .join("storage-pools")
        .join(pool)
        .join("containers-snapshots")
        .join(name)
        .join(snap)
        .join("rootfs")
}

/// Makes a named pipe (for trees built by tests).
pub fn mkfifo(p: &Path, mode: u32) -> std::io::Result<()> {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(mode))
        .map_err(std::io::Error::from)
}

/// Makes a character device node (for trees built by tests; needs CAP_MKNOD).
pub fn mknod_char(p: &Path, mode: u32, major: u64, minor: u64) -> std::io::Result<()> {
    nix::sys::stat::mknod(
        p,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(mode),
        nix::sys::stat::makedev(major, minor),
    )
    .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{chown, symlink, PermissionsExt};

    fn build(root: &Path) {
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/a"), b"alpha\n").unwrap();
        std::fs::hard_link(root.join("etc/a"), root.join("etc/sub/a-link")).unwrap();
        std::fs::write(root.join("suid"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("suid"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        symlink("../etc/a", root.join("etc/sub/sym")).unwrap();
        mkfifo(&root.join("fifo"), 0o600).unwrap();
        set_xattr(&root.join("etc/a"), "user.note", b"kept").unwrap();
        chown(root.join("etc/a"), Some(1000), Some(1000)).unwrap();
    }

    fn scratch(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("silo-trees-{tag}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn equal_trees_have_no_differences() {
        let (a, b) = (scratch("eq-a"), scratch("eq-b"));
        build(a.path());
        build(b.path());
        let d = compare_dirs(a.path(), b.path(), &Options::default()).unwrap();
        assert!(d.is_empty(), "{}", show_diffs(&d, 50));
        let t = Tree::scan(a.path()).unwrap();
        assert_eq!(t.of_kind(Kind::Fifo).len(), 1);
        assert_eq!(
            t.entries[Path::new("etc/sub/sym")].target.as_deref(),
            Some(Path::new("../etc/a"))
        );
        assert_eq!(t.entries[Path::new("suid")].mode, 0o4755);
        assert_eq!(t.entries[Path::new("etc/a")].xattrs["user.note"], b"kept");
    }

    #[test]
    fn every_kind_of_change_is_reported() {
        let (a, b) = (scratch("ch-a"), scratch("ch-b"));
        build(a.path());
        build(b.path());
        let b = b.path();
        std::fs::write(b.join("etc/a"), b"alphA\n").unwrap();
        std::fs::set_permissions(b.join("suid"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_file(b.join("etc/sub/sym")).unwrap();
        symlink("/etc/a", b.join("etc/sub/sym")).unwrap();
        std::fs::remove_file(b.join("etc/sub/a-link")).unwrap();
        std::fs::write(b.join("etc/sub/a-link"), b"alphA\n").unwrap();
        set_xattr(&b.join("etc/sub/a-link"), "user.note", b"kept").unwrap();
        chown(b.join("etc/sub/a-link"), Some(1000), Some(1000)).unwrap();
        set_xattr(&b.join("etc/a"), "user.note", b"changed").unwrap();
        chown(b.join("suid"), Some(7), None).unwrap();
        std::fs::write(b.join("extra"), b"").unwrap();
        std::fs::remove_file(b.join("fifo")).unwrap();
        std::fs::create_dir(b.join("fifo")).unwrap();
        let d = compare_dirs(a.path(), b, &Options::default()).unwrap();
        let text = show_diffs(&d, 100);
        for want in [
            "/etc/a: contents differ",
            "/etc/a: xattr user.note: \"kept\" != \"changed\"",
            "/etc/a: hard links [/etc/sub/a-link] != []",
            "/etc/sub/a-link: contents differ",
            "/etc/sub/sym: symlink target \"../etc/a\" != \"/etc/a\"",
            "/suid: mode 4755 != 755",
            "/suid: uid 0 (+0) != 7",
            "/extra: only in b (File)",
            "/fifo: type Fifo != Dir",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        // Without hard-link comparison the split link is no difference of its own.
        let o = Options {
            hardlinks: false,
            ..Options::default()
        };
        let text = show_diffs(&compare_dirs(a.path(), b, &o).unwrap(), 100);
        assert!(!text.contains("hard links"), "{text}");
        // Ignored paths drop out.
        let o = Options {
            ignore: vec![PathBuf::from("etc"), PathBuf::from("suid")],
            ..Options::default()
        };
        let text = show_diffs(&compare_dirs(a.path(), b, &o).unwrap(), 100);
        assert!(!text.contains("/etc") && !text.contains("/suid"), "{text}");
        assert!(text.contains("/extra"), "{text}");
    }

    #[test]
    fn id_offset_shifts_owners_and_capability_root_ids() {
        let (a, b) = (scratch("id-a"), scratch("id-b"));
        build(a.path());
        build(b.path());
        let off = 1_000_000u32;
        for t in Tree::scan(b.path()).unwrap().entries.iter() {
            let p = b.path().join(t.0);
            std::os::unix::fs::lchown(&p, Some(t.1.uid + off), Some(t.1.gid + off)).unwrap();
            // chown clears set-uid; put the mode back as an id-shifting copy would.
            if t.1.kind != Kind::Symlink {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(t.1.mode)).unwrap();
            }
        }
        // cap_net_raw+ep: v2 on a (root id 0), v3 with root id `off` on b.
        let mut v2 = Vec::new();
        for w in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
            v2.extend(w.to_le_bytes());
        }
        let mut v3 = Vec::new();
        for w in [0x0300_0001u32, 1 << 13, 0, 0, 0, off] {
            v3.extend(w.to_le_bytes());
        }
        set_xattr(&a.path().join("etc/a"), "security.capability", &v2).unwrap();
        set_xattr(&b.path().join("etc/a"), "security.capability", &v3).unwrap();
        let same = compare_dirs(a.path(), b.path(), &Options::default()).unwrap();
        assert!(
            same.iter()
                .any(|d| d.what.starts_with("uid 0 (+0) != 1000000")),
            "{}",
            show_diffs(&same, 10)
        );
        let o = Options {
            b_id_offset: i64::from(off),
            ..Options::default()
        };
        let d = compare_dirs(a.path(), b.path(), &o).unwrap();
        // The kernel may store the v3 cap as v2 on the host (root id 0 in the initial
        // namespace); either way the shifted comparison must hold.
        assert!(d.is_empty(), "{}", show_diffs(&d, 50));
        // A different capability is a difference even with the offset.
        let mut other = v2.clone();
        other[4] = 0x01;
        other[5] = 0x00;
        set_xattr(&b.path().join("etc/a"), "security.capability", &other).unwrap();
        let d = compare_dirs(a.path(), b.path(), &o).unwrap();
        assert!(
            d.iter()
                .any(|d| d.what.starts_with("xattr security.capability")),
            "{}",
            show_diffs(&d, 50)
        );
    }

    #[test]
    fn device_nodes_compare_by_number() {
        let (a, b) = (scratch("dev-a"), scratch("dev-b"));
        mknod_char(&a.path().join("null"), 0o666, 1, 3).unwrap();
        mknod_char(&b.path().join("null"), 0o666, 1, 5).unwrap();
        let d = compare_dirs(a.path(), b.path(), &Options::default()).unwrap();
        assert_eq!(d.len(), 1, "{}", show_diffs(&d, 10));
        assert!(d[0].what.starts_with("device "), "{}", d[0]);
        assert_eq!(
            Tree::scan(a.path()).unwrap().of_kind(Kind::CharDev).len(),
            1
        );
    }
}
