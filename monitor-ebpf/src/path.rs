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

use aya_ebpf::helpers::{bpf_probe_read_kernel_buf, generated::bpf_probe_read_kernel_str};
use monitor_common::{
    event::{NAME_MAX_BYTES, PATH_MAX_BYTES, PATH_MAX_COMPONENTS, flags},
    policy::NAME_KEY_BYTES,
};

use crate::kernel::{ReadError, config, opaque, read, read_ptr};

/// Per-CPU space for a walk.
#[repr(C)]
pub struct PathScratch {
    /// The current component, as read.
    pub name: [u8; NAME_MAX_BYTES],
    /// The leaf's name, zero-padded (a `NameKey` name).
    pub leaf: [u8; NAME_KEY_BYTES],

    /// The path ends at `PATH_MAX_BYTES`; a component of up to `NAME_MAX_BYTES` is
    /// written below an offset under `PATH_MAX_BYTES`, so every write is in bounds.
    pub buf: [u8; PATH_MAX_BYTES + 1 + NAME_MAX_BYTES],
}

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
}

const END: u32 = PATH_MAX_BYTES as u32;

/// Walks `dentry` to its filesystem's root, writing the path into `scratch.buf`.
#[inline(always)]
pub fn resolve(mut dentry: u64, scratch: &mut PathScratch) -> Result<Resolved, ReadError> {
    let sb = read_ptr(dentry, config!(offsets.dentry_d_sb))?;
    let dev = read::<u32>(sb, config!(offsets.super_block_s_dev))?;
    scratch.leaf = [0; NAME_KEY_BYTES];
    // `pos` is where the path written so far starts; it ends with '/' at END - 1.
    let mut pos: u32 = END;
    let mut components: u32 = 0;
    let mut path_flags = flags::PATH_TRUNCATED;
    while components < PATH_MAX_COMPONENTS {
        let parent = read_ptr(dentry, config!(offsets.dentry_d_parent))?;
        if parent == dentry {
            path_flags = 0;
            break;
        }
        let name = read_ptr(dentry, config!(offsets.dentry_d_name) + config!(offsets.qstr_name))?;
        // SAFETY: bounded by the buffer; the helper checks `name`.
        let n = unsafe {
            bpf_probe_read_kernel_str(scratch.name.as_mut_ptr().cast(), NAME_MAX_BYTES as u32, name as *const _)
        };
        if n <= 1 {
            return Err(ReadError);
        }
        let len = (n - 1) as u32; // without the NUL
        if components == 0 {
            // SAFETY: as above, into the zeroed leaf key.
            unsafe {
                bpf_probe_read_kernel_str(scratch.leaf.as_mut_ptr().cast(), NAME_KEY_BYTES as u32, name as *const _)
            };
        }
        // Room for "/" + name + "/" below pos (the leading "/" comes at the end).
        if len + 2 > pos {
            break;
        }
        pos -= len + 1;
        let at = opaque(pos) & (PATH_MAX_BYTES as u32);
        let n = opaque(len) & (NAME_MAX_BYTES as u32 - 1);
        // SAFETY: at + n < buf.len(); the source is our own scratch.
        let copied = unsafe {
            bpf_probe_read_kernel_buf(
                scratch.name.as_ptr(),
                core::slice::from_raw_parts_mut(scratch.buf.as_mut_ptr().add(at as usize), n as usize),
            )
        };
        if copied.is_err() {
            return Err(ReadError);
        }
        scratch.buf[((at + n) as usize) % scratch.buf.len()] = b'/';
        components += 1;
        dentry = parent;
    }
    if pos == END {
        // The filesystem's root: "/".
        pos -= 1;
        scratch.buf[pos as usize] = b'/';
    } else {
        pos -= 1;
        scratch.buf[(opaque(pos) & (PATH_MAX_BYTES as u32)) as usize] = b'/';
    }
    Ok(Resolved { start: pos, len: END - pos, dev, flags: path_flags, components })
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
        bpf_probe_read_kernel_buf(scratch.buf.as_ptr().add(start as usize), core::slice::from_raw_parts_mut(out.as_mut_ptr(), len as usize))
    };
    if copied.is_err() { 0 } else { len }
}
