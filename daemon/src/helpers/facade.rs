//! One typed method per helper call. Each answers `Result<T, HelperFailure>`: the helper's own
//! refusal (with the status it carries) or the helper being gone. The tarpc context (a deadline
//! suited to helper work) and the mapping of a broken channel are made here once, not at every
//! call site.

use silo_proto::fdpass::FdTicket;
use silo_proto::net::{
    BridgeInfo, BridgeSpec, HostEntry, Lease, LinkState, NetClient, NetworkRules, NicSpec,
    SubnetChoice,
};
use silo_proto::privileged::{
    CgroupInfo, CgroupLayout, DiskMount, DiskSource, ExecSpec, ExecStarted, HostDevice, IdRanges,
    InitExit, InstanceStats, Limits, PrivClient, RunningInfo, StartSpec,
};
use silo_proto::proxy::ProxySpec;
use silo_proto::store::{
    BackupPack, BtrfsReport, FileMeta, FilePut, IdShift, LoopFileInfo, PackCompression, PackMeta,
    PoolDriver, PoolInfo, RsyncFeatures, RsyncReport, RsyncRole, RsyncSession, StoreClient,
    TemplateVars, UnpackReport, VolumeKind,
};
use silo_proto::types::{Ipv4Cidr, Ipv6Cidr, MacAddr, RelPath};
use silo_proto::{
    DeviceName, HelperError, HelperResult, IfName, ImageFingerprint, InstanceName, PoolName,
    VolumeName,
};

use super::{ctx, HelperCallError};

/// A helper call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HelperFailure {
    /// The helper refused or failed the request; its error says why and carries a status.
    #[error(transparent)]
    Refused(#[from] HelperError),
    /// The helper is gone or its channel broke.
    #[error(transparent)]
    Gone(#[from] HelperCallError),
}

impl HelperFailure {
    /// Whether the helper answered that the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HelperFailure::Refused(HelperError::NotFound { .. }))
    }
}

fn answer<T>(
    helper: &'static str,
    r: Result<HelperResult<T>, tarpc::client::RpcError>,
) -> Result<T, HelperFailure> {
    Ok(r.map_err(|source| HelperCallError::Rpc { helper, source })??)
}

macro_rules! facade {
    ($(#[$doc:meta])* $name:ident($client:ty, $label:literal) {
        $( fn $m:ident($($a:ident: $t:ty),*) -> $r:ty; )*
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub(crate) $client);

        impl $name {
            $(
                #[allow(missing_docs)]
                pub async fn $m(&self, $($a: $t),*) -> Result<$r, HelperFailure> {
                    // Where a request's time goes, call by call (docs/performance.md):
                    // SILO_LOG=silod::helper_calls=debug.
                    let t0 = std::time::Instant::now();
                    let r = answer($label, self.0.$m(ctx(), $($a),*).await);
                    tracing::debug!(
                        target: "silod::helper_calls",
                        helper = $label,
                        call = stringify!($m),
                        us = t0.elapsed().as_micros() as u64,
                        ok = r.is_ok(),
                    );
                    r
                }
            )*
        }
    };
}

facade! {
    /// silo-priv: namespaces, idmaps, cgroups, init, exec.
    PrivHelper(PrivClient, "silo-priv") {
        fn cgroup_layout() -> CgroupLayout;
        fn create_cgroup(instance: InstanceName) -> CgroupInfo;
        fn list_cgroups() -> Vec<InstanceName>;
        fn delete_cgroup(instance: InstanceName) -> ();
        fn id_range() -> IdRanges;
        fn start(spec: StartSpec) -> RunningInfo;
        fn stop(instance: InstanceName, force: bool) -> ();
        fn wait_stopped(instance: InstanceName, timeout_ms: u64) -> InitExit;
        fn wait_any_stopped(instances: Vec<InstanceName>, timeout_ms: u64) -> Vec<InstanceName>;
        fn running() -> Vec<RunningInfo>;
        fn running_one(instance: InstanceName) -> Option<RunningInfo>;
        fn stats(instance: InstanceName) -> InstanceStats;
        fn stats_many(instances: Vec<InstanceName>) -> Vec<(InstanceName, InstanceStats)>;
        fn set_limits(instance: InstanceName, limits: Limits) -> ();
        fn freeze(instance: InstanceName, frozen: bool) -> ();
        fn exec(spec: ExecSpec) -> ExecStarted;
        fn exec_wait(id: u64, timeout_ms: u64) -> Option<i32>;
        fn exec_signal(id: u64, signal: i32) -> ();
        fn console(instance: InstanceName) -> FdTicket;
        fn console_resize(instance: InstanceName, width: u16, height: u16) -> ();
        fn console_log(instance: InstanceName, max: u64) -> Vec<u8>;
        fn forget(instance: InstanceName) -> ();
        fn release(instance: InstanceName) -> ();
        fn check_disk_source(source: DiskSource) -> ();
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

facade! {
    /// silo-net: bridges, nics, nftables, dnsmasq, proxies.
    NetHelper(NetClient, "silo-net") {
        fn ensure_bridge(spec: BridgeSpec) -> BridgeInfo;
        fn bridge_info(name: IfName) -> BridgeInfo;
        fn list_bridges() -> Vec<BridgeInfo>;
        fn delete_bridge(name: IfName) -> ();
        fn pick_subnets(ipv4: bool, ipv6: bool, avoid4: Vec<Ipv4Cidr>, avoid6: Vec<Ipv6Cidr>) -> SubnetChoice;
        fn list_links() -> Vec<LinkState>;
        fn link_state(name: IfName) -> LinkState;
        fn leases(bridge: IfName) -> Vec<Lease>;
        fn set_host_entry(bridge: IfName, entry: HostEntry) -> ();
        fn remove_host_entry(bridge: IfName, hwaddr: MacAddr) -> ();
        fn attach_nic(instance: InstanceName, nic: NicSpec) -> Option<IfName>;
        fn detach_nic(instance: InstanceName, nic: NicSpec) -> ();
        fn start_proxy(instance: InstanceName, device: DeviceName, spec: ProxySpec) -> ();
        fn stop_proxy(instance: InstanceName, device: Option<DeviceName>) -> ();
        fn bind_api_listener(addr: std::net::SocketAddr) -> FdTicket;
    }
}

impl NetHelper {
    /// What the root policy allows for networks (an answer, never a refusal).
    pub async fn network_rules(&self) -> Result<NetworkRules, HelperFailure> {
        self.0.network_rules(ctx()).await.map_err(|source| {
            HelperCallError::Rpc {
                helper: "silo-net",
                source,
            }
            .into()
        })
    }
}

facade! {
    /// silo-store: pools, volumes, images, files, backups.
    StoreHelper(StoreClient, "silo-store") {
        fn create_pool(pool: PoolName, driver: PoolDriver) -> PoolInfo;
        fn pool_info(pool: PoolName) -> PoolInfo;
        fn delete_pool(pool: PoolName) -> ();
        fn create_volume(pool: PoolName, kind: VolumeKind, volume: VolumeName) -> ();
        fn list_volumes(pool: PoolName, kind: VolumeKind) -> Vec<VolumeName>;
        fn volume_usage(pool: PoolName, kind: VolumeKind, volume: VolumeName) -> u64;
        fn delete_volume(pool: PoolName, kind: VolumeKind, volume: VolumeName) -> ();
        fn create_loop_file(pool: PoolName, size: u64) -> LoopFileInfo;
        fn delete_loop_file(pool: PoolName) -> ();
        fn mount_pool(pool: PoolName, driver: PoolDriver) -> PoolInfo;
        fn mount_state_dir(dir: silo_proto::store::StateDir, pool: PoolName, volume: VolumeName, staging: bool) -> ();
        fn promote_state_dir(dir: silo_proto::store::StateDir) -> ();
        fn unmount_state_dir(dir: silo_proto::store::StateDir) -> ();
        fn unpack_image(pool: PoolName, fingerprint: ImageFingerprint) -> UnpackReport;
        fn file_get(pool: PoolName, instance: VolumeName, path: String) -> FileMeta;
        fn file_put(pool: PoolName, instance: VolumeName, path: String, put: FilePut) -> Option<FdTicket>;
        fn render_templates(pool: PoolName, instance: VolumeName, vars: TemplateVars) -> Vec<String>;
        fn file_delete(pool: PoolName, instance: VolumeName, path: String) -> ();
        fn copy_volume(pool: PoolName, src_kind: VolumeKind, src: VolumeName, dst_kind: VolumeKind, dst: VolumeName) -> u64;
        fn rename_volume(pool: PoolName, kind: VolumeKind, from: VolumeName, to: VolumeName, replace: bool) -> ();
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
        fn custom_snapshot_create(pool: PoolName, volume: VolumeName, snapshot: VolumeName) -> ();
        fn custom_snapshot_delete(pool: PoolName, volume: VolumeName, snapshot: VolumeName) -> ();
        fn custom_snapshot_rename(pool: PoolName, volume: VolumeName, from: VolumeName, to: VolumeName) -> ();
        fn custom_snapshot_list(pool: PoolName, volume: VolumeName) -> Vec<VolumeName>;
        fn custom_snapshot_restore(pool: PoolName, volume: VolumeName, snapshot: VolumeName) -> ();
        fn custom_snapshot_copy(pool: PoolName, src: VolumeName, snapshot: VolumeName, dst: VolumeName) -> ();
        fn set_volume_quota(pool: PoolName, volume: VolumeName, bytes: u64) -> ();
        fn rsync_send_custom_snapshot(pool: PoolName, volume: VolumeName, snapshot: VolumeName, features: RsyncFeatures) -> RsyncSession;
        fn pack_custom_backup(pool: PoolName, volume: VolumeName, snapshots: Vec<VolumeName>, index_yaml: String, compression: PackCompression) -> FdTicket;
        fn unpack_custom_backup(pool: PoolName, upload: VolumeName, volume: VolumeName, snapshots: Vec<VolumeName>) -> ();
        fn instance_metadata(pool: PoolName, instance: VolumeName, request: silo_proto::store::MetadataRequest) -> silo_proto::store::MetadataReply;
    }
}
