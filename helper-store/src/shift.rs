//! Shifting a received volume's owners from the migration source's on-disk ids to the
//! instance's own (LXD's source sends its idmap with the volume; silo stores instance ids
//! unshifted and maps them with an idmapped mount).
//!
//! Done in a `child::run` child landlocked to the volume: the tree is walked by fd, never
//! following a symlink, never crossing into another mount, bounded by the policy's
//! `max_image_entries`. chown clears set-user-id/set-group-id bits and file capabilities,
//! so those are put back after it (as LXD's own shifting does); a v3 file capability whose
//! root id the map shifts is rewritten for the new root id (v2 when it becomes 0).
//!
//! Every id is checked in a first pass that changes nothing, so a refused map leaves the
//! volume as it was.
//!
//! An instance volume (one holding `rootfs/`) has only its rootfs shifted: metadata.yaml and
//! templates/ are the host's, as the source kept them. Other volumes shift everything below
//! the volume directory (which is silo-store's own).

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use serde::{Deserialize, Serialize};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::Root;
use silo_proto::store::IdShift;

/// Ids an instance has.
const INSTANCE_IDS: u64 = 65536;

const CAPS_XATTR: &str = "security.capability";
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_REVISION_MASK: u32 = 0xff00_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;

/// Why a shift failed.
#[derive(Debug, Serialize, Deserialize)]
enum Failure {
    /// The tree holds an id the map cannot take.
    Id(String),
    /// Too many entries.
    Limit(String),
    /// A system call failed.
    Io(String),
}

/// Maps one on-disk id through `map`; `None` when it does not cover the id or maps it out of
/// the instance's range. An empty map keeps ids, which must already be the instance's.
pub fn map_id(map: &[IdShift], id: u32, uid: bool) -> Option<u32> {
    let id = u64::from(id);
    if map.is_empty() {
        return (id < INSTANCE_IDS).then_some(id as u32);
    }
    for e in map {
        if !(if uid { e.isuid } else { e.isgid }) {
            continue;
        }
        let (h, r) = (u64::from(e.hostid), u64::from(e.range));
        if id >= h && id < h + r {
            let n = u64::from(e.nsid) + (id - h);
            return (n < INSTANCE_IDS).then_some(n as u32);
        }
    }
    None
}

/// Shifts the volume's ids; answers the inodes changed.
pub async fn shift(vol: &Root, map: &[IdShift], max_entries: u64, what: &str) -> HelperResult<u64> {
    if map.len() > 64 {
        return Err(HelperError::invalid("id map", "more than 64 entries"));
    }
    if let Some(e) = map.iter().find(|e| e.range == 0 || !(e.isuid || e.isgid)) {
        return Err(HelperError::invalid(
            "id map",
            format!("entry {e:?} maps nothing"),
        ));
    }
    let raw = vol.fd().as_raw_fd();
    let map = map.to_vec();
    let out = crate::child::run("id shift", &[vol.fd()], &[], move || {
        // SAFETY: the volume's fd is open in the child (inherited through fork) for its life.
        let top = unsafe { BorrowedFd::borrow_raw(raw) };
        walk(top, &map, max_entries)
    })
    .await?;
    out.map_err(|f| match f {
        Failure::Id(m) => HelperError::invalid("id map", format!("{what}: {m}")),
        Failure::Limit(m) => HelperError::invalid("volume", format!("{what}: {m}")),
        Failure::Io(m) => HelperError::Io {
            op: "shifting ids".into(),
            target: what.to_string(),
            message: m,
            errno: None,
        },
    })
}

fn io(op: &str, path: &str, e: nix::errno::Errno) -> Failure {
    Failure::Io(format!("{op} {path:?}: {e}"))
}

fn open_at(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    flags: OFlag,
    path: &str,
) -> Result<OwnedFd, Failure> {
    nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| io("open", path, e))
}

struct Walk<'a> {
    /// Checks every id first, so that a refusal changes nothing.
    dry: bool,
    map: &'a [IdShift],
    dev: u64,
    seen: HashSet<(u64, u64)>,
    entries: u64,
    max: u64,
    changed: u64,
}

fn walk(top: BorrowedFd<'_>, map: &[IdShift], max: u64) -> Result<u64, Failure> {
    let st = nix::sys::stat::fstat(top).map_err(|e| io("fstat", ".", e))?;
    let mut changed = 0;
    for dry in [true, false] {
        let mut w = Walk {
            dry,
            map,
            dev: st.st_dev,
            seen: HashSet::new(),
            entries: 0,
            max,
            changed: 0,
        };
        match fstatat(top, "rootfs", AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(s) if s.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                w.entry(top, std::ffi::OsStr::new("rootfs"), "rootfs", &s)?
            }
            _ => w.dir(top, "")?,
        }
        changed = w.changed;
    }
    Ok(changed)
}

impl Walk<'_> {
    /// Every entry of directory `dir` (shown as `path`).
    fn dir(&mut self, dir: BorrowedFd<'_>, path: &str) -> Result<(), Failure> {
        let d = nix::dir::Dir::from_fd(
            dir.try_clone_to_owned()
                .map_err(|e| Failure::Io(format!("dup {path:?}: {e}")))?,
        )
        .map_err(|e| io("opendir", path, e))?;
        let mut names = Vec::new();
        let mut d = d;
        for ent in d.iter() {
            let ent = ent.map_err(|e| io("readdir", path, e))?;
            let n = ent.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            names.push(n.to_vec());
            if names.len() as u64 > self.max {
                break;
            }
        }
        for raw in names {
            // Names as bytes (a tree may hold names that are not UTF-8); shown lossily.
            let name = std::ffi::OsStr::from_bytes(&raw);
            let shown = String::from_utf8_lossy(&raw);
            let child = if path.is_empty() {
                shown.into_owned()
            } else {
                format!("{path}/{shown}")
            };
            let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(s) => s,
                Err(e) => return Err(io("stat", &child, e)),
            };
            self.entry(dir, name, &child, &st)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::OsStr,
        path: &str,
        st: &FileStat,
    ) -> Result<(), Failure> {
        self.entries += 1;
        if self.entries > self.max {
            return Err(Failure::Limit(format!(
                "more than max_image_entries ({}) entries",
                self.max
            )));
        }
        if st.st_dev != self.dev {
            // Another filesystem mounted inside: not this volume's.
            return Ok(());
        }
        let fmt = st.st_mode & libc::S_IFMT;
        let is_dir = fmt == libc::S_IFDIR;
        let first = is_dir || st.st_nlink <= 1 || self.seen.insert((st.st_dev, st.st_ino));
        if first {
            let uid = map_id(self.map, st.st_uid, true).ok_or_else(|| {
                Failure::Id(format!(
                    "{path:?} is owned by uid {}, which the id map does not take into 0..65536",
                    st.st_uid
                ))
            })?;
            let gid = map_id(self.map, st.st_gid, false).ok_or_else(|| {
                Failure::Id(format!(
                    "{path:?} has gid {}, which the id map does not take into 0..65536",
                    st.st_gid
                ))
            })?;
            if (uid, gid) != (st.st_uid, st.st_gid) {
                if !self.dry {
                    self.chown(dir, name, path, st, uid, gid)?;
                }
                self.changed += 1;
            }
        }
        if is_dir {
            let sub = open_at(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, path)?;
            self.dir(sub.as_fd(), path)?;
        }
        Ok(())
    }

    fn chown(
        &self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::OsStr,
        path: &str,
        st: &FileStat,
        uid: u32,
        gid: u32,
    ) -> Result<(), Failure> {
        let fmt = st.st_mode & libc::S_IFMT;
        let (u, g) = (
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        );
        if fmt != libc::S_IFREG && fmt != libc::S_IFDIR {
            // Symlinks, FIFOs, sockets, device nodes: never opened.
            return nix::unistd::fchownat(dir, name, u, g, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| io("lchown", path, e));
        }
        let flags = if fmt == libc::S_IFDIR {
            OFlag::O_RDONLY | OFlag::O_DIRECTORY
        } else {
            OFlag::O_RDONLY | OFlag::O_NONBLOCK
        };
        let fd = open_at(dir, name, flags, path)?;
        let now = nix::sys::stat::fstat(&fd).map_err(|e| io("fstat", path, e))?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            return Err(Failure::Io(format!("{path:?} changed while being shifted")));
        }
        let caps = if fmt == libc::S_IFREG {
            get_caps(fd.as_raw_fd())
        } else {
            None
        };
        nix::unistd::fchown(&fd, u, g).map_err(|e| io("chown", path, e))?;
        if st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(st.st_mode & 0o7777))
                .map_err(|e| io("chmod", path, e))?;
        }
        if let Some(c) = caps {
            let c = shift_caps(&c, self.map);
            // SAFETY: fsetxattr with a NUL-terminated name and a buffer of the length given.
            let r = unsafe {
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    c"security.capability".as_ptr(),
                    c.as_ptr().cast(),
                    c.len(),
                    0,
                )
            };
            if r != 0 {
                return Err(Failure::Io(format!(
                    "restoring {CAPS_XATTR} of {path:?}: {}",
                    std::io::Error::last_os_error()
                )));
            }
        }
        Ok(())
    }
}

fn get_caps(fd: RawFd) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    // SAFETY: fgetxattr into a local buffer of the length given.
    let n = unsafe {
        libc::fgetxattr(
            fd,
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n > 0).then(|| buf[..n as usize].to_vec())
}

/// A v3 capability's root id goes through the map like an owner (v2 when it becomes 0); a v2
/// one, or a root id the map does not cover, is kept as it was.
fn shift_caps(c: &[u8], map: &[IdShift]) -> Vec<u8> {
    if c.len() != 24 {
        return c.to_vec();
    }
    let magic = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    if magic & VFS_CAP_REVISION_MASK != VFS_CAP_REVISION_3 {
        return c.to_vec();
    }
    let root = u32::from_le_bytes([c[20], c[21], c[22], c[23]]);
    match map_id(map, root, true) {
        Some(0) => {
            let mut v = c[..20].to_vec();
            let m = VFS_CAP_REVISION_2 | (magic & VFS_CAP_FLAGS_EFFECTIVE);
            v[..4].copy_from_slice(&m.to_le_bytes());
            v
        }
        Some(n) => {
            let mut v = c.to_vec();
            v[20..].copy_from_slice(&n.to_le_bytes());
            v
        }
        None => c.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(hostid: u32, nsid: u32, range: u32) -> IdShift {
        IdShift {
            isuid: true,
            isgid: true,
            hostid,
            nsid,
            range,
        }
    }

    #[test]
    fn ids_map_into_the_instance_or_not_at_all() {
        let m = [e(1_000_000, 0, 65536)];
        assert_eq!(map_id(&m, 1_000_000, true), Some(0));
        assert_eq!(map_id(&m, 1_065_535, false), Some(65535));
        assert_eq!(map_id(&m, 1_065_536, true), None);
        assert_eq!(map_id(&m, 0, true), None);
        assert_eq!(map_id(&[e(100_000, 65000, 1000)], 100_999, true), None);
        assert_eq!(map_id(&[], 65535, true), Some(65535));
        assert_eq!(map_id(&[], 65536, true), None);
        let uid_only = IdShift {
            isgid: false,
            ..e(5, 0, 10)
        };
        assert_eq!(map_id(&[uid_only], 7, false), None);
        assert_eq!(map_id(&[uid_only], u32::MAX, true), None);
    }

    #[test]
    fn a_v3_capability_follows_its_root_id() {
        let mut v3 = vec![0u8; 24];
        v3[..4].copy_from_slice(&(VFS_CAP_REVISION_3 | 1).to_le_bytes());
        v3[4] = 0x20;
        v3[20..].copy_from_slice(&1_000_000u32.to_le_bytes());
        let v2 = shift_caps(&v3, &[e(1_000_000, 0, 65536)]);
        assert_eq!(v2.len(), 20);
        assert_eq!(&v2[..4], &(VFS_CAP_REVISION_2 | 1).to_le_bytes());
        assert_eq!(v2[4], 0x20);
        assert_eq!(shift_caps(&v2, &[]), v2);
    }
}
