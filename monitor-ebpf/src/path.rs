//! Resolving an open file to its path inside its filesystem.
//!
//! The walk follows `d_parent` from the file's dentry to the root of its superblock
//! and does not stop at mount roots: a file reached through a bind mount
//! (`mount --bind /etc /tmp/x`, then `/tmp/x/shadow`) yields `/etc/shadow` relative to
//! the filesystem, plus the filesystem's device. Userspace turns (device, path) into
//! the canonical absolute path with the mount table (`monitor::mounts`), so neither a
//! bind mount, a chroot nor a mount namespace changes the name a file is reported by.
//!
//! The path is written root first and right-aligned: each name (read leaf first) is
//! put in front of what is already there, so one loop yields `/etc/hostname/`, the
//! form both events and rule keys use (see `monitor_common::event`).

use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_probe_read_kernel_buf,
        generated::{bpf_loop, bpf_probe_read_kernel_str},
    },
};
use monitor_common::{
    event::{NAME_MAX_BYTES, PATH_MAX_BYTES, PATH_MAX_COMPONENTS, flags},
    policy::NAME_KEY_BYTES,
};

use crate::{
    kernel::{ReadError, config, opaque, read, zero_by_words},
    scratch::{DentryHead, PathScratch, Walk},
};

/// Outcome of a walk: the path is `buf[start..start + len]`.
pub struct Resolved {
    pub start: u32,
    pub len: u32,
    /// Device of the filesystem (kernel dev_t).
    pub dev: u32,
    /// Header flags to add (`PATH_TRUNCATED`).
    pub flags: u16,
    /// Components written (0: the filesystem's root itself).
    pub components: u32,
    /// Length of the last component, the file's own name: it ends the path, just
    /// before its final '/'.
    pub leaf_len: u32,
    /// The filesystem's `s_magic`.
    pub magic: u64,
    /// The filesystem's `struct super_block *`.
    pub super_block: u64,
}

const END: u32 = PATH_MAX_BYTES as u32;
/// `SB_KERNMOUNT` (include/linux/fs.h): a filesystem mounted by the kernel for itself.
const SB_KERNMOUNT: u64 = 1 << 22;

/// `Walk::outcome`.
const WALKING: u32 = 0;
/// Reached the filesystem's root (or a kernel-internal filesystem's top).
const AT_ROOT: u32 = 1;
/// Stopped before the root: too deep, too long, or a disconnected dentry.
const CUT_SHORT: u32 = 2;
const FAILED: u32 = 3;

/// Walks `dentry` to its filesystem's root, writing the path into `scratch.buf`.
///
/// The steps run under `bpf_loop`, so the verifier checks one step instead of every
/// iteration of an unrolled loop (which made loading the LSM programs take seconds).
/// Invariant: `scratch` is the `path` of entry `index` of this CPU's key scratch, which
/// the caller holds (`scratch::claim_scratch`) and each step fetches itself (a step
/// receives only the index).
#[inline(always)]
pub fn resolve(dentry: u64, scratch: &mut PathScratch, mut index: u32) -> Result<Resolved, ReadError> {
    let leaf = &mut scratch.dentry;
    leaf.read(dentry, config!(spans.dentry))?;
    let name = config!(offsets.dentry_d_name);
    let head = DentryHead {
        parent: leaf.field::<u64>(config!(offsets.dentry_d_parent)),
        hash: leaf.field::<u32>(name),
        len: leaf.field::<u32>(name + 4),
        name: leaf.field::<u64>(name + 8),
    };
    let sb = leaf.field::<u64>(config!(offsets.dentry_d_sb));
    if sb == 0 {
        return Err(ReadError);
    }
    let fs = &mut scratch.super_block;
    fs.read(sb, config!(spans.super_block))?;
    let dev = fs.field::<u32>(config!(offsets.super_block_s_dev));
    let magic = fs.field::<u64>(config!(offsets.super_block_s_magic));
    // Kernel-internal filesystems (pipes, sockets) may have no root: 0 matches no dentry.
    let root = fs.field::<u64>(config!(offsets.super_block_s_root));
    let sb_flags = fs.field::<u64>(config!(offsets.super_block_s_flags));
    scratch.walk = Walk { dentry, head, sb_flags, root, pos: END, components: 0, outcome: WALKING, leaf_len: 0 };
    // SAFETY: the callback is a BPF subprogram taking (index, ctx); ctx points to the
    // entry's index, which outlives the call (the walk itself is in the entry, where
    // each step finds it).
    let looped = unsafe {
        bpf_loop(PATH_MAX_COMPONENTS + 1, walk_step as *mut c_void, core::ptr::addr_of_mut!(index).cast(), 0)
    };
    // The steps wrote the walk through their own reference to the scratch: read it
    // afresh, not from what the compiler may remember of the stores above.
    // SAFETY: a plain read of this CPU's map value.
    let walk = unsafe { core::ptr::read_volatile(&scratch.walk) };
    let path_flags = match walk.outcome {
        AT_ROOT => 0,
        CUT_SHORT => flags::PATH_TRUNCATED,
        // FAILED, or a loop that ended while still walking (it cannot: the last step
        // returns CUT_SHORT) or did not run.
        _ => return Err(ReadError),
    };
    if looped < 0 {
        return Err(ReadError);
    }
    // The leading '/' (for the filesystem's root, the whole path). A step leaves room
    // for it: walk.pos >= 1.
    if walk.pos == 0 {
        return Err(ReadError);
    }
    let pos = opaque(walk.pos - 1) & (PATH_MAX_BYTES as u32);
    scratch.buf[pos as usize] = b'/';
    Ok(Resolved {
        start: pos,
        len: END - pos,
        dev,
        flags: path_flags,
        components: walk.components,
        leaf_len: walk.leaf_len,
        magic,
        super_block: sb,
    })
}

/// One step of the walk: writes the name of `walk.dentry` in front of the path and moves
/// to its parent. Returns 1 to stop, 0 to go on.
#[inline(never)]
extern "C" fn walk_step(_step: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: `resolve` passes the index of the entry it holds.
    let index = unsafe { *(ctx as *const u32) };
    let Some(scratch) = crate::scratch::scratch_entry(index) else {
        return 1; // never (the caller holds this entry); a walk still WALKING fails
    };
    let scratch = &mut scratch.path;
    let outcome = step(scratch);
    scratch.walk.outcome = outcome;
    if outcome == WALKING { 0 } else { 1 }
}

#[inline(always)]
fn step(scratch: &mut PathScratch) -> u32 {
    let PathScratch { walk, name, buf, .. } = scratch;
    if walk.components >= PATH_MAX_COMPONENTS {
        return CUT_SHORT;
    }
    let dentry = walk.dentry;
    if dentry == walk.root {
        return AT_ROOT;
    }
    let head = if walk.head.parent != 0 {
        let head = walk.head;
        walk.head.parent = 0;
        head
    } else {
        match read::<DentryHead>(dentry, config!(offsets.dentry_d_parent)) {
            Ok(head) => head,
            Err(ReadError) => return FAILED,
        }
    };
    if head.parent == dentry {
        // The top of a tree that is not the filesystem's root: a disconnected dentry
        // (open_by_handle_at, some NFS mounts), whose path cannot be named and stays
        // flagged as cut short (fail closed). Files of kernel-internal mounts (pipes,
        // sockets, memfds) have no root and no name a rule could use; they keep the
        // empty path.
        return if walk.sb_flags & SB_KERNMOUNT != 0 { AT_ROOT } else { CUT_SHORT };
    }
    if head.parent == 0 || head.name == 0 || head.len == 0 || head.len >= NAME_MAX_BYTES as u32 {
        return FAILED;
    }
    // The name, read as a string of the length the dentry gave, straight into its
    // place in front of the path. A rename between reading the length and reading the
    // name can pair the length with another name. A shorter one ends the read early
    // (never past its allocation) and is read again on its own; of a longer one, the
    // first `len` bytes are kept: a wrong name, never bytes from outside a name.
    let mut len = head.len;
    let Some(mut at) = place(walk.pos, len) else {
        return CUT_SHORT;
    };
    let size = opaque(len + 1) & (NAME_MAX_BYTES as u32 * 2 - 1);
    if size as usize > NAME_MAX_BYTES {
        return FAILED;
    }
    // SAFETY: at + size <= buf.len(); the helper checks the kernel address.
    let n = unsafe { bpf_probe_read_kernel_str(buf.as_mut_ptr().add(at as usize).cast(), size, head.name as *const _) };
    if n != size as i64 {
        // SAFETY: bounded by the buffer; the helper checks the kernel address.
        let n = unsafe {
            bpf_probe_read_kernel_str(name.as_mut_ptr().cast(), NAME_MAX_BYTES as u32, head.name as *const _)
        };
        if n <= 1 {
            return FAILED;
        }
        len = (n - 1) as u32;
        let Some(moved) = place(walk.pos, len) else {
            return CUT_SHORT;
        };
        at = moved;
        let n = opaque(len) & (NAME_MAX_BYTES as u32 - 1);
        // SAFETY: at + n < buf.len(); the source is our own scratch.
        let copied = unsafe {
            bpf_probe_read_kernel_buf(
                name.as_ptr(),
                core::slice::from_raw_parts_mut(buf.as_mut_ptr().add(at as usize), n as usize),
            )
        };
        if copied.is_err() {
            return FAILED;
        }
    }
    let len = opaque(len) & (NAME_MAX_BYTES as u32 - 1);
    if walk.components == 0 {
        walk.leaf_len = len;
    }
    buf[((at + len) as usize) % buf.len()] = b'/';
    walk.pos = at;
    walk.components += 1;
    walk.dentry = head.parent;
    WALKING
}

/// Where a name of `len` bytes goes in front of the path that starts at `pos`, leaving
/// room for its '/' and the leading '/' (written at the end); None if it does not fit.
#[inline(always)]
fn place(pos: u32, len: u32) -> Option<u32> {
    let pos = opaque(pos) & (PATH_MAX_BYTES as u32);
    if len + 2 > pos {
        return None;
    }
    Some(opaque(pos - (len + 1)) & (PATH_MAX_BYTES as u32))
}

/// Writes the file's own name into `key`, zero-padded; a longer name keeps its first
/// `NAME_KEY_BYTES - 1` bytes. `key` is in a map value (see `zero_by_words`).
#[inline(always)]
pub fn copy_leaf(scratch: &PathScratch, resolved: &Resolved, key: &mut [u8; NAME_KEY_BYTES]) {
    zero_by_words(key);
    let len = opaque(resolved.leaf_len) & (NAME_MAX_BYTES as u32 - 1);
    // The leaf ends at END - 1, where the path's final '/' is.
    if len == 0 || len + 1 > END {
        return;
    }
    let at = opaque(END - 1 - len) & (PATH_MAX_BYTES as u32);
    let n = if len >= NAME_KEY_BYTES as u32 { NAME_KEY_BYTES as u32 - 1 } else { len };
    let n = opaque(n) & (NAME_KEY_BYTES as u32 - 1);
    // SAFETY: at + n <= END; n < key.len().
    let _ = unsafe {
        bpf_probe_read_kernel_buf(
            scratch.buf.as_ptr().add(at as usize),
            core::slice::from_raw_parts_mut(key.as_mut_ptr(), n as usize),
        )
    };
}

/// Copies the resolved path into a record's path buffer; returns the bytes copied.
#[inline(always)]
pub fn copy_path(scratch: &PathScratch, resolved: &Resolved, out: &mut [u8; PATH_MAX_BYTES + 1]) -> u32 {
    let start = opaque(resolved.start) & (PATH_MAX_BYTES as u32);
    let len = opaque(resolved.len) & (PATH_MAX_BYTES as u32);
    if start + len > END {
        return 0;
    }
    // SAFETY: start + len <= END <= buf.len(); len <= out.len().
    let copied = unsafe {
        bpf_probe_read_kernel_buf(
            scratch.buf.as_ptr().add(start as usize),
            core::slice::from_raw_parts_mut(out.as_mut_ptr(), len as usize),
        )
    };
    if copied.is_err() { 0 } else { len }
}
