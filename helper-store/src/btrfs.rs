//! btrfs pools and the nosuid binds of dir pools: loop devices, the new mount API onto a directory
//! fd, subvolume and snapshot ioctls. Nothing here takes a path from silod: every target is a directory fd resolved
//! beneath silo-store's own roots.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use silo_proto::error::{HelperError, HelperResult};

/// statfs f_type of btrfs.
pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn last(op: &str, what: impl std::fmt::Display) -> HelperError {
    HelperError::io(op, what, std::io::Error::last_os_error())
}

/// Attaches `file` to a free loop device (detached automatically when its last user goes)
/// and returns the device's fd and path.
pub fn attach_loop(
    file: BorrowedFd<'_>,
    name: &str,
    read_only: bool,
) -> HelperResult<(OwnedFd, String)> {
    let ctl = nix::fcntl::open(
        "/dev/loop-control",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| HelperError::errno("open", "/dev/loop-control", e))?;
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(last("LOOP_CTL_GET_FREE", "/dev/loop-control"));
        }
        let path = format!("/dev/loop{n}");
        let dev = nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| HelperError::errno("open", &path, e))?;
        let mut file_name = [0u8; 64];
        for (d, s) in file_name.iter_mut().zip(name.bytes().take(63)) {
            *d = s;
        }
        let cfg = LoopConfig {
            fd: file.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: LO_FLAGS_AUTOCLEAR
                    | if read_only {
                        1 /* LO_FLAGS_READ_ONLY */
                    } else {
                        0
                    },
                lo_file_name: file_name,
                lo_crypt_name: [0; 64],
                lo_encrypt_key: [0; 32],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads a struct loop_config we own for the call's duration.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if r == 0 {
            return Ok((dev, path));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) {
            return Err(HelperError::io("LOOP_CONFIGURE", &path, err));
        }
        // Another tool took the device between GET_FREE and CONFIGURE: try the next one.
    }
    Err(HelperError::Unsupported("no free loop device".into()))
}

fn cstr(s: &str) -> HelperResult<CString> {
    CString::new(s).map_err(|_| HelperError::invalid("string", "contains NUL"))
}

/// A configured filesystem context for `fstype` on `device` (new mount API), with `flags`
/// such as "ro" set; returns the detached mount with `attrs`.
fn fsmount(fstype: &str, device: &str, flags: &[&str], attrs: u32) -> HelperResult<OwnedFd> {
    let t = cstr(fstype)?;
    // SAFETY: fsopen reads a NUL-terminated string we own; returns an fd or -1.
    let fs = unsafe {
        libc::syscall(libc::SYS_fsopen, t.as_ptr(), 1u32 /* FSOPEN_CLOEXEC */)
    };
    if fs < 0 {
        return Err(last("fsopen", fstype));
    }
    // SAFETY: the kernel just returned this fd; we own it.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    let key = cstr("source")?;
    let val = cstr(device)?;
    // SAFETY: fsconfig(FSCONFIG_SET_STRING=1) reads two NUL-terminated strings we own.
    if unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            1u32,
            key.as_ptr(),
            val.as_ptr(),
            0,
        )
    } < 0
    {
        return Err(last("fsconfig source", device));
    }
    for f in flags {
        let f = cstr(f)?;
        // SAFETY: fsconfig(FSCONFIG_SET_FLAG=0) reads one NUL-terminated string we own.
        if unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                0u32,
                f.as_ptr(),
                std::ptr::null::<u8>(),
                0,
            )
        } < 0
        {
            return Err(last("fsconfig flag", device));
        }
    }
    // SAFETY: fsconfig(FSCONFIG_CMD_CREATE=6) takes no pointers.
    if unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            6u32,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    } < 0
    {
        return Err(HelperError::invalid(
            "filesystem",
            format!(
                "{device} is not a {fstype} the kernel can mount: {}",
                std::io::Error::last_os_error()
            ),
        ));
    }
    // SAFETY: fsmount takes the context fd and flags; returns a detached mount fd or -1.
    let mnt = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            1u32, /* FSMOUNT_CLOEXEC */
            attrs,
        )
    };
    if mnt < 0 {
        return Err(last("fsmount", device));
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as i32) })
}

const MOUNT_ATTR_NOSUID: u32 = 0x2;
const MOUNT_ATTR_NODEV: u32 = 0x4;

/// Mounts the btrfs on `device` onto the directory `target` (by fd: no path is resolved),
/// nosuid and nodev: set-user-id programs in volumes never run from the host's view.
pub fn mount_btrfs(device: &str, target: BorrowedFd<'_>) -> HelperResult<()> {
    let mnt = fsmount("btrfs", device, &[], MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)?;
    move_onto(mnt, target, device)
}

/// Bind-mounts the host directory `source` (an O_PATH fd) onto `target`, nosuid and nodev.
pub fn bind_dir(source: BorrowedFd<'_>, target: BorrowedFd<'_>) -> HelperResult<()> {
    let empty = cstr("")?;
    const OPEN_TREE_CLONE: u32 = 1;
    const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
    const AT_EMPTY_PATH: u32 = 0x1000;
    // SAFETY: open_tree reads an empty NUL-terminated string; the fd is ours.
    let t = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH,
        )
    };
    if t < 0 {
        return Err(last("open_tree", "pool source"));
    }
    // SAFETY: the kernel just returned this fd; we own it.
    let tree = unsafe { OwnedFd::from_raw_fd(t as i32) };
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: u64::from(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads an empty string and a struct mount_attr we own, with its size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(last("mount_setattr", "pool source"));
    }
    move_onto(tree, target, "pool source")
}

/// Whether the directory is the root of a mount (a mount point), by statx: no path walked.
pub fn is_mount_root(dir: BorrowedFd<'_>) -> bool {
    let empty = c"";
    // SAFETY: statx writes one struct statx we own; the path is an empty NUL-terminated string.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the fd is borrowed for the call.
    let r = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    r == 0
        && stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
        && stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
}

/// Whether the mount the directory sits on is nosuid and nodev: set-user-id files and device
/// nodes beneath it are inert from the host's view (the instance's own idmapped clone of its
/// rootfs is a separate mount that silo-priv makes).
pub fn is_nosuid_nodev(dir: BorrowedFd<'_>) -> bool {
    use nix::sys::statvfs::FsFlags;
    nix::sys::statvfs::fstatvfs(dir)
        .map(|s| s.flags().contains(FsFlags::ST_NOSUID | FsFlags::ST_NODEV))
        .unwrap_or(false)
}

/// Bind-mounts a directory onto itself, nosuid and nodev (a dir pool's guard). The caller
/// must reopen the directory: an fd opened before still sees the mount beneath.
pub fn bind_self_nosuid(dir: BorrowedFd<'_>) -> HelperResult<()> {
    bind_dir(dir, dir)
}

pub(crate) fn move_onto(mnt: OwnedFd, target: BorrowedFd<'_>, what: &str) -> HelperResult<()> {
    let empty = cstr("")?;
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
    // SAFETY: move_mount reads two empty NUL-terminated strings; both ends are fds we hold.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(last("move_mount", what));
    }
    Ok(())
}

/// Lazily unmounts whatever is mounted at the directory behind `dir` (via its magic link, so
/// no path silod could race is walked). The loop device detaches itself once unused.
pub fn unmount(dir: BorrowedFd<'_>) -> HelperResult<()> {
    let p = format!("/proc/self/fd/{}", dir.as_raw_fd());
    nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| HelperError::errno("umount2", &p, e))
}

/// Whether the directory is the root of a btrfs filesystem or subvolume.
pub fn is_btrfs(dir: BorrowedFd<'_>) -> bool {
    nix::sys::statfs::fstatfs(dir)
        .map(|s| s.filesystem_type().0 == BTRFS_SUPER_MAGIC)
        .unwrap_or(false)
}

/// The name of the filesystem type holding `dir`, from its statfs magic (LXD's
/// `FSTypeToName` names), or "" for one it does not name.
pub fn fs_type_name(dir: BorrowedFd<'_>) -> &'static str {
    let Ok(s) = nix::sys::statfs::fstatfs(dir) else {
        return "";
    };
    // The magics of <linux/magic.h>; f_type's width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    match s.filesystem_type().0 as u64 {
        0x9123_683E => "btrfs",
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x0102_1994 => "tmpfs",
        0x2FC1_2FC1 => "zfs",
        0x794C_7630 => "overlayfs",
        0x7366_7173 => "squashfs",
        0xF2F5_2010 => "f2fs",
        0x6969 => "nfs",
        _ => "",
    }
}

#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

const BTRFS_IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940e;
const BTRFS_IOC_SNAP_DESTROY: libc::c_ulong = 0x5000_940f;
const BTRFS_IOC_SNAP_CREATE_V2: libc::c_ulong = 0x5000_9417;

fn name_bytes<const N: usize>(name: &str) -> HelperResult<[u8; N]> {
    if name.is_empty() || name.len() >= N || name.contains('/') {
        return Err(HelperError::invalid("subvolume name", format!("{name:?}")));
    }
    let mut out = [0u8; N];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

/// Runs a btrfs ioctl that takes `struct btrfs_ioctl_vol_args` naming `name` in `parent`.
fn vol_ioctl(
    parent: BorrowedFd<'_>,
    request: libc::c_ulong,
    op: &str,
    name: &str,
) -> std::io::Result<()> {
    let args = VolArgs {
        fd: 0,
        name: name_bytes(name)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?,
    };
    // SAFETY: the ioctl reads a struct btrfs_ioctl_vol_args we own for the call's duration.
    if unsafe { libc::ioctl(parent.as_raw_fd(), request, &args as *const VolArgs) } < 0 {
        let e = std::io::Error::last_os_error();
        tracing::debug!(op, name, error = %e, "btrfs ioctl failed");
        return Err(e);
    }
    Ok(())
}

/// Creates subvolume `name` in `parent`.
pub fn subvol_create(parent: BorrowedFd<'_>, name: &str) -> HelperResult<()> {
    vol_ioctl(parent, BTRFS_IOC_SUBVOL_CREATE, "subvolume create", name).map_err(|e| {
        if e.raw_os_error() == Some(libc::EEXIST) {
            HelperError::AlreadyExists {
                what: format!("subvolume {name:?}"),
            }
        } else {
            HelperError::io("BTRFS_IOC_SUBVOL_CREATE", name, e)
        }
    })
}

/// Snapshots subvolume `src` as `name` in `parent` (read-write).
pub fn snapshot(src: BorrowedFd<'_>, parent: BorrowedFd<'_>, name: &str) -> HelperResult<()> {
    snapshot_flags(src, parent, name, 0)
}

fn snapshot_flags(
    src: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    name: &str,
    flags: u64,
) -> HelperResult<()> {
    let args = VolArgsV2 {
        fd: i64::from(src.as_raw_fd()),
        transid: 0,
        flags,
        unused: [0; 4],
        name: name_bytes(name)?,
    };
    // SAFETY: the ioctl reads a struct btrfs_ioctl_vol_args_v2 we own.
    if unsafe {
        libc::ioctl(
            parent.as_raw_fd(),
            BTRFS_IOC_SNAP_CREATE_V2,
            &args as *const VolArgsV2,
        )
    } < 0
    {
        return Err(last("BTRFS_IOC_SNAP_CREATE_V2", name));
    }
    Ok(())
}

/// Deletes subvolume `name` of `parent`, with its contents.
pub fn subvol_delete(parent: BorrowedFd<'_>, name: &str) -> HelperResult<()> {
    vol_ioctl(parent, BTRFS_IOC_SNAP_DESTROY, "subvolume delete", name)
        .map_err(|e| HelperError::io("BTRFS_IOC_SNAP_DESTROY", name, e))
}

/// Whether `dir` is a subvolume root (btrfs gives subvolume roots inode 256).
pub fn is_subvolume(dir: BorrowedFd<'_>) -> bool {
    is_btrfs(dir)
        && nix::sys::stat::fstat(dir)
            .map(|s| s.st_ino == 256)
            .unwrap_or(false)
}

/// `BTRFS_SUBVOL_RDONLY` in `btrfs_ioctl_vol_args_v2.flags`.
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;
/// `_IOW(0x94, 38, struct btrfs_ioctl_send_args)` (72 bytes).
const BTRFS_IOC_SEND: libc::c_ulong = 0x4048_9426;

const BTRFS_IOC_SUBVOL_GETFLAGS: libc::c_ulong = 0x8008_9419;
const BTRFS_IOC_SUBVOL_SETFLAGS: libc::c_ulong = 0x4008_941a;

/// `BTRFS_IOC_GET_SUBVOL_INFO`: `_IOR(0x94, 60, struct btrfs_ioctl_get_subvol_info_args)`
/// (504 bytes).
const BTRFS_IOC_GET_SUBVOL_INFO: libc::c_ulong = 0x81f8_943c;

/// A subvolume's own UUID and the UUID of the subvolume it is a snapshot of (zero if none).
pub fn subvol_uuids(dir: BorrowedFd<'_>) -> HelperResult<([u8; 16], [u8; 16])> {
    // u64s for the struct's alignment; uuid at byte 296, parent_uuid at 312.
    let mut args = [0u64; 63];
    // SAFETY: the ioctl writes a struct btrfs_ioctl_get_subvol_info_args (504 bytes) into
    // `args`, which is that large.
    if unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            BTRFS_IOC_GET_SUBVOL_INFO,
            args.as_mut_ptr(),
        )
    } < 0
    {
        return Err(last("BTRFS_IOC_GET_SUBVOL_INFO", "subvolume"));
    }
    let bytes: Vec<u8> = args.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut uuid = [0u8; 16];
    let mut parent = [0u8; 16];
    uuid.copy_from_slice(&bytes[296..312]);
    parent.copy_from_slice(&bytes[312..328]);
    Ok((uuid, parent))
}

/// Whether an incremental send of `volume` from `parent` is sound: the kernel diffs the two
/// trees by inode, which only means something between subvolumes of one lineage (one a
/// snapshot of the other, or both snapshots of the same subvolume). Between unrelated ones
/// (a volume restored from an optimized backup, say) its stream would be garbage.
pub fn related(volume: BorrowedFd<'_>, parent: BorrowedFd<'_>) -> HelperResult<bool> {
    let (v, vp) = subvol_uuids(volume)?;
    let (p, pp) = subvol_uuids(parent)?;
    let zero = [0u8; 16];
    Ok((vp != zero && (vp == p || vp == pp)) || (pp != zero && pp == v))
}

/// Whether subvolume `dir` is read-only.
pub fn is_readonly(dir: BorrowedFd<'_>) -> HelperResult<bool> {
    let mut flags: u64 = 0;
    // SAFETY: the ioctl writes one u64 we own.
    if unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            BTRFS_IOC_SUBVOL_GETFLAGS,
            &mut flags as *mut u64,
        )
    } < 0
    {
        return Err(last("BTRFS_IOC_SUBVOL_GETFLAGS", "subvolume"));
    }
    Ok(flags & BTRFS_SUBVOL_RDONLY != 0)
}

/// Makes subvolume `dir` read-only or writable (a send needs read-only subvolumes; the
/// kernel refuses making one writable while a send reads it).
pub fn set_readonly(dir: BorrowedFd<'_>, ro: bool) -> HelperResult<()> {
    let flags: u64 = if ro { BTRFS_SUBVOL_RDONLY } else { 0 };
    // SAFETY: the ioctl reads one u64 we own.
    if unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            BTRFS_IOC_SUBVOL_SETFLAGS,
            &flags as *const u64,
        )
    } < 0
    {
        return Err(last("BTRFS_IOC_SUBVOL_SETFLAGS", "subvolume"));
    }
    Ok(())
}

/// Snapshots subvolume `src` as a read-only `name` in `parent` (what a send needs).
pub fn snapshot_ro(src: BorrowedFd<'_>, parent: BorrowedFd<'_>, name: &str) -> HelperResult<()> {
    snapshot_flags(src, parent, name, BTRFS_SUBVOL_RDONLY)
}

#[repr(C)]
struct SendArgs {
    send_fd: i64,
    clone_sources_count: u64,
    clone_sources: *const u64,
    parent_root: u64,
    flags: u64,
    version: u32,
    reserved: [u8; 28],
}

/// `_IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)` (4096 bytes).
const BTRFS_IOC_INO_LOOKUP: libc::c_ulong = 0xD000_9412;

#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

/// The id of the subvolume (tree) `dir` is in.
fn root_id(dir: BorrowedFd<'_>) -> HelperResult<u64> {
    let mut args = InoLookupArgs {
        treeid: 0,
        // BTRFS_FIRST_FREE_OBJECTID: a subvolume's own root directory.
        objectid: 256,
        name: [0; 4080],
    };
    // SAFETY: the ioctl reads and writes a struct btrfs_ioctl_ino_lookup_args we own.
    if unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            BTRFS_IOC_INO_LOOKUP,
            &mut args as *mut InoLookupArgs,
        )
    } < 0
    {
        return Err(last("BTRFS_IOC_INO_LOOKUP", "subvolume"));
    }
    Ok(args.treeid)
}

/// Writes a send stream (protocol 1) of read-only subvolume `subvol` into `out`: the kernel's
/// own serialization of the tree, which `receive` applies elsewhere. With a read-only `parent`
/// it is incremental: only what differs from the parent, as `btrfs send -p` and LXD's
/// optimized backups do.
pub fn send(
    subvol: BorrowedFd<'_>,
    parent: Option<BorrowedFd<'_>>,
    out: BorrowedFd<'_>,
) -> HelperResult<()> {
    let parent_root = match parent {
        Some(p) => root_id(p)?,
        None => 0,
    };
    let sources = [parent_root];
    let args = SendArgs {
        send_fd: i64::from(out.as_raw_fd()),
        clone_sources_count: u64::from(parent.is_some()),
        clone_sources: if parent.is_some() {
            sources.as_ptr()
        } else {
            std::ptr::null()
        },
        parent_root,
        flags: 0,
        version: 1,
        reserved: [0; 28],
    };
    // SAFETY: the ioctl reads a struct btrfs_ioctl_send_args we own, whose clone source array
    // (`sources`) outlives the call.
    if unsafe { libc::ioctl(subvol.as_raw_fd(), BTRFS_IOC_SEND, &args as *const SendArgs) } < 0 {
        return Err(last("BTRFS_IOC_SEND", "subvolume"));
    }
    Ok(())
}

/// `_IOWR(0x94, 40, struct btrfs_ioctl_quota_ctl_args)` (16 bytes).
const BTRFS_IOC_QUOTA_CTL: libc::c_ulong = 0xC010_9428;
/// `_IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args)` (48 bytes).
const BTRFS_IOC_QGROUP_LIMIT: libc::c_ulong = 0x8030_942b;
/// `_IO(0x94, 46)`.
const BTRFS_IOC_QUOTA_RESCAN_WAIT: libc::c_ulong = 0x942e;
/// `BTRFS_QUOTA_CTL_ENABLE` (full qgroups, not simple quotas).
const BTRFS_QUOTA_CTL_ENABLE: u64 = 1;
/// `BTRFS_QGROUP_LIMIT_MAX_RFER`.
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1;

/// Turns on qgroup accounting on the filesystem holding `fd` (nothing if it is on already)
/// and waits for the rescan that counts what is there, so a limit set next is enforced on
/// the real figures.
pub fn quota_enable(fd: BorrowedFd<'_>) -> HelperResult<()> {
    let args: [u64; 2] = [BTRFS_QUOTA_CTL_ENABLE, 0];
    // SAFETY: the ioctl reads and writes a struct btrfs_ioctl_quota_ctl_args (two u64s)
    // that `args` is, for the call's duration.
    if unsafe { libc::ioctl(fd.as_raw_fd(), BTRFS_IOC_QUOTA_CTL, args.as_ptr()) } < 0 {
        return Err(last("BTRFS_IOC_QUOTA_CTL", "pool filesystem"));
    }
    // SAFETY: takes no argument.
    if unsafe { libc::ioctl(fd.as_raw_fd(), BTRFS_IOC_QUOTA_RESCAN_WAIT, 0) } < 0 {
        return Err(last("BTRFS_IOC_QUOTA_RESCAN_WAIT", "pool filesystem"));
    }
    Ok(())
}

/// Limits the referenced bytes of the subvolume `subvol` is the root of (its own qgroup,
/// 0/<id>); `None` clears the limit. Quotas must be enabled (ENOTCONN otherwise).
pub fn qgroup_limit(subvol: BorrowedFd<'_>, bytes: Option<u64>) -> Result<(), std::io::Error> {
    // qgroupid 0 names the subvolume the fd is in; then flags, max_rfer, max_excl, rsv_rfer,
    // rsv_excl. u64::MAX is the kernel's "clear this limit".
    let args: [u64; 6] = [
        0,
        BTRFS_QGROUP_LIMIT_MAX_RFER,
        bytes.unwrap_or(u64::MAX),
        0,
        0,
        0,
    ];
    // SAFETY: the ioctl reads a struct btrfs_ioctl_qgroup_limit_args (six u64s) we own.
    if unsafe { libc::ioctl(subvol.as_raw_fd(), BTRFS_IOC_QGROUP_LIMIT, args.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
