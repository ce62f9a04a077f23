//! The cluster's implementation of the global records ([`crate::store::GlobalStore`]'s
//! second engine): etcd holds them, one key a record under `/silo/global/<kind>/<id>`, and
//! each member's SQLite keeps a copy that one watch feeds, in etcd's order.
//!
//! - **Writes** (`store::profiles::put` and the others, when [`Db::replica`] is set) become
//!   etcd transactions whose compares make them decisions: an image is inserted only if its
//!   key does not exist, an alias renamed only if the old name exists and the new does not,
//!   a read-modify-write of an image only if its `mod_revision` is still the one read. The
//!   write then waits until this member's copy has applied its revision, so what a caller
//!   writes it reads back at once.
//! - **Reads** are SQLite's, as on a standalone host. [`Replica::sync`] (called by the API
//!   layer before it serves a request) reads etcd's current revision linearizably and waits
//!   until the copy has reached it: a request sees every write that finished before it
//!   began, on whichever member.
//! - **The watch** starts from the revision after the last one applied (kept in SQLite, in
//!   the same transaction as the records it brought), so a member that was cut off or
//!   restarted catches up from where it stopped. A copy too old for etcd's history (compacted)
//!   or never made is rebuilt from one full read.
//!
//! Instances' definitions, snapshots and backups stay with the member that holds the
//! instance (every call about an instance is forwarded there); their placement is the
//! cluster's record (`/silo/instances/<name>`). Pools and networks are each member's own.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, EventType, GetOptions, TxnOp, WatchOptions, WatchResponse};
use rusqlite::params;
use tokio_util::sync::CancellationToken;

use crate::model::image::{Image, ImageAlias};
use crate::model::profile::Profile;
use crate::model::trust::CertRecord;
use crate::store::db::Db;
use crate::store::error::{Named, StoreError};
use crate::store::etcd::{Etcd, EtcdError};

/// The prefix of every global record.
pub const GLOBAL: &str = "/silo/global/";
/// What the watch covers: every key silo keeps, so each revision arrives as an event.
const WATCHED: &str = "/silo/";
/// How long a write or a request waits for this member's copy to catch up.
const CATCH_UP: Duration = Duration::from_secs(5);
/// How long a request waits for the copy before it is served from it as it is.
const SYNC_WAIT: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// Set while leader-only work runs: the leader key's `create_revision` this member won.
    /// Every global write in its scope is fenced by it (refused once another member leads).
    pub static FENCE: i64;
}

/// The kinds of global record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Profile,
    Image,
    Alias,
    Config,
    /// A trusted client certificate (the trust store is the cluster's).
    Certificate,
    /// A profile renamed: `{from, to}`, written in the rename's transaction, so that every
    /// member renames its instances' mentions of it.
    ProfileRename,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Profile => "profiles",
            Kind::Image => "images",
            Kind::Alias => "aliases",
            Kind::Config => "config",
            Kind::Certificate => "certificates",
            Kind::ProfileRename => "profile-renames",
        }
    }

    fn of(dir: &str) -> Option<Kind> {
        [
            Kind::Profile,
            Kind::Image,
            Kind::Alias,
            Kind::Config,
            Kind::Certificate,
            Kind::ProfileRename,
        ]
        .into_iter()
        .find(|k| k.dir() == dir)
    }

    fn key(self, id: &str) -> String {
        format!("{GLOBAL}{}/{id}", self.dir())
    }
}

/// One change the watch brought.
#[derive(Debug)]
struct Change {
    kind: Kind,
    id: String,
    /// The new value, or none for a delete.
    value: Option<Vec<u8>>,
}

/// The cluster's global records, as this member reaches them.
pub struct Replica {
    etcd: Etcd,
    /// The revision this member's copy has applied.
    applied: tokio::sync::watch::Sender<i64>,
    /// Asks the watch for a progress notice (the copy is current up to etcd's revision).
    progress: tokio::sync::mpsc::Sender<()>,
    progress_rx: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<()>>>,
    /// Where the watch says an image was deleted (its files here go too).
    gone_images: tokio::sync::mpsc::UnboundedSender<String>,
    /// For writes from threads outside the runtime.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica(at revision {})", *self.applied.borrow())
    }
}

/// `Conflict`: `what` named `name` exists already.
fn taken(what: &'static str, name: &str) -> StoreError {
    StoreError::Conflict(crate::store::error::Taken(Named::new(what, name)))
}

fn cluster_err(e: EtcdError) -> StoreError {
    StoreError::Cluster(e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Cluster(format!("encoding a record: {e}")))
}

/// The revision this host's copy is at (0: none).
pub fn stored_revision(db: &Db) -> Result<i64, StoreError> {
    db.run(|c| {
        Ok(
            c.query_row("SELECT revision FROM replica WHERE id = 0", [], |r| {
                r.get(0)
            })?,
        )
    })
}

/// Forgets the copy's revision: the next watch starts with a full read (a host that joins
/// another cluster, or leaves one).
pub fn forget_revision(db: &Db) -> Result<(), StoreError> {
    db.run(|c| {
        c.execute("UPDATE replica SET revision = 0 WHERE id = 0", [])?;
        Ok(())
    })
}

impl Replica {
    /// For the member connected by `etcd`; images the watch sees deleted are sent to
    /// `gone_images`. Runs nothing until [`Replica::watch`].
    pub fn new(
        etcd: Etcd,
        db: &Db,
        gone_images: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<Arc<Replica>, StoreError> {
        let at = stored_revision(db)?;
        let (progress, rx) = tokio::sync::mpsc::channel(1);
        Ok(Arc::new(Replica {
            etcd,
            applied: tokio::sync::watch::Sender::new(at),
            progress,
            progress_rx: std::sync::Mutex::new(Some(rx)),
            gone_images,
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// Runs a write's future to its end from the store's synchronous functions: on a worker
    /// of silod's (multi-threaded) runtime the worker hands its other tasks on while it waits.
    fn block<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(f))
            }
            Ok(_) => Err(StoreError::Cluster(
                "a cluster write from a single-threaded runtime".into(),
            )),
            Err(_) => self.runtime.block_on(f),
        }
    }

    /// Waits until the copy has applied `rev`.
    async fn caught_up(&self, rev: i64) -> Result<(), StoreError> {
        let mut rx = self.applied.subscribe();
        let wait = async {
            loop {
                if *rx.borrow_and_update() >= rev {
                    return;
                }
                // A quiet watch says how far it is only when asked.
                let _ = self.progress.try_send(());
                let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
            }
        };
        tokio::time::timeout(CATCH_UP, wait).await.map_err(|_| {
            StoreError::Cluster(format!(
                "this member's copy of the cluster's records is at revision {}, behind {rev}, after {CATCH_UP:?}",
                *self.applied.borrow()
            ))
        })
    }

    /// Waits until this member's copy holds every write etcd had finished when this was
    /// called: what the API does before it serves a request. Bounded by [`SYNC_WAIT`] and
    /// tried once (no retry while etcd is unavailable): a member without quorum still
    /// serves reads, from its copy as it is.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let k = Kind::Config.key("");
        let mut client = self.etcd.client();
        let read = client.get(k, Some(GetOptions::new().with_prefix().with_count_only()));
        let r = match tokio::time::timeout(SYNC_WAIT, read).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(StoreError::Cluster(format!("etcd's revision: {e}"))),
            Err(_) => {
                return Err(StoreError::Cluster(format!(
                    "etcd's revision: no answer within {SYNC_WAIT:?}"
                )))
            }
        };
        let rev = r.header().map(|h| h.revision()).unwrap_or(0);
        tokio::time::timeout(SYNC_WAIT, self.caught_up(rev))
            .await
            .map_err(|_| {
                StoreError::Cluster(format!(
                    "this member's copy did not reach revision {rev} within {SYNC_WAIT:?}"
                ))
            })?
    }

    /// Runs `ops` if `when` holds (and, in leader-only work, while this member still
    /// leads); its revision when it succeeded (the copy has applied it), or none.
    async fn commit(&self, when: Vec<Compare>, ops: Vec<TxnOp>) -> Result<Option<i64>, StoreError> {
        let fence = FENCE.try_with(|r| *r).ok();
        let mut when = when;
        if let Some(rev) = fence {
            when.push(Compare::create_revision(
                crate::store::etcd::LEADER_KEY,
                CompareOp::Equal,
                rev,
            ));
        }
        let txn = etcd_client::Txn::new().when(when).and_then(ops);
        let r = self.etcd.txn_raw(txn).await.map_err(cluster_err)?;
        if !r.succeeded() {
            if let Some(rev) = fence {
                let now = self
                    .etcd
                    .retried_get(
                        crate::store::etcd::LEADER_KEY.to_string(),
                        GetOptions::new(),
                    )
                    .await
                    .map_err(cluster_err)?;
                if now.kvs().first().map(|kv| kv.create_revision()) != Some(rev) {
                    return Err(StoreError::Cluster(
                        "this member no longer leads the cluster: its leader-only write was refused"
                            .into(),
                    ));
                }
            }
            return Ok(None);
        }
        let rev = r.header().map(|h| h.revision()).unwrap_or(0);
        self.caught_up(rev).await?;
        Ok(Some(rev))
    }

    /// One record and its `mod_revision` (0: none).
    async fn read(&self, kind: Kind, id: &str) -> Result<(Option<Vec<u8>>, i64), StoreError> {
        let r = self
            .etcd
            .retried_get(kind.key(id), GetOptions::new())
            .await
            .map_err(cluster_err)?;
        Ok(match r.kvs().first() {
            Some(kv) => (Some(kv.value().to_vec()), kv.mod_revision()),
            None => (None, 0),
        })
    }

    /// Writes `body` at `kind/id` only if no record is there; `Conflict` (`what`) if one is.
    fn create(
        &self,
        kind: Kind,
        id: &str,
        body: Vec<u8>,
        what: &'static str,
    ) -> Result<(), StoreError> {
        let k = kind.key(id);
        self.block(async {
            let when = vec![Compare::create_revision(k.clone(), CompareOp::Equal, 0)];
            match self.commit(when, vec![TxnOp::put(k, body, None)]).await? {
                Some(_) => Ok(()),
                None => Err(taken(what, id)),
            }
        })
    }

    /// Copies a standalone host's global records into etcd, once, as it becomes the
    /// cluster's first member (etcd is empty and nobody else writes).
    pub async fn seed(etcd: &Etcd, db: &Db) -> Result<(), StoreError> {
        let mut puts: Vec<(String, Vec<u8>)> = Vec::new();
        for p in crate::store::profiles::all(db)? {
            puts.push((Kind::Profile.key(&p.name), json(&p)?));
        }
        for i in crate::store::images::all(db)? {
            puts.push((Kind::Image.key(&i.fingerprint), json(&i)?));
        }
        for a in crate::store::images::aliases(db)? {
            puts.push((Kind::Alias.key(&a.name), json(&a)?));
        }
        for cert in crate::store::certificates::all(db)? {
            puts.push((Kind::Certificate.key(&cert.fingerprint), json(&cert)?));
        }
        for (k, v) in crate::store::config::all(db)? {
            if !crate::store::config::is_member_key(&k) {
                puts.push((Kind::Config.key(&k), json(&v)?));
            }
        }
        // etcd caps a transaction's operations (128 by default): one put at a time.
        for (k, v) in puts {
            etcd.txn_raw(etcd_client::Txn::new().and_then([TxnOp::put(k, v, None)]))
                .await
                .map_err(cluster_err)?;
        }
        Ok(())
    }

    // The watch.

    /// Keeps this member's copy current until `stop`: a full read when there is no copy (or
    /// etcd's history no longer reaches it), then one watch from the revision after the last
    /// applied, opened again from there after any error.
    pub async fn watch(self: Arc<Self>, db: Db, stop: CancellationToken) {
        let mut progress = self
            .progress_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(progress) = progress.as_mut() else {
            tracing::error!("the cluster records' watch is already running");
            return;
        };
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let r = async {
                if stored_revision(&db)? == 0 {
                    self.resync(&db).await?;
                }
                self.follow(&db, progress, &stop).await
            }
            .await;
            match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the cluster records' watch; opening it again");
                    self.etcd.reconnect().await;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Replaces the copy with one full read of etcd's global records.
    async fn resync(&self, db: &Db) -> Result<(), StoreError> {
        let r = self
            .etcd
            .retried_get(GLOBAL.to_string(), GetOptions::new().with_prefix())
            .await
            .map_err(cluster_err)?;
        let rev = r.header().map(|h| h.revision()).unwrap_or(0);
        let mut changes = Vec::new();
        for kv in r.kvs() {
            // A rename's note was for the members that watched it happen: the full read
            // brings the instances' mentions as they are.
            if let Some((kind, id)) = parse_key(kv.key()).filter(|(k, _)| *k != Kind::ProfileRename)
            {
                changes.push(Change {
                    kind,
                    id,
                    value: Some(kv.value().to_vec()),
                });
            }
        }
        let gone = db.tx(|tx| {
            let gone = clear(tx, &changes)?;
            for c in order(&changes) {
                apply(tx, c)?;
            }
            tx.execute(
                "UPDATE replica SET revision = ?1 WHERE id = 0",
                params![rev],
            )?;
            Ok(gone)
        })?;
        for fp in gone {
            let _ = self.gone_images.send(fp);
        }
        self.applied.send_replace(rev);
        tracing::info!(revision = rev, "copied the cluster's records");
        Ok(())
    }

    /// Follows the watch from the revision after the stored one until `stop`.
    async fn follow(
        &self,
        db: &Db,
        progress: &mut tokio::sync::mpsc::Receiver<()>,
        stop: &CancellationToken,
    ) -> Result<(), StoreError> {
        let from = stored_revision(db)? + 1;
        let mut client = self.etcd.client();
        let mut stream = client
            .watch(
                WATCHED,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(from)
                        .with_progress_notify(),
                ),
            )
            .await
            .map_err(|e| StoreError::Cluster(format!("opening the watch: {e}")))?;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                Some(()) = progress.recv() => {
                    stream.request_progress().await
                        .map_err(|e| StoreError::Cluster(format!("the watch: {e}")))?;
                }
                m = stream.message() => {
                    let m = m.map_err(|e| StoreError::Cluster(format!("the watch: {e}")))?
                        .ok_or_else(|| StoreError::Cluster("etcd ended the watch".into()))?;
                    self.take(db, m)?;
                }
            }
        }
    }

    /// Applies one watch answer.
    fn take(&self, db: &Db, m: WatchResponse) -> Result<(), StoreError> {
        if m.canceled() {
            if m.compact_revision() > 0 {
                // The history the copy needs is gone: read everything again.
                forget_revision(db)?;
                return Err(StoreError::Cluster(format!(
                    "etcd compacted its history past revision {}: copying the records again",
                    m.compact_revision()
                )));
            }
            return Err(StoreError::Cluster(format!(
                "etcd cancelled the watch: {}",
                m.cancel_reason()
            )));
        }
        if m.events().is_empty() {
            // A progress notice: every event up to its revision has been sent. The answer
            // that creates the watch says nothing of the kind.
            if !m.created() {
                if let Some(h) = m.header() {
                    let rev = h.revision();
                    db.run(|c| {
                        c.execute(
                            "UPDATE replica SET revision = ?1 WHERE id = 0 AND revision < ?1",
                            params![rev],
                        )?;
                        Ok(())
                    })?;
                    self.applied.send_if_modified(|a| {
                        let newer = rev > *a;
                        if newer {
                            *a = rev;
                        }
                        newer
                    });
                }
            }
            return Ok(());
        }
        let mut last = 0;
        let mut changes = Vec::new();
        for ev in m.events() {
            let Some(kv) = ev.kv() else { continue };
            last = last.max(kv.mod_revision());
            let Some((kind, id)) = parse_key(kv.key()) else {
                continue;
            };
            changes.push(Change {
                kind,
                id,
                value: match ev.event_type() {
                    EventType::Put => Some(kv.value().to_vec()),
                    EventType::Delete => None,
                },
            });
        }
        let gone = db.tx(|tx| {
            let at: i64 = tx.query_row("SELECT revision FROM replica WHERE id = 0", [], |r| {
                r.get(0)
            })?;
            // Applied already (a watch opened again after a write it had taken).
            if last <= at {
                return Ok(Vec::new());
            }
            let mut gone = Vec::new();
            for c in &changes {
                if c.kind == Kind::Image && c.value.is_none() {
                    gone.push(c.id.clone());
                }
                apply(tx, c)?;
            }
            tx.execute(
                "UPDATE replica SET revision = ?1 WHERE id = 0",
                params![last],
            )?;
            Ok(gone)
        })?;
        for fp in gone {
            let _ = self.gone_images.send(fp);
        }
        self.applied.send_if_modified(|a| {
            let newer = last > *a;
            if newer {
                *a = last;
            }
            newer
        });
        Ok(())
    }
}

/// A global key's kind and id.
fn parse_key(k: &[u8]) -> Option<(Kind, String)> {
    let k = std::str::from_utf8(k).ok()?;
    let rest = k.strip_prefix(GLOBAL)?;
    let (dir, id) = rest.split_once('/')?;
    Some((Kind::of(dir)?, id.to_string()))
}

/// Images before aliases (an alias names a recorded image).
fn order(changes: &[Change]) -> impl Iterator<Item = &Change> {
    let first = changes.iter().filter(|c| c.kind != Kind::Alias);
    first.chain(changes.iter().filter(|c| c.kind == Kind::Alias))
}

/// Empties the copy before a full read; the images that are not in `changes` (gone).
fn clear(tx: &rusqlite::Connection, changes: &[Change]) -> Result<Vec<String>, StoreError> {
    let keep: BTreeSet<&str> = changes
        .iter()
        .filter(|c| c.kind == Kind::Image)
        .map(|c| c.id.as_str())
        .collect();
    let gone: Vec<String> = crate::store::images::fingerprints_in(tx)?
        .into_iter()
        .filter(|f| !keep.contains(f.as_str()))
        .collect();
    for fp in &gone {
        crate::store::images::delete_in(tx, fp)?;
    }
    tx.execute("DELETE FROM image_aliases", [])?;
    tx.execute("DELETE FROM profiles", [])?;
    tx.execute("DELETE FROM certificates", [])?;
    for k in crate::store::config::all_in(tx)?.into_keys() {
        if !crate::store::config::is_member_key(&k) {
            crate::store::config::delete_in(tx, &k)?;
        }
    }
    Ok(gone)
}

fn decode<T: for<'de> serde::Deserialize<'de>>(c: &Change, v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| {
        StoreError::Cluster(format!(
            "the cluster's record {}{}/{} does not decode: {e}",
            GLOBAL,
            c.kind.dir(),
            c.id
        ))
    })
}

/// Applies one change to the copy.
fn apply(tx: &rusqlite::Connection, c: &Change) -> Result<(), StoreError> {
    match (c.kind, &c.value) {
        (Kind::Profile, Some(v)) => crate::store::profiles::upsert_in(tx, &decode(c, v)?),
        (Kind::Profile, None) => crate::store::profiles::delete_in(tx, &c.id),
        (Kind::Image, Some(v)) => crate::store::images::upsert_in(tx, &decode(c, v)?),
        (Kind::Image, None) => crate::store::images::delete_in(tx, &c.id),
        (Kind::Alias, Some(v)) => crate::store::images::alias_upsert_in(tx, &decode(c, v)?),
        (Kind::Alias, None) => crate::store::images::alias_delete_in(tx, &c.id),
        (Kind::Config, Some(v)) => {
            crate::store::config::set_in(tx, &c.id, &decode::<String>(c, v)?)
        }
        (Kind::Config, None) => crate::store::config::delete_in(tx, &c.id),
        (Kind::Certificate, Some(v)) => crate::store::certificates::upsert_in(tx, &decode(c, v)?),
        (Kind::Certificate, None) => crate::store::certificates::delete_in(tx, &c.id),
        (Kind::ProfileRename, Some(v)) => {
            let r: serde_json::Value = decode(c, v)?;
            match (r["from"].as_str(), r["to"].as_str()) {
                (Some(from), Some(to)) => crate::store::profiles::rename_mentions_in(tx, from, to),
                _ => Err(StoreError::Cluster(format!(
                    "the cluster's profile rename record {} is not {{from, to}}",
                    c.id
                ))),
            }
        }
        (Kind::ProfileRename, None) => Ok(()),
    }
}

impl crate::store::writes::GlobalWrites for Replica {
    // Profiles.

    /// Creates or replaces a profile.
    fn put_profile(&self, p: &Profile) -> Result<(), StoreError> {
        let body = json(p)?;
        self.block(async {
            let t = (
                Vec::new(),
                vec![TxnOp::put(Kind::Profile.key(&p.name), body, None)],
            );
            self.commit(t.0, t.1).await.map(|_| ())
        })
    }

    /// Deletes a profile.
    fn delete_profile(&self, name: &str) -> Result<(), StoreError> {
        self.block(async {
            let t = (
                Vec::new(),
                vec![TxnOp::delete(Kind::Profile.key(name), None)],
            );
            self.commit(t.0, t.1).await.map(|_| ())
        })
    }

    /// Renames a profile: refused unless `from` exists and `to` does not, in one transaction.
    fn rename_profile(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.block(async {
            let (old, rev) = self.read(Kind::Profile, from).await?;
            let Some(old) = old else {
                return Err(StoreError::not_found(Named::new("profile", from)));
            };
            let mut p: Profile = serde_json::from_slice(&old)
                .map_err(|e| StoreError::Cluster(format!("profile {from:?}: {e}")))?;
            p.name = to.to_string();
            let note = json(&serde_json::json!({"from": from, "to": to}))?;
            let t = (
                vec![
                    Compare::mod_revision(Kind::Profile.key(from), CompareOp::Equal, rev),
                    Compare::create_revision(Kind::Profile.key(to), CompareOp::Equal, 0),
                ],
                vec![
                    TxnOp::delete(Kind::Profile.key(from), None),
                    TxnOp::put(Kind::Profile.key(to), json(&p)?, None),
                    TxnOp::put(Kind::ProfileRename.key(from), note, None),
                ],
            );
            match self.commit(t.0, t.1).await? {
                Some(_) => Ok(()),
                None => Err(taken("profile", to)),
            }
        })
    }

    // Images and aliases.

    /// Records a new image; `Conflict` if its fingerprint is recorded.
    fn insert_image(&self, i: &Image) -> Result<(), StoreError> {
        self.create(Kind::Image, &i.fingerprint, json(i)?, "image")
    }

    /// Changes a recorded image with `f`; `NotFound` if there is none. A change that raced
    /// another member's is read again and redone.
    fn modify_image(&self, fp: &str, f: &(dyn Fn(&mut Image) + Sync)) -> Result<(), StoreError> {
        self.block(async {
            for _ in 0..8 {
                let (v, rev) = self.read(Kind::Image, fp).await?;
                let Some(v) = v else {
                    return Err(StoreError::not_found(Named::new("image", fp)));
                };
                let mut img: Image = serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Cluster(format!("image {fp}: {e}")))?;
                f(&mut img);
                let k = Kind::Image.key(fp);
                let t = (
                    vec![Compare::mod_revision(k.clone(), CompareOp::Equal, rev)],
                    vec![TxnOp::put(k, json(&img)?, None)],
                );
                if self.commit(t.0, t.1).await?.is_some() {
                    return Ok(());
                }
            }
            Err(StoreError::Cluster(format!(
                "image {fp}: changed by other members eight times in a row; try again"
            )))
        })
    }

    /// Deletes an image and the aliases that name it, in one transaction.
    fn delete_image(&self, fp: &str, aliases: &[String]) -> Result<(), StoreError> {
        self.block(async {
            let mut ops = vec![TxnOp::delete(Kind::Image.key(fp), None)];
            for a in aliases {
                ops.push(TxnOp::delete(Kind::Alias.key(a), None));
            }
            self.commit(Vec::new(), ops).await.map(|_| ())
        })
    }

    /// Creates or replaces an alias; refused unless its image is recorded.
    fn put_alias(&self, a: &ImageAlias) -> Result<(), StoreError> {
        let body = json(a)?;
        self.block(async {
            let t = (
                vec![Compare::create_revision(
                    Kind::Image.key(&a.target),
                    CompareOp::Greater,
                    0,
                )],
                vec![TxnOp::put(Kind::Alias.key(&a.name), body, None)],
            );
            match self.commit(t.0, t.1).await? {
                Some(_) => Ok(()),
                None => Err(StoreError::not_found(Named::new("image", &a.target))),
            }
        })
    }

    /// Removes an alias; `NotFound` if there was none.
    fn delete_alias(&self, name: &str) -> Result<(), StoreError> {
        self.block(async {
            let k = Kind::Alias.key(name);
            let t = (
                vec![Compare::create_revision(k.clone(), CompareOp::Greater, 0)],
                vec![TxnOp::delete(k, None)],
            );
            match self.commit(t.0, t.1).await? {
                Some(_) => Ok(()),
                None => Err(StoreError::not_found(Named::new("alias", name))),
            }
        })
    }

    /// Renames an alias: `NotFound` without `from`, `Conflict` when `to` is taken.
    fn rename_alias(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.block(async {
            let (v, rev) = self.read(Kind::Alias, from).await?;
            let Some(v) = v else {
                return Err(StoreError::not_found(Named::new("alias", from)));
            };
            let mut a: ImageAlias = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Cluster(format!("alias {from:?}: {e}")))?;
            a.name = to.to_string();
            let t = (
                vec![
                    Compare::mod_revision(Kind::Alias.key(from), CompareOp::Equal, rev),
                    Compare::create_revision(Kind::Alias.key(to), CompareOp::Equal, 0),
                ],
                vec![
                    TxnOp::delete(Kind::Alias.key(from), None),
                    TxnOp::put(Kind::Alias.key(to), json(&a)?, None),
                ],
            );
            match self.commit(t.0, t.1).await? {
                Some(_) => Ok(()),
                None => Err(taken("alias", to)),
            }
        })
    }

    // The trust store.

    /// Trusts a new certificate; `Conflict` if it is trusted already.
    fn insert_certificate(&self, cert: &CertRecord) -> Result<(), StoreError> {
        self.create(
            Kind::Certificate,
            &cert.fingerprint,
            json(cert)?,
            "certificate",
        )
    }

    /// Replaces trusted certificate `old` with `new` (its name, type, or the certificate
    /// itself under a new fingerprint, which must not be trusted already).
    fn replace_certificate(&self, old: &CertRecord, new: &CertRecord) -> Result<(), StoreError> {
        let (ko, kn) = (
            Kind::Certificate.key(&old.fingerprint),
            Kind::Certificate.key(&new.fingerprint),
        );
        let body = json(new)?;
        self.block(async {
            let (v, rev) = self.read(Kind::Certificate, &old.fingerprint).await?;
            if v.is_none() {
                return Err(StoreError::not_found(Named::new(
                    "certificate",
                    &old.fingerprint,
                )));
            }
            let mut when = vec![Compare::mod_revision(ko.clone(), CompareOp::Equal, rev)];
            let mut ops = Vec::new();
            if ko != kn {
                when.push(Compare::create_revision(kn.clone(), CompareOp::Equal, 0));
                ops.push(TxnOp::delete(ko, None));
            }
            ops.push(TxnOp::put(kn, body, None));
            match self.commit(when, ops).await? {
                Some(_) => Ok(()),
                None => Err(taken("certificate", &new.fingerprint)),
            }
        })
    }

    /// Stops trusting a certificate.
    fn delete_certificate(&self, fp: &str) -> Result<(), StoreError> {
        self.block(async {
            self.commit(
                Vec::new(),
                vec![TxnOp::delete(Kind::Certificate.key(fp), None)],
            )
            .await
            .map(|_| ())
        })
    }

    // Server config.

    /// Makes the cluster's config keys `cfg` (every other global key removed), in one
    /// transaction.
    fn replace_config(
        &self,
        now: &BTreeMap<String, String>,
        cfg: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut ops = Vec::new();
        for k in now.keys().filter(|k| !cfg.contains_key(*k)) {
            ops.push(TxnOp::delete(Kind::Config.key(k), None));
        }
        for (k, v) in cfg.iter().filter(|(k, v)| now.get(*k) != Some(*v)) {
            ops.push(TxnOp::put(Kind::Config.key(k), json(v)?, None));
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.block(async { self.commit(Vec::new(), ops).await.map(|_| ()) })
    }

    fn sync(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + '_>> {
        Box::pin(Replica::sync(self))
    }
}

/// For the store's tests: applies `(kind, id, value)` changes as one watch answer would,
/// or (with `full`) as a full read.
#[cfg(test)]
pub(crate) fn apply_for_test(
    db: &Db,
    changes: &[(&str, &str, Option<serde_json::Value>)],
    full: bool,
) -> Result<Vec<String>, StoreError> {
    let changes: Vec<Change> = changes
        .iter()
        .map(|(k, id, v)| Change {
            kind: Kind::of(k).expect("a kind"),
            id: id.to_string(),
            value: v.as_ref().map(|v| serde_json::to_vec(v).expect("json")),
        })
        .collect();
    db.tx(|tx| {
        let gone = if full {
            clear(tx, &changes)?
        } else {
            Vec::new()
        };
        for c in order(&changes) {
            apply(tx, c)?;
        }
        Ok(gone)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        for k in [
            Kind::Profile,
            Kind::Image,
            Kind::Alias,
            Kind::Config,
            Kind::Certificate,
            Kind::ProfileRename,
        ] {
            let key = k.key("x/y");
            assert_eq!(parse_key(key.as_bytes()), Some((k, "x/y".to_string())));
        }
        assert_eq!(parse_key(b"/silo/members/m1"), None);
        assert_eq!(parse_key(b"/silo/global/unknown/x"), None);
    }

    #[test]
    fn aliases_after_images() {
        let ch = |kind, id: &str| Change {
            kind,
            id: id.into(),
            value: None,
        };
        let v = [
            ch(Kind::Alias, "a"),
            ch(Kind::Image, "i"),
            ch(Kind::Profile, "p"),
        ];
        let ids: Vec<&str> = order(&v).map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["i", "p", "a"]);
    }
}
