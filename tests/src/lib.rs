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

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_mount() -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| f[1].to_owned())
        .expect("cgroup v2 mounted")
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
    run_session_with_env(&[], options, command)
}

/// As [`run_session_with`], with environment variables for the monitor (`RUST_LOG`).
pub fn run_session_with_env(env: &[(&str, &str)], options: &[&str], command: &[&str]) -> Session {
    let dir = TempDir::new("events");
    let events_path = dir.path().join("events.ndjson");
    let output: Output = Command::new(monitor_bin())
        .envs(env.iter().copied())
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

    /// Seconds from `session.start` to `session.end` by the events' own times: how long
    /// the agent ran, without the time the monitor took to load its programs first.
    pub fn duration_secs(&self) -> f64 {
        let at = |event_type: &str| -> f64 {
            let event = self.of_type(event_type);
            let time = event.first().and_then(|e| e["time"].as_str()).unwrap_or_else(|| panic!("no {event_type} time"));
            // "2026-11-24T05:49:52.729760510Z": seconds of the day are enough here.
            let clock = time.split('T').nth(1).expect("RFC 3339 time").trim_end_matches('Z');
            clock.split(':').fold(0.0, |acc, part| acc * 60.0 + part.parse::<f64>().expect("clock field"))
        };
        (at("session.end") - at("session.start")).rem_euclid(86_400.0)
    }

    pub fn exit_code(&self) -> i32 {
        self.status.code().expect("agent-monitor exited by a signal")
    }

    /// Events whose decision is not `allow`.
    pub fn violations(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["decision"]["action"].is_string() && e["decision"]["action"] != "allow")
            .collect()
    }

    /// Every event (all lines, rendered) for assertion messages.
    pub fn dump(&self) -> String {
        let lines: Vec<String> = self.events.iter().map(Value::to_string).collect();
        format!(
            "status: {}\nstdout: {}\nstderr: {}\nevents:\n{}",
            self.status,
            self.stdout,
            self.stderr,
            lines.join("\n")
        )
    }
}

/// The enforcement tiers a session reported in its `session.start`
/// (`monitor.enforcement`).
pub struct Tiers {
    pub files: String,
    pub exec: String,
    pub network: String,
    pub self_protection: String,
}

impl Session {
    /// The tiers this session reported. Where the test runner says what to expect
    /// (`AGENT_MONITOR_EXPECT_LSM=1` or `0`, set by the VM runner), a different tier
    /// fails the test: a silent fallback must not pass as the LSM tier.
    pub fn tiers(&self) -> Tiers {
        let e = &self.of_type("session.start")[0]["monitor"]["enforcement"];
        let field = |name: &str| e[name].as_str().unwrap_or_else(|| panic!("no enforcement.{name}: {e}")).to_owned();
        let tiers = Tiers {
            files: field("files"),
            exec: field("exec"),
            network: field("network"),
            self_protection: field("self_protection"),
        };
        if let Some(expect_lsm) = expect_lsm() {
            let all = [&tiers.files, &tiers.exec, &tiers.network, &tiers.self_protection];
            if expect_lsm {
                assert!(all.iter().all(|t| *t == "lsm"), "expected the LSM tier for everything, got {e}");
            } else {
                assert_eq!(
                    [tiers.files.as_str(), &tiers.exec, &tiers.network, &tiers.self_protection],
                    ["tracepoint", "tracepoint", "cgroup", "seccomp"],
                    "expected tier 2"
                );
            }
        }
        tiers
    }
}

/// `AGENT_MONITOR_EXPECT_LSM`: `Some(true)` where the runner booted a kernel with BPF LSM
/// active, `Some(false)` where it booted one without, `None` where it does not say.
pub fn expect_lsm() -> Option<bool> {
    match std::env::var("AGENT_MONITOR_EXPECT_LSM").as_deref() {
        Ok("1") => Some(true),
        Ok("0") => Some(false),
        _ => None,
    }
}

impl Session {
    /// The `decision.enforced_by` a network refusal has in this session's tier:
    /// `kernel:cgroup/<cgroup_hook>` or `kernel:lsm/<lsm_hook>`.
    pub fn net_hook(&self, cgroup_hook: &str, lsm_hook: &str) -> String {
        if self.tiers().network == "lsm" {
            format!("kernel:lsm/{lsm_hook}")
        } else {
            format!("kernel:cgroup/{cgroup_hook}")
        }
    }

    /// The `file.syscall` an open made with `syscall` has in this session's tier: the LSM
    /// hook does not see which syscall opened the file (`unknown`).
    pub fn open_syscall<'a>(&self, syscall: &'a str) -> &'a str {
        if self.tiers().files == "lsm" { "unknown" } else { syscall }
    }
}
