//! A hostile or broken migration source against silod as the target: a scripted source
//! speaks LXD's protocol (push mode: it dials the target operation's websockets over the
//! unix socket) and then misbehaves. Each case checks that the target fails the operation
//! with a message saying why, and leaves no instance, record or volume behind.

use futures::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{json, Value};
use silo_api::migration::{
    Config, CriuType, MigrationControl, MigrationFsType, MigrationHeader, MigrationInfoResponse,
    RsyncFeatures, Snapshot,
};
use silo_tests::TestDaemon;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Asks `d` for a push-mode migration target named `name`: answers the async answer.
fn push_target(d: &TestDaemon, name: &str) -> Value {
    let (c, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": name,
            "architecture": "x86_64",
            "type": "container",
            "profiles": ["default"],
            "config": {},
            "devices": {},
            "source": {"type": "migration", "mode": "push"},
        })),
    );
    assert_eq!(c, 202, "{v}");
    v
}

async fn dial(d: &TestDaemon, op: &str, secret: &str) -> Result<Ws, String> {
    let sock = tokio::net::UnixStream::connect(d.socket())
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("ws://localhost{op}/websocket?secret={secret}");
    tokio_tungstenite::client_async(url, sock)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

fn header(names: &[&str], snaps: &[&str]) -> MigrationHeader {
    MigrationHeader {
        fs: MigrationFsType::Rsync as i32,
        snapshot_names: names.iter().map(|n| n.to_string()).collect(),
        snapshots: snaps
            .iter()
            .map(|n| Snapshot {
                name: n.to_string(),
                local_config: vec![Config {
                    key: "limits.cpu".into(),
                    value: "1".into(),
                }],
                architecture: 2,
                creation_date: Some(1_700_000_000),
                ..Default::default()
            })
            .collect(),
        rsync_features: Some(RsyncFeatures {
            xattrs: Some(true),
            delete: Some(true),
            compress: Some(false),
            bidirectional: Some(true),
        }),
        index_header_version: Some(1),
        ..Default::default()
    }
}

/// What the scripted source does after connecting.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Script {
    /// Sends `header`, then hangs up right after the index header.
    HangUpAfterIndex,
    /// Sends `header`, then a broken rsync stream (garbage, then the connection cut).
    GarbageStream,
    /// Sends `header` and waits for the target's verdict on `control`.
    AwaitVerdict,
}

/// Plays the source: connects both websockets of the target operation `answer`, sends
/// `h` and follows `script`. Answers what the target said on `control` (if anything).
async fn play(
    d: &TestDaemon,
    answer: &Value,
    h: MigrationHeader,
    script: Script,
) -> Option<String> {
    let op = answer["operation"].as_str().expect("operation").to_string();
    let md = &answer["metadata"]["metadata"];
    let control_secret = md["control"].as_str().expect("control secret").to_string();
    let fs_secret = md["fs"].as_str().expect("fs secret").to_string();
    let mut control = dial(d, &op, &control_secret).await.expect("dial control");
    let mut fs = dial(d, &op, &fs_secret).await.expect("dial fs");
    control
        .send(Message::Binary(h.encode_to_vec().into()))
        .await
        .expect("send header");
    let verdict = |m: Option<Result<Message, _>>| -> Option<String> {
        match m {
            Some(Ok(Message::Binary(b))) => MigrationControl::decode(b.as_ref())
                .ok()
                .filter(|c| !c.success)
                .map(|c| c.message.unwrap_or_default()),
            _ => None,
        }
    };
    if script == Script::AwaitVerdict {
        // The target answers the offer, or refuses it with a control message.
        loop {
            match control.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if let Ok(c) = MigrationControl::decode(b.as_ref()) {
                        if !c.success && c.message.is_some() {
                            return c.message;
                        }
                    }
                }
                _ => return None,
            }
        }
    }
    // The answer header.
    let _ = control.next().await;
    // The index header: data, then the end marker; the target's reply likewise.
    fs.send(Message::Binary(
        br#"{"Config":{"Container":{"name":"x"}}}"#.to_vec().into(),
    ))
    .await
    .expect("index");
    fs.send(Message::Text(String::new().into()))
        .await
        .expect("end");
    let mut reply = Vec::new();
    while let Some(Ok(m)) = fs.next().await {
        match m {
            Message::Binary(b) => reply.extend_from_slice(&b),
            _ => break,
        }
    }
    let r: MigrationInfoResponse = serde_json::from_slice(&reply).expect("info response");
    assert_eq!(r.status_code, 200, "{r:?}");
    if script == Script::GarbageStream {
        let _ = fs.send(Message::Binary(vec![0x5a; 4096].into())).await;
    }
    drop(fs);
    tokio::time::timeout(std::time::Duration::from_secs(60), control.next())
        .await
        .ok()
        .and_then(verdict)
}

/// Nothing of `name` is left: no record, no volume, no snapshot volume.
fn assert_nothing_left(d: &TestDaemon, name: &str) {
    let (c, v) = d.api("GET", &format!("/1.0/instances/{name}"), None);
    assert_eq!(
        c, 404,
        "instance {name} exists after a failed migration: {v}"
    );
    let pool = d.dir.join("storage-pools/default");
    for kind in ["containers", "containers-snapshots"] {
        let dir = pool.join(kind);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let f = e.file_name().to_string_lossy().to_string();
            assert!(
                f != name && !f.starts_with(&format!("{name}.")),
                "volume {kind}/{f} left behind"
            );
        }
    }
}

fn failure_of(d: &TestDaemon, answer: &Value) -> String {
    let op = d.wait_op(answer);
    assert_eq!(op["status"], "Failure", "{op}");
    op["err"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_header_whose_snapshot_list_disagrees_is_refused_before_anything_is_made() {
    let d = TestDaemon::start("mf-hdr");
    let a = push_target(&d, "c1");
    // A plain GET of a stream's URL is no connection: it does not use up the secret.
    let op = a["operation"].as_str().expect("op");
    let secret = a["metadata"]["metadata"]["control"]
        .as_str()
        .expect("secret");
    let (c, v) = d.api("GET", &format!("{op}/websocket?secret={secret}"), None);
    assert_eq!(c, 400, "{v}");
    let said = rt().block_on(play(
        &d,
        &a,
        header(&["s0", "s1", "snap9"], &["s0", "s1"]),
        Script::AwaitVerdict,
    ));
    let err = failure_of(&d, &a);
    assert!(err.contains("3 snapshot names but 2 snapshots"), "{err}");
    assert_eq!(said.as_deref(), Some(err.as_str()), "the source hears why");
    assert_nothing_left(&d, "c1");
}

#[test]
fn a_source_that_names_a_snapshot_and_then_hangs_up_leaves_nothing() {
    let d = TestDaemon::start("mf-snap9");
    let a = push_target(&d, "c2");
    rt().block_on(play(
        &d,
        &a,
        header(&["snap9"], &["snap9"]),
        Script::HangUpAfterIndex,
    ));
    let err = failure_of(&d, &a);
    assert!(err.contains("closed") || err.contains("websocket"), "{err}");
    assert_nothing_left(&d, "c2");
}

#[test]
fn a_stream_cut_half_way_leaves_no_instance_volume_or_row() {
    let d = TestDaemon::start("mf-cut");
    let a = push_target(&d, "c3");
    rt().block_on(play(&d, &a, header(&[], &[]), Script::GarbageStream));
    let err = failure_of(&d, &a);
    assert!(!err.is_empty());
    assert_nothing_left(&d, "c3");
    // The name is free again.
    let a = push_target(&d, "c3");
    rt().block_on(play(
        &d,
        &a,
        header(&["../x"], &["../x"]),
        Script::AwaitVerdict,
    ));
    let err = failure_of(&d, &a);
    assert!(err.contains("bad snapshot name"), "{err}");
    assert_nothing_left(&d, "c3");
}

#[test]
fn a_live_source_with_criu_state_is_refused_with_the_reason() {
    let d = TestDaemon::start("mf-criu");
    let a = push_target(&d, "c4");
    let mut h = header(&[], &[]);
    h.criu = Some(CriuType::CriuRsync as i32);
    rt().block_on(play(&d, &a, h, Script::AwaitVerdict));
    let err = failure_of(&d, &a);
    assert!(err.contains("CRIU"), "{err}");
    assert_nothing_left(&d, "c4");
}

#[test]
fn a_taken_name_is_a_conflict_before_any_transfer_and_secrets_are_checked() {
    let d = TestDaemon::start("mf-409");
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c5", "source": {"type": "none"}})),
    );
    let (c, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c5", "source": {"type": "migration", "mode": "push"}})),
    );
    assert_eq!(c, 409, "{v}");
    let (c, v) = d.api(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "c6", "source": {"type": "migration", "mode": "sideways"}})),
    );
    assert_eq!(c, 501, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("sideways"),
        "{v}"
    );
    // A wrong secret does not reach the operation's websocket.
    let a = push_target(&d, "c7");
    let op = a["operation"].as_str().expect("op").to_string();
    let r = rt().block_on(dial(&d, &op, "0123456789abcdef"));
    let e = r.expect_err("a wrong secret must be refused");
    assert!(e.contains("403"), "{e}");
    // Nobody connects: the operation gives up and leaves nothing.
    let err = failure_of(&d, &a);
    assert!(
        err.contains("Timed out waiting for migration connections"),
        "{err}"
    );
    assert_nothing_left(&d, "c7");
}
