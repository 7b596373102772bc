//! `cargo xtask test`: the whole test suite (unit, privileged integration tests, then the
//! same integration tests in VMs running Debian's x86_64 kernel, then cross-built for
//! aarch64 in VMs running Debian's arm64 kernels).
//! `cargo xtask vm`: only the VM part.
//! `cargo xtask bench open|syscalls|kill|workload|pipeline|footprint|audit|profile`:
//! benchmarks (xtask/src/bench.rs, xtask/src/bench/).
//! `cargo xtask release`: release binaries for x86_64 and aarch64 (`target/dist/`).
//! `cargo xtask cross-tests`: the aarch64 test binaries, built and listed.
//! `cargo xtask arm64-vm`: those tests in Debian's arm64 kernels, in qemu.
//! `cargo xtask man`: man pages from the CLI definition, into target/man/.
//! `cargo xtask package`: the .deb (binary, systemd unit, config, man pages), checked.
//! `cargo xtask verifier-report`: each eBPF program's verified instructions on every
//! kernel tested (the host and every VM), as one table.

mod arm64;
mod bench;
mod cross;
mod lints;
mod man;
mod module_cycles;
mod package;
mod verifier_report;
mod vm;

use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build everything, run the unit tests, build and check the .deb, run the privileged
    /// integration tests, then the integration tests again in VMs (Debian 12's kernel,
    /// with and without BPF LSM), then cross-built for aarch64 in VMs booting Debian 12's
    /// arm64 6.1 and 6.12.
    Test,
    /// The formatting and lint gates of `test`: `cargo fmt --check`, clippy with
    /// warnings as errors on the host crates and on the eBPF crate.
    Lints,
    /// The privileged integration tests in VMs running Debian 12's kernel under qemu.
    Vm(vm::VmArgs),
    /// Benchmarks; each prints ratios against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// Release `agent-monitor` for x86_64 and aarch64 into target/dist/<triple>/, and
    /// check that both embed the same eBPF programs.
    Release {
        /// Target triples (default: x86_64-unknown-linux-gnu and aarch64-unknown-linux-gnu).
        #[arg(long = "target", value_name = "TRIPLE")]
        targets: Vec<String>,
    },
    /// Build the unit and privileged test binaries, probe and agent-monitor for another
    /// target and print their paths (HARNESS KIND PACKAGE NAME PATH).
    CrossTests {
        #[arg(long, default_value = cross::AARCH64)]
        target: String,
        /// Release profile instead of the test profile.
        #[arg(long)]
        release: bool,
    },
    /// Run the aarch64 unit and privileged tests in Debian 12's arm64 kernels
    /// (qemu-system-aarch64, software emulation).
    Arm64Vm(arm64::Arm64VmArgs),
    /// Generate the man pages (agent-monitor.1 and one per subcommand) from the CLI
    /// definition into target/man/.
    Man,
    /// Build the release binary, the man pages and the Debian package (target/debian/),
    /// then check the package: contents, metadata, and install, reinstall, remove and
    /// purge in an overlay of this machine's root (root only).
    Package(package::PackageArgs),
    /// The verifier budget test on the host and in every VM, then one table of each
    /// program's verified instructions per kernel; fails if one is over 25% of the limit.
    VerifierReport,
}

/// Runs a command from the workspace root, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let root = workspace_root();
    let status = cmd.current_dir(&root).status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `cargo test ARGS`, echoing its output, and returns (passed, failed) summed
/// over its `test result:` lines, and the failed tests by name.
fn cargo_test(args: &[&str]) -> anyhow::Result<(u64, u64, Option<String>, String)> {
    let mut child = cargo()
        .arg("test")
        .args(args)
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let (mut passed, mut failed) = (0, 0);
    let mut progress = vm::Progress::default();
    let mut output = String::new();
    let stdout = child.stdout.take().context("cargo test stdout")?;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        progress.feed(&line);
        output += &line;
        output.push('\n');
        if let Some((p, f)) = vm::test_result_counts(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("cargo test {args:?} failed ({status})");
    }
    Ok((passed, failed, progress.describe(), output))
}

fn test() -> anyhow::Result<()> {
    let arm64_args = arm64::Arm64VmArgs::default();
    std::thread::scope(|scope| {
        // From the start, at the lowest CPU priority (in a build directory of its own,
        // so no lock is shared): it takes what the host's build and tests leave, and is
        // done by the time a VM lane wants it (started beside the VMs, it starved).
        println!("== in the background from now on: the aarch64 cross build (nice -n 19)");
        let arm64_build = scope.spawn(|| arm64::build(&arm64_args, true));
        test_with(&arm64_args, arm64_build)
    })
}

fn test_with(
    arm64_args: &arm64::Arm64VmArgs,
    arm64_build: std::thread::ScopedJoinHandle<'_, anyhow::Result<cross::CrossTests>>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    println!("== lints (a failure is reported at the end, after the tests)");
    let lints = lints::check();
    println!("== build (agent-monitor, probe, tests)");
    run(cargo().args(["build", "--package", "monitor", "--package", "monitor-tests", "--all-targets"]))?;
    println!("== unit tests");
    // monitor-ebpf only builds for the BPF target; monitor-tests needs root.
    let unit = cargo_test(&["--workspace", "--exclude", "monitor-ebpf", "--exclude", "monitor-tests"])?;
    println!("== the Debian package (of the debug build: contents, install into an overlay of /)");
    // A packaging failure is reported at the end, after the tests have run.
    let package = package::build_and_check(&package::PackageArgs { debug: true, ..Default::default() });
    if let Err(error) = &package {
        println!("package: FAILED: {error:#}");
    }
    println!("== privileged integration tests (real eBPF programs, real processes)");
    let privileged = cargo_test(&["--package", "monitor-tests", "--no-fail-fast"])?;
    let downloads = arm64::fetch()?;
    println!(
        "== the integration tests in VMs: Debian 12's x86_64 kernel with and without BPF LSM, its arm64 kernels 6.1 and 6.12"
    );
    let x86 = vm::prepare(&vm::VmArgs::default())?;
    let vms_started = started.elapsed();
    let (vms, arm64_vms) = vm_lanes(&x86, arm64_args, &downloads, arm64_build)?;
    let mut passed = unit.0 + privileged.0;
    let mut failed = unit.1 + privileged.1;
    let mut counts = format!("unit: {} passed, privileged: {} passed", unit.0, privileged.0);
    for (suite, tests) in [("unit", &unit.2), ("privileged", &privileged.2)] {
        if let Some(tests) = tests {
            println!("{suite}: {tests}");
        }
    }
    for outcome in &vms {
        println!("{}", outcome.summary());
        passed += outcome.passed;
        failed += outcome.failures();
        counts += &format!(", vm {}: {} passed", outcome.config, outcome.passed);
    }
    for outcome in &arm64_vms {
        println!("{}", outcome.summary());
        passed += outcome.console.passed;
        failed += outcome.failures();
        counts += &format!(", arm64 vm {}: {} passed", outcome.kernel, outcome.console.passed);
    }
    let mut columns = verifier_report::columns_in(&privileged.3);
    for log in vms.iter().map(|o| &o.log).chain(arm64_vms.iter().map(|o| &o.log)) {
        columns.extend(verifier_report::columns_in(&std::fs::read_to_string(log).unwrap_or_default()));
    }
    verifier_report::print_table(&columns);
    println!("== before the VMs: {vms_started:.0?}; the VMs: {:.0?}", started.elapsed() - vms_started);
    println!("== {counts}, in {:.0?}", started.elapsed());
    println!("tests: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        bail!("{failed} tests failed, {passed} passed");
    }
    package.context("the Debian package")?;
    lints.context("the formatting and lint gates")?;
    Ok(())
}

/// Boots the test VMs in lanes, each lane's one after the other: its x86_64 VMs, then
/// its arm64 ones once the aarch64 build (`arm64_build`, under way since the start) is
/// done and its image made. Lanes run side by side; there is one now (see `LANES`).
fn vm_lanes(
    x86: &vm::Prepared,
    arm64_args: &arm64::Arm64VmArgs,
    downloads: &arm64::Downloads,
    arm64_build: std::thread::ScopedJoinHandle<'_, anyhow::Result<cross::CrossTests>>,
) -> anyhow::Result<(Vec<vm::Outcome>, Vec<arm64::Outcome>)> {
    // One lane: two emulated guests side by side hung twice (both vCPUs of the `nolsm`
    // guest stuck in the kernel for good, soft lockups, while its monitors attached
    // programs: the live-patching hazard of qemu's TCG noted in docs/LIMITS.md).
    const LANES: [(&[&str], &[&str]); 1] = [(&["lsm", "nolsm"], &["6.12", "6.1"])];
    let configs: Vec<&str> = LANES.iter().flat_map(|(x86, _)| x86.iter().copied()).collect();
    anyhow::ensure!(vm::config_names().eq(configs), "every x86_64 VM configuration has a lane");
    let arm64_image: std::sync::OnceLock<Result<(cross::CrossTests, std::path::PathBuf), String>> =
        std::sync::OnceLock::new();
    let lanes = std::thread::scope(|scope| {
        let running: Vec<_> = LANES
            .iter()
            .map(|&(x86_configs, arm64_lines)| {
                let arm64_image = &arm64_image;
                scope.spawn(move || {
                    let x86_outcomes: Vec<_> = x86_configs.iter().map(|config| vm::boot_config(x86, config)).collect();
                    let arm64_outcomes: Vec<_> = arm64_lines
                        .iter()
                        .map(|line| match arm64_image.wait() {
                            Ok((tests, image)) => arm64::boot_line(arm64_args, downloads, tests, image, line),
                            Err(error) => Err(anyhow::anyhow!("the aarch64 build: {error}")),
                        })
                        .collect();
                    (x86_outcomes, arm64_outcomes)
                })
            })
            .collect();
        let built = arm64_build
            .join()
            .expect("the aarch64 build thread panicked")
            .and_then(|tests| arm64::prepare(arm64_args, downloads, &tests).map(|image| (tests, image)));
        let _ = arm64_image.set(built.map_err(|e| format!("{e:#}")));
        running.into_iter().map(|lane| lane.join().expect("a VM lane panicked")).collect::<Vec<_>>()
    });
    let (mut vms, mut arm64_vms) = (Vec::new(), Vec::new());
    for (x86_outcomes, arm64_outcomes) in lanes {
        for outcome in x86_outcomes {
            vms.push(outcome?);
        }
        for outcome in arm64_outcomes {
            arm64_vms.push(outcome?);
        }
    }
    Ok((vms, arm64_vms))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Test => test(),
        Task::Lints => lints::check(),
        Task::Vm(args) => vm::command(&args),
        Task::Bench { which } => bench::run_bench(which),
        Task::Release { targets } => {
            let targets = if targets.is_empty() {
                cross::RELEASE_TARGETS.iter().map(|t| t.to_string()).collect()
            } else {
                targets
            };
            cross::release(&targets)
        }
        Task::CrossTests { target, release } => cross::print_cross_tests(&target, release),
        Task::Arm64Vm(args) => arm64::command(&args),
        Task::Man => man::command(),
        Task::Package(args) => package::command(&args),
        Task::VerifierReport => verifier_report::command(),
    }
}
