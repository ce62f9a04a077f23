//! silod's one-way drop from root to its unprivileged user.

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

/// Dropping privileges failed; silod must not go on.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A call failed.
    #[error("dropping privileges: {op}: {source}")]
    Sys {
        /// The call.
        op: &'static str,
        /// The errno.
        source: nix::errno::Errno,
    },
    /// Capability work failed.
    #[error("dropping privileges: {0}")]
    Caps(String),
    /// The drop did not stick.
    #[error("dropping privileges: check failed: {0}")]
    Check(String),
}

/// Drops to `uid`/`gid` for good: bounding set emptied, supplementary groups cleared,
/// real/effective/saved ids changed, every capability set empty, no_new_privs set.
pub fn drop_to(uid: Uid, gid: Gid) -> Result<(), UserError> {
    if uid.is_root() {
        return Err(UserError::Check("refusing to run the API as root".into()));
    }
    // The bounding set can only shrink while CAP_SETPCAP is held, i.e. before setuid.
    for cap in caps::runtime::thread_all_supported() {
        caps::drop(None, caps::CapSet::Bounding, cap)
            .map_err(|e| UserError::Caps(e.to_string()))?;
    }
    // SAFETY: prctl(PR_SET_KEEPCAPS, 0) takes no pointers; it makes setuid clear permitted caps.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) } != 0 {
        return Err(UserError::Sys {
            op: "prctl(PR_SET_KEEPCAPS)",
            source: nix::errno::Errno::last(),
        });
    }
    setgroups(&[]).map_err(|source| UserError::Sys {
        op: "setgroups",
        source,
    })?;
    setresgid(gid, gid, gid).map_err(|source| UserError::Sys {
        op: "setresgid",
        source,
    })?;
    setresuid(uid, uid, uid).map_err(|source| UserError::Sys {
        op: "setresuid",
        source,
    })?;
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
        caps::CapSet::Ambient,
    ] {
        caps::clear(None, set).map_err(|e| UserError::Caps(e.to_string()))?;
    }
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(UserError::Sys {
            op: "prctl(PR_SET_NO_NEW_PRIVS)",
            source: nix::errno::Errno::last(),
        });
    }
    // Prove it: regaining root must fail.
    if setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
        return Err(UserError::Check("setresuid(0) still succeeds".into()));
    }
    let eff =
        caps::read(None, caps::CapSet::Effective).map_err(|e| UserError::Caps(e.to_string()))?;
    if !eff.is_empty() {
        return Err(UserError::Check(format!(
            "effective capabilities remain: {eff:?}"
        )));
    }
    Ok(())
}
