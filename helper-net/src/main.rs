//! silo-net: bridges, veths, nftables, dnsmasq, proxy forwarders — as root, confined.
//!
//! Started only by silod (as root, before silod drops privileges) with its RPC socket on fd 3
//! and its fd-passing socket on fd 4. See CONFINEMENT.md beside this crate.

mod bridges;
mod confinement;
mod dnsmasq;
mod forwarder;
mod kernel;
mod launcher;
mod netns;
mod nft;
mod nics;
mod server;
mod splice;

use silo_proto::jail::beneath::Root;
use silo_proto::jail::boot;
use silo_proto::jail::launcher::LauncherClient;
use silo_proto::net::Net;

fn main() {
    std::process::exit(boot::run(
        "silo-net",
        confinement::jail,
        |b| {
            let state = Root::open(&b.state_dir)?;
            // silo-priv makes runtime/ too; whichever helper comes first creates it.
            state.mkdir_all(&["runtime"], 0o711)?;
            let (networks, _) = state.mkdir_all(&["networks"], 0o711)?;
            confinement::set_forwarder_mode(b.seccomp_mode);
            let launcher = LauncherClient::fork("silo-net's launcher", launcher::serve)?;
            // Read before the jail: landlock keeps /etc out of reach afterwards.
            let resolvers = match std::fs::read_to_string("/etc/resolv.conf") {
                Ok(t) => server::parse_resolvers(&t),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read /etc/resolv.conf; no resolver is guarded");
                    Vec::new()
                }
            };
            Ok(server::Prepared {
                state,
                networks,
                launcher,
                resolvers,
            })
        },
        |p, b, landlock| async move {
            let (conn, handle, _) = match rtnetlink::new_connection() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open a netlink socket");
                    return 2;
                }
            };
            tokio::spawn(conn);
            let server = server::NetServer::new(handle, &b, landlock, p);
            boot::serve("silo-net", b.rpc, server.serve()).await
        },
    ));
}
