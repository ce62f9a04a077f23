//! `/1.0/warnings`: what silo finds degraded on the host at start, raised once, counted when
//! seen again, resolved when gone, and acknowledged and deleted with the stock `lxc warning`
//! and `silo warning`. The degraded host is made by starting silod as on a pure-cgroup2 host
//! (a private mount namespace with a fresh cgroup2 mount): on this hybrid host the v1
//! hierarchies keep the memory controller, so cgroup2 offers none.

use serde_json::{json, Value};
use silo_tests::{show, TestDaemon};

const MEMORY: &str = "Couldn't find the CGroup memory controller";

fn warnings(d: &TestDaemon) -> Vec<Value> {
    d.api_ok("GET", "/1.0/warnings?recursion=1", None)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn of_type(d: &TestDaemon, kind: &str) -> Value {
    let all = warnings(d);
    let found: Vec<&Value> = all.iter().filter(|w| w["type"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind:?} warning expected: {all:#?}");
    found[0].clone()
}

fn restart(d: &mut TestDaemon, pure_cgroup2: bool) {
    d.stop();
    d.set_pure_cgroup2(pure_cgroup2);
    d.spawn();
}

/// Whether this host binds the memory controller to a cgroup v1 hierarchy (what makes a
/// fresh cgroup2 mount lack it).
fn memory_on_v1() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.split_once(" - ").is_some_and(|(_, r)| {
                let f: Vec<&str> = r.split(' ').collect();
                f.first() == Some(&"cgroup")
                    && f.get(2)
                        .is_some_and(|o| o.split(',').any(|x| x == "memory"))
            })
        })
}

fn metric(d: &TestDaemon, name: &str) -> f64 {
    let (c, body) = d.api_raw("GET", "/1.0/metrics");
    assert_eq!(c, 200);
    let text = String::from_utf8_lossy(&body).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn host_warnings_are_raised_counted_resolved_acked_and_deleted() {
    assert!(
        memory_on_v1(),
        "this test needs a hybrid cgroup host (memory controller on a v1 hierarchy) to make \
         a host without a cgroup2 memory controller; this host has none"
    );
    let mut d = TestDaemon::start_pure_cgroup2("warn-host");
    let w = of_type(&d, MEMORY);
    assert_eq!(w["status"], "new", "{w}");
    assert_eq!(w["count"], 1, "{w}");
    assert_eq!(w["severity"], "low", "{w}");
    assert_eq!(w["location"], "none", "{w}");
    assert_eq!(w["entity_url"], "", "{w}");
    assert!(
        w["last_message"]
            .as_str()
            .is_some_and(|m| m.contains("limits.memory")),
        "{w}"
    );
    let uuid = w["uuid"].as_str().unwrap_or_default().to_string();
    // recursion=0 lists URLs.
    let urls = d.api_ok("GET", "/1.0/warnings", None);
    assert!(
        urls.as_array()
            .is_some_and(|a| a.contains(&json!(format!("/1.0/warnings/{uuid}")))),
        "{urls}"
    );
    let active = warnings(&d)
        .iter()
        .filter(|w| w["status"] != "resolved")
        .count();
    assert_eq!(metric(&d, "lxd_warnings_total"), active as f64);

    // Seen again at the next start: the same warning, counted.
    restart(&mut d, true);
    let w = of_type(&d, MEMORY);
    assert_eq!(
        (w["uuid"].as_str(), w["count"].as_i64()),
        (Some(uuid.as_str()), Some(2)),
        "{w}"
    );
    assert!(
        w["last_seen_at"].as_str() > w["first_seen_at"].as_str(),
        "{w}"
    );

    // The stock client acknowledges it: listed only with --all.
    let o = d.lxc(&["warning", "ack", &uuid]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(of_type(&d, MEMORY)["status"], "acknowledged");
    let o = d.lxc(&["warning", "list", "--format", "csv"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&uuid),
        "{}",
        show(&o)
    );
    let o = d.lxc(&["warning", "list", "--all", "--format", "csv"]);
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        listed.contains(&format!("{uuid},{MEMORY},ACKNOWLEDGED,LOW,2")),
        "{}",
        show(&o)
    );
    let o = d.lxc(&["warning", "show", &uuid]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("status: acknowledged"),
        "{}",
        show(&o)
    );

    // Only "new" and "acknowledged" may be set.
    let (c, v) = d.api(
        "PUT",
        &format!("/1.0/warnings/{uuid}"),
        Some(json!({"status": "resolved"})),
    );
    assert_eq!(c, 403, "{v}");
    let (c, v) = d.api(
        "PUT",
        &format!("/1.0/warnings/{uuid}"),
        Some(json!({"status": "bogus"})),
    );
    assert_eq!(c, 400, "{v}");
    let (c, v) = d.api(
        "PATCH",
        &format!("/1.0/warnings/{uuid}"),
        Some(json!({"status": "new"})),
    );
    assert_eq!(c, 200, "{v}");
    assert_eq!(of_type(&d, MEMORY)["status"], "new");

    // The condition gone (cgroup v1's memory controller back in view): resolved.
    restart(&mut d, false);
    let w = of_type(&d, MEMORY);
    assert_eq!(
        (w["status"].as_str(), w["count"].as_i64()),
        (Some("resolved"), Some(2)),
        "{w}"
    );
    let active = warnings(&d)
        .iter()
        .filter(|w| w["status"] != "resolved")
        .count();
    assert_eq!(metric(&d, "lxd_warnings_total"), active as f64);
    // And back: the same warning is new again.
    restart(&mut d, true);
    let w = of_type(&d, MEMORY);
    assert_eq!(
        (w["status"].as_str(), w["count"].as_i64()),
        (Some("new"), Some(3)),
        "{w}"
    );

    // silo's CLI lists, shows and deletes; the stock client deletes too.
    let o = d.silo(&["warning", "list", "--format", "csv"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{uuid},{MEMORY},NEW,LOW,3")),
        "{}",
        show(&o)
    );
    let o = d.silo(&["warning", "show", &uuid]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("count: 3"),
        "{}",
        show(&o)
    );
    let o = d.silo(&["warning", "ack", &uuid]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(of_type(&d, MEMORY)["status"], "acknowledged");
    let o = d.silo(&["warning", "delete", &uuid]);
    assert!(o.status.success(), "{}", show(&o));
    let (c, _) = d.api("GET", &format!("/1.0/warnings/{uuid}"), None);
    assert_eq!(c, 404);
    let others: Vec<String> = warnings(&d)
        .iter()
        .filter_map(|w| w["uuid"].as_str().map(str::to_string))
        .collect();
    assert!(
        !others.is_empty(),
        "a pure-cgroup2 start here lacks more than memory"
    );
    let o = d.lxc(&["warning", "delete", &others[0]]);
    assert!(o.status.success(), "{}", show(&o));
    let o = d.silo(&["warning", "delete", "--all"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(warnings(&d).is_empty());
    assert_eq!(metric(&d, "lxd_warnings_total"), 0.0);
}
