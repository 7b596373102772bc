//! Benchmarks. Every figure is a ratio against a baseline measured in the same run,
//! alternating configurations so that drift of the machine hits all of them alike.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::{cargo, run, workspace_root};

#[derive(Subcommand)]
pub enum Which {
    /// open+close of one file in a tight loop: (a) no monitor, (b) monitor loaded and
    /// the process outside every session, (c) the process inside a session.
    Open {
        /// Iterations per measurement.
        #[arg(long, default_value_t = 200_000)]
        iterations: u64,
        /// Alternating rounds; the median is reported.
        #[arg(long, default_value_t = 7)]
        rounds: usize,
    },
    /// Time from a violating syscall to the death of the violator and of its whole
    /// session (kill-session).
    Kill {
        #[arg(long, default_value_t = 100)]
        runs: usize,
        /// Processes in the session.
        #[arg(long, default_value_t = 10)]
        processes: usize,
    },
}

pub fn run_bench(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Open { iterations, rounds } => open(iterations, rounds),
        Which::Kill { runs, processes } => kill(runs, processes),
    }
}

fn release_binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    run(cargo().args(["build", "--release", "--package", "monitor", "--package", "monitor-tests", "--bin", "agent-monitor", "--bin", "probe"]))?;
    let dir = workspace_root().join("target/release");
    Ok((dir.join("agent-monitor"), dir.join("probe")))
}

/// ns per iteration printed by `probe open-loop`.
fn parse_ns(output: &[u8]) -> anyhow::Result<f64> {
    let text = String::from_utf8_lossy(output);
    text.lines().next_back().and_then(|l| l.trim().parse().ok()).with_context(|| format!("probe printed {text:?}"))
}

fn open_loop(probe: &Path, iterations: u64) -> anyhow::Result<f64> {
    let out = Command::new(probe).args(["open-loop", &iterations.to_string(), "/etc/hostname"]).output()?;
    parse_ns(&out.stdout)
}

/// A monitor with an idle session, so that its programs are attached.
struct IdleMonitor {
    child: Child,
}

impl IdleMonitor {
    fn start(monitor: &Path) -> anyhow::Result<IdleMonitor> {
        // The session reads stdin: closing it ends the session and the monitor.
        let mut child = Command::new(monitor)
            .args(["run", "--events", "-", "--", "sh", "-c", "read _"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("monitor stdout")?;
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first)?;
        if !first.contains("session.start") {
            bail!("monitor did not start: {first:?}");
        }
        Ok(IdleMonitor { child })
    }
}

impl Drop for IdleMonitor {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn open(iterations: u64, rounds: usize) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    let iterations_text = iterations.to_string();
    let (mut bare, mut outside, mut inside) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for round in 0..rounds {
        bare.push(open_loop(&probe, iterations)?);
        {
            let _monitor = IdleMonitor::start(&monitor)?;
            std::thread::sleep(Duration::from_millis(100));
            outside.push(open_loop(&probe, iterations)?);
        }
        let out = Command::new(&monitor)
            .args(["run", "--events", "/dev/null", "--"])
            .arg(&probe)
            .args(["open-loop", &iterations_text, "/etc/hostname"])
            .stderr(Stdio::null())
            .output()?;
        inside.push(parse_ns(&out.stdout)?);
        eprintln!("round {}/{rounds}: {:.0} / {:.0} / {:.0} ns", round + 1, bare[round], outside[round], inside[round]);
    }
    let (a, b, c) = (median(&mut bare), median(&mut outside), median(&mut inside));
    println!("open+close loop, {iterations} iterations x {rounds} rounds, median ns per iteration ({:.0?})", started.elapsed());
    println!("  (a) no monitor                         {a:8.0} ns   1.000");
    println!("  (b) monitor loaded, process outside    {b:8.0} ns   {:.3}", b / a);
    println!("  (c) process inside a session (events)  {c:8.0} ns   {:.3}", c / a);
    Ok(())
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time with 9 fractional digits.
fn parse_time_ns(text: &str) -> Option<i128> {
    // 2026-11-24T03:04:05.123456789Z
    let b = text.as_bytes();
    if b.len() != 30 || b[29] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| text.get(from..to)?.parse::<i64>().ok();
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, ns) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 29)?);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) as i128) * 1_000_000_000 + ns as i128)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Time from a violating open to the death of the violator, and of its whole session
/// (`on_violation: kill-session`, `processes` processes), from kernel timestamps.
pub fn kill(runs: usize, processes: usize) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    let dir = std::env::temp_dir().join(format!("am-bench-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let secret = dir.join("secret");
    std::fs::write(&secret, "secret")?;
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1\nprofiles:\n  - name: bench\n    on_violation: kill-session\n    files:\n      read: [/]\n      write: [/dev/null, /tmp]\n      deny: [{}]\n",
            secret.display()
        ),
    )?;
    // processes - 2 sleepers, the shell, the violator.
    let sleepers = processes.saturating_sub(2);
    let script = format!(
        "for i in $(seq {sleepers}); do sleep 30 & done; sleep 0.2; exec {} cat {}",
        probe.display(),
        secret.display()
    );
    let (mut violator_ms, mut session_ms) = (Vec::new(), Vec::new());
    let events = dir.join("events.ndjson");
    for run in 0..runs {
        let _ = std::fs::remove_file(&events);
        let status = Command::new(&monitor)
            .args(["run", "--policy"])
            .arg(&policy)
            .arg("--events")
            .arg(&events)
            .args(["--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.code() != Some(137) {
            bail!("run {run}: the session was not killed ({status})");
        }
        let text = std::fs::read_to_string(&events)?;
        let lines: Vec<&str> = text.lines().collect();
        let field = |line: &str, key: &str| -> Option<String> {
            let at = line.find(key)? + key.len();
            Some(line[at..].split('"').next()?.to_owned())
        };
        let violation = lines
            .iter()
            .find(|l| l.contains("\"type\":\"file.open\"") && l.contains("\"action\":\"kill\""))
            .context("no violation event")?;
        let t0 = parse_time_ns(&field(violation, "\"time\":\"").context("time")?).context("time format")?;
        let violator_pid = field(violation, "\"pid\":").and_then(|p| p.split(',').next().map(str::to_owned)).context("pid")?;
        let exits: Vec<(String, i128)> = lines
            .iter()
            .filter(|l| l.contains("\"type\":\"process.exit\""))
            .filter_map(|l| {
                let pid = field(l, "\"pid\":")?.split(',').next()?.to_owned();
                Some((pid, parse_time_ns(&field(l, "\"time\":\"")?)?))
            })
            .collect();
        if exits.len() < processes {
            bail!("run {run}: {} exits for {processes} processes", exits.len());
        }
        let violator = exits.iter().find(|(pid, _)| *pid == violator_pid).context("violator exit")?.1;
        let last = exits.iter().map(|(_, t)| *t).max().context("exits")?;
        violator_ms.push((violator - t0) as f64 / 1e6);
        session_ms.push((last - t0) as f64 / 1e6);
    }
    let _ = std::fs::remove_dir_all(&dir);
    violator_ms.sort_by(f64::total_cmp);
    session_ms.sort_by(f64::total_cmp);
    println!("kill latency, {runs} runs, session of {processes} processes, from the violating open (kernel timestamps)");
    for (what, values) in [("violator dead", &violator_ms), ("whole session dead", &session_ms)] {
        println!(
            "  {what:<20} median {:8.3} ms   p99 {:8.3} ms   worst {:8.3} ms",
            percentile(values, 0.5),
            percentile(values, 0.99),
            values[values.len() - 1]
        );
    }
    Ok(())
}
