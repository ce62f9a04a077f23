//! metadata.yaml parsing on arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = silo_proto::image::ImageMetadata::parse(data);
});
