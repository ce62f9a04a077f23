//! `silo image ...`: import (streamed), list, show, info, edit, delete, export (streamed and
//! verified), and aliases, as `lxc image` does them.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use sha2::{Digest, Sha256};
use silo_api::{lenient, paths, Image, ImageAliasesEntryPost, ImageAliasesPost, ImagePut};
use tokio::io::AsyncWriteExt;

use crate::client::{Client, ClientError};
use crate::commands::CmdError;
use crate::format::{self, Format};
use crate::util::{self, fail, out, outln};

/// `silo image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Import an image tarball (unified), a metadata and a rootfs tarball (split), or a
    /// directory holding metadata.yaml, rootfs/ and templates/ (packed here, as root).
    #[command(after_help = "\
Arguments that contain '=' and are not existing files are image properties, as lxc takes them:
  silo image import busybox.tar.gz os=busybox --alias bb")]
    Import {
        /// The image tarball (or the metadata tarball), then the rootfs tarball of a split
        /// image; KEY=VALUE arguments set properties.
        #[arg(required = true, value_name = "FILE")]
        args: Vec<String>,
        /// An alias to give the image (repeatable).
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        /// Make the image public.
        #[arg(long)]
        public: bool,
        /// A property to set on the image (repeatable).
        #[arg(short = 'p', long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// List images.
    #[command(
        alias = "ls",
        after_help = "\
Filters: KEY=VALUE matches an image property (the key may be abbreviated per dot-separated
part, e.g. o=busybox); any other word matches part of an alias or of the fingerprint.

Columns (-c): l shortest alias (and how many more), L all aliases (one per line),
f fingerprint (short), F fingerprint (long), p public, d description, a architecture,
s size, u upload date, t type. Default: lfpdatsu."
    )]
    List {
        /// Filters (see below).
        filters: Vec<String>,
        /// Columns, as shorthand characters.
        #[arg(short = 'c', long, default_value = "lfpdatsu")]
        columns: String,
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show an image's writable properties as YAML.
    Show {
        /// Fingerprint (or a unique prefix) or alias.
        image: String,
    },
    /// Show useful information about an image.
    Info {
        /// Fingerprint (or a unique prefix) or alias.
        image: String,
    },
    /// Edit an image's properties in $EDITOR (or from YAML on stdin).
    Edit {
        /// Fingerprint (or a unique prefix) or alias.
        image: String,
    },
    /// Print an image property.
    GetProperty {
        /// Fingerprint (or a unique prefix) or alias.
        image: String,
        /// The property.
        key: String,
    },
    /// Set an image property.
    SetProperty {
        /// Fingerprint (or a unique prefix) or alias.
        image: String,
        /// The property.
        key: String,
        /// Its value.
        value: String,
    },
    /// Remove an image property.
    UnsetProperty {
        /// Fingerprint (or a unique prefix) or alias.
        image: String,
        /// The property.
        key: String,
    },
    /// Delete images.
    #[command(alias = "rm")]
    Delete {
        /// Fingerprints (or unique prefixes) or aliases.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Export an image to files, checking them against its fingerprint.
    #[command(after_help = "\
TARGET defaults to the current directory. When TARGET is a directory the files keep the names
the server gives them; otherwise TARGET names the file (its extension is added, as lxc does),
and a split image's rootfs goes to TARGET.root.")]
    Export {
        /// Fingerprint (or a unique prefix) or alias.
        image: String,
        /// A directory, or a file name.
        target: Option<PathBuf>,
    },
    /// Write a static simplestreams tree (streams/v1/index.json, images.json and the image
    /// files) from the server's images, for any web server to host as an image server.
    #[command(after_help = "\
Every image is exported when none is named. Serve DIR over HTTPS and add it with
  silo remote add NAME https://host/ --protocol simplestreams")]
    ExportSimplestreams {
        /// The directory to write (created if needed).
        dir: PathBuf,
        /// Fingerprints (or unique prefixes) or aliases.
        images: Vec<String>,
    },
    /// Manage image aliases.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Copy an image from one server to another (the target pulls it).
    #[command(
        alias = "cp",
        after_help = "\
Examples:
  silo image copy images:debian/12 local: --alias deb12
  silo image copy other:bb local: --copy-aliases --auto-update"
    )]
    Copy {
        /// [REMOTE:]IMAGE: an alias or a fingerprint on the source.
        source: String,
        /// The target: REMOTE:.
        target: String,
        /// A new alias on the target (repeatable).
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        /// Copy the source image's aliases too.
        #[arg(long)]
        copy_aliases: bool,
        /// Keep the copy updated from the source.
        #[arg(long)]
        auto_update: bool,
        /// Make the copy public.
        #[arg(long)]
        public: bool,
    },
    /// Refresh images from where they came from.
    Refresh {
        /// [REMOTE:]IMAGE (alias or fingerprint), repeatable.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// `silo image alias ...`.
#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Create an alias for an image.
    Create {
        /// The alias.
        name: String,
        /// The image's fingerprint (or a unique prefix).
        fingerprint: String,
        /// A description for the alias.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete an alias.
    #[command(alias = "rm")]
    Delete {
        /// The alias.
        name: String,
    },
    /// List aliases (filters match part of the alias name).
    #[command(alias = "ls")]
    List {
        /// Filters.
        filters: Vec<String>,
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Rename an alias.
    #[command(alias = "mv")]
    Rename {
        /// The current name.
        old: String,
        /// The new name.
        new: String,
    },
}

/// Runs `silo image ...`.
pub async fn run(client: &Client, cmd: ImageCmd) -> Result<(), CmdError> {
    match cmd {
        ImageCmd::Import {
            args,
            aliases,
            public,
            properties,
        } => import(client, &args, &aliases, public, &properties).await,
        ImageCmd::List {
            filters,
            columns,
            format,
        } => list(client, &filters, &columns, format).await,
        ImageCmd::Show { image } => show_image(&get_image(client, &image).await?),
        ImageCmd::Info { image } => info(&get_image(client, &image).await?),
        ImageCmd::Edit { image } => edit(client, &image).await,
        ImageCmd::GetProperty { image, key } => {
            let img = client.image(&resolve(client, &image).await?).await?;
            // As lxc: nothing at all for a property that is not set.
            match img.properties.get(&key) {
                Some(v) => outln(v),
                None => Ok(()),
            }
        }
        ImageCmd::SetProperty { image, key, value } => {
            change_image(client, &image, |put| {
                put.properties.insert(key, value);
            })
            .await
        }
        ImageCmd::UnsetProperty { image, key } => {
            change_image(client, &image, |put| {
                put.properties.remove(&key);
            })
            .await
        }
        ImageCmd::Delete { images } => {
            for i in images {
                let fp = resolve(client, &i).await?;
                client.delete_image(&fp).await?;
            }
            Ok(())
        }
        ImageCmd::Export { image, target } => export(client, &image, target).await,
        ImageCmd::ExportSimplestreams { dir, images } => {
            crate::simplestreams::export_tree(client, &dir, &images).await
        }
        ImageCmd::Alias(a) => alias(client, a).await,
        ImageCmd::Copy { .. } => crate::util::fail(
            "image copy works between remotes: run it through silo's command line",
        ),
        ImageCmd::Refresh { images } => {
            for i in images {
                refresh(client, &i).await?;
            }
            Ok(())
        }
    }
}

/// `silo image refresh IMAGE`: `POST /1.0/images/<fp>/refresh`, waited for.
pub async fn refresh(client: &Client, image: &str) -> Result<(), CmdError> {
    let fp = match client.image_alias(image).await {
        Ok(a) => a.target,
        Err(_) => client.image(image).await?.fingerprint,
    };
    let path = format!("{}/refresh", silo_api::paths::image(&fp));
    let op = client
        .run::<serde_json::Value>("POST", &path, None, &[])
        .await?;
    let refreshed = op
        .metadata
        .get("refreshed")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    out(if refreshed {
        "Image refreshed successfully!\n"
    } else {
        "Image already up to date.\n"
    })
}

/// Resolves an alias to its target fingerprint; anything else is returned as given (a
/// fingerprint or prefix for the server to resolve).
pub async fn resolve(client: &Client, name: &str) -> Result<String, CmdError> {
    match client.image_alias(name).await {
        Ok(a) => Ok(if a.target.is_empty() {
            name.to_string()
        } else {
            a.target
        }),
        Err(ClientError::Api(_)) => Ok(name.to_string()),
        Err(e) => Err(e.into()),
    }
}

/// Whether an alias of that name exists.
pub async fn alias_exists(client: &Client, name: &str) -> Result<bool, CmdError> {
    match client.image_alias(name).await {
        Ok(_) => Ok(true),
        Err(ClientError::Api(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn get_image(client: &Client, name: &str) -> Result<Image, CmdError> {
    let fp = resolve(client, name).await?;
    Ok(client.image(&fp).await?)
}

type Chunk = Result<Frame<Bytes>, std::io::Error>;

async fn open_file(path: &str) -> Result<(tokio::fs::File, u64), CmdError> {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| CmdError::Fail(format!("opening {path}: {e}")))?;
    let len = f
        .metadata()
        .await
        .map_err(|e| CmdError::Fail(format!("reading {path}: {e}")))?
        .len();
    Ok((f, len))
}

pub(crate) fn file_stream(
    f: tokio::fs::File,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)
}

fn basename(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.to_string())
}

/// The files and properties of `silo image import`: one unified tarball or a metadata and a
/// rootfs tarball; `key=value` arguments that are not files are properties.
fn import_files(args: &[String], props: &[String]) -> Result<ImportFiles, CmdError> {
    let mut files = Vec::new();
    let mut properties = Vec::new();
    for a in args {
        if a.contains('=') && !Path::new(a).exists() {
            properties.push(util::kv(a)?);
        } else {
            files.push(a.clone());
        }
    }
    for p in props {
        properties.push(util::kv(p)?);
    }
    let (meta, rootfs) = match files.as_slice() {
        [m] => (m.clone(), None),
        [m, r] => (m.clone(), Some(r.clone())),
        [] => return fail("no image file given"),
        _ => {
            return fail(
                "too many files: give one image tarball, or a metadata and a rootfs tarball",
            )
        }
    };
    for f in std::iter::once(&meta).chain(rootfs.iter()) {
        if f.starts_with("http://") || f.starts_with("https://") {
            return fail(
                "importing from a URL is not supported yet: download the file and import it",
            );
        }
        if Path::new(f).is_dir() && (rootfs.is_some() || *f != meta) {
            return fail(format!(
                "{f} is a directory: only a unified image may be imported from a directory"
            ));
        }
    }
    Ok(ImportFiles {
        meta,
        rootfs,
        properties,
    })
}

/// What `silo image import` uploads.
struct ImportFiles {
    /// The unified tarball, or the metadata tarball of a split image.
    meta: String,
    /// The rootfs tarball of a split image.
    rootfs: Option<String>,
    /// The image's properties, in the order given.
    properties: Vec<(String, String)>,
}

/// The upload's body and length: the tarball as is, or both tarballs as multipart form data
/// (its content type is added to `headers`).
async fn upload_body(
    meta: &str,
    rootfs: Option<&str>,
    headers: &mut Vec<(&str, String)>,
) -> Result<(UploadStream, u64), CmdError> {
    let (mf, mlen) = open_file(meta).await?;
    let body = match rootfs {
        None => {
            headers.push(("content-type", "application/octet-stream".to_string()));
            (file_stream(mf).boxed(), mlen)
        }
        Some(r) => {
            let (rf, rlen) = open_file(r).await?;
            let boundary = format!("silo-{}", uuid::Uuid::new_v4().simple());
            let part = |name: &str, file: &str| {
                format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                        file.replace(['"', '\r', '\n'], "_")
                    )
            };
            let head1 = part("metadata", &basename(meta));
            let head2 = format!("\r\n{}", part("rootfs", &basename(r)));
            let tail = format!("\r\n--{boundary}--\r\n");
            let total = head1.len() as u64 + mlen + head2.len() as u64 + rlen + tail.len() as u64;
            headers.push((
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            ));
            let lit = |t: String| futures::stream::iter([Ok(Bytes::from(t))]);
            let st = lit(head1)
                .chain(file_stream(mf))
                .chain(lit(head2))
                .chain(file_stream(rf))
                .chain(lit(tail));
            (st.boxed(), total)
        }
    };
    Ok(body)
}

type UploadStream = futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>;

async fn import(
    client: &Client,
    args: &[String],
    aliases: &[String],
    public: bool,
    props: &[String],
) -> Result<(), CmdError> {
    let ImportFiles {
        meta,
        rootfs,
        properties,
    } = import_files(args, props)?;
    // A directory (metadata.yaml, templates/, rootfs/) goes up as the unified tarball lxc
    // packs from it; the temporary file lives until the upload is done.
    let packed = if Path::new(&meta).is_dir() {
        Some(pack_image_dir(Path::new(&meta))?)
    } else {
        None
    };
    let (meta, shown) = match &packed {
        Some(t) => (
            t.path().to_string_lossy().into_owned(),
            format!("{}.tar.xz", basename(&meta)),
        ),
        None => (meta.clone(), basename(&meta)),
    };
    let mut headers: Vec<(&str, String)> = vec![("x-lxd-filename", shown)];
    if public {
        headers.push(("x-lxd-public", "1".to_string()));
    }
    if !properties.is_empty() {
        let enc = serde_urlencoded::to_string(&properties)
            .map_err(|e| CmdError::Fail(format!("encoding the properties: {e}")))?;
        headers.push(("x-lxd-properties", enc));
    }
    let (stream, total) = upload_body(&meta, rootfs.as_deref(), &mut headers).await?;
    headers.push(("content-length", total.to_string()));
    let pb = util::progress("Transferring image", Some(total));
    let pbc = pb.clone();
    let body = StreamBody::new(stream.map(move |c| -> Chunk {
        if let (Ok(b), Some(pb)) = (&c, &pbc) {
            pb.inc(b.len() as u64);
        }
        c.map(Frame::data)
    }));
    let answer = client
        .request_stream("POST", &paths::images(), body, &headers)
        .await;
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let op: silo_api::Operation = lenient::from_value(answer?.finish(client).await?)
        .map_err(|e| CmdError::Fail(format!("unexpected answer from silod: {e}")))?;
    let fp = op
        .metadata_as::<silo_api::ImageCreated>()
        .unwrap_or_default()
        .fingerprint;
    if fp.is_empty() {
        return fail("the server did not say which fingerprint the image got");
    }
    outln(&format!("Image imported with fingerprint: {fp}"))?;
    ensure_aliases(client, aliases, &fp).await
}

/// Packs an image directory as `lxc image import DIR` does: GNU tar, numeric owners, extended
/// attributes, xz; as root, since only root reads every file of a rootfs and owns them as
/// they are.
fn pack_image_dir(dir: &Path) -> Result<tempfile::NamedTempFile, CmdError> {
    if !nix::unistd::geteuid().is_root() {
        return fail("must run as root to import from a directory");
    }
    for need in ["metadata.yaml", "rootfs"] {
        if !dir.join(need).exists() {
            return fail(format!(
                "{} has no {need}: an image directory holds metadata.yaml, rootfs/ and templates/",
                dir.display()
            ));
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("silo_image_")
        .tempfile()
        .map_err(|e| CmdError::Fail(format!("a temporary file for the image: {e}")))?;
    let mut members = vec!["rootfs", "metadata.yaml"];
    if dir.join("templates").is_dir() {
        members.insert(1, "templates");
    }
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args([
            "--numeric-owner",
            "--restrict",
            "--force-local",
            "--xattrs",
            "-cJf",
        ])
        .arg(tmp.path())
        .args(&members)
        .output()
        .map_err(|e| CmdError::Fail(format!("running tar: {e}")))?;
    if !out.status.success() {
        return fail(format!(
            "packing {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(tmp)
}

/// Points each alias at `fp`: existing aliases of those names are moved, as lxc does.
async fn ensure_aliases(client: &Client, aliases: &[String], fp: &str) -> Result<(), CmdError> {
    if aliases.is_empty() {
        return Ok(());
    }
    let existing = client.image_aliases().await?;
    for a in aliases {
        if existing.iter().any(|e| e.name == *a) {
            client.delete_image_alias(a).await?;
        }
        let req = ImageAliasesPost {
            name: a.clone(),
            target: fp.to_string(),
            ..Default::default()
        };
        client
            .create_image_alias(&req)
            .await
            .map_err(|e| CmdError::Fail(format!("creating the alias {a}: {e}")))?;
    }
    Ok(())
}

fn aliases_of(img: &Image) -> Vec<String> {
    img.aliases.iter().map(|a| a.name.clone()).collect()
}

fn shortest_alias(names: &[String]) -> String {
    let mut shortest = String::new();
    for n in names {
        if shortest.is_empty() || (!n.is_empty() && n.len() < shortest.len()) {
            shortest = n.clone();
        }
    }
    shortest
}

/// LXD's dotted-prefix match of a filter key against a property key ("o" ~ "os").
pub fn dot_prefix_match(short: &str, full: &str) -> bool {
    let f: Vec<&str> = full.split('.').collect();
    let s: Vec<&str> = short.split('.').collect();
    f.len() == s.len() && f.iter().zip(s.iter()).all(|(f, s)| f.starts_with(s))
}

fn image_matches(img: &Image, filters: &[String]) -> bool {
    filters.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => img
            .properties
            .iter()
            .any(|(pk, pv)| dot_prefix_match(k, pk) && pv == v),
        None => {
            aliases_of(img).iter().any(|a| a.contains(f.as_str()))
                || img.fingerprint.contains(f.as_str())
        }
    })
}

fn size(img: &Image) -> String {
    util::size_mb(u64::try_from(img.size).unwrap_or(0))
}

fn image_column(c: char, img: &Image) -> Option<(&'static str, String)> {
    let fp = img.fingerprint.clone();
    Some(match c {
        'l' => {
            let names = aliases_of(img);
            let mut a = shortest_alias(&names);
            if names.len() > 1 {
                a = format!("{a} ({} more)", names.len() - 1);
            }
            ("ALIAS", a)
        }
        'L' => {
            let mut names = aliases_of(img);
            names.sort();
            ("ALIASES", names.join("\n"))
        }
        'f' => ("FINGERPRINT", fp.chars().take(12).collect()),
        'F' => ("FINGERPRINT", fp),
        'p' => ("PUBLIC", if img.public { "yes" } else { "no" }.to_string()),
        'd' => (
            "DESCRIPTION",
            img.properties
                .get("description")
                .cloned()
                .unwrap_or_default(),
        ),
        'a' => ("ARCHITECTURE", img.architecture.clone()),
        's' => ("SIZE", size(img)),
        'u' => (
            "UPLOAD DATE",
            util::parse_time(&img.uploaded_at)
                .map(util::time_long)
                .unwrap_or_default(),
        ),
        't' => (
            "TYPE",
            if img.kind.is_empty() {
                "CONTAINER".to_string()
            } else {
                img.kind.to_uppercase()
            },
        ),
        _ => return None,
    })
}

async fn list(
    client: &Client,
    filters: &[String],
    columns: &str,
    fmt: Format,
) -> Result<(), CmdError> {
    // Bad columns are refused before asking the server.
    check_columns(columns)?;
    list_images(client.images().await?, filters, columns, fmt)
}

/// The column characters of `-c`, refused as lxc refuses them.
fn check_columns(columns: &str) -> Result<Vec<char>, CmdError> {
    let mut cols = Vec::new();
    let blank = Image::default();
    for entry in columns.split(',') {
        if entry.is_empty() {
            return fail(format!(
                "Empty column entry (redundant, leading or trailing command) in '{columns}'"
            ));
        }
        for c in entry.chars() {
            if image_column(c, &blank).is_none() {
                return fail(format!("Unknown column shorthand char '{c}' in '{entry}'"));
            }
            cols.push(c);
        }
    }
    Ok(cols)
}

/// Prints `images` (from a server or an image server's index) as `silo image list` does.
pub(crate) fn list_images(
    images: Vec<Image>,
    filters: &[String],
    columns: &str,
    fmt: Format,
) -> Result<(), CmdError> {
    let cols = check_columns(columns)?;
    let blank = Image::default();
    let images: Vec<Image> = images
        .into_iter()
        .filter(|i| image_matches(i, filters))
        .collect();
    let mut rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            cols.iter()
                .filter_map(|c| image_column(*c, i).map(|x| x.1))
                .collect()
        })
        .collect();
    util::sort_rows(&mut rows);
    let headers: Vec<&str> = cols
        .iter()
        .filter_map(|c| image_column(*c, &blank).map(|x| x.0))
        .collect();
    let objects = serde_json::to_value(&images).map_err(|e| CmdError::Output(e.to_string()))?;
    let text = format::render(fmt, &headers, &rows, &objects).map_err(CmdError::Output)?;
    out(&text)
}

/// Prints an image's writable properties as `silo image show` does.
pub(crate) fn show_image(img: &Image) -> Result<(), CmdError> {
    let v = serde_json::to_value(img).unwrap_or_default();
    out(&util::yaml_ordered(
        &v,
        &[
            "auto_update",
            "properties",
            "public",
            "expires_at",
            "profiles",
        ],
    )?)
}

/// Prints an image as `silo image info` does.
pub(crate) fn info(i: &Image) -> Result<(), CmdError> {
    let yes_no = |b: bool, y: &str, n: &str| if b { y } else { n }.to_string();
    let mut o = String::new();
    o += &format!("Fingerprint: {}\n", i.fingerprint);
    o += &format!("Size: {}\n", size(i));
    o += &format!("Architecture: {}\n", i.architecture);
    o += &format!(
        "Type: {}\n",
        if i.kind.is_empty() {
            "container"
        } else {
            &i.kind
        }
    );
    o += &format!("Public: {}\n", yes_no(i.public, "yes", "no"));
    o += "Timestamps:\n";
    if let Some(t) = util::time_set(&i.created_at) {
        o += &format!("    Created: {}\n", util::time_short(t));
    }
    if let Some(t) = util::parse_time(&i.uploaded_at) {
        o += &format!("    Uploaded: {}\n", util::time_short(t));
    }
    o += &match util::time_set(&i.expires_at) {
        Some(t) => format!("    Expires: {}\n", util::time_short(t)),
        None => "    Expires: never\n".to_string(),
    };
    o += &match util::time_set(&i.last_used_at) {
        Some(t) => format!("    Last used: {}\n", util::time_short(t)),
        None => "    Last used: never\n".to_string(),
    };
    o += "Properties:\n";
    for (k, v) in &i.properties {
        o += &format!("    {k}: {v}\n");
    }
    o += "Aliases:\n";
    for a in &i.aliases {
        if a.description.is_empty() {
            o += &format!("    - {}\n", a.name);
        } else {
            o += &format!("    - {} ({})\n", a.name, a.description);
        }
    }
    o += &format!("Cached: {}\n", yes_no(i.cached, "yes", "no"));
    o += &format!(
        "Auto update: {}\n",
        yes_no(i.auto_update, "enabled", "disabled")
    );
    if let Some(src) = &i.update_source {
        o += "Source:\n";
        o += &format!("    Server: {}\n", src.server);
        o += &format!("    Protocol: {}\n", src.protocol);
        o += &format!("    Alias: {}\n", src.alias);
    }
    if i.profiles.is_empty() {
        o += "Profiles: []\n";
    } else {
        o += "Profiles:\n";
        for p in &i.profiles {
            o += &format!("    - {p}\n");
        }
    }
    out(&o)
}

const IMAGE_EDIT_HELP: &str = "\
### This is a YAML representation of the image properties.
### Any line starting with a '# will be ignored.
###
### Each property is represented by a single line:
### An example would be:
###  description: My custom image";

/// Changes an image's writable part and PUTs it back with If-Match.
async fn change_image(
    client: &Client,
    name: &str,
    change: impl FnOnce(&mut ImagePut),
) -> Result<(), CmdError> {
    let fp = resolve(client, name).await?;
    let (img, etag) = client.image_etag(&fp).await?;
    let mut put = ImagePut {
        auto_update: img.auto_update,
        expires_at: img.expires_at.clone(),
        profiles: img.profiles.clone(),
        properties: img.properties.clone(),
        public: img.public,
    };
    change(&mut put);
    client.update_image(&img.fingerprint, &put, etag).await?;
    Ok(())
}

async fn edit(client: &Client, name: &str) -> Result<(), CmdError> {
    let fp = resolve(client, name).await?;
    let (img, etag) = client.image_etag(&fp).await?;
    let keys = [
        "auto_update",
        "properties",
        "public",
        "expires_at",
        "profiles",
    ];
    let current = util::yaml_ordered(&serde_json::to_value(&img).unwrap_or_default(), &keys)?;
    util::edit(IMAGE_EDIT_HELP, &current, |text| {
        let fp = fp.clone();
        let etag = etag.clone();
        async move {
            let put: ImagePut = lenient::from_yaml_value(util::parse_yaml(&text)?)
                .map_err(|e| CmdError::Fail(e.to_string()))?;
            client.update_image(&fp, &put, etag).await?;
            Ok(())
        }
    })
    .await
}

/// A file name the server suggested, reduced to a plain name in the target directory.
fn safe_name(name: Option<&str>, fallback: &str) -> String {
    name.and_then(|n| Path::new(n).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .unwrap_or_else(|| fallback.to_string())
}

/// The `filename=` of a Content-Disposition header.
fn disposition_filename(h: &str) -> Option<String> {
    h.split(';').map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("filename")).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A file being written beside its final name, removed unless kept.
struct Partial {
    tmp: PathBuf,
    dest: PathBuf,
    file: tokio::fs::File,
    keep: bool,
}

impl Partial {
    async fn create(dest: PathBuf) -> Result<Partial, CmdError> {
        let mut tmp = dest.clone().into_os_string();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| CmdError::Fail(format!("creating {}: {e}", tmp.display())))?;
        Ok(Partial {
            tmp,
            dest,
            file,
            keep: false,
        })
    }

    async fn write(&mut self, b: &[u8]) -> Result<(), CmdError> {
        self.file
            .write_all(b)
            .await
            .map_err(|e| CmdError::Fail(format!("writing {}: {e}", self.tmp.display())))
    }

    async fn close(&mut self) -> Result<(), CmdError> {
        self.file
            .flush()
            .await
            .and(self.file.sync_all().await)
            .map_err(|e| CmdError::Fail(format!("writing {}: {e}", self.tmp.display())))
    }

    fn commit(&mut self) -> Result<(), CmdError> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| {
            CmdError::Fail(format!(
                "renaming {} to {}: {e}",
                self.tmp.display(),
                self.dest.display()
            ))
        })?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn check_fingerprint(h: Sha256, fp: &str) -> Result<(), CmdError> {
    let got = hex::encode(h.finalize());
    if got != fp {
        return fail(format!(
            "the exported image does not match its fingerprint (sha256 {got}, expected {fp}); nothing was written"
        ));
    }
    Ok(())
}

async fn export(client: &Client, name: &str, target: Option<PathBuf>) -> Result<(), CmdError> {
    let img = get_image(client, name).await?;
    let fp = img.fingerprint;
    if fp.len() != 64 {
        return fail(format!(
            "the server gave the image an invalid fingerprint {fp:?}"
        ));
    }
    let resp = client.download(&paths::image_export(&fp)).await?;
    let header = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ctype = header("content-type").unwrap_or_default();
    let length = header("content-length").and_then(|l| l.parse::<u64>().ok());
    let disposition = header("content-disposition");
    let to = match target {
        None => ExportTarget {
            dir: PathBuf::from("."),
            file: None,
        },
        Some(t) if t.is_dir() => ExportTarget { dir: t, file: None },
        Some(t) => ExportTarget {
            dir: PathBuf::new(),
            file: Some(t),
        },
    };
    let pb = util::progress("Exporting the image", length);
    let result = if ctype.starts_with("multipart/form-data") {
        export_split(resp, &ctype, &to, &fp, pb.as_ref()).await
    } else {
        export_unified(resp, disposition.as_deref(), &to, &fp, pb.as_ref()).await
    };
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    result?;
    outln("Image exported successfully!")
}

/// Where `silo image export` writes: into a directory under the server's file names, or to
/// the file the user named.
pub(crate) struct ExportTarget {
    pub(crate) dir: PathBuf,
    pub(crate) file: Option<PathBuf>,
}

/// Receives a split image (metadata and rootfs parts) and keeps both once the fingerprint
/// matches.
pub(crate) async fn export_split(
    resp: hyper::Response<hyper::body::Incoming>,
    ctype: &str,
    to: &ExportTarget,
    fp: &str,
    pb: Option<&indicatif::ProgressBar>,
) -> Result<(), CmdError> {
    let boundary = multer::parse_boundary(ctype)
        .map_err(|e| CmdError::Fail(format!("unexpected answer from silod: {e}")))?;
    let stream = resp.into_body().into_data_stream();
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut hasher = Some(Sha256::new());
    let mut parts: Vec<(String, Partial)> = Vec::new();
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| CmdError::Fail(format!("reading the export: {e}")))?
    {
        let part = field.name().unwrap_or("").to_string();
        if part != "metadata" && part != "rootfs" {
            return fail(format!(
                "unexpected part {part:?} in the export (virtual-machine images are not supported)"
            ));
        }
        if parts.iter().any(|(p, _)| *p == part) {
            return fail(format!("the export has two {part} parts"));
        }
        // The fingerprint covers metadata then rootfs; hash on the fly only in that order.
        if part == "metadata" && !parts.is_empty() {
            hasher = None;
        }
        let dest = split_part_dest(to, &part, field.file_name(), fp);
        let mut p = Partial::create(dest).await?;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| CmdError::Fail(format!("reading the export: {e}")))?
        {
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            if let Some(pb) = pb {
                pb.inc(chunk.len() as u64);
            }
            p.write(&chunk).await?;
        }
        p.close().await?;
        parts.push((part, p));
    }
    if !parts.iter().any(|(p, _)| p == "metadata") || !parts.iter().any(|(p, _)| p == "rootfs") {
        return fail("the export lacks its metadata or rootfs part");
    }
    let h = match hasher {
        Some(h) => h,
        None => hash_parts(&parts)?,
    };
    check_fingerprint(h, fp)?;
    for (_, p) in parts.iter_mut() {
        p.commit()?;
    }
    Ok(())
}

/// Where a part of a split export goes: the server's file name in the directory, or the
/// user's file (the metadata) and that name plus `.root` (the rootfs).
fn split_part_dest(to: &ExportTarget, part: &str, server_name: Option<&str>, fp: &str) -> PathBuf {
    match &to.file {
        None => to.dir.join(safe_name(
            server_name,
            &if part == "metadata" {
                format!("meta-{fp}")
            } else {
                fp.to_string()
            },
        )),
        Some(t) if part == "metadata" => t.clone(),
        Some(t) => {
            let mut r = t.clone().into_os_string();
            r.push(".root");
            PathBuf::from(r)
        }
    }
}

/// Hashes the received parts in the fingerprint's order (metadata, then rootfs), for when
/// they did not arrive in that order.
fn hash_parts(parts: &[(String, Partial)]) -> Result<Sha256, CmdError> {
    let mut h = Sha256::new();
    for want in ["metadata", "rootfs"] {
        if let Some((_, p)) = parts.iter().find(|(n, _)| n == want) {
            let mut f = std::fs::File::open(&p.tmp)
                .map_err(|e| CmdError::Fail(format!("{}: {e}", p.tmp.display())))?;
            std::io::copy(&mut f, &mut h)
                .map_err(|e| CmdError::Fail(format!("{}: {e}", p.tmp.display())))?;
        }
    }
    Ok(h)
}

/// Receives a unified image tarball and keeps it once the fingerprint matches.
pub(crate) async fn export_unified(
    resp: hyper::Response<hyper::body::Incoming>,
    disposition: Option<&str>,
    to: &ExportTarget,
    fp: &str,
    pb: Option<&indicatif::ProgressBar>,
) -> Result<(), CmdError> {
    let server_name = disposition.and_then(disposition_filename);
    let dest = match &to.file {
        None => to.dir.join(safe_name(server_name.as_deref(), fp)),
        Some(t) => {
            // As lxc: TARGET plus the extension of the server's file name.
            let ext = server_name
                .as_deref()
                .and_then(|n| n.split_once('.'))
                .map(|(_, e)| e.to_string())
                .filter(|e| !e.is_empty() && !e.contains('/'));
            match ext {
                Some(e) => {
                    let mut x = t.clone().into_os_string();
                    x.push(format!(".{e}"));
                    PathBuf::from(x)
                }
                None => t.clone(),
            }
        }
    };
    let mut p = Partial::create(dest).await?;
    let mut h = Sha256::new();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CmdError::Fail(format!("reading the export: {e}")))?;
        if let Ok(chunk) = frame.into_data() {
            h.update(&chunk);
            if let Some(pb) = pb {
                pb.inc(chunk.len() as u64);
            }
            p.write(&chunk).await?;
        }
    }
    p.close().await?;
    check_fingerprint(h, fp)?;
    p.commit()
}

async fn alias(client: &Client, cmd: AliasCmd) -> Result<(), CmdError> {
    match cmd {
        AliasCmd::Create {
            name,
            fingerprint,
            description,
        } => {
            let req = ImageAliasesPost {
                name,
                target: fingerprint,
                description,
                ..Default::default()
            };
            client.create_image_alias(&req).await?;
            Ok(())
        }
        AliasCmd::Delete { name } => {
            client.delete_image_alias(&name).await?;
            Ok(())
        }
        AliasCmd::Rename { old, new } => {
            client
                .rename_image_alias(&old, &ImageAliasesEntryPost { name: new })
                .await?;
            Ok(())
        }
        AliasCmd::List { filters, format } => {
            list_aliases(client.image_aliases().await?, &filters, format)
        }
    }
}

/// Prints aliases (a server's or an image server's) as `silo image alias list` does.
pub(crate) fn list_aliases(
    aliases: Vec<silo_api::ImageAliasesEntry>,
    filters: &[String],
    format: Format,
) -> Result<(), CmdError> {
    let aliases: Vec<_> = aliases
        .into_iter()
        .filter(|a| filters.iter().all(|f| a.name.contains(f.as_str())))
        .collect();
    let mut rows: Vec<Vec<String>> = aliases
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.target.chars().take(12).collect(),
                if a.kind.is_empty() {
                    "CONTAINER".to_string()
                } else {
                    a.kind.to_uppercase()
                },
                a.description.clone(),
            ]
        })
        .collect();
    util::sort_rows(&mut rows);
    let objects = serde_json::to_value(&aliases).map_err(|e| CmdError::Output(e.to_string()))?;
    let text = format::render(
        format,
        &["ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION"],
        &rows,
        &objects,
    )
    .map_err(CmdError::Output)?;
    out(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            disposition_filename("attachment; filename=abc.tar.gz").as_deref(),
            Some("abc.tar.gz")
        );
        assert_eq!(
            disposition_filename("attachment; filename=\"x y.tar\"").as_deref(),
            Some("x y.tar")
        );
        assert_eq!(safe_name(Some("../../etc/passwd"), "fp"), "passwd");
        assert_eq!(safe_name(Some(".."), "fp"), "fp");
        assert_eq!(safe_name(None, "fp"), "fp");
    }

    #[test]
    fn filters() {
        let img: Image = lenient::from_value(serde_json::json!({
            "fingerprint": "db80776924026d04",
            "aliases": [{"name": "busybox"}],
            "properties": {"os": "busybox", "image.release": "1"}
        }))
        .expect("decodes");
        assert!(image_matches(&img, &["bus".into()]));
        assert!(image_matches(&img, &["0776".into()]));
        assert!(image_matches(&img, &["os=busybox".into()]));
        assert!(image_matches(&img, &["o=busybox".into()]));
        assert!(image_matches(&img, &["i.r=1".into()]));
        assert!(!image_matches(&img, &["os=debian".into()]));
        assert!(!image_matches(&img, &["debian".into()]));
    }
}
