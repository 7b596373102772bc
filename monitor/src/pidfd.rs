//! Processes by pidfd: a signal sent through one never reaches a later process that
//! reused the pid.

/// A pidfd for `pid`: signals through it can never reach a later process that reused
/// the pid.
pub fn open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; the returned fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a fresh fd we own.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` through a pidfd (fails harmlessly once the process is gone).
pub fn send(pidfd: &std::os::fd::OwnedFd, signal: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a valid pidfd.
    unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0)
    };
}
