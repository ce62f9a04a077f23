//! silo-priv's confinement, declared in one place (reviewed with seccomp.json and
//! CONFINEMENT.md beside this crate).

use caps::Capability;
use silo_proto::jail::boot::Boot;
use silo_proto::jail::{Jail, LandlockSpec};

static SECCOMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));
static SECCOMP_LOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_log.bpf"));

/// Capabilities silo-priv keeps.
pub const CAPS: &[Capability] = &[
    // cgroupfs directories and files are root's with mode 0755/0644; writing limits and
    // moving tasks needs root's file access whatever the hierarchy's owner.
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    // Namespaces, mounts and pivot_root for instances (used from the runtime issue on).
    Capability::CAP_SYS_ADMIN,
    // Signals to instances' init (stop) and exec'd commands, which run as the instances' ids.
    Capability::CAP_KILL,
];

pub fn jail(b: &Boot) -> Jail {
    let seccomp_mode = b.seccomp_mode;
    Jail {
        name: "silo-priv",
        keep_caps: CAPS.to_vec(),
        // silo-priv mounts and pivots into container roots, which landlock's filesystem rules
        // forbid: it takes network and abstract-socket scoping only. Signal scoping stays off
        // because it must signal containers started by an earlier silo-priv (a different
        // landlock domain) after a restart.
        landlock: LandlockSpec {
            fs: None,
            scope_signal: false,
            net: Default::default(),
        },
        seccomp: SECCOMP,
        seccomp_log: SECCOMP_LOG,
        seccomp_mode,
    }
}
