//! Disk devices' sources, as silo-priv decides them: a custom volume found beneath its own
//! pools fd, or a host path the root policy's `host_paths` allows, opened from `/` without
//! following a symlink anywhere. silod only ever names them.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::Root;
use silo_proto::jail::policy::Policy;
use silo_proto::privileged::{DiskMount, DiskSource};

/// The policy's word on a source: a host path needs a `host_paths` entry above it.
pub fn check_source(policy: &Policy, source: &DiskSource) -> HelperResult<()> {
    match source {
        DiskSource::Volume { .. } => Ok(()),
        DiskSource::Host(p) => {
            if policy.host_paths.iter().any(|b| p.is_within(b)) {
                Ok(())
            } else {
                Err(policy.deny(format!(
                    "disk source {p} on the host is not beneath any host_paths entry"
                )))
            }
        }
    }
}

/// Opens a disk's source as an `O_PATH` fd: `None` when it is missing and not required.
pub fn open_source(pools: &Root, policy: &Policy, d: &DiskMount) -> HelperResult<Option<OwnedFd>> {
    check_source(policy, &d.source)?;
    let dev = d.device.as_str();
    let opened = match &d.source {
        DiskSource::Volume { pool, volume } => {
            match pools.open_dir(&[pool.as_str(), "custom", volume.as_str()]) {
                Ok(r) => r
                    .fd()
                    .try_clone_to_owned()
                    .map_err(|e| HelperError::io("dup", "custom volume", e)),
                Err(HelperError::NotFound { .. }) => Err(HelperError::NotFound {
                    what: format!("{} (disk device {dev:?})", d.source),
                }),
                Err(e) => Err(e),
            }
        }
        DiskSource::Host(p) => open_host(p).map_err(|e| match e {
            Errno::ENOENT => HelperError::NotFound {
                what: format!("{} (disk device {dev:?})", d.source),
            },
            Errno::ELOOP | Errno::EXDEV => HelperError::invalid(
                "source",
                format!("disk device {dev:?}: {p} goes through a symlink; name the path itself"),
            ),
            e => HelperError::errno("openat2", p, e),
        }),
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(HelperError::NotFound { .. }) if !d.required => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(|e| HelperError::errno("fstat", &d.source, e))?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFLNK {
        return Err(HelperError::invalid(
            "source",
            format!(
                "disk device {dev:?}: {} is a symlink; name the path itself",
                d.source
            ),
        ));
    }
    if kind != libc::S_IFDIR && kind != libc::S_IFREG {
        return Err(HelperError::invalid(
            "source",
            format!(
                "disk device {dev:?}: {} is neither a directory nor a regular file",
                d.source
            ),
        ));
    }
    Ok(Some(fd))
}

/// A host path as an `O_PATH` fd, from `/`, no symlink (nor magic link) on the way; a final
/// symlink is opened itself, which the type checks after refuse.
pub(crate) fn open_host(p: &silo_proto::types::HostPath) -> Result<OwnedFd, Errno> {
    silo_proto::jail::beneath::open_host_path(p, OFlag::O_PATH)
}
