//! silo-priv: namespaces, idmaps, cgroups, pivot_root, init, exec — as root, confined.
//!
//! Started only by silod (as root, before silod drops privileges) with its RPC socket on fd 3
//! and its fd-passing socket on fd 4. See CONFINEMENT.md beside this crate.

mod cgroups;
mod confinement;
mod devbpf;
mod devcg;
mod devices;
mod diskio;
mod disks;
mod launcher;
mod runtime;
mod server;
mod subid;
mod sys;

use silo_proto::jail::boot;
use silo_proto::privileged::Priv;

fn main() {
    std::process::exit(boot::run(
        "silo-priv",
        confinement::jail,
        |b| {
            Ok((
                cgroups::Cgroups::detect(&b.state_dir)?
                    .with_process_ceiling(b.policy.max_processes),
                subid::SubIds::read(),
                runtime::Runtime::open(&b.state_dir, b.policy.clone(), b.fds.clone())?,
            ))
        },
        |(cg, ids, rt), _b, landlock| async move {
            let server = server::PrivServer::new(cg, ids, rt, landlock);
            boot::serve("silo-priv", _b.rpc, server.serve()).await
        },
    ));
}
