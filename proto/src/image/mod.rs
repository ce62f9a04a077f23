//! LXD's image format: compression sniffing, `metadata.yaml`, member-name rules, and safe
//! extraction beneath a directory fd ([`extract`]).
//!
//! silod uses this to read an upload's metadata (unprivileged); silo-store's landlocked
//! children use it to unpack (as root, confined to the one target directory).

pub mod extract;
pub mod pack;
pub mod xattr;

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

/// Why an image was refused. Messages are lower-case and name the member and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ImageError {
    /// Not a (compressed) tarball we can read.
    #[error("not an image tarball: unknown or corrupt format: {0}")]
    Format(String),
    /// The data ended early.
    #[error("image is truncated: {0}")]
    Truncated(String),
    /// metadata.yaml is missing or invalid.
    #[error("invalid image metadata: {0}")]
    Metadata(String),
    /// A member would land outside its target.
    #[error("member {member:?} points outside the image ({why})")]
    Outside {
        /// The member name.
        member: String,
        /// The rule.
        why: String,
    },
    /// An absolute member name.
    #[error("member {0:?} has an absolute path")]
    Absolute(String),
    /// A member's path goes through a symlink.
    #[error("member {0:?} goes through a symlink inside the image; refusing to follow it")]
    Symlink(String),
    /// A hardlink that targets something outside or through a symlink.
    #[error("hardlink {member:?} -> {target:?} is not allowed: {why}")]
    Hardlink {
        /// The member.
        member: String,
        /// Its link target.
        target: String,
        /// The rule.
        why: String,
    },
    /// A sparse member.
    #[error("member {0:?} is a sparse file; sparse members are not supported")]
    Sparse(String),
    /// A configured limit was passed.
    #[error("image exceeds the limit of {limit} {what}")]
    Limit {
        /// What was counted.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A member silo does not unpack.
    #[error("member {member:?}: {why}")]
    Unsupported {
        /// The member.
        member: String,
        /// Why.
        why: String,
    },
    /// Writing failed.
    #[error("unpacking {member:?}: {op}: {message}")]
    Io {
        /// The member.
        member: String,
        /// The call.
        op: String,
        /// The error.
        message: String,
    },
}

/// Compression of an image file, sniffed from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// A plain tarball.
    None,
    /// gzip.
    Gzip,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Sniffs the magic bytes; `None` when the first block is not a known format.
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Compression::Xz)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if head.len() >= 262 && &head[257..262] == b"ustar" {
            Some(Compression::None)
        } else if tar_checksum_ok(head) {
            // An old-style (v7) header has no magic: its checksum is what tells it apart.
            Some(Compression::None)
        } else {
            None
        }
    }

    /// The file extension LXD uses.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => ".tar",
            Compression::Gzip => ".tar.gz",
            Compression::Xz => ".tar.xz",
            Compression::Zstd => ".tar.zst",
        }
    }
}

/// Whether `head` starts with a tar header whose checksum (the unsigned byte sum with the
/// checksum field read as spaces) matches the octal number in that field.
fn tar_checksum_ok(head: &[u8]) -> bool {
    let Some(h) = head.get(..512) else {
        return false;
    };
    // An all-zero block is an end marker, not a member.
    if h.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &h[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return false;
    }
    let Some(want) = digits.iter().try_fold(0u32, |acc, d| {
        acc.checked_mul(8)?.checked_add(u32::from(d - b'0'))
    }) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == want
}

/// Counts bytes read and fails past a limit: the decompression-bomb fuse.
#[derive(Debug)]
pub struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(format!(
                "LIMIT: uncompressed data exceeds {} bytes",
                self.limit
            )));
        }
        Ok(n)
    }
}

/// A reader of the decompressed tar stream of `file`, cut off after `limit` bytes.
pub fn open_tar_stream<R: Read + 'static>(
    mut file: R,
    limit: u64,
) -> Result<Box<dyn Read>, ImageError> {
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < head.len() {
        let n = file
            .read(&mut head[got..])
            .map_err(|e| ImageError::Format(e.to_string()))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    head.truncate(got);
    let c = Compression::sniff(&head).ok_or_else(|| {
        ImageError::Format("expected a tarball, optionally gzip, xz or zstd compressed".into())
    })?;
    let chained = std::io::Cursor::new(head).chain(file);
    let dec: Box<dyn Read> = match c {
        Compression::None => Box::new(chained),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(chained)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(chained)
                .map_err(|e| ImageError::Format(e.to_string()))?,
        ),
    };
    Ok(Box::new(Limited {
        inner: dec,
        read: 0,
        limit,
    }))
}

/// Maps an I/O error from reading the stream to the right refusal.
pub fn stream_error(member: &str, e: &std::io::Error) -> ImageError {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("LIMIT: ") {
        let limit = rest
            .split_whitespace()
            .rev()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        return ImageError::Limit {
            what: "bytes of uncompressed data".into(),
            limit,
        };
    }
    if e.kind() == std::io::ErrorKind::UnexpectedEof || msg.contains("failed to fill whole buffer")
    {
        return ImageError::Truncated(format!("{member}: {msg}"));
    }
    ImageError::Format(format!("{member}: {msg}"))
}

/// `null` read as the empty value, as Go's YAML decoder leaves a field it is null for. Keys
/// silo does not use are ignored (no `deny_unknown_fields`), so other tools' additions pass;
/// the stored image file is what an export gives back, whole.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A map of strings as Go reads one into `map[string]string`: a null map is empty, a null
/// value the empty string, a number or boolean its text.
fn string_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let m: Option<BTreeMap<String, Option<String>>> = Option::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// One template entry of metadata.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Template {
    /// When it applies: create, copy, start.
    #[serde(default, deserialize_with = "null_default")]
    pub when: Vec<String>,
    /// The template file under templates/.
    #[serde(default)]
    pub template: String,
    /// Extra properties.
    #[serde(default, deserialize_with = "string_map")]
    pub properties: BTreeMap<String, String>,
    /// Only on create.
    #[serde(default)]
    pub create_only: bool,
}

/// metadata.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMetadata {
    /// Required, e.g. "x86_64".
    pub architecture: String,
    /// Required, unix seconds.
    pub creation_date: i64,
    /// Optional, unix seconds.
    #[serde(default)]
    pub expiry_date: Option<i64>,
    /// os, release, description, ...
    #[serde(default, deserialize_with = "string_map")]
    pub properties: BTreeMap<String, String>,
    /// Templates by path.
    #[serde(default, deserialize_with = "null_default")]
    pub templates: BTreeMap<String, Template>,
}

/// The largest metadata.yaml accepted.
pub const MAX_METADATA: u64 = 1 << 20;

impl ImageMetadata {
    /// Parses and checks metadata.yaml.
    pub fn parse(text: &[u8]) -> Result<ImageMetadata, ImageError> {
        let m: ImageMetadata = serde_norway::from_slice(text)
            .map_err(|e| ImageError::Metadata(format!("metadata.yaml: {e}")))?;
        if m.architecture.trim().is_empty() {
            return Err(ImageError::Metadata(
                "metadata.yaml: architecture is empty".into(),
            ));
        }
        for (path, t) in &m.templates {
            if !path.starts_with('/') {
                return Err(ImageError::Metadata(format!(
                    "template target {path:?} is not absolute"
                )));
            }
            if t.template.contains('/') || t.template.starts_with('.') || t.template.is_empty() {
                return Err(ImageError::Metadata(format!(
                    "template file {:?} for {path:?} must be a plain name under templates/",
                    t.template
                )));
            }
        }
        Ok(m)
    }
}

/// Splits a member name into components: strips leading `/`, "./" and "." as GNU tar (and so
/// LXD) does when unpacking (Python's tarfile writes `/rootfs/...` when asked), and refuses
/// "..". What the components then name is the caller's rule: an image's layout refuses any
/// top-level entry but its three.
pub fn member_components(name: &str) -> Result<Vec<String>, ImageError> {
    if name.contains('\0') {
        return Err(ImageError::Unsupported {
            member: name.to_string(),
            why: "NUL in name".into(),
        });
    }
    let mut out = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(ImageError::Outside {
                    member: name.chars().take(200).collect(),
                    why: "'..' component".into(),
                })
            }
            c if c.len() > 255 => {
                return Err(ImageError::Unsupported {
                    member: name.chars().take(200).collect(),
                    why: "a component is longer than 255 bytes".into(),
                })
            }
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

/// Reads metadata.yaml (and whether a rootfs/ is present) from a unified or metadata tarball.
/// Returns (metadata, saw a rootfs member).
pub fn read_metadata<R: Read + 'static>(
    file: R,
    limit: u64,
) -> Result<(ImageMetadata, bool), ImageError> {
    let stream = open_tar_stream(file, limit)?;
    let mut ar = tar::Archive::new(stream);
    let mut meta = None;
    let mut rootfs = false;
    let entries = ar.entries().map_err(|e| stream_error("archive", &e))?;
    for e in entries {
        let mut e = e.map_err(|e| stream_error("archive", &e))?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let comps = member_components(&name)?;
        match comps.first().map(String::as_str) {
            Some("metadata.yaml") if comps.len() == 1 => {
                if !e.header().entry_type().is_file() {
                    return Err(ImageError::Metadata(
                        "metadata.yaml is not a regular file".into(),
                    ));
                }
                if e.size() > MAX_METADATA {
                    return Err(ImageError::Metadata(
                        "metadata.yaml is larger than 1 MiB".into(),
                    ));
                }
                let mut buf = Vec::new();
                (&mut e)
                    .take(MAX_METADATA)
                    .read_to_end(&mut buf)
                    .map_err(|err| stream_error("metadata.yaml", &err))?;
                meta = Some(ImageMetadata::parse(&buf)?);
            }
            Some("rootfs") => rootfs = true,
            _ => {}
        }
        if meta.is_some() && rootfs {
            break;
        }
    }
    let meta = meta.ok_or_else(|| ImageError::Metadata("no metadata.yaml in the image".into()))?;
    Ok((meta, rootfs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert_eq!(
            member_components("./rootfs/bin/sh").unwrap(),
            vec!["rootfs", "bin", "sh"]
        );
        // GNU tar's reading: a leading `/` is dropped, and placement decides the rest.
        assert_eq!(
            member_components("//rootfs/etc/inittab").unwrap(),
            vec!["rootfs", "etc", "inittab"]
        );
        assert!(matches!(
            member_components("/rootfs/../x"),
            Err(ImageError::Outside { .. })
        ));
        assert!(matches!(
            member_components("rootfs/../../x"),
            Err(ImageError::Outside { .. })
        ));
        assert!(member_components("rootfs/../../x")
            .unwrap_err()
            .to_string()
            .contains("outside"));
    }

    #[test]
    fn metadata_rules() {
        let ok =
            ImageMetadata::parse(b"architecture: x86_64\ncreation_date: 1\nproperties:\n  os: x\n")
                .unwrap();
        assert_eq!(ok.properties["os"], "x");
        assert!(ImageMetadata::parse(b"creation_date: 1\n").is_err());
        assert!(ImageMetadata::parse(
            b"architecture: x\ncreation_date: 1\ntemplates:\n  /etc/h:\n    template: ../x\n"
        )
        .is_err());
        assert!(ImageMetadata::parse(b"\x00\x01 not yaml: [")
            .unwrap_err()
            .to_string()
            .contains("metadata"));
    }

    /// What LXD's Go decoder takes, silo takes: keys it does not use, numbers and booleans
    /// where a string is meant (kept as written), nulls.
    #[test]
    fn metadata_as_other_tools_write_it() {
        let m = ImageMetadata::parse(
            b"architecture: x86_64\ncreation_date: 1700000000\nexpiry_date: 1900000000\n\
              source: {url: 'https://example'}\nproperties:\n  release: 22.04\n  serial: 20240101\n\
              \x20 version: 1.10\n  lts: true\n  empty: null\n  os: ubuntu\n\
              templates:\n  /etc/hostname:\n    when: [create]\n    template: h.tpl\n\
              \x20   mystery: {a: 1}\n    properties: {n: 5}\n  /etc/hosts:\n    when: null\n\
              \x20   template: hosts.tpl\n",
        )
        .unwrap();
        assert_eq!(m.expiry_date, Some(1900000000));
        assert_eq!(m.properties["release"], "22.04");
        assert_eq!(m.properties["serial"], "20240101");
        assert_eq!(m.properties["version"], "1.10");
        assert_eq!(m.properties["lts"], "true");
        assert_eq!(m.properties["empty"], "");
        assert_eq!(m.templates["/etc/hostname"].properties["n"], "5");
        assert!(m.templates["/etc/hosts"].when.is_empty());
        let m = ImageMetadata::parse(
            b"architecture: x86_64\ncreation_date: 1\nproperties: null\ntemplates: null\nexpiry_date: null\n",
        )
        .unwrap();
        assert!(m.properties.is_empty() && m.templates.is_empty());
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            Compression::sniff(&[0x1f, 0x8b, 8]),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::sniff(b"random bytes"), None);
        // A v7 header: no magic, a valid checksum.
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(b"a/b\0");
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(b"00000000000\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert_eq!(Compression::sniff(&h), Some(Compression::None));
        h[0] = b'z';
        assert_eq!(
            Compression::sniff(&h),
            None,
            "a bad checksum is not a tarball"
        );
        assert_eq!(Compression::sniff(&[0u8; 512]), None);
    }
}
