//! `silo file push|pull|delete`, as `lxc file` does them over LXD's files API:
//! `GET|POST|DELETE /1.0/instances/NAME/files?path=P`, with the file's type, owner and mode
//! in `X-LXD-*` headers and its contents as the raw body (a directory's entries come back
//! as a sync JSON envelope).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};

use crate::client::{Client, ClientError};
use crate::commands::CmdError;
use crate::util::fail;

/// `silo file ...`.
#[derive(Debug, clap::Subcommand)]
pub enum FileCmd {
    /// Push files into instances.
    #[command(after_help = "\
Examples:
  silo file push /etc/hosts c1/etc/hosts
  silo file push -p --mode 0600 key.pem c1/root/.ssh/
  silo file push -r ./site c1/srv/")]
    Push(PushArgs),
    /// Pull files from instances.
    #[command(after_help = "\
Examples:
  silo file pull c1/etc/hosts .
  silo file pull -r c1/etc/apt /tmp/
  silo file pull c1/etc/hostname -")]
    Pull(PullArgs),
    /// Delete files in instances.
    #[command(alias = "rm")]
    Delete {
        /// The files: NAME/PATH.
        #[arg(required = true, value_name = "NAME/PATH")]
        paths: Vec<String>,
    },
}

/// `silo file push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The local files ("-" for stdin).
    #[arg(required = true, num_args = 1.., value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Where they go: NAME/PATH (a directory when it ends with "/").
    #[arg(value_name = "NAME/PATH")]
    pub target: String,
    /// Push directories recursively.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Create any directories necessary.
    #[arg(short = 'p', long)]
    pub create_dirs: bool,
    /// Set the file's uid on push (default 0).
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,
    /// Set the file's gid on push (default 0).
    #[arg(long, value_name = "GID")]
    pub gid: Option<u32>,
    /// Set the file's perms on push, in octal (default: the local file's).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
}

/// `silo file pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The files: NAME/PATH.
    #[arg(required = true, num_args = 1.., value_name = "NAME/PATH")]
    pub sources: Vec<String>,
    /// Where they go locally ("-" for stdout).
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Pull directories recursively.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Create any directories necessary.
    #[arg(short = 'p', long)]
    pub create_dirs: bool,
}

/// Runs `silo file ...`.
pub async fn run(client: &Client, cmd: FileCmd) -> Result<(), CmdError> {
    match cmd {
        FileCmd::Push(a) => push(client, a).await,
        FileCmd::Pull(a) => pull(client, a).await,
        FileCmd::Delete { paths } => {
            for p in &paths {
                let (inst, path) = split_target(p, "Invalid path")?;
                client
                    .query("DELETE", &files_url(&inst, &clean(&path)), None)
                    .await?;
            }
            Ok(())
        }
    }
}

/// `NAME/PATH` → (NAME, "/PATH").
fn split_target(arg: &str, what: &str) -> Result<(String, String), CmdError> {
    match arg.split_once('/') {
        Some((inst, path)) if !inst.is_empty() => Ok((inst.to_string(), format!("/{path}"))),
        _ => fail(format!("{what} {arg}")),
    }
}

/// An absolute instance path without `.`, `..` and repeated slashes (a trailing slash is
/// kept: it says "directory").
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

fn files_url(inst: &str, path: &str) -> String {
    silo_api::paths::instance_files(inst, path)
}

/// The last part of an instance path.
fn base(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// The parent of an instance path ("/" for top-level entries).
fn parent(p: &str) -> String {
    let t = p.trim_end_matches('/');
    match t.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => t[..i].to_string(),
    }
}

fn join(dir: &str, name: &str) -> String {
    clean(&format!("{}/{name}", dir.trim_end_matches('/')))
}

/// Parses `--mode` as lxc does: octal, "644" meaning "0644".
fn parse_mode(m: &str) -> Result<u32, CmdError> {
    let digits = m.strip_prefix("0o").unwrap_or(m);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|v| *v <= 0o7777)
        .ok_or_else(|| CmdError::Fail(format!("Invalid mode {m:?}: expected octal, like 0644")))
}

type Body = BoxBody<Bytes, std::io::Error>;

fn bytes_body(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// What one `POST .../files` creates.
struct NewFile {
    kind: &'static str,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
}

async fn create_file(
    client: &Client,
    inst: &str,
    path: &str,
    f: &NewFile,
    body: Body,
    len: u64,
) -> Result<(), CmdError> {
    let mut headers: Vec<(&str, String)> = vec![
        ("x-lxd-type", f.kind.to_string()),
        ("x-lxd-write", "overwrite".to_string()),
        ("content-type", "application/octet-stream".to_string()),
        ("content-length", len.to_string()),
    ];
    if let Some(u) = f.uid {
        headers.push(("x-lxd-uid", u.to_string()));
    }
    if let Some(g) = f.gid {
        headers.push(("x-lxd-gid", g.to_string()));
    }
    if let Some(m) = f.mode {
        headers.push(("x-lxd-mode", format!("{m:04o}")));
    }
    client
        .request_stream("POST", &files_url(inst, path), body, &headers)
        .await?
        .finish(client)
        .await?;
    Ok(())
}

/// A local file's contents as a streamed body, with its length.
async fn file_body(p: &Path) -> Result<(Body, u64), CmdError> {
    let f = tokio::fs::File::open(p)
        .await
        .map_err(|e| CmdError::Fail(format!("opening {}: {e}", p.display())))?;
    let len = f
        .metadata()
        .await
        .map_err(|e| CmdError::Fail(format!("reading {}: {e}", p.display())))?
        .len();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map(|c| c.map(Frame::data));
    Ok((BodyExt::boxed(StreamBody::new(stream)), len))
}

/// What `GET .../files` says about a path.
struct Remote {
    kind: String,
    mode: u32,
    resp: hyper::Response<hyper::body::Incoming>,
}

async fn get_file(client: &Client, inst: &str, path: &str) -> Result<Remote, CmdError> {
    let resp = client.download(&files_url(inst, path)).await?;
    let h = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let kind = h("x-lxd-type");
    if kind.is_empty() {
        return Err(ClientError::Protocol(format!("no X-LXD-type for {path}")).into());
    }
    let mode = u32::from_str_radix(h("x-lxd-mode").trim_start_matches("0o"), 8).unwrap_or(0o644);
    Ok(Remote { kind, mode, resp })
}

impl Remote {
    async fn bytes(self) -> Result<Bytes, CmdError> {
        Ok(self
            .resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes())
    }

    /// A directory's entry names.
    async fn entries(self) -> Result<Vec<String>, CmdError> {
        let body = self.bytes().await?;
        let r: silo_api::Response = silo_api::lenient::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!("a directory listing that is not JSON: {e}"))
        })?;
        Ok(r.metadata_as::<Vec<String>>().map_err(|e| {
            ClientError::Protocol(format!(
                "a directory listing that is not a list of names: {e}"
            ))
        })?)
    }

    /// Streams the contents into `w`.
    async fn write_to(self, w: &mut dyn std::io::Write, what: &str) -> Result<(), CmdError> {
        let mut body = self.resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                w.write_all(&data)
                    .map_err(|e| CmdError::Fail(format!("writing {what}: {e}")))?;
            }
        }
        w.flush()
            .map_err(|e| CmdError::Fail(format!("writing {what}: {e}")))
    }
}

/// Creates `dir` and its missing parents in the instance, as `lxc file push -p` does.
async fn mkdir_all(
    client: &Client,
    inst: &str,
    dir: &str,
    mode: Option<u32>,
    uid: u32,
    gid: u32,
) -> Result<(), CmdError> {
    let dir = clean(dir);
    let parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    // Find the deepest part that exists, from the bottom up.
    let mut have = 0;
    for i in (1..=parts.len()).rev() {
        let cur = format!("/{}", parts[..i].join("/"));
        if let Ok(r) = get_file(client, inst, &cur).await {
            if r.kind != "directory" {
                return fail(format!("{cur} is not a directory"));
            }
            have = i;
            break;
        }
    }
    for i in have + 1..=parts.len() {
        let cur = format!("/{}", parts[..i].join("/"));
        let f = NewFile {
            kind: "directory",
            uid: Some(uid),
            gid: Some(gid),
            mode,
        };
        create_file(client, inst, &cur, &f, bytes_body(Bytes::new()), 0).await?;
    }
    Ok(())
}

/// `silo file push`.
async fn push(client: &Client, a: PushArgs) -> Result<(), CmdError> {
    let sources = &a.sources;
    let (inst, target) = split_target(&a.target, "Invalid target")?;
    let target = clean(&target);
    if a.recursive {
        if a.uid.is_some() || a.gid.is_some() || a.mode.is_some() {
            return fail("Can't supply uid/gid/mode in recursive mode");
        }
        if a.create_dirs {
            let mode = std::fs::metadata(&sources[0])
                .map(|m| m.permissions().mode() & 0o7777)
                .ok();
            mkdir_all(client, &inst, &target, mode, 0, 0).await?;
        }
        for src in sources {
            push_tree(client, &inst, Path::new(src), &target).await?;
        }
        return Ok(());
    }
    let mode = a.mode.as_deref().map(parse_mode).transpose()?;
    if sources.len() > 1 && !target.ends_with('/') {
        return fail("Missing target directory");
    }
    // Every source is checked before anything is pushed.
    for src in sources.iter().filter(|s| *s != "-") {
        let m = std::fs::metadata(src).map_err(|e| CmdError::Fail(format!("{src}: {e}")))?;
        if m.is_dir() {
            return fail(format!(
                "{src} is a directory: use -r (--recursive) to push directories"
            ));
        }
    }
    let uid = a.uid.unwrap_or(0);
    let gid = a.gid.unwrap_or(0);
    for src in sources {
        let name = if src == "-" {
            "stdin".to_string()
        } else {
            Path::new(src)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| src.clone())
        };
        let fpath = if target.ends_with('/') {
            join(&target, &name)
        } else {
            target.clone()
        };
        if a.create_dirs {
            mkdir_all(client, &inst, &parent(&fpath), None, uid, gid).await?;
        }
        let (body, len, local_mode) = if src == "-" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| CmdError::Fail(format!("reading stdin: {e}")))?;
            let len = buf.len() as u64;
            (bytes_body(buf), len, 0o644)
        } else {
            let (body, len) = file_body(Path::new(src)).await?;
            let m = std::fs::metadata(src).map_err(|e| CmdError::Fail(format!("{src}: {e}")))?;
            (body, len, m.permissions().mode() & 0o7777)
        };
        let f = NewFile {
            kind: "file",
            uid: Some(uid),
            gid: Some(gid),
            mode: Some(mode.unwrap_or(local_mode)),
        };
        create_file(client, &inst, &fpath, &f, body, len).await?;
    }
    Ok(())
}

/// Pushes `src` (a file, a symlink or a whole directory) into the directory `target`.
async fn push_tree(client: &Client, inst: &str, src: &Path, target: &str) -> Result<(), CmdError> {
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Depth first, a directory before its contents, so each parent exists in time.
    let mut todo: Vec<(PathBuf, String)> = vec![(src.to_path_buf(), join(target, &name))];
    while let Some((p, dest)) = todo.pop() {
        let m = std::fs::symlink_metadata(&p)
            .map_err(|e| CmdError::Fail(format!("Failed to walk path for {}: {e}", p.display())))?;
        let ft = m.file_type();
        let perm = Some(m.mode() & 0o7777);
        let (kind, body, len) = if ft.is_dir() {
            ("directory", bytes_body(Bytes::new()), 0)
        } else if ft.is_symlink() {
            let link = std::fs::read_link(&p)
                .map_err(|e| CmdError::Fail(format!("reading {}: {e}", p.display())))?;
            let link = link.to_string_lossy().into_owned();
            let len = link.len() as u64;
            ("symlink", bytes_body(link), len)
        } else if ft.is_file() {
            let (body, len) = file_body(&p).await?;
            ("file", body, len)
        } else {
            return fail(format!("'{}' isn't a supported file type", p.display()));
        };
        let f = NewFile {
            kind,
            uid: Some(0),
            gid: Some(0),
            mode: perm,
        };
        create_file(client, inst, &dest, &f, body, len).await?;
        if ft.is_dir() {
            let mut entries: Vec<(PathBuf, String)> = std::fs::read_dir(&p)
                .map_err(|e| CmdError::Fail(format!("reading {}: {e}", p.display())))?
                .filter_map(Result::ok)
                .map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    (e.path(), join(&dest, &n))
                })
                .collect();
            // Reverse order on the stack pushes them in name order.
            entries.sort();
            entries.reverse();
            todo.extend(entries);
        }
    }
    Ok(())
}

/// How many symlinks `pull` follows before giving up.
const MAX_LINKS: usize = 40;

/// `silo file pull`.
async fn pull(client: &Client, a: PullArgs) -> Result<(), CmdError> {
    let (target_arg, sources) = (&a.target, &a.sources);
    let to_stdout = target_arg == "-";
    let target = PathBuf::from(target_arg);
    let mut target_is_dir = false;
    if !to_stdout {
        match std::fs::metadata(&target) {
            Ok(m) => {
                target_is_dir = m.is_dir();
                if !target_is_dir && sources.len() > 1 {
                    return fail("More than one file to download, but target is not a directory");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if target_arg.ends_with('/') || sources.len() > 1 || a.recursive {
                    std::fs::create_dir_all(&target).map_err(|e| {
                        CmdError::Fail(format!("creating {}: {e}", target.display()))
                    })?;
                    target_is_dir = true;
                } else if a.create_dirs {
                    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            CmdError::Fail(format!("creating {}: {e}", dir.display()))
                        })?;
                    }
                }
            }
            Err(e) => return fail(format!("{}: {e}", target.display())),
        }
    }
    for src in sources {
        let (inst, path) = split_target(src, "Invalid source")?;
        let mut path = clean(&path);
        let mut r = get_file(client, &inst, &path).await?;
        if r.kind == "directory" {
            if !a.recursive {
                return fail("Can't pull a directory without --recursive");
            }
            if to_stdout {
                return fail("Can't pull a directory to stdout");
            }
            pull_tree(client, &inst, &path, r, &target).await?;
            continue;
        }
        let dest = if target_is_dir {
            target.join(base(&path))
        } else {
            target.clone()
        };
        let mut hops = 0;
        while r.kind == "symlink" {
            hops += 1;
            if hops > MAX_LINKS {
                return fail(format!("Too many levels of symbolic links at {src}"));
            }
            let link = String::from_utf8_lossy(&r.bytes().await?)
                .trim_end()
                .to_string();
            path = if link.starts_with('/') {
                clean(&link)
            } else {
                join(&parent(&path), &link)
            };
            r = get_file(client, &inst, &path).await?;
        }
        if r.kind == "directory" {
            return fail("Can't pull a directory without --recursive");
        }
        if to_stdout {
            r.write_to(&mut std::io::stdout().lock(), "stdout").await?;
            continue;
        }
        write_local(&dest, r).await?;
    }
    Ok(())
}

/// The host-side mode of a pulled file or directory: the instance's permission bits without
/// set-uid, set-gid and sticky, as `cp` without `-p` does (and as LXD's client does, which
/// applies only the permission bits). A set-uid file pulled as root must not become a
/// set-uid-root program on the host because someone inside the container chmodded it.
fn pulled_mode(mode: u32) -> u32 {
    mode & 0o777
}

/// Writes a pulled file to `dest` with the instance file's permission bits.
async fn write_local(dest: &Path, r: Remote) -> Result<(), CmdError> {
    let what = dest.display().to_string();
    let mut f =
        std::fs::File::create(dest).map_err(|e| CmdError::Fail(format!("creating {what}: {e}")))?;
    f.set_permissions(std::fs::Permissions::from_mode(pulled_mode(r.mode)))
        .map_err(|e| CmdError::Fail(format!("setting the mode of {what}: {e}")))?;
    r.write_to(&mut f, &what).await
}

/// Pulls the instance directory `path` (already fetched as `r`) into the local directory
/// `target`, as `target/<name>/...`.
async fn pull_tree(
    client: &Client,
    inst: &str,
    path: &str,
    r: Remote,
    target: &Path,
) -> Result<(), CmdError> {
    let mut todo: Vec<(String, Option<Remote>, PathBuf)> =
        vec![(path.to_string(), Some(r), target.join(base(path)))];
    while let Some((p, fetched, dest)) = todo.pop() {
        let r = match fetched {
            Some(r) => r,
            None => get_file(client, inst, &p).await?,
        };
        let what = dest.display().to_string();
        match r.kind.as_str() {
            "directory" => {
                let mode = pulled_mode(r.mode);
                match std::fs::create_dir(&dest) {
                    Ok(()) => {}
                    // A directory already there, not a symlink to one (the chmod below and
                    // the files pulled into it would land wherever it points).
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AlreadyExists
                            && std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) => {}
                    Err(e) => return fail(format!("creating {what}: {e}")),
                }
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| CmdError::Fail(format!("setting the mode of {what}: {e}")))?;
                let mut entries = r.entries().await?;
                entries.sort();
                entries.reverse();
                for e in entries {
                    if e.is_empty() || e == "." || e == ".." || e.contains('/') {
                        continue;
                    }
                    todo.push((join(&p, &e), None, dest.join(&e)));
                }
            }
            "file" => write_local(&dest, r).await?,
            "symlink" => {
                let link = String::from_utf8_lossy(&r.bytes().await?)
                    .trim()
                    .to_string();
                std::os::unix::fs::symlink(&link, &dest)
                    .map_err(|e| CmdError::Fail(format!("creating the symlink {what}: {e}")))?;
            }
            other => return fail(format!("Unknown file type '{other}'")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(clean("/etc//./x/../hosts"), "/etc/hosts");
        assert_eq!(clean("/root/"), "/root/");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("/../.."), "/");
        assert_eq!(parent("/etc/hosts"), "/etc");
        assert_eq!(parent("/etc"), "/");
        assert_eq!(base("/etc/apt/"), "apt");
        assert_eq!(join("/root/", "a"), "/root/a");
        assert_eq!(
            split_target("c1/etc/hosts", "Invalid target").expect("split"),
            ("c1".to_string(), "/etc/hosts".to_string())
        );
        assert!(split_target("c1", "Invalid target").is_err());
        assert!(split_target("/etc", "Invalid target").is_err());
        assert_eq!(
            files_url("c1", "/a b"),
            "/1.0/instances/c1/files?path=%2Fa+b"
        );
    }

    #[test]
    fn pulled_files_lose_setuid_setgid_and_sticky() {
        assert_eq!(pulled_mode(0o4755), 0o755);
        assert_eq!(pulled_mode(0o2750), 0o750);
        assert_eq!(pulled_mode(0o1777), 0o777);
        assert_eq!(pulled_mode(0o100644), 0o644);
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("644").expect("mode"), 0o644);
        assert_eq!(parse_mode("0755").expect("mode"), 0o755);
        assert!(parse_mode("9").is_err());
        assert!(parse_mode("rw").is_err());
    }
}
