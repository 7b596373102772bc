//! What a session is: its id, the flags its profile sets in the kernel, and the
//! `session.start` and `session.end` events that open and close it in the stream (the
//! one place both `run` and the daemon build them).

use monitor_common::policy::session_flags;

use crate::{
    clock::BootClock,
    enforcement::{Enforcement, Tier},
    event::{Event, Loss, Monitor, PrincipalRef, monitor_info, types},
    event_context::{Context, session_ref},
    pipeline::exit_status,
    policy::{Mode, OnViolation, Profile},
};

/// What `session.start` says of a session.
pub struct Opening {
    pub id: u64,
    pub root_pid: u32,
    pub command: Vec<String>,
    pub profile: String,
    pub principal: PrincipalRef,
    pub mode: Mode,
    /// The daemon's sessions: how it came to hold them (`Origin::as_str`).
    pub origin: Option<&'static str>,
    /// The daemon's adopted sessions: the selector that matched.
    pub adopted_by: Option<String>,
    pub enforcement: Enforcement,
}

/// `session.start`, now.
pub fn start_event(context: &Context, opening: Opening) -> Event {
    start_event_at(context, BootClock::now_boot_ns(), opening)
}

/// `session.start` at `boot_ns` (`run`: when its monitor started the session).
pub fn start_event_at(context: &Context, boot_ns: u64, opening: Opening) -> Event {
    let mut start = context.event(types::SESSION_START, boot_ns, session_ref(opening.id));
    start.session.root_pid = Some(opening.root_pid);
    start.session.command = Some(opening.command);
    start.session.profile = Some(opening.profile);
    start.session.principal = Some(opening.principal);
    start.session.mode = Some(match opening.mode {
        Mode::Audit => "audit",
        Mode::Enforce => "enforce",
    });
    start.session.adopted_by = opening.adopted_by;
    start.session.origin = opening.origin;
    start.monitor = Some(Monitor { enforcement: Some(opening.enforcement), ..monitor_info(None) });
    start
}

/// What `session.end` says of a session.
pub struct Closing {
    pub id: u64,
    pub root_pid: u32,
    /// Processes still there when the first one ended (killed with the session, or left
    /// running where it had no cgroup).
    pub remaining_pids: Vec<u32>,
    /// The first process's wait status; `None` if its exit was never seen (the event is
    /// then marked incomplete).
    pub wait_status: Option<u32>,
    pub loss: Loss,
    pub monitor: Monitor,
}

/// `session.end`, now.
pub fn end_event(context: &Context, closing: Closing) -> Event {
    let mut end = context.event(types::SESSION_END, BootClock::now_boot_ns(), session_ref(closing.id));
    end.session.root_pid = Some(closing.root_pid);
    end.session.remaining_pids = Some(closing.remaining_pids);
    end.exit = closing.wait_status.map(exit_status);
    end.incomplete = end.exit.is_none();
    end.loss = Some(closing.loss);
    end.monitor = Some(closing.monitor);
    end
}

/// A random, non-zero session id.
pub fn new_session_id() -> u64 {
    loop {
        let mut bytes = [0u8; 8];
        // SAFETY: valid buffer of the given length.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        let id = u64::from_ne_bytes(bytes);
        if n == 8 && id != 0 {
            return id;
        }
    }
}

/// What the kernel holds a session to, from its profile (`monitor_common::policy::session_flags`).
pub fn session_flags_for(profile: &Profile, acts_for_user: bool, files: Tier) -> u32 {
    let mut flags = session_flags::HAS_POLICY;
    if profile.mode == Mode::Enforce {
        flags |= session_flags::ENFORCE;
    }
    if profile.on_violation != OnViolation::Deny {
        flags |= session_flags::KILL_ON_VIOLATION;
    }
    if acts_for_user {
        flags |= session_flags::HAS_PRINCIPAL;
    }
    // io_uring opens and sockets bypass the tracepoint tier's file and socket-family
    // checks (every policy restricts families), the principal's included; the LSM
    // hooks see them.
    if !profile.allow_io_uring && files != Tier::Lsm {
        flags |= session_flags::DENY_IO_URING;
    }
    if profile.files.is_some() {
        flags |= session_flags::RESTRICTS_FILES;
    }
    if profile.exec.is_some() {
        flags |= session_flags::RESTRICTS_EXEC;
    }
    if profile.connect.is_some() {
        flags |= session_flags::RESTRICTS_CONNECT;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;
    use monitor_common::policy::session_flags::*;

    fn profile(yaml_body: &str) -> Profile {
        policy::parse_policy(&format!("version: 1\nprofiles:\n  - name: p\n{yaml_body}")).unwrap().profiles.remove(0)
    }

    #[test]
    fn flags_follow_the_profile() {
        let tp = Tier::Tracepoint;
        let kill = KILL_ON_VIOLATION;
        // Without BPF LSM io_uring is refused in every profile: its sockets would bypass
        // the socket-family check, which every profile makes.
        let no_uring = DENY_IO_URING;
        assert_eq!(session_flags_for(&profile(""), false, tp), HAS_POLICY | ENFORCE | kill | no_uring);
        assert_eq!(session_flags_for(&profile("    mode: audit\n"), false, tp), HAS_POLICY | kill | no_uring);
        assert_eq!(session_flags_for(&profile("    on_violation: deny\n"), false, tp), HAS_POLICY | ENFORCE | no_uring);
        assert_eq!(session_flags_for(&profile("    allow_io_uring: true\n"), false, tp), HAS_POLICY | ENFORCE | kill);
        assert_eq!(
            session_flags_for(&profile("    files: {read: [/]}\n    exec: [/usr]\n"), false, tp),
            HAS_POLICY | ENFORCE | kill | RESTRICTS_FILES | RESTRICTS_EXEC | DENY_IO_URING
        );
        assert_eq!(
            session_flags_for(&profile("    allow_io_uring: true\n    files: {read: [/]}\n"), false, tp),
            HAS_POLICY | ENFORCE | kill | RESTRICTS_FILES
        );
        // Acting for a user: the principal's check.
        assert_eq!(
            session_flags_for(&profile(""), true, tp),
            HAS_POLICY | ENFORCE | kill | HAS_PRINCIPAL | DENY_IO_URING
        );
        // The LSM hooks see io_uring's opens: no need to refuse it.
        assert_eq!(
            session_flags_for(&profile("    files: {read: [/]}\n"), true, Tier::Lsm),
            HAS_POLICY | ENFORCE | kill | HAS_PRINCIPAL | RESTRICTS_FILES
        );
    }
}
