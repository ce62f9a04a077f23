//! Host devices (`unix-char`, `unix-block`, `usb`, `gpu`): which host nodes a device stands
//! for, found by silo-priv on the host (never a path silod chose but the policy checks), and
//! allowed only when a policy `host_devices` entry names the node or a directory above it.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::policy::Policy;
use silo_proto::privileged::{HostDevice, HostNodes, NodeKind};
use silo_proto::types::HostPath;

/// One host node a device gives an instance.
#[derive(Debug)]
pub struct Node {
    /// Where it is on the host.
    pub host: HostPath,
    pub kind: NodeKind,
    pub major: u32,
    pub minor: u32,
    /// Where inside the instance, relative to its root.
    pub inside: String,
}

fn not_found(dev: &HostDevice, what: String) -> HelperError {
    HelperError::NotFound {
        what: format!("{what} (device {:?})", dev.device.as_str()),
    }
}

/// The policy's word on one node.
fn allowed(policy: &Policy, dev: &HostDevice, p: &HostPath) -> HelperResult<()> {
    if policy.host_devices.iter().any(|b| p.is_within(b)) {
        Ok(())
    } else {
        Err(policy.deny(format!(
            "device {:?}: host device node {p} is not named by any host_devices entry",
            dev.device.as_str()
        )))
    }
}

/// Opens a host node from `/` with no symlink anywhere and checks its type; answers its
/// numbers.
fn stat_node(dev: &HostDevice, p: &HostPath, kind: NodeKind) -> HelperResult<(u32, u32)> {
    let fd: OwnedFd = crate::disks::open_host(p).map_err(|e| match e {
        Errno::ENOENT => not_found(dev, format!("host device node {p}")),
        Errno::ELOOP | Errno::EXDEV => HelperError::invalid(
            "source",
            format!("{p} goes through a symlink; name the device node itself"),
        ),
        e => HelperError::errno("openat2", p, e),
    })?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| HelperError::errno("fstat", p, e))?;
    let want = match kind {
        NodeKind::Char => libc::S_IFCHR,
        NodeKind::Block => libc::S_IFBLK,
    };
    if st.st_mode & libc::S_IFMT != want {
        return Err(HelperError::invalid(
            "source",
            format!(
                "device {:?}: {p} is not a {} device node",
                dev.device.as_str(),
                match kind {
                    NodeKind::Char => "character",
                    NodeKind::Block => "block",
                }
            ),
        ));
    }
    Ok((libc::major(st.st_rdev), libc::minor(st.st_rdev)))
}

fn read_sys(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn host_path(s: String) -> HelperResult<HostPath> {
    HostPath::new(s).map_err(|e| HelperError::invalid("device", e.to_string()))
}

fn node(
    dev: &HostDevice,
    policy: &Policy,
    p: HostPath,
    kind: NodeKind,
    inside: Option<String>,
) -> HelperResult<Node> {
    allowed(policy, dev, &p)?;
    let (major, minor) = stat_node(dev, &p, kind)?;
    Ok(Node {
        inside: inside.unwrap_or_else(|| p.as_str().trim_start_matches('/').to_string()),
        host: p,
        kind,
        major,
        minor,
    })
}

/// The nodes a device stands for now. `NotFound` when none is present.
pub fn resolve(policy: &Policy, dev: &HostDevice) -> HelperResult<Vec<Node>> {
    dev.validate()?;
    match &dev.nodes {
        HostNodes::Unix {
            kind,
            source,
            numbers,
            path,
        } => {
            let inside = path.as_ref().map(|p| p.as_str().to_string());
            let p = match (source, numbers) {
                (Some(s), _) => s.clone(),
                (None, Some((ma, mi))) => {
                    let class = match kind {
                        NodeKind::Char => "char",
                        NodeKind::Block => "block",
                    };
                    let uevent = read_sys(&format!("/sys/dev/{class}/{ma}:{mi}/uevent"))
                        .ok_or_else(|| not_found(dev, format!("{class} device {ma}:{mi}")))?;
                    let name = uevent
                        .lines()
                        .find_map(|l| l.strip_prefix("DEVNAME="))
                        .ok_or_else(|| {
                            not_found(dev, format!("a /dev node for {class} device {ma}:{mi}"))
                        })?;
                    host_path(format!("/dev/{name}"))?
                }
                (None, None) => {
                    return Err(HelperError::invalid("device", "no source and no numbers"))
                }
            };
            let n = node(dev, policy, p, *kind, inside)?;
            if let Some((ma, mi)) = numbers {
                if (n.major, n.minor) != (*ma, *mi) {
                    return Err(HelperError::invalid(
                        "device",
                        format!(
                            "device {:?}: {} is {}:{}, not {ma}:{mi}",
                            dev.device.as_str(),
                            n.host,
                            n.major,
                            n.minor
                        ),
                    ));
                }
            }
            Ok(vec![n])
        }
        HostNodes::Usb { vendor, product } => {
            let mut out = Vec::new();
            let entries = std::fs::read_dir("/sys/bus/usb/devices")
                .map(|d| d.filter_map(|e| e.ok()).collect::<Vec<_>>())
                .unwrap_or_default();
            for e in entries {
                let base = e.path().display().to_string();
                let (Some(v), Some(p)) = (
                    read_sys(&format!("{base}/idVendor")),
                    read_sys(&format!("{base}/idProduct")),
                ) else {
                    continue;
                };
                let matches = |want: &Option<String>, got: &str| {
                    want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(got))
                };
                if !matches(vendor, &v) || !matches(product, &p) {
                    continue;
                }
                let (Some(bus), Some(devnum)) = (
                    read_sys(&format!("{base}/busnum")).and_then(|b| b.parse::<u32>().ok()),
                    read_sys(&format!("{base}/devnum")).and_then(|b| b.parse::<u32>().ok()),
                ) else {
                    continue;
                };
                let p = host_path(format!("/dev/bus/usb/{bus:03}/{devnum:03}"))?;
                out.push(node(dev, policy, p, NodeKind::Char, None)?);
            }
            if out.is_empty() {
                return Err(not_found(
                    dev,
                    format!(
                        "a USB device {}:{} on this host",
                        vendor.as_deref().unwrap_or("*"),
                        product.as_deref().unwrap_or("*")
                    ),
                ));
            }
            Ok(out)
        }
        HostNodes::Gpu {
            vendor,
            product,
            id,
            pci,
        } => {
            let mut out = Vec::new();
            let mut entries: Vec<String> = std::fs::read_dir("/sys/class/drm")
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            entries.sort();
            for name in entries {
                let is_card =
                    name.starts_with("card") && name[4..].chars().all(|c| c.is_ascii_digit());
                let is_render =
                    name.starts_with("renderD") && name[7..].chars().all(|c| c.is_ascii_digit());
                if !(is_card || is_render) {
                    continue;
                }
                let devdir = format!("/sys/class/drm/{name}/device");
                let strip =
                    |s: Option<String>| s.map(|v| v.trim_start_matches("0x").to_lowercase());
                let v = strip(read_sys(&format!("{devdir}/vendor")));
                let p = strip(read_sys(&format!("{devdir}/device")));
                let addr = std::fs::canonicalize(&devdir)
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                // A render node belongs to the card that shares its device directory.
                let card = std::fs::read_dir(format!("{devdir}/drm"))
                    .ok()
                    .and_then(|d| {
                        d.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .find_map(|n| {
                                n.strip_prefix("card").and_then(|x| x.parse::<u32>().ok())
                            })
                    });
                let ok = |want: &Option<String>, got: &Option<String>| {
                    want.as_ref()
                        .is_none_or(|w| got.as_ref().is_some_and(|g| g.eq_ignore_ascii_case(w)))
                };
                if !ok(vendor, &v)
                    || !ok(product, &p)
                    || !ok(pci, &addr)
                    || id.is_some_and(|i| card != Some(i))
                {
                    continue;
                }
                let hp = host_path(format!("/dev/dri/{name}"))?;
                out.push(node(dev, policy, hp, NodeKind::Char, None)?);
            }
            if out.is_empty() {
                return Err(not_found(
                    dev,
                    "a GPU matching it on this host (no DRM node)".into(),
                ));
            }
            // NVIDIA's control nodes, where the proprietary driver made them.
            for extra in [
                "nvidiactl",
                "nvidia-uvm",
                "nvidia-uvm-tools",
                "nvidia-modeset",
            ] {
                let p = host_path(format!("/dev/{extra}"))?;
                if std::path::Path::new(p.as_str()).exists() {
                    out.push(node(dev, policy, p, NodeKind::Char, None)?);
                }
            }
            Ok(out)
        }
    }
}
