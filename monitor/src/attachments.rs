//! The descriptors that keep this process's eBPF programs attached: BPF links (LSM,
//! trampoline, raw tracepoint, cgroup and perf links) and perf events carrying a
//! program. A program stays attached while any process holds one of them, so the
//! watchdog's copies keep enforcement in the kernel alive after the monitor dies,
//! until the watchdog has killed or frozen the sessions.
//!
//! Found by their kind in `/proc/self/fd` rather than asked of aya: aya 0.14's link
//! types expose no descriptor (only `pin`, which needs a bpffs and leaves a pin behind
//! if both processes die). Copied with `pidfd_getfd`, which libc wraps only as a raw
//! syscall.

use std::os::fd::{FromRawFd, OwnedFd};

/// What `/proc/PID/fd/N` reads for a descriptor that holds an attachment.
const ATTACHMENT_KINDS: [&str; 2] = ["anon_inode:bpf_link", "anon_inode:[perf_event]"];

/// The numbers of this process's descriptors that hold an attachment (links are
/// closed only when the monitor ends, so they stay valid).
pub fn numbers() -> std::io::Result<Vec<i32>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // The directory's own descriptor, closed by now, reads as an error: skipped.
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        if ATTACHMENT_KINDS.iter().any(|kind| target.as_os_str() == *kind) {
            numbers.push(fd);
        }
    }
    Ok(numbers)
}

/// Copies of `numbers`, descriptors of process `pid` (`pidfd_getfd`, close-on-exec).
/// Each copy is checked to be an attachment: a number the process closed and reused
/// since is not taken.
pub fn copy_from(pid: u32, numbers: &[i32]) -> std::io::Result<Vec<OwnedFd>> {
    // SAFETY: plain syscalls; each returned descriptor is owned exactly once below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let mut copies = Vec::with_capacity(numbers.len());
    for &number in numbers {
        // SAFETY: as above.
        let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, std::os::fd::AsRawFd::as_raw_fd(&pidfd), number, 0) };
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        let copy = unsafe { OwnedFd::from_raw_fd(copy as i32) };
        let target = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&copy)))?;
        if ATTACHMENT_KINDS.iter().any(|kind| target.as_os_str() == *kind) {
            copies.push(copy);
        }
    }
    Ok(copies)
}

/// Closes `descriptors` all at once, each on a thread of its own. Closing the last
/// descriptor of a BPF LSM or trampoline link waits for the kernel to patch the hook
/// out (a grace period of RCU tasks): one after the other, the 34 LSM links took 5 s
/// of every monitor's exit on Debian's 6.1 under emulation; side by side they share
/// their grace periods.
pub fn close_in_parallel(descriptors: Vec<OwnedFd>) {
    std::thread::scope(|scope| {
        for descriptor in descriptors {
            // Without a thread to spare, the failed spawn drops the closure, and the
            // descriptor with it: closed here, one after the other.
            let _ = std::thread::Builder::new().spawn_scoped(scope, move || drop(descriptor));
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_processs_descriptors_are_copied_only_if_they_hold_programs() {
        // This process holds no link: a regular file's number is refused as one.
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let number = std::os::fd::AsRawFd::as_raw_fd(&file);
        assert!(numbers().unwrap().is_empty());
        assert!(copy_from(std::process::id(), &[number]).unwrap().is_empty());
    }
}
