//! tracefs, where the per-syscall tracepoints have their ids. Where none is mounted (a
//! container, a host booted without systemd), the monitor mounts one for itself while
//! it attaches its programs, in a mount namespace of its own, and then returns to the
//! namespace it was started in: the host's mount table is never changed, and the
//! monitor goes on seeing the host's mounts as they come and go.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

/// Where tracing tools look, in order (aya too).
const PLACES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracefs {
    /// Mounted on the host, here.
    Found(&'static str),
    /// Mounted by the monitor for the attach, in a mount namespace of its own.
    MountedPrivately,
}

impl Tracefs {
    pub fn describe(&self) -> String {
        match self {
            Tracefs::Found(place) => (*place).to_owned(),
            Tracefs::MountedPrivately => {
                format!("{} (none on the host: agent-monitor mounts one for itself while it attaches)", PLACES[0])
            }
        }
    }
}

fn mounted_at(place: &str) -> bool {
    // An empty directory is where tracefs would be mounted, not tracefs.
    std::fs::read_dir(place).is_ok_and(|mut entries| entries.next().is_some())
}

/// Runs `attach` with tracefs where aya looks for it. Must be called while the process
/// has one thread: a thread alone cannot change its process's mount namespace.
pub fn with_tracefs<T>(attach: impl FnOnce() -> T) -> (io::Result<Tracefs>, T) {
    if let Some(place) = PLACES.into_iter().find(|p| mounted_at(p)) {
        return (Ok(Tracefs::Found(place)), attach());
    }
    match Private::enter() {
        Err(error) => (Err(error), attach()),
        Ok(private) => {
            let result = attach();
            private.leave();
            (Ok(Tracefs::MountedPrivately), result)
        }
    }
}

/// [`with_tracefs`], for commands that load the programs: a failure to mount is only
/// logged, since the programs' attach then names what is missing.
pub fn attach_with_tracefs<T>(attach: impl FnOnce() -> T) -> T {
    let (tracefs, result) = with_tracefs(attach);
    if let Err(error) = tracefs {
        log::warn!("tracefs is not mounted, and mounting one for agent-monitor failed: {error}");
    }
    result
}

/// The way back: the namespace and the directory the process was in.
struct Private {
    host: OwnedFd,
    cwd: OwnedFd,
}

impl Private {
    fn enter() -> io::Result<Private> {
        let private = Private {
            host: open(c"/proc/self/ns/mnt", libc::O_RDONLY)?,
            cwd: open(c".", libc::O_PATH | libc::O_DIRECTORY)?,
        };
        // SAFETY: unshare and mount with valid C strings; no memory is handed over.
        unsafe {
            check("unshare(CLONE_NEWNS)", libc::unshare(libc::CLONE_NEWNS))?;
            // Nothing mounted here may show on the host.
            let mounted = check(
                "making the new mount namespace a follower of the host's",
                libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ),
            )
            .and_then(|()| {
                check(
                    "mount -t tracefs tracefs /sys/kernel/tracing",
                    libc::mount(
                        c"tracefs".as_ptr(),
                        c"/sys/kernel/tracing".as_ptr(),
                        c"tracefs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        std::ptr::null(),
                    ),
                )
            });
            if let Err(error) = mounted {
                private.leave();
                return Err(error);
            }
        }
        Ok(private)
    }

    /// Back to the host's namespace (joining one moves to its root: then back to the
    /// directory). A thread that was just joined may not have let go of the process's
    /// file-system context yet (EINVAL): retried for up to a second.
    fn leave(self) {
        for _ in 0..1000 {
            // SAFETY: setns and fchdir on descriptors we own.
            let joined = unsafe { libc::setns(self.host.as_raw_fd(), libc::CLONE_NEWNS) };
            if joined == 0 {
                // SAFETY: as above.
                if unsafe { libc::fchdir(self.cwd.as_raw_fd()) } != 0 {
                    log::error!("returning to the working directory: {}", io::Error::last_os_error());
                }
                return;
            }
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINVAL) {
                log::error!(
                    "returning to the host's mount namespace: {error}; this process keeps a copy of its mounts"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        log::error!(
            "returning to the host's mount namespace: the process has other threads; it keeps a copy of its mounts"
        );
    }
}

fn check(what: &str, result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    Err(io::Error::new(error.kind(), format!("{what}: {error}")))
}

fn open(path: &std::ffi::CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: open of a valid C string; the descriptor is owned from here.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
