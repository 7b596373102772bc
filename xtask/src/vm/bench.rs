//! `cargo xtask vm --bench`: the cost of an open with the BPF LSM tier against tier 2
//! (on the syscall functions, and on the syscall tracepoints), in the same VM and the
//! same run (this machine's kernel refuses LSM and tracing programs). The guest
//! (`init.sh`) prints one line per round; this reads them from the log and prints the
//! medians and their ratios to no monitor, also into `target/bench/vm-open.json`.
//!
//! Under software emulation absolute times are many times a real machine's; the ratios
//! are what carries over, and only roughly.

use std::path::Path;

use anyhow::{Context, bail};

/// The guest's columns, in the order printed.
const COLUMNS: [(&str, &str); 7] = [
    ("none", "no monitor"),
    ("outside_lsm", "monitor (LSM tier), process outside every session"),
    ("outside_tier2", "monitor (tier 2 on the syscall functions), process outside every session"),
    ("outside_tp", "monitor (tier 2 on the syscall tracepoints), process outside every session"),
    ("inside_lsm", "inside a session, default profile, LSM tier"),
    ("inside_tier2", "inside a session, default profile, tier 2 on the syscall functions"),
    ("inside_tp", "inside a session, default profile, tier 2 on the syscall tracepoints"),
];

/// ns per open+close of each column, one value per round, from the VM's log.
fn rounds(log: &str) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut columns = vec![Vec::new(); COLUMNS.len()];
    for line in log.lines().filter_map(|l| l.split("agent-monitor-vm: bench round=").nth(1)) {
        for (i, (name, _)) in COLUMNS.iter().enumerate() {
            let value = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse::<f64>().ok())
                .with_context(|| format!("no {name}= in the bench line {line:?}"))?;
            columns[i].push(value);
        }
    }
    if columns[0].is_empty() {
        bail!("the VM printed no bench rounds");
    }
    Ok(columns)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Prints the table and writes the JSON result.
pub fn report(log: &Path, kernel: &str, json: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let columns = rounds(&text)?;
    let medians: Vec<f64> = columns.iter().map(|c| median(c)).collect();
    println!("open+close in the VM (Debian {kernel}, qemu TCG), median of {} rounds:", columns[0].len());
    println!("| configuration | ns/iteration | ratio to no monitor |");
    println!("|---|---|---|");
    let mut entries = Vec::new();
    for ((name, label), value) in COLUMNS.iter().zip(&medians) {
        println!("| {label} | {value:.0} | {:.3} |", value / medians[0]);
        entries.push(serde_json::json!({"name": name, "label": label, "ns": value, "ratio": value / medians[0]}));
    }
    println!(
        "LSM tier vs tier 2 (functions), per open: {:.3} inside a session, {:.3} outside every session",
        medians[4] / medians[5],
        medians[1] / medians[2]
    );
    println!(
        "tier 2 on the functions vs on the tracepoints, per open: {:.3} inside a session, {:.3} outside every session",
        medians[5] / medians[6],
        medians[2] / medians[3]
    );
    let result = serde_json::json!({"kernel": kernel, "rounds": columns[0].len(), "results": entries});
    std::fs::create_dir_all(json.parent().expect("a directory"))?;
    std::fs::write(json, serde_json::to_string_pretty(&result)?)?;
    println!("written to {}", json.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rounds_from_the_console() {
        let log = [
            "[vm lsm] agent-monitor-vm: bench round=1 none=100 outside_lsm=101 outside_tier2=120 outside_tp=130 inside_lsm=150 inside_tier2=200 inside_tp=210",
            "noise",
            "[vm lsm] agent-monitor-vm: bench round=2 none=110 outside_lsm=103 outside_tier2=122 outside_tp=131 inside_lsm=160 inside_tier2=190 inside_tp=205",
        ]
        .join("\n");
        let columns = rounds(&log).unwrap();
        assert_eq!(columns[0], [100.0, 110.0]);
        assert_eq!(columns[5], [200.0, 190.0]);
        assert_eq!(columns[6], [210.0, 205.0]);
        assert!(rounds("nothing here").is_err());
        assert!(rounds("agent-monitor-vm: bench round=1 none=1").is_err(), "a missing column is an error");
    }
}
