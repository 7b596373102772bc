//! `bench pipeline`: file events through the daemon, from the kernel to its event file,
//! at rising rates. Each step runs producers (copies of the probe, adopted by an `exe:`
//! selector) that open a file of the step's own at a paced rate; when the daemon has
//! drained, the step's `file.open` lines in the event file are counted against the opens
//! the producers made, and the loss counters (`status`) are read. Amid each step's flood
//! a violator opens a denied file: it must still be killed, and reported.

use std::{
    io::{BufRead, BufReader, Seek, SeekFrom},
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::json;

use super::{
    Scratch,
    daemon::{BenchDaemon, agent_copy, realistic_adopting},
    kernel_release, release_binaries, write_json,
};

#[derive(clap::Args)]
pub struct Args {
    /// File-event rates to try, events per second.
    #[arg(long, value_delimiter = ',', default_value = "10000,25000,50000,75000,100000,150000,200000,300000")]
    rates: Vec<u64>,
    /// Seconds per step.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Highest rate asked of one producer process (more processes above it).
    #[arg(long, default_value_t = 50_000)]
    per_process: u64,
}

struct Step {
    rate: u64,
    processes: u64,
    opens: u64,
    achieved: f64,
    seen: u64,
    lost_delta: serde_json::Value,
    lost_total: u64,
    loss_events: u64,
    drain: Duration,
    violator_killed: bool,
    violation_reported: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    let scratch = Scratch::new("pipeline")?;
    let agent = agent_copy(&probe, &scratch.0, "agent")?;
    let secret = scratch.path("secret");
    std::fs::write(&secret, "secret")?;
    let policy = realistic_adopting(&monitor, &agent, &[&secret])?;
    // No rotation: the steps are counted in one file (a few GB at most, removed after).
    let daemon = BenchDaemon::start(&monitor, &scratch.0, &policy, 1 << 40)?;
    let mut offset = 0u64;
    let mut steps = Vec::new();
    let started = Instant::now();
    for (i, &rate) in args.rates.iter().enumerate() {
        let target = scratch.path(&format!("target-{i}"));
        std::fs::write(&target, "x")?;
        let before = daemon.status()?;
        let step = step(args, &daemon, &agent, &secret, &target, rate, &before, &mut offset)?;
        eprintln!(
            "  {:>7}/s asked, {:>9.0}/s made by {} process(es): {} opens, {} in the file, loss counters +{}, drained in {:.1?}",
            step.rate, step.achieved, step.processes, step.opens, step.seen, step.lost_total, step.drain
        );
        steps.push(step);
    }
    drop(daemon);

    println!(
        "event pipeline: file.open events through the daemon's file sink, {} s per step ({:.0?}); kernel {}",
        args.secs,
        started.elapsed(),
        kernel_release()
    );
    println!(
        "  {:>9} {:>11} {:>10} {:>10} {:>10} {:>9} {:>9} {:>8}",
        "asked/s", "made/s", "opens", "in file", "missing", "lost ctr", "drain s", "violator"
    );
    let mut rows = Vec::new();
    let mut max_zero_loss: Option<f64> = None;
    for s in &steps {
        let missing = s.opens.saturating_sub(s.seen);
        let zero = missing == 0 && s.lost_total == 0;
        // A step counts only if the producers made (nearly) the rate asked.
        if zero && s.achieved >= 0.9 * s.rate as f64 {
            max_zero_loss = Some(max_zero_loss.map_or(s.achieved, |m: f64| m.max(s.achieved)));
        }
        let violator = match (s.violator_killed, s.violation_reported) {
            (true, true) => "killed",
            (true, false) => "killed*",
            (false, _) => "ALIVE",
        };
        println!(
            "  {:>9} {:>11.0} {:>10} {:>10} {:>10} {:>9} {:>9.1} {:>8}",
            s.rate,
            s.achieved,
            s.opens,
            s.seen,
            missing,
            s.lost_total,
            s.drain.as_secs_f64(),
            violator
        );
        rows.push(json!({
            "asked_per_s": s.rate,
            "made_per_s": s.achieved.round(),
            "producer_processes": s.processes,
            "opens": s.opens,
            "file_open_lines": s.seen,
            "missing": missing,
            "loss_counters_delta": s.lost_delta,
            "loss_counters_total_delta": s.lost_total,
            "monitor_loss_events": s.loss_events,
            "drain_s": (s.drain.as_secs_f64() * 10.0).round() / 10.0,
            "violator_killed": s.violator_killed,
            "violation_reported": s.violation_reported,
            "zero_loss": zero,
        }));
    }
    let accounted = steps.iter().all(|s| s.opens.saturating_sub(s.seen) <= s.lost_total);
    let exact = steps.iter().all(|s| s.violator_killed);
    match max_zero_loss {
        Some(m) => {
            println!("  highest rate with nothing lost: {m:.0} events/s ({:.2} of the 100k/s target)", m / 100_000.0)
        }
        None => println!("  no step was free of loss"),
    }
    println!(
        "  above it: every missing event {} counted by the loss counters; the violator was killed in {} of {} steps (* = killed, no event)",
        if accounted { "was" } else { "was NOT" },
        steps.iter().filter(|s| s.violator_killed).count(),
        steps.len()
    );
    write_json(
        "pipeline",
        &json!({
            "benchmark": "pipeline",
            "kernel": kernel_release(),
            "secs_per_step": args.secs,
            "steps": rows,
            "max_zero_loss_events_per_s": max_zero_loss.map(f64::round),
            "target_events_per_s": 100_000,
            "missing_all_counted": accounted,
            "enforcement_exact": exact,
        }),
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments, reason = "one step's inputs, private")]
fn step(
    args: &Args,
    daemon: &BenchDaemon,
    agent: &Path,
    secret: &Path,
    target: &Path,
    rate: u64,
    before: &serde_json::Value,
    offset: &mut u64,
) -> anyhow::Result<Step> {
    let processes = rate.div_ceil(args.per_process).max(1);
    let each = rate / processes;
    let secs = args.secs.to_string();
    let mut producers = Vec::new();
    for _ in 0..processes {
        producers.push(
            Command::new(agent)
                .args(["open-rate", &each.to_string(), &secs])
                .arg(target)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting a producer")?,
        );
    }
    // The violator, amid the flood.
    std::thread::sleep(Duration::from_secs_f64(args.secs / 2.0));
    let violator = Command::new(agent).arg("cat").arg(secret).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    let violator_killed = violator.signal() == Some(9);
    let (mut opens, mut longest_ns) = (0u64, 0u64);
    for producer in producers {
        let out = producer.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field =
            |key: &str| -> Option<u64> { text.split_whitespace().find_map(|w| w.strip_prefix(key)?.parse().ok()) };
        opens += field("opens=").with_context(|| format!("producer printed {text:?}"))?;
        longest_ns = longest_ns.max(field("ns=").unwrap_or(0));
    }
    let drain = daemon.drain(Duration::from_secs(1))?;
    let after = daemon.status()?;

    // Count the step's lines: everything appended since the last step.
    let mut file = std::fs::File::open(daemon.events_path())?;
    file.seek(SeekFrom::Start(*offset))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let needle = format!("\"file\":{{\"path\":\"{}\"", target.display());
    let secret_needle = format!("\"file\":{{\"path\":\"{}\"", secret.display());
    let (mut seen, mut loss_events, mut violation_reported) = (0, 0, false);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        *offset += n as u64;
        let text = std::str::from_utf8(&line).unwrap_or("");
        if text.contains("\"type\":\"file.open\"") {
            if text.contains(&needle) {
                seen += 1;
            } else if text.contains(&secret_needle) && text.contains("\"action\":\"kill\"") {
                violation_reported = true;
            }
        } else if text.contains("\"type\":\"monitor.loss\"") {
            loss_events += 1;
        }
    }
    let mut lost_delta = serde_json::Map::new();
    if let (Some(b), Some(a)) = (before["lost"].as_object(), after["lost"].as_object()) {
        for (key, value) in a {
            let delta = value.as_u64().unwrap_or(0).saturating_sub(b.get(key).and_then(|v| v.as_u64()).unwrap_or(0));
            if delta > 0 {
                lost_delta.insert(key.clone(), delta.into());
            }
        }
    }
    Ok(Step {
        rate,
        processes,
        opens,
        achieved: opens as f64 / (longest_ns.max(1) as f64 / 1e9),
        seen,
        lost_total: BenchDaemon::lost(&after).saturating_sub(BenchDaemon::lost(before)),
        lost_delta: lost_delta.into(),
        loss_events,
        drain,
        violator_killed,
        violation_reported,
    })
}
