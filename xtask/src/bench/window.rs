//! `bench window`: the tier-2 window. Without BPF LSM a forbidden open completes and
//! the process is killed before the syscall returns; another thread of it can use the
//! descriptor in between. Each try forks a process whose second thread spins on
//! `sendfile()` from the descriptor number the open will get, while its first thread
//! opens a denied file (`probe window-race`); a try leaks if any byte reaches the
//! parent. The baseline is the same attack without the monitor, where every try leaks.

use std::process::Command;

use anyhow::{Context, bail};
use serde_json::json;

use super::{Scratch, kernel_release, release_binaries, write_json};

#[derive(clap::Args)]
pub struct Args {
    /// Tries in the session.
    #[arg(long, default_value_t = 10_000)]
    tries: u32,
}

/// (tries, leaks, bytes) printed by `probe window-race`.
fn parse(output: &[u8]) -> anyhow::Result<(u64, u64, u64)> {
    let text = String::from_utf8_lossy(output);
    let line = text.lines().find(|l| l.starts_with("tries=")).with_context(|| format!("no result in {text:?}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let value =
            line.split(' ').find_map(|f| f.strip_prefix(name)).with_context(|| format!("no {name} in {line:?}"))?;
        Ok(value.parse()?)
    };
    Ok((field("tries=")?, field("leaks=")?, field("bytes=")?))
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    let scratch = Scratch::new("window")?;
    let secret = scratch.path("secret");
    std::fs::write(&secret, vec![b's'; 4096])?;
    let policy = scratch.path("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1\nprofiles:\n  - name: bench\n    files:\n      read: [/]\n      deny: [{}]\n",
            secret.display()
        ),
    )?;
    let baseline_tries = (args.tries / 10).max(100);
    let baseline = Command::new(&probe).arg("window-race").arg(&secret).arg(baseline_tries.to_string()).output()?;
    let (_, baseline_leaks, _) = parse(&baseline.stdout)?;
    if baseline_leaks == 0 {
        bail!("the attack leaked nothing without the monitor: it measures nothing here");
    }
    let session = Command::new(&monitor)
        .args(["run", "--standalone", "--policy"])
        .arg(&policy)
        .arg("--events")
        .arg(scratch.path("events.ndjson"))
        .arg("--")
        .arg(&probe)
        .arg("window-race")
        .arg(&secret)
        .arg(args.tries.to_string())
        .output()?;
    let (tries, leaks, bytes) = parse(&session.stdout)?;
    let events = std::fs::read_to_string(scratch.path("events.ndjson")).unwrap_or_default();
    let tier = events
        .lines()
        .find(|l| l.contains("\"session.start\""))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|e| e["monitor"]["enforcement"]["files"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let per_10k = leaks as f64 * 10_000.0 / tries as f64;
    let baseline_rate = baseline_leaks as f64 / baseline_tries as f64;
    println!("== the tier-2 window ({tier} enforces files, kernel {})", kernel_release());
    println!("  without the monitor: {baseline_leaks} of {baseline_tries} tries leaked");
    println!("  in a session:        {leaks} of {tries} tries leaked ({per_10k:.1} per 10,000, {bytes} bytes)");
    println!("  ratio to the baseline: {:.4}", (leaks as f64 / tries as f64) / baseline_rate);
    write_json(
        "window",
        &json!({
            "tier": tier,
            "tries": tries,
            "leaks": leaks,
            "leaked_bytes": bytes,
            "per_10000": per_10k,
            "baseline": {"tries": baseline_tries, "leaks": baseline_leaks},
        }),
    )
}
