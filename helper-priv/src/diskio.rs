//! Disks' I/O limits (`limits.read`, `limits.write`, `limits.max`): the throttle of the block
//! device beneath each source, in the instance's blkio (v1) or io (cgroup2) group. silo-priv
//! finds the device itself from the source it opens; limits on one device add up, as LXD's.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::Root;
use silo_proto::jail::policy::Policy;
use silo_proto::privileged::{DiskIo, DiskIoTarget, DiskSource};
use silo_proto::InstanceName;

use crate::cgroups::Cgroups;

/// Per device (major, minor): read/write bytes and operations per second.
type Totals = BTreeMap<(u32, u32), [Option<u64>; 4]>;

fn open_target(
    pools: &Root,
    policy: &Policy,
    name: &InstanceName,
    t: &DiskIoTarget,
) -> HelperResult<OwnedFd> {
    let dup = |r: Root| {
        r.fd()
            .try_clone_to_owned()
            .map_err(|e| HelperError::io("dup", r.display(), e))
    };
    match t {
        DiskIoTarget::Root(pool) => {
            dup(pools.open_dir(&[pool.as_str(), "containers", name.as_str()])?)
        }
        DiskIoTarget::Source(DiskSource::Volume { pool, volume }) => {
            dup(pools.open_dir(&[pool.as_str(), "custom", volume.as_str()])?)
        }
        DiskIoTarget::Source(s @ DiskSource::Host(p)) => {
            crate::disks::check_source(policy, s)?;
            crate::disks::open_host(p).map_err(|e| HelperError::errno("openat2", p, e))
        }
    }
}

/// The whole block device beneath a filesystem object: its own device when that is a block
/// device (a partition's disk), else (btrfs, whose files carry an anonymous device number) the
/// device its mount was made from, as /proc/self/mountinfo says.
fn block_device(fd: BorrowedFd<'_>, what: &str) -> HelperResult<(u32, u32)> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| HelperError::errno("fstat", what, e))?;
    let (mut ma, mut mi) = (libc::major(st.st_dev), libc::minor(st.st_dev));
    if !Path::new(&format!("/sys/dev/block/{ma}:{mi}")).exists() {
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| HelperError::io("read", "/proc/self/mountinfo", e))?;
        let want = format!("{ma}:{mi}");
        let source = info.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (left.split_whitespace().nth(2)? == want)
                .then(|| right.split_whitespace().nth(1).map(str::to_string))
                .flatten()
        });
        let dev = source
            .filter(|s| s.starts_with("/dev/"))
            .and_then(|s| std::fs::metadata(&s).ok())
            .filter(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
            .ok_or_else(|| {
                HelperError::Unsupported(format!(
                    "disk I/O limits: no block device beneath {what} (its filesystem has none)"
                ))
            })?;
        let rdev = std::os::unix::fs::MetadataExt::rdev(&dev);
        (ma, mi) = (libc::major(rdev), libc::minor(rdev));
    }
    // The throttle is per disk: a partition's limits go on the disk holding it.
    let sys = format!("/sys/dev/block/{ma}:{mi}");
    if Path::new(&sys).join("partition").exists() {
        let parent = std::fs::canonicalize(&sys)
            .ok()
            .and_then(|p| p.parent().map(|p| p.join("dev")))
            .and_then(|p| std::fs::read_to_string(p).ok());
        if let Some((a, b)) = parent.as_deref().and_then(|d| d.trim().split_once(':')) {
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                (ma, mi) = (a, b);
            }
        }
    }
    Ok((ma, mi))
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.saturating_add(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Sets the instance's throttles to exactly `io` (clearing what an earlier call set).
pub fn apply(
    cg: &Cgroups,
    pools: &Root,
    policy: &Policy,
    name: &InstanceName,
    io: &[DiskIo],
) -> HelperResult<()> {
    if io.len() > 256 {
        return Err(HelperError::invalid(
            "limits",
            "more than 256 disks with I/O limits",
        ));
    }
    let mut totals: Totals = BTreeMap::new();
    for d in io {
        let fd = open_target(pools, policy, name, &d.target)?;
        let dev = block_device(fd.as_fd(), &format!("{:?}", d.target))?;
        let t = totals.entry(dev).or_default();
        for (slot, v) in t
            .iter_mut()
            .zip([d.read_bps, d.write_bps, d.read_iops, d.write_iops])
        {
            *slot = add(*slot, v);
        }
    }
    let write = |dir: &Path, f: &str, v: &str| {
        std::fs::write(dir.join(f), v)
            .map_err(|e| HelperError::io("write", dir.join(f).display(), e))
    };
    if let Some(dir) = cg.v1_dir(name, "blkio") {
        for (k, f) in [
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device",
        ]
        .iter()
        .enumerate()
        {
            let cur = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            for line in cur.lines() {
                let Some((dev, _)) = line.split_once(' ') else {
                    continue;
                };
                let listed = totals
                    .iter()
                    .any(|((a, b), t)| t[k].is_some() && format!("{a}:{b}") == dev);
                if !listed {
                    write(&dir, f, &format!("{dev} 0"))?;
                }
            }
            for ((a, b), t) in &totals {
                if let Some(v) = t[k] {
                    write(&dir, f, &format!("{a}:{b} {v}"))?;
                }
            }
        }
        return Ok(());
    }
    let v2 = cg
        .v2_dir(name)
        .map(|d| d.join("io.max"))
        .filter(|p| p.exists());
    match v2 {
        Some(file) => {
            let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
            let cur = std::fs::read_to_string(&file).unwrap_or_default();
            for line in cur.lines() {
                let Some(dev) = line.split_whitespace().next() else { continue };
                if !totals.keys().any(|(a, b)| format!("{a}:{b}") == dev) {
                    write(&dir, "io.max", &format!("{dev} rbps=max wbps=max riops=max wiops=max"))?;
                }
            }
            for ((a, b), t) in &totals {
                let v = |x: Option<u64>| x.map_or("max".to_string(), |n| n.to_string());
                write(
                    &dir,
                    "io.max",
                    &format!("{a}:{b} rbps={} wbps={} riops={} wiops={}", v(t[0]), v(t[1]), v(t[2]), v(t[3])),
                )?;
            }
            Ok(())
        }
        None if totals.is_empty() => Ok(()),
        None => Err(HelperError::Unsupported(
            "disk I/O limits (limits.read/limits.write/limits.max) need the blkio or io cgroup controller, which this host does not give silo".into(),
        )),
    }
}
