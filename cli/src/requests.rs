//! Requests that involve another server, built as the stock `lxc` 5.0 client builds them
//! (`CreateInstanceFromImage`, `CopyImage`, `remote add`): an image on a remote is resolved
//! here, on the client, and the target server is told where to pull it from.

use serde_json::Value;
use silo_api::{paths, CertificatesPost, ImageAlias, ImagesPost, ImagesPostSource, InstanceSource};

use crate::client::{Client, ClientError};
use crate::commands::CmdError;
use crate::remotes::Config;

/// An image on a remote server, as the target server needs to know it to pull it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteImage {
    /// The remote's address (`https://host:port`, or a simplestreams URL).
    pub server: String,
    /// `lxd` or `simplestreams`.
    pub protocol: String,
    /// The pinned server certificate (PEM) of an `lxd` remote; empty when the system's
    /// CAs vouch for it.
    pub certificate: String,
    /// The alias the user named, if it was one.
    pub alias: String,
    /// The image's fingerprint (for simplestreams without resolution: what the user named).
    pub fingerprint: String,
    /// Whether untrusted clients may read it.
    pub public: bool,
    /// A one-time secret for a private image (`POST /1.0/images/<fp>/secret`).
    pub secret: String,
    /// The image's own aliases (for --copy-aliases).
    pub aliases: Vec<ImageAlias>,
}

/// `POST /1.0/certificates` adding the caller's TLS certificate with a trust password (or,
/// as lxc 5.0 sends it, a whole trust token).
pub fn certificate_add(password: &str) -> CertificatesPost {
    CertificatesPost {
        kind: "client".into(),
        password: password.into(),
        ..Default::default()
    }
}

/// The `source` of `POST /1.0/instances` for an image on another server: a public image by
/// its alias when one was named, else by fingerprint (with the secret of a private one).
pub fn instance_source(img: &RemoteImage) -> InstanceSource {
    let by_alias = !img.alias.is_empty() && img.public;
    InstanceSource {
        kind: "image".into(),
        mode: "pull".into(),
        server: img.server.clone(),
        protocol: img.protocol.clone(),
        certificate: img.certificate.clone(),
        alias: if by_alias {
            img.alias.clone()
        } else {
            String::new()
        },
        fingerprint: if by_alias {
            String::new()
        } else {
            img.fingerprint.clone()
        },
        secret: if img.public {
            String::new()
        } else {
            img.secret.clone()
        },
        ..Default::default()
    }
}

/// What `silo image copy` asks for beyond the image itself.
#[derive(Debug, Clone, Default)]
pub struct CopyOpts {
    /// New aliases on the target.
    pub aliases: Vec<String>,
    /// Copy the source image's aliases too.
    pub copy_aliases: bool,
    /// Keep the copy updated from the source.
    pub auto_update: bool,
    /// Make the copy public.
    pub public: bool,
}

/// `POST /1.0/images` pulling `img` from its server.
pub fn image_copy(img: &RemoteImage, o: &CopyOpts) -> ImagesPost {
    let mut aliases: Vec<ImageAlias> = if o.copy_aliases {
        img.aliases.clone()
    } else {
        Vec::new()
    };
    for a in &o.aliases {
        aliases.push(ImageAlias {
            name: a.clone(),
            ..Default::default()
        });
    }
    ImagesPost {
        aliases,
        auto_update: o.auto_update,
        public: o.public,
        source: ImagesPostSource {
            kind: "image".into(),
            mode: "pull".into(),
            server: img.server.clone(),
            protocol: img.protocol.clone(),
            certificate: img.certificate.clone(),
            fingerprint: img.fingerprint.clone(),
            secret: if img.public {
                String::new()
            } else {
                img.secret.clone()
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Finds `name` (an alias or a fingerprint) on `remote` and, for a private image, asks the
/// remote for a one-time secret the target server will present.
pub async fn resolve(conf: &Config, remote: &str, name: &str) -> Result<RemoteImage, CmdError> {
    let r = conf.remote(remote)?.clone();
    if r.protocol() == "simplestreams" {
        // The index is read here as lxc reads it: a name the server lacks is said before the
        // target is asked, and --copy-aliases has the image's aliases. Every simplestreams
        // image is public and the target resolves the name itself (and keeps it as the
        // alias it follows on refresh), so the name is sent as both alias and fingerprint.
        let catalog = crate::simplestreams::catalog(conf, remote).await?;
        let image = catalog.find(remote, name)?;
        return Ok(RemoteImage {
            server: r.addr,
            protocol: "simplestreams".into(),
            alias: name.into(),
            fingerprint: name.into(),
            public: true,
            aliases: image.aliases.clone(),
            ..Default::default()
        });
    }
    let client = conf.client(remote)?;
    let (alias, target) = match client.image_alias(name).await {
        Ok(a) => (name.to_string(), a.target),
        Err(ClientError::Api(_)) => (String::new(), name.to_string()),
        Err(e) => return Err(e.into()),
    };
    let image = client.image(&target).await?;
    let secret = if image.public {
        String::new()
    } else {
        image_secret(&client, &image.fingerprint).await?
    };
    Ok(RemoteImage {
        server: r.addr,
        protocol: "lxd".into(),
        certificate: conf.pinned_pem(remote).unwrap_or_default(),
        alias,
        fingerprint: image.fingerprint,
        public: image.public,
        secret,
        aliases: image.aliases,
    })
}

/// `POST /1.0/images/<fp>/secret`: the secret is in the operation's metadata. The operation
/// stays running until the secret is used, so it is not waited for (as lxc does).
pub async fn image_secret(client: &Client, fingerprint: &str) -> Result<String, CmdError> {
    let path = format!("{}/secret", paths::image(fingerprint));
    let op = client.query("POST", &path, None).await?;
    secret_of(&op).ok_or_else(|| {
        CmdError::Fail(format!(
            "the image server gave no secret for private image {fingerprint}"
        ))
    })
}

fn secret_of(op: &Value) -> Option<String> {
    op.get("metadata")
        .and_then(|m| m.get("secret"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The progress an operation reports (`*_progress` metadata keys, as lxc prints them).
pub fn progress_text(metadata: &Value) -> Option<String> {
    let m = metadata.as_object()?;
    let mut parts: Vec<String> = m
        .iter()
        .filter(|(k, _)| k.ends_with("_progress"))
        .filter_map(|(_, v)| v.as_str().map(str::to_string))
        .collect();
    parts.sort();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lxd_image(public: bool) -> RemoteImage {
        RemoteImage {
            server: "https://10.0.0.1:8443".into(),
            protocol: "lxd".into(),
            certificate: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            alias: "bb".into(),
            fingerprint: "ab".repeat(32),
            public,
            secret: if public { String::new() } else { "s3".into() },
            aliases: vec![ImageAlias {
                name: "bb".into(),
                description: String::new(),
            }],
        }
    }

    #[test]
    fn instance_source_public_alias() {
        let v = serde_json::to_value(instance_source(&lxd_image(true))).expect("json");
        assert_eq!(v["type"], "image");
        assert_eq!(v["mode"], "pull");
        assert_eq!(v["alias"], "bb");
        assert_eq!(v["fingerprint"], "");
        assert_eq!(v["server"], "https://10.0.0.1:8443");
        assert_eq!(v["protocol"], "lxd");
        assert!(v["certificate"]
            .as_str()
            .expect("cert")
            .contains("BEGIN CERTIFICATE"));
        assert!(v.get("secret").is_none());
    }

    #[test]
    fn instance_source_private_uses_fingerprint_and_secret() {
        let v = serde_json::to_value(instance_source(&lxd_image(false))).expect("json");
        assert_eq!(v["alias"], "");
        assert_eq!(v["fingerprint"], "ab".repeat(32));
        assert_eq!(v["secret"], "s3");
    }

    #[test]
    fn instance_source_simplestreams() {
        let img = RemoteImage {
            server: "https://images.linuxcontainers.org".into(),
            protocol: "simplestreams".into(),
            alias: "debian/12".into(),
            fingerprint: "debian/12".into(),
            public: true,
            ..Default::default()
        };
        let v = serde_json::to_value(instance_source(&img)).expect("json");
        assert_eq!(
            v,
            json!({"type": "image", "alias": "debian/12", "fingerprint": "", "server":
                "https://images.linuxcontainers.org", "source": "", "instance_only": false,
                "refresh": false, "protocol": "simplestreams", "mode": "pull"})
        );
    }

    #[test]
    fn image_copy_request() {
        let o = CopyOpts {
            aliases: vec!["mine".into()],
            copy_aliases: true,
            auto_update: true,
            public: true,
        };
        let v = serde_json::to_value(image_copy(&lxd_image(false), &o)).expect("json");
        assert_eq!(v["source"]["type"], "image");
        assert_eq!(v["source"]["mode"], "pull");
        assert_eq!(v["source"]["server"], "https://10.0.0.1:8443");
        assert_eq!(v["source"]["protocol"], "lxd");
        assert_eq!(v["source"]["fingerprint"], "ab".repeat(32));
        assert_eq!(v["source"]["secret"], "s3");
        assert!(v["source"]["certificate"]
            .as_str()
            .expect("c")
            .starts_with("-----BEGIN"));
        assert_eq!(v["auto_update"], true);
        assert_eq!(v["public"], true);
        let names: Vec<&str> = v["aliases"]
            .as_array()
            .expect("aliases")
            .iter()
            .filter_map(|a| a["name"].as_str())
            .collect();
        assert_eq!(names, vec!["bb", "mine"]);
        // Without --copy-aliases only the new ones; a public image needs no secret.
        let v =
            serde_json::to_value(image_copy(&lxd_image(true), &CopyOpts::default())).expect("json");
        assert_eq!(v["aliases"], json!([]));
        assert!(v["source"].get("secret").is_none());
        assert!(v.get("auto_update").is_none());
    }

    #[test]
    fn certificate_add_request() {
        let v = serde_json::to_value(certificate_add("pw")).expect("json");
        assert_eq!(v["type"], "client");
        assert_eq!(v["password"], "pw");
        assert_eq!(v["certificate"], "");
    }

    #[test]
    fn secret_and_progress() {
        let op = json!({"id": "x", "class": "token", "metadata": {"secret": "abc"}});
        assert_eq!(secret_of(&op).as_deref(), Some("abc"));
        assert_eq!(secret_of(&json!({"metadata": {}})), None);
        assert_eq!(
            progress_text(&json!({"download_progress": "rootfs: 45% (12.3MB/s)"})).as_deref(),
            Some("rootfs: 45% (12.3MB/s)")
        );
        assert_eq!(progress_text(&json!({"fingerprint": "ab"})), None);
    }
}
