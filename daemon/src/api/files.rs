//! `/1.0/instances/{name}/files?path=`: LXD's files API over HTTP (headers, bodies); the work
//! is in `service::files`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use silo_proto::store::{FileKind, FilePut};

use super::response::{sync, ApiResult, DomainError};
use crate::service::files;
use crate::service::Services;

#[derive(Debug, Deserialize)]
pub struct FileQuery {
    path: Option<String>,
}

fn path_of(q: &FileQuery) -> Result<String, DomainError> {
    q.path
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| DomainError::BadRequest("missing path (?path=/some/file)".into()))
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
    let path = path_of(&q)?;
    let (meta, fd) = files::read(&d, &name, path).await?;
    let mut resp = match meta.kind {
        FileKind::Directory => sync(meta.entries.clone()),
        FileKind::Symlink => meta.target.clone().into_response(),
        FileKind::File => {
            let fd = fd.ok_or_else(|| DomainError::Internal("silo-store sent no file".into()))?;
            let f = tokio::fs::File::from_std(std::fs::File::from(fd));
            let stream = tokio_util::io::ReaderStream::with_capacity(f, super::images::FILE_CHUNK);
            let mut r = Response::new(Body::from_stream(stream));
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
    };
    meta_headers(resp.headers_mut(), &meta);
    Ok(resp)
}

/// LXD's X-LXD-* headers of a path (and X-LXD-size, silo's: the file's length).
fn meta_headers(h: &mut HeaderMap, meta: &silo_proto::store::FileMeta) {
    header(h, "X-LXD-type", meta.kind.as_str().into());
    header(h, "X-LXD-uid", meta.uid.to_string());
    header(h, "X-LXD-gid", meta.gid.to_string());
    header(h, "X-LXD-mode", format!("{:04o}", meta.mode));
    header(h, "X-LXD-modified", go_time(meta.mtime));
    if meta.kind == FileKind::File {
        header(h, "X-LXD-size", meta.size.to_string());
    }
}

/// A time as Go's `Time.UTC().String()` prints it: `2006-01-02 15:04:05.999999999 +0000 UTC`
/// (fractional seconds without trailing zeros, none when whole).
fn go_time((secs, nanos): (i64, u32)) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return String::new();
    };
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_string()
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `HEAD`: the headers of `GET`, no body (and no data read: the stream is dropped unread).
pub async fn head(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult {
    let path = path_of(&q)?;
    let (meta, fd) = files::read(&d, &name, path).await?;
    drop(fd);
    let mut resp = Response::new(Body::empty());
    meta_headers(resp.headers_mut(), &meta);
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
    files::write(&d, &name, path, put, stream).await?;
    Ok(sync(serde_json::Value::Null))
}

/// `DELETE`.
pub async fn delete(
    State(d): State<Arc<Services>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult {
    let path = path_of(&q)?;
    files::delete(&d, &name, path).await?;
    Ok(sync(serde_json::Value::Null))
}

#[cfg(test)]
mod tests {
    use super::go_time;

    #[test]
    fn modified_times_print_as_go_does() {
        assert_eq!(go_time((0, 0)), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time((1_700_000_000, 120_000_000)),
            "2023-11-14 22:13:20.12 +0000 UTC"
        );
        assert_eq!(
            go_time((1_700_000_000, 1)),
            "2023-11-14 22:13:20.000000001 +0000 UTC"
        );
    }
}
