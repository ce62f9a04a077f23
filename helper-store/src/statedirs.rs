//! silod's images and backups directories kept in a custom volume (LXD's
//! `storage.images_volume` and `storage.backups_volume`).
//!
//! The volume stays silo-store's (root's, beneath the pools fd); only a directory inside it,
//! owned by silod's user, is bound onto silod's directory. The target is opened beneath the
//! state dir fd with no symlink anywhere and the mount goes onto that fd, so a path silod
//! swaps meanwhile cannot redirect it.

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{openat2, OFlag};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::{beneath_how, Root};
use silo_proto::store::StateDir;
use silo_proto::{PoolName, VolumeName};

/// Opens `<state>/<name>`: a real directory owned by silod's user (the state dir's owner).
fn silod_dir(state: &Root, name: &str) -> HelperResult<OwnedFd> {
    let fd = openat2(
        state.fd(),
        name,
        beneath_how(OFlag::O_PATH | OFlag::O_DIRECTORY, 0),
    )
    .map_err(|e| HelperError::errno("openat2", format!("{}/{name}", state.display()), e))?;
    let owner = nix::sys::stat::fstat(state.fd())
        .map_err(|e| HelperError::errno("fstat", state.display(), e))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| HelperError::errno("fstat", name, e))?;
    if st.st_uid != owner.st_uid {
        return Err(HelperError::invalid(
            "state dir",
            format!("{}/{name} is not silod's directory", state.display()),
        ));
    }
    Ok(fd)
}

/// The volume's directory for `dir`, made owned by silod's user.
fn volume_dir(
    pools: &Root,
    state: &Root,
    dir: StateDir,
    pool: &PoolName,
    volume: &VolumeName,
) -> HelperResult<Root> {
    let vol = pools.open_dir(&[pool.as_str(), "custom", volume.as_str()])?;
    // The volume's top stays root's; silod passes through it to its own directory.
    nix::sys::stat::fchmod(vol.fd(), nix::sys::stat::Mode::from_bits_truncate(0o711))
        .map_err(|e| HelperError::errno("fchmod", vol.display(), e))?;
    let name = dir.name();
    if !vol.exists(name)? {
        nix::sys::stat::mkdirat(
            vol.fd(),
            name,
            nix::sys::stat::Mode::from_bits_truncate(0o700),
        )
        .map_err(|e| HelperError::errno("mkdir", format!("{}/{name}", vol.display()), e))?;
    }
    let fd = openat2(
        vol.fd(),
        name,
        beneath_how(OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0),
    )
    .map_err(|e| HelperError::errno("openat2", format!("{}/{name}", vol.display()), e))?;
    let owner = nix::sys::stat::fstat(state.fd())
        .map_err(|e| HelperError::errno("fstat", state.display(), e))?;
    nix::unistd::fchown(
        &fd,
        Some(nix::unistd::Uid::from_raw(owner.st_uid)),
        Some(nix::unistd::Gid::from_raw(owner.st_gid)),
    )
    .map_err(|e| HelperError::errno("fchown", format!("{}/{name}", vol.display()), e))?;
    Ok(Root::from_fd(fd, format!("{}/{name}", vol.display())))
}

fn same(a: &OwnedFd, b: impl AsFd) -> bool {
    match (nix::sys::stat::fstat(a), nix::sys::stat::fstat(b.as_fd())) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

/// Unmounts everything stacked on `<state>/<name>`.
fn unmount_all(state: &Root, name: &str) -> HelperResult<()> {
    for _ in 0..8 {
        let fd = silod_dir_any(state, name)?;
        if !crate::btrfs::is_mount_root(fd.as_fd()) {
            return Ok(());
        }
        crate::btrfs::unmount(fd.as_fd())?;
    }
    Err(HelperError::InUse {
        what: format!("{}/{name}", state.display()),
        by: "more mounts than silo makes".into(),
    })
}

/// `<state>/<name>` as an O_PATH fd, whoever owns what is mounted there.
fn silod_dir_any(state: &Root, name: &str) -> HelperResult<OwnedFd> {
    openat2(
        state.fd(),
        name,
        beneath_how(OFlag::O_PATH | OFlag::O_DIRECTORY, 0),
    )
    .map_err(|e| HelperError::errno("openat2", format!("{}/{name}", state.display()), e))
}

/// See [`silo_proto::store::Store::mount_state_dir`].
pub fn mount(
    pools: &Root,
    state: &Root,
    dir: StateDir,
    pool: &PoolName,
    volume: &VolumeName,
    staging: bool,
) -> HelperResult<()> {
    let src = volume_dir(pools, state, dir, pool, volume)?;
    let name = if staging {
        dir.staging_name()
    } else {
        dir.name()
    };
    let target = silod_dir(state, name)?;
    if same(&target, src.fd()) {
        return Ok(());
    }
    if staging || crate::btrfs::is_mount_root(target.as_fd()) {
        unmount_all(state, name)?;
    }
    let target = silod_dir(state, name)?;
    crate::btrfs::bind_dir(src.fd(), target.as_fd())?;
    tracing::info!(dir = dir.name(), pool = %pool, volume = %volume, staging, "custom volume mounted on silod's directory");
    Ok(())
}

/// See [`silo_proto::store::Store::promote_state_dir`].
pub fn promote(state: &Root, dir: StateDir) -> HelperResult<()> {
    let staged = silod_dir(state, dir.staging_name())?;
    if !crate::btrfs::is_mount_root(staged.as_fd()) {
        return Err(HelperError::invalid(
            "state dir",
            format!("nothing is staged at {}", dir.staging_name()),
        ));
    }
    unmount_all(state, dir.name())?;
    let target = silod_dir(state, dir.name())?;
    crate::btrfs::move_onto(staged, target.as_fd(), dir.name())
}

/// See [`silo_proto::store::Store::unmount_state_dir`].
pub fn unmount(state: &Root, dir: StateDir) -> HelperResult<()> {
    unmount_all(state, dir.name())
}
