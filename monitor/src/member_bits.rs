//! The kernel's `MEMBER_BITS` map, mapped into this process: one bit per tgid that may
//! be in a session, the filter every hook reads before `SESSIONS` (see
//! `monitor_common::maps::MEMBER_BITS`). Userspace sets a tgid's bit before it writes
//! the tgid's `SESSIONS` entry; the kernel clears it when the process exits.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, RawFd},
    sync::atomic::{AtomicU64, Ordering},
};

use monitor_common::maps::MEMBER_BITS_WORDS;

/// The map behind a descriptor the caller keeps open. Each change maps the one page that
/// holds the tgid's word, for the time of one atomic operation: the daemon keeps no
/// mapping (the kernel maps a BPF array's pages whole, which would count in its RSS).
#[derive(Clone, Copy)]
pub struct MemberBits {
    fd: RawFd,
    page: usize,
}

impl MemberBits {
    pub fn new(fd: BorrowedFd<'_>) -> MemberBits {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        MemberBits { fd: fd.as_raw_fd(), page }
    }

    /// Sets `tgid`'s bit. No allocation and no lock: safe between fork and exec. A tgid
    /// beyond the bitmap has no bit; the kernel looks such tgids up every time.
    pub fn mark(&self, tgid: u32) -> io::Result<()> {
        self.with_word(tgid, |word| {
            word.fetch_or(bit(tgid), Ordering::SeqCst);
        })
    }

    #[cfg(test)]
    pub fn is_marked(&self, tgid: u32) -> io::Result<bool> {
        let mut marked = false;
        self.with_word(tgid, |word| marked = word.load(Ordering::SeqCst) & bit(tgid) != 0)?;
        Ok(marked)
    }

    fn with_word(&self, tgid: u32, f: impl FnOnce(&AtomicU64)) -> io::Result<()> {
        let offset = (tgid / 64) as usize * size_of::<u64>();
        if offset >= MEMBER_BITS_WORDS as usize * size_of::<u64>() {
            return Ok(());
        }
        let page_start = offset / self.page * self.page;
        // SAFETY: a new shared mapping of one page of the map (BPF_F_MMAPABLE); the
        // kernel refuses an offset beyond the map.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd,
                page_start as libc::off_t,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: an aligned u64 inside the page just mapped; only atomic operations
        // touch it, here and in the kernel.
        f(unsafe { &*page.cast::<u8>().add(offset - page_start).cast::<AtomicU64>() });
        // SAFETY: the mapping made above, no longer referenced.
        unsafe { libc::munmap(page, self.page) };
        Ok(())
    }
}

fn bit(tgid: u32) -> u64 {
    1 << (tgid % 64)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, OwnedFd};

    use super::*;
    use crate::test_maps::{self, BPF_MAP_TYPE_ARRAY};

    /// A map like the kernel side's `MEMBER_BITS`.
    fn member_bits_map() -> Option<OwnedFd> {
        test_maps::create(BPF_MAP_TYPE_ARRAY, 4, 8, MEMBER_BITS_WORDS, monitor_common::maps::BPF_F_MMAPABLE)
    }

    fn kernel_word(map: &OwnedFd, index: u32) -> u64 {
        test_maps::lookup(map, &index).expect("an array has every index")
    }

    #[test]
    fn bits_set_here_are_the_bits_the_kernel_reads() {
        let Some(map) = member_bits_map() else { return };
        let bits = MemberBits::new(map.as_fd());
        for tgid in [0, 1, 63, 64, 4242, (1 << 22) - 1] {
            assert!(!bits.is_marked(tgid).unwrap());
            bits.mark(tgid).unwrap();
            assert!(bits.is_marked(tgid).unwrap());
        }
        assert_eq!(kernel_word(&map, 0), 1 | 2 | 1 << 63);
        assert_eq!(kernel_word(&map, 1), 1);
        assert_eq!(kernel_word(&map, 4242 / 64), 1 << (4242 % 64));
        assert_eq!(kernel_word(&map, MEMBER_BITS_WORDS - 1), 1 << 63);
        // Beyond the bitmap: no bit, and nothing written (the kernel looks such tgids up).
        bits.mark(1 << 22).unwrap();
        assert!(!bits.is_marked(1 << 22).unwrap());
    }

    #[test]
    fn marks_from_many_threads_are_all_kept() {
        let Some(map) = member_bits_map() else { return };
        let bits = MemberBits::new(map.as_fd());
        // 8 threads set interleaved bits of the same 4 words.
        let threads: Vec<_> = (0..8u32)
            .map(|t| std::thread::spawn(move || (0..32u32).for_each(|i| bits.mark(i * 8 + t).unwrap())))
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!((0..4).all(|w| kernel_word(&map, w) == u64::MAX));
    }
}
