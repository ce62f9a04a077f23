//! What the host is: kernel, OS, btrfs support; gathered once at start for `GET /1.0`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::model::warning::{host_conditions, CgroupView, WarningType};

/// Facts gathered once at start (before landlock narrows what silod can read).
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// uname -r.
    pub kernel_version: String,
    /// uname -m.
    pub kernel_architecture: String,
    /// uname -n.
    pub hostname: String,
    /// os-release NAME.
    pub os_name: String,
    /// os-release VERSION_ID.
    pub os_version: String,
    /// btrfs-progs' version when this host can make btrfs pools (the kernel has btrfs and
    /// mkfs.btrfs is installed; "1" when the version could not be read), `None` otherwise.
    /// Gathered here because silod cannot look at /proc/filesystems' neighbours or /usr/sbin
    /// once landlocked.
    pub btrfs: Option<String>,
    /// Features this host lacks, as warnings to raise (see [`crate::service::warnings`]):
    /// read here because /sys, /proc/config.gz and /usr/sbin are out of silod's reach later.
    pub degraded: Vec<(WarningType, String)>,
    /// What this machine is, as LXD's resources say it (`systemd-detect-virt`, run before
    /// the drop): "container", "virtual-machine" or "physical"; "" when it could not tell.
    pub system_type: String,
}

impl HostFacts {
    /// Reads uname and os-release.
    pub fn gather() -> HostFacts {
        let u = nix::sys::utsname::uname().ok();
        let s = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            u.as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let osr = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        let field = |k: &str| {
            osr.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        HostFacts {
            kernel_version: s(|u| u.release()),
            kernel_architecture: s(|u| u.machine()),
            hostname: s(|u| u.nodename()),
            os_name: field("NAME"),
            os_version: field("VERSION_ID"),
            btrfs: btrfs_support(&s(|u| u.release())),
            degraded: host_conditions(
                &cgroup_view(),
                apparmor_enabled(),
                silo_proto::kernel::has("CONFIG_IPVLAN"),
                is_executable(Path::new(DNSMASQ)),
            ),
            system_type: system_type(),
        }
    }
}

/// Waits two seconds at most for a tool run at start-up (a wedged one must not hold silod
/// up): its exit status, or `None` after killing it.
fn wait_bounded(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// LXD's `systemGetType`: `systemd-detect-virt --container`, then `--vm`; "" when the tool
/// is missing or wedged.
fn system_type() -> String {
    let run = |arg: &str| {
        let mut child = std::process::Command::new("systemd-detect-virt")
            .arg(arg)
            .arg("--quiet")
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        wait_bounded(&mut child).map(|st| st.success())
    };
    match run("--container") {
        None => String::new(),
        Some(true) => "container".into(),
        Some(false) if run("--vm") == Some(true) => "virtual-machine".into(),
        Some(false) => "physical".into(),
    }
}

/// Where silo-net runs dnsmasq from.
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// The cgroup controllers mounted here, from /proc/self/mountinfo (silo-priv, spawned next
/// in the same mount namespace, sees the same).
fn cgroup_view() -> CgroupView {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut view = CgroupView::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let (Some(mount), mut r) = (left.split(' ').nth(4), right.split(' ')) else {
            continue;
        };
        match (r.next(), r.nth(1)) {
            (Some("cgroup2"), _) => {
                let list = std::fs::read_to_string(Path::new(mount).join("cgroup.controllers"))
                    .unwrap_or_default();
                view.v2 = Some(list.split_whitespace().map(str::to_string).collect());
            }
            (Some("cgroup"), Some(opts)) => {
                for o in opts.split(',') {
                    if o == "memory" {
                        view.v1_swap_accounting = Path::new(mount)
                            .join("memory.memsw.limit_in_bytes")
                            .exists();
                    }
                    view.v1.push(o.to_string());
                }
            }
            _ => {}
        }
    }
    view
}

/// Whether the kernel's AppArmor is enabled.
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim_start().starts_with('Y'))
}

/// Where mkfs.btrfs may be installed.
const MKFS_BTRFS: &[&str] = &[
    "/usr/sbin/mkfs.btrfs",
    "/sbin/mkfs.btrfs",
    "/usr/bin/mkfs.btrfs",
    "/bin/mkfs.btrfs",
];

/// btrfs-progs' version if btrfs pools can be made here (see [`HostFacts::btrfs`]).
fn btrfs_support(release: &str) -> Option<String> {
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let module_dir = format!("/lib/modules/{release}");
    let builtin =
        std::fs::read_to_string(format!("{module_dir}/modules.builtin")).unwrap_or_default();
    let module = ["", ".xz", ".zst", ".gz"]
        .iter()
        .any(|ext| Path::new(&format!("{module_dir}/kernel/fs/btrfs/btrfs.ko{ext}")).exists());
    if !(kernel_has_btrfs(&filesystems, &builtin) || module) {
        return None;
    }
    let mkfs = MKFS_BTRFS.iter().find(|p| is_executable(Path::new(p)))?;
    Some(mkfs_version(mkfs).unwrap_or_else(|| "1".to_string()))
}

/// Whether /proc/filesystems (or modules.builtin, for a kernel that has not needed it yet)
/// names btrfs.
fn kernel_has_btrfs(filesystems: &str, builtin: &str) -> bool {
    filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("btrfs"))
        || builtin
            .lines()
            .any(|l| l.trim_end() == "kernel/fs/btrfs/btrfs.ko")
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `mkfs.btrfs --version` (before the drop: silod cannot exec afterwards), giving it
/// two seconds: a wedged binary must not hold up start-up.
fn mkfs_version(mkfs: &str) -> Option<String> {
    use std::io::Read;
    let mut child = std::process::Command::new(mkfs)
        .arg("--version")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    wait_bounded(&mut child)?;
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    parse_progs_version(&out)
}

/// "mkfs.btrfs, part of btrfs-progs v6.2" gives "6.2".
fn parse_progs_version(out: &str) -> Option<String> {
    out.split_whitespace()
        .filter_map(|w| w.strip_prefix('v'))
        .find(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .map(|v| v.trim_end_matches(',').to_string())
}

/// This host's cluster member name for `location` fields ("none" when standalone, as LXD):
/// one silod per process, so a process-wide value. Set by `service::cluster` as membership
/// changes; read by events, operations and the API's renderers, which sit below it.
static LOCATION: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

/// What `location` fields say of this host's objects.
pub fn location() -> String {
    LOCATION
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| "none".into())
}

/// Sets (a member) or clears (standalone) this host's member name.
pub fn set_location(name: Option<String>) {
    *LOCATION.write().unwrap_or_else(|p| p.into_inner()) = name;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btrfs_in_the_kernel() {
        assert!(kernel_has_btrfs("nodev\tsysfs\n\tbtrfs\n\text4\n", ""));
        assert!(kernel_has_btrfs(
            "nodev\tsysfs\n",
            "kernel/fs/btrfs/btrfs.ko\n"
        ));
        assert!(!kernel_has_btrfs(
            "nodev\tsysfs\n\text4\n",
            "kernel/fs/ext4/ext4.ko\n"
        ));
        assert!(!kernel_has_btrfs("\tnotbtrfs\n", ""));
    }

    #[test]
    fn progs_version() {
        assert_eq!(
            parse_progs_version("mkfs.btrfs, part of btrfs-progs v6.2\n").as_deref(),
            Some("6.2")
        );
        assert_eq!(
            parse_progs_version("mkfs.btrfs, part of btrfs-progs v5.16.2\n").as_deref(),
            Some("5.16.2")
        );
        assert_eq!(parse_progs_version("mkfs.btrfs version unknown"), None);
    }
}
