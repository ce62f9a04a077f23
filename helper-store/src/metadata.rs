//! LXD's instance metadata API: an instance volume's `metadata.yaml` and `templates/`, the
//! files beside its rootfs that templates render from at create, copy and start.
//!
//! Everything is opened beneath the volume's root-owned directory with no symlink followed
//! (the volume came from an image tarball, which may hold any name); a template is one plain
//! name ([`TemplateName`]), so it can never name a path elsewhere. Writes go to a new file
//! renamed over the old one: a reader (a start rendering templates) sees the whole old file or
//! the whole new one, and a symlink planted under the name is replaced, never followed.

use std::io::Write;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag};
use nix::sys::stat::{fstatat, SFlag};
use nix::unistd::UnlinkatFlags;
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::{beneath_how, Root};
use silo_proto::store::{
    MetadataReply, MetadataRequest, TemplateName, MAX_METADATA_FILE, MAX_TEMPLATE_FILE,
};

use crate::templates::read_beneath;

const METADATA: &str = "metadata.yaml";
const TEMPLATES: &str = "templates";

/// Serves one request on the instance volume `vol`; `budget` bounds what a write may add.
pub fn handle(vol: &Root, budget: u64, req: MetadataRequest) -> HelperResult<MetadataReply> {
    match req {
        MetadataRequest::Get => Ok(MetadataReply::Metadata(read_beneath(
            vol,
            METADATA,
            MAX_METADATA_FILE as u64,
        )?)),
        MetadataRequest::Put(data) => {
            if data.len() > MAX_METADATA_FILE {
                return Err(HelperError::invalid(
                    METADATA,
                    format!("larger than {MAX_METADATA_FILE} bytes"),
                ));
            }
            // What a start renders from must parse, or the instance could no longer start.
            silo_proto::image::ImageMetadata::parse(&data)
                .map_err(|e| HelperError::invalid(METADATA, e.to_string()))?;
            write_whole(vol, METADATA, &data, budget)?;
            Ok(MetadataReply::Done)
        }
        MetadataRequest::ListTemplates => {
            if !vol.exists(TEMPLATES)? {
                return Ok(MetadataReply::Templates(Vec::new()));
            }
            let dir = vol.open_dir(&[TEMPLATES])?;
            let mut out = Vec::new();
            for name in dir.list()? {
                // As LXD: every entry but directories.
                let st = fstatat(
                    dir.fd(),
                    name.as_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| HelperError::errno("fstatat", &name, e))?;
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                    out.push(name);
                }
            }
            Ok(MetadataReply::Templates(out))
        }
        MetadataRequest::GetTemplate(name) => {
            let dir = templates_dir(vol, &name)?;
            match read_beneath(&dir, name.as_str(), MAX_TEMPLATE_FILE as u64)? {
                Some(data) => Ok(MetadataReply::Template(data)),
                None => Err(not_found(&name)),
            }
        }
        MetadataRequest::PutTemplate(name, data) => {
            if data.len() > MAX_TEMPLATE_FILE {
                return Err(HelperError::invalid(
                    format!("template {:?}", name.as_str()),
                    format!("larger than {MAX_TEMPLATE_FILE} bytes"),
                ));
            }
            let (dir, _) = vol.mkdir_all(&[TEMPLATES], 0o711)?;
            write_whole(&dir, name.as_str(), &data, budget)?;
            Ok(MetadataReply::Done)
        }
        MetadataRequest::DeleteTemplate(name) => {
            let dir = templates_dir(vol, &name)?;
            match nix::unistd::unlinkat(dir.fd(), name.as_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) => Ok(MetadataReply::Done),
                Err(Errno::ENOENT) => Err(not_found(&name)),
                Err(e) => Err(HelperError::errno("unlinkat", name.as_str(), e)),
            }
        }
    }
}

fn not_found(name: &TemplateName) -> HelperError {
    HelperError::NotFound {
        what: format!("template {:?}", name.as_str()),
    }
}

/// `templates/`, or the template's NotFound when the volume has none.
fn templates_dir(vol: &Root, name: &TemplateName) -> HelperResult<Root> {
    if !vol.exists(TEMPLATES)? {
        return Err(not_found(name));
    }
    vol.open_dir(&[TEMPLATES])
}

/// Writes `data` as `dir/name` (0644, root's): a new file beside it, renamed over it.
fn write_whole(dir: &Root, name: &str, data: &[u8], budget: u64) -> HelperResult<()> {
    if data.len() as u64 > budget {
        return Err(HelperError::invalid(
            name,
            "the pool has no room for it (its reserve is reached)",
        ));
    }
    let rnd = silo_proto::random::bytes::<8>()
        .map_err(|e| HelperError::invalid("random", e.to_string()))?;
    let tmp = format!(
        ".silo-new-{}",
        rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let how = beneath_how(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, 0o644);
    let fd =
        openat2(dir.fd(), tmp.as_str(), how).map_err(|e| HelperError::errno("create", &tmp, e))?;
    let written = (|| {
        nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .map_err(|e| HelperError::errno("fchmod", &tmp, e))?;
        std::fs::File::from(fd)
            .write_all(data)
            .map_err(|e| HelperError::io("write", name, e))?;
        nix::fcntl::renameat(dir.fd(), tmp.as_str(), dir.fd(), name)
            .map_err(|e| HelperError::errno("rename", name, e))
    })();
    if written.is_err() {
        let _ = nix::unistd::unlinkat(dir.fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_are_one_plain_component() {
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a\0b"] {
            assert!(TemplateName::new(bad).is_err(), "{bad:?}");
        }
        assert!(TemplateName::new("x".repeat(256)).is_err());
        for good in ["hostname.tpl", "hosts", "a..b", "x".repeat(255).as_str()] {
            assert!(TemplateName::new(good).is_ok(), "{good:?}");
        }
        // A hostile silod's frame with a bad name does not decode.
        let bad: Result<TemplateName, _> = serde_json::from_str("\"../../etc\"");
        assert!(bad.is_err());
    }
}
