//! The descriptors that keep this process's eBPF programs attached: BPF links (LSM,
//! trampoline, raw tracepoint, cgroup and perf links) and perf events carrying a
//! program. A program stays attached while any process holds one of them, so handing
//! copies to the watchdog keeps enforcement in the kernel alive after the monitor dies,
//! until the watchdog has killed or frozen the sessions.
//!
//! Found by their kind in `/proc/self/fd` rather than asked of aya: aya 0.14's link
//! types expose no descriptor (only `pin`, which needs a bpffs and leaves a pin behind
//! if both processes die).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// What `/proc/self/fd/N` reads for a descriptor that holds an attachment.
const ATTACHMENT_KINDS: [&str; 2] = ["anon_inode:bpf_link", "anon_inode:[perf_event]"];

/// Close-on-exec copies of every descriptor of this process that holds an attachment.
pub fn duplicate_all() -> std::io::Result<Vec<OwnedFd>> {
    let mut copies = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // The directory's own descriptor, closed by now, reads as an error: skipped.
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        if !ATTACHMENT_KINDS.iter().any(|kind| target.as_os_str() == *kind) {
            continue;
        }
        // SAFETY: only borrowed for the duplication (F_DUPFD_CLOEXEC), which fails
        // cleanly (EBADF) on a descriptor closed since; links are dropped only when the
        // monitor ends, so none of them is.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match borrowed.as_fd().try_clone_to_owned() {
            Ok(copy) => copies.push(copy),
            Err(error) if error.raw_os_error() == Some(libc::EBADF) => {}
            // Out of descriptors (EMFILE): a partial set would be a silent gap.
            Err(error) => return Err(error),
        }
    }
    Ok(copies)
}

/// Raises this process's soft limit on open descriptors to its hard limit: every
/// program's link is a descriptor, held twice (monitor and watchdog). Inherited by the
/// watchdog.
pub fn raise_descriptor_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid out-pointer, then the same struct back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
