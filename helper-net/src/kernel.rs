//! What this kernel was built with, from `/proc/config.gz`: so that a nic needing a driver or
//! a tc action the kernel lacks is refused naming the missing option, instead of a bare
//! EOPNOTSUPP from netlink.

use std::io::Read;

/// Whether the running kernel has `option` (`CONFIG_...`) built in or as a module; `None`
/// when the kernel does not expose its configuration.
pub fn has(option: &str) -> Option<bool> {
    let f = std::fs::File::open("/proc/config.gz").ok()?;
    let mut text = String::new();
    // A kernel config is a few hundred KiB; the cap keeps a strange file from growing memory.
    flate2::read::GzDecoder::new(f)
        .take(16 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text.lines().any(|l| {
        l.strip_prefix(option)
            .and_then(|r| r.strip_prefix('='))
            .is_some_and(|v| v == "y" || v == "m")
    }))
}

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
