//! Instances' nics and proxy devices. An instance is found by name through the record its
//! monitor wrote in `<state>/runtime/<name>/init` (root's): silod never gives silo-net a pid
//! or a namespace fd, so it cannot aim a nic or a forwarder at another process.

use rtnetlink::packet_route::link::MacVlanMode;
use rtnetlink::{LinkMacVlan, LinkUnspec, LinkVeth};
use silo_proto::error::{HelperError, HelperResult};
use silo_proto::net::{NicKind, NicSpec};
use silo_proto::privileged::RunningInfo;
use silo_proto::proxy::{ProxyAddr, ProxyBind, ProxySpec};
use silo_proto::{IfName, InstanceName};

use crate::bridges::{is_bridge, nl, random_bytes};
use crate::launcher::{same_process, start_time, InitRef, Reply, Request};
use crate::server::NetServer;

/// A running instance as silo-priv's monitor recorded it.
pub struct Instance {
    pub init: InitRef,
    pub info: RunningInfo,
}

impl NetServer {
    pub fn instance(&self, name: &InstanceName) -> HelperResult<Instance> {
        let not_running =
            || HelperError::OutOfOrder(format!("instance {:?} is not running", name.as_str()));
        let dir = self
            .0
            .state
            .open_dir(&["runtime", name.as_str()])
            .map_err(|_| not_running())?;
        let fd = nix::fcntl::openat(
            dir.fd(),
            "init",
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|_| not_running())?;
        let st = nix::sys::stat::fstat(&fd)
            .map_err(|e| HelperError::errno("fstat", "init record", e))?;
        if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
            return Err(HelperError::invalid(
                "instance record",
                format!("{}/init is not root's", dir.display()),
            ));
        }
        let mut s = String::new();
        use std::io::Read;
        std::fs::File::from(fd)
            .take(4096)
            .read_to_string(&mut s)
            .map_err(|e| HelperError::io("read", "init record", e))?;
        let (info, start) = RunningInfo::parse_record(name, &s).ok_or_else(not_running)?;
        let init = InitRef {
            pid: info.init_pid as i32,
            start_time: start,
        };
        if start_time(init.pid) != Some(start) {
            return Err(not_running());
        }
        Ok(Instance { init, info })
    }

    fn policy_allows_parent(&self, parent: &IfName) -> HelperResult<()> {
        if self.0.policy.host_interfaces.contains(parent) {
            Ok(())
        } else {
            Err(self.0.policy.deny(format!(
                "host interface {parent} is not in host_interfaces; silo will not use it"
            )))
        }
    }

    async fn link_index(&self, name: &IfName) -> HelperResult<u32> {
        Ok(self
            .find_link(name.as_str())
            .await?
            .ok_or_else(|| HelperError::NotFound {
                what: format!("interface {name}"),
            })?
            .header
            .index)
    }

    /// Moves a host link into the instance as `nic.name`, up, in one RTM_SETLINK (the kernel
    /// renames it on arrival, so a clash with an existing name fails before anything shows).
    async fn move_in(&self, index: u32, inst: &Instance, nic: &NicSpec) -> HelperResult<()> {
        let mut b = LinkUnspec::new_with_index(index)
            .setns_by_pid(inst.init.pid as u32)
            .name(nic.name.to_string())
            .up();
        if let Some(m) = nic.hwaddr {
            b = b.address(m.octets().to_vec());
        }
        if let Some(mtu) = nic.mtu {
            b = b.mtu(mtu);
        }
        self.handle()
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(|e| nl("move into the instance", &nic.name, e))?;
        // The pid was checked against the record before; a recycled pid now would mean the
        // link went elsewhere, so check the same process still holds it.
        if !same_process(inst.init) {
            return Err(HelperError::OutOfOrder(
                "the instance stopped while its nic was added".into(),
            ));
        }
        Ok(())
    }

    pub async fn attach_nic(
        &self,
        name: &InstanceName,
        nic: &NicSpec,
    ) -> HelperResult<Option<IfName>> {
        if let Some(m) = nic.mtu {
            if !(1280..=9000).contains(&m) {
                return Err(HelperError::invalid(
                    "mtu",
                    format!("{m} is outside 1280..9000"),
                ));
            }
        }
        if let NicKind::Bridged { host_name, .. } = &nic.kind {
            // The host end is a new host interface: never a name the host may want.
            silo_proto::types::check_host_veth_name(host_name.as_str())
                .map_err(|e| HelperError::invalid("nic", e))?;
        }
        let inst = self.instance(name)?;
        match &nic.kind {
            NicKind::Bridged { bridge, host_name } => {
                let br = self.find_link(bridge.as_str()).await?.ok_or_else(|| {
                    HelperError::NotFound {
                        what: format!("bridge {bridge}"),
                    }
                })?;
                if !is_bridge(&br) {
                    return Err(HelperError::invalid(
                        "parent",
                        format!("{bridge} is not a bridge"),
                    ));
                }
                if !self.owned(&br) {
                    self.policy_allows_parent(bridge)?;
                }
                if self.find_link(host_name.as_str()).await?.is_some() {
                    return Err(HelperError::AlreadyExists {
                        what: format!("interface {host_name}"),
                    });
                }
                let peer = format!("silo{}", hex(&random_bytes::<5>()?));
                self.handle()
                    .link()
                    .add(LinkVeth::new(host_name.as_str(), &peer).build())
                    .execute()
                    .await
                    .map_err(|e| nl("create veth", host_name, e))?;
                let r = async {
                    let host_idx = self.link_index(host_name).await?;
                    self.mark(host_idx).await?;
                    let peer_idx = self.link_index(&IfName::new(peer.clone())?).await?;
                    let mut up = LinkUnspec::new_with_index(host_idx)
                        .controller(br.header.index)
                        .up();
                    if let Some(mtu) = nic.mtu {
                        up = up.mtu(mtu);
                    }
                    self.handle()
                        .link()
                        .set(up.build())
                        .execute()
                        .await
                        .map_err(|e| nl("attach to bridge", host_name, e))?;
                    self.move_in(peer_idx, &inst, nic).await
                }
                .await;
                if let Err(e) = r {
                    // Deleting one end takes the other with it, wherever it is.
                    if let Ok(i) = self.link_index(host_name).await {
                        let _ = self.handle().link().del(i).execute().await;
                    }
                    return Err(e);
                }
                tracing::info!(instance = %name, nic = %nic.name, host = %host_name, bridge = %bridge, "nic attached");
                Ok(Some(host_name.clone()))
            }
            NicKind::Macvlan { parent } => {
                self.policy_allows_parent(parent)?;
                let pidx = self.link_index(parent).await?;
                let tmp = format!("silo{}", hex(&random_bytes::<5>()?));
                self.handle()
                    .link()
                    .add(LinkMacVlan::new(&tmp, pidx, MacVlanMode::Bridge).build())
                    .execute()
                    .await
                    .map_err(|e| nl("create macvlan", parent, e))?;
                let tmp_name = IfName::new(tmp)?;
                let idx = self.link_index(&tmp_name).await?;
                if let Err(e) = self.move_in(idx, &inst, nic).await {
                    let _ = self.handle().link().del(idx).execute().await;
                    return Err(e);
                }
                tracing::info!(instance = %name, nic = %nic.name, parent = %parent, "macvlan attached");
                Ok(None)
            }
            NicKind::Physical { parent } => {
                self.policy_allows_parent(parent)?;
                let m = self.find_link(parent.as_str()).await?.ok_or_else(|| {
                    HelperError::NotFound {
                        what: format!("interface {parent}"),
                    }
                })?;
                if self.owned(&m) {
                    return Err(HelperError::invalid(
                        "parent",
                        format!("{parent} is one of silo's own interfaces"),
                    ));
                }
                self.move_in(m.header.index, &inst, nic).await?;
                tracing::info!(instance = %name, nic = %nic.name, parent = %parent, "physical nic attached");
                Ok(None)
            }
        }
    }

    pub async fn detach_nic(&self, name: &InstanceName, nic: &NicSpec) -> HelperResult<()> {
        match &nic.kind {
            NicKind::Bridged { host_name, .. } => {
                // Works whether or not the instance still runs: the host end is silo's.
                let Some(m) = self.find_link(host_name.as_str()).await? else {
                    return Ok(());
                };
                if !self.owned(&m) {
                    return Err(self
                        .0
                        .policy
                        .deny(format!("interface {host_name} is not silo's")));
                }
                self.handle()
                    .link()
                    .del(m.header.index)
                    .execute()
                    .await
                    .map_err(|e| nl("delete veth", host_name, e))
            }
            NicKind::Macvlan { parent } | NicKind::Physical { parent } => {
                self.policy_allows_parent(parent)?;
                let inst = match self.instance(name) {
                    Ok(i) => i,
                    // Stopped: the macvlan went with the namespace; a physical nic came back.
                    Err(HelperError::OutOfOrder(_)) => return Ok(()),
                    Err(e) => return Err(e),
                };
                let new_name = match &nic.kind {
                    NicKind::Physical { parent } => {
                        if self.find_link(parent.as_str()).await?.is_some() {
                            return Err(HelperError::AlreadyExists {
                                what: format!("interface {parent} on the host"),
                            });
                        }
                        Some(parent.to_string())
                    }
                    _ => None,
                };
                let r: Reply = self
                    .0
                    .launcher
                    .call(
                        &Request::NetnsLink {
                            init: inst.init,
                            name: nic.name.to_string(),
                            new_name,
                        },
                        &[],
                    )
                    .await?;
                match r {
                    Reply::Failed(why) => Err(HelperError::Unsupported(why)),
                    _ => Ok(()),
                }
            }
        }
    }

    /// The host side of a proxy, in either direction, is what the policy allows: listening
    /// on the host keeps its rules (ports below 1024, unix sockets under `host_paths`);
    /// connecting to the host (`bind=instance`) reaches only unix sockets under `host_paths`
    /// and TCP/UDP addresses `proxy_host_connect` lists.
    fn check_proxy_policy(&self, spec: &ProxySpec) -> HelperResult<()> {
        let policy = &self.0.policy;
        let unix_allowed = |path: &silo_proto::proxy::UnixPath, what: &str| {
            let p = std::path::Path::new(path.as_str());
            if policy.host_paths.iter().any(|b| p.starts_with(b)) {
                Ok(())
            } else {
                Err(policy.deny(format!(
                    "{what} a unix socket at {} on the host needs a host_paths entry above it",
                    path.as_str()
                )))
            }
        };
        match spec.bind {
            ProxyBind::Host => match &spec.listen {
                ProxyAddr::Tcp { ports, .. } | ProxyAddr::Udp { ports, .. } => {
                    if ports.first() < 1024 && !policy.allow_privileged_ports {
                        return Err(policy.deny(format!(
                            "listening on host port {} (below 1024) needs allow_privileged_ports",
                            ports.first()
                        )));
                    }
                    Ok(())
                }
                ProxyAddr::Unix { path } => unix_allowed(path, "listening on"),
            },
            ProxyBind::Instance => match &spec.connect {
                ProxyAddr::Unix { path } => unix_allowed(path, "connecting to"),
                tcp_or_udp => {
                    if policy
                        .proxy_host_connect
                        .iter()
                        .any(|a| a.covers(tcp_or_udp))
                    {
                        Ok(())
                    } else {
                        Err(policy.deny(format!(
                            "connecting to {tcp_or_udp} on the host (bind=instance) needs a \
                             proxy_host_connect entry covering it"
                        )))
                    }
                }
            },
        }
    }

    pub async fn start_proxy(
        &self,
        name: &InstanceName,
        device: &str,
        spec: &ProxySpec,
    ) -> HelperResult<()> {
        spec.validate()?;
        self.check_proxy_policy(spec)?;
        let inst = self.instance(name)?;
        // The forwarder runs as the instance's root on the host: unprivileged there, and the
        // owner of what the instance's root owns inside. Privileged instances get nobody.
        let uid = inst.info.idmap_base.map(|b| b as u32).unwrap_or(65534);
        let r: Reply = self
            .0
            .launcher
            .call(
                &Request::Forward {
                    key: format!("{name}/{device}"),
                    init: inst.init,
                    uid,
                    spec: spec.clone(),
                },
                &[],
            )
            .await?;
        match r {
            Reply::Failed(why) => Err(HelperError::invalid(format!("proxy device {device}"), why)),
            _ => {
                tracing::info!(instance = %name, device, listen = %spec.listen, connect = %spec.connect, "proxy started");
                Ok(())
            }
        }
    }

    pub async fn stop_proxy(&self, name: &InstanceName, device: Option<&str>) -> HelperResult<()> {
        let prefix = match device {
            Some(d) => format!("{name}/{d}"),
            None => format!("{name}/"),
        };
        let _: Reply = self
            .0
            .launcher
            .call(&Request::StopForwards { prefix }, &[])
            .await?;
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
