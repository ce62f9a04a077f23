//! The recovery design: a helper that dies takes silod down with status 1 (silod cannot
//! respawn root processes), its sibling helpers follow, nothing is left behind, and the
//! supervisor's restart (played here by the test) brings the whole group back on the same
//! state dir. silod killed with -9 takes its helpers with it (they watch a pidfd of silod).

use std::time::Duration;

use silo_tests::{alive, procs_for, wait_until, TestDaemon};

fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
}

fn helper_death_restarts_the_group(which: &str) {
    let mut d = TestDaemon::start(&format!("rec-{which}"));
    let helpers = d.helpers();
    let (_, victim) = helpers
        .iter()
        .find(|(n, _)| n == which)
        .cloned()
        .expect("helper");
    kill9(victim);
    let code = d.wait_exit(Duration::from_secs(10));
    assert_eq!(
        code,
        Some(1),
        "silod must exit 1 when {which} dies; log:\n{}",
        d.log_text()
    );
    assert!(d.log_text().contains("a helper died"), "{}", d.log_text());
    for (n, p) in &helpers {
        assert!(
            wait_until(Duration::from_secs(5), || !alive(*p)),
            "{n} ({p}) outlived silod"
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || procs_for(&d.dir).is_empty()),
        "left behind: {:?}",
        procs_for(&d.dir)
    );
    // The supervisor restarts silod; it comes back with new helpers on the same state dir.
    d.spawn();
    let (code, v) = d.api("GET", "/1.0", None);
    assert_eq!(code, 200);
    let procs = v["metadata"]["silo"]["processes"]
        .as_array()
        .expect("procs")
        .clone();
    assert_eq!(procs.len(), 4);
    assert!(procs.iter().all(|p| p["pid"] != victim));
}

#[test]
fn priv_death_restarts_the_group() {
    helper_death_restarts_the_group("silo-priv");
}

#[test]
fn net_death_restarts_the_group() {
    helper_death_restarts_the_group("silo-net");
}

#[test]
fn store_death_restarts_the_group() {
    helper_death_restarts_the_group("silo-store");
}

#[test]
fn silod_death_takes_its_helpers() {
    let mut d = TestDaemon::start("rec-silod");
    let helpers = d.helpers();
    kill9(d.pid());
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(128 + 9));
    for (n, p) in &helpers {
        assert!(
            wait_until(Duration::from_secs(5), || !alive(*p)),
            "{n} ({p}) outlived silod"
        );
    }
    // A stale socket is left; the restart replaces it and serves.
    assert!(d.socket().exists());
    d.spawn();
    let (code, _) = d.api("GET", "/1.0", None);
    assert_eq!(code, 200);
}

#[test]
fn a_second_silod_on_the_same_state_dir_is_refused() {
    let d = TestDaemon::start("rec-twice");
    let out = std::process::Command::new(silo_tests::bin("silod"))
        .arg("--state-dir")
        .arg(&d.dir)
        .arg("--policy")
        .arg("/nonexistent/policy.toml")
        .output()
        .expect("silod");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another silod is already serving"), "{err}");
    let (code, _) = d.api("GET", "/1.0", None);
    assert_eq!(code, 200, "the first one is unharmed");
}
