//! A regression corpus of hostile (and a few benign) LXD image tarballs, for the tests of
//! silo's image unpacker.
//!
//! # What is here
//!
//! * [`hostile_cases`]: every hostile archive as a [`Case`] (name, bytes, what the unpacker must
//!   do with it, and why). All are *unified* images (`metadata.yaml`, `rootfs/…`) and plain
//!   uncompressed `.tar` bytes, except `zero-bomb-gz`, which is a gzip stream because the case is
//!   about decompression.
//! * [`benign_unified`] / [`benign_split`]: small valid images exercising the ordinary odd
//!   corners (symlinks both relative and absolute, a hard link, a fifo, a setuid file, files
//!   owned by uid 1000, templates).
//! * [`write_all`]: writes every hostile case to `<dir>/<name>.tar` (or `.tar.gz`).
//! * [`Header`] / [`Tar`]: a hand-rolled ustar/GNU header writer. Unlike the `tar` crate it
//!   never validates anything: any member name, link target, type flag and size can be emitted,
//!   including `..` components, absolute paths, sizes larger than the data that follows, GNU
//!   long names (`././@LongLink`, type `L`), PAX extended headers (type `x`) and old-GNU sparse
//!   members (type `S`).
//!
//! # Expectations
//!
//! [`Expect::Refused`] carries one lower-case word that the unpacker's error message must
//! contain (the unpacker is written to use these words):
//!
//! | word        | meaning                                                              |
//! |-------------|----------------------------------------------------------------------|
//! | `outside`   | a member path resolves outside the image (`..`, long name, PAX path) |
//! | `absolute`  | a member path is absolute and, stripped, outside the image's layout  |
//! | `symlink`   | a member would be written through a symlink                          |
//! | `hardlink`  | a hard link target is absolute, escapes, or goes through a symlink   |
//! | `sparse`    | a sparse member (refused outright)                                   |
//! | `truncated` | the archive ends inside a header or a member's data                  |
//! | `limit`     | a size or entry-count limit configured by the test was exceeded      |
//! | `format`    | not a tarball at all                                                 |
//! | `metadata`  | `metadata.yaml` missing, unparsable, incomplete or not a regular file |
//!
//! # The decompression bomb
//!
//! `zero-bomb-gz` decompresses to a 2 GiB member (plus headers) but is only ~2 MiB, and is
//! built in well under a second without ever holding or compressing the 2 GiB: raw deflate
//! segments produced by *fresh* compressors are self-contained (they never refer to data before
//! their own start) and end byte-aligned on a non-final block (sync flush), so they can be
//! concatenated freely. The stream is `prefix (tar headers) ++ Z × 2048 ++ suffix (end of
//! archive, final block)`, where `Z` is one deflated MiB of zeros, wrapped in a gzip header and
//! a trailer whose CRC-32 is obtained with CRC combination (no pass over the 2 GiB either). So
//! [`hostile_cases`] returns the real bomb and [`write_all`] needs no special case.
//!
//! # Sizes
//!
//! Everything is a few KiB except `many-entries` (200 000 empty files: ~98 MiB of headers,
//! which is the point: it is about entry-count limits, and an uncompressed tar member cannot be
//! smaller than one 512-byte header) and `zero-bomb-gz` (~2 MiB).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, FlushCompress, Status};

/// The tar block size.
pub const BLOCK: usize = 512;

/// The modification time stamped on every member (deterministic output).
pub const MTIME: u64 = 1_700_000_000;

/// A minimal valid `metadata.yaml`.
pub const METADATA: &str = "architecture: x86_64
creation_date: 1700000000
properties:
  os: test
  release: \"1\"
  description: corpus image
";

/// A valid `metadata.yaml` with a `templates` section (used by the benign images).
pub const METADATA_WITH_TEMPLATES: &str = "architecture: x86_64
creation_date: 1700000000
properties:
  os: test
  release: \"1\"
  description: corpus image
templates:
  /etc/hostname:
    when:
      - create
      - copy
    template: hostname.tpl
";

/// Uncompressed size of the `zero-bomb-gz` member (2 GiB).
pub const ZERO_BOMB_SIZE: u64 = 2 << 30;

/// Number of empty files in `many-entries`.
pub const MANY_ENTRIES: usize = 200_000;

/// One corpus archive.
pub struct Case {
    /// A short file-name-safe identifier (`dotdot`, `zero-bomb-gz`, …).
    pub name: &'static str,
    /// The archive: `.tar` bytes, or `.tar.gz` bytes when the case is about compression
    /// (see [`Case::is_gzip`]).
    pub bytes: Vec<u8>,
    /// What the unpacker must do with it.
    pub expect: Expect,
    /// Why, in a sentence or two.
    pub why: &'static str,
}

impl Case {
    /// Whether [`Case::bytes`] is a gzip stream.
    pub fn is_gzip(&self) -> bool {
        self.bytes.starts_with(&[0x1f, 0x8b])
    }

    /// The file name [`write_all`] uses: `<name>.tar` or `<name>.tar.gz`.
    pub fn file_name(&self) -> String {
        if self.is_gzip() {
            format!("{}.tar.gz", self.name)
        } else {
            format!("{}.tar", self.name)
        }
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("expect", &self.expect)
            .field("why", &self.why)
            .finish()
    }
}

/// What the unpacker must do with a [`Case`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Refuse the image, with an error whose message contains this lower-case word.
    Refused(&'static str),
    /// Unpack the image (possibly skipping and reporting some members, see the case's `why`).
    Accepted,
}

/// The header layout after `devminor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// POSIX ustar: magic `"ustar\0"`, version `"00"`, then the 155-byte `prefix`.
    Ustar,
    /// Old GNU: magic `"ustar  \0"`, then atime/ctime/offset/longnames, a four-entry sparse map,
    /// `isextended` and `realsize`. What GNU tar uses for `L`, `K` and `S` members.
    Gnu,
}

/// Tar type flags.
pub mod typeflag {
    /// Regular file.
    pub const FILE: u8 = b'0';
    /// Hard link.
    pub const HARDLINK: u8 = b'1';
    /// Symbolic link.
    pub const SYMLINK: u8 = b'2';
    /// Character device.
    pub const CHAR: u8 = b'3';
    /// Block device.
    pub const BLOCK: u8 = b'4';
    /// Directory.
    pub const DIR: u8 = b'5';
    /// FIFO.
    pub const FIFO: u8 = b'6';
    /// PAX extended header for the next member.
    pub const PAX: u8 = b'x';
    /// GNU long name for the next member.
    pub const GNU_LONGNAME: u8 = b'L';
    /// GNU long link target for the next member.
    pub const GNU_LONGLINK: u8 = b'K';
    /// Old GNU sparse file.
    pub const GNU_SPARSE: u8 = b'S';
}

/// One 512-byte tar header with every field under the caller's control.
///
/// [`Header::encode`] writes the fields verbatim: byte strings longer than their slot are cut
/// to the slot (which is what GNU tar does to the `name` slot after a long-name record), numbers
/// are written as NUL-terminated octal, or in GNU base-256 when they do not fit, and the checksum
/// is computed over the block with the checksum field as spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `name[100]`.
    pub name: Vec<u8>,
    /// `mode[8]`, including the setuid/setgid/sticky bits.
    pub mode: u64,
    /// `uid[8]`.
    pub uid: u64,
    /// `gid[8]`.
    pub gid: u64,
    /// `size[12]`: what the header *claims*; nothing checks it against the data written.
    pub size: u64,
    /// `mtime[12]`.
    pub mtime: u64,
    /// `typeflag[1]`, see [`typeflag`].
    pub typeflag: u8,
    /// `linkname[100]`.
    pub linkname: Vec<u8>,
    /// `uname[32]`.
    pub uname: Vec<u8>,
    /// `gname[32]`.
    pub gname: Vec<u8>,
    /// `devmajor[8]`.
    pub devmajor: u64,
    /// `devminor[8]`.
    pub devminor: u64,
    /// `prefix[155]` ([`Format::Ustar`] only).
    pub prefix: Vec<u8>,
    /// Magic and the layout of the tail of the header.
    pub format: Format,
    /// Old-GNU sparse map, up to four `(offset, numbytes)` entries ([`Format::Gnu`] only).
    pub sparse: Vec<(u64, u64)>,
    /// Old-GNU `realsize[12]`, the expanded size of a sparse file ([`Format::Gnu`] only).
    pub realsize: u64,
}

impl Header {
    /// A ustar header for `name` of the given type: mode 0644 (0755 for directories), owned by
    /// root, size 0, mtime [`MTIME`].
    pub fn new(name: impl AsRef<[u8]>, typeflag: u8) -> Self {
        Header {
            name: name.as_ref().to_vec(),
            mode: if typeflag == typeflag::DIR {
                0o755
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            size: 0,
            mtime: MTIME,
            typeflag,
            linkname: Vec::new(),
            uname: b"root".to_vec(),
            gname: b"root".to_vec(),
            devmajor: 0,
            devminor: 0,
            prefix: Vec::new(),
            format: Format::Ustar,
            sparse: Vec::new(),
            realsize: 0,
        }
    }

    /// The 512 bytes.
    pub fn encode(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        put_bytes(&mut b[0..100], &self.name);
        put_num(&mut b[100..108], self.mode);
        put_num(&mut b[108..116], self.uid);
        put_num(&mut b[116..124], self.gid);
        put_num(&mut b[124..136], self.size);
        put_num(&mut b[136..148], self.mtime);
        b[156] = self.typeflag;
        put_bytes(&mut b[157..257], &self.linkname);
        match self.format {
            Format::Ustar => {
                b[257..263].copy_from_slice(b"ustar\0");
                b[263..265].copy_from_slice(b"00");
            }
            Format::Gnu => b[257..265].copy_from_slice(b"ustar  \0"),
        }
        put_bytes(&mut b[265..297], &self.uname);
        put_bytes(&mut b[297..329], &self.gname);
        put_num(&mut b[329..337], self.devmajor);
        put_num(&mut b[337..345], self.devminor);
        match self.format {
            Format::Ustar => put_bytes(&mut b[345..500], &self.prefix),
            Format::Gnu => {
                for (i, &(offset, numbytes)) in self.sparse.iter().take(4).enumerate() {
                    let at = 386 + 24 * i;
                    put_num(&mut b[at..at + 12], offset);
                    put_num(&mut b[at + 12..at + 24], numbytes);
                }
                // b[482] (isextended) stays 0: no extension blocks.
                if !self.sparse.is_empty() || self.realsize != 0 {
                    put_num(&mut b[483..495], self.realsize);
                }
            }
        }
        set_checksum(&mut b);
        b
    }
}

/// Copies `src` into the slot, cut to the slot's length; the rest stays NUL.
fn put_bytes(slot: &mut [u8], src: &[u8]) {
    let n = src.len().min(slot.len());
    slot[..n].copy_from_slice(&src[..n]);
}

/// A numeric field: NUL-terminated zero-padded octal when it fits in `len - 1` digits, else GNU
/// base-256 (first byte 0x80, then the value big-endian).
fn put_num(slot: &mut [u8], value: u64) {
    let digits = slot.len() - 1;
    let fits_octal = digits * 3 >= 64 || value < 1u64 << (digits * 3);
    if fits_octal {
        let s = format!("{value:0digits$o}");
        slot[..digits].copy_from_slice(s.as_bytes());
        slot[digits] = 0;
    } else {
        slot.fill(0);
        slot[0] = 0x80;
        let be = value.to_be_bytes();
        let n = be.len().min(slot.len() - 1);
        let dst = slot.len() - n;
        slot[dst..].copy_from_slice(&be[be.len() - n..]);
    }
}

/// Computes and stores the header checksum (six octal digits, NUL, space), summing the block
/// with the checksum field as eight spaces.
fn set_checksum(b: &mut [u8; BLOCK]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
}

/// An archive being built in memory, one raw block at a time.
///
/// The convenience methods write ordinary members (ustar, root-owned, [`MTIME`]); anything else
/// goes through [`Tar::header`] + [`Tar::data`].
#[derive(Debug, Default, Clone)]
pub struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a raw header block.
    pub fn header(&mut self, h: &Header) -> &mut Self {
        self.buf.extend_from_slice(&h.encode());
        self
    }

    /// Appends member data, NUL-padded to a whole block.
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.buf.resize(self.buf.len() + pad, 0);
        self
    }

    /// Appends `h` with its size set to `data.len()`, then `data`.
    pub fn member(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
        h.size = data.len() as u64;
        self.header(&h).data(data)
    }

    /// A root-owned regular file.
    pub fn file(&mut self, name: impl AsRef<[u8]>, mode: u64, data: &[u8]) -> &mut Self {
        let mut h = Header::new(name, typeflag::FILE);
        h.mode = mode;
        self.member(h, data)
    }

    /// A regular file owned by `uid:gid` (no user/group names).
    pub fn file_owned(
        &mut self,
        name: impl AsRef<[u8]>,
        mode: u64,
        uid: u64,
        gid: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Header::new(name, typeflag::FILE);
        h.mode = mode;
        set_owner(&mut h, uid, gid);
        self.member(h, data)
    }

    /// A root-owned directory.
    pub fn dir(&mut self, name: impl AsRef<[u8]>, mode: u64) -> &mut Self {
        let mut h = Header::new(name, typeflag::DIR);
        h.mode = mode;
        self.header(&h)
    }

    /// A directory owned by `uid:gid`.
    pub fn dir_owned(
        &mut self,
        name: impl AsRef<[u8]>,
        mode: u64,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = Header::new(name, typeflag::DIR);
        h.mode = mode;
        set_owner(&mut h, uid, gid);
        self.header(&h)
    }

    /// A symlink `name -> target` (mode 0777).
    pub fn symlink(&mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let mut h = Header::new(name, typeflag::SYMLINK);
        h.mode = 0o777;
        h.linkname = target.as_ref().to_vec();
        self.header(&h)
    }

    /// A hard link `name -> target` (target is an archive path, verbatim).
    pub fn hardlink(&mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let mut h = Header::new(name, typeflag::HARDLINK);
        h.linkname = target.as_ref().to_vec();
        self.header(&h)
    }

    /// A FIFO.
    pub fn fifo(&mut self, name: impl AsRef<[u8]>, mode: u64) -> &mut Self {
        let mut h = Header::new(name, typeflag::FIFO);
        h.mode = mode;
        self.header(&h)
    }

    /// A character device.
    pub fn chardev(
        &mut self,
        name: impl AsRef<[u8]>,
        mode: u64,
        major: u64,
        minor: u64,
    ) -> &mut Self {
        let mut h = Header::new(name, typeflag::CHAR);
        h.mode = mode;
        h.devmajor = major;
        h.devminor = minor;
        self.header(&h)
    }

    /// A GNU long-name record (`././@LongLink`, type `L`) naming the next member, as GNU tar
    /// writes it: the name plus a NUL as data. The next header should carry the first 100 bytes
    /// of the name (see [`Tar::file_long_name`]).
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut h = Header::new("././@LongLink", typeflag::GNU_LONGNAME);
        h.format = Format::Gnu;
        h.uname.clear();
        h.gname.clear();
        h.mtime = 0;
        let mut data = name.to_vec();
        data.push(0);
        self.member(h, &data)
    }

    /// A regular file with a name of any length: a long-name record, then a header whose name
    /// slot holds the name's first 100 bytes (what a reader ignoring `L` records would see).
    pub fn file_long_name(&mut self, name: &[u8], mode: u64, data: &[u8]) -> &mut Self {
        self.gnu_long_name(name);
        let mut h = Header::new(&name[..name.len().min(100)], typeflag::FILE);
        h.mode = mode;
        self.member(h, data)
    }

    /// A PAX extended header (type `x`) applying `records` to the next member. `name` is the
    /// header's own (ignored) name.
    pub fn pax(&mut self, name: impl AsRef<[u8]>, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            data.extend_from_slice(&pax_record(key, value));
        }
        let h = Header::new(name, typeflag::PAX);
        self.member(h, &data)
    }

    /// The standard first members of a unified image: a valid `metadata.yaml` and `rootfs/`.
    pub fn image_prelude(&mut self) -> &mut Self {
        self.file("metadata.yaml", 0o644, METADATA.as_bytes())
            .dir("rootfs/", 0o755)
    }

    /// The bytes so far (no end-of-archive marker).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The archive with its end-of-archive marker (two zero blocks).
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.resize(self.buf.len() + 2 * BLOCK, 0);
        self.buf
    }

    /// The bytes so far, without an end-of-archive marker.
    pub fn into_unterminated(self) -> Vec<u8> {
        self.buf
    }
}

/// Owner ids without names (the unpacker must use the numeric ids).
fn set_owner(h: &mut Header, uid: u64, gid: u64) {
    h.uid = uid;
    h.gid = gid;
    if uid != 0 {
        h.uname.clear();
    }
    if gid != 0 {
        h.gname.clear();
    }
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including
/// its own digits.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Every hostile case, in a fixed order (see the module documentation).
pub fn hostile_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name, bytes, expect, why| {
        cases.push(Case {
            name,
            bytes,
            expect,
            why,
        })
    };

    let mut t = Tar::new();
    t.image_prelude()
        .file("rootfs/../../../tmp/silo-escape", 0o644, b"escaped\n");
    add(
        "dotdot",
        t.finish(),
        Expect::Refused("outside"),
        "A member path with `..` components resolving above the image root.",
    );

    let mut t = Tar::new();
    t.image_prelude()
        .file("/tmp/silo-escape-abs", 0o644, b"escaped\n");
    add(
        "absolute",
        t.finish(),
        Expect::Refused("unexpected"),
        "An absolute member path: its leading `/` is dropped as GNU tar (and so LXD) drops it, \
         and what is left, `tmp/...`, is none of an image's three top-level entries.",
    );

    let mut t = Tar::new();
    t.image_prelude().symlink("rootfs/link", "/tmp").file(
        "rootfs/link/silo-escape",
        0o644,
        b"escaped\n",
    );
    add(
        "symlink-then-write",
        t.finish(),
        Expect::Refused("symlink"),
        "A symlink to /tmp, then a file written through it: a path-based unpacker writes to the \
         host's /tmp.",
    );

    let mut t = Tar::new();
    t.image_prelude().symlink("rootfs/up", "../../..").file(
        "rootfs/up/etc/silo-escape",
        0o644,
        b"escaped\n",
    );
    add(
        "symlink-dir-relative-escape",
        t.finish(),
        Expect::Refused("symlink"),
        "A relative symlink climbing out of the image, then a file written through it.",
    );

    let mut t = Tar::new();
    t.image_prelude().hardlink("rootfs/shadow", "/etc/shadow");
    add(
        "hardlink-outside",
        t.finish(),
        Expect::Refused("hardlink"),
        "A hard link to an absolute host path would expose (and let the container modify) \
         /etc/shadow.",
    );

    let mut t = Tar::new();
    t.image_prelude().hardlink("rootfs/x", "../../etc/passwd");
    add(
        "hardlink-dotdot",
        t.finish(),
        Expect::Refused("hardlink"),
        "A hard link whose target climbs out of the image with `..`.",
    );

    let mut t = Tar::new();
    t.image_prelude()
        .symlink("rootfs/s", "/etc")
        .hardlink("rootfs/h", "rootfs/s/passwd");
    add(
        "hardlink-through-symlink",
        t.finish(),
        Expect::Refused("hardlink"),
        "A hard link whose target path goes through a symlink to /etc: link(2) follows the \
         intermediate symlink and links the host's /etc/passwd.",
    );

    let mut t = Tar::new();
    t.image_prelude()
        .dir("rootfs/dev/", 0o755)
        .chardev("rootfs/dev/sda", 0o660, 8, 0);
    add(
        "device-node",
        t.finish(),
        Expect::Accepted,
        "A char device (8,0 = /dev/sda). Accepted: the unpacker skips device nodes and reports \
         them (containers get their devices from the runtime, never from the image), so \
         rootfs/dev/sda must not exist afterwards.",
    );

    let mut t = Tar::new();
    t.image_prelude();
    let mut h = Header::new("rootfs/sparse", typeflag::GNU_SPARSE);
    h.format = Format::Gnu;
    h.realsize = 1 << 40;
    h.sparse = vec![((1 << 40) - BLOCK as u64, BLOCK as u64)];
    t.member(h, &[b'S'; BLOCK]);
    add(
        "huge-sparse-claim",
        t.finish(),
        Expect::Refused("sparse"),
        "An old-GNU sparse member (type S) with 512 bytes of data claiming a 1 TiB file; \
         sparse members are refused outright.",
    );

    let mut t = Tar::new();
    t.image_prelude();
    let mut h = Header::new("rootfs/huge", typeflag::FILE);
    h.size = 1 << 40;
    t.header(&h);
    add(
        "size-bomb",
        t.into_unterminated(),
        Expect::Refused("truncated"),
        "A regular member claiming 2^40 bytes (size in GNU base-256) with no data after the \
         header: a streaming unpacker hits end of file. (An unpacker checking declared sizes \
         against a configured byte limit before reading would say `limit` instead, so tests \
         should run this one with a limit above 1 TiB or none.)",
    );

    add(
        "zero-bomb-gz",
        zero_bomb_gz(ZERO_BOMB_SIZE),
        Expect::Refused("limit"),
        "About 2 MiB of gzip inflating to a 2 GiB member of zeros: the unpacker must stop at the \
         byte limit the test configures, not fill the disk.",
    );

    add(
        "not-a-tarball",
        pseudo_random(3000, 0x5eed_c0de_d00d_f00d),
        Expect::Refused("format"),
        "3000 deterministic pseudo-random bytes: neither a tar header nor a known compression \
         magic.",
    );

    let mut t = Tar::new();
    t.image_prelude().dir("rootfs/bin/", 0o755);
    let data = pseudo_random(8192, 42);
    t.file("rootfs/bin/big", 0o755, &data);
    let mut bytes = t.into_unterminated();
    bytes.truncate(bytes.len() - 8192 + 3000);
    add(
        "truncated",
        bytes,
        Expect::Refused("truncated"),
        "A valid archive cut 3000 bytes into the data of an 8192-byte member.",
    );

    let mut t = Tar::new();
    t.dir("rootfs/", 0o755)
        .dir("rootfs/etc/", 0o755)
        .file("rootfs/etc/hostname", 0o644, b"silo\n");
    add(
        "no-metadata",
        t.finish(),
        Expect::Refused("metadata"),
        "A rootfs without metadata.yaml.",
    );

    let mut t = Tar::new();
    t.file(
        "metadata.yaml",
        0o644,
        b"architecture: [x86_64\ncreation_date: {{{\n\t- : :\n\"unterminated\n",
    )
    .dir("rootfs/", 0o755);
    add(
        "bad-metadata",
        t.finish(),
        Expect::Refused("metadata"),
        "metadata.yaml that is not YAML (unclosed flow collections and quote, tab indentation).",
    );

    let mut t = Tar::new();
    t.file(
        "metadata.yaml",
        0o644,
        b"creation_date: 1700000000\nproperties:\n  os: test\n",
    )
    .dir("rootfs/", 0o755);
    add(
        "metadata-no-architecture",
        t.finish(),
        Expect::Refused("metadata"),
        "metadata.yaml that is valid YAML but lacks the required `architecture`.",
    );

    let mut t = Tar::new();
    t.symlink("metadata.yaml", "/etc/passwd")
        .dir("rootfs/", 0o755);
    add(
        "metadata-symlink",
        t.finish(),
        Expect::Refused("metadata"),
        "metadata.yaml is a symlink to /etc/passwd: reading it would follow the link on the \
         host; metadata.yaml must be a regular file.",
    );

    let mut t = Tar::new();
    t.image_prelude()
        .file_long_name(&long_escape_name(), 0o644, b"escaped\n");
    add(
        "long-name-escape",
        t.finish(),
        Expect::Refused("outside"),
        "A GNU long name (type L) `rootfs/` + `a/`x60 + `../`x70 + `tmp/silo-escape-long`: \
         it ends 9 levels above the archive root. The ustar name slot shows a harmless \
         `rootfs/a/a/...` prefix, which is what a reader ignoring L records would use.",
    );

    let mut t = Tar::new();
    t.image_prelude()
        .pax(
            "rootfs/PaxHeaders/innocent",
            &[("path", b"../../tmp/silo-escape-pax".as_slice())],
        )
        .file("rootfs/innocent", 0o644, b"escaped\n");
    add(
        "pax-path-escape",
        t.finish(),
        Expect::Refused("outside"),
        "A PAX extended header setting path=../../tmp/silo-escape-pax for a member whose ustar \
         name is the harmless rootfs/innocent.",
    );

    add(
        "many-entries",
        many_entries(MANY_ENTRIES),
        Expect::Refused("limit"),
        "200000 empty regular files (~98 MiB of headers): the unpacker must stop at the entry \
         limit the test configures.",
    );

    let mut t = Tar::new();
    t.image_prelude()
        .dir("rootfs/usr/", 0o755)
        .dir("rootfs/usr/bin/", 0o755)
        .file(
            "rootfs/usr/bin/evil",
            0o4755,
            b"#!/bin/sh\nexec /bin/sh -p\n",
        );
    add(
        "setuid-root-file",
        t.finish(),
        Expect::Accepted,
        "A setuid-root file (04755, uid 0). Accepted and kept as is: setuid binaries are normal \
         in images (su, passwd); silo protects the host by keeping volume directories root-only \
         (0700), so no unprivileged host user can reach and run it.",
    );

    let mut t = Tar::new();
    t.image_prelude()
        .dir("rootfs/run/", 0o755)
        .fifo("rootfs/run/initctl", 0o600)
        .dir("rootfs/tmp/", 0o1777)
        .dir("rootfs/root/", 0o700)
        .dir("rootfs/ro/", 0o555)
        .dir("rootfs/empty/", 0o755)
        .file("rootfs/empty-file", 0o644, b"")
        .symlink("rootfs/dangling", "does/not/exist")
        .file("rootfs/name with spaces \u{e9}", 0o644, b"ok\n")
        .dir("rootfs/late/dir/", 0o750)
        .file(
            "rootfs/late/dir/file",
            0o600,
            b"parent created implicitly\n",
        );
    add(
        "fifo-and-dirs-ok",
        t.finish(),
        Expect::Accepted,
        "Benign odd members: a fifo, sticky/0700/0555 directories, an empty directory and file, \
         a dangling relative symlink, a non-ASCII name with spaces, and a directory whose parent \
         has no member of its own.",
    );

    cases
}

/// `rootfs/` + `a/`x60 + `../`x70 + `tmp/silo-escape-long`.
pub fn long_escape_name() -> Vec<u8> {
    let mut name = b"rootfs/".to_vec();
    name.extend_from_slice(&b"a/".repeat(60));
    name.extend_from_slice(&b"../".repeat(70));
    name.extend_from_slice(b"tmp/silo-escape-long");
    name
}

/// A small valid unified image: `metadata.yaml`, `templates/hostname.tpl`, and a rootfs with
/// directories, files, a relative and an absolute symlink, a hard link within the rootfs, a
/// fifo, a setuid-root file and files owned by uid/gid 1000.
pub fn benign_unified() -> Vec<u8> {
    let mut t = Tar::new();
    image_meta(&mut t);
    rootfs_members(&mut t, "rootfs/");
    t.finish()
}

/// A small valid split image: (metadata tarball with `metadata.yaml` and `templates/`, rootfs
/// tarball with the same rootfs as [`benign_unified`], its members at the archive root).
pub fn benign_split() -> (Vec<u8>, Vec<u8>) {
    let mut meta = Tar::new();
    image_meta(&mut meta);
    let mut rootfs = Tar::new();
    rootfs_members(&mut rootfs, "");
    (meta.finish(), rootfs.finish())
}

fn image_meta(t: &mut Tar) {
    t.file("metadata.yaml", 0o644, METADATA_WITH_TEMPLATES.as_bytes())
        .dir("templates/", 0o755)
        .file("templates/hostname.tpl", 0o644, b"{{ container.name }}\n");
}

/// The benign rootfs, every path under `prefix` (`"rootfs/"` or `""`).
fn rootfs_members(t: &mut Tar, prefix: &str) {
    let p = |s: &str| format!("{prefix}{s}");
    if !prefix.is_empty() {
        t.dir(prefix, 0o755);
    }
    t.dir(p("bin/"), 0o755)
        .file(p("bin/busybox"), 0o755, b"#!/bin/false\nbusybox stand-in\n")
        .symlink(p("bin/sh"), "busybox")
        .hardlink(p("bin/ls"), p("bin/busybox"))
        .dir(p("etc/"), 0o755)
        .file(p("etc/hostname"), 0o644, b"corpus\n")
        .file(
            p("etc/passwd"),
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .file(p("etc/shadow"), 0o640, b"root:*:19000:0:99999:7:::\n")
        .dir(p("usr/"), 0o755)
        .dir(p("usr/bin/"), 0o755)
        .symlink(p("usr/bin/env"), "/bin/busybox")
        .file(p("usr/bin/su"), 0o4755, b"#!/bin/false\nsu stand-in\n")
        .dir(p("run/"), 0o755)
        .fifo(p("run/initctl"), 0o600)
        .dir(p("tmp/"), 0o1777)
        .dir(p("home/"), 0o755)
        .dir_owned(p("home/user/"), 0o750, 1000, 1000)
        .file_owned(
            p("home/user/.profile"),
            0o644,
            1000,
            1000,
            b"export PS1='$ '\n",
        )
        .file_owned(p("home/user/notes.txt"), 0o600, 1000, 1000, b"hello\n");
}

/// `metadata.yaml`, `rootfs/`, `rootfs/many/` and `n` empty files `rootfs/many/NNNNNN`.
///
/// Built from one encoded template header whose checksum is adjusted per name, so 200 000
/// entries take milliseconds even in debug builds.
fn many_entries(n: usize) -> Vec<u8> {
    let mut t = Tar::new();
    t.image_prelude().dir("rootfs/many/", 0o755);
    let mut buf = t.into_unterminated();
    buf.reserve(n * BLOCK + 2 * BLOCK);
    let template = Header::new("", typeflag::FILE).encode();
    let base = checksum_of(&template);
    for i in 0..n {
        let name = format!("rootfs/many/{i:06}");
        let mut b = template;
        put_bytes(&mut b[0..100], name.as_bytes());
        let sum = base + name.bytes().map(u32::from).sum::<u32>();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        buf.extend_from_slice(&b);
    }
    buf.resize(buf.len() + 2 * BLOCK, 0);
    buf
}

/// The checksum value of a header block (the checksum field counted as spaces).
fn checksum_of(b: &[u8; BLOCK]) -> u32 {
    b.iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(x)
            }
        })
        .sum()
}

/// Deterministic pseudo-random bytes (xorshift64*), never starting with a known magic (gzip,
/// xz, bzip2, zstd).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    if let Some(first) = out.first_mut() {
        if matches!(*first, 0x1f | 0xfd | b'B' | 0x28) {
            *first = b'#';
        }
    }
    out
}

/// A gzip stream of `metadata.yaml`, `rootfs/` and `rootfs/zeros` of `size` zero bytes (rounded
/// up to whole MiB), built without compressing or holding the zeros (see the module docs).
fn zero_bomb_gz(size: u64) -> Vec<u8> {
    const CHUNK: usize = 1 << 20;
    let chunks = size.div_ceil(CHUNK as u64);

    let mut t = Tar::new();
    t.image_prelude();
    let mut h = Header::new("rootfs/zeros", typeflag::FILE);
    h.size = chunks * CHUNK as u64;
    t.header(&h);
    let prefix = t.into_unterminated();
    let suffix = [0u8; 2 * BLOCK];
    let zeros = vec![0u8; CHUNK];

    let prefix_z = deflate_segment(&prefix, false);
    let zeros_z = deflate_segment(&zeros, false);
    let suffix_z = deflate_segment(&suffix, true);

    let mut crc = crc32fast::Hasher::new();
    crc.update(&prefix);
    let mut chunk_crc = crc32fast::Hasher::new();
    chunk_crc.update(&zeros);
    crc.combine(&repeat_crc(&chunk_crc, chunks));
    crc.update(&suffix);
    let total = prefix.len() as u64 + chunks * CHUNK as u64 + suffix.len() as u64;

    let compressed = prefix_z.len() + zeros_z.len() * chunks as usize + suffix_z.len();
    let mut out = Vec::with_capacity(10 + compressed + 8);
    // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=2 (best) OS=3 (Unix)
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
    out.extend_from_slice(&prefix_z);
    for _ in 0..chunks {
        out.extend_from_slice(&zeros_z);
    }
    out.extend_from_slice(&suffix_z);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

/// The CRC state of `one`'s bytes repeated `n` times (square-and-multiply on CRC combination).
fn repeat_crc(one: &crc32fast::Hasher, n: u64) -> crc32fast::Hasher {
    let mut acc = crc32fast::Hasher::new();
    let mut pow = one.clone();
    let mut n = n;
    while n > 0 {
        if n & 1 == 1 {
            acc.combine(&pow);
        }
        let p = pow.clone();
        pow.combine(&p);
        n >>= 1;
    }
    acc
}

/// Raw deflate of `input` by a fresh compressor at level 9, so it never refers to earlier data:
/// with `last` false it ends byte-aligned on a non-final block (sync flush) and can be followed
/// by any other segment; with `last` true it ends the stream.
fn deflate_segment(input: &[u8], last: bool) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() / 64 + 4096);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity());
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .expect("in-memory deflate into a growing buffer cannot fail");
        let all_in = c.total_in() as usize == input.len();
        match status {
            Status::StreamEnd => break,
            _ if !last && all_in && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    out
}

/// Writes every [`hostile_cases`] archive to `dir/<name>.tar` (or `.tar.gz`, see
/// [`Case::file_name`]), creating `dir` if needed; returns the paths in case order.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::new();
    for case in hostile_cases() {
        let path = dir.join(case.file_name());
        std::fs::write(&path, &case.bytes)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::Command;
    use std::time::Instant;

    /// `tar <flag> <path>`, listing only (never extracting): (success, stdout, stderr).
    fn tar_list(flag: &str, path: &Path) -> (bool, String, String) {
        assert!(
            flag.starts_with("-t"),
            "only listing is allowed in these tests"
        );
        let out = Command::new("tar")
            .arg(flag)
            .arg(path)
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .output()
            .expect("run GNU tar");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The listing line for member `name` (the last field of `tar -tv` output).
    fn line_of<'a>(listing: &'a str, name: &str) -> &'a str {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name} not in listing:\n{listing}"))
    }

    fn parse_octal(field: &[u8]) -> u64 {
        let s = std::str::from_utf8(field).expect("ascii");
        let s = s.trim_matches(|c| c == '\0' || c == ' ');
        u64::from_str_radix(s, 8).expect("octal")
    }

    #[test]
    fn header_encoding() {
        let mut h = Header::new("rootfs/x", typeflag::FILE);
        h.size = 5;
        h.mode = 0o4755;
        let b = h.encode();
        assert_eq!(&b[0..9], b"rootfs/x\0");
        assert_eq!(&b[100..108], b"0004755\0");
        assert_eq!(&b[124..136], b"00000000005\0");
        assert_eq!(&b[257..265], b"ustar\x0000");
        assert_eq!(b[154..156], [0, b' ']);
        assert_eq!(parse_octal(&b[148..154]), u64::from(checksum_of(&b)));

        // Largest octal size, then GNU base-256.
        h.size = (8 << 30) - 1;
        assert_eq!(&h.encode()[124..136], b"77777777777\0");
        h.size = 1 << 40;
        let b = h.encode();
        assert_eq!(b[124], 0x80);
        assert_eq!(&b[128..136], &(1u64 << 40).to_be_bytes());
        assert_eq!(parse_octal(&b[148..154]), u64::from(checksum_of(&b)));

        // Old-GNU layout: magic, sparse map, realsize.
        let mut g = Header::new("s", typeflag::GNU_SPARSE);
        g.format = Format::Gnu;
        g.sparse = vec![(0o1234, 512)];
        g.realsize = 0o7777;
        let b = g.encode();
        assert_eq!(&b[257..265], b"ustar  \0");
        assert_eq!(parse_octal(&b[386..398]), 0o1234);
        assert_eq!(parse_octal(&b[398..410]), 512);
        assert_eq!(b[482], 0);
        assert_eq!(parse_octal(&b[483..495]), 0o7777);

        // Over-long names are cut to the slot.
        let long = Header::new([b'n'; 150], typeflag::FILE).encode();
        assert_eq!(&long[0..100], &[b'n'; 100]);
        assert_eq!(long[100], b'0');
    }

    #[test]
    fn pax_record_lengths() {
        for n in 0..300 {
            let value = vec![b'v'; n];
            let r = pax_record("path", &value);
            let text = String::from_utf8(r.clone()).expect("utf-8");
            let (len, rest) = text.split_once(' ').expect("length prefix");
            assert_eq!(len.parse::<usize>().expect("number"), r.len());
            assert_eq!(rest, format!("path={}\n", "v".repeat(n)));
        }
    }

    #[test]
    fn zero_bomb_construction_round_trips() {
        let size = 3 << 20;
        let gz = zero_bomb_gz(size);
        let mut plain = Vec::new();
        // GzDecoder checks the CRC-32 and ISIZE trailer.
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut plain)
            .expect("valid gzip");
        let mut t = Tar::new();
        t.image_prelude();
        let mut h = Header::new("rootfs/zeros", typeflag::FILE);
        h.size = size;
        t.header(&h).data(&vec![0; 3 << 20]);
        assert_eq!(plain, t.finish());
    }

    #[test]
    fn cases_are_well_formed() {
        let t0 = Instant::now();
        let cases = hostile_cases();
        let elapsed = t0.elapsed();
        let table: Vec<(&str, Expect)> = cases.iter().map(|c| (c.name, c.expect)).collect();
        use Expect::{Accepted, Refused};
        assert_eq!(
            table,
            [
                ("dotdot", Refused("outside")),
                ("absolute", Refused("unexpected")),
                ("symlink-then-write", Refused("symlink")),
                ("symlink-dir-relative-escape", Refused("symlink")),
                ("hardlink-outside", Refused("hardlink")),
                ("hardlink-dotdot", Refused("hardlink")),
                ("hardlink-through-symlink", Refused("hardlink")),
                ("device-node", Accepted),
                ("huge-sparse-claim", Refused("sparse")),
                ("size-bomb", Refused("truncated")),
                ("zero-bomb-gz", Refused("limit")),
                ("not-a-tarball", Refused("format")),
                ("truncated", Refused("truncated")),
                ("no-metadata", Refused("metadata")),
                ("bad-metadata", Refused("metadata")),
                ("metadata-no-architecture", Refused("metadata")),
                ("metadata-symlink", Refused("metadata")),
                ("long-name-escape", Refused("outside")),
                ("pax-path-escape", Refused("outside")),
                ("many-entries", Refused("limit")),
                ("setuid-root-file", Accepted),
                ("fifo-and-dirs-ok", Accepted),
            ]
        );
        let mut total = 0;
        for case in &cases {
            eprintln!(
                "{:<28} {:>10} bytes  {}",
                case.name,
                case.bytes.len(),
                case.file_name()
            );
            total += case.bytes.len();
            if let Refused(word) = case.expect {
                assert!(
                    !word.is_empty() && word.bytes().all(|c| c.is_ascii_lowercase()),
                    "{}: {word:?} is not one lower-case word",
                    case.name
                );
            }
            assert!(!case.why.is_empty());
            assert_eq!(case.is_gzip(), case.name == "zero-bomb-gz", "{}", case.name);
            // Every case not about metadata (or format) opens with the valid metadata.yaml.
            let about_metadata = matches!(case.expect, Refused("metadata") | Refused("format"));
            if !about_metadata {
                let mut head = vec![0; BLOCK + METADATA.len()];
                if case.is_gzip() {
                    flate2::read::GzDecoder::new(case.bytes.as_slice())
                        .read_exact(&mut head)
                        .expect("gzip head");
                } else {
                    let n = head.len();
                    head.copy_from_slice(&case.bytes[..n]);
                }
                assert_eq!(&head[..14], b"metadata.yaml\0", "{}", case.name);
                assert_eq!(head[156], typeflag::FILE, "{}", case.name);
                assert_eq!(&head[BLOCK..], METADATA.as_bytes(), "{}", case.name);
            }
        }
        eprintln!(
            "generation {elapsed:?}, {} cases, {total} bytes",
            cases.len()
        );

        let junk = &cases[11];
        assert_eq!(junk.name, "not-a-tarball");
        assert!(!matches!(junk.bytes[0], 0x1f | 0xfd | b'B' | 0x28));
        assert_ne!(&junk.bytes[257..262], b"ustar");
        let bomb = &cases[10];
        assert!(
            bomb.bytes.len() < 4 << 20,
            "bomb is {} bytes",
            bomb.bytes.len()
        );
        assert!(cases[19].bytes.len() < 150 << 20);
    }

    #[test]
    fn gnu_tar_lists_the_corpus() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = write_all(dir.path()).expect("write corpus");
        let cases = hostile_cases();
        assert_eq!(paths.len(), cases.len());
        for (case, path) in cases.iter().zip(&paths) {
            assert_eq!(path, &dir.path().join(case.file_name()));
            assert_eq!(
                std::fs::metadata(path).expect("written").len(),
                case.bytes.len() as u64
            );
            let flag = if case.is_gzip() { "-tzvf" } else { "-tvf" };
            let (ok, out, err) = tar_list(flag, path);
            if matches!(case.name, "not-a-tarball" | "truncated" | "size-bomb") {
                assert!(!ok, "{}: GNU tar should fail to list it:\n{out}", case.name);
                continue;
            }
            assert!(ok, "{}: tar {flag} failed: {err}", case.name);
            for l in err.lines() {
                assert!(
                    l.starts_with("tar: Removing leading"),
                    "{}: unexpected tar message {l:?}",
                    case.name
                );
            }
            let has = |name: &str| line_of(&out, name);
            match case.name {
                "dotdot" => {
                    has("rootfs/../../../tmp/silo-escape");
                }
                "absolute" => {
                    has("/tmp/silo-escape-abs");
                }
                "symlink-then-write" => {
                    assert!(has("rootfs/link").starts_with('l'));
                    has("rootfs/link -> /tmp");
                    has("rootfs/link/silo-escape");
                }
                "symlink-dir-relative-escape" => {
                    has("rootfs/up -> ../../..");
                    has("rootfs/up/etc/silo-escape");
                }
                // GNU tar strips leading `/` and `../` from link targets even when listing.
                "hardlink-outside" => assert!(has("rootfs/shadow").starts_with('h')),
                "hardlink-dotdot" => assert!(has("rootfs/x").starts_with('h')),
                "hardlink-through-symlink" => {
                    has("rootfs/s -> /etc");
                    has("rootfs/h link to rootfs/s/passwd");
                }
                "device-node" => {
                    let l = has("rootfs/dev/sda");
                    assert!(l.starts_with("crw-rw----") && l.contains(" 8,0 "), "{l}");
                }
                "huge-sparse-claim" => assert!(has("rootfs/sparse").contains(" 1099511627776 ")),
                "zero-bomb-gz" => assert!(has("rootfs/zeros").contains(" 2147483648 ")),
                "metadata-symlink" => {
                    has("metadata.yaml -> /etc/passwd");
                }
                "long-name-escape" => {
                    let name = String::from_utf8(long_escape_name()).expect("ascii");
                    assert!(name.len() > 300);
                    has(&name);
                }
                "pax-path-escape" => {
                    has("../../tmp/silo-escape-pax");
                    assert!(!out.contains("rootfs/innocent"), "{out}");
                }
                "many-entries" => {
                    assert_eq!(out.lines().count(), MANY_ENTRIES + 3);
                    has("rootfs/many/199999");
                }
                "setuid-root-file" => {
                    assert!(has("rootfs/usr/bin/evil").starts_with("-rwsr-xr-x root/root"));
                }
                "fifo-and-dirs-ok" => {
                    assert!(has("rootfs/run/initctl").starts_with("prw-------"));
                    assert!(has("rootfs/tmp/").starts_with("drwxrwxrwt"));
                    has("rootfs/dangling -> does/not/exist");
                }
                _ => {}
            }
        }
    }

    #[test]
    fn benign_images_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unified = dir.path().join("benign-unified.tar");
        std::fs::write(&unified, benign_unified()).expect("write");
        let (meta, rootfs) = benign_split();
        let meta_path = dir.path().join("benign-split-meta.tar");
        let rootfs_path = dir.path().join("benign-split-rootfs.tar");
        std::fs::write(&meta_path, meta).expect("write");
        std::fs::write(&rootfs_path, rootfs).expect("write");

        let list = |p: &Path| {
            let (ok, out, err) = tar_list("-tvf", p);
            assert!(ok && err.is_empty(), "{}: {err}", p.display());
            out
        };
        let check_rootfs = |out: &str, p: &str| {
            let has = |name: &str| line_of(out, &format!("{p}{name}"));
            assert!(has("bin/busybox").starts_with("-rwxr-xr-x root/root"));
            has("bin/sh -> busybox");
            assert!(line_of(out, &format!("{p}bin/ls link to {p}bin/busybox")).starts_with('h'));
            has("usr/bin/env -> /bin/busybox");
            assert!(has("usr/bin/su").starts_with("-rwsr-xr-x root/root"));
            assert!(has("run/initctl").starts_with("prw-------"));
            assert!(has("tmp/").starts_with("drwxrwxrwt"));
            assert!(has("home/user/").starts_with("drwxr-x--- 1000/1000"));
            assert!(has("home/user/.profile").starts_with("-rw-r--r-- 1000/1000"));
            assert!(has("home/user/notes.txt").starts_with("-rw------- 1000/1000"));
        };

        let out = list(&unified);
        line_of(&out, "metadata.yaml");
        line_of(&out, "templates/hostname.tpl");
        check_rootfs(&out, "rootfs/");

        let out = list(&meta_path);
        line_of(&out, "metadata.yaml");
        line_of(&out, "templates/hostname.tpl");
        assert!(!out.contains("rootfs") && !out.contains("bin/"), "{out}");

        let out = list(&rootfs_path);
        check_rootfs(&out, "");
        assert!(
            !out.contains("rootfs/") && !out.contains("metadata.yaml"),
            "{out}"
        );
    }
}
