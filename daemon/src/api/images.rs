//! `/1.0/images` and `/1.0/images/aliases`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::render;
use super::response::{async_op, sync, sync_etag, ApiResult, DomainError};
use super::ListQuery;
use crate::model::trust::CallerKind;
use crate::service::images::{self, Alias, Received, Upload};
use crate::service::{image_secrets, Services};

/// Largest upload silod takes (64 GiB): daemon-side resource policy.
const MAX_UPLOAD: u64 = 64 << 30;

/// `GET /1.0/images`.
pub async fn list(
    State(d): State<Arc<Services>>,
    Extension(kind): Extension<CallerKind>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let filter = crate::model::filter::Filter::parse(q.filter.as_deref().unwrap_or(""))?;
    let aliases = images::aliases(&d.db)?;
    let objs: Vec<silo_api::Image> = image_secrets::listable(&d, kind)?
        .iter()
        .map(|i| render::image(i, &aliases))
        .filter(|o| filter.accepts(o))
        .collect();
    if q.recursive() {
        Ok(sync(objs))
    } else {
        Ok(sync(
            objs.iter()
                .map(|o| silo_api::paths::image(&o.fingerprint))
                .collect::<Vec<_>>(),
        ))
    }
}

fn header_str<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
    h.get(k).and_then(|v| v.to_str().ok())
}

pub(crate) async fn receive_stream(
    d: &Services,
    mut stream: impl futures::Stream<Item = Result<axum::body::Bytes, String>> + Unpin,
) -> Result<(std::path::PathBuf, u64, sha2::Sha256), DomainError> {
    let mut up = Upload::new(&d.state_dir, MAX_UPLOAD).await?;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                if let Err(e) = up.write(&c).await {
                    let _ = std::fs::remove_file(&up.path);
                    return Err(e);
                }
            }
            Err(e) => {
                let _ = std::fs::remove_file(&up.path);
                return Err(DomainError::BadRequest(format!("reading the upload: {e}")));
            }
        }
    }
    up.finish().await
}

/// `POST /1.0/images`: a raw tarball body, or multipart `metadata` + `rootfs`; or, with a
/// JSON body, publishing an instance or snapshot as an image.
pub async fn create(State(d): State<Arc<Services>>, req: Request) -> ApiResult {
    let headers = req.headers().clone();
    let ctype = header_str(&headers, "content-type")
        .unwrap_or("")
        .to_string();
    if ctype.starts_with("application/json") {
        return publish(&d, req).await;
    }
    let public = matches!(
        header_str(&headers, "x-lxd-public"),
        Some("1") | Some("true")
    );
    let filename = header_str(&headers, "x-lxd-filename")
        .unwrap_or("")
        .to_string();
    let mut properties = BTreeMap::new();
    if let Some(p) = header_str(&headers, "x-lxd-properties") {
        let parsed: Vec<(String, String)> = serde_urlencoded::from_str(p)
            .map_err(|e| DomainError::BadRequest(format!("invalid X-LXD-properties: {e}")))?;
        properties.extend(parsed);
    }
    let (main, rootfs) = receive_parts(&d, req, &ctype).await?;
    let fingerprint = fingerprint_of(&main, rootfs.as_ref()).await?;
    check_expected_fingerprint(&headers, &fingerprint, &main, rootfs.as_ref())?;
    let received = Received {
        main: (main.0, main.1),
        rootfs: rootfs.map(|r| (r.0, r.1)),
        fingerprint,
        filename,
        public,
        properties,
        aliases: Vec::new(),
    };
    let db = d.db.clone();
    let state = d.state_dir.clone();
    let events = d.events.clone();
    let op = d.ops.start(
        "task",
        "Downloading image",
        BTreeMap::new(),
        false,
        move |_ctx| async move {
            let r = tokio::task::spawn_blocking(move || {
                let out = images::commit(&db, &state, &received);
                if out.is_err() {
                    received.discard();
                }
                out
            })
            .await
            .map_err(|e| DomainError::Internal(e.to_string()))?;
            let img = r?;
            events.lifecycle(
                "image-created",
                &format!("/1.0/images/{}", img.fingerprint),
                json!({}),
            );
            image_created(&img)
        },
    );
    Ok(async_op(&op))
}

/// A file received from the client: its path, size, and the running sha256 of its bytes.
type Part = (std::path::PathBuf, u64, sha2::Sha256);

/// `POST /1.0/images` with a JSON body: publish an instance or snapshot (async).
async fn publish(d: &Arc<Services>, req: Request) -> ApiResult {
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| DomainError::BadRequest(e.to_string()))?;
    let post: silo_api::ImagesPost = super::lenient::from_slice(&bytes)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if matches!(post.source.kind.as_str(), "image" | "url") {
        return pull(d, post);
    }
    let r: images::PublishRequest = super::lenient::from_slice(&bytes)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    images::check_publish(&d.db, &r)?;
    let c = Services::clone(d);
    let state = d.state_dir.clone();
    let mut res = BTreeMap::new();
    res.insert(
        "instances".to_string(),
        vec![format!(
            "/1.0/instances/{}",
            r.source.name.split('/').next().unwrap_or("")
        )],
    );
    let op = d.ops.start(
        "task",
        "Publishing instance",
        res,
        false,
        move |_ctx| async move {
            let img = images::publish(&c, &state, r).await?;
            c.events.lifecycle(
                "image-created",
                &format!("/1.0/images/{}", img.fingerprint),
                json!({}),
            );
            image_created(&img)
        },
    );
    Ok(async_op(&op))
}

/// `POST /1.0/images` with `source.type` `image` (from an image server, `mode: pull`) or
/// `url` (LXD's direct URL images): an operation downloading it.
fn pull(d: &Arc<Services>, r: silo_api::ImagesPost) -> ApiResult {
    use crate::service::image_server::{PullOptions, PullSource};
    let src = if r.source.kind == "url" {
        if r.source.url.is_empty() {
            return Err(DomainError::BadRequest("source.url is required".into()));
        }
        PullSource {
            server: r.source.url.clone(),
            protocol: "direct".into(),
            ..Default::default()
        }
    } else {
        if !r.source.mode.is_empty() && r.source.mode != "pull" {
            return Err(DomainError::BadRequest(format!(
                "image source mode {:?} is not supported (pull)",
                r.source.mode
            )));
        }
        if r.source.server.is_empty() {
            return Err(DomainError::BadRequest("source.server is required".into()));
        }
        PullSource {
            server: r.source.server.clone(),
            protocol: r.source.protocol.clone(),
            alias: r.source.alias.clone(),
            fingerprint: r.source.fingerprint.clone(),
            secret: r.source.secret.clone(),
            certificate: r.source.certificate.clone(),
        }
    };
    if !r.source.image_type.is_empty() && r.source.image_type != "container" {
        return Err(DomainError::BadRequest(
            "virtual-machine images are not supported: silo runs containers".into(),
        ));
    }
    let existing = images::aliases(&d.db)?;
    let mut aliases = Vec::new();
    for a in &r.aliases {
        images::validate_alias_name(&a.name)?;
        if existing.iter().any(|x| x.name == a.name) {
            return Err(DomainError::Conflict(format!(
                "alias {:?} already exists",
                a.name
            )));
        }
        aliases.push(Alias {
            name: a.name.clone(),
            target: String::new(),
            description: a.description.clone(),
        });
    }
    let opts = PullOptions {
        aliases,
        public: r.public,
        auto_update: r.auto_update,
        cached: false,
    };
    let c = Services::clone(d);
    // Cancellable as LXD's: dropping the pull removes its temp files, and the record is
    // written whole or not at all.
    let op = d.ops.start(
        "task",
        "Downloading image",
        BTreeMap::new(),
        true,
        move |ctx| async move {
            let report = move |s: String| ctx.set_metadata(json!({ "download_progress": s }));
            let img = crate::service::image_server::pull(&c, &src, opts, &report).await?;
            image_created(&img)
        },
    );
    Ok(async_op(&op))
}

/// `POST /1.0/images/{fp}/refresh`: an operation asking the image's source for a newer
/// version and moving to it (LXD's `refreshed` in the metadata says whether it did).
pub async fn refresh(State(d): State<Arc<Services>>, Path(fp): Path<String>) -> ApiResult {
    let img = images::resolve_exact_or_prefix(&d.db, &fp)?;
    let c = Services::clone(&d);
    let op = d.ops.start(
        "task",
        "Refreshing image",
        BTreeMap::from([(
            "images".to_string(),
            vec![silo_api::paths::image(&img.fingerprint)],
        )]),
        false,
        move |ctx| async move {
            let report = move |s: String| ctx.set_metadata(json!({ "download_progress": s }));
            let newer =
                crate::service::image_updates::refresh(&c, &img.fingerprint, &report).await?;
            Ok(json!({ "refreshed": newer.is_some() }))
        },
    );
    Ok(async_op(&op))
}

/// The upload's parts: a whole image, or the metadata and rootfs of a split one.
async fn receive_parts(
    d: &Arc<Services>,
    req: Request,
    ctype: &str,
) -> Result<(Part, Option<Part>), DomainError> {
    let parts = if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, d)
            .await
            .map_err(|e| DomainError::BadRequest(format!("invalid multipart upload: {e}")))?;
        let mut main = None;
        let mut rootfs = None;
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| DomainError::BadRequest(format!("invalid multipart upload: {e}")))?
        {
            let name = field.name().unwrap_or("").to_string();
            let stream = futures::stream::unfold(field, |mut f| async move {
                match f.chunk().await {
                    Ok(Some(c)) => Some((Ok(c), f)),
                    Ok(None) => None,
                    Err(e) => Some((Err(e.to_string()), f)),
                }
            });
            let got = receive_stream(d, Box::pin(stream)).await?;
            match name.as_str() {
                "metadata" => main = Some(got),
                "rootfs" => rootfs = Some(got),
                "rootfs.img" => {
                    let _ = std::fs::remove_file(&got.0);
                    return Err(DomainError::BadRequest(
                        "virtual-machine images are not supported: silo runs containers".into(),
                    ));
                }
                other => {
                    let _ = std::fs::remove_file(&got.0);
                    return Err(DomainError::BadRequest(format!(
                        "unexpected multipart part {other:?} (expected metadata and rootfs)"
                    )));
                }
            }
        }
        let main = main.ok_or_else(|| {
            DomainError::BadRequest("multipart upload without a metadata part".into())
        })?;
        (main, rootfs)
    } else {
        let stream = req
            .into_body()
            .into_data_stream()
            .map(|r| r.map_err(|e| e.to_string()));
        (receive_stream(d, Box::pin(stream)).await?, None)
    };
    Ok(parts)
}

/// The fingerprint: sha256 of the file, or of metadata ‖ rootfs for a split image.
async fn fingerprint_of(main: &Part, rootfs: Option<&Part>) -> Result<String, DomainError> {
    Ok(match rootfs {
        None => images::fingerprint(main.2.clone()),
        Some(r) => {
            let mut h = main.2.clone();
            let rp = r.0.clone();
            let rootfs_hash =
                tokio::task::spawn_blocking(move || -> std::io::Result<sha2::Sha256> {
                    let mut f = std::fs::File::open(rp)?;
                    std::io::copy(&mut f, &mut h)?;
                    Ok(h)
                })
                .await
                .map_err(|e| DomainError::Internal(e.to_string()))?
                .map_err(|e| DomainError::Internal(e.to_string()))?;
            images::fingerprint(rootfs_hash)
        }
    })
}

/// `X-LXD-fingerprint`: the uploader says what the image must hash to; a mismatch discards
/// the upload.
fn check_expected_fingerprint(
    headers: &HeaderMap,
    fingerprint: &str,
    main: &Part,
    rootfs: Option<&Part>,
) -> Result<(), DomainError> {
    if let Some(want) = header_str(headers, "x-lxd-fingerprint") {
        if !want.is_empty() && !want.eq_ignore_ascii_case(fingerprint) {
            let _ = std::fs::remove_file(&main.0);
            if let Some(r) = rootfs {
                let _ = std::fs::remove_file(&r.0);
            }
            return Err(DomainError::BadRequest(format!(
                "fingerprint mismatch: the upload hashes to {fingerprint}, not the expected {want}"
            )));
        }
    }
    Ok(())
}

/// `?secret=` on the untrusted image read path.
#[derive(Debug, Deserialize, Default)]
pub struct SecretQuery {
    #[serde(default)]
    secret: Option<String>,
}

/// `GET /1.0/images/{fp}`.
pub async fn get_one(
    State(d): State<Arc<Services>>,
    Extension(kind): Extension<CallerKind>,
    Path(fp): Path<String>,
    Query(sq): Query<SecretQuery>,
) -> ApiResult {
    let img = image_secrets::readable(&d, kind, &fp, sq.secret.as_deref())?;
    Ok(sync_etag(render::image(&img, &images::aliases(&d.db)?)))
}

/// `POST /1.0/images/{fp}/secret`: a one-time secret another server uses to fetch this image.
pub async fn secret(State(d): State<Arc<Services>>, Path(fp): Path<String>) -> ApiResult {
    let img = images::resolve_exact_or_prefix(&d.db, &fp)?;
    Ok(async_op(&image_secrets::create(&d, &img.fingerprint)?))
}

#[derive(Debug, Deserialize)]
pub struct ImagePut {
    #[serde(default)]
    public: Option<bool>,
    #[serde(default)]
    auto_update: Option<bool>,
    #[serde(default)]
    properties: Option<BTreeMap<String, String>>,
    #[serde(default)]
    profiles: Option<Vec<String>>,
    #[serde(default)]
    expires_at: Option<String>,
}

fn apply_put(d: &Services, fp: &str, body: &[u8], patch: bool) -> ApiResult {
    let mut img = images::resolve_exact_or_prefix(&d.db, fp)?;
    let p: ImagePut = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if let Some(v) = p.public {
        img.public = v;
    } else if !patch {
        img.public = false;
    }
    if let Some(v) = p.auto_update {
        img.auto_update = v;
    }
    if let Some(v) = p.properties {
        if patch {
            img.properties.extend(v);
        } else {
            img.properties = v;
        }
    }
    if let Some(v) = p.profiles {
        for n in &v {
            crate::service::profiles::get(&d.db, n)
                .map_err(|_| DomainError::BadRequest(format!("profile {n:?} not found")))?;
        }
        img.profiles = v;
    }
    if let Some(v) = p.expires_at {
        img.expires_at = v;
    }
    images::update(&d.db, &img)?;
    d.events.lifecycle(
        "image-updated",
        &format!("/1.0/images/{}", img.fingerprint),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// `PUT /1.0/images/{fp}`.
pub async fn put(
    State(d): State<Arc<Services>>,
    Path(fp): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    apply_put(&d, &fp, &body, false)
}

/// `PATCH /1.0/images/{fp}`.
pub async fn patch(
    State(d): State<Arc<Services>>,
    Path(fp): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    apply_put(&d, &fp, &body, true)
}

/// `DELETE /1.0/images/{fp}`: its cached volumes in every pool, its files, its record.
pub async fn delete(State(d): State<Arc<Services>>, Path(fp): Path<String>) -> ApiResult {
    let img = images::resolve_exact_or_prefix(&d.db, &fp)?;
    let dd = d.clone();
    let mut res = BTreeMap::new();
    res.insert(
        "images".to_string(),
        vec![format!("/1.0/images/{}", img.fingerprint)],
    );
    let op = d.ops.start(
        "task",
        "Deleting image",
        res,
        false,
        move |_ctx| async move {
            images::delete(&dd, &img.fingerprint).await?;
            Ok(Value::Null)
        },
    );
    Ok(async_op(&op))
}

/// How much of a file a response reads at a time. ReaderStream's default (4 KiB) costs a
/// blocking-pool round trip per 4 KiB on a tokio File: an image export crawled at about a
/// third of what curl takes from a plain file server.
pub(crate) const FILE_CHUNK: usize = 256 * 1024;

pub(crate) fn file_body(path: std::path::PathBuf) -> Result<(Body, u64), DomainError> {
    let f = std::fs::File::open(&path)
        .map_err(|e| DomainError::Internal(format!("opening {}: {e}", path.display())))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let stream =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(f), FILE_CHUNK);
    Ok((Body::from_stream(stream), len))
}

fn sniff_ext(path: &std::path::Path) -> &'static str {
    use std::io::Read;
    let mut head = vec![0u8; 512];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head.truncate(n);
    if head.starts_with(b"hsqs") {
        return ".squashfs";
    }
    silo_proto::image::Compression::sniff(&head)
        .map(|c| c.extension())
        .unwrap_or(".tar")
}

/// `GET /1.0/images/{fp}/export`: the unified file, or multipart metadata + rootfs.
pub async fn export(
    State(d): State<Arc<Services>>,
    Extension(kind): Extension<CallerKind>,
    Path(fp): Path<String>,
    Query(sq): Query<SecretQuery>,
) -> Result<Response, DomainError> {
    let img = image_secrets::exportable(&d, kind, &fp, sq.secret.as_deref())?;
    let dir = images::images_dir(&d.state_dir);
    let main = dir.join(&img.fingerprint);
    if !img.split {
        let (body, len) = file_body(main)?;
        let mut r = (StatusCode::OK, body).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename={}{}",
            img.fingerprint, img.compression
        )) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        return Ok(r);
    }
    let rootfs = dir.join(format!("{}.rootfs", img.fingerprint));
    let boundary = uuid::Uuid::new_v4().simple().to_string();
    let part = |name: &str, filename: &str| {
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
    };
    let head1 = part(
        "metadata",
        &format!("meta-{}{}", img.fingerprint, img.compression),
    );
    let head2 = format!(
        "\r\n{}",
        part(
            "rootfs",
            &format!("{}{}", img.fingerprint, sniff_ext(&rootfs))
        )
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let (m, _) = file_body(main)?;
    let (r, _) = file_body(rootfs)?;
    let chained =
        futures::stream::once(async move { Ok::<_, axum::Error>(axum::body::Bytes::from(head1)) })
            .chain(m.into_data_stream())
            .chain(futures::stream::once(async move {
                Ok(axum::body::Bytes::from(head2))
            }))
            .chain(r.into_data_stream())
            .chain(futures::stream::once(async move {
                Ok(axum::body::Bytes::from(tail))
            }));
    let mut resp = (StatusCode::OK, Body::from_stream(chained)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}")) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// `GET /1.0/images/aliases`.
pub async fn aliases_list(
    State(d): State<Arc<Services>>,
    Extension(kind): Extension<CallerKind>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let all = image_secrets::visible_aliases(&d, kind)?;
    if q.recursive() {
        Ok(sync(all.iter().map(render::alias).collect::<Vec<_>>()))
    } else {
        Ok(sync(
            all.iter()
                .map(|a| format!("/1.0/images/aliases/{}", a.name))
                .collect::<Vec<_>>(),
        ))
    }
}

#[derive(Debug, Deserialize)]
pub struct AliasPost {
    name: String,
    target: String,
    #[serde(default, deserialize_with = "crate::model::null_default")]
    description: String,
}

/// `POST /1.0/images/aliases`.
pub async fn aliases_create(State(d): State<Arc<Services>>, body: axum::body::Bytes) -> ApiResult {
    let p: AliasPost = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let img = images::resolve_exact_or_prefix(&d.db, &p.target)?;
    images::alias_put(
        &d.db,
        &Alias {
            name: p.name.clone(),
            target: img.fingerprint,
            description: p.description,
        },
        true,
    )?;
    d.events.lifecycle(
        "image-alias-created",
        &format!("/1.0/images/aliases/{}", p.name),
        json!({}),
    );
    Ok(sync(Value::Null))
}

fn find_alias(d: &Services, name: &str) -> Result<Alias, DomainError> {
    images::aliases(&d.db)?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| DomainError::NotFound(format!("alias {name:?} not found")))
}

/// `GET /1.0/images/aliases/{name}`.
pub async fn alias_get(
    State(d): State<Arc<Services>>,
    Extension(kind): Extension<CallerKind>,
    Path(name): Path<String>,
) -> ApiResult {
    let a = find_alias(&d, &name)?;
    if !image_secrets::alias_visible(&d, kind, &a)? {
        return Err(DomainError::NotFound(format!("alias {name:?} not found")));
    }
    Ok(sync_etag(render::alias(&a)))
}

#[derive(Debug, Deserialize)]
pub struct AliasPut {
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

async fn alias_write(d: &Services, name: &str, body: &[u8], patch: bool) -> ApiResult {
    let mut a = find_alias(d, name)?;
    let p: AliasPut = super::lenient::from_slice(body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    if let Some(t) = p.target {
        a.target = images::resolve_exact_or_prefix(&d.db, &t)?.fingerprint;
    } else if !patch {
        return Err(DomainError::BadRequest("missing target".into()));
    }
    if let Some(desc) = p.description {
        a.description = desc;
    } else if !patch {
        a.description.clear();
    }
    images::alias_put(&d.db, &a, false)?;
    Ok(sync(Value::Null))
}

/// `PUT /1.0/images/aliases/{name}`.
pub async fn alias_put(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    alias_write(&d, &name, &body, false).await
}

/// `PATCH /1.0/images/aliases/{name}`.
pub async fn alias_patch(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    alias_write(&d, &name, &body, true).await
}

/// `POST /1.0/images/aliases/{name}`: rename.
pub async fn alias_rename(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let v: HashMap<String, String> = super::lenient::from_slice(&body)
        .map_err(|e| DomainError::BadRequest(format!("invalid request body: {e}")))?;
    let to = v
        .get("name")
        .ok_or_else(|| DomainError::BadRequest("missing name".into()))?;
    images::alias_rename(&d.db, &name, to)?;
    Ok(sync(Value::Null))
}

/// `DELETE /1.0/images/aliases/{name}`.
pub async fn alias_delete(State(d): State<Arc<Services>>, Path(name): Path<String>) -> ApiResult {
    images::alias_delete(&d.db, &name)?;
    d.events.lifecycle(
        "image-alias-deleted",
        &format!("/1.0/images/aliases/{name}"),
        json!({}),
    );
    Ok(sync(Value::Null))
}

/// An operation's result for a new image.
fn image_created(img: &images::Image) -> Result<Value, DomainError> {
    serde_json::to_value(silo_api::ImageCreated {
        fingerprint: img.fingerprint.clone(),
        size: i64::try_from(img.size).unwrap_or(i64::MAX),
    })
    .map_err(|e| DomainError::Internal(e.to_string()))
}
