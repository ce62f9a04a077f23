//! silo-net: bridges, veths, nftables, dnsmasq, proxy forwarders — as root, confined.
//!
//! Started only by silod (as root, before silod drops privileges) with its RPC socket on fd 3
//! and its fd-passing socket on fd 4. See CONFINEMENT.md beside this crate.

mod bridges;
mod confinement;
#[cfg_attr(not(test), allow(dead_code))]
mod nft;
#[cfg_attr(not(test), allow(dead_code))]
mod proxy;

use silo_proto::jail::boot;
use silo_proto::net::Net;

fn main() {
    std::process::exit(boot::run(
        "silo-net",
        confinement::jail,
        |_| Ok(()),
        |(), b, landlock| async move {
            let (conn, handle, _) = match rtnetlink::new_connection() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open a netlink socket");
                    return 2;
                }
            };
            tokio::spawn(conn);
            let server = bridges::NetServer::new(handle, &b, landlock);
            boot::serve("silo-net", b.rpc, server.serve()).await
        },
    ));
}
