//! A split image's squashfs rootfs, read in user space (no kernel mount).
//!
//! Every uploaded image is hostile, and mounting a squashfs feeds it to the kernel's parser
//! as root. Instead the landlocked unpacking child reads it with `backhand` (a pure-Rust
//! squashfs reader: no exec, which silo-store's filter forbids, and no unsquashfs that would
//! write where the image says) and re-encodes it, member by member, as a tar stream on a pipe
//! that the tarball extractor (`silo_proto::image::extract`) reads: the same member checks,
//! limits, device-node and set-user-id handling as a rootfs tarball, by construction.
//! squashfs hard links become copies (the format does not mark them); extended attributes
//! are not carried (the reader does not decode them), so file capabilities stay behind.

use std::io::{BufReader, Read, Write};

use backhand::{FilesystemReader, InnerNode};
use silo_proto::image::ImageError;

/// Whether the file starts with squashfs's magic.
pub fn is_squashfs(f: &std::fs::File) -> bool {
    let mut magic = [0u8; 4];
    matches!(std::os::unix::fs::FileExt::read_at(f, &mut magic, 0), Ok(4)) && &magic == b"hsqs"
}

fn bad(e: impl std::fmt::Display) -> ImageError {
    ImageError::Format(format!("rootfs squashfs: {e}"))
}

/// Writes the squashfs `src` as a tar stream of its tree (root-relative names) to `out`,
/// refusing up front a file whose declared size would cross `max_bytes` (a sparse giant is
/// never decompressed) and more than `max_entries` members.
pub fn to_tar(
    src: std::fs::File,
    out: impl Write,
    max_bytes: u64,
    max_entries: u64,
) -> Result<(), ImageError> {
    let fs = FilesystemReader::from_reader(BufReader::new(src)).map_err(bad)?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let (mut bytes, mut entries) = (0u64, 0u64);
    for node in fs.files() {
        let rel = node.fullpath.strip_prefix("/").unwrap_or(&node.fullpath);
        if rel.as_os_str().is_empty() {
            continue;
        }
        entries += 1;
        if entries > max_entries {
            return Err(ImageError::Limit {
                what: "entries".into(),
                limit: max_entries,
            });
        }
        let member = rel.display().to_string();
        let mut h = tar::Header::new_gnu();
        h.set_mode(u32::from(node.header.permissions) & 0o7777);
        h.set_uid(u64::from(node.header.uid));
        h.set_gid(u64::from(node.header.gid));
        h.set_mtime(u64::from(node.header.mtime));
        h.set_size(0);
        // A name tar refuses (`..`, absolute) is the image's fault: refused by name.
        let refuse = |e: std::io::Error| ImageError::Unsupported {
            member: member.chars().take(200).collect(),
            why: format!("squashfs member refused: {e}"),
        };
        match &node.inner {
            InnerNode::Dir(_) => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, rel, std::io::empty())
                    .map_err(refuse)?;
            }
            InnerNode::File(f) => {
                let size = f.file_len() as u64;
                if bytes.saturating_add(size) > max_bytes {
                    return Err(ImageError::Limit {
                        what: "bytes of file data".into(),
                        limit: max_bytes,
                    });
                }
                bytes += size;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                // Exactly `size` bytes, whatever the blocks decode to: a short file is
                // caught by the extractor as truncated, a long one is cut.
                let mut data = Checked {
                    inner: fs.file(f).reader().take(size),
                    left: size,
                };
                b.append_data(&mut h, rel, &mut data).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        // The extractor stopped reading: its error is the one to report.
                        ImageError::Truncated(member.clone())
                    } else {
                        bad(format!("{member}: {e}"))
                    }
                })?;
            }
            InnerNode::Symlink(l) => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, rel, &l.link).map_err(refuse)?;
            }
            InnerNode::CharacterDevice(_) | InnerNode::BlockDevice(_) => {
                // Passed on as what it is, so the extractor skips and counts it.
                h.set_entry_type(match node.inner {
                    InnerNode::CharacterDevice(_) => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                });
                b.append_data(&mut h, rel, std::io::empty())
                    .map_err(refuse)?;
            }
            InnerNode::NamedPipe => {
                h.set_entry_type(tar::EntryType::Fifo);
                b.append_data(&mut h, rel, std::io::empty())
                    .map_err(refuse)?;
            }
            // No tar member type; a socket file means nothing in an image.
            InnerNode::Socket => {}
        }
    }
    b.finish()
        .map_err(|e| ImageError::Truncated(format!("tar end: {e}")))?;
    Ok(())
}

/// A file's data that fails (rather than ends early) when the squashfs holds less than the
/// size it declared, so a corrupt image is named as such.
struct Checked<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes missing", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
