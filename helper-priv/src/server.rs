//! silo-priv's RPC surface: each call checks its request, then hands it to the cgroup layer
//! or the runtime.

use std::sync::Arc;
use std::time::Duration;

use silo_proto::error::{HelperError, HelperResult};
use silo_proto::fdpass::FdTicket;
use silo_proto::privileged::{
    CgroupInfo, CgroupLayout, DiskMount, DiskSource, ExecSpec, ExecStarted, HostDevice, IdRanges,
    InitExit, InstanceStats, Limits, Priv, RunningInfo, StartSpec,
};
use silo_proto::{HelperHello, InstanceName};
use tarpc::context::Context;

use crate::cgroups::Cgroups;
use crate::runtime::Runtime;
use crate::subid::SubIds;

#[derive(Debug)]
struct Inner {
    cg: Cgroups,
    ids: Result<SubIds, HelperError>,
    landlock: String,
    rt: Runtime,
}

/// The namespace helper's service.
#[derive(Debug, Clone)]
pub struct PrivServer(Arc<Inner>);

/// Longest wait silod may ask for in one call (its RPC deadline is longer).
const MAX_WAIT: Duration = Duration::from_secs(240);

impl PrivServer {
    /// Builds the service.
    pub fn new(
        cg: Cgroups,
        ids: Result<SubIds, HelperError>,
        rt: Runtime,
        landlock: String,
    ) -> PrivServer {
        PrivServer(Arc::new(Inner {
            cg,
            ids,
            landlock,
            rt,
        }))
    }
}

impl Priv for PrivServer {
    async fn hello(self, _: Context) -> HelperHello {
        HelperHello {
            helper: "silo-priv".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            tag: self.0.cg.tag().to_string(),
            landlock: self.0.landlock.clone(),
        }
    }

    async fn cgroup_layout(self, _: Context) -> HelperResult<CgroupLayout> {
        Ok(self.0.cg.layout())
    }

    async fn create_cgroup(self, _: Context, instance: InstanceName) -> HelperResult<CgroupInfo> {
        let paths = self.0.cg.create(&instance)?;
        tracing::info!(instance = %instance, "created cgroup");
        Ok(CgroupInfo {
            instance,
            paths: paths.iter().map(|p| p.display().to_string()).collect(),
        })
    }

    async fn list_cgroups(self, _: Context) -> HelperResult<Vec<InstanceName>> {
        Ok(self.0.cg.list())
    }

    async fn id_range(self, _: Context) -> HelperResult<IdRanges> {
        self.0
            .ids
            .as_ref()
            .map(|s| s.ranges.clone())
            .map_err(Clone::clone)
    }

    async fn delete_cgroup(self, _: Context, instance: InstanceName) -> HelperResult<()> {
        if self.0.rt.is_running(&instance) {
            return Err(HelperError::InUse {
                what: format!("cgroup of instance {:?}", instance.as_str()),
                by: "the running instance".into(),
            });
        }
        self.0.cg.delete(&instance)?;
        tracing::info!(instance = %instance, "deleted cgroup");
        Ok(())
    }

    async fn start(self, _: Context, spec: StartSpec) -> HelperResult<RunningInfo> {
        let ids = self.0.ids.as_ref().map_err(Clone::clone)?;
        self.0.rt.start(&self.0.cg, ids, spec).await
    }

    async fn stop(self, _: Context, instance: InstanceName, force: bool) -> HelperResult<()> {
        if self.0.rt.is_running(&instance) && self.0.cg.is_frozen(&instance) {
            // A frozen init neither handles the shutdown signal nor dies of SIGKILL under the
            // v1 freezer: thaw first, as LXD does before a shutdown.
            self.0.cg.freeze(&instance, false).await?;
        }
        self.0.rt.stop(&instance, force).await
    }

    async fn wait_stopped(
        self,
        _: Context,
        instance: InstanceName,
        timeout_ms: u64,
    ) -> HelperResult<InitExit> {
        let t = Duration::from_millis(timeout_ms).min(MAX_WAIT);
        self.0.rt.wait_stopped(&self.0.cg, &instance, t).await
    }

    async fn wait_any_stopped(
        self,
        _: Context,
        instances: Vec<InstanceName>,
        timeout_ms: u64,
    ) -> HelperResult<Vec<InstanceName>> {
        if instances.len() > 65536 {
            return Err(HelperError::invalid("instances", "more than 65536 names"));
        }
        let t = Duration::from_millis(timeout_ms).min(MAX_WAIT);
        Ok(self.0.rt.wait_any_stopped(&instances, t).await)
    }

    async fn running_one(
        self,
        _: Context,
        instance: InstanceName,
    ) -> HelperResult<Option<RunningInfo>> {
        let mut info = self.0.rt.get(&instance).await;
        if let Some(i) = &mut info {
            i.frozen = self.0.cg.is_frozen(&i.instance);
        }
        Ok(info)
    }

    async fn running(self, _: Context) -> HelperResult<Vec<RunningInfo>> {
        let mut list = self.0.rt.list().await;
        for i in &mut list {
            i.frozen = self.0.cg.is_frozen(&i.instance);
        }
        Ok(list)
    }

    async fn stats(self, _: Context, instance: InstanceName) -> HelperResult<InstanceStats> {
        self.0.rt.stats(&self.0.cg, &instance).await
    }

    async fn stats_many(
        self,
        _: Context,
        instances: Vec<InstanceName>,
    ) -> HelperResult<Vec<(InstanceName, InstanceStats)>> {
        if instances.len() > 4096 {
            return Err(HelperError::invalid("instances", "more than 4096 names"));
        }
        Ok(self.0.rt.stats_many(&self.0.cg, &instances).await)
    }

    async fn freeze(self, _: Context, instance: InstanceName, frozen: bool) -> HelperResult<()> {
        if !self.0.rt.is_running(&instance) {
            return Err(HelperError::OutOfOrder(format!(
                "instance {:?} is not running",
                instance.as_str()
            )));
        }
        self.0.cg.freeze(&instance, frozen).await
    }

    async fn set_limits(
        self,
        _: Context,
        instance: InstanceName,
        limits: Limits,
    ) -> HelperResult<()> {
        if !self.0.rt.is_running(&instance) {
            return Err(HelperError::OutOfOrder(format!(
                "instance {:?} is not running",
                instance.as_str()
            )));
        }
        self.0.cg.apply_limits(&instance, &limits)?;
        self.0
            .rt
            .apply_disk_io(&self.0.cg, &instance, &limits.disk_io)
    }

    async fn exec(self, _: Context, spec: ExecSpec) -> HelperResult<ExecStarted> {
        if self.0.cg.is_frozen(&spec.instance) {
            // The command would freeze as it joins the cgroup, and hold its caller.
            return Err(HelperError::OutOfOrder(format!(
                "instance {:?} is frozen",
                spec.instance.as_str()
            )));
        }
        self.0.rt.exec(&self.0.cg, spec).await
    }

    async fn exec_wait(self, _: Context, id: u64, timeout_ms: u64) -> HelperResult<Option<i32>> {
        let t = Duration::from_millis(timeout_ms).min(MAX_WAIT);
        self.0.rt.exec_wait(id, t).await
    }

    async fn exec_signal(self, _: Context, id: u64, signal: i32) -> HelperResult<()> {
        self.0.rt.exec_signal(id, signal).await
    }

    async fn console(self, _: Context, instance: InstanceName) -> HelperResult<FdTicket> {
        self.0.rt.console(&instance)
    }

    async fn devlxd_listener(self, _: Context, instance: InstanceName) -> HelperResult<FdTicket> {
        self.0.rt.devlxd_listener(&instance)
    }

    async fn console_log(
        self,
        _: Context,
        instance: InstanceName,
        max: u64,
    ) -> HelperResult<Vec<u8>> {
        self.0.rt.console_log(&instance, max)
    }

    async fn forget(self, _: Context, instance: InstanceName) -> HelperResult<()> {
        self.0.rt.forget(&instance)
    }

    async fn release(self, _: Context, instance: InstanceName) -> HelperResult<()> {
        self.0.rt.release(&instance)
    }

    async fn check_disk_source(self, _: Context, source: DiskSource) -> HelperResult<()> {
        self.0.rt.check_disk_source(&source)
    }

    async fn check_host_device(self, _: Context, device: HostDevice) -> HelperResult<u32> {
        self.0.rt.check_host_device(&device)
    }

    async fn attach_host_device(
        self,
        _: Context,
        instance: InstanceName,
        device: HostDevice,
    ) -> HelperResult<u32> {
        self.0
            .rt
            .attach_host_device(&self.0.cg, &instance, &device)
            .await
    }

    async fn detach_host_device(
        self,
        _: Context,
        instance: InstanceName,
        device: silo_proto::DeviceName,
    ) -> HelperResult<()> {
        self.0
            .rt
            .detach_host_device(&self.0.cg, &instance, &device)
            .await
    }

    async fn attach_disk(
        self,
        _: Context,
        instance: InstanceName,
        disk: DiskMount,
    ) -> HelperResult<bool> {
        self.0.rt.attach_disk(&instance, &disk).await
    }

    async fn detach_disk(
        self,
        _: Context,
        instance: InstanceName,
        path: silo_proto::types::RelPath,
    ) -> HelperResult<()> {
        self.0.rt.detach_disk(&instance, &path).await
    }

    async fn file_get(
        self,
        _: Context,
        instance: InstanceName,
        path: String,
    ) -> HelperResult<silo_proto::store::FileMeta> {
        self.0.rt.file_get(&instance, path).await
    }

    async fn file_put(
        self,
        _: Context,
        instance: InstanceName,
        path: String,
        put: silo_proto::store::FilePut,
    ) -> HelperResult<Option<FdTicket>> {
        self.0.rt.file_put(&instance, path, put).await
    }

    async fn file_delete(
        self,
        _: Context,
        instance: InstanceName,
        path: String,
    ) -> HelperResult<()> {
        self.0.rt.file_delete(&instance, path).await
    }

    async fn console_log_clear(self, _: Context, instance: InstanceName) -> HelperResult<()> {
        self.0.rt.console_log_clear(&instance)
    }

    async fn console_resize(
        self,
        _: Context,
        instance: InstanceName,
        width: u16,
        height: u16,
    ) -> HelperResult<()> {
        self.0.rt.console_resize(&instance, width, height)
    }
}
