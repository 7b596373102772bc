//! Resolving a `struct path` to the components of its absolute path, the way `d_path`
//! does it: walk `d_parent` up to the root of each mount, then continue from the mount
//! point in the parent mount, until the root of the mount namespace.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel_str;
use monitor_common::event::{NAME_MAX_BYTES, PATH_MAX_BYTES, PATH_MAX_COMPONENTS, flags};

use crate::kernel::{ReadError, config, opaque, read_ptr};

/// Outcome of a walk: bytes written and header flags to add.
pub struct Resolved {
    pub len: u32,
    pub flags: u16,
}

/// Writes the components of the `struct path` at `path` into `buf`, leaf first, each
/// NUL-terminated. `buf` must hold `PATH_MAX_BYTES + NAME_MAX_BYTES` bytes: a component
/// starts below `PATH_MAX_BYTES` and is at most `NAME_MAX_BYTES` long.
#[inline(always)]
pub fn resolve(path: u64, buf: *mut u8) -> Result<Resolved, ReadError> {
    let mut dentry = read_ptr(path, config!(offsets.path_dentry))?;
    let vfsmount = read_ptr(path, config!(offsets.path_mnt))?;
    // container_of(vfsmount, struct mount, mnt)
    let mut mount = vfsmount - config!(offsets.mount_mnt) as u64;
    let mut len: u32 = 0;
    let mut steps: u32 = 0;
    while steps < PATH_MAX_COMPONENTS {
        steps += 1;
        let mnt_root = read_ptr(
            mount,
            config!(offsets.mount_mnt) + config!(offsets.vfsmount_mnt_root),
        )?;
        let parent = read_ptr(dentry, config!(offsets.dentry_d_parent))?;
        if dentry == mnt_root || dentry == parent {
            let mount_parent = read_ptr(mount, config!(offsets.mount_mnt_parent))?;
            if mount_parent == mount {
                return Ok(Resolved { len, flags: 0 });
            }
            dentry = read_ptr(mount, config!(offsets.mount_mnt_mountpoint))?;
            mount = mount_parent;
            continue;
        }
        if len >= PATH_MAX_BYTES as u32 {
            return Ok(Resolved { len, flags: flags::PATH_TRUNCATED });
        }
        let name = read_ptr(
            dentry,
            config!(offsets.dentry_d_name) + config!(offsets.qstr_name),
        )?;
        // Masking keeps the write provably inside the buffer (len < PATH_MAX_BYTES here).
        let at = opaque(len) & (PATH_MAX_BYTES as u32 - 1);
        // SAFETY: at + NAME_MAX_BYTES <= buffer size; the helper checks `name`.
        let n = unsafe {
            bpf_probe_read_kernel_str(
                buf.add(at as usize).cast(),
                NAME_MAX_BYTES as u32,
                name as *const _,
            )
        };
        if n <= 0 {
            return Err(ReadError);
        }
        len = at + n as u32;
        dentry = parent;
    }
    Ok(Resolved { len, flags: flags::PATH_TRUNCATED })
}
