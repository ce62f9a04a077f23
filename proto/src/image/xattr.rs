//! Extended attributes (file capabilities, ACLs, user.*) by fd: read when packing and copying,
//! set when unpacking, copying and receiving. Tarballs carry them as GNU tar and LXD write
//! them, `SCHILY.xattr.<name>` PAX records.

use std::os::fd::{AsRawFd, BorrowedFd};

/// The PAX record prefix for an extended attribute.
pub const PAX_PREFIX: &str = "SCHILY.xattr.";

/// Most bytes of names, and of one value, read or accepted (the kernel's own limit is 64 KiB).
const MAX: usize = 64 << 10;

/// Attributes only CAP_SYS_ADMIN may set (trusted.*, and security.* except file
/// capabilities, e.g. an SELinux label on a host without SELinux). silo's confined workers
/// do not hold it, and an unprivileged container could not have set them either: they are
/// left out rather than failing the whole copy.
pub fn privileged(name: &[u8]) -> bool {
    name.starts_with(b"trusted.")
        || (name.starts_with(b"security.") && name != b"security.capability")
}

/// Extended attributes as (name, value) pairs.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The extended attributes of an open file or directory.
pub fn read(fd: BorrowedFd<'_>) -> std::io::Result<Xattrs> {
    let mut names = vec![0u8; MAX];
    // SAFETY: flistxattr writes at most `names.len()` bytes into our buffer.
    let n = unsafe {
        libc::flistxattr(
            fd.as_raw_fd(),
            names.as_mut_ptr() as *mut libc::c_char,
            names.len(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(Vec::new()),
            _ => Err(e),
        };
    }
    let mut out = Vec::new();
    let mut value = vec![0u8; MAX];
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let Ok(c) = std::ffi::CString::new(name) else {
            continue;
        };
        // SAFETY: fgetxattr writes at most `value.len()` bytes into our buffer.
        let m = unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                c.as_ptr(),
                value.as_mut_ptr() as *mut libc::c_void,
                value.len(),
            )
        };
        if m < 0 {
            let e = std::io::Error::last_os_error();
            // Removed since it was listed.
            if e.raw_os_error() == Some(libc::ENODATA) {
                continue;
            }
            return Err(e);
        }
        out.push((name.to_vec(), value[..m as usize].to_vec()));
    }
    Ok(out)
}

/// Sets one extended attribute on an open file or directory; one only CAP_SYS_ADMIN may set
/// is skipped (see [`privileged`]).
pub fn set(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> std::io::Result<()> {
    if name.is_empty() || name.len() > 255 || value.len() > MAX {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: fsetxattr reads `value.len()` bytes from our buffer.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            c.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) && privileged(name) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn round_trip_and_privileged_names() {
        let dir = tempfile::tempdir().expect("tmp");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").expect("a");
        std::fs::write(&b, b"b").expect("b");
        let (fa, fb) = (
            std::fs::File::open(&a).expect("a"),
            std::fs::File::open(&b).expect("b"),
        );
        set(fa.as_fd(), b"user.silo", b"hello").expect("set");
        for (n, v) in read(fa.as_fd()).expect("read") {
            set(fb.as_fd(), &n, &v).expect("copy");
        }
        assert!(read(fb.as_fd())
            .expect("read")
            .contains(&(b"user.silo".to_vec(), b"hello".to_vec())));
        assert!(privileged(b"trusted.x") && privileged(b"security.selinux"));
        assert!(!privileged(b"security.capability") && !privileged(b"user.x"));
        assert!(set(fb.as_fd(), b"", b"x").is_err());
    }
}
