//! silo-store's confinement, declared in one place (reviewed with seccomp.json and
//! CONFINEMENT.md beside this crate).

use caps::Capability;
use silo_proto::jail::boot::Boot;
use silo_proto::jail::{Jail, LandlockSpec};

/// The filter compiled by build.rs from ../seccomp.json.
static SECCOMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));
static SECCOMP_LOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_log.bpf"));

/// Capabilities silo-store keeps.
pub const CAPS: &[Capability] = &[
    // Files beneath the state dir belong to root and to container id ranges; root needs to
    // create and remove them whatever their owner and mode.
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    // Keeping set-group-id bits of image files whose group root is not in.
    Capability::CAP_FSETID,
    // Copying, unpacking and receiving file capabilities (security.capability) as they were.
    Capability::CAP_SETFCAP,
    // Mounting pools and volumes, loop devices, btrfs subvolume ioctls.
    Capability::CAP_SYS_ADMIN,
];

pub fn jail(b: &Boot) -> Jail {
    let seccomp_mode = b.seccomp_mode;
    Jail {
        name: "silo-store",
        keep_caps: CAPS.to_vec(),
        // silo-store mounts, and landlock's filesystem rules forbid mount(2): it takes only
        // landlock's network and scope rules. Its filesystem reach is bounded by resolving
        // every path beneath fds opened at start (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), and
        // untrusted parsing (image tarballs) is pushed into children that landlock themselves.
        landlock: LandlockSpec {
            fs: None,
            scope_signal: true,
            net: Default::default(),
        },
        seccomp: SECCOMP,
        seccomp_log: SECCOMP_LOG,
        seccomp_mode,
    }
}
