//! `bench kill`: time from a violating open to the death of the violator, and to the
//! death of its whole session (`on_violation: kill-session`), from the kernel
//! timestamps of the events. By default through a daemon, as on a host the monitor
//! guards; `--standalone` measures `agent-monitor run --standalone` instead.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail};
use serde_json::json;

use super::{Scratch, daemon::BenchDaemon, kernel_release, percentile, release_binaries, write_json};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Processes in the session: the violator and sleepers.
    #[arg(long, default_value_t = 50)]
    processes: usize,
    /// Each run with its own monitor (`run --standalone`) instead of one daemon.
    #[arg(long)]
    standalone: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    let scratch = Scratch::new("kill")?;
    let secret = scratch.path("secret");
    std::fs::write(&secret, "secret")?;
    let policy = format!(
        "version: 1\nprofiles:\n  - name: bench\n    on_violation: kill-session\n    files:\n      read: [/]\n      write: [/dev/null, /tmp]\n      deny: [{}]\n",
        secret.display()
    );
    let daemon = if args.standalone { None } else { Some(BenchDaemon::start(&monitor, &scratch.0, &policy, 1 << 30)?) };
    let policy_file = scratch.path("session-policy.yaml");
    std::fs::write(&policy_file, &policy)?;
    // The shell forks processes - 1 sleepers, waits for them to start, then becomes
    // the violator.
    let script = format!(
        "for i in $(seq {}); do sleep 30 & done; sleep 0.1; exec {} cat {}",
        args.processes.saturating_sub(1),
        probe.display(),
        secret.display()
    );
    let events = scratch.path("session.ndjson");
    let (mut violator_ms, mut killed_ms, mut session_ms) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for run in 0..args.runs {
        let _ = std::fs::remove_file(&events);
        let mut command = Command::new(&monitor);
        match &daemon {
            Some(daemon) => command.arg("--socket").arg(daemon.socket()).args(["run", "--profile", "bench"]),
            None => command.args(["run", "--standalone", "--policy"]).arg(&policy_file),
        };
        let status = command
            .arg("--events")
            .arg(&events)
            .args(["--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.code() != Some(137) {
            bail!("run {run}: the session was not killed ({status})");
        }
        let times = latencies(&events, args.processes).with_context(|| format!("run {run}"))?;
        violator_ms.push(times.violator);
        killed_ms.push(times.killed);
        session_ms.push(times.session);
        if (run + 1) % 100 == 0 {
            eprintln!("  {} runs", run + 1);
        }
    }
    drop(daemon);
    for values in [&mut violator_ms, &mut killed_ms, &mut session_ms] {
        values.sort_by(f64::total_cmp);
    }
    let mode = if args.standalone { "run --standalone" } else { "daemon" };
    println!(
        "kill latency ({mode}), {} runs ({:.0?}), session of {} processes, from the violating open (kernel timestamps)",
        args.runs,
        started.elapsed(),
        args.processes
    );
    let mut results = serde_json::Map::new();
    let rows = [
        ("violator dead", "violator", &violator_ms),
        ("cgroup.kill written", "killed", &killed_ms),
        ("whole session dead", "session", &session_ms),
    ];
    for (what, key, values) in rows {
        let (median, p99, worst) = (percentile(values, 0.5), percentile(values, 0.99), values[values.len() - 1]);
        println!("  {what:<20} median {median:8.3} ms   p99 {p99:8.3} ms   worst {worst:8.3} ms");
        results.insert(key.into(), json!({"median_ms": median, "p99_ms": p99, "worst_ms": worst}));
    }
    write_json(
        "kill",
        &json!({"benchmark": "kill", "kernel": kernel_release(), "mode": mode, "runs": args.runs,
                "processes": args.processes, "latency": results}),
    )
}

/// Milliseconds after the violating open, from the events' kernel timestamps.
struct Latencies {
    /// The violator's exit.
    violator: f64,
    /// The daemon's `session.killed` (stamped once `cgroup.kill` has returned, every
    /// SIGKILL sent): what the daemon takes to react.
    killed: f64,
    /// The last exit of the session: what the kernel then takes to end the processes.
    session: f64,
}

fn latencies(events: &Path, processes: usize) -> anyhow::Result<Latencies> {
    let text = std::fs::read_to_string(events)?;
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let time = |e: &serde_json::Value| e["time"].as_str().and_then(super::parse_time_ns);
    let violation = lines
        .iter()
        .find(|e| e["type"] == "file.open" && e["decision"]["action"] == "kill")
        .context("no violation event")?;
    let t0 = time(violation).context("violation time")?;
    let exits: Vec<(u64, i128)> = lines
        .iter()
        .filter(|e| e["type"] == "process.exit")
        .filter_map(|e| Some((e["process"]["pid"].as_u64()?, time(e)?)))
        .collect();
    if exits.len() < processes {
        bail!("{} process exits for {processes} processes", exits.len());
    }
    let violator_pid = violation["process"]["pid"].as_u64().context("violator pid")?;
    let violator = exits.iter().find(|(pid, _)| *pid == violator_pid).context("no exit of the violator")?.1;
    let last = exits.iter().map(|(_, t)| *t).max().context("exits")?;
    let killed =
        lines.iter().find(|e| e["type"] == "session.killed").and_then(time).context("no session.killed event")?;
    let ms = |t: i128| (t - t0) as f64 / 1e6;
    Ok(Latencies { violator: ms(violator), killed: ms(killed), session: ms(last) })
}
