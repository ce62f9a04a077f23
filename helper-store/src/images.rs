//! Unpacking images into image volumes, and cloning volumes, each in a landlocked child.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, SFlag};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::image::extract::{extract, Layout, Limits};
use silo_proto::image::{open_tar_stream, ImageError};
use silo_proto::jail::beneath::Root;
use silo_proto::store::UnpackReport;
use silo_proto::ImageFingerprint;

use crate::child;

/// Opens one of silod's uploaded image files for reading. The directory is silod's, so the
/// file is untrusted content: it must be a regular file, not a symlink, not root's (a
/// hardlink to a root file would be), with one link.
/// Opens an upload silod left in its upload directory (a backup): must exist.
pub fn open_upload(uploads: &Root, name: &str) -> HelperResult<OwnedFd> {
    open_input(uploads, name)?.ok_or_else(|| HelperError::NotFound {
        what: format!("upload {name:?}"),
    })
}

fn open_input(images: &Root, name: &str) -> HelperResult<Option<OwnedFd>> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let shown = format!("{}/{name}", images.display());
    let fd = match openat2(images.fd(), name, how) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) => {
            return Err(HelperError::invalid(
                "image file",
                format!("{shown} is a symlink"),
            ))
        }
        Err(e) => return Err(HelperError::errno("openat2", &shown, e)),
    };
    let st = fstat(fd.as_fd()).map_err(|e| HelperError::errno("fstat", &shown, e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(HelperError::invalid(
            "image file",
            format!("{shown} is not a regular file"),
        ));
    }
    if st.st_uid == 0 || st.st_nlink != 1 {
        return Err(HelperError::invalid(
            "image file",
            format!(
                "{shown} must be silod's own single-link file (uid {}, {} links)",
                st.st_uid, st.st_nlink
            ),
        ));
    }
    nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))
        .map_err(|e| HelperError::errno("fcntl", &shown, e))?;
    Ok(Some(fd))
}

/// Whether the file starts with squashfs's magic.
fn is_squashfs(fd: &OwnedFd) -> bool {
    let mut magic = [0u8; 4];
    matches!(nix::sys::uio::pread(fd, &mut magic, 0), Ok(4)) && &magic == b"hsqs"
}

/// Unpacks image `fp` from silod's upload directory into `target` (a fresh directory).
/// A split image's rootfs may be a tarball or a squashfs; a squashfs is mounted read-only as a
/// detached mount (attached nowhere) and copied, within the same limits.
pub async fn unpack(
    images: &Root,
    target: &Root,
    fp: &ImageFingerprint,
    limits: Limits,
) -> HelperResult<UnpackReport> {
    let main = open_input(images, fp.as_str())?.ok_or_else(|| HelperError::NotFound {
        what: format!("image file for {fp}"),
    })?;
    let rootfs = open_input(images, &format!("{fp}.rootfs"))?;
    // The squashfs is parsed by the kernel, from a read-only loop device.
    let mut squash: Option<(OwnedFd, OwnedFd)> = None;
    if let Some(rf) = rootfs.as_ref().filter(|rf| is_squashfs(rf)) {
        let (dev, path) = crate::btrfs::attach_loop(
            rf.as_fd(),
            &format!("silo-image:{}", &fp.as_str()[..12]),
            true,
        )?;
        let mnt = crate::btrfs::mount_squashfs_detached(&path)?;
        squash = Some((mnt, dev));
    }
    let read: Vec<BorrowedFd<'_>> = squash.iter().map(|(m, _)| m.as_fd()).collect();
    let result = child::run(
        "unpack image",
        &[target.fd()],
        &read,
        || -> Result<UnpackReport, ImageError> {
            let root = target.fd();
            let meta_layout = if rootfs.is_some() {
                Layout::Metadata
            } else {
                Layout::Unified
            };
            let s = open_tar_stream(
                std::fs::File::from(main),
                limits.max_bytes.saturating_mul(2).max(1 << 20),
            )?;
            let r1 = extract(s, root, meta_layout, &limits)?;
            let mut total = UnpackReport {
                entries: r1.entries,
                bytes: r1.bytes,
                skipped_devices: r1.skipped_devices,
            };
            let rest = Limits {
                max_bytes: limits.max_bytes.saturating_sub(r1.bytes),
                max_entries: limits.max_entries.saturating_sub(r1.entries),
            };
            match (&squash, rootfs) {
                (Some((mnt, _)), _) => {
                    let io = |op: &str, e: nix::errno::Errno| ImageError::Io {
                        member: "rootfs".into(),
                        op: op.into(),
                        message: e.desc().into(),
                    };
                    nix::sys::stat::mkdirat(
                        root,
                        "rootfs",
                        nix::sys::stat::Mode::from_bits_truncate(0o755),
                    )
                    .map_err(|e| io("mkdirat", e))?;
                    let dst = nix::fcntl::openat2(
                        root,
                        "rootfs",
                        OpenHow::new()
                            .flags(
                                OFlag::O_DIRECTORY
                                    | OFlag::O_RDONLY
                                    | OFlag::O_CLOEXEC
                                    | OFlag::O_NOFOLLOW,
                            )
                            .resolve(
                                ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
                            ),
                    )
                    .map_err(|e| io("openat2", e))?;
                    let bytes = crate::copy::copy_tree(mnt.as_fd(), dst.as_fd(), rest.max_bytes)
                        .map_err(|m| {
                            if m.contains("exceeds the limit") {
                                ImageError::Limit {
                                    what: "bytes of file data".into(),
                                    limit: rest.max_bytes,
                                }
                            } else {
                                ImageError::Io {
                                    member: "rootfs".into(),
                                    op: "copy from squashfs".into(),
                                    message: m,
                                }
                            }
                        })?;
                    total.bytes += bytes;
                }
                (None, Some(rf)) => {
                    let s = open_tar_stream(
                        std::fs::File::from(rf),
                        rest.max_bytes.saturating_mul(2).max(1 << 20),
                    )?;
                    let r2 = extract(s, root, Layout::Rootfs, &rest)?;
                    total.entries += r2.entries;
                    total.bytes += r2.bytes;
                    total.skipped_devices += r2.skipped_devices;
                }
                (None, None) => {}
            }
            Ok(total)
        },
    )
    .await;
    // The detached mount goes away with its fd; the loop device then detaches itself.
    drop(squash);
    let result = result?;
    result.map_err(|e| match e {
        // The target failed (a full pool): say so, not that the image is bad.
        ImageError::Io {
            member,
            op,
            message,
        } => HelperError::Io {
            op: format!("unpacking {member:?}: {op}"),
            target: target.display().to_string(),
            message,
            errno: None,
        },
        e => HelperError::invalid("image", e.to_string()),
    })
}

/// Copies `src` into the fresh directory `dst`.
pub async fn copy(src: &Root, dst: &Root) -> HelperResult<u64> {
    let r = child::run("copy volume", &[dst.fd()], &[src.fd()], || {
        crate::copy::copy_tree(src.fd(), dst.fd(), u64::MAX)
    })
    .await?;
    r.map_err(|e| HelperError::Io {
        op: "copy volume".into(),
        target: dst.display().into(),
        message: e,
        errno: None,
    })
}

/// The mode of volume directories: root only, so no host user can reach into a container's
/// files (or run its set-user-id programs) through the state dir.
pub const VOLUME_MODE: u32 = 0o700;
