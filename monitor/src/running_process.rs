//! A process that was running before the daemon took it, held by a pidfd. Its pid names
//! it only while it lives: once it exits, the pid may go to any other process. So a
//! write keyed by its pid is trusted only if the process was still alive after it.

use std::os::fd::{AsRawFd, OwnedFd};

pub struct RunningProcess {
    pid: u32,
    pidfd: OwnedFd,
}

impl RunningProcess {
    /// Holds `pid` if it is alive and, when `start` is given, started then (field 22 of
    /// `/proc/PID/stat`): the process a scan saw, not a later owner of its pid.
    pub fn hold(pid: u32, start: Option<u64>) -> Option<RunningProcess> {
        let process = RunningProcess { pid, pidfd: crate::launcher::pidfd(pid)? };
        // Read after the pidfd was opened: if the process is still alive below, the
        // stat read was its own.
        if start.is_some_and(|start| stat(pid).map(|s| s.start) != Some(start)) {
            return None;
        }
        process.alive().then_some(process)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails harmlessly once the process is gone: the pidfd names no other.
    pub fn signal(&self, signal: libc::c_int) {
        crate::launcher::pidfd_send(&self.pidfd, signal);
    }

    /// False once the process has exited, zombie or reaped.
    pub fn alive(&self) -> bool {
        let mut poll = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no wait. A pidfd polls readable once its process exited.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        ready == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// Clock ticks after boot.
    pub start: u64,
}

/// The parent and start time of `pid`, from `/proc/PID/stat`.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // Fields after the command name, which may hold spaces and parentheses.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let ppid = fields.nth(1)?.parse().ok()?;
    let start = fields.nth(17)?.parse().ok()?;
    Some(Stat { ppid, start })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn stat_reads_past_a_command_name_with_spaces_and_parentheses() {
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(line), Some(Stat { ppid: 7, start: 98765 }));
        assert_eq!(parse_stat("42 (cut"), None);
        assert_eq!(parse_stat("42 (x) S 7"), None);
    }

    #[test]
    fn stat_of_this_process_names_its_parent() {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as u32;
        assert_eq!(stat(std::process::id()).map(|s| s.ppid), Some(ppid));
    }

    #[test]
    fn a_process_is_held_only_with_its_own_start_time_and_only_while_alive() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = stat(pid).unwrap().start;
        assert!(RunningProcess::hold(pid, Some(start + 1)).is_none(), "another start time is another process");
        let held = RunningProcess::hold(pid, Some(start)).expect("alive");
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
