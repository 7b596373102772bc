//! What `agent-monitor run` is given, and what it makes of the agent's end: shared by
//! the standalone run (`run`) and the run a daemon holds (`run_via_daemon`).

use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::ExitStatus,
};

use anyhow::Context as _;
use monitor_common::session::SessionMember;

use crate::{
    capabilities::{CapabilityEnvelope, CapabilitySet},
    cgroup_fence::ReadOnlyCgroups,
    daemon::protocol::StartReply,
    guard_filter::GuardFilter,
    launcher::spawn_in_session,
    seccomp::ForeignAbiFilter,
    session_map::Registrar,
    sink::Sink,
    watchdog::OnMonitorDeath,
};

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

/// Starts `command` as the first process of the session `start` describes: registered
/// in it, in its cgroup, inside its envelope and filters, before its first instruction.
pub fn spawn_agent(
    command: &[OsString],
    start: &StartReply,
    registrar: Registrar,
) -> anyhow::Result<std::process::Child> {
    let member = SessionMember { session_id: start.session_id, policy_id: start.policy_id, flags: start.flags };
    let cgroup = start.cgroup_procs.as_ref().map(|p| std::ffi::CString::new(p.as_bytes())).transpose()?;
    let foreign_abi = start.foreign_abi.then(ForeignAbiFilter::new);
    let protected: Vec<u32> = [start.daemon_pid, start.watchdog_pid].into_iter().filter(|&pid| pid != 0).collect();
    let guard =
        Some(if start.guard { GuardFilter::new(&protected, start.daemon_pgid) } else { GuardFilter::envelope() });
    let envelope =
        CapabilityEnvelope { keep: CapabilitySet(start.keep_capabilities), no_new_privs: start.no_new_privs };
    let fence = Some(ReadOnlyCgroups::of_this_system()?);
    spawn_in_session(command, registrar, member, cgroup, foreign_abi, guard, Some(envelope), fence)
        .map_err(|error| anyhow::anyhow!("cannot start {}: {error}", command[0].to_string_lossy()))
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
