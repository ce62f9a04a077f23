//! The service layer: what silo does, independent of HTTP. Handlers in `api/` call into it with
//! one [`Services`] context; it reaches down into `model/` (pure rules), `store/` (the database)
//! and `helpers/` (the root helpers), never up.

pub mod backups;
pub mod cluster;
pub mod custom_volumes;
pub mod devices;
pub mod devlxd;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod exec;
pub mod expansion;
pub mod files;
pub mod host;
pub mod image_secrets;
pub mod image_server;
pub mod image_updates;
pub mod images;
pub mod instances;
pub mod lifecycle;
pub mod member_moves;
pub mod metadata;
pub mod metrics;
pub mod migration;
pub mod networks;
pub mod operations;
pub mod profiles;
pub mod projects;
pub mod resources;
pub mod runtime;
pub mod server;
pub mod snapshots;
pub mod storage;
#[cfg(test)]
mod tests;
pub mod trust;
pub mod volume_backups;
pub mod warnings;

use std::path::PathBuf;
use std::time::Instant;

pub use error::DomainError;
pub use host::HostFacts;

use crate::helpers::Helpers;
use crate::service::events::Events;
use crate::service::operations::Operations;
use crate::store::db::Db;

/// Everything a service call may need; cheap to clone into a background operation.
#[derive(Debug, Clone)]
pub struct Services {
    /// The three helpers.
    pub helpers: Helpers,
    /// Background operations.
    pub ops: Operations,
    /// The events fan-out.
    pub events: Events,
    /// The database.
    pub db: Db,
    /// The state dir.
    pub state_dir: PathBuf,
    /// When silod started.
    pub started: Instant,
    /// Host facts.
    pub host: HostFacts,
    /// What silod's own landlock reported.
    pub landlock: String,
    /// One unpack per (pool, image) at a time.
    pub image_locks: storage::ImageLocks,
    /// Instance names being created.
    pub creating: instances::Creating,
    /// Instances being stopped on request.
    pub stopping: runtime::Stopping,
    /// The running instances followed until they stop by themselves.
    pub watcher: runtime::Watcher,
    /// A host shutdown (`silod shutdown`, SIGPWR), once begun.
    pub shutdown: runtime::HostShutdown,
    /// Websockets of exec and console operations, by secret.
    pub sockets: exec::Sockets,
    /// Where the runtime sends ephemeral instances that stopped, to be deleted.
    pub reaper: runtime::Reaper,
    /// Where exec outputs are recorded (`<state>/logs`); none in unit tests.
    pub logs: Option<PathBuf>,
    /// Where backup tarballs are kept (`<state>/backups`); none in unit tests.
    pub backups: Option<PathBuf>,
    /// The server's certificate, wrong-password limits, used tokens.
    pub trust: trust::Trust,
    /// The HTTPS endpoint (`core.https_address`).
    pub https: endpoints::Https,
    /// The guest API's listeners (`/dev/lxd/sock`) and events.
    pub devlxd: devlxd::Devlxd,
    /// This host's cluster membership and the etcd keeper.
    pub cluster: crate::service::cluster::Cluster,
}
