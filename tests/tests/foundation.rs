//! The foundation end to end: silod and its helpers as started for real, their confinement
//! read from /proc, the API envelope, the CLI, and the stock LXD client.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::TestDaemon;

fn status_field(pid: u32, task: Option<u32>, key: &str) -> String {
    let path = match task {
        Some(t) => format!("/proc/{pid}/task/{t}/status"),
        None => format!("/proc/{pid}/status"),
    };
    let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{key} missing in {path}"))
}

fn tasks(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

fn caps(mask: &str) -> BTreeSet<String> {
    let m = u64::from_str_radix(mask, 16).expect("hex");
    silo_proto::procinfo::cap_names(m).into_iter().collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn silod_runs_unprivileged_and_fully_confined() {
    let d = TestDaemon::start("confine");
    let pid = d.pid();
    for t in tasks(pid) {
        let uids = status_field(pid, Some(t), "Uid");
        assert!(
            uids.split_whitespace().all(|u| u != "0"),
            "silod thread {t} has uid 0: {uids}"
        );
        for k in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
            assert_eq!(
                status_field(pid, Some(t), k),
                "0000000000000000",
                "silod thread {t} {k}"
            );
        }
        assert_eq!(status_field(pid, Some(t), "NoNewPrivs"), "1", "thread {t}");
        assert_eq!(status_field(pid, Some(t), "Seccomp"), "2", "thread {t}");
    }
    let silo = nix::unistd::User::from_name("silo")
        .expect("lookup")
        .expect("silo user");
    assert_eq!(
        status_field(pid, None, "Uid").split_whitespace().next(),
        Some(silo.uid.to_string().as_str())
    );
    assert_eq!(
        status_field(pid, None, "Groups"),
        "",
        "no supplementary groups"
    );
}

#[test]
fn each_helper_has_exactly_its_declared_capabilities() {
    let d = TestDaemon::start("helpercaps");
    let helpers = d.helpers();
    let names: Vec<&str> = helpers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["silo-net", "silo-priv", "silo-store"],
        "exactly three helpers"
    );
    let want = |n: &str| match n {
        "silo-priv" => set(&["dac_override", "fowner", "kill", "sys_admin"]),
        "silo-net" => set(&["net_admin"]),
        "silo-store" => set(&[
            "chown",
            "dac_override",
            "dac_read_search",
            "fowner",
            "fsetid",
            "setfcap",
            "sys_admin",
        ]),
        other => panic!("unexpected helper {other}"),
    };
    for (name, pid) in &helpers {
        for t in tasks(*pid) {
            assert_eq!(
                status_field(*pid, Some(t), "Seccomp"),
                "2",
                "{name} thread {t}"
            );
            assert_eq!(
                status_field(*pid, Some(t), "NoNewPrivs"),
                "1",
                "{name} thread {t}"
            );
            assert_eq!(
                caps(&status_field(*pid, Some(t), "CapEff")),
                want(name),
                "{name} CapEff"
            );
            assert_eq!(
                caps(&status_field(*pid, Some(t), "CapPrm")),
                want(name),
                "{name} CapPrm"
            );
            assert_eq!(
                caps(&status_field(*pid, Some(t), "CapBnd")),
                want(name),
                "{name} CapBnd"
            );
            assert_eq!(
                status_field(*pid, Some(t), "CapAmb"),
                "0000000000000000",
                "{name} CapAmb"
            );
            assert_eq!(
                status_field(*pid, Some(t), "CapInh"),
                "0000000000000000",
                "{name} CapInh"
            );
        }
    }
    // GET /1.0 reports the same, read from /proc by silod.
    let (code, v) = d.api("GET", "/1.0", None);
    assert_eq!(code, 200);
    let procs = v["metadata"]["silo"]["processes"]
        .as_array()
        .expect("processes");
    assert_eq!(procs.len(), 4);
    for p in procs {
        let name = p["name"].as_str().expect("name");
        assert_eq!(p["seccomp"], 2, "{name}");
        assert_eq!(p["no_new_privs"], true, "{name}");
        assert!(
            p["landlock"]
                .as_str()
                .expect("landlock")
                .contains("fully enforced"),
            "{name}: {p}"
        );
        if name == "silod" {
            assert_eq!(p["cap_eff"], json!([]));
            assert_eq!(p["pid"], d.pid());
        } else {
            let eff: BTreeSet<String> = serde_json::from_value(p["cap_eff"].clone()).expect("caps");
            assert_eq!(eff, want(name), "{name}");
            assert!(p["uptime_secs"].is_u64());
        }
    }
    let net = procs.iter().find(|p| p["name"] == "silo-net").expect("net");
    assert!(
        net["landlock"]
            .as_str()
            .unwrap_or("")
            .starts_with("fs+net+scope"),
        "silo-net landlocks its filesystem: {net}"
    );
}

fn fd_targets(pid: u32) -> Vec<(u32, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .filter_map(|e| {
            let n: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let t = std::fs::read_link(e.path()).ok()?;
            Some((n, t.to_string_lossy().into_owned()))
        })
        .collect()
}

#[test]
fn no_process_holds_an_fd_it_should_not() {
    let d = TestDaemon::start("fds");
    let state = d.dir.display().to_string();
    let mut sockets_by_helper: Vec<(String, BTreeSet<String>)> = Vec::new();
    for (name, pid) in d.helpers() {
        let fds = fd_targets(pid);
        let mut socks = BTreeSet::new();
        for (n, t) in &fds {
            if t.starts_with("socket:") {
                socks.insert(t.clone());
                continue;
            }
            if t.starts_with("anon_inode:") || t.starts_with("pipe:") {
                continue;
            }
            if *n <= 2 {
                // stdin is /dev/null; stdout/stderr are the log.
                continue;
            }
            let allowed = match name.as_str() {
                "silo-store" => {
                    t == &state
                        || t == &format!("{state}/storage-pools")
                        || t == &format!("{state}/disks")
                }
                // Its roots for rootfs lookups and the instances' runtime records.
                "silo-priv" => {
                    t == &format!("{state}/storage-pools") || t == &format!("{state}/runtime")
                }
                // The state dir (instances' runtime records beneath it) and its own
                // networks directory (dnsmasq's files).
                "silo-net" => t == &state || t == &format!("{state}/networks"),
                _ => false,
            };
            assert!(allowed, "{name} holds fd {n} -> {t}");
            assert!(!t.ends_with("silo.db"), "{name} holds the database");
        }
        assert!(
            fds.iter().any(|(n, t)| *n == 3 && t.starts_with("socket:")),
            "{name} fd 3 is its RPC socket"
        );
        assert!(
            fds.iter().any(|(n, t)| *n == 4 && t.starts_with("socket:")),
            "{name} fd 4 is its fd channel"
        );
        sockets_by_helper.push((name, socks));
    }
    for i in 0..sockets_by_helper.len() {
        for j in i + 1..sockets_by_helper.len() {
            let shared: Vec<_> = sockets_by_helper[i]
                .1
                .intersection(&sockets_by_helper[j].1)
                .collect();
            assert!(
                shared.is_empty(),
                "{} and {} share sockets {shared:?}",
                sockets_by_helper[i].0,
                sockets_by_helper[j].0
            );
        }
    }
    // silod keeps no fd of a helper's end, and no fd outside its state dir but /proc reads.
    let silod: BTreeSet<String> = fd_targets(d.pid()).into_iter().map(|(_, t)| t).collect();
    for (name, socks) in &sockets_by_helper {
        for s in socks {
            let ino = s.trim_start_matches("socket:");
            let peers_in_silod = silod.iter().filter(|t| t.contains(ino)).count();
            assert_eq!(peers_in_silod, 0, "silod holds {name}'s own end {s}");
        }
    }
    for t in &silod {
        let ok = t.starts_with("socket:")
            || t.starts_with("anon_inode:")
            || t.starts_with("pipe:")
            || t == "/dev/null"
            || t.starts_with(&state)
            || t.ends_with(".log");
        assert!(ok, "silod holds {t}");
    }
}

#[test]
fn state_dir_and_socket_ownership() {
    let d = TestDaemon::start("owner");
    let silo = nix::unistd::User::from_name("silo")
        .expect("lookup")
        .expect("user");
    let grp = nix::unistd::Group::from_name("silo")
        .expect("lookup")
        .expect("group");
    let md = std::fs::metadata(&d.dir).expect("state dir");
    assert_eq!((md.uid(), md.mode() & 0o7777), (silo.uid.as_raw(), 0o711));
    let sock = std::fs::symlink_metadata(d.socket()).expect("socket");
    assert_eq!(
        (sock.uid(), sock.gid(), sock.mode() & 0o777),
        (silo.uid.as_raw(), grp.gid.as_raw(), 0o660)
    );
    let db = std::fs::metadata(d.dir.join("silo.db")).expect("db");
    assert_eq!(
        db.uid(),
        silo.uid.as_raw(),
        "the database belongs to silod's user"
    );
    for sub in ["storage-pools", "disks"] {
        let m = std::fs::metadata(d.dir.join(sub)).expect(sub);
        assert_eq!(
            m.uid(),
            0,
            "{sub} is root's: silod cannot plant anything in it"
        );
    }
}

#[test]
fn api_envelope_operations_and_errors() {
    let d = TestDaemon::start("api");
    let (c, v) = d.api("GET", "/", None);
    assert_eq!(
        (c, v["type"].as_str(), v["metadata"].clone()),
        (200, Some("sync"), json!(["/1.0"]))
    );
    let (c, v) = d.api("GET", "/1.0", None);
    assert_eq!(c, 200);
    let md = &v["metadata"];
    assert_eq!(md["auth"], "trusted");
    assert_eq!(md["api_version"], "1.0");
    assert_eq!(md["environment"]["server"], "silo");
    assert_eq!(md["environment"]["server_pid"], d.pid());
    let exts = md["api_extensions"].as_array().expect("extensions");
    for needed in [
        "instances",
        "api_filtering",
        "container_full",
        "instance_get_full",
    ] {
        assert!(
            exts.iter().any(|e| e == needed),
            "the stock client needs {needed}"
        );
    }
    for ext in exts {
        assert!(
            !["snapshots", "migration"].contains(&ext.as_str().unwrap_or("")),
            "advertises {ext} before implementing it"
        );
    }
    let (c, v) = d.api("GET", "/1.0/nope", None);
    assert_eq!(
        (c, v["type"].as_str(), v["error_code"].as_u64()),
        (404, Some("error"), Some(404))
    );
    let (c, v) = d.api("GET", "/1.0/operations", None);
    assert_eq!((c, v["metadata"].clone()), (200, json!({})));
    let (c, v) = d.api("GET", "/1.0/operations/does-not-exist", None);
    assert_eq!((c, v["error"].as_str()), (404, Some("operation not found")));
    let (c, _) = d.api("GET", "/1.0/operations/x/wait?timeout=banana", None);
    assert_eq!(c, 400);
    let (c, v) = d.api("GET", "/1.0/events?type=gossip", None);
    assert_eq!(c, 400, "{v}");
    let (c, v) = d.api("PUT", "/1.0", Some(json!({"config": {"no.such.key": "1"}})));
    assert_eq!(c, 400);
    assert!(
        v["error"].as_str().unwrap_or("").contains("no.such.key"),
        "{v}"
    );
    let (c, v) = d.api("PATCH", "/1.0", Some(json!({"config": {}})));
    assert_eq!(c, 200, "{v}");
}

#[test]
fn cli_version_info_operations_monitor() {
    let d = TestDaemon::start("cli");
    let o = d.silo(&["version"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && out.contains("Client version: 0.1.0")
            && out.contains("Server version: 0.1.0"),
        "{out}"
    );
    let o = d.silo(&["info"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("server: silo") && out.contains("name: silo-store"),
        "{out}"
    );
    for f in ["table", "json", "yaml", "csv"] {
        let o = d.silo(&["operation", "list", "--format", f]);
        assert!(
            o.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = d.silo(&["operation", "list", "--format", "json"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
    let o = d.silo(&["operation", "show", "missing"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err.trim(), "Error: operation not found");
    assert_eq!(err.lines().count(), 1, "errors are one line");
    // monitor sees a lifecycle event.
    let mut mon = Command::new(silo_tests::bin("silo"))
        .args(["monitor", "--type", "lifecycle", "--format", "json"])
        .env("SILO_SOCKET", d.socket())
        .stdout(Stdio::piped())
        .spawn()
        .expect("monitor");
    std::thread::sleep(Duration::from_millis(500));
    let (c, _) = d.api("PATCH", "/1.0", Some(json!({"config": {}})));
    assert_eq!(c, 200);
    std::thread::sleep(Duration::from_millis(500));
    let _ = mon.kill();
    let out = mon.wait_with_output().expect("monitor output");
    let text = String::from_utf8_lossy(&out.stdout);
    let ev: Value = serde_json::from_str(text.lines().next().unwrap_or("{}")).expect("event json");
    assert_eq!(
        (ev["type"].as_str(), ev["metadata"]["action"].as_str()),
        (Some("lifecycle"), Some("config-updated")),
        "{text}"
    );
}

#[test]
fn cli_finds_the_socket_like_lxc() {
    let d = TestDaemon::start("sockfind");
    let o = Command::new(silo_tests::bin("silo"))
        .arg("version")
        .env_remove("SILO_SOCKET")
        .env("SILO_DIR", &d.dir)
        .output()
        .expect("silo");
    assert!(String::from_utf8_lossy(&o.stdout).contains("Server version: 0.1.0"));
    let o = Command::new(silo_tests::bin("silo"))
        .arg("info")
        .env("SILO_SOCKET", "/nonexistent/silo.sock")
        .output()
        .expect("silo");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.starts_with("Error: cannot reach silod at /nonexistent/silo.sock"),
        "{err}"
    );
}

fn lxc(conf: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("lxc")
        .args(args)
        .env("LXD_CONF", conf)
        .env_remove("LXD_DIR")
        .env_remove("LXD_SOCKET")
        .output()
        .unwrap_or_else(|e| panic!("running the stock lxc client (Debian's lxd-client): {e}"))
}

#[test]
fn stock_lxc_client_connects() {
    let d = TestDaemon::start("lxc");
    let conf = tempfile::tempdir().expect("tmp");
    let url = format!("unix://{}", d.socket().display());
    let o = lxc(conf.path(), &["remote", "add", "s", &url]);
    assert!(
        o.status.success(),
        "lxc remote add: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = lxc(conf.path(), &["info", "s:"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "lxc info: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("server: silo") && out.contains("auth: trusted"),
        "{out}"
    );
    let o = lxc(conf.path(), &["operation", "list", "s:"]);
    assert!(
        o.status.success(),
        "lxc operation list: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("DESCRIPTION"));
    let mut mon = Command::new("lxc")
        .args(["monitor", "s:", "--type", "lifecycle"])
        .env("LXD_CONF", conf.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lxc monitor");
    std::thread::sleep(Duration::from_millis(700));
    let (c, _) = d.api("PATCH", "/1.0", Some(json!({"config": {}})));
    assert_eq!(c, 200);
    std::thread::sleep(Duration::from_millis(700));
    let _ = mon.kill();
    let out = mon.wait_with_output().expect("monitor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("action: config-updated"),
        "lxc monitor saw: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_database_from_a_newer_silod_is_refused() {
    let mut d = TestDaemon::start("newdb");
    d.stop();
    let db = d.dir.join("silo.db");
    let st = Command::new("python3")
        .args(["-c", &format!("import sqlite3; c=sqlite3.connect('{}'); c.execute('PRAGMA user_version = 999'); c.commit()", db.display())])
        .status()
        .expect("python3");
    assert!(st.success());
    let out = Command::new(silo_tests::bin("silod"))
        .arg("--state-dir")
        .arg(&d.dir)
        .arg("--policy")
        .arg("/nonexistent/policy.toml")
        .output()
        .expect("silod");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("schema version 999, newer than this silod knows"),
        "{err}"
    );
    // Its helpers did not outlive it.
    assert!(
        silo_tests::wait_until(Duration::from_secs(5), || silo_tests::procs_for(&d.dir)
            .is_empty()),
        "left behind: {:?}",
        silo_tests::procs_for(&d.dir)
    );
}
