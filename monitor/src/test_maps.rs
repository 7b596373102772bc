//! BPF maps made by hand for unit tests of the code that reads and writes the kernel's.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> libc::c_long {
    // SAFETY: attr is a zero-padded union bpf_attr of 128 bytes.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of_val(attr)) }
}

/// A new map, or None where this user may not make one (root must be able to).
pub fn create(map_type: u32, key_size: u32, value_size: u32, max_entries: u32, flags: u32) -> Option<OwnedFd> {
    let mut attr = [0u64; 16];
    // map_type, key_size; value_size, max_entries; map_flags
    attr[0] = map_type as u64 | ((key_size as u64) << 32);
    attr[1] = value_size as u64 | ((max_entries as u64) << 32);
    attr[2] = flags as u64;
    let fd = bpf(BPF_MAP_CREATE, &mut attr);
    if fd < 0 {
        // SAFETY: geteuid has no preconditions.
        assert_ne!(unsafe { libc::geteuid() }, 0, "root could not create the map: {}", io::Error::last_os_error());
        return None;
    }
    // SAFETY: a new descriptor, owned here.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The value at `key`, as the kernel reads it, or None if there is none.
pub fn lookup<K, V: Default>(map: &OwnedFd, key: &K) -> Option<V> {
    let mut value = V::default();
    let mut attr = [0u64; 16];
    attr[0] = map.as_fd().as_raw_fd() as u64;
    attr[1] = key as *const K as u64;
    attr[2] = &mut value as *mut V as u64;
    (bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) == 0).then_some(value)
}
