//! Remotes as LXD's client keeps them: `config.yml` in `$SILO_CONF` (else `~/.config/silo`),
//! the client keypair beside it, server certificates pinned in `servercerts/NAME.crt`;
//! `remote:name` parsing, connecting to a remote, and `silo remote ...`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::client::{socket_path, Client, HttpsTarget};
use crate::commands::CmdError;
use crate::format;
use crate::tls::{self, Trust};
use crate::util::out;

/// LXD's default HTTPS port, used when an address has none.
pub const DEFAULT_PORT: u16 = 8443;

/// One remote as `config.yml` has it (LXD's field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    /// `unix://` (this machine's silod), `unix:///path`, or `https://host:port`.
    pub addr: String,
    /// `tls` for private `lxd` remotes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_type: String,
    /// The project (kept for LXD's layout; silo has none yet).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    /// `lxd` or `simplestreams` (empty means `lxd`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// An image server readable without trust.
    #[serde(default)]
    pub public: bool,
    /// Built in: cannot be removed, renamed or changed.
    #[serde(skip)]
    pub is_static: bool,
    /// From a system-wide configuration (silo has none: always false).
    #[serde(skip)]
    pub global: bool,
}

impl Remote {
    /// The protocol, `lxd` when unset.
    pub fn protocol(&self) -> &str {
        if self.protocol.is_empty() {
            "lxd"
        } else {
            &self.protocol
        }
    }

    /// The authentication column as `lxc remote list` words it.
    pub fn auth_label(&self) -> String {
        if !self.auth_type.is_empty() {
            self.auth_type.clone()
        } else if self.addr.starts_with("unix:") {
            "file access".into()
        } else if self.protocol() == "simplestreams" {
            "none".into()
        } else {
            "tls".into()
        }
    }

    fn simplestreams(addr: &str, is_static: bool) -> Remote {
        Remote {
            addr: addr.into(),
            protocol: "simplestreams".into(),
            public: true,
            is_static,
            ..Default::default()
        }
    }
}

/// The remotes LXD's client cannot lose: always present, never removed, renamed or changed.
pub fn static_remotes() -> BTreeMap<String, Remote> {
    BTreeMap::from([
        (
            "local".to_string(),
            Remote {
                addr: "unix://".into(),
                is_static: true,
                ..Default::default()
            },
        ),
        (
            "ubuntu".to_string(),
            Remote::simplestreams("https://cloud-images.ubuntu.com/releases", true),
        ),
        (
            "ubuntu-daily".to_string(),
            Remote::simplestreams("https://cloud-images.ubuntu.com/daily", true),
        ),
    ])
}

/// The remotes of a new configuration: the static ones plus `images` (which, as in LXD 5.0,
/// a user may remove).
pub fn default_remotes() -> BTreeMap<String, Remote> {
    let mut r = static_remotes();
    r.insert(
        "images".into(),
        Remote::simplestreams("https://images.linuxcontainers.org", false),
    );
    r
}

/// Errors about the client's configuration, one line each.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The file could not be read or written.
    #[error("{path}: {msg}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        msg: String,
    },
    /// `remote:` names a remote that does not exist.
    #[error("The remote \"{0}\" doesn't exist")]
    NoRemote(String),
    /// The command cannot do that with this remote.
    #[error("{0}")]
    Refused(String),
}

impl From<ConfError> for CmdError {
    fn from(e: ConfError) -> CmdError {
        CmdError::Fail(e.to_string())
    }
}

/// `config.yml` as LXD's client writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// The remote used for names without `remote:`.
    #[serde(rename = "default-remote", default)]
    pub default_remote: String,
    /// Remotes by name.
    #[serde(default)]
    pub remotes: BTreeMap<String, Remote>,
    /// Command aliases (kept, not used by silo).
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

/// The client's configuration and where it lives.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory (`$SILO_CONF` or `~/.config/silo`).
    pub dir: PathBuf,
    /// What config.yml says, with the static remotes applied.
    pub file: ConfigFile,
}

/// The configuration directory: `$SILO_CONF`, else `$HOME/.config/silo`.
pub fn conf_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SILO_CONF").filter(|s| !s.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".config").join("silo")
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ConfError {
    ConfError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

impl ConfigFile {
    /// Parses config.yml text and applies LXD's load rules: private remotes without an
    /// auth type use `tls`, the static remotes are always there (keeping a project set on
    /// them), and an empty default remote is `local`.
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        let mut c: ConfigFile = if text.trim().is_empty() {
            ConfigFile::default()
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())?
        };
        for r in c.remotes.values_mut() {
            if !r.public && r.auth_type.is_empty() {
                r.auth_type = "tls".into();
            }
        }
        for (k, mut v) in static_remotes() {
            if let Some(old) = c.remotes.get(&k) {
                v.project = old.project.clone();
            }
            c.remotes.insert(k, v);
        }
        if c.default_remote.is_empty() {
            c.default_remote = "local".into();
        }
        Ok(c)
    }

    /// The YAML written back: the static remotes left out, except `local`, as LXD does.
    pub fn render(&self) -> Result<String, String> {
        let mut c = self.clone();
        for k in static_remotes().keys() {
            if k != "local" {
                c.remotes.remove(k);
            }
        }
        serde_norway::to_string(&c).map_err(|e| e.to_string())
    }

    /// Splits `[remote:]name` as LXD does: no colon means the default remote; a prefix
    /// that is not a remote is an error.
    pub fn parse_remote<'a>(&self, raw: &'a str) -> Result<(String, &'a str), ConfError> {
        match raw.split_once(':') {
            None => Ok((self.default_remote.clone(), raw)),
            Some((r, rest)) => {
                if self.remotes.contains_key(r) {
                    Ok((r.to_string(), rest))
                } else {
                    Err(ConfError::NoRemote(r.to_string()))
                }
            }
        }
    }
}

impl Config {
    /// Loads `config.yml` from [`conf_dir`]; a missing file gives LXD's defaults.
    pub fn load() -> Result<Config, ConfError> {
        Config::load_from(conf_dir())
    }

    /// Loads from `dir`.
    pub fn load_from(dir: PathBuf) -> Result<Config, ConfError> {
        let path = dir.join("config.yml");
        let mut file = match std::fs::read_to_string(&path) {
            Ok(text) => ConfigFile::parse(&text).map_err(|e| io_err(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile {
                default_remote: "local".into(),
                remotes: default_remotes(),
                aliases: BTreeMap::new(),
            },
            Err(e) => return Err(io_err(&path, e)),
        };
        // Like LXC_REMOTE for lxc: the environment overrides the default remote.
        if let Some(r) = std::env::var("SILO_REMOTE").ok().filter(|s| !s.is_empty()) {
            file.default_remote = r;
        }
        Ok(Config { dir, file })
    }

    /// Writes `config.yml` (through a temporary file, so a crash never leaves half of it).
    pub fn save(&self) -> Result<(), ConfError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let path = self.dir.join("config.yml");
        let text = self.file.render().map_err(|e| io_err(&path, e))?;
        let tmp = self.dir.join(".config.yml.tmp");
        std::fs::write(&tmp, text).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))
    }

    /// `servercerts/NAME.crt`.
    pub fn server_cert_path(&self, remote: &str) -> PathBuf {
        self.dir.join("servercerts").join(format!("{remote}.crt"))
    }

    fn client_paths(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.crt"), self.dir.join("client.key"))
    }

    /// The client keypair, made at first use (key mode 0600).
    pub fn client_identity(&self) -> Result<tls::Identity, CmdError> {
        let (crt, key) = self.client_paths();
        if !crt.exists() || !key.exists() {
            eprintln!("Generating a client certificate. This may take a minute...");
            let (c, k) = tls::generate_client_cert().map_err(|e| CmdError::Fail(e.to_string()))?;
            std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
            write_private(&key, k.as_bytes())?;
            std::fs::write(&crt, c).map_err(|e| io_err(&crt, e))?;
        }
        tls::Identity::load(&crt, &key).map_err(|e| CmdError::Fail(e.to_string()))
    }

    /// The remote called `name`.
    pub fn remote(&self, name: &str) -> Result<&Remote, ConfError> {
        self.file
            .remotes
            .get(name)
            .ok_or_else(|| ConfError::NoRemote(name.to_string()))
    }

    /// Splits `[remote:]name`.
    pub fn parse_remote<'a>(&self, raw: &'a str) -> Result<(String, &'a str), ConfError> {
        self.file.parse_remote(raw)
    }

    /// The pinned certificate of `remote` (PEM text), if any.
    pub fn pinned_pem(&self, remote: &str) -> Option<String> {
        std::fs::read_to_string(self.server_cert_path(remote)).ok()
    }

    /// A client for `remote` as an instance server: refused for image-only remotes.
    pub fn instance_client(&self, remote: &str) -> Result<Client, CmdError> {
        let r = self.remote(remote)?;
        if r.protocol() == "simplestreams" {
            return Err(CmdError::Fail(format!(
                "remote {remote} is a simplestreams image server ({}): it has no instances, \
                 profiles, networks or storage; use it only as an image source, e.g. \
                 `silo launch {remote}:IMAGE NAME`",
                r.addr
            )));
        }
        self.client(remote)
    }

    /// A client for `remote` over its transport, with its certificate checks.
    pub fn client(&self, remote: &str) -> Result<Client, CmdError> {
        let r = self.remote(remote)?.clone();
        if let Some(rest) = r.addr.strip_prefix("unix:") {
            let path = rest.trim_start_matches("//");
            return Ok(Client::new(if path.is_empty() {
                socket_path()
            } else {
                PathBuf::from(path)
            }));
        }
        let (host, port) = parse_https(&r.addr).map_err(CmdError::Fail)?;
        let (trust, pinned) = self.server_trust(remote)?;
        // A public image server needs no client certificate; a private one gets ours.
        let identity = if r.public && r.protocol() == "simplestreams" {
            None
        } else if r.public {
            self.existing_identity()
        } else {
            Some(self.client_identity()?)
        };
        self.https_client(remote, host, port, trust, identity.as_ref(), pinned)
    }

    /// A client for the web server of simplestreams `remote` and the path its tree is under
    /// (`/releases`, or empty). Its certificate must chain to the system's CA store (or be
    /// the one pinned, if the user pinned one); no client certificate is presented. An
    /// address without a port is port 443 (a web server's, not the API's 8443).
    pub fn simplestreams_client(&self, remote: &str) -> Result<(Client, String), CmdError> {
        let r = self.remote(remote)?;
        let (host, port, path) = split_simplestreams_url(&r.addr)
            .map_err(|e| CmdError::Fail(format!("remote {remote}: {e}")))?;
        let (trust, pinned) = self.server_trust(remote)?;
        let client = self.https_client(remote, host, port, trust, None, pinned)?;
        Ok((client, path))
    }

    /// How `remote`'s server certificate is checked: its pinned certificate when there is
    /// one (and that certificate's fingerprint, for the error if it changed), else the
    /// system's CA store.
    fn server_trust(&self, remote: &str) -> Result<(Trust, Option<String>), CmdError> {
        let pin_path = self.server_cert_path(remote);
        match std::fs::read(&pin_path) {
            Ok(pem) => {
                let der = tls::cert_from_pem(&pem, &pin_path.display().to_string())
                    .map_err(|e| CmdError::Fail(e.to_string()))?;
                let fp = tls::fingerprint(&der);
                Ok((Trust::Pinned(der), Some(fp)))
            }
            Err(_) => Ok((Trust::SystemCa, None)),
        }
    }

    fn existing_identity(&self) -> Option<tls::Identity> {
        let (crt, key) = self.client_paths();
        tls::Identity::load(&crt, &key).ok()
    }

    fn https_client(
        &self,
        remote: &str,
        host: String,
        port: u16,
        trust: Trust,
        identity: Option<&tls::Identity>,
        pinned: Option<String>,
    ) -> Result<Client, CmdError> {
        let seen = Arc::default();
        let tls = tls::client_config(trust, identity, Arc::clone(&seen))
            .map_err(|e| CmdError::Fail(e.to_string()))?;
        Ok(Client::https(HttpsTarget {
            remote: remote.to_string(),
            host,
            port,
            tls,
            seen,
            pinned,
        }))
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), ConfError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(data).map_err(|e| io_err(path, e))
}

/// A simplestreams URL as (host, port, path of the tree): the port is 443 unless given (a
/// web server's, not the API's 8443), the path has no trailing '/' (empty at the root).
pub fn split_simplestreams_url(addr: &str) -> Result<(String, u16, String), String> {
    let rest = addr
        .strip_prefix("https://")
        .ok_or_else(|| format!("{addr:?} is not an https:// address"))?;
    let (hostport, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    let has_port = match hostport.rsplit_once(']') {
        Some((_, tail)) => tail.starts_with(':'),
        None => hostport.contains(':'),
    };
    let with_port = if has_port {
        format!("https://{hostport}")
    } else {
        format!("https://{hostport}:443")
    };
    let (host, port) = parse_https(&with_port)?;
    Ok((host, port, path))
}

/// `https://host[:port][/...]` as (host, port); an IPv6 host keeps its brackets.
pub fn parse_https(addr: &str) -> Result<(String, u16), String> {
    let rest = addr
        .strip_prefix("https://")
        .ok_or_else(|| format!("{addr:?} is not an https:// address"))?;
    let hostport = rest.split('/').next().unwrap_or("");
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, tail) = v6
            .split_once(']')
            .ok_or_else(|| format!("{addr:?}: unclosed [ in the host"))?;
        (format!("[{h}]"), tail.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("{addr:?} has no host"));
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p.parse().map_err(|_| format!("{addr:?}: bad port {p:?}"))?,
    };
    Ok((host, port))
}

/// An address as `lxc remote add` normalises it: a scheme (`https` unless it is a path),
/// and the default port.
pub fn normalize_addr(addr: &str) -> Result<String, String> {
    if let Some(rest) = addr.strip_prefix("unix:") {
        return Ok(format!("unix://{}", rest.trim_start_matches("//")));
    }
    if addr.starts_with('/') {
        return Ok(format!("unix://{addr}"));
    }
    let with_scheme = match addr.split_once("://") {
        Some(("https", _)) => addr.to_string(),
        Some((scheme, _)) => return Err(format!("Invalid URL scheme \"{scheme}\" in \"{addr}\"")),
        None => {
            // A bare IPv6 address gets brackets before a port is added.
            if addr.matches(':').count() > 1 && !addr.starts_with('[') {
                format!("https://[{addr}]")
            } else {
                format!("https://{addr}")
            }
        }
    };
    let (host, port) = parse_https(&with_scheme)?;
    Ok(format!("https://{host}:{port}"))
}

/// LXD's `certificate_token`: base64 of this JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CertificateToken {
    /// The name the server will give our certificate.
    #[serde(default)]
    pub client_name: String,
    /// The server certificate's fingerprint.
    pub fingerprint: String,
    /// `host:port` addresses of the server.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The one-time secret.
    pub secret: String,
    /// When it expires (RFC 3339), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl CertificateToken {
    /// Decodes a token (standard or URL-safe base64, padded or not); `None` when `s` is not
    /// one (an address, most likely).
    pub fn decode(s: &str) -> Option<CertificateToken> {
        use base64::Engine;
        let s = s.trim();
        if s.contains("://") || s.contains('/') && !s.contains('=') && s.len() < 40 {
            return None;
        }
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let bytes = engines.iter().find_map(|e| e.decode(s).ok())?;
        let t: CertificateToken = serde_json::from_slice(&bytes).ok()?;
        (!t.secret.is_empty() && !t.fingerprint.is_empty()).then_some(t)
    }
}

/// `silo remote ...`.
#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Add a remote server (an address or a trust token from `config trust add`).
    Add(AddArgs),
    /// List the remotes.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: format::Format,
    },
    /// Remove a remote.
    #[command(alias = "rm")]
    Remove {
        /// The remote.
        name: String,
    },
    /// Rename a remote.
    #[command(alias = "mv")]
    Rename {
        /// The remote.
        name: String,
        /// Its new name.
        new_name: String,
    },
    /// Change a remote's address.
    SetUrl {
        /// The remote.
        name: String,
        /// The new address.
        url: String,
    },
    /// Make a remote the default one.
    Switch {
        /// The remote.
        name: String,
    },
    /// Show the default remote.
    GetDefault,
}

/// `silo remote add`'s arguments.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The new remote's name.
    pub name: String,
    /// `https://host[:port]`, `host[:port]`, a unix socket path, or a trust token.
    pub addr: Option<String>,
    /// The server's trust password (asked on stdin when needed and not given).
    #[arg(long)]
    pub password: Option<String>,
    /// Accept the server's certificate without asking.
    #[arg(long)]
    pub accept_certificate: bool,
    /// `lxd` or `simplestreams`.
    #[arg(long, default_value = "lxd")]
    pub protocol: String,
    /// A public image server: no trust needed.
    #[arg(long)]
    pub public: bool,
    /// How to authenticate (only `tls`).
    #[arg(long, default_value = "tls")]
    pub auth_type: String,
}

/// Runs `silo remote ...`.
pub async fn run(cmd: RemoteCmd) -> Result<(), CmdError> {
    let mut conf = Config::load()?;
    match cmd {
        RemoteCmd::Add(a) => add(&mut conf, a).await,
        RemoteCmd::List { format } => list(&conf, format),
        RemoteCmd::Remove { name } => remove(&mut conf, &name),
        RemoteCmd::Rename { name, new_name } => rename(&mut conf, &name, &new_name),
        RemoteCmd::SetUrl { name, url } => set_url(&mut conf, &name, &url),
        RemoteCmd::Switch { name } => {
            conf.remote(&name)?;
            conf.file.default_remote = name;
            conf.save().map_err(Into::into)
        }
        RemoteCmd::GetDefault => out(&format!("{}\n", conf.file.default_remote)),
    }
}

fn list(conf: &Config, fmt: format::Format) -> Result<(), CmdError> {
    let yes = |b: bool| if b { "YES" } else { "NO" }.to_string();
    let rows: Vec<Vec<String>> = conf
        .file
        .remotes
        .iter()
        .map(|(name, r)| {
            let shown = if *name == conf.file.default_remote {
                format!("{name} (current)")
            } else {
                name.clone()
            };
            vec![
                shown,
                r.addr.clone(),
                r.protocol().to_string(),
                r.auth_label(),
                yes(r.public),
                yes(r.is_static),
                yes(r.global),
            ]
        })
        .collect();
    let raw =
        serde_json::to_value(&conf.file.remotes).map_err(|e| CmdError::Output(e.to_string()))?;
    let text = format::render(
        fmt,
        &[
            "NAME",
            "URL",
            "PROTOCOL",
            "AUTH TYPE",
            "PUBLIC",
            "STATIC",
            "GLOBAL",
        ],
        &rows,
        &raw,
    )
    .map_err(CmdError::Output)?;
    out(&text)
}

fn modifiable<'a>(conf: &'a Config, name: &str) -> Result<&'a Remote, ConfError> {
    let r = conf
        .file
        .remotes
        .get(name)
        .ok_or_else(|| ConfError::Refused(format!("Remote {name} doesn't exist")))?;
    if r.is_static {
        return Err(ConfError::Refused(format!(
            "Remote {name} is static and cannot be modified"
        )));
    }
    Ok(r)
}

fn remove(conf: &mut Config, name: &str) -> Result<(), CmdError> {
    modifiable(conf, name)?;
    if conf.file.default_remote == name {
        return Err(CmdError::Fail("Can't remove the default remote".into()));
    }
    conf.file.remotes.remove(name);
    conf.save()?;
    let _ = std::fs::remove_file(conf.server_cert_path(name));
    Ok(())
}

fn rename(conf: &mut Config, name: &str, new_name: &str) -> Result<(), CmdError> {
    let r = modifiable(conf, name)?.clone();
    if new_name.contains(':') || new_name.is_empty() {
        return Err(CmdError::Fail("Remote names may not contain colons".into()));
    }
    if conf.file.remotes.contains_key(new_name) {
        return Err(CmdError::Fail(format!("Remote {new_name} already exists")));
    }
    let (old_pin, new_pin) = (conf.server_cert_path(name), conf.server_cert_path(new_name));
    if old_pin.exists() {
        std::fs::rename(&old_pin, &new_pin).map_err(|e| io_err(&old_pin, e))?;
    }
    conf.file.remotes.remove(name);
    conf.file.remotes.insert(new_name.to_string(), r);
    if conf.file.default_remote == name {
        conf.file.default_remote = new_name.to_string();
    }
    conf.save().map_err(Into::into)
}

fn set_url(conf: &mut Config, name: &str, url: &str) -> Result<(), CmdError> {
    let r = modifiable(conf, name)?.clone();
    let addr = if r.protocol() == "simplestreams" {
        url.to_string()
    } else {
        normalize_addr(url).map_err(CmdError::Fail)?
    };
    conf.file
        .remotes
        .insert(name.to_string(), Remote { addr, ..r });
    conf.save().map_err(Into::into)
}

/// Removes a pinned certificate this `remote add` wrote unless disarmed: a failed add leaves
/// nothing behind.
struct PinGuard {
    path: Option<PathBuf>,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn read_line(prompt: &str) -> Result<String, CmdError> {
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CmdError::Fail(format!("reading stdin: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

async fn add(conf: &mut Config, a: AddArgs) -> Result<(), CmdError> {
    let name = a.name.clone();
    let addr = a.addr.clone().unwrap_or_else(|| name.clone());
    if addr.is_empty() {
        return Err(CmdError::Fail("Remote address must not be empty".into()));
    }
    if name.contains(':') {
        return Err(CmdError::Fail("Remote names may not contain colons".into()));
    }
    if let Some(r) = conf.file.remotes.get(&name) {
        return Err(CmdError::Fail(format!(
            "Remote {name} exists as <{}>",
            r.addr
        )));
    }
    if a.auth_type != "tls" {
        return Err(CmdError::Fail(format!(
            "Authentication type '{}' not supported: only tls",
            a.auth_type
        )));
    }
    if let Some(token) = CertificateToken::decode(&addr) {
        return add_token(conf, &name, &addr, &token).await;
    }
    match a.protocol.as_str() {
        "simplestreams" => {
            if !addr.starts_with("https://") {
                return Err(CmdError::Fail(
                    "Only https URLs are supported for simplestreams".into(),
                ));
            }
            conf.file
                .remotes
                .insert(name.clone(), Remote::simplestreams(&addr, false));
            // lxc adds a simplestreams remote without contacting it (a machine may be set up
            // before it has a network), so silo keeps it too; a typo or an untrusted server
            // is said now as a warning rather than at the first `image list`.
            if let Err(e) = crate::simplestreams::check_remote(conf, &name).await {
                eprintln!(
                    "Warning: remote {name} added, but its image index cannot be read now: {e}"
                );
            }
            return conf.save().map_err(Into::into);
        }
        "lxd" => {}
        p => return Err(CmdError::Fail(format!("Invalid protocol: {p}"))),
    }
    let addr = normalize_addr(&addr).map_err(CmdError::Fail)?;
    if addr.starts_with("unix:") {
        let r = Remote {
            addr,
            auth_type: "tls".into(),
            protocol: "lxd".into(),
            ..Default::default()
        };
        conf.file.remotes.insert(name.clone(), r);
        conf.client(&name)?.server().await?;
        return conf.save().map_err(Into::into);
    }
    let (host, port) = parse_https(&addr).map_err(CmdError::Fail)?;
    let identity = if a.public {
        None
    } else {
        Some(conf.client_identity()?)
    };

    // Fetch the certificate first: either the system's CAs vouch for it, or the user does.
    let probe = conf.https_client(&name, host.clone(), port, Trust::Capture, None, None)?;
    let der = probe.peer_certificate().await?;
    let mut guard = PinGuard { path: None };
    let (trust, pinned) = if tls::signed_by_system_ca(&der, &host) {
        (Trust::SystemCa, None)
    } else {
        let digest = tls::fingerprint(&der);
        if !a.accept_certificate {
            println!("Certificate fingerprint: {digest}");
            let line = read_line("ok (y/n/[fingerprint])? ")?;
            if line != digest {
                match line.chars().next().map(|c| c.to_ascii_lowercase()) {
                    Some('y') => {}
                    None | Some('n') => {
                        return Err(CmdError::Fail("Server certificate NACKed by user".into()))
                    }
                    _ => {
                        return Err(CmdError::Fail(
                            "Please type 'y', 'n' or the fingerprint".into(),
                        ))
                    }
                }
            }
        }
        guard.path = Some(pin(conf, &name, &der)?);
        (Trust::Pinned(der.into()), Some(digest))
    };
    let client = conf.https_client(&name, host, port, trust, identity.as_ref(), pinned)?;
    let srv = client.server().await?;
    if a.public || srv.public {
        conf.file.remotes.insert(
            name,
            Remote {
                addr,
                public: true,
                ..Default::default()
            },
        );
        conf.save()?;
        guard.path = None;
        return Ok(());
    }
    if srv.auth != "trusted" {
        let password = match a.password {
            Some(p) => p,
            None => {
                let p = read_line(&format!("Admin password (or token) for {name}: "))?;
                println!();
                p
            }
        };
        trust_us(&client, &password).await?;
        println!("Client certificate now trusted by server: {name}");
    }
    conf.file.remotes.insert(
        name,
        Remote {
            addr,
            auth_type: "tls".into(),
            protocol: "lxd".into(),
            ..Default::default()
        },
    );
    conf.save()?;
    guard.path = None;
    Ok(())
}

/// Writes servercerts/NAME.crt; returns its path.
fn pin(conf: &Config, name: &str, der: &[u8]) -> Result<PathBuf, CmdError> {
    let dir = conf.dir.join("servercerts");
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let path = conf.server_cert_path(name);
    std::fs::write(&path, tls::to_pem(der)).map_err(|e| io_err(&path, e))?;
    Ok(path)
}

/// `POST /1.0/certificates` with our certificate (the server takes it from the TLS session,
/// as with lxc) and `password`, then checks the server now trusts us.
async fn trust_us(client: &Client, password: &str) -> Result<(), CmdError> {
    let req = crate::requests::certificate_add(password);
    client
        .run("POST", &silo_api::paths::certificates(), Some(&req), &[])
        .await?;
    let srv = client.server().await?;
    if srv.auth != "trusted" {
        return Err(CmdError::Fail(
            "Server doesn't trust us after authentication".into(),
        ));
    }
    Ok(())
}

async fn add_token(
    conf: &mut Config,
    name: &str,
    raw: &str,
    token: &CertificateToken,
) -> Result<(), CmdError> {
    let identity = conf.client_identity()?;
    let mut last = None;
    for a in &token.addresses {
        let addr = match normalize_addr(a) {
            Ok(x) => x,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let (host, port) = parse_https(&addr).map_err(CmdError::Fail)?;
        let probe = conf.https_client(name, host.clone(), port, Trust::Capture, None, None)?;
        // An address that cannot be reached is skipped, as lxc does; anything else is final.
        let der = match probe.peer_certificate().await {
            Ok(d) => d,
            Err(e) => {
                last = Some(e.to_string());
                continue;
            }
        };
        let digest = tls::fingerprint(&der);
        if digest != token.fingerprint.to_ascii_lowercase() {
            return Err(CmdError::Fail(format!(
                "Certificate fingerprint mismatch between certificate token and server {addr:?}: \
                 the token says {}, the server presented {digest}",
                token.fingerprint
            )));
        }
        let mut guard = PinGuard {
            path: Some(pin(conf, name, &der)?),
        };
        let client = conf.https_client(
            name,
            host,
            port,
            Trust::Pinned(der.into()),
            Some(&identity),
            Some(digest),
        )?;
        let srv = client.server().await?;
        if srv.auth != "trusted" {
            // lxc 5.0 sends the whole token as the password; the server finds the secret in it.
            trust_us(&client, raw).await?;
            println!("Client certificate now trusted by server: {name}");
        }
        conf.file.remotes.insert(
            name.to_string(),
            Remote {
                addr,
                auth_type: "tls".into(),
                protocol: "lxd".into(),
                ..Default::default()
            },
        );
        conf.save()?;
        guard.path = None;
        return Ok(());
    }
    Err(CmdError::Fail(format!(
        "Failed to add remote: all server addresses in the token are unavailable{}",
        last.map(|e| format!(" (last: {e})")).unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `lxc remote add s https://127.0.0.1:8443` (LXD 5.0) writes.
    #[test]
    fn simplestreams_urls_default_to_port_443() {
        let split = |a: &str| split_simplestreams_url(a).expect(a);
        assert_eq!(
            split("https://images.linuxcontainers.org"),
            ("images.linuxcontainers.org".into(), 443, String::new())
        );
        assert_eq!(
            split("https://cloud-images.ubuntu.com/releases/"),
            ("cloud-images.ubuntu.com".into(), 443, "/releases".into())
        );
        assert_eq!(
            split("https://127.0.0.1:8443/a/b"),
            ("127.0.0.1".into(), 8443, "/a/b".into())
        );
        assert_eq!(split("https://[::1]/s"), ("[::1]".into(), 443, "/s".into()));
        assert_eq!(
            split("https://[::1]:9/"),
            ("[::1]".into(), 9, String::new())
        );
        assert!(split_simplestreams_url("http://x/").is_err());
    }

    const LXD_CONFIG: &str = "default-remote: local\nremotes:\n  images:\n    addr: https://images.linuxcontainers.org\n    protocol: simplestreams\n    public: true\n  local:\n    addr: unix://\n    public: false\n  s:\n    addr: https://127.0.0.1:8443\n    auth_type: tls\n    protocol: lxd\n    public: false\naliases: {}\n";

    #[test]
    fn reads_lxd_config_and_round_trips() {
        let c = ConfigFile::parse(LXD_CONFIG).expect("parse");
        assert_eq!(c.default_remote, "local");
        let s = &c.remotes["s"];
        assert_eq!(s.addr, "https://127.0.0.1:8443");
        assert_eq!(s.protocol(), "lxd");
        assert_eq!(s.auth_type, "tls");
        assert!(!s.public);
        // The static ones come back even though the file leaves ubuntu out.
        assert!(c.remotes["ubuntu"].is_static && c.remotes["ubuntu-daily"].is_static);
        assert!(c.remotes["local"].is_static && !c.remotes["images"].is_static);
        // The static definition replaces what the file says of local, as LXD's loader does.
        assert_eq!(c.remotes["local"].auth_label(), "file access");
        let text = c.render().expect("render");
        assert!(!text.contains("ubuntu"), "{text}");
        assert!(text.contains("default-remote: local"), "{text}");
        let again = ConfigFile::parse(&text).expect("parse again");
        assert_eq!(again, c);
    }

    #[test]
    fn defaults_are_lxds() {
        let d = default_remotes();
        assert_eq!(d["images"].addr, "https://images.linuxcontainers.org");
        assert_eq!(d["images"].protocol(), "simplestreams");
        assert_eq!(d["ubuntu"].addr, "https://cloud-images.ubuntu.com/releases");
        assert_eq!(
            d["ubuntu-daily"].addr,
            "https://cloud-images.ubuntu.com/daily"
        );
        assert_eq!(d["local"].addr, "unix://");
        assert_eq!(d["local"].auth_label(), "file access");
        assert_eq!(d["images"].auth_label(), "none");
    }

    #[test]
    fn remote_name_parsing() {
        let c = ConfigFile::parse(LXD_CONFIG).expect("parse");
        assert_eq!(c.parse_remote("c1").expect("p"), ("local".into(), "c1"));
        assert_eq!(c.parse_remote("s:c1").expect("p"), ("s".into(), "c1"));
        assert_eq!(c.parse_remote("s:").expect("p"), ("s".into(), ""));
        assert_eq!(
            c.parse_remote("images:debian/12").expect("p"),
            ("images".into(), "debian/12")
        );
        assert_eq!(
            c.parse_remote("s:c1/etc/hosts").expect("p"),
            ("s".into(), "c1/etc/hosts")
        );
        let e = c.parse_remote("nope:c1").expect_err("unknown remote");
        assert_eq!(e.to_string(), "The remote \"nope\" doesn't exist");
    }

    #[test]
    fn addresses() {
        assert_eq!(
            normalize_addr("10.0.0.1").expect("a"),
            "https://10.0.0.1:8443"
        );
        assert_eq!(
            normalize_addr("https://h.example:9000").expect("a"),
            "https://h.example:9000"
        );
        assert_eq!(normalize_addr("::1").expect("a"), "https://[::1]:8443");
        assert_eq!(
            normalize_addr("https://[::1]:1234").expect("a"),
            "https://[::1]:1234"
        );
        assert_eq!(
            normalize_addr("/run/x.sock").expect("a"),
            "unix:///run/x.sock"
        );
        assert!(normalize_addr("http://h").is_err());
        assert_eq!(
            parse_https("https://[::1]:1234").expect("p"),
            ("[::1]".into(), 1234)
        );
        assert_eq!(
            parse_https("https://h/streams").expect("p"),
            ("h".into(), DEFAULT_PORT)
        );
    }

    #[test]
    fn token_decoding() {
        use base64::Engine;
        let json = r#"{"client_name":"t1","fingerprint":"abcd","addresses":["127.0.0.1:8443","[::1]:8443"],"secret":"s3cr3t","expires_at":"0001-01-01T00:00:00Z"}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        let t = CertificateToken::decode(&b64).expect("token");
        assert_eq!(t.client_name, "t1");
        assert_eq!(t.secret, "s3cr3t");
        assert_eq!(t.addresses, vec!["127.0.0.1:8443", "[::1]:8443"]);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        assert_eq!(CertificateToken::decode(&url), Some(t));
        assert!(CertificateToken::decode("https://127.0.0.1:8443").is_none());
        assert!(CertificateToken::decode("127.0.0.1").is_none());
        // Base64 of JSON that is not a token is not one.
        let other = base64::engine::general_purpose::STANDARD.encode(r#"{"a":1}"#);
        assert!(CertificateToken::decode(&other).is_none());
    }
}
