//! Work inside an instance's network namespace, done by silo-net's launcher (single-threaded,
//! so setns moves the whole process and back). A link can be moved *into* a namespace from
//! outside (RTM_SETLINK with IFLA_NET_NS_PID), but the kernel refuses to combine a target
//! namespace id with a move, so moving one *out* (a physical nic at stop) or deleting one (a
//! macvlan on hot-unplug) needs a netlink socket inside.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::launcher::{open_netns, InitRef};

/// Runs `f` with the calling process in the instance's network namespace, then returns to
/// the namespace it was in; `f` gets an fd of that original namespace.
pub fn in_instance_netns<T>(
    init: InitRef,
    f: impl FnOnce(BorrowedFd<'_>) -> Result<T, String>,
) -> Result<T, String> {
    let host = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| format!("opening silo-net's network namespace: {e}"))?;
    let ns = open_netns(init)?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("entering the instance's network namespace: {e}"))?;
    let r = f(host.as_fd());
    if let Err(e) = nix::sched::setns(&host, nix::sched::CloneFlags::CLONE_NEWNET) {
        // The launcher must never keep working from inside an instance.
        eprintln!("silo-net launcher: cannot return to its network namespace: {e}");
        std::process::exit(3);
    }
    r
}

pub use silo_proto::netlink::{request, route_socket};

/// In the current namespace: moves link `name` to the namespace `host` as `new_name` (down),
/// or deletes it when `new_name` is None.
pub fn move_or_delete(
    name: &str,
    new_name: Option<&str>,
    host: BorrowedFd<'_>,
) -> Result<(), String> {
    let sock = route_socket()?;
    let mut get = LinkMessage::default();
    get.attributes.push(LinkAttribute::IfName(name.to_string()));
    let found = request(&sock, RouteNetlinkMessage::GetLink(get), 0)
        .map_err(|e| format!("finding {name} in the instance: {e}"))?;
    let index = found
        .iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
            _ => None,
        })
        .ok_or_else(|| format!("{name} is not in the instance"))?;
    match new_name {
        None => {
            let mut del = LinkMessage::default();
            del.header.index = index;
            request(&sock, RouteNetlinkMessage::DelLink(del), 0)
                .map_err(|e| format!("deleting {name} in the instance: {e}"))?;
        }
        Some(n) => {
            let mut set = LinkMessage::default();
            set.header.index = index;
            // Down before it leaves, so the host sees it as it was before the instance took it.
            set.header.change_mask = LinkFlags::Up;
            set.attributes
                .push(LinkAttribute::NetNsFd(host.as_raw_fd()));
            set.attributes.push(LinkAttribute::IfName(n.to_string()));
            request(&sock, RouteNetlinkMessage::SetLink(set), 0)
                .map_err(|e| format!("moving {name} back to the host as {n}: {e}"))?;
        }
    }
    Ok(())
}
