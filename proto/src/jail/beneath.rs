//! Paths resolved beneath a root directory fd, never following a symlink, never by string join.
//!
//! The state dir belongs to silod's user, so silod can plant symlinks or swap directories in
//! it. Every helper lookup is therefore `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! one component at a time from a directory fd the helper opened itself at start, and every
//! directory a helper walks through below its own top directory must be owned by root.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::HelperError;

/// A directory the helper trusts as a root for lookups.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    /// The path it was opened at, for error messages only.
    display: String,
}

/// How a root process opens a path beneath a directory fd it trusts: never out of that
/// directory, never through a symlink or /proc magic link, close-on-exec. `mode` counts only
/// with O_CREAT. The one builder every helper uses for trusted directories.
pub fn beneath_how(flags: OFlag, mode: u32) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(nix::sys::stat::Mode::from_bits_truncate(mode))
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        )
}

/// How a root process opens a path inside an instance's root (a directory fd of it): symlinks
/// resolve as if that directory were `/`, so none leads out; magic links are refused.
pub fn in_root_how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// How a root process opens a host path the policy named, from a directory fd of `/`: no
/// symlink (nor magic link) anywhere on the way, so a planted link cannot lead it elsewhere.
pub fn no_symlinks_how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens a host path the policy named, from `/`, following no symlink (nor /proc magic link)
/// anywhere on the way: a path planted with a link cannot lead a helper elsewhere. With
/// `O_PATH|O_NOFOLLOW` a final symlink is opened itself, so callers check the type.
pub fn open_host_path(source: &crate::types::HostPath, flags: OFlag) -> Result<OwnedFd, Errno> {
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let rel: Vec<&str> = source.components().collect();
    openat2(root.as_fd(), rel.join("/").as_str(), no_symlinks_how(flags))
}

fn how(flags: OFlag) -> OpenHow {
    beneath_how(flags, 0)
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

impl Root {
    /// Opens an absolute directory path given by root at start (argv from root silod, never
    /// from an RPC). The path must not be a symlink.
    pub fn open(path: &std::path::Path) -> Result<Root, HelperError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| HelperError::errno("open", path.display(), e))?;
        Ok(Root {
            fd,
            display: path.display().to_string(),
        })
    }

    /// Wraps an already open directory.
    pub fn from_fd(fd: OwnedFd, display: impl Into<String>) -> Root {
        Root {
            fd,
            display: display.into(),
        }
    }

    /// The directory fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// For messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    fn child_display(&self, rel: &[&str]) -> String {
        format!("{}/{}", self.display, rel.join("/"))
    }

    /// Opens `rel` (components) as a directory beneath this root. Each component must be a
    /// real directory owned by root (a planted symlink or a silod-owned directory is refused).
    pub fn open_dir(&self, rel: &[&str]) -> Result<Root, HelperError> {
        let mut cur = self
            .fd
            .try_clone()
            .map_err(|e| HelperError::io("dup", &self.display, e))?;
        for (i, c) in rel.iter().enumerate() {
            check_component(c)?;
            let shown = self.child_display(&rel[..=i]);
            let next = openat2(cur.as_fd(), *c, how(OFlag::O_DIRECTORY | OFlag::O_RDONLY))
                .map_err(|e| explain_open_err(cur.as_fd(), c, e, &shown))?;
            require_root_dir(&next, &shown)?;
            cur = next;
        }
        Ok(Root {
            fd: cur,
            display: self.child_display(rel),
        })
    }

    /// Opens a directory directly beneath that silod owns (its upload area): no symlink is
    /// followed, but any owner is accepted, so everything read from it is untrusted.
    pub fn open_untrusted_dir(&self, name: &str) -> Result<Root, HelperError> {
        check_component(name)?;
        let shown = self.child_display(&[name]);
        let fd = openat2(
            self.fd.as_fd(),
            name,
            how(OFlag::O_DIRECTORY | OFlag::O_RDONLY),
        )
        .map_err(|e| explain_open_err(self.fd.as_fd(), name, e, &shown))?;
        Ok(Root { fd, display: shown })
    }

    /// Creates (if needed) and opens each component of `rel` as a root-owned directory.
    /// Returns the opened directory and whether the last component was newly created.
    pub fn mkdir_all(&self, rel: &[&str], mode: u32) -> Result<(Root, bool), HelperError> {
        let mut cur = self
            .fd
            .try_clone()
            .map_err(|e| HelperError::io("dup", &self.display, e))?;
        let mut created = false;
        for (i, c) in rel.iter().enumerate() {
            check_component(c)?;
            let shown = self.child_display(&rel[..=i]);
            created = match mkdirat(cur.as_fd(), *c, Mode::from_bits_truncate(mode)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(HelperError::errno("mkdirat", &shown, e)),
            };
            let next = openat2(cur.as_fd(), *c, how(OFlag::O_DIRECTORY | OFlag::O_RDONLY))
                .map_err(|e| explain_open_err(cur.as_fd(), c, e, &shown))?;
            require_root_dir(&next, &shown)?;
            if created {
                // mkdirat honours the umask; set the mode we meant.
                nix::sys::stat::fchmod(next.as_fd(), Mode::from_bits_truncate(mode))
                    .map_err(|e| HelperError::errno("fchmod", &shown, e))?;
            }
            cur = next;
        }
        Ok((
            Root {
                fd: cur,
                display: self.child_display(rel),
            },
            created,
        ))
    }

    /// Creates a new directory `name` directly beneath this root; refuses an existing one.
    pub fn mkdir_new(&self, name: &str, mode: u32, what: &str) -> Result<Root, HelperError> {
        check_component(name)?;
        match mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(mode)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                return Err(HelperError::AlreadyExists {
                    what: what.to_string(),
                })
            }
            Err(e) => {
                return Err(HelperError::errno(
                    "mkdirat",
                    self.child_display(&[name]),
                    e,
                ))
            }
        }
        let d = self.open_dir(&[name])?;
        nix::sys::stat::fchmod(d.fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| HelperError::errno("fchmod", d.display(), e))?;
        Ok(d)
    }

    /// Whether `name` exists directly beneath (without following it).
    pub fn exists(&self, name: &str) -> Result<bool, HelperError> {
        check_component(name)?;
        match fstatat(
            self.fd.as_fd(),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(HelperError::errno(
                "fstatat",
                self.child_display(&[name]),
                e,
            )),
        }
    }

    /// Names of the entries directly beneath, sorted.
    pub fn list(&self) -> Result<Vec<String>, HelperError> {
        let dup = self
            .fd
            .try_clone()
            .map_err(|e| HelperError::io("dup", &self.display, e))?;
        let fd = openat2(dup.as_fd(), ".", how(OFlag::O_DIRECTORY | OFlag::O_RDONLY))
            .map_err(|e| HelperError::errno("openat2", &self.display, e))?;
        let mut dir = nix::dir::Dir::from_fd(fd)
            .map_err(|e| HelperError::errno("fdopendir", &self.display, e))?;
        let mut out = Vec::new();
        for ent in dir.iter() {
            let ent = ent.map_err(|e| HelperError::errno("readdir", &self.display, e))?;
            let n = ent.file_name().to_string_lossy().into_owned();
            if n != "." && n != ".." {
                out.push(n);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes `name` and everything beneath it without following symlinks and without
    /// crossing into another filesystem (a mount inside is refused, not emptied).
    ///
    /// A directory that refills while it is removed (a dying writer that has not yet taken its
    /// SIGKILL) is retried a few times before the removal fails.
    pub fn remove_tree(&self, name: &str) -> Result<(), HelperError> {
        let mut tries = 0;
        loop {
            match self.remove_tree_once(name) {
                Err(HelperError::Io { errno: Some(e), .. })
                    if e == libc::ENOTEMPTY && tries < 10 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r => return r,
            }
        }
    }

    fn remove_tree_once(&self, name: &str) -> Result<(), HelperError> {
        check_component(name)?;
        let st = match fstatat(
            self.fd.as_fd(),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(HelperError::errno(
                    "fstatat",
                    self.child_display(&[name]),
                    e,
                ))
            }
        };
        if is_dir(&st) {
            let top = fstat(self.fd.as_fd())
                .map_err(|e| HelperError::errno("fstat", &self.display, e))?;
            let child = openat2(
                self.fd.as_fd(),
                name,
                how(OFlag::O_DIRECTORY | OFlag::O_RDONLY),
            )
            .map_err(|e| map_open_err(e, &self.child_display(&[name])))?;
            remove_contents(child, top.st_dev, &self.child_display(&[name]), 0)?;
            unlinkat(self.fd.as_fd(), name, UnlinkatFlags::RemoveDir)
                .map_err(|e| HelperError::errno("rmdir", self.child_display(&[name]), e))?;
        } else {
            unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| HelperError::errno("unlink", self.child_display(&[name]), e))?;
        }
        Ok(())
    }

    /// Bytes allocated beneath (st_blocks * 512), not following symlinks or crossing mounts.
    pub fn usage(&self) -> Result<u64, HelperError> {
        let st =
            fstat(self.fd.as_fd()).map_err(|e| HelperError::errno("fstat", &self.display, e))?;
        let dup = self
            .fd
            .try_clone()
            .map_err(|e| HelperError::io("dup", &self.display, e))?;
        usage_of(dup, st.st_dev, &self.display, 0).map(|b| b + st.st_blocks as u64 * 512)
    }
}

const MAX_DEPTH: usize = 4096;

fn remove_contents(dir: OwnedFd, dev: u64, shown: &str, depth: usize) -> Result<(), HelperError> {
    if depth > MAX_DEPTH {
        return Err(HelperError::invalid(
            "directory tree",
            format!("{shown} is nested deeper than {MAX_DEPTH}"),
        ));
    }
    let dup = dir
        .try_clone()
        .map_err(|e| HelperError::io("dup", shown, e))?;
    let mut d =
        nix::dir::Dir::from_fd(dup).map_err(|e| HelperError::errno("fdopendir", shown, e))?;
    let names: Vec<std::ffi::OsString> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| std::ffi::OsStr::from_bytes_ext(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        let st = match fstatat(
            dir.as_fd(),
            n.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                return Err(HelperError::errno(
                    "fstatat",
                    format!("{shown}/{}", n.to_string_lossy()),
                    e,
                ))
            }
        };
        let child_shown = format!("{shown}/{}", n.to_string_lossy());
        if is_dir(&st) {
            if st.st_dev != dev {
                return Err(HelperError::InUse {
                    what: child_shown,
                    by: "a mount (unmount it first)".into(),
                });
            }
            let c = openat2(
                dir.as_fd(),
                n.as_os_str(),
                how(OFlag::O_DIRECTORY | OFlag::O_RDONLY),
            )
            .map_err(|e| map_open_err(e, &child_shown))?;
            remove_contents(c, dev, &child_shown, depth + 1)?;
            unlinkat(dir.as_fd(), n.as_os_str(), UnlinkatFlags::RemoveDir)
                .map_err(|e| HelperError::errno("rmdir", &child_shown, e))?;
        } else {
            unlinkat(dir.as_fd(), n.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| HelperError::errno("unlink", &child_shown, e))?;
        }
    }
    Ok(())
}

fn usage_of(dir: OwnedFd, dev: u64, shown: &str, depth: usize) -> Result<u64, HelperError> {
    if depth > MAX_DEPTH {
        return Ok(0);
    }
    let dup = dir
        .try_clone()
        .map_err(|e| HelperError::io("dup", shown, e))?;
    let mut d =
        nix::dir::Dir::from_fd(dup).map_err(|e| HelperError::errno("fdopendir", shown, e))?;
    let names: Vec<std::ffi::OsString> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| std::ffi::OsStr::from_bytes_ext(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    let mut total = 0u64;
    for n in names {
        let Ok(st) = fstatat(
            dir.as_fd(),
            n.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) else {
            continue;
        };
        total = total.saturating_add(st.st_blocks as u64 * 512);
        if is_dir(&st) && st.st_dev == dev {
            if let Ok(c) = openat2(
                dir.as_fd(),
                n.as_os_str(),
                how(OFlag::O_DIRECTORY | OFlag::O_RDONLY),
            ) {
                total = total.saturating_add(usage_of(c, dev, shown, depth + 1)?);
            }
        }
    }
    Ok(total)
}

trait FromBytesExt {
    fn from_bytes_ext(b: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytesExt for std::ffi::OsStr {
    fn from_bytes_ext(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn check_component(c: &str) -> Result<(), HelperError> {
    if c.is_empty() || c == "." || c == ".." || c.contains('/') || c.contains('\0') || c.len() > 255
    {
        return Err(HelperError::invalid(
            "path component",
            format!("{c:?} is not a single plain name"),
        ));
    }
    Ok(())
}

/// Like [`map_open_err`], but tells a planted symlink apart from a plain non-directory
/// (O_NOFOLLOW|O_DIRECTORY on a symlink reports ENOTDIR).
fn explain_open_err(dir: BorrowedFd<'_>, name: &str, e: Errno, shown: &str) -> HelperError {
    if e == Errno::ENOTDIR {
        if let Ok(st) = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
                return map_open_err(Errno::ELOOP, shown);
            }
        }
    }
    map_open_err(e, shown)
}

fn map_open_err(e: Errno, shown: &str) -> HelperError {
    match e {
        Errno::ENOENT => HelperError::NotFound {
            what: shown.to_string(),
        },
        Errno::ELOOP | Errno::EXDEV => HelperError::invalid(
            "path",
            format!("{shown} is a symlink or leaves its root; refusing to follow it"),
        ),
        Errno::ENOTDIR => HelperError::invalid("path", format!("{shown} is not a directory")),
        e => HelperError::errno("openat2", shown, e),
    }
}

fn require_root_dir(fd: &OwnedFd, shown: &str) -> Result<(), HelperError> {
    let st = fstat(fd.as_fd()).map_err(|e| HelperError::errno("fstat", shown, e))?;
    if !is_dir(&st) {
        return Err(HelperError::invalid(
            "path",
            format!("{shown} is not a directory"),
        ));
    }
    if st.st_uid != 0 {
        return Err(HelperError::invalid(
            "path",
            format!(
                "{shown} is owned by uid {}, not root; refusing a directory silod could have planted",
                st.st_uid
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_and_climbing() {
        let t = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(outside.path(), t.path().join("link")).expect("symlink");
        let root = Root::open(t.path()).expect("open");
        let e = root.open_dir(&["link"]).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(root.open_dir(&[".."]).is_err());
        assert!(root.mkdir_all(&["link", "x"], 0o711).is_err());
        assert!(!outside.path().join("x").exists());
        // Removing the link removes the link, not what it points to.
        std::fs::write(outside.path().join("keep"), b"k").expect("write");
        root.remove_tree("link").expect("remove link");
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn mkdir_and_remove_tree() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root: directories must be root-owned");
        }
        let t = tempfile::tempdir().expect("tmp");
        let root = Root::open(t.path()).expect("open");
        let (d, created) = root.mkdir_all(&["a", "b"], 0o711).expect("mkdir");
        assert!(created);
        std::fs::write(t.path().join("a/b/f"), vec![1u8; 10000]).expect("write");
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("a/b/l")).expect("symlink");
        assert!(d.usage().expect("usage") >= 10000);
        root.remove_tree("a").expect("remove");
        assert!(!t.path().join("a").exists());
        assert!(std::path::Path::new("/etc/passwd").exists());
    }
}
