//! LXD's default project, the only one silo has: read as LXD serves a fresh daemon's, kept as it
//! is, other projects refused with the reason (never answered with the default's objects).

use serde_json::json;
use silo_tests::{busybox_image, show, TestDaemon};

#[test]
fn the_default_project_is_served_and_others_are_refused() {
    let d = TestDaemon::start("projects");
    d.import(&busybox_image(false)[0], "busybox");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "p1", "source": {"type": "image", "alias": "busybox"},
                    "config": {"limits.memory": "64MiB", "limits.cpu": "0-1"}}),
        ),
    );

    let list = d.api_ok("GET", "/1.0/projects", None);
    assert_eq!(list, json!(["/1.0/projects/default"]));
    let p = d.api_ok("GET", "/1.0/projects/default", None);
    assert_eq!(p["config"]["features.images"], "true", "{p}");
    assert_eq!(p["config"]["features.storage.volumes"], "true", "{p}");
    let used: Vec<&str> = p["used_by"]
        .as_array()
        .expect("used_by")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(used.contains(&"/1.0/instances/p1"), "{p}");
    assert!(used.contains(&"/1.0/profiles/default"), "{p}");
    assert!(used.iter().any(|u| u.starts_with("/1.0/images/")), "{p}");
    let full = d.api_ok("GET", "/1.0/projects?recursion=1", None);
    assert_eq!(full[0]["name"], "default", "{full}");

    // Usage sums the instances' limits as LXD does; there are no project limits.
    let st = d.api_ok("GET", "/1.0/projects/default/state", None);
    let r = &st["resources"];
    assert_eq!(r["instances"], json!({"limit": -1, "usage": 1}), "{st}");
    assert_eq!(r["containers"]["usage"], 1, "{st}");
    assert_eq!(r["memory"]["usage"], 64 * 1024 * 1024, "{st}");
    assert_eq!(r["cpu"]["usage"], 2, "{st}");

    // A provisioning tool putting back what it read succeeds; a change is refused naming it.
    let put = json!({"config": p["config"], "description": p["description"]});
    d.api_ok("PUT", "/1.0/projects/default", Some(put));
    // The description is the project's own, changed as LXD changes it.
    d.api_ok(
        "PATCH",
        "/1.0/projects/default",
        Some(json!({"description": "our project"})),
    );
    let p = d.api_ok("GET", "/1.0/projects/default", None);
    assert_eq!(p["description"], "our project", "{p}");
    let (c, v) = d.api(
        "PATCH",
        "/1.0/projects/default",
        Some(json!({"config": {"limits.instances": "3"}})),
    );
    assert_eq!(c, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("limits.instances"),
        "{v}"
    );

    let (c, v) = d.api("POST", "/1.0/projects", Some(json!({"name": "other"})));
    assert_eq!(c, 501, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("default project only"),
        "{v}"
    );
    let (c, v) = d.api("DELETE", "/1.0/projects/default", None);
    assert_eq!(c, 403, "{v}");
    let (c, _) = d.api("GET", "/1.0/projects/other", None);
    assert_eq!(c, 404);

    // ?project= another project is a 404, not the default project's instances.
    let (c, v) = d.api("GET", "/1.0/instances?project=other", None);
    assert_eq!(c, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("Project not found"),
        "{v}"
    );
    let (c, v) = d.api("GET", "/1.0/instances?project=default", None);
    assert_eq!(c, 200, "{v}");

    // The stock client, selecting a project as tools do.
    let o = d.lxc(&["list", "--project", "default", "--format", "csv", "-c", "n"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "p1");
    let o = d.lxc(&["list", "--project", "other"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(show(&o).contains("Project not found"), "{}", show(&o));
    let o = d.lxc(&["query", "/1.0/projects/default/state"]);
    assert!(o.status.success(), "{}", show(&o));
}
