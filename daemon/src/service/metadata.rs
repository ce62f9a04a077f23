//! An instance's `metadata.yaml` and templates (LXD's `/1.0/instances/<name>/metadata`): the
//! files beside its rootfs that templates render from at create, copy and start. silo-store
//! reads and writes them beneath the volume; silod only converts between YAML and JSON.

use serde_json::json;
use silo_api::ImageMetadata;
use silo_proto::store::{MetadataReply, MetadataRequest, TemplateName};
use silo_proto::{PoolName, VolumeName};

use crate::service::{instances, DomainError, Services};

async fn call(
    c: &Services,
    name: &str,
    req: MetadataRequest,
) -> Result<MetadataReply, DomainError> {
    let i = instances::get(&c.db, name)?;
    let pool = PoolName::new(i.pool).map_err(|e| DomainError::Internal(e.to_string()))?;
    let vol = VolumeName::new(i.name).map_err(|e| DomainError::Internal(e.to_string()))?;
    Ok(c.helpers.store.instance_metadata(pool, vol, req).await?)
}

fn unexpected(r: MetadataReply) -> DomainError {
    DomainError::Internal(format!("silo-store answered {r:?}"))
}

fn template_name(t: &str) -> Result<TemplateName, DomainError> {
    TemplateName::new(t).map_err(|e| DomainError::BadRequest(e.to_string()))
}

fn lifecycle(c: &Services, action: &str, name: &str, ctx: serde_json::Value) {
    c.events
        .lifecycle(action, &format!("/1.0/instances/{name}"), ctx);
}

/// The instance's metadata (empty when its volume has no metadata.yaml, as LXD answers).
pub async fn get(c: &Services, name: &str) -> Result<ImageMetadata, DomainError> {
    let MetadataReply::Metadata(data) = call(c, name, MetadataRequest::Get).await? else {
        return Err(DomainError::Internal(
            "silo-store answered no metadata".into(),
        ));
    };
    let Some(data) = data else {
        return Ok(ImageMetadata::default());
    };
    let v: serde_json::Value = serde_norway::from_slice(&data)
        .map_err(|e| DomainError::Internal(format!("metadata.yaml: {e}")))?;
    silo_api::lenient::from_yaml_value(v)
        .map_err(|e| DomainError::Internal(format!("metadata.yaml: {e}")))
}

/// Replaces the instance's metadata.yaml.
pub async fn put(c: &Services, name: &str, md: &ImageMetadata) -> Result<(), DomainError> {
    let yaml = serde_norway::to_string(md)
        .map_err(|e| DomainError::BadRequest(format!("metadata: {e}")))?;
    match call(c, name, MetadataRequest::Put(yaml.into_bytes())).await? {
        MetadataReply::Done => {}
        r => return Err(unexpected(r)),
    }
    lifecycle(c, "instance-metadata-updated", name, json!({}));
    Ok(())
}

/// The names of the instance's template files.
pub async fn templates(c: &Services, name: &str) -> Result<Vec<String>, DomainError> {
    match call(c, name, MetadataRequest::ListTemplates).await? {
        MetadataReply::Templates(t) => Ok(t),
        r => Err(unexpected(r)),
    }
}

/// One template's contents.
pub async fn template(c: &Services, name: &str, t: &str) -> Result<Vec<u8>, DomainError> {
    let tn = template_name(t)?;
    match call(c, name, MetadataRequest::GetTemplate(tn)).await? {
        MetadataReply::Template(d) => {
            lifecycle(
                c,
                "instance-metadata-template-retrieved",
                name,
                json!({"path": t}),
            );
            Ok(d)
        }
        r => Err(unexpected(r)),
    }
}

/// Creates or replaces a template.
pub async fn template_put(
    c: &Services,
    name: &str,
    t: &str,
    data: Vec<u8>,
) -> Result<(), DomainError> {
    let tn = template_name(t)?;
    if data.len() > silo_proto::store::MAX_TEMPLATE_FILE {
        return Err(DomainError::BadRequest(format!(
            "template {t:?} is larger than {} bytes",
            silo_proto::store::MAX_TEMPLATE_FILE
        )));
    }
    match call(c, name, MetadataRequest::PutTemplate(tn, data)).await? {
        MetadataReply::Done => {}
        r => return Err(unexpected(r)),
    }
    lifecycle(
        c,
        "instance-metadata-template-created",
        name,
        json!({"path": t}),
    );
    Ok(())
}

/// Removes a template.
pub async fn template_delete(c: &Services, name: &str, t: &str) -> Result<(), DomainError> {
    let tn = template_name(t)?;
    match call(c, name, MetadataRequest::DeleteTemplate(tn)).await? {
        MetadataReply::Done => {}
        r => return Err(unexpected(r)),
    }
    lifecycle(
        c,
        "instance-metadata-template-deleted",
        name,
        json!({"path": t}),
    );
    Ok(())
}
