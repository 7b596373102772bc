//! `cargo xtask test`: the whole test suite (unit, then privileged integration tests).
//! `cargo xtask bench open`: cost of the hooks on an open/close loop.

mod bench;

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
    /// Build everything, run the unit tests, then the privileged integration tests.
    Test,
    /// Benchmarks; each prints ratios against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
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

fn test() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    println!("== build (agent-monitor, probe, tests)");
    run(cargo().args(["build", "--package", "monitor", "--package", "monitor-tests", "--all-targets"]))?;
    println!("== unit tests");
    // monitor-ebpf only builds for the BPF target; monitor-tests needs root.
    run(cargo().args(["test", "--workspace", "--exclude", "monitor-ebpf", "--exclude", "monitor-tests"]))?;
    println!("== privileged integration tests (real eBPF programs, real processes)");
    run(cargo().args(["test", "--package", "monitor-tests", "--no-fail-fast"]))?;
    println!("== all tests passed in {:.0?}", started.elapsed());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Test => test(),
        Task::Bench { which } => bench::run_bench(which),
    }
}
