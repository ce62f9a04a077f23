//! Device figures: starting busybox with no disk and with four (two custom volumes, a host
//! directory, a host file), hot-plugging and unplugging a disk and a block device into a
//! running instance, and a profile edit reaching running instances. Run as root:
//! `cargo build --release --workspace && cargo bench -p silo-tests --bench devices`

use std::time::{Duration, Instant};

use serde_json::json;
use silo_tests::{busybox_image, SpareDisk, TestDaemon};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let share = tempfile::Builder::new()
        .prefix("silo-bench-share-")
        .tempdir()
        .expect("tempdir");
    std::fs::write(share.path().join("file"), "x").expect("write");
    let disk = SpareDisk::new("bench-devices", 1 << 20);
    let d = TestDaemon::start_with_policy(
        "bench-devices",
        &format!(
            "host_paths = [{:?}]\nhost_devices = [{:?}]\n",
            share.path().display().to_string(),
            disk.dev
        ),
    );
    d.import(&busybox_image(false)[0], "busybox");
    for v in ["v1", "v2"] {
        d.api_ok(
            "POST",
            "/1.0/storage-pools/default/volumes",
            Some(json!({"name": v, "type": "custom"})),
        );
    }
    let src = share.path().display().to_string();
    let four = json!({
        "v1": {"type": "disk", "pool": "default", "source": "v1", "path": "/v1"},
        "v2": {"type": "disk", "pool": "default", "source": "v2", "path": "/v2", "readonly": "true"},
        "h": {"type": "disk", "source": src, "path": "/mnt/h"},
        "f": {"type": "disk", "source": format!("{src}/file"), "path": "/etc/f"},
    });
    let runs = 5;
    for (label, devices) in [("no disk", json!({})), ("four disks", four)] {
        let mut starts = Vec::new();
        for n in 0..runs {
            let name = format!("s{}{n}", label.len());
            d.api_ok(
                "POST",
                "/1.0/instances",
                Some(
                    json!({"name": name, "source": {"type": "image", "alias": "busybox"},
                    "devices": devices}),
                ),
            );
            starts.push(timed(|| {
                d.set_state(&name, "start", false);
            }));
            d.set_state(&name, "stop", true);
            d.api_ok("DELETE", &format!("/1.0/instances/{name}"), None);
        }
        println!(
            "start busybox, {label:<11}: median {} of {runs}",
            ms(median(starts))
        );
    }

    d.launch("busybox", "c1");
    let (mut plug, mut unplug) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        plug.push(timed(|| {
            d.api_ok(
                "PATCH",
                "/1.0/instances/c1",
                Some(json!({"devices": {"h": {"type": "disk", "source": src, "path": "/mnt/h"}}})),
            );
        }));
        unplug.push(timed(|| {
            d.api_ok(
                "PUT",
                "/1.0/instances/c1",
                Some(json!({"devices": {}, "profiles": ["default"]})),
            );
        }));
    }
    println!(
        "hot-plug a host directory  : median {} of 10",
        ms(median(plug))
    );
    println!(
        "unplug it                  : median {} of 10",
        ms(median(unplug))
    );
    let (mut plug, mut unplug) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        plug.push(timed(|| {
            d.api_ok(
                "PATCH",
                "/1.0/instances/c1",
                Some(json!({"devices": {"b": {"type": "unix-block", "source": disk.dev, "path": "/dev/xdisk"}}})),
            );
        }));
        unplug.push(timed(|| {
            d.api_ok(
                "PUT",
                "/1.0/instances/c1",
                Some(json!({"devices": {}, "profiles": ["default"]})),
            );
        }));
    }
    println!(
        "give a block device        : median {} of 10",
        ms(median(plug))
    );
    println!(
        "take it back               : median {} of 10",
        ms(median(unplug))
    );

    // A profile edit reaching ten running instances.
    d.api_ok("POST", "/1.0/profiles", Some(json!({"name": "data"})));
    for n in 0..10 {
        let name = format!("p{n}");
        d.api_ok(
            "POST",
            "/1.0/instances",
            Some(json!({"name": name, "profiles": ["default", "data"],
                "source": {"type": "image", "alias": "busybox"}})),
        );
        d.set_state(&name, "start", false);
    }
    let edit = timed(|| {
        d.api_ok(
            "PATCH",
            "/1.0/profiles/data",
            Some(json!({"devices": {"h": {"type": "disk", "source": src, "path": "/mnt/h"}}})),
        );
    });
    println!("profile disk to 10 running : {}", ms(edit));
}
