//! LXD's files API inside an instance. silo-store resolves the path inside the instance's root
//! volume and hands silod a pipe (reads) or a socket (writes), never an fd of the file itself;
//! silod only moves the bytes.

use std::os::fd::OwnedFd;

use futures::{Stream, StreamExt};
use silo_proto::store::{FileMeta, FilePut};
use silo_proto::{InstanceName, PoolName, VolumeName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::HelperKind;
use crate::service::{instances, DomainError, Services};

fn names(c: &Services, name: &str) -> Result<(PoolName, VolumeName), DomainError> {
    let i = instances::get(&c.db, name)?;
    Ok((
        PoolName::new(i.pool).map_err(|e| DomainError::Internal(e.to_string()))?,
        VolumeName::new(i.name).map_err(|e| DomainError::Internal(e.to_string()))?,
    ))
}

/// The instance, when it runs: its files are then read and written where it sees them, by
/// silo-priv inside its namespaces (its own mounts included), else in its root volume by
/// silo-store.
async fn running(c: &Services, name: &str) -> Result<Option<InstanceName>, DomainError> {
    if !crate::service::runtime::is_running(c, name).await? {
        return Ok(None);
    }
    InstanceName::new(name.to_string())
        .map(Some)
        .map_err(|e| DomainError::BadRequest(e.to_string()))
}

async fn take_fd(
    c: &Services,
    from: HelperKind,
    t: silo_proto::fdpass::FdTicket,
) -> Result<OwnedFd, DomainError> {
    c.helpers
        .take_fds(from, t)
        .await
        .map_err(DomainError::Internal)?
        .pop()
        .ok_or_else(|| DomainError::Internal("the helper sent no fd".into()))
}

/// What is at `path`, and for a file a pipe its bytes come through.
pub async fn read(
    c: &Services,
    name: &str,
    path: String,
) -> Result<(FileMeta, Option<OwnedFd>), DomainError> {
    let (pool, vol) = names(c, name)?;
    let (meta, from) = match running(c, name).await? {
        Some(n) => (
            c.helpers.privileged.file_get(n, path).await?,
            HelperKind::Priv,
        ),
        None => (
            c.helpers.store.file_get(pool, vol, path).await?,
            HelperKind::Store,
        ),
    };
    let fd = match meta.fd {
        Some(t) => Some(take_fd(c, from, t).await?),
        None => None,
    };
    Ok((meta, fd))
}

/// Creates or replaces what is at `path`; a file's bytes come from `body`.
pub async fn write<S, B, E>(
    c: &Services,
    name: &str,
    path: String,
    put: FilePut,
    mut body: S,
) -> Result<(), DomainError>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let (pool, vol) = names(c, name)?;
    let (ticket, from) = match running(c, name).await? {
        Some(n) => (
            c.helpers.privileged.file_put(n, path, put).await?,
            HelperKind::Priv,
        ),
        None => (
            c.helpers.store.file_put(pool, vol, path, put).await?,
            HelperKind::Store,
        ),
    };
    let Some(t) = ticket else {
        return Ok(());
    };
    // A socket, never the file: the helper writes what arrives into it and answers "ok"
    // (or why not) once this side shuts down.
    let fd = take_fd(c, from, t).await?;
    let std_sock = std::os::unix::net::UnixStream::from(fd);
    std_sock
        .set_nonblocking(true)
        .map_err(|e| DomainError::Internal(format!("file socket: {e}")))?;
    let mut sock = tokio::net::UnixStream::from_std(std_sock)
        .map_err(|e| DomainError::Internal(format!("file socket: {e}")))?;
    let mut sent: Result<(), std::io::Error> = Ok(());
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| DomainError::BadRequest(format!("reading the upload: {e}")))?;
        // silo-store stops reading when it refuses the file: its answer says why.
        if let Err(e) = sock.write_all(chunk.as_ref()).await {
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
    Ok(())
}

/// Removes what is at `path`.
pub async fn delete(c: &Services, name: &str, path: String) -> Result<(), DomainError> {
    let (pool, vol) = names(c, name)?;
    match running(c, name).await? {
        Some(n) => c.helpers.privileged.file_delete(n, path).await?,
        None => c.helpers.store.file_delete(pool, vol, path).await?,
    }
    Ok(())
}
