//! `/dev/lxd`, the guest API: what an instance may read of its own record, path by path, as
//! LXD 5.0's devlxd answers it (`lxd/devlxd.go`). Which instance asks is never taken from the
//! request: the server knows it from the socket the connection came in on.

use std::collections::BTreeMap;

use serde::Serialize;

/// What the guest API serves from, read afresh for every request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestView {
    /// The instance's name (its `local-hostname`).
    pub name: String,
    /// Its expanded config (profiles applied).
    pub config: BTreeMap<String, String>,
    /// Its local config (for `volatile.*`).
    pub local: BTreeMap<String, String>,
    /// Its expanded devices.
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
}

/// `GET /1.0`, in LXD's field order (`api.DevLXDGet`, its embedded `state` first).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DevLxdGet {
    /// LXD fills nothing in for a container.
    pub state: String,
    /// "1.0".
    pub api_version: String,
    /// "container".
    pub instance_type: String,
    /// "none" when not clustered.
    pub location: String,
}

/// The answer to one request, before HTTP.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 200, `application/json`.
    Json(serde_json::Value),
    /// 200, `application/octet-stream`, the bytes as they are.
    Raw(String),
    /// An error as Go's `http.Error` writes it: the status and a one-line text body.
    Error(u16, &'static str),
    /// No route: gorilla/mux's `404 page not found`.
    NoRoute,
    /// `/1.0/events`: the stream of these event types (`config`, `device`).
    Events(Vec<String>),
}

/// Whether `security.devlxd` leaves the guest API on (unset or anything but a false value).
pub fn enabled(config: &BTreeMap<String, String>) -> bool {
    config
        .get("security.devlxd")
        .is_none_or(|v| crate::model::parse::parse_bool(v) != Ok(false))
}

/// Whether the guest may read key `k`: only `user.*` and `cloud-init.*`.
pub fn readable(k: &str) -> bool {
    k.starts_with("user.") || k.starts_with("cloud-init.")
}

/// `url.PathUnescape`: `%XX` escapes decoded (`+` stays), anything else kept; `None` on a bad
/// escape or bytes that are not UTF-8 (no key could match them).
pub fn path_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

const NOT_AUTHORIZED: Answer = Answer::Error(403, "not authorized");

/// Answers `path` (the request's path as sent, still percent-encoded; the query apart) for
/// the instance `v`. Every method is routed alike, as LXD's router does.
pub fn answer(path: &str, query: Option<&str>, v: &GuestView) -> Answer {
    if path == "/" {
        return Answer::Json(serde_json::json!(["/1.0"]));
    }
    let known = matches!(
        path,
        "/1.0" | "/1.0/config" | "/1.0/meta-data" | "/1.0/events" | "/1.0/devices"
    ) || config_key_segment(path).is_some()
        || image_export_segment(path).is_some();
    if !known {
        return Answer::NoRoute;
    }
    // Every route but `/` checks this first, at each request: turning it off on a running
    // instance closes the API at once, before its next start removes the socket.
    if !enabled(&v.config) {
        return NOT_AUTHORIZED;
    }
    match path {
        "/1.0" => Answer::Json(
            serde_json::to_value(DevLxdGet {
                state: String::new(),
                api_version: "1.0".into(),
                instance_type: "container".into(),
                location: "none".into(),
            })
            .unwrap_or_default(),
        ),
        "/1.0/config" => Answer::Json(serde_json::json!(v
            .config
            .keys()
            .filter(|k| readable(k))
            .map(|k| format!("/1.0/config/{k}"))
            .collect::<Vec<_>>())),
        "/1.0/meta-data" => {
            let id = v
                .local
                .get("volatile.cloud-init.instance-id")
                .filter(|s| !s.is_empty())
                .unwrap_or(&v.name);
            Answer::Raw(format!(
                "#cloud-config\ninstance-id: {id}\nlocal-hostname: {}\n{}",
                v.name,
                v.config.get("user.meta-data").map_or("", String::as_str)
            ))
        }
        "/1.0/devices" => {
            let mut devices = v.devices.clone();
            // As LXD: a nic without hwaddr shows the one silo generated, so cloud-init can
            // tell nics apart.
            for (name, d) in devices.iter_mut() {
                if d.get("type").map(String::as_str) == Some("nic")
                    && d.get("hwaddr").is_none_or(|h| h.is_empty())
                {
                    if let Some(h) = v
                        .local
                        .get(&format!("volatile.{name}.hwaddr"))
                        .filter(|h| !h.is_empty())
                    {
                        d.insert("hwaddr".into(), h.clone());
                    }
                }
            }
            Answer::Json(serde_json::to_value(devices).unwrap_or_default())
        }
        "/1.0/events" => {
            let types = query
                .and_then(|q| {
                    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                        .ok()?
                        .into_iter()
                        .find(|(k, _)| k == "type")
                        .map(|(_, v)| v)
                })
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "config,device".into());
            Answer::Events(types.split(',').map(str::to_string).collect())
        }
        _ => {
            if let Some(seg) = config_key_segment(path) {
                let Some(key) = path_unescape(seg) else {
                    return Answer::Error(400, "bad request");
                };
                if !readable(&key) {
                    return NOT_AUTHORIZED;
                }
                return match v.config.get(&key) {
                    Some(val) => Answer::Raw(val.clone()),
                    None => Answer::Error(404, "not found"),
                };
            }
            // Image export needs security.devlxd.images; silo does not serve images to
            // guests, so it stays refused whatever the key says.
            NOT_AUTHORIZED
        }
    }
}

/// The `{key}` of `/1.0/config/{key}` (one non-empty segment, still encoded).
fn config_key_segment(path: &str) -> Option<&str> {
    path.strip_prefix("/1.0/config/")
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

/// The `{fingerprint}` of `/1.0/images/{fingerprint}/export`.
fn image_export_segment(path: &str) -> Option<&str> {
    path.strip_prefix("/1.0/images/")
        .and_then(|s| s.strip_suffix("/export"))
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

/// One devlxd event's metadata for a change of config key `key` (LXD sends `user.*` only).
pub fn config_events(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<serde_json::Value> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| k.starts_with("user.") && old.get(*k) != new.get(*k))
        .map(|k| {
            serde_json::json!({
                "key": k,
                "old_value": old.get(k).map_or("", String::as_str),
                "value": new.get(k).map_or("", String::as_str),
            })
        })
        .collect()
}

/// The devlxd `device` events' metadata from `old` to `new` expanded devices: removed, then
/// updated, then added, as LXD sends them.
pub fn device_events(
    old: &BTreeMap<String, BTreeMap<String, String>>,
    new: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<serde_json::Value> {
    let ev = |action: &str, name: &str, config: &BTreeMap<String, String>| serde_json::json!({"action": action, "name": name, "config": config});
    let mut out = Vec::new();
    for (k, d) in old.iter().filter(|(k, _)| !new.contains_key(*k)) {
        out.push(ev("removed", k, d));
    }
    for (k, d) in new
        .iter()
        .filter(|(k, d)| old.get(*k).is_some_and(|o| o != *d))
    {
        out.push(ev("updated", k, d));
    }
    for (k, d) in new.iter().filter(|(k, _)| !old.contains_key(*k)) {
        out.push(ev("added", k, d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> GuestView {
        let mut v = GuestView {
            name: "c1".into(),
            ..Default::default()
        };
        for (k, val) in [
            ("user.foo", "bar"),
            ("user.with space", "x"),
            ("cloud-init.user-data", "#cloud-config\n"),
            ("user.meta-data", "extra: 1\n"),
            ("limits.memory", "1GiB"),
            ("volatile.idmap.base", "1000000"),
        ] {
            v.config.insert(k.into(), val.into());
        }
        v.local
            .insert("volatile.eth0.hwaddr".into(), "00:16:3e:00:00:01".into());
        v.devices.insert(
            "eth0".into(),
            [("type", "nic"), ("network", "silobr0")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        );
        v
    }

    #[test]
    fn routes_answer_as_lxd() {
        let v = view();
        assert_eq!(
            answer("/", None, &v),
            Answer::Json(serde_json::json!(["/1.0"]))
        );
        let Answer::Json(j) = answer("/1.0", None, &v) else {
            panic!("not json")
        };
        assert_eq!(
            serde_json::to_string(&j).expect("json"),
            r#"{"api_version":"1.0","instance_type":"container","location":"none","state":""}"#
        );
        assert_eq!(
            answer("/1.0/config", None, &v),
            Answer::Json(serde_json::json!([
                "/1.0/config/cloud-init.user-data",
                "/1.0/config/user.foo",
                "/1.0/config/user.meta-data",
                "/1.0/config/user.with space"
            ]))
        );
        assert_eq!(
            answer("/1.0/config/user.foo", None, &v),
            Answer::Raw("bar".into())
        );
        assert_eq!(
            answer("/1.0/config/user.with%20space", None, &v),
            Answer::Raw("x".into())
        );
        assert_eq!(
            answer("/1.0/config/user.missing", None, &v),
            Answer::Error(404, "not found")
        );
        // Only user.* and cloud-init.*: the rest is refused even when set.
        for k in ["limits.memory", "volatile.idmap.base", "security.devlxd"] {
            assert_eq!(
                answer(&format!("/1.0/config/{k}"), None, &v),
                Answer::Error(403, "not authorized"),
                "{k}"
            );
        }
        // An encoded slash is one segment, decoded after routing; a raw one is no route.
        assert_eq!(
            answer("/1.0/config/limits%2Fmemory", None, &v),
            Answer::Error(403, "not authorized")
        );
        assert_eq!(answer("/1.0/config/a/b", None, &v), Answer::NoRoute);
        assert_eq!(
            answer("/1.0/config/user.%zz", None, &v),
            Answer::Error(400, "bad request")
        );
        assert_eq!(
            answer("/1.0/meta-data", None, &v),
            Answer::Raw("#cloud-config\ninstance-id: c1\nlocal-hostname: c1\nextra: 1\n".into())
        );
        let Answer::Json(d) = answer("/1.0/devices", None, &v) else {
            panic!("not json")
        };
        assert_eq!(d["eth0"]["hwaddr"], "00:16:3e:00:00:01");
        assert_eq!(
            answer("/1.0/events", None, &v),
            Answer::Events(vec!["config".into(), "device".into()])
        );
        assert_eq!(
            answer("/1.0/events", Some("type=config"), &v),
            Answer::Events(vec!["config".into()])
        );
        for p in ["/1.0/", "/2.0", "/1.0/instances", "", "/1.0/config/"] {
            assert_eq!(answer(p, None, &v), Answer::NoRoute, "{p:?}");
        }
        assert_eq!(
            answer("/1.0/images/abc/export", None, &v),
            Answer::Error(403, "not authorized")
        );
    }

    #[test]
    fn security_devlxd_false_refuses_all_but_the_root() {
        let mut v = view();
        v.config.insert("security.devlxd".into(), "false".into());
        for p in [
            "/1.0",
            "/1.0/config",
            "/1.0/config/user.foo",
            "/1.0/meta-data",
            "/1.0/devices",
            "/1.0/events",
        ] {
            assert_eq!(
                answer(p, None, &v),
                Answer::Error(403, "not authorized"),
                "{p}"
            );
        }
        assert_eq!(
            answer("/", None, &v),
            Answer::Json(serde_json::json!(["/1.0"]))
        );
        assert!(!enabled(&v.config));
        v.config.insert("security.devlxd".into(), "true".into());
        assert!(enabled(&v.config));
        v.config.remove("security.devlxd");
        assert!(enabled(&v.config));
    }

    #[test]
    fn events_of_a_change() {
        let old: BTreeMap<String, String> = [("user.a", "1"), ("user.b", "2"), ("limits.cpu", "1")]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect();
        let mut new = old.clone();
        new.insert("user.a".into(), "3".into());
        new.remove("user.b");
        new.insert("user.c".into(), "4".into());
        new.insert("limits.cpu".into(), "2".into());
        let ev = config_events(&old, &new);
        assert_eq!(
            ev,
            vec![
                serde_json::json!({"key": "user.a", "old_value": "1", "value": "3"}),
                serde_json::json!({"key": "user.b", "old_value": "2", "value": ""}),
                serde_json::json!({"key": "user.c", "old_value": "", "value": "4"}),
            ]
        );
        let d = |t: &str| -> BTreeMap<String, String> {
            [("type".to_string(), t.to_string())].into_iter().collect()
        };
        let old: BTreeMap<_, _> = [("a".to_string(), d("disk")), ("b".to_string(), d("nic"))]
            .into_iter()
            .collect();
        let new: BTreeMap<_, _> = [("b".to_string(), d("none")), ("c".to_string(), d("disk"))]
            .into_iter()
            .collect();
        let actions: Vec<_> = device_events(&old, &new)
            .into_iter()
            .map(|e| format!("{} {}", e["action"], e["name"]))
            .collect();
        assert_eq!(
            actions,
            ["\"removed\" \"a\"", "\"updated\" \"b\"", "\"added\" \"c\""]
        );
    }
}
