//! `silo init`, `silo list` and `silo delete`, as `lxc` does them.

use std::net::IpAddr;

use silo_api::{
    paths, InstanceFull, InstanceSource, InstanceState, InstanceStatePut, InstancesPost, StringMap,
};

use crate::client::Client;
use crate::commands::CmdError;
use crate::format::{self, Format};
use crate::util::{self, fail, out, outln};

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
    /// The cluster member to create it on (default: the one with the fewest instances).
    #[arg(long, value_name = "MEMBER")]
    pub target: Option<String>,
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
    /// Instances of every project (silo has the default project only), with a PROJECT
    /// column first when the columns are the default ones, as lxc shows them.
    #[arg(long)]
    pub all_projects: bool,
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
///
/// `remote_source` is the `source` for an image on another server (see
/// [`crate::requests::instance_source`]); without it the image is the target server's own.
pub async fn init(
    client: &Client,
    a: InitCmd,
    remote_source: Option<InstanceSource>,
) -> Result<(), CmdError> {
    match a.image {
        Some(image) if !a.server.any() => {
            create(client, &image, a.name.as_deref(), &a.opts, remote_source)
                .await
                .map(|_| ())
        }
        Some(_) => fail("--auto, --preseed and --dump set up the server: give no image with them"),
        None => crate::init::run(client, &a.server).await,
    }
}

/// `silo launch IMAGE [NAME]`: `init`, then start, as `lxc launch` prints them.
pub async fn launch(
    client: &Client,
    a: InitArgs,
    remote_source: Option<InstanceSource>,
) -> Result<(), CmdError> {
    let name = create(client, &a.image, a.name.as_deref(), &a.opts, remote_source).await?;
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
    remote_source: Option<InstanceSource>,
) -> Result<String, CmdError> {
    let mut config = StringMap::new();
    for c in &a.config {
        let (k, v) = util::kv(c)?;
        config.insert(k, v);
    }
    let profiles: Vec<String> = if a.no_profiles {
        Vec::new()
    } else if a.profiles.is_empty() {
        vec!["default".to_string()]
    } else {
        a.profiles.clone()
    };
    let mut devices = silo_api::DeviceMap::new();
    if let Some(pool) = &a.storage {
        let root = [("type", "disk"), ("path", "/"), ("pool", pool.as_str())]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        devices.insert("root".to_string(), root);
    }
    let source = match remote_source {
        Some(s) => s,
        None => {
            let mut source = InstanceSource {
                kind: "image".into(),
                ..Default::default()
            };
            if looks_like_fingerprint(image) && !crate::images::alias_exists(client, image).await? {
                source.fingerprint = image.to_string();
            } else {
                source.alias = image.to_string();
            }
            source
        }
    };
    let name = name.unwrap_or_default().to_string();
    let req = InstancesPost {
        name: name.clone(),
        kind: "container".into(),
        profiles: Some(profiles),
        config,
        devices,
        ephemeral: a.ephemeral,
        description: a.description.clone(),
        source,
        ..Default::default()
    };
    if name.is_empty() {
        outln("Creating the instance")?;
    } else {
        outln(&format!("Creating {name}"))?;
    }
    let op = if let Some(t) = &a.target {
        let path = format!(
            "{}?{}",
            paths::instances(),
            serde_urlencoded::to_string([("target", t.as_str())])
                .map_err(|e| CmdError::Output(e.to_string()))?
        );
        let body = serde_json::to_value(&req).map_err(|e| CmdError::Output(e.to_string()))?;
        let a = client.request("POST", &path, Some(&body), &[]).await?;
        a.metadata()?;
        let id = a.operation_id().ok_or_else(|| {
            CmdError::Fail("the server answered the create without an operation".into())
        })?;
        crate::commands::wait_with_progress(client, &id, "Retrieving image").await?
    } else if req.source.server.is_empty() {
        client.create_instance(&req).await?
    } else {
        // The image may be downloaded first: show its progress as lxc does.
        let body = serde_json::to_value(&req).map_err(|e| CmdError::Output(e.to_string()))?;
        let a = client
            .request("POST", &paths::instances(), Some(&body), &[])
            .await?;
        a.metadata()?;
        let id = a.operation_id().ok_or_else(|| {
            CmdError::Fail("the server answered the create without an operation".into())
        })?;
        crate::commands::wait_with_progress(client, &id, "Retrieving image").await?
    };
    if !name.is_empty() {
        return Ok(name);
    }
    let n = op
        .resources
        .get("instances")
        .and_then(|i| i.first())
        .and_then(|url| url.rsplit('/').next())
        .map(paths::unescape)
        .unwrap_or_default();
    if !n.is_empty() {
        outln(&format!("Instance name is: {n}"))?;
    }
    Ok(n)
}

/// LXD's IsActive: anything but Stopped (102) and Error (112).
fn is_active(i: &InstanceFull) -> bool {
    !matches!(i.status_code, 102 | 112)
}

fn addresses(i: &InstanceFull, family: &str) -> String {
    if !is_active(i) {
        return String::new();
    }
    let Some(net) = i.state.as_ref().and_then(|s| s.network.as_ref()) else {
        return String::new();
    };
    let mut out = Vec::new();
    for (iface, n) in net {
        if n.kind == "loopback" {
            continue;
        }
        for a in &n.addresses {
            if matches!(a.scope.as_str(), "link" | "local") {
                continue;
            }
            if a.family == family {
                out.push(format!("{} ({iface})", a.address));
            }
        }
    }
    out.sort();
    out.reverse();
    out.join("\n")
}

fn root_disk(i: &InstanceFull) -> Option<(&String, &StringMap)> {
    i.expanded_devices.iter().find(|(_, d)| {
        d.get("type").map(String::as_str) == Some("disk")
            && d.get("path").map(String::as_str) == Some("/")
    })
}

/// A counter as lxc reads it: a negative one is none.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A number from the instance's state (0 without one).
fn state_u64(i: &InstanceFull, f: impl Fn(&InstanceState) -> i64) -> u64 {
    i.state.as_ref().map(|s| count(f(s))).unwrap_or(0)
}

fn short_time(t: &str) -> String {
    util::time_set(t).map(util::time_short).unwrap_or_default()
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

fn column_data(c: &Column, i: &InstanceFull) -> String {
    match c {
        Column::Config { key, width, .. } => config_column(i, key, *width),
        Column::Device { key, width, .. } => device_column(i, key, *width),
        Column::Short(ch) => short_column(*ch, i),
    }
}

/// A `KEY` column: the instance's own setting, else its expanded one.
fn config_column(i: &InstanceFull, key: &str, width: Option<usize>) -> String {
    let v = i.config.get(key).or_else(|| i.expanded_config.get(key));
    truncate(v.cloned().unwrap_or_default(), width)
}

/// A `devices:DEVICE.KEY` column: the instance's own device's key, else its expanded one's.
fn device_column(i: &InstanceFull, key: &str, width: Option<usize>) -> String {
    let Some((dev, k)) = key.split_once('.') else {
        return String::new();
    };
    if k.contains('.') {
        return String::new();
    }
    let v = i
        .devices
        .get(dev)
        .and_then(|d| d.get(k))
        .or_else(|| i.expanded_devices.get(dev).and_then(|d| d.get(k)));
    truncate(v.cloned().unwrap_or_default(), width)
}

/// A column by its letter, from the instance's record.
fn short_column(ch: char, i: &InstanceFull) -> String {
    match ch {
        'n' => i.name.clone(),
        's' => i.status.to_uppercase(),
        '4' => addresses(i, "inet"),
        '6' => addresses(i, "inet6"),
        't' => {
            let t = if i.kind.is_empty() {
                "CONTAINER".to_string()
            } else {
                i.kind.to_uppercase()
            };
            if i.ephemeral {
                format!("{t} (EPHEMERAL)")
            } else {
                t
            }
        }
        'S' => i.snapshots.len().to_string(),
        'a' => i.architecture.clone(),
        'b' => root_disk(i)
            .and_then(|(_, d)| d.get("pool").cloned())
            .unwrap_or_default(),
        'c' => short_time(&i.created_at),
        'd' => i.description.clone(),
        'e' => i.project.clone(),
        'f' | 'F' => {
            let v = i
                .config
                .get("volatile.base_image")
                .cloned()
                .unwrap_or_default();
            if ch == 'f' {
                v.chars().take(12).collect()
            } else {
                v
            }
        }
        'l' => short_time(&i.last_used_at),
        'L' => i.location.clone(),
        'P' => i.profiles.join("\n"),
        'D' | 'm' | 'M' | 'N' | 'p' | 'u' => usage_column(ch, i),
        _ => String::new(),
    }
}

/// A column by its letter, from the running instance's usage (disk, memory, processes, CPU).
fn usage_column(ch: char, i: &InstanceFull) -> String {
    match ch {
        'D' => {
            let Some((name, _)) = root_disk(i) else {
                return String::new();
            };
            let u = i
                .state
                .as_ref()
                .and_then(|s| s.disk.get(name.as_str()))
                .map(|d| count(d.usage))
                .unwrap_or(0);
            if u > 0 {
                util::size_iec(u)
            } else {
                String::new()
            }
        }
        'm' => {
            let u = state_u64(i, |s| s.memory.usage);
            if is_active(i) && u > 0 {
                util::size_iec(u)
            } else {
                String::new()
            }
        }
        'M' => {
            let u = state_u64(i, |s| s.memory.usage);
            let limit = i
                .expanded_config
                .get("limits.memory")
                .cloned()
                .unwrap_or_default();
            if !is_active(i) || u == 0 || limit.is_empty() || limit.contains('%') {
                return String::new();
            }
            match parse_bytes(&limit) {
                Some(l) if l > 0 => format!("{:.1}%", u as f64 / l as f64 * 100.0),
                _ => String::new(),
            }
        }
        'N' | 'p' => {
            if is_active(i) && i.state.is_some() {
                if ch == 'N' {
                    state_u64(i, |s| s.processes).to_string()
                } else {
                    state_u64(i, |s| s.pid).to_string()
                }
            } else {
                String::new()
            }
        }
        'u' => {
            let u = state_u64(i, |s| s.cpu.usage);
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

fn match_net(i: &InstanceFull, query: &str, family: &str) -> bool {
    let Some(net) = i.state.as_ref().and_then(|s| s.network.as_ref()) else {
        return false;
    };
    let cidr = parse_cidr(query);
    net.values()
        .flat_map(|n| &n.addresses)
        .filter(|a| a.family == family)
        .any(|a| {
            a.address == query
                || cidr.is_some_and(|c| a.address.parse().is_ok_and(|ip| in_cidr(ip, c)))
        })
}

fn shorthand(key: &str, value: &str, i: &InstanceFull) -> Option<bool> {
    let one = |v: &str| -> bool {
        match key {
            "type" => {
                let t = if i.kind.is_empty() {
                    "container"
                } else {
                    i.kind.as_str()
                };
                t.eq_ignore_ascii_case(v)
            }
            "status" => i.status.eq_ignore_ascii_case(v),
            "architecture" => i.architecture.eq_ignore_ascii_case(v),
            "location" => i.location.eq_ignore_ascii_case(v),
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
fn instance_matches(i: &InstanceFull, filters: &[String]) -> bool {
    filters.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => {
            if let Some(m) = shorthand(&k.to_lowercase(), v, i) {
                if m {
                    return true;
                }
            }
            let c = &i.expanded_config;
            c.get(k).map(String::as_str) == Some(v)
                || c.iter()
                    .any(|(ck, cv)| crate::images::dot_prefix_match(k, ck) && cv == v)
        }
        None => i.name.starts_with(f.as_str()),
    })
}

/// `silo list`.
pub async fn list(client: &Client, a: ListArgs) -> Result<(), CmdError> {
    let all_projects_default;
    let spec = if a.fast {
        "nsacPt"
    } else if a.all_projects && a.columns == "ns46tS" {
        all_projects_default = format!("e{}", a.columns);
        all_projects_default.as_str()
    } else {
        a.columns.as_str()
    };
    // As lxc: a cluster's listing shows where each instance runs.
    let clustered_default;
    let spec = if spec == "ns46tS" && client.server().await?.environment.server_clustered {
        clustered_default = format!("{spec}L");
        clustered_default.as_str()
    } else {
        spec
    };
    let cols = parse_columns(spec)?;
    let insts: Vec<InstanceFull> = client
        .instances_full()
        .await?
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
    let objects = serde_json::to_value(&insts).map_err(|e| CmdError::Output(e.to_string()))?;
    let text = format::render(a.format, &headers, &rows, &objects).map_err(CmdError::Output)?;
    out(&text)
}

/// `silo delete`.
pub async fn delete(client: &Client, a: DeleteArgs) -> Result<(), CmdError> {
    for name in &a.names {
        if let Some((inst, snap)) = name.split_once('/') {
            client.delete_snapshot(inst, snap).await?;
            continue;
        }
        let inst = client.instance(name).await?;
        let code = inst.status_code;
        if code != 0 && code != 102 {
            if !a.force {
                return fail("The instance is currently running, stop it first or pass --force");
            }
            let stop = InstanceStatePut {
                action: "stop".into(),
                force: true,
                timeout: -1,
                stateful: false,
            };
            client
                .set_instance_state(name, &stop)
                .await
                .map_err(|e| CmdError::Fail(format!("Stopping the instance failed: {e}")))?;
            // The server deletes an ephemeral instance itself once it stops.
            if inst.ephemeral {
                continue;
            }
        }
        client.delete_instance(name).await?;
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
    let mut action = action.to_string();
    if action == "start" && client.instance(name).await?.status_code == 110 {
        // "start" on a frozen instance means thaw it, as lxc does.
        action = "unfreeze".to_string();
    }
    let req = InstanceStatePut {
        action: action.clone(),
        timeout,
        force,
        stateful: false,
    };
    let Some(id) = client
        .start("PUT", &paths::instance_state(name), Some(&req))
        .await?
    else {
        return Ok(());
    };
    match client.operation_wait(&id).await {
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
    Ok(client
        .instances()
        .await?
        .into_iter()
        .filter(|i| match action {
            "start" => i.status_code != 103,
            "stop" => i.status_code != 102,
            "freeze" => i.status_code == 103,
            _ => true,
        })
        .map(|i| i.name)
        .collect())
}

/// `silo start|stop|restart|pause NAME...`: one instance reports its error as it is; several run
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
    if let Some((inst, snap)) = name.split_once('/') {
        return out(&snapshot_info(&client.snapshot(inst, snap).await?));
    }
    let i: InstanceFull = client
        .get_as(&paths::recursion(&paths::instance(name), 1))
        .await?;
    let mut text = instance_info(&i);
    if show_log {
        let log = client.get_raw(&paths::instance_console(name)).await?;
        text.push_str(&format!("\nLog:\n\n{}\n", String::from_utf8_lossy(&log)));
    }
    out(&text)
}

/// The text of `silo info INSTANCE/SNAPSHOT` (a silo extension: LXD 5.0's lxc refuses a
/// snapshot name here).
fn snapshot_info(s: &silo_api::InstanceSnapshot) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "Name: {}", s.name);
    let _ = writeln!(o, "Architecture: {}", s.architecture);
    if let Some(t) = layout_time(&s.created_at) {
        let _ = writeln!(o, "Created: {t}");
    }
    let _ = writeln!(
        o,
        "Expires: {}",
        layout_time(&s.expires_at).unwrap_or_else(|| "never".into())
    );
    let _ = writeln!(o, "Stateful: {}", if s.stateful { "YES" } else { "NO" });
    if s.size >= 0 {
        let _ = writeln!(o, "Size: {}", util::size_iec(s.size as u64));
    }
    if !s.description.is_empty() {
        let _ = writeln!(o, "Description: {}", s.description);
    }
    let _ = writeln!(o, "Profiles: {}", s.profiles.join(", "));
    o
}

fn layout_time(t: &str) -> Option<String> {
    util::time_set(t).map(util::time_short)
}

/// The text of `silo info NAME` (without the log) for an instance read with recursion=1, in
/// the seed's layout: Name, Location, Remote, Architecture, Created, Status, Type, Profiles,
/// Pid, Ips, then Resources and Snapshots with lxc's formatting.
fn instance_info(i: &InstanceFull) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "Name: {}", i.name);
    let _ = writeln!(
        o,
        "Location: {}",
        if i.location.is_empty() {
            "none"
        } else {
            i.location.as_str()
        }
    );
    let _ = writeln!(o, "Remote: unix://");
    let _ = writeln!(o, "Architecture: {}", i.architecture);
    if let Some(t) = layout_time(&i.created_at) {
        let _ = writeln!(o, "Created: {t}");
    }
    if let Some(t) = layout_time(&i.last_used_at) {
        let _ = writeln!(o, "Last Used: {t}");
    }
    let _ = writeln!(o, "Status: {}", i.status);
    let t = if i.kind.is_empty() {
        "container"
    } else {
        i.kind.as_str()
    };
    if i.ephemeral {
        let _ = writeln!(o, "Type: {t} (ephemeral)");
    } else {
        let _ = writeln!(o, "Type: {t}");
    }
    let _ = writeln!(o, "Profiles: {}", i.profiles.join(", "));
    let pid = i.state.as_ref().map_or(0, |s| s.pid);
    if let Some(st) = i.state.as_ref().filter(|_| pid != 0) {
        let _ = writeln!(o, "Pid: {pid}");
        o.push_str("Ips:\n");
        if let Some(n) = &st.network {
            let mut names: Vec<&String> = n.keys().collect();
            names.sort_by(|a, b| util::natural_cmp(a, b));
            for name in names {
                let nic = &n[name];
                for a in &nic.addresses {
                    let _ = write!(o, "  {name}:\t{}\t{}", a.family, a.address);
                    if !nic.host_name.is_empty() {
                        let _ = write!(o, "\t{}", nic.host_name);
                    }
                    o.push('\n');
                }
            }
        }
        o.push_str(&resources(st));
    }
    if !i.snapshots.is_empty() {
        let rows: Vec<Vec<String>> = i
            .snapshots
            .iter()
            .map(|sn| {
                vec![
                    sn.name.rsplit('/').next().unwrap_or("").to_string(),
                    layout_time(&sn.created_at).unwrap_or_else(|| " ".into()),
                    layout_time(&sn.expires_at).unwrap_or_else(|| " ".into()),
                    yes_no(sn.stateful),
                ]
            })
            .collect();
        o.push_str("\nSnapshots:\n");
        o.push_str(&format::table(
            &["NAME", "TAKEN AT", "EXPIRES AT", "STATEFUL"],
            &rows,
        ));
    }
    if !i.backups.is_empty() {
        let rows: Vec<Vec<String>> = i
            .backups
            .iter()
            .map(|b| {
                vec![
                    b.name.clone(),
                    layout_time(&b.created_at).unwrap_or_else(|| " ".into()),
                    layout_time(&b.expires_at).unwrap_or_else(|| " ".into()),
                    yes_no(b.instance_only),
                    yes_no(b.optimized_storage),
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

fn yes_no(b: bool) -> String {
    if b { "YES" } else { "NO" }.to_string()
}

/// The "Resources:" section of `lxc info` for a running instance's state.
fn resources(st: &InstanceState) -> String {
    use std::fmt::Write;
    let mut o = String::from("\nResources:\n");
    let _ = writeln!(o, "  Processes: {}", st.processes);
    let mut disk = String::new();
    let mut names: Vec<&String> = st.disk.keys().collect();
    names.sort_by(|a, b| util::natural_cmp(a, b));
    for n in names {
        let usage = count(st.disk[n].usage);
        if usage != 0 {
            let _ = writeln!(disk, "    {n}: {}", util::size_iec(usage));
        }
    }
    if !disk.is_empty() {
        o.push_str("  Disk usage:\n");
        o.push_str(&disk);
    }
    let cpu = count(st.cpu.usage);
    if cpu != 0 {
        o.push_str("  CPU usage:\n");
        let _ = writeln!(o, "    CPU usage (in seconds): {}", cpu / 1_000_000_000);
    }
    let mut mem = String::new();
    let m = &st.memory;
    for (label, v) in [
        ("Memory (current)", m.usage),
        ("Memory (peak)", m.usage_peak),
        ("Swap (current)", m.swap_usage),
        ("Swap (peak)", m.swap_usage_peak),
    ] {
        if count(v) != 0 {
            let _ = writeln!(mem, "    {label}: {}", util::size_iec(count(v)));
        }
    }
    if !mem.is_empty() {
        o.push_str("  Memory usage:\n");
        o.push_str(&mem);
    }
    let mut net = String::new();
    if let Some(n) = &st.network {
        let mut names: Vec<&String> = n.keys().collect();
        names.sort_by(|a, b| util::natural_cmp(a, b));
        for name in names {
            let nic = &n[name];
            let c = &nic.counters;
            let _ = writeln!(net, "    {name}:");
            let _ = writeln!(net, "      Type: {}", nic.kind);
            let _ = writeln!(net, "      State: {}", nic.state.to_uppercase());
            for (label, v) in [
                ("Host interface", &nic.host_name),
                ("MAC address", &nic.hwaddr),
            ] {
                if !v.is_empty() {
                    let _ = writeln!(net, "      {label}: {v}");
                }
            }
            if nic.mtu != 0 {
                let _ = writeln!(net, "      MTU: {}", nic.mtu);
            }
            let _ = writeln!(
                net,
                "      Bytes received: {}",
                util::size_si(count(c.bytes_received))
            );
            let _ = writeln!(
                net,
                "      Bytes sent: {}",
                util::size_si(count(c.bytes_sent))
            );
            let _ = writeln!(net, "      Packets received: {}", count(c.packets_received));
            let _ = writeln!(net, "      Packets sent: {}", count(c.packets_sent));
            let _ = writeln!(net, "      IP addresses:");
            for a in &nic.addresses {
                // lxc lines the addresses up: "inet:  " and "inet6: ".
                let gap = if a.family == "inet" { "  " } else { " " };
                let _ = writeln!(
                    net,
                    "        {}:{gap}{}/{} ({})",
                    a.family, a.address, a.netmask, a.scope
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
    use serde_json::json;

    use super::*;

    fn typed(v: serde_json::Value) -> InstanceFull {
        silo_api::lenient::from_value(v).expect("decodes")
    }

    #[test]
    fn columns() {
        let c = parse_columns("ns46tS").expect("cols");
        assert_eq!(c.len(), 6);
        let c = parse_columns("n,user.comment:COMMENT:3,devices:root.pool").expect("cols");
        assert_eq!(column_header(&c[1]), "COMMENT");
        assert_eq!(column_header(&c[2]), "root.pool");
        assert!(parse_columns("nz").is_err());
        assert!(parse_columns("n,").is_err());
        let i = typed(json!({"name": "c1", "config": {"user.comment": "hello"},
            "expanded_devices": {"root": {"type": "disk", "path": "/", "pool": "p1"}}}));
        assert_eq!(column_data(&c[1], &i), "hel");
        assert_eq!(column_data(&c[2], &i), "p1");
        assert_eq!(column_data(&Column::Short('b'), &i), "p1");
    }

    #[test]
    fn filters_and_addresses() {
        let v = json!({
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
        let i = typed(v.clone());
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
        let stopped = typed(json!({"name": "x", "status_code": 102, "state": v["state"].clone()}));
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
