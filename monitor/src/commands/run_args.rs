//! What `agent-monitor run` is given, and what it makes of the agent's end: shared by
//! the standalone run (`run`) and the run a daemon holds (`run_via_daemon`).

use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::ExitStatus,
};

use anyhow::Context as _;

use crate::{sink::Sink, watchdog::OnMonitorDeath};

pub struct RunArgs {
    /// `None` or `-`: stdout.
    pub events: Option<PathBuf>,
    /// Policy file; `None`: the built-in policy.
    pub policy: Option<PathBuf>,
    /// Profile in the policy; `None`: the only profile of the file, or `default`.
    pub profile: Option<String>,
    /// User the agent acts for; `None`: the invoking user.
    pub on_behalf_of: Option<String>,
    /// Tier 2 even where BPF LSM works.
    pub no_lsm: bool,
    /// The eBPF programs' diagnostics at this level (`--ebpf-log`); `None`: off.
    pub ebpf_log: Option<log::Level>,
    /// A daemon's control socket to ask for the session first (`None`: standalone).
    pub socket: Option<PathBuf>,
    /// `None`: the default for the profile's mode.
    pub on_monitor_death: Option<OnMonitorDeath>,
    pub command: Vec<OsString>,
}

/// `--events`: stdout (absent or `-`) or a file appended to.
pub fn event_sink(events: Option<&Path>) -> anyhow::Result<Sink> {
    match events {
        None => Ok(Sink::stdout()),
        Some(p) if p.as_os_str() == "-" => Ok(Sink::stdout()),
        Some(path) => Sink::file(path).with_context(|| format!("opening the event file {}", path.display())),
    }
}

/// The shell convention: the exit code, or 128 + the signal that ended the process.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "unknown status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
