//! The files API's resolution rules, shared by silo-store (a stopped instance's root volume,
//! from its rootfs fd) and silo-priv (a running instance, by a child inside its user and mount
//! namespaces, from the fd of its root there): reading and writing paths beneath a root.
//!
//! Every path is resolved with `openat2(RESOLVE_IN_ROOT)` from the root's fd, so absolute
//! symlinks and `..` inside the instance stay inside it (the escape behind CVE-2026-48749 and
//! friends), magic links (/proc/<pid>/root, /proc/self/fd/..) are refused, and the last
//! component is never followed when writing. Ids are the instance's own: a volume stores them
//! as the instance sees them, and silo-priv's child writes as container root.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{HelperError, HelperResult};
use crate::jail::beneath::Root;
use crate::store::{FileKind, FileMeta, FilePut};
use nix::fcntl::{openat2, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

/// Longest path the files API takes.
const MAX_PATH: usize = 4096;

use crate::jail::beneath::in_root_how as how;

/// Checks a path from the API and makes it relative to the rootfs ("." for "/").
pub fn relative(path: &str) -> HelperResult<String> {
    // The stock client sends some paths without their leading slash: all are from `/`.
    if path.len() > MAX_PATH || path.contains('\0') {
        return Err(HelperError::invalid(
            "path",
            "too long or contains a NUL byte",
        ));
    }
    let rel = path.trim_start_matches('/').trim_end_matches('/');
    Ok(if rel.is_empty() {
        ".".into()
    } else {
        rel.into()
    })
}

/// Splits a relative path into its parent and last component (which must name something).
pub fn split(rel: &str) -> HelperResult<(&str, &str)> {
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (if p.is_empty() { "." } else { p }, n),
        None => (".", rel),
    };
    if matches!(name, "" | "." | "..") {
        return Err(HelperError::invalid(
            "path",
            format!("{rel:?} names no file"),
        ));
    }
    Ok((parent, name))
}

fn kind_of(st: &nix::sys::stat::FileStat) -> Option<FileKind> {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => Some(FileKind::File),
        SFlag::S_IFDIR => Some(FileKind::Directory),
        SFlag::S_IFLNK => Some(FileKind::Symlink),
        _ => None,
    }
}

fn not_found(path: &str) -> impl Fn(nix::errno::Errno) -> HelperError + '_ {
    move |e| match e {
        nix::errno::Errno::ENOENT => HelperError::NotFound {
            what: format!("{path:?} in the instance"),
        },
        e => HelperError::errno("open", path, e),
    }
}

/// Reads `path`: metadata, directory entries or symlink target, and an fd of a file's data.
pub fn get(rootfs: &Root, path: &str) -> HelperResult<(FileMeta, Option<OwnedFd>)> {
    let rel = relative(path)?;
    let p = openat2(
        rootfs.fd(),
        rel.as_str(),
        how(OFlag::O_PATH | OFlag::O_NOFOLLOW),
    )
    .map_err(not_found(path))?;
    let st = fstat(&p).map_err(|e| HelperError::errno("fstat", path, e))?;
    let kind = kind_of(&st).ok_or_else(|| {
        HelperError::invalid("path", format!("{path:?} is a device, fifo or socket"))
    })?;
    let mut meta = FileMeta {
        kind,
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        entries: Vec::new(),
        target: String::new(),
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: (st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(0)),
        fd: None,
    };
    let mut data = None;
    match kind {
        FileKind::Symlink => {
            meta.target = nix::fcntl::readlinkat(&p, "")
                .map_err(|e| HelperError::errno("readlink", path, e))?
                .to_string_lossy()
                .into_owned();
        }
        FileKind::Directory => {
            let d = openat2(
                rootfs.fd(),
                rel.as_str(),
                how(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW),
            )
            .map_err(not_found(path))?;
            let mut dir =
                nix::dir::Dir::from_fd(d).map_err(|e| HelperError::errno("opendir", path, e))?;
            for e in dir.iter().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n != "." && n != ".." {
                    meta.entries.push(n);
                }
            }
            meta.entries.sort();
        }
        FileKind::File => {
            let f = openat2(
                rootfs.fd(),
                rel.as_str(),
                how(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK),
            )
            .map_err(not_found(path))?;
            same_file(&p, &f, path)?;
            data = Some(f);
        }
    }
    Ok((meta, data))
}

/// The two opens of one path must have met the same file (nothing swapped it in between).
fn same_file(a: &OwnedFd, b: &OwnedFd, path: &str) -> HelperResult<()> {
    let (x, y) = (
        fstat(a).map_err(|e| HelperError::errno("fstat", path, e))?,
        fstat(b).map_err(|e| HelperError::errno("fstat", path, e))?,
    );
    if x.st_dev != y.st_dev || x.st_ino != y.st_ino {
        return Err(HelperError::invalid(
            "path",
            format!("{path:?} changed while opening it"),
        ));
    }
    Ok(())
}

fn parent_dir(rootfs: &Root, rel: &str, path: &str) -> HelperResult<OwnedFd> {
    openat2(rootfs.fd(), rel, how(OFlag::O_RDONLY | OFlag::O_DIRECTORY)).map_err(|e| match e {
        nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => HelperError::NotFound {
            what: format!("the directory holding {path:?} in the instance"),
        },
        e => HelperError::errno("open", path, e),
    })
}

fn own(fd: BorrowedFd<'_>, put: &FilePut, path: &str) -> HelperResult<()> {
    nix::unistd::fchown(
        fd,
        Some(nix::unistd::Uid::from_raw(put.uid)),
        Some(nix::unistd::Gid::from_raw(put.gid)),
    )
    .map_err(|e| HelperError::errno("fchown", path, e))?;
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(put.mode))
        .map_err(|e| HelperError::errno("fchmod", path, e))
}

/// Creates or replaces `path`; a file's write fd is returned for silod to fill.
pub fn put(rootfs: &Root, path: &str, put: &FilePut) -> HelperResult<Option<OwnedFd>> {
    if put.uid >= 65536 || put.gid >= 65536 {
        return Err(HelperError::invalid(
            "owner",
            format!(
                "uid {} / gid {} is not an id of the instance (0 to 65535)",
                put.uid, put.gid
            ),
        ));
    }
    if put.mode > 0o7777 {
        return Err(HelperError::invalid(
            "mode",
            format!("{:o} is not a file mode", put.mode),
        ));
    }
    let rel = relative(path)?;
    let (parent, name) = split(&rel)?;
    let dir = parent_dir(rootfs, parent, path)?;
    match put.kind {
        FileKind::File => {
            let flags = OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC
                | if put.append {
                    OFlag::O_APPEND
                } else {
                    OFlag::O_TRUNC
                };
            let f = nix::fcntl::openat(
                &dir,
                name,
                flags,
                Mode::from_bits_truncate(put.mode & 0o777),
            )
            .map_err(|e| match e {
                nix::errno::Errno::ELOOP => HelperError::invalid(
                    "path",
                    format!("{path:?} is a symlink: silo does not write through it"),
                ),
                e => HelperError::errno("open", path, e),
            })?;
            let st = fstat(&f).map_err(|e| HelperError::errno("fstat", path, e))?;
            if kind_of(&st) != Some(FileKind::File) {
                return Err(HelperError::invalid(
                    "path",
                    format!("{path:?} is not a regular file"),
                ));
            }
            own(f.as_fd(), put, path)?;
            Ok(Some(f))
        }
        FileKind::Directory => {
            match nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(put.mode & 0o777)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(HelperError::errno("mkdir", path, e)),
            }
            let d = nix::fcntl::openat(
                &dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| HelperError::errno("open", path, e))?;
            own(d.as_fd(), put, path)?;
            Ok(None)
        }
        FileKind::Symlink => {
            if put.target.is_empty() || put.target.len() > MAX_PATH || put.target.contains('\0') {
                return Err(HelperError::invalid(
                    "symlink target",
                    "empty, too long or with a NUL",
                ));
            }
            match nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(HelperError::errno("unlink", path, e)),
            }
            nix::unistd::symlinkat(put.target.as_str(), &dir, name)
                .map_err(|e| HelperError::errno("symlink", path, e))?;
            nix::unistd::fchownat(
                &dir,
                name,
                Some(nix::unistd::Uid::from_raw(put.uid)),
                Some(nix::unistd::Gid::from_raw(put.gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| HelperError::errno("lchown", path, e))?;
            Ok(None)
        }
    }
}

/// Removes a file, symlink or empty directory.
pub fn delete(rootfs: &Root, path: &str) -> HelperResult<()> {
    let rel = relative(path)?;
    let (parent, name) = split(&rel)?;
    let dir = parent_dir(rootfs, parent, path)?;
    let st = nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(not_found(path))?;
    let flag = if kind_of(&st) == Some(FileKind::Directory) {
        nix::unistd::UnlinkatFlags::RemoveDir
    } else {
        nix::unistd::UnlinkatFlags::NoRemoveDir
    };
    nix::unistd::unlinkat(&dir, name, flag).map_err(|e| match e {
        nix::errno::Errno::ENOTEMPTY => HelperError::InUse {
            what: format!("directory {path:?}"),
            by: "its entries (remove them first)".into(),
        },
        e => HelperError::errno("unlink", path, e),
    })
}
