//! Each managed bridge's dnsmasq (DHCPv4, DHCPv6/RA, DNS for `<instance>.<domain>`), its
//! files under `<state>/networks/<bridge>/` (root's; silod cannot reach them) and silo's NAT
//! table. The process itself is started and supervised by the launcher.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};

use silo_proto::error::{HelperError, HelperResult};
use silo_proto::jail::beneath::Root;
use silo_proto::net::{BridgeSpec, HostEntry, Lease};
use silo_proto::types::MacAddr;
use silo_proto::IfName;

use crate::launcher::{Reply, Request};
use crate::nft;
use crate::server::NetServer;

const LEASES: &str = "dnsmasq.leases";
const HOSTS: &str = "dnsmasq.hosts";
const RAW: &str = "dnsmasq.raw";

/// As many leases as the bridge's DHCP ranges hold (a stateful DHCPv6 range counts up to
/// 65536), and never fewer than dnsmasq's own default of 1000.
fn lease_max(spec: &BridgeSpec) -> u64 {
    let span = |first: u128, last: u128| last.saturating_sub(first).saturating_add(1);
    let mut n: u128 = 0;
    if let (Some(c), true) = (&spec.ipv4, spec.ipv4_dhcp) {
        if spec.ipv4_dhcp_ranges.is_empty() {
            n += span(
                u32::from(c.network()).into(),
                u32::from(c.broadcast()).into(),
            );
        }
        for r in &spec.ipv4_dhcp_ranges {
            n += span(u32::from(r.first).into(), u32::from(r.last).into());
        }
    }
    if spec.ipv6.is_some() && spec.ipv6_dhcp && spec.ipv6_dhcp_stateful {
        let v6: u128 = if spec.ipv6_dhcp_ranges.is_empty() {
            u128::MAX
        } else {
            spec.ipv6_dhcp_ranges
                .iter()
                .map(|r| span(u128::from(r.first), u128::from(r.last)))
                .fold(0, u128::saturating_add)
        };
        n = n.saturating_add(v6.min(65536));
    }
    u64::try_from(n.max(1000)).unwrap_or(u64::MAX)
}

/// dnsmasq's command line for a bridge, after LXD's (lxd/network/driver_bridge.go).
pub fn args(spec: &BridgeSpec, dir: &str) -> Vec<String> {
    let br = spec.name.as_str();
    let mut a: Vec<String> = [
        "--keep-in-foreground",
        "--strict-order",
        "--bind-interfaces",
        "--except-interface=lo",
        "--pid-file=",
        // Pinging before an offer delays every lease by seconds.
        "--no-ping",
        "--no-negcache",
        "--dhcp-rapid-commit",
        // Copies of one image share a machine-id and so a client id: go by MAC instead.
        "--dhcp-ignore-clid",
        "--quiet-dhcp",
        "--quiet-dhcp6",
        "--quiet-ra",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!("--interface={br}"));
    let dhcp_any =
        (spec.ipv4.is_some() && spec.ipv4_dhcp) || (spec.ipv6.is_some() && spec.ipv6_dhcp);
    if dhcp_any {
        a.extend([
            "--dhcp-no-override".to_string(),
            "--dhcp-authoritative".to_string(),
            format!("--dhcp-leasefile={dir}/{LEASES}"),
            format!("--dhcp-hostsdir={dir}/{HOSTS}"),
        ]);
    }
    if let Some(c) = &spec.ipv4 {
        a.push(format!("--listen-address={}", c.addr()));
        if spec.ipv4_dhcp && !spec.ipv4_dhcp_ranges.is_empty() {
            for r in &spec.ipv4_dhcp_ranges {
                a.push(format!(
                    "--dhcp-range={},{},{}s",
                    r.first, r.last, spec.dhcp_expiry
                ));
            }
        } else if spec.ipv4_dhcp {
            let net = u32::from(c.network());
            let last = u32::from(c.broadcast()) - 1;
            let mut first = net + 2;
            if first == u32::from(c.addr()) {
                first += 1;
            }
            a.push(format!(
                "--dhcp-range={},{},{}s",
                Ipv4Addr::from(first),
                Ipv4Addr::from(last),
                spec.dhcp_expiry
            ));
        }
    }
    if let Some(c) = &spec.ipv6 {
        a.push(format!("--listen-address={}", c.addr()));
        a.push("--enable-ra".into());
        if !spec.ipv6_dhcp {
            a.push(format!("--dhcp-range=::,constructor:{br},ra-only"));
        } else if spec.ipv6_dhcp_stateful && !spec.ipv6_dhcp_ranges.is_empty() {
            for r in &spec.ipv6_dhcp_ranges {
                a.push(format!(
                    "--dhcp-range={},{},{},{}s",
                    r.first,
                    r.last,
                    c.prefix(),
                    spec.dhcp_expiry
                ));
            }
        } else if spec.ipv6_dhcp_stateful {
            a.push(format!(
                "--dhcp-range=::2,::ffff:ffff,constructor:{br},{},{}s",
                c.prefix(),
                spec.dhcp_expiry
            ));
        } else {
            a.push(format!(
                "--dhcp-range=::,constructor:{br},ra-stateless,ra-names"
            ));
        }
    }
    if dhcp_any {
        // dnsmasq refuses leases beyond 1000 by default, below a /22's worth of instances.
        a.push(format!("--dhcp-lease-max={}", lease_max(spec)));
    }
    if spec.dns {
        let d = spec.dns_domain.as_str();
        a.extend([
            "-s".to_string(),
            d.to_string(),
            format!("--interface-name=_gateway.{d},{br}"),
            format!("-S/{d}/"),
        ]);
    } else {
        a.push("--port=0".into());
    }
    // Also keeps dnsmasq from reading /etc/dnsmasq.conf.
    a.push(format!("--conf-file={dir}/{RAW}"));
    a
}

/// One dhcp-host line: `mac[,ipv4][,[ipv6]],name`.
pub fn host_line(e: &HostEntry) -> String {
    let mut l = e.hwaddr.to_string();
    if let Some(v4) = e.ipv4 {
        l.push_str(&format!(",{v4}"));
    }
    if let Some(v6) = e.ipv6 {
        l.push_str(&format!(",[{v6}]"));
    }
    l.push_str(&format!(",{}\n", e.instance));
    l
}

/// Parses dnsmasq's lease file: `expiry mac ip hostname clientid` lines for DHCPv4, and after
/// a `duid` line, `expiry iaid ip hostname clientid` for DHCPv6 (no MAC).
pub fn parse_leases(s: &str) -> Vec<Lease> {
    let mut out = Vec::new();
    for line in s.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let Ok(address) = f[2]
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
        else {
            continue;
        };
        let hwaddr = if address.is_ipv4() && f[1].parse::<MacAddr>().is_ok() {
            f[1].to_string()
        } else {
            String::new()
        };
        out.push(Lease {
            hostname: if f[3] == "*" {
                String::new()
            } else {
                f[3].to_string()
            },
            hwaddr,
            address,
            expiry: f[0].parse().unwrap_or(0),
        });
    }
    out
}

fn write_file(dir: &Root, name: &str, data: &[u8], mode: u32) -> HelperResult<()> {
    let tmp = format!(".{name}.tmp");
    let fd = nix::fcntl::openat(
        dir.fd(),
        tmp.as_str(),
        nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_TRUNC
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(mode),
    )
    .map_err(|e| HelperError::errno("create", format!("{}/{tmp}", dir.display()), e))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data)
        .map_err(|e| HelperError::io("write", format!("{}/{tmp}", dir.display()), e))?;
    drop(f);
    // dnsmasq watches the hosts directory for whole files moved in, never half-written ones.
    nix::fcntl::renameat(dir.fd(), tmp.as_str(), dir.fd(), name)
        .map_err(|e| HelperError::errno("rename", format!("{}/{name}", dir.display()), e))
}

fn entry_file(mac: &MacAddr) -> String {
    mac.to_string().replace(':', "-")
}

impl NetServer {
    fn network_dir(&self, bridge: &IfName) -> HelperResult<Root> {
        let (d, _) = self.0.networks.mkdir_all(&[bridge.as_str()], 0o755)?;
        d.mkdir_all(&[HOSTS], 0o755)?;
        Ok(d)
    }

    pub fn remove_network_dir(&self, bridge: &IfName) -> HelperResult<()> {
        match self.0.networks.exists(bridge.as_str()) {
            Ok(true) => self.0.networks.remove_tree(bridge.as_str()),
            _ => Ok(()),
        }
    }

    pub fn remember_bridge(&self, spec: BridgeSpec) -> HelperResult<()> {
        self.0
            .bridges
            .lock()
            .map_err(|_| HelperError::OutOfOrder("bridge table poisoned".into()))?
            .insert(spec.name.clone(), spec);
        Ok(())
    }

    pub fn forget_bridge(&self, name: &IfName) -> HelperResult<()> {
        self.0
            .bridges
            .lock()
            .map_err(|_| HelperError::OutOfOrder("bridge table poisoned".into()))?
            .remove(name);
        Ok(())
    }

    pub fn dnsmasq_pid(&self, name: &IfName) -> Option<u32> {
        self.0.dnsmasq.lock().ok()?.get(name).copied()
    }

    /// Rebuilds silo's own nft table from every bridge this silo-net runs; turns on forwarding
    /// when a bridge routes (as LXD does).
    pub async fn sync_nat(&self) -> HelperResult<()> {
        let specs: Vec<BridgeSpec> = self
            .0
            .bridges
            .lock()
            .map_err(|_| HelperError::OutOfOrder("bridge table poisoned".into()))?
            .values()
            .cloned()
            .collect();
        let mut rules = Vec::new();
        let (mut fwd4, mut fwd6) = (false, false);
        for s in &specs {
            if let Some(c) = &s.ipv4 {
                fwd4 = true;
                if s.ipv4_nat {
                    rules.push(nft::NatRule {
                        bridge: s.name.to_string(),
                        family: nft::Family::V4,
                        subnet: IpAddr::V4(c.network()),
                        prefix: c.prefix(),
                    });
                }
            }
            if let Some(c) = &s.ipv6 {
                fwd6 = true;
                if s.ipv6_nat {
                    rules.push(nft::NatRule {
                        bridge: s.name.to_string(),
                        family: nft::Family::V6,
                        subnet: IpAddr::V6(c.network()),
                        prefix: c.prefix(),
                    });
                }
            }
        }
        let table = self.0.nft_table.clone();
        nft::sync_table(&table, &rules).map_err(|e| HelperError::Io {
            op: "nftables".into(),
            target: format!("table inet {table}"),
            errno: e.errno(),
            message: e.to_string(),
        })?;
        for (on, path) in [
            (fwd4, "/proc/sys/net/ipv4/ip_forward"),
            (fwd6, "/proc/sys/net/ipv6/conf/all/forwarding"),
        ] {
            if on {
                std::fs::write(path, "1").map_err(|e| HelperError::io("write", path, e))?;
            }
        }
        Ok(())
    }

    pub async fn run_dnsmasq(&self, spec: &BridgeSpec) -> HelperResult<()> {
        let wanted = spec.dns || (spec.ipv4.is_some() && spec.ipv4_dhcp) || spec.ipv6.is_some();
        if !wanted {
            return self.stop_dnsmasq(&spec.name).await;
        }
        let dir = self.network_dir(&spec.name)?;
        write_file(&dir, RAW, b"", 0o644)?;
        let path = format!("{}/{}", self.0.networks.display(), spec.name);
        let reply: Reply = self
            .0
            .launcher
            .call(
                &Request::Dnsmasq {
                    bridge: spec.name.to_string(),
                    args: args(spec, &path),
                    log: format!("{path}/dnsmasq.log"),
                },
                &[],
            )
            .await?;
        match reply {
            Reply::Pid(pid) => {
                if let Ok(mut m) = self.0.dnsmasq.lock() {
                    m.insert(spec.name.clone(), pid as u32);
                }
                Ok(())
            }
            Reply::Failed(why) => Err(HelperError::Unsupported(why)),
            Reply::Done => Ok(()),
        }
    }

    pub async fn stop_dnsmasq(&self, name: &IfName) -> HelperResult<()> {
        let r: Reply = self
            .0
            .launcher
            .call(
                &Request::StopDnsmasq {
                    bridge: name.to_string(),
                },
                &[],
            )
            .await?;
        if let Ok(mut m) = self.0.dnsmasq.lock() {
            m.remove(name);
        }
        match r {
            Reply::Failed(why) => Err(HelperError::Unsupported(why)),
            _ => Ok(()),
        }
    }

    fn require_silo_bridge(&self, bridge: &IfName) -> HelperResult<()> {
        let known = self
            .0
            .bridges
            .lock()
            .map(|b| b.contains_key(bridge))
            .unwrap_or(false);
        if known {
            Ok(())
        } else {
            Err(HelperError::NotFound {
                what: format!("managed bridge {bridge} (silo-net runs no such network)"),
            })
        }
    }

    pub async fn set_host_entry(&self, bridge: &IfName, e: &HostEntry) -> HelperResult<()> {
        self.require_silo_bridge(bridge)?;
        let dir = self.network_dir(bridge)?.open_dir(&[HOSTS])?;
        write_file(&dir, &entry_file(&e.hwaddr), host_line(e).as_bytes(), 0o644)?;
        // A changed reservation replaces the old one only on a reload.
        self.reload(bridge).await
    }

    pub async fn remove_host_entry(&self, bridge: &IfName, mac: &MacAddr) -> HelperResult<()> {
        self.require_silo_bridge(bridge)?;
        let dir = self.network_dir(bridge)?.open_dir(&[HOSTS])?;
        match nix::unistd::unlinkat(
            dir.fd(),
            entry_file(mac).as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(HelperError::errno("unlink", entry_file(mac), e)),
        }
        // dnsmasq notices new files by itself but forgets removed ones only on SIGHUP.
        self.reload(bridge).await
    }

    async fn reload(&self, bridge: &IfName) -> HelperResult<()> {
        let _: Reply = self
            .0
            .launcher
            .call(
                &Request::Reload {
                    bridge: bridge.to_string(),
                },
                &[],
            )
            .await?;
        Ok(())
    }

    pub fn leases(&self, bridge: &IfName) -> HelperResult<Vec<Lease>> {
        self.require_silo_bridge(bridge)?;
        let dir = self.network_dir(bridge)?;
        let data = match nix::fcntl::openat(
            dir.fd(),
            LEASES,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => {
                use std::io::Read;
                let mut s = String::new();
                std::fs::File::from(fd)
                    .take(4 << 20)
                    .read_to_string(&mut s)
                    .map_err(|e| HelperError::io("read", LEASES, e))?;
                s
            }
            Err(nix::errno::Errno::ENOENT) => String::new(),
            Err(e) => return Err(HelperError::errno("open", LEASES, e)),
        };
        Ok(parse_leases(&data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BridgeSpec {
        BridgeSpec {
            name: IfName::new("silobr0").expect("n"),
            ipv4: Some("10.1.2.1/24".parse().expect("c")),
            ipv6: Some("fd42:1:2:3::1/64".parse().expect("c")),
            ipv4_nat: true,
            ipv6_nat: true,
            ipv4_dhcp: true,
            ipv6_dhcp: true,
            ipv6_dhcp_stateful: false,
            dhcp_expiry: 3600,
            mtu: None,
            dns_domain: silo_proto::types::DnsDomain::new("silo").expect("d"),
            dns: true,
            ipv4_dhcp_ranges: Vec::new(),
            ipv6_dhcp_ranges: Vec::new(),
        }
    }

    #[test]
    fn dnsmasq_arguments_follow_lxd() {
        let a = args(&spec(), "/s/networks/silobr0");
        for want in [
            "--interface=silobr0",
            "--listen-address=10.1.2.1",
            "--dhcp-range=10.1.2.2,10.1.2.254,3600s",
            "--listen-address=fd42:1:2:3::1",
            "--enable-ra",
            "--dhcp-range=::,constructor:silobr0,ra-stateless,ra-names",
            "--dhcp-hostsdir=/s/networks/silobr0/dnsmasq.hosts",
            "--dhcp-leasefile=/s/networks/silobr0/dnsmasq.leases",
            "-S/silo/",
            "--conf-file=/s/networks/silobr0/dnsmasq.raw",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        let mut s = spec();
        s.dns = false;
        s.ipv6 = None;
        let a = args(&s, "/d");
        assert!(a.iter().any(|x| x == "--port=0"));
        assert!(!a.iter().any(|x| x.contains("enable-ra")));
    }

    #[test]
    fn dhcp_ranges_replace_the_whole_subnet() {
        let mut s = spec();
        s.ipv4_dhcp_ranges =
            silo_proto::net::parse_dhcp_ranges("r", "10.1.2.100-10.1.2.150, 10.1.2.200-10.1.2.210")
                .expect("ranges");
        s.ipv6_dhcp_stateful = true;
        s.ipv6_dhcp_ranges =
            silo_proto::net::parse_dhcp_ranges("r", "fd42:1:2:3::100-fd42:1:2:3::1ff")
                .expect("ranges");
        let a = args(&s, "/d");
        let ranges: Vec<&String> = a.iter().filter(|x| x.starts_with("--dhcp-range")).collect();
        assert_eq!(
            ranges,
            [
                "--dhcp-range=10.1.2.100,10.1.2.150,3600s",
                "--dhcp-range=10.1.2.200,10.1.2.210,3600s",
                "--dhcp-range=fd42:1:2:3::100,fd42:1:2:3::1ff,64,3600s",
            ]
        );
    }

    #[test]
    fn lease_max_holds_every_address_a_range_gives() {
        let mut s = spec();
        assert_eq!(lease_max(&s), 1000, "a /24 stays at dnsmasq's default");
        s.ipv4 = Some("10.252.0.1/22".parse().expect("c"));
        assert_eq!(lease_max(&s), 1024);
        s.ipv6_dhcp_stateful = true;
        assert_eq!(lease_max(&s), 1024 + 65536);
        s.ipv4_dhcp_ranges =
            silo_proto::net::parse_dhcp_ranges("r", "10.252.0.10-10.252.3.249").expect("ranges");
        s.ipv6_dhcp_ranges =
            silo_proto::net::parse_dhcp_ranges("r", "fd42:1:2:3::100-fd42:1:2:3::1ff")
                .expect("ranges");
        assert_eq!(lease_max(&s), 1008 + 256);
        s.ipv4_dhcp = false;
        s.ipv6_dhcp = false;
        assert!(!args(&s, "/d")
            .iter()
            .any(|x| x.starts_with("--dhcp-lease-max")));
        s.ipv4_dhcp = true;
        s.ipv4_dhcp_ranges.clear();
        assert!(args(&s, "/d").iter().any(|x| x == "--dhcp-lease-max=1024"));
    }

    #[test]
    fn host_lines_and_leases() {
        let e = HostEntry {
            hwaddr: "00:16:3e:01:02:03".parse().expect("m"),
            instance: silo_proto::InstanceName::new("c1").expect("n"),
            ipv4: Some(Ipv4Addr::new(10, 1, 2, 50)),
            ipv6: Some("fd42::50".parse().expect("a")),
        };
        assert_eq!(host_line(&e), "00:16:3e:01:02:03,10.1.2.50,[fd42::50],c1\n");
        let l = parse_leases(
            "1700000000 00:16:3e:01:02:03 10.1.2.50 c1 01:00:16:3e:01:02:03\n\
             duid 00:01:00:01:2c:aa\n\
             1700000100 12345 fd42::99 c2 00:04:aa\n\
             garbage\n",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].hostname, "c1");
        assert_eq!(l[0].hwaddr, "00:16:3e:01:02:03");
        assert_eq!(l[1].address.to_string(), "fd42::99");
        assert_eq!(l[1].hwaddr, "");
    }
}
