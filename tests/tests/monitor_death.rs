//! A monitor's death fails closed: its watchdog kills (or freezes) every session the
//! monitor watched, and says so in the event stream. No session member can reach the
//! watchdog, nor the limits or scheduling of either process.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use monitor_tests::{START_TIMEOUT, TempDir, policy_file, privileged, run_session, run_session_with};
use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

/// Attempts on the monitor are refused, and the attempt goes on to the next (the
/// default `on_violation: kill` would end it at the first, on the LSM tier).
const DENY_POLICY: &str = "version: 1\nprofiles:\n  - name: t\n    on_violation: deny\n";

/// A `run` monitor started in the background, its session running.
struct Started {
    monitor: Child,
    events: PathBuf,
    _dir: TempDir,
}

impl Started {
    fn new(options: &[&str], command: &[&str]) -> Started {
        let dir = TempDir::new("monitor-death");
        let events = dir.path().join("events.ndjson");
        let monitor = Command::new(monitor_tests::monitor_bin())
            .arg("run")
            .arg("--events")
            .arg(&events)
            .args(options)
            .arg("--")
            .args(command)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting agent-monitor");
        let started = Started { monitor, events, _dir: dir };
        started.wait_for("process.exec", START_TIMEOUT);
        started
    }

    fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
    }

    fn wait_for(&self, event_type: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            if let Some(event) = self.events().into_iter().find(|e| e["type"] == event_type) {
                return event;
            }
            assert!(started.elapsed() < timeout, "no {event_type} in {timeout:?}: {:#?}", self.events());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn session(&self) -> (String, u32) {
        let start = self.wait_for("session.start", START_TIMEOUT);
        (start["session"]["id"].as_str().unwrap().to_owned(), start["session"]["root_pid"].as_u64().unwrap() as u32)
    }

    fn kill_monitor(&mut self) {
        // SAFETY: signalling the monitor this test started.
        unsafe { libc::kill(self.monitor.id() as i32, libc::SIGKILL) };
        self.monitor.wait().unwrap();
    }
}

fn session_cgroup(session: &str) -> PathBuf {
    Path::new(&monitor_tests::cgroup2_mount()).join("agent-monitor").join(session)
}

/// Whether `pid` has ended (gone, or a zombie waiting for whoever inherited it).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')),
    }
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_monitor_takes_its_session_with_it() {
    if !privileged() {
        return;
    }
    let mut started = Started::new(&[], &["sleep", "300"]);
    let (session, agent) = started.session();
    started.kill_monitor();
    let killed = started.wait_for("session.killed", Duration::from_secs(10));
    assert_eq!(killed["session"]["id"], session.as_str());
    assert_eq!(killed["session"]["killed_by"], "monitor-death", "{killed}");
    assert!(killed["session"]["killed_pids"].as_array().unwrap().contains(&agent.into()), "{killed}");
    assert_eq!(killed["decision"]["enforced_by"], "watchdog:cgroup.kill");
    assert_eq!(killed["monitor"]["pid"], started.monitor.id());
    wait_until("the agent outlived its monitor", || ended(agent));
    wait_until("the session's cgroup was left behind", || !session_cgroup(&session).exists());
}

#[test]
fn with_on_monitor_death_freeze_the_session_waits_frozen() {
    if !privileged() {
        return;
    }
    let mut started = Started::new(&["--on-monitor-death", "freeze"], &["sleep", "300"]);
    let (session, agent) = started.session();
    started.kill_monitor();
    let frozen = started.wait_for("session.frozen", Duration::from_secs(10));
    let cgroup = session_cgroup(&session);
    let state = std::fs::read_to_string(cgroup.join("cgroup.events")).unwrap_or_default();
    // The operator's part, done here: kill what was frozen, remove the cgroup.
    let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
    wait_until("the frozen agent did not die when killed", || ended(agent));
    wait_until("the session's cgroup stays busy", || std::fs::remove_dir(&cgroup).is_ok());
    let _ = std::fs::remove_dir(cgroup.parent().unwrap());
    assert!(state.lines().any(|l| l == "frozen 1"), "not frozen: {state}");
    assert!(frozen["session"]["remaining_pids"].as_array().unwrap().contains(&agent.into()), "{frozen}");
}

/// The watchdogs of every `run` started by this test process's tests, by their monitor.
fn watchdog_of(monitor_pid: u64) -> Option<u32> {
    let needle = format!("watchdog\0--monitor-pid\0{monitor_pid}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        cmdline.windows(needle.len()).any(|w| w == needle.as_bytes()).then_some(pid)
    })
}

#[test]
fn a_session_that_ends_leaves_no_watchdog_behind() {
    if !privileged() {
        return;
    }
    let session = run_session(&["true"]);
    let monitor_pid = session.of_type("session.start")[0]["monitor"]["pid"].as_u64().unwrap();
    // `run` returns while its watchdog detaches the programs (5 s with the LSM tier
    // under emulation); then it ends too.
    let started = Instant::now();
    while let Some(watchdog) = watchdog_of(monitor_pid) {
        assert!(started.elapsed() < Duration::from_secs(60), "watchdog {watchdog} still there: {}", session.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(session.of_type("session.killed").is_empty(), "{}", session.dump());
}

/// Finds the watchdog of the agent's parent (the monitor), then tries every way to reach it and the monitor that the probe knows.
const REACH: &str = r#"
W=$("$0" watchdog-of $PPID)
echo "watchdog=$W"
exec "$0" try kill $W -- ptrace-seize $W -- prlimit $W -- renice $W -- affinity $W -- ionice $W \
    -- prlimit $PPID -- renice $PPID -- affinity $PPID -- ionice $PPID
"#;

#[test]
fn the_watchdog_and_the_monitor_are_out_of_the_sessions_reach() {
    if !privileged() {
        return;
    }
    // Within the default capability envelope, and with every capability (so that only
    // the monitor's own hooks and guard stand in the way).
    for (envelope, hooks_reached) in [("", false), ("    envelope: {capabilities: {add: [ALL]}}\n", true)] {
        let dir = TempDir::new("reach");
        let policy = policy_file(&dir, &format!("{DENY_POLICY}{envelope}"));
        let session = run_session_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", REACH, PROBE]);
        let watchdog = session.stdout.lines().find_map(|l| l.strip_prefix("watchdog=")).unwrap_or_default();
        assert!(watchdog.parse::<u32>().is_ok(), "the watchdog was not found: {}", session.dump());
        for op in ["kill", "ptrace-seize", "prlimit", "renice", "affinity", "ionice"] {
            let refused = session.stdout.lines().filter(|l| *l == format!("{op} errno={}", libc::EPERM)).count();
            let expected = if matches!(op, "kill" | "ptrace-seize") { 1 } else { 2 };
            assert_eq!(refused, expected, "{envelope}{op}: {}", session.dump());
        }
        assert!(session.stdout.lines().any(|l| l == "done"), "{}", session.dump());
        assert_eq!(session.of_type("session.end").len(), 1, "the monitor lived to end the session");
        assert!(session.of_type("session.killed").is_empty(), "{}", session.dump());
        if session.tiers().self_protection != "lsm" {
            continue;
        }
        // Within the envelope the kernel's capability module refuses rescheduling a
        // process that holds more capabilities before the hooks run (unreported).
        let reported: &[&str] = if hooks_reached {
            &["signal", "ptrace", "prlimit", "nice", "scheduler", "ioprio"]
        } else {
            &["signal", "ptrace", "prlimit"]
        };
        let tampers = session.of_type("process.tamper");
        for operation in reported {
            assert!(
                tampers.iter().any(|e| e["tamper"]["operation"] == *operation
                    && e["decision"]["action"] == "deny"
                    && e["decision"]["rule"].as_str().is_some_and(|r| r.starts_with("self-protection"))),
                "{envelope}{operation}: {}",
                session.dump()
            );
        }
    }
}

/// A monitor thread other than the first, by its thread id: refused with BPF LSM; on
/// tier 2 the seccomp guard cannot know thread ids made after it, the monitor dies, and
/// its watchdog ends the session.
#[test]
fn a_monitor_thread_killed_by_its_id_ends_the_session_or_is_refused() {
    if !privileged() {
        return;
    }
    let script =
        r#"for t in /proc/$PPID/task/*; do t=${t##*/}; if [ "$t" != "$PPID" ]; then exec "$0" try kill $t; fi; done"#;
    let dir = TempDir::new("thread-kill");
    let policy = policy_file(&dir, DENY_POLICY);
    let options = ["--policy", policy.to_str().unwrap()];
    let mut started = Started::new(&options, &["sh", "-c", &format!("sleep 1; {script}"), PROBE]);
    let status = started.monitor.wait().unwrap();
    let start = started.wait_for("session.start", START_TIMEOUT);
    let events = started.events();
    match start["monitor"]["enforcement"]["self_protection"].as_str() {
        Some("lsm") => {
            assert_eq!(status.code(), Some(0), "{events:#?}");
            assert!(
                events.iter().any(|e| e["type"] == "process.tamper" && e["tamper"]["operation"] == "signal"),
                "{events:#?}"
            );
            assert!(events.iter().any(|e| e["type"] == "session.end"), "{events:#?}");
        }
        _ => {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{events:#?}");
            let killed = started.wait_for("session.killed", Duration::from_secs(10));
            assert_eq!(killed["session"]["killed_by"], "monitor-death", "{killed}");
        }
    }
}

/// A descriptor whose I/O signals go to the monitor or its watchdog (`F_SETOWN`): the
/// owner cannot be set (tier 2, seccomp), or the signal is dropped (BPF LSM,
/// `file_send_sigiotask`). Both live on to end the session.
#[test]
fn no_io_signal_reaches_the_monitor_or_its_watchdog() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("sigio");
    let policy = policy_file(&dir, DENY_POLICY);
    let script = r#"W=$("$0" watchdog-of $PPID); "$0" try sigio $W 9 -- sigio $PPID 9; sleep 1; echo alive"#;
    let session = run_session_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", script, PROBE]);
    assert!(session.stdout.contains("alive"), "{}", session.dump());
    assert_eq!(session.of_type("session.end").len(), 1, "the monitor lived to end the session: {}", session.dump());
    assert!(session.of_type("session.killed").is_empty(), "{}", session.dump());
    if session.tiers().self_protection == "lsm" {
        let dropped = session
            .of_type("process.tamper")
            .into_iter()
            .filter(|e| e["decision"]["enforced_by"] == "kernel:lsm/file_send_sigiotask")
            .count();
        assert_eq!(dropped, 2, "{}", session.dump());
    } else {
        assert_eq!(session.stdout.matches(&format!("sigio errno={}", libc::EPERM)).count(), 2, "{}", session.dump());
    }
}

/// A monitor that is stopped (SIGSTOP, a freezer) watches nothing: its watchdog takes
/// it for dead after 10 s without a heartbeat, and ends the session.
#[test]
fn a_stopped_monitor_is_taken_for_dead() {
    if !privileged() {
        return;
    }
    let mut started = Started::new(&[], &["sleep", "300"]);
    let (session, agent) = started.session();
    let monitor = started.monitor.id() as i32;
    // SAFETY: signalling the monitor this test started.
    unsafe { libc::kill(monitor, libc::SIGSTOP) };
    let killed = started.wait_for("session.killed", Duration::from_secs(30));
    // SAFETY: as above; it is ended either way.
    unsafe {
        libc::kill(monitor, libc::SIGCONT);
        libc::kill(monitor, libc::SIGKILL);
    }
    let _ = started.monitor.wait();
    assert_eq!(killed["session"]["id"], session.as_str());
    assert_eq!(killed["session"]["killed_by"], "monitor-death", "{killed}");
    assert!(killed["decision"]["note"].as_str().unwrap().contains("stopped answering"), "{killed}");
    wait_until("the agent outlived its stopped monitor", || ended(agent));
}

/// Descriptors of `pid` that keep a program attached (BPF links, perf events).
fn attachments_held_by(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| matches!(target.to_str(), Some("anon_inode:bpf_link" | "anon_inode:[perf_event]")))
        .count()
}

#[test]
fn the_watchdog_holds_every_program_its_monitor_attached() {
    if !privileged() {
        return;
    }
    let mut started = Started::new(&[], &["sleep", "300"]);
    started.session();
    let monitor = started.monitor.id();
    let watchdog = watchdog_of(monitor.into()).expect("the monitor has a watchdog");
    let (monitors, watchdogs) = (attachments_held_by(monitor), attachments_held_by(watchdog));
    assert!(
        monitors > 0 && watchdogs >= monitors,
        "the monitor holds {monitors} attachments, its watchdog {watchdogs}"
    );
    started.kill_monitor();
    started.wait_for("session.killed", Duration::from_secs(10));
    wait_until("the watchdog (and the programs it held) outlived the session", || ended(watchdog));
}

/// While a killed monitor's watchdog ends the session, the kernel programs go on
/// enforcing: a member reading a denied file in a loop never gets a byte of it.
#[test]
fn enforcement_outlives_a_killed_monitor_until_its_session_ends() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("outlives");
    let root = dir.path().display().to_string();
    std::fs::write(dir.path().join("secret"), "TOPSECRET\n").unwrap();
    let policy = policy_file(
        &dir,
        &format!(
            "version: 1\nprofiles:\n  - name: t\n    files:\n      read: [/]\n      write: [{root}, /dev/null]\n      deny: [{root}/secret]\n"
        ),
    );
    let leak = dir.path().join("leak");
    let script = format!("while :; do cat {root}/secret >> {} 2>/dev/null; done", leak.display());
    let mut started = Started::new(&["--policy", policy.to_str().unwrap()], &["sh", "-c", &script]);
    started.wait_for("file.open", START_TIMEOUT);
    started.kill_monitor();
    let killed = started.wait_for("session.killed", Duration::from_secs(10));
    assert_eq!(killed["session"]["killed_by"], "monitor-death", "{killed}");
    let leaked = std::fs::read_to_string(&leak).unwrap_or_default();
    assert!(!leaked.contains("TOPSECRET"), "{} copies of the secret leaked", leaked.matches("TOPSECRET").count());
}

/// Every cgroup filesystem is read-only in the session's mount namespace: no member
/// moves itself out of its session cgroup (out of the network hooks and the
/// end-of-session kill), nor the monitor and its watchdog into a cgroup it then kills
/// with `cgroup.kill` (which sends no signal any guard could refuse).
#[test]
fn no_member_writes_a_cgroup_file() {
    if !privileged() {
        return;
    }
    let cgroup2 = monitor_tests::cgroup2_mount();
    let dir = TempDir::new("cgroup-fence");
    let policy = policy_file(&dir, DENY_POLICY);
    let escape = format!("{cgroup2}/am-test-escape-{}", std::process::id());
    let script = format!(
        r#"mkdir {escape} 2>/dev/null; echo mkdir=$?; "$0" try write {cgroup2}/cgroup.procs -- write {cgroup2}/agent-monitor/cgroup.kill"#
    );
    let session = run_session_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", &script, PROBE]);
    let _ = std::fs::remove_dir(&escape);
    let erofs = format!("errno={}", libc::EROFS);
    assert!(session.stdout.contains("mkdir=1"), "{}", session.dump());
    assert_eq!(session.stdout.lines().filter(|l| l.ends_with(&erofs)).count(), 2, "{}", session.dump());
    assert_eq!(session.of_type("session.end").len(), 1, "the monitor lived to end the session: {}", session.dump());
    assert!(session.of_type("session.killed").is_empty(), "{}", session.dump());
}
