//! `security.nesting` for real: silo itself runs inside a silo container (Debian, systemd)
//! and launches a busybox container of its own, in ids the outer instance holds
//! (`security.idmap.size`), with the host's binaries and images shared read-only through
//! disk devices.

use std::time::{Duration, Instant};

use serde_json::json;
use silo_tests::{bin_dir, busybox_image, debian_image, wait_booted, TestDaemon};

fn sh(d: &TestDaemon, name: &str, script: &str) -> (i64, String, String) {
    d.exec(name, &["sh", "-c", script])
}

fn sh_ok(d: &TestDaemon, name: &str, script: &str) -> String {
    let (rc, out, err) = sh(d, name, script);
    assert_eq!(rc, 0, "{script}: {out} {err}");
    out
}

#[test]
fn silo_runs_inside_a_nesting_container_and_launches_busybox() {
    let bins = bin_dir().display().to_string();
    let busybox = busybox_image(false)[0].clone();
    let images = busybox.parent().expect("image dir").display().to_string();
    let image_file = busybox
        .file_name()
        .expect("image name")
        .to_string_lossy()
        .into_owned();
    let d =
        TestDaemon::start_with_policy("nesting", &format!("host_paths = [{bins:?}, {images:?}]\n"));
    d.import(&debian_image(), "debian");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": "outer",
            "source": {"type": "image", "alias": "debian"},
            "config": {"security.nesting": "true", "security.idmap.size": "196608"},
            "devices": {
                "silo": {"type": "disk", "source": bins, "path": "/opt/silo", "readonly": "true"},
                "images": {"type": "disk", "source": images, "path": "/opt/images", "readonly": "true"},
            },
        })),
    );
    let i = d.api_ok("GET", "/1.0/instances/outer", None);
    assert!(
        i["config"]["volatile.idmap.next"]
            .as_str()
            .unwrap_or("")
            .contains("196608"),
        "{i}"
    );
    let op = d.set_state("outer", "start", false);
    assert_eq!(op["status"], "Success", "{op}");
    wait_booted(&d, "outer");
    // Three blocks of ids, and the fully visible proc and sysfs a manager inside needs.
    let map = sh_ok(&d, "outer", "cat /proc/self/uid_map");
    assert_eq!(map.split_whitespace().nth(2), Some("196608"), "{map}");
    sh_ok(&d, "outer", "grep -q ' /dev/.lxc/proc ' /proc/self/mountinfo && grep -q ' /dev/.lxc/sys ' /proc/self/mountinfo");

    // silo inside: root's subordinate ids are the two blocks above the instance's own, the
    // state dir is on a tmpfs of the instance's (idmapped mounts need a filesystem its user
    // namespace owns).
    sh_ok(
        &d,
        "outer",
        "echo root:65536:131072 > /etc/subuid && echo root:65536:131072 > /etc/subgid \
         && (getent passwd silo || useradd --system --no-create-home silo) \
         && mkdir -p /srv/nested /etc/silo && mount -t tmpfs -o size=768m,mode=755 nested /srv/nested \
         && echo 'dir_pool_reserve = 16777216' > /etc/silo/policy.toml",
    );
    sh_ok(
        &d,
        "outer",
        "setsid /opt/silo/silod --state-dir /srv/nested/state > /srv/nested/silod.log 2>&1 < /dev/null &",
    );
    let t0 = Instant::now();
    let silo = "SILO_SOCKET=/srv/nested/state/unix.socket /opt/silo/silo";
    loop {
        let (rc, _, _) = sh(&d, "outer", &format!("{silo} list >/dev/null 2>&1"));
        if rc == 0 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let (_, log, _) = sh(&d, "outer", "cat /srv/nested/silod.log");
            panic!("the nested silod never answered:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let run = |cmd: &str| {
        let (rc, out, err) = sh(&d, "outer", &format!("{silo} {cmd}"));
        if rc != 0 {
            let (_, log, _) = sh(&d, "outer", "tail -n 40 /srv/nested/silod.log");
            panic!("silo {cmd}: {out} {err}\nnested silod's log:\n{log}");
        }
        out
    };
    run(&format!(
        "image import /opt/images/{image_file} --alias busybox"
    ));
    run("launch busybox inner");
    let inner_map = run("exec inner -- cat /proc/self/uid_map");
    // The nested container's root is the outer instance's id 65536, which is host id
    // base+65536: ids the outer instance holds and no other instance does.
    assert_eq!(
        inner_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "65536", "65536"],
        "{inner_map}"
    );
    assert_eq!(run("exec inner -- hostname").trim(), "inner");
    let list = run("list --format csv -c ns");
    assert!(list.contains("inner,RUNNING"), "{list}");
    run("stop -f inner");
    run("delete inner");
}
