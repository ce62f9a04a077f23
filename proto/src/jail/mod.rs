//! Confinement for silo's processes: capabilities, landlock, seccomp, the root policy file,
//! and beneath-only path resolution.
//!
//! The order is fixed and lives in [`Jail::enter`]: capabilities first (dropping the bounding
//! set needs CAP_SETPCAP), then landlock (it has no TSYNC on this kernel, so it must come
//! before any thread exists), then seccomp with TSYNC. Callers enter the jail before building
//! their tokio runtime.

pub mod beneath;
pub mod boot;
pub mod caps_drop;
pub mod files;
pub mod landlock_rules;
pub mod launcher;
pub mod policy;
pub mod seccomp;
pub mod selftest;
pub mod user;
pub mod wire;

use std::path::PathBuf;

pub use caps_drop::CapsError;
pub use landlock_rules::{LandlockError, LandlockSpec};
pub use seccomp::{SeccompError, SeccompMode};

/// Everything that can go wrong entering a jail.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// Dropping capabilities failed.
    #[error(transparent)]
    Caps(#[from] CapsError),
    /// Landlock could not be enforced fully.
    #[error(transparent)]
    Landlock(#[from] LandlockError),
    /// The seccomp filter could not be installed.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// Dropping to the unprivileged user failed.
    #[error(transparent)]
    User(#[from] user::UserError),
}

/// A process's confinement, as declared beside the process's code.
#[derive(Debug, Clone)]
pub struct Jail {
    /// Who this is, for logs.
    pub name: &'static str,
    /// Capabilities to keep (effective and permitted); the bounding set is cut to these.
    pub keep_caps: Vec<::caps::Capability>,
    /// Landlock rules.
    pub landlock: LandlockSpec,
    /// The compiled seccomp program (embedded at build time).
    pub seccomp: &'static [u8],
    /// The same filter with its mismatch action turned into "log" (for discovery only).
    pub seccomp_log: &'static [u8],
    /// Whether to install the logging variant. Loud; never the default.
    pub seccomp_mode: SeccompMode,
}

/// What entering reported, for `GET /1.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailReport {
    /// e.g. "fs+net+scope fully enforced" or "net+scope fully enforced (no fs: mounts)".
    pub landlock: String,
}

impl Jail {
    /// Enters the jail on the calling thread (and, for seccomp, all threads).
    /// Must run before any other thread is started.
    pub fn enter(&self) -> Result<JailReport, JailError> {
        caps_drop::keep_only(&self.keep_caps)?;
        let landlock = self.landlock.restrict_self()?;
        let program = match self.seccomp_mode {
            SeccompMode::Enforce => self.seccomp,
            SeccompMode::LogOnly => {
                tracing::warn!(
                    process = self.name,
                    "INSECURE: seccomp violations are only logged (--insecure-seccomp-log); do not use in production"
                );
                self.seccomp_log
            }
        };
        seccomp::install(program)?;
        tracing::debug!(process = self.name, landlock = %landlock, "jail entered");
        Ok(JailReport { landlock })
    }
}

/// Paths that exist, for landlock rules (a missing path cannot be opened as a rule).
pub fn existing(paths: &[&str]) -> Vec<PathBuf> {
    paths
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}
