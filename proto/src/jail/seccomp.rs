//! Installing a seccomp program compiled at build time from the process's reviewed
//! `seccomp.json` (see `seccomp_build.rs`, included by each build script).

use seccompiler::{sock_filter, BpfProgram};

/// Which compiled variant to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    /// Kill the process on a syscall outside the list (production).
    Enforce,
    /// Log such syscalls instead (discovering a list; loud; never the default).
    LogOnly,
}

/// Installing the filter failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The embedded program is not a whole number of BPF instructions.
    #[error("seccomp: embedded program is corrupt ({0} bytes)")]
    Corrupt(usize),
    /// The kernel refused it.
    #[error("seccomp: installing the filter: {0}")]
    Install(String),
}

/// Decodes the little-endian instruction stream written by the build script.
pub fn decode(bytes: &[u8]) -> Result<BpfProgram, SeccompError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
        return Err(SeccompError::Corrupt(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Installs the program on every thread of the process (TSYNC).
pub fn install(bytes: &[u8]) -> Result<(), SeccompError> {
    let prog = decode(bytes)?;
    seccompiler::apply_filter_all_threads(&prog).map_err(|e| SeccompError::Install(e.to_string()))
}
