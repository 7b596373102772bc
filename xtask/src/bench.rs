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

mod audit;
mod bpf_stats;
mod daemon;
mod footprint;
mod kill;
mod pipeline;
mod profile;
mod slow_path;
mod window;
mod workload;

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
    /// open, stat, connect and fork+exec loops under (a) no monitor, (b) the monitor
    /// with the process outside, (c) an allow-all session, (d) a realistic profile.
    Syscalls {
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Time from a violating syscall to the death of the violator and of its whole
    /// session (kill-session), through a daemon.
    Kill(kill::Args),
    /// Wall time of agent workloads (git clone, a Python tree walk, cargo build):
    /// (a) no monitor, (d) in a session with the realistic profile.
    Workload(workload::Args),
    /// Event throughput through the daemon's file sink: the highest rate of file events
    /// with nothing lost, what happens above it, and whether enforcement stays exact.
    Pipeline(pipeline::Args),
    /// The daemon's memory and CPU, idle and under load, and its kernel map memory.
    Footprint(footprint::Args),
    /// The open and stat loops under Linux audit (watches on the profile's paths and
    /// an open rule), beside no monitor and agent-monitor.
    Audit(audit::Args),
    /// Where the time goes: run time per eBPF program (kernel.bpf_stats_enabled) and
    /// the daemon's CPU per event, optionally its hottest functions (perf).
    Profile(profile::Args),
    /// The tier-2 window: how often another thread of a violating process reads a
    /// denied file through its descriptor before the kill lands (leaks per 10,000
    /// tries, against the same attack without the monitor).
    Window(window::Args),
    /// Every benchmark above with its defaults, one after the other (about 12 min), and
    /// their results with the machine in target/bench/results.json.
    All,
}

/// The benchmarks of `All`, in order, by the name of their JSON file.
const ALL: [&str; 8] = ["syscalls", "kill", "pipeline", "footprint", "workload", "audit", "window", "profile"];

pub fn run_bench(which: Which) -> anyhow::Result<()> {
    if needs_own_tracefs() {
        return again_with_own_tracefs();
    }
    match which {
        Which::Open { iterations, rounds } => open(iterations, rounds),
        Which::Kill(args) => kill::run(&args),
        Which::Syscalls { rounds } => syscalls(rounds),
        Which::Workload(args) => workload::run(&args),
        Which::Pipeline(args) => pipeline::run(&args),
        Which::Footprint(args) => footprint::run(&args),
        Which::Audit(args) => audit::run(&args),
        Which::Profile(args) => profile::run(&args),
        Which::Window(args) => window::run(&args),
        Which::All => all(),
    }
}

/// Set in the benchmark run again in a mount namespace of its own.
const OWN_TRACEFS: &str = "AGENT_MONITOR_BENCH_OWN_TRACEFS";

/// The floor enables tracefs events itself: without tracefs on the host, the
/// benchmarks run in a mount namespace of their own with one mounted (the host's
/// mounts stay as they were).
fn needs_own_tracefs() -> bool {
    let mounted = std::fs::read_dir("/sys/kernel/tracing").is_ok_and(|mut entries| entries.next().is_some());
    !mounted && std::env::var_os(OWN_TRACEFS).is_none()
}

fn again_with_own_tracefs() -> anyhow::Result<()> {
    println!("== no tracefs on this host: the benchmarks run in a mount namespace of their own with one");
    let status = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "slave",
            "sh",
            "-c",
            "mount -t tracefs tracefs /sys/kernel/tracing && exec \"$@\"",
            "sh",
        ])
        .arg(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(OWN_TRACEFS, "1")
        .status()
        .context("unshare (util-linux)")?;
    if !status.success() {
        bail!("the benchmarks failed ({status})");
    }
    Ok(())
}

/// The arguments of a benchmark as its defaults set them.
fn defaults<A: clap::Args + clap::FromArgMatches>() -> A {
    let command = A::augment_args(clap::Command::new("bench"));
    A::from_arg_matches(&command.get_matches_from(["bench"])).expect("every benchmark argument has a default")
}

fn all() -> anyhow::Result<()> {
    let started = Instant::now();
    let out_dir = workspace_root().join("target/bench");
    for name in ALL {
        let _ = std::fs::remove_file(out_dir.join(format!("{name}.json")));
    }
    let mut failed = Vec::new();
    for name in ALL {
        println!("== bench {name}");
        let result = match name {
            "syscalls" => syscalls(5),
            "kill" => kill::run(&defaults()),
            "pipeline" => pipeline::run(&defaults()),
            "footprint" => footprint::run(&defaults()),
            "workload" => workload::run(&defaults()),
            "audit" => audit::run(&defaults()),
            "window" => window::run(&defaults()),
            _ => profile::run(&defaults()),
        };
        if let Err(error) = result {
            println!("bench {name}: FAILED: {error:#}");
            failed.push(name);
        }
    }
    let mut results = serde_json::Map::new();
    for name in ALL {
        if let Ok(text) = std::fs::read_to_string(out_dir.join(format!("{name}.json"))) {
            let mut value: serde_json::Value = serde_json::from_str(&text)?;
            value.as_object_mut().map(|o| o.remove("machine"));
            results.insert(name.to_owned(), value);
        }
    }
    write_json(
        "results",
        &serde_json::json!({"benchmarks": results, "failed": failed, "took_s": started.elapsed().as_secs()}),
    )?;
    if !failed.is_empty() {
        bail!("benchmarks failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Set to an agent-monitor binary, the benchmarks run it instead of this tree's (the
/// probe stays this tree's): a before/after comparison with the same benchmark code.
const MONITOR_OVERRIDE: &str = "AM_BENCH_MONITOR";

/// This tree's release agent-monitor (or [`MONITOR_OVERRIDE`]'s) and probe.
pub(crate) fn release_binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "monitor",
        "--package",
        "monitor-tests",
        "--bin",
        "agent-monitor",
        "--bin",
        "probe",
    ]))?;
    let dir = workspace_root().join("target/release");
    let monitor = match std::env::var_os(MONITOR_OVERRIDE) {
        Some(path) => {
            let path = PathBuf::from(path);
            anyhow::ensure!(path.is_file(), "{MONITOR_OVERRIDE}={} is not a file", path.display());
            println!("== {MONITOR_OVERRIDE}: the monitor is {}", path.display());
            path
        }
        None => dir.join("agent-monitor"),
    };
    Ok((monitor, dir.join("probe")))
}

/// ns per iteration printed by `probe open-loop`.
pub(crate) fn parse_ns(output: &[u8]) -> anyhow::Result<f64> {
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

pub(crate) fn median(values: &mut [f64]) -> f64 {
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
    println!(
        "open+close loop, {iterations} iterations x {rounds} rounds, median ns per iteration ({:.0?})",
        started.elapsed()
    );
    println!("  (a) no monitor                         {a:8.0} ns   1.000");
    println!("  (b) monitor loaded, process outside    {b:8.0} ns   {:.3}", b / a);
    println!("  (c) process inside a session (events)  {c:8.0} ns   {:.3}", c / a);
    Ok(())
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time with 9 fractional digits.
pub(crate) fn parse_time_ns(text: &str) -> Option<i128> {
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

pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The realistic profile of `bench syscalls`: the built-in default plus 50 path rules
/// and 20 network rules (one of which allows the benchmark's listener).
pub(crate) fn realistic_policy(monitor: &Path, port: u16) -> anyhow::Result<String> {
    let default = Command::new(monitor).args(["policy", "default"]).output()?;
    let mut yaml = String::from_utf8(default.stdout)?;
    let mut deny = String::new();
    for i in 0..50 {
        deny.push_str(&format!("        - /srv/bench/denied-{i}\n"));
    }
    yaml = yaml.replacen("      deny:\n", &format!("      deny:\n{deny}"), 1);
    let mut connect = format!("\"127.0.0.1:{port}\"");
    for i in 0..19 {
        connect.push_str(&format!(", \"10.{i}.0.0/16:443\""));
    }
    let replaced = yaml.replace("connect: [\"0.0.0.0/0:*\", \"[::]/0:*\"]", &format!("connect: [{connect}]"));
    if replaced == yaml {
        bail!("the built-in policy changed shape: update realistic_policy");
    }
    Ok(replaced)
}

/// Syscall overhead, side by side: (a) no monitor, (b) monitor loaded with the process
/// outside every session, (c) inside a session with an allow-all profile, (d) inside a
/// session with a realistic profile. Median of alternating rounds; JSON in
/// target/bench/syscalls.json.
pub fn syscalls(rounds: usize) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    // The listener runs in a process of its own (a thread of this one made the loops
    // measure this process's scheduling).
    let mut listener = Command::new(&probe).arg("listen").stdout(Stdio::piped()).spawn()?;
    let mut port_line = String::new();
    BufReader::new(listener.stdout.take().context("listener stdout")?).read_line(&mut port_line)?;
    let port: u16 = port_line.trim().parse().context("listener port")?;
    let result = syscalls_with(&monitor, &probe, port, rounds);
    let _ = listener.kill(); // our own child, by handle
    let _ = listener.wait();
    result
}

fn syscalls_with(monitor: &Path, probe: &Path, port: u16, rounds: usize) -> anyhow::Result<()> {
    let (monitor, probe) = (monitor.to_owned(), probe.to_owned());
    let dir = std::env::temp_dir().join(format!("am-bench-syscalls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let allow_all = dir.join("allow-all.yaml");
    std::fs::write(&allow_all, "version: 1\nprofiles:\n  - name: allow-all\n")?;
    let realistic = dir.join("realistic.yaml");
    std::fs::write(&realistic, realistic_policy(&monitor, port)?)?;
    let target = format!("127.0.0.1:{port}");
    let loops: [(&str, u64); 4] = [("open", 100_000), ("stat", 100_000), ("connect", 3_000), ("forkexec", 300)];
    let configs =
        ["a: no monitor", "floor: slow path", "b: monitor, outside", "c: session, allow-all", "d: session, realistic"];
    let mut results: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); configs.len()]; loops.len()];
    let started = Instant::now();
    for _ in 0..rounds {
        for (l, (kind, n)) in loops.iter().enumerate() {
            let probe_args = |probe: &Path| -> Vec<String> {
                vec![probe.display().to_string(), "loop".into(), kind.to_string(), n.to_string(), target.clone()]
            };
            let bare = Command::new(&probe).args(&probe_args(&probe)[1..]).output()?;
            results[l][0].push(parse_ns(&bare.stdout)?);
            {
                let _slow = slow_path::SlowPath::enable()?;
                let floor = Command::new(&probe).args(&probe_args(&probe)[1..]).output()?;
                results[l][1].push(parse_ns(&floor.stdout)?);
            }
            {
                let _idle = IdleMonitor::start(&monitor)?;
                std::thread::sleep(Duration::from_millis(100));
                let outside = Command::new(&probe).args(&probe_args(&probe)[1..]).output()?;
                results[l][2].push(parse_ns(&outside.stdout)?);
            }
            for (c, policy) in [(3, &allow_all), (4, &realistic)] {
                let out = Command::new(&monitor)
                    .arg("run")
                    .arg("--policy")
                    .arg(policy)
                    .args(["--events", "/dev/null", "--"])
                    .args(probe_args(&probe))
                    .stderr(Stdio::null())
                    .output()?;
                results[l][c].push(parse_ns(&out.stdout).with_context(|| format!("{kind} under {}", configs[c]))?);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "syscall overhead, median of {rounds} alternating rounds ({:.0?}); ns per iteration and ratio to (a)",
        started.elapsed()
    );
    println!(
        "  {:<10} {:>22} {:>22} {:>22} {:>22} {:>22}",
        "loop", configs[0], configs[1], configs[2], configs[3], configs[4]
    );
    let mut json_loops = serde_json::Map::new();
    for (l, (kind, _)) in loops.iter().enumerate() {
        let medians: Vec<f64> = results[l].iter_mut().map(|v| median(v)).collect();
        let cell = |c: usize| format!("{:>9.0} ({:>5.3})", medians[c], medians[c] / medians[0]);
        println!("  {:<10} {:>22} {:>22} {:>22} {:>22} {:>22}", kind, cell(0), cell(1), cell(2), cell(3), cell(4));
        let keys = ["none", "slow_path_floor", "outside", "allow_all", "realistic"];
        let row: serde_json::Map<String, serde_json::Value> =
            keys.iter().zip(&medians).map(|(k, v)| (k.to_string(), serde_json::json!(v.round()))).collect();
        json_loops.insert(kind.to_string(), row.into());
    }
    write_json(
        "syscalls",
        &serde_json::json!({"benchmark": "syscalls", "unit": "ns per iteration (median)", "rounds": rounds, "loops": json_loops}),
    )
}

/// Writes `value`, with the machine it was measured on, to target/bench/NAME.json and
/// says where.
pub(crate) fn write_json(name: &str, value: &serde_json::Value) -> anyhow::Result<()> {
    let out_dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let path = out_dir.join(format!("{name}.json"));
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.insert("machine".into(), machine());
    }
    std::fs::write(&path, serde_json::to_string_pretty(&value)? + "\n")?;
    println!("  results: target/bench/{name}.json");
    Ok(())
}

/// A scratch directory under /tmp, removed when dropped (kept, to look into, with
/// AM_BENCH_KEEP=1).
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("am-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("AM_BENCH_KEEP").is_some() {
            eprintln!("  kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the figures were measured on: kernel, CPU, cores, memory, load, time.
pub(crate) fn machine() -> serde_json::Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("CPU part"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let memory_kib =
        read("/proc/meminfo").lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    let measured_at = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    serde_json::json!({
        "kernel": kernel_release(),
        "arch": std::env::consts::ARCH,
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_mib": memory_kib.map(|k| k / 1024),
        "load_average": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "measured_at": measured_at.unwrap_or_default(),
    })
}

/// `uname -r`, for the record.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}
