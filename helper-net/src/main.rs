//! silo-net: bridges, veths, nftables, dnsmasq, proxy forwarders — as root, confined.
//!
//! Started only by silod (as root, before silod drops privileges) with its RPC socket on fd 3
//! and its fd-passing socket on fd 4. See CONFINEMENT.md beside this crate.

mod bridges;
mod confinement;

use silo_proto::jail::boot;
use silo_proto::net::Net;

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SILO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    boot::die_with_parent();
    let b = match boot::boot("silo-net") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("silo-net: {e}");
            return 2;
        }
    };
    let jail = confinement::jail(b.seccomp_mode);
    let report = match jail.enter() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot enter the jail; refusing to serve unconfined");
            return 2;
        }
    };
    if let Some(what) = &b.selftest {
        return confinement::selftest_escape(what);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the runtime");
            return 2;
        }
    };
    rt.block_on(async move {
        let (conn, handle, _) = match rtnetlink::new_connection() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot open a netlink socket");
                return 2;
            }
        };
        tokio::spawn(conn);
        let server = bridges::NetServer::new(handle, &b, report.landlock);
        boot::serve("silo-net", b.rpc, server.serve()).await
    })
}
