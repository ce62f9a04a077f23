//! silo-store: storage pools, volumes, image unpacking, mounts, snapshots — as root, confined.
//!
//! Started only by silod (as root, before silod drops privileges) with its RPC socket on fd 3
//! and its fd-passing socket on fd 4. See CONFINEMENT.md beside this crate.

mod btrfs;
mod child;
mod confinement;
mod copy;
mod custom;
mod files;
mod images;
mod metadata;
mod migrate;
mod mkfs;
mod pools;
mod receive;
mod relay;
mod rsync;
mod server;
mod shift;
mod spares;
mod squash;
mod statedirs;
mod templates;

use silo_proto::jail::boot;
use silo_proto::store::Store;

fn main() {
    // The rsync sender's remote shell (see relay.rs): chosen before anything else runs.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(rsync::RELAY_ARG)) {
        relay::run();
    }
    std::process::exit(boot::run(
        "silo-store",
        confinement::jail,
        pools::StoreServer::open,
        |server, b, landlock| async move {
            boot::serve("silo-store", b.rpc, server.with_landlock(landlock).serve()).await
        },
    ));
}
