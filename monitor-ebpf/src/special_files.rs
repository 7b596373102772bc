//! Files whose path does not say what they give access to: the entries of processes
//! under /proc, and raw devices (see `monitor_common::policy::raw_device`).

use monitor_common::{
    event::{PATH_MAX_BYTES, flags},
    policy::{allow, raw_device},
    session::SessionMember,
};

use crate::{
    kernel::{config, current_tgid, opaque, read, session_of},
    path::Resolved,
    scratch::PathScratch,
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
    /// Of the process itself (`/proc/self/...`, `/proc/thread-self/...`): reading its
    /// own entries (status, maps, environ) and naming its threads or adjusting its OOM
    /// score are ordinary work, whatever the profile says of /proc (see
    /// [`own_entry_allows`]; a deny entry still keeps it out).
    Own,
    /// Of another process: decided by the profile like any file.
    Other,
    /// Another process's memory or environment (`mem`, `environ`), and that process is
    /// not in the session: what it holds is not the session's to read.
    OthersSecret,
}

/// Classifies a path the walk resolved. The pids of a /proc are those of its pid
/// namespace: only in the initial one are they the tgids the programs see. In a /proc of
/// another namespace no entry is taken for the process's own, and every `mem` and
/// `environ` is another's secret (fails closed: its numbers cannot be told apart).
#[inline(always)]
pub fn proc_entry(member: &SessionMember, scratch: &PathScratch, resolved: &Resolved) -> ProcEntry {
    if resolved.magic != PROC_SUPER_MAGIC || resolved.components < 2 || resolved.flags & flags::PATH_TRUNCATED != 0 {
        return ProcEntry::NotOfAProcess;
    }
    let Some((pid, _)) = leading_pid(scratch, resolved) else {
        return ProcEntry::NotOfAProcess;
    };
    if !of_initial_pid_namespace(resolved.super_block) {
        return if names_a_secret(scratch, resolved) { ProcEntry::OthersSecret } else { ProcEntry::Other };
    }
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

/// Whether the /proc whose `struct super_block *` this is shows the initial pid
/// namespace (a read that fails says no).
#[inline(always)]
fn of_initial_pid_namespace(super_block: u64) -> bool {
    let level = read::<u64>(super_block, config!(offsets.super_block_s_fs_info))
        .and_then(|info| read::<u64>(info, config!(offsets.proc_fs_info_pid_ns)))
        .and_then(|ns| read::<u32>(ns, config!(offsets.pid_namespace_level)));
    matches!(level, Ok(0))
}

/// What a process's own entry may be opened for beyond what the profile grants: read
/// anything of its own but the network namespace's tables under `net/` (the host's,
/// shared) and what is inside a thread's subdirectories; write only its threads' names, its core dump
/// filter and its timer slack (not its OOM score: a root agent at -1000 would make the
/// OOM killer take others, the monitor included).
#[inline(always)]
pub fn own_entry_allows(scratch: &PathScratch, resolved: &Resolved, requested: u32) -> bool {
    let Some((_, digits)) = leading_pid(scratch, resolved) else {
        return false;
    };
    let start = (opaque(resolved.start) & PATH_MAX_BYTES as u32) as usize;
    // `/PID/net/...`: start + digits + 2 <= 4095 + 12, inside the walk buffer.
    let second = start + (digits & 15) as usize + 2;
    if is_at(scratch, second, b"net/") {
        return false;
    }
    // `/PID/task/TID/X/...`: inside a thread's subdirectories (its `net/` is the same
    // tables; `fd/`, `ns/`, `attr/` are no thread's tuning either). Its own files
    // (`/PID/task/TID/comm`) have four components.
    if is_at(scratch, second, b"task/") && resolved.components > 4 {
        return false;
    }
    if requested & allow::WRITE == 0 {
        return true;
    }
    leaf_is(scratch, resolved, b"comm")
        || leaf_is(scratch, resolved, b"coredump_filter")
        || leaf_is(scratch, resolved, b"timerslack_ns")
}

/// The number the path starts with (`/1234/...`) and its count of digits, if its first
/// component is one.
#[inline(always)]
fn leading_pid(scratch: &PathScratch, resolved: &Resolved) -> Option<(u32, u32)> {
    let start = (opaque(resolved.start) & PATH_MAX_BYTES as u32) as usize;
    let mut pid: u64 = 0;
    let mut i = 1;
    while i <= PID_DIGITS as usize + 1 {
        // start <= 4095 and i <= 11: inside the walk buffer (4352 bytes).
        let c = scratch.buf[start + i];
        if c == b'/' {
            return (i > 1 && pid <= u32::MAX as u64).then_some((pid as u32, i as u32 - 1));
        }
        if !c.is_ascii_digit() {
            return None;
        }
        pid = pid * 10 + (c - b'0') as u64;
        i += 1;
    }
    None
}

/// Whether the walk buffer holds `text` at `at` (`at` below 4095 + 30: inside it).
#[inline(always)]
fn is_at(scratch: &PathScratch, at: usize, text: &[u8]) -> bool {
    // Byte by byte: a slice comparison compiles to a `bcmp` call BPF does not have.
    text.iter().enumerate().all(|(i, b)| scratch.buf[at + i] == *b)
}

/// Whether the last component is `mem` or `environ`.
#[inline(always)]
fn names_a_secret(scratch: &PathScratch, resolved: &Resolved) -> bool {
    leaf_is(scratch, resolved, b"mem") || leaf_is(scratch, resolved, b"environ")
}

/// Whether the last component is `name`. The walk writes it just before the path's
/// final '/', so its bytes are at fixed places.
#[inline(always)]
fn leaf_is(scratch: &PathScratch, resolved: &Resolved, name: &[u8]) -> bool {
    let at = END - 1 - name.len();
    // Byte by byte: a slice comparison compiles to a `bcmp` call BPF does not have.
    resolved.leaf_len as usize == name.len() && name.iter().enumerate().all(|(i, b)| scratch.buf[at + i] == *b)
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
        Ok(rdev) => raw_device::is_raw(mode, rdev, &config!(raw_majors)),
        Err(_) => true,
    }
}
