//! silo-net's confinement, declared in one place (reviewed with seccomp.json and
//! CONFINEMENT.md beside this crate).

use caps::Capability;
use silo_proto::jail::boot::Boot;
use silo_proto::jail::landlock_rules::FsRules;
use silo_proto::jail::{existing, Jail, LandlockSpec};

pub(crate) static SECCOMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));
static SECCOMP_LOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_log.bpf"));

/// The proxy forwarders' allow-list (`forwarder-seccomp.json`), and its log-only variant.
static FORWARDER_SECCOMP: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/forwarder-seccomp.bpf"));
static FORWARDER_SECCOMP_LOG: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/forwarder-seccomp_log.bpf"));

/// Whether forwarders take the log-only variant (`--insecure-seccomp-log`); set before the
/// launcher is forked, which inherits it.
static FORWARDER_LOG_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Chooses the forwarders' filter variant (silo-net's start-up, before the launcher forks).
pub fn set_forwarder_mode(mode: silo_proto::jail::SeccompMode) {
    FORWARDER_LOG_ONLY.store(
        mode == silo_proto::jail::SeccompMode::LogOnly,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Confines a forwarder to its allow-list, once it has given up root.
pub fn enter_forwarder_seccomp() -> Result<(), String> {
    let prog = if FORWARDER_LOG_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        FORWARDER_SECCOMP_LOG
    } else {
        FORWARDER_SECCOMP
    };
    silo_proto::jail::seccomp::install(prog).map_err(|e| e.to_string())
}

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
            net: Default::default(),
        },
        seccomp: SECCOMP,
        seccomp_log: SECCOMP_LOG,
        seccomp_mode: b.seccomp_mode,
    }
}

#[cfg(test)]
mod tests {
    /// A forwarder that steps outside its list (a netlink socket, an exec) is killed.
    #[test]
    fn forwarders_are_killed_outside_their_list() {
        for attempt in ["netlink", "execve"] {
            // SAFETY: the child only installs the filter and makes raw syscalls, then _exits.
            match unsafe { nix::unistd::fork() }.expect("fork") {
                nix::unistd::ForkResult::Child => {
                    // SAFETY: prctl with integer arguments (seccomp without root needs it).
                    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                    if super::enter_forwarder_seccomp().is_err() {
                        // SAFETY: leaving the forked child.
                        unsafe { libc::_exit(3) };
                    }
                    // SAFETY: raw syscalls with valid (or null) pointers; they must not return.
                    unsafe {
                        if attempt == "netlink" {
                            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0);
                        } else {
                            let sh = c"/bin/true";
                            let argv = [sh.as_ptr(), std::ptr::null()];
                            libc::execve(sh.as_ptr(), argv.as_ptr(), std::ptr::null());
                        }
                        libc::_exit(0)
                    }
                }
                nix::unistd::ForkResult::Parent { child } => {
                    let st = nix::sys::wait::waitpid(child, None).expect("wait");
                    assert!(
                        matches!(
                            st,
                            nix::sys::wait::WaitStatus::Signaled(
                                _,
                                nix::sys::signal::Signal::SIGSYS,
                                _
                            )
                        ),
                        "{attempt}: {st:?}"
                    );
                }
            }
        }
    }
}
