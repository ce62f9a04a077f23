//! What the running kernel was built with, from `/proc/config.gz`: silod warns of a missing
//! driver at start and silo-net names it in a refusal, from the one reading here.

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
    Some(in_config(&text, option))
}

fn in_config(text: &str, option: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(option)
            .and_then(|r| r.strip_prefix('='))
            .is_some_and(|v| v == "y" || v == "m")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_and_modules_count_and_prefixes_do_not() {
        let cfg =
            "CONFIG_IPVLAN=m\nCONFIG_VETH=y\n# CONFIG_MACVTAP is not set\nCONFIG_IPVLAN_L3S=y\n";
        assert!(in_config(cfg, "CONFIG_IPVLAN"));
        assert!(in_config(cfg, "CONFIG_VETH"));
        assert!(!in_config(cfg, "CONFIG_MACVTAP"));
        assert!(!in_config(cfg, "CONFIG_IPVLAN_L3"));
    }
}
