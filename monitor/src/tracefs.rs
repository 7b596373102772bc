//! tracefs, where the per-syscall tracepoints have their ids. Where none is mounted (a
//! container, a host booted without systemd), the monitor mounts one for itself in a
//! mount namespace of its own: the host's mount table stays as it was, and the mount
//! ends with the process. Commands the monitor starts go back to the namespace it was
//! started in.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::OnceLock,
};

/// Where tracing tools look, in order (aya too).
const PLACES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The mount namespace the monitor was started in, once it left it.
static HOST_NAMESPACE: OnceLock<OwnedFd> = OnceLock::new();

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracefs {
    /// Mounted on the host, here.
    Found(&'static str),
    /// Mounted by the monitor, in its own mount namespace.
    MountedPrivately,
}

impl Tracefs {
    pub fn describe(&self) -> String {
        match self {
            Tracefs::Found(place) => (*place).to_owned(),
            Tracefs::MountedPrivately => format!("{} (mounted by agent-monitor for itself: none on the host)", PLACES[0]),
        }
    }
}

fn mounted_at(place: &str) -> bool {
    // An empty directory is where tracefs would be mounted, not tracefs.
    std::fs::read_dir(place).is_ok_and(|mut entries| entries.next().is_some())
}

/// Finds tracefs, or mounts one in a mount namespace of the monitor's own. Must run
/// while the process has one thread: a thread cannot leave its process's namespace.
pub fn ensure() -> io::Result<Tracefs> {
    if let Some(place) = PLACES.into_iter().find(|p| mounted_at(p)) {
        return Ok(Tracefs::Found(place));
    }
    if HOST_NAMESPACE.get().is_some() {
        return Err(io::Error::other("tracefs mounted privately, yet not found"));
    }
    let host = open_namespace()?;
    // SAFETY: unshare and mount with valid C strings; no memory is handed over.
    unsafe {
        check("unshare(CLONE_NEWNS)", libc::unshare(libc::CLONE_NEWNS))?;
        let _ = HOST_NAMESPACE.set(host);
        // Mounts made on the host later still show here; the one made here never shows there.
        check(
            "making the private mount namespace a follower of the host's",
            libc::mount(c"none".as_ptr(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_SLAVE, std::ptr::null()),
        )?;
        check(
            "mount -t tracefs tracefs /sys/kernel/tracing",
            libc::mount(
                c"tracefs".as_ptr(),
                c"/sys/kernel/tracing".as_ptr(),
                c"tracefs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ),
        )?;
    }
    Ok(Tracefs::MountedPrivately)
}

fn check(what: &str, result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    Err(io::Error::new(error.kind(), format!("{what}: {error}")))
}

/// `ensure`, for commands that load the programs: a failure is only logged, since the
/// programs' attach then names what is missing.
pub fn ensure_or_warn() -> Option<Tracefs> {
    match ensure() {
        Ok(found) => Some(found),
        Err(error) => {
            log::warn!("tracefs is not mounted, and mounting one for agent-monitor failed: {error}");
            None
        }
    }
}

fn open_namespace() -> io::Result<OwnedFd> {
    // SAFETY: open of a valid C string; the descriptor is owned from here.
    let fd = unsafe { libc::open(c"/proc/self/ns/mnt".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Between fork and exec: back into the mount namespace the monitor was started in,
/// in the same working directory (joining a mount namespace moves to its root).
/// Async-signal-safe: no allocation, only syscalls.
pub fn return_to_host_namespace() -> io::Result<()> {
    let Some(host) = HOST_NAMESPACE.get() else {
        return Ok(());
    };
    let mut cwd = [0u8; libc::PATH_MAX as usize];
    // SAFETY: getcwd writes at most `cwd.len()` bytes, NUL included; setns and chdir
    // take a valid descriptor and that NUL-terminated path.
    unsafe {
        if libc::getcwd(cwd.as_mut_ptr().cast(), cwd.len()).is_null()
            || libc::setns(host.as_raw_fd(), libc::CLONE_NEWNS) != 0
            || libc::chdir(cwd.as_ptr().cast()) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
