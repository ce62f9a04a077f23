//! `silo init`, `silo list` and `silo delete`, as `lxc` does them.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::commands::CmdError;
use crate::format::{self, Format};
use crate::util::{self, enc, fail, out, outln, s};

/// `silo launch`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  silo launch busybox c1
  silo launch busybox c2 -p default -p extra -c limits.cpu=1 -s default")]
pub struct InitArgs {
    /// The image: an alias, or a fingerprint (or a unique prefix).
    pub image: String,
    /// The instance's name (the server picks one when omitted).
    pub name: Option<String>,
    /// How to create it.
    #[command(flatten)]
    pub opts: InstanceOpts,
}

/// What an instance is created with (`init` and `launch`).
#[derive(Debug, Default, clap::Args)]
pub struct InstanceOpts {
    /// A profile to apply (repeatable; default: "default").
    #[arg(short = 'p', long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Create the instance with no profiles.
    #[arg(long, conflicts_with = "profiles")]
    pub no_profiles: bool,
    /// The storage pool for the root disk.
    #[arg(short = 's', long, value_name = "POOL")]
    pub storage: Option<String>,
    /// A configuration key (repeatable).
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Make the instance ephemeral.
    #[arg(short = 'e', long)]
    pub ephemeral: bool,
    /// The instance's description.
    #[arg(long, default_value = "")]
    pub description: String,
}

/// `silo init`: an instance from an image, or (with no image) the server's first-run setup.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  silo init                         set up the server, answering questions
  silo init --auto                  set up the server with defaults
  silo init --preseed < init.yaml   set up the server from a preseed (LXD's format)
  silo init --dump                  print the setup as a preseed
  silo init busybox c1              create an instance without starting it
  silo init busybox c2 -p default -p extra -c limits.cpu=1 -s default")]
pub struct InitCmd {
    /// The image: an alias, or a fingerprint (or a unique prefix). Without one, `silo init`
    /// sets up the server.
    pub image: Option<String>,
    /// The instance's name (the server picks one when omitted).
    pub name: Option<String>,
    /// How to create the instance.
    #[command(flatten)]
    pub opts: InstanceOpts,
    /// Setting up the server.
    #[command(flatten)]
    pub server: crate::init::ServerInitArgs,
}

/// `silo list`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Filters (all must match):
  WORD           the name starts with WORD
  status=VALUE   also type=, architecture=, location=, ipv4=ADDR|CIDR, ipv6=ADDR|CIDR
                 (several values: status=running,frozen)
  KEY=VALUE      an expanded config key (dot-separated parts may be abbreviated: s.privileged)

Columns (-c, commas between letters optional):
  n name, s state, 4 IPv4, 6 IPv6, t type, S snapshots, a architecture, b storage pool,
  c created at, d description, D disk usage, e project, f/F base image (short/long),
  l last used at, L location, m memory usage, M memory usage %, N processes, p PID,
  P profiles, u CPU usage.
  Custom: [config:|devices:]KEY[:NAME[:MAXWIDTH]], e.g. user.comment:COMMENT.
Default: ns46tS. --fast: nsacPt.")]
pub struct ListArgs {
    /// Filters (see below).
    pub filters: Vec<String>,
    /// Columns.
    #[arg(short = 'c', long, default_value = "ns46tS")]
    pub columns: String,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: Format,
    /// The fast column layout (nsacPt).
    #[arg(long, conflicts_with = "columns")]
    pub fast: bool,
}

/// `silo delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The instances.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Stop running instances first.
    #[arg(short = 'f', long)]
    pub force: bool,
}

fn looks_like_fingerprint(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// `silo init IMAGE [NAME]`, or the server's setup without an image.
pub async fn init(client: &Client, a: InitCmd) -> Result<(), CmdError> {
    match a.image {
        Some(image) if !a.server.any() => create(client, &image, a.name.as_deref(), &a.opts)
            .await
            .map(|_| ()),
        Some(_) => fail("--auto, --preseed and --dump set up the server: give no image with them"),
        None => crate::init::run(client, &a.server).await,
    }
}

/// `silo launch IMAGE [NAME]`: `init`, then start, as `lxc launch` prints them.
pub async fn launch(client: &Client, a: InitArgs) -> Result<(), CmdError> {
    let name = create(client, &a.image, a.name.as_deref(), &a.opts).await?;
    if name.is_empty() {
        return fail("The server did not say which name it gave the instance");
    }
    outln(&format!("Starting {name}"))?;
    change_state(client, "start", &name, false, -1).await
}

/// Creates the instance `init` and `launch` describe; returns its name (the server's
/// choice when none was given).
async fn create(
    client: &Client,
    image: &str,
    name: Option<&str>,
    a: &InstanceOpts,
) -> Result<String, CmdError> {
    let mut config = Map::new();
    for c in &a.config {
        let (k, v) = util::kv(c)?;
        config.insert(k, Value::String(v));
    }
    let profiles: Vec<String> = if a.no_profiles {
        Vec::new()
    } else if a.profiles.is_empty() {
        vec!["default".to_string()]
    } else {
        a.profiles.clone()
    };
    let mut devices = Map::new();
    if let Some(pool) = &a.storage {
        devices.insert(
            "root".to_string(),
            json!({"type": "disk", "path": "/", "pool": pool}),
        );
    }
    let source =
        if looks_like_fingerprint(image) && !crate::images::alias_exists(client, image).await? {
            json!({"type": "image", "fingerprint": image})
        } else {
            json!({"type": "image", "alias": image})
        };
    let name = name.unwrap_or_default().to_string();
    let body = json!({
        "name": name,
        "type": "container",
        "profiles": profiles,
        "config": config,
        "devices": devices,
        "ephemeral": a.ephemeral,
        "description": a.description,
        "source": source,
    });
    if name.is_empty() {
        outln("Creating the instance")?;
    } else {
        outln(&format!("Creating {name}"))?;
    }
    let answer = client
        .request("POST", "/1.0/instances", Some(&body), &[])
        .await?;
    let started = answer.metadata()?;
    let op = answer.finish(client).await?;
    if !name.is_empty() {
        return Ok(name);
    }
    let url = op
        .pointer("/resources/instances/0")
        .or_else(|| started.pointer("/resources/instances/0"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let n = url.rsplit('/').next().unwrap_or("").to_string();
    if !n.is_empty() {
        outln(&format!("Instance name is: {n}"))?;
    }
    Ok(n)
}

fn status_code(i: &Value) -> u64 {
    i.get("status_code").and_then(Value::as_u64).unwrap_or(0)
}

/// LXD's IsActive: anything but Stopped (102) and Error (112).
fn is_active(i: &Value) -> bool {
    !matches!(status_code(i), 102 | 112)
}

fn state(i: &Value) -> Option<&Value> {
    i.get("state").filter(|s| s.is_object())
}

fn addresses(i: &Value, family: &str) -> String {
    if !is_active(i) {
        return String::new();
    }
    let Some(net) = state(i)
        .and_then(|s| s.get("network"))
        .and_then(Value::as_object)
    else {
        return String::new();
    };
    let mut out = Vec::new();
    for (iface, n) in net {
        if s(n, "type") == "loopback" {
            continue;
        }
        for a in n
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if matches!(s(a, "scope").as_str(), "link" | "local") {
                continue;
            }
            if s(a, "family") == family {
                out.push(format!("{} ({iface})", s(a, "address")));
            }
        }
    }
    out.sort();
    out.reverse();
    out.join("\n")
}

fn root_disk(i: &Value) -> Option<(String, &Value)> {
    i.get("expanded_devices")
        .and_then(Value::as_object)?
        .iter()
        .find(|(_, d)| s(d, "type") == "disk" && s(d, "path") == "/")
        .map(|(k, d)| (k.clone(), d))
}

fn state_u64(i: &Value, ptr: &str) -> u64 {
    state(i)
        .and_then(|s| s.pointer(ptr))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn short_time(i: &Value, k: &str) -> String {
    util::time_set(&s(i, k))
        .map(util::time_short)
        .unwrap_or_default()
}

/// Parses "512MiB", "1GB", "2048" as LXD's ParseByteSizeString does.
fn parse_bytes(v: &str) -> Option<u64> {
    silo_api::units::parse_bytes(v).ok()
}

/// One column of `silo list`.
#[derive(Debug, Clone)]
enum Column {
    Short(char),
    Config {
        key: String,
        name: String,
        width: Option<usize>,
    },
    Device {
        key: String,
        name: String,
        width: Option<usize>,
    },
}

fn short_name(c: char) -> Option<&'static str> {
    Some(match c {
        '4' => "IPV4",
        '6' => "IPV6",
        'a' => "ARCHITECTURE",
        'b' => "STORAGE POOL",
        'c' => "CREATED AT",
        'd' => "DESCRIPTION",
        'D' => "DISK USAGE",
        'e' => "PROJECT",
        'f' | 'F' => "BASE IMAGE",
        'l' => "LAST USED AT",
        'L' => "LOCATION",
        'm' => "MEMORY USAGE",
        'M' => "MEMORY USAGE%",
        'n' => "NAME",
        'N' => "PROCESSES",
        'p' => "PID",
        'P' => "PROFILES",
        'S' => "SNAPSHOTS",
        's' => "STATE",
        't' => "TYPE",
        'u' => "CPU USAGE",
        _ => return None,
    })
}

fn parse_columns(spec: &str) -> Result<Vec<Column>, CmdError> {
    let mut cols = Vec::new();
    for entry in spec.split(',') {
        if entry.is_empty() {
            return fail(format!(
                "Empty column entry (redundant, leading or trailing command) in '{spec}'"
            ));
        }
        if !entry.contains('.') {
            for c in entry.chars() {
                if short_name(c).is_none() {
                    return fail(format!("Unknown column shorthand char '{c}' in '{entry}'"));
                }
                cols.push(Column::Short(c));
            }
            continue;
        }
        let mut parts: Vec<&str> = entry.split(':').collect();
        let mut device = false;
        if parts.len() > 1 && (parts[0] == "config" || parts[0] == "devices") {
            device = parts[0] == "devices";
            parts.remove(0);
        }
        if parts.len() > 3 {
            return fail(format!(
                "Invalid config key column format (too many fields): '{entry}'"
            ));
        }
        let key = parts[0].to_string();
        let mut name = key.clone();
        if parts.len() > 1 {
            if parts[1].is_empty() && parts.len() != 3 {
                return fail(format!(
                    "Invalid name in '{entry}', empty string is only allowed when defining maxWidth"
                ));
            }
            name = parts[1].to_string();
        }
        let mut width = None;
        if parts.len() > 2 {
            let w: i64 = parts[2].parse().map_err(|_| {
                CmdError::Fail(format!(
                    "Invalid max width (must be an integer) '{}' in '{entry}'",
                    parts[2]
                ))
            })?;
            if w < -1 {
                return fail(format!(
                    "Invalid max width (must -1, 0 or a positive integer) '{}' in '{entry}'",
                    parts[2]
                ));
            }
            width = match w {
                0 => Some(name.len()),
                -1 => None,
                w => Some(w as usize),
            };
        }
        cols.push(if device {
            Column::Device { key, name, width }
        } else {
            Column::Config { key, name, width }
        });
    }
    Ok(cols)
}

fn truncate(v: String, width: Option<usize>) -> String {
    match width {
        Some(w) if w > 0 && v.chars().count() > w => v.chars().take(w).collect(),
        _ => v,
    }
}

fn column_header(c: &Column) -> String {
    match c {
        Column::Short(ch) => short_name(*ch).unwrap_or("").to_string(),
        Column::Config { name, .. } | Column::Device { name, .. } => name.clone(),
    }
}

fn column_data(c: &Column, i: &Value) -> String {
    let ch = match c {
        Column::Config { key, width, .. } => {
            let v = i
                .get("config")
                .and_then(|m| m.get(key.as_str()))
                .or_else(|| i.get("expanded_config").and_then(|m| m.get(key.as_str())));
            return truncate(util::vs(v), *width);
        }
        Column::Device { key, width, .. } => {
            let Some((dev, k)) = key.split_once('.') else {
                return String::new();
            };
            if k.contains('.') {
                return String::new();
            }
            let v = i
                .get("devices")
                .and_then(|d| d.get(dev))
                .and_then(|d| d.get(k))
                .or_else(|| {
                    i.get("expanded_devices")
                        .and_then(|d| d.get(dev))
                        .and_then(|d| d.get(k))
                });
            return truncate(util::vs(v), *width);
        }
        Column::Short(ch) => *ch,
    };
    match ch {
        'n' => s(i, "name"),
        's' => s(i, "status").to_uppercase(),
        '4' => addresses(i, "inet"),
        '6' => addresses(i, "inet6"),
        't' => {
            let t = s(i, "type");
            let t = if t.is_empty() {
                "CONTAINER".to_string()
            } else {
                t.to_uppercase()
            };
            if i.get("ephemeral").and_then(Value::as_bool) == Some(true) {
                format!("{t} (EPHEMERAL)")
            } else {
                t
            }
        }
        'S' => i
            .get("snapshots")
            .and_then(Value::as_array)
            .map(|a| a.len())
            .unwrap_or(0)
            .to_string(),
        'a' => s(i, "architecture"),
        'b' => root_disk(i).map(|(_, d)| s(d, "pool")).unwrap_or_default(),
        'c' => short_time(i, "created_at"),
        'd' => s(i, "description"),
        'D' => {
            let Some((name, _)) = root_disk(i) else {
                return String::new();
            };
            let u = state(i)
                .and_then(|s| s.get("disk"))
                .and_then(|d| d.get(name.as_str()))
                .and_then(|d| d.get("usage"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if u > 0 {
                util::size_iec(u)
            } else {
                String::new()
            }
        }
        'e' => s(i, "project"),
        'f' | 'F' => {
            let v = util::vs(i.pointer("/config/volatile.base_image"));
            if ch == 'f' {
                v.chars().take(12).collect()
            } else {
                v
            }
        }
        'l' => short_time(i, "last_used_at"),
        'L' => s(i, "location"),
        'm' => {
            let u = state_u64(i, "/memory/usage");
            if is_active(i) && u > 0 {
                util::size_iec(u)
            } else {
                String::new()
            }
        }
        'M' => {
            let u = state_u64(i, "/memory/usage");
            let limit = util::vs(i.pointer("/expanded_config/limits.memory"));
            if !is_active(i) || u == 0 || limit.is_empty() || limit.contains('%') {
                return String::new();
            }
            match parse_bytes(&limit) {
                Some(l) if l > 0 => format!("{:.1}%", u as f64 / l as f64 * 100.0),
                _ => String::new(),
            }
        }
        'N' | 'p' => {
            if is_active(i) && state(i).is_some() {
                state_u64(i, if ch == 'N' { "/processes" } else { "/pid" }).to_string()
            } else {
                String::new()
            }
        }
        'P' => i
            .get("profiles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|p| util::vs(Some(p)))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
        'u' => {
            let u = state_u64(i, "/cpu/usage");
            if is_active(i) && u > 0 {
                format!("{}s", u / 1_000_000_000)
            } else {
                String::new()
            }
        }
        _ => String::new(),
    }
}

fn parse_cidr(q: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = q.split_once('/')?;
    let a: IpAddr = a.parse().ok()?;
    let l: u8 = l.parse().ok()?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    (l <= max).then_some((a, l))
}

fn in_cidr(addr: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn match_net(i: &Value, query: &str, family: &str) -> bool {
    let Some(net) = state(i)
        .and_then(|s| s.get("network"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    let cidr = parse_cidr(query);
    net.values()
        .flat_map(|n| {
            n.get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(|a| s(a, "family") == family)
        .any(|a| {
            let addr = s(a, "address");
            addr == query || cidr.is_some_and(|c| addr.parse().is_ok_and(|ip| in_cidr(ip, c)))
        })
}

fn shorthand(key: &str, value: &str, i: &Value) -> Option<bool> {
    let one = |v: &str| -> bool {
        match key {
            "type" => {
                let t = s(i, "type");
                let t = if t.is_empty() { "container".into() } else { t };
                t.eq_ignore_ascii_case(v)
            }
            "status" => s(i, "status").eq_ignore_ascii_case(v),
            "architecture" => s(i, "architecture").eq_ignore_ascii_case(v),
            "location" => s(i, "location").eq_ignore_ascii_case(v),
            "ipv4" => match_net(i, v, "inet"),
            "ipv6" => match_net(i, v, "inet6"),
            _ => false,
        }
    };
    if !matches!(
        key,
        "type" | "status" | "architecture" | "location" | "ipv4" | "ipv6"
    ) {
        return None;
    }
    Some(value.split(',').any(one))
}

/// Whether an instance passes every filter, as `lxc list` (without its regular expressions).
fn instance_matches(i: &Value, filters: &[String]) -> bool {
    filters.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => {
            if let Some(m) = shorthand(&k.to_lowercase(), v, i) {
                if m {
                    return true;
                }
            }
            let cfg = i.get("expanded_config").and_then(Value::as_object);
            cfg.is_some_and(|c| {
                c.get(k).and_then(Value::as_str) == Some(v)
                    || c.iter().any(|(ck, cv)| {
                        crate::images::dot_prefix_match(k, ck) && cv.as_str() == Some(v)
                    })
            })
        }
        None => s(i, "name").starts_with(f.as_str()),
    })
}

/// `silo list`.
pub async fn list(client: &Client, a: ListArgs) -> Result<(), CmdError> {
    let spec = if a.fast { "nsacPt" } else { a.columns.as_str() };
    let cols = parse_columns(spec)?;
    let all = client.get("/1.0/instances?recursion=2").await?;
    let insts: Vec<Value> = all
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| instance_matches(i, &a.filters))
        .collect();
    let mut rows: Vec<Vec<String>> = insts
        .iter()
        .map(|i| cols.iter().map(|c| column_data(c, i)).collect())
        .collect();
    util::sort_rows(&mut rows);
    let headers: Vec<String> = cols.iter().map(column_header).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let text = format::render(a.format, &headers, &rows, &Value::Array(insts))
        .map_err(CmdError::Output)?;
    out(&text)
}

/// `silo delete`.
pub async fn delete(client: &Client, a: DeleteArgs) -> Result<(), CmdError> {
    for name in &a.names {
        if let Some((inst, snap)) = name.split_once('/') {
            let path = format!("/1.0/instances/{}/snapshots/{}", enc(inst), enc(snap));
            client.operate("DELETE", &path, None, &[]).await?;
            continue;
        }
        let path = format!("/1.0/instances/{}", enc(name));
        let inst = client.get(&path).await?;
        let code = status_code(&inst);
        if code != 0 && code != 102 {
            if !a.force {
                return fail("The instance is currently running, stop it first or pass --force");
            }
            client
                .operate(
                    "PUT",
                    &format!("{path}/state"),
                    Some(&json!({"action": "stop", "force": true, "timeout": -1})),
                    &[],
                )
                .await
                .map_err(|e| CmdError::Fail(format!("Stopping the instance failed: {e}")))?;
            // The server deletes an ephemeral instance itself once it stops.
            if inst.get("ephemeral").and_then(Value::as_bool) == Some(true) {
                continue;
            }
        }
        client.operate("DELETE", &path, None, &[]).await?;
    }
    Ok(())
}

/// `silo start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The instances.
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Start all instances (those not already running).
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

/// `silo stop` and `silo restart`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// The instances.
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Act on all instances.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Force the instance to stop (kill it instead of a clean shutdown).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Seconds to wait for a clean shutdown before killing it (-1: wait forever).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub timeout: i64,
}

/// One `PUT /1.0/instances/NAME/state` and the wait for its operation, as `lxc` does it.
async fn change_state(
    client: &Client,
    action: &str,
    name: &str,
    force: bool,
    timeout: i64,
) -> Result<(), CmdError> {
    let path = format!("/1.0/instances/{}", enc(name));
    let mut action = action.to_string();
    if action == "start" && status_code(&client.get(&path).await?) == 110 {
        // "start" on a frozen instance means thaw it, as lxc does.
        action = "unfreeze".to_string();
    }
    let body = json!({"action": action, "timeout": timeout, "force": force, "stateful": false});
    let answer = client
        .request("PUT", &format!("{path}/state"), Some(&body), &[])
        .await?;
    answer.metadata()?;
    match answer.finish(client).await {
        Ok(_) => Ok(()),
        // The start failing inside the operation is where the console log helps.
        Err(e) if action == "start" => fail(format!(
            "{e}\nTry `silo info --show-log {name}` for more info"
        )),
        Err(e) => Err(e.into()),
    }
}

/// The instances `--all` covers: those the action would change.
async fn all_names(client: &Client, action: &str) -> Result<Vec<String>, CmdError> {
    let all = client.get("/1.0/instances?recursion=1").await?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| match action {
            "start" => status_code(i) != 103,
            "stop" => status_code(i) != 102,
            _ => true,
        })
        .map(|i| s(i, "name"))
        .collect())
}

/// `silo start|stop|restart NAME...`: one instance reports its error as it is; several run
/// side by side and each failure is listed before a summary error, as `lxc` does.
pub async fn state_action(
    client: &Client,
    action: &str,
    names: Vec<String>,
    all: bool,
    force: bool,
    timeout: i64,
) -> Result<(), CmdError> {
    let names = if all {
        all_names(client, action).await?
    } else {
        names
    };
    let results = futures::future::join_all(
        names
            .iter()
            .map(|n| change_state(client, action, n, force, timeout)),
    )
    .await;
    if results.len() == 1 {
        return results.into_iter().next().unwrap_or(Ok(()));
    }
    let mut failed = false;
    for (name, r) in names.iter().zip(results) {
        if let Err(e) = r {
            failed = true;
            for line in format!("error: {e}").lines() {
                eprintln!("{name}: {line}");
            }
        }
    }
    if failed {
        eprintln!();
        return fail(format!("Some instances failed to {action}"));
    }
    Ok(())
}

/// `silo info NAME`: the instance as `lxc info` shows it.
pub async fn info(client: &Client, name: &str, show_log: bool) -> Result<(), CmdError> {
    let path = format!("/1.0/instances/{}", enc(name));
    let i = client.get(&format!("{path}?recursion=1")).await?;
    let mut text = instance_info(&i);
    if show_log {
        let log = client.get_raw(&format!("{path}/console")).await?;
        text.push_str(&format!("\nLog:\n\n{}\n", String::from_utf8_lossy(&log)));
    }
    out(&text)
}

fn layout_time(v: &Value, k: &str) -> Option<String> {
    util::time_set(&s(v, k)).map(util::time_short)
}

/// The text of `silo info NAME` (without the log) for an instance read with recursion=1, in
/// the seed's layout: Name, Location, Remote, Architecture, Created, Status, Type, Profiles,
/// Pid, Ips, then Resources and Snapshots with lxc's formatting.
fn instance_info(i: &Value) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "Name: {}", s(i, "name"));
    let loc = s(i, "location");
    let _ = writeln!(
        o,
        "Location: {}",
        if loc.is_empty() { "none".into() } else { loc }
    );
    let _ = writeln!(o, "Remote: unix://");
    let _ = writeln!(o, "Architecture: {}", s(i, "architecture"));
    if let Some(t) = layout_time(i, "created_at") {
        let _ = writeln!(o, "Created: {t}");
    }
    if let Some(t) = layout_time(i, "last_used_at") {
        let _ = writeln!(o, "Last Used: {t}");
    }
    let _ = writeln!(o, "Status: {}", s(i, "status"));
    let t = match s(i, "type") {
        t if t.is_empty() => "container".to_string(),
        t => t,
    };
    if i.get("ephemeral").and_then(Value::as_bool) == Some(true) {
        let _ = writeln!(o, "Type: {t} (ephemeral)");
    } else {
        let _ = writeln!(o, "Type: {t}");
    }
    let profiles: Vec<String> = i
        .get("profiles")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(o, "Profiles: {}", profiles.join(", "));
    let pid = i.pointer("/state/pid").and_then(Value::as_i64).unwrap_or(0);
    if pid != 0 {
        let _ = writeln!(o, "Pid: {pid}");
        o.push_str("Ips:\n");
        if let Some(n) = i.pointer("/state/network").and_then(Value::as_object) {
            let mut names: Vec<&String> = n.keys().collect();
            names.sort_by(|a, b| util::natural_cmp(a, b));
            for name in names {
                let host = s(&n[name], "host_name");
                for a in n[name]
                    .get("addresses")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    let _ = write!(o, "  {name}:\t{}\t{}", s(a, "family"), s(a, "address"));
                    if !host.is_empty() {
                        let _ = write!(o, "\t{host}");
                    }
                    o.push('\n');
                }
            }
        }
    }
    if pid != 0 {
        o.push_str(&resources(i.get("state").unwrap_or(&Value::Null)));
    }
    let snaps: &[Value] = i
        .get("snapshots")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !snaps.is_empty() {
        let rows: Vec<Vec<String>> = snaps
            .iter()
            .map(|sn| {
                let n = s(sn, "name");
                vec![
                    n.rsplit('/').next().unwrap_or("").to_string(),
                    layout_time(sn, "created_at").unwrap_or_else(|| " ".into()),
                    layout_time(sn, "expires_at").unwrap_or_else(|| " ".into()),
                    yes_no(sn, "stateful"),
                ]
            })
            .collect();
        o.push_str("\nSnapshots:\n");
        o.push_str(&format::table(
            &["NAME", "TAKEN AT", "EXPIRES AT", "STATEFUL"],
            &rows,
        ));
    }
    let backups: &[Value] = i
        .get("backups")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !backups.is_empty() {
        let rows: Vec<Vec<String>> = backups
            .iter()
            .map(|b| {
                vec![
                    s(b, "name"),
                    layout_time(b, "created_at").unwrap_or_else(|| " ".into()),
                    layout_time(b, "expires_at").unwrap_or_else(|| " ".into()),
                    yes_no(b, "instance_only"),
                    yes_no(b, "optimized_storage"),
                ]
            })
            .collect();
        o.push_str("\nBackups:\n");
        o.push_str(&format::table(
            &[
                "NAME",
                "TAKEN AT",
                "EXPIRES AT",
                "INSTANCE ONLY",
                "OPTIMIZED STORAGE",
            ],
            &rows,
        ));
    }
    o
}

fn yes_no(v: &Value, k: &str) -> String {
    if v.get(k).and_then(Value::as_bool) == Some(true) {
        "YES"
    } else {
        "NO"
    }
    .to_string()
}

/// The "Resources:" section of `lxc info` for a running instance's state.
fn resources(st: &Value) -> String {
    use std::fmt::Write;
    let u = |p: &str| st.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let mut o = String::from("\nResources:\n");
    let procs = st.get("processes").and_then(Value::as_i64).unwrap_or(0);
    let _ = writeln!(o, "  Processes: {procs}");
    let mut disk = String::new();
    if let Some(d) = st.get("disk").and_then(Value::as_object) {
        let mut names: Vec<&String> = d.keys().collect();
        names.sort_by(|a, b| util::natural_cmp(a, b));
        for n in names {
            let usage = d[n].get("usage").and_then(Value::as_u64).unwrap_or(0);
            if usage != 0 {
                let _ = writeln!(disk, "    {n}: {}", util::size_iec(usage));
            }
        }
    }
    if !disk.is_empty() {
        o.push_str("  Disk usage:\n");
        o.push_str(&disk);
    }
    let cpu = u("/cpu/usage");
    if cpu != 0 {
        o.push_str("  CPU usage:\n");
        let _ = writeln!(o, "    CPU usage (in seconds): {}", cpu / 1_000_000_000);
    }
    let mut mem = String::new();
    for (label, p) in [
        ("Memory (current)", "/memory/usage"),
        ("Memory (peak)", "/memory/usage_peak"),
        ("Swap (current)", "/memory/swap_usage"),
        ("Swap (peak)", "/memory/swap_usage_peak"),
    ] {
        if u(p) != 0 {
            let _ = writeln!(mem, "    {label}: {}", util::size_iec(u(p)));
        }
    }
    if !mem.is_empty() {
        o.push_str("  Memory usage:\n");
        o.push_str(&mem);
    }
    let mut net = String::new();
    if let Some(n) = st.get("network").and_then(Value::as_object) {
        let mut names: Vec<&String> = n.keys().collect();
        names.sort_by(|a, b| util::natural_cmp(a, b));
        for name in names {
            let nic = &n[name];
            let c = |k: &str| {
                nic.pointer(&format!("/counters/{k}"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            let _ = writeln!(net, "    {name}:");
            let _ = writeln!(net, "      Type: {}", s(nic, "type"));
            let _ = writeln!(net, "      State: {}", s(nic, "state").to_uppercase());
            for (label, k) in [("Host interface", "host_name"), ("MAC address", "hwaddr")] {
                let v = s(nic, k);
                if !v.is_empty() {
                    let _ = writeln!(net, "      {label}: {v}");
                }
            }
            let mtu = nic.get("mtu").and_then(Value::as_i64).unwrap_or(0);
            if mtu != 0 {
                let _ = writeln!(net, "      MTU: {mtu}");
            }
            let _ = writeln!(
                net,
                "      Bytes received: {}",
                util::size_si(c("bytes_received"))
            );
            let _ = writeln!(net, "      Bytes sent: {}", util::size_si(c("bytes_sent")));
            let _ = writeln!(net, "      Packets received: {}", c("packets_received"));
            let _ = writeln!(net, "      Packets sent: {}", c("packets_sent"));
            let _ = writeln!(net, "      IP addresses:");
            for a in nic
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let family = s(a, "family");
                // lxc lines the addresses up: "inet:  " and "inet6: ".
                let gap = if family == "inet" { "  " } else { " " };
                let _ = writeln!(
                    net,
                    "        {family}:{gap}{}/{} ({})",
                    s(a, "address"),
                    s(a, "netmask"),
                    s(a, "scope")
                );
            }
        }
    }
    if !net.is_empty() {
        o.push_str("  Network usage:\n");
        o.push_str(&net);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns() {
        let c = parse_columns("ns46tS").expect("cols");
        assert_eq!(c.len(), 6);
        let c = parse_columns("n,user.comment:COMMENT:3,devices:root.pool").expect("cols");
        assert_eq!(column_header(&c[1]), "COMMENT");
        assert_eq!(column_header(&c[2]), "root.pool");
        assert!(parse_columns("nz").is_err());
        assert!(parse_columns("n,").is_err());
        let i = json!({"name": "c1", "config": {"user.comment": "hello"},
            "expanded_devices": {"root": {"type": "disk", "path": "/", "pool": "p1"}}});
        assert_eq!(column_data(&c[1], &i), "hel");
        assert_eq!(column_data(&c[2], &i), "p1");
        assert_eq!(column_data(&Column::Short('b'), &i), "p1");
    }

    #[test]
    fn filters_and_addresses() {
        let i = json!({
            "name": "web1", "status": "Running", "status_code": 103, "type": "container",
            "expanded_config": {"security.privileged": "true"},
            "state": {"network": {
                "eth0": {"type": "broadcast", "addresses": [
                    {"family": "inet", "address": "10.0.0.5", "scope": "global"},
                    {"family": "inet6", "address": "fe80::1", "scope": "link"},
                    {"family": "inet6", "address": "fd42::5", "scope": "global"}]},
                "lo": {"type": "loopback", "addresses": [
                    {"family": "inet", "address": "127.0.0.1", "scope": "local"}]}}}
        });
        assert_eq!(addresses(&i, "inet"), "10.0.0.5 (eth0)");
        assert_eq!(addresses(&i, "inet6"), "fd42::5 (eth0)");
        assert!(instance_matches(&i, &["web".into()]));
        assert!(!instance_matches(&i, &["eb".into()]));
        assert!(instance_matches(&i, &["status=running".into()]));
        assert!(instance_matches(&i, &["status=stopped,running".into()]));
        assert!(!instance_matches(&i, &["status=stopped".into()]));
        assert!(instance_matches(&i, &["s.privileged=true".into()]));
        assert!(instance_matches(&i, &["ipv4=10.0.0.0/24".into()]));
        assert!(!instance_matches(&i, &["ipv4=10.0.1.0/24".into()]));
        assert!(instance_matches(&i, &["ipv6=fd42::/16".into()]));
        let stopped = json!({"name": "x", "status_code": 102, "state": i["state"].clone()});
        assert_eq!(addresses(&stopped, "inet"), "");
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("512MB"), Some(512_000_000));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("x"), None);
    }
}
