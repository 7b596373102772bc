//! The control socket's protocol: one JSON object per line each way. The client sends
//! a [`Request`]; the daemon answers with one [`Reply`] line, except `events` (a reply,
//! then event lines until the client hangs up) and `start` (a reply carrying the
//! session map's descriptor, then the session's event lines until its `session.end`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Status,
    Sessions,
    Events {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// Event types (`file.open`, ...); empty: all.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        types: Vec<String>,
    },
    Kill {
        session: String,
        #[serde(default)]
        freeze: bool,
        #[serde(default)]
        thaw: bool,
    },
    Reload,
    /// `agent-monitor run` through the daemon: a session for a process the client
    /// starts itself (it registers it with the session map descriptor it receives).
    Start {
        /// Profile of the daemon's policy, or of `policy_text`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
        /// A policy file's text given with `run --policy`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy_text: Option<String>,
        /// uid the session acts for.
        uid: u32,
        command: Vec<String>,
    },
    /// After `start`: the client's child is registered and about to exec.
    Started {
        pid: u32,
    },
    /// After `start`: the session's first process ended with this wait status.
    Ended {
        status: u32,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<SessionInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartReply>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply { ok: true, ..Reply::default() }
    }
    pub fn error(error: impl Into<String>) -> Reply {
        Reply { ok: false, error: Some(error.into()), ..Reply::default() }
    }
    pub fn message(message: impl Into<String>) -> Reply {
        Reply { ok: true, message: Some(message.into()), ..Reply::default() }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_s: u64,
    pub kernel: String,
    pub arch: String,
    /// Resource -> tier (`files: lsm`, ...).
    pub enforcement: serde_json::Value,
    pub policy_file: Option<String>,
    pub profiles: Vec<String>,
    pub adopting_selectors: u32,
    pub sessions: u32,
    pub events_written: u64,
    /// Reason -> count, since start.
    pub lost: serde_json::Value,
    pub followers: u32,
    pub follower_drops: u64,
    pub reloads: u64,
    pub reload_failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub profile: String,
    pub mode: String,
    pub origin: String,
    pub root_pid: u32,
    pub pids: Vec<u32>,
    pub uid: u32,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_by: Option<String>,
    pub frozen: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StartReply {
    pub session: String,
    pub session_id: u64,
    pub policy_id: u32,
    pub flags: u32,
    /// `cgroup.procs` the child writes itself into.
    pub cgroup_procs: Option<String>,
    pub daemon_pid: u32,
    pub daemon_pgid: u32,
    /// The daemon's watchdog, protected like the daemon (0: none).
    #[serde(default)]
    pub watchdog_pid: u32,
    /// Whether the child installs the tier-2 self-protection seccomp filter.
    pub guard: bool,
    /// Whether the child installs the foreign-ABI seccomp filter.
    pub foreign_abi: bool,
    /// The profile's capability envelope: the capabilities kept (one bit per number)
    /// and `no_new_privs`.
    pub keep_capabilities: u64,
    pub no_new_privs: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_reject_strangers() {
        let kill = Request::Kill { session: "00000000000000ab".into(), freeze: true, thaw: false };
        let text = serde_json::to_string(&kill).unwrap();
        assert_eq!(text, r#"{"cmd":"kill","session":"00000000000000ab","freeze":true,"thaw":false}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), kill);
        assert_eq!(serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(), Request::Status);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"format-disk"}"#).is_err());
    }
}
