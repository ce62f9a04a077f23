//! The CLI commands lxc has and silo lacked, each through `silo` and, where the stock lxc has
//! the command, its server side through `lxc`: query, alias, config device
//! get/set/unset/override, profile copy, profile device get/set/unset, image
//! get/set/unset-property, storage edit, and --all-projects on listings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use silo_tests::{busybox_image, show, TestDaemon};

/// `silo` against `d`, with its own client config dir (aliases live there) and `stdin`.
fn silo_run(d: &TestDaemon, conf: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(silo_tests::bin("silo"))
        .args(args)
        .env("SILO_SOCKET", d.socket())
        .env("SILO_CONF", conf)
        .env_remove("SILO_DIR")
        .env_remove("SILO_REMOTE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run silo");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("silo")
}

struct Cli<'a> {
    d: &'a TestDaemon,
    conf: PathBuf,
}

impl Cli<'_> {
    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, "")
    }

    fn ok_in(&self, args: &[&str], stdin: &str) -> String {
        let o = silo_run(self.d, &self.conf, args, stdin);
        assert!(o.status.success(), "silo {args:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = silo_run(self.d, &self.conf, args, "");
        assert!(!o.status.success(), "silo {args:?} succeeded: {}", show(&o));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    fn lxc(&self, args: &[&str]) -> String {
        let o = self.d.lxc(args);
        assert!(o.status.success(), "lxc {args:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn lxc_in(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new("lxc")
            .args(args)
            .env("LXD_DIR", &self.d.dir)
            .env("LXD_CONF", self.d.dir.join("lxc-conf"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lxc");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        let o = child.wait_with_output().expect("lxc");
        assert!(o.status.success(), "lxc {args:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn setup(name: &str) -> (TestDaemon, PathBuf) {
    let d = TestDaemon::start(name);
    let conf = d.dir.join("silo-conf");
    std::fs::create_dir_all(&conf).expect("conf dir");
    d.import(&busybox_image(false)[0], "bb");
    (d, conf)
}

/// The pool the default profile's root disk is on.
fn pool(d: &TestDaemon) -> String {
    let p = d.api_ok("GET", "/1.0/profiles/default", None);
    p["devices"]["root"]["pool"]
        .as_str()
        .expect("root pool")
        .to_string()
}

#[test]
fn devices_profiles_images_storage() {
    let (d, conf) = setup("cli-more-dev");
    let c = Cli { d: &d, conf };
    let pool = pool(&d);
    c.ok(&["storage", "volume", "create", &pool, "v1"]);
    c.ok(&["profile", "create", "p1"]);
    c.ok(&[
        "profile",
        "device",
        "add",
        "p1",
        "vol",
        "disk",
        &format!("pool={pool}"),
        "source=v1",
        "path=/mnt/a",
    ]);

    // profile device get/set/unset, and the stock client reads what silo wrote.
    c.ok(&["profile", "device", "set", "p1", "vol", "path", "/mnt/b"]);
    assert_eq!(
        c.ok(&["profile", "device", "get", "p1", "vol", "path"]),
        "/mnt/b\n"
    );
    c.ok(&["profile", "device", "set", "p1", "vol", "readonly=true"]);
    assert_eq!(
        c.lxc(&["profile", "device", "get", "p1", "vol", "readonly"]),
        "true\n"
    );
    c.ok(&["profile", "device", "unset", "p1", "vol", "readonly"]);
    assert_eq!(
        c.lxc(&["profile", "device", "get", "p1", "vol", "readonly"]),
        "\n"
    );
    assert!(c
        .fails(&["profile", "device", "set", "p1", "nope", "path", "/x"])
        .contains("Device doesn't exist"));
    // The server side of lxc's own set.
    c.lxc(&["profile", "device", "set", "p1", "vol", "path=/mnt/a"]);
    assert_eq!(
        c.ok(&["profile", "device", "get", "p1", "vol", "path"]),
        "/mnt/a\n"
    );

    // profile copy: silo's and lxc's.
    c.ok(&["profile", "copy", "p1", "p2"]);
    c.lxc(&["profile", "copy", "p1", "p3"]);
    let p1 = d.api_ok("GET", "/1.0/profiles/p1", None);
    for p in ["p2", "p3"] {
        let v = d.api_ok("GET", &format!("/1.0/profiles/{p}"), None);
        assert_eq!(v["devices"], p1["devices"], "{p}");
    }
    assert!(c.fails(&["profile", "copy", "p1", "p2"]).contains("exists"));
    c.ok(&["profile", "device", "set", "p1", "vol", "path", "/mnt/r"]);
    c.ok(&["profile", "copy", "p1", "p2", "--refresh"]);
    assert_eq!(
        c.ok(&["profile", "device", "get", "p2", "vol", "path"]),
        "/mnt/r\n"
    );

    // config device get/set/unset/override on an instance that has `vol` from p1.
    c.ok(&["init", "bb", "c1", "-p", "default", "-p", "p1"]);
    c.ok(&["init", "bb", "c2", "-p", "default", "-p", "p1"]);
    assert!(c
        .fails(&["config", "device", "get", "c1", "vol", "path"])
        .contains("Device from profile(s) cannot be retrieved"));
    assert!(c
        .fails(&["config", "device", "set", "c1", "vol", "path", "/x"])
        .contains("Override device or modify profile instead"));
    assert_eq!(
        c.ok(&["config", "device", "override", "c1", "vol", "path=/mnt/c"]),
        "Device vol overridden for c1\n"
    );
    assert_eq!(
        c.lxc(&["config", "device", "get", "c1", "vol", "path"]),
        "/mnt/c\n"
    );
    c.ok(&["config", "device", "set", "c1", "vol", "readonly", "true"]);
    assert_eq!(
        c.ok(&["config", "device", "get", "c1", "vol", "readonly"]),
        "true\n"
    );
    c.ok(&["config", "device", "unset", "c1", "vol", "readonly"]);
    let inst = d.api_ok("GET", "/1.0/instances/c1", None);
    assert_eq!(inst["devices"]["vol"]["path"], "/mnt/c", "{inst}");
    assert!(inst["devices"]["vol"].get("readonly").is_none(), "{inst}");
    assert!(c
        .fails(&["config", "device", "override", "c1", "vol"])
        .contains("The device already exists"));
    assert!(c
        .fails(&["config", "device", "override", "c1", "nope"])
        .contains("The profile device doesn't exist"));
    // lxc's override, served by silod.
    c.lxc(&["config", "device", "override", "c2", "vol", "path=/mnt/d"]);
    assert_eq!(
        c.ok(&["config", "device", "get", "c2", "vol", "path"]),
        "/mnt/d\n"
    );

    // image get/set/unset-property, both ways.
    c.ok(&["image", "set-property", "bb", "os", "custom"]);
    assert_eq!(c.ok(&["image", "get-property", "bb", "os"]), "custom\n");
    assert_eq!(c.lxc(&["image", "get-property", "bb", "os"]), "custom\n");
    c.lxc(&["image", "set-property", "bb", "flavour", "plain"]);
    assert_eq!(c.ok(&["image", "get-property", "bb", "flavour"]), "plain\n");
    c.ok(&["image", "unset-property", "bb", "flavour"]);
    assert_eq!(c.ok(&["image", "get-property", "bb", "flavour"]), "");
    let fp = d.api_ok("GET", "/1.0/images/aliases/bb", None)["target"]
        .as_str()
        .expect("fp")
        .to_string();
    let img = d.api_ok("GET", &format!("/1.0/images/{fp}"), None);
    assert!(img["properties"].get("flavour").is_none(), "{img}");
    assert_eq!(img["properties"]["os"], "custom");

    // storage edit from stdin: silo's, and lxc's served by silod.
    let shown = c.ok(&["storage", "show", &pool]);
    let edited = shown
        .lines()
        .filter(|l| !l.starts_with("description:"))
        .chain(["description: edited by silo"])
        .collect::<Vec<_>>()
        .join("\n");
    c.ok_in(&["storage", "edit", &pool], &edited);
    assert!(c
        .lxc(&["storage", "show", &pool])
        .contains("description: edited by silo"));
    c.lxc_in(
        &["storage", "edit", &pool],
        &edited.replace("edited by silo", "edited by lxc"),
    );
    let v = d.api_ok("GET", &format!("/1.0/storage-pools/{pool}"), None);
    assert_eq!(v["description"], "edited by lxc");

    // --all-projects: silo has the default project, shown in a PROJECT column.
    let list = c.ok(&["list", "--all-projects"]);
    let header = list.lines().nth(1).expect("header");
    assert!(header.starts_with("| PROJECT | NAME"), "{list}");
    assert!(list.contains("| default | c1"), "{list}");
    let lxc_list = c.lxc(&["list", "--all-projects", "-c", "en", "-f", "csv"]);
    assert_eq!(lxc_list, "default,c1\ndefault,c2\n");
    let vols = c.ok(&["storage", "volume", "list", &pool, "--all-projects"]);
    assert!(
        vols.lines()
            .nth(1)
            .expect("header")
            .starts_with("| PROJECT |   TYPE"),
        "{vols}"
    );
    assert!(vols.contains("| default | custom"), "{vols}");
    let lxc_vols = c.lxc(&[
        "storage",
        "volume",
        "list",
        &pool,
        "--all-projects",
        "-c",
        "etn",
        "-f",
        "csv",
    ]);
    assert!(lxc_vols.contains("default,custom,v1\n"), "{lxc_vols}");

    // monitor --all-projects: the stock client's request is served, and silo takes the flag.
    let mon = Command::new("timeout")
        .args([
            "5",
            "lxc",
            "monitor",
            "--all-projects",
            "--type",
            "lifecycle",
        ])
        .env("LXD_DIR", &d.dir)
        .env("LXD_CONF", d.dir.join("lxc-conf"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lxc monitor");
    let smon = Command::new("timeout")
        .arg("5")
        .arg(silo_tests::bin("silo"))
        .args(["monitor", "--all-projects", "--type", "lifecycle"])
        .env("SILO_SOCKET", d.socket())
        .env("SILO_CONF", &c.conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("silo monitor");
    std::thread::sleep(std::time::Duration::from_millis(2000));
    c.ok(&["profile", "create", "monitored"]);
    for (who, child) in [("lxc", mon), ("silo", smon)] {
        let o = child.wait_with_output().expect("monitor");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("profile-created"),
            "{who} monitor --all-projects: {}",
            show(&o)
        );
    }

    c.ok(&["delete", "c1", "c2"]);
}

#[test]
fn query_and_aliases() {
    let (d, conf) = setup("cli-more-query");
    let c = Cli { d: &d, conf };
    // The same bytes as the stock client prints.
    for path in ["/1.0/profiles/default", "/1.0/images/aliases"] {
        assert_eq!(c.ok(&["query", path]), c.lxc(&["query", path]), "{path}");
    }
    assert_eq!(
        c.ok(&["query", "--raw", "/1.0/profiles/default"]),
        c.lxc(&["query", "--raw", "/1.0/profiles/default"])
    );
    let v: serde_json::Value = serde_json::from_str(&c.ok(&["query", "/1.0"])).expect("json");
    assert!(v["api_extensions"].is_array(), "{v}");
    // -X and -d, a JSON body.
    c.ok(&[
        "query",
        "-X",
        "POST",
        "-d",
        r#"{"name": "q1", "description": "by query"}"#,
        "/1.0/profiles",
    ]);
    assert_eq!(
        d.api_ok("GET", "/1.0/profiles/q1", None)["description"],
        "by query"
    );
    // --wait on an operation, and its failure.
    c.ok(&["init", "bb", "qc"]);
    let raw = c.ok(&[
        "query",
        "-X",
        "DELETE",
        "--wait",
        "--raw",
        "/1.0/instances/qc",
    ]);
    assert!(raw.contains("\"status\": \"Success\""), "{raw}");
    let (code, _) = d.api("GET", "/1.0/instances/qc", None);
    assert_eq!(code, 404);
    assert!(c
        .fails(&["query", "/1.0/instances/nope"])
        .contains("not found"));
    assert!(c.fails(&["query", "1.0"]).contains("must start with /"));

    // Aliases, kept in the client's config.yml.
    c.ok(&["alias", "add", "names", "list -c n -f csv"]);
    c.ok(&["alias", "add", "pget", "profile get @ARG1@ @ARG2@"]);
    assert!(c
        .fails(&["alias", "add", "names", "list"])
        .contains("Alias names already exists"));
    let list = c.ok(&["alias", "list", "-f", "csv"]);
    assert_eq!(
        list,
        "names,list -c n -f csv\npget,profile get @ARG1@ @ARG2@\n"
    );
    let yml = std::fs::read_to_string(c.conf.join("config.yml")).expect("config.yml");
    assert!(
        yml.contains("aliases:") && yml.contains("names: list -c n -f csv"),
        "{yml}"
    );
    c.ok(&["init", "bb", "a1"]);
    assert_eq!(c.ok(&["names"]), "a1\n");
    // A body that is not the API's JSON (a file) is printed as it came, as lxc prints it.
    let file = "/1.0/instances/a1/files?path=/etc/inittab";
    let got = c.ok(&["query", file]);
    assert!(!got.is_empty() && !got.starts_with('{'), "{got}");
    assert_eq!(got, c.lxc(&["query", file]));
    c.ok(&["profile", "set", "default", "user.k", "v"]);
    assert_eq!(c.ok(&["pget", "default", "user.k"]), "v\n");
    assert!(c
        .fails(&["pget", "default"])
        .contains("references an argument outside the given number"));
    c.ok(&["alias", "rename", "names", "n"]);
    assert_eq!(c.ok(&["n"]), "a1\n");
    assert!(c
        .fails(&["alias", "remove", "names"])
        .contains("Alias names doesn't exist"));
    c.ok(&["alias", "remove", "n"]);
    c.ok(&["alias", "remove", "pget"]);
    assert_eq!(c.ok(&["alias", "list", "-f", "csv"]), "");
    c.ok(&["delete", "a1"]);
}
