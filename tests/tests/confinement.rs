//! Each helper, jailed exactly as in production, is stopped when it steps outside:
//! a syscall off its seccomp list kills it with SIGSYS; what its landlock or capability set
//! forbids fails with an error. (`--selftest-escape` enters the production jail first.)

use std::time::Duration;

use silo_tests::hostile::Helper;

const SIGSYS: i32 = 31;

fn attempt(helper: &str, what: &str, own_netns: bool) -> (Option<i32>, Option<i32>, String) {
    let state = silo_tests::unique_dir(&format!("esc-{helper}-{what}"));
    let policy = std::path::PathBuf::from(format!("{}.policy.toml", state.display()));
    let mut h = Helper::spawn(
        helper,
        &state,
        &policy,
        own_netns,
        &["--selftest-escape", what],
    );
    let (code, sig) = h.wait(Duration::from_secs(10));
    let log = h.log_text();
    drop(h);
    let _ = std::fs::remove_dir_all(&state);
    (code, sig, log)
}

fn assert_killed(helper: &str, what: &str) {
    let (code, sig, log) = attempt(helper, what, helper == "silo-net");
    assert_eq!(
        (code, sig),
        (None, Some(SIGSYS)),
        "{helper} {what} should die by SIGSYS; log:\n{log}"
    );
    assert!(!log.contains("ESCAPED"), "{log}");
}

fn assert_refused(helper: &str, what: &str) {
    let (code, sig, log) = attempt(helper, what, helper == "silo-net");
    assert_eq!(
        (code, sig),
        (Some(10), None),
        "{helper} {what} should be refused; log:\n{log}"
    );
    assert!(log.contains(&format!("refused: {what}")), "{log}");
}

#[test]
fn no_helper_may_exec() {
    for h in ["silo-priv", "silo-net", "silo-store"] {
        assert_killed(h, "execve");
    }
}

#[test]
fn no_helper_may_open_inet_sockets() {
    for h in ["silo-priv", "silo-net", "silo-store"] {
        assert_killed(h, "socket-inet");
    }
}

#[test]
fn no_helper_may_ptrace_or_load_modules() {
    for h in ["silo-priv", "silo-net", "silo-store"] {
        assert_killed(h, "ptrace");
        assert_killed(h, "module");
    }
}

#[test]
fn no_helper_may_regain_dropped_privileges() {
    // setresuid is not on any list: even a root helper cannot switch identities.
    for h in ["silo-priv", "silo-net", "silo-store"] {
        assert_killed(h, "setuid-root");
    }
}

#[test]
fn net_helper_is_landlocked_to_proc_and_sys() {
    assert_refused("silo-net", "read-shadow");
    assert_refused("silo-net", "write-etc");
    assert!(!std::path::Path::new("/etc/silo-escape-test").exists());
}
