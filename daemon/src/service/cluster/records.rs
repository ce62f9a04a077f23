//! The cluster's global records on this member: the copy `store/replica.rs` keeps (started
//! with a membership, stopped with it), the local files of images the cluster deleted, and
//! an image's files copied from another member the first time an instance here needs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;

use super::{routing, Joined, MemberRecord};
use crate::service::{DomainError, Services};
use crate::store::replica::Replica;

/// Starts this member's copy of the global records for membership `j`: global writes go to
/// etcd from now on, and the watch runs until `j` ends.
pub(super) fn start(c: &Services, j: &Arc<Joined>) {
    let (gone_tx, mut gone) = tokio::sync::mpsc::unbounded_channel::<String>();
    let r = match Replica::new(j.etcd.clone(), &c.db, gone_tx) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the cluster's records cannot be copied here");
            return;
        }
    };
    c.db.set_replica(Some(r.clone()));
    tokio::spawn(r.watch(c.db.clone(), j.stop.clone()));
    tokio::spawn(relay_events(c.clone(), j.clone()));
    let c = c.clone();
    tokio::spawn(async move {
        while let Some(fp) = gone.recv().await {
            forget_image_here(&c, &fp).await;
        }
    });
}

/// Stops writing global records to the cluster (this host is standalone again); the next
/// membership copies the records afresh.
pub(super) fn stop(c: &Services) {
    c.db.set_replica(None);
    if let Err(e) = crate::store::replica::forget_revision(&c.db) {
        tracing::warn!(error = %e, "forgetting the cluster records' revision");
    }
}

/// An image another member deleted: its volumes and files here go too.
async fn forget_image_here(c: &Services, fp: &str) {
    if let Err(e) = crate::service::storage::drop_image_volumes(&c.db, &c.helpers, fp).await {
        tracing::warn!(fingerprint = fp, error = %e, "removing a deleted image's volumes");
    }
    crate::service::images::remove_files(&c.state_dir, fp);
}

/// Waits until this member's copy holds every write the cluster had finished (what a
/// request is served after). A copy that cannot catch up is used as it is, and said so.
pub async fn sync(c: &Services) {
    if let Ok(Some(r)) = c.db.replica() {
        if let Err(e) = r.sync().await {
            tracing::warn!(error = %e, "serving a request from a copy of the cluster's records that may be behind");
        }
    }
}

/// The files image `img` needs here.
fn files_of(dir: &Path, img: &crate::service::images::Image) -> Vec<(PathBuf, &'static str)> {
    let mut v = vec![(dir.join(&img.fingerprint), "meta")];
    if img.split {
        v.push((dir.join(format!("{}.rootfs", img.fingerprint)), "rootfs"));
    }
    v
}

/// Makes sure image `img`'s files are on this member, copying them from a member that has
/// them when they are not (an image is the cluster's; its files are where it was added).
/// The copy is checked against the fingerprint before it is kept.
pub async fn ensure_image_here(
    c: &Services,
    img: &crate::service::images::Image,
) -> Result<(), DomainError> {
    let dir = crate::service::images::images_dir(&c.state_dir);
    let have = |img| files_of(&dir, img).iter().all(|(p, _)| p.exists());
    if have(img) {
        return Ok(());
    }
    let Some(j) = c.cluster.joined() else {
        return Err(DomainError::Internal(format!(
            "image {}'s files are missing from {}",
            img.fingerprint,
            dir.display()
        )));
    };
    let lock = c.image_locks.download_lock(&img.fingerprint);
    let _g = lock.lock().await;
    if have(img) {
        return Ok(());
    }
    let members = j.etcd.list::<MemberRecord>("members").await?;
    let alive: std::collections::HashSet<String> =
        j.etcd.names("alive").await?.into_iter().collect();
    let mut errors = Vec::new();
    for (name, rec) in members {
        if name == j.local.name || !alive.contains(&name) {
            continue;
        }
        match copy_from(c, &routing::PeerAddr::from(&rec), img, &dir).await {
            Ok(()) => {
                tracing::info!(fingerprint = %img.fingerprint, from = %name, "copied an image from another member");
                return Ok(());
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(DomainError::Unavailable(format!(
        "image {} is on no ONLINE member that could send it ({})",
        img.fingerprint,
        if errors.is_empty() {
            "no other member is ONLINE".to_string()
        } else {
            errors.join("; ")
        }
    )))
}

/// Copies `img`'s files from member `from` into `dir`: written beside, hashed as they come,
/// renamed into place only if the hash is the fingerprint.
async fn copy_from(
    c: &Services,
    from: &routing::PeerAddr,
    img: &crate::service::images::Image,
    dir: &Path,
) -> Result<(), String> {
    let mut hash = sha2::Sha256::new();
    let mut parts: Vec<(PathBuf, PathBuf)> = Vec::new();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let r = async {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        for (dest, part) in files_of(dir, img) {
            // `tmp-`: what a silod killed mid-copy leaves is removed at its next start.
            let tmp = dir.join(format!("tmp-fetch-{tag}-{part}"));
            parts.push((tmp.clone(), dest));
            super::peer::download(
                &from.address,
                &from.pin,
                c.trust.identity(),
                &format!("/internal/cluster/images/{}/{part}", img.fingerprint),
                &tmp,
                &mut hash,
            )
            .await?;
        }
        let got = crate::service::images::fingerprint(hash);
        if got != img.fingerprint {
            return Err(format!(
                "the files sent hash to {got}, not the image's fingerprint"
            ));
        }
        // The rootfs first: the metadata file is what says an image is here.
        for (tmp, dest) in parts.iter().rev() {
            std::fs::rename(tmp, dest).map_err(|e| format!("keeping {}: {e}", dest.display()))?;
        }
        Ok(())
    }
    .await;
    if r.is_err() {
        for (tmp, _) in &parts {
            let _ = std::fs::remove_file(tmp);
        }
    }
    r
}

/// The path of image `fp`'s file `part` (`meta` or `rootfs`) here, for a member that asks:
/// `fp` must be a recorded image's full fingerprint, so no other file can be named.
pub fn image_file(c: &Services, fp: &str, part: &str) -> Result<PathBuf, DomainError> {
    let img = crate::service::images::get(&c.db, fp)?
        .filter(|i| i.fingerprint == fp)
        .ok_or_else(|| DomainError::NotFound(format!("image {fp:?} not found")))?;
    files_of(&crate::service::images::images_dir(&c.state_dir), &img)
        .into_iter()
        .find(|(_, p)| *p == part)
        .map(|(path, _)| path)
        .filter(|p| p.exists())
        .ok_or_else(|| {
            DomainError::NotFound(format!("image {fp}'s {part:?} file is not on this member"))
        })
}

/// Passes every other member's events on to this member's listeners (LXD's clients wait for
/// an operation's end on the events stream of the member they talk to, whichever member
/// runs it). One stream per member, opened again after any error, until `j` ends.
async fn relay_events(c: Services, j: Arc<Joined>) {
    let mut streams: std::collections::HashMap<String, tokio::task::JoinHandle<()>> =
        std::collections::HashMap::new();
    loop {
        if let Ok(members) = j.etcd.list::<MemberRecord>("members").await {
            let names: std::collections::HashSet<String> =
                members.iter().map(|(n, _)| n.clone()).collect();
            streams.retain(|n, h| {
                let keep = names.contains(n) && !h.is_finished();
                if !keep {
                    h.abort();
                }
                keep
            });
            for (n, m) in members {
                if n == j.local.name || streams.contains_key(&n) {
                    continue;
                }
                let (c, stop) = (c.clone(), j.stop.clone());
                let peer = routing::PeerAddr::from(&m);
                streams.insert(
                    n.clone(),
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            r = follow_events(&c, &peer) => {
                                if let Err(e) = r {
                                    tracing::debug!(member = %n, error = %e, "relaying a member's events; opening again");
                                }
                            }
                        }
                    }),
                );
            }
        }
        tokio::select! {
            _ = j.stop.cancelled() => {
                for h in streams.values() {
                    h.abort();
                }
                return;
            }
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}

/// One member's events, relayed here until its stream ends.
async fn follow_events(c: &Services, m: &routing::PeerAddr) -> Result<(), String> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tls = super::peer::connect(&m.address, &m.pin, c.trust.identity()).await?;
    let mut req = format!("wss://{}/1.0/events", m.address)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        super::peer::FORWARDED,
        hyper::header::HeaderValue::from_static("1"),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .map_err(|e| e.to_string())?;
    let me = super::location();
    while let Some(msg) = ws.next().await {
        let msg = msg.map_err(|e| e.to_string())?;
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            if let Ok(ev) = serde_json::from_str::<crate::service::events::Event>(&t) {
                if ev.location != me {
                    c.events.relay(ev);
                }
            }
        }
    }
    Err(format!("{} ended its events stream", m.address))
}
