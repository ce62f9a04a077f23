//! `silo image export-simplestreams DIR [IMAGE...]`: a static simplestreams tree from the
//! server's images, for any web server to host as an image server (`lxc remote add NAME
//! https://host/ --protocol simplestreams`).
//!
//! Each image is fetched through the API's `/export` (checked against its fingerprint) into
//! `images/<fingerprint>/`: `lxd.tar.xz` and `rootfs` for a split image, `lxd_combined.tar.gz`
//! for a unified one (simplestreams names the file types; LXD sniffs the compression). The
//! image's aliases become its product's aliases; images with the same os, release,
//! architecture and variant are versions of one product. `streams/v1/images.json` is
//! written after the files and `streams/v1/index.json` last, so a server never lists a file
//! that is not there yet.
//!
//! The client side: `silo image list/info/show REMOTE:` and `silo image alias list REMOTE:`
//! on a simplestreams remote read its index here, as lxc reads it itself (the daemon is not
//! asked): `streams/v1/index.json`, then the products file it names, over HTTPS judged by
//! the system's CA store, each read bounded by [`ss::MAX_INDEX_BYTES`] and parsed by
//! `silo_api::simplestreams`, the daemon's own parser.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use silo_api::simplestreams::{
    self as ss, Index, IndexEntry, Item, Product, ProductVersion, Products,
};
use silo_api::{paths, Image};

use crate::client::Client;
use crate::commands::CmdError;
use crate::images::{export_split, export_unified, get_image, AliasCmd, ExportTarget, ImageCmd};
use crate::remotes::Config;
use crate::util::{fail, outln};

fn io_err(p: &Path, e: std::io::Error) -> CmdError {
    CmdError::Fail(format!("{}: {e}", p.display()))
}

fn hash_file(p: &Path) -> Result<(String, u64), CmdError> {
    let mut f = std::fs::File::open(p).map_err(|e| io_err(p, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(p, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((hex::encode(h.finalize()), n_total))
}

fn is_squashfs(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|()| &magic == b"hsqs")
        .unwrap_or(false)
}

/// A serial as simplestreams wants it (its first 8 characters a date): from the image's
/// creation time, with the fingerprint's start to keep two images of one minute apart.
fn serial(img: &Image) -> String {
    let digits: String = img
        .created_at
        .chars()
        .filter(char::is_ascii_digit)
        .take(12)
        .collect();
    let digits = if digits.len() == 12 && !digits.starts_with("0001") && !digits.starts_with("1970")
    {
        digits
    } else {
        img.uploaded_at
            .chars()
            .filter(char::is_ascii_digit)
            .take(12)
            .collect()
    };
    let (date, time) = digits.split_at(digits.len().min(8));
    format!(
        "{date}_{time}_{}",
        &img.fingerprint[..8.min(img.fingerprint.len())]
    )
}

fn product_id(img: &Image, arch: &str) -> String {
    let prop = |k: &str| img.properties.get(k).cloned().unwrap_or_default();
    let clean = |s: String| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let os = clean(prop("os"));
    let release = clean(prop("release"));
    let variant = clean(prop("variant"));
    if os.is_empty() {
        // No os property: each image is a product of its own.
        return format!(
            "silo:{}:{arch}:default",
            &img.fingerprint[..12.min(img.fingerprint.len())]
        );
    }
    format!(
        "{os}:{}:{arch}:{}",
        if release.is_empty() {
            "current"
        } else {
            &release
        },
        if variant.is_empty() {
            "default"
        } else {
            &variant
        }
    )
}

/// Fetches one image through `/export` into `dir`, checked against its fingerprint; answers
/// the metadata file and, for a split image, the rootfs.
async fn fetch(
    client: &Client,
    img: &Image,
    dir: &Path,
) -> Result<(PathBuf, Option<PathBuf>), CmdError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let resp = client
        .download(&paths::image_export(&img.fingerprint))
        .await?;
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let base = dir.join("export");
    let to = ExportTarget {
        dir: PathBuf::new(),
        file: Some(base.clone()),
    };
    if ctype.starts_with("multipart/form-data") {
        export_split(resp, &ctype, &to, &img.fingerprint, None).await?;
        let meta = dir.join("lxd.tar.xz");
        std::fs::rename(&base, &meta).map_err(|e| io_err(&meta, e))?;
        let root = dir.join("rootfs");
        std::fs::rename(dir.join("export.root"), &root).map_err(|e| io_err(&root, e))?;
        Ok((meta, Some(root)))
    } else {
        // No Content-Disposition passed: the file keeps the name given.
        export_unified(resp, None, &to, &img.fingerprint, None).await?;
        let file = dir.join("lxd_combined.tar.gz");
        std::fs::rename(&base, &file).map_err(|e| io_err(&file, e))?;
        Ok((file, None))
    }
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<(), CmdError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(v)
        .map_err(|e| CmdError::Fail(format!("encoding {}: {e}", path.display())))?;
    std::fs::write(&tmp, bytes).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Runs `silo image export-simplestreams DIR [IMAGE...]` (every image when none is named).
pub async fn export_tree(client: &Client, dir: &Path, names: &[String]) -> Result<(), CmdError> {
    let imgs: Vec<Image> = if names.is_empty() {
        client.images().await?
    } else {
        let mut v = Vec::new();
        for n in names {
            v.push(get_image(client, n).await?);
        }
        v
    };
    if imgs.is_empty() {
        return fail("there are no images to export");
    }
    let mut products: BTreeMap<String, Product> = BTreeMap::new();
    for img in &imgs {
        if img.fingerprint.len() != 64 || !img.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return fail(format!(
                "the server gave an invalid fingerprint {:?}",
                img.fingerprint
            ));
        }
        let rel_dir = format!("images/{}", img.fingerprint);
        let (meta, root) = fetch(client, img, &dir.join(&rel_dir)).await?;
        let (meta_sha, meta_size) = hash_file(&meta)?;
        let file_name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let mut items = BTreeMap::new();
        match &root {
            None => {
                items.insert(
                    "lxd_combined.tar.gz".to_string(),
                    Item {
                        ftype: "lxd_combined.tar.gz".into(),
                        path: format!("{rel_dir}/{}", file_name(&meta)),
                        sha256: meta_sha,
                        size: i64::try_from(meta_size).unwrap_or(i64::MAX),
                        ..Default::default()
                    },
                );
            }
            Some(r) => {
                let (root_sha, root_size) = hash_file(r)?;
                let squash = is_squashfs(r);
                let mut meta_item = Item {
                    ftype: "lxd.tar.xz".into(),
                    path: format!("{rel_dir}/{}", file_name(&meta)),
                    sha256: meta_sha,
                    size: i64::try_from(meta_size).unwrap_or(i64::MAX),
                    ..Default::default()
                };
                if squash {
                    meta_item.combined_squashfs_sha256 = img.fingerprint.clone();
                } else {
                    meta_item.combined_rootxz_sha256 = img.fingerprint.clone();
                    meta_item.combined_sha256 = img.fingerprint.clone();
                }
                items.insert("lxd.tar.xz".to_string(), meta_item);
                let (key, ftype) = if squash {
                    ("rootfs.squashfs", "squashfs")
                } else {
                    ("root.tar.xz", "root.tar.xz")
                };
                items.insert(
                    key.to_string(),
                    Item {
                        ftype: ftype.into(),
                        path: format!("{rel_dir}/{}", file_name(r)),
                        sha256: root_sha,
                        size: i64::try_from(root_size).unwrap_or(i64::MAX),
                        ..Default::default()
                    },
                );
            }
        }
        let arch = ss::simplestreams_arch(&img.architecture).to_string();
        let prop = |k: &str| img.properties.get(k).cloned().unwrap_or_default();
        let id = product_id(img, &arch);
        let p = products.entry(id).or_insert_with(|| Product {
            arch: arch.clone(),
            os: prop("os"),
            release: prop("release"),
            release_title: prop("release"),
            variant: prop("variant"),
            version: prop("version"),
            ..Default::default()
        });
        let mut aliases: Vec<String> = p
            .aliases
            .split(',')
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        for a in &img.aliases {
            if !aliases.contains(&a.name) {
                aliases.push(a.name.clone());
            }
        }
        p.aliases = aliases.join(",");
        p.versions.insert(
            serial(img),
            ProductVersion {
                items,
                label: String::new(),
            },
        );
        outln(&format!("Exported {} ({})", img.fingerprint, rel_dir))?;
    }
    let streams = dir.join("streams/v1");
    std::fs::create_dir_all(&streams).map_err(|e| io_err(&streams, e))?;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let ids: Vec<String> = products.keys().cloned().collect();
    write_json(
        &streams.join("images.json"),
        &Products {
            content_id: "images".into(),
            datatype: "image-downloads".into(),
            format: "products:1.0".into(),
            products,
            updated: now.clone(),
        },
    )?;
    write_json(
        &dir.join(ss::INDEX_PATH),
        &Index {
            format: "index:1.0".into(),
            index: BTreeMap::from([(
                "images".to_string(),
                IndexEntry {
                    datatype: "image-downloads".into(),
                    format: "products:1.0".into(),
                    path: "streams/v1/images.json".into(),
                    products: ids,
                    updated: now.clone(),
                },
            )]),
            updated: now,
        },
    )?;
    outln(&format!("Wrote a simplestreams tree to {}", dir.display()))
}

/// An image server's images and aliases as the CLI shows them.
#[derive(Debug)]
pub struct Catalog {
    /// The images, newest first, as `GET /1.0/images` would give them.
    pub images: Vec<Image>,
    /// The aliases LXD derives (`debian/12`, `debian/12/amd64`, ...).
    pub aliases: Vec<silo_api::ImageAliasesEntry>,
    /// The parsed images, for resolving a name as the daemon does.
    parsed: Vec<ss::Image>,
}

impl Catalog {
    /// The image `what` names (alias, fingerprint or unique prefix).
    pub fn find(&self, remote: &str, what: &str) -> Result<&Image, CmdError> {
        let fp = ss::find(&self.parsed, what)
            .map(|i| i.fingerprint.as_str())
            .ok_or_else(|| {
                CmdError::Fail(format!(
                    "the image server {remote} has no image {what:?} for {}",
                    std::env::consts::ARCH
                ))
            })?;
        self.images
            .iter()
            .find(|i| i.fingerprint == fp)
            .ok_or_else(|| CmdError::Fail(format!("image {fp} vanished from the index")))
    }
}

/// An image of the index as the API would describe it: public, not cached, uploaded when
/// it was built (LXD's simplestreams client says the same).
fn api_image(i: &ss::Image) -> Image {
    Image {
        aliases: i
            .aliases
            .iter()
            .map(|a| silo_api::ImageAlias {
                name: a.clone(),
                description: String::new(),
            })
            .collect(),
        architecture: i.architecture.clone(),
        created_at: i.created_at.clone(),
        expires_at: i.expires_at.clone(),
        filename: i.filename.clone(),
        fingerprint: i.fingerprint.clone(),
        last_used_at: silo_api::ZERO_TIME.into(),
        properties: i.properties.clone(),
        public: true,
        size: i64::try_from(i.size).unwrap_or(i64::MAX),
        kind: i.kind.clone(),
        uploaded_at: i.created_at.clone(),
        ..Default::default()
    }
}

/// Reads simplestreams `remote`'s index: index.json, then the products file it names.
pub async fn catalog(conf: &Config, remote: &str) -> Result<Catalog, CmdError> {
    let addr = conf.remote(remote)?.addr.clone();
    let (client, base) = conf.simplestreams_client(remote)?;
    let fail =
        |e: String| CmdError::Fail(format!("reading the image server {remote} ({addr}): {e}"));
    let get = |rel: String| {
        let client = client.clone();
        let path = format!("{base}/{}", rel.trim_start_matches('/'));
        async move { client.get_file(&path, ss::MAX_INDEX_BYTES).await }
    };
    let index = get(ss::INDEX_PATH.to_string())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let index = ss::parse_index(&index).map_err(|e| fail(e.to_string()))?;
    let products_path = index.images_path().map_err(|e| fail(e.to_string()))?;
    // The products file is on the same server, under the tree: a path, never a URL.
    if products_path.contains("://") || products_path.split('/').any(|c| c == "..") {
        return Err(fail(format!(
            "the index names {products_path:?}, which is not a path in the tree"
        )));
    }
    let products = get(products_path.to_string())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let products = ss::parse_products(&products).map_err(|e| fail(e.to_string()))?;
    let mut parsed = products.images();
    let table = ss::apply_aliases(&mut parsed, std::env::consts::ARCH);
    let aliases = table
        .into_iter()
        .map(|(name, target)| silo_api::ImageAliasesEntry {
            name,
            target,
            description: String::new(),
            kind: "container".into(),
        })
        .collect();
    Ok(Catalog {
        images: parsed.iter().map(api_image).collect(),
        aliases,
        parsed,
    })
}

/// Runs `silo image ...` on simplestreams `remote`: the read-only commands, from its index.
pub async fn run_remote(conf: &Config, remote: &str, cmd: ImageCmd) -> Result<(), CmdError> {
    match cmd {
        ImageCmd::List {
            filters,
            columns,
            format,
        } => {
            let c = catalog(conf, remote).await?;
            crate::images::list_images(c.images, &filters, &columns, format)
        }
        ImageCmd::Info { image } => {
            let c = catalog(conf, remote).await?;
            crate::images::info(c.find(remote, &image)?)
        }
        ImageCmd::Show { image } => {
            let c = catalog(conf, remote).await?;
            crate::images::show_image(c.find(remote, &image)?)
        }
        ImageCmd::Alias(AliasCmd::List { filters, format }) => {
            let c = catalog(conf, remote).await?;
            crate::images::list_aliases(c.aliases, &filters, format)
        }
        _ => fail(format!(
            "remote {remote} is a simplestreams image server: it is read-only (list, info, \
             show and alias list read its index); copy from it with \
             `silo image copy {remote}:ALIAS local:` or `silo launch {remote}:ALIAS NAME`"
        )),
    }
}

/// Checks that simplestreams `remote` answers with an index over trusted TLS (`remote add`
/// keeps nothing otherwise).
pub async fn check_remote(conf: &Config, remote: &str) -> Result<(), CmdError> {
    let addr = conf.remote(remote)?.addr.clone();
    let (client, base) = conf.simplestreams_client(remote)?;
    let index = client
        .get_file(&format!("{base}/{}", ss::INDEX_PATH), ss::MAX_INDEX_BYTES)
        .await
        .map_err(|e| CmdError::Fail(format!("{addr} is not a usable image server: {e}")))?;
    ss::parse_index(&index)
        .and_then(|i| i.images_path().map(drop))
        .map_err(|e| CmdError::Fail(format!("{addr} is not a usable image server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(created: &str) -> Image {
        Image {
            fingerprint: "ab".repeat(32),
            created_at: created.into(),
            uploaded_at: "2026-12-06T10:11:12Z".into(),
            architecture: "x86_64".into(),
            ..Default::default()
        }
    }

    #[test]
    fn serials_start_with_a_date_simplestreams_reads() {
        let s = serial(&img("2026-01-02T03:04:05Z"));
        assert_eq!(s, "20260102_0304_abababab");
        // No creation date: the upload date.
        assert_eq!(
            serial(&img("1970-01-01T00:00:00Z")),
            "20261206_1011_abababab"
        );
        let mut i = img("2026-01-02T03:04:05Z");
        i.properties.insert("os".into(), "Debian Linux".into());
        i.properties.insert("release".into(), "12".into());
        assert_eq!(product_id(&i, "amd64"), "Debian-Linux:12:amd64:default");
        i.properties.clear();
        assert_eq!(
            product_id(&i, "amd64"),
            format!("silo:{}:amd64:default", "ab".repeat(6))
        );
    }
}
