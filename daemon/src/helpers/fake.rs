//! In-memory helpers for unit tests of the service layer. Each fake implements the same tarpc
//! service trait as its helper (`Priv`, `Net`, `Store` in `proto`) and is served over tarpc's
//! in-process channel, so service code runs unchanged through the typed facade, as a normal
//! user and without a kernel to touch. What a fake does not model it refuses with
//! `HelperError::Unsupported`, so a test that strays outside it fails loudly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use silo_proto::fdpass::FdTicket;
use silo_proto::net::*;
use silo_proto::privileged::*;
use silo_proto::proxy::ProxySpec;
use silo_proto::store::*;
use silo_proto::types::{Ipv4Cidr, Ipv6Cidr, MacAddr, RelPath};
use silo_proto::{
    DeviceName, HelperError, HelperHello, HelperResult, IfName, ImageFingerprint, InstanceName,
    PoolName, VolumeName,
};
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};

use super::{Helpers, NetHelper, PrivHelper, StoreHelper};

/// What the fake host holds, shared by the three fakes; tests read it to see what was done.
#[derive(Debug)]
pub struct FakeHost {
    /// Root's subordinate ids as silo-priv would report them.
    pub ids: IdRanges,
    /// Volumes that exist, as `pool/Kind/name`.
    pub volumes: Mutex<BTreeSet<String>>,
    /// Running instances by name.
    pub running: Mutex<BTreeMap<String, RunningInfo>>,
    /// Every state-changing call, in order (`start c1`, `create_volume default Container c1`).
    pub calls: Mutex<Vec<String>>,
}

impl FakeHost {
    /// A host whose root has `ids` as its subordinate ids, with nothing else yet.
    pub fn new(ids: IdRanges) -> Arc<FakeHost> {
        Arc::new(FakeHost {
            ids,
            volumes: Mutex::default(),
            running: Mutex::default(),
            calls: Mutex::default(),
        })
    }

    fn call(&self, what: String) {
        lock(&self.calls).push(what);
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    /// Whether a volume exists.
    pub fn has_volume(&self, pool: &str, kind: VolumeKind, name: &str) -> bool {
        lock(&self.volumes).contains(&format!("{pool}/{kind:?}/{name}"))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn vol_key(pool: &PoolName, kind: VolumeKind, name: &VolumeName) -> String {
    format!("{pool}/{kind:?}/{name}")
}

fn unsupported(call: &str) -> HelperError {
    HelperError::Unsupported(format!("{call} is not modelled by the fake helpers"))
}

fn hello(helper: &str) -> HelperHello {
    HelperHello {
        helper: helper.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        tag: "fake".into(),
        landlock: "none (fake)".into(),
    }
}

/// Trait methods the fakes do not model: each refuses with `HelperError::Unsupported`.
macro_rules! unsupported {
    ($( fn $m:ident($($a:ident: $t:ty),*) -> $r:ty; )*) => {
        $(
            async fn $m(self, _: Context, $($a: $t),*) -> HelperResult<$r> {
                let _ = ($($a,)*);
                Err(unsupported(stringify!($m)))
            }
        )*
    };
}

#[derive(Debug, Clone)]
struct FakePriv(Arc<FakeHost>);
#[derive(Debug, Clone)]
struct FakeNet(Arc<FakeHost>);
#[derive(Debug, Clone)]
struct FakeStore(Arc<FakeHost>);

/// A tarpc channel to `$server`, served by a task of the current runtime.
macro_rules! served {
    ($server:expr) => {{
        let s = $server;
        let (client, server) = tarpc::transport::channel::unbounded();
        let mut requests = BaseChannel::with_defaults(server).requests();
        tokio::spawn(async move {
            while let Some(Ok(r)) = requests.next().await {
                tokio::spawn(r.execute(s.clone()));
            }
        });
        client
    }};
}

/// Helpers backed by `host`; call inside a tokio runtime.
pub fn helpers(host: Arc<FakeHost>) -> Helpers {
    let config = tarpc::client::Config::default();
    Helpers {
        privileged: PrivHelper(
            PrivClient::new(config.clone(), served!(FakePriv(host.clone()).serve())).spawn(),
        ),
        net: NetHelper(
            NetClient::new(config.clone(), served!(FakeNet(host.clone()).serve())).spawn(),
        ),
        store: StoreHelper(StoreClient::new(config, served!(FakeStore(host).serve())).spawn()),
        handles: Vec::new(),
    }
}

impl Priv for FakePriv {
    async fn hello(self, _: Context) -> HelperHello {
        hello("silo-priv")
    }

    async fn create_cgroup(self, _: Context, instance: InstanceName) -> HelperResult<CgroupInfo> {
        self.0.call(format!("create_cgroup {instance}"));
        Err(unsupported("create_cgroup"))
    }

    async fn id_range(self, _: Context) -> HelperResult<IdRanges> {
        Ok(self.0.ids.clone())
    }

    async fn start(self, _: Context, spec: StartSpec) -> HelperResult<RunningInfo> {
        self.0.call(format!("start {}", spec.instance));
        let info = RunningInfo {
            instance: spec.instance.clone(),
            init_pid: 1,
            monitor_pid: 1,
            started_at: 0,
            idmap_base: spec.idmap_base,
            idmap_size: spec.idmap_size,
            systemd: false,
            frozen: false,
        };
        lock(&self.0.running).insert(spec.instance.to_string(), info.clone());
        Ok(info)
    }

    async fn stop(self, _: Context, instance: InstanceName, force: bool) -> HelperResult<()> {
        self.0.call(format!("stop {instance} force={force}"));
        lock(&self.0.running).remove(instance.as_str());
        Ok(())
    }

    async fn running(self, _: Context) -> HelperResult<Vec<RunningInfo>> {
        Ok(lock(&self.0.running).values().cloned().collect())
    }

    async fn running_one(
        self,
        _: Context,
        instance: InstanceName,
    ) -> HelperResult<Option<RunningInfo>> {
        Ok(lock(&self.0.running).get(instance.as_str()).cloned())
    }

    async fn set_limits(
        self,
        _: Context,
        instance: InstanceName,
        limits: Limits,
    ) -> HelperResult<()> {
        self.0.call(format!("set_limits {instance}"));
        let _ = limits;
        Ok(())
    }

    async fn forget(self, _: Context, instance: InstanceName) -> HelperResult<()> {
        self.0.call(format!("forget {instance}"));
        lock(&self.0.running).remove(instance.as_str());
        Ok(())
    }

    async fn release(self, _: Context, instance: InstanceName) -> HelperResult<()> {
        self.0.call(format!("release {instance}"));
        Ok(())
    }

    async fn check_disk_source(self, _: Context, source: DiskSource) -> HelperResult<()> {
        self.0.call(format!("check_disk_source {source}"));
        Ok(())
    }

    unsupported! {
        fn cgroup_layout() -> CgroupLayout;
        fn list_cgroups() -> Vec<InstanceName>;
        fn delete_cgroup(instance: InstanceName) -> ();
        fn wait_stopped(instance: InstanceName, timeout_ms: u64) -> InitExit;
        fn wait_any_stopped(instances: Vec<InstanceName>, timeout_ms: u64) -> Vec<InstanceName>;
        fn stats(instance: InstanceName) -> InstanceStats;
        fn stats_many(instances: Vec<InstanceName>) -> Vec<(InstanceName, InstanceStats)>;
        fn freeze(instance: InstanceName, frozen: bool) -> ();
        fn exec(spec: ExecSpec) -> ExecStarted;
        fn exec_wait(id: u64, timeout_ms: u64) -> Option<i32>;
        fn exec_signal(id: u64, signal: i32) -> ();
        fn console(instance: InstanceName) -> FdTicket;
        fn console_resize(instance: InstanceName, width: u16, height: u16) -> ();
        fn console_log(instance: InstanceName, max: u64) -> Vec<u8>;
        fn attach_disk(instance: InstanceName, disk: DiskMount) -> bool;
        fn detach_disk(instance: InstanceName, path: RelPath) -> ();
        fn check_host_device(device: HostDevice) -> u32;
        fn attach_host_device(instance: InstanceName, device: HostDevice) -> u32;
        fn detach_host_device(instance: InstanceName, device: DeviceName) -> ();
        fn devlxd_listener(instance: InstanceName) -> FdTicket;
        fn console_log_clear(instance: InstanceName) -> ();
        fn file_get(instance: InstanceName, path: String) -> silo_proto::store::FileMeta;
        fn file_put(instance: InstanceName, path: String, put: silo_proto::store::FilePut) -> Option<FdTicket>;
        fn file_delete(instance: InstanceName, path: String) -> ();
    }
}

impl Net for FakeNet {
    async fn hello(self, _: Context) -> HelperHello {
        hello("silo-net")
    }

    async fn ensure_bridge(self, _: Context, spec: BridgeSpec) -> HelperResult<BridgeInfo> {
        self.0.call(format!("ensure_bridge {}", spec.name));
        Ok(BridgeInfo {
            name: spec.name,
            index: 1,
            ipv4: spec.ipv4,
            ipv6: spec.ipv6,
            mtu: spec.mtu.unwrap_or(1500),
            hwaddr: "00:16:3e:00:00:01".into(),
            up: true,
            dnsmasq_pid: None,
        })
    }

    async fn list_bridges(self, _: Context) -> HelperResult<Vec<BridgeInfo>> {
        Ok(Vec::new())
    }

    async fn delete_bridge(self, _: Context, name: IfName) -> HelperResult<()> {
        self.0.call(format!("delete_bridge {name}"));
        Ok(())
    }

    async fn list_links(self, _: Context) -> HelperResult<Vec<LinkState>> {
        Ok(Vec::new())
    }

    async fn set_host_entry(
        self,
        _: Context,
        bridge: IfName,
        entry: HostEntry,
    ) -> HelperResult<()> {
        self.0.call(format!("set_host_entry {bridge} {entry:?}"));
        Ok(())
    }

    async fn remove_host_entry(
        self,
        _: Context,
        bridge: IfName,
        hwaddr: MacAddr,
    ) -> HelperResult<()> {
        self.0.call(format!("remove_host_entry {bridge} {hwaddr}"));
        Ok(())
    }

    async fn attach_nic(
        self,
        _: Context,
        instance: InstanceName,
        nic: NicSpec,
    ) -> HelperResult<Option<IfName>> {
        self.0.call(format!("attach_nic {instance} {nic:?}"));
        Ok(None)
    }

    async fn detach_nic(
        self,
        _: Context,
        instance: InstanceName,
        nic: NicSpec,
    ) -> HelperResult<()> {
        self.0.call(format!("detach_nic {instance} {nic:?}"));
        Ok(())
    }

    async fn network_rules(self, _: Context) -> NetworkRules {
        NetworkRules {
            ranges: Vec::new(),
            name_prefixes: Vec::new(),
        }
    }

    unsupported! {
        fn bind_api_listener(addr: std::net::SocketAddr) -> silo_proto::fdpass::FdTicket;
        fn bridge_info(name: IfName) -> BridgeInfo;
        fn pick_subnets(ipv4: bool, ipv6: bool, avoid4: Vec<Ipv4Cidr>, avoid6: Vec<Ipv6Cidr>) -> SubnetChoice;
        fn link_state(name: IfName) -> LinkState;
        fn leases(bridge: IfName) -> Vec<Lease>;
        fn start_proxy(instance: InstanceName, device: DeviceName, spec: ProxySpec) -> ();
        fn stop_proxy(instance: InstanceName, device: Option<DeviceName>) -> ();
    }
}

impl Store for FakeStore {
    async fn hello(self, _: Context) -> HelperHello {
        hello("silo-store")
    }

    async fn create_pool(
        self,
        _: Context,
        pool: PoolName,
        driver: PoolDriver,
    ) -> HelperResult<PoolInfo> {
        self.0.call(format!("create_pool {pool}"));
        Ok(PoolInfo {
            name: pool,
            driver,
            space_total: 0,
            space_used: 0,
            space_avail: 0,
            fs_type: String::new(),
        })
    }

    async fn create_volume(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
    ) -> HelperResult<()> {
        self.0
            .call(format!("create_volume {pool} {kind:?} {volume}"));
        if !lock(&self.0.volumes).insert(vol_key(&pool, kind, &volume)) {
            return Err(HelperError::AlreadyExists {
                what: format!("volume {volume}"),
            });
        }
        Ok(())
    }

    async fn list_volumes(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
    ) -> HelperResult<Vec<VolumeName>> {
        let prefix = format!("{pool}/{kind:?}/");
        Ok(lock(&self.0.volumes)
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|n| VolumeName::new(n.to_string()).ok())
            .collect())
    }

    async fn delete_volume(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        volume: VolumeName,
    ) -> HelperResult<()> {
        self.0
            .call(format!("delete_volume {pool} {kind:?} {volume}"));
        if !lock(&self.0.volumes).remove(&vol_key(&pool, kind, &volume)) {
            return Err(HelperError::NotFound {
                what: format!("volume {volume}"),
            });
        }
        Ok(())
    }

    async fn mount_pool(
        self,
        _: Context,
        pool: PoolName,
        driver: PoolDriver,
    ) -> HelperResult<PoolInfo> {
        Ok(PoolInfo {
            name: pool,
            driver,
            space_total: 0,
            space_used: 0,
            space_avail: 0,
            fs_type: String::new(),
        })
    }

    async fn unpack_image(
        self,
        _: Context,
        pool: PoolName,
        fingerprint: ImageFingerprint,
    ) -> HelperResult<UnpackReport> {
        self.0.call(format!("unpack_image {pool} {fingerprint}"));
        lock(&self.0.volumes).insert(format!("{pool}/{:?}/{fingerprint}", VolumeKind::Image));
        Ok(UnpackReport::default())
    }

    async fn render_templates(
        self,
        _: Context,
        pool: PoolName,
        instance: VolumeName,
        vars: TemplateVars,
    ) -> HelperResult<Vec<String>> {
        self.0.call(format!(
            "render_templates {pool} {instance} {}",
            vars.trigger
        ));
        Ok(Vec::new())
    }

    async fn copy_volume(
        self,
        _: Context,
        pool: PoolName,
        src_kind: VolumeKind,
        src: VolumeName,
        dst_kind: VolumeKind,
        dst: VolumeName,
    ) -> HelperResult<u64> {
        self.0.call(format!(
            "copy_volume {pool} {src_kind:?} {src} {dst_kind:?} {dst}"
        ));
        let mut v = lock(&self.0.volumes);
        if !v.contains(&vol_key(&pool, src_kind, &src)) {
            return Err(HelperError::NotFound {
                what: format!("volume {src}"),
            });
        }
        v.insert(vol_key(&pool, dst_kind, &dst));
        Ok(0)
    }

    async fn rename_volume(
        self,
        _: Context,
        pool: PoolName,
        kind: VolumeKind,
        from: VolumeName,
        to: VolumeName,
        replace: bool,
    ) -> HelperResult<()> {
        self.0
            .call(format!("rename_volume {pool} {kind:?} {from} {to}"));
        let mut v = lock(&self.0.volumes);
        if !v.remove(&vol_key(&pool, kind, &from)) {
            return Err(HelperError::NotFound {
                what: format!("volume {from}"),
            });
        }
        if !v.insert(vol_key(&pool, kind, &to)) && !replace {
            return Err(HelperError::AlreadyExists {
                what: format!("volume {to}"),
            });
        }
        Ok(())
    }

    async fn custom_snapshot_create(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
    ) -> HelperResult<()> {
        self.0
            .call(format!("custom_snapshot_create {pool} {volume} {snapshot}"));
        let mut v = lock(&self.0.volumes);
        if !v.contains(&vol_key(&pool, VolumeKind::Custom, &volume)) {
            return Err(HelperError::NotFound {
                what: format!("volume {volume}"),
            });
        }
        // Kept as "<volume>/<snapshot>" of the custom kind, a key no volume can have.
        if !v.insert(format!("{pool}/Custom/{volume}/{snapshot}")) {
            return Err(HelperError::AlreadyExists {
                what: format!("snapshot {snapshot}"),
            });
        }
        Ok(())
    }

    async fn custom_snapshot_delete(
        self,
        _: Context,
        pool: PoolName,
        volume: VolumeName,
        snapshot: VolumeName,
    ) -> HelperResult<()> {
        self.0
            .call(format!("custom_snapshot_delete {pool} {volume} {snapshot}"));
        if !lock(&self.0.volumes).remove(&format!("{pool}/Custom/{volume}/{snapshot}")) {
            return Err(HelperError::NotFound {
                what: format!("snapshot {snapshot}"),
            });
        }
        Ok(())
    }

    async fn custom_snapshot_list(
        self,
        _: Context,
        _pool: PoolName,
        _volume: VolumeName,
    ) -> HelperResult<Vec<VolumeName>> {
        Ok(Vec::new())
    }

    unsupported! {
        fn mount_state_dir(dir: StateDir, pool: PoolName, volume: VolumeName, staging: bool) -> ();
        fn promote_state_dir(dir: StateDir) -> ();
        fn unmount_state_dir(dir: StateDir) -> ();
        fn pool_info(pool: PoolName) -> PoolInfo;
        fn delete_pool(pool: PoolName) -> ();
        fn volume_usage(pool: PoolName, kind: VolumeKind, volume: VolumeName) -> u64;
        fn create_loop_file(pool: PoolName, size: u64) -> LoopFileInfo;
        fn delete_loop_file(pool: PoolName) -> ();
        fn file_get(pool: PoolName, instance: VolumeName, path: String) -> FileMeta;
        fn file_put(pool: PoolName, instance: VolumeName, path: String, put: FilePut) -> Option<FdTicket>;
        fn file_delete(pool: PoolName, instance: VolumeName, path: String) -> ();
        fn pack_volume(pool: PoolName, kind: VolumeKind, volume: VolumeName, compression: PackCompression, meta: PackMeta) -> FdTicket;
        fn pack_backup(pool: PoolName, instance: VolumeName, backup: BackupPack) -> FdTicket;
        fn unpack_backup(pool: PoolName, upload: VolumeName, instance: VolumeName, snapshots: Vec<(VolumeName, VolumeName)>, optimized: bool) -> ();
        fn rsync_start(pool: PoolName, kind: VolumeKind, volume: VolumeName, role: RsyncRole, features: RsyncFeatures) -> RsyncSession;
        fn rsync_wait(id: u64, max_wait_secs: u32) -> Option<RsyncReport>;
        fn rsync_abort(id: u64) -> ();
        fn btrfs_send_start(pool: PoolName, kind: VolumeKind, volume: VolumeName, parent: Option<(VolumeKind, VolumeName)>) -> RsyncSession;
        fn btrfs_receive_start(pool: PoolName, kind: VolumeKind, volume: VolumeName, base: Option<(VolumeKind, VolumeName)>) -> RsyncSession;
        fn btrfs_wait(id: u64, max_wait_secs: u32) -> Option<BtrfsReport>;
        fn btrfs_abort(id: u64) -> ();
        fn shift_volume(pool: PoolName, kind: VolumeKind, volume: VolumeName, map: Vec<IdShift>) -> u64;
        fn custom_snapshot_rename(pool: PoolName, volume: VolumeName, from: VolumeName, to: VolumeName) -> ();
        fn custom_snapshot_restore(pool: PoolName, volume: VolumeName, snapshot: VolumeName) -> ();
        fn custom_snapshot_copy(pool: PoolName, src: VolumeName, snapshot: VolumeName, dst: VolumeName) -> ();
        fn set_volume_quota(pool: PoolName, volume: VolumeName, bytes: u64) -> ();
        fn rsync_send_custom_snapshot(pool: PoolName, volume: VolumeName, snapshot: VolumeName, features: RsyncFeatures) -> RsyncSession;
        fn pack_custom_backup(pool: PoolName, volume: VolumeName, snapshots: Vec<VolumeName>, index_yaml: String, compression: PackCompression) -> FdTicket;
        fn unpack_custom_backup(pool: PoolName, upload: VolumeName, volume: VolumeName, snapshots: Vec<VolumeName>) -> ();
        fn instance_metadata(pool: PoolName, instance: VolumeName, request: silo_proto::store::MetadataRequest) -> silo_proto::store::MetadataReply;
    }
}
