//! silo-net's confinement, declared in one place (reviewed with seccomp.json and
//! CONFINEMENT.md beside this crate).

use caps::Capability;
use silo_proto::jail::boot::Boot;
use silo_proto::jail::landlock_rules::FsRules;
use silo_proto::jail::{existing, Jail, LandlockSpec};

pub(crate) static SECCOMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));
static SECCOMP_LOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_log.bpf"));

/// Capabilities silo-net keeps.
pub const CAPS: &[Capability] = &[
    // Creating and changing links, addresses, routes and nftables over netlink.
    Capability::CAP_NET_ADMIN,
];

pub fn jail(b: &Boot) -> Jail {
    let state = |sub: &str| b.state_dir.join(sub);
    Jail {
        name: "silo-net",
        keep_caps: CAPS.to_vec(),
        // silo-net never mounts, so it takes landlock's filesystem rules too: it may read
        // /proc and /sys (interface and namespace state) and the instances' runtime records,
        // write its own network directory (dnsmasq's files) and the forwarding switches.
        landlock: LandlockSpec {
            fs: Some(FsRules {
                read: existing(&["/proc", "/sys"])
                    .into_iter()
                    .chain([state("runtime")])
                    .collect(),
                write: existing(&[
                    "/proc/sys/net/ipv4/ip_forward",
                    "/proc/sys/net/ipv6/conf/all/forwarding",
                ])
                .into_iter()
                .chain([state("networks")])
                .collect(),
            }),
            scope_signal: true,
        },
        seccomp: SECCOMP,
        seccomp_log: SECCOMP_LOG,
        seccomp_mode: b.seccomp_mode,
    }
}
