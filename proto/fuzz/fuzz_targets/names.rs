//! The validated names and values that cross the privilege boundary: whatever is accepted must
//! be a single, non-climbing path component of bounded length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silo_proto::{IfName, InstanceName, PoolName, VolumeName};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for ok in [
        InstanceName::new(s).map(String::from).ok(),
        PoolName::new(s).map(String::from).ok(),
        VolumeName::new(s).map(String::from).ok(),
        IfName::new(s).map(String::from).ok(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!ok.is_empty() && ok.len() <= 128);
        assert!(!ok.contains('/') && !ok.contains('\0'));
        assert!(ok != "." && ok != "..");
    }
    if let Ok(p) = silo_proto::types::RelPath::new(s) {
        assert!(!p.as_str().starts_with('/'));
        assert!(p.components().all(|c| !c.is_empty() && c != "." && c != ".."));
    }
    let _ = s.parse::<silo_proto::types::Ipv4Cidr>();
});
