//! The daemon's sessions: who they are, where each is in its life, and how to gather
//! all of a session into its cgroup.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use monitor_common::session::SessionMember;

use crate::{cgroup::SessionCgroup, item::Item, pipeline::PolicyView, session_map::SessionMap};

/// How long a `run` session whose first process ended waits for the rest of it.
pub const ENDING_MAX: Duration = Duration::from_secs(5);

/// Where a session is in its life. Its `session.start` is written on leaving
/// `Starting`, its `session.end` when it leaves the table. (Frozen is not a phase: a
/// session is frozen and thawed in any of them, see `Session::frozen`.)
pub enum Phase {
    /// `session.start` is not written yet.
    Starting(Starting),
    Running,
    /// A `run` client reported its first process's end (`status`, a wait status) at
    /// `since`, and what the session had left running then was killed (`left`): the
    /// session ends once the exit records of all its processes have been read, or
    /// `ENDING_MAX` after, whatever still runs then.
    Ending {
        status: u32,
        since: Instant,
        left: Vec<u32>,
    },
}

/// What a session waits for before its `session.start`.
pub enum Starting {
    /// A `run` session: its client's report that its first process runs. Its `command`
    /// is reported then, and its events are held back until then.
    Run { command: Vec<String>, held: Vec<Item> },
    /// A session the kernel adopted at exec: the exec record, whose command line the
    /// start reports.
    Exec,
    /// A process adopted from /proc when the daemon started: its descendants joining
    /// and its cgroup (`Daemon::adopt_running`).
    Scan,
}

impl Phase {
    /// Ending for longer than `ENDING_MAX`: what it left could not be killed, or its
    /// exit records were lost.
    pub fn overdue(&self) -> bool {
        matches!(self, Phase::Ending { since, .. } if since.elapsed() >= ENDING_MAX)
    }

    pub fn is_starting(&self) -> bool {
        matches!(self, Phase::Starting(_))
    }

    /// The status a `run` client reported, once it did.
    pub fn ending_status(&self) -> Option<u32> {
        match self {
            Phase::Ending { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Adopted by the kernel at exec.
    Exec,
    /// Adopted from /proc when the daemon started.
    Running,
    /// `agent-monitor run` through the daemon.
    Run,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Exec => "exec",
            Origin::Running => "running",
            Origin::Run => "run",
        }
    }
}

pub struct Session {
    pub id: u64,
    pub profile: String,
    pub view: Arc<PolicyView>,
    pub member: SessionMember,
    pub uid: u32,
    pub root_pid: u32,
    pub origin: Origin,
    pub adopted_by: Option<String>,
    pub started: SystemTime,
    /// The session's own cgroup (kill and freeze as a whole); `None` for sessions that
    /// stay in a cgroup someone else manages (a systemd unit).
    pub cgroup: Option<Arc<SessionCgroup>>,
    /// Policy id this session alone uses (a `run --policy` file), removed at its end.
    pub owned_policy: Option<u32>,
    pub phase: Phase,
    /// Its processes are frozen (`agent-monitor kill --freeze`, `on_stop: freeze`).
    pub frozen: bool,
    /// A `run` client waits for this session's end: it ends when the client says its
    /// first process ended (or the client goes away), not when its processes are gone.
    pub client: bool,
    /// Wait status of the first process, once its exit was seen.
    pub root_exit: Option<u32>,
    /// Processes of the session whose exit record has not been read yet. Once empty,
    /// every record of the session has been read (a process's exit record is the last
    /// it causes, and the ring buffer keeps order).
    pub alive: std::collections::HashSet<u32>,
}

impl Session {
    /// A running session with its first process (`root_pid`, 0 while a `run` client has
    /// not started it) alive, not yet in a cgroup, owning no policy.
    pub fn new(
        id: u64,
        profile: &str,
        view: Arc<PolicyView>,
        member: SessionMember,
        uid: u32,
        root_pid: u32,
        origin: Origin,
    ) -> Session {
        Session {
            id,
            profile: profile.to_owned(),
            view,
            member,
            uid,
            root_pid,
            origin,
            adopted_by: None,
            started: SystemTime::now(),
            cgroup: None,
            owned_policy: None,
            phase: Phase::Running,
            frozen: false,
            client: false,
            root_exit: None,
            alive: (root_pid != 0).then_some(root_pid).into_iter().collect(),
        }
    }
}

/// Moves every member of `session` into `cgroup` (members that fork meanwhile are
/// caught by the next round).
pub fn gather(members: &SessionMap, session: u64, cgroup: &SessionCgroup) -> std::io::Result<()> {
    for _ in 0..20 {
        let inside = cgroup.pids();
        let outside: Vec<u32> = members.members(session).into_iter().filter(|p| !inside.contains(p)).collect();
        if outside.is_empty() {
            return Ok(());
        }
        for pid in outside {
            match std::fs::write(cgroup.path().join("cgroup.procs"), pid.to_string()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ending_session_is_overdue_only_after_ending_max() {
        let ending = |ago: Duration| Phase::Ending {
            status: 0,
            since: Instant::now().checked_sub(ago).expect("the machine has been up that long"),
            left: Vec::new(),
        };
        assert!(!ending(Duration::ZERO).overdue());
        assert!(ending(ENDING_MAX + Duration::from_millis(1)).overdue());
        assert!(!Phase::Running.overdue());
        assert!(!Phase::Starting(Starting::Exec).overdue());
    }
}
