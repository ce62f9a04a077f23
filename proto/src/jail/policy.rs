//! The root-owned policy file: what may touch the host.
//!
//! Only helpers read it (silod cannot: landlock keeps it out of reach, and it is root's).
//! A missing file means the built-in default, which allows nothing host-touching. A file that
//! silod's user could have written is refused outright.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::HelperError;
use crate::names::IfName;

/// Where the policy lives unless root says otherwise on silod's command line.
pub const DEFAULT_PATH: &str = "/etc/silo/policy.toml";

/// The policy. Every field defaults to the safe choice.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Allow `security.privileged=true` instances (container root = host root).
    pub allow_privileged: bool,
    /// Host paths that disk devices may bind from and btrfs pools may use as their source
    /// (each allows everything beneath it).
    pub host_paths: Vec<PathBuf>,
    /// Block devices (device nodes, named exactly) that btrfs pools may format and use as
    /// their source. Formatting destroys what is on them: list only spare disks.
    pub block_devices: Vec<PathBuf>,
    /// Host device nodes that `unix-char`, `unix-block`, `usb` and `gpu` devices may give
    /// instances: each entry allows that node, or every node beneath it when it names a
    /// directory (e.g. `/dev/dri`). Named as device nodes, never through a symlink.
    #[serde(default)]
    pub host_devices: Vec<PathBuf>,
    /// Host interfaces that macvlan/physical nics may use as parents.
    pub host_interfaces: Vec<IfName>,
    /// Largest loop file a pool may create, in bytes.
    pub max_loop_file_size: u64,
    /// Let proxy devices listen on host ports below 1024.
    pub allow_privileged_ports: bool,
    /// Ports below 1024 silod may serve its HTTPS API on (`core.https_address`): silo-net
    /// binds them and hands silod the listening socket, e.g. `[443]`.
    #[serde(default)]
    pub https_privileged_ports: Vec<u16>,
    /// Most bytes of file data one image may unpack to.
    pub max_image_size: u64,
    /// Most members one image may have.
    pub max_image_entries: u64,
    /// Most processes (tasks) one instance may have: its `pids.max` when `limits.processes`
    /// is unset, and the most `limits.processes` may ask for. 0: no ceiling.
    pub max_processes: u64,
    /// Bytes a dir pool leaves free on its host filesystem: image unpacking, copies, backup
    /// imports and file uploads into a dir pool fail rather than cross it; loop files must
    /// fit in the free space above it.
    #[serde(default = "default_dir_pool_reserve")]
    pub dir_pool_reserve: u64,
    /// Address ranges managed networks may use besides the private ones (RFC 1918, RFC 6598
    /// shared space, IPv6 ULA), e.g. `["198.18.0.0/15"]`.
    #[serde(default)]
    pub network_ranges: Vec<crate::types::IpRange>,
    /// Name prefixes managed bridges may take besides `silo`, e.g. `["lxdbr"]`.
    #[serde(default)]
    pub network_name_prefixes: Vec<String>,
    /// Host addresses proxy devices with `bind=instance` may connect to, exactly as a proxy
    /// names them (`tcp:127.0.0.1:8080`, `udp:127.0.0.1:53`, a port range covers its ports).
    #[serde(default)]
    pub proxy_host_connect: Vec<crate::proxy::ProxyAddr>,
    /// Host ids `raw.idmap` may map into instances, as `"1000"` or inclusive ranges
    /// `"1000-1999"` (uids and gids alike). Empty: `raw.idmap` is refused. Never host root,
    /// and never ids of a subordinate range in /etc/subuid or /etc/subgid (instances' and
    /// other owners'), whatever this says.
    #[serde(default)]
    pub raw_idmap_host_ids: Vec<HostIdSpan>,
    /// Where this came from (not read from the file).
    #[serde(skip)]
    pub source: String,
}

/// An inclusive range of host ids named by the policy (`"1000"`, `"1000-1999"`), 1 to
/// 4294967294.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostIdSpan {
    /// First id.
    pub first: u64,
    /// Last id (inclusive).
    pub last: u64,
}

impl HostIdSpan {
    /// Whether `first..first+count` lies inside.
    pub fn covers(&self, first: u64, count: u64) -> bool {
        self.first <= first && first.saturating_add(count).saturating_sub(1) <= self.last
    }
}

impl TryFrom<String> for HostIdSpan {
    type Error = String;
    fn try_from(s: String) -> Result<HostIdSpan, String> {
        let (a, b) = s.split_once('-').unwrap_or((&s, &s));
        let bad = || format!("{s:?} is not a host id or a range like \"1000-1999\"");
        let first: u64 = a.trim().parse().map_err(|_| bad())?;
        let last: u64 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first || last >= u64::from(u32::MAX) {
            return Err(format!(
                "{s:?}: ids must run upwards from 1 to 4294967294 (host root is never mapped)"
            ));
        }
        Ok(HostIdSpan { first, last })
    }
}

impl std::fmt::Display for HostIdSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_privileged: false,
            host_paths: Vec::new(),
            host_devices: Vec::new(),
            block_devices: Vec::new(),
            host_interfaces: Vec::new(),
            max_loop_file_size: 1 << 40,
            allow_privileged_ports: false,
            https_privileged_ports: Vec::new(),
            max_image_size: 64 << 30,
            max_image_entries: 5_000_000,
            max_processes: 20_000,
            dir_pool_reserve: default_dir_pool_reserve(),
            network_ranges: Vec::new(),
            network_name_prefixes: Vec::new(),
            proxy_host_connect: Vec::new(),
            raw_idmap_host_ids: Vec::new(),
            source: "built-in default".to_string(),
        }
    }
}

/// 1 GiB: room for the host's logs and package updates.
fn default_dir_pool_reserve() -> u64 {
    1 << 30
}

impl Policy {
    /// Loads the policy at `path`; a missing file gives the default.
    pub fn load(path: &Path) -> Result<Policy, HelperError> {
        let shown = path.display().to_string();
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_nofollow()
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Policy {
                    source: format!("built-in default (no file at {shown})"),
                    ..Policy::default()
                });
            }
            Err(e) => return Err(HelperError::io("open policy", &shown, e)),
        };
        let md = file
            .metadata()
            .map_err(|e| HelperError::io("stat policy", &shown, e))?;
        if !md.is_file() {
            return Err(HelperError::invalid(
                "policy file",
                format!("{shown} is not a regular file"),
            ));
        }
        if md.uid() != 0 {
            return Err(HelperError::invalid(
                "policy file",
                format!(
                    "{shown} is owned by uid {}, must be owned by root",
                    md.uid()
                ),
            ));
        }
        if md.mode() & 0o022 != 0 {
            return Err(HelperError::invalid(
                "policy file",
                format!(
                    "{shown} is writable by group or others (mode {:o})",
                    md.mode() & 0o7777
                ),
            ));
        }
        if md.len() > 1 << 20 {
            return Err(HelperError::invalid(
                "policy file",
                format!("{shown} is larger than 1 MiB"),
            ));
        }
        let mut text = String::new();
        (&file)
            .take(1 << 20)
            .read_to_string(&mut text)
            .map_err(|e| HelperError::io("read policy", &shown, e))?;
        let mut p: Policy = toml::from_str(&text)
            .map_err(|e| HelperError::invalid("policy file", format!("{shown}: {e}")))?;
        for hp in &p.host_paths {
            if !hp.is_absolute() {
                return Err(HelperError::invalid(
                    "policy file",
                    format!("{shown}: host_paths entry {} is not absolute", hp.display()),
                ));
            }
        }
        for bd in &p.block_devices {
            if !bd.is_absolute() || !bd.starts_with("/dev") {
                return Err(HelperError::invalid(
                    "policy file",
                    format!(
                        "{shown}: block_devices entry {} is not a device node beneath /dev",
                        bd.display()
                    ),
                ));
            }
        }
        for np in &p.network_name_prefixes {
            let ok = !np.is_empty()
                && np.len() < 15
                && np
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(HelperError::invalid(
                    "policy file",
                    format!(
                        "{shown}: network_name_prefixes entry {np:?} is not 1 to 14 letters, \
                         digits, '-' or '_'"
                    ),
                ));
            }
        }
        if let Some(u) = p
            .proxy_host_connect
            .iter()
            .find(|a| matches!(a, crate::proxy::ProxyAddr::Unix { .. }))
        {
            return Err(HelperError::invalid(
                "policy file",
                format!(
                    "{shown}: proxy_host_connect entry {u} is a unix socket; unix sockets on \
                     the host are allowed by host_paths"
                ),
            ));
        }
        p.source = shown;
        Ok(p)
    }

    /// An error naming the key that would allow `what`.
    pub fn deny(&self, what: impl Into<String>) -> HelperError {
        HelperError::Denied {
            policy: self.source.clone(),
            what: what.into(),
        }
    }
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NOFOLLOW | libc::O_CLOEXEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn missing_file_is_safe_default() {
        let p = Policy::load(Path::new("/nonexistent/silo/policy.toml")).expect("default");
        assert!(!p.allow_privileged);
        assert!(p.host_paths.is_empty());
        assert!(p.source.contains("built-in default"));
    }

    #[test]
    fn refuses_writable_and_unknown_keys() {
        let t = tempfile::tempdir().expect("tmp");
        let f = t.path().join("policy.toml");
        std::fs::write(&f, "allow_privileged = true\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let e = Policy::load(&f).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        if nix::unistd::geteuid().is_root() {
            assert!(Policy::load(&f).expect("load").allow_privileged);
            std::fs::write(&f, "allow_everything = true\n").expect("write");
            let e = Policy::load(&f).unwrap_err().to_string();
            assert!(e.contains("unknown field"), "{e}");
            std::fs::write(&f, "block_devices = [\"/dev/loop7\"]\n").expect("write");
            assert_eq!(
                Policy::load(&f).expect("load").block_devices,
                [PathBuf::from("/dev/loop7")]
            );
            std::fs::write(
                &f,
                "network_ranges = [\"198.18.0.0/15\"]\nnetwork_name_prefixes = [\"lxdbr\"]\n\
                 proxy_host_connect = [\"tcp:127.0.0.1:8080\"]\n",
            )
            .expect("write");
            let p = Policy::load(&f).expect("load");
            assert_eq!(p.network_ranges.len(), 1);
            assert_eq!(p.network_name_prefixes, ["lxdbr"]);
            assert_eq!(p.proxy_host_connect.len(), 1);
            std::fs::write(&f, "raw_idmap_host_ids = [\"1000\", \"2000-2999\"]\n").expect("write");
            let p = Policy::load(&f).expect("load");
            assert_eq!(
                p.raw_idmap_host_ids,
                [
                    HostIdSpan {
                        first: 1000,
                        last: 1000
                    },
                    HostIdSpan {
                        first: 2000,
                        last: 2999
                    }
                ]
            );
            assert!(p.raw_idmap_host_ids[1].covers(2990, 10));
            assert!(!p.raw_idmap_host_ids[1].covers(2990, 11));
            for bad in [
                "raw_idmap_host_ids = [\"0-100\"]\n",
                "raw_idmap_host_ids = [\"200-100\"]\n",
                "raw_idmap_host_ids = [\"x\"]\n",
                "raw_idmap_host_ids = [\"4294967295\"]\n",
                "network_ranges = [\"198.18.0.1/15\"]\n",
                "network_name_prefixes = [\"\"]\n",
                "proxy_host_connect = [\"unix:/run/x.sock\"]\n",
            ] {
                std::fs::write(&f, bad).expect("write");
                assert!(Policy::load(&f).is_err(), "{bad}");
            }
            std::fs::write(&f, "block_devices = [\"/home/x.img\"]\n").expect("write");
            let e = Policy::load(&f).unwrap_err().to_string();
            assert!(e.contains("not a device node beneath /dev"), "{e}");
        }
        let l = t.path().join("link.toml");
        std::os::unix::fs::symlink(&f, &l).expect("symlink");
        assert!(Policy::load(&l).is_err(), "a symlinked policy is refused");
    }
}
