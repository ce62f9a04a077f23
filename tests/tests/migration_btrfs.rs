//! btrfs send streams between two silos whose pools are btrfs (`lxc copy a:c b:c`): the
//! source offers BTRFS, the target answers it when its own pool is btrfs, and each snapshot
//! and then the instance travel as one send stream (the snapshots after the first, and the
//! instance, as differences), applied by silo-store's hostile-stream receiver. Hard links
//! survive (rsync, as LXD runs it, has no `-H`), which shows the streams were used. A target
//! with a dir pool falls back to rsync; a scripted source sending a stream whose path
//! climbs out of the volume fails and leaves nothing.

use std::path::Path;

use futures::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{json, Value};
use silo_api::migration::{
    BtrfsFeatures, MigrationControl, MigrationFsType, MigrationHeader, MigrationInfoResponse,
    RsyncFeatures,
};
use silo_tests::lxc_client::Lxc;
use silo_tests::trees::{self, compare_dirs, show_diffs, Options};
use silo_tests::{busybox_image, link_netns, show, TestDaemon};
use tokio_tungstenite::tungstenite::Message;

const PW: &str = "mig-pw";

/// `/etc/hostname` is the copy's own (its image's "copy" template writes it).
fn opts(hardlinks: bool) -> Options {
    Options {
        hardlinks,
        ignore: vec!["etc/hostname".into()],
        ..Options::default()
    }
}

fn assert_same(a: &Path, b: &Path, what: &str, hardlinks: bool) {
    let d = compare_dirs(a, b, &opts(hardlinks)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(d.is_empty(), "{what} differs:\n{}", show_diffs(&d, 40));
}

/// A silod whose default pool is a 2 GiB btrfs loop pool.
fn btrfs_daemon(name: &str) -> TestDaemon {
    let d = TestDaemon::start(name);
    let o = d.silo(&[
        "init",
        "--auto",
        "--storage-backend",
        "btrfs",
        "--storage-create-loop",
        "2",
    ]);
    assert!(o.status.success(), "silo init on btrfs: {}", show(&o));
    d
}

fn write_version(root: &Path, v: &str) {
    let m = root.join("silo-mig");
    std::fs::create_dir_all(&m).expect("mkdir");
    std::fs::write(m.join("changed"), format!("{v}\n").repeat(v.len() + 1)).expect("write");
    std::fs::write(m.join(format!("only-{v}")), v).expect("write");
    // Moved and removed between snapshots: the incremental streams rename and unlink.
    let _ = std::fs::remove_file(m.join("moving"));
    std::fs::write(m.join(format!("moving-{v}")), v).expect("write");
}

fn enrich(root: &Path) {
    use std::os::unix::fs::{chown, symlink, PermissionsExt};
    let m = root.join("silo-mig");
    std::fs::create_dir_all(m.join("sub")).expect("mkdir");
    std::fs::write(m.join("suid"), "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(m.join("suid"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod");
    std::fs::write(m.join("owned"), "1000:1001\n").expect("write");
    chown(m.join("owned"), Some(1000), Some(1001)).expect("chown");
    std::fs::write(m.join("xattr"), "x\n").expect("write");
    trees::set_xattr(&m.join("xattr"), "user.silo", b"migrated").expect("xattr");
    trees::mkfifo(&m.join("fifo"), 0o640).expect("fifo");
    symlink("/nowhere", m.join("dangling")).expect("symlink");
    std::fs::write(m.join("linked"), "one inode, two names\n").expect("write");
    std::fs::hard_link(m.join("linked"), m.join("sub/linked-too")).expect("link");
    let big: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(m.join("big"), big).expect("big");
}

/// Two silos on btrfs, linked, listening, with an `lxc` in B's namespace; A has busybox
/// instance c1 with snapshots snap0 and snap1 and changes after each.
struct Pair {
    lxc: Lxc,
    b: TestDaemon,
    a: TestDaemon,
}

fn pair(name: &str) -> Pair {
    let a = btrfs_daemon(&format!("{name}-a"));
    let b = btrfs_daemon(&format!("{name}-b"));
    link_netns(&a, &b);
    a.listen_https("198.18.0.1:8443", PW);
    b.listen_https("198.18.0.2:8443", PW);
    let lxc = Lxc::new(name, &b.netns);
    lxc.add_remote("a", "https://198.18.0.1:8443", PW);
    lxc.add_remote("b", "https://198.18.0.2:8443", PW);
    a.import(&busybox_image(false)[0], "busybox");
    a.api_ok(
        "POST",
        "/1.0/instances",
        Some(
            json!({"name": "c1", "source": {"type": "image", "alias": "busybox"},
                     "config": {"user.note": "migrated"}}),
        ),
    );
    let root = trees::silo_rootfs(&a.dir, "default", "c1");
    enrich(&root);
    for (v, snap) in [
        ("v0", Some("snap0")),
        ("v11", Some("snap1")),
        ("v222", None),
    ] {
        write_version(&root, v);
        if let Some(s) = snap {
            a.api_ok(
                "POST",
                "/1.0/instances/c1/snapshots",
                Some(json!({"name": s})),
            );
        }
    }
    Pair { lxc, b, a }
}

fn snapshot_names(d: &TestDaemon, c: &str) -> Vec<String> {
    let (code, v) = d.api(
        "GET",
        &format!("/1.0/instances/{c}/snapshots?recursion=1"),
        None,
    );
    assert_eq!(code, 200, "{v}");
    v["metadata"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn check_copy(p: &Pair, dst: &str, pool: &str, hardlinks: bool) {
    assert_same(
        &trees::silo_rootfs(&p.a.dir, "default", "c1"),
        &trees::silo_rootfs(&p.b.dir, pool, dst),
        &format!("{dst}'s root filesystem"),
        hardlinks,
    );
    assert_eq!(snapshot_names(&p.b, dst), ["snap0", "snap1"], "{dst}");
    for s in ["snap0", "snap1"] {
        assert_same(
            &trees::silo_snapshot_rootfs(&p.a.dir, "default", "c1", s),
            &trees::silo_snapshot_rootfs(&p.b.dir, pool, dst, s),
            &format!("{dst}/{s}"),
            hardlinks,
        );
    }
    p.b.api_ok(
        "PUT",
        &format!("/1.0/instances/{dst}/state"),
        Some(json!({"action": "start"})),
    );
    let (code, out, _) = p.b.exec(dst, &["cat", "/silo-mig/changed"]);
    assert_eq!(code, 0, "exec in {dst}: {out}");
    assert!(out.starts_with("v222"), "{out}");
    p.b.api_ok(
        "PUT",
        &format!("/1.0/instances/{dst}/state"),
        Some(json!({"action": "stop", "force": true})),
    );
}

/// The streams silo-store received so far (it logs each one).
fn streams_received(d: &TestDaemon) -> usize {
    d.log_text().matches("received btrfs stream").count()
}

/// Of those, the ones that were differences from the volume before them.
fn incremental_streams(d: &TestDaemon) -> usize {
    d.log_text()
        .lines()
        .map(plain)
        .filter(|l| l.contains("received btrfs stream") && l.contains("incremental=true"))
        .count()
}

/// A log line without its colours.
fn plain(l: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for ch in l.chars() {
        match (esc, ch) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

#[test]
fn lxc_copies_between_btrfs_silos_as_send_streams() {
    let p = pair("mig-bt");
    for mode in ["pull", "relay"] {
        let dst = format!("c-{mode}");
        let before = streams_received(&p.b);
        let inc_before = incremental_streams(&p.b);
        let (o, t) = p
            .lxc
            .timed(&["copy", "a:c1", &format!("b:{dst}"), "--mode", mode]);
        assert!(o.status.success(), "copy --mode {mode}: {}", show(&o));
        eprintln!(
            "[migration-timing] silo->silo btrfs copy --mode {mode}: {} ms",
            t.as_millis()
        );
        // Two snapshots and the instance: three streams, and hard links kept.
        assert_eq!(
            streams_received(&p.b) - before,
            3,
            "btrfs streams for {dst}; log:\n{}",
            p.b.log_text()
        );
        // snap1 and the instance are sent as differences (`-p` the snapshot before).
        assert_eq!(
            incremental_streams(&p.b) - inc_before,
            2,
            "incremental streams for {dst}; log:\n{}",
            p.b.log_text()
        );
        check_copy(&p, &dst, "default", true);
    }
    // A snapshot copied as an instance, and an instance without its snapshots: one stream.
    for (src, dst, args) in [
        ("a:c1/snap0", "c-snap", &[][..]),
        ("a:c1", "c-only", &["--instance-only"][..]),
    ] {
        let before = streams_received(&p.b);
        let target = format!("b:{dst}");
        let mut argv = vec!["copy", src, target.as_str()];
        argv.extend_from_slice(args);
        p.lxc.ok(&argv);
        assert_eq!(streams_received(&p.b) - before, 1, "{dst}");
        let from = match dst {
            "c-snap" => trees::silo_snapshot_rootfs(&p.a.dir, "default", "c1", "snap0"),
            _ => trees::silo_rootfs(&p.a.dir, "default", "c1"),
        };
        assert_same(
            &from,
            &trees::silo_rootfs(&p.b.dir, "default", dst),
            dst,
            true,
        );
        assert!(snapshot_names(&p.b, dst).is_empty(), "{dst}");
    }

    // No scratch snapshot is left on the source, and its snapshots, made read-only for
    // the sends, are writable again as they were.
    let pool = p.a.dir.join("storage-pools/default/containers");
    let left: Vec<String> = std::fs::read_dir(&pool)
        .expect("containers")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "left on the source: {left:?}");
    for s in ["snap0", "snap1"] {
        let f = trees::silo_snapshot_rootfs(&p.a.dir, "default", "c1", s).join("writable");
        std::fs::write(&f, "x").unwrap_or_else(|e| panic!("{s} stayed read-only: {e}"));
        std::fs::remove_file(&f).expect("rm");
    }

    // An instance restored from an optimized backup: its volumes are not snapshots of one
    // another, so no difference between them is sound; they are sent whole and arrive intact.
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("opt.tar.gz");
    let f = f.display().to_string();
    let o = p.a.silo(&["export", "c1", &f, "--optimized-storage"]);
    assert!(o.status.success(), "export: {}", show(&o));
    let o = p.a.silo(&["import", &f, "c-imp"]);
    assert!(o.status.success(), "import: {}", show(&o));
    let before = streams_received(&p.b);
    p.lxc.ok(&["copy", "a:c-imp", "b:c-imp"]);
    assert_eq!(streams_received(&p.b) - before, 3, "c-imp");
    assert_same(
        &trees::silo_rootfs(&p.a.dir, "default", "c-imp"),
        &trees::silo_rootfs(&p.b.dir, "default", "c-imp"),
        "c-imp",
        true,
    );
    for s in ["snap0", "snap1"] {
        assert_same(
            &trees::silo_snapshot_rootfs(&p.a.dir, "default", "c-imp", s),
            &trees::silo_snapshot_rootfs(&p.b.dir, "default", "c-imp", s),
            &format!("c-imp/{s}"),
            true,
        );
    }

    // A target whose pool is a dir pool answers rsync: hard links do not survive it.
    p.b.api_ok(
        "POST",
        "/1.0/storage-pools",
        Some(json!({"name": "dirpool", "driver": "dir"})),
    );
    let before = streams_received(&p.b);
    let (o, t) = p
        .lxc
        .timed(&["copy", "a:c1", "b:c-dir", "--storage", "dirpool"]);
    assert!(o.status.success(), "copy to a dir pool: {}", show(&o));
    eprintln!(
        "[migration-timing] silo->silo rsync copy (btrfs source, dir target): {} ms",
        t.as_millis()
    );
    assert_eq!(
        streams_received(&p.b),
        before,
        "no btrfs stream to a dir pool"
    );
    check_copy(&p, "c-dir", "dirpool", false);
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>;

async fn dial(d: &TestDaemon, op: &str, secret: &str) -> Ws {
    let sock = tokio::net::UnixStream::connect(d.socket())
        .await
        .expect("connect");
    let url = format!("ws://localhost{op}/websocket?secret={secret}");
    tokio_tungstenite::client_async(url, sock)
        .await
        .map(|(ws, _)| ws)
        .expect("dial")
}

/// One send stream command: its number and its (attribute, value) pairs.
type SendCmd = (u16, Vec<(u16, Vec<u8>)>);

fn send_stream(cmds: &[SendCmd]) -> Vec<u8> {
    let mut out = b"btrfs-stream\0".to_vec();
    out.extend(1u32.to_le_bytes());
    for (cmd, attrs) in cmds {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend(t.to_le_bytes());
            body.extend((v.len() as u16).to_le_bytes());
            body.extend(v);
        }
        out.extend((body.len() as u32).to_le_bytes());
        out.extend(cmd.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(body);
    }
    out
}

async fn send_stream_frames(ws: &mut Ws, bytes: Vec<u8>) {
    ws.send(Message::Binary(bytes.into())).await.expect("data");
    ws.send(Message::Text(String::new().into()))
        .await
        .expect("end marker");
}

/// Plays a btrfs migration source in push mode: offer, index header, btrfs header, then
/// `stream` as the instance's send stream. Answers the target's answer and its verdict.
async fn play(
    d: &TestDaemon,
    answer: &Value,
    btrfs_header: &str,
    stream: Vec<u8>,
) -> (MigrationHeader, String) {
    let op = answer["operation"].as_str().expect("operation").to_string();
    let md = &answer["metadata"]["metadata"];
    let mut control = dial(d, &op, md["control"].as_str().expect("control")).await;
    let mut fs = dial(d, &op, md["fs"].as_str().expect("fs")).await;
    let offer = MigrationHeader {
        fs: MigrationFsType::Btrfs as i32,
        rsync_features: Some(RsyncFeatures {
            xattrs: Some(true),
            delete: Some(true),
            compress: Some(false),
            bidirectional: Some(true),
        }),
        btrfs_features: Some(BtrfsFeatures {
            migration_header: Some(true),
            header_subvolumes: Some(true),
            header_subvolume_uuids: Some(true),
        }),
        index_header_version: Some(1),
        ..Default::default()
    };
    control
        .send(Message::Binary(offer.encode_to_vec().into()))
        .await
        .expect("offer");
    let got = match control.next().await {
        Some(Ok(Message::Binary(b))) => MigrationHeader::decode(b.as_ref()).expect("answer"),
        m => panic!("no answer: {m:?}"),
    };
    send_stream_frames(
        &mut fs,
        br#"{"Config":{"Container":{"name":"x"}}}"#.to_vec(),
    )
    .await;
    let mut reply = Vec::new();
    while let Some(Ok(m)) = fs.next().await {
        match m {
            Message::Binary(b) => reply.extend_from_slice(&b),
            _ => break,
        }
    }
    let r: MigrationInfoResponse = serde_json::from_slice(&reply).expect("info response");
    assert_eq!(r.status_code, 200, "{r:?}");
    send_stream_frames(&mut fs, btrfs_header.as_bytes().to_vec()).await;
    // The target may have stopped reading already (a refused header).
    let _ = fs.send(Message::Binary(stream.into())).await;
    let _ = fs.send(Message::Text(String::new().into())).await;
    let verdict = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(Ok(m)) = control.next().await {
            if let Message::Binary(b) = m {
                if let Ok(c) = MigrationControl::decode(b.as_ref()) {
                    return if c.success {
                        "success".to_string()
                    } else {
                        c.message.unwrap_or_default()
                    };
                }
            }
        }
        String::new()
    })
    .await
    .unwrap_or_default();
    (got, verdict)
}

#[test]
fn a_hostile_btrfs_stream_from_a_source_fails_and_leaves_nothing() {
    let d = btrfs_daemon("mig-bt-evil");
    let (c, a) = d.api("POST", "/1.0/instances", Some(evil_target()));
    assert_eq!(c, 202, "{a}");
    let path = |p: &str| (15u16, p.as_bytes().to_vec());
    let escape = "/tmp/silo-mig-bt-pwned";
    let _ = std::fs::remove_file(escape);
    // A whole subvolume whose first file climbs out of the volume.
    let stream = send_stream(&[
        (
            1,
            vec![
                path("x"),
                (1, vec![7; 16]),
                (2, 1u64.to_le_bytes().to_vec()),
            ],
        ),
        (
            3,
            vec![path("../../../../../../../../tmp/silo-mig-bt-pwned")],
        ),
        (21, vec![]),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let plain_header = r#"{"subvolumes":[{"path":"/","snapshot":"","readonly":false,"uuid":""}]}"#;
    let (answer, said) = rt.block_on(play(&d, &a, plain_header, stream.clone()));
    assert_eq!(
        answer.fs_type(),
        Some(MigrationFsType::Btrfs),
        "a btrfs target answers btrfs: {answer:?}"
    );
    assert_eq!(
        answer.btrfs_features.and_then(|f| f.header_subvolumes),
        Some(false),
        "nested subvolumes are not accepted"
    );
    let op = d.wait_op(&a);
    assert_eq!(op["status"], "Failure", "{op}");
    let err = op["err"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("btrfs"), "{err}");
    assert_eq!(said, err, "the source hears why");
    assert!(!Path::new(escape).exists(), "the stream wrote {escape}");
    assert_nothing_left(&d);
    // A nested subvolume is refused (silo's receiver makes plain volumes), not dropped.
    let (c, a) = d.api("POST", "/1.0/instances", Some(evil_target()));
    assert_eq!(c, 202, "{a}");
    let nested = r#"{"subvolumes":[{"path":"/","snapshot":"","readonly":false},{"path":"/var/lib/machines","snapshot":"","readonly":false}]}"#;
    let (_, said) = rt.block_on(play(&d, &a, nested, stream));
    let op = d.wait_op(&a);
    assert_eq!(op["status"], "Failure", "{op}");
    let err = op["err"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("nested btrfs subvolume"), "{err}");
    assert_eq!(said, err, "the source hears why");
    assert_nothing_left(&d);
}

fn evil_target() -> Value {
    json!({
        "name": "evil", "architecture": "x86_64", "type": "container",
        "profiles": ["default"], "config": {}, "devices": {},
        "source": {"type": "migration", "mode": "push"},
    })
}

/// No record and no volume of instance "evil".
fn assert_nothing_left(d: &TestDaemon) {
    assert_eq!(d.api("GET", "/1.0/instances/evil", None).0, 404);
    let pool = d.dir.join("storage-pools/default");
    for kind in ["containers", "containers-snapshots"] {
        for e in std::fs::read_dir(pool.join(kind))
            .into_iter()
            .flatten()
            .flatten()
        {
            let f = e.file_name().to_string_lossy().to_string();
            assert!(
                f != "evil" && !f.starts_with("evil."),
                "volume {kind}/{f} left behind"
            );
        }
    }
}

/// LXD 5.0.2 on a btrfs pool and a silo on btrfs: both ways as btrfs send streams (LXD's
/// own `btrfs send`/`btrfs receive` at its end, so the framing, the migration header and the
/// order of the streams are LXD's). Hard links surviving shows the streams were used.
#[test]
fn lxd_and_silo_on_btrfs_copy_as_send_streams_both_ways() {
    use silo_tests::lxd::{TestLxd, TRUST_PASSWORD};
    let silo = btrfs_daemon("mig-btl-s");
    silo.listen_https("127.0.0.1:8443", PW);
    let lxd = TestLxd::start_in_netns_of("mig-btl-l", &silo, 8444);
    let lxc = Lxc::new("mig-btl", &silo.netns);
    lxc.add_remote("s", "https://127.0.0.1:8443", PW);
    lxc.add_remote("l", "https://127.0.0.1:8444", TRUST_PASSWORD);
    let lxd_ok = |args: &[&str]| {
        let o = lxd.lxc(args);
        assert!(o.status.success(), "lxc {}: {}", args.join(" "), show(&o));
    };
    lxd_ok(&["storage", "create", "bt", "btrfs", "size=2GiB"]);
    let files = busybox_image(false);
    lxd_ok(&[
        "image",
        "import",
        &files[0].to_string_lossy(),
        "--alias",
        "busybox",
    ]);
    lxd_ok(&[
        "init",
        "busybox",
        "w1",
        "-s",
        "bt",
        "-c",
        "user.note=from-lxd",
    ]);
    let lroot = trees::lxd_rootfs(&lxd.dir, "bt", "w1");
    enrich(&lroot);
    for (v, snap) in [
        ("v0", Some("snap0")),
        ("v11", Some("snap1")),
        ("v222", None),
    ] {
        write_version(&lroot, v);
        if let Some(s) = snap {
            lxd_ok(&["snapshot", "w1", s]);
        }
    }
    let before = streams_received(&silo);
    let (o, t) = lxc.timed(&["copy", "l:w1", "s:w1", "-s", "default"]);
    assert!(o.status.success(), "LXD -> silo: {}", show(&o));
    eprintln!(
        "[migration-timing] lxd->silo btrfs copy: {} ms",
        t.as_millis()
    );
    assert_eq!(
        streams_received(&silo) - before,
        3,
        "btrfs streams from LXD; log:\n{}",
        silo.log_text()
    );
    assert_same(
        &lroot,
        &trees::silo_rootfs(&silo.dir, "default", "w1"),
        "w1 from LXD",
        true,
    );
    for s in ["snap0", "snap1"] {
        assert_same(
            &trees::lxd_snapshot_rootfs(&lxd.dir, "bt", "w1", s),
            &trees::silo_snapshot_rootfs(&silo.dir, "default", "w1", s),
            &format!("w1/{s} from LXD"),
            true,
        );
    }
    // And back: LXD receives silo's streams with its own `btrfs receive`.
    let (o, t) = lxc.timed(&["copy", "s:w1", "l:back", "-s", "bt"]);
    assert!(o.status.success(), "silo -> LXD: {}", show(&o));
    eprintln!(
        "[migration-timing] silo->lxd btrfs copy: {} ms",
        t.as_millis()
    );
    assert_same(
        &trees::silo_rootfs(&silo.dir, "default", "w1"),
        &trees::lxd_rootfs(&lxd.dir, "bt", "back"),
        "back on LXD",
        true,
    );
    for s in ["snap0", "snap1"] {
        assert_same(
            &trees::silo_snapshot_rootfs(&silo.dir, "default", "w1", s),
            &trees::lxd_snapshot_rootfs(&lxd.dir, "bt", "back", s),
            &format!("back/{s} on LXD"),
            true,
        );
    }
    lxd_ok(&["start", "back"]);
    let o = lxd.lxc(&["exec", "back", "--", "cat", "/silo-mig/changed"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("v222"),
        "{}",
        show(&o)
    );
    lxd_ok(&["stop", "back", "--force"]);
}
