//! Unpacking a tar stream beneath a directory fd, as if every member were hostile.
//!
//! Every path is resolved one component at a time with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` from the target fd, so a member can neither climb out (`..`, absolute
//! names, long-name and PAX tricks arrive here already decoded) nor write through a symlink an
//! earlier member planted. Hardlinks must point at a member already unpacked beneath the same
//! target. Device nodes are skipped (silo provides /dev itself); sparse members are refused;
//! byte and entry counts are bounded. Callers run this in a child that has landlocked itself
//! to the target directory, so even a bug here cannot reach beyond it.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use serde::{Deserialize, Serialize};

use super::{member_components, stream_error, ImageError};

/// Which tarball this is, deciding where members land.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// metadata.yaml, rootfs/, templates/ at the top.
    Unified,
    /// The metadata half of a split image: metadata.yaml and templates/.
    Metadata,
    /// The rootfs half of a split image: members land under rootfs/.
    Rootfs,
    /// A plain tree (a custom volume in a backup): members land as they are named, with
    /// every check an image's get, but no image structure is asked for.
    Tree,
}

/// Bounds on one unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Uncompressed bytes of member data.
    pub max_bytes: u64,
    /// Members.
    pub max_entries: u64,
}

/// What an unpack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Report {
    /// Members unpacked.
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Device nodes skipped.
    pub skipped_devices: u64,
}

use crate::jail::beneath::beneath_how as how;

fn io(member: &str, op: &str, e: Errno) -> ImageError {
    ImageError::Io {
        member: member.chars().take(200).collect(),
        op: op.to_string(),
        message: e.desc().to_string(),
    }
}

fn is_type(st: &nix::sys::stat::FileStat, t: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == t
}

/// Opens (optionally creating) each directory of `comps` beneath `root`.
fn walk(
    root: BorrowedFd<'_>,
    comps: &[String],
    create: bool,
    member: &str,
) -> Result<OwnedFd, ImageError> {
    let mut cur = root.try_clone_to_owned().map_err(|e| ImageError::Io {
        member: member.into(),
        op: "dup".into(),
        message: e.to_string(),
    })?;
    for c in comps {
        let mut made = false;
        if create {
            match mkdirat(cur.as_fd(), c.as_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) => made = true,
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(io(member, "mkdirat", e)),
            }
        }
        cur = match openat2(
            cur.as_fd(),
            c.as_str(),
            how(OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0),
        ) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) | Err(Errno::EXDEV) => {
                return Err(ImageError::Symlink(member.into()))
            }
            Err(Errno::ENOTDIR) => {
                let st = fstatat(cur.as_fd(), c.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| io(member, "fstatat", e))?;
                if is_type(&st, SFlag::S_IFLNK) {
                    return Err(ImageError::Symlink(member.into()));
                }
                return Err(ImageError::Unsupported {
                    member: member.into(),
                    why: format!("{c:?} on its path is not a directory"),
                });
            }
            Err(e) => return Err(io(member, "openat2", e)),
        };
        if made {
            // A parent no member of its own describes gets what GNU tar gives it: 0755, owned
            // by the unpacker (root, which is the container's root once idmapped), whatever
            // the umask. A directory member met later sets its own attributes at the end.
            fchmod(cur.as_fd(), Mode::from_bits_truncate(0o755))
                .map_err(|e| io(member, "fchmod", e))?;
        }
    }
    Ok(cur)
}

/// Removes a non-directory at `name` so a later member can replace it (tar's semantics).
fn clear(parent: BorrowedFd<'_>, name: &str, member: &str) -> Result<(), ImageError> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if is_type(&st, SFlag::S_IFDIR) => Err(ImageError::Unsupported {
            member: member.into(),
            why: "would replace a directory".into(),
        }),
        Ok(_) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| io(member, "unlinkat", e)),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(io(member, "fstatat", e)),
    }
}

fn place(
    layout: Layout,
    member: &str,
    comps: Vec<String>,
) -> Result<Option<Vec<String>>, ImageError> {
    if comps.is_empty() {
        return Ok(None);
    }
    match layout {
        Layout::Tree => Ok(Some(comps)),
        Layout::Rootfs => {
            let mut v = vec!["rootfs".to_string()];
            v.extend(comps);
            Ok(Some(v))
        }
        Layout::Unified | Layout::Metadata => {
            let top = comps[0].as_str();
            let allowed = match layout {
                Layout::Unified => matches!(top, "metadata.yaml" | "rootfs" | "templates"),
                _ => matches!(top, "metadata.yaml" | "templates"),
            };
            if !allowed {
                return Err(ImageError::Unsupported {
                    member: member.into(),
                    why: "unexpected top-level member (an image holds metadata.yaml, rootfs/ and templates/)".into(),
                });
            }
            if top == "metadata.yaml" && comps.len() > 1 {
                return Err(ImageError::Metadata(
                    "metadata.yaml is not a regular file".into(),
                ));
            }
            Ok(Some(comps))
        }
    }
}

/// A member's owner, mode, time and extended attributes, as its headers give them.
struct Attrs {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: super::xattr::Xattrs,
}

/// A directory made, whose attributes are set once everything beneath it is in.
struct DirMeta {
    comps: Vec<String>,
    attrs: Attrs,
}

/// The extended attributes a member's PAX header carries (`SCHILY.xattr.<name>`), bounded.
fn pax_xattrs<R: Read>(
    e: &mut tar::Entry<'_, R>,
    member: &str,
) -> Result<super::xattr::Xattrs, ImageError> {
    let Some(exts) = e
        .pax_extensions()
        .map_err(|err| stream_error(member, &err))?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut total = 0usize;
    for x in exts {
        let x = x.map_err(|err| stream_error(member, &err))?;
        let Some(name) = x
            .key()
            .ok()
            .and_then(|k| k.strip_prefix(super::xattr::PAX_PREFIX))
        else {
            continue;
        };
        total += name.len() + x.value_bytes().len();
        if total > 1 << 20 {
            return Err(ImageError::Unsupported {
                member: member.chars().take(200).collect(),
                why: "more than 1 MiB of extended attributes".into(),
            });
        }
        out.push((name.as_bytes().to_vec(), x.value_bytes().to_vec()));
    }
    Ok(out)
}

/// Sets extended attributes on what `fd` is, after its owner (a chown clears capabilities).
fn set_xattrs(
    fd: BorrowedFd<'_>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    member: &str,
) -> Result<(), ImageError> {
    for (n, v) in xattrs {
        super::xattr::set(fd, n, v).map_err(|err| {
            io(
                member,
                &format!("setting extended attribute {}", String::from_utf8_lossy(n)),
                Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
    }
    Ok(())
}

fn owner(h: &tar::Header) -> (u32, u32) {
    let uid = h.uid().unwrap_or(0).min(u64::from(u32::MAX - 1)) as u32;
    let gid = h.gid().unwrap_or(0).min(u64::from(u32::MAX - 1)) as u32;
    (uid, gid)
}

/// Unpacks `stream` (a decompressed tar stream) beneath `root`.
pub fn extract(
    stream: Box<dyn Read>,
    root: BorrowedFd<'_>,
    layout: Layout,
    limits: &Limits,
) -> Result<Report, ImageError> {
    extract_with(stream, root, layout, None, limits)
}

/// How a hard link across directories is made where `linkat` may not (a landlocked child
/// without REFER asks its parent); set once per process.
pub type CrossDirLinker = fn(BorrowedFd<'_>, &str, BorrowedFd<'_>, &str) -> Result<(), Errno>;

static CROSS_DIR_LINKER: std::sync::OnceLock<CrossDirLinker> = std::sync::OnceLock::new();

/// Sets the process's [`CrossDirLinker`] (the first setting stays).
pub fn set_cross_dir_linker(l: CrossDirLinker) {
    let _ = CROSS_DIR_LINKER.set(l);
}

/// Unpacks the part of a backup tarball below `prefix` (e.g. `backup/container`, or
/// `backup/snapshots/snap0`) beneath `root`, laid out as an image (rootfs/, templates/,
/// metadata.yaml; the part's backup.yaml stays out). Every other member is skipped, and
/// every member goes through the same checks as an image's.
pub fn extract_part(
    stream: Box<dyn Read>,
    root: BorrowedFd<'_>,
    prefix: &[String],
    limits: &Limits,
) -> Result<Report, ImageError> {
    extract_with(stream, root, Layout::Unified, Some(prefix), limits)
}

/// Unpacks the part of a backup tarball below `prefix` (e.g. `backup/volume`, or
/// `backup/volume-snapshots/snap0`) beneath `root` as a plain tree: a custom volume's files,
/// with every check an image's members get. Every other member is skipped.
pub fn extract_tree_part(
    stream: Box<dyn Read>,
    root: BorrowedFd<'_>,
    prefix: &[String],
    limits: &Limits,
) -> Result<Report, ImageError> {
    extract_with(stream, root, Layout::Tree, Some(prefix), limits)
}

fn extract_with(
    stream: Box<dyn Read>,
    root: BorrowedFd<'_>,
    layout: Layout,
    prefix: Option<&[String]>,
    limits: &Limits,
) -> Result<Report, ImageError> {
    let mut ar = tar::Archive::new(stream);
    let mut unpack = Unpack {
        root,
        layout,
        prefix,
        limits,
        report: Report::default(),
        dirs: Vec::new(),
        saw_metadata: false,
        saw_rootfs: layout != Layout::Unified,
    };
    let entries = ar.entries().map_err(|e| stream_error("archive", &e))?;
    for e in entries {
        let mut e = e.map_err(|e| stream_error("archive", &e))?;
        unpack.member(&mut e)?;
    }
    unpack.finish()
}

/// One unpack under way: where members land, what was seen, what is left for the end.
struct Unpack<'a> {
    root: BorrowedFd<'a>,
    layout: Layout,
    /// The part of a backup being unpacked; `None` for an image.
    prefix: Option<&'a [String]>,
    limits: &'a Limits,
    report: Report,
    /// Directories made, whose owners, modes and times are set at the end.
    dirs: Vec<DirMeta>,
    saw_metadata: bool,
    saw_rootfs: bool,
}

impl Unpack<'_> {
    /// Unpacks one member: counted, placed, then made according to its kind.
    fn member<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        self.report.entries += 1;
        if self.report.entries > self.limits.max_entries {
            return Err(ImageError::Limit {
                what: "entries".into(),
                limit: self.limits.max_entries,
            });
        }
        let member = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let Some(comps) = self.destination(&member)? else {
            return Ok(());
        };
        let xattrs = pax_xattrs(e, &member)?;
        let h = e.header().clone();
        let (uid, gid) = owner(&h);
        let attrs = Attrs {
            uid,
            gid,
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            mtime: h.mtime().unwrap_or(0).min(i64::MAX as u64) as i64,
            xattrs,
        };
        let mut et = h.entry_type();
        // Old (v7) archives had no directory type: a file member whose name ends in `/` is a
        // directory, as GNU tar reads it.
        if et == tar::EntryType::Regular && e.path_bytes().ends_with(b"/") && e.size() == 0 {
            et = tar::EntryType::Directory;
        }
        self.note_top(&comps, et)?;
        let (parent_comps, base) = comps.split_at(comps.len() - 1);
        let base = base[0].as_str();
        match et {
            tar::EntryType::Directory => {
                let d = walk(self.root, &comps, true, &member)?;
                drop(d);
                self.dirs.push(DirMeta { comps, attrs });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.regular(e, &member, &comps, &attrs)?;
            }
            tar::EntryType::Symlink => {
                self.symlink(e, &member, parent_comps, base, &attrs)?;
            }
            tar::EntryType::Link => {
                self.hardlink(e, &member, parent_comps, base)?;
            }
            tar::EntryType::Fifo => {
                self.fifo(&member, parent_comps, base, &attrs)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                // silo builds /dev for each container; image device nodes are never created.
                self.report.skipped_devices += 1;
            }
            tar::EntryType::GNUSparse => return Err(ImageError::Sparse(member)),
            other => {
                return Err(ImageError::Unsupported {
                    member,
                    why: format!("unsupported member type {other:?}"),
                })
            }
        }
        Ok(())
    }

    /// Where `member` lands beneath the root, or `None` when it is skipped (outside the
    /// backup part being unpacked, the part's backup.yaml, the top directory itself).
    fn destination(&self, member: &str) -> Result<Option<Vec<String>>, ImageError> {
        let mut comps = member_components(member)?;
        if let Some(p) = self.prefix {
            if comps.len() <= p.len() || comps[..p.len()] != *p {
                return Ok(None);
            }
            comps.drain(..p.len());
            if self.layout != Layout::Tree && comps[0] == "backup.yaml" {
                return Ok(None);
            }
        }
        place(self.layout, member, comps)
    }

    /// Notes the rootfs and metadata.yaml an image must hold; metadata.yaml must be a file.
    fn note_top(&mut self, comps: &[String], et: tar::EntryType) -> Result<(), ImageError> {
        if comps[0] == "rootfs" {
            self.saw_rootfs = true;
        }
        if comps.len() == 1 && comps[0] == "metadata.yaml" {
            if !et.is_file() {
                return Err(ImageError::Metadata(
                    "metadata.yaml is not a regular file".into(),
                ));
            }
            self.saw_metadata = true;
        }
        Ok(())
    }

    /// A regular file: its data (bounded), then owner, mode, times and extended attributes.
    fn regular<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        member: &str,
        comps: &[String],
        attrs: &Attrs,
    ) -> Result<(), ImageError> {
        let (parent_comps, base) = comps.split_at(comps.len() - 1);
        let base = base[0].as_str();
        let size = e.size();
        if self.report.bytes.saturating_add(size) > self.limits.max_bytes {
            return Err(ImageError::Limit {
                what: "bytes of file data".into(),
                limit: self.limits.max_bytes,
            });
        }
        let parent = walk(self.root, parent_comps, true, member)?;
        clear(parent.as_fd(), base, member)?;
        let fd = openat2(
            parent.as_fd(),
            base,
            how(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, 0o600),
        )
        .map_err(|err| match err {
            Errno::ELOOP | Errno::EXDEV => ImageError::Symlink(member.to_string()),
            err => io(member, "openat2", err),
        })?;
        let mut f = std::fs::File::from(fd);
        let copied = if comps.len() == 1 && comps[0] == "metadata.yaml" {
            write_metadata(e, &mut f, member, size)?
        } else {
            copy_member(&mut e.take(size), &mut f, member)?
        };
        if copied != size {
            return Err(ImageError::Truncated(format!(
                "{member}: {copied} of {size} bytes"
            )));
        }
        self.report.bytes += size;
        let fd: OwnedFd = f.into();
        set_attrs(fd.as_fd(), attrs, member)
    }

    /// A symlink, stored as its target says and never followed; owned as the member says.
    fn symlink<R: Read>(
        &self,
        e: &tar::Entry<'_, R>,
        member: &str,
        parent_comps: &[String],
        base: &str,
        attrs: &Attrs,
    ) -> Result<(), ImageError> {
        let target =
            e.link_name_bytes()
                .map(|b| b.into_owned())
                .ok_or_else(|| ImageError::Unsupported {
                    member: member.to_string(),
                    why: "symlink without a target".into(),
                })?;
        if target.is_empty() || target.len() > 4095 || target.contains(&0) {
            return Err(ImageError::Unsupported {
                member: member.to_string(),
                why: "invalid symlink target".into(),
            });
        }
        let parent = walk(self.root, parent_comps, true, member)?;
        clear(parent.as_fd(), base, member)?;
        let t = std::ffi::OsStr::from_encoded_bytes_checked(&target);
        symlinkat(t, parent.as_fd(), base).map_err(|err| io(member, "symlinkat", err))?;
        fchownat(
            parent.as_fd(),
            base,
            Some(Uid::from_raw(attrs.uid)),
            Some(Gid::from_raw(attrs.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|err| io(member, "lchown", err))
    }

    /// A hard link to a member unpacked earlier beneath the same root.
    fn hardlink<R: Read>(
        &self,
        e: &tar::Entry<'_, R>,
        member: &str,
        parent_comps: &[String],
        base: &str,
    ) -> Result<(), ImageError> {
        let target = e
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let (tp, tbase) = self.link_target(member, &target)?;
        let parent = walk(self.root, parent_comps, true, member)?;
        clear(parent.as_fd(), base, member)?;
        match linkat(
            tp.as_fd(),
            tbase.as_str(),
            parent.as_fd(),
            base,
            AtFlags::empty(),
        ) {
            // A landlocked unpacker may not link across directories itself.
            Err(Errno::EXDEV) => match CROSS_DIR_LINKER.get() {
                Some(l) => l(tp.as_fd(), tbase.as_str(), parent.as_fd(), base),
                None => Err(Errno::EXDEV),
            },
            r => r,
        }
        .map_err(|err| io(member, "linkat", err))
    }

    /// The directory and name of a hard link's target, which must be a non-directory already
    /// unpacked beneath the root, reached through no symlink.
    fn link_target(&self, member: &str, target: &str) -> Result<(OwnedFd, String), ImageError> {
        let hl = |why: &str| ImageError::Hardlink {
            member: member.to_string(),
            target: target.chars().take(200).collect(),
            why: why.to_string(),
        };
        let tcomps = member_components(target).map_err(|err| match err {
            ImageError::Absolute(_) => hl("absolute target"),
            ImageError::Outside { .. } => hl("'..' in the target climbs out of the image"),
            _ => hl("invalid target"),
        })?;
        // In a backup part, a link names its target from the tarball's top too.
        let tcomps = match self.prefix {
            Some(p) if tcomps.len() > p.len() && tcomps[..p.len()] == *p => {
                tcomps[p.len()..].to_vec()
            }
            Some(_) => return Err(hl("target outside this part of the backup")),
            None => tcomps,
        };
        let tcomps = place(self.layout, target, tcomps)
            .map_err(|_| hl("target outside the image"))?
            .ok_or_else(|| hl("empty target"))?;
        let (tparent, tbase) = tcomps.split_at(tcomps.len() - 1);
        let tp = walk(self.root, tparent, false, target).map_err(|err| match err {
            ImageError::Symlink(_) => hl("the target goes through a symlink"),
            _ => hl("the target does not exist earlier in the image"),
        })?;
        match fstatat(tp.as_fd(), tbase[0].as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_type(&st, SFlag::S_IFDIR) => return Err(hl("the target is a directory")),
            Ok(_) => {}
            Err(_) => return Err(hl("the target does not exist earlier in the image")),
        }
        Ok((tp, tbase[0].clone()))
    }

    /// A fifo, with the member's permission bits (no set-id bits) and owner.
    fn fifo(
        &self,
        member: &str,
        parent_comps: &[String],
        base: &str,
        attrs: &Attrs,
    ) -> Result<(), ImageError> {
        let parent = walk(self.root, parent_comps, true, member)?;
        clear(parent.as_fd(), base, member)?;
        mknodat(
            parent.as_fd(),
            base,
            SFlag::S_IFIFO,
            Mode::from_bits_truncate(attrs.mode & 0o777),
            0,
        )
        .map_err(|err| io(member, "mknodat", err))?;
        fchownat(
            parent.as_fd(),
            base,
            Some(Uid::from_raw(attrs.uid)),
            Some(Gid::from_raw(attrs.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|err| io(member, "lchown", err))
    }

    /// Checks the image was whole, then gives the directories their owners, modes and times.
    fn finish(self) -> Result<Report, ImageError> {
        if !matches!(self.layout, Layout::Rootfs | Layout::Tree)
            && self.prefix.is_none()
            && !self.saw_metadata
        {
            return Err(ImageError::Metadata("no metadata.yaml in the image".into()));
        }
        if !self.saw_rootfs {
            return Err(ImageError::Metadata("no rootfs/ in the image".into()));
        }
        set_dir_attrs(self.root, self.dirs)?;
        Ok(self.report)
    }
}

/// Writes metadata.yaml, parsed first: the helper checks the metadata itself rather than
/// trusting silod did. Returns the bytes written.
fn write_metadata<R: Read>(
    e: &mut tar::Entry<'_, R>,
    f: &mut std::fs::File,
    member: &str,
    size: u64,
) -> Result<u64, ImageError> {
    if size > super::MAX_METADATA {
        return Err(ImageError::Metadata(
            "metadata.yaml is larger than 1 MiB".into(),
        ));
    }
    let mut buf = Vec::new();
    e.take(size)
        .read_to_end(&mut buf)
        .map_err(|err| stream_error(member, &err))?;
    super::ImageMetadata::parse(&buf)?;
    std::io::Write::write_all(f, &buf).map_err(|err| write_error(member, &err))?;
    Ok(buf.len() as u64)
}

/// Gives what `fd` is the member's owner, mode, modification time and extended attributes.
fn set_attrs(fd: BorrowedFd<'_>, attrs: &Attrs, member: &str) -> Result<(), ImageError> {
    nix::unistd::fchown(
        fd,
        Some(Uid::from_raw(attrs.uid)),
        Some(Gid::from_raw(attrs.gid)),
    )
    .map_err(|err| io(member, "fchown", err))?;
    // After chown, which clears set-id bits.
    fchmod(fd, Mode::from_bits_truncate(attrs.mode)).map_err(|err| io(member, "fchmod", err))?;
    let t = TimeSpec::new(attrs.mtime, 0);
    nix::sys::stat::futimens(fd, &t, &t).map_err(|err| io(member, "futimens", err))?;
    set_xattrs(fd, &attrs.xattrs, member)
}

/// Directory modes and owners last (a read-only directory must still take its members),
/// deepest first.
fn set_dir_attrs(root: BorrowedFd<'_>, mut dirs: Vec<DirMeta>) -> Result<(), ImageError> {
    dirs.sort_by_key(|d| std::cmp::Reverse(d.comps.len()));
    for d in dirs {
        let shown = d.comps.join("/");
        let fd = walk(root, &d.comps, false, &shown)?;
        set_attrs(fd.as_fd(), &d.attrs, &shown)?;
    }
    Ok(())
}

/// A write to the target failed (a full pool, a quota): not the image's fault.
fn write_error(member: &str, e: &std::io::Error) -> ImageError {
    ImageError::Io {
        member: member.chars().take(200).collect(),
        op: "write".into(),
        message: e.to_string(),
    }
}

/// Copies a member's data, telling read errors (the image) from write errors (the target).
fn copy_member(
    from: &mut impl Read,
    to: &mut std::fs::File,
    member: &str,
) -> Result<u64, ImageError> {
    let mut buf = vec![0u8; 128 << 10];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream_error(member, &e)),
        };
        std::io::Write::write_all(to, &buf[..n]).map_err(|e| write_error(member, &e))?;
        total += n as u64;
    }
}

trait FromBytesChecked {
    fn from_encoded_bytes_checked(b: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytesChecked for std::ffi::OsStr {
    fn from_encoded_bytes_checked(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}
