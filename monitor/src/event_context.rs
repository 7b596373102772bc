//! What every event is stamped with: the host, the time on the boot clock, and the
//! session it belongs to.

use crate::{
    clock::BootClock,
    event::{self, Event, Session},
};

/// Identity of the host and monitor, stamped on every event.
#[derive(Debug, Clone)]
pub struct Context {
    pub host: String,
    pub clock: BootClock,
}

impl Context {
    pub fn new() -> Context {
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        Context { host, clock: BootClock::new() }
    }

    /// An event of `event_type` at `boot_ns` with every optional part empty.
    pub fn event(&self, event_type: &'static str, boot_ns: u64, session: Session) -> Event {
        Event {
            schema_version: event::SCHEMA_VERSION,
            time: self.clock.rfc3339(boot_ns),
            host: self.host.clone(),
            event_type,
            session,
            process: None,
            file: None,
            change: None,
            tamper: None,
            exec: None,
            net: None,
            exit: None,
            syscall: None,
            decision: None,
            loss: None,
            monitor: None,
            policy: None,
            incomplete: false,
        }
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

/// 16 lowercase hex digits (`format!("{id:016x}")`, which cost a twentieth of the
/// daemon's time per event).
pub fn session_id_text(id: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..16).rev().map(|nibble| DIGITS[(id >> (nibble * 4)) as usize & 0xf] as char).collect()
}

pub fn session_ref(id: u64) -> Session {
    Session {
        id: session_id_text(id),
        root_pid: None,
        command: None,
        remaining_pids: None,
        killed_pids: None,
        killed_by: None,
        killed_because_of: None,
        principal: None,
        profile: None,
        mode: None,
        adopted_by: None,
        origin: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_16_hex_digits() {
        for id in [0, 1, 0xf, 0x1a4d_0a37_0f67_878f, u64::MAX, 1 << 63] {
            assert_eq!(session_id_text(id), format!("{id:016x}"));
        }
    }
}
