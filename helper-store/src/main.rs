//! silo-store: storage pools, volumes, image unpacking, mounts, snapshots — as root, confined.
//!
//! Started only by silod (as root, before silod drops privileges) with its RPC socket on fd 3
//! and its fd-passing socket on fd 4. See CONFINEMENT.md beside this crate.

mod confinement;
mod pools;

use silo_proto::jail::boot;
use silo_proto::store::Store;

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
    let b = match boot::boot("silo-store") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("silo-store: {e}");
            return 2;
        }
    };
    // Everything the helper will ever open by path is opened here, before the jail.
    let server = match pools::StoreServer::open(&b) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the storage root");
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
    let server = server.with_landlock(report.landlock);
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
    rt.block_on(boot::serve("silo-store", b.rpc, server.serve()))
}
