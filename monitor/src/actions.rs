//! What a violation costs beyond the kernel's refusal, and the one place that signals
//! the processes of a session. Standalone `run` and the daemon both install
//! `violation_hook` on their ingest thread and end sessions with `kill_session`; the
//! control socket's `kill` and the daemon's stop use `kill_session` and
//! `signal_members`.
//!
//! Invariant: a signal reaches a process only if, after its pidfd was taken (so a
//! reused pid is never hit), the kernel's session map still names it a member of the
//! session acted on; never pid 0 or 1, never the monitor itself or its watchdog.
//! `cgroup.kill` (which signals whatever the cgroup holds) is written only while none
//! of those is in the session's cgroup.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use monitor_common::policy::{OTHER_PROCESS_RULE, action};

use crate::{
    cgroup::SessionCgroup,
    clock::BootClock,
    decode::{KernelEvent, Verdict},
    ingest::{DecisionHook, Item},
    pidfd,
    policy::OnViolation,
    session_map::SessionMap,
};

/// How a session answers a violation, as its profile says.
#[derive(Clone)]
pub struct KillInfo {
    pub on_violation: OnViolation,
    /// `mode: enforce`; an audit session is never killed.
    pub enforce: bool,
    pub cgroup: Option<Arc<SessionCgroup>>,
    /// Killed by a violation already (a session is killed once).
    pub killed: bool,
}

/// Every session's `KillInfo`, by session id: shared by the ingest thread's hook and
/// the orchestrator that starts and ends sessions.
pub type KillTable = Arc<Mutex<BTreeMap<u64, KillInfo>>>;

/// What userspace adds to the kernel's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Nothing,
    /// `on_violation: kill` where the kernel only refused: the process dies too.
    KillProcess,
    /// `on_violation: kill-session`: every process of the session dies, once.
    KillSession,
}

/// The response to `verdict` in a session answering as `info` says.
pub fn respond(info: &KillInfo, verdict: &Verdict) -> Response {
    // Self-protection refusals happen in audit mode too; refusing is all they do there.
    // A refused look at another process is only refused (see `OTHER_PROCESS_RULE`).
    if !info.enforce || !matches!(verdict.action, action::KILL | action::DENY) || verdict.rule_id == OTHER_PROCESS_RULE
    {
        return Response::Nothing;
    }
    match info.on_violation {
        OnViolation::Kill if verdict.action == action::DENY => Response::KillProcess,
        OnViolation::KillSession if !info.killed => Response::KillSession,
        _ => Response::Nothing,
    }
}

/// The ingest thread's hook: answers each violation at once, as `table` says for its
/// session. `killed` is told how long after the kernel saw the violation a kill was
/// sent.
pub fn violation_hook(table: KillTable, members: SessionMap, killed: Box<dyn Fn(Duration) + Send>) -> DecisionHook {
    Box::new(move |event: &KernelEvent| {
        let verdict = event.verdict()?;
        let header = event.header();
        let mut sessions = table.lock().expect("kill table");
        let info = sessions.get_mut(&header.session_id)?;
        let response = respond(info, &verdict);
        if response == Response::KillSession {
            info.killed = true;
        }
        let cgroup = info.cgroup.clone();
        // Not held while killing: a session without a cgroup is killed pid by pid, for
        // up to 2 s, and the orchestrator must not wait for that to start or end one.
        drop(sessions);
        match response {
            Response::Nothing => None,
            Response::KillProcess => {
                if kill_process(&members, header.session_id, header.tgid) {
                    killed(since(header.time_ns));
                }
                None
            }
            Response::KillSession => {
                let (pids, error) = kill_session(&members, header.session_id, cgroup.as_deref());
                killed(since(header.time_ns));
                Some(Item::SessionKilled {
                    session: header.session_id,
                    time_ns: BootClock::now_boot_ns(),
                    pids,
                    trigger_pid: header.tgid,
                    error,
                })
            }
        }
    })
}

/// SIGKILLs `tgid` if it is a member of `session` (see the module's invariant).
/// Returns whether the signal was sent.
pub fn kill_process(members: &SessionMap, session: u64, tgid: u32) -> bool {
    signal_member(tgid, libc::SIGKILL, |pid| members.member(pid).is_some_and(|m| m.session_id == session))
}

/// Sends `signal` to `pid` if it is neither pid 0 or 1 nor the monitor or its
/// watchdog, and `is_member(pid)` holds once its pidfd is held.
fn signal_member(pid: u32, signal: libc::c_int, is_member: impl Fn(u32) -> bool) -> bool {
    if never_killed(pid) {
        return false;
    }
    match pidfd::open(pid) {
        Some(pidfd) if is_member(pid) => {
            pidfd::send(&pidfd, signal);
            true
        }
        _ => false,
    }
}

/// Pid 0 or 1, the monitor, or its watchdog.
fn never_killed(pid: u32) -> bool {
    pid <= 1 || pid == std::process::id() || pid == crate::watchdog::watchdog_pid()
}

/// Sends `signal` to every member of `session`, again and again until none is left or
/// `deadline` passes (a member may fork while it is being signalled). Returns the pids
/// signalled.
pub fn signal_members(members: &SessionMap, session: u64, signal: libc::c_int, deadline: Duration) -> Vec<u32> {
    let started = Instant::now();
    let mut signalled = Vec::new();
    let is_member = |pid: u32| members.member(pid).is_some_and(|m| m.session_id == session);
    loop {
        let pids = members.members(session);
        let fresh: Vec<u32> = pids.iter().copied().filter(|p| !signalled.contains(p)).collect();
        if signal == libc::SIGKILL && pids.is_empty() || signal != libc::SIGKILL && fresh.is_empty() {
            return signalled;
        }
        for pid in pids {
            if signal_member(pid, signal, is_member) && !signalled.contains(&pid) {
                signalled.push(pid);
            }
        }
        if started.elapsed() >= deadline {
            return signalled;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Kills every process of the session: `cgroup.kill` where it has its own cgroup,
/// else each member by pidfd, stopped first so that none can fork away. Returns the
/// pids killed and what failed.
pub fn kill_session(members: &SessionMap, session: u64, cgroup: Option<&SessionCgroup>) -> (Vec<u32>, Option<String>) {
    let in_cgroup = cgroup.map(|cgroup| (cgroup, cgroup.pids()));
    match in_cgroup {
        // A process that is never killed (pid 1, the monitor, its watchdog) moved into
        // the cgroup by a member: its members are killed one by one instead.
        Some((cgroup, pids)) if !pids.iter().any(|&pid| never_killed(pid)) => {
            let error = cgroup.kill().err().map(|e| format!("cgroup.kill failed: {e}"));
            (pids, error)
        }
        _ => {
            signal_members(members, session, libc::SIGSTOP, Duration::from_millis(50));
            let pids = signal_members(members, session, libc::SIGKILL, Duration::from_secs(2));
            let left = members.members(session);
            let error = (!left.is_empty()).then(|| format!("still running after 2 s: {left:?}"));
            (pids, error)
        }
    }
}

/// Time from a kernel timestamp (`CLOCK_BOOTTIME`) to now.
fn since(boot_ns: u64) -> Duration {
    Duration::from_nanos(BootClock::now_boot_ns().saturating_sub(boot_ns))
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::*;

    fn info(enforce: bool, on_violation: OnViolation, killed: bool) -> KillInfo {
        KillInfo { on_violation, enforce, cgroup: None, killed }
    }

    fn verdict(action: u32, rule_id: u32) -> Verdict {
        Verdict { action, rule_id }
    }

    #[test]
    fn an_audit_session_is_never_killed() {
        for on_violation in [OnViolation::Deny, OnViolation::Kill, OnViolation::KillSession] {
            for action in [action::DENY, action::KILL, action::AUDIT, action::ALLOW] {
                assert_eq!(respond(&info(false, on_violation, false), &verdict(action, 3)), Response::Nothing);
            }
        }
    }

    #[test]
    fn only_refusals_and_kills_cost_more() {
        for on_violation in [OnViolation::Deny, OnViolation::Kill, OnViolation::KillSession] {
            for action in [action::AUDIT, action::ALLOW] {
                assert_eq!(respond(&info(true, on_violation, false), &verdict(action, 3)), Response::Nothing);
            }
        }
    }

    #[test]
    fn each_on_violation_answers_as_documented() {
        let enforce = |on_violation| info(true, on_violation, false);
        assert_eq!(respond(&enforce(OnViolation::Deny), &verdict(action::DENY, 3)), Response::Nothing);
        assert_eq!(respond(&enforce(OnViolation::Kill), &verdict(action::DENY, 3)), Response::KillProcess);
        // The kernel killed already.
        assert_eq!(respond(&enforce(OnViolation::Kill), &verdict(action::KILL, 3)), Response::Nothing);
        for action in [action::DENY, action::KILL] {
            assert_eq!(respond(&enforce(OnViolation::KillSession), &verdict(action, 3)), Response::KillSession);
        }
    }

    #[test]
    fn a_session_is_killed_once() {
        let killed = info(true, OnViolation::KillSession, true);
        assert_eq!(respond(&killed, &verdict(action::DENY, 3)), Response::Nothing);
    }

    #[test]
    fn a_refused_look_at_another_process_is_only_refused() {
        for on_violation in [OnViolation::Kill, OnViolation::KillSession] {
            let answer = respond(&info(true, on_violation, false), &verdict(action::DENY, OTHER_PROCESS_RULE));
            assert_eq!(answer, Response::Nothing);
        }
    }

    struct Sleeper(Child);

    impl Sleeper {
        fn start() -> Sleeper {
            Sleeper(Command::new("sleep").arg("30").spawn().expect("sleep"))
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
        /// Whether it ended within `wait`.
        fn ended_within(&mut self, wait: Duration) -> bool {
            std::thread::sleep(wait);
            self.0.try_wait().expect("wait").is_some()
        }
        /// Whether it was killed, waiting up to 5 s for it to end.
        fn was_killed(&mut self) -> bool {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Some(status) = self.0.try_wait().expect("wait") {
                    use std::os::unix::process::ExitStatusExt;
                    return status.signal() == Some(libc::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_member_is_signalled() {
        let mut member = Sleeper::start();
        assert!(signal_member(member.pid(), libc::SIGKILL, |_| true));
        assert!(member.was_killed());
    }

    #[test]
    fn a_process_outside_the_session_is_never_signalled() {
        let mut outside = Sleeper::start();
        let pid = outside.pid();
        assert!(!signal_member(pid, libc::SIGKILL, |p| p != pid));
        assert!(!outside.ended_within(Duration::from_millis(200)));
    }

    #[test]
    fn pid_1_and_the_monitor_are_never_signalled_even_as_members() {
        // Were the guard missing, SIGCONT would be harmless to both; SIGKILL here
        // would end this test process.
        for pid in [0, 1, std::process::id()] {
            assert!(!signal_member(pid, libc::SIGCONT, |_| true), "{pid}");
        }
        assert!(!signal_member(std::process::id(), libc::SIGKILL, |_| true));
    }

    /// Held by the tests that name a watchdog (one pid for the whole process).
    static WATCHDOG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// `pid` named the watchdog until dropped (declared after the processes it names,
    /// so that it is dropped first).
    struct NamedWatchdog(#[allow(dead_code, reason = "held for its drop")] std::sync::MutexGuard<'static, ()>);

    impl NamedWatchdog {
        fn name(pid: u32) -> NamedWatchdog {
            let held = WATCHDOG.lock().unwrap_or_else(|e| e.into_inner());
            crate::watchdog::set_watchdog_pid(pid);
            NamedWatchdog(held)
        }
    }

    impl Drop for NamedWatchdog {
        fn drop(&mut self) {
            crate::watchdog::set_watchdog_pid(0);
        }
    }

    #[test]
    fn the_watchdog_is_never_signalled_even_as_a_member() {
        let mut watchdog = Sleeper::start();
        let _named = NamedWatchdog::name(watchdog.pid());
        assert!(!signal_member(watchdog.pid(), libc::SIGKILL, |_| true));
        assert!(!watchdog.ended_within(Duration::from_millis(200)));
    }

    #[test]
    fn a_session_cgroup_holding_the_watchdog_is_not_killed_as_a_whole() {
        use crate::{
            running_process::{self, RunningProcess},
            session_map::{Existing, SessionMapFds},
            test_maps::{self, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH},
        };
        use monitor_common::{
            maps::{BPF_F_MMAPABLE, MEMBER_BITS_WORDS},
            session::SessionMember,
        };
        let Some(sessions) = test_maps::create(BPF_MAP_TYPE_HASH, 4, size_of::<SessionMember>() as u32, 64, 0) else {
            return; // not root
        };
        let member_bits = test_maps::create(BPF_MAP_TYPE_ARRAY, 4, 8, MEMBER_BITS_WORDS, BPF_F_MMAPABLE).unwrap();
        let mut members = SessionMap::from_fds(SessionMapFds { sessions, member_bits }).unwrap();
        let Ok(cgroup) = SessionCgroup::create(&format!("test-kill-guard-{}", std::process::id())) else { return };
        let (mut member, mut watchdog) = (Sleeper::start(), Sleeper::start());
        let named = NamedWatchdog::name(watchdog.pid());
        let session = 0x5e55;
        let process =
            RunningProcess::hold(member.pid(), running_process::process_stat(member.pid()).map(|s| s.start)).unwrap();
        let entry = SessionMember { session_id: session, policy_id: 1, flags: 0 };
        members.adopt(&process, &entry, Existing::Keep).unwrap();
        for pid in [member.pid(), watchdog.pid()] {
            std::fs::write(cgroup.path().join("cgroup.procs"), pid.to_string()).unwrap();
        }

        let (killed, _) = kill_session(&members, session, Some(&cgroup));
        assert_eq!(killed, vec![member.pid()]);
        assert!(member.was_killed());
        assert!(!watchdog.ended_within(Duration::from_millis(200)), "the watchdog was killed with the cgroup");
        drop(named);
        drop(watchdog);
        let _ = cgroup.remove();
    }

    #[test]
    fn membership_is_asked_after_the_pidfd_is_held() {
        let member = Sleeper::start();
        let pid = member.pid();
        let asked_with_pidfd = std::cell::Cell::new(false);
        signal_member(pid, 0, |p| {
            // The monitor holds a pidfd of `p` now: /proc/self/fdinfo names its pid.
            asked_with_pidfd.set(holds_pidfd_of(p));
            true
        });
        assert!(asked_with_pidfd.get());
    }

    fn holds_pidfd_of(pid: u32) -> bool {
        std::fs::read_dir("/proc/self/fdinfo").expect("fdinfo").flatten().any(|entry| {
            std::fs::read_to_string(entry.path()).is_ok_and(|info| info.lines().any(|l| l == format!("Pid:\t{pid}")))
        })
    }
}
