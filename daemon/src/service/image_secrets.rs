//! What an untrusted caller may read of images: public ones, and a private one through a
//! secret (`POST /1.0/images/<fp>/secret`, LXD's image token, as `lxc image copy` and
//! `lxc launch other:img` use it to let another server fetch a private image).

use std::collections::BTreeMap;

use serde_json::json;

use crate::model::image::Image;
use crate::model::trust::CallerKind;
use crate::service::images::{self, Alias};
use crate::service::operations::Operation;
use crate::service::{DomainError, Services};

/// The operation class and description of an image secret, as LXD names them.
pub const CLASS: &str = "token";
/// See [`CLASS`].
pub const DESCRIPTION: &str = "Image download token";

/// How long an unused image secret lasts (LXD's never expire; a forgotten one should not stay
/// a way to a private image).
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

fn images_of(op: &Operation) -> Vec<String> {
    op.resources.get("images").cloned().unwrap_or_default()
}

/// Makes a secret for image `fp` (a trusted caller's request).
pub fn create(c: &Services, fp: &str) -> Result<Operation, DomainError> {
    let secret = silo_proto::random::bytes::<32>()
        .map(hex::encode)
        .map_err(|e| DomainError::Internal(format!("no random bytes for the secret: {e}")))?;
    let mut resources = BTreeMap::new();
    resources.insert("images".to_string(), vec![silo_api::paths::image(fp)]);
    Ok(c.ops.start_full(
        crate::service::operations::Operations::new_id(),
        CLASS,
        DESCRIPTION,
        resources,
        json!({ "secret": secret }),
        true,
        |_ctx| async {
            tokio::time::sleep(LIFETIME).await;
            Err(DomainError::Forbidden("the image secret expired".into()))
        },
    ))
}

/// The running secret operation for image `fp` whose secret is `secret`.
fn find(c: &Services, fp: &str, secret: &str) -> Option<Operation> {
    if secret.is_empty() {
        return None;
    }
    let url = silo_api::paths::image(fp);
    c.ops.list().into_iter().find(|o| {
        o.class == CLASS
            && o.description == DESCRIPTION
            && o.status_code == 103
            && images_of(o).contains(&url)
            && o.metadata.get("secret").and_then(|s| s.as_str()) == Some(secret)
    })
}

/// Whether `kind` may read image `img` (with `secret`, if the client gave one). Trusted
/// callers see everything; others public images, or the one their secret names.
pub fn may_read(c: &Services, kind: CallerKind, img: &Image, secret: Option<&str>) -> bool {
    kind.trusted() || img.public || find(c, &img.fingerprint, secret.unwrap_or("")).is_some()
}

/// After an export with a secret: the secret is used up.
fn consume(c: &Services, fp: &str, secret: Option<&str>) {
    if let Some(op) = find(c, fp, secret.unwrap_or("")) {
        let _ = c.ops.cancel(&op.id);
    }
}

/// The images `kind` may list: all of them when trusted, else the public ones.
pub fn listable(c: &Services, kind: CallerKind) -> Result<Vec<Image>, DomainError> {
    let mut all = images::list(&c.db)?;
    if !kind.trusted() {
        all.retain(|i| i.public);
    }
    Ok(all)
}

/// Image `fp` (a fingerprint or unique prefix) if `kind` may read it (with `secret`, if the
/// client gave one). To an untrusted caller an image it may not read, or a prefix private
/// images share, is "not found": "ambiguous" would tell it that those images exist.
pub fn readable(
    c: &Services,
    kind: CallerKind,
    fp: &str,
    secret: Option<&str>,
) -> Result<Image, DomainError> {
    let hidden = || DomainError::NotFound(format!("image {fp:?} not found"));
    let img = match images::resolve_exact_or_prefix(&c.db, fp) {
        Ok(i) => i,
        Err(DomainError::BadRequest(_)) if !kind.trusted() => return Err(hidden()),
        Err(e) => return Err(e),
    };
    if !may_read(c, kind, &img, secret) {
        return Err(hidden());
    }
    Ok(img)
}

/// [`readable`] for a download: a secret that let an untrusted caller through is used up.
pub fn exportable(
    c: &Services,
    kind: CallerKind,
    fp: &str,
    secret: Option<&str>,
) -> Result<Image, DomainError> {
    let img = readable(c, kind, fp, secret)?;
    if !kind.trusted() && !img.public {
        consume(c, &img.fingerprint, secret);
    }
    Ok(img)
}

/// The aliases `kind` may see: all when trusted, else those of public images.
pub fn visible_aliases(c: &Services, kind: CallerKind) -> Result<Vec<Alias>, DomainError> {
    let mut all = images::aliases(&c.db)?;
    if !kind.trusted() {
        let public: std::collections::HashSet<String> = listable(c, kind)?
            .into_iter()
            .map(|i| i.fingerprint)
            .collect();
        all.retain(|a| public.contains(&a.target));
    }
    Ok(all)
}

/// Whether `kind` may see alias `a`.
pub fn alias_visible(c: &Services, kind: CallerKind, a: &Alias) -> Result<bool, DomainError> {
    Ok(kind.trusted() || images::get(&c.db, &a.target)?.is_some_and(|i| i.public))
}
