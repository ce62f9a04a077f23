//! GET /1.0 lists only what silo has: every entry of `api_extensions` has a check here that
//! exercises the extension's behaviour (through the stock `lxc` where it has a command, else
//! the API), and an entry without a check fails the test. To list a new extension, add a
//! `(name, check)` row to [`CHECKS`].

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use silo_tests::{busybox_image, show, TestDaemon};

/// What every check may use: a daemon with the busybox image, `c1` running, `cs` stopped, the
/// custom volume `v1` on the default pool, a second pool `p2`, and an HTTPS listener the
/// stock client (`lxc_net`, remote `self`) reaches inside the daemon's namespace.
struct Fx {
    d: TestDaemon,
    pool: String,
    network: String,
    lxc_conf: PathBuf,
}

type Check = fn(&Fx) -> Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Every extension silo lists, with the check of its behaviour.
const CHECKS: &[(&str, Check)] = &[
    ("operation_description", operation_description),
    ("container_push", container_push),
    ("container_push_target", container_push_target),
    ("container_only_migration", container_only_migration),
    ("instance_pool_move", instance_pool_move),
    ("storage_api_local_volume_handling", local_volume_handling),
    ("storage_api_remote_volume_handling", remote_volume_handling),
    ("storage_api_volume_rename", volume_rename),
    ("storage_api_volume_snapshots", volume_snapshots),
    ("custom_volume_snapshot_expiry", volume_snapshot_expiry),
    ("storage_volume_state", volume_state),
    ("custom_volume_backup", custom_volume_backup),
    ("api_os", api_os),
    ("event_location", event_location),
    ("event_project", event_project),
    ("etag", etag),
    ("patch", patch),
    ("instances", instances),
    ("api_filtering", api_filtering),
    ("container_full", container_full),
    ("instance_get_full", instance_get_full),
    ("profile_usedby", profile_usedby),
    ("storage", storage),
    ("image_profiles", image_profiles),
    ("entity_description", entity_description),
    ("resources", resources),
    ("resources_v2", resources_v2),
    ("resource_limits", resource_limits),
    ("container_cpu_time", container_cpu_time),
    ("network_state", network_state),
    ("container_nic_routes", nic_routes),
    ("container_nic_routed", nic_routed),
    ("container_nic_routed_gateway", nic_routed_gateway),
    ("container_nic_routed_host_address", nic_routed_host_address),
    ("container_nic_routed_limits", nic_routed_limits),
    ("container_nic_ipvlan", nic_ipvlan),
    ("container_nic_ipvlan_mode", nic_ipvlan_mode),
    ("container_nic_ipfilter", nic_ipfilter),
    ("container_exec_recording", exec_recording),
    ("container_exec_signal_handling", exec_signal_handling),
    ("container_exec_user_group_cwd", exec_user_group_cwd),
    ("console", console),
    ("directory_manipulation", directory_manipulation),
    ("file_delete", file_delete),
    ("file_append", file_append),
    ("file_symlinks", file_symlinks),
    ("file_get_symlink", file_get_symlink),
    ("network", network),
    ("network_leases", network_leases),
    ("network_dhcp_expiry", network_dhcp_expiry),
    ("proxy", proxy),
    ("proxy_unix", proxy_unix),
    ("proxy_udp", proxy_udp),
    ("proxy_tcp_udp_multi_port_handling", proxy_multi_port),
    ("image_compression_algorithm", image_compression_algorithm),
    ("image_create_aliases", image_create_aliases),
    ("instance_nic_network", instance_nic_network),
    ("snapshot_expiry", snapshot_expiry),
    ("snapshot_expiry_creation", snapshot_expiry_creation),
    ("container_backup", container_backup),
    ("backup_compression", backup_compression),
    ("backup_compression_algorithm", backup_compression_algorithm),
    ("container_backup_override_pool", backup_override_pool),
    ("backup_override_name", backup_override_name),
    ("container_incremental_copy", incremental_copy),
    ("certificate_update", certificate_update),
    ("certificate_token", certificate_token),
    ("instance_all_projects", instance_all_projects),
    ("storage_volumes_all_projects", storage_volumes_all_projects),
    ("container_edit_metadata", edit_metadata),
    ("instance_file_head", file_head),
    ("restrict_devlxd", restrict_devlxd),
    ("devlxd_events", devlxd_events),
    ("cloud_init", cloud_init),
    ("warnings", warnings),
    ("metrics", metrics),
    ("metrics_cpu_seconds", metrics_cpu_seconds),
    ("instance_bulk_state_change", bulk_state_change),
    // Last in silo's list, so every check before runs on a standalone server.
    ("clustering", clustering),
    ("clustering_join", clustering_join),
    ("clustering_join_token", clustering_join_token),
    ("clustering_evacuation", clustering_evacuation),
];

#[test]
fn every_listed_extension_works() {
    let fx = setup();
    let server = fx.d.api_ok("GET", "/1.0", None);
    let listed: Vec<String> = server["api_extensions"]
        .as_array()
        .expect("api_extensions")
        .iter()
        .map(|e| e.as_str().expect("a name").to_string())
        .collect();
    let mut failures = Vec::new();
    // API_EXT_ONLY=name,name runs those checks alone (while working on one).
    let only = std::env::var("API_EXT_ONLY").unwrap_or_default();
    for ext in &listed {
        if !only.is_empty() && !only.split(',').any(|o| o == ext) {
            continue;
        }
        match CHECKS.iter().find(|(n, _)| n == ext) {
            None => failures.push(format!("{ext}: listed, but no check here exercises it")),
            Some((_, check)) => {
                let t0 = std::time::Instant::now();
                let r = check(&fx);
                eprintln!(
                    "{ext}: {:?} in {:?}",
                    r.as_ref().map(|_| "ok"),
                    t0.elapsed()
                );
                if let Err(e) = r {
                    failures.push(format!("{ext}: {e}"));
                }
            }
        }
    }
    for (n, _) in CHECKS {
        if !only.is_empty() {
            break;
        }
        if !listed.iter().any(|e| e == n) {
            failures.push(format!("{n}: a check for an extension silo does not list"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} extensions:\n{}",
        failures.len(),
        listed.len(),
        failures.join("\n")
    );
}

// ---- the fixture and helpers ----

fn setup() -> Fx {
    let d = TestDaemon::start("api-ext");
    d.import(&busybox_image(false)[0], "bb");
    d.launch("bb", "c1");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "cs", "source": {"type": "image", "alias": "bb"}})),
    );
    let profile = d.api_ok("GET", "/1.0/profiles/default", None);
    let pool = profile["devices"]["root"]["pool"]
        .as_str()
        .expect("root pool")
        .to_string();
    let network = profile["devices"]["eth0"]["network"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.api_ok(
        "POST",
        &format!("/1.0/storage-pools/{pool}/volumes/custom"),
        Some(json!({"name": "v1", "type": "custom"})),
    );
    d.api_ok(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "p2", "driver": "dir"})),
    );
    d.listen_https("127.0.0.1:8443", "sekret");
    let lxc_conf = d.dir.join("lxc-net-conf");
    let fx = Fx {
        d,
        pool,
        network,
        lxc_conf,
    };
    let o = fx.lxc_net(&[
        "remote",
        "add",
        "self",
        "https://127.0.0.1:8443",
        "--password",
        "sekret",
        "--accept-certificate",
    ]);
    assert!(o.status.success(), "lxc remote add: {}", show(&o));
    fx
}

impl Fx {
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.d.api(method, path, body)
    }

    /// A call that must succeed (waiting for its operation): its metadata.
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let (c, v) = self.d.api(method, path, body);
        if !(c == 200 || c == 201 || c == 202) {
            return Err(format!("{method} {path}: {c} {v}"));
        }
        if v["type"] == "async" {
            let op = self.d.wait_op(&v);
            if op["status"] != "Success" {
                return Err(format!("{method} {path}: {op}"));
            }
            return Ok(op);
        }
        Ok(v["metadata"].clone())
    }

    /// A call that must be refused as a bad request.
    fn refused(&self, method: &str, path: &str, body: Value) -> Result<(), String> {
        let (c, v) = self.d.api(method, path, Some(body));
        ensure!(c == 400, "{method} {path}: expected 400, got {c} {v}");
        Ok(())
    }

    fn lxc(&self, args: &[&str]) -> Result<String, String> {
        let o = self.d.lxc(args);
        ensure!(o.status.success(), "lxc {args:?}: {}", show(&o));
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// The stock client inside the daemon's network namespace, with the `self` remote.
    fn lxc_net(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!(
                "--net=/proc/{}/fd/{}",
                std::process::id(),
                self.d.netns.as_raw_fd()
            ))
            .arg("lxc")
            .args(args)
            .env("LXD_CONF", &self.lxc_conf)
            .env_remove("LXD_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("nsenter lxc")
    }

    fn lxc_net_ok(&self, args: &[&str]) -> Result<String, String> {
        let o = self.lxc_net(args);
        ensure!(o.status.success(), "lxc {args:?}: {}", show(&o));
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// curl on the unix socket with extra arguments: (status, headers and body).
    fn curl(&self, args: &[&str], path: &str) -> (u16, String) {
        let o = Command::new("curl")
            .args(["-s", "-i", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(self.d.socket())
            .args(args)
            .arg(format!("http://silo{path}"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// A command as c1's root, outside its mount namespace: its user namespace entered, so it
    /// reaches c1's `/dev/lxd/sock` (as `DEVLXD_SOCK`) through `/proc/<init>/root`.
    fn as_c1_root(&self, argv: &[&str]) -> Result<Command, String> {
        let st = self.ok("GET", "/1.0/instances/c1/state", None)?;
        let pid = st["pid"]
            .as_i64()
            .filter(|p| *p > 0)
            .ok_or(format!("no pid: {st}"))?;
        let mut c = Command::new("nsenter");
        c.args(["-t", &pid.to_string(), "-U", "-S", "0", "-G", "0", "--"])
            .args(argv)
            .env("DEVLXD_SOCK", format!("/proc/{pid}/root/dev/lxd/sock"));
        Ok(c)
    }

    /// `GET path` on c1's /dev/lxd as its root: (status, body).
    fn devlxd(&self, path: &str) -> Result<(u16, String), String> {
        let out = self
            .as_c1_root(&[
                "sh",
                "-c",
                &format!(
                    "curl -s -w '\\n%{{http_code}}' --max-time 10 --unix-socket \
                     \"$DEVLXD_SOCK\" 'http://lxd{path}'"
                ),
            ])?
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    fn sh(&self, cmd: &str) -> Result<String, String> {
        let (rc, out, err) = self.d.exec("c1", &["sh", "-c", cmd]);
        ensure!(rc == 0, "{cmd}: {rc} {out}{err}");
        Ok(out)
    }

    fn exists(&self, path: &str) -> bool {
        self.api("GET", path, None).0 == 200
    }

    fn delete_instance(&self, name: &str) {
        let _ = self
            .d
            .api_ok("DELETE", &format!("/1.0/instances/{name}"), None);
    }

    fn vol(&self, name: &str) -> String {
        format!("/1.0/storage-pools/{}/volumes/custom/{name}", self.pool)
    }

    /// Adds `devices` to the stopped `cs`, or answers the refusal.
    fn add_device(&self, name: &str, dev: Value) -> (u16, Value) {
        self.api(
            "PATCH",
            "/1.0/instances/cs",
            Some(json!({"devices": {name: dev}})),
        )
    }

    fn device_ok(&self, name: &str, dev: Value) -> Result<(), String> {
        let (c, v) = self.add_device(name, dev);
        ensure!(c == 200, "device {name}: {c} {v}");
        // Taken away again, so the next check starts from the same instance.
        let inst = self.ok("GET", "/1.0/instances/cs", None)?;
        ensure!(
            inst["devices"][name].is_object(),
            "device {name} not kept: {inst}"
        );
        let mut devices = inst["devices"].clone();
        devices.as_object_mut().map(|m| m.remove(name));
        let mut put = inst.clone();
        put["devices"] = devices;
        self.ok("PUT", "/1.0/instances/cs", Some(put))?;
        Ok(())
    }

    /// Events of `kind` seen while `f` runs (the stock client's monitor).
    fn events_during(&self, kind: &str, f: impl FnOnce()) -> Vec<Value> {
        let child = Command::new("timeout")
            .args(["5", "lxc", "monitor", "--type", kind, "--format", "json"])
            .env("LXD_DIR", &self.d.dir)
            .env("LXD_CONF", self.d.dir.join("lxc-conf"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lxc monitor");
        std::thread::sleep(Duration::from_millis(1500));
        f();
        let o = child.wait_with_output().expect("monitor");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut out = Vec::new();
        let mut de = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        while let Some(Ok(v)) = de.next() {
            out.push(v);
        }
        out
    }
}

// ---- the checks ----

fn operation_description(fx: &Fx) -> Result<(), String> {
    let op = fx.ok(
        "POST",
        "/1.0/instances/cs/snapshots",
        Some(json!({"name": "opdesc"})),
    )?;
    ensure!(
        op["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{op}"
    );
    fx.ok("DELETE", "/1.0/instances/cs/snapshots/opdesc", None)?;
    Ok(())
}

/// `lxc copy --mode relay`: the target in push mode, the client joining both.
fn container_push(fx: &Fx) -> Result<(), String> {
    fx.lxc_net_ok(&["copy", "self:cs", "self:cs-relay", "--mode", "relay"])?;
    ensure!(fx.exists("/1.0/instances/cs-relay"), "no copy");
    fx.delete_instance("cs-relay");
    Ok(())
}

/// `lxc copy --mode push`: the source connects to the target (`target` on the POST).
fn container_push_target(fx: &Fx) -> Result<(), String> {
    fx.lxc_net_ok(&["copy", "self:cs", "self:cs-push", "--mode", "push"])?;
    ensure!(fx.exists("/1.0/instances/cs-push"), "no copy");
    fx.delete_instance("cs-push");
    Ok(())
}

fn container_only_migration(fx: &Fx) -> Result<(), String> {
    fx.ok(
        "POST",
        "/1.0/instances/cs/snapshots",
        Some(json!({"name": "keep"})),
    )?;
    fx.lxc_net_ok(&["copy", "self:cs", "self:cs-only", "--instance-only"])?;
    let snaps = fx.ok("GET", "/1.0/instances/cs-only/snapshots", None)?;
    ensure!(snaps == json!([]), "snapshots came along: {snaps}");
    fx.delete_instance("cs-only");
    fx.ok("DELETE", "/1.0/instances/cs/snapshots/keep", None)?;
    Ok(())
}

fn instance_pool_move(fx: &Fx) -> Result<(), String> {
    fx.lxc(&["copy", "cs", "cs-mv"])?;
    fx.lxc(&["move", "cs-mv", "--storage", "p2"])?;
    let i = fx.ok("GET", "/1.0/instances/cs-mv", None)?;
    ensure!(i["expanded_devices"]["root"]["pool"] == "p2", "{i}");
    fx.delete_instance("cs-mv");
    Ok(())
}

fn local_volume_handling(fx: &Fx) -> Result<(), String> {
    let from = format!("{}/v1", fx.pool);
    fx.lxc(&["storage", "volume", "copy", &from, "p2/v1-copy"])?;
    ensure!(
        fx.exists("/1.0/storage-pools/p2/volumes/custom/v1-copy"),
        "no copy"
    );
    fx.lxc(&["storage", "volume", "move", "p2/v1-copy", "p2/v1-moved"])?;
    ensure!(
        fx.exists("/1.0/storage-pools/p2/volumes/custom/v1-moved"),
        "no move"
    );
    fx.ok(
        "DELETE",
        "/1.0/storage-pools/p2/volumes/custom/v1-moved",
        None,
    )?;
    Ok(())
}

fn remote_volume_handling(fx: &Fx) -> Result<(), String> {
    let from = format!("self:{}/v1", fx.pool);
    fx.lxc_net_ok(&["storage", "volume", "copy", &from, "self:p2/v1-remote"])?;
    ensure!(
        fx.exists("/1.0/storage-pools/p2/volumes/custom/v1-remote"),
        "no copy"
    );
    fx.ok(
        "DELETE",
        "/1.0/storage-pools/p2/volumes/custom/v1-remote",
        None,
    )?;
    Ok(())
}

fn volume_rename(fx: &Fx) -> Result<(), String> {
    fx.lxc(&["storage", "volume", "rename", &fx.pool, "v1", "v1-renamed"])?;
    ensure!(fx.exists(&fx.vol("v1-renamed")), "not renamed");
    fx.lxc(&["storage", "volume", "rename", &fx.pool, "v1-renamed", "v1"])?;
    ensure!(fx.exists(&fx.vol("v1")), "not renamed back");
    Ok(())
}

fn volume_snapshots(fx: &Fx) -> Result<(), String> {
    fx.lxc(&["storage", "volume", "snapshot", &fx.pool, "v1", "vs1"])?;
    let list = fx.ok("GET", &format!("{}/snapshots", fx.vol("v1")), None)?;
    ensure!(list.to_string().contains("vs1"), "{list}");
    fx.ok("DELETE", &format!("{}/snapshots/vs1", fx.vol("v1")), None)?;
    Ok(())
}

fn volume_snapshot_expiry(fx: &Fx) -> Result<(), String> {
    fx.ok(
        "POST",
        &format!("{}/snapshots", fx.vol("v1")),
        Some(json!({"name": "vexp", "expires_at": "2099-01-02T03:04:05Z"})),
    )?;
    let s = fx.ok("GET", &format!("{}/snapshots/vexp", fx.vol("v1")), None)?;
    ensure!(
        s["expires_at"]
            .as_str()
            .is_some_and(|e| e.starts_with("2099-01-02")),
        "{s}"
    );
    fx.ok("DELETE", &format!("{}/snapshots/vexp", fx.vol("v1")), None)?;
    Ok(())
}

fn volume_state(fx: &Fx) -> Result<(), String> {
    let s = fx.ok("GET", &format!("{}/state", fx.vol("v1")), None)?;
    ensure!(s["usage"].is_object(), "{s}");
    Ok(())
}

fn custom_volume_backup(fx: &Fx) -> Result<(), String> {
    let file = fx.d.dir.join("v1-backup.tar.gz");
    let f = file.to_str().unwrap_or_default();
    fx.lxc(&["storage", "volume", "export", &fx.pool, "v1", f])?;
    fx.lxc(&["storage", "volume", "import", &fx.pool, f, "v1-imported"])?;
    let _ = std::fs::remove_file(&file);
    ensure!(fx.exists(&fx.vol("v1-imported")), "not imported");
    fx.ok("DELETE", &fx.vol("v1-imported"), None)?;
    Ok(())
}

fn api_os(fx: &Fx) -> Result<(), String> {
    let s = fx.ok("GET", "/1.0", None)?;
    ensure!(
        s["environment"]["os_name"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "{s}"
    );
    Ok(())
}

fn lifecycle_events(fx: &Fx) -> Vec<Value> {
    fx.events_during("lifecycle", || {
        let _ =
            fx.d.api_ok("POST", "/1.0/profiles", Some(json!({"name": "evp"})));
        let _ = fx.d.api_ok("DELETE", "/1.0/profiles/evp", None);
    })
}

fn event_location(fx: &Fx) -> Result<(), String> {
    let evs = lifecycle_events(fx);
    ensure!(!evs.is_empty(), "no events");
    ensure!(evs.iter().all(|e| e["location"].is_string()), "{evs:?}");
    Ok(())
}

fn event_project(fx: &Fx) -> Result<(), String> {
    let evs = lifecycle_events(fx);
    ensure!(!evs.is_empty(), "no events");
    ensure!(evs.iter().all(|e| e["project"] == "default"), "{evs:?}");
    Ok(())
}

fn etag(fx: &Fx) -> Result<(), String> {
    let (c, head) = fx.curl(&["-X", "GET"], "/1.0/profiles/default");
    ensure!(c == 200, "{c}");
    ensure!(head.to_lowercase().contains("\netag: "), "{head}");
    let body = fx.ok("GET", "/1.0/profiles/default", None)?;
    let put = json!({"config": body["config"], "description": body["description"], "devices": body["devices"]}).to_string();
    let (c, out) = fx.curl(
        &["-X", "PUT", "-H", "If-Match: \"not-the-etag\"", "-d", &put],
        "/1.0/profiles/default",
    );
    ensure!(c == 412, "a stale If-Match on a profile: {c} {out}");
    for (path, body) in [
        ("/1.0", json!({"config": {}})),
        ("/1.0/instances/cs", json!({"description": "x"})),
    ] {
        let (c, head) = fx.curl(&["-X", "GET"], path);
        ensure!(
            c == 200 && head.to_lowercase().contains("\netag: "),
            "{path}: {head}"
        );
        let b = body.to_string();
        let (c, out) = fx.curl(
            &["-X", "PATCH", "-H", "If-Match: \"stale\"", "-d", &b],
            path,
        );
        ensure!(c == 412, "a stale If-Match on {path}: {c} {out}");
    }
    Ok(())
}

fn patch(fx: &Fx) -> Result<(), String> {
    fx.ok(
        "PATCH",
        "/1.0/profiles/default",
        Some(json!({"config": {"user.patched": "yes"}})),
    )?;
    let p = fx.ok("GET", "/1.0/profiles/default", None)?;
    ensure!(p["config"]["user.patched"] == "yes", "{p}");
    ensure!(p["devices"]["root"].is_object(), "PATCH kept the rest: {p}");
    let mut put = p.clone();
    put["config"]
        .as_object_mut()
        .map(|m| m.remove("user.patched"));
    fx.ok("PUT", "/1.0/profiles/default", Some(put))?;
    Ok(())
}

fn instances(fx: &Fx) -> Result<(), String> {
    let l = fx.ok("GET", "/1.0/instances", None)?;
    ensure!(l.to_string().contains("/1.0/instances/c1"), "{l}");
    Ok(())
}

fn api_filtering(fx: &Fx) -> Result<(), String> {
    let l = fx.ok(
        "GET",
        "/1.0/instances?recursion=1&filter=name%20eq%20cs",
        None,
    )?;
    let names: Vec<&str> = l
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(names == ["cs"], "{l}");
    Ok(())
}

fn container_full(fx: &Fx) -> Result<(), String> {
    let l = fx.ok("GET", "/1.0/instances?recursion=2", None)?;
    let c1 = l
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "c1"))
        .ok_or("no c1")?;
    ensure!(c1["state"]["status"] == "Running", "{c1}");
    ensure!(
        c1.get("snapshots").is_some() && c1.get("backups").is_some(),
        "{c1}"
    );
    Ok(())
}

fn instance_get_full(fx: &Fx) -> Result<(), String> {
    let i = fx.ok("GET", "/1.0/instances/c1?recursion=1", None)?;
    ensure!(i["state"]["status"] == "Running", "{i}");
    Ok(())
}

fn profile_usedby(fx: &Fx) -> Result<(), String> {
    let p = fx.ok("GET", "/1.0/profiles/default", None)?;
    ensure!(
        p["used_by"].to_string().contains("/1.0/instances/c1"),
        "{p}"
    );
    Ok(())
}

fn storage(fx: &Fx) -> Result<(), String> {
    let out = fx.lxc(&["storage", "list", "-f", "csv"])?;
    ensure!(out.contains(&fx.pool) && out.contains("p2"), "{out}");
    Ok(())
}

fn image_profiles(fx: &Fx) -> Result<(), String> {
    fx.ok(
        "POST",
        "/1.0/profiles",
        Some(json!({"name": "imgprof", "config": {"user.from": "image"}})),
    )?;
    let fp = fx.ok("GET", "/1.0/images/aliases/bb", None)?["target"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let img = fx.ok("GET", &format!("/1.0/images/{fp}"), None)?;
    ensure!(img["profiles"] == json!(["default"]), "{img}");
    let mut put = img.clone();
    put["profiles"] = json!(["default", "imgprof"]);
    fx.ok("PUT", &format!("/1.0/images/{fp}"), Some(put))?;
    // An instance made from the image without naming profiles gets the image's.
    fx.ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c-imgprof", "source": {"type": "image", "alias": "bb"}})),
    )?;
    let i = fx.ok("GET", "/1.0/instances/c-imgprof", None)?;
    let mut back = img.clone();
    back["profiles"] = json!(["default"]);
    fx.ok("PUT", &format!("/1.0/images/{fp}"), Some(back))?;
    fx.delete_instance("c-imgprof");
    fx.ok("DELETE", "/1.0/profiles/imgprof", None)?;
    ensure!(i["profiles"] == json!(["default", "imgprof"]), "{i}");
    ensure!(i["expanded_config"]["user.from"] == "image", "{i}");
    Ok(())
}

fn entity_description(fx: &Fx) -> Result<(), String> {
    fx.lxc(&[
        "profile",
        "create",
        "described",
        "--description",
        "with words",
    ])
    .or_else(|_| {
        fx.ok(
            "POST",
            "/1.0/profiles",
            Some(json!({"name": "described", "description": "with words"})),
        )
        .map(|_| String::new())
    })?;
    let p = fx.ok("GET", "/1.0/profiles/described", None)?;
    fx.ok("DELETE", "/1.0/profiles/described", None)?;
    ensure!(p["description"] == "with words", "{p}");
    let v = fx.ok(
        "PATCH",
        &fx.vol("v1"),
        Some(json!({"description": "a volume"})),
    );
    v?;
    let v = fx.ok("GET", &fx.vol("v1"), None)?;
    ensure!(v["description"] == "a volume", "{v}");
    Ok(())
}

fn resources(fx: &Fx) -> Result<(), String> {
    let out = fx.lxc(&["info", "--resources"])?;
    ensure!(out.contains("CPU") && out.contains("Memory"), "{out}");
    let r = fx.ok(
        "GET",
        &format!("/1.0/storage-pools/{}/resources", fx.pool),
        None,
    )?;
    ensure!(r["space"]["total"].as_u64().is_some_and(|t| t > 0), "{r}");
    Ok(())
}

fn resources_v2(fx: &Fx) -> Result<(), String> {
    let r = fx.ok("GET", "/1.0/resources", None)?;
    let threads = &r["cpu"]["sockets"][0]["cores"][0]["threads"];
    ensure!(threads.as_array().is_some_and(|t| !t.is_empty()), "{r}");
    ensure!(r["memory"]["total"].as_u64().is_some_and(|t| t > 0), "{r}");
    Ok(())
}

fn resource_limits(fx: &Fx) -> Result<(), String> {
    fx.ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"config": {"limits.processes": "8"}})),
    )?;
    let (rc, out, err) = fx.d.exec(
        "c1",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 12 ]; do sleep 2 & i=$((i+1)); done; wait; echo forked",
        ],
    );
    let inst = fx.ok("GET", "/1.0/instances/c1", None)?;
    let mut put = inst.clone();
    put["config"]
        .as_object_mut()
        .map(|m| m.remove("limits.processes"));
    fx.ok("PUT", "/1.0/instances/c1", Some(put))?;
    ensure!(
        err.contains("fork") || rc != 0,
        "12 processes under limits.processes=8: {rc} {out}{err}"
    );
    Ok(())
}

fn container_cpu_time(fx: &Fx) -> Result<(), String> {
    let s = fx.ok("GET", "/1.0/instances/c1/state", None)?;
    ensure!(s["cpu"]["usage"].as_u64().is_some_and(|u| u > 0), "{s}");
    Ok(())
}

fn network_state(fx: &Fx) -> Result<(), String> {
    let s = fx.ok("GET", "/1.0/instances/c1/state", None)?;
    let lo = &s["network"]["lo"];
    ensure!(lo["addresses"].to_string().contains("127.0.0.1"), "{s}");
    ensure!(lo["counters"].is_object(), "{s}");
    Ok(())
}

fn nic_routes(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "p2p0",
        json!({"type": "nic", "nictype": "p2p", "ipv4.routes": "192.0.2.0/28"}),
    )?;
    fx.refused(
        "PATCH",
        "/1.0/instances/cs",
        json!({"devices": {"p2p0": {"type": "nic", "nictype": "p2p", "ipv4.routes": "not-a-cidr"}}}),
    )
}

fn nic_routed(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "r0",
        json!({"type": "nic", "nictype": "routed", "ipv4.address": "192.0.2.10"}),
    )
}

fn nic_routed_gateway(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "r0",
        json!({"type": "nic", "nictype": "routed", "ipv4.address": "192.0.2.10", "ipv4.gateway": "none"}),
    )?;
    fx.refused(
        "PATCH",
        "/1.0/instances/cs",
        json!({"devices": {"r0": {"type": "nic", "nictype": "routed", "ipv4.address": "192.0.2.10", "ipv4.gateway": "sometimes"}}}),
    )
}

fn nic_routed_host_address(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "r0",
        json!({"type": "nic", "nictype": "routed", "ipv4.address": "192.0.2.10", "ipv4.host_address": "169.254.0.2"}),
    )
}

fn nic_routed_limits(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "r0",
        json!({"type": "nic", "nictype": "routed", "ipv4.address": "192.0.2.10", "limits.ingress": "10Mbit", "limits.egress": "10Mbit"}),
    )
}

fn nic_ipvlan(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "iv0",
        json!({"type": "nic", "nictype": "ipvlan", "parent": "lo", "ipv4.address": "192.0.2.20"}),
    )
}

fn nic_ipvlan_mode(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "iv0",
        json!({"type": "nic", "nictype": "ipvlan", "parent": "lo", "mode": "l2", "ipv4.address": "192.0.2.20"}),
    )?;
    fx.refused(
        "PATCH",
        "/1.0/instances/cs",
        json!({"devices": {"iv0": {"type": "nic", "nictype": "ipvlan", "parent": "lo", "mode": "l9", "ipv4.address": "192.0.2.20"}}}),
    )
}

fn nic_ipfilter(fx: &Fx) -> Result<(), String> {
    ensure!(
        !fx.network.is_empty(),
        "the default profile has no managed network"
    );
    fx.device_ok(
        "f0",
        json!({"type": "nic", "network": fx.network, "security.ipv4_filtering": "true", "security.mac_filtering": "true"}),
    )
}

fn exec_recording(fx: &Fx) -> Result<(), String> {
    let (rc, out, err) =
        fx.d.exec("c1", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    ensure!(
        (rc, out.as_str(), err.as_str()) == (3, "out\n", "err\n"),
        "{rc} {out} {err}"
    );
    Ok(())
}

fn exec_signal_handling(fx: &Fx) -> Result<(), String> {
    let child = Command::new("lxc")
        .args([
            "exec",
            "--mode",
            "non-interactive",
            "c1",
            "--",
            "sleep",
            "30",
        ])
        .env("LXD_DIR", &fx.d.dir)
        .env("LXD_CONF", fx.d.dir.join("lxc-conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(2));
    // lxc forwards SIGTERM over the exec's control websocket to the command.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .map_err(|e| e.to_string())?;
    let t0 = std::time::Instant::now();
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    let status = o.status;
    ensure!(
        t0.elapsed() < Duration::from_secs(20),
        "the signal did not end sleep: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    ensure!(status.code() == Some(143), "{status:?}");
    Ok(())
}

fn exec_user_group_cwd(fx: &Fx) -> Result<(), String> {
    let out = fx.lxc(&[
        "exec",
        "c1",
        "--user",
        "1000",
        "--group",
        "1001",
        "--cwd",
        "/tmp",
        "--",
        "sh",
        "-c",
        "id -u; id -g; pwd",
    ])?;
    ensure!(out == "1000\n1001\n/tmp\n", "{out}");
    Ok(())
}

fn console(fx: &Fx) -> Result<(), String> {
    let (c, v) = fx.api(
        "POST",
        "/1.0/instances/c1/console",
        Some(json!({"width": 80, "height": 25})),
    );
    ensure!(c == 202, "{c} {v}");
    ensure!(v["metadata"]["metadata"]["fds"]["0"].is_string(), "{v}");
    let id = v["metadata"]["id"].as_str().unwrap_or_default().to_string();
    let _ = fx.api("DELETE", &format!("/1.0/operations/{id}"), None);
    let (c, _) = fx.d.api_raw("GET", "/1.0/instances/c1/console");
    ensure!(c == 200, "console log: {c}");
    Ok(())
}

fn directory_manipulation(fx: &Fx) -> Result<(), String> {
    let dir = fx.d.dir.join("pushdir");
    std::fs::create_dir_all(dir.join("sub")).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("sub/f"), "in a dir\n").map_err(|e| e.to_string())?;
    fx.lxc(&[
        "file",
        "push",
        "-r",
        dir.to_str().unwrap_or_default(),
        "c1/tmp/",
    ])?;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        fx.sh("cat /tmp/pushdir/sub/f")? == "in a dir\n",
        "pushed tree"
    );
    let pulled = fx.d.dir.join("pulldir");
    fx.lxc(&[
        "file",
        "pull",
        "-r",
        "c1/tmp/pushdir",
        pulled.to_str().unwrap_or_default(),
    ])?;
    let got = std::fs::read_to_string(pulled.join("pushdir/sub/f")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&pulled);
    ensure!(got == "in a dir\n", "pulled tree: {got:?}");
    Ok(())
}

fn file_delete(fx: &Fx) -> Result<(), String> {
    fx.sh("echo x > /tmp/to-delete")?;
    fx.lxc(&["file", "delete", "c1/tmp/to-delete"])?;
    ensure!(
        fx.sh("test -e /tmp/to-delete || echo gone")? == "gone\n",
        "not deleted"
    );
    Ok(())
}

fn file_append(fx: &Fx) -> Result<(), String> {
    fx.sh("printf 'one\\n' > /tmp/appended")?;
    let (c, out) = fx.curl(
        &[
            "-X",
            "POST",
            "-H",
            "X-LXD-write: append",
            "--data-binary",
            "two\n",
        ],
        "/1.0/instances/c1/files?path=/tmp/appended",
    );
    ensure!(c == 200, "{c} {out}");
    ensure!(fx.sh("cat /tmp/appended")? == "one\ntwo\n", "not appended");
    Ok(())
}

fn file_symlinks(fx: &Fx) -> Result<(), String> {
    let (c, out) = fx.curl(
        &[
            "-X",
            "POST",
            "-H",
            "X-LXD-type: symlink",
            "--data-binary",
            "/etc/hostname",
        ],
        "/1.0/instances/c1/files?path=/tmp/link",
    );
    ensure!(c == 200, "{c} {out}");
    ensure!(
        fx.sh("readlink /tmp/link")? == "/etc/hostname\n",
        "no symlink"
    );
    Ok(())
}

fn file_get_symlink(fx: &Fx) -> Result<(), String> {
    fx.sh("ln -sf /etc/hostname /tmp/link2")?;
    let (c, out) = fx.curl(&["-X", "GET"], "/1.0/instances/c1/files?path=/tmp/link2");
    ensure!(c == 200, "{c} {out}");
    ensure!(out.to_lowercase().contains("x-lxd-type: symlink"), "{out}");
    ensure!(out.ends_with("/etc/hostname"), "{out}");
    Ok(())
}

fn network(fx: &Fx) -> Result<(), String> {
    fx.lxc(&[
        "network",
        "create",
        "siloext0",
        "ipv4.address=10.123.45.1/24",
        "ipv4.nat=true",
        "ipv6.address=none",
    ])?;
    let n = fx.ok("GET", "/1.0/networks/siloext0", None)?;
    let c =
        fx.d.netns_cmd(&["ip", "link", "show", "siloext0"])
            .status
            .success();
    fx.lxc(&["network", "delete", "siloext0"])?;
    ensure!(n["managed"] == true && n["type"] == "bridge", "{n}");
    ensure!(c, "the bridge is not up in the daemon's namespace");
    Ok(())
}

fn network_leases(fx: &Fx) -> Result<(), String> {
    ensure!(
        !fx.network.is_empty(),
        "the default profile has no managed network"
    );
    let ok = silo_tests::wait_until(Duration::from_secs(30), || {
        fx.lxc(&["network", "list-leases", &fx.network, "-f", "csv"])
            .is_ok_and(|o| o.contains("c1,"))
    });
    ensure!(ok, "no lease for c1 on {}", fx.network);
    Ok(())
}

fn network_dhcp_expiry(fx: &Fx) -> Result<(), String> {
    ensure!(
        !fx.network.is_empty(),
        "the default profile has no managed network"
    );
    fx.lxc(&["network", "set", &fx.network, "ipv4.dhcp.expiry", "3h"])?;
    let v = fx.lxc(&["network", "get", &fx.network, "ipv4.dhcp.expiry"])?;
    fx.lxc(&["network", "unset", &fx.network, "ipv4.dhcp.expiry"])?;
    ensure!(v == "3h\n", "{v}");
    let (c, v) = fx.api(
        "PATCH",
        &format!("/1.0/networks/{}", fx.network),
        Some(json!({"config": {"ipv4.dhcp.expiry": "soon"}})),
    );
    ensure!(c == 400, "a bad expiry: {c} {v}");
    Ok(())
}

/// A TCP proxy on the running `c1`, to a web server inside it, reached from the host side.
fn proxy(fx: &Fx) -> Result<(), String> {
    fx.sh("mkdir -p /www && echo proxied > /www/index.html && httpd -p 127.0.0.1:8080 -h /www")?;
    fx.ok(
        "PATCH",
        "/1.0/instances/c1",
        Some(json!({"devices": {"web": {"type": "proxy", "listen": "tcp:127.0.0.1:18080", "connect": "tcp:127.0.0.1:8080"}}})),
    )?;
    let got = silo_tests::in_netns(&fx.d.netns, || {
        use std::io::{Read, Write};
        let mut last = String::new();
        for _ in 0..50 {
            if let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:18080") {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                last.clear();
                let _ = s.read_to_string(&mut last);
                if last.contains("proxied") {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last
    });
    let inst = fx.ok("GET", "/1.0/instances/c1", None)?;
    let mut put = inst.clone();
    put["devices"].as_object_mut().map(|m| m.remove("web"));
    fx.ok("PUT", "/1.0/instances/c1", Some(put))?;
    let _ = fx.sh("killall httpd || true");
    ensure!(got.contains("proxied"), "through the proxy: {got:?}");
    fx.device_ok(
        "px",
        json!({"type": "proxy", "listen": "tcp:127.0.0.1:18080", "connect": "tcp:127.0.0.1:80"}),
    )?;
    fx.refused(
        "PATCH",
        "/1.0/instances/cs",
        json!({"devices": {"px": {"type": "proxy", "listen": "tcp:nowhere", "connect": "tcp:127.0.0.1:80"}}}),
    )
}

fn proxy_unix(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "pxu",
        json!({"type": "proxy", "listen": "tcp:127.0.0.1:18081", "connect": "unix:/run/x.sock", "bind": "host"}),
    )
}

fn proxy_udp(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "pxd",
        json!({"type": "proxy", "listen": "udp:127.0.0.1:18082", "connect": "udp:127.0.0.1:53"}),
    )
}

fn proxy_multi_port(fx: &Fx) -> Result<(), String> {
    fx.device_ok(
        "pxm",
        json!({"type": "proxy", "listen": "tcp:127.0.0.1:18090-18092", "connect": "tcp:127.0.0.1:8090-8092"}),
    )
}

fn image_compression_algorithm(fx: &Fx) -> Result<(), String> {
    let out = fx.lxc(&[
        "publish",
        "cs",
        "--alias",
        "pub-none",
        "--compression",
        "none",
    ])?;
    let img = fx.ok("GET", "/1.0/images/aliases/pub-none", None)?;
    let fp = img["target"].as_str().unwrap_or_default().to_string();
    let (c, body) = fx.d.api_raw("GET", &format!("/1.0/images/{fp}/export"));
    fx.ok("DELETE", &format!("/1.0/images/{fp}"), None)?;
    ensure!(c == 200, "{out}");
    ensure!(
        body.len() > 262 && &body[257..262] == b"ustar",
        "not a plain tarball"
    );
    Ok(())
}

fn image_create_aliases(fx: &Fx) -> Result<(), String> {
    let op = fx.ok(
        "POST",
        "/1.0/images",
        Some(json!({"source": {"type": "instance", "name": "cs"}, "aliases": [{"name": "pub-alias"}]})),
    )?;
    let fp = op["metadata"]["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let a = fx.ok("GET", "/1.0/images/aliases/pub-alias", None)?;
    fx.ok("DELETE", &format!("/1.0/images/{fp}"), None)?;
    ensure!(a["target"] == fp, "{a} {op}");
    Ok(())
}

fn instance_nic_network(fx: &Fx) -> Result<(), String> {
    ensure!(
        !fx.network.is_empty(),
        "the default profile has no managed network"
    );
    fx.device_ok("n1", json!({"type": "nic", "network": fx.network}))?;
    fx.refused(
        "PATCH",
        "/1.0/instances/cs",
        json!({"devices": {"n1": {"type": "nic", "network": "no-such-network"}}}),
    )
    .or_else(|_| {
        let (c, v) = fx.add_device("n1", json!({"type": "nic", "network": "no-such-network"}));
        ensure!(c == 404 || c == 400, "an unknown network: {c} {v}");
        Ok(())
    })
}

fn snapshot_expiry(fx: &Fx) -> Result<(), String> {
    fx.lxc(&["config", "set", "cs", "snapshots.expiry", "1d"])?;
    fx.lxc(&["snapshot", "cs", "sx"])?;
    let s = fx.ok("GET", "/1.0/instances/cs/snapshots/sx", None)?;
    fx.lxc(&["config", "unset", "cs", "snapshots.expiry"])?;
    fx.lxc(&["delete", "cs/sx"])?;
    let exp = s["expires_at"].as_str().unwrap_or_default();
    ensure!(!exp.is_empty() && !exp.starts_with("0001"), "{s}");
    Ok(())
}

fn snapshot_expiry_creation(fx: &Fx) -> Result<(), String> {
    fx.ok(
        "POST",
        "/1.0/instances/cs/snapshots",
        Some(json!({"name": "sxc", "expires_at": "2099-03-04T05:06:07Z"})),
    )?;
    let s = fx.ok("GET", "/1.0/instances/cs/snapshots/sxc", None)?;
    fx.ok("DELETE", "/1.0/instances/cs/snapshots/sxc", None)?;
    ensure!(
        s["expires_at"]
            .as_str()
            .is_some_and(|e| e.starts_with("2099-03-04")),
        "{s}"
    );
    Ok(())
}

/// `lxc export` then `lxc import` with `args`; the instance made is checked and deleted.
fn export_import(fx: &Fx, export: &[&str], import: &[&str], name: &str) -> Result<Value, String> {
    let file = fx.d.dir.join(format!("{name}.backup"));
    let f = file.to_str().unwrap_or_default().to_string();
    let mut a = vec!["export", "cs", f.as_str()];
    a.extend_from_slice(export);
    fx.lxc(&a)?;
    let mut a = vec!["import", f.as_str()];
    a.extend_from_slice(import);
    let r = fx.lxc(&a);
    let head = std::fs::read(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    r?;
    let i = fx.ok("GET", &format!("/1.0/instances/{name}"), None)?;
    fx.delete_instance(name);
    Ok(
        json!({"instance": i, "gzip": head.starts_with(&[0x1f, 0x8b]), "xz": head.starts_with(&[0xfd, b'7']), "plain": head.len() > 262 && &head[257..262] == b"ustar"}),
    )
}

fn container_backup(fx: &Fx) -> Result<(), String> {
    let op = fx.ok(
        "POST",
        "/1.0/instances/cs/backups",
        Some(json!({"name": "b1", "instance_only": true})),
    )?;
    ensure!(op["status"] == "Success", "{op}");
    let l = fx.ok("GET", "/1.0/instances/cs/backups", None)?;
    ensure!(l.to_string().contains("b1"), "{l}");
    let (c, body) = fx.d.api_raw("GET", "/1.0/instances/cs/backups/b1/export");
    fx.ok("DELETE", "/1.0/instances/cs/backups/b1", None)?;
    ensure!(
        c == 200 && body.len() > 1024,
        "export: {c}, {} bytes",
        body.len()
    );
    Ok(())
}

fn backup_compression(fx: &Fx) -> Result<(), String> {
    let r = export_import(fx, &["--compression", "xz"], &["cs-bxz"], "cs-bxz")?;
    ensure!(r["xz"] == true, "{r}");
    Ok(())
}

fn backup_compression_algorithm(fx: &Fx) -> Result<(), String> {
    let r = export_import(fx, &["--compression", "none"], &["cs-bnone"], "cs-bnone")?;
    ensure!(r["plain"] == true, "{r}");
    Ok(())
}

fn backup_override_pool(fx: &Fx) -> Result<(), String> {
    let r = export_import(fx, &[], &["cs-bpool", "--storage", "p2"], "cs-bpool")?;
    ensure!(
        r["instance"]["expanded_devices"]["root"]["pool"] == "p2",
        "{r}"
    );
    Ok(())
}

fn backup_override_name(fx: &Fx) -> Result<(), String> {
    let r = export_import(fx, &[], &["cs-bname"], "cs-bname")?;
    ensure!(r["instance"]["name"] == "cs-bname", "{r}");
    Ok(())
}

fn incremental_copy(fx: &Fx) -> Result<(), String> {
    fx.lxc(&["copy", "cs", "cs-inc"])?;
    fx.lxc(&["file", "push", "-", "cs/etc/refreshed"])
        .or_else(|_| {
            fx.ok("POST", "/1.0/instances/cs/files?path=/etc/refreshed", None)
                .map(|_| String::new())
        })?;
    fx.lxc(&["copy", "cs", "cs-inc", "--refresh"])?;
    let (c, _) =
        fx.d.api_raw("GET", "/1.0/instances/cs-inc/files?path=/etc/refreshed");
    fx.delete_instance("cs-inc");
    let _ = fx.api(
        "DELETE",
        "/1.0/instances/cs/files?path=/etc/refreshed",
        None,
    );
    ensure!(c == 200, "the refresh did not bring the new file: {c}");
    Ok(())
}

fn certificate_update(fx: &Fx) -> Result<(), String> {
    let crt = fx.d.dir.join("ext-cert.crt");
    let key = fx.d.dir.join("ext-cert.key");
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=ext-test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .map_err(|e| e.to_string())?;
    ensure!(o.status.success(), "openssl: {}", show(&o));
    fx.lxc(&[
        "config",
        "trust",
        "add",
        crt.to_str().unwrap_or_default(),
        "--name",
        "before",
    ])?;
    let list = fx.ok("GET", "/1.0/certificates?recursion=1", None)?;
    let fp = list
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "before"))
        .and_then(|c| c["fingerprint"].as_str())
        .ok_or(format!("not added: {list}"))?
        .to_string();
    fx.ok(
        "PATCH",
        &format!("/1.0/certificates/{fp}"),
        Some(json!({"name": "after"})),
    )?;
    let c = fx.ok("GET", &format!("/1.0/certificates/{fp}"), None)?;
    fx.ok("DELETE", &format!("/1.0/certificates/{fp}"), None)?;
    let _ = std::fs::remove_file(&crt);
    let _ = std::fs::remove_file(&key);
    ensure!(c["name"] == "after", "{c}");
    Ok(())
}

fn certificate_token(fx: &Fx) -> Result<(), String> {
    let out = fx.lxc(&["config", "trust", "add", "--name", "tok-client"])?;
    let token = out.lines().last().unwrap_or_default().trim().to_string();
    ensure!(!token.is_empty(), "{out}");
    let conf = fx.d.dir.join("lxc-token-conf");
    let o = Command::new("nsenter")
        .arg(format!(
            "--net=/proc/{}/fd/{}",
            std::process::id(),
            fx.d.netns.as_raw_fd()
        ))
        .args([
            "lxc",
            "remote",
            "add",
            "tok",
            &token,
            "--accept-certificate",
        ])
        .env("LXD_CONF", &conf)
        .env_remove("LXD_DIR")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&conf);
    ensure!(o.status.success(), "remote add with a token: {}", show(&o));
    let list = fx.ok("GET", "/1.0/certificates?recursion=1", None)?;
    let fp = list
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "tok-client"))
        .and_then(|c| c["fingerprint"].as_str())
        .ok_or(format!("the token's client is not trusted: {list}"))?
        .to_string();
    fx.ok("DELETE", &format!("/1.0/certificates/{fp}"), None)?;
    Ok(())
}

fn instance_all_projects(fx: &Fx) -> Result<(), String> {
    let out = fx.lxc(&["list", "--all-projects", "-c", "en", "-f", "csv"])?;
    ensure!(
        out.contains("default,c1\n") && out.contains("default,cs\n"),
        "{out}"
    );
    Ok(())
}

fn storage_volumes_all_projects(fx: &Fx) -> Result<(), String> {
    let out = fx.lxc(&[
        "storage",
        "volume",
        "list",
        &fx.pool,
        "--all-projects",
        "-c",
        "etn",
        "-f",
        "csv",
    ])?;
    ensure!(out.contains("default,custom,v1\n"), "{out}");
    Ok(())
}

fn edit_metadata(fx: &Fx) -> Result<(), String> {
    let meta = fx.lxc(&["config", "metadata", "show", "cs"])?;
    ensure!(meta.contains("architecture"), "{meta}");
    // The body is the template itself, not JSON.
    let (c, out) = fx.curl(
        &[
            "-X",
            "POST",
            "--data-binary",
            "made by {{ container.name }}",
        ],
        "/1.0/instances/cs/metadata/templates?path=ext.tpl",
    );
    ensure!(c == 200, "{c} {out}");
    let list = fx.lxc(&["config", "template", "list", "cs"])?;
    ensure!(list.contains("ext.tpl"), "{list}");
    fx.lxc(&["config", "template", "delete", "cs", "ext.tpl"])?;
    let list = fx.lxc(&["config", "template", "list", "cs"])?;
    ensure!(!list.contains("ext.tpl"), "{list}");
    Ok(())
}

fn file_head(fx: &Fx) -> Result<(), String> {
    fx.sh("printf 'twelve bytes' > /run/head-me")?;
    let (c, out) = fx.curl(&["-I"], "/1.0/instances/c1/files?path=/run/head-me");
    ensure!(c == 200, "{c} {out}");
    let lower = out.to_ascii_lowercase();
    ensure!(lower.contains("x-lxd-type: file"), "{out}");
    ensure!(!out.contains("twelve bytes"), "HEAD has no body: {out}");
    Ok(())
}

fn restrict_devlxd(fx: &Fx) -> Result<(), String> {
    ensure!(
        fx.sh("test -S /dev/lxd/sock && echo yes")? == "yes\n",
        "c1 has no /dev/lxd/sock"
    );
    fx.lxc(&["config", "set", "cs", "security.devlxd", "false"])?;
    fx.lxc(&["start", "cs"])?;
    let (rc, out, err) =
        fx.d.exec("cs", &["sh", "-c", "test -e /dev/lxd/sock || echo none"]);
    let _ = fx.lxc(&["stop", "cs", "--force"]);
    fx.lxc(&["config", "unset", "cs", "security.devlxd"])?;
    ensure!(
        rc == 0 && out == "none\n",
        "security.devlxd=false: {rc} {out}{err}"
    );
    Ok(())
}

fn devlxd_events(fx: &Fx) -> Result<(), String> {
    let child = fx
        .as_c1_root(&["/usr/bin/python3", "-c", silo_tests::DEVLXD_WS_CLIENT])?
        .env("DEVLXD_PATH", "/1.0/events?type=config")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(1500));
    fx.lxc(&["config", "set", "c1", "user.ext-event", "seen"])?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text.starts_with("HTTP/1.1 101") && text.contains("user.ext-event"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn cloud_init(fx: &Fx) -> Result<(), String> {
    fx.lxc(&[
        "config",
        "set",
        "c1",
        "cloud-init.user-data",
        "#cloud-config\n",
    ])?;
    let (c, body) = fx.devlxd("/1.0/config/cloud-init.user-data")?;
    ensure!(c == 200 && body == "#cloud-config\n", "{c} {body:?}");
    let (c, body) = fx.devlxd("/1.0/devices")?;
    ensure!(c == 200, "{c} {body}");
    let devices: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    ensure!(devices["root"]["path"] == "/", "{devices}");
    fx.lxc(&["config", "unset", "c1", "cloud-init.user-data"])?;
    Ok(())
}

fn warnings(fx: &Fx) -> Result<(), String> {
    let list = fx.ok("GET", "/1.0/warnings?recursion=1", None)?;
    ensure!(list.is_array(), "{list}");
    fx.lxc(&["warning", "list"])?;
    Ok(())
}

/// The scrape through the socket: (status, text).
fn scrape(fx: &Fx) -> (u16, String) {
    fx.curl(&[], "/1.0/metrics")
}

fn metrics(fx: &Fx) -> Result<(), String> {
    let (c, text) = scrape(fx);
    ensure!(c == 200, "{c} {text}");
    ensure!(
        text.contains("lxd_memory_MemTotal_bytes{") && text.contains("name=\"c1\""),
        "{text}"
    );
    Ok(())
}

fn metrics_cpu_seconds(fx: &Fx) -> Result<(), String> {
    // Seconds, not milliseconds: a second of CPU burned inside adds about one, not a thousand.
    let total = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("lxd_cpu_seconds_total{") && l.contains("name=\"c1\""))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let before = total(&scrape(fx).1);
    fx.sh("end=$(($(date +%s)+2)); while [ $(date +%s) -lt $end ]; do :; done")?;
    let after = total(&scrape(fx).1);
    ensure!(
        after - before > 0.3 && after - before < 10.0,
        "c1's CPU seconds went from {before} to {after} over a busy loop of about 2 s"
    );
    Ok(())
}

fn bulk_state_change(fx: &Fx) -> Result<(), String> {
    // `lxc pause --all` takes the bulk API when the server lists it; unfreeze through the API
    // (lxc has no bulk unpause: its `start --all` starts the stopped ones).
    fx.lxc(&["pause", "--all"])?;
    let st = fx.ok("GET", "/1.0/instances/c1", None)?;
    let frozen = st["status"] == "Frozen";
    let thawed = fx.ok(
        "PUT",
        "/1.0/instances",
        Some(json!({"state": {"action": "unfreeze", "timeout": -1}})),
    );
    ensure!(frozen, "c1 after lxc pause --all: {}", st["status"]);
    thawed?;
    let st = fx.ok("GET", "/1.0/instances/c1", None)?;
    ensure!(
        st["status"] == "Running",
        "c1 after the bulk unfreeze: {}",
        st["status"]
    );
    let (c, v) = fx.api(
        "PUT",
        "/1.0/instances",
        Some(json!({"state": {"action": "jump"}})),
    );
    ensure!(c == 400, "an unknown action: {c} {v}");
    Ok(())
}

/// The fixture as a one-member cluster (idempotent): `lxc cluster enable`.
fn clustered(fx: &Fx) -> Result<(), String> {
    let c = fx.ok("GET", "/1.0/cluster", None)?;
    if c["enabled"] != true {
        fx.lxc(&["cluster", "enable", "m1"])?;
    }
    Ok(())
}

fn clustering(fx: &Fx) -> Result<(), String> {
    clustered(fx)?;
    let out = fx.lxc(&["cluster", "list", "--format", "csv"])?;
    ensure!(
        out.starts_with("m1,https://127.0.0.1:8443,")
            && out.contains("database-leader")
            && out.contains("ONLINE")
            && out.contains("Fully operational"),
        "lxc cluster list: {out}"
    );
    let s = fx.ok("GET", "/1.0", None)?;
    ensure!(
        s["environment"]["server_clustered"] == true && s["environment"]["server_name"] == "m1",
        "GET /1.0 environment: {}",
        s["environment"]
    );
    let i = fx.ok("GET", "/1.0/instances/c1", None)?;
    ensure!(i["location"] == "m1", "c1's location: {}", i["location"]);
    Ok(())
}

fn clustering_join(fx: &Fx) -> Result<(), String> {
    clustered(fx)?;
    // A clustered server cannot join another; a token that is not one is named so.
    let (c, v) = fx.api(
        "PUT",
        "/1.0/cluster",
        Some(json!({"server_name": "m1", "enabled": true, "cluster_password": "not-a-token"})),
    );
    let e = if c == 202 {
        fx.d.wait_op(&v)["err"].as_str().unwrap_or("").to_string()
    } else {
        v["error"].as_str().unwrap_or("").to_string()
    };
    ensure!(
        e.contains("join token") || e.contains("already clustered"),
        "{e}"
    );
    Ok(())
}

fn clustering_join_token(fx: &Fx) -> Result<(), String> {
    clustered(fx)?;
    let out = fx.lxc(&["cluster", "add", "m2"])?;
    let token = out.lines().last().unwrap_or("").trim().to_string();
    let t = silo_api::ClusterMemberJoinToken::decode(&token)?;
    let fp = fx.ok("GET", "/1.0", None)?["environment"]["certificate_fingerprint"].clone();
    ensure!(
        t.server_name == "m2"
            && t.addresses == vec!["127.0.0.1:8443".to_string()]
            && json!(t.fingerprint) == fp,
        "the token lxc printed: {t:?}"
    );
    let tokens = fx.lxc(&["cluster", "list-tokens", "--format", "csv"])?;
    ensure!(tokens.contains("m2"), "lxc cluster list-tokens: {tokens}");
    fx.lxc(&["cluster", "revoke-token", "m2"])?;
    let tokens = fx.lxc(&["cluster", "list-tokens", "--format", "csv"])?;
    ensure!(!tokens.contains("m2"), "after revoke-token: {tokens}");
    Ok(())
}

fn clustering_evacuation(fx: &Fx) -> Result<(), String> {
    clustered(fx)?;
    let state = |fx: &Fx| -> Result<String, String> {
        Ok(fx.ok("GET", "/1.0/cluster/members/m1", None)?["status"]
            .as_str()
            .unwrap_or("")
            .to_string())
    };
    fx.lxc(&["cluster", "evacuate", "m1", "--force"])?;
    ensure!(state(fx)? == "Evacuated", "after evacuate: {}", state(fx)?);
    fx.lxc(&["cluster", "restore", "m1", "--force"])?;
    ensure!(state(fx)? == "Online", "after restore: {}", state(fx)?);
    Ok(())
}
