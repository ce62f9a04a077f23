//! silo_api's types against what silod serves: every object decoded into its type and encoded
//! again is the JSON silod sent, key for key and value for value. The CLI prints the typed
//! objects, so its json/yaml output stays what silod sent; and silod can build its answers
//! from these types without changing them.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use silo_api::*;
use silo_tests::{busybox_image, TestDaemon};

/// GETs `path` and checks that its metadata survives a trip through `T` unchanged.
fn same<T: DeserializeOwned + Serialize>(d: &TestDaemon, path: &str) -> Value {
    let raw = d.api_ok("GET", path, None);
    check::<T>(path, &raw);
    raw
}

fn check<T: DeserializeOwned + Serialize>(what: &str, raw: &Value) {
    let typed: T = lenient::from_value(raw.clone()).unwrap_or_else(|e| {
        panic!(
            "{what}: does not decode as {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let back = serde_json::to_value(&typed).expect("serializes");
    assert_eq!(
        &back,
        raw,
        "{what}: {} does not give back silod's JSON",
        std::any::type_name::<T>()
    );
}

#[test]
fn every_object_silod_serves_round_trips_through_its_type() {
    let d = TestDaemon::start("api-types");
    d.import(&busybox_image(false)[0], "busybox");
    same::<Server>(&d, "/1.0");
    same::<Resources>(&d, "/1.0/resources");
    same::<Vec<Warning>>(&d, "/1.0/warnings?recursion=1");

    d.api_ok(
        "POST",
        "/1.0/networks",
        Some(json!({"name": "siloat0", "type": "bridge",
                    "config": {"ipv4.address": "auto", "ipv6.address": "none"}})),
    );
    d.api_ok(
        "POST",
        "/1.0/instances",
        Some(json!({
            "name": "c1", "source": {"type": "image", "alias": "busybox"},
            "devices": {"eth0": {"type": "nic", "network": "siloat0", "name": "eth0"}}
        })),
    );
    // Stopped first: the state's `network` is null, the list's `state` the stopped one.
    same::<InstanceState>(&d, "/1.0/instances/c1/state");
    same::<Vec<InstanceFull>>(&d, "/1.0/instances?recursion=2");
    d.set_state("c1", "start", false);
    same::<Instance>(&d, "/1.0/instances/c1");
    let st = same::<InstanceState>(&d, "/1.0/instances/c1/state");
    assert!(
        st["network"].is_object(),
        "a running instance's interfaces: {st}"
    );
    same::<InstanceFull>(&d, "/1.0/instances/c1?recursion=1");

    // Answers with their envelope, and the operations they started.
    let (c, snap) = d.api(
        "POST",
        "/1.0/instances/c1/snapshots",
        Some(json!({"name": "s0"})),
    );
    assert_eq!(c, 202, "{snap}");
    check::<Response>("async answer", &snap);
    check::<Operation>("finished operation", &d.wait_op(&snap));
    let (c, err) = d.api("GET", "/1.0/instances/nope", None);
    assert_eq!(c, 404, "{err}");
    check::<Response>("error answer", &err);
    d.api_ok(
        "POST",
        "/1.0/instances/c1/backups",
        Some(json!({"name": "b0", "instance_only": true})),
    );

    same::<InstanceSnapshot>(&d, "/1.0/instances/c1/snapshots/s0");
    same::<InstanceBackup>(&d, "/1.0/instances/c1/backups/b0");
    same::<Vec<InstanceFull>>(&d, "/1.0/instances?recursion=2");
    same::<Vec<Image>>(&d, "/1.0/images?recursion=1");
    same::<Vec<ImageAliasesEntry>>(&d, "/1.0/images/aliases?recursion=1");
    same::<Vec<Profile>>(&d, "/1.0/profiles?recursion=1");
    same::<Vec<Network>>(&d, "/1.0/networks?recursion=1");
    let ns = same::<NetworkState>(&d, "/1.0/networks/siloat0/state");
    assert!(ns["bridge"].is_object(), "{ns}");
    same::<NetworkState>(&d, "/1.0/networks/lo/state");
    same::<Vec<NetworkLease>>(&d, "/1.0/networks/siloat0/leases");
    let pools = same::<Vec<StoragePool>>(&d, "/1.0/storage-pools?recursion=1");
    let pool = pools[0]["name"].as_str().expect("a pool").to_string();
    same::<ResourcesStoragePool>(&d, &format!("/1.0/storage-pools/{pool}/resources"));
    same::<Vec<StorageVolume>>(
        &d,
        &format!("/1.0/storage-pools/{pool}/volumes?recursion=1"),
    );
    same::<BTreeMap<String, Vec<Operation>>>(&d, "/1.0/operations?recursion=1");

    // An exec operation's metadata, with its exit code.
    let (c, v) = d.api(
        "POST",
        "/1.0/instances/c1/exec",
        Some(
            json!({"command": ["sh", "-c", "exit 3"], "wait-for-websocket": false,
                    "record-output": true}),
        ),
    );
    assert_eq!(c, 202, "{v}");
    let op = d.wait_op(&v);
    check::<Operation>("exec operation", &op);
    check::<InstanceExecMetadata>("exec metadata", &op["metadata"]);
    assert_eq!(op["metadata"]["return"], 3, "{op}");

    d.set_state("c1", "stop", true);
    same::<InstanceState>(&d, "/1.0/instances/c1/state");
}
