//! Every `/1.0/...` URL of the API, built in one place.
//!
//! Names are escaped as LXD's Go client escapes them (`url.PathEscape`): a name with a space,
//! `/`, `?`, `%` or `#` stays one path segment. Query values are escaped as `url.QueryEscape`
//! does (`url.Values.Encode`).

use std::fmt::Write;

/// The API's root.
pub const API: &str = "/1.0";

/// Whether Go's `url.PathEscape` keeps `b` as it is.
fn path_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b':' | b'=' | b'@'
        )
}

/// `url.PathEscape`: one path segment.
pub fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for &b in segment.as_bytes() {
        if path_safe(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `url.QueryEscape`: a query key or value (space as `+`).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `path` with a query string made of `pairs`, in their order.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect();
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{}", q.join("&"))
}

/// `path?recursion=n`.
pub fn recursion(path: &str, n: u8) -> String {
    with_query(path, &[("recursion", &n.to_string())])
}

/// `GET /1.0`, `PUT /1.0`.
pub fn server() -> String {
    API.to_string()
}

/// `/1.0/resources`.
pub fn resources() -> String {
    format!("{API}/resources")
}

/// `/1.0/events`.
pub fn events() -> String {
    format!("{API}/events")
}

/// `/1.0/events?type=...`: the event types to receive, comma-separated.
pub fn events_of(types: &str) -> String {
    with_query(&events(), &[("type", types)])
}

/// `/1.0/instances`.
pub fn instances() -> String {
    format!("{API}/instances")
}

/// `/1.0/instances/<name>`.
pub fn instance(name: &str) -> String {
    format!("{API}/instances/{}", escape(name))
}

/// `/1.0/instances/<name>/state`.
pub fn instance_state(name: &str) -> String {
    format!("{}/state", instance(name))
}

/// `/1.0/instances/<name>/exec`.
pub fn instance_exec(name: &str) -> String {
    format!("{}/exec", instance(name))
}

/// `/1.0/instances/<name>/console`.
pub fn instance_console(name: &str) -> String {
    format!("{}/console", instance(name))
}

/// `/1.0/instances/<name>/files?path=<path>`.
pub fn instance_files(name: &str, path: &str) -> String {
    with_query(&format!("{}/files", instance(name)), &[("path", path)])
}

/// `/1.0/instances/<name>/logs`.
pub fn instance_logs(name: &str) -> String {
    format!("{}/logs", instance(name))
}

/// `/1.0/instances/<name>/logs/<file>`.
pub fn instance_log(name: &str, file: &str) -> String {
    format!("{}/{}", instance_logs(name), escape(file))
}

/// `/1.0/instances/<name>/snapshots`.
pub fn snapshots(instance_name: &str) -> String {
    format!("{}/snapshots", instance(instance_name))
}

/// `/1.0/instances/<name>/snapshots/<snap>`.
pub fn snapshot(instance_name: &str, snap: &str) -> String {
    format!("{}/{}", snapshots(instance_name), escape(snap))
}

/// `/1.0/instances/<name>/backups`.
pub fn backups(instance_name: &str) -> String {
    format!("{}/backups", instance(instance_name))
}

/// `/1.0/instances/<name>/backups/<backup>`.
pub fn backup(instance_name: &str, backup: &str) -> String {
    format!("{}/{}", backups(instance_name), escape(backup))
}

/// `/1.0/instances/<name>/backups/<backup>/export`.
pub fn backup_export(instance_name: &str, backup_name: &str) -> String {
    format!("{}/export", backup(instance_name, backup_name))
}

/// `/1.0/images`.
pub fn images() -> String {
    format!("{API}/images")
}

/// `/1.0/images/<fingerprint>`.
pub fn image(fingerprint: &str) -> String {
    format!("{API}/images/{}", escape(fingerprint))
}

/// `/1.0/images/<fingerprint>/export`.
pub fn image_export(fingerprint: &str) -> String {
    format!("{}/export", image(fingerprint))
}

/// `/1.0/images/aliases`.
pub fn image_aliases() -> String {
    format!("{API}/images/aliases")
}

/// `/1.0/images/aliases/<name>`.
pub fn image_alias(name: &str) -> String {
    format!("{}/{}", image_aliases(), escape(name))
}

/// `/1.0/profiles`.
pub fn profiles() -> String {
    format!("{API}/profiles")
}

/// `/1.0/profiles/<name>`.
pub fn profile(name: &str) -> String {
    format!("{API}/profiles/{}", escape(name))
}

/// `/1.0/projects/<name>`.
pub fn project(name: &str) -> String {
    format!("{API}/projects/{}", escape(name))
}

/// `/1.0/networks`.
pub fn networks() -> String {
    format!("{API}/networks")
}

/// `/1.0/networks/<name>`.
pub fn network(name: &str) -> String {
    format!("{API}/networks/{}", escape(name))
}

/// `/1.0/networks/<name>/state`.
pub fn network_state(name: &str) -> String {
    format!("{}/state", network(name))
}

/// `/1.0/networks/<name>/leases`.
pub fn network_leases(name: &str) -> String {
    format!("{}/leases", network(name))
}

/// `/1.0/storage-pools`.
pub fn storage_pools() -> String {
    format!("{API}/storage-pools")
}

/// `/1.0/storage-pools/<pool>`.
pub fn storage_pool(name: &str) -> String {
    format!("{API}/storage-pools/{}", escape(name))
}

/// `/1.0/storage-pools/<pool>/resources`.
pub fn storage_pool_resources(name: &str) -> String {
    format!("{}/resources", storage_pool(name))
}

/// `/1.0/storage-pools/<pool>/volumes`.
pub fn storage_volumes(pool: &str) -> String {
    format!("{}/volumes", storage_pool(pool))
}

/// `/1.0/storage-pools/<pool>/volumes/<type>`.
pub fn storage_volumes_of(pool: &str, kind: &str) -> String {
    format!("{}/{}", storage_volumes(pool), escape(kind))
}

/// `/1.0/storage-pools/<pool>/volumes/<type>/<name>`.
pub fn storage_volume(pool: &str, kind: &str, name: &str) -> String {
    format!("{}/{}", storage_volumes_of(pool, kind), escape(name))
}

/// `/1.0/operations`.
pub fn operations() -> String {
    format!("{API}/operations")
}

/// `/1.0/operations/<id>`.
pub fn operation(id: &str) -> String {
    format!("{API}/operations/{}", escape(id))
}

/// `/1.0/operations/<id>/wait?timeout=<secs>` (-1: no limit).
pub fn operation_wait(id: &str, timeout_secs: i64) -> String {
    with_query(
        &format!("{}/wait", operation(id)),
        &[("timeout", &timeout_secs.to_string())],
    )
}

/// `/1.0/operations/<id>/websocket?secret=<secret>`.
pub fn operation_websocket(id: &str, secret: &str) -> String {
    with_query(
        &format!("{}/websocket", operation(id)),
        &[("secret", secret)],
    )
}

/// `/1.0/certificates`.
pub fn certificates() -> String {
    format!("{API}/certificates")
}

/// `/1.0/certificates/<fingerprint>`.
pub fn certificate(fingerprint: &str) -> String {
    format!("{API}/certificates/{}", escape(fingerprint))
}

/// `/1.0/warnings/<uuid>`.
pub fn warning(uuid: &str) -> String {
    format!("{API}/warnings/{}", escape(uuid))
}

/// The last segment of an object's URL (`/1.0/instances/c%201` is `c 1`), as LXD's client
/// reads names out of listings and `used_by`; `None` when `url` is not under `prefix`.
pub fn name_under(url: &str, prefix: &str) -> Option<String> {
    let rest = url.strip_prefix(prefix)?.strip_prefix('/')?;
    let rest = rest.split('?').next().unwrap_or(rest);
    (!rest.is_empty() && !rest.contains('/')).then(|| unescape(rest))
}

/// Undoes [`escape`]; an invalid escape is kept as written.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/1.0/instances/<name>/metadata`.
pub fn instance_metadata(name: &str) -> String {
    format!("{}/metadata", instance(name))
}

/// `/1.0/instances/<name>/metadata/templates`, with `?path=<template>` when one is named.
pub fn instance_templates(name: &str, template: Option<&str>) -> String {
    let base = format!("{}/metadata/templates", instance(name));
    match template {
        Some(t) => with_query(&base, &[("path", t)]),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_segment() {
        assert_eq!(instance("c1"), "/1.0/instances/c1");
        assert_eq!(
            instance("a b/c?d#e%"),
            "/1.0/instances/a%20b%2Fc%3Fd%23e%25"
        );
        assert_eq!(
            snapshot("c1", "snap 0"),
            "/1.0/instances/c1/snapshots/snap%200"
        );
        assert_eq!(
            storage_volume("default", "custom", "v1"),
            "/1.0/storage-pools/default/volumes/custom/v1"
        );
        // What PathEscape keeps.
        assert_eq!(escape("a-b_c.d~e$f&g+h:i=j@k"), "a-b_c.d~e$f&g+h:i=j@k");
        assert_eq!(escape("é"), "%C3%A9");
    }

    #[test]
    fn queries_are_form_encoded() {
        assert_eq!(
            instance_files("c1", "/a b"),
            "/1.0/instances/c1/files?path=%2Fa+b"
        );
        assert_eq!(operation_wait("x", -1), "/1.0/operations/x/wait?timeout=-1");
        assert_eq!(recursion(&instances(), 2), "/1.0/instances?recursion=2");
        assert_eq!(
            with_query(&recursion(&images(), 1), &[("filter", "a=b")]),
            "/1.0/images?recursion=1&filter=a%3Db"
        );
        assert_eq!(
            events_of("operation,lifecycle"),
            "/1.0/events?type=operation%2Clifecycle"
        );
    }

    #[test]
    fn names_come_back_out_of_urls() {
        assert_eq!(
            name_under("/1.0/instances/a%20b", "/1.0/instances").as_deref(),
            Some("a b")
        );
        assert_eq!(
            name_under("/1.0/instances/c1?project=p", "/1.0/instances").as_deref(),
            Some("c1")
        );
        assert_eq!(
            name_under("/1.0/instances/c1/snapshots/s", "/1.0/instances"),
            None
        );
        assert_eq!(name_under("/1.0/profiles/x", "/1.0/instances"), None);
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("%zz%41"), "%zzA");
    }
}
