//! `silo init` for the server: the questions on a real terminal (a pty), `--auto`,
//! `--preseed` and `--dump`, and running it twice.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use silo_tests::{bin, busybox_image, SpareDisk, TestDaemon};

fn text(o: &std::process::Output) -> String {
    silo_tests::show(o)
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn dump(d: &TestDaemon) -> String {
    ok(d.silo(&["init", "--dump"]))
}

#[test]
fn auto_keeps_what_exists_then_launch_works_and_twice_changes_nothing() {
    let d = TestDaemon::start("init-auto");
    // A fresh silod already has its embedded defaults: nothing is new.
    let o = ok(d.silo(&["init", "--auto"]));
    assert!(o.contains("Nothing to change"), "{o}");
    // A btrfs pool of 2 GiB in place of the (unused) dir default, the profile re-pointed.
    let o = ok(d.silo(&[
        "init",
        "--auto",
        "--storage-backend",
        "btrfs",
        "--storage-create-loop",
        "2",
    ]));
    assert!(
        o.contains("storage pool default (now btrfs, was dir)"),
        "{o}"
    );
    let pool = d.api_ok("GET", "/1.0/storage-pools/default", None);
    assert_eq!(pool["driver"], "btrfs");
    assert_eq!(pool["config"]["size"], "2147483648");
    let o = ok(d.silo(&["init", "--auto", "--storage-backend", "btrfs"]));
    assert!(o.contains("Nothing to change"), "{o}");
    let o = ok(d.silo(&[
        "init",
        "--auto",
        "--storage-backend",
        "btrfs",
        "--storage-create-loop",
        "2",
    ]));
    assert!(o.contains("Nothing to change"), "{o}");
    // The API over the network (stored for the remote-access work) and a trust password.
    let o = ok(d.silo(&[
        "init",
        "--auto",
        "--network-address",
        "127.0.0.1",
        "--network-port",
        "9443",
        "--trust-password",
        "pw-auto",
    ]));
    assert!(o.contains("server configuration"), "{o}");
    let s = d.api_ok("GET", "/1.0", None);
    assert_eq!(s["config"]["core.https_address"], "127.0.0.1:9443", "{s}");
    assert_eq!(s["config"]["core.trust_password"], true, "{s}");
    assert!(!dump(&d).contains("pw-auto") && !dump(&d).contains("core.trust_password"));
    d.import(&busybox_image(false)[0], "busybox");
    ok(d.silo(&["launch", "busybox", "c1"]));
    assert_eq!(d.status("c1"), "Running");
    assert_eq!(d.wait_ipv4("c1").split('.').count(), 4);
    // A pool in use is not redefined, and nothing changes.
    let before = dump(&d);
    let o = d.silo(&["init", "--auto", "--storage-backend", "dir"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("in use") && e.contains("c1"), "{e}");
    assert_eq!(dump(&d), before);
    // A backend this host lacks is named.
    let o = d.silo(&["init", "--auto", "--storage-backend", "zfs"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not available on this host"),
        "{}",
        text(&o)
    );
    d.set_state("c1", "stop", true);
}

#[test]
fn preseed_round_trip_and_refusals_change_nothing() {
    let a = TestDaemon::start("init-dump-a");
    let b = TestDaemon::start("init-dump-b");
    ok(a.silo(&[
        "network",
        "create",
        "siloextra0",
        "ipv4.address=10.66.0.1/24",
        "ipv6.address=none",
    ]));
    ok(a.silo(&["profile", "create", "web"]));
    let first = dump(&a);
    assert!(
        first.contains("siloextra0")
            && first.contains("silobr0")
            && first.contains("storage_pools"),
        "{first}"
    );
    // Onto a fresh silod: the same setup, so the same dump.
    let o = b.silo_stdin(&["init", "--preseed"], &first);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(dump(&b), first);
    // Again: nothing new.
    let o = b.silo_stdin(&["init", "--preseed"], &first);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Nothing to change"),
        "{}",
        text(&o)
    );

    // Refusals leave everything as it was: an unknown key (parse), a bad CIDR (checked
    // first), a key the server refuses after an earlier step was applied (undone).
    let before = dump(&b);
    for (preseed, want) in [
        ("colour: blue\n", "colour"),
        ("networks:\n- name: silobr5\n  config:\n    ipv4.address: 10.1.1.1/40\n", "prefix"),
        (
            "storage_pools:\n- name: p2\n  driver: dir\nnetworks:\n- name: silobr6\n  config:\n    bogus.key: x\n",
            "bogus.key",
        ),
        ("cluster:\n  enabled: true\n", "server_name"),
    ] {
        let o = b.silo_stdin(&["init", "--preseed"], preseed);
        assert!(!o.status.success(), "{preseed}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(want), "{preseed}: {}", text(&o));
        assert_eq!(dump(&b), before, "after {preseed}");
    }
}

/// A child on a pty, driven expect-style.
struct Pty {
    master: std::fs::File,
    seen: Arc<Mutex<String>>,
    pos: usize,
    child: std::process::Child,
}

impl Pty {
    fn spawn(d: &TestDaemon, args: &[&str]) -> Pty {
        let p = nix::pty::openpty(None, None).expect("openpty");
        let slave: OwnedFd = p.slave;
        let mut cmd = Command::new(bin("silo"));
        cmd.args(args)
            .env("SILO_SOCKET", d.socket())
            .env_remove("SILO_DIR")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().expect("silo on a pty");
        let master = std::fs::File::from(p.master);
        let seen = Arc::new(Mutex::new(String::new()));
        let mut r = master.try_clone().expect("dup master");
        let s = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut g) = s.lock() {
                    g.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Pty {
            master,
            seen,
            pos: 0,
            child,
        }
    }

    /// Waits for `want` after what was matched last; returns the text up to it.
    fn expect(&mut self, want: &str) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let all = self.seen.lock().map(|g| g.clone()).unwrap_or_default();
            if let Some(i) = all[self.pos..].find(want) {
                let got = all[self.pos..self.pos + i + want.len()].to_string();
                self.pos += i + want.len();
                return got;
            }
            assert!(
                Instant::now() < end,
                "waited 20 s for {want:?}; the terminal shows:\n{}",
                &all[self.pos..]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the pty");
    }

    fn answer(&mut self, question: &str, line: &str) {
        self.expect(question);
        self.send(line);
    }

    fn wait(mut self) -> (i32, String) {
        let st = self.child.wait().expect("wait");
        std::thread::sleep(Duration::from_millis(200));
        let all = self.seen.lock().map(|g| g.clone()).unwrap_or_default();
        let _ = self.master.as_raw_fd();
        (st.code().unwrap_or(-1), all)
    }
}

#[test]
fn the_questions_on_a_terminal_with_wrong_answers_asked_again() {
    let d = TestDaemon::start("init-tty");
    let mut t = Pty::spawn(&d, &["init"]);
    t.answer(
        "Would you like to use silo clustering? (yes/no) [default=no]: ",
        "maybe",
    );
    t.expect("Invalid input, try again.");
    t.answer(
        "Would you like to use silo clustering? (yes/no) [default=no]: ",
        "no",
    );
    t.answer(
        "Do you want to configure a new storage pool? (yes/no) [default=yes]: ",
        "",
    );
    t.answer(
        "Name of the new storage pool [default=default]: ",
        "bad/name",
    );
    t.expect("Invalid input:");
    t.answer("Name of the new storage pool [default=default]: ", "pool2");
    let q = t.expect("[default=btrfs]: ");
    assert!(
        q.contains("Name of the storage backend to use (dir, btrfs)") || q.contains("(btrfs, dir)"),
        "{q}"
    );
    t.send("ext5");
    t.expect("Invalid input:");
    t.answer("[default=btrfs]: ", "dir");
    t.answer(
        "Would you like to connect to a MAAS server? (yes/no) [default=no]: ",
        "yes",
    );
    t.expect("MAAS is not supported by silo");
    t.answer(
        "Would you like to create a new local network bridge? (yes/no) [default=yes]: ",
        "",
    );
    t.answer(
        "What should the new bridge be called? [default=silobr0]: ",
        "silobr9",
    );
    t.answer("What IPv4 address should be used? (CIDR subnet notation, “auto” or “none”) [default=auto]: ", "10.55.0.1/33");
    t.expect("Invalid input:");
    t.answer("[default=auto]: ", "10.55.0.1/24");
    t.answer("What IPv6 address should be used? (CIDR subnet notation, “auto” or “none”) [default=auto]: ", "none");
    t.answer(
        "Would you like the silo server to be available over the network? (yes/no) [default=no]: ",
        "yes",
    );
    t.answer(
        "Address to bind silo to (not including port) [default=all]: ",
        "",
    );
    t.answer("Port to bind silo to [default=8443]: ", "99999");
    t.expect("Invalid input:");
    t.answer("Port to bind silo to [default=8443]: ", "9443");
    t.answer("Trust password for new clients: ", "sekrit-1");
    t.answer("Again: ", "sekrit-2");
    t.expect("Passwords don't match");
    t.answer("Trust password for new clients: ", "sekrit-1");
    t.answer("Again: ", "sekrit-1");
    t.answer(
        "Would you like stale cached images to be updated automatically? (yes/no) [default=yes]: ",
        "no",
    );
    t.answer(
        "Would you like a YAML \"silo init\" preseed to be printed? (yes/no) [default=no]: ",
        "yes",
    );
    let shown = t.expect("Set up:");
    assert!(
        shown.contains("name: silobr9") && shown.contains("name: pool2"),
        "{shown}"
    );
    assert!(
        !shown.contains("sekrit"),
        "the password is not printed: {shown}"
    );
    let (code, all) = t.wait();
    assert_eq!(code, 0, "{all}");
    assert!(
        !all.contains("sekrit"),
        "typed passwords are not echoed:\n{all}"
    );

    let pool = d.api_ok("GET", "/1.0/storage-pools/pool2", None);
    assert_eq!(pool["driver"], "dir");
    let br = d.api_ok("GET", "/1.0/networks/silobr9", None);
    assert_eq!(br["config"]["ipv4.address"], "10.55.0.1/24");
    let p = d.api_ok("GET", "/1.0/profiles/default", None);
    assert_eq!(p["devices"]["root"]["pool"], "pool2", "{p}");
    assert_eq!(p["devices"]["eth0"]["network"], "silobr9", "{p}");
    let s = d.api_ok("GET", "/1.0", None);
    assert_eq!(s["config"]["core.https_address"], "[::]:9443", "{s}");
    assert_eq!(s["config"]["images.auto_update_interval"], "0", "{s}");
    assert_eq!(s["config"]["core.trust_password"], true, "{s}");
}

#[test]
fn running_out_of_answers_changes_nothing() {
    let d = TestDaemon::start("init-eof");
    let before = dump(&d);
    let o = d.silo_stdin(&["init"], "no\nyes\nfresh\n");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No more input"),
        "{}",
        text(&o)
    );
    assert_eq!(dump(&d), before);
}

#[test]
fn a_spare_disk_for_the_pool_from_auto_and_from_the_questions() {
    let disk = SpareDisk::new("init-dev", 256 << 20);
    let disk2 = SpareDisk::new("init-dev2", 256 << 20);
    let policy = format!("block_devices = [{:?}, {:?}]\n", disk.dev, disk2.dev);
    let d = TestDaemon::start_with_policy("init-dev", &policy);
    let before = dump(&d);
    for (args, why) in [
        (
            vec![
                "--storage-backend",
                "dir",
                "--storage-create-device",
                disk.dev.as_str(),
            ],
            "needs a new btrfs pool",
        ),
        (
            vec![
                "--storage-backend",
                "btrfs",
                "--storage-create-device",
                "/dev/null",
            ],
            "/dev/null is not a block device",
        ),
    ] {
        let mut all = vec!["init", "--auto"];
        all.extend(args);
        let o = d.silo(&all);
        assert!(
            !o.status.success() && text(&o).contains(why),
            "{all:?}: {}",
            text(&o)
        );
        assert_eq!(dump(&d), before, "{all:?} changed nothing");
    }
    // --auto: the unused embedded dir default becomes btrfs on the disk.
    ok(d.silo(&[
        "init",
        "--auto",
        "--storage-backend",
        "btrfs",
        "--storage-create-device",
        &disk.dev,
    ]));
    let p = d.api_ok("GET", "/1.0/storage-pools/default", None);
    assert_eq!(p["driver"], "btrfs", "{p}");
    assert_eq!(p["config"]["source"], disk.dev.as_str(), "{p}");
    assert_eq!(
        disk.mount_points(),
        vec![d.dir.join("storage-pools/default").display().to_string()]
    );
    assert!(
        dump(&d).contains(&format!("source: {}", disk.dev)),
        "{}",
        dump(&d)
    );

    // The questions: a block device, with wrong paths asked again.
    let mut t = Pty::spawn(&d, &["init"]);
    t.answer(
        "Would you like to use silo clustering? (yes/no) [default=no]: ",
        "",
    );
    t.answer(
        "Do you want to configure a new storage pool? (yes/no) [default=yes]: ",
        "",
    );
    t.answer("Name of the new storage pool [default=default]: ", "p2");
    t.answer("[default=btrfs]: ", "btrfs");
    t.answer(
        "Would you like to use an existing empty block device (e.g. a disk or partition)? (yes/no) [default=no]: ",
        "yes",
    );
    t.answer("Path to the existing block device: ", "/tmp");
    t.expect("Invalid input: \"/tmp\" is not a device path beneath /dev");
    t.answer("Path to the existing block device: ", "/dev/null");
    t.expect("Invalid input: /dev/null is not a block device");
    t.answer("Path to the existing block device: ", &disk2.dev);
    t.answer(
        "Would you like to connect to a MAAS server? (yes/no) [default=no]: ",
        "",
    );
    t.answer(
        "Would you like to create a new local network bridge? (yes/no) [default=yes]: ",
        "",
    );
    t.answer(
        "What should the new bridge be called? [default=silobr0]: ",
        "silobr7",
    );
    t.answer("[default=auto]: ", "none");
    t.answer("[default=auto]: ", "none");
    t.answer(
        "Would you like the silo server to be available over the network? (yes/no) [default=no]: ",
        "",
    );
    t.answer(
        "Would you like stale cached images to be updated automatically? (yes/no) [default=yes]: ",
        "",
    );
    t.answer(
        "Would you like a YAML \"silo init\" preseed to be printed? (yes/no) [default=no]: ",
        "",
    );
    let (code, all) = t.wait();
    assert_eq!(code, 0, "{all}");
    let p = d.api_ok("GET", "/1.0/storage-pools/p2", None);
    assert_eq!(p["config"]["source"], disk2.dev.as_str(), "{p}");
    assert_eq!(
        disk2.mount_points(),
        vec![d.dir.join("storage-pools/p2").display().to_string()]
    );
    let prof = d.api_ok("GET", "/1.0/profiles/default", None);
    assert_eq!(prof["devices"]["root"]["pool"], "p2", "{prof}");
}

#[test]
fn a_bare_daemon_is_a_fresh_lxd_for_provisioning_tools() {
    let mut d = TestDaemon::start_with("init-bare", &["--bare"]);
    // Nothing made but an empty default profile, as a fresh LXD 5.0.
    let pools = d.api_ok("GET", "/1.0/storage-pools", None);
    assert_eq!(pools, serde_json::json!([]), "{pools}");
    let nets = d.api_ok("GET", "/1.0/networks?recursion=1", None);
    assert!(
        nets.as_array()
            .is_some_and(|n| n.iter().all(|n| n["managed"] == false)),
        "{nets}"
    );
    let p = d.api_ok("GET", "/1.0/profiles/default", None);
    assert_eq!(p["devices"], serde_json::json!({}), "{p}");
    // What a provisioning tool does to a fresh LXD now works: its own nic and pool.
    ok(d.lxc(&[
        "profile",
        "device",
        "add",
        "default",
        "eth0",
        "nic",
        "nictype=p2p",
        "name=eth0",
    ]));
    let preseed = "storage_pools:\n- name: tools\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: tools\n      type: disk\n    eth0:\n      type: nic\n      nictype: p2p\n      name: eth0\n";
    ok(d.silo_stdin(&["init", "--preseed"], preseed));
    // A restart keeps it bare: no pool or network appears by itself.
    d.stop();
    d.spawn();
    let pools = d.api_ok("GET", "/1.0/storage-pools", None);
    assert_eq!(pools.as_array().map(|a| a.len()), Some(1), "{pools}");
    d.import(&busybox_image(false)[0], "busybox");
    d.launch("busybox", "c1");
    assert_eq!(d.status("c1"), "Running");
    let (rc, out, _) = d.exec("c1", &["ip", "link", "show", "eth0"]);
    assert_eq!(rc, 0, "{out}");

    // The same from the unit's environment.
    let e = TestDaemon::start_with_env("init-bare-env", &[("SILOD_BARE", "1")]);
    assert_eq!(
        e.api_ok("GET", "/1.0/storage-pools", None),
        serde_json::json!([])
    );
    assert_eq!(
        e.api_ok("GET", "/1.0/profiles/default", None)["devices"],
        serde_json::json!({})
    );
}
