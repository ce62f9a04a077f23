//! The formatter: the one place silo-store runs another program.
//!
//! silo-store's seccomp filter forbids execve, and mkfs.btrfs is not something to rewrite. So
//! before silo-store confines itself it forks this small runner, which confines itself
//! differently: no capabilities at all (bounding set too), no_new_privs, and landlock that
//! lets it execute and read only the system directories and write only beneath the pool
//! disks directory and to the block devices the root policy lists. It takes one kind of
//! request over a SEQPACKET socket — "format this loop file, or this listed device, as
//! btrfs" — with the file named by a plain `<pool>.img` name it checks itself, and answers
//! with the outcome. It exits when silo-store's end closes.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};
use silo_proto::error::{HelperError, HelperResult};

/// Where mkfs.btrfs is looked for.
const MKFS_BTRFS: &str = "/usr/sbin/mkfs.btrfs";

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// A `<pool>.img` beneath the disks directory; empty when `device` is given.
    file: String,
    /// A block device the policy lists, formatted in place of a loop file.
    device: Option<PathBuf>,
    label: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    ok: bool,
    /// The request itself cannot be done (a device that holds a filesystem), as opposed to
    /// mkfs failing.
    #[serde(default)]
    refused: bool,
    message: String,
}

/// silo-store's handle on the runner.
#[derive(Debug)]
pub struct Formatter {
    sock: OwnedFd,
}

fn valid_file(f: &str) -> bool {
    f.ends_with(".img")
        && f.len() <= 80
        && !f.starts_with('.')
        && f.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn confine(disks: &Path, devices: &[PathBuf]) -> Result<(), String> {
    for cap in caps::runtime::thread_all_supported() {
        caps::drop(None, caps::CapSet::Bounding, cap).map_err(|e| e.to_string())?;
    }
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
        caps::CapSet::Ambient,
    ] {
        caps::clear(None, set).map_err(|e| e.to_string())?;
    }
    let abi = ABI::V6;
    // mkfs.btrfs reads /proc/self/mounts and /sys to check its target is not in use.
    let system: Vec<PathBuf> = [
        "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .collect();
    let st = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| e.to_string())?
        .handle_access(AccessNet::from_all(abi))
        .map_err(|e| e.to_string())?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(|e| e.to_string())?
        .create()
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(&system, AccessFs::from_read(abi)))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            [disks, Path::new("/dev/null")],
            AccessFs::from_all(abi),
        ))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            ["/dev/urandom"],
            AccessFs::from_read(abi),
        ))
        .map_err(|e| e.to_string())?
        // Read, write and the device ioctls mkfs.btrfs issues (size, discard), on exactly the
        // listed device nodes; nothing else beneath /dev.
        .add_rules(path_beneath_rules(devices, AccessFs::from_file(abi)))
        .map_err(|e| e.to_string())?
        .restrict_self()
        .map_err(|e| e.to_string())?;
    if st.ruleset != RulesetStatus::FullyEnforced {
        return Err("landlock not fully enforced".into());
    }
    Ok(())
}

/// The mkfs.btrfs command for one request, or why the request is refused. A listed device
/// is never formatted with `-f`: one that already holds a filesystem is left alone.
fn command(
    r: &Request,
    disks: &Path,
    devices: &[PathBuf],
) -> Result<std::process::Command, String> {
    if !r
        .label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        || r.label.len() > 64
    {
        return Err(format!("refusing label {:?}", r.label));
    }
    let mut c = std::process::Command::new(MKFS_BTRFS);
    match &r.device {
        Some(dev) => {
            if !r.file.is_empty() {
                return Err("a request names a file or a device, not both".into());
            }
            if !devices.contains(dev) {
                return Err(format!(
                    "{} is not a block device this formatter may write (the policy's block_devices that existed when silo-store started)",
                    dev.display()
                ));
            }
            c.args(["-q", "-L", &r.label]).arg(dev);
        }
        None => {
            if !valid_file(&r.file) {
                return Err(format!("refusing file name {:?}", r.file));
            }
            c.args(["-q", "-f", "-L", &r.label])
                .arg(disks.join(&r.file));
        }
    }
    Ok(c)
}

fn serve(sock: OwnedFd, disks: &Path, devices: &[PathBuf]) -> ! {
    let mut f = std::fs::File::from(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(n) => n,
        };
        let answer = match serde_json::from_slice::<Request>(&buf[..n])
            .map_err(|e| format!("malformed request: {e}"))
            .and_then(|r| command(&r, disks, devices).map(|c| (r, c)))
        {
            Err(message) => Answer {
                ok: false,
                refused: true,
                message,
            },
            Ok((r, mut cmd)) => {
                let out = cmd
                    .env_clear()
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                    .stdin(std::process::Stdio::null())
                    .output();
                match out {
                    Ok(o) if o.status.success() => Answer {
                        ok: true,
                        refused: false,
                        message: String::new(),
                    },
                    Ok(o) => {
                        let err = String::from_utf8_lossy(&o.stderr).into_owned();
                        let first = err.lines().next().unwrap_or("").trim().to_string();
                        let occupied = r.device.is_some() && err.contains("appears to contain");
                        Answer {
                            ok: false,
                            refused: occupied,
                            message: match &r.device {
                                Some(dev) if err.contains("appears to contain") => format!(
                                    "{} already holds a filesystem or partition table ({first}); silo formats only empty devices: wipe it first (wipefs -a {}) if nothing on it is needed",
                                    dev.display(),
                                    dev.display()
                                ),
                                _ => format!("mkfs.btrfs failed ({}): {}", o.status, err.trim()),
                            },
                        }
                    }
                    Err(e) => Answer {
                        ok: false,
                        refused: false,
                        message: format!("running {MKFS_BTRFS}: {e}"),
                    },
                }
            }
        };
        let bytes = serde_json::to_vec(&answer).unwrap_or_default();
        if std::io::Write::write_all(&mut f, &bytes).is_err() {
            std::process::exit(0);
        }
    }
}

impl Formatter {
    /// Forks the runner. Runs in silo-store's start-up, before its own jail, with no threads.
    pub fn spawn(disks: &Path, block_devices: &[PathBuf]) -> HelperResult<Formatter> {
        // Landlock needs the nodes to exist when the rules are made: a device the policy
        // lists that appears later needs a restart of silod (and so of this runner).
        let devices: Vec<PathBuf> = block_devices
            .iter()
            .filter(|d| {
                std::fs::symlink_metadata(d)
                    .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
                    .unwrap_or(false)
            })
            .cloned()
            .collect();
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| HelperError::errno("socketpair", "formatter", e))?;
        // SAFETY: silo-store is single-threaded at start-up; the child only confines itself
        // and serves requests, leaving through process::exit.
        match unsafe { nix::unistd::fork() } {
            Err(e) => Err(HelperError::errno("fork", "formatter", e)),
            Ok(nix::unistd::ForkResult::Child) => {
                drop(ours);
                // Nothing else of silo-store's crosses into the runner.
                // SAFETY: close_range on fds above the standard three and our socket.
                let keep = theirs.as_raw_fd();
                for fd in 3..1024 {
                    if fd != keep {
                        // SAFETY: closing an fd number this child may or may not have open.
                        unsafe { libc::close(fd) };
                    }
                }
                if let Err(e) = confine(disks, &devices) {
                    eprintln!("silo-store formatter: cannot confine itself: {e}");
                    std::process::exit(2);
                }
                serve(theirs, disks, &devices)
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => {
                drop(theirs);
                Ok(Formatter { sock: ours })
            }
        }
    }

    /// Formats `<disks>/<file>` as btrfs. Blocks silo-store for the time mkfs takes (about a
    /// second); pools are not created often.
    pub fn mkfs_btrfs(&self, file: &str, label: &str) -> HelperResult<()> {
        self.ask(
            Request {
                file: file.into(),
                device: None,
                label: label.into(),
            },
            file,
        )
    }

    /// Formats a block device the policy lists as btrfs; refuses one that holds a filesystem.
    pub fn mkfs_btrfs_device(&self, device: &Path, label: &str) -> HelperResult<()> {
        self.ask(
            Request {
                file: String::new(),
                device: Some(device.to_path_buf()),
                label: label.into(),
            },
            &device.display().to_string(),
        )
    }

    fn ask(&self, r: Request, file: &str) -> HelperResult<()> {
        let what = if r.device.is_some() {
            "source"
        } else {
            "formatter request"
        };
        let req =
            serde_json::to_vec(&r).map_err(|e| HelperError::invalid("request", e.to_string()))?;
        nix::unistd::write(&self.sock, &req)
            .map_err(|e| HelperError::errno("write", "formatter", e))?;
        let mut buf = vec![0u8; 8192];
        let n = nix::unistd::read(&self.sock, &mut buf)
            .map_err(|e| HelperError::errno("read", "formatter", e))?;
        if n == 0 {
            return Err(HelperError::Unsupported(
                "the formatter is gone (see silo-store's log)".into(),
            ));
        }
        let a: Answer = serde_json::from_slice(&buf[..n])
            .map_err(|e| HelperError::invalid("formatter answer", e.to_string()))?;
        if a.ok {
            Ok(())
        } else if a.refused {
            Err(HelperError::invalid(what, a.message))
        } else {
            Err(HelperError::Io {
                op: "mkfs.btrfs".into(),
                target: file.into(),
                message: a.message,
                errno: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(file: &str, device: Option<&str>, label: &str) -> Request {
        Request {
            file: file.into(),
            device: device.map(PathBuf::from),
            label: label.into(),
        }
    }

    fn args(c: &std::process::Command) -> Vec<String> {
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_confined_formatter_writes_only_its_disks_and_listed_devices() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test confines a forked child as the formatter does and needs root"
        );
        let t = tempfile::tempdir().expect("tmp");
        let disks = t.path().join("disks");
        std::fs::create_dir(&disks).expect("disks");
        // Landlock's rules are by path, so plain files stand in for device nodes here.
        let listed = t.path().join("listed-dev");
        let unlisted = t.path().join("unlisted-dev");
        for f in [&listed, &unlisted] {
            std::fs::write(f, b"").expect("file");
        }
        // SAFETY: the child only confines itself, opens three files and leaves with _exit.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = match confine(&disks, std::slice::from_ref(&listed)) {
                    Err(_) => 10,
                    Ok(()) => {
                        let w = |p: &Path| {
                            std::fs::OpenOptions::new()
                                .write(true)
                                .create(true)
                                .truncate(false)
                                .open(p)
                                .map(|_| ())
                                .map_err(|e| e.raw_os_error())
                        };
                        match (w(&disks.join("p.img")), w(&listed), w(&unlisted)) {
                            (Ok(()), Ok(()), Err(Some(libc::EACCES))) => 0,
                            (Err(_), _, _) => 11,
                            (_, Err(_), _) => 12,
                            _ => 13,
                        }
                    }
                };
                // SAFETY: leaving the forked child without running the harness's exit path.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(
                    st,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "10: confine failed, 11: its disks dir refused, 12: the listed device refused, 13: the unlisted one allowed"
                );
            }
        }
    }

    #[test]
    fn only_own_loop_files_are_forced_and_only_listed_devices_are_formatted() {
        let disks = Path::new("/s/disks");
        let listed = [PathBuf::from("/dev/loop7")];
        let c = command(&req("p.img", None, "silo-p"), disks, &listed).expect("loop file");
        assert_eq!(args(&c), ["-q", "-f", "-L", "silo-p", "/s/disks/p.img"]);
        let c = command(&req("", Some("/dev/loop7"), "silo-p"), disks, &listed).expect("device");
        assert_eq!(
            args(&c),
            ["-q", "-L", "silo-p", "/dev/loop7"],
            "never -f on a device"
        );
        for (r, why) in [
            (
                req("", Some("/dev/sda"), "silo-p"),
                "not a block device this formatter may write",
            ),
            (req("p.img", Some("/dev/loop7"), "silo-p"), "not both"),
            (req("../x.img", None, "silo-p"), "refusing file name"),
            (req("p.img", None, "a b"), "refusing label"),
        ] {
            let e = command(&r, disks, &listed).expect_err("refused");
            assert!(e.contains(why), "{r:?}: {e}");
        }
    }
}
