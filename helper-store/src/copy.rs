//! Copying a volume tree fd-to-fd, never following a symlink: files reflinked where the
//! filesystem can (FICLONE) and copied otherwise, symlinks recreated, hardlinks kept, owners,
//! modes and times kept, device nodes and sockets skipped. Runs in a landlocked child.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat2, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, mknodat, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};

use silo_proto::jail::beneath::beneath_how as how;

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn e(op: &str, path: &str, err: impl std::fmt::Display) -> String {
    format!("{op} {path}: {err}")
}

/// FICLONE: share the extents of `src` with `dst` (btrfs, xfs); fails elsewhere.
fn reflink(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> bool {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source fd as its integer argument and touches no memory of ours.
    unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) == 0 }
}

fn set_meta(dir: BorrowedFd<'_>, name: &str, st: &FileStat, path: &str) -> Result<(), String> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|x| e("lchown", path, x))?;
    if kind(st) != SFlag::S_IFLNK {
        nix::sys::stat::fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(st.st_mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|x| e("chmod", path, x))?;
    }
    let a = TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let m = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    nix::sys::stat::utimensat(
        dir,
        name,
        &a,
        &m,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|x| e("utimensat", path, x))?;
    Ok(())
}

/// Copies the extended attributes of `src` to `dst`, both open fds.
pub fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, path: &str) -> Result<(), String> {
    use silo_proto::image::xattr;
    for (name, value) in xattr::read(src).map_err(|x| e("flistxattr", path, x))? {
        xattr::set(dst, &name, &value).map_err(|x| {
            e(
                "fsetxattr",
                &format!("{path} ({})", String::from_utf8_lossy(&name)),
                x,
            )
        })?;
    }
    Ok(())
}

/// Copies everything beneath `src` into `dst` (which exists and is empty). Returns bytes copied.
/// Fails past `limit` bytes of file data (a squashfs can expand far beyond its size).
pub fn copy_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, limit: u64) -> Result<u64, String> {
    let mut w = Walk {
        links: HashMap::new(),
        dev: fstat(src).map_err(|x| e("fstat", ".", x))?.st_dev,
        bytes: 0,
        limit,
    };
    copy_dir(src, dst, ".", &mut w, 0)?;
    Ok(w.bytes)
}

/// What a copy carries from directory to directory.
struct Walk {
    /// First copy of each multiply-linked file, to link the others to.
    links: HashMap<(u64, u64), (OwnedFd, String)>,
    /// The source filesystem: the copy never crosses into another.
    dev: u64,
    bytes: u64,
    limit: u64,
}

fn copy_dir(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    path: &str,
    w: &mut Walk,
    depth: usize,
) -> Result<(), String> {
    let dev = w.dev;
    let limit = w.limit;
    if depth > 4096 {
        return Err(format!("{path}: nested too deep"));
    }
    let dup = src.try_clone_to_owned().map_err(|x| e("dup", path, x))?;
    let listing = openat2(
        dup.as_fd(),
        ".",
        how(OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0),
    )
    .map_err(|x| e("open", path, x))?;
    let mut d = nix::dir::Dir::from_fd(listing).map_err(|x| e("opendir", path, x))?;
    let names: Vec<Vec<u8>> = d
        .iter()
        .filter_map(|x| x.ok())
        .map(|x| x.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    for raw in names {
        let name = std::ffi::OsStr::new(std::str::from_utf8(&raw).unwrap_or_default());
        let name: &std::ffi::OsStr = if name.is_empty() {
            std::os::unix::ffi::OsStrExt::from_bytes(&raw)
        } else {
            name
        };
        let shown = format!("{path}/{}", name.to_string_lossy());
        let st = match fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(x) => return Err(e("fstatat", &shown, x)),
        };
        let name_str = name.to_string_lossy().into_owned();
        match kind(&st) {
            SFlag::S_IFDIR => {
                if st.st_dev != dev {
                    return Err(format!(
                        "{shown}: a mount inside the volume; refusing to copy across it"
                    ));
                }
                mkdirat(dst, name, Mode::from_bits_truncate(0o700))
                    .map_err(|x| e("mkdirat", &shown, x))?;
                let s = openat2(src, name, how(OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0))
                    .map_err(|x| e("open", &shown, x))?;
                let t = openat2(dst, name, how(OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0))
                    .map_err(|x| e("open", &shown, x))?;
                copy_dir(s.as_fd(), t.as_fd(), &shown, w, depth + 1)?;
                set_meta(dst, &name_str, &st, &shown)?;
                copy_xattrs(s.as_fd(), t.as_fd(), &shown)?;
            }
            SFlag::S_IFREG => {
                if st.st_nlink > 1 {
                    if let Some((first_dir, first_name)) = w.links.get(&(st.st_dev, st.st_ino)) {
                        match linkat(
                            first_dir.as_fd(),
                            first_name.as_str(),
                            dst,
                            name,
                            AtFlags::empty(),
                        ) {
                            // Across directories a landlocked child asks its parent.
                            Err(Errno::EXDEV) => crate::child::refer(
                                crate::child::Refer::Link,
                                first_dir.as_fd(),
                                first_name,
                                dst,
                                name,
                            ),
                            r => r,
                        }
                        .map_err(|x| e("linkat", &shown, x))?;
                        continue;
                    }
                }
                if w.bytes.saturating_add(st.st_size as u64) > limit {
                    return Err(format!(
                        "image exceeds the limit of {limit} bytes of file data"
                    ));
                }
                let s = openat2(src, name, how(OFlag::O_RDONLY, 0))
                    .map_err(|x| e("open", &shown, x))?;
                let t = openat2(
                    dst,
                    name,
                    how(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, 0o600),
                )
                .map_err(|x| e("create", &shown, x))?;
                let (sf, tf) = (std::fs::File::from(s), std::fs::File::from(t));
                if !reflink(sf.as_fd(), tf.as_fd()) {
                    std::io::copy(&mut &sf, &mut &tf).map_err(|x| e("copy", &shown, x))?;
                }
                w.bytes += st.st_size as u64;
                set_meta(dst, &name_str, &st, &shown)?;
                // After the chown, which clears security.capability.
                copy_xattrs(sf.as_fd(), tf.as_fd(), &shown)?;
                if st.st_nlink > 1 {
                    let keep = dst.try_clone_to_owned().map_err(|x| e("dup", &shown, x))?;
                    w.links.insert((st.st_dev, st.st_ino), (keep, name_str));
                }
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(src, name).map_err(|x| e("readlinkat", &shown, x))?;
                symlinkat(target.as_os_str(), dst, name).map_err(|x| e("symlinkat", &shown, x))?;
                set_meta(dst, &name_str, &st, &shown)?;
            }
            SFlag::S_IFIFO => {
                mknodat(
                    dst,
                    name,
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .map_err(|x| e("mknodat", &shown, x))?;
                set_meta(dst, &name_str, &st, &shown)?;
            }
            // Devices and sockets: silo provides /dev; sockets belong to running programs.
            _ => {}
        }
    }
    Ok(())
}
