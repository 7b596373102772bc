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
}

pub fn run_bench(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Open { iterations, rounds } => open(iterations, rounds),
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
