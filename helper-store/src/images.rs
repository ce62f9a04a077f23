//! Unpacking images into image volumes, and cloning volumes, each in a landlocked child.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag};
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
    let how = silo_proto::jail::beneath::beneath_how(OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0);
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

/// Unpacks image `fp` from silod's upload directory into `target` (a fresh directory).
/// A split image's rootfs may be a tarball or a squashfs; a squashfs is read in user space by
/// the same landlocked child (`crate::squash`), never mounted, within the same limits.
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
    let result = child::run(
        "unpack image",
        &[target.fd()],
        &[],
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
            let Some(rf) = rootfs else {
                return Ok(total);
            };
            let rf = std::fs::File::from(rf);
            let r2 = if crate::squash::is_squashfs(&rf) {
                unpack_squashfs(rf, root, &rest)?
            } else {
                let s = open_tar_stream(rf, rest.max_bytes.saturating_mul(2).max(1 << 20))?;
                extract(s, root, Layout::Rootfs, &rest)?
            };
            total.entries += r2.entries;
            total.bytes += r2.bytes;
            total.skipped_devices += r2.skipped_devices;
            Ok(total)
        },
    )
    .await;
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

/// Memory a squashfs-reading child may have (its copy of silo-store's included).
const SQUASHFS_MEMORY: u64 = 1 << 30;

/// In the unpacking child: a thread re-encodes the squashfs as a tar stream on a pipe, and the
/// tarball extractor unpacks that under rootfs/ with every check a rootfs tarball gets.
fn unpack_squashfs(
    rf: std::fs::File,
    root: BorrowedFd<'_>,
    limits: &Limits,
) -> Result<silo_proto::image::extract::Report, ImageError> {
    let (rx, tx) = std::io::pipe().map_err(|e| ImageError::Io {
        member: "rootfs".into(),
        op: "pipe".into(),
        message: e.to_string(),
    })?;
    // backhand holds the image's tables in memory: a hostile image claiming huge ones makes
    // this child fail an allocation (and die alone), never the host run out of memory.
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_DATA,
        SQUASHFS_MEMORY,
        SQUASHFS_MEMORY,
    )
    .map_err(|e| ImageError::Io {
        member: "rootfs".into(),
        op: "setrlimit".into(),
        message: e.desc().into(),
    })?;
    let (max_bytes, max_entries) = (limits.max_bytes, limits.max_entries);
    // The child is single-threaded and forks nothing more, so a thread is sound here.
    let writer = std::thread::spawn(move || crate::squash::to_tar(rf, tx, max_bytes, max_entries));
    let extracted = extract(Box::new(rx), root, Layout::Rootfs, limits);
    // The reader is gone with `extract`'s return: a writer still at work gets EPIPE.
    let written = writer.join().unwrap_or_else(|_| {
        Err(ImageError::Format(
            "rootfs squashfs: the reader panicked".into(),
        ))
    });
    match (extracted, written) {
        (Ok(r), Ok(())) => Ok(r),
        // The squashfs itself is bad (or over a limit): that is the reason, whatever the
        // extractor made of the stream cut short.
        (_, Err(w)) if !matches!(w, ImageError::Truncated(_)) => Err(w),
        (Err(e), _) => Err(e),
        (Ok(_), Err(w)) => Err(w),
    }
}

/// Copies `src` into the fresh directory `dst`.
pub async fn copy(src: &Root, dst: &Root, max_bytes: u64) -> HelperResult<u64> {
    let r = child::run("copy volume", &[dst.fd()], &[src.fd()], || {
        crate::copy::copy_tree(src.fd(), dst.fd(), max_bytes)
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
