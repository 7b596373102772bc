//! Resolving an open file to its path inside its filesystem.
//!
//! The walk follows `d_parent` from the file's dentry to the root of its superblock
//! and does not stop at mount roots: a file reached through a bind mount
//! (`mount --bind /etc /tmp/x`, then `/tmp/x/shadow`) yields `/etc/shadow` relative to
//! the filesystem, plus the filesystem's device. Userspace turns (device, path) into
//! the canonical absolute path with the mount table (`monitor::mounts`), so neither a
//! bind mount, a chroot nor a mount namespace changes the name a file is reported by.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel_str;
use monitor_common::event::{NAME_MAX_BYTES, PATH_MAX_BYTES, PATH_MAX_COMPONENTS, flags};

use crate::kernel::{ReadError, config, opaque, read, read_ptr};

/// Outcome of a walk: bytes written, the filesystem's device, header flags to add.
pub struct Resolved {
    pub len: u32,
    pub dev: u32,
    pub flags: u16,
}

/// Writes the components of `dentry`'s path within its filesystem into `buf`, leaf
/// first, each NUL-terminated. `buf` must hold `PATH_MAX_BYTES + NAME_MAX_BYTES`
/// bytes: a component starts below `PATH_MAX_BYTES` and is at most `NAME_MAX_BYTES`.
#[inline(always)]
pub fn resolve(mut dentry: u64, buf: *mut u8) -> Result<Resolved, ReadError> {
    let sb = read_ptr(dentry, config!(offsets.dentry_d_sb))?;
    let dev = read::<u32>(sb, config!(offsets.super_block_s_dev))?;
    let mut len: u32 = 0;
    let mut steps: u32 = 0;
    while steps < PATH_MAX_COMPONENTS {
        steps += 1;
        let parent = read_ptr(dentry, config!(offsets.dentry_d_parent))?;
        if parent == dentry {
            return Ok(Resolved { len, dev, flags: 0 });
        }
        if len >= PATH_MAX_BYTES as u32 {
            break;
        }
        let name = read_ptr(dentry, config!(offsets.dentry_d_name) + config!(offsets.qstr_name))?;
        // Masking keeps the write provably inside the buffer (len < PATH_MAX_BYTES here).
        let at = opaque(len) & (PATH_MAX_BYTES as u32 - 1);
        // SAFETY: at + NAME_MAX_BYTES <= buffer size; the helper checks `name`.
        let n = unsafe {
            bpf_probe_read_kernel_str(buf.add(at as usize).cast(), NAME_MAX_BYTES as u32, name as *const _)
        };
        if n <= 0 {
            return Err(ReadError);
        }
        len = at + n as u32;
        dentry = parent;
    }
    Ok(Resolved { len, dev, flags: flags::PATH_TRUNCATED })
}
