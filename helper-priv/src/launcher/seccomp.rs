//! The seccomp filter every container process carries: LXD's default policy
//! (`lxd/seccomp/seccomp.go`: `reject_force_umount` plus `kexec_load`, `open_by_handle_at`,
//! `init_module`, `finit_module`, `delete_module` failing with ENOSYS), with the newer
//! `kexec_file_load` added beside `kexec_load`. It is a deny-list on purpose: a container is a
//! whole Linux system and needs nearly every syscall; the user namespace does the rest.
//!
//! Known difference from LXD: foreign-architecture syscalls (32-bit x86 binaries) are killed
//! rather than filtered by the same list, since this filter is compiled for the host
//! architecture only.
//!
//! It is installed without no_new_privs (the launcher holds CAP_SYS_ADMIN), so set-uid
//! programs inside containers keep working, as in LXD.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Syscalls that fail with ENOSYS inside containers.
pub const DENIED_ENOSYS: &[(&str, i64)] = &[
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
];

fn arch() -> Result<seccompiler::TargetArch, String> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccompiler does not support this architecture: {e:?}"))
}

/// The two programs: ENOSYS for the list above, EACCES for umount2(MNT_FORCE).
pub fn programs() -> Result<Vec<BpfProgram>, String> {
    let arch = arch()?;
    let denied: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED_ENOSYS.iter().map(|(_, n)| (*n, vec![])).collect();
    let a = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let force = SeccompRule::new(vec![SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(libc::MNT_FORCE as u64),
        libc::MNT_FORCE as u64,
    )
    .map_err(|e| e.to_string())?])
    .map_err(|e| e.to_string())?;
    let b = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_umount2, vec![force])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    Ok(vec![
        a.try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?,
        b.try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?,
    ])
}

/// Installs both on the calling (single-threaded) process, without no_new_privs.
pub fn install_container_filter() -> Result<(), String> {
    for prog in programs()? {
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the kernel copies the program; `prog` outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(format!("seccomp: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn compiles() {
        let p = super::programs().expect("programs");
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|x| !x.is_empty()));
    }
}
