//! silo's privilege boundary, in types.
//!
//! silod (unprivileged, assumed hostile) talks to three root helpers, each over its own
//! socketpair with its own tarpc service: [`privileged::Priv`] (silo-priv), [`net::Net`]
//! (silo-net) and [`store::Store`] (silo-store). Requests are small typed values
//! ([`names`], [`types`]) validated on both sides; answers are [`error::HelperResult`].
//! File descriptors travel beside the RPC on a second socket ([`fdpass`]).

pub mod error;
pub mod fdpass;
#[cfg(feature = "image")]
pub mod image;
#[cfg(feature = "kernel")]
pub mod kernel;
pub mod names;
pub mod net;
#[cfg(feature = "netlink")]
pub mod netlink;
pub mod privileged;
pub mod procinfo;
pub mod proxy;
pub mod random;
pub mod store;
pub mod transport;
pub mod types;

#[cfg(feature = "jail")]
pub mod jail;

use serde::{Deserialize, Serialize};

pub use error::{HelperError, HelperResult};
pub use names::{
    DeviceName, IfName, ImageFingerprint, InstanceName, NameError, PoolName, VolumeName,
};

/// The fd number on which a helper finds its RPC socket.
pub const RPC_FD: i32 = 3;
/// The fd number on which a helper finds its fd-passing socket.
pub const FDPASS_FD: i32 = 4;

/// A helper's answer to `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperHello {
    /// "silo-priv", "silo-net" or "silo-store".
    pub helper: String,
    /// The helper's version; must equal silod's.
    pub version: String,
    /// Its pid in silod's pid namespace.
    pub pid: u32,
    /// The installation tag this helper derived from the state dir.
    pub tag: String,
    /// What landlock enforces on it, as the helper's own restrict_self reported it
    /// (landlock has no /proc view).
    pub landlock: String,
}

/// The short tag that names one silo installation's host objects (cgroups, bridges'
/// ownership marks, nft tables): the first 8 hex digits of sha256 of the state dir path.
/// Two silods with different state dirs never touch each other's objects.
pub fn install_tag(state_dir: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..4])
}
