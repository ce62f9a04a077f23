//! Packing a volume (an instance's or a snapshot's) into an image tarball in LXD's unified
//! format: `metadata.yaml`, `templates/`, `rootfs/`. It runs in a child landlocked to the
//! volume (read) with the output file already open, so a tree that is not what it seems (a
//! planted symlink) cannot make it read anything else; symlinks are stored, never followed.

use std::io::Write;
use std::path::Path;

use super::{Compression, ImageMetadata};

/// Packs `volume` (a directory holding `rootfs/` and maybe `metadata.yaml` and `templates/`)
/// into `out`. `meta` replaces the volume's metadata.yaml.
pub fn pack(
    volume: &Path,
    out: std::fs::File,
    compression: Compression,
    meta: &ImageMetadata,
) -> Result<(), String> {
    let yaml = serde_norway::to_string(meta).map_err(|e| format!("metadata.yaml: {e}"))?;
    if !std::fs::symlink_metadata(volume.join("rootfs")).is_ok_and(|m| m.is_dir()) {
        return Err("the volume has no rootfs/ directory".into());
    }
    let mut dirs = Vec::new();
    let templates = volume.join("templates");
    if std::fs::symlink_metadata(&templates).is_ok_and(|m| m.is_dir()) {
        dirs.push(("templates".to_string(), templates));
    }
    dirs.push(("rootfs".to_string(), volume.join("rootfs")));
    pack_tree(
        out,
        compression,
        meta.creation_date,
        &[("metadata.yaml".to_string(), yaml.into_bytes())],
        &dirs,
    )
}

/// Writes a tarball of `files` (name, content) and then of directory trees (name in the
/// archive, directory), symlinks stored as symlinks.
pub fn pack_tree(
    out: std::fs::File,
    compression: Compression,
    mtime: i64,
    files: &[(String, Vec<u8>)],
    dirs: &[(String, std::path::PathBuf)],
) -> Result<(), String> {
    pack_tree_with(out, compression, mtime, files, dirs, Vec::new())
}

/// [`pack_tree`], then whole files (name, open file) appended as regular members.
pub fn pack_tree_with(
    out: std::fs::File,
    compression: Compression,
    mtime: i64,
    files: &[(String, Vec<u8>)],
    dirs: &[(String, std::path::PathBuf)],
    blobs: Vec<(String, std::fs::File)>,
) -> Result<(), String> {
    let sink: Box<dyn Write> = match compression {
        Compression::None => Box::new(out),
        Compression::Gzip => Box::new(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::default(),
        )),
        Compression::Xz => Box::new(liblzma::write::XzEncoder::new(out, 6)),
        Compression::Zstd => Box::new(
            zstd::stream::write::Encoder::new(out, 3)
                .map_err(|e| format!("zstd: {e}"))?
                .auto_finish(),
        ),
    };
    let mut b = tar::Builder::new(sink);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime.max(0) as u64);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice())
            .map_err(|e| format!("writing {name}: {e}"))?;
    }
    for (name, dir) in dirs {
        append_tree(&mut b, Path::new(name), dir).map_err(|e| format!("packing {name}/: {e}"))?;
    }
    for (name, mut f) in blobs {
        use std::io::Seek;
        let size = f.metadata().map_err(|e| format!("{name}: {e}"))?.len();
        f.rewind().map_err(|e| format!("{name}: {e}"))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(mtime.max(0) as u64);
        h.set_cksum();
        b.append_data(&mut h, &name, f)
            .map_err(|e| format!("writing {name}: {e}"))?;
    }
    let mut sink = b
        .into_inner()
        .map_err(|e| format!("finishing the tarball: {e}"))?;
    sink.flush()
        .map_err(|e| format!("writing the tarball: {e}"))
}

/// The extended attributes of `f` as a PAX header for the member that follows.
fn append_xattrs<W: Write>(b: &mut tar::Builder<W>, f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let attrs = super::xattr::read(f.as_fd())?;
    if attrs.is_empty() {
        return Ok(());
    }
    let records: Vec<(String, Vec<u8>)> = attrs
        .into_iter()
        .map(|(n, v)| {
            (
                format!(
                    "{}{}",
                    super::xattr::PAX_PREFIX,
                    String::from_utf8_lossy(&n)
                ),
                v,
            )
        })
        .collect();
    b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

/// Appends `dir` as `name/...`: directories, regular files, symlinks (stored, never followed)
/// and fifos with their owners, modes, times and (files and directories) extended attributes; a regular file's further hard links as link
/// members, as LXD's and GNU tar's do; sockets and device nodes left out (an instance's /dev is
/// silo's own, and a socket cannot be archived).
fn append_tree<W: Write>(b: &mut tar::Builder<W>, name: &Path, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let mut links: std::collections::HashMap<(u64, u64), std::path::PathBuf> =
        std::collections::HashMap::new();
    let mut stack = vec![(dir.to_path_buf(), name.to_path_buf())];
    let mut top = true;
    while let Some((src, arc)) = stack.pop() {
        // The top is the caller's own path to the tree (often /proc/self/fd/N): followed;
        // nothing beneath it ever is.
        let is_top = std::mem::take(&mut top);
        let meta = if is_top {
            std::fs::metadata(&src)?
        } else {
            std::fs::symlink_metadata(&src)?
        };
        let ft = meta.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if ft.is_dir() {
            h.set_size(0);
            let nofollow = if is_top { 0 } else { libc::O_NOFOLLOW };
            let d = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nofollow | libc::O_DIRECTORY)
                .open(&src)?;
            append_xattrs(b, &d)?;
            b.append_data(&mut h, &arc, std::io::empty())?;
            let mut children = std::fs::read_dir(&src)?.collect::<Result<Vec<_>, _>>()?;
            // Popped in name order.
            children.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
            for e in children {
                stack.push((e.path(), arc.join(e.file_name())));
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&src)?;
            h.set_size(0);
            b.append_link(&mut h, &arc, &target)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &arc, first)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), arc.clone());
            }
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&src)?;
            append_xattrs(b, &f)?;
            b.append_data(&mut h, &arc, f)?;
        } else if ft.is_fifo() {
            h.set_size(0);
            b.append_data(&mut h, &arc, std::io::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_what_read_metadata_accepts_and_keeps_symlinks() {
        let dir = tempfile::tempdir().expect("tmp");
        let v = dir.path();
        std::fs::create_dir_all(v.join("rootfs/etc")).expect("mkdir");
        std::fs::write(v.join("rootfs/etc/hostname"), "x\n").expect("write");
        std::os::unix::fs::symlink("/etc/shadow", v.join("rootfs/leak")).expect("symlink");
        std::fs::create_dir_all(v.join("templates")).expect("mkdir");
        std::fs::write(v.join("templates/hostname.tpl"), "{{ container.name }}").expect("write");
        let meta = ImageMetadata {
            architecture: "x86_64".into(),
            creation_date: 1_700_000_000,
            expiry_date: None,
            properties: [("os".to_string(), "busybox".to_string())]
                .into_iter()
                .collect(),
            templates: Default::default(),
        };
        for c in [
            Compression::Gzip,
            Compression::None,
            Compression::Xz,
            Compression::Zstd,
        ] {
            let out = tempfile::tempfile().expect("out");
            pack(v, out.try_clone().expect("dup"), c, &meta).expect("pack");
            let mut f = out;
            std::io::Seek::rewind(&mut f).expect("rewind");
            let (m, has_rootfs) = super::super::read_metadata(f, 1 << 30).expect("read back");
            assert!(has_rootfs);
            assert_eq!(m.properties["os"], "busybox");
        }
        // The symlink is stored as a symlink (the host's /etc/shadow is not read).
        let out = tempfile::tempfile().expect("out");
        pack(v, out.try_clone().expect("dup"), Compression::None, &meta).expect("pack");
        let mut f = out;
        std::io::Seek::rewind(&mut f).expect("rewind");
        let mut ar = tar::Archive::new(f);
        let leak = ar
            .entries()
            .expect("entries")
            .flatten()
            .find(|e| e.path().map(|p| p.ends_with("leak")).unwrap_or(false))
            .expect("leak entry");
        assert_eq!(leak.header().entry_type(), tar::EntryType::Symlink);
        assert_eq!(leak.header().size().expect("size"), 0);
    }

    #[test]
    fn hard_links_and_extended_attributes_come_back() {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tmp");
        let v = dir.path().join("vol");
        std::fs::create_dir_all(v.join("rootfs/a/b")).expect("mkdir");
        std::fs::write(v.join("rootfs/a/x"), "x\n").expect("write");
        std::fs::hard_link(v.join("rootfs/a/x"), v.join("rootfs/a/b/y")).expect("link");
        let set = |p: &std::path::Path, n: &[u8], val: &[u8]| {
            let f = std::fs::File::open(p).expect("open");
            super::super::xattr::set(f.as_fd(), n, val).expect("setxattr");
        };
        set(&v.join("rootfs/a/x"), b"user.silo", b"file");
        set(&v.join("rootfs/a/b"), b"user.silo", b"dir");
        let meta = ImageMetadata {
            architecture: "x86_64".into(),
            creation_date: 1_700_000_000,
            expiry_date: None,
            properties: Default::default(),
            templates: Default::default(),
        };
        let out = tempfile::tempfile().expect("out");
        pack(&v, out.try_clone().expect("dup"), Compression::Zstd, &meta).expect("pack");
        let mut f = out;
        std::io::Seek::rewind(&mut f).expect("rewind");
        let target = dir.path().join("out");
        std::fs::create_dir(&target).expect("mkdir");
        let root = std::fs::File::open(&target).expect("open");
        let s = super::super::open_tar_stream(f, 1 << 30).expect("stream");
        super::super::extract::extract(
            s,
            root.as_fd(),
            super::super::extract::Layout::Unified,
            &super::super::extract::Limits {
                max_bytes: 1 << 30,
                max_entries: 1000,
            },
        )
        .expect("extract");
        let (x, y) = (
            std::fs::metadata(target.join("rootfs/a/x")).expect("x"),
            std::fs::metadata(target.join("rootfs/a/b/y")).expect("y"),
        );
        assert_eq!((x.ino(), x.nlink()), (y.ino(), 2));
        let get = |p: &std::path::Path| {
            let f = std::fs::File::open(p).expect("open");
            super::super::xattr::read(f.as_fd()).expect("read")
        };
        assert_eq!(
            get(&target.join("rootfs/a/x")),
            vec![(b"user.silo".to_vec(), b"file".to_vec())]
        );
        assert_eq!(
            get(&target.join("rootfs/a/b")),
            vec![(b"user.silo".to_vec(), b"dir".to_vec())]
        );
    }
}
