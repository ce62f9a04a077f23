//! Image templates (metadata.yaml `templates:`), rendered into an instance's rootfs at create,
//! copy and start, as LXD does (e.g. /etc/hostname from `{{ container.name }}`).
//!
//! LXD renders with pongo2; silo renders the variable subset images use in practice
//! (`container.*` / `instance.*`, `properties.*`, `trigger`, `path`, `config_get(...)`) and
//! refuses templates with logic blocks (`{% %}`) rather than write a half-rendered file.
//! Targets are written through the files layer: resolved inside the rootfs, never through a
//! symlink (the template escapes behind CVE-2026-48749 and CVE-2026-48752).

use std::collections::BTreeMap;
use std::io::Read;

use nix::fcntl::{openat2, OFlag};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::image::ImageMetadata;
use silo_proto::jail::beneath::Root;
use silo_proto::store::{FileKind, FilePut, TemplateVars};

/// Largest template file.
const MAX_TEMPLATE: u64 = 1 << 20;

pub(crate) fn read_beneath(dir: &Root, rel: &str, max: u64) -> HelperResult<Option<Vec<u8>>> {
    let how = silo_proto::jail::beneath::beneath_how(OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0);
    let fd = match openat2(dir.fd(), rel, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(HelperError::errno("open", rel, e)),
    };
    let f = std::fs::File::from(fd);
    let meta = f.metadata().map_err(|e| HelperError::io("stat", rel, e))?;
    if !meta.is_file() || meta.len() > max {
        return Err(HelperError::invalid(
            rel,
            format!("not a regular file of at most {max} bytes"),
        ));
    }
    let mut out = Vec::new();
    f.take(max)
        .read_to_end(&mut out)
        .map_err(|e| HelperError::io("read", rel, e))?;
    Ok(Some(out))
}

fn value(
    expr: &str,
    v: &TemplateVars,
    path: &str,
    props: &BTreeMap<String, String>,
) -> Option<String> {
    let e = expr.trim();
    let e = e.split('|').next().unwrap_or(e).trim();
    if let Some(args) = e
        .strip_prefix("config_get(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let parts: Vec<String> = args
            .split(',')
            .map(|a| a.trim().trim_matches('"').trim_matches('\'').to_string())
            .collect();
        let key = parts.first()?;
        return Some(
            v.config
                .get(key)
                .cloned()
                .unwrap_or_else(|| parts.get(1).cloned().unwrap_or_default()),
        );
    }
    let field = e
        .strip_prefix("container.")
        .or_else(|| e.strip_prefix("instance."));
    if let Some(f) = field {
        return match f {
            "name" => Some(v.name.clone()),
            "architecture" => Some(v.architecture.clone()),
            "privileged" => Some(v.privileged.to_string()),
            "ephemeral" => Some(v.ephemeral.to_string()),
            "type" => Some("container".into()),
            _ => None,
        };
    }
    if let Some(k) = e.strip_prefix("properties.") {
        return Some(props.get(k).cloned().unwrap_or_default());
    }
    match e {
        "trigger" => Some(v.trigger.clone()),
        "path" => Some(path.to_string()),
        _ => None,
    }
}

/// Renders one template text.
pub fn render(
    text: &str,
    v: &TemplateVars,
    path: &str,
    props: &BTreeMap<String, String>,
) -> Result<String, String> {
    if text.contains("{%") {
        return Err("uses template logic ({% %}), which silo does not render".into());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find("}}").ok_or("an unclosed {{")?;
        let expr = &after[..j];
        out.push_str(
            &value(expr, v, path, props)
                .ok_or_else(|| format!("unknown variable {:?}", expr.trim()))?,
        );
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The volume's metadata.yaml (the image's, copied with it), if it has one.
pub fn volume_metadata(volume: &Root) -> HelperResult<Option<ImageMetadata>> {
    let Some(md) = read_beneath(volume, "metadata.yaml", silo_proto::image::MAX_METADATA)? else {
        return Ok(None);
    };
    ImageMetadata::parse(&md)
        .map(Some)
        .map_err(|e| HelperError::invalid("metadata.yaml", e.to_string()))
}

/// Renders every template of the instance's image that applies to `vars.trigger`; answers
/// the paths written.
pub fn apply(volume: &Root, rootfs: &Root, vars: &TemplateVars) -> HelperResult<Vec<String>> {
    let Some(md) = read_beneath(volume, "metadata.yaml", silo_proto::image::MAX_METADATA)? else {
        return Ok(Vec::new());
    };
    let md = ImageMetadata::parse(&md)
        .map_err(|e| HelperError::invalid("metadata.yaml", e.to_string()))?;
    let mut written = Vec::new();
    for (path, t) in &md.templates {
        if !t.when.contains(&vars.trigger) {
            continue;
        }
        if t.create_only && vars.trigger != "create" {
            continue;
        }
        let Some(text) = read_beneath(volume, &format!("templates/{}", t.template), MAX_TEMPLATE)?
        else {
            return Err(HelperError::NotFound {
                what: format!("template file {:?} of the image", t.template),
            });
        };
        let text = String::from_utf8_lossy(&text);
        let rendered = render(&text, vars, path, &t.properties)
            .map_err(|why| HelperError::invalid(format!("template {:?}", t.template), why))?;
        let put = FilePut {
            kind: FileKind::File,
            uid: 0,
            gid: 0,
            mode: 0o644,
            append: false,
            target: String::new(),
        };
        match crate::files::put(rootfs, path, &put) {
            Ok(Some(fd)) => {
                std::io::Write::write_all(&mut std::fs::File::from(fd), rendered.as_bytes())
                    .map_err(|e| HelperError::io("write", path, e))?;
                written.push(path.clone());
            }
            Ok(None) => {}
            // A template for a directory the instance removed is skipped, as LXD does.
            Err(HelperError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> TemplateVars {
        TemplateVars {
            trigger: "create".into(),
            name: "c1".into(),
            architecture: "x86_64".into(),
            privileged: false,
            ephemeral: false,
            config: BTreeMap::from([("user.x".to_string(), "y".to_string())]),
        }
    }

    #[test]
    fn renders_the_usual_variables() {
        let p = BTreeMap::from([("k".to_string(), "v".to_string())]);
        assert_eq!(
            render("{{ container.name }}\n", &vars(), "/etc/hostname", &p).expect("r"),
            "c1\n"
        );
        assert_eq!(
            render(
                "127.0.1.1 {{instance.name}} {{ properties.k }} {{ trigger }} {{ path }}",
                &vars(),
                "/etc/hosts",
                &p
            )
            .expect("r"),
            "127.0.1.1 c1 v create /etc/hosts"
        );
        assert_eq!(
            render(
                "{{ config_get(\"user.x\", \"d\") }}{{ config_get(\"user.z\", \"d\") }}",
                &vars(),
                "/",
                &p
            )
            .expect("r"),
            "yd"
        );
        assert!(render("{% if x %}a{% endif %}", &vars(), "/", &p).is_err());
        assert!(render("{{ nope }}", &vars(), "/", &p).is_err());
        assert!(render("{{ open", &vars(), "/", &p).is_err());
    }
}
