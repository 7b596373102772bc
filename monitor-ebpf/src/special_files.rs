//! Files whose path does not say what they give access to: the entries of processes
//! under /proc, and raw devices (see `monitor_common::policy::raw_device`).

use monitor_common::{
    event::{PATH_MAX_BYTES, flags},
    policy::raw_device,
    session::SessionMember,
};

use crate::{
    kernel::{config, current_tgid, opaque, read, session_of},
    path::{PathScratch, Resolved},
};

/// `PROC_SUPER_MAGIC` (include/uapi/linux/magic.h).
const PROC_SUPER_MAGIC: u64 = 0x9fa0;
/// The path ends at `END`, with its last component just before the final '/'.
const END: usize = PATH_MAX_BYTES;
/// A pid has at most 10 decimal digits.
const PID_DIGITS: u32 = 10;

/// What an entry under /proc is to the process opening it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProcEntry {
    /// Not in a process's directory (`/proc/meminfo`), or not /proc.
    NotOfAProcess,
    /// Of the process itself (`/proc/self/...`, `/proc/thread-self/...`): its own
    /// comm, oom_score_adj, fds and maps are ordinary work, whatever the profile says
    /// of /proc (only a deny entry keeps it out).
    Own,
    /// Of another process: decided by the profile like any file.
    Other,
    /// Another process's memory or environment (`mem`, `environ`), and that process is
    /// not in the session: what it holds is not the session's to read.
    OthersSecret,
}

/// Classifies a path the walk resolved. Pids are those of the /proc the walk went
/// through; a /proc of another pid namespace names other processes than the global
/// tgids compared here, which can only turn `Own` into `Other` (fails closed).
#[inline(always)]
pub fn proc_entry(member: &SessionMember, scratch: &PathScratch, resolved: &Resolved) -> ProcEntry {
    if resolved.magic != PROC_SUPER_MAGIC || resolved.components < 2 || resolved.flags & flags::PATH_TRUNCATED != 0 {
        return ProcEntry::NotOfAProcess;
    }
    let Some(pid) = leading_pid(scratch, resolved) else {
        return ProcEntry::NotOfAProcess;
    };
    if pid == current_tgid() {
        return ProcEntry::Own;
    }
    if !names_a_secret(scratch, resolved) {
        return ProcEntry::Other;
    }
    match session_of(pid) {
        Some(target) if target.session_id == member.session_id => ProcEntry::Other,
        _ => ProcEntry::OthersSecret,
    }
}

/// The number the path starts with (`/1234/...`), if its first component is one.
#[inline(always)]
fn leading_pid(scratch: &PathScratch, resolved: &Resolved) -> Option<u32> {
    let start = (opaque(resolved.start) & PATH_MAX_BYTES as u32) as usize;
    let mut pid: u64 = 0;
    let mut i = 1;
    while i <= PID_DIGITS as usize + 1 {
        // start <= 4095 and i <= 11: inside the walk buffer (4352 bytes).
        let c = scratch.buf[start + i];
        if c == b'/' {
            return (i > 1 && pid <= u32::MAX as u64).then_some(pid as u32);
        }
        if !c.is_ascii_digit() {
            return None;
        }
        pid = pid * 10 + (c - b'0') as u64;
        i += 1;
    }
    None
}

/// Whether the last component is `mem` or `environ`. The walk writes it just before the
/// path's final '/', so its bytes are at fixed places.
#[inline(always)]
fn names_a_secret(scratch: &PathScratch, resolved: &Resolved) -> bool {
    // Byte by byte: a slice comparison compiles to a `bcmp` call BPF does not have.
    let is = |name: &[u8]| {
        let at = END - 1 - name.len();
        resolved.leaf_len as usize == name.len() && name.iter().enumerate().all(|(i, b)| scratch.buf[at + i] == *b)
    };
    is(b"mem") || is(b"environ")
}

/// Whether `inode` (a `struct inode *`) is a raw device. A read that fails counts as
/// one (fails closed).
#[inline(always)]
pub fn is_raw_device(inode: u64) -> bool {
    let Ok(mode) = read::<u16>(inode, config!(offsets.inode_i_mode)) else {
        return true;
    };
    if mode & raw_device::S_IFMT != raw_device::S_IFCHR {
        return mode & raw_device::S_IFMT == raw_device::S_IFBLK;
    }
    match read::<u32>(inode, config!(offsets.inode_i_rdev)) {
        Ok(rdev) => raw_device::is_raw(mode, rdev),
        Err(_) => true,
    }
}
