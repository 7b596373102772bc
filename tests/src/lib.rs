//! Shared helpers for the privileged integration tests: run a command as an
//! agent-monitor session and look at the events it produced.
//!
//! These tests need root and a kernel that loads the eBPF programs. Without root a
//! test prints `skipping: <why>`; under CI (`CI` set) it fails instead, so CI cannot
//! pass on tests that did not run.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::Value;

/// How long a test waits for a session to start before calling it a failure. Loading
/// and verifying the eBPF programs takes under a second natively and about ten times
/// that in an emulated machine (`cargo xtask arm64-vm`): only a failing test waits this
/// long.
pub const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether privileged tests can run here. Panics under CI when they cannot.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let why = "not root: these tests load eBPF programs";
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI requires every privileged test to run)");
    }
    eprintln!("skipping: {why}");
    false
}

/// The agent-monitor binary: `AGENT_MONITOR_BIN`, else next to the test binary's
/// target directory (`cargo build -p monitor` builds it; `cargo xtask test` does that).
pub fn monitor_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("AGENT_MONITOR_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let bin = dir.join("agent-monitor");
    assert!(bin.exists(), "{} not found: run `cargo build -p monitor` first (or set AGENT_MONITOR_BIN)", bin.display());
    bin
}

/// A fresh scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "am-test-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir.canonicalize().expect("canonical temp dir"))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A finished session: how it ended, what it printed, and its events.
pub struct Session {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub events: Vec<Value>,
}

/// Runs `agent-monitor run --events FILE -- command...` (built-in policy) and parses
/// every event line (a line that is not valid JSON fails the test).
pub fn run_session(command: &[&str]) -> Session {
    run_session_with(&[], command)
}

/// Writes `yaml` to a policy file in `dir` and returns its path.
pub fn policy_file(dir: &TempDir, yaml: &str) -> PathBuf {
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, yaml).expect("write policy");
    path
}

/// As [`run_session`], with extra `run` options (`--policy FILE`, ...).
pub fn run_session_with(options: &[&str], command: &[&str]) -> Session {
    let dir = TempDir::new("events");
    let events_path = dir.path().join("events.ndjson");
    let output: Output = Command::new(monitor_bin())
        .arg("run")
        .arg("--events")
        .arg(&events_path)
        .args(options)
        .arg("--")
        .args(command)
        .output()
        .expect("running agent-monitor");
    let text = std::fs::read_to_string(&events_path).unwrap_or_default();
    let events = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let session = Session {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        events,
    };
    assert!(
        session.of_type("session.start").len() == 1,
        "no session.start: the monitor failed?\nstderr: {}",
        session.stderr
    );
    session
}

impl Session {
    pub fn of_type(&self, event_type: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == event_type).collect()
    }

    pub fn root_pid(&self) -> u64 {
        self.of_type("session.start")[0]["session"]["root_pid"].as_u64().expect("root_pid")
    }

    pub fn session_id(&self) -> &str {
        self.of_type("session.start")[0]["session"]["id"].as_str().expect("session id")
    }

    /// `file.open` events of `path`.
    pub fn opens_of(&self, path: &str) -> Vec<&Value> {
        self.of_type("file.open").into_iter().filter(|e| e["file"]["path"] == path).collect()
    }

    pub fn exit_code(&self) -> i32 {
        self.status.code().expect("agent-monitor exited by a signal")
    }

    /// Events whose decision is not `allow`.
    pub fn violations(&self) -> Vec<&Value> {
        self.events.iter().filter(|e| e["decision"]["action"].is_string() && e["decision"]["action"] != "allow").collect()
    }

    /// Every event (all lines, rendered) for assertion messages.
    pub fn dump(&self) -> String {
        let lines: Vec<String> = self.events.iter().map(Value::to_string).collect();
        format!("stderr: {}\nevents:\n{}", self.stderr, lines.join("\n"))
    }
}
