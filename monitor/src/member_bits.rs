//! The kernel's `MEMBER_BITS` map, mapped into this process: one bit per tgid that may
//! be in a session, the filter every hook reads before `SESSIONS` (see
//! `monitor_common::maps::MEMBER_BITS`). Userspace sets a tgid's bit before it writes
//! the tgid's `SESSIONS` entry; the kernel clears it when the process exits.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use monitor_common::maps::MEMBER_BITS_WORDS;

const BYTES: usize = MEMBER_BITS_WORDS as usize * size_of::<u64>();

pub struct MemberBits {
    words: NonNull<AtomicU64>,
}

// SAFETY: the mapping is shared memory changed only through atomic operations.
unsafe impl Send for MemberBits {}
// SAFETY: as above.
unsafe impl Sync for MemberBits {}

impl MemberBits {
    /// Maps the map behind `fd` (created with `BPF_F_MMAPABLE`) read-write and shared.
    pub fn map(fd: BorrowedFd<'_>) -> io::Result<MemberBits> {
        // SAFETY: a new shared mapping of the map's pages; the kernel checks the size.
        let address = unsafe {
            libc::mmap(std::ptr::null_mut(), BYTES, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let words = NonNull::new(address.cast::<AtomicU64>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(MemberBits { words })
    }

    /// Sets `tgid`'s bit. No allocation and no lock: safe between fork and exec. A tgid
    /// beyond the bitmap has no bit; the kernel looks such tgids up every time.
    pub fn mark(&self, tgid: u32) {
        if let Some(word) = self.word(tgid) {
            word.fetch_or(1 << (tgid % 64), Ordering::SeqCst);
        }
    }

    pub fn is_marked(&self, tgid: u32) -> bool {
        self.word(tgid).is_some_and(|word| word.load(Ordering::SeqCst) & (1 << (tgid % 64)) != 0)
    }

    fn word(&self, tgid: u32) -> Option<&AtomicU64> {
        let index = (tgid / 64) as usize;
        // SAFETY: index is inside the mapping, which lives as long as self.
        (index < MEMBER_BITS_WORDS as usize).then(|| unsafe { &*self.words.as_ptr().add(index) })
    }
}

impl Drop for MemberBits {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, no longer referenced.
        unsafe { libc::munmap(self.words.as_ptr().cast(), BYTES) };
    }
}

#[cfg(test)]
mod tests {
    use std::{
        os::fd::{AsFd, FromRawFd, OwnedFd},
        sync::Arc,
    };

    use super::*;

    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;

    fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> libc::c_long {
        // SAFETY: attr is a zero-padded union bpf_attr of 128 bytes.
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of_val(attr)) }
    }

    /// A map like the kernel side's `MEMBER_BITS`, or None where this user may not make one.
    fn member_bits_map() -> Option<OwnedFd> {
        let mut attr = [0u64; 16];
        // map_type, key_size; value_size, max_entries; map_flags
        attr[0] = BPF_MAP_TYPE_ARRAY as u64 | (4u64 << 32);
        attr[1] = 8 | ((MEMBER_BITS_WORDS as u64) << 32);
        attr[2] = monitor_common::maps::BPF_F_MMAPABLE as u64;
        let fd = bpf(BPF_MAP_CREATE, &mut attr);
        if fd < 0 {
            // SAFETY: geteuid has no preconditions.
            assert_ne!(unsafe { libc::geteuid() }, 0, "root could not create the map: {}", io::Error::last_os_error());
            return None;
        }
        // SAFETY: a new descriptor, owned here.
        Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    fn kernel_word(map: &OwnedFd, index: u32) -> u64 {
        let mut value = 0u64;
        let mut attr = [0u64; 16];
        attr[0] = map.as_fd().as_raw_fd() as u64;
        attr[1] = &index as *const u32 as u64;
        attr[2] = &mut value as *mut u64 as u64;
        assert_eq!(bpf(BPF_MAP_LOOKUP_ELEM, &mut attr), 0, "{}", io::Error::last_os_error());
        value
    }

    #[test]
    fn bits_set_here_are_the_bits_the_kernel_reads() {
        let Some(map) = member_bits_map() else { return };
        let bits = MemberBits::map(map.as_fd()).unwrap();
        for tgid in [0, 1, 63, 64, 4242, (1 << 22) - 1] {
            assert!(!bits.is_marked(tgid));
            bits.mark(tgid);
            assert!(bits.is_marked(tgid));
        }
        assert_eq!(kernel_word(&map, 0), 1 | 2 | 1 << 63);
        assert_eq!(kernel_word(&map, 1), 1);
        assert_eq!(kernel_word(&map, 4242 / 64), 1 << (4242 % 64));
        assert_eq!(kernel_word(&map, MEMBER_BITS_WORDS - 1), 1 << 63);
        // Beyond the bitmap: no bit, and nothing written (the kernel looks such tgids up).
        bits.mark(1 << 22);
        assert!(!bits.is_marked(1 << 22));
    }

    #[test]
    fn marks_from_many_threads_are_all_kept() {
        let Some(map) = member_bits_map() else { return };
        let bits = Arc::new(MemberBits::map(map.as_fd()).unwrap());
        // 8 threads set interleaved bits of the same 4 words.
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let bits = bits.clone();
                std::thread::spawn(move || (0..32u32).for_each(|i| bits.mark(i * 8 + t)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!((0..4).all(|w| kernel_word(&map, w) == u64::MAX));
    }
}
