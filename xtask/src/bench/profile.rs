//! `bench profile`: where the time of an open goes. The open+close loop without the
//! daemon, beside it (outside every session) and inside a session (realistic profile);
//! then the same loops again with `kernel.bpf_stats_enabled` for the run time of each
//! eBPF program per open, and the daemon's own CPU time per event it wrote. With perf
//! installed, the daemon's hottest functions while a session floods it.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context;
use serde_json::json;

use super::{
    Scratch,
    bpf_stats::{self, Run, StatsEnabled},
    daemon::{BenchDaemon, agent_copy, clock_ticks, cpu_and_rss, realistic_adopting},
    kernel_release, median, parse_ns, release_binaries, write_json,
};

#[derive(clap::Args)]
pub struct Args {
    /// open+close per loop.
    #[arg(long, default_value_t = 200_000)]
    iterations: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip the perf profile of the daemon.
    #[arg(long)]
    no_perf: bool,
}

fn open_loop(program: &Path, n: u64, target: &Path) -> anyhow::Result<f64> {
    let out = Command::new(program).args(["open-loop", &n.to_string()]).arg(target).stderr(Stdio::null()).output()?;
    parse_ns(&out.stdout)
}

fn per_program(delta: &BTreeMap<u32, Run>, names: &BTreeMap<u32, String>, opens: u64) -> (Vec<serde_json::Value>, f64) {
    let mut rows: Vec<(&u32, &Run)> = delta.iter().collect();
    rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.ns));
    let total: f64 = rows.iter().map(|(_, r)| r.ns as f64).sum::<f64>() / opens as f64;
    let json = rows
        .iter()
        .map(|(id, r)| {
            let name = names.get(id).cloned().unwrap_or_else(|| format!("id {id}"));
            println!(
                "    {:<44} {:>6.2} runs/open {:>7.0} ns/run {:>7.0} ns/open",
                name,
                r.count as f64 / opens as f64,
                r.ns as f64 / r.count as f64,
                r.ns as f64 / opens as f64
            );
            json!({"program": name, "id": id, "run_cnt": r.count, "run_time_ns": r.ns,
                   "ns_per_run": (r.ns as f64 / r.count as f64).round(), "ns_per_open": (r.ns as f64 / opens as f64).round()})
        })
        .collect();
    (json, total)
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    let scratch = Scratch::new("profile")?;
    let agent = agent_copy(&probe, &scratch.0, "agent")?;
    let target = scratch.path("target");
    std::fs::write(&target, "x")?;
    let n = args.iterations;
    let mut bare: Vec<f64> = (0..args.rounds).map(|_| open_loop(&probe, n, &target)).collect::<Result<_, _>>()?;
    let policy = realistic_adopting(&monitor, &agent, &[])?;
    let daemon = BenchDaemon::start(&monitor, &scratch.0, &policy, 1 << 40)?;
    let pid = daemon.pid();
    let (mut outside, mut inside) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        outside.push(open_loop(&probe, n, &target)?);
        inside.push(open_loop(&agent, n, &target)?);
        daemon.drain(Duration::from_millis(500))?;
    }
    let (a, b, d) = (median(&mut bare), median(&mut outside), median(&mut inside));

    let names = bpf_stats::names();
    let (outside_programs, outside_total, inside_programs, inside_total, daemon_us_per_event, events) = {
        let _stats = StatsEnabled::on()?;
        let s0 = bpf_stats::snapshot(pid)?;
        open_loop(&probe, n, &target)?;
        let s1 = bpf_stats::snapshot(pid)?;
        let written0 = daemon.status()?["events_written"].as_u64().unwrap_or(0);
        let (t0, _, _) = cpu_and_rss(pid)?;
        open_loop(&agent, n, &target)?;
        let s2 = bpf_stats::snapshot(pid)?;
        daemon.drain(Duration::from_millis(500))?;
        let (t1, _, _) = cpu_and_rss(pid)?;
        let events = daemon.status()?["events_written"].as_u64().unwrap_or(0) - written0;
        let us = (t1 - t0) as f64 / clock_ticks() as f64 * 1e6 / events.max(1) as f64;
        println!("eBPF program run time per open ({n} open+close, bpf_stats on; kernel {})", kernel_release());
        println!("  process outside every session:");
        let (op, ot) = per_program(&bpf_stats::delta(&s0, &s1), &names, n);
        println!("  process in a session (realistic profile):");
        let (ip, it) = per_program(&bpf_stats::delta(&s1, &s2), &names, n);
        (op, ot, ip, it, us, events)
    };

    let perf = if args.no_perf || Command::new("perf").arg("--version").output().is_err() {
        None
    } else {
        Some(perf_daemon(pid, &agent, &target, &scratch.0)?)
    };
    drop(daemon);

    println!("open+close, median of {} rounds (bpf_stats off), ns per iteration:", args.rounds);
    println!("  (a) no monitor              {a:8.0}   1.000");
    println!("  (b) daemon, process outside {b:8.0}   {:.3}   eBPF programs: {outside_total:.0} ns/open", b / a);
    println!("  (d) session, realistic      {d:8.0}   {:.3}   eBPF programs: {inside_total:.0} ns/open", d / a);
    println!(
        "  daemon (userspace): {daemon_us_per_event:.1} us of CPU per event written ({events} events) -> at most {:.0} events/s per core",
        1e6 / daemon_us_per_event
    );
    if let Some(text) = &perf {
        println!("  daemon's hottest functions (perf, while a session floods it):\n{text}");
    }
    write_json(
        "profile",
        &json!({
            "benchmark": "profile",
            "kernel": kernel_release(),
            "iterations": n,
            "ns_per_open": {"none": a.round(), "outside": b.round(), "realistic": d.round()},
            "bpf_ns_per_open": {"outside": outside_total.round(), "realistic": inside_total.round()},
            "programs_outside": outside_programs,
            "programs_realistic": inside_programs,
            "daemon_cpu_us_per_event": daemon_us_per_event,
            "perf_top": perf,
        }),
    )?;
    Ok(())
}

/// `perf record` of the daemon while the agent opens as fast as it can; the top of
/// `perf report`, by symbol.
fn perf_daemon(pid: u32, agent: &Path, target: &Path, dir: &Path) -> anyhow::Result<String> {
    let data = dir.join("perf.data");
    let mut flood =
        Command::new(agent).args(["open-rate", "1000000", "6"]).arg(target).stdout(Stdio::null()).spawn()?;
    let record = Command::new("perf")
        .args(["record", "-q", "-F", "999", "-p", &pid.to_string(), "-o"])
        .arg(&data)
        .args(["--", "sleep", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = flood.wait();
    record.context("perf record")?;
    let report = Command::new("perf")
        .args(["report", "--stdio", "--no-children", "--sort", "dso,symbol", "--percent-limit", "1.5", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&report.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(20)
        .map(|l| format!("    {}", l.split_whitespace().filter(|w| *w != "-").collect::<Vec<_>>().join(" ")))
        .collect::<Vec<_>>()
        .join("\n"))
}
