//! What this kernel was built with, from `/proc/config.gz`: so that a nic needing a driver or
//! a tc action the kernel lacks is refused naming the missing option, instead of a bare
//! EOPNOTSUPP from netlink.

pub use silo_proto::kernel::has;

/// A refusal naming what the kernel lacks (or that it could not tell).
pub fn lacks(what: &str, option: &str) -> Option<String> {
    match has(option) {
        Some(true) => None,
        Some(false) => Some(format!(
            "{what} needs {option}, which this kernel was built without (see /proc/config.gz)"
        )),
        None => Some(format!(
            "{what} needs {option}; this kernel does not say whether it has it (no /proc/config.gz)"
        )),
    }
}
