//! `silo init` without an image: the server's first-run setup, as `lxd init` does it.
//!
//! Every mode builds one [`Preseed`] (LXD's preseed format) and applies it through the public
//! API: the questions (`silo init`), the defaults (`--auto`) or a YAML file (`--preseed`).
//! Applying is all or nothing: each change remembers how to undo itself, and a refusal from
//! the server undoes what went before, so a bad preseed leaves the server as it was.
//! `--dump` prints the current setup in the same format, which `--preseed` takes back.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use serde::Serialize;
use serde_json::Value;
use silo_api::{
    lenient, paths, InitNetworksProjectPost, InitPreseed, Network, NetworkPut, NetworksPost,
    ProfilePut, ProfilesPost, ProjectsPost, ServerPut, StoragePool, StoragePoolsPost, StringMap,
};

use crate::client::{Client, ClientError};
use crate::commands::CmdError;
use crate::util::{self, fail};

/// The flags of `silo init` that set up the server.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServerInitArgs {
    /// Set up the server with defaults, no questions (for scripts).
    #[arg(long, conflicts_with_all = ["preseed", "dump"])]
    pub auto: bool,
    /// Apply a YAML preseed (LXD's format) read from standard input.
    #[arg(long, conflicts_with = "dump")]
    pub preseed: bool,
    /// Print the current setup as a YAML preseed (what --preseed takes back).
    #[arg(long)]
    pub dump: bool,
    /// With --auto: the storage backend (dir or btrfs; default: keep the existing pool, or the
    /// best this host supports).
    #[arg(long, requires = "auto", value_name = "BACKEND")]
    pub storage_backend: Option<String>,
    /// With --auto: size in GiB of the loop file of a new btrfs pool.
    #[arg(long, requires = "auto", value_name = "GiB")]
    pub storage_create_loop: Option<u64>,
    /// With --auto: an empty block device to format for a new btrfs pool (the root policy's
    /// block_devices must list it).
    #[arg(
        long,
        requires = "auto",
        conflicts_with = "storage_create_loop",
        value_name = "DEVICE"
    )]
    pub storage_create_device: Option<String>,
    /// With --auto: the storage pool's name.
    #[arg(long, requires = "auto", value_name = "NAME")]
    pub storage_pool: Option<String>,
    /// With --auto: the address to serve the API on over the network.
    #[arg(long, requires = "auto", value_name = "ADDRESS")]
    pub network_address: Option<String>,
    /// With --auto: the port for --network-address.
    #[arg(long, requires = "network_address", value_name = "PORT")]
    pub network_port: Option<u16>,
    /// With --auto: the trust password for new clients.
    #[arg(long, requires = "auto", value_name = "PASSWORD")]
    pub trust_password: Option<String>,
}

impl ServerInitArgs {
    /// Whether any server-init mode was asked for.
    pub fn any(&self) -> bool {
        self.auto || self.preseed || self.dump
    }
}

/// A string map (`config`, one device).
type Strings = StringMap;

/// LXD's preseed: what `lxd init --dump` prints and `--preseed` takes.
pub type Preseed = InitPreseed;

/// The top-level keys of `T`, as it serializes them.
fn keys_of<T: Default + Serialize>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The first key of `v` that `T` has no field for, with where it was.
fn unknown_key<T: Default + Serialize>(v: &Value, at: &str) -> Option<String> {
    let known = keys_of::<T>();
    let m = v.as_object()?;
    let k = m.keys().find(|k| !known.contains(k))?;
    let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    Some(format!(
        "unknown field `{k}`{at}, expected one of {}",
        expected.join(", ")
    ))
}

/// A key no preseed section has, anywhere: refused, as `lxd init --preseed` refuses it,
/// so a misspelt key is never silently ignored.
fn unknown_preseed_key(v: &Value) -> Option<String> {
    fn items<'a>(v: &'a Value, list: &str) -> impl Iterator<Item = &'a Value> {
        v.get(list).and_then(Value::as_array).into_iter().flatten()
    }
    unknown_key::<Preseed>(v, "")
        .or_else(|| {
            items(v, "networks")
                .find_map(|x| unknown_key::<InitNetworksProjectPost>(x, " in networks"))
        })
        .or_else(|| {
            items(v, "storage_pools")
                .find_map(|x| unknown_key::<StoragePoolsPost>(x, " in storage_pools"))
        })
        .or_else(|| {
            items(v, "profiles").find_map(|x| unknown_key::<ProfilesPost>(x, " in profiles"))
        })
        .or_else(|| {
            items(v, "projects").find_map(|x| unknown_key::<ProjectsPost>(x, " in projects"))
        })
}

/// Parses a preseed, taking YAML scalars as text where text is wanted, as LXD's Go types do.
pub fn parse_preseed(text: &str) -> Result<Preseed, CmdError> {
    let mut v = util::parse_yaml(text)
        .map_err(|e| CmdError::Fail(format!("Failed to parse the preseed: {e}")))?;
    if let Some(e) = unknown_preseed_key(&v) {
        return fail(format!("Invalid preseed: {e}"));
    }
    // The server's configuration is Go's map[string]any; silo's keys all take text.
    if let Some(c) = v.get_mut("config") {
        util::stringify_map(c);
    }
    lenient::from_yaml_value(v).map_err(|e| CmdError::Fail(format!("Invalid preseed: {e}")))
}

/// Checks what can be checked before anything changes (the server checks the rest, and a
/// refusal undoes what was applied).
pub fn check_preseed(p: &Preseed) -> Result<(), CmdError> {
    if let Some(c) = cluster_of(p)? {
        if c.enabled && c.server_name.is_empty() && c.cluster_token.is_empty() {
            return fail(
                "The preseed's cluster section needs server_name (and, to join, cluster_token)",
            );
        }
        if !c.cluster_token.is_empty() {
            silo_api::ClusterMemberJoinToken::decode(&c.cluster_token)
                .map_err(|e| CmdError::Fail(format!("The preseed's cluster_token: {e}")))?;
        }
    }
    if let Some(x) = p
        .projects
        .iter()
        .find(|x| x.name != "default" || !x.config.is_empty())
    {
        return fail(format!(
            "Projects are not available in silo yet: project {:?} cannot be created or configured",
            x.name
        ));
    }
    for n in &p.networks {
        check_ifname(&n.name).map_err(|e| CmdError::Fail(format!("Network {:?}: {e}", n.name)))?;
        if !n.project.is_empty() && n.project != "default" {
            return fail(format!(
                "Network {:?}: projects are not available in silo yet",
                n.name
            ));
        }
        for (k, fam) in [("ipv4.address", 4), ("ipv6.address", 6)] {
            if let Some(v) = n.config.get(k) {
                check_cidr(v, fam)
                    .map_err(|e| CmdError::Fail(format!("Network {:?}: {k}: {e}", n.name)))?;
            }
        }
    }
    for s in &p.storage_pools {
        if s.name.is_empty() {
            return fail("A storage pool in the preseed has no name");
        }
        if s.driver.is_empty() {
            return fail(format!("Storage pool {:?} has no driver", s.name));
        }
    }
    for pr in &p.profiles {
        if pr.name.is_empty() {
            return fail("A profile in the preseed has no name");
        }
    }
    Ok(())
}

/// An interface name as the kernel takes it (IFNAMSIZ); the server checks it again, with the
/// rest of what it refuses.
fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 15
        || s == "."
        || s == ".."
        || s.contains(['/', ':'])
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{s:?} is not an interface name: 1 to 15 characters (at most 15 bytes), no '/', ':' or spaces"
        ));
    }
    Ok(())
}

/// `auto`, `none` or an address with its prefix length; which subnets a bridge may have is
/// the server's to say.
fn check_cidr(v: &str, family: u8) -> Result<(), String> {
    if matches!(v, "auto" | "none" | "") {
        return Ok(());
    }
    let Some((addr, prefix)) = v.split_once('/') else {
        return Err(format!(
            "{v:?} is not an address with a prefix length (CIDR), \"auto\" or \"none\""
        ));
    };
    let max = if family == 4 {
        addr.parse::<std::net::Ipv4Addr>().map(|_| 32)
    } else {
        addr.parse::<std::net::Ipv6Addr>().map(|_| 128)
    }
    .map_err(|_| format!("{v:?}: {addr:?} is not an IPv{family} address"))?;
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(()),
        _ => Err(format!(
            "{v:?}: the prefix length must be a number from 0 to {max}"
        )),
    }
}

/// The current setup as a preseed. The trust password is never printed (the server only
/// says that one is set).
pub async fn dump(client: &Client) -> Result<Preseed, CmdError> {
    let server = client.server().await?;
    let mut p = Preseed {
        config: server
            .config
            .iter()
            .filter(|(k, _)| k.as_str() != "core.trust_password")
            .map(|(k, v)| (k.clone(), Value::String(util::vs(Some(v)))))
            .collect(),
        ..Default::default()
    };
    for n in client.networks().await?.into_iter().filter(|n| n.managed) {
        p.networks.push(InitNetworksProjectPost {
            config: n.config,
            description: n.description,
            name: n.name,
            kind: n.kind,
            project: "default".into(),
        });
    }
    for s in client.storage_pools().await? {
        p.storage_pools.push(StoragePoolsPost {
            config: s.config,
            description: s.description,
            name: s.name,
            driver: s.driver,
        });
    }
    for pr in client.profiles().await? {
        p.profiles.push(ProfilesPost {
            config: pr.config,
            description: pr.description,
            devices: pr.devices,
            name: pr.name,
        });
    }
    p.networks.sort_by(|a, b| a.name.cmp(&b.name));
    p.storage_pools.sort_by(|a, b| a.name.cmp(&b.name));
    p.profiles.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(p)
}

/// The preseed as YAML.
pub fn to_yaml(p: &Preseed) -> Result<String, CmdError> {
    serde_norway::to_string(p).map_err(|e| CmdError::Output(e.to_string()))
}

/// How to take one applied change back.
#[derive(Debug)]
enum Undo {
    /// The server's configuration as it was.
    Config(BTreeMap<String, Value>),
    /// A profile that was created.
    DeleteProfile(String),
    /// A network that was created.
    DeleteNetwork(String),
    /// A storage pool that was created.
    DeletePool(String),
    /// A profile as it was.
    PutProfile(String, ProfilePut),
    /// A network as it was.
    PutNetwork(String, NetworkPut),
    /// A replaced pool: delete the new one, make the old one again, put the profiles back.
    Pool {
        old: StoragePool,
        profiles: Vec<(String, ProfilePut)>,
    },
}

/// Whether an API answer was 404.
fn not_found(e: &ClientError) -> bool {
    e.to_string().contains("not found")
}

/// `Ok(None)` for a 404.
fn found<T>(r: Result<T, ClientError>) -> Result<Option<T>, CmdError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Applies a preseed; on a refusal, takes back what was done and returns the refusal.
/// Returns a line per change made (empty: nothing was new).
pub async fn apply(client: &Client, p: &Preseed) -> Result<Vec<String>, CmdError> {
    check_preseed(p)?;
    let mut undo = Vec::new();
    let mut done = Vec::new();
    let r = apply_steps(client, p, &mut undo, &mut done).await;
    if let Err(e) = r {
        for u in undo.into_iter().rev() {
            if let Err(x) = take_back(client, u).await {
                let _ = writeln!(std::io::stderr(), "Warning: undoing a change failed: {x}");
            }
        }
        return Err(e);
    }
    Ok(done)
}

async fn take_back(client: &Client, u: Undo) -> Result<(), CmdError> {
    match u {
        Undo::Config(config) => client.update_server(&ServerPut { config }, None).await?,
        Undo::DeleteProfile(name) => client.delete_profile(&name).await?,
        Undo::DeleteNetwork(name) => client.delete_network(&name).await?,
        Undo::DeletePool(name) => client.delete_storage_pool(&name).await?,
        Undo::PutProfile(name, put) => client.update_profile(&name, &put, None).await?,
        Undo::PutNetwork(name, put) => client.update_network(&name, &put, None).await?,
        Undo::Pool { old, profiles } => {
            for (p, _) in &profiles {
                let mut now = ProfilePut::from(&client.profile(p).await?);
                strip_root(&mut now, &old.name);
                client.update_profile(p, &now, None).await?;
            }
            let _ = client.delete_storage_pool(&old.name).await;
            client
                .create_storage_pool(&StoragePoolsPost {
                    config: old.config,
                    description: old.description,
                    name: old.name,
                    driver: old.driver,
                })
                .await?;
            for (p, put) in profiles {
                client.update_profile(&p, &put, None).await?;
            }
        }
    }
    Ok(())
}

/// Removes the disk devices on pool `pool` from a profile.
fn strip_root(profile: &mut ProfilePut, pool: &str) {
    profile.devices.retain(|_, dev| {
        !(dev.get("type").map(String::as_str) == Some("disk")
            && dev.get("pool").map(String::as_str) == Some(pool))
    });
}

async fn apply_steps(
    client: &Client,
    p: &Preseed,
    undo: &mut Vec<Undo>,
    done: &mut Vec<String>,
) -> Result<(), CmdError> {
    // Server configuration: merged (PATCH semantics, as LXD's init does).
    if !p.config.is_empty() {
        let old = client.server().await?.config;
        let want: Strings = p
            .config
            .iter()
            .map(|(k, v)| (k.clone(), util::vs(Some(v))))
            .collect();
        let differs = want.iter().any(|(k, v)| {
            old.get(k).map(|o| util::vs(Some(o))).as_ref() != Some(v) || k == "core.trust_password"
        });
        if differs {
            let config = want
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            client.patch_server(&ServerPut { config }).await?;
            undo.push(Undo::Config(old));
            done.push("server configuration".into());
        }
    }
    for s in &p.storage_pools {
        apply_pool(client, s, undo, done).await?;
    }
    for n in &p.networks {
        apply_network(client, n, undo, done).await?;
    }
    for pr in &p.profiles {
        apply_profile(client, pr, undo, done).await?;
    }
    // Clustering last: bootstrap with this setup, or join with it (LXD's order).
    if let Some(c) = cluster_of(p)?.filter(|c| c.enabled) {
        let joining = !c.cluster_token.is_empty() || !c.cluster_password.is_empty();
        client.run("PUT", "/1.0/cluster", Some(&c), &[]).await?;
        done.push(if joining {
            "joined the cluster".into()
        } else {
            format!("clustering enabled (member {})", c.server_name)
        });
    }
    Ok(())
}

/// The preseed's `cluster` section, as `PUT /1.0/cluster` takes it.
pub fn cluster_of(p: &Preseed) -> Result<Option<silo_api::ClusterPut>, CmdError> {
    match &p.cluster {
        None | Some(Value::Null) => Ok(None),
        Some(v) => lenient::from_value(v.clone())
            .map(Some)
            .map_err(|e| CmdError::Fail(format!("Invalid preseed: cluster: {e}"))),
    }
}

async fn apply_profile(
    client: &Client,
    pr: &ProfilesPost,
    undo: &mut Vec<Undo>,
    done: &mut Vec<String>,
) -> Result<(), CmdError> {
    let want = ProfilePut {
        config: pr.config.clone(),
        description: pr.description.clone(),
        devices: pr.devices.clone(),
    };
    match found(client.profile(&pr.name).await)? {
        None => {
            client.create_profile(pr).await?;
            undo.push(Undo::DeleteProfile(pr.name.clone()));
            done.push(format!("profile {}", pr.name));
        }
        Some(old) => {
            let old = ProfilePut::from(&old);
            if old != want {
                client.update_profile(&pr.name, &want, None).await?;
                undo.push(Undo::PutProfile(pr.name.clone(), old));
                done.push(format!("profile {}", pr.name));
            }
        }
    }
    Ok(())
}

async fn apply_pool(
    client: &Client,
    s: &StoragePoolsPost,
    undo: &mut Vec<Undo>,
    done: &mut Vec<String>,
) -> Result<(), CmdError> {
    let Some(old) = found(client.storage_pool(&s.name).await)? else {
        client.create_storage_pool(s).await?;
        undo.push(Undo::DeletePool(s.name.clone()));
        done.push(format!("storage pool {} ({})", s.name, s.driver));
        return Ok(());
    };
    if old.driver == s.driver {
        // Size and source are the pool's own: init does not redefine an existing pool.
        let differs = s
            .config
            .iter()
            .any(|(k, v)| match (k.as_str(), old.config.get(k)) {
                // The server keeps sizes in bytes; "2GiB" is the same size.
                ("size", Some(o)) => size_bytes(v) != size_bytes(o),
                (_, o) => o != Some(v),
            });
        if differs {
            return fail(format!(
                "Storage pool {:?} already exists with another configuration; silo init does not redefine it (use \"silo storage set\")",
                s.name
            ));
        }
        return Ok(());
    }
    // Another driver: only a pool nothing but profiles uses (the embedded default before any
    // instance) is replaced; its profiles' root disks are re-pointed at the new pool.
    let profiles_url = paths::profiles();
    if let Some(u) = old
        .used_by
        .iter()
        .find(|u| paths::name_under(u, &profiles_url).is_none())
    {
        return fail(format!(
            "Storage pool {:?} already exists as a {} pool and is in use ({u}); choose another name",
            s.name, old.driver
        ));
    }
    let mut profiles = Vec::new();
    for name in old
        .used_by
        .iter()
        .filter_map(|u| paths::name_under(u, &profiles_url))
    {
        let put = ProfilePut::from(&client.profile(&name).await?);
        profiles.push((name, put));
    }
    // From here on a failure must put the old pool and the profiles back.
    undo.push(Undo::Pool {
        old: old.clone(),
        profiles: profiles.clone(),
    });
    for (name, put) in &profiles {
        let mut stripped = put.clone();
        strip_root(&mut stripped, &s.name);
        client.update_profile(name, &stripped, None).await?;
    }
    client.delete_storage_pool(&s.name).await?;
    client.create_storage_pool(s).await?;
    for (name, put) in &profiles {
        client.update_profile(name, put, None).await?;
    }
    done.push(format!(
        "storage pool {} (now {}, was {})",
        s.name, s.driver, old.driver
    ));
    Ok(())
}

async fn apply_network(
    client: &Client,
    n: &InitNetworksProjectPost,
    undo: &mut Vec<Undo>,
    done: &mut Vec<String>,
) -> Result<(), CmdError> {
    match found(client.network(&n.name).await)? {
        Some(old) if old.managed => {
            // "auto" asks for any free subnet: one the network has already is as good.
            let mut want = n.config.clone();
            for (k, v) in want.iter_mut() {
                if v == "auto" {
                    if let Some(h) = old.config.get(k).filter(|h| h.contains('/')) {
                        *v = h.clone();
                    }
                }
            }
            if want == old.config && old.description == n.description {
                return Ok(());
            }
            let put = NetworkPut {
                config: want,
                description: n.description.clone(),
            };
            client.update_network(&n.name, &put, None).await?;
            undo.push(Undo::PutNetwork(n.name.clone(), NetworkPut::from(&old)));
            done.push(format!("network {}", n.name));
        }
        Some(_) => {
            return fail(format!(
            "The network {:?} already exists on the host and is not silo's; choose another name",
            n.name
        ))
        }
        None => {
            let kind = if n.kind.is_empty() { "bridge" } else { &n.kind };
            client
                .create_network(&NetworksPost {
                    config: n.config.clone(),
                    description: n.description.clone(),
                    name: n.name.clone(),
                    kind: kind.to_string(),
                })
                .await?;
            undo.push(Undo::DeleteNetwork(n.name.clone()));
            done.push(format!("network {}", n.name));
        }
    }
    Ok(())
}

/// What the server can do, for the defaults.
struct Facts {
    drivers: Vec<String>,
    pools: Vec<StoragePool>,
    networks: Vec<Network>,
    default_profile: ProfilePut,
    server_name: String,
}

async fn facts(client: &Client) -> Result<Facts, CmdError> {
    let server = client.server().await?;
    let mut drivers: Vec<String> = server
        .environment
        .storage_supported_drivers
        .into_iter()
        .map(|d| d.name)
        .filter(|d| matches!(d.as_str(), "dir" | "btrfs"))
        .collect();
    if drivers.is_empty() {
        drivers.push("dir".into());
    }
    Ok(Facts {
        drivers,
        pools: client.storage_pools().await?,
        networks: client.networks().await?,
        default_profile: found(client.profile("default").await)?
            .map(|p| ProfilePut::from(&p))
            .unwrap_or_else(|| ProfilePut {
                description: "Default silo profile".into(),
                ..Default::default()
            }),
        server_name: server.environment.server_name.clone(),
    })
}

impl Facts {
    /// btrfs where this host can make it, else dir (LXD's order of preference).
    fn best_driver(&self) -> String {
        if self.drivers.iter().any(|d| d == "btrfs") {
            "btrfs".into()
        } else {
            "dir".into()
        }
    }

    fn pool(&self, name: &str) -> Option<&StoragePool> {
        self.pools.iter().find(|p| p.name == name)
    }

    fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    fn managed_bridge(&self) -> Option<String> {
        self.networks
            .iter()
            .find(|n| n.managed && n.kind == "bridge")
            .map(|n| n.name.clone())
    }

    /// Whether the default profile has a device for which `f` holds.
    fn default_has(&self, f: impl Fn(&Strings) -> bool) -> bool {
        self.default_profile.devices.values().any(f)
    }

    /// The default profile with its root disk on `pool` and, when given, `eth0` on `network`.
    fn profile_with(&self, pool: Option<&str>, nic: Option<Strings>) -> ProfilesPost {
        let d = &self.default_profile;
        let mut devices = d.devices.clone();
        if let Some(pool) = pool {
            devices.retain(|_, dev| !is_root_disk(dev));
            devices.insert(
                "root".into(),
                strings(&[("path", "/"), ("pool", pool), ("type", "disk")]),
            );
        }
        if let Some(nic) = nic {
            devices.insert("eth0".into(), nic);
        }
        ProfilesPost {
            config: d.config.clone(),
            description: d.description.clone(),
            devices,
            name: "default".into(),
        }
    }
}

fn strings(kv: &[(&str, &str)]) -> Strings {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn is_root_disk(dev: &Strings) -> bool {
    dev.get("type").map(String::as_str) == Some("disk")
        && dev.get("path").map(String::as_str) == Some("/")
}

fn nic_on(network: &str) -> Strings {
    strings(&[("name", "eth0"), ("network", network), ("type", "nic")])
}

/// `core.https_address` from an address ("all" or empty: every address) and a port.
fn https_address(addr: &str, port: u16) -> Result<String, String> {
    let a = addr.trim();
    if a.is_empty() || a == "all" || a == "::" {
        return Ok(format!("[::]:{port}"));
    }
    match a
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
    {
        Ok(std::net::IpAddr::V6(v6)) => Ok(format!("[{v6}]:{port}")),
        Ok(std::net::IpAddr::V4(v4)) => Ok(format!("{v4}:{port}")),
        Err(_) => Err(format!("{a:?} is not an IP address (or \"all\")")),
    }
}

/// `--auto`: keep what exists, add what is missing (a pool, a bridge, the default profile's
/// root disk and eth0), set the network address and trust password when given.
pub async fn auto_preseed(client: &Client, a: &ServerInitArgs) -> Result<Preseed, CmdError> {
    let f = facts(client).await?;
    let mut p = Preseed::default();
    let pool_name = a.storage_pool.clone().unwrap_or_else(|| "default".into());
    let want_driver = match &a.storage_backend {
        Some(d) if !f.drivers.contains(d) => {
            return fail(format!(
                "The storage backend {d:?} is not available on this host (available: {})",
                f.drivers.join(", ")
            ))
        }
        Some(d) => Some(d.clone()),
        None if f.pool(&pool_name).is_none() => Some(f.best_driver()),
        None => None,
    };
    if let Some(dev) = &a.storage_create_device {
        if want_driver.as_deref() != Some("btrfs") {
            return fail(format!(
                "--storage-create-device {dev} needs a new btrfs pool (--storage-backend btrfs)"
            ));
        }
        if let Err(e) = check_block_device(dev) {
            return fail(format!("Invalid input: {e}"));
        }
    }
    if let Some(driver) = &want_driver {
        let mut config = Strings::new();
        if let (Some(g), "btrfs") = (a.storage_create_loop, driver.as_str()) {
            config.insert("size".into(), format!("{g}GiB"));
        }
        if let (Some(dev), "btrfs") = (&a.storage_create_device, driver.as_str()) {
            config.insert("source".into(), dev.clone());
        }
        p.storage_pools.push(StoragePoolsPost {
            config,
            description: String::new(),
            name: pool_name.clone(),
            driver: driver.clone(),
        });
    }
    let mut nic = None;
    if f.managed_bridge().is_none() {
        p.networks.push(InitNetworksProjectPost {
            config: strings(&[("ipv4.address", "auto"), ("ipv6.address", "auto")]),
            description: String::new(),
            name: "silobr0".into(),
            kind: "bridge".into(),
            project: "default".into(),
        });
        nic = Some(nic_on("silobr0"));
    }
    if f.default_has(|d| d.get("type").map(String::as_str) == Some("nic")) {
        nic = None;
    } else if nic.is_none() {
        nic = f.managed_bridge().map(|b| nic_on(&b));
    }
    let has_root = f.default_has(is_root_disk);
    let root_pool = (!has_root || a.storage_pool.is_some()).then_some(pool_name.as_str());
    if root_pool.is_some() || nic.is_some() {
        p.profiles.push(f.profile_with(root_pool, nic));
    }
    if let Some(addr) = &a.network_address {
        p.config.insert(
            "core.https_address".into(),
            Value::String(
                https_address(addr, a.network_port.unwrap_or(8443)).map_err(CmdError::Fail)?,
            ),
        );
    }
    if let Some(pw) = &a.trust_password {
        p.config
            .insert("core.trust_password".into(), Value::String(pw.clone()));
    }
    Ok(p)
}

/// Questions and answers on a terminal (or any reader and writer, for tests).
pub struct Asker<R: BufRead, W: Write> {
    input: R,
    output: W,
    /// Hide typed passwords (a real terminal on stdin).
    tty: bool,
}

impl<R: BufRead, W: Write> std::fmt::Debug for Asker<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Asker {{ tty: {} }}", self.tty)
    }
}

impl<R: BufRead, W: Write> Asker<R, W> {
    /// Wraps a reader and a writer.
    pub fn new(input: R, output: W, tty: bool) -> Self {
        Asker { input, output, tty }
    }

    fn line(&mut self) -> Result<String, CmdError> {
        let mut s = String::new();
        let n = self
            .input
            .read_line(&mut s)
            .map_err(|e| CmdError::Fail(format!("Reading the answer: {e}")))?;
        if n == 0 {
            return fail("No more input: silo init stopped before changing anything");
        }
        Ok(s.trim().to_string())
    }

    fn say(&mut self, s: &str) -> Result<(), CmdError> {
        self.output
            .write_all(s.as_bytes())
            .and_then(|_| self.output.flush())
            .map_err(|e| CmdError::Output(e.to_string()))
    }

    /// A yes/no question; asked again until the answer is one.
    pub fn ask_bool(&mut self, q: &str, default: bool) -> Result<bool, CmdError> {
        loop {
            let d = if default { "yes" } else { "no" };
            self.say(&format!("{q} (yes/no) [default={d}]: "))?;
            match self.line()?.to_ascii_lowercase().as_str() {
                "" => return Ok(default),
                "yes" | "y" => return Ok(true),
                "no" | "n" => return Ok(false),
                _ => self.say("Invalid input, try again.\n\n")?,
            }
        }
    }

    /// A question with a default; the answer is checked and asked again when refused.
    pub fn ask_string(
        &mut self,
        q: &str,
        default: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<String, CmdError> {
        loop {
            if default.is_empty() {
                self.say(&format!("{q}: "))?;
            } else {
                self.say(&format!("{q} [default={default}]: "))?;
            }
            let mut a = self.line()?;
            if a.is_empty() {
                a = default.to_string();
            }
            match check(&a) {
                Ok(()) => return Ok(a),
                Err(e) => self.say(&format!("Invalid input: {e}\n\n"))?,
            }
        }
    }

    /// A password, typed twice, hidden on a terminal.
    pub fn ask_password(&mut self, q: &str) -> Result<String, CmdError> {
        loop {
            self.say(&format!("{q}: "))?;
            let a = self.hidden_line()?;
            self.say("\nAgain: ")?;
            let b = self.hidden_line()?;
            self.say("\n")?;
            if a.is_empty() {
                self.say("Invalid input: the password must not be empty\n\n")?;
            } else if a == b {
                return Ok(a);
            } else {
                self.say("Passwords don't match, try again.\n\n")?;
            }
        }
    }

    fn hidden_line(&mut self) -> Result<String, CmdError> {
        if !self.tty {
            return self.line();
        }
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        let Ok(old) = tcgetattr(&stdin) else {
            return self.line();
        };
        let mut quiet = old.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
        let r = self.line();
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &old);
        r
    }
}

/// A size as LXD writes them ("2GiB", "500MB", "1073741824") in bytes.
fn size_bytes(s: &str) -> Option<u64> {
    silo_api::units::parse_bytes(s).ok()
}

fn check_port(s: &str) -> Result<(), String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{s:?} is not a port number (1 to 65535)")),
    }
}

fn check_size(s: &str) -> Result<(), String> {
    let n = s.trim_end_matches("GiB").trim_end_matches("GB");
    match n.parse::<u64>() {
        Ok(g) if g >= 1 => Ok(()),
        _ => Err(format!("{s:?} is not a size in GiB of at least 1")),
    }
}

/// A block device for a btrfs pool, as `lxd init` checks it: an absolute path to an existing
/// block device node. Whether silo may format it is the root policy's answer, given when the
/// pool is made.
fn check_block_device(s: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    if !s.starts_with("/dev/") {
        return Err(format!("{s:?} is not a device path beneath /dev"));
    }
    match std::fs::metadata(s) {
        Ok(m) if m.file_type().is_block_device() => Ok(()),
        Ok(_) => Err(format!("{s} is not a block device")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

/// The questions of `lxd init`, in its order, with silo's defaults; returns the preseed.
pub async fn interactive<R: BufRead, W: Write>(
    client: &Client,
    ask: &mut Asker<R, W>,
) -> Result<Preseed, CmdError> {
    let f = facts(client).await?;
    let mut p = Preseed::default();
    if let Some((cluster, address)) = ask_clustering(&f, ask)? {
        let joining = !cluster.cluster_token.is_empty();
        p.config
            .insert("core.https_address".into(), Value::String(address));
        p.cluster =
            Some(serde_json::to_value(&cluster).map_err(|e| CmdError::Output(e.to_string()))?);
        if joining {
            // A joiner takes the cluster's pools, networks and profiles.
            ask_print_preseed(ask, &p)?;
            return Ok(p);
        }
    }
    let pool = ask_storage_pool(&f, ask)?;
    let root_pool = pool.as_ref().map(|x| x.name.clone());
    p.storage_pools.extend(pool);
    ask_maas(ask)?;
    let (network, nic) = ask_network(&f, ask)?;
    p.networks.extend(network);
    // A cluster member is on the network already, at the address it gave.
    if p.cluster.is_none() {
        p.config.extend(ask_remote_access(ask)?);
    }
    p.config.extend(ask_image_updates(ask)?);
    if root_pool.is_some() || nic.is_some() {
        p.profiles.push(f.profile_with(root_pool.as_deref(), nic));
    }
    ask_print_preseed(ask, &p)?;
    Ok(p)
}

/// Clustering, as `lxd init` asks: the member's name and address, then a join token or a
/// new cluster. Answers the cluster section and the API address.
fn ask_clustering<R: BufRead, W: Write>(
    f: &Facts,
    ask: &mut Asker<R, W>,
) -> Result<Option<(silo_api::ClusterPut, String)>, CmdError> {
    if !ask.ask_bool("Would you like to use silo clustering?", false)? {
        return Ok(None);
    }
    let name = ask.ask_string(
        "What member name should be used to identify this server in the cluster?",
        &f.server_name,
        |n| {
            if n.is_empty() {
                Err("a name is needed".into())
            } else {
                Ok(())
            }
        },
    )?;
    let ip = ask.ask_string(
        "What IP address or DNS name should be used to reach this server?",
        "",
        |a| {
            if a.is_empty() {
                Err("an address is needed".into())
            } else {
                Ok(())
            }
        },
    )?;
    let address = if ip.contains(':') && !ip.starts_with('[') && ip.matches(':').count() == 1 {
        ip
    } else {
        format!("{ip}:8443")
    };
    let mut c = silo_api::ClusterPut {
        server_name: name,
        enabled: true,
        server_address: address.clone(),
        ..Default::default()
    };
    if ask.ask_bool("Are you joining an existing cluster?", false)? {
        let token = ask.ask_string("Please provide join token:", "", |t| {
            silo_api::ClusterMemberJoinToken::decode(t).map(|_| ())
        })?;
        if !ask.ask_bool(
            "All existing data is lost when joining a cluster, continue?",
            false,
        )? {
            return fail("Joining the cluster was cancelled");
        }
        c.cluster_token = token;
    }
    Ok(Some((c, address)))
}

/// A pool name as silod takes it.
fn check_pool_name(f: &Facts, n: &str) -> Result<(), String> {
    if n.is_empty()
        || n.len() > 64
        || n.starts_with(['.', '-'])
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{n:?} is not a valid pool name (letters, digits, '-', '_', '.')"
        ));
    }
    let profiles = paths::profiles();
    match f.pool(n) {
        Some(p)
            if p.used_by
                .iter()
                .any(|u| paths::name_under(u, &profiles).is_none()) =>
        {
            Err(format!(
                "the storage pool {n:?} already exists and is in use; choose another name"
            ))
        }
        _ => Ok(()),
    }
}

/// A new storage pool: its name, backend, and for btrfs its device or loop file's size.
fn ask_storage_pool<R: BufRead, W: Write>(
    f: &Facts,
    ask: &mut Asker<R, W>,
) -> Result<Option<StoragePoolsPost>, CmdError> {
    if !ask.ask_bool("Do you want to configure a new storage pool?", true)? {
        return Ok(None);
    }
    let name = ask.ask_string("Name of the new storage pool", "default", |n| {
        check_pool_name(f, n)
    })?;
    let drivers = f.drivers.join(", ");
    let driver = ask.ask_string(
        &format!("Name of the storage backend to use ({drivers})"),
        &f.best_driver(),
        |d| {
            if f.drivers.iter().any(|x| x == d) {
                Ok(())
            } else {
                Err(format!("{d:?} is not one of {drivers}"))
            }
        },
    )?;
    let mut config = Strings::new();
    if driver == "btrfs" {
        if ask.ask_bool(
            "Would you like to use an existing empty block device (e.g. a disk or partition)?",
            false,
        )? {
            let dev =
                ask.ask_string("Path to the existing block device", "", check_block_device)?;
            config.insert("source".into(), dev);
        } else {
            let size = ask.ask_string(
                "Size in GiB of the new loop device (1GiB minimum)",
                "5GiB",
                check_size,
            )?;
            let g = size.trim_end_matches("GiB").trim_end_matches("GB");
            config.insert("size".into(), format!("{g}GiB"));
        }
    }
    Ok(Some(StoragePoolsPost {
        config,
        description: String::new(),
        name,
        driver,
    }))
}

/// MAAS: not in silo.
fn ask_maas<R: BufRead, W: Write>(ask: &mut Asker<R, W>) -> Result<(), CmdError> {
    if ask.ask_bool("Would you like to connect to a MAAS server?", false)? {
        ask.say("MAAS is not supported by silo; continuing without it.\n")?;
    }
    Ok(())
}

/// A new bridge, or an existing host interface: the network to make (if any) and the default
/// profile's `eth0` (if any).
fn ask_network<R: BufRead, W: Write>(
    f: &Facts,
    ask: &mut Asker<R, W>,
) -> Result<(Option<InitNetworksProjectPost>, Option<Strings>), CmdError> {
    if ask.ask_bool("Would you like to create a new local network bridge?", true)? {
        let name = ask.ask_string("What should the new bridge be called?", "silobr0", |n| {
            check_ifname(n)?;
            match f.network(n) {
                Some(x) if !x.managed => Err(format!(
                    "the interface {n:?} already exists on the host; choose another name"
                )),
                _ => Ok(()),
            }
        })?;
        let v4 = ask.ask_string(
            "What IPv4 address should be used? (CIDR subnet notation, “auto” or “none”)",
            "auto",
            |v| check_cidr(v, 4),
        )?;
        let v6 = ask.ask_string(
            "What IPv6 address should be used? (CIDR subnet notation, “auto” or “none”)",
            "auto",
            |v| check_cidr(v, 6),
        )?;
        let nic = nic_on(&name);
        let network = InitNetworksProjectPost {
            config: strings(&[("ipv4.address", &v4), ("ipv6.address", &v6)]),
            description: String::new(),
            name,
            kind: "bridge".into(),
            project: "default".into(),
        };
        return Ok((Some(network), Some(nic)));
    }
    if !ask.ask_bool(
        "Would you like to configure silo to use an existing bridge or host interface?",
        false,
    )? {
        return Ok((None, None));
    }
    let parent = ask.ask_string("Name of the existing bridge or host interface", "", |n| {
        check_ifname(n)?;
        if f.network(n).is_some() {
            Ok(())
        } else {
            Err(format!("there is no interface {n:?} on this host"))
        }
    })?;
    let existing = f.network(&parent);
    let bridge = existing.is_some_and(|x| x.kind == "bridge");
    let mut d = strings(&[("name", "eth0"), ("type", "nic")]);
    if bridge && existing.is_some_and(|x| x.managed) {
        d.insert("network".into(), parent);
    } else {
        d.insert(
            "nictype".into(),
            if bridge { "bridged" } else { "macvlan" }.into(),
        );
        d.insert("parent".into(), parent);
    }
    Ok((None, Some(d)))
}

/// The API over the network: address, port and trust password, as server configuration.
fn ask_remote_access<R: BufRead, W: Write>(
    ask: &mut Asker<R, W>,
) -> Result<BTreeMap<String, Value>, CmdError> {
    let mut config = BTreeMap::new();
    if !ask.ask_bool(
        "Would you like the silo server to be available over the network?",
        false,
    )? {
        return Ok(config);
    }
    let addr = ask.ask_string("Address to bind silo to (not including port)", "all", |a| {
        https_address(a, 8443).map(|_| ())
    })?;
    let port = ask.ask_string("Port to bind silo to", "8443", check_port)?;
    let port: u16 = port.parse().unwrap_or(8443);
    config.insert(
        "core.https_address".into(),
        Value::String(https_address(&addr, port).map_err(CmdError::Fail)?),
    );
    let pw = ask.ask_password("Trust password for new clients")?;
    config.insert("core.trust_password".into(), Value::String(pw));
    Ok(config)
}

/// Automatic image updates (LXD's default: on).
fn ask_image_updates<R: BufRead, W: Write>(
    ask: &mut Asker<R, W>,
) -> Result<BTreeMap<String, Value>, CmdError> {
    let mut config = BTreeMap::new();
    if !ask.ask_bool(
        "Would you like stale cached images to be updated automatically?",
        true,
    )? {
        config.insert(
            "images.auto_update_interval".into(),
            Value::String("0".into()),
        );
    }
    Ok(config)
}

/// The answers as a preseed, the password hidden.
fn ask_print_preseed<R: BufRead, W: Write>(
    ask: &mut Asker<R, W>,
    p: &Preseed,
) -> Result<(), CmdError> {
    if ask.ask_bool(
        "Would you like a YAML \"silo init\" preseed to be printed?",
        false,
    )? {
        let mut shown = p.clone();
        if let Some(pw) = shown.config.get_mut("core.trust_password") {
            *pw = Value::String("(hidden)".into());
        }
        ask.say(&to_yaml(&shown)?)?;
    }
    Ok(())
}

/// `silo init` (no image), `--auto`, `--preseed`, `--dump`.
pub async fn run(client: &Client, a: &ServerInitArgs) -> Result<(), CmdError> {
    if a.dump {
        return util::out(&to_yaml(&dump(client).await?)?);
    }
    let p = if a.preseed {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| CmdError::Fail(format!("Reading the preseed from stdin: {e}")))?;
        parse_preseed(&text)?
    } else if a.auto {
        auto_preseed(client, a).await?
    } else {
        let tty = std::io::stdin().is_terminal();
        let stdin = std::io::stdin();
        let mut ask = Asker::new(stdin.lock(), std::io::stdout(), tty);
        interactive(client, &mut ask).await?
    };
    let done = apply(client, &p).await?;
    if done.is_empty() {
        util::outln("Nothing to change: the server already has this setup.")
    } else {
        util::outln(&format!("Set up: {}.", done.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preseeds_parse_as_lxd_writes_them() {
        let p = parse_preseed(
            "config:\n  images.auto_update_interval: 0\nnetworks:\n- name: silobr0\n  type: bridge\n  config:\n    ipv4.address: auto\n    ipv6.address: none\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root: {path: /, pool: default, type: disk}\ncluster: null\n",
        )
        .expect("parse");
        assert_eq!(p.config["images.auto_update_interval"], "0");
        assert_eq!(p.networks[0].config["ipv6.address"], "none");
        assert_eq!(p.profiles[0].devices["root"]["pool"], "default");
        assert!(check_preseed(&p).is_ok());
        let back = parse_preseed(&to_yaml(&p).expect("yaml")).expect("again");
        assert_eq!(back, p);
    }

    #[test]
    fn bad_preseeds_are_refused_before_anything_changes() {
        let e = parse_preseed("bogus: 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = parse_preseed("networks:\n- name: b\n  colour: red\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        for (text, want) in [
            (
                "networks:\n- name: br0\n  config:\n    ipv4.address: 10.0.0.1/33\n",
                "prefix",
            ),
            (
                "networks:\n- name: br0\n  config:\n    ipv4.address: banana\n",
                "banana",
            ),
            ("networks:\n- name: way-too-long-name0\n", "at most 15"),
            ("cluster:\n  enabled: true\n", "server_name"),
            (
                "cluster:\n  enabled: true\n  server_name: m2\n  cluster_token: nope\n",
                "cluster_token",
            ),
            ("projects:\n- name: other\n", "Projects"),
            ("storage_pools:\n- name: p\n", "no driver"),
        ] {
            let p = parse_preseed(text).expect("parses");
            let e = check_preseed(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn asker_repeats_questions_on_bad_answers() {
        let input = b"maybe\nyes\n\nwho?\n8443\n" as &[u8];
        let mut out = Vec::new();
        let mut a = Asker::new(input, &mut out, false);
        assert!(a.ask_bool("Q?", false).expect("bool"));
        assert!(!a.ask_bool("R?", false).expect("default"));
        assert_eq!(a.ask_string("Port", "1", check_port).expect("port"), "8443");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text.matches("Q? (yes/no) [default=no]: ").count(),
            2,
            "{text}"
        );
        assert!(text.contains("Invalid input, try again."), "{text}");
        assert!(
            text.contains("Invalid input: \"who?\" is not a port"),
            "{text}"
        );
        let mut out = Vec::new();
        let mut a = Asker::new(b"" as &[u8], &mut out, false);
        assert!(a
            .ask_bool("Q?", true)
            .unwrap_err()
            .to_string()
            .contains("No more input"));
    }

    #[test]
    fn addresses_and_sizes() {
        assert_eq!(https_address("all", 8443).expect("a"), "[::]:8443");
        assert_eq!(https_address("10.0.0.1", 9000).expect("a"), "10.0.0.1:9000");
        assert_eq!(https_address("::1", 8443).expect("a"), "[::1]:8443");
        assert!(https_address("example.com", 8443).is_err());
        assert!(check_size("5GiB").is_ok() && check_size("7").is_ok());
        assert!(check_size("0").is_err() && check_size("big").is_err());
        assert_eq!(size_bytes("2GiB"), size_bytes("2147483648"));
        assert_eq!(size_bytes("1GB"), Some(1_000_000_000));
        assert_eq!(size_bytes("2 parsecs"), None);
        assert!(check_ifname("br0").is_ok() && check_ifname("way-too-long-name0").is_err());
        assert!(check_cidr("fd42::1/64", 6).is_ok() && check_cidr("fd42::1/64", 4).is_err());
    }
}
