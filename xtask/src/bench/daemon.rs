//! A daemon of the benchmark's own: its own config, socket, event file and metrics in a
//! scratch directory, adopting only copies of the probe made for the benchmark (an
//! `exe:` selector matches one file's identity), so it never adopts anything else.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub struct BenchDaemon {
    monitor: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl BenchDaemon {
    /// Writes `policy` and a config (events to `events.ndjson` only, no rotation below
    /// `max_bytes`) into `dir`, starts the daemon and waits until it answers.
    pub fn start(monitor: &Path, dir: &Path, policy: &str, max_bytes: u64) -> anyhow::Result<BenchDaemon> {
        std::fs::write(dir.join("policy.yaml"), policy)?;
        let config = format!(
            "policy: {0}/policy.yaml\nsocket: {0}/control.sock\nmetrics: {{file: {0}/metrics.prom}}\nevents:\n  stdout: false\n  file: {{path: {0}/events.ndjson, max_bytes: {max_bytes}, keep: 1}}\n",
            dir.display()
        );
        std::fs::write(dir.join("config.yaml"), config)?;
        let child = Command::new(monitor)
            .args(["daemon", "--config"])
            .arg(dir.join("config.yaml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log"))?)
            .spawn()
            .context("starting the daemon")?;
        let daemon = BenchDaemon { monitor: monitor.to_owned(), dir: dir.to_owned(), child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.status().is_err() {
            if Instant::now() > deadline {
                bail!(
                    "the daemon did not start:\n{}",
                    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(daemon)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.join("events.ndjson")
    }

    /// `agent-monitor status --json`.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let out = Command::new(&self.monitor)
            .arg("--socket")
            .arg(self.socket())
            .args(["status", "--json"])
            .stderr(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("status failed");
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Sum of the loss counters in `status`.
    pub fn lost(status: &serde_json::Value) -> u64 {
        status["lost"].as_object().map_or(0, |m| m.values().filter_map(serde_json::Value::as_u64).sum())
    }

    /// Waits until `events_written` has not moved for `quiet`; returns the time waited.
    pub fn drain(&self, quiet: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut last = self.status()?["events_written"].as_u64().unwrap_or(0);
        let mut still_since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.status()?["events_written"].as_u64().unwrap_or(0);
            if now != last {
                last = now;
                still_since = Instant::now();
            } else if still_since.elapsed() >= quiet {
                return Ok(started.elapsed() - quiet);
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!("the daemon did not drain in 5 minutes");
            }
        }
    }

    /// SIGTERM (by pid, our own child), then wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
        }
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A copy of the probe named `name` in `dir`, for `match: {exe: ...}`.
pub fn agent_copy(probe: &Path, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::copy(probe, &path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// The realistic profile of `bench syscalls`, also denying `deny` and adopting every
/// process that executes `agent`.
pub fn realistic_adopting(monitor: &Path, agent: &Path, deny: &[&Path]) -> anyhow::Result<String> {
    let mut yaml = super::realistic_policy(monitor, 9)?;
    let mut extra = String::new();
    for path in deny {
        extra.push_str(&format!("        - {}\n", path.display()));
    }
    yaml = yaml.replacen("      deny:\n", &format!("      deny:\n{extra}"), 1);
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    yaml.push_str(&format!("    match:\n      - {{exe: {}}}\n", agent.display()));
    Ok(yaml)
}

/// (utime + stime in clock ticks, VmRSS in KiB, VmHWM in KiB) of `pid`.
pub fn cpu_and_rss(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((ticks, kib("VmRSS:"), kib("VmHWM:")))
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}
