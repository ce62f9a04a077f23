//! The cgroup2 device controller: a BPF program of type `CGROUP_DEVICE` attached to the
//! instance's group, allowing exactly the rules given and denying the rest. Built here as a
//! handful of instructions (no compiler, no loader library): compare the access's type,
//! numbers and access bits with each rule in turn.
//!
//! Attached with `BPF_F_ALLOW_MULTI`, so systemd inside the instance can attach its own
//! programs to its sub-groups (they can only narrow what this one allows). A change attaches
//! the new program first and then detaches the ones it replaces, so there is no moment without
//! one.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use silo_proto::error::{HelperError, HelperResult};

use crate::devcg::Rule;

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61;
const MOV_X: u8 = 0xbf;
const MOV_K: u8 = 0xb7;
const AND_K: u8 = 0x57;
const RSH_K: u8 = 0x77;
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// The program for `rules`.
fn program(rules: &[Rule]) -> Vec<Insn> {
    // r2 = type, r3 = access, r4 = major, r5 = minor (struct bpf_cgroup_dev_ctx).
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV_X, 3, 2, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let mut block: Vec<(u8, u8, u8, i32, bool)> = Vec::new();
        // (code, dst, src, imm, jumps to the next rule)
        block.push((
            JNE_K,
            2,
            0,
            if r.kind == 'b' { DEV_BLOCK } else { DEV_CHAR },
            true,
        ));
        let mut bits = 0;
        for c in r.access.chars() {
            bits |= match c {
                'm' => ACC_MKNOD,
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                _ => 0,
            };
        }
        if bits != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Every access asked must be among the rule's.
            block.push((MOV_X, 6, 3, 0, false));
            block.push((AND_K, 6, 0, !bits & 7, false));
            block.push((JNE_K, 6, 0, 0, true));
        }
        if let Some(m) = r.major {
            block.push((JNE_K, 4, 0, m as i32, true));
        }
        if let Some(m) = r.minor {
            block.push((JNE_K, 5, 0, m as i32, true));
        }
        block.push((MOV_K, 0, 0, 1, false));
        block.push((EXIT, 0, 0, 0, false));
        let n = block.len();
        for (i, (code, dst, src, imm, jumps)) in block.into_iter().enumerate() {
            // A jump skips the rest of this rule's block.
            let off = if jumps { (n - i - 1) as i16 } else { 0 };
            p.push(insn(code, dst, src, off, imm));
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr`, large enough for every command used here, zeroed.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn put_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn get_u32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        u32::from_ne_bytes(b)
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
    // SAFETY: bpf(2) with a zero-padded attr of the size given; pointers inside it point to
    // buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r)
}

fn err(op: &str, dir: &Path, e: std::io::Error) -> HelperError {
    HelperError::io(op, format!("device program of {}", dir.display()), e)
}

/// Loads the program for `rules` and makes it the group's device program.
pub fn attach(dir: &Path, rules: &[Rule]) -> HelperResult<()> {
    let insns = program(rules);
    let license = c"GPL";
    let load = |log: Option<&mut Vec<u8>>| {
        let mut a = Attr::new();
        a.put_u32(0, BPF_PROG_TYPE_CGROUP_DEVICE);
        a.put_u32(4, insns.len() as u32);
        a.put_u64(8, insns.as_ptr() as u64);
        a.put_u64(16, license.as_ptr() as u64);
        if let Some(log) = log {
            a.put_u32(24, 1); // log_level
            a.put_u32(28, log.len() as u32);
            a.put_u64(32, log.as_mut_ptr() as u64);
        }
        bpf(BPF_PROG_LOAD, &mut a)
    };
    // Loaded without a log (a verbose log of a good program can overflow any buffer, and the
    // kernel then refuses the load); on a refusal, loaded again only to say why.
    let prog = match load(None) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !in_initial_userns() => {
            // silo inside a container (security.nesting): only the host may load device
            // programs, and the outer instance's program already confines this whole subtree.
            tracing::info!(group = %dir.display(), "no device program inside a user namespace; the enclosing one applies");
            return Ok(());
        }
        r => r,
    };
    let prog = prog.map_err(|e| {
        let mut log = vec![0u8; 64 << 10];
        let _ = load(Some(&mut log));
        let msg = String::from_utf8_lossy(&log);
        tracing::warn!(verifier = %msg.trim_end_matches('\0'), "device program refused");
        err("load", dir, e)
    })?;
    // SAFETY: the kernel returned this new fd to us.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as RawFd) };
    let cg = std::fs::File::open(dir).map_err(|e| err("open", dir, e))?;
    let old = query(cg.as_fd().as_raw_fd());
    let mut a = Attr::new();
    a.put_u32(0, cg.as_raw_fd() as u32);
    a.put_u32(4, prog.as_raw_fd() as u32);
    a.put_u32(8, BPF_CGROUP_DEVICE);
    a.put_u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut a).map_err(|e| err("attach", dir, e))?;
    for id in old {
        let mut a = Attr::new();
        a.put_u32(0, id);
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut a) else {
            continue;
        };
        // SAFETY: the kernel returned this new fd to us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let mut a = Attr::new();
        a.put_u32(0, cg.as_raw_fd() as u32);
        a.put_u32(4, fd.as_raw_fd() as u32);
        a.put_u32(8, BPF_CGROUP_DEVICE);
        bpf(BPF_PROG_DETACH, &mut a).map_err(|e| err("detach", dir, e))?;
    }
    Ok(())
}

/// Whether this process is in the host's user namespace (which maps every id to itself).
fn in_initial_userns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}

/// The ids of the device programs attached to the group itself.
fn query(cg: RawFd) -> Vec<u32> {
    let mut ids = [0u32; 64];
    let mut a = Attr::new();
    a.put_u32(0, cg as u32);
    a.put_u32(4, BPF_CGROUP_DEVICE);
    a.put_u64(16, ids.as_mut_ptr() as u64);
    a.put_u32(24, ids.len() as u32);
    if bpf(BPF_PROG_QUERY, &mut a).is_err() {
        return Vec::new();
    }
    let n = (a.get_u32(24) as usize).min(ids.len());
    ids[..n].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_block_jumps_to_the_next() {
        let rules = [Rule::node(silo_proto::privileged::NodeKind::Char, 1, 3)];
        let p = program(&rules);
        // 6 loads, type/major/minor checks, r0 = 1, exit, then the final deny.
        assert_eq!(p.len(), 6 + 3 + 2 + 2);
        assert_eq!((p[6].code, p[6].off), (JNE_K, 4));
        assert_eq!((p[8].code, p[8].off), (JNE_K, 2));
        assert_eq!(p[9].imm, 1);
        assert_eq!(p.last().map(|i| i.code), Some(EXIT));
    }
}
