//! `agent-monitor kill SESSION [--freeze | --thaw]` on a running session.

use std::{
    process::{Child, Command},
    time::{Duration, Instant},
};

use monitor_tests::{START_TIMEOUT, TempDir, monitor_bin, privileged};

/// A monitor running in the background. If the test fails before the session ends, it
/// is stopped on drop (SIGTERM, which it passes on to the agent), so no session is left
/// behind.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: signals our own child, still unreaped (its pid cannot be reused).
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

/// Starts `run -- sh -c script` in the background; returns it with its session id.
fn start(dir: &TempDir, script: &str) -> (Background, String, std::path::PathBuf) {
    let events = dir.path().join("events.ndjson");
    let child = Command::new(monitor_bin())
        .arg("run")
        .arg("--events")
        .arg(&events)
        .args(["--", "sh", "-c", script])
        .spawn()
        .unwrap();
    let child = Background(child);
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("session.start")) {
            let start: serde_json::Value = serde_json::from_str(line).unwrap();
            return (child, start["session"]["id"].as_str().unwrap().to_owned(), events);
        }
        // Generous: loading the programs takes seconds in an emulated VM.
        assert!(started.elapsed() < START_TIMEOUT, "the session did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn agent_monitor(args: &[&str]) -> std::process::Output {
    Command::new(monitor_bin()).args(args).output().unwrap()
}

#[test]
fn kill_ends_the_whole_session_at_once() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("kill");
    let (mut monitor, session, events) = start(&dir, "sleep 60 & sh -c 'sleep 60 & wait' & wait");
    std::thread::sleep(Duration::from_millis(300));
    let output = agent_monitor(&["kill", &session]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("session {session} killed")), "{stdout}");
    let status = monitor.0.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    let text = std::fs::read_to_string(&events).unwrap();
    let exits = text.lines().filter(|l| l.contains("\"type\":\"process.exit\"") && l.contains("\"signal\":9")).count();
    assert!(exits >= 4, "sh, sleep, sh, sleep all killed: {exits} exits by SIGKILL\n{text}");
}

#[test]
fn freeze_stops_the_session_in_place_and_thaw_resumes_it() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("freeze");
    let ticks = dir.path().join("ticks");
    let script = format!("while :; do echo tick >> {}; sleep 0.02; done", ticks.display());
    let (mut monitor, session, _) = start(&dir, &script);
    std::thread::sleep(Duration::from_millis(200));
    let frozen = agent_monitor(&["kill", &session, "--freeze"]);
    assert!(frozen.status.success(), "{}", String::from_utf8_lossy(&frozen.stderr));
    let before = std::fs::read_to_string(&ticks).unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&ticks).unwrap().len(), before, "a frozen session kept running");
    assert!(agent_monitor(&["kill", &session, "--thaw"]).status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(std::fs::read_to_string(&ticks).unwrap().len() > before, "the thawed session did not resume");
    assert!(agent_monitor(&["kill", &session]).status.success());
    assert_eq!(monitor.0.wait().unwrap().code(), Some(137));
}

#[test]
fn kill_refuses_what_is_not_a_session() {
    if !privileged() {
        return;
    }
    for bad in ["../../..", "0123456789abcdef", "not-hex-at-all!!"] {
        let output = agent_monitor(&["kill", bad]);
        assert_eq!(output.status.code(), Some(125), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not a session id") || stderr.contains("no session"), "{bad}: {stderr}");
    }
}
