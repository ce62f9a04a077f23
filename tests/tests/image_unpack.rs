//! silo-store unpacks images in a landlocked child, refuses hostile ones with a clear error,
//! and leaves nothing behind; volumes copy faithfully.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use silo_proto::store::{PoolDriver, StoreClient, VolumeKind};
use silo_proto::{ImageFingerprint, PoolName, VolumeName};
use silo_tests::hostile::Helper;
use tarpc::client::Config;
use tarpc::context;

struct Env {
    state: PathBuf,
    policy: PathBuf,
    helper: Helper,
    client: StoreClient,
    rt: tokio::runtime::Runtime,
}

impl Env {
    fn new(name: &str, policy: Option<&str>) -> Env {
        let state = silo_tests::unique_dir(name);
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(state.join("images")).expect("images");
        let silo = nix::unistd::User::from_name("silo")
            .ok()
            .flatten()
            .map(|u| u.uid)
            .unwrap_or(nix::unistd::Uid::from_raw(65534));
        nix::unistd::chown(&state.join("images"), Some(silo), None).expect("chown");
        let policy_path = PathBuf::from(format!("{}.policy.toml", state.display()));
        if let Some(p) = policy {
            std::fs::write(&policy_path, p).expect("policy");
        }
        let mut helper = Helper::spawn("silo-store", &state, &policy_path, false, &[]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let client =
            rt.block_on(async { StoreClient::new(Config::default(), helper.transport()).spawn() });
        rt.block_on(client.create_pool(context::current(), pool(), PoolDriver::Dir))
            .expect("rpc")
            .expect("pool");
        Env {
            state,
            policy: policy_path,
            helper,
            client,
            rt,
        }
    }

    /// Stores `bytes` as silod would (owned by silod's user) and returns its fingerprint.
    fn upload(&self, bytes: &[u8], rootfs: Option<&[u8]>) -> ImageFingerprint {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(bytes);
        if let Some(r) = rootfs {
            h.update(r);
        }
        let fp = ImageFingerprint::new(hex::encode(h.finalize())).expect("fp");
        let silo = nix::unistd::User::from_name("silo")
            .ok()
            .flatten()
            .map(|u| u.uid)
            .unwrap_or(nix::unistd::Uid::from_raw(65534));
        let p = self.state.join("images").join(fp.as_str());
        std::fs::write(&p, bytes).expect("write");
        nix::unistd::chown(&p, Some(silo), None).expect("chown");
        if let Some(r) = rootfs {
            let p = self.state.join("images").join(format!("{fp}.rootfs"));
            std::fs::write(&p, r).expect("write");
            nix::unistd::chown(&p, Some(silo), None).expect("chown");
        }
        fp
    }

    fn unpack(
        &self,
        fp: &ImageFingerprint,
    ) -> Result<silo_proto::store::UnpackReport, silo_proto::HelperError> {
        let mut c = context::current();
        c.deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        self.rt
            .block_on(self.client.unpack_image(c, pool(), fp.clone()))
            .expect("rpc")
    }

    fn image_dir(&self, fp: &ImageFingerprint) -> PathBuf {
        self.state.join("storage-pools/p/images").join(fp.as_str())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The pool's nosuid bind outlives the helper: it is the host's mount.
        silo_tests::cleanup_mounts(&self.state);
        let _ = std::fs::remove_dir_all(&self.state);
        let _ = std::fs::remove_file(&self.policy);
    }
}

fn pool() -> PoolName {
    PoolName::new("p").expect("name")
}

/// A small valid unified image built with the system's tar.
fn tar_image(dir: &Path, compress: &str) -> Vec<u8> {
    let root = dir.join("img");
    std::fs::create_dir_all(root.join("rootfs/bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("rootfs/etc")).expect("mkdir");
    std::fs::write(
        root.join("metadata.yaml"),
        "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: test\n",
    )
    .expect("meta");
    std::fs::write(root.join("rootfs/bin/hello"), "#!/bin/sh\necho hi\n").expect("file");
    std::fs::write(
        root.join("rootfs/etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
    )
    .expect("file");
    std::os::unix::fs::symlink("/etc/passwd", root.join("rootfs/etc/link")).expect("symlink");
    std::fs::hard_link(
        root.join("rootfs/bin/hello"),
        root.join("rootfs/bin/hello2"),
    )
    .expect("hardlink");
    let out = dir.join("img.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--owner=0", "--group=0", "--numeric-owner", compress, "-cf"])
        .arg(&out)
        .args(["metadata.yaml", "rootfs"])
        .status()
        .expect("tar");
    assert!(st.success());
    std::fs::read(&out).expect("read")
}

#[test]
fn unpacks_a_valid_image_in_every_compression() {
    let mut env = Env::new("unpack-ok", None);
    for c in ["--no-auto-compress", "--gzip", "--xz", "--zstd"] {
        let tmp = tempfile::tempdir().expect("tmp");
        let bytes = tar_image(tmp.path(), c);
        let fp = env.upload(&bytes, None);
        let rep = env
            .unpack(&fp)
            .unwrap_or_else(|e| panic!("{c}: {e}\n{}", env.helper.log_text()));
        assert!(rep.entries >= 6, "{c}: {rep:?}");
        let d = env.image_dir(&fp);
        assert_eq!(
            std::fs::read_to_string(d.join("rootfs/bin/hello")).expect("file"),
            "#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            std::fs::read_link(d.join("rootfs/etc/link")).expect("link"),
            Path::new("/etc/passwd")
        );
        let a = std::fs::metadata(d.join("rootfs/bin/hello")).expect("a");
        let b = std::fs::metadata(d.join("rootfs/bin/hello2")).expect("b");
        assert_eq!(a.ino(), b.ino(), "hardlink kept");
        assert_eq!(
            std::fs::metadata(&d).expect("vol").mode() & 0o777,
            0o700,
            "volumes are root-only"
        );
        // A second unpack of the same image is refused (it exists).
        assert!(matches!(
            env.unpack(&fp),
            Err(silo_proto::HelperError::AlreadyExists { .. })
        ));
        // Copy into a container volume.
        let dst = VolumeName::new(format!("c-{}", &fp.as_str()[..8])).expect("name");
        let bytes = env
            .rt
            .block_on(env.client.copy_volume(
                context::current(),
                pool(),
                VolumeKind::Image,
                VolumeName::new(fp.as_str()).expect("n"),
                VolumeKind::Container,
                dst.clone(),
            ))
            .expect("rpc")
            .expect("copy");
        assert!(bytes > 0);
        let c = env
            .state
            .join("storage-pools/p/containers")
            .join(dst.as_str());
        assert_eq!(
            std::fs::read_link(c.join("rootfs/etc/link")).expect("link"),
            Path::new("/etc/passwd")
        );
        let a = std::fs::metadata(c.join("rootfs/bin/hello")).expect("a");
        let b = std::fs::metadata(c.join("rootfs/bin/hello2")).expect("b");
        assert_eq!(a.ino(), b.ino(), "hardlink kept in the copy");
    }
    assert!(
        env.helper.child.try_wait().expect("wait").is_none(),
        "{}",
        env.helper.log_text()
    );
}

#[test]
fn unpacks_a_split_image() {
    let env = Env::new("unpack-split", None);
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    std::fs::create_dir_all(root.join("meta/templates")).expect("mkdir");
    std::fs::write(
        root.join("meta/metadata.yaml"),
        "architecture: x86_64\ncreation_date: 1\n",
    )
    .expect("meta");
    std::fs::create_dir_all(root.join("fs/bin")).expect("mkdir");
    std::fs::write(root.join("fs/bin/x"), "x").expect("x");
    let m = root.join("m.tar.gz");
    let r = root.join("r.tar.xz");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(root.join("meta"))
        .arg("-czf")
        .arg(&m)
        .arg(".")
        .status()
        .expect("tar")
        .success());
    assert!(Command::new("tar")
        .arg("-C")
        .arg(root.join("fs"))
        .arg("-cJf")
        .arg(&r)
        .arg(".")
        .status()
        .expect("tar")
        .success());
    let fp = env.upload(
        &std::fs::read(&m).expect("m"),
        Some(&std::fs::read(&r).expect("r")),
    );
    env.unpack(&fp)
        .unwrap_or_else(|e| panic!("{e}\n{}", env.helper.log_text()));
    assert_eq!(
        std::fs::read_to_string(env.image_dir(&fp).join("rootfs/bin/x")).expect("x"),
        "x"
    );
    assert!(env.image_dir(&fp).join("metadata.yaml").is_file());
}

#[test]
fn refuses_inputs_silod_could_forge() {
    let env = Env::new("unpack-forge", None);
    // A symlink in silod's upload area pointing at a root file.
    let fp = ImageFingerprint::new("a".repeat(64)).expect("fp");
    std::os::unix::fs::symlink("/etc/shadow", env.state.join("images").join(fp.as_str()))
        .expect("symlink");
    let e = env.unpack(&fp).unwrap_err().to_string();
    assert!(e.contains("symlink"), "{e}");
    // A root-owned file (as a hardlink to a root file would be).
    let fp2 = ImageFingerprint::new("b".repeat(64)).expect("fp");
    std::fs::write(env.state.join("images").join(fp2.as_str()), b"x").expect("write");
    let e = env.unpack(&fp2).unwrap_err().to_string();
    assert!(e.contains("silod's own single-link file"), "{e}");
    let missing = env
        .unpack(&ImageFingerprint::new("c".repeat(64)).expect("fp"))
        .unwrap_err();
    assert!(
        matches!(missing, silo_proto::HelperError::NotFound { .. }),
        "{missing:?}"
    );
    assert_eq!(
        std::fs::read_dir(env.state.join("storage-pools/p/images"))
            .expect("ls")
            .count(),
        0,
        "no volume left behind"
    );
}

/// The regression corpus: every hostile tarball is refused with the expected word in its
/// error (or accepted where the case says so), nothing lands outside the volume, and a
/// refused image leaves no volume behind.
#[test]
fn hostile_corpus() {
    use silo_tests::corpus::{hostile_cases, Expect};
    // Tight limits so the bombs trip them quickly: 256 MiB of data, 100k members.
    let env = Env::new(
        "unpack-corpus",
        Some("max_image_size = 268435456\nmax_image_entries = 100000\n"),
    );
    let escapes = [
        "/tmp/silo-escape",
        "/tmp/silo-escape-abs",
        "/tmp/silo-escape-long",
        "/tmp/silo-escape-pax",
        "/etc/silo-escape",
    ];
    for p in escapes {
        let _ = std::fs::remove_file(p);
    }
    let mut failures = Vec::new();
    for case in hostile_cases() {
        let fp = env.upload(&case.bytes, None);
        let r = env.unpack(&fp);
        let vol = env.image_dir(&fp);
        match (&case.expect, &r) {
            (Expect::Refused(word), Err(e)) => {
                let msg = e.to_string().to_lowercase();
                let ok = msg.contains(word) || (case.name == "size-bomb" && msg.contains("limit"));
                if !ok {
                    failures.push(format!(
                        "{}: refused, but the error lacks {word:?}: {msg}",
                        case.name
                    ));
                }
                if vol.exists() {
                    failures.push(format!("{}: refused but left {}", case.name, vol.display()));
                }
            }
            (Expect::Refused(word), Ok(rep)) => failures.push(format!(
                "{}: accepted ({rep:?}), expected refusal with {word:?}",
                case.name
            )),
            (Expect::Accepted, Ok(rep)) => {
                if case.name == "device-node" {
                    assert_eq!(rep.skipped_devices, 1, "device nodes are skipped");
                    assert!(
                        !vol.join("rootfs/dev/sda").exists(),
                        "no device node was made"
                    );
                }
            }
            (Expect::Accepted, Err(e)) => {
                failures.push(format!("{}: refused ({e}), expected acceptance", case.name))
            }
        }
    }
    for p in escapes {
        assert!(
            !std::path::Path::new(p).exists(),
            "{p} was written: an image escaped"
        );
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
    assert!(
        env.helper.log_text().contains("refused image"),
        "refusals are logged"
    );
}

/// Setuid files stay setuid inside the volume, but the volume is root-only, so no host user
/// can run them through the state dir.
#[test]
fn setuid_files_are_kept_out_of_reach() {
    let env = Env::new("unpack-setuid", None);
    let case = silo_tests::corpus::hostile_cases()
        .into_iter()
        .find(|c| c.name == "setuid-root-file")
        .expect("case");
    let fp = env.upload(&case.bytes, None);
    env.unpack(&fp).expect("accepted");
    let vol = env.image_dir(&fp);
    let m = std::fs::metadata(vol.join("rootfs/usr/bin/evil")).expect("evil");
    assert_eq!(m.mode() & 0o4000, 0o4000, "setuid kept for the container");
    assert_eq!(std::fs::metadata(&vol).expect("vol").mode() & 0o777, 0o700);
    assert_eq!(
        std::fs::metadata(vol.parent().expect("images"))
            .expect("dir")
            .uid(),
        0
    );
}

/// The benign corpus images (with templates, fifos, hardlinks, owners) unpack faithfully.
#[test]
fn benign_corpus_images() {
    let env = Env::new("unpack-benign", None);
    let fp = env.upload(&silo_tests::corpus::benign_unified(), None);
    env.unpack(&fp)
        .unwrap_or_else(|e| panic!("{e}\n{}", env.helper.log_text()));
    let (m, r) = silo_tests::corpus::benign_split();
    let fp2 = env.upload(&m, Some(&r));
    env.unpack(&fp2)
        .unwrap_or_else(|e| panic!("{e}\n{}", env.helper.log_text()));
    for f in [&fp, &fp2] {
        let d = env.image_dir(f);
        assert!(d.join("metadata.yaml").is_file());
        assert!(d.join("rootfs").is_dir());
        assert!(d.join("templates").is_dir());
    }
}

/// Everything a volume copy keeps, per entry beneath `root`: type, mode, owner, mtime,
/// contents or link target, and which entries share an inode.
fn tree_signature(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>, inodes: &mut Vec<u64>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p.strip_prefix(root).expect("beneath").display().to_string();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).expect("link").display())
            } else if m.is_file() {
                let link = if m.nlink() > 1 {
                    let i = inodes
                        .iter()
                        .position(|x| *x == m.ino())
                        .unwrap_or_else(|| {
                            inodes.push(m.ino());
                            inodes.len() - 1
                        });
                    format!(" link#{i}")
                } else {
                    String::new()
                };
                format!("{:?}{link}", std::fs::read(&p).expect("read"))
            } else {
                "dir".into()
            };
            out.push(format!(
                "{rel} {:o} {}:{} {} {what}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime()
            ));
            if m.is_dir() {
                walk(root, &p, out, inodes);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out, &mut Vec::new());
    out
}

/// On a dir pool, making an instance's volume from an image leaves a spare copy made in the
/// background, which the next one takes with a rename: the same tree as a copy, a refill
/// after it, and gone with the image.
#[test]
fn an_instance_volume_from_an_image_takes_the_spare_made_in_the_background() {
    let env = Env::new("unpack-spares", None);
    let tmp = tempfile::tempdir().expect("tmp");
    let fp = env.upload(&tar_image(tmp.path(), "--gzip"), None);
    env.unpack(&fp).expect("unpack");
    let image = VolumeName::new(fp.as_str()).expect("n");
    let copy = |dst: &str| {
        env.rt
            .block_on(env.client.copy_volume(
                context::current(),
                pool(),
                VolumeKind::Image,
                image.clone(),
                VolumeKind::Container,
                VolumeName::new(dst).expect("name"),
            ))
            .expect("rpc")
    };
    let spares = env.state.join("storage-pools/p/spares");
    let spare = spares.join(fp.as_str());
    let unfinished = spares.join(format!("{fp}.new"));
    assert!(!spare.exists(), "no spare before an instance was made");
    assert!(copy("c1").expect("copy") > 0, "the first is copied");
    let ready = || {
        silo_tests::wait_until(std::time::Duration::from_secs(20), || {
            spare.is_dir() && !unfinished.exists()
        })
    };
    assert!(ready(), "a spare follows; log:\n{}", env.helper.log_text());
    assert_eq!(copy("c2").expect("take"), 0, "the second takes the spare");
    let containers = env.state.join("storage-pools/p/containers");
    assert_eq!(
        tree_signature(&containers.join("c2")),
        tree_signature(&containers.join("c1")),
        "a taken spare is what a copy makes"
    );
    assert_eq!(
        std::fs::metadata(containers.join("c2")).expect("c2").mode() & 0o777,
        0o700
    );
    assert!(ready(), "the spare is made again");
    assert!(
        matches!(
            copy("c1"),
            Err(silo_proto::HelperError::AlreadyExists { .. })
        ),
        "an existing volume is refused"
    );
    assert!(spare.is_dir(), "and the spare stays for the next");
    env.rt
        .block_on(env.client.delete_volume(
            context::current(),
            pool(),
            VolumeKind::Image,
            image.clone(),
        ))
        .expect("rpc")
        .expect("delete image");
    assert!(
        !spare.exists() && !unfinished.exists(),
        "the spare goes with its image"
    );
}
