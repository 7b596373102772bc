//! `cargo xtask vm`: the privileged integration tests inside virtual machines that boot
//! Debian 12's own x86_64 kernel (from apt) under qemu, once with the BPF LSM active
//! (`lsm` config) and once without it (`nolsm`). Proves that the monitor runs on a
//! kernel other than the build machine's, and reaches the LSM tier, which this machine's
//! kernel refuses. The log of each run is `target/vm/<config>.log`.

mod bench;
mod console;
mod debian;
mod hang;
pub(crate) mod initramfs;
pub(crate) mod qemu;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

pub use console::{Progress, test_result_counts};

use crate::{cargo, workspace_root};
use console::Console;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// `lsm=...,bpf`: BPF LSM programs run (the guest expects the LSM tier).
    Lsm,
    /// The same `lsm=` without `bpf`: LSM programs would load and do nothing (tier 2).
    Nolsm,
    All,
}

#[derive(Args)]
pub struct VmArgs {
    #[arg(long, value_enum, default_value_t = Which::All)]
    pub config: Which,
    /// Seconds one VM may run before it is killed (and counted as failed).
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// `--test-threads` of each test binary in the guest.
    #[arg(long, default_value_t = 2)]
    pub test_threads: usize,
    /// Instead of the tests: the cost of an open with the LSM tier and with tier 2, in
    /// the `lsm` VM (ratios printed, and written to target/bench/vm-open.json).
    #[arg(long)]
    pub bench: bool,
    /// Only these test binaries, by name, comma-separated (`lsm,paths`), in every chosen
    /// configuration, instead of each configuration's own suites.
    #[arg(long)]
    pub only: Option<String>,
}

impl Default for VmArgs {
    fn default() -> VmArgs {
        VmArgs { config: Which::All, timeout: 1800, test_threads: 2, bench: false, only: None }
    }
}

/// One guest configuration: its name, the kernel's `lsm=` list, and the test binaries
/// it runs.
struct Config {
    name: &'static str,
    lsm: &'static str,
    expect_lsm: bool,
    /// What `doctor` must report as `syscall_hooks` (`AGENT_MONITOR_EXPECT_SYSCALL_HOOKS`).
    syscall_hooks: &'static str,
    tests: &'static [&'static str],
}

/// Debian's own LSMs, then `bpf` or not.
///
/// Under emulation each monitor start costs seconds (loading and verifying the
/// programs), so each VM runs the suites that tell its tier apart, not all of them: with
/// BPF LSM, the LSM suite and the suites whose hooks and events change most with the
/// tier (paths, network refusals, the kill switch), and the daemon (its adoption and
/// self-protection under the LSM hooks); without it, the LSM suite under
/// tier-2 semantics. Each test knows which tier it got and expects. Every suite runs in
/// tier 2 on the build host (`cargo xtask test`); `sessions`, `net` and `on_behalf_of`
/// also pass in the `lsm` VM (measured, 12 min under load), but do not fit CI's time.
const CONFIGS: [Config; 2] = [
    Config {
        name: "lsm",
        lsm: "lockdown,capability,landlock,yama,apparmor,bpf",
        expect_lsm: true,
        syscall_hooks: "none",
        tests: &[
            "verifier_budget",
            // `default_profile` and `monitor_death` run under the LSM tier in the arm64
            // 6.12 VM and in tier 2 on the host: not again here (CI's time).
            "envelope",
            "audit_trail",
            "unix_sockets",
            "socket_families",
            "code_outside_exec",
            "lsm",
            "paths",
            "rename_race",
            "net_enforce",
            "kill_switch",
            "daemon",
        ],
    },
    Config {
        name: "nolsm",
        lsm: "lockdown,capability,landlock,yama,apparmor",
        expect_lsm: false,
        // Debian's x86_64 kernel has BPF trampolines: tier 2 on the syscall functions.
        syscall_hooks: "functions",
        // `default_profile` and `unix_sockets` run in tier 2 on the host and the arm64 6.1
        // VM, and under the LSM tier here in `lsm`: not again (CI's time).
        tests: &["verifier_budget", "lsm", "enforce", "syscall_hooks"],
    },
];

const CPUS: usize = 2;
const MEMORY_MIB: usize = 2048;

/// How one VM did.
pub struct Outcome {
    pub config: &'static str,
    /// The guest's console.
    pub log: PathBuf,
    pub kernel: String,
    pub passed: u64,
    pub failed: u64,
    pub wall: Duration,
    /// Why the run does not count as a pass (failed tests, or no sentinel), if it does not.
    pub problem: Option<String>,
    /// The sign of a first boot's hang, when the guest was booted once more.
    pub hung_before: Option<String>,
}

impl Outcome {
    /// Failures to count: the failed tests, or one for a run that failed without any (it
    /// crashed, hung or ran nothing).
    pub fn failures(&self) -> u64 {
        if self.problem.is_some() { self.failed.max(1) } else { self.failed }
    }

    pub fn summary(&self) -> String {
        let mut verdict = self.problem.as_deref().map_or_else(|| "ok".to_owned(), |p| format!("FAILED: {p}"));
        if let Some(sign) = &self.hung_before {
            verdict += &format!(" (booted twice: the first boot hung: {sign})");
        }
        format!(
            "vm {}: kernel {}, {} passed, {} failed, {:.0?} wall: {verdict}",
            self.config, self.kernel, self.passed, self.failed, self.wall
        )
    }
}

/// What every x86_64 guest boots: Debian's kernel and the initramfs of the tests.
pub struct Prepared {
    work: PathBuf,
    kernel: debian::Kernel,
    image: PathBuf,
    only: Option<Vec<String>>,
    timeout: Duration,
}

/// Builds the binaries and the image, boots the chosen configurations one after the
/// other, and prints one summary line per VM.
pub fn run(args: &VmArgs) -> anyhow::Result<Vec<Outcome>> {
    let prepared = prepare(args)?;
    if args.bench {
        return bench(&prepared).map(|()| Vec::new());
    }
    let chosen = CONFIGS.iter().filter(|c| args.config == Which::All || c.name == which_name(args.config));
    chosen.map(|config| boot_config(&prepared, config.name)).collect()
}

/// The configurations `cargo xtask test` boots, by name.
pub fn config_names() -> impl Iterator<Item = &'static str> {
    CONFIGS.iter().map(|c| c.name)
}

/// Builds the binaries and the initramfs, and fetches the kernel.
pub fn prepare(args: &VmArgs) -> anyhow::Result<Prepared> {
    if !cfg!(target_arch = "x86_64") {
        bail!("cargo xtask vm boots x86_64 kernels and runs x86_64 test binaries: run it on an x86_64 host");
    }
    let work = workspace_root().join("target/vm");
    std::fs::create_dir_all(&work)?;
    let cache = debian::cache_dir();
    let kernel = debian::kernel(&cache)?;
    let busybox = debian::busybox(&cache)?;

    println!("== vm: build (agent-monitor, probe, integration tests)");
    // The same build as `cargo xtask test`'s, so that one reuses the other's.
    let built = built(&["build", "--package", "monitor", "--package", "monitor-tests", "--all-targets"])?;
    let executable = |name: &str| {
        built
            .iter()
            .find(|b| b.name == name && b.kind == "bin" && !b.harness)
            .with_context(|| format!("cargo built no {name}"))
    };
    let (monitor, probe) = (executable("agent-monitor")?, executable("probe")?);
    let mut test_binaries: Vec<PathBuf> =
        built.iter().filter(|b| b.kind == "test" && b.harness).map(|b| b.path.clone()).collect();
    test_binaries.sort();
    if test_binaries.is_empty() {
        bail!("cargo built no integration test binaries");
    }

    let only: Option<Vec<String>> = args.only.as_deref().map(|only| only.split(',').map(str::to_owned).collect());
    // A suite a configuration names must exist (cargo names the binary NAME-HASH).
    for config in &CONFIGS {
        for name in tests_of(config, only.as_deref()) {
            let exists = test_binaries.iter().any(|t| {
                t.file_name().and_then(|f| f.to_str()).and_then(|f| f.rsplit_once('-')).is_some_and(|(n, _)| n == name)
            });
            if !exists {
                bail!("vm {}: no integration test binary {name}", config.name);
            }
        }
    }
    println!("== vm: initramfs ({} test binaries)", test_binaries.len());
    let image = initramfs::build(
        &initramfs::Contents {
            busybox: &busybox,
            monitor: &monitor.path,
            probe: &probe.path,
            tests: &test_binaries,
            test_dir: probe.package_dir(),
            test_threads: args.test_threads,
        },
        &work,
    )?;
    println!("   {} ({} MiB)", image.display(), std::fs::metadata(&image)?.len() >> 20);
    Ok(Prepared { work, kernel, image, only, timeout: Duration::from_secs(args.timeout) })
}

/// The suites `config` runs: its own, or `--only`'s.
fn tests_of<'a>(config: &'a Config, only: Option<&'a [String]>) -> Vec<&'a str> {
    only.map_or_else(|| config.tests.to_vec(), |only| only.iter().map(String::as_str).collect())
}

fn boot(prepared: &Prepared, append: &str, prefix: &str, log: &Path) -> anyhow::Result<(qemu::Run, Console)> {
    let mut console = Console::default();
    let run = qemu::boot(
        &qemu::Boot {
            machine: qemu::Machine::X86_64,
            vmlinuz: &prepared.kernel.vmlinuz,
            initramfs: &prepared.image,
            append,
            cpus: CPUS,
            memory_mib: MEMORY_MIB,
            timeout: prepared.timeout,
            prefix,
            log,
        },
        &mut |line| console.feed(line),
    )?;
    Ok((run, console))
}

/// `--bench`: the open benchmark in the `lsm` configuration.
fn bench(prepared: &Prepared) -> anyhow::Result<()> {
    let config = &CONFIGS[0];
    let release = &prepared.kernel.release;
    println!("== vm bench: Debian kernel {release}, lsm={}", config.lsm);
    let log = prepared.work.join("bench.log");
    let append = format!(
        "console=ttyS0 panic=-1 quiet init=/init lsm={} agent_monitor.expect_lsm=1 agent_monitor.bench=1",
        config.lsm
    );
    let (run, _) = boot(prepared, &append, "[vm bench] ", &log)?;
    if let Some(sign) = run.hung {
        bail!("the bench VM hung: {sign} (log: {})", log.display());
    }
    if run.timed_out {
        bail!("the bench VM timed out after {:?} (log: {})", prepared.timeout, log.display());
    }
    bench::report(&log, release, &workspace_root().join("target/bench/vm-open.json"))
}

/// Boots the configuration `name` (`lsm`, `nolsm`) and runs its suites. Several may run
/// at once: each has its own qemu and log.
pub fn boot_config(prepared: &Prepared, name: &str) -> anyhow::Result<Outcome> {
    let config = CONFIGS.iter().find(|c| c.name == name).with_context(|| format!("no VM configuration {name}"))?;
    let kernel = &prepared.kernel;
    println!("== vm {}: Debian kernel {}, lsm={}", config.name, kernel.release, config.lsm);
    let log = prepared.work.join(format!("{}.log", config.name));
    // init=/init: should /init fail to start, the kernel panics (and qemu exits)
    // instead of falling back to a shell that waits for input until the timeout.
    // loglevel=5 and softlockup_all_cpu_backtrace: a soft lockup is reported with every
    // CPU's stack (lines at the default level, which `quiet` alone hides), kept in the
    // hung boot's log.
    let append = format!(
        "console=ttyS0 panic=-1 quiet loglevel=5 softlockup_all_cpu_backtrace=1 init=/init lsm={} agent_monitor.expect_lsm={} agent_monitor.expect_syscall_hooks={} agent_monitor.tests={}",
        config.lsm,
        u8::from(config.expect_lsm),
        config.syscall_hooks,
        tests_of(config, prepared.only.as_deref()).join(",")
    );
    let prefix = format!("[vm {}] ", config.name);
    let (run, console, hung_before) = qemu::boot_once_more_if_hung(&log, || boot(prepared, &append, &prefix, &log))?;
    let mut problem = console.problem();
    if run.timed_out {
        problem = Some(format!("timed out after {:?}", prepared.timeout));
    }
    if let Some(sign) = &run.hung {
        problem = Some(format!("the guest hung twice: {sign}"));
    }
    if let Some(booted) = console.kernel.as_deref().filter(|k| *k != kernel.release) {
        problem = Some(format!("booted {booted}, expected {}", kernel.release));
    }
    let outcome = Outcome {
        config: config.name,
        log: log.clone(),
        kernel: kernel.release.clone(),
        passed: console.passed,
        failed: console.failed,
        wall: run.wall,
        hung_before,
        problem: problem.map(|p| format!("{p} (log: {})", log.display())),
    };
    println!("{}", outcome.summary());
    Ok(outcome)
}

fn which_name(which: Which) -> &'static str {
    match which {
        Which::Lsm => "lsm",
        Which::Nolsm => "nolsm",
        Which::All => "all",
    }
}

/// `cargo xtask vm`: fails unless every chosen VM passed.
pub fn command(args: &VmArgs) -> anyhow::Result<()> {
    let outcomes = run(args)?;
    for outcome in &outcomes {
        println!("{}", outcome.summary());
    }
    let failed: Vec<_> = outcomes.iter().filter(|o| o.problem.is_some()).map(|o| o.config).collect();
    if !failed.is_empty() {
        bail!("vm {} failed", failed.join(", "));
    }
    Ok(())
}

/// An executable cargo built.
struct Built {
    name: String,
    path: PathBuf,
    /// The target's kind: `bin`, `test` (an integration test), `lib` (unit tests), ...
    kind: String,
    /// Built with the test harness (`--all-targets` builds each `bin` both ways).
    harness: bool,
    manifest: PathBuf,
}

impl Built {
    fn package_dir(&self) -> &Path {
        self.manifest.parent().expect("Cargo.toml in a directory")
    }
}

/// Runs `cargo ARGS --message-format=json` and returns the executables it built.
fn built(args: &[&str]) -> anyhow::Result<Vec<Built>> {
    let output = cargo()
        .args(args)
        .arg("--message-format=json")
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("starting cargo")?;
    if !output.status.success() {
        bail!("cargo {args:?} failed ({})", output.status);
    }
    let mut executables = Vec::new();
    for line in String::from_utf8(output.stdout)?.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(path) = message["executable"].as_str() else { continue };
        executables.push(Built {
            name: message["target"]["name"].as_str().unwrap_or_default().to_owned(),
            path: path.into(),
            kind: message["target"]["kind"][0].as_str().unwrap_or_default().to_owned(),
            harness: message["profile"]["test"] == true,
            manifest: message["manifest_path"].as_str().unwrap_or_default().into(),
        });
    }
    Ok(executables)
}
