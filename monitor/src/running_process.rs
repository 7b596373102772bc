//! A process that was running before the daemon took it, held by a pidfd. Its pid names
//! it only while it lives: once it exits, the pid may go to any other process (within
//! seconds where `pid_max` is 32768). So a write keyed by its pid is trusted only if the
//! process had not begun to exit once the write was done.

use std::os::fd::{AsRawFd, OwnedFd};

/// `PF_EXITING` in a task's flags: set when the thread begins to exit, before it counts
/// itself out of `signal->live` (and so before the kernel's exit hook, which removes the
/// session entry once `live` is 0).
const PF_EXITING: u32 = 0x4;

pub struct RunningProcess {
    pid: u32,
    start: u64,
    pidfd: OwnedFd,
}

impl RunningProcess {
    /// Holds `pid` if it is alive and, when `start` is given, started then (field 22 of
    /// `/proc/PID/stat`): the process a scan saw, not a later owner of its pid.
    pub fn hold(pid: u32, start: Option<u64>) -> Option<RunningProcess> {
        let pidfd = crate::pidfd::open(pid)?;
        // Read after the pidfd was opened: if the process is still alive below, the
        // stat read was its own.
        let started = stat(&format!("/proc/{pid}/stat"))?.start;
        if start.is_some_and(|start| start != started) {
            return None;
        }
        let process = RunningProcess { pid, start: started, pidfd };
        process.alive().then_some(process)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When it started, in clock ticks after boot.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Fails harmlessly once the process is gone: the pidfd names no other.
    pub fn signal(&self, signal: libc::c_int) {
        crate::pidfd::send(&self.pidfd, signal);
    }

    /// True while some thread of the process has not begun to exit. An entry written
    /// before this says true is seen by the kernel's exit hook, which runs only after
    /// every thread has begun to exit. (The pidfd alone says too little: it polls
    /// readable only at the end of the exit, after that hook ran.)
    pub fn alive(&self) -> bool {
        let running = self.any_thread_not_exiting();
        // After the /proc read: while the pidfd is not readable, /proc/PID was this
        // process's, not a later owner's of the pid.
        running && !self.exited()
    }

    fn any_thread_not_exiting(&self) -> bool {
        let Ok(threads) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else { return false };
        threads.filter_map(Result::ok).any(|thread| {
            stat(&thread.path().join("stat").to_string_lossy()).is_some_and(|s| s.flags & PF_EXITING == 0)
        })
    }

    /// The process has exited, zombie or reaped.
    fn exited(&self) -> bool {
        let mut poll = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no wait. A pidfd polls readable once its process exited.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        ready != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// `PF_*` bits of the task.
    pub flags: u32,
    /// Clock ticks after boot.
    pub start: u64,
}

/// The parent, flags and start time of `pid`, from `/proc/PID/stat`.
pub fn process_stat(pid: u32) -> Option<Stat> {
    stat(&format!("/proc/{pid}/stat"))
}

fn stat(path: &str) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // Fields after the command name, which may hold spaces and parentheses.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let ppid = fields.nth(1)?.parse().ok()?;
    let flags = fields.nth(4)?.parse().ok()?;
    let start = fields.nth(12)?.parse().ok()?;
    Some(Stat { ppid, flags, start })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn stat_reads_past_a_command_name_with_spaces_and_parentheses() {
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(line), Some(Stat { ppid: 7, flags: 4194560, start: 98765 }));
        assert_eq!(parse_stat("42 (cut"), None);
        assert_eq!(parse_stat("42 (x) S 7"), None);
    }

    #[test]
    fn stat_of_this_process_names_its_parent() {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as u32;
        assert_eq!(process_stat(std::process::id()).map(|s| s.ppid), Some(ppid));
    }

    #[test]
    fn a_process_is_held_only_with_its_own_start_time_and_only_while_alive() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = process_stat(pid).unwrap().start;
        assert!(RunningProcess::hold(pid, Some(start + 1)).is_none(), "another start time is another process");
        let held = RunningProcess::hold(pid, Some(start)).expect("alive");
        assert_eq!(held.start(), start);
        assert!(RunningProcess::hold(pid, None).is_some());
        assert!(held.alive());
        child.kill().unwrap();
        // A zombie until waited for: exited all the same.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while held.alive() {
            assert!(std::time::Instant::now() < deadline, "still alive after SIGKILL");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(RunningProcess::hold(pid, None).is_none(), "a zombie is not held");
        child.wait().unwrap();
        assert!(RunningProcess::hold(pid, None).is_none());
    }
}
