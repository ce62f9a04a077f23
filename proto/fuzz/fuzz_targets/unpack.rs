//! The image unpacker on arbitrary bytes: it must never panic, never write outside the
//! target directory, and stay within its limits.
#![no_main]

use std::os::fd::AsFd;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use silo_proto::image::extract::{extract, Layout, Limits};
use silo_proto::image::open_tar_stream;

static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let base = BASE.get_or_init(|| tempfile::tempdir().expect("tempdir"));
    let target = tempfile::tempdir_in(base.path()).expect("target");
    let sentinel = base.path().join("outside");
    let dir = std::fs::File::open(target.path()).expect("open target");
    let limits = Limits { max_bytes: 8 << 20, max_entries: 4096 };
    for layout in [Layout::Unified, Layout::Rootfs] {
        if let Ok(stream) = open_tar_stream(std::io::Cursor::new(data.to_vec()), 16 << 20) {
            let _ = extract(stream, dir.as_fd(), layout, &limits);
        }
    }
    assert!(!sentinel.exists(), "something was written outside the target");
    let siblings = std::fs::read_dir(base.path()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(siblings, 1, "only the target directory may exist beside nothing else");
});
