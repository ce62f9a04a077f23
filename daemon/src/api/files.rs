//! `/1.0/instances/{name}/files?path=`: LXD's files API. silo-store resolves the path inside
//! the instance's root volume and hands silod a pipe (reads) or a socket (writes), never an
//! fd of the file itself; silod only moves the bytes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use silo_proto::store::{FileKind, FilePut};
use silo_proto::{PoolName, VolumeName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::response::{sync, ApiResult, DomainError};
use crate::helpers::HelperKind;
use crate::service::instances;
use crate::service::Services;

#[derive(Debug, Deserialize)]
pub struct FileQuery {
    path: Option<String>,
}

fn names(d: &Services, name: &str) -> Result<(PoolName, VolumeName), DomainError> {
    let i = instances::get(&d.db, name)?;
    Ok((
        PoolName::new(i.pool).map_err(|e| DomainError::Internal(e.to_string()))?,
        VolumeName::new(i.name).map_err(|e| DomainError::Internal(e.to_string()))?,
    ))
}

fn path_of(q: &FileQuery) -> Result<String, DomainError> {
    q.path
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| DomainError::BadRequest("missing path (?path=/some/file)".into()))
}

async fn take_store_fd(
    d: &Services,
    t: silo_proto::fdpass::FdTicket,
) -> Result<std::os::fd::OwnedFd, DomainError> {
    d.helpers
        .take_fds(HelperKind::Store, t)
        .await
        .map_err(DomainError::Internal)?
        .pop()
        .ok_or_else(|| DomainError::Internal("silo-store sent no fd".into()))
}

fn header(h: &mut HeaderMap, k: &'static str, v: String) {
    if let Ok(v) = HeaderValue::from_str(&v) {
        h.insert(k, v);
    }
}

/// `GET`: a file's bytes, a directory's entries, or a symlink's target.
pub async fn get(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult {
    let (pool, vol) = names(&d, &name)?;
    let path = path_of(&q)?;
    let meta = d.helpers.store.file_get(pool, vol, path).await?;
    let mut resp = match meta.kind {
        FileKind::Directory => sync(meta.entries.clone()),
        FileKind::Symlink => meta.target.clone().into_response(),
        FileKind::File => {
            let t = meta
                .fd
                .ok_or_else(|| DomainError::Internal("silo-store sent no file".into()))?;
            let fd = take_store_fd(&d, t).await?;
            let f = tokio::fs::File::from_std(std::fs::File::from(fd));
            let stream = tokio_util::io::ReaderStream::new(f);
            let mut r = Response::new(Body::from_stream(stream));
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
    };
    let h = resp.headers_mut();
    header(h, "X-LXD-type", meta.kind.as_str().into());
    header(h, "X-LXD-uid", meta.uid.to_string());
    header(h, "X-LXD-gid", meta.gid.to_string());
    header(h, "X-LXD-mode", format!("{:04o}", meta.mode));
    Ok(resp)
}

fn num_header(h: &HeaderMap, k: &str) -> Result<Option<i64>, DomainError> {
    match h.get(k).and_then(|v| v.to_str().ok()) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| DomainError::BadRequest(format!("invalid {k} header {v:?}"))),
    }
}

/// `POST`: creates or replaces a file, directory or symlink.
pub async fn post(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let (pool, vol) = names(&d, &name)?;
    let path = path_of(&q)?;
    let kind = match headers.get("X-LXD-type").and_then(|v| v.to_str().ok()) {
        None | Some("") | Some("file") => FileKind::File,
        Some("directory") => FileKind::Directory,
        Some("symlink") => FileKind::Symlink,
        Some(o) => {
            return Err(DomainError::BadRequest(format!(
                "invalid X-LXD-type {o:?}: expected file, directory or symlink"
            )))
        }
    };
    let append = match headers.get("X-LXD-write").and_then(|v| v.to_str().ok()) {
        None | Some("") | Some("overwrite") => false,
        Some("append") => true,
        Some(o) => {
            return Err(DomainError::BadRequest(format!(
                "invalid X-LXD-write {o:?}: expected overwrite or append"
            )))
        }
    };
    let id = |k: &str| -> Result<u32, DomainError> {
        match num_header(&headers, k)? {
            None | Some(-1) => Ok(0),
            Some(v) if (0..65536).contains(&v) => Ok(v as u32),
            Some(v) => Err(DomainError::BadRequest(format!(
                "{k} {v} is not an id of the instance (0 to 65535)"
            ))),
        }
    };
    let mode = match headers.get("X-LXD-mode").and_then(|v| v.to_str().ok()) {
        None | Some("") | Some("-1") => {
            if kind == FileKind::Directory {
                0o755
            } else {
                0o644
            }
        }
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| DomainError::BadRequest(format!("invalid X-LXD-mode {m:?}")))?,
    };
    let mut target = String::new();
    let mut stream = body.into_data_stream();
    if kind == FileKind::Symlink {
        let mut b = Vec::new();
        while let Some(c) = stream.next().await {
            let c = c.map_err(|e| DomainError::BadRequest(e.to_string()))?;
            b.extend_from_slice(&c);
            if b.len() > 4096 {
                return Err(DomainError::BadRequest("symlink target too long".into()));
            }
        }
        target = String::from_utf8(b)
            .map_err(|_| DomainError::BadRequest("symlink target is not UTF-8".into()))?;
    }
    let put = FilePut {
        kind,
        uid: id("X-LXD-uid")?,
        gid: id("X-LXD-gid")?,
        mode,
        append,
        target,
    };
    let ticket = d.helpers.store.file_put(pool, vol, path, put).await?;
    if let Some(t) = ticket {
        // A socket, never the file: silo-store writes what arrives into it and answers "ok"
        // (or why not) once this side shuts down.
        let fd = take_store_fd(&d, t).await?;
        let std_sock = std::os::unix::net::UnixStream::from(fd);
        std_sock
            .set_nonblocking(true)
            .map_err(|e| DomainError::Internal(format!("file socket: {e}")))?;
        let mut sock = tokio::net::UnixStream::from_std(std_sock)
            .map_err(|e| DomainError::Internal(format!("file socket: {e}")))?;
        let mut sent: Result<(), std::io::Error> = Ok(());
        while let Some(c) = stream.next().await {
            let c = c.map_err(|e| DomainError::BadRequest(format!("reading the upload: {e}")))?;
            // silo-store stops reading when it refuses the file: its answer says why.
            if let Err(e) = sock.write_all(&c).await {
                sent = Err(e);
                break;
            }
        }
        if sent.is_ok() {
            sent = sock.shutdown().await;
        }
        let mut answer = Vec::new();
        (&mut sock)
            .take(4096)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| DomainError::Internal(format!("silo-store's answer: {e}")))?;
        if answer.is_empty() {
            if let Err(e) = sent {
                return Err(DomainError::Internal(format!("writing the file: {e}")));
            }
        }
        if answer != b"ok" {
            let why = String::from_utf8_lossy(&answer);
            let why = why.strip_prefix("error: ").unwrap_or(&why);
            return Err(if why.contains("dir_pool_reserve") {
                DomainError::Forbidden(why.to_string())
            } else {
                DomainError::Internal(format!("silo-store: {why}"))
            });
        }
    }
    Ok(sync(serde_json::Value::Null))
}

/// `DELETE`.
pub async fn delete(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult {
    let (pool, vol) = names(&d, &name)?;
    let path = path_of(&q)?;
    d.helpers.store.file_delete(pool, vol, path).await?;
    Ok(sync(serde_json::Value::Null))
}
