//! Capability sets: keep exactly the declared ones.

use caps::{CapSet, Capability, CapsHashSet};

/// Capability changes failed.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// A caps call failed.
    #[error("capabilities: {op}: {message}")]
    Op {
        /// What was being done.
        op: String,
        /// The error.
        message: String,
    },
}

fn op(o: impl Into<String>) -> impl FnOnce(caps::errors::CapsError) -> CapsError {
    let o = o.into();
    move |e| CapsError::Op {
        op: o,
        message: e.to_string(),
    }
}

/// Cuts the bounding set to `keep`, clears ambient and inheritable, and sets effective and
/// permitted to exactly `keep`.
pub fn keep_only(keep: &[Capability]) -> Result<(), CapsError> {
    let keep_set: CapsHashSet = keep.iter().copied().collect();
    // Dropping from the bounding set needs CAP_SETPCAP, so only touch what is still there
    // (silod arrives here with an already empty bounding set).
    let bounding = caps::read(None, CapSet::Bounding).map_err(op("read bounding"))?;
    for cap in bounding {
        if !keep_set.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(op(format!("drop {cap} from bounding")))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(op("clear ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(op("clear inheritable"))?;
    caps::set(None, CapSet::Effective, &keep_set).map_err(op("set effective"))?;
    caps::set(None, CapSet::Permitted, &keep_set).map_err(op("set permitted"))?;
    Ok(())
}

/// Sets no_new_privs: nothing this process execs gains privileges (setuid bits, file caps).
pub fn no_new_privs() -> Result<(), CapsError> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(CapsError::Op {
            op: "prctl(PR_SET_NO_NEW_PRIVS)".into(),
            message: std::io::Error::last_os_error().to_string(),
        });
    }
    Ok(())
}

/// Makes this process non-dumpable, which the kernel keeps across fork, setns and every
/// credential change until the next execve.
///
/// A root process that enters an instance's namespaces (or forks into its pid namespace)
/// would otherwise be ptraceable by container root the moment it joins the instance's user
/// namespace: the uid check of ptrace is then made against container root's capabilities,
/// and only a non-dumpable mm (whose owner is the host's user namespace) stops it, as in runc's
/// CVE-2016-9962. It also makes the process's /proc files root's, so container root cannot open
/// its fds or memory either.
pub fn non_dumpable() -> Result<(), CapsError> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(CapsError::Op {
            op: "prctl(PR_SET_DUMPABLE, 0)".into(),
            message: std::io::Error::last_os_error().to_string(),
        });
    }
    Ok(())
}

/// Whether this process is dumpable (for checks before entering an instance).
pub fn is_dumpable() -> bool {
    // SAFETY: prctl(PR_GET_DUMPABLE) takes no pointers.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}

/// Keeps exactly `keep` (see [`keep_only`]) and sets no_new_privs: how a root process that
/// should hold only a few powers for the rest of its life confines itself.
pub fn confine_caps(keep: &[Capability]) -> Result<(), CapsError> {
    keep_only(keep)?;
    no_new_privs()
}
