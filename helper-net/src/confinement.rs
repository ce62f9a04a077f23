//! silo-net's confinement, declared in one place (reviewed with seccomp.json and
//! CONFINEMENT.md beside this crate).

use caps::Capability;
use silo_proto::jail::landlock_rules::FsRules;
use silo_proto::jail::{existing, Jail, LandlockSpec, SeccompMode};

pub(crate) static SECCOMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));
static SECCOMP_LOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_log.bpf"));

/// Capabilities silo-net keeps.
pub const CAPS: &[Capability] = &[
    // Creating and changing links, addresses, routes and nftables over netlink.
    Capability::CAP_NET_ADMIN,
];

pub fn jail(seccomp_mode: SeccompMode) -> Jail {
    Jail {
        name: "silo-net",
        keep_caps: CAPS.to_vec(),
        // silo-net never mounts, so it takes landlock's filesystem rules too: it may read
        // /proc and /sys (interface and namespace state) and nothing else.
        landlock: LandlockSpec {
            fs: Some(FsRules {
                read: existing(&["/proc", "/sys"]),
                write: Vec::new(),
            }),
            scope_signal: true,
        },
        seccomp: SECCOMP,
        seccomp_log: SECCOMP_LOG,
        seccomp_mode,
    }
}
