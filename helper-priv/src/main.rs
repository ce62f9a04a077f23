//! silo-priv: namespaces, idmaps, cgroups, pivot_root, init, exec — as root, confined.
//!
//! Started only by silod (as root, before silod drops privileges) with its RPC socket on fd 3
//! and its fd-passing socket on fd 4. See CONFINEMENT.md beside this crate.

mod cgroups;
mod confinement;

use silo_proto::jail::boot;
use silo_proto::privileged::Priv;

fn main() {
    std::process::exit(boot::run(
        "silo-priv",
        confinement::jail,
        |b| {
            Ok((
                cgroups::Cgroups::detect(&b.state_dir)?,
                cgroups::host_id_range(),
            ))
        },
        |(cg, ids), b, landlock| async move {
            let server = cgroups::PrivServer::new(cg, ids, landlock);
            boot::serve("silo-priv", b.rpc, server.serve()).await
        },
    ));
}
