//! Escape attempts a test asks a freshly jailed helper to make (`--selftest-escape WHAT`).
//!
//! The helper enters its production jail first, then calls [`attempt`]. Outcomes the tests
//! read: killed by SIGSYS (seccomp stopped it), exit 10 with "refused: ..." on stderr (the
//! kernel refused it: landlock, missing capability), or exit 20 "ESCAPED" (a test failure).

use std::ffi::CString;

/// Tries `what` and reports. Never returns success for an attempt that got through.
pub fn attempt(what: &str) -> i32 {
    let res: Result<(), String> = match what {
        "execve" => {
            let prog = CString::new("/bin/true").unwrap_or_default();
            let args = [prog.clone()];
            let env: [CString; 0] = [];
            nix::unistd::execve(&prog, &args, &env)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "socket-inet" => nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .map(|_| ())
        .map_err(|e| e.to_string()),
        "ptrace" => {
            // SAFETY: PTRACE_TRACEME takes no pointers.
            let r = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error().to_string())
            }
        }
        "read-shadow" => std::fs::read("/etc/shadow")
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "write-etc" => std::fs::write("/etc/silo-escape-test", b"x").map_err(|e| e.to_string()),
        "setuid-root" => nix::unistd::setresuid(
            nix::unistd::Uid::from_raw(0),
            nix::unistd::Uid::from_raw(0),
            nix::unistd::Uid::from_raw(0),
        )
        .map_err(|e| e.to_string()),
        "module" => {
            // SAFETY: finit_module with an invalid fd and empty params; the kernel validates.
            let r = unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error().to_string())
            }
        }
        other => {
            eprintln!("unknown escape attempt {other:?}");
            return 30;
        }
    };
    match res {
        Ok(()) => {
            eprintln!("ESCAPED: {what} succeeded inside the jail");
            20
        }
        Err(e) => {
            eprintln!("refused: {what}: {e}");
            10
        }
    }
}
