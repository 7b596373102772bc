//! What a session is to the kernel: its id and the flags its profile sets.

use monitor_common::policy::session_flags;

use crate::{
    enforcement::Tier,
    policy::{Mode, OnViolation, Profile},
};

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
