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
        // cleanly on a descriptor closed since; links are dropped only when the
        // monitor ends, so none of them is.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(copy) = borrowed.as_fd().try_clone_to_owned() {
            copies.push(copy);
        }
    }
    Ok(copies)
}
