//! Clustering on etcd: three silods, each in a network namespace of the test's own, joined by
//! veths to a bridge in a fourth namespace (the hub), on 198.19.<n>.0/24, a range of the
//! benchmarking block nothing outside the tests' namespaces uses. A link is cut with
//! `ip link set ... down` on the hub's side. The namespaces (and so the bridge and veths) go
//! with the test's fds; the daemons, their etcds and state dirs with the `TestDaemon`s.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use silo_tests::cluster::{
    form, join, launch_on, location_of, members, op_error, start_member, status_of, token,
};
use silo_tests::{show, wait_until, TestDaemon};

#[test]
fn three_members_join_with_tokens_and_each_sees_all_online() {
    let (hub, ms) = form("cl-form", 11, 3);
    for m in &ms {
        let all = members(&m.d);
        assert_eq!(all.len(), 3, "{} sees {all:?}", m.name);
        for x in &all {
            assert_eq!(x["status"], "Online", "{} sees {x}", m.name);
            assert_eq!(x["message"], "Fully operational", "{x}");
            assert_eq!(x["database"], true, "{x}");
        }
        let leaders = all
            .iter()
            .filter(|x| {
                x["roles"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r == "database-leader"))
            })
            .count();
        assert_eq!(leaders, 1, "one leader: {all:?}");
        let (_, s) = m.d.api("GET", "/1.0", None);
        assert_eq!(s["metadata"]["environment"]["server_clustered"], true);
        assert_eq!(s["metadata"]["environment"]["server_name"], m.name.as_str());
    }
    // Each member's etcd runs under the keeper, a fork of silod: both unprivileged, with
    // no capabilities and no_new_privs.
    for m in &ms {
        let keeper = silo_tests::children_of(m.d.pid())
            .into_iter()
            .find(|p| silo_tests::comm(*p) == "silod")
            .unwrap_or_else(|| panic!("{}: no etcd keeper under silod", m.name));
        let etcd = silo_tests::children_of(keeper)
            .into_iter()
            .find(|p| silo_tests::comm(*p) == "etcd")
            .unwrap_or_else(|| panic!("{}: no etcd under the keeper", m.name));
        for (what, pid) in [("keeper", keeper), ("etcd", etcd)] {
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let field = |k: &str| {
                st.lines()
                    .find(|l| l.starts_with(k))
                    .map(|l| l[k.len()..].trim().to_string())
                    .unwrap_or_default()
            };
            assert!(
                !field("Uid:").starts_with("0\t"),
                "{what} runs as root: {st}"
            );
            assert_eq!(field("CapEff:"), "0000000000000000", "{what}");
            assert_eq!(field("CapPrm:"), "0000000000000000", "{what}");
            assert_eq!(field("NoNewPrivs:"), "1", "{what}");
        }
    }

    // The stock client through any member.
    let o = ms[1].d.lxc(&["cluster", "list", "--format", "csv"]);
    assert!(o.status.success(), "lxc cluster list: {}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    for n in ["m1", "m2", "m3"] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{n},"))
                && l.contains("ONLINE")
                && l.contains("Fully operational")),
            "lxc cluster list: {out}"
        );
    }

    // A cut member turns OFFLINE within the threshold (10 s) and ONLINE when it returns.
    hub.set_link(3, false);
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(25), || status_of(&ms[0].d, "m3")
            == "Offline"),
        "m3 still {:?} after 25 s: {:?}",
        status_of(&ms[0].d, "m3"),
        members(&ms[0].d)
    );
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(5), "OFFLINE too soon: {took:?}");
    let m3 = members(&ms[1].d)
        .into_iter()
        .find(|m| m["server_name"] == "m3")
        .unwrap();
    assert!(
        m3["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("No heartbeat for"),
        "{m3}"
    );
    hub.set_link(3, true);
    assert!(
        wait_until(Duration::from_secs(30), || status_of(&ms[0].d, "m3")
            == "Online"),
        "m3 did not come back: {:?}\nm3's log:\n{}",
        members(&ms[0].d),
        ms[2].d.log_text()
    );

    // One leader (the holder of the leader key, for leader-only work); when it is cut off,
    // its key goes with its lease and another member takes it.
    let leads = |m: &silo_tests::cluster::Member| {
        m.d.log_text()
            .matches("this member leads the cluster")
            .count()
    };
    let leaders: Vec<&str> = ms
        .iter()
        .filter(|m| leads(m) > 0)
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    let li = ms.iter().position(|m| leads(m) > 0).unwrap();
    hub.set_link(li as u8 + 1, false);
    assert!(
        wait_until(Duration::from_secs(40), || ms
            .iter()
            .enumerate()
            .any(|(i, m)| i != li && leads(m) > 0)),
        "no member took over from the cut leader {}",
        ms[li].name
    );
    hub.set_link(li as u8 + 1, true);
    assert!(
        wait_until(Duration::from_secs(30), || status_of(
            &ms[(li + 1) % 3].d,
            &ms[li].name
        ) == "Online"),
        "{} did not come back",
        ms[li].name
    );
    assert_eq!(
        leads(&ms[li]),
        1,
        "the old leader did not take the key back"
    );
}

#[test]
fn bad_tokens_and_taken_names_are_refused_with_what_is_wrong() {
    let (hub, ms) = form("cl-bad", 12, 2);
    let x = &start_member("cl-bad", &hub, 9);

    // Not a token at all.
    let e = join(x, "not-a-token").unwrap_err();
    assert!(e.contains("base64") || e.contains("join token"), "{e}");

    // A token for another name.
    let t = token(&ms[0], "m9");
    let (c, v) = x.d.api(
        "PUT",
        "/1.0/cluster",
        Some(json!({"server_name": "m1x", "enabled": true, "cluster_token": t})),
    );
    let e = if c == 202 {
        op_error(&x.d, &v)
    } else {
        v.to_string()
    };
    assert!(e.contains("m9"), "{e}");

    // A name already in the cluster cannot even get a token.
    let (c, v) = ms[0].d.api(
        "POST",
        "/1.0/cluster/members",
        Some(json!({"server_name": "m2"})),
    );
    assert_eq!(c, 409, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("m2"), "{v}");

    // A used token: m2 already joined with its own; a forged copy of it is refused.
    let mut forged = silo_api::ClusterMemberJoinToken::decode(&token(&ms[0], "m5")).unwrap();
    forged.secret = "00".repeat(32);
    let forged = forged.encode();
    let (c, v) = x.d.api(
        "PUT",
        "/1.0/cluster",
        Some(json!({"server_name": "m5", "enabled": true, "cluster_token": forged})),
    );
    let e = if c == 202 {
        op_error(&x.d, &v)
    } else {
        v.to_string()
    };
    assert!(e.contains("No valid join token"), "{e}");
    // Nothing half-made: the refused host is not clustered, the cluster has two members.
    let (_, cl) = x.d.api("GET", "/1.0/cluster", None);
    assert_eq!(cl["metadata"]["enabled"], false, "{cl}");
    assert_eq!(members(&ms[0].d).len(), 2);
}

#[test]
fn instances_are_placed_across_members_and_reachable_from_any() {
    let (hub, ms) = form("cl-place", 14, 3);
    // Images are the cluster's: imported once, copied to a member the first time it needs it.
    let image = silo_tests::busybox_image(false);
    ms[0].d.import(&image[0], "busybox");
    // --target through another member.
    launch_on(&ms[0].d, "c-t2", Some("m2")).expect("launch --target m2 through m1");
    assert_eq!(location_of(&ms[2].d, "c-t2"), "m2");
    // The scheduler spreads: each member gets one of the next three (it had 0, 1, 0).
    for n in ["c-s1", "c-s2", "c-s3"] {
        launch_on(&ms[0].d, n, None).unwrap_or_else(|e| panic!("launch {n}: {e}"));
    }
    let mut per: std::collections::BTreeMap<String, usize> = Default::default();
    for n in ["c-t2", "c-s1", "c-s2", "c-s3"] {
        *per.entry(location_of(&ms[1].d, n)).or_default() += 1;
    }
    assert_eq!(per.len(), 3, "every member holds one: {per:?}");

    // Listings through any member show all four with their LOCATION.
    let o = ms[2].d.lxc(&["list", "--format", "csv", "-c", "nsL"]);
    assert!(o.status.success(), "lxc list: {}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    for n in ["c-t2", "c-s1", "c-s2", "c-s3"] {
        let loc = location_of(&ms[0].d, n);
        assert!(
            out.lines().any(|l| l == format!("{n},RUNNING,{loc}")),
            "{n} on {loc} in:\n{out}"
        );
    }
    // exec through a member that does not hold it: the websockets are spliced through.
    // Bounded: one debug-build run in five saw this exec never end (not understood yet;
    // docs/clustering.md); a hang must fail the test, not the whole run. A second try is
    // made and the first failure printed, so the flake stays visible in the log.
    let bounded = |d: &TestDaemon| {
        Command::new("timeout")
            .args([
                "-s", "KILL", "60", "lxc", "exec", "c-t2", "--", "echo", "from-m2",
            ])
            .env("LXD_DIR", &d.dir)
            .env("LXD_CONF", d.dir.join("lxc-conf"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("timeout lxc")
    };
    let mut o = bounded(&ms[2].d);
    if !o.status.success() {
        eprintln!("lxc exec through m3, first try: {}", show(&o));
        o = bounded(&ms[2].d);
    }
    assert!(o.status.success(), "lxc exec through m3: {}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "from-m2");
    let (code, out, _) = ms[0].d.exec("c-t2", &["hostname"]);
    assert_eq!((code, out.trim()), (0, "c-t2"));

    // Two launches of one name through two members at once: exactly one wins.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| launch_on(&ms[0].d, "c-race", Some("m1")));
        let b = s.spawn(|| launch_on(&ms[1].d, "c-race", Some("m2")));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one launch of c-race wins: {a:?} / {b:?}"
    );
    let lost = a.err().or(b.err()).unwrap();
    assert!(lost.contains("c-race"), "{lost}");
    let (_, l) = ms[2].d.api("GET", "/1.0/instances", None);
    let n = l["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x.as_str().is_some_and(|s| s.ends_with("/c-race")))
        .count();
    assert_eq!(n, 1, "one c-race in the cluster: {l}");

    // A removal of a member that holds instances needs --force.
    let holder = location_of(&ms[0].d, "c-t2");
    assert_eq!(holder, "m2");
    let (c, v) = ms[0].d.api("DELETE", "/1.0/cluster/members/m2", None);
    assert_eq!(c, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("--force"), "{v}");

    // A launch targeted at an OFFLINE member is refused, naming it; its instances stay
    // listed, in an unknown state.
    hub.set_link(3, false);
    assert!(wait_until(Duration::from_secs(25), || status_of(
        &ms[0].d, "m3"
    ) == "Offline"));
    let e = launch_on(&ms[0].d, "c-off", Some("m3")).unwrap_err();
    assert!(e.contains("m3") && e.contains("offline"), "{e}");
    let (_, l) = ms[0].d.api("GET", "/1.0/instances?recursion=1", None);
    let on_m3: Vec<&Value> = l["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["location"] == "m3")
        .collect();
    assert!(!on_m3.is_empty(), "m3's instances still listed: {l}");
    assert!(on_m3.iter().all(|x| x["status"] == "Unknown"), "{on_m3:?}");
    hub.set_link(3, true);
    assert!(wait_until(Duration::from_secs(30), || status_of(
        &ms[0].d, "m3"
    ) == "Online"));

    // Stopped and deleted through m3, whatever member holds them.
    for n in ["c-t2", "c-s1", "c-s2", "c-s3", "c-race"] {
        ms[2].d.set_state(n, "stop", true);
        ms[2]
            .d
            .api_ok("DELETE", &format!("/1.0/instances/{n}"), None);
    }
    let (_, l) = ms[0].d.api("GET", "/1.0/instances", None);
    assert_eq!(l["metadata"], json!([]), "{l}");
}

fn ok_text(o: std::process::Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn the_cli_and_preseed_join_evacuate_remove_and_the_database_role_moves() {
    let (hub, ms) = form("cl-roles", 15, 3);
    // A fourth member joins by `silo init --preseed`, with a token from `silo cluster add`.
    let m4 = start_member("cl-roles", &hub, 4);
    let out = ok_text(
        ms[0].d.silo(&["cluster", "add", "m4"]),
        "silo cluster add m4",
    );
    let token = out.lines().nth(1).unwrap_or("").trim().to_string();
    assert!(out.starts_with("Member m4 join token:"), "{out}");
    let preseed = format!(
        "config:\n  core.https_address: {}:8443\ncluster:\n  server_name: m4\n  enabled: true\n  cluster_token: {token}\n",
        m4.addr
    );
    ok_text(
        m4.d.silo_stdin(&["init", "--preseed"], &preseed),
        "silo init --preseed (join)",
    );
    let list = ok_text(
        m4.d.silo(&["cluster", "list", "-f", "csv"]),
        "silo cluster list",
    );
    assert_eq!(
        list.lines().filter(|l| l.contains(",https://")).count(),
        4,
        "{list}"
    );
    let row4 = list.lines().find(|l| l.starts_with("m4,")).unwrap();
    assert!(row4.contains("ONLINE"), "{row4}");
    assert!(
        !row4.contains("database"),
        "a fourth member is a client of the database: {row4}"
    );
    let show4 = ok_text(m4.d.silo(&["cluster", "show", "m4"]), "silo cluster show");
    assert!(show4.contains("database: false"), "{show4}");

    // Evacuate stops a member's instances and keeps new ones off it; restore brings them back.
    let image = silo_tests::busybox_image(false);
    ms[1].d.import(&image[0], "busybox");
    launch_on(&ms[0].d, "c-ev", Some("m2")).expect("launch on m2");
    ok_text(ms[0].d.silo(&["cluster", "evacuate", "m2"]), "evacuate m2");
    assert_eq!(ms[0].d.status("c-ev"), "Stopped");
    assert_eq!(status_of(&ms[2].d, "m2"), "Evacuated");
    let e = launch_on(&ms[0].d, "c-no", Some("m2")).unwrap_err();
    assert!(e.contains("evacuated"), "{e}");
    ok_text(ms[2].d.silo(&["cluster", "restore", "m2"]), "restore m2");
    assert_eq!(ms[0].d.status("c-ev"), "Running");
    assert_eq!(status_of(&ms[0].d, "m2"), "Online");
    // Evacuated by moving (lxc 5.0 has no --action): running elsewhere, and back on the
    // stock client's restore.
    let o = ms[0]
        .d
        .silo(&["cluster", "evacuate", "m2", "--action", "migrate"]);
    assert!(
        o.status.success(),
        "silo cluster evacuate --action migrate: {}",
        show(&o)
    );
    let away = location_of(&ms[2].d, "c-ev");
    assert_ne!(away, "m2", "c-ev stayed on the evacuated member");
    assert_eq!(
        ms[0].d.status("c-ev"),
        "Running",
        "c-ev not started again on {away}"
    );
    let o = ms[2].d.lxc(&["cluster", "restore", "m2", "--force"]);
    assert!(o.status.success(), "lxc cluster restore: {}", show(&o));
    assert_eq!(location_of(&ms[0].d, "c-ev"), "m2");
    assert_eq!(ms[0].d.status("c-ev"), "Running");

    // A member that runs silo of another version is refused, both versions named.
    let (c, v) = ms[0].d.api(
        "POST",
        "/1.0/cluster/members",
        Some(json!({"server_name": "m6"})),
    );
    assert_eq!(c, 202, "{v}");
    let secret = v["metadata"]["metadata"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"name": "m6", "address": "198.19.15.6:8443", "secret": secret,
        "version": "0.0.1 (schema 1)", "architecture": "x86_64", "certificate": ""});
    let o = in_netns_cmd(
        &m4.d,
        &[
            "curl",
            "-sk",
            "-X",
            "POST",
            "--data",
            &body.to_string(),
            &format!("https://{}:8443/internal/cluster/accept", ms[0].addr),
        ],
    );
    let answer = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        answer.contains("0.0.1 (schema 1)") && answer.contains("the cluster runs silo"),
        "{answer}"
    );

    // Removing a database member hands its role to the fourth.
    ok_text(ms[0].d.silo(&["cluster", "remove", "m3"]), "remove m3");
    let (_, cl) = ms[2].d.api("GET", "/1.0/cluster", None);
    assert_eq!(cl["metadata"]["enabled"], false, "m3 left: {cl}");
    assert!(
        wait_until(Duration::from_secs(60), || {
            members(&ms[0].d)
                .iter()
                .find(|m| m["server_name"] == "m4")
                .is_some_and(|m| m["database"] == true)
        }),
        "m4 did not take the database role: {:?}\nm4's log:\n{}",
        members(&ms[0].d),
        m4.d.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            let all = members(&m4.d);
            all.len() == 3
                && all
                    .iter()
                    .all(|m| m["status"] == "Online" && m["database"] == true)
        }),
        "{:?}",
        members(&m4.d)
    );

    ms[0].d.set_state("c-ev", "stop", true);
    ms[0].d.api_ok("DELETE", "/1.0/instances/c-ev", None);
}

/// Runs a command inside `d`'s network namespace.
fn in_netns_cmd(d: &TestDaemon, args: &[&str]) -> std::process::Output {
    use std::os::fd::AsRawFd;
    Command::new("nsenter")
        .arg(format!(
            "--net=/proc/{}/fd/{}",
            std::process::id(),
            d.netns.as_raw_fd()
        ))
        .args(args)
        .output()
        .expect("nsenter")
}

#[test]
fn the_whole_cluster_restarts_and_every_member_comes_back_with_its_instances() {
    let (_hub, mut ms) = form("cl-restart", 16, 3);
    // Images are the cluster's: imported once, copied to a member the first time it needs it.
    let image = silo_tests::busybox_image(false);
    ms[0].d.import(&image[0], "busybox");
    launch_on(&ms[0].d, "c-r1", Some("m1")).expect("c-r1");
    launch_on(&ms[0].d, "c-r3", Some("m3")).expect("c-r3");
    for m in ms.iter_mut() {
        // stop() leaves the state dir (only the drop removes it): the restart finds it.
        m.d.stop();
        let left: Vec<_> = silo_tests::procs_naming(&m.d.dir)
            .into_iter()
            .filter(|(p, _)| matches!(silo_tests::comm(*p).as_str(), "silod" | "etcd"))
            .collect();
        assert!(left.is_empty(), "{}: left running: {left:?}", m.name);
    }
    for m in ms.iter_mut() {
        m.d.spawn();
    }
    for m in &ms {
        assert!(
            wait_until(Duration::from_secs(60), || {
                let (c, v) = m.d.api("GET", "/1.0/cluster/members?recursion=1", None);
                c == 200
                    && v["metadata"]
                        .as_array()
                        .is_some_and(|a| a.len() == 3 && a.iter().all(|x| x["status"] == "Online"))
            }),
            "{} does not see three ONLINE members: {:?}\nlog:\n{}",
            m.name,
            m.d.api("GET", "/1.0/cluster/members?recursion=1", None),
            m.d.log_text()
        );
    }
    for (n, loc) in [("c-r1", "m1"), ("c-r3", "m3")] {
        assert_eq!(location_of(&ms[1].d, n), loc);
        assert!(
            wait_until(Duration::from_secs(20), || ms[1].d.status(n) == "Running"),
            "{n}: {}",
            ms[1].d.status(n)
        );
    }
    for n in ["c-r1", "c-r3"] {
        ms[1].d.set_state(n, "stop", true);
        ms[1]
            .d
            .api_ok("DELETE", &format!("/1.0/instances/{n}"), None);
    }
}

#[test]
fn the_etcd_leaders_member_cut_mid_launch_leaves_one_instance_or_none() {
    let (hub, ms) = form("cl-cut", 17, 3);
    // Images are the cluster's: imported once, copied to a member the first time it needs it.
    let image = silo_tests::busybox_image(false);
    ms[0].d.import(&image[0], "busybox");
    let leader = members(&ms[0].d)
        .into_iter()
        .find(|m| {
            m["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "database-leader"))
        })
        .and_then(|m| m["server_name"].as_str().map(String::from))
        .expect("a leader");
    let li: usize = leader[1..].parse::<usize>().unwrap() - 1;
    let l = &ms[li];
    let other = &ms[(li + 1) % 3];
    // Through the leader's member once it is cut off: refused (no quorum there), nothing
    // made anywhere.
    hub.set_link((li + 1) as u8, false);
    let e = launch_on(&l.d, "c-pre", Some(&leader)).unwrap_err();
    assert!(e.contains("database") || e.contains("unavailable"), "{e}");
    hub.set_link((li + 1) as u8, true);
    assert!(wait_until(Duration::from_secs(40), || {
        let all = members(&other.d);
        all.len() == 3 && all.iter().all(|m| m["status"] == "Online")
    }));
    for m in &ms {
        let (c, v) = m.d.api("GET", "/1.0/instances/c-pre", None);
        assert_eq!(c, 404, "{}: {v}", m.name);
    }

    // The create through the leader's member, cut from the others as it runs.
    let outcome = std::thread::scope(|s| {
        let t = s.spawn(|| {
            let (c, v) = l.d.api(
                "POST",
                &format!("/1.0/instances?target={leader}"),
                Some(json!({"name": "c-cut", "source": {"type": "image", "alias": "busybox"}})),
            );
            if c != 202 {
                return Err(format!("{c}: {}", v["error"]));
            }
            let e = op_error(&l.d, &v);
            if e.is_empty() {
                Ok(())
            } else {
                Err(e)
            }
        });
        std::thread::sleep(Duration::from_millis(30));
        hub.set_link((li + 1) as u8, false);
        t.join().unwrap()
    });
    hub.set_link((li + 1) as u8, true);
    assert!(
        wait_until(Duration::from_secs(40), || {
            let all = members(&other.d);
            all.len() == 3 && all.iter().all(|m| m["status"] == "Online")
        }),
        "{:?}",
        members(&other.d)
    );
    let listed = |d: &TestDaemon| {
        let (_, v) = d.api("GET", "/1.0/instances", None);
        v["metadata"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x.as_str().is_some_and(|s| s.ends_with("/c-cut")))
                    .count()
            })
            .unwrap_or(0)
    };
    match &outcome {
        Ok(()) => {
            eprintln!("the create completed");
            assert_eq!(listed(&other.d), 1, "the create completed: one c-cut");
            assert_eq!(location_of(&other.d, "c-cut"), leader);
        }
        Err(e) => {
            eprintln!("the create failed cleanly: {e}");
            // Nothing half-made: no instance anywhere, and the name is free again (its
            // claim released once the member was back).
            assert!(
                wait_until(Duration::from_secs(40), || listed(&other.d) == 0
                    && listed(&l.d) == 0),
                "a failed create left c-cut behind"
            );
            let (c, v) = l.d.api("GET", "/1.0/instances/c-cut", None);
            assert_eq!(c, 404, "{v}");
            // A claim whose answer was lost in the cut is released by its member in the
            // background once etcd answers it again.
            let mut last = String::new();
            assert!(
                wait_until(Duration::from_secs(60), || {
                    match launch_on(&other.d, "c-cut", None) {
                        Ok(()) => true,
                        Err(e) => {
                            last = e;
                            false
                        }
                    }
                }),
                "the name never became free again: {last}"
            );
        }
    }
    let owner = location_of(&other.d, "c-cut");
    let od = &ms[owner[1..].parse::<usize>().unwrap() - 1].d;
    if od.status("c-cut") == "Running" {
        od.set_state("c-cut", "stop", true);
    }
    od.api_ok("DELETE", "/1.0/instances/c-cut", None);
}

/// The image's fingerprint as `d` lists it under `alias`.
fn image_fp(d: &TestDaemon, alias: &str) -> String {
    let v = d.api_ok("GET", &format!("/1.0/images/aliases/{alias}"), None);
    v["target"].as_str().unwrap_or("").to_string()
}

#[test]
fn profiles_images_and_config_are_the_clusters_on_every_member() {
    let (hub, ms) = form("cl-global", 18, 3);
    // An image imported through m1 is listed through m3 at once (a request is served after
    // the member's copy of the records caught up with etcd).
    let image = silo_tests::busybox_image(false);
    ms[0].d.import(&image[0], "busybox");
    let fp = image_fp(&ms[2].d, "busybox");
    assert_eq!(fp.len(), 64, "m3 lists m1's alias: {fp:?}");
    let m3_file = ms[2].d.dir.join("images").join(&fp);
    assert!(!m3_file.exists(), "m3 has no copy before it needs one");
    // A second import of the same image through another member is the same image: refused.
    let o = ms[1]
        .d
        .silo(&["image", "import", &image[0].to_string_lossy()]);
    assert!(!o.status.success(), "a second import of {fp} was taken");
    assert!(
        show(&o).contains(&fp[..12]) || show(&o).contains("exists"),
        "{}",
        show(&o)
    );

    // A profile made through m2 is there through m1 and m3, with its config.
    let o = ms[1].d.lxc(&["profile", "create", "p-lim"]);
    assert!(o.status.success(), "profile create: {}", show(&o));
    let o = ms[1]
        .d
        .lxc(&["profile", "set", "p-lim", "limits.memory", "256MB"]);
    assert!(o.status.success(), "profile set: {}", show(&o));
    for m in [&ms[0], &ms[2]] {
        let v = m.d.api_ok("GET", "/1.0/profiles/p-lim", None);
        assert_eq!(v["config"]["limits.memory"], "256MB", "{}: {v}", m.name);
    }
    // A name taken through another member is taken everywhere.
    let o = ms[2].d.lxc(&["profile", "create", "p-lim"]);
    assert!(!o.status.success(), "a second p-lim was made through m3");

    // Launched through m2 onto m3 with that profile: m3 copies the image from m1 first.
    let (c, v) = ms[1].d.api(
        "POST",
        "/1.0/instances?target=m3",
        Some(json!({"name": "g1", "profiles": ["default", "p-lim"],
                    "source": {"type": "image", "alias": "busybox"}})),
    );
    assert_eq!(c, 202, "{v}");
    assert_eq!(op_error(&ms[1].d, &v), "", "create g1 on m3");
    ms[1].d.set_state("g1", "start", false);
    assert_eq!(ms[0].d.status("g1"), "Running");
    assert_eq!(location_of(&ms[0].d, "g1"), "m3");
    assert!(m3_file.exists(), "m3 keeps its copy of the image");
    let v = ms[0].d.api_ok("GET", "/1.0/instances/g1", None);
    assert_eq!(v["expanded_config"]["limits.memory"], "256MB", "{v}");
    let v = ms[0].d.api_ok("GET", &format!("/1.0/images/{fp}"), None);
    let used = v["last_used_at"].as_str().unwrap_or("");
    assert!(
        !used.is_empty() && !used.starts_with("0001"),
        "the launch on m3 recorded the image's use: {v}"
    );

    // The profile's users are every member's; a delete of a profile an instance on another
    // member uses is refused, naming it.
    let v = ms[0].d.api_ok("GET", "/1.0/profiles/p-lim", None);
    assert_eq!(v["used_by"], json!(["/1.0/instances/g1"]), "{v}");
    let (c, v) = ms[0].d.api("DELETE", "/1.0/profiles/p-lim", None);
    assert_eq!(c, 400, "{v}");
    let e = v["error"].as_str().unwrap_or("");
    assert!(e.contains("g1") && e.contains("m3"), "{e}");

    // A rename through m1 reaches the instance on m3.
    let o = ms[0].d.lxc(&["profile", "rename", "p-lim", "p-mem"]);
    assert!(o.status.success(), "profile rename: {}", show(&o));
    let v = ms[1].d.api_ok("GET", "/1.0/instances/g1", None);
    assert_eq!(v["profiles"], json!(["default", "p-mem"]), "{v}");
    for m in &ms {
        let (c, _) = m.d.api("GET", "/1.0/profiles/p-lim", None);
        assert_eq!(c, 404, "{} still has p-lim", m.name);
    }

    // The trust store is the cluster's: a client trusted through m1 is trusted by m3, and
    // forgotten everywhere through m2.
    let pem = std::fs::read_to_string(ms[2].d.dir.join("server.crt")).expect("a certificate");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let (c, v) = ms[0].d.api(
        "POST",
        "/1.0/certificates",
        Some(json!({"type": "client", "name": "laptop", "certificate": b64})),
    );
    assert_eq!(c, 201, "{v}");
    let v = ms[2].d.api_ok("GET", "/1.0/certificates?recursion=1", None);
    let cert_fp = v
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "laptop"))
        .and_then(|c| c["fingerprint"].as_str())
        .unwrap_or_else(|| panic!("m3 does not list the certificate added through m1: {v}"))
        .to_string();
    ms[1]
        .d
        .api_ok("DELETE", &format!("/1.0/certificates/{cert_fp}"), None);
    let v = ms[2].d.api_ok("GET", "/1.0/certificates?recursion=1", None);
    assert!(
        !v.to_string().contains("laptop"),
        "still trusted on m3: {v}"
    );

    // Server config: the cluster's keys are every member's, a member's address its own.
    ms[0].d.api_ok(
        "PATCH",
        "/1.0",
        Some(json!({"config": {"images.remote_cache_expiry": "7"}})),
    );
    for m in &ms {
        let v = m.d.api_ok("GET", "/1.0", None);
        assert_eq!(v["config"]["images.remote_cache_expiry"], "7", "{}", m.name);
        assert_eq!(
            v["config"]["core.https_address"],
            format!("{}:8443", m.addr),
            "{} keeps its own address",
            m.name
        );
    }

    // A member cut off while a profile changes catches up when it is back (its watch
    // resumes from the last revision it applied).
    hub.set_link(3, false);
    ms[0].d.api_ok(
        "PATCH",
        "/1.0/profiles/p-mem",
        Some(json!({"description": "changed while m3 was away"})),
    );
    hub.set_link(3, true);
    assert!(
        wait_until(Duration::from_secs(40), || {
            let (c, v) = ms[2].d.api("GET", "/1.0/profiles/p-mem", None);
            c == 200 && v["metadata"]["description"] == "changed while m3 was away"
        }),
        "m3 never caught up:\n{}",
        ms[2].d.log_text()
    );

    // Member config: scheduler.instance=manual keeps the scheduler off a member.
    let o = ms[0]
        .d
        .silo(&["cluster", "set", "m2", "scheduler.instance", "bogus"]);
    assert!(!o.status.success(), "a bad scheduler.instance was taken");
    assert!(show(&o).contains("manual"), "{}", show(&o));
    ok_text(
        ms[0]
            .d
            .silo(&["cluster", "set", "m2", "scheduler.instance=manual"]),
        "silo cluster set",
    );
    let got = ok_text(
        ms[2]
            .d
            .silo(&["cluster", "get", "m2", "scheduler.instance"]),
        "silo cluster get",
    );
    assert_eq!(got.trim(), "manual");
    for n in ["g2", "g3"] {
        launch_on(&ms[0].d, n, None).unwrap_or_else(|e| panic!("launch {n}: {e}"));
        assert_ne!(
            location_of(&ms[0].d, n),
            "m2",
            "{n} scheduled onto a manual member"
        );
    }
    ok_text(
        ms[0]
            .d
            .silo(&["cluster", "unset", "m2", "scheduler.instance"]),
        "silo cluster unset",
    );

    // A rename through another member (the stock client): done by m3 itself; its
    // instances, lease and listing follow.
    let o = ms[0].d.lxc(&["cluster", "rename", "m3", "m3b"]);
    assert!(o.status.success(), "lxc cluster rename: {}", show(&o));
    assert_eq!(location_of(&ms[1].d, "g1"), "m3b");
    std::thread::sleep(Duration::from_secs(2));
    let names: Vec<String> = members(&ms[0].d)
        .iter()
        .map(|m| {
            format!(
                "{}={}",
                m["server_name"].as_str().unwrap_or(""),
                m["status"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(names, ["m1=Online", "m2=Online", "m3b=Online"], "{names:?}");
    let o = ms[1].d.lxc(&["cluster", "rename", "m1", "m2"]);
    assert!(!o.status.success(), "a rename onto a taken name was done");
    let (code, out, _) = ms[1].d.exec("g1", &["hostname"]);
    assert_eq!((code, out.trim()), (0, "g1"));
    for n in ["g2", "g3"] {
        ms[1].d.set_state(n, "stop", true);
        ms[1]
            .d
            .api_ok("DELETE", &format!("/1.0/instances/{n}"), None);
    }

    // The image deleted through m2 (once unused) goes from every member, files too.
    ms[1].d.set_state("g1", "stop", true);
    ms[1].d.api_ok("DELETE", "/1.0/instances/g1", None);
    ms[1].d.api_ok("DELETE", &format!("/1.0/images/{fp}"), None);
    let m1_file = ms[0].d.dir.join("images").join(&fp);
    assert!(
        wait_until(Duration::from_secs(20), || !m1_file.exists()
            && !m3_file.exists()),
        "the image's files stayed: m1 {}, m3 {}",
        m1_file.exists(),
        m3_file.exists()
    );
    for m in &ms {
        let v = m.d.api_ok("GET", "/1.0/images", None);
        assert_eq!(v, json!([]), "{}", m.name);
        let (c, _) = m.d.api("GET", "/1.0/images/aliases/busybox", None);
        assert_eq!(c, 404, "{}: the alias went with its image", m.name);
    }
}

#[test]
fn pools_and_networks_are_defined_cluster_wide_with_each_members_keys() {
    let (hub, mut ms) = form("cl-defs", 19, 3);
    // Without a pending part on every member: refused, naming what is missing.
    let o = ms[0].d.lxc(&["storage", "create", "cp", "btrfs"]);
    assert!(
        !o.status.success(),
        "a cluster pool with no member's part was made"
    );
    assert!(show(&o).contains("--target"), "{}", show(&o));
    // A cluster key with --target is refused, naming it.
    let o = ms[0].d.lxc(&[
        "storage",
        "create",
        "cp",
        "btrfs",
        "rsync.bwlimit=1",
        "--target",
        "m1",
    ]);
    assert!(!o.status.success(), "a cluster key was taken with --target");
    assert!(show(&o).contains("rsync.bwlimit"), "{}", show(&o));
    // Each member's own size (a member key), given through another member; one member
    // missing is named.
    let size = |i: usize| format!("{}MiB", 256 + 32 * i);
    let bytes = |i: usize| ((256 + 32 * i) << 20).to_string();
    for (i, m) in ms.iter().enumerate().take(2) {
        let o = ms[(i + 1) % 3].d.lxc(&[
            "storage",
            "create",
            "cp",
            "btrfs",
            &format!("size={}", size(i)),
            "--target",
            &m.name,
        ]);
        assert!(o.status.success(), "pending on {}: {}", m.name, show(&o));
    }
    let o = ms[1].d.lxc(&["storage", "create", "cp", "btrfs"]);
    assert!(!o.status.success(), "made without m3's part");
    assert!(show(&o).contains("m3"), "{}", show(&o));
    let o = ms[0].d.lxc(&[
        "storage",
        "create",
        "cp",
        "btrfs",
        &format!("size={}", size(2)),
        "--target",
        "m3",
    ]);
    assert!(o.status.success(), "pending on m3: {}", show(&o));
    let o = ms[1].d.lxc(&["storage", "create", "cp", "btrfs"]);
    assert!(o.status.success(), "the cluster-wide create: {}", show(&o));
    for (i, m) in ms.iter().enumerate() {
        // Each member's own pool, of its own size.
        let v = m.d.api_ok("GET", "/1.0/storage-pools/cp", None);
        assert_eq!(v["config"]["size"], bytes(i), "{}: {v}", m.name);
        assert_eq!(v["driver"], "btrfs", "{}: {v}", m.name);
    }
    // An instance on m2's part of the pool, through m3.
    let image = silo_tests::busybox_image(false);
    ms[0].d.import(&image[0], "busybox");
    let (c, v) = ms[2].d.api(
        "POST",
        "/1.0/instances?target=m2",
        Some(
            json!({"name": "d1", "source": {"type": "image", "alias": "busybox"},
                    "devices": {"root": {"type": "disk", "path": "/", "pool": "cp"}}}),
        ),
    );
    assert_eq!(c, 202, "{v}");
    assert_eq!(op_error(&ms[2].d, &v), "", "create d1 on m2's cp");
    let o = ms[0].d.lxc(&["storage", "delete", "cp"]);
    assert!(!o.status.success(), "a pool in use was deleted");
    // Moved to m3 (stock client, through m1): pulled by m3 as a migration, gone from m2.
    ms[0].d.set_state("d1", "start", false);
    let o = ms[0].d.lxc(&["move", "d1", "--target", "m3"]);
    assert!(!o.status.success(), "a running instance was moved");
    assert!(show(&o).contains("stop it"), "{}", show(&o));
    ms[0].d.set_state("d1", "stop", true);
    let o = ms[0].d.lxc(&["move", "d1", "--target", "m3"]);
    assert!(o.status.success(), "lxc move --target m3: {}", show(&o));
    assert_eq!(location_of(&ms[1].d, "d1"), "m3");
    for (target, has) in [("m2", false), ("m3", true)] {
        let v = ms[0].d.api_ok(
            "GET",
            &format!("/1.0/storage-pools/cp/volumes?target={target}"),
            None,
        );
        let listed =
            v.to_string().contains("/container/d1") || v.to_string().contains("/containers/d1");
        assert_eq!(listed, has, "d1's volume on {target}: {v}");
    }
    ms[0].d.set_state("d1", "start", false);
    let (code, out, _) = ms[0].d.exec("d1", &["hostname"]);
    assert_eq!((code, out.trim()), (0, "d1"));
    ms[0].d.set_state("d1", "stop", true);
    ms[2].d.api_ok("DELETE", "/1.0/instances/d1", None);
    // A network the same way: the member keys apart, the cluster's keys for all.
    for m in &ms {
        let o = ms[0]
            .d
            .lxc(&["network", "create", "silocbr0", "--target", &m.name]);
        assert!(
            o.status.success(),
            "network pending on {}: {}",
            m.name,
            show(&o)
        );
    }
    let o = ms[2].d.lxc(&[
        "network",
        "create",
        "silocbr0",
        "ipv4.address=10.219.7.1/24",
        "ipv4.nat=false",
        "ipv6.address=none",
    ]);
    assert!(o.status.success(), "the cluster-wide network: {}", show(&o));
    for m in &ms {
        let v = m.d.api_ok("GET", "/1.0/networks/silocbr0", None);
        assert_eq!(
            v["config"]["ipv4.address"], "10.219.7.1/24",
            "{}: {v}",
            m.name
        );
    }
    // A change without --target reaches every member; one with --target that member only.
    let o = ms[0]
        .d
        .lxc(&["network", "set", "silocbr0", "ipv4.dhcp=false"]);
    assert!(o.status.success(), "{}", show(&o));
    for m in &ms {
        let v = m.d.api_ok("GET", "/1.0/networks/silocbr0", None);
        assert_eq!(v["config"]["ipv4.dhcp"], "false", "{}: {v}", m.name);
    }
    // A member joining later makes the cluster's pool and network, with the member keys it
    // is asked for (GET /1.0/cluster's member_config) and answers.
    let v = ms[0].d.api_ok("GET", "/1.0/cluster", None);
    let asked: Vec<String> = v["member_config"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|k| {
            format!(
                "{}/{}/{}",
                k["entity"].as_str().unwrap_or(""),
                k["name"].as_str().unwrap_or(""),
                k["key"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in [
        "storage-pool/cp/size",
        "network/silocbr0/bridge.external_interfaces",
    ] {
        assert!(
            asked.iter().any(|a| a == want),
            "{want} not asked: {asked:?}"
        );
    }
    let m4 = start_member("cl-defs", &hub, 4);
    let t = token(&ms[0], "m4");
    let (c, v) = m4.d.api(
        "PUT",
        "/1.0/cluster",
        Some(json!({
            "server_name": "m4", "enabled": true, "cluster_token": t,
            "server_address": format!("{}:8443", m4.addr),
            "member_config": [{"entity": "storage-pool", "name": "cp", "key": "size", "value": "384MiB"}],
        })),
    );
    assert_eq!(c, 202, "{v}");
    assert_eq!(op_error(&m4.d, &v), "", "m4 joining:\n{}", m4.d.log_text());
    let v = m4.d.api_ok("GET", "/1.0/storage-pools/cp", None);
    assert_eq!(v["config"]["size"], (384u64 << 20).to_string(), "{v}");
    let v = m4.d.api_ok("GET", "/1.0/networks/silocbr0", None);
    assert_eq!(
        v["config"]["ipv4.dhcp"], "false",
        "the definition as changed: {v}"
    );
    ms.push(m4);

    // Deletes go from every member.
    for what in [
        ["network", "delete", "silocbr0"],
        ["storage", "delete", "cp"],
    ] {
        let o = ms[1].d.lxc(&what);
        assert!(o.status.success(), "{what:?}: {}", show(&o));
    }
    for m in &ms {
        let (c, _) = m.d.api("GET", "/1.0/storage-pools/cp", None);
        assert_eq!(c, 404, "{} still has cp", m.name);
        let (c, _) = m.d.api("GET", "/1.0/networks/silocbr0", None);
        assert_eq!(c, 404, "{} still has silocbr0", m.name);
    }
}

#[test]
fn a_member_joins_by_answering_silo_inits_questions() {
    let (hub, ms) = form("cl-ask", 20, 2);
    let m3 = start_member("cl-ask", &hub, 3);
    let t = token(&ms[0], "m3");
    // lxd init's questions, in its order: clustering, name, address, joining, the token,
    // the data-loss warning, the preseed print.
    let answers = format!("yes\nm3\n{}\nyes\n{t}\nyes\nno\n", m3.addr);
    let o = m3.d.silo_stdin(&["init"], &answers);
    assert!(
        o.status.success(),
        "silo init: {}\nlog:\n{}",
        show(&o),
        m3.d.log_text()
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.contains("All existing data is lost when joining a cluster"),
        "{text}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || status_of(&ms[1].d, "m3")
            == "Online"),
        "m3 not ONLINE: {:?}",
        members(&ms[1].d)
    );
    let v = m3.d.api_ok("GET", "/1.0", None);
    assert_eq!(v["environment"]["server_name"], "m3", "{v}");
    // Answering no to the warning changes nothing.
    let m4 = start_member("cl-ask", &hub, 4);
    let t = token(&ms[0], "m4");
    let o =
        m4.d.silo_stdin(&["init"], &format!("yes\nm4\n{}\nyes\n{t}\nno\n", m4.addr));
    assert!(!o.status.success(), "a cancelled join succeeded");
    assert!(show(&o).contains("cancelled"), "{}", show(&o));
    let v = m4.d.api_ok("GET", "/1.0/cluster", None);
    assert_eq!(v["enabled"], false, "{v}");
}
