//! Images: uploads stored as `<state-dir>/images/<fingerprint>[.rootfs]`, their records and
//! aliases in the database, exports. Unpacking into pools is silo-store's (see storage.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest;
use silo_proto::image::{Compression, ImageMetadata};
use silo_proto::ImageFingerprint;
use tokio::io::AsyncWriteExt;

use crate::service::DomainError;
use crate::store::db::Db;

pub use crate::model::image::{Image, ImageAlias as Alias};

/// Where uploads live, owned by silod's user.
pub fn images_dir(state: &Path) -> PathBuf {
    state.join("images")
}

fn unix_to_rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// All images, by fingerprint.
pub fn list(db: &Db) -> Result<Vec<Image>, DomainError> {
    Ok(crate::store::images::all(db)?)
}

/// One image by full fingerprint.
pub fn get(db: &Db, fp: &str) -> Result<Option<Image>, DomainError> {
    Ok(crate::store::images::get(db, fp)?)
}

/// All aliases.
pub fn aliases(db: &Db) -> Result<Vec<Alias>, DomainError> {
    Ok(crate::store::images::aliases(db)?)
}

/// Resolves a fingerprint, a unique fingerprint prefix, or an alias to an image.
pub fn resolve(db: &Db, what: &str) -> Result<Image, DomainError> {
    if let Some(a) = aliases(db)?.into_iter().find(|a| a.name == what) {
        if let Some(i) = get(db, &a.target)? {
            return Ok(i);
        }
    }
    resolve_exact_or_prefix(db, what)
}

/// The API's `{fingerprint}` path segment: a full fingerprint or a unique prefix (not an alias).
pub fn resolve_exact_or_prefix(db: &Db, what: &str) -> Result<Image, DomainError> {
    if what.is_empty() || !what.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DomainError::NotFound(format!("image {what:?} not found")));
    }
    resolve_prefix(db, what)
}

fn resolve_prefix(db: &Db, what: &str) -> Result<Image, DomainError> {
    let lower = what.to_ascii_lowercase();
    let matches: Vec<Image> = list(db)?
        .into_iter()
        .filter(|i| i.fingerprint.starts_with(&lower))
        .collect();
    match matches.len() {
        0 => Err(DomainError::NotFound(format!("image {what:?} not found"))),
        1 => matches
            .into_iter()
            .next()
            .ok_or_else(|| DomainError::Internal("vanished".into())),
        _ => Err(DomainError::BadRequest(format!(
            "image prefix {what:?} is ambiguous"
        ))),
    }
}

/// Stores the record.
pub fn insert(db: &Db, i: &Image) -> Result<(), DomainError> {
    Ok(crate::store::images::insert(db, i)?)
}

/// Updates the writable fields (PUT/PATCH).
pub fn update(db: &Db, i: &Image) -> Result<(), DomainError> {
    Ok(crate::store::images::update(db, i)?)
}

/// Marks an image used now.
pub fn touch(db: &Db, fp: &str) -> Result<(), DomainError> {
    Ok(crate::store::images::touch(
        db,
        fp,
        &crate::service::events::now_rfc3339(),
    )?)
}

/// Deletes image `fp` for good: its volumes on every pool, its record and its files, then
/// says so on the events stream. The API's delete, the updater replacing a version and the
/// cache expiry all end an image this way.
pub async fn delete(c: &crate::service::Services, fp: &str) -> Result<(), DomainError> {
    crate::service::storage::drop_image_volumes(&c.db, &c.helpers, fp).await?;
    remove(&c.db, fp)?;
    remove_files(&c.state_dir, fp);
    c.events.lifecycle(
        "image-deleted",
        &silo_api::paths::image(fp),
        serde_json::json!({}),
    );
    Ok(())
}

/// Removes the record (aliases follow by cascade).
pub fn remove(db: &Db, fp: &str) -> Result<(), DomainError> {
    Ok(crate::store::images::delete(db, fp)?)
}

/// Alias writes.
pub fn alias_put(db: &Db, a: &Alias, create: bool) -> Result<(), DomainError> {
    validate_alias_name(&a.name)?;
    if get(db, &a.target)?.is_none() {
        return Err(DomainError::NotFound(format!(
            "image {:?} not found",
            a.target
        )));
    }
    let exists = aliases(db)?.iter().any(|x| x.name == a.name);
    if create && exists {
        return Err(DomainError::Conflict(format!(
            "alias {:?} already exists",
            a.name
        )));
    }
    if !create && !exists {
        return Err(DomainError::NotFound(format!(
            "alias {:?} not found",
            a.name
        )));
    }
    crate::store::images::alias_put(db, a)?;
    Ok(())
}

/// Removes an alias.
pub fn alias_delete(db: &Db, name: &str) -> Result<(), DomainError> {
    Ok(crate::store::images::alias_delete(db, name)?)
}

/// Renames an alias.
pub fn alias_rename(db: &Db, from: &str, to: &str) -> Result<(), DomainError> {
    validate_alias_name(to)?;
    if aliases(db)?.iter().any(|x| x.name == to) {
        return Err(DomainError::Conflict(format!(
            "alias {to:?} already exists"
        )));
    }
    Ok(crate::store::images::alias_rename(db, from, to)?)
}

/// Alias names as LXD takes them: image servers name images `debian/12` or `debian/12/amd64`,
/// and `image copy --copy-aliases` keeps those names, so '/' is allowed (alias names are only
/// ever database keys and URL segments, escaped as `%2F`, never paths). Refused: empty, over
/// 255 bytes, whitespace and control characters, and ':' (the CLI's `remote:` separator).
pub fn validate_alias_name(n: &str) -> Result<(), DomainError> {
    if n.is_empty() || n.len() > 255 {
        return Err(DomainError::BadRequest(format!(
            "invalid alias name {n:?}: must be 1 to 255 characters"
        )));
    }
    if n.chars().any(|c| c.is_whitespace() || c.is_control()) || n.contains(':') {
        return Err(DomainError::BadRequest(format!(
            "invalid alias name {n:?}: no ':', whitespace or control characters"
        )));
    }
    Ok(())
}

/// An upload being written: a temp file beside the images, hashed as it arrives.
#[derive(Debug)]
pub struct Upload {
    /// The temp file.
    pub path: PathBuf,
    file: tokio::fs::File,
    /// Bytes so far.
    pub size: u64,
    hasher: sha2::Sha256,
    limit: u64,
}

impl Upload {
    /// Starts a temp file in the images dir.
    pub async fn new(state: &Path, limit: u64) -> Result<Upload, DomainError> {
        let dir = images_dir(state);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| DomainError::Internal(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(format!("tmp-{}", uuid::Uuid::new_v4()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| DomainError::Internal(format!("creating {}: {e}", path.display())))?;
        Ok(Upload {
            path,
            file,
            size: 0,
            hasher: sha2::Sha256::new(),
            limit,
        })
    }

    /// Appends a chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), DomainError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(DomainError::BadRequest(format!(
                "upload is larger than the limit of {} bytes",
                self.limit
            )));
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| DomainError::Internal(format!("writing the upload: {e}")))
    }

    /// Flushes and returns (path, size, running hash).
    pub async fn finish(mut self) -> Result<(PathBuf, u64, sha2::Sha256), DomainError> {
        self.file
            .flush()
            .await
            .map_err(|e| DomainError::Internal(format!("writing the upload: {e}")))?;
        self.file
            .sync_all()
            .await
            .map_err(|e| DomainError::Internal(format!("syncing the upload: {e}")))?;
        Ok((self.path, self.size, self.hasher))
    }
}

/// Removes upload temp files left by a silod that died mid-import.
pub fn gc_uploads(state: &Path) {
    let Ok(rd) = std::fs::read_dir(images_dir(state)) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with("tmp-") {
            tracing::info!(file = %e.path().display(), "removing an interrupted upload");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What an import was given: one unified file, or metadata + rootfs.
#[derive(Debug)]
pub struct Received {
    /// Unified tarball or metadata tarball.
    pub main: (PathBuf, u64),
    /// Rootfs for split images.
    pub rootfs: Option<(PathBuf, u64)>,
    /// sha256 of main (‖ rootfs).
    pub fingerprint: String,
    /// X-LXD-filename.
    pub filename: String,
    /// X-LXD-public.
    pub public: bool,
    /// X-LXD-properties.
    pub properties: BTreeMap<String, String>,
    /// Aliases to create (from the JSON body form).
    pub aliases: Vec<Alias>,
}

impl Received {
    /// Removes the temp files (on failure).
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.main.0);
        if let Some((p, _)) = &self.rootfs {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn compression_of(path: &Path) -> Result<Option<Compression>, DomainError> {
    use std::io::Read;
    let mut head = vec![0u8; 512];
    let mut f = std::fs::File::open(path).map_err(|e| DomainError::Internal(e.to_string()))?;
    let mut got = 0;
    while got < head.len() {
        let n = f
            .read(&mut head[got..])
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    head.truncate(got);
    Ok(Compression::sniff(&head))
}

fn is_squashfs(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|()| &magic == b"hsqs")
        .unwrap_or(false)
}

/// Checks an upload and records it (runs inside the import operation). Returns the image.
pub fn commit(db: &Db, state: &Path, r: &Received) -> Result<Image, DomainError> {
    let fp = ImageFingerprint::new(r.fingerprint.clone())
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    if get(db, fp.as_str())?.is_some() {
        return Err(DomainError::Conflict(format!(
            "an image with fingerprint {fp} already exists"
        )));
    }
    let main_c = compression_of(&r.main.0)?.ok_or_else(|| {
        DomainError::BadRequest(
            "not an image tarball: expected a tarball, optionally gzip, xz or zstd compressed"
                .into(),
        )
    })?;
    if let Some((rp, _)) = &r.rootfs {
        if !is_squashfs(rp) {
            compression_of(rp)?.ok_or_else(|| {
                DomainError::BadRequest(
                    "the rootfs is neither a squashfs nor a tarball (gzip, xz, zstd or none)"
                        .into(),
                )
            })?;
        }
    }
    let file = std::fs::File::open(&r.main.0).map_err(|e| DomainError::Internal(e.to_string()))?;
    let (meta, has_rootfs): (ImageMetadata, bool) =
        silo_proto::image::read_metadata(file, 64 << 30)
            .map_err(|e| DomainError::BadRequest(e.to_string()))?;
    if r.rootfs.is_none() && !has_rootfs {
        return Err(DomainError::BadRequest("invalid image metadata: a unified image needs a rootfs/ directory (or import metadata and rootfs as two files)".into()));
    }
    let mut properties = meta.properties.clone();
    properties.extend(r.properties.clone());
    let now = crate::service::events::now_rfc3339();
    let img = Image {
        fingerprint: fp.to_string(),
        filename: r.filename.clone(),
        size: r.main.1 + r.rootfs.as_ref().map(|x| x.1).unwrap_or(0),
        public: r.public,
        architecture: meta.architecture.clone(),
        kind: "container".into(),
        created_at: unix_to_rfc3339(meta.creation_date),
        expires_at: unix_to_rfc3339(meta.expiry_date.unwrap_or(0)),
        uploaded_at: now,
        last_used_at: String::new(),
        auto_update: false,
        cached: false,
        split: r.rootfs.is_some(),
        compression: main_c.extension().to_string(),
        properties,
        profiles: vec!["default".into()],
        update_source: None,
    };
    let dir = images_dir(state);
    let dst = dir.join(fp.as_str());
    std::fs::rename(&r.main.0, &dst)
        .map_err(|e| DomainError::Internal(format!("storing the image: {e}")))?;
    if let Some((rp, _)) = &r.rootfs {
        if let Err(e) = std::fs::rename(rp, dir.join(format!("{fp}.rootfs"))) {
            let _ = std::fs::remove_file(&dst);
            return Err(DomainError::Internal(format!("storing the image: {e}")));
        }
    }
    if let Err(e) = insert(db, &img) {
        remove_files(state, fp.as_str());
        return Err(e);
    }
    for a in &r.aliases {
        let a = Alias {
            target: img.fingerprint.clone(),
            ..a.clone()
        };
        alias_put(db, &a, true)?;
    }
    Ok(img)
}

/// Removes an image's stored files.
pub fn remove_files(state: &Path, fp: &str) {
    let dir = images_dir(state);
    let _ = std::fs::remove_file(dir.join(fp));
    let _ = std::fs::remove_file(dir.join(format!("{fp}.rootfs")));
}

/// Finishes the fingerprint of a received upload.
pub fn fingerprint(h: sha2::Sha256) -> String {
    hex::encode(h.finalize())
}

/// What `POST /1.0/images` with a JSON body asks to publish.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PublishRequest {
    /// `{"type": "instance"|"container"|"snapshot", "name": "c1" | "c1/snap0"}`.
    pub source: PublishSource,
    /// Properties for the image (over those of the instance's own image).
    #[serde(default, deserialize_with = "crate::model::null_default")]
    pub properties: BTreeMap<String, String>,
    /// Aliases to create.
    #[serde(default, deserialize_with = "crate::model::null_default")]
    pub aliases: Vec<PublishAlias>,
    /// Public image.
    #[serde(default)]
    pub public: bool,
    /// gzip (default), xz, zstd or none.
    #[serde(default, deserialize_with = "crate::model::null_default")]
    pub compression_algorithm: String,
    /// Image filename.
    #[serde(default, deserialize_with = "crate::model::null_default")]
    pub filename: String,
}

/// The source of a publish.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PublishSource {
    /// instance, container or snapshot.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The instance, or INSTANCE/SNAPSHOT.
    #[serde(default)]
    pub name: String,
}

/// An alias in a publish request.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PublishAlias {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// Checks a publish request before its operation starts.
pub fn check_publish(db: &Db, r: &PublishRequest) -> Result<(), DomainError> {
    match r.source.kind.as_str() {
        "instance" | "container" | "virtual-machine" if r.source.name.contains('/') => {
            return Err(DomainError::BadRequest(
                "a snapshot is published with source type \"snapshot\"".into(),
            ))
        }
        "instance" | "container" | "snapshot" => {}
        "virtual-machine" => {
            return Err(DomainError::BadRequest(
                "virtual-machine images are not supported: silo runs containers".into(),
            ))
        }
        other => {
            return Err(DomainError::BadRequest(format!(
                "creating images from source type {other:?} is not supported yet (remote images come later)"
            )))
        }
    }
    let (inst, snap) = match r.source.name.split_once('/') {
        Some((i, s)) => (i, Some(s)),
        None => (r.source.name.as_str(), None),
    };
    crate::service::instances::get(db, inst)?;
    if let Some(s) = snap {
        crate::service::snapshots::get(db, inst, s)?;
    }
    for a in &r.aliases {
        validate_alias_name(&a.name)?;
        if aliases(db)?.iter().any(|x| x.name == a.name) {
            return Err(DomainError::Conflict(format!(
                "alias {:?} already exists",
                a.name
            )));
        }
    }
    compression_choice(&r.compression_algorithm)?;
    Ok(())
}

fn compression_choice(c: &str) -> Result<silo_proto::store::PackCompression, DomainError> {
    use silo_proto::store::PackCompression as P;
    Ok(match c {
        "" | "gzip" => P::Gzip,
        "xz" => P::Xz,
        "zstd" => P::Zstd,
        "none" => P::None,
        other => {
            return Err(DomainError::BadRequest(format!(
                "compression algorithm {other:?} is not supported (gzip, xz, zstd or none)"
            )))
        }
    })
}

/// Copies a packed image from the store helper's fd into a temp file of silod's own, hashed
/// on the way; returns the file, its size and its hash. A failed copy leaves no file behind.
async fn store_packed(
    fd: std::os::fd::OwnedFd,
    state: &Path,
) -> Result<(std::path::PathBuf, u64, sha2::Sha256), DomainError> {
    let state_dir = state.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<_, DomainError> {
        use std::io::{Read, Seek, Write};
        let mut src = std::fs::File::from(fd);
        src.rewind()
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        let dir = images_dir(&state_dir);
        std::fs::create_dir_all(&dir).map_err(|e| DomainError::Internal(e.to_string()))?;
        let path = dir.join(format!("tmp-{}", uuid::Uuid::new_v4()));
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| DomainError::Internal(format!("creating {}: {e}", path.display())))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        let r = (|| -> std::io::Result<()> {
            loop {
                let n = src.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                size += n as u64;
            }
            out.sync_all()
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_file(&path);
            return Err(DomainError::Internal(format!(
                "storing the published image: {e}"
            )));
        }
        Ok((path, size, h))
    })
    .await
    .map_err(|e| DomainError::Internal(e.to_string()))?
}

/// The published image as an upload: its file, hash and the request's settings.
fn published(
    r: &PublishRequest,
    path: std::path::PathBuf,
    size: u64,
    hash: sha2::Sha256,
) -> Received {
    Received {
        main: (path, size),
        rootfs: None,
        fingerprint: fingerprint(hash),
        filename: r.filename.clone(),
        public: r.public,
        properties: BTreeMap::new(),
        aliases: r
            .aliases
            .iter()
            .map(|a| Alias {
                name: a.name.clone(),
                target: String::new(),
                description: a.description.clone(),
            })
            .collect(),
    }
}

/// Keeps a published image as an upload is kept; the file is discarded if that fails.
async fn commit_published(
    c: &crate::service::Services,
    state: &Path,
    received: Received,
) -> Result<Image, DomainError> {
    let db = c.db.clone();
    let state_dir = state.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = commit(&db, &state_dir, &received);
        if out.is_err() {
            received.discard();
        }
        out
    })
    .await
    .map_err(|e| DomainError::Internal(e.to_string()))?
}

/// Publishes a stopped instance or a snapshot as an image (inside the operation): silo-store
/// packs the volume into an unlinked file and hands over its fd; silod hashes and keeps it
/// like an upload. Returns the image.
pub async fn publish(
    c: &crate::service::Services,
    state: &Path,
    r: PublishRequest,
) -> Result<Image, DomainError> {
    use silo_proto::store::{PackMeta, VolumeKind};
    check_publish(&c.db, &r)?;
    let (inst, snap) = match r.source.name.split_once('/') {
        Some((i, s)) => (i.to_string(), Some(s.to_string())),
        None => (r.source.name.clone(), None),
    };
    let i = crate::service::instances::get(&c.db, &inst)?;
    if snap.is_none() && crate::service::runtime::is_running(c, &inst).await? {
        return Err(DomainError::BadRequest(format!(
            "instance {inst:?} is running: stop it first (silo publish --force stops it and starts it again)"
        )));
    }
    let (kind, vol, config) = match &snap {
        Some(s) => (
            VolumeKind::Snapshot,
            crate::service::snapshots::volume(&inst, s)?,
            crate::service::snapshots::get(&c.db, &inst, s)?.config,
        ),
        None => (
            VolumeKind::Container,
            silo_proto::VolumeName::new(inst.clone())
                .map_err(|e| DomainError::BadRequest(e.to_string()))?,
            i.config.clone(),
        ),
    };
    // The image's properties: the instance's own image's (image.*), then the request's.
    let mut properties: BTreeMap<String, String> = config
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("image.").map(|p| (p.to_string(), v.clone())))
        .collect();
    properties.extend(r.properties.clone());
    let meta = PackMeta {
        architecture: i.architecture.clone(),
        creation_date: time::OffsetDateTime::now_utc().unix_timestamp(),
        properties,
    };
    let pool = silo_proto::PoolName::new(i.pool.clone())
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let ticket = c
        .helpers
        .store
        .pack_volume(
            pool,
            kind,
            vol,
            compression_choice(&r.compression_algorithm)?,
            meta,
        )
        .await?;
    let fd = c
        .helpers
        .take_fds(crate::helpers::HelperKind::Store, ticket)
        .await
        .map_err(DomainError::Internal)?
        .remove(0);
    // Into a temp file of silod's own, hashed on the way: from here on it is an upload.
    let (path, size, hash) = store_packed(fd, state).await?;
    let received = published(&r, path, size, hash);
    commit_published(c, state, received).await
}
