//! The files API's storage side: reading and writing paths inside an instance's root volume.
//!
//! Every path is resolved with `openat2(RESOLVE_IN_ROOT)` from the volume's rootfs fd, so
//! absolute symlinks and `..` inside the instance stay inside it (the escape behind
//! CVE-2026-48749 and friends), and the last component is never followed when writing.
//! Ids are the instance's own: the volume stores them as the instance sees them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{openat2, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::Root;
use silo_proto::store::{FileKind, FileMeta, FilePut};

/// Longest path the files API takes.
const MAX_PATH: usize = 4096;

use silo_proto::jail::beneath::in_root_how as how;

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

fn split(rel: &str) -> HelperResult<(&str, &str)> {
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

/// How long a file transfer may stall (silod neither reading nor writing) before silo-store
/// gives up on it and closes the file.
const STALL: std::time::Duration = std::time::Duration::from_secs(600);

fn pipe_err(e: impl std::fmt::Display) -> HelperError {
    HelperError::Io {
        op: "file transfer".into(),
        target: "pipe to silod".into(),
        message: e.to_string(),
        errno: None,
    }
}

/// Hands a file's contents to silod without handing it the file: a pipe that a task of
/// silo-store fills from `file`. An fd of the file itself could be executed
/// (`execveat(fd, "", AT_EMPTY_PATH)`, set-user-id included) or reopened through
/// /proc/self/fd by whoever holds it; the read end of a pipe can be neither. Answers the
/// read end (blocking, as silod reads it).
pub fn feed(file: OwnedFd) -> HelperResult<OwnedFd> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(pipe_err)?;
    // Makes silo-store's end (its own open file) non-blocking; silod's end stays blocking.
    let mut tx = tokio::net::unix::pipe::Sender::from_owned_fd(w).map_err(pipe_err)?;
    // A task on silo-store's one thread (never an OS thread: silo-store forks children).
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut f = std::fs::File::from(file);
        let mut buf = vec![0u8; 128 << 10];
        loop {
            // Regular files do not block on read; the pipe is what waits for silod.
            let n = match std::io::Read::read(&mut f, &mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a file for silod");
                    return;
                }
            };
            match tokio::time::timeout(STALL, tx.write_all(&buf[..n])).await {
                Ok(Ok(())) => {}
                // silod closed its end (EPIPE) or stalled: the stream ends here.
                _ => return,
            }
        }
    });
    Ok(r)
}

/// What a transfer into the instance ended with, sent back on the socket after silod shut
/// its writing side down: `ok`, or `error: <why>`.
pub const PUT_OK: &[u8] = b"ok";

/// Takes a file's new contents from silod without handing it the file: silod gets one end of
/// a stream socketpair, writes the data, shuts its writing side down and reads back
/// [`PUT_OK`] or an error; silo-store writes into `file`, at most `budget` bytes (what the
/// pool's host filesystem may still take above the policy's reserve).
pub fn drain(file: OwnedFd, budget: u64) -> HelperResult<OwnedFd> {
    let (mine, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
    )
    .map_err(pipe_err)?;
    // silod's end blocks as a file would; only silo-store's end is non-blocking.
    nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(pipe_err)?;
    let sock = tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(mine))
        .map_err(pipe_err)?;
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sock = sock;
        let mut f = std::fs::File::from(file);
        // Where a refused transfer is cut back to (an append keeps what was there).
        let start = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut buf = vec![0u8; 128 << 10];
        let mut total = 0u64;
        let outcome: Result<(), String> = loop {
            let n = match tokio::time::timeout(STALL, sock.read(&mut buf)).await {
                Err(_) => break Err("silod stalled".into()),
                Ok(Err(e)) => break Err(format!("reading from silod: {e}")),
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(n)) => n,
            };
            total = total.saturating_add(n as u64);
            if total > budget {
                break Err(format!(
                    "the file would leave less free space on the pool's host filesystem than \
                     the policy's dir_pool_reserve (at most {budget} bytes may be written)"
                ));
            }
            if let Err(e) = std::io::Write::write_all(&mut f, &buf[..n]) {
                break Err(format!("writing the file: {e}"));
            }
        };
        let answer = match &outcome {
            Ok(()) => PUT_OK.to_vec(),
            Err(e) => {
                let _ = f.set_len(start);
                tracing::warn!(error = %e, "file transfer into an instance");
                format!("error: {e}").into_bytes()
            }
        };
        // Closing (not shutdown(2), which the filter does not allow) ends the answer.
        let _ = tokio::time::timeout(STALL, sock.write_all(&answer)).await;
    });
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(relative("/").expect("root"), ".");
        assert_eq!(relative("/etc/hosts").expect("p"), "etc/hosts");
        assert_eq!(relative("etc").expect("rel"), "etc");
        assert!(relative("/a\0b").is_err());
        assert_eq!(split("etc/hosts").expect("s"), ("etc", "hosts"));
        assert_eq!(split("hosts").expect("s"), (".", "hosts"));
        assert!(split("etc/..").is_err());
    }

    #[test]
    fn symlinks_stay_inside() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/hosts"), "inside").expect("write");
        std::os::unix::fs::symlink("/etc", root.join("link")).expect("symlink");
        std::os::unix::fs::symlink("../../../../../../etc/passwd", root.join("up"))
            .expect("symlink");
        let r = Root::open(&root).expect("root");
        // A directory symlink in the middle resolves inside the rootfs.
        let (m, fd) = get(&r, "/link/hosts").expect("get");
        assert_eq!(m.kind, FileKind::File);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd.expect("fd")), &mut s)
            .expect("read");
        assert_eq!(s, "inside");
        // A final symlink is reported, not followed.
        let (m, _) = get(&r, "/up").expect("get");
        assert_eq!(m.kind, FileKind::Symlink);
        // Writing through a symlink is refused; the host file is untouched.
        let p = FilePut {
            kind: FileKind::File,
            uid: 0,
            gid: 0,
            mode: 0o644,
            append: false,
            target: String::new(),
        };
        assert!(put(&r, "/up", &p).is_err());
        assert!(put(&r, "/link/new", &p).is_ok());
        assert!(root.join("etc/new").exists());
    }
}
