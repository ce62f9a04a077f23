//! Simplestreams image indexes as LXD reads them (`shared/simplestreams` is the model):
//! `streams/v1/index.json` names the products file (`images.json`), whose products hold
//! versions, whose items are the files of an image. [`Products::images`] turns them into
//! images with their fingerprint and files, and [`apply_aliases`] gives them LXD's aliases
//! (`debian/12` for the local architecture, `debian/12/amd64` for every one).
//!
//! Unknown fields are ignored and missing ones read as empty. A server is not trusted to
//! keep its index small: [`parse_index`] and [`parse_products`] refuse more than
//! [`MAX_INDEX_BYTES`], so an index costs at most that much to hold and a linear pass to read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The largest `index.json` or `images.json` read (64 MiB). The public `images:` server's
/// `images.json` is about 3 MiB; 10,000 products of typical size fit in about 10 MiB.
pub const MAX_INDEX_BYTES: usize = 64 << 20;

/// Where an image server's index is, relative to its URL.
pub const INDEX_PATH: &str = "streams/v1/index.json";

/// Why an index was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Larger than [`MAX_INDEX_BYTES`].
    TooLarge(usize),
    /// Not the JSON of an index.
    Invalid(String),
    /// The index names no products file of image downloads.
    NoImages,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TooLarge(n) => write!(
                f,
                "the simplestreams index is {n} bytes, more than the limit of {MAX_INDEX_BYTES}"
            ),
            Error::Invalid(e) => write!(f, "invalid simplestreams index: {e}"),
            Error::NoImages => {
                write!(
                    f,
                    "the simplestreams index names no image-downloads products"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// `streams/v1/index.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Index {
    /// `index:1.0`.
    pub format: String,
    /// Entries by content id (`images`).
    pub index: BTreeMap<String, IndexEntry>,
    /// Last update.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
}

/// One entry of the index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexEntry {
    /// `image-downloads` for images.
    pub datatype: String,
    /// `products:1.0`.
    pub format: String,
    /// The products file, relative to the server's URL.
    pub path: String,
    /// Product ids.
    pub products: Vec<String>,
    /// Last update.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
}

impl Index {
    /// The products file of image downloads (LXD takes the entry of datatype
    /// `image-downloads`).
    pub fn images_path(&self) -> Result<&str, Error> {
        self.index
            .values()
            .find(|e| e.datatype == "image-downloads" && !e.path.is_empty())
            .map(|e| e.path.as_str())
            .ok_or(Error::NoImages)
    }
}

/// `images.json`: the products.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Products {
    /// `images`.
    pub content_id: String,
    /// `image-downloads`.
    pub datatype: String,
    /// `products:1.0`.
    pub format: String,
    /// Products by id (`debian:bookworm:amd64:default`).
    pub products: BTreeMap<String, Product>,
    /// Last update.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
}

/// One product: an OS release for an architecture and variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Product {
    /// Comma-separated aliases (`debian/12,debian/bookworm`).
    pub aliases: String,
    /// Debian-style architecture name (`amd64`).
    pub arch: String,
    /// Operating system.
    pub os: String,
    /// Release.
    pub release: String,
    /// Release title.
    pub release_title: String,
    /// End of support (`2026-06-10`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub support_eol: String,
    /// Version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Variant (`default`, `cloud`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
    /// LXD requirements.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub lxd_requirements: BTreeMap<String, String>,
    /// Versions by serial (`20240101_05:24`; its first 8 characters are the date).
    pub versions: BTreeMap<String, ProductVersion>,
}

/// One version of a product.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProductVersion {
    /// Files by name.
    pub items: BTreeMap<String, Item>,
    /// Label.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub label: String,
}

/// One file of a version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Item {
    /// `lxd.tar.xz`, `root.tar.xz`, `squashfs`, `lxd_combined.tar.gz`, `disk-kvm.img`, ...
    pub ftype: String,
    /// Relative to the server's URL.
    pub path: String,
    /// sha256 of the file.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
    /// On `lxd.tar.xz`: sha256 of it ‖ root.tar.xz (legacy name).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub combined_sha256: String,
    /// On `lxd.tar.xz`: sha256 of it ‖ root.tar.xz.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub combined_rootxz_sha256: String,
    /// On `lxd.tar.xz`: sha256 of it ‖ the squashfs.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub combined_squashfs_sha256: String,
    /// On `lxd.tar.xz`: sha256 of it ‖ disk-kvm.img (virtual machines, which silo skips).
    #[serde(
        rename = "combined_disk-kvm-img_sha256",
        skip_serializing_if = "String::is_empty"
    )]
    pub combined_disk_kvm_img_sha256: String,
}

/// What a downloaded file is to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileRole {
    /// The metadata tarball, or the whole image for a unified one.
    Meta,
    /// The rootfs of a split image.
    Root,
}

/// One file to download for an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Relative to the server's URL.
    pub path: String,
    /// Its sha256, lower-case hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Metadata or rootfs.
    pub role: FileRole,
}

/// An image a simplestreams server offers, as LXD derives it from a product version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The fingerprint: the combined sha256 of metadata ‖ rootfs, or the unified file's.
    pub fingerprint: String,
    /// LXD's architecture name (`x86_64`).
    pub architecture: String,
    /// `container` (virtual-machine images are left out: silo runs containers).
    pub kind: String,
    /// The product's aliases, as given (see [`apply_aliases`] for LXD's).
    pub product_aliases: Vec<String>,
    /// The aliases after [`apply_aliases`].
    pub aliases: Vec<String>,
    /// The version's serial.
    pub serial: String,
    /// RFC 3339, from the serial's date.
    pub created_at: String,
    /// RFC 3339, from the product's end of support (the Unix epoch when none).
    pub expires_at: String,
    /// The last path component of the metadata file.
    pub filename: String,
    /// Sum of the files' sizes.
    pub size: u64,
    /// os, release, version, architecture, label, serial, description, variant, type.
    pub properties: BTreeMap<String, String>,
    /// The metadata file, then the rootfs for a split image.
    pub files: Vec<File>,
}

/// Parses `index.json`.
pub fn parse_index(bytes: &[u8]) -> Result<Index, Error> {
    if bytes.len() > MAX_INDEX_BYTES {
        return Err(Error::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(e.to_string()))
}

/// Parses `images.json`.
pub fn parse_products(bytes: &[u8]) -> Result<Products, Error> {
    if bytes.len() > MAX_INDEX_BYTES {
        return Err(Error::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(e.to_string()))
}

/// LXD's architecture name for a simplestreams (Debian-style or kernel) name; `None` for one
/// LXD does not know (its products are skipped, as LXD does).
pub fn architecture_name(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" | "x86_64" | "x64" => "x86_64",
        "i386" | "i686" | "i586" | "x86" => "i686",
        "arm64" | "aarch64" | "arm64v8" => "aarch64",
        "armhf" | "armv7l" | "armel" | "armv7" => "armv7l",
        "armv6l" | "armv6" => "armv6l",
        "ppc64el" | "ppc64le" => "ppc64le",
        "ppc64" => "ppc64",
        "ppc" | "powerpc" => "ppc",
        "s390x" => "s390x",
        "mips64el" | "mips64" => "mips64",
        "riscv64" => "riscv64",
        "loongarch64" | "loong64" => "loongarch64",
        _ => return None,
    })
}

/// The simplestreams (Debian-style) name of one of LXD's architecture names.
pub fn simplestreams_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "i686" => "i386",
        "aarch64" => "arm64",
        "armv7l" => "armhf",
        "ppc64le" => "ppc64el",
        "mips64" => "mips64el",
        other => other,
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn date_from_serial(serial: &str) -> Option<String> {
    let d = serial.get(..8)?;
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, day) = (&d[..4], &d[4..6], &d[6..8]);
    let (mn, dn): (u32, u32) = (m.parse().ok()?, day.parse().ok()?);
    if !(1..=12).contains(&mn) || !(1..=31).contains(&dn) {
        return None;
    }
    Some(format!("{y}-{m}-{day}T00:00:00Z"))
}

fn eol_date(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let ok = s.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && s.bytes()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    ok.then(|| format!("{s}T00:00:00Z"))
}

impl Products {
    /// The container images of every product version, as LXD's `ToLXD` derives them: a
    /// `lxd_combined.tar.gz` item is a unified image whose fingerprint is its sha256; a
    /// `lxd.tar.xz` item with a `root.tar.xz` (fingerprint `combined_rootxz_sha256`, else
    /// `combined_sha256`) or a `squashfs` (`combined_squashfs_sha256`) is a split one.
    /// Products of unknown architectures, versions whose serial is not a date and items
    /// without a usable fingerprint or path are skipped. Ordered newest serial first.
    pub fn images(&self) -> Vec<Image> {
        let mut out = Vec::new();
        for product in self.products.values() {
            let Some(arch) = architecture_name(&product.arch) else {
                continue;
            };
            for (serial, version) in &product.versions {
                let Some(created) = date_from_serial(serial) else {
                    continue;
                };
                let add = |meta: &Item, root: Option<&Item>| -> Option<Image> {
                    let fingerprint = match root {
                        None => &meta.sha256,
                        Some(r) if r.ftype == "root.tar.xz" => {
                            if meta.combined_rootxz_sha256.is_empty() {
                                &meta.combined_sha256
                            } else {
                                &meta.combined_rootxz_sha256
                            }
                        }
                        Some(r) if r.ftype == "squashfs" => &meta.combined_squashfs_sha256,
                        Some(_) => return None,
                    };
                    let fingerprint = fingerprint.to_ascii_lowercase();
                    if !is_sha256(&fingerprint) || meta.path.is_empty() {
                        return None;
                    }
                    let file = |i: &Item, role| -> Option<File> {
                        if i.path.is_empty() || !is_sha256(&i.sha256) {
                            return None;
                        }
                        Some(File {
                            path: i.path.clone(),
                            sha256: i.sha256.to_ascii_lowercase(),
                            size: u64::try_from(i.size).ok()?,
                            role,
                        })
                    };
                    let mut files = vec![file(meta, FileRole::Meta)?];
                    if let Some(r) = root {
                        files.push(file(r, FileRole::Root)?);
                    }
                    let mut description =
                        format!("{} {} {}", product.os, product.release_title, product.arch);
                    if !version.label.is_empty() {
                        description = format!("{description} ({})", version.label);
                    }
                    description = format!("{description} ({serial})");
                    let mut properties: BTreeMap<String, String> = [
                        ("os", product.os.as_str()),
                        ("release", product.release.as_str()),
                        ("version", product.version.as_str()),
                        ("architecture", product.arch.as_str()),
                        ("label", version.label.as_str()),
                        ("serial", serial.as_str()),
                        ("description", description.as_str()),
                        ("variant", product.variant.as_str()),
                        ("type", root.map(|r| r.ftype.as_str()).unwrap_or("tar.gz")),
                    ]
                    .into_iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                    for (k, v) in &product.lxd_requirements {
                        properties.insert(format!("requirements.{k}"), v.clone());
                    }
                    Some(Image {
                        fingerprint,
                        architecture: arch.to_string(),
                        kind: "container".into(),
                        product_aliases: product
                            .aliases
                            .split(',')
                            .map(str::trim)
                            .filter(|a| !a.is_empty())
                            .map(String::from)
                            .collect(),
                        aliases: Vec::new(),
                        serial: serial.clone(),
                        created_at: created.clone(),
                        expires_at: eol_date(&product.support_eol)
                            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
                        filename: meta.path.rsplit('/').next().unwrap_or("").to_string(),
                        size: files.iter().map(|f| f.size).sum(),
                        properties,
                        files,
                    })
                };
                for item in version.items.values() {
                    if item.ftype == "lxd_combined.tar.gz" {
                        out.extend(add(item, None));
                    }
                    if item.ftype == "lxd.tar.xz" {
                        for root in version
                            .items
                            .values()
                            .filter(|r| r.ftype == "root.tar.xz" || r.ftype == "squashfs")
                        {
                            out.extend(add(item, Some(root)));
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            b.serial
                .cmp(&a.serial)
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        out
    }
}

/// LXD's aliases for `images` (newest first, as [`Products::images`] orders them): each
/// product alias `A` gives `A/<arch>` (the product's simplestreams architecture) to every
/// image, and `A` itself to images of `local_arch` (LXD's name, `x86_64`); the first image
/// to claim a name keeps it, so an alias names the newest version. Returns the alias table.
pub fn apply_aliases(images: &mut [Image], local_arch: &str) -> BTreeMap<String, String> {
    let mut table: BTreeMap<String, String> = BTreeMap::new();
    for img in images.iter_mut() {
        let ss_arch = img
            .properties
            .get("architecture")
            .cloned()
            .unwrap_or_else(|| simplestreams_arch(&img.architecture).to_string());
        let mut mine = Vec::new();
        for a in &img.product_aliases {
            let mut claim = |name: String| {
                if !table.contains_key(&name) {
                    table.insert(name.clone(), img.fingerprint.clone());
                    mine.push(name);
                }
            };
            if img.architecture == local_arch {
                claim(a.clone());
            }
            claim(format!("{a}/{ss_arch}"));
        }
        img.aliases = mine;
    }
    table
}

/// An image of `images` by alias, full fingerprint or unique fingerprint prefix.
pub fn find<'a>(images: &'a [Image], what: &str) -> Option<&'a Image> {
    if let Some(i) = images.iter().find(|i| i.aliases.iter().any(|a| a == what)) {
        return Some(i);
    }
    if what.is_empty() || !what.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let lower = what.to_ascii_lowercase();
    let mut found = images.iter().filter(|i| i.fingerprint.starts_with(&lower));
    let first = found.next()?;
    found
        .all(|i| i.fingerprint == first.fingerprint)
        .then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn sample() -> Products {
        let json = serde_json::json!({
            "content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
            "unknown": {"ignored": true},
            "products": {
                "debian:bookworm:amd64:default": {
                    "aliases": "debian/12/default,debian/12,debian/bookworm",
                    "arch": "amd64", "os": "Debian", "release": "bookworm",
                    "release_title": "bookworm", "variant": "default", "support_eol": "2028-06-10",
                    "versions": {
                        "20240101_05:24": {"items": {
                            "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": "images/d/old/lxd.tar.xz",
                                "sha256": sha('1'), "size": 10, "combined_rootxz_sha256": sha('a'),
                                "combined_squashfs_sha256": sha('b')},
                            "root.tar.xz": {"ftype": "root.tar.xz", "path": "images/d/old/root.tar.xz",
                                "sha256": sha('2'), "size": 100},
                            "rootfs.squashfs": {"ftype": "squashfs", "path": "images/d/old/rootfs.squashfs",
                                "sha256": sha('3'), "size": 90},
                            "disk.qcow2": {"ftype": "disk-kvm.img", "path": "images/d/old/disk.qcow2",
                                "sha256": sha('4'), "size": 900}
                        }},
                        "20240202_05:24": {"label": "new", "items": {
                            "lxd_combined.tar.gz": {"ftype": "lxd_combined.tar.gz",
                                "path": "images/d/new/lxd_combined.tar.gz", "sha256": sha('C'), "size": 110}
                        }}
                    }
                },
                "debian:bookworm:arm64:default": {
                    "aliases": "debian/12", "arch": "arm64", "os": "Debian", "release": "bookworm",
                    "versions": {"20240101_05:24": {"items": {
                        "lxd_combined.tar.gz": {"ftype": "lxd_combined.tar.gz",
                            "path": "images/d/arm/lxd_combined.tar.gz", "sha256": sha('d'), "size": 1}
                    }}}
                },
                "plan9:4:pdp11:default": {
                    "aliases": "plan9", "arch": "pdp11", "versions": {"20240101": {"items": {
                        "lxd_combined.tar.gz": {"ftype": "lxd_combined.tar.gz",
                            "path": "p", "sha256": sha('e'), "size": 1}}}}
                },
                "broken:1:amd64:default": {
                    "aliases": "broken", "arch": "amd64", "versions": {
                        "notadate": {"items": {"lxd_combined.tar.gz": {"ftype": "lxd_combined.tar.gz",
                            "path": "b", "sha256": sha('f'), "size": 1}}},
                        "20240101": {"items": {"lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": "b",
                            "sha256": sha('f'), "size": 1},
                            "root.tar.xz": {"ftype": "root.tar.xz", "path": "r", "sha256": sha('f'), "size": 1}}}
                    }
                }
            }
        });
        parse_products(json.to_string().as_bytes()).expect("parses")
    }

    #[test]
    fn fingerprints_follow_the_item_combination() {
        let imgs = sample().images();
        let fps: Vec<&str> = imgs.iter().map(|i| i.fingerprint.as_str()).collect();
        // root.tar.xz → combined_rootxz_sha256; squashfs → combined_squashfs_sha256;
        // lxd_combined.tar.gz → its own sha256 (lower-cased); the VM disk, the unknown
        // architecture, the non-date serial and the item without a combined hash are skipped.
        assert!(fps.contains(&sha('a').as_str()), "{fps:?}");
        assert!(fps.contains(&sha('b').as_str()), "{fps:?}");
        assert!(fps.contains(&sha('c').as_str()), "{fps:?}");
        assert!(fps.contains(&sha('d').as_str()), "{fps:?}");
        assert_eq!(imgs.len(), 4, "{fps:?}");
        let split = imgs
            .iter()
            .find(|i| i.fingerprint == sha('a'))
            .expect("split");
        assert_eq!(split.files.len(), 2);
        assert_eq!(split.files[0].role, FileRole::Meta);
        assert_eq!(split.files[1].path, "images/d/old/root.tar.xz");
        assert_eq!(split.size, 110);
        assert_eq!(split.architecture, "x86_64");
        assert_eq!(split.created_at, "2024-01-01T00:00:00Z");
        assert_eq!(split.expires_at, "2028-06-10T00:00:00Z");
        assert_eq!(split.properties["type"], "root.tar.xz");
        assert_eq!(
            split.properties["description"],
            "Debian bookworm amd64 (20240101_05:24)"
        );
        let unified = imgs
            .iter()
            .find(|i| i.fingerprint == sha('c'))
            .expect("new");
        assert_eq!(unified.files.len(), 1);
        assert_eq!(unified.filename, "lxd_combined.tar.gz");
        assert_eq!(unified.properties["type"], "tar.gz");
    }

    #[test]
    fn combined_sha256_is_the_legacy_fallback() {
        let mut p = sample();
        let prod = p
            .products
            .get_mut("debian:bookworm:amd64:default")
            .expect("product");
        let v = prod.versions.get_mut("20240101_05:24").expect("version");
        let meta = v.items.get_mut("lxd.tar.xz").expect("meta");
        meta.combined_rootxz_sha256.clear();
        meta.combined_sha256 = sha('9');
        assert!(p.images().iter().any(|i| i.fingerprint == sha('9')));
    }

    #[test]
    fn aliases_as_lxd_derives_them() {
        let mut imgs = sample().images();
        let table = apply_aliases(&mut imgs, "x86_64");
        // The newest amd64 version holds the short aliases and the /amd64 ones.
        assert_eq!(table["debian/12"], sha('c'));
        assert_eq!(table["debian/bookworm"], sha('c'));
        assert_eq!(table["debian/12/amd64"], sha('c'));
        assert_eq!(table["debian/12/default/amd64"], sha('c'));
        // arm64 only gets the architecture-qualified one on an x86_64 host.
        assert_eq!(table["debian/12/arm64"], sha('d'));
        assert!(!table.values().any(|f| f == &sha('a')));
        assert_eq!(
            find(&imgs, "debian/12").map(|i| &i.fingerprint),
            Some(&sha('c'))
        );
        assert_eq!(find(&imgs, "aaaa").map(|i| &i.fingerprint), Some(&sha('a')));
        assert!(find(&imgs, "debian/13").is_none());
        // On an arm64 host the short alias is the arm64 image's.
        let mut imgs = sample().images();
        let table = apply_aliases(&mut imgs, "aarch64");
        assert_eq!(table["debian/12"], sha('d'));
        assert_eq!(table["debian/12/amd64"], sha('c'));
    }

    #[test]
    fn index_names_the_products_file() {
        let idx = parse_index(
            br#"{"format":"index:1.0","index":{"images":{"datatype":"image-downloads","path":"streams/v1/images.json","format":"products:1.0","products":["a"],"x":1}}}"#,
        )
        .expect("parses");
        assert_eq!(idx.images_path(), Ok("streams/v1/images.json"));
        let empty = parse_index(br#"{"format":"index:1.0","index":{}}"#).expect("parses");
        assert_eq!(empty.images_path(), Err(Error::NoImages));
        assert!(matches!(parse_index(b"[1,2"), Err(Error::Invalid(_))));
    }

    #[test]
    fn oversized_index_refused_before_parsing() {
        let big = vec![b' '; MAX_INDEX_BYTES + 1];
        assert_eq!(
            parse_products(&big),
            Err(Error::TooLarge(MAX_INDEX_BYTES + 1))
        );
        assert_eq!(parse_index(&big), Err(Error::TooLarge(MAX_INDEX_BYTES + 1)));
    }

    #[test]
    fn ten_thousand_products_in_bounded_time() {
        use std::fmt::Write;
        let mut s = String::from(r#"{"content_id":"images","format":"products:1.0","products":{"#);
        for n in 0..10_000u32 {
            if n > 0 {
                s.push(',');
            }
            let fp = format!("{n:064x}");
            let _ = write!(
                s,
                r#""os{n}:1:amd64:default":{{"aliases":"os{n}/1,os{n}/one","arch":"amd64","os":"os{n}","release":"1","release_title":"one","versions":{{"20240101_01:00":{{"items":{{"lxd_combined.tar.gz":{{"ftype":"lxd_combined.tar.gz","path":"images/os{n}/lxd_combined.tar.gz","sha256":"{fp}","size":1000}}}}}}}}}}"#
            );
        }
        s.push_str("}}");
        assert!(s.len() < MAX_INDEX_BYTES, "{} bytes", s.len());
        let start = std::time::Instant::now();
        let p = parse_products(s.as_bytes()).expect("parses");
        let mut imgs = p.images();
        let table = apply_aliases(&mut imgs, "x86_64");
        let took = start.elapsed();
        assert_eq!(imgs.len(), 10_000);
        assert_eq!(table.len(), 40_000);
        assert_eq!(table["os9999/one/amd64"], format!("{:064x}", 9999));
        // Generous for an unoptimized build on a loaded 2-core machine; measured ~0.3 s.
        assert!(
            took < std::time::Duration::from_secs(10),
            "10,000 products took {took:?}"
        );
    }
}
