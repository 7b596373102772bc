//! Each session gets its own cgroup v2, so that the whole session can be killed at
//! once (`cgroup.kill`, Linux >= 5.14) however its processes forked, detached or
//! renamed themselves.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// Directory under the cgroup2 mount that holds agent-monitor's session cgroups.
const PARENT: &str = "agent-monitor";

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` on most hosts, `/sys/fs/cgroup/unified`
/// on hybrid ones).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(target))
    })
}

/// Removes the `agent-monitor` parent if no session cgroup is left in it: the daemon at
/// stop (its sessions keep the parent while it runs; under systemd, `ExecStartPre=`
/// makes it again at the next start).
pub fn remove_parent_if_empty() {
    if let Some(mount) = cgroup2_mount() {
        let _ = std::fs::remove_dir(mount.join(PARENT));
    }
}

pub struct SessionCgroup {
    path: PathBuf,
    /// Leave the `agent-monitor` parent when this cgroup goes (the daemon: under
    /// systemd it cannot make the parent again, see packaging/agent-monitor.service).
    keep_parent: bool,
    /// `cgroup.procs` of the session, ready for use between fork and exec.
    procs: CString,
}

impl SessionCgroup {
    pub fn create(session: &str) -> io::Result<SessionCgroup> {
        let mount = cgroup2_mount().ok_or_else(|| io::Error::other("no cgroup v2 mount in /proc/mounts"))?;
        let parent = mount.join(PARENT);
        let path = parent.join(session);
        // Another session ending at the same moment removes the parent when it is empty,
        // between our making (or finding) it and making the session's cgroup in it:
        // make it again (a few times; each round another session would have to end).
        let mut attempts = 0;
        loop {
            match std::fs::create_dir(&parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            match std::fs::create_dir(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 10 => attempts += 1,
                result => break result?,
            }
        }
        let procs = CString::new(path.join("cgroup.procs").as_os_str().as_bytes()).map_err(io::Error::other)?;
        Ok(SessionCgroup { path, procs, keep_parent: false })
    }

    /// The cgroup of an existing session (`agent-monitor kill`).
    pub fn open(session: &str) -> io::Result<SessionCgroup> {
        if session.len() != 16 || !session.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{session:?} is not a session id (16 hex digits)"),
            ));
        }
        let mount = cgroup2_mount().ok_or_else(|| io::Error::other("no cgroup v2 mount in /proc/mounts"))?;
        let path = mount.join(PARENT).join(session);
        if !path.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no session {session} on this host")));
        }
        let procs = CString::new(path.join("cgroup.procs").as_os_str().as_bytes()).map_err(io::Error::other)?;
        Ok(SessionCgroup { path, procs, keep_parent: false })
    }

    /// This cgroup, leaving the parent in place when it is removed.
    pub fn keeping_parent(mut self) -> SessionCgroup {
        self.keep_parent = true;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops (`true`) or resumes every process of the session in place; returns once the
    /// kernel reports the new state (at most 5 s).
    pub fn freeze(&self, frozen: bool) -> io::Result<()> {
        std::fs::write(self.path.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        for _ in 0..500 {
            let events = std::fs::read_to_string(self.path.join("cgroup.events"))?;
            if events.lines().any(|l| l == want) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "the session did not reach the requested state in 5 s"))
    }

    /// Moves the calling process into the cgroup. Async-signal-safe (no allocation):
    /// meant for the launcher's child between fork and exec.
    pub fn join_raw(&self) -> io::Result<()> {
        join_raw(&self.procs)
    }

    pub fn procs_cstring(&self) -> CString {
        self.procs.clone()
    }

    /// Processes in the session now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Sends SIGKILL to every process of the session at once.
    pub fn kill(&self) -> io::Result<()> {
        std::fs::write(self.path.join("cgroup.kill"), "1")
    }

    /// Removes the cgroup once its processes are gone (waits up to a second).
    pub fn remove(&self) -> io::Result<()> {
        let mut last = Ok(());
        for _ in 0..100 {
            last = std::fs::remove_dir(&self.path);
            match &last {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => break,
            }
        }
        // The parent goes too when no other session uses it.
        if !self.keep_parent
            && let Some(parent) = self.path.parent()
        {
            let _ = std::fs::remove_dir(parent);
        }
        last
    }
}

impl Drop for SessionCgroup {
    /// Whatever path the monitor leaves by, an empty session cgroup is not left behind.
    fn drop(&mut self) {
        if std::fs::remove_dir(&self.path).is_ok()
            && !self.keep_parent
            && let Some(parent) = self.path.parent()
        {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Writes the caller's pid into `procs` with raw syscalls only.
pub fn join_raw(procs: &CString) -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    let mut pid = unsafe { libc::getpid() } as u32;
    let mut digits = [0u8; 12];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    // SAFETY: valid C string; the buffer outlives the write.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, digits[at..].as_ptr().cast(), digits.len() - at);
        let error = io::Error::last_os_error();
        libc::close(fd);
        if n < 0 {
            return Err(error);
        }
    }
    Ok(())
}
