//! silod's own confinement once it has dropped root (reviewed with ../seccomp.json and
//! ../CONFINEMENT.md).

use std::path::Path;

use silo_proto::jail::landlock_rules::FsRules;
use silo_proto::jail::{existing, Jail, LandlockSpec, SeccompMode};

static SECCOMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));
static SECCOMP_LOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_log.bpf"));

/// The jail: no capabilities at all; the state dir read-write; /proc read-only (helpers'
/// confinement for `GET /1.0`); no TCP bind or connect (remote access comes with its own
/// issue and its own rule); no abstract sockets or signals outside itself.
pub fn jail(state_dir: &Path, seccomp_mode: SeccompMode) -> Jail {
    let mut read = existing(&["/proc"]);
    read.retain(|p| !p.starts_with(state_dir));
    Jail {
        name: "silod",
        keep_caps: Vec::new(),
        landlock: LandlockSpec {
            fs: Some(FsRules {
                read,
                write: vec![state_dir.to_path_buf()],
            }),
            scope_signal: true,
        },
        seccomp: SECCOMP,
        seccomp_log: SECCOMP_LOG,
        seccomp_mode,
    }
}
