//! btrfs send streams for migrations between btrfs pools (`lxc copy a:c b:c` when both ends
//! have btrfs): LXD's optimized transfer, one stream per volume, snapshots oldest first and
//! each the difference from the one before, the instance last.
//!
//! A send runs `BTRFS_IOC_SEND` in a forked child that keeps CAP_SYS_ADMIN for the ioctl and
//! is landlocked read-only to the volume and its parent; it writes into a stream socket
//! whose other end silod relays to the peer. The instance is sent from a read-only snapshot
//! made here and removed at the end; a snapshot volume (and the parent) is made read-only
//! for the send and writable again after, as LXD toggles its subvolumes.
//!
//! A receive applies the untrusted stream with `receive.rs` (never `btrfs receive`) into a
//! NEW volume, in a child landlocked to it (and read-only to the base an incremental stream
//! starts from), within the policy's size limits; a failed receive removes the volume.
//!
//! Each session runs as a task of silo-store's runtime; silod reads its end with
//! `btrfs_wait`. silo-store keeps a copy of silod's end only to shut it down on
//! `btrfs_abort`, which makes the child's read or write fail at once.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::Root;
use silo_proto::store::{BtrfsReport, RsyncSession, VolumeKind};
use silo_proto::{PoolName, VolumeName};

use crate::pools::StoreServer;

/// The send stream command that starts an incremental stream (`BTRFS_SEND_C_SNAPSHOT`).
const STREAM_SNAPSHOT: u16 = 2;

/// The first command of the send stream waiting on `sock`, read without taking it (the
/// receiver reads it again): `None` at EOF or on anything that is not a stream header.
async fn first_command(sock: &OwnedFd) -> Option<u16> {
    use nix::sys::socket::{recv, MsgFlags};
    // The magic (13), the version (4), then the command's length (4) and type (2). The fd's
    // own flags stay blocking (the child reads it): MSG_DONTWAIT per call instead.
    let fd = silo_proto::jail::launcher::async_fd(sock.try_clone().ok()?).ok()?;
    let mut buf = [0u8; 23];
    loop {
        let mut ready = fd.readable().await.ok()?;
        match recv(
            fd.get_ref().as_raw_fd(),
            &mut buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => return None,
            Ok(n) if n >= buf.len() => {
                if &buf[..13] != b"btrfs-stream\0" {
                    return None;
                }
                return Some(u16::from_le_bytes([buf[21], buf[22]]));
            }
            // Not all of it yet: wait for more.
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
            Err(_) => return None,
        }
    }
}

/// Sessions at once; more are refused.
pub const MAX_SESSIONS: usize = 8;

/// Longest `btrfs_wait`.
const MAX_WAIT_SECS: u32 = 3600;

type Outcome = HelperResult<BtrfsReport>;

struct Session {
    what: String,
    /// A copy of silod's end, shut down on abort.
    peer: OwnedFd,
    done: tokio::sync::Mutex<tokio::sync::oneshot::Receiver<Outcome>>,
}

/// The running btrfs sessions.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<u64, Arc<Session>>>,
    next: AtomicU64,
    /// Subvolumes made read-only for sends, by (device, inode): how many sends use each and
    /// whether it was writable before the first, so that one send ending does not make a
    /// subvolume writable under another (the kernel would refuse a send from it).
    readonly: Mutex<HashMap<(u64, u64), (usize, bool)>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("btrfs sessions").finish_non_exhaustive()
    }
}

fn stream_pair() -> HelperResult<(OwnedFd, OwnedFd)> {
    nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| HelperError::errno("socketpair", "btrfs stream", e))
}

impl Sessions {
    fn slot(&self) -> HelperResult<()> {
        let n = self.table.lock().map(|t| t.len()).unwrap_or(MAX_SESSIONS);
        if n >= MAX_SESSIONS {
            return Err(HelperError::InUse {
                what: "btrfs transfers".into(),
                by: format!("{MAX_SESSIONS} transfers already running"),
            });
        }
        Ok(())
    }

    fn insert(
        &self,
        what: String,
        peer: OwnedFd,
        done: tokio::sync::oneshot::Receiver<Outcome>,
    ) -> HelperResult<u64> {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.table
            .lock()
            .map_err(|_| HelperError::Unsupported("btrfs session table poisoned".into()))?
            .insert(
                id,
                Arc::new(Session {
                    what,
                    peer,
                    done: tokio::sync::Mutex::new(done),
                }),
            );
        Ok(id)
    }

    fn get(&self, id: u64) -> HelperResult<Arc<Session>> {
        self.table
            .lock()
            .ok()
            .and_then(|t| t.get(&id).cloned())
            .ok_or_else(|| HelperError::NotFound {
                what: format!("btrfs session {id}"),
            })
    }

    fn forget(&self, id: u64) -> bool {
        self.table
            .lock()
            .ok()
            .and_then(|mut t| t.remove(&id))
            .is_some()
    }

    /// Waits up to `secs` for session `id` to end.
    pub async fn wait(&self, id: u64, secs: u32) -> HelperResult<Option<BtrfsReport>> {
        let s = self.get(id)?;
        let wait = Duration::from_secs(u64::from(secs.min(MAX_WAIT_SECS)));
        let mut rx = s.done.lock().await;
        let r = match tokio::time::timeout(wait, &mut *rx).await {
            Err(_elapsed) => return Ok(None),
            Ok(r) => r,
        };
        if !self.forget(id) {
            return Err(HelperError::NotFound {
                what: format!("btrfs session {id}"),
            });
        }
        let r = r.unwrap_or_else(|_| {
            Err(HelperError::Io {
                op: "btrfs transfer".into(),
                target: s.what.clone(),
                message: "the session's task went away".into(),
                errno: None,
            })
        });
        tracing::info!(id, what = %s.what, ok = r.is_ok(), "btrfs session ended");
        r.map(Some)
    }

    /// Shuts the session's socket down (its child's read or write fails), waits for the
    /// child's end and forgets the session.
    pub async fn abort(&self, id: u64) -> HelperResult<()> {
        let s = self.get(id)?;
        if !self.forget(id) {
            return Err(HelperError::NotFound {
                what: format!("btrfs session {id}"),
            });
        }
        let _ = nix::sys::socket::shutdown(s.peer.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let mut rx = s.done.lock().await;
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut *rx).await;
        tracing::info!(id, what = %s.what, "aborted btrfs session");
        Ok(())
    }
}

/// A subvolume made read-only for a send, writable again (if it was) when the last send
/// using it drops its guard.
struct ReadOnly(Option<(StoreServer, (u64, u64), OwnedFd)>);

impl ReadOnly {
    fn make(server: &StoreServer, dir: &Root) -> HelperResult<ReadOnly> {
        let st = nix::sys::stat::fstat(dir.fd())
            .map_err(|e| HelperError::errno("fstat", dir.display(), e))?;
        let key = (st.st_dev, st.st_ino);
        let fd = dir
            .fd()
            .try_clone_to_owned()
            .map_err(|e| HelperError::io("dup", dir.display(), e))?;
        let mut map = server
            .0
            .btrfs
            .readonly
            .lock()
            .map_err(|_| HelperError::Unsupported("btrfs read-only table poisoned".into()))?;
        match map.get_mut(&key) {
            Some((n, _)) => *n += 1,
            None => {
                let was_rw = !crate::btrfs::is_readonly(dir.fd())?;
                if was_rw {
                    crate::btrfs::set_readonly(dir.fd(), true)?;
                }
                map.insert(key, (1, was_rw));
            }
        }
        Ok(ReadOnly(Some((server.clone(), key, fd))))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let Some((server, key, fd)) = self.0.take() else {
            return;
        };
        let Ok(mut map) = server.0.btrfs.readonly.lock() else {
            return;
        };
        let restore = match map.get_mut(&key) {
            Some((n, _)) if *n > 1 => {
                *n -= 1;
                false
            }
            Some((_, was_rw)) => {
                let r = *was_rw;
                map.remove(&key);
                r
            }
            None => false,
        };
        if restore {
            if let Err(e) = crate::btrfs::set_readonly(fd.as_fd(), false) {
                tracing::error!(error = %e, "making a sent subvolume writable again failed");
            }
        }
    }
}

impl StoreServer {
    fn btrfs_pool(&self, pool: &PoolName) -> HelperResult<Root> {
        let dir = self.pool(pool)?;
        if !self.pool_is_btrfs(&dir) {
            return Err(HelperError::invalid(
                "btrfs transfer",
                format!("pool {:?} is not a btrfs pool", pool.as_str()),
            ));
        }
        Ok(dir)
    }

    fn hand_over(
        &self,
        what: String,
        silod_end: OwnedFd,
        done: tokio::sync::oneshot::Receiver<Outcome>,
    ) -> HelperResult<RsyncSession> {
        let ticket = self.send_fd(&silod_end)?;
        let id = self.0.btrfs.insert(what.clone(), silod_end, done)?;
        tracing::info!(id, %what, "started btrfs session");
        Ok(RsyncSession { id, fd: ticket })
    }

    /// `btrfs_send_start`.
    pub(crate) async fn btrfs_send(
        &self,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        parent: Option<(VolumeKind, VolumeName)>,
    ) -> HelperResult<RsyncSession> {
        self.0.btrfs.slot()?;
        let dir = self.btrfs_pool(&pool)?;
        let what = Self::volume_what(&pool, kind, &volume);
        let src = Self::open_volume(&dir, &pool, kind, &volume)?;
        if !crate::btrfs::is_subvolume(src.fd()) {
            return Err(HelperError::invalid(
                "btrfs transfer",
                format!("{what} is not a subvolume"),
            ));
        }
        let parent = match &parent {
            Some((pk, pv)) => {
                let p = Self::open_volume(&dir, &pool, *pk, pv)?;
                if !crate::btrfs::is_subvolume(p.fd()) {
                    return Err(HelperError::invalid(
                        "btrfs transfer",
                        format!("{} is not a subvolume", Self::volume_what(&pool, *pk, pv)),
                    ));
                }
                // Only a parent of the volume's own lineage makes a sound difference: else the
                // whole volume goes (correct, only larger).
                if crate::btrfs::related(src.fd(), p.fd())? {
                    Some(p)
                } else {
                    tracing::info!(%what, parent = %pv, "not a snapshot of one lineage: sent whole");
                    None
                }
            }
            None => None,
        };
        // The instance is live: sent from a read-only snapshot of this moment. A leading dot:
        // no volume can have this name (VolumeName refuses it).
        // Random, so two sends of one volume at once never pick the same name.
        let id_hint = u64::from_le_bytes(silo_proto::random::bytes::<8>().map_err(|e| {
            HelperError::io(
                "random",
                "a send snapshot's name",
                std::io::Error::other(e.to_string()),
            )
        })?);
        let temp = match kind {
            VolumeKind::Snapshot => None,
            _ => {
                let kdir = dir.open_dir(&[kind.dir_name()])?;
                let name = format!(".migration-send-{id_hint:016x}");
                if kdir.exists(&name)? {
                    crate::btrfs::subvol_delete(kdir.fd(), &name)?;
                }
                crate::btrfs::snapshot_ro(src.fd(), kdir.fd(), &name)?;
                let snap = kdir.open_dir(&[name.as_str()]);
                match snap {
                    Ok(s) => Some((kdir, name, s)),
                    Err(e) => {
                        let _ = crate::btrfs::subvol_delete(kdir.fd(), &name);
                        return Err(e);
                    }
                }
            }
        };
        let cleanup = |temp: &Option<(Root, String, Root)>| {
            if let Some((kdir, name, _)) = temp {
                if let Err(e) = crate::btrfs::subvol_delete(kdir.fd(), name) {
                    tracing::error!(snapshot = %name, error = %e, "removing a send snapshot failed");
                }
            }
        };
        let prepared = (|| {
            let ro_src = match &temp {
                Some(_) => ReadOnly(None),
                None => ReadOnly::make(self, &src)?,
            };
            let ro_parent = match &parent {
                Some(p) => ReadOnly::make(self, p)?,
                None => ReadOnly(None),
            };
            let (silod_end, child_end) = stream_pair()?;
            Ok::<_, HelperError>((ro_src, ro_parent, silod_end, child_end))
        })();
        let (ro_src, ro_parent, silod_end, child_end) = match prepared {
            Ok(p) => p,
            Err(e) => {
                cleanup(&temp);
                return Err(e);
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task_what = what.clone();
        tokio::spawn(async move {
            let snap = match &temp {
                Some((_, _, s)) => s,
                None => &src,
            };
            let sfd = snap.fd();
            let pfd = parent.as_ref().map(|p| p.fd());
            let mut read = vec![sfd];
            read.extend(pfd);
            let t0 = std::time::Instant::now();
            let r = crate::child::run_with_caps(
                "btrfs send",
                &[caps::Capability::CAP_SYS_ADMIN],
                &[],
                &read,
                move || {
                    crate::btrfs::send(sfd, pfd, child_end.as_fd())
                        .map(|()| BtrfsReport::default())
                        .map_err(|e| e.to_string())
                },
            )
            .await
            .and_then(|r| {
                r.map_err(|e| HelperError::Io {
                    op: "btrfs send".into(),
                    target: task_what.clone(),
                    message: e,
                    errno: None,
                })
            });
            drop((ro_src, ro_parent));
            cleanup(&temp);
            tracing::info!(what = %task_what, ok = r.is_ok(), ms = t0.elapsed().as_millis() as u64, "btrfs send done");
            let _ = tx.send(r);
        });
        self.hand_over(what, silod_end, rx)
    }

    /// `btrfs_receive_start`.
    pub(crate) async fn btrfs_receive(
        &self,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
        base: Option<(VolumeKind, VolumeName)>,
    ) -> HelperResult<RsyncSession> {
        self.0.btrfs.slot()?;
        let dir = self.btrfs_pool(&pool)?;
        let what = Self::volume_what(&pool, kind, &volume);
        let base = match &base {
            Some((bk, bv)) => Some(Self::open_volume(&dir, &pool, *bk, bv)?),
            None => None,
        };
        // The stream's size counts against the policy's limits as an unpacked image does.
        let (limits, by_reserve) = self.unpack_limits(&dir)?;
        let rl = crate::receive::Limits {
            max_bytes: limits.max_bytes,
            max_commands: limits.max_entries.saturating_mul(16),
        };
        let (kdir, _) = dir.mkdir_all(&[kind.dir_name()], 0o711)?;
        if kdir.exists(volume.as_str())? {
            return Err(HelperError::AlreadyExists { what });
        }
        let (silod_end, child_end) = stream_pair()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task_what = what.clone();
        let server = self.clone();
        tokio::spawn(async move {
            let t0 = std::time::Instant::now();
            let mut made = false;
            let r = async {
                // An incremental stream goes onto a writable snapshot of its base (as `btrfs
                // receive` does), so the received volumes stay one lineage of subvolumes; a
                // whole one into an empty volume. Which one it is, its first command says
                // (peeked: the child reads it again).
                let onto = match &base {
                    Some(b) if first_command(&child_end).await == Some(STREAM_SNAPSHOT) => Some(b),
                    _ => None,
                };
                let target = match onto {
                    Some(b) => {
                        crate::btrfs::snapshot(b.fd(), kdir.fd(), volume.as_str())?;
                        made = true;
                        kdir.open_dir(&[volume.as_str()])?
                    }
                    None => {
                        let t = server.new_volume(&dir, &kdir, volume.as_str(), &task_what)?;
                        made = true;
                        t
                    }
                };
                let root = target.fd();
                let bfd = base.as_ref().map(|b| b.fd());
                let read: Vec<_> = bfd.into_iter().collect();
                let prefilled = onto.is_some();
                crate::child::run("btrfs receive", &[root], &read, move || {
                    let mut input = std::fs::File::from(child_end);
                    match (prefilled, bfd) {
                        (true, Some(b)) => crate::receive::receive_onto(&mut input, root, b, rl),
                        _ => crate::receive::receive(&mut input, root, bfd, rl),
                    }
                })
                .await
                .and_then(|r| r.map_err(|e: String| HelperError::invalid("btrfs stream", e)))
            }
            .await
            .map_err(|e| server.name_reserve(&dir, by_reserve, e));
            let r = match r {
                Ok(got) => {
                    tracing::info!(what = %task_what, commands = got.commands, bytes = got.bytes, incremental = got.incremental, skipped_devices = got.skipped_devices, ms = t0.elapsed().as_millis() as u64, "received btrfs stream");
                    Ok(BtrfsReport {
                        bytes: got.bytes,
                        commands: got.commands,
                        skipped_devices: got.skipped_devices,
                    })
                }
                Err(e) => {
                    if made {
                        if let Err(d) = server.remove_volume(&kdir, volume.as_str()) {
                            tracing::error!(what = %task_what, error = %d, "removing a half-received volume failed");
                        }
                    }
                    tracing::warn!(what = %task_what, error = %e, "refused btrfs stream");
                    Err(e)
                }
            };
            let _ = tx.send(r);
        });
        self.hand_over(what, silod_end, rx)
    }
}
