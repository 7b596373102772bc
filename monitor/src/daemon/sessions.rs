//! The daemon's sessions: who they are, and how to stop or freeze all of a session.

use std::{sync::Arc, time::SystemTime};

use monitor_common::session::SessionMember;

use crate::{cgroup::SessionCgroup, pipeline::PolicyView, session_map::SessionMap};

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
    /// `run`: the client reported the first process's end (its wait status); the
    /// session ends once `alive` is empty.
    pub ending: Option<(u32, std::time::Instant)>,
}

impl Session {
    /// A session with its first process (`root_pid`, 0 while a `run` client has not
    /// started it) alive, not yet in a cgroup, owning no policy.
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
            frozen: false,
            client: false,
            root_exit: None,
            alive: (root_pid != 0).then_some(root_pid).into_iter().collect(),
            ending: None,
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
